/* SPDX-License-Identifier: Apache-2.0 */
/* ModprobeSpec and ModuleConfig (the NMC entry config and the worker's config file). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api.h"
#include "kmm/shared-strv.h"
#include "kmm/shared-yaml.h"
#include "lib/api/codec-internal.h"

/*
 * Either list may be left out (upstream's fields are omitempty and not
 * required), but one that is given needs an item: the CRD's minItems 1.
 */
static int modprobe_args_finish(struct dec *d, void *base, const char *path)
{
	const struct kmm_modprobe_args *a = base;

	if (a->load && !a->load[0])
		return dec_fail(d, path, "load", "must have at least 1 item");
	if (a->unload && !a->unload[0])
		return dec_fail(d, path, "unload", "must have at least 1 item");
	return 0;
}

static const struct codec_field modprobe_args_fields[] = {
	FIELD("load", CODEC_STRV, OF(modprobe_args, load)),
	FIELD("unload", CODEC_STRV, OF(modprobe_args, unload)),
};
static const struct codec modprobe_args_codec = {
	.fields = modprobe_args_fields,
	.n_fields = KMM_ARRAY_SIZE(modprobe_args_fields),
	.size = sizeof(struct kmm_modprobe_args),
	.unknown = OF(modprobe_args, unknown),
	.finish = modprobe_args_finish,
};

static const struct codec_field modprobe_fields[] = {
	FIELD("moduleName", CODEC_STRING, OF(modprobe_spec, module_name)),
	FIELD("parameters", CODEC_STRV, OF(modprobe_spec, parameters)),
	/* CRD default: dirName /opt (an explicit "" stays as the apiserver keeps it). */
	FIELD("dirName", CODEC_STRING, OF(modprobe_spec, dir_name), .def = KMM_DEFAULT_DIR_NAME),
	FIELD("args", CODEC_OBJECT_PTR, OF(modprobe_spec, args), .nested = &modprobe_args_codec),
	FIELD("rawArgs", CODEC_OBJECT_PTR, OF(modprobe_spec, raw_args),
	      .nested = &modprobe_args_codec),
	FIELD("firmwarePath", CODEC_STRING, OF(modprobe_spec, firmware_path)),
	FIELD("modulesLoadingOrder", CODEC_STRV, OF(modprobe_spec, modules_loading_order)),
};
static const char *const modprobe_decode_order[] = {
	"moduleName", "dirName",      "parameters",	     "args",
	"rawArgs",    "firmwarePath", "modulesLoadingOrder", NULL,
};
const struct codec codec_modprobe = {
	.fields = modprobe_fields,
	.n_fields = KMM_ARRAY_SIZE(modprobe_fields),
	.size = sizeof(struct kmm_modprobe_spec),
	.unknown = OF(modprobe_spec, unknown),
	.decode_order = modprobe_decode_order,
};

static void modprobe_args_free(struct kmm_modprobe_args *a)
{
	codec_free(&modprobe_args_codec, a, 0);
	free(a);
}

void kmm_modprobe_spec_done(struct kmm_modprobe_spec *m)
{
	if (!m)
		return;
	codec_free(&codec_modprobe, m, 0);
	*m = (struct kmm_modprobe_spec){ 0 };
}

json_t *kmm_modprobe_spec_to_json(const struct kmm_modprobe_spec *m)
{
	return codec_encode(&codec_modprobe, m, 0);
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

static struct kmm_modprobe_args *modprobe_args_copy(const struct kmm_modprobe_args *a)
{
	struct kmm_modprobe_args *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	/* A list left out stays NULL: the worker then adds no flags on that side. */
	if (strv_dup_opt(&c->load, a->load) < 0 || strv_dup_opt(&c->unload, a->unload) < 0 ||
	    (a->unknown && !(c->unknown = json_deep_copy(a->unknown)))) {
		modprobe_args_free(c);
		return NULL;
	}
	return c;
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

const char *const codec_pull_policies[] = { "Always", "IfNotPresent", "Never", NULL };

#define M(member) OF(module_config, member)
static const struct codec_field module_config_fields[] = {
	FIELD("kernelVersion", CODEC_STRING, M(kernel_version),
	      .flags = CODEC_REQUIRED | CODEC_ALWAYS),
	FIELD("containerImage", CODEC_STRING, M(container_image),
	      .flags = CODEC_REQUIRED | CODEC_ALWAYS),
	FIELD("imagePullPolicy", CODEC_STRING, M(image_pull_policy),
	      .flags = CODEC_DEFAULT_EMPTY | CODEC_LATE, .def = KMM_DEFAULT_PULL_POLICY,
	      .one_of = codec_pull_policies),
	FIELD("insecurePull", CODEC_BOOL, M(insecure_pull), .flags = CODEC_ALWAYS),
	FIELD("inTreeModulesToRemove", CODEC_STRV, M(in_tree_modules_to_remove)),
	FIELD("inTreeModuleToRemove", CODEC_STRING, M(in_tree_module_to_remove)),
	FIELD("modprobe", CODEC_OBJECT, M(modprobe), .flags = CODEC_REQUIRED,
	      .nested = &codec_modprobe),
};
#undef M
const struct codec codec_module_config = {
	.fields = module_config_fields,
	.n_fields = KMM_ARRAY_SIZE(module_config_fields),
	.size = sizeof(struct kmm_module_config),
	.unknown = OF(module_config, unknown),
	.terse = true,
};

void kmm_module_config_free(struct kmm_module_config *c)
{
	codec_free(&codec_module_config, c, 0);
	free(c);
}

int kmm_module_config_from_json(const json_t *j, const char *path, unsigned flags,
				struct kmm_module_config **ret, struct kmm_error **err)
{
	struct dec d = { .flags = flags, .err = err };
	void *c = NULL;
	int r;

	r = codec_decode_new(&d, &codec_module_config, j, path ? path : "", &c);
	if (r < 0)
		return r;
	*ret = c;
	return 0;
}

json_t *kmm_module_config_to_json(const struct kmm_module_config *c)
{
	return codec_encode(&codec_module_config, c, 0);
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
