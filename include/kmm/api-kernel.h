/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel versions, the kernel-mapping regexp gate, and resolution of a
 * Module's kernelMappings for one kernel (reference §2).
 */
#ifndef KMM_KERNEL_H
#define KMM_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kmm/api.h"
#include "kmm/shared-error.h"
#include "kmm/shared-macro.h"

/* Node kernel string as KMM uses it: one trailing '+' removed. New heap string or NULL. */
char *kmm_kernel_trim(const char *node_kernel);

/*
 * The template variables of a kernel: normalized (chars outside
 * [A-Za-z0-9._-] become '_'), split on [.,-]; fewer than 3 fields is -EINVAL.
 */
struct kmm_kernel_vars {
	char *full; /* KERNEL_FULL_VERSION and KERNEL_VERSION */
	char *xyz;  /* KERNEL_XYZ */
	char *x, *y, *z;
};
int kmm_kernel_vars_init(struct kmm_kernel_vars *v, const char *kernel, struct kmm_error **err);
void kmm_kernel_vars_done(struct kmm_kernel_vars *v);

/*
 * Expands a template with the kernel variables and, when mod_name is not
 * NULL, MOD_NAME and MOD_NAMESPACE (container images only).
 */
int kmm_kernel_expand(const char *tmpl, const struct kmm_kernel_vars *kv, const char *mod_name,
		      const char *mod_namespace, char **ret, struct kmm_error **err);

/* ------------------------------------------------------------------------- */
/* Regexps with Go RE2 semantics on PCRE2                                     */

struct kmm_regexp;

/*
 * Checks `pattern` against what Go's regexp (RE2 syntax) accepts and compiles
 * it with PCRE2 (UTF, DOLLAR_ENDONLY, NEVER_BACKSLASH_C) under match limits.
 * Rejected: back-references, lookaround, atomic groups, possessive and nested
 * quantifiers, recursion and subroutine calls, conditionals, callouts,
 * \Z \G \K \R \X \C \g \k \h \N \e..., flags other than imsU, repeat counts
 * over 1000. The message says what and where: "unsupported lookahead (?= at
 * offset 3".
 */
int kmm_regexp_compile(const char *pattern, struct kmm_regexp **ret, struct kmm_error **err);
/* The gate alone (no compilation). */
int kmm_regexp_check(const char *pattern, struct kmm_error **err);
/* Unanchored search, like Go's MatchString. Returns 1, 0, or -errno (limits hit). */
int kmm_regexp_match(const struct kmm_regexp *re, const char *subject);
void kmm_regexp_free(struct kmm_regexp *re);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_regexp *, kmm_regexp_free)

/* ------------------------------------------------------------------------- */
/* Kernel mapping resolution                                                  */

/* The outcome of resolving a Module for one kernel (all fields owned). */
struct kmm_resolved_mapping {
	size_t index;		 /* kernelMappings[index] matched */
	char *kernel;		 /* the kernel string matched against (trimmed) */
	char *reason;		 /* e.g. "kernelMappings[1]: regexp \"^6\\.1\" matches" */
	char *container_image;	 /* templated */
	struct kmm_build *build; /* merged; NULL when no build */
	struct kmm_sign *sign;	 /* merged; unsignedImage and filesToSign templated */
	struct kmm_tls_options registry_tls;
	char **in_tree_modules_to_remove; /* final list (deprecated form folded in) */
};
void kmm_resolved_mapping_free(struct kmm_resolved_mapping *r);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_resolved_mapping *, kmm_resolved_mapping_free)

/*
 * Compiled patterns of one Module generation. Build one per (Module,
 * generation) and reuse it for every node; it is immutable after creation
 * and may be shared by threads (pcre2 code is read-only; match data is per
 * call).
 */
struct kmm_mapper;
int kmm_mapper_new(const struct kmm_module *m, struct kmm_mapper **ret, struct kmm_error **err);
int64_t kmm_mapper_generation(const struct kmm_mapper *mp);
void kmm_mapper_free(struct kmm_mapper *mp);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_mapper *, kmm_mapper_free)

/*
 * Resolves `node_kernel` (trailing '+' trimmed here) for Module m with the
 * patterns of mp (which must come from m). Returns 1 and *ret on a match, 0
 * when no mapping matches (the node is not targeted), negative on error (bad
 * kernel string, template error).
 */
int kmm_mapper_resolve(const struct kmm_mapper *mp, const struct kmm_module *m,
		       const char *node_kernel, struct kmm_resolved_mapping **ret,
		       struct kmm_error **err);

/*
 * A cache of mappers keyed by namespace/name, rebuilt when the Module's
 * generation changes. Thread-safe.
 */
struct kmm_mapper_cache;
struct kmm_mapper_cache *kmm_mapper_cache_new(void);
/* Resolves through the cached mapper of m (building it when missing or stale). */
int kmm_mapper_cache_resolve(struct kmm_mapper_cache *c, const struct kmm_module *m,
			     const char *node_kernel, struct kmm_resolved_mapping **ret,
			     struct kmm_error **err);
/* Drops the entry of a deleted Module. */
void kmm_mapper_cache_forget(struct kmm_mapper_cache *c, const char *ns, const char *name);
/* Number of compilations performed so far (for tests and metrics). */
uint64_t kmm_mapper_cache_compilations(const struct kmm_mapper_cache *c);
void kmm_mapper_cache_free(struct kmm_mapper_cache *c);

/*
 * The NMC entry config the Module reconciler writes for a resolved mapping
 * (kernelVersion, image, pull policy, insecurePull, in-tree list, modprobe).
 */
int kmm_module_config_for(const struct kmm_module *m, const struct kmm_resolved_mapping *r,
			  struct kmm_module_config **ret, struct kmm_error **err);

/*
 * The modprobe command lines the worker runs for a config (reference §4.2,
 * §4.3), as argv vectors starting with "modprobe". The load vector for
 * in-tree removal is NULL when nothing is to be removed.
 */
int kmm_modprobe_load_argv(const struct kmm_module_config *c, char ***ret);
int kmm_modprobe_unload_argv(const struct kmm_module_config *c, char ***ret);
int kmm_modprobe_in_tree_argv(const struct kmm_module_config *c, char ***ret);

#endif
