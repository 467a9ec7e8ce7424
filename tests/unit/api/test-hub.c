/* SPDX-License-Identifier: Apache-2.0 */
/* ManagedClusterModule: parsing, validation and its admission webhook. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/api-hub.h"
#include "kmm/api-webhook.h"
#include "kmm/shared-json.h"

#define MCM(name, spec)                                                                            \
	"{\"apiVersion\":\"hub.kmm.sigs.x-k8s.io/v1beta1\",\"kind\":\"ManagedClusterModule\","     \
	"\"metadata\":{\"name\":\"" name "\"},\"spec\":" spec "}"

#define LOADER(image)                                                                              \
	"\"moduleLoader\":{\"container\":{\"modprobe\":{\"moduleName\":\"a\"},"                    \
	"\"kernelMappings\":[{\"regexp\":\"^.+$\",\"containerImage\":\"" image "\"}]}}"

static struct kmm_mcm *parse(const char *text, unsigned flags, struct kmm_error **err)
{
	_cleanup_json_ json_t *j = json_loads(text, 0, NULL);
	struct kmm_mcm *m = NULL;

	assert_non_null(j);
	if (kmm_mcm_from_json(j, flags, &m, err) < 0)
		return NULL;
	return m;
}

static void test_parse_gives_the_spoke_module(void **state)
{
	_cleanup_error_ struct kmm_error *err = NULL;
	_cleanup_(kmm_mcm_freep) struct kmm_mcm *m =
	    parse(MCM("mcm", "{\"spokeNamespace\":\"kmm\",\"selector\":{\"env\":\"prod\"},"
			     "\"moduleSpec\":{\"selector\":{\"n\":\"\"}," LOADER("i:1") "}}"),
		  KMM_API_STRICT, &err);

	assert_non_null(m);
	assert_string_equal(m->name, "mcm");
	assert_string_equal(m->spoke_namespace, "kmm");
	assert_string_equal(kmm_strmap_get(&m->selector, "env"), "prod");
	assert_string_equal(m->module->name, "mcm");
	assert_string_equal(m->module->namespace, "kmm");
	/* The Module's CRD defaults apply to the moduleSpec too. */
	assert_string_equal(m->module->spec.module_loader->container.modprobe.dir_name, "/opt");
	assert_int_equal(kmm_mcm_validate(m, NULL, false, &err), 0);
}

static void test_parse_errors_name_the_mcm_path(void **state)
{
	struct {
		const char *text, *message;
	} cases[] = {
		{ MCM("m", "{\"moduleSpec\":{\"selector\":{}}}"),
		  "spec.spokeNamespace: Required value" },
		{ MCM("m", "{\"spokeNamespace\":\"\",\"moduleSpec\":{\"selector\":{}}}"),
		  "spec.spokeNamespace: Required value" },
		{ MCM("m", "{\"spokeNamespace\":\"k\"}"), "spec.moduleSpec: Required value" },
		{ MCM("m", "{\"spokeNamespace\":\"k\",\"selector\":{\"a\":1},\"moduleSpec\":{}}"),
		  "spec.selector.a: expected a string" },
		{ MCM("m", "{\"spokeNamespace\":\"k\",\"moduleSpec\":{\"selector\":5}}"),
		  "spec.moduleSpec.selector" },
		{ MCM("m",
		      "{\"spokeNamespace\":\"k\",\"extra\":1,\"moduleSpec\":{\"selector\":{}}}"),
		  "spec.extra: unknown field" },
		{ "{\"apiVersion\":\"kmm.sigs.x-k8s.io/"
		  "v1beta1\",\"kind\":\"ManagedClusterModule\"}",
		  "apiVersion: unsupported" },
		{ "[]", "expected an object" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		_cleanup_error_ struct kmm_error *err = NULL;
		struct kmm_mcm *m = parse(cases[i].text, KMM_API_STRICT, &err);

		assert_null(m);
		if (!strstr(kmm_error_message(err), cases[i].message))
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, kmm_error_message(err),
				 cases[i].message);
	}
}

static void test_validate_moves_module_paths(void **state)
{
	_cleanup_error_ struct kmm_error *err = NULL;
	_cleanup_(kmm_mcm_freep) struct kmm_mcm *m = parse(
	    MCM("m",
		"{\"spokeNamespace\":\"k\",\"selector\":{},\"moduleSpec\":{\"selector\":{}," LOADER(
		    "img") "}}"),
	    0, &err);

	assert_non_null(m);
	assert_int_equal(kmm_mcm_validate(m, NULL, false, &err), -EINVAL);
	assert_non_null(strstr(kmm_error_message(err),
			       "spec.moduleSpec.moduleLoader.container.kernelMappings[0]."
			       "containerImage: Invalid value: \"img\""));
}

/* The spoke Module is <mcm> in spokeNamespace: upstream's 41-character rule holds for it. */
static void test_validate_name_and_spoke_namespace(void **state)
{
	_cleanup_error_ struct kmm_error *err = NULL;
	_cleanup_(kmm_mcm_freep) struct kmm_mcm *m =
	    parse(MCM("a-very-long-managed-cluster-module-name",
		      "{\"spokeNamespace\":\"kmm-operator-system\",\"selector\":{},"
		      "\"moduleSpec\":{\"selector\":{}," LOADER("i:1") "}}"),
		  0, &err);

	assert_non_null(m);
	assert_int_equal(kmm_mcm_validate(m, NULL, false, &err), -EINVAL);
	assert_non_null(strstr(kmm_error_message(err), "must not exceed 41 characters"));
}

static json_t *review(const struct kmm_webhook_options *o, const char *op, const char *obj,
		      const char *old)
{
	_cleanup_free_ char *body = NULL, *out = NULL;
	json_t *j;
	int status = 0;

	assert_true(asprintf(&body,
			     "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
			     "\"request\":{\"uid\":\"u\",\"operation\":\"%s\",\"object\":%s%s%s}}",
			     op, obj, old ? ",\"oldObject\":" : "", old ? old : "") > 0);
	assert_int_equal(
	    kmm_webhook_handle(o, KMM_WEBHOOK_PATH_MCM, body, strlen(body), &status, &out), 0);
	if (status == 404)
		return NULL;
	assert_int_equal(status, 200);
	j = json_loads(out, 0, NULL);
	assert_non_null(j);
	return j;
}

static bool allowed(const json_t *r)
{
	return json_is_true(json_object_get(json_object_get(r, "response"), "allowed"));
}

#define DRA_MCM(version)                                                                           \
	MCM("d", "{\"spokeNamespace\":\"k\",\"selector\":{},\"moduleSpec\":{\"selector\":{},"      \
		 "\"dra\":{\"driverName\":\"gpu.example.com\",\"container\":{\"image\":\"i:1\"}}"  \
		 "," LOADER("i:1") version "}}")

static void test_webhook(void **state)
{
	struct kmm_webhook_options off = { .k8s_minor = 30 };
	struct kmm_webhook_options on = { .k8s_minor = 30, .enable_managedclustermodule = true };
	_cleanup_json_ json_t *ok = review(&on, "CREATE", DRA_MCM(""), NULL);
	_cleanup_json_ json_t *bad = review(
	    &on, "CREATE",
	    MCM("m",
		"{\"spokeNamespace\":\"k\",\"selector\":{},\"moduleSpec\":{\"selector\":{}," LOADER(
		    "img") "}}"),
	    NULL);
	_cleanup_json_ json_t *deleted = review(&on, "DELETE", "{}", NULL);

	assert_null(review(&off, "CREATE", DRA_MCM(""), NULL));
	/* A DRA Module on a 1.30 apiserver: refused for a Module, allowed on the hub. */
	assert_true(allowed(ok));
	assert_false(allowed(bad));
	assert_true(allowed(deleted));
}

#define VERSIONED(v)                                                                               \
	MCM("m", "{\"spokeNamespace\":\"k\",\"selector\":{},\"moduleSpec\":{\"selector\":{},"      \
		 "\"moduleLoader\":{\"container\":{" v "\"modprobe\":{\"moduleName\":\"a\"},"      \
		 "\"kernelMappings\":[{\"literal\":\"x\",\"containerImage\":\"i:1\"}]}}}}")

static void test_webhook_update_version_switch(void **state)
{
	struct kmm_webhook_options on = { .k8s_minor = -1, .enable_managedclustermodule = true };
	_cleanup_json_ json_t *r =
	    review(&on, "UPDATE", VERSIONED("\"version\":\"v1\","), VERSIONED(""));
	_cleanup_json_ json_t *same = review(&on, "UPDATE", VERSIONED("\"version\":\"v2\","),
					     VERSIONED("\"version\":\"v1\","));

	assert_false(allowed(r));
	assert_non_null(
	    strstr(json_string_value(json_object_get(
		       json_object_get(json_object_get(r, "response"), "status"), "message")),
		   "spec.moduleSpec.moduleLoader.container.version: Forbidden"));
	assert_true(allowed(same));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_gives_the_spoke_module),
		cmocka_unit_test(test_parse_errors_name_the_mcm_path),
		cmocka_unit_test(test_validate_moves_module_paths),
		cmocka_unit_test(test_validate_name_and_spoke_namespace),
		cmocka_unit_test(test_webhook),
		cmocka_unit_test(test_webhook_update_version_switch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
