/* SPDX-License-Identifier: Apache-2.0 */
/*
 * envsubst-style expansion. A recursive-descent expander over the input:
 * expand() copies text up to a terminator (end of input, or the '}' closing
 * the enclosing ${...} when nested), expanding $ expressions on the way.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-buf.h"
#include "kmm/api-template.h"

#define TEMPLATE_MAX (64 * 1024)
#define TEMPLATE_MAX_DEPTH 32

const char *kmm_template_var(const struct kmm_template_vars *vars, const char *name)
{
	if (!vars || !vars->names)
		return NULL;
	for (size_t i = 0; vars->names[i]; i++)
		if (strcmp(vars->names[i], name) == 0)
			return vars->values[i];
	return NULL;
}

struct expander {
	const char *in;
	size_t pos;
	const struct kmm_template_vars *vars;
	struct kmm_error **err;
};

static bool is_name_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_name_char(char c)
{
	return is_name_start(c) || (c >= '0' && c <= '9');
}

static int put(struct expander *x, struct kmm_buf *out, const char *s, size_t n)
{
	int r = kmm_buf_append(out, s, n);

	if (r == -E2BIG)
		return kmm_error_make(x->err, E2BIG, "template expands beyond %d bytes",
				      TEMPLATE_MAX);
	if (r < 0)
		return kmm_error_make(x->err, ENOMEM, "out of memory");
	return 0;
}

static int expand(struct expander *x, struct kmm_buf *out, bool nested, int depth);

/*
 * Expands the word of ${VAR<op>word} into `out` when `use` is set, or only
 * parses it (into a scratch buffer) to find the closing brace otherwise.
 */
static int word(struct expander *x, struct kmm_buf *out, bool use, int depth)
{
	struct kmm_buf scratch;
	int r;

	if (use)
		return expand(x, out, true, depth + 1);
	kmm_buf_init(&scratch, TEMPLATE_MAX);
	r = expand(x, &scratch, true, depth + 1);
	kmm_buf_free(&scratch);
	return r;
}

/* At "${": parses up to the matching '}' and expands. */
static int braced(struct expander *x, struct kmm_buf *out, int depth)
{
	size_t start = x->pos;
	size_t name_start, name_len;
	_cleanup_free_ char *name = NULL;
	const char *val;
	bool colon = false, set, nonempty;
	char op;
	int r;

	x->pos += 2;
	name_start = x->pos;
	while (is_name_char(x->in[x->pos]))
		x->pos++;
	name_len = x->pos - name_start;
	if (name_len == 0 || !is_name_start(x->in[name_start])) {
		if (x->in[x->pos] == '\0')
			return kmm_error_make(x->err, EINVAL, "unterminated ${ at offset %zu",
					      start);
		return kmm_error_make(x->err, EINVAL, "bad substitution at offset %zu", start);
	}
	name = strndup(x->in + name_start, name_len);
	if (!name)
		return kmm_error_make(x->err, ENOMEM, "out of memory");
	val = kmm_template_var(x->vars, name);
	set = val != NULL;
	nonempty = set && *val;

	if (x->in[x->pos] == '}') {
		x->pos++;
		return set ? put(x, out, val, strlen(val)) : 0;
	}
	if (x->in[x->pos] == '\0')
		return kmm_error_make(x->err, EINVAL, "unterminated ${ at offset %zu", start);
	if (x->in[x->pos] == ':') {
		colon = true;
		x->pos++;
	}
	op = x->in[x->pos];
	if (op != '-' && op != '=' && op != '+') {
		if (op == '\0')
			return kmm_error_make(x->err, EINVAL, "unterminated ${ at offset %zu",
					      start);
		return kmm_error_make(x->err, EINVAL,
				      "bad substitution at offset %zu: unsupported operator '%s%c'",
				      start, colon ? ":" : "", op);
	}
	x->pos++;
	switch (op) {
	case '-':
	case '=': {
		bool use_word = colon ? !nonempty : !set;

		r = word(x, out, use_word, depth);
		if (r < 0)
			return r;
		if (!use_word)
			r = put(x, out, val, strlen(val));
		return r;
	}
	default: /* '+' */
		return word(x, out, colon ? nonempty : set, depth);
	}
}

static int expand(struct expander *x, struct kmm_buf *out, bool nested, int depth)
{
	int r;

	if (depth > TEMPLATE_MAX_DEPTH)
		return kmm_error_make(x->err, EINVAL, "template nests deeper than %d levels",
				      TEMPLATE_MAX_DEPTH);
	for (;;) {
		char c = x->in[x->pos];

		if (c == '\0') {
			if (nested)
				return kmm_error_make(x->err, EINVAL,
						      "unterminated ${ before offset %zu", x->pos);
			return 0;
		}
		if (nested && c == '}') {
			x->pos++;
			return 0;
		}
		if (c != '$') {
			size_t n = 1;

			while (x->in[x->pos + n] && x->in[x->pos + n] != '$' &&
			       !(nested && x->in[x->pos + n] == '}'))
				n++;
			r = put(x, out, x->in + x->pos, n);
			if (r < 0)
				return r;
			x->pos += n;
			continue;
		}
		/* c == '$' */
		c = x->in[x->pos + 1];
		if (c == '$') {
			r = put(x, out, "$", 1);
			x->pos += 2;
		} else if (c == '{') {
			r = braced(x, out, depth);
		} else if (is_name_start(c)) {
			size_t n = 0;
			_cleanup_free_ char *name = NULL;
			const char *val;

			while (is_name_char(x->in[x->pos + 1 + n]))
				n++;
			name = strndup(x->in + x->pos + 1, n);
			if (!name)
				return kmm_error_make(x->err, ENOMEM, "out of memory");
			val = kmm_template_var(x->vars, name);
			r = val ? put(x, out, val, strlen(val)) : 0;
			x->pos += 1 + n;
		} else {
			r = put(x, out, "$", 1);
			x->pos++;
		}
		if (r < 0)
			return r;
	}
}

int kmm_template_expand(const char *in, const struct kmm_template_vars *vars, char **ret,
			struct kmm_error **err)
{
	struct expander x = { .in = in ? in : "", .vars = vars, .err = err };
	struct kmm_buf out;
	char *s;
	int r;

	kmm_buf_init(&out, TEMPLATE_MAX);
	r = expand(&x, &out, false, 0);
	if (r < 0) {
		kmm_buf_free(&out);
		return r;
	}
	s = kmm_buf_steal(&out);
	kmm_buf_free(&out);
	if (!s)
		return kmm_error_make(err, ENOMEM, "out of memory");
	*ret = s;
	return 0;
}
