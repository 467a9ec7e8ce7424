/* SPDX-License-Identifier: Apache-2.0 */
/* Node facts, taints and tolerations, kmm's label names (see kmm/operator.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-json.h"
#include "kmm/operator-runtime.h"

static const char *str_at(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

static bool str_eq(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

bool kmm_op_toleration_matches(const json_t *tol, const json_t *taint)
{
	const char *op = str_at(tol, "operator");
	const char *key = str_at(tol, "key");
	const char *effect = str_at(tol, "effect");

	if (effect && *effect && !str_eq(effect, str_at(taint, "effect")))
		return false;
	/* An empty key with Exists tolerates every taint. */
	if ((!key || !*key) && str_eq(op, "Exists"))
		return true;
	if (!str_eq(key, str_at(taint, "key")))
		return false;
	if (str_eq(op, "Exists"))
		return true;
	return str_eq(str_at(tol, "value"), str_at(taint, "value"));
}

/*
 * KMM's pressure tolerations, plus the node lifecycle taints: a node that
 * reboots goes NotReady for a while, and that is no reason to unload (the
 * NMC reconciler reloads after the reboot by bootID).
 */
static bool internal_tolerated(const json_t *taint)
{
	const char *key = str_at(taint, "key");

	if (str_eq(key, "node.kubernetes.io/not-ready") ||
	    str_eq(key, "node.kubernetes.io/unreachable"))
		return true;

	for (size_t i = 0; i < KMM_ARRAY_SIZE(kmm_internal_toleration_keys); i++)
		if (str_eq(key, kmm_internal_toleration_keys[i]))
			return true;
	return false;
}

bool kmm_op_node_schedulable(const json_t *node, const json_t *tolerations)
{
	return kmm_op_taints_tolerated(json_object_get(json_object_get(node, "spec"), "taints"),
				       tolerations);
}

bool kmm_op_taints_tolerated(const json_t *taints, const json_t *tolerations)
{
	const json_t *taint, *tol;
	size_t i, j;

	json_array_foreach (taints, i, taint) {
		const char *effect = str_at(taint, "effect");
		bool ok = false;

		if (!str_eq(effect, "NoSchedule") && !str_eq(effect, "NoExecute"))
			continue;
		if (internal_tolerated(taint))
			continue;
		json_array_foreach (tolerations, j, tol) {
			if (kmm_op_toleration_matches(tol, taint)) {
				ok = true;
				break;
			}
		}
		if (!ok)
			return false;
	}
	return true;
}

const char *kmm_op_label(const json_t *obj, const char *key)
{
	return str_at(json_object_get(json_object_get(obj, "metadata"), "labels"), key);
}

const char *kmm_op_annotation(const json_t *obj, const char *key)
{
	return str_at(json_object_get(json_object_get(obj, "metadata"), "annotations"), key);
}

bool kmm_op_selector_matches(const struct kmm_strmap *sel, const json_t *node)
{
	for (size_t i = 0; i < sel->n; i++) {
		const char *v = kmm_op_label(node, sel->keys[i]);

		if (!v || !str_eq(v, sel->values[i]))
			return false;
	}
	return true;
}

bool kmm_op_selector_matches_obj(const struct kmm_strmap *sel, const struct kmm_obj *node)
{
	for (size_t i = 0; i < sel->n; i++) {
		const char *v = kmm_obj_label(node, sel->keys[i]);

		if (!v || !str_eq(v, sel->values[i]))
			return false;
	}
	return true;
}

static const json_t *node_info(const json_t *node)
{
	return json_object_get(json_object_get(node, "status"), "nodeInfo");
}

const char *kmm_op_node_kernel(const json_t *node)
{
	return str_at(node_info(node), "kernelVersion");
}

const char *kmm_op_node_boot_id(const json_t *node)
{
	return str_at(node_info(node), "bootID");
}

bool kmm_op_node_ready(const json_t *node)
{
	const json_t *conds = json_object_get(json_object_get(node, "status"), "conditions");
	const json_t *c;
	size_t i;

	json_array_foreach (conds, i, c) {
		if (str_eq(str_at(c, "type"), "Ready"))
			return str_eq(str_at(c, "status"), "True");
	}
	return false;
}

static char *fmt(const char *prefix, const char *ns, const char *name, const char *suffix)
{
	char *s = NULL;

	if (asprintf(&s, "%s%s.%s.%s", prefix, ns, name, suffix) < 0)
		return NULL;
	return s;
}

char *kmm_op_ready_label(const char *ns, const char *name)
{
	return fmt(KMM_NODE_LABEL_PREFIX, ns, name, "ready");
}

char *kmm_op_version_ready_label(const char *ns, const char *name)
{
	return fmt(KMM_NODE_LABEL_PREFIX, ns, name, "version.ready");
}

char *kmm_op_nmc_configured_label(const char *ns, const char *name)
{
	return fmt(KMM_NMC_LABEL_PREFIX, ns, name, "module-configured");
}

char *kmm_op_nmc_in_use_label(const char *ns, const char *name)
{
	return fmt(KMM_NMC_LABEL_PREFIX, ns, name, "module-in-use");
}

/*
 * A node label kmm writes itself (kmm.node.kubernetes.io/<ns>.<name>.ready,
 * .version.ready, .device-plugin-ready, .device-plugin-target, ...; the
 * ordered upgrade's version-schedule-pod, which only device plugin
 * DaemonSets select), not one that says where Modules go (such as the
 * user's version-module labels, or version-worker-pod, which says which
 * version goes into a node's NMC).
 */
static bool written_by_kmm(const char *k)
{
	static const char schedule[] = "beta.kmm.node.kubernetes.io/version-schedule-pod.";
	size_t n = strlen(k), plen = strlen(KMM_NODE_LABEL_PREFIX);

	if (strncmp(k, schedule, sizeof(schedule) - 1) == 0)
		return true;
	if (strncmp(k, KMM_NODE_LABEL_PREFIX, plen) != 0)
		return false;
	return (n > plen + 5 && strcmp(k + n - 5, "ready") == 0) ||
	       (n > plen + 21 && strcmp(k + n - 21, ".device-plugin-target") == 0);
}

/* Labels other than those kmm itself writes. */
static bool labels_differ(const json_t *a, const json_t *b)
{
	const json_t *la = json_object_get(json_object_get(a, "metadata"), "labels");
	const json_t *lb = json_object_get(json_object_get(b, "metadata"), "labels");
	const char *k;
	const json_t *v;

	for (int pass = 0; pass < 2; pass++) {
		json_object_foreach ((json_t *)(pass ? lb : la), k, v) {
			if (written_by_kmm(k))
				continue;
			if (!kmm_json_same(v, json_object_get(pass ? la : lb, k)))
				return true;
		}
	}
	return false;
}

static bool field_differs(const json_t *a, const json_t *b, const char *top, const char *key)
{
	return !kmm_json_same(json_object_get(json_object_get(a, top), key),
			      json_object_get(json_object_get(b, top), key));
}

int kmm_op_node_change(const struct kmm_obj *old, const struct kmm_obj *new)
{
	/* DOMs of our own, freed on return: none stays attached to the cached nodes. */
	_cleanup_json_ json_t *a = kmm_obj_to_json(old), *b = kmm_obj_to_json(new);
	int change = 0;

	if (!a || !b) /* out of memory: rather a reconcile too many than a change missed */
		return KMM_OP_NODE_TARGETING | KMM_OP_NODE_READY | KMM_OP_NODE_LABELS;
	if (labels_differ(a, b) || field_differs(a, b, "spec", "taints") ||
	    field_differs(a, b, "spec", "unschedulable") ||
	    field_differs(a, b, "status", "nodeInfo"))
		change |= KMM_OP_NODE_TARGETING;
	if (kmm_op_node_ready(a) != kmm_op_node_ready(b))
		change |= KMM_OP_NODE_READY;
	if (field_differs(a, b, "metadata", "labels"))
		change |= KMM_OP_NODE_LABELS;
	return change;
}
