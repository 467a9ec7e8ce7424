/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compact immutable objects for informer stores: the (projected) JSON object
 * flattened into its leaves, each a (path, type, value) "atom". Atoms are
 * interned process-wide and refcounted, so a leaf that many objects share
 * (a label, an NMC entry's image, a container's exit reason, the same field
 * at the same array index) is stored once and each object holding it pays
 * one pointer. At 1,000 nodes x 10 Modules an NMC's cached form went from
 * ~7.7 KiB to ~2 KiB this way. Readers use the accessors; kmm_obj_to_json()
 * rebuilds a DOM.
 *
 * Paths: segments joined by 0x1f; an array element's segment is 0x1e and its
 * decimal index. Types: 's' string, 'n' number (JSON text), 'b'
 * "true"/"false", 'z' null, 'j' the JSON text "{}" or "[]" (empty containers
 * below the root, which have no leaves).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-buf.h"
#include "kmm/informer.h"
#include "lib/informer/informer-internal.h"

#define SEP '\x1f'
#define IDX '\x1e'
#define PATH_MAX_LEN 1024
#define DEPTH_MAX 64

struct atom {
	struct atom *next; /* hash chain */
	atomic_uint refs;  /* changed under the pool's lock; read without it for sizes */
	uint32_t hash;
	uint32_t vlen;
	uint16_t plen;
	char type;
	char data[]; /* path, NUL, value, NUL */
};

struct kmm_obj {
	atomic_uint refs;
	_Atomic(json_t *) dom; /* kmm_obj_json()'s DOM, built on first use, then immutable */
	uint32_t n_atoms;
	uint32_t key_len;
	struct atom *atoms[]; /* then the store key, NUL-terminated */
};

/* The process-wide atom table: buckets double when atoms outnumber them. */
static struct {
	pthread_mutex_t lock;
	struct atom **buckets;
	size_t n_buckets, n_atoms;
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER };

static const char *atom_path(const struct atom *a)
{
	return a->data;
}

static const char *atom_val(const struct atom *a)
{
	return a->data + a->plen + 1;
}

static size_t atom_bytes(const struct atom *a)
{
	return sizeof(*a) + a->plen + a->vlen + 2;
}

/* FNV-1a over type, path and value. */
static uint32_t leaf_hash(const char *path, size_t plen, char type, const char *val, size_t vlen)
{
	uint32_t h = 2166136261u;

	h = (h ^ (unsigned char)type) * 16777619u;
	for (size_t i = 0; i < plen; i++)
		h = (h ^ (unsigned char)path[i]) * 16777619u;
	h = (h ^ 0xffu) * 16777619u;
	for (size_t i = 0; i < vlen; i++)
		h = (h ^ (unsigned char)val[i]) * 16777619u;
	return h;
}

/* Under pool.lock. */
static int pool_grow(void)
{
	size_t n = pool.n_buckets ? pool.n_buckets * 2 : 1024;
	struct atom **b = calloc(n, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < pool.n_buckets; i++) {
		struct atom *a = pool.buckets[i], *next;

		for (; a; a = next) {
			next = a->next;
			a->next = b[a->hash & (n - 1)];
			b[a->hash & (n - 1)] = a;
		}
	}
	free(pool.buckets);
	pool.buckets = b;
	pool.n_buckets = n;
	return 0;
}

/* Under pool.lock: a new reference to the atom for this leaf, or NULL (ENOMEM). */
static struct atom *pool_take(const char *path, size_t plen, char type, const char *val,
			      size_t vlen)
{
	uint32_t h = leaf_hash(path, plen, type, val, vlen);
	struct atom *a;

	if ((pool.n_atoms >= pool.n_buckets) && pool_grow() < 0 && pool.n_buckets == 0)
		return NULL;
	for (a = pool.buckets[h & (pool.n_buckets - 1)]; a; a = a->next) {
		if (a->hash == h && a->type == type && a->plen == plen && a->vlen == vlen &&
		    memcmp(atom_path(a), path, plen) == 0 && memcmp(atom_val(a), val, vlen) == 0) {
			atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
			return a;
		}
	}
	a = malloc(sizeof(*a) + plen + vlen + 2);
	if (!a)
		return NULL;
	atomic_init(&a->refs, 1);
	a->hash = h;
	a->type = type;
	a->plen = (uint16_t)plen;
	a->vlen = (uint32_t)vlen;
	memcpy(a->data, path, plen);
	a->data[plen] = '\0';
	memcpy(a->data + plen + 1, val, vlen);
	a->data[plen + 1 + vlen] = '\0';
	a->next = pool.buckets[h & (pool.n_buckets - 1)];
	pool.buckets[h & (pool.n_buckets - 1)] = a;
	pool.n_atoms++;
	return a;
}

/* Under pool.lock. */
static void pool_drop(struct atom *a)
{
	struct atom **pp;

	if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_relaxed) != 1)
		return;
	for (pp = &pool.buckets[a->hash & (pool.n_buckets - 1)]; *pp; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	}
	pool.n_atoms--;
	free(a);
}

/* ---- flattening: leaves into a scratch buffer, then interned ---- */

/* Scratch layout, packed: u16 path_len, path, u8 type, u32 value_len, value. */
static int put_leaf(struct kmm_buf *b, const char *path, size_t plen, char type, const char *val,
		    size_t vlen)
{
	uint16_t pl = (uint16_t)plen;
	uint32_t vl = (uint32_t)vlen;
	int r;

	if (plen > UINT16_MAX || vlen > UINT32_MAX / 2)
		return -E2BIG;
	if ((r = kmm_buf_append(b, &pl, sizeof(pl))) < 0 ||
	    (r = kmm_buf_append(b, path, plen)) < 0 || (r = kmm_buf_append(b, &type, 1)) < 0 ||
	    (r = kmm_buf_append(b, &vl, sizeof(vl))) < 0 || (r = kmm_buf_append(b, val, vlen)) < 0)
		return r;
	return 1;
}

static int flatten(struct kmm_buf *b, const json_t *v, char *path, size_t plen, int depth);

/* Appends segment seg (seglen bytes) to path and flattens m below it. */
static int flatten_under(struct kmm_buf *b, const json_t *m, char *path, size_t plen,
			 const char *seg, size_t seglen, int depth)
{
	size_t at = plen + (depth > 0); /* the root's members have no separator before */

	if (at + seglen >= PATH_MAX_LEN)
		return -E2BIG;
	if (depth > 0)
		path[plen] = SEP;
	/* path is a (pointer, length) pair, never NUL-terminated */
	// NOLINTNEXTLINE(bugprone-not-null-terminated-result)
	memcpy(path + at, seg, seglen);
	return flatten(b, m, path, at + seglen, depth + 1);
}

static int flatten(struct kmm_buf *b, const json_t *v, char *path, size_t plen, int depth)
{
	char num[64];
	int n, total = 0;

	if (depth > DEPTH_MAX)
		return -E2BIG;
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *k;
		json_t *m;

		if (json_object_size(v) == 0 && depth > 0)
			return put_leaf(b, path, plen, 'j', "{}", 2);
		json_object_foreach ((json_t *)v, k, m) {
			size_t kl = strlen(k);

			/* not representable; such keys do not occur in practice */
			if (memchr(k, SEP, kl) || (kl > 0 && k[0] == IDX))
				continue;
			n = flatten_under(b, m, path, plen, k, kl, depth);
			if (n < 0)
				return n;
			total += n;
		}
		return total;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *m;

		if (json_array_size(v) == 0)
			return put_leaf(b, path, plen, 'j', "[]", 2);
		json_array_foreach (v, i, m) {
			n = snprintf(num, sizeof(num), "%c%zu", IDX, i);
			n = flatten_under(b, m, path, plen, num, (size_t)n, depth);
			if (n < 0)
				return n;
			total += n;
		}
		return total;
	}
	case JSON_STRING:
		return put_leaf(b, path, plen, 's', json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return put_leaf(b, path, plen, 'n', num, (size_t)n);
	case JSON_REAL:
		n = snprintf(num, sizeof(num), "%.17g", json_real_value(v));
		return put_leaf(b, path, plen, 'n', num, (size_t)n);
	case JSON_TRUE:
		return put_leaf(b, path, plen, 'b', "true", 4);
	case JSON_FALSE:
		return put_leaf(b, path, plen, 'b', "false", 5);
	case JSON_NULL:
		return put_leaf(b, path, plen, 'z', "", 0);
	}
	return -EINVAL;
}

static void release_atoms(struct atom **atoms, size_t n)
{
	if (n == 0)
		return;
	pthread_mutex_lock(&pool.lock);
	for (size_t i = 0; i < n; i++)
		pool_drop(atoms[i]);
	pthread_mutex_unlock(&pool.lock);
}

int kube_obj_new(const json_t *projected, const char *key, struct kmm_obj **ret)
{
	_cleanup_buf_ struct kmm_buf b = { 0 };
	char path[PATH_MAX_LEN];
	struct kmm_obj *o;
	size_t klen = strlen(key), off = 0;
	int n;

	kmm_buf_init(&b, 64 * 1024 * 1024);
	if (!json_is_object(projected))
		return -EINVAL;
	n = flatten(&b, projected, path, 0, 0);
	if (n < 0)
		return n;
	if (klen > UINT32_MAX / 2)
		return -E2BIG;
	o = malloc(sizeof(*o) + (size_t)n * sizeof(o->atoms[0]) + klen + 1);
	if (!o)
		return -ENOMEM;
	atomic_init(&o->refs, 1);
	atomic_init(&o->dom, NULL);
	o->n_atoms = 0;
	o->key_len = (uint32_t)klen;
	pthread_mutex_lock(&pool.lock);
	for (int i = 0; i < n; i++) {
		const char *p = b.data + off;
		uint16_t pl;
		uint32_t vl;
		struct atom *a;

		memcpy(&pl, p, sizeof(pl));
		memcpy(&vl, p + sizeof(pl) + pl + 1, sizeof(vl));
		a = pool_take(p + sizeof(pl), pl, p[sizeof(pl) + pl],
			      p + sizeof(pl) + pl + 1 + sizeof(vl), vl);
		if (!a)
			break;
		o->atoms[o->n_atoms++] = a;
		off += sizeof(pl) + pl + 1 + sizeof(vl) + vl;
	}
	pthread_mutex_unlock(&pool.lock);
	if (o->n_atoms != (uint32_t)n) {
		release_atoms(o->atoms, o->n_atoms);
		free(o);
		return -ENOMEM;
	}
	memcpy((char *)(o->atoms + o->n_atoms), key, klen + 1);
	*ret = o;
	return 0;
}

int kmm_obj_new(const json_t *obj, const char *key, struct kmm_obj **ret)
{
	return kube_obj_new(obj, key, ret);
}

/* ---- readers ---- */

static const struct atom *find(const struct kmm_obj *o, const char *path, size_t plen)
{
	for (uint32_t i = 0; i < o->n_atoms; i++) {
		const struct atom *a = o->atoms[i];

		if (a->plen == plen && memcmp(atom_path(a), path, plen) == 0)
			return a;
	}
	return NULL;
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
	const struct atom *a;

	if (!n || !(a = find(o, buf, n)) || a->type != 's')
		return NULL;
	return atom_val(a);
}

static const char *meta_map(const struct kmm_obj *o, const char *map, const char *key)
{
	char buf[PATH_MAX_LEN];
	int n = snprintf(buf, sizeof(buf), "metadata%c%s%c%s", SEP, map, SEP, key);
	const struct atom *a;

	if (n < 0 || (size_t)n >= sizeof(buf) || !(a = find(o, buf, (size_t)n)) || a->type != 's')
		return NULL;
	return atom_val(a);
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
	return (const char *)(o->atoms + o->n_atoms);
}

const char *kmm_obj_resource_version(const struct kmm_obj *o)
{
	const char *rv = kmm_obj_str(o, "metadata.resourceVersion");

	return rv ? rv : "";
}

static json_t *atom_value(const struct atom *a)
{
	switch (a->type) {
	case 's':
		return json_stringn(atom_val(a), a->vlen);
	case 'b':
		return json_boolean(a->vlen == 4);
	case 'z':
		return json_null();
	case 'n':
	case 'j':
		return json_loadb(atom_val(a), a->vlen, JSON_DECODE_ANY, NULL);
	default:
		return NULL;
	}
}

static bool is_index(const char *seg, size_t len)
{
	return len > 1 && seg[0] == IDX;
}

static size_t index_of(const char *seg, size_t len)
{
	size_t i = 0;

	for (size_t k = 1; k < len; k++)
		i = i * 10 + (size_t)(seg[k] - '0');
	return i;
}

static json_t *container_for(const char *seg, size_t len)
{
	return is_index(seg, len) ? json_array() : json_object();
}

static json_t *member(json_t *c, const char *seg, size_t len)
{
	if (json_is_array(c))
		return is_index(seg, len) ? json_array_get(c, index_of(seg, len)) : NULL;
	return json_object_getn(c, seg, len);
}

/* Stores v (stolen) as member seg of container c; elements arrive in index order. */
static int set_member(json_t *c, const char *seg, size_t len, json_t *v)
{
	if (!json_is_array(c))
		return json_object_setn_new(c, seg, len, v);
	if (!is_index(seg, len) || index_of(seg, len) != json_array_size(c)) {
		json_decref(v);
		return -1;
	}
	return json_array_append_new(c, v);
}

/* Places the atom's value at rel, its path below root. */
static int place(json_t *root, const char *rel, size_t rlen, const struct atom *a)
{
	const char *p = rel, *end = rel + rlen;
	json_t *cur = root;

	for (;;) {
		const char *sep = memchr(p, SEP, (size_t)(end - p));
		size_t seglen = sep ? (size_t)(sep - p) : (size_t)(end - p);
		json_t *next, *v;

		if (!sep) {
			v = atom_value(a);
			return v ? set_member(cur, p, seglen, v) : -1;
		}
		next = member(cur, p, seglen);
		if (!next) {
			next = container_for(sep + 1, (size_t)(end - sep - 1));
			if (!next || set_member(cur, p, seglen, next) < 0)
				return -1;
		}
		cur = next;
		p = sep + 1;
	}
}

json_t *kmm_obj_to_json(const struct kmm_obj *o)
{
	json_t *root = json_object();

	for (uint32_t i = 0; root && i < o->n_atoms; i++) {
		const struct atom *a = o->atoms[i];

		if (place(root, atom_path(a), a->plen, a) < 0) {
			json_decref(root);
			return NULL;
		}
	}
	return root;
}

json_t *kmm_obj_get_json(const struct kmm_obj *o, const char *path)
{
	char buf[PATH_MAX_LEN];
	size_t n = internal_path(path, buf, sizeof(buf));
	const struct atom *a;
	json_t *root = NULL;

	if (!n)
		return NULL;
	if ((a = find(o, buf, n)))
		return atom_value(a);
	/* An object or array: rebuilt from the leaves under it; absent if none. */
	for (uint32_t i = 0; i < o->n_atoms; i++) {
		const char *rel;
		size_t rlen;

		a = o->atoms[i];
		if (a->plen <= n + 1 || atom_path(a)[n] != SEP || memcmp(atom_path(a), buf, n) != 0)
			continue;
		rel = atom_path(a) + n + 1;
		rlen = a->plen - n - 1;
		if (!root) {
			const char *sep = memchr(rel, SEP, rlen);

			root = container_for(rel, sep ? (size_t)(sep - rel) : rlen);
			if (!root)
				return NULL;
		}
		if (place(root, rel, rlen, a) < 0) {
			json_decref(root);
			return NULL;
		}
	}
	return root;
}

size_t kmm_obj_size(const struct kmm_obj *o)
{
	size_t bytes = sizeof(*o) + o->n_atoms * sizeof(o->atoms[0]) + o->key_len + 1;

	/* Each holder's share of the atoms it holds: the shares add up to the table. */
	for (uint32_t i = 0; i < o->n_atoms; i++) {
		unsigned refs = atomic_load_explicit(&o->atoms[i]->refs, memory_order_relaxed);

		bytes += atom_bytes(o->atoms[i]) / (refs ? refs : 1);
	}
	return bytes;
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
		release_atoms(o->atoms, o->n_atoms);
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
