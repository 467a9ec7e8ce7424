/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmmctl plan: for each Module and each node (or bare kernel), what KMM would
 * do: the kernel mapping chosen and why, the image, build and sign steps, the
 * in-tree removals and the exact modprobe commands of the worker.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api.h"
#include "kmm/shared-json.h"
#include "kmm/api-kernel.h"
#include "kmm/kube.h"
#include "kmm/shared-options.h"
#include "kmm/shared-strv.h"
#include "src/cli/kmmctl.h"

/* The command line of `kmmctl plan`. */
struct plan_args {
	char **files, **kernels;
	const char *labels, *nodes, *ns, *output, *kubeconfig;
};

static const struct kmm_option plan_options[] = {
	{ "filename", 'f', KMM_OPTION_STRV, "FILE", offsetof(struct plan_args, files), NULL,
	  "manifest file with Modules (YAML or JSON, '-' for stdin)" },
	{ "kernel", 'k', KMM_OPTION_STRV, "K", offsetof(struct plan_args, kernels), NULL,
	  "a node kernel version (uname -r); repeatable" },
	{ "node-labels", 'l', KMM_OPTION_STRING, "L", offsetof(struct plan_args, labels), NULL,
	  "labels of the --kernel targets, as k=v,k2=v2; without it\n"
	  "the Module selector is assumed to match" },
	{ "nodes", 0, KMM_OPTION_STRING, "FILE", offsetof(struct plan_args, nodes), NULL,
	  "Node objects (e.g. kubectl get nodes -o yaml): name, labels,\n"
	  "taints and status.nodeInfo.kernelVersion of each" },
	{ "namespace", 'n', KMM_OPTION_STRING, "NS", offsetof(struct plan_args, ns), NULL,
	  "namespace for Modules that have none (default \"default\");\n"
	  "with --kubeconfig and no -f, where to read Modules from\n"
	  "(default: all namespaces)" },
	{ "output", 'o', KMM_OPTION_CALL, "FORMAT", offsetof(struct plan_args, output),
	  kmmctl_parse_output, "table (default), json or yaml" },
	{ "kubeconfig", 0, KMM_OPTION_STRING, "FILE", offsetof(struct plan_args, kubeconfig), NULL,
	  "plan against the nodes of a live cluster, and its Modules\n"
	  "when no -f is given" },
	{ 0 },
};

static const struct kmm_option_group plan_groups[] = {
	{ .title = "Options:\n", .options = plan_options },
	{ .options = kmm_options_common },
	{ 0 },
};

static const struct kmm_options plan_spec = {
	.prog = PROG,
	.usage =
	    "Usage: " PROG " plan -f FILE [-f FILE...] (--kernel K... | --nodes FILE) [OPTIONS]\n"
	    "\n"
	    "Shows, for every Module in the files and every target, which kernel mapping is\n"
	    "chosen and why, the kmod image, the build and sign steps, the in-tree modules\n"
	    "removed and the exact modprobe commands the worker runs.\n"
	    "\n",
	.groups = plan_groups,
};

struct target {
	char *node;	/* NULL for a bare --kernel */
	char *kernel;	/* as reported by the node */
	json_t *labels; /* an object; NULL: unknown, the selector is assumed to match */
	json_t *taints; /* a copy of the Node's, may be NULL */
};

static void targets_free(struct target *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(t[i].node);
		free(t[i].kernel);
		json_decref(t[i].labels);
		json_decref(t[i].taints);
	}
	free(t);
}

/* "k=v,k2=v2" as a labels object. Returns 0, -ENOMEM, or -EINVAL for a pair without '='. */
static int parse_labels(const char *s, json_t **ret)
{
	_cleanup_strv_free_ char **pairs = NULL;
	_cleanup_json_ json_t *labels = json_object();

	if (!labels || kmm_strv_split(s, ",", &pairs) < 0)
		return -ENOMEM;
	KMM_STRV_FOREACH (p, pairs) {
		char *eq = strchr(p, '=');

		if (!eq)
			return -EINVAL;
		*eq = '\0';
		/* Taken as given, as a Node's labels would be: no UTF-8 check. */
		if (json_object_set_new_nocheck(labels, p, json_string_nocheck(eq + 1)) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(labels);
	return 0;
}

static json_t *strv_json(char *const *v)
{
	json_t *a = json_array();

	KMM_STRV_FOREACH (s, v) {
		if (a && json_array_append_new(a, json_string(s)) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *argv_json_cmd(char **argv)
{
	_cleanup_free_ char *s = NULL;

	if (!argv)
		return json_null();
	s = kmm_strv_join(argv, " ");
	return s ? json_string(s) : NULL;
}

/* The build step: merged args plus the ones KMM injects (they win over user args). */
static json_t *build_json(const struct kmm_module *m, const struct kmm_resolved_mapping *res)
{
	const struct kmm_build *b = res->build;
	const char *injected_names[] = { "KERNEL_VERSION", "KERNEL_FULL_VERSION", "MOD_NAME",
					 "MOD_NAMESPACE" };
	const char *injected_values[] = { res->kernel, res->kernel, m->name, m->namespace };
	json_t *o = kmm_build_to_json(b), *args = json_array();

	if (!o || !args)
		goto fail;
	for (size_t i = 0; i < b->n_build_args; i++) {
		bool overridden = false;

		for (size_t k = 0; k < KMM_ARRAY_SIZE(injected_names); k++)
			if (strcmp(b->build_args[i].name, injected_names[k]) == 0)
				overridden = true;
		if (!overridden && json_array_append_new(
				       args, json_pack("{s:s,s:s}", "name", b->build_args[i].name,
						       "value", b->build_args[i].value)) < 0)
			goto fail;
	}
	for (size_t k = 0; k < KMM_ARRAY_SIZE(injected_names); k++)
		if (json_array_append_new(args, json_pack("{s:s,s:s}", "name", injected_names[k],
							  "value", injected_values[k])) < 0)
			goto fail;
	if (json_object_set_new(o, "buildArgs", args) < 0)
		goto fail_o;
	if (json_object_set_new(o, "destination", json_string(res->container_image)) < 0)
		goto fail_o;
	return o;
fail:
	json_decref(args);
fail_o:
	json_decref(o);
	return NULL;
}

static json_t *sign_json(const struct kmm_resolved_mapping *res)
{
	json_t *o = kmm_sign_to_json(res->sign);

	if (!o)
		return NULL;
	/* With a build, the build output is what gets signed (unsignedImage is ignored). */
	if (res->build &&
	    json_object_set_new(o, "unsignedImage", json_string(res->container_image)) < 0) {
		json_decref(o);
		return NULL;
	}
	if (json_object_set_new(o, "destination", json_string(res->container_image)) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int plan_one(const struct kmm_module *m, const struct kmm_mapper *mp, const struct target *t,
		    json_t *rows, struct kmm_error **err)
{
	_cleanup_(kmm_resolved_mapping_freep) struct kmm_resolved_mapping *res = NULL;
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *cfg = NULL;
	_cleanup_strv_free_ char **load = NULL, **unload = NULL, **intree = NULL;
	_cleanup_free_ char *why = NULL, *key = NULL;
	const json_t *taint;
	json_t *row;
	size_t term;
	int r;

	if (asprintf(&key, "%s/%s", m->namespace, m->name) < 0)
		return -ENOMEM;
	row = json_pack("{s:s,s:o,s:s}", "module", key, "node",
			t->node ? json_string(t->node) : json_null(), "kernel", t->kernel);
	if (!row || json_array_append_new(rows, row) < 0)
		return -ENOMEM;
	if (t->labels && !kmm_module_selects(&m->spec, t->labels, &term)) {
		if (asprintf(&why, "selector %s=%s does not match the node labels",
			     m->spec.selector.keys[term], m->spec.selector.values[term]) < 0)
			why = NULL;
		return json_object_set_new(row, "targeted", json_false()) < 0 ||
			       json_object_set_new(row, "reason",
						   json_string(why ? why : "selector")) < 0
			   ? -ENOMEM
			   : 0;
	}
	if ((taint = kmm_module_untolerated_taint(&m->spec, t->taints))) {
		if (asprintf(&why, "node taint %s:%s is not tolerated",
			     json_string_value(json_object_get(taint, "key")),
			     json_string_value(json_object_get(taint, "effect"))) < 0)
			return -ENOMEM;
		return json_object_set_new(row, "targeted", json_false()) < 0 ||
			       json_object_set_new(row, "reason", json_string(why)) < 0
			   ? -ENOMEM
			   : 0;
	}
	if (!m->spec.module_loader)
		return json_object_set_new(row, "targeted", json_false()) < 0 ||
			       json_object_set_new(
				   row, "reason",
				   json_string("no moduleLoader (device plugin or DRA only)")) < 0
			   ? -ENOMEM
			   : 0;
	r = kmm_mapper_resolve(mp, m, t->kernel, &res, err);
	if (r < 0) {
		json_object_set_new(row, "targeted", json_false());
		json_object_set_new(row, "error", json_string(kmm_error_message(*err)));
		return r;
	}
	if (r == 0)
		return json_object_set_new(row, "targeted", json_false()) < 0 ||
			       json_object_set_new(
				   row, "reason",
				   json_string("no kernel mapping matches this kernel")) < 0
			   ? -ENOMEM
			   : 0;
	r = kmm_module_config_for(m, res, &cfg, err);
	if (r < 0)
		return r;
	if (kmm_modprobe_load_argv(cfg, &load) < 0 || kmm_modprobe_unload_argv(cfg, &unload) < 0 ||
	    kmm_modprobe_in_tree_argv(cfg, &intree) < 0)
		return -ENOMEM;
	if (json_object_set_new(row, "targeted", json_true()) < 0 ||
	    json_object_set_new(row, "reason", json_string(res->reason)) < 0 ||
	    json_object_set_new(row, "mapping", json_integer((json_int_t)res->index)) < 0 ||
	    json_object_set_new(row, "containerImage", json_string(res->container_image)) < 0 ||
	    json_object_set_new(row, "imagePullPolicy", json_string(cfg->image_pull_policy)) < 0 ||
	    json_object_set_new(row, "build", res->build ? build_json(m, res) : json_null()) < 0 ||
	    json_object_set_new(row, "sign", res->sign ? sign_json(res) : json_null()) < 0 ||
	    json_object_set_new(row, "inTreeModulesToRemove",
				strv_json(res->in_tree_modules_to_remove)) < 0 ||
	    json_object_set_new(row, "commands",
				json_pack("{s:o,s:o,s:o}", "inTreeRemoval", argv_json_cmd(intree),
					  "load", argv_json_cmd(load), "unload",
					  argv_json_cmd(unload))) < 0 ||
	    json_object_set_new(row, "workerConfig", kmm_module_config_to_json(cfg)) < 0)
		return -ENOMEM;
	return 0;
}

static const char *jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "-";
}

static void print_table(const json_t *rows)
{
	size_t i;
	json_t *r;

	printf("%-28s %-16s %-30s %-8s %-6s %-5s %s\n", "MODULE", "NODE", "KERNEL", "MAPPING",
	       "BUILD", "SIGN", "IMAGE");
	json_array_foreach ((json_t *)rows, i, r) {
		char mapping[32] = "-";
		bool on = json_is_true(json_object_get(r, "targeted"));

		if (on)
			snprintf(mapping, sizeof(mapping), "[%lld]",
				 (long long)json_integer_value(json_object_get(r, "mapping")));
		printf("%-28s %-16s %-30s %-8s %-6s %-5s %s\n", jstr(r, "module"), jstr(r, "node"),
		       jstr(r, "kernel"), on ? mapping : "none",
		       json_is_object(json_object_get(r, "build")) ? "yes" : "-",
		       json_is_object(json_object_get(r, "sign")) ? "yes" : "-",
		       on ? jstr(r, "containerImage") : "-");
	}
	json_array_foreach ((json_t *)rows, i, r) {
		const json_t *b = json_object_get(r, "build"), *s = json_object_get(r, "sign");
		const json_t *cmds = json_object_get(r, "commands");
		const char *node = json_string_value(json_object_get(r, "node"));

		printf("\n%s on %s%s%s (kernel %s):\n", jstr(r, "module"), node ? "node " : "",
		       node ? node : "", node ? "" : "a node", jstr(r, "kernel"));
		if (json_object_get(r, "error")) {
			printf("  error:    %s\n", jstr(r, "error"));
			continue;
		}
		printf("  %s:  %s\n",
		       json_is_true(json_object_get(r, "targeted")) ? "chosen" : "skipped",
		       jstr(r, "reason"));
		if (!json_is_true(json_object_get(r, "targeted")))
			continue;
		printf("  image:    %s (pull policy %s)\n", jstr(r, "containerImage"),
		       jstr(r, "imagePullPolicy"));
		if (json_is_object(b)) {
			size_t k;
			json_t *a;

			printf(
			    "  build:    kaniko with ConfigMap %s (key dockerfile), push to %s\n",
			    jstr(json_object_get(b, "dockerfileConfigMap"), "name"),
			    jstr(b, "destination"));
			json_array_foreach (json_object_get(b, "buildArgs"), k, a)
				printf("            --build-arg %s=%s\n", jstr(a, "name"),
				       jstr(a, "value"));
		}
		if (json_is_object(s)) {
			size_t k;
			json_t *f;

			printf(
			    "  sign:     %s with Secrets %s (key) and %s (cert), push to %s\n",
			    jstr(s, "unsignedImage"), jstr(json_object_get(s, "keySecret"), "name"),
			    jstr(json_object_get(s, "certSecret"), "name"), jstr(s, "destination"));
			json_array_foreach (json_object_get(s, "filesToSign"), k, f)
				printf("            sign-file sha256 %s\n", json_string_value(f));
		}
		printf("  in-tree:  %s\n", json_is_string(json_object_get(cmds, "inTreeRemoval"))
					       ? jstr(cmds, "inTreeRemoval")
					       : "(none)");
		printf("  load:     %s\n", jstr(cmds, "load"));
		printf("  unload:   %s\n", jstr(cmds, "unload"));
	}
}

/* Adds a target for a Node object. */
static int add_node_target(const json_t *j, const char *origin, struct target **t, size_t *n,
			   struct kmm_error **err)
{
	const char *name =
	    json_string_value(json_object_get(json_object_get(j, "metadata"), "name"));
	const char *kernel = json_string_value(json_object_get(
	    json_object_get(json_object_get(j, "status"), "nodeInfo"), "kernelVersion"));
	const json_t *labels = json_object_get(json_object_get(j, "metadata"), "labels");
	const json_t *taints = json_object_get(json_object_get(j, "spec"), "taints");
	struct target *nt;

	if (!name || !kernel)
		return kmm_error_make(
		    err, EINVAL, "%s: Node without metadata.name or status.nodeInfo.kernelVersion",
		    origin);
	nt = reallocarray(*t, *n + 1, sizeof(**t));
	if (!nt)
		return kmm_error_make(err, ENOMEM, "out of memory");
	*t = nt;
	nt = &(*t)[(*n)++];
	/* The target outlives the document: it keeps copies. A Node without labels has none. */
	*nt = (struct target){ strdup(name), strdup(kernel),
			       json_is_object(labels) ? json_deep_copy(labels) : json_object(),
			       NULL };
	if (!nt->node || !nt->kernel || !nt->labels)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (taints && !(nt->taints = json_deep_copy(taints)))
		return kmm_error_make(err, ENOMEM, "out of memory");
	return 0;
}

static int read_nodes(const char *file, struct target **t, size_t *n, struct kmm_error **err)
{
	struct kmmctl_docs docs = { 0 };
	char *files[] = { (char *)file, NULL };
	int r;

	r = kmmctl_read_docs(files, 1, &docs, err);
	for (size_t i = 0; r >= 0 && i < docs.n; i++) {
		const char *kind = json_string_value(json_object_get(docs.docs[i].json, "kind"));

		if (kind && strcmp(kind, "Node") == 0)
			r = add_node_target(docs.docs[i].json, docs.docs[i].origin, t, n, err);
	}
	kmmctl_docs_done(&docs);
	return r;
}

static const struct kmm_kube_resource modules_resource = { KMM_API_GROUP, "v1beta1", "modules",
							   true };

/* Nodes (always) and, when `want_modules`, Modules from a live cluster. */
static int read_cluster(const char *kubeconfig, const char *ns, bool want_modules,
			struct target **t, size_t *n, struct kmmctl_docs *docs,
			struct kmm_error **err)
{
	_cleanup_kube_client_ struct kmm_kube_client *c = NULL;
	_cleanup_json_ json_t *nodes = NULL, *mods = NULL;
	struct kmm_kube_target nt = { &kmm_kube_nodes, NULL, NULL, NULL };
	struct kmm_kube_target mt = { &modules_resource, ns, NULL, NULL };
	size_t i;
	json_t *item;
	int r;

	r = kmmctl_connect(kubeconfig, &c, err);
	if (r >= 0)
		r = kmm_kube_list_all(c, &nt, NULL, &nodes, err);
	if (r < 0)
		return kmm_error_wrap(err, "list nodes");
	json_array_foreach (json_object_get(nodes, "items"), i, item) {
		r = add_node_target(item, "cluster", t, n, err);
		if (r < 0)
			return r;
	}
	if (!want_modules)
		return 0;
	r = kmm_kube_list_all(c, &mt, NULL, &mods, err);
	if (r < 0)
		return kmm_error_wrap(err, "list modules");
	json_array_foreach (json_object_get(mods, "items"), i, item) {
		struct kmmctl_doc *d = reallocarray(docs->docs, docs->n + 1, sizeof(*d));
		json_t *copy = json_deep_copy(item);

		if (!d || !copy) {
			json_decref(copy);
			return kmm_error_make(err, ENOMEM, "out of memory");
		}
		docs->docs = d;
		(void)kmmctl_set_kind(copy, "Module");
		d[docs->n].json = copy;
		d[docs->n].origin = strdup("cluster");
		if (!d[docs->n].origin) {
			json_decref(copy);
			return kmm_error_make(err, ENOMEM, "out of memory");
		}
		docs->n++;
	}
	return 0;
}

/*
 * Appends a target per --kernel, with the --node-labels when given. Returns 0,
 * -ENOMEM, or -EINVAL for labels that do not parse.
 */
static int add_kernel_targets(char **kernels, const char *labels, struct target **targets,
			      size_t *n_targets)
{
	KMM_STRV_FOREACH (k, kernels) {
		struct target *nt = reallocarray(*targets, *n_targets + 1, sizeof(**targets));

		if (!nt)
			return -ENOMEM;
		*targets = nt;
		nt = &nt[(*n_targets)++];
		*nt = (struct target){ NULL, strdup(k), NULL, NULL };
		if (!nt->kernel)
			return -ENOMEM;
		if (labels && parse_labels(labels, &nt->labels) < 0)
			return -EINVAL;
	}
	return 0;
}

int kmmctl_plan(int argc, char **argv)
{
	_cleanup_strv_free_ char **files = NULL, **kernels = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;
	_cleanup_json_ json_t *rows = NULL;
	struct plan_args args = { .output = "table" };
	struct kmmctl_docs docs = { 0 };
	struct target *targets = NULL;
	size_t n_targets = 0, n_modules = 0;
	const char *labels, *nodes, *ns, *output, *kubeconfig;
	int first, r, rc = KMM_EXIT_OK;

	r = kmm_options_parse(&plan_spec, argc, argv, &args, &first);
	files = args.files;
	kernels = args.kernels;
	if (r >= 0)
		return r;
	labels = args.labels;
	nodes = args.nodes;
	ns = args.ns;
	output = args.output;
	kubeconfig = args.kubeconfig;
	if (first < argc)
		return kmm_options_usage_error(PROG, "unexpected argument '%s'", argv[first]);
	if (!files && !kubeconfig)
		return kmm_options_usage_error(PROG,
					       "plan needs -f FILE (or --kubeconfig to use the "
					       "cluster's Modules)");
	if (!kernels && !nodes && !kubeconfig)
		return kmm_options_usage_error(
		    PROG, "plan needs --kernel K, --nodes FILE or --kubeconfig");

	r = add_kernel_targets(kernels, labels, &targets, &n_targets);
	if (r == -EINVAL) {
		targets_free(targets, n_targets);
		return kmm_options_usage_error(PROG, "invalid --node-labels '%s' (k=v,k2=v2)",
					       labels);
	}
	if (r < 0)
		goto oom;
	if ((nodes && read_nodes(nodes, &targets, &n_targets, &err) < 0) ||
	    (kubeconfig &&
	     read_cluster(kubeconfig, ns, !files, &targets, &n_targets, &docs, &err) < 0) ||
	    (files && kmmctl_read_docs(files, kmm_strv_length(files), &docs, &err) < 0)) {
		fprintf(stderr, "%s: %s\n", PROG, kmm_error_message(err));
		rc = KMM_EXIT_FAILURE;
		goto out;
	}
	rows = json_array();
	if (!rows)
		goto oom;
	for (size_t i = 0; i < docs.n; i++) {
		const json_t *j = docs.docs[i].json;
		_cleanup_(kmm_module_freep) struct kmm_module *m = NULL;
		_cleanup_(kmm_mapper_freep) struct kmm_mapper *mp = NULL;
		_cleanup_error_ struct kmm_error *e = NULL;
		const char *kind = kmm_api_kind_of(j);

		if (!kind || strcmp(kind, "Module") != 0)
			continue;
		n_modules++;
		if (kmm_module_from_json(j, 0, &m, &e) < 0 || kmm_mapper_new(m, &mp, &e) < 0) {
			fprintf(stderr, "%s: %s: %s\n", PROG, docs.docs[i].origin,
				kmm_error_message(e));
			rc = KMM_EXIT_FAILURE;
			continue;
		}
		if (!m->namespace && !(m->namespace = strdup(ns ? ns : "default")))
			goto oom;
		for (size_t t = 0; t < n_targets; t++) {
			_cleanup_error_ struct kmm_error *pe = NULL;

			r = plan_one(m, mp, &targets[t], rows, &pe);
			if (r == -ENOMEM)
				goto oom;
			if (r < 0)
				rc = KMM_EXIT_FAILURE;
		}
	}
	if (n_modules == 0) {
		fprintf(stderr, "%s: no Module in the input\n", PROG);
		rc = KMM_EXIT_FAILURE;
		goto out;
	}
	if (strcmp(output, "table") == 0)
		print_table(rows);
	else if (kmmctl_print(rows, output) < 0)
		rc = KMM_EXIT_FAILURE;
out:
	targets_free(targets, n_targets);
	kmmctl_docs_done(&docs);
	return rc;
oom:
	fprintf(stderr, "%s: out of memory\n", PROG);
	rc = KMM_EXIT_FAILURE;
	goto out;
}
