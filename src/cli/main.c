/* SPDX-License-Identifier: Apache-2.0 */
/* kmmctl: tools for kmm Modules (validate, plan, status). One file per command. */
#include <stddef.h>

#include "kmm/shared-options.h"
#include "src/cli/kmmctl.h"

static const char help[] = "Usage: " PROG " [OPTIONS] COMMAND [ARGS]\n"
			   "\n"
			   "Validates kmm Modules and shows what each node would get.\n"
			   "\n"
			   "Commands:\n"
			   "  validate   check manifests with the webhook's rules, offline\n"
			   "  plan       show the mapping, image, build/sign steps and modprobe\n"
			   "             commands for each Module and node or kernel\n"
			   "  status     show what is loaded and pending per Module and node\n"
			   "             (live cluster)\n"
			   "\n"
			   "Run '" PROG " COMMAND --help' for the options of a command.\n";

static const struct kmm_option_group groups[] = {
	{ .title = "\nOptions:\n", .options = kmm_options_common },
	{ 0 },
};

static const struct kmm_options spec = { .prog = PROG, .usage = help, .groups = groups };

static const struct kmm_command commands[] = {
	{ "validate", "check manifests offline", kmmctl_validate },
	{ "plan", "show what KMM would do per node or kernel", kmmctl_plan },
	{ "status", "show what is loaded and pending per Module and node", kmmctl_status },
	{ NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return kmm_options_dispatch(&spec, commands, argc, argv);
}
