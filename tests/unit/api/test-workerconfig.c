/* SPDX-License-Identifier: Apache-2.0 */
/* kmm_worker_config_parse(): the text of kmm-worker's config file. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/api.h"

static int parse(const char *text, struct kmm_module_config **ret, struct kmm_error **err)
{
	return kmm_worker_config_parse(text, strlen(text), "/etc/kmm/config.yaml", ret, err);
}

static void test_yaml_and_json_give_the_same_config(void **state)
{
	static const char yaml[] = "kernelVersion: 6.1.0\ncontainerImage: img:1\n"
				   "modprobe: {moduleName: kmm_ci_a, parameters: [a=1]}\n";
	static const char json[] =
	    " \n{\"kernelVersion\":\"6.1.0\",\"containerImage\":\"img:1\","
	    "\"modprobe\":{\"moduleName\":\"kmm_ci_a\",\"parameters\":[\"a=1\"]}}";
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *a = NULL, *b = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;

	assert_int_equal(parse(yaml, &a, &err), 0);
	assert_int_equal(parse(json, &b, &err), 0);
	assert_true(kmm_module_config_equal(a, b));
	assert_string_equal(b->modprobe.dir_name, "/opt");
}

static void test_raw_args_alone_is_enough(void **state)
{
	static const char y[] = "kernelVersion: k\ncontainerImage: i:1\n"
				"modprobe: {rawArgs: {load: [-v, m], unload: [-rv, m]}}\n";
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *c = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;

	assert_int_equal(parse(y, &c, &err), 0);
	assert_null(c->modprobe.module_name);
	assert_string_equal(c->modprobe.raw_args->load[1], "m");
}

/* Seen on a real kernel: such a config was loaded and logged "module (null) not found". */
static void test_neither_module_name_nor_raw_args_is_refused(void **state)
{
	static const char *const cases[] = {
		"kernelVersion: k\ncontainerImage: i:1\nmodprobe: {dirName: /opt}\n",
		"kernelVersion: k\ncontainerImage: i:1\nmodprobe: {moduleName: ''}\n",
		"{\"kernelVersion\":\"k\",\"containerImage\":\"i:1\",\"modprobe\":{}}",
		"{\"kernelVersion\":\"k\",\"containerImage\":\"i:1\",\"modprobe\":{\"moduleName\":"
		"\"\","
		"\"args\":{\"load\":[\"-v\"],\"unload\":[\"-v\"]}}}",
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct kmm_module_config *c = NULL;
		_cleanup_error_ struct kmm_error *err = NULL;

		assert_int_equal(parse(cases[i], &c, &err), -EINVAL);
		assert_null(c);
		assert_string_equal(kmm_error_message(err),
				    "/etc/kmm/config.yaml: modprobe: neither moduleName nor "
				    "rawArgs is set: nothing to load or unload");
	}
}

static void test_strict_errors_name_the_file(void **state)
{
	static const char *const cases[][2] = {
		{ "{\"kernelVersion\":\"k\",\"containerImage\":\"i\",\"modprobe\":{\"moduleName\":"
		  "\"m\",\"bogus\":1}}",
		  "modprobe.bogus" },
		{ "kernelVersion: k\ncontainerImage: i\nmodprobe: {moduleName: m}\nextra: 1\n",
		  "extra" },
		{ "{\"kernelVersion\":\"k\",\"kernelVersion\":\"k\"}", "duplicate" },
		{ "containerImage: i\nmodprobe: {moduleName: m}\n", "kernelVersion" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct kmm_module_config *c = NULL;
		_cleanup_error_ struct kmm_error *err = NULL;

		assert_int_equal(parse(cases[i][0], &c, &err), -EINVAL);
		assert_non_null(strstr(kmm_error_message(err), "/etc/kmm/config.yaml"));
		assert_non_null(strstr(kmm_error_message(err), cases[i][1]));
	}
}

/* The fuzz target hands over bytes that are not NUL-terminated. */
static void test_text_need_not_be_terminated(void **state)
{
	char *ws = malloc(3);
	struct kmm_module_config *c = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;

	assert_non_null(ws);
	memcpy(ws, " \n\t", 3);
	assert_true(kmm_worker_config_parse(ws, 3, "ws", &c, &err) < 0);
	assert_null(c);
	free(ws);
}

static void test_check_names_the_origin(void **state)
{
	struct kmm_module_config c = { 0 };
	_cleanup_error_ struct kmm_error *err = NULL;

	assert_int_equal(kmm_worker_config_check(&c, "module.yaml", &err), -EINVAL);
	assert_non_null(strstr(kmm_error_message(err), "module.yaml: modprobe: neither"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_yaml_and_json_give_the_same_config),
		cmocka_unit_test(test_raw_args_alone_is_enough),
		cmocka_unit_test(test_neither_module_name_nor_raw_args_is_refused),
		cmocka_unit_test(test_strict_errors_name_the_file),
		cmocka_unit_test(test_text_need_not_be_terminated),
		cmocka_unit_test(test_check_names_the_origin),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
