/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Event recorder: core/v1 Events about an object, de-duplicated the way
 * kubectl shows them: the same (object, type, reason, message) seen again
 * bumps count and lastTimestamp on the existing Event (JSON merge patch)
 * instead of creating a new one.
 *
 * Threads: safe from any thread; each call sends synchronously (one request)
 * on the caller's thread. A create that still fails with a retryable error
 * (429, 5xx, transport) after the client's own retries is kept in the
 * recorder's queue (below: same bounds) and sent again by a later call, which
 * returns 0 for it; other failures are returned: events are best effort,
 * callers usually ignore the result. The recorder remembers at most 4096
 * series (then forgets all).
 */
#ifndef KMM_EVENTS_H
#define KMM_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "kmm/shared-error.h"
#include "kmm/kube.h"

struct kmm_event_recorder;

/* component: source.component / reportingComponent (e.g. "kmm-operator");
 * instance: reportingInstance (e.g. the pod name), may be NULL. */
int kmm_event_recorder_new(struct kmm_kube_client *client, const char *component,
			   const char *instance, struct kmm_event_recorder **ret,
			   struct kmm_error **err);

void kmm_event_recorder_free(struct kmm_event_recorder *r);

/*
 * Records an event about `object` (only apiVersion, kind, metadata.namespace,
 * name, uid, resourceVersion are read; a cluster-scoped object's events go to
 * "default"). type is "Normal" or "Warning".
 */
int kmm_event_record(struct kmm_event_recorder *r, const json_t *object, const char *type,
		     const char *reason, struct kmm_error **err, const char *fmt, ...)
    _printf_(6, 7);

/*
 * A bounded queue of Event creates to send again. Events are sent in
 * batches (kmm_kube_batch(), which already retries each one as a single
 * request would be); those still failing with a retryable error (429, 5xx,
 * a transport error) are kept here and sent again with the next
 * kmm_event_queue_send() once due, with their own backoff: 1 s doubling to
 * 60 s, or the server's Retry-After if longer. Nothing is retried after
 * KMM_EVENT_QUEUE_MAX_SENDS sends; a permanent failure (4xx other than 429)
 * is dropped at once (debug log). At most `max` Events are kept; a new one
 * pushes the oldest out. Each drop is counted in the stats.
 *
 * Every Event is sent with a fixed name: one with only
 * metadata.generateName gets generateName + a unique hex suffix before its
 * first send (as client-go names Events), so sending it again cannot make a
 * duplicate; a 409 AlreadyExists counts as delivered.
 *
 * Threads: safe from any thread; Events taken for a send belong to that
 * call until it returns, so concurrent senders never send one twice.
 */
#define KMM_EVENT_QUEUE_DEFAULT_MAX 1024
#define KMM_EVENT_QUEUE_MAX_SENDS 8
#define KMM_EVENT_QUEUE_BATCH_MAX 256 /* queued Events resent per call, at most */

struct kmm_event_queue;

struct kmm_event_queue_stats {
	uint64_t delivered;	  /* Events the apiserver took (2xx or 409 AlreadyExists) */
	uint64_t requeued;	  /* sends failed retryably; the Event was kept */
	uint64_t dropped_full;	  /* kept Events pushed out by newer ones (queue full) */
	uint64_t dropped_failed;  /* refused for good: 4xx other than 429, or unsendable */
	uint64_t dropped_expired; /* still failing after KMM_EVENT_QUEUE_MAX_SENDS sends */
	size_t pending;		  /* kept now */
};

/*
 * Sends a batch of Event creates; each item's outcome is filled as
 * kmm_kube_batch() fills it. The operator passes its own (which counts
 * requests in its metrics).
 */
typedef void (*kmm_event_batch_fn)(void *userdata, struct kmm_kube_batch_item *items, size_t n);

/* max 0 means KMM_EVENT_QUEUE_DEFAULT_MAX. The client is borrowed; send may be NULL
 * (then kmm_kube_batch() on client, 4 in flight). */
int kmm_event_queue_new(struct kmm_kube_client *client, size_t max, kmm_event_batch_fn send,
			void *userdata, struct kmm_event_queue **ret);

/* Frees the queue and the Events still kept (they are lost). NULL-safe. */
void kmm_event_queue_free(struct kmm_event_queue *q);

/*
 * Sends the n Event creates in events (POST requests, e.g. from
 * kmm_kube_prepare_create(); copied, the caller keeps them) and the kept
 * Events that are due, as one batch; keeps those that fail retryably.
 * *ret_next_ms (may be NULL) gets the ms until the next kept Event is due:
 * the caller arranges to call again then (with n = 0 if nothing new); -1
 * when none is kept, or when an earlier caller was already told to come
 * back by then (one caller at a time is asked to). Returns 0, or -ENOMEM
 * (nothing sent, nothing lost).
 */
int kmm_event_queue_send(struct kmm_event_queue *q, const struct kmm_kube_request *events, size_t n,
			 int64_t *ret_next_ms, struct kmm_error **err);

/*
 * kmm_event_queue_send() with the caller's own n_with requests in the same
 * batch, ahead of the Events: one round trip for a reconcile's writes and
 * its Events. Each item of `with` (its req filled by the caller) gets its
 * outcome as kmm_kube_batch() gives it, also on -ENOMEM (an error outcome,
 * nothing sent); the caller frees them with kmm_kube_batch_clear().
 */
int kmm_event_queue_send_with(struct kmm_event_queue *q, const struct kmm_kube_request *events,
			      size_t n, struct kmm_kube_batch_item *with, size_t n_with,
			      int64_t *ret_next_ms, struct kmm_error **err);

void kmm_event_queue_stats(struct kmm_event_queue *q, struct kmm_event_queue_stats *ret);

#endif
