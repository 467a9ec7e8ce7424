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
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-fileio.h"
#include "kmm/kmod.h"
#include "kmm/shared-strv.h"
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
	const char *target;
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
	/*
	 * The worker pod is not privileged: /sys is read-only there and the
	 * runtimes' default AppArmor profile denies writes below /sys/module,
	 * so the operator mounts the parameters directory a second time outside
	 * /sys. Where that mount is absent (a host, a privileged pod), the sysfs
	 * file itself.
	 */
	target = access(KMM_FIRMWARE_CLASS_MOUNT, F_OK) == 0 ? KMM_FIRMWARE_CLASS_MOUNT
							     : KMM_FIRMWARE_CLASS_PATH;
	fd = open(target, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, dir, len) != (ssize_t)len)
		return kmm_error_make_errno(
		    err, errno,
		    "write '%s' to %s (needs uid 0 and the firmware_class "
		    "parameters directory mounted writable, as the worker pod "
		    "has it)",
		    dir, target);
	if (ret_changed)
		*ret_changed = true;
	return 0;
}

/*
 * Firmware comes from a kmod image, which any Module author controls, and
 * lands in a host directory shared by every Module on the node. So nothing
 * here resolves a path by name below the destination: every directory is
 * opened relative to its parent with O_NOFOLLOW, files are created with
 * O_EXCL under a temporary name and renamed into place (rename replaces a link
 * without following it), and links are copied only when they stay inside the
 * firmware tree. A link planted by one image can then never redirect what
 * another image writes or removes.
 */

struct fw_walk {
	const struct kmm_firmware_limits *lim;
	bool write; /* false: only check the source tree */
	unsigned entries;
	uint64_t bytes;
	unsigned count;	 /* files and links installed or removed */
	int first_error; /* removal goes on past failures */
	struct kmm_error **err;
};

static const struct kmm_firmware_limits fw_default_limits = {
	.file_max = KMM_FIRMWARE_FILE_MAX,
	.total_max = KMM_FIRMWARE_TOTAL_MAX,
	.entries_max = KMM_FIRMWARE_ENTRIES_MAX,
};

KMM_TESTABLE bool kmm_firmware_link_stays_inside(const char *rel_dir, const char *target)
{
	int depth = 0;

	if (target[0] == '/' || target[0] == '\0')
		return false;
	for (const char *p = rel_dir; *p;) {
		size_t n = strcspn(p, "/");
		if (n > 0 && !(n == 1 && p[0] == '.'))
			depth++;
		p += n;
		p += strspn(p, "/");
	}
	for (const char *p = target; *p;) {
		size_t n = strcspn(p, "/");
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (--depth < 0)
				return false;
		} else if (n > 0 && !(n == 1 && p[0] == '.')) {
			depth++;
		}
		p += n;
		p += strspn(p, "/");
	}
	return true;
}

/*
 * Opens `path` below `rootfd` as the root of a container image sees it:
 * links resolve inside the image, never above it. Where the kernel (or a
 * seccomp filter) lacks openat2, links on the way are refused instead.
 */
static int open_dir_in_root(int rootfd, const char *path)
{
	struct open_how how = {
		.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	_cleanup_close_ int fd = -1;
	long r;

	r = syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
	if (r >= 0)
		return (int)r;
	if (errno != ENOSYS && errno != EPERM)
		return -errno;
	fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return -errno;
	for (const char *p = path; *p;) {
		char comp[NAME_MAX + 1];
		size_t n;
		int next;

		p += strspn(p, "/");
		n = strcspn(p, "/");
		if (n == 0)
			break;
		if (n > NAME_MAX)
			return -ENAMETOOLONG;
		memcpy(comp, p, n);
		comp[n] = '\0';
		p += n;
		next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0)
			return -errno;
		kmm_closep(&fd);
		fd = next;
	}
	return TAKE_FD(fd);
}

/* Opens (creating it when `create`) directory `name` of dirfd, never through a link. */
static int open_subdir(int dirfd, const char *name, bool create)
{
	int fd;

	if (create && mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST)
		return -errno;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ELOOP ? -ENOTDIR : -errno;
	return fd;
}

static int copy_fd(int in, int out, const char *rel, struct fw_walk *w)
{
	char buf[65536];
	uint64_t copied = 0;
	ssize_t n;

	while ((n = read(in, buf, sizeof(buf))) > 0) {
		copied += (uint64_t)n;
		/* The file may grow while it is read: the caps hold for what is copied. */
		if (copied > w->lim->file_max || w->bytes + copied > w->lim->total_max)
			return kmm_error_make(
			    w->err, EFBIG, "firmware %s grew past the size cap while copied", rel);
		for (ssize_t off = 0; off < n;) {
			ssize_t wr = write(out, buf + off, (size_t)(n - off));
			if (wr < 0)
				return kmm_error_make_errno(w->err, errno, "write firmware %s",
							    rel);
			off += wr;
		}
	}
	if (n < 0)
		return kmm_error_make_errno(w->err, errno, "read firmware %s from the image", rel);
	w->bytes += copied;
	return 0;
}

/* Puts a new file or link at dstfd/name: made under a temporary name, renamed over. */
static int fw_put(int srcfd, int dstfd, const char *name, const char *rel, const struct stat *st,
		  const char *link_target, struct fw_walk *w)
{
	char tmp[NAME_MAX + 16];
	_cleanup_close_ int in = -1, out = -1;
	int r;

	if ((size_t)snprintf(tmp, sizeof(tmp), ".%s.kmm-new", name) >= sizeof(tmp))
		return kmm_error_make(w->err, ENAMETOOLONG, "firmware name too long: %s", rel);
	if (unlinkat(dstfd, tmp, 0) < 0 && errno != ENOENT)
		return kmm_error_make_errno(w->err, errno, "remove stale %s", tmp);
	if (link_target) {
		if (symlinkat(link_target, dstfd, tmp) < 0)
			return kmm_error_make_errno(w->err, errno, "link firmware %s", rel);
	} else {
		in = openat(srcfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (in < 0)
			return kmm_error_make_errno(w->err, errno, "open firmware %s in the image",
						    rel);
		out = openat(dstfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			     st->st_mode & 0644);
		if (out < 0)
			return kmm_error_make_errno(w->err, errno, "create firmware %s", rel);
		r = copy_fd(in, out, rel, w);
		if (r < 0) {
			(void)unlinkat(dstfd, tmp, 0);
			return r;
		}
	}
	if (renameat(dstfd, tmp, dstfd, name) < 0) {
		int e = errno;
		(void)unlinkat(dstfd, tmp, 0);
		return kmm_error_make_errno(w->err, e, "put firmware %s in place", rel);
	}
	w->count++;
	return 0;
}

/*
 * Checks one entry of the image's firmware tree (and, when w->write, copies
 * it). Returns 1 for a directory to descend into.
 */
static int fw_entry(int srcfd, int dstfd, const char *name, const char *rel, const char *rel_dir,
		    const struct stat *st, struct fw_walk *w)
{
	char target[PATH_MAX];
	ssize_t n;

	if (++w->entries > w->lim->entries_max)
		return kmm_error_make(w->err, EFBIG,
				      "firmware tree has more than the allowed entries at %s", rel);
	if (S_ISDIR(st->st_mode))
		return 1;
	if (S_ISREG(st->st_mode)) {
		if ((uint64_t)st->st_size > w->lim->file_max)
			return kmm_error_make(w->err, EFBIG,
					      "firmware %s is larger than the per-file cap", rel);
		if (!w->write) {
			if (w->bytes + (uint64_t)st->st_size > w->lim->total_max)
				return kmm_error_make(
				    w->err, EFBIG,
				    "firmware tree is larger than the total cap at %s", rel);
			w->bytes += (uint64_t)st->st_size;
			return 0;
		}
		return fw_put(srcfd, dstfd, name, rel, st, NULL, w);
	}
	if (S_ISLNK(st->st_mode)) {
		n = readlinkat(srcfd, name, target, sizeof(target));
		if (n < 0)
			return kmm_error_make_errno(w->err, errno, "read link %s", rel);
		if ((size_t)n >= sizeof(target))
			return kmm_error_make(w->err, ENAMETOOLONG,
					      "firmware link %s: target too long", rel);
		target[n] = '\0';
		if (!kmm_firmware_link_stays_inside(rel_dir, target))
			return kmm_error_make(
			    w->err, EPERM,
			    "firmware link %s -> %s leaves the firmware directory; "
			    "refusing it",
			    rel, target);
		return w->write ? fw_put(srcfd, dstfd, name, rel, st, target, w) : 0;
	}
	return kmm_error_make(w->err, EPERM,
			      "firmware %s is not a file, directory or link; refusing to copy it",
			      rel);
}

static int fw_copy_tree(int srcfd, int dstfd, const char *rel_dir, int depth, struct fw_walk *w)
{
	_cleanup_close_ int dupfd = -1;
	DIR *d;
	struct dirent *de;
	int r = 0;

	if (depth > WALK_MAX_DEPTH)
		return kmm_error_make(w->err, ELOOP, "firmware tree deeper than allowed at %s",
				      rel_dir);
	dupfd = fcntl(srcfd, F_DUPFD_CLOEXEC, 3);
	if (dupfd < 0 || !(d = fdopendir(dupfd)))
		return kmm_error_make_errno(w->err, errno, "list firmware %s", rel_dir);
	TAKE_FD(dupfd);
	/* A dup shares the offset: the checking pass left it at the end. */
	rewinddir(d);
	while (r >= 0 && (de = readdir(d))) {
		char rel[PATH_MAX];
		struct stat st;
		_cleanup_close_ int sub_src = -1, sub_dst = -1;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if ((size_t)snprintf(rel, sizeof(rel), "%s%s%s", rel_dir, *rel_dir ? "/" : "",
				     de->d_name) >= sizeof(rel)) {
			r = kmm_error_make(w->err, ENAMETOOLONG, "firmware path too long: %s",
					   rel_dir);
			break;
		}
		if (fstatat(srcfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = kmm_error_make_errno(w->err, errno, "stat firmware %s", rel);
			break;
		}
		r = fw_entry(srcfd, dstfd, de->d_name, rel, rel_dir, &st, w);
		if (r <= 0)
			continue;
		sub_src = open_subdir(srcfd, de->d_name, false);
		if (sub_src < 0) {
			r = kmm_error_make_errno(w->err, -sub_src, "open firmware %s", rel);
			break;
		}
		if (w->write) {
			sub_dst = open_subdir(dstfd, de->d_name, true);
			if (sub_dst < 0) {
				r = sub_dst == -ENOTDIR
					? kmm_error_make(
					      w->err, ENOTDIR,
					      "firmware directory %s exists on the host as a "
					      "link or file; refusing to write through it",
					      rel)
					: kmm_error_make_errno(w->err, -sub_dst,
							       "create firmware directory %s", rel);
				break;
			}
		}
		r = fw_copy_tree(sub_src, sub_dst, rel, depth + 1, w);
	}
	closedir(d);
	return r < 0 ? r : 0;
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

/* Opens the image's firmware directory: `path` inside `image_root`, refusing "..". */
static int open_image_firmware(const char *image_root, const char *path, struct kmm_error **err)
{
	_cleanup_close_ int rootfd = -1;
	int fd;

	if (kmm_path_has_dotdot(path))
		return kmm_error_make(err, EINVAL, "firmwarePath %s must not contain '..'", path);
	rootfd =
	    open(image_root && *image_root ? image_root : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return kmm_error_make_errno(err, errno, "open image root %s", image_root);
	fd = open_dir_in_root(rootfd, path);
	if (fd < 0)
		return kmm_error_make_errno(err, -fd, "firmware directory %s in the image", path);
	return fd;
}

int kmm_firmware_install(const char *image_root, const char *path, const char *dst,
			 const struct kmm_firmware_limits *limits, unsigned *ret_count,
			 struct kmm_error **err)
{
	struct fw_walk w = { .lim = limits ? limits : &fw_default_limits, .err = err };
	_cleanup_close_ int srcfd = -1, dstfd = -1;
	int r;

	srcfd = open_image_firmware(image_root, path, err);
	if (srcfd < 0)
		return srcfd;
	/* The whole tree is checked before anything is written: a refused image writes nothing. */
	r = fw_copy_tree(srcfd, -1, "", 0, &w);
	if (r < 0)
		return kmm_error_wrap(err, "firmware %s of the image", path);
	r = mkdir_p(dst);
	if (r < 0)
		return kmm_error_make_errno(err, -r, "create firmware directory %s", dst);
	dstfd = open(dst, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dstfd < 0)
		return kmm_error_make_errno(err, errno, "open firmware directory %s", dst);
	w = (struct fw_walk){ .lim = w.lim, .write = true, .err = err };
	r = fw_copy_tree(srcfd, dstfd, "", 0, &w);
	if (r < 0)
		return kmm_error_wrap(err, "copy firmware %s to %s", path, dst);
	if (ret_count)
		*ret_count = w.count;
	return 0;
}

static void fw_remove_failed(struct fw_walk *w, int code, const char *what, const char *rel)
{
	if (w->first_error != 0)
		return;
	w->first_error = -code;
	kmm_error_make_errno(w->err, code, "%s %s", what, rel);
}

/*
 * Removes from dstfd what the image's tree at srcfd names: files and links
 * (never through a link), then the directories the tree names once they are
 * empty, which are those an install made unless another Module still uses them.
 */
static void fw_remove_tree(int srcfd, int dstfd, const char *rel_dir, int depth, struct fw_walk *w)
{
	_cleanup_close_ int dupfd = -1;
	DIR *d;
	struct dirent *de;

	if (depth > WALK_MAX_DEPTH) {
		fw_remove_failed(w, ELOOP, "firmware tree too deep at", rel_dir);
		return;
	}
	dupfd = fcntl(srcfd, F_DUPFD_CLOEXEC, 3);
	if (dupfd < 0 || !(d = fdopendir(dupfd))) {
		fw_remove_failed(w, errno, "list firmware", rel_dir);
		return;
	}
	TAKE_FD(dupfd);
	rewinddir(d);
	while ((de = readdir(d))) {
		char rel[PATH_MAX];
		struct stat st, dst_st;
		_cleanup_close_ int sub_src = -1, sub_dst = -1;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (++w->entries > w->lim->entries_max) {
			fw_remove_failed(w, EFBIG, "firmware tree has too many entries at",
					 rel_dir);
			break;
		}
		if ((size_t)snprintf(rel, sizeof(rel), "%s%s%s", rel_dir, *rel_dir ? "/" : "",
				     de->d_name) >= sizeof(rel))
			continue;
		if (fstatat(srcfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    fstatat(dstfd, de->d_name, &dst_st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (!S_ISDIR(st.st_mode)) {
			if (S_ISDIR(dst_st.st_mode))
				continue;
			if (unlinkat(dstfd, de->d_name, 0) == 0)
				w->count++;
			else if (errno != ENOENT)
				fw_remove_failed(w, errno, "remove firmware", rel);
			continue;
		}
		if (!S_ISDIR(dst_st.st_mode)) {
			/* A link where the image has a directory: not ours to follow. */
			fw_remove_failed(w, ENOTDIR,
					 "firmware directory is a link or file on the host:", rel);
			continue;
		}
		sub_src = open_subdir(srcfd, de->d_name, false);
		sub_dst = open_subdir(dstfd, de->d_name, false);
		if (sub_src < 0 || sub_dst < 0)
			continue;
		fw_remove_tree(sub_src, sub_dst, rel, depth + 1, w);
		if (unlinkat(dstfd, de->d_name, AT_REMOVEDIR) < 0 && errno != ENOTEMPTY &&
		    errno != EEXIST && errno != ENOENT)
			fw_remove_failed(w, errno, "remove firmware directory", rel);
	}
	closedir(d);
}

int kmm_firmware_remove(const char *image_root, const char *path, const char *dst,
			unsigned *ret_count, struct kmm_error **err)
{
	struct fw_walk w = { .lim = &fw_default_limits, .err = err };
	_cleanup_close_ int srcfd = -1, dstfd = -1;

	srcfd = open_image_firmware(image_root, path, err);
	if (srcfd < 0)
		return srcfd;
	dstfd = open(dst, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dstfd < 0) {
		if (errno == ENOENT) {
			if (ret_count)
				*ret_count = 0;
			return 0;
		}
		return kmm_error_make_errno(err, errno, "open firmware directory %s", dst);
	}
	fw_remove_tree(srcfd, dstfd, "", 0, &w);
	if (ret_count)
		*ret_count = w.count;
	return w.first_error;
}
