/* SPDX-License-Identifier: Apache-2.0 */
/* NodeModulesConfig, ModuleImagesConfig, ModuleBuildSignConfig, PreflightValidation. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/api.h"
#include "kmm/shared-json.h"
#include "kmm/shared-yaml.h"

static json_t *doc(const char *y)
{
	json_t *docs = NULL, *d;

	assert_int_equal(kmm_yaml_parse(y, strlen(y), "t", KMM_YAML_BOOL_1_1, &docs, NULL), 0);
	d = json_incref(json_array_get(docs, 0));
	json_decref(docs);
	return d;
}

static void test_nmc(void **state)
{
	_cleanup_json_ json_t *j =
	    doc("apiVersion: kmm.sigs.x-k8s.io/v1beta1\nkind: NodeModulesConfig\n"
		"metadata: {name: node1, ownerReferences: [{kind: Node, name: node1}]}\n"
		"spec:\n  modules:\n  - name: m\n    namespace: ns\n    serviceAccountName: sa\n"
		"    imageRepoSecret: {name: pull}\n    version: v1\n"
		"    tolerations: [{key: k, operator: Exists}]\n"
		"    config: {kernelVersion: 6.1.0-18-amd64, containerImage: 'i:1', modprobe: "
		"{moduleName: a}}\n"
		"status:\n  modules:\n  - name: m\n    namespace: ns\n    bootId: b-1\n"
		"    lastTransitionTime: '2026-01-01T00:00:00Z'\n"
		"    config: {kernelVersion: 6.1.0-18-amd64, containerImage: 'i:1', insecurePull: "
		"true, modprobe: {moduleName: a}}\n");
	_cleanup_(kmm_nmc_freep) struct kmm_nmc *n = NULL, *n2 = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;
	_cleanup_json_ json_t *out = NULL, *out2 = NULL;

	if (kmm_nmc_from_json(j, KMM_API_STRICT, &n, &err) != 0)
		fail_msg("%s", kmm_error_message(err));
	assert_string_equal(n->name, "node1");
	assert_int_equal(n->n_spec_modules, 1);
	assert_string_equal(n->spec_modules[0].image_repo_secret, "pull");
	assert_string_equal(n->spec_modules[0].config->image_pull_policy, "IfNotPresent");
	assert_string_equal(n->status_modules[0].boot_id, "b-1");
	assert_true(n->status_modules[0].config->insecure_pull);
	assert_false(
	    kmm_module_config_equal(n->spec_modules[0].config, n->status_modules[0].config));
	out = kmm_nmc_to_json(n);
	assert_int_equal(kmm_nmc_from_json(out, KMM_API_STRICT, &n2, NULL), 0);
	out2 = kmm_nmc_to_json(n2);
	assert_true(json_equal(out, out2));
	assert_non_null(json_object_get(json_object_get(out, "metadata"), "ownerReferences"));
}

static void test_nmc_errors(void **state)
{
	_cleanup_json_ json_t *j =
	    doc("apiVersion: kmm.sigs.x-k8s.io/v1beta1\nkind: NodeModulesConfig\n"
		"metadata: {name: node1, namespace: x}\nspec: {}\n");
	_cleanup_json_ json_t *j2 = doc(
	    "apiVersion: kmm.sigs.x-k8s.io/v1beta1\nkind: NodeModulesConfig\nmetadata: {name: nx}\n"
	    "spec: {modules: [{name: m, namespace: ns, config: {kernelVersion: k, containerImage: "
	    "'i:1', modprobe: {}, extra: 1}}]}\n");
	struct kmm_nmc *n = NULL;
	_cleanup_error_ struct kmm_error *e1 = NULL, *e2 = NULL;

	assert_int_equal(kmm_nmc_from_json(j, 0, &n, &e1), -EINVAL);
	assert_string_equal(e1->message,
			    "metadata.namespace: must not be set on a cluster-scoped object");
	assert_int_equal(kmm_nmc_from_json(j2, KMM_API_STRICT, &n, &e2), -EINVAL);
	assert_string_equal(e2->message, "spec.modules[0].config.extra: unknown field");
}

static void test_mic_and_mbsc(void **state)
{
	_cleanup_json_ json_t *mic =
	    doc("apiVersion: kmm.sigs.x-k8s.io/v1beta1\nkind: ModuleImagesConfig\n"
		"metadata: {name: m, namespace: ns}\n"
		"spec:\n  images:\n  - {image: 'r/i:1', kernelVersion: 6.1.0, build: "
		"{dockerfileConfigMap: {name: d}}}\n"
		"  pushBuiltImage: true\n  imageRebuildTriggerGeneration: 3\n"
		"status: {imagesStates: [{image: 'r/i:1', status: NeedsBuilding}], "
		"imageRebuildTriggerGeneration: 2}\n");
	_cleanup_json_ json_t *mbsc =
	    doc("apiVersion: kmm.sigs.x-k8s.io/v1beta1\nkind: ModuleBuildSignConfig\n"
		"metadata: {name: m, namespace: ns}\n"
		"spec:\n  images:\n  - {image: 'r/i:1', kernelVersion: 6.1.0, action: Sideways}\n");
	_cleanup_(kmm_image_config_freep) struct kmm_image_config *c = NULL, *c2 = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;
	_cleanup_json_ json_t *out = NULL;

	if (kmm_image_config_from_json(mic, KMM_API_STRICT, &c, &err) != 0)
		fail_msg("%s", kmm_error_message(err));
	assert_string_equal(c->images[0].dir_name, "/opt");
	assert_string_equal(c->image_pull_policy, "IfNotPresent");
	assert_true(c->push_built_image);
	assert_int_equal(c->image_rebuild_trigger_generation, 3);
	assert_int_equal(c->status_trigger_generation, 2);
	assert_string_equal(c->states[0].status, "NeedsBuilding");
	out = kmm_image_config_to_json(c);
	assert_int_equal(kmm_image_config_from_json(out, KMM_API_STRICT, &c2, NULL), 0);
	assert_int_equal(kmm_image_config_from_json(mbsc, KMM_API_STRICT, &c2, &err), -EINVAL);
	assert_string_equal(err->message, "spec.images[0].action: unsupported value \"Sideways\": "
					  "must be BuildImage or SignImage");
}

static void test_pfv_versions(void **state)
{
	_cleanup_json_ json_t *v1 =
	    doc("apiVersion: kmm.sigs.x-k8s.io/v1beta1\nkind: PreflightValidation\nmetadata: "
		"{name: p}\n"
		"spec: {kernelVersion: 6.1.0-18-amd64}\n"
		"status: {crStatuses: {ns/m: {verificationStatus: Failure, statusReason: x}, m: "
		"{verificationStatus: Failure}, lonely: {verificationStatus: InProgress}}}\n");
	_cleanup_(kmm_pfv_freep) struct kmm_pfv *p = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;
	_cleanup_json_ json_t *v2 = NULL;

	assert_int_equal(kmm_pfv_from_json(v1, KMM_API_STRICT, &p, &err), 0);
	assert_int_equal(p->n_modules, 2); /* "m" folds into "ns/m" */
	assert_string_equal(p->modules[0].namespace, "ns");
	assert_string_equal(p->modules[1].name, "lonely");
	assert_int_equal(kmm_pfv_validate(p, NULL), 0);
	v2 = kmm_pfv_to_json(p, KMM_API_VERSION_V1BETA2);
	assert_string_equal(json_string_value(json_object_get(v2, "apiVersion")),
			    KMM_API_VERSION_V1BETA2);
	assert_int_equal(json_array_size(json_object_get(json_object_get(v2, "status"), "modules")),
			 2);
	free(p->kernel_version);
	p->kernel_version = strdup("6.1");
	assert_int_equal(kmm_pfv_validate(p, &err), -EINVAL);
	assert_non_null(strstr(err->message, "at least 3 fields"));
	kmm_error_free(err);
	err = NULL;
	free(p->kernel_version);
	p->kernel_version = strdup("6..1"); /* Go's split keeps the empty field */
	assert_int_equal(kmm_pfv_validate(p, NULL), 0);
	free(p->kernel_version);
	p->kernel_version = NULL;
	assert_int_equal(kmm_pfv_validate(p, &err), -EINVAL);
}

static void test_kind_of(void **state)
{
	_cleanup_json_ json_t *a = json_pack("{s:s,s:s}", "apiVersion", "kmm.sigs.x-k8s.io/v1beta2",
					     "kind", "PreflightValidation");
	_cleanup_json_ json_t *b = json_pack("{s:s,s:s}", "apiVersion", "v1", "kind", "Module");

	assert_string_equal(kmm_api_kind_of(a), "PreflightValidation");
	assert_null(kmm_api_kind_of(b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nmc),	     cmocka_unit_test(test_nmc_errors),
		cmocka_unit_test(test_mic_and_mbsc), cmocka_unit_test(test_pfv_versions),
		cmocka_unit_test(test_kind_of),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
