/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image existence checks on a few threads of their own. A registry that
 * accepts connections and never answers holds a check for its whole deadline;
 * run on the operator's reconcile workers, a handful of such images would
 * stall every Module. Here a check holds one of `threads` check threads at
 * most, one host holds at most `per_host` of them, the queue is bounded, and
 * the caller hears the verdict through a callback.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmm/shared-clock.h"
#include "lib/registry/registry-client.h"

struct job {
	struct job *next;
	char *key;
	char *image;
	char *host; /* the reference's registry host:port */
	uint64_t tag;
	struct kmm_registry *reg;
};

struct kmm_image_checks {
	struct kmm_image_checks_options o;
	kmm_image_check_done_fn done;
	void *userdata;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *head, **tail; /* FIFO */
	size_t queued;
	const char **running; /* per thread: the host of its check, or NULL */
	pthread_t *threads;
	unsigned n_threads; /* started */
	atomic_bool stopping;
};

static void job_free(struct job *j)
{
	if (!j)
		return;
	free(j->key);
	free(j->image);
	free(j->host);
	kmm_registry_free(j->reg);
	free(j);
}

/* The first queued job whose host has a free slot, unlinked; NULL if none. Hold lock. */
static struct job *take_runnable(struct kmm_image_checks *c)
{
	for (struct job **pp = &c->head; *pp; pp = &(*pp)->next) {
		struct job *j = *pp;
		unsigned busy = 0;

		for (unsigned i = 0; i < c->o.threads; i++)
			if (c->running[i] && strcmp(c->running[i], j->host) == 0)
				busy++;
		if (busy >= c->o.per_host)
			continue;
		*pp = j->next;
		if (c->tail == &j->next)
			c->tail = pp;
		j->next = NULL;
		c->queued--;
		return j;
	}
	return NULL;
}

struct worker_arg {
	struct kmm_image_checks *c;
	unsigned slot;
};

static void *worker(void *p)
{
	struct worker_arg *a = p;
	struct kmm_image_checks *c = a->c;
	unsigned slot = a->slot;

	free(a);
	for (;;) {
		struct kmm_error *e = NULL;
		struct job *j = NULL;
		int r;

		pthread_mutex_lock(&c->lock);
		while (!atomic_load(&c->stopping) && !(j = take_runnable(c)))
			pthread_cond_wait(&c->cond, &c->lock);
		if (!j) {
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
		c->running[slot] = j->host;
		pthread_mutex_unlock(&c->lock);

		/* The deadline starts when the check does, not when it was queued. */
		kmm_registry_set_limits(j->reg, &c->stopping, kmm_now_mono_ms() + c->o.deadline_ms);
		r = kmm_registry_image_exists(j->reg, j->image, NULL, &e);
		if (!atomic_load(&c->stopping))
			c->done(c->userdata, j->key, j->tag, r, e);
		kmm_error_free(e);

		pthread_mutex_lock(&c->lock);
		c->running[slot] = NULL;
		/* A check of this host may be runnable now. */
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		job_free(j);
	}
}

void kmm_image_checks_free(struct kmm_image_checks *c)
{
	struct job *j;

	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	atomic_store(&c->stopping, true);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = 0; i < c->n_threads; i++)
		pthread_join(c->threads[i], NULL);
	while ((j = c->head)) {
		c->head = j->next;
		job_free(j);
	}
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c->running);
	free(c->threads);
	free(c);
}

int kmm_image_checks_new(const struct kmm_image_checks_options *opts, kmm_image_check_done_fn done,
			 void *userdata, struct kmm_image_checks **ret, struct kmm_error **err)
{
	static const struct kmm_image_checks_options none = { 0 };
	_cleanup_(kmm_image_checks_freep) struct kmm_image_checks *c = NULL;

	if (!opts)
		opts = &none;
	if (!done)
		return kmm_error_make(err, EINVAL, "image checks need a callback");
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->o = *opts;
	if (!c->o.threads)
		c->o.threads = 4;
	if (c->o.threads > 64)
		return kmm_error_make(err, EINVAL, "image checks: at most 64 threads");
	if (!c->o.per_host || c->o.per_host > c->o.threads)
		c->o.per_host = c->o.threads < 2 ? c->o.threads : 2;
	if (!c->o.max_queued)
		c->o.max_queued = 1024;
	if (c->o.deadline_ms <= 0)
		c->o.deadline_ms = 30000;
	c->done = done;
	c->userdata = userdata;
	c->tail = &c->head;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->running = calloc(c->o.threads, sizeof(*c->running));
	c->threads = calloc(c->o.threads, sizeof(*c->threads));
	if (!c->running || !c->threads)
		return -ENOMEM;
	for (unsigned i = 0; i < c->o.threads; i++) {
		struct worker_arg *a = malloc(sizeof(*a));
		int r;

		if (!a)
			return -ENOMEM;
		*a = (struct worker_arg){ c, i };
		r = pthread_create(&c->threads[i], NULL, worker, a);
		if (r) {
			free(a);
			return kmm_error_make_errno(err, r, "start image check thread");
		}
		c->n_threads++;
	}
	*ret = TAKE_PTR(c);
	return 0;
}

int kmm_image_checks_submit(struct kmm_image_checks *c, const char *key, uint64_t tag,
			    const char *image, struct kmm_registry *reg, struct kmm_error **err)
{
	_cleanup_(kmm_image_ref_freep) struct kmm_image_ref *ref = NULL;
	struct job *j;
	int r;

	r = kmm_image_ref_parse(image, &ref, err);
	if (r < 0) {
		if (r == -EINVAL && err && *err && !(*err)->reason)
			(*err)->reason = strdup("BadReference");
		kmm_registry_free(reg);
		return r;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		kmm_registry_free(reg);
		return -ENOMEM;
	}
	j->reg = reg;
	j->tag = tag;
	j->key = strdup(key);
	j->image = strdup(image);
	j->host = strdup(ref->registry);
	if (!j->key || !j->image || !j->host) {
		job_free(j);
		return -ENOMEM;
	}
	pthread_mutex_lock(&c->lock);
	/*
	 * The same key still waiting: it answers for this submission too (the
	 * newer tag and client win), so a caller that asks again while checks of
	 * a slow host queue up does not pile up copies.
	 */
	for (struct job *q = c->head; q && !atomic_load(&c->stopping); q = q->next)
		if (strcmp(q->key, key) == 0 && strcmp(q->image, image) == 0) {
			q->tag = tag;
			kmm_registry_free(q->reg);
			q->reg = TAKE_PTR(j->reg);
			pthread_mutex_unlock(&c->lock);
			job_free(j);
			return 0;
		}
	if (atomic_load(&c->stopping))
		r = kmm_error_make(err, ECANCELED, "image checks are stopping");
	else if (c->queued >= c->o.max_queued)
		r = kmm_error_make(err, EAGAIN, "%zu image checks already wait", c->queued);
	if (r < 0) {
		pthread_mutex_unlock(&c->lock);
		job_free(j);
		return r;
	}
	*c->tail = j;
	c->tail = &j->next;
	c->queued++;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return 0;
}
