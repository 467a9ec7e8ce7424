/* SPDX-License-Identifier: Apache-2.0 */
/*
 * DRA reconciler (reference §3.7, §3.14): runs a Module's DRA driver as a
 * DaemonSet and keeps its DeviceClasses, its node labels and its status,
 * through plugin.c's reconcile with DRA's kind (dra-ds.c). Keyed by Module
 * ns/name:
 *
 *   the DaemonSet of the Module's version, old versions collected once they
 *   schedule no pod, all deleted at once when the dra goes or the Module is
 *   being deleted;
 *   .dra-ready on the nodes where its pod is Ready;
 *   the DeviceClasses of spec.dra.deviceClasses, labelled with the Module's
 *   name and namespace: created, patched back when their selectors, config
 *   or labels drift, the Module's others deleted, all deleted with the
 *   Module. A DeviceClass of that name that is not the Module's is left
 *   alone: the reconcile fails saying whose it is;
 *   status.dra: nodes matching = desired = schedulable nodes of the
 *   selector, available = the DaemonSets' numberAvailable summed.
 *
 * The version gate: DRA (resource.k8s.io/v1) is served from Kubernetes 1.34
 * on. The API server's version is asked once, when the engine is created;
 * on an older one the DRA caches are never created (their kinds are not
 * served), kmm-operator says so once at start, and each Module with a dra
 * gets a Warning Event and a log line saying why nothing runs for it, once
 * per generation. The webhook refuses such Modules in the first place
 * (kmm_module_validate), when it is deployed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-json.h"
#include "dra.h"
#include "engine-internal.h"

struct dra_state {
	struct kmm_op_plugin_state plugin; /* first: plugin.c's reconcile and watches read it */
	int k8s_minor;			   /* the API server's 1.<minor> */
	/* names of DeviceClasses created that the cache does not show yet */
	struct kmm_op_keyset *classes_created;
	/* "ns/name/uid/generation" of Modules told that DRA is not served */
	struct kmm_op_keyset *told;
};

static struct dra_state *dra_state(const struct kmm_op_engine *op)
{
	return op->state[KMM_OP_DRA];
}

bool kmm_op_dra_served(const struct kmm_op_engine *op)
{
	const struct dra_state *s = dra_state(op);

	return s && s->k8s_minor >= KMM_DRA_MIN_MINOR;
}

/* ---- DeviceClasses ---- */

/* Does a cached DeviceClass differ from what kmm writes (spec, or whose it is)? */
static bool class_differs(const struct kmm_obj *have, const json_t *want)
{
	static const char *const paths[] = { "spec.selectors", "spec.config" };
	const json_t *labels = json_object_get(json_object_get(want, "metadata"), "labels");
	const json_t *spec = json_object_get(want, "spec");

	for (size_t i = 0; i < KMM_ARRAY_SIZE(paths); i++) {
		_cleanup_json_ json_t *v = kmm_obj_get_json(have, paths[i]);

		if (!kmm_json_same(v, json_object_get(spec, paths[i] + strlen("spec."))))
			return true;
	}
	return strcmp(kmm_obj_label(have, KMM_LABEL_MODULE_NAMESPACE) ?: "",
		      str(labels, KMM_LABEL_MODULE_NAMESPACE)) != 0;
}

/* Creates DeviceClass want, or patches the cached one back to it. */
static int put_class(struct kmm_op_engine *op, const struct kmm_module *m, const json_t *want,
		     struct kmm_error **err)
{
	struct dra_state *s = dra_state(op);
	const char *name = str(json_object_get(want, "metadata"), "name");
	struct kmm_kube_target t = { &kmm_op_deviceclasses, NULL, name, NULL };
	_cleanup_obj_unref_ struct kmm_obj *have =
	    kmm_informer_get(op->cache[KMM_OP_CACHE_DEVICECLASSES], name);
	_cleanup_json_ json_t *patch = NULL;
	const json_t *spec = json_object_get(want, "spec");
	const char *owner;

	if (!have) {
		if (kmm_op_keyset_contains(s->classes_created, name))
			return 0; /* created; the cache shows it soon */
		t.name = NULL;
		if (kmm_op_create(&op->api, &t, want, NULL, err) < 0)
			return kmm_error_wrap(err, "create deviceclass %s", name);
		kmm_op_keyset_add(s->classes_created, name);
		return 0;
	}
	kmm_op_keyset_remove(s->classes_created, name);
	owner = kmm_obj_label(have, KMM_LABEL_MODULE_NAME);
	if (strcmp(owner ?: "", m->name) != 0 ||
	    strcmp(kmm_obj_label(have, KMM_LABEL_MODULE_NAMESPACE) ?: "", m->namespace) != 0)
		return kmm_error_make(
		    err, EEXIST, "deviceclass %s belongs to Module %s/%s, not to this one", name,
		    kmm_obj_label(have, KMM_LABEL_MODULE_NAMESPACE) ?: "?", owner ?: "?");
	if (!class_differs(have, want))
		return 0;
	/* Both lists are kmm's: null removes one the Module no longer gives. */
	patch = json_pack("{s:{s:O}, s:{s:O?, s:O?}}", "metadata", "labels",
			  json_object_get(json_object_get(want, "metadata"), "labels"), "spec",
			  "selectors", json_object_get(spec, "selectors"), "config",
			  json_object_get(spec, "config"));
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (kmm_op_patch(&op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err) < 0)
		return kmm_error_wrap(err, "patch deviceclass %s", name);
	return 0;
}

static bool class_wanted(const struct kmm_module *m, const char *name)
{
	for (size_t i = 0; m && i < m->spec.dra->n_device_classes; i++)
		if (strcmp(m->spec.dra->device_classes[i].name, name) == 0)
			return true;
	return false;
}

int kmm_op_dra_sync_device_classes(struct kmm_op_engine *op, const char *ns, const char *name,
				   const struct kmm_module *m, struct kmm_error **err)
{
	struct kmm_obj **have = NULL;
	size_t n_have = 0;
	struct kmm_error *first = NULL;

	for (size_t i = 0; m && i < m->spec.dra->n_device_classes; i++) {
		_cleanup_json_ json_t *want = kmm_op_dra_device_class(m, i);
		struct kmm_error *e = NULL;

		if (!want) {
			kmm_error_free(first);
			return kmm_error_make(err, ENOMEM, "out of memory");
		}
		if (put_class(op, m, want, &e) < 0)
			kmm_op_keep_first(&first, e);
	}
	if (kmm_op_plugin_list_owned(op, KMM_OP_CACHE_DEVICECLASSES, ns, name, &have, &n_have) <
	    0) {
		kmm_error_free(first);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n_have; i++) {
		const char *cname = kmm_obj_key(have[i]);
		struct kmm_kube_target t = { &kmm_op_deviceclasses, NULL, cname, NULL };
		struct kmm_error *e = NULL;

		if (class_wanted(m, cname) || kmm_obj_str(have[i], "metadata.deletionTimestamp"))
			continue;
		if (kmm_op_delete(&op->api, &t, &e) < 0) {
			kmm_error_wrap(&e, "delete deviceclass %s", cname);
			kmm_op_keep_first(&first, e);
		}
	}
	kmm_obj_array_free(have, n_have);
	return kmm_op_first_error(first, err);
}

/* ---- the version gate ---- */

/* Tells, once per generation, why a Module's dra is not acted on. */
static int64_t tell_not_served(struct kmm_op_engine *op, struct dra_state *s, const char *key,
			       struct kmm_error **err)
{
	_cleanup_obj_unref_ struct kmm_obj *mod =
	    kmm_informer_get(op->cache[KMM_OP_CACHE_MODULES], key);
	_cleanup_json_ json_t *dra = mod ? kmm_obj_get_json(mod, "spec.dra") : NULL;
	_cleanup_json_ json_t *gen = mod ? kmm_obj_get_json(mod, "metadata.generation") : NULL;
	const char *uid = mod ? kmm_obj_str(mod, "metadata.uid") : NULL;
	char told[768], why[256];
	struct kmm_error *e = NULL;

	if (!dra || kmm_obj_str(mod, "metadata.deletionTimestamp"))
		return 0;
	snprintf(told, sizeof(told), "%s/%s/%lld", key, uid ?: "",
		 (long long)json_integer_value(gen));
	if (kmm_op_keyset_contains(s->told, told))
		return 0;
	snprintf(why, sizeof(why),
		 "spec.dra is ignored: DRA (resource.k8s.io/v1) needs Kubernetes 1.%d or newer, "
		 "the API server is 1.%d",
		 KMM_DRA_MIN_MINOR, s->k8s_minor);
	kmm_op_log(op, KMM_LOG_WARN, why, "controller", "dra", "key", key, NULL);
	if (kmm_op_ns_event(op, KMM_API_VERSION, "Module", kmm_obj_str(mod, "metadata.namespace"),
			    kmm_obj_str(mod, "metadata.name"), uid ?: "", "Warning",
			    "DRANotSupported", why, NULL, &e) < 0) {
		*err = e;
		return kmm_error_wrap(err, "reconcile %s: record event", key);
	}
	kmm_op_keyset_add(s->told, told);
	return 0;
}

static int64_t dra_reconcile(struct kmm_op_engine *op, void *state, const char *key,
			     struct kmm_error **err)
{
	struct dra_state *s = state;

	if (s->k8s_minor < KMM_DRA_MIN_MINOR)
		return tell_not_served(op, s, key, err);
	return kmm_op_plugin_reconcile(op, state, key, err);
}

/* The API server's 1.<minor> from GET /version. */
static int ask_minor(struct kmm_op_engine *op, int *ret_minor, struct kmm_error **err)
{
	struct kmm_kube_request req = { .method = "GET", .path = "/version" };
	_cleanup_json_ json_t *v = NULL;
	int minor;

	if (kmm_kube_request_json(op->kube, &req, &v, err) < 0)
		return kmm_error_wrap(err, "ask the API server its version (for DRA)");
	/* "34", or "34+" on some distributions */
	minor = kmm_kube_version_minor(str(v, "minor") ?: "");
	if (strcmp(str(v, "major") ?: "", "1") != 0 || minor < 0)
		return kmm_error_make(err, EPROTO,
				      "ask the API server its version (for DRA): not 1.N: "
				      "major \"%s\", minor \"%s\"",
				      str(v, "major") ?: "", str(v, "minor") ?: "");
	*ret_minor = minor;
	return 0;
}

/* ---- watches: what queues a Module ---- */

static const struct kmm_op_watch dra_watches[] = {
	{ KMM_OP_CACHE_MODULES, kmm_op_plugin_module_changed, kmm_op_plugin_enqueue_module },
	{ KMM_OP_CACHE_NODES, kmm_op_plugin_node_changed, kmm_op_plugin_enqueue_modules },
	{ KMM_OP_CACHE_DRA_DAEMONSETS, NULL, kmm_op_plugin_enqueue_owner },
	{ KMM_OP_CACHE_DRAPODS, NULL, kmm_op_plugin_enqueue_owner },
	{ KMM_OP_CACHE_DEVICECLASSES, NULL, kmm_op_plugin_enqueue_owner },
};

/* ---- state ---- */

static void dra_state_free(void *state)
{
	struct dra_state *s = state;

	if (!s)
		return;
	kmm_op_keyset_free(s->classes_created);
	kmm_op_keyset_free(s->told);
	kmm_op_plugin_state_free(s);
}

static int dra_state_new(struct kmm_op_engine *op, void **ret_state, struct kmm_error **err)
{
	struct dra_state *s;
	void *state = NULL;
	char minor[16];
	int r;

	r = kmm_op_plugin_state_new(&kmm_op_dra_kind, sizeof(*s), &state, err);
	if (r < 0)
		return r;
	s = state;
	if (!(s->classes_created = kmm_op_keyset_new()) || !(s->told = kmm_op_keyset_new())) {
		dra_state_free(s);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	r = ask_minor(op, &s->k8s_minor, err);
	if (r < 0) {
		dra_state_free(s);
		return r;
	}
	snprintf(minor, sizeof(minor), "1.%d", s->k8s_minor);
	if (s->k8s_minor >= KMM_DRA_MIN_MINOR)
		kmm_op_log(op, KMM_LOG_INFO, "DRA on", "kubernetes", minor, NULL);
	else
		kmm_op_log(op, KMM_LOG_WARN,
			   "DRA off: DRA (resource.k8s.io/v1) needs Kubernetes 1.34 or newer; "
			   "Modules' spec.dra is ignored",
			   "kubernetes", minor, NULL);
	*ret_state = s;
	return 0;
}

const struct kmm_op_reconciler kmm_op_dra_reconciler = {
	.name = "dra",
	.log_name = "dra",
	.watches = dra_watches,
	.n_watches = KMM_ARRAY_SIZE(dra_watches),
	.state_new = dra_state_new,
	.state_free = dra_state_free,
	.reconcile = dra_reconcile,
};
