/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A self-signed serving certificate, made in memory at start when no
 * certificate is given (controller-runtime does the same for its metrics
 * server). The key never touches the disk.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "kmm/server-httpd.h"

#define VALID_SECONDS (365L * 24 * 3600)
#define BACKDATE_SECONDS 3600L /* tolerate clients whose clock is a little behind */
#define MAX_HOST 253

static void evp_pkey_freep(EVP_PKEY **p)
{
	EVP_PKEY_free(*p);
}

static void x509_freep(X509 **p)
{
	X509_free(*p);
}

static void bio_freep(BIO **p)
{
	BIO_free(*p);
}

static void general_names_freep(GENERAL_NAMES **p)
{
	GENERAL_NAMES_free(*p);
}

static void bn_freep(BIGNUM **p)
{
	BN_free(*p);
}

/* One subjectAltName entry: an IP address if it parses as one, else a DNS name. */
static int add_name(GENERAL_NAMES *names, const char *host)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_OCTET_STRING *ip;
	ASN1_IA5STRING *dns;

	if (!gn)
		return -ENOMEM;
	ip = a2i_IPADDRESS(host);
	if (ip) {
		GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
	} else {
		dns = ASN1_IA5STRING_new();
		if (!dns || !ASN1_STRING_set(dns, host, (int)strlen(host))) {
			ASN1_IA5STRING_free(dns);
			GENERAL_NAME_free(gn);
			return -ENOMEM;
		}
		GENERAL_NAME_set0_value(gn, GEN_DNS, dns);
	}
	if (!sk_GENERAL_NAME_push(names, gn)) {
		GENERAL_NAME_free(gn);
		return -ENOMEM;
	}
	return 0;
}

static int set_serial(X509 *x)
{
	_cleanup_(bn_freep) BIGNUM *bn = BN_new();

	/* 127 random bits: positive and unique enough for a certificate nobody revokes. */
	if (!bn || !BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		return -EIO;
	return 0;
}

static int add_extensions(X509 *x, const char *const *hosts)
{
	_cleanup_(general_names_freep) GENERAL_NAMES *names = GENERAL_NAMES_new();
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	static const struct {
		int nid;
		const char *value;
	} plain[] = {
		{ NID_basic_constraints, "critical,CA:FALSE" },
		{ NID_key_usage, "critical,digitalSignature" },
		{ NID_ext_key_usage, "serverAuth" },
	};

	if (!names)
		return -ENOMEM;
	for (size_t i = 0; hosts[i]; i++)
		if (add_name(names, hosts[i]) < 0)
			return -ENOMEM;
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) != 1)
		return -EIO;
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		ext = X509V3_EXT_conf_nid(NULL, &ctx, plain[i].nid, plain[i].value);
		if (!ext)
			return -EIO;
		if (!X509_add_ext(x, ext, -1)) {
			X509_EXTENSION_free(ext);
			return -EIO;
		}
		X509_EXTENSION_free(ext);
	}
	return 0;
}

static char *bio_string(BIO *b)
{
	char *data = NULL, *s;
	long n = BIO_get_mem_data(b, &data);

	/* Not strndup: the BIO's memory is not NUL-terminated. */
	if (n <= 0 || !(s = malloc((size_t)n + 1)))
		return NULL;
	memcpy(s, data, (size_t)n);
	s[n] = '\0';
	return s;
}

int kmm_tls_self_signed(const char *const *hosts, char **ret_cert_pem, char **ret_key_pem,
			struct kmm_error **err)
{
	_cleanup_(evp_pkey_freep) EVP_PKEY *key = NULL;
	_cleanup_(x509_freep) X509 *x = NULL;
	_cleanup_(bio_freep) BIO *cb = NULL, *kb = NULL;
	_cleanup_free_ char *cert_pem = NULL, *key_pem = NULL;
	X509_NAME *name;

	if (!hosts || !hosts[0])
		return kmm_error_make(err, EINVAL, "self-signed certificate: no host name");
	for (size_t i = 0; hosts[i]; i++)
		if (!*hosts[i] || strlen(hosts[i]) > MAX_HOST)
			return kmm_error_make(err, EINVAL,
					      "self-signed certificate: bad host name '%.64s'",
					      hosts[i]);
	key = EVP_EC_gen("P-256");
	x = X509_new();
	if (!key || !x)
		return kmm_error_make(err, ENOMEM, "self-signed certificate: generate a key");
	name = X509_get_subject_name(x);
	if (!X509_set_version(x, X509_VERSION_3) || set_serial(x) < 0 ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -BACKDATE_SECONDS) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), VALID_SECONDS) || !X509_set_pubkey(x, key) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)hosts[0],
					-1, -1, 0) ||
	    !X509_set_issuer_name(x, name) || add_extensions(x, hosts) < 0 ||
	    !X509_sign(x, key, EVP_sha256()))
		return kmm_error_make(err, EIO, "self-signed certificate: build and sign");
	cb = BIO_new(BIO_s_mem());
	kb = BIO_new(BIO_s_mem());
	if (!cb || !kb || !PEM_write_bio_X509(cb, x) ||
	    !PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL))
		return kmm_error_make(err, EIO, "self-signed certificate: encode PEM");
	cert_pem = bio_string(cb);
	key_pem = bio_string(kb);
	if (!cert_pem || !key_pem)
		return kmm_error_make(err, ENOMEM, "self-signed certificate: encode PEM");
	*ret_cert_pem = TAKE_PTR(cert_pem);
	*ret_key_pem = TAKE_PTR(key_pem);
	return 0;
}
