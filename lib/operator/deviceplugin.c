/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Device plugin reconciler (reference §3.6, §3.14): runs a Module's device
 * plugin as a DaemonSet and keeps the node labels and the status that go
 * with it. Keyed by Module ns/name. Reads top to bottom:
 *
 *   the Module has a devicePlugin (and is not being deleted)
 *              -> the DaemonSet of the Module's version exists, in the shape
 *                 of deviceplugin-ds.c: created when absent, patched when the
 *                 spec kmm wrote (its hash annotation) differs; DaemonSets of
 *                 other versions are deleted once they schedule no pod;
 *   otherwise  -> every DaemonSet of the Module is deleted at once, so the
 *                 device plugin releases the device before the unloader runs;
 *   then, for every node:
 *     .device-plugin-target  on the nodes of the Module's selector that are
 *                 schedulable for its tolerations: a cordon or a drain takes
 *                 the label off, the DaemonSet's node selector no longer
 *                 matches, and the device plugin leaves the node (DaemonSet
 *                 pods tolerate the unschedulable taint on their own);
 *     .device-plugin-ready   where a device plugin pod of the Module is
 *                 Ready and not terminating;
 *   and status.devicePlugin: nodes matching = desired = targeted nodes,
 *   available = the DaemonSets' numberAvailable summed (old and new
 *   versions while a new version rolls out). The Module reconciler writes
 *   the rest of the status, each with a merge patch of its own keys.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-json.h"
#include "deviceplugin.h"
#include "engine-internal.h"

/* Daemonset and pod progress is batched into one reconcile per Module per this many ms. */
#define DP_STATUS_BATCH_MS 1000

struct dp_state {
	/* "ns/module/version" of DaemonSets created that the cache does not show yet */
	struct kmm_op_keyset *created;
};

static struct dp_state *dp_state(struct kmm_op_engine *op)
{
	return op->state[KMM_OP_DEVICE_PLUGIN];
}

static void keep_first(struct kmm_error **first, struct kmm_error *e)
{
	if (!*first)
		*first = e;
	else
		kmm_error_free(e);
}

/* The cached objects of a cache that belong to Module ns/name (by namespace and label). */
static int list_owned(struct kmm_op_engine *op, enum kmm_op_cache_id id, const char *ns,
		      const char *name, struct kmm_obj ***ret, size_t *ret_n)
{
	struct kmm_obj **objs = NULL;
	size_t n = 0, kept = 0;

	if (!op->cache[id]) {
		*ret = NULL;
		*ret_n = 0;
		return 0;
	}
	if (kmm_informer_list(op->cache[id], &objs, &n) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *ons = kmm_obj_str(objs[i], "metadata.namespace");
		const char *mod = kmm_obj_label(objs[i], KMM_LABEL_MODULE_NAME);

		if (ons && mod && strcmp(ons, ns) == 0 && strcmp(mod, name) == 0)
			objs[kept++] = objs[i];
		else
			kmm_obj_unref(objs[i]);
	}
	*ret = objs;
	*ret_n = kept;
	return 0;
}

static int delete_ds(struct kmm_op_engine *op, const struct kmm_obj *ds, struct kmm_error **err)
{
	const char *key = kmm_obj_key(ds), *slash = strchr(key, '/');
	char ns[256];
	struct kmm_kube_target t = { &kmm_kube_daemonsets, ns, slash ? slash + 1 : key, NULL };

	snprintf(ns, sizeof(ns), "%.*s", slash ? (int)(slash - key) : 0, key);
	if (kmm_op_delete(&op->api, &t, err) < 0)
		return kmm_error_wrap(err, "delete daemonset %s", key);
	return 0;
}

static int64_t ds_int(const struct kmm_obj *ds, const char *path)
{
	_cleanup_json_ json_t *v = kmm_obj_get_json(ds, path);

	return json_integer_value(v);
}

/* Creates or patches the DaemonSet of the Module's version; deletes old ones with no pod. */
static int sync_daemonsets(struct kmm_op_engine *op, const struct kmm_module *m,
			   struct kmm_obj **dss, size_t n, struct kmm_error **err)
{
	_cleanup_free_ char *vl = kmm_op_dp_version_label(m->namespace, m->name);
	_cleanup_json_ json_t *want = NULL, *patch = NULL;
	const char *version = kmm_op_dp_version(m), *hash;
	struct kmm_kube_target t = { &kmm_kube_daemonsets, m->namespace, NULL, NULL };
	const struct kmm_obj *current = NULL;
	struct kmm_error *first = NULL;
	char created_key[768];
	int r;

	if (!vl)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = kmm_op_dp_daemonset(m, &want, err);
	if (r < 0)
		return r;
	hash = kmm_op_annotation(want, KMM_ANN_DEVICE_PLUGIN_HASH);
	snprintf(created_key, sizeof(created_key), "%s/%s/%s", m->namespace, m->name, version);
	for (size_t i = 0; i < n; i++) {
		struct kmm_error *e = NULL;

		if (strcmp(kmm_obj_label(dss[i], vl) ?: "", version) == 0) {
			if (!current)
				current = dss[i];
			continue;
		}
		/* An old version: kept while its pods leave the nodes one by one. */
		if (!kmm_obj_str(dss[i], "metadata.deletionTimestamp") &&
		    ds_int(dss[i], "status.desiredNumberScheduled") == 0 &&
		    delete_ds(op, dss[i], &e) < 0)
			keep_first(&first, e);
	}
	if (!current) {
		if (kmm_op_keyset_contains(dp_state(op)->created, created_key))
			goto out; /* created; the cache shows it soon */
		r = kmm_op_create(&op->api, &t, want, NULL, err);
		if (r < 0) {
			kmm_error_free(first);
			return kmm_error_wrap(err, "create daemonset");
		}
		kmm_op_keyset_add(dp_state(op)->created, created_key);
		goto out;
	}
	kmm_op_keyset_remove(dp_state(op)->created, created_key);
	if (strcmp(kmm_obj_annotation(current, KMM_ANN_DEVICE_PLUGIN_HASH) ?: "", hash) == 0)
		goto out;
	/* The whole template is kmm's: replace it; the selector never changes for a version. */
	patch = json_pack(
	    "[{s:s, s:s, s:O}, {s:s, s:s, s:s}]", "op", "replace", "path", "/spec/template",
	    "value", json_object_get(json_object_get(want, "spec"), "template"), "op", "add",
	    "path", "/metadata/annotations/kmm.node.kubernetes.io~1device-plugin-hash", "value",
	    hash);
	t.name = strchr(kmm_obj_key(current), '/') + 1;
	if (!patch)
		r = kmm_error_make(err, ENOMEM, "out of memory");
	else if ((r = kmm_op_patch(&op->api, &t, KMM_KUBE_PATCH_JSON, patch, NULL, err)) < 0)
		r = kmm_error_wrap(err, "patch daemonset %s", t.name);
	if (r < 0) {
		kmm_error_free(first);
		return r;
	}
out:
	if (first) {
		*err = first;
		return -kmm_error_code(first);
	}
	return 0;
}

static int delete_all(struct kmm_op_engine *op, struct kmm_obj **dss, size_t n,
		      struct kmm_error **err)
{
	struct kmm_error *first = NULL;

	for (size_t i = 0; i < n; i++) {
		struct kmm_error *e = NULL;

		if (!kmm_obj_str(dss[i], "metadata.deletionTimestamp") &&
		    delete_ds(op, dss[i], &e) < 0)
			keep_first(&first, e);
	}
	if (first) {
		*err = first;
		return -kmm_error_code(first);
	}
	return 0;
}

/* ---- node labels ---- */

static bool pod_ready(const struct kmm_obj *pod)
{
	_cleanup_json_ json_t *conds = kmm_obj_get_json(pod, "status.conditions");
	size_t i;
	json_t *c;

	if (kmm_obj_str(pod, "metadata.deletionTimestamp"))
		return false;
	json_array_foreach (conds, i, c)
		if (strcmp(str(c, "type") ?: "", "Ready") == 0)
			return strcmp(str(c, "status") ?: "", "True") == 0;
	return false;
}

/* Schedulable for the Module: its taints (and a cordon) tolerated. */
static bool node_targeted(const struct kmm_module *m, const struct kmm_obj *node,
			  const json_t *tols)
{
	_cleanup_json_ json_t *taints = kmm_obj_get_json(node, "spec.taints");
	_cleanup_json_ json_t *unsched = kmm_obj_get_json(node, "spec.unschedulable");

	if (!kmm_op_selector_matches_obj(&m->spec.selector, node))
		return false;
	/* A cordon before the node controller added its taint. */
	if (json_is_true(unsched)) {
		if (!taints)
			taints = json_array();
		json_array_append_new(taints, json_pack("{s:s, s:s}", "key",
							"node.kubernetes.io/unschedulable",
							"effect", "NoSchedule"));
	}
	return kmm_op_taints_tolerated(taints, tols);
}

static int set_labels(struct kmm_op_engine *op, const char *node, json_t *changes,
		      struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_kube_nodes, NULL, node, NULL };
	_cleanup_json_ json_t *patch = json_pack("{s:{s:O}}", "metadata", "labels", changes);

	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (kmm_op_patch(&op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err) < 0)
		return kmm_error_wrap(err, "label node %s", node);
	return 0;
}

/*
 * Target and ready labels of every node for Module ns/name (m NULL: none
 * targeted); the number of targeted nodes in *ret_targeted.
 */
static int sync_node_labels(struct kmm_op_engine *op, const char *ns, const char *name,
			    const struct kmm_module *m, int *ret_targeted, struct kmm_error **err)
{
	_cleanup_free_ char *tl = kmm_op_dp_target_label(ns, name);
	_cleanup_free_ char *rl = kmm_op_dp_ready_label(ns, name);
	_cleanup_json_ json_t *tols = NULL, *ready = json_object();
	struct kmm_obj **pods = NULL, **nodes = NULL;
	size_t n_pods = 0, n_nodes = 0;
	struct kmm_error *first = NULL;
	int targeted = 0;

	if (!tl || !rl || !ready ||
	    list_owned(op, KMM_OP_CACHE_DPPODS, ns, name, &pods, &n_pods) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < n_pods; i++) {
		const char *node = kmm_obj_str(pods[i], "spec.nodeName");

		if (node && pod_ready(pods[i]))
			json_object_set_new(ready, node, json_true());
	}
	kmm_obj_array_free(pods, n_pods);
	if (m)
		tols = kmm_tolerations_to_json(m->spec.tolerations, m->spec.n_tolerations);
	kmm_informer_list(op->cache[KMM_OP_CACHE_NODES], &nodes, &n_nodes);
	for (size_t i = 0; i < n_nodes; i++) {
		const char *node = kmm_obj_key(nodes[i]);
		bool want_target = m && node_targeted(m, nodes[i], tols);
		bool want_ready = json_object_get(ready, node) != NULL;
		_cleanup_json_ json_t *changes = json_object();
		struct kmm_error *e = NULL;

		targeted += want_target;
		if (!changes)
			continue;
		if (want_target != (kmm_obj_label(nodes[i], tl) != NULL))
			json_object_set_new(changes, tl,
					    want_target ? json_string("") : json_null());
		if (want_ready != (kmm_obj_label(nodes[i], rl) != NULL))
			json_object_set_new(changes, rl,
					    want_ready ? json_string("") : json_null());
		if (json_object_size(changes) && set_labels(op, node, changes, &e) < 0)
			keep_first(&first, e);
	}
	kmm_obj_array_free(nodes, n_nodes);
	*ret_targeted = targeted;
	if (first) {
		*err = first;
		return -kmm_error_code(first);
	}
	return 0;
}

/* ---- status ---- */

/* status.devicePlugin as counted, or null to clear it; written only when it moved. */
static int patch_status(struct kmm_op_engine *op, const struct kmm_module *m, bool active,
			int targeted, struct kmm_obj **dss, size_t n, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_op_modules, m->namespace, m->name, "status" };
	const struct kmm_daemonset_status *s = &m->status.device_plugin;
	_cleanup_json_ json_t *patch = NULL;
	int64_t available = 0;

	for (size_t i = 0; i < n; i++)
		available += ds_int(dss[i], "status.numberAvailable");
	if (!active) {
		if (!s->nodes_matching_selector_number && !s->desired_number &&
		    !s->available_number)
			return 0;
		patch = json_pack("{s:{s:n}}", "status", "devicePlugin");
	} else {
		if (s->nodes_matching_selector_number == targeted &&
		    s->desired_number == targeted && s->available_number == available)
			return 0;
		patch = json_pack("{s:{s:{s:i, s:i, s:I}}}", "status", "devicePlugin",
				  "nodesMatchingSelectorNumber", targeted, "desiredNumber",
				  targeted, "availableNumber", (json_int_t)available);
	}
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (kmm_op_patch(&op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err) < 0)
		return kmm_error_wrap(err, "patch status");
	return 0;
}

/* ---- the reconcile ---- */

static int64_t dp_reconcile(struct kmm_op_engine *op, void *state, const char *key,
			    struct kmm_error **err)
{
	_cleanup_obj_unref_ struct kmm_obj *obj =
	    kmm_informer_get(op->cache[KMM_OP_CACHE_MODULES], key);
	_cleanup_(kmm_module_freep) struct kmm_module *m = NULL;
	const char *slash = strchr(key, '/');
	char ns[256];
	struct kmm_obj **dss = NULL;
	size_t n_dss = 0;
	struct kmm_error *first = NULL, *e = NULL;
	bool active;
	int targeted = 0, r;

	if (!slash)
		return kmm_error_make(err, EINVAL, "reconcile %s: not ns/name", key);
	snprintf(ns, sizeof(ns), "%.*s", (int)(slash - key), key);
	if (obj && kmm_module_from_json(kmm_obj_json(obj), 0, &m, err) < 0)
		return kmm_error_wrap(err, "reconcile %s", key);
	if (m && !m->namespace)
		return kmm_error_make(err, EINVAL, "reconcile %s: no namespace", key);
	active = m && m->spec.device_plugin && !json_object_get(m->metadata, "deletionTimestamp");
	if (list_owned(op, KMM_OP_CACHE_DAEMONSETS, ns, slash + 1, &dss, &n_dss) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = active && m ? sync_daemonsets(op, m, dss, n_dss, &e) : delete_all(op, dss, n_dss, &e);
	if (r < 0)
		keep_first(&first, TAKE_PTR(e));
	if (sync_node_labels(op, ns, slash + 1, active ? m : NULL, &targeted, &e) < 0)
		keep_first(&first, TAKE_PTR(e));
	/* A Module being deleted keeps its last counts: nothing runs any more to count. */
	if (!first && m && !json_object_get(m->metadata, "deletionTimestamp") &&
	    patch_status(op, m, active, targeted, dss, n_dss, &e) < 0)
		keep_first(&first, TAKE_PTR(e));
	kmm_obj_array_free(dss, n_dss);
	if (first) {
		*err = first;
		return kmm_error_wrap(err, "reconcile %s", key);
	}
	return 0;
}

/* ---- watches: what queues a Module ---- */

static void enqueue_module(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			   const struct kmm_obj *obj, enum kmm_op_event ev)
{
	kmm_op_ctl_enqueue(op->ctl[KMM_OP_DEVICE_PLUGIN], kmm_obj_key(obj));
}

/* The Module's spec or its deletion: not its status, which this reconciler writes. */
static bool module_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			   const struct kmm_obj *obj)
{
	static const char *const paths[] = { "metadata.generation", "metadata.deletionTimestamp",
					     "metadata.uid" };

	return kmm_op_obj_paths_differ(old, obj, paths, KMM_ARRAY_SIZE(paths));
}

/* Labels kmm writes on nodes about one Module (".ready", "-ready", "-target"): not targeting. */
static bool own_node_label(const char *k)
{
	size_t n = strlen(k);

	if (strncmp(k, KMM_NODE_LABEL_PREFIX, strlen(KMM_NODE_LABEL_PREFIX)) != 0)
		return false;
	return (n > 6 && (strcmp(k + n - 6, ".ready") == 0 || strcmp(k + n - 6, "-ready") == 0)) ||
	       (n > 7 && strcmp(k + n - 7, "-target") == 0);
}

static bool labels_differ(const json_t *a, const json_t *b)
{
	const char *k;
	json_t *v;

	for (int pass = 0; pass < 2; pass++)
		json_object_foreach ((json_t *)(pass ? b : a), k, v)
			if (!own_node_label(k) &&
			    !kmm_json_same(v, json_object_get(pass ? a : b, k)))
				return true;
	return false;
}

/* Labels (but kmm's own), taints, cordon: where a Module's device plugin may run. */
static bool node_targeting_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
				   const struct kmm_obj *obj)
{
	static const char *const paths[] = { "spec.taints", "spec.unschedulable" };
	_cleanup_json_ json_t *la = kmm_obj_get_json(old, "metadata.labels");
	_cleanup_json_ json_t *lb = kmm_obj_get_json(obj, "metadata.labels");

	for (size_t i = 0; i < KMM_ARRAY_SIZE(paths); i++) {
		_cleanup_json_ json_t *a = kmm_obj_get_json(old, paths[i]);
		_cleanup_json_ json_t *b = kmm_obj_get_json(obj, paths[i]);

		if (!kmm_json_same(a, b))
			return true;
	}
	return labels_differ(la, lb);
}

/* Every Module with a device plugin, and those whose labels a deleted node carried. */
static void enqueue_dp_modules(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			       const struct kmm_obj *obj, enum kmm_op_event ev)
{
	struct kmm_obj **mods = NULL;
	size_t n = 0;

	if (kmm_informer_list(op->cache[KMM_OP_CACHE_MODULES], &mods, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		_cleanup_json_ json_t *dp = kmm_obj_get_json(mods[i], "spec.devicePlugin");

		if (dp)
			kmm_op_ctl_enqueue(op->ctl[KMM_OP_DEVICE_PLUGIN], kmm_obj_key(mods[i]));
	}
	kmm_obj_array_free(mods, n);
}

/* A DaemonSet or a pod of a Module's device plugin: its Module, progress batched. */
static void enqueue_owner(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			  const struct kmm_obj *obj, enum kmm_op_event ev)
{
	const char *ns = kmm_obj_str(obj, "metadata.namespace");
	const char *mod = kmm_obj_label(obj, KMM_LABEL_MODULE_NAME);
	char key[512];

	if (!ns || !mod)
		return;
	snprintf(key, sizeof(key), "%s/%s", ns, mod);
	kmm_op_ctl_enqueue_coalesced(op->ctl[KMM_OP_DEVICE_PLUGIN], key, DP_STATUS_BATCH_MS);
}

static const struct kmm_op_watch dp_watches[] = {
	{ KMM_OP_CACHE_MODULES, module_changed, enqueue_module },
	{ KMM_OP_CACHE_NODES, node_targeting_changed, enqueue_dp_modules },
	{ KMM_OP_CACHE_DAEMONSETS, NULL, enqueue_owner },
	{ KMM_OP_CACHE_DPPODS, NULL, enqueue_owner },
};

/* ---- state ---- */

static void dp_state_free(void *state)
{
	struct dp_state *s = state;

	if (!s)
		return;
	kmm_op_keyset_free(s->created);
	free(s);
}

static int dp_state_new(struct kmm_op_engine *op, void **ret_state, struct kmm_error **err)
{
	struct dp_state *s = calloc(1, sizeof(*s));

	if (!s || !(s->created = kmm_op_keyset_new())) {
		dp_state_free(s);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	*ret_state = s;
	return 0;
}

const struct kmm_op_reconciler kmm_op_device_plugin_reconciler = {
	.name = "deviceplugin",
	.log_name = "deviceplugin",
	.watches = dp_watches,
	.n_watches = KMM_ARRAY_SIZE(dp_watches),
	.state_new = dp_state_new,
	.state_free = dp_state_free,
	.reconcile = dp_reconcile,
};
