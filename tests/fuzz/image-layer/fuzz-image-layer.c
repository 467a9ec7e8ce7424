/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Extracts the input as a layer blob (tar, tar+gzip or tar+zstd) into
 * BASE/root with every path included, then checks that nothing escaped: BASE
 * holds only root/ and an untouched sentinel, the tree has no device nodes,
 * FIFOs or sockets, and every symlink target has the safe shape
 * (../)*name(/name)* with no more ".." than the link's depth.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kmm/registry.h"
#include "lib/registry/registry-internal.h"
#include "tests/fuzz/fuzz.h"

static size_t root_len;

static void check_link(const char *rel, const char *target)
{
	size_t depth = 0, ups = 0;
	int seen_name = 0;
	const char *p = target;

	for (const char *q = rel; *q; q++)
		depth += *q == '/';
	if (*target == '/' || !*target)
		abort();
	while (*p) {
		size_t n = strcspn(p, "/");

		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (seen_name || ++ups > depth)
				abort();
		} else if (n > 0 && !(n == 1 && p[0] == '.')) {
			seen_name = 1;
		}
		p += n + (p[n] == '/');
	}
}

static int visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)flag;
	(void)ftw;
	if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode) || S_ISFIFO(st->st_mode) ||
	    S_ISSOCK(st->st_mode) || (st->st_mode & (S_ISUID | S_ISGID)))
		abort();
	if (S_ISLNK(st->st_mode)) {
		char target[8192];
		ssize_t n = readlink(path, target, sizeof(target) - 1);

		if (n < 0)
			abort();
		target[n] = '\0';
		check_link(path + root_len + 1, target);
	}
	return 0;
}

static int rm_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const prefixes[] = { "/", NULL };
	struct kmm_extract_limits lim = { .max_total_bytes = 64 << 20,
					  .max_file_bytes = 16 << 20,
					  .max_entries = 20000 };
	struct kmm_extractor *x = NULL;
	struct kmm_error *err = NULL;
	char base[] = "/tmp/kmm-fuzz-layer-XXXXXX", root[64], sentinel[64];
	char *digest = kmm_digest_of(data, size);
	int fd, root_fd, r;
	struct stat st;

	if (!digest || !mkdtemp(base))
		abort();
	snprintf(root, sizeof(root), "%s/root", base);
	snprintf(sentinel, sizeof(sentinel), "%s/sentinel", base);
	if (mkdir(root, 0755) < 0)
		abort();
	fd = open(sentinel, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, "s", 1) != 1)
		abort();
	close(fd);

	fd = memfd_create("layer", MFD_CLOEXEC);
	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size) ||
	    lseek(fd, 0, SEEK_SET) < 0)
		abort();
	root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0)
		abort();
	r = kmm_extractor_new(root_fd, prefixes, &lim, "fuzz", &x, &err);
	if (r < 0)
		abort();
	r = kmm_extractor_apply_layer(x, fd, digest, (int64_t)size, &err);
	if (r < 0 && (!err || !err->message))
		abort();
	kmm_error_free(err);
	kmm_extractor_free(x);
	close(root_fd);
	close(fd);

	/* Nothing outside root, sentinel intact, tree well-formed. */
	{
		int n = 0;
		char path[128];

		for (const char *name = "root"; name; name = n++ ? NULL : "sentinel") {
			snprintf(path, sizeof(path), "%s/%s", base, name);
			if (lstat(path, &st) < 0)
				abort();
		}
		if (st.st_size != 1)
			abort();
		if (rmdir(base) == 0 || errno != ENOTEMPTY)
			abort();
	}
	root_len = strlen(root);
	if (nftw(root, visit, 16, FTW_PHYS) < 0)
		abort();
	nftw(base, rm_visit, 16, FTW_PHYS | FTW_DEPTH);
	free(digest);
	return 0;
}
