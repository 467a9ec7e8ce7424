/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The worker's configuration file: upstream's ModuleConfig, the YAML the
 * operator puts in the worker pod's `kmm.node.kubernetes.io/worker-config`
 * annotation and mounts as /etc/kmm-worker/config.yaml.
 *
 *     kernelVersion: 6.1.0-56-amd64
 *     containerImage: registry.example/org/kmod:6.1.0-56-amd64
 *     imagePullPolicy: IfNotPresent
 *     insecurePull: false
 *     inTreeModulesToRemove: [dummy]
 *     modprobe:
 *       moduleName: vmk_b
 *       dirName: /opt
 *       parameters: [answer=42]
 *       args: {load: [...], unload: [...]}
 *       rawArgs: {load: [...], unload: [...]}
 *       firmwarePath: /firmware
 *       modulesLoadingOrder: [vmk_b, vmk_a]
 *
 * Decoding is strict like upstream's (unknown keys are errors, naming the key
 * and its line), and values must have the right type.
 */
#ifndef KMM_WORKER_H
#define KMM_WORKER_H

#include <jansson.h>
#include <stdbool.h>

#include "kmm/error.h"
#include "kmm/macro.h"

/* Upper bound on a config file's size. */
#define KMM_WORKER_CONFIG_MAX ((size_t)1024 * 1024)

struct kmm_modprobe_args {
	bool set; /* the key was present */
	char **load;
	char **unload;
};

struct kmm_worker_config {
	char *kernel_version;
	char *container_image;
	char *image_pull_policy;
	bool insecure_pull;
	char **in_tree_modules_to_remove; /* NULL when the key is absent */
	char *in_tree_module_to_remove;   /* deprecated single form */
	struct {
		char *module_name;
		char **parameters;
		char *dir_name; /* "/opt" when absent, as the CRD defaults it */
		struct kmm_modprobe_args args;
		struct kmm_modprobe_args raw_args;
		char *firmware_path;
		char **modules_loading_order;
	} modprobe;
};

/*
 * Decodes a config from a JSON value (a YAML document converted by kmm_yaml).
 * `source` names the input in messages. On success stores a new config in
 * *ret_cfg, owned by the caller.
 */
int kmm_worker_config_from_json(const json_t *doc, const char *source,
				struct kmm_worker_config **ret_cfg, struct kmm_error **err);

/* Parses YAML (or JSON) text holding exactly one document. */
int kmm_worker_config_parse(const char *data, size_t len, const char *source,
			    struct kmm_worker_config **ret_cfg, struct kmm_error **err);

/* Reads and parses the file at `path`. */
int kmm_worker_config_load(const char *path, struct kmm_worker_config **ret_cfg,
			   struct kmm_error **err);

/*
 * The in-tree modules to remove, as a new vector owned by the caller: the
 * list, or the deprecated single name when the list is absent; NULL when
 * neither is set (or on ENOMEM).
 */
char **kmm_worker_config_in_tree(const struct kmm_worker_config *cfg);

void kmm_worker_config_free(struct kmm_worker_config *cfg);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_worker_config *, kmm_worker_config_free)
#define _cleanup_worker_config_ _cleanup_(kmm_worker_config_freep)

#endif
