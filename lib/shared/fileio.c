/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-fileio.h"

int kmm_read_fd(int fd, size_t max, struct kmm_buf *ret)
{
	char chunk[16384];
	ssize_t n;

	kmm_buf_init(ret, max);
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		int r;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		r = kmm_buf_append(ret, chunk, (size_t)n);
		if (r < 0)
			return r == -E2BIG ? -EFBIG : r;
	}
	return 0;
}

int kmm_read_file(const char *path, size_t max, char **ret_data, size_t *ret_len,
		  struct kmm_error **err)
{
	_cleanup_close_ int fd = -1;
	_cleanup_buf_ struct kmm_buf b;
	int r;

	kmm_buf_init(&b, max);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return kmm_error_make_errno(err, errno, "open %s", path);
	r = kmm_read_fd(fd, max, &b);
	if (r == -EFBIG)
		return kmm_error_make(err, EFBIG, "%s: file is larger than the limit of %zu bytes",
				      path, max);
	if (r < 0)
		return kmm_error_make_errno(err, -r, "read %s", path);
	if (ret_len)
		*ret_len = b.len;
	*ret_data = kmm_buf_steal(&b);
	if (!*ret_data)
		return kmm_error_make_errno(err, ENOMEM, "read %s", path);
	return 0;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int kmm_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
			  struct kmm_error **err)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0)
		return kmm_error_make_errno(err, ENOMEM, "write %s", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return kmm_error_make_errno(err, errno, "create a temporary file for %s", path);
	r = write_all(fd, data, len);
	if (r == 0 && (fchmod(fd, mode) < 0 || fsync(fd) < 0 || rename(tmp, path) < 0))
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return kmm_error_make_errno(err, -r, "write %s", path);
	}
	return 0;
}

bool kmm_path_has_dotdot(const char *path)
{
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, "/");

		if (n == 2 && p[0] == '.' && p[1] == '.')
			return true;
		p += n;
		p += strspn(p, "/");
	}
	return false;
}
