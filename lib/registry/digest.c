/* SPDX-License-Identifier: Apache-2.0 */
/* sha256 digests in the OCI "sha256:<hex>" form, on OpenSSL EVP. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "lib/registry/registry-internal.h"

struct kmm_digester {
	EVP_MD_CTX *ctx;
};

bool kmm_digest_valid(const char *s)
{
	if (!s || strncmp(s, "sha256:", 7) != 0)
		return false;
	s += 7;
	for (size_t i = 0; i < 64; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return s[64] == '\0';
}

static char *format_digest(const unsigned char *md, unsigned int n)
{
	char *s = malloc(7 + 2 * (size_t)n + 1);

	if (!s)
		return NULL;
	memcpy(s, "sha256:", sizeof("sha256:"));
	for (unsigned int i = 0; i < n; i++)
		snprintf(s + 7 + 2 * i, 3, "%02x", md[i]);
	return s;
}

struct kmm_digester *kmm_digester_new(void)
{
	struct kmm_digester *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->ctx = EVP_MD_CTX_new();
	if (!d->ctx || EVP_DigestInit_ex(d->ctx, EVP_sha256(), NULL) != 1) {
		kmm_digester_free(d);
		return NULL;
	}
	return d;
}

void kmm_digester_update(struct kmm_digester *d, const void *p, size_t n)
{
	if (n > 0)
		EVP_DigestUpdate(d->ctx, p, n);
}

char *kmm_digester_final(struct kmm_digester *d)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (EVP_DigestFinal_ex(d->ctx, md, &n) != 1)
		return NULL;
	return format_digest(md, n);
}

void kmm_digester_free(struct kmm_digester *d)
{
	if (!d)
		return;
	EVP_MD_CTX_free(d->ctx);
	free(d);
}

char *kmm_digest_of(const void *data, size_t len)
{
	_cleanup_(kmm_digester_freep) struct kmm_digester *d = kmm_digester_new();

	if (!d)
		return NULL;
	kmm_digester_update(d, data, len);
	return kmm_digester_final(d);
}
