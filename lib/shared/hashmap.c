/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones), so lookups stay short after many removals. The table doubles
 * at 3/4 load.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-hashmap.h"

struct entry {
	char *key; /* NULL marks an empty slot */
	void *value;
	uint64_t hash;
};

struct kmm_hashmap {
	struct entry *slots;
	size_t nslots; /* power of two, or 0 before the first insert */
	size_t size;
	kmm_hashmap_free_fn value_free;
};

/* FNV-1a, 64-bit: simple and good enough for short keys. */
static uint64_t hash_key(const char *key)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
	}
	return h;
}

struct kmm_hashmap *kmm_hashmap_new(kmm_hashmap_free_fn value_free)
{
	struct kmm_hashmap *m = calloc(1, sizeof(*m));

	if (m)
		m->value_free = value_free;
	return m;
}

/* The slot holding key, or the empty slot where it would go. Needs nslots > 0. */
static struct entry *probe(const struct kmm_hashmap *m, const char *key, uint64_t h)
{
	size_t mask = m->nslots - 1;

	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct entry *e = &m->slots[i];

		if (!e->key || (e->hash == h && strcmp(e->key, key) == 0))
			return e;
	}
}

/* The entry holding key, or NULL. */
static struct entry *lookup(const struct kmm_hashmap *m, const char *key)
{
	struct entry *e;

	if (m->nslots == 0)
		return NULL;
	e = probe(m, key, hash_key(key));
	return e->key ? e : NULL;
}

static int grow(struct kmm_hashmap *m)
{
	size_t n = m->nslots ? m->nslots * 2 : 16;
	struct entry *old = m->slots, *slots;
	size_t oldn = m->nslots;

	slots = calloc(n, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	m->slots = slots;
	m->nslots = n;
	for (size_t i = 0; i < oldn; i++) {
		if (old[i].key)
			*probe(m, old[i].key, old[i].hash) = old[i];
	}
	free(old);
	return 0;
}

int kmm_hashmap_put(struct kmm_hashmap *m, const char *key, void *value, void **ret_old)
{
	uint64_t h = hash_key(key);
	struct entry *e;
	char *copy;
	int r;

	e = lookup(m, key);
	if (e) {
		if (ret_old)
			*ret_old = e->value;
		else if (m->value_free && e->value && e->value != value)
			m->value_free(e->value);
		e->value = value;
		return 0;
	}
	if ((m->size + 1) * 4 > m->nslots * 3) {
		r = grow(m);
		if (r < 0)
			return r;
	}
	copy = strdup(key);
	if (!copy)
		return -ENOMEM;
	e = probe(m, key, h);
	*e = (struct entry){ .key = copy, .value = value, .hash = h };
	m->size++;
	return 1;
}

void *kmm_hashmap_get(const struct kmm_hashmap *m, const char *key)
{
	struct entry *e = lookup(m, key);

	return e ? e->value : NULL;
}

bool kmm_hashmap_contains(const struct kmm_hashmap *m, const char *key)
{
	return lookup(m, key) != NULL;
}

void *kmm_hashmap_remove(struct kmm_hashmap *m, const char *key)
{
	struct entry *e = lookup(m, key);
	size_t mask, i, j;
	void *value;

	if (!e)
		return NULL;
	value = e->value;
	free(e->key);
	e->key = NULL;
	m->size--;

	/* Shift later members of the probe run back into the hole. */
	mask = m->nslots - 1;
	i = (size_t)(e - m->slots);
	for (j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
		size_t home = m->slots[j].hash & mask;

		/* Move j into i only if its home slot is not in (i, j]. */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			m->slots[i] = m->slots[j];
			m->slots[j].key = NULL;
			i = j;
		}
	}
	return value;
}

size_t kmm_hashmap_size(const struct kmm_hashmap *m)
{
	return m ? m->size : 0;
}

bool kmm_hashmap_iterate(const struct kmm_hashmap *m, size_t *state, const char **ret_key,
			 void **ret_value)
{
	while (m && *state < m->nslots) {
		struct entry *e = &m->slots[(*state)++];

		if (e->key) {
			if (ret_key)
				*ret_key = e->key;
			if (ret_value)
				*ret_value = e->value;
			return true;
		}
	}
	return false;
}

void kmm_hashmap_free(struct kmm_hashmap *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nslots; i++) {
		if (!m->slots[i].key)
			continue;
		free(m->slots[i].key);
		if (m->value_free && m->slots[i].value)
			m->value_free(m->slots[i].value);
	}
	free(m->slots);
	free(m);
}
