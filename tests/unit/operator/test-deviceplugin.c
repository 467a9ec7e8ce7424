/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device plugin DaemonSet's shape (lib/operator/deviceplugin-ds.c), whole,
 * against upstream's (reference §3.6): name, selection labels with the
 * version, owner, node selector on the ready and device-plugin-target labels
 * (the Module's selector for a Module with only a device plugin),
 * system-node-critical, tolerations, ServiceAccount, pull secret, the
 * privileged container with the kubelet's device-plugins mount before the
 * user's, the privileged init container, the user's volumes after kmm's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/shared-json.h"
#include "lib/operator/deviceplugin.h"

static struct kmm_module *module(const char *text)
{
	json_error_t jerr;
	_cleanup_json_ json_t *j = json_loads(text, 0, &jerr);
	struct kmm_module *m = NULL;
	struct kmm_error *err = NULL;

	assert_non_null(j);
	if (kmm_module_from_json(j, 0, &m, &err) < 0)
		fail_msg("%s", kmm_error_message(err));
	return m;
}

static json_t *daemonset(const struct kmm_module *m)
{
	struct kmm_error *err = NULL;
	json_t *ds = NULL;

	if (kmm_op_dp_daemonset(m, &ds, &err) < 0)
		fail_msg("%s", kmm_error_message(err));
	return ds;
}

/* ds without its hash annotation equals want (JSON text); the hash is there. */
static void assert_shape(json_t *ds, const char *want_text)
{
	json_error_t jerr;
	_cleanup_json_ json_t *want = json_loads(want_text, 0, &jerr);
	json_t *ann = json_object_get(json_object_get(ds, "metadata"), "annotations");

	if (!want)
		fail_msg("expected JSON: %s at %d", jerr.text, jerr.position);
	assert_non_null(json_string_value(json_object_get(ann, KMM_ANN_DEVICE_PLUGIN_HASH)));
	json_object_del(ann, KMM_ANN_DEVICE_PLUGIN_HASH);
	if (!json_equal(ds, want)) {
		_cleanup_free_ char *got = json_dumps(ds, JSON_SORT_KEYS | JSON_INDENT(1));

		fail_msg("got %s", got);
	}
}

#define FULL_MODULE                                                                                \
	"{\"apiVersion\": \"kmm.sigs.x-k8s.io/v1beta1\", \"kind\": \"Module\","                    \
	" \"metadata\": {\"name\": \"gpu\", \"namespace\": \"demo\", \"uid\": \"u-1\"},"           \
	" \"spec\": {\"selector\": {\"gpu\": \"yes\"}, \"imageRepoSecret\": {\"name\": \"pull\"}," \
	"  \"tolerations\": [{\"key\": \"gpu\", \"operator\": \"Exists\", \"effect\": "            \
	"\"NoSchedule\"}],"                                                                        \
	"  \"moduleLoader\": {\"container\": {\"version\": \"v2\", \"modprobe\": "                 \
	"{\"moduleName\": "                                                                        \
	"\"gpu\"}, \"kernelMappings\": [{\"regexp\": \"^.*$\", \"containerImage\": "               \
	"\"r/gpu:k\"}]}},"                                                                         \
	"  \"devicePlugin\": {\"serviceAccountName\": \"dp-sa\","                                  \
	"   \"automountServiceAccountToken\": false,"                                              \
	"   \"volumes\": [{\"name\": \"dev\", \"hostPath\": {\"path\": \"/dev\"}}],"               \
	"   \"initContainer\": {\"image\": \"r/init:1\", \"args\": [\"prepare\"]},"                \
	"   \"container\": {\"image\": \"r/dp:1\", \"imagePullPolicy\": \"Always\","               \
	"    \"args\": [\"-v\"], \"env\": [{\"name\": \"A\", \"value\": \"1\"}],"                  \
	"    \"resources\": {\"limits\": {\"cpu\": \"1\"}},"                                       \
	"    \"volumeMounts\": [{\"name\": \"dev\", \"mountPath\": \"/dev\"}]}}}}"

static void test_full_shape(void **unused)
{
	_cleanup_(kmm_module_freep) struct kmm_module *m = module(FULL_MODULE);
	_cleanup_json_ json_t *ds = daemonset(m);

	(void)unused;
	assert_shape(
	    ds,
	    "{\"apiVersion\": \"apps/v1\", \"kind\": \"DaemonSet\","
	    " \"metadata\": {\"generateName\": \"gpu-device-plugin-\", \"namespace\": \"demo\","
	    "  \"labels\": {\"kmm.node.kubernetes.io/module.name\": \"gpu\","
	    "   \"kmm.node.kubernetes.io/role\": \"device-plugin\","
	    "   \"beta.kmm.node.kubernetes.io/version-schedule-pod.demo.gpu\": \"v2\"},"
	    "  \"annotations\": {},"
	    "  \"ownerReferences\": [{\"apiVersion\": \"kmm.sigs.x-k8s.io/v1beta1\", \"kind\": "
	    "\"Module\", \"name\": \"gpu\", \"uid\": \"u-1\", \"controller\": true,"
	    "   \"blockOwnerDeletion\": true}]},"
	    " \"spec\": {\"selector\": {\"matchLabels\": {\"kmm.node.kubernetes.io/module.name\": "
	    "\"gpu\", \"kmm.node.kubernetes.io/role\": \"device-plugin\","
	    "   \"beta.kmm.node.kubernetes.io/version-schedule-pod.demo.gpu\": \"v2\"}},"
	    "  \"template\": {\"metadata\": {\"labels\": {\"kmm.node.kubernetes.io/module.name\": "
	    "\"gpu\", \"kmm.node.kubernetes.io/role\": \"device-plugin\","
	    "    \"beta.kmm.node.kubernetes.io/version-schedule-pod.demo.gpu\": \"v2\"}},"
	    "   \"spec\": {\"priorityClassName\": \"system-node-critical\","
	    "    \"nodeSelector\": {\"kmm.node.kubernetes.io/demo.gpu.ready\": \"\","
	    "     \"kmm.node.kubernetes.io/demo.gpu.device-plugin-target\": \"\","
	    "     \"beta.kmm.node.kubernetes.io/version-schedule-pod.demo.gpu\": \"v2\"},"
	    "    \"serviceAccountName\": \"dp-sa\", \"automountServiceAccountToken\": false,"
	    "    \"tolerations\": [{\"key\": \"gpu\", \"operator\": \"Exists\", \"effect\": "
	    "\"NoSchedule\"}],"
	    "    \"imagePullSecrets\": [{\"name\": \"pull\"}],"
	    "    \"volumes\": [{\"name\": \"kubelet-device-plugins\", \"hostPath\": {\"path\": "
	    "\"/var/lib/kubelet/device-plugins\", \"type\": \"Directory\"}},"
	    "     {\"name\": \"dev\", \"hostPath\": {\"path\": \"/dev\"}}],"
	    "    \"initContainers\": [{\"name\": \"device-plugin-init\", \"image\": \"r/init:1\","
	    "     \"args\": [\"prepare\"], \"securityContext\": {\"privileged\": true}}],"
	    "    \"containers\": [{\"name\": \"device-plugin\", \"image\": \"r/dp:1\","
	    "     \"imagePullPolicy\": \"Always\", \"args\": [\"-v\"],"
	    "     \"env\": [{\"name\": \"A\", \"value\": \"1\"}],"
	    "     \"resources\": {\"limits\": {\"cpu\": \"1\"}},"
	    "     \"securityContext\": {\"privileged\": true},"
	    "     \"volumeMounts\": [{\"name\": \"kubelet-device-plugins\", \"mountPath\": "
	    "\"/var/lib/kubelet/device-plugins\"}, {\"name\": \"dev\", \"mountPath\": \"/dev\"}]}]"
	    "}}}}");
}

#define INTREE_MODULE                                                                              \
	"{\"apiVersion\": \"kmm.sigs.x-k8s.io/v1beta1\", \"kind\": \"Module\","                    \
	" \"metadata\": {\"name\": \"nic\", \"namespace\": \"net\", \"uid\": \"u-2\"},"            \
	" \"spec\": {\"selector\": {\"nic\": \"x\"},"                                              \
	"  \"devicePlugin\": {\"container\": {\"image\": \"r/nic-dp:1\"}}}}"

/* In-tree drivers: no module to wait for, the device plugin goes where the selector says. */
static void test_device_plugin_only(void **unused)
{
	_cleanup_(kmm_module_freep) struct kmm_module *m = module(INTREE_MODULE);
	_cleanup_json_ json_t *ds = daemonset(m);

	(void)unused;
	assert_shape(
	    ds,
	    "{\"apiVersion\": \"apps/v1\", \"kind\": \"DaemonSet\","
	    " \"metadata\": {\"generateName\": \"nic-device-plugin-\", \"namespace\": \"net\","
	    "  \"labels\": {\"kmm.node.kubernetes.io/module.name\": \"nic\","
	    "   \"kmm.node.kubernetes.io/role\": \"device-plugin\"},"
	    "  \"annotations\": {},"
	    "  \"ownerReferences\": [{\"apiVersion\": \"kmm.sigs.x-k8s.io/v1beta1\", \"kind\": "
	    "\"Module\", \"name\": \"nic\", \"uid\": \"u-2\", \"controller\": true,"
	    "   \"blockOwnerDeletion\": true}]},"
	    " \"spec\": {\"selector\": {\"matchLabels\": {\"kmm.node.kubernetes.io/module.name\": "
	    "\"nic\", \"kmm.node.kubernetes.io/role\": \"device-plugin\"}},"
	    "  \"template\": {\"metadata\": {\"labels\": {\"kmm.node.kubernetes.io/module.name\": "
	    "\"nic\", \"kmm.node.kubernetes.io/role\": \"device-plugin\"}},"
	    "   \"spec\": {\"priorityClassName\": \"system-node-critical\","
	    "    \"nodeSelector\": {\"nic\": \"x\"},"
	    "    \"volumes\": [{\"name\": \"kubelet-device-plugins\", \"hostPath\": {\"path\": "
	    "\"/var/lib/kubelet/device-plugins\", \"type\": \"Directory\"}}],"
	    "    \"containers\": [{\"name\": \"device-plugin\", \"image\": \"r/nic-dp:1\","
	    "     \"securityContext\": {\"privileged\": true},"
	    "     \"volumeMounts\": [{\"name\": \"kubelet-device-plugins\", \"mountPath\": "
	    "\"/var/lib/kubelet/device-plugins\"}]}]"
	    "}}}}");
}

static const char *hash_of(const json_t *ds)
{
	return json_string_value(
	    json_object_get(json_object_get(json_object_get(ds, "metadata"), "annotations"),
			    KMM_ANN_DEVICE_PLUGIN_HASH));
}

/* The hash follows the spec: same input, same hash; a new image, a new hash. */
static void test_hash_follows_spec(void **unused)
{
	_cleanup_(kmm_module_freep) struct kmm_module *a = module(INTREE_MODULE);
	_cleanup_(kmm_module_freep) struct kmm_module *b = module(INTREE_MODULE);
	_cleanup_json_ json_t *da = daemonset(a), *db = daemonset(b), *dc = NULL;

	(void)unused;
	assert_string_equal(hash_of(da), hash_of(db));
	free(b->spec.device_plugin->container.image);
	b->spec.device_plugin->container.image = strdup("r/nic-dp:2");
	dc = daemonset(b);
	assert_string_not_equal(hash_of(da), hash_of(dc));
}

static void test_labels(void **unused)
{
	_cleanup_free_ char *t = kmm_op_dp_target_label("ns", "m");
	_cleanup_free_ char *r = kmm_op_dp_ready_label("ns", "m");
	_cleanup_free_ char *v = kmm_op_dp_version_label("ns", "m");

	(void)unused;
	assert_string_equal(t, "kmm.node.kubernetes.io/ns.m.device-plugin-target");
	assert_string_equal(r, "kmm.node.kubernetes.io/ns.m.device-plugin-ready");
	assert_string_equal(v, "beta.kmm.node.kubernetes.io/version-schedule-pod.ns.m");
}

static void test_no_device_plugin(void **unused)
{
	_cleanup_(kmm_module_freep) struct kmm_module *m =
	    module("{\"apiVersion\": \"kmm.sigs.x-k8s.io/v1beta1\", \"kind\": \"Module\","
		   " \"metadata\": {\"name\": \"x\", \"namespace\": \"n\"},"
		   " \"spec\": {\"selector\": {}}}");
	struct kmm_error *err = NULL;
	json_t *ds = NULL;

	(void)unused;
	assert_true(kmm_op_dp_daemonset(m, &ds, &err) < 0);
	assert_null(ds);
	kmm_error_free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_shape),	  cmocka_unit_test(test_device_plugin_only),
		cmocka_unit_test(test_hash_follows_spec), cmocka_unit_test(test_labels),
		cmocka_unit_test(test_no_device_plugin),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
