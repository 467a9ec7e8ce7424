/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to lib/api: helpers that decode one JSON field into a C value and
 * report failures with the JSON path of the field. A "path" is the dotted
 * location of the object being decoded ("" for the document root).
 *
 * Every dec_* function leaves its out-parameter untouched on failure and
 * returns 0 (also when the key is absent or null), -EINVAL or -ENOMEM.
 */
#ifndef KMM_LIB_API_DECODE_H
#define KMM_LIB_API_DECODE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "kmm/api.h"
#include "kmm/error.h"

struct dec {
	unsigned flags;
	struct kmm_error **err;
	unsigned variant; /* the codec variant being decoded (codec-internal.h) */
};

/* True when obj has no `key` or it is JSON null (the apiserver treats both alike). */
static inline bool dec_missing(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);

	return !v || json_is_null(v);
}

/* "parent.key" (or "key" for the root); NULL on ENOMEM. */
char *path_key(const char *parent, const char *key);
/* "parent[i]"; NULL on ENOMEM. */
char *path_index(const char *parent, size_t i);

/* Fails with "<path>.<key>: <message>". Returns -EINVAL. */
int dec_fail(struct dec *d, const char *path, const char *key, const char *fmt, ...) _printf_(4, 5);
int dec_oom(struct dec *d);
/* "object", "string"... for messages. */
const char *dec_type_name(const json_t *v);
/* The value of key in obj, NULL when absent or JSON null (the apiserver treats both alike). */
const json_t *dec_get(const json_t *obj, const char *key);

/*
 * Checks that `obj` is an object. NULL/null is accepted when `optional`.
 * Returns 1 if present, 0 if absent, negative on error.
 */
int dec_object(struct dec *d, const json_t *obj, const char *path, const char *key);

/*
 * Collects the keys of obj not in `known` (NULL-terminated). In strict mode
 * they are an error; otherwise they are copied into *ret_unknown (NULL when
 * none).
 */
int dec_unknown(struct dec *d, const json_t *obj, const char *path, const char *const *known,
		json_t **ret_unknown);

int dec_string(struct dec *d, const json_t *obj, const char *path, const char *key, char **ret);
/* Like dec_string, failing when the key is absent. */
int dec_string_req(struct dec *d, const json_t *obj, const char *path, const char *key, char **ret);
int dec_bool(struct dec *d, const json_t *obj, const char *path, const char *key, bool *ret);
/* *ret_has set to whether the key was present. */
int dec_int(struct dec *d, const json_t *obj, const char *path, const char *key, int64_t min,
	    int64_t max, bool *ret_has, int64_t *ret);
/* []string; *ret_has (may be NULL) tells [] from absent. */
int dec_strv(struct dec *d, const json_t *obj, const char *path, const char *key, bool *ret_has,
	     char ***ret);
int dec_strmap(struct dec *d, const json_t *obj, const char *path, const char *key,
	       struct kmm_strmap *ret);
/* LocalObjectReference {name}: stores the name ("" if the object has none). */
int dec_local_ref(struct dec *d, const json_t *obj, const char *path, const char *key, char **ret);
/* Any JSON value of the given type (JSON_ARRAY / JSON_OBJECT), referenced. */
/* The same for a value already at hand, `p` being its path. */
int dec_local_ref_at(struct dec *d, const json_t *v, const char *p, char **ret);
int dec_json(struct dec *d, const json_t *obj, const char *path, const char *key, json_type type,
	     json_t **ret);

/* Encoders: add key to obj only when the value is non-empty. 0 or -ENOMEM. */
int enc_str(json_t *obj, const char *key, const char *s);
int enc_str_always(json_t *obj, const char *key, const char *s);
int enc_strv(json_t *obj, const char *key, char *const *v);
int enc_strv_always(json_t *obj, const char *key, char *const *v);
int enc_strmap(json_t *obj, const char *key, const struct kmm_strmap *m);
int enc_local_ref(json_t *obj, const char *key, const char *name);
int enc_new(json_t *obj, const char *key, json_t *value);  /* steals value, NULL -> -ENOMEM */
int enc_json(json_t *obj, const char *key, json_t *value); /* borrowed, NULL skipped */
/* A new object holding a copy of `unknown` (or empty); NULL on ENOMEM. */
json_t *enc_begin(const json_t *unknown);

int dec_tls(struct dec *d, const json_t *obj, const char *path, const char *key,
	    struct kmm_tls_options *ret, bool *ret_has);
json_t *enc_tls(const struct kmm_tls_options *t);
void tls_done(struct kmm_tls_options *t);

int dec_tolerations(struct dec *d, const json_t *obj, const char *path, const char *key,
		    struct kmm_toleration **ret, size_t *ret_n);
int dec_modprobe(struct dec *d, const json_t *obj, const char *path, const char *key,
		 struct kmm_modprobe_spec *ret);
int dec_build(struct dec *d, const json_t *obj, const char *path, const char *key,
	      struct kmm_build **ret);
int dec_sign(struct dec *d, const json_t *obj, const char *path, const char *key,
	     struct kmm_sign **ret);
int dec_metadata(struct dec *d, const json_t *root, bool namespaced, char **ret_name,
		 char **ret_namespace, int64_t *ret_generation, json_t **ret_metadata);
int dec_type_meta(struct dec *d, const json_t *root, const char *kind, const char *const *versions);

bool strv_equal(char *const *a, char *const *b);
bool str_equal(const char *a, const char *b);
bool str_empty(const char *s);
#define strempty str_empty

#endif
