/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The file side of loading: which in-tree modules exist on the host, the
 * firmware search path, and copying firmware in and out of the host.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kmm/buf.h"
#include "kmm/kmod.h"
#include "kmm/strv.h"
#include "lib/kmod/kmod-internal.h"

/* Deeper trees than this are not module or firmware trees. */
#define WALK_MAX_DEPTH 16

KMM_TESTABLE bool kmm_in_tree_name_matches(const char *base, const char *name)
{
	size_t n = strlen(name);

	/* Upstream's regexp is ^<name>.ko with an unescaped dot; modules named
	 * with '-' and '_' are the same module to the kernel. */
	if (strlen(base) < n + 3)
		return false;
	for (size_t i = 0; i < n; i++) {
		char a = base[i] == '-' ? '_' : base[i];
		char b = name[i] == '-' ? '_' : name[i];
		if (a != b)
			return false;
	}
	return base[n + 1] == 'k' && base[n + 2] == 'o';
}

typedef int (*walk_fn)(const char *path, const char *rel, const struct stat *st, void *data);

/* Calls fn for every entry below dir (depth-first, directories before their contents). */
static int walk(const char *dir, const char *rel, int depth, walk_fn fn, void *data)
{
	DIR *d;
	struct dirent *de;
	int r = 0;

	if (depth > WALK_MAX_DEPTH)
		return -ELOOP;
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char path[PATH_MAX], sub[PATH_MAX];
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >=
			sizeof(path) ||
		    (size_t)snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "",
				     de->d_name) >= sizeof(sub)) {
			r = -ENAMETOOLONG;
			break;
		}
		if (lstat(path, &st) < 0)
			continue;
		r = fn(path, sub, &st, data);
		if (r == 0 && S_ISDIR(st.st_mode))
			r = walk(path, sub, depth + 1, fn, data);
		if (r < 0)
			break;
	}
	closedir(d);
	return r;
}

struct in_tree_scan {
	char *const *names;
	bool *found;
};

static int in_tree_visit(const char *path, const char *rel, const struct stat *st, void *data)
{
	struct in_tree_scan *s = data;
	const char *base = strrchr(rel, '/');

	base = base ? base + 1 : rel;
	if (S_ISDIR(st->st_mode))
		return 0;
	for (size_t i = 0; s->names[i]; i++) {
		if (!s->found[i] && kmm_in_tree_name_matches(base, s->names[i]))
			s->found[i] = true;
	}
	return 0;
}

int kmm_kmod_in_tree_present(char *const *names, const char *modules_root, char ***ret_present,
			     char ***ret_absent, struct kmm_error **err)
{
	size_t n = kmm_strv_length(names);
	_cleanup_free_ bool *found = calloc(n + 1, sizeof(bool));
	_cleanup_strv_free_ char **present = NULL, **absent = NULL;
	struct in_tree_scan scan = { names, found };
	int r;

	if (!found)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (n > 0) {
		r = walk(modules_root, "", 0, in_tree_visit, &scan);
		if (r < 0 && r != -ENOENT)
			return kmm_error_make_errno(err, -r, "scan %s for in-tree modules",
						    modules_root);
	}
	/* Empty vectors, not NULL, so callers can tell "none" from "not asked". */
	if (kmm_strv_split("", " ", &present) < 0 || kmm_strv_split("", " ", &absent) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (kmm_strv_push(found[i] ? &present : &absent, names[i]) < 0)
			return kmm_error_make(err, ENOMEM, "out of memory");
	}
	if (ret_present)
		*ret_present = TAKE_PTR(present);
	if (ret_absent)
		*ret_absent = TAKE_PTR(absent);
	return 0;
}

/* ---- firmware ---- */

int kmm_firmware_set_class_path(const char *dir, bool *ret_changed, struct kmm_error **err)
{
	char cur[PATH_MAX + 2] = "";
	_cleanup_close_ int fd = -1;
	ssize_t n;
	size_t len = strlen(dir);

	fd = open(KMM_FIRMWARE_CLASS_PATH, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kmm_error_make_errno(err, errno, "read %s (is firmware_class built in?)",
					    KMM_FIRMWARE_CLASS_PATH);
	n = read(fd, cur, sizeof(cur) - 1);
	if (n < 0)
		return kmm_error_make_errno(err, errno, "read %s", KMM_FIRMWARE_CLASS_PATH);
	cur[n] = '\0';
	cur[strcspn(cur, "\n")] = '\0';
	if (strcmp(cur, dir) == 0) {
		if (ret_changed)
			*ret_changed = false;
		return 0;
	}
	kmm_closep(&fd);
	fd = open(KMM_FIRMWARE_CLASS_PATH, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, dir, len) != (ssize_t)len)
		return kmm_error_make_errno(err, errno,
					    "write '%s' to %s (the worker must be privileged)", dir,
					    KMM_FIRMWARE_CLASS_PATH);
	if (ret_changed)
		*ret_changed = true;
	return 0;
}

struct fw_copy {
	const char *dst;
	unsigned count;
	struct kmm_error **err;
};

static int copy_file(const char *src, const char *dst, mode_t mode, struct kmm_error **err)
{
	_cleanup_close_ int in = -1, out = -1;
	char buf[65536];
	ssize_t n;

	in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0)
		return kmm_error_make_errno(err, errno, "open %s", src);
	/* Replace, never write through, whatever is at dst (a link, say). */
	if (unlink(dst) < 0 && errno != ENOENT)
		return kmm_error_make_errno(err, errno, "replace %s", dst);
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode & 0644);
	if (out < 0)
		return kmm_error_make_errno(err, errno, "create %s", dst);
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0)
				return kmm_error_make_errno(err, errno, "write %s", dst);
			off += w;
		}
	}
	if (n < 0)
		return kmm_error_make_errno(err, errno, "read %s", src);
	return 0;
}

static int fw_install_visit(const char *path, const char *rel, const struct stat *st, void *data)
{
	struct fw_copy *c = data;
	char dst[PATH_MAX], target[PATH_MAX];
	ssize_t n;

	if ((size_t)snprintf(dst, sizeof(dst), "%s/%s", c->dst, rel) >= sizeof(dst))
		return kmm_error_make(c->err, ENAMETOOLONG, "firmware path too long: %s", rel);
	if (S_ISDIR(st->st_mode)) {
		if (mkdir(dst, 0755) < 0 && errno != EEXIST)
			return kmm_error_make_errno(c->err, errno, "mkdir %s", dst);
		return 0;
	}
	if (S_ISREG(st->st_mode)) {
		int r = copy_file(path, dst, st->st_mode, c->err);
		if (r == 0)
			c->count++;
		return r;
	}
	if (S_ISLNK(st->st_mode)) {
		n = readlink(path, target, sizeof(target) - 1);
		if (n < 0)
			return kmm_error_make_errno(c->err, errno, "readlink %s", path);
		target[n] = '\0';
		if (unlink(dst) < 0 && errno != ENOENT)
			return kmm_error_make_errno(c->err, errno, "replace %s", dst);
		if (symlink(target, dst) < 0)
			return kmm_error_make_errno(c->err, errno, "symlink %s", dst);
		c->count++;
		return 0;
	}
	return kmm_error_make(c->err, EPERM,
			      "firmware %s is not a file, directory or link; refusing to copy it",
			      path);
}

static int mkdir_p(const char *dir)
{
	char tmp[PATH_MAX];
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, dir, len + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int kmm_firmware_install(const char *src, const char *dst, unsigned *ret_count,
			 struct kmm_error **err)
{
	struct fw_copy c = { dst, 0, err };
	struct stat st;
	int r;

	if (stat(src, &st) < 0)
		return kmm_error_make_errno(err, errno, "firmware directory %s", src);
	if (!S_ISDIR(st.st_mode))
		return kmm_error_make(err, ENOTDIR, "firmware path %s is not a directory", src);
	r = mkdir_p(dst);
	if (r < 0)
		return kmm_error_make_errno(err, -r, "create firmware directory %s", dst);
	r = walk(src, "", 0, fw_install_visit, &c);
	if (r < 0) {
		if (err && !*err)
			kmm_error_make_errno(err, -r, "copy firmware from %s", src);
		return kmm_error_wrap(err, "copy firmware %s to %s", src, dst);
	}
	if (ret_count)
		*ret_count = c.count;
	return 0;
}

struct fw_remove {
	const char *dst;
	unsigned count;
	int first_error;
	struct kmm_error **err;
};

static int fw_remove_visit(const char *path, const char *rel, const struct stat *st, void *data)
{
	struct fw_remove *c = data;
	char dst[PATH_MAX];

	if (S_ISDIR(st->st_mode))
		return 0;
	if ((size_t)snprintf(dst, sizeof(dst), "%s/%s", c->dst, rel) >= sizeof(dst))
		return 0;
	if (unlink(dst) == 0) {
		c->count++;
	} else if (errno != ENOENT && c->first_error == 0) {
		c->first_error = -errno;
		kmm_error_make_errno(c->err, errno, "remove firmware %s", dst);
	}
	return 0;
}

int kmm_firmware_remove(const char *src, const char *dst, unsigned *ret_count,
			struct kmm_error **err)
{
	struct fw_remove c = { dst, 0, 0, err };
	int r;

	r = walk(src, "", 0, fw_remove_visit, &c);
	if (r < 0 && c.first_error == 0)
		return kmm_error_make_errno(err, -r, "list firmware in %s", src);
	if (ret_count)
		*ret_count = c.count;
	return c.first_error;
}
