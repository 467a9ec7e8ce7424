/* SPDX-License-Identifier: Apache-2.0 */
/* Pure parts of kmm-operator: worker pod shape, taints, labels, the NMC overlay. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/shared-json.h"
#include "kmm/operator-runtime.h"
#include "lib/informer/informer-internal.h"
#include "lib/operator/engine-internal.h"

static json_t *parse(const char *text)
{
	json_t *j = json_loads(text, 0, NULL);

	assert_non_null(j);
	return j;
}

static struct kmm_module_config *config(const char *text)
{
	_cleanup_json_ json_t *j = parse(text);
	struct kmm_module_config *c = NULL;

	assert_int_equal(kmm_module_config_from_json(j, "", 0, &c, NULL), 0);
	return c;
}

static const char *path_str(const json_t *root, const char *const *keys)
{
	const json_t *j = root;

	for (size_t i = 0; keys[i]; i++)
		j = json_is_array(j) ? json_array_get(j, (size_t)strtoul(keys[i], NULL, 10))
				     : json_object_get(j, keys[i]);
	return json_string_value(j);
}

#define STR(root, ...) path_str(root, (const char *const[]){ __VA_ARGS__, NULL })

static void render(const char *cfg_text, enum kmm_op_worker_action a, json_t **ret)
{
	struct kmm_operator_config op;
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *c = config(cfg_text);
	_cleanup_json_ json_t *tols = parse("[{\"key\":\"k\",\"operator\":\"Exists\"}]");
	struct kmm_op_worker_params p = {
		.action = a,
		.node = "n1",
		.nmc_uid = "uid-1",
		.module_name = "mod",
		.module_namespace = "ns",
		.tolerations = tols,
		.version = "v1",
		.config = c,
		.op = &op,
	};

	assert_int_equal(kmm_operator_config_init(&op), 0);
	free(op.worker_image);
	op.worker_image = strdup("worker:1");
	assert_int_equal(kmm_op_worker_pod(&p, ret, NULL), 0);
	kmm_operator_config_free(&op);
}

static void test_loader_shape(void **state)
{
	_cleanup_json_ json_t *pod = NULL;
	const json_t *c, *sc;

	render("{\"kernelVersion\":\"6.1.0\",\"containerImage\":\"reg/img:1\","
	       "\"modprobe\":{\"moduleName\":\"a\",\"modulesLoadingOrder\":[\"a\",\"b\",\"c\"]}}",
	       KMM_OP_LOAD, &pod);
	assert_string_equal(STR(pod, "metadata", "name"), "kmm-worker-n1-mod");
	assert_string_equal(STR(pod, "metadata", "namespace"), "ns");
	assert_string_equal(STR(pod, "metadata", "labels", KMM_LABEL_WORKER_ACTION), "Load");
	assert_string_equal(STR(pod, "metadata", "labels", KMM_LABEL_MODULE_NAME), "mod");
	assert_string_equal(STR(pod, "metadata", "annotations", KMM_ANN_MODULES_ORDER),
			    "softdep a pre: b\nsoftdep b pre: c\n");
	assert_string_equal(STR(pod, "metadata", "annotations", KMM_ANN_WORKER_VERSION), "v1");
	assert_non_null(STR(pod, "metadata", "annotations", KMM_ANN_WORKER_HASH));
	assert_string_equal(STR(pod, "metadata", "finalizers", "0"), KMM_FINALIZER_WORKER);
	assert_string_equal(STR(pod, "metadata", "ownerReferences", "0", "kind"),
			    "NodeModulesConfig");
	assert_string_equal(STR(pod, "spec", "nodeName"), "n1");
	assert_string_equal(STR(pod, "spec", "restartPolicy"), "OnFailure");
	assert_string_equal(STR(pod, "spec", "serviceAccountName"), "default");
	assert_string_equal(STR(pod, "spec", "initContainers", "1", "args", "0"),
			    "/opt/lib/modules/6.1.0");
	assert_string_equal(STR(pod, "spec", "initContainers", "1", "args", "1"),
			    "/tmp/opt/lib/modules/6.1.0");
	c = json_array_get(json_object_get(json_object_get(pod, "spec"), "containers"), 0);
	assert_string_equal(STR(c, "args", "1"), "load");
	sc = json_object_get(c, "securityContext");
	assert_string_equal(STR(sc, "capabilities", "add", "0"), "SYS_MODULE");
	assert_int_equal(json_integer_value(json_object_get(sc, "runAsUser")), 0);
	assert_string_equal(STR(sc, "seLinuxOptions", "type"), "spc_t");
	assert_null(json_object_get(sc, "privileged"));
	assert_string_equal(STR(pod, "spec", "volumes", "3", "name"), "copier");
	assert_string_equal(STR(pod, "spec", "volumes", "4", "name"), "modules-order");
}

static void test_firmware_loader_is_root(void **state)
{
	_cleanup_json_ json_t *pod = NULL, *unl = NULL;
	const json_t *sc;

	render("{\"kernelVersion\":\"6.1.0\",\"containerImage\":\"reg/img:1\","
	       "\"modprobe\":{\"moduleName\":\"a\",\"firmwarePath\":\"/fw\"}}",
	       KMM_OP_LOAD, &pod);
	sc = json_object_get(
	    json_array_get(json_object_get(json_object_get(pod, "spec"), "containers"), 0),
	    "securityContext");
	/* Not privileged: the rest of the context is test-podsecurity's. */
	assert_null(json_object_get(sc, "privileged"));
	assert_int_equal(json_integer_value(json_object_get(sc, "runAsUser")), 0);
	assert_string_equal(STR(pod, "spec", "initContainers", "1", "args", "2"), "/fw");
	assert_string_equal(STR(pod, "spec", "initContainers", "1", "args", "3"), "/tmp/fw");
	render("{\"kernelVersion\":\"6.1.0\",\"containerImage\":\"reg/img:1\","
	       "\"modprobe\":{\"moduleName\":\"a\",\"firmwarePath\":\"/fw\"}}",
	       KMM_OP_UNLOAD, &unl);
	sc = json_object_get(
	    json_array_get(json_object_get(json_object_get(unl, "spec"), "containers"), 0),
	    "securityContext");
	assert_null(json_object_get(sc, "privileged"));
	assert_null(STR(unl, "metadata", "annotations", KMM_ANN_WORKER_VERSION));
}

static void test_hash_changes_with_spec(void **state)
{
	_cleanup_json_ json_t *a = NULL, *b = NULL, *c = NULL;
	const char *cfg1 = "{\"kernelVersion\":\"6.1.0\",\"containerImage\":\"i:1\","
			   "\"modprobe\":{\"moduleName\":\"a\"}}";

	render(cfg1, KMM_OP_LOAD, &a);
	render(cfg1, KMM_OP_LOAD, &b);
	render("{\"kernelVersion\":\"6.1.0\",\"containerImage\":\"i:2\","
	       "\"modprobe\":{\"moduleName\":\"a\"}}",
	       KMM_OP_LOAD, &c);
	assert_string_equal(STR(a, "metadata", "annotations", KMM_ANN_WORKER_HASH),
			    STR(b, "metadata", "annotations", KMM_ANN_WORKER_HASH));
	assert_string_not_equal(STR(a, "metadata", "annotations", KMM_ANN_WORKER_HASH),
				STR(c, "metadata", "annotations", KMM_ANN_WORKER_HASH));
}

static void test_taints(void **state)
{
	_cleanup_json_ json_t *cordoned =
	    parse("{\"spec\":{\"taints\":[{\"key\":\"node.kubernetes.io/unschedulable\","
		  "\"effect\":\"NoSchedule\"}]}}");
	_cleanup_json_ json_t *pressure =
	    parse("{\"spec\":{\"taints\":[{\"key\":\"node.kubernetes.io/memory-pressure\","
		  "\"effect\":\"NoSchedule\"},{\"key\":\"node.kubernetes.io/not-ready\","
		  "\"effect\":\"NoExecute\"},{\"key\":\"x\",\"effect\":\"PreferNoSchedule\"}]}}");
	_cleanup_json_ json_t *gpu =
	    parse("{\"spec\":{\"taints\":[{\"key\":\"gpu\",\"value\":\"yes\",\"effect\":"
		  "\"NoExecute\"}]}}");
	_cleanup_json_ json_t *eq =
	    parse("[{\"key\":\"gpu\",\"operator\":\"Equal\",\"value\":\"yes\"}]");
	_cleanup_json_ json_t *ne = parse("[{\"key\":\"gpu\",\"value\":\"no\"}]");
	_cleanup_json_ json_t *all = parse("[{\"operator\":\"Exists\"}]");
	_cleanup_json_ json_t *other_effect =
	    parse("[{\"key\":\"gpu\",\"operator\":\"Exists\",\"effect\":\"NoSchedule\"}]");

	assert_false(kmm_op_node_schedulable(cordoned, NULL));
	assert_true(kmm_op_node_schedulable(cordoned, all));
	assert_true(kmm_op_node_schedulable(pressure, NULL));
	assert_false(kmm_op_node_schedulable(gpu, NULL));
	assert_true(kmm_op_node_schedulable(gpu, eq));
	assert_false(kmm_op_node_schedulable(gpu, ne));
	assert_false(kmm_op_node_schedulable(gpu, other_effect));
}

static void test_labels_and_selector(void **state)
{
	_cleanup_free_ char *r = kmm_op_ready_label("ns", "m");
	_cleanup_free_ char *v = kmm_op_version_ready_label("ns", "m");
	_cleanup_free_ char *c = kmm_op_nmc_configured_label("ns", "m");
	_cleanup_free_ char *u = kmm_op_nmc_in_use_label("ns", "m");
	_cleanup_json_ json_t *node =
	    parse("{\"metadata\":{\"labels\":{\"a\":\"1\",\"b\":\"\"}},\"status\":{\"nodeInfo\":{"
		  "\"kernelVersion\":\"6.1\",\"bootID\":\"x\"},\"conditions\":[{\"type\":"
		  "\"Ready\",\"status\":\"True\"}]}}");
	struct kmm_strmap sel = {};

	assert_string_equal(r, "kmm.node.kubernetes.io/ns.m.ready");
	assert_string_equal(v, "kmm.node.kubernetes.io/ns.m.version.ready");
	assert_string_equal(c, "beta.kmm.node.kubernetes.io/ns.m.module-configured");
	assert_string_equal(u, "beta.kmm.node.kubernetes.io/ns.m.module-in-use");
	assert_true(kmm_op_selector_matches(&sel, node));
	kmm_strmap_set(&sel, "a", "1");
	kmm_strmap_set(&sel, "b", "");
	assert_true(kmm_op_selector_matches(&sel, node));
	kmm_strmap_set(&sel, "a", "2");
	assert_false(kmm_op_selector_matches(&sel, node));
	kmm_strmap_done(&sel);
	assert_string_equal(kmm_op_node_kernel(node), "6.1");
	assert_string_equal(kmm_op_node_boot_id(node), "x");
	assert_true(kmm_op_node_ready(node));
}

static struct kmm_obj *node_obj(const char *text)
{
	_cleanup_json_ json_t *j = parse(text);
	struct kmm_obj *o = NULL;

	assert_int_equal(kube_obj_new(j, "n1", &o), 0);
	return o;
}

/* What moved on a node decides who reconciles: kmm's own labels are not targeting. */
static void test_node_change(void **state)
{
	struct kmm_obj *base = node_obj("{\"metadata\":{\"labels\":{\"gpu\":\"yes\"}}}");
	struct kmm_obj *own =
	    node_obj("{\"metadata\":{\"labels\":{\"gpu\":\"yes\","
		     "\"kmm.node.kubernetes.io/ns.m.ready\":\"\","
		     "\"kmm.node.kubernetes.io/ns.m.device-plugin-ready\":\"\","
		     "\"kmm.node.kubernetes.io/ns.m.device-plugin-target\":\"\"}}}");
	struct kmm_obj *version =
	    node_obj("{\"metadata\":{\"labels\":{\"gpu\":\"yes\","
		     "\"kmm.node.kubernetes.io/version-module.ns.m\":\"2\"}}}");
	struct kmm_obj *user = node_obj("{\"metadata\":{\"labels\":{\"gpu\":\"no\"}}}");
	struct kmm_obj *tainted = node_obj("{\"metadata\":{\"labels\":{\"gpu\":\"yes\"}},"
					   "\"spec\":{\"taints\":[{\"key\":\"k\"}]}}");

	assert_int_equal(kmm_op_node_change(base, base), 0);
	assert_int_equal(kmm_op_node_change(base, own), KMM_OP_NODE_LABELS);
	assert_int_equal(kmm_op_node_change(base, version),
			 KMM_OP_NODE_TARGETING | KMM_OP_NODE_LABELS);
	assert_int_equal(kmm_op_node_change(base, user),
			 KMM_OP_NODE_TARGETING | KMM_OP_NODE_LABELS);
	assert_int_equal(kmm_op_node_change(base, tainted), KMM_OP_NODE_TARGETING);
	kmm_obj_unref(base);
	kmm_obj_unref(own);
	kmm_obj_unref(version);
	kmm_obj_unref(user);
	kmm_obj_unref(tainted);
}

static void test_overlay(void **state)
{
	struct kmm_op_overlay *o = kmm_op_overlay_new();
	_cleanup_json_ json_t *v5 =
	    parse("{\"metadata\":{\"name\":\"n\",\"resourceVersion\":\"5\"}}");
	_cleanup_json_ json_t *v3 =
	    parse("{\"metadata\":{\"name\":\"n\",\"resourceVersion\":\"3\"}}");
	json_t *got;

	assert_true(kmm_op_rv_older("9", "10"));
	assert_false(kmm_op_rv_older("10", "9"));
	assert_false(kmm_op_rv_older("a", "b"));
	kmm_op_overlay_put(o, NULL, v5);
	kmm_op_overlay_put(o, NULL, v3); /* older: ignored */
	got = kmm_op_overlay_get(o, NULL, "n");
	assert_string_equal(kmm_kube_meta_str(got, "resourceVersion"), "5");
	json_decref(got);
	kmm_op_overlay_seen(o, "n", "4", false); /* the cache is still behind */
	got = kmm_op_overlay_get(o, NULL, "n");
	assert_non_null(got);
	json_decref(got);
	kmm_op_overlay_seen(o, "n", "5", false); /* caught up */
	assert_null(kmm_op_overlay_get(o, NULL, "n"));
	kmm_op_overlay_free(o);
}

#define CFG(img)                                                                                   \
	"{\"kernelVersion\":\"6.1.0\",\"containerImage\":\"" img                                   \
	"\",\"modprobe\":{\"moduleName\":\"m\"}}"

static void test_nmc_digests(void **state)
{
	struct kmm_op_overlay *o = kmm_op_overlay_new();
	struct kmm_op_nmc_digests *c = kmm_op_nmc_digests_new();
	_cleanup_json_ json_t *v5 =
	    parse("{\"metadata\":{\"name\":\"n1\",\"resourceVersion\":\"5\",\"labels\":{"
		  "\"beta.kmm.node.kubernetes.io/a.m1.module-configured\":\"\","
		  "\"beta.kmm.node.kubernetes.io/a.m1.module-in-use\":\"\","
		  "\"beta.kmm.node.kubernetes.io/a.my.mod.module-configured\":\"\","
		  "\"beta.kmm.node.kubernetes.io/nodots\":\"\",\"other\":\"x\"}},"
		  "\"spec\":{\"modules\":["
		  "{\"name\":\"m1\",\"namespace\":\"a\",\"config\":" CFG(
		      "i:1") "},"
			     "{\"name\":\"m2\",\"namespace\":\"a\",\"config\":" CFG(
				 "i:2") "}]},"
					"\"status\":{\"modules\":["
					"{\"name\":\"m1\",\"namespace\":\"a\",\"config\":{"
					"\"modprobe\":{\"moduleName\":\"m\"},"
					"\"containerImage\":\"i:1\",\"kernelVersion\":\"6.1.0\"}},"
					"{\"name\":\"m2\",\"namespace\":\"a\",\"config\":" CFG(
					    "i:1") "}]}}");
	_cleanup_json_ json_t *v6 = parse(
	    "{\"metadata\":{\"name\":\"n1\",\"resourceVersion\":\"6\"},\"spec\":{\"modules\":["
	    "{\"name\":\"m2\",\"namespace\":\"a\",\"config\":" CFG("i:2") "}]}}");
	/* The same entry as v5's first, keys in another order. */
	_cleanup_json_ json_t *m1 =
	    parse("{\"config\":" CFG("i:1") ",\"namespace\":\"a\",\"name\":\"m1\"}");
	unsigned char want[KMM_OP_ENTRY_DIGEST_LEN];
	struct kmm_op_nmc_module st;

	assert_non_null(o);
	assert_non_null(c);
	assert_int_equal(kmm_op_nmc_module_get(c, o, NULL, "n1", "a", "m1", &st), 0);
	assert_false(st.nmc_exists);

	kmm_op_overlay_put(o, NULL, v5);
	assert_int_equal(kmm_op_nmc_module_get(c, o, NULL, "n1", "a", "m1", &st), 0);
	assert_true(st.nmc_exists && st.in_spec && st.configured_label && st.in_use_label);
	assert_true(st.loaded); /* the status's config is the same, written differently */
	assert_int_equal(kmm_op_nmc_entry_digest(m1, want), 0);
	assert_memory_equal(want, st.entry_digest, sizeof(want));

	assert_int_equal(kmm_op_nmc_module_get(c, o, NULL, "n1", "a", "m2", &st), 0);
	assert_true(st.in_spec && !st.configured_label && !st.in_use_label);
	assert_false(st.loaded); /* the status shows another image */
	assert_memory_not_equal(want, st.entry_digest, sizeof(want));

	/* A label alone; module names may hold dots, namespaces may not. */
	assert_int_equal(kmm_op_nmc_module_get(c, o, NULL, "n1", "a", "my.mod", &st), 0);
	assert_true(st.nmc_exists && st.configured_label && !st.in_spec && !st.in_use_label);
	assert_int_equal(kmm_op_nmc_module_get(c, o, NULL, "n1", "a", "none", &st), 0);
	assert_true(st.nmc_exists && !st.in_spec && !st.configured_label);
	assert_int_equal(kmm_op_nmc_digests_size(c), 1);

	/* A newer version is read once its resourceVersion shows. */
	kmm_op_overlay_put(o, NULL, v6);
	assert_int_equal(kmm_op_nmc_module_get(c, o, NULL, "n1", "a", "m1", &st), 0);
	assert_true(st.nmc_exists && !st.in_spec && !st.configured_label);
	assert_int_equal(kmm_op_nmc_module_get(c, o, NULL, "n1", "a", "m2", &st), 0);
	assert_true(st.in_spec && !st.loaded);
	assert_int_equal(kmm_op_nmc_digests_size(c), 1);

	kmm_op_nmc_digests_forget(c, "n1");
	assert_int_equal(kmm_op_nmc_digests_size(c), 0);
	kmm_op_nmc_digests_free(c);
	kmm_op_overlay_free(o);
}

/* A failed worker's reason reaches the Module's status: the last line of the
 * termination message (the worker's log tail), control characters blanked. */
static void test_worker_failure_quotes_the_worker(void **state)
{
	_cleanup_json_ json_t *j = json_loads(
	    "{\"metadata\":{\"name\":\"w\",\"namespace\":\"ns\"},\"spec\":{\"nodeName\":\"n1\"},"
	    "\"status\":{\"containerStatuses\":[{\"restartCount\":3,\"lastState\":{\"terminated\":"
	    "{\"exitCode\":1,\"reason\":\"Error\",\"message\":\"pulling\\nkmm-worker: load vmk: "
	    "the module is not signed\\tand this kernel only loads signed modules\\n\\n\"}}}]}}",
	    0, NULL);
	_cleanup_obj_unref_ struct kmm_obj *pod = NULL;
	char why[512];

	(void)state;
	assert_non_null(j);
	assert_int_equal(kmm_obj_new(j, "ns/w", &pod), 0);
	assert_true(kmm_op_worker_pod_trouble(pod, why, sizeof(why)));
	assert_string_equal(why, "node n1: worker failed 3 time(s), last exit code 1 (Error): "
				 "kmm-worker: load vmk: the module is not signed and this kernel "
				 "only loads signed modules");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_loader_shape),
		cmocka_unit_test(test_worker_failure_quotes_the_worker),
		cmocka_unit_test(test_firmware_loader_is_root),
		cmocka_unit_test(test_hash_changes_with_spec),
		cmocka_unit_test(test_node_change),
		cmocka_unit_test(test_taints),
		cmocka_unit_test(test_labels_and_selector),
		cmocka_unit_test(test_overlay),
		cmocka_unit_test(test_nmc_digests),
	};
	return cmocka_run_group_tests_name("operator-runtime", tests, NULL, NULL);
}
