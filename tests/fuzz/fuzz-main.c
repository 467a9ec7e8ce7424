/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replays fuzz inputs without libFuzzer: every regular file under the
 * directories given on the command line is fed to LLVMFuzzerTestOneInput once,
 * reported as one TAP case. A crash or sanitizer report aborts the run, which
 * the TAP consumer sees as a plan that was not met. An empty or missing corpus
 * is a failure: a target that replays nothing proves nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-strv.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_INPUT_MAX (4 * 1024 * 1024)

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int collect(const char *dir, char ***files)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (kmm_strv_pushf(files, "%s/%s", dir, de->d_name) < 0) {
			closedir(d);
			return -ENOMEM;
		}
	}
	closedir(d);
	return 0;
}

static int read_file(const char *path, struct kmm_buf *b)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	char chunk[65536];
	ssize_t n;

	if (fd < 0)
		return -errno;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
		int r = kmm_buf_append(b, chunk, (size_t)n);
		if (r < 0)
			return r;
	}
	return n < 0 ? -errno : 0;
}

int main(int argc, char **argv)
{
	_cleanup_strv_free_ char **files = NULL;
	size_t n;
	int failed = 0;

	for (int i = 1; i < argc; i++) {
		int r = collect(argv[i], &files);
		if (r < 0) {
			printf("1..0\n# cannot read %s: %s\n", argv[i], strerror(-r));
			return 1;
		}
	}
	n = kmm_strv_length(files);
	if (!files || n == 0) {
		printf("1..1\nnot ok 1 - corpus\n# no inputs found in the given directories\n");
		return 1;
	}
	qsort(files, n, sizeof(char *), cmp_str);
	printf("1..%zu\n", n);
	fflush(stdout);
	for (size_t i = 0; i < n; i++) {
		struct kmm_buf b;
		int r;

		kmm_buf_init(&b, FUZZ_INPUT_MAX);
		r = read_file(files[i], &b);
		if (r < 0) {
			printf("not ok %zu - %s\n# read: %s\n", i + 1, files[i], strerror(-r));
			failed = 1;
		} else {
			LLVMFuzzerTestOneInput((const uint8_t *)(b.data ? b.data : ""), b.len);
			printf("ok %zu - %s\n", i + 1, files[i]);
		}
		fflush(stdout);
		kmm_buf_free(&b);
	}
	return failed;
}
