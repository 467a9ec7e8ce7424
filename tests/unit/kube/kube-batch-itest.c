/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Batches and the Event queue under injected failures, against a real
 * apiserver ($KUBECONFIG) behind tests/integration/kube/faulty-proxy.go
 * (429 with Retry-After, 500 before and after the write). Prints TAP.
 *
 *   kube-batch-itest NAMESPACE PROXY_URL PROXY_CA
 *
 * Writes go through the proxy; setup and every check go straight to the
 * apiserver. The proxy only fails writes under NAMESPACE.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmm/controller-events.h"
#include "kmm/kube.h"
#include "kmm/kubeconfig.h"

#define N_CM 40
#define N_EVENTS 30

static int n_test, n_fail;
static const char *ns;

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

static void bail(const char *what, const struct kmm_error *err)
{
	printf("Bail out! %s: %s\n", what, err ? kmm_error_message(err) : "out of memory");
	exit(1);
}

static struct kmm_kube_client *direct_client(void)
{
	struct kmm_kube_config *cfg = NULL;
	struct kmm_kube_client *c = NULL;
	struct kmm_error *err = NULL;

	if (kmm_kube_config_load_default(NULL, NULL, &cfg, &err) < 0 ||
	    kmm_kube_client_new(cfg, NULL, &c, &err) < 0)
		bail("direct client", err);
	kmm_kube_config_free(cfg);
	return c;
}

/* A client of the proxy: its CA, no credentials (the proxy has them). */
static struct kmm_kube_client *proxy_client(const char *url, const char *ca, int max_retries)
{
	struct kmm_kube_config cfg = { .source = (char *)"test",
				       .server = (char *)url,
				       .ca_file = (char *)ca,
				       .namespace = (char *)ns };
	struct kmm_kube_client_options o;
	struct kmm_kube_client *c = NULL;
	struct kmm_error *err = NULL;

	kmm_kube_client_options_init(&o);
	o.qps = 0;
	o.max_retries = max_retries;
	o.retry_base_ms = 50;
	o.retry_max_ms = 2000;
	if (kmm_kube_client_new(&cfg, &o, &c, &err) < 0)
		bail("proxy client", err);
	return c;
}

#define CM(n_)                                                                                     \
	(&(struct kmm_kube_target){ .res = &kmm_kube_configmaps, .namespace = ns, .name = (n_) })

/* Runs a batch of prepared writes; every item's outcome must be 2xx, or the answer
 * to its own earlier attempt that landed (409 create, 404 delete). */
static void run_batch(struct kmm_kube_client *c, struct kmm_kube_prepared *p, size_t n,
		      const char *what)
{
	struct kmm_kube_batch_item *items = calloc(n, sizeof(*items));
	size_t good = 0, landed_before = 0, retried = 0;
	struct kmm_error *first = NULL;

	if (!items)
		bail(what, NULL);
	for (size_t i = 0; i < n; i++)
		items[i].req = p[i].req;
	ok(kmm_kube_batch(c, items, n, 4, NULL) == 0, NULL, "%s: batch of %zu runs", what, n);
	for (size_t i = 0; i < n; i++) {
		struct kmm_kube_batch_item *it = &items[i];
		struct kmm_error *e = NULL;
		bool mine = it->rc == 0 && it->resp.maybe_applied &&
			    ((strcmp(it->req.method, "POST") == 0 && it->resp.status == 409) ||
			     (strcmp(it->req.method, "DELETE") == 0 && it->resp.status == 404));

		retried += it->attempts > 1;
		if (it->rc == 0 && it->resp.status >= 200 && it->resp.status < 300)
			good++;
		else if (mine)
			landed_before++;
		else if (!first && kmm_kube_batch_item_json(it, NULL, &e) < 0)
			first = e;
	}
	ok(good + landed_before == n, first,
	   "%s: every item done (%zu 2xx, %zu answered their own earlier attempt)", what, good,
	   landed_before);
	ok(retried > 0, NULL, "%s: %zu items needed retries", what, retried);
	kmm_error_free(first);
	kmm_kube_batch_clear(items, n);
	free(items);
}

static json_t *list(struct kmm_kube_client *d, const struct kmm_kube_resource *res)
{
	struct kmm_error *err = NULL;
	json_t *l = NULL;

	if (kmm_kube_list_all(d, &(struct kmm_kube_target){ .res = res, .namespace = ns }, NULL, &l,
			      &err) < 0)
		bail("list", err);
	return l;
}

/* The number n in "<prefix>n" when it is below max. */
static bool index_of(const char *s, const char *prefix, unsigned max, unsigned *ret)
{
	size_t len = strlen(prefix);
	unsigned long v;
	char *end;

	if (!s || strncmp(s, prefix, len) != 0 || !s[len])
		return false;
	errno = 0;
	v = strtoul(s + len, &end, 10);
	if (errno || *end || v >= max)
		return false;
	*ret = (unsigned)v;
	return true;
}

static const char *cm_data(const json_t *cm, const char *k)
{
	return json_string_value(json_object_get(json_object_get(cm, "data"), k));
}

static void test_writes(struct kmm_kube_client *d, struct kmm_kube_client *c)
{
	struct kmm_kube_prepared p[N_CM] = { 0 };
	struct kmm_error *err = NULL;
	int seen[N_CM] = { 0 };
	size_t i, extra = 0;
	json_t *l, *cm;

	/* 1. creates with fixed names */
	for (i = 0; i < N_CM; i++) {
		char name[32], v[32];
		json_t *obj;

		snprintf(name, sizeof(name), "cm-%02zu", i);
		snprintf(v, sizeof(v), "%zu", i);
		obj = json_pack("{s:s,s:s,s:{s:s},s:{s:s}}", "apiVersion", "v1", "kind",
				"ConfigMap", "metadata", "name", name, "data", "v", v);
		if (!obj || kmm_kube_prepare_create(CM(NULL), obj, NULL, &p[i], &err) < 0)
			bail("prepare create", err);
		json_decref(obj);
	}
	run_batch(c, p, N_CM, "creates");
	for (i = 0; i < N_CM; i++)
		kmm_kube_prepared_clear(&p[i]);
	l = list(d, &kmm_kube_configmaps);
	json_array_foreach (json_object_get(l, "items"), i, cm) {
		const char *name = kmm_kube_meta_str(cm, "name");
		unsigned k;

		unsigned v;

		if (index_of(name, "cm-", N_CM, &k) && index_of(cm_data(cm, "v"), "", N_CM, &v) &&
		    v == k)
			seen[k]++;
		else if (strcmp(name ? name : "", "kube-root-ca.crt") != 0)
			extra++;
	}
	json_decref(l);
	for (i = 0; i < N_CM && seen[i] == 1; i++)
		;
	ok(i == N_CM && extra == 0, NULL,
	   "creates: all %d ConfigMaps exist on the apiserver, each once (first missing: %zu, "
	   "others: %zu)",
	   N_CM, i, extra);

	/* 2. merge patches, unconditional updates, deletes */
	for (i = 0; i < N_CM; i++) {
		char name[32];
		json_t *obj = NULL;
		int r;

		snprintf(name, sizeof(name), "cm-%02zu", i);
		if (i < 20) {
			obj = json_pack("{s:{s:s}}", "data", "patched", "yes");
			r = kmm_kube_prepare_patch(CM(name), KMM_KUBE_PATCH_MERGE, obj, NULL, &p[i],
						   &err);
		} else if (i < 30) {
			r = kmm_kube_prepare_delete(CM(name), NULL, &p[i], &err);
		} else {
			char v[32];

			snprintf(v, sizeof(v), "%zu", i);
			obj = json_pack("{s:s,s:s,s:{s:s},s:{s:s,s:s}}", "apiVersion", "v1", "kind",
					"ConfigMap", "metadata", "name", name, "data", "v", v,
					"put", "yes");
			r = kmm_kube_prepare_update(CM(name), obj, NULL, &p[i], &err);
		}
		json_decref(obj);
		if (r < 0)
			bail("prepare", err);
	}
	run_batch(c, p, N_CM, "patches, deletes, updates");
	for (i = 0; i < N_CM; i++)
		kmm_kube_prepared_clear(&p[i]);
	memset(seen, 0, sizeof(seen));
	l = list(d, &kmm_kube_configmaps);
	json_array_foreach (json_object_get(l, "items"), i, cm) {
		const char *name = kmm_kube_meta_str(cm, "name");
		unsigned k;

		if (!index_of(name, "cm-", N_CM, &k))
			continue;
		if ((k < 20 && cm_data(cm, "patched")) || (k >= 30 && cm_data(cm, "put")))
			seen[k]++;
		else
			seen[k] = 99; /* not written, or should be gone */
	}
	json_decref(l);
	for (i = 0; i < N_CM && seen[i] == (i < 20 || i >= 30 ? 1 : 0); i++)
		;
	ok(i == N_CM, NULL,
	   "patches, deletes, updates: every write is on the apiserver (first wrong: cm-%02zu)", i);
}

static void test_events(struct kmm_kube_client *d, struct kmm_kube_client *c,
			struct kmm_event_queue_stats *ret_stats)
{
	struct kmm_event_queue *q = NULL;
	struct kmm_event_queue_stats st;
	struct kmm_kube_prepared p[N_EVENTS] = { 0 };
	struct kmm_kube_request reqs[N_EVENTS];
	struct kmm_error *err = NULL;
	int seen[N_EVENTS] = { 0 };
	int64_t next = -1;
	time_t deadline;
	size_t i, extra = 0;
	json_t *l, *ev;

	if (kmm_event_queue_new(c, 0, NULL, NULL, &q) < 0)
		bail("event queue", NULL);
	for (i = 0; i < N_EVENTS; i++) {
		char msg[32];
		json_t *obj;

		snprintf(msg, sizeof(msg), "event %zu", i);
		obj = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s,s:s,s:s,s:s},s:s,s:s,s:s,s:{s:s}}",
				"apiVersion", "v1", "kind", "Event", "metadata", "generateName",
				"batch-itest.", "namespace", ns, "involvedObject", "apiVersion",
				"v1", "kind", "ConfigMap", "namespace", ns, "name", "cm-00",
				"reason", "Test", "message", msg, "type", "Normal", "source",
				"component", "kube-batch-itest");
		if (!obj ||
		    kmm_kube_prepare_create(
			&(struct kmm_kube_target){ .res = &kmm_kube_events, .namespace = ns }, obj,
			NULL, &p[i], &err) < 0)
			bail("prepare event", err);
		json_decref(obj);
		reqs[i] = p[i].req;
	}
	ok(kmm_event_queue_send(q, reqs, N_EVENTS, &next, &err) == 0, err,
	   "events: first send of %d", N_EVENTS);
	for (i = 0; i < N_EVENTS; i++)
		kmm_kube_prepared_clear(&p[i]);
	kmm_event_queue_stats(q, &st);
	ok(st.pending > 0 && next >= 0, NULL,
	   "events: without client retries, %zu failed Events are kept (next in %lld ms)",
	   st.pending, (long long)next);
	deadline = time(NULL) + 120;
	while (st.pending > 0 && time(NULL) < deadline) {
		int64_t ms = next >= 0 ? next : 100;
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

		nanosleep(&ts, NULL);
		if (kmm_event_queue_send(q, NULL, 0, &next, &err) < 0)
			bail("event queue send", err);
		kmm_event_queue_stats(q, &st);
	}
	kmm_event_queue_stats(q, &st);
	ok(st.pending == 0 && st.delivered == N_EVENTS && st.dropped_full == 0 &&
	       st.dropped_failed == 0 && st.dropped_expired == 0 && st.requeued > 0,
	   NULL,
	   "events: queue drained: %llu delivered, %llu sends requeued, dropped %llu/%llu/%llu",
	   (unsigned long long)st.delivered, (unsigned long long)st.requeued,
	   (unsigned long long)st.dropped_full, (unsigned long long)st.dropped_failed,
	   (unsigned long long)st.dropped_expired);
	*ret_stats = st;
	kmm_event_queue_free(q);

	l = list(d, &kmm_kube_events);
	json_array_foreach (json_object_get(l, "items"), i, ev) {
		const char *m = json_string_value(json_object_get(ev, "message"));
		unsigned k;

		if (index_of(m, "event ", N_EVENTS, &k))
			seen[k]++;
		else
			extra++;
	}
	json_decref(l);
	for (i = 0; i < N_EVENTS && seen[i] == 1; i++)
		;
	ok(i == N_EVENTS, NULL,
	   "events: all %d Events are on the apiserver, each once (first wrong: %zu, seen %d "
	   "times)",
	   N_EVENTS, i, i < N_EVENTS ? seen[i] : 1);
}

/* The proxy's counts, through the proxy (its stats path is not counted). */
static json_t *proxy_stats(struct kmm_kube_client *c)
{
	struct kmm_kube_request req = { .method = "GET", .path = "/__proxy/stats" };
	struct kmm_error *err = NULL;
	json_t *st = NULL;

	if (kmm_kube_request_json(c, &req, &st, &err) < 0)
		bail("proxy stats", err);
	return st;
}

static long long num(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static long long injected(const json_t *st)
{
	return num(st, "injected_429") + num(st, "injected_500") + num(st, "injected_500_fwd");
}

int main(int argc, char **argv)
{
	struct kmm_kube_client *d, *c, *c_none;
	struct kmm_kube_client_stats cs;
	struct kmm_event_queue_stats es;
	struct kmm_error *err = NULL;
	json_t *nsobj, *st, *st2;

	if (argc != 4) {
		fprintf(stderr, "usage: kube-batch-itest NAMESPACE PROXY_URL PROXY_CA\n");
		return 2;
	}
	ns = argv[1];
	d = direct_client();
	c = proxy_client(argv[2], argv[3], 10);
	c_none = proxy_client(argv[2], argv[3], -1);
	nsobj = json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "v1", "kind", "Namespace", "metadata",
			  "name", ns);
	if (kmm_kube_create(d, &(struct kmm_kube_target){ .res = &kmm_kube_namespaces }, nsobj,
			    NULL, NULL, &err) < 0)
		bail("create namespace", err);
	json_decref(nsobj);

	test_writes(d, c);
	kmm_kube_client_stats(c, &cs); /* before the stats request itself */
	st = proxy_stats(c);
	ok(num(st, "injected_429") > 0 && num(st, "injected_500") > 0 &&
	       num(st, "injected_500_fwd") > 0,
	   NULL,
	   "writes: the proxy failed %lld of %lld writes: %lld 429, %lld 500, %lld 500 "
	   "after the write",
	   injected(st), num(st, "writes"), num(st, "injected_429"), num(st, "injected_500"),
	   num(st, "injected_500_fwd"));
	ok(num(st, "http2") == num(st, "seen"), NULL, "writes: all %lld requests over HTTP/2",
	   num(st, "seen"));
	ok((long long)cs.retries == injected(st) && (long long)cs.requests == num(st, "seen"), NULL,
	   "writes: client stats count them: %llu retries for %lld failures, %llu requests, "
	   "the proxy saw %lld",
	   (unsigned long long)cs.retries, injected(st), (unsigned long long)cs.requests,
	   num(st, "seen"));

	test_events(d, c_none, &es);
	kmm_kube_client_stats(c_none, &cs);
	st2 = proxy_stats(c);
	ok((long long)es.requeued == injected(st2) - injected(st) && cs.retries == 0 &&
	       (long long)cs.requests == num(st2, "seen") - num(st, "seen"),
	   NULL, "events: %llu resends for %lld failures, %llu requests, the proxy saw %lld",
	   (unsigned long long)es.requeued, injected(st2) - injected(st),
	   (unsigned long long)cs.requests, num(st2, "seen") - num(st, "seen"));
	json_decref(st);
	json_decref(st2);

	kmm_kube_delete(d, &(struct kmm_kube_target){ .res = &kmm_kube_namespaces, .name = ns },
			NULL, NULL, NULL);
	kmm_kube_client_free(c);
	kmm_kube_client_free(c_none);
	kmm_kube_client_free(d);
	printf("1..%d\n", n_test);
	return n_fail ? 1 : 0;
}
