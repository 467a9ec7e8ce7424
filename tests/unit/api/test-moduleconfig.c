/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/api.h"
#include "kmm/shared-json.h"

static const char full_yaml[] = "kernelVersion: 6.1.0-18-amd64\n"
				"containerImage: registry:5000/kmm/kmod:6.1.0-18-amd64\n"
				"imagePullPolicy: Always\n"
				"insecurePull: yes\n"
				"inTreeModulesToRemove: [dummy, irdma]\n"
				"modprobe:\n"
				"  moduleName: kmm_ci_a\n"
				"  parameters: [a=1, b=2]\n"
				"  args: {load: [-v], unload: [-v]}\n"
				"  firmwarePath: /firmware\n"
				"  modulesLoadingOrder: [kmm_ci_a, kmm_ci_b]\n";

static void test_parse_full_yaml(void **state)
{
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *c = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;

	assert_int_equal(
	    kmm_module_config_parse(full_yaml, strlen(full_yaml), "config.yaml", &c, &err), 0);
	assert_string_equal(c->kernel_version, "6.1.0-18-amd64");
	assert_string_equal(c->container_image, "registry:5000/kmm/kmod:6.1.0-18-amd64");
	assert_string_equal(c->image_pull_policy, "Always");
	assert_true(c->insecure_pull);
	assert_string_equal(c->in_tree_modules_to_remove[1], "irdma");
	assert_null(c->in_tree_module_to_remove);
	assert_string_equal(c->modprobe.module_name, "kmm_ci_a");
	assert_string_equal(c->modprobe.dir_name, "/opt"); /* defaulted */
	assert_string_equal(c->modprobe.parameters[0], "a=1");
	assert_string_equal(c->modprobe.args->load[0], "-v");
	assert_null(c->modprobe.raw_args);
	assert_string_equal(c->modprobe.firmware_path, "/firmware");
	assert_string_equal(c->modprobe.modules_loading_order[1], "kmm_ci_b");
}

static void test_defaults(void **state)
{
	static const char y[] = "kernelVersion: 6.6.0-rt15\ncontainerImage: x:y\nmodprobe:\n"
				"  rawArgs: {load: [a], unload: [b]}\n";
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *c = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;

	assert_int_equal(kmm_module_config_parse(y, strlen(y), "c", &c, &err), 0);
	assert_string_equal(c->image_pull_policy, "IfNotPresent");
	assert_false(c->insecure_pull);
	assert_string_equal(c->modprobe.dir_name, "/opt");
	assert_string_equal(c->modprobe.raw_args->unload[0], "b");
}

/*
 * Upstream's ModprobeArgs lists are omitempty and not required: either one
 * alone decodes, the other stays NULL, and encoding leaves it out (writing
 * an empty list would break the CRD's minItems when the config is stored).
 */
static void test_args_either_list_alone(void **state)
{
	static const char *const yamls[] = {
		"kernelVersion: k\ncontainerImage: i\nmodprobe: {moduleName: m, args: {load: "
		"[--first-time]}}\n",
		"kernelVersion: k\ncontainerImage: i\nmodprobe: {moduleName: m, args: {unload: "
		"[--remove-holders]}}\n",
		"kernelVersion: k\ncontainerImage: i\nmodprobe: {moduleName: m, args: {}}\n",
	};

	for (size_t i = 0; i < sizeof(yamls) / sizeof(yamls[0]); i++) {
		_cleanup_(kmm_module_config_freep) struct kmm_module_config *c = NULL, *back = NULL;
		_cleanup_(kmm_modprobe_spec_done) struct kmm_modprobe_spec copy = { 0 };
		_cleanup_error_ struct kmm_error *err = NULL;
		_cleanup_json_ json_t *j = NULL;
		const json_t *args;

		assert_int_equal(kmm_module_config_parse(yamls[i], strlen(yamls[i]), "c", &c, &err),
				 0);
		assert_non_null(c->modprobe.args);
		assert_true(i == 0   ? c->modprobe.args->load && !c->modprobe.args->unload
			    : i == 1 ? !c->modprobe.args->load && c->modprobe.args->unload
				     : !c->modprobe.args->load && !c->modprobe.args->unload);
		j = kmm_module_config_to_json(c);
		args = json_object_get(json_object_get(j, "modprobe"), "args");
		assert_true(json_is_object(args));
		assert_int_equal(json_object_size(args), i < 2 ? 1 : 0);
		assert_int_equal(kmm_module_config_from_json(j, "", KMM_API_STRICT, &back, &err),
				 0);
		assert_true(kmm_module_config_equal(c, back));
		assert_int_equal(kmm_modprobe_spec_copy(&copy, &c->modprobe), 0);
		assert_true((copy.args->load == NULL) == (c->modprobe.args->load == NULL));
		assert_true((copy.args->unload == NULL) == (c->modprobe.args->unload == NULL));
	}
}

struct bad_case {
	const char *yaml;
	const char *message;
};

static const struct bad_case bad_cases[] = {
	{ "kernelVersion: k\ncontainerImage: i\nmodprobe: {}\nfoo: 1\n", "c: foo: unknown field" },
	{ "kernelVersion: k\ncontainerImage: i\nmodprobe: {moduleName: a, bogus: 1}\n",
	  "c: modprobe.bogus: unknown field" },
	{ "containerImage: i\nmodprobe: {}\n", "c: kernelVersion: required field is missing" },
	{ "kernelVersion: k\nmodprobe: {}\n", "c: containerImage: required field is missing" },
	{ "kernelVersion: k\ncontainerImage: i\n", "c: modprobe: required field is missing" },
	{ "kernelVersion: k\ncontainerImage: i\nmodprobe: {args: {load: []}}\n",
	  "c: modprobe.args.load: must have at least 1 item" },
	{ "kernelVersion: k\ncontainerImage: i\nmodprobe: {args: {load: [x], unload: []}}\n",
	  "c: modprobe.args.unload: must have at least 1 item" },
	{ "kernelVersion: k\ncontainerImage: i\nmodprobe: {rawArgs: {unload: []}}\n",
	  "c: modprobe.rawArgs.unload: must have at least 1 item" },
	{ "kernelVersion: k\ncontainerImage: i\nmodprobe: {parameters: [a, {}]}\n",
	  "c: modprobe.parameters[1]: expected a string, got object" },
	{ "kernelVersion: k\ncontainerImage: i\ninsecurePull: maybe\nmodprobe: {}\n",
	  "c: insecurePull: expected a boolean, got string" },
	{ "kernelVersion: k\ncontainerImage: i\nimagePullPolicy: Sometimes\nmodprobe: {}\n",
	  "c: imagePullPolicy: unsupported value \"Sometimes\": must be Always, IfNotPresent or "
	  "Never" },
	{ "kernelVersion: [k]\ncontainerImage: i\nmodprobe: {}\n",
	  "c: kernelVersion: expected a string, got array" },
	{ "- a\n", "c: (root): expected an object" },
};

static void test_strict_errors_name_the_path(void **state)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct kmm_module_config *c = NULL;
		struct kmm_error *err = NULL;
		int r = kmm_module_config_parse(bad_cases[i].yaml, strlen(bad_cases[i].yaml), "c",
						&c, &err);

		if (r != -EINVAL || !err || strcmp(err->message, bad_cases[i].message) != 0)
			fail_msg("case %zu: r=%d message=%s", i, r, kmm_error_message(err));
		assert_null(c);
		kmm_error_free(err);
	}
}

static void test_roundtrip_and_equal(void **state)
{
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *a = NULL, *b = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;
	_cleanup_json_ json_t *j = NULL;

	assert_int_equal(kmm_module_config_parse(full_yaml, strlen(full_yaml), "c", &a, &err), 0);
	j = kmm_module_config_to_json(a);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "kernelVersion")),
			    "6.1.0-18-amd64");
	assert_true(json_is_true(json_object_get(j, "insecurePull")));
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(j, "modprobe"), "dirName")), "/opt");
	assert_int_equal(kmm_module_config_from_json(j, "", KMM_API_STRICT, &b, &err), 0);
	assert_true(kmm_module_config_equal(a, b));
	free(b->modprobe.module_name);
	b->modprobe.module_name = strdup("other");
	assert_false(kmm_module_config_equal(a, b));
}

static void test_lenient_keeps_unknown_fields(void **state)
{
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *c = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;
	_cleanup_json_ json_t *in = NULL, *out = NULL;

	in = json_pack("{s:s, s:s, s:{s:s, s:i}, s:s}", "kernelVersion", "k", "containerImage",
		       "i:1", "modprobe", "moduleName", "m", "futureKnob", 3, "futureTop", "x");
	assert_int_equal(kmm_module_config_from_json(in, "spec.modules[0].config", 0, &c, &err), 0);
	out = kmm_module_config_to_json(c);
	assert_string_equal(json_string_value(json_object_get(out, "futureTop")), "x");
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(out, "modprobe"), "futureKnob")), 3);
}

static void test_path_prefix(void **state)
{
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *c = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;
	_cleanup_json_ json_t *in = json_pack("{s:s, s:s, s:{s:i}}", "kernelVersion", "k",
					      "containerImage", "i", "modprobe", "moduleName", 1);

	assert_int_equal(kmm_module_config_from_json(in, "spec.modules[3].config", 0, &c, &err),
			 -EINVAL);
	assert_string_equal(
	    err->message,
	    "spec.modules[3].config.modprobe.moduleName: expected a string, got number");
}

static void test_invalid_utf8_is_refused_before_yaml(void **state)
{
	/* libfyaml 0.7.12 loops forever on this (a directive ending in a truncated sequence). */
	static const char bad[] = "%a\xc8";
	struct kmm_module_config *c = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;

	assert_int_equal(kmm_module_config_parse(bad, sizeof(bad) - 1, "cfg", &c, &err), -EINVAL);
	assert_string_equal(err->message, "cfg: not valid UTF-8 text");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_full_yaml),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_args_either_list_alone),
		cmocka_unit_test(test_strict_errors_name_the_path),
		cmocka_unit_test(test_roundtrip_and_equal),
		cmocka_unit_test(test_lenient_keeps_unknown_fields),
		cmocka_unit_test(test_path_prefix),
		cmocka_unit_test(test_invalid_utf8_is_refused_before_yaml),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
