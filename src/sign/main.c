/* SPDX-License-Identifier: Apache-2.0 */
#include <stddef.h>

#include "src/common/cli.h"

#define PROG "kmm-sign"

static const char help[] = "Usage: " PROG " [OPTIONS] COMMAND [ARGS]\n"
			   "\n"
			   "Signs kernel modules with the kernel's appended PKCS#7 signature.\n"
			   "\n"
			   "Options:\n" KMM_COMMON_OPTIONS_HELP;

static const struct kmm_cli_command commands[] = {
	{ NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return kmm_cli_dispatch(PROG, help, commands, argc, argv);
}
