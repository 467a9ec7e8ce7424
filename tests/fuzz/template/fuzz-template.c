/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The envsubst engine on arbitrary text: no crash, an error always carries a
 * message, and text without '$' comes out unchanged.
 */
#include <stdlib.h>
#include <string.h>

#include "kmm/api-template.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "KERNEL_FULL_VERSION", "KERNEL_X", "EMPTY", "MOD_NAME",
					     NULL };
	static const char *const values[] = { "6.1.0-18-amd64", "6", "", "$MOD_NAME${", NULL };
	const struct kmm_template_vars vars = { names, values };
	struct kmm_error *err = NULL;
	char *in, *out = NULL;
	int r;

	if (size > 64 * 1024)
		return 0;
	in = strndup((const char *)data, size);
	if (!in)
		return 0;
	r = kmm_template_expand(in, &vars, &out, &err);
	if (r < 0 && !err)
		abort();
	if (r == 0 && !strchr(in, '$') && strcmp(in, out) != 0)
		abort();
	free(out);
	kmm_error_free(err);
	free(in);
	return 0;
}
