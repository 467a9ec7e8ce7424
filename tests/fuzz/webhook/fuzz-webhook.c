/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The webhooks' request bodies: the first byte picks the path (and the DRA
 * gate's apiserver minor), the rest is the AdmissionReview or
 * ConversionReview as the apiserver would POST it. Every answer is 200 or 400
 * with a JSON object body; a 200 admission answer echoes request.uid.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kmm/api-webhook.h"
#include "tests/fuzz/fuzz.h"

static const char *const paths[] = {
	KMM_WEBHOOK_PATH_MODULE,
	KMM_WEBHOOK_PATH_PFV,
	KMM_WEBHOOK_PATH_NAMESPACE,
	KMM_WEBHOOK_PATH_CONVERT,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kmm_webhook_options o = {
		.enable_module = true,
		.enable_namespace = true,
		.enable_preflightvalidation = true,
	};
	const char *path;
	char *body = NULL;
	json_t *reply, *req, *resp;
	const char *uid, *echoed;
	int status = 0;

	if (size < 1 || size > 1024 * 1024)
		return 0;
	path = paths[data[0] % 4];
	o.k8s_minor = (data[0] / 4) % 2 ? 28 : -1;
	if (kmm_webhook_handle(&o, path, (const char *)data + 1, size - 1, &status, &body) < 0)
		abort(); /* only ENOMEM may fail */
	if ((status != 200 && status != 400) || !body)
		abort();
	reply = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(reply))
		abort(); /* the apiserver must be able to read every answer */
	if (status == 200 && strcmp(path, KMM_WEBHOOK_PATH_CONVERT) != 0) {
		req = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, NULL);
		uid = json_string_value(json_object_get(json_object_get(req, "request"), "uid"));
		resp = json_object_get(reply, "response");
		echoed = json_string_value(json_object_get(resp, "uid"));
		if (!uid || !echoed || strcmp(uid, echoed) != 0 ||
		    !json_is_boolean(json_object_get(resp, "allowed")))
			abort();
		json_decref(req);
	}
	json_decref(reply);
	free(body);
	return 0;
}
