/* SPDX-License-Identifier: Apache-2.0 */
/* Strict decoding of the worker's ModuleConfig (see include/kmm/worker.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/json.h"
#include "kmm/strv.h"
#include "kmm/worker.h"
#include "kmm/yaml.h"

struct dec {
	const char *source;
	struct kmm_error **err;
};

static int bad_type(struct dec *d, const char *path, const char *want)
{
	return kmm_error_make(d->err, EINVAL, "%s: %s must be %s", d->source, path, want);
}

static int get_string(struct dec *d, json_t *v, const char *path, char **ret)
{
	char *s;

	if (json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return bad_type(d, path, "a string");
	s = strdup(json_string_value(v));
	if (!s)
		return kmm_error_make(d->err, ENOMEM, "out of memory");
	free(*ret);
	*ret = s;
	return 0;
}

static int get_bool(struct dec *d, json_t *v, const char *path, bool *ret)
{
	if (json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return bad_type(d, path, "true or false");
	*ret = json_is_true(v);
	return 0;
}

/* A list of strings; null leaves it absent (NULL), [] makes it empty. */
static int get_strv(struct dec *d, json_t *v, const char *path, char ***ret)
{
	_cleanup_strv_free_ char **out = NULL;
	size_t i;
	json_t *e;

	if (json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return bad_type(d, path, "a list of strings");
	if (kmm_strv_split("", " ", &out) < 0)
		return kmm_error_make(d->err, ENOMEM, "out of memory");
	json_array_foreach(v, i, e) {
		if (!json_is_string(e))
			return kmm_error_make(d->err, EINVAL, "%s: %s[%zu] must be a string",
					      d->source, path, i);
		if (kmm_strv_push(&out, json_string_value(e)) < 0)
			return kmm_error_make(d->err, ENOMEM, "out of memory");
	}
	kmm_strv_free(*ret);
	*ret = TAKE_PTR(out);
	return 0;
}

static int unknown_key(struct dec *d, const char *path, const char *key)
{
	return kmm_error_make(d->err, EINVAL, "%s: unknown field \"%s%s%s\"", d->source, path,
			      *path ? "." : "", key);
}

static int get_args(struct dec *d, json_t *v, const char *path, struct kmm_modprobe_args *a)
{
	const char *key;
	json_t *val;
	char sub[64];
	int r;

	if (json_is_null(v))
		return 0;
	if (!json_is_object(v))
		return bad_type(d, path, "a mapping with load and unload");
	a->set = true;
	json_object_foreach((json_t *)v, key, val) {
		snprintf(sub, sizeof(sub), "%s.%s", path, key);
		if (strcmp(key, "load") == 0)
			r = get_strv(d, val, sub, &a->load);
		else if (strcmp(key, "unload") == 0)
			r = get_strv(d, val, sub, &a->unload);
		else
			r = unknown_key(d, path, key);
		if (r < 0)
			return r;
	}
	return 0;
}

static int get_modprobe(struct dec *d, json_t *v, struct kmm_worker_config *c)
{
	const char *key;
	json_t *val;
	int r;

	if (json_is_null(v))
		return 0;
	if (!json_is_object(v))
		return bad_type(d, "modprobe", "a mapping");
	json_object_foreach((json_t *)v, key, val) {
		if (strcmp(key, "moduleName") == 0)
			r = get_string(d, val, "modprobe.moduleName", &c->modprobe.module_name);
		else if (strcmp(key, "parameters") == 0)
			r = get_strv(d, val, "modprobe.parameters", &c->modprobe.parameters);
		else if (strcmp(key, "dirName") == 0)
			r = get_string(d, val, "modprobe.dirName", &c->modprobe.dir_name);
		else if (strcmp(key, "args") == 0)
			r = get_args(d, val, "modprobe.args", &c->modprobe.args);
		else if (strcmp(key, "rawArgs") == 0)
			r = get_args(d, val, "modprobe.rawArgs", &c->modprobe.raw_args);
		else if (strcmp(key, "firmwarePath") == 0)
			r = get_string(d, val, "modprobe.firmwarePath", &c->modprobe.firmware_path);
		else if (strcmp(key, "modulesLoadingOrder") == 0)
			r = get_strv(d, val, "modprobe.modulesLoadingOrder",
				     &c->modprobe.modules_loading_order);
		else
			r = unknown_key(d, "modprobe", key);
		if (r < 0)
			return r;
	}
	return 0;
}

static int validate(struct dec *d, struct kmm_worker_config *c)
{
	if (!c->modprobe.module_name || !*c->modprobe.module_name) {
		if (!c->modprobe.raw_args.set || !c->modprobe.raw_args.load ||
		    !c->modprobe.raw_args.unload)
			return kmm_error_make(d->err, EINVAL,
					      "%s: modprobe.moduleName is required unless "
					      "modprobe.rawArgs has both load and unload",
					      d->source);
	}
	if (c->modprobe.modules_loading_order && c->modprobe.modules_loading_order[0] &&
	    c->modprobe.module_name &&
	    strcmp(c->modprobe.modules_loading_order[0], c->modprobe.module_name) != 0)
		return kmm_error_make(d->err, EINVAL,
				      "%s: modprobe.modulesLoadingOrder must start with "
				      "moduleName '%s'",
				      d->source, c->modprobe.module_name);
	if (!c->modprobe.dir_name || !*c->modprobe.dir_name) {
		free(c->modprobe.dir_name);
		c->modprobe.dir_name = strdup("/opt");
		if (!c->modprobe.dir_name)
			return kmm_error_make(d->err, ENOMEM, "out of memory");
	}
	return 0;
}

int kmm_worker_config_from_json(const json_t *doc, const char *source,
				struct kmm_worker_config **ret_cfg, struct kmm_error **err)
{
	_cleanup_worker_config_ struct kmm_worker_config *c = NULL;
	struct dec d = { source, err };
	const char *key;
	json_t *val;
	int r;

	if (!json_is_object(doc))
		return kmm_error_make(err, EINVAL, "%s: the config must be a mapping", source);
	c = calloc(1, sizeof(*c));
	if (!c)
		return kmm_error_make(err, ENOMEM, "out of memory");
	json_object_foreach((json_t *)doc, key, val) {
		if (strcmp(key, "kernelVersion") == 0)
			r = get_string(&d, val, key, &c->kernel_version);
		else if (strcmp(key, "containerImage") == 0)
			r = get_string(&d, val, key, &c->container_image);
		else if (strcmp(key, "imagePullPolicy") == 0)
			r = get_string(&d, val, key, &c->image_pull_policy);
		else if (strcmp(key, "insecurePull") == 0)
			r = get_bool(&d, val, key, &c->insecure_pull);
		else if (strcmp(key, "inTreeModulesToRemove") == 0)
			r = get_strv(&d, val, key, &c->in_tree_modules_to_remove);
		else if (strcmp(key, "inTreeModuleToRemove") == 0)
			r = get_string(&d, val, key, &c->in_tree_module_to_remove);
		else if (strcmp(key, "modprobe") == 0)
			r = get_modprobe(&d, val, c);
		else
			r = unknown_key(&d, "", key);
		if (r < 0)
			return r;
	}
	r = validate(&d, c);
	if (r < 0)
		return r;
	*ret_cfg = TAKE_PTR(c);
	return 0;
}

int kmm_worker_config_parse(const char *data, size_t len, const char *source,
			    struct kmm_worker_config **ret_cfg, struct kmm_error **err)
{
	_cleanup_json_ json_t *docs = NULL;
	int r;

	r = kmm_yaml_parse(data, len, source, 0, &docs, err);
	if (r < 0)
		return r;
	if (json_array_size(docs) != 1)
		return kmm_error_make(err, EINVAL, "%s: expected one YAML document, found %zu",
				      source, json_array_size(docs));
	return kmm_worker_config_from_json(json_array_get(docs, 0), source, ret_cfg, err);
}

int kmm_worker_config_load(const char *path, struct kmm_worker_config **ret_cfg,
			   struct kmm_error **err)
{
	_cleanup_json_ json_t *docs = NULL;
	int r;

	r = kmm_yaml_parse_file(path, KMM_WORKER_CONFIG_MAX, 0, &docs, err);
	if (r < 0)
		return r;
	if (json_array_size(docs) != 1)
		return kmm_error_make(err, EINVAL, "%s: expected one YAML document, found %zu",
				      path, json_array_size(docs));
	return kmm_worker_config_from_json(json_array_get(docs, 0), path, ret_cfg, err);
}

char **kmm_worker_config_in_tree(const struct kmm_worker_config *cfg)
{
	char **v = NULL;

	if (cfg->in_tree_modules_to_remove)
		return kmm_strv_copy(cfg->in_tree_modules_to_remove);
	if (cfg->in_tree_module_to_remove && *cfg->in_tree_module_to_remove) {
		if (kmm_strv_push(&v, cfg->in_tree_module_to_remove) < 0)
			return NULL;
		return v;
	}
	return NULL;
}

void kmm_worker_config_free(struct kmm_worker_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->kernel_version);
	free(cfg->container_image);
	free(cfg->image_pull_policy);
	kmm_strv_free(cfg->in_tree_modules_to_remove);
	free(cfg->in_tree_module_to_remove);
	free(cfg->modprobe.module_name);
	kmm_strv_free(cfg->modprobe.parameters);
	free(cfg->modprobe.dir_name);
	kmm_strv_free(cfg->modprobe.args.load);
	kmm_strv_free(cfg->modprobe.args.unload);
	kmm_strv_free(cfg->modprobe.raw_args.load);
	kmm_strv_free(cfg->modprobe.raw_args.unload);
	free(cfg->modprobe.firmware_path);
	kmm_strv_free(cfg->modprobe.modules_loading_order);
	free(cfg);
}
