/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel module signatures: writing, checking and describing the PKCS#7
 * signature the kernel expects appended to a module.
 *
 * A signed module is laid out as
 *
 *     module bytes | PKCS#7 DER (sig_len bytes) | struct module_signature | magic
 *
 * where struct module_signature is 12 bytes (algo, hash, id_type, signer_len,
 * key_id_len, 3 pad bytes, big-endian sig_len), all zero except id_type = 2
 * (PKCS#7) and sig_len, and the magic is "~Module signature appended~\n" with
 * no NUL. The PKCS#7 is a detached SignedData without certificates and without
 * signed attributes whose single signer is named by issuer and serial number
 * (or by subjectKeyIdentifier with use_keyid). The signature covers the module
 * bytes only.
 *
 * The writer produces the same bytes as the kernel's scripts/sign-file for the
 * same module, key, certificate and hash (ECDSA signatures are randomised, so
 * for EC keys only the structure is the same). Unlike sign-file it replaces an
 * existing signature instead of appending a second one.
 *
 * Compressed modules (gzip, xz, zstd, recognised by their magic bytes as kmod
 * does) are decompressed, signed inside and recompressed in the same format,
 * since the kernel checks the signature of the decompressed module.
 *
 * Every input is hostile: files are capped at KMM_SIGN_MAX_FILE_SIZE (also
 * after decompression), the trailer is checked the way the kernel checks it,
 * and errors name the file and the reason. The library never logs above debug.
 */
#ifndef KMM_SIGN_H
#define KMM_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kmm/shared-error.h"
#include "kmm/shared-macro.h"

/* Largest module accepted, compressed or not. */
#define KMM_SIGN_MAX_FILE_SIZE ((size_t)512 * 1024 * 1024)

#define KMM_SIG_MAGIC "~Module signature appended~\n"
#define KMM_SIG_MAGIC_LEN (sizeof(KMM_SIG_MAGIC) - 1)
/* sizeof(struct module_signature) in the kernel. */
#define KMM_SIG_INFO_LEN 12
/* id_type values of struct module_signature (PKEY_ID_* in the kernel). */
#define KMM_SIG_ID_PGP 0
#define KMM_SIG_ID_X509 1
#define KMM_SIG_ID_PKCS7 2

/* ---- the trailer: no cryptography, safe on any bytes ---- */

struct kmm_sig_trailer {
	uint8_t algo;
	uint8_t hash;
	uint8_t id_type;
	uint8_t signer_len;
	uint8_t key_id_len;
	uint32_t sig_len;  /* length of the PKCS#7 blob */
	size_t module_len; /* bytes the signature covers; the blob starts here */
};

/*
 * Looks for a signature trailer at the end of `data`. Returns 0 when the data
 * does not end with the magic (unsigned), 1 when it does and the trailer is
 * one the kernel accepts (id_type PKCS#7, other fields zero, 0 < sig_len and
 * at least one module byte before the blob), filling *ret_trailer. Any other trailer is -EBADMSG with
 * the reason in err (an unsupported id_type is -ENOPKG, as in the kernel).
 */
int kmm_sig_trailer_parse(const void *data, size_t len, struct kmm_sig_trailer *ret_trailer,
			  struct kmm_error **err);

/*
 * The length of `data` once every appended signature is removed (sign-file
 * stacks a new signature on an old one; all of them go). *ret_count, if not
 * NULL, gets how many were removed. A corrupt trailer anywhere is an error,
 * never kept as module content.
 */
int kmm_sig_strip(const void *data, size_t len, size_t *ret_len, unsigned *ret_count,
		  struct kmm_error **err);

/* ---- compression, as kmod recognises it ---- */

enum kmm_module_compression {
	KMM_COMPRESSION_NONE,
	KMM_COMPRESSION_GZIP,
	KMM_COMPRESSION_XZ,
	KMM_COMPRESSION_ZSTD,
};

/* "none", "gzip", "xz", "zstd". */
const char *kmm_module_compression_name(enum kmm_module_compression c);

/* The format announced by the first bytes of data (kmod's magic numbers). */
enum kmm_module_compression kmm_module_compression_detect(const void *data, size_t len);

/*
 * Decompresses `data` of format `c` into a malloc'ed buffer of at most `max`
 * bytes (larger output fails with -EFBIG). A stream that is not of format c
 * is -EBADMSG.
 */
int kmm_module_decompress(enum kmm_module_compression c, const void *data, size_t len, size_t max,
			  void **ret_data, size_t *ret_len, struct kmm_error **err);

/*
 * Compresses `data` the way kbuild's modules_install does: gzip without name
 * or timestamp, xz with a CRC32 check and a 1 MiB dictionary (the kernel's xz
 * decoder supports no other check), zstd at its default level. The output is
 * malloc'ed.
 */
int kmm_module_compress(enum kmm_module_compression c, const void *data, size_t len,
			void **ret_data, size_t *ret_len, struct kmm_error **err);

/* ---- keys and certificates ---- */

/* An X.509 certificate, read from PEM or DER. */
struct kmm_sign_cert;

/*
 * Reads the first certificate of a PEM file (other PEM blocks such as a
 * private key are skipped, so kbuild's signing_key.pem works) or a DER file.
 */
int kmm_sign_cert_load(const char *path, struct kmm_sign_cert **ret_cert, struct kmm_error **err);
void kmm_sign_cert_free(struct kmm_sign_cert *cert);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_sign_cert *, kmm_sign_cert_free)

/* Hash algorithms accepted for signing. */
enum kmm_sign_hash {
	KMM_SIGN_HASH_SHA256,
	KMM_SIGN_HASH_SHA384,
	KMM_SIGN_HASH_SHA512,
};

/* "sha256", "sha384", "sha512" <-> enum; -EINVAL for anything else. */
int kmm_sign_hash_from_string(const char *s, enum kmm_sign_hash *ret_hash);
const char *kmm_sign_hash_to_string(enum kmm_sign_hash hash);

struct kmm_signer_options {
	const char *key_path;  /* private key, PEM or DER, unencrypted */
	const char *cert_path; /* certificate, PEM or DER; NULL: read it from key_path */
	enum kmm_sign_hash hash;
	bool use_keyid; /* name the signer by subjectKeyIdentifier (sign-file -k) */
};

/* A private key and its certificate, checked to match. Immutable once built. */
struct kmm_signer;

int kmm_signer_new(const struct kmm_signer_options *o, struct kmm_signer **ret_signer,
		   struct kmm_error **err);
void kmm_signer_free(struct kmm_signer *s);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_signer *, kmm_signer_free)

/* ---- signing ---- */

/*
 * Signs an uncompressed module held in memory: strips any signature already
 * appended (see kmm_sig_strip) and appends a new one. The result is malloc'ed
 * and owned by the caller. *ret_replaced, if not NULL, gets the number of
 * signatures removed.
 */
int kmm_signer_sign_buf(const struct kmm_signer *s, const void *data, size_t len, void **ret_data,
			size_t *ret_len, unsigned *ret_replaced, struct kmm_error **err);

struct kmm_sign_result {
	enum kmm_module_compression compression;
	unsigned replaced; /* signatures removed before signing, inside or outside */
	size_t module_len; /* uncompressed module, without signature */
	size_t sig_len;	   /* PKCS#7 blob appended */
	size_t output_len; /* bytes written */
};

/*
 * Signs the module at `path` (compressed or not) and writes the result to
 * `out_path`, or back to `path` when out_path is NULL, atomically and with the
 * input's permission bits. A signature that sign-file appended to the
 * compressed bytes of a compressed module (useless: the kernel checks the
 * decompressed module) is removed too. ret_result may be NULL.
 */
int kmm_signer_sign_file(const struct kmm_signer *s, const char *path, const char *out_path,
			 struct kmm_sign_result *ret_result, struct kmm_error **err);

/* ---- checking ---- */

/*
 * Checks the signature of a module held in memory (uncompressed) against
 * `cert`, as the kernel would once the certificate is trusted:
 *  - the trailer is valid (kmm_sig_trailer_parse() returns 1);
 *  - the blob is one DER PKCS#7 SignedData with nothing after it, detached,
 *    with content type id-data and no signed attributes (the kernel rejects
 *    module signatures with authenticated attributes);
 *  - every SignerInfo names `cert` (issuer and serial, or subjectKeyIdentifier)
 *    and its signature over the module bytes verifies with cert's public key.
 * Certificates embedded in the message are ignored, and the certificate chain,
 * validity dates and key usage are not checked: module certificates are
 * usually self-signed, and the kernel does not check dates either.
 * An unsigned module is -ENODATA; a signature that does not verify -EKEYREJECTED.
 */
int kmm_sign_verify_buf(const struct kmm_sign_cert *cert, const void *data, size_t len,
			struct kmm_error **err);

/*
 * Same for the file at `path`, decompressed first when compressed. A
 * signature appended to the compressed bytes is -EBADMSG, saying so.
 */
int kmm_sign_verify_file(const struct kmm_sign_cert *cert, const char *path,
			 struct kmm_error **err);

/* ---- describing ---- */

/* What modinfo shows about a signature, plus where it sits. */
struct kmm_sig_info {
	char *sig_id;	 /* "PKCS#7" */
	char *signer;	 /* issuer CN (else the whole issuer); NULL when signed by key id */
	uint8_t *key_id; /* serial number (big-endian, no sign byte) or SKID */
	size_t key_id_len;
	bool key_id_is_skid; /* the signer is named by subjectKeyIdentifier */
	char *hash_algo;     /* "sha256", ... or the digest OID's name */
	uint8_t *signature;
	size_t signature_len;
	size_t module_len; /* bytes covered */
	size_t sig_len;	   /* PKCS#7 blob */
	enum kmm_module_compression compression;
};

/*
 * Describes the signature of an uncompressed module in memory. Returns 1 and
 * fills *ret_info when signed, 0 (and leaves it) when unsigned, negative for a
 * corrupt trailer or a blob that is not a PKCS#7 SignedData with a signer.
 */
int kmm_sig_info_from_buf(const void *data, size_t len, struct kmm_sig_info **ret_info,
			  struct kmm_error **err);

/* Same for the file at `path`, decompressed first when compressed (as verify). */
int kmm_sig_info_from_file(const char *path, struct kmm_sig_info **ret_info,
			   struct kmm_error **err);

void kmm_sig_info_free(struct kmm_sig_info *info);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_sig_info *, kmm_sig_info_free)

/*
 * Formats bytes as modinfo does: uppercase hex pairs joined by ':'; when
 * per_line is not 0, a line break and two tabs after every per_line bytes.
 * Returns a malloc'ed string ("" for no bytes) or NULL on allocation failure.
 */
char *kmm_sig_hex(const uint8_t *p, size_t n, size_t per_line);

/* Most files one kmm-sign command line may expand to. */
#define KMM_SIGN_MAX_FILES 65536

/*
 * Expands kmm-sign's FILE arguments (filesToSign entries are BusyBox-ash
 * globs upstream, and the sign image has no shell to expand them). An
 * argument containing '*', '?' or '[' is a glob(3) pattern: its matches,
 * sorted, replace it; no brace or tilde expansion. Other arguments are kept
 * as they are, whether they exist or not (signing reports a missing file).
 * With literal set, every argument is kept as it is.
 *
 * *ret_files gets the list in argument order (a strv, maybe empty);
 * *ret_unmatched, when not NULL, the patterns that matched nothing (a strv,
 * maybe empty), which callers skip as upstream's `[ -e "$file" ]` does.
 * Fails with -E2BIG past KMM_SIGN_MAX_FILES files.
 */
int kmm_sign_expand_files(char *const *args, size_t n, bool literal, char ***ret_files,
			  char ***ret_unmatched, struct kmm_error **err);

#endif
