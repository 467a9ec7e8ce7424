/* SPDX-License-Identifier: Apache-2.0 */
/* HTTPS and the authorize hook of kmm_httpd, against a real libcurl client. */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "kmm/shared-fileio.h"
#include "kmm/server-httpd.h"

static const char *const local_hosts[] = { "localhost", "127.0.0.1", NULL };

static void ok_handler(struct kmm_http_response *resp, void *userdata)
{
	int *calls = userdata;

	(*calls)++;
	kmm_buf_append_str(&resp->body, "ok");
}

static size_t collect(char *p, size_t size, size_t n, void *userdata)
{
	kmm_buf_append(userdata, p, size * n);
	return size * n;
}

struct req {
	const char *scheme;	   /* "https" (default) or "http" */
	const char *ca;		   /* PEM to verify the server against; NULL: no verification */
	const char *authorization; /* header value or NULL */
	struct kmm_buf body;
	struct kmm_buf headers;
	long status;
};

/* Returns the curl result; fills r->status and r->body. */
static CURLcode fetch(uint16_t port, const char *path, struct req *r)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	char url[128], h[256];
	CURLcode cc;

	assert_non_null(c);
	kmm_buf_init(&r->body, 1 << 20);
	kmm_buf_init(&r->headers, 1 << 16);
	snprintf(url, sizeof(url), "%s://127.0.0.1:%u%s", r->scheme ? r->scheme : "https", port,
		 path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (r->ca) {
		struct curl_blob blob = { (void *)r->ca, strlen(r->ca), CURL_BLOB_COPY };

		curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
	} else {
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (r->authorization) {
		snprintf(h, sizeof(h), "Authorization: %s", r->authorization);
		hdrs = curl_slist_append(hdrs, h);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	}
	cc = curl_easy_perform(c);
	r->status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return cc;
}

static void req_clear(struct req *r)
{
	kmm_buf_free(&r->body);
	kmm_buf_free(&r->headers);
}

static X509 *parse_cert(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);

	BIO_free(b);
	assert_non_null(x);
	return x;
}

static void test_self_signed_names_and_key(void **state)
{
	static const char *const hosts[] = { "localhost", "127.0.0.1", "kmm-operator-7d9f", NULL };
	_cleanup_free_ char *cert = NULL, *key = NULL;
	_cleanup_error_ struct kmm_error *e1 = NULL, *e2 = NULL;
	static const char *const empty[] = { NULL };
	static const char *const blank[] = { "localhost", "", NULL };
	X509 *x;
	BIO *kb;
	EVP_PKEY *pk;

	(void)state;
	assert_int_equal(kmm_tls_self_signed(hosts, &cert, &key, NULL), 0);
	assert_non_null(strstr(cert, "BEGIN CERTIFICATE"));
	assert_non_null(strstr(key, "BEGIN PRIVATE KEY"));
	x = parse_cert(cert);
	assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "kmm-operator-7d9f", 0, 0, NULL), 1);
	assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_host(x, "example.com", 0, 0, NULL), 0);
	assert_int_equal(X509_check_ip_asc(x, "10.0.0.1", 0), 0);
	assert_int_equal(X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0), 1);
	assert_true(X509_cmp_current_time(X509_get0_notBefore(x)) < 0);
	assert_true(X509_cmp_current_time(X509_get0_notAfter(x)) > 0);
	kb = BIO_new_mem_buf(key, -1);
	pk = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
	assert_non_null(pk);
	assert_int_equal(EVP_PKEY_get_base_id(pk), EVP_PKEY_EC);
	assert_int_equal(X509_check_private_key(x, pk), 1);
	assert_int_equal(X509_verify(x, pk), 1); /* self-signed: its own key signed it */
	EVP_PKEY_free(pk);
	BIO_free(kb);
	X509_free(x);

	assert_int_equal(kmm_tls_self_signed(empty, &cert, &key, &e1), -EINVAL);
	assert_int_equal(kmm_tls_self_signed(blank, &cert, &key, &e2), -EINVAL);
}

static void test_https_verified_with_the_generated_certificate(void **state)
{
	_cleanup_(kmm_httpd_freep) struct kmm_httpd *h = NULL;
	_cleanup_free_ char *cert = NULL, *key = NULL, *other = NULL, *other_key = NULL;
	static const char *const elsewhere[] = { "elsewhere.example", NULL };
	struct kmm_httpd_options o = { .bind_address = "127.0.0.1:0" };
	struct req ok = { 0 }, wrong_ca = { 0 }, plain = { .scheme = "http" };
	int calls = 0;

	(void)state;
	assert_int_equal(kmm_tls_self_signed(local_hosts, &cert, &key, NULL), 0);
	assert_int_equal(kmm_tls_self_signed(elsewhere, &other, &other_key, NULL), 0);
	assert_int_equal(kmm_httpd_new(&o, &h, NULL), 0);
	assert_int_equal(kmm_httpd_set_tls(h, cert, key), 0);
	assert_int_equal(kmm_httpd_route(h, "/metrics", ok_handler, &calls), 0);
	assert_int_equal(kmm_httpd_start(h, NULL), 0);
	assert_true(kmm_httpd_tls(h));

	ok.ca = cert;
	assert_int_equal(fetch(kmm_httpd_port(h), "/metrics", &ok), CURLE_OK);
	assert_int_equal(ok.status, 200);
	assert_string_equal(kmm_buf_str(&ok.body), "ok");
	/* Another certificate as the only trust anchor: the handshake must fail. */
	wrong_ca.ca = other;
	assert_int_equal(fetch(kmm_httpd_port(h), "/metrics", &wrong_ca),
			 CURLE_PEER_FAILED_VERIFICATION);
	/* Plain HTTP to the TLS port gets no HTTP answer. */
	assert_true(fetch(kmm_httpd_port(h), "/metrics", &plain) != CURLE_OK || plain.status == 0 ||
		    plain.status >= 400);
	assert_int_equal(calls, 1);
	req_clear(&ok);
	req_clear(&wrong_ca);
	req_clear(&plain);
}

static void test_bad_pair_fails_the_start(void **state)
{
	_cleanup_(kmm_httpd_freep) struct kmm_httpd *h = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;
	_cleanup_free_ char *cert = NULL, *key = NULL, *cert2 = NULL, *key2 = NULL;
	struct kmm_httpd_options o = { .bind_address = "127.0.0.1:0" };

	(void)state;
	assert_int_equal(kmm_tls_self_signed(local_hosts, &cert, &key, NULL), 0);
	assert_int_equal(kmm_tls_self_signed(local_hosts, &cert2, &key2, NULL), 0);
	assert_int_equal(kmm_httpd_new(&o, &h, NULL), 0);
	/* A certificate with another certificate's key. */
	assert_int_equal(kmm_httpd_set_tls(h, cert, key2), 0);
	assert_true(kmm_httpd_start(h, &err) < 0);
	assert_non_null(strstr(kmm_error_message(err), "127.0.0.1:0"));
	assert_int_equal(kmm_httpd_port(h), 0);
}

struct auth_seen {
	int calls;
	int freed;
	char method[16];
	char path[64];
};

/* Decides from the token alone: the hook's contract, not a real authorizer. */
static int fake_authorize(const char *authorization, const char *method, const char *path,
			  void *userdata)
{
	struct auth_seen *s = userdata;

	s->calls++;
	snprintf(s->method, sizeof(s->method), "%s", method);
	snprintf(s->path, sizeof(s->path), "%s", path);
	if (!authorization)
		return 401;
	if (strcmp(authorization, "Bearer good") == 0)
		return 200;
	if (strcmp(authorization, "Bearer limited") == 0)
		return 403;
	if (strcmp(authorization, "Bearer broken") == 0)
		return 500;
	return 401;
}

static void fake_free(void *userdata)
{
	((struct auth_seen *)userdata)->freed++;
}

static void test_authorize_hook_401_403_500_200(void **state)
{
	struct kmm_httpd *h = NULL;
	_cleanup_free_ char *cert = NULL, *key = NULL;
	struct kmm_httpd_options o = { .bind_address = "127.0.0.1:0" };
	struct auth_seen seen = { 0 };
	struct req none = { 0 }, bad = { .authorization = "Bearer nope" },
		   denied = { .authorization = "Bearer limited" },
		   broken = { .authorization = "Bearer broken" },
		   good = { .authorization = "Bearer good" },
		   good404 = { .authorization = "Bearer good" }, anon404 = { 0 };
	uint16_t port;
	int calls = 0;

	(void)state;
	assert_int_equal(kmm_tls_self_signed(local_hosts, &cert, &key, NULL), 0);
	assert_int_equal(kmm_httpd_new(&o, &h, NULL), 0);
	assert_int_equal(kmm_httpd_set_tls(h, cert, key), 0);
	kmm_httpd_set_authorize(h, fake_authorize, &seen, fake_free);
	assert_int_equal(kmm_httpd_route(h, "/metrics", ok_handler, &calls), 0);
	assert_int_equal(kmm_httpd_start(h, NULL), 0);
	port = kmm_httpd_port(h);

	assert_int_equal(fetch(port, "/metrics", &none), CURLE_OK);
	assert_int_equal(none.status, 401);
	assert_string_equal(kmm_buf_str(&none.body), "Unauthorized\n");
	assert_non_null(strcasestr(kmm_buf_str(&none.headers), "WWW-Authenticate: Bearer"));
	assert_int_equal(fetch(port, "/metrics", &bad), CURLE_OK);
	assert_int_equal(bad.status, 401);
	assert_int_equal(fetch(port, "/metrics", &denied), CURLE_OK);
	assert_int_equal(denied.status, 403);
	assert_string_equal(kmm_buf_str(&denied.body), "Forbidden\n");
	assert_int_equal(fetch(port, "/metrics", &broken), CURLE_OK);
	assert_int_equal(broken.status, 500);
	assert_int_equal(calls, 0); /* no handler ran for a refused request */
	assert_int_equal(fetch(port, "/metrics", &good), CURLE_OK);
	assert_int_equal(good.status, 200);
	assert_string_equal(kmm_buf_str(&good.body), "ok");
	assert_int_equal(calls, 1);
	assert_string_equal(seen.method, "GET");
	assert_string_equal(seen.path, "/metrics");
	/* Unknown paths are authorized first: no probing without a token. */
	assert_int_equal(fetch(port, "/secret", &anon404), CURLE_OK);
	assert_int_equal(anon404.status, 401);
	assert_int_equal(fetch(port, "/secret", &good404), CURLE_OK);
	assert_int_equal(good404.status, 404);
	assert_string_equal(seen.path, "/secret");
	assert_int_equal(seen.calls, 7);

	assert_int_equal(seen.freed, 0);
	kmm_httpd_free(h);
	assert_int_equal(seen.freed, 1); /* the server owned the authorizer */
	req_clear(&none);
	req_clear(&bad);
	req_clear(&denied);
	req_clear(&broken);
	req_clear(&good);
	req_clear(&good404);
	req_clear(&anon404);
}

static void test_authorize_applies_to_plain_http(void **state)
{
	_cleanup_(kmm_httpd_freep) struct kmm_httpd *h = NULL;
	struct kmm_httpd_options o = { .bind_address = "127.0.0.1:0" };
	struct auth_seen seen = { 0 };
	struct req none = { .scheme = "http" },
		   good = { .scheme = "http", .authorization = "Bearer good" };
	int calls = 0;

	(void)state;
	assert_int_equal(kmm_httpd_new(&o, &h, NULL), 0);
	kmm_httpd_set_authorize(h, fake_authorize, &seen, NULL);
	assert_int_equal(kmm_httpd_route(h, "/metrics", ok_handler, &calls), 0);
	assert_int_equal(kmm_httpd_start(h, NULL), 0);
	assert_false(kmm_httpd_tls(h));
	assert_int_equal(fetch(kmm_httpd_port(h), "/metrics", &none), CURLE_OK);
	assert_int_equal(none.status, 401);
	assert_int_equal(fetch(kmm_httpd_port(h), "/metrics", &good), CURLE_OK);
	assert_int_equal(good.status, 200);
	req_clear(&none);
	req_clear(&good);
}

static void write_pair(const char *dir, const char *cert, const char *key)
{
	char path[512];

	/* Key first, certificate last, each replaced atomically as kubelet's
	 * projected volumes do. */
	snprintf(path, sizeof(path), "%s/tls.key", dir);
	assert_int_equal(kmm_write_file_atomic(path, key, strlen(key), 0600, NULL), 0);
	snprintf(path, sizeof(path), "%s/tls.crt", dir);
	assert_int_equal(kmm_write_file_atomic(path, cert, strlen(cert), 0644, NULL), 0);
}

static void test_certificate_files_are_reloaded(void **state)
{
	_cleanup_(kmm_httpd_freep) struct kmm_httpd *h = NULL;
	_cleanup_free_ char *c1 = NULL, *k1 = NULL, *c2 = NULL, *k2 = NULL;
	struct kmm_httpd_options o = { .bind_address = "127.0.0.1:0" };
	char dir[] = "/tmp/kmm-httpd-tls-XXXXXX", cf[512], kf[512];
	struct req first = { 0 }, second = { 0 }, stale = { 0 };
	struct timespec poll = { 0, 20 * 1000000L };
	uint16_t port;
	int calls = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(cf, sizeof(cf), "%s/tls.crt", dir);
	snprintf(kf, sizeof(kf), "%s/tls.key", dir);
	assert_int_equal(kmm_tls_self_signed(local_hosts, &c1, &k1, NULL), 0);
	assert_int_equal(kmm_tls_self_signed(local_hosts, &c2, &k2, NULL), 0);
	write_pair(dir, c1, k1);
	assert_int_equal(kmm_httpd_new(&o, &h, NULL), 0);
	assert_int_equal(kmm_httpd_set_tls_files(h, cf, kf, 50), 0);
	assert_int_equal(kmm_httpd_route(h, "/metrics", ok_handler, &calls), 0);
	assert_int_equal(kmm_httpd_start(h, NULL), 0);
	port = kmm_httpd_port(h);
	assert_int_equal(kmm_httpd_cert_loads(h), 1);
	first.ca = c1;
	assert_int_equal(fetch(port, "/metrics", &first), CURLE_OK);
	assert_int_equal(first.status, 200);

	write_pair(dir, c2, k2);
	/* Waits for the event (the second load), however long it takes. */
	while (kmm_httpd_cert_loads(h) < 2)
		nanosleep(&poll, NULL);
	assert_int_equal(kmm_httpd_port(h), port); /* same address throughout */
	second.ca = c2;
	assert_int_equal(fetch(port, "/metrics", &second), CURLE_OK);
	assert_int_equal(second.status, 200);
	stale.ca = c1;
	assert_int_equal(fetch(port, "/metrics", &stale), CURLE_PEER_FAILED_VERIFICATION);
	req_clear(&first);
	req_clear(&second);
	req_clear(&stale);
	unlink(cf);
	unlink(kf);
	rmdir(dir);
}

/* A client that keeps its connection alive across a rotation (the apiserver
 * calling a webhook) gets every answer: the old daemon answers on the old
 * connection and asks the client to close it; the next request connects to
 * the new certificate. Meanwhile new connections, opened back to back while
 * the certificate rotates several times, are all served. */
static void echo_handler(struct kmm_http_response *resp, const char *path, const char *body,
			 size_t len, void *userdata)
{
	(void)path;
	(void)userdata;
	kmm_buf_append(&resp->body, body, len);
}

static int allow_all(const char *authorization, const char *method, const char *path,
		     void *userdata)
{
	(void)authorization;
	(void)method;
	(void)path;
	(void)userdata;
	return 200;
}

struct hammer {
	uint16_t port;
	const char *ca;
	volatile bool stop;
	int sent, failed;
};

static void *hammer_run(void *arg)
{
	struct hammer *hm = arg;

	while (!hm->stop) {
		struct req r = { .ca = hm->ca };

		if (fetch(hm->port, "/metrics", &r) != CURLE_OK || r.status != 200)
			hm->failed++;
		hm->sent++;
		req_clear(&r);
	}
	return NULL;
}

static bool header_has(const struct kmm_buf *b, const char *needle)
{
	return strcasestr(kmm_buf_str(b), needle) != NULL;
}

static void test_rotation_loses_no_request(void **state)
{
	_cleanup_(kmm_httpd_freep) struct kmm_httpd *h = NULL;
	_cleanup_free_ char *c1 = NULL, *k1 = NULL, *c2 = NULL, *k2 = NULL, *both = NULL;
	struct kmm_httpd_options o = { .bind_address = "127.0.0.1:0" };
	char dir[] = "/tmp/kmm-httpd-tls-XXXXXX", cf[512], kf[512], url[128];
	struct timespec poll = { 0, 20 * 1000000L };
	struct kmm_buf hdrs, body;
	struct curl_blob blob;
	struct hammer hm = { 0 };
	pthread_t th;
	long connects;
	CURL *c;
	int calls = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(cf, sizeof(cf), "%s/tls.crt", dir);
	snprintf(kf, sizeof(kf), "%s/tls.key", dir);
	assert_int_equal(kmm_tls_self_signed(local_hosts, &c1, &k1, NULL), 0);
	assert_int_equal(kmm_tls_self_signed(local_hosts, &c2, &k2, NULL), 0);
	assert_true(asprintf(&both, "%s%s", c1, c2) > 0);
	write_pair(dir, c1, k1);
	assert_int_equal(kmm_httpd_new(&o, &h, NULL), 0);
	assert_int_equal(kmm_httpd_set_tls_files(h, cf, kf, 50), 0);
	assert_int_equal(kmm_httpd_route(h, "/metrics", ok_handler, &calls), 0);
	assert_int_equal(kmm_httpd_route_post(h, "/review", echo_handler, NULL, 1024), 0);
	/* An authorize hook gives the server its pool of threads, as kmm-webhook's has. */
	kmm_httpd_set_authorize(h, allow_all, NULL, NULL);
	assert_int_equal(kmm_httpd_start(h, NULL), 0);

	c = curl_easy_init();
	assert_non_null(c);
	kmm_buf_init(&hdrs, 1 << 16);
	kmm_buf_init(&body, 1 << 20);
	/* POST, as the apiserver calls a webhook: the server keeps the connection
	 * alive (it closes one whose answer came before the request was read). */
	snprintf(url, sizeof(url), "https://127.0.0.1:%u/review", kmm_httpd_port(h));
	blob = (struct curl_blob){ both, strlen(both), CURL_BLOB_COPY };
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{}");
	curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &hdrs);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	assert_false(header_has(&hdrs, "connection: close"));

	write_pair(dir, c2, k2);
	while (kmm_httpd_cert_loads(h) < 2)
		nanosleep(&poll, NULL);
	/* The kept connection: reused, answered by the old daemon, told to close. */
	kmm_buf_reset(&hdrs);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	assert_int_equal(curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects), CURLE_OK);
	assert_int_equal(connects, 0);
	assert_true(header_has(&hdrs, "connection: close"));
	/* The next request opens a connection to the new certificate. */
	kmm_buf_reset(&hdrs);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	assert_int_equal(curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects), CURLE_OK);
	assert_int_equal(connects, 1);
	assert_false(header_has(&hdrs, "connection: close"));

	hm.port = kmm_httpd_port(h);
	hm.ca = both;
	assert_int_equal(pthread_create(&th, NULL, hammer_run, &hm), 0);
	for (unsigned round = 0; round < 6; round++) {
		unsigned want = kmm_httpd_cert_loads(h) + 1;

		/* A new mtime each round, whatever the file system's granularity. */
		nanosleep(&(struct timespec){ 0, 30 * 1000000L }, NULL);
		write_pair(dir, round % 2 ? c2 : c1, round % 2 ? k2 : k1);
		while (kmm_httpd_cert_loads(h) < want)
			nanosleep(&poll, NULL);
	}
	hm.stop = true;
	pthread_join(th, NULL);
	assert_true(hm.sent > 0);
	assert_int_equal(hm.failed, 0);
	assert_int_equal(kmm_httpd_port(h), hm.port);

	curl_easy_cleanup(c);
	kmm_buf_free(&hdrs);
	kmm_buf_free(&body);
	unlink(cf);
	unlink(kf);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_self_signed_names_and_key),
		cmocka_unit_test(test_https_verified_with_the_generated_certificate),
		cmocka_unit_test(test_bad_pair_fails_the_start),
		cmocka_unit_test(test_authorize_hook_401_403_500_200),
		cmocka_unit_test(test_authorize_applies_to_plain_http),
		cmocka_unit_test(test_certificate_files_are_reloaded),
		cmocka_unit_test(test_rotation_loses_no_request),
	};
	int r;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	r = cmocka_run_group_tests_name("server-httpd-tls", tests, NULL, NULL);
	curl_global_cleanup();
	return r;
}
