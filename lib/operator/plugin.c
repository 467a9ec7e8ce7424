/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The reconcile of a Module's driver DaemonSets, shared by the device plugin
 * and DRA reconcilers (plugin.h; reference §3.6, §3.7). Keyed by Module
 * ns/name. Reads top to bottom:
 *
 *   the Module has spec.<key> (and is not being deleted)
 *              -> the DaemonSet of the Module's version exists, in the shape
 *                 of plugin-ds.c: created when absent, patched when the
 *                 spec kmm wrote (its hash annotation) differs; DaemonSets of
 *                 other versions are deleted once they schedule no pod;
 *   otherwise  -> every DaemonSet of the Module is deleted at once, so the
 *                 driver releases the device before the unloader runs;
 *   then, for every node:
 *     .<role>-target  (kinds with target_label) on the nodes of the
 *                 Module's selector that are schedulable for its
 *                 tolerations: a cordon or a drain takes the label off, the
 *                 DaemonSet's node selector no longer matches, and the pod
 *                 leaves the node (DaemonSet pods tolerate the unschedulable
 *                 taint on their own);
 *     .<role>-ready   where a pod of the Module's kind is Ready and not
 *                 terminating;
 *   then the kind's own step (DRA: DeviceClasses);
 *   and status.<key>: nodes matching = desired = schedulable nodes of the
 *   selector, available = the DaemonSets' numberAvailable summed (old and
 *   new versions while a new version rolls out). The Module reconciler
 *   writes the rest of the status, each with a merge patch of its own keys.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-json.h"
#include "engine-internal.h"
#include "plugin.h"

/* Daemonset and pod progress is batched into one reconcile per Module per this many ms. */
#define PLUGIN_STATUS_BATCH_MS 1000

void kmm_op_keep_first(struct kmm_error **first, struct kmm_error *e)
{
	if (!*first)
		*first = e;
	else
		kmm_error_free(e);
}

int kmm_op_first_error(struct kmm_error *first, struct kmm_error **err)
{
	if (!first)
		return 0;
	*err = first;
	return -kmm_error_code(first);
}

/* The Module's namespace of an object: its own, or its module.namespace label (cluster-scoped). */
static const char *owner_namespace(const struct kmm_obj *obj)
{
	return kmm_obj_str(obj, "metadata.namespace")
		   ?: kmm_obj_label(obj, KMM_LABEL_MODULE_NAMESPACE);
}

int kmm_op_plugin_list_owned(struct kmm_op_engine *op, enum kmm_op_cache_id id, const char *ns,
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
		const char *ons = owner_namespace(objs[i]);
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

/* Replaces the template of DaemonSet current with want's and records want's hash. */
static int patch_ds(struct kmm_op_engine *op, const struct kmm_op_plugin_kind *k,
		    const struct kmm_obj *current, const json_t *want, const char *hash,
		    struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_kube_daemonsets, NULL, NULL, NULL };
	_cleanup_json_ json_t *patch = NULL;
	char ann_path[256], ns[256];
	const char *key = kmm_obj_key(current), *slash = strchr(key, '/');

	/* The annotation's JSON pointer: '/' in its name is written "~1". */
	snprintf(ann_path, sizeof(ann_path), "/metadata/annotations/%.*s~1%s-hash",
		 (int)strlen(KMM_NODE_LABEL_PREFIX) - 1, KMM_NODE_LABEL_PREFIX, k->role);
	snprintf(ns, sizeof(ns), "%.*s", slash ? (int)(slash - key) : 0, key);
	t.namespace = ns;
	t.name = slash ? slash + 1 : key;
	/* The whole template is kmm's: replace it; the selector never changes for a version. */
	patch = json_pack("[{s:s, s:s, s:O}, {s:s, s:s, s:s}]", "op", "replace", "path",
			  "/spec/template", "value",
			  json_object_get(json_object_get(want, "spec"), "template"), "op", "add",
			  "path", ann_path, "value", hash);
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (kmm_op_patch(&op->api, &t, KMM_KUBE_PATCH_JSON, patch, NULL, err) < 0)
		return kmm_error_wrap(err, "patch daemonset %s", t.name);
	return 0;
}

/* Creates or patches the DaemonSet of the Module's version; deletes old ones with no pod. */
static int sync_daemonsets(struct kmm_op_engine *op, struct kmm_op_plugin_state *s,
			   const struct kmm_module *m, struct kmm_obj **dss, size_t n,
			   struct kmm_error **err)
{
	const struct kmm_op_plugin_kind *k = s->kind;
	_cleanup_free_ char *vl = kmm_op_dp_version_label(m->namespace, m->name);
	_cleanup_free_ char *ann = kmm_op_plugin_hash_annotation(k);
	_cleanup_json_ json_t *want = NULL;
	const char *version = kmm_op_dp_version(m), *hash;
	struct kmm_kube_target t = { &kmm_kube_daemonsets, m->namespace, NULL, NULL };
	const struct kmm_obj *current = NULL;
	struct kmm_error *first = NULL;
	char created_key[768];
	int r;

	if (!vl || !ann)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = kmm_op_plugin_daemonset(k, m, &want, err);
	if (r < 0)
		return r;
	hash = kmm_op_annotation(want, ann);
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
			kmm_op_keep_first(&first, e);
	}
	if (!current) {
		if (kmm_op_keyset_contains(s->created, created_key))
			goto out; /* created; the cache shows it soon */
		r = kmm_op_create(&op->api, &t, want, NULL, err);
		if (r < 0) {
			kmm_error_free(first);
			return kmm_error_wrap(err, "create daemonset");
		}
		kmm_op_keyset_add(s->created, created_key);
		goto out;
	}
	kmm_op_keyset_remove(s->created, created_key);
	if (strcmp(kmm_obj_annotation(current, ann) ?: "", hash) != 0 &&
	    (r = patch_ds(op, k, current, want, hash, err)) < 0) {
		kmm_error_free(first);
		return r;
	}
out:
	return kmm_op_first_error(first, err);
}

static int delete_all(struct kmm_op_engine *op, struct kmm_obj **dss, size_t n,
		      struct kmm_error **err)
{
	struct kmm_error *first = NULL;

	for (size_t i = 0; i < n; i++) {
		struct kmm_error *e = NULL;

		if (!kmm_obj_str(dss[i], "metadata.deletionTimestamp") &&
		    delete_ds(op, dss[i], &e) < 0)
			kmm_op_keep_first(&first, e);
	}
	return kmm_op_first_error(first, err);
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

/* The node names where a pod of the kind of Module ns/name is Ready, as a JSON object's keys. */
static json_t *ready_nodes(struct kmm_op_engine *op, const struct kmm_op_plugin_kind *k,
			   const char *ns, const char *name)
{
	json_t *ready = json_object();
	struct kmm_obj **pods = NULL;
	size_t n_pods = 0;

	if (!ready || kmm_op_plugin_list_owned(op, k->pods, ns, name, &pods, &n_pods) < 0) {
		json_decref(ready);
		return NULL;
	}
	for (size_t i = 0; i < n_pods; i++) {
		const char *node = kmm_obj_str(pods[i], "spec.nodeName");

		if (node && pod_ready(pods[i]))
			json_object_set_new(ready, node, json_true());
	}
	kmm_obj_array_free(pods, n_pods);
	return ready;
}

/*
 * Target (kinds with one) and ready labels of every node for Module ns/name
 * (m NULL: none targeted); the number of targeted nodes in *ret_targeted.
 */
static int sync_node_labels(struct kmm_op_engine *op, const struct kmm_op_plugin_kind *k,
			    const char *ns, const char *name, const struct kmm_module *m,
			    int *ret_targeted, struct kmm_error **err)
{
	_cleanup_free_ char *tl = kmm_op_plugin_node_label(k, ns, name, "target");
	_cleanup_free_ char *rl = kmm_op_plugin_node_label(k, ns, name, "ready");
	_cleanup_json_ json_t *tols = NULL, *ready = ready_nodes(op, k, ns, name);
	struct kmm_obj **nodes = NULL;
	size_t n_nodes = 0;
	struct kmm_error *first = NULL;
	int targeted = 0;

	if (!tl || !rl || !ready)
		return kmm_error_make(err, ENOMEM, "out of memory");
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
		if (k->target_label && want_target != (kmm_obj_label(nodes[i], tl) != NULL))
			json_object_set_new(changes, tl,
					    want_target ? json_string("") : json_null());
		if (want_ready != (kmm_obj_label(nodes[i], rl) != NULL))
			json_object_set_new(changes, rl,
					    want_ready ? json_string("") : json_null());
		if (json_object_size(changes) && set_labels(op, node, changes, &e) < 0)
			kmm_op_keep_first(&first, e);
	}
	kmm_obj_array_free(nodes, n_nodes);
	*ret_targeted = targeted;
	return kmm_op_first_error(first, err);
}

/* ---- status ---- */

/* status.<key> as counted, or null to clear it; written only when it moved. */
static int patch_status(struct kmm_op_engine *op, const struct kmm_op_plugin_kind *k,
			const struct kmm_module *m, bool active, int targeted, struct kmm_obj **dss,
			size_t n, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_op_modules, m->namespace, m->name, "status" };
	const struct kmm_daemonset_status *s = k->status(m);
	_cleanup_json_ json_t *patch = NULL;
	int64_t available = 0;

	for (size_t i = 0; i < n; i++)
		available += ds_int(dss[i], "status.numberAvailable");
	if (!active) {
		if (!s->nodes_matching_selector_number && !s->desired_number &&
		    !s->available_number)
			return 0;
		patch = json_pack("{s:{s:n}}", "status", k->key);
	} else {
		if (s->nodes_matching_selector_number == targeted &&
		    s->desired_number == targeted && s->available_number == available)
			return 0;
		patch = json_pack("{s:{s:{s:i, s:i, s:I}}}", "status", k->key,
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

int64_t kmm_op_plugin_reconcile(struct kmm_op_engine *op, void *state, const char *key,
				struct kmm_error **err)
{
	struct kmm_op_plugin_state *s = state;
	const struct kmm_op_plugin_kind *k = s->kind;
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
	active = m && k->spec(m) && !json_object_get(m->metadata, "deletionTimestamp");
	if (kmm_op_plugin_list_owned(op, k->daemonsets, ns, slash + 1, &dss, &n_dss) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = active && m ? sync_daemonsets(op, s, m, dss, n_dss, &e)
			: delete_all(op, dss, n_dss, &e);
	if (r < 0)
		kmm_op_keep_first(&first, TAKE_PTR(e));
	if (sync_node_labels(op, k, ns, slash + 1, active ? m : NULL, &targeted, &e) < 0)
		kmm_op_keep_first(&first, TAKE_PTR(e));
	if (k->sync_more && k->sync_more(op, ns, slash + 1, active ? m : NULL, &e) < 0)
		kmm_op_keep_first(&first, TAKE_PTR(e));
	/* A Module being deleted keeps its last counts: nothing runs any more to count. */
	if (!first && m && !json_object_get(m->metadata, "deletionTimestamp") &&
	    patch_status(op, k, m, active, targeted, dss, n_dss, &e) < 0)
		kmm_op_keep_first(&first, TAKE_PTR(e));
	kmm_obj_array_free(dss, n_dss);
	if (first) {
		*err = first;
		return kmm_error_wrap(err, "reconcile %s", key);
	}
	return 0;
}

/* ---- watches: what queues a Module ---- */

static struct kmm_op_ctl *ctl_of(struct kmm_op_engine *op, void *state)
{
	const struct kmm_op_plugin_state *s = state;

	return op->ctl[s->kind->reconciler];
}

void kmm_op_plugin_enqueue_module(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
				  const struct kmm_obj *obj, enum kmm_op_event ev)
{
	kmm_op_ctl_enqueue(ctl_of(op, state), kmm_obj_key(obj));
}

/* The Module's spec or its deletion: not its status, which this reconciler writes. */
bool kmm_op_plugin_module_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
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

/* Labels (but kmm's own), taints, cordon: where a Module's driver may run. */
bool kmm_op_plugin_node_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
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

/* Every Module with spec.<key>. */
void kmm_op_plugin_enqueue_modules(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
				   const struct kmm_obj *obj, enum kmm_op_event ev)
{
	const struct kmm_op_plugin_state *s = state;
	struct kmm_obj **mods = NULL;
	size_t n = 0;
	char path[64];

	snprintf(path, sizeof(path), "spec.%s", s->kind->key);
	if (kmm_informer_list(op->cache[KMM_OP_CACHE_MODULES], &mods, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		_cleanup_json_ json_t *spec = kmm_obj_get_json(mods[i], path);

		if (spec)
			kmm_op_ctl_enqueue(ctl_of(op, state), kmm_obj_key(mods[i]));
	}
	kmm_obj_array_free(mods, n);
}

void kmm_op_plugin_enqueue_owner(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
				 const struct kmm_obj *obj, enum kmm_op_event ev)
{
	const char *ns = owner_namespace(obj);
	const char *mod = kmm_obj_label(obj, KMM_LABEL_MODULE_NAME);
	char key[512];

	if (!ns || !mod)
		return;
	snprintf(key, sizeof(key), "%s/%s", ns, mod);
	kmm_op_ctl_enqueue_coalesced(ctl_of(op, state), key, PLUGIN_STATUS_BATCH_MS);
}

/* ---- state ---- */

void kmm_op_plugin_state_free(void *state)
{
	struct kmm_op_plugin_state *s = state;

	if (!s)
		return;
	kmm_op_keyset_free(s->created);
	free(s);
}

int kmm_op_plugin_state_new(const struct kmm_op_plugin_kind *k, size_t size, void **ret_state,
			    struct kmm_error **err)
{
	struct kmm_op_plugin_state *s = calloc(1, size);

	if (!s || !(s->created = kmm_op_keyset_new())) {
		kmm_op_plugin_state_free(s);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	s->kind = k;
	*ret_state = s;
	return 0;
}
