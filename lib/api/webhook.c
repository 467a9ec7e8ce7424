/* SPDX-License-Identifier: Apache-2.0 */
/* AdmissionReview and ConversionReview handling (no I/O). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api.h"
#include "kmm/api-hub.h"
#include "kmm/shared-json.h"
#include "kmm/api-webhook.h"

#define NS_DELETE_MESSAGE                                                                          \
	"namespace contains one or more Module resources; delete those before deleting the "       \
	"namespace"

static int finish(json_t *review, int status, int *ret_status, char **ret_body)
{
	char *s;

	if (!review)
		return -ENOMEM;
	s = json_dumps(review, JSON_COMPACT);
	json_decref(review);
	if (!s)
		return -ENOMEM;
	*ret_status = status;
	*ret_body = s;
	return 0;
}

static int bad_request(const char *msg, int *ret_status, char **ret_body)
{
	return finish(json_pack("{s:s,s:s,s:i,s:s}", "kind", "Status", "status", "Failure", "code",
				400, "message", msg),
		      400, ret_status, ret_body);
}

static json_t *admission_response(const json_t *review, const char *uid, bool allowed,
				  const char *message)
{
	const char *av = json_string_value(json_object_get(review, "apiVersion"));
	json_t *resp = json_pack("{s:s,s:b}", "uid", uid, "allowed", allowed);

	if (!resp)
		return NULL;
	if (!allowed && json_object_set_new(resp, "status",
					    json_pack("{s:i,s:s,s:s}", "code", 403, "reason",
						      "Forbidden", "message", message)) < 0) {
		json_decref(resp);
		return NULL;
	}
	return json_pack("{s:s,s:s,s:o}", "apiVersion", av ? av : "admission.k8s.io/v1", "kind",
			 "AdmissionReview", "response", resp);
}

static int module_review(const struct kmm_webhook_options *o, const json_t *req,
			 struct kmm_error **err)
{
	_cleanup_(kmm_module_freep) struct kmm_module *m = NULL, *old = NULL;
	const char *op = json_string_value(json_object_get(req, "operation"));
	const char *ns = json_string_value(json_object_get(req, "namespace"));
	int r;

	if (op && strcmp(op, "CREATE") != 0 && strcmp(op, "UPDATE") != 0)
		return 0;
	r = kmm_module_from_json(json_object_get(req, "object"), 0, &m, err);
	if (r < 0)
		return r;
	if (!m->namespace && ns && !(m->namespace = strdup(ns)))
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (op && strcmp(op, "UPDATE") == 0) {
		r = kmm_module_from_json(json_object_get(req, "oldObject"), 0, &old, err);
		if (r < 0)
			return kmm_error_wrap(err, "oldObject");
	}
	return kmm_module_validate(m, old, o->k8s_minor, false, err);
}

/* Upstream's MCM webhook: the Module rules on spec.moduleSpec, without the DRA gate. */
static int mcm_review(const json_t *req, struct kmm_error **err)
{
	_cleanup_(kmm_mcm_freep) struct kmm_mcm *m = NULL, *old = NULL;
	const char *op = json_string_value(json_object_get(req, "operation"));
	int r;

	if (op && strcmp(op, "CREATE") != 0 && strcmp(op, "UPDATE") != 0)
		return 0;
	r = kmm_mcm_from_json(json_object_get(req, "object"), 0, &m, err);
	if (r < 0)
		return r;
	if (op && strcmp(op, "UPDATE") == 0) {
		r = kmm_mcm_from_json(json_object_get(req, "oldObject"), 0, &old, err);
		if (r < 0)
			return kmm_error_wrap(err, "oldObject");
	}
	return kmm_mcm_validate(m, old, false, err);
}

static int pfv_review(const json_t *req, struct kmm_error **err)
{
	_cleanup_(kmm_pfv_freep) struct kmm_pfv *p = NULL;
	const char *op = json_string_value(json_object_get(req, "operation"));
	int r;

	if (op && strcmp(op, "CREATE") != 0 && strcmp(op, "UPDATE") != 0)
		return 0;
	r = kmm_pfv_from_json(json_object_get(req, "object"), 0, &p, err);
	return r < 0 ? r : kmm_pfv_validate(p, err);
}

static int namespace_review(const json_t *req, struct kmm_error **err)
{
	const char *op = json_string_value(json_object_get(req, "operation"));
	const json_t *labels = json_object_get(
	    json_object_get(json_object_get(req, "oldObject"), "metadata"), "labels");

	if (!op || strcmp(op, "DELETE") != 0)
		return 0;
	/*
	 * The webhook configuration's namespaceSelector already limits calls to
	 * labelled namespaces; checking the label again keeps a misconfigured
	 * selector from blocking every namespace deletion.
	 */
	if (labels && !json_object_get(labels, KMM_LABEL_NAMESPACE_CONTAINS_MODULES))
		return 0;
	return kmm_error_make(err, EPERM, NS_DELETE_MESSAGE);
}

static int admission(const struct kmm_webhook_options *o, const char *path, const json_t *review,
		     int *ret_status, char **ret_body)
{
	const json_t *req = json_object_get(review, "request");
	const char *uid = json_string_value(json_object_get(req, "uid"));
	_cleanup_error_ struct kmm_error *err = NULL;
	int r;

	if (!json_is_object(req) || !uid)
		return bad_request("AdmissionReview without request.uid", ret_status, ret_body);
	if (strcmp(path, KMM_WEBHOOK_PATH_MODULE) == 0)
		r = module_review(o, req, &err);
	else if (strcmp(path, KMM_WEBHOOK_PATH_PFV) == 0)
		r = pfv_review(req, &err);
	else if (strcmp(path, KMM_WEBHOOK_PATH_MCM) == 0)
		r = mcm_review(req, &err);
	else
		r = namespace_review(req, &err);
	if (r == -ENOMEM)
		return r;
	return finish(admission_response(review, uid, r >= 0, kmm_error_message(err)), 200,
		      ret_status, ret_body);
}

static json_t *convert_one(const json_t *obj, const char *desired, struct kmm_error **err)
{
	_cleanup_(kmm_pfv_freep) struct kmm_pfv *p = NULL;
	const char *kind = json_string_value(json_object_get(obj, "kind"));

	if (!kind || strcmp(kind, "PreflightValidation") != 0) {
		kmm_error_make(err, EINVAL, "cannot convert kind \"%s\"", kind ? kind : "");
		return NULL;
	}
	if (strcmp(desired, KMM_API_VERSION) != 0 &&
	    strcmp(desired, KMM_API_VERSION_V1BETA2) != 0) {
		kmm_error_make(err, EINVAL, "unsupported desiredAPIVersion \"%s\"", desired);
		return NULL;
	}
	if (kmm_pfv_from_json(obj, 0, &p, err) < 0)
		return NULL;
	return kmm_pfv_to_json(p, desired);
}

static int conversion(const json_t *review, int *ret_status, char **ret_body)
{
	const json_t *req = json_object_get(review, "request");
	const char *uid = json_string_value(json_object_get(req, "uid"));
	const char *desired = json_string_value(json_object_get(req, "desiredAPIVersion"));
	const json_t *objects = json_object_get(req, "objects");
	const char *av = json_string_value(json_object_get(review, "apiVersion"));
	_cleanup_error_ struct kmm_error *err = NULL;
	json_t *converted, *resp, *o;
	size_t i;

	if (!uid || !desired || !json_is_array(objects))
		return bad_request(
		    "ConversionReview without request.uid, desiredAPIVersion or objects",
		    ret_status, ret_body);
	converted = json_array();
	if (!converted)
		return -ENOMEM;
	json_array_foreach (objects, i, o) {
		json_t *c = convert_one(o, desired, &err);

		if (!c) {
			if (kmm_error_code(err) == ENOMEM) {
				json_decref(converted);
				return -ENOMEM;
			}
			break;
		}
		if (json_array_append_new(converted, c) < 0) {
			json_decref(converted);
			return -ENOMEM;
		}
	}
	if (err) {
		json_decref(converted);
		resp = json_pack("{s:s,s:[],s:{s:s,s:s}}", "uid", uid, "convertedObjects", "result",
				 "status", "Failure", "message", kmm_error_message(err));
	} else {
		resp = json_pack("{s:s,s:o,s:{s:s}}", "uid", uid, "convertedObjects", converted,
				 "result", "status", "Success");
	}
	if (!resp)
		return -ENOMEM;
	return finish(json_pack("{s:s,s:s,s:o}", "apiVersion", av ? av : "apiextensions.k8s.io/v1",
				"kind", "ConversionReview", "response", resp),
		      200, ret_status, ret_body);
}

int kmm_webhook_handle(const struct kmm_webhook_options *o, const char *path, const char *body,
		       size_t len, int *ret_status, char **ret_body)
{
	_cleanup_json_ json_t *review = NULL;
	bool enabled;
	json_error_t jerr;

	enabled = (strcmp(path, KMM_WEBHOOK_PATH_MODULE) == 0 && o->enable_module) ||
		  (strcmp(path, KMM_WEBHOOK_PATH_PFV) == 0 && o->enable_preflightvalidation) ||
		  (strcmp(path, KMM_WEBHOOK_PATH_CONVERT) == 0 && o->enable_preflightvalidation) ||
		  (strcmp(path, KMM_WEBHOOK_PATH_NAMESPACE) == 0 && o->enable_namespace) ||
		  (strcmp(path, KMM_WEBHOOK_PATH_MCM) == 0 && o->enable_managedclustermodule);
	if (!enabled) {
		*ret_status = 404;
		*ret_body = NULL;
		return 0;
	}
	review = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!review || !json_is_object(review))
		return bad_request("request body is not a JSON object", ret_status, ret_body);
	if (strcmp(path, KMM_WEBHOOK_PATH_CONVERT) == 0)
		return conversion(review, ret_status, ret_body);
	return admission(o, path, review, ret_status, ret_body);
}
