/* SPDX-License-Identifier: Apache-2.0 */
/* kmm_sign_expand_files: filesToSign globs on a real directory tree. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kmm/sign.h"
#include "kmm/shared-strv.h"

static char root[] = "/tmp/kmm-sign-glob-XXXXXX";

static const char *const tree[] = {
	"opt/lib/modules/6.1.0-27-amd64/kmm_ci_a.ko", "opt/lib/modules/6.1.0-27-amd64/kmm_ci_b.ko",
	"opt/lib/modules/6.1.0-27-amd64/other.ko",    "opt/lib/modules/5.14.0/kmm_ci_a.ko",
	"opt/lib/modules/5.14.0/kmm_ci_a.ko.xz",      "opt/star*name.ko",
};

static void make_file(const char *rel)
{
	char path[512], *slash;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	/* mkdir -p of the parents. */
	for (slash = strchr(path + strlen(root) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
		*slash = '/';
	}
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	close(fd);
}

static int setup(void **state)
{
	assert_non_null(mkdtemp(root));
	for (size_t i = 0; i < KMM_ARRAY_SIZE(tree); i++)
		make_file(tree[i]);
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

static int teardown(void **state)
{
	return nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Expands patterns relative to root; returns the results relative to root, joined by ' '. */
static char *expand(bool literal, char **ret_unmatched, const char *first, ...)
{
	_cleanup_strv_free_ char **args = NULL, **files = NULL, **unmatched = NULL;
	_cleanup_strv_free_ char **rel = NULL, **rel_un = NULL;
	va_list ap;

	va_start(ap, first);
	for (const char *a = first; a; a = va_arg(ap, const char *))
		assert_int_equal(kmm_strv_pushf(&args, "%s/%s", root, a), 0);
	va_end(ap);
	assert_int_equal(
	    kmm_sign_expand_files(args, kmm_strv_length(args), literal, &files, &unmatched, NULL),
	    0);
	assert_non_null(files);
	assert_non_null(unmatched);
	for (char **f = files; *f; f++) {
		assert_memory_equal(*f, root, strlen(root));
		assert_int_equal(kmm_strv_push(&rel, *f + strlen(root) + 1), 0);
	}
	for (char **u = unmatched; *u; u++)
		assert_int_equal(kmm_strv_push(&rel_un, *u + strlen(root) + 1), 0);
	*ret_unmatched = rel_un ? kmm_strv_join(rel_un, " ") : strdup("");
	return rel ? kmm_strv_join(rel, " ") : strdup("");
}

static void check(const char *got, const char *expected)
{
	assert_non_null(got);
	assert_string_equal(got, expected);
}

static void test_star_question_and_class(void **state)
{
	_cleanup_free_ char *un = NULL, *got = NULL;

	got = expand(false, &un, "opt/lib/modules/*/kmm_ci_?.ko", NULL);
	/* Sorted, whole paths: 5.14.0 before 6.1.0-27-amd64. */
	check(got, "opt/lib/modules/5.14.0/kmm_ci_a.ko opt/lib/modules/6.1.0-27-amd64/kmm_ci_a.ko "
		   "opt/lib/modules/6.1.0-27-amd64/kmm_ci_b.ko");
	check(un, "");
	free(got);
	free(un);
	got = expand(false, &un, "opt/lib/modules/6.1.0-27-amd64/kmm_ci_[b-z].ko",
		     "opt/lib/modules/5.14.0/*.ko*", NULL);
	/* Argument order is kept; each pattern's matches are sorted. */
	check(got, "opt/lib/modules/6.1.0-27-amd64/kmm_ci_b.ko opt/lib/modules/5.14.0/kmm_ci_a.ko "
		   "opt/lib/modules/5.14.0/kmm_ci_a.ko.xz");
	check(un, "");
}

static void test_unmatched_and_literals(void **state)
{
	_cleanup_free_ char *un = NULL, *got = NULL;

	got = expand(false, &un, "opt/lib/modules/*/nope_?.ko", "missing.ko",
		     "opt/lib/modules/{5.14.0,x}/kmm_ci_a.ko", "opt/lib/modules/5.14.0/kmm_ci_a.ko",
		     NULL);
	/*
	 * A literal path stays even when missing (signing reports it); braces are
	 * not a glob (ash has no brace expansion), so that argument is literal too.
	 */
	check(got, "missing.ko opt/lib/modules/{5.14.0,x}/kmm_ci_a.ko "
		   "opt/lib/modules/5.14.0/kmm_ci_a.ko");
	check(un, "opt/lib/modules/*/nope_?.ko");
}

static void test_literal_mode(void **state)
{
	_cleanup_free_ char *un = NULL, *got = NULL;

	got = expand(true, &un, "opt/star*name.ko", "opt/lib/modules/*/kmm_ci_?.ko", NULL);
	check(got, "opt/star*name.ko opt/lib/modules/*/kmm_ci_?.ko");
	check(un, "");
	free(got);
	free(un);
	/* Without it, a file whose name has a '*' is still found by the pattern. */
	got = expand(false, &un, "opt/star*name.ko", NULL);
	check(got, "opt/star*name.ko");
}

static void test_empty(void **state)
{
	char **files = NULL;

	assert_int_equal(kmm_sign_expand_files(NULL, 0, false, &files, NULL, NULL), 0);
	assert_non_null(files);
	assert_null(files[0]);
	kmm_strv_free(files);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_star_question_and_class),
		cmocka_unit_test(test_unmatched_and_literals),
		cmocka_unit_test(test_literal_mode),
		cmocka_unit_test(test_empty),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
