/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small open-addressing hash map from strings to pointers.
 *
 * Keys are copied into the map; values are borrowed pointers whose lifetime is
 * the caller's business, except that kmm_hashmap_free() calls the value
 * destructor given at creation (if any) on every value still in the map.
 * Not thread-safe: callers that share a map lock around it.
 */
#ifndef KMM_HASHMAP_H
#define KMM_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>

#include "kmm/shared-macro.h"

struct kmm_hashmap;

typedef void (*kmm_hashmap_free_fn)(void *value);

/* Creates an empty map. value_free may be NULL. Returns NULL on ENOMEM. */
struct kmm_hashmap *kmm_hashmap_new(kmm_hashmap_free_fn value_free);

/*
 * Inserts or replaces. When replacing, the old value is returned through
 * ret_old if that is non-NULL, else it is passed to the value destructor.
 * Returns 1 if the key was new, 0 if replaced, -ENOMEM.
 */
int kmm_hashmap_put(struct kmm_hashmap *m, const char *key, void *value, void **ret_old);

/* The value stored under key, or NULL. */
void *kmm_hashmap_get(const struct kmm_hashmap *m, const char *key);

/* True if key is present (its value may be NULL). */
bool kmm_hashmap_contains(const struct kmm_hashmap *m, const char *key);

/*
 * Removes key. Returns its value (the destructor is NOT called) or NULL when
 * absent.
 */
void *kmm_hashmap_remove(struct kmm_hashmap *m, const char *key);

/* Number of entries. */
size_t kmm_hashmap_size(const struct kmm_hashmap *m);

/*
 * Iteration in unspecified order. Start with *state = 0; each call stores the
 * next key and value and returns true, or returns false at the end. The map
 * must not be modified during iteration: removal shifts entries between slots.
 */
bool kmm_hashmap_iterate(const struct kmm_hashmap *m, size_t *state, const char **ret_key,
			 void **ret_value);

/* Frees the map, its keys, and every value through the destructor. NULL-safe. */
void kmm_hashmap_free(struct kmm_hashmap *m);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_hashmap *, kmm_hashmap_free)
#define _cleanup_hashmap_free_ _cleanup_(kmm_hashmap_freep)

#endif
