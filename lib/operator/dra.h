/* SPDX-License-Identifier: Apache-2.0 */
/*
 * DRA's kind, names and DeviceClasses (dra-ds.c), shared by the DRA
 * reconciler (dra.c), the engine's cache table and the unit tests; what it
 * shares with the device plugin is in plugin.h. Private to lib/operator.
 * JSON handed out is a new reference.
 */
#ifndef KMM_OPERATOR_DRA_H
#define KMM_OPERATOR_DRA_H

#include <jansson.h>

#include "kmm/api.h"
#include "kmm/kube.h"
#include "plugin.h"

/* Labels of DRA DaemonSets and pods (reference §3.7, §3.14). */
#define KMM_ROLE_DRA "dra"
/* What the DRA DaemonSet and pod caches select. */
#define KMM_DRA_SELECTOR KMM_LABEL_ROLE "=" KMM_ROLE_DRA
/* DRA (resource.k8s.io/v1) is served from Kubernetes 1.<this> on. */
#define KMM_DRA_MIN_MINOR 34
/* Where the kubelet finds DRA drivers and their CDI specs, and the driver's health port. */
#define KMM_DRA_PLUGINS_DIR "/var/lib/kubelet/plugins/"
#define KMM_DRA_REGISTRY_DIR "/var/lib/kubelet/plugins_registry/"
#define KMM_DRA_CDI_DIR "/var/run/cdi"
#define KMM_DRA_HEALTH_PORT 51515
#define KMM_DRA_HEALTH_PORT_STR "51515"

extern const struct kmm_op_plugin_kind kmm_op_dra_kind;
extern const struct kmm_kube_resource kmm_op_deviceclasses;

/* The DRA DaemonSet of Module m (which has a dra): plugin-ds.c's with DRA's kind. */
int kmm_op_dra_daemonset(const struct kmm_module *m, json_t **ret, struct kmm_error **err);

/*
 * DeviceClass i of Module m's dra, as kmm writes it: its name, the
 * module.name and module.namespace labels (a cluster-scoped object cannot be
 * owned by a Module: the labels say whose it is), and spec.selectors and
 * spec.config when the Module gives them. NULL out of memory.
 */
json_t *kmm_op_dra_device_class(const struct kmm_module *m, size_t i);

/*
 * dra.c: the DeviceClasses of Module ns/name as m's dra lists them (m NULL:
 * none): created, patched back when they drift, the Module's others deleted.
 */
int kmm_op_dra_sync_device_classes(struct kmm_op_engine *op, const char *ns, const char *name,
				   const struct kmm_module *m, struct kmm_error **err);

#endif
