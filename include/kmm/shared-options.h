/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command lines from tables. A binary describes each option once (long name,
 * short letter, argument, help text, where the value goes); kmm_options_parse()
 * builds getopt_long()'s arrays from the table and kmm_options_print_help() the
 * --help text, so the two cannot drift apart, and every binary reports an
 * unknown option or a missing argument the same way:
 *
 *     kmm-sign: unrecognized option '--nope'
 *     Try 'kmm-sign --help' for more information.
 *
 * This runs at a binary's boundary: it is the one part of lib/ that writes to
 * stdout (--help, --version) and stderr (usage errors).
 *
 * Exit codes shared by all binaries: 0 success, 1 failure, 2 usage error.
 */
#ifndef KMM_OPTIONS_H
#define KMM_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "kmm/shared-error.h"
#include "kmm/shared-macro.h"

#define KMM_EXIT_OK 0
#define KMM_EXIT_FAILURE 1
#define KMM_EXIT_USAGE 2

enum kmm_option_type {
	KMM_OPTION_FLAG,    /* the bool at offset becomes true; takes no argument */
	KMM_OPTION_STRING,  /* the const char * at offset points at the argument (in argv) */
	KMM_OPTION_STRV,    /* the argument is appended to the char ** (strv) at offset */
	KMM_OPTION_CALL,    /* parse() is called, with the argument or NULL */
	KMM_OPTION_HELP,    /* prints the --help text; parsing ends with KMM_EXIT_OK */
	KMM_OPTION_VERSION, /* prints "PROG VERSION"; parsing ends with KMM_EXIT_OK */
};

struct kmm_option {
	const char *name; /* long name without "--", or NULL: short only */
	char short_name;  /* 0: none; an entry with neither name ends a table */
	enum kmm_option_type type;
	const char *arg; /* the argument's name in --help ("FILE"); NULL: takes none */
	size_t offset;	 /* of the field in ctx (FLAG, STRING, STRV; a CALL's parse() may use it) */
	/*
	 * CALL: handles the option (arg is NULL for one without an argument).
	 * Returns 0, or a negative errno with *err saying what is wrong with the
	 * argument (a usage error, or a failure for ENOMEM). Without a message
	 * the error reads "invalid --NAME 'ARG'".
	 */
	int (*parse)(const struct kmm_option *o, const char *arg, void *ctx,
		     struct kmm_error **err);
	/*
	 * --help text: lines separated by '\n', indented to the group's column.
	 * NULL (and every short-only option): not listed.
	 */
	const char *help;
};

/* A titled run of options in --help. */
struct kmm_option_group {
	const char *title; /* printed before the options as it is (its own '\n's), or NULL */
	const struct kmm_option *options; /* NULL ends the list of groups */
	int column;			  /* where help texts start; 0: 27 */
	bool help_only;			  /* listed in --help but not parsed at this level */
};

struct kmm_options {
	const char *prog;  /* "kmm-sign": the name in messages */
	const char *usage; /* the start of --help, before the groups */
	const struct kmm_option_group *groups;
	const char *footer; /* the end of --help, or NULL */
	/* Options end at the first operand (a command name follows with its own options). */
	bool stop_at_operand;
	/* What --help prints, if not this (a command shows its program's help). */
	const struct kmm_options *help;
};

/*
 * --help, --version, --log-level LEVEL and --log-format FORMAT: every binary
 * has them (the last two set lib/shared/log's level and format).
 */
extern const struct kmm_option kmm_options_common[];

/*
 * Parses argv's options by spec; values go into ctx (offsets and parse()
 * refer to it). Returns -1 to go on, the operands starting at *ret_optind, or
 * the exit code to exit with: KMM_EXIT_OK after --help or --version,
 * KMM_EXIT_USAGE after a usage error (already reported), KMM_EXIT_FAILURE when
 * out of memory. Resets getopt, so a command may parse again after its program.
 */
int kmm_options_parse(const struct kmm_options *spec, int argc, char **argv, void *ctx,
		      int *ret_optind);

/* Prints spec's --help text to stdout. */
void kmm_options_print_help(const struct kmm_options *spec);

/* Prints "PROG: message" and a hint to run --help, to stderr. Returns KMM_EXIT_USAGE. */
int kmm_options_usage_error(const char *prog, const char *fmt, ...) _printf_(2, 3);

/*
 * Binaries shaped as `PROG [OPTIONS] COMMAND [ARGS]`: a command's run() gets
 * argv from its name on and returns the exit code.
 */
struct kmm_command {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv);
};

/*
 * Parses the program's options (spec, with stop_at_operand implied), then runs
 * the command named by the first operand. Returns the exit code.
 */
int kmm_options_dispatch(const struct kmm_options *spec, const struct kmm_command *commands,
			 int argc, char **argv);

#endif
