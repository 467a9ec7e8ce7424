/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/registry.h"

static void check(const char *in, const char *registry, const char *repo, const char *tag,
		  const char *digest)
{
	struct kmm_image_ref *ref = NULL;
	struct kmm_error *err = NULL;

	if (kmm_image_ref_parse(in, &ref, &err) < 0)
		fail_msg("%s: %s", in, kmm_error_message(err));
	assert_string_equal(ref->registry, registry);
	assert_string_equal(ref->repository, repo);
	if (tag)
		assert_string_equal(ref->tag, tag);
	else
		assert_null(ref->tag);
	if (digest)
		assert_string_equal(ref->digest, digest);
	else
		assert_null(ref->digest);
	kmm_image_ref_free(ref);
}

#define D "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_parse(void **state)
{
	check("busybox", "docker.io", "library/busybox", "latest", NULL);
	check("busybox:1.36", "docker.io", "library/busybox", "1.36", NULL);
	check("acme/kmod", "docker.io", "acme/kmod", "latest", NULL);
	check("docker.io/busybox", "docker.io", "library/busybox", "latest", NULL);
	check("quay.io/acme/kmod:6.1.0-18-amd64", "quay.io", "acme/kmod", "6.1.0-18-amd64", NULL);
	check("127.0.0.1:5000/kmm/kmod-a:v1", "127.0.0.1:5000", "kmm/kmod-a", "v1", NULL);
	check("localhost/kmod", "localhost", "kmod", "latest", NULL);
	check("localhost:5000/a/b/c", "localhost:5000", "a/b/c", "latest", NULL);
	check("registry.example.com/a@" D, "registry.example.com", "a", NULL, D);
	check("registry.example.com/a:t@" D, "registry.example.com", "a", "t", D);
	check("a.b/x__y/z--q.r", "a.b", "x__y/z--q.r", "latest", NULL);
	check("my-reg.example.com:443/a_b", "my-reg.example.com:443", "a_b", "latest", NULL);
}

static void check_bad(const char *in, const char *fragment)
{
	struct kmm_image_ref *ref = NULL;
	struct kmm_error *err = NULL;

	assert_int_equal(kmm_image_ref_parse(in, &ref, &err), -EINVAL);
	assert_null(ref);
	if (!strstr(err->message, fragment))
		fail_msg("%s: message '%s' lacks '%s'", in, err->message, fragment);
	kmm_error_free(err);
}

static void test_parse_errors(void **state)
{
	check_bad("", "empty");
	check_bad("Busybox", "lowercase");
	check_bad("a//b", "lowercase");
	check_bad("a/b/", "lowercase");
	check_bad("a:", "bad tag");
	check_bad("a:-x", "bad tag");
	check_bad("a@sha256:abc", "digest");
	check_bad("a@md5:0123456789abcdef0123456789abcdef", "digest");
	check_bad("host:99999999/a", "bad registry host");
	check_bad("a..b/c", "bad registry host");
	check_bad("-a.b/c", "bad registry host");
	check_bad("a/b-_-c", "lowercase");
	check_bad("x/../y", "lowercase");
}

static void test_to_string(void **state)
{
	struct kmm_image_ref *ref = NULL;
	char *s;

	assert_int_equal(kmm_image_ref_parse("busybox", &ref, NULL), 0);
	s = kmm_image_ref_to_string(ref);
	assert_string_equal(s, "docker.io/library/busybox:latest");
	free(s);
	kmm_image_ref_free(ref);
	assert_int_equal(kmm_image_ref_parse("127.0.0.1:5000/k@" D, &ref, NULL), 0);
	s = kmm_image_ref_to_string(ref);
	assert_string_equal(s, "127.0.0.1:5000/k@" D);
	free(s);
	kmm_image_ref_free(ref);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_to_string),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
