/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Integration checks of lib/kube and lib/informer against a real apiserver
 * ($KUBECONFIG). Prints TAP. Modes:
 *   kube-itest verbs                   every verb and error path
 *   kube-itest watch                   watch events, cancellation from another thread
 *   kube-itest informer                informer under rapid updates == fresh LIST; indexes
 *   kube-itest disrupt CMD             informer survives CMD (e.g. an apiserver restart)
 *   kube-itest gone CMD                CMD compacts etcd; the informer relists after 410
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kmm/controller-events.h"
#include "kmm/informer.h"
#include "kmm/kube.h"
#include "kmm/kubeconfig.h"
#include "kmm/shared-strv.h"
#include "kmm/kube-watch.h"

static int n_test, n_fail;

static _printf_(3, 4) void ok(bool cond, const struct kmm_error *err, const char *fmt, ...)
{
	va_list ap;

	printf("%s %d - ", cond ? "ok" : "not ok", ++n_test);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond) {
		n_fail++;
		if (err)
			printf("# error: %s (http %d, reason %s)\n", kmm_error_message(err),
			       err->http_status, err->reason ? err->reason : "-");
	}
	fflush(stdout);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void msleep(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static struct kmm_kube_client *client_new(const struct kmm_kube_client_options *o)
{
	struct kmm_kube_config *cfg = NULL;
	struct kmm_kube_client *c = NULL;
	struct kmm_error *err = NULL;

	if (kmm_kube_config_load_default(NULL, NULL, &cfg, &err) < 0 ||
	    kmm_kube_client_new(cfg, o, &c, &err) < 0) {
		printf("Bail out! client: %s\n", kmm_error_message(err));
		exit(1);
	}
	kmm_kube_config_free(cfg);
	return c;
}

static char ns[64];

static void make_namespace(struct kmm_kube_client *c, const char *prefix)
{
	_cleanup_error_ struct kmm_error *err = NULL;
	json_t *obj;
	int r;

	snprintf(ns, sizeof(ns), "%s-%ld-%d", prefix, (long)time(NULL) % 100000, getpid() % 10000);
	obj = json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "v1", "kind", "Namespace", "metadata",
			"name", ns);
	r = kmm_kube_create(c, &(struct kmm_kube_target){ .res = &kmm_kube_namespaces }, obj, NULL,
			    NULL, &err);
	json_decref(obj);
	if (r < 0) {
		printf("Bail out! create namespace %s: %s\n", ns, kmm_error_message(err));
		exit(1);
	}
}

static void drop_namespace(struct kmm_kube_client *c)
{
	kmm_kube_delete(c, &(struct kmm_kube_target){ .res = &kmm_kube_namespaces, .name = ns },
			NULL, NULL, NULL);
}

static json_t *configmap(const char *name, const char *v)
{
	return json_pack("{s:s,s:s,s:{s:s,s:{s:s}},s:{s:s}}", "apiVersion", "v1", "kind",
			 "ConfigMap", "metadata", "name", name, "labels", "kmm-test", "yes", "data",
			 "v", v);
}

#define CM(n_)                                                                                     \
	(&(struct kmm_kube_target){ .res = &kmm_kube_configmaps, .namespace = ns, .name = (n_) })

static void test_verbs(void)
{
	_cleanup_kube_client_ struct kmm_kube_client *c = client_new(NULL);
	struct kmm_error *err = NULL;
	json_t *obj = NULL, *got = NULL, *patch;
	struct kmm_kube_resource_info *info = NULL;
	char uid[128] = "", rv[64] = "";
	int r;

#define RESET()                                                                                    \
	do {                                                                                       \
		kmm_error_free(err);                                                               \
		err = NULL;                                                                        \
		json_decref(got);                                                                  \
		got = NULL;                                                                        \
	} while (0)

	make_namespace(c, "kube-verbs");
	r = kmm_kube_discover(c, "", "v1", "pods", &info, &err);
	ok(r == 0 && info->namespaced && kmm_strv_contains(info->verbs, "create") &&
	       kmm_strv_contains(info->subresources, "status"),
	   err, "discovery: pods are namespaced, creatable, have status");
	kmm_kube_resource_info_free(info);
	RESET();
	r = kmm_kube_discover(c, "", "v1", "nodes", &info, &err);
	ok(r == 0 && !info->namespaced, err, "discovery: nodes are cluster-scoped");
	kmm_kube_resource_info_free(info);
	RESET();
	r = kmm_kube_discover(c, "coordination.k8s.io", "v1", "leases", &info, &err);
	ok(r == 0 && info->namespaced && strcmp(info->kind, "Lease") == 0, err,
	   "discovery: leases in a named group");
	kmm_kube_resource_info_free(info);
	RESET();

	obj = configmap("cm-a", "1");
	r = kmm_kube_create(c, CM(NULL), obj,
			    &(struct kmm_kube_write_options){ .field_manager = "kmm-test" }, &got,
			    &err);
	ok(r == 0 && kmm_kube_meta_str(got, "uid"), err, "create returns the object with a uid");
	if (got) {
		snprintf(uid, sizeof(uid), "%s", kmm_kube_meta_str(got, "uid"));
		snprintf(rv, sizeof(rv), "%s", kmm_kube_meta_str(got, "resourceVersion"));
	}
	RESET();
	r = kmm_kube_create(c, CM(NULL), obj, NULL, &got, &err);
	ok(r == -EEXIST && kmm_error_is_http(err, 409) && err->reason &&
	       strcmp(err->reason, "AlreadyExists") == 0,
	   err, "create twice: 409 AlreadyExists -> EEXIST");
	if (err)
		printf("# message: %s\n", kmm_error_message(err));
	RESET();

	r = kmm_kube_get(c, CM("cm-a"), &got, &err);
	ok(r == 0 && strcmp(json_string_value(json_object_get(json_object_get(got, "data"), "v")),
			    "1") == 0,
	   err, "get");
	RESET();
	r = kmm_kube_get(c, CM("nope"), &got, &err);
	ok(r == -ENOENT && kmm_error_is_http(err, 404) && strcmp(err->reason, "NotFound") == 0, err,
	   "get missing: 404 NotFound -> ENOENT");
	RESET();
	r = kmm_kube_get(c, CM("a/b?c=d#e f"), &got, &err);
	ok(r == -ENOENT && kmm_error_is_http(err, 404), err,
	   "a name with / ? # and space is escaped into one path segment (404, not routed)");
	RESET();

	/* Update with a stale resourceVersion. */
	{
		json_t *upd = configmap("cm-a", "2");

		json_object_set_new(json_object_get(upd, "metadata"), "resourceVersion",
				    json_string(rv));
		r = kmm_kube_update(c, CM("cm-a"), upd, NULL, &got, &err);
		ok(r == 0, err, "update with the current resourceVersion");
		RESET();
		json_object_set_new(json_object_get(upd, "data"), "v", json_string("3"));
		r = kmm_kube_update(c, CM("cm-a"), upd, NULL, &got, &err);
		ok(r == -ESTALE && kmm_error_is_http(err, 409) &&
		       strcmp(err->reason, "Conflict") == 0,
		   err, "update with a stale resourceVersion: 409 Conflict -> ESTALE");
		RESET();
		json_decref(upd);
	}

	patch = json_pack("{s:{s:s}}", "data", "merged", "m");
	r = kmm_kube_patch(c, CM("cm-a"), KMM_KUBE_PATCH_MERGE, patch, NULL, &got, &err);
	ok(r == 0 && json_object_get(json_object_get(got, "data"), "merged") &&
	       json_object_get(json_object_get(got, "data"), "v"),
	   err, "JSON merge patch adds a key and keeps the others");
	json_decref(patch);
	RESET();
	patch = json_pack("[{s:s,s:s,s:s}]", "op", "replace", "path", "/data/v", "value", "jp");
	r = kmm_kube_patch(c, CM("cm-a"), KMM_KUBE_PATCH_JSON, patch, NULL, &got, &err);
	ok(r == 0 && strcmp(json_string_value(json_object_get(json_object_get(got, "data"), "v")),
			    "jp") == 0,
	   err, "JSON patch replace");
	json_decref(patch);
	RESET();
	patch = json_pack("[{s:s,s:s,s:s}]", "op", "test", "path", "/data/v", "value", "nope");
	r = kmm_kube_patch(c, CM("cm-a"), KMM_KUBE_PATCH_JSON, patch, NULL, &got, &err);
	ok(r < 0 && err &&
	       (err->http_status == 422 || err->http_status == 409 || err->http_status == 500),
	   err, "JSON patch with a failing test op is refused (%d)", err ? err->http_status : 0);
	json_decref(patch);
	RESET();

	/* Server-side apply: two managers, conflict, force. */
	patch = json_pack("{s:s,s:s,s:{s:s},s:{s:s}}", "apiVersion", "v1", "kind", "ConfigMap",
			  "metadata", "name", "cm-ssa", "data", "owned", "by-a");
	r = kmm_kube_patch(c, CM("cm-ssa"), KMM_KUBE_PATCH_APPLY, patch,
			   &(struct kmm_kube_patch_options){ .field_manager = "kmm-a" }, &got,
			   &err);
	ok(r == 0, err, "server-side apply creates");
	RESET();
	json_object_set_new(json_object_get(patch, "data"), "owned", json_string("by-b"));
	r = kmm_kube_patch(c, CM("cm-ssa"), KMM_KUBE_PATCH_APPLY, patch,
			   &(struct kmm_kube_patch_options){ .field_manager = "kmm-b" }, &got,
			   &err);
	ok(r == -ESTALE && kmm_error_is_http(err, 409), err,
	   "server-side apply by another manager conflicts (409)");
	if (err)
		printf("# message: %s\n", kmm_error_message(err));
	RESET();
	r = kmm_kube_patch(
	    c, CM("cm-ssa"), KMM_KUBE_PATCH_APPLY, patch,
	    &(struct kmm_kube_patch_options){ .field_manager = "kmm-b", .force = true }, &got,
	    &err);
	ok(r == 0 &&
	       strcmp(json_string_value(json_object_get(json_object_get(got, "data"), "owned")),
		      "by-b") == 0,
	   err, "server-side apply with force takes the field");
	json_decref(patch);
	RESET();
	r = kmm_kube_patch(c, CM("cm-ssa"), KMM_KUBE_PATCH_APPLY, obj, NULL, &got, &err);
	ok(r == -EINVAL, err, "apply without a field manager is refused locally");
	RESET();

	/* Invalid object: 422 with causes. */
	{
		json_t *bad = configmap("Bad_Name", "x");

		r = kmm_kube_create(c, CM(NULL), bad, NULL, &got, &err);
		ok(r == -EINVAL && kmm_error_is_http(err, 422) &&
		       strcmp(err->reason, "Invalid") == 0 &&
		       strstr(kmm_error_message(err), "metadata.name"),
		   err, "invalid name: 422 Invalid with the field named");
		if (err)
			printf("# message: %s\n", kmm_error_message(err));
		RESET();
		json_decref(bad);
	}

	/* Status subresource on a pod (never scheduled). */
	{
		json_t *pod = json_pack("{s:s,s:s,s:{s:s},s:{s:[{s:s,s:s}],s:{s:s}}}", "apiVersion",
					"v1", "kind", "Pod", "metadata", "name", "p1", "spec",
					"containers", "name", "c", "image", "example.invalid/x",
					"nodeSelector", "kmm-test", "nowhere");
		struct kmm_kube_target pt = { .res = &kmm_kube_pods,
					      .namespace = ns,
					      .name = "p1" };
		json_t *sp;

		r = kmm_kube_create(c, &pt, pod, NULL, NULL, &err);
		ok(r == 0, err, "create pod");
		RESET();
		sp = json_pack("{s:{s:[{s:s,s:s,s:s}]}}", "status", "conditions", "type", "KmmTest",
			       "status", "True", "reason", "Testing");
		pt.subresource = "status";
		r = kmm_kube_patch(c, &pt, KMM_KUBE_PATCH_STRATEGIC, sp, NULL, &got, &err);
		ok(r == 0 &&
		       json_is_array(json_object_get(json_object_get(got, "status"), "conditions")),
		   err, "strategic merge patch of pods/status");
		RESET();
		pt.subresource = NULL;
		r = kmm_kube_get(c, &pt, &got, &err);
		{
			char *s =
			    got ? json_dumps(json_object_get(got, "status"), JSON_COMPACT) : NULL;

			ok(r == 0 && s && strstr(s, "KmmTest"), err,
			   "status condition visible on the pod");
			free(s);
		}
		RESET();
		json_decref(sp);
		json_decref(pod);
	}

	/* LIST: selectors and paging. */
	for (int i = 0; i < 5; i++) {
		char name[16];
		json_t *o;

		snprintf(name, sizeof(name), "page-%d", i);
		o = configmap(name, "p");
		kmm_kube_create(c, CM(NULL), o, NULL, NULL, NULL);
		json_decref(o);
	}
	r = kmm_kube_list(
	    c, CM(NULL),
	    &(struct kmm_kube_list_options){ .label_selector = "kmm-test=yes", .limit = 2 }, &got,
	    &err);
	ok(r == 0 && json_array_size(json_object_get(got, "items")) == 2 &&
	       kmm_kube_meta_str(got, "continue"),
	   err, "list page of 2 with a continue token");
	RESET();
	r = kmm_kube_list_all(
	    c, CM(NULL),
	    &(struct kmm_kube_list_options){ .label_selector = "kmm-test=yes", .limit = 2 }, &got,
	    &err);
	ok(r == 0 && json_array_size(json_object_get(got, "items")) == 6, err,
	   "list_all follows continue: 6 labelled configmaps (got %zu)",
	   json_array_size(json_object_get(got, "items")));
	RESET();
	r = kmm_kube_list(
	    c, CM(NULL),
	    &(struct kmm_kube_list_options){ .field_selector = "metadata.name=page-3" }, &got,
	    &err);
	ok(r == 0 && json_array_size(json_object_get(got, "items")) == 1, err,
	   "field selector metadata.name=page-3");
	RESET();
	r = kmm_kube_list(c, CM(NULL),
			  &(struct kmm_kube_list_options){ .label_selector = "in valid!!" }, &got,
			  &err);
	ok(r < 0 && err && err->http_status == 400, err, "bad label selector: 400");
	RESET();

	/* DELETE with preconditions. */
	{
		struct kmm_kube_delete_options d;

		kmm_kube_delete_options_init(&d);
		d.precondition_uid = "00000000-0000-0000-0000-000000000000";
		r = kmm_kube_delete(c, CM("cm-a"), &d, NULL, &err);
		ok(r == -ESTALE && kmm_error_is_http(err, 409), err,
		   "delete with a wrong uid precondition: 409 Conflict");
		RESET();
		d.precondition_uid = uid;
		d.propagation_policy = "Foreground";
		d.grace_period_seconds = 0;
		r = kmm_kube_delete(c, CM("cm-a"), &d, &got, &err);
		ok(r == 0, err, "delete with the right uid, Foreground, grace 0");
		RESET();
		/* Foreground: the garbage collector removes the finalizer. */
		for (int i = 0; i < 100; i++) {
			RESET();
			r = kmm_kube_get(c, CM("cm-a"), &got, &err);
			if (r == -ENOENT)
				break;
			msleep(100);
		}
		ok(r == -ENOENT, err, "gone after delete");
		RESET();
		r = kmm_kube_delete(c, CM("cm-a"), NULL, NULL, &err);
		ok(r == -ENOENT, err, "delete missing: 404");
		RESET();
	}

	/* Cluster-scoped object. */
	r = kmm_kube_get(c, &(struct kmm_kube_target){ .res = &kmm_kube_namespaces, .name = ns },
			 &got, &err);
	ok(r == 0, err, "get cluster-scoped namespace");
	RESET();

	/* Rate limit: 5 QPS, burst 1: 6 requests take >= 1 s. */
	{
		struct kmm_kube_client_options o;
		struct kmm_kube_client *slow;
		int64_t t0;

		kmm_kube_client_options_init(&o);
		o.qps = 5;
		o.burst = 1;
		slow = client_new(&o);
		t0 = now_ms();
		for (int i = 0; i < 6; i++)
			kmm_kube_get(slow, CM("page-0"), NULL, NULL);
		ok(now_ms() - t0 >= 950, NULL, "rate limiter: 6 requests at 5 qps take %lld ms",
		   (long long)(now_ms() - t0));
		kmm_kube_client_free(slow);
	}
	/* Connection reuse. */
	{
		struct kmm_kube_client_stats s0, s1;

		kmm_kube_client_stats(c, &s0);
		for (int i = 0; i < 20; i++)
			kmm_kube_get(c, CM("page-1"), NULL, NULL);
		kmm_kube_client_stats(c, &s1);
		ok(s1.connections - s0.connections == 0 && s1.requests - s0.requests == 20, NULL,
		   "20 serial requests reuse the connection (%llu new)",
		   (unsigned long long)(s1.connections - s0.connections));
	}
	/* Pipelined creates: 40 requests, 8 in flight, HTTP/2 streams on one connection. */
	{
		struct kmm_kube_batch_item items[40] = { 0 };
		char *bodies[40], *path = NULL;
		struct kmm_kube_client_stats s0, s1;
		int created = 0;

		kmm_kube_path(CM(NULL), NULL, &path, NULL);
		for (int i = 0; i < 40; i++) {
			char name[16];
			json_t *o;

			snprintf(name, sizeof(name), "batch-%d", i);
			o = configmap(name, "b");
			bodies[i] = json_dumps(o, JSON_COMPACT);
			json_decref(o);
			items[i].req = (struct kmm_kube_request){ .method = "POST",
								  .path = path,
								  .body = bodies[i],
								  .body_len = strlen(bodies[i]) };
		}
		kmm_kube_client_stats(c, &s0);
		r = kmm_kube_batch(c, items, 40, 8, &err);
		kmm_kube_client_stats(c, &s1);
		for (int i = 0; i < 40; i++) {
			created += items[i].rc == 0 && items[i].resp.status == 201;
			free(bodies[i]);
		}
		ok(r == 0 && created == 40, err, "batch: 40 pipelined creates, %d created",
		   created);
		ok(s1.connections - s0.connections <= 1, NULL,
		   "batch multiplexed over %llu new connection(s)",
		   (unsigned long long)(s1.connections - s0.connections));
		kmm_kube_batch_clear(items, 40);
		/* The next batch finds that connection open again. */
		for (int i = 0; i < 10; i++)
			items[i].req = (struct kmm_kube_request){ .method = "GET", .path = path };
		kmm_kube_client_stats(c, &s0);
		r = kmm_kube_batch(c, items, 10, 8, &err);
		kmm_kube_client_stats(c, &s1);
		ok(r == 0 && items[9].rc == 0 && items[9].resp.status == 200 &&
		       s1.connections == s0.connections,
		   err, "a second batch reuses the connection (%llu new)",
		   (unsigned long long)(s1.connections - s0.connections));
		kmm_kube_batch_clear(items, 10);
		free(path);
		RESET();
	}
	json_decref(obj);
	drop_namespace(c);
}

/* ---- watch ---- */

struct wctx {
	pthread_mutex_t lock; /* guards log and n: written by the watch thread */
	char log[4096];
	int n;
	struct kmm_watch *w;
};

static int wctx_n(struct wctx *x, char *copy, size_t len)
{
	int n;

	pthread_mutex_lock(&x->lock);
	n = x->n;
	if (copy)
		snprintf(copy, len, "%s", x->log);
	pthread_mutex_unlock(&x->lock);
	return n;
}

static int wev(enum kmm_watch_event_type t, json_t *o, void *ud, struct kmm_error **err)
{
	struct wctx *x = ud;
	size_t l;

	pthread_mutex_lock(&x->lock);
	l = strlen(x->log);
	snprintf(x->log + l, sizeof(x->log) - l, "%s:%s ", kmm_watch_event_type_name(t),
		 kmm_kube_meta_str(o, "name") ? kmm_kube_meta_str(o, "name") : "");
	x->n++;
	pthread_mutex_unlock(&x->lock);
	return 0;
}

struct wthread {
	struct kmm_kube_client *c;
	struct wctx x;
	const char *rv;
	const char *field_selector;
	int r;
	struct kmm_error *err;
	int64_t ended;
};

static void *watch_main(void *arg)
{
	struct wthread *t = arg;

	t->r = kmm_kube_watch(t->c, CM(NULL),
			      &(struct kmm_watch_options){ .resource_version = t->rv,
							   .field_selector = t->field_selector,
							   .allow_bookmarks = true },
			      wev, NULL, &t->x, t->x.w, &t->err);
	t->ended = now_ms();
	return NULL;
}

struct getter {
	struct kmm_kube_client *c;
	int ok;
};

static void *getter_main(void *arg)
{
	struct getter *g = arg;

	for (int i = 0; i < 10; i++)
		g->ok += kmm_kube_get(g->c, CM("one-conn-get"), NULL, NULL) == 0;
	return NULL;
}

/* Watches and requests from many threads are streams on one connection. */
static void test_one_connection(void)
{
	_cleanup_kube_client_ struct kmm_kube_client *c = client_new(NULL);
	struct wthread w[2] = { { .x.lock = PTHREAD_MUTEX_INITIALIZER },
				{ .x.lock = PTHREAD_MUTEX_INITIALIZER } };
	struct getter g[8] = { 0 };
	pthread_t wth[2], gth[8];
	struct kmm_kube_client_stats st;
	json_t *o = configmap("one-conn", "1");
	char seen[2][4096] = { "", "" };
	int got = 0;

	make_namespace(c, "kube-one-conn");
	{
		json_t *target = configmap("one-conn-get", "1");

		kmm_kube_create(c, CM(NULL), target, NULL, NULL, NULL);
		json_decref(target);
	}
	for (int i = 0; i < 2; i++) {
		w[i].c = c;
		w[i].rv = "0";
		kmm_watch_new(&w[i].x.w, NULL);
		pthread_create(&wth[i], NULL, watch_main, &w[i]);
	}
	for (int i = 0; i < 8; i++) {
		g[i].c = c;
		pthread_create(&gth[i], NULL, getter_main, &g[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(gth[i], NULL);
		got += g[i].ok;
	}
	kmm_kube_create(c, CM(NULL), o, NULL, NULL, NULL);
	for (int i = 0;
	     i < 100 && !(strstr(seen[0], "ADDED:one-conn") && strstr(seen[1], "ADDED:one-conn"));
	     i++) {
		msleep(50);
		wctx_n(&w[0].x, seen[0], sizeof(seen[0]));
		wctx_n(&w[1].x, seen[1], sizeof(seen[1]));
	}
	kmm_kube_client_stats(c, &st);
	ok(got == 80 && strstr(seen[0], "ADDED:one-conn") && strstr(seen[1], "ADDED:one-conn") &&
	       st.connections == 1,
	   NULL, "2 watches and 8 threads x 10 GETs: %d GETs ok, %llu connection(s)", got,
	   (unsigned long long)st.connections);
	for (int i = 0; i < 2; i++) {
		kmm_watch_cancel(w[i].x.w);
		pthread_join(wth[i], NULL);
	}
	ok(w[0].r == -ECANCELED && w[1].r == -ECANCELED, w[0].r != -ECANCELED ? w[0].err : w[1].err,
	   "both watches end cancelled while sharing the connection (%d, %d)", w[0].r, w[1].r);
	for (int i = 0; i < 2; i++) {
		kmm_error_free(w[i].err);
		kmm_watch_free(w[i].x.w);
	}
	json_decref(o);
	drop_namespace(c);
}

static void test_watch(void)
{
	_cleanup_kube_client_ struct kmm_kube_client *c = client_new(NULL);
	struct kmm_error *err = NULL;
	json_t *list = NULL, *o;
	struct wthread t = { .x.lock = PTHREAD_MUTEX_INITIALIZER };
	pthread_t th;
	int64_t t0;
	int r;

	make_namespace(c, "kube-watch");
	r = kmm_kube_list(c, CM(NULL), NULL, &list, &err);
	ok(r == 0, err, "list for the starting resourceVersion");
	t.c = c;
	t.rv = kmm_kube_meta_str(list, "resourceVersion");
	/* w1 only: the controller-manager adds kube-root-ca.crt to the namespace at any time. */
	t.field_selector = "metadata.name=w1";
	kmm_watch_new(&t.x.w, NULL);
	pthread_create(&th, NULL, watch_main, &t);
	o = configmap("w1", "1");
	kmm_kube_create(c, CM(NULL), o, NULL, NULL, NULL);
	{
		json_t *p = json_pack("{s:{s:s}}", "data", "v", "2");

		kmm_kube_patch(c, CM("w1"), KMM_KUBE_PATCH_MERGE, p, NULL, NULL, NULL);
		json_decref(p);
	}
	kmm_kube_delete(c, CM("w1"), NULL, NULL, NULL);
	char seen[4096] = "";

	for (int i = 0; i < 100 && !strstr(seen, "DELETED:w1"); i++) {
		msleep(50);
		wctx_n(&t.x, seen, sizeof(seen));
	}
	ok(strstr(seen, "ADDED:w1 MODIFIED:w1 DELETED:w1") != NULL, NULL,
	   "watch sees ADDED, MODIFIED, DELETED in order (%s)", seen);
	t0 = now_ms();
	kmm_watch_cancel(t.x.w);
	pthread_join(th, NULL);
	ok(t.r == -ECANCELED && t.ended - t0 < 500, t.err,
	   "cancel from another thread ends the watch in %lld ms", (long long)(t.ended - t0));
	kmm_error_free(t.err);
	kmm_watch_free(t.x.w);
	json_decref(o);

	/* A server-side timeout ends the stream cleanly. */
	{
		struct wctx x = { .lock = PTHREAD_MUTEX_INITIALIZER };
		int64_t ts = now_ms();

		kmm_watch_new(&x.w, NULL);
		r = kmm_kube_watch(c, CM(NULL), &(struct kmm_watch_options){ .timeout_seconds = 2 },
				   wev, NULL, &x, x.w, &err);
		ok(r == 0 && now_ms() - ts >= 1500 && now_ms() - ts < 10000, err,
		   "timeoutSeconds=2 ends the stream with 0 after %lld ms",
		   (long long)(now_ms() - ts));
		kmm_error_free(err);
		err = NULL;
		kmm_watch_free(x.w);
	}
	json_decref(list);
	drop_namespace(c);
}

/* ---- informer ---- */

struct counts {
	atomic_int adds, updates, deletes;
};

static void h_add(const struct kmm_obj *o, void *ud)
{
	atomic_fetch_add(&((struct counts *)ud)->adds, 1);
}
static void h_upd(const struct kmm_obj *a, const struct kmm_obj *b, void *ud)
{
	atomic_fetch_add(&((struct counts *)ud)->updates, 1);
}
static void h_del(const struct kmm_obj *o, void *ud)
{
	atomic_fetch_add(&((struct counts *)ud)->deletes, 1);
}

/* Compares the informer to a fresh LIST: same keys, same resourceVersions. */
static bool equal_to_list(struct kmm_kube_client *c, struct kmm_informer *inf, int64_t wait_ms,
			  char *why, size_t whylen)
{
	int64_t deadline = now_ms() + wait_ms;

	for (;;) {
		json_t *list = NULL, *it;
		size_t i, n;
		bool same;

		if (kmm_kube_list_all(
			c, CM(NULL),
			&(struct kmm_kube_list_options){ .label_selector = "kmm-test=yes" }, &list,
			NULL) < 0)
			return false;
		n = json_array_size(json_object_get(list, "items"));
		same = n == kmm_informer_size(inf);
		snprintf(why, whylen, "list %zu, informer %zu", n, kmm_informer_size(inf));
		json_array_foreach (json_object_get(list, "items"), i, it) {
			char *key = kmm_kube_object_key(it);
			struct kmm_obj *o = kmm_informer_get(inf, key);

			if (!o || strcmp(kmm_obj_resource_version(o),
					 kmm_kube_meta_str(it, "resourceVersion")) != 0) {
				same = false;
				snprintf(why, whylen, "%s differs", key);
			}
			kmm_obj_unref(o);
			free(key);
		}
		json_decref(list);
		if (same)
			return true;
		if (now_ms() > deadline)
			return false;
		msleep(200);
	}
}

static struct kmm_informer *start_informer(struct kmm_kube_client *c, struct counts *cnt,
					   long watch_timeout)
{
	static const char *const proj[] = { "metadata.labels", "data", NULL };
	struct kmm_informer_options o = { .res = &kmm_kube_configmaps,
					  .namespace = ns,
					  .label_selector = "kmm-test=yes",
					  .projection = proj,
					  .watch_timeout_seconds = watch_timeout };
	struct kmm_informer *inf = NULL;
	struct kmm_error *err = NULL;

	if (kmm_informer_new(c, &o, &inf, &err) < 0 ||
	    kmm_informer_add_handlers(
		inf, &(struct kmm_informer_handlers){ h_add, h_upd, h_del, cnt }) < 0 ||
	    kmm_informer_add_path_index(inf, "by-v", "data.v") < 0 ||
	    kmm_informer_start(inf, &err) < 0) {
		printf("Bail out! informer: %s\n", kmm_error_message(err));
		exit(1);
	}
	return inf;
}

struct upd_thread {
	struct kmm_kube_client *c;
	int from, to, rounds;
};

static void *updater(void *arg)
{
	struct upd_thread *u = arg;

	for (int round = 0; round < u->rounds; round++)
		for (int i = u->from; i < u->to; i++) {
			char name[32], v[32];
			json_t *p;

			snprintf(name, sizeof(name), "inf-%d", i);
			snprintf(v, sizeof(v), "%d", round);
			p = json_pack("{s:{s:s}}", "data", "v", v);
			kmm_kube_patch(u->c, CM(name), KMM_KUBE_PATCH_MERGE, p, NULL, NULL, NULL);
			json_decref(p);
		}
	return NULL;
}

static void test_informer(int total_updates)
{
	struct kmm_kube_client_options co;
	struct kmm_kube_client *c;
	struct counts cnt = { 0 };
	struct kmm_informer *inf;
	struct kmm_informer_stats st;
	struct kmm_obj **objs = NULL;
	size_t n = 0;
	char why[256];
	const int n_objs = 100, n_threads = 4;
	pthread_t th[4];
	struct upd_thread ut[4];
	int64_t t0;
	int r;

	kmm_kube_client_options_init(&co);
	co.qps = 0; /* the test drives the server as hard as it can */
	c = client_new(&co);
	make_namespace(c, "kube-inf");
	for (int i = 0; i < n_objs; i++) {
		char name[32];
		json_t *o;

		snprintf(name, sizeof(name), "inf-%d", i);
		o = configmap(name, "init");
		kmm_kube_create(c, CM(NULL), o, NULL, NULL, NULL);
		json_decref(o);
	}
	inf = start_informer(c, &cnt, 0);
	ok(kmm_informer_wait_synced(inf, 30000) == 0 && kmm_informer_has_synced(inf), NULL,
	   "informer syncs");
	ok(kmm_informer_size(inf) == (size_t)n_objs && atomic_load(&cnt.adds) == n_objs, NULL,
	   "store holds %d objects after sync, %d adds", n_objs, atomic_load(&cnt.adds));
	{
		struct kmm_obj *o = kmm_informer_get(inf, "x");
		char key[96];

		ok(o == NULL, NULL, "get of a missing key is NULL");
		snprintf(key, sizeof(key), "%s/inf-7", ns);
		o = kmm_informer_get(inf, key);
		{
			json_t *mf = o ? kmm_obj_get_json(o, "metadata.managedFields") : NULL;

			ok(o && kmm_obj_label(o, "kmm-test") &&
			       strcmp(kmm_obj_label(o, "kmm-test"), "yes") == 0 &&
			       kmm_obj_str(o, "data.v") && !mf &&
			       !kmm_obj_str(o, "metadata.creationTimestamp"),
			   NULL,
			   "projected object keeps labels and data, drops "
			   "managedFields/creationTimestamp (%zu bytes)",
			   o ? kmm_obj_size(o) : 0);
			json_decref(mf);
		}
		kmm_obj_unref(o);
	}
	r = kmm_informer_by_index(inf, "by-v", "init", &objs, &n);
	ok(r == 0 && n == (size_t)n_objs, NULL, "index by data.v: %zu under \"init\"", n);
	kmm_obj_array_free(objs, n);

	t0 = now_ms();
	for (int i = 0; i < n_threads; i++) {
		ut[i] = (struct upd_thread){ c, i * n_objs / n_threads,
					     (i + 1) * n_objs / n_threads, total_updates / n_objs };
		pthread_create(&th[i], NULL, updater, &ut[i]);
	}
	for (int i = 0; i < n_threads; i++)
		pthread_join(th[i], NULL);
	printf("# %d updates in %lld ms\n", total_updates, (long long)(now_ms() - t0));
	ok(equal_to_list(c, inf, 30000, why, sizeof(why)), NULL,
	   "after %d rapid updates the informer equals a fresh LIST (%s)", total_updates, why);
	{
		char v[32];

		snprintf(v, sizeof(v), "%d", total_updates / n_objs - 1);
		r = kmm_informer_by_index(inf, "by-v", v, &objs, &n);
		ok(r == 0 && n == (size_t)n_objs, NULL, "index follows updates: %zu under \"%s\"",
		   n, v);
		kmm_obj_array_free(objs, n);
		ok(kmm_informer_by_index(inf, "by-v", "init", &objs, &n) == 0 && n == 0, NULL,
		   "old index value emptied");
		kmm_obj_array_free(objs, n);
	}
	for (int i = 0; i < 10; i++) {
		char name[32];

		snprintf(name, sizeof(name), "inf-%d", i);
		kmm_kube_delete(c, CM(name), NULL, NULL, NULL);
	}
	ok(equal_to_list(c, inf, 10000, why, sizeof(why)) && atomic_load(&cnt.deletes) == 10, NULL,
	   "deletes reach the store and handlers (%d)", atomic_load(&cnt.deletes));
	/* Resync: a second informer re-announces every object as an update. */
	{
		struct counts rc = { 0 };
		struct kmm_informer *ri = NULL;
		static const char *const proj[] = { "data", NULL };

		kmm_informer_new(c,
				 &(struct kmm_informer_options){ .res = &kmm_kube_configmaps,
								 .namespace = ns,
								 .label_selector = "kmm-test=yes",
								 .projection = proj,
								 .resync_ms = 500 },
				 &ri, NULL);
		kmm_informer_add_handlers(
		    ri, &(struct kmm_informer_handlers){ h_add, h_upd, h_del, &rc });
		kmm_informer_start(ri, NULL);
		kmm_informer_wait_synced(ri, 30000);
		msleep(2500);
		ok(atomic_load(&rc.adds) == n_objs - 10 && atomic_load(&rc.updates) >= n_objs - 10,
		   NULL, "resync every 500 ms: %d adds then %d updates without changes",
		   atomic_load(&rc.adds), atomic_load(&rc.updates));
		kmm_informer_free(ri);
	}
	kmm_informer_stats(inf, &st);
	printf("# lists %llu watches %llu events %llu gone %llu errors %llu updates-handled %d\n",
	       (unsigned long long)st.lists, (unsigned long long)st.watches,
	       (unsigned long long)st.events, (unsigned long long)st.gone,
	       (unsigned long long)st.errors, atomic_load(&cnt.updates));
	t0 = now_ms();
	kmm_informer_free(inf);
	ok(now_ms() - t0 < 1000, NULL, "informer stops in %lld ms", (long long)(now_ms() - t0));
	drop_namespace(c);
	kmm_kube_client_free(c);
}

/* Runs an informer across `cmd` (apiserver restart, or compaction). */
static void test_disrupt(const char *cmd, bool expect_gone)
{
	_cleanup_kube_client_ struct kmm_kube_client *c = client_new(NULL);
	struct counts cnt = { 0 };
	struct kmm_informer *inf;
	struct kmm_informer_stats st0, st1;
	char why[256];
	int rc;
	json_t *o;

	make_namespace(c, expect_gone ? "kube-gone" : "kube-restart");
	o = configmap("before", "1");
	kmm_kube_create(c, CM(NULL), o, NULL, NULL, NULL);
	json_decref(o);
	/* Short streams, so the informer reconnects with its old version soon. */
	inf = start_informer(c, &cnt, expect_gone ? 2 : 0);
	ok(kmm_informer_wait_synced(inf, 30000) == 0, NULL, "informer synced before disruption");
	kmm_informer_stats(inf, &st0);
	rc = system(cmd); // NOLINT(cert-env33-c): the test runs the given shell command
	ok(rc == 0, NULL, "disruption command succeeded: %s", cmd);
	o = configmap("after", "2");
	{
		struct kmm_error *err = NULL;
		int r = -1;

		for (int i = 0; i < 60 && r < 0; i++) {
			kmm_error_free(err);
			err = NULL;
			r = kmm_kube_create(c, CM(NULL), o, NULL, NULL, &err);
			if (r < 0)
				msleep(500);
		}
		ok(r == 0, err, "create after the disruption");
		kmm_error_free(err);
	}
	json_decref(o);
	ok(equal_to_list(c, inf, 60000, why, sizeof(why)), NULL,
	   "informer equals a fresh LIST after the disruption (%s)", why);
	kmm_informer_stats(inf, &st1);
	printf("# lists %llu->%llu watches %llu->%llu gone %llu errors %llu\n",
	       (unsigned long long)st0.lists, (unsigned long long)st1.lists,
	       (unsigned long long)st0.watches, (unsigned long long)st1.watches,
	       (unsigned long long)st1.gone, (unsigned long long)st1.errors);
	if (expect_gone)
		ok(st1.gone > st0.gone && st1.lists > st0.lists, NULL,
		   "a 410 made the informer relist (gone %llu, lists %llu)",
		   (unsigned long long)st1.gone, (unsigned long long)st1.lists);
	else
		ok(st1.watches > st0.watches, NULL, "the informer reconnected its watch");
	kmm_informer_free(inf);
	drop_namespace(c);
}

static void test_events(void)
{
	_cleanup_kube_client_ struct kmm_kube_client *c = client_new(NULL);
	struct kmm_event_recorder *rec = NULL;
	struct kmm_error *err = NULL;
	json_t *obj = NULL, *list = NULL, *it;
	size_t i, n_a = 0, n_b = 0;
	int64_t count_a = 0;
	int r = 0;

	make_namespace(c, "kube-events");
	{
		json_t *o = configmap("ev", "1");

		kmm_kube_create(c, CM(NULL), o, NULL, &obj, NULL);
		json_decref(o);
	}
	ok(kmm_event_recorder_new(c, "kmm-test", "itest", &rec, &err) == 0, err, "recorder");
	for (int k = 0; k < 3 && r == 0; k++)
		r = kmm_event_record(rec, obj, "Normal", "Loaded", &err, "module %s loaded",
				     "dummy");
	ok(r == 0, err, "three identical events recorded");
	r = kmm_event_record(rec, obj, "Warning", "LoadFailed", &err, "module %s failed", "dummy");
	ok(r == 0, err, "a different event recorded");
	r = kmm_kube_list(
	    c, &(struct kmm_kube_target){ .res = &kmm_kube_events, .namespace = ns },
	    &(struct kmm_kube_list_options){ .field_selector = "involvedObject.name=ev" }, &list,
	    &err);
	json_array_foreach (json_object_get(list, "items"), i, it) {
		const char *reason = json_string_value(json_object_get(it, "reason"));

		if (reason && strcmp(reason, "Loaded") == 0) {
			n_a++;
			count_a = json_integer_value(json_object_get(it, "count"));
		} else if (reason && strcmp(reason, "LoadFailed") == 0) {
			n_b++;
		}
	}
	ok(r == 0 && n_a == 1 && count_a == 3 && n_b == 1, err,
	   "deduplicated: one Loaded event with count %lld, one LoadFailed (%zu, %zu)",
	   (long long)count_a, n_a, n_b);
	kmm_event_recorder_free(rec);
	kmm_error_free(err);
	json_decref(list);
	json_decref(obj);
	drop_namespace(c);
}

/*
 * kube-itest soak SECONDS: an informer whose watch streams last 1 s (so it
 * reconnects constantly, with bookmarks) while a writer patches, creates and
 * deletes objects for SECONDS; the store must equal a fresh LIST at the end
 * and, under ASan/LSan or valgrind, nothing may leak.
 */
static void test_soak(int seconds)
{
	struct kmm_kube_client_options co;
	struct kmm_kube_client *c;
	struct counts cnt = { 0 };
	struct kmm_informer *inf;
	struct kmm_informer_stats st;
	char why[256];
	int64_t end;
	int writes = 0;

	kmm_kube_client_options_init(&co);
	co.qps = 0;
	c = client_new(&co);
	make_namespace(c, "kube-soak");
	inf = start_informer(c, &cnt, 1);
	ok(kmm_informer_wait_synced(inf, 30000) == 0, NULL, "soak: informer synced");
	end = now_ms() + seconds * 1000LL;
	for (int i = 0; now_ms() < end; i++) {
		char name[32], v[32];
		json_t *o;

		snprintf(name, sizeof(name), "soak-%d", i % 20);
		snprintf(v, sizeof(v), "%d", i);
		o = configmap(name, v);
		if (i % 7 == 6)
			kmm_kube_delete(c, CM(name), NULL, NULL, NULL);
		else if (kmm_kube_create(c, CM(NULL), o, NULL, NULL, NULL) < 0)
			kmm_kube_update(c, CM(name), o, NULL, NULL, NULL);
		json_decref(o);
		writes++;
		msleep(20);
	}
	ok(equal_to_list(c, inf, 20000, why, sizeof(why)), NULL,
	   "soak: after %d writes over %d s the informer equals a fresh LIST (%s)", writes, seconds,
	   why);
	kmm_informer_stats(inf, &st);
	ok(st.watches >= (uint64_t)seconds / 2, NULL,
	   "soak: %llu watch streams, %llu events, %llu lists, %llu errors",
	   (unsigned long long)st.watches, (unsigned long long)st.events,
	   (unsigned long long)st.lists, (unsigned long long)st.errors);
	kmm_informer_free(inf);
	drop_namespace(c);
	kmm_kube_client_free(c);
}

/* kube-itest whoami KUBECONFIG [CONTEXT]: loads that file (and context) and
 * asks the apiserver's discovery for pods; prints one TAP line. */
static void test_whoami(const char *path, const char *context, const char *expect)
{
	struct kmm_kube_config *cfg = NULL;
	struct kmm_kube_client *c = NULL;
	struct kmm_kube_resource_info *info = NULL;
	struct kmm_error *err = NULL;
	int r;

	r = kmm_kube_config_load_file(path, context, &cfg, &err);
	if (r >= 0)
		r = kmm_kube_client_new(cfg, NULL, &c, &err);
	if (r >= 0)
		r = kmm_kube_discover(c, "", "v1", "pods", &info, &err);
	if (strcmp(expect, "ok") == 0)
		ok(r == 0 && info && info->namespaced, err, "%s%s%s: authenticated discovery works",
		   path, context ? " --context " : "", context ? context : "");
	else
		ok(r < 0 && strstr(kmm_error_message(err), expect), err,
		   "%s%s%s fails with \"%s\": %s", path, context ? " --context " : "",
		   context ? context : "", expect, kmm_error_message(err));
	kmm_kube_resource_info_free(info);
	kmm_kube_client_free(c);
	kmm_kube_config_free(cfg);
	kmm_error_free(err);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "verbs";

	if (strcmp(mode, "verbs") == 0)
		test_verbs();
	else if (strcmp(mode, "watch") == 0) {
		test_watch();
		test_one_connection();
	} else if (strcmp(mode, "events") == 0)
		test_events();
	else if (strcmp(mode, "soak") == 0)
		test_soak(argc > 2 ? (int)strtol(argv[2], NULL, 10) : 30);
	else if (strcmp(mode, "whoami") == 0 && argc > 3)
		test_whoami(argv[2], argc > 4 && *argv[4] ? argv[4] : NULL, argv[3]);
	else if (strcmp(mode, "informer") == 0)
		test_informer(argc > 2 ? (int)strtol(argv[2], NULL, 10) : 10000);
	else if ((strcmp(mode, "disrupt") == 0 || strcmp(mode, "gone") == 0) && argc > 2)
		test_disrupt(argv[2], strcmp(mode, "gone") == 0);
	else {
		fprintf(stderr,
			"usage: kube-itest verbs|watch|informer [N]|disrupt CMD|gone CMD\n");
		return 2;
	}
	printf("1..%d\n", n_test);
	return n_fail ? 1 : 0;
}
