/* SPDX-License-Identifier: Apache-2.0 */
/* The field-table engine behind every kind's decoder, encoder and destructor. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-strv.h"
#include "lib/api/codec-internal.h"

#define MEMBER(base, off, type) ((type *)(void *)((char *)(base) + (off)))
#define CMEMBER(base, off, type) ((const type *)(const void *)((const char *)(base) + (off)))

static bool in_variant(const struct codec_field *f, unsigned variant)
{
	return f->variants == 0 || (f->variants & variant);
}

static const struct codec_field *find_field(const struct codec *c, const char *key,
					    unsigned variant)
{
	for (size_t i = 0; i < c->n_fields; i++)
		if (in_variant(&c->fields[i], variant) && strcmp(c->fields[i].key, key) == 0)
			return &c->fields[i];
	return NULL;
}

/* "expected an object" for `v` at path.key (key NULL: at path itself). */
static int fail_not_object(struct dec *d, const struct codec *c, const json_t *v, const char *path,
			   const char *key)
{
	if (c->terse)
		return dec_fail(d, path, key, "expected an object");
	return dec_fail(d, path, key, "expected an object, got %s", dec_type_name(v));
}

/* ------------------------------------------------------------------------- */
/* Decoding                                                                  */

static int decode_unknown(struct dec *d, const struct codec *c, const json_t *obj, const char *path,
			  void *base)
{
	json_t *unknown = NULL;
	const char *k;
	json_t *v;

	json_object_foreach ((json_t *)obj, k, v) {
		if (find_field(c, k, d->variant))
			continue;
		if (d->flags & KMM_API_STRICT) {
			json_decref(unknown);
			return dec_fail(d, path, k, "unknown field");
		}
		if (c->drop_unknown)
			continue;
		if (!unknown && !(unknown = json_object()))
			return dec_oom(d);
		if (json_object_set_new(unknown, k, json_deep_copy(v)) < 0) {
			json_decref(unknown);
			return dec_oom(d);
		}
	}
	if (!c->drop_unknown) {
		json_decref(*MEMBER(base, c->unknown, json_t *));
		*MEMBER(base, c->unknown, json_t *) = unknown;
	}
	return 0;
}

/* "must be A, B or C" */
static int fail_one_of(struct dec *d, const struct codec_field *f, const char *path,
		       const char *value)
{
	_cleanup_free_ char *list = NULL;
	size_t n = kmm_strv_length((char *const *)f->one_of);
	FILE *m;
	size_t len;

	m = open_memstream(&list, &len);
	if (!m)
		return dec_oom(d);
	for (size_t i = 0; i < n; i++)
		fprintf(m, "%s%s", i == 0 ? "" : i + 1 == n ? " or " : ", ", f->one_of[i]);
	if (fclose(m) != 0)
		return dec_oom(d);
	return dec_fail(d, path, f->key, "unsupported value \"%s\": must be %s", value, list);
}

/* A string field's CRD default and allowed values. */
static int string_rules(struct dec *d, const struct codec_field *f, const char *path, void *base)
{
	char **s = MEMBER(base, f->offset, char *);

	if (f->def && (!*s || ((f->flags & CODEC_DEFAULT_EMPTY) && !**s))) {
		free(*s);
		*s = strdup(f->def);
		return *s ? 0 : dec_oom(d);
	}
	if (!f->one_of || !*s || ((f->flags & CODEC_EMPTY_OK) && !**s))
		return 0;
	for (const char *const *v = f->one_of; *v; v++)
		if (strcmp(*v, *s) == 0)
			return 0;
	return fail_one_of(d, f, path, *s);
}

static int decode_local_refs(struct dec *d, const json_t *obj, const char *path, const char *key,
			     char ***ret)
{
	const json_t *v = dec_get(obj, key);
	_cleanup_strv_free_ char **names = NULL;
	_cleanup_free_ char *p = NULL;
	size_t i;
	json_t *e;

	if (!v)
		return 0;
	if (!json_is_array(v))
		return dec_fail(d, path, key, "expected an array");
	p = path_key(path, key);
	names = calloc(1, sizeof(char *));
	if (!p || !names)
		return dec_oom(d);
	json_array_foreach (v, i, e) {
		_cleanup_free_ char *pi = path_index(p, i), *name = NULL;
		int r;

		if (!pi)
			return dec_oom(d);
		r = dec_local_ref_at(d, e, pi, &name);
		if (r < 0)
			return r;
		if (kmm_strv_consume(&names, name) < 0)
			return dec_oom(d);
		name = NULL; /* owned by names now */
	}
	kmm_strv_free(*ret);
	*ret = TAKE_PTR(names);
	return 0;
}

static int decode_nested(struct dec *d, const struct codec_field *f, const json_t *v,
			 const char *path, void *base)
{
	unsigned saved = d->variant;
	int r;

	if (f->nested_variant)
		d->variant = f->nested_variant;
	r = codec_decode(d, f->nested, v, path, base);
	d->variant = saved;
	return r;
}

static int decode_object(struct dec *d, const struct codec_field *f, const json_t *v,
			 const char *path, void *base)
{
	_cleanup_free_ char *p = NULL;
	void *target = MEMBER(base, f->offset, char);

	if (!json_is_object(v))
		return fail_not_object(d, f->nested, v, path, f->key);
	p = path_key(path, f->key);
	if (!p)
		return dec_oom(d);
	if (f->type == CODEC_OBJECT_PTR) {
		void **ptr = MEMBER(base, f->offset, void *);

		*ptr = calloc(1, f->nested->size);
		if (!*ptr)
			return dec_oom(d);
		target = *ptr;
	}
	if (f->flags & CODEC_HAS)
		*MEMBER(base, f->has, bool) = true;
	return decode_nested(d, f, v, p, target);
}

static int decode_array(struct dec *d, const struct codec_field *f, const json_t *v,
			const char *path, void *base)
{
	void **items = MEMBER(base, f->offset, void *);
	size_t *count = MEMBER(base, f->count, size_t);
	size_t n = json_array_size(v), sz = f->nested->size;
	_cleanup_free_ char *p = NULL;

	if (!json_is_array(v)) {
		if (f->flags & CODEC_SAY_TYPE)
			return dec_fail(d, path, f->key, "expected an array, got %s",
					dec_type_name(v));
		return dec_fail(d, path, f->key, "expected an array");
	}
	if (n < f->min_items)
		return dec_fail(d, path, f->key, "must have at least %zu item%s", f->min_items,
				f->min_items == 1 ? "" : "s");
	p = path_key(path, f->key);
	if (!p)
		return dec_oom(d);
	*items = calloc(n ? n : 1, sz);
	if (!*items)
		return dec_oom(d);
	*count = n;
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *pi = path_index(p, i);
		const json_t *e = json_array_get(v, i);
		int r;

		if (!pi)
			return dec_oom(d);
		if (!json_is_object(e))
			return fail_not_object(d, f->nested, e, pi, NULL);
		r = decode_nested(d, f, e, pi, (char *)*items + i * sz);
		if (r < 0)
			return r;
	}
	return 0;
}

static int decode_int(struct dec *d, const struct codec_field *f, const json_t *obj,
		      const char *path, void *base)
{
	bool *has = f->flags & CODEC_HAS ? MEMBER(base, f->has, bool) : NULL;
	int64_t v = 0;
	int r;

	if (f->type == CODEC_INT64)
		return dec_int(d, obj, path, f->key, INT64_MIN, INT64_MAX, has,
			       MEMBER(base, f->offset, int64_t));
	r = dec_int(d, obj, path, f->key, INT32_MIN, INT32_MAX, has, &v);
	if (r >= 0 && dec_get(obj, f->key))
		*MEMBER(base, f->offset, int32_t) = (int32_t)v;
	return r;
}

static int decode_field(struct dec *d, const struct codec_field *f, const json_t *obj,
			const char *path, void *base)
{
	const json_t *v = dec_get(obj, f->key);
	const struct codec_meta *m = f->meta;

	if (!v && (f->flags & CODEC_REQUIRED) && f->type != CODEC_METADATA)
		return dec_fail(d, path, f->key, "required field is missing");
	switch (f->type) {
	case CODEC_STRING: {
		int r = dec_string(d, obj, path, f->key, MEMBER(base, f->offset, char *));

		if (r < 0 || (f->flags & CODEC_LATE))
			return r;
		return string_rules(d, f, path, base);
	}
	case CODEC_BOOL:
		if (v && (f->flags & CODEC_HAS))
			*MEMBER(base, f->has, bool) = true;
		return dec_bool(d, obj, path, f->key, MEMBER(base, f->offset, bool));
	case CODEC_INT32:
	case CODEC_INT64:
		return decode_int(d, f, obj, path, base);
	case CODEC_STRV:
		return dec_strv(d, obj, path, f->key,
				f->flags & CODEC_HAS ? MEMBER(base, f->has, bool) : NULL,
				MEMBER(base, f->offset, char **));
	case CODEC_STRMAP:
		return dec_strmap(d, obj, path, f->key, MEMBER(base, f->offset, struct kmm_strmap));
	case CODEC_LOCAL_REF:
		return dec_local_ref(d, obj, path, f->key, MEMBER(base, f->offset, char *));
	case CODEC_LOCAL_REFS:
		return decode_local_refs(d, obj, path, f->key, MEMBER(base, f->offset, char **));
	case CODEC_JSON_ARRAY:
	case CODEC_JSON_OBJECT:
		return dec_json(d, obj, path, f->key,
				f->type == CODEC_JSON_ARRAY ? JSON_ARRAY : JSON_OBJECT,
				MEMBER(base, f->offset, json_t *));
	case CODEC_CONST:
		return 0;
	case CODEC_METADATA:
		return dec_metadata(d, obj, m->namespaced, MEMBER(base, m->name, char *),
				    m->has_namespace ? MEMBER(base, m->namespace, char *) : NULL,
				    m->has_generation ? MEMBER(base, m->generation, int64_t) : NULL,
				    MEMBER(base, f->offset, json_t *));
	case CODEC_OBJECT:
	case CODEC_OBJECT_PTR:
		return v ? decode_object(d, f, v, path, base) : 0;
	case CODEC_ARRAY:
		return v ? decode_array(d, f, v, path, base) : 0;
	case CODEC_CUSTOM:
		return f->custom->decode(d, obj, path, f->key, base);
	}
	return dec_fail(d, path, f->key, "unsupported field type");
}

static int decode_one(struct dec *d, const struct codec_field *f, const json_t *obj,
		      const char *path, void *base)
{
	int r = decode_field(d, f, obj, path, base);

	if (r >= 0 && f->check)
		r = f->check(d, base, path);
	return r;
}

int codec_decode(struct dec *d, const struct codec *c, const json_t *obj, const char *path,
		 void *base)
{
	int r = decode_unknown(d, c, obj, path, base);

	if (c->decode_order) {
		for (const char *const *k = c->decode_order; *k && r >= 0; k++) {
			const struct codec_field *f = find_field(c, *k, d->variant);

			if (f)
				r = decode_one(d, f, obj, path, base);
		}
	} else {
		for (size_t i = 0; i < c->n_fields && r >= 0; i++)
			if (in_variant(&c->fields[i], d->variant))
				r = decode_one(d, &c->fields[i], obj, path, base);
	}
	for (size_t i = 0; i < c->n_fields && r >= 0; i++)
		if ((c->fields[i].flags & CODEC_LATE) && in_variant(&c->fields[i], d->variant))
			r = string_rules(d, &c->fields[i], path, base);
	if (r >= 0 && c->finish)
		r = c->finish(d, base, path);
	return r;
}

int codec_decode_new(struct dec *d, const struct codec *c, const json_t *obj, const char *path,
		     void **ret)
{
	void *base;
	int r;

	if (!json_is_object(obj))
		return fail_not_object(d, c, obj, path, NULL);
	base = calloc(1, c->size);
	if (!base)
		return dec_oom(d);
	r = codec_decode(d, c, obj, path, base);
	if (r < 0) {
		codec_free(c, base, d->variant);
		free(base);
		return r;
	}
	*ret = base;
	return 0;
}

/* ------------------------------------------------------------------------- */
/* Encoding                                                                  */

static json_t *encode_local_refs(char *const *names)
{
	json_t *a = json_array();

	KMM_STRV_FOREACH (s, names) {
		if (!a || json_array_append_new(a, json_pack("{s:s}", "name", s)) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *encode_strmap(const struct kmm_strmap *m)
{
	json_t *o = json_object();

	for (size_t i = 0; o && i < m->n; i++)
		if (json_object_set_new(o, m->keys[i], json_string(m->values[i])) < 0) {
			json_decref(o);
			return NULL;
		}
	return o;
}

static json_t *encode_meta(const struct codec_meta *m, const void *base, size_t offset)
{
	const json_t *metadata = *CMEMBER(base, offset, json_t *);
	const char *name = *CMEMBER(base, m->name, char *);
	const char *ns = m->has_namespace ? *CMEMBER(base, m->namespace, char *) : NULL;
	json_t *md = metadata ? json_deep_copy(metadata) : json_object();

	if (md && ((!str_empty(name) && enc_str(md, "name", name) < 0) ||
		   (!str_empty(ns) && enc_str(md, "namespace", ns) < 0))) {
		json_decref(md);
		return NULL;
	}
	return md;
}

/* Whether a field with its presence implied by its value is written. */
static bool encoded(const struct codec_field *f, const void *base, bool nonempty)
{
	if (f->flags & CODEC_HAS)
		return *CMEMBER(base, f->has, bool);
	return nonempty || (f->flags & CODEC_ALWAYS);
}

static int encode_field(json_t *o, const struct codec_field *f, const void *base, unsigned variant)
{
	const void *member = CMEMBER(base, f->offset, char);
	unsigned inner = f->nested_variant ? f->nested_variant : variant;

	switch (f->type) {
	case CODEC_STRING:
		if (f->flags & CODEC_ALWAYS)
			return enc_str_always(o, f->key, *(char *const *)member);
		return enc_str(o, f->key, *(char *const *)member);
	case CODEC_BOOL:
		if (!encoded(f, base, *(const bool *)member))
			return 0;
		return enc_new(o, f->key, json_boolean(*(const bool *)member));
	case CODEC_INT32:
		if (!encoded(f, base, *(const int32_t *)member != 0))
			return 0;
		return enc_new(o, f->key, json_integer(*(const int32_t *)member));
	case CODEC_INT64:
		if (!encoded(f, base, *(const int64_t *)member != 0))
			return 0;
		return enc_new(o, f->key, json_integer(*(const int64_t *)member));
	case CODEC_STRV:
		if (!encoded(f, base, kmm_strv_length(*(char **const *)member) > 0))
			return 0;
		return enc_strv_always(o, f->key, *(char **const *)member);
	case CODEC_STRMAP:
		if (!encoded(f, base, ((const struct kmm_strmap *)member)->n > 0))
			return 0;
		return enc_new(o, f->key, encode_strmap(member));
	case CODEC_LOCAL_REF: {
		const char *name = *(char *const *)member;

		if (!encoded(f, base, name != NULL))
			return 0;
		return enc_new(o, f->key, json_pack("{s:s}", "name", name ? name : ""));
	}
	case CODEC_LOCAL_REFS:
		if (!encoded(f, base, kmm_strv_length(*(char **const *)member) > 0))
			return 0;
		return enc_new(o, f->key, encode_local_refs(*(char **const *)member));
	case CODEC_JSON_ARRAY:
	case CODEC_JSON_OBJECT:
		return enc_json(o, f->key, *(json_t *const *)member);
	case CODEC_CONST:
		return enc_str(o, f->key, f->text);
	case CODEC_METADATA:
		return enc_new(o, f->key, encode_meta(f->meta, base, f->offset));
	case CODEC_OBJECT:
		if (!encoded(f, base, true))
			return 0;
		return enc_new(o, f->key, codec_encode(f->nested, member, inner));
	case CODEC_OBJECT_PTR: {
		const void *ptr = *(void *const *)member;

		return ptr ? enc_new(o, f->key, codec_encode(f->nested, ptr, inner)) : 0;
	}
	case CODEC_ARRAY: {
		size_t n = *CMEMBER(base, f->count, size_t);

		if (!encoded(f, base, n > 0))
			return 0;
		return enc_new(o, f->key,
			       codec_encode_array(f->nested, *(void *const *)member, n, inner));
	}
	case CODEC_CUSTOM:
		return f->custom->encode(o, f->key, base, variant);
	}
	return -EINVAL;
}

json_t *codec_encode(const struct codec *c, const void *base, unsigned variant)
{
	json_t *o = enc_begin(c->drop_unknown ? NULL : *CMEMBER(base, c->unknown, json_t *));

	for (size_t i = 0; o && i < c->n_fields; i++)
		if (in_variant(&c->fields[i], variant) &&
		    encode_field(o, &c->fields[i], base, variant) < 0) {
			json_decref(o);
			return NULL;
		}
	return o;
}

json_t *codec_encode_array(const struct codec *c, const void *items, size_t n, unsigned variant)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(
			a, codec_encode(c, (const char *)items + i * c->size, variant)) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

/* ------------------------------------------------------------------------- */
/* Freeing                                                                   */

static void free_field(const struct codec_field *f, void *base, unsigned variant)
{
	void *member = MEMBER(base, f->offset, char);
	unsigned inner = f->nested_variant ? f->nested_variant : variant;

	switch (f->type) {
	case CODEC_STRING:
	case CODEC_LOCAL_REF:
		free(*(char **)member);
		break;
	case CODEC_STRV:
	case CODEC_LOCAL_REFS:
		kmm_strv_free(*(char ***)member);
		break;
	case CODEC_STRMAP:
		kmm_strmap_done(member);
		break;
	case CODEC_JSON_ARRAY:
	case CODEC_JSON_OBJECT:
		json_decref(*(json_t **)member);
		break;
	case CODEC_METADATA:
		free(*MEMBER(base, f->meta->name, char *));
		if (f->meta->has_namespace)
			free(*MEMBER(base, f->meta->namespace, char *));
		json_decref(*(json_t **)member);
		break;
	case CODEC_OBJECT:
		codec_free(f->nested, member, inner);
		break;
	case CODEC_OBJECT_PTR:
		if (*(void **)member)
			codec_free(f->nested, *(void **)member, inner);
		free(*(void **)member);
		break;
	case CODEC_ARRAY:
		for (size_t i = 0; *(void **)member && i < *MEMBER(base, f->count, size_t); i++)
			codec_free(f->nested, *(char **)member + i * f->nested->size, inner);
		free(*(void **)member);
		break;
	case CODEC_CUSTOM:
		if (f->custom->free)
			f->custom->free(base);
		break;
	case CODEC_BOOL:
	case CODEC_INT32:
	case CODEC_INT64:
	case CODEC_CONST:
		break;
	}
}

void codec_free(const struct codec *c, void *base, unsigned variant)
{
	if (!base)
		return;
	for (size_t i = 0; i < c->n_fields; i++)
		if (in_variant(&c->fields[i], variant))
			free_field(&c->fields[i], base, variant);
	if (!c->drop_unknown)
		json_decref(*MEMBER(base, c->unknown, json_t *));
}
