/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the device plugin (deviceplugin.c) and DRA (dra.c) reconcilers share
 * (reference §3.6, §3.7): both run a driver of a Module as a DaemonSet per
 * Module and version, label the nodes where its pods are Ready, count them
 * in the Module's status, and collect old versions. A struct
 * kmm_op_plugin_kind says what differs; plugin-ds.c builds the DaemonSet
 * (pure), plugin.c reconciles. Private to lib/operator. JSON handed in is
 * borrowed, JSON handed out is a new reference; strings handed out are heap
 * strings of the caller.
 */
#ifndef KMM_OPERATOR_PLUGIN_H
#define KMM_OPERATOR_PLUGIN_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "kmm/api.h"
#include "kmm/shared-error.h"
#include "kmm/operator.h"

#define KMM_LABEL_ROLE "kmm.node.kubernetes.io/role"
#define KMM_VERSION_SCHEDULE_LABEL_PREFIX "beta.kmm.node.kubernetes.io/version-schedule-pod."

struct kmm_op_plugin_kind {
	/*
	 * The role label's value. It also names the main container (the init
	 * container is "<role>-init"), the DaemonSets ("<module>-<role>-..."),
	 * the node labels ".<role>-ready" (and ".<role>-target") and the hash
	 * annotation "kmm.node.kubernetes.io/<role>-hash".
	 */
	const char *role;
	const char *key; /* spec.<key> and status.<key>: "devicePlugin", "dra" */
	enum kmm_op_reconciler_id reconciler;
	enum kmm_op_cache_id daemonsets, pods; /* the caches of this role's objects */
	/*
	 * Nodes schedulable for the Module carry ".<role>-target" and the pods
	 * select it, so a drain evicts them before the unloader runs.
	 */
	bool target_label;
	bool host_network;
	/* spec.<key> and status.<key> of a Module; the spec NULL when absent */
	const struct kmm_plugin_spec *(*spec)(const struct kmm_module *m);
	const struct kmm_daemonset_status *(*status)(const struct kmm_module *m);
	/* kmm's volumes and the main container's mounts of them, before the user's */
	json_t *(*volumes)(void);
	json_t *(*mounts)(void);
	/* What kmm adds to the main container, or NULL; 0, or < 0 out of memory. */
	int (*finish_container)(json_t *container);
	/*
	 * A step of the reconcile after the DaemonSets and node labels (DRA's
	 * DeviceClasses), or NULL. m is NULL when the Module is gone, being
	 * deleted, or has no spec.<key>: whatever the step made goes.
	 */
	int (*sync_more)(struct kmm_op_engine *op, const char *ns, const char *name,
			 const struct kmm_module *m, struct kmm_error **err);
};

/* ---- plugin-ds.c: names and the DaemonSet (pure) ---- */

/* "<prefix><ns>.<name><suffix>". */
char *kmm_op_plugin_label(const char *prefix, const char *ns, const char *name, const char *suffix);
/* "kmm.node.kubernetes.io/<ns>.<name>.<role>-<what>" ("ready", "target"). */
char *kmm_op_plugin_node_label(const struct kmm_op_plugin_kind *k, const char *ns, const char *name,
			       const char *what);
/* "kmm.node.kubernetes.io/<role>-hash": the hash of the DaemonSet spec kmm wrote. */
char *kmm_op_plugin_hash_annotation(const struct kmm_op_plugin_kind *k);
/*
 * The version-schedule-pod label that the device plugin's and DRA's pods
 * select ("beta.kmm.node.kubernetes.io/version-schedule-pod.<ns>.<name>"),
 * and the Module's version (moduleLoader.container.version), "" without one.
 */
char *kmm_op_dp_version_label(const char *ns, const char *name);
const char *kmm_op_dp_version(const struct kmm_module *m);

/*
 * The DaemonSet of kind k for Module m (which has spec.<key>; its
 * metadata.uid names the owner): generateName "<module>-<role>-", the
 * selection labels, the controller owner reference, the spec, and the hash
 * annotation of that spec.
 */
int kmm_op_plugin_daemonset(const struct kmm_op_plugin_kind *k, const struct kmm_module *m,
			    json_t **ret, struct kmm_error **err);

/* ---- plugin.c: the reconcile, its watches and state ---- */

/* Keeps e in *first if it is the first error of a pass that goes on; frees it otherwise. */
void kmm_op_keep_first(struct kmm_error **first, struct kmm_error *e);
/* The end of such a pass: 0 without an error, else first handed to *err and its -code. */
int kmm_op_first_error(struct kmm_error *first, struct kmm_error **err);

/* A plugin reconciler's state; a reconciler with more puts this first in its own. */
struct kmm_op_plugin_state {
	const struct kmm_op_plugin_kind *kind;
	/* "ns/module/version" of DaemonSets created that the cache does not show yet */
	struct kmm_op_keyset *created;
};

/* A state of size bytes (at least the struct's), zeroed, then initialized for k. */
int kmm_op_plugin_state_new(const struct kmm_op_plugin_kind *k, size_t size, void **ret_state,
			    struct kmm_error **err);
/* Frees what kmm_op_plugin_state_new made (the whole state). NULL-safe. */
void kmm_op_plugin_state_free(void *state);

/* The cached objects of a cache that belong to Module ns/name (namespace or label, and name). */
int kmm_op_plugin_list_owned(struct kmm_op_engine *op, enum kmm_op_cache_id id, const char *ns,
			     const char *name, struct kmm_obj ***ret, size_t *ret_n);

/* The reconcile of Module ns/name, state a struct kmm_op_plugin_state. */
int64_t kmm_op_plugin_reconcile(struct kmm_op_engine *op, void *state, const char *key,
				struct kmm_error **err);

/* Watches: the Module itself (its spec, its deletion). */
bool kmm_op_plugin_module_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
				  const struct kmm_obj *obj);
void kmm_op_plugin_enqueue_module(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
				  const struct kmm_obj *obj, enum kmm_op_event ev);
/* Watches: a node's labels (but kmm's own), taints or cordon -> every Module with spec.<key>. */
bool kmm_op_plugin_node_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
				const struct kmm_obj *obj);
void kmm_op_plugin_enqueue_modules(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
				   const struct kmm_obj *obj, enum kmm_op_event ev);
/*
 * Watches: an object of a Module (by its namespace or module.namespace
 * label, and module.name label) -> that Module, progress batched.
 */
void kmm_op_plugin_enqueue_owner(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
				 const struct kmm_obj *obj, enum kmm_op_event ev);

#endif
