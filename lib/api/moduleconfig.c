/* SPDX-License-Identifier: Apache-2.0 */
/* ModprobeSpec and ModuleConfig (the NMC entry config and the worker's config file). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api.h"
#include "kmm/strv.h"
#include "kmm/yaml.h"
#include "lib/api/decode.h"

static void modprobe_args_free(struct kmm_modprobe_args *a)
{
	if (!a)
		return;
	kmm_strv_free(a->load);
	kmm_strv_free(a->unload);
	json_decref(a->unknown);
	free(a);
}

void kmm_modprobe_spec_done(struct kmm_modprobe_spec *m)
{
	if (!m)
		return;
	free(m->module_name);
	free(m->dir_name);
	kmm_strv_free(m->parameters);
	modprobe_args_free(m->args);
	modprobe_args_free(m->raw_args);
	free(m->firmware_path);
	kmm_strv_free(m->modules_loading_order);
	json_decref(m->unknown);
	*m = (struct kmm_modprobe_spec){ 0 };
}

static int dec_modprobe_args(struct dec *d, const json_t *obj, const char *path, const char *key,
			     struct kmm_modprobe_args **ret)
{
	static const char *const known[] = { "load", "unload", NULL };
	struct kmm_modprobe_args *a;
	_cleanup_free_ char *p = NULL;
	const json_t *v;
	int r;

	r = dec_object(d, obj, path, key);
	if (r <= 0)
		return r;
	v = json_object_get(obj, key);
	p = path_key(path, key);
	a = calloc(1, sizeof(*a));
	if (!p || !a) {
		free(a);
		return dec_oom(d);
	}
	r = dec_unknown(d, v, p, known, &a->unknown);
	if (r >= 0)
		r = dec_strv(d, v, p, "load", NULL, &a->load);
	if (r >= 0)
		r = dec_strv(d, v, p, "unload", NULL, &a->unload);
	/* The CRD requires both lists with at least one item. */
	if (r >= 0 && kmm_strv_length(a->load) == 0)
		r = dec_fail(d, p, "load", "required field must have at least 1 item");
	if (r >= 0 && kmm_strv_length(a->unload) == 0)
		r = dec_fail(d, p, "unload", "required field must have at least 1 item");
	if (r < 0) {
		modprobe_args_free(a);
		return r;
	}
	modprobe_args_free(*ret);
	*ret = a;
	return 0;
}

int dec_modprobe(struct dec *d, const json_t *obj, const char *path, const char *key,
		 struct kmm_modprobe_spec *ret)
{
	static const char *const known[] = {
		"moduleName", "dirName",      "parameters",	     "args",
		"rawArgs",    "firmwarePath", "modulesLoadingOrder", NULL
	};
	struct kmm_modprobe_spec m = { 0 };
	_cleanup_free_ char *p = NULL;
	const json_t *v;
	int r;

	r = dec_object(d, obj, path, key);
	if (r < 0)
		return r;
	if (r == 0)
		return dec_fail(d, path, key, "required field is missing");
	v = json_object_get(obj, key);
	p = path_key(path, key);
	if (!p)
		return dec_oom(d);
	r = dec_unknown(d, v, p, known, &m.unknown);
	if (r >= 0)
		r = dec_string(d, v, p, "moduleName", &m.module_name);
	if (r >= 0)
		r = dec_string(d, v, p, "dirName", &m.dir_name);
	if (r >= 0)
		r = dec_strv(d, v, p, "parameters", NULL, &m.parameters);
	if (r >= 0)
		r = dec_modprobe_args(d, v, p, "args", &m.args);
	if (r >= 0)
		r = dec_modprobe_args(d, v, p, "rawArgs", &m.raw_args);
	if (r >= 0)
		r = dec_string(d, v, p, "firmwarePath", &m.firmware_path);
	if (r >= 0)
		r = dec_strv(d, v, p, "modulesLoadingOrder", NULL, &m.modules_loading_order);
	/* CRD default: dirName /opt (an explicit "" stays as the apiserver keeps it). */
	if (r >= 0 && !m.dir_name && !(m.dir_name = strdup(KMM_DEFAULT_DIR_NAME)))
		r = dec_oom(d);
	if (r < 0) {
		kmm_modprobe_spec_done(&m);
		return r;
	}
	kmm_modprobe_spec_done(ret);
	*ret = m;
	return 0;
}

static json_t *enc_modprobe_args(const struct kmm_modprobe_args *a)
{
	json_t *o = enc_begin(a->unknown);

	if (!o || enc_strv_always(o, "load", a->load) < 0 ||
	    enc_strv_always(o, "unload", a->unload) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *kmm_modprobe_spec_to_json(const struct kmm_modprobe_spec *m)
{
	json_t *o = enc_begin(m->unknown);

	if (!o || enc_str(o, "moduleName", m->module_name) < 0 ||
	    enc_strv(o, "parameters", m->parameters) < 0 ||
	    enc_str(o, "dirName", m->dir_name) < 0 ||
	    (m->args && enc_new(o, "args", enc_modprobe_args(m->args)) < 0) ||
	    (m->raw_args && enc_new(o, "rawArgs", enc_modprobe_args(m->raw_args)) < 0) ||
	    enc_str(o, "firmwarePath", m->firmware_path) < 0 ||
	    enc_strv(o, "modulesLoadingOrder", m->modules_loading_order) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static struct kmm_modprobe_args *modprobe_args_copy(const struct kmm_modprobe_args *a)
{
	struct kmm_modprobe_args *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->load = kmm_strv_copy(a->load);
	c->unload = kmm_strv_copy(a->unload);
	c->unknown = a->unknown ? json_deep_copy(a->unknown) : NULL;
	if (!c->load || !c->unload || (a->unknown && !c->unknown)) {
		modprobe_args_free(c);
		return NULL;
	}
	return c;
}

static int dup_opt(char **dst, const char *src)
{
	*dst = NULL;
	if (!src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

static int strv_dup_opt(char ***dst, char *const *src)
{
	*dst = NULL;
	if (!src)
		return 0;
	*dst = kmm_strv_copy(src);
	return *dst ? 0 : -ENOMEM;
}

int kmm_modprobe_spec_copy(struct kmm_modprobe_spec *dst, const struct kmm_modprobe_spec *src)
{
	struct kmm_modprobe_spec m = { 0 };

	if (dup_opt(&m.module_name, src->module_name) < 0 ||
	    dup_opt(&m.dir_name, src->dir_name) < 0 ||
	    strv_dup_opt(&m.parameters, src->parameters) < 0 ||
	    (src->args && !(m.args = modprobe_args_copy(src->args))) ||
	    (src->raw_args && !(m.raw_args = modprobe_args_copy(src->raw_args))) ||
	    dup_opt(&m.firmware_path, src->firmware_path) < 0 ||
	    strv_dup_opt(&m.modules_loading_order, src->modules_loading_order) < 0 ||
	    (src->unknown && !(m.unknown = json_deep_copy(src->unknown)))) {
		kmm_modprobe_spec_done(&m);
		return -ENOMEM;
	}
	*dst = m;
	return 0;
}

/* ------------------------------------------------------------------------- */

void kmm_module_config_free(struct kmm_module_config *c)
{
	if (!c)
		return;
	free(c->kernel_version);
	free(c->container_image);
	free(c->image_pull_policy);
	kmm_strv_free(c->in_tree_modules_to_remove);
	free(c->in_tree_module_to_remove);
	kmm_modprobe_spec_done(&c->modprobe);
	json_decref(c->unknown);
	free(c);
}

int kmm_module_config_from_json(const json_t *j, const char *path, unsigned flags,
				struct kmm_module_config **ret, struct kmm_error **err)
{
	static const char *const known[] = {
		"kernelVersion",	 "containerImage",	 "imagePullPolicy", "insecurePull",
		"inTreeModulesToRemove", "inTreeModuleToRemove", "modprobe",	    NULL
	};
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *c = NULL;
	struct dec d = { .flags = flags, .err = err };
	const char *p = path ? path : "";
	int r;

	if (!json_is_object(j))
		return dec_fail(&d, p, NULL, "expected an object");
	c = calloc(1, sizeof(*c));
	if (!c)
		return dec_oom(&d);
	r = dec_unknown(&d, j, p, known, &c->unknown);
	if (r >= 0)
		r = dec_string_req(&d, j, p, "kernelVersion", &c->kernel_version);
	if (r >= 0)
		r = dec_string_req(&d, j, p, "containerImage", &c->container_image);
	if (r >= 0)
		r = dec_string(&d, j, p, "imagePullPolicy", &c->image_pull_policy);
	if (r >= 0)
		r = dec_bool(&d, j, p, "insecurePull", &c->insecure_pull);
	if (r >= 0)
		r = dec_strv(&d, j, p, "inTreeModulesToRemove", NULL,
			     &c->in_tree_modules_to_remove);
	if (r >= 0)
		r = dec_string(&d, j, p, "inTreeModuleToRemove", &c->in_tree_module_to_remove);
	if (r >= 0)
		r = dec_modprobe(&d, j, p, "modprobe", &c->modprobe);
	if (r < 0)
		return r;
	if (str_empty(c->image_pull_policy)) {
		free(c->image_pull_policy);
		c->image_pull_policy = strdup(KMM_DEFAULT_PULL_POLICY);
		if (!c->image_pull_policy)
			return dec_oom(&d);
	} else if (strcmp(c->image_pull_policy, "Always") != 0 &&
		   strcmp(c->image_pull_policy, "IfNotPresent") != 0 &&
		   strcmp(c->image_pull_policy, "Never") != 0) {
		return dec_fail(&d, p, "imagePullPolicy",
				"unsupported value \"%s\": must be Always, IfNotPresent or Never",
				c->image_pull_policy);
	}
	*ret = TAKE_PTR(c);
	return 0;
}

json_t *kmm_module_config_to_json(const struct kmm_module_config *c)
{
	json_t *o = enc_begin(c->unknown);

	if (!o || enc_str_always(o, "kernelVersion", c->kernel_version) < 0 ||
	    enc_str_always(o, "containerImage", c->container_image) < 0 ||
	    enc_str(o, "imagePullPolicy", c->image_pull_policy) < 0 ||
	    enc_new(o, "insecurePull", json_boolean(c->insecure_pull)) < 0 ||
	    enc_strv(o, "inTreeModulesToRemove", c->in_tree_modules_to_remove) < 0 ||
	    enc_str(o, "inTreeModuleToRemove", c->in_tree_module_to_remove) < 0 ||
	    enc_new(o, "modprobe", kmm_modprobe_spec_to_json(&c->modprobe)) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

bool kmm_module_config_equal(const struct kmm_module_config *a, const struct kmm_module_config *b)
{
	json_t *ja, *jb;
	bool eq;

	if (!a || !b)
		return a == b;
	ja = kmm_module_config_to_json(a);
	jb = kmm_module_config_to_json(b);
	eq = ja && jb && json_equal(ja, jb);
	json_decref(ja);
	json_decref(jb);
	return eq;
}

bool kmm_module_config_json_equal(const json_t *a, const json_t *b)
{
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *ca = NULL, *cb = NULL;

	/* Both usually written by kmm from the same serializer: byte-equal. */
	if (json_equal(a, b))
		return true;
	if (kmm_module_config_from_json(a, "", 0, &ca, NULL) < 0 ||
	    kmm_module_config_from_json(b, "", 0, &cb, NULL) < 0)
		return false;
	return kmm_module_config_equal(ca, cb);
}

int kmm_module_config_parse(const char *text, size_t len, const char *origin,
			    struct kmm_module_config **ret, struct kmm_error **err)
{
	json_t *docs = NULL;
	int r;

	r = kmm_api_parse_manifests(text, len, origin ? origin : "config", &docs, err);
	if (r < 0)
		return r;
	if (json_array_size(docs) != 1) {
		size_t n = json_array_size(docs);

		json_decref(docs);
		return kmm_error_make(err, EINVAL, "%s: expected one YAML document, found %zu",
				      origin ? origin : "config", n);
	}
	r = kmm_module_config_from_json(json_array_get(docs, 0), "",
					KMM_API_STRICT | KMM_API_YAML_BOOLS, ret, err);
	json_decref(docs);
	if (r < 0)
		return kmm_error_wrap(err, "%s", origin ? origin : "config");
	return 0;
}
