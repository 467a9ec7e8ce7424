/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Signing, checking and describing signatures, and the file layer with
 * compressed modules. Keys and certificates are generated here with OpenSSL.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "kmm/shared-fileio.h"
#include "kmm/sign.h"
#include "lib/sign/sign-internal.h"

struct fixture {
	char dir[64];
	EVP_PKEY *rsa;
	EVP_PKEY *ec;
	X509 *rsa_cert; /* CN=kmm unit rsa, serial 0x8001, with SKID */
	X509 *ec_cert;	/* CN=kmm unit ec, serial 7, without SKID */
	uint8_t module[3000];
};

static struct fixture fx;

static char *path_in(const char *name)
{
	static char buf[8][384];
	static unsigned next;
	char *p = buf[next++ % 8];
	int n = snprintf(p, sizeof(buf[0]), "%s/%s", fx.dir, name);

	assert_true(n > 0 && (size_t)n < sizeof(buf[0]));
	return p;
}

static X509 *make_cert(EVP_PKEY *key, const char *cn, long serial, bool skid)
{
	X509 *x = X509_new();
	X509_NAME *n;

	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
	n = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8,
						    (const unsigned char *)cn, -1, -1, 0),
			 1);
	assert_int_equal(X509_set_issuer_name(x, n), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	assert_int_equal(X509_set_pubkey(x, key), 1);
	if (skid) {
		X509V3_CTX ctx;
		X509_EXTENSION *ext;

		X509V3_set_ctx_nodb(&ctx);
		X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
		ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_key_identifier, "hash");
		assert_non_null(ext);
		assert_int_equal(X509_add_ext(x, ext, -1), 1);
		X509_EXTENSION_free(ext);
	}
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	return x;
}

static void write_key(const char *name, EVP_PKEY *key, bool der)
{
	BIO *b = BIO_new_file(path_in(name), "wb");

	assert_non_null(b);
	if (der)
		assert_int_equal(i2d_PrivateKey_bio(b, key), 1);
	else
		assert_int_equal(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL), 1);
	BIO_free(b);
}

static void write_cert(const char *name, X509 *x, bool der)
{
	BIO *b = BIO_new_file(path_in(name), "wb");

	assert_non_null(b);
	if (der)
		assert_int_equal(i2d_X509_bio(b, x), 1);
	else
		assert_int_equal(PEM_write_bio_X509(b, x), 1);
	BIO_free(b);
}

static void write_bytes(const char *name, const void *p, size_t n)
{
	assert_int_equal(kmm_write_file_atomic(path_in(name), p, n, 0644, NULL), 0);
}

static int setup(void **state)
{
	snprintf(fx.dir, sizeof(fx.dir), "%s", "/tmp/kmm-sign-unit.XXXXXX");
	if (!mkdtemp(fx.dir))
		return -1;
	fx.rsa = EVP_RSA_gen(2048);
	fx.ec = EVP_EC_gen("P-256");
	if (!fx.rsa || !fx.ec)
		return -1;
	fx.rsa_cert = make_cert(fx.rsa, "kmm unit rsa", 0x8001, true);
	fx.ec_cert = make_cert(fx.ec, "kmm unit ec", 7, false);
	for (size_t i = 0; i < sizeof(fx.module); i++)
		fx.module[i] = (uint8_t)(i * 31 + (i >> 8));
	memcpy(fx.module,
	       "\x7f"
	       "ELF",
	       4);
	write_key("rsa.pem", fx.rsa, false);
	write_key("rsa.der", fx.rsa, true);
	write_cert("rsa.crt", fx.rsa_cert, false);
	write_cert("rsa.cer", fx.rsa_cert, true);
	write_key("ec.pem", fx.ec, false);
	write_cert("ec.crt", fx.ec_cert, false);
	return 0;
}

static int teardown(void **state)
{
	DIR *d = opendir(fx.dir);
	struct dirent *de;

	while (d && (de = readdir(d))) {
		if (de->d_name[0] != '.')
			unlink(path_in(de->d_name));
	}
	if (d)
		closedir(d);
	rmdir(fx.dir);
	EVP_PKEY_free(fx.rsa);
	EVP_PKEY_free(fx.ec);
	X509_free(fx.rsa_cert);
	X509_free(fx.ec_cert);
	return 0;
}

static struct kmm_signer *signer(const char *key, const char *cert, enum kmm_sign_hash hash,
				 bool keyid)
{
	struct kmm_signer_options o = {
		.key_path = path_in(key),
		.cert_path = cert ? path_in(cert) : NULL,
		.hash = hash,
		.use_keyid = keyid,
	};
	struct kmm_signer *s = NULL;
	struct kmm_error *e = NULL;

	if (kmm_signer_new(&o, &s, &e) < 0)
		fail_msg("signer: %s", kmm_error_message(e));
	return s;
}

static struct kmm_sign_cert *cert(const char *name)
{
	struct kmm_sign_cert *c = NULL;

	assert_int_equal(kmm_sign_cert_load(path_in(name), &c, NULL), 0);
	return c;
}

static void sign_module(const struct kmm_signer *s, const void *p, size_t n, void **ret,
			size_t *ret_len, unsigned *ret_replaced)
{
	struct kmm_error *e = NULL;

	if (kmm_signer_sign_buf(s, p, n, ret, ret_len, ret_replaced, &e) < 0)
		fail_msg("sign: %s", kmm_error_message(e));
}

static void test_rsa_sign_verify_info(void **state)
{
	_cleanup_(kmm_signer_freep) struct kmm_signer *s =
	    signer("rsa.pem", "rsa.crt", KMM_SIGN_HASH_SHA256, false);
	_cleanup_(kmm_sign_cert_freep) struct kmm_sign_cert *c = cert("rsa.cer");
	_cleanup_(kmm_sig_info_freep) struct kmm_sig_info *info = NULL;
	_cleanup_free_ void *out = NULL;
	struct kmm_sig_trailer t;
	size_t len;
	unsigned replaced = 9;

	sign_module(s, fx.module, sizeof(fx.module), &out, &len, &replaced);
	assert_int_equal(replaced, 0);
	assert_memory_equal(out, fx.module, sizeof(fx.module));
	assert_int_equal(kmm_sig_trailer_parse(out, len, &t, NULL), 1);
	assert_int_equal(t.module_len, sizeof(fx.module));
	assert_int_equal(len, sizeof(fx.module) + t.sig_len + 40);
	assert_int_equal(kmm_sign_verify_buf(c, out, len, NULL), 0);

	assert_int_equal(kmm_sig_info_from_buf(out, len, &info, NULL), 1);
	assert_string_equal(info->sig_id, "PKCS#7");
	assert_string_equal(info->signer, "kmm unit rsa");
	assert_string_equal(info->hash_algo, "sha256");
	assert_false(info->key_id_is_skid);
	/* The serial 0x8001 is DER 00 80 01; modinfo shows it without the sign byte. */
	assert_int_equal(info->key_id_len, 2);
	assert_memory_equal(info->key_id, "\x80\x01", 2);
	assert_int_equal(info->signature_len, 256);
	assert_int_equal(info->module_len, sizeof(fx.module));
}

static void test_rsa_is_deterministic_and_resign_replaces(void **state)
{
	_cleanup_(kmm_signer_freep) struct kmm_signer *pem =
	    signer("rsa.pem", "rsa.crt", KMM_SIGN_HASH_SHA512, false);
	_cleanup_(kmm_signer_freep) struct kmm_signer *der =
	    signer("rsa.der", "rsa.cer", KMM_SIGN_HASH_SHA512, false);
	_cleanup_(kmm_signer_freep) struct kmm_signer *ec =
	    signer("ec.pem", "ec.crt", KMM_SIGN_HASH_SHA256, false);
	_cleanup_free_ void *a = NULL, *b = NULL, *c = NULL, *d = NULL;
	size_t alen, blen, clen, dlen;
	unsigned replaced;

	sign_module(pem, fx.module, sizeof(fx.module), &a, &alen, NULL);
	sign_module(der, fx.module, sizeof(fx.module), &b, &blen, NULL);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	/* Signed by another key first, then re-signed: the same bytes. */
	sign_module(ec, fx.module, sizeof(fx.module), &c, &clen, NULL);
	sign_module(pem, c, clen, &d, &dlen, &replaced);
	assert_int_equal(replaced, 1);
	assert_int_equal(dlen, alen);
	assert_memory_equal(d, a, alen);
}

static void test_ec_and_hashes(void **state)
{
	static const struct {
		enum kmm_sign_hash hash;
		const char *name;
	} cases[] = {
		{ KMM_SIGN_HASH_SHA256, "sha256" },
		{ KMM_SIGN_HASH_SHA384, "sha384" },
		{ KMM_SIGN_HASH_SHA512, "sha512" },
	};
	_cleanup_(kmm_sign_cert_freep) struct kmm_sign_cert *c = cert("ec.crt");

	for (size_t i = 0; i < KMM_ARRAY_SIZE(cases); i++) {
		_cleanup_(kmm_signer_freep) struct kmm_signer *s =
		    signer("ec.pem", "ec.crt", cases[i].hash, false);
		_cleanup_(kmm_sig_info_freep) struct kmm_sig_info *info = NULL;
		_cleanup_free_ void *out = NULL;
		enum kmm_sign_hash h;
		size_t len;

		assert_int_equal(kmm_sign_hash_from_string(cases[i].name, &h), 0);
		assert_int_equal(h, cases[i].hash);
		sign_module(s, fx.module, sizeof(fx.module), &out, &len, NULL);
		assert_int_equal(kmm_sign_verify_buf(c, out, len, NULL), 0);
		assert_int_equal(kmm_sig_info_from_buf(out, len, &info, NULL), 1);
		assert_string_equal(info->hash_algo, cases[i].name);
		assert_string_equal(info->signer, "kmm unit ec");
		assert_int_equal(info->key_id_len, 1);
		assert_int_equal(info->key_id[0], 7);
	}
	assert_int_equal(kmm_sign_hash_from_string("sha1", &(enum kmm_sign_hash){ 0 }), -EINVAL);
	assert_int_equal(kmm_sign_hash_from_string(NULL, &(enum kmm_sign_hash){ 0 }), -EINVAL);
}

static void write_key_and_cert(const char *name)
{
	_cleanup_free_ char *k = NULL, *c = NULL;
	_cleanup_fclose_ FILE *f = NULL;
	size_t kl, cl;

	assert_int_equal(kmm_read_file(path_in("rsa.pem"), 1 << 20, &k, &kl, NULL), 0);
	assert_int_equal(kmm_read_file(path_in("rsa.crt"), 1 << 20, &c, &cl, NULL), 0);
	f = fopen(path_in(name), "w");
	assert_non_null(f);
	assert_int_equal(fwrite(k, 1, kl, f), kl);
	assert_int_equal(fwrite(c, 1, cl, f), cl);
}

static void test_verify_rejects(void **state)
{
	_cleanup_(kmm_signer_freep) struct kmm_signer *s = NULL;
	_cleanup_(kmm_sign_cert_freep) struct kmm_sign_cert *rsa = NULL, *ec = cert("ec.crt");
	_cleanup_error_ struct kmm_error *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL;
	_cleanup_free_ uint8_t *out = NULL;
	struct kmm_sig_info sentinel;
	struct kmm_sig_info *info = &sentinel; /* must stay untouched */
	size_t len;

	/* No cert_path: the certificate is read from the key file, as kbuild keeps them. */
	write_key_and_cert("both.pem");
	s = signer("both.pem", NULL, KMM_SIGN_HASH_SHA256, false);
	rsa = cert("both.pem");
	sign_module(s, fx.module, sizeof(fx.module), (void **)&out, &len, NULL);
	assert_int_equal(kmm_sign_verify_buf(rsa, out, len, NULL), 0);

	assert_int_equal(kmm_sign_verify_buf(ec, out, len, &e1), -EKEYREJECTED);
	assert_non_null(strstr(kmm_error_message(e1), "not the given certificate"));

	out[100] ^= 1;
	assert_int_equal(kmm_sign_verify_buf(rsa, out, len, &e2), -EKEYREJECTED);
	assert_non_null(strstr(kmm_error_message(e2), "does not verify"));
	out[100] ^= 1;

	assert_int_equal(kmm_sign_verify_buf(rsa, fx.module, sizeof(fx.module), &e3), -ENODATA);
	assert_int_equal(kmm_sig_info_from_buf(fx.module, sizeof(fx.module), &info, NULL), 0);
	assert_ptr_equal(info, &sentinel);

	/* A damaged first byte of the PKCS#7 blob. */
	out[sizeof(fx.module)] = 0;
	assert_int_equal(kmm_sign_verify_buf(rsa, out, len, &e4), -EBADMSG);
	assert_non_null(strstr(kmm_error_message(e4), "not a DER PKCS#7"));
}

/* A module signature with signed attributes, which the kernel refuses. */
static void test_verify_rejects_signed_attributes(void **state)
{
	_cleanup_(kmm_sign_cert_freep) struct kmm_sign_cert *c = cert("rsa.crt");
	_cleanup_error_ struct kmm_error *e = NULL;
	_cleanup_free_ uint8_t *mod = NULL;
	unsigned char *der = NULL;
	CMS_ContentInfo *cms;
	BIO *in;
	int n;
	size_t len;

	in = BIO_new_mem_buf(fx.module, sizeof(fx.module));
	cms = CMS_sign(fx.rsa_cert, fx.rsa, NULL, in,
		       CMS_NOCERTS | CMS_BINARY | CMS_DETACHED | CMS_NOSMIMECAP);
	assert_non_null(cms);
	n = i2d_CMS_ContentInfo(cms, &der);
	assert_true(n > 0);
	len = sizeof(fx.module) + (size_t)n + 40;
	mod = calloc(1, len);
	memcpy(mod, fx.module, sizeof(fx.module));
	memcpy(mod + sizeof(fx.module), der, (size_t)n);
	mod[sizeof(fx.module) + n + 2] = KMM_SIG_ID_PKCS7;
	mod[sizeof(fx.module) + n + 10] = (uint8_t)(n >> 8);
	mod[sizeof(fx.module) + n + 11] = (uint8_t)n;
	memcpy(mod + len - KMM_SIG_MAGIC_LEN, KMM_SIG_MAGIC, KMM_SIG_MAGIC_LEN);
	assert_int_equal(kmm_sign_verify_buf(c, mod, len, &e), -EBADMSG);
	assert_non_null(strstr(kmm_error_message(e), "signed attributes"));
	OPENSSL_free(der);
	CMS_ContentInfo_free(cms);
	BIO_free(in);
}

static void test_keyid(void **state)
{
	_cleanup_(kmm_signer_freep) struct kmm_signer *s =
	    signer("rsa.pem", "rsa.crt", KMM_SIGN_HASH_SHA256, true);
	_cleanup_(kmm_sign_cert_freep) struct kmm_sign_cert *c = cert("rsa.crt");
	_cleanup_(kmm_sig_info_freep) struct kmm_sig_info *info = NULL;
	_cleanup_error_ struct kmm_error *e = NULL;
	struct kmm_signer_options o = {
		.key_path = path_in("ec.pem"),
		.cert_path = path_in("ec.crt"),
		.use_keyid = true,
	};
	struct kmm_signer *none = NULL;
	const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(fx.rsa_cert);
	_cleanup_free_ void *out = NULL;
	size_t len;

	sign_module(s, fx.module, sizeof(fx.module), &out, &len, NULL);
	assert_int_equal(kmm_sign_verify_buf(c, out, len, NULL), 0);
	assert_int_equal(kmm_sig_info_from_buf(out, len, &info, NULL), 1);
	assert_true(info->key_id_is_skid);
	assert_null(info->signer);
	assert_int_equal(info->key_id_len, ASN1_STRING_length(skid));
	assert_memory_equal(info->key_id, ASN1_STRING_get0_data(skid), info->key_id_len);

	assert_int_equal(kmm_signer_new(&o, &none, &e), -EINVAL);
	assert_null(none);
	assert_non_null(strstr(kmm_error_message(e), "subjectKeyIdentifier"));
}

static void test_bad_keys(void **state)
{
	struct kmm_signer_options o = { .hash = KMM_SIGN_HASH_SHA256 };
	struct kmm_signer *s = NULL;
	struct kmm_sign_cert *c = NULL;
	struct kmm_error *e = NULL;
	BIO *b;

	/* Key and certificate that do not belong together. */
	o.key_path = path_in("ec.pem");
	o.cert_path = path_in("rsa.crt");
	assert_int_equal(kmm_signer_new(&o, &s, &e), -EINVAL);
	assert_non_null(strstr(kmm_error_message(e), "does not match"));
	kmm_error_free(TAKE_PTR(e));

	/* An encrypted key is refused without prompting. */
	b = BIO_new_file(path_in("enc.pem"), "wb");
	assert_int_equal(
	    PEM_write_bio_PKCS8PrivateKey(b, fx.ec, EVP_aes_128_cbc(), "pw", 2, NULL, NULL), 1);
	BIO_free(b);
	o.key_path = path_in("enc.pem");
	o.cert_path = path_in("ec.crt");
	assert_int_equal(kmm_signer_new(&o, &s, &e), -EINVAL);
	assert_non_null(strstr(kmm_error_message(e), "encrypted"));
	kmm_error_free(TAKE_PTR(e));

	write_bytes("junk", "\x30\x03\x02\x01", 4);
	o.key_path = path_in("junk");
	assert_int_equal(kmm_signer_new(&o, &s, &e), -EINVAL);
	assert_non_null(strstr(kmm_error_message(e), "not a PEM or DER private key"));
	kmm_error_free(TAKE_PTR(e));
	assert_int_equal(kmm_sign_cert_load(path_in("junk"), &c, &e), -EINVAL);
	assert_non_null(strstr(kmm_error_message(e), "junk"));
	kmm_error_free(TAKE_PTR(e));

	o.key_path = path_in("missing");
	assert_int_equal(kmm_signer_new(&o, &s, &e), -ENOENT);
	assert_non_null(strstr(kmm_error_message(e), "missing"));
	kmm_error_free(TAKE_PTR(e));
	assert_null(s);
	assert_null(c);
}

static void test_empty_and_corrupt_modules(void **state)
{
	_cleanup_(kmm_signer_freep) struct kmm_signer *s =
	    signer("ec.pem", "ec.crt", KMM_SIGN_HASH_SHA256, false);
	_cleanup_error_ struct kmm_error *e1 = NULL, *e2 = NULL;
	uint8_t bad[64] = { 0 };
	void *out = NULL;
	size_t len = 0;

	assert_int_equal(kmm_signer_sign_buf(s, "", 0, &out, &len, NULL, &e1), -EINVAL);
	assert_non_null(strstr(kmm_error_message(e1), "empty"));
	memcpy(bad + sizeof(bad) - KMM_SIG_MAGIC_LEN, KMM_SIG_MAGIC, KMM_SIG_MAGIC_LEN);
	bad[sizeof(bad) - KMM_SIG_MAGIC_LEN - 1] = 0xff;
	assert_int_equal(kmm_signer_sign_buf(s, bad, sizeof(bad), &out, &len, NULL, &e2), -EBADMSG);
	assert_non_null(strstr(kmm_error_message(e2), "existing signature"));
	assert_null(out);
}

static void test_compress_roundtrip(void **state)
{
	static const enum kmm_module_compression formats[] = {
		KMM_COMPRESSION_GZIP,
		KMM_COMPRESSION_XZ,
		KMM_COMPRESSION_ZSTD,
	};

	for (size_t i = 0; i < KMM_ARRAY_SIZE(formats); i++) {
		_cleanup_free_ void *packed = NULL, *plain = NULL;
		_cleanup_error_ struct kmm_error *e1 = NULL, *e2 = NULL;
		size_t plen, len;
		void *none = NULL;

		assert_int_equal(kmm_module_compress(formats[i], fx.module, sizeof(fx.module),
						     &packed, &plen, NULL),
				 0);
		assert_int_equal(kmm_module_compression_detect(packed, plen), formats[i]);
		assert_int_equal(
		    kmm_module_decompress(formats[i], packed, plen, 1 << 20, &plain, &len, NULL),
		    0);
		assert_int_equal(len, sizeof(fx.module));
		assert_memory_equal(plain, fx.module, len);
		/* The cap holds after decompression. */
		assert_int_equal(
		    kmm_module_decompress(formats[i], packed, plen, 1000, &none, &len, &e1),
		    -EFBIG);
		assert_null(none);
		/* A truncated stream. */
		assert_true(kmm_module_decompress(formats[i], packed, plen / 2, 1 << 20, &none,
						  &len, &e2) < 0);
		assert_null(none);
	}
}

static void test_xz_uses_crc32(void **state)
{
	_cleanup_free_ uint8_t *packed = NULL;
	size_t plen;

	assert_int_equal(kmm_module_compress(KMM_COMPRESSION_XZ, fx.module, sizeof(fx.module),
					     (void **)&packed, &plen, NULL),
			 0);
	/* Stream flags: byte 7 is the check type, 0x01 = CRC32 (the kernel's only one). */
	assert_true(plen > 12);
	assert_int_equal(packed[6], 0);
	assert_int_equal(packed[7], 0x01);
}

static void test_sign_files(void **state)
{
	static const struct {
		const char *name;
		enum kmm_module_compression c;
	} files[] = {
		{ "m.ko", KMM_COMPRESSION_NONE },
		{ "m.ko.gz", KMM_COMPRESSION_GZIP },
		{ "m.ko.xz", KMM_COMPRESSION_XZ },
		{ "m.ko.zst", KMM_COMPRESSION_ZSTD },
	};
	_cleanup_(kmm_signer_freep) struct kmm_signer *s =
	    signer("rsa.pem", "rsa.crt", KMM_SIGN_HASH_SHA256, false);
	_cleanup_(kmm_sign_cert_freep) struct kmm_sign_cert *c = cert("rsa.crt");
	_cleanup_free_ void *expect = NULL;
	size_t expect_len;

	sign_module(s, fx.module, sizeof(fx.module), &expect, &expect_len, NULL);
	for (size_t i = 0; i < KMM_ARRAY_SIZE(files); i++) {
		_cleanup_(kmm_sig_info_freep) struct kmm_sig_info *info = NULL;
		_cleanup_free_ void *packed = NULL, *plain = NULL;
		_cleanup_free_ char *got = NULL;
		struct kmm_sign_result res;
		struct kmm_error *e = NULL;
		struct stat st;
		size_t len, glen;

		if (files[i].c == KMM_COMPRESSION_NONE) {
			write_bytes(files[i].name, fx.module, sizeof(fx.module));
		} else {
			_cleanup_error_ struct kmm_error *outer = NULL;
			_cleanup_free_ void *wrapped = NULL;

			assert_int_equal(kmm_module_compress(files[i].c, fx.module,
							     sizeof(fx.module), &packed, &len,
							     NULL),
					 0);
			/* Signed the way sign-file signs a .ko.xz: after the compressed bytes. */
			sign_module(s, packed, len, &wrapped, &len, NULL);
			write_bytes(files[i].name, wrapped, len);
			assert_int_equal(kmm_sign_verify_file(c, path_in(files[i].name), &outer),
					 -EBADMSG);
			assert_non_null(strstr(kmm_error_message(outer), "compressed file"));
		}
		assert_int_equal(chmod(path_in(files[i].name), 0600), 0);
		/* Twice: the second run replaces the first signature. */
		for (unsigned round = 0; round < 2; round++) {
			if (kmm_signer_sign_file(s, path_in(files[i].name), NULL, &res, &e) < 0)
				fail_msg("%s", kmm_error_message(e));
			assert_int_equal(res.compression, files[i].c);
			/* The first round removes the signature outside the compression. */
			assert_int_equal(res.replaced,
					 files[i].c == KMM_COMPRESSION_NONE ? round : 1);
			assert_int_equal(res.module_len, sizeof(fx.module));
		}
		assert_int_equal(stat(path_in(files[i].name), &st), 0);
		assert_int_equal(st.st_mode & 07777, 0600);
		assert_int_equal(st.st_size, res.output_len);
		assert_int_equal(kmm_sign_verify_file(c, path_in(files[i].name), NULL), 0);
		assert_int_equal(kmm_sig_info_from_file(path_in(files[i].name), &info, NULL), 1);
		assert_int_equal(info->compression, files[i].c);

		assert_int_equal(kmm_read_file(path_in(files[i].name), 1 << 20, &got, &glen, NULL),
				 0);
		if (files[i].c != KMM_COMPRESSION_NONE) {
			assert_int_equal(kmm_module_decompress(files[i].c, got, glen, 1 << 20,
							       &plain, &len, NULL),
					 0);
		} else {
			plain = TAKE_PTR(got);
			len = glen;
		}
		assert_int_equal(len, expect_len);
		assert_memory_equal(plain, expect, len);
	}
}

static void test_sign_file_errors_leave_file(void **state)
{
	_cleanup_(kmm_signer_freep) struct kmm_signer *s =
	    signer("ec.pem", "ec.crt", KMM_SIGN_HASH_SHA256, false);
	_cleanup_error_ struct kmm_error *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL, *e5 = NULL;
	struct kmm_sig_info *info = NULL;
	_cleanup_free_ char *got = NULL;
	static const char gz_junk[] = "\x1f\x8b\x08\x00garbage that is not deflate";
	uint8_t bad[80];
	size_t len;

	memset(bad, 'x', sizeof(bad));
	memcpy(bad + sizeof(bad) - KMM_SIG_MAGIC_LEN, KMM_SIG_MAGIC, KMM_SIG_MAGIC_LEN);
	write_bytes("corrupt.ko", bad, sizeof(bad));
	assert_int_equal(kmm_signer_sign_file(s, path_in("corrupt.ko"), NULL, NULL, &e1), -EBADMSG);
	assert_non_null(strstr(kmm_error_message(e1), "corrupt.ko"));
	assert_int_equal(kmm_read_file(path_in("corrupt.ko"), 1 << 20, &got, &len, NULL), 0);
	assert_int_equal(len, sizeof(bad));
	assert_memory_equal(got, bad, len);

	write_bytes("junk.ko.gz", gz_junk, sizeof(gz_junk) - 1);
	assert_true(kmm_signer_sign_file(s, path_in("junk.ko.gz"), NULL, NULL, &e2) < 0);
	assert_non_null(strstr(kmm_error_message(e2), "junk.ko.gz"));

	assert_int_equal(kmm_signer_sign_file(s, path_in("nope.ko"), NULL, NULL, &e3), -ENOENT);
	assert_non_null(strstr(kmm_error_message(e3), "nope.ko"));
	assert_int_equal(kmm_sig_info_from_file("/dev/zero", &info, &e4), -EINVAL);
	assert_non_null(strstr(kmm_error_message(e4), "not a regular file"));
	assert_int_equal(kmm_signer_sign_file(s, fx.dir, NULL, NULL, &e5), -EINVAL);
	assert_null(info);
}

static void test_sign_file_to_output(void **state)
{
	_cleanup_(kmm_signer_freep) struct kmm_signer *s =
	    signer("ec.pem", "ec.crt", KMM_SIGN_HASH_SHA384, false);
	_cleanup_(kmm_sign_cert_freep) struct kmm_sign_cert *c = cert("ec.crt");
	_cleanup_free_ char *orig = NULL;
	size_t len;

	write_bytes("in.ko", fx.module, sizeof(fx.module));
	assert_int_equal(kmm_signer_sign_file(s, path_in("in.ko"), path_in("out.ko"), NULL, NULL),
			 0);
	assert_int_equal(kmm_read_file(path_in("in.ko"), 1 << 20, &orig, &len, NULL), 0);
	assert_int_equal(len, sizeof(fx.module));
	assert_int_equal(kmm_sign_verify_file(c, path_in("out.ko"), NULL), 0);
	assert_int_equal(kmm_sign_verify_file(c, path_in("in.ko"), NULL), -ENODATA);
}

static void test_load_helpers(void **state)
{
	EVP_PKEY *k = NULL;
	X509 *x = NULL;

	assert_int_equal(kmm_sign_load_key(path_in("rsa.der"), &k, NULL), 0);
	assert_int_equal(EVP_PKEY_eq(k, fx.rsa), 1);
	assert_int_equal(kmm_sign_load_x509(path_in("rsa.cer"), &x, NULL), 0);
	assert_int_equal(X509_cmp(x, fx.rsa_cert), 0);
	EVP_PKEY_free(k);
	X509_free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rsa_sign_verify_info),
		cmocka_unit_test(test_rsa_is_deterministic_and_resign_replaces),
		cmocka_unit_test(test_ec_and_hashes),
		cmocka_unit_test(test_verify_rejects),
		cmocka_unit_test(test_verify_rejects_signed_attributes),
		cmocka_unit_test(test_keyid),
		cmocka_unit_test(test_bad_keys),
		cmocka_unit_test(test_empty_and_corrupt_modules),
		cmocka_unit_test(test_compress_roundtrip),
		cmocka_unit_test(test_xz_uses_crc32),
		cmocka_unit_test(test_sign_files),
		cmocka_unit_test(test_sign_file_errors_leave_file),
		cmocka_unit_test(test_sign_file_to_output),
		cmocka_unit_test(test_load_helpers),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
