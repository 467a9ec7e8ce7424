/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <dlfcn.h>
#include <stdio.h>

#include "kmm/shared-error.h"

/*
 * The errors' messages are formatted with vasprintf(); this one clobbers
 * errno on every call, as an allocation may, so the tests below see whether
 * the error functions put the caller's errno back.
 */
int vasprintf(char **ret, const char *fmt, va_list ap)
{
	static int (*real)(char **, const char *, va_list);
	int r;

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "vasprintf");
	r = real(ret, fmt, ap);
	errno = ENOMEM;
	return r;
}

static int fail_open(const char *path, struct kmm_error **err)
{
	return kmm_error_make_errno(err, ENOENT, "open %s", path);
}

static int load_config(const char *path, struct kmm_error **err)
{
	int r = fail_open(path, err);

	if (r < 0)
		return kmm_error_wrap(err, "load config");
	return 0;
}

static void test_make_sets_code_and_message(void **state)
{
	_cleanup_error_ struct kmm_error *err = NULL;

	assert_int_equal(kmm_error_make(&err, EINVAL, "bad %s at %d", "field", 3), -EINVAL);
	assert_non_null(err);
	assert_int_equal(err->code, EINVAL);
	assert_int_equal(err->http_status, 0);
	assert_null(err->reason);
	assert_int_equal(err->retry_after_ms, -1);
	assert_string_equal(err->message, "bad field at 3");
}

static void test_negative_and_zero_codes_are_normalized(void **state)
{
	_cleanup_error_ struct kmm_error *a = NULL, *b = NULL;

	assert_int_equal(kmm_error_make(&a, -EPERM, "x"), -EPERM);
	assert_int_equal(a->code, EPERM);
	assert_int_equal(kmm_error_make(&b, 0, "y"), -EIO);
	assert_int_equal(b->code, EIO);
}

static void test_make_errno_appends_strerror(void **state)
{
	_cleanup_error_ struct kmm_error *err = NULL;

	assert_int_equal(fail_open("/x", &err), -ENOENT);
	assert_string_equal(err->message, "open /x: No such file or directory");
}

static void test_wrap_prefixes_context(void **state)
{
	_cleanup_error_ struct kmm_error *err = NULL;

	assert_int_equal(load_config("/etc/kmm", &err), -ENOENT);
	assert_string_equal(err->message, "load config: open /etc/kmm: No such file or directory");
}

static void test_wrap_of_wrap_keeps_order_and_code(void **state)
{
	_cleanup_error_ struct kmm_error *err = NULL;

	kmm_error_make(&err, EACCES, "root cause");
	assert_int_equal(kmm_error_wrap(&err, "inner %d", 1), -EACCES);
	assert_int_equal(kmm_error_wrap(&err, "middle"), -EACCES);
	assert_int_equal(kmm_error_wrap(&err, "outer"), -EACCES);
	assert_string_equal(err->message, "outer: middle: inner 1: root cause");
	assert_int_equal(kmm_error_code(err), EACCES);
}

static void test_null_err_still_returns_code(void **state)
{
	assert_int_equal(kmm_error_make(NULL, EBUSY, "ignored"), -EBUSY);
	assert_int_equal(kmm_error_make_errno(NULL, EBUSY, "ignored"), -EBUSY);
	assert_int_equal(kmm_error_make_http(NULL, 404, "NotFound", "ignored"), -ENOENT);
	assert_int_equal(kmm_error_wrap(NULL, "ctx"), -EIO);
}

static void test_wrap_without_error_is_harmless(void **state)
{
	struct kmm_error *err = NULL;

	assert_int_equal(kmm_error_wrap(&err, "ctx"), -EIO);
	assert_null(err);
}

static void test_http_error_fields(void **state)
{
	_cleanup_error_ struct kmm_error *err = NULL;

	assert_int_equal(kmm_error_make_http(&err, 409, "AlreadyExists", "pods \"%s\" exists", "w"),
			 -EEXIST);
	assert_int_equal(err->http_status, 409);
	assert_string_equal(err->reason, "AlreadyExists");
	assert_true(kmm_error_is_http(err, 409));
	assert_false(kmm_error_is_http(err, 404));
	kmm_error_wrap(&err, "create pod");
	assert_string_equal(err->message, "create pod: pods \"w\" exists");
	assert_string_equal(err->reason, "AlreadyExists");
}

static void test_http_status_mapping(void **state)
{
	assert_int_equal(kmm_errno_from_http_status(404, NULL), ENOENT);
	assert_int_equal(kmm_errno_from_http_status(409, "Conflict"), ESTALE);
	assert_int_equal(kmm_errno_from_http_status(409, "AlreadyExists"), EEXIST);
	assert_int_equal(kmm_errno_from_http_status(410, "Expired"), ESTALE);
	assert_int_equal(kmm_errno_from_http_status(401, NULL), EACCES);
	assert_int_equal(kmm_errno_from_http_status(403, NULL), EACCES);
	assert_int_equal(kmm_errno_from_http_status(422, "Invalid"), EINVAL);
	assert_int_equal(kmm_errno_from_http_status(429, NULL), EAGAIN);
	assert_int_equal(kmm_errno_from_http_status(500, NULL), EIO);
	assert_int_equal(kmm_errno_from_http_status(503, NULL), EAGAIN);
	assert_int_equal(kmm_errno_from_http_status(418, NULL), EPROTO);
}

static void test_accessors_and_free_are_null_safe(void **state)
{
	assert_int_equal(kmm_error_code(NULL), 0);
	assert_string_equal(kmm_error_message(NULL), "");
	assert_false(kmm_error_is_http(NULL, 404));
	kmm_error_free(NULL);
}

static void test_errno_is_kept(void **state)
{
	_cleanup_error_ struct kmm_error *err = NULL;

	errno = EBADF;
	kmm_error_make(&err, EINVAL, "make %d", 1);
	assert_int_equal(errno, EBADF);
	kmm_error_wrap(&err, "wrap %s", "ctx");
	assert_int_equal(errno, EBADF);
	assert_string_equal(kmm_error_message(err), "wrap ctx: make 1");
	kmm_error_clear(&err);
	kmm_error_make_errno(&err, ENOENT, "open %s", "x");
	assert_int_equal(errno, EBADF);
	kmm_error_clear(&err);
	kmm_error_make_http(&err, 404, "NotFound", "get %s", "x");
	assert_int_equal(errno, EBADF);
}

static void test_clear_frees_and_resets(void **state)
{
	struct kmm_error *err = NULL;

	kmm_error_clear(NULL);
	kmm_error_clear(&err);
	assert_null(err);
	kmm_error_make(&err, EINVAL, "first");
	kmm_error_clear(&err);
	assert_null(err);
	/* The variable takes the next error, as a loop that reports each one does. */
	kmm_error_make(&err, EIO, "second");
	assert_string_equal(kmm_error_message(err), "second");
	kmm_error_clear(&err);
	assert_null(err);
}

static void test_long_message_is_kept_whole(void **state)
{
	_cleanup_error_ struct kmm_error *err = NULL;
	char big[10000];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	kmm_error_make(&err, EINVAL, "%s", big);
	kmm_error_wrap(&err, "ctx");
	assert_int_equal(strlen(err->message), strlen(big) + 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_make_sets_code_and_message),
		cmocka_unit_test(test_negative_and_zero_codes_are_normalized),
		cmocka_unit_test(test_make_errno_appends_strerror),
		cmocka_unit_test(test_wrap_prefixes_context),
		cmocka_unit_test(test_wrap_of_wrap_keeps_order_and_code),
		cmocka_unit_test(test_null_err_still_returns_code),
		cmocka_unit_test(test_wrap_without_error_is_harmless),
		cmocka_unit_test(test_http_error_fields),
		cmocka_unit_test(test_http_status_mapping),
		cmocka_unit_test(test_accessors_and_free_are_null_safe),
		cmocka_unit_test(test_long_message_is_kept_whole),
		cmocka_unit_test(test_errno_is_kept),
		cmocka_unit_test(test_clear_frees_and_resets),
	};
	return cmocka_run_group_tests_name("shared-error", tests, NULL, NULL);
}
