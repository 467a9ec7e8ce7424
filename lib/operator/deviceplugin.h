/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device plugin's pure helpers (deviceplugin-ds.c), shared by the device
 * plugin reconciler (deviceplugin.c) and its unit tests. Private to
 * lib/operator. JSON handed in is borrowed, JSON handed out is a new
 * reference; strings handed out are heap strings of the caller.
 */
#ifndef KMM_OPERATOR_DEVICEPLUGIN_H
#define KMM_OPERATOR_DEVICEPLUGIN_H

#include <jansson.h>

#include "kmm/api.h"
#include "kmm/shared-error.h"

/* Labels and annotations of device plugin DaemonSets and nodes (reference §3.6, §3.14). */
#define KMM_LABEL_ROLE "kmm.node.kubernetes.io/role"
#define KMM_ROLE_DEVICE_PLUGIN "device-plugin"
/* What the DaemonSet and pod caches select. */
#define KMM_DP_SELECTOR KMM_LABEL_ROLE "=" KMM_ROLE_DEVICE_PLUGIN
#define KMM_VERSION_SCHEDULE_LABEL_PREFIX "beta.kmm.node.kubernetes.io/version-schedule-pod."
/* The hash of the DaemonSet spec kmm wrote: a different one means patch it. */
#define KMM_ANN_DEVICE_PLUGIN_HASH "kmm.node.kubernetes.io/device-plugin-hash"
#define KMM_DEVICE_PLUGIN_SOCKET_DIR "/var/lib/kubelet/device-plugins"

/* "kmm.node.kubernetes.io/<ns>.<name>.device-plugin-target" and friends; heap strings. */
char *kmm_op_dp_target_label(const char *ns, const char *name);
char *kmm_op_dp_ready_label(const char *ns, const char *name);
char *kmm_op_dp_version_label(const char *ns, const char *name);

/* The Module's version (moduleLoader.container.version), or "" without one. */
const char *kmm_op_dp_version(const struct kmm_module *m);

/*
 * The device plugin DaemonSet of Module m (which has a devicePlugin; its
 * metadata.uid names the owner): generateName "<module>-device-plugin-",
 * the selection labels, the controller owner reference, the spec, and the
 * KMM_ANN_DEVICE_PLUGIN_HASH annotation of that spec.
 */
int kmm_op_dp_daemonset(const struct kmm_module *m, json_t **ret, struct kmm_error **err);

#endif
