/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A thin command-line front end to include/kmm/registry.h for the
 * integration suite (tests/integration/registry/registry.t):
 *
 *   registry-itest [OPTIONS] exists IMAGE
 *       prints "exists DIGEST" (exit 0) or "missing" (exit 1)
 *   registry-itest [OPTIONS] extract IMAGE TARGET PREFIX...
 *       prints "extracted DIGEST" (exit 0)
 *
 * Errors print "error: <message>" on stderr and exit 2 (3 for errno codes the
 * suite checks: the message is what is asserted).
 * OPTIONS: --insecure --skip-verify --ca FILE --ca-pem-from FILE --auth-file FILE
 *          --auth-text-from FILE --user U
 *          --password P --arch A --timeout-ms N --stall-timeout-s N
 *          --max-file-bytes N --allow CIDR --deny CIDR (destination policy, repeatable)
 *
 * The error's summary (kmm_registry_error_summary, what a status would show)
 * is printed as "summary: <text>" on stderr after the error.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-log.h"
#include "kmm/registry.h"

/* Slurped files stay reachable from here until exit (no leak reports). */
static char *slurped[4];
static size_t n_slurped;

/* A small file's content as a NUL-terminated heap string, or NULL. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t len;

	if (!f || n_slurped == KMM_ARRAY_SIZE(slurped)) {
		if (f)
			fclose(f);
		return NULL;
	}
	buf = calloc(1, 1 << 20);
	len = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
	fclose(f);
	if (buf)
		buf[len] = '\0';
	slurped[n_slurped++] = buf;
	return buf;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "insecure", no_argument, NULL, 'i' },
		{ "skip-verify", no_argument, NULL, 'k' },
		{ "ca", required_argument, NULL, 'c' },
		{ "ca-pem-from", required_argument, NULL, 'P' },
		{ "auth-text-from", required_argument, NULL, 'T' },
		{ "auth-file", required_argument, NULL, 'a' },
		{ "user", required_argument, NULL, 'u' },
		{ "password", required_argument, NULL, 'p' },
		{ "arch", required_argument, NULL, 'A' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "stall-timeout-s", required_argument, NULL, 'S' },
		{ "max-file-bytes", required_argument, NULL, 'm' },
		{ "debug", no_argument, NULL, 'd' },
		{ "allow", required_argument, NULL, 'w' },
		{ "deny", required_argument, NULL, 'D' },
		{ 0 },
	};
	struct kmm_registry_options o = { 0 };
	struct kmm_extract_limits lim = { 0 };
	struct kmm_registry *r = NULL;
	struct kmm_registry_policy *policy = NULL;
	struct kmm_error *err = NULL;
	const char *allow[9] = { 0 }, *deny[9] = { 0 };
	size_t n_allow = 0, n_deny = 0;
	char *digest = NULL, summary[256];
	int c, rc;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'i':
			o.insecure = true;
			break;
		case 'k':
			o.insecure_skip_tls_verify = true;
			break;
		case 'c':
			o.ca_file = optarg;
			break;
		case 'P':
			/* the file's text, as the operator passes a ConfigMap's CA bundle */
			if (!(o.ca_pem = slurp(optarg)))
				return 64;
			break;
		case 'T':
			/* the file's text, as the operator passes a pull Secret's data */
			if (!(o.docker_config = slurp(optarg)))
				return 64;
			break;
		case 'a':
			o.docker_config_file = optarg;
			break;
		case 'u':
			o.username = optarg;
			break;
		case 'p':
			o.password = optarg;
			break;
		case 'A':
			o.architecture = optarg;
			break;
		case 't':
			o.request_timeout_ms = strtol(optarg, NULL, 10);
			o.connect_timeout_ms = o.request_timeout_ms;
			break;
		case 'S':
			o.stall_timeout_s = strtol(optarg, NULL, 10);
			break;
		case 'm':
			lim.max_file_bytes = strtoull(optarg, NULL, 10);
			break;
		case 'd':
			kmm_log_set_level(KMM_LOG_DEBUG);
			break;
		case 'w':
			if (n_allow == KMM_ARRAY_SIZE(allow) - 1)
				return 64;
			allow[n_allow++] = optarg;
			break;
		case 'D':
			if (n_deny == KMM_ARRAY_SIZE(deny) - 1)
				return 64;
			deny[n_deny++] = optarg;
			break;
		default:
			return 64;
		}
	}
	if (argc - optind < 2)
		return 64;
	rc = 0;
	if (n_allow || n_deny) {
		rc = kmm_registry_policy_new(allow, deny, &policy, &err);
		o.policy = policy;
	}
	if (rc == 0)
		rc = kmm_registry_new(&o, &r, &err);
	if (rc == 0 && strcmp(argv[optind], "exists") == 0) {
		rc = kmm_registry_image_exists(r, argv[optind + 1], &digest, &err);
		if (rc == 1)
			printf("exists %s\n", digest ? digest : "(no digest)");
		else if (rc == 0)
			printf("missing\n");
		free(digest);
		kmm_registry_free(r);
		if (rc >= 0) {
			kmm_registry_policy_free(policy);
			return rc == 1 ? 0 : 1;
		}
	} else if (rc == 0 && strcmp(argv[optind], "extract") == 0 && argc - optind >= 4) {
		rc = kmm_image_extract(r, argv[optind + 1], (const char *const *)argv + optind + 3,
				       argv[optind + 2], &lim, &digest, &err);
		if (rc == 0)
			printf("extracted %s\n", digest);
		free(digest);
		kmm_registry_free(r);
		if (rc == 0) {
			kmm_registry_policy_free(policy);
			return 0;
		}
	} else if (rc == 0) {
		kmm_registry_free(r);
		kmm_registry_policy_free(policy);
		return 64;
	}
	kmm_registry_error_summary(err, summary, sizeof(summary));
	fprintf(stderr, "error: %s\nsummary: %s\n", kmm_error_message(err), summary);
	kmm_error_free(err);
	kmm_registry_policy_free(policy);
	return 2;
}
