/* SPDX-License-Identifier: Apache-2.0 */
/* Manifest/index parsing, platform selection, docker config and WWW-Authenticate. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/registry/registry-internal.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static struct kmm_oci_manifest *parse_ok(const char *json, const char *ct)
{
	struct kmm_oci_manifest *m = NULL;
	struct kmm_error *err = NULL;

	if (kmm_oci_manifest_parse(json, strlen(json), ct, &m, &err) < 0)
		fail_msg("parse: %s", kmm_error_message(err));
	return m;
}

static void parse_bad(const char *json, const char *ct, const char *fragment)
{
	struct kmm_oci_manifest *m = NULL;
	struct kmm_error *err = NULL;

	assert_true(kmm_oci_manifest_parse(json, strlen(json), ct, &m, &err) < 0);
	assert_null(m);
	if (!strstr(err->message, fragment))
		fail_msg("message '%s' lacks '%s'", err->message, fragment);
	kmm_error_free(err);
}

static void test_oci_manifest(void **state)
{
	struct kmm_oci_manifest *m = parse_ok(
	    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	    "\"config\":{\"mediaType\":\"application/"
	    "vnd.oci.image.config.v1+json\",\"digest\":\"" D1 "\",\"size\":10},"
	    "\"layers\":[{\"mediaType\":\"application/"
	    "vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" D2 "\",\"size\":20},"
	    "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\",\"digest\":\"" D3
	    "\",\"size\":30}]}",
	    NULL);

	assert_false(m->is_index);
	assert_string_equal(m->config.digest, D1);
	assert_int_equal(m->n_items, 2);
	assert_string_equal(m->items[1].digest, D3);
	assert_int_equal(m->items[1].size, 30);
	assert_true(kmm_oci_layer_media_type_ok(m->items[0].media_type));
	assert_true(kmm_oci_layer_media_type_ok(m->items[1].media_type));
	kmm_oci_manifest_free(m);
}

static void test_docker_v2_by_content_type(void **state)
{
	struct kmm_oci_manifest *m =
	    parse_ok("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1
		     "\",\"size\":1},"
		     "\"layers\":[{\"mediaType\":\"application/"
		     "vnd.docker.image.rootfs.diff.tar.gzip\",\"digest\":\"" D2 "\",\"size\":2}]}",
		     "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8");

	assert_string_equal(m->media_type, KMM_MT_DOCKER_MANIFEST);
	assert_true(kmm_oci_layer_media_type_ok(m->items[0].media_type));
	kmm_oci_manifest_free(m);
}

static const char index_json[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/"
    "vnd.docker.distribution.manifest.list.v2+json\","
    "\"manifests\":["
    "{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"digest\":\"" D1
    "\",\"size\":1,"
    "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v7\"}},"
    "{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"digest\":\"" D2
    "\",\"size\":2,"
    "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
    "{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"digest\":\"" D3
    "\",\"size\":3,"
    "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}";

static void test_index_select(void **state)
{
	struct kmm_oci_manifest *m = parse_ok(index_json, NULL);
	const struct kmm_oci_descriptor *d = NULL;
	struct kmm_error *err = NULL;

	assert_true(m->is_index);
	assert_int_equal(kmm_oci_index_select(m, "linux", "amd64", NULL, &d, NULL), 0);
	assert_string_equal(d->digest, D3);
	assert_int_equal(kmm_oci_index_select(m, "linux", "arm64", NULL, &d, NULL), 0);
	assert_string_equal(d->digest, D2);
	assert_int_equal(kmm_oci_index_select(m, "linux", "arm", "v7", &d, NULL), 0);
	assert_string_equal(d->digest, D1);
	assert_int_equal(kmm_oci_index_select(m, "linux", "s390x", NULL, &d, &err), -ENOENT);
	assert_string_equal(err->message, "image index has no manifest for linux/s390x "
					  "(has: linux/arm/v7, linux/arm64/v8, linux/amd64)");
	kmm_error_free(err);
	kmm_oci_manifest_free(m);
}

static void test_manifest_errors(void **state)
{
	parse_bad("nope", NULL, "not valid JSON");
	parse_bad("[]", NULL, "not a JSON object");
	parse_bad("{\"schemaVersion\":1}", NULL, "schemaVersion is not 2");
	parse_bad("{\"schemaVersion\":2}", NULL, "neither an index nor");
	parse_bad("{\"schemaVersion\":2,\"mediaType\":\"text/plain\",\"layers\":[]}", NULL,
		  "unsupported manifest media type 'text/plain'");
	parse_bad("{\"schemaVersion\":2,\"layers\":{}}", NULL, "'layers' is not an array");
	parse_bad(
	    "{\"schemaVersion\":2,\"layers\":[],\"config\":{\"digest\":\"sha256:12\",\"size\":1}}",
	    NULL, "unsupported digest");
	parse_bad("{\"schemaVersion\":2,\"layers\":[{\"digest\":\"" D1 "\",\"size\":-1}],"
		  "\"config\":{\"digest\":\"" D1 "\",\"size\":1}}",
		  NULL, "size must be a non-negative integer");
	parse_bad("{\"schemaVersion\":2,\"manifests\":[{\"digest\":\"" D1 "\",\"size\":1}]}", NULL,
		  "no mediaType");
	parse_bad("{\"schemaVersion\":2,\"schemaVersion\":2,\"layers\":[]}", NULL,
		  "not valid JSON");
}

static void lookup(const char *json, const char *registry, int want, const char *user,
		   const char *password)
{
	char *u = NULL, *p = NULL;
	struct kmm_error *err = NULL;
	int r = kmm_docker_config_lookup(json, strlen(json), registry, &u, &p, &err);

	if (r != want)
		fail_msg("%s in %s: got %d (%s)", registry, json, r, kmm_error_message(err));
	if (want == 1) {
		assert_string_equal(u, user);
		assert_string_equal(p, password);
	}
	free(u);
	free(p);
	kmm_error_free(err);
}

static void test_docker_config(void **state)
{
	/* "kmm:s3cr:et" */
	const char *cfg =
	    "{\"auths\":{\"127.0.0.1:5443\":{\"auth\":\"a21tOnMzY3I6ZXQ=\"},"
	    "\"https://index.docker.io/v1/\":{\"username\":\"hub\",\"password\":\"pw\"},"
	    "\"http://reg.example.com:5000/v2/\":{\"auth\":\"dTpw\"}}}";

	lookup(cfg, "127.0.0.1:5443", 1, "kmm", "s3cr:et");
	lookup(cfg, "docker.io", 1, "hub", "pw");
	lookup(cfg, "reg.example.com:5000", 1, "u", "p");
	lookup(cfg, "reg.example.com", 0, NULL, NULL);
	lookup(cfg, "127.0.0.1:5000", 0, NULL, NULL);
	lookup("{\"auths\":{\"h\":{\"auth\":\"!!!!\"}}}", "h", -EINVAL, NULL, NULL);
	lookup("{\"auths\":{\"h\":{\"auth\":\"bm9jb2xvbg==\"}}}", "h", -EINVAL, NULL, NULL);
	lookup("{\"auths\":{\"h\":{}}}", "h", -EINVAL, NULL, NULL);
	lookup("{}", "h", -EINVAL, NULL, NULL);
	lookup("not json", "h", -EINVAL, NULL, NULL);
}

static void test_challenge(void **state)
{
	struct kmm_auth_challenge c;
	struct kmm_error *err = NULL;

	assert_int_equal(
	    kmm_auth_challenge_parse(
		"Bearer realm=\"https://auth.example.com/token\",service=\"registry.example.com\","
		"scope=\"repository:kmm/a:pull\"",
		&c, NULL),
	    0);
	assert_string_equal(c.scheme, "bearer");
	assert_string_equal(c.realm, "https://auth.example.com/token");
	assert_string_equal(c.service, "registry.example.com");
	assert_string_equal(c.scope, "repository:kmm/a:pull");
	kmm_auth_challenge_done(&c);

	assert_int_equal(kmm_auth_challenge_parse("Basic realm=\"kmm-testenv\"", &c, NULL), 0);
	assert_string_equal(c.scheme, "basic");
	assert_string_equal(c.realm, "kmm-testenv");
	assert_null(c.scope);
	kmm_auth_challenge_done(&c);

	assert_int_equal(kmm_auth_challenge_parse("bearer realm=http://x/t, service=svc", &c, NULL),
			 0);
	assert_string_equal(c.realm, "http://x/t");
	assert_string_equal(c.service, "svc");
	kmm_auth_challenge_done(&c);

	assert_int_equal(kmm_auth_challenge_parse("Bearer service=\"x\"", &c, &err), -EINVAL);
	kmm_error_free(err);
	err = NULL;
	assert_int_equal(kmm_auth_challenge_parse("Bearer realm=\"unterminated", &c, &err),
			 -EINVAL);
	kmm_error_free(err);
	err = NULL;
	assert_int_equal(kmm_auth_challenge_parse("", &c, &err), -EINVAL);
	kmm_error_free(err);
}

static void test_base64_and_digest(void **state)
{
	char *s = kmm_base64_encode("kmm:pw", 6), *d = NULL;
	size_t n;

	assert_string_equal(s, "a21tOnB3");
	assert_int_equal(kmm_base64_decode(s, &d, &n), 0);
	assert_int_equal(n, 6);
	assert_memory_equal(d, "kmm:pw", 6);
	free(s);
	free(d);
	assert_int_equal(kmm_base64_decode("a21=tOnB", &d, &n), -EINVAL);
	s = kmm_digest_of("", 0);
	assert_string_equal(
	    s, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	assert_true(kmm_digest_valid(s));
	s[10] = 'A';
	assert_false(kmm_digest_valid(s));
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oci_manifest),
		cmocka_unit_test(test_docker_v2_by_content_type),
		cmocka_unit_test(test_index_select),
		cmocka_unit_test(test_manifest_errors),
		cmocka_unit_test(test_docker_config),
		cmocka_unit_test(test_challenge),
		cmocka_unit_test(test_base64_and_digest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
