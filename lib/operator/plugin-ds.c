/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The DaemonSet of a Module's driver, in upstream's shape (reference §3.6,
 * §3.7), for the device plugin and DRA alike: one per Module and version,
 * named "<module>-<role>-<random>", selected by the module.name and role
 * labels (and the version-schedule-pod label when the Module has a
 * version), owned by the Module. Its pods run on nodes where the module is
 * loaded (and, for the device plugin, that are targets: schedulable for the
 * Module), or, for a Module without a moduleLoader (an in-tree driver), on
 * the nodes of the Module's selector. The main container is privileged;
 * kmm's mounts (the kind's) come before the user's, kmm's volumes before the
 * user's volumes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "kmm/shared-json.h"
#include "kmm/operator-runtime.h"
#include "plugin.h"

char *kmm_op_plugin_label(const char *prefix, const char *ns, const char *name, const char *suffix)
{
	char *s = NULL;

	if (asprintf(&s, "%s%s.%s%s", prefix, ns, name, suffix) < 0)
		return NULL;
	return s;
}

char *kmm_op_plugin_node_label(const struct kmm_op_plugin_kind *k, const char *ns, const char *name,
			       const char *what)
{
	char *s = NULL;

	if (asprintf(&s, "%s%s.%s.%s-%s", KMM_NODE_LABEL_PREFIX, ns, name, k->role, what) < 0)
		return NULL;
	return s;
}

char *kmm_op_plugin_hash_annotation(const struct kmm_op_plugin_kind *k)
{
	char *s = NULL;

	if (asprintf(&s, "%s%s-hash", KMM_NODE_LABEL_PREFIX, k->role) < 0)
		return NULL;
	return s;
}

char *kmm_op_dp_version_label(const char *ns, const char *name)
{
	return kmm_op_plugin_label(KMM_VERSION_SCHEDULE_LABEL_PREFIX, ns, name, "");
}

const char *kmm_op_dp_version(const struct kmm_module *m)
{
	const struct kmm_module_loader *ml = m->spec.module_loader;

	return ml && ml->container.version ? ml->container.version : "";
}

static int set_if(json_t *o, const char *key, const json_t *v)
{
	return v ? json_object_set(o, key, (json_t *)v) : 0;
}

/* The user's container, privileged, with mounts of its own after kmm's. */
static json_t *container(const struct kmm_container_spec *c, const char *name, json_t *kmm_mounts)
{
	_cleanup_json_ json_t *o = json_pack("{s:s, s:s, s:{s:b}}", "name", name, "image", c->image,
					     "securityContext", "privileged", 1);
	_cleanup_json_ json_t *mounts = kmm_mounts;
	size_t i;
	json_t *v;

	if (!o || !mounts)
		return NULL;
	json_array_foreach (c->volume_mounts, i, v)
		if (json_array_append(mounts, v) < 0)
			return NULL;
	if (set_if(o, "command", c->command) < 0 || set_if(o, "args", c->args) < 0 ||
	    set_if(o, "env", c->env) < 0 || set_if(o, "resources", c->resources) < 0 ||
	    (c->image_pull_policy &&
	     json_object_set_new(o, "imagePullPolicy", json_string(c->image_pull_policy)) < 0))
		return NULL;
	if (json_array_size(mounts) && json_object_set(o, "volumeMounts", mounts) < 0)
		return NULL;
	return TAKE_PTR(o);
}

static json_t *selection_labels(const struct kmm_op_plugin_kind *k, const struct kmm_module *m)
{
	_cleanup_free_ char *vl = kmm_op_dp_version_label(m->namespace, m->name);
	const char *version = kmm_op_dp_version(m);
	json_t *l =
	    json_pack("{s:s, s:s}", KMM_LABEL_MODULE_NAME, m->name, KMM_LABEL_ROLE, k->role);

	if (l && *version && (!vl || json_object_set_new(l, vl, json_string(version)) < 0)) {
		json_decref(l);
		return NULL;
	}
	return l;
}

static json_t *node_selector(const struct kmm_op_plugin_kind *k, const struct kmm_module *m)
{
	_cleanup_free_ char *rl = kmm_op_ready_label(m->namespace, m->name);
	_cleanup_free_ char *tl = kmm_op_plugin_node_label(k, m->namespace, m->name, "target");
	_cleanup_free_ char *vl = kmm_op_dp_version_label(m->namespace, m->name);
	const char *version = kmm_op_dp_version(m);
	_cleanup_json_ json_t *sel = json_object();

	if (!sel || !rl || !tl || !vl)
		return NULL;
	if (!m->spec.module_loader) {
		/* An in-tree driver: no module to wait for, the Module's nodes. */
		for (size_t i = 0; i < m->spec.selector.n; i++)
			if (json_object_set_new(sel, m->spec.selector.keys[i],
						json_string(m->spec.selector.values[i])) < 0)
				return NULL;
		return TAKE_PTR(sel);
	}
	if (json_object_set_new(sel, rl, json_string("")) < 0 ||
	    (k->target_label && json_object_set_new(sel, tl, json_string("")) < 0) ||
	    (*version && json_object_set_new(sel, vl, json_string(version)) < 0))
		return NULL;
	return TAKE_PTR(sel);
}

static json_t *pod_spec(const struct kmm_op_plugin_kind *k, const struct kmm_module *m)
{
	const struct kmm_plugin_spec *ps = k->spec(m);
	_cleanup_free_ char *init_name = NULL;
	_cleanup_json_ json_t *spec = NULL, *volumes = k->volumes(),
			      *c = container(&ps->container, k->role, k->mounts());
	size_t i;
	json_t *v;

	if (!c || (k->finish_container && k->finish_container(c) < 0))
		return NULL;
	spec = json_pack("{s:s, s:o, s:[O]}", "priorityClassName", "system-node-critical",
			 "nodeSelector", node_selector(k, m), "containers", c);
	if (!spec || !volumes)
		return NULL;
	if (k->host_network && json_object_set_new(spec, "hostNetwork", json_true()) < 0)
		return NULL;
	json_array_foreach (ps->volumes, i, v)
		if (json_array_append(volumes, v) < 0)
			return NULL;
	if (json_object_set(spec, "volumes", volumes) < 0)
		return NULL;
	if (ps->init_container) {
		json_t *init = NULL;

		if (asprintf(&init_name, "%s-init", k->role) < 0 ||
		    !(init = container(ps->init_container, init_name, json_array())) ||
		    json_object_set_new(spec, "initContainers", json_pack("[o]", init)) < 0)
			return NULL;
	}
	if (ps->service_account_name && *ps->service_account_name &&
	    json_object_set_new(spec, "serviceAccountName", json_string(ps->service_account_name)) <
		0)
		return NULL;
	if (ps->has_automount_sa_token &&
	    json_object_set_new(spec, "automountServiceAccountToken",
				json_boolean(ps->automount_sa_token)) < 0)
		return NULL;
	if (m->spec.n_tolerations &&
	    json_object_set_new(
		spec, "tolerations",
		kmm_tolerations_to_json(m->spec.tolerations, m->spec.n_tolerations)) < 0)
		return NULL;
	if (m->spec.image_repo_secret &&
	    json_object_set_new(spec, "imagePullSecrets",
				json_pack("[{s:s}]", "name", m->spec.image_repo_secret)) < 0)
		return NULL;
	return TAKE_PTR(spec);
}

int kmm_op_plugin_daemonset(const struct kmm_op_plugin_kind *k, const struct kmm_module *m,
			    json_t **ret, struct kmm_error **err)
{
	_cleanup_free_ char *gen = NULL, *hash = NULL, *ann = NULL;
	_cleanup_json_ json_t *labels = NULL, *pspec = NULL, *spec = NULL;
	json_t *ds;

	if (!k->spec(m) || !m->namespace)
		return kmm_error_make(err, EINVAL, "module %s: no %s", m->name, k->key);
	labels = selection_labels(k, m);
	pspec = pod_spec(k, m);
	ann = kmm_op_plugin_hash_annotation(k);
	if (!labels || !pspec || !ann || asprintf(&gen, "%s-%s-", m->name, k->role) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	spec = json_pack("{s:{s:O}, s:{s:{s:O}, s:O}}", "selector", "matchLabels", labels,
			 "template", "metadata", "labels", labels, "spec", pspec);
	hash = spec ? kmm_op_hash_json(spec) : NULL;
	if (!hash)
		return kmm_error_make(err, ENOMEM, "out of memory");
	ds = json_pack("{s:s, s:s, s:{s:s, s:s, s:O, s:{s:s}, s:[{s:s, s:s, s:s, s:s, s:b, s:b}]}, "
		       "s:O}",
		       "apiVersion", "apps/v1", "kind", "DaemonSet", "metadata", "generateName",
		       gen, "namespace", m->namespace, "labels", labels, "annotations", ann, hash,
		       "ownerReferences", "apiVersion", KMM_API_VERSION, "kind", "Module", "name",
		       m->name, "uid", json_string_value(json_object_get(m->metadata, "uid")) ?: "",
		       "controller", 1, "blockOwnerDeletion", 1, "spec", spec);
	if (!ds)
		return kmm_error_make(err, ENOMEM, "out of memory");
	*ret = ds;
	return 0;
}
