/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One watch stream on a curl multi handle, so another thread can wake it with
 * curl_multi_wakeup() to cancel; frames split by kmm_jsonl (capped), decoded
 * one at a time. See docs/internals/watch.md.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "kmm/buf.h"
#include "kmm/jsonl.h"
#include "kmm/log.h"
#include "kmm/watch.h"
#include "lib/kube/kube-internal.h"

struct kmm_watch {
	CURLM *multi;
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

	if (!w)
		return -ENOMEM;
	w->multi = curl_multi_init();
	if (!w->multi) {
		free(w);
		return kmm_error_make(err, ENOMEM, "curl_multi_init failed");
	}
	atomic_init(&w->cancelled, false);
	*ret_watch = w;
	return 0;
}

void kmm_watch_cancel(struct kmm_watch *w)
{
	atomic_store(&w->cancelled, true);
	curl_multi_wakeup(w->multi);
}

bool kmm_watch_cancelled(const struct kmm_watch *w)
{
	return atomic_load(&((struct kmm_watch *)w)->cancelled);
}

void kmm_watch_free(struct kmm_watch *w)
{
	if (!w)
		return;
	curl_multi_cleanup(w->multi);
	free(w);
}

struct stream {
	CURL *easy;
	struct kmm_jsonl split;
	struct kmm_buf errbody; /* body of a non-200 answer, capped */
	long status;
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

static size_t stream_write(char *p, size_t size, size_t n, void *ud)
{
	struct stream *s = ud;
	size_t len = size * n;
	int r;

	if (s->status == 0)
		curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->status);
	if (s->status != 200) {
		(void)kmm_buf_append(&s->errbody, p, len); /* over the cap: truncated */
		return len;
	}
	r = kmm_jsonl_feed(&s->split, p, len, on_frame, s, &s->err);
	if (r < 0) {
		if (r == -E2BIG && !s->err)
			kmm_error_make(&s->err, E2BIG, "watch event over %zu bytes",
				       s->split.max_frame);
		s->r = r;
		return 0; /* stops the transfer */
	}
	return len;
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
	struct stream s = { .on_event = on_event, .userdata = userdata };
	CURLcode done = CURLE_OK;
	bool finished = false;
	long guard_ms = 0;
	int r, running = 0;

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
	kmm_buf_init(&s.errbody, 64 * 1024);
	kube_rate_wait(c);
	s.easy = curl_easy_init();
	if (!s.easy) {
		r = -ENOMEM;
		goto out;
	}
	r = kube_easy_setup(c, s.easy, "GET", path, NULL, NULL, 0, guard_ms, &h, err);
	if (r < 0)
		goto out;
	if (curl_easy_setopt(s.easy, CURLOPT_WRITEFUNCTION, stream_write) != CURLE_OK ||
	    curl_easy_setopt(s.easy, CURLOPT_WRITEDATA, &s) != CURLE_OK ||
	    curl_multi_add_handle(w->multi, s.easy) != CURLM_OK) {
		r = kmm_error_make(err, EIO, "watch: curl setup failed");
		goto out;
	}
	while (!finished) {
		CURLMcode mc = curl_multi_perform(w->multi, &running);
		CURLMsg *m;
		int q;

		if (mc != CURLM_OK) {
			r = kmm_error_make(err, EIO, "watch: %s", curl_multi_strerror(mc));
			break;
		}
		while ((m = curl_multi_info_read(w->multi, &q)))
			if (m->msg == CURLMSG_DONE && m->easy_handle == s.easy) {
				done = m->data.result;
				finished = true;
			}
		if (finished || kmm_watch_cancelled(w))
			break;
		if (on_tick) {
			r = on_tick(userdata, &s.err);
			if (r < 0) {
				s.r = r;
				break;
			}
		}
		mc = curl_multi_poll(w->multi, NULL, 0, 1000, NULL);
		if (mc != CURLM_OK) {
			r = kmm_error_make(err, EIO, "watch: %s", curl_multi_strerror(mc));
			break;
		}
	}
	curl_multi_remove_handle(w->multi, s.easy);
	{
		long conns = 0;

		curl_easy_getinfo(s.easy, CURLINFO_NUM_CONNECTS, &conns);
		kube_stats_add(c, conns);
	}
	if (r < 0)
		goto out;
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
	if (s.status == 0)
		curl_easy_getinfo(s.easy, CURLINFO_RESPONSE_CODE, &s.status);
	if (s.status != 0 && s.status != 200) {
		struct kmm_kube_response resp = { .status = s.status,
						  .body = s.errbody.data,
						  .body_len = s.errbody.len,
						  .retry_after_ms = -1 };

		r = kmm_kube_error_from_response(&resp, "watch", err);
		goto out;
	}
	if (done != CURLE_OK && done != CURLE_PARTIAL_FILE) {
		r = kmm_error_make(err, done == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT : ECONNRESET,
				   "watch %s: %s", t->res->resource, curl_easy_strerror(done));
		goto out;
	}
	/* A clean end of stream: deliver a last unterminated frame, if any. */
	r = kmm_jsonl_finish(&s.split, on_frame, &s, err);
out:
	curl_slist_free_all(h);
	if (s.easy)
		curl_easy_cleanup(s.easy);
	kmm_jsonl_free(&s.split);
	kmm_buf_free(&s.errbody);
	kmm_error_free(s.err);
	return r;
}
