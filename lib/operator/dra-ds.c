/* SPDX-License-Identifier: Apache-2.0 */
/*
 * DRA's kind (plugin.h) and DeviceClasses, in upstream's shape (reference
 * §3.7). The DaemonSet is plugin-ds.c's with role "dra": named
 * "<module>-dra-<random>", its pods on the host network on nodes where the
 * module is loaded (no target label: DRA has none), the main container "dra"
 * and the init container "dra-init". kmm mounts the kubelet's plugins and
 * plugins_registry directories (where the driver puts its socket and
 * registers) and the CDI directory (where it writes the devices' CDI specs),
 * gives the driver its node, its pod and those paths in the environment
 * (before the user's variables, so the user's win), and probes its gRPC
 * health service.
 */
#include "kmm/shared-json.h"
#include "dra.h"

const struct kmm_kube_resource kmm_op_deviceclasses = { "resource.k8s.io", "v1", "deviceclasses",
							false };

static const struct kmm_plugin_spec *dra_spec(const struct kmm_module *m)
{
	return m->spec.dra;
}

static const struct kmm_daemonset_status *dra_status(const struct kmm_module *m)
{
	return &m->status.dra;
}

static json_t *dra_volumes(void)
{
	return json_pack("[{s:s, s:{s:s, s:s}}, {s:s, s:{s:s, s:s}}, {s:s, s:{s:s, s:s}}]", "name",
			 "kubelet-plugins", "hostPath", "path", KMM_DRA_PLUGINS_DIR, "type",
			 "DirectoryOrCreate", "name", "kubelet-plugins-registry", "hostPath",
			 "path", KMM_DRA_REGISTRY_DIR, "type", "Directory", "name", "cdi",
			 "hostPath", "path", KMM_DRA_CDI_DIR, "type", "DirectoryOrCreate");
}

static json_t *dra_mounts(void)
{
	return json_pack("[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}]", "name", "kubelet-plugins",
			 "mountPath", KMM_DRA_PLUGINS_DIR, "name", "kubelet-plugins-registry",
			 "mountPath", KMM_DRA_REGISTRY_DIR, "name", "cdi", "mountPath",
			 KMM_DRA_CDI_DIR);
}

static json_t *field_env(const char *name, const char *path)
{
	return json_pack("{s:s, s:{s:{s:s}}}", "name", name, "valueFrom", "fieldRef", "fieldPath",
			 path);
}

static json_t *value_env(const char *name, const char *value)
{
	return json_pack("{s:s, s:s}", "name", name, "value", value);
}

/* kmm's environment before the user's, and the liveness probe on the health port. */
static int dra_finish_container(json_t *c)
{
	_cleanup_json_ json_t *env =
	    json_pack("[o, o, o, o, o, o]", field_env("NODE_NAME", "spec.nodeName"),
		      field_env("POD_UID", "metadata.uid"), value_env("CDI_ROOT", KMM_DRA_CDI_DIR),
		      value_env("KUBELET_REGISTRAR_DIRECTORY_PATH", KMM_DRA_REGISTRY_DIR),
		      value_env("KUBELET_PLUGINS_DIRECTORY_PATH", KMM_DRA_PLUGINS_DIR),
		      value_env("HEALTHCHECK_PORT", KMM_DRA_HEALTH_PORT_STR));
	json_t *probe =
	    json_pack("{s:{s:i, s:s}, s:i, s:i, s:i, s:i}", "grpc", "port", KMM_DRA_HEALTH_PORT,
		      "service", "liveness", "initialDelaySeconds", 30, "periodSeconds", 10,
		      "timeoutSeconds", 5, "failureThreshold", 3);

	json_t *user_env = json_object_get(c, "env");

	if (!env || (user_env && json_array_extend(env, user_env) < 0) ||
	    json_object_set(c, "env", env) < 0 ||
	    json_object_set_new(c, "livenessProbe", probe) < 0)
		return -1;
	return 0;
}

const struct kmm_op_plugin_kind kmm_op_dra_kind = {
	.role = KMM_ROLE_DRA,
	.key = "dra",
	.reconciler = KMM_OP_DRA,
	.daemonsets = KMM_OP_CACHE_DRA_DAEMONSETS,
	.pods = KMM_OP_CACHE_DRAPODS,
	.host_network = true,
	.spec = dra_spec,
	.status = dra_status,
	.volumes = dra_volumes,
	.mounts = dra_mounts,
	.finish_container = dra_finish_container,
	.sync_more = kmm_op_dra_sync_device_classes,
};

int kmm_op_dra_daemonset(const struct kmm_module *m, json_t **ret, struct kmm_error **err)
{
	return kmm_op_plugin_daemonset(&kmm_op_dra_kind, m, ret, err);
}

json_t *kmm_op_dra_device_class(const struct kmm_module *m, size_t i)
{
	const struct kmm_device_class *c = &m->spec.dra->device_classes[i];
	_cleanup_json_ json_t *dc = json_pack(
	    "{s:s, s:s, s:{s:s, s:{s:s, s:s}}, s:{}}", "apiVersion", "resource.k8s.io/v1", "kind",
	    "DeviceClass", "metadata", "name", c->name, "labels", KMM_LABEL_MODULE_NAME, m->name,
	    KMM_LABEL_MODULE_NAMESPACE, m->namespace, "spec");
	json_t *spec = json_object_get(dc, "spec");

	/* An empty list is no list: the API server stores none, and it must not look changed. */
	if (!dc ||
	    (json_array_size(c->selectors) &&
	     json_object_set(spec, "selectors", c->selectors) < 0) ||
	    (json_array_size(c->config) && json_object_set(spec, "config", c->config) < 0))
		return NULL;
	return TAKE_PTR(dc);
}
