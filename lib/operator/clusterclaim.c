/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The spoke's ClusterClaim reconciler (reference §6, docs/hub-spoke.md):
 * with KMM_MANAGED=1 the cluster-scoped OCM ClusterClaim
 * kernel-versions.kmm.node.kubernetes.io holds the nodes' kernels, sorted,
 * unique, joined by "\n". OCM's registration agent copies it into the
 * ManagedCluster's status.clusterClaims on the hub, where kmm's hub resolves
 * kernel mappings for exactly those kernels.
 *
 * One key (the claim's name). A node added or deleted, or whose kernel
 * changed, queues it; so does the periodic resync, which puts back a claim
 * someone edited or deleted. No node: the claim is deleted (an empty value
 * is not a valid claim, and a cluster without nodes needs no module).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/operator-hub.h"
#include "kmm/shared-json.h"
#include "engine-internal.h"

/* How often the claim is compared even without node events. */
#define CLAIM_RESYNC_MS (5 * 60 * 1000)
/* OCM's ClusterClaim schema caps spec.value at 1024 characters. */
#define CLAIM_VALUE_MAX 1024

const struct kmm_kube_resource kmm_op_clusterclaims = { "cluster.open-cluster-management.io",
							"v1alpha1", "clusterclaims", false };

static char *kernels_value(struct kmm_op_engine *op)
{
	_cleanup_free_ const char **kernels = NULL;
	struct kmm_obj **nodes = NULL;
	size_t n = 0;
	char *value;

	if (kmm_informer_list(op->cache[KMM_OP_CACHE_NODES], &nodes, &n) < 0)
		return NULL;
	kernels = calloc(n ? n : 1, sizeof(*kernels));
	if (!kernels) {
		kmm_obj_array_free(nodes, n);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		kernels[i] = kmm_obj_str(nodes[i], "status.nodeInfo.kernelVersion");
	value = kmm_hub_claim_value(kernels, n);
	kmm_obj_array_free(nodes, n);
	return value;
}

static int64_t claim_reconcile(struct kmm_op_engine *op, void *state, const char *key,
			       struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_op_clusterclaims, NULL, KMM_CLAIM_KERNEL_VERSIONS, NULL };
	_cleanup_free_ char *value = kernels_value(op);
	_cleanup_json_ json_t *cur = NULL, *want = NULL;
	const char *have;
	int r;

	if (!value)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (strlen(value) > CLAIM_VALUE_MAX)
		return kmm_error_make(err, E2BIG,
				      "ClusterClaim %s: the kernels take %zu characters, OCM "
				      "allows %d",
				      KMM_CLAIM_KERNEL_VERSIONS, strlen(value), CLAIM_VALUE_MAX);
	r = kmm_op_get(&op->api, &t, &cur, err);
	if (r < 0 && r != -ENOENT)
		return kmm_error_wrap(err, "get ClusterClaim");
	if (r == -ENOENT) {
		kmm_error_free(*err);
		*err = NULL;
	}
	if (!*value) {
		if (cur && kmm_op_delete(&op->api, &t, err) < 0)
			return kmm_error_wrap(err, "delete ClusterClaim");
		return CLAIM_RESYNC_MS;
	}
	if (cur) {
		have = str(json_object_get(cur, "spec"), "value");
		if (have && strcmp(have, value) == 0)
			return CLAIM_RESYNC_MS;
		want = json_pack("{s:{s:s}}", "spec", "value", value);
		if (!want)
			return kmm_error_make(err, ENOMEM, "out of memory");
		if (kmm_op_patch(&op->api, &t, KMM_KUBE_PATCH_MERGE, want, NULL, err) < 0)
			return kmm_error_wrap(err, "patch ClusterClaim");
		kmm_op_log(op, KMM_LOG_INFO, "ClusterClaim updated", "controller", "clusterclaim",
			   "claim", KMM_CLAIM_KERNEL_VERSIONS, NULL);
		return CLAIM_RESYNC_MS;
	}
	want = json_pack("{s:s,s:s,s:{s:s},s:{s:s}}", "apiVersion", KMM_OCM_CLAIM_API_VERSION,
			 "kind", "ClusterClaim", "metadata", "name", KMM_CLAIM_KERNEL_VERSIONS,
			 "spec", "value", value);
	if (!want)
		return kmm_error_make(err, ENOMEM, "out of memory");
	t.name = NULL;
	r = kmm_op_create(&op->api, &t, want, NULL, err);
	if (r == -EEXIST) { /* created meanwhile: compare again */
		kmm_error_free(*err);
		*err = NULL;
		return 1;
	}
	if (r < 0)
		return kmm_error_wrap(err, "create ClusterClaim");
	kmm_op_log(op, KMM_LOG_INFO, "ClusterClaim created", "controller", "clusterclaim", "claim",
		   KMM_CLAIM_KERNEL_VERSIONS, NULL);
	return CLAIM_RESYNC_MS;
}

static bool kernel_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			   const struct kmm_obj *obj)
{
	const char *a = kmm_obj_str(old, "status.nodeInfo.kernelVersion");
	const char *b = kmm_obj_str(obj, "status.nodeInfo.kernelVersion");

	return strcmp(a ? a : "", b ? b : "") != 0;
}

static void enqueue_claim(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			  const struct kmm_obj *obj, enum kmm_op_event ev)
{
	/*
	 * Not coalesced: the key is always due (the periodic resync), which a
	 * coalesced enqueue would take for "queued already". The work queue
	 * still folds a burst of events into one reconcile.
	 */
	kmm_op_ctl_enqueue(op->ctl[KMM_OP_CLUSTERCLAIM], KMM_CLAIM_KERNEL_VERSIONS);
}

static const struct kmm_op_watch claim_watches[] = {
	{ KMM_OP_CACHE_NODES, kernel_changed, enqueue_claim },
};

const struct kmm_op_reconciler kmm_op_clusterclaim_reconciler = {
	.name = "clusterclaim",
	.log_name = "clusterclaim",
	.workers = 1, /* one key */
	.watches = claim_watches,
	.n_watches = KMM_ARRAY_SIZE(claim_watches),
	.reconcile = claim_reconcile,
	.modes = KMM_OP_MODE_SPOKE,
};
