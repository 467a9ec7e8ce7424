// SPDX-License-Identifier: GPL-2.0
/* Installed in the guest's own /lib/modules/<kernel> to stand for an in-tree driver. */
#include <linux/module.h>

static int __init vmk_intree_init(void)
{
	pr_info("vmk_intree: loaded\n");
	return 0;
}

static void __exit vmk_intree_exit(void)
{
	pr_info("vmk_intree: unloaded\n");
}

module_init(vmk_intree_init);
module_exit(vmk_intree_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm VM test: stands for an in-tree module");
