/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-fileio.h"
#include "kmm/shared-yaml.h"
#include "kmm/shared-strv.h"
#include "lib/api/decode.h"

char *path_key(const char *parent, const char *key)
{
	char *s = NULL;

	if (!parent || !*parent)
		return strdup(key);
	if (asprintf(&s, "%s.%s", parent, key) < 0)
		return NULL;
	return s;
}

char *path_index(const char *parent, size_t i)
{
	char *s = NULL;

	if (asprintf(&s, "%s[%zu]", parent ? parent : "", i) < 0)
		return NULL;
	return s;
}

bool str_empty(const char *s)
{
	return !s || !*s;
}

bool str_equal(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

int dec_oom(struct dec *d)
{
	return kmm_error_make(d->err, ENOMEM, "out of memory");
}

int dec_fail(struct dec *d, const char *path, const char *key, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL, *where = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r < 0)
		return dec_oom(d);
	where = key ? path_key(path, key) : strdup(path && *path ? path : "(root)");
	if (!where)
		return dec_oom(d);
	return kmm_error_make(d->err, EINVAL, "%s: %s", where, msg);
}

const char *dec_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "boolean";
	case JSON_NULL:
		return "null";
	}
	return "value";
}

const json_t *dec_get(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);

	return v && !json_is_null(v) ? v : NULL;
}

int dec_string(struct dec *d, const json_t *obj, const char *path, const char *key, char **ret)
{
	const json_t *v = dec_get(obj, key);
	char *s;

	if (!v)
		return 0;
	if (!json_is_string(v))
		return dec_fail(d, path, key, "expected a string, got %s", dec_type_name(v));
	if (memchr(json_string_value(v), '\0', json_string_length(v)))
		return dec_fail(d, path, key, "string contains a NUL character");
	s = strdup(json_string_value(v));
	if (!s)
		return dec_oom(d);
	free(*ret);
	*ret = s;
	return 0;
}

/* The spellings sigs.k8s.io/yaml (go-yaml v2, YAML 1.1) reads as booleans. */
static int yaml11_bool(const char *s, bool *ret)
{
	static const char *const yes[] = { "y",	 "Y",  "yes",  "Yes",  "YES", "on",
					   "On", "ON", "true", "True", "TRUE" };
	static const char *const no[] = { "n",	 "N",	"no",	 "No",	  "NO",	  "off",
					  "Off", "OFF", "false", "False", "FALSE" };

	for (size_t i = 0; i < KMM_ARRAY_SIZE(yes); i++)
		if (strcmp(s, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
	for (size_t i = 0; i < KMM_ARRAY_SIZE(no); i++)
		if (strcmp(s, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	return -EINVAL;
}

int dec_bool(struct dec *d, const json_t *obj, const char *path, const char *key, bool *ret)
{
	const json_t *v = dec_get(obj, key);
	bool b;

	if (!v)
		return 0;
	if (json_is_boolean(v)) {
		*ret = json_is_true(v);
		return 0;
	}
	if (json_is_string(v) && (d->flags & KMM_API_YAML_BOOLS) &&
	    yaml11_bool(json_string_value(v), &b) == 0) {
		*ret = b;
		return 0;
	}
	return dec_fail(d, path, key, "expected a boolean, got %s", dec_type_name(v));
}

int dec_int(struct dec *d, const json_t *obj, const char *path, const char *key, int64_t min,
	    int64_t max, bool *ret_has, int64_t *ret)
{
	const json_t *v = dec_get(obj, key);
	json_int_t i;

	if (!v)
		return 0;
	if (json_is_real(v)) {
		double x = json_real_value(v);

		/* Outside int64_t's range the cast below would be undefined: refuse first. */
		if (!(x >= -9223372036854775808.0 && x < 9223372036854775808.0) ||
		    x != (double)(int64_t)x)
			return dec_fail(d, path, key, "expected an integer, got %g", x);
		i = (json_int_t)x;
	} else if (json_is_integer(v)) {
		i = json_integer_value(v);
	} else {
		return dec_fail(d, path, key, "expected an integer, got %s", dec_type_name(v));
	}
	if (i < min || i > max)
		return dec_fail(d, path, key, "%lld is out of range [%lld, %lld]", (long long)i,
				(long long)min, (long long)max);
	*ret = i;
	if (ret_has)
		*ret_has = true;
	return 0;
}

int dec_strv(struct dec *d, const json_t *obj, const char *path, const char *key, bool *ret_has,
	     char ***ret)
{
	const json_t *v = dec_get(obj, key);
	_cleanup_strv_free_ char **out = NULL;
	size_t i;
	json_t *e;

	if (!v)
		return 0;
	if (!json_is_array(v))
		return dec_fail(d, path, key, "expected an array of strings, got %s",
				dec_type_name(v));
	out = calloc(1, sizeof(char *));
	if (!out)
		return dec_oom(d);
	json_array_foreach (v, i, e) {
		if (!json_is_string(e) ||
		    memchr(json_string_value(e), '\0', json_string_length(e))) {
			_cleanup_free_ char *k = NULL;
			char idx[32];

			snprintf(idx, sizeof(idx), "[%zu]", i);
			if (asprintf(&k, "%s%s", key, idx) < 0)
				return dec_oom(d);
			return dec_fail(d, path, k, "expected a string, got %s", dec_type_name(e));
		}
		if (kmm_strv_push(&out, json_string_value(e)) < 0)
			return dec_oom(d);
	}
	kmm_strv_free(*ret);
	*ret = TAKE_PTR(out);
	if (ret_has)
		*ret_has = true;
	return 0;
}

void kmm_strmap_done(struct kmm_strmap *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++) {
		free(m->keys[i]);
		free(m->values[i]);
	}
	free(m->keys);
	free(m->values);
	*m = (struct kmm_strmap){ 0 };
}

const char *kmm_strmap_get(const struct kmm_strmap *m, const char *key)
{
	for (size_t i = 0; m && i < m->n; i++)
		if (strcmp(m->keys[i], key) == 0)
			return m->values[i];
	return NULL;
}

int kmm_strmap_set(struct kmm_strmap *m, const char *key, const char *value)
{
	char **nk, **nv;
	char *k, *v;

	v = strdup(value ? value : "");
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->keys[i], key) == 0) {
			free(m->values[i]);
			m->values[i] = v;
			return 0;
		}
	k = strdup(key);
	if (!k) {
		free(v);
		return -ENOMEM;
	}
	nk = reallocarray(m->keys, m->n + 1, sizeof(char *));
	if (nk)
		m->keys = nk;
	nv = nk ? reallocarray(m->values, m->n + 1, sizeof(char *)) : NULL;
	if (nv)
		m->values = nv;
	if (!nk || !nv) {
		free(k);
		free(v);
		return -ENOMEM;
	}
	m->keys[m->n] = k;
	m->values[m->n] = v;
	m->n++;
	return 0;
}

int dec_strmap(struct dec *d, const json_t *obj, const char *path, const char *key,
	       struct kmm_strmap *ret)
{
	const json_t *v = dec_get(obj, key);
	struct kmm_strmap m = { 0 };
	const char *k;
	json_t *e;

	if (!v)
		return 0;
	if (!json_is_object(v))
		return dec_fail(d, path, key, "expected a map of strings, got %s",
				dec_type_name(v));
	json_object_foreach ((json_t *)v, k, e) {
		if (!json_is_string(e)) {
			_cleanup_free_ char *p = path_key(path, key);

			kmm_strmap_done(&m);
			if (!p)
				return dec_oom(d);
			return dec_fail(d, p, k, "expected a string, got %s", dec_type_name(e));
		}
		if (kmm_strmap_set(&m, k, json_string_value(e)) < 0) {
			kmm_strmap_done(&m);
			return dec_oom(d);
		}
	}
	kmm_strmap_done(ret);
	*ret = m;
	return 0;
}

int dec_local_ref_at(struct dec *d, const json_t *v, const char *p, char **ret)
{
	_cleanup_free_ char *name = NULL;
	const char *k;
	json_t *e;
	int r;

	if (!json_is_object(v))
		return dec_fail(d, p, NULL, "expected an object, got %s", dec_type_name(v));
	/* LocalObjectReference only ever has `name`; extra keys are dropped in lenient mode. */
	json_object_foreach ((json_t *)v, k, e)
		if (strcmp(k, "name") != 0 && (d->flags & KMM_API_STRICT))
			return dec_fail(d, p, k, "unknown field");
	r = dec_string(d, v, p, "name", &name);
	if (r < 0)
		return r;
	if (!name && !(name = strdup("")))
		return dec_oom(d);
	free(*ret);
	*ret = TAKE_PTR(name);
	return 0;
}

int dec_local_ref(struct dec *d, const json_t *obj, const char *path, const char *key, char **ret)
{
	_cleanup_free_ char *p = NULL;
	const json_t *v = dec_get(obj, key);

	if (!v)
		return 0;
	p = path_key(path, key);
	if (!p)
		return dec_oom(d);
	return dec_local_ref_at(d, v, p, ret);
}

int dec_json(struct dec *d, const json_t *obj, const char *path, const char *key, json_type type,
	     json_t **ret)
{
	const json_t *v = dec_get(obj, key);

	if (!v)
		return 0;
	if (json_typeof(v) != type)
		return dec_fail(d, path, key, "expected %s, got %s",
				type == JSON_ARRAY ? "an array" : "an object", dec_type_name(v));
	json_decref(*ret);
	*ret = json_deep_copy(v);
	if (!*ret)
		return dec_oom(d);
	return 0;
}

int enc_new(json_t *obj, const char *key, json_t *value)
{
	if (!value)
		return -ENOMEM;
	return json_object_set_new(obj, key, value) < 0 ? -ENOMEM : 0;
}

int enc_json(json_t *obj, const char *key, json_t *value)
{
	if (!value)
		return 0;
	return enc_new(obj, key, json_deep_copy(value));
}

int enc_str(json_t *obj, const char *key, const char *s)
{
	if (str_empty(s))
		return 0;
	return enc_new(obj, key, json_string(s));
}

int enc_str_always(json_t *obj, const char *key, const char *s)
{
	return enc_new(obj, key, json_string(s ? s : ""));
}

int enc_strv_always(json_t *obj, const char *key, char *const *v)
{
	json_t *a = json_array();

	if (!a)
		return -ENOMEM;
	KMM_STRV_FOREACH (s, v) {
		if (json_array_append_new(a, json_string(s)) < 0) {
			json_decref(a);
			return -ENOMEM;
		}
	}
	return enc_new(obj, key, a);
}

json_t *enc_begin(const json_t *unknown)
{
	return unknown ? json_deep_copy(unknown) : json_object();
}

/* ------------------------------------------------------------------------- */

int dec_metadata(struct dec *d, const json_t *root, bool namespaced, char **ret_name,
		 char **ret_namespace, int64_t *ret_generation, json_t **ret_metadata)
{
	const json_t *md = dec_get(root, "metadata");
	_cleanup_free_ char *name = NULL, *ns = NULL;
	int64_t gen = 0;
	int r;

	if (!md)
		return dec_fail(d, "", "metadata", "required field is missing");
	if (!json_is_object(md))
		return dec_fail(d, "", "metadata", "expected an object, got %s", dec_type_name(md));
	r = dec_string(d, md, "metadata", "name", &name);
	if (r >= 0 && namespaced)
		r = dec_string(d, md, "metadata", "namespace", &ns);
	if (r >= 0)
		r = dec_int(d, md, "metadata", "generation", INT64_MIN, INT64_MAX, NULL, &gen);
	if (r < 0)
		return r;
	if (str_empty(name) && !dec_get(md, "generateName"))
		return dec_fail(d, "metadata", "name", "required field is missing");
	if (!namespaced && dec_get(md, "namespace") &&
	    !str_empty(json_string_value(dec_get(md, "namespace"))))
		return dec_fail(d, "metadata", "namespace",
				"must not be set on a cluster-scoped object");
	json_decref(*ret_metadata);
	*ret_metadata = json_deep_copy(md);
	if (!*ret_metadata)
		return dec_oom(d);
	free(*ret_name);
	*ret_name = name ? TAKE_PTR(name) : strdup("");
	if (ret_namespace) {
		free(*ret_namespace);
		*ret_namespace = TAKE_PTR(ns);
	}
	if (ret_generation)
		*ret_generation = gen;
	if (!*ret_name)
		return dec_oom(d);
	return 0;
}

int dec_type_meta(struct dec *d, const json_t *root, const char *kind, const char *const *versions)
{
	const json_t *av, *k;

	if (!json_is_object(root))
		return dec_fail(d, "", NULL, "expected an object");
	av = dec_get(root, "apiVersion");
	k = dec_get(root, "kind");
	if (av && !json_is_string(av))
		return dec_fail(d, "", "apiVersion", "expected a string");
	if (k && !json_is_string(k))
		return dec_fail(d, "", "kind", "expected a string");
	if (k && strcmp(json_string_value(k), kind) != 0)
		return dec_fail(d, "", "kind", "expected %s, got \"%s\"", kind,
				json_string_value(k));
	if (av) {
		for (const char *const *v = versions; *v; v++)
			if (strcmp(json_string_value(av), *v) == 0)
				return 0;
		return dec_fail(d, "", "apiVersion", "unsupported apiVersion \"%s\" for %s",
				json_string_value(av), kind);
	}
	return 0;
}

const char *kmm_api_kind_of(const json_t *j)
{
	static const char *const kinds[] = { "Module", "NodeModulesConfig", "ModuleImagesConfig",
					     "ModuleBuildSignConfig", "PreflightValidation" };
	const char *av = json_string_value(json_object_get(j, "apiVersion"));
	const char *k = json_string_value(json_object_get(j, "kind"));

	if (!av || !k || strncmp(av, KMM_API_GROUP "/", strlen(KMM_API_GROUP) + 1) != 0)
		return NULL;
	for (size_t i = 0; i < KMM_ARRAY_SIZE(kinds); i++)
		if (strcmp(k, kinds[i]) == 0)
			return kinds[i];
	return NULL;
}

int kmm_api_parse_manifests(const char *data, size_t len, const char *source, json_t **ret_docs,
			    struct kmm_error **err)
{
	return kmm_yaml_parse(data ? data : "", len, source, KMM_YAML_BOOL_1_1, ret_docs, err);
}

int kmm_api_parse_manifest_file(const char *path, size_t max, json_t **ret_docs,
				struct kmm_error **err)
{
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	int r;

	r = kmm_read_file(path, max, &data, &len, err);
	if (r < 0)
		return r;
	return kmm_api_parse_manifests(data, len, path, ret_docs, err);
}
