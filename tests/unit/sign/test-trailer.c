/* SPDX-License-Identifier: Apache-2.0 */
/* The signature trailer parser and stripper, on hand-built byte strings. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/sign.h"

/* Builds module | blob of sig_len bytes | header | magic, with header fields overridable. */
struct fake {
	uint8_t bytes[512];
	size_t len;
};

static void fake_append(struct fake *f, const void *p, size_t n)
{
	assert_true(f->len + n <= sizeof(f->bytes));
	memcpy(f->bytes + f->len, p, n);
	f->len += n;
}

static void fake_sign(struct fake *f, size_t blob_len, uint32_t sig_len, const uint8_t hdr[8])
{
	uint8_t blob[256];
	uint8_t info[KMM_SIG_INFO_LEN] = { 0, 0, KMM_SIG_ID_PKCS7 };

	assert_true(blob_len <= sizeof(blob));
	memset(blob, 0x30, blob_len);
	fake_append(f, blob, blob_len);
	if (hdr)
		memcpy(info, hdr, 8);
	info[8] = (uint8_t)(sig_len >> 24);
	info[9] = (uint8_t)(sig_len >> 16);
	info[10] = (uint8_t)(sig_len >> 8);
	info[11] = (uint8_t)sig_len;
	fake_append(f, info, sizeof(info));
	fake_append(f, KMM_SIG_MAGIC, KMM_SIG_MAGIC_LEN);
}

static struct fake module(size_t n)
{
	struct fake f = { .len = 0 };

	for (size_t i = 0; i < n; i++)
		f.bytes[f.len++] = (uint8_t)(i * 7 + 1);
	return f;
}

static void test_unsigned_is_zero(void **state)
{
	struct fake f = module(100);
	struct kmm_sig_trailer t;
	size_t len = 1;
	unsigned count = 9;

	assert_int_equal(kmm_sig_trailer_parse(f.bytes, f.len, &t, NULL), 0);
	assert_int_equal(kmm_sig_trailer_parse(f.bytes, 0, &t, NULL), 0);
	assert_int_equal(kmm_sig_trailer_parse("", 0, &t, NULL), 0);
	assert_int_equal(kmm_sig_strip(f.bytes, f.len, &len, &count, NULL), 0);
	assert_int_equal(len, 100);
	assert_int_equal(count, 0);
}

static void test_valid_trailer(void **state)
{
	struct fake f = module(100);
	struct kmm_sig_trailer t;

	fake_sign(&f, 50, 50, NULL);
	assert_int_equal(kmm_sig_trailer_parse(f.bytes, f.len, &t, NULL), 1);
	assert_int_equal(t.module_len, 100);
	assert_int_equal(t.sig_len, 50);
	assert_int_equal(t.id_type, KMM_SIG_ID_PKCS7);
}

static void test_magic_only_is_truncated(void **state)
{
	struct fake f = { .len = 0 };
	_cleanup_error_ struct kmm_error *e = NULL;
	struct kmm_sig_trailer t;

	fake_append(&f, "abc", 3);
	fake_append(&f, KMM_SIG_MAGIC, KMM_SIG_MAGIC_LEN);
	assert_int_equal(kmm_sig_trailer_parse(f.bytes, f.len, &t, &e), -EBADMSG);
	assert_non_null(strstr(kmm_error_message(e), "truncated"));
}

static void test_bad_sig_len(void **state)
{
	static const uint32_t lens[] = { 0, 51, 60, 1000, UINT32_MAX };

	for (size_t i = 0; i < KMM_ARRAY_SIZE(lens); i++) {
		_cleanup_error_ struct kmm_error *e = NULL;
		struct fake f = module(1);
		struct kmm_sig_trailer t = { .sig_len = 7 };

		/* 51 bytes before the header: the blob may take 50 at most. */
		fake_sign(&f, 50, lens[i], NULL);
		assert_int_equal(kmm_sig_trailer_parse(f.bytes, f.len, &t, &e), -EBADMSG);
		assert_non_null(strstr(kmm_error_message(e), "sig_len"));
		assert_int_equal(t.sig_len, 7);
	}
}

static void test_not_pkcs7(void **state)
{
	static const uint8_t x509[8] = { 0, 0, KMM_SIG_ID_X509 };
	_cleanup_error_ struct kmm_error *e = NULL;
	struct fake f = module(10);
	struct kmm_sig_trailer t;

	fake_sign(&f, 20, 20, x509);
	assert_int_equal(kmm_sig_trailer_parse(f.bytes, f.len, &t, &e), -ENOPKG);
	assert_non_null(strstr(kmm_error_message(e), "id_type 1"));
}

static void test_nonzero_fields(void **state)
{
	for (int field = 0; field < 8; field++) {
		_cleanup_error_ struct kmm_error *e = NULL;
		uint8_t hdr[8] = { 0, 0, KMM_SIG_ID_PKCS7 };
		struct fake f = module(10);
		struct kmm_sig_trailer t;

		if (field == 2)
			continue;
		hdr[field] = 1;
		fake_sign(&f, 20, 20, hdr);
		assert_int_equal(kmm_sig_trailer_parse(f.bytes, f.len, &t, &e), -EBADMSG);
		assert_non_null(strstr(kmm_error_message(e), "non-zero"));
	}
}

static void test_strip_stacked(void **state)
{
	struct fake f = module(64);
	size_t len = 0;
	unsigned count = 0;

	fake_sign(&f, 30, 30, NULL);
	fake_sign(&f, 40, 40, NULL);
	fake_sign(&f, 10, 10, NULL);
	assert_int_equal(kmm_sig_strip(f.bytes, f.len, &len, &count, NULL), 0);
	assert_int_equal(len, 64);
	assert_int_equal(count, 3);
}

static void test_strip_corrupt_inner_fails(void **state)
{
	_cleanup_error_ struct kmm_error *e = NULL;
	struct fake f = module(64);
	size_t len = 12345;

	/* The inner trailer claims more bytes than there are. */
	fake_sign(&f, 30, 200, NULL);
	fake_sign(&f, 10, 10, NULL);
	assert_int_equal(kmm_sig_strip(f.bytes, f.len, &len, NULL, &e), -EBADMSG);
	assert_int_equal(len, 12345);
	assert_non_null(strstr(kmm_error_message(e), "signature 2"));
}

static void test_hex(void **state)
{
	static const uint8_t b[] = { 0x00, 0x0a, 0xff, 0x10, 0x42 };
	char *s;

	s = kmm_sig_hex(b, 0, 0);
	assert_string_equal(s, "");
	free(s);
	s = kmm_sig_hex(b, 5, 0);
	assert_string_equal(s, "00:0A:FF:10:42");
	free(s);
	s = kmm_sig_hex(b, 5, 2);
	assert_string_equal(s, "00:0A:\n\t\tFF:10:\n\t\t42");
	free(s);
	s = kmm_sig_hex(b, 4, 2);
	assert_string_equal(s, "00:0A:\n\t\tFF:10");
	free(s);
}

static void test_compression_detect(void **state)
{
	assert_int_equal(kmm_module_compression_detect("\x1f\x8b\x08", 3), KMM_COMPRESSION_GZIP);
	assert_int_equal(kmm_module_compression_detect("\xfd"
						       "7zXZ\0",
						       6),
			 KMM_COMPRESSION_XZ);
	assert_int_equal(kmm_module_compression_detect("\xfd"
						       "7zXZ",
						       5),
			 KMM_COMPRESSION_NONE);
	assert_int_equal(kmm_module_compression_detect("\x28\xb5\x2f\xfd", 4),
			 KMM_COMPRESSION_ZSTD);
	assert_int_equal(kmm_module_compression_detect("\x7f"
						       "ELF",
						       4),
			 KMM_COMPRESSION_NONE);
	assert_int_equal(kmm_module_compression_detect("", 0), KMM_COMPRESSION_NONE);
	assert_string_equal(kmm_module_compression_name(KMM_COMPRESSION_ZSTD), "zstd");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unsigned_is_zero),
		cmocka_unit_test(test_valid_trailer),
		cmocka_unit_test(test_magic_only_is_truncated),
		cmocka_unit_test(test_bad_sig_len),
		cmocka_unit_test(test_not_pkcs7),
		cmocka_unit_test(test_nonzero_fields),
		cmocka_unit_test(test_strip_stacked),
		cmocka_unit_test(test_strip_corrupt_inner_fails),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_compression_detect),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
