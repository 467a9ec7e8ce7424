/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hub and spoke's pure logic: the kernel-versions claim, digest pinning, the
 * spoke's Module with literal mappings, its ManifestWork, and KMM_MANAGED.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/api-kernel.h"
#include "kmm/operator-config.h"
#include "kmm/operator-hub.h"
#include "kmm/shared-json.h"
#include "kmm/shared-strv.h"

static const char *str_of(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

#define DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DIGEST2 "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static void test_claim_value_sorted_unique(void **state)
{
	const char *kernels[] = { "6.8.0-1", NULL, "5.15.0-9", "6.8.0-1", "", "6.1.0+" };
	_cleanup_free_ char *v = kmm_hub_claim_value(kernels, 6);
	_cleanup_free_ char *none = kmm_hub_claim_value(NULL, 0);

	assert_string_equal(v, "5.15.0-9\n6.1.0+\n6.8.0-1");
	assert_string_equal(none, "");
}

static void test_claim_kernels(void **state)
{
	_cleanup_strv_free_ char **k = kmm_hub_claim_kernels("5.15.0-9\n\n6.8.0-1\n");
	_cleanup_strv_free_ char **empty = kmm_hub_claim_kernels("");

	assert_int_equal(kmm_strv_length(k), 2);
	assert_string_equal(k[0], "5.15.0-9");
	assert_string_equal(k[1], "6.8.0-1");
	assert_non_null(empty);
	assert_int_equal(kmm_strv_length(empty), 0);
}

static void test_cluster_claim(void **state)
{
	_cleanup_json_ json_t *c = json_loads(
	    "{\"metadata\":{\"name\":\"spoke1\"},\"status\":{\"clusterClaims\":["
	    "{\"name\":\"id.k8s.io\",\"value\":\"x\"},"
	    "{\"name\":\"kernel-versions.kmm.node.kubernetes.io\",\"value\":\"6.1.0\\n6.8.0\"}]}}",
	    0, NULL);
	_cleanup_json_ json_t *bare = json_loads("{\"metadata\":{\"name\":\"s\"}}", 0, NULL);

	assert_string_equal(kmm_hub_cluster_claim(c, KMM_CLAIM_KERNEL_VERSIONS), "6.1.0\n6.8.0");
	assert_null(kmm_hub_cluster_claim(bare, KMM_CLAIM_KERNEL_VERSIONS));
}

static void test_pin_image(void **state)
{
	struct {
		const char *image, *digest, *want;
	} ok[] = {
		{ "registry.example.com/kmm/kmod:6.1.0", DIGEST,
		  "registry.example.com/kmm/kmod@" DIGEST },
		{ "localhost:5000/kmod:v1", DIGEST, "localhost:5000/kmod@" DIGEST },
		{ "localhost:5000/kmod", DIGEST, "localhost:5000/kmod@" DIGEST },
		{ "busybox:1.36", DIGEST, "busybox@" DIGEST },
		/* already pinned: as written, whatever the tag */
		{ "localhost:5000/kmod:v1@" DIGEST, DIGEST, "localhost:5000/kmod:v1@" DIGEST },
		{ "localhost:5000/kmod@" DIGEST, NULL, "localhost:5000/kmod@" DIGEST },
	};
	struct {
		const char *image, *digest, *message;
	} bad[] = {
		{ "localhost:5000/kmod:v1", NULL, "no sha256 digest" },
		{ "localhost:5000/kmod:v1", "sha256:abc", "no sha256 digest" },
		{ "localhost:5000/kmod@" DIGEST, DIGEST2, "the registry serves" },
		{ "", DIGEST, "" },
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		_cleanup_free_ char *out = NULL;
		_cleanup_error_ struct kmm_error *err = NULL;

		assert_int_equal(kmm_hub_pin_image(ok[i].image, ok[i].digest, &out, &err), 0);
		assert_string_equal(out, ok[i].want);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *out = NULL;
		_cleanup_error_ struct kmm_error *err = NULL;

		assert_int_equal(kmm_hub_pin_image(bad[i].image, bad[i].digest, &out, &err),
				 -EINVAL);
		assert_null(out);
		assert_non_null(strstr(kmm_error_message(err), bad[i].message));
	}
}

static const char mcm_text[] =
    "{\"apiVersion\":\"hub.kmm.sigs.x-k8s.io/v1beta1\",\"kind\":\"ManagedClusterModule\","
    "\"metadata\":{\"name\":\"kmod\",\"uid\":\"u-1\",\"generation\":3},"
    "\"spec\":{\"spokeNamespace\":\"kmm\",\"selector\":{\"fleet\":\"a\"},\"moduleSpec\":{"
    "\"selector\":{\"node-role.kubernetes.io/worker\":\"\"},"
    "\"imageRepoSecret\":{\"name\":\"pull\"},"
    "\"moduleLoader\":{\"serviceAccountName\":\"sa\",\"container\":{"
    "\"modprobe\":{\"moduleName\":\"kmod_a\"},"
    "\"inTreeModulesToRemove\":[\"old_a\"],"
    "\"build\":{\"dockerfileConfigMap\":{\"name\":\"df\"}},"
    "\"sign\":{\"keySecret\":{\"name\":\"k\"},\"certSecret\":{\"name\":\"c\"},"
    "\"filesToSign\":[\"/opt/lib/modules/${KERNEL_FULL_VERSION}/kmod_a.ko\"]},"
    "\"kernelMappings\":[{\"regexp\":\"^6\\\\.\",\"containerImage\":"
    "\"registry.example.com/kmod:${KERNEL_FULL_VERSION}\","
    "\"build\":{\"dockerfileConfigMap\":{\"name\":\"df6\"}}},"
    "{\"literal\":\"5.15.0-9\",\"containerImage\":\"registry.example.com/kmod:old\","
    "\"inTreeModulesToRemove\":[\"legacy\"]}]}}}}}";

static struct kmm_mcm *mcm_parse(void)
{
	_cleanup_json_ json_t *j = json_loads(mcm_text, 0, NULL);
	struct kmm_mcm *m = NULL;

	assert_non_null(j);
	assert_int_equal(kmm_mcm_from_json(j, KMM_API_STRICT, &m, NULL), 0);
	return m;
}

static void test_spoke_module_literal_mappings(void **state)
{
	_cleanup_(kmm_mcm_freep) struct kmm_mcm *mcm = mcm_parse();
	char *legacy[] = { (char *)"legacy", NULL };
	char *old_a[] = { (char *)"old_a", NULL };
	struct kmm_tls_options insecure = { .insecure = true };
	const struct kmm_hub_kernel_image k[] = {
		{ "5.15.0-9", "registry.example.com/kmod@" DIGEST, legacy, NULL },
		{ "6.8.0-1", "registry.example.com/kmod@" DIGEST2, old_a, &insecure },
	};
	_cleanup_json_ json_t *mod = kmm_hub_spoke_module(mcm, k, 2);
	_cleanup_(kmm_module_freep) struct kmm_module *parsed = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;
	json_t *c, *maps;

	assert_non_null(mod);
	assert_string_equal(str_of(mod, "kind"), "Module");
	c = json_object_get(json_object_get(json_object_get(mod, "spec"), "moduleLoader"),
			    "container");
	assert_null(json_object_get(c, "build"));
	assert_null(json_object_get(c, "sign"));
	assert_null(json_object_get(c, "inTreeModulesToRemove"));
	maps = json_object_get(c, "kernelMappings");
	assert_int_equal(json_array_size(maps), 2);
	for (size_t i = 0; i < 2; i++) {
		json_t *m = json_array_get(maps, i);

		assert_string_equal(str_of(m, "literal"), k[i].kernel);
		assert_string_equal(str_of(m, "containerImage"), k[i].image);
		assert_null(json_object_get(m, "regexp"));
		assert_null(json_object_get(m, "build"));
		assert_null(json_object_get(m, "sign"));
		assert_string_equal(json_string_value(json_array_get(
					json_object_get(m, "inTreeModulesToRemove"), 0)),
				    k[i].in_tree_modules_to_remove[0]);
	}
	assert_null(json_object_get(json_array_get(maps, 0), "registryTLS"));
	assert_true(json_is_true(
	    json_object_get(json_object_get(json_array_get(maps, 1), "registryTLS"), "insecure")));
	/* The rest of the spec goes as written. */
	assert_string_equal(
	    str_of(json_object_get(json_object_get(mod, "spec"), "imageRepoSecret"), "name"),
	    "pull");
	/* What the spoke gets is a valid Module in spokeNamespace. */
	assert_int_equal(kmm_module_from_json(mod, KMM_API_STRICT, &parsed, &err), 0);
	assert_string_equal(parsed->namespace, "kmm");
	assert_string_equal(parsed->name, "kmod");
	assert_int_equal(kmm_module_validate(parsed, NULL, -1, true, &err), 0);
}

static void test_manifest_work(void **state)
{
	_cleanup_(kmm_mcm_freep) struct kmm_mcm *mcm = mcm_parse();
	_cleanup_json_ json_t *mod = json_pack("{s:s}", "kind", "Module");
	_cleanup_json_ json_t *w = kmm_hub_manifest_work(mcm, "spoke1", mod);
	json_t *meta = json_object_get(w, "metadata"), *owner, *cfg, *paths;

	assert_non_null(w);
	assert_string_equal(str_of(w, "apiVersion"), "work.open-cluster-management.io/v1");
	assert_string_equal(str_of(w, "kind"), "ManifestWork");
	assert_string_equal(str_of(meta, "name"), "kmod");
	assert_string_equal(str_of(meta, "namespace"), "spoke1");
	assert_string_equal(str_of(json_object_get(meta, "labels"),
				   "kmm.node.kubernetes.io/managedclustermodule.name"),
			    "kmod");
	owner = json_array_get(json_object_get(meta, "ownerReferences"), 0);
	assert_string_equal(str_of(owner, "kind"), "ManagedClusterModule");
	assert_string_equal(str_of(owner, "uid"), "u-1");
	assert_true(json_is_true(json_object_get(owner, "controller")));
	assert_true(json_equal(
	    json_array_get(json_object_get(json_object_get(json_object_get(w, "spec"), "workload"),
					   "manifests"),
			   0),
	    mod));
	cfg = json_array_get(json_object_get(json_object_get(w, "spec"), "manifestConfigs"), 0);
	assert_string_equal(str_of(json_object_get(cfg, "resourceIdentifier"), "resource"),
			    "modules");
	assert_string_equal(str_of(json_object_get(cfg, "resourceIdentifier"), "namespace"), "kmm");
	paths =
	    json_object_get(json_array_get(json_object_get(cfg, "feedbackRules"), 0), "jsonPaths");
	assert_int_equal(json_array_size(paths), KMM_HUB_FEEDBACK_COUNT);
	assert_string_equal(str_of(json_array_get(paths, 2), "path"),
			    ".status.moduleLoader.availableNumber");
	assert_string_equal(str_of(json_array_get(paths, 2), "name"),
			    "moduleLoader.availableNumber");
}

/* The hub resolves the claim's kernels as a spoke's nodes would be. */
static void test_resolution_per_kernel(void **state)
{
	_cleanup_(kmm_mcm_freep) struct kmm_mcm *mcm = mcm_parse();
	_cleanup_(kmm_mapper_freep) struct kmm_mapper *mp = NULL;
	_cleanup_(kmm_resolved_mapping_freep) struct kmm_resolved_mapping *r6 = NULL, *r5 = NULL;
	struct kmm_resolved_mapping *none = NULL;

	assert_int_equal(kmm_mapper_new(mcm->module, &mp, NULL), 0);
	assert_int_equal(kmm_mapper_resolve(mp, mcm->module, "6.8.0-1+", &r6, NULL), 1);
	assert_string_equal(r6->container_image, "registry.example.com/kmod:6.8.0-1");
	assert_string_equal(r6->kernel, "6.8.0-1");
	assert_non_null(r6->build);
	assert_non_null(r6->sign);
	assert_string_equal(r6->in_tree_modules_to_remove[0], "old_a");
	assert_int_equal(kmm_mapper_resolve(mp, mcm->module, "5.15.0-9", &r5, NULL), 1);
	assert_string_equal(r5->in_tree_modules_to_remove[0], "legacy");
	assert_int_equal(kmm_mapper_resolve(mp, mcm->module, "4.19.0-1", &none, NULL), 0);
}

static void test_ready_condition(void **state)
{
	struct {
		struct kmm_hub_progress p;
		const char *status, *reason, *message;
	} cases[] = {
		{ { 2, 2, 0, 0, NULL }, "True", "Applied", "2 ManifestWork(s) applied" },
		{ { 0, 0, 0, 0, NULL }, "True", "Applied", "0 ManifestWork(s) applied" },
		{ { 2, 1, 0, 0, NULL }, "False", "NotApplied", "1 of 2 ManifestWork(s) applied" },
		{ { 2, 2, 1, 0, NULL }, "False", "Degraded", "1 of 2 ManifestWork(s) degraded" },
		{ { 2, 2, 1, 3, NULL }, "False", "ImagesNotReady", "3 cluster(s) wait" },
		{ { 2, 2, 1, 3, "cluster c: registry down" },
		  "False",
		  "Failed",
		  "cluster c: registry down" },
	};
	_cleanup_json_ json_t *old = json_loads("[{\"type\":\"Ready\",\"status\":\"True\","
						"\"lastTransitionTime\":\"2020-01-01T00:00:00Z\"}]",
						0, NULL);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		_cleanup_json_ json_t *c =
		    kmm_hub_ready_condition(&cases[i].p, 7, old, "2030-01-01T00:00:00Z");
		bool same = strcmp(cases[i].status, "True") == 0;

		assert_string_equal(str_of(c, "type"), "Ready");
		assert_string_equal(str_of(c, "status"), cases[i].status);
		assert_string_equal(str_of(c, "reason"), cases[i].reason);
		assert_non_null(strstr(str_of(c, "message"), cases[i].message));
		assert_int_equal(json_integer_value(json_object_get(c, "observedGeneration")), 7);
		/* The transition time moves only with the status. */
		assert_string_equal(str_of(c, "lastTransitionTime"),
				    same ? "2020-01-01T00:00:00Z" : "2030-01-01T00:00:00Z");
	}
}

static void test_image_ready(void **state)
{
	struct kmm_image_state states[] = {
		{ .image = (char *)"r/a:1", .status = (char *)"Exists" },
		{ .image = (char *)"r/b:1", .status = (char *)"DoesNotExist" },
		{ .image = (char *)"r/c:1", .status = (char *)"NeedsBuilding" },
		{ .image = (char *)"r/d:1", .status = (char *)"NeedsSigning" },
		{ .image = (char *)"r/e:1", .status = NULL },
	};
	struct kmm_image_config mic = { .n_states = 5, .states = states };

	assert_int_equal(kmm_hub_image_ready(&mic, "r/a:1"), 1);
	/* Absent with nothing to make it (or a failed build): an error, not a wait. */
	assert_int_equal(kmm_hub_image_ready(&mic, "r/b:1"), -ENOENT);
	/* Built or signed on the hub, not checked yet, unknown to the MIC: wait. */
	assert_int_equal(kmm_hub_image_ready(&mic, "r/c:1"), 0);
	assert_int_equal(kmm_hub_image_ready(&mic, "r/d:1"), 0);
	assert_int_equal(kmm_hub_image_ready(&mic, "r/e:1"), 0);
	assert_int_equal(kmm_hub_image_ready(&mic, "r/f:1"), 0);
	assert_int_equal(kmm_hub_image_ready(NULL, "r/a:1"), 0);
}

static const char *env_managed, *env_worker;

static char *fake_env(const char *name)
{
	if (strcmp(name, "OPERATOR_NAMESPACE") == 0)
		return (char *)"kmm";
	if (strcmp(name, "RELATED_IMAGE_WORKER") == 0)
		return (char *)env_worker;
	if (strcmp(name, KMM_ENV_MANAGED) == 0)
		return (char *)env_managed;
	return NULL;
}

static int mode_for(enum kmm_op_mode start, const char *managed, const char *worker,
		    enum kmm_op_mode *ret, struct kmm_error **err)
{
	struct kmm_operator_config c;
	int r;

	kmm_operator_config_init(&c);
	c.mode = start;
	env_managed = managed;
	env_worker = worker;
	r = kmm_operator_config_from_env(&c, fake_env, err);
	*ret = c.mode;
	kmm_operator_config_free(&c);
	return r;
}

static void test_kmm_managed(void **state)
{
	const char *yes[] = { "1", "t", "T", "true", "TRUE", "True" };
	const char *no[] = { "0", "f", "false", "FALSE", "", NULL };
	enum kmm_op_mode m;

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		assert_int_equal(mode_for(KMM_OP_MODE_STANDALONE, yes[i], "w", &m, NULL), 0);
		assert_int_equal(m, KMM_OP_MODE_SPOKE);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		assert_int_equal(mode_for(KMM_OP_MODE_STANDALONE, no[i], "w", &m, NULL), 0);
		assert_int_equal(m, KMM_OP_MODE_STANDALONE);
	}
	{
		_cleanup_error_ struct kmm_error *err = NULL;

		assert_int_equal(mode_for(KMM_OP_MODE_STANDALONE, "yes", "w", &m, &err), -EINVAL);
		assert_string_equal(kmm_error_message(err), "KMM_MANAGED=\"yes\": not a boolean");
	}
	{
		_cleanup_error_ struct kmm_error *err = NULL;

		assert_int_equal(mode_for(KMM_OP_MODE_HUB, "1", "w", &m, &err), -EINVAL);
		assert_non_null(strstr(kmm_error_message(err), "not a managed cluster"));
	}
	/* The hub starts no worker pod: RELATED_IMAGE_WORKER is not needed there. */
	assert_int_equal(mode_for(KMM_OP_MODE_HUB, NULL, NULL, &m, NULL), 0);
	assert_int_equal(m, KMM_OP_MODE_HUB);
	assert_int_equal(mode_for(KMM_OP_MODE_STANDALONE, NULL, NULL, &m, NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_claim_value_sorted_unique),
		cmocka_unit_test(test_claim_kernels),
		cmocka_unit_test(test_cluster_claim),
		cmocka_unit_test(test_pin_image),
		cmocka_unit_test(test_spoke_module_literal_mappings),
		cmocka_unit_test(test_manifest_work),
		cmocka_unit_test(test_resolution_per_kernel),
		cmocka_unit_test(test_ready_condition),
		cmocka_unit_test(test_image_ready),
		cmocka_unit_test(test_kmm_managed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
