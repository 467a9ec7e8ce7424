/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "kmm/shared-json.h"

static void expect_escape(const char *key, const char *want)
{
	_cleanup_free_ char *got = kmm_json_pointer_escape(key);

	assert_non_null(got);
	assert_string_equal(got, want);
}

static void test_label_keys(void **state)
{
	expect_escape("kmm.node.kubernetes.io/ns.m.ready", "kmm.node.kubernetes.io~1ns.m.ready");
	expect_escape("plain", "plain");
	expect_escape("", "");
}

/* '~' first, so that "~1" in a key does not come back as '/'. */
static void test_tilde_and_slash(void **state)
{
	expect_escape("a~1b", "a~01b");
	expect_escape("~/", "~0~1");
	expect_escape("//", "~1~1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_label_keys),
		cmocka_unit_test(test_tilde_and_slash),
	};
	return cmocka_run_group_tests_name("shared-json-pointer", tests, NULL, NULL);
}
