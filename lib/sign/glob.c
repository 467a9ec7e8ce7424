/* SPDX-License-Identifier: Apache-2.0 */
/* filesToSign globs, expanded by kmm-sign because its image has no shell. */
#include <errno.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/sign.h"
#include "kmm/shared-strv.h"

static bool is_pattern(const char *s)
{
	return strpbrk(s, "*?[") != NULL;
}

static int add(char ***files, size_t *count, const char *path, struct kmm_error **err)
{
	if (*count >= KMM_SIGN_MAX_FILES)
		return kmm_error_make(err, E2BIG, "more than %d files to sign", KMM_SIGN_MAX_FILES);
	if (kmm_strv_push(files, path) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	(*count)++;
	return 0;
}

int kmm_sign_expand_files(char *const *args, size_t n, bool literal, char ***ret_files,
			  char ***ret_unmatched, struct kmm_error **err)
{
	_cleanup_strv_free_ char **files = NULL, **unmatched = NULL;
	size_t count = 0;
	int r;

	/* Empty lists are empty vectors, not NULL, so callers need no special case. */
	files = calloc(1, sizeof(char *));
	unmatched = calloc(1, sizeof(char *));
	if (!files || !unmatched)
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		/* globfree() takes the glob_t's address, as a cleanup function is called. */
		_cleanup_(globfree) glob_t g = { 0 };

		if (literal || !is_pattern(args[i])) {
			r = add(&files, &count, args[i], err);
			if (r < 0)
				return r;
			continue;
		}
		/*
		 * No GLOB_ERR: like the shell, an unreadable directory is just not
		 * matched into. Sorted (no GLOB_NOSORT) so the signing order, and
		 * thus the log, is the same on every run.
		 */
		r = glob(args[i], 0, NULL, &g);
		if (r == GLOB_NOMATCH) {
			if (kmm_strv_push(&unmatched, args[i]) < 0)
				return kmm_error_make(err, ENOMEM, "out of memory");
			continue;
		}
		if (r == GLOB_NOSPACE)
			return kmm_error_make(err, ENOMEM, "%s: out of memory", args[i]);
		if (r != 0)
			return kmm_error_make(err, EIO, "%s: cannot read a directory", args[i]);
		for (size_t j = 0; j < g.gl_pathc; j++) {
			r = add(&files, &count, g.gl_pathv[j], err);
			if (r < 0)
				return r;
		}
	}
	*ret_files = TAKE_PTR(files);
	if (ret_unmatched)
		*ret_unmatched = TAKE_PTR(unmatched);
	return 0;
}
