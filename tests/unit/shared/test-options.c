/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kmm/shared-options.h"
#include "kmm/shared-strv.h"

struct args {
	bool flag;
	const char *name;
	char **files;
	int number;
};

static int parse_number(const struct kmm_option *o, const char *arg, void *ctx,
			struct kmm_error **err)
{
	struct args *a = ctx;

	if (strcmp(arg, "seven") == 0)
		return kmm_error_make(err, EINVAL, "--%s wants digits, not '%s'", o->name, arg);
	a->number = atoi(arg); // NOLINT(cert-err34-c): the test passes digits
	return a->number > 0 ? 0 : -EINVAL;
}

static const struct kmm_option options[] = {
	{ "flag", 'F', KMM_OPTION_FLAG, NULL, offsetof(struct args, flag), NULL, "a flag" },
	{ "name", 'n', KMM_OPTION_STRING, "NAME", offsetof(struct args, name), NULL,
	  "a name\nover two lines" },
	{ "file", 'f', KMM_OPTION_STRV, "FILE", offsetof(struct args, files), NULL, NULL },
	{ "a-rather-long-option-name", 0, KMM_OPTION_CALL, "N", 0, parse_number, "a number" },
	{ NULL, 'x', KMM_OPTION_FLAG, NULL, offsetof(struct args, flag), NULL, NULL },
	{ 0 },
};

static const struct kmm_option_group groups[] = {
	{ .title = "Options:\n", .options = options, .column = 20 },
	{ .options = kmm_options_common },
	{ 0 },
};

static const struct kmm_options spec = {
	.prog = "prog",
	.usage = "Usage: prog [OPTIONS] ARGS\n\n",
	.groups = groups,
	.footer = "The end.\n",
};

/* Runs kmm_options_parse() on a NULL-terminated argument list; stdout and stderr to files. */
static int parse(struct args *a, int *ret_first, char **ret_out, char **ret_err, ...)
{
	char *argv[16];
	int argc = 0, r, saved_out = dup(1), saved_err = dup(2);
	FILE *out = tmpfile(), *err = tmpfile();
	va_list ap;
	size_t n;

	va_start(ap, ret_err);
	argv[argc++] = (char *)"/some/path/prog";
	while ((argv[argc] = va_arg(ap, char *)))
		argc++;
	va_end(ap);
	fflush(stdout);
	fflush(stderr);
	dup2(fileno(out), 1);
	dup2(fileno(err), 2);
	r = kmm_options_parse(&spec, argc, argv, a, ret_first);
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, 1);
	dup2(saved_err, 2);
	close(saved_out);
	close(saved_err);
	*ret_out = calloc(1, 4096);
	*ret_err = calloc(1, 4096);
	rewind(out);
	rewind(err);
	n = fread(*ret_out, 1, 4095, out);
	(void)n;
	n = fread(*ret_err, 1, 4095, err);
	(void)n;
	fclose(out);
	fclose(err);
	return r;
}

static void test_values_go_to_their_fields(void **state)
{
	struct args a = { 0 };
	_cleanup_free_ char *out = NULL, *err = NULL;
	int first = 0;

	assert_int_equal(parse(&a, &first, &out, &err, "-F", "--name=x", "op", "-f", "1", "--file",
			       "2", "--a-rather", "5", NULL),
			 -1);
	assert_true(a.flag);
	assert_string_equal(a.name, "x");
	assert_int_equal(kmm_strv_length(a.files), 2);
	assert_string_equal(a.files[1], "2");
	assert_int_equal(a.number, 5);
	assert_int_equal(first, 9); /* getopt moved the operand last */
	assert_string_equal(out, "");
	assert_string_equal(err, "");
	kmm_strv_free(a.files);
}

static void test_usage_errors_are_uniform(void **state)
{
	static const struct {
		const char *arg, *message;
	} cases[] = {
		{ "--nope", "prog: unrecognized option '--nope'\n" },
		{ "-q", "prog: invalid option -- 'q'\n" },
		{ "--flag=1", "prog: option '--flag' doesn't allow an argument\n" },
		{ "--name", "prog: option '--name' requires an argument\n" },
		{ "-n", "prog: option requires an argument -- 'n'\n" },
		{ "--a-rather-long-option-name=0",
		  "prog: invalid --a-rather-long-option-name '0'\n" },
		{ "--a-rather-long-option-name=seven",
		  "prog: --a-rather-long-option-name wants digits, not 'seven'\n" },
		{ "--log-level=loud", "prog: invalid --log-level 'loud'\n" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct args a = { 0 };
		_cleanup_free_ char *out = NULL, *err = NULL, *want = NULL;
		int first = 0;

		assert_int_equal(parse(&a, &first, &out, &err, cases[i].arg, NULL), KMM_EXIT_USAGE);
		assert_true(asprintf(&want, "%sTry 'prog --help' for more information.\n",
				     cases[i].message) > 0);
		assert_string_equal(err, want);
		assert_string_equal(out, "");
	}
}

static void test_help_is_built_from_the_table(void **state)
{
	struct args a = { 0 };
	_cleanup_free_ char *out = NULL, *err = NULL;
	int first = 0;

	assert_int_equal(parse(&a, &first, &out, &err, "-n", "x", "--help", "--nope", NULL),
			 KMM_EXIT_OK);
	assert_string_equal(out,
			    "Usage: prog [OPTIONS] ARGS\n"
			    "\n"
			    "Options:\n"
			    "  -F, --flag        a flag\n"
			    "  -n, --name NAME   a name\n"
			    "                    over two lines\n"
			    "      --a-rather-long-option-name N  a number\n"
			    "  -h, --help               show this help and exit\n"
			    "      --version            show the version and exit\n"
			    "      --log-level LEVEL    debug, info, warn or error (default info)\n"
			    "      --log-format FORMAT  text or json (default text)\n"
			    "The end.\n");
	assert_string_equal(err, "");
}

static void test_stop_at_operand_and_reparse(void **state)
{
	struct kmm_options program = { .prog = "prog", .groups = groups, .stop_at_operand = true };
	char *argv[] = { (char *)"prog", (char *)"-F", (char *)"cmd",
			 (char *)"-n",	 (char *)"y",  NULL };
	struct args a = { 0 };
	int first = 0;

	assert_int_equal(kmm_options_parse(&program, 5, argv, &a, &first), -1);
	assert_int_equal(first, 2);
	assert_true(a.flag);
	assert_null(a.name);
	/* The command parses its own arguments after the program's. */
	assert_int_equal(kmm_options_parse(&spec, 3, argv + 2, &a, &first), -1);
	assert_string_equal(a.name, "y");
	assert_int_equal(first, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values_go_to_their_fields),
		cmocka_unit_test(test_usage_errors_are_uniform),
		cmocka_unit_test(test_help_is_built_from_the_table),
		cmocka_unit_test(test_stop_at_operand_and_reparse),
	};
	return cmocka_run_group_tests_name("shared-options", tests, NULL, NULL);
}
