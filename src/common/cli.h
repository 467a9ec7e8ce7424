/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What every kmm binary does the same way at its boundary: --help, --version,
 * usage errors (exit 2), and the --log-level / --log-format options.
 *
 * Exit codes shared by all binaries: 0 success, 1 failure, 2 usage error.
 *
 * Only kmm-operator still parses its command line with this; the other binaries
 * describe their options in tables for kmm/options.h, and this file goes once
 * the operator does too.
 */
#ifndef KMM_SRC_COMMON_CLI_H
#define KMM_SRC_COMMON_CLI_H

#include <getopt.h>
#include <stdbool.h>

#include "kmm/macro.h"

#define KMM_EXIT_OK 0
#define KMM_EXIT_FAILURE 1
#define KMM_EXIT_USAGE 2

/* Long-option values shared by all binaries; binaries number theirs from 0x200. */
enum {
	KMM_OPT_HELP = 'h',
	KMM_OPT_VERSION = 0x100,
	KMM_OPT_LOG_LEVEL,
	KMM_OPT_LOG_FORMAT,
};

/* clang-format off */
#define KMM_COMMON_LONG_OPTIONS \
	{ "help", no_argument, NULL, KMM_OPT_HELP }, \
	{ "version", no_argument, NULL, KMM_OPT_VERSION }, \
	{ "log-level", required_argument, NULL, KMM_OPT_LOG_LEVEL }, \
	{ "log-format", required_argument, NULL, KMM_OPT_LOG_FORMAT }
/* clang-format on */

#define KMM_COMMON_OPTIONS_HELP                                                                    \
	"  -h, --help               show this help and exit\n"                                     \
	"      --version            show the version and exit\n"                                   \
	"      --log-level LEVEL    debug, info, warn or error (default info)\n"                   \
	"      --log-format FORMAT  text or json (default text)\n"

/* Prints "NAME VERSION" to stdout. */
void kmm_cli_print_version(const char *name);

/* Prints "NAME: message" and a hint to run --help, to stderr. Returns KMM_EXIT_USAGE. */
int kmm_cli_usage_error(const char *name, const char *fmt, ...) _printf_(2, 3);

/*
 * Handles one of the common options. Returns 1 if it was handled and the
 * program should go on, 0 if `opt` is not a common option, or an exit code
 * (negated, so -KMM_EXIT_OK for --version) when the program should exit now.
 * --help is not handled here: each binary prints its own.
 */
int kmm_cli_common_option(const char *name, int opt, const char *arg);

/* The diagnostic for getopt's '?' result (unknown option or missing argument). */
int kmm_cli_bad_option(const char *name, int argc, char **argv);

/*
 * Subcommand table for binaries shaped as `PROG [GLOBAL OPTIONS] COMMAND [ARGS]`.
 * A command's run() gets argv starting at the command name and returns an exit
 * code. `help` is the program's full --help text.
 */
struct kmm_cli_command {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv);
};

int kmm_cli_dispatch(const char *prog, const char *help, const struct kmm_cli_command *commands,
		     int argc, char **argv);

/*
 * Parses only the common options (for a program or command that has no others)
 * and stores the index of the first operand in *ret_optind. Returns -1 to go on,
 * or the exit code to exit with.
 */
int kmm_cli_parse_common(const char *prog, const char *help, int argc, char **argv,
			 int *ret_optind);
#endif
