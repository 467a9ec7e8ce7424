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
#include "kmm/shared-error.h"

struct dec {
	unsigned flags;
	struct kmm_error **err;
	unsigned variant; /* the codec variant being decoded (codec-internal.h) */
};

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

int dec_string(struct dec *d, const json_t *obj, const char *path, const char *key, char **ret);
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
/* The same for a value already at hand, `p` being its path. */
int dec_local_ref_at(struct dec *d, const json_t *v, const char *p, char **ret);
/* Any JSON value of the given type (JSON_ARRAY / JSON_OBJECT), copied. */
int dec_json(struct dec *d, const json_t *obj, const char *path, const char *key, json_type type,
	     json_t **ret);
/* metadata: name (required unless generateName), namespace, generation, the whole object. */
int dec_metadata(struct dec *d, const json_t *root, bool namespaced, char **ret_name,
		 char **ret_namespace, int64_t *ret_generation, json_t **ret_metadata);
/* apiVersion and kind, when present, name `kind` in one of `versions`. */
int dec_type_meta(struct dec *d, const json_t *root, const char *kind, const char *const *versions);

/* Encoders: add key to obj only when the value is non-empty. 0 or -ENOMEM. */
int enc_str(json_t *obj, const char *key, const char *s);
int enc_str_always(json_t *obj, const char *key, const char *s);
int enc_strv_always(json_t *obj, const char *key, char *const *v);
int enc_new(json_t *obj, const char *key, json_t *value);  /* steals value, NULL -> -ENOMEM */
int enc_json(json_t *obj, const char *key, json_t *value); /* borrowed, NULL skipped */
/* A new object holding a copy of `unknown` (or empty); NULL on ENOMEM. */
json_t *enc_begin(const json_t *unknown);

bool str_equal(const char *a, const char *b);
bool str_empty(const char *s);

#endif
