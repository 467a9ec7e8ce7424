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
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "kmm/registry.h"

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "insecure", no_argument, NULL, 'i' },
		{ "skip-verify", no_argument, NULL, 'k' },
		{ "ca", required_argument, NULL, 'c' },
		{ "pull-secret", required_argument, NULL, 's' },
		{ 0 },
	};
	struct kmm_registry_options ro = { 0 };
	_cleanup_(kmm_registry_freep) struct kmm_registry *r = NULL;
	_cleanup_error_ struct kmm_error *e = NULL;
	_cleanup_free_ char *digest = NULL;
	const char *image, *target;
	int opt;

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'i':
			ro.insecure = true;
			break;
		case 'k':
			ro.insecure_skip_tls_verify = true;
			break;
		case 'c':
			ro.ca_file = optarg;
			break;
		case 's':
			ro.docker_config_file = optarg;
			break;
		default:
			fprintf(stderr,
				"usage: kmm-worker-pull [--insecure] [--skip-verify] [--ca FILE] "
				"[--pull-secret FILE] IMAGE TARGET PREFIX...\n");
			return 2;
		}
	}
	if (argc - optind < 3) {
		fprintf(stderr,
			"kmm-worker-pull: IMAGE, TARGET and at least one PREFIX are needed\n");
		return 2;
	}
	image = argv[optind];
	target = argv[optind + 1];
	if (strncmp(image, "oci:", 4) != 0 && kmm_registry_new(&ro, &r, &e) < 0) {
		fprintf(stderr, "%s\n", kmm_error_message(e));
		return 1;
	}
	if (kmm_image_extract(r, image, (const char *const *)argv + optind + 2, target, NULL,
			      &digest, &e) < 0) {
		fprintf(stderr, "%s\n", kmm_error_message(e));
		return 1;
	}
	printf("extracted %s (%s)\n", image, digest ? digest : "no digest");
	return 0;
}
