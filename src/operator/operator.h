/* SPDX-License-Identifier: Apache-2.0 */
/* What kmm-operator's reconcilers share: the caches, queues and clients. */
#ifndef KMM_SRC_OPERATOR_H
#define KMM_SRC_OPERATOR_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "kmm/buildsign.h"
#include "kmm/hashmap.h"
#include "kmm/informer.h"
#include "kmm/leader.h"
#include "kmm/kernel.h"
#include "kmm/metrics.h"
#include "kmm/operator-config.h"
#include "kmm/operator.h"

struct op {
	struct kmm_operator_config cfg;
	struct kmm_kube_client *kube;
	struct kmm_metrics *metrics;
	struct kmm_op_api api;

	/* Caches: Modules and NMCs whole, Nodes and Pods projected, Namespaces' labels. */
	struct kmm_informer *modules, *nmcs, *nodes, *pods, *namespaces;
	/*
	 * Build and sign: MICs and MBSCs whole, build/sign pods projected. No
	 * Secret or ConfigMap cache: the referenced ones are read by name
	 * (mbsc.c re-reads them every KMM_OP_INPUT_RECHECK_MS).
	 */
	struct kmm_informer *mics, *mbscs, *bspods;
	struct kmm_informer *pullpods;	     /* imageCheck: pullPod only, else NULL */
	struct kmm_op_keyset *pullpods_done; /* pull pod uids read and deleted, maybe cached */
	struct kmm_op_overlay *nmc_overlay;
	struct kmm_op_nmc_digests *nmc_digests; /* module.c's view of each NMC, per version */
	struct kmm_op_overlay *node_overlay;	/* nodes as our label patches returned them */
	struct kmm_op_keyset *pods_created;	/* "ns/name" created, not yet in the cache */
	struct kmm_op_keyset *pods_released;	/* uids released, not yet gone from the cache */
	struct kmm_op_keyset
	    *bspods_created;		     /* build/sign pods "ns/name" created, not yet cached */
	struct kmm_op_keyset *mbscs_deleted; /* MBSC uids deleted, maybe still cached */
	pthread_mutex_t nmc_create_locks[32]; /* one NMC POST per node at a time */
	struct kmm_mapper_cache *mappers;

	struct kmm_op_ctl *module_ctl, *nmc_ctl, *mic_ctl, *mbsc_ctl;
	struct kmm_leader *leader; /* NULL without leader election */

	/*
	 * mic.c: image existence ("image|tls|secret" -> struct image_state*) and
	 * why an image is not there ("why|ns|image" -> char*); module.c: the time
	 * of each Module's last status write ("status|ns/name" -> int64_t*).
	 */
	pthread_mutex_t images_lock;
	struct kmm_hashmap *images;
	/* mic.c: the registry checks' threads and policy, started on first use. */
	struct kmm_op_image_checks *image_checks;

	/* Unloaders stuck pulling their image are given up after this (upstream #1004). */
	int64_t unload_pull_timeout_s;

	struct kmm_metric *g_modules, *g_build, *g_sign, *g_device_plugin, *g_modprobe_args;
};

/* A string member of a JSON object, NULL when absent or not a string. */
static inline const char *str(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* Milliseconds on the monotonic clock: backoffs and deadlines. */
static inline int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* nmc.c */
int64_t kmm_op_nmc_reconcile(const char *name, void *userdata, struct kmm_error **err);

/* mic.c: ModuleImagesConfig reconciler (image existence, build/sign requests) */
extern const struct kmm_kube_resource kmm_op_mics, kmm_op_mbscs;
#define KMM_IMAGE_EXISTS "Exists"
#define KMM_IMAGE_DOES_NOT_EXIST "DoesNotExist"
#define KMM_IMAGE_NEEDS_BUILDING "NeedsBuilding"
#define KMM_IMAGE_NEEDS_SIGNING "NeedsSigning"
#define KMM_LABEL_IMAGE_OWNER "kmm.node.kubernetes.io/image-owner"
#define KMM_LABEL_PULL_POD_TYPE "kmm.node.kubernetes.io/pull-pod-type"
int64_t kmm_op_mic_reconcile(const char *key, void *userdata, struct kmm_error **err);
/* Stops the registry checks (joins their threads); before the controllers are freed. */
void kmm_op_mic_checks_stop(struct op *op);
/* Why the last existence check of image by MIC ns/mic_name did not find it; "" when unknown. */
void kmm_op_image_why(struct op *op, const char *ns, const char *mic_name, const char *image,
		      char *buf, size_t size);

/* mbsc.c: ModuleBuildSignConfig reconciler (build and sign pods, their events and GC) */
/*
 * How often an MBSC whose result depends on a Secret or ConfigMap (a sign
 * entry's key and cert; a build not yet succeeded, its Dockerfile) reads
 * them again: the bound on noticing a rotated key or an edited Dockerfile.
 */
#define KMM_OP_INPUT_RECHECK_MS 10000
int64_t kmm_op_mbsc_reconcile(const char *key, void *userdata, struct kmm_error **err);
/* Why a Pending build/sign pod does not start (unschedulable, image pull), or false. */
bool kmm_op_bspod_trouble(const json_t *pod, char *buf, size_t size);
/*
 * Records an Event about a namespaced object in its namespace, with
 * annotations (a JSON object, borrowed, may be NULL). Best effort.
 */
int kmm_op_ns_event(struct op *op, const char *api_version, const char *kind, const char *ns,
		    const char *name, const char *uid, const char *type, const char *reason,
		    const char *message, const json_t *annotations, struct kmm_error **err);

/* module.c */
/* Why a worker pod failed or cannot start, in why; false when it is fine. */
bool kmm_op_worker_pod_trouble(const struct kmm_obj *pod, char *why, size_t size);
/* Pod index "trouble": "<ns>/<module>" for troubled worker pods, nothing for others. */
int kmm_op_pod_trouble_index(const struct kmm_obj *pod, char ***ret_values, void *userdata);
int64_t kmm_op_module_reconcile(const char *key, void *userdata, struct kmm_error **err);
void kmm_op_enqueue_all_modules(struct op *op);

#endif
