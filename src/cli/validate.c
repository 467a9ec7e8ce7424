/* SPDX-License-Identifier: Apache-2.0 */
/* kmmctl validate: the webhook's rules, offline, on manifest files. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api.h"
#include "kmm/strv.h"
#include "src/cli/kmmctl.h"
#include "src/common/cli.h"

static const char help[] =
    "Usage: " PROG " validate -f FILE [-f FILE...] [OPTIONS]\n"
    "\n"
    "Checks kmm.sigs.x-k8s.io objects (Module, PreflightValidation, NodeModulesConfig,\n"
    "ModuleImagesConfig, ModuleBuildSignConfig) with the schema and the rules of the\n"
    "validating webhook, without a cluster. Unknown fields are errors (as with kubectl's\n"
    "strict field validation). Other kinds in the files are skipped. FILE may be '-'.\n"
    "Exits 1 if any object is invalid.\n"
    "\n"
    "Options:\n"
    "  -f, --filename FILE      manifest file (YAML or JSON, several documents allowed)\n"
    "  -n, --namespace NS       namespace for objects that have none (default \"default\")\n"
    "      --kube-version 1.N   check the DRA version gate against this apiserver version\n"
    "                           (default: not checked)\n"
    "      --first              report only the first violation per object, as the webhook\n"
    "  -q, --quiet              print only invalid objects\n" KMM_COMMON_OPTIONS_HELP;

enum {
	OPT_KUBE_VERSION = 0x200,
	OPT_FIRST,
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
	static const struct option options[] = {
		KMM_COMMON_LONG_OPTIONS,
		{ "filename", required_argument, NULL, 'f' },
		{ "namespace", required_argument, NULL, 'n' },
		{ "kube-version", required_argument, NULL, OPT_KUBE_VERSION },
		{ "first", no_argument, NULL, OPT_FIRST },
		{ "quiet", no_argument, NULL, 'q' },
		{ 0 },
	};
	_cleanup_strv_free_ char **files = NULL;
	struct kmmctl_docs docs = { 0 };
	_cleanup_error_ struct kmm_error *err = NULL;
	const char *ns = "default";
	bool all = true, quiet = false;
	int minor = -1, opt, r;
	size_t invalid = 0, checked = 0;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "hf:n:q", options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(help, stdout);
			return KMM_EXIT_OK;
		case 'f':
			if (kmm_strv_push(&files, optarg) < 0)
				return KMM_EXIT_FAILURE;
			break;
		case 'n':
			ns = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		case OPT_KUBE_VERSION:
			minor = kmm_kube_version_minor(optarg);
			if (minor < 0 || !strchr(optarg, '.'))
				return kmm_cli_usage_error(PROG, "invalid --kube-version '%s'",
							   optarg);
			break;
		case OPT_FIRST:
			all = false;
			break;
		case '?':
			return kmm_cli_bad_option(PROG, argc, argv);
		default:
			r = kmm_cli_common_option(PROG, opt, optarg);
			if (r <= 0)
				return -r;
		}
	}
	if (optind < argc)
		return kmm_cli_usage_error(PROG, "unexpected argument '%s' (use -f FILE)",
					   argv[optind]);
	if (!files)
		return kmm_cli_usage_error(PROG, "validate needs at least one -f FILE");
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

		if (!kind) {
			const char *k = json_string_value(json_object_get(j, "kind"));
			const char *av = json_string_value(json_object_get(j, "apiVersion"));

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
