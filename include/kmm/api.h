/* SPDX-License-Identifier: Apache-2.0 */
/*
 * C model of the kmm.sigs.x-k8s.io API: Module, NodeModulesConfig (and its
 * per-module ModuleConfig, which is also the worker's config file),
 * ModuleImagesConfig, ModuleBuildSignConfig and PreflightValidation.
 *
 * Field names, defaults and JSON spellings are upstream KMM's (v1beta1; PFV
 * v1beta2). Every parser:
 *  - takes a jansson value it only borrows (nothing of it is kept except
 *    through json_incref()ed references documented per field);
 *  - applies the CRD defaults (e.g. modprobe.dirName = "/opt");
 *  - fails with -EINVAL and an error whose message starts with the JSON path
 *    of the offending field: "spec.moduleLoader.container.kernelMappings[2].regexp: ...";
 *  - with KMM_API_STRICT rejects unknown keys ("spec.foo: unknown field");
 *    without it keeps them in the `unknown` member of the struct that held
 *    them, and the serializer writes them back, so a read-modify-write never
 *    loses a field added by a newer CRD.
 *
 * Embedded Kubernetes core types that kmm only passes through (volumes, env,
 * resources, DRA selectors...) are kept as json_t references (`json_t *`),
 * owned by the struct (one reference each).
 *
 * Ownership: a parsed object is owned by the caller and freed with the
 * matching *_free() function (NULL-safe). Strings are heap copies; a NULL
 * string means "absent" (Go's empty string serializes the same way).
 */
#ifndef KMM_API_H
#define KMM_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kmm/shared-error.h"
#include "kmm/shared-macro.h"

#define KMM_API_GROUP "kmm.sigs.x-k8s.io"
#define KMM_API_VERSION "kmm.sigs.x-k8s.io/v1beta1"
#define KMM_API_VERSION_V1BETA2 "kmm.sigs.x-k8s.io/v1beta2"

#define KMM_DEFAULT_DIR_NAME "/opt"
#define KMM_DEFAULT_PULL_POLICY "IfNotPresent"

/* Labels and annotations shared with upstream (reference §3.14). */
#define KMM_LABEL_NAMESPACE_CONTAINS_MODULES "kmm.node.k8s.io/contains-modules"
#define KMM_LABEL_MODULE_NAME "kmm.node.kubernetes.io/module.name"
#define KMM_LABEL_MODULE_NAMESPACE "kmm.node.kubernetes.io/module.namespace"
#define KMM_FINALIZER_MODULE "kmm.node.kubernetes.io/module-finalizer"

/* Parse flags. */
enum {
	/* Reject keys the schema does not know (kmmctl validate, worker config). */
	KMM_API_STRICT = 1 << 0,
	/*
	 * The JSON came from YAML through a YAML 1.2 converter: accept the YAML 1.1
	 * boolean spellings (yes/no/on/off/y/n in any of the cases sigs.k8s.io/yaml
	 * accepts) as strings where a boolean is expected.
	 */
	KMM_API_YAML_BOOLS = 1 << 1,
};

/* ------------------------------------------------------------------------- */
/* Small shared types                                                        */

/* A string map (map[string]string), insertion order kept. */
struct kmm_strmap {
	size_t n;
	char **keys;
	char **values;
};

/* TLSOptions. */
struct kmm_tls_options {
	bool insecure;
	bool insecure_skip_tls_verify;
	json_t *unknown;
};

/*
 * ModprobeArgs: either list may be left out (NULL: no extra flags on that
 * side); one that is given has at least 1 item (the CRD's minItems).
 */
struct kmm_modprobe_args {
	char **load;   /* strv, NULL when absent */
	char **unload; /* strv, NULL when absent */
	json_t *unknown;
};

/* ModprobeSpec. */
struct kmm_modprobe_spec {
	char *module_name;
	char *dir_name; /* defaulted to "/opt" */
	char **parameters;
	struct kmm_modprobe_args *args;	    /* NULL when absent */
	struct kmm_modprobe_args *raw_args; /* NULL when absent */
	char *firmware_path;
	char **modules_loading_order;
	json_t *unknown;
};

/*
 * ModuleConfig: NodeModulesConfig spec.modules[].config / status.modules[].config
 * and the file `kmm-worker kmod load|unload CONFIG` reads.
 */
struct kmm_module_config {
	char *kernel_version;
	char *container_image;
	char *image_pull_policy; /* defaulted to "IfNotPresent" */
	bool insecure_pull;
	char **in_tree_modules_to_remove;
	char *in_tree_module_to_remove; /* deprecated single form */
	struct kmm_modprobe_spec modprobe;
	json_t *unknown;
};

/*
 * Parses a ModuleConfig. `path` prefixes error messages ("" or NULL for a
 * top-level document, e.g. "spec.modules[0].config"). Required keys:
 * kernelVersion, containerImage, modprobe. On success stores a new object in
 * *ret.
 */
int kmm_module_config_from_json(const json_t *j, const char *path, unsigned flags,
				struct kmm_module_config **ret, struct kmm_error **err);

/*
 * Serializes to a new JSON object (jansson reference owned by the caller),
 * or NULL on ENOMEM. Key spellings and omitempty behaviour follow upstream.
 */
json_t *kmm_module_config_to_json(const struct kmm_module_config *c);

/*
 * Parses the worker's config file content (YAML or JSON text of one
 * ModuleConfig, strict decoding, YAML 1.1 booleans accepted). `origin` names
 * the file in messages.
 */
int kmm_module_config_parse(const char *text, size_t len, const char *origin,
			    struct kmm_module_config **ret, struct kmm_error **err);

/*
 * Parses kmm-worker's config file content (kmm_module_config_parse(), with
 * JSON decoded by jansson first, as the operator writes it) and checks it
 * with kmm_worker_config_check(). `origin` names the file in messages.
 */
int kmm_worker_config_parse(const char *text, size_t len, const char *origin,
			    struct kmm_module_config **ret, struct kmm_error **err);
/* -EINVAL naming `origin` when the config has neither moduleName nor rawArgs. */
int kmm_worker_config_check(const struct kmm_module_config *cfg, const char *origin,
			    struct kmm_error **err);

/* Deep equality of two configs (the NMC reconciler's spec == status test). */
bool kmm_module_config_equal(const struct kmm_module_config *a, const struct kmm_module_config *b);
/* Two ModuleConfig JSON values that mean the same config; false if either does not parse. */
bool kmm_module_config_json_equal(const json_t *a, const json_t *b);

void kmm_module_config_free(struct kmm_module_config *c);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_module_config *, kmm_module_config_free)

/* ------------------------------------------------------------------------- */
/* Module                                                                    */

/* core/v1 Toleration, typed because the webhook validates it. */
struct kmm_toleration {
	char *key;
	char *operator; /* "", "Equal", "Exists" */
	char *value;
	char *effect;
	bool has_toleration_seconds;
	int64_t toleration_seconds;
	json_t *unknown;
};

struct kmm_build_arg {
	char *name;
	char *value;
	json_t *unknown;
};

struct kmm_build {
	char *dockerfile_config_map; /* LocalObjectReference.name; NULL when absent */
	size_t n_build_args;
	struct kmm_build_arg *build_args;
	char **secrets; /* LocalObjectReference names */
	struct kmm_tls_options base_image_registry_tls;
	bool has_kaniko_params;
	char *kaniko_tag;
	struct kmm_strmap selector;
	json_t *unknown;
};

struct kmm_sign {
	char *unsigned_image;
	struct kmm_tls_options unsigned_image_registry_tls;
	char *key_secret;  /* LocalObjectReference name, NULL when absent */
	char *cert_secret; /* LocalObjectReference name, NULL when absent */
	char **files_to_sign;
	json_t *unknown;
};

struct kmm_kernel_mapping {
	char *literal;
	char *regexp;
	char *container_image;
	struct kmm_build *build;	      /* NULL when absent */
	struct kmm_sign *sign;		      /* NULL when absent */
	struct kmm_tls_options *registry_tls; /* NULL = inherit */
	bool has_in_tree_modules_to_remove;   /* distinguishes [] from absent */
	char **in_tree_modules_to_remove;
	char *in_tree_module_to_remove;
	json_t *unknown;
};

struct kmm_module_loader_container {
	struct kmm_modprobe_spec modprobe;
	size_t n_kernel_mappings;
	struct kmm_kernel_mapping *kernel_mappings;
	char *container_image;
	char *image_pull_policy; /* not defaulted on Module */
	struct kmm_build *build;
	struct kmm_sign *sign;
	struct kmm_tls_options registry_tls;
	char *version;
	bool has_in_tree_modules_to_remove;
	char **in_tree_modules_to_remove;
	char *in_tree_module_to_remove;
	json_t *unknown;
};

struct kmm_module_loader {
	struct kmm_module_loader_container container;
	char *service_account_name;
	json_t *unknown;
};

/* CommonContainerSpec: image typed, the rest passed through. */
struct kmm_container_spec {
	char *image;
	char *image_pull_policy;
	json_t *command, *args, *env, *resources, *volume_mounts; /* NULL when absent */
	json_t *unknown;
};

/* DevicePluginSpec and DRASpec share this shape; DRA adds driver and classes. */
struct kmm_device_class {
	char *name;
	json_t *selectors; /* array, passed through */
	json_t *config;	   /* array, passed through */
	json_t *unknown;
};

struct kmm_plugin_spec {
	struct kmm_container_spec container;
	struct kmm_container_spec *init_container;
	char *service_account_name;
	json_t *volumes; /* array of core/v1 Volume, passed through */
	bool has_automount_sa_token;
	bool automount_sa_token;
	/* DRA only */
	char *driver_name;
	size_t n_device_classes;
	struct kmm_device_class *device_classes;
	json_t *unknown;
};

struct kmm_daemonset_status {
	int32_t nodes_matching_selector_number;
	int32_t desired_number;
	int32_t available_number;
	json_t *unknown;
};

struct kmm_module_spec {
	struct kmm_strmap selector;
	size_t n_tolerations;
	struct kmm_toleration *tolerations;
	struct kmm_module_loader *module_loader; /* NULL when absent (DP/DRA only) */
	struct kmm_plugin_spec *device_plugin;	 /* NULL when absent */
	struct kmm_plugin_spec *dra;		 /* NULL when absent */
	char *image_repo_secret;		 /* LocalObjectReference name */
	bool has_image_rebuild_trigger_generation;
	int64_t image_rebuild_trigger_generation;
	json_t *unknown;
};

struct kmm_module_status {
	struct kmm_daemonset_status module_loader, device_plugin, dra;
	bool has_image_rebuild_trigger_generation;
	int64_t image_rebuild_trigger_generation;
	json_t *conditions; /* kmm addition; array passed through, NULL when absent */
	json_t *unknown;
};

struct kmm_module {
	char *name;
	char *namespace;
	int64_t generation;
	json_t *metadata; /* the whole metadata object (one reference), never NULL after parse */
	struct kmm_module_spec spec;
	bool has_status;
	struct kmm_module_status status;
	json_t *unknown; /* unknown top-level keys */
};

/*
 * Parses a Module object (apiVersion kmm.sigs.x-k8s.io/v1beta1, kind Module).
 * Applies the CRD defaults. Does not run the webhook rules: see
 * kmm_module_validate(). metadata.namespace may be absent (kmmctl files);
 * callers that need one fill it in.
 */
int kmm_module_from_json(const json_t *j, unsigned flags, struct kmm_module **ret,
			 struct kmm_error **err);

/* Serializes to a new JSON object with apiVersion, kind, metadata, spec, status. */
json_t *kmm_module_to_json(const struct kmm_module *m);

void kmm_module_free(struct kmm_module *m);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_module *, kmm_module_free)

/*
 * The validating webhook's rules (reference §1.8), in upstream's order.
 * `old` is the stored object on UPDATE, NULL on CREATE. `k8s_minor` is the
 * apiserver's minor version for the DRA gate (1.x), or -1 to skip the gate
 * (hub, offline). Returns 0, or -EINVAL with a message naming the field path;
 * with `all` set every violation is reported (joined with "; "), otherwise
 * the first one, as upstream.
 */
int kmm_module_validate(const struct kmm_module *m, const struct kmm_module *old, int k8s_minor,
			bool all, struct kmm_error **err);

/*
 * The minor number of a Kubernetes 1.x version for the DRA gate: "1.34",
 * "v1.34.2" and a /version "minor" field ("34", "34+") all give 34. Returns -1
 * for anything else.
 */
int kmm_kube_version_minor(const char *version);

/* The internal tolerations KMM appends to every workload (§2.3). */
extern const char *const kmm_internal_toleration_keys[3];

/*
 * Whether a node with these labels (a JSON object, NULL for none) matches the
 * Module's selector. On false, *ret_term (may be NULL) is the index in
 * s->selector of the first term the labels do not carry.
 */
bool kmm_module_selects(const struct kmm_module_spec *s, const json_t *labels, size_t *ret_term);

/*
 * The first NoSchedule or NoExecute taint of taints (a JSON array of core/v1
 * Taint, NULL for none) that neither the Module's tolerations nor KMM's
 * internal ones tolerate, or NULL when the Module's pods can run on the node.
 */
const json_t *kmm_module_untolerated_taint(const struct kmm_module_spec *s, const json_t *taints);

/* ------------------------------------------------------------------------- */
/* NodeModulesConfig                                                         */

struct kmm_nmc_module {
	char *name;
	char *namespace;
	char *service_account_name;
	char *image_repo_secret;
	size_t n_tolerations;
	struct kmm_toleration *tolerations;
	char *version;
	struct kmm_module_config *config;
	char *boot_id;		    /* status only */
	char *last_transition_time; /* status only */
	json_t *unknown;
};

struct kmm_nmc {
	char *name;
	json_t *metadata;
	size_t n_spec_modules;
	struct kmm_nmc_module *spec_modules;
	size_t n_status_modules;
	struct kmm_nmc_module *status_modules;
	json_t *spec_unknown, *status_unknown;
	json_t *unknown;
};

int kmm_nmc_from_json(const json_t *j, unsigned flags, struct kmm_nmc **ret,
		      struct kmm_error **err);
json_t *kmm_nmc_to_json(const struct kmm_nmc *n);
void kmm_nmc_free(struct kmm_nmc *n);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_nmc *, kmm_nmc_free)

/* ------------------------------------------------------------------------- */
/* ModuleImagesConfig / ModuleBuildSignConfig                                */

struct kmm_module_image_spec {
	char *image;
	char *kernel_version;
	struct kmm_build *build;
	struct kmm_sign *sign;
	bool skip_wait_missing_image;
	struct kmm_tls_options *registry_tls;
	char *dir_name; /* defaulted to "/opt" */
	char *action;	/* MBSC only: BuildImage | SignImage */
	json_t *unknown;
};

struct kmm_image_state {
	char *image;
	char *
	    status; /* MIC: Exists|DoesNotExist|NeedsBuilding|NeedsSigning; MBSC: Success|Failure */
	char *action; /* MBSC only */
	json_t *unknown;
};

/* One struct for both kinds; `kind` says which. */
struct kmm_image_config {
	char *kind; /* "ModuleImagesConfig" or "ModuleBuildSignConfig" */
	char *name;
	char *namespace;
	json_t *metadata;
	size_t n_images;
	struct kmm_module_image_spec *images;
	char *image_repo_secret;
	char *image_pull_policy; /* MIC only, defaulted to IfNotPresent */
	bool push_built_image;
	bool has_image_rebuild_trigger_generation;
	int64_t image_rebuild_trigger_generation;
	size_t n_tolerations;
	struct kmm_toleration *tolerations;
	size_t n_states;
	struct kmm_image_state *states; /* MIC status.imagesStates / MBSC status.images */
	bool has_status_trigger_generation;
	int64_t status_trigger_generation;
	json_t *spec_unknown, *status_unknown;
	json_t *unknown;
};

int kmm_image_config_from_json(const json_t *j, unsigned flags, struct kmm_image_config **ret,
			       struct kmm_error **err);
json_t *kmm_image_config_to_json(const struct kmm_image_config *c);
void kmm_image_config_free(struct kmm_image_config *c);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_image_config *, kmm_image_config_free)

/* ------------------------------------------------------------------------- */
/* PreflightValidation                                                       */

struct kmm_pfv_module_status {
	char *name;
	char *namespace;
	char *verification_status; /* Success | Failure | InProgress */
	char *verification_stage;  /* Image | Done */
	char *status_reason;
	char *last_transition_time;
	json_t *unknown;
};

/* Always held in the v1beta2 (storage) shape. */
struct kmm_pfv {
	char *name;
	json_t *metadata;
	char *kernel_version;
	bool push_built_image;
	size_t n_modules;
	struct kmm_pfv_module_status *modules;
	json_t *spec_unknown, *status_unknown;
	json_t *unknown;
};

/*
 * Parses a PreflightValidation of either served version; v1beta1
 * status.crStatuses ("<ns>/<name>" keys) is converted to the v1beta2 list.
 */
int kmm_pfv_from_json(const json_t *j, unsigned flags, struct kmm_pfv **ret,
		      struct kmm_error **err);
/* Serializes as `api_version` (KMM_API_VERSION or KMM_API_VERSION_V1BETA2). */
json_t *kmm_pfv_to_json(const struct kmm_pfv *p, const char *api_version);
/* The PreflightValidation webhook rule: kernelVersion set and ≥ 3 fields. */
int kmm_pfv_validate(const struct kmm_pfv *p, struct kmm_error **err);
void kmm_pfv_free(struct kmm_pfv *p);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_pfv *, kmm_pfv_free)

/* ------------------------------------------------------------------------- */
/* Shared helpers                                                            */

void kmm_strmap_done(struct kmm_strmap *m);
/* Value for key, or NULL. */
const char *kmm_strmap_get(const struct kmm_strmap *m, const char *key);
/* Sets key (copying both); replaces an existing value. */
int kmm_strmap_set(struct kmm_strmap *m, const char *key, const char *value);

void kmm_build_free(struct kmm_build *b);
void kmm_sign_free(struct kmm_sign *s);
void kmm_modprobe_spec_done(struct kmm_modprobe_spec *m);
void kmm_toleration_done(struct kmm_toleration *t);

/* Deep copies (NULL on ENOMEM or NULL input). */
struct kmm_build *kmm_build_copy(const struct kmm_build *b);
struct kmm_sign *kmm_sign_copy(const struct kmm_sign *s);
int kmm_modprobe_spec_copy(struct kmm_modprobe_spec *dst, const struct kmm_modprobe_spec *src);

json_t *kmm_build_to_json(const struct kmm_build *b);
json_t *kmm_sign_to_json(const struct kmm_sign *s);
json_t *kmm_modprobe_spec_to_json(const struct kmm_modprobe_spec *m);
json_t *kmm_tolerations_to_json(const struct kmm_toleration *t, size_t n);

/*
 * Parses a YAML (or JSON) stream of manifests into a JSON array of documents
 * (kmm_yaml_parse with YAML 1.1 booleans, as kubectl), after checking that the
 * text is valid UTF-8 (YAML requires it; libfyaml 0.7.12 can loop forever on
 * a truncated UTF-8 sequence at the end of a directive line).
 */
int kmm_api_parse_manifests(const char *data, size_t len, const char *source, json_t **ret_docs,
			    struct kmm_error **err);

/* Reads a file (capped at max bytes) and parses it as kmm_api_parse_manifests(). */
int kmm_api_parse_manifest_file(const char *path, size_t max, json_t **ret_docs,
				struct kmm_error **err);

/*
 * Looks at a parsed document's apiVersion/kind and dispatches. Returns the
 * kind name (static string) in *ret_kind, NULL if not a kmm kind.
 */
const char *kmm_api_kind_of(const json_t *j);

#endif
