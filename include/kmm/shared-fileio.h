/* SPDX-License-Identifier: Apache-2.0 */
/* Reading and writing whole files, with a cap on what is read. */
#ifndef KMM_FILEIO_H
#define KMM_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

#include <stdbool.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-error.h"

/*
 * The one reader of whole inputs. kmm_read_fd() reads fd to its end into
 * *ret (initialized here; the caller frees it, also on failure) and returns
 * 0 or a negative errno: -EFBIG past `max` bytes.
 */
int kmm_read_fd(int fd, size_t max, struct kmm_buf *ret);
/*
 * Reads the file at `path` (a regular file, FIFO or /proc entry) into a
 * NUL-terminated heap buffer owned by the caller. A file larger than `max`
 * bytes fails with -EFBIG. ret_len may be NULL. Errors name the path.
 */
int kmm_read_file(const char *path, size_t max, char **ret_data, size_t *ret_len,
		  struct kmm_error **err);

/*
 * Writes `len` bytes to `path` atomically: a temporary file in the same
 * directory, fsync, then rename over the target, so readers see the old or the
 * new content and never a torn file.
 */
int kmm_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
			  struct kmm_error **err);

/*
 * True if `path` has a ".." component. Paths that name places inside an image
 * (dirName, firmwarePath) must not, so they cannot climb out of it.
 */
bool kmm_path_has_dotdot(const char *path);

#endif
