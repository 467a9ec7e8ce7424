/* SPDX-License-Identifier: Apache-2.0 */
/* The cache and request parsing of kube-auth.c, with a fake API side and clock. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "kmm/server-kube-auth.h"
#include "lib/server/kube-auth-internal.h"

struct fake {
	uint64_t now;
	int reviews;
	int accesses;
	bool fail;
	char last_verb[16];
	char last_path[64];
	char last_user[64];
	size_t last_groups;
};

/* Tokens "user-*" authenticate as that user; "admin-*" users are allowed. */
static int fake_review(void *userdata, const char *token, json_t **ret_user, struct kmm_error **err)
{
	struct fake *f = userdata;

	f->reviews++;
	if (f->fail)
		return kmm_error_make(err, EIO, "apiserver unreachable");
	if (strncmp(token, "user-", 5) != 0 && strncmp(token, "admin-", 6) != 0)
		return 0;
	*ret_user = json_pack("{s:s, s:s, s:[s,s]}", "username", token, "uid", "u-1", "groups",
			      "system:serviceaccounts", "system:authenticated");
	return 1;
}

static int fake_access(void *userdata, json_t *user, const char *verb, const char *path,
		       struct kmm_error **err)
{
	struct fake *f = userdata;
	const char *name = json_string_value(json_object_get(user, "username"));

	(void)err;
	f->accesses++;
	snprintf(f->last_verb, sizeof(f->last_verb), "%s", verb);
	snprintf(f->last_path, sizeof(f->last_path), "%s", path);
	snprintf(f->last_user, sizeof(f->last_user), "%s", name);
	f->last_groups = json_array_size(json_object_get(user, "groups"));
	return strncmp(name, "admin-", 6) == 0;
}

static uint64_t fake_now(void *userdata)
{
	return ((struct fake *)userdata)->now;
}

static struct kmm_kube_auth *make(struct fake *f, size_t max_entries)
{
	struct kmm_kube_auth_backend b = { fake_review, fake_access, fake_now, f };
	struct kmm_kube_auth_options o = { .allow_ttl_ms = 10000,
					   .deny_ttl_ms = 5000,
					   .max_entries = max_entries };
	struct kmm_kube_auth *a = NULL;

	f->now = 1000000;
	assert_int_equal(kmm_kube_auth_new_backend(&b, &o, &a, NULL), 0);
	return a;
}

static int check(struct kmm_kube_auth *a, const char *authz)
{
	return kmm_kube_auth_check(a, authz, "GET", "/metrics", NULL);
}

static void test_malformed_headers_are_401_without_api_calls(void **state)
{
	struct fake f = { 0 };
	struct kmm_kube_auth *a = make(&f, 16);
	char huge[20000];

	(void)state;
	memset(huge, 'x', sizeof(huge));
	memcpy(huge, "Bearer ", 7);
	huge[sizeof(huge) - 1] = '\0';
	assert_int_equal(check(a, NULL), 401);
	assert_int_equal(check(a, ""), 401);
	assert_int_equal(check(a, "Basic YWRtaW46YWRtaW4="), 401);
	assert_int_equal(check(a, "Bearer"), 401);
	assert_int_equal(check(a, "Bearer   "), 401);
	assert_int_equal(check(a, "Bearer admin-a extra"), 401);
	assert_int_equal(check(a, "Bearertoken"), 401);
	assert_int_equal(check(a, huge), 401);
	assert_int_equal(f.reviews, 0);
	/* Scheme case and surrounding blanks do not matter. */
	assert_int_equal(check(a, "  bearer\tadmin-a  "), 200);
	assert_int_equal(f.reviews, 1);
	kmm_kube_auth_free(a);
}

static void test_decisions_and_what_the_review_gets(void **state)
{
	struct fake f = { 0 };
	struct kmm_kube_auth *a = make(&f, 16);

	(void)state;
	assert_int_equal(check(a, "Bearer stranger"), 401);
	assert_int_equal(f.accesses, 0); /* no SAR for an unauthenticated token */
	assert_int_equal(check(a, "Bearer user-b"), 403);
	assert_int_equal(check(a, "Bearer admin-c"), 200);
	assert_string_equal(f.last_user, "admin-c");
	assert_string_equal(f.last_verb, "get"); /* the lower-cased method */
	assert_string_equal(f.last_path, "/metrics");
	assert_int_equal(f.last_groups, 2);
	assert_int_equal(kmm_kube_auth_check(a, "Bearer admin-c", "HEAD", "/metrics", NULL), 200);
	assert_string_equal(f.last_verb, "head");
	assert_int_equal(f.reviews, 4);
	kmm_kube_auth_free(a);
}

static void test_answers_are_cached_until_their_ttl(void **state)
{
	struct fake f = { 0 };
	struct kmm_kube_auth *a = make(&f, 16);
	struct kmm_kube_auth_stats st;

	(void)state;
	assert_int_equal(check(a, "Bearer admin-a"), 200);
	assert_int_equal(check(a, "Bearer user-b"), 403);
	assert_int_equal(check(a, "Bearer nobody"), 401);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(check(a, "Bearer admin-a"), 200);
		assert_int_equal(check(a, "Bearer user-b"), 403);
		assert_int_equal(check(a, "Bearer nobody"), 401);
	}
	assert_int_equal(f.reviews, 3);
	assert_int_equal(f.accesses, 2);
	/* Another path or verb is another question. */
	assert_int_equal(kmm_kube_auth_check(a, "Bearer admin-a", "GET", "/other", NULL), 200);
	assert_int_equal(f.reviews, 4);

	f.now += 5000; /* denials expire (5 s), the allowed answer does not (10 s) */
	assert_int_equal(check(a, "Bearer admin-a"), 200);
	assert_int_equal(check(a, "Bearer user-b"), 403);
	assert_int_equal(check(a, "Bearer nobody"), 401);
	assert_int_equal(f.reviews, 6);
	f.now += 5000;
	assert_int_equal(check(a, "Bearer admin-a"), 200);
	assert_int_equal(f.reviews, 7);
	kmm_kube_auth_stats(a, &st);
	assert_int_equal(st.checks, 23);
	assert_int_equal(st.cache_hits, 23 - 7);
	assert_int_equal(st.token_reviews, 7);
	assert_int_equal(st.failures, 0);
	kmm_kube_auth_free(a);
}

static void test_api_failures_are_500_and_not_cached(void **state)
{
	struct fake f = { .fail = true };
	struct kmm_kube_auth *a = make(&f, 16);
	_cleanup_error_ struct kmm_error *err = NULL;
	_cleanup_free_ char *msg = NULL;
	struct kmm_kube_auth_stats st;

	(void)state;
	f.fail = true;
	assert_int_equal(kmm_kube_auth_check(a, "Bearer admin-a", "GET", "/metrics", &err), -EIO);
	assert_string_equal(kmm_error_message(err), "apiserver unreachable");
	assert_null(kmm_kube_auth_last_error(a));
	assert_int_equal(kmm_kube_auth_httpd("Bearer admin-a", "GET", "/metrics", a), 500);
	msg = kmm_kube_auth_last_error(a);
	assert_string_equal(msg, "apiserver unreachable");
	assert_int_equal(f.reviews, 2);
	f.fail = false;
	assert_int_equal(kmm_kube_auth_httpd("Bearer admin-a", "GET", "/metrics", a), 200);
	assert_int_equal(f.reviews, 3);
	kmm_kube_auth_stats(a, &st);
	assert_int_equal(st.failures, 2);
	kmm_kube_auth_free(a);
}

static void test_cache_is_bounded(void **state)
{
	struct fake f = { 0 };
	struct kmm_kube_auth *a = make(&f, 4);
	char h[32];

	(void)state;
	/* One old entry that expires, then fresh ones: the expired one goes first. */
	assert_int_equal(check(a, "Bearer user-old"), 403);
	f.now += 6000;
	for (int i = 0; i < 3; i++) {
		snprintf(h, sizeof(h), "Bearer admin-%d", i);
		assert_int_equal(check(a, h), 200);
	}
	assert_int_equal(f.reviews, 4);
	assert_int_equal(check(a, "Bearer admin-new"), 200); /* full: user-old is pruned */
	for (int i = 0; i < 3; i++) {
		snprintf(h, sizeof(h), "Bearer admin-%d", i);
		assert_int_equal(check(a, h), 200);
	}
	assert_int_equal(f.reviews, 5); /* the three fresh ones survived */

	/* All fresh and full: the cache starts over rather than grow. */
	assert_int_equal(check(a, "Bearer admin-overflow"), 200);
	assert_int_equal(f.reviews, 6);
	assert_int_equal(check(a, "Bearer admin-overflow"), 200);
	assert_int_equal(f.reviews, 6);
	assert_int_equal(check(a, "Bearer admin-0"), 200);
	assert_int_equal(f.reviews, 7);
	kmm_kube_auth_free(a);
	kmm_kube_auth_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_malformed_headers_are_401_without_api_calls),
		cmocka_unit_test(test_decisions_and_what_the_review_gets),
		cmocka_unit_test(test_answers_are_cached_until_their_ttl),
		cmocka_unit_test(test_api_failures_are_500_and_not_cached),
		cmocka_unit_test(test_cache_is_bounded),
	};

	return cmocka_run_group_tests_name("server-kube-auth", tests, NULL, NULL);
}
