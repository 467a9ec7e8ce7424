/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel-mapping regexps: Go RE2 syntax on PCRE2.
 *
 * Upstream matches `regexp` with Go's regexp.MatchString. PCRE2 accepts a
 * superset of that syntax, and some of the extra syntax changes meaning
 * (\Z, [\b], \1) or opens backtracking blow-ups RE2 cannot have. The gate
 * below walks the pattern once and rejects everything outside RE2's syntax
 * before PCRE2 ever sees it; matches then run with match/depth/heap limits.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <errno.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api-kernel.h"

#define RE2_MAX_REPEAT 1000
#define MATCH_LIMIT 200000
#define DEPTH_LIMIT 5000
#define HEAP_LIMIT_KIB 8192

struct kmm_regexp {
	pcre2_code *code;
	pcre2_match_context *mctx;
};

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_alnum(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int reject(struct kmm_error **err, size_t off, const char *what)
{
	return kmm_error_make(err, EINVAL, "unsupported %s at offset %zu (Go RE2 syntax)", what,
			      off);
}

/*
 * Checks the escape at p[i] == '\\'. Returns its length, or negative. Sets
 * *ret_quote when it is \Q.
 */
static int check_escape(const char *p, size_t i, bool in_class, bool *ret_quote,
			struct kmm_error **err)
{
	char c = p[i + 1];
	size_t n;

	if (c == '\0')
		return kmm_error_make(err, EINVAL, "trailing backslash at offset %zu", i);
	if ((unsigned char)c >= 0x80)
		return reject(err, i, "escape of a non-ASCII character");
	if (!is_alnum(c))
		return 2; /* escaped punctuation is itself */
	switch (c) {
	case 'a':
	case 'f':
	case 't':
	case 'n':
	case 'r':
	case 'v':
	case 'd':
	case 'D':
	case 's':
	case 'S':
	case 'w':
	case 'W':
		return 2;
	case 'A':
	case 'b':
	case 'B':
	case 'z':
		if (in_class)
			return reject(err, i, "assertion escape inside a character class");
		return 2;
	case 'Q':
		if (in_class)
			return reject(err, i, "\\Q inside a character class");
		*ret_quote = true;
		return 2;
	case '0':
		/* Octal: \0 plus up to two more octal digits. */
		n = 2;
		while (n < 4 && p[i + n] >= '0' && p[i + n] <= '7')
			n++;
		return (int)n;
	case 'x':
		if (p[i + 2] == '{') {
			n = 3;
			while (is_hex(p[i + n]))
				n++;
			if (n == 3 || p[i + n] != '}')
				return kmm_error_make(err, EINVAL,
						      "invalid \\x{...} escape at offset %zu", i);
			return (int)n + 1;
		}
		if (!is_hex(p[i + 2]) || !is_hex(p[i + 3]))
			return kmm_error_make(
			    err, EINVAL, "invalid \\x escape at offset %zu (two hex digits)", i);
		return 4;
	case 'p':
	case 'P':
		if (p[i + 2] == '{') {
			n = 3;
			while (p[i + n] && p[i + n] != '}')
				n++;
			if (p[i + n] != '}')
				return kmm_error_make(err, EINVAL,
						      "unterminated \\p{ at offset %zu", i);
			return (int)n + 1;
		}
		if (!is_alnum(p[i + 2]))
			return kmm_error_make(err, EINVAL, "invalid \\p escape at offset %zu", i);
		return 3;
	case '1':
	case '2':
	case '3':
	case '4':
	case '5':
	case '6':
	case '7':
	case '8':
	case '9':
		return reject(err, i, "back-reference");
	case 'g':
	case 'k':
		return reject(err, i, "back-reference or subroutine call");
	case 'Z':
		return reject(err, i, "\\Z (use \\z or $)");
	default:
		break;
	}
	return kmm_error_make(err, EINVAL, "invalid escape \\%c at offset %zu (Go RE2 syntax)", c,
			      i);
}

/* At p[i] == '{': is it a repetition {n}, {n,}, {n,m}? Stores its length. */
static bool parse_repeat(const char *p, size_t i, size_t *ret_len, long *ret_min, long *ret_max)
{
	size_t j = i + 1;
	long lo = 0, hi;

	if (!is_digit(p[j]))
		return false;
	while (is_digit(p[j])) {
		if (lo <= 100000)
			lo = lo * 10 + (p[j] - '0');
		j++;
	}
	hi = lo;
	if (p[j] == ',') {
		j++;
		if (p[j] == '}') {
			hi = -1;
		} else {
			if (!is_digit(p[j]))
				return false;
			hi = 0;
			while (is_digit(p[j])) {
				if (hi <= 100000)
					hi = hi * 10 + (p[j] - '0');
				j++;
			}
		}
	}
	if (p[j] != '}')
		return false;
	*ret_len = j + 1 - i;
	*ret_min = lo;
	*ret_max = hi;
	return true;
}

/* At "(?": checks the group kind. Returns the length of the opener, or negative. */
static int check_group(const char *p, size_t i, struct kmm_error **err)
{
	const char *s = p + i + 2;
	size_t n;
	bool minus = false;
	int before = 0, after = 0;

	switch (s[0]) {
	case ':':
		return 3;
	case '=':
	case '!':
		return reject(err, i, "lookahead");
	case '>':
		return reject(err, i, "atomic group");
	case '|':
		return reject(err, i, "branch reset group");
	case '#':
		return reject(err, i, "comment group");
	case '(':
		return reject(err, i, "conditional group");
	case 'C':
		return reject(err, i, "callout");
	case 'R':
	case '&':
	case '+':
		return reject(err, i, "recursion or subroutine call");
	case '<':
		if (s[1] == '=' || s[1] == '!')
			return reject(err, i, "lookbehind");
		n = 1;
		goto name;
	case 'P':
		if (s[1] == '=' || s[1] == '>')
			return reject(err, i, "named back-reference or recursion");
		if (s[1] != '<')
			return kmm_error_make(err, EINVAL, "invalid named group at offset %zu", i);
		n = 2;
		goto name;
	default:
		break;
	}
	if (is_digit(s[0]) || (s[0] == '-' && is_digit(s[1])))
		return reject(err, i, "recursion or subroutine call");
	/* Flags: [imsU]+ , optionally -[imsU]+, then ':' or ')'. */
	for (n = 0; s[n] && s[n] != ':' && s[n] != ')'; n++) {
		char c = s[n];

		if (c == '-') {
			if (minus)
				return kmm_error_make(err, EINVAL, "invalid flags at offset %zu",
						      i);
			minus = true;
			continue;
		}
		if (c != 'i' && c != 'm' && c != 's' && c != 'U')
			return reject(err, i, "group flag or syntax");
		if (minus)
			after++;
		else
			before++;
	}
	if (!s[n])
		return kmm_error_make(err, EINVAL, "missing closing ) at offset %zu", i);
	if (before + after == 0 || (minus && after == 0))
		return kmm_error_make(err, EINVAL, "invalid or missing flags at offset %zu", i);
	return (int)(n + 3);
name:
	/* Group name: word characters, then '>'. */
	{
		size_t k = n;

		while (is_alnum(s[k]) || s[k] == '_')
			k++;
		if (k == n || s[k] != '>')
			return kmm_error_make(err, EINVAL, "invalid group name at offset %zu", i);
		return (int)(k + 3);
	}
}

int kmm_regexp_check(const char *p, struct kmm_error **err)
{
	bool in_class = false, quote = false;
	bool can_repeat = false; /* the previous item takes a quantifier */
	int after_quant = 0;	 /* 1 after a quantifier, 2 after its lazy '?' */
	size_t class_start = 0;
	size_t i = 0;
	int r;

	if (!p)
		return kmm_error_make(err, EINVAL, "empty pattern");
	while (p[i]) {
		char c = p[i];

		if (quote) {
			if (c == '\\' && p[i + 1] == 'E') {
				quote = false;
				i += 2;
			} else {
				i++;
			}
			can_repeat = true;
			after_quant = 0;
			continue;
		}
		if (in_class) {
			if (c == '\\') {
				bool q = false;

				r = check_escape(p, i, true, &q, err);
				if (r < 0)
					return r;
				i += (size_t)r;
			} else if (c == '[' && p[i + 1] == ':') {
				const char *end = strstr(p + i + 2, ":]");

				i = end ? (size_t)(end - p) + 2 : i + 1;
			} else if (c == ']' && i > class_start) {
				in_class = false;
				can_repeat = true;
				after_quant = 0;
				i++;
			} else {
				i++;
			}
			continue;
		}
		switch (c) {
		case '\\': {
			bool q = false;

			r = check_escape(p, i, false, &q, err);
			if (r < 0)
				return r;
			i += (size_t)r;
			quote = q;
			can_repeat = !q;
			after_quant = 0;
			continue;
		}
		case '[':
			in_class = true;
			i++;
			if (p[i] == '^')
				i++;
			/* A ']' right after '[' or '[^' is a literal. */
			class_start = i + 1;
			if (p[i] == ']')
				i++;
			continue;
		case '(':
			if (p[i + 1] == '*')
				return reject(err, i, "(* verb");
			if (p[i + 1] == '?') {
				r = check_group(p, i, err);
				if (r < 0)
					return r;
				i += (size_t)r;
			} else {
				i++;
			}
			can_repeat = false;
			after_quant = 0;
			continue;
		case '|':
			can_repeat = false;
			after_quant = 0;
			i++;
			continue;
		case '*':
		case '+':
		case '?':
			if (after_quant == 1 && c == '?') {
				after_quant = 2;
			} else if (after_quant == 1 && c == '+') {
				return reject(err, i, "possessive quantifier");
			} else if (after_quant) {
				return kmm_error_make(
				    err, EINVAL, "invalid nested repetition operator at offset %zu",
				    i);
			} else if (!can_repeat) {
				return kmm_error_make(
				    err, EINVAL,
				    "missing argument to repetition operator at offset %zu", i);
			} else {
				after_quant = 1;
			}
			i++;
			continue;
		case '{': {
			size_t len;
			long lo, hi;

			if (parse_repeat(p, i, &len, &lo, &hi)) {
				if (after_quant)
					return kmm_error_make(
					    err, EINVAL,
					    "invalid nested repetition operator at offset %zu", i);
				if (!can_repeat)
					return kmm_error_make(
					    err, EINVAL,
					    "missing argument to repetition operator at offset %zu",
					    i);
				if (lo > RE2_MAX_REPEAT || hi > RE2_MAX_REPEAT ||
				    (hi >= 0 && hi < lo))
					return kmm_error_make(
					    err, EINVAL, "invalid repeat count at offset %zu", i);
				after_quant = 1;
				i += len;
				continue;
			}
			break; /* a literal '{' */
		}
		default:
			break;
		}
		/* Any other character is a literal atom (')' closes a group: also an atom). */
		can_repeat = true;
		after_quant = 0;
		i++;
	}
	if (in_class)
		return kmm_error_make(err, EINVAL, "missing closing ] for the class at offset %zu",
				      class_start ? class_start - 1 : 0);
	return 0;
}

void kmm_regexp_free(struct kmm_regexp *re)
{
	if (!re)
		return;
	pcre2_code_free(re->code);
	pcre2_match_context_free(re->mctx);
	free(re);
}

int kmm_regexp_compile(const char *pattern, struct kmm_regexp **ret, struct kmm_error **err)
{
	_cleanup_(kmm_regexp_freep) struct kmm_regexp *re = NULL;
	PCRE2_SIZE erroff;
	int errcode, r;

	r = kmm_regexp_check(pattern, err);
	if (r < 0)
		return r;
	re = calloc(1, sizeof(*re));
	if (!re)
		return kmm_error_make(err, ENOMEM, "out of memory");
	re->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
				 PCRE2_UTF | PCRE2_DOLLAR_ENDONLY | PCRE2_NEVER_BACKSLASH_C,
				 &errcode, &erroff, NULL);
	if (!re->code) {
		PCRE2_UCHAR msg[256];

		if (pcre2_get_error_message(errcode, msg, sizeof(msg)) < 0)
			return kmm_error_make(err, EINVAL, "invalid pattern at offset %zu",
					      (size_t)erroff);
		return kmm_error_make(err, EINVAL, "%s at offset %zu", (char *)msg, (size_t)erroff);
	}
	/* Belt and braces: the gate should have refused any back-reference already. */
	{
		uint32_t backref = 0;

		if (pcre2_pattern_info(re->code, PCRE2_INFO_BACKREFMAX, &backref) == 0 && backref)
			return reject(err, 0, "back-reference");
	}
	re->mctx = pcre2_match_context_create(NULL);
	if (!re->mctx)
		return kmm_error_make(err, ENOMEM, "out of memory");
	pcre2_set_match_limit(re->mctx, MATCH_LIMIT);
	pcre2_set_depth_limit(re->mctx, DEPTH_LIMIT);
	pcre2_set_heap_limit(re->mctx, HEAP_LIMIT_KIB);
	*ret = TAKE_PTR(re);
	return 0;
}

int kmm_regexp_match(const struct kmm_regexp *re, const char *subject)
{
	pcre2_match_data *md;
	int rc;

	md = pcre2_match_data_create_from_pattern(re->code, NULL);
	if (!md)
		return -ENOMEM;
	rc = pcre2_match(re->code, (PCRE2_SPTR)subject, strlen(subject), 0, 0, md, re->mctx);
	pcre2_match_data_free(md);
	if (rc >= 0)
		return 1;
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
	    rc == PCRE2_ERROR_HEAPLIMIT)
		return -ELOOP;
	if (rc == PCRE2_ERROR_NOMEMORY)
		return -ENOMEM;
	/* Invalid UTF-8 subject and the like: Go would not match such bytes as text either. */
	return 0;
}
