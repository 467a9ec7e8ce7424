/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The hub API (hub.kmm.sigs.x-k8s.io/v1beta1, reference §1.6):
 * ManagedClusterModule, cluster-scoped. Its spec.moduleSpec is a Module's
 * spec; the hub hands it to every selected cluster as the Module <name> in
 * spec.spokeNamespace (docs/hub-spoke.md), so it is parsed and validated as
 * exactly that Module.
 */
#ifndef KMM_API_HUB_H
#define KMM_API_HUB_H

#include <jansson.h>
#include <stdbool.h>

#include "kmm/api.h"
#include "kmm/shared-error.h"
#include "kmm/shared-macro.h"

#define KMM_HUB_API_GROUP "hub.kmm.sigs.x-k8s.io"
#define KMM_HUB_API_VERSION "hub.kmm.sigs.x-k8s.io/v1beta1"
#define KMM_HUB_KIND_MCM "ManagedClusterModule"

struct kmm_mcm {
	char *name;
	json_t *metadata;	    /* the whole metadata object (one reference) */
	char *spoke_namespace;	    /* spec.spokeNamespace, never empty after parse */
	struct kmm_strmap selector; /* spec.selector: ManagedCluster labels */
	/*
	 * spec.moduleSpec as the spoke's Module: name = the MCM's name,
	 * namespace = spokeNamespace, no status. Owned.
	 */
	struct kmm_module *module;
};

/*
 * Parses a ManagedClusterModule. Errors name the field path as the apiserver
 * does ("spec.moduleSpec.moduleLoader.container.kernelMappings[0]...").
 * Required: spec.moduleSpec, spec.spokeNamespace (non-empty). With
 * KMM_API_STRICT unknown keys are rejected (moduleSpec's included); without
 * it unknown keys outside moduleSpec are ignored.
 */
int kmm_mcm_from_json(const json_t *j, unsigned flags, struct kmm_mcm **ret,
		      struct kmm_error **err);

/*
 * The MCM webhook's rules: the Module rules on the spoke Module, with the
 * hub's exception that the DRA version gate is skipped (the spokes' versions
 * are unknown here). `old` is the stored object on UPDATE, NULL on CREATE.
 */
int kmm_mcm_validate(const struct kmm_mcm *m, const struct kmm_mcm *old, bool all,
		     struct kmm_error **err);

void kmm_mcm_free(struct kmm_mcm *m);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_mcm *, kmm_mcm_free)

#endif
