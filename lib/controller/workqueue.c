/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Work queue: a FIFO of keys plus three sets (dirty = queued or to be
 * re-queued, processing, failures) and a delayed list, all under one mutex;
 * one condition variable wakes getters. Delayed adds are moved to the FIFO by
 * whichever getter wakes first at the earliest deadline, so no timer thread
 * is needed. See docs/internals/workqueue.md.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmm/shared-clock.h"
#include "kmm/shared-hashmap.h"
#include "kmm/controller-workqueue.h"

struct delayed {
	char *key;
	int64_t due_ms;
	struct delayed *next; /* sorted by due_ms */
};

struct fifo_node {
	char *key;
	struct fifo_node *next, *prev;
};

/* dirty's value for a key re-added urgently while processing (else its node, or NULL) */
static char urgent_mark;
#define URGENT_AFTER_DONE ((void *)&urgent_mark)

struct kmm_workqueue {
	pthread_mutex_t lock;
	pthread_cond_t cond;	  /* something queued, a delay came due, or shutdown */
	pthread_cond_t idle_cond; /* processing became empty */
	struct kmm_workqueue_options o;

	struct fifo_node *head, *tail;
	size_t len;
	struct kmm_hashmap *dirty;	/* key -> its fifo_node, NULL or URGENT_AFTER_DONE */
	struct kmm_hashmap *processing; /* key -> NULL */
	struct kmm_hashmap *failures;	/* key -> (uintptr_t) count */
	struct delayed *delayed;
	bool shutting_down;

	double tokens; /* overall bucket, in "slots" */
	int64_t bucket_last_ms;
};

void kmm_workqueue_options_init(struct kmm_workqueue_options *o)
{
	*o = (struct kmm_workqueue_options){
		.base_delay_ms = 5,
		.max_delay_ms = 1000 * 1000,
		.qps = 10,
		.burst = 100,
	};
}

struct kmm_workqueue *kmm_workqueue_new(const struct kmm_workqueue_options *opts)
{
	struct kmm_workqueue *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	if (opts)
		q->o = *opts;
	else
		kmm_workqueue_options_init(&q->o);
	q->dirty = kmm_hashmap_new(NULL);
	q->processing = kmm_hashmap_new(NULL);
	q->failures = kmm_hashmap_new(NULL);
	if (!q->dirty || !q->processing || !q->failures) {
		kmm_hashmap_free(q->dirty);
		kmm_hashmap_free(q->processing);
		kmm_hashmap_free(q->failures);
		free(q);
		return NULL;
	}
	pthread_mutex_init(&q->lock, NULL);
	(void)kmm_cond_init_monotonic(&q->cond);
	(void)kmm_cond_init_monotonic(&q->idle_cond);
	q->tokens = q->o.burst;
	q->bucket_last_ms = kmm_now_mono_ms();
	return q;
}

static void delayed_free_all(struct kmm_workqueue *q)
{
	while (q->delayed) {
		struct delayed *d = q->delayed;

		q->delayed = d->next;
		free(d->key);
		free(d);
	}
}

void kmm_workqueue_free(struct kmm_workqueue *q)
{
	if (!q)
		return;
	while (q->head) {
		struct fifo_node *n = q->head;

		q->head = n->next;
		free(n->key);
		free(n);
	}
	delayed_free_all(q);
	kmm_hashmap_free(q->dirty);
	kmm_hashmap_free(q->processing);
	kmm_hashmap_free(q->failures);
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->cond);
	pthread_cond_destroy(&q->idle_cond);
	free(q);
}

static void link_node(struct kmm_workqueue *q, struct fifo_node *n, bool first)
{
	if (first) {
		n->prev = NULL;
		n->next = q->head;
		if (q->head)
			q->head->prev = n;
		else
			q->tail = n;
		q->head = n;
	} else {
		n->next = NULL;
		n->prev = q->tail;
		if (q->tail)
			q->tail->next = n;
		else
			q->head = n;
		q->tail = n;
	}
	q->len++;
	pthread_cond_signal(&q->cond);
}

static void unlink_node(struct kmm_workqueue *q, struct fifo_node *n)
{
	if (n->prev)
		n->prev->next = n->next;
	else
		q->head = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		q->tail = n->prev;
	q->len--;
}

/* Called with the lock held. */
static int add_locked(struct kmm_workqueue *q, const char *key, bool first)
{
	struct fifo_node *n;
	int r;

	if (q->shutting_down)
		return -ESHUTDOWN;
	if (kmm_hashmap_contains(q->dirty, key)) {
		n = kmm_hashmap_get(q->dirty, key);
		if (!first)
			return 0;
		if (!n || n == URGENT_AFTER_DONE) /* processing: done() queues it first */
			return kmm_hashmap_put(q->dirty, key, URGENT_AFTER_DONE, NULL);
		unlink_node(q, n);
		link_node(q, n, true);
		return 0;
	}
	if (kmm_hashmap_contains(q->processing, key))
		return kmm_hashmap_put(q->dirty, key, first ? URGENT_AFTER_DONE : NULL, NULL);
	n = calloc(1, sizeof(*n));
	if (!n || !(n->key = strdup(key))) {
		free(n);
		return -ENOMEM;
	}
	r = kmm_hashmap_put(q->dirty, key, n, NULL);
	if (r < 0) {
		free(n->key);
		free(n);
		return r;
	}
	link_node(q, n, first);
	return 0;
}

int kmm_workqueue_add(struct kmm_workqueue *q, const char *key)
{
	int r;

	pthread_mutex_lock(&q->lock);
	r = add_locked(q, key, false);
	pthread_mutex_unlock(&q->lock);
	return r;
}

int kmm_workqueue_add_first(struct kmm_workqueue *q, const char *key)
{
	int r;

	pthread_mutex_lock(&q->lock);
	r = add_locked(q, key, true);
	pthread_mutex_unlock(&q->lock);
	return r;
}

static int add_after_locked(struct kmm_workqueue *q, const char *key, int64_t delay_ms)
{
	struct delayed *d, **p;

	if (q->shutting_down)
		return -ESHUTDOWN;
	if (delay_ms <= 0)
		return add_locked(q, key, false);
	/* One pending delayed entry per key: keep the earlier deadline. */
	for (p = &q->delayed; *p; p = &(*p)->next) {
		if (strcmp((*p)->key, key) == 0) {
			if ((*p)->due_ms <= kmm_now_mono_ms() + delay_ms)
				return 0;
			d = *p;
			*p = d->next;
			free(d->key);
			free(d);
			break;
		}
	}
	d = calloc(1, sizeof(*d));
	if (!d || !(d->key = strdup(key))) {
		free(d);
		return -ENOMEM;
	}
	d->due_ms = kmm_now_mono_ms() + delay_ms;
	for (p = &q->delayed; *p && (*p)->due_ms <= d->due_ms; p = &(*p)->next)
		;
	d->next = *p;
	*p = d;
	pthread_cond_broadcast(&q->cond); /* a getter may need an earlier wake-up */
	return 0;
}

int kmm_workqueue_add_after(struct kmm_workqueue *q, const char *key, int64_t delay_ms)
{
	int r;

	pthread_mutex_lock(&q->lock);
	r = add_after_locked(q, key, delay_ms);
	pthread_mutex_unlock(&q->lock);
	return r;
}

int kmm_workqueue_add_rate_limited(struct kmm_workqueue *q, const char *key)
{
	uintptr_t n;
	int64_t per_key, bucket = 0, now;
	int r;

	pthread_mutex_lock(&q->lock);
	n = (uintptr_t)kmm_hashmap_get(q->failures, key);
	per_key = q->o.base_delay_ms;
	for (uintptr_t i = 0; i < n && per_key < q->o.max_delay_ms; i++)
		per_key *= 2;
	if (per_key > q->o.max_delay_ms)
		per_key = q->o.max_delay_ms;
	/* The count is stored in the pointer itself: no allocation per key. */
	// NOLINTNEXTLINE(performance-no-int-to-ptr)
	r = kmm_hashmap_put(q->failures, key, (void *)(n + 1), NULL);
	if (r < 0)
		goto out;
	if (q->o.qps > 0) {
		now = kmm_now_mono_ms();
		q->tokens += (double)(now - q->bucket_last_ms) / 1000.0 * q->o.qps;
		if (q->tokens > q->o.burst)
			q->tokens = q->o.burst;
		q->bucket_last_ms = now;
		q->tokens -= 1;
		if (q->tokens < 0)
			bucket = (int64_t)(-q->tokens / q->o.qps * 1000.0);
	}
	r = add_after_locked(q, key, per_key > bucket ? per_key : bucket);
out:
	pthread_mutex_unlock(&q->lock);
	return r;
}

void kmm_workqueue_forget(struct kmm_workqueue *q, const char *key)
{
	pthread_mutex_lock(&q->lock);
	kmm_hashmap_remove(q->failures, key);
	pthread_mutex_unlock(&q->lock);
}

unsigned kmm_workqueue_num_requeues(struct kmm_workqueue *q, const char *key)
{
	uintptr_t n;

	pthread_mutex_lock(&q->lock);
	n = (uintptr_t)kmm_hashmap_get(q->failures, key);
	pthread_mutex_unlock(&q->lock);
	return (unsigned)n;
}

/* Moves due delayed keys to the FIFO; returns the next deadline or -1. */
static int64_t promote_due(struct kmm_workqueue *q)
{
	int64_t now = kmm_now_mono_ms();

	while (q->delayed && q->delayed->due_ms <= now) {
		struct delayed *d = q->delayed;

		q->delayed = d->next;
		(void)add_locked(q, d->key, false); /* ENOMEM: the key is lost, as after a crash */
		free(d->key);
		free(d);
	}
	return q->delayed ? q->delayed->due_ms : -1;
}

bool kmm_workqueue_get(struct kmm_workqueue *q, char **ret_key)
{
	struct fifo_node *n;
	int r;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		int64_t next = q->shutting_down ? -1 : promote_due(q);

		if (q->head)
			break;
		if (q->shutting_down) {
			pthread_mutex_unlock(&q->lock);
			return false;
		}
		if (next < 0) {
			pthread_cond_wait(&q->cond, &q->lock);
		} else {
			struct timespec ts = kmm_timespec_from_ms(next);

			pthread_cond_timedwait(&q->cond, &q->lock, &ts);
		}
	}
	n = q->head;
	unlink_node(q, n);
	r = kmm_hashmap_put(q->processing, n->key, NULL, NULL);
	kmm_hashmap_remove(q->dirty, n->key);
	pthread_mutex_unlock(&q->lock);
	(void)r; /* on ENOMEM the key is not marked processing: at worst processed twice */
	*ret_key = n->key;
	free(n);
	return true;
}

void kmm_workqueue_done(struct kmm_workqueue *q, char *key)
{
	pthread_mutex_lock(&q->lock);
	kmm_hashmap_remove(q->processing, key);
	if (kmm_hashmap_contains(q->dirty, key)) {
		/* Re-added while processing: queue it now (even when shutting down,
		 * so the last change is not lost during a drain). */
		bool first = kmm_hashmap_get(q->dirty, key) == URGENT_AFTER_DONE;
		struct fifo_node *n = calloc(1, sizeof(*n));

		if (n && kmm_hashmap_put(q->dirty, key, n, NULL) == 0) {
			n->key = key;
			key = NULL;
			link_node(q, n, first);
		} else {
			free(n);
			kmm_hashmap_remove(q->dirty, key); /* ENOMEM: lost, as after a crash */
		}
	}
	if (kmm_hashmap_size(q->processing) == 0)
		pthread_cond_broadcast(&q->idle_cond);
	pthread_mutex_unlock(&q->lock);
	free(key);
}

size_t kmm_workqueue_len(struct kmm_workqueue *q)
{
	size_t n;

	pthread_mutex_lock(&q->lock);
	n = q->len;
	pthread_mutex_unlock(&q->lock);
	return n;
}

void kmm_workqueue_shutdown(struct kmm_workqueue *q)
{
	pthread_mutex_lock(&q->lock);
	q->shutting_down = true;
	delayed_free_all(q);
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

bool kmm_workqueue_shutting_down(struct kmm_workqueue *q)
{
	bool b;

	pthread_mutex_lock(&q->lock);
	b = q->shutting_down;
	pthread_mutex_unlock(&q->lock);
	return b;
}

void kmm_workqueue_wait_idle(struct kmm_workqueue *q)
{
	pthread_mutex_lock(&q->lock);
	while (kmm_hashmap_size(q->processing) > 0 || (q->shutting_down && q->head))
		pthread_cond_wait(&q->idle_cond, &q->lock);
	pthread_mutex_unlock(&q->lock);
}
