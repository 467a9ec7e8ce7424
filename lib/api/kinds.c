/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The internal kinds: NodeModulesConfig, ModuleImagesConfig,
 * ModuleBuildSignConfig, and PreflightValidation (v1beta1 and v1beta2).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api.h"
#include "kmm/strv.h"
#include "lib/api/decode.h"

#define STEP(expr)                                                                                 \
	do {                                                                                       \
		if (r >= 0)                                                                        \
			r = (expr);                                                                \
	} while (0)

/* Iterates obj[key] (an array of objects); calls fn(d, item, item_path, i, ctx). */
typedef int (*item_fn)(struct dec *d, const json_t *item, const char *path, size_t i, void *ctx);

static int dec_items(struct dec *d, const json_t *obj, const char *path, const char *key,
		     size_t *ret_n, item_fn fn, void *ctx)
{
	const json_t *v = json_object_get(obj, key);
	_cleanup_free_ char *p = NULL;
	size_t i;
	json_t *e;

	*ret_n = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return dec_fail(d, path, key, "expected an array");
	p = path_key(path, key);
	if (!p)
		return dec_oom(d);
	json_array_foreach (v, i, e) {
		_cleanup_free_ char *pi = path_index(p, i);
		int r;

		if (!pi)
			return dec_oom(d);
		if (!json_is_object(e))
			return dec_fail(d, pi, NULL, "expected an object");
		*ret_n = i + 1;
		r = fn(d, e, pi, i, ctx);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Reserves n zeroed elements of size sz for an array decoded by dec_items. */
static void *alloc_items(const json_t *obj, const char *key, size_t sz)
{
	size_t n = json_array_size(json_object_get(obj, key));

	return calloc(n ? n : 1, sz);
}

static int dec_section(struct dec *d, const json_t *root, const char *key, bool required,
		       const char *const *known, json_t **ret_unknown, const json_t **ret)
{
	int r = dec_object(d, root, "", key);

	if (r < 0)
		return r;
	*ret = NULL;
	if (r == 0)
		return required ? dec_fail(d, "", key, "required field is missing") : 0;
	*ret = json_object_get(root, key);
	return dec_unknown(d, *ret, key, known, ret_unknown);
}

static json_t *enc_meta(const json_t *metadata, const char *name, const char *ns)
{
	json_t *md = metadata ? json_deep_copy(metadata) : json_object();

	if (md && ((!str_empty(name) && enc_str(md, "name", name) < 0) ||
		   (!str_empty(ns) && enc_str(md, "namespace", ns) < 0))) {
		json_decref(md);
		return NULL;
	}
	return md;
}

/* ------------------------------------------------------------------------- */
/* NodeModulesConfig                                                         */

static void nmc_module_done(struct kmm_nmc_module *m)
{
	free(m->name);
	free(m->namespace);
	free(m->service_account_name);
	free(m->image_repo_secret);
	for (size_t i = 0; i < m->n_tolerations; i++)
		kmm_toleration_done(&m->tolerations[i]);
	free(m->tolerations);
	free(m->version);
	kmm_module_config_free(m->config);
	free(m->boot_id);
	free(m->last_transition_time);
	json_decref(m->unknown);
}

struct nmc_ctx {
	struct kmm_nmc_module *items;
	bool status;
};

static int dec_nmc_module(struct dec *d, const json_t *e, const char *p, size_t i, void *ctx)
{
	static const char *const spec_known[] = { "name",
						  "namespace",
						  "serviceAccountName",
						  "imageRepoSecret",
						  "tolerations",
						  "version",
						  "config",
						  NULL };
	static const char *const status_known[] = { "name",
						    "namespace",
						    "serviceAccountName",
						    "imageRepoSecret",
						    "tolerations",
						    "version",
						    "config",
						    "bootId",
						    "lastTransitionTime",
						    NULL };
	struct nmc_ctx *c = ctx;
	struct kmm_nmc_module *m = &c->items[i];
	_cleanup_free_ char *pc = NULL;
	int r = 0;

	STEP(dec_unknown(d, e, p, c->status ? status_known : spec_known, &m->unknown));
	STEP(dec_string_req(d, e, p, "name", &m->name));
	STEP(dec_string_req(d, e, p, "namespace", &m->namespace));
	STEP(dec_string(d, e, p, "serviceAccountName", &m->service_account_name));
	STEP(dec_local_ref(d, e, p, "imageRepoSecret", &m->image_repo_secret));
	STEP(dec_tolerations(d, e, p, "tolerations", &m->tolerations, &m->n_tolerations));
	STEP(dec_string(d, e, p, "version", &m->version));
	if (r >= 0 && c->status)
		r = dec_string(d, e, p, "bootId", &m->boot_id);
	if (r >= 0 && c->status)
		r = dec_string(d, e, p, "lastTransitionTime", &m->last_transition_time);
	if (r >= 0 && dec_missing(e, "config"))
		r = dec_fail(d, p, "config", "required field is missing");
	if (r >= 0) {
		pc = path_key(p, "config");
		r = pc ? kmm_module_config_from_json(json_object_get(e, "config"), pc, d->flags,
						     &m->config, d->err)
		       : dec_oom(d);
	}
	return r;
}

void kmm_nmc_free(struct kmm_nmc *n)
{
	if (!n)
		return;
	free(n->name);
	json_decref(n->metadata);
	for (size_t i = 0; i < n->n_spec_modules; i++)
		nmc_module_done(&n->spec_modules[i]);
	free(n->spec_modules);
	for (size_t i = 0; i < n->n_status_modules; i++)
		nmc_module_done(&n->status_modules[i]);
	free(n->status_modules);
	json_decref(n->spec_unknown);
	json_decref(n->status_unknown);
	json_decref(n->unknown);
	free(n);
}

int kmm_nmc_from_json(const json_t *j, unsigned flags, struct kmm_nmc **ret, struct kmm_error **err)
{
	static const char *const versions[] = { KMM_API_VERSION, NULL };
	static const char *const known[] = { "apiVersion", "kind",   "metadata",
					     "spec",	   "status", NULL };
	static const char *const modules_known[] = { "modules", NULL };
	_cleanup_(kmm_nmc_freep) struct kmm_nmc *n = NULL;
	struct dec d = { .flags = flags, .err = err };
	const json_t *spec = NULL, *status = NULL;
	struct nmc_ctx ctx;
	int r;

	r = dec_type_meta(&d, j, "NodeModulesConfig", versions);
	if (r < 0)
		return r;
	n = calloc(1, sizeof(*n));
	if (!n)
		return dec_oom(&d);
	STEP(dec_unknown(&d, j, "", known, &n->unknown));
	STEP(dec_metadata(&d, j, false, &n->name, NULL, NULL, &n->metadata));
	STEP(dec_section(&d, j, "spec", false, modules_known, &n->spec_unknown, &spec));
	if (r >= 0 && spec) {
		n->spec_modules = alloc_items(spec, "modules", sizeof(*n->spec_modules));
		ctx = (struct nmc_ctx){ n->spec_modules, false };
		r = n->spec_modules ? dec_items(&d, spec, "spec", "modules", &n->n_spec_modules,
						dec_nmc_module, &ctx)
				    : dec_oom(&d);
	}
	STEP(dec_section(&d, j, "status", false, modules_known, &n->status_unknown, &status));
	if (r >= 0 && status) {
		n->status_modules = alloc_items(status, "modules", sizeof(*n->status_modules));
		ctx = (struct nmc_ctx){ n->status_modules, true };
		r = n->status_modules ? dec_items(&d, status, "status", "modules",
						  &n->n_status_modules, dec_nmc_module, &ctx)
				      : dec_oom(&d);
	}
	if (r < 0)
		return r;
	*ret = TAKE_PTR(n);
	return 0;
}

static json_t *enc_nmc_modules(const struct kmm_nmc_module *ms, size_t n, bool status)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++) {
		const struct kmm_nmc_module *m = &ms[i];
		json_t *o = enc_begin(m->unknown);

		if (!o || enc_str_always(o, "name", m->name) < 0 ||
		    enc_str_always(o, "namespace", m->namespace) < 0 ||
		    enc_str(o, "serviceAccountName", m->service_account_name) < 0 ||
		    enc_local_ref(o, "imageRepoSecret", m->image_repo_secret) < 0 ||
		    (m->n_tolerations &&
		     enc_new(o, "tolerations",
			     kmm_tolerations_to_json(m->tolerations, m->n_tolerations)) < 0) ||
		    enc_str(o, "version", m->version) < 0 ||
		    (m->config && enc_new(o, "config", kmm_module_config_to_json(m->config)) < 0) ||
		    (status && enc_str(o, "bootId", m->boot_id) < 0) ||
		    (status && enc_str(o, "lastTransitionTime", m->last_transition_time) < 0) ||
		    json_array_append_new(a, o) < 0) {
			json_decref(o);
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

json_t *kmm_nmc_to_json(const struct kmm_nmc *n)
{
	json_t *o = enc_begin(n->unknown), *spec = enc_begin(n->spec_unknown),
	       *status = enc_begin(n->status_unknown);

	if (!o || !spec || !status ||
	    enc_new(spec, "modules", enc_nmc_modules(n->spec_modules, n->n_spec_modules, false)) <
		0 ||
	    (n->n_status_modules &&
	     enc_new(status, "modules",
		     enc_nmc_modules(n->status_modules, n->n_status_modules, true)) < 0) ||
	    enc_str(o, "apiVersion", KMM_API_VERSION) < 0 ||
	    enc_str(o, "kind", "NodeModulesConfig") < 0 ||
	    enc_new(o, "metadata", enc_meta(n->metadata, n->name, NULL)) < 0 ||
	    enc_new(o, "spec", TAKE_PTR(spec)) < 0 || enc_new(o, "status", TAKE_PTR(status)) < 0) {
		json_decref(spec);
		json_decref(status);
		json_decref(o);
		return NULL;
	}
	return o;
}

/* ------------------------------------------------------------------------- */
/* ModuleImagesConfig / ModuleBuildSignConfig                                 */

static void image_spec_done(struct kmm_module_image_spec *s)
{
	free(s->image);
	free(s->kernel_version);
	kmm_build_free(s->build);
	kmm_sign_free(s->sign);
	if (s->registry_tls) {
		tls_done(s->registry_tls);
		free(s->registry_tls);
	}
	free(s->dir_name);
	free(s->action);
	json_decref(s->unknown);
}

struct img_ctx {
	struct kmm_image_config *c;
	bool mbsc;
};

static int dec_image_spec(struct dec *d, const json_t *e, const char *p, size_t i, void *ctx)
{
	static const char *const mic_known[] = {
		"image",       "kernelVersion", "build", "sign", "skipWaitMissingImage",
		"registryTLS", "dirName",	NULL
	};
	static const char *const mbsc_known[] = {
		"image",       "kernelVersion", "build",  "sign", "skipWaitMissingImage",
		"registryTLS", "dirName",	"action", NULL
	};
	struct img_ctx *c = ctx;
	struct kmm_module_image_spec *s = &c->c->images[i];
	struct kmm_tls_options tls = { 0 };
	bool has_tls = false;
	int r = 0;

	STEP(dec_unknown(d, e, p, c->mbsc ? mbsc_known : mic_known, &s->unknown));
	STEP(dec_string_req(d, e, p, "image", &s->image));
	STEP(dec_string_req(d, e, p, "kernelVersion", &s->kernel_version));
	STEP(dec_build(d, e, p, "build", &s->build));
	STEP(dec_sign(d, e, p, "sign", &s->sign));
	STEP(dec_bool(d, e, p, "skipWaitMissingImage", &s->skip_wait_missing_image));
	STEP(dec_tls(d, e, p, "registryTLS", &tls, &has_tls));
	if (r >= 0 && has_tls) {
		s->registry_tls = malloc(sizeof(tls));
		if (!s->registry_tls) {
			tls_done(&tls);
			return dec_oom(d);
		}
		*s->registry_tls = tls;
	}
	STEP(dec_string(d, e, p, "dirName", &s->dir_name));
	if (r >= 0 && !s->dir_name && !(s->dir_name = strdup(KMM_DEFAULT_DIR_NAME)))
		r = dec_oom(d);
	if (r >= 0 && c->mbsc) {
		r = dec_string_req(d, e, p, "action", &s->action);
		if (r >= 0 && strcmp(s->action, "BuildImage") != 0 &&
		    strcmp(s->action, "SignImage") != 0)
			r = dec_fail(d, p, "action",
				     "unsupported value \"%s\": must be BuildImage or SignImage",
				     s->action);
	}
	return r;
}

static int dec_image_state(struct dec *d, const json_t *e, const char *p, size_t i, void *ctx)
{
	static const char *const mic_known[] = { "image", "status", NULL };
	static const char *const mbsc_known[] = { "image", "action", "status", NULL };
	struct img_ctx *c = ctx;
	struct kmm_image_state *s = &c->c->states[i];
	int r = 0;

	STEP(dec_unknown(d, e, p, c->mbsc ? mbsc_known : mic_known, &s->unknown));
	STEP(dec_string_req(d, e, p, "image", &s->image));
	STEP(dec_string(d, e, p, "status", &s->status));
	if (c->mbsc)
		STEP(dec_string(d, e, p, "action", &s->action));
	return r;
}

void kmm_image_config_free(struct kmm_image_config *c)
{
	if (!c)
		return;
	free(c->kind);
	free(c->name);
	free(c->namespace);
	json_decref(c->metadata);
	for (size_t i = 0; i < c->n_images; i++)
		image_spec_done(&c->images[i]);
	free(c->images);
	free(c->image_repo_secret);
	free(c->image_pull_policy);
	for (size_t i = 0; i < c->n_tolerations; i++)
		kmm_toleration_done(&c->tolerations[i]);
	free(c->tolerations);
	for (size_t i = 0; i < c->n_states; i++) {
		free(c->states[i].image);
		free(c->states[i].status);
		free(c->states[i].action);
		json_decref(c->states[i].unknown);
	}
	free(c->states);
	json_decref(c->spec_unknown);
	json_decref(c->status_unknown);
	json_decref(c->unknown);
	free(c);
}

int kmm_image_config_from_json(const json_t *j, unsigned flags, struct kmm_image_config **ret,
			       struct kmm_error **err)
{
	static const char *const versions[] = { KMM_API_VERSION, NULL };
	static const char *const known[] = { "apiVersion", "kind",   "metadata",
					     "spec",	   "status", NULL };
	static const char *const mic_spec[] = { "images",
						"imageRepoSecret",
						"imagePullPolicy",
						"pushBuiltImage",
						"imageRebuildTriggerGeneration",
						"tolerations",
						NULL };
	static const char *const mbsc_spec[] = { "images", "imageRepoSecret", "pushBuiltImage",
						 "tolerations", NULL };
	static const char *const mic_status[] = { "imagesStates", "imageRebuildTriggerGeneration",
						  NULL };
	static const char *const mbsc_status[] = { "images", NULL };
	_cleanup_(kmm_image_config_freep) struct kmm_image_config *c = NULL;
	struct dec d = { .flags = flags, .err = err };
	const char *kind = json_string_value(json_object_get(j, "kind"));
	const json_t *spec = NULL, *status = NULL;
	struct img_ctx ctx;
	bool mbsc;
	int r;

	mbsc = kind && strcmp(kind, "ModuleBuildSignConfig") == 0;
	r = dec_type_meta(&d, j, mbsc ? "ModuleBuildSignConfig" : "ModuleImagesConfig", versions);
	if (r < 0)
		return r;
	c = calloc(1, sizeof(*c));
	if (!c || !(c->kind = strdup(mbsc ? "ModuleBuildSignConfig" : "ModuleImagesConfig")))
		return dec_oom(&d);
	ctx = (struct img_ctx){ c, mbsc };
	STEP(dec_unknown(&d, j, "", known, &c->unknown));
	STEP(dec_metadata(&d, j, true, &c->name, &c->namespace, NULL, &c->metadata));
	STEP(
	    dec_section(&d, j, "spec", true, mbsc ? mbsc_spec : mic_spec, &c->spec_unknown, &spec));
	if (r >= 0) {
		c->images = alloc_items(spec, "images", sizeof(*c->images));
		r = c->images
			? dec_items(&d, spec, "spec", "images", &c->n_images, dec_image_spec, &ctx)
			: dec_oom(&d);
	}
	STEP(dec_local_ref(&d, spec, "spec", "imageRepoSecret", &c->image_repo_secret));
	STEP(dec_bool(&d, spec, "spec", "pushBuiltImage", &c->push_built_image));
	STEP(dec_tolerations(&d, spec, "spec", "tolerations", &c->tolerations, &c->n_tolerations));
	if (!mbsc) {
		STEP(dec_string(&d, spec, "spec", "imagePullPolicy", &c->image_pull_policy));
		if (r >= 0 && str_empty(c->image_pull_policy)) {
			free(c->image_pull_policy);
			if (!(c->image_pull_policy = strdup(KMM_DEFAULT_PULL_POLICY)))
				r = dec_oom(&d);
		}
		STEP(dec_int(&d, spec, "spec", "imageRebuildTriggerGeneration", INT64_MIN,
			     INT64_MAX, &c->has_image_rebuild_trigger_generation,
			     &c->image_rebuild_trigger_generation));
	}
	STEP(dec_section(&d, j, "status", false, mbsc ? mbsc_status : mic_status,
			 &c->status_unknown, &status));
	if (r >= 0 && status) {
		const char *key = mbsc ? "images" : "imagesStates";

		c->states = alloc_items(status, key, sizeof(*c->states));
		r = c->states
			? dec_items(&d, status, "status", key, &c->n_states, dec_image_state, &ctx)
			: dec_oom(&d);
		if (!mbsc)
			STEP(dec_int(&d, status, "status", "imageRebuildTriggerGeneration",
				     INT64_MIN, INT64_MAX, &c->has_status_trigger_generation,
				     &c->status_trigger_generation));
	}
	if (r < 0)
		return r;
	*ret = TAKE_PTR(c);
	return 0;
}

json_t *kmm_image_config_to_json(const struct kmm_image_config *c)
{
	bool mbsc = strcmp(c->kind, "ModuleBuildSignConfig") == 0;
	json_t *o = enc_begin(c->unknown), *spec = enc_begin(c->spec_unknown),
	       *status = enc_begin(c->status_unknown), *images = json_array(),
	       *states = json_array();

	if (!o || !spec || !status || !images || !states)
		goto fail;
	for (size_t i = 0; i < c->n_images; i++) {
		const struct kmm_module_image_spec *s = &c->images[i];
		json_t *e = enc_begin(s->unknown);

		if (!e || enc_str_always(e, "image", s->image) < 0 ||
		    enc_str_always(e, "kernelVersion", s->kernel_version) < 0 ||
		    (s->build && enc_new(e, "build", kmm_build_to_json(s->build)) < 0) ||
		    (s->sign && enc_new(e, "sign", kmm_sign_to_json(s->sign)) < 0) ||
		    (s->skip_wait_missing_image &&
		     enc_new(e, "skipWaitMissingImage", json_true()) < 0) ||
		    (s->registry_tls && enc_new(e, "registryTLS", enc_tls(s->registry_tls)) < 0) ||
		    enc_str(e, "dirName", s->dir_name) < 0 ||
		    (mbsc && enc_str_always(e, "action", s->action) < 0) ||
		    json_array_append_new(images, e) < 0) {
			json_decref(e);
			goto fail;
		}
	}
	for (size_t i = 0; i < c->n_states; i++) {
		const struct kmm_image_state *s = &c->states[i];
		json_t *e = enc_begin(s->unknown);

		if (!e || enc_str_always(e, "image", s->image) < 0 ||
		    (mbsc && enc_str(e, "action", s->action) < 0) ||
		    enc_str(e, "status", s->status) < 0 || json_array_append_new(states, e) < 0) {
			json_decref(e);
			goto fail;
		}
	}
	if (enc_new(spec, "images", TAKE_PTR(images)) < 0 ||
	    enc_local_ref(spec, "imageRepoSecret", c->image_repo_secret) < 0 ||
	    (!mbsc && enc_str(spec, "imagePullPolicy", c->image_pull_policy) < 0) ||
	    (c->push_built_image && enc_new(spec, "pushBuiltImage", json_true()) < 0) ||
	    (!mbsc && c->has_image_rebuild_trigger_generation &&
	     enc_new(spec, "imageRebuildTriggerGeneration",
		     json_integer(c->image_rebuild_trigger_generation)) < 0) ||
	    (c->n_tolerations &&
	     enc_new(spec, "tolerations",
		     kmm_tolerations_to_json(c->tolerations, c->n_tolerations)) < 0) ||
	    (c->n_states &&
	     enc_new(status, mbsc ? "images" : "imagesStates", TAKE_PTR(states)) < 0) ||
	    (!mbsc && c->has_status_trigger_generation &&
	     enc_new(status, "imageRebuildTriggerGeneration",
		     json_integer(c->status_trigger_generation)) < 0) ||
	    enc_str(o, "apiVersion", KMM_API_VERSION) < 0 || enc_str(o, "kind", c->kind) < 0 ||
	    enc_new(o, "metadata", enc_meta(c->metadata, c->name, c->namespace)) < 0 ||
	    enc_new(o, "spec", TAKE_PTR(spec)) < 0 || enc_new(o, "status", TAKE_PTR(status)) < 0)
		goto fail;
	json_decref(states);
	return o;
fail:
	json_decref(images);
	json_decref(states);
	json_decref(spec);
	json_decref(status);
	json_decref(o);
	return NULL;
}

/* ------------------------------------------------------------------------- */
/* PreflightValidation                                                       */

static void pfv_status_done(struct kmm_pfv_module_status *s)
{
	free(s->name);
	free(s->namespace);
	free(s->verification_status);
	free(s->verification_stage);
	free(s->status_reason);
	free(s->last_transition_time);
	json_decref(s->unknown);
}

void kmm_pfv_free(struct kmm_pfv *p)
{
	if (!p)
		return;
	free(p->name);
	json_decref(p->metadata);
	free(p->kernel_version);
	for (size_t i = 0; i < p->n_modules; i++)
		pfv_status_done(&p->modules[i]);
	free(p->modules);
	json_decref(p->spec_unknown);
	json_decref(p->status_unknown);
	json_decref(p->unknown);
	free(p);
}

static int dec_pfv_fields(struct dec *d, const json_t *e, const char *p,
			  struct kmm_pfv_module_status *s, bool v1beta2)
{
	static const char *const v2_known[] = { "name",
						"namespace",
						"verificationStatus",
						"verificationStage",
						"statusReason",
						"lastTransitionTime",
						NULL };
	static const char *const v1_known[] = { "verificationStatus", "verificationStage",
						"statusReason", "lastTransitionTime", NULL };
	int r = 0;

	STEP(dec_unknown(d, e, p, v1beta2 ? v2_known : v1_known, &s->unknown));
	if (v1beta2) {
		STEP(dec_string_req(d, e, p, "name", &s->name));
		STEP(dec_string_req(d, e, p, "namespace", &s->namespace));
	}
	STEP(dec_string(d, e, p, "verificationStatus", &s->verification_status));
	STEP(dec_string(d, e, p, "verificationStage", &s->verification_stage));
	STEP(dec_string(d, e, p, "statusReason", &s->status_reason));
	STEP(dec_string(d, e, p, "lastTransitionTime", &s->last_transition_time));
	return r;
}

static int dec_pfv_v2_item(struct dec *d, const json_t *e, const char *p, size_t i, void *ctx)
{
	struct kmm_pfv *pfv = ctx;

	return dec_pfv_fields(d, e, p, &pfv->modules[i], true);
}

/* v1beta1 status.crStatuses: {"<ns>/<name>": {...}} (plus compatibility "<name>" keys). */
static int dec_pfv_v1_statuses(struct dec *d, const json_t *status, struct kmm_pfv *p)
{
	const json_t *m = json_object_get(status, "crStatuses");
	const char *key;
	json_t *e;
	size_t n = 0;

	if (!m || json_is_null(m))
		return 0;
	if (!json_is_object(m))
		return dec_fail(d, "status", "crStatuses", "expected an object");
	p->modules = calloc(json_object_size(m) + 1, sizeof(*p->modules));
	if (!p->modules)
		return dec_oom(d);
	json_object_foreach ((json_t *)m, key, e) {
		_cleanup_free_ char *path = NULL;
		const char *slash = strchr(key, '/');
		struct kmm_pfv_module_status *s = &p->modules[n];
		int r;

		if (!slash) {
			/* The plain "<name>" key duplicates a "<ns>/<name>" one when both exist. */
			bool dup = false;
			const char *k2;
			json_t *e2;

			json_object_foreach ((json_t *)m, k2, e2) {
				const char *s2 = strchr(k2, '/');

				if (s2 && strcmp(s2 + 1, key) == 0)
					dup = true;
			}
			if (dup)
				continue;
		}
		if (asprintf(&path, "status.crStatuses[%s]", key) < 0)
			return dec_oom(d);
		if (!json_is_object(e))
			return dec_fail(d, path, NULL, "expected an object");
		p->n_modules = n + 1;
		r = dec_pfv_fields(d, e, path, s, false);
		if (r < 0)
			return r;
		s->namespace = slash ? strndup(key, (size_t)(slash - key)) : strdup("");
		s->name = strdup(slash ? slash + 1 : key);
		if (!s->namespace || !s->name)
			return dec_oom(d);
		n++;
	}
	return 0;
}

int kmm_pfv_from_json(const json_t *j, unsigned flags, struct kmm_pfv **ret, struct kmm_error **err)
{
	static const char *const versions[] = { KMM_API_VERSION, KMM_API_VERSION_V1BETA2, NULL };
	static const char *const known[] = { "apiVersion", "kind",   "metadata",
					     "spec",	   "status", NULL };
	static const char *const spec_known[] = { "kernelVersion", "pushBuiltImage", NULL };
	static const char *const v2_status[] = { "modules", NULL };
	static const char *const v1_status[] = { "crStatuses", NULL };
	_cleanup_(kmm_pfv_freep) struct kmm_pfv *p = NULL;
	struct dec d = { .flags = flags, .err = err };
	const char *av = json_string_value(json_object_get(j, "apiVersion"));
	bool v1beta2 = !av || strcmp(av, KMM_API_VERSION_V1BETA2) == 0;
	const json_t *spec = NULL, *status = NULL;
	int r;

	r = dec_type_meta(&d, j, "PreflightValidation", versions);
	if (r < 0)
		return r;
	p = calloc(1, sizeof(*p));
	if (!p)
		return dec_oom(&d);
	STEP(dec_unknown(&d, j, "", known, &p->unknown));
	STEP(dec_metadata(&d, j, false, &p->name, NULL, NULL, &p->metadata));
	STEP(dec_section(&d, j, "spec", true, spec_known, &p->spec_unknown, &spec));
	STEP(dec_string_req(&d, spec, "spec", "kernelVersion", &p->kernel_version));
	STEP(dec_bool(&d, spec, "spec", "pushBuiltImage", &p->push_built_image));
	STEP(dec_section(&d, j, "status", false, v1beta2 ? v2_status : v1_status,
			 &p->status_unknown, &status));
	if (r >= 0 && status) {
		if (v1beta2) {
			p->modules = alloc_items(status, "modules", sizeof(*p->modules));
			r = p->modules ? dec_items(&d, status, "status", "modules", &p->n_modules,
						   dec_pfv_v2_item, p)
				       : dec_oom(&d);
		} else {
			r = dec_pfv_v1_statuses(&d, status, p);
		}
	}
	if (r < 0)
		return r;
	*ret = TAKE_PTR(p);
	return 0;
}

static json_t *enc_pfv_fields(const struct kmm_pfv_module_status *s, bool v1beta2)
{
	json_t *o = enc_begin(s->unknown);

	if (!o ||
	    (v1beta2 && (enc_str_always(o, "name", s->name) < 0 ||
			 enc_str_always(o, "namespace", s->namespace) < 0)) ||
	    enc_str(o, "verificationStatus", s->verification_status) < 0 ||
	    enc_str(o, "verificationStage", s->verification_stage) < 0 ||
	    enc_str(o, "statusReason", s->status_reason) < 0 ||
	    enc_str(o, "lastTransitionTime", s->last_transition_time) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *kmm_pfv_to_json(const struct kmm_pfv *p, const char *api_version)
{
	bool v1beta2 = !api_version || strcmp(api_version, KMM_API_VERSION_V1BETA2) == 0;
	json_t *o = enc_begin(p->unknown), *spec = enc_begin(p->spec_unknown),
	       *status = enc_begin(p->status_unknown), *mods = NULL;

	if (!o || !spec || !status)
		goto fail;
	mods = v1beta2 ? json_array() : json_object();
	if (!mods)
		goto fail;
	for (size_t i = 0; i < p->n_modules; i++) {
		const struct kmm_pfv_module_status *s = &p->modules[i];

		if (v1beta2) {
			if (json_array_append_new(mods, enc_pfv_fields(s, true)) < 0)
				goto fail;
		} else {
			_cleanup_free_ char *key = NULL;

			if (asprintf(&key, "%s/%s", s->namespace ? s->namespace : "",
				     s->name ? s->name : "") < 0 ||
			    json_object_set_new(mods, key, enc_pfv_fields(s, false)) < 0 ||
			    /* Compatibility key with the bare name, as upstream's conversion. */
			    json_object_set_new(mods, s->name ? s->name : "",
						enc_pfv_fields(s, false)) < 0)
				goto fail;
		}
	}
	if (enc_str_always(spec, "kernelVersion", p->kernel_version) < 0 ||
	    (p->push_built_image && enc_new(spec, "pushBuiltImage", json_true()) < 0) ||
	    (p->n_modules &&
	     enc_new(status, v1beta2 ? "modules" : "crStatuses", TAKE_PTR(mods)) < 0) ||
	    enc_str(o, "apiVersion", v1beta2 ? KMM_API_VERSION_V1BETA2 : KMM_API_VERSION) < 0 ||
	    enc_str(o, "kind", "PreflightValidation") < 0 ||
	    enc_new(o, "metadata", enc_meta(p->metadata, p->name, NULL)) < 0 ||
	    enc_new(o, "spec", TAKE_PTR(spec)) < 0 || enc_new(o, "status", TAKE_PTR(status)) < 0)
		goto fail;
	json_decref(mods);
	return o;
fail:
	json_decref(mods);
	json_decref(spec);
	json_decref(status);
	json_decref(o);
	return NULL;
}

int kmm_pfv_validate(const struct kmm_pfv *p, struct kmm_error **err)
{
	size_t fields = 1;

	if (str_empty(p->kernel_version))
		return kmm_error_make(
		    err, EINVAL,
		    "spec.kernelVersion: Required value: kernelVersion cannot be empty");
	/* Go's regexp Split on [.,-] keeps empty fields: count separators. */
	for (const char *c = p->kernel_version; *c; c++)
		if (*c == '.' || *c == ',' || *c == '-')
			fields++;
	if (fields < 3)
		return kmm_error_make(err, EINVAL,
				      "spec.kernelVersion: Invalid value: \"%s\": must have at "
				      "least 3 fields separated by . , or - (e.g. 6.1.0-18-amd64)",
				      p->kernel_version);
	return 0;
}
