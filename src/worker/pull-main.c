/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-worker-pull: the part of kmm-worker that talks to registries, in its
 * own executable so that the worker itself does not load libcurl, OpenSSL
 * and libarchive (about 40 shared libraries) on every start.
 *
 * Usage: kmm-worker-pull [--insecure] [--skip-verify] [--ca FILE]
 *                        [--pull-secret FILE] IMAGE TARGET PREFIX...
 *
 * Extracts the PREFIX subtrees of IMAGE (a registry reference or
 * oci:DIR[:NAME]) into TARGET (missing or empty). Prints the manifest digest
 * on success; the reason on failure (exit 1). Exit 2 on usage errors.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "kmm/shared-options.h"
#include "kmm/registry.h"

#define PROG "kmm-worker-pull"

#define ARG(field) offsetof(struct kmm_registry_options, field)
static const struct kmm_option options[] = {
	{ "insecure", 0, KMM_OPTION_FLAG, NULL, ARG(insecure), NULL, "plain HTTP" },
	{ "skip-verify", 0, KMM_OPTION_FLAG, NULL, ARG(insecure_skip_tls_verify), NULL,
	  "HTTPS without certificate verification" },
	{ "ca", 0, KMM_OPTION_STRING, "FILE", ARG(ca_file), NULL,
	  "PEM CA bundle for the registry" },
	{ "pull-secret", 0, KMM_OPTION_STRING, "FILE", ARG(docker_config_file), NULL,
	  "registry credentials (.dockerconfigjson)" },
	{ 0 },
};
#undef ARG

static const struct kmm_option_group groups[] = {
	{ .title = "\nOptions:\n", .options = options },
	{ .options = kmm_options_common },
	{ 0 },
};

static const struct kmm_options spec = {
	.prog = PROG,
	.usage = "Usage: " PROG " [OPTIONS] IMAGE TARGET PREFIX...\n"
		 "\n"
		 "Extracts the PREFIX subtrees of IMAGE (a registry reference or\n"
		 "oci:DIR[:NAME]) into TARGET (missing or empty), for kmm-worker.\n",
	.groups = groups,
	.footer =
	    "\nExit status: 0 done (the manifest digest is printed), 1 failed, 2 usage error.\n",
};

int main(int argc, char **argv)
{
	struct kmm_registry_options ro = { 0 };
	_cleanup_(kmm_registry_freep) struct kmm_registry *r = NULL;
	_cleanup_error_ struct kmm_error *e = NULL;
	_cleanup_free_ char *digest = NULL;
	const char *image, *target;
	int first, rc;

	rc = kmm_options_parse(&spec, argc, argv, &ro, &first);
	if (rc >= 0)
		return rc;
	if (argc - first < 3) {
		fprintf(stderr,
			"kmm-worker-pull: IMAGE, TARGET and at least one PREFIX are needed\n");
		return KMM_EXIT_USAGE;
	}
	image = argv[first];
	target = argv[first + 1];
	if (strncmp(image, "oci:", 4) != 0 && kmm_registry_new(&ro, &r, &e) < 0) {
		fprintf(stderr, "%s\n", kmm_error_message(e));
		return KMM_EXIT_FAILURE;
	}
	if (kmm_image_extract(r, image, (const char *const *)argv + first + 2, target, NULL,
			      &digest, &e) < 0) {
		fprintf(stderr, "%s\n", kmm_error_message(e));
		return KMM_EXIT_FAILURE;
	}
	printf("extracted %s (%s)\n", image, digest ? digest : "no digest");
	return KMM_EXIT_OK;
}
