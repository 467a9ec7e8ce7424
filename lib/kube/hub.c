/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The hub: one thread per client drives every transfer (requests, batches,
 * watch streams) on one curl multi handle, so they share its connection cache
 * and, over HTTP/2, one connection. Callers prepare an easy handle, hand it
 * over, and wait on their own mutex and condition variable; the hub calls
 * the transfer's callbacks on its thread. See docs/internals/transport.md.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include <curl/curl.h>

#include "lib/kube/kube-internal.h"

/* Idle connections kept: one per server for HTTP/2, a few more for HTTP/1.1. */
#define HUB_MAX_IDLE_CONNECTIONS 8L

struct kube_hub {
	pthread_mutex_t lock; /* guards everything below but multi's use */
	CURLM *multi;	      /* created with the thread; used by it alone (and wakeup) */
	pthread_t thread;
	bool started;
	bool stopping;
	struct kube_op *adds, **adds_tail; /* handed over, not yet in multi */
	struct kube_op *removes;	   /* cancellations to carry out */
};

int kube_hub_new(struct kube_hub **ret_hub)
{
	struct kube_hub *h = calloc(1, sizeof(*h));

	if (!h)
		return -ENOMEM;
	pthread_mutex_init(&h->lock, NULL);
	h->adds_tail = &h->adds;
	*ret_hub = h;
	return 0;
}

static void op_finish(struct kube_op *op, CURLcode result)
{
	pthread_mutex_lock(op->lock);
	op->result = result;
	op->done = true;
	pthread_cond_broadcast(op->cond);
	pthread_mutex_unlock(op->lock);
}

static void op_ack_removal(struct kube_op *op)
{
	pthread_mutex_lock(op->lock);
	op->removal_acked = true;
	pthread_cond_broadcast(op->cond);
	pthread_mutex_unlock(op->lock);
}

/* Takes the handed-over work; returns whether to stop. */
static bool hub_take(struct kube_hub *h, struct kube_op **ret_adds, struct kube_op **ret_removes)
{
	bool stop;

	pthread_mutex_lock(&h->lock);
	*ret_adds = h->adds;
	*ret_removes = h->removes;
	h->adds = NULL;
	h->adds_tail = &h->adds;
	h->removes = NULL;
	stop = h->stopping;
	pthread_mutex_unlock(&h->lock);
	return stop;
}

static void *hub_main(void *arg)
{
	struct kube_hub *h = arg;
	size_t active = 0;

	for (;;) {
		struct kube_op *adds, *removes, *next;
		bool stop = hub_take(h, &adds, &removes);
		CURLMsg *msg;
		int running, q;

		for (struct kube_op *op = adds; op; op = next) {
			next = op->next;
			op->next = NULL;
			if (curl_easy_setopt(op->easy, CURLOPT_PRIVATE, op) != CURLE_OK ||
			    curl_multi_add_handle(h->multi, op->easy) != CURLM_OK) {
				op_finish(op, CURLE_FAILED_INIT);
				continue;
			}
			op->in_multi = true;
			active++;
		}
		for (struct kube_op *op = removes; op; op = next) {
			next = op->next_removal;
			op->next_removal = NULL;
			if (op->in_multi) {
				curl_multi_remove_handle(h->multi, op->easy);
				op->in_multi = false;
				active--;
				op_finish(op, CURLE_ABORTED_BY_CALLBACK);
			}
			op_ack_removal(op);
		}
		/* Owners stop their transfers before freeing the client. */
		if (stop && active == 0)
			break;
		if (curl_multi_perform(h->multi, &running) != CURLM_OK)
			running = 0; /* only on a broken multi handle or out of memory */
		while ((msg = curl_multi_info_read(h->multi, &q))) {
			struct kube_op *op = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&op);
			if (!op || !op->in_multi)
				continue;
			CURLcode result = msg->data.result; /* msg dies with the removal */

			curl_multi_remove_handle(h->multi, op->easy);
			op->in_multi = false;
			active--;
			op_finish(op, result);
		}
		(void)curl_multi_poll(h->multi, NULL, 0, 1000, NULL);
	}
	return NULL;
}

/* The thread starts with the first transfer: a client that never talks costs none. */
static int hub_start_locked(struct kube_hub *h)
{
	sigset_t all, old;
	int r;

	h->multi = curl_multi_init();
	if (!h->multi)
		return -ENOMEM;
	/*
	 * Transfers wait for a connection that may multiplex them rather than
	 * open their own (CURLOPT_PIPEWAIT on each), so over HTTP/2 they all
	 * ride one connection, as client-go's do.
	 */
	if (curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX) !=
		CURLM_OK ||
	    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, HUB_MAX_IDLE_CONNECTIONS) !=
		CURLM_OK) {
		curl_multi_cleanup(h->multi);
		h->multi = NULL;
		return -EIO;
	}
	/* The hub takes no signals: they belong to the binary's own threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&h->thread, NULL, hub_main, h);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		curl_multi_cleanup(h->multi);
		h->multi = NULL;
		return r;
	}
	h->started = true;
	return 0;
}

int kube_hub_submit(struct kube_hub *h, struct kube_op *op)
{
	int r = 0;

	op->done = false;
	op->removal_acked = false;
	op->in_multi = false;
	op->next = NULL;
	op->next_removal = NULL;
	op->result = CURLE_OK;
	if (curl_easy_setopt(op->easy, CURLOPT_PIPEWAIT, 1L) != CURLE_OK)
		return -EIO;
	pthread_mutex_lock(&h->lock);
	if (h->stopping)
		r = -ESHUTDOWN;
	else if (!h->started)
		r = hub_start_locked(h);
	if (r == 0) {
		*h->adds_tail = op;
		h->adds_tail = &op->next;
	}
	pthread_mutex_unlock(&h->lock);
	if (r == 0)
		curl_multi_wakeup(h->multi);
	return r;
}

void kube_hub_cancel(struct kube_hub *h, struct kube_op *op)
{
	pthread_mutex_lock(&h->lock);
	op->next_removal = h->removes;
	h->removes = op;
	pthread_mutex_unlock(&h->lock);
	curl_multi_wakeup(h->multi);
	pthread_mutex_lock(op->lock);
	while (!op->removal_acked)
		pthread_cond_wait(op->cond, op->lock);
	pthread_mutex_unlock(op->lock);
}

int kube_hub_perform(struct kube_hub *h, CURL *e, CURLcode *ret_result)
{
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
	struct kube_op op = { .easy = e, .lock = &lock, .cond = &cond };
	int r;

	r = kube_hub_submit(h, &op);
	if (r == 0) {
		pthread_mutex_lock(&lock);
		while (!op.done)
			pthread_cond_wait(&cond, &lock);
		pthread_mutex_unlock(&lock);
		*ret_result = op.result;
	}
	pthread_cond_destroy(&cond);
	pthread_mutex_destroy(&lock);
	return r;
}

void kube_hub_free(struct kube_hub *h)
{
	bool started;

	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->stopping = true;
	started = h->started;
	pthread_mutex_unlock(&h->lock);
	if (started) {
		curl_multi_wakeup(h->multi);
		pthread_join(h->thread, NULL);
		curl_multi_cleanup(h->multi);
	}
	pthread_mutex_destroy(&h->lock);
	free(h);
}
