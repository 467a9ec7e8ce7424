/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device plugin's kind (plugin.h): its DaemonSet, in upstream's shape
 * (reference §3.6), is plugin-ds.c's with role "device-plugin": named
 * "<module>-device-plugin-<random>", its pods on nodes where the module is
 * loaded and that are device-plugin targets (schedulable for the Module, so
 * a drain evicts the device plugin before the unloader runs). The container
 * mounts the kubelet's device-plugins directory, where it registers.
 *
 * Unlike upstream the pods carry no node-labeler finalizer: the reconciler
 * removes a node's .device-plugin-ready label as soon as the pod starts
 * terminating, and a finalizer would hold every device plugin pod (and a
 * namespace deletion) whenever the operator is not running.
 */
#include "kmm/shared-json.h"
#include "deviceplugin.h"

char *kmm_op_dp_target_label(const char *ns, const char *name)
{
	return kmm_op_plugin_node_label(&kmm_op_dp_kind, ns, name, "target");
}

char *kmm_op_dp_ready_label(const char *ns, const char *name)
{
	return kmm_op_plugin_node_label(&kmm_op_dp_kind, ns, name, "ready");
}

static const struct kmm_plugin_spec *dp_spec(const struct kmm_module *m)
{
	return m->spec.device_plugin;
}

static const struct kmm_daemonset_status *dp_status(const struct kmm_module *m)
{
	return &m->status.device_plugin;
}

static json_t *dp_volumes(void)
{
	return json_pack("[{s:s, s:{s:s, s:s}}]", "name", "kubelet-device-plugins", "hostPath",
			 "path", KMM_DEVICE_PLUGIN_SOCKET_DIR, "type", "Directory");
}

static json_t *dp_mounts(void)
{
	return json_pack("[{s:s, s:s}]", "name", "kubelet-device-plugins", "mountPath",
			 KMM_DEVICE_PLUGIN_SOCKET_DIR);
}

const struct kmm_op_plugin_kind kmm_op_dp_kind = {
	.role = KMM_ROLE_DEVICE_PLUGIN,
	.key = "devicePlugin",
	.reconciler = KMM_OP_DEVICE_PLUGIN,
	.daemonsets = KMM_OP_CACHE_DAEMONSETS,
	.pods = KMM_OP_CACHE_DPPODS,
	.target_label = true,
	.spec = dp_spec,
	.status = dp_status,
	.volumes = dp_volumes,
	.mounts = dp_mounts,
};

int kmm_op_dp_daemonset(const struct kmm_module *m, json_t **ret, struct kmm_error **err)
{
	return kmm_op_plugin_daemonset(&kmm_op_dp_kind, m, ret, err);
}
