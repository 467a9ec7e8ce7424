// SPDX-License-Identifier: GPL-2.0
/* Exports a symbol that vmk_b uses, so loading vmk_b needs vmk_a first. */
#include <linux/module.h>

int vmk_a_add(int a, int b)
{
	pr_info("vmk_a: vmk_a_add(%d, %d) called\n", a, b);
	return a + b;
}
EXPORT_SYMBOL_GPL(vmk_a_add);

static int __init vmk_a_init(void)
{
	pr_info("vmk_a: loaded\n");
	return 0;
}

static void __exit vmk_a_exit(void)
{
	pr_info("vmk_a: unloaded\n");
}

module_init(vmk_a_init);
module_exit(vmk_a_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm VM test: exports vmk_a_add");
