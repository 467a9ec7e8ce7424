/* SPDX-License-Identifier: Apache-2.0 */
#include <curl/curl.h>
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

#include "kmm/server-httpd.h"

static void test_bind_address_forms(void **state)
{
	char host[64];
	uint16_t port;
	bool disabled;
	_cleanup_error_ struct kmm_error *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL;

	assert_int_equal(
	    kmm_parse_bind_address(":8081", host, sizeof(host), &port, &disabled, NULL), 0);
	assert_string_equal(host, "");
	assert_int_equal(port, 8081);
	assert_false(disabled);
	assert_int_equal(
	    kmm_parse_bind_address("0.0.0.0:8443", host, sizeof(host), &port, &disabled, NULL), 0);
	assert_string_equal(host, "0.0.0.0");
	assert_int_equal(
	    kmm_parse_bind_address("[::1]:9", host, sizeof(host), &port, &disabled, NULL), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(
	    kmm_parse_bind_address("localhost:1", host, sizeof(host), &port, &disabled, NULL), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(kmm_parse_bind_address("0", host, sizeof(host), &port, &disabled, NULL),
			 0);
	assert_true(disabled);
	assert_int_equal(kmm_parse_bind_address("8081", host, sizeof(host), &port, &disabled, &e1),
			 -EINVAL);
	assert_string_equal(e1->message, "bind address '8081' has no ':PORT'");
	assert_int_equal(
	    kmm_parse_bind_address(":99999", host, sizeof(host), &port, &disabled, &e2), -EINVAL);
	assert_int_equal(
	    kmm_parse_bind_address("example.com:80", host, sizeof(host), &port, &disabled, &e3),
	    -EINVAL);
	assert_int_equal(kmm_parse_bind_address(":", host, sizeof(host), &port, &disabled, &e4),
			 -EINVAL);
}

static void ok_handler(struct kmm_http_response *resp, void *userdata)
{
	int *calls = userdata;

	(*calls)++;
	kmm_buf_append_str(&resp->body, "ok");
}

static void failing_handler(struct kmm_http_response *resp, void *userdata)
{
	(void)userdata;
	resp->status = 500;
	resp->content_type = "application/json";
	kmm_buf_append_str(&resp->body, "{\"ready\":false}");
}

static size_t collect(char *p, size_t size, size_t n, void *userdata)
{
	kmm_buf_append(userdata, p, size * n);
	return size * n;
}

static long get(uint16_t port, const char *path, const char *method, struct kmm_buf *body)
{
	CURL *c = curl_easy_init();
	char url[128];
	long status = 0;

	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	if (method)
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	return status;
}

static void test_routes_404_and_405(void **state)
{
	_cleanup_(kmm_httpd_freep) struct kmm_httpd *h = NULL;
	struct kmm_httpd_options opts = { .bind_address = "127.0.0.1:0" };
	_cleanup_buf_ struct kmm_buf b1, b2, b3, b4;
	int calls = 0;

	kmm_buf_init(&b1, 0);
	kmm_buf_init(&b2, 0);
	kmm_buf_init(&b3, 0);
	kmm_buf_init(&b4, 0);
	assert_int_equal(kmm_httpd_new(&opts, &h, NULL), 0);
	assert_int_equal(kmm_httpd_route(h, "/healthz", ok_handler, &calls), 0);
	assert_int_equal(kmm_httpd_route(h, "/readyz", failing_handler, NULL), 0);
	assert_int_equal(kmm_httpd_start(h, NULL), 0);
	assert_true(kmm_httpd_port(h) > 0);

	assert_int_equal(get(kmm_httpd_port(h), "/healthz", NULL, &b1), 200);
	assert_string_equal(kmm_buf_str(&b1), "ok");
	assert_int_equal(calls, 1);
	assert_int_equal(get(kmm_httpd_port(h), "/readyz", NULL, &b2), 500);
	assert_string_equal(kmm_buf_str(&b2), "{\"ready\":false}");
	assert_int_equal(get(kmm_httpd_port(h), "/nope", NULL, &b3), 404);
	assert_int_equal(get(kmm_httpd_port(h), "/healthz", "DELETE", &b4), 405);
	assert_int_equal(calls, 1);
}

static void echo_handler(struct kmm_http_response *resp, const char *path, const char *body,
			 size_t len, void *userdata)
{
	int *calls = userdata;

	(*calls)++;
	assert_int_equal(strlen(body), len); /* NUL-terminated, no embedded NUL here */
	resp->content_type = "application/json";
	kmm_buf_printf(&resp->body, "{\"path\":\"%s\",\"len\":%zu,\"body\":\"%s\"}", path, len,
		       body);
}

static long post(uint16_t port, const char *path, const char *data, size_t len,
		 struct kmm_buf *body)
{
	CURL *c = curl_easy_init();
	char url[128];
	long status = 0;

	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	return status;
}

static void test_post_routes_get_the_body(void **state)
{
	_cleanup_(kmm_httpd_freep) struct kmm_httpd *h = NULL;
	struct kmm_httpd_options opts = { .bind_address = "127.0.0.1:0" };
	_cleanup_buf_ struct kmm_buf b1, b2, b3, b4, b5;
	_cleanup_free_ char *big = malloc(5000);
	int calls = 0, gets = 0;

	assert_non_null(big);
	memset(big, 'x', 5000);
	kmm_buf_init(&b1, 0);
	kmm_buf_init(&b2, 0);
	kmm_buf_init(&b3, 0);
	kmm_buf_init(&b4, 0);
	kmm_buf_init(&b5, 0);
	assert_int_equal(kmm_httpd_new(&opts, &h, NULL), 0);
	assert_int_equal(kmm_httpd_route_post(h, "/review", echo_handler, &calls, 4096), 0);
	assert_int_equal(kmm_httpd_route(h, "/healthz", ok_handler, &gets), 0);
	assert_int_equal(kmm_httpd_start(h, NULL), 0);

	assert_int_equal(post(kmm_httpd_port(h), "/review", "hello", 5, &b1), 200);
	assert_string_equal(kmm_buf_str(&b1),
			    "{\"path\":\"/review\",\"len\":5,\"body\":\"hello\"}");
	/* Empty body: the handler still runs, with "" and 0. */
	assert_int_equal(post(kmm_httpd_port(h), "/review", "", 0, &b2), 200);
	assert_string_equal(kmm_buf_str(&b2), "{\"path\":\"/review\",\"len\":0,\"body\":\"\"}");
	assert_int_equal(calls, 2);
	/* Over the cap: 413, the handler never sees it. */
	assert_int_equal(post(kmm_httpd_port(h), "/review", big, 5000, &b3), 413);
	assert_int_equal(calls, 2);
	/* Wrong method either way round: 405. */
	assert_int_equal(get(kmm_httpd_port(h), "/review", NULL, &b4), 405);
	assert_int_equal(post(kmm_httpd_port(h), "/healthz", "x", 1, &b5), 405);
	assert_int_equal(calls, 2);
	assert_int_equal(gets, 0);
}

static void test_port_in_use_names_the_address(void **state)
{
	_cleanup_(kmm_httpd_freep) struct kmm_httpd *a = NULL, *b = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;
	struct kmm_httpd_options opts = { .bind_address = "127.0.0.1:0" };
	char addr[32];

	assert_int_equal(kmm_httpd_new(&opts, &a, NULL), 0);
	assert_int_equal(kmm_httpd_start(a, NULL), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", kmm_httpd_port(a));
	opts.bind_address = addr;
	assert_int_equal(kmm_httpd_new(&opts, &b, NULL), 0);
	assert_true(kmm_httpd_start(b, &err) < 0);
	assert_non_null(strstr(err->message, addr));
}

static void test_disabled_server_does_not_listen(void **state)
{
	_cleanup_(kmm_httpd_freep) struct kmm_httpd *h = NULL;
	struct kmm_httpd_options opts = { .bind_address = "0" };

	assert_int_equal(kmm_httpd_new(&opts, &h, NULL), 0);
	assert_int_equal(kmm_httpd_start(h, NULL), 0);
	assert_int_equal(kmm_httpd_port(h), 0);
	kmm_httpd_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bind_address_forms),
		cmocka_unit_test(test_routes_404_and_405),
		cmocka_unit_test(test_post_routes_get_the_body),
		cmocka_unit_test(test_port_in_use_names_the_address),
		cmocka_unit_test(test_disabled_server_does_not_listen),
	};
	int r;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	r = cmocka_run_group_tests_name("server-httpd", tests, NULL, NULL);
	curl_global_cleanup();
	return r;
}
