/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the reconcilers of lib/operator share: the engine's caches, controllers
 * and clients, and the few functions one reconciler offers another. Private to
 * lib/operator.
 */
#ifndef KMM_OPERATOR_ENGINE_INTERNAL_H
#define KMM_OPERATOR_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "kmm/operator-buildsign.h"
#include "kmm/shared-clock.h"
#include "kmm/shared-hashmap.h"
#include "kmm/informer.h"
#include "kmm/shared-json.h"
#include "kmm/controller-leader.h"
#include "kmm/api-kernel.h"
#include "kmm/server-metrics.h"
#include "kmm/operator-config.h"
#include "kmm/operator-runtime.h"
#include "kmm/operator.h"

struct kmm_op_engine {
	struct kmm_operator_config cfg;
	struct kmm_kube_client *kube; /* borrowed */
	struct kmm_metrics *metrics;  /* borrowed */
	struct kmm_op_api api;

	/*
	 * Caches (engine.c's cache table says what each holds); NULL for one
	 * the configuration does not need. The overlays of NMCS and NODES hold
	 * what our own writes returned until the cache has seen it.
	 */
	struct kmm_informer *cache[KMM_OP_CACHE_COUNT];
	struct kmm_op_overlay *overlay[KMM_OP_CACHE_COUNT];
	struct kmm_mapper_cache *mappers; /* compiled kernel mappings, by Module */

	/* One controller and one state per reconciler of kmm_op_reconcilers[]. */
	struct kmm_op_ctl *ctl[KMM_OP_RECONCILER_COUNT];
	void *state[KMM_OP_RECONCILER_COUNT];
	int workers;

	/* Unloaders stuck pulling their image are given up after this (upstream #1004). */
	int64_t unload_pull_timeout_s;

	kmm_op_log_fn log; /* NULL: silent */
};

/* A log line through the engine's log function (kmm/shared-log.h's fields, NULL-terminated). */
void kmm_op_log(struct kmm_op_engine *op, enum kmm_log_level level, const char *msg, ...)
    _sentinel_;

/* A string member of a JSON object, NULL when absent or not a string. */
static inline const char *str(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* Did the status of a cached object move between two versions? */
static inline bool kmm_op_status_differs(const struct kmm_obj *a, const struct kmm_obj *b)
{
	return !kmm_json_same(json_object_get(kmm_obj_json(a), "status"),
			      json_object_get(kmm_obj_json(b), "status"));
}

/* The reconcilers' table entries (the public table is kmm_op_reconcilers[]). */
extern const struct kmm_op_reconciler kmm_op_module_reconciler, kmm_op_nmc_reconciler,
    kmm_op_mic_reconciler, kmm_op_mbsc_reconciler;
extern const struct kmm_op_reconciler kmm_op_device_plugin_reconciler;
extern const struct kmm_op_reconciler kmm_op_preflight_reconciler;
extern const struct kmm_op_reconciler kmm_op_version_reconciler;
extern const struct kmm_op_reconciler kmm_op_dra_reconciler;
extern const struct kmm_op_reconciler kmm_op_clusterclaim_reconciler;
extern const struct kmm_op_reconciler kmm_op_hub_reconciler;

/* Does the reconciler / cache run in the engine's mode? (0 modes: standalone and spoke) */
static inline bool kmm_op_in_mode(const struct kmm_op_engine *eng, unsigned modes)
{
	return (eng->cfg.mode & (modes ? modes : KMM_OP_MODE_STANDALONE | KMM_OP_MODE_SPOKE)) != 0;
}

/* hub.c: the hub's kinds */
extern const struct kmm_kube_resource kmm_op_mcms, kmm_op_managedclusters, kmm_op_manifestworks;
/* clusterclaim.c: OCM ClusterClaims (cluster.open-cluster-management.io/v1alpha1) */
extern const struct kmm_kube_resource kmm_op_clusterclaims;
#define KMM_LABEL_MCM_NAME "kmm.node.kubernetes.io/managedclustermodule.name"

/*
 * version.c: is a device plugin or DRA driver pod of Module ns/name on the
 * node (running or terminating)? The module must not be unloaded from under
 * it: the ordered upgrade and the NMC's unloaders wait until it is gone.
 */
bool kmm_op_plugin_pod_on(struct kmm_op_engine *op, const char *node, const char *ns,
			  const char *name);
/* How often such a wait looks again (the pod's deletion also brings it back at once). */
#define KMM_OP_PLUGIN_WAIT_MS 5000

/* dra.c: does the API server serve DRA (asked when the engine is created)? */
bool kmm_op_dra_served(const struct kmm_op_engine *op);

/* mic.c: ModuleImagesConfig reconciler (image existence, build/sign requests) */
extern const struct kmm_kube_resource kmm_op_mics, kmm_op_mbscs;
#define KMM_IMAGE_EXISTS "Exists"
#define KMM_IMAGE_DOES_NOT_EXIST "DoesNotExist"
#define KMM_IMAGE_NEEDS_BUILDING "NeedsBuilding"
#define KMM_IMAGE_NEEDS_SIGNING "NeedsSigning"
#define KMM_LABEL_IMAGE_OWNER "kmm.node.kubernetes.io/image-owner"
#define KMM_LABEL_PULL_POD_TYPE "kmm.node.kubernetes.io/pull-pod-type"
/*
 * A MIC's or MBSC's spec (kind says which) through the API model, so defaults
 * and key order do not count as changes; NULL when it does not decode.
 */
json_t *kmm_op_image_config_spec_normalized(const char *kind, const json_t *spec);
/* Why the last existence check of image by MIC ns/mic_name did not find it; "" when unknown. */
void kmm_op_image_why(struct kmm_op_engine *op, const char *ns, const char *mic_name,
		      const char *image, char *buf, size_t size);

/* mbsc.c: ModuleBuildSignConfig reconciler (build and sign pods, their events and GC) */
/*
 * How often an MBSC whose result depends on a Secret or ConfigMap (a sign
 * entry's key and cert; a build not yet succeeded, its Dockerfile) reads
 * them again: the bound on noticing a rotated key or an edited Dockerfile.
 */
#define KMM_OP_INPUT_RECHECK_MS 10000
/* Why a Pending build/sign pod does not start (unschedulable, image pull), or false. */
bool kmm_op_bspod_trouble(const json_t *pod, char *buf, size_t size);
/*
 * Records an Event about a namespaced object in its namespace, with
 * annotations (a JSON object, borrowed, may be NULL). Best effort.
 */
int kmm_op_ns_event(struct kmm_op_engine *op, const char *api_version, const char *kind,
		    const char *ns, const char *name, const char *uid, const char *type,
		    const char *reason, const char *message, const json_t *annotations,
		    struct kmm_error **err);

/* The .dockerconfigjson of Secret ns/name (heap string), or NULL with err. */
char *kmm_op_pull_secret(struct kmm_op_engine *op, const char *ns, const char *name,
			 struct kmm_error **err);

/* preflight.c: PreflightValidation reconciler */
extern const struct kmm_kube_resource kmm_op_pfvs;

/* module.c */
struct kmm_resolved_mapping;
/*
 * Adds the MIC spec.images entry of a resolved mapping of Module m to images
 * (a JSON object keyed by image; one entry per image). 0 or -ENOMEM.
 */
int kmm_op_mic_image_add(json_t *images, const struct kmm_module *m,
			 const struct kmm_resolved_mapping *res);
/* The MIC spec of Module m for those images (sorted; nulls for absent fields). */
json_t *kmm_op_mic_spec(const struct kmm_module *m, const json_t *images);
/* Why a worker pod failed or cannot start, in why; false when it is fine. */
bool kmm_op_worker_pod_trouble(const struct kmm_obj *pod, char *why, size_t size);
/* Pod index "trouble": "<ns>/<module>" for troubled worker pods, nothing for others. */
int kmm_op_pod_trouble_index(const struct kmm_obj *pod, char ***ret_values, void *userdata);

#endif
