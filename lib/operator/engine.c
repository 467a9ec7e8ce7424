/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine (kmm/operator.h): the cache table, the reconciler table, and
 * the wiring between them. Each cache's informer events run the engine's
 * dispatcher, which records the event in the cache's overlay, then runs
 * every watch of every reconciler on that cache (change filter, then
 * enqueue). Each reconciler gets a controller (kmm_op_ctl) whose workers
 * run its reconcile function.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "deviceplugin.h"
#include "dra.h"
#include "engine-internal.h"

const struct kmm_op_reconciler *const kmm_op_reconcilers[KMM_OP_RECONCILER_COUNT] = {
	[KMM_OP_MODULE] = &kmm_op_module_reconciler,
	[KMM_OP_NMC] = &kmm_op_nmc_reconciler,
	[KMM_OP_MIC] = &kmm_op_mic_reconciler,
	[KMM_OP_MBSC] = &kmm_op_mbsc_reconciler,
	[KMM_OP_DEVICE_PLUGIN] = &kmm_op_device_plugin_reconciler,
	[KMM_OP_PREFLIGHT] = &kmm_op_preflight_reconciler,
	[KMM_OP_VERSION] = &kmm_op_version_reconciler,
	[KMM_OP_DRA] = &kmm_op_dra_reconciler,
	[KMM_OP_CLUSTERCLAIM] = &kmm_op_clusterclaim_reconciler,
	[KMM_OP_HUB] = &kmm_op_hub_reconciler,
};

#define ALL_MODES (KMM_OP_MODE_STANDALONE | KMM_OP_MODE_SPOKE | KMM_OP_MODE_HUB)

/* ---- the caches ---- */

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

/* What the hub reads of an OCM ManagedCluster: its labels and its ClusterClaims. */
static const char *const managedcluster_projection[] = {
	"metadata.labels",
	"status.clusterClaims",
	NULL,
};

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

/* What the device plugin and DRA reconcilers read of their DaemonSets and pods. */
static const char *const dp_ds_projection[] = {
	"metadata.labels",
	"metadata.annotations",
	"metadata.deletionTimestamp",
	"status.desiredNumberScheduled",
	"status.numberAvailable",
	NULL,
};

static const char *const dp_pod_projection[] = {
	"metadata.labels", "metadata.deletionTimestamp", "spec.nodeName", "status.conditions", NULL,
};

static int worker_pod_indexes(struct kmm_informer *inf)
{
	if (kmm_informer_add_path_index(inf, "node", "spec.nodeName") < 0 ||
	    kmm_informer_add_index(inf, "trouble", kmm_op_pod_trouble_index, NULL) < 0)
		return -ENOMEM;
	return 0;
}

/* The hub finds an MCM's MICs and ManifestWorks by its label. */
static int mcm_label_index(struct kmm_informer *inf)
{
	return kmm_informer_add_label_index(inf, "mcm", KMM_LABEL_MCM_NAME) < 0 ? -ENOMEM : 0;
}

/* Pull pods only exist when asked for: no extra watch otherwise. */
static bool pull_pods_needed(const struct kmm_op_engine *eng)
{
	return eng->cfg.image_check == KMM_IMAGE_CHECK_PULL_POD;
}

struct cache_spec {
	const char *name; /* in the kmm_informer_* metrics */
	const struct kmm_kube_resource *res;
	const char *label_selector;
	const char *const *projection; /* NULL: whole objects */
	bool overlay;
	bool (*needed)(const struct kmm_op_engine *eng); /* NULL: always */
	int (*add_indexes)(struct kmm_informer *inf);
	unsigned modes; /* enum kmm_op_mode bits it is made in; 0: standalone and spoke */
};

/*
 * No Secret or ConfigMap cache: listing or watching them would transfer
 * every one in the cluster, data included (a metadata-only watch still
 * needs RBAC list/watch, which reads data too). The few referenced are read
 * by name; mbsc.c re-reads them periodically.
 */
static const struct cache_spec cache_specs[KMM_OP_CACHE_COUNT] = {
	[KMM_OP_CACHE_NAMESPACES] = { .name = "namespaces",
				      .res = &kmm_kube_namespaces,
				      .projection = ns_projection },
	[KMM_OP_CACHE_NODES] = { .name = "nodes",
				 .res = &kmm_kube_nodes,
				 .projection = node_projection,
				 .overlay = true },
	[KMM_OP_CACHE_NMCS] = { .name = "nodemodulesconfigs",
				.res = &kmm_op_nmcs,
				.overlay = true },
	[KMM_OP_CACHE_PODS] = { .name = "pods",
				.res = &kmm_kube_pods,
				.label_selector = KMM_LABEL_WORKER_ACTION,
				.projection = pod_projection,
				.add_indexes = worker_pod_indexes },
	[KMM_OP_CACHE_BSPODS] = { .name = "buildsignpods",
				  .res = &kmm_kube_pods,
				  .label_selector = KMM_LABEL_RESOURCE_TYPE,
				  .projection = bspod_projection,
				  .modes = ALL_MODES },
	[KMM_OP_CACHE_MBSCS] = { .name = "modulebuildsignconfigs",
				 .res = &kmm_op_mbscs,
				 .modes = ALL_MODES },
	[KMM_OP_CACHE_MICS] = { .name = "moduleimagesconfigs",
				.res = &kmm_op_mics,
				.add_indexes = mcm_label_index,
				.modes = ALL_MODES },
	[KMM_OP_CACHE_MODULES] = { .name = "modules", .res = &kmm_op_modules },
	/* A spoke runs no preflight. */
	[KMM_OP_CACHE_PFVS] = { .name = "preflightvalidations",
				.res = &kmm_op_pfvs,
				.modes = KMM_OP_MODE_STANDALONE },
	[KMM_OP_CACHE_DAEMONSETS] = { .name = "daemonsets",
				      .res = &kmm_kube_daemonsets,
				      .label_selector = KMM_DP_SELECTOR,
				      .projection = dp_ds_projection },
	[KMM_OP_CACHE_DPPODS] = { .name = "devicepluginpods",
				  .res = &kmm_kube_pods,
				  .label_selector = KMM_DP_SELECTOR,
				  .projection = dp_pod_projection },
	[KMM_OP_CACHE_DRA_DAEMONSETS] = { .name = "dradaemonsets",
					  .res = &kmm_kube_daemonsets,
					  .label_selector = KMM_DRA_SELECTOR,
					  .projection = dp_ds_projection,
					  .needed = kmm_op_dra_served },
	[KMM_OP_CACHE_DRAPODS] = { .name = "drapods",
				   .res = &kmm_kube_pods,
				   .label_selector = KMM_DRA_SELECTOR,
				   .projection = dp_pod_projection,
				   .needed = kmm_op_dra_served },
	[KMM_OP_CACHE_DEVICECLASSES] = { .name = "deviceclasses",
					 .res = &kmm_op_deviceclasses,
					 .label_selector = KMM_LABEL_MODULE_NAME,
					 .needed = kmm_op_dra_served },
	[KMM_OP_CACHE_PULLPODS] = { .name = "pullpods",
				    .res = &kmm_kube_pods,
				    .label_selector = KMM_LABEL_PULL_POD_TYPE,
				    .projection = pullpod_projection,
				    .needed = pull_pods_needed,
				    .modes = ALL_MODES },
	[KMM_OP_CACHE_MCMS] = { .name = "managedclustermodules",
				.res = &kmm_op_mcms,
				.modes = KMM_OP_MODE_HUB },
	[KMM_OP_CACHE_MANAGEDCLUSTERS] = { .name = "managedclusters",
					   .res = &kmm_op_managedclusters,
					   .projection = managedcluster_projection,
					   .modes = KMM_OP_MODE_HUB },
	[KMM_OP_CACHE_MANIFESTWORKS] = { .name = "manifestworks",
					 .res = &kmm_op_manifestworks,
					 .label_selector = KMM_LABEL_MCM_NAME,
					 .add_indexes = mcm_label_index,
					 .modes = KMM_OP_MODE_HUB },
};

/* ---- dispatch: informer events to watches ---- */

struct cache_binding {
	struct kmm_op_engine *eng;
	enum kmm_op_cache_id id;
};

struct reconciler_binding {
	struct kmm_op_engine *eng;
	enum kmm_op_reconciler_id id;
};

struct kmm_op_engine_private {
	struct kmm_op_engine pub;
	struct cache_binding caches[KMM_OP_CACHE_COUNT];
	struct reconciler_binding reconcilers[KMM_OP_RECONCILER_COUNT];
};

static void dispatch(struct cache_binding *b, const struct kmm_obj *old, const struct kmm_obj *obj,
		     enum kmm_op_event ev)
{
	struct kmm_op_engine *eng = b->eng;

	if (eng->overlay[b->id])
		kmm_op_overlay_seen(eng->overlay[b->id], kmm_obj_key(obj),
				    ev == KMM_OP_DELETED ? NULL : kmm_obj_resource_version(obj),
				    ev == KMM_OP_DELETED);
	for (size_t i = 0; i < KMM_OP_RECONCILER_COUNT; i++) {
		const struct kmm_op_reconciler *r = kmm_op_reconcilers[i];

		if (!eng->ctl[i])
			continue; /* not in this mode */
		for (size_t w = 0; w < r->n_watches; w++) {
			const struct kmm_op_watch *watch = &r->watches[w];

			if (watch->cache != b->id)
				continue;
			if (ev == KMM_OP_MODIFIED && watch->changed &&
			    !watch->changed(eng, eng->state[i], old, obj))
				continue;
			watch->enqueue(eng, eng->state[i], old, obj, ev);
		}
	}
}

static void on_add(const struct kmm_obj *obj, void *userdata)
{
	dispatch(userdata, NULL, obj, KMM_OP_ADDED);
}

static void on_update(const struct kmm_obj *old, const struct kmm_obj *obj, void *userdata)
{
	dispatch(userdata, old, obj, KMM_OP_MODIFIED);
}

static void on_delete(const struct kmm_obj *obj, void *userdata)
{
	dispatch(userdata, NULL, obj, KMM_OP_DELETED);
}

static int make_cache(struct kmm_op_engine_private *p, enum kmm_op_cache_id id,
		      struct kmm_error **err)
{
	const struct cache_spec *spec = &cache_specs[id];
	struct kmm_op_engine *eng = &p->pub;
	struct kmm_informer_options o = {
		.res = spec->res,
		.label_selector = spec->label_selector,
		.projection = spec->projection,
		/* Small LIST pages: a page is parsed whole before projection, and the
		 * peak of that parse is what RSS keeps. */
		.page_size = 100,
	};
	struct kmm_informer_handlers h = { on_add, on_update, on_delete, &p->caches[id] };
	int r;

	p->caches[id] = (struct cache_binding){ eng, id };
	if (!kmm_op_in_mode(eng, spec->modes) || (spec->needed && !spec->needed(eng)))
		return 0;
	r = kmm_informer_new(eng->kube, &o, &eng->cache[id], err);
	if (r < 0)
		return kmm_error_wrap(err, "informer %s", spec->res->resource);
	if (kmm_informer_add_handlers(eng->cache[id], &h) < 0 ||
	    (spec->add_indexes && spec->add_indexes(eng->cache[id]) < 0))
		return kmm_error_make(err, ENOMEM, "informer %s: handlers", spec->res->resource);
	if (spec->overlay && !(eng->overlay[id] = kmm_op_overlay_new()))
		return kmm_error_make(err, ENOMEM, "out of memory");
	return 0;
}

/* ---- metrics ---- */

static void collect_informers(struct kmm_metrics *m, void *userdata)
{
	struct kmm_op_engine *eng = userdata;
	struct kmm_metric *lists = kmm_metrics_find(m, "kmm_informer_lists_total");
	struct kmm_metric *watches = kmm_metrics_find(m, "kmm_informer_watches_total");
	struct kmm_metric *objs = kmm_metrics_find(m, "kmm_informer_objects");
	struct kmm_metric *bytes = kmm_metrics_find(m, "kmm_informer_bytes");

	for (size_t i = 0; i < KMM_OP_CACHE_COUNT; i++) {
		struct kmm_informer_stats s;
		const char *lv[] = { cache_specs[i].name };

		if (!eng->cache[i])
			continue;
		kmm_informer_stats(eng->cache[i], &s);
		kmm_metric_set(lists, lv, (double)s.lists);
		kmm_metric_set(watches, lv, (double)s.watches);
		kmm_metric_set(objs, lv, (double)kmm_informer_size(eng->cache[i]));
		kmm_metric_set(bytes, lv, (double)kmm_informer_bytes(eng->cache[i]));
	}
}

static int register_cache_metrics(struct kmm_op_engine *eng, struct kmm_error **err)
{
	static const char *const res[] = { "resource", NULL };
	static const struct {
		enum kmm_metric_type type;
		const char *name, *help;
	} metrics[] = {
		{ KMM_METRIC_COUNTER, "kmm_informer_lists_total",
		  "LISTs done by each informer (initial and relists)" },
		{ KMM_METRIC_COUNTER, "kmm_informer_watches_total",
		  "Watch streams opened by each informer" },
		{ KMM_METRIC_GAUGE, "kmm_informer_objects",
		  "Objects held by each informer's cache" },
		{ KMM_METRIC_GAUGE, "kmm_informer_bytes",
		  "Bytes of the compact objects each informer's cache holds" },
	};
	struct kmm_metric *unused;

	for (size_t i = 0; i < KMM_ARRAY_SIZE(metrics); i++) {
		int r = kmm_metrics_register(eng->metrics, metrics[i].type, metrics[i].name,
					     metrics[i].help, res, NULL, 0, &unused, err);

		if (r < 0)
			return r;
	}
	return kmm_metrics_add_collector(eng->metrics, collect_informers, eng);
}

/* ---- reconciles ---- */

void kmm_op_log(struct kmm_op_engine *eng, enum kmm_log_level level, const char *msg, ...)
{
	va_list ap;

	if (!eng->log)
		return;
	va_start(ap, msg);
	eng->log(level, msg, ap);
	va_end(ap);
}

static int64_t run_reconcile(const char *key, void *userdata, struct kmm_error **err)
{
	struct reconciler_binding *b = userdata;
	const struct kmm_op_reconciler *r = kmm_op_reconcilers[b->id];
	int64_t ret = r->reconcile(b->eng, b->eng->state[b->id], key, err);

	if (ret < 0)
		kmm_op_log(b->eng, KMM_LOG_ERROR, "reconcile failed", "controller", r->log_name,
			   "key", key, "error", kmm_error_message(err ? *err : NULL), NULL);
	return ret;
}

int64_t kmm_op_engine_reconcile(struct kmm_op_engine *eng, enum kmm_op_reconciler_id id,
				const char *key, struct kmm_error **err)
{
	struct kmm_op_engine_private *p = (struct kmm_op_engine_private *)eng;

	if ((unsigned)id >= KMM_OP_RECONCILER_COUNT)
		return kmm_error_make(err, EINVAL, "no reconciler %d", (int)id);
	if (!eng->ctl[id])
		return kmm_error_make(err, EINVAL, "reconciler %s does not run in this mode",
				      kmm_op_reconcilers[id]->name);
	return run_reconcile(key, &p->reconcilers[id], err);
}

/* ---- lifecycle ---- */

int kmm_op_engine_new(const struct kmm_op_engine_options *o, struct kmm_op_engine **ret,
		      struct kmm_error **err)
{
	struct kmm_op_engine_private *p = calloc(1, sizeof(*p));
	struct kmm_op_engine *eng;
	int r;

	if (!p) {
		kmm_operator_config_free(o->cfg);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	eng = &p->pub;
	eng->cfg = *o->cfg; /* moved: the caller's copy is not freed again */
	memset(o->cfg, 0, sizeof(*o->cfg));
	eng->kube = o->kube;
	eng->metrics = o->metrics;
	eng->workers = o->workers > 0 ? o->workers : 1;
	eng->unload_pull_timeout_s = o->unload_pull_timeout_s > 0 ? o->unload_pull_timeout_s : 300;
	eng->log = o->log;
	eng->mappers = kmm_mapper_cache_new();
	if (!eng->mappers) {
		r = kmm_error_make(err, ENOMEM, "out of memory");
		goto fail;
	}
	r = kmm_op_api_init(&eng->api, eng->kube, eng->metrics, err);
	if (r < 0)
		goto fail;
	r = kmm_metrics_register_process(eng->metrics, err);
	for (size_t i = 0; r >= 0 && i < KMM_OP_RECONCILER_COUNT; i++) {
		p->reconcilers[i] =
		    (struct reconciler_binding){ eng, (enum kmm_op_reconciler_id)i };
		if (!kmm_op_in_mode(eng, kmm_op_reconcilers[i]->modes))
			continue;
		if (kmm_op_reconcilers[i]->state_new)
			r = kmm_op_reconcilers[i]->state_new(eng, &eng->state[i], err);
	}
	if (r >= 0)
		r = register_cache_metrics(eng, err);
	for (size_t i = 0; r >= 0 && i < KMM_OP_RECONCILER_COUNT; i++)
		if (kmm_op_in_mode(eng, kmm_op_reconcilers[i]->modes))
			r = kmm_op_ctl_new(kmm_op_reconcilers[i]->name, eng->metrics, &eng->ctl[i],
					   err);
	for (size_t i = 0; r >= 0 && i < KMM_OP_CACHE_COUNT; i++)
		r = make_cache(p, (enum kmm_op_cache_id)i, err);
	if (r < 0)
		goto fail;
	*ret = eng;
	return 0;
fail:
	kmm_op_engine_free(eng);
	return r;
}

int kmm_op_engine_sync(struct kmm_op_engine *eng, int64_t timeout_ms, struct kmm_error **err)
{
	for (size_t i = 0; i < KMM_OP_CACHE_COUNT; i++) {
		int r = eng->cache[i] ? kmm_informer_start(eng->cache[i], err) : 0;

		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < KMM_OP_CACHE_COUNT; i++)
		if (eng->cache[i] && kmm_informer_wait_synced(eng->cache[i], timeout_ms) < 0)
			return kmm_error_make(err, ETIMEDOUT, "caches did not sync within %lld ms",
					      (long long)timeout_ms);
	return 0;
}

const struct kmm_operator_config *kmm_op_engine_config(const struct kmm_op_engine *eng)
{
	return &eng->cfg;
}

bool kmm_op_engine_synced(struct kmm_op_engine *eng)
{
	for (size_t i = 0; i < KMM_OP_CACHE_COUNT; i++)
		if (eng->cache[i] && !kmm_informer_has_synced(eng->cache[i]))
			return false;
	return true;
}

int kmm_op_engine_start(struct kmm_op_engine *eng, struct kmm_error **err)
{
	struct kmm_op_engine_private *p = (struct kmm_op_engine_private *)eng;

	for (size_t i = 0; i < KMM_OP_RECONCILER_COUNT; i++) {
		int workers = kmm_op_reconcilers[i]->workers ?: eng->workers;
		int r = !eng->ctl[i] ? 0
				     : kmm_op_ctl_start(eng->ctl[i], workers, run_reconcile,
							&p->reconcilers[i], err);

		if (r < 0)
			return r;
	}
	return 0;
}

void kmm_op_engine_stop_workers(struct kmm_op_engine *eng)
{
	for (size_t i = 0; eng && i < KMM_OP_RECONCILER_COUNT; i++)
		if (eng->ctl[i])
			kmm_op_ctl_stop(eng->ctl[i]);
}

void kmm_op_engine_free(struct kmm_op_engine *eng)
{
	if (!eng)
		return;
	kmm_op_engine_stop_workers(eng);
	/* Watches of one cache read the others: stop every thread before freeing. */
	for (size_t i = 0; i < KMM_OP_CACHE_COUNT; i++)
		if (eng->cache[i])
			kmm_informer_stop(eng->cache[i]);
	kmm_op_engine_stop_workers(eng); /* what the last events queued */
	for (size_t i = 0; i < KMM_OP_RECONCILER_COUNT; i++)
		if (eng->state[i] && kmm_op_reconcilers[i]->state_stop)
			kmm_op_reconcilers[i]->state_stop(eng, eng->state[i]);
	for (size_t i = 0; i < KMM_OP_CACHE_COUNT; i++) {
		kmm_informer_free(eng->cache[i]);
		kmm_op_overlay_free(eng->overlay[i]);
	}
	for (size_t i = 0; i < KMM_OP_RECONCILER_COUNT; i++) {
		kmm_op_ctl_free(eng->ctl[i]);
		if (eng->state[i])
			kmm_op_reconcilers[i]->state_free(eng->state[i]);
	}
	kmm_mapper_cache_free(eng->mappers);
	kmm_operator_config_free(&eng->cfg);
	free(eng);
}
