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

static int parse_output(const struct kmm_option *o, const char *arg, void *ctx,
			struct kmm_error **err)
{
	struct status_args *a = ctx;

	(void)o;
	if (strcmp(arg, "table") != 0 && strcmp(arg, "json") != 0 && strcmp(arg, "yaml") != 0)
		return kmm_error_make(err, EINVAL, "invalid --output '%s' (table, json or yaml)",
				      arg);
	a->output = arg;
	return 0;
}

static const struct kmm_option status_options[] = {
	{ "namespace", 'n', KMM_OPTION_STRING, "NS", offsetof(struct status_args, ns), NULL,
	  "only the Modules of this namespace (default: all namespaces)" },
	{ "node", 0, KMM_OPTION_STRING, "NODE", offsetof(struct status_args, node), NULL,
	  "only this node" },
	{ "output", 'o', KMM_OPTION_CALL, "FORMAT", 0, parse_output,
	  "table (default), json or yaml" },
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

/*
 * Decodes every item of a list with `decode` into a new array. Items of a
 * list carry no apiVersion/kind: they are added first. An item that does not
 * decode is reported on stderr and left out.
 */
static int decode_items(const json_t *list, const char *kind,
			int (*decode)(const json_t *, unsigned, void **, struct kmm_error **),
			void ***ret, size_t *ret_n)
{
	const json_t *items = json_object_get(list, "items");
	void **v = calloc(json_array_size(items) + 1, sizeof(void *));
	size_t i, n = 0;
	json_t *item;

	if (!v)
		return -ENOMEM;
	json_array_foreach (items, i, item) {
		_cleanup_error_ struct kmm_error *e = NULL;

		json_object_set_new(item, "apiVersion", json_string(KMM_API_VERSION));
		json_object_set_new(item, "kind", json_string(kind));
		if (decode(item, 0, &v[n], &e) < 0) {
			fprintf(stderr, "%s: %s %s: %s\n", PROG, kind,
				json_string_value(
				    json_object_get(json_object_get(item, "metadata"), "name")),
				kmm_error_message(e));
			continue;
		}
		n++;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

static int decode_module(const json_t *j, unsigned f, void **ret, struct kmm_error **err)
{
	return kmm_module_from_json(j, f, (struct kmm_module **)ret, err);
}

static int decode_nmc(const json_t *j, unsigned f, void **ret, struct kmm_error **err)
{
	return kmm_nmc_from_json(j, f, (struct kmm_nmc **)ret, err);
}

static int decode_mic(const json_t *j, unsigned f, void **ret, struct kmm_error **err)
{
	return kmm_image_config_from_json(j, f, (struct kmm_image_config **)ret, err);
}

static int read_cluster(const struct status_args *a, struct cluster *cl, struct kmm_error **err)
{
	_cleanup_kube_config_ struct kmm_kube_config *cfg = NULL;
	_cleanup_kube_client_ struct kmm_kube_client *c = NULL;

	if (kmm_kube_config_load_default(a->kubeconfig, NULL, &cfg, err) < 0 ||
	    kmm_kube_client_new(cfg, NULL, &c, err) < 0)
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
	if (decode_items(cl->modules, "Module", decode_module, (void ***)&cl->m, &cl->n_m) < 0 ||
	    decode_items(cl->nmcs, "NodeModulesConfig", decode_nmc, (void ***)&cl->n, &cl->n_n) <
		0 ||
	    decode_items(cl->mics, "ModuleImagesConfig", decode_mic, (void ***)&cl->c, &cl->n_c) <
		0)
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
