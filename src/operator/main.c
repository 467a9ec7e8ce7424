/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>

#include "kmm/log.h"
#include "src/common/cli.h"

#define PROG "kmm-operator"

static const char help[] =
    "Usage: " PROG " [OPTIONS]\n"
    "\n"
    "Reconciles kmm.sigs.x-k8s.io Module objects into per-node state and worker pods\n"
    "that load and unload out-of-tree kernel modules.\n"
    "\n"
    "Options:\n" KMM_COMMON_OPTIONS_HELP;

int main(int argc, char **argv)
{
	int first, r;

	r = kmm_cli_parse_common(PROG, help, argc, argv, &first);
	if (r >= 0)
		return r;
	if (first < argc)
		return kmm_cli_usage_error(PROG, "unexpected argument '%s'", argv[first]);

	kmm_log(KMM_LOG_ERROR, "no reconcilers are built into this version of " PROG, NULL);
	return KMM_EXIT_FAILURE;
}
