/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The PKCS#7 part of module signatures, on OpenSSL 3's CMS API: loading keys
 * and certificates, signing with the same calls and flags as the kernel's
 * scripts/sign-file (so the DER is the same), checking and describing a
 * signature.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-fileio.h"
#include "kmm/sign.h"
#include "lib/sign/sign-internal.h"

/* Key and certificate files are small; anything bigger is not one. */
#define KEY_FILE_MAX ((size_t)1024 * 1024)

/* sign-file's flags, see the kernel's scripts/sign-file.c and deps.md. */
#define SIGN_FLAGS (CMS_NOCERTS | CMS_PARTIAL | CMS_BINARY | CMS_DETACHED | CMS_STREAM)
#define SIGNER_FLAGS (CMS_NOCERTS | CMS_BINARY | CMS_NOSMIMECAP | CMS_NOATTR)
#define FINAL_FLAGS (CMS_NOCERTS | CMS_BINARY)

KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(BIO *, BIO_free_all)
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(CMS_ContentInfo *, CMS_ContentInfo_free)
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(BIGNUM *, BN_free)

static void x509_stack_free(STACK_OF(X509) * sk)
{
	sk_X509_free(sk);
}
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(STACK_OF(X509) *, x509_stack_free)

static void openssl_freep(unsigned char **p)
{
	OPENSSL_free(*p);
}

struct kmm_sign_cert {
	X509 *x509;
};

struct kmm_signer {
	EVP_PKEY *key;
	X509 *cert;
	const EVP_MD *md;
	int signer_flags;
};

/*
 * Makes an error from a message and OpenSSL's error queue (reasons joined by
 * "; "), and empties the queue so the next call starts clean.
 */
_printf_(3, 4) static int ssl_error(struct kmm_error **err, int code, const char *fmt, ...)
{
	_cleanup_buf_ struct kmm_buf b;
	unsigned long e;
	const char *data;
	int flags;
	va_list ap;

	kmm_buf_init(&b, 4096);
	va_start(ap, fmt);
	(void)kmm_buf_vprintf(&b, fmt, ap);
	va_end(ap);
	for (int i = 0; (e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0; i++) {
		const char *reason = ERR_reason_error_string(e);

		(void)kmm_buf_printf(&b, "%s%s", i == 0 ? ": " : "; ",
				     reason ? reason : "OpenSSL error");
		if ((flags & ERR_TXT_STRING) && data && *data)
			(void)kmm_buf_printf(&b, " (%s)", data);
	}
	return kmm_error_make(err, code, "%s", kmm_buf_str(&b));
}

static bool looks_like_pem(const char *data, size_t len)
{
	return memmem(data, len, "-----BEGIN ", 11) != NULL;
}

/* PKCS#8 "ENCRYPTED PRIVATE KEY" blocks and traditional ones with a Proc-Type header. */
static bool is_encrypted_pem(const char *data, size_t len)
{
	static const char pkcs8[] = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
	static const char traditional[] = "Proc-Type: 4,ENCRYPTED";

	return memmem(data, len, pkcs8, sizeof(pkcs8) - 1) ||
	       memmem(data, len, traditional, sizeof(traditional) - 1);
}

/* Never prompt on a terminal for a passphrase: an encrypted key is an error. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)userdata;
	return -1;
}

static void cleanse_freep(struct kmm_buf *b)
{
	if (b->data)
		OPENSSL_cleanse(b->data, b->len);
	kmm_buf_free(b);
}

static int read_small_file(const char *path, struct kmm_buf *out, struct kmm_error **err)
{
	char *data = NULL;
	size_t len = 0;
	int r;

	r = kmm_read_file(path, KEY_FILE_MAX, &data, &len, err);
	if (r < 0)
		return r;
	if (!data || len == 0) {
		free(data);
		(void)kmm_error_make(err, EINVAL, "%s: file is empty", path);
		return -EINVAL;
	}
	*out = (struct kmm_buf){ .data = data, .len = len, .cap = len + 1, .max = KEY_FILE_MAX };
	return 0;
}

KMM_TESTABLE int kmm_sign_load_key(const char *path, EVP_PKEY **ret_key, struct kmm_error **err)
{
	_cleanup_(cleanse_freep) struct kmm_buf data = { 0 };
	_cleanup_(BIO_free_allp) BIO *bio = NULL;
	EVP_PKEY *key;
	int r;

	r = read_small_file(path, &data, err);
	if (r < 0) {
		(void)kmm_error_wrap(err, "private key");
		return r;
	}
	bio = BIO_new_mem_buf(data.data, (int)data.len);
	if (!bio)
		return kmm_error_make_errno(err, ENOMEM, "private key %s", path);
	if (looks_like_pem(data.data, data.len)) {
		if (is_encrypted_pem(data.data, data.len))
			return kmm_error_make(err, EINVAL,
					      "private key %s is encrypted; an unencrypted key is "
					      "needed (openssl pkey -in KEY -out PLAIN)",
					      path);
		key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	} else {
		key = d2i_PrivateKey_bio(bio, NULL);
	}
	if (!key)
		return ssl_error(err, EINVAL, "private key %s: not a PEM or DER private key", path);
	*ret_key = key;
	return 0;
}

KMM_TESTABLE int kmm_sign_load_x509(const char *path, X509 **ret_x509, struct kmm_error **err)
{
	_cleanup_buf_ struct kmm_buf data = { 0 };
	_cleanup_(BIO_free_allp) BIO *bio = NULL;
	X509 *x;
	int r;

	r = read_small_file(path, &data, err);
	if (r < 0) {
		(void)kmm_error_wrap(err, "certificate");
		return r;
	}
	bio = BIO_new_mem_buf(data.data, (int)data.len);
	if (!bio)
		return kmm_error_make_errno(err, ENOMEM, "certificate %s", path);
	if (looks_like_pem(data.data, data.len))
		x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
	else
		x = d2i_X509_bio(bio, NULL);
	if (!x)
		return ssl_error(err, EINVAL, "certificate %s: not a PEM or DER X.509 certificate",
				 path);
	*ret_x509 = x;
	return 0;
}

int kmm_sign_cert_load(const char *path, struct kmm_sign_cert **ret_cert, struct kmm_error **err)
{
	struct kmm_sign_cert *c;
	X509 *x = NULL;
	int r;

	r = kmm_sign_load_x509(path, &x, err);
	if (r < 0)
		return r;
	c = calloc(1, sizeof(*c));
	if (!c) {
		X509_free(x);
		return kmm_error_make_errno(err, ENOMEM, "certificate %s", path);
	}
	c->x509 = x;
	*ret_cert = c;
	return 0;
}

void kmm_sign_cert_free(struct kmm_sign_cert *cert)
{
	if (!cert)
		return;
	X509_free(cert->x509);
	free(cert);
}

static const char *const hash_names[] = {
	[KMM_SIGN_HASH_SHA256] = "sha256",
	[KMM_SIGN_HASH_SHA384] = "sha384",
	[KMM_SIGN_HASH_SHA512] = "sha512",
};

int kmm_sign_hash_from_string(const char *s, enum kmm_sign_hash *ret_hash)
{
	for (size_t i = 0; i < KMM_ARRAY_SIZE(hash_names); i++) {
		if (s && strcmp(s, hash_names[i]) == 0) {
			*ret_hash = (enum kmm_sign_hash)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *kmm_sign_hash_to_string(enum kmm_sign_hash hash)
{
	if ((size_t)hash >= KMM_ARRAY_SIZE(hash_names))
		return NULL;
	return hash_names[hash];
}

void kmm_signer_free(struct kmm_signer *s)
{
	if (!s)
		return;
	EVP_PKEY_free(s->key);
	X509_free(s->cert);
	free(s);
}

int kmm_signer_new(const struct kmm_signer_options *o, struct kmm_signer **ret_signer,
		   struct kmm_error **err)
{
	_cleanup_(kmm_signer_freep) struct kmm_signer *s = NULL;
	const char *cert_path = o->cert_path ? o->cert_path : o->key_path;
	const char *hash = kmm_sign_hash_to_string(o->hash);
	int r;

	if (!o->key_path)
		return kmm_error_make(err, EINVAL, "no private key given");
	if (!hash)
		return kmm_error_make(err, EINVAL, "unsupported hash algorithm %d", (int)o->hash);
	s = calloc(1, sizeof(*s));
	if (!s)
		return kmm_error_make_errno(err, ENOMEM, "signer");
	r = kmm_sign_load_key(o->key_path, &s->key, err);
	if (r < 0)
		return r;
	r = kmm_sign_load_x509(cert_path, &s->cert, err);
	if (r < 0)
		return r;
	if (X509_check_private_key(s->cert, s->key) != 1)
		return ssl_error(err, EINVAL, "private key %s does not match certificate %s",
				 o->key_path, cert_path);
	if (o->use_keyid && !X509_get0_subject_key_id(s->cert))
		return kmm_error_make(
		    err, EINVAL,
		    "certificate %s has no subjectKeyIdentifier, which naming the "
		    "signer by key id needs",
		    cert_path);
	s->md = EVP_get_digestbyname(hash);
	if (!s->md)
		return ssl_error(err, ENOTSUP, "hash %s is not available in this OpenSSL", hash);
	s->signer_flags = SIGNER_FLAGS | (o->use_keyid ? CMS_USE_KEYID : 0);
	*ret_signer = TAKE_PTR(s);
	return 0;
}

/* The DER PKCS#7 over `data`, built as sign-file builds it. */
static int make_signature(const struct kmm_signer *s, const void *data, size_t len,
			  unsigned char **ret_der, size_t *ret_der_len, struct kmm_error **err)
{
	_cleanup_(CMS_ContentInfo_freep) CMS_ContentInfo *cms = NULL;
	_cleanup_(BIO_free_allp) BIO *in = NULL;
	unsigned char *der = NULL;
	int n;

	if (len > INT_MAX)
		return kmm_error_make(err, EFBIG, "module too large to sign");
	in = BIO_new_mem_buf(data, (int)len);
	if (!in)
		return kmm_error_make_errno(err, ENOMEM, "sign");
	cms = CMS_sign(NULL, NULL, NULL, NULL, SIGN_FLAGS);
	if (!cms)
		return ssl_error(err, EIO, "sign: CMS_sign");
	if (!CMS_add1_signer(cms, s->cert, s->key, s->md, s->signer_flags))
		return ssl_error(err, EIO, "sign: CMS_add1_signer");
	if (CMS_final(cms, in, NULL, FINAL_FLAGS) != 1)
		return ssl_error(err, EIO, "sign: CMS_final");
	n = i2d_CMS_ContentInfo(cms, &der);
	if (n <= 0)
		return ssl_error(err, EIO, "sign: encode the PKCS#7");
	*ret_der = der;
	*ret_der_len = (size_t)n;
	return 0;
}

int kmm_signer_sign_buf(const struct kmm_signer *s, const void *data, size_t len, void **ret_data,
			size_t *ret_len, unsigned *ret_replaced, struct kmm_error **err)
{
	_cleanup_(openssl_freep) unsigned char *der = NULL;
	size_t module_len = 0, der_len = 0, out_len;
	unsigned replaced;
	uint8_t info[KMM_SIG_INFO_LEN] = { 0 };
	uint8_t *out;
	int r;

	r = kmm_sig_strip(data, len, &module_len, &replaced, err);
	if (r < 0) {
		(void)kmm_error_wrap(err, "existing signature");
		return r;
	}
	if (module_len == 0)
		return kmm_error_make(err, EINVAL, "the module is empty");
	r = make_signature(s, data, module_len, &der, &der_len, err);
	if (r < 0)
		return r;
	if (!der)
		return kmm_error_make(err, EIO, "sign: no signature was produced");
	if (der_len > UINT32_MAX)
		return kmm_error_make(err, EFBIG, "signature too large");

	info[2] = KMM_SIG_ID_PKCS7;
	info[8] = (uint8_t)(der_len >> 24);
	info[9] = (uint8_t)(der_len >> 16);
	info[10] = (uint8_t)(der_len >> 8);
	info[11] = (uint8_t)der_len;

	out_len = module_len + der_len + KMM_SIG_INFO_LEN + KMM_SIG_MAGIC_LEN;
	out = malloc(out_len);
	if (!out)
		return kmm_error_make_errno(err, ENOMEM, "sign");
	memcpy(out, data, module_len);
	memcpy(out + module_len, der, der_len);
	memcpy(out + module_len + der_len, info, sizeof(info));
	memcpy(out + module_len + der_len + sizeof(info), KMM_SIG_MAGIC, KMM_SIG_MAGIC_LEN);
	*ret_data = out;
	*ret_len = out_len;
	if (ret_replaced)
		*ret_replaced = replaced;
	return 0;
}

/*
 * Decodes the PKCS#7 blob of a signed module and checks that it is one DER
 * SignedData with at least one signer and nothing after it.
 */
static int decode_signature(const void *data, const struct kmm_sig_trailer *t,
			    CMS_ContentInfo **ret_cms, struct kmm_error **err)
{
	_cleanup_(CMS_ContentInfo_freep) CMS_ContentInfo *cms = NULL;
	const unsigned char *p = (const unsigned char *)data + t->module_len;
	const unsigned char *end = p + t->sig_len;

	/* sig_len < the data length, so it fits a long wherever the data fits memory. */
	cms = d2i_CMS_ContentInfo(NULL, &p, (long)t->sig_len);
	if (!cms)
		return ssl_error(err, EBADMSG, "the signature is not a DER PKCS#7 message");
	if (p != end)
		return kmm_error_make(err, EBADMSG,
				      "the PKCS#7 signature is followed by %zu stray bytes",
				      (size_t)(end - p));
	if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed)
		return kmm_error_make(err, EBADMSG, "the PKCS#7 message is not SignedData");
	if (sk_CMS_SignerInfo_num(CMS_get0_SignerInfos(cms)) < 1)
		return kmm_error_make(err, EBADMSG, "the PKCS#7 signature has no signer");
	*ret_cms = TAKE_PTR(cms);
	return 0;
}

static int signed_module(const void *data, size_t len, struct kmm_sig_trailer *ret_t,
			 struct kmm_error **err)
{
	int r = kmm_sig_trailer_parse(data, len, ret_t, err);

	if (r == 0)
		return kmm_error_make(err, ENODATA, "the module is not signed");
	return r;
}

int kmm_sign_verify_buf(const struct kmm_sign_cert *cert, const void *data, size_t len,
			struct kmm_error **err)
{
	_cleanup_(CMS_ContentInfo_freep) CMS_ContentInfo *cms = NULL;
	_cleanup_(x509_stack_freep) STACK_OF(X509) *certs = NULL;
	_cleanup_(BIO_free_allp) BIO *content = NULL;
	STACK_OF(CMS_SignerInfo) * sis;
	struct kmm_sig_trailer t;
	int r;

	r = signed_module(data, len, &t, err);
	if (r < 0)
		return r;
	r = decode_signature(data, &t, &cms, err);
	if (r < 0)
		return r;
	/* The kernel's pkcs7_verify() rejects a module signature otherwise. */
	if (CMS_is_detached(cms) != 1)
		return kmm_error_make(err, EBADMSG, "the PKCS#7 signature is not detached");
	if (OBJ_obj2nid(CMS_get0_eContentType(cms)) != NID_pkcs7_data)
		return kmm_error_make(err, EBADMSG,
				      "the PKCS#7 content type is not id-data, which the kernel "
				      "requires of module signatures");
	sis = CMS_get0_SignerInfos(cms);
	for (int i = 0; i < sk_CMS_SignerInfo_num(sis); i++) {
		CMS_SignerInfo *si = sk_CMS_SignerInfo_value(sis, i);

		if (CMS_signed_get_attr_count(si) > 0)
			return kmm_error_make(err, EBADMSG,
					      "signer %d has signed attributes, which the kernel "
					      "rejects in module signatures",
					      i + 1);
		if (CMS_SignerInfo_cert_cmp(si, cert->x509) != 0)
			return kmm_error_make(err, EKEYREJECTED,
					      "signer %d is not the given certificate (it names "
					      "another issuer and serial number, or key id)",
					      i + 1);
	}

	if (t.module_len > INT_MAX)
		return kmm_error_make(err, EFBIG, "module too large to verify");
	certs = sk_X509_new_null();
	content = BIO_new_mem_buf(data, (int)t.module_len);
	if (!certs || !content || !sk_X509_push(certs, cert->x509))
		return kmm_error_make_errno(err, ENOMEM, "verify");
	/*
	 * CMS_NOINTERN: only our certificate may verify, never one carried in the
	 * message. CMS_NO_SIGNER_CERT_VERIFY: no chain building; the caller
	 * decides whether the certificate is trusted.
	 */
	if (CMS_verify(cms, certs, NULL, content, NULL,
		       CMS_BINARY | CMS_NOINTERN | CMS_NO_SIGNER_CERT_VERIFY) != 1)
		return ssl_error(err, EKEYREJECTED, "the signature does not verify");
	return 0;
}

static char *hash_name(const X509_ALGOR *alg)
{
	const ASN1_OBJECT *obj = NULL;
	char txt[128];
	int nid;

	X509_ALGOR_get0(&obj, NULL, NULL, alg);
	nid = OBJ_obj2nid(obj);
	/* The names kmod's modinfo prints (its pkey_hash_algo table). */
	switch (nid) {
	case NID_md4:
		return strdup("md4");
	case NID_md5:
		return strdup("md5");
	case NID_sha1:
		return strdup("sha1");
	case NID_ripemd160:
		return strdup("rmd160");
	case NID_sha224:
		return strdup("sha224");
	case NID_sha256:
		return strdup("sha256");
	case NID_sha384:
		return strdup("sha384");
	case NID_sha512:
		return strdup("sha512");
	case NID_sm3:
		return strdup("sm3");
	default:
		break;
	}
	if (OBJ_obj2txt(txt, sizeof(txt), obj, 0) <= 0)
		return strdup("unknown");
	return strdup(txt);
}

static int copy_bytes(const unsigned char *p, size_t n, uint8_t **ret, size_t *ret_len)
{
	uint8_t *c = malloc(n ? n : 1);

	if (!c)
		return -ENOMEM;
	if (n)
		memcpy(c, p, n);
	*ret = c;
	*ret_len = n;
	return 0;
}

/* signer (issuer CN, as kmod reports it) and key id (serial magnitude, as BN_bn2bin). */
static int describe_signer_id(CMS_SignerInfo *si, struct kmm_sig_info *info)
{
	_cleanup_(BN_freep) BIGNUM *bn = NULL;
	ASN1_OCTET_STRING *keyid = NULL;
	X509_NAME *issuer = NULL;
	ASN1_INTEGER *sno = NULL;
	int idx, n;

	if (CMS_SignerInfo_get0_signer_id(si, &keyid, &issuer, &sno) != 1)
		return -EBADMSG;
	if (keyid) {
		info->key_id_is_skid = true;
		return copy_bytes(ASN1_STRING_get0_data(keyid), (size_t)ASN1_STRING_length(keyid),
				  &info->key_id, &info->key_id_len);
	}
	if (!issuer || !sno)
		return -EBADMSG;
	idx = X509_NAME_get_index_by_NID(issuer, NID_commonName, -1);
	if (idx >= 0) {
		const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(issuer, idx));

		info->signer = strndup((const char *)ASN1_STRING_get0_data(cn),
				       (size_t)ASN1_STRING_length(cn));
	} else {
		char *oneline = X509_NAME_oneline(issuer, NULL, 0);

		info->signer = oneline ? strdup(oneline) : NULL;
		OPENSSL_free(oneline);
	}
	if (!info->signer)
		return -ENOMEM;
	bn = ASN1_INTEGER_to_BN(sno, NULL);
	if (!bn)
		return -EBADMSG;
	n = BN_num_bytes(bn);
	info->key_id = malloc(n > 0 ? (size_t)n : 1);
	if (!info->key_id)
		return -ENOMEM;
	info->key_id_len = (size_t)BN_bn2bin(bn, info->key_id);
	return 0;
}

int kmm_sig_info_from_buf(const void *data, size_t len, struct kmm_sig_info **ret_info,
			  struct kmm_error **err)
{
	_cleanup_(kmm_sig_info_freep) struct kmm_sig_info *info = NULL;
	_cleanup_(CMS_ContentInfo_freep) CMS_ContentInfo *cms = NULL;
	X509_ALGOR *digest = NULL;
	ASN1_OCTET_STRING *sig;
	CMS_SignerInfo *si;
	struct kmm_sig_trailer t;
	int r;

	r = kmm_sig_trailer_parse(data, len, &t, err);
	if (r <= 0)
		return r;
	r = decode_signature(data, &t, &cms, err);
	if (r < 0)
		return r;
	/* Like modinfo, describe the first signer. */
	si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
	info = calloc(1, sizeof(*info));
	if (!info)
		return kmm_error_make_errno(err, ENOMEM, "signature info");
	info->module_len = t.module_len;
	info->sig_len = t.sig_len;
	info->sig_id = strdup("PKCS#7");
	if (!info->sig_id)
		return kmm_error_make_errno(err, ENOMEM, "signature info");
	r = describe_signer_id(si, info);
	if (r == -ENOMEM)
		return kmm_error_make_errno(err, ENOMEM, "signature info");
	if (r < 0)
		return ssl_error(err, EBADMSG, "the PKCS#7 signer has no usable identifier");
	CMS_SignerInfo_get0_algs(si, NULL, NULL, &digest, NULL);
	sig = CMS_SignerInfo_get0_signature(si);
	if (!digest || !sig)
		return kmm_error_make(err, EBADMSG, "the PKCS#7 signer has no digest or signature");
	info->hash_algo = hash_name(digest);
	if (!info->hash_algo ||
	    copy_bytes(ASN1_STRING_get0_data(sig), (size_t)ASN1_STRING_length(sig),
		       &info->signature, &info->signature_len) < 0)
		return kmm_error_make_errno(err, ENOMEM, "signature info");
	*ret_info = TAKE_PTR(info);
	return 1;
}

void kmm_sig_info_free(struct kmm_sig_info *info)
{
	if (!info)
		return;
	free(info->sig_id);
	free(info->signer);
	free(info->key_id);
	free(info->hash_algo);
	free(info->signature);
	free(info);
}
