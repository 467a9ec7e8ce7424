/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Watch streams: one HTTP GET ?watch=1 decoded incrementally into events.
 *
 * This is the single-stream layer. Tracking resourceVersion across streams,
 * reconnecting with backoff and relisting after 410 Gone is the reflector's
 * job (kmm/informer.h), which most code should use instead.
 *
 * Threads: kmm_kube_watch() blocks the calling thread for the life of the
 * stream and calls the event and tick callbacks on it. kmm_watch_cancel() may
 * be called from any other thread at any time; the blocked call then returns
 * -ECANCELED promptly (curl_multi_wakeup, no polling delay).
 *
 * Ownership: the struct kmm_watch handle belongs to its creator, who must
 * not free it while a kmm_kube_watch() using it runs. Objects passed to the
 * event callback are borrowed for the duration of the call (json_incref to
 * keep them).
 */
#ifndef KMM_WATCH_H
#define KMM_WATCH_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "kmm/shared-error.h"
#include "kmm/kube.h"

enum kmm_watch_event_type {
	KMM_WATCH_ADDED,
	KMM_WATCH_MODIFIED,
	KMM_WATCH_DELETED,
	KMM_WATCH_BOOKMARK,
	KMM_WATCH_ERROR,
};

const char *kmm_watch_event_type_name(enum kmm_watch_event_type t);

#define KMM_WATCH_DEFAULT_MAX_FRAME ((size_t)16 * 1024 * 1024)

/*
 * Decodes one frame {"type": ..., "object": {...}}. On success *ret_object
 * is a new reference. Unknown types, a missing object or non-JSON fail with
 * -EBADMSG. An ERROR frame decodes fine (the object is a Status).
 */
int kmm_watch_decode(const char *frame, size_t len, enum kmm_watch_event_type *ret_type,
		     json_t **ret_object, struct kmm_error **err);

/*
 * Turns the Status of an ERROR event into a kmm_error (410 Expired/Gone ->
 * ESTALE with http_status 410). Returns -code.
 */
int kmm_watch_error_event(const json_t *status, struct kmm_error **err);

struct kmm_watch_options {
	const char *label_selector;
	const char *field_selector;
	const char *resource_version; /* start after this version; NULL = "most recent" */
	bool allow_bookmarks;
	long timeout_seconds; /* server-side stream timeout; 0 = server default */
	size_t max_frame;     /* cap of one event; 0 = KMM_WATCH_DEFAULT_MAX_FRAME */
};

struct kmm_watch;

/* Creates a cancellation handle (which also owns the stream's curl multi handle). */
int kmm_watch_new(struct kmm_watch **ret_watch, struct kmm_error **err);

/* Asks a running (or the next) kmm_kube_watch() on w to stop. Any thread; idempotent. */
void kmm_watch_cancel(struct kmm_watch *w);

bool kmm_watch_cancelled(const struct kmm_watch *w);

/* NULL-safe. No kmm_kube_watch() may be running on w. */
void kmm_watch_free(struct kmm_watch *w);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_watch *, kmm_watch_free)

/* An event; ERROR events never reach it (they end the stream with an error). A
 * negative return stops the stream and is returned (fill *err). */
typedef int (*kmm_watch_event_fn)(enum kmm_watch_event_type type, json_t *object, void *userdata,
				  struct kmm_error **err);

/* Called on the watching thread at least once a second while the stream is
 * open (for resync timers); may be NULL. A negative return stops the stream. */
typedef int (*kmm_watch_tick_fn)(void *userdata, struct kmm_error **err);

/*
 * Opens one watch stream on the collection of t and delivers events until
 * the server closes it (returns 0), w is cancelled (-ECANCELED), a callback
 * fails, an ERROR event arrives (410 -> -ESTALE, http_status 410), a frame
 * exceeds the cap (-E2BIG) or the transport fails. A non-200 answer is
 * decoded like any API error.
 */
int kmm_kube_watch(struct kmm_kube_client *c, const struct kmm_kube_target *t,
		   const struct kmm_watch_options *o, kmm_watch_event_fn on_event,
		   kmm_watch_tick_fn on_tick, void *userdata, struct kmm_watch *w,
		   struct kmm_error **err);

#endif
