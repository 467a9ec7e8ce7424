/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Module files: read (capped), decompress when compressed, sign, verify or
 * describe, recompress and write back atomically.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "kmm/shared-fileio.h"
#include "kmm/sign.h"

struct module_file {
	char *raw; /* the file as read */
	size_t raw_len;
	void *plain; /* the decompressed module, or NULL when not compressed */
	size_t plain_len;
	enum kmm_module_compression compression;
	unsigned outer_signatures; /* appended to the compressed bytes, see below */
	mode_t mode;
};

static void module_file_done(struct module_file *m)
{
	free(m->raw);
	free(m->plain);
}

static const void *module_bytes(const struct module_file *m, size_t *ret_len)
{
	if (m->plain) {
		*ret_len = m->plain_len;
		return m->plain;
	}
	*ret_len = m->raw_len;
	return m->raw;
}

/*
 * Reads and, when compressed, decompresses a module. A compressed file can
 * also carry a signature appended to the compressed bytes (what sign-file
 * does when handed a .ko.xz): the kernel never sees that one, since it checks
 * the decompressed module. With strip_outer such signatures are removed
 * before decompressing (counted in outer_signatures); otherwise they are an
 * error that says so.
 */
static int module_file_read(const char *path, bool strip_outer, struct module_file *m,
			    struct kmm_error **err)
{
	struct stat st;
	size_t len;
	int r;

	*m = (struct module_file){ .mode = 0644 };
	/* Not a device or FIFO: reading /dev/zero up to the cap helps nobody. */
	if (stat(path, &st) < 0)
		return kmm_error_make_errno(err, errno, "%s", path);
	if (!S_ISREG(st.st_mode))
		return kmm_error_make(err, EINVAL, "%s: not a regular file", path);
	m->mode = st.st_mode & 07777;
	r = kmm_read_file(path, KMM_SIGN_MAX_FILE_SIZE, &m->raw, &m->raw_len, err);
	if (r < 0)
		return r;
	m->compression = kmm_module_compression_detect(m->raw, m->raw_len);
	if (m->compression == KMM_COMPRESSION_NONE)
		return 0;

	len = m->raw_len;
	r = kmm_sig_strip(m->raw, m->raw_len, &len, &m->outer_signatures, err);
	if (r < 0) {
		(void)kmm_error_wrap(err, "%s: signature appended to the %s data", path,
				     kmm_module_compression_name(m->compression));
		return r;
	}
	if (m->outer_signatures > 0 && !strip_outer)
		return kmm_error_make(err, EBADMSG,
				      "%s: the signature is appended to the %s-compressed file, "
				      "where the kernel does not look (it checks the decompressed "
				      "module); re-sign it so that the signature goes inside",
				      path, kmm_module_compression_name(m->compression));
	r = kmm_module_decompress(m->compression, m->raw, len, KMM_SIGN_MAX_FILE_SIZE, &m->plain,
				  &m->plain_len, err);
	if (r < 0) {
		(void)kmm_error_wrap(err, "%s", path);
		return r;
	}
	return 0;
}

int kmm_signer_sign_file(const struct kmm_signer *s, const char *path, const char *out_path,
			 struct kmm_sign_result *ret_result, struct kmm_error **err)
{
	_cleanup_(module_file_done) struct module_file m = { 0 };
	_cleanup_free_ void *signed_data = NULL;
	_cleanup_free_ void *packed = NULL;
	struct kmm_sign_result res = { 0 };
	struct kmm_sig_trailer t;
	const void *data, *out;
	size_t len, signed_len, out_len;
	int r;

	r = module_file_read(path, true, &m, err);
	if (r < 0)
		return r;
	data = module_bytes(&m, &len);
	r = kmm_signer_sign_buf(s, data, len, &signed_data, &signed_len, &res.replaced, err);
	if (r < 0) {
		(void)kmm_error_wrap(err, "%s", path);
		return r;
	}
	res.compression = m.compression;
	res.replaced += m.outer_signatures;
	/* Our own output, so its trailer parses: the module without old signatures. */
	if (kmm_sig_trailer_parse(signed_data, signed_len, &t, NULL) == 1) {
		res.module_len = t.module_len;
		res.sig_len = t.sig_len;
	}
	out = signed_data;
	out_len = signed_len;
	if (m.compression != KMM_COMPRESSION_NONE) {
		r = kmm_module_compress(m.compression, signed_data, signed_len, &packed, &out_len,
					err);
		if (r < 0) {
			(void)kmm_error_wrap(err, "%s", path);
			return r;
		}
		out = packed;
	}
	r = kmm_write_file_atomic(out_path ? out_path : path, out, out_len, m.mode, err);
	if (r < 0)
		return r;
	res.output_len = out_len;
	if (ret_result)
		*ret_result = res;
	return 0;
}

int kmm_sign_verify_file(const struct kmm_sign_cert *cert, const char *path, struct kmm_error **err)
{
	_cleanup_(module_file_done) struct module_file m = { 0 };
	const void *data;
	size_t len;
	int r;

	r = module_file_read(path, false, &m, err);
	if (r < 0)
		return r;
	data = module_bytes(&m, &len);
	r = kmm_sign_verify_buf(cert, data, len, err);
	if (r < 0) {
		(void)kmm_error_wrap(err, "%s", path);
		return r;
	}
	return 0;
}

int kmm_sig_info_from_file(const char *path, struct kmm_sig_info **ret_info, struct kmm_error **err)
{
	_cleanup_(module_file_done) struct module_file m = { 0 };
	struct kmm_sig_info *info = NULL;
	const void *data;
	size_t len;
	int r;

	r = module_file_read(path, false, &m, err);
	if (r < 0)
		return r;
	data = module_bytes(&m, &len);
	r = kmm_sig_info_from_buf(data, len, &info, err);
	if (r < 0) {
		(void)kmm_error_wrap(err, "%s", path);
		return r;
	}
	if (r == 0)
		return 0;
	info->compression = m.compression;
	*ret_info = info;
	return 1;
}
