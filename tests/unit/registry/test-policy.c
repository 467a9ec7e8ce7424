/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registry client's destination policy, the status-safe error summary,
 * and kmm_image_checks against real loopback sockets (a port that refuses
 * and a listener that accepts and never answers).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kmm/registry.h"

static void expect_refused(const struct kmm_registry_policy *p, const char *ip, const char *why)
{
	char buf[160] = "";
	int r = kmm_registry_policy_check_text(p, ip, buf, sizeof(buf));

	if (r != -EPERM)
		fail_msg("%s: expected refused, got %d", ip, r);
	if (why && !strstr(buf, why))
		fail_msg("%s: why '%s' lacks '%s'", ip, buf, why);
}

static void expect_allowed(const struct kmm_registry_policy *p, const char *ip)
{
	char buf[160] = "";
	int r = kmm_registry_policy_check_text(p, ip, buf, sizeof(buf));

	if (r != 0)
		fail_msg("%s: expected allowed, got %d (%s)", ip, r, buf);
}

/* Hostile destinations the default policy refuses, and what it must still allow. */
static const char *const refused_by_default[] = {
	"169.254.169.254",
	"169.254.0.1",
	"169.254.255.255",
	"169.254.170.2",
	"100.100.100.200",
	"168.63.129.16",
	"192.0.0.192",
	"fd00:ec2::254",
	"fe80::1",
	"febf:ffff::1",
	"::ffff:169.254.169.254",
	"::169.254.169.254",
	"64:ff9b::a9fe:a9fe",
	"::ffff:100.100.100.200",
	"FD00:EC2:0:0:0:0:0:254",
	"fe80::a9fe:a9fe",
};

static const char *const allowed_by_default[] = {
	"127.0.0.1",	   "::1",	    "10.0.0.1",
	"192.168.1.1",	   "172.16.0.1",    "8.8.8.8",
	"100.100.100.201", "fd00:ec2::253", "fec0::1",
	"169.253.255.255", "169.255.0.0",   "::ffff:127.0.0.1",
	"2001:db8::1",	   "100.64.0.1",    "192.0.0.193",
};

static void test_default_policy(void **state)
{
	for (size_t i = 0; i < KMM_ARRAY_SIZE(refused_by_default); i++) {
		expect_refused(NULL, refused_by_default[i], NULL);
		expect_refused(kmm_registry_policy_default(), refused_by_default[i], NULL);
	}
	for (size_t i = 0; i < KMM_ARRAY_SIZE(allowed_by_default); i++)
		expect_allowed(NULL, allowed_by_default[i]);
	/* The refusal names the address and what it is. */
	expect_refused(NULL, "169.254.169.254", "169.254.169.254 is a cloud metadata address");
	expect_refused(NULL, "169.254.1.2", "169.254.1.2 is link-local");
	expect_refused(NULL, "fe80::1", "fe80::1 is link-local");
	expect_refused(NULL, "::ffff:169.254.169.254", "cloud metadata");
	assert_int_equal(kmm_registry_policy_check_text(NULL, "not-an-ip", NULL, 0), -EINVAL);
}

static void test_sockaddr_forms(void **state)
{
	struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_port = htons(80) };
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	struct sockaddr sun = { .sa_family = AF_UNIX };
	char why[128];

	inet_pton(AF_INET, "169.254.169.254", &s4.sin_addr);
	assert_int_equal(
	    kmm_registry_policy_check(NULL, (struct sockaddr *)&s4, sizeof(s4), why, sizeof(why)),
	    -EPERM);
	/* A short length is not read past. */
	assert_int_equal(
	    kmm_registry_policy_check(NULL, (struct sockaddr *)&s4, 4, why, sizeof(why)), -EPERM);
	inet_pton(AF_INET6, "::1", &s6.sin6_addr);
	assert_int_equal(
	    kmm_registry_policy_check(NULL, (struct sockaddr *)&s6, sizeof(s6), why, sizeof(why)),
	    0);
	assert_int_equal(kmm_registry_policy_check(NULL, &sun, sizeof(sun), why, sizeof(why)),
			 -EPERM);
}

static void test_configured(void **state)
{
	const char *allow[] = { "169.254.169.254/32", "fe80::/16", "127.0.0.1", NULL };
	const char *deny[] = { "127.0.0.0/8", "10.1.0.0/16", "2001:db8::/32", NULL };
	struct kmm_registry_policy *p = NULL;
	struct kmm_error *err = NULL;

	if (kmm_registry_policy_new(allow, deny, &p, &err) < 0)
		fail_msg("%s", kmm_error_message(err));
	expect_allowed(p, "169.254.169.254");
	expect_allowed(p, "::ffff:169.254.169.254");
	expect_refused(p, "169.254.169.253", "link-local");
	expect_refused(p, "100.100.100.200", "Alibaba");
	expect_allowed(p, "fe80::1");
	expect_refused(p, "fe81::1", "link-local");
	expect_allowed(p, "127.0.0.1");
	expect_refused(p, "127.0.0.2", "denied networks");
	expect_refused(p, "::ffff:127.0.0.3", "denied networks");
	expect_refused(p, "10.1.200.3", "denied networks");
	expect_allowed(p, "10.2.0.1");
	expect_refused(p, "2001:db8:ffff::1", "denied networks");
	kmm_registry_policy_free(p);
	/* Empty lists: the built-in policy. */
	assert_int_equal(kmm_registry_policy_new(NULL, NULL, &p, NULL), 0);
	expect_refused(p, "169.254.169.254", NULL);
	expect_allowed(p, "127.0.0.1");
	kmm_registry_policy_free(p);
	kmm_registry_policy_free(NULL);
}

static void test_parse_errors(void **state)
{
	static const char *const bad[] = {
		"",
		"abc",
		"10.0.0.1/33",
		"10.0.0.0/-1",
		"10.0.0.1/8",
		"::1/129",
		"1.2.3.4/ 8",
		"1.2.3.4/",
		"1.2.3.4/8x",
		"1.2.3.4/+8",
		"fe80::1/10",
		"/8",
		"1.2.3",
		"1.2.3.4.5",
		"[::1]",
		"169.254.0.0/16 ",
		"http://169.254.169.254/",
		"0123456789012345678901234567890123456789012345678901234567890123456789",
	};

	for (size_t i = 0; i < KMM_ARRAY_SIZE(bad); i++) {
		const char *list[] = { bad[i], NULL };
		struct kmm_registry_policy *p = NULL;
		struct kmm_error *err = NULL;

		if (kmm_registry_policy_new(list, NULL, &p, &err) != -EINVAL)
			fail_msg("'%s' accepted as allowed network", bad[i]);
		assert_non_null(strstr(kmm_error_message(err), "allowed networks"));
		assert_null(p);
		kmm_error_free(err);
		err = NULL;
		if (kmm_registry_policy_new(NULL, list, &p, &err) != -EINVAL)
			fail_msg("'%s' accepted as denied network", bad[i]);
		kmm_error_free(err);
	}
}

static void summary_is(struct kmm_error *e, const char *want)
{
	char buf[256];

	kmm_registry_error_summary(e, buf, sizeof(buf));
	if (strcmp(buf, want) != 0)
		fail_msg("summary '%s', want '%s' (message: %s)", buf, want, kmm_error_message(e));
	kmm_error_free(e);
}

static void test_summary(void **state)
{
	struct kmm_error *e = NULL;
	char small[16];

	kmm_error_make_http(&e, 401, "UNAUTHORIZED", "GET x: HTTP 401 (<script>evil</script>)");
	summary_is(e, "authentication failed: HTTP 401 UNAUTHORIZED");
	e = NULL;
	kmm_error_make_http(&e, 403, "DENIED", "x");
	summary_is(e, "access denied: HTTP 403 DENIED");
	e = NULL;
	/* A registry's code outside [A-Z0-9_] is not quoted; nor is its message. */
	kmm_error_make_http(&e, 500, "bad\ncode <b>", "HEAD: HTTP 500 (secret\033[2J stuff)");
	summary_is(e, "registry answered HTTP 500");
	e = NULL;
	kmm_error_make_http(&e, 404, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_ABCDEFGHIJKLMNOPQRSTUVWXYZ", "x");
	summary_is(e, "registry answered HTTP 404");
	e = NULL;
	kmm_error_make(&e, EIO, "anything the server said");
	summary_is(e, "Input/output error");
	e = NULL;
	kmm_error_make(&e, EPROTO, "token response from evil has no usable token");
	summary_is(e, "protocol error");
	summary_is(NULL, "unknown error");
	kmm_error_make_http(&e, 401, "UNAUTHORIZED", "x");
	kmm_registry_error_summary(e, small, sizeof(small));
	assert_int_equal(strlen(small), sizeof(small) - 1);
	kmm_error_free(e);
}

/* ---- kmm_image_checks with real sockets ---- */

static int64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct verdicts {
	pthread_mutex_t lock;
	int n;
	char keys[16][32];
	uint64_t tags[16];
	int results[16];
	int64_t at[16];
	char summaries[16][128];
};

static void on_done(void *userdata, const char *key, uint64_t tag, int result,
		    const struct kmm_error *err)
{
	struct verdicts *v = userdata;

	pthread_mutex_lock(&v->lock);
	if (v->n < 16) {
		snprintf(v->keys[v->n], sizeof(v->keys[0]), "%s", key);
		v->tags[v->n] = tag;
		v->results[v->n] = result;
		v->at[v->n] = ms_now();
		kmm_registry_error_summary(err, v->summaries[v->n], sizeof(v->summaries[0]));
		v->n++;
	}
	pthread_mutex_unlock(&v->lock);
}

static int wait_for(struct verdicts *v, int n, int64_t timeout_ms)
{
	int64_t end = ms_now() + timeout_ms;
	int have;

	for (;;) {
		pthread_mutex_lock(&v->lock);
		have = v->n;
		pthread_mutex_unlock(&v->lock);
		if (have >= n || ms_now() > end)
			return have;
		usleep(20000);
	}
}

static int listen_silent(int *ret_port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	/* The kernel completes handshakes into the backlog: connected, never answered. */
	assert_int_equal(listen(fd, 64), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*ret_port = ntohs(a.sin_port);
	return fd;
}

static struct kmm_registry *plain_client(void)
{
	const struct kmm_registry_options o = { .insecure = true };
	struct kmm_registry *r = NULL;

	assert_int_equal(kmm_registry_new(&o, &r, NULL), 0);
	return r;
}

static void test_checks_no_stall(void **state)
{
	const struct kmm_image_checks_options o = {
		.threads = 3, .per_host = 1, .max_queued = 4, .deadline_ms = 1500
	};
	struct verdicts v = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct kmm_image_checks *c = NULL;
	struct kmm_error *err = NULL;
	char image[96];
	int port, fd = listen_silent(&port);
	int64_t start;

	assert_int_equal(kmm_image_checks_new(&o, on_done, &v, &c, NULL), 0);
	start = ms_now();
	/* Three checks of one silent host: one runs, two wait for it. */
	for (int i = 0; i < 3; i++) {
		char key[8];

		snprintf(key, sizeof(key), "silent%d", i);
		snprintf(image, sizeof(image), "127.0.0.1:%d/k/m:v%d", port, i);
		assert_int_equal(
		    kmm_image_checks_submit(c, key, (uint64_t)i, image, plain_client(), NULL), 0);
	}
	/* Another host gets a thread at once: port 1 refuses, an answer within the second. */
	assert_int_equal(
	    kmm_image_checks_submit(c, "closed", 9, "127.0.0.1:1/k/m:v", plain_client(), NULL), 0);
	assert_int_equal(wait_for(&v, 1, 1000), 1);
	assert_string_equal(v.keys[0], "closed");
	assert_int_equal(v.results[0], -ECONNREFUSED);
	assert_string_equal(v.summaries[0], "cannot connect");
	assert_true(v.at[0] - start < 1000);
	/* The queue is bounded: 2 silent checks wait, so 2 more fit and then no more. */
	assert_int_equal(
	    kmm_image_checks_submit(c, "q1", 10, "127.0.0.1:1/k/m:a", plain_client(), NULL), 0);
	assert_int_equal(
	    kmm_image_checks_submit(c, "q2", 11, "127.0.0.1:1/k/m:b", plain_client(), NULL), 0);
	wait_for(&v, 3, 1000); /* the two refused ones run at once beside the silent one */
	snprintf(image, sizeof(image), "127.0.0.1:%d/k/m:full", port);
	for (int i = 0; i < 2; i++) {
		char key[8];

		snprintf(key, sizeof(key), "more%d", i);
		assert_int_equal(kmm_image_checks_submit(c, key, 12, image, plain_client(), NULL),
				 0);
	}
	assert_int_equal(kmm_image_checks_submit(c, "full", 13, image, plain_client(), &err),
			 -EAGAIN);
	kmm_error_free(err);
	err = NULL;
	/* A key already waiting is not queued twice: it takes the new tag. */
	snprintf(image, sizeof(image), "127.0.0.1:%d/k/m:v1", port);
	assert_int_equal(kmm_image_checks_submit(c, "silent1", 21, image, plain_client(), &err), 0);
	kmm_error_free(err);
	err = NULL;
	assert_int_equal(kmm_image_checks_submit(c, "bad", 14, "Busybox", plain_client(), &err),
			 -EINVAL);
	kmm_error_free(err);
	/* The first silent check ends at its deadline, not at curl's 30 s. */
	assert_int_equal(wait_for(&v, 4, 4000), 4);
	assert_string_equal(v.keys[3], "silent0");
	assert_int_equal(v.results[3], -ETIMEDOUT);
	assert_string_equal(v.summaries[3], "no answer in time");
	assert_true(v.at[3] - start >= 1400 && v.at[3] - start < 3000);
	/* silent1 runs next (one per host) and answers with the tag it was given last. */
	assert_int_equal(wait_for(&v, 5, 4000), 5);
	assert_string_equal(v.keys[4], "silent1");
	assert_int_equal(v.tags[4], 21);
	/* Stopping aborts the running check promptly and calls nobody back. */
	start = ms_now();
	kmm_image_checks_free(c);
	assert_true(ms_now() - start < 1500);
	pthread_mutex_lock(&v.lock);
	assert_true(v.n <= 6);
	pthread_mutex_unlock(&v.lock);
	close(fd);
}

/* The policy applies to the connection itself: refused before any socket exists. */
static void test_client_refuses_metadata(void **state)
{
	static const char *const spellings[] = {
		"2852039166:80/k:x",	      /* one decimal number */
		"0xa9.0xfe.0xa9.0xfe:80/k:x", /* hex parts */
		"0251.0376.0251.0376:80/k:x", /* octal parts */
		"169.254.43518:80/k:x",	      /* a.b.c16 */
	};
	struct kmm_registry *r = plain_client();
	struct kmm_error *err = NULL;
	char sum[256];

	assert_int_equal(
	    kmm_registry_image_exists(r, "169.254.169.254:80/latest/meta-data:x", NULL, &err),
	    -EPERM);
	assert_non_null(strstr(kmm_error_message(err), "refused by destination policy"));
	kmm_registry_error_summary(err, sum, sizeof(sum));
	assert_string_equal(sum, "refused by the operator's destination policy: 169.254.169.254 "
				 "is a cloud metadata address (allow it with "
				 "registryAllowedNetworks)");
	kmm_error_free(err);
	/* Other spellings of the address resolve to it: refused where curl connects. */
	for (size_t i = 0; i < KMM_ARRAY_SIZE(spellings); i++) {
		err = NULL;
		if (kmm_registry_image_exists(r, spellings[i], NULL, &err) != -EPERM)
			fail_msg("%s: %s", spellings[i], kmm_error_message(err));
		assert_non_null(strstr(kmm_error_message(err), "169.254.169.254 is a cloud"));
		kmm_error_free(err);
	}
	kmm_registry_free(r);
}

/* A host name is checked by the address it resolves to, at connect time. */
static void test_client_checks_resolved_address(void **state)
{
	const char *deny[] = { "127.0.0.0/8", "::1/128", NULL };
	struct kmm_registry_policy *p = NULL;
	struct kmm_registry *r = NULL;
	struct kmm_error *err = NULL;
	int port, fd = listen_silent(&port);
	char image[64];

	assert_int_equal(kmm_registry_policy_new(NULL, deny, &p, NULL), 0);
	struct kmm_registry_options o = { .insecure = true, .policy = p };

	assert_int_equal(kmm_registry_new(&o, &r, NULL), 0);
	snprintf(image, sizeof(image), "localhost:%d/k:x", port);
	assert_int_equal(kmm_registry_image_exists(r, image, NULL, &err), -EPERM);
	if (!strstr(kmm_error_message(err), "in the operator's denied networks"))
		fail_msg("%s", kmm_error_message(err));
	kmm_error_free(err);
	kmm_registry_free(r);
	kmm_registry_policy_free(p);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_policy),
		cmocka_unit_test(test_sockaddr_forms),
		cmocka_unit_test(test_configured),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_summary),
		cmocka_unit_test(test_checks_no_stall),
		cmocka_unit_test(test_client_refuses_metadata),
		cmocka_unit_test(test_client_checks_resolved_address),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
