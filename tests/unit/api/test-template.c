/* SPDX-License-Identifier: Apache-2.0 */
/* Table-driven tests of the envsubst engine and the kernel template variables. */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/api-kernel.h"
#include "kmm/api-template.h"
#include "tests/unit/api/table.h"

static const char *const names[] = { "A", "EMPTY", "KERNEL_X", "B_2", NULL };
static const char *const values[] = { "aval", "", "6", "bee", NULL };
static const struct kmm_template_vars vars = { names, values };

struct tcase {
	const char *in;
	const char *out; /* NULL: error expected */
	const char *error;
};

static const struct tcase cases[] = {
	{ "plain text", "plain text", NULL },
	{ "", "", NULL },
	{ "$A", "aval", NULL },
	{ "${A}", "aval", NULL },
	{ "x$A.y", "xaval.y", NULL },
	{ "$A$B_2", "avalbee", NULL },
	{ "$UNKNOWN", "", NULL },
	{ "pre-${UNKNOWN}-post", "pre--post", NULL },
	{ "${A:-def}", "aval", NULL },
	{ "${UNKNOWN:-def}", "def", NULL },
	{ "${EMPTY:-def}", "def", NULL },
	{ "${EMPTY-def}", "", NULL },
	{ "${UNKNOWN-def}", "def", NULL },
	{ "${UNKNOWN:=def}", "def", NULL },
	{ "${EMPTY:=def}", "def", NULL },
	{ "${EMPTY=def}", "", NULL },
	{ "${A=def}", "aval", NULL },
	{ "${A+alt}", "alt", NULL },
	{ "${EMPTY+alt}", "alt", NULL },
	{ "${EMPTY:+alt}", "", NULL },
	{ "${UNKNOWN+alt}", "", NULL },
	{ "${A:+alt}", "alt", NULL },
	{ "${UNKNOWN:-$A}", "aval", NULL },
	{ "${UNKNOWN:-${KERNEL_X}.x}", "6.x", NULL },
	{ "${UNKNOWN:-${NOPE:-deep}}", "deep", NULL },
	{ "$$", "$", NULL },
	{ "$$A", "$A", NULL },
	{ "cost $5", "cost $5", NULL },
	{ "trailing $", "trailing $", NULL },
	{ "a$-b", "a$-b", NULL },
	{ "${A:-}", "aval", NULL },
	{ "${UNKNOWN:-}", "", NULL },
	{ "${UNKNOWN:-a b}", "a b", NULL },
	{ "${KERNEL_X", NULL, "unterminated ${ at offset 0" },
	{ "x ${A", NULL, "unterminated ${ at offset 2" },
	{ "${}", NULL, "bad substitution at offset 0" },
	{ "${1A}", NULL, "bad substitution at offset 0" },
	{ "${A%x}", NULL, "bad substitution at offset 0: unsupported operator '%'" },
	{ "${A:?msg}", NULL, "bad substitution at offset 0: unsupported operator ':?'" },
	{ "${UNKNOWN:-${B}", NULL, "unterminated ${ before offset 15" },
	{ "{A}", "{A}", NULL },
	{ "a}b", "a}b", NULL },
};

static void test_expand_row(void **state)
{
	const struct tcase *c = *state;
	struct kmm_error *err = NULL;
	char *out = NULL;
	int r = kmm_template_expand(c->in, &vars, &out, &err);
	bool good;

	if (c->out)
		good = r == 0 && strcmp(out, c->out) == 0;
	else
		good = r == -EINVAL && err && strcmp(err->message, c->error) == 0;
	if (!good)
		print_error("\"%s\": r=%d out=\"%s\" err=\"%s\"\n", c->in, r, out ? out : "(null)",
			    kmm_error_message(err));
	free(out);
	kmm_error_free(err);
	assert_true(good);
}

static const char *tcase_label(const void *row)
{
	return ((const struct tcase *)row)->in;
}

struct kcase {
	const char *kernel;
	const char *full, *xyz, *x, *y, *z;
};

static const struct kcase kernels[] = {
	{ "6.1.0-18-amd64", "6.1.0-18-amd64", "6.1.0", "6", "1", "0" },
	{ "5.14.0-427.13.1.el9_4.x86_64", "5.14.0-427.13.1.el9_4.x86_64", "5.14.0", "5", "14",
	  "0" },
	{ "6.0.15-300.fc37.x86_64", "6.0.15-300.fc37.x86_64", "6.0.15", "6", "0", "15" },
	{ "5.15.0-1051-gke", "5.15.0-1051-gke", "5.15.0", "5", "15", "0" },
	{ "6.6.0-rt15", "6.6.0-rt15", "6.6.0", "6", "6", "0" },
	{ "4.18.0-513.el8.aarch64+64k", "4.18.0-513.el8.aarch64_64k", "4.18.0", "4", "18", "0" },
	{ "6.8.0-1009-aws", "6.8.0-1009-aws", "6.8.0", "6", "8", "0" },
	{ "5.10.0", "5.10.0", "5.10.0", "5", "10", "0" },
	{ "6.5.0-1.el9.x86_64", "6.5.0-1.el9.x86_64", "6.5.0", "6", "5", "0" },
	{ "6.1.0~rc1 x", "6.1.0_rc1_x", "6.1.0_rc1_x", "6", "1", "0_rc1_x" },
};

static void test_kernel_vars_table(void **state)
{
	for (size_t i = 0; i < sizeof(kernels) / sizeof(kernels[0]); i++) {
		struct kmm_kernel_vars kv = { 0 };
		struct kmm_error *err = NULL;

		if (kmm_kernel_vars_init(&kv, kernels[i].kernel, &err) != 0)
			fail_msg("kernel %s: %s", kernels[i].kernel, kmm_error_message(err));
		assert_string_equal(kv.full, kernels[i].full);
		assert_string_equal(kv.xyz, kernels[i].xyz);
		assert_string_equal(kv.x, kernels[i].x);
		assert_string_equal(kv.y, kernels[i].y);
		assert_string_equal(kv.z, kernels[i].z);
		kmm_kernel_vars_done(&kv);
	}
}

static void test_kernel_too_few_fields(void **state)
{
	/* "," is normalized to "_" before the split, so it never separates fields. */
	const char *bad[] = { "6.1", "6", "", "61-x", "6.1,2,3" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct kmm_kernel_vars kv = { 0 };
		struct kmm_error *err = NULL;

		assert_int_equal(kmm_kernel_vars_init(&kv, bad[i], &err), -EINVAL);
		assert_non_null(strstr(err->message, "fewer than 3 fields"));
		kmm_error_free(err);
	}
}

static void test_kernel_trim(void **state)
{
	char *a = kmm_kernel_trim("5.15.0-1051-gke+"), *b = kmm_kernel_trim("6.1.0++"),
	     *c = kmm_kernel_trim("6.1.0");

	assert_string_equal(a, "5.15.0-1051-gke");
	assert_string_equal(b, "6.1.0+"); /* only one '+' */
	assert_string_equal(c, "6.1.0");
	free(a);
	free(b);
	free(c);
}

struct ecase {
	const char *tmpl;
	bool with_mod;
	const char *out;
};

static const struct ecase kernel_templates[] = {
	{ "r/$MOD_NAMESPACE/$MOD_NAME:$KERNEL_FULL_VERSION", true,
	  "r/ns1/mod1:4.18.0-513.el8.aarch64_64k" },
	{ "r/m:${KERNEL_VERSION}", true, "r/m:4.18.0-513.el8.aarch64_64k" },
	{ "r/m:${KERNEL_XYZ}-${KERNEL_X}.${KERNEL_Y}.${KERNEL_Z}", true, "r/m:4.18.0-4.18.0" },
	{ "/opt/lib/modules/${KERNEL_FULL_VERSION}/$MOD_NAME.ko", false,
	  "/opt/lib/modules/4.18.0-513.el8.aarch64_64k/.ko" },
	{ "${MOD_NAME:-nomod}", false, "nomod" },
	{ "${MOD_NAME:-nomod}", true, "mod1" },
	{ "r/m:${KERNEL_XY}", true, "r/m:" }, /* there is no KERNEL_XY upstream */
};

static void test_kernel_expand_table(void **state)
{
	struct kmm_kernel_vars kv = { 0 };

	assert_int_equal(kmm_kernel_vars_init(&kv, "4.18.0-513.el8.aarch64+64k", NULL), 0);
	for (size_t i = 0; i < sizeof(kernel_templates) / sizeof(kernel_templates[0]); i++) {
		const struct ecase *c = &kernel_templates[i];
		char *out = NULL;

		assert_int_equal(kmm_kernel_expand(c->tmpl, &kv, c->with_mod ? "mod1" : NULL,
						   c->with_mod ? "ns1" : NULL, &out, NULL),
				 0);
		if (strcmp(out, c->out) != 0)
			fail_msg("case %zu: %s -> %s", i, c->tmpl, out);
		free(out);
	}
	kmm_kernel_vars_done(&kv);
}

int main(void)
{
	struct table_run t = { 0 };

	table_add_rows(&t, "template", test_expand_row, (void *)cases, KMM_ARRAY_SIZE(cases),
		       sizeof(cases[0]), tcase_label);
	table_add(&t, "test_kernel_vars_table", test_kernel_vars_table, NULL);
	table_add(&t, "test_kernel_too_few_fields", test_kernel_too_few_fields, NULL);
	table_add(&t, "test_kernel_trim", test_kernel_trim, NULL);
	table_add(&t, "test_kernel_expand_table", test_kernel_expand_table, NULL);
	return table_run(&t, "template");
}
