// SPDX-License-Identifier: GPL-2.0
/* Uses vmk_a's symbol and takes parameters. */
#include <linux/module.h>
#include <linux/moduleparam.h>

extern int vmk_a_add(int a, int b);

static int answer = 40;
module_param(answer, int, 0444);
MODULE_PARM_DESC(answer, "a number handed to vmk_a_add");

static char *greeting = "hello";
module_param(greeting, charp, 0444);
MODULE_PARM_DESC(greeting, "a string parameter");

static int __init vmk_b_init(void)
{
	pr_info("vmk_b: loaded, vmk_a_add(%d, 2) = %d, greeting '%s'\n", answer,
		vmk_a_add(answer, 2), greeting);
	return 0;
}

static void __exit vmk_b_exit(void)
{
	pr_info("vmk_b: unloaded\n");
}

module_init(vmk_b_init);
module_exit(vmk_b_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm VM test: depends on vmk_a, has parameters");
