/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-worker's config file: the text the worker reads (JSON first, then YAML),
 * decoded strictly. An accepted config names a module or has rawArgs, and
 * serializes, re-parses and serializes again to the same JSON.
 */
#include <stdlib.h>
#include <string.h>

#include "kmm/api.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kmm_module_config *cfg = NULL, *again = NULL;
	struct kmm_error *err = NULL;
	json_t *a, *b;
	char *text;

	if (size > 256 * 1024)
		return 0;
	if (kmm_worker_config_parse((const char *)data, size, "fuzz", &cfg, &err) < 0) {
		if (!err || !strstr(kmm_error_message(err), "fuzz"))
			abort(); /* a failure always explains itself and names the file */
		kmm_error_free(err);
		return 0;
	}
	if ((!cfg->modprobe.module_name || !*cfg->modprobe.module_name) && !cfg->modprobe.raw_args)
		abort(); /* the worker would log and load a NULL name */
	if (!cfg->modprobe.dir_name || !cfg->kernel_version || !cfg->container_image ||
	    !cfg->image_pull_policy)
		abort(); /* required or defaulted: the worker uses them unchecked */
	a = kmm_module_config_to_json(cfg);
	if (!a)
		abort();
	text = json_dumps(a, JSON_COMPACT);
	if (!text || kmm_worker_config_parse(text, strlen(text), "again", &again, NULL) < 0)
		abort(); /* what the operator writes the worker must read */
	b = kmm_module_config_to_json(again);
	if (!b || !json_equal(a, b))
		abort();
	free(text);
	json_decref(a);
	json_decref(b);
	kmm_module_config_free(again);
	kmm_module_config_free(cfg);
	return 0;
}
