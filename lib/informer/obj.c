/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compact immutable objects for informer stores: the (projected) JSON object
 * flattened into one allocation of (path, type, value) entries. A pod
 * projected to what reconcilers read fits in well under 1 KiB, where the
 * same fields as a jansson DOM take ~4 KiB (a hashtable and a few mallocs per
 * member). Readers use the accessors; kmm_obj_to_json() rebuilds a DOM.
 *
 * Entry layout, packed: u16 path_len, path (segments joined by 0x1f), u8 type,
 * u32 value_len, value, NUL. Types: 's' string, 'n' number (JSON text), 'b'
 * "true"/"false", 'z' null, 'j' JSON text of an array or empty object.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/buf.h"
#include "kmm/informer.h"
#include "lib/informer/informer-internal.h"

#define SEP '\x1f'
#define PATH_MAX_LEN 1024
#define DEPTH_MAX 64

struct kmm_obj {
	atomic_uint refs;
	_Atomic(json_t *) dom; /* kmm_obj_json()'s DOM, built on first use, then immutable */
	uint32_t n_entries;
	uint32_t size;	  /* bytes of data[] used by entries */
	uint32_t key_off; /* the store key, NUL-terminated, after the entries */
	char data[];
};

static int put_entry(struct kmm_buf *b, const char *path, size_t plen, char type, const char *val,
		     size_t vlen)
{
	uint16_t pl = (uint16_t)plen;
	uint32_t vl = (uint32_t)vlen;
	int r;

	if (plen > UINT16_MAX || vlen > UINT32_MAX / 2)
		return -E2BIG;
	if ((r = kmm_buf_append(b, &pl, sizeof(pl))) < 0 ||
	    (r = kmm_buf_append(b, path, plen)) < 0 || (r = kmm_buf_append(b, &type, 1)) < 0 ||
	    (r = kmm_buf_append(b, &vl, sizeof(vl))) < 0 ||
	    (r = kmm_buf_append(b, val, vlen)) < 0 || (r = kmm_buf_append(b, "", 1)) < 0)
		return r;
	return 1;
}

static int flatten(struct kmm_buf *b, const json_t *v, char *path, size_t plen, int depth)
{
	char num[64];
	int n;

	if (depth > DEPTH_MAX)
		return -E2BIG;
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *k;
		json_t *m;
		int total = 0;

		if (json_object_size(v) == 0 && depth > 0)
			return put_entry(b, path, plen, 'j', "{}", 2);
		json_object_foreach ((json_t *)v, k, m) {
			size_t kl = strlen(k);
			int r;

			if (memchr(k, SEP, kl))
				continue; /* not representable; such keys do not occur in practice */
			if (plen + 1 + kl >= PATH_MAX_LEN)
				return -E2BIG;
			if (plen > 0)
				path[plen] = SEP;
			/* path is a (pointer, length) pair, never NUL-terminated */
			// NOLINTNEXTLINE(bugprone-not-null-terminated-result)
			memcpy(path + plen + (plen > 0), k, kl);
			r = flatten(b, m, path, plen + (plen > 0) + kl, depth + 1);
			if (r < 0)
				return r;
			total += r;
		}
		return total;
	}
	case JSON_ARRAY: {
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		int r;

		if (!s)
			return -ENOMEM;
		r = put_entry(b, path, plen, 'j', s, strlen(s));
		free(s);
		return r;
	}
	case JSON_STRING:
		return put_entry(b, path, plen, 's', json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return put_entry(b, path, plen, 'n', num, (size_t)n);
	case JSON_REAL:
		n = snprintf(num, sizeof(num), "%.17g", json_real_value(v));
		return put_entry(b, path, plen, 'n', num, (size_t)n);
	case JSON_TRUE:
		return put_entry(b, path, plen, 'b', "true", 4);
	case JSON_FALSE:
		return put_entry(b, path, plen, 'b', "false", 5);
	case JSON_NULL:
		return put_entry(b, path, plen, 'z', "", 0);
	}
	return -EINVAL;
}

int kube_obj_new(const json_t *projected, const char *key, struct kmm_obj **ret)
{
	_cleanup_buf_ struct kmm_buf b = { 0 };
	char path[PATH_MAX_LEN];
	struct kmm_obj *o;
	size_t klen = strlen(key);
	int n;

	kmm_buf_init(&b, 64 * 1024 * 1024);
	if (!json_is_object(projected))
		return -EINVAL;
	n = flatten(&b, projected, path, 0, 0);
	if (n < 0)
		return n;
	if (b.len + klen + 1 > UINT32_MAX / 2)
		return -E2BIG;
	o = malloc(sizeof(*o) + b.len + klen + 1);
	if (!o)
		return -ENOMEM;
	atomic_init(&o->refs, 1);
	atomic_init(&o->dom, NULL);
	o->n_entries = (uint32_t)n;
	o->size = (uint32_t)b.len;
	o->key_off = (uint32_t)b.len;
	if (b.len)
		memcpy(o->data, b.data, b.len);
	memcpy(o->data + b.len, key, klen + 1);
	*ret = o;
	return 0;
}

struct entry {
	const char *path;
	size_t plen;
	char type;
	const char *val;
	size_t vlen;
};

/* Reads the entry at *off and advances it. */
static void entry_at(const struct kmm_obj *o, size_t *off, struct entry *e)
{
	const char *p = o->data + *off;
	uint16_t pl;
	uint32_t vl;

	memcpy(&pl, p, sizeof(pl));
	e->path = p + sizeof(pl);
	e->plen = pl;
	e->type = e->path[pl];
	memcpy(&vl, e->path + pl + 1, sizeof(vl));
	e->val = e->path + pl + 1 + sizeof(vl);
	e->vlen = vl;
	*off = (size_t)(e->val + vl + 1 - o->data);
}

static const struct entry *find(const struct kmm_obj *o, const char *path, size_t plen,
				struct entry *e)
{
	size_t off = 0;

	for (uint32_t i = 0; i < o->n_entries; i++) {
		entry_at(o, &off, e);
		if (e->plen == plen && memcmp(e->path, path, plen) == 0)
			return e;
	}
	return NULL;
}

/* Does any entry live under path (path + SEP + ...)? */
static bool find_under(const struct kmm_obj *o, const char *path, size_t plen)
{
	size_t off = 0;
	struct entry e;

	for (uint32_t i = 0; i < o->n_entries; i++) {
		entry_at(o, &off, &e);
		if (e.plen > plen && e.path[plen] == SEP && memcmp(e.path, path, plen) == 0)
			return true;
	}
	return false;
}

/* dotted "a.b.c" -> "a\x1fb\x1fc" */
static size_t internal_path(const char *dotted, char *buf, size_t len)
{
	size_t n = strlen(dotted);

	if (n >= len)
		return 0;
	for (size_t i = 0; i < n; i++)
		buf[i] = dotted[i] == '.' ? SEP : dotted[i];
	return n;
}

const char *kmm_obj_str(const struct kmm_obj *o, const char *path)
{
	char buf[PATH_MAX_LEN];
	size_t n = internal_path(path, buf, sizeof(buf));
	struct entry e;

	if (!n || !find(o, buf, n, &e) || e.type != 's')
		return NULL;
	return e.val;
}

static const char *meta_map(const struct kmm_obj *o, const char *map, const char *key)
{
	char buf[PATH_MAX_LEN];
	int n = snprintf(buf, sizeof(buf), "metadata%c%s%c%s", SEP, map, SEP, key);
	struct entry e;

	if (n < 0 || (size_t)n >= sizeof(buf) || !find(o, buf, (size_t)n, &e) || e.type != 's')
		return NULL;
	return e.val;
}

const char *kmm_obj_label(const struct kmm_obj *o, const char *name)
{
	return meta_map(o, "labels", name);
}

const char *kmm_obj_annotation(const struct kmm_obj *o, const char *name)
{
	return meta_map(o, "annotations", name);
}

const char *kmm_obj_key(const struct kmm_obj *o)
{
	return o->data + o->key_off;
}

const char *kmm_obj_resource_version(const struct kmm_obj *o)
{
	const char *rv = kmm_obj_str(o, "metadata.resourceVersion");

	return rv ? rv : "";
}

static json_t *entry_value(const struct entry *e)
{
	switch (e->type) {
	case 's':
		return json_stringn(e->val, e->vlen);
	case 'b':
		return json_boolean(e->vlen == 4);
	case 'z':
		return json_null();
	case 'n':
	case 'j':
		return json_loadb(e->val, e->vlen, JSON_DECODE_ANY, NULL);
	default:
		return NULL;
	}
}

json_t *kmm_obj_to_json(const struct kmm_obj *o)
{
	json_t *root = json_object();
	size_t off = 0;

	if (!root)
		return NULL;
	for (uint32_t i = 0; i < o->n_entries; i++) {
		struct entry e;
		json_t *cur = root, *v;
		const char *p, *end;

		entry_at(o, &off, &e);
		p = e.path;
		end = e.path + e.plen;
		for (;;) {
			const char *sep = memchr(p, SEP, (size_t)(end - p));
			size_t seglen = sep ? (size_t)(sep - p) : (size_t)(end - p);
			json_t *next;

			/* Segments by length: no temporary copy per segment of every entry. */
			if (!sep) {
				v = entry_value(&e);
				if (!v || json_object_setn_new(cur, p, seglen, v) < 0)
					goto fail;
				break;
			}
			next = json_object_getn(cur, p, seglen);
			if (!next) {
				next = json_object();
				if (!next || json_object_setn_new(cur, p, seglen, next) < 0)
					goto fail;
			}
			cur = next;
			p = sep + 1;
		}
	}
	return root;
fail:
	json_decref(root);
	return NULL;
}

json_t *kmm_obj_get_json(const struct kmm_obj *o, const char *path)
{
	char buf[PATH_MAX_LEN];
	size_t n = internal_path(path, buf, sizeof(buf));
	struct entry e;
	json_t *all, *v;
	const char *p;

	if (n && find(o, buf, n, &e))
		return entry_value(&e);
	/* Absent (the usual miss, e.g. a node without taints): no rebuild. */
	if (n && !find_under(o, buf, n))
		return NULL;
	/* An object: rebuild and extract. */
	all = kmm_obj_to_json(o);
	v = all;
	p = path;
	while (v && *p) {
		const char *dot = strchr(p, '.');
		_cleanup_free_ char *seg = strndup(p, dot ? (size_t)(dot - p) : strlen(p));

		v = seg ? json_object_get(v, seg) : NULL;
		p = dot ? dot + 1 : p + strlen(p);
	}
	json_incref(v);
	json_decref(all);
	return v;
}

size_t kmm_obj_size(const struct kmm_obj *o)
{
	return sizeof(*o) + o->size + strlen(kmm_obj_key(o)) + 1;
}

bool kmm_obj_has_dom(const struct kmm_obj *o)
{
	return atomic_load(&((struct kmm_obj *)o)->dom) != NULL;
}

struct kmm_obj *kmm_obj_ref(struct kmm_obj *o)
{
	if (o)
		atomic_fetch_add(&o->refs, 1);
	return o;
}

void kmm_obj_unref(struct kmm_obj *o)
{
	if (o && atomic_fetch_sub(&o->refs, 1) == 1) {
		json_decref(atomic_load(&o->dom));
		free(o);
	}
}

void kube_obj_drop_dom(struct kmm_obj *o, unsigned owners)
{
	if (atomic_load(&o->refs) == owners)
		json_decref(atomic_exchange(&o->dom, NULL));
}

const json_t *kmm_obj_json(const struct kmm_obj *co)
{
	struct kmm_obj *o = (struct kmm_obj *)co;
	json_t *dom = atomic_load(&o->dom), *expected = NULL;

	if (dom)
		return dom;
	dom = kmm_obj_to_json(o);
	if (!dom)
		return NULL;
	/* Another thread may have won the race: keep its DOM, drop ours. */
	if (!atomic_compare_exchange_strong(&o->dom, &expected, dom)) {
		json_decref(dom);
		return expected;
	}
	return dom;
}

void kmm_obj_array_free(struct kmm_obj **objs, size_t n)
{
	for (size_t i = 0; objs && i < n; i++)
		kmm_obj_unref(objs[i]);
	free(objs);
}
