/* SPDX-License-Identifier: Apache-2.0 */
/* `kmmctl status` output: the report as JSON (for -o json|yaml) and as text tables. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api-status.h"
#include "kmm/shared-json.h"

/* ---- JSON ---- */

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *counts_json(bool present, const struct kmm_daemonset_status *d)
{
	if (!present)
		return json_null();
	return json_pack(
	    "{s:I,s:I,s:I}", "nodesMatchingSelector", (json_int_t)d->nodes_matching_selector_number,
	    "desired", (json_int_t)d->desired_number, "available", (json_int_t)d->available_number);
}

static json_t *pod_json(const struct kmm_status_pod *p)
{
	if (!p)
		return json_null();
	return json_pack("{s:s,s:o,s:s,s:b,s:I,s:o}", "name", p->name, "action",
			 str_or_null(p->action), "phase", p->phase, "ready", p->ready, "restarts",
			 (json_int_t)p->restarts, "detail", str_or_null(p->detail));
}

static json_t *loaded_json(const struct kmm_status_node *n)
{
	if (!n->loaded)
		return json_null();
	return json_pack("{s:o,s:o,s:o,s:o,s:o,s:b}", "version", str_or_null(n->loaded_version),
			 "image", str_or_null(n->loaded_image), "kernel",
			 str_or_null(n->loaded_kernel), "since", str_or_null(n->loaded_since),
			 "bootId", str_or_null(n->loaded_boot_id), "currentBoot",
			 n->loaded_this_boot);
}

static json_t *wanted_json(const struct kmm_status_node *n)
{
	if (!n->configured && !n->wanted_image)
		return json_null();
	return json_pack("{s:b,s:o,s:o,s:o,s:o}", "configured", n->configured, "version",
			 str_or_null(n->wanted_version), "image", str_or_null(n->wanted_image),
			 "kernel", str_or_null(n->wanted_kernel), "imageState",
			 str_or_null(n->image_state));
}

static json_t *device_plugin_json(const struct kmm_status_node *n)
{
	if (!n->has_device_plugin)
		return json_null();
	return json_pack("{s:s,s:b,s:b,s:o}", "state", n->device_plugin_state, "target",
			 n->device_plugin_target, "ready", n->device_plugin_ready, "pod",
			 pod_json(n->device_plugin_pod));
}

static json_t *node_json(const struct kmm_status_node *n)
{
	return json_pack("{s:s,s:o,s:b,s:s,s:o,s:o,s:o,s:{s:b,s:o},s:o,s:o}", "node", n->node,
			 "kernel", str_or_null(n->kernel), "nodeReady", n->node_ready, "state",
			 kmm_status_state_name(n->state), "reason", str_or_null(n->reason),
			 "loaded", loaded_json(n), "wanted", wanted_json(n), "labels", "ready",
			 n->ready_label, "versionReady", str_or_null(n->version_ready_label),
			 "workerPod", pod_json(n->worker), "devicePlugin", device_plugin_json(n));
}

static int append_new(json_t *a, json_t *v)
{
	return v ? json_array_append_new(a, v) : -1;
}

static json_t *module_json(const struct kmm_status_module *m)
{
	_cleanup_json_ json_t *images = json_array(), *events = json_array(), *nodes = json_array();
	json_t *ready = m->ready_status ? json_pack("{s:s,s:o,s:o}", "status", m->ready_status,
						    "reason", str_or_null(m->ready_reason),
						    "message", str_or_null(m->ready_message))
					: json_null();

	if (!images || !events || !nodes || !ready) {
		json_decref(ready);
		return NULL;
	}
	for (size_t i = 0; i < m->n_images; i++)
		if (append_new(images, json_pack("{s:s,s:o,s:o}", "image", m->images[i].image,
						 "kernel", str_or_null(m->images[i].kernel),
						 "state", str_or_null(m->images[i].state))) < 0)
			goto fail;
	for (size_t i = 0; i < m->n_events; i++) {
		const struct kmm_status_event *e = &m->events[i];

		if (append_new(events,
			       json_pack("{s:o,s:o,s:o,s:I,s:o}", "type", str_or_null(e->type),
					 "reason", str_or_null(e->reason), "message",
					 str_or_null(e->message), "count", (json_int_t)e->count,
					 "lastSeen", str_or_null(e->last_seen))) < 0)
			goto fail;
	}
	for (size_t i = 0; i < m->n_nodes; i++)
		if (append_new(nodes, node_json(&m->nodes[i])) < 0)
			goto fail;
	return json_pack("{s:s,s:s,s:o,s:o,s:o,s:o,s:O,s:O,s:O}", "namespace", m->namespace, "name",
			 m->name, "version", str_or_null(m->version), "moduleLoader",
			 counts_json(m->has_loader, &m->loader), "devicePlugin",
			 counts_json(m->has_device_plugin, &m->device_plugin), "ready", ready,
			 "images", images, "events", events, "nodes", nodes);
fail:
	json_decref(ready);
	return NULL;
}

json_t *kmm_status_to_json(const struct kmm_status_report *r)
{
	_cleanup_json_ json_t *mods = json_array();

	if (!mods)
		return NULL;
	for (size_t i = 0; i < r->n_modules; i++)
		if (append_new(mods, module_json(&r->modules[i])) < 0)
			return NULL;
	return json_pack("{s:O}", "modules", mods);
}

/* ---- text ---- */

/* A table of strings printed with columns as wide as their widest cell. */
struct table {
	size_t n_cols, n_rows;
	char **cells; /* n_rows * n_cols, owned */
};

static int table_row(struct table *t, const char *const *cols)
{
	char **c = reallocarray(t->cells, (t->n_rows + 1) * t->n_cols, sizeof(char *));

	if (!c)
		return -ENOMEM;
	t->cells = c;
	c += t->n_rows * t->n_cols;
	/* Counted before filling, so table_free() releases a row that failed half-way. */
	memset(c, 0, t->n_cols * sizeof(char *));
	t->n_rows++;
	for (size_t i = 0; i < t->n_cols; i++)
		if (!(c[i] = strdup(cols[i] ? cols[i] : "-")))
			return -ENOMEM;
	return 0;
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
		free(t->cells[i]);
	free(t->cells);
}

static int table_print(const struct table *t, struct kmm_buf *out)
{
	size_t width[16] = { 0 };

	for (size_t i = 0; i < t->n_rows * t->n_cols; i++) {
		size_t w = strlen(t->cells[i]);

		if (w > width[i % t->n_cols])
			width[i % t->n_cols] = w;
	}
	for (size_t r = 0; r < t->n_rows; r++)
		for (size_t c = 0; c < t->n_cols; c++) {
			const char *cell = t->cells[r * t->n_cols + c];
			bool last = c + 1 == t->n_cols;
			int q = last ? kmm_buf_printf(out, "%s\n", cell)
				     : kmm_buf_printf(out, "%-*s  ", (int)width[c], cell);

			if (q < 0)
				return q;
		}
	return 0;
}

static const char *boot_word(const struct kmm_status_node *n)
{
	if (!n->loaded)
		return "-";
	return n->loaded_this_boot ? "current" : "earlier";
}

static int modules_table(const struct kmm_status_report *r, struct kmm_buf *out)
{
	static const char *const head[] = { "MODULE",  "VERSION",	 "LOADED",
					    "DESIRED", "DEVICE-PLUGINS", "READY" };
	struct table t = { KMM_ARRAY_SIZE(head), 0, NULL };
	int q = table_row(&t, head);

	for (size_t i = 0; q >= 0 && i < r->n_modules; i++) {
		const struct kmm_status_module *m = &r->modules[i];
		char key[512], loaded[32] = "-", desired[32] = "-", dp[64] = "-";
		const char *cols[6] = { key, m->version, loaded, desired, dp, m->ready_status };

		snprintf(key, sizeof(key), "%s/%s", m->namespace, m->name);
		if (m->has_loader) {
			snprintf(loaded, sizeof(loaded), "%d", m->loader.available_number);
			snprintf(desired, sizeof(desired), "%d", m->loader.desired_number);
		}
		if (m->has_device_plugin)
			snprintf(dp, sizeof(dp), "%d/%d", m->device_plugin.available_number,
				 m->device_plugin.desired_number);
		q = table_row(&t, cols);
	}
	if (q >= 0)
		q = table_print(&t, out);
	table_free(&t);
	return q;
}

static int nodes_table(const struct kmm_status_report *r, struct kmm_buf *out)
{
	static const char *const head[] = { "MODULE", "NODE",	      "STATE", "VERSION",
					    "IMAGE",  "LOADED-SINCE", "BOOT",  "DEVICE-PLUGIN" };
	struct table t = { KMM_ARRAY_SIZE(head), 0, NULL };
	int q = table_row(&t, head);

	for (size_t i = 0; q >= 0 && i < r->n_modules; i++) {
		const struct kmm_status_module *m = &r->modules[i];
		char key[512];

		snprintf(key, sizeof(key), "%s/%s", m->namespace, m->name);
		for (size_t k = 0; q >= 0 && k < m->n_nodes; k++) {
			const struct kmm_status_node *n = &m->nodes[k];
			const char *cols[8] = { key,
						n->node,
						kmm_status_state_name(n->state),
						n->loaded ? n->loaded_version : n->wanted_version,
						n->loaded ? n->loaded_image : n->wanted_image,
						n->loaded ? n->loaded_since : NULL,
						boot_word(n),
						n->device_plugin_state };

			q = table_row(&t, cols);
		}
	}
	if (q >= 0 && t.n_rows > 1 && (q = kmm_buf_append_str(out, "\n")) >= 0)
		q = table_print(&t, out);
	table_free(&t);
	return q;
}

static int module_details(const struct kmm_status_module *m, struct kmm_buf *out)
{
	int q = 0;

	for (size_t k = 0; q >= 0 && k < m->n_nodes; k++)
		if (m->nodes[k].reason)
			q = kmm_buf_printf(
			    out, "%s/%s on %s: %s: %s\n", m->namespace, m->name, m->nodes[k].node,
			    kmm_status_state_name(m->nodes[k].state), m->nodes[k].reason);
	for (size_t k = 0; q >= 0 && k < m->n_images; k++)
		q = kmm_buf_printf(out, "%s/%s image %s (kernel %s): %s\n", m->namespace, m->name,
				   m->images[k].image, m->images[k].kernel ?: "?",
				   m->images[k].state ?: "not checked yet");
	for (size_t k = 0; q >= 0 && k < m->n_events; k++) {
		const struct kmm_status_event *e = &m->events[k];

		q = kmm_buf_printf(out, "%s/%s event %s %s %s (x%lld): %s\n", m->namespace, m->name,
				   e->last_seen ?: "-", e->type ?: "-", e->reason ?: "-",
				   (long long)(e->count ? e->count : 1), e->message ?: "");
	}
	return q;
}

int kmm_status_format_table(const struct kmm_status_report *r, struct kmm_buf *out)
{
	_cleanup_buf_ struct kmm_buf details = { 0 };
	int q;

	if (r->n_modules == 0)
		return kmm_buf_append_str(out, "No Modules found.\n");
	kmm_buf_init(&details, out->max);
	q = modules_table(r, out);
	if (q >= 0)
		q = nodes_table(r, out);
	for (size_t i = 0; q >= 0 && i < r->n_modules; i++)
		q = module_details(&r->modules[i], &details);
	/* The reasons, images and events below the tables, after one blank line. */
	if (q >= 0 && details.len > 0 && (q = kmm_buf_append_str(out, "\n")) >= 0)
		q = kmm_buf_append(out, details.data, details.len);
	return q;
}
