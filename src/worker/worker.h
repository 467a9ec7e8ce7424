/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-worker's steps, in upstream's order (see docs/worker.md):
 *
 * load:   firmware_class.path -> remove in-tree modules -> copy firmware ->
 *         load (libkmod; modprobe only for rawArgs or flags libkmod lacks)
 * unload: unload (same split) -> remove the firmware files it installed
 */
#ifndef KMM_SRC_WORKER_H
#define KMM_SRC_WORKER_H

#include <signal.h>
#include <stdbool.h>

#include "kmm/shared-error.h"
#include "kmm/api.h"

/* Exit codes of kmm-worker (documented in docs/worker.md and --help). */
#define KMM_WORKER_EXIT_SIGNAL_BASE 128 /* + signal number: stopped by SIGTERM/SIGINT */

struct kmm_worker_opts {
	/* Where the image's files are: modules under <image_root><dirName>,
	 * firmware under <image_root><firmwarePath>. Upstream: /tmp. */
	const char *image_root;
	/* Host firmware directory (--firmware-path); NULL when not given. */
	const char *firmware_host_path;
	/* Host module tree scanned for in-tree modules. */
	const char *host_modules_root;
	/* Kernel release override (standalone --kernel); NULL for uname -r. */
	const char *kernel;

	/*
	 * Pulling the kmod image instead of reading image_root: `image` is a
	 * registry reference or "oci:DIR[:NAME]" (an OCI image layout). Only
	 * <dirName>/lib/modules/<kernel> and the firmware path are extracted,
	 * into a fresh directory under pull_dir that is removed afterwards.
	 */
	const char *image;
	const char *pull_dir;
	const char *registry_ca_file;
	const char *pull_secret_file; /* a .dockerconfigjson */
	bool registry_insecure;	      /* plain HTTP */
	bool registry_skip_verify;    /* HTTPS without verification */

	/*
	 * PEM or DER certificate of the Module's signing key (--verify-cert):
	 * every module file the load inserts must be signed with it, whatever
	 * the kernel enforces. NULL: no check.
	 */
	const char *verify_cert;
};

/* Upper bound on a worker config file's size. */
#define KMM_WORKER_CONFIG_MAX ((size_t)1024 * 1024)

/*
 * Reads a worker config file (upstream's ModuleConfig) and decodes it with
 * kmm_worker_config_parse(): strict, and with moduleName or rawArgs set.
 */
int kmm_worker_config_load(const char *path, struct kmm_module_config **ret_cfg,
			   struct kmm_error **err);

/*
 * Standalone mode: reads a Module manifest (YAML; the first document of kind
 * Module), resolves its kernelMappings for `kernel` (NULL: uname -r) with the
 * operator's code, and builds the worker config the operator would have
 * written. -ENOENT when no mapping matches; -EOPNOTSUPP in a build without
 * lib/api's kernel mapping.
 */
int kmm_worker_standalone_config(const char *path, const char *kernel,
				 struct kmm_module_config **ret_cfg, struct kmm_error **err);

/* Set by the signal handler; checked between steps. */
extern volatile sig_atomic_t kmm_worker_stop_signal;

void kmm_worker_install_signal_handlers(void);

int kmm_worker_load(const struct kmm_module_config *cfg, const struct kmm_worker_opts *opts,
		    struct kmm_error **err);
int kmm_worker_unload(const struct kmm_module_config *cfg, const struct kmm_worker_opts *opts,
		      struct kmm_error **err);

/*
 * Runs modprobe (KMM_MODPROBE from the environment, else `modprobe` from PATH)
 * with argv[1..] (argv[0] is ignored), logging its output line by line.
 * A stop signal is forwarded to it. Returns 0, or a negative errno with *err
 * holding modprobe's last output line.
 */
int kmm_worker_run_modprobe(char *const *args, struct kmm_error **err);

/* The same for any program, its output logged with message `tag`. */
int kmm_worker_run(const char *prog, const char *tag, char *const *args, struct kmm_error **err);

#endif
