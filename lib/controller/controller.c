/* SPDX-License-Identifier: Apache-2.0 */
/* The worker loop: N threads, get -> reconcile -> forget / requeue -> done. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "kmm/controller-workqueue.h"

struct kmm_controller {
	struct kmm_workqueue *q;
	kmm_reconcile_fn reconcile;
	kmm_reconcile_error_fn on_error;
	void *userdata;
	pthread_t *threads;
	int n_threads;
};

static void *worker(void *arg)
{
	struct kmm_controller *c = arg;
	char *key;

	while (kmm_workqueue_get(c->q, &key)) {
		struct kmm_error *err = NULL;
		int64_t r = c->reconcile(key, c->userdata, &err);

		if (r < 0) {
			if (c->on_error)
				c->on_error(key, err, c->userdata);
			(void)kmm_workqueue_add_rate_limited(c->q, key);
		} else {
			kmm_workqueue_forget(c->q, key);
			if (r > 0)
				(void)kmm_workqueue_add_after(c->q, key, r);
		}
		kmm_error_free(err);
		kmm_workqueue_done(c->q, key);
	}
	return NULL;
}

int kmm_controller_start(struct kmm_workqueue *q, int n_workers, kmm_reconcile_fn reconcile,
			 kmm_reconcile_error_fn on_error, void *userdata,
			 struct kmm_controller **ret_controller, struct kmm_error **err)
{
	struct kmm_controller *c;

	if (n_workers < 1)
		return kmm_error_make(err, EINVAL, "controller: need at least one worker");
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->threads = calloc((size_t)n_workers, sizeof(pthread_t));
	if (!c->threads) {
		free(c);
		return -ENOMEM;
	}
	c->q = q;
	c->reconcile = reconcile;
	c->on_error = on_error;
	c->userdata = userdata;
	for (; c->n_threads < n_workers; c->n_threads++) {
		int r = pthread_create(&c->threads[c->n_threads], NULL, worker, c);

		if (r != 0) {
			kmm_controller_stop(c);
			return kmm_error_make_errno(err, r, "controller: start worker");
		}
	}
	*ret_controller = c;
	return 0;
}

void kmm_controller_stop(struct kmm_controller *c)
{
	if (!c)
		return;
	kmm_workqueue_shutdown(c->q);
	for (int i = 0; i < c->n_threads; i++)
		pthread_join(c->threads[i], NULL);
	free(c->threads);
	free(c);
}
