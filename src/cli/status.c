/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmmctl status: per Module and node, what is loaded, what is pending and
 * why, and the device plugin, read from a live cluster. This file lists the
 * objects; lib/api/status.c decides what they say.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api-status.h"
#include "kmm/api.h"
#include "kmm/kube.h"
#include "kmm/shared-json.h"
#include "kmm/shared-options.h"
#include "src/cli/kmmctl.h"

struct status_args {
	const char *ns, *node, *output, *kubeconfig;
};

static const struct kmm_option status_options[] = {
	{ "namespace", 'n', KMM_OPTION_STRING, "NS", offsetof(struct status_args, ns), NULL,
	  "only the Modules of this namespace (default: all namespaces)" },
	{ "node", 0, KMM_OPTION_STRING, "NODE", offsetof(struct status_args, node), NULL,
	  "only this node" },
	{ "output", 'o', KMM_OPTION_CALL, "FORMAT", offsetof(struct status_args, output),
	  kmmctl_parse_output, "table (default), json or yaml" },
	{ "kubeconfig", 0, KMM_OPTION_STRING, "FILE", offsetof(struct status_args, kubeconfig),
	  NULL, "the cluster's kubeconfig (default $KUBECONFIG, then in-cluster)" },
	{ 0 },
};

static const struct kmm_option_group status_groups[] = {
	{ .title = "Options:\n", .options = status_options },
	{ .options = kmm_options_common },
	{ 0 },
};

static const struct kmm_options status_spec = {
	.prog = PROG,
	.usage = "Usage: " PROG " status [MODULE] [-n NS] [--node NODE] [-o table|json|yaml]\n"
		 "\n"
		 "Shows, for every Module (or MODULE) and node, what is loaded (version, image,\n"
		 "since which boot), what is pending and why, and the device plugin, from the\n"
		 "cluster's Modules, NodeModulesConfigs, Nodes, pods, ModuleImagesConfigs and\n"
		 "Events.\n"
		 "\n",
	.groups = status_groups,
};

static const struct kmm_kube_resource modules_res = { KMM_API_GROUP, "v1beta1", "modules", true };
static const struct kmm_kube_resource nmcs_res = { KMM_API_GROUP, "v1beta1", "nodemodulesconfigs",
						   false };
static const struct kmm_kube_resource mics_res = { KMM_API_GROUP, "v1beta1", "moduleimagesconfigs",
						   true };

/* The cluster's objects and their decoded forms. */
struct cluster {
	json_t *modules, *nmcs, *mics, *nodes, *pods, *events; /* LIST results */
	struct kmm_module **m;
	struct kmm_nmc **n;
	struct kmm_image_config **c;
	size_t n_m, n_n, n_c;
};

static void cluster_done(struct cluster *cl)
{
	for (size_t i = 0; i < cl->n_m; i++)
		kmm_module_free(cl->m[i]);
	for (size_t i = 0; i < cl->n_n; i++)
		kmm_nmc_free(cl->n[i]);
	for (size_t i = 0; i < cl->n_c; i++)
		kmm_image_config_free(cl->c[i]);
	free(cl->m);
	free(cl->n);
	free(cl->c);
	json_decref(cl->modules);
	json_decref(cl->nmcs);
	json_decref(cl->mics);
	json_decref(cl->nodes);
	json_decref(cl->pods);
	json_decref(cl->events);
}

static int list(struct kmm_kube_client *c, const struct kmm_kube_resource *res, const char *ns,
		const char *labels, const char *fields, const char *what, json_t **ret,
		struct kmm_error **err)
{
	struct kmm_kube_target t = { res, ns, NULL, NULL };
	struct kmm_kube_list_options o = { .label_selector = labels, .field_selector = fields };

	if (kmm_kube_list_all(c, &t, &o, ret, err) < 0)
		return kmm_error_wrap(err, "list %s", what);
	return 0;
}

static void skipped(const char *kind, const json_t *item, const struct kmm_error *e)
{
	fprintf(stderr, "%s: %s %s left out: %s\n", PROG, kind,
		json_string_value(json_object_get(json_object_get(item, "metadata"), "name")),
		kmm_error_message(e));
}

/*
 * Decodes the items of the three kmm lists. An item that does not decode is
 * reported on stderr and left out; the others still make a report.
 */
static int decode_all(struct cluster *cl)
{
	const json_t *mods = json_object_get(cl->modules, "items");
	const json_t *nmcs = json_object_get(cl->nmcs, "items");
	const json_t *mics = json_object_get(cl->mics, "items");
	size_t i;
	json_t *item;

	cl->m = calloc(json_array_size(mods) + 1, sizeof(*cl->m));
	cl->n = calloc(json_array_size(nmcs) + 1, sizeof(*cl->n));
	cl->c = calloc(json_array_size(mics) + 1, sizeof(*cl->c));
	if (!cl->m || !cl->n || !cl->c)
		return -ENOMEM;
	json_array_foreach (mods, i, item) {
		_cleanup_error_ struct kmm_error *e = NULL;

		if (kmmctl_set_kind(item, "Module") < 0)
			return -ENOMEM;
		if (kmm_module_from_json(item, 0, &cl->m[cl->n_m], &e) < 0)
			skipped("Module", item, e);
		else
			cl->n_m++;
	}
	json_array_foreach (nmcs, i, item) {
		_cleanup_error_ struct kmm_error *e = NULL;

		if (kmmctl_set_kind(item, "NodeModulesConfig") < 0)
			return -ENOMEM;
		if (kmm_nmc_from_json(item, 0, &cl->n[cl->n_n], &e) < 0)
			skipped("NodeModulesConfig", item, e);
		else
			cl->n_n++;
	}
	json_array_foreach (mics, i, item) {
		_cleanup_error_ struct kmm_error *e = NULL;

		if (kmmctl_set_kind(item, "ModuleImagesConfig") < 0)
			return -ENOMEM;
		if (kmm_image_config_from_json(item, 0, &cl->c[cl->n_c], &e) < 0)
			skipped("ModuleImagesConfig", item, e);
		else
			cl->n_c++;
	}
	return 0;
}

static int read_cluster(const struct status_args *a, struct cluster *cl, struct kmm_error **err)
{
	_cleanup_kube_client_ struct kmm_kube_client *c = NULL;

	if (kmmctl_connect(a->kubeconfig, &c, err) < 0)
		return -1;
	/* Worker and device-plugin pods all carry the module.name label. */
	if (list(c, &modules_res, a->ns, NULL, NULL, "modules", &cl->modules, err) < 0 ||
	    list(c, &nmcs_res, NULL, NULL, NULL, "nodemodulesconfigs", &cl->nmcs, err) < 0 ||
	    list(c, &mics_res, a->ns, NULL, NULL, "moduleimagesconfigs", &cl->mics, err) < 0 ||
	    list(c, &kmm_kube_nodes, NULL, NULL, NULL, "nodes", &cl->nodes, err) < 0 ||
	    list(c, &kmm_kube_pods, a->ns, KMM_LABEL_MODULE_NAME, NULL, "pods", &cl->pods, err) <
		0 ||
	    list(c, &kmm_kube_events, a->ns, NULL, "involvedObject.kind=Module", "events",
		 &cl->events, err) < 0)
		return -1;
	if (decode_all(cl) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	return 0;
}

static int print_report(const struct kmm_status_report *r, const char *output)
{
	_cleanup_buf_ struct kmm_buf out = { 0 };
	_cleanup_json_ json_t *j = NULL;

	if (strcmp(output, "table") != 0) {
		j = kmm_status_to_json(r);
		return j ? kmmctl_print(j, output) : -ENOMEM;
	}
	kmm_buf_init(&out, 0);
	if (kmm_status_format_table(r, &out) < 0)
		return -ENOMEM;
	fputs(kmm_buf_str(&out), stdout);
	return 0;
}

int kmmctl_status(int argc, char **argv)
{
	_cleanup_(kmm_status_report_freep) struct kmm_status_report *report = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;
	struct status_args args = { .output = "table" };
	struct cluster cl = { 0 };
	struct kmm_status_input in = { 0 };
	const char *module = NULL;
	int first, r, rc = KMM_EXIT_FAILURE;

	r = kmm_options_parse(&status_spec, argc, argv, &args, &first);
	if (r >= 0)
		return r;
	if (first < argc)
		module = argv[first++];
	if (first < argc)
		return kmm_options_usage_error(PROG, "unexpected argument '%s'", argv[first]);
	if (read_cluster(&args, &cl, &err) < 0)
		goto out;
	in = (struct kmm_status_input){
		.modules = cl.m,
		.n_modules = cl.n_m,
		.nmcs = cl.n,
		.n_nmcs = cl.n_n,
		.mics = cl.c,
		.n_mics = cl.n_c,
		.nodes = json_object_get(cl.nodes, "items"),
		.pods = json_object_get(cl.pods, "items"),
		.events = json_object_get(cl.events, "items"),
		.namespace = args.ns,
		.module = module,
		.node = args.node,
	};
	if (kmm_status_build(&in, &report, &err) < 0)
		goto out;
	if (module && report->n_modules == 0) {
		kmm_error_make(&err, ENOENT, "Module %s not found%s%s", module,
			       args.ns ? " in namespace " : "", args.ns ? args.ns : "");
		goto out;
	}
	if (print_report(report, args.output) < 0) {
		kmm_error_make(&err, ENOMEM, "out of memory");
		goto out;
	}
	rc = KMM_EXIT_OK;
out:
	if (rc != KMM_EXIT_OK)
		fprintf(stderr, "%s: %s\n", PROG, kmm_error_message(err));
	/* The report borrows from the cluster's objects: it goes first. */
	kmm_status_report_free(TAKE_PTR(report));
	cluster_done(&cl);
	return rc;
}
