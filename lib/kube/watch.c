/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One watch stream, run by the client's hub like any transfer: the hub's
 * thread appends what arrives to the stream's inbox and signals; the watching
 * thread takes it, splits frames with kmm_jsonl (capped) and decodes them one
 * at a time, so slow event handlers never hold up other transfers.
 * See docs/internals/watch.md.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-clock.h"
#include "kmm/shared-jsonl.h"
#include "kmm/shared-log.h"
#include "kmm/kube-watch.h"
#include "lib/kube/kube-internal.h"

/*
 * Bytes received but not yet taken by the watching thread. Over the cap the
 * stream is stopped with an error (and reopened by its owner): only a
 * watcher stuck for a long time in its handlers gets there.
 */
#define WATCH_INBOX_MAX ((size_t)64 * 1024 * 1024)

struct kmm_watch {
	pthread_mutex_t lock; /* guards the running stream's inbox and op state */
	pthread_cond_t cond;
	atomic_bool cancelled;
};

static const char *const type_names[] = {
	[KMM_WATCH_ADDED] = "ADDED",	 [KMM_WATCH_MODIFIED] = "MODIFIED",
	[KMM_WATCH_DELETED] = "DELETED", [KMM_WATCH_BOOKMARK] = "BOOKMARK",
	[KMM_WATCH_ERROR] = "ERROR",
};

const char *kmm_watch_event_type_name(enum kmm_watch_event_type t)
{
	return (unsigned)t < KMM_ARRAY_SIZE(type_names) ? type_names[t] : "?";
}

int kmm_watch_decode(const char *frame, size_t len, enum kmm_watch_event_type *ret_type,
		     json_t **ret_object, struct kmm_error **err)
{
	_cleanup_(json_decrefp) json_t *ev = NULL;
	json_error_t jerr;
	const char *type;
	json_t *obj;

	ev = json_loadb(frame, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!ev)
		return kmm_error_make(err, EBADMSG, "watch event: not JSON: %s", jerr.text);
	type = json_string_value(json_object_get(ev, "type"));
	obj = json_object_get(ev, "object");
	if (!type)
		return kmm_error_make(err, EBADMSG, "watch event: no type");
	if (!json_is_object(obj))
		return kmm_error_make(err, EBADMSG, "watch event %s: no object", type);
	for (size_t i = 0; i < KMM_ARRAY_SIZE(type_names); i++) {
		if (strcmp(type, type_names[i]) == 0) {
			*ret_type = (enum kmm_watch_event_type)i;
			*ret_object = json_incref(obj);
			return 0;
		}
	}
	return kmm_error_make(err, EBADMSG, "watch event: unknown type \"%.40s\"", type);
}

int kmm_watch_error_event(const json_t *status, struct kmm_error **err)
{
	_cleanup_free_ char *body = json_dumps(status, JSON_COMPACT);
	struct kmm_kube_response resp = { .status = 500, .retry_after_ms = -1 };
	const json_t *code = json_object_get(status, "code");

	if (json_is_integer(code) && json_integer_value(code) >= 400 &&
	    json_integer_value(code) < 600)
		resp.status = (long)json_integer_value(code);
	resp.body = body;
	resp.body_len = body ? strlen(body) : 0;
	return kmm_kube_error_from_response(&resp, "watch", err);
}

int kmm_watch_new(struct kmm_watch **ret_watch, struct kmm_error **err)
{
	struct kmm_watch *w = calloc(1, sizeof(*w));

	(void)err;
	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	(void)kmm_cond_init_monotonic(&w->cond); /* stream_wait()'s deadlines */
	atomic_init(&w->cancelled, false);
	*ret_watch = w;
	return 0;
}

void kmm_watch_cancel(struct kmm_watch *w)
{
	atomic_store(&w->cancelled, true);
	pthread_mutex_lock(&w->lock);
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

bool kmm_watch_cancelled(const struct kmm_watch *w)
{
	return atomic_load(&((struct kmm_watch *)w)->cancelled);
}

void kmm_watch_free(struct kmm_watch *w)
{
	if (!w)
		return;
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

struct stream {
	struct kube_op op;
	struct kmm_watch *w;
	/* Written by the hub under w->lock; read by the watcher under it or once op.done. */
	struct kmm_buf inbox;
	bool inbox_full;
	struct kmm_buf errbody; /* body of a non-200 answer, capped */
	long status;
	/* The watcher's. */
	struct kmm_jsonl split;
	kmm_watch_event_fn on_event;
	void *userdata;
	struct kmm_error *err; /* why the stream stopped from inside a callback */
	int r;
};

static int on_frame(const char *frame, size_t len, void *ud, struct kmm_error **err)
{
	struct stream *s = ud;
	_cleanup_(json_decrefp) json_t *obj = NULL;
	enum kmm_watch_event_type type = KMM_WATCH_ERROR;
	int r;

	r = kmm_watch_decode(frame, len, &type, &obj, err);
	if (r < 0)
		return r;
	if (type == KMM_WATCH_ERROR)
		return kmm_watch_error_event(obj, err);
	return s->on_event(type, obj, s->userdata, err);
}

/* On the hub's thread. */
static size_t stream_write(char *p, size_t size, size_t n, void *ud)
{
	struct stream *s = ud;
	size_t len = size * n;
	bool ok = true;

	if (s->status == 0)
		curl_easy_getinfo(s->op.easy, CURLINFO_RESPONSE_CODE, &s->status);
	pthread_mutex_lock(&s->w->lock);
	if (s->status != 200) {
		(void)kmm_buf_append(&s->errbody, p, len); /* over the cap: truncated */
	} else if (kmm_buf_append(&s->inbox, p, len) < 0) {
		s->inbox_full = true;
		ok = false;
	}
	pthread_cond_broadcast(&s->w->cond);
	pthread_mutex_unlock(&s->w->lock);
	return ok ? len : 0; /* 0 stops the transfer */
}

/* Feeds what the hub received to the frame splitter and event callback. */
static int stream_feed(struct stream *s, const char *p, size_t len)
{
	int r = kmm_jsonl_feed(&s->split, p, len, on_frame, s, &s->err);

	if (r == -E2BIG && !s->err)
		kmm_error_make(&s->err, E2BIG, "watch event over %zu bytes", s->split.max_frame);
	return r;
}

/*
 * Waits for the stream to deliver, end, or be cancelled (at most a second,
 * for the tick); takes what arrived into *ret_chunk. Called with w->lock held.
 */
static void stream_wait(struct stream *s, struct kmm_watch *w, char **ret_chunk, size_t *ret_len)
{
	struct timespec until = kmm_deadline_after_ms(CLOCK_MONOTONIC, 1000);

	while (!s->op.done && s->inbox.len == 0 && !kmm_watch_cancelled(w))
		if (pthread_cond_timedwait(&w->cond, &w->lock, &until) == ETIMEDOUT)
			break;
	*ret_len = s->inbox.len;
	*ret_chunk = s->inbox.len > 0 ? kmm_buf_steal(&s->inbox) : NULL;
	if (*ret_len > 0 && !*ret_chunk)
		*ret_len = 0; /* out of memory: the bytes stay for the next round */
}

int kmm_kube_watch(struct kmm_kube_client *c, const struct kmm_kube_target *t,
		   const struct kmm_watch_options *o, kmm_watch_event_fn on_event,
		   kmm_watch_tick_fn on_tick, void *userdata, struct kmm_watch *w,
		   struct kmm_error **err)
{
	struct kmm_watch_options none = { 0 };
	struct kmm_kube_target coll = *t;
	_cleanup_free_ char *path = NULL, *tmo = NULL;
	struct curl_slist *h = NULL;
	struct stream s = { .on_event = on_event, .userdata = userdata, .w = w };
	bool finished = false;
	long guard_ms = 0;
	int r;

	if (!o)
		o = &none;
	if (kmm_watch_cancelled(w))
		return kmm_error_make(err, ECANCELED, "watch %s: cancelled", t->res->resource);
	coll.name = NULL;
	coll.subresource = NULL;
	if (o->timeout_seconds > 0) {
		if (asprintf(&tmo, "%ld", o->timeout_seconds) < 0)
			return -ENOMEM;
		/* If the server forgets to close, stop 30 s after it should have. */
		guard_ms = (o->timeout_seconds + 30) * 1000;
	}
	r = kmm_kube_path(&coll,
			  (const struct kmm_kube_query[]){
			      { "watch", "1" },
			      { "labelSelector", o->label_selector },
			      { "fieldSelector", o->field_selector },
			      { "resourceVersion", o->resource_version },
			      { "allowWatchBookmarks", o->allow_bookmarks ? "true" : NULL },
			      { "timeoutSeconds", tmo },
			      { NULL, NULL },
			  },
			  &path, err);
	if (r < 0)
		return r;
	kmm_jsonl_init(&s.split, o->max_frame ? o->max_frame : KMM_WATCH_DEFAULT_MAX_FRAME);
	kmm_buf_init(&s.inbox, WATCH_INBOX_MAX);
	kmm_buf_init(&s.errbody, 64 * 1024);
	s.op.lock = &w->lock;
	s.op.cond = &w->cond;
	kube_rate_wait(c);
	s.op.easy = curl_easy_init();
	if (!s.op.easy) {
		r = -ENOMEM;
		goto out;
	}
	r = kube_easy_setup(c, s.op.easy, "GET", path, NULL, NULL, 0, guard_ms, &h, err);
	if (r < 0)
		goto out;
	/*
	 * Uncompressed: the apiserver gzips some watch streams (seen from
	 * resourceVersion=0), libcurl 7.88 ended those with CURLE_WRITE_ERROR
	 * (watch.t), and a long-lived inflate state costs ~40 KiB per stream.
	 */
	if (curl_easy_setopt(s.op.easy, CURLOPT_ACCEPT_ENCODING, NULL) != CURLE_OK ||
	    curl_easy_setopt(s.op.easy, CURLOPT_WRITEFUNCTION, stream_write) != CURLE_OK ||
	    curl_easy_setopt(s.op.easy, CURLOPT_WRITEDATA, &s) != CURLE_OK) {
		r = kmm_error_make(err, EIO, "watch: curl setup failed");
		goto out;
	}
	r = kube_hub_submit(kube_client_hub(c), &s.op);
	if (r < 0) {
		kmm_error_make(err, -r, "watch %s: transfer not started", t->res->resource);
		goto out;
	}
	for (;;) {
		_cleanup_free_ char *chunk = NULL;
		size_t len;

		pthread_mutex_lock(&w->lock);
		stream_wait(&s, w, &chunk, &len);
		/* Everything the hub wrote precedes done: with it, chunk is the last. */
		finished = s.op.done;
		pthread_mutex_unlock(&w->lock);
		if (len > 0 && (s.r = stream_feed(&s, chunk, len)) < 0)
			break;
		if (finished || kmm_watch_cancelled(w))
			break;
		if (on_tick && (s.r = on_tick(userdata, &s.err)) < 0)
			break;
	}
	if (!finished)
		kube_hub_cancel(kube_client_hub(c), &s.op);
	{
		long conns = 0;

		curl_easy_getinfo(s.op.easy, CURLINFO_NUM_CONNECTS, &conns);
		kube_stats_add(c, conns);
	}
	if (s.r < 0) {
		r = s.r;
		if (err && s.err)
			*err = TAKE_PTR(s.err);
		else if (err && !*err)
			kmm_error_make(err, -r, "watch %s: stopped", t->res->resource);
		goto out;
	}
	if (!finished) {
		r = kmm_error_make(err, ECANCELED, "watch %s: cancelled", t->res->resource);
		goto out;
	}
	if (s.inbox_full) {
		r = kmm_error_make(err, ENOBUFS,
				   "watch %s: over %zu bytes received but not handled",
				   t->res->resource, WATCH_INBOX_MAX);
		goto out;
	}
	if (s.status == 0)
		curl_easy_getinfo(s.op.easy, CURLINFO_RESPONSE_CODE, &s.status);
	if (s.status != 0 && s.status != 200) {
		struct kmm_kube_response resp = { .status = s.status,
						  .body = s.errbody.data,
						  .body_len = s.errbody.len,
						  .retry_after_ms = -1 };

		r = kmm_kube_error_from_response(&resp, "watch", err);
		goto out;
	}
	if (s.op.result != CURLE_OK && s.op.result != CURLE_PARTIAL_FILE) {
		r = kmm_error_make(
		    err, s.op.result == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT : ECONNRESET,
		    "watch %s: %s", t->res->resource, curl_easy_strerror(s.op.result));
		goto out;
	}
	/* A clean end of stream: deliver a last unterminated frame, if any. */
	r = kmm_jsonl_finish(&s.split, on_frame, &s, err);
out:
	curl_slist_free_all(h);
	if (s.op.easy)
		curl_easy_cleanup(s.op.easy);
	kmm_jsonl_free(&s.split);
	kmm_buf_free(&s.inbox);
	kmm_buf_free(&s.errbody);
	kmm_error_free(s.err);
	return r;
}
