/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hub and spoke (docs/hub-spoke.md, reference §6): the pure pieces of the
 * hub's ManagedClusterModule reconciler and of the spoke's ClusterClaim
 * reconciler, kept here so unit tests reach them.
 *
 * JSON handed in is borrowed; JSON and strings handed out are new
 * references / heap strings owned by the caller, NULL on ENOMEM.
 */
#ifndef KMM_OPERATOR_HUB_H
#define KMM_OPERATOR_HUB_H

#include <stddef.h>

#include <jansson.h>

#include "kmm/api-hub.h"
#include "kmm/shared-error.h"

/* The OCM kinds kmm reads and writes. */
#define KMM_OCM_CLUSTER_API_VERSION "cluster.open-cluster-management.io/v1"
#define KMM_OCM_CLAIM_API_VERSION "cluster.open-cluster-management.io/v1alpha1"
#define KMM_OCM_WORK_API_VERSION "work.open-cluster-management.io/v1"
/* The ClusterClaim a spoke publishes its node kernels in (upstream's name). */
#define KMM_CLAIM_KERNEL_VERSIONS "kernel-versions.kmm.node.kubernetes.io"
/* The Module status counters the ManifestWork's feedback rules bring back. */
#define KMM_HUB_FEEDBACK_COUNT 9

/*
 * The ClusterClaim's value: the kernels, sorted (strcmp), duplicates, NULLs
 * and empty strings dropped, joined by "\n". "" for none.
 */
char *kmm_hub_claim_value(const char *const *kernels, size_t n);

/* The kernels a claim value lists (split on "\n", empty lines dropped): a strv. */
char **kmm_hub_claim_kernels(const char *value);

/* The value of ClusterClaim `claim` in a ManagedCluster's status.clusterClaims, or NULL. */
const char *kmm_hub_cluster_claim(const json_t *cluster, const char *claim);

/*
 * The image pinned by digest: "registry/repository@<digest>" (the tag goes:
 * a digest names one manifest whatever tag points at it now). An image that
 * already carries a digest is returned as it is, and must then equal digest
 * when digest is not NULL (-EINVAL otherwise).
 */
int kmm_hub_pin_image(const char *image, const char *digest, char **ret, struct kmm_error **err);

struct kmm_image_config;

/*
 * An image's state in the status of the hub's MIC for a cluster: 1 it
 * Exists; 0 not known yet, or being built or signed on the hub (wait);
 * -ENOENT DoesNotExist: checked absent with nothing on the hub to make it,
 * or its build or sign failed. The MIC reconciler checks it again, but until
 * then the cluster cannot get its ManifestWork, which is an error to report,
 * not a wait.
 */
int kmm_hub_image_ready(const struct kmm_image_config *mic, const char *image);

/* One kernel of a spoke and what it gets. */
struct kmm_hub_kernel_image {
	const char *kernel;			    /* the literal (trimmed kernel) */
	const char *image;			    /* pinned */
	char *const *in_tree_modules_to_remove;	    /* NULL: none */
	const struct kmm_tls_options *registry_tls; /* NULL: the container's */
};

/*
 * The spoke's Module "<mcm>" in spokeNamespace: moduleSpec without build and
 * sign (at container and mapping level), kernelMappings replaced by one
 * literal mapping per kernel (in the order given).
 */
json_t *kmm_hub_spoke_module(const struct kmm_mcm *mcm, const struct kmm_hub_kernel_image *k,
			     size_t n);

/*
 * The ManifestWork "<mcm>" in namespace cluster carrying module (borrowed):
 * labelled with the MCM's name, controller-owned by the MCM (its
 * metadata.uid), with feedback rules for the Module's status counters.
 */
json_t *kmm_hub_manifest_work(const struct kmm_mcm *mcm, const char *cluster, const json_t *module);

/* What an MCM reconcile saw, for its status (counters and the Ready condition). */
struct kmm_hub_progress {
	int64_t desired;    /* this MCM's ManifestWorks */
	int64_t applied;    /* ... whose Applied condition is True */
	int64_t degraded;   /* ... whose Degraded condition is True */
	int64_t waiting;    /* selected clusters whose images do not all exist yet */
	const char *failed; /* what failed, per cluster; NULL: nothing */
};

/*
 * The MCM's Ready condition (kmm's addition): True when every ManifestWork
 * is applied and none is degraded, nothing waits and nothing failed; else
 * False with the first of Failed, ImagesNotReady, Degraded, NotApplied.
 * lastTransitionTime stays that of the same status in old_conditions (the
 * MCM's status.conditions, may be NULL), else now (RFC 3339).
 */
json_t *kmm_hub_ready_condition(const struct kmm_hub_progress *p, int64_t generation,
				const json_t *old_conditions, const char *now);

#endif
