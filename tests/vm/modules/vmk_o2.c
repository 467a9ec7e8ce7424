// SPDX-License-Identifier: GPL-2.0
/* No symbol dependency: only modulesLoadingOrder decides when it loads. */
#include <linux/module.h>

static int __init vmk_o2_init(void)
{
	pr_info("vmk_o2: loaded\n");
	return 0;
}

static void __exit vmk_o2_exit(void)
{
	pr_info("vmk_o2: unloaded\n");
}

module_init(vmk_o2_init);
module_exit(vmk_o2_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm VM test: loading order");
