/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The RE2 gate and PCRE2 compilation/matching on arbitrary patterns: no
 * crash, match limits respected, and a pattern the gate accepts is never one
 * with a back-reference or lookaround.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api-kernel.h"
#include "tests/fuzz/fuzz.h"

/*
 * A "(?=" not preceded by an odd run of backslashes, in a pattern without
 * classes or \Q quoting (which would make it literal), is a lookahead: the
 * gate must have refused it.
 */
static int has_unescaped_lookahead(const char *p)
{
	if (strchr(p, '[') || strstr(p, "\\Q"))
		return 0;
	for (const char *q = strstr(p, "(?="); q; q = strstr(q + 1, "(?=")) {
		size_t bs = 0;

		while (q - bs > p && q[-(ptrdiff_t)bs - 1] == '\\')
			bs++;
		if (bs % 2 == 0)
			return 1;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const kernels[] = { "6.1.0-18-amd64", "5.14.0-427.13.1.el9_4.x86_64",
					       "4.18.0-513.el8.aarch64+64k", "",
					       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!" };
	struct kmm_regexp *re = NULL;
	struct kmm_error *err = NULL;
	char *p;

	if (size > 4096)
		return 0;
	p = strndup((const char *)data, size);
	if (!p)
		return 0;
	if (kmm_regexp_compile(p, &re, &err) == 0) {
		if (has_unescaped_lookahead(p))
			abort();
		for (size_t i = 0; i < sizeof(kernels) / sizeof(kernels[0]); i++) {
			int r = kmm_regexp_match(re, kernels[i]);

			if (r != 0 && r != 1 && r != -ELOOP)
				abort();
		}
		kmm_regexp_free(re);
	} else if (!err) {
		abort();
	}
	kmm_error_free(err);
	free(p);
	return 0;
}
