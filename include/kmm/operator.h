/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-operator's engine: caches, reconcilers and the table that wires them.
 *
 *   caches        one informer per kind the operator reads (enum kmm_op_cache_id),
 *                 each with its label selector, projection and indexes; a cache
 *                 may carry an overlay of the objects our own writes returned
 *                 (kmm/operator-runtime.h), read before the cache's copy until
 *                 the cache has caught up.
 *   reconcilers   one per object kind kmm owns (enum kmm_op_reconciler_id),
 *                 each a struct kmm_op_reconciler: its name, its state, the
 *                 watches that feed its work queue, its reconcile function.
 *   the table     kmm_op_reconcilers[]: the engine creates every reconciler's
 *                 state and controller, registers every watch on its cache,
 *                 syncs every cache, then starts the workers.
 *
 *   Module ──▶ device plugin DaemonSet ──▶ plugin pods (node labels, status)
 *   Module ──▶ DRA driver DaemonSet, DeviceClasses ──▶ driver pods (node labels, status)
 *
 *   Module ──────────▶ NodeModulesConfig ──▶ worker pods (load / unload)
 *     │  ▲                    ▲
 *     ▼  │ status             │ nodes, worker pods
 *   ModuleImagesConfig ──▶ ModuleBuildSignConfig ──▶ build / sign pods
 *     (image exists?)        (build and sign)
 *     ▲
 *   PreflightValidation: a MIC "<module>-preflight-<pfv>" per Module, for its kernel
 *
 *   Node version labels ──▶ worker / schedule version labels (ordered upgrade)
 *     (the Module's NMC entries and device plugin DaemonSets follow them)
 *
 * Modes (enum kmm_op_mode, docs/hub-spoke.md): a spoke (KMM_MANAGED=1) runs
 * no build, sign or preflight and keeps the kernel-versions ClusterClaim; a
 * hub (--hub) runs only the image reconcilers (MIC, MBSC) and the
 * ManagedClusterModule one:
 *
 *   ManagedClusterModule × ManagedCluster (its kernels claim)
 *     ──▶ ModuleImagesConfig "<mcm>-<cluster>" (build, sign on the hub)
 *     ──▶ ManifestWork "<mcm>" in namespace <cluster>: the spoke's Module
 *
 * A reconcile reads caches only and writes through the API (kmm/operator-runtime.h);
 * it never waits for its own write to come back: watches bring it in again.
 * Adding a controller: docs/internals/operator.md.
 *
 * Threads: informer threads run the watches, the controllers' workers run the
 * reconciles; a reconciler's state is shared by its workers and its watches.
 */
#ifndef KMM_OPERATOR_H
#define KMM_OPERATOR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "kmm/shared-error.h"
#include "kmm/informer.h"
#include "kmm/kube.h"
#include "kmm/shared-log.h"
#include "kmm/server-metrics.h"
#include "kmm/operator-config.h"

/* What the operator caches. The order is the order caches start and sync in. */
enum kmm_op_cache_id {
	KMM_OP_CACHE_NAMESPACES, /* labels only */
	KMM_OP_CACHE_NODES,	 /* projected: labels, taints, kernel, boot ID, conditions */
	KMM_OP_CACHE_NMCS,	 /* whole, with the overlay of our writes */
	KMM_OP_CACHE_PODS,	 /* worker pods, projected; indexed by node and trouble */
	KMM_OP_CACHE_BSPODS,	 /* build and sign pods, projected */
	KMM_OP_CACHE_MBSCS,	 /* whole */
	KMM_OP_CACHE_MICS,	 /* whole */
	KMM_OP_CACHE_MODULES,	 /* whole */
	KMM_OP_CACHE_PULLPODS,	 /* image pull pods; only with imageCheck pullPod */
	KMM_OP_CACHE_PFVS,	 /* PreflightValidations (v1beta2), whole */
	/* device plugin DaemonSets and their pods (role=device-plugin), projected */
	KMM_OP_CACHE_DAEMONSETS,
	KMM_OP_CACHE_DPPODS,
	/* DRA driver DaemonSets and pods (role=dra), projected; DeviceClasses of Modules, whole;
	 * only when the API server serves DRA (Kubernetes 1.34 and later) */
	KMM_OP_CACHE_DRA_DAEMONSETS,
	KMM_OP_CACHE_DRAPODS,
	KMM_OP_CACHE_DEVICECLASSES,
	/* the hub's: ManagedClusterModules and ManifestWorks (ours, labelled) whole,
	 * OCM ManagedClusters projected (labels, claims) */
	KMM_OP_CACHE_MCMS,
	KMM_OP_CACHE_MANAGEDCLUSTERS,
	KMM_OP_CACHE_MANIFESTWORKS,
	KMM_OP_CACHE_COUNT,
};

/* The reconcilers, in table order. */
enum kmm_op_reconciler_id {
	KMM_OP_MODULE, /* Module -> NMC entries, labels, status, MIC */
	KMM_OP_NMC,    /* NodeModulesConfig -> worker pods, node labels, NMC status */
	KMM_OP_MIC,    /* ModuleImagesConfig -> image existence, MBSC */
	KMM_OP_MBSC,   /* ModuleBuildSignConfig -> build and sign pods */
	/* PreflightValidation -> a preflight MIC per Module, a verdict per Module */
	KMM_OP_PREFLIGHT,
	/* Module -> device plugin DaemonSet, device plugin node labels, status */
	KMM_OP_DEVICE_PLUGIN,
	/* Node version labels -> the ordered upgrade's steps (worker/schedule labels) */
	KMM_OP_VERSION,
	/* Module -> DRA driver DaemonSet, DeviceClasses, dra-ready node labels, status */
	KMM_OP_DRA,
	/* spoke: Node kernels -> the kernel-versions.kmm.node.kubernetes.io ClusterClaim */
	KMM_OP_CLUSTERCLAIM,
	/* hub: ManagedClusterModule -> MICs, ManifestWorks, status */
	KMM_OP_HUB,
	KMM_OP_RECONCILER_COUNT,
};

struct kmm_op_engine;

enum kmm_op_event {
	KMM_OP_ADDED,
	KMM_OP_MODIFIED,
	KMM_OP_DELETED
};

/*
 * One source of work for a reconciler: events of a cache, a change filter
 * and the function that maps an object to the keys to reconcile.
 */
struct kmm_op_watch {
	enum kmm_op_cache_id cache;
	/*
	 * On MODIFIED only: does the change matter to this reconciler? NULL:
	 * every change does. Runs on the informer's thread; must not block.
	 */
	bool (*changed)(struct kmm_op_engine *eng, void *state, const struct kmm_obj *old,
			const struct kmm_obj *obj);
	/* Queues the keys obj maps to; old is the previous version on MODIFIED, else NULL. */
	void (*enqueue)(struct kmm_op_engine *eng, void *state, const struct kmm_obj *old,
			const struct kmm_obj *obj, enum kmm_op_event ev);
};

/*
 * A reconcile: >= 0 done (> 0: again after that many ms), < 0 failed (err
 * filled; the key is retried with backoff).
 */
typedef int64_t (*kmm_op_reconciler_fn)(struct kmm_op_engine *eng, void *state, const char *key,
					struct kmm_error **err);

struct kmm_op_reconciler {
	const char *name;     /* controller name in metrics ("nodemodulesconfig") */
	const char *log_name; /* in log lines ("nmc") */
	int workers;	      /* concurrent reconciles; 0: the engine's workers option */
	/* enum kmm_op_mode bits it runs in; 0: standalone and spoke */
	unsigned modes;
	const struct kmm_op_watch *watches;
	size_t n_watches;
	/* Its state, created before any watch runs; NULL state_new: none. */
	int (*state_new)(struct kmm_op_engine *eng, void **ret_state, struct kmm_error **err);
	/* Stops the state's own threads, after the workers and informers stopped. May be NULL. */
	void (*state_stop)(struct kmm_op_engine *eng, void *state);
	void (*state_free)(void *state);
	kmm_op_reconciler_fn reconcile;
};

/* The table, indexed by enum kmm_op_reconciler_id. */
extern const struct kmm_op_reconciler *const kmm_op_reconcilers[KMM_OP_RECONCILER_COUNT];

/*
 * Where the engine's log lines go (the library itself never prints): level,
 * message, then NULL-terminated key/value string pairs as in kmm/shared-log.h.
 */
typedef void (*kmm_op_log_fn)(enum kmm_log_level level, const char *msg, va_list fields);

struct kmm_op_engine_options {
	/* Taken: the engine owns and frees it, even when kmm_op_engine_new fails. */
	struct kmm_operator_config *cfg;
	struct kmm_kube_client *kube; /* borrowed; outlives the engine */
	struct kmm_metrics *metrics;  /* borrowed; outlives the engine */
	int workers;		      /* concurrent reconciles per reconciler */
	/*
	 * Seconds an unloader may wait for its image before it is given up
	 * (upstream #1004); 0: the default, 300.
	 */
	int64_t unload_pull_timeout_s;
	kmm_op_log_fn log; /* NULL: silent; kmm_logv: kmm/shared-log.h's lines */
};

/* Creates the caches (not started), the reconcilers' states and controllers, the metrics. */
int kmm_op_engine_new(const struct kmm_op_engine_options *o, struct kmm_op_engine **ret,
		      struct kmm_error **err);
/*
 * Starts every cache and waits (up to timeout_ms) until all have listed:
 * a reconcile must never act on a half-listed cache. Events queue up meanwhile.
 */
int kmm_op_engine_sync(struct kmm_op_engine *eng, int64_t timeout_ms, struct kmm_error **err);
/* Starts the reconcilers' workers. After kmm_op_engine_sync. */
int kmm_op_engine_start(struct kmm_op_engine *eng, struct kmm_error **err);
/* The configuration the engine runs with (owned by the engine). */
const struct kmm_operator_config *kmm_op_engine_config(const struct kmm_op_engine *eng);
/* Every cache listed (the readiness probe). */
bool kmm_op_engine_synced(struct kmm_op_engine *eng);
/*
 * Runs one reconcile of key by reconciler id on the caller's thread, as a
 * worker would (tests; the engine need not be started): returns what the
 * reconcile returned.
 */
int64_t kmm_op_engine_reconcile(struct kmm_op_engine *eng, enum kmm_op_reconciler_id id,
				const char *key, struct kmm_error **err);
/* Lets reconciles in flight finish; queued keys are dropped. Idempotent. */
void kmm_op_engine_stop_workers(struct kmm_op_engine *eng);
/* Stops everything (workers, caches, the reconcilers' threads) and frees. NULL-safe. */
void kmm_op_engine_free(struct kmm_op_engine *eng);

#endif
