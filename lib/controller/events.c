/* SPDX-License-Identifier: Apache-2.0 */
/* core/v1 Event recorder with count-based de-duplication. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmm/shared-clock.h"
#include "kmm/controller-events.h"
#include "kmm/shared-hashmap.h"
#include "kmm/shared-log.h"

#define MAX_SERIES 4096

struct series {
	char *ns;
	char *name;
	int64_t count;
};

struct kmm_event_recorder {
	struct kmm_kube_client *c;
	char *component, *instance;
	struct kmm_event_queue *kept; /* creates that failed retryably */
	pthread_mutex_t lock;	      /* guards series */
	struct kmm_hashmap *series;
};

static void series_free(void *p)
{
	struct series *s = p;

	if (!s)
		return;
	free(s->ns);
	free(s->name);
	free(s);
}

int kmm_event_recorder_new(struct kmm_kube_client *client, const char *component,
			   const char *instance, struct kmm_event_recorder **ret,
			   struct kmm_error **err)
{
	struct kmm_event_recorder *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->c = client;
	r->component = strdup(component ? component : "kmm");
	r->instance = instance ? strdup(instance) : NULL;
	r->series = kmm_hashmap_new(series_free);
	pthread_mutex_init(&r->lock, NULL);
	if (!r->component || (instance && !r->instance) || !r->series ||
	    kmm_event_queue_new(client, 0, NULL, NULL, &r->kept) < 0) {
		kmm_event_recorder_free(r);
		return -ENOMEM;
	}
	*ret = r;
	return 0;
}

void kmm_event_recorder_free(struct kmm_event_recorder *r)
{
	if (!r)
		return;
	kmm_hashmap_free(r->series);
	kmm_event_queue_free(r->kept);
	pthread_mutex_destroy(&r->lock);
	free(r->component);
	free(r->instance);
	free(r);
}

static bool event_error_retryable(const struct kmm_error *e);
static int event_keep(struct kmm_event_queue *q, const struct kmm_kube_target *t, const json_t *ev,
		      struct kmm_error **err);

static int create_event(struct kmm_event_recorder *r, const json_t *obj, const char *ns,
			const char *type, const char *reason, const char *msg, const char *now,
			char **ret_name, struct kmm_error **err)
{
	_cleanup_(json_decrefp) json_t *ev = NULL, *created = NULL;
	_cleanup_error_ struct kmm_error *e = NULL;
	const struct kmm_kube_target t = { .res = &kmm_kube_events, .namespace = ns };
	const char *oname = kmm_kube_meta_str(obj, "name");
	char name[320];
	struct timespec ts;
	int rc;

	clock_gettime(CLOCK_REALTIME, &ts);
	/* Like client-go: <object>.<unique hex>. */
	snprintf(name, sizeof(name), "%.230s.%llx", oname ? oname : "unknown",
		 (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec);
	ev = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s?,s:s?,s:s?,s:s?,s:s?,s:s?},s:s,s:s,s:s,"
		       "s:s,s:s,s:i,s:{s:s,s:s?},s:s,s:s?}",
		       "apiVersion", "v1", "kind", "Event", "metadata", "name", name, "namespace",
		       ns, "involvedObject", "apiVersion",
		       json_string_value(json_object_get(obj, "apiVersion")), "kind",
		       json_string_value(json_object_get(obj, "kind")), "namespace",
		       kmm_kube_meta_str(obj, "namespace"), "name", oname, "uid",
		       kmm_kube_meta_str(obj, "uid"), "resourceVersion",
		       kmm_kube_meta_str(obj, "resourceVersion"), "type", type, "reason", reason,
		       "message", msg, "firstTimestamp", now, "lastTimestamp", now, "count", 1,
		       "source", "component", r->component, "host", r->instance,
		       "reportingComponent", r->component, "reportingInstance", r->instance);
	if (!ev)
		return -ENOMEM;
	rc = kmm_kube_create(r->c, &t, ev, NULL, &created, &e);
	if (rc < 0 && event_error_retryable(e)) {
		/* Past the client's own retries: kept, and sent again by a later call. */
		rc = event_keep(r->kept, &t, ev, err);
	} else if (rc < 0) {
		if (err)
			*err = TAKE_PTR(e);
		return rc;
	}
	if (rc < 0)
		return rc;
	*ret_name = strdup(name);
	return *ret_name ? 0 : -ENOMEM;
}

int kmm_event_record(struct kmm_event_recorder *r, const json_t *object, const char *type,
		     const char *reason, struct kmm_error **err, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL, *key = NULL, *name = NULL, *ev_ns = NULL;
	const char *ns = kmm_kube_meta_str(object, "namespace");
	struct series *s;
	char now[32];
	time_t t = time(NULL);
	struct tm tm;
	int64_t count = 0;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (rc < 0)
		return -ENOMEM;
	if (!ns || !*ns)
		ns = "default";
	/* Kept Events go first; their outcome is the queue's, not this call's. */
	(void)kmm_event_queue_send(r->kept, NULL, 0, NULL, NULL);
	gmtime_r(&t, &tm);
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
	/* A series is (object, type, reason, message). */
	if (asprintf(&key, "%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s", ns,
		     json_string_value(json_object_get(object, "kind")) ?: "",
		     kmm_kube_meta_str(object, "name") ?: "",
		     kmm_kube_meta_str(object, "uid") ?: "", type, reason, msg) < 0)
		return -ENOMEM;
	pthread_mutex_lock(&r->lock);
	s = r->series ? kmm_hashmap_get(r->series, key) : NULL;
	if (s) {
		name = strdup(s->name);
		ev_ns = strdup(s->ns);
		count = ++s->count;
	}
	pthread_mutex_unlock(&r->lock);
	if (s && (!name || !ev_ns))
		return -ENOMEM;
	if (name) {
		_cleanup_(json_decrefp) json_t *patch =
		    json_pack("{s:I,s:s}", "count", (json_int_t)count, "lastTimestamp", now);

		if (!patch)
			return -ENOMEM;
		rc = kmm_kube_patch(r->c,
				    &(struct kmm_kube_target){
					.res = &kmm_kube_events, .namespace = ev_ns, .name = name },
				    KMM_KUBE_PATCH_MERGE, patch, NULL, NULL, NULL);
		if (rc == 0)
			return 0;
		/* The Event expired or was deleted: start a new series. */
		free(name);
		name = NULL;
	}
	rc = create_event(r, object, ns, type, reason, msg, now, &name, err);
	if (rc < 0)
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->ns = strdup(ns))) {
		series_free(s);
		return -ENOMEM;
	}
	s->name = TAKE_PTR(name);
	s->count = 1;
	pthread_mutex_lock(&r->lock);
	if (kmm_hashmap_size(r->series) >= MAX_SERIES) {
		kmm_hashmap_free(r->series);
		r->series = kmm_hashmap_new(series_free);
	}
	if (!r->series || kmm_hashmap_put(r->series, key, s, NULL) < 0)
		series_free(s);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

/* ---- the retry queue ---- */

struct kept_event {
	struct kmm_kube_request req; /* method POST; path and body point at the two below */
	char *path;
	char *body;
	int sends;	/* failed sends so far */
	int64_t due_ms; /* monotonic */
	struct kept_event *next;
};

struct kmm_event_queue {
	struct kmm_kube_client *c;
	kmm_event_batch_fn send;
	void *userdata;
	size_t max;
	pthread_mutex_t lock;		 /* guards everything below */
	struct kept_event *head, **tail; /* oldest first */
	size_t len;
	struct kmm_event_queue_stats stats;
	int64_t promised_ms; /* a caller was told to come back then (monotonic), or 0 */
};

enum event_outcome {
	EVENT_DELIVERED,
	EVENT_RETRY,
	EVENT_FAILED,
};

static void kept_free(struct kept_event *k)
{
	if (!k)
		return;
	free(k->path);
	free(k->body);
	free(k);
}
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kept_event *, kept_free)

int kmm_event_queue_new(struct kmm_kube_client *client, size_t max, kmm_event_batch_fn send,
			void *userdata, struct kmm_event_queue **ret)
{
	struct kmm_event_queue *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	q->c = client;
	q->send = send;
	q->userdata = userdata;
	q->max = max ? max : KMM_EVENT_QUEUE_DEFAULT_MAX;
	q->tail = &q->head;
	pthread_mutex_init(&q->lock, NULL);
	*ret = q;
	return 0;
}

void kmm_event_queue_free(struct kmm_event_queue *q)
{
	if (!q)
		return;
	while (q->head) {
		struct kept_event *k = q->head;

		q->head = k->next;
		kept_free(k);
	}
	pthread_mutex_destroy(&q->lock);
	free(q);
}

void kmm_event_queue_stats(struct kmm_event_queue *q, struct kmm_event_queue_stats *ret)
{
	pthread_mutex_lock(&q->lock);
	*ret = q->stats;
	ret->pending = q->len;
	pthread_mutex_unlock(&q->lock);
}

/*
 * The body to send for an Event create: as given, but an Event with
 * generateName and no name gets a name of its own (generateName + unique
 * hex), so that sending it twice cannot create two.
 */
static char *event_body_named(const char *body, size_t len)
{
	static atomic_uint_fast64_t seq;
	_cleanup_(json_decrefp) json_t *ev = json_loadb(body, len, 0, NULL);
	json_t *meta = json_object_get(ev, "metadata");
	const char *gen = json_string_value(json_object_get(meta, "generateName"));
	char name[320];
	struct timespec ts;
	char *s;

	if (!gen || json_string_length(json_object_get(meta, "name")) > 0) {
		s = malloc(len + 1);
		if (s) {
			memcpy(s, body, len);
			s[len] = '\0';
		}
		return s;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	/* Unique within the process even for two Events in the same nanosecond. */
	snprintf(name, sizeof(name), "%.200s%llx", gen,
		 (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec +
		     (unsigned long long)atomic_fetch_add(&seq, 1));
	if (json_object_set_new(meta, "name", json_string(name)) < 0 ||
	    json_object_del(meta, "generateName") < 0)
		return NULL;
	return json_dumps(ev, JSON_COMPACT);
}

static struct kept_event *kept_new(const struct kmm_kube_request *req)
{
	_cleanup_(kept_freep) struct kept_event *k = calloc(1, sizeof(*k));

	if (!k || !(k->path = strdup(req->path)))
		return NULL;
	if (req->body && !(k->body = event_body_named(req->body, req->body_len)))
		return NULL;
	k->req = (struct kmm_kube_request){
		.method = "POST",
		.path = k->path,
		.content_type = req->content_type,
		.body = k->body,
		.body_len = k->body ? strlen(k->body) : 0,
		/* The name is fixed now: a repeat fails with AlreadyExists, never duplicates. */
		.named_create = k->body != NULL,
	};
	return TAKE_PTR(k);
}

/* What one send of an Event came to, and the server's delay if it gave one. */
static enum event_outcome event_outcome(const struct kmm_kube_batch_item *it,
					int64_t *ret_retry_after_ms)
{
	long status = it->rc == 0 ? it->resp.status : 0;

	*ret_retry_after_ms = it->rc == 0 ? it->resp.retry_after_ms
			      : it->err	  ? it->err->retry_after_ms
					  : -1;
	if (it->rc < 0)
		/* Transport errors pass; a body over the cap would be over it again. */
		return it->rc == -E2BIG ? EVENT_FAILED : EVENT_RETRY;
	if (status == 0) /* never sent: the batch stopped short */
		return EVENT_RETRY;
	if ((status >= 200 && status < 300) || status == 409)
		return EVENT_DELIVERED;
	if (status == 429 || status >= 500)
		return EVENT_RETRY;
	return EVENT_FAILED;
}

/* Appends k, pushing the oldest out when full. Called with q->lock held. */
static void queue_keep_locked(struct kmm_event_queue *q, struct kept_event *k)
{
	while (q->len >= q->max && q->head) {
		struct kept_event *old = q->head;

		q->head = old->next;
		if (!q->head)
			q->tail = &q->head;
		q->len--;
		q->stats.dropped_full++;
		kmm_debug("events: queue full, oldest Event dropped", "path", old->path);
		kept_free(old);
	}
	k->next = NULL;
	*q->tail = k;
	q->tail = &k->next;
	q->len++;
}

/* Takes up to max due Events out of the queue into out[]. */
static size_t queue_take_due(struct kmm_event_queue *q, struct kept_event **out, size_t max,
			     int64_t now)
{
	struct kept_event **pp;
	size_t n = 0;

	pthread_mutex_lock(&q->lock);
	pp = &q->head;
	while (*pp && n < max) {
		struct kept_event *k = *pp;

		if (k->due_ms > now) {
			pp = &k->next;
			continue;
		}
		*pp = k->next;
		k->next = NULL;
		q->len--;
		out[n++] = k;
	}
	/* The tail moved if the last ones were taken. */
	q->tail = &q->head;
	while (*q->tail)
		q->tail = &(*q->tail)->next;
	pthread_mutex_unlock(&q->lock);
	return n;
}

/*
 * When the caller should call again: the next kept Event's due time, unless
 * an earlier caller was already told to come back by then (so a thousand
 * reconciles do not all return for one kept Event); -1 when nothing is kept
 * or someone else comes back.
 */
static int64_t queue_next_due_ms(struct kmm_event_queue *q, int64_t now)
{
	int64_t next = -1;

	pthread_mutex_lock(&q->lock);
	for (struct kept_event *k = q->head; k; k = k->next)
		if (next < 0 || k->due_ms < next)
			next = k->due_ms;
	if (next < 0)
		q->promised_ms = 0;
	else if (q->promised_ms > now && q->promised_ms <= next)
		next = -1;
	else
		q->promised_ms = next;
	pthread_mutex_unlock(&q->lock);
	return next < 0 ? -1 : next > now ? next - now : 0;
}

static int64_t event_backoff_ms(int sends, int64_t retry_after_ms)
{
	int64_t d = 1000;

	for (int i = 1; i < sends && d < 60000; i++)
		d *= 2;
	if (d > 60000)
		d = 60000;
	/* The server's delay wins when longer, within the same cap. */
	if (retry_after_ms > d)
		d = retry_after_ms > 60000 ? 60000 : retry_after_ms;
	return d;
}

/* Settles one sent Event: frees it or keeps it for later. */
static void event_settle(struct kmm_event_queue *q, struct kept_event *k,
			 const struct kmm_kube_batch_item *it, int64_t now)
{
	int64_t after = -1;
	enum event_outcome o = event_outcome(it, &after);

	pthread_mutex_lock(&q->lock);
	if (o == EVENT_DELIVERED) {
		q->stats.delivered++;
	} else if (o == EVENT_FAILED) {
		q->stats.dropped_failed++;
	} else if (++k->sends >= KMM_EVENT_QUEUE_MAX_SENDS) {
		q->stats.dropped_expired++;
	} else {
		q->stats.requeued++;
		k->due_ms = now + event_backoff_ms(k->sends, after);
		queue_keep_locked(q, TAKE_PTR(k));
	}
	pthread_mutex_unlock(&q->lock);
	if (k && o != EVENT_DELIVERED) {
		_cleanup_error_ struct kmm_error *e = NULL;

		(void)kmm_kube_batch_item_json(it, NULL, &e);
		kmm_debug("events: Event dropped", "path", k->path, "error",
			  e ? kmm_error_message(e) : "-");
	}
	kept_free(k);
}

/* Nothing was sent (out of memory): err and, as their outcome, every item of with say why. */
static int send_failed(struct kmm_kube_batch_item *with, size_t n_with, struct kmm_error **err,
		       const char *why)
{
	for (size_t i = 0; i < n_with; i++)
		with[i].rc = kmm_error_make(&with[i].err, ENOMEM, "%s %s: %s", with[i].req.method,
					    with[i].req.path, why);
	return kmm_error_make(err, ENOMEM, "%s", why);
}

int kmm_event_queue_send_with(struct kmm_event_queue *q, const struct kmm_kube_request *events,
			      size_t n, struct kmm_kube_batch_item *with, size_t n_with,
			      int64_t *ret_next_ms, struct kmm_error **err)
{
	_cleanup_free_ struct kept_event **ks = NULL;
	_cleanup_free_ struct kmm_kube_batch_item *items = NULL;
	size_t m = 0;
	int64_t now = kmm_now_mono_ms();

	/* Each below half of what an array can hold: n_with + n + the due ones cannot wrap. */
	const size_t cap = (SIZE_MAX / sizeof(*items) - KMM_EVENT_QUEUE_BATCH_MAX) / 2;

	if (n > cap || n_with > cap) {
		return send_failed(with, n_with, err, "events: too many requests for one batch");
	}
	ks = calloc(n + KMM_EVENT_QUEUE_BATCH_MAX, sizeof(*ks));
	items = calloc(n_with + n + KMM_EVENT_QUEUE_BATCH_MAX, sizeof(*items));
	if (!ks || !items) {
		return send_failed(with, n_with, err, "events: out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		ks[i] = kept_new(&events[i]);
		if (!ks[i]) {
			for (size_t j = 0; j < i; j++)
				kept_free(ks[j]);
			return send_failed(with, n_with, err, "events: out of memory");
		}
	}
	m = n + queue_take_due(q, ks + n, KMM_EVENT_QUEUE_BATCH_MAX, now);
	for (size_t i = 0; i < n_with; i++)
		items[i].req = with[i].req;
	for (size_t i = 0; i < m; i++)
		items[n_with + i].req = ks[i]->req;
	if (n_with + m > 0) {
		if (q->send)
			q->send(q->userdata, items, n_with + m);
		else
			(void)kmm_kube_batch(q->c, items, n_with + m, 4, NULL);
	}
	for (size_t i = 0; i < n_with; i++) { /* the outcomes are the caller's now */
		with[i].resp = items[i].resp;
		with[i].rc = items[i].rc;
		with[i].err = items[i].err;
		with[i].attempts = items[i].attempts;
	}
	now = kmm_now_mono_ms();
	for (size_t i = 0; i < m; i++)
		event_settle(q, ks[i], &items[n_with + i], now);
	kmm_kube_batch_clear(items + n_with, m);
	if (ret_next_ms)
		*ret_next_ms = queue_next_due_ms(q, now);
	return 0;
}

int kmm_event_queue_send(struct kmm_event_queue *q, const struct kmm_kube_request *events, size_t n,
			 int64_t *ret_next_ms, struct kmm_error **err)
{
	return kmm_event_queue_send_with(q, events, n, NULL, 0, ret_next_ms, err);
}

/* A single create's error that a later send may not meet: 429, 5xx, transport. */
static bool event_error_retryable(const struct kmm_error *e)
{
	if (!e)
		return false;
	if (e->http_status > 0)
		return e->http_status == 429 || e->http_status >= 500;
	return e->code == ECONNREFUSED || e->code == ETIMEDOUT;
}

/* Keeps the Event create ev for a later send, due in 1 s. */
static int event_keep(struct kmm_event_queue *q, const struct kmm_kube_target *t, const json_t *ev,
		      struct kmm_error **err)
{
	struct kmm_kube_prepared p = { 0 };
	struct kept_event *k;
	int r = kmm_kube_prepare_create(t, ev, NULL, &p, err);

	if (r < 0)
		return r;
	k = kept_new(&p.req);
	kmm_kube_prepared_clear(&p);
	if (!k)
		return -ENOMEM;
	k->sends = 1;
	k->due_ms = kmm_now_mono_ms() + event_backoff_ms(1, -1);
	pthread_mutex_lock(&q->lock);
	q->stats.requeued++;
	queue_keep_locked(q, k);
	pthread_mutex_unlock(&q->lock);
	return 0;
}
