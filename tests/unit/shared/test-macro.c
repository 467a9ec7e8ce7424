/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kmm/shared-macro.h"

struct thing {
	int *destroyed;
};

static void thing_free(struct thing *t)
{
	(*t->destroyed)++;
	free(t);
}
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct thing *, thing_free)

static struct thing *make_thing(int *destroyed, bool succeed)
{
	_cleanup_(thing_freep) struct thing *t = calloc(1, sizeof(*t));

	t->destroyed = destroyed;
	if (!succeed)
		return NULL; /* the cleanup frees t */
	return TAKE_PTR(t);
}

static void test_take_ptr_hands_out_on_success_only(void **state)
{
	int destroyed = 0;
	struct thing *t;

	assert_null(make_thing(&destroyed, false));
	assert_int_equal(destroyed, 1);
	t = make_thing(&destroyed, true);
	assert_non_null(t);
	assert_int_equal(destroyed, 1);
	thing_free(t);
	assert_int_equal(destroyed, 2);
}

static void test_take_ptr_nulls_the_source(void **state)
{
	char *p = strdup("x");
	char *q = TAKE_PTR(p);

	assert_null(p);
	assert_string_equal(q, "x");
	free(q);
}

static void test_cleanup_free_and_null_pointer(void **state)
{
	{
		_cleanup_free_ char *s = strdup("freed at scope end");
		_cleanup_free_ char *none = NULL;
		assert_non_null(s);
		assert_null(none);
	}
}

static void test_cleanup_close_and_take_fd(void **state)
{
	int kept;

	{
		_cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		_cleanup_close_ int none = -1;
		assert_true(fd >= 0);
		kept = TAKE_FD(fd);
		assert_int_equal(fd, -1);
		(void)none;
	}
	/* Still open: TAKE_FD disarmed the cleanup. */
	assert_int_equal(fcntl(kept, F_GETFD), FD_CLOEXEC);
	close(kept);
}

static void test_array_size(void **state)
{
	int a[7];

	assert_int_equal(KMM_ARRAY_SIZE(a), 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_take_ptr_hands_out_on_success_only),
		cmocka_unit_test(test_take_ptr_nulls_the_source),
		cmocka_unit_test(test_cleanup_free_and_null_pointer),
		cmocka_unit_test(test_cleanup_close_and_take_fd),
		cmocka_unit_test(test_array_size),
	};
	return cmocka_run_group_tests_name("shared-macro", tests, NULL, NULL);
}
