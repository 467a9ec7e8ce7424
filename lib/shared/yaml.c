/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <libfyaml.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-fileio.h"
#include "kmm/shared-yaml.h"
#include "lib/testable.h"

struct conv {
	const char *source;
	unsigned flags;
	size_t nodes;
	struct kmm_error **err;
};

static int node_line(struct fy_node *n)
{
	struct fy_token *t = fy_node_get_scalar_token(n);
	const struct fy_mark *m;

	if (!t)
		t = fy_node_get_tag_token(n);
	m = t ? fy_token_start_mark(t) : NULL;
	return m ? m->line + 1 : 0;
}

static int conv_error(struct conv *c, struct fy_node *n, int code, const char *what,
		      const char *detail)
{
	int line = n ? node_line(n) : 0;

	if (line > 0)
		return kmm_error_make(c->err, code, "%s:%d: %s%s", c->source, line, what, detail);
	return kmm_error_make(c->err, code, "%s: %s%s", c->source, what, detail);
}

static bool str_in(const char *s, const char *const *set)
{
	for (; *set; set++) {
		if (strcmp(s, *set) == 0)
			return true;
	}
	return false;
}

static bool all_of(const char *s, const char *chars)
{
	return *s && strspn(s, chars) == strlen(s);
}

/* Integer per the core schema: [-+]?[0-9]+ | 0o[0-7]+ | 0x[0-9a-fA-F]+ */
static bool parse_int(const char *s, json_int_t *ret)
{
	const char *digits = s;
	int base = 10;
	char *end;

	if (strncmp(s, "0o", 2) == 0) {
		base = 8;
		digits = s + 2;
		if (!all_of(digits, "01234567"))
			return false;
	} else if (strncmp(s, "0x", 2) == 0) {
		base = 16;
		digits = s + 2;
		if (!all_of(digits, "0123456789abcdefABCDEF"))
			return false;
	} else {
		const char *d = (*s == '-' || *s == '+') ? s + 1 : s;
		if (!all_of(d, "0123456789"))
			return false;
	}
	errno = 0;
	long long v = strtoll(digits, &end, base);
	if (errno || *end)
		return false;
	*ret = (json_int_t)v;
	return true;
}

/* Float per the core schema, including .inf and .nan spellings. */
static bool parse_float(const char *s, double *ret)
{
	static const char *const inf[] = {
		".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", NULL
	};
	static const char *const ninf[] = { "-.inf", "-.Inf", "-.INF", NULL };
	static const char *const nan[] = { ".nan", ".NaN", ".NAN", NULL };
	const char *p = s;
	bool digits = false;
	char *end;

	if (str_in(s, inf) || str_in(s, ninf) || str_in(s, nan))
		return false; /* JSON cannot carry them: keep as strings */
	if (*p == '-' || *p == '+')
		p++;
	while (*p >= '0' && *p <= '9') {
		p++;
		digits = true;
	}
	if (*p == '.') {
		p++;
		while (*p >= '0' && *p <= '9') {
			p++;
			digits = true;
		}
	}
	if (!digits)
		return false;
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '-' || *p == '+')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p)
		return false;
	errno = 0;
	*ret = strtod(s, &end);
	return !errno && !*end && isfinite(*ret);
}

static json_t *plain_scalar(struct conv *c, const char *s)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL", NULL };
	static const char *const trues[] = { "true", "True", "TRUE", NULL };
	static const char *const falses[] = { "false", "False", "FALSE", NULL };
	static const char *const trues11[] = {
		"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", NULL
	};
	static const char *const falses11[] = { "n",   "N",   "no",  "No", "NO",
						"off", "Off", "OFF", NULL };
	json_int_t i;
	double d;

	if (str_in(s, nulls))
		return json_null();
	if (str_in(s, trues) || ((c->flags & KMM_YAML_BOOL_1_1) && str_in(s, trues11)))
		return json_true();
	if (str_in(s, falses) || ((c->flags & KMM_YAML_BOOL_1_1) && str_in(s, falses11)))
		return json_false();
	if (parse_int(s, &i))
		return json_integer(i);
	if (parse_float(s, &d))
		return json_real(d);
	return json_string(s);
}

static int convert(struct conv *c, struct fy_node *n, int depth, json_t **ret);

static int convert_scalar(struct conv *c, struct fy_node *n, json_t **ret)
{
	size_t len, taglen = 0;
	const char *text = fy_node_get_scalar(n, &len);
	const char *tag = fy_node_get_tag(n, &taglen);
	_cleanup_free_ char *s = NULL;
	json_t *v;

	if (!text)
		return conv_error(c, n, EINVAL, "unreadable scalar", "");
	if (memchr(text, '\0', len))
		return conv_error(c, n, EINVAL, "scalar contains a NUL byte", "");
	s = strndup(text, len);
	if (!s)
		return -ENOMEM;
	if (tag && taglen > 0 && !(taglen == 1 && tag[0] == '!')) {
		/* Explicit !!str keeps the text; other tags are typed like plain scalars. */
		if ((taglen == 21 && memcmp(tag, "tag:yaml.org,2002:str", 21) == 0) ||
		    (taglen == 5 && memcmp(tag, "!!str", 5) == 0))
			v = json_stringn(s, len);
		else
			v = plain_scalar(c, s);
	} else if (fy_node_get_style(n) == FYNS_PLAIN) {
		v = plain_scalar(c, s);
	} else {
		v = json_stringn(s, len);
	}
	if (!v)
		return conv_error(c, n, EINVAL, "scalar is not valid UTF-8", "");
	*ret = v;
	return 0;
}

/* The node an alias names, for a key or a value alike. */
static int resolve_alias(struct conv *c, struct fy_node *alias, struct fy_node **ret)
{
	size_t len = 0;
	const char *name = fy_node_get_scalar(alias, &len);

	/*
	 * libfyaml 0.7.12 resolves an alias with a '/' as a path and reads past
	 * the name's end doing so
	 * (tests/fuzz/worker-config/regressions/libfyaml-overflow-alias-path and
	 * libfyaml-overflow-alias-path-key).
	 */
	if (!name || memchr(name, '/', len))
		return conv_error(c, alias, EINVAL, "alias names with '/' are not supported", "");
	*ret = fy_node_resolve_alias(alias);
	if (!*ret)
		return conv_error(c, alias, EINVAL, "alias to an unknown anchor", "");
	return 0;
}

static int convert_mapping(struct conv *c, struct fy_node *n, int depth, json_t **ret)
{
	_cleanup_json_ json_t *obj = json_object();
	struct fy_node_pair *pair;
	void *it = NULL;
	int r;

	if (!obj)
		return -ENOMEM;
	while ((pair = fy_node_mapping_iterate(n, &it))) {
		struct fy_node *k = fy_node_pair_key(pair);
		_cleanup_json_ json_t *key = NULL, *value = NULL;
		_cleanup_free_ char *keystr = NULL;

		if (k && fy_node_is_alias(k)) {
			r = resolve_alias(c, k, &k);
			if (r < 0)
				return r;
		}
		if (!k || !fy_node_is_scalar(k))
			return conv_error(c, k ? k : n, EINVAL, "mapping key is not a scalar", "");
		r = convert_scalar(c, k, &key);
		if (r < 0)
			return r;
		/* JSON keys are strings: numbers and booleans keep their YAML text. */
		size_t klen;
		const char *ktext = fy_node_get_scalar(k, &klen);
		keystr =
		    json_is_string(key) ? strdup(json_string_value(key)) : strndup(ktext, klen);
		if (!keystr)
			return -ENOMEM;
		if (json_object_get(obj, keystr))
			return conv_error(c, k, EINVAL, "duplicate key ", keystr);
		r = convert(c, fy_node_pair_value(pair), depth + 1, &value);
		if (r < 0)
			return r;
		if (json_object_set_new(obj, keystr, TAKE_PTR(value)) < 0)
			return conv_error(c, k, EINVAL, "invalid key ", keystr);
	}
	*ret = TAKE_PTR(obj);
	return 0;
}

static int convert_sequence(struct conv *c, struct fy_node *n, int depth, json_t **ret)
{
	_cleanup_json_ json_t *arr = json_array();
	struct fy_node *item;
	void *it = NULL;
	int r;

	if (!arr)
		return -ENOMEM;
	while ((item = fy_node_sequence_iterate(n, &it))) {
		json_t *v = NULL;

		r = convert(c, item, depth + 1, &v);
		if (r < 0)
			return r;
		if (json_array_append_new(arr, v) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(arr);
	return 0;
}

static int convert(struct conv *c, struct fy_node *n, int depth, json_t **ret)
{
	if (!n) {
		*ret = json_null();
		return 0;
	}
	if (depth > KMM_YAML_MAX_DEPTH)
		return conv_error(c, n, E2BIG, "nesting is deeper than the limit", "");
	if (++c->nodes > KMM_YAML_MAX_NODES)
		return conv_error(c, n, E2BIG, "document expands to more nodes than the limit", "");
	if (fy_node_is_alias(n)) {
		struct fy_node *target = NULL;
		int r = resolve_alias(c, n, &target);

		return r < 0 ? r : convert(c, target, depth + 1, ret);
	}
	switch (fy_node_get_type(n)) {
	case FYNT_SCALAR:
		return convert_scalar(c, n, ret);
	case FYNT_MAPPING:
		return convert_mapping(c, n, depth, ret);
	case FYNT_SEQUENCE:
		return convert_sequence(c, n, depth, ret);
	default:
		return conv_error(c, n, EINVAL, "unknown node type", "");
	}
}

/* Collects libfyaml's diagnostics so the first one ends up in the error. */
static void diag_output(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
	struct kmm_buf *b = user;

	(void)diag;
	if (b->len == 0)
		(void)kmm_buf_append(b, buf, len);
}

static void fy_parser_destroyp(struct fy_parser **p)
{
	if (*p)
		fy_parser_destroy(*p);
}

static void fy_diag_destroyp(struct fy_diag **d)
{
	if (*d) {
		/* Collected errors hold token references that unref alone would leak. */
		fy_diag_reset_error(*d);
		fy_diag_unref(*d);
	}
}

static int parse_error(const char *source, struct fy_diag *fyd, struct kmm_buf *diag,
		       struct kmm_error **err)
{
	void *iter = NULL;
	struct fy_diag_error *first = fy_diag_errors_iterate(fyd, &iter);

	if (first && first->msg && first->line > 0 && first->column > 0)
		return kmm_error_make(err, EINVAL, "%s:%d:%d: invalid YAML: %s", source,
				      first->line, first->column, first->msg);
	if (first && first->msg)
		return kmm_error_make(err, EINVAL, "%s: invalid YAML: %s", source, first->msg);

	/*
	 * libfyaml reports "<input name>:<line>:<col>: error: <message>"; keep the
	 * position and the message, and name the input the way our caller does.
	 */
	char *msg = diag->data, *pos, *text;

	if (!msg)
		return kmm_error_make(err, EINVAL, "%s: invalid YAML", source);
	msg[strcspn(msg, "\n")] = '\0';
	text = strstr(msg, ": error: ");
	if (!text)
		return kmm_error_make(err, EINVAL, "%s: invalid YAML: %s", source, msg);
	*text = '\0';
	text += strlen(": error: ");
	/* The position is the last two ':'-separated fields before the marker. */
	pos = strrchr(msg, ':');
	if (pos && pos > msg) {
		*pos = '\0';
		char *line = strrchr(msg, ':');
		*pos = ':';
		pos = line ? line + 1 : msg;
	} else {
		pos = msg;
	}
	return kmm_error_make(err, EINVAL, "%s:%s: invalid YAML: %s", source, pos, text);
}

/*
 * libfyaml 0.7.12 frees a simple key twice when it reports an error after an
 * explicit key ("? ") whose content has a tab in the blanks after ':', e.g.
 * "? x:\t:" or "? : a: \t:"
 * (tests/fuzz/worker-config/regressions/libfyaml-double-free-explicit-key-tab*).
 * Kubernetes objects never need "? " keys, so text with both an explicit key
 * and a tab is refused whole, a superset of the crashing inputs, rather than
 * handed to the scanner.
 */
static bool explicit_key_with_tab(const char *data, size_t len)
{
	bool explicit_key = false;

	for (size_t i = 0; i < len && !explicit_key; i++)
		explicit_key = data[i] == '?' && (i + 1 == len || strchr(" \t\r\n", data[i + 1]));
	return explicit_key && memchr(data, '\t', len);
}

int kmm_yaml_parse(const char *data, size_t len, const char *source, unsigned flags,
		   json_t **ret_docs, struct kmm_error **err)
{
	_cleanup_(fy_parser_destroyp) struct fy_parser *parser = NULL;
	_cleanup_(fy_diag_destroyp) struct fy_diag *diag = NULL;
	_cleanup_json_ json_t *docs = json_array();
	_cleanup_buf_ struct kmm_buf diagbuf;
	struct fy_diag_cfg dcfg;
	struct fy_parse_cfg pcfg;
	struct fy_document *doc;
	struct conv c = { .source = source, .flags = flags, .err = err };

	kmm_buf_init(&diagbuf, 4096);
	if (!docs)
		return kmm_error_make_errno(err, ENOMEM, "%s", source);
	/*
	 * YAML is UTF-8 text, and libfyaml 0.7 can loop for ever on some truncated
	 * sequences, so refuse anything else up front. jansson validates UTF-8 when
	 * it builds a string.
	 */
	json_t *probe = json_stringn(data ? data : "", len);
	if (!probe)
		return kmm_error_make(err, EINVAL, "%s: not valid UTF-8 text", source);
	json_decref(probe);
	if (explicit_key_with_tab(data, len))
		return kmm_error_make(
		    err, EINVAL,
		    "%s: an explicit key ('? ') together with a tab character is not "
		    "supported (libfyaml 0.7.12 mishandles it): use spaces",
		    source);
	fy_diag_cfg_default(&dcfg);
	dcfg.fp = NULL;
	dcfg.output_fn = diag_output;
	dcfg.user = &diagbuf;
	dcfg.level = FYET_ERROR;
	dcfg.colorize = false;
	diag = fy_diag_create(&dcfg);
	if (!diag)
		return kmm_error_make_errno(err, ENOMEM, "%s", source);
	/*
	 * Errors about a token are collected rather than printed: printing one
	 * also draws the offending source line, and libfyaml 0.7.12 can crash
	 * doing that for a long line of tabs
	 * (tests/fuzz/worker-config/regressions/libfyaml-segv-error-display-tabs).
	 */
	fy_diag_set_collect_errors(diag, true);
	pcfg = (struct fy_parse_cfg){
		.flags = FYPCF_QUIET | FYPCF_DEFAULT_VERSION_1_2 | FYPCF_DISABLE_RECYCLING,
		.diag = diag,
	};
	parser = fy_parser_create(&pcfg);
	if (!parser)
		return kmm_error_make_errno(err, ENOMEM, "%s", source);
	if (fy_parser_set_string(parser, data, len) != 0)
		return kmm_error_make(err, EINVAL, "%s: cannot read input", source);

	while ((doc = fy_parse_load_document(parser))) {
		json_t *v = NULL;
		struct fy_node *root = fy_document_root(doc);
		int r = 0;

		if (root)
			r = convert(&c, root, 0, &v);
		fy_parse_document_destroy(parser, doc);
		if (r < 0)
			return r;
		if (!v || json_is_null(v)) {
			json_decref(v);
			continue;
		}
		if (json_array_append_new(docs, v) < 0)
			return kmm_error_make_errno(err, ENOMEM, "%s", source);
	}
	if (fy_parser_get_stream_error(parser))
		return parse_error(source, diag, &diagbuf, err);
	*ret_docs = TAKE_PTR(docs);
	return 0;
}

int kmm_yaml_parse_file(const char *path, size_t max_size, unsigned flags, json_t **ret_docs,
			struct kmm_error **err)
{
	_cleanup_free_ char *data = NULL;
	size_t len;
	int r;

	r = kmm_read_file(path, max_size, &data, &len, err);
	if (r < 0)
		return r;
	return kmm_yaml_parse(data, len, path, flags, ret_docs, err);
}
