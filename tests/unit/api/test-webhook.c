/* SPDX-License-Identifier: Apache-2.0 */
/* AdmissionReview / ConversionReview handling without a server. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/shared-json.h"
#include "kmm/api-webhook.h"

static const struct kmm_webhook_options all = { true, true, true, 33, false };

static json_t *call(const char *path, const char *body, int want_status)
{
	char *out = NULL;
	int status = 0;
	json_t *j;

	assert_int_equal(kmm_webhook_handle(&all, path, body, strlen(body), &status, &out), 0);
	assert_int_equal(status, want_status);
	if (!out)
		return NULL;
	j = json_loads(out, 0, NULL);
	free(out);
	assert_non_null(j);
	return j;
}

#define MODULE_OBJ(image)                                                                          \
	"{\"apiVersion\":\"kmm.sigs.x-k8s.io/"                                                     \
	"v1beta1\",\"kind\":\"Module\",\"metadata\":{\"name\":"                                    \
	"\"m\"},\"spec\":{\"selector\":{},\"moduleLoader\":{\"container\":{\"modprobe\":{"         \
	"\"moduleName\":\"a\"},\"kernelMappings\":[{\"regexp\":\"^.+$\",\"containerImage\":"       \
	"\"" image "\"}]}}}}"

static void test_module_denied_with_message(void **state)
{
	_cleanup_json_ json_t *r = call(
	    KMM_WEBHOOK_PATH_MODULE,
	    "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{"
	    "\"uid\":\"u1\",\"operation\":\"CREATE\",\"namespace\":\"ns\",\"object\":" MODULE_OBJ(
		"img") "}}",
	    200);
	json_t *resp = json_object_get(r, "response");

	assert_string_equal(json_string_value(json_object_get(resp, "uid")), "u1");
	assert_true(json_is_false(json_object_get(resp, "allowed")));
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(resp, "status"), "code")), 403);
	assert_non_null(
	    strstr(json_string_value(json_object_get(json_object_get(resp, "status"), "message")),
		   "kernelMappings[0].containerImage: Invalid value: \"img\": must "
		   "explicitly set a tag or digest"));
	assert_string_equal(json_string_value(json_object_get(r, "kind")), "AdmissionReview");
}

static void test_module_allowed(void **state)
{
	_cleanup_json_ json_t *r = call(
	    KMM_WEBHOOK_PATH_MODULE,
	    "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{"
	    "\"uid\":\"u2\",\"operation\":\"CREATE\",\"namespace\":\"ns\",\"object\":" MODULE_OBJ(
		"img:1") "}}",
	    200);

	assert_true(json_is_true(json_object_get(json_object_get(r, "response"), "allowed")));
}

#define ARGS_MODULE(args)                                                                          \
	"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{"       \
	"\"uid\":\"u3\",\"operation\":\"CREATE\",\"namespace\":\"ns\",\"object\":{"                \
	"\"apiVersion\":\"kmm.sigs.x-k8s.io/v1beta1\",\"kind\":\"Module\",\"metadata\":{"          \
	"\"name\":\"m\"},\"spec\":{\"selector\":{},\"moduleLoader\":{\"container\":{"              \
	"\"modprobe\":{\"moduleName\":\"a\",\"args\":" args "},\"kernelMappings\":[{"              \
	"\"literal\":\"x\",\"containerImage\":\"i:1\"}]}}}}}}"

/* Either modprobe.args list alone is allowed, as upstream's CRD and webhook allow it. */
static void test_module_args_one_list(void **state)
{
	_cleanup_json_ json_t *load =
	    call(KMM_WEBHOOK_PATH_MODULE, ARGS_MODULE("{\"load\":[\"--first-time\"]}"), 200);
	_cleanup_json_ json_t *unload =
	    call(KMM_WEBHOOK_PATH_MODULE, ARGS_MODULE("{\"unload\":[\"--remove-holders\"]}"), 200);
	_cleanup_json_ json_t *empty =
	    call(KMM_WEBHOOK_PATH_MODULE, ARGS_MODULE("{\"load\":[]}"), 200);
	const json_t *resp = json_object_get(empty, "response");

	assert_true(json_is_true(json_object_get(json_object_get(load, "response"), "allowed")));
	assert_true(json_is_true(json_object_get(json_object_get(unload, "response"), "allowed")));
	/* A list that is given still needs an item (the CRD's minItems). */
	assert_true(json_is_false(json_object_get(resp, "allowed")));
	assert_non_null(
	    strstr(json_string_value(json_object_get(json_object_get(resp, "status"), "message")),
		   "modprobe.args.load: must have at least 1 item"));
}

static void test_module_update_version_switch(void **state)
{
	const char *with_version =
	    "{\"apiVersion\":\"kmm.sigs.x-k8s.io/v1beta1\",\"kind\":\"Module\",\"metadata\":{"
	    "\"name\":\"m\",\"namespace\":\"ns\"},\"spec\":{\"selector\":{},\"moduleLoader\":{"
	    "\"container\":{\"version\":\"v1\",\"modprobe\":{\"moduleName\":\"a\"},"
	    "\"kernelMappings\":[{\"literal\":\"x\",\"containerImage\":\"i:1\"}]}}}}";
	char *body = NULL;
	_cleanup_json_ json_t *r = NULL;

	assert_true(asprintf(&body,
			     "{\"request\":{\"uid\":\"u3\",\"operation\":\"UPDATE\",\"object\":%s,"
			     "\"oldObject\":%s}}",
			     with_version, MODULE_OBJ("img:1")) > 0);
	r = call(KMM_WEBHOOK_PATH_MODULE, body, 200);
	free(body);
	assert_true(json_is_false(json_object_get(json_object_get(r, "response"), "allowed")));
}

static void test_delete_is_allowed(void **state)
{
	_cleanup_json_ json_t *r = call(
	    KMM_WEBHOOK_PATH_MODULE, "{\"request\":{\"uid\":\"u\",\"operation\":\"DELETE\"}}", 200);

	assert_true(json_is_true(json_object_get(json_object_get(r, "response"), "allowed")));
}

static void test_namespace_guard(void **state)
{
	_cleanup_json_ json_t *deny = call(
	    KMM_WEBHOOK_PATH_NAMESPACE,
	    "{\"request\":{\"uid\":\"n1\",\"operation\":\"DELETE\",\"oldObject\":{\"metadata\":{"
	    "\"name\":\"x\",\"labels\":{\"kmm.node.k8s.io/contains-modules\":\"\"}}}}}",
	    200);
	_cleanup_json_ json_t *allow = call(
	    KMM_WEBHOOK_PATH_NAMESPACE,
	    "{\"request\":{\"uid\":\"n2\",\"operation\":\"DELETE\",\"oldObject\":{\"metadata\":{"
	    "\"name\":\"x\",\"labels\":{\"other\":\"\"}}}}}",
	    200);
	json_t *resp = json_object_get(deny, "response");

	assert_true(json_is_false(json_object_get(resp, "allowed")));
	assert_non_null(
	    strstr(json_string_value(json_object_get(json_object_get(resp, "status"), "message")),
		   "namespace contains one or more Module resources"));
	assert_true(json_is_true(json_object_get(json_object_get(allow, "response"), "allowed")));
}

static void test_pfv_validation(void **state)
{
	_cleanup_json_ json_t *r = call(
	    KMM_WEBHOOK_PATH_PFV,
	    "{\"request\":{\"uid\":\"p\",\"operation\":\"CREATE\",\"object\":{\"apiVersion\":"
	    "\"kmm.sigs.x-k8s.io/v1beta2\",\"kind\":\"PreflightValidation\",\"metadata\":{\"name\":"
	    "\"p\"},\"spec\":{\"kernelVersion\":\"6.1\"}}}}",
	    200);
	json_t *resp = json_object_get(r, "response");

	assert_true(json_is_false(json_object_get(resp, "allowed")));
	assert_non_null(
	    strstr(json_string_value(json_object_get(json_object_get(resp, "status"), "message")),
		   "spec.kernelVersion"));
}

static void test_conversion_both_ways(void **state)
{
	_cleanup_json_ json_t *down = call(
	    KMM_WEBHOOK_PATH_CONVERT,
	    "{\"apiVersion\":\"apiextensions.k8s.io/v1\",\"kind\":\"ConversionReview\",\"request\":"
	    "{\"uid\":\"c1\",\"desiredAPIVersion\":\"kmm.sigs.x-k8s.io/v1beta1\",\"objects\":[{"
	    "\"apiVersion\":\"kmm.sigs.x-k8s.io/v1beta2\",\"kind\":\"PreflightValidation\","
	    "\"metadata\":{\"name\":\"p\",\"uid\":\"x\",\"resourceVersion\":\"7\"},\"spec\":{"
	    "\"kernelVersion\":\"6.1.0-1\"},\"status\":{\"modules\":[{\"name\":\"m\",\"namespace\":"
	    "\"ns\",\"verificationStatus\":\"Success\",\"verificationStage\":\"Done\","
	    "\"lastTransitionTime\":\"2026-01-01T00:00:00Z\"}]}}]}}",
	    200);
	json_t *resp = json_object_get(down, "response"), *o;
	_cleanup_json_ json_t *up = NULL;
	char *body;

	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(resp, "result"), "status")),
	    "Success");
	o = json_array_get(json_object_get(resp, "convertedObjects"), 0);
	assert_string_equal(json_string_value(json_object_get(o, "apiVersion")),
			    "kmm.sigs.x-k8s.io/v1beta1");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(o, "metadata"), "resourceVersion")),
	    "7");
	assert_non_null(
	    json_object_get(json_object_get(json_object_get(o, "status"), "crStatuses"), "ns/m"));
	assert_non_null(
	    json_object_get(json_object_get(json_object_get(o, "status"), "crStatuses"), "m"));
	/* And back: the plain "m" key folds into "ns/m". */
	{
		json_t *req =
		    json_pack("{s:{s:s,s:s,s:[O]}}", "request", "uid", "c2", "desiredAPIVersion",
			      "kmm.sigs.x-k8s.io/v1beta2", "objects", o);

		body = json_dumps(req, 0);
		json_decref(req);
	}
	up = call(KMM_WEBHOOK_PATH_CONVERT, body, 200);
	free(body);
	o = json_array_get(json_object_get(json_object_get(up, "response"), "convertedObjects"), 0);
	assert_int_equal(json_array_size(json_object_get(json_object_get(o, "status"), "modules")),
			 1);
	assert_string_equal(
	    json_string_value(json_object_get(
		json_array_get(json_object_get(json_object_get(o, "status"), "modules"), 0),
		"namespace")),
	    "ns");
}

static void test_malformed_and_disabled(void **state)
{
	struct kmm_webhook_options none = { 0 };
	char *out = NULL;
	int status = 0;

	json_decref(call(KMM_WEBHOOK_PATH_MODULE, "not json", 400));
	json_decref(call(KMM_WEBHOOK_PATH_MODULE, "{\"request\":{}}", 400));
	assert_int_equal(kmm_webhook_handle(&none, KMM_WEBHOOK_PATH_MODULE, "{}", 2, &status, &out),
			 0);
	assert_int_equal(status, 404);
	assert_null(out);
	assert_int_equal(kmm_webhook_handle(&all, "/other", "{}", 2, &status, &out), 0);
	assert_int_equal(status, 404);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_module_denied_with_message),
		cmocka_unit_test(test_module_allowed),
		cmocka_unit_test(test_module_args_one_list),
		cmocka_unit_test(test_module_update_version_switch),
		cmocka_unit_test(test_delete_is_allowed),
		cmocka_unit_test(test_namespace_guard),
		cmocka_unit_test(test_pfv_validation),
		cmocka_unit_test(test_conversion_both_ways),
		cmocka_unit_test(test_malformed_and_disabled),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
