/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Safe layer extraction.
 *
 * libarchive only reads (tar, gzip/zstd); every write is ours, relative to a
 * directory fd of the staging tree:
 *  - names are normalized first: absolute names and ".." are rejected, so a
 *    path is a list of plain components;
 *  - parents are opened one component at a time with O_NOFOLLOW|O_DIRECTORY,
 *    so nothing is ever written through a symlink (in-tree or not), and
 *    missing parents are created 0755;
 *  - final components are created with O_EXCL/O_NOFOLLOW, mkdirat, symlinkat
 *    or linkat after removing what a lower layer left there;
 *  - symlink targets must have the shape (../)*name(/name)* with no more ".."
 *    than the link's depth, so resolving them (and chains of them) can never
 *    leave the tree; absolute targets are rewritten to that relative form;
 *  - hard links must point to a regular file this extraction wrote;
 *  - device nodes, FIFOs and sockets are refused.
 * The blob is hashed while libarchive reads it; a layer only counts once the
 * digest and size match. The caller extracts into a staging directory and
 * renames it into place after the last layer, so a rejected image leaves
 * nothing behind.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-hashmap.h"
#include "kmm/shared-log.h"
#include "kmm/shared-strv.h"
#include "lib/registry/registry-internal.h"

#define ENTRY_PATH_MAX 4096
#define READ_CHUNK (128 * 1024)

struct kmm_extractor {
	int root_fd;	 /* borrowed */
	char **prefixes; /* normalized image paths; "" is the whole image */
	struct kmm_extract_limits lim;
	char *image;
	uint64_t entries;
	uint64_t bytes_written;
	uint64_t archive_bytes;
	struct kmm_hashmap *layer_paths; /* paths written by the current layer */
	char *cached_dir;		 /* parent directory of the last entry ... */
	int cached_fd;			 /* ... open here, or -1 */
};

struct layer_reader {
	int fd;
	struct kmm_digester *dg;
	uint64_t total;
	int64_t expect_size;
	uint64_t max;
	int failed_errno;
	char *failure; /* our own message for a failed read */
	char buf[READ_CHUNK];
};

void kmm_extract_limits_fill(struct kmm_extract_limits *l)
{
	if (!l->max_total_bytes)
		l->max_total_bytes = (uint64_t)4 << 30;
	if (!l->max_file_bytes)
		l->max_file_bytes = (uint64_t)1 << 30;
	if (!l->max_entries)
		l->max_entries = 1000000;
	if (!l->max_blob_bytes)
		l->max_blob_bytes = (uint64_t)4 << 30;
	if (!l->max_archive_bytes)
		l->max_archive_bytes = (uint64_t)64 << 30;
	if (!l->max_layers)
		l->max_layers = 256;
}

/*
 * Splits name into plain components joined by '/', dropping "." and empty
 * ones. Returns 0, or -EINVAL with *reason set for absolute names and "..".
 */
static int normalize_path(const char *name, bool allow_absolute, char **ret, const char **reason)
{
	_cleanup_buf_ struct kmm_buf b;
	const char *p = name;

	kmm_buf_init(&b, ENTRY_PATH_MAX);
	if (*p == '/' && !allow_absolute) {
		*reason = "absolute path";
		return -EINVAL;
	}
	while (*p) {
		size_t n = strcspn(p, "/");

		if (n == 2 && p[0] == '.' && p[1] == '.') {
			*reason = "path escapes the target ('..' component)";
			return -EINVAL;
		}
		if (n > NAME_MAX) {
			*reason = "path component longer than NAME_MAX";
			return -EINVAL;
		}
		if (n > 0 && !(n == 1 && p[0] == '.')) {
			int r = kmm_buf_printf(&b, "%s%.*s", b.len ? "/" : "", (int)n, p);
			if (r == -E2BIG) {
				*reason = "path longer than 4096 bytes";
				return -EINVAL;
			}
			if (r < 0)
				return r;
		}
		p += n;
		if (*p == '/')
			p++;
	}
	*ret = b.len ? kmm_buf_steal(&b) : strdup("");
	return *ret ? 0 : -ENOMEM;
}

/* Printable, bounded copy of an entry name for error messages. */
static char *printable(const char *s)
{
	size_t n = strnlen(s, 256);
	char *out = malloc(n + 4);

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\'') ? s[i] : '?';
	memcpy(out + n, s[n] ? "..." : "", s[n] ? 4 : 1);
	return out;
}

_printf_(5, 6) static int entry_error(struct kmm_extractor *x, struct kmm_error **err, int code,
				      const char *digest, const char *fmt, ...);

/* "image I: layer D: entry 'E': reason" */
static int entry_fail(struct kmm_extractor *x, struct kmm_error **err, int code, const char *digest,
		      const char *entry, const char *reason)
{
	_cleanup_free_ char *p = printable(entry ? entry : "");

	return kmm_error_make(err, code, "image %s: layer %s: entry '%s': %s", x->image, digest,
			      p ? p : "?", reason);
}

static int entry_error(struct kmm_extractor *x, struct kmm_error **err, int code,
		       const char *digest, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	return kmm_error_make(err, code, "image %s: layer %s: %s", x->image, digest, msg);
}

int kmm_extractor_new(int root_fd, const char *const *prefixes,
		      const struct kmm_extract_limits *limits, const char *image,
		      struct kmm_extractor **ret, struct kmm_error **err)
{
	struct kmm_extractor *x;

	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->root_fd = root_fd;
	x->cached_fd = -1;
	x->lim = *limits;
	kmm_extract_limits_fill(&x->lim);
	x->image = strdup(image);
	x->layer_paths = kmm_hashmap_new(NULL);
	if (!x->image || !x->layer_paths) {
		kmm_extractor_free(x);
		return -ENOMEM;
	}
	for (size_t i = 0; prefixes && prefixes[i]; i++) {
		char *norm = NULL;
		const char *reason = NULL;
		int r = normalize_path(prefixes[i], true, &norm, &reason);

		if (r == 0 && kmm_strv_consume(&x->prefixes, norm) < 0) {
			free(norm);
			r = -ENOMEM;
		}
		if (r < 0) {
			kmm_extractor_free(x);
			if (r == -ENOMEM)
				return r;
			return kmm_error_make(err, EINVAL, "include prefix '%s': %s", prefixes[i],
					      reason);
		}
	}
	if (!x->prefixes) {
		kmm_extractor_free(x);
		return kmm_error_make(err, EINVAL, "no include prefixes given");
	}
	*ret = x;
	return 0;
}

void kmm_extractor_free(struct kmm_extractor *x)
{
	if (!x)
		return;
	if (x->cached_fd >= 0)
		close(x->cached_fd);
	free(x->cached_dir);
	kmm_hashmap_free(x->layer_paths);
	kmm_strv_free(x->prefixes);
	free(x->image);
	free(x);
}

static bool has_prefix_path(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	if (n == 0)
		return true;
	return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static bool is_included(struct kmm_extractor *x, const char *path)
{
	KMM_STRV_FOREACH (p, x->prefixes) {
		if (has_prefix_path(path, p))
			return true;
	}
	return false;
}

/* True if path is a strict ancestor of some prefix (or the root). */
static bool is_prefix_ancestor(struct kmm_extractor *x, const char *path)
{
	KMM_STRV_FOREACH (p, x->prefixes) {
		if (strcmp(path, p) != 0 && has_prefix_path(p, path))
			return true;
	}
	return false;
}

static void drop_cache(struct kmm_extractor *x)
{
	if (x->cached_fd >= 0)
		close(x->cached_fd);
	x->cached_fd = -1;
	x->cached_dir = kmm_free_and_null(x->cached_dir);
}

/*
 * Opens the directory at the normalized path dir (relative to the root),
 * creating missing components when create is set. Never follows symlinks.
 * Returns a new fd, or -errno (ELOOP/ENOTDIR: a component is a symlink or not
 * a directory; ENOENT: missing and !create).
 */
static int open_dir(struct kmm_extractor *x, const char *dir, bool create)
{
	_cleanup_close_ int cur = -1;
	const char *p = dir;

	if (x->cached_dir && strcmp(x->cached_dir, dir) == 0) {
		int fd = fcntl(x->cached_fd, F_DUPFD_CLOEXEC, 3);

		return fd < 0 ? -errno : fd;
	}
	cur = fcntl(x->root_fd, F_DUPFD_CLOEXEC, 3);
	if (cur < 0)
		return -errno;
	while (*p) {
		size_t n = strcspn(p, "/");
		char comp[NAME_MAX + 1];
		int fd;

		memcpy(comp, p, n);
		comp[n] = '\0';
		fd = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && create) {
			/* 0755 whatever the umask, so trees do not depend on the caller's */
			if (mkdirat(cur, comp, 0755) < 0 ? errno != EEXIST
							 : fchmodat(cur, comp, 0755, 0) < 0)
				return -errno;
			fd = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (fd < 0) {
			struct stat st;

			/* O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR; say ELOOP. */
			if (errno == ENOTDIR && fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISLNK(st.st_mode))
				return -ELOOP;
			return -errno;
		}
		close(cur);
		cur = fd;
		p += n;
		if (*p == '/')
			p++;
	}
	if (create) {
		int keep = fcntl(cur, F_DUPFD_CLOEXEC, 3);
		char *copy = strdup(dir);

		if (keep >= 0 && copy) {
			drop_cache(x);
			x->cached_fd = keep;
			x->cached_dir = copy;
		} else {
			if (keep >= 0)
				close(keep);
			free(copy);
		}
	}
	return TAKE_FD(cur);
}

static const char *open_dir_reason(int r)
{
	switch (-r) {
	case ELOOP:
		return "a parent directory is a symlink (writing through symlinks is refused)";
	case ENOTDIR:
		return "a parent is not a directory";
	default:
		return NULL;
	}
}

int kmm_remove_tree_at(int dir_fd, const char *name)
{
	_cleanup_strv_free_ char **children = NULL;
	struct stat st;
	DIR *d;
	struct dirent *de;
	int fd, r = 0;

	if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (kmm_strv_push(&children, de->d_name) < 0) {
			closedir(d);
			return -ENOMEM;
		}
	}
	KMM_STRV_FOREACH (c, children) {
		r = kmm_remove_tree_at(dirfd(d), c);
		if (r < 0)
			break;
	}
	closedir(d);
	if (r < 0)
		return r;
	return unlinkat(dir_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT ? -errno : 0;
}

/* Records path and its ancestors as written by the current layer. */
static int mark_written(struct kmm_extractor *x, const char *path)
{
	_cleanup_free_ char *p = strdup(path);

	if (!p)
		return -ENOMEM;
	for (;;) {
		char *slash;
		int r = kmm_hashmap_put(x->layer_paths, p, NULL, NULL);

		if (r < 0)
			return r;
		if (r == 0)
			return 0; /* already there, so are its ancestors */
		slash = strrchr(p, '/');
		if (!slash)
			return 0;
		*slash = '\0';
	}
}

static void split_path(char *path, const char **ret_dir, const char **ret_base)
{
	char *slash = strrchr(path, '/');

	if (slash) {
		*slash = '\0';
		*ret_dir = path;
		*ret_base = slash + 1;
	} else {
		*ret_dir = "";
		*ret_base = path;
	}
}

/* ".wh.name": removes dir/name unless the current layer wrote it. */
static int apply_whiteout(struct kmm_extractor *x, const char *dir, const char *name,
			  const char *digest, const char *entry, struct kmm_error **err)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int dfd = -1;
	int r;

	if (*name == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return entry_fail(x, err, EINVAL, digest, entry,
				  "malformed whiteout (names no file)");
	if (asprintf(&path, "%s%s%s", dir, *dir ? "/" : "", name) < 0)
		return -ENOMEM;
	if (!is_included(x, path) && !is_prefix_ancestor(x, path))
		return 0;
	if (kmm_hashmap_contains(x->layer_paths, path))
		return 0;
	dfd = open_dir(x, dir, false);
	if (dfd == -ENOENT)
		return 0;
	if (dfd < 0)
		return entry_fail(x, err, -dfd, digest, entry,
				  open_dir_reason(dfd) ?: "cannot open the whiteout's directory");
	drop_cache(x);
	r = kmm_remove_tree_at(dfd, name);
	if (r < 0)
		return entry_fail(x, err, -r, digest, entry, "cannot apply whiteout");
	return 0;
}

/* ".wh..wh..opq" in dir: removes what lower layers put in dir. */
static int apply_opaque(struct kmm_extractor *x, const char *dir, const char *digest,
			const char *entry, struct kmm_error **err)
{
	_cleanup_strv_free_ char **victims = NULL;
	_cleanup_close_ int dfd = -1;
	DIR *d;
	struct dirent *de;
	int fd, r;

	if (!is_included(x, dir) && !is_prefix_ancestor(x, dir))
		return 0;
	dfd = open_dir(x, dir, false);
	if (dfd == -ENOENT)
		return 0;
	if (dfd < 0)
		return entry_fail(x, err, -dfd, digest, entry,
				  open_dir_reason(dfd) ?: "cannot open the opaque directory");
	fd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return entry_fail(x, err, errno, digest, entry, "cannot read the opaque directory");
	}
	while ((de = readdir(d))) {
		_cleanup_free_ char *path = NULL;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (asprintf(&path, "%s%s%s", dir, *dir ? "/" : "", de->d_name) < 0) {
			closedir(d);
			return -ENOMEM;
		}
		if (!kmm_hashmap_contains(x->layer_paths, path) &&
		    kmm_strv_push(&victims, de->d_name) < 0) {
			closedir(d);
			return -ENOMEM;
		}
	}
	closedir(d);
	drop_cache(x);
	KMM_STRV_FOREACH (v, victims) {
		r = kmm_remove_tree_at(dfd, v);
		if (r < 0)
			return entry_fail(x, err, -r, digest, entry,
					  "cannot apply opaque whiteout");
	}
	return 0;
}

/*
 * Validates a symlink target for a link in directory link_dir (normalized)
 * and returns what to write: relative targets as given, absolute ones
 * rewritten relative to link_dir. See the top of the file for the shape.
 */
static int symlink_target(const char *link_dir, const char *target, char **ret, const char **reason)
{
	_cleanup_buf_ struct kmm_buf b;
	size_t depth = 0, ups = 0;
	bool absolute = target[0] == '/', seen_name = false;
	const char *p = target;

	if (!*target) {
		*reason = "empty symlink target";
		return -EINVAL;
	}
	if (strlen(target) >= ENTRY_PATH_MAX) {
		*reason = "symlink target longer than 4095 bytes";
		return -EINVAL;
	}
	for (const char *q = link_dir; *link_dir && q; q = strchr(q + 1, '/'))
		depth++;
	kmm_buf_init(&b, 2 * ENTRY_PATH_MAX);
	if (absolute) {
		for (size_t i = 0; i < depth; i++) {
			if (kmm_buf_append_str(&b, i ? "/.." : "..") < 0)
				return -ENOMEM;
		}
	}
	while (*p) {
		size_t n = strcspn(p, "/");

		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (absolute || seen_name || ++ups > depth) {
				*reason = "symlink target escapes the target";
				return -EXDEV;
			}
		} else if (n > 0 && !(n == 1 && p[0] == '.')) {
			seen_name = true;
			if (absolute &&
			    kmm_buf_printf(&b, "%s%.*s", b.len ? "/" : "", (int)n, p) < 0)
				return -ENOMEM;
		}
		p += n;
		if (*p == '/')
			p++;
	}
	if (!absolute)
		*ret = strdup(target);
	else
		*ret = b.len ? kmm_buf_steal(&b) : strdup(".");
	return *ret ? 0 : -ENOMEM;
}

static int write_file(struct kmm_extractor *x, struct archive *a, struct archive_entry *e, int dfd,
		      const char *base, const char *digest, const char *entry,
		      struct kmm_error **err)
{
	_cleanup_close_ int fd = -1;
	int64_t declared = archive_entry_size(e);
	const void *block;
	size_t size;
	la_int64_t offset;
	int r;

	if (declared < 0 || (uint64_t)declared > x->lim.max_file_bytes)
		return entry_fail(x, err, EFBIG, digest, entry,
				  "file larger than the per-file limit");
	fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return entry_fail(x, err, errno, digest, entry, "cannot create file");
	while ((r = archive_read_data_block(a, &block, &size, &offset)) == ARCHIVE_OK) {
		const char *q = block;
		uint64_t end = (uint64_t)offset + size;

		if (offset < 0 || end > x->lim.max_file_bytes)
			return entry_fail(x, err, EFBIG, digest, entry,
					  "file larger than the per-file limit");
		if (x->bytes_written + size > x->lim.max_total_bytes)
			return entry_fail(x, err, EFBIG, digest, entry,
					  "image content larger than the total size limit");
		x->bytes_written += size;
		while (size > 0) {
			ssize_t w = pwrite(fd, q, size, offset);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return entry_fail(x, err, w < 0 ? errno : EIO, digest, entry,
						  "write failed");
			q += w;
			size -= (size_t)w;
			offset += w;
		}
	}
	if (r != ARCHIVE_EOF)
		return entry_error(x, err, EINVAL, digest, "entry '%s': reading data: %s", entry,
				   archive_error_string(a) ?: "unknown libarchive error");
	if (ftruncate(fd, declared) < 0 || fchmod(fd, archive_entry_perm(e) & 0777) < 0)
		return entry_fail(x, err, errno, digest, entry, "cannot finish file");
	return 0;
}

static int write_hardlink(struct kmm_extractor *x, struct archive_entry *e, int dfd,
			  const char *base, const char *digest, const char *entry,
			  struct kmm_error **err)
{
	_cleanup_free_ char *target = NULL;
	_cleanup_close_ int sfd = -1;
	const char *reason = NULL, *sdir, *sbase;
	struct stat st;
	int r;

	r = normalize_path(archive_entry_hardlink(e), false, &target, &reason);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return entry_fail(x, err, EXDEV, digest, entry,
				  "hard link target escapes the target");
	if (!*target || !is_included(x, target))
		return entry_fail(x, err, EXDEV, digest, entry,
				  "hard link target is outside the extracted paths");
	split_path(target, &sdir, &sbase);
	sfd = open_dir(x, sdir, false);
	if (sfd < 0 || fstatat(sfd, sbase, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
		return entry_fail(x, err, EXDEV, digest, entry,
				  "hard link target is not an extracted regular file");
	if (linkat(sfd, sbase, dfd, base, 0) < 0)
		return entry_fail(x, err, errno, digest, entry, "cannot create hard link");
	return 0;
}

static int apply_entry(struct kmm_extractor *x, struct archive *a, struct archive_entry *e,
		       const char *digest, struct kmm_error **err)
{
	_cleanup_free_ char *path = NULL, *dir_copy = NULL;
	_cleanup_close_ int dfd = -1;
	const char *name = archive_entry_pathname(e), *reason = NULL, *dir, *base;
	mode_t type = archive_entry_filetype(e);
	struct stat st;
	int r;

	if (++x->entries > x->lim.max_entries)
		return entry_error(x, err, E2BIG, digest, "more than %" PRIu64 " entries",
				   x->lim.max_entries);
	if (!name)
		return entry_error(x, err, EINVAL, digest, "entry without a usable name");
	if (archive_entry_size(e) > 0) {
		x->archive_bytes += (uint64_t)archive_entry_size(e);
		if (x->archive_bytes > x->lim.max_archive_bytes)
			return entry_fail(x, err, E2BIG, digest, name,
					  "layers hold more data than the archive size limit");
	}
	r = normalize_path(name, false, &path, &reason);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return entry_fail(x, err, EXDEV, digest, name, reason);
	if (!*path)
		return 0; /* the root itself */
	dir_copy = strdup(path);
	if (!dir_copy)
		return -ENOMEM;
	split_path(dir_copy, &dir, &base);

	if (strncmp(base, ".wh.", 4) == 0) {
		if (strcmp(base, ".wh..wh..opq") == 0)
			return apply_opaque(x, dir, digest, name, err);
		if (strncmp(base, ".wh..wh.", 8) == 0)
			return 0; /* aufs bookkeeping, no meaning in OCI */
		return apply_whiteout(x, dir, base + 4, digest, name, err);
	}
	if (!is_included(x, path))
		return 0;

	if (archive_entry_hardlink(e)) {
		type = 0;
	} else {
		switch (type) {
		case AE_IFREG:
		case AE_IFDIR:
		case AE_IFLNK:
			break;
		case AE_IFCHR:
		case AE_IFBLK:
			return entry_fail(x, err, EPERM, digest, name,
					  "device nodes are not allowed");
		case AE_IFIFO:
			return entry_fail(x, err, EPERM, digest, name, "FIFOs are not allowed");
		case AE_IFSOCK:
			return entry_fail(x, err, EPERM, digest, name, "sockets are not allowed");
		default:
			return entry_fail(x, err, EINVAL, digest, name, "unsupported entry type");
		}
	}

	dfd = open_dir(x, dir, true);
	if (dfd < 0)
		return entry_fail(x, err, -dfd, digest, name,
				  open_dir_reason(dfd) ?: "cannot create parent directory");
	if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (type == AE_IFDIR && S_ISDIR(st.st_mode)) {
			if (fchmodat(dfd, base, (archive_entry_perm(e) & 0777) | S_IRWXU, 0) < 0)
				return entry_fail(x, err, errno, digest, name,
						  "cannot chmod directory");
			return mark_written(x, path);
		}
		drop_cache(x);
		r = kmm_remove_tree_at(dfd, base);
		if (r < 0)
			return entry_fail(x, err, -r, digest, name,
					  "cannot replace what a lower layer left there");
	}

	switch (type) {
	case AE_IFREG:
		r = write_file(x, a, e, dfd, base, digest, name, err);
		break;
	case AE_IFDIR:
		if (mkdirat(dfd, base, 0700) < 0 ||
		    fchmodat(dfd, base, (archive_entry_perm(e) & 0777) | S_IRWXU, 0) < 0)
			return entry_fail(x, err, errno, digest, name, "cannot create directory");
		r = 0;
		break;
	case AE_IFLNK: {
		_cleanup_free_ char *target = NULL;
		const char *t = archive_entry_symlink(e);

		r = symlink_target(dir, t ? t : "", &target, &reason);
		if (r == -ENOMEM)
			return r;
		if (r < 0)
			return entry_fail(x, err, -r, digest, name, reason);
		if (symlinkat(target, dfd, base) < 0)
			return entry_fail(x, err, errno, digest, name, "cannot create symlink");
		break;
	}
	default:
		r = write_hardlink(x, e, dfd, base, digest, name, err);
		break;
	}
	if (r < 0)
		return r;
	return mark_written(x, path);
}

static la_ssize_t layer_read(struct archive *a, void *userdata, const void **buf)
{
	struct layer_reader *lr = userdata;
	ssize_t n;

	do {
		n = read(lr->fd, lr->buf, sizeof(lr->buf));
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		lr->failed_errno = errno;
		archive_set_error(a, errno, "reading the blob failed");
		return -1;
	}
	lr->total += (uint64_t)n;
	if ((lr->expect_size >= 0 && lr->total > (uint64_t)lr->expect_size) ||
	    lr->total > lr->max) {
		lr->failed_errno = EFBIG;
		archive_set_error(a, EFBIG, "blob is larger than %s",
				  lr->total > lr->max ? "the blob size limit"
						      : "its descriptor says");
		return -1;
	}
	kmm_digester_update(lr->dg, lr->buf, (size_t)n);
	*buf = lr->buf;
	return n;
}

static void archive_freep(struct archive **a)
{
	if (*a)
		archive_read_free(*a);
}

/* Reads what libarchive left after the end of the tar so the hash covers the blob. */
static int drain(struct archive *a, struct layer_reader *lr)
{
	const void *buf;

	for (;;) {
		la_ssize_t n = layer_read(a, lr, &buf);

		if (n < 0)
			return -lr->failed_errno;
		if (n == 0)
			return 0;
	}
}

int kmm_extractor_apply_layer(struct kmm_extractor *x, int blob_fd, const char *digest,
			      int64_t size, struct kmm_error **err)
{
	_cleanup_(archive_freep) struct archive *a = NULL;
	_cleanup_(kmm_digester_freep) struct kmm_digester *dg = NULL;
	_cleanup_free_ struct layer_reader *lr = NULL;
	_cleanup_free_ char *got = NULL;
	struct archive_entry *e;
	int r;

	if (size >= 0 && (uint64_t)size > x->lim.max_blob_bytes)
		return entry_error(x, err, EFBIG, digest,
				   "blob of %" PRId64 " bytes is larger than the blob size limit",
				   size);
	lr = calloc(1, sizeof(*lr));
	dg = kmm_digester_new();
	a = archive_read_new();
	if (!lr || !dg || !a)
		return -ENOMEM;
	*lr = (struct layer_reader){
		.fd = blob_fd, .dg = dg, .expect_size = size, .max = x->lim.max_blob_bytes
	};
	kmm_hashmap_free(x->layer_paths);
	x->layer_paths = kmm_hashmap_new(NULL);
	if (!x->layer_paths)
		return -ENOMEM;
	drop_cache(x);

	if (archive_read_support_filter_gzip(a) != ARCHIVE_OK ||
	    archive_read_support_filter_zstd(a) != ARCHIVE_OK ||
	    archive_read_support_format_tar(a) != ARCHIVE_OK ||
	    archive_read_support_format_empty(a) != ARCHIVE_OK)
		return entry_error(x, err, ENOTSUP, digest,
				   "libarchive lacks gzip/zstd/tar support: %s",
				   archive_error_string(a) ?: "?");
	if (archive_read_open(a, lr, NULL, layer_read, NULL) != ARCHIVE_OK)
		return entry_error(x, err, lr->failed_errno ?: EINVAL, digest,
				   "not a tar, tar+gzip or tar+zstd layer: %s",
				   archive_error_string(a) ?: "?");
	for (;;) {
		r = archive_read_next_header(a, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r == ARCHIVE_WARN) {
			kmm_debug("layer warning", "layer", digest, "warning",
				  archive_error_string(a));
		} else if (r != ARCHIVE_OK) {
			return entry_error(x, err, lr->failed_errno ?: EINVAL, digest,
					   "malformed layer: %s", archive_error_string(a) ?: "?");
		}
		r = apply_entry(x, a, e, digest, err);
		if (r < 0)
			return r;
	}
	r = drain(a, lr);
	if (r < 0)
		return entry_error(x, err, -r, digest, "reading the blob: %s",
				   archive_error_string(a) ?: strerror(-r));
	if (size >= 0 && lr->total != (uint64_t)size)
		return entry_error(x, err, EBADMSG, digest,
				   "blob is %" PRIu64 " bytes, its descriptor says %" PRId64,
				   lr->total, size);
	got = kmm_digester_final(dg);
	if (!got)
		return -ENOMEM;
	if (strcmp(got, digest) != 0)
		return entry_error(x, err, EBADMSG, digest, "digest mismatch: content is %s", got);
	return 0;
}
