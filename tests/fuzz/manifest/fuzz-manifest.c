/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registry's parsers of untrusted text: manifests and indexes (with
 * platform selection), .dockerconfigjson lookups, WWW-Authenticate headers
 * and image references, destination policy entries (CIDRs) and error
 * summaries of registry-supplied codes. The first byte picks the Content-Type
 * hint; the rest is the document. Invariants: success yields valid digests
 * and sizes, failure always comes with an error, and a summary is short
 * printable ASCII.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/registry.h"
#include "lib/registry/registry-internal.h"
#include "tests/fuzz/fuzz.h"

static void check_policy_and_summary(const char *text)
{
	const char *list[] = { text, NULL };
	struct kmm_registry_policy *p = NULL;
	struct kmm_error *err = NULL;
	char why[128], sum[96];
	int r = kmm_registry_policy_new(list, list, &p, &err);

	if ((r == 0) != (p != NULL) || (r < 0 && !err))
		abort();
	if (p) {
		/* An address that is both allowed and denied is allowed. */
		r = kmm_registry_policy_check_text(p, text, why, sizeof(why));
		if (r == -EPERM)
			abort();
		kmm_registry_policy_free(p);
	}
	kmm_error_free(err);
	err = NULL;
	(void)kmm_registry_policy_check_text(NULL, text, why, sizeof(why));
	/* A registry's error code and message never reach a summary but as [A-Z0-9_]. */
	kmm_error_make_http(&err, 400 + (int)(strlen(text) % 200), text, "%s", text);
	kmm_registry_error_summary(err, sum, sizeof(sum));
	for (const char *c = sum; *c; c++)
		if (*c < 0x20 || *c > 0x7e)
			abort();
	kmm_error_free(err);
}

static void check_manifest(const char *data, size_t size, const char *ct)
{
	struct kmm_oci_manifest *m = NULL;
	struct kmm_error *err = NULL;
	const struct kmm_oci_descriptor *d = NULL;
	int r = kmm_oci_manifest_parse(data, size, ct, &m, &err);

	if (r < 0) {
		if (!err || m)
			abort();
		kmm_error_free(err);
		return;
	}
	if (err || !m || !kmm_oci_media_type_is_manifest(m->media_type))
		abort();
	for (size_t i = 0; i < m->n_items; i++) {
		if (!kmm_digest_valid(m->items[i].digest) || m->items[i].size < 0)
			abort();
	}
	if (!m->is_index && !kmm_digest_valid(m->config.digest))
		abort();
	if (m->is_index) {
		r = kmm_oci_index_select(m, "linux", "amd64", NULL, &d, &err);
		if ((r == 0) != (d != NULL) || (r < 0 && !err))
			abort();
		kmm_error_free(err);
	}
	kmm_oci_manifest_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const cts[] = { NULL, KMM_MT_OCI_INDEX, KMM_MT_DOCKER_MANIFEST,
					   "application/json; charset=utf-8" };
	char *text, *user = NULL, *password = NULL;
	struct kmm_error *err = NULL;
	struct kmm_auth_challenge ch;
	struct kmm_image_ref *ref = NULL;
	int r;

	if (size < 1)
		return 0;
	check_manifest((const char *)data + 1, size - 1, cts[data[0] % 4]);

	text = strndup((const char *)data + 1, size - 1);
	if (!text)
		return 0;
	r = kmm_docker_config_lookup((const char *)data + 1, size - 1, "127.0.0.1:5000", &user,
				     &password, &err);
	if ((r == 1) != (user && password) || (r < 0 && !err))
		abort();
	free(user);
	free(password);
	kmm_error_free(err);
	err = NULL;

	if (kmm_auth_challenge_parse(text, &ch, &err) == 0) {
		if (!ch.scheme || err)
			abort();
		kmm_auth_challenge_done(&ch);
	} else {
		kmm_error_free(err);
		err = NULL;
	}

	check_policy_and_summary(text);
	if (kmm_image_ref_parse(text, &ref, &err) == 0) {
		char *s = kmm_image_ref_to_string(ref);
		struct kmm_image_ref *again = NULL;

		/* Printing and re-parsing is stable. */
		if (!s || kmm_image_ref_parse(s, &again, NULL) < 0 ||
		    strcmp(again->registry, ref->registry) != 0 ||
		    strcmp(again->repository, ref->repository) != 0)
			abort();
		kmm_image_ref_free(again);
		free(s);
		kmm_image_ref_free(ref);
	} else {
		kmm_error_free(err);
	}
	free(text);
	return 0;
}
