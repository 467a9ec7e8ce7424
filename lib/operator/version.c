/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ordered upgrade reconciler (reference §3.10): moves each node from one
 * version of a Module to the next when the user says so, in the order
 *
 *   device plugin out -> unload the old version -> load the new one -> device plugin in.
 *
 * Keyed by node name. Three node labels per Module ns/name:
 *
 *   M  kmm.node.kubernetes.io/version-module.<ns>.<name>          the user's: the version wanted
 *   W  beta.kmm.node.kubernetes.io/version-worker-pod.<ns>.<name>  the version the Module
 *      reconciler puts in this node's NMC (absent: none, so the old version is unloaded)
 *   S  beta.kmm.node.kubernetes.io/version-schedule-pod.<ns>.<name>  the version whose device
 *      plugin DaemonSet selects this node
 *
 * Each reconcile looks up (M, W, S) of every Module named on the node in
 * version_table[] and takes one step per Module; the label it writes comes
 * back as a node event and the next step follows. Two steps wait:
 *
 *   delete W  while a device plugin or DRA driver pod of the Module is
 *             still on the node (the pod's DELETED event brings the node back);
 *   add W     while the node still has the Module's .ready label or its NMC
 *             still reports the module loaded: the old version's unloader has
 *             not finished (the NMC status change brings the node back).
 *             Upstream waits for the .ready label only; kmm takes that label
 *             off as soon as the entry leaves the NMC's spec, before the
 *             unloader ran, so the NMC status is what says "unloaded".
 *
 * Writes are JSON patches of the node's labels whose "test" operations pin
 * the labels read, so a user changing M meanwhile makes the patch fail and
 * the reconcile retry on the newer labels.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-json.h"
#include "kmm/shared-strv.h"
#include "engine-internal.h"

#define VERSION_MODULE_LABEL_PREFIX "kmm.node.kubernetes.io/version-module."
/* The device plugin DaemonSets of a version select it (KMM_VERSION_SCHEDULE_LABEL_PREFIX there). */
#define VERSION_SCHEDULE_LABEL_PREFIX "beta.kmm.node.kubernetes.io/version-schedule-pod."

/* A step that waits looks again after this long, even if no event brought it back. */
#define VERSION_WAIT_MS 5000

/* W or S against M: absent, M's value, or another (any value when M is absent). */
enum vlabel {
	V_ABSENT,
	V_SAME,
	V_OTHER,
};

enum vaction {
	VA_NONE,
	VA_ADD_WORKER,
	VA_ADD_SCHEDULE,
	VA_DELETE_WORKER,
	VA_DELETE_SCHEDULE,
};

static const struct version_row {
	bool module; /* M present */
	enum vlabel worker, schedule;
	enum vaction action;
} version_table[] = {
	/* upstream's table (module_version_label_action_table.go) */
	{ false, V_ABSENT, V_ABSENT, VA_NONE },
	{ false, V_OTHER, V_OTHER, VA_DELETE_SCHEDULE },
	{ false, V_OTHER, V_ABSENT, VA_DELETE_WORKER },
	{ true, V_ABSENT, V_ABSENT, VA_ADD_WORKER },
	{ true, V_SAME, V_ABSENT, VA_ADD_SCHEDULE },
	{ true, V_SAME, V_SAME, VA_NONE },
	{ true, V_OTHER, V_OTHER, VA_DELETE_SCHEDULE },
	{ true, V_OTHER, V_ABSENT, VA_DELETE_WORKER },
	/*
	 * Beyond upstream, which does nothing in these: an S label that does
	 * not go with W and M (set by hand, or left from an interrupted
	 * upgrade) would run a device plugin over a module of another version,
	 * or none. It goes first; the rows above then apply.
	 */
	{ false, V_ABSENT, V_OTHER, VA_DELETE_SCHEDULE },
	{ true, V_ABSENT, V_SAME, VA_DELETE_SCHEDULE },
	{ true, V_ABSENT, V_OTHER, VA_DELETE_SCHEDULE },
	{ true, V_SAME, V_OTHER, VA_DELETE_SCHEDULE },
	{ true, V_OTHER, V_SAME, VA_DELETE_SCHEDULE },
};

static enum vaction version_action(const char *m, const char *w, const char *s)
{
	enum vlabel wl = !w ? V_ABSENT : m && strcmp(w, m) == 0 ? V_SAME : V_OTHER;
	enum vlabel sl = !s ? V_ABSENT : m && strcmp(s, m) == 0 ? V_SAME : V_OTHER;

	for (size_t i = 0; i < KMM_ARRAY_SIZE(version_table); i++) {
		const struct version_row *r = &version_table[i];

		if (r->module == (m != NULL) && r->worker == wl && r->schedule == sl)
			return r->action;
	}
	return VA_NONE; /* not reached: the table covers every combination */
}

static const char *const version_prefixes[] = {
	VERSION_MODULE_LABEL_PREFIX,
	KMM_VERSION_WORKER_LABEL_PREFIX,
	VERSION_SCHEDULE_LABEL_PREFIX,
};

/* "<ns>.<name>" after one of the three prefixes, or NULL. */
static const char *version_label_module(const char *key)
{
	for (size_t i = 0; i < KMM_ARRAY_SIZE(version_prefixes); i++) {
		size_t n = strlen(version_prefixes[i]);

		if (strncmp(key, version_prefixes[i], n) == 0 && strchr(key + n, '.'))
			return key + n;
	}
	return NULL;
}

static bool has_version_labels(const json_t *labels)
{
	const char *k;
	json_t *v;

	json_object_foreach ((json_t *)labels, k, v)
		if (version_label_module(k))
			return true;
	return false;
}

/* JSON-pointer path of a label. */
static char *label_path(const char *key)
{
	_cleanup_free_ char *esc = kmm_json_pointer_escape(key);
	char *out;

	if (!esc || asprintf(&out, "/metadata/labels/%s", esc) < 0)
		return NULL;
	return out;
}

static int add_op(json_t *ops, const char *op, const char *key, const char *value)
{
	_cleanup_free_ char *path = label_path(key);
	json_t *o = path ? json_pack("{s:s, s:s}", "op", op, "path", path) : NULL;

	if (!o || (value && json_object_set_new(o, "value", json_string(value)) < 0) ||
	    json_array_append_new(ops, o) < 0)
		return -ENOMEM;
	return 0;
}

/* The caches of the pods that use a Module's devices: device plugin and DRA driver pods. */
static const enum kmm_op_cache_id plugin_pod_caches[] = {
	KMM_OP_CACHE_DPPODS,
	KMM_OP_CACHE_DRAPODS,
};

bool kmm_op_plugin_pod_on(struct kmm_op_engine *op, const char *node, const char *ns,
			  const char *name)
{
	bool found = false;

	for (size_t c = 0; c < KMM_ARRAY_SIZE(plugin_pod_caches) && !found; c++) {
		struct kmm_informer *inf = op->cache[plugin_pod_caches[c]];
		struct kmm_obj **pods = NULL;
		size_t n = 0;

		if (!inf) /* DRA's, on an API server without DRA */
			continue;
		if (kmm_informer_list(inf, &pods, &n) < 0)
			return true; /* out of memory: rather wait than unload under a plugin */
		for (size_t i = 0; i < n && !found; i++)
			found =
			    strcmp(kmm_obj_str(pods[i], "spec.nodeName") ?: "", node) == 0 &&
			    strcmp(kmm_obj_str(pods[i], "metadata.namespace") ?: "", ns) == 0 &&
			    strcmp(kmm_obj_label(pods[i], KMM_LABEL_MODULE_NAME) ?: "", name) == 0;
		kmm_obj_array_free(pods, n);
	}
	return found;
}

/* Does the node's NMC still report module ns/name loaded (its unloader not done)? */
static bool nmc_reports_loaded(struct kmm_op_engine *op, const char *node, const char *ns,
			       const char *name)
{
	_cleanup_json_ json_t *nmc =
	    kmm_op_overlay_get(op->overlay[KMM_OP_CACHE_NMCS], op->cache[KMM_OP_CACHE_NMCS], node);
	const json_t *e;
	size_t i;

	json_array_foreach (json_object_get(json_object_get(nmc, "status"), "modules"), i, e)
		if (strcmp(str(e, "namespace") ?: "", ns) == 0 &&
		    strcmp(str(e, "name") ?: "", name) == 0)
			return true;
	return false;
}

static const char *const action_names[] = {
	[VA_NONE] = "none",
	[VA_ADD_WORKER] = "add version-worker-pod label",
	[VA_ADD_SCHEDULE] = "add version-schedule-pod label",
	[VA_DELETE_WORKER] = "delete version-worker-pod label",
	[VA_DELETE_SCHEDULE] = "delete version-schedule-pod label",
};

/*
 * One Module's step on the node: appends its operations to ops. Returns 1
 * when the step has to wait, 0 otherwise, -ENOMEM.
 */
static int module_step(struct kmm_op_engine *op, const char *node, const json_t *labels,
		       const char *ns, const char *name, json_t *ops)
{
	_cleanup_free_ char *ml = NULL, *wl = NULL, *sl = NULL, *rl = kmm_op_ready_label(ns, name);
	const char *m, *w, *s;
	enum vaction a;

	if (asprintf(&ml, VERSION_MODULE_LABEL_PREFIX "%s.%s", ns, name) < 0)
		ml = NULL;
	if (asprintf(&wl, KMM_VERSION_WORKER_LABEL_PREFIX "%s.%s", ns, name) < 0)
		wl = NULL;
	if (asprintf(&sl, VERSION_SCHEDULE_LABEL_PREFIX "%s.%s", ns, name) < 0)
		sl = NULL;
	if (!ml || !wl || !sl || !rl)
		return -ENOMEM;
	m = str(labels, ml);
	w = str(labels, wl);
	s = str(labels, sl);
	a = version_action(m, w, s);
	switch (a) {
	case VA_NONE:
		return 0;
	case VA_DELETE_WORKER:
		if (kmm_op_plugin_pod_on(op, node, ns, name))
			return 1;
		break;
	case VA_ADD_WORKER:
		if (str(labels, rl) || nmc_reports_loaded(op, node, ns, name))
			return 1;
		break;
	case VA_ADD_SCHEDULE:
	case VA_DELETE_SCHEDULE:
		break;
	}
	if (m && add_op(ops, "test", ml, m) < 0)
		return -ENOMEM;
	switch (a) {
	case VA_ADD_WORKER:
		if (add_op(ops, "add", wl, m) < 0)
			return -ENOMEM;
		break;
	case VA_ADD_SCHEDULE:
		if (add_op(ops, "test", wl, w) < 0 || add_op(ops, "add", sl, m) < 0)
			return -ENOMEM;
		break;
	case VA_DELETE_WORKER:
		if (add_op(ops, "test", wl, w) < 0 || add_op(ops, "remove", wl, NULL) < 0)
			return -ENOMEM;
		break;
	case VA_DELETE_SCHEDULE:
		if (add_op(ops, "test", sl, s) < 0 || add_op(ops, "remove", sl, NULL) < 0)
			return -ENOMEM;
		break;
	case VA_NONE:
		break;
	}
	kmm_op_log(op, KMM_LOG_INFO, "ordered upgrade", "controller", "version", "key", node,
		   "module", name, "namespace", ns, "step", action_names[a], "version", m ?: "",
		   NULL);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "<ns>.<name>" of every Module a version label on the node names, sorted, once each. */
static char **version_modules(const json_t *labels)
{
	char **mods = NULL;
	const char *k;
	json_t *v;

	json_object_foreach ((json_t *)labels, k, v) {
		const char *mod = version_label_module(k);

		if (mod && !kmm_strv_contains(mods, mod) && kmm_strv_push(&mods, mod) < 0) {
			kmm_strv_free(mods);
			return NULL;
		}
	}
	if (mods)
		qsort(mods, kmm_strv_length(mods), sizeof(*mods), cmp_str);
	return mods;
}

static int64_t version_reconcile(struct kmm_op_engine *op, void *state, const char *node,
				 struct kmm_error **err)
{
	_cleanup_json_ json_t *obj = kmm_op_overlay_get(op->overlay[KMM_OP_CACHE_NODES],
							op->cache[KMM_OP_CACHE_NODES], node);
	const json_t *labels = json_object_get(json_object_get(obj, "metadata"), "labels");
	_cleanup_strv_free_ char **mods = NULL;
	_cleanup_json_ json_t *ops = NULL, *out = NULL;
	struct kmm_kube_target t = { &kmm_kube_nodes, NULL, node, NULL };
	bool waiting = false;

	if (!obj || !has_version_labels(labels))
		return 0;
	mods = version_modules(labels);
	ops = json_array();
	if (!mods || !ops)
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (size_t i = 0; mods[i]; i++) {
		const char *dot = strchr(mods[i], '.');
		char ns[256];
		int r;

		/* Namespaces have no dots; Module names may. */
		snprintf(ns, sizeof(ns), "%.*s", (int)(dot - mods[i]), mods[i]);
		r = module_step(op, node, labels, ns, dot + 1, ops);
		if (r < 0)
			return kmm_error_make(err, ENOMEM, "out of memory");
		waiting |= r > 0;
	}
	if (json_array_size(ops) > 0) {
		if (kmm_op_patch(&op->api, &t, KMM_KUBE_PATCH_JSON, ops, &out, err) < 0)
			return kmm_error_wrap(err, "reconcile %s: version labels", node);
		kmm_op_overlay_put(op->overlay[KMM_OP_CACHE_NODES], op->cache[KMM_OP_CACHE_NODES],
				   out);
	}
	return waiting ? VERSION_WAIT_MS : 0;
}

/* ---- watches: what queues a node ---- */

/* The labels that move a step: the three version labels and the .ready labels. */
static bool step_label(const char *k)
{
	size_t n = strlen(k), plen = strlen(KMM_NODE_LABEL_PREFIX);

	return version_label_module(k) ||
	       (n > plen + 6 && strncmp(k, KMM_NODE_LABEL_PREFIX, plen) == 0 &&
		strcmp(k + n - 6, ".ready") == 0);
}

static bool node_labels_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
				const struct kmm_obj *obj)
{
	_cleanup_json_ json_t *la = kmm_obj_get_json(old, "metadata.labels");
	_cleanup_json_ json_t *lb = kmm_obj_get_json(obj, "metadata.labels");
	const char *k;
	json_t *v;

	for (int pass = 0; pass < 2; pass++)
		json_object_foreach (pass ? lb : la, k, v)
			if (step_label(k) && !kmm_json_same(v, json_object_get(pass ? la : lb, k)))
				return true;
	return false;
}

/* Only nodes that carry (or carried) a version label have steps to take. */
static void enqueue_node(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			 const struct kmm_obj *obj, enum kmm_op_event ev)
{
	_cleanup_json_ json_t *lb = kmm_obj_get_json(obj, "metadata.labels");

	if (ev != KMM_OP_DELETED && has_version_labels(lb))
		kmm_op_ctl_enqueue(op->ctl[KMM_OP_VERSION], kmm_obj_key(obj));
}

/* A device plugin or DRA driver pod gone: the node may delete W now. */
static void enqueue_from_plugin_pod(struct kmm_op_engine *op, void *state,
				    const struct kmm_obj *old, const struct kmm_obj *obj,
				    enum kmm_op_event ev)
{
	const char *node = kmm_obj_str(obj, "spec.nodeName");

	if (ev == KMM_OP_DELETED && node)
		kmm_op_ctl_enqueue(op->ctl[KMM_OP_VERSION], node);
}

static bool nmc_status_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			       const struct kmm_obj *obj)
{
	return kmm_op_status_differs(old, obj);
}

/*
 * An NMC's status moved (an unloader finished): its node may add W now. Only
 * nodes with version labels: a rollout moves every NMC's status many times.
 */
static void enqueue_from_nmc(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			     const struct kmm_obj *obj, enum kmm_op_event ev)
{
	_cleanup_obj_unref_ struct kmm_obj *node = NULL;
	_cleanup_json_ json_t *labels = NULL;

	if (ev == KMM_OP_ADDED)
		return; /* a new NMC reports nothing unloaded; nodes are queued by their own events */
	node = kmm_informer_get(op->cache[KMM_OP_CACHE_NODES], kmm_obj_key(obj));
	labels = node ? kmm_obj_get_json(node, "metadata.labels") : NULL;
	if (has_version_labels(labels))
		kmm_op_ctl_enqueue(op->ctl[KMM_OP_VERSION], kmm_obj_key(obj));
}

static const struct kmm_op_watch version_watches[] = {
	{ KMM_OP_CACHE_NODES, node_labels_changed, enqueue_node },
	{ KMM_OP_CACHE_DPPODS, NULL, enqueue_from_plugin_pod },
	{ KMM_OP_CACHE_DRAPODS, NULL, enqueue_from_plugin_pod },
	{ KMM_OP_CACHE_NMCS, nmc_status_changed, enqueue_from_nmc },
};

const struct kmm_op_reconciler kmm_op_version_reconciler = {
	.name = "nodelabelmoduleversion",
	.log_name = "version",
	.watches = version_watches,
	.n_watches = KMM_ARRAY_SIZE(version_watches),
	.reconcile = version_reconcile,
};
