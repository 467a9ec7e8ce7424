// SPDX-License-Identifier: GPL-2.0
/*
 * Built like the others; tests/vm/worker.t then rewrites its vermagic to
 * another kernel release and drops its symbol versions, which is what a module
 * built for a different kernel looks like to this one.
 */
#include <linux/module.h>

static int __init vmk_wrong_init(void)
{
	pr_info("vmk_wrong: loaded (should not happen)\n");
	return 0;
}

static void __exit vmk_wrong_exit(void)
{
}

module_init(vmk_wrong_init);
module_exit(vmk_wrong_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm VM test: stands for a module built for another kernel");
