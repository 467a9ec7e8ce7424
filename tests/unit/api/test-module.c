/* SPDX-License-Identifier: Apache-2.0 */
/* Module parsing, defaulting, errors with JSON paths, and serialization. */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/api.h"
#include "kmm/shared-json.h"
#include "tests/unit/api/helpers.h"
#include "tests/unit/api/table.h"

static const char upstream_example[] =
    "apiVersion: kmm.sigs.x-k8s.io/v1beta1\n"
    "kind: Module\n"
    "metadata: {name: kmm-ci, namespace: default, generation: 3, labels: {a: b}}\n"
    "spec:\n"
    "  selector: {kubernetes.io/hostname: node1}\n"
    "  tolerations: [{key: k, operator: Equal, value: v, effect: NoExecute, tolerationSeconds: "
    "30}]\n"
    "  imageRepoSecret: {name: pull}\n"
    "  imageRebuildTriggerGeneration: 2\n"
    "  moduleLoader:\n"
    "    serviceAccountName: sa\n"
    "    container:\n"
    "      imagePullPolicy: Always\n"
    "      version: v1\n"
    "      modprobe:\n"
    "        moduleName: kmm_ci_a\n"
    "        modulesLoadingOrder: [kmm_ci_a, kmm_ci_b]\n"
    "      inTreeModulesToRemove: [dummy]\n"
    "      kernelMappings:\n"
    "      - regexp: '^.+$'\n"
    "        containerImage: registry:5000/$MOD_NAMESPACE/$MOD_NAME:$KERNEL_FULL_VERSION\n"
    "        registryTLS: {insecure: true}\n"
    "        build:\n"
    "          dockerfileConfigMap: {name: kmm-kmod-dockerfile}\n"
    "          buildArgs: [{name: A, value: '1'}]\n"
    "          secrets: [{name: build-secret}]\n"
    "          baseImageRegistryTLS: {insecure: true}\n"
    "          kanikoParams: {tag: debug}\n"
    "          selector: {role: build}\n"
    "        sign:\n"
    "          keySecret: {name: signing-key}\n"
    "          certSecret: {name: signing-cert}\n"
    "          filesToSign: ['/opt/lib/modules/${KERNEL_FULL_VERSION}/kmm_ci_?.ko']\n"
    "  devicePlugin:\n"
    "    container:\n"
    "      image: dp:1\n"
    "      env: [{name: X, value: y}]\n"
    "    volumes: [{name: v, hostPath: {path: /dev/foo}}]\n"
    "status:\n"
    "  moduleLoader: {nodesMatchingSelectorNumber: 2, desiredNumber: 2, availableNumber: 1}\n";

static void test_parse_upstream_example(void **state)
{
	_cleanup_(kmm_module_freep) struct kmm_module *m = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;
	const struct kmm_module_loader_container *c;
	const struct kmm_kernel_mapping *km;

	if (module_from_yaml(upstream_example, KMM_API_STRICT, &m, &err) != 0)
		fail_msg("%s", kmm_error_message(err));
	assert_string_equal(m->name, "kmm-ci");
	assert_string_equal(m->namespace, "default");
	assert_int_equal(m->generation, 3);
	assert_string_equal(kmm_strmap_get(&m->spec.selector, "kubernetes.io/hostname"), "node1");
	assert_int_equal(m->spec.n_tolerations, 1);
	assert_true(m->spec.tolerations[0].has_toleration_seconds);
	assert_int_equal(m->spec.tolerations[0].toleration_seconds, 30);
	assert_string_equal(m->spec.image_repo_secret, "pull");
	assert_int_equal(m->spec.image_rebuild_trigger_generation, 2);
	assert_string_equal(m->spec.module_loader->service_account_name, "sa");
	c = &m->spec.module_loader->container;
	assert_string_equal(c->modprobe.dir_name, "/opt"); /* CRD default */
	assert_string_equal(c->modprobe.modules_loading_order[1], "kmm_ci_b");
	assert_string_equal(c->version, "v1");
	assert_int_equal(c->n_kernel_mappings, 1);
	km = &c->kernel_mappings[0];
	assert_string_equal(km->regexp, "^.+$");
	assert_true(km->registry_tls->insecure);
	assert_string_equal(km->build->dockerfile_config_map, "kmm-kmod-dockerfile");
	assert_string_equal(km->build->build_args[0].value, "1");
	assert_string_equal(km->build->secrets[0], "build-secret");
	assert_string_equal(km->build->kaniko_tag, "debug");
	assert_string_equal(kmm_strmap_get(&km->build->selector, "role"), "build");
	assert_string_equal(km->sign->key_secret, "signing-key");
	assert_string_equal(m->spec.device_plugin->container.image, "dp:1");
	assert_true(m->has_status);
	assert_int_equal(m->status.module_loader.available_number, 1);
}

static void test_roundtrip_is_stable(void **state)
{
	_cleanup_(kmm_module_freep) struct kmm_module *a = NULL, *b = NULL;
	_cleanup_json_ json_t *ja = NULL, *jb = NULL;

	assert_int_equal(module_from_yaml(upstream_example, KMM_API_STRICT, &a, NULL), 0);
	ja = kmm_module_to_json(a);
	assert_non_null(ja);
	assert_int_equal(kmm_module_from_json(ja, KMM_API_STRICT, &b, NULL), 0);
	jb = kmm_module_to_json(b);
	assert_true(json_equal(ja, jb));
	/* Defaults are written out; labels in metadata survive. */
	assert_string_equal(
	    json_string_value(json_object_get(
		json_object_get(
		    json_object_get(json_object_get(json_object_get(ja, "spec"), "moduleLoader"),
				    "container"),
		    "modprobe"),
		"dirName")),
	    "/opt");
	assert_string_equal(json_string_value(json_object_get(
				json_object_get(json_object_get(ja, "metadata"), "labels"), "a")),
			    "b");
}

static void test_unknown_fields_survive_a_write(void **state)
{
	static const char y[] =
	    "apiVersion: kmm.sigs.x-k8s.io/v1beta1\nkind: Module\n"
	    "metadata: {name: m, namespace: ns}\nfutureTop: 1\n"
	    "spec:\n  selector: {}\n  futureSpec: {x: 1}\n  moduleLoader:\n    container:\n"
	    "      futureContainer: true\n      modprobe: {moduleName: a, futureModprobe: s}\n"
	    "      kernelMappings: [{literal: '6.1.0', containerImage: 'i:1', futureMapping: "
	    "[1]}]\n";
	_cleanup_(kmm_module_freep) struct kmm_module *m = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;
	_cleanup_json_ json_t *j = NULL;
	json_t *c;

	assert_int_equal(module_from_yaml(y, 0, &m, NULL), 0);
	j = kmm_module_to_json(m);
	assert_int_equal(json_integer_value(json_object_get(j, "futureTop")), 1);
	assert_non_null(json_object_get(json_object_get(j, "spec"), "futureSpec"));
	c = json_object_get(json_object_get(json_object_get(j, "spec"), "moduleLoader"),
			    "container");
	assert_true(json_is_true(json_object_get(c, "futureContainer")));
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(c, "modprobe"), "futureModprobe")),
	    "s");
	assert_non_null(json_object_get(json_array_get(json_object_get(c, "kernelMappings"), 0),
					"futureMapping"));
	/* Strict mode names the first unknown field with its path. */
	kmm_module_free(m);
	m = NULL;
	assert_int_equal(module_from_yaml(y, KMM_API_STRICT, &m, &err), -EINVAL);
	assert_string_equal(err->message, "futureTop: unknown field");
}

struct bad {
	const char *spec; /* YAML under spec: (indented 2) */
	const char *message;
};

#define HEAD                                                                                       \
	"apiVersion: kmm.sigs.x-k8s.io/v1beta1\nkind: Module\nmetadata: {name: m, namespace: "     \
	"ns}\n"
#define ML "  selector: {}\n  moduleLoader:\n    container:\n      modprobe: {moduleName: a}\n"

static const struct bad bads[] = {
	{ "spec:\n  moduleLoader: {container: {modprobe: {}, kernelMappings: [{literal: a, "
	  "containerImage: b}]}}\n",
	  "spec.selector: required field is missing" },
	{ "spec:\n  selector: {a: 1}\n", "spec.selector.a: expected a string, got number" },
	{ "spec:\n  selector: {}\n  moduleLoader: {}\n",
	  "spec.moduleLoader.container: required field is missing" },
	{ "spec:\n  selector: {}\n  moduleLoader: {container: {kernelMappings: [{literal: a, "
	  "containerImage: b}]}}\n",
	  "spec.moduleLoader.container.modprobe: required field is missing" },
	{ "spec:\n" ML, "spec.moduleLoader.container.kernelMappings: required field is missing" },
	{ "spec:\n" ML "      kernelMappings: []\n",
	  "spec.moduleLoader.container.kernelMappings: must have at least 1 item" },
	{ "spec:\n" ML "      kernelMappings: [{literal: a, containerImage: b}, {literal: a}]\n",
	  "spec.moduleLoader.container.kernelMappings[1].containerImage: required field is "
	  "missing" },
	{ "spec:\n" ML "      kernelMappings: [{literal: a, containerImage: b}, {literal: a, "
	  "containerImage: b}, {regexp: 7, containerImage: b}]\n",
	  "spec.moduleLoader.container.kernelMappings[2].regexp: expected a string, got number" },
	{ "spec:\n" ML "      kernelMappings: [{literal: a, containerImage: b, build: {}}]\n",
	  "spec.moduleLoader.container.kernelMappings[0].build.dockerfileConfigMap: required field "
	  "is missing" },
	{ "spec:\n" ML
	  "      kernelMappings: [{literal: a, containerImage: b, sign: {keySecret: {name: k}}}]\n",
	  "spec.moduleLoader.container.kernelMappings[0].sign.certSecret: required field is "
	  "missing" },
	{ "spec:\n" ML "      kernelMappings: [{literal: a, containerImage: b, build: "
	  "{dockerfileConfigMap: {name: d}, buildArgs: [{name: x}]}}]\n",
	  "spec.moduleLoader.container.kernelMappings[0].build.buildArgs[0].value: required field "
	  "is missing" },
	{ "spec:\n" ML "      kernelMappings: [{literal: a, containerImage: b, registryTLS: "
	  "{insecure: maybe}}]\n",
	  "spec.moduleLoader.container.kernelMappings[0].registryTLS.insecure: expected a boolean, "
	  "got string" },
	{ "spec:\n" ML "      kernelMappings: [{literal: a, containerImage: b}]\n      "
	  "imagePullPolicy: Sometimes\n",
	  "spec.moduleLoader.container.imagePullPolicy: unsupported value \"Sometimes\": must be "
	  "Always, IfNotPresent or Never" },
	{ "spec:\n  selector: {}\n  devicePlugin: {container: {}}\n",
	  "spec.devicePlugin.container.image: required field is missing" },
	{ "spec:\n  selector: {}\n  dra: {container: {image: i}}\n",
	  "spec.dra.driverName: required field is missing" },
	{ "spec:\n  selector: {}\n  dra: {container: {image: i}, driverName: d}\n  devicePlugin: "
	  "{container: {image: i}}\n",
	  "spec: spec.dra and spec.devicePlugin are mutually exclusive" },
	{ "spec:\n  selector: {}\n  tolerations: [{tolerationSeconds: x}]\n",
	  "spec.tolerations[0].tolerationSeconds: expected an integer, got string" },
	{ "spec:\n  selector: {}\n  imageRebuildTriggerGeneration: 1.5\n",
	  "spec.imageRebuildTriggerGeneration: expected an integer, got 1.5" },
	{ "spec: []\n", "spec: expected an object, got array" },
};

static void test_error_row(void **state)
{
	const struct bad *b = *state;
	_cleanup_free_ char *y = NULL;
	struct kmm_module *m = NULL;
	struct kmm_error *err = NULL;
	bool good;
	int r;

	assert_true(asprintf(&y, "%s%s", HEAD, b->spec) > 0);
	r = module_from_yaml(y, 0, &m, &err);
	good = r == -EINVAL && err && strcmp(err->message, b->message) == 0 && !m;
	if (!good)
		print_error("r=%d message=%s\n", r, kmm_error_message(err));
	kmm_error_free(err);
	kmm_module_free(m);
	assert_true(good);
}

static const char *bad_label(const void *row)
{
	return ((const struct bad *)row)->message;
}

static void test_type_meta(void **state)
{
	_cleanup_(kmm_module_freep) struct kmm_module *m = NULL;
	_cleanup_error_ struct kmm_error *e1 = NULL, *e2 = NULL;

	assert_int_equal(module_from_yaml("apiVersion: kmm.sigs.x-k8s.io/v1beta2\nkind: Module\n"
					  "metadata: {name: m}\nspec: {selector: {}}\n",
					  0, &m, &e1),
			 -EINVAL);
	assert_string_equal(
	    e1->message,
	    "apiVersion: unsupported apiVersion \"kmm.sigs.x-k8s.io/v1beta2\" for Module");
	assert_int_equal(module_from_yaml("apiVersion: kmm.sigs.x-k8s.io/v1beta1\nkind: Module\n"
					  "metadata: {namespace: x}\nspec: {selector: {}}\n",
					  0, &m, &e2),
			 -EINVAL);
	assert_string_equal(e2->message, "metadata.name: required field is missing");
}

int main(void)
{
	struct table_run t = { 0 };

	table_add(&t, "test_parse_upstream_example", test_parse_upstream_example, NULL);
	table_add(&t, "test_roundtrip_is_stable", test_roundtrip_is_stable, NULL);
	table_add(&t, "test_unknown_fields_survive_a_write", test_unknown_fields_survive_a_write,
		  NULL);
	table_add_rows(&t, "error path", test_error_row, (void *)bads, KMM_ARRAY_SIZE(bads),
		       sizeof(bads[0]), bad_label);
	table_add(&t, "test_type_meta", test_type_meta, NULL);
	return table_run(&t, "module");
}
