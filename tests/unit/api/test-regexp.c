/* SPDX-License-Identifier: Apache-2.0 */
/* The RE2 gate and PCRE2 matching with Go regexp.MatchString semantics. */
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
#include "tests/unit/api/table.h"

struct mcase {
	const char *pattern;
	const char *subject;
	int match;
};

static const struct mcase matches[] = {
	{ "^.+$", "6.1.0-18-amd64", 1 },
	{ "6\\.1", "6.1.0-18-amd64", 1 }, /* unanchored search */
	{ "^6\\.1$", "6.1.0-18-amd64", 0 },
	{ "^6\\.1\\.\\d+-.*$", "6.1.0-18-amd64", 1 },
	{ "amd64$", "6.1.0-18-amd64", 1 },
	{ "amd64$", "6.1.0-18-amd64\n", 0 }, /* $ is end of text only (DOLLAR_ENDONLY) */
	{ "(?m)amd64$", "6.1.0-18-amd64\n", 1 },
	{ "^.+\\.el9_\\d\\.x86_64$", "5.14.0-427.13.1.el9_4.x86_64", 1 },
	{ "^.+\\fc37\\.x86_64$", "6.0.15-300.fc37.x86_64", 0 }, /* \f is a form feed, as in RE2 */
	{ "^.+\\.fc37\\.x86_64$", "6.0.15-300.fc37.x86_64", 1 },
	{ "(?i)GKE$", "5.15.0-1051-gke", 1 },
	{ "(?:rt)\\d+", "6.6.0-rt15", 1 },
	{ "(?P<major>\\d+)\\.", "6.6.0-rt15", 1 },
	{ "(?<major>\\d+)\\.", "6.6.0-rt15", 1 },
	{ "\\baarch64\\b", "4.18.0-513.el8.aarch64_64k", 0 },
	{ "aarch64", "4.18.0-513.el8.aarch64_64k", 1 },
	{ "[[:digit:]]+k$", "4.18.0-513.el8.aarch64_64k", 1 },
	{ "^\\Q6.1.0\\E", "6.1.0-18-amd64", 1 },
	{ "^\\Q6x1\\E", "6.1.0-18-amd64", 0 },
	{ "^6.{1,3}0", "6.1.0-18-amd64", 1 },
	{ "a{,2}", "a{,2}", 1 }, /* not a repetition in RE2: literal */
	{ "^\\x36", "6.1", 1 },
	{ "^\\x{36}", "6.1", 1 },
	{ "^\\p{N}+\\.", "6.1", 1 },
	{ "^.*?-", "6.1.0-18", 1 },
	{ "^(a|6)\\z", "6", 1 },
	{ "\\A6", "6.1", 1 },
	{ "x*", "", 1 },
	{ "^(a+)+$", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", 0 }, /* bounded by match limits */
};

static void test_match_row(void **state)
{
	const struct mcase *c = *state;
	struct kmm_regexp *re = NULL;
	struct kmm_error *err = NULL;
	int r;

	if (kmm_regexp_compile(c->pattern, &re, &err) != 0) {
		print_error("%s: %s\n", c->pattern, kmm_error_message(err));
		kmm_error_free(err);
		fail();
	}
	r = kmm_regexp_match(re, c->subject);
	kmm_regexp_free(re);
	/* A catastrophic pattern may hit the limits: that is a no-match with an error. */
	if (r < 0 && c->match == 0)
		r = 0;
	assert_int_equal(r, c->match);
}

static const char *mcase_label(const void *row)
{
	return ((const struct mcase *)row)->pattern;
}

struct rcase {
	const char *pattern;
	const char *error; /* substring */
};

static const struct rcase rejects[] = {
	{ "(a)\\1", "back-reference" },
	{ "(?P<n>a)(?P=n)", "named back-reference" },
	{ "\\k<n>", "back-reference" },
	{ "\\g1", "back-reference" },
	{ "a(?=b)", "lookahead" },
	{ "a(?!b)", "lookahead" },
	{ "(?<=a)b", "lookbehind" },
	{ "(?<!a)b", "lookbehind" },
	{ "(?>a+)", "atomic group" },
	{ "a*+", "possessive quantifier" },
	{ "a++", "possessive quantifier" },
	{ "a?+", "possessive quantifier" },
	{ "a{2}+", "possessive quantifier" },
	{ "a**", "nested repetition" },
	{ "a*?*", "nested repetition" },
	{ "a{2}{3}", "nested repetition" },
	{ "(?R)", "recursion" },
	{ "(a)(?1)", "recursion" },
	{ "(?&n)", "recursion" },
	{ "(?P>n)", "named back-reference or recursion" },
	{ "a\\Z", "\\Z" },
	{ "\\Gab", "invalid escape \\G" },
	{ "a\\Kb", "invalid escape \\K" },
	{ "\\R", "invalid escape \\R" },
	{ "\\X", "invalid escape \\X" },
	{ "\\C", "invalid escape \\C" },
	{ "\\e", "invalid escape \\e" },
	{ "\\h", "invalid escape \\h" },
	{ "[\\b]", "assertion escape inside a character class" },
	{ "(?|a|b)", "branch reset" },
	{ "(?#comment)", "comment group" },
	{ "(?(1)a|b)", "conditional" },
	{ "(?C1)", "callout" },
	{ "(*LIMIT_MATCH=99999999)a", "(* verb" },
	{ "(?x)a b", "group flag" },
	{ "(?)", "missing flags" },
	{ "a{1001}", "invalid repeat count" },
	{ "a{3,2}", "invalid repeat count" },
	{ "*a", "missing argument" },
	{ "[a-", "missing closing ]" },
	{ "\\x4", "invalid \\x escape" },
	{ "a\\", "trailing backslash" },
	{ "(a", "missing closing parenthesis" },
};

static void test_reject_row(void **state)
{
	const struct rcase *c = *state;
	struct kmm_regexp *re = NULL;
	struct kmm_error *err = NULL;
	int r = kmm_regexp_compile(c->pattern, &re, &err);
	bool good = r == -EINVAL && err && strstr(err->message, c->error);

	if (!good)
		print_error("%s: r=%d err=%s\n", c->pattern, r, kmm_error_message(err));
	kmm_error_free(err);
	kmm_regexp_free(re);
	assert_true(good);
}

static const char *rcase_label(const void *row)
{
	return ((const struct rcase *)row)->pattern;
}

int main(void)
{
	struct table_run t = { 0 };

	table_add_rows(&t, "regexp matches", test_match_row, (void *)matches,
		       KMM_ARRAY_SIZE(matches), sizeof(matches[0]), mcase_label);
	table_add_rows(&t, "regexp rejected", test_reject_row, (void *)rejects,
		       KMM_ARRAY_SIZE(rejects), sizeof(rejects[0]), rcase_label);
	return table_run(&t, "regexp");
}
