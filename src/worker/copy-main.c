/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-worker-copy: the worker pod's image extractor. It runs inside the kmod
 * image, which may be FROM scratch (no shell, no cp, no libc), so it is
 * linked statically and uses nothing but libc: the kmm-worker image ships
 * it, an init container copies it into an emptyDir, and the image-extractor
 * init container runs it from there (lib/operator/workerpod.c,
 * docs/worker.md).
 *
 * Usage: kmm-worker-copy SRC DST [SRC DST]...
 *
 * Copies SRC, a file or a directory with everything in it, to DST, creating
 * DST's missing parents; into an existing DST directory the entries are
 * merged, files replaced (as `mkdir -p DST && cp -R SRC/. DST`). SRC itself
 * is followed if it is a link; links inside are copied as links, never
 * followed. Only regular files, directories and links are copied: anything
 * else is refused, naming it. Modes are kept without set-id bits; owners and
 * times are not (as cp -R without -p).
 *
 * Exit 0 when every pair was copied, 1 with the reason on stderr otherwise,
 * 2 on usage errors.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kmm/shared-macro.h"
#include "version.h"

#define PROG "kmm-worker-copy"
/* Deeper than any module or firmware tree; a bound on the recursion. */
#define MAX_DEPTH 64

static int fail(const char *path, int errnum, const char *what)
{
	fprintf(stderr, PROG ": %s: %s: %s\n", path, what, strerror(errnum));
	return -1;
}

static int refuse(const char *path)
{
	fprintf(stderr, PROG ": %s: not a regular file, directory or link: refusing it\n", path);
	return -1;
}

static int copy_data(int in, int out, const char *path)
{
	char buf[65536];

	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));

		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fail(path, errno, "read");
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return fail(path, errno, "write");
			off += w;
		}
	}
}

/* A non-directory already at name goes first: never write through a link. */
static int remove_non_dir(int ddir, const char *name, const char *path)
{
	struct stat st;

	if (fstatat(ddir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : fail(path, errno, "stat destination");
	if (S_ISDIR(st.st_mode))
		return 0;
	if (unlinkat(ddir, name, 0) < 0)
		return fail(path, errno, "remove destination");
	return 0;
}

static int copy_file(int sfd, const struct stat *st, int ddir, const char *name, const char *path)
{
	int out, r;

	if (remove_non_dir(ddir, name, path) < 0)
		return -1;
	out = openat(ddir, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
		     st->st_mode & 0777);
	if (out < 0)
		return fail(path, errno, "create");
	r = copy_data(sfd, out, path);
	/* The umask must not take bits away: the worker's user reads these. */
	if (r == 0 && fchmod(out, st->st_mode & 0777) < 0)
		r = fail(path, errno, "chmod");
	if (close(out) < 0 && r == 0)
		r = fail(path, errno, "close");
	return r;
}

static int copy_link(int sdir, const char *sname, int ddir, const char *name, const char *path)
{
	char target[PATH_MAX];
	ssize_t n = readlinkat(sdir, sname, target, sizeof(target) - 1);

	if (n < 0)
		return fail(path, errno, "readlink");
	target[n] = '\0';
	if (remove_non_dir(ddir, name, path) < 0)
		return -1;
	if (symlinkat(target, ddir, name) < 0)
		return fail(path, errno, "symlink");
	return 0;
}

static int copy_tree(int sfd, const char *spath, int ddir, const char *name, int depth);

static int copy_entries(int sfd, const char *spath, int dfd, int depth)
{
	DIR *d;
	struct dirent *e;
	int dup_fd, r = 0;

	if (depth > MAX_DEPTH) {
		fprintf(stderr, PROG ": %s: more than %d levels deep\n", spath, MAX_DEPTH);
		return -1;
	}
	dup_fd = fcntl(sfd, F_DUPFD_CLOEXEC, 0);
	if (dup_fd < 0)
		return fail(spath, errno, "dup");
	d = fdopendir(dup_fd);
	if (!d) {
		close(dup_fd);
		return fail(spath, errno, "opendir");
	}
	while (r == 0 && (errno = 0, e = readdir(d))) {
		_cleanup_free_ char *child = NULL;
		struct stat st;
		int cfd;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (asprintf(&child, "%s/%s", spath, e->d_name) < 0) {
			r = fail(spath, ENOMEM, "path");
			break;
		}
		if (fstatat(sfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = fail(child, errno, "stat");
			break;
		}
		if (S_ISLNK(st.st_mode)) {
			r = copy_link(sfd, e->d_name, dfd, e->d_name, child);
			continue;
		}
		/* Refused before open(), which would block on a FIFO. */
		if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
			r = refuse(child);
			break;
		}
		cfd = openat(sfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (cfd < 0) {
			r = fail(child, errno, "open");
			break;
		}
		r = copy_tree(cfd, child, dfd, e->d_name, depth + 1);
		close(cfd);
	}
	if (r == 0 && errno != 0)
		r = fail(spath, errno, "readdir");
	closedir(d);
	return r;
}

/* Copies the open file or directory sfd to name in ddir. */
static int copy_tree(int sfd, const char *spath, int ddir, const char *name, int depth)
{
	struct stat st;
	int dfd, r;

	if (fstat(sfd, &st) < 0)
		return fail(spath, errno, "stat");
	if (S_ISREG(st.st_mode))
		return copy_file(sfd, &st, ddir, name, spath);
	if (!S_ISDIR(st.st_mode))
		return refuse(spath);
	if (remove_non_dir(ddir, name, spath) < 0)
		return -1;
	/* Owner-writable while filling it: a read-only source directory stays copyable. */
	if (mkdirat(ddir, name, (st.st_mode & 0777) | 0700) < 0 && errno != EEXIST)
		return fail(spath, errno, "mkdir");
	dfd = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return fail(spath, errno, "open destination directory");
	r = copy_entries(sfd, spath, dfd, depth);
	close(dfd);
	return r;
}

/* Opens DST's parent directory, creating the missing ones (mkdir -p). */
static int open_parent(const char *dst, const char **ret_name)
{
	_cleanup_free_ char *path = strdup(dst);
	char *slash, *p;
	int fd;

	if (!path)
		return fail(dst, ENOMEM, "path");
	slash = strrchr(path, '/');
	if (!slash) {
		*ret_name = dst;
		return openat(AT_FDCWD, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	*ret_name = dst + (slash - path) + 1;
	*slash = '\0';
	for (p = path + 1; p <= slash; p++) {
		char c = *p;

		if (c != '/' && c != '\0')
			continue;
		*p = '\0';
		if (*path && mkdir(path, 0755) < 0 && errno != EEXIST)
			return fail(path, errno, "mkdir");
		*p = c;
		if (c == '\0')
			break;
	}
	fd = open(*path ? path : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return fail(*path ? path : "/", errno, "open");
	return fd;
}

static int copy_pair(const char *src, const char *dst)
{
	const char *name;
	int sfd, pfd, r;

	sfd = open(src, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (sfd < 0)
		return fail(src, errno, "open");
	pfd = open_parent(dst, &name);
	if (pfd < 0) {
		close(sfd);
		return -1;
	}
	if (!*name) {
		fprintf(stderr, PROG ": %s: the destination has no name\n", dst);
		r = -1;
	} else {
		r = copy_tree(sfd, src, pfd, name, 0);
	}
	close(pfd);
	close(sfd);
	return r;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: " PROG " SRC DST [SRC DST]...\n"
		   "Copies each SRC (a file, or a directory and everything in it) to DST,\n"
		   "creating DST's parents; links inside SRC are copied as links.\n"
		   "Statically linked: it runs inside any image, FROM scratch included.\n"
		   "  --help     show this help and exit\n"
		   "  --version  show the version and exit\n");
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf(PROG " %s\n", KMM_VERSION);
		return 0;
	}
	if (argc < 3 || (argc - 1) % 2 != 0 || argv[1][0] == '-') {
		usage(stderr);
		return 2;
	}
	umask(0);
	for (int i = 1; i + 1 < argc; i += 2)
		if (copy_pair(argv[i], argv[i + 1]) < 0)
			return 1;
	return 0;
}
