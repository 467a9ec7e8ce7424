/* SPDX-License-Identifier: Apache-2.0 */
/* Module (kmm.sigs.x-k8s.io/v1beta1) and the types it shares with other kinds, as field tables. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api.h"
#include "lib/api/codec-internal.h"

const char *const kmm_internal_toleration_keys[3] = {
	"node.kubernetes.io/disk-pressure",
	"node.kubernetes.io/memory-pressure",
	"node.kubernetes.io/pid-pressure",
};

static bool same(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

bool kmm_module_selects(const struct kmm_module_spec *s, const json_t *labels, size_t *ret_term)
{
	const struct kmm_strmap *sel = &s->selector;

	for (size_t i = 0; i < sel->n; i++)
		if (!same(json_string_value(json_object_get(labels, sel->keys[i])),
			  sel->values[i])) {
			if (ret_term)
				*ret_term = i;
			return false;
		}
	return true;
}

static bool tolerated(const struct kmm_module_spec *s, const json_t *taint)
{
	const char *key = json_string_value(json_object_get(taint, "key"));
	const char *value = json_string_value(json_object_get(taint, "value"));
	const char *effect = json_string_value(json_object_get(taint, "effect"));

	for (size_t i = 0; i < KMM_ARRAY_SIZE(kmm_internal_toleration_keys); i++)
		if (same(key, kmm_internal_toleration_keys[i]) && same(effect, "NoSchedule"))
			return true;
	for (size_t i = 0; i < s->n_tolerations; i++) {
		const struct kmm_toleration *t = &s->tolerations[i];
		bool exists = same(t->operator, "Exists");

		if (t->effect && *t->effect && !same(t->effect, effect))
			continue;
		if (exists && (!t->key || !*t->key || same(t->key, key)))
			return true;
		if (!exists && same(t->key, key) &&
		    strcmp(t->value ? t->value : "", value ? value : "") == 0)
			return true;
	}
	return false;
}

const json_t *kmm_module_untolerated_taint(const struct kmm_module_spec *s, const json_t *taints)
{
	size_t i;
	json_t *t;

	json_array_foreach ((json_t *)taints, i, t) {
		const char *effect = json_string_value(json_object_get(t, "effect"));

		if ((same(effect, "NoSchedule") || same(effect, "NoExecute")) && !tolerated(s, t))
			return t;
	}
	return NULL;
}

/* ------------------------------------------------------------------------- */
/* Toleration, TLSOptions                                                    */

static const struct codec_field toleration_fields[] = {
	FIELD("key", CODEC_STRING, OF(toleration, key)),
	FIELD("operator", CODEC_STRING, OF(toleration, operator)),
	FIELD("value", CODEC_STRING, OF(toleration, value)),
	FIELD("effect", CODEC_STRING, OF(toleration, effect)),
	FIELD("tolerationSeconds", CODEC_INT64, OF(toleration, toleration_seconds),
	      .flags = CODEC_HAS, .has = OF(toleration, has_toleration_seconds)),
};
const struct codec codec_toleration = {
	.fields = toleration_fields,
	.n_fields = KMM_ARRAY_SIZE(toleration_fields),
	.size = sizeof(struct kmm_toleration),
	.unknown = OF(toleration, unknown),
};

static const struct codec_field tls_fields[] = {
	FIELD("insecure", CODEC_BOOL, OF(tls_options, insecure)),
	FIELD("insecureSkipTLSVerify", CODEC_BOOL, OF(tls_options, insecure_skip_tls_verify)),
};
const struct codec codec_tls = {
	.fields = tls_fields,
	.n_fields = KMM_ARRAY_SIZE(tls_fields),
	.size = sizeof(struct kmm_tls_options),
	.unknown = OF(tls_options, unknown),
};

void kmm_toleration_done(struct kmm_toleration *t)
{
	if (!t)
		return;
	codec_free(&codec_toleration, t, 0);
	*t = (struct kmm_toleration){ 0 };
}

json_t *kmm_tolerations_to_json(const struct kmm_toleration *t, size_t n)
{
	return codec_encode_array(&codec_toleration, t, n, 0);
}

/* ------------------------------------------------------------------------- */
/* Build / Sign                                                              */

static const struct codec_field build_arg_fields[] = {
	FIELD("name", CODEC_STRING, OF(build_arg, name), .flags = CODEC_REQUIRED | CODEC_ALWAYS),
	FIELD("value", CODEC_STRING, OF(build_arg, value), .flags = CODEC_REQUIRED | CODEC_ALWAYS),
};
static const struct codec build_arg_codec = {
	.fields = build_arg_fields,
	.n_fields = KMM_ARRAY_SIZE(build_arg_fields),
	.size = sizeof(struct kmm_build_arg),
	.unknown = OF(build_arg, unknown),
	.terse = true,
};

/* kanikoParams lives in struct kmm_build itself; only its tag is kept. */
static const struct codec_field kaniko_fields[] = {
	FIELD("tag", CODEC_STRING, OF(build, kaniko_tag)),
};
static const struct codec kaniko_codec = {
	.fields = kaniko_fields,
	.n_fields = KMM_ARRAY_SIZE(kaniko_fields),
	.drop_unknown = true,
};

static const struct codec_field build_fields[] = {
	FIELD("dockerfileConfigMap", CODEC_LOCAL_REF, OF(build, dockerfile_config_map),
	      .flags = CODEC_REQUIRED | CODEC_ALWAYS),
	FIELD("buildArgs", CODEC_ARRAY, OF(build, build_args), .count = OF(build, n_build_args),
	      .nested = &build_arg_codec),
	FIELD("secrets", CODEC_LOCAL_REFS, OF(build, secrets)),
	FIELD("baseImageRegistryTLS", CODEC_OBJECT, OF(build, base_image_registry_tls),
	      .nested = &codec_tls),
	FIELD("kanikoParams", CODEC_OBJECT, 0, .flags = CODEC_HAS,
	      .has = OF(build, has_kaniko_params), .nested = &kaniko_codec),
	FIELD("selector", CODEC_STRMAP, OF(build, selector)),
};
const struct codec codec_build = {
	.fields = build_fields,
	.n_fields = KMM_ARRAY_SIZE(build_fields),
	.size = sizeof(struct kmm_build),
	.unknown = OF(build, unknown),
};

static const struct codec_field sign_fields[] = {
	FIELD("unsignedImage", CODEC_STRING, OF(sign, unsigned_image)),
	FIELD("unsignedImageRegistryTLS", CODEC_OBJECT, OF(sign, unsigned_image_registry_tls),
	      .nested = &codec_tls),
	FIELD("keySecret", CODEC_LOCAL_REF, OF(sign, key_secret), .flags = CODEC_REQUIRED),
	FIELD("certSecret", CODEC_LOCAL_REF, OF(sign, cert_secret), .flags = CODEC_REQUIRED),
	FIELD("filesToSign", CODEC_STRV, OF(sign, files_to_sign)),
};
const struct codec codec_sign = {
	.fields = sign_fields,
	.n_fields = KMM_ARRAY_SIZE(sign_fields),
	.size = sizeof(struct kmm_sign),
	.unknown = OF(sign, unknown),
};

void kmm_build_free(struct kmm_build *b)
{
	codec_free(&codec_build, b, 0);
	free(b);
}

json_t *kmm_build_to_json(const struct kmm_build *b)
{
	return codec_encode(&codec_build, b, 0);
}

void kmm_sign_free(struct kmm_sign *s)
{
	codec_free(&codec_sign, s, 0);
	free(s);
}

json_t *kmm_sign_to_json(const struct kmm_sign *s)
{
	return codec_encode(&codec_sign, s, 0);
}

/* Through JSON, so that the copy is what a reader of the original's JSON would get. */
static void *copy_through_json(const struct codec *c, const void *src)
{
	_cleanup_error_ struct kmm_error *err = NULL;
	struct dec d = { .flags = 0, .err = &err };
	json_t *j;
	void *copy = NULL;

	if (!src)
		return NULL;
	j = codec_encode(c, src, 0);
	if (!j)
		return NULL;
	if (codec_decode_new(&d, c, j, "", &copy) < 0)
		copy = NULL;
	json_decref(j);
	return copy;
}

struct kmm_build *kmm_build_copy(const struct kmm_build *b)
{
	return copy_through_json(&codec_build, b);
}

struct kmm_sign *kmm_sign_copy(const struct kmm_sign *s)
{
	return copy_through_json(&codec_sign, s);
}

/* ------------------------------------------------------------------------- */
/* moduleLoader                                                              */

static const struct codec_field mapping_fields[] = {
	FIELD("literal", CODEC_STRING, OF(kernel_mapping, literal)),
	FIELD("regexp", CODEC_STRING, OF(kernel_mapping, regexp)),
	/* The key is required by the CRD; "" defers to the container-level image. */
	FIELD("containerImage", CODEC_STRING, OF(kernel_mapping, container_image),
	      .flags = CODEC_REQUIRED | CODEC_ALWAYS),
	FIELD("build", CODEC_OBJECT_PTR, OF(kernel_mapping, build), .nested = &codec_build),
	FIELD("sign", CODEC_OBJECT_PTR, OF(kernel_mapping, sign), .nested = &codec_sign),
	FIELD("registryTLS", CODEC_OBJECT_PTR, OF(kernel_mapping, registry_tls),
	      .nested = &codec_tls),
	FIELD("inTreeModulesToRemove", CODEC_STRV, OF(kernel_mapping, in_tree_modules_to_remove),
	      .flags = CODEC_HAS, .has = OF(kernel_mapping, has_in_tree_modules_to_remove)),
	FIELD("inTreeModuleToRemove", CODEC_STRING, OF(kernel_mapping, in_tree_module_to_remove)),
};
static const struct codec mapping_codec = {
	.fields = mapping_fields,
	.n_fields = KMM_ARRAY_SIZE(mapping_fields),
	.size = sizeof(struct kmm_kernel_mapping),
	.unknown = OF(kernel_mapping, unknown),
	.terse = true,
};

#define C(member) OF(module_loader_container, member)
static const struct codec_field container_fields[] = {
	FIELD("modprobe", CODEC_OBJECT, C(modprobe), .flags = CODEC_REQUIRED,
	      .nested = &codec_modprobe),
	FIELD("kernelMappings", CODEC_ARRAY, C(kernel_mappings),
	      .flags = CODEC_REQUIRED | CODEC_ALWAYS, .count = C(n_kernel_mappings), .min_items = 1,
	      .nested = &mapping_codec),
	FIELD("containerImage", CODEC_STRING, C(container_image)),
	FIELD("imagePullPolicy", CODEC_STRING, C(image_pull_policy), .flags = CODEC_EMPTY_OK,
	      .one_of = codec_pull_policies),
	FIELD("build", CODEC_OBJECT_PTR, C(build), .nested = &codec_build),
	FIELD("sign", CODEC_OBJECT_PTR, C(sign), .nested = &codec_sign),
	FIELD("registryTLS", CODEC_OBJECT, C(registry_tls), .nested = &codec_tls),
	FIELD("version", CODEC_STRING, C(version)),
	FIELD("inTreeModulesToRemove", CODEC_STRV, C(in_tree_modules_to_remove), .flags = CODEC_HAS,
	      .has = C(has_in_tree_modules_to_remove)),
	FIELD("inTreeModuleToRemove", CODEC_STRING, C(in_tree_module_to_remove)),
};
#undef C
static const struct codec container_codec = {
	.fields = container_fields,
	.n_fields = KMM_ARRAY_SIZE(container_fields),
	.size = sizeof(struct kmm_module_loader_container),
	.unknown = OF(module_loader_container, unknown),
};

static const struct codec_field loader_fields[] = {
	FIELD("container", CODEC_OBJECT, OF(module_loader, container), .flags = CODEC_REQUIRED,
	      .nested = &container_codec),
	FIELD("serviceAccountName", CODEC_STRING, OF(module_loader, service_account_name)),
};
static const struct codec loader_codec = {
	.fields = loader_fields,
	.n_fields = KMM_ARRAY_SIZE(loader_fields),
	.size = sizeof(struct kmm_module_loader),
	.unknown = OF(module_loader, unknown),
};

/* ------------------------------------------------------------------------- */
/* devicePlugin / dra                                                        */

static const struct codec_field container_spec_fields[] = {
	FIELD("image", CODEC_STRING, OF(container_spec, image),
	      .flags = CODEC_REQUIRED | CODEC_ALWAYS),
	FIELD("command", CODEC_JSON_ARRAY, OF(container_spec, command)),
	FIELD("args", CODEC_JSON_ARRAY, OF(container_spec, args)),
	FIELD("env", CODEC_JSON_ARRAY, OF(container_spec, env)),
	FIELD("imagePullPolicy", CODEC_STRING, OF(container_spec, image_pull_policy)),
	FIELD("resources", CODEC_JSON_OBJECT, OF(container_spec, resources)),
	FIELD("volumeMounts", CODEC_JSON_ARRAY, OF(container_spec, volume_mounts)),
};
static const char *const container_spec_decode_order[] = {
	"image", "imagePullPolicy", "command", "args", "env", "resources", "volumeMounts", NULL
};
static const struct codec container_spec_codec = {
	.fields = container_spec_fields,
	.n_fields = KMM_ARRAY_SIZE(container_spec_fields),
	.size = sizeof(struct kmm_container_spec),
	.unknown = OF(container_spec, unknown),
	.decode_order = container_spec_decode_order,
};

/* The CRD caps both lists at 32 items. */
static int device_class_finish(struct dec *d, void *base, const char *path)
{
	const struct kmm_device_class *c = base;

	if (json_array_size(c->selectors) > 32)
		return dec_fail(d, path, "selectors", "must have at most 32 items");
	if (json_array_size(c->config) > 32)
		return dec_fail(d, path, "config", "must have at most 32 items");
	return 0;
}

static const struct codec_field device_class_fields[] = {
	FIELD("name", CODEC_STRING, OF(device_class, name), .flags = CODEC_REQUIRED | CODEC_ALWAYS),
	FIELD("selectors", CODEC_JSON_ARRAY, OF(device_class, selectors)),
	FIELD("config", CODEC_JSON_ARRAY, OF(device_class, config)),
};
static const struct codec device_class_codec = {
	.fields = device_class_fields,
	.n_fields = KMM_ARRAY_SIZE(device_class_fields),
	.size = sizeof(struct kmm_device_class),
	.unknown = OF(device_class, unknown),
	.terse = true,
	.finish = device_class_finish,
};

enum {
	DEVICE_PLUGIN = 1 << 0,
	DRA = 1 << 1
};

static const struct codec_field plugin_fields[] = {
	FIELD("container", CODEC_OBJECT, OF(plugin_spec, container), .flags = CODEC_REQUIRED,
	      .nested = &container_spec_codec),
	FIELD("initContainer", CODEC_OBJECT_PTR, OF(plugin_spec, init_container),
	      .nested = &container_spec_codec),
	FIELD("serviceAccountName", CODEC_STRING, OF(plugin_spec, service_account_name)),
	FIELD("volumes", CODEC_JSON_ARRAY, OF(plugin_spec, volumes)),
	FIELD("automountServiceAccountToken", CODEC_BOOL, OF(plugin_spec, automount_sa_token),
	      .flags = CODEC_HAS, .has = OF(plugin_spec, has_automount_sa_token)),
	FIELD("driverName", CODEC_STRING, OF(plugin_spec, driver_name),
	      .flags = CODEC_REQUIRED | CODEC_ALWAYS, .variants = DRA),
	FIELD("deviceClasses", CODEC_ARRAY, OF(plugin_spec, device_classes), .variants = DRA,
	      .count = OF(plugin_spec, n_device_classes), .nested = &device_class_codec),
};
static const struct codec plugin_codec = {
	.fields = plugin_fields,
	.n_fields = KMM_ARRAY_SIZE(plugin_fields),
	.size = sizeof(struct kmm_plugin_spec),
	.unknown = OF(plugin_spec, unknown),
};

/* ------------------------------------------------------------------------- */
/* spec / status / Module                                                    */

/* The CRD's CEL rule on spec. */
static int one_plugin_kind(struct dec *d, void *base, const char *path)
{
	const struct kmm_module_spec *s = base;

	if (s->device_plugin && s->dra)
		return dec_fail(d, path, NULL,
				"spec.dra and spec.devicePlugin are mutually exclusive");
	return 0;
}

static const struct codec_field spec_fields[] = {
	/* selector is required, so an empty one is written as {}. */
	FIELD("selector", CODEC_STRMAP, OF(module_spec, selector),
	      .flags = CODEC_REQUIRED | CODEC_ALWAYS),
	FIELD("tolerations", CODEC_ARRAY, OF(module_spec, tolerations), .flags = CODEC_SAY_TYPE,
	      .count = OF(module_spec, n_tolerations), .nested = &codec_toleration),
	FIELD("moduleLoader", CODEC_OBJECT_PTR, OF(module_spec, module_loader),
	      .nested = &loader_codec),
	FIELD("devicePlugin", CODEC_OBJECT_PTR, OF(module_spec, device_plugin),
	      .nested = &plugin_codec, .nested_variant = DEVICE_PLUGIN),
	FIELD("dra", CODEC_OBJECT_PTR, OF(module_spec, dra), .nested = &plugin_codec,
	      .nested_variant = DRA, .check = one_plugin_kind),
	FIELD("imageRepoSecret", CODEC_LOCAL_REF, OF(module_spec, image_repo_secret)),
	FIELD("imageRebuildTriggerGeneration", CODEC_INT64,
	      OF(module_spec, image_rebuild_trigger_generation), .flags = CODEC_HAS,
	      .has = OF(module_spec, has_image_rebuild_trigger_generation)),
};
static const struct codec spec_codec = {
	.fields = spec_fields,
	.n_fields = KMM_ARRAY_SIZE(spec_fields),
	.size = sizeof(struct kmm_module_spec),
	.unknown = OF(module_spec, unknown),
};

static const struct codec_field ds_status_fields[] = {
	FIELD("nodesMatchingSelectorNumber", CODEC_INT32,
	      OF(daemonset_status, nodes_matching_selector_number)),
	FIELD("desiredNumber", CODEC_INT32, OF(daemonset_status, desired_number)),
	FIELD("availableNumber", CODEC_INT32, OF(daemonset_status, available_number)),
};
static const struct codec ds_status_codec = {
	.fields = ds_status_fields,
	.n_fields = KMM_ARRAY_SIZE(ds_status_fields),
	.size = sizeof(struct kmm_daemonset_status),
	.unknown = OF(daemonset_status, unknown),
};

static const struct codec_field status_fields[] = {
	FIELD("moduleLoader", CODEC_OBJECT, OF(module_status, module_loader),
	      .nested = &ds_status_codec),
	FIELD("devicePlugin", CODEC_OBJECT, OF(module_status, device_plugin),
	      .nested = &ds_status_codec),
	FIELD("dra", CODEC_OBJECT, OF(module_status, dra), .nested = &ds_status_codec),
	FIELD("imageRebuildTriggerGeneration", CODEC_INT64,
	      OF(module_status, image_rebuild_trigger_generation), .flags = CODEC_HAS,
	      .has = OF(module_status, has_image_rebuild_trigger_generation)),
	FIELD("conditions", CODEC_JSON_ARRAY, OF(module_status, conditions)),
};
static const struct codec status_codec = {
	.fields = status_fields,
	.n_fields = KMM_ARRAY_SIZE(status_fields),
	.size = sizeof(struct kmm_module_status),
	.unknown = OF(module_status, unknown),
};

static const struct codec_meta module_meta = {
	.namespaced = true,
	.name = OF(module, name),
	.has_namespace = true,
	.namespace = OF(module, namespace),
	.has_generation = true,
	.generation = OF(module, generation),
};

static const struct codec_field module_fields[] = {
	FIELD("apiVersion", CODEC_CONST, 0, .text = KMM_API_VERSION),
	FIELD("kind", CODEC_CONST, 0, .text = "Module"),
	FIELD("metadata", CODEC_METADATA, OF(module, metadata), .meta = &module_meta),
	FIELD("spec", CODEC_OBJECT, OF(module, spec), .flags = CODEC_REQUIRED,
	      .nested = &spec_codec),
	FIELD("status", CODEC_OBJECT, OF(module, status), .flags = CODEC_HAS,
	      .has = OF(module, has_status), .nested = &status_codec),
};
static const struct codec module_codec = {
	.fields = module_fields,
	.n_fields = KMM_ARRAY_SIZE(module_fields),
	.size = sizeof(struct kmm_module),
	.unknown = OF(module, unknown),
};

void kmm_module_free(struct kmm_module *m)
{
	codec_free(&module_codec, m, 0);
	free(m);
}

int kmm_module_from_json(const json_t *j, unsigned flags, struct kmm_module **ret,
			 struct kmm_error **err)
{
	static const char *const versions[] = { KMM_API_VERSION, NULL };
	struct dec d = { .flags = flags, .err = err };
	void *m = NULL;
	int r;

	r = dec_type_meta(&d, j, "Module", versions);
	if (r >= 0)
		r = codec_decode_new(&d, &module_codec, j, "", &m);
	if (r < 0)
		return r;
	*ret = m;
	return 0;
}

json_t *kmm_module_to_json(const struct kmm_module *m)
{
	return codec_encode(&module_codec, m, 0);
}
