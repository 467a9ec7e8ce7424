/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PreflightValidation reconciler (reference §1.5, §3.11): before a kernel
 * upgrade, tells for every Module whether it is ready for the target kernel
 * (spec.kernelVersion). Reads top to bottom, per Module not being deleted:
 *
 *   1. resolve its kernel mapping for the target kernel: none -> Failure
 *      ("mapping not found"); a Module without moduleLoader -> Success
 *      (nothing to load);
 *   2. the image goes into a ModuleImagesConfig of its own,
 *      "<module>-preflight-<pfv>" in the Module's namespace, controlled by
 *      the PreflightValidation (pushBuiltImage from the PFV): mic.c checks
 *      the registry, and builds and signs through the MBSC when the mapping
 *      asks;
 *   3. that MIC's state of the image: Exists -> Success; DoesNotExist ->
 *      Failure, with why (the build or sign failed; or the registry's answer
 *      when the mapping has neither: mic.c says DoesNotExist then, so unlike
 *      upstream such an image never stays InProgress); NeedsBuilding,
 *      NeedsSigning or not known yet -> InProgress, stage Image;
 *   4. the status: one entry per Module (verificationStatus, verificationStage
 *      Image or Done, statusReason, lastTransitionTime kept while the status
 *      holds); entries of Modules gone are dropped and their MICs deleted.
 *
 * The status patch names the resourceVersion read: a stale cache gets 409 and
 * the retry reads a newer one. Several PFVs (kernels) verify at the same
 * time, each with its MICs (upstream shares "<module>-preflight" between
 * them). Nothing here waits: MIC status changes, Module edits and PFV edits bring the
 * key back. kmm_preflight_num is the number of PFVs the cache holds.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmm/shared-json.h"
#include "engine-internal.h"

const struct kmm_kube_resource kmm_op_pfvs = { KMM_API_GROUP, "v1beta2", "preflightvalidations",
					       false };

#define PREFLIGHT_INFIX "-preflight-"
#define NAME_MAX_LEN 253 /* a DNS subdomain */
#define PFV_KIND "PreflightValidation"

#define VERIFY_SUCCESS "Success"
#define VERIFY_FAILURE "Failure"
#define VERIFY_IN_PROGRESS "InProgress"

struct pfv_state {
	struct kmm_metric *g_preflights;
};

/* One Module's verdict. */
struct verdict {
	const char *status; /* VERIFY_* */
	char reason[1024];
};

static bool is(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/*
 * "<module>-preflight-<pfv>": one MIC per Module and PFV, so that PFVs of
 * several kernels verify at the same time (upstream's "<module>-preflight"
 * is shared, and a second PFV fails on its controller reference). False
 * when the name is too long for an object name.
 */
static bool mic_name(char *buf, size_t size, const char *module, const char *pfv)
{
	int n = snprintf(buf, size, "%s%s%s", module, PREFLIGHT_INFIX, pfv);

	return n > 0 && n <= NAME_MAX_LEN && (size_t)n < size;
}

/* The name of the PreflightValidation controlling a MIC, or NULL. */
static const char *pfv_controller(const json_t *mic_json, const char **ret_uid)
{
	const json_t *refs =
	    json_object_get(json_object_get(mic_json, "metadata"), "ownerReferences");
	const json_t *ref;
	size_t i;

	json_array_foreach (refs, i, ref) {
		if (json_is_true(json_object_get(ref, "controller")) &&
		    is(str(ref, "kind"), PFV_KIND)) {
			if (ret_uid)
				*ret_uid = str(ref, "uid");
			return str(ref, "name");
		}
	}
	return NULL;
}

/* ---- 2. the preflight MIC ---- */

static json_t *image_entry(const struct kmm_module *m, const struct kmm_resolved_mapping *res)
{
	const char *dir = m->spec.module_loader->container.modprobe.dir_name;
	json_t *tls = json_object(), *e;

	if (tls && res->registry_tls.insecure)
		json_object_set_new(tls, "insecure", json_true());
	if (tls && res->registry_tls.insecure_skip_tls_verify)
		json_object_set_new(tls, "insecureSkipTLSVerify", json_true());
	e = json_pack("{s:s, s:s, s:o, s:s}", "image", res->container_image, "kernelVersion",
		      res->kernel, "registryTLS", tls, "dirName",
		      dir && *dir ? dir : KMM_DEFAULT_DIR_NAME);
	if (e && res->build)
		json_object_set_new(e, "build", kmm_build_to_json(res->build));
	if (e && res->sign)
		json_object_set_new(e, "sign", kmm_sign_to_json(res->sign));
	return e;
}

static json_t *mic_spec(const struct kmm_pfv *pfv, const struct kmm_module *m,
			const struct kmm_resolved_mapping *res)
{
	const char *policy = m->spec.module_loader->container.image_pull_policy;
	json_t *spec = json_pack("{s:[o], s:b, s:s}", "images", image_entry(m, res),
				 "pushBuiltImage", pfv->push_built_image, "imagePullPolicy",
				 policy && *policy ? policy : KMM_DEFAULT_PULL_POLICY);

	if (spec && m->spec.image_repo_secret)
		json_object_set_new(spec, "imageRepoSecret",
				    json_pack("{s:s}", "name", m->spec.image_repo_secret));
	if (spec && m->spec.n_tolerations)
		json_object_set_new(
		    spec, "tolerations",
		    kmm_tolerations_to_json(m->spec.tolerations, m->spec.n_tolerations));
	return spec;
}

/* Creates the MIC, or patches its spec when it differs from spec. */
static int sync_mic(struct kmm_op_engine *op, const struct kmm_pfv *pfv, const char *ns,
		    const char *name, const json_t *cur, json_t *spec, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_op_mics, ns, NULL, NULL };
	_cleanup_json_ json_t *want = NULL, *have = NULL, *obj = NULL, *patch = NULL;
	int r;

	if (cur) {
		want = kmm_op_image_config_spec_normalized("ModuleImagesConfig", spec);
		have = kmm_op_image_config_spec_normalized("ModuleImagesConfig",
							   json_object_get(cur, "spec"));
		if (want && have && json_equal(want, have))
			return 0;
		/* Keys we no longer want are nulled: a merge patch keeps absent ones. */
		if (!json_object_get(spec, "imageRepoSecret"))
			json_object_set_new(spec, "imageRepoSecret", json_null());
		if (!json_object_get(spec, "tolerations"))
			json_object_set_new(spec, "tolerations", json_null());
		patch = json_pack("{s:O}", "spec", spec);
		if (!patch)
			return kmm_error_make(err, ENOMEM, "out of memory");
		t.name = name;
		r = kmm_op_patch(&op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err);
		return r < 0 ? kmm_error_wrap(err, "update MIC %s/%s", ns, name) : 0;
	}
	obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:[{s:s, s:s, s:s, s:s, s:b, s:b}]}, s:O}",
			"apiVersion", KMM_API_VERSION, "kind", "ModuleImagesConfig", "metadata",
			"name", name, "namespace", ns, "ownerReferences", "apiVersion",
			KMM_API_VERSION_V1BETA2, "kind", PFV_KIND, "name", pfv->name, "uid",
			str(pfv->metadata, "uid") ?: "", "controller", 1, "blockOwnerDeletion", 1,
			"spec", spec);
	if (!obj)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = kmm_op_create(&op->api, &t, obj, NULL, err);
	if (r == -EEXIST) { /* the cache is behind: its event brings the PFV back */
		kmm_error_free(*err);
		*err = NULL;
		return 0;
	}
	return r < 0 ? kmm_error_wrap(err, "create MIC %s/%s", ns, name) : 0;
}

/* ---- 3. the verdict ---- */

/* The MIC's state of image, or NULL when it has none (yet). */
static const char *image_state(const json_t *mic_json, const char *image)
{
	const json_t *states = json_object_get(json_object_get(mic_json, "status"), "imagesStates");
	const json_t *s;
	size_t i;

	json_array_foreach (states, i, s)
		if (is(str(s, "image"), image))
			return str(s, "status");
	return NULL;
}

static void verdict_from_mic(struct kmm_op_engine *op, const struct kmm_module *m, const char *name,
			     const json_t *mic_json, const struct kmm_resolved_mapping *res,
			     struct verdict *v)
{
	const char *img = res->container_image;
	const char *st = mic_json ? image_state(mic_json, img) : NULL;
	char why[300] = "";

	if (is(st, KMM_IMAGE_EXISTS)) {
		v->status = VERIFY_SUCCESS;
		snprintf(v->reason, sizeof(v->reason), "verified image %s exists", img);
	} else if (is(st, KMM_IMAGE_DOES_NOT_EXIST) && (res->build || res->sign)) {
		v->status = VERIFY_FAILURE;
		snprintf(v->reason, sizeof(v->reason),
			 "image %s does not exist and its %s failed (ModuleBuildSignConfig %s/%s)",
			 img, res->build ? "build" : "sign", m->namespace, name);
	} else if (is(st, KMM_IMAGE_DOES_NOT_EXIST)) {
		v->status = VERIFY_FAILURE;
		kmm_op_image_why(op, m->namespace, name, img, why, sizeof(why));
		snprintf(v->reason, sizeof(v->reason),
			 "image %s does not exist%s%s%s and the mapping for kernel %s has no build "
			 "or sign",
			 img, *why ? " (" : "", why, *why ? ")" : "", res->kernel);
	} else if (is(st, KMM_IMAGE_NEEDS_BUILDING) || is(st, KMM_IMAGE_NEEDS_SIGNING)) {
		v->status = VERIFY_IN_PROGRESS;
		snprintf(v->reason, sizeof(v->reason), "image %s is being %s", img,
			 is(st, KMM_IMAGE_NEEDS_BUILDING) ? "built" : "signed");
	} else {
		v->status = VERIFY_IN_PROGRESS;
		kmm_op_image_why(op, m->namespace, name, img, why, sizeof(why));
		snprintf(v->reason, sizeof(v->reason), "checking whether image %s exists%s%s", img,
			 *why ? ": " : "", why);
	}
}

/* Steps 1 to 3 for one Module. */
static int verify_module(struct kmm_op_engine *op, const struct kmm_pfv *pfv,
			 const struct kmm_module *m, struct verdict *v, struct kmm_error **err)
{
	_cleanup_(kmm_resolved_mapping_freep) struct kmm_resolved_mapping *res = NULL;
	_cleanup_obj_unref_ struct kmm_obj *mic = NULL;
	_cleanup_json_ json_t *spec = NULL;
	struct kmm_error *e = NULL;
	const char *owner, *owner_uid = NULL;
	char name[300], key[600];
	int r;

	if (!m->spec.module_loader) {
		v->status = VERIFY_SUCCESS;
		snprintf(v->reason, sizeof(v->reason), "no moduleLoader: nothing to load");
		return 0;
	}
	r = kmm_mapper_cache_resolve(op->mappers, m, pfv->kernel_version, &res, &e);
	if (r <= 0) {
		v->status = VERIFY_FAILURE;
		snprintf(v->reason, sizeof(v->reason), "mapping not found for kernel %s%s%s",
			 pfv->kernel_version, r < 0 ? ": " : "", r < 0 ? kmm_error_message(e) : "");
		kmm_error_free(e);
		return 0;
	}
	if (!mic_name(name, sizeof(name), m->name, pfv->name)) {
		v->status = VERIFY_FAILURE;
		snprintf(
		    v->reason, sizeof(v->reason),
		    "the preflight ModuleImagesConfig's name, <module>%s<pfv>, would be longer "
		    "than %d characters",
		    PREFLIGHT_INFIX, NAME_MAX_LEN);
		return 0;
	}
	snprintf(key, sizeof(key), "%s/%s", m->namespace, name);
	mic = kmm_informer_get(op->cache[KMM_OP_CACHE_MICS], key);
	owner = mic ? pfv_controller(kmm_obj_json(mic), &owner_uid) : NULL;
	/* A name clash (or a PFV of the same name deleted and made again, until
	 * the garbage collector is done) does not go away by waiting on it. */
	if (mic && !(is(owner, pfv->name) && is(owner_uid, str(pfv->metadata, "uid")))) {
		v->status = VERIFY_FAILURE;
		snprintf(v->reason, sizeof(v->reason),
			 "ModuleImagesConfig %s exists and is not this PreflightValidation's", key);
		return 0;
	}
	spec = mic_spec(pfv, m, res);
	if (!spec)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = sync_mic(op, pfv, m->namespace, name, mic ? kmm_obj_json(mic) : NULL, spec, err);
	if (r < 0)
		return r;
	verdict_from_mic(op, m, name, mic ? kmm_obj_json(mic) : NULL, res, v);
	return 0;
}

/* ---- 4. the status ---- */

static const json_t *old_entry(const json_t *old, const char *ns, const char *name)
{
	const json_t *e;
	size_t i;

	json_array_foreach (old, i, e)
		if (is(str(e, "namespace"), ns) && is(str(e, "name"), name))
			return e;
	return NULL;
}

static json_t *status_entry(const json_t *old, const struct kmm_module *m, const struct verdict *v)
{
	const json_t *prev = old_entry(old, m->namespace, m->name);
	bool done = !is(v->status, VERIFY_IN_PROGRESS);
	char now[32];
	struct tm tm;
	time_t t = time(NULL);

	gmtime_r(&t, &tm);
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "name", m->name, "namespace",
			 m->namespace, "verificationStatus", v->status, "verificationStage",
			 done ? "Done" : "Image", "statusReason", v->reason, "lastTransitionTime",
			 prev && is(str(prev, "verificationStatus"), v->status)
			     ? str(prev, "lastTransitionTime") ?: now
			     : now);
}

static int cmp_entry(const void *a, const void *b)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	int c = strcmp(str(x, "namespace") ?: "", str(y, "namespace") ?: "");

	return c ? c : strcmp(str(x, "name") ?: "", str(y, "name") ?: "");
}

/* A JSON array of the entries, sorted by namespace and name. */
static json_t *sorted(json_t **entries, size_t n)
{
	json_t *arr = json_array();

	qsort(entries, n, sizeof(*entries), cmp_entry);
	for (size_t i = 0; arr && i < n; i++)
		json_array_append(arr, entries[i]);
	return arr;
}

static int patch_status(struct kmm_op_engine *op, const struct kmm_obj *obj, const json_t *old,
			const json_t *modules, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_op_pfvs, NULL, kmm_obj_str(obj, "metadata.name"),
				     "status" };
	_cleanup_json_ json_t *patch = NULL;

	if (old ? kmm_json_same(old, modules) : json_array_size(modules) == 0)
		return 0;
	/* The whole list replaces the one read: the resourceVersion pins that read. */
	patch = json_pack("{s:{s:s}, s:{s:O}}", "metadata", "resourceVersion",
			  kmm_obj_resource_version(obj) ?: "", "status", "modules", modules);
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (kmm_op_patch(&op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err) < 0)
		return kmm_error_wrap(err, "patch status");
	return 0;
}

/* The preflight MICs of Modules no longer verified (gone or being deleted). */
static int forget_gone(struct kmm_op_engine *op, const struct kmm_pfv *pfv, const json_t *old,
		       const json_t *modules, struct kmm_error **err)
{
	const json_t *e;
	size_t i;

	json_array_foreach (old, i, e) {
		const char *ns = str(e, "namespace"), *mod = str(e, "name");
		_cleanup_obj_unref_ struct kmm_obj *mic = NULL;
		struct kmm_kube_target t = { &kmm_op_mics, ns, NULL, NULL };
		const char *uid = NULL;
		char name[300], key[600];

		if (!ns || !mod || old_entry(modules, ns, mod))
			continue;
		if (!mic_name(name, sizeof(name), mod, pfv->name))
			continue;
		snprintf(key, sizeof(key), "%s/%s", ns, name);
		mic = kmm_informer_get(op->cache[KMM_OP_CACHE_MICS], key);
		if (!mic || !is(pfv_controller(kmm_obj_json(mic), &uid), pfv->name) ||
		    !is(uid, str(pfv->metadata, "uid")))
			continue;
		t.name = name;
		if (kmm_op_delete(&op->api, &t, err) < 0)
			return kmm_error_wrap(err, "delete MIC %s", key);
	}
	return 0;
}

/* ---- the reconcile ---- */

struct module_list {
	struct kmm_obj **objs;
	size_t n;
	json_t **entries; /* one new reference per Module verified */
	size_t n_entries;
};

static void module_list_done(struct module_list *l)
{
	for (size_t i = 0; i < l->n_entries; i++)
		json_decref(l->entries[i]);
	free(l->entries);
	kmm_obj_array_free(l->objs, l->n);
}

static int64_t pfv_reconcile(struct kmm_op_engine *op, void *state, const char *key,
			     struct kmm_error **err)
{
	_cleanup_obj_unref_ struct kmm_obj *obj =
	    kmm_informer_get(op->cache[KMM_OP_CACHE_PFVS], key);
	_cleanup_(kmm_pfv_freep) struct kmm_pfv *pfv = NULL;
	_cleanup_(module_list_done) struct module_list l = {};
	_cleanup_json_ json_t *modules = NULL;
	const json_t *old;

	if (!obj)
		return 0; /* deleted: its MICs go with it (owner references) */
	if (kmm_pfv_from_json(kmm_obj_json(obj), 0, &pfv, err) < 0)
		return kmm_error_wrap(err, "reconcile %s", key);
	if (json_object_get(pfv->metadata, "deletionTimestamp") || !pfv->kernel_version)
		return 0;
	old = json_object_get(json_object_get(kmm_obj_json(obj), "status"), "modules");
	if (kmm_informer_list(op->cache[KMM_OP_CACHE_MODULES], &l.objs, &l.n) < 0 ||
	    !(l.entries = calloc(l.n ? l.n : 1, sizeof(*l.entries))))
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < l.n; i++) {
		_cleanup_(kmm_module_freep) struct kmm_module *m = NULL;
		struct verdict v = {};
		struct kmm_error *e = NULL;

		/* A Module the webhook would refuse cannot be verified; the others can. */
		if (kmm_module_from_json(kmm_obj_json(l.objs[i]), 0, &m, &e) < 0) {
			kmm_op_log(op, KMM_LOG_WARN, "cannot read Module", "controller",
				   "preflight", "key", kmm_obj_key(l.objs[i]), "error",
				   kmm_error_message(e), NULL);
			kmm_error_free(e);
			continue;
		}
		if (!m->namespace || json_object_get(m->metadata, "deletionTimestamp"))
			continue;
		if (verify_module(op, pfv, m, &v, err) < 0)
			return kmm_error_wrap(err, "reconcile %s: Module %s/%s", key, m->namespace,
					      m->name);
		if (!(l.entries[l.n_entries] = status_entry(old, m, &v)))
			return kmm_error_make(err, ENOMEM, "out of memory");
		l.n_entries++;
	}
	modules = sorted(l.entries, l.n_entries);
	if (!modules)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (forget_gone(op, pfv, old, modules, err) < 0 ||
	    patch_status(op, obj, old, modules, err) < 0)
		return kmm_error_wrap(err, "reconcile %s", key);
	return 0;
}

/* ---- watches: what queues a PreflightValidation ---- */

static void enqueue_all_pfvs(struct kmm_op_engine *op)
{
	struct kmm_obj **objs = NULL;
	size_t n = 0;

	if (!op->cache[KMM_OP_CACHE_PFVS] ||
	    kmm_informer_list(op->cache[KMM_OP_CACHE_PFVS], &objs, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		kmm_op_ctl_enqueue(op->ctl[KMM_OP_PREFLIGHT], kmm_obj_key(objs[i]));
	kmm_obj_array_free(objs, n);
}

/*
 * Our own status patches come back as updates: only the spec (generation)
 * and deletion matter, of a PFV as of a Module.
 */
static bool spec_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			 const struct kmm_obj *obj)
{
	static const char *const paths[] = { "metadata.generation", "metadata.deletionTimestamp" };

	for (size_t i = 0; i < KMM_ARRAY_SIZE(paths); i++) {
		_cleanup_json_ json_t *a = kmm_obj_get_json(old, paths[i]);
		_cleanup_json_ json_t *b = kmm_obj_get_json(obj, paths[i]);

		if (!kmm_json_same(a, b))
			return true;
	}
	return false;
}

static void enqueue_pfv(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			const struct kmm_obj *obj, enum kmm_op_event ev)
{
	if (ev != KMM_OP_DELETED)
		kmm_op_ctl_enqueue(op->ctl[KMM_OP_PREFLIGHT], kmm_obj_key(obj));
}

/* A Module added, edited, being deleted or gone: every PFV verifies again. */
static void enqueue_from_module(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
				const struct kmm_obj *obj, enum kmm_op_event ev)
{
	enqueue_all_pfvs(op);
}

static bool mic_status_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			       const struct kmm_obj *obj)
{
	return kmm_op_status_differs(old, obj);
}

/* A preflight MIC's state moved, or it was deleted: its PFV reads (or makes) it. */
static void enqueue_from_mic(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			     const struct kmm_obj *obj, enum kmm_op_event ev)
{
	const char *owner = pfv_controller(kmm_obj_json(obj), NULL);

	if (owner)
		kmm_op_ctl_enqueue(op->ctl[KMM_OP_PREFLIGHT], owner);
}

static const struct kmm_op_watch pfv_watches[] = {
	{ KMM_OP_CACHE_PFVS, spec_changed, enqueue_pfv },
	{ KMM_OP_CACHE_MODULES, spec_changed, enqueue_from_module },
	{ KMM_OP_CACHE_MICS, mic_status_changed, enqueue_from_mic },
};

/* ---- state ---- */

/* kmm_preflight_num: what the cache holds at each scrape. */
static void collect_preflights(struct kmm_metrics *m, void *userdata)
{
	struct kmm_op_engine *op = userdata;
	struct pfv_state *ps = op->state[KMM_OP_PREFLIGHT];
	struct kmm_informer *cache = op->cache[KMM_OP_CACHE_PFVS];

	if (ps)
		kmm_metric_set(ps->g_preflights, NULL,
			       cache ? (double)kmm_informer_size(cache) : 0);
}

static void pfv_state_free(void *state)
{
	free(state);
}

static int pfv_state_new(struct kmm_op_engine *op, void **ret_state, struct kmm_error **err)
{
	_cleanup_free_ struct pfv_state *ps = calloc(1, sizeof(*ps));
	int r;

	if (!ps)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = kmm_metrics_register(op->metrics, KMM_METRIC_GAUGE, "kmm_preflight_num",
				 "Number of existing preflight validations", NULL, NULL, 0,
				 &ps->g_preflights, err);
	if (r < 0)
		return r;
	if (kmm_metrics_add_collector(op->metrics, collect_preflights, op) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	*ret_state = TAKE_PTR(ps);
	return 0;
}

const struct kmm_op_reconciler kmm_op_preflight_reconciler = {
	.name = "preflightvalidation",
	.log_name = "preflight",
	.workers = 1, /* as upstream: a handful of PFVs at most */
	.watches = pfv_watches,
	.n_watches = KMM_ARRAY_SIZE(pfv_watches),
	.state_new = pfv_state_new,
	.state_free = pfv_state_free,
	.reconcile = pfv_reconcile,
	.modes = KMM_OP_MODE_STANDALONE, /* not on a spoke (reference §3.1) */
};
