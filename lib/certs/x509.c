/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The certificate arithmetic of lib/certs, on PEM text: a private CA, the
 * serving certificates it signs, their validity and the CA bundle. OpenSSL 3;
 * EC P-256 keys (small, fast to make, accepted by every apiserver); the clock
 * is a parameter so that every decision can be tested at any date.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "kmm/certs.h"
#include "kmm/shared-macro.h"

/* Tolerate clients whose clock is a little behind: an hour, or a quarter of a
 * short lifetime (tests rotate certificates of seconds). */
#define BACKDATE_SECONDS 3600L
#define MAX_HOST 253
#define MAX_PEM (64 * 1024)

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

static void x509_store_freep(X509_STORE **p)
{
	X509_STORE_free(*p);
}

static void x509_store_ctx_freep(X509_STORE_CTX **p)
{
	X509_STORE_CTX_free(*p);
}

static void x509_stack_freep(STACK_OF(X509) * *p)
{
	sk_X509_pop_free(*p, X509_free);
}

static BIO *pem_bio(const char *pem)
{
	size_t n = pem ? strnlen(pem, MAX_PEM + 1) : 0;

	if (n == 0 || n > MAX_PEM)
		return NULL;
	return BIO_new_mem_buf(pem, (int)n);
}

/* The readers clear OpenSSL's per-thread error queue: a failure is answered
 * here, and a queue left behind would grow in a thread that runs for months. */
static X509 *read_cert(const char *pem)
{
	_cleanup_(bio_freep) BIO *b = pem_bio(pem);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;

	ERR_clear_error();
	return x;
}

static EVP_PKEY *read_key(const char *pem)
{
	_cleanup_(bio_freep) BIO *b = pem_bio(pem);
	EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;

	ERR_clear_error();
	return k;
}

/* Every certificate of a PEM bundle, in order; NULL if one does not parse or there are too many. */
static STACK_OF(X509) * read_certs(const char *pem)
{
	_cleanup_(bio_freep) BIO *b = pem_bio(pem);
	_cleanup_(x509_stack_freep) STACK_OF(X509) *certs = sk_X509_new_null();
	unsigned long e;
	X509 *x;

	if (!b || !certs)
		return NULL;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
		if (sk_X509_num(certs) >= 64 || !sk_X509_push(certs, x)) {
			X509_free(x);
			return NULL;
		}
	}
	/* The loop ends at the end of the input (no further BEGIN line) or at a
	 * block that does not decode; only the first is a bundle. */
	e = ERR_peek_last_error();
	ERR_clear_error();
	if (sk_X509_num(certs) == 0 || ERR_GET_LIB(e) != ERR_LIB_PEM ||
	    ERR_GET_REASON(e) != PEM_R_NO_START_LINE)
		return NULL;
	return TAKE_PTR(certs);
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

static char *cert_pem(X509 *x)
{
	_cleanup_(bio_freep) BIO *b = BIO_new(BIO_s_mem());

	return b && PEM_write_bio_X509(b, x) ? bio_string(b) : NULL;
}

static char *key_pem(EVP_PKEY *k)
{
	_cleanup_(bio_freep) BIO *b = BIO_new(BIO_s_mem());

	return b && PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) ? bio_string(b)
									      : NULL;
}

static int asn1_time_to_time(const ASN1_TIME *t, time_t *ret)
{
	struct tm tm;

	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return -EINVAL;
	*ret = timegm(&tm);
	return 0;
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

static int add_sans(X509 *x, const char *const *hosts)
{
	_cleanup_(general_names_freep) GENERAL_NAMES *names = GENERAL_NAMES_new();

	if (!names)
		return -ENOMEM;
	for (size_t i = 0; hosts[i]; i++)
		if (add_name(names, hosts[i]) < 0)
			return -ENOMEM;
	return X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) == 1 ? 0
											     : -EIO;
}

/* Extensions given as OpenSSL config values; issuer is x itself for a self-signed CA. */
static int add_exts(X509 *x, X509 *issuer, const char *const exts[][2], size_t n)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	for (size_t i = 0; i < n; i++) {
		ext = X509V3_EXT_conf(NULL, &ctx, exts[i][0], exts[i][1]);
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

static int set_serial(X509 *x)
{
	_cleanup_(bn_freep) BIGNUM *bn = BN_new();

	/* 127 random bits: positive and unique, as CA/B rules ask of public CAs. */
	if (!bn || !BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		return -EIO;
	return 0;
}

/* Version, serial, validity [now - backdate, not_after], subject CN and public key. */
static int set_basics(X509 *x, EVP_PKEY *key, const char *cn, time_t now, time_t not_after)
{
	time_t t = now;
	long backdate = BACKDATE_SECONDS;

	if ((not_after - now) / 4 < backdate)
		backdate = (long)((not_after - now) / 4);
	if (!X509_set_version(x, X509_VERSION_3) || set_serial(x) < 0 ||
	    !X509_time_adj(X509_getm_notBefore(x), -backdate, &t) ||
	    !X509_time_adj(X509_getm_notAfter(x), 0, &not_after) || !X509_set_pubkey(x, key) ||
	    !X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
					(const unsigned char *)cn, -1, -1, 0))
		return -EIO;
	return 0;
}

/* what names the certificate in error messages. */
static int check_hosts(const char *const *hosts, const char *what, struct kmm_error **err)
{
	if (!hosts || !hosts[0])
		return kmm_error_make(err, EINVAL, "%s: no host name", what);
	for (size_t i = 0; hosts[i]; i++)
		if (!*hosts[i] || strlen(hosts[i]) > MAX_HOST)
			return kmm_error_make(err, EINVAL, "%s: bad host name '%.64s'", what,
					      hosts[i]);
	return 0;
}

/* What a new certificate is: its names, extensions and validity. */
struct cert_spec {
	const char *what; /* names it in error messages */
	const char *common_name;
	const char *const *hosts; /* subjectAltNames, or NULL for none */
	const char *const (*exts)[2];
	size_t n_exts;
	time_t now;
	time_t not_after;
};

/* A new key and a certificate for it, signed by ca and ca_key, or by itself
 * when ca is NULL; both as PEM. */
static int make_cert(const struct cert_spec *s, X509 *ca, EVP_PKEY *ca_key, char **ret_cert_pem,
		     char **ret_key_pem, struct kmm_error **err)
{
	_cleanup_(evp_pkey_freep) EVP_PKEY *key = EVP_EC_gen("P-256");
	_cleanup_(x509_freep) X509 *x = X509_new();
	_cleanup_free_ char *c = NULL, *k = NULL;
	X509 *issuer;

	if (!key || !x)
		return kmm_error_make(err, ENOMEM, "%s: generate a key", s->what);
	issuer = ca ? ca : x;
	if (set_basics(x, key, s->common_name, s->now, s->not_after) < 0 ||
	    !X509_set_issuer_name(x, X509_get_subject_name(issuer)) ||
	    (s->hosts && add_sans(x, s->hosts) < 0) ||
	    add_exts(x, issuer, s->exts, s->n_exts) < 0 ||
	    !X509_sign(x, ca ? ca_key : key, EVP_sha256()))
		return kmm_error_make(err, EIO, "%s: build and sign", s->what);
	c = cert_pem(x);
	k = key_pem(key);
	if (!c || !k)
		return kmm_error_make(err, ENOMEM, "%s: encode PEM", s->what);
	*ret_cert_pem = TAKE_PTR(c);
	*ret_key_pem = TAKE_PTR(k);
	return 0;
}

int kmm_certs_new_ca(const char *common_name, time_t now, int64_t valid_seconds,
		     char **ret_cert_pem, char **ret_key_pem, struct kmm_error **err)
{
	static const char *const exts[][2] = {
		{ "basicConstraints", "critical,CA:TRUE,pathlen:0" },
		{ "keyUsage", "critical,keyCertSign,cRLSign,digitalSignature" },
		{ "subjectKeyIdentifier", "hash" },
	};

	if (!common_name || !*common_name || valid_seconds <= 0)
		return kmm_error_make(err, EINVAL, "CA: no name or no validity");
	return make_cert(&(struct cert_spec){ .what = "CA",
					      .common_name = common_name,
					      .exts = exts,
					      .n_exts = KMM_ARRAY_SIZE(exts),
					      .now = now,
					      .not_after = now + (time_t)valid_seconds },
			 NULL, NULL, ret_cert_pem, ret_key_pem, err);
}

/* A serving certificate's extensions; an issued one also names its CA's key. */
static const char *const serving_exts[][2] = {
	{ "basicConstraints", "critical,CA:FALSE" },
	{ "keyUsage", "critical,digitalSignature" },
	{ "extendedKeyUsage", "serverAuth" },
	{ "authorityKeyIdentifier", "keyid:always" },
};
#define SELF_SIGNED_EXTS 3 /* all but authorityKeyIdentifier: no CA key to name */

int kmm_certs_issue(const char *ca_cert_pem, const char *ca_key_pem, const char *const *hosts,
		    time_t now, int64_t valid_seconds, char **ret_cert_pem, char **ret_key_pem,
		    struct kmm_error **err)
{
	_cleanup_(evp_pkey_freep) EVP_PKEY *ca_key = read_key(ca_key_pem);
	_cleanup_(x509_freep) X509 *ca = read_cert(ca_cert_pem);
	time_t not_after, ca_not_after;

	if (check_hosts(hosts, "certificate", err) < 0)
		return -EINVAL;
	if (!ca || !ca_key)
		return kmm_error_make(err, EINVAL, "certificate: the CA or its key does not parse");
	if (valid_seconds <= 0 || asn1_time_to_time(X509_get0_notAfter(ca), &ca_not_after) < 0)
		return kmm_error_make(err, EINVAL, "certificate: no validity");
	/* A certificate outliving its CA would fail verification before it is due. */
	not_after = now + (time_t)valid_seconds;
	if (not_after > ca_not_after)
		not_after = ca_not_after;
	return make_cert(&(struct cert_spec){ .what = "certificate",
					      .common_name = hosts[0],
					      .hosts = hosts,
					      .exts = serving_exts,
					      .n_exts = KMM_ARRAY_SIZE(serving_exts),
					      .now = now,
					      .not_after = not_after },
			 ca, ca_key, ret_cert_pem, ret_key_pem, err);
}

int kmm_certs_self_signed(const char *const *hosts, time_t now, int64_t valid_seconds,
			  char **ret_cert_pem, char **ret_key_pem, struct kmm_error **err)
{
	if (check_hosts(hosts, "self-signed certificate", err) < 0)
		return -EINVAL;
	if (valid_seconds <= 0)
		return kmm_error_make(err, EINVAL, "self-signed certificate: no validity");
	return make_cert(&(struct cert_spec){ .what = "self-signed certificate",
					      .common_name = hosts[0],
					      .hosts = hosts,
					      .exts = serving_exts,
					      .n_exts = SELF_SIGNED_EXTS,
					      .now = now,
					      .not_after = now + (time_t)valid_seconds },
			 NULL, NULL, ret_cert_pem, ret_key_pem, err);
}

int kmm_certs_validity(const char *pem, time_t *ret_not_before, time_t *ret_not_after,
		       struct kmm_error **err)
{
	_cleanup_(x509_freep) X509 *x = read_cert(pem);
	time_t nb, na;

	if (!x || asn1_time_to_time(X509_get0_notBefore(x), &nb) < 0 ||
	    asn1_time_to_time(X509_get0_notAfter(x), &na) < 0)
		return kmm_error_make(err, EINVAL, "certificate does not parse");
	*ret_not_before = nb;
	*ret_not_after = na;
	return 0;
}

int kmm_certs_count(const char *pem)
{
	_cleanup_(x509_stack_freep) STACK_OF(X509) *certs = read_certs(pem);

	return certs ? sk_X509_num(certs) : -EINVAL;
}

bool kmm_certs_due(time_t not_before, time_t not_after, time_t now)
{
	/* In 64-bit arithmetic: validity spans of decades overflow no time_t, but be explicit. */
	int64_t life = (int64_t)not_after - (int64_t)not_before;

	if (life <= 0 || now < not_before || now >= not_after)
		return true;
	return (int64_t)now - (int64_t)not_before >= life / 3 * 2;
}

int kmm_certs_check_ca(const char *ca_cert_pem, const char *ca_key_pem, time_t now,
		       struct kmm_error **err)
{
	_cleanup_(x509_freep) X509 *ca = read_cert(ca_cert_pem);
	_cleanup_(evp_pkey_freep) EVP_PKEY *key = read_key(ca_key_pem);
	time_t nb, na;

	if (!ca)
		return kmm_error_make(err, EINVAL, "CA certificate does not parse");
	if (!key)
		return kmm_error_make(err, EINVAL, "CA key does not parse");
	if (X509_check_ca(ca) != 1)
		return kmm_error_make(err, EINVAL, "CA certificate is not a CA");
	if (X509_check_private_key(ca, key) != 1)
		return kmm_error_make(err, EINVAL, "CA key does not match the CA certificate");
	if (asn1_time_to_time(X509_get0_notBefore(ca), &nb) < 0 ||
	    asn1_time_to_time(X509_get0_notAfter(ca), &na) < 0 || now < nb || now >= na)
		return kmm_error_make(err, EINVAL, "CA certificate is not valid now");
	return 0;
}

static int check_names(X509 *x, const char *const *hosts, struct kmm_error **err)
{
	for (size_t i = 0; hosts[i]; i++) {
		ASN1_OCTET_STRING *ip = a2i_IPADDRESS(hosts[i]);
		int r;

		if (ip) {
			ASN1_OCTET_STRING_free(ip);
			r = X509_check_ip_asc(x, hosts[i], 0);
		} else {
			r = X509_check_host(x, hosts[i], 0, X509_CHECK_FLAG_NO_WILDCARDS, NULL);
		}
		if (r != 1)
			return kmm_error_make(err, EINVAL, "certificate does not name %s",
					      hosts[i]);
	}
	return 0;
}

int kmm_certs_check_serving(const char *ca_cert_pem, const char *cert_pem, const char *key_pem,
			    const char *const *hosts, time_t now, struct kmm_error **err)
{
	_cleanup_(x509_freep) X509 *ca = read_cert(ca_cert_pem), *x = read_cert(cert_pem);
	_cleanup_(evp_pkey_freep) EVP_PKEY *key = read_key(key_pem);
	_cleanup_(x509_store_freep) X509_STORE *store = X509_STORE_new();
	_cleanup_(x509_store_ctx_freep) X509_STORE_CTX *ctx = X509_STORE_CTX_new();

	if (check_hosts(hosts, "certificate", err) < 0)
		return -EINVAL;
	if (!ca || !x || !key)
		return kmm_error_make(err, EINVAL, "CA, certificate or key does not parse");
	if (X509_check_private_key(x, key) != 1)
		return kmm_error_make(err, EINVAL, "key does not match the certificate");
	if (!store || !ctx || !X509_STORE_add_cert(store, ca) ||
	    !X509_STORE_CTX_init(ctx, store, x, NULL))
		return kmm_error_make(err, ENOMEM, "certificate: verify");
	X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), now);
	X509_VERIFY_PARAM_set_purpose(X509_STORE_CTX_get0_param(ctx), X509_PURPOSE_SSL_SERVER);
	if (X509_verify_cert(ctx) != 1)
		return kmm_error_make(err, EINVAL, "certificate does not verify against the CA: %s",
				      X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	return check_names(x, hosts, err);
}

int kmm_certs_bundle(const char *ca_cert_pem, const char *old_bundle_pem, time_t now,
		     char **ret_bundle_pem, struct kmm_error **err)
{
	_cleanup_(x509_freep) X509 *ca = read_cert(ca_cert_pem);
	_cleanup_(x509_stack_freep) STACK_OF(X509) *old = NULL;
	_cleanup_(bio_freep) BIO *b = BIO_new(BIO_s_mem());
	_cleanup_free_ char *out = NULL;
	int n = 1;

	if (!ca)
		return kmm_error_make(err, EINVAL, "CA bundle: the CA does not parse");
	/* An unreadable old bundle is dropped: it can only hold CAs nobody can use. */
	if (old_bundle_pem && *old_bundle_pem)
		old = read_certs(old_bundle_pem);
	if (!b || !PEM_write_bio_X509(b, ca))
		return kmm_error_make(err, ENOMEM, "CA bundle: encode");
	for (int i = 0; old && i < sk_X509_num(old) && n < KMM_CERTS_MAX_BUNDLE; i++) {
		X509 *o = sk_X509_value(old, i);
		time_t nb, na;

		if (X509_cmp(o, ca) == 0 || asn1_time_to_time(X509_get0_notBefore(o), &nb) < 0 ||
		    asn1_time_to_time(X509_get0_notAfter(o), &na) < 0 || now >= na)
			continue;
		if (!PEM_write_bio_X509(b, o))
			return kmm_error_make(err, ENOMEM, "CA bundle: encode");
		n++;
	}
	out = bio_string(b);
	if (!out)
		return kmm_error_make(err, ENOMEM, "CA bundle: encode");
	*ret_bundle_pem = TAKE_PTR(out);
	return 0;
}
