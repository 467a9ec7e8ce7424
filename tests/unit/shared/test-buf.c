/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/shared-buf.h"

static void test_empty_buffer_reads_as_empty_string(void **state)
{
	struct kmm_buf b;

	kmm_buf_init(&b, 16);
	assert_string_equal(kmm_buf_str(&b), "");
	assert_int_equal(b.len, 0);
	kmm_buf_free(&b);
}

static void test_append_grows_and_terminates(void **state)
{
	_cleanup_buf_ struct kmm_buf b;

	kmm_buf_init(&b, 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(kmm_buf_append(&b, "abc", 3), 0);
	assert_int_equal(b.len, 3000);
	assert_int_equal(b.data[3000], '\0');
	assert_memory_equal(b.data + 2997, "abc", 3);
}

static void test_cap_hit_fails_and_leaves_content(void **state)
{
	_cleanup_buf_ struct kmm_buf b;

	kmm_buf_init(&b, 8);
	assert_int_equal(kmm_buf_append_str(&b, "12345"), 0);
	assert_int_equal(kmm_buf_append_str(&b, "6789"), -E2BIG);
	assert_string_equal(kmm_buf_str(&b), "12345");
	assert_int_equal(kmm_buf_append_str(&b, "678"), 0);
	assert_string_equal(kmm_buf_str(&b), "12345678");
	assert_int_equal(kmm_buf_append(&b, "9", 1), -E2BIG);
	assert_int_equal(kmm_buf_append(&b, "", 0), 0);
	/* The allocation never grows far past the cap. */
	assert_true(b.cap <= 9);
}

static void test_printf_respects_cap(void **state)
{
	_cleanup_buf_ struct kmm_buf b;

	kmm_buf_init(&b, 10);
	assert_int_equal(kmm_buf_printf(&b, "%d-%s", 42, "x"), 0);
	assert_string_equal(kmm_buf_str(&b), "42-x");
	assert_int_equal(kmm_buf_printf(&b, "%s", "toolongtext"), -E2BIG);
	assert_string_equal(kmm_buf_str(&b), "42-x");
}

static void test_huge_append_is_refused_without_overflow(void **state)
{
	_cleanup_buf_ struct kmm_buf b;

	kmm_buf_init(&b, 100);
	assert_int_equal(kmm_buf_append_str(&b, "a"), 0);
	assert_int_equal(kmm_buf_append(&b, "b", SIZE_MAX), -E2BIG);
	assert_string_equal(kmm_buf_str(&b), "a");
}

static void test_consume_and_reset(void **state)
{
	_cleanup_buf_ struct kmm_buf b;

	kmm_buf_init(&b, 0);
	kmm_buf_append_str(&b, "hello world");
	kmm_buf_consume(&b, 6);
	assert_string_equal(kmm_buf_str(&b), "world");
	kmm_buf_consume(&b, 100);
	assert_string_equal(kmm_buf_str(&b), "");
	kmm_buf_append_str(&b, "again");
	kmm_buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(kmm_buf_str(&b), "");
}

static void test_steal_hands_out_and_empties(void **state)
{
	struct kmm_buf b;
	char *s;

	kmm_buf_init(&b, 0);
	s = kmm_buf_steal(&b);
	assert_string_equal(s, "");
	free(s);
	kmm_buf_append_str(&b, "owned");
	s = kmm_buf_steal(&b);
	assert_string_equal(s, "owned");
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	free(s);
	kmm_buf_free(&b);
}

static void test_free_is_safe_twice_and_on_null(void **state)
{
	struct kmm_buf b;

	kmm_buf_init(&b, 0);
	kmm_buf_append_str(&b, "x");
	kmm_buf_free(&b);
	kmm_buf_free(&b);
	kmm_buf_free(NULL);
	assert_null(b.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_buffer_reads_as_empty_string),
		cmocka_unit_test(test_append_grows_and_terminates),
		cmocka_unit_test(test_cap_hit_fails_and_leaves_content),
		cmocka_unit_test(test_printf_respects_cap),
		cmocka_unit_test(test_huge_append_is_refused_without_overflow),
		cmocka_unit_test(test_consume_and_reset),
		cmocka_unit_test(test_steal_hands_out_and_empties),
		cmocka_unit_test(test_free_is_safe_twice_and_on_null),
	};
	return cmocka_run_group_tests_name("shared-buf", tests, NULL, NULL);
}
