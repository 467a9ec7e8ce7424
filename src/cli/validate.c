/* SPDX-License-Identifier: Apache-2.0 */
/* kmmctl validate: the webhook's rules, offline, on manifest files. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api.h"
#include "kmm/api-hub.h"
#include "kmm/shared-options.h"
#include "kmm/shared-strv.h"
#include "src/cli/kmmctl.h"

/* The command line of `kmmctl validate`. */
struct validate_args {
	char **files;
	const char *ns;
	int minor; /* --kube-version's, or -1 */
	bool first;
	bool quiet;
};

static int parse_kube_version(const struct kmm_option *o, const char *arg, void *ctx,
			      struct kmm_error **err)
{
	struct validate_args *a = ctx;

	(void)o;
	(void)err;
	a->minor = kmm_kube_version_minor(arg);
	return a->minor < 0 || !strchr(arg, '.') ? -EINVAL : 0;
}

static const struct kmm_option validate_options[] = {
	{ "filename", 'f', KMM_OPTION_STRV, "FILE", offsetof(struct validate_args, files), NULL,
	  "manifest file (YAML or JSON, several documents allowed)" },
	{ "namespace", 'n', KMM_OPTION_STRING, "NS", offsetof(struct validate_args, ns), NULL,
	  "namespace for objects that have none (default \"default\")" },
	{ "kube-version", 0, KMM_OPTION_CALL, "1.N", 0, parse_kube_version,
	  "check the DRA version gate against this apiserver version\n(default: not checked)" },
	{ "first", 0, KMM_OPTION_FLAG, NULL, offsetof(struct validate_args, first), NULL,
	  "report only the first violation per object, as the webhook" },
	{ "quiet", 'q', KMM_OPTION_FLAG, NULL, offsetof(struct validate_args, quiet), NULL,
	  "print only invalid objects" },
	{ 0 },
};

static const struct kmm_option_group validate_groups[] = {
	{ .title = "Options:\n", .options = validate_options },
	{ .options = kmm_options_common },
	{ 0 },
};

static const struct kmm_options validate_spec = {
	.prog = PROG,
	.usage =
	    "Usage: " PROG " validate -f FILE [-f FILE...] [OPTIONS]\n"
	    "\n"
	    "Checks kmm.sigs.x-k8s.io objects (Module, PreflightValidation, NodeModulesConfig,\n"
	    "ModuleImagesConfig, ModuleBuildSignConfig) and hub.kmm.sigs.x-k8s.io\n"
	    "ManagedClusterModules with the schema and the rules of the\n"
	    "validating webhook, without a cluster. Unknown fields are errors (as with kubectl's\n"
	    "strict field validation). Other kinds in the files are skipped. FILE may be '-'.\n"
	    "Exits 1 if any object is invalid.\n"
	    "\n",
	.groups = validate_groups,
};

static int validate_one(const json_t *j, const char *kind, const char *def_ns, int minor, bool all,
			char **ret_what, struct kmm_error **err)
{
	const char *name =
	    json_string_value(json_object_get(json_object_get(j, "metadata"), "name"));
	int r;

	if (asprintf(ret_what, "%s %s", kind, name ? name : "(unnamed)") < 0) {
		*ret_what = NULL;
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	if (strcmp(kind, "Module") == 0) {
		_cleanup_(kmm_module_freep) struct kmm_module *m = NULL;

		r = kmm_module_from_json(j, KMM_API_STRICT, &m, err);
		if (r < 0)
			return r;
		if (!m->namespace && !(m->namespace = strdup(def_ns)))
			return kmm_error_make(err, ENOMEM, "out of memory");
		free(*ret_what);
		if (asprintf(ret_what, "Module %s/%s", m->namespace, m->name) < 0) {
			*ret_what = NULL;
			return kmm_error_make(err, ENOMEM, "out of memory");
		}
		return kmm_module_validate(m, NULL, minor, all, err);
	}
	if (strcmp(kind, KMM_HUB_KIND_MCM) == 0) {
		_cleanup_(kmm_mcm_freep) struct kmm_mcm *m = NULL;

		r = kmm_mcm_from_json(j, KMM_API_STRICT, &m, err);
		return r < 0 ? r : kmm_mcm_validate(m, NULL, all, err);
	}
	if (strcmp(kind, "PreflightValidation") == 0) {
		_cleanup_(kmm_pfv_freep) struct kmm_pfv *p = NULL;

		r = kmm_pfv_from_json(j, KMM_API_STRICT, &p, err);
		return r < 0 ? r : kmm_pfv_validate(p, err);
	}
	if (strcmp(kind, "NodeModulesConfig") == 0) {
		_cleanup_(kmm_nmc_freep) struct kmm_nmc *n = NULL;

		return kmm_nmc_from_json(j, KMM_API_STRICT, &n, err);
	}
	{
		_cleanup_(kmm_image_config_freep) struct kmm_image_config *c = NULL;

		return kmm_image_config_from_json(j, KMM_API_STRICT, &c, err);
	}
}

int kmmctl_validate(int argc, char **argv)
{
	_cleanup_strv_free_ char **files = NULL;
	struct validate_args args = { .ns = "default", .minor = -1 };
	struct kmmctl_docs docs = { 0 };
	_cleanup_error_ struct kmm_error *err = NULL;
	const char *ns;
	bool all, quiet;
	int minor, first, r;
	size_t invalid = 0, checked = 0;

	r = kmm_options_parse(&validate_spec, argc, argv, &args, &first);
	files = args.files;
	if (r >= 0)
		return r;
	ns = args.ns;
	minor = args.minor;
	all = !args.first;
	quiet = args.quiet;
	if (first < argc)
		return kmm_options_usage_error(PROG, "unexpected argument '%s' (use -f FILE)",
					       argv[first]);
	if (!files)
		return kmm_options_usage_error(PROG, "validate needs at least one -f FILE");
	r = kmmctl_read_docs(files, kmm_strv_length(files), &docs, &err);
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", PROG, kmm_error_message(err));
		return KMM_EXIT_FAILURE;
	}
	for (size_t i = 0; i < docs.n; i++) {
		const json_t *j = docs.docs[i].json;
		const char *kind = kmm_api_kind_of(j);
		_cleanup_error_ struct kmm_error *e = NULL;
		_cleanup_free_ char *what = NULL;
		const char *av = json_string_value(json_object_get(j, "apiVersion"));

		if (!kind && av && strcmp(av, KMM_HUB_API_VERSION) == 0 &&
		    strcmp(json_string_value(json_object_get(j, "kind")) ?: "", KMM_HUB_KIND_MCM) ==
			0)
			kind = KMM_HUB_KIND_MCM; /* the hub's kind */
		if (!kind) {
			const char *k = json_string_value(json_object_get(j, "kind"));

			if (av && strncmp(av, KMM_API_GROUP "/", strlen(KMM_API_GROUP) + 1) == 0) {
				printf("INVALID %s: unknown kind \"%s\" in %s\n",
				       docs.docs[i].origin, k ? k : "", KMM_API_GROUP);
				invalid++;
			} else if (!quiet) {
				printf("skipped %s: %s (not a %s kind)\n", docs.docs[i].origin,
				       k ? k : "(no kind)", KMM_API_GROUP);
			}
			continue;
		}
		checked++;
		r = validate_one(j, kind, ns, minor, all, &what, &e);
		if (r < 0) {
			printf("INVALID %s: %s: %s\n", docs.docs[i].origin, what ? what : kind,
			       kmm_error_message(e));
			invalid++;
		} else if (!quiet) {
			printf("valid   %s: %s\n", docs.docs[i].origin, what);
		}
	}
	kmmctl_docs_done(&docs);
	if (!quiet || invalid)
		printf("%zu object(s) checked, %zu invalid\n", checked, invalid);
	return invalid ? KMM_EXIT_FAILURE : KMM_EXIT_OK;
}
