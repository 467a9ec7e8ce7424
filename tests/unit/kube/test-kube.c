/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pure logic of lib/kube: paths, Status, config parsing, base64, times, watch
 * frames, retry decisions and Retry-After.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kmm/kube.h"
#include "kmm/kubeconfig.h"
#include "kmm/kube-watch.h"
#include "lib/kube/kube-internal.h"

static void test_path_core_and_group(void **state)
{
	_cleanup_free_ char *p1 = NULL, *p2 = NULL, *p3 = NULL, *p4 = NULL;

	assert_int_equal(kmm_kube_path(&(struct kmm_kube_target){ .res = &kmm_kube_pods,
								  .namespace = "ns",
								  .name = "p",
								  .subresource = "status" },
				       NULL, &p1, NULL),
			 0);
	assert_string_equal(p1, "/api/v1/namespaces/ns/pods/p/status");
	assert_int_equal(
	    kmm_kube_path(
		&(struct kmm_kube_target){ .res = &kmm_kube_leases, .namespace = "kube-system" },
		(const struct kmm_kube_query[]){ { "labelSelector", "a=b,c in (d e)" },
						 { "limit", NULL },
						 { "continue", "x&y=z" },
						 { NULL, NULL } },
		&p2, NULL),
	    0);
	assert_string_equal(p2, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
				"?labelSelector=a%3Db%2Cc%20in%20%28d%20e%29&continue=x%26y%3Dz");
	assert_int_equal(kmm_kube_path(&(struct kmm_kube_target){ .res = &kmm_kube_nodes,
								  .namespace = "ignored",
								  .name = "a/b c" },
				       NULL, &p3, NULL),
			 0);
	assert_string_equal(p3, "/api/v1/nodes/a%2Fb%20c");
	/* all namespaces */
	assert_int_equal(
	    kmm_kube_path(&(struct kmm_kube_target){ .res = &kmm_kube_pods }, NULL, &p4, NULL), 0);
	assert_string_equal(p4, "/api/v1/pods");
}

static void test_path_rejects_dot_segments(void **state)
{
	_cleanup_error_ struct kmm_error *err = NULL;
	char *p = NULL;

	assert_int_equal(
	    kmm_kube_path(
		&(struct kmm_kube_target){ .res = &kmm_kube_pods, .namespace = "ns", .name = ".." },
		NULL, &p, &err),
	    -EINVAL);
	assert_null(p);
	assert_non_null(strstr(err->message, "name"));
	kmm_error_free(err);
	err = NULL;
	assert_int_equal(
	    kmm_kube_path(
		&(struct kmm_kube_target){ .res = &kmm_kube_pods, .namespace = "", .name = "x" },
		NULL, &p, &err),
	    -EINVAL);
}

static void test_status_parse(void **state)
{
	static const char body[] =
	    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
	    "\"message\":\"too many\",\"reason\":\"TooManyRequests\",\"code\":429,"
	    "\"details\":{\"name\":\"x\",\"kind\":\"pods\",\"retryAfterSeconds\":3,"
	    "\"causes\":[{\"reason\":\"FieldValueInvalid\",\"message\":\"bad\",\"field\":\"spec."
	    "a\"}]}}";
	_cleanup_(kmm_kube_status_freep) struct kmm_kube_status *s = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;
	struct kmm_kube_response resp = { .status = 429,
					  .body = (char *)body,
					  .body_len = sizeof(body) - 1,
					  .retry_after_ms = -1 };

	assert_int_equal(kmm_kube_status_parse(body, sizeof(body) - 1, &s), 0);
	assert_int_equal(s->code, 429);
	assert_string_equal(s->reason, "TooManyRequests");
	assert_string_equal(s->name, "x");
	assert_int_equal(s->retry_after_seconds, 3);
	assert_int_equal(s->n_causes, 1);
	assert_string_equal(s->causes[0].field, "spec.a");
	assert_int_equal(kmm_kube_error_from_response(&resp, "GET /x", &err), -EAGAIN);
	assert_int_equal(err->http_status, 429);
	assert_string_equal(err->reason, "TooManyRequests");
	assert_int_equal(err->retry_after_ms, 3000);
	assert_string_equal(err->message, "GET /x: 429 TooManyRequests: too many (spec.a: bad)");
	assert_int_equal(kmm_kube_status_parse("{\"kind\":\"Pod\"}", 14, &s), -EINVAL);
}

static void test_error_non_status_body(void **state)
{
	_cleanup_error_ struct kmm_error *err = NULL;
	struct kmm_kube_response resp = { .status = 503,
					  .body = (char *)"upstream\nconnect error",
					  .body_len = 22,
					  .retry_after_ms = 2000 };

	assert_int_equal(kmm_kube_error_from_response(&resp, "GET /y", &err),
			 -kmm_errno_from_http_status(503, NULL));
	assert_int_equal(err->http_status, 503);
	assert_int_equal(err->retry_after_ms, 2000);
	assert_string_equal(err->message, "GET /y: 503 upstream?connect error");
}

static json_t *kubeconfig(const char *user_json)
{
	char buf[2048];

	snprintf(
	    buf, sizeof(buf),
	    "{\"apiVersion\":\"v1\",\"kind\":\"Config\",\"current-context\":\"c1\","
	    "\"contexts\":[{\"name\":\"c1\",\"context\":{\"cluster\":\"k\",\"user\":\"u\","
	    "\"namespace\":\"ns1\"}},"
	    "{\"name\":\"c2\",\"context\":{\"cluster\":\"k\",\"user\":\"u\"}}],"
	    "\"clusters\":[{\"name\":\"k\",\"cluster\":{\"server\":\"https://127.0.0.1:6443/\","
	    "\"certificate-authority-data\":\"aGVsbG8=\"}}],"
	    "\"users\":[{\"name\":\"u\",\"user\":%s}]}",
	    user_json);
	return json_loads(buf, 0, NULL);
}

static void test_config_ok(void **state)
{
	_cleanup_(json_decrefp) json_t *doc =
	    kubeconfig("{\"tokenFile\":\"tok\",\"exec\":{\"apiVersion\":\"client.authentication."
		       "k8s.io/v1\",\"command\":\"./"
		       "plug\",\"args\":[\"a\"],\"env\":[{\"name\":\"X\",\"value\":\"1\"}]}}");
	_cleanup_kube_config_ struct kmm_kube_config *c = NULL, *c2 = NULL;

	assert_int_equal(kmm_kube_config_from_json(doc, "cfg", "/etc/k", NULL, &c, NULL), 0);
	assert_string_equal(c->server, "https://127.0.0.1:6443");
	assert_string_equal(c->namespace, "ns1");
	assert_int_equal(c->ca_data_len, 5);
	assert_memory_equal(c->ca_data, "hello", 5);
	assert_string_equal(c->token_file, "/etc/k/tok");
	assert_string_equal(c->exec->command, "/etc/k/./plug");
	assert_string_equal(c->exec->args[0], "a");
	assert_string_equal(c->exec->env[0], "X=1");
	assert_int_equal(kmm_kube_config_from_json(doc, "cfg", NULL, "c2", &c2, NULL), 0);
	assert_string_equal(c2->namespace, "default");
	assert_string_equal(c2->context, "c2");
}

static void expect_config_error(const char *user, const char *ctx, const char *msg)
{
	_cleanup_(json_decrefp) json_t *doc = kubeconfig(user);
	_cleanup_error_ struct kmm_error *err = NULL;
	struct kmm_kube_config *c = NULL;

	assert_non_null(doc);
	assert_true(kmm_kube_config_from_json(doc, "/x/config", NULL, ctx, &c, &err) < 0);
	assert_null(c);
	if (!strstr(err->message, msg))
		fail_msg("message \"%s\" lacks \"%s\"", err->message, msg);
}

static void test_config_errors(void **state)
{
	expect_config_error("{\"client-key-data\":\"!!!\",\"client-certificate-data\":\"aGk=\"}",
			    NULL, "/x/config: users[0].user.client-key-data: invalid base64");
	expect_config_error("{\"client-certificate\":\"a.crt\"}", NULL,
			    "users[0].user: client certificate and client key must come together");
	expect_config_error("{\"token\":5}", NULL, "users[0].user.token: not a string");
	expect_config_error("{}", "nope", "/x/config: contexts: no entry named \"nope\"");
	expect_config_error("{\"exec\":{\"command\":\"x\",\"apiVersion\":\"client.authentication."
			    "k8s.io/v1alpha0\"}}",
			    NULL, "users[0].user.exec.apiVersion: unsupported");
	expect_config_error("{\"exec\":{\"apiVersion\":\"client.authentication.k8s.io/v1\"}}", NULL,
			    "users[0].user.exec.command: missing");
}

static void test_in_cluster(void **state)
{
	char dir[] = "/tmp/kmm-sa.XXXXXX", p[128];
	_cleanup_kube_config_ struct kmm_kube_config *c = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	assert_int_equal(kmm_kube_config_in_cluster(dir, &c, &err), -ENOENT); /* no token yet */
	assert_non_null(strstr(err->message, "/token"));
	snprintf(p, sizeof(p), "%s/token", dir);
	f = fopen(p, "w");
	fputs("tok\n", f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/ca.crt", dir);
	f = fopen(p, "w");
	fclose(f);
	snprintf(p, sizeof(p), "%s/namespace", dir);
	f = fopen(p, "w");
	fputs("kmm-system\n", f);
	fclose(f);
	kmm_error_free(err);
	err = NULL;
	assert_int_equal(kmm_kube_config_in_cluster(dir, &c, &err), 0);
	assert_string_equal(c->server, "https://[fd00::1]:443");
	assert_string_equal(c->namespace, "kmm-system");
	assert_non_null(strstr(c->token_file, "/token"));
	assert_non_null(strstr(c->ca_file, "/ca.crt"));
	assert_null(c->token); /* read per request through token_file, so rotations apply */
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	for (size_t i = 0; i < 3; i++) {
		static const char *const names[] = { "token", "ca.crt", "namespace" };

		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		assert_int_equal(unlink(p), 0);
	}
	assert_int_equal(rmdir(dir), 0);
}

static void test_base64_and_time(void **state)
{
	_cleanup_free_ char *out = NULL;
	size_t len = 0;
	time_t t;

	assert_int_equal(kmm_kube_base64_decode("aGk=\n", &out, &len), 0);
	assert_int_equal(len, 2);
	assert_string_equal(out, "hi");
	free(out);
	out = NULL;
	assert_int_equal(kmm_kube_base64_decode("a=Gk", &out, &len), -EINVAL);
	assert_int_equal(kmm_kube_base64_decode("abc", &out, &len), -EINVAL);
	assert_int_equal(kube_parse_rfc3339("1970-01-01T00:01:00Z", &t), 0);
	assert_int_equal(t, 60);
	assert_int_equal(kube_parse_rfc3339("1970-01-01T01:00:00.123+01:00", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(kube_parse_rfc3339("1970-01-01 01:00:00", &t), -EINVAL);
}

static void test_watch_decode(void **state)
{
	static const char f1[] =
	    "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"12\"}}}";
	static const char f2[] =
	    "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,\"reason\":"
	    "\"Expired\",\"message\":\"too old resource version\"}}";
	_cleanup_error_ struct kmm_error *err = NULL;
	enum kmm_watch_event_type t;
	json_t *o = NULL;

	assert_int_equal(kmm_watch_decode(f1, sizeof(f1) - 1, &t, &o, NULL), 0);
	assert_int_equal(t, KMM_WATCH_BOOKMARK);
	assert_string_equal(kmm_kube_meta_str(o, "resourceVersion"), "12");
	json_decref(o);
	assert_int_equal(kmm_watch_decode(f2, sizeof(f2) - 1, &t, &o, NULL), 0);
	assert_int_equal(t, KMM_WATCH_ERROR);
	assert_int_equal(kmm_watch_error_event(o, &err), -ESTALE);
	assert_int_equal(err->http_status, 410);
	assert_string_equal(err->reason, "Expired");
	json_decref(o);
	assert_int_equal(kmm_watch_decode("{\"type\":\"NOPE\",\"object\":{}}", 27, &t, &o, NULL),
			 -EBADMSG);
	assert_int_equal(kmm_watch_decode("{\"type\":\"ADDED\"}", 16, &t, &o, NULL), -EBADMSG);
	assert_int_equal(kmm_watch_decode("[", 1, &t, &o, NULL), -EBADMSG);
}

static void test_retry_after_parse(void **state)
{
	int64_t ms = -1;
	time_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */

#define RA(s_) kube_parse_retry_after((s_), strlen(s_), now, &ms)
	assert_int_equal(RA(" 3\r\n"), 0);
	assert_int_equal(ms, 3000);
	assert_int_equal(RA("0"), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(RA("86400"), 0);
	assert_int_equal(ms, 86400000);
	/* An HTTP-date: its distance from now; one in the past is no delay. */
	assert_int_equal(RA(" Sun, 06 Nov 1994 08:49:47 GMT\r\n"), 0);
	assert_int_equal(ms, 10000);
	assert_int_equal(RA("Sun, 06 Nov 1994 08:00:00 GMT"), 0);
	assert_int_equal(ms, 0);
	ms = 42;
	assert_int_equal(RA("86401"), -EINVAL);
	assert_int_equal(RA("99999999999999999999999"), -EINVAL);
	assert_int_equal(RA("-1"), -EINVAL);
	assert_int_equal(RA("1.5"), -EINVAL);
	assert_int_equal(RA("3 s"), -EINVAL);
	assert_int_equal(RA(""), -EINVAL);
	assert_int_equal(RA("  \r\n"), -EINVAL);
	assert_int_equal(RA("soon"), -EINVAL);
	assert_int_equal(ms, 42); /* untouched on failure */
#undef RA
}

static void test_retry_decision(void **state)
{
	/* 429: the server did not act, whatever the method. */
	assert_true(kube_retry_allowed("POST", false, CURLE_OK, 429, false));
	assert_true(kube_retry_allowed("PATCH", false, CURLE_OK, 429, false));
	/* 500, 502, 503, 504: every method but an anonymous POST without Retry-After. */
	for (long st = 500; st <= 504; st++) {
		bool want = st != 501;

		assert_int_equal(kube_retry_allowed("GET", false, CURLE_OK, st, false), want);
		assert_int_equal(kube_retry_allowed("PUT", false, CURLE_OK, st, false), want);
		assert_int_equal(kube_retry_allowed("PATCH", false, CURLE_OK, st, false), want);
		assert_int_equal(kube_retry_allowed("DELETE", false, CURLE_OK, st, false), want);
		assert_int_equal(kube_retry_allowed("POST", true, CURLE_OK, st, false), want);
		assert_int_equal(kube_retry_allowed("POST", false, CURLE_OK, st, true), want);
		assert_false(kube_retry_allowed("POST", false, CURLE_OK, st, false));
	}
	/* Other statuses never. */
	for (long st = 200; st < 600; st++)
		if (st != 429 && st != 500 && st != 502 && st != 503 && st != 504)
			assert_false(kube_retry_allowed("GET", false, CURLE_OK, st, true));
	/* Nothing sent: always; lost after sending: idempotent requests only. */
	assert_true(kube_retry_allowed("POST", false, CURLE_COULDNT_CONNECT, 0, false));
	assert_true(kube_retry_allowed("PATCH", false, CURLE_SSL_CONNECT_ERROR, 0, false));
	assert_true(kube_retry_allowed("DELETE", false, CURLE_RECV_ERROR, 0, false));
	assert_true(kube_retry_allowed("POST", true, CURLE_HTTP2_STREAM, 0, false));
	assert_false(kube_retry_allowed("POST", false, CURLE_RECV_ERROR, 0, false));
	assert_false(kube_retry_allowed("PATCH", false, CURLE_OPERATION_TIMEDOUT, 0, false));
	assert_false(kube_retry_allowed("GET", false, CURLE_SSL_CACERT_BADFILE, 0, false));
	/* What may have been applied. */
	assert_false(kube_maybe_applied("GET", CURLE_OK, 500));
	assert_false(kube_maybe_applied("POST", CURLE_OK, 429));
	assert_false(kube_maybe_applied("POST", CURLE_COULDNT_CONNECT, 0));
	assert_true(kube_maybe_applied("POST", CURLE_OK, 500));
	assert_true(kube_maybe_applied("DELETE", CURLE_RECV_ERROR, 0));
}

static void test_retry_delay(void **state)
{
	struct kmm_kube_client_options o;

	kmm_kube_client_options_init(&o);
	o.retry_base_ms = 100;
	o.retry_max_ms = 2000;
	/* The server's delay as given, within the cap; 0 is "now". */
	assert_int_equal(kube_retry_delay_ms(&o, 0, 1000), 1000);
	assert_int_equal(kube_retry_delay_ms(&o, 3, 0), 0);
	assert_int_equal(kube_retry_delay_ms(&o, 0, 86400000), 2000);
	/* Else the jittered backoff, capped too. */
	for (int n = 0; n < 10; n++) {
		long d = kube_retry_delay_ms(&o, n, -1);

		assert_true(d >= 50 && d <= 2000);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_core_and_group),
		cmocka_unit_test(test_path_rejects_dot_segments),
		cmocka_unit_test(test_status_parse),
		cmocka_unit_test(test_error_non_status_body),
		cmocka_unit_test(test_config_ok),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_in_cluster),
		cmocka_unit_test(test_base64_and_time),
		cmocka_unit_test(test_watch_decode),
		cmocka_unit_test(test_retry_after_parse),
		cmocka_unit_test(test_retry_decision),
		cmocka_unit_test(test_retry_delay),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
