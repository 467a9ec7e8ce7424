/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Feeds arbitrary bytes to everything that reads a module's signature: the
 * trailer parser, the stripper, the PKCS#7 describer, and (for inputs that
 * start with a compression magic) the decompressor, and checks what they claim
 * about offsets and lengths.
 */
#include <stdlib.h>

#include "kmm/sign.h"
#include "tests/fuzz/fuzz.h"

#define DECOMPRESS_MAX (1024 * 1024)

static void check_trailer(const uint8_t *data, size_t size)
{
	struct kmm_sig_trailer t;
	struct kmm_error *err = NULL;
	int r = kmm_sig_trailer_parse(data, size, &t, &err);

	if (r < 0 && !err)
		abort();
	if (r >= 0 && err)
		abort();
	if (r == 1 && (t.module_len < 1 || t.sig_len < 1 ||
		       t.module_len + t.sig_len + KMM_SIG_INFO_LEN + KMM_SIG_MAGIC_LEN != size))
		abort();
	kmm_error_free(err);
}

static void check_strip(const uint8_t *data, size_t size)
{
	struct kmm_error *err = NULL;
	size_t len = SIZE_MAX;
	unsigned count = 0;
	struct kmm_sig_trailer t;

	if (kmm_sig_strip(data, size, &len, &count, &err) < 0) {
		if (!err || len != SIZE_MAX)
			abort();
		kmm_error_free(err);
		return;
	}
	/* What is left carries no signature, and each one removed took 41+ bytes. */
	if (len > size || kmm_sig_trailer_parse(data, len, &t, NULL) != 0 ||
	    (size - len) < (size_t)count * (KMM_SIG_INFO_LEN + KMM_SIG_MAGIC_LEN + 1))
		abort();
}

static void check_info(const uint8_t *data, size_t size)
{
	struct kmm_sig_info *info = NULL;
	struct kmm_error *err = NULL;
	int r = kmm_sig_info_from_buf(data, size, &info, &err);

	if (r < 0 && (!err || info))
		abort();
	if (r == 0 && info)
		abort();
	if (r == 1) {
		if (!info || !info->sig_id || !info->hash_algo || !info->key_id ||
		    (!info->signer && !info->key_id_is_skid) || info->module_len >= size)
			abort();
		free(kmm_sig_hex(info->signature, info->signature_len, 20));
	}
	kmm_sig_info_free(info);
	kmm_error_free(err);
}

static void check_decompress(const uint8_t *data, size_t size)
{
	enum kmm_module_compression c = kmm_module_compression_detect(data, size);
	struct kmm_error *err = NULL;
	void *out = NULL;
	size_t len = 0;

	if (c == KMM_COMPRESSION_NONE)
		return;
	if (kmm_module_decompress(c, data, size, DECOMPRESS_MAX, &out, &len, &err) < 0) {
		if (!err || out)
			abort();
	} else {
		if (len > DECOMPRESS_MAX)
			abort();
		check_trailer(out, len);
		check_info(out, len);
	}
	free(out);
	kmm_error_free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_trailer(data, size);
	check_strip(data, size);
	check_info(data, size);
	check_decompress(data, size);
	return 0;
}
