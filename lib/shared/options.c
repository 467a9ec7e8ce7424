/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-log.h"
#include "kmm/shared-options.h"
#include "kmm/shared-strv.h"
#include "version.h"

#define DEFAULT_HELP_COLUMN 27
/* getopt_long() returns this plus the option's index for a long option. */
#define LONG_BASE 0x1000

static int parse_log_level(const struct kmm_option *o, const char *arg, void *ctx,
			   struct kmm_error **err)
{
	enum kmm_log_level level;

	(void)o;
	(void)ctx;
	(void)err;
	if (kmm_log_level_from_string(arg, &level) < 0)
		return -EINVAL;
	kmm_log_set_level(level);
	return 0;
}

static int parse_log_format(const struct kmm_option *o, const char *arg, void *ctx,
			    struct kmm_error **err)
{
	enum kmm_log_format format;

	(void)o;
	(void)ctx;
	(void)err;
	if (kmm_log_format_from_string(arg, &format) < 0)
		return -EINVAL;
	kmm_log_set_format(format);
	return 0;
}

const struct kmm_option kmm_options_common[] = {
	{ "help", 'h', KMM_OPTION_HELP, NULL, 0, NULL, "show this help and exit" },
	{ "version", 0, KMM_OPTION_VERSION, NULL, 0, NULL, "show the version and exit" },
	{ "log-level", 0, KMM_OPTION_CALL, "LEVEL", 0, parse_log_level,
	  "debug, info, warn or error (default info)" },
	{ "log-format", 0, KMM_OPTION_CALL, "FORMAT", 0, parse_log_format,
	  "text or json (default text)" },
	{ 0 },
};

int kmm_options_usage_error(const char *prog, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", prog);
	return KMM_EXIT_USAGE;
}

static bool table_end(const struct kmm_option *o)
{
	return !o->name && !o->short_name;
}

static void print_option(const struct kmm_option *o, int column)
{
	char head[128];
	int n;

	if (o->short_name)
		n = snprintf(head, sizeof(head), "  -%c, --%s%s%s", o->short_name, o->name,
			     o->arg ? " " : "", o->arg ? o->arg : "");
	else
		n = snprintf(head, sizeof(head), "      --%s%s%s", o->name, o->arg ? " " : "",
			     o->arg ? o->arg : "");
	/* A head too long for the column keeps two spaces before its text. */
	printf("%s%*s", head, n + 2 <= column ? column - n : 2, "");
	for (const char *line = o->help; *line;) {
		size_t len = strcspn(line, "\n");

		if (line != o->help)
			printf("%*s", column, "");
		printf("%.*s\n", (int)len, line);
		line += len;
		if (*line == '\n')
			line++;
	}
}

void kmm_options_print_help(const struct kmm_options *spec)
{
	if (spec->help)
		spec = spec->help;
	fputs(spec->usage, stdout);
	for (const struct kmm_option_group *g = spec->groups; g && g->options; g++) {
		if (g->title)
			fputs(g->title, stdout);
		for (const struct kmm_option *o = g->options; !table_end(o); o++)
			if (o->help && o->name)
				print_option(o, g->column ? g->column : DEFAULT_HELP_COLUMN);
	}
	if (spec->footer)
		fputs(spec->footer, stdout);
}

/* getopt_long()'s arrays for the groups spec parses. */
struct table {
	size_t n_long;
	const struct kmm_option **by_long; /* getopt's long index -> option */
	const struct kmm_option *by_short[256];
	struct option *longopts;
	char *shortopts;
};

static void table_done(struct table *t)
{
	free(t->by_long);
	free(t->longopts);
	free(t->shortopts);
}

static int table_build(const struct kmm_options *spec, struct table *t)
{
	size_t n = 0, s = 0;

	for (const struct kmm_option_group *g = spec->groups; g && g->options; g++)
		for (const struct kmm_option *o = g->options; !table_end(o) && !g->help_only; o++)
			n++;
	t->by_long = calloc(n + 1, sizeof(*t->by_long));
	t->longopts = calloc(n + 1, sizeof(*t->longopts));
	/* "+:" and up to "x:" per option. */
	t->shortopts = calloc(2 * n + 3, 1);
	if (!t->by_long || !t->longopts || !t->shortopts)
		return -ENOMEM;
	if (spec->stop_at_operand)
		t->shortopts[s++] = '+';
	/* A leading ':' makes a missing argument ':' rather than '?', and silences getopt. */
	t->shortopts[s++] = ':';
	for (const struct kmm_option_group *g = spec->groups; g && g->options; g++) {
		if (g->help_only)
			continue;
		for (const struct kmm_option *o = g->options; !table_end(o); o++) {
			if (o->name) {
				t->by_long[t->n_long] = o;
				t->longopts[t->n_long] =
				    (struct option){ o->name,
						     o->arg ? required_argument : no_argument, NULL,
						     LONG_BASE + (int)t->n_long };
				t->n_long++;
			}
			if (o->short_name) {
				t->by_short[(unsigned char)o->short_name] = o;
				t->shortopts[s++] = o->short_name;
				if (o->arg)
					t->shortopts[s++] = ':';
			}
		}
	}
	return 0;
}

/* The option getopt_long() returned c for, or NULL. */
static const struct kmm_option *table_lookup(const struct table *t, int c)
{
	if (c >= LONG_BASE && (size_t)(c - LONG_BASE) < t->n_long)
		return t->by_long[c - LONG_BASE];
	if (c > 0 && c < 256)
		return t->by_short[c];
	return NULL;
}

/* The usage error for getopt's '?' (unknown option, or an argument given to a flag). */
static int bad_option(const char *prog, const struct table *t, char **argv)
{
	const struct kmm_option *o = table_lookup(t, optopt);

	if (o && optopt >= LONG_BASE)
		return kmm_options_usage_error(prog, "option '--%s' doesn't allow an argument",
					       o->name);
	if (optopt > 0 && optopt < 256)
		return kmm_options_usage_error(prog, "invalid option -- '%c'", optopt);
	return kmm_options_usage_error(prog, "unrecognized option '%s'", argv[optind - 1]);
}

/* The usage error for getopt's ':' (an option's argument is missing). */
static int missing_argument(const char *prog, const struct table *t)
{
	const struct kmm_option *o = table_lookup(t, optopt);

	if (optopt >= LONG_BASE && o)
		return kmm_options_usage_error(prog, "option '--%s' requires an argument", o->name);
	return kmm_options_usage_error(prog, "option requires an argument -- '%c'", optopt);
}

/* Stores one option's value. Returns -1 to go on, or an exit code. */
static int apply(const struct kmm_options *spec, const struct kmm_option *o, const char *arg,
		 void *ctx)
{
	_cleanup_error_ struct kmm_error *err = NULL;
	void *field = ctx ? (char *)ctx + o->offset : NULL;
	int r;

	if (!field && (o->type == KMM_OPTION_FLAG || o->type == KMM_OPTION_STRING ||
		       o->type == KMM_OPTION_STRV)) {
		/* A table that stores values is parsed with somewhere to store them. */
		fprintf(stderr, "%s: --%s: no context to store it in\n", spec->prog,
			o->name ? o->name : "?");
		return KMM_EXIT_FAILURE;
	}
	switch (o->type) {
	case KMM_OPTION_FLAG:
		*(bool *)field = true;
		return -1;
	case KMM_OPTION_STRING:
		*(const char **)field = arg;
		return -1;
	case KMM_OPTION_STRV:
		if (kmm_strv_push((char ***)field, arg) < 0) {
			fprintf(stderr, "%s: out of memory\n", spec->prog);
			return KMM_EXIT_FAILURE;
		}
		return -1;
	case KMM_OPTION_CALL:
		r = o->parse(o, arg, ctx, &err);
		if (r >= 0)
			return -1;
		if (r == -ENOMEM) {
			fprintf(stderr, "%s: out of memory\n", spec->prog);
			return KMM_EXIT_FAILURE;
		}
		if (err)
			return kmm_options_usage_error(spec->prog, "%s", kmm_error_message(err));
		return kmm_options_usage_error(spec->prog, "invalid --%s '%s'", o->name,
					       arg ? arg : "");
	case KMM_OPTION_HELP:
		kmm_options_print_help(spec);
		return KMM_EXIT_OK;
	case KMM_OPTION_VERSION:
		printf("%s %s\n", spec->prog, KMM_VERSION);
		return KMM_EXIT_OK;
	}
	return -1;
}

int kmm_options_parse(const struct kmm_options *spec, int argc, char **argv, void *ctx,
		      int *ret_optind)
{
	struct table t = { 0 };
	int c, r = -1;

	if (table_build(spec, &t) < 0) {
		table_done(&t);
		fprintf(stderr, "%s: out of memory\n", spec->prog);
		return KMM_EXIT_FAILURE;
	}
	/* 0, not 1: getopt also forgets what it kept of the previous parse. */
	optind = 0;
	opterr = 0;
	while (r < 0 && (c = getopt_long(argc, argv, t.shortopts, t.longopts, NULL)) != -1) {
		const struct kmm_option *o;

		if (c == '?')
			r = bad_option(spec->prog, &t, argv);
		else if (c == ':')
			r = missing_argument(spec->prog, &t);
		else if ((o = table_lookup(&t, c)))
			r = apply(spec, o, optarg, ctx);
	}
	table_done(&t);
	if (r < 0)
		*ret_optind = optind;
	return r;
}

int kmm_options_dispatch(const struct kmm_options *spec, const struct kmm_command *commands,
			 int argc, char **argv)
{
	struct kmm_options program = *spec;
	int first = 0, r;

	program.stop_at_operand = true;
	if (!program.help)
		program.help = spec;
	r = kmm_options_parse(&program, argc, argv, NULL, &first);
	if (r >= 0)
		return r;
	if (first >= argc)
		return kmm_options_usage_error(spec->prog, "missing command");
	for (const struct kmm_command *c = commands; c->name; c++) {
		if (strcmp(c->name, argv[first]) == 0)
			return c->run(argc - first, argv + first);
	}
	return kmm_options_usage_error(spec->prog, "unknown command '%s'", argv[first]);
}
