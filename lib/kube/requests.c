/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Requests by resource: path building with escaping, the verbs, Status
 * decoding and discovery. Everything here is stateless on top of transport.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "kmm/shared-buf.h"
#include "kmm/kube.h"
#include "kmm/shared-strv.h"
#include "lib/kube/kube-internal.h"

const struct kmm_kube_resource kmm_kube_pods = { "", "v1", "pods", true };
const struct kmm_kube_resource kmm_kube_nodes = { "", "v1", "nodes", false };
const struct kmm_kube_resource kmm_kube_configmaps = { "", "v1", "configmaps", true };
const struct kmm_kube_resource kmm_kube_secrets = { "", "v1", "secrets", true };
const struct kmm_kube_resource kmm_kube_namespaces = { "", "v1", "namespaces", false };
const struct kmm_kube_resource kmm_kube_events = { "", "v1", "events", true };
const struct kmm_kube_resource kmm_kube_events_v1 = { "events.k8s.io", "v1", "events", true };
const struct kmm_kube_resource kmm_kube_leases = { "coordination.k8s.io", "v1", "leases", true };
const struct kmm_kube_resource kmm_kube_deployments = { "apps", "v1", "deployments", true };
const struct kmm_kube_resource kmm_kube_daemonsets = { "apps", "v1", "daemonsets", true };

/* Appends '/' and the escaped segment. */
static int add_segment(struct kmm_buf *b, const char *seg, const char *what, struct kmm_error **err)
{
	char *esc;
	int r;

	if (!seg || !*seg || strcmp(seg, ".") == 0 || strcmp(seg, "..") == 0)
		return kmm_error_make(err, EINVAL, "invalid %s \"%s\" in request path", what,
				      seg ? seg : "");
	esc = curl_easy_escape(NULL, seg, 0);
	if (!esc)
		return -ENOMEM;
	r = kmm_buf_printf(b, "/%s", esc);
	curl_free(esc);
	return r;
}

int kmm_kube_path(const struct kmm_kube_target *t, const struct kmm_kube_query *q, char **ret_path,
		  struct kmm_error **err)
{
	_cleanup_buf_ struct kmm_buf b = { 0 };
	const struct kmm_kube_resource *res = t->res;
	bool first = true;
	int r;

	kmm_buf_init(&b, 64 * 1024);
	if (!res || !res->version || !res->resource)
		return kmm_error_make(err, EINVAL, "request path: incomplete resource");
	if (res->group && *res->group) {
		r = kmm_buf_append_str(&b, "/apis");
		if (r >= 0)
			r = add_segment(&b, res->group, "group", err);
	} else {
		r = kmm_buf_append_str(&b, "/api");
	}
	if (r >= 0)
		r = add_segment(&b, res->version, "version", err);
	if (r >= 0 && res->namespaced && t->namespace) {
		r = kmm_buf_append_str(&b, "/namespaces");
		if (r >= 0)
			r = add_segment(&b, t->namespace, "namespace", err);
	}
	if (r >= 0)
		r = add_segment(&b, res->resource, "resource", err);
	if (r >= 0 && t->name)
		r = add_segment(&b, t->name, "name", err);
	if (r >= 0 && t->subresource) {
		if (!t->name)
			return kmm_error_make(err, EINVAL,
					      "request path: subresource without name");
		r = add_segment(&b, t->subresource, "subresource", err);
	}
	for (; r >= 0 && q && q->key; q++) {
		char *k, *v;

		if (!q->value)
			continue;
		k = curl_easy_escape(NULL, q->key, 0);
		v = curl_easy_escape(NULL, q->value, 0);
		if (!k || !v)
			r = -ENOMEM;
		else
			r = kmm_buf_printf(&b, "%c%s=%s", first ? '?' : '&', k, v);
		curl_free(k);
		curl_free(v);
		first = false;
	}
	if (r < 0)
		return r == -E2BIG ? kmm_error_make(err, E2BIG, "request path too long") : r;
	*ret_path = kmm_buf_steal(&b);
	return *ret_path ? 0 : -ENOMEM;
}

/* ---- Status ---- */

static char *dup_member(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? strdup(s) : NULL;
}

void kmm_kube_status_free(struct kmm_kube_status *s)
{
	if (!s)
		return;
	free(s->status);
	free(s->reason);
	free(s->message);
	free(s->name);
	free(s->group);
	free(s->kind);
	free(s->uid);
	for (size_t i = 0; i < s->n_causes; i++) {
		free(s->causes[i].type);
		free(s->causes[i].message);
		free(s->causes[i].field);
	}
	free(s->causes);
	free(s);
}

int kmm_kube_status_parse(const char *body, size_t len, struct kmm_kube_status **ret_status)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	_cleanup_(kmm_kube_status_freep) struct kmm_kube_status *s = NULL;
	const json_t *d, *causes, *code, *ra;
	const char *kind;

	if (!body)
		return -EINVAL;
	j = json_loadb(body, len, 0, NULL);
	kind = json_string_value(json_object_get(j, "kind"));
	if (!json_is_object(j) || !kind || strcmp(kind, "Status") != 0)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->retry_after_seconds = -1;
	code = json_object_get(j, "code");
	if (json_is_integer(code) && json_integer_value(code) >= 0 &&
	    json_integer_value(code) < 1000)
		s->code = (int)json_integer_value(code);
	s->status = dup_member(j, "status");
	s->reason = dup_member(j, "reason");
	s->message = dup_member(j, "message");
	d = json_object_get(j, "details");
	if (json_is_object(d)) {
		s->name = dup_member(d, "name");
		s->group = dup_member(d, "group");
		s->kind = dup_member(d, "kind");
		s->uid = dup_member(d, "uid");
		ra = json_object_get(d, "retryAfterSeconds");
		if (json_is_integer(ra) && json_integer_value(ra) >= 0 &&
		    json_integer_value(ra) < 86400)
			s->retry_after_seconds = json_integer_value(ra);
		causes = json_object_get(d, "causes");
		if (json_is_array(causes) && json_array_size(causes) > 0 &&
		    json_array_size(causes) < 10000) {
			size_t i;
			json_t *it;

			s->causes = calloc(json_array_size(causes), sizeof(*s->causes));
			if (!s->causes)
				return -ENOMEM;
			json_array_foreach (causes, i, it) {
				s->causes[s->n_causes].type = dup_member(it, "reason");
				s->causes[s->n_causes].message = dup_member(it, "message");
				s->causes[s->n_causes].field = dup_member(it, "field");
				s->n_causes++;
			}
		}
	}
	*ret_status = TAKE_PTR(s);
	return 0;
}

int kmm_kube_error_from_response(const struct kmm_kube_response *resp, const char *what,
				 struct kmm_error **err)
{
	_cleanup_(kmm_kube_status_freep) struct kmm_kube_status *s = NULL;
	_cleanup_buf_ struct kmm_buf msg = { 0 };
	struct kmm_error *e = NULL;
	int status = (int)resp->status, r;
	int64_t ra = resp->retry_after_ms;

	kmm_buf_init(&msg, 8192);
	if (kmm_kube_status_parse(resp->body, resp->body_len, &s) == 0) {
		if (s->code >= 400)
			status = s->code;
		(void)kmm_buf_printf(&msg, "%s", s->message ? s->message : "");
		/* Causes add detail only when the message does not already say it. */
		size_t shown = 0;

		for (size_t i = 0; i < s->n_causes && shown < 3; i++) {
			if (!s->causes[i].message ||
			    (s->message && strstr(s->message, s->causes[i].message)))
				continue;
			(void)kmm_buf_printf(&msg, "%s%s%s%s", shown++ == 0 ? " (" : "; ",
					     s->causes[i].field ? s->causes[i].field : "",
					     s->causes[i].field ? ": " : "", s->causes[i].message);
		}
		if (shown > 0)
			(void)kmm_buf_append_str(&msg, ")");
		if (ra < 0 && s->retry_after_seconds >= 0)
			ra = s->retry_after_seconds * 1000;
	} else if (resp->body_len > 0) {
		/* Not a Status: show a bounded, single-line prefix of the body. */
		size_t n = resp->body_len < 200 ? resp->body_len : 200;

		for (size_t i = 0; i < n; i++) {
			char ch = resp->body[i];

			(void)kmm_buf_append(&msg, ch >= 0x20 && ch < 0x7f ? &ch : "?", 1);
		}
	}
	r = kmm_error_make_http(&e, status, s ? s->reason : NULL, "%s: %d %s%s%s", what, status,
				s && s->reason ? s->reason : "", s && s->reason ? ": " : "",
				kmm_buf_str(&msg));
	if (e)
		e->retry_after_ms = ra;
	if (err)
		*err = e;
	else
		kmm_error_free(e);
	return r;
}

/* ---- verbs ---- */

/* Reads: no body. */
static int do_json(struct kmm_kube_client *c, const char *method, const char *path, json_t **ret,
		   struct kmm_error **err)
{
	struct kmm_kube_request req = { .method = method, .path = path };

	return kmm_kube_request_json(c, &req, ret, err);
}

void kmm_kube_prepared_clear(struct kmm_kube_prepared *p)
{
	if (!p)
		return;
	free(p->path);
	free(p->body);
	*p = (struct kmm_kube_prepared){ 0 };
}

/* Takes *path (also on failure); body is serialized. */
static int prepare(const char *method, char **path, const char *ctype, const json_t *body,
		   struct kmm_kube_prepared *ret)
{
	_cleanup_free_ char *p = TAKE_PTR(*path), *data = NULL;

	if (body) {
		/* Sent as given: unknown fields stay, int64 stays int64. */
		data = json_dumps(body, JSON_COMPACT);
		if (!data)
			return -ENOMEM;
	}
	*ret = (struct kmm_kube_prepared){
		.req = { .method = method,
			 .path = p,
			 .content_type = ctype,
			 .body = data,
			 .body_len = data ? strlen(data) : 0 },
		.path = TAKE_PTR(p),
		.body = TAKE_PTR(data),
	};
	return 0;
}

/* Sends a prepared write and frees it. */
static int send_prepared(struct kmm_kube_client *c, struct kmm_kube_prepared *p, json_t **ret,
			 struct kmm_error **err)
{
	int r = kmm_kube_request_json(c, &p->req, ret, err);

	kmm_kube_prepared_clear(p);
	return r;
}

int kmm_kube_get(struct kmm_kube_client *c, const struct kmm_kube_target *t, json_t **ret_obj,
		 struct kmm_error **err)
{
	_cleanup_free_ char *path = NULL;
	int r;

	if (!t->name)
		return kmm_error_make(err, EINVAL, "get %s: no name", t->res->resource);
	r = kmm_kube_path(t, NULL, &path, err);
	if (r < 0)
		return r;
	return do_json(c, "GET", path, ret_obj, err);
}

int kmm_kube_list(struct kmm_kube_client *c, const struct kmm_kube_target *t,
		  const struct kmm_kube_list_options *o, json_t **ret_list, struct kmm_error **err)
{
	_cleanup_free_ char *path = NULL, *limit = NULL, *tmo = NULL;
	struct kmm_kube_target coll = *t;
	struct kmm_kube_list_options none = { 0 };
	int r;

	if (!o)
		o = &none;
	if (o->limit > 0 && asprintf(&limit, "%ld", o->limit) < 0)
		return -ENOMEM;
	if (o->timeout_seconds > 0 && asprintf(&tmo, "%ld", o->timeout_seconds) < 0)
		return -ENOMEM;
	coll.name = NULL;
	coll.subresource = NULL;
	r = kmm_kube_path(&coll,
			  (const struct kmm_kube_query[]){
			      { "labelSelector", o->label_selector },
			      { "fieldSelector", o->field_selector },
			      { "resourceVersion", o->resource_version },
			      { "resourceVersionMatch", o->resource_version_match },
			      { "limit", limit },
			      { "continue", o->continue_token },
			      { "timeoutSeconds", tmo },
			      { NULL, NULL },
			  },
			  &path, err);
	if (r < 0)
		return r;
	return do_json(c, "GET", path, ret_list, err);
}

int kmm_kube_list_all(struct kmm_kube_client *c, const struct kmm_kube_target *t,
		      const struct kmm_kube_list_options *o, json_t **ret_list,
		      struct kmm_error **err)
{
	struct kmm_kube_list_options po = o ? *o : (struct kmm_kube_list_options){ 0 };
	bool restarted = false;

	if (po.limit <= 0)
		po.limit = 500;
restart:
	po.continue_token = NULL;
	{
		_cleanup_(json_decrefp) json_t *all = NULL;
		_cleanup_free_ char *cont = NULL;

		for (;;) {
			_cleanup_(json_decrefp) json_t *page = NULL;
			_cleanup_error_ struct kmm_error *e = NULL;
			const char *next;
			int r;

			po.continue_token = cont;
			r = kmm_kube_list(c, t, &po, &page, &e);
			if (r < 0) {
				if (cont && kmm_error_is_http(e, 410) && !restarted) {
					restarted = true;
					goto restart;
				}
				if (err)
					*err = TAKE_PTR(e);
				return r;
			}
			if (!json_is_array(json_object_get(page, "items")))
				return kmm_error_make(err, EBADMSG, "list %s: no items array",
						      t->res->resource);
			if (!all) {
				all = json_incref(page);
			} else {
				if (json_array_extend(json_object_get(all, "items"),
						      json_object_get(page, "items")) < 0 ||
				    json_object_set(all, "metadata",
						    json_object_get(page, "metadata")) < 0)
					return -ENOMEM;
			}
			next = kmm_kube_meta_str(page, "continue");
			free(cont);
			cont = NULL;
			if (!next || !*next)
				break;
			cont = strdup(next);
			if (!cont)
				return -ENOMEM;
		}
		/* The last page's metadata carries an empty continue; drop it. */
		json_object_del(json_object_get(all, "metadata"), "continue");
		*ret_list = TAKE_PTR(all);
		return 0;
	}
}

static int write_path(const struct kmm_kube_target *t, bool collection, const char *fm,
		      bool dry_run, const char *force, char **ret, struct kmm_error **err)
{
	struct kmm_kube_target tt = *t;

	if (collection) {
		tt.name = NULL;
		tt.subresource = NULL;
	} else if (!t->name) {
		return kmm_error_make(err, EINVAL, "%s: no name", t->res->resource);
	}
	return kmm_kube_path(&tt,
			     (const struct kmm_kube_query[]){
				 { "fieldManager", fm },
				 { "dryRun", dry_run ? "All" : NULL },
				 { "force", force },
				 { NULL, NULL },
			     },
			     ret, err);
}

int kmm_kube_prepare_create(const struct kmm_kube_target *t, const json_t *obj,
			    const struct kmm_kube_write_options *o, struct kmm_kube_prepared *ret,
			    struct kmm_error **err)
{
	_cleanup_free_ char *path = NULL;
	int r = write_path(t, true, o ? o->field_manager : NULL, o && o->dry_run, NULL, &path, err);

	const json_t *name = json_object_get(json_object_get(obj, "metadata"), "name");

	if (r < 0)
		return r;
	r = prepare("POST", &path, NULL, obj, ret);
	/* A repeat of a named create cannot make a second object: 409 AlreadyExists. */
	if (r == 0 && json_string_length(name) > 0)
		ret->req.named_create = true;
	return r;
}

int kmm_kube_create(struct kmm_kube_client *c, const struct kmm_kube_target *t, const json_t *obj,
		    const struct kmm_kube_write_options *o, json_t **ret_obj,
		    struct kmm_error **err)
{
	struct kmm_kube_prepared p = { 0 };
	int r = kmm_kube_prepare_create(t, obj, o, &p, err);

	if (r < 0)
		return r;
	return send_prepared(c, &p, ret_obj, err);
}

int kmm_kube_prepare_update(const struct kmm_kube_target *t, const json_t *obj,
			    const struct kmm_kube_write_options *o, struct kmm_kube_prepared *ret,
			    struct kmm_error **err)
{
	_cleanup_free_ char *path = NULL;
	int r =
	    write_path(t, false, o ? o->field_manager : NULL, o && o->dry_run, NULL, &path, err);

	if (r < 0)
		return r;
	return prepare("PUT", &path, NULL, obj, ret);
}

int kmm_kube_update(struct kmm_kube_client *c, const struct kmm_kube_target *t, const json_t *obj,
		    const struct kmm_kube_write_options *o, json_t **ret_obj,
		    struct kmm_error **err)
{
	struct kmm_kube_prepared p = { 0 };
	int r = kmm_kube_prepare_update(t, obj, o, &p, err);

	if (r < 0)
		return r;
	return send_prepared(c, &p, ret_obj, err);
}

int kmm_kube_prepare_patch(const struct kmm_kube_target *t, enum kmm_kube_patch_type type,
			   const json_t *patch, const struct kmm_kube_patch_options *o,
			   struct kmm_kube_prepared *ret, struct kmm_error **err)
{
	_cleanup_free_ char *path = NULL;
	const char *ctype;
	int r;

	switch (type) {
	case KMM_KUBE_PATCH_MERGE:
		ctype = "application/merge-patch+json";
		break;
	case KMM_KUBE_PATCH_JSON:
		ctype = "application/json-patch+json";
		if (!json_is_array(patch))
			return kmm_error_make(err, EINVAL, "JSON patch must be an array");
		break;
	case KMM_KUBE_PATCH_STRATEGIC:
		ctype = "application/strategic-merge-patch+json";
		break;
	case KMM_KUBE_PATCH_APPLY:
		ctype = "application/apply-patch+yaml";
		if (!o || !o->field_manager || !*o->field_manager)
			return kmm_error_make(err, EINVAL,
					      "server-side apply needs a field manager");
		break;
	default:
		return kmm_error_make(err, EINVAL, "unknown patch type %d", (int)type);
	}
	r = write_path(t, false, o ? o->field_manager : NULL, o && o->dry_run,
		       type == KMM_KUBE_PATCH_APPLY && o->force ? "true" : NULL, &path, err);
	if (r < 0)
		return r;
	return prepare("PATCH", &path, ctype, patch, ret);
}

int kmm_kube_patch(struct kmm_kube_client *c, const struct kmm_kube_target *t,
		   enum kmm_kube_patch_type type, const json_t *patch,
		   const struct kmm_kube_patch_options *o, json_t **ret_obj, struct kmm_error **err)
{
	struct kmm_kube_prepared p = { 0 };
	int r = kmm_kube_prepare_patch(t, type, patch, o, &p, err);

	if (r < 0)
		return r;
	return send_prepared(c, &p, ret_obj, err);
}

void kmm_kube_delete_options_init(struct kmm_kube_delete_options *o)
{
	*o = (struct kmm_kube_delete_options){ .grace_period_seconds = -1 };
}

/* DeleteOptions go in the body: preconditions have no query form. */
static json_t *delete_options_json(const struct kmm_kube_delete_options *o)
{
	_cleanup_(json_decrefp) json_t *body = NULL;

	body = json_pack("{s:s, s:s}", "kind", "DeleteOptions", "apiVersion", "v1");
	if (!body)
		return NULL;
	if (o->precondition_uid || o->precondition_resource_version) {
		json_t *pre = json_object();

		if (!pre || json_object_set_new(body, "preconditions", pre) < 0)
			return NULL;
		if (o->precondition_uid &&
		    json_object_set_new(pre, "uid", json_string(o->precondition_uid)) < 0)
			return NULL;
		if (o->precondition_resource_version &&
		    json_object_set_new(pre, "resourceVersion",
					json_string(o->precondition_resource_version)) < 0)
			return NULL;
	}
	if (o->propagation_policy &&
	    json_object_set_new(body, "propagationPolicy", json_string(o->propagation_policy)) < 0)
		return NULL;
	if (o->grace_period_seconds >= 0 &&
	    json_object_set_new(body, "gracePeriodSeconds", json_integer(o->grace_period_seconds)) <
		0)
		return NULL;
	return TAKE_PTR(body);
}

int kmm_kube_prepare_delete(const struct kmm_kube_target *t,
			    const struct kmm_kube_delete_options *o, struct kmm_kube_prepared *ret,
			    struct kmm_error **err)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_(json_decrefp) json_t *body = NULL;
	int r;

	r = write_path(t, false, NULL, o && o->dry_run, NULL, &path, err);
	if (r < 0)
		return r;
	if (o && !(body = delete_options_json(o)))
		return -ENOMEM;
	return prepare("DELETE", &path, NULL, body, ret);
}

int kmm_kube_delete(struct kmm_kube_client *c, const struct kmm_kube_target *t,
		    const struct kmm_kube_delete_options *o, json_t **ret_obj,
		    struct kmm_error **err)
{
	struct kmm_kube_prepared p = { 0 };
	int r = kmm_kube_prepare_delete(t, o, &p, err);

	if (r < 0)
		return r;
	return send_prepared(c, &p, ret_obj, err);
}

/* ---- discovery ---- */

void kmm_kube_resource_info_free(struct kmm_kube_resource_info *i)
{
	if (!i)
		return;
	free(i->kind);
	kmm_strv_free(i->verbs);
	kmm_strv_free(i->subresources);
	free(i);
}

int kmm_kube_discover(struct kmm_kube_client *c, const char *group, const char *version,
		      const char *resource, struct kmm_kube_resource_info **ret_info,
		      struct kmm_error **err)
{
	_cleanup_(kmm_kube_resource_info_freep) struct kmm_kube_resource_info *info = NULL;
	_cleanup_(json_decrefp) json_t *list = NULL;
	_cleanup_free_ char *path = NULL, *eg = NULL, *ev = NULL;
	size_t i, rl = strlen(resource);
	json_t *it;
	int r;

	eg = curl_easy_escape(NULL, group ? group : "", 0);
	ev = curl_easy_escape(NULL, version, 0);
	if (!eg || !ev)
		return -ENOMEM;
	if (asprintf(&path, group && *group ? "/apis/%s/%s" : "/api%s/%s", eg, ev) < 0)
		return -ENOMEM;
	r = do_json(c, "GET", path, &list, err);
	if (r < 0)
		return r;
	info = calloc(1, sizeof(*info));
	if (!info || !(info->verbs = calloc(1, sizeof(char *))) ||
	    !(info->subresources = calloc(1, sizeof(char *))))
		return -ENOMEM;
	json_array_foreach (json_object_get(list, "resources"), i, it) {
		const char *name = json_string_value(json_object_get(it, "name"));
		size_t j;
		json_t *v;

		if (!name)
			continue;
		if (strncmp(name, resource, rl) == 0 && name[rl] == '/') {
			if (kmm_strv_push(&info->subresources, name + rl + 1) < 0)
				return -ENOMEM;
			continue;
		}
		if (strcmp(name, resource) != 0)
			continue;
		info->namespaced = json_is_true(json_object_get(it, "namespaced"));
		info->kind = dup_member(it, "kind");
		json_array_foreach (json_object_get(it, "verbs"), j, v)
			if (json_is_string(v) &&
			    kmm_strv_push(&info->verbs, json_string_value(v)) < 0)
				return -ENOMEM;
	}
	if (!info->kind)
		return kmm_error_make(err, ENOENT, "discovery: %s%s%s/%s has no resource \"%s\"",
				      group ? group : "", group && *group ? "/" : "", version, "",
				      resource);
	*ret_info = TAKE_PTR(info);
	return 0;
}

/* ---- JSON helpers ---- */

const char *kmm_kube_meta_str(const json_t *obj, const char *field)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), field));
}

char *kmm_kube_object_key(const json_t *obj)
{
	const char *ns = kmm_kube_meta_str(obj, "namespace");
	const char *name = kmm_kube_meta_str(obj, "name");
	char *k;

	if (!name)
		return NULL;
	if (ns && *ns) {
		if (asprintf(&k, "%s/%s", ns, name) < 0)
			return NULL;
		return k;
	}
	return strdup(name);
}
