/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The appended-signature trailer: pure byte handling, no cryptography, so the
 * fuzz target can drive it directly.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/sign.h"

int kmm_sig_trailer_parse(const void *data, size_t len, struct kmm_sig_trailer *ret_trailer,
			  struct kmm_error **err)
{
	const uint8_t *p = data, *info;
	struct kmm_sig_trailer t;
	size_t avail;

	if (len < KMM_SIG_MAGIC_LEN ||
	    memcmp(p + len - KMM_SIG_MAGIC_LEN, KMM_SIG_MAGIC, KMM_SIG_MAGIC_LEN) != 0)
		return 0;
	if (len < KMM_SIG_MAGIC_LEN + KMM_SIG_INFO_LEN)
		return kmm_error_make(err, EBADMSG,
				      "signature trailer is truncated: %zu bytes in all, the "
				      "magic and signature header need %zu",
				      len, KMM_SIG_MAGIC_LEN + KMM_SIG_INFO_LEN);

	info = p + len - KMM_SIG_MAGIC_LEN - KMM_SIG_INFO_LEN;
	t = (struct kmm_sig_trailer){
		.algo = info[0],
		.hash = info[1],
		.id_type = info[2],
		.signer_len = info[3],
		.key_id_len = info[4],
		.sig_len = (uint32_t)info[8] << 24 | (uint32_t)info[9] << 16 |
			   (uint32_t)info[10] << 8 | (uint32_t)info[11],
	};
	avail = len - KMM_SIG_MAGIC_LEN - KMM_SIG_INFO_LEN;

	/* The same checks, in the same order, as the kernel's mod_check_sig(). */
	if (t.sig_len == 0 || t.sig_len >= avail)
		return kmm_error_make(
		    err, EBADMSG,
		    "signature trailer is corrupt: sig_len %u does not fit in the "
		    "%zu bytes before it",
		    t.sig_len, avail);
	if (t.id_type != KMM_SIG_ID_PKCS7)
		return kmm_error_make(
		    err, ENOPKG,
		    "signature is not PKCS#7 (id_type %u); the kernel accepts only "
		    "PKCS#7 module signatures",
		    t.id_type);
	if (t.algo != 0 || t.hash != 0 || t.signer_len != 0 || t.key_id_len != 0 || info[5] != 0 ||
	    info[6] != 0 || info[7] != 0)
		return kmm_error_make(
		    err, EBADMSG,
		    "signature trailer is corrupt: PKCS#7 signature with non-zero "
		    "algo/hash/signer_len/key_id_len/pad fields");

	t.module_len = avail - t.sig_len;
	*ret_trailer = t;
	return 1;
}

int kmm_sig_strip(const void *data, size_t len, size_t *ret_len, unsigned *ret_count,
		  struct kmm_error **err)
{
	struct kmm_sig_trailer t = { 0 };
	unsigned count = 0;
	int r;

	/* Each round shortens len by at least the trailer size, so this ends. */
	while ((r = kmm_sig_trailer_parse(data, len, &t, err)) > 0) {
		len = t.module_len;
		count++;
	}
	if (r < 0) {
		if (count > 0)
			(void)kmm_error_wrap(err, "signature %u (counting from the end)",
					     count + 1);
		return r;
	}
	*ret_len = len;
	if (ret_count)
		*ret_count = count;
	return 0;
}

char *kmm_sig_hex(const uint8_t *p, size_t n, size_t per_line)
{
	static const char digits[] = "0123456789ABCDEF";
	char *s, *o;

	/* At most "XX:" plus "\n\t\t" per byte, and the terminator. */
	if (n > (SIZE_MAX - 1) / 6)
		return NULL;
	s = malloc(n * 6 + 1);
	if (!s)
		return NULL;
	o = s;
	for (size_t i = 0; i < n; i++) {
		*o++ = digits[p[i] >> 4];
		*o++ = digits[p[i] & 0xf];
		if (i + 1 == n)
			break;
		*o++ = ':';
		if (per_line && (i + 1) % per_line == 0) {
			*o++ = '\n';
			*o++ = '\t';
			*o++ = '\t';
		}
	}
	*o = '\0';
	return s;
}
