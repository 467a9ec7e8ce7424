/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-operator: configuration, caches, controllers, probes, metrics, leader
 * election and a graceful SIGTERM. The reconcilers are module.c, nmc.c, mic.c
 * (ModuleImagesConfig: image existence) and mbsc.c (build and sign pods).
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
#include "operator.h"
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

/* ---- configuration ---- */

static int load_config_map(struct op *op, const char *name, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_kube_configmaps, op->cfg.operator_namespace, name, NULL };
	_cleanup_json_ json_t *cm = NULL;
	struct kmm_error *e = NULL;
	const char *text;
	int r;

	r = kmm_op_get(&op->api, &t, &cm, &e);
	if (r == -ENOENT) {
		kmm_log(KMM_LOG_INFO, "configuration ConfigMap not found, using defaults",
			"configmap", name, "namespace", op->cfg.operator_namespace, NULL);
		kmm_error_free(e);
		return 0;
	}
	if (r < 0) {
		*err = e;
		return kmm_error_wrap(err, "read ConfigMap %s/%s", op->cfg.operator_namespace,
				      name);
	}
	text = json_string_value(
	    json_object_get(json_object_get(cm, "data"), KMM_OPERATOR_CONFIG_KEY));
	if (!text)
		return 0;
	return kmm_operator_config_parse(&op->cfg, text, strlen(text),
					 "ConfigMap " KMM_OPERATOR_CONFIG_KEY, err);
}

/* A CA bundle that cannot be read would fail every image check: say so at start. */
static int check_registry_ca(const struct kmm_operator_config *cfg, struct kmm_error **err)
{
	_cleanup_free_ char *pem = NULL;

	if (!cfg->registry_ca_file || !*cfg->registry_ca_file)
		return 0;
	if (kmm_read_file(cfg->registry_ca_file, 4 * 1024 * 1024, &pem, NULL, err) < 0)
		return kmm_error_wrap(err, "registryCAFile");
	if (!strstr(pem, "-----BEGIN CERTIFICATE-----"))
		return kmm_error_make(err, EINVAL, "registryCAFile: %s holds no PEM certificate",
				      cfg->registry_ca_file);
	return 0;
}

static int load_config_file(struct op *op, const char *path, struct kmm_error **err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r;

	r = kmm_read_file(path, 1 << 20, &text, &len, err);
	if (r < 0)
		return r;
	return kmm_operator_config_parse(&op->cfg, text, len, path, err);
}

/* ---- metrics and probes ---- */

static void serve_metrics(struct kmm_http_response *resp, void *userdata)
{
	struct op *op = userdata;

	resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
	if (kmm_metrics_render(op->metrics, &resp->body) < 0)
		resp->status = 500;
}

static void serve_healthz(struct kmm_http_response *resp, void *userdata)
{
	kmm_buf_append(&resp->body, "ok", 2);
}

static void serve_readyz(struct kmm_http_response *resp, void *userdata)
{
	struct op *op = userdata;
	bool ok = kmm_informer_has_synced(op->modules) && kmm_informer_has_synced(op->nmcs) &&
		  kmm_informer_has_synced(op->nodes) && kmm_informer_has_synced(op->pods) &&
		  kmm_informer_has_synced(op->namespaces) && kmm_informer_has_synced(op->mics) &&
		  kmm_informer_has_synced(op->mbscs) && kmm_informer_has_synced(op->bspods) &&
		  (!op->pullpods || kmm_informer_has_synced(op->pullpods));

	if (!ok) {
		resp->status = 503;
		kmm_buf_append(&resp->body, "caches not synced", 17);
		return;
	}
	kmm_buf_append(&resp->body, "ok", 2);
}

static void collect_informers(struct kmm_metrics *m, void *userdata)
{
	struct op *op = userdata;
	static const char *const names[] = { "modules",
					     "nodemodulesconfigs",
					     "nodes",
					     "pods",
					     "namespaces",
					     "moduleimagesconfigs",
					     "modulebuildsignconfigs",
					     "buildsignpods",
					     "pullpods" };
	struct kmm_informer *infs[] = { op->modules, op->nmcs,	     op->nodes,
					op->pods,    op->namespaces, op->mics,
					op->mbscs,   op->bspods,     op->pullpods };
	struct kmm_metric *lists = kmm_metrics_find(m, "kmm_informer_lists_total");
	struct kmm_metric *watches = kmm_metrics_find(m, "kmm_informer_watches_total");
	struct kmm_metric *objs = kmm_metrics_find(m, "kmm_informer_objects");
	struct kmm_metric *bytes = kmm_metrics_find(m, "kmm_informer_bytes");

	for (size_t i = 0; i < KMM_ARRAY_SIZE(infs); i++) {
		struct kmm_informer_stats s;
		const char *lv[] = { names[i] };

		if (!infs[i])
			continue;
		kmm_informer_stats(infs[i], &s);
		kmm_metric_set(lists, lv, (double)s.lists);
		kmm_metric_set(watches, lv, (double)s.watches);
		kmm_metric_set(objs, lv, (double)kmm_informer_size(infs[i]));
		kmm_metric_set(bytes, lv, (double)kmm_informer_bytes(infs[i]));
	}
}

static int register_metrics(struct op *op, struct kmm_error **err)
{
	static const char *const res[] = { "resource", NULL };
	static const char *const args[] = { "name", "namespace", "modprobeArgs", NULL };
	struct kmm_metric *unused;
	int r;

	r = kmm_metrics_register_process(op->metrics, err);
	if (r >= 0)
		r = kmm_metrics_register(op->metrics, KMM_METRIC_GAUGE, "kmm_module_num",
					 "Number of existing KMM modules", NULL, NULL, 0,
					 &op->g_modules, err);
	if (r >= 0)
		r = kmm_metrics_register(op->metrics, KMM_METRIC_GAUGE, "kmm_in_cluster_build_num",
					 "Number of existing KMM modules with in-cluster build "
					 "defined",
					 NULL, NULL, 0, &op->g_build, err);
	if (r >= 0)
		r = kmm_metrics_register(op->metrics, KMM_METRIC_GAUGE, "kmm_in_cluster_sign_num",
					 "Number of existing KMM modules with in-cluster sign "
					 "defined",
					 NULL, NULL, 0, &op->g_sign, err);
	if (r >= 0)
		r = kmm_metrics_register(op->metrics, KMM_METRIC_GAUGE, "kmm_device_plugin_num",
					 "Number of existing KMM modules with device plugin "
					 "defined",
					 NULL, NULL, 0, &op->g_device_plugin, err);
	if (r >= 0)
		r = kmm_metrics_register(op->metrics, KMM_METRIC_GAUGE, "kmm_preflight_num",
					 "Number of existing preflight validations", NULL, NULL, 0,
					 &unused, err);
	if (r >= 0)
		r = kmm_metrics_register(op->metrics, KMM_METRIC_GAUGE, "kmm_modprobe_args",
					 "for a given module, the modprobe arguments used", args,
					 NULL, 0, &op->g_modprobe_args, err);
	if (r >= 0)
		r = kmm_metrics_register(op->metrics, KMM_METRIC_COUNTER,
					 "kmm_informer_lists_total",
					 "LISTs done by each informer (initial and relists)", res,
					 NULL, 0, &unused, err);
	if (r >= 0)
		r = kmm_metrics_register(
		    op->metrics, KMM_METRIC_COUNTER, "kmm_informer_watches_total",
		    "Watch streams opened by each informer", res, NULL, 0, &unused, err);
	if (r >= 0)
		r = kmm_metrics_register(op->metrics, KMM_METRIC_GAUGE, "kmm_informer_objects",
					 "Objects held by each informer's cache", res, NULL, 0,
					 &unused, err);
	if (r >= 0)
		r = kmm_metrics_register(op->metrics, KMM_METRIC_GAUGE, "kmm_informer_bytes",
					 "Bytes of the compact objects each informer's cache holds",
					 res, NULL, 0, &unused, err);
	if (r >= 0)
		r = kmm_metrics_add_collector(op->metrics, collect_informers, op);
	return r;
}

static int start_http(struct op *op, const char *metrics_cert_dir, struct kmm_httpd **ret_health,
		      struct kmm_httpd **ret_metrics, struct kmm_error **err)
{
	_cleanup_(kmm_httpd_freep) struct kmm_httpd *health = NULL, *metrics = NULL;
	struct kmm_httpd_options ho = { op->cfg.health_probe_bind_address };
	bool same = strcmp(ho.bind_address, op->cfg.metrics_bind_address) == 0;
	int r;

	r = kmm_httpd_new(&ho, &health, err);
	if (r < 0 || (r = kmm_httpd_route(health, "/healthz", serve_healthz, op)) < 0 ||
	    (r = kmm_httpd_route(health, "/readyz", serve_readyz, op)) < 0)
		return r < 0 && err && !*err ? kmm_error_make(err, -r, "health server") : r;
	if (same && (r = kmm_httpd_route(health, "/metrics", serve_metrics, op)) < 0)
		return kmm_error_make(err, -r, "metrics route");
	r = kmm_httpd_start(health, err);
	if (r < 0)
		return kmm_error_wrap(err, "healthProbeBindAddress");
	if (same && (op->cfg.metrics_secure_serving || op->cfg.metrics_enable_authn_authz))
		kmm_log(
		    KMM_LOG_WARN,
		    "metrics.bindAddress is healthProbeBindAddress: /metrics is served with the "
		    "probes, over plain HTTP and without authentication",
		    "address", ho.bind_address, NULL);
	if (!same) {
		r = kmm_op_metrics_server_start(&op->cfg, op->kube, metrics_cert_dir, serve_metrics,
						op, &metrics, err);
		if (r < 0)
			return r;
	}
	{
		unsigned hport = kmm_httpd_port(health), mport = 0;
		bool tls = !same && kmm_httpd_tls(metrics);
		bool auth = !same && metrics && op->cfg.metrics_enable_authn_authz;
		char hp[16], mp[16];

		if (same)
			mport = hport;
		else if (metrics)
			mport = kmm_httpd_port(metrics);
		snprintf(hp, sizeof(hp), "%u", hport);
		snprintf(mp, sizeof(mp), "%u", mport);
		kmm_log(KMM_LOG_INFO, "serving probes and metrics", "healthPort", hp, "metricsPort",
			mp, "metricsScheme", tls ? "https" : "http", "metricsAuthnAuthz",
			auth ? "true" : "false", NULL);
	}
	*ret_health = TAKE_PTR(health);
	*ret_metrics = TAKE_PTR(metrics);
	return 0;
}

/* ---- informers and event handlers ---- */

static const char *const node_projection[] = {
	"metadata.labels",
	"spec.taints",
	"spec.unschedulable",
	"status.nodeInfo.kernelVersion",
	"status.nodeInfo.bootID",
	"status.conditions",
	NULL,
};

static const char *const pod_projection[] = {
	"metadata.labels",
	"metadata.annotations",
	"metadata.finalizers",
	"metadata.creationTimestamp",
	"spec.nodeName",
	"spec.serviceAccountName",
	"spec.imagePullSecrets",
	"status.phase",
	"status.containerStatuses",
	"status.initContainerStatuses",
	NULL,
};

static const char *const ns_projection[] = { "metadata.labels", NULL };

static const char *const pullpod_projection[] = {
	"metadata.labels",
	"metadata.creationTimestamp",
	"spec.containers",
	"status.phase",
	"status.conditions",
	"status.containerStatuses",
	"status.reason",
	"status.message",
	NULL,
};

static const char *const bspod_projection[] = {
	"metadata.labels",     "metadata.annotations",
	"metadata.finalizers", "metadata.creationTimestamp",
	"status.phase",	       "status.containerStatuses",
	"status.conditions",   NULL,
};

static void on_module(const struct kmm_obj *o, void *ud)
{
	struct op *op = ud;

	kmm_op_ctl_enqueue(op->module_ctl, kmm_obj_key(o));
}

/* Did anything but the status change? Our own status writes must not trigger reconciles. */
static bool module_changed(const struct kmm_obj *old, const struct kmm_obj *new)
{
	static const char *const paths[] = { "metadata.generation", "metadata.deletionTimestamp",
					     "metadata.finalizers", "metadata.labels",
					     "metadata.annotations" };

	for (size_t i = 0; i < KMM_ARRAY_SIZE(paths); i++) {
		_cleanup_json_ json_t *a = kmm_obj_get_json(old, paths[i]);
		_cleanup_json_ json_t *b = kmm_obj_get_json(new, paths[i]);

		if (!kmm_json_same(a, b))
			return true;
	}
	return false;
}

static void on_module_update(const struct kmm_obj *old, const struct kmm_obj *new, void *ud)
{
	if (module_changed(old, new))
		on_module(new, ud);
}

/* NMC progress is batched into one Module reconcile per this many ms. */
#define MODULE_STATUS_BATCH_MS 2000

static const json_t *nmc_entry(const json_t *nmc, const char *part, const char *ns,
			       const char *name)
{
	const json_t *arr = json_object_get(json_object_get(nmc, part), "modules"), *e;
	size_t i;

	json_array_foreach (arr, i, e) {
		if (strcmp(json_string_value(json_object_get(e, "namespace")) ?: "", ns) == 0 &&
		    strcmp(json_string_value(json_object_get(e, "name")) ?: "", name) == 0)
			return e;
	}
	return NULL;
}

/* Did anything the Module ns/name cares about change between a and b? */
static bool module_part_changed(const json_t *a, const json_t *b, const char *ns, const char *name)
{
	_cleanup_free_ char *cl = kmm_op_nmc_configured_label(ns, name);
	_cleanup_free_ char *ul = kmm_op_nmc_in_use_label(ns, name);

	if (!a || !b || !cl || !ul)
		return true;
	return !kmm_json_same(nmc_entry(a, "spec", ns, name), nmc_entry(b, "spec", ns, name)) ||
	       !kmm_json_same(nmc_entry(a, "status", ns, name), nmc_entry(b, "status", ns, name)) ||
	       !kmm_op_label(a, cl) != !kmm_op_label(b, cl) ||
	       !kmm_op_label(a, ul) != !kmm_op_label(b, ul);
}

/*
 * Modules named by an NMC's configured/in-use labels, those whose part
 * changed between old and new (old NULL: all of them).
 */
static void enqueue_nmc_modules(struct op *op, const json_t *nmc, const json_t *old)
{
	const json_t *labels = json_object_get(json_object_get(nmc, "metadata"), "labels");
	const char *k;
	const json_t *v;
	size_t plen = strlen(KMM_NMC_LABEL_PREFIX);

	json_object_foreach ((json_t *)labels, k, v) {
		const char *rest, *dot, *suffix;
		char ns[256], name[256], key[512];

		if (strncmp(k, KMM_NMC_LABEL_PREFIX, plen) != 0)
			continue;
		rest = k + plen;
		suffix = strstr(rest, ".module-");
		dot = strchr(rest, '.');
		if (!suffix || !dot || dot >= suffix)
			continue;
		snprintf(ns, sizeof(ns), "%.*s", (int)(dot - rest), rest);
		snprintf(name, sizeof(name), "%.*s", (int)(suffix - dot - 1), dot + 1);
		if (old && !module_part_changed(old, nmc, ns, name))
			continue;
		snprintf(key, sizeof(key), "%s/%s", ns, name);
		/*
		 * NMC progress only moves the Module's status counts (and, once
		 * unloaded everywhere, its finalizer): batch it. Node and Module
		 * changes, which move entries, are not delayed.
		 */
		kmm_op_ctl_enqueue_coalesced(op->module_ctl, key, MODULE_STATUS_BATCH_MS);
	}
}

static void on_nmc(const struct kmm_obj *o, void *ud)
{
	struct op *op = ud;

	kmm_op_overlay_seen(op->nmc_overlay, kmm_obj_key(o), kmm_obj_resource_version(o), false);
	kmm_op_ctl_enqueue(op->nmc_ctl, kmm_obj_key(o));
	enqueue_nmc_modules(op, kmm_obj_json(o), NULL);
}

static void on_nmc_update(const struct kmm_obj *old, const struct kmm_obj *new, void *ud)
{
	struct op *op = ud;

	kmm_op_overlay_seen(op->nmc_overlay, kmm_obj_key(new), kmm_obj_resource_version(new),
			    false);
	kmm_op_ctl_enqueue(op->nmc_ctl, kmm_obj_key(new));
	enqueue_nmc_modules(op, kmm_obj_json(new), kmm_obj_json(old));
	enqueue_nmc_modules(op, kmm_obj_json(old), kmm_obj_json(new));
}

static void on_nmc_delete(const struct kmm_obj *o, void *ud)
{
	struct op *op = ud;

	kmm_op_overlay_seen(op->nmc_overlay, kmm_obj_key(o), NULL, true);
	kmm_op_nmc_digests_forget(op->nmc_digests, kmm_obj_key(o));
	kmm_op_ctl_enqueue(op->nmc_ctl, kmm_obj_key(o));
	enqueue_nmc_modules(op, kmm_obj_json(o), NULL);
}

/* Labels other than the ready labels kmm itself writes. */
static bool labels_differ(const json_t *a, const json_t *b)
{
	const json_t *la = json_object_get(json_object_get(a, "metadata"), "labels");
	const json_t *lb = json_object_get(json_object_get(b, "metadata"), "labels");
	const char *k;
	const json_t *v;

	for (int pass = 0; pass < 2; pass++) {
		json_object_foreach ((json_t *)(pass ? lb : la), k, v) {
			size_t n = strlen(k);

			if (strncmp(k, KMM_NODE_LABEL_PREFIX, strlen(KMM_NODE_LABEL_PREFIX)) == 0 &&
			    n > 6 && strcmp(k + n - 6, ".ready") == 0)
				continue;
			if (!kmm_json_same(v, json_object_get(pass ? la : lb, k)))
				return true;
		}
	}
	return false;
}

static bool node_field_differ(const json_t *a, const json_t *b, const char *top, const char *key)
{
	return !kmm_json_same(json_object_get(json_object_get(a, top), key),
			      json_object_get(json_object_get(b, top), key));
}

static void on_node(const struct kmm_obj *o, void *ud)
{
	struct op *op = ud;

	kmm_op_overlay_seen(op->node_overlay, kmm_obj_key(o), kmm_obj_resource_version(o), false);
	kmm_op_ctl_enqueue(op->nmc_ctl, kmm_obj_key(o));
	kmm_op_enqueue_all_modules(op);
}

static void on_node_update(const struct kmm_obj *old, const struct kmm_obj *new, void *ud)
{
	struct op *op = ud;
	/* DOMs of our own, freed on return: none stays attached to the cached nodes. */
	_cleanup_json_ json_t *a = kmm_obj_to_json(old), *b = kmm_obj_to_json(new);

	if (!a || !b) {
		/* Out of memory: enqueue everything rather than miss a change. */
		kmm_op_enqueue_all_modules(op);
		kmm_op_ctl_enqueue(op->nmc_ctl, kmm_obj_key(new));
		return;
	}
	bool targeting = labels_differ(a, b) || node_field_differ(a, b, "spec", "taints") ||
			 node_field_differ(a, b, "spec", "unschedulable") ||
			 !kmm_json_same(json_object_get(json_object_get(a, "status"), "nodeInfo"),
					json_object_get(json_object_get(b, "status"), "nodeInfo"));
	bool ready = kmm_op_node_ready(a) != kmm_op_node_ready(b);

	kmm_op_overlay_seen(op->node_overlay, kmm_obj_key(new), kmm_obj_resource_version(new),
			    false);
	if (targeting)
		kmm_op_enqueue_all_modules(op);
	if (targeting || ready ||
	    !kmm_json_same(json_object_get(json_object_get(a, "metadata"), "labels"),
			   json_object_get(json_object_get(b, "metadata"), "labels")))
		kmm_op_ctl_enqueue(op->nmc_ctl, kmm_obj_key(new));
}

/* What the Module's Ready condition reports of a worker pod: restarts and waiting reasons. */
static json_t *pod_trouble(const json_t *pod)
{
	const json_t *st = json_object_get(pod, "status");
	const json_t *cs = json_array_get(json_object_get(st, "containerStatuses"), 0);
	const json_t *ics = json_array_get(json_object_get(st, "initContainerStatuses"), 0);

	return json_pack("{s:O*, s:O*, s:O*}", "restarts", json_object_get(cs, "restartCount"),
			 "init", json_object_get(json_object_get(ics, "state"), "waiting"), "main",
			 json_object_get(json_object_get(cs, "state"), "waiting"));
}

static bool pod_finished(const struct kmm_obj *pod)
{
	const char *phase = kmm_obj_str(pod, "status.phase");

	return phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0);
}

static void on_pod_event(const struct kmm_obj *old, const struct kmm_obj *o, bool deleted, void *ud)
{
	struct op *op = ud;
	const json_t *j = kmm_obj_json(o);
	const char *node =
	    json_string_value(json_object_get(json_object_get(j, "spec"), "nodeName"));
	const char *mod = kmm_op_label(j, KMM_LABEL_MODULE_NAME);
	const char *ns = kmm_kube_meta_str(j, "namespace");
	_cleanup_json_ json_t *now = pod_trouble(j);
	_cleanup_json_ json_t *before = old ? pod_trouble(kmm_obj_json(old)) : json_object();
	const char *uid = kmm_kube_meta_str(j, "uid");
	const char *name = kmm_kube_meta_str(j, "name");
	char key[512];

	if (ns && name) {
		snprintf(key, sizeof(key), "%s/%s", ns, name);
		kmm_op_keyset_remove(op->pods_created, key); /* the cache has it now */
	}
	if (deleted && uid)
		kmm_op_keyset_remove(op->pods_released, uid);
	/*
	 * A finished or vanished worker pod goes ahead of nodes whose pods are
	 * yet to be created: its result is recorded and the pod released while
	 * a rollout keeps starting new ones. In plain order, at 1,000 nodes x
	 * 10 Modules, ~6,000 finished pods waited in the cache at once.
	 */
	if (node && (deleted || pod_finished(o)))
		kmm_op_ctl_enqueue_first(op->nmc_ctl, node);
	else if (node)
		kmm_op_ctl_enqueue(op->nmc_ctl, node);
	/*
	 * The Module only reports on troubled pods: tell it when that changes,
	 * batched like NMC progress (every worker pod's start changes its
	 * waiting reason; 10,000 starts must not mean 10,000 Module reconciles).
	 */
	if (mod && ns && now && before &&
	    (deleted ? json_object_size(now) > 0 : !json_equal(now, before))) {
		snprintf(key, sizeof(key), "%s/%s", ns, mod);
		kmm_op_ctl_enqueue_coalesced(op->module_ctl, key, MODULE_STATUS_BATCH_MS);
	}
}

static void on_pod(const struct kmm_obj *o, void *ud)
{
	on_pod_event(NULL, o, false, ud);
}

static void on_pod_update(const struct kmm_obj *old, const struct kmm_obj *new, void *ud)
{
	on_pod_event(old, new, false, ud);
}

static void on_pod_delete(const struct kmm_obj *o, void *ud)
{
	on_pod_event(NULL, o, true, ud);
}

/* ---- build and sign: MICs, MBSCs, their pods, signing Secrets ---- */

static bool status_differs(const struct kmm_obj *a, const struct kmm_obj *b)
{
	return !kmm_json_same(json_object_get(kmm_obj_json(a), "status"),
			      json_object_get(kmm_obj_json(b), "status"));
}

static void on_mic(const struct kmm_obj *o, void *ud)
{
	struct op *op = ud;

	kmm_op_ctl_enqueue(op->mic_ctl, kmm_obj_key(o));
	kmm_op_ctl_enqueue(op->module_ctl, kmm_obj_key(o)); /* same name as its Module */
}

static void on_mic_update(const struct kmm_obj *old, const struct kmm_obj *new, void *ud)
{
	struct op *op = ud;

	kmm_op_ctl_enqueue(op->mic_ctl, kmm_obj_key(new));
	if (status_differs(old, new))
		kmm_op_ctl_enqueue(op->module_ctl, kmm_obj_key(new));
}

static void on_mbsc(const struct kmm_obj *o, void *ud)
{
	struct op *op = ud;

	kmm_op_ctl_enqueue(op->mbsc_ctl, kmm_obj_key(o));
	kmm_op_ctl_enqueue(op->mic_ctl, kmm_obj_key(o)); /* same name as its MIC */
}

static void on_mbsc_update(const struct kmm_obj *old, const struct kmm_obj *new, void *ud)
{
	struct op *op = ud;

	kmm_op_ctl_enqueue(op->mbsc_ctl, kmm_obj_key(new));
	if (status_differs(old, new))
		kmm_op_ctl_enqueue(op->mic_ctl, kmm_obj_key(new));
}

static void bspod_event(const struct kmm_obj *o, bool deleted, void *ud)
{
	struct op *op = ud;
	const char *ns = kmm_obj_str(o, "metadata.namespace");
	const char *owner = kmm_obj_label(o, KMM_LABEL_MODULE_NAME);
	char key[512];

	if (!ns || !owner)
		return;
	snprintf(key, sizeof(key), "%s/%s", ns, kmm_obj_str(o, "metadata.name") ?: "");
	kmm_op_keyset_remove(op->bspods_created, key); /* the cache has it now */
	snprintf(key, sizeof(key), "%s/%s", ns, owner);
	kmm_op_ctl_enqueue(op->mbsc_ctl, key);
	/* The Module's Ready message tells why a build or sign pod does not start. */
	if (!deleted)
		kmm_op_ctl_enqueue_coalesced(op->module_ctl, key, 1000);
}

static void on_bspod(const struct kmm_obj *o, void *ud)
{
	bspod_event(o, false, ud);
}

static void on_bspod_update(const struct kmm_obj *old, const struct kmm_obj *new, void *ud)
{
	bspod_event(new, false, ud);
}

static void on_bspod_delete(const struct kmm_obj *o, void *ud)
{
	bspod_event(o, true, ud);
}

/* A pull pod changed: its MIC (named by the image-owner label) reads it. */
static void on_pullpod(const struct kmm_obj *o, void *ud)
{
	struct op *op = ud;
	const char *owner = kmm_obj_label(o, KMM_LABEL_IMAGE_OWNER);
	char key[512];

	if (!owner)
		return;
	snprintf(key, sizeof(key), "%s/%s", kmm_obj_str(o, "metadata.namespace") ?: "", owner);
	kmm_op_ctl_enqueue(op->mic_ctl, key);
}

static void on_pullpod_update(const struct kmm_obj *old, const struct kmm_obj *new, void *ud)
{
	on_pullpod(new, ud);
}

static void on_pullpod_delete(const struct kmm_obj *o, void *ud)
{
	struct op *op = ud;

	kmm_op_keyset_remove(op->pullpods_done, kmm_obj_str(o, "metadata.uid") ?: "");
	on_pullpod(o, ud);
}

static int informer(struct op *op, const struct kmm_kube_resource *res, const char *selector,
		    const char *const *projection, const struct kmm_informer_handlers *h,
		    struct kmm_informer **ret, struct kmm_error **err)
{
	struct kmm_informer_options o = {
		.res = res,
		.label_selector = selector,
		.projection = projection,
		/* Small LIST pages: a page is parsed whole before projection, and the
		 * peak of that parse is what RSS keeps. */
		.page_size = 100,
	};
	int r;

	r = kmm_informer_new(op->kube, &o, ret, err);
	if (r < 0)
		return kmm_error_wrap(err, "informer %s", res->resource);
	if (h && kmm_informer_add_handlers(*ret, h) < 0)
		return kmm_error_make(err, ENOMEM, "informer %s: handlers", res->resource);
	return 0;
}

static int make_informers(struct op *op, struct kmm_error **err)
{
	struct kmm_informer_handlers mh = { on_module, on_module_update, on_module, op };
	struct kmm_informer_handlers nh = { on_nmc, on_nmc_update, on_nmc_delete, op };
	struct kmm_informer_handlers nodeh = { on_node, on_node_update, on_node, op };
	struct kmm_informer_handlers ph = { on_pod, on_pod_update, on_pod_delete, op };
	struct kmm_informer_handlers mich = { on_mic, on_mic_update, on_mic, op };
	struct kmm_informer_handlers mbh = { on_mbsc, on_mbsc_update, on_mbsc, op };
	struct kmm_informer_handlers bph = { on_bspod, on_bspod_update, on_bspod_delete, op };
	struct kmm_informer_handlers pph = { on_pullpod, on_pullpod_update, on_pullpod_delete, op };
	int r;

	r = informer(op, &kmm_op_modules, NULL, NULL, &mh, &op->modules, err);
	if (r >= 0)
		r = informer(op, &kmm_op_nmcs, NULL, NULL, &nh, &op->nmcs, err);
	if (r >= 0)
		r = informer(op, &kmm_kube_nodes, NULL, node_projection, &nodeh, &op->nodes, err);
	if (r >= 0)
		r = informer(op, &kmm_kube_pods, KMM_LABEL_WORKER_ACTION, pod_projection, &ph,
			     &op->pods, err);
	if (r >= 0)
		r = informer(op, &kmm_kube_namespaces, NULL, ns_projection, NULL, &op->namespaces,
			     err);
	if (r >= 0)
		r = informer(op, &kmm_op_mics, NULL, NULL, &mich, &op->mics, err);
	if (r >= 0)
		r = informer(op, &kmm_op_mbscs, NULL, NULL, &mbh, &op->mbscs, err);
	if (r >= 0)
		r = informer(op, &kmm_kube_pods, KMM_LABEL_RESOURCE_TYPE, bspod_projection, &bph,
			     &op->bspods, err);
	/*
	 * No Secret or ConfigMap informer: listing or watching them would
	 * transfer every one in the cluster, data included (a metadata-only
	 * watch still needs RBAC list/watch, which reads data too). The few
	 * referenced are read by name; mbsc.c re-reads them periodically.
	 */
	/* Pull pods only exist when asked for: no extra watch otherwise. */
	if (r >= 0 && op->cfg.image_check == KMM_IMAGE_CHECK_PULL_POD)
		r = informer(op, &kmm_kube_pods, KMM_LABEL_PULL_POD_TYPE, pullpod_projection, &pph,
			     &op->pullpods, err);
	if (r >= 0 &&
	    (kmm_informer_add_path_index(op->pods, "node", "spec.nodeName") < 0 ||
	     kmm_informer_add_index(op->pods, "trouble", kmm_op_pod_trouble_index, NULL) < 0))
		r = kmm_error_make(err, ENOMEM, "pod index");
	return r;
}

static int start_informers(struct op *op, struct kmm_error **err)
{
	struct kmm_informer *all[] = { op->namespaces, op->nodes,   op->nmcs,
				       op->pods,       op->bspods,  op->mbscs,
				       op->mics,       op->modules, op->pullpods };

	for (size_t i = 0; i < KMM_ARRAY_SIZE(all); i++) {
		int r = all[i] ? kmm_informer_start(all[i], err) : 0;

		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < KMM_ARRAY_SIZE(all); i++)
		if (all[i] && kmm_informer_wait_synced(all[i], 120000) < 0)
			return kmm_error_make(err, ETIMEDOUT, "caches did not sync within 120 s");
	return 0;
}

static void log_error(const char *ctl, const char *key, const struct kmm_error *e)
{
	kmm_log(KMM_LOG_ERROR, "reconcile failed", "controller", ctl, "key", key, "error",
		kmm_error_message(e), NULL);
}

static int64_t module_reconcile(const char *key, void *ud, struct kmm_error **err)
{
	int64_t r = kmm_op_module_reconcile(key, ud, err);

	if (r < 0)
		log_error("module", key, err ? *err : NULL);
	return r;
}

static int64_t nmc_reconcile(const char *key, void *ud, struct kmm_error **err)
{
	int64_t r = kmm_op_nmc_reconcile(key, ud, err);

	if (r < 0)
		log_error("nmc", key, err ? *err : NULL);
	return r;
}

static int64_t mic_reconcile(const char *key, void *ud, struct kmm_error **err)
{
	int64_t r = kmm_op_mic_reconcile(key, ud, err);

	if (r < 0)
		log_error("mic", key, err ? *err : NULL);
	return r;
}

static int64_t mbsc_reconcile(const char *key, void *ud, struct kmm_error **err)
{
	int64_t r = kmm_op_mbsc_reconcile(key, ud, err);

	if (r < 0)
		log_error("mbsc", key, err ? *err : NULL);
	return r;
}

/* ---- main ---- */

static atomic_bool leading, shutting_down;

static void op_done(struct op *op)
{
	struct kmm_informer *all[] = { op->modules, op->nmcs,	    op->nodes,
				       op->pods,    op->namespaces, op->mics,
				       op->mbscs,   op->bspods,	    op->pullpods };
	struct kmm_op_ctl *ctls[] = { op->module_ctl, op->nmc_ctl, op->mic_ctl, op->mbsc_ctl };

	atomic_store(&shutting_down, true);
	for (size_t i = 0; i < KMM_ARRAY_SIZE(ctls); i++)
		kmm_op_ctl_stop(ctls[i]);
	kmm_leader_stop(op->leader);
	/* Handlers of one informer read the others: stop every thread before freeing. */
	for (size_t i = 0; i < KMM_ARRAY_SIZE(all); i++)
		if (all[i])
			kmm_informer_stop(all[i]);
	for (size_t i = 0; i < KMM_ARRAY_SIZE(ctls); i++)
		kmm_op_ctl_stop(ctls[i]);
	kmm_op_mic_checks_stop(op); /* its callbacks requeue MICs */
	for (size_t i = 0; i < KMM_ARRAY_SIZE(all); i++)
		kmm_informer_free(all[i]);
	for (size_t i = 0; i < KMM_ARRAY_SIZE(ctls); i++)
		kmm_op_ctl_free(ctls[i]);
	kmm_op_overlay_free(op->nmc_overlay);
	kmm_op_nmc_digests_free(op->nmc_digests);
	kmm_op_overlay_free(op->node_overlay);
	kmm_op_keyset_free(op->pods_created);
	kmm_op_keyset_free(op->pods_released);
	kmm_op_keyset_free(op->bspods_created);
	kmm_op_keyset_free(op->mbscs_deleted);
	kmm_op_keyset_free(op->pullpods_done);
	kmm_mapper_cache_free(op->mappers);
	kmm_hashmap_free(op->images);
	kmm_kube_client_free(op->kube);
	kmm_metrics_free(op->metrics);
	kmm_operator_config_free(&op->cfg);
}

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

static int start_leader(struct op *op, struct kmm_leader **ret, struct kmm_error **err)
{
	char host[128] = "kmm", identity[192];
	unsigned char rnd[4] = { 0 };
	struct kmm_leader_options lo = {
		.namespace = op->cfg.operator_namespace,
		.name = op->cfg.leader_election_resource_id,
		.identity = identity,
		.on_started_leading = started_leading,
		.on_stopped_leading = stopped_leading,
		.userdata = op,
	};

	gethostname(host, sizeof(host) - 1);
	if (getrandom(rnd, sizeof(rnd), 0) < 0)
		memset(rnd, 0, sizeof(rnd));
	snprintf(identity, sizeof(identity), "%s_%02x%02x%02x%02x", host, rnd[0], rnd[1], rnd[2],
		 rnd[3]);
	kmm_log(KMM_LOG_INFO, "waiting for leadership", "lease",
		op->cfg.leader_election_resource_id, "identity", identity, NULL);
	return kmm_leader_start(op->kube, &lo, ret, err);
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

static int run(struct op *op, const struct args *a, sigset_t *sigs)
{
	_cleanup_(kmm_httpd_freep) struct kmm_httpd *health = NULL, *metrics = NULL;
	_cleanup_kube_config_ struct kmm_kube_config *kc = NULL;
	struct kmm_kube_client_options ko;
	struct kmm_error *e = NULL;
	const char *t;
	int sig = 0;

	if (kmm_operator_config_init(&op->cfg) < 0)
		return fail("out of memory", NULL);
	if (kmm_operator_config_from_env(&op->cfg, secure_getenv, &e) < 0)
		return fail("bad environment", e);
	if (a->config_file && load_config_file(op, a->config_file, &e) < 0)
		return fail("bad configuration", e);
	op->metrics = kmm_metrics_new();
	op->nmc_overlay = kmm_op_overlay_new();
	op->nmc_digests = kmm_op_nmc_digests_new();
	op->node_overlay = kmm_op_overlay_new();
	op->pods_created = kmm_op_keyset_new();
	op->pods_released = kmm_op_keyset_new();
	op->bspods_created = kmm_op_keyset_new();
	op->mbscs_deleted = kmm_op_keyset_new();
	op->pullpods_done = kmm_op_keyset_new();
	for (size_t i = 0; i < KMM_ARRAY_SIZE(op->nmc_create_locks); i++)
		pthread_mutex_init(&op->nmc_create_locks[i], NULL);
	op->mappers = kmm_mapper_cache_new();
	op->images = kmm_hashmap_new(free);
	pthread_mutex_init(&op->images_lock, NULL);
	t = secure_getenv("KMM_UNLOAD_IMAGE_PULL_TIMEOUT_SECONDS");
	op->unload_pull_timeout_s = t ? strtoll(t, NULL, 10) : 300;
	if (!op->metrics || !op->nmc_overlay || !op->nmc_digests || !op->node_overlay ||
	    !op->pods_created || !op->pods_released || !op->bspods_created || !op->mbscs_deleted ||
	    !op->pullpods_done || !op->mappers || !op->images)
		return fail("out of memory", NULL);
	if (kmm_kube_config_load_default(a->kubeconfig, NULL, &kc, &e) < 0)
		return fail("cannot load the Kubernetes client configuration", e);
	kmm_kube_client_options_init(&ko);
	ko.qps = a->qps;
	ko.burst = a->burst;
	if (kmm_kube_client_new(kc, &ko, &op->kube, &e) < 0 ||
	    kmm_op_api_init(&op->api, op->kube, op->metrics, &e) < 0)
		return fail("cannot create the Kubernetes client", e);
	if (a->config_map && !a->config_file && load_config_map(op, a->config_map, &e) < 0)
		return fail("bad configuration", e);
	if (check_registry_ca(&op->cfg, &e) < 0)
		return fail("bad configuration", e);
	if (register_metrics(op, &e) < 0 ||
	    kmm_op_ctl_new("module", op->metrics, &op->module_ctl, &e) < 0 ||
	    kmm_op_ctl_new("nodemodulesconfig", op->metrics, &op->nmc_ctl, &e) < 0 ||
	    kmm_op_ctl_new("moduleimagesconfig", op->metrics, &op->mic_ctl, &e) < 0 ||
	    kmm_op_ctl_new("modulebuildsignconfig", op->metrics, &op->mbsc_ctl, &e) < 0)
		return fail("cannot set up metrics", e);
	if (start_http(op, a->metrics_cert_dir, &health, &metrics, &e) < 0)
		return fail("cannot serve probes and metrics", e);

	if (op->cfg.leader_election_enabled) {
		if (start_leader(op, &op->leader, &e) < 0)
			return fail("cannot set up leader election", e);
		if (wait_leading(sigs, &sig)) {
			kmm_log(KMM_LOG_INFO, "stopping before becoming leader", NULL);
			return KMM_EXIT_OK; /* op_done() stops the election */
		}
		kmm_log(KMM_LOG_INFO, "became leader", "lease", op->cfg.leader_election_resource_id,
			NULL);
	}

	if (make_informers(op, &e) < 0)
		return fail("cannot set up caches", e);
	/*
	 * Every cache must be complete before the first reconcile: a Module
	 * finalized against a half-listed NMC cache would look unloaded
	 * everywhere. Events queue up meanwhile.
	 */
	if (start_informers(op, &e) < 0)
		return fail("cannot start caches", e);
	if (kmm_op_ctl_start(op->nmc_ctl, a->workers, nmc_reconcile, op, &e) < 0 ||
	    kmm_op_ctl_start(op->mbsc_ctl, a->workers, mbsc_reconcile, op, &e) < 0 ||
	    kmm_op_ctl_start(op->mic_ctl, a->workers, mic_reconcile, op, &e) < 0 ||
	    kmm_op_ctl_start(op->module_ctl, a->workers, module_reconcile, op, &e) < 0)
		return fail("cannot start controllers", e);
	malloc_trim(0); /* give back what the initial LISTs needed only briefly */
	kmm_log(KMM_LOG_INFO, "caches synced, controllers running", "namespace",
		op->cfg.operator_namespace, NULL);

	for (;;) {
		const struct timespec every = { .tv_sec = HEAP_TRIM_EVERY_S };

		sig = sigtimedwait(sigs, NULL, &every);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		trim_heap();
	}
	kmm_log(KMM_LOG_INFO, "shutting down", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT",
		NULL);
	kmm_op_ctl_stop(op->module_ctl);
	kmm_op_ctl_stop(op->nmc_ctl);
	kmm_op_ctl_stop(op->mic_ctl);
	kmm_op_ctl_stop(op->mbsc_ctl);
	return KMM_EXIT_OK; /* op_done() releases the Lease: a standby takes over at once */
}

int main(int argc, char **argv)
{
	struct args a = {};
	struct op op = {};
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

	r = run(&op, &a, &sigs);
	op_done(&op);
	if (r == KMM_EXIT_OK)
		kmm_log(KMM_LOG_INFO, "stopped", NULL);
	return r;
}
