/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compressed modules. Reading goes through libarchive's raw format with only
 * the three filters kmod knows; writing too, except xz: libarchive always
 * writes a CRC64 check and the kernel's xz decoder accepts only CRC32 (or
 * none), so xz is written with liblzma the way kbuild's `xz --check=crc32
 * --lzma2=dict=1MiB` does.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <lzma.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-buf.h"
#include "kmm/sign.h"

KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct archive *, archive_read_free)
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct archive *, archive_write_free)
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct archive_entry *, archive_entry_free)

const char *kmm_module_compression_name(enum kmm_module_compression c)
{
	switch (c) {
	case KMM_COMPRESSION_NONE:
		return "none";
	case KMM_COMPRESSION_GZIP:
		return "gzip";
	case KMM_COMPRESSION_XZ:
		return "xz";
	case KMM_COMPRESSION_ZSTD:
		return "zstd";
	}
	return "unknown";
}

enum kmm_module_compression kmm_module_compression_detect(const void *data, size_t len)
{
	static const uint8_t gzip_magic[] = { 0x1f, 0x8b };
	static const uint8_t xz_magic[] = { 0xfd, '7', 'z', 'X', 'Z', 0x00 };
	static const uint8_t zstd_magic[] = { 0x28, 0xb5, 0x2f, 0xfd };

	if (len >= sizeof(xz_magic) && memcmp(data, xz_magic, sizeof(xz_magic)) == 0)
		return KMM_COMPRESSION_XZ;
	if (len >= sizeof(zstd_magic) && memcmp(data, zstd_magic, sizeof(zstd_magic)) == 0)
		return KMM_COMPRESSION_ZSTD;
	if (len >= sizeof(gzip_magic) && memcmp(data, gzip_magic, sizeof(gzip_magic)) == 0)
		return KMM_COMPRESSION_GZIP;
	return KMM_COMPRESSION_NONE;
}

static int archive_filter_for(enum kmm_module_compression c)
{
	switch (c) {
	case KMM_COMPRESSION_GZIP:
		return ARCHIVE_FILTER_GZIP;
	case KMM_COMPRESSION_XZ:
		return ARCHIVE_FILTER_XZ;
	case KMM_COMPRESSION_ZSTD:
		return ARCHIVE_FILTER_ZSTD;
	case KMM_COMPRESSION_NONE:
		break;
	}
	return ARCHIVE_FILTER_NONE;
}

static int archive_fail(struct archive *a, struct kmm_error **err, int fallback, const char *what)
{
	int code = archive_errno(a) > 0 ? archive_errno(a) : fallback;
	const char *msg = archive_error_string(a);

	return kmm_error_make(err, code, "%s: %s", what, msg ? msg : "libarchive failed");
}

int kmm_module_decompress(enum kmm_module_compression c, const void *data, size_t len, size_t max,
			  void **ret_data, size_t *ret_len, struct kmm_error **err)
{
	_cleanup_(archive_read_freep) struct archive *a = NULL;
	_cleanup_buf_ struct kmm_buf out;
	struct archive_entry *entry;
	const char *name = kmm_module_compression_name(c);
	char chunk[65536];
	la_ssize_t n;
	int r;

	kmm_buf_init(&out, max);
	if (c == KMM_COMPRESSION_NONE)
		return kmm_error_make(err, EINVAL, "decompress: no compression format given");
	a = archive_read_new();
	if (!a)
		return kmm_error_make_errno(err, ENOMEM, "decompress %s", name);
	if ((c == KMM_COMPRESSION_GZIP && archive_read_support_filter_gzip(a) != ARCHIVE_OK) ||
	    (c == KMM_COMPRESSION_XZ && archive_read_support_filter_xz(a) != ARCHIVE_OK) ||
	    (c == KMM_COMPRESSION_ZSTD && archive_read_support_filter_zstd(a) != ARCHIVE_OK) ||
	    archive_read_support_format_raw(a) != ARCHIVE_OK)
		return archive_fail(a, err, ENOTSUP, "decompress");
	if (archive_read_open_memory(a, data, len) != ARCHIVE_OK ||
	    archive_read_next_header(a, &entry) != ARCHIVE_OK)
		return archive_fail(a, err, EBADMSG, "decompress");
	if (archive_filter_code(a, 0) != archive_filter_for(c))
		return kmm_error_make(err, EBADMSG, "decompress: not a %s stream", name);
	for (;;) {
		n = archive_read_data(a, chunk, sizeof(chunk));
		if (n < 0)
			return archive_fail(a, err, EBADMSG, "decompress");
		if (n == 0)
			break;
		r = kmm_buf_append(&out, chunk, (size_t)n);
		if (r == -E2BIG)
			return kmm_error_make(
			    err, EFBIG,
			    "decompress %s: the module is larger than the limit of "
			    "%zu bytes",
			    name, max);
		if (r < 0)
			return kmm_error_make_errno(err, -r, "decompress %s", name);
	}
	*ret_len = out.len;
	*ret_data = kmm_buf_steal(&out);
	if (!*ret_data)
		return kmm_error_make_errno(err, ENOMEM, "decompress %s", name);
	return 0;
}

static la_ssize_t write_cb(struct archive *a, void *userdata, const void *p, size_t n)
{
	int r = kmm_buf_append(userdata, p, n);

	if (r < 0) {
		archive_set_error(a, -r, "output buffer: %s", strerror(-r));
		return -1;
	}
	return (la_ssize_t)n;
}

static int compress_archive(enum kmm_module_compression c, const void *data, size_t len,
			    struct kmm_buf *out, struct kmm_error **err)
{
	_cleanup_(archive_write_freep) struct archive *a = NULL;
	_cleanup_(archive_entry_freep) struct archive_entry *entry = NULL;
	const char *p = data;
	int r;

	a = archive_write_new();
	entry = archive_entry_new();
	if (!a || !entry)
		return kmm_error_make_errno(err, ENOMEM, "compress");
	if (c == KMM_COMPRESSION_GZIP)
		r = archive_write_add_filter_gzip(a);
	else
		r = archive_write_add_filter_zstd(a);
	if (r != ARCHIVE_OK)
		return archive_fail(a, err, ENOTSUP, "compress");
	/* gzip -n: no name, no timestamp, so the output is reproducible. */
	if (c == KMM_COMPRESSION_GZIP &&
	    archive_write_set_filter_option(a, "gzip", "timestamp", NULL) != ARCHIVE_OK)
		return archive_fail(a, err, ENOTSUP, "compress");
	/* No padding after the stream: the raw writer would pad to a tar block. */
	if (archive_write_set_format_raw(a) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
	    archive_write_open2(a, out, NULL, write_cb, NULL, NULL) != ARCHIVE_OK)
		return archive_fail(a, err, EIO, "compress");
	archive_entry_set_filetype(entry, AE_IFREG);
	archive_entry_set_pathname(entry, "module");
	archive_entry_set_size(entry, (la_int64_t)len);
	if (archive_write_header(a, entry) != ARCHIVE_OK)
		return archive_fail(a, err, EIO, "compress");
	while (len > 0) {
		size_t chunk = len < (size_t)1 << 20 ? len : (size_t)1 << 20;
		la_ssize_t n = archive_write_data(a, p, chunk);

		if (n <= 0)
			return archive_fail(a, err, EIO, "compress");
		p += n;
		len -= (size_t)n;
	}
	if (archive_write_close(a) != ARCHIVE_OK)
		return archive_fail(a, err, EIO, "compress");
	return 0;
}

static int compress_xz(const void *data, size_t len, struct kmm_buf *out, struct kmm_error **err)
{
	lzma_options_lzma opt;
	lzma_filter filters[2];
	_cleanup_free_ uint8_t *buf = NULL;
	size_t bound, pos = 0;
	lzma_ret lr;

	if (lzma_lzma_preset(&opt, LZMA_PRESET_DEFAULT))
		return kmm_error_make(err, ENOTSUP, "compress xz: liblzma has no default preset");
	opt.dict_size = 1U << 20;
	filters[0] = (lzma_filter){ .id = LZMA_FILTER_LZMA2, .options = &opt };
	filters[1] = (lzma_filter){ .id = LZMA_VLI_UNKNOWN, .options = NULL };
	bound = lzma_stream_buffer_bound(len);
	if (bound == 0)
		return kmm_error_make(err, EFBIG, "compress xz: input too large");
	buf = malloc(bound);
	if (!buf)
		return kmm_error_make_errno(err, ENOMEM, "compress xz");
	lr =
	    lzma_stream_buffer_encode(filters, LZMA_CHECK_CRC32, NULL, data, len, buf, &pos, bound);
	if (lr != LZMA_OK)
		return kmm_error_make(err, lr == LZMA_MEM_ERROR ? ENOMEM : EIO,
				      "compress xz: liblzma error %d", (int)lr);
	if (kmm_buf_append(out, buf, pos) < 0)
		return kmm_error_make_errno(err, ENOMEM, "compress xz");
	return 0;
}

int kmm_module_compress(enum kmm_module_compression c, const void *data, size_t len,
			void **ret_data, size_t *ret_len, struct kmm_error **err)
{
	_cleanup_buf_ struct kmm_buf out;
	int r;

	/* Compressed output of a capped input stays below the cap plus overhead. */
	kmm_buf_init(&out, KMM_SIGN_MAX_FILE_SIZE + KMM_SIGN_MAX_FILE_SIZE / 8);
	switch (c) {
	case KMM_COMPRESSION_GZIP:
	case KMM_COMPRESSION_ZSTD:
		r = compress_archive(c, data, len, &out, err);
		break;
	case KMM_COMPRESSION_XZ:
		r = compress_xz(data, len, &out, err);
		break;
	case KMM_COMPRESSION_NONE:
	default:
		return kmm_error_make(err, EINVAL, "compress: no compression format given");
	}
	if (r < 0)
		return r;
	*ret_len = out.len;
	*ret_data = kmm_buf_steal(&out);
	if (!*ret_data)
		return kmm_error_make_errno(err, ENOMEM, "compress %s",
					    kmm_module_compression_name(c));
	return 0;
}
