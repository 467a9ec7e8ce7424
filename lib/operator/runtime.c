/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Controllers with controller-runtime's metrics, counted API writes, and the
 * NodeModulesConfig overlay (see kmm/operator.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "kmm/shared-clock.h"
#include "kmm/shared-hashmap.h"
#include "kmm/shared-json.h"
#include "kmm/operator-runtime.h"
#include "kmm/controller-workqueue.h"

const struct kmm_kube_resource kmm_op_modules = { KMM_API_GROUP, "v1beta1", "modules", true };
const struct kmm_kube_resource kmm_op_nmcs = { KMM_API_GROUP, "v1beta1", "nodemodulesconfigs",
					       false };

static double now_s(void)
{
	return (double)kmm_now_mono_ns() / 1e9;
}

/* ------------------------------------------------------------------------- */
/* Controllers                                                               */

struct kmm_op_ctl {
	char *name;
	struct kmm_workqueue *q;
	struct kmm_controller *ctl;
	kmm_op_reconcile_fn fn;
	void *userdata;
	atomic_bool stopping; /* skip what is still queued: finish in-flight work only */
	pthread_mutex_t lock;
	struct kmm_hashmap *added; /* key -> double* time first queued */
	struct kmm_metric *total, *errors, *duration, *latency, *depth, *adds;
};

static const double duration_buckets[] = { 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05,
					   0.1,	   0.25,   0.5,	  1,	 2.5,  5,     10 };

static int reg(struct kmm_metrics *m, enum kmm_metric_type type, const char *name, const char *help,
	       const char *const *labels, struct kmm_metric **ret, struct kmm_error **err)
{
	*ret = kmm_metrics_find(m, name);
	if (*ret)
		return 0;
	return kmm_metrics_register(m, type, name, help, labels, duration_buckets,
				    KMM_ARRAY_SIZE(duration_buckets), ret, err);
}

static void ctl_depth_collect(struct kmm_metrics *m, void *userdata)
{
	struct kmm_op_ctl *c = userdata;
	const char *lv[] = { c->name };

	(void)m;
	kmm_metric_set(c->depth, lv, (double)kmm_op_ctl_depth(c));
}

int kmm_op_ctl_new(const char *name, struct kmm_metrics *m, struct kmm_op_ctl **ret,
		   struct kmm_error **err)
{
	static const char *const ctl_result[] = { "controller", "result", NULL };
	static const char *const ctl_only[] = { "controller", NULL };
	static const char *const q_name[] = { "name", NULL };
	struct kmm_op_ctl *c;
	struct kmm_workqueue_options qo;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return kmm_error_make(err, ENOMEM, "out of memory");
	pthread_mutex_init(&c->lock, NULL);
	kmm_workqueue_options_init(&qo);
	qo.qps = 0; /* per-key backoff only: a burst of keys is not an error */
	c->name = strdup(name);
	c->q = kmm_workqueue_new(&qo);
	c->added = kmm_hashmap_new(free);
	if (!c->name || !c->q || !c->added) {
		kmm_op_ctl_free(c);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	r = reg(m, KMM_METRIC_COUNTER, "controller_runtime_reconcile_total",
		"Total number of reconciliations per controller", ctl_result, &c->total, err);
	if (r >= 0)
		r = reg(m, KMM_METRIC_COUNTER, "controller_runtime_reconcile_errors_total",
			"Total number of reconciliation errors per controller", ctl_only,
			&c->errors, err);
	if (r >= 0)
		r = reg(m, KMM_METRIC_HISTOGRAM, "controller_runtime_reconcile_time_seconds",
			"Length of time per reconciliation per controller", ctl_only, &c->duration,
			err);
	if (r >= 0)
		r = reg(m, KMM_METRIC_HISTOGRAM, "workqueue_queue_duration_seconds",
			"How long in seconds an item stays in workqueue before being requested",
			q_name, &c->latency, err);
	if (r >= 0)
		r = reg(m, KMM_METRIC_GAUGE, "workqueue_depth", "Current depth of workqueue",
			q_name, &c->depth, err);
	if (r >= 0)
		r = reg(m, KMM_METRIC_COUNTER, "workqueue_adds_total",
			"Total number of adds handled by workqueue", q_name, &c->adds, err);
	if (r >= 0)
		r = kmm_metrics_add_collector(m, ctl_depth_collect, c);
	if (r < 0) {
		kmm_op_ctl_free(c);
		return r;
	}
	*ret = c;
	return 0;
}

const char *kmm_op_ctl_name(const struct kmm_op_ctl *c)
{
	return c->name;
}

static void note_added(struct kmm_op_ctl *c, const char *key, double when)
{
	const char *lv[] = { c->name };
	double *t;

	kmm_metric_add(c->adds, lv, 1);
	pthread_mutex_lock(&c->lock);
	if (!kmm_hashmap_contains(c->added, key)) {
		t = malloc(sizeof(*t));
		if (t) {
			*t = when;
			if (kmm_hashmap_put(c->added, key, t, NULL) < 0)
				free(t);
		}
	}
	pthread_mutex_unlock(&c->lock);
}

/*
 * The enqueues take a NULL controller and do nothing: a reconciler that does
 * not run in the operator's mode (kmm_op_reconciler.modes) has none, and
 * the others' watches need not know.
 */
void kmm_op_ctl_enqueue(struct kmm_op_ctl *c, const char *key)
{
	if (!c)
		return;
	note_added(c, key, now_s());
	kmm_workqueue_add(c->q, key);
}

void kmm_op_ctl_enqueue_first(struct kmm_op_ctl *c, const char *key)
{
	if (!c)
		return;
	note_added(c, key, now_s());
	kmm_workqueue_add_first(c->q, key);
}

void kmm_op_ctl_enqueue_coalesced(struct kmm_op_ctl *c, const char *key, int64_t delay_ms)
{
	bool pending;

	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	pending = kmm_hashmap_contains(c->added, key);
	pthread_mutex_unlock(&c->lock);
	if (pending)
		return; /* already queued or due: that reconcile will see this change too */
	kmm_op_ctl_enqueue_after(c, key, delay_ms);
}

void kmm_op_ctl_enqueue_after(struct kmm_op_ctl *c, const char *key, int64_t delay_ms)
{
	if (!c)
		return;
	note_added(c, key, now_s() + (double)delay_ms / 1000.0);
	kmm_workqueue_add_after(c->q, key, delay_ms);
}

static int64_t trampoline(const char *key, void *userdata, struct kmm_error **err)
{
	struct kmm_op_ctl *c = userdata;
	const char *lv[] = { c->name };
	double start = now_s(), *t;
	int64_t r;

	pthread_mutex_lock(&c->lock);
	t = kmm_hashmap_remove(c->added, key);
	pthread_mutex_unlock(&c->lock);
	if (atomic_load(&c->stopping)) {
		free(t);
		return 0;
	}
	if (t) {
		kmm_metric_observe(c->latency, lv, start > *t ? start - *t : 0);
		free(t);
	}
	r = c->fn(key, c->userdata, err);
	kmm_metric_observe(c->duration, lv, now_s() - start);
	{
		const char *lr[] = { c->name, r < 0   ? "error"
					      : r > 0 ? "requeue_after"
						      : "success" };

		kmm_metric_add(c->total, lr, 1);
	}
	if (r < 0)
		kmm_metric_add(c->errors, lv, 1);
	else if (r > 0)
		note_added(c, key, now_s() + (double)r / 1000.0);
	return r;
}

int kmm_op_ctl_start(struct kmm_op_ctl *c, int workers, kmm_op_reconcile_fn fn, void *userdata,
		     struct kmm_error **err)
{
	c->fn = fn;
	c->userdata = userdata;
	return kmm_controller_start(c->q, workers, trampoline, NULL, c, &c->ctl, err);
}

/* Called through kmm_controller's error callback: nothing (the caller logs). */

void kmm_op_ctl_stop(struct kmm_op_ctl *c)
{
	if (!c)
		return;
	atomic_store(&c->stopping, true);
	if (c->ctl) {
		kmm_controller_stop(c->ctl);
		c->ctl = NULL;
	} else if (c->q) {
		kmm_workqueue_shutdown(c->q);
	}
}

size_t kmm_op_ctl_depth(struct kmm_op_ctl *c)
{
	return kmm_workqueue_len(c->q);
}

void kmm_op_ctl_free(struct kmm_op_ctl *c)
{
	if (!c)
		return;
	kmm_op_ctl_stop(c);
	kmm_workqueue_free(c->q);
	kmm_hashmap_free(c->added);
	pthread_mutex_destroy(&c->lock);
	free(c->name);
	free(c);
}

/* ------------------------------------------------------------------------- */
/* API writes                                                                */

int kmm_op_api_init(struct kmm_op_api *a, struct kmm_kube_client *kube, struct kmm_metrics *m,
		    struct kmm_error **err)
{
	static const char *const labels[] = { "method", "code", NULL };

	a->kube = kube;
	a->requests = kmm_metrics_find(m, "rest_client_requests_total");
	if (a->requests)
		return 0;
	return kmm_metrics_register(m, KMM_METRIC_COUNTER, "rest_client_requests_total",
				    "Number of HTTP requests issued by kmm-operator's reconcilers, "
				    "partitioned by method and status code",
				    labels, NULL, 0, &a->requests, err);
}

void kmm_op_api_count(struct kmm_op_api *a, const char *method, int code)
{
	char buf[16];
	const char *lv[] = { method, buf };

	if (!a->requests)
		return;
	snprintf(buf, sizeof(buf), "%d", code);
	kmm_metric_add(a->requests, lv, 1);
}

/*
 * One request in rest_client_requests_total: a success as 201 for POST and
 * 200 otherwise, a failure as its HTTP status, 0 when there was none
 * (transport).
 */
static void count(struct kmm_op_api *a, const char *method, bool ok, int http_status)
{
	if (ok)
		http_status = strcmp(method, "POST") == 0 ? 201 : 200;
	kmm_op_api_count(a, method, http_status);
}

static int counted(struct kmm_op_api *a, const char *method, int r, struct kmm_error **err)
{
	count(a, method, r >= 0, r < 0 && err && *err ? (*err)->http_status : 0);
	return r;
}

int kmm_op_get(struct kmm_op_api *a, const struct kmm_kube_target *t, json_t **ret,
	       struct kmm_error **err)
{
	return counted(a, "GET", kmm_kube_get(a->kube, t, ret, err), err);
}

int kmm_op_create(struct kmm_op_api *a, const struct kmm_kube_target *t, const json_t *obj,
		  json_t **ret, struct kmm_error **err)
{
	struct kmm_kube_write_options o = { .field_manager = KMM_OP_FIELD_MANAGER };

	return counted(a, "POST", kmm_kube_create(a->kube, t, obj, &o, ret, err), err);
}

/* lib/kube's leaf failures (out of memory) come without an error: give them one. */
static int with_error(int r, struct kmm_error **err)
{
	if (r < 0 && err && !*err)
		return kmm_error_make(err, -r, "build request: %s", strerror(-r));
	return r;
}

int kmm_op_prepare_create(const struct kmm_kube_target *t, const json_t *obj,
			  struct kmm_kube_prepared *ret, struct kmm_error **err)
{
	struct kmm_kube_write_options o = { .field_manager = KMM_OP_FIELD_MANAGER };

	return with_error(kmm_kube_prepare_create(t, obj, &o, ret, err), err);
}

int kmm_op_prepare_patch(const struct kmm_kube_target *t, enum kmm_kube_patch_type type,
			 const json_t *patch, struct kmm_kube_prepared *ret, struct kmm_error **err)
{
	struct kmm_kube_patch_options o = { .field_manager = KMM_OP_FIELD_MANAGER };

	return with_error(kmm_kube_prepare_patch(t, type, patch, &o, ret, err), err);
}

int kmm_op_prepare_delete(const struct kmm_kube_target *t, struct kmm_kube_prepared *ret,
			  struct kmm_error **err)
{
	struct kmm_kube_delete_options o;

	kmm_kube_delete_options_init(&o);
	return with_error(kmm_kube_prepare_delete(t, &o, ret, err), err);
}

int kmm_op_batch(struct kmm_op_api *a, struct kmm_kube_batch_item *items, size_t n,
		 struct kmm_error **err)
{
	_cleanup_error_ struct kmm_error *e = NULL;
	int r = kmm_kube_batch(a->kube, items, n, KMM_OP_BATCH_IN_FLIGHT, &e);

	for (size_t i = 0; i < n; i++) {
		struct kmm_kube_batch_item *it = &items[i];

		if (r < 0 && it->rc == 0 && it->resp.status == 0) {
			/* Cut short by the batch's failure: no outcome, maybe not even sent. */
			kmm_kube_response_clear(&it->resp);
			it->rc = kmm_error_make(
			    &it->err, e ? e->code : -r, "%s %s: batch failed: %s", it->req.method,
			    it->req.path, e ? kmm_error_message(e) : strerror(-r));
			continue;
		}
		count(a, it->req.method,
		      it->rc == 0 && it->resp.status >= 200 && it->resp.status < 300,
		      it->rc < 0 ? 0 : (int)it->resp.status);
	}
	if (r < 0) {
		if (!e)
			return kmm_error_make(err, -r, "batch of %zu requests: %s", n,
					      strerror(-r));
		if (err)
			*err = TAKE_PTR(e);
	}
	return r;
}

int kmm_op_patch(struct kmm_op_api *a, const struct kmm_kube_target *t,
		 enum kmm_kube_patch_type type, const json_t *patch, json_t **ret,
		 struct kmm_error **err)
{
	struct kmm_kube_patch_options o = { .field_manager = KMM_OP_FIELD_MANAGER };

	return counted(a, "PATCH", kmm_kube_patch(a->kube, t, type, patch, &o, ret, err), err);
}

int kmm_op_delete(struct kmm_op_api *a, const struct kmm_kube_target *t, struct kmm_error **err)
{
	struct kmm_kube_delete_options o;
	struct kmm_error *e = NULL;
	int r;

	kmm_kube_delete_options_init(&o);
	r = counted(a, "DELETE", kmm_kube_delete(a->kube, t, &o, NULL, &e), &e);
	if (r == -ENOENT) {
		kmm_error_free(e);
		return 0;
	}
	if (r < 0) {
		if (err)
			*err = e;
		else
			kmm_error_free(e);
	}
	return r;
}

static void rfc3339_now(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The Event of kmm_op_event() and its target; a new reference, or NULL without memory. */
static json_t *event_new(const char *kind, const char *name, const char *uid, const char *type,
			 const char *reason, const char *message, const char *ann_key,
			 const char *ann_value, struct kmm_kube_target *ret_target)
{
	_cleanup_json_ json_t *ev = NULL;
	char now[64];
	char prefix[256];

	rfc3339_now(now, sizeof(now));
	snprintf(prefix, sizeof(prefix), "%s.", name);
	ev = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:s*}, s:s, s:s, s:s, s:{s:s}, "
		       "s:s, s:s, s:i, s:s}",
		       "apiVersion", "v1", "kind", "Event", "metadata", "generateName", prefix,
		       "namespace", "default", "involvedObject", "kind", kind, "name", name, "uid",
		       uid, "reason", reason, "message", message, "type", type, "source",
		       "component", "kmm", "firstTimestamp", now, "lastTimestamp", now, "count", 1,
		       "reportingComponent", "kmm");
	if (!ev)
		return NULL;
	if (ann_key && ann_value &&
	    json_object_set_new(json_object_get(ev, "metadata"), "annotations",
				json_pack("{s:s}", ann_key, ann_value)) < 0)
		return NULL;
	*ret_target = (struct kmm_kube_target){ .res = &kmm_kube_events, .namespace = "default" };
	return TAKE_PTR(ev);
}

int kmm_op_event(struct kmm_op_api *a, const char *kind, const char *name, const char *uid,
		 const char *type, const char *reason, const char *message, const char *ann_key,
		 const char *ann_value, struct kmm_error **err)
{
	struct kmm_kube_target t;
	_cleanup_json_ json_t *ev =
	    event_new(kind, name, uid, type, reason, message, ann_key, ann_value, &t);

	if (!ev)
		return kmm_error_make(err, ENOMEM, "out of memory");
	return kmm_op_create(a, &t, ev, NULL, err);
}

int kmm_op_prepare_event(const char *kind, const char *name, const char *uid, const char *type,
			 const char *reason, const char *message, const char *ann_key,
			 const char *ann_value, struct kmm_kube_prepared *ret,
			 struct kmm_error **err)
{
	struct kmm_kube_target t;
	_cleanup_json_ json_t *ev =
	    event_new(kind, name, uid, type, reason, message, ann_key, ann_value, &t);

	if (!ev)
		return kmm_error_make(err, ENOMEM, "out of memory");
	return kmm_op_prepare_create(&t, ev, ret, err);
}

/* ------------------------------------------------------------------------- */
/* NMC overlay                                                               */

struct kmm_op_overlay {
	pthread_mutex_t lock;
	/*
	 * name -> struct kmm_obj*: compact, sharing leaves with the cache. As
	 * DOMs, the NMCs written faster than the watch returned them held
	 * megabytes during a 1,000 x 10 rollout (~30 KiB each).
	 */
	struct kmm_hashmap *objs;
};

static void obj_free(void *p)
{
	kmm_obj_unref(p);
}

struct kmm_op_overlay *kmm_op_overlay_new(void)
{
	struct kmm_op_overlay *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	pthread_mutex_init(&o->lock, NULL);
	o->objs = kmm_hashmap_new(obj_free);
	if (!o->objs) {
		free(o);
		return NULL;
	}
	return o;
}

void kmm_op_overlay_free(struct kmm_op_overlay *o)
{
	if (!o)
		return;
	kmm_hashmap_free(o->objs);
	pthread_mutex_destroy(&o->lock);
	free(o);
}

bool kmm_op_rv_older(const char *a, const char *b)
{
	char *ea, *eb;
	unsigned long long va, vb;

	if (!a || !b)
		return false;
	errno = 0;
	va = strtoull(a, &ea, 10);
	vb = strtoull(b, &eb, 10);
	if (errno || *ea || *eb || ea == a || eb == b)
		return false;
	return va < vb;
}

void kmm_op_overlay_put(struct kmm_op_overlay *o, struct kmm_informer *inf, const json_t *obj)
{
	const char *name = kmm_kube_meta_str(obj, "name");
	const char *rv = kmm_kube_meta_str(obj, "resourceVersion");
	_cleanup_obj_unref_ struct kmm_obj *cached = NULL, *copy = NULL;
	struct kmm_obj *old;
	int r;

	if (!name)
		return;
	cached = inf ? kmm_informer_get(inf, name) : NULL;
	/*
	 * A cache that already shows this write needs no overlay: the watch
	 * event often arrives before the write's response is read.
	 */
	if (cached && !kmm_op_rv_older(kmm_obj_resource_version(cached), rv)) {
		kmm_op_overlay_seen(o, name, kmm_obj_resource_version(cached), false);
		return;
	}
	/*
	 * Keep what the cache would keep, not the whole response (a node's
	 * images and managedFields are most of it): readers already cope with
	 * the cache's projection.
	 */
	if (inf) {
		_cleanup_json_ json_t *proj = kmm_informer_project(inf, obj);

		r = proj ? kmm_obj_new(proj, name, &copy) : -ENOMEM;
	} else {
		r = kmm_obj_new(obj, name, &copy);
	}
	if (r < 0)
		return;
	pthread_mutex_lock(&o->lock);
	old = kmm_hashmap_get(o->objs, name);
	if (!old || kmm_op_rv_older(kmm_obj_resource_version(old), rv)) {
		if (kmm_hashmap_put(o->objs, name, copy, NULL) >= 0)
			copy = NULL;
	}
	pthread_mutex_unlock(&o->lock);
}

void kmm_op_overlay_seen(struct kmm_op_overlay *o, const char *name, const char *rv, bool deleted)
{
	struct kmm_obj *old;

	pthread_mutex_lock(&o->lock);
	old = kmm_hashmap_get(o->objs, name);
	if (old && (deleted || !kmm_op_rv_older(rv, kmm_obj_resource_version(old))))
		kmm_obj_unref(kmm_hashmap_remove(o->objs, name));
	pthread_mutex_unlock(&o->lock);
}

/* The overlay's object for name if it is newer than the cache's (a new reference), else NULL. */
static struct kmm_obj *overlay_newer(struct kmm_op_overlay *o, const struct kmm_obj *cached,
				     const char *name)
{
	struct kmm_obj *mine;

	pthread_mutex_lock(&o->lock);
	mine = kmm_hashmap_get(o->objs, name);
	if (mine && cached &&
	    !kmm_op_rv_older(kmm_obj_resource_version(cached), kmm_obj_resource_version(mine)))
		mine = NULL;
	kmm_obj_ref(mine);
	pthread_mutex_unlock(&o->lock);
	return mine;
}

json_t *kmm_op_overlay_get(struct kmm_op_overlay *o, struct kmm_informer *inf, const char *name)
{
	_cleanup_obj_unref_ struct kmm_obj *cached = inf ? kmm_informer_get(inf, name) : NULL;
	_cleanup_obj_unref_ struct kmm_obj *mine = overlay_newer(o, cached, name);

	/*
	 * A DOM of the caller's own: kmm_obj_json() would attach one to every
	 * object a caller's list holds (every NMC during a Module reconcile:
	 * ~10 MiB at 1,000 nodes).
	 */
	if (mine)
		return kmm_obj_to_json(mine);
	return cached ? kmm_obj_to_json(cached) : NULL;
}

bool kmm_op_overlay_rv(struct kmm_op_overlay *o, struct kmm_informer *inf, const char *name,
		       char *buf, size_t size)
{
	_cleanup_obj_unref_ struct kmm_obj *cached = inf ? kmm_informer_get(inf, name) : NULL;
	_cleanup_obj_unref_ struct kmm_obj *mine = overlay_newer(o, cached, name);
	const struct kmm_obj *freshest = mine ? mine : cached;

	if (!freshest)
		return false;
	snprintf(buf, size, "%s", kmm_obj_resource_version(freshest));
	return true;
}

/* ------------------------------------------------------------------------- */
/* Key sets                                                                  */

struct kmm_op_keyset {
	pthread_mutex_t lock;
	struct kmm_hashmap *keys; /* key -> double* time added */
};

/* A key the cache has not confirmed within this long is forgotten (e.g. a relist). */
#define KEYSET_TTL_S 30.0

struct kmm_op_keyset *kmm_op_keyset_new(void)
{
	struct kmm_op_keyset *k = calloc(1, sizeof(*k));

	if (!k)
		return NULL;
	pthread_mutex_init(&k->lock, NULL);
	k->keys = kmm_hashmap_new(free);
	if (!k->keys) {
		free(k);
		return NULL;
	}
	return k;
}

void kmm_op_keyset_free(struct kmm_op_keyset *k)
{
	if (!k)
		return;
	kmm_hashmap_free(k->keys);
	pthread_mutex_destroy(&k->lock);
	free(k);
}

void kmm_op_keyset_add(struct kmm_op_keyset *k, const char *key)
{
	double *t = malloc(sizeof(*t));

	if (!t)
		return;
	*t = now_s();
	pthread_mutex_lock(&k->lock);
	if (kmm_hashmap_put(k->keys, key, t, NULL) < 0)
		free(t);
	pthread_mutex_unlock(&k->lock);
}

void kmm_op_keyset_remove(struct kmm_op_keyset *k, const char *key)
{
	pthread_mutex_lock(&k->lock);
	free(kmm_hashmap_remove(k->keys, key));
	pthread_mutex_unlock(&k->lock);
}

bool kmm_op_keyset_contains(struct kmm_op_keyset *k, const char *key)
{
	double *t;
	bool r = false;

	pthread_mutex_lock(&k->lock);
	t = kmm_hashmap_get(k->keys, key);
	if (t && now_s() - *t > KEYSET_TTL_S)
		free(kmm_hashmap_remove(k->keys, key));
	else if (t)
		r = true;
	pthread_mutex_unlock(&k->lock);
	return r;
}

void kmm_op_leader_identity(char *buf, size_t size)
{
	char host[128] = "kmm";
	unsigned char rnd[4] = { 0 };

	gethostname(host, sizeof(host) - 1);
	if (getrandom(rnd, sizeof(rnd), 0) < 0)
		memset(rnd, 0, sizeof(rnd));
	snprintf(buf, size, "%s_%02x%02x%02x%02x", host, rnd[0], rnd[1], rnd[2], rnd[3]);
}

void kmm_op_trim_heap(void)
{
	struct mallinfo2 mi = mallinfo2();

	if (mi.fordblks >= 1024 * 1024)
		malloc_trim(0);
}

void kmm_op_tune_malloc(void)
{
	if (!secure_getenv("MALLOC_ARENA_MAX"))
		mallopt(M_ARENA_MAX, 1);
	if (!secure_getenv("MALLOC_MMAP_THRESHOLD_"))
		mallopt(M_MMAP_THRESHOLD, 64 * 1024);
}

bool kmm_op_obj_paths_differ(const struct kmm_obj *a, const struct kmm_obj *b,
			     const char *const *paths, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		_cleanup_json_ json_t *va = kmm_obj_get_json(a, paths[i]);
		_cleanup_json_ json_t *vb = kmm_obj_get_json(b, paths[i]);

		if (!kmm_json_same(va, vb))
			return true;
	}
	return false;
}
