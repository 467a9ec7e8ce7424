// SPDX-License-Identifier: GPL-2.0
/* A real module for tests/integration/sign/sign-file.t to sign; never loaded. */
#include <linux/init.h>
#include <linux/module.h>

static int __init kmm_sign_test_init(void)
{
	return 0;
}

static void __exit kmm_sign_test_exit(void)
{
}

module_init(kmm_sign_test_init);
module_exit(kmm_sign_test_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm-sign test module");
