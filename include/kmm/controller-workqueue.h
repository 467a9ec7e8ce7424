/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A rate-limited work queue of string keys and the controller worker loop.
 *
 * Semantics (those client-go users rely on):
 *  - a key is queued at most once (adds while queued are merged);
 *  - a key is never handed to two workers at once: added while being
 *    processed, it is queued again when the worker calls done();
 *  - add_rate_limited() delays by max(per-key exponential backoff, overall
 *    token bucket); forget() resets the key's backoff;
 *  - add_after() delays an add; a delayed add of a key already queued is a
 *    no-op once due;
 *  - shutdown: new adds are dropped, get() keeps handing out what is queued
 *    (drain) and returns false once the queue is empty; delayed adds not yet
 *    due are discarded.
 *
 * Threads: every function is safe from any thread. Keys are copied in; the
 * key get() returns belongs to the caller until it is passed to done(), which
 * frees it.
 */
#ifndef KMM_WORKQUEUE_H
#define KMM_WORKQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kmm/shared-error.h"

struct kmm_workqueue;

struct kmm_workqueue_options {
	int64_t base_delay_ms; /* first per-key backoff (default 5) */
	int64_t max_delay_ms;  /* per-key cap (default 1000 s) */
	double qps;	       /* overall bucket (default 10/s); <= 0 disables */
	int burst;	       /* overall bucket size (default 100) */
};

void kmm_workqueue_options_init(struct kmm_workqueue_options *o);

/* opts may be NULL for defaults. Returns NULL on ENOMEM. */
struct kmm_workqueue *kmm_workqueue_new(const struct kmm_workqueue_options *opts);

/* Frees the queue; no thread may use it any more. NULL-safe. */
void kmm_workqueue_free(struct kmm_workqueue *q);

/* Adds key now. Returns 0, -ENOMEM, or -ESHUTDOWN after shutdown (dropped). */
int kmm_workqueue_add(struct kmm_workqueue *q, const char *key);

/*
 * Adds key now, ahead of every key added otherwise (moved to the front if
 * already queued; queued first when done() if being processed). For work
 * that finishes something and frees memory, e.g. releasing finished pods.
 */
int kmm_workqueue_add_first(struct kmm_workqueue *q, const char *key);

/* Adds key after delay_ms (<= 0: now). */
int kmm_workqueue_add_after(struct kmm_workqueue *q, const char *key, int64_t delay_ms);

/* Adds key after its rate-limited delay; increments its failure count. */
int kmm_workqueue_add_rate_limited(struct kmm_workqueue *q, const char *key);

/* Forgets key's failures (call after a successful reconcile). */
void kmm_workqueue_forget(struct kmm_workqueue *q, const char *key);

/* Failures recorded for key since the last forget(). */
unsigned kmm_workqueue_num_requeues(struct kmm_workqueue *q, const char *key);

/*
 * Blocks until a key is available; returns true and the key (caller owns it
 * until done()), or false once shut down and drained.
 */
bool kmm_workqueue_get(struct kmm_workqueue *q, char **ret_key);

/* Marks key processed and frees it; re-queues it if it was added meanwhile. */
void kmm_workqueue_done(struct kmm_workqueue *q, char *key);

/* Queued (not delayed, not processing) keys. */
size_t kmm_workqueue_len(struct kmm_workqueue *q);

/* Stops accepting adds and wakes every waiter; get() drains what is queued. */
void kmm_workqueue_shutdown(struct kmm_workqueue *q);

/* Blocks until no key is being processed (after shutdown: fully drained). */
void kmm_workqueue_wait_idle(struct kmm_workqueue *q);

bool kmm_workqueue_shutting_down(struct kmm_workqueue *q);

/* ---- controller loop ---- */

/*
 * Reconciles one key. Return 0 on success (the key's backoff is forgotten),
 * a positive number of milliseconds to be called again after that delay, or
 * a negative errno to be retried with backoff (err, if set, is given to the
 * error callback, then freed).
 */
typedef int64_t (*kmm_reconcile_fn)(const char *key, void *userdata, struct kmm_error **err);

/* Called on the worker thread after a failed reconcile (for logging); may be NULL. */
typedef void (*kmm_reconcile_error_fn)(const char *key, const struct kmm_error *err,
				       void *userdata);

struct kmm_controller;

/*
 * Starts n_workers threads that take keys from q and call reconcile. q stays
 * owned by the caller and must outlive the controller.
 */
int kmm_controller_start(struct kmm_workqueue *q, int n_workers, kmm_reconcile_fn reconcile,
			 kmm_reconcile_error_fn on_error, void *userdata,
			 struct kmm_controller **ret_controller, struct kmm_error **err);

/* Shuts q down, lets the workers drain it, joins them and frees c. NULL-safe. */
void kmm_controller_stop(struct kmm_controller *c);

#endif
