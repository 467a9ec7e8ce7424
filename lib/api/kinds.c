/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The internal kinds as field tables: NodeModulesConfig, ModuleImagesConfig,
 * ModuleBuildSignConfig, and PreflightValidation (v1beta1 and v1beta2).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api.h"
#include "lib/api/codec-internal.h"

/* ------------------------------------------------------------------------- */
/* NodeModulesConfig                                                         */

enum {
	NMC_SPEC = 1 << 0,
	NMC_STATUS = 1 << 1
};

#define E(member) OF(nmc_module, member)
static const struct codec_field nmc_module_fields[] = {
	FIELD("name", CODEC_STRING, E(name), .flags = CODEC_REQUIRED | CODEC_ALWAYS),
	FIELD("namespace", CODEC_STRING, E(namespace), .flags = CODEC_REQUIRED | CODEC_ALWAYS),
	FIELD("serviceAccountName", CODEC_STRING, E(service_account_name)),
	FIELD("imageRepoSecret", CODEC_LOCAL_REF, E(image_repo_secret)),
	FIELD("tolerations", CODEC_ARRAY, E(tolerations), .flags = CODEC_SAY_TYPE,
	      .count = E(n_tolerations), .nested = &codec_toleration),
	FIELD("version", CODEC_STRING, E(version)),
	FIELD("config", CODEC_OBJECT_PTR, E(config), .flags = CODEC_REQUIRED,
	      .nested = &codec_module_config),
	FIELD("bootId", CODEC_STRING, E(boot_id), .variants = NMC_STATUS),
	FIELD("lastTransitionTime", CODEC_STRING, E(last_transition_time), .variants = NMC_STATUS),
};
#undef E
static const char *const nmc_module_decode_order[] = {
	"name",	   "namespace", "serviceAccountName", "imageRepoSecret", "tolerations",
	"version", "bootId",	"lastTransitionTime", "config",		 NULL,
};
static const struct codec nmc_module_codec = {
	.fields = nmc_module_fields,
	.n_fields = KMM_ARRAY_SIZE(nmc_module_fields),
	.size = sizeof(struct kmm_nmc_module),
	.unknown = OF(nmc_module, unknown),
	.terse = true,
	.decode_order = nmc_module_decode_order,
};

/* spec and status are sections of struct kmm_nmc itself. */
static const struct codec_field nmc_spec_fields[] = {
	FIELD("modules", CODEC_ARRAY, OF(nmc, spec_modules), .flags = CODEC_ALWAYS,
	      .count = OF(nmc, n_spec_modules), .nested = &nmc_module_codec,
	      .nested_variant = NMC_SPEC),
};
static const struct codec nmc_spec_codec = {
	.fields = nmc_spec_fields,
	.n_fields = KMM_ARRAY_SIZE(nmc_spec_fields),
	.unknown = OF(nmc, spec_unknown),
};

static const struct codec_field nmc_status_fields[] = {
	FIELD("modules", CODEC_ARRAY, OF(nmc, status_modules), .count = OF(nmc, n_status_modules),
	      .nested = &nmc_module_codec, .nested_variant = NMC_STATUS),
};
static const struct codec nmc_status_codec = {
	.fields = nmc_status_fields,
	.n_fields = KMM_ARRAY_SIZE(nmc_status_fields),
	.unknown = OF(nmc, status_unknown),
};

static const struct codec_meta nmc_meta = { .name = OF(nmc, name) };

static const struct codec_field nmc_fields[] = {
	FIELD("apiVersion", CODEC_CONST, 0, .text = KMM_API_VERSION),
	FIELD("kind", CODEC_CONST, 0, .text = "NodeModulesConfig"),
	FIELD("metadata", CODEC_METADATA, OF(nmc, metadata), .meta = &nmc_meta),
	FIELD("spec", CODEC_OBJECT, 0, .nested = &nmc_spec_codec),
	FIELD("status", CODEC_OBJECT, 0, .nested = &nmc_status_codec),
};
static const struct codec nmc_codec = {
	.fields = nmc_fields,
	.n_fields = KMM_ARRAY_SIZE(nmc_fields),
	.size = sizeof(struct kmm_nmc),
	.unknown = OF(nmc, unknown),
};

void kmm_nmc_free(struct kmm_nmc *n)
{
	codec_free(&nmc_codec, n, 0);
	free(n);
}

int kmm_nmc_from_json(const json_t *j, unsigned flags, struct kmm_nmc **ret, struct kmm_error **err)
{
	static const char *const versions[] = { KMM_API_VERSION, NULL };
	struct dec d = { .flags = flags, .err = err };
	void *n = NULL;
	int r;

	r = dec_type_meta(&d, j, "NodeModulesConfig", versions);
	if (r >= 0)
		r = codec_decode_new(&d, &nmc_codec, j, "", &n);
	if (r < 0)
		return r;
	*ret = n;
	return 0;
}

json_t *kmm_nmc_to_json(const struct kmm_nmc *n)
{
	return codec_encode(&nmc_codec, n, 0);
}

/* ------------------------------------------------------------------------- */
/* ModuleImagesConfig / ModuleBuildSignConfig                                 */

enum {
	MIC = 1 << 0,
	MBSC = 1 << 1
};

static const char *const image_actions[] = { "BuildImage", "SignImage", NULL };

#define I(member) OF(module_image_spec, member)
static const struct codec_field image_spec_fields[] = {
	FIELD("image", CODEC_STRING, I(image), .flags = CODEC_REQUIRED | CODEC_ALWAYS),
	FIELD("kernelVersion", CODEC_STRING, I(kernel_version),
	      .flags = CODEC_REQUIRED | CODEC_ALWAYS),
	FIELD("build", CODEC_OBJECT_PTR, I(build), .nested = &codec_build),
	FIELD("sign", CODEC_OBJECT_PTR, I(sign), .nested = &codec_sign),
	FIELD("skipWaitMissingImage", CODEC_BOOL, I(skip_wait_missing_image)),
	FIELD("registryTLS", CODEC_OBJECT_PTR, I(registry_tls), .nested = &codec_tls),
	FIELD("dirName", CODEC_STRING, I(dir_name), .def = KMM_DEFAULT_DIR_NAME),
	FIELD("action", CODEC_STRING, I(action), .flags = CODEC_REQUIRED | CODEC_ALWAYS,
	      .variants = MBSC, .one_of = image_actions),
};
#undef I
static const struct codec image_spec_codec = {
	.fields = image_spec_fields,
	.n_fields = KMM_ARRAY_SIZE(image_spec_fields),
	.size = sizeof(struct kmm_module_image_spec),
	.unknown = OF(module_image_spec, unknown),
	.terse = true,
};

static const struct codec_field image_state_fields[] = {
	FIELD("image", CODEC_STRING, OF(image_state, image),
	      .flags = CODEC_REQUIRED | CODEC_ALWAYS),
	FIELD("action", CODEC_STRING, OF(image_state, action), .variants = MBSC),
	FIELD("status", CODEC_STRING, OF(image_state, status)),
};
static const char *const image_state_decode_order[] = { "image", "status", "action", NULL };
static const struct codec image_state_codec = {
	.fields = image_state_fields,
	.n_fields = KMM_ARRAY_SIZE(image_state_fields),
	.size = sizeof(struct kmm_image_state),
	.unknown = OF(image_state, unknown),
	.terse = true,
	.decode_order = image_state_decode_order,
};

#define C(member) OF(image_config, member)
static const struct codec_field image_config_spec_fields[] = {
	FIELD("images", CODEC_ARRAY, C(images), .flags = CODEC_ALWAYS, .count = C(n_images),
	      .nested = &image_spec_codec),
	FIELD("imageRepoSecret", CODEC_LOCAL_REF, C(image_repo_secret)),
	FIELD("imagePullPolicy", CODEC_STRING, C(image_pull_policy), .flags = CODEC_DEFAULT_EMPTY,
	      .variants = MIC, .def = KMM_DEFAULT_PULL_POLICY),
	FIELD("pushBuiltImage", CODEC_BOOL, C(push_built_image)),
	FIELD("imageRebuildTriggerGeneration", CODEC_INT64, C(image_rebuild_trigger_generation),
	      .flags = CODEC_HAS, .variants = MIC, .has = C(has_image_rebuild_trigger_generation)),
	FIELD("tolerations", CODEC_ARRAY, C(tolerations), .flags = CODEC_SAY_TYPE,
	      .count = C(n_tolerations), .nested = &codec_toleration),
};
static const char *const image_config_spec_decode_order[] = {
	"images",      "imageRepoSecret", "pushBuiltImage",
	"tolerations", "imagePullPolicy", "imageRebuildTriggerGeneration",
	NULL,
};
static const struct codec image_config_spec_codec = {
	.fields = image_config_spec_fields,
	.n_fields = KMM_ARRAY_SIZE(image_config_spec_fields),
	.unknown = C(spec_unknown),
	.decode_order = image_config_spec_decode_order,
};

static const struct codec_field image_config_status_fields[] = {
	FIELD("imagesStates", CODEC_ARRAY, C(states), .variants = MIC, .count = C(n_states),
	      .nested = &image_state_codec),
	FIELD("images", CODEC_ARRAY, C(states), .variants = MBSC, .count = C(n_states),
	      .nested = &image_state_codec),
	FIELD("imageRebuildTriggerGeneration", CODEC_INT64, C(status_trigger_generation),
	      .flags = CODEC_HAS, .variants = MIC, .has = C(has_status_trigger_generation)),
};
static const struct codec image_config_status_codec = {
	.fields = image_config_status_fields,
	.n_fields = KMM_ARRAY_SIZE(image_config_status_fields),
	.unknown = C(status_unknown),
};

static const struct codec_meta image_config_meta = {
	.namespaced = true,
	.name = C(name),
	.has_namespace = true,
	.namespace = C(namespace),
};

static const struct codec_field image_config_fields[] = {
	FIELD("apiVersion", CODEC_CONST, 0, .text = KMM_API_VERSION),
	FIELD("kind", CODEC_CONST, 0, .variants = MIC, .text = "ModuleImagesConfig"),
	FIELD("kind", CODEC_CONST, 0, .variants = MBSC, .text = "ModuleBuildSignConfig"),
	FIELD("metadata", CODEC_METADATA, C(metadata), .meta = &image_config_meta),
	FIELD("spec", CODEC_OBJECT, 0, .flags = CODEC_REQUIRED, .nested = &image_config_spec_codec),
	FIELD("status", CODEC_OBJECT, 0, .nested = &image_config_status_codec),
};
#undef C
static const struct codec image_config_codec = {
	.fields = image_config_fields,
	.n_fields = KMM_ARRAY_SIZE(image_config_fields),
	.size = sizeof(struct kmm_image_config),
	.unknown = OF(image_config, unknown),
};

static unsigned image_config_variant(const char *kind)
{
	return kind && strcmp(kind, "ModuleBuildSignConfig") == 0 ? MBSC : MIC;
}

void kmm_image_config_free(struct kmm_image_config *c)
{
	if (!c)
		return;
	codec_free(&image_config_codec, c, image_config_variant(c->kind));
	free(c->kind);
	free(c);
}

int kmm_image_config_from_json(const json_t *j, unsigned flags, struct kmm_image_config **ret,
			       struct kmm_error **err)
{
	static const char *const versions[] = { KMM_API_VERSION, NULL };
	const char *kind = json_string_value(json_object_get(j, "kind"));
	struct dec d = { .flags = flags, .err = err, .variant = image_config_variant(kind) };
	struct kmm_image_config *c;
	void *p = NULL;
	int r;

	kind = d.variant == MBSC ? "ModuleBuildSignConfig" : "ModuleImagesConfig";
	r = dec_type_meta(&d, j, kind, versions);
	if (r >= 0)
		r = codec_decode_new(&d, &image_config_codec, j, "", &p);
	if (r < 0)
		return r;
	c = p;
	c->kind = strdup(kind);
	if (!c->kind) {
		kmm_image_config_free(c);
		return dec_oom(&d);
	}
	*ret = c;
	return 0;
}

json_t *kmm_image_config_to_json(const struct kmm_image_config *c)
{
	return codec_encode(&image_config_codec, c, image_config_variant(c->kind));
}

/* ------------------------------------------------------------------------- */
/* PreflightValidation                                                       */

enum {
	PFV_V1BETA1 = 1 << 0,
	PFV_V1BETA2 = 1 << 1
};

#define S(member) OF(pfv_module_status, member)
static const struct codec_field pfv_status_fields[] = {
	FIELD("name", CODEC_STRING, S(name), .flags = CODEC_REQUIRED | CODEC_ALWAYS,
	      .variants = PFV_V1BETA2),
	FIELD("namespace", CODEC_STRING, S(namespace), .flags = CODEC_REQUIRED | CODEC_ALWAYS,
	      .variants = PFV_V1BETA2),
	FIELD("verificationStatus", CODEC_STRING, S(verification_status)),
	FIELD("verificationStage", CODEC_STRING, S(verification_stage)),
	FIELD("statusReason", CODEC_STRING, S(status_reason)),
	FIELD("lastTransitionTime", CODEC_STRING, S(last_transition_time)),
};
#undef S
static const struct codec pfv_status_codec = {
	.fields = pfv_status_fields,
	.n_fields = KMM_ARRAY_SIZE(pfv_status_fields),
	.size = sizeof(struct kmm_pfv_module_status),
	.unknown = OF(pfv_module_status, unknown),
	.terse = true,
};

/* The plain "<name>" key duplicates a "<ns>/<name>" one when both exist. */
static bool v1_duplicate_key(const json_t *m, const char *key)
{
	const char *k;
	json_t *e;

	if (strchr(key, '/'))
		return false;
	json_object_foreach ((json_t *)m, k, e) {
		const char *slash = strchr(k, '/');

		if (slash && strcmp(slash + 1, key) == 0)
			return true;
	}
	return false;
}

/* v1beta1 status.crStatuses: {"<ns>/<name>": {...}} (plus compatibility "<name>" keys). */
static int decode_v1_statuses(struct dec *d, const json_t *status, const char *path,
			      const char *key, void *base)
{
	const json_t *m = dec_get(status, key);
	struct kmm_pfv *p = base;
	const char *k;
	json_t *e;

	if (!m)
		return 0;
	if (!json_is_object(m))
		return dec_fail(d, path, key, "expected an object");
	p->modules = calloc(json_object_size(m) + 1, sizeof(*p->modules));
	if (!p->modules)
		return dec_oom(d);
	json_object_foreach ((json_t *)m, k, e) {
		_cleanup_free_ char *at = NULL;
		const char *slash = strchr(k, '/');
		struct kmm_pfv_module_status *s = &p->modules[p->n_modules];
		int r;

		if (v1_duplicate_key(m, k))
			continue;
		if (asprintf(&at, "%s.%s[%s]", path, key, k) < 0)
			return dec_oom(d);
		if (!json_is_object(e))
			return dec_fail(d, at, NULL, "expected an object");
		p->n_modules++;
		r = codec_decode(d, &pfv_status_codec, e, at, s);
		if (r < 0)
			return r;
		s->namespace = slash ? strndup(k, (size_t)(slash - k)) : strdup("");
		s->name = strdup(slash ? slash + 1 : k);
		if (!s->namespace || !s->name)
			return dec_oom(d);
	}
	return 0;
}

static int encode_v1_statuses(json_t *o, const char *key, const void *base, unsigned variant)
{
	const struct kmm_pfv *p = base;
	json_t *mods;

	if (!p->n_modules)
		return 0;
	mods = json_object();
	for (size_t i = 0; mods && i < p->n_modules; i++) {
		const struct kmm_pfv_module_status *s = &p->modules[i];
		_cleanup_free_ char *k = NULL;

		if (asprintf(&k, "%s/%s", s->namespace ? s->namespace : "",
			     s->name ? s->name : "") < 0 ||
		    json_object_set_new(mods, k, codec_encode(&pfv_status_codec, s, variant)) < 0 ||
		    /* Compatibility key with the bare name, as upstream's conversion. */
		    json_object_set_new(mods, s->name ? s->name : "",
					codec_encode(&pfv_status_codec, s, variant)) < 0) {
			json_decref(mods);
			return -ENOMEM;
		}
	}
	return enc_new(o, key, mods);
}

static const struct codec_custom v1_statuses = {
	.decode = decode_v1_statuses,
	.encode = encode_v1_statuses,
};

static const struct codec_field pfv_spec_fields[] = {
	FIELD("kernelVersion", CODEC_STRING, OF(pfv, kernel_version),
	      .flags = CODEC_REQUIRED | CODEC_ALWAYS),
	FIELD("pushBuiltImage", CODEC_BOOL, OF(pfv, push_built_image)),
};
static const struct codec pfv_spec_codec = {
	.fields = pfv_spec_fields,
	.n_fields = KMM_ARRAY_SIZE(pfv_spec_fields),
	.unknown = OF(pfv, spec_unknown),
};

/* v1beta2 holds the list; v1beta1's map is read into (and written from) the same. */
static const struct codec_field pfv_status_section_fields[] = {
	FIELD("modules", CODEC_ARRAY, OF(pfv, modules), .variants = PFV_V1BETA2,
	      .count = OF(pfv, n_modules), .nested = &pfv_status_codec),
	FIELD("crStatuses", CODEC_CUSTOM, 0, .variants = PFV_V1BETA1, .custom = &v1_statuses),
};
static const struct codec pfv_status_section_codec = {
	.fields = pfv_status_section_fields,
	.n_fields = KMM_ARRAY_SIZE(pfv_status_section_fields),
	.unknown = OF(pfv, status_unknown),
};

static const struct codec_meta pfv_meta = { .name = OF(pfv, name) };

static const struct codec_field pfv_fields[] = {
	FIELD("apiVersion", CODEC_CONST, 0, .variants = PFV_V1BETA1, .text = KMM_API_VERSION),
	FIELD("apiVersion", CODEC_CONST, 0, .variants = PFV_V1BETA2,
	      .text = KMM_API_VERSION_V1BETA2),
	FIELD("kind", CODEC_CONST, 0, .text = "PreflightValidation"),
	FIELD("metadata", CODEC_METADATA, OF(pfv, metadata), .meta = &pfv_meta),
	FIELD("spec", CODEC_OBJECT, 0, .flags = CODEC_REQUIRED, .nested = &pfv_spec_codec),
	FIELD("status", CODEC_OBJECT, 0, .nested = &pfv_status_section_codec),
};
static const struct codec pfv_codec = {
	.fields = pfv_fields,
	.n_fields = KMM_ARRAY_SIZE(pfv_fields),
	.size = sizeof(struct kmm_pfv),
	.unknown = OF(pfv, unknown),
};

static unsigned pfv_variant(const char *api_version)
{
	return !api_version || strcmp(api_version, KMM_API_VERSION_V1BETA2) == 0 ? PFV_V1BETA2
										 : PFV_V1BETA1;
}

void kmm_pfv_free(struct kmm_pfv *p)
{
	/* Always held in the v1beta2 shape. */
	codec_free(&pfv_codec, p, PFV_V1BETA2);
	free(p);
}

int kmm_pfv_from_json(const json_t *j, unsigned flags, struct kmm_pfv **ret, struct kmm_error **err)
{
	static const char *const versions[] = { KMM_API_VERSION, KMM_API_VERSION_V1BETA2, NULL };
	const char *av = json_string_value(json_object_get(j, "apiVersion"));
	struct dec d = { .flags = flags, .err = err, .variant = pfv_variant(av) };
	_cleanup_(kmm_pfv_freep) struct kmm_pfv *p = NULL;
	int r;

	r = dec_type_meta(&d, j, "PreflightValidation", versions);
	if (r < 0)
		return r;
	/* Not codec_decode_new(): whatever the version read, kmm_pfv_free() releases it. */
	p = calloc(1, sizeof(*p));
	if (!p)
		return dec_oom(&d);
	r = codec_decode(&d, &pfv_codec, j, "", p);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(p);
	return 0;
}

json_t *kmm_pfv_to_json(const struct kmm_pfv *p, const char *api_version)
{
	return codec_encode(&pfv_codec, p, pfv_variant(api_version));
}

int kmm_pfv_validate(const struct kmm_pfv *p, struct kmm_error **err)
{
	size_t fields = 1;

	if (str_empty(p->kernel_version))
		return kmm_error_make(
		    err, EINVAL,
		    "spec.kernelVersion: Required value: kernelVersion cannot be empty");
	/* Go's regexp Split on [.,-] keeps empty fields: count separators. */
	for (const char *c = p->kernel_version; *c; c++)
		if (*c == '.' || *c == ',' || *c == '-')
			fields++;
	if (fields < 3)
		return kmm_error_make(err, EINVAL,
				      "spec.kernelVersion: Invalid value: \"%s\": must have at "
				      "least 3 fields separated by . , or - (e.g. 6.1.0-18-amd64)",
				      p->kernel_version);
	return 0;
}
