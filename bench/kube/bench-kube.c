/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench-kube: figures for lib/kube and lib/informer against a live apiserver
 * ($KUBECONFIG), printed as "name value unit" lines:
 *   create requests/s, serial and with K requests in flight (K threads
 *   sharing one client);
 *   watch events/s decoded (a watch from resourceVersion 0 replays every
 *   object as ADDED), and the decoder alone on an in-memory stream;
 *   bytes of heap per cached Pod and per cached Node in a projecting informer
 *   (mallinfo2 delta; build without sanitizers for meaningful numbers).
 * Usage: bench-kube [N_CREATE] [K] [N_PODS] [N_NODES]
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kmm/informer.h"
#include "kmm/shared-jsonl.h"
#include "kmm/kube.h"
#include "kmm/kube-watch.h"

static char ns[64];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, struct kmm_error *err)
{
	fprintf(stderr, "bench-kube: %s: %s\n", what, kmm_error_message(err));
	exit(1);
}

static json_t *cm(const char *prefix, int i)
{
	char name[64];

	snprintf(name, sizeof(name), "%s-%d", prefix, i);
	return json_pack("{s:s,s:s,s:{s:s,s:{s:s}},s:{s:s}}", "apiVersion", "v1", "kind",
			 "ConfigMap", "metadata", "name", name, "labels", "bench", "kube", "data",
			 "payload", "0123456789abcdef0123456789abcdef");
}

struct worker {
	struct kmm_kube_client *c;
	const char *prefix;
	atomic_int *next;
	int n;
	int errors;
};

static void *create_worker(void *arg)
{
	struct worker *w = arg;
	struct kmm_kube_target t = { .res = &kmm_kube_configmaps, .namespace = ns };
	int i;

	while ((i = atomic_fetch_add(w->next, 1)) < w->n) {
		json_t *o = cm(w->prefix, i);

		if (kmm_kube_create(w->c, &t, o, NULL, NULL, NULL) < 0)
			w->errors++;
		json_decref(o);
	}
	return NULL;
}

static double bench_create(struct kmm_kube_client *c, const char *prefix, int n, int k)
{
	pthread_t th[64];
	struct worker w[64];
	atomic_int next = 0;
	double t0 = now_s(), dt;
	int errors = 0;

	for (int i = 0; i < k; i++) {
		w[i] = (struct worker){ c, prefix, &next, n, 0 };
		pthread_create(&th[i], NULL, create_worker, &w[i]);
	}
	for (int i = 0; i < k; i++) {
		pthread_join(th[i], NULL);
		errors += w[i].errors;
	}
	dt = now_s() - t0;
	if (errors)
		fprintf(stderr, "bench-kube: %d create errors\n", errors);
	return (n - errors) / dt;
}

/* K creates in flight on one thread, multiplexed over HTTP/2 (kmm_kube_batch). */
static double bench_pipelined(struct kmm_kube_client *c, const char *prefix, int n, int k)
{
	struct kmm_kube_batch_item *items = calloc((size_t)n, sizeof(*items));
	char **bodies = calloc((size_t)n, sizeof(char *));
	struct kmm_kube_client_stats s0, s1;
	char *path = NULL;
	double t0, dt;
	int ok = 0;

	kmm_kube_path(&(struct kmm_kube_target){ .res = &kmm_kube_configmaps, .namespace = ns },
		      NULL, &path, NULL);
	for (int i = 0; i < n; i++) {
		json_t *o = cm(prefix, i);

		bodies[i] = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		items[i].req = (struct kmm_kube_request){ .method = "POST",
							  .path = path,
							  .body = bodies[i],
							  .body_len = strlen(bodies[i]) };
	}
	kmm_kube_client_stats(c, &s0);
	t0 = now_s();
	kmm_kube_batch(c, items, (size_t)n, (size_t)k, NULL);
	dt = now_s() - t0;
	kmm_kube_client_stats(c, &s1);
	for (int i = 0; i < n; i++) {
		ok += items[i].rc == 0 && items[i].resp.status == 201;
		free(bodies[i]);
	}
	if (ok != n)
		fprintf(stderr, "bench-kube: %d of %d pipelined creates failed\n", n - ok, n);
	fprintf(stderr, "bench-kube: pipelined over %llu new connection(s)\n",
		(unsigned long long)(s1.connections - s0.connections));
	kmm_kube_batch_clear(items, (size_t)n);
	free(items);
	free(bodies);
	free(path);
	return ok / dt;
}

struct wcount {
	int n, want;
	struct kmm_watch *w;
};

static int count_event(enum kmm_watch_event_type t, json_t *o, void *ud, struct kmm_error **err)
{
	struct wcount *x = ud;

	if (++x->n >= x->want)
		kmm_watch_cancel(x->w);
	return 0;
}

static void bench_watch(struct kmm_kube_client *c, int want)
{
	struct kmm_kube_target t = { .res = &kmm_kube_configmaps, .namespace = ns };
	struct wcount x = { .want = want };
	struct kmm_error *err = NULL;
	double t0;
	int r;

	kmm_watch_new(&x.w, NULL);
	t0 = now_s();
	r = kmm_kube_watch(c, &t, &(struct kmm_watch_options){ .resource_version = "0" },
			   count_event, NULL, &x, x.w, &err);
	if (r < 0 && r != -ECANCELED)
		die("watch", err);
	printf("watch_events_per_s %.0f events/s (%d events from a live apiserver)\n",
	       x.n / (now_s() - t0), x.n);
	kmm_watch_free(x.w);
}

static int decode_frame(const char *f, size_t len, void *ud, struct kmm_error **err)
{
	enum kmm_watch_event_type t;
	json_t *o;
	int r = kmm_watch_decode(f, len, &t, &o, err);

	if (r == 0) {
		(*(int *)ud)++;
		json_decref(o);
	}
	return r;
}

static void bench_decode(int n)
{
	json_t *o = cm("decode", 1);
	json_t *ev = json_pack("{s:s,s:o}", "type", "MODIFIED", "object", o);
	char *line = json_dumps(ev, JSON_COMPACT);
	size_t l = strlen(line);
	char *stream = malloc((l + 1) * (size_t)n);
	struct kmm_jsonl s;
	int count = 0;
	double t0;

	for (int i = 0; i < n; i++) {
		// NOLINTNEXTLINE(bugprone-not-null-terminated-result): frames end with '\n'
		memcpy(stream + i * (l + 1), line, l);
		stream[i * (l + 1) + l] = '\n';
	}
	kmm_jsonl_init(&s, 1 << 20);
	t0 = now_s();
	for (size_t off = 0; off < (l + 1) * (size_t)n; off += 16384) {
		size_t chunk =
		    (l + 1) * (size_t)n - off < 16384 ? (l + 1) * (size_t)n - off : 16384;

		kmm_jsonl_feed(&s, stream + off, chunk, decode_frame, &count, NULL);
	}
	printf("watch_decode_per_s %.0f events/s (decoder alone, %zu-byte events)\n",
	       count / (now_s() - t0), l);
	kmm_jsonl_free(&s);
	free(stream);
	free(line);
	json_decref(ev);
}

/* A realistic pod: labels, owner, two containers with env, volumes, status. */
static json_t *pod(int i)
{
	char name[64], node[32];

	snprintf(name, sizeof(name), "bench-pod-%d", i);
	snprintf(node, sizeof(node), "bench-node-%d", i % 50);
	return json_pack(
	    "{s:s,s:s,s:{s:s,s:{s:s,s:s,s:s,s:s},s:{s:s},s:[{s:s,s:s,s:s,s:s,s:b}]},"
	    "s:{s:s,s:[{s:s,s:s,s:[s,s],s:[{s:s,s:s},{s:s,s:s}],s:{s:{s:s,s:s}},"
	    "s:[{s:s,s:s}]},{s:s,s:s}],s:[{s:s,s:{s:s}}],s:{s:s},s:[{s:s,s:s,s:s}]}}",
	    "apiVersion", "v1", "kind", "Pod", "metadata", "name", name, "labels", "app",
	    "kmm-worker", "kmm.node.kubernetes.io/module.name", "example",
	    "kmm.node.kubernetes.io/target-kernel", "6.1.0-13-amd64", "bench", "kube",
	    "annotations", "kmm.node.kubernetes.io/modules-order", "[\"a\",\"b\"]",
	    "ownerReferences", "apiVersion", "kmm.sigs.x-k8s.io/v1beta1", "kind", "Module", "name",
	    "example", "uid", "6b1d2f8c-3c41-4b8e-9d8e-0f6f7f3a1c2d", "controller", 1, "spec",
	    "nodeName", node, "containers", "name", "worker", "image",
	    "quay.io/example/kmm-worker:v1", "args", "kmod", "load", "env", "name", "A", "value",
	    "1", "name", "B", "value", "2", "resources", "requests", "cpu", "10m", "memory", "32Mi",
	    "volumeMounts", "name", "config", "mountPath", "/etc/kmm-worker", "name", "pause",
	    "image", "registry.k8s.io/pause:3.9", "volumes", "name", "config", "configMap", "name",
	    "worker-config", "nodeSelector", "kubernetes.io/hostname", node, "tolerations", "key",
	    "node.kubernetes.io/unschedulable", "operator", "Exists", "effect", "NoSchedule");
}

static json_t *node(int i)
{
	char name[64];

	snprintf(name, sizeof(name), "bench-node-%d", i);
	return json_pack("{s:s,s:s,s:{s:s,s:{s:s,s:s,s:s,s:s,s:s}},s:{s:[{s:s,s:s}]}}",
			 "apiVersion", "v1", "kind", "Node", "metadata", "name", name, "labels",
			 "kubernetes.io/hostname", name, "kubernetes.io/os", "linux",
			 "kubernetes.io/arch", "amd64", "node-role.kubernetes.io/worker", "",
			 "bench", "kube", "spec", "taints", "key", "example.com/special", "effect",
			 "NoSchedule");
}

static size_t heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

static void bench_memory(struct kmm_kube_client *c, const char *what,
			 const struct kmm_kube_resource *res, const char *nsp,
			 const char *const *proj, int n)
{
	struct kmm_informer_options o = {
		.res = res, .namespace = nsp, .label_selector = "bench=kube", .projection = proj
	};
	struct kmm_informer *inf = NULL;
	struct kmm_error *err = NULL;
	size_t before, after;

	if (kmm_informer_new(c, &o, &inf, &err) < 0)
		die("informer", err);
	malloc_trim(0);
	before = heap_used();
	if (kmm_informer_start(inf, &err) < 0 || kmm_informer_wait_synced(inf, 120000) < 0)
		die("informer sync", err);
	/* Let the LIST response and its DOM be freed before measuring. */
	while (kmm_informer_size(inf) < (size_t)n)
		usleep(10000);
	usleep(200000);
	after = heap_used();
	printf("memory_per_cached_%s %.0f bytes (%zu objects%s)\n", what,
	       (double)(after - before) / (double)kmm_informer_size(inf), kmm_informer_size(inf),
	       proj ? ", projected" : ", whole objects");
	kmm_informer_free(inf);
}

int main(int argc, char **argv)
{
	int n_create = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 1000;
	int k = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 16;
	int n_pods = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 2000;
	int n_nodes = argc > 4 ? (int)strtol(argv[4], NULL, 10) : 200;
	static const char *const pod_proj[] = { "metadata.labels", "metadata.ownerReferences",
						"spec.nodeName", "status.phase", NULL };
	static const char *const node_proj[] = { "metadata.labels",
						 "spec.unschedulable",
						 "spec.taints",
						 "status.nodeInfo.kernelVersion",
						 "status.nodeInfo.osImage",
						 NULL };
	struct kmm_kube_client_options co;
	struct kmm_kube_config *cfg = NULL;
	struct kmm_kube_client *c = NULL;
	struct kmm_error *err = NULL;
	struct kmm_kube_target nt = { .res = &kmm_kube_namespaces };
	json_t *o;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (k < 1 || k > 64)
		k = 16;
	kmm_kube_client_options_init(&co);
	co.qps = 0; /* measure the client and the server, not the limiter */
	if (kmm_kube_config_load_default(NULL, NULL, &cfg, &err) < 0 ||
	    kmm_kube_client_new(cfg, &co, &c, &err) < 0)
		die("client", err);
	snprintf(ns, sizeof(ns), "bench-kube-%d", getpid());
	o = json_pack("{s:{s:s}}", "metadata", "name", ns);
	if (kmm_kube_create(c, &nt, o, NULL, NULL, &err) < 0)
		die("namespace", err);
	json_decref(o);

	printf("create_serial %.0f requests/s (%d creates)\n", bench_create(c, "s", n_create, 1),
	       n_create);
	printf("create_in_flight_%d %.0f requests/s (%d creates)\n", k,
	       bench_create(c, "p", n_create * 2, k), n_create * 2);
	printf("create_pipelined_%d %.0f requests/s (%d creates, one thread, HTTP/2 streams)\n", k,
	       bench_pipelined(c, "h", n_create * 2, k), n_create * 2);
	bench_watch(c, n_create * 5);
	bench_decode(100000);

	for (int i = 0; i < n_pods; i++) {
		json_t *p = pod(i);

		if (kmm_kube_create(
			c, &(struct kmm_kube_target){ .res = &kmm_kube_pods, .namespace = ns }, p,
			NULL, NULL, &err) < 0)
			die("create pod", err);
		json_decref(p);
	}
	for (int i = 0; i < n_nodes; i++) {
		json_t *nd = node(i);

		kmm_kube_create(c, &(struct kmm_kube_target){ .res = &kmm_kube_nodes }, nd, NULL,
				NULL, NULL);
		json_decref(nd);
	}
	bench_memory(c, "pod", &kmm_kube_pods, ns, pod_proj, n_pods);
	bench_memory(c, "pod_unprojected", &kmm_kube_pods, ns, NULL, n_pods);
	bench_memory(c, "node", &kmm_kube_nodes, NULL, node_proj, n_nodes);

	for (int i = 0; i < n_nodes; i++) {
		char name[64];

		snprintf(name, sizeof(name), "bench-node-%d", i);
		kmm_kube_delete(c,
				&(struct kmm_kube_target){ .res = &kmm_kube_nodes, .name = name },
				NULL, NULL, NULL);
	}
	nt.name = ns;
	kmm_kube_delete(c, &nt, NULL, NULL, NULL);
	kmm_kube_client_free(c);
	kmm_kube_config_free(cfg);
	return 0;
}
