/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lib/certs' pure parts: the CA and serving certificates it makes (checked
 * with OpenSSL directly), validity and renewal points, the CA bundle, and
 * kmm_certs_plan() through a whole life: first start, steady state, a
 * certificate rotation, a CA rotation with the old CA kept while it is valid
 * and pruned after, a damaged Secret, a changed Service name.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "kmm/certs.h"

#define DAY 86400L
/* 2030-01-01T00:00:00Z: a fixed clock, so every date below is exact. */
#define T0 ((time_t)1893456000)

static const char *const hosts[] = { "kmm-operator-webhook-service",
				     "kmm-operator-webhook-service.kmm-operator-system.svc",
				     "127.0.0.1", NULL };

static const struct kmm_certs_policy policy = {
	.hosts = hosts,
	.ca_name = "kmm-webhook-ca",
	.ca_valid_seconds = 300 * DAY,
	.cert_valid_seconds = 30 * DAY,
};

static X509 *parse(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);

	BIO_free(b);
	assert_non_null(x);
	return x;
}

static void test_ca_is_a_ca_with_its_key(void **state)
{
	char *cert = NULL, *key = NULL;
	time_t nb, na;
	X509 *x;

	(void)state;
	assert_int_equal(kmm_certs_new_ca("kmm-webhook-ca", T0, 10 * DAY, &cert, &key, NULL), 0);
	x = parse(cert);
	assert_int_equal(X509_check_ca(x), 1);
	assert_int_equal(kmm_certs_check_ca(cert, key, T0, NULL), 0);
	assert_int_equal(kmm_certs_validity(cert, &nb, &na, NULL), 0);
	/* Backdated an hour for clients whose clock is behind. */
	assert_int_equal(nb, T0 - 3600);
	assert_int_equal(na, T0 + 10 * DAY);
	/* Not valid before its start or after its end. */
	assert_true(kmm_certs_check_ca(cert, key, T0 + 10 * DAY, NULL) < 0);
	assert_true(kmm_certs_check_ca(cert, key, T0 - 2 * 3600, NULL) < 0);
	X509_free(x);
	free(cert);
	free(key);
	/* A lifetime of seconds is backdated by a quarter of it, not an hour. */
	assert_int_equal(kmm_certs_new_ca("short", T0, 8, &cert, &key, NULL), 0);
	assert_int_equal(kmm_certs_validity(cert, &nb, &na, NULL), 0);
	assert_int_equal(nb, T0 - 2);
	assert_int_equal(na, T0 + 8);
	free(cert);
	free(key);
}

static void test_ca_key_mismatch_refused(void **state)
{
	char *c1 = NULL, *k1 = NULL, *c2 = NULL, *k2 = NULL;
	struct kmm_error *err = NULL;

	(void)state;
	assert_int_equal(kmm_certs_new_ca("a", T0, DAY, &c1, &k1, NULL), 0);
	assert_int_equal(kmm_certs_new_ca("b", T0, DAY, &c2, &k2, NULL), 0);
	assert_int_equal(kmm_certs_check_ca(c1, k2, T0, &err), -EINVAL);
	assert_non_null(strstr(kmm_error_message(err), "does not match"));
	kmm_error_free(err);
	free(c1);
	free(k1);
	free(c2);
	free(k2);
}

static void test_issued_certificate_serves_every_host(void **state)
{
	char *ca = NULL, *cak = NULL, *cert = NULL, *key = NULL;
	const char *const other[] = { "evil.example", NULL };
	X509 *x;

	(void)state;
	assert_int_equal(kmm_certs_new_ca("kmm-webhook-ca", T0, 300 * DAY, &ca, &cak, NULL), 0);
	assert_int_equal(kmm_certs_issue(ca, cak, hosts, T0, 30 * DAY, &cert, &key, NULL), 0);
	assert_int_equal(kmm_certs_check_serving(ca, cert, key, hosts, T0 + DAY, NULL), 0);
	x = parse(cert);
	assert_int_equal(X509_check_ca(x), 0);
	assert_int_equal(X509_check_host(x, "kmm-operator-webhook-service", 0, 0, NULL), 1);
	assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0), 1);
	X509_free(x);
	/* A name it does not carry, a time after its end, its CA's key as its key: refused. */
	assert_true(kmm_certs_check_serving(ca, cert, key, other, T0, NULL) < 0);
	assert_true(kmm_certs_check_serving(ca, cert, key, hosts, T0 + 31 * DAY, NULL) < 0);
	assert_true(kmm_certs_check_serving(ca, cert, cak, hosts, T0, NULL) < 0);
	free(ca);
	free(cak);
	free(cert);
	free(key);
}

static void test_certificate_does_not_outlive_its_ca(void **state)
{
	char *ca = NULL, *cak = NULL, *cert = NULL, *key = NULL;
	time_t nb, na, ca_nb, ca_na;

	(void)state;
	assert_int_equal(kmm_certs_new_ca("kmm-webhook-ca", T0, 10 * DAY, &ca, &cak, NULL), 0);
	assert_int_equal(kmm_certs_issue(ca, cak, hosts, T0, 30 * DAY, &cert, &key, NULL), 0);
	assert_int_equal(kmm_certs_validity(cert, &nb, &na, NULL), 0);
	assert_int_equal(kmm_certs_validity(ca, &ca_nb, &ca_na, NULL), 0);
	assert_int_equal(na, ca_na);
	free(ca);
	free(cak);
	free(cert);
	free(key);
}

static void test_foreign_ca_refused(void **state)
{
	char *ca = NULL, *cak = NULL, *ca2 = NULL, *cak2 = NULL, *cert = NULL, *key = NULL;
	struct kmm_error *err = NULL;

	(void)state;
	assert_int_equal(kmm_certs_new_ca("one", T0, 300 * DAY, &ca, &cak, NULL), 0);
	assert_int_equal(kmm_certs_new_ca("two", T0, 300 * DAY, &ca2, &cak2, NULL), 0);
	assert_int_equal(kmm_certs_issue(ca, cak, hosts, T0, 30 * DAY, &cert, &key, NULL), 0);
	assert_true(kmm_certs_check_serving(ca2, cert, key, hosts, T0, &err) < 0);
	assert_non_null(strstr(kmm_error_message(err), "does not verify"));
	kmm_error_free(err);
	free(ca);
	free(cak);
	free(ca2);
	free(cak2);
	free(cert);
	free(key);
}

static void test_bad_input(void **state)
{
	char *out = NULL, *out2 = NULL, *c = NULL, *k = NULL;
	time_t a, b;
	const char *const none[] = { NULL };
	const char *const empty[] = { "", NULL };

	(void)state;
	assert_int_equal(kmm_certs_validity("not a pem", &a, &b, NULL), -EINVAL);
	assert_int_equal(kmm_certs_validity(NULL, &a, &b, NULL), -EINVAL);
	assert_int_equal(
	    kmm_certs_count("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
	    -EINVAL);
	assert_int_equal(kmm_certs_count(""), -EINVAL);
	assert_int_equal(kmm_certs_new_ca("", T0, DAY, &out, &out2, NULL), -EINVAL);
	assert_int_equal(kmm_certs_new_ca("x", T0, 0, &out, &out2, NULL), -EINVAL);
	assert_int_equal(kmm_certs_new_ca("x", T0, DAY, &out, &out2, NULL), 0);
	assert_true(kmm_certs_issue(out, out2, none, T0, DAY, &c, &k, NULL) < 0);
	assert_true(kmm_certs_issue(out, out2, empty, T0, DAY, &c, &k, NULL) < 0);
	assert_true(kmm_certs_issue("junk", out2, hosts, T0, DAY, &c, &k, NULL) < 0);
	/* ret_* untouched on failure */
	assert_null(c);
	assert_null(k);
	free(out);
	free(out2);
}

static void test_due_after_two_thirds(void **state)
{
	(void)state;
	assert_false(kmm_certs_due(T0, T0 + 300, T0));
	assert_false(kmm_certs_due(T0, T0 + 300, T0 + 199));
	assert_true(kmm_certs_due(T0, T0 + 300, T0 + 200));
	assert_true(kmm_certs_due(T0, T0 + 300, T0 + 300));
	assert_true(kmm_certs_due(T0, T0 + 300, T0 - 1)); /* not valid yet: the clock jumped back */
	assert_true(kmm_certs_due(T0, T0, T0 - 10));	  /* empty lifetime */
}

static void test_bundle_keeps_valid_old_cas_current_first(void **state)
{
	char *ca1 = NULL, *k1 = NULL, *ca2 = NULL, *k2 = NULL, *b1 = NULL, *b2 = NULL, *b3 = NULL,
	     *b4 = NULL;
	X509 *first, *want;

	(void)state;
	assert_int_equal(kmm_certs_new_ca("one", T0, 10 * DAY, &ca1, &k1, NULL), 0);
	assert_int_equal(kmm_certs_new_ca("two", T0 + DAY, 10 * DAY, &ca2, &k2, NULL), 0);
	assert_int_equal(kmm_certs_bundle(ca1, NULL, T0, &b1, NULL), 0);
	assert_int_equal(kmm_certs_count(b1), 1);
	assert_int_equal(kmm_certs_bundle(ca2, b1, T0 + DAY, &b2, NULL), 0);
	assert_int_equal(kmm_certs_count(b2), 2);
	first = parse(b2);
	want = parse(ca2);
	assert_int_equal(X509_cmp(first, want), 0);
	X509_free(first);
	X509_free(want);
	/* The current CA is not added twice. */
	assert_int_equal(kmm_certs_bundle(ca2, b2, T0 + DAY, &b3, NULL), 0);
	assert_string_equal(b3, b2);
	/* Once the old CA has expired it leaves. */
	assert_int_equal(kmm_certs_bundle(ca2, b2, T0 + 10 * DAY, &b4, NULL), 0);
	assert_int_equal(kmm_certs_count(b4), 1);
	free(ca1);
	free(k1);
	free(ca2);
	free(k2);
	free(b1);
	free(b2);
	free(b3);
	free(b4);
}

static void test_bundle_is_capped(void **state)
{
	char *bundle = NULL, *next, *ca, *key;

	(void)state;
	for (int i = 0; i < KMM_CERTS_MAX_BUNDLE + 3; i++) {
		assert_int_equal(kmm_certs_new_ca("ca", T0, 100 * DAY, &ca, &key, NULL), 0);
		assert_int_equal(kmm_certs_bundle(ca, bundle, T0, &next, NULL), 0);
		free(bundle);
		bundle = next;
		free(ca);
		free(key);
	}
	assert_int_equal(kmm_certs_count(bundle), KMM_CERTS_MAX_BUNDLE);
	free(bundle);
}

static void plan_ok(const struct kmm_certs_state *cur, const struct kmm_certs_policy *p, time_t now,
		    struct kmm_certs_state *next, enum kmm_certs_change want)
{
	enum kmm_certs_change change = KMM_CERTS_KEEP;
	struct kmm_error *err = NULL;

	if (kmm_certs_plan(cur, p, now, next, &change, &err) < 0)
		fail_msg("plan: %s", kmm_error_message(err));
	assert_string_equal(kmm_certs_change_name(change), kmm_certs_change_name(want));
	/* Whatever the change, the result is a complete state that checks. */
	assert_int_equal(kmm_certs_check_ca(next->ca_bundle, next->ca_key, now, NULL), 0);
	assert_int_equal(kmm_certs_check_serving(next->ca_bundle, next->tls_cert, next->tls_key,
						 p->hosts, now, NULL),
			 0);
}

static void test_plan_life(void **state)
{
	struct kmm_certs_state s0 = { 0 }, s1 = { 0 }, s2 = { 0 }, s3 = { 0 }, s4 = { 0 },
			       s5 = { 0 };

	(void)state;
	/* First start: no Secret. */
	plan_ok(NULL, &policy, T0, &s0, KMM_CERTS_NEW_CA);
	assert_int_equal(kmm_certs_count(s0.ca_bundle), 1);
	/* A day later nothing is due. */
	plan_ok(&s0, &policy, T0 + DAY, &s1, KMM_CERTS_KEEP);
	assert_string_equal(s1.tls_cert, s0.tls_cert);
	assert_string_equal(s1.ca_bundle, s0.ca_bundle);
	/* 20 of 30 days: a new certificate from the same CA; the bundle does not move. */
	plan_ok(&s1, &policy, T0 + 20 * DAY, &s2, KMM_CERTS_NEW_CERT);
	assert_string_not_equal(s2.tls_cert, s1.tls_cert);
	assert_string_equal(s2.ca_bundle, s1.ca_bundle);
	assert_string_equal(s2.ca_key, s1.ca_key);
	/* 200 of 300 days: a new CA in front, the old one kept next to it. */
	plan_ok(&s2, &policy, T0 + 200 * DAY, &s3, KMM_CERTS_NEW_CA);
	assert_int_equal(kmm_certs_count(s3.ca_bundle), 2);
	assert_string_not_equal(s3.ca_key, s2.ca_key);
	/* The certificate the old CA signed still verifies against the new bundle's second entry. */
	assert_non_null(strstr(s3.ca_bundle, s2.ca_bundle));
	/* Once the old CA expired (day 300), the next round prunes it (its certificate is also
	 * renewed by then: day 200 + 20). */
	plan_ok(&s3, &policy, T0 + 215 * DAY, &s4, KMM_CERTS_KEEP);
	plan_ok(&s4, &policy, T0 + 301 * DAY, &s5, KMM_CERTS_NEW_CERT);
	assert_int_equal(kmm_certs_count(s5.ca_bundle), 1);
	kmm_certs_state_clear(&s0);
	kmm_certs_state_clear(&s1);
	kmm_certs_state_clear(&s2);
	kmm_certs_state_clear(&s3);
	kmm_certs_state_clear(&s4);
	kmm_certs_state_clear(&s5);
}

static void test_plan_prune_alone(void **state)
{
	struct kmm_certs_state s0 = { 0 }, s1 = { 0 }, s2 = { 0 };
	struct kmm_certs_policy short_cert = policy;

	(void)state;
	/* A CA rotation at day 200 keeps the old CA until day 300; a certificate of 200 days
	 * issued at day 200 is not due at day 301, so only the bundle changes. */
	short_cert.cert_valid_seconds = 200 * DAY;
	plan_ok(NULL, &short_cert, T0, &s0, KMM_CERTS_NEW_CA);
	plan_ok(&s0, &short_cert, T0 + 200 * DAY, &s1, KMM_CERTS_NEW_CA);
	assert_int_equal(kmm_certs_count(s1.ca_bundle), 2);
	plan_ok(&s1, &short_cert, T0 + 301 * DAY, &s2, KMM_CERTS_PRUNE);
	assert_int_equal(kmm_certs_count(s2.ca_bundle), 1);
	assert_string_equal(s2.tls_cert, s1.tls_cert);
	kmm_certs_state_clear(&s0);
	kmm_certs_state_clear(&s1);
	kmm_certs_state_clear(&s2);
}

static void test_plan_repairs(void **state)
{
	struct kmm_certs_state s0 = { 0 }, s1 = { 0 }, damaged;
	const char *const renamed[] = { "kmm-webhook", "kmm-webhook.kmm.svc", NULL };
	struct kmm_certs_policy moved = policy;

	(void)state;
	plan_ok(NULL, &policy, T0, &s0, KMM_CERTS_NEW_CA);
	/* A certificate that is missing or not base64-decodable: reissued from the same CA. */
	damaged = s0;
	damaged.tls_cert = NULL;
	plan_ok(&damaged, &policy, T0, &s1, KMM_CERTS_NEW_CERT);
	assert_string_equal(s1.ca_key, s0.ca_key);
	kmm_certs_state_clear(&s1);
	/* The certificate's key replaced by another: reissued. */
	damaged.tls_cert = s0.tls_cert;
	damaged.tls_key = s0.ca_key;
	plan_ok(&damaged, &policy, T0, &s1, KMM_CERTS_NEW_CERT);
	kmm_certs_state_clear(&s1);
	/* The CA key lost: a new CA. */
	damaged = s0;
	damaged.ca_key = (char *)"garbage";
	plan_ok(&damaged, &policy, T0, &s1, KMM_CERTS_NEW_CA);
	kmm_certs_state_clear(&s1);
	/* The Service renamed: a certificate for the new names, same CA. */
	moved.hosts = renamed;
	plan_ok(&s0, &moved, T0, &s1, KMM_CERTS_NEW_CERT);
	assert_string_equal(s1.ca_bundle, s0.ca_bundle);
	kmm_certs_state_clear(&s1);
	kmm_certs_state_clear(&s0);
}

static void test_plan_refuses_incomplete_policy(void **state)
{
	struct kmm_certs_policy p = policy;
	struct kmm_certs_state next = { 0 };
	enum kmm_certs_change c;

	(void)state;
	p.cert_valid_seconds = 0;
	assert_int_equal(kmm_certs_plan(NULL, &p, T0, &next, &c, NULL), -EINVAL);
	p = policy;
	p.hosts = (const char *const[]){ NULL };
	assert_true(kmm_certs_plan(NULL, &p, T0, &next, &c, NULL) < 0);
	assert_null(next.ca_bundle);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ca_is_a_ca_with_its_key),
		cmocka_unit_test(test_ca_key_mismatch_refused),
		cmocka_unit_test(test_issued_certificate_serves_every_host),
		cmocka_unit_test(test_certificate_does_not_outlive_its_ca),
		cmocka_unit_test(test_foreign_ca_refused),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_due_after_two_thirds),
		cmocka_unit_test(test_bundle_keeps_valid_old_cas_current_first),
		cmocka_unit_test(test_bundle_is_capped),
		cmocka_unit_test(test_plan_life),
		cmocka_unit_test(test_plan_prune_alone),
		cmocka_unit_test(test_plan_repairs),
		cmocka_unit_test(test_plan_refuses_incomplete_policy),
	};

	return cmocka_run_group_tests_name("certs", tests, NULL, NULL);
}
