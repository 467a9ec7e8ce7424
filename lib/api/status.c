/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The report of `kmmctl status`: per Module and node, what is loaded, what is
 * pending and why, and the device plugin, read from the objects the operator
 * keeps (see include/kmm/api-status.h). The rules mirror the NMC and Module
 * reconcilers (docs/operator.md): a spec entry without a matching status is
 * a load to come, a status without a spec entry an unload, a status from an
 * earlier boot a reload; a targeted node without a spec entry waits for its
 * image (the MIC) or its ordered-upgrade label.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api-kernel.h"
#include "kmm/api-status.h"
#include "kmm/api.h"
#include "kmm/shared-json.h"

#define LABEL_PREFIX "kmm.node.kubernetes.io/"
#define VERSION_WORKER_LABEL_PREFIX "beta.kmm.node.kubernetes.io/version-worker-pod."
#define LABEL_WORKER_ACTION "kmm.node.kubernetes.io/worker-action"
#define LABEL_ROLE "kmm.node.kubernetes.io/role"

static const char *const state_names[] = {
	[KMM_STATUS_LOADED] = "Loaded",	       [KMM_STATUS_LOADING] = "Loading",
	[KMM_STATUS_UPDATING] = "Updating",    [KMM_STATUS_RELOADING] = "Reloading",
	[KMM_STATUS_UNLOADING] = "Unloading",  [KMM_STATUS_WAITING] = "Waiting",
	[KMM_STATUS_BUILDING] = "Building",    [KMM_STATUS_IMAGE_MISSING] = "ImageMissing",
	[KMM_STATUS_NO_MAPPING] = "NoMapping", [KMM_STATUS_NOT_TARGETED] = "NotTargeted",
	[KMM_STATUS_NOT_LOADED] = "NotLoaded", [KMM_STATUS_NO_LOADER] = "NoLoader",
};

const char *kmm_status_state_name(enum kmm_status_state s)
{
	return (size_t)s < KMM_ARRAY_SIZE(state_names) ? state_names[s] : "Unknown";
}

/* ---- small JSON readers ---- */

static const char *str_at(const json_t *o, const char *a, const char *b)
{
	const json_t *v = json_object_get(o, a);

	if (b)
		v = json_object_get(v, b);
	return json_string_value(v);
}

static const char *meta(const json_t *o, const char *key)
{
	return str_at(o, "metadata", key);
}

static const char *label(const json_t *o, const char *key)
{
	return json_string_value(
	    json_object_get(json_object_get(json_object_get(o, "metadata"), "labels"), key));
}

static bool same(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* "kmm.node.kubernetes.io/<ns>.<name>.<suffix>" on the node, or NULL. */
static const char *module_label(const json_t *node, const char *prefix, const char *ns,
				const char *name, const char *suffix)
{
	char key[512];

	if (snprintf(key, sizeof(key), "%s%s.%s%s%s", prefix, ns, name, suffix ? "." : "",
		     suffix ? suffix : "") >= (int)sizeof(key))
		return NULL;
	return label(node, key);
}

static bool node_condition_true(const json_t *node, const char *type)
{
	size_t i;
	json_t *c;

	json_array_foreach (json_object_get(json_object_get(node, "status"), "conditions"), i, c)
		if (same(json_string_value(json_object_get(c, "type")), type))
			return same(json_string_value(json_object_get(c, "status")), "True");
	return false;
}

/* ---- lookups in the input ---- */

static const struct kmm_nmc *find_nmc(const struct kmm_status_input *in, const char *node)
{
	for (size_t i = 0; i < in->n_nmcs; i++)
		if (same(in->nmcs[i]->name, node))
			return in->nmcs[i];
	return NULL;
}

static const struct kmm_nmc_module *nmc_entry(const struct kmm_nmc_module *v, size_t n,
					      const struct kmm_module *m)
{
	for (size_t i = 0; i < n; i++)
		if (same(v[i].namespace, m->namespace) && same(v[i].name, m->name))
			return &v[i];
	return NULL;
}

static const struct kmm_image_config *find_mic(const struct kmm_status_input *in,
					       const struct kmm_module *m)
{
	for (size_t i = 0; i < in->n_mics; i++)
		if (same(in->mics[i]->namespace, m->namespace) && same(in->mics[i]->name, m->name))
			return in->mics[i];
	return NULL;
}

static const char *mic_state(const struct kmm_image_config *mic, const char *image)
{
	for (size_t i = 0; mic && image && i < mic->n_states; i++)
		if (same(mic->states[i].image, image))
			return mic->states[i].status;
	return NULL;
}

/*
 * The Module's pod on the node: a worker pod (worker-action label) or a
 * device-plugin pod (role device-plugin), or NULL.
 */
static const json_t *find_pod(const struct kmm_status_input *in, const struct kmm_module *m,
			      const char *node, bool worker)
{
	size_t i;
	json_t *p;

	json_array_foreach (in->pods, i, p) {
		if (!same(meta(p, "namespace"), m->namespace) ||
		    !same(label(p, KMM_LABEL_MODULE_NAME), m->name) ||
		    !same(str_at(p, "spec", "nodeName"), node))
			continue;
		if (worker ? label(p, LABEL_WORKER_ACTION) != NULL
			   : same(label(p, LABEL_ROLE), "device-plugin"))
			return p;
	}
	return NULL;
}

/* ---- pods ---- */

/* Appends "; " and the text to *s (a NULL *s starts it). */
static int append(char **s, const char *fmt, ...) _printf_(2, 3);
static int append(char **s, const char *fmt, ...)
{
	_cleanup_free_ char *part = NULL;
	char *joined;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&part, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	if (!*s) {
		*s = TAKE_PTR(part);
		return 0;
	}
	if (asprintf(&joined, "%s; %s", *s, part) < 0)
		return -ENOMEM;
	free(*s);
	*s = joined;
	return 0;
}

/* What the containers of one list (init or not) wait on, and their restarts. */
static int container_details(const json_t *statuses, bool init, struct kmm_status_pod *p)
{
	size_t i;
	json_t *c;

	json_array_foreach (statuses, i, c) {
		const char *name = json_string_value(json_object_get(c, "name"));
		const json_t *st = json_object_get(c, "state");
		const json_t *waiting = json_object_get(st, "waiting");
		const json_t *last = json_object_get(json_object_get(c, "lastState"), "terminated");
		const char *reason = json_string_value(json_object_get(waiting, "reason"));
		const char *msg = json_string_value(json_object_get(waiting, "message"));

		p->restarts += json_integer_value(json_object_get(c, "restartCount"));
		if (reason &&
		    append(&p->detail, "%scontainer %s %s%s%s", init ? "init " : "",
			   name ? name : "?", reason, msg ? ": " : "", msg ? msg : "") < 0)
			return -ENOMEM;
		if (json_is_object(last) &&
		    append(&p->detail, "%scontainer %s last exited %lld (%s)", init ? "init " : "",
			   name ? name : "?",
			   (long long)json_integer_value(json_object_get(last, "exitCode")),
			   json_string_value(json_object_get(last, "reason")) ?: "no reason") < 0)
			return -ENOMEM;
	}
	return 0;
}

static bool pod_ready(const json_t *pod)
{
	size_t i;
	json_t *c;

	json_array_foreach (json_object_get(json_object_get(pod, "status"), "conditions"), i, c)
		if (same(json_string_value(json_object_get(c, "type")), "Ready"))
			return same(json_string_value(json_object_get(c, "status")), "True");
	return false;
}

static int pod_summary(const json_t *pod, const char *action, struct kmm_status_pod **ret)
{
	const json_t *status = json_object_get(pod, "status");
	struct kmm_status_pod *p = calloc(1, sizeof(*p));
	const char *reason = json_string_value(json_object_get(status, "reason"));
	const char *msg = json_string_value(json_object_get(status, "message"));

	if (!p)
		return -ENOMEM;
	*ret = p;
	p->name = meta(pod, "name");
	p->action = action;
	p->phase = json_string_value(json_object_get(status, "phase")) ?: "Unknown";
	p->ready = pod_ready(pod);
	if (meta(pod, "deletionTimestamp") && append(&p->detail, "being deleted") < 0)
		return -ENOMEM;
	if (reason && append(&p->detail, "%s%s%s", reason, msg ? ": " : "", msg ? msg : "") < 0)
		return -ENOMEM;
	if (container_details(json_object_get(status, "initContainerStatuses"), true, p) < 0 ||
	    container_details(json_object_get(status, "containerStatuses"), false, p) < 0)
		return -ENOMEM;
	return 0;
}

/* "worker pod NAME (Load) Pending: ..." appended to the row's reason. */
static int explain_pod(struct kmm_status_node *row, const char *what,
		       const struct kmm_status_pod *p)
{
	if (!p)
		return 0;
	return append(&row->reason, "%s pod %s%s%s%s %s%s%s", what, p->name, p->action ? " (" : "",
		      p->action ? p->action : "", p->action ? ")" : "", p->phase,
		      p->detail ? ": " : "", p->detail ? p->detail : "");
}

static void pod_free(struct kmm_status_pod *p)
{
	if (!p)
		return;
	free(p->detail);
	free(p);
}

/* ---- one row: a Module on a node ---- */

/* Loaded, Loading, Updating, Reloading or Unloading from the NMC entries. */
static int nmc_state(struct kmm_status_node *row, const struct kmm_nmc_module *spec,
		     const struct kmm_nmc_module *st, const char *boot_id)
{
	if (st && spec && kmm_module_config_equal(st->config, spec->config)) {
		if (!row->loaded_this_boot && boot_id && st->boot_id) {
			row->state = KMM_STATUS_RELOADING;
			return append(&row->reason,
				      "the node rebooted (boot %s) since the load in boot %s",
				      boot_id, st->boot_id);
		}
		row->state = KMM_STATUS_LOADED;
		if (!row->ready_label)
			return append(&row->reason, "the .ready node label is not set yet");
		return 0;
	}
	if (st && spec) {
		bool same_kernel = same(row->loaded_kernel, row->wanted_kernel);

		row->state = same_kernel ? KMM_STATUS_UPDATING : KMM_STATUS_LOADING;
		return same_kernel ? append(&row->reason, "the config changed: the loaded one is "
							  "unloaded first, then the new one loaded")
				   : append(&row->reason, "the kernel changed from %s to %s",
					    row->loaded_kernel ?: "?", row->wanted_kernel ?: "?");
	}
	if (!st) {
		row->state = KMM_STATUS_LOADING;
		return row->worker ? 0 : append(&row->reason, "no worker pod yet");
	}
	row->state = KMM_STATUS_UNLOADING;
	if (!row->loaded_this_boot && boot_id && st->boot_id)
		return append(&row->reason, "no longer wanted; the node rebooted since the load, "
					    "so the module is already gone");
	return append(&row->reason, "no longer in the NodeModulesConfig spec (Module deleted, "
				    "or the node is no longer targeted)");
}

/* Why a selected node without NMC entries has nothing: taint, mapping, version, image. */
static int target_state(struct kmm_status_node *row, const struct kmm_module *m,
			const struct kmm_mapper *mp, const struct kmm_image_config *mic,
			const json_t *node, struct kmm_error **err)
{
	_cleanup_(kmm_resolved_mapping_freep) struct kmm_resolved_mapping *res = NULL;
	const char *version = m->spec.module_loader->container.version;
	const json_t *taint = kmm_module_untolerated_taint(
	    &m->spec, json_object_get(json_object_get(node, "spec"), "taints"));
	int r;

	if (taint) {
		row->state = KMM_STATUS_NOT_TARGETED;
		return append(&row->reason, "node taint %s:%s is not tolerated",
			      str_at(taint, "key", NULL) ?: "",
			      str_at(taint, "effect", NULL) ?: "");
	}
	if (!row->kernel) {
		row->state = KMM_STATUS_WAITING;
		return append(&row->reason, "the node reports no kernel version yet");
	}
	r = kmm_mapper_resolve(mp, m, row->kernel, &res, err);
	if (r < 0)
		return r;
	if (r == 0) {
		row->state = KMM_STATUS_NO_MAPPING;
		return append(&row->reason, "no kernel mapping matches kernel %s", row->kernel);
	}
	row->resolved_image = TAKE_PTR(res->container_image);
	row->wanted_image = row->resolved_image;
	row->image_state = mic_state(mic, row->resolved_image);
	row->state = KMM_STATUS_WAITING;
	if (version && *version) {
		const char *wl =
		    module_label(node, VERSION_WORKER_LABEL_PREFIX, m->namespace, m->name, NULL);

		if (!same(wl, version))
			return append(
			    &row->reason,
			    "ordered upgrade: the node is not on version %s yet (node "
			    "label kmm.node.kubernetes.io/version-module.%s.%s=%s moves it)",
			    version, m->namespace, m->name, version);
	}
	if (!row->image_state)
		return append(&row->reason, "image %s: not checked yet", row->resolved_image);
	if (same(row->image_state, "NeedsBuilding") || same(row->image_state, "NeedsSigning")) {
		row->state = KMM_STATUS_BUILDING;
		return append(&row->reason, "image %s: %s", row->resolved_image,
			      same(row->image_state, "NeedsBuilding") ? "being built"
								      : "being signed");
	}
	if (same(row->image_state, "DoesNotExist")) {
		row->state = KMM_STATUS_IMAGE_MISSING;
		return append(&row->reason, "image %s does not exist%s", row->resolved_image,
			      res->build || res->sign ? " (its build or sign failed)"
						      : " and the Module does not build it");
	}
	return append(&row->reason, "image %s exists: the node is about to be configured",
		      row->resolved_image);
}

static int device_plugin_state(struct kmm_status_node *row, const struct kmm_module *m,
			       const struct kmm_status_input *in, const json_t *node)
{
	const json_t *pod = find_pod(in, m, row->node, false);

	row->has_device_plugin = true;
	row->device_plugin_target =
	    module_label(node, LABEL_PREFIX, m->namespace, m->name, "device-plugin-target") != NULL;
	row->device_plugin_ready =
	    module_label(node, LABEL_PREFIX, m->namespace, m->name, "device-plugin-ready") != NULL;
	if (pod && pod_summary(pod, NULL, &row->device_plugin_pod) < 0)
		return -ENOMEM;
	if (row->device_plugin_ready)
		row->device_plugin_state = "Ready";
	else if (pod)
		row->device_plugin_state = "Pending";
	else if (m->spec.module_loader && !row->ready_label)
		row->device_plugin_state = "WaitingForModule";
	else if (m->spec.module_loader && !row->device_plugin_target)
		row->device_plugin_state = "NotScheduled";
	else
		row->device_plugin_state = "NoPod";
	if (!row->device_plugin_ready && row->device_plugin_pod)
		return explain_pod(row, "device-plugin", row->device_plugin_pod);
	return 0;
}

/* Does the node carry anything about the Module (labels kmm writes)? */
static bool has_module_labels(const json_t *node, const struct kmm_module *m)
{
	static const char *const suffixes[] = { "ready", "version.ready", "device-plugin-ready",
						"device-plugin-target" };

	for (size_t i = 0; i < KMM_ARRAY_SIZE(suffixes); i++)
		if (module_label(node, LABEL_PREFIX, m->namespace, m->name, suffixes[i]))
			return true;
	return false;
}

struct module_ctx {
	const struct kmm_status_input *in;
	const struct kmm_module *m;
	const struct kmm_mapper *mp; /* NULL without a moduleLoader */
	const struct kmm_image_config *mic;
};

static void fill_entries(struct kmm_status_node *row, const struct kmm_nmc_module *spec,
			 const struct kmm_nmc_module *st, const char *boot_id)
{
	if (st) {
		row->loaded = true;
		row->loaded_version = st->version;
		row->loaded_image = st->config ? st->config->container_image : NULL;
		row->loaded_kernel = st->config ? st->config->kernel_version : NULL;
		row->loaded_since = st->last_transition_time;
		row->loaded_boot_id = st->boot_id;
		row->loaded_this_boot = !boot_id || !st->boot_id || same(boot_id, st->boot_id);
	}
	if (spec) {
		row->configured = true;
		row->wanted_version = spec->version;
		row->wanted_image = spec->config ? spec->config->container_image : NULL;
		row->wanted_kernel = spec->config ? spec->config->kernel_version : NULL;
	}
}

/* A node kept on an older version (ordered upgrade) says how to move it. */
static int older_version(struct kmm_status_node *row, const struct kmm_module *m)
{
	const char *version = m->spec.module_loader->container.version;

	if (!version || !*version || same(row->loaded_version, version))
		return 0;
	return append(&row->reason,
		      "version %s loaded, the Module is at %s (node label "
		      "kmm.node.kubernetes.io/version-module.%s.%s=%s upgrades it)",
		      row->loaded_version ? row->loaded_version : "(none)", version, m->namespace,
		      m->name, version);
}

/* Fills row for the node; *ret_keep says whether the node belongs under the Module. */
static int build_row(const struct module_ctx *c, const json_t *node, struct kmm_status_node *row,
		     bool *ret_keep, struct kmm_error **err)
{
	const struct kmm_module *m = c->m;
	const struct kmm_nmc *nmc = find_nmc(c->in, meta(node, "name"));
	const struct kmm_nmc_module *spec =
	    nmc ? nmc_entry(nmc->spec_modules, nmc->n_spec_modules, m) : NULL;
	const struct kmm_nmc_module *st =
	    nmc ? nmc_entry(nmc->status_modules, nmc->n_status_modules, m) : NULL;
	const char *boot_id = str_at(json_object_get(node, "status"), "nodeInfo", "bootID");
	const json_t *worker = find_pod(c->in, m, meta(node, "name"), true);
	bool selected = kmm_module_selects(
	    &m->spec, json_object_get(json_object_get(node, "metadata"), "labels"), NULL);
	int r = 0;

	*ret_keep = selected || spec || st || worker || has_module_labels(node, m);
	if (!*ret_keep)
		return 0;
	row->node = meta(node, "name");
	row->kernel = str_at(json_object_get(node, "status"), "nodeInfo", "kernelVersion");
	row->node_ready = node_condition_true(node, "Ready");
	row->ready_label = module_label(node, LABEL_PREFIX, m->namespace, m->name, "ready");
	row->version_ready_label =
	    module_label(node, LABEL_PREFIX, m->namespace, m->name, "version.ready");
	fill_entries(row, spec, st, boot_id);
	if (c->mic && row->wanted_image)
		row->image_state = mic_state(c->mic, row->wanted_image);
	if (worker && pod_summary(worker, label(worker, LABEL_WORKER_ACTION), &row->worker) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (!m->spec.module_loader)
		row->state = KMM_STATUS_NO_LOADER;
	else if (spec || st)
		r = nmc_state(row, spec, st, boot_id);
	else if (selected)
		r = target_state(row, m, c->mp, c->mic, node, err);
	else {
		row->state = KMM_STATUS_NOT_LOADED;
		r = append(&row->reason, "the node is not selected by the Module");
	}
	if (m->spec.module_loader && r < 0)
		return r == -ENOMEM ? kmm_error_make(err, ENOMEM, "out of memory") : r;
	if (row->state == KMM_STATUS_LOADED && older_version(row, m) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (row->state != KMM_STATUS_LOADED && explain_pod(row, "worker", row->worker) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (!row->node_ready && row->state != KMM_STATUS_LOADED &&
	    append(&row->reason, "node %s is not Ready", row->node) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (m->spec.device_plugin && device_plugin_state(row, m, c->in, node) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	return 0;
}

/* ---- a Module ---- */

static int add_images(struct kmm_status_module *sm, const struct kmm_image_config *mic)
{
	if (!mic || mic->n_images == 0)
		return 0;
	sm->images = calloc(mic->n_images, sizeof(*sm->images));
	if (!sm->images)
		return -ENOMEM;
	for (size_t i = 0; i < mic->n_images; i++) {
		sm->images[i].image = mic->images[i].image;
		sm->images[i].kernel = mic->images[i].kernel_version;
		sm->images[i].state = mic_state(mic, mic->images[i].image);
	}
	sm->n_images = mic->n_images;
	return 0;
}

static const char *event_time(const json_t *e)
{
	return json_string_value(json_object_get(e, "lastTimestamp"))
		   ?: json_string_value(json_object_get(e, "eventTime"))
		   ?: meta(e, "creationTimestamp");
}

static int cmp_event(const void *a, const void *b)
{
	const struct kmm_status_event *x = a, *y = b;

	return strcmp(x->last_seen ? x->last_seen : "", y->last_seen ? y->last_seen : "");
}

static int add_events(struct kmm_status_module *sm, const json_t *events)
{
	size_t i, n = 0;
	json_t *e;

	sm->events = calloc(json_array_size(events) + 1, sizeof(*sm->events));
	if (!sm->events)
		return -ENOMEM;
	json_array_foreach (events, i, e) {
		const json_t *obj = json_object_get(e, "involvedObject");

		if (!same(json_string_value(json_object_get(obj, "kind")), "Module") ||
		    !same(json_string_value(json_object_get(obj, "namespace")), sm->namespace) ||
		    !same(json_string_value(json_object_get(obj, "name")), sm->name))
			continue;
		sm->events[n++] = (struct kmm_status_event){
			.type = json_string_value(json_object_get(e, "type")),
			.reason = json_string_value(json_object_get(e, "reason")),
			.message = json_string_value(json_object_get(e, "message")),
			.last_seen = event_time(e),
			.count = json_integer_value(json_object_get(e, "count")),
		};
	}
	qsort(sm->events, n, sizeof(*sm->events), cmp_event);
	if (n > KMM_STATUS_MAX_EVENTS) {
		memmove(sm->events, sm->events + n - KMM_STATUS_MAX_EVENTS,
			KMM_STATUS_MAX_EVENTS * sizeof(*sm->events));
		n = KMM_STATUS_MAX_EVENTS;
	}
	sm->n_events = n;
	return 0;
}

static void ready_condition(struct kmm_status_module *sm, const struct kmm_module *m)
{
	size_t i;
	json_t *c;

	json_array_foreach (m->status.conditions, i, c) {
		if (!same(json_string_value(json_object_get(c, "type")), "Ready"))
			continue;
		sm->ready_status = json_string_value(json_object_get(c, "status"));
		sm->ready_reason = json_string_value(json_object_get(c, "reason"));
		sm->ready_message = json_string_value(json_object_get(c, "message"));
	}
}

static int cmp_row(const void *a, const void *b)
{
	return strcmp(((const struct kmm_status_node *)a)->node,
		      ((const struct kmm_status_node *)b)->node);
}

static int build_module(const struct kmm_status_input *in, const struct kmm_module *m,
			struct kmm_status_module *sm, struct kmm_error **err)
{
	_cleanup_(kmm_mapper_freep) struct kmm_mapper *mp = NULL;
	struct module_ctx c = { in, m, NULL, find_mic(in, m) };
	size_t i;
	json_t *node;
	int r;

	sm->namespace = m->namespace;
	sm->name = m->name;
	sm->has_loader = m->spec.module_loader != NULL;
	sm->has_device_plugin = m->spec.device_plugin != NULL;
	sm->version = sm->has_loader ? m->spec.module_loader->container.version : NULL;
	sm->loader = m->status.module_loader;
	sm->device_plugin = m->status.device_plugin;
	ready_condition(sm, m);
	if (sm->has_loader && kmm_mapper_new(m, &mp, err) < 0)
		return kmm_error_wrap(err, "Module %s/%s", m->namespace, m->name);
	c.mp = mp;
	if (add_images(sm, c.mic) < 0 || add_events(sm, in->events) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	sm->nodes = calloc(json_array_size(in->nodes) + 1, sizeof(*sm->nodes));
	if (!sm->nodes)
		return kmm_error_make(err, ENOMEM, "out of memory");
	json_array_foreach (in->nodes, i, node) {
		bool keep = false;

		if (!meta(node, "name") || (in->node && !same(meta(node, "name"), in->node)))
			continue;
		r = build_row(&c, node, &sm->nodes[sm->n_nodes], &keep, err);
		if (keep)
			sm->n_nodes++;
		if (r < 0)
			return kmm_error_wrap(err, "Module %s/%s on node %s", m->namespace, m->name,
					      meta(node, "name"));
	}
	qsort(sm->nodes, sm->n_nodes, sizeof(*sm->nodes), cmp_row);
	return 0;
}

static int cmp_module(const void *a, const void *b)
{
	const struct kmm_status_module *x = a, *y = b;
	int c = strcmp(x->namespace, y->namespace);

	return c ? c : strcmp(x->name, y->name);
}

int kmm_status_build(const struct kmm_status_input *in, struct kmm_status_report **ret,
		     struct kmm_error **err)
{
	_cleanup_(kmm_status_report_freep) struct kmm_status_report *r = calloc(1, sizeof(*r));

	if (!r || !(r->modules = calloc(in->n_modules + 1, sizeof(*r->modules))))
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < in->n_modules; i++) {
		const struct kmm_module *m = in->modules[i];
		int q;

		if (!m->name || !m->namespace ||
		    (in->namespace && !same(m->namespace, in->namespace)) ||
		    (in->module && !same(m->name, in->module)))
			continue;
		q = build_module(in, m, &r->modules[r->n_modules++], err);
		if (q < 0)
			return q;
	}
	qsort(r->modules, r->n_modules, sizeof(*r->modules), cmp_module);
	*ret = TAKE_PTR(r);
	return 0;
}

void kmm_status_report_free(struct kmm_status_report *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_modules; i++) {
		struct kmm_status_module *m = &r->modules[i];

		for (size_t k = 0; k < m->n_nodes; k++) {
			free(m->nodes[k].reason);
			free(m->nodes[k].resolved_image);
			pod_free(m->nodes[k].worker);
			pod_free(m->nodes[k].device_plugin_pod);
		}
		free(m->nodes);
		free(m->images);
		free(m->events);
	}
	free(r->modules);
	free(r);
}
