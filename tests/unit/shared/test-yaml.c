/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kmm/shared-fileio.h"
#include "kmm/shared-yaml.h"

static json_t *parse_ok(const char *text, unsigned flags)
{
	struct kmm_error *err = NULL;
	json_t *docs = NULL;
	int r = kmm_yaml_parse(text, strlen(text), "t.yaml", flags, &docs, &err);

	if (r < 0)
		fail_msg("unexpected error: %s", kmm_error_message(err));
	return docs;
}

static char *parse_err(const char *text)
{
	struct kmm_error *err = NULL;
	json_t *docs = NULL;
	char *msg;

	assert_true(kmm_yaml_parse(text, strlen(text), "t.yaml", 0, &docs, &err) < 0);
	assert_null(docs);
	assert_non_null(err);
	msg = strdup(err->message);
	kmm_error_free(err);
	return msg;
}

static void assert_json(json_t *v, const char *expected)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

	assert_string_equal(s, expected);
	free(s);
}

static void test_core_schema_scalars(void **state)
{
	_cleanup_json_ json_t *d = parse_ok("a: 1\n"
					    "b: -2\n"
					    "c: 1.5\n"
					    "d: true\n"
					    "e: False\n"
					    "f: ~\n"
					    "g:\n"
					    "h: \"3\"\n"
					    "i: '0x10'\n"
					    "j: 0x10\n"
					    "k: 0o17\n"
					    "l: yes\n"
					    "m: 6.1.0-18-amd64\n"
					    "n: .inf\n",
					    0);

	assert_json(d, "[{\"a\":1,\"b\":-2,\"c\":1.5,\"d\":true,\"e\":false,\"f\":null,\"g\":null,"
		       "\"h\":\"3\",\"i\":\"0x10\",\"j\":16,\"k\":15,\"l\":\"yes\","
		       "\"m\":\"6.1.0-18-amd64\",\"n\":\".inf\"}]");
}

static void test_yaml_1_1_booleans_on_request(void **state)
{
	_cleanup_json_ json_t *d = parse_ok("a: yes\nb: Off\nc: 'yes'\n", KMM_YAML_BOOL_1_1);

	assert_json(d, "[{\"a\":true,\"b\":false,\"c\":\"yes\"}]");
}

static void test_multiple_documents_and_empty_ones(void **state)
{
	_cleanup_json_ json_t *d = parse_ok("---\nkind: A\n---\n---\n# only a comment\n---\n"
					    "kind: B\nlist: [1, {x: y}]\n",
					    0);

	assert_json(d, "[{\"kind\":\"A\"},{\"kind\":\"B\",\"list\":[1,{\"x\":\"y\"}]}]");
}

static void test_aliases_expand(void **state)
{
	_cleanup_json_ json_t *d = parse_ok("base: &b {x: 1}\nuse: *b\n", 0);

	assert_json(d, "[{\"base\":{\"x\":1},\"use\":{\"x\":1}}]");
}

static void test_explicit_str_tag_and_numeric_keys(void **state)
{
	_cleanup_json_ json_t *d = parse_ok("v: !!str 12\n1: one\ntrue: t\n", 0);

	assert_json(d, "[{\"v\":\"12\",\"1\":\"one\",\"true\":\"t\"}]");
}

static void test_errors_name_source_and_line(void **state)
{
	_cleanup_free_ char *dup = parse_err("a: 1\nb: 2\na: 3\n");
	_cleanup_free_ char *syntax = parse_err("a: [1, 2\nb: 3\n");
	_cleanup_free_ char *key = parse_err("? [a, b]\n: 1\n");

	assert_string_equal(dup, "t.yaml:3:1: invalid YAML: duplicate key");
	assert_non_null(strstr(syntax, "t.yaml:"));
	assert_non_null(strstr(syntax, "invalid YAML"));
	assert_string_equal(key, "t.yaml: mapping key is not a scalar");
}

static void test_alias_bomb_is_stopped(void **state)
{
	/* Nine levels of ten aliases would expand to 10^9 nodes. */
	const char *bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
			   "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
			   "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
			   "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
			   "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
			   "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
			   "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
			   "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
			   "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
	_cleanup_free_ char *msg = parse_err(bomb);

	assert_non_null(strstr(msg, "more nodes than the limit"));
}

static void test_self_referencing_alias_is_stopped(void **state)
{
	_cleanup_free_ char *msg = parse_err("a: &a [*a]\n");

	assert_non_null(strstr(msg, "deeper than the limit"));
}

static void test_path_like_alias_is_refused_as_key_and_value(void **state)
{
	/* libfyaml would resolve these as paths, reading past the name. */
	_cleanup_free_ char *key = parse_err("- : : ? */-\n");
	_cleanup_free_ char *value = parse_err("a: &x 1\nb: */x\n");

	(void)state;
	assert_non_null(strstr(key, "alias names with '/' are not supported"));
	assert_non_null(strstr(value, "alias names with '/' are not supported"));
}

static void test_invalid_utf8_is_refused_before_parsing(void **state)
{
	/* A truncated sequence after a directive once made the YAML parser spin. */
	_cleanup_free_ char *directive = parse_err("%a\xc8");
	_cleanup_free_ char *value = parse_err("a: \xff\xfe\n");

	assert_string_equal(directive, "t.yaml: not valid UTF-8 text");
	assert_string_equal(value, "t.yaml: not valid UTF-8 text");
}

static void test_parse_file_and_missing_file(void **state)
{
	char path[] = "/tmp/kmm-yaml-XXXXXX";
	struct kmm_error *err = NULL;
	json_t *docs = NULL;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x: 1\n", 5), 5);
	close(fd);
	assert_int_equal(kmm_yaml_parse_file(path, 1024, 0, &docs, &err), 0);
	assert_json(docs, "[{\"x\":1}]");
	json_decref(docs);
	docs = NULL;
	assert_int_equal(kmm_yaml_parse_file(path, 3, 0, &docs, &err), -EFBIG);
	assert_non_null(strstr(err->message, "larger than the limit of 3 bytes"));
	kmm_error_free(err);
	err = NULL;
	unlink(path);
	assert_int_equal(kmm_yaml_parse_file(path, 1024, 0, &docs, &err), -ENOENT);
	assert_non_null(strstr(err->message, path));
	kmm_error_free(err);
}

static void test_write_file_atomic_replaces_content(void **state)
{
	char path[] = "/tmp/kmm-atomic-XXXXXX";
	_cleanup_free_ char *data = NULL;
	struct kmm_error *err = NULL;
	size_t len;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(kmm_write_file_atomic(path, "new content", 11, 0600, &err), 0);
	assert_int_equal(kmm_read_file(path, 100, &data, &len, &err), 0);
	assert_int_equal(len, 11);
	assert_string_equal(data, "new content");
	unlink(path);
	assert_true(kmm_write_file_atomic("/nonexistent-dir/x", "a", 1, 0600, &err) < 0);
	assert_non_null(strstr(err->message, "/nonexistent-dir/x"));
	kmm_error_free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_core_schema_scalars),
		cmocka_unit_test(test_yaml_1_1_booleans_on_request),
		cmocka_unit_test(test_multiple_documents_and_empty_ones),
		cmocka_unit_test(test_aliases_expand),
		cmocka_unit_test(test_explicit_str_tag_and_numeric_keys),
		cmocka_unit_test(test_errors_name_source_and_line),
		cmocka_unit_test(test_alias_bomb_is_stopped),
		cmocka_unit_test(test_self_referencing_alias_is_stopped),
		cmocka_unit_test(test_path_like_alias_is_refused_as_key_and_value),
		cmocka_unit_test(test_invalid_utf8_is_refused_before_parsing),
		cmocka_unit_test(test_parse_file_and_missing_file),
		cmocka_unit_test(test_write_file_atomic_replaces_content),
	};
	return cmocka_run_group_tests_name("shared-yaml", tests, NULL, NULL);
}
