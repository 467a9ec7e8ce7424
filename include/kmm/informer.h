/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Informer: LIST + WATCH of one resource (optionally one namespace and
 * server-side label/field selectors) into an in-memory store of compact,
 * immutable, refcounted objects, with indexes and event handlers.
 *
 * Compact objects: each informer declares the JSON paths its readers need
 * (a projection, e.g. metadata.labels, spec.nodeName, status.phase); only
 * those are kept (plus metadata name, namespace, uid, resourceVersion,
 * generation, deletionTimestamp), flattened into one allocation per object
 * (no DOM). Readers use the kmm_obj_* accessors, or kmm_obj_to_json() for a
 * DOM copy; fields outside the projection need a GET. projection == NULL
 * keeps whole objects (still flattened) except metadata.managedFields.
 *
 * Threads: one thread per informer (started by kmm_informer_start) lists,
 * watches, applies events to the store and calls the handlers, one at a
 * time, in event order. Getters (get/list/by_index/has_synced) may be called
 * from any thread; they take a read lock and return new references.
 * Handlers run on the informer thread without any store lock held, so they
 * may call the getters; they must not block for long (enqueue a key).
 *
 * Ownership: a struct kmm_obj is immutable once published and freed when its
 * last reference goes. Objects handed to handlers are borrowed for the call;
 * kmm_obj_ref() keeps one. The JSON inside must never be modified.
 */
#ifndef KMM_INFORMER_H
#define KMM_INFORMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "kmm/shared-error.h"
#include "kmm/kube.h"

struct kmm_obj;

/*
 * Readers. Paths are dotted ("spec.nodeName"); label and annotation names
 * may contain dots, hence their own accessors. Returned strings are borrowed
 * from o (valid while a reference is held) and NUL-terminated.
 */
/* The string at path, or NULL (absent, or not a string). */
const char *kmm_obj_str(const struct kmm_obj *o, const char *path);
const char *kmm_obj_label(const struct kmm_obj *o, const char *name);
const char *kmm_obj_annotation(const struct kmm_obj *o, const char *name);
/* "namespace/name" or "name". */
const char *kmm_obj_key(const struct kmm_obj *o);
/* metadata.resourceVersion, or "". */
const char *kmm_obj_resource_version(const struct kmm_obj *o);
/* A new JSON value for path (scalar, array or object), or NULL; caller owns it. */
json_t *kmm_obj_get_json(const struct kmm_obj *o, const char *path);
/* The whole (projected) object as a new DOM; caller owns it. */
json_t *kmm_obj_to_json(const struct kmm_obj *o);
/*
 * The whole (projected) object as a DOM borrowed from o, never to be
 * modified; NULL on ENOMEM. Built on first call and kept with the object
 * (thread-safe) while anyone but the informer's store references o: valid
 * as long as the caller's reference (or a json_incref() of the DOM).
 * The informer frees DOMs that only its store still holds (after the
 * handlers of an event, and once a second), so the next call may build it
 * again: the accessors above stay cheaper on hot, numerous kinds (pods,
 * nodes).
 */
const json_t *kmm_obj_json(const struct kmm_obj *o);
/* True once kmm_obj_json() built the DOM of o (for memory accounting). */
bool kmm_obj_has_dom(const struct kmm_obj *o);
/* Bytes of heap the object occupies (its single allocation). */
size_t kmm_obj_size(const struct kmm_obj *o);

/*
 * A compact object of obj (an object, taken as it is) stored under key, for
 * caches of one's own; it shares its leaves with the stores'. 0 or -errno.
 */
int kmm_obj_new(const json_t *obj, const char *key, struct kmm_obj **ret);

struct kmm_obj *kmm_obj_ref(struct kmm_obj *o);
void kmm_obj_unref(struct kmm_obj *o);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_obj *, kmm_obj_unref)
#define _cleanup_obj_unref_ _cleanup_(kmm_obj_unrefp)

/* Frees an array of references as returned by the list functions. NULL-safe. */
void kmm_obj_array_free(struct kmm_obj **objs, size_t n);

/*
 * Copies from src only the dotted paths (NULL-terminated list; a path
 * ending at an object or array keeps it whole) into a new object. Returns
 * NULL on ENOMEM.
 */
json_t *kmm_json_project(const json_t *src, const char *const *paths);

struct kmm_informer_options {
	const struct kmm_kube_resource *res;
	const char *namespace; /* NULL = all namespaces (or cluster-scoped) */
	const char *label_selector;
	const char *field_selector;
	const char *const *projection; /* NULL-terminated dotted paths; NULL = keep all */
	int64_t resync_ms;	       /* 0 = never: on_update(o, o) for every object */
	long watch_timeout_seconds;    /* server-side stream timeout (default 300) */
	long page_size;		       /* LIST page size (default 500) */
	size_t max_frame;	       /* watch frame cap (default kmm/kube-watch.h) */
};

struct kmm_informer_handlers {
	void (*on_add)(const struct kmm_obj *obj, void *userdata);
	void (*on_update)(const struct kmm_obj *old_obj, const struct kmm_obj *new_obj,
			  void *userdata);
	/* obj is the last state known; after a relist it may be older than the deletion. */
	void (*on_delete)(const struct kmm_obj *obj, void *userdata);
	void *userdata;
};

/*
 * Index function: the values under which obj is indexed, as a new
 * NULL-terminated strv (possibly empty) in *ret_values. Called on the
 * informer thread with the store's write lock held: it must only read obj.
 */
typedef int (*kmm_index_fn)(const struct kmm_obj *obj, char ***ret_values, void *userdata);

struct kmm_informer;

/* The client is borrowed and must outlive the informer. opts strings are copied. */
int kmm_informer_new(struct kmm_kube_client *client, const struct kmm_informer_options *opts,
		     struct kmm_informer **ret_informer, struct kmm_error **err);

/* Before start only. Up to 8 handler sets. */
int kmm_informer_add_handlers(struct kmm_informer *inf, const struct kmm_informer_handlers *h);

/* Before start only. */
int kmm_informer_add_index(struct kmm_informer *inf, const char *name, kmm_index_fn fn,
			   void *userdata);

/* Convenience indexes: by the string at a dotted path (e.g. "spec.nodeName"),
 * and by the value of one label. */
int kmm_informer_add_path_index(struct kmm_informer *inf, const char *name, const char *path);
int kmm_informer_add_label_index(struct kmm_informer *inf, const char *name, const char *label);

/* Starts the informer thread. */
int kmm_informer_start(struct kmm_informer *inf, struct kmm_error **err);

/* True once the first LIST has been applied to the store. */
bool kmm_informer_has_synced(struct kmm_informer *inf);

/* Waits up to timeout_ms for has_synced. Returns 0 or -ETIMEDOUT. */
int kmm_informer_wait_synced(struct kmm_informer *inf, int64_t timeout_ms);

/* A new reference to the object under key, or NULL; NULL too for a NULL
 * informer (the operator makes each cache only in the modes that use it). */
struct kmm_obj *kmm_informer_get(struct kmm_informer *inf, const char *key);
/*
 * full reduced to what this informer stores (its projection, or the whole
 * object without metadata.managedFields): a new reference that may share
 * subtrees with full, or NULL on ENOMEM.
 */
json_t *kmm_informer_project(const struct kmm_informer *inf, const json_t *full);

/* New references to every object (*ret_objs heap array, free with kmm_obj_array_free). */
int kmm_informer_list(struct kmm_informer *inf, struct kmm_obj ***ret_objs, size_t *ret_n);

/* New references to the objects indexed under value in index name. */
int kmm_informer_by_index(struct kmm_informer *inf, const char *name, const char *value,
			  struct kmm_obj ***ret_objs, size_t *ret_n);

size_t kmm_informer_size(struct kmm_informer *inf);
/* Bytes the store's compact objects take (kmm_obj_size() summed; DOMs not counted). */
size_t kmm_informer_bytes(struct kmm_informer *inf);

/* The resourceVersion of the last event or list applied ("" before sync); heap copy. */
char *kmm_informer_resource_version(struct kmm_informer *inf);

struct kmm_informer_stats {
	uint64_t lists;	  /* LISTs completed (1 + relists) */
	uint64_t watches; /* watch streams opened */
	uint64_t events;  /* watch events applied */
	uint64_t gone;	  /* 410s that forced a relist */
	uint64_t errors;  /* list/watch failures retried with backoff */
};
void kmm_informer_stats(struct kmm_informer *inf, struct kmm_informer_stats *ret);

/* Stops the thread (cancelling the watch) and waits for it. Idempotent. */
void kmm_informer_stop(struct kmm_informer *inf);

/* Stops if needed and frees everything. NULL-safe. */
void kmm_informer_free(struct kmm_informer *inf);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_informer *, kmm_informer_free)

#endif
