// SPDX-License-Identifier: GPL-2.0
/* Requests a firmware file in init and fails to load without it. */
#include <linux/firmware.h>
#include <linux/module.h>

static int __init vmk_fw_init(void)
{
	const struct firmware *fw;
	int err = request_firmware(&fw, "vmk-test.bin", NULL);

	if (err) {
		pr_err("vmk_fw: request_firmware(vmk-test.bin) failed: %d\n", err);
		return err;
	}
	pr_info("vmk_fw: got vmk-test.bin, %zu bytes, starts with '%.16s'\n", fw->size,
		(const char *)fw->data);
	release_firmware(fw);
	return 0;
}

static void __exit vmk_fw_exit(void)
{
	pr_info("vmk_fw: unloaded\n");
}

module_init(vmk_fw_init);
module_exit(vmk_fw_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm VM test: requests firmware vmk-test.bin");
