/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The worker's config file (`kmm-worker kmod load|unload CONFIG`): the text
 * part of reading it, in the library so that tests/fuzz/worker-config runs the
 * very code kmm-worker does.
 */
#include <errno.h>
#include <jansson.h>

#include "kmm/api.h"

/*
 * The operator writes the config as JSON, which is YAML too. Decoding JSON
 * with jansson keeps libfyaml's scanner out of every load: it is most of the
 * code the worker runs that modprobe does not, and under QEMU's TCG every new
 * instruction costs a translation (bench/worker). Returns 1 when done, 0 to
 * let the YAML parser decide (not JSON, or something jansson refuses: the YAML
 * parser gives the error message, so both paths accept the same files).
 */
static int config_from_json(const char *text, size_t len, const char *origin,
			    struct kmm_module_config **ret_cfg, struct kmm_error **err)
{
	json_t *root;
	size_t i = 0;
	int r;

	/* Bounded by len: the text need not be NUL-terminated. */
	while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
		i++;
	if (i >= len || text[i] != '{')
		return 0;
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	if (!root)
		return 0;
	r = kmm_module_config_from_json(root, "", KMM_API_STRICT | KMM_API_YAML_BOOLS, ret_cfg,
					err);
	json_decref(root);
	if (r < 0)
		return kmm_error_wrap(err, "%s", origin);
	return 1;
}

int kmm_worker_config_check(const struct kmm_module_config *cfg, const char *origin,
			    struct kmm_error **err)
{
	const char *name = cfg->modprobe.module_name;

	/*
	 * Without either the worker has no module to name: the loading code
	 * would pass a NULL name on to libkmod and the logs.
	 */
	if ((!name || !*name) && !cfg->modprobe.raw_args)
		return kmm_error_make(err, EINVAL,
				      "%s: modprobe: neither moduleName nor rawArgs is set: "
				      "nothing to load or unload",
				      origin ? origin : "config");
	return 0;
}

int kmm_worker_config_parse(const char *text, size_t len, const char *origin,
			    struct kmm_module_config **ret_cfg, struct kmm_error **err)
{
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *cfg = NULL;
	const char *o = origin ? origin : "config";
	int r;

	r = config_from_json(text, len, o, &cfg, err);
	if (r == 0)
		r = kmm_module_config_parse(text, len, o, &cfg, err);
	if (r < 0)
		return r;
	r = kmm_worker_config_check(cfg, o, err);
	if (r < 0)
		return r;
	*ret_cfg = TAKE_PTR(cfg);
	return 0;
}
