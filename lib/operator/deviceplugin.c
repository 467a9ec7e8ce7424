/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Device plugin reconciler (reference §3.6, §3.14): runs a Module's device
 * plugin as a DaemonSet and keeps the node labels and the status that go
 * with it, through plugin.c's reconcile with the device plugin's kind
 * (deviceplugin-ds.c). Keyed by Module ns/name:
 *
 *   the DaemonSet of the Module's version, old versions collected once they
 *   schedule no pod, all deleted at once when the devicePlugin goes or the
 *   Module is being deleted (so the device plugin releases the device
 *   before the unloader runs);
 *   .device-plugin-target on the nodes of the Module's selector that are
 *   schedulable for its tolerations (a cordon or a drain evicts the device
 *   plugin); .device-plugin-ready where its pod is Ready;
 *   status.devicePlugin: nodes matching = desired = targeted nodes,
 *   available = the DaemonSets' numberAvailable summed.
 */
#include "deviceplugin.h"
#include "engine-internal.h"

static const struct kmm_op_watch dp_watches[] = {
	{ KMM_OP_CACHE_MODULES, kmm_op_plugin_module_changed, kmm_op_plugin_enqueue_module },
	{ KMM_OP_CACHE_NODES, kmm_op_plugin_node_changed, kmm_op_plugin_enqueue_modules },
	{ KMM_OP_CACHE_DAEMONSETS, NULL, kmm_op_plugin_enqueue_owner },
	{ KMM_OP_CACHE_DPPODS, NULL, kmm_op_plugin_enqueue_owner },
};

static int dp_state_new(struct kmm_op_engine *op, void **ret_state, struct kmm_error **err)
{
	return kmm_op_plugin_state_new(&kmm_op_dp_kind, sizeof(struct kmm_op_plugin_state),
				       ret_state, err);
}

const struct kmm_op_reconciler kmm_op_device_plugin_reconciler = {
	.name = "deviceplugin",
	.log_name = "deviceplugin",
	.watches = dp_watches,
	.n_watches = KMM_ARRAY_SIZE(dp_watches),
	.state_new = dp_state_new,
	.state_free = kmm_op_plugin_state_free,
	.reconcile = kmm_op_plugin_reconcile,
};
