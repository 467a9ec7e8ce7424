/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device plugin's kind and names (deviceplugin-ds.c), shared by the
 * device plugin reconciler (deviceplugin.c), the engine's cache table and the
 * unit tests; what it shares with DRA is in plugin.h. Private to
 * lib/operator. Strings handed out are heap strings of the caller.
 */
#ifndef KMM_OPERATOR_DEVICEPLUGIN_H
#define KMM_OPERATOR_DEVICEPLUGIN_H

#include <jansson.h>

#include "kmm/api.h"
#include "kmm/shared-error.h"
#include "plugin.h"

/* Labels and annotations of device plugin DaemonSets and nodes (reference §3.6, §3.14). */
#define KMM_ROLE_DEVICE_PLUGIN "device-plugin"
/* What the DaemonSet and pod caches select. */
#define KMM_DP_SELECTOR KMM_LABEL_ROLE "=" KMM_ROLE_DEVICE_PLUGIN
/* The hash of the DaemonSet spec kmm wrote: a different one means patch it. */
#define KMM_ANN_DEVICE_PLUGIN_HASH "kmm.node.kubernetes.io/device-plugin-hash"
#define KMM_DEVICE_PLUGIN_SOCKET_DIR "/var/lib/kubelet/device-plugins"

extern const struct kmm_op_plugin_kind kmm_op_dp_kind;

/* "kmm.node.kubernetes.io/<ns>.<name>.device-plugin-target" and -ready; heap strings. */
char *kmm_op_dp_target_label(const char *ns, const char *name);
char *kmm_op_dp_ready_label(const char *ns, const char *name);

/*
 * The device plugin DaemonSet of Module m (which has a devicePlugin; its
 * metadata.uid names the owner): plugin-ds.c's with the device plugin's kind.
 */
int kmm_op_dp_daemonset(const struct kmm_module *m, json_t **ret, struct kmm_error **err);

#endif
