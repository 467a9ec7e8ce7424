/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/shared-strv.h"

static void test_null_is_empty(void **state)
{
	assert_int_equal(kmm_strv_length(NULL), 0);
	assert_false(kmm_strv_contains(NULL, "a"));
	_cleanup_free_ char *j = kmm_strv_join(NULL, ",");
	assert_string_equal(j, "");
	kmm_strv_free(NULL);
}

static void test_push_pushf_contains_join(void **state)
{
	_cleanup_strv_free_ char **v = NULL;
	_cleanup_free_ char *joined = NULL;

	assert_int_equal(kmm_strv_push(&v, "a"), 0);
	assert_int_equal(kmm_strv_pushf(&v, "%s-%d", "b", 2), 0);
	assert_int_equal(kmm_strv_consume(&v, strdup("c")), 0);
	assert_int_equal(kmm_strv_length(v), 3);
	assert_true(kmm_strv_contains(v, "b-2"));
	assert_false(kmm_strv_contains(v, "b"));
	joined = kmm_strv_join(v, ", ");
	assert_string_equal(joined, "a, b-2, c");
	assert_null(v[3]);
}

static void test_split_drops_empty_fields(void **state)
{
	_cleanup_strv_free_ char **v = NULL, **empty = NULL;

	assert_int_equal(kmm_strv_split("6.1.0-18,,amd64.", ".,-", &v), 0);
	assert_int_equal(kmm_strv_length(v), 5);
	assert_string_equal(v[0], "6");
	assert_string_equal(v[3], "18");
	assert_string_equal(v[4], "amd64");
	assert_int_equal(kmm_strv_split("...", ".", &empty), 0);
	assert_non_null(empty);
	assert_int_equal(kmm_strv_length(empty), 0);
}

static void test_copy_and_extend(void **state)
{
	_cleanup_strv_free_ char **a = NULL, **b = NULL, **c = NULL;

	kmm_strv_push(&a, "x");
	kmm_strv_push(&a, "y");
	b = kmm_strv_copy(a);
	assert_int_equal(kmm_strv_length(b), 2);
	assert_ptr_not_equal(a[0], b[0]);
	assert_int_equal(kmm_strv_extend(&b, a), 0);
	assert_int_equal(kmm_strv_length(b), 4);
	assert_string_equal(b[3], "y");
	c = kmm_strv_copy(NULL);
	assert_non_null(c);
	assert_int_equal(kmm_strv_length(c), 0);
}

static void test_foreach_visits_in_order(void **state)
{
	_cleanup_strv_free_ char **v = NULL;
	char seen[8] = "";

	kmm_strv_push(&v, "a");
	kmm_strv_push(&v, "b");
	kmm_strv_push(&v, "c");
	KMM_STRV_FOREACH (s, v) {
		size_t len = strlen(seen);

		snprintf(seen + len, sizeof(seen) - len, "%s", s);
	}
	assert_string_equal(seen, "abc");
	KMM_STRV_FOREACH (s, (char **)NULL) {
		fail_msg("visited %s in a NULL vector", s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_null_is_empty),
		cmocka_unit_test(test_push_pushf_contains_join),
		cmocka_unit_test(test_split_drops_empty_fields),
		cmocka_unit_test(test_copy_and_extend),
		cmocka_unit_test(test_foreach_visits_in_order),
	};
	return cmocka_run_group_tests_name("shared-strv", tests, NULL, NULL);
}
