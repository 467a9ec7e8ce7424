/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-operator: options, configuration, probes and metrics, leader election
 * and a graceful SIGTERM around the engine of lib/operator (kmm/operator.h),
 * which holds the caches and runs the reconcilers of its table.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kmm/fileio.h"
#include "kmm/httpd.h"
#include "kmm/json.h"
#include "kmm/kubeconfig.h"
#include "kmm/log.h"
#include "kmm/leader.h"
#include "kmm/operator-metrics.h"
#include "kmm/operator.h"
#include "kmm/operator-runtime.h"
#include "src/common/cli.h"

#define PROG "kmm-operator"

static const char help[] =
    "Usage: " PROG " [OPTIONS]\n"
    "\n"
    "Reconciles kmm.sigs.x-k8s.io Module objects into per-node state and worker pods\n"
    "that load and unload out-of-tree kernel modules.\n"
    "\n"
    "Options:\n"
    "      --kubeconfig PATH    kubeconfig to use (default: $KUBECONFIG, in-cluster, "
    "~/.kube/config)\n"
    "      --config NAME        ConfigMap in $OPERATOR_NAMESPACE holding controller_config.yaml\n"
    "      --config-file PATH   read controller_config.yaml from a file instead\n"
    "      --metrics-cert-dir DIR  tls.crt and tls.key for the metrics server, reloaded\n"
    "                           when they change (default: a self-signed certificate)\n"
    "      --workers N          concurrent reconciles per controller (default "
    "4)\n" KMM_COMMON_OPTIONS_HELP "\n"
    "Environment: OPERATOR_NAMESPACE and RELATED_IMAGE_WORKER (required),\n"
    "RELATED_IMAGE_BUILD, RELATED_IMAGE_SIGN.\n";

enum {
	OPT_KUBECONFIG = 0x200,
	OPT_CONFIG,
	OPT_CONFIG_FILE,
	OPT_WORKERS,
	OPT_QPS,
	OPT_BURST,
	OPT_METRICS_CERT_DIR,
};

struct args {
	const char *kubeconfig;
	const char *config_map;
	const char *config_file;
	const char *metrics_cert_dir;
	int workers;
	double qps;
	int burst;
};

static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {
		KMM_COMMON_LONG_OPTIONS,
		{ "kubeconfig", required_argument, NULL, OPT_KUBECONFIG },
		{ "config", required_argument, NULL, OPT_CONFIG },
		{ "config-file", required_argument, NULL, OPT_CONFIG_FILE },
		{ "workers", required_argument, NULL, OPT_WORKERS },
		{ "kube-qps", required_argument, NULL, OPT_QPS },
		{ "kube-burst", required_argument, NULL, OPT_BURST },
		{ "metrics-cert-dir", required_argument, NULL, OPT_METRICS_CERT_DIR },
		{},
	};
	char *end = NULL;
	int opt, r;

	a->workers = 4;
	a->qps = 100;
	a->burst = 200;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(help, stdout);
			return KMM_EXIT_OK;
		case OPT_KUBECONFIG:
			a->kubeconfig = optarg;
			break;
		case OPT_CONFIG:
			a->config_map = optarg;
			break;
		case OPT_CONFIG_FILE:
			a->config_file = optarg;
			break;
		case OPT_METRICS_CERT_DIR:
			a->metrics_cert_dir = optarg;
			break;
		case OPT_WORKERS:
			a->workers = (int)strtol(optarg, &end, 10);
			if (*end || a->workers < 1 || a->workers > 64)
				return kmm_cli_usage_error(PROG, "--workers must be 1..64");
			break;
		case OPT_QPS:
			a->qps = strtod(optarg, &end);
			if (*end || a->qps < 0)
				return kmm_cli_usage_error(PROG, "--kube-qps must be >= 0");
			break;
		case OPT_BURST:
			a->burst = (int)strtol(optarg, &end, 10);
			if (*end || a->burst < 1)
				return kmm_cli_usage_error(PROG, "--kube-burst must be >= 1");
			break;
		case '?':
			return kmm_cli_bad_option(PROG, argc, argv);
		default:
			r = kmm_cli_common_option(PROG, opt, optarg);
			if (r <= 0)
				return -r;
		}
	}
	if (optind < argc)
		return kmm_cli_usage_error(PROG, "unexpected argument '%s'", argv[optind]);
	return -1;
}

static atomic_bool leading, shutting_down;

/* ---- leader election (kmm/leader.h) ---- */

static void started_leading(void *userdata)
{
	atomic_store(&leading, true);
}

/* Losing the Lease while running: stop at once, like client-go; a standby takes over. */
static void stopped_leading(void *userdata)
{
	if (!atomic_load(&leading) || atomic_load(&shutting_down))
		return;
	kmm_log(KMM_LOG_ERROR, "lost leadership, exiting", NULL);
	_exit(KMM_EXIT_FAILURE);
}

static int start_leader(const struct kmm_operator_config *cfg, struct kmm_kube_client *kube,
			struct kmm_leader **ret, struct kmm_error **err)
{
	char host[128] = "kmm", identity[192];
	unsigned char rnd[4] = { 0 };
	struct kmm_leader_options lo = {
		.namespace = cfg->operator_namespace,
		.name = cfg->leader_election_resource_id,
		.identity = identity,
		.on_started_leading = started_leading,
		.on_stopped_leading = stopped_leading,
	};

	gethostname(host, sizeof(host) - 1);
	if (getrandom(rnd, sizeof(rnd), 0) < 0)
		memset(rnd, 0, sizeof(rnd));
	snprintf(identity, sizeof(identity), "%s_%02x%02x%02x%02x", host, rnd[0], rnd[1], rnd[2],
		 rnd[3]);
	kmm_log(KMM_LOG_INFO, "waiting for leadership", "lease", cfg->leader_election_resource_id,
		"identity", identity, NULL);
	return kmm_leader_start(kube, &lo, ret, err);
}

/* Waits to lead; returns true when a signal of sigs came first (*ret_sig). */
static bool wait_leading(const sigset_t *sigs, int *ret_sig)
{
	struct timespec ts = { 0, 200 * 1000 * 1000 };

	while (!atomic_load(&leading)) {
		int s = sigtimedwait(sigs, NULL, &ts);

		if (s == SIGTERM || s == SIGINT) {
			*ret_sig = s;
			return true;
		}
	}
	return false;
}

static int fail(const char *what, struct kmm_error *e)
{
	kmm_log(KMM_LOG_ERROR, what, "error", kmm_error_message(e), NULL);
	kmm_error_free(e);
	return KMM_EXIT_FAILURE;
}

/*
 * glibc hands freed memory back only from the top of the heap, so what a
 * rollout freed in the middle (finished pods, their DOMs, response bodies)
 * would stay resident: measured at 1,000 nodes x 10 Modules, 3-5 MiB of
 * free heap in RSS. malloc_trim() returns its whole free pages.
 */
#define HEAP_TRIM_EVERY_S 5
#define HEAP_TRIM_FREE_MIN (1024 * 1024)

static void trim_heap(void)
{
	struct mallinfo2 mi = mallinfo2();

	if (mi.fordblks >= HEAP_TRIM_FREE_MIN)
		malloc_trim(0);
}

static void log_to_stderr(void *userdata, enum kmm_log_level level, const char *msg, va_list fields)
{
	kmm_logv(level, msg, fields);
}

static bool engine_ready(void *userdata)
{
	struct kmm_op_engine *const *eng = userdata;

	return *eng && kmm_op_engine_synced(*eng);
}

static void log_serving(const struct kmm_op_serving *s, const char *address)
{
	char hp[16], mp[16];

	if (s->metrics_downgraded)
		kmm_log(
		    KMM_LOG_WARN,
		    "metrics.bindAddress is healthProbeBindAddress: /metrics is served with the "
		    "probes, over plain HTTP and without authentication",
		    "address", address, NULL);
	snprintf(hp, sizeof(hp), "%u", s->health_port);
	snprintf(mp, sizeof(mp), "%u", s->metrics_port);
	kmm_log(KMM_LOG_INFO, "serving probes and metrics", "healthPort", hp, "metricsPort", mp,
		"metricsScheme", s->metrics_tls ? "https" : "http", "metricsAuthnAuthz",
		s->metrics_auth ? "true" : "false", NULL);
}

struct process {
	struct kmm_operator_config cfg; /* until the engine takes it */
	struct kmm_kube_client *kube;
	struct kmm_metrics *metrics;
	struct kmm_op_api api;
	struct kmm_op_serving serving;
	struct kmm_leader *leader; /* NULL without leader election */
	struct kmm_op_engine *engine;
};

static int setup(struct process *p, const struct args *a, struct kmm_error **e)
{
	_cleanup_kube_config_ struct kmm_kube_config *kc = NULL;
	struct kmm_kube_client_options ko;
	bool missing = false;

	if (kmm_operator_config_init(&p->cfg) < 0)
		return fail("out of memory", NULL);
	if (kmm_operator_config_from_env(&p->cfg, secure_getenv, e) < 0)
		return fail("bad environment", *e);
	if (a->config_file &&
	    kmm_operator_config_load(&p->cfg, NULL, NULL, a->config_file, &missing, e) < 0)
		return fail("bad configuration", *e);
	if (!(p->metrics = kmm_metrics_new()))
		return fail("out of memory", NULL);
	if (kmm_kube_config_load_default(a->kubeconfig, NULL, &kc, e) < 0)
		return fail("cannot load the Kubernetes client configuration", *e);
	kmm_kube_client_options_init(&ko);
	ko.qps = a->qps;
	ko.burst = a->burst;
	if (kmm_kube_client_new(kc, &ko, &p->kube, e) < 0 ||
	    kmm_op_api_init(&p->api, p->kube, p->metrics, e) < 0)
		return fail("cannot create the Kubernetes client", *e);
	if (a->config_map && !a->config_file &&
	    kmm_operator_config_load(&p->cfg, &p->api, a->config_map, NULL, &missing, e) < 0)
		return fail("bad configuration", *e);
	if (missing)
		kmm_log(KMM_LOG_INFO, "configuration ConfigMap not found, using defaults",
			"configmap", a->config_map, "namespace", p->cfg.operator_namespace, NULL);
	if (kmm_operator_config_check_files(&p->cfg, e) < 0)
		return fail("bad configuration", *e);
	return -1;
}

static int run(struct process *p, const struct args *a, sigset_t *sigs)
{
	struct kmm_error *e = NULL;
	const char *t = secure_getenv("KMM_UNLOAD_IMAGE_PULL_TIMEOUT_SECONDS");
	struct kmm_op_engine_options eo = {
		.cfg = &p->cfg,
		.workers = a->workers,
		.unload_pull_timeout_s = t ? strtoll(t, NULL, 10) : 0,
		.log = log_to_stderr,
	};
	const struct kmm_operator_config *cfg;
	int sig = 0, r;

	r = setup(p, a, &e);
	if (r >= 0)
		return r;
	eo.kube = p->kube;
	eo.metrics = p->metrics;
	if (kmm_op_engine_new(&eo, &p->engine, &e) < 0)
		return fail("cannot set up the controllers", e);
	cfg = kmm_op_engine_config(p->engine);
	if (kmm_op_serving_start(cfg, p->kube, p->metrics, a->metrics_cert_dir, engine_ready,
				 &p->engine, &p->serving, &e) < 0)
		return fail("cannot serve probes and metrics", e);
	log_serving(&p->serving, cfg->health_probe_bind_address);

	if (cfg->leader_election_enabled) {
		if (start_leader(cfg, p->kube, &p->leader, &e) < 0)
			return fail("cannot set up leader election", e);
		if (wait_leading(sigs, &sig)) {
			kmm_log(KMM_LOG_INFO, "stopping before becoming leader", NULL);
			return KMM_EXIT_OK; /* main() stops the election */
		}
		kmm_log(KMM_LOG_INFO, "became leader", "lease", cfg->leader_election_resource_id,
			NULL);
	}
	/*
	 * Every cache must be complete before the first reconcile: a Module
	 * finalized against a half-listed NMC cache would look unloaded
	 * everywhere. Events queue up meanwhile.
	 */
	if (kmm_op_engine_sync(p->engine, 120000, &e) < 0)
		return fail("cannot start caches", e);
	if (kmm_op_engine_start(p->engine, &e) < 0)
		return fail("cannot start controllers", e);
	malloc_trim(0); /* give back what the initial LISTs needed only briefly */
	kmm_log(KMM_LOG_INFO, "caches synced, controllers running", "namespace",
		cfg->operator_namespace, NULL);

	for (;;) {
		const struct timespec every = { .tv_sec = HEAP_TRIM_EVERY_S };

		sig = sigtimedwait(sigs, NULL, &every);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		trim_heap();
	}
	kmm_log(KMM_LOG_INFO, "shutting down", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT",
		NULL);
	kmm_op_engine_stop_workers(p->engine);
	return KMM_EXIT_OK; /* main() releases the Lease: a standby takes over at once */
}

static void process_done(struct process *p)
{
	kmm_op_serving_stop(&p->serving);
	atomic_store(&shutting_down, true);
	kmm_op_engine_stop_workers(p->engine);
	kmm_leader_stop(p->leader);
	kmm_op_engine_free(p->engine);
	kmm_kube_client_free(p->kube);
	kmm_metrics_free(p->metrics);
	kmm_operator_config_free(&p->cfg);
}

int main(int argc, char **argv)
{
	struct args a = {};
	struct process p = {};
	sigset_t sigs;
	int r;

	r = parse_args(argc, argv, &a);
	if (r >= 0)
		return r;
	/*
	 * A few dozen threads (informers, workers, HTTP) each allocating a little
	 * would get a malloc arena apiece, each holding on to its freed pages; one
	 * arena (the work is I/O-bound), and large blocks (LIST pages, response
	 * bodies) mapped and unmapped on their own, keep the peak RSS near what is
	 * live (measured at 1,000 nodes: docs/benchmarks.md).
	 */
	if (!secure_getenv("MALLOC_ARENA_MAX"))
		mallopt(M_ARENA_MAX, 1);
	if (!secure_getenv("MALLOC_MMAP_THRESHOLD_"))
		mallopt(M_MMAP_THRESHOLD, 64 * 1024);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	r = run(&p, &a, &sigs);
	process_done(&p);
	if (r == KMM_EXIT_OK)
		kmm_log(KMM_LOG_INFO, "stopped", NULL);
	return r;
}
