/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-operator: options, configuration, probes and metrics, leader election
 * and a graceful SIGTERM around the engine of lib/operator (kmm/operator.h),
 * which holds the caches and runs the reconcilers of its table.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kmm/kubeconfig.h"
#include "kmm/shared-log.h"
#include "kmm/shared-options.h"
#include "kmm/controller-leader.h"
#include "kmm/operator-metrics.h"
#include "kmm/operator.h"
#include "kmm/operator-runtime.h"

#define PROG "kmm-operator"

/* Everything kmm-operator holds: its command line, its clients, the engine. */
struct process {
	const char *kubeconfig, *config_map, *config_file, *metrics_cert_dir;
	int workers;
	bool hub; /* --hub */
	double qps;
	int burst;
	struct kmm_operator_config cfg; /* until the engine takes it */
	struct kmm_kube_client *kube;
	struct kmm_metrics *metrics;
	struct kmm_op_serving serving;
	struct kmm_leader *leader; /* NULL without leader election */
	struct kmm_op_engine *engine;
};

/* --workers 1..64, --kube-qps >= 0, --kube-burst >= 1 */
static int parse_number(const struct kmm_option *o, const char *arg, void *ctx,
			struct kmm_error **err)
{
	struct process *p = ctx;
	bool workers = strcmp(o->name, "workers") == 0, qps = strcmp(o->name, "kube-qps") == 0;
	char *end = NULL;
	double v = qps ? strtod(arg, &end) : (double)strtol(arg, &end, 10);

	if (*end || v < (qps ? 0 : 1) || v > (workers ? 64 : qps ? HUGE_VAL : INT32_MAX))
		return kmm_error_make(err, EINVAL, "--%s must be %s", o->name,
				      workers ? "1..64"
				      : qps   ? ">= 0"
					      : ">= 1");
	if (qps)
		p->qps = v;
	else if (workers)
		p->workers = (int)v;
	else
		p->burst = (int)v;
	return 0;
}

#define ARG(field) offsetof(struct process, field)
static const struct kmm_option options[] = {
	{ "kubeconfig", 0, KMM_OPTION_STRING, "PATH", ARG(kubeconfig), NULL,
	  "kubeconfig to use (default: $KUBECONFIG, in-cluster, ~/.kube/config)" },
	{ "config", 0, KMM_OPTION_STRING, "NAME", ARG(config_map), NULL,
	  "ConfigMap in $OPERATOR_NAMESPACE holding controller_config.yaml" },
	{ "config-file", 0, KMM_OPTION_STRING, "PATH", ARG(config_file), NULL,
	  "read controller_config.yaml from a file instead" },
	{ "metrics-cert-dir", 0, KMM_OPTION_STRING, "DIR", ARG(metrics_cert_dir), NULL,
	  "tls.crt and tls.key for the metrics server, reloaded\n"
	  "when they change (default: a self-signed certificate)" },
	{ "hub", 0, KMM_OPTION_FLAG, NULL, ARG(hub), NULL,
	  "run as the hub of a fleet (docs/hub-spoke.md): ManagedClusterModules\n"
	  "to ManifestWorks, images built and signed here" },
	{ "workers", 0, KMM_OPTION_CALL, "N", 0, parse_number,
	  "concurrent reconciles per controller (default 4)" },
	{ "kube-qps", 0, KMM_OPTION_CALL, "N", 0, parse_number, NULL },
	{ "kube-burst", 0, KMM_OPTION_CALL, "N", 0, parse_number, NULL },
	{ 0 },
};
#undef ARG

static const struct kmm_option_group groups[] = {
	{ .title = "Options:\n", .options = options },
	{ .options = kmm_options_common },
	{ 0 },
};

static const struct kmm_options spec = {
	.prog = PROG,
	.usage = "Usage: " PROG " [OPTIONS]\n"
		 "\n"
		 "Reconciles kmm.sigs.x-k8s.io Module objects into per-node state and worker pods\n"
		 "that load and unload out-of-tree kernel modules.\n"
		 "\n",
	.groups = groups,
	.footer = "\n"
		  "Environment: OPERATOR_NAMESPACE and RELATED_IMAGE_WORKER (required;\n"
		  "the hub needs no worker), RELATED_IMAGE_BUILD, RELATED_IMAGE_SIGN,\n"
		  "KMM_MANAGED=1 (a spoke of a hub: no build, sign or preflight).\n",
};

/* Leader election (kmm/controller-leader.h): the engine starts once leading. */
static atomic_bool leading, shutting_down;

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
	char identity[192];
	struct kmm_leader_options lo = {
		.namespace = cfg->operator_namespace,
		.name = cfg->leader_election_resource_id,
		.identity = identity,
		.on_started_leading = started_leading,
		.on_stopped_leading = stopped_leading,
	};

	kmm_op_leader_identity(identity, sizeof(identity));
	kmm_log(KMM_LOG_INFO, "waiting for leadership", "lease", cfg->leader_election_resource_id,
		"identity", identity, NULL);
	return kmm_leader_start(kube, &lo, ret, err);
}

/* Waits to lead; false when SIGTERM or SIGINT came first. */
static bool wait_leading(const sigset_t *sigs)
{
	const struct timespec ts = { 0, 200 * 1000 * 1000 };

	while (!atomic_load(&leading))
		if (sigtimedwait(sigs, NULL, &ts) > 0)
			return false;
	return true;
}

static int fail(const char *what, struct kmm_error *e)
{
	kmm_log(KMM_LOG_ERROR, what, "error", kmm_error_message(e), NULL);
	kmm_error_free(e);
	return KMM_EXIT_FAILURE;
}

static void log_serving(const struct kmm_op_serving *s, const char *address)
{
	char hp[16], mp[16];

	if (s->metrics_downgraded)
		kmm_log(KMM_LOG_WARN,
			"metrics.bindAddress is healthProbeBindAddress: /metrics is "
			"served with the probes, over plain HTTP and without authentication",
			"address", address, NULL);
	snprintf(hp, sizeof(hp), "%u", s->health_port);
	snprintf(mp, sizeof(mp), "%u", s->metrics_port);
	kmm_log(KMM_LOG_INFO, "serving probes and metrics", "healthPort", hp, "metricsPort", mp,
		"metricsScheme", s->metrics_tls ? "https" : "http", "metricsAuthnAuthz",
		s->metrics_auth ? "true" : "false", NULL);
}

static int setup(struct process *p, struct kmm_error **e)
{
	_cleanup_kube_config_ struct kmm_kube_config *kc = NULL;
	struct kmm_kube_client_options ko;
	bool missing = false;

	if (kmm_operator_config_init(&p->cfg) < 0 || !(p->metrics = kmm_metrics_new()))
		return fail("out of memory", NULL);
	if (p->hub) {
		/* upstream's hub Lease: a hub and an operator may share a namespace */
		char *id = strdup("kmm-hub.sigs.x-k8s.io");

		if (!id)
			return fail("out of memory", NULL);
		free(p->cfg.leader_election_resource_id);
		p->cfg.leader_election_resource_id = id;
		p->cfg.mode = KMM_OP_MODE_HUB;
	}
	if (kmm_operator_config_from_env(&p->cfg, secure_getenv, e) < 0)
		return fail("bad environment", *e);
	if (p->config_file &&
	    kmm_operator_config_load(&p->cfg, NULL, NULL, NULL, p->config_file, &missing, e) < 0)
		return fail("bad configuration", *e);
	if (kmm_kube_config_load_default(p->kubeconfig, NULL, &kc, e) < 0)
		return fail("cannot load the Kubernetes client configuration", *e);
	kmm_kube_client_options_init(&ko);
	ko.qps = p->qps;
	ko.burst = p->burst;
	if (kmm_kube_client_new(kc, &ko, &p->kube, e) < 0)
		return fail("cannot create the Kubernetes client", *e);
	if ((p->config_map && !p->config_file &&
	     kmm_operator_config_load(&p->cfg, p->kube, p->metrics, p->config_map, NULL, &missing,
				      e) < 0) ||
	    kmm_operator_config_check_files(&p->cfg, e) < 0)
		return fail("bad configuration", *e);
	if (missing)
		kmm_log(KMM_LOG_INFO, "configuration ConfigMap not found, using defaults",
			"configmap", p->config_map, "namespace", p->cfg.operator_namespace, NULL);
	return -1;
}

static int run(struct process *p, sigset_t *sigs)
{
	struct kmm_error *e = NULL;
	const char *t = secure_getenv("KMM_UNLOAD_IMAGE_PULL_TIMEOUT_SECONDS");
	struct kmm_op_engine_options eo = {
		.cfg = &p->cfg,
		.workers = p->workers,
		.unload_pull_timeout_s = t ? strtoll(t, NULL, 10) : 0,
		.log = kmm_logv,
	};
	const struct kmm_operator_config *cfg;
	int sig = 0, r;

	r = setup(p, &e);
	if (r >= 0)
		return r;
	eo.kube = p->kube;
	eo.metrics = p->metrics;
	if (kmm_op_engine_new(&eo, &p->engine, &e) < 0)
		return fail("cannot set up the controllers", e);
	cfg = kmm_op_engine_config(p->engine);
	if (kmm_op_serving_start(cfg, p->kube, p->metrics, p->metrics_cert_dir, &p->engine,
				 &p->serving, &e) < 0)
		return fail("cannot serve probes and metrics", e);
	log_serving(&p->serving, cfg->health_probe_bind_address);

	if (cfg->leader_election_enabled) {
		if (start_leader(cfg, p->kube, &p->leader, &e) < 0)
			return fail("cannot set up leader election", e);
		if (!wait_leading(sigs)) {
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
	kmm_op_trim_heap(); /* give back what the initial LISTs needed only briefly */
	kmm_log(KMM_LOG_INFO, "caches synced, controllers running", "namespace",
		cfg->operator_namespace, "mode",
		cfg->mode == KMM_OP_MODE_HUB	 ? "hub"
		: cfg->mode == KMM_OP_MODE_SPOKE ? "spoke"
						 : "standalone",
		NULL);

	for (;;) {
		const struct timespec every = { .tv_sec = KMM_OP_HEAP_TRIM_EVERY_S };

		sig = sigtimedwait(sigs, NULL, &every);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		kmm_op_trim_heap();
	}
	kmm_log(KMM_LOG_INFO, "shutting down", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT",
		NULL);
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
	struct process p = { .workers = 4, .qps = 100, .burst = 200 };
	sigset_t sigs;
	int operands = 0, r;

	r = kmm_options_parse(&spec, argc, argv, &p, &operands);
	if (r >= 0)
		return r;
	if (operands < argc)
		return kmm_options_usage_error(PROG, "unexpected argument '%s'", argv[operands]);
	kmm_op_tune_malloc();
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	r = run(&p, &sigs);
	process_done(&p);
	if (r == KMM_EXIT_OK)
		kmm_log(KMM_LOG_INFO, "stopped", NULL);
	return r;
}
