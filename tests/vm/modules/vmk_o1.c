// SPDX-License-Identifier: GPL-2.0
/* No symbol dependency: only modulesLoadingOrder decides when it loads. */
#include <linux/module.h>

static int __init vmk_o1_init(void)
{
	pr_info("vmk_o1: loaded\n");
	return 0;
}

static void __exit vmk_o1_exit(void)
{
	pr_info("vmk_o1: unloaded\n");
}

module_init(vmk_o1_init);
module_exit(vmk_o1_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm VM test: loading order");
