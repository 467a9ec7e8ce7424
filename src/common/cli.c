/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kmm/log.h"
#include "src/common/cli.h"
#include "version.h"

void kmm_cli_print_version(const char *name)
{
	printf("%s %s\n", name, KMM_VERSION);
}

int kmm_cli_usage_error(const char *name, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", name);
	return KMM_EXIT_USAGE;
}

int kmm_cli_common_option(const char *name, int opt, const char *arg)
{
	enum kmm_log_level level;
	enum kmm_log_format format;

	switch (opt) {
	case KMM_OPT_VERSION:
		kmm_cli_print_version(name);
		return -KMM_EXIT_OK;
	case KMM_OPT_LOG_LEVEL:
		if (kmm_log_level_from_string(arg, &level) < 0)
			return -kmm_cli_usage_error(name, "invalid --log-level '%s'", arg);
		kmm_log_set_level(level);
		return 1;
	case KMM_OPT_LOG_FORMAT:
		if (kmm_log_format_from_string(arg, &format) < 0)
			return -kmm_cli_usage_error(name, "invalid --log-format '%s'", arg);
		kmm_log_set_format(format);
		return 1;
	default:
		return 0;
	}
}

int kmm_cli_bad_option(const char *name, int argc, char **argv)
{
	/* getopt already printed what was wrong; add the hint and the exit code. */
	(void)argc;
	(void)argv;
	fprintf(stderr, "Try '%s --help' for more information.\n", name);
	return KMM_EXIT_USAGE;
}

int kmm_cli_parse_common(const char *prog, const char *help, int argc, char **argv, int *ret_optind)
{
	static const struct option options[] = { KMM_COMMON_LONG_OPTIONS, { 0 } };
	int opt, r;

	/* '+' stops at the first operand so subcommands keep their own options. */
	optind = 0;
	while ((opt = getopt_long(argc, argv, "+h", options, NULL)) != -1) {
		if (opt == KMM_OPT_HELP) {
			fputs(help, stdout);
			return KMM_EXIT_OK;
		}
		if (opt == '?')
			return kmm_cli_bad_option(prog, argc, argv);
		r = kmm_cli_common_option(prog, opt, optarg);
		if (r <= 0)
			return -r;
	}
	*ret_optind = optind;
	return -1;
}

int kmm_cli_dispatch(const char *prog, const char *help, const struct kmm_cli_command *commands,
		     int argc, char **argv)
{
	int first = 0, r;

	r = kmm_cli_parse_common(prog, help, argc, argv, &first);
	if (r >= 0)
		return r;
	if (first >= argc)
		return kmm_cli_usage_error(prog, "missing command");
	for (const struct kmm_cli_command *c = commands; c->name; c++) {
		if (strcmp(c->name, argv[first]) == 0)
			return c->run(argc - first, argv + first);
	}
	return kmm_cli_usage_error(prog, "unknown command '%s'", argv[first]);
}
