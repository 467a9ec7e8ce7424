/* SPDX-License-Identifier: Apache-2.0 */
/* Module (kmm.sigs.x-k8s.io/v1beta1): parse with defaults, serialize back. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api.h"
#include "kmm/strv.h"
#include "lib/api/decode.h"

const char *const kmm_internal_toleration_keys[3] = {
	"node.kubernetes.io/disk-pressure",
	"node.kubernetes.io/memory-pressure",
	"node.kubernetes.io/pid-pressure",
};

/* Runs `expr` only while r >= 0. */
#define STEP(expr)                                                                                 \
	do {                                                                                       \
		if (r >= 0)                                                                        \
			r = (expr);                                                                \
	} while (0)

/* Fetches obj[key] as an object and its path, or returns (absent/error). */
#define ENTER(d, obj, path, key, v, p)                                                             \
	do {                                                                                       \
		int _r = dec_object((d), (obj), (path), (key));                                    \
		if (_r <= 0)                                                                       \
			return _r;                                                                 \
		(v) = json_object_get((obj), (key));                                               \
		(p) = path_key((path), (key));                                                     \
		if (!(p))                                                                          \
			return dec_oom(d);                                                         \
	} while (0)

/* ------------------------------------------------------------------------- */
/* Build / Sign                                                              */

void kmm_build_free(struct kmm_build *b)
{
	if (!b)
		return;
	free(b->dockerfile_config_map);
	for (size_t i = 0; i < b->n_build_args; i++) {
		free(b->build_args[i].name);
		free(b->build_args[i].value);
		json_decref(b->build_args[i].unknown);
	}
	free(b->build_args);
	kmm_strv_free(b->secrets);
	tls_done(&b->base_image_registry_tls);
	free(b->kaniko_tag);
	kmm_strmap_done(&b->selector);
	json_decref(b->unknown);
	free(b);
}

static int dec_build_args(struct dec *d, const json_t *obj, const char *path, struct kmm_build *b)
{
	static const char *const known[] = { "name", "value", NULL };
	const json_t *v = json_object_get(obj, "buildArgs");
	_cleanup_free_ char *p = NULL;
	size_t n;
	int r = 0;

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return dec_fail(d, path, "buildArgs", "expected an array");
	p = path_key(path, "buildArgs");
	n = json_array_size(v);
	b->build_args = calloc(n ? n : 1, sizeof(*b->build_args));
	if (!p || !b->build_args)
		return dec_oom(d);
	for (size_t i = 0; i < n && r >= 0; i++) {
		_cleanup_free_ char *pi = path_index(p, i);
		const json_t *e = json_array_get(v, i);
		struct kmm_build_arg *a = &b->build_args[i];

		b->n_build_args = i + 1;
		if (!pi)
			return dec_oom(d);
		if (!json_is_object(e))
			return dec_fail(d, pi, NULL, "expected an object");
		STEP(dec_unknown(d, e, pi, known, &a->unknown));
		STEP(dec_string_req(d, e, pi, "name", &a->name));
		STEP(dec_string_req(d, e, pi, "value", &a->value));
	}
	return r;
}

int dec_build(struct dec *d, const json_t *obj, const char *path, const char *key,
	      struct kmm_build **ret)
{
	static const char *const known[] = {
		"dockerfileConfigMap", "buildArgs", "secrets", "baseImageRegistryTLS",
		"kanikoParams",	       "selector",  NULL
	};
	static const char *const kaniko_known[] = { "tag", NULL };
	struct kmm_build *b = NULL;
	_cleanup_free_ char *p = NULL;
	const json_t *v, *sec;
	int r = 0;

	ENTER(d, obj, path, key, v, p);
	b = calloc(1, sizeof(*b));
	if (!b)
		return dec_oom(d);
	STEP(dec_unknown(d, v, p, known, &b->unknown));
	if (r >= 0 && dec_missing(v, "dockerfileConfigMap"))
		r = dec_fail(d, p, "dockerfileConfigMap", "required field is missing");
	STEP(dec_local_ref(d, v, p, "dockerfileConfigMap", &b->dockerfile_config_map));
	STEP(dec_build_args(d, v, p, b));
	sec = json_object_get(v, "secrets");
	if (r >= 0 && sec && !json_is_null(sec)) {
		if (!json_is_array(sec)) {
			r = dec_fail(d, p, "secrets", "expected an array");
		} else {
			_cleanup_free_ char *ps = path_key(p, "secrets");
			size_t i;
			json_t *e;

			b->secrets = calloc(1, sizeof(char *));
			if (!ps || !b->secrets)
				r = dec_oom(d);
			json_array_foreach (sec, i, e) {
				_cleanup_free_ char *pi = NULL;
				char *name = NULL;

				if (r < 0)
					break;
				pi = path_index(ps, i);
				if (!pi) {
					r = dec_oom(d);
					break;
				}
				r = dec_local_ref_at(d, e, pi, &name);
				if (r < 0)
					break;
				if (kmm_strv_consume(&b->secrets, name) < 0) {
					free(name);
					r = dec_oom(d);
				}
			}
		}
	}
	STEP(dec_tls(d, v, p, "baseImageRegistryTLS", &b->base_image_registry_tls, NULL));
	if (r >= 0)
		r = dec_object(d, v, p, "kanikoParams");
	if (r > 0) {
		_cleanup_free_ char *pk = path_key(p, "kanikoParams");
		json_t *unknown = NULL;

		b->has_kaniko_params = true;
		r = pk ? dec_unknown(d, json_object_get(v, "kanikoParams"), pk, kaniko_known,
				     &unknown)
		       : dec_oom(d);
		json_decref(unknown);
		STEP(dec_string(d, json_object_get(v, "kanikoParams"), pk, "tag", &b->kaniko_tag));
	}
	STEP(dec_strmap(d, v, p, "selector", &b->selector));
	if (r < 0) {
		kmm_build_free(b);
		return r;
	}
	kmm_build_free(*ret);
	*ret = b;
	return 0;
}

json_t *kmm_build_to_json(const struct kmm_build *b)
{
	json_t *o = enc_begin(b->unknown), *args = NULL, *secs = NULL;

	if (!o)
		return NULL;
	if (enc_local_ref(o, "dockerfileConfigMap",
			  b->dockerfile_config_map ? b->dockerfile_config_map : "") < 0)
		goto fail;
	if (b->n_build_args) {
		args = json_array();
		if (!args)
			goto fail;
		for (size_t i = 0; i < b->n_build_args; i++) {
			json_t *a = enc_begin(b->build_args[i].unknown);

			if (!a || enc_str_always(a, "name", b->build_args[i].name) < 0 ||
			    enc_str_always(a, "value", b->build_args[i].value) < 0 ||
			    json_array_append_new(args, a) < 0) {
				json_decref(a);
				goto fail;
			}
		}
		if (enc_new(o, "buildArgs", TAKE_PTR(args)) < 0)
			goto fail;
	}
	if (kmm_strv_length(b->secrets)) {
		secs = json_array();
		if (!secs)
			goto fail;
		KMM_STRV_FOREACH (s, b->secrets) {
			if (json_array_append_new(secs, json_pack("{s:s}", "name", s)) < 0)
				goto fail;
		}
		if (enc_new(o, "secrets", TAKE_PTR(secs)) < 0)
			goto fail;
	}
	if (enc_new(o, "baseImageRegistryTLS", enc_tls(&b->base_image_registry_tls)) < 0)
		goto fail;
	if (b->has_kaniko_params || b->kaniko_tag) {
		json_t *k = json_object();

		if (!k || enc_str(k, "tag", b->kaniko_tag) < 0 ||
		    enc_new(o, "kanikoParams", k) < 0) {
			json_decref(k);
			goto fail;
		}
	}
	if (enc_strmap(o, "selector", &b->selector) < 0)
		goto fail;
	return o;
fail:
	json_decref(args);
	json_decref(secs);
	json_decref(o);
	return NULL;
}

struct kmm_build *kmm_build_copy(const struct kmm_build *b)
{
	_cleanup_error_ struct kmm_error *err = NULL;
	struct kmm_build *c = NULL;
	struct dec d = { .flags = 0, .err = &err };
	json_t *j, *wrap;

	if (!b)
		return NULL;
	j = kmm_build_to_json(b);
	wrap = j ? json_pack("{s:o}", "b", j) : NULL;
	if (!wrap)
		return NULL;
	if (dec_build(&d, wrap, "", "b", &c) < 0)
		c = NULL;
	json_decref(wrap);
	return c;
}

void kmm_sign_free(struct kmm_sign *s)
{
	if (!s)
		return;
	free(s->unsigned_image);
	tls_done(&s->unsigned_image_registry_tls);
	free(s->key_secret);
	free(s->cert_secret);
	kmm_strv_free(s->files_to_sign);
	json_decref(s->unknown);
	free(s);
}

int dec_sign(struct dec *d, const json_t *obj, const char *path, const char *key,
	     struct kmm_sign **ret)
{
	static const char *const known[] = { "unsignedImage", "unsignedImageRegistryTLS",
					     "keySecret",     "certSecret",
					     "filesToSign",   NULL };
	struct kmm_sign *s;
	_cleanup_free_ char *p = NULL;
	const json_t *v;
	int r = 0;

	ENTER(d, obj, path, key, v, p);
	s = calloc(1, sizeof(*s));
	if (!s)
		return dec_oom(d);
	STEP(dec_unknown(d, v, p, known, &s->unknown));
	STEP(dec_string(d, v, p, "unsignedImage", &s->unsigned_image));
	STEP(dec_tls(d, v, p, "unsignedImageRegistryTLS", &s->unsigned_image_registry_tls, NULL));
	if (r >= 0 && dec_missing(v, "keySecret"))
		r = dec_fail(d, p, "keySecret", "required field is missing");
	STEP(dec_local_ref(d, v, p, "keySecret", &s->key_secret));
	if (r >= 0 && dec_missing(v, "certSecret"))
		r = dec_fail(d, p, "certSecret", "required field is missing");
	STEP(dec_local_ref(d, v, p, "certSecret", &s->cert_secret));
	STEP(dec_strv(d, v, p, "filesToSign", NULL, &s->files_to_sign));
	if (r < 0) {
		kmm_sign_free(s);
		return r;
	}
	kmm_sign_free(*ret);
	*ret = s;
	return 0;
}

json_t *kmm_sign_to_json(const struct kmm_sign *s)
{
	json_t *o = enc_begin(s->unknown);

	if (!o || enc_str(o, "unsignedImage", s->unsigned_image) < 0 ||
	    enc_new(o, "unsignedImageRegistryTLS", enc_tls(&s->unsigned_image_registry_tls)) < 0 ||
	    enc_local_ref(o, "keySecret", s->key_secret) < 0 ||
	    enc_local_ref(o, "certSecret", s->cert_secret) < 0 ||
	    enc_strv(o, "filesToSign", s->files_to_sign) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

struct kmm_sign *kmm_sign_copy(const struct kmm_sign *s)
{
	_cleanup_error_ struct kmm_error *err = NULL;
	struct kmm_sign *c = NULL;
	struct dec d = { .flags = 0, .err = &err };
	json_t *j, *wrap;

	if (!s)
		return NULL;
	j = kmm_sign_to_json(s);
	wrap = j ? json_pack("{s:o}", "s", j) : NULL;
	if (!wrap)
		return NULL;
	if (dec_sign(&d, wrap, "", "s", &c) < 0)
		c = NULL;
	json_decref(wrap);
	return c;
}

/* ------------------------------------------------------------------------- */
/* moduleLoader                                                              */

static void mapping_done(struct kmm_kernel_mapping *m)
{
	free(m->literal);
	free(m->regexp);
	free(m->container_image);
	kmm_build_free(m->build);
	kmm_sign_free(m->sign);
	if (m->registry_tls) {
		tls_done(m->registry_tls);
		free(m->registry_tls);
	}
	kmm_strv_free(m->in_tree_modules_to_remove);
	free(m->in_tree_module_to_remove);
	json_decref(m->unknown);
}

static int dec_mapping(struct dec *d, const json_t *v, const char *p, struct kmm_kernel_mapping *m)
{
	static const char *const known[] = {
		"literal", "regexp",	  "containerImage",	   "build",
		"sign",	   "registryTLS", "inTreeModulesToRemove", "inTreeModuleToRemove",
		NULL
	};
	struct kmm_tls_options tls = { 0 };
	bool has_tls = false;
	int r = 0;

	if (!json_is_object(v))
		return dec_fail(d, p, NULL, "expected an object");
	STEP(dec_unknown(d, v, p, known, &m->unknown));
	STEP(dec_string(d, v, p, "literal", &m->literal));
	STEP(dec_string(d, v, p, "regexp", &m->regexp));
	/* The key is required by the CRD; "" defers to the container-level image. */
	if (r >= 0 && dec_missing(v, "containerImage"))
		r = dec_fail(d, p, "containerImage", "required field is missing");
	STEP(dec_string(d, v, p, "containerImage", &m->container_image));
	STEP(dec_build(d, v, p, "build", &m->build));
	STEP(dec_sign(d, v, p, "sign", &m->sign));
	STEP(dec_tls(d, v, p, "registryTLS", &tls, &has_tls));
	if (r >= 0 && has_tls) {
		m->registry_tls = malloc(sizeof(tls));
		if (!m->registry_tls) {
			tls_done(&tls);
			r = dec_oom(d);
		} else {
			*m->registry_tls = tls;
		}
	}
	STEP(dec_strv(d, v, p, "inTreeModulesToRemove", &m->has_in_tree_modules_to_remove,
		      &m->in_tree_modules_to_remove));
	STEP(dec_string(d, v, p, "inTreeModuleToRemove", &m->in_tree_module_to_remove));
	return r;
}

static json_t *enc_mapping(const struct kmm_kernel_mapping *m)
{
	json_t *o = enc_begin(m->unknown);

	if (!o || enc_str(o, "literal", m->literal) < 0 || enc_str(o, "regexp", m->regexp) < 0 ||
	    enc_str_always(o, "containerImage", m->container_image) < 0 ||
	    (m->build && enc_new(o, "build", kmm_build_to_json(m->build)) < 0) ||
	    (m->sign && enc_new(o, "sign", kmm_sign_to_json(m->sign)) < 0) ||
	    (m->registry_tls && enc_new(o, "registryTLS", enc_tls(m->registry_tls)) < 0) ||
	    (m->has_in_tree_modules_to_remove &&
	     enc_strv_always(o, "inTreeModulesToRemove", m->in_tree_modules_to_remove) < 0) ||
	    enc_str(o, "inTreeModuleToRemove", m->in_tree_module_to_remove) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static void container_done(struct kmm_module_loader_container *c)
{
	kmm_modprobe_spec_done(&c->modprobe);
	for (size_t i = 0; i < c->n_kernel_mappings; i++)
		mapping_done(&c->kernel_mappings[i]);
	free(c->kernel_mappings);
	free(c->container_image);
	free(c->image_pull_policy);
	kmm_build_free(c->build);
	kmm_sign_free(c->sign);
	tls_done(&c->registry_tls);
	free(c->version);
	kmm_strv_free(c->in_tree_modules_to_remove);
	free(c->in_tree_module_to_remove);
	json_decref(c->unknown);
}

static int dec_mappings(struct dec *d, const json_t *obj, const char *path,
			struct kmm_module_loader_container *c)
{
	const json_t *v = json_object_get(obj, "kernelMappings");
	_cleanup_free_ char *p = NULL;
	size_t n;
	int r = 0;

	if (!v || json_is_null(v))
		return dec_fail(d, path, "kernelMappings", "required field is missing");
	if (!json_is_array(v))
		return dec_fail(d, path, "kernelMappings", "expected an array");
	n = json_array_size(v);
	if (n == 0)
		return dec_fail(d, path, "kernelMappings", "must have at least 1 item");
	p = path_key(path, "kernelMappings");
	c->kernel_mappings = calloc(n, sizeof(*c->kernel_mappings));
	if (!p || !c->kernel_mappings)
		return dec_oom(d);
	for (size_t i = 0; i < n && r >= 0; i++) {
		_cleanup_free_ char *pi = path_index(p, i);

		c->n_kernel_mappings = i + 1;
		r = pi ? dec_mapping(d, json_array_get(v, i), pi, &c->kernel_mappings[i])
		       : dec_oom(d);
	}
	return r;
}

static int dec_container(struct dec *d, const json_t *obj, const char *path,
			 struct kmm_module_loader_container *c)
{
	static const char *const known[] = { "modprobe",
					     "kernelMappings",
					     "containerImage",
					     "imagePullPolicy",
					     "build",
					     "sign",
					     "registryTLS",
					     "version",
					     "inTreeModulesToRemove",
					     "inTreeModuleToRemove",
					     NULL };
	_cleanup_free_ char *p = NULL;
	const json_t *v;
	int r = 0;

	r = dec_object(d, obj, path, "container");
	if (r < 0)
		return r;
	if (r == 0)
		return dec_fail(d, path, "container", "required field is missing");
	v = json_object_get(obj, "container");
	p = path_key(path, "container");
	if (!p)
		return dec_oom(d);
	r = 0;
	STEP(dec_unknown(d, v, p, known, &c->unknown));
	STEP(dec_modprobe(d, v, p, "modprobe", &c->modprobe));
	STEP(dec_mappings(d, v, p, c));
	STEP(dec_string(d, v, p, "containerImage", &c->container_image));
	STEP(dec_string(d, v, p, "imagePullPolicy", &c->image_pull_policy));
	if (r >= 0 && !str_empty(c->image_pull_policy) &&
	    strcmp(c->image_pull_policy, "Always") != 0 &&
	    strcmp(c->image_pull_policy, "IfNotPresent") != 0 &&
	    strcmp(c->image_pull_policy, "Never") != 0)
		r = dec_fail(d, p, "imagePullPolicy",
			     "unsupported value \"%s\": must be Always, IfNotPresent or Never",
			     c->image_pull_policy);
	STEP(dec_build(d, v, p, "build", &c->build));
	STEP(dec_sign(d, v, p, "sign", &c->sign));
	STEP(dec_tls(d, v, p, "registryTLS", &c->registry_tls, NULL));
	STEP(dec_string(d, v, p, "version", &c->version));
	STEP(dec_strv(d, v, p, "inTreeModulesToRemove", &c->has_in_tree_modules_to_remove,
		      &c->in_tree_modules_to_remove));
	STEP(dec_string(d, v, p, "inTreeModuleToRemove", &c->in_tree_module_to_remove));
	return r;
}

static json_t *enc_container(const struct kmm_module_loader_container *c)
{
	json_t *o = enc_begin(c->unknown), *maps = json_array();

	if (!o || !maps)
		goto fail;
	for (size_t i = 0; i < c->n_kernel_mappings; i++)
		if (json_array_append_new(maps, enc_mapping(&c->kernel_mappings[i])) < 0)
			goto fail;
	if (enc_new(o, "modprobe", kmm_modprobe_spec_to_json(&c->modprobe)) < 0 ||
	    enc_new(o, "kernelMappings", TAKE_PTR(maps)) < 0 ||
	    enc_str(o, "containerImage", c->container_image) < 0 ||
	    enc_str(o, "imagePullPolicy", c->image_pull_policy) < 0 ||
	    (c->build && enc_new(o, "build", kmm_build_to_json(c->build)) < 0) ||
	    (c->sign && enc_new(o, "sign", kmm_sign_to_json(c->sign)) < 0) ||
	    enc_new(o, "registryTLS", enc_tls(&c->registry_tls)) < 0 ||
	    enc_str(o, "version", c->version) < 0 ||
	    (c->has_in_tree_modules_to_remove &&
	     enc_strv_always(o, "inTreeModulesToRemove", c->in_tree_modules_to_remove) < 0) ||
	    enc_str(o, "inTreeModuleToRemove", c->in_tree_module_to_remove) < 0)
		goto fail;
	return o;
fail:
	json_decref(maps);
	json_decref(o);
	return NULL;
}

static void loader_free(struct kmm_module_loader *l)
{
	if (!l)
		return;
	container_done(&l->container);
	free(l->service_account_name);
	json_decref(l->unknown);
	free(l);
}

static int dec_loader(struct dec *d, const json_t *obj, const char *path,
		      struct kmm_module_loader **ret)
{
	static const char *const known[] = { "container", "serviceAccountName", NULL };
	struct kmm_module_loader *l;
	_cleanup_free_ char *p = NULL;
	const json_t *v;
	int r = 0;

	ENTER(d, obj, path, "moduleLoader", v, p);
	l = calloc(1, sizeof(*l));
	if (!l)
		return dec_oom(d);
	STEP(dec_unknown(d, v, p, known, &l->unknown));
	STEP(dec_container(d, v, p, &l->container));
	STEP(dec_string(d, v, p, "serviceAccountName", &l->service_account_name));
	if (r < 0) {
		loader_free(l);
		return r;
	}
	*ret = l;
	return 0;
}

/* ------------------------------------------------------------------------- */
/* devicePlugin / dra                                                        */

static void container_spec_done(struct kmm_container_spec *c)
{
	free(c->image);
	free(c->image_pull_policy);
	json_decref(c->command);
	json_decref(c->args);
	json_decref(c->env);
	json_decref(c->resources);
	json_decref(c->volume_mounts);
	json_decref(c->unknown);
	*c = (struct kmm_container_spec){ 0 };
}

static int dec_container_spec(struct dec *d, const json_t *obj, const char *path, const char *key,
			      struct kmm_container_spec *c, bool *ret_has)
{
	static const char *const known[] = { "image",		"command",   "args",	     "env",
					     "imagePullPolicy", "resources", "volumeMounts", NULL };
	_cleanup_free_ char *p = NULL;
	const json_t *v;
	int r = 0;

	ENTER(d, obj, path, key, v, p);
	*ret_has = true;
	STEP(dec_unknown(d, v, p, known, &c->unknown));
	STEP(dec_string_req(d, v, p, "image", &c->image));
	STEP(dec_string(d, v, p, "imagePullPolicy", &c->image_pull_policy));
	STEP(dec_json(d, v, p, "command", JSON_ARRAY, &c->command));
	STEP(dec_json(d, v, p, "args", JSON_ARRAY, &c->args));
	STEP(dec_json(d, v, p, "env", JSON_ARRAY, &c->env));
	STEP(dec_json(d, v, p, "resources", JSON_OBJECT, &c->resources));
	STEP(dec_json(d, v, p, "volumeMounts", JSON_ARRAY, &c->volume_mounts));
	return r;
}

static json_t *enc_container_spec(const struct kmm_container_spec *c)
{
	json_t *o = enc_begin(c->unknown);

	if (!o || enc_str_always(o, "image", c->image) < 0 ||
	    enc_json(o, "command", c->command) < 0 || enc_json(o, "args", c->args) < 0 ||
	    enc_json(o, "env", c->env) < 0 ||
	    enc_str(o, "imagePullPolicy", c->image_pull_policy) < 0 ||
	    enc_json(o, "resources", c->resources) < 0 ||
	    enc_json(o, "volumeMounts", c->volume_mounts) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static void plugin_free(struct kmm_plugin_spec *s)
{
	if (!s)
		return;
	container_spec_done(&s->container);
	if (s->init_container) {
		container_spec_done(s->init_container);
		free(s->init_container);
	}
	free(s->service_account_name);
	json_decref(s->volumes);
	free(s->driver_name);
	for (size_t i = 0; i < s->n_device_classes; i++) {
		free(s->device_classes[i].name);
		json_decref(s->device_classes[i].selectors);
		json_decref(s->device_classes[i].config);
		json_decref(s->device_classes[i].unknown);
	}
	free(s->device_classes);
	json_decref(s->unknown);
	free(s);
}

static int dec_device_classes(struct dec *d, const json_t *obj, const char *path,
			      struct kmm_plugin_spec *s)
{
	static const char *const known[] = { "name", "selectors", "config", NULL };
	const json_t *v = json_object_get(obj, "deviceClasses");
	_cleanup_free_ char *p = NULL;
	size_t n;
	int r = 0;

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return dec_fail(d, path, "deviceClasses", "expected an array");
	n = json_array_size(v);
	p = path_key(path, "deviceClasses");
	s->device_classes = calloc(n ? n : 1, sizeof(*s->device_classes));
	if (!p || !s->device_classes)
		return dec_oom(d);
	for (size_t i = 0; i < n && r >= 0; i++) {
		_cleanup_free_ char *pi = path_index(p, i);
		const json_t *e = json_array_get(v, i);
		struct kmm_device_class *c = &s->device_classes[i];

		s->n_device_classes = i + 1;
		if (!pi)
			return dec_oom(d);
		if (!json_is_object(e))
			return dec_fail(d, pi, NULL, "expected an object");
		STEP(dec_unknown(d, e, pi, known, &c->unknown));
		STEP(dec_string_req(d, e, pi, "name", &c->name));
		STEP(dec_json(d, e, pi, "selectors", JSON_ARRAY, &c->selectors));
		STEP(dec_json(d, e, pi, "config", JSON_ARRAY, &c->config));
		if (r >= 0 && json_array_size(c->selectors) > 32)
			r = dec_fail(d, pi, "selectors", "must have at most 32 items");
		if (r >= 0 && json_array_size(c->config) > 32)
			r = dec_fail(d, pi, "config", "must have at most 32 items");
	}
	return r;
}

static int dec_plugin(struct dec *d, const json_t *obj, const char *path, const char *key, bool dra,
		      struct kmm_plugin_spec **ret)
{
	static const char *const dp_known[] = { "container",
						"initContainer",
						"serviceAccountName",
						"volumes",
						"automountServiceAccountToken",
						NULL };
	static const char *const dra_known[] = { "container",
						 "initContainer",
						 "serviceAccountName",
						 "volumes",
						 "automountServiceAccountToken",
						 "driverName",
						 "deviceClasses",
						 NULL };
	struct kmm_plugin_spec *s;
	_cleanup_free_ char *p = NULL;
	const json_t *v;
	bool has = false;
	int r = 0;

	ENTER(d, obj, path, key, v, p);
	s = calloc(1, sizeof(*s));
	if (!s)
		return dec_oom(d);
	STEP(dec_unknown(d, v, p, dra ? dra_known : dp_known, &s->unknown));
	STEP(dec_container_spec(d, v, p, "container", &s->container, &has));
	if (r >= 0 && !has)
		r = dec_fail(d, p, "container", "required field is missing");
	if (r >= 0)
		r = dec_object(d, v, p, "initContainer");
	if (r > 0) {
		s->init_container = calloc(1, sizeof(*s->init_container));
		r = s->init_container
			? dec_container_spec(d, v, p, "initContainer", s->init_container, &has)
			: dec_oom(d);
	}
	STEP(dec_string(d, v, p, "serviceAccountName", &s->service_account_name));
	STEP(dec_json(d, v, p, "volumes", JSON_ARRAY, &s->volumes));
	if (r >= 0 && json_object_get(v, "automountServiceAccountToken") &&
	    !json_is_null(json_object_get(v, "automountServiceAccountToken"))) {
		s->has_automount_sa_token = true;
		r = dec_bool(d, v, p, "automountServiceAccountToken", &s->automount_sa_token);
	}
	if (dra) {
		if (r >= 0 && dec_missing(v, "driverName"))
			r = dec_fail(d, p, "driverName", "required field is missing");
		STEP(dec_string(d, v, p, "driverName", &s->driver_name));
		STEP(dec_device_classes(d, v, p, s));
	}
	if (r < 0) {
		plugin_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

static json_t *enc_plugin(const struct kmm_plugin_spec *s, bool dra)
{
	json_t *o = enc_begin(s->unknown);

	if (!o || enc_new(o, "container", enc_container_spec(&s->container)) < 0 ||
	    (s->init_container &&
	     enc_new(o, "initContainer", enc_container_spec(s->init_container)) < 0) ||
	    enc_str(o, "serviceAccountName", s->service_account_name) < 0 ||
	    enc_json(o, "volumes", s->volumes) < 0 ||
	    (s->has_automount_sa_token &&
	     enc_new(o, "automountServiceAccountToken", json_boolean(s->automount_sa_token)) < 0))
		goto fail;
	if (dra) {
		json_t *classes = json_array();

		if (enc_str_always(o, "driverName", s->driver_name) < 0 || !classes)
			goto fail_classes;
		for (size_t i = 0; i < s->n_device_classes; i++) {
			const struct kmm_device_class *c = &s->device_classes[i];
			json_t *e = enc_begin(c->unknown);

			if (!e || enc_str_always(e, "name", c->name) < 0 ||
			    enc_json(e, "selectors", c->selectors) < 0 ||
			    enc_json(e, "config", c->config) < 0 ||
			    json_array_append_new(classes, e) < 0) {
				json_decref(e);
				goto fail_classes;
			}
		}
		if (s->n_device_classes) {
			if (enc_new(o, "deviceClasses", classes) < 0)
				goto fail;
		} else {
			json_decref(classes);
		}
		return o;
	fail_classes:
		json_decref(classes);
		goto fail;
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

/* ------------------------------------------------------------------------- */
/* spec / status / Module                                                    */

static void spec_done(struct kmm_module_spec *s)
{
	kmm_strmap_done(&s->selector);
	for (size_t i = 0; i < s->n_tolerations; i++)
		kmm_toleration_done(&s->tolerations[i]);
	free(s->tolerations);
	loader_free(s->module_loader);
	plugin_free(s->device_plugin);
	plugin_free(s->dra);
	free(s->image_repo_secret);
	json_decref(s->unknown);
}

static int dec_spec(struct dec *d, const json_t *root, struct kmm_module_spec *s)
{
	static const char *const known[] = { "selector",
					     "tolerations",
					     "moduleLoader",
					     "devicePlugin",
					     "dra",
					     "imageRepoSecret",
					     "imageRebuildTriggerGeneration",
					     NULL };
	const json_t *v;
	int r;

	r = dec_object(d, root, "", "spec");
	if (r < 0)
		return r;
	if (r == 0)
		return dec_fail(d, "", "spec", "required field is missing");
	v = json_object_get(root, "spec");
	r = 0;
	STEP(dec_unknown(d, v, "spec", known, &s->unknown));
	if (r >= 0 && dec_missing(v, "selector"))
		r = dec_fail(d, "spec", "selector", "required field is missing");
	STEP(dec_strmap(d, v, "spec", "selector", &s->selector));
	STEP(dec_tolerations(d, v, "spec", "tolerations", &s->tolerations, &s->n_tolerations));
	STEP(dec_loader(d, v, "spec", &s->module_loader));
	STEP(dec_plugin(d, v, "spec", "devicePlugin", false, &s->device_plugin));
	STEP(dec_plugin(d, v, "spec", "dra", true, &s->dra));
	/* The CRD's CEL rule on spec. */
	if (r >= 0 && s->device_plugin && s->dra)
		r = dec_fail(d, "spec", NULL,
			     "spec.dra and spec.devicePlugin are mutually exclusive");
	STEP(dec_local_ref(d, v, "spec", "imageRepoSecret", &s->image_repo_secret));
	STEP(dec_int(d, v, "spec", "imageRebuildTriggerGeneration", INT64_MIN, INT64_MAX,
		     &s->has_image_rebuild_trigger_generation,
		     &s->image_rebuild_trigger_generation));
	return r;
}

static json_t *enc_loader(const struct kmm_module_loader *ml)
{
	json_t *l = enc_begin(ml->unknown);

	if (!l || enc_new(l, "container", enc_container(&ml->container)) < 0 ||
	    enc_str(l, "serviceAccountName", ml->service_account_name) < 0) {
		json_decref(l);
		return NULL;
	}
	return l;
}

static json_t *enc_spec(const struct kmm_module_spec *s)
{
	json_t *o = enc_begin(s->unknown), *sel = NULL;

	if (!o)
		return NULL;
	/* selector is required, so an empty one is written as {}. */
	if (s->selector.n == 0) {
		sel = json_object();
		if (enc_new(o, "selector", sel) < 0)
			goto fail;
	} else if (enc_strmap(o, "selector", &s->selector) < 0) {
		goto fail;
	}
	if ((s->n_tolerations &&
	     enc_new(o, "tolerations", kmm_tolerations_to_json(s->tolerations, s->n_tolerations)) <
		 0) ||
	    (s->module_loader && enc_new(o, "moduleLoader", enc_loader(s->module_loader)) < 0) ||
	    (s->device_plugin &&
	     enc_new(o, "devicePlugin", enc_plugin(s->device_plugin, false)) < 0) ||
	    (s->dra && enc_new(o, "dra", enc_plugin(s->dra, true)) < 0) ||
	    enc_local_ref(o, "imageRepoSecret", s->image_repo_secret) < 0 ||
	    (s->has_image_rebuild_trigger_generation &&
	     enc_new(o, "imageRebuildTriggerGeneration",
		     json_integer(s->image_rebuild_trigger_generation)) < 0))
		goto fail;
	return o;
fail:
	json_decref(o);
	return NULL;
}

static int dec_ds_status(struct dec *d, const json_t *obj, const char *path, const char *key,
			 struct kmm_daemonset_status *s)
{
	static const char *const known[] = { "nodesMatchingSelectorNumber", "desiredNumber",
					     "availableNumber", NULL };
	_cleanup_free_ char *p = NULL;
	const json_t *v;
	int64_t a = 0, b = 0, c = 0;
	int r = 0;

	ENTER(d, obj, path, key, v, p);
	STEP(dec_unknown(d, v, p, known, &s->unknown));
	STEP(dec_int(d, v, p, "nodesMatchingSelectorNumber", INT32_MIN, INT32_MAX, NULL, &a));
	STEP(dec_int(d, v, p, "desiredNumber", INT32_MIN, INT32_MAX, NULL, &b));
	STEP(dec_int(d, v, p, "availableNumber", INT32_MIN, INT32_MAX, NULL, &c));
	s->nodes_matching_selector_number = (int32_t)a;
	s->desired_number = (int32_t)b;
	s->available_number = (int32_t)c;
	return r;
}

static json_t *enc_ds_status(const struct kmm_daemonset_status *s)
{
	json_t *o = enc_begin(s->unknown);

	if (!o ||
	    (s->nodes_matching_selector_number &&
	     enc_new(o, "nodesMatchingSelectorNumber",
		     json_integer(s->nodes_matching_selector_number)) < 0) ||
	    (s->desired_number &&
	     enc_new(o, "desiredNumber", json_integer(s->desired_number)) < 0) ||
	    (s->available_number &&
	     enc_new(o, "availableNumber", json_integer(s->available_number)) < 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static void status_done(struct kmm_module_status *s)
{
	json_decref(s->module_loader.unknown);
	json_decref(s->device_plugin.unknown);
	json_decref(s->dra.unknown);
	json_decref(s->conditions);
	json_decref(s->unknown);
}

static int dec_status(struct dec *d, const json_t *root, struct kmm_module *m)
{
	static const char *const known[] = { "moduleLoader", "devicePlugin",
					     "dra",	     "imageRebuildTriggerGeneration",
					     "conditions",   NULL };
	struct kmm_module_status *s = &m->status;
	const json_t *v;
	int r;

	r = dec_object(d, root, "", "status");
	if (r <= 0)
		return r;
	m->has_status = true;
	v = json_object_get(root, "status");
	r = 0;
	STEP(dec_unknown(d, v, "status", known, &s->unknown));
	STEP(dec_ds_status(d, v, "status", "moduleLoader", &s->module_loader));
	STEP(dec_ds_status(d, v, "status", "devicePlugin", &s->device_plugin));
	STEP(dec_ds_status(d, v, "status", "dra", &s->dra));
	STEP(dec_int(d, v, "status", "imageRebuildTriggerGeneration", INT64_MIN, INT64_MAX,
		     &s->has_image_rebuild_trigger_generation,
		     &s->image_rebuild_trigger_generation));
	STEP(dec_json(d, v, "status", "conditions", JSON_ARRAY, &s->conditions));
	return r;
}

static json_t *enc_status(const struct kmm_module_status *s)
{
	json_t *o = enc_begin(s->unknown);

	if (!o || enc_new(o, "moduleLoader", enc_ds_status(&s->module_loader)) < 0 ||
	    enc_new(o, "devicePlugin", enc_ds_status(&s->device_plugin)) < 0 ||
	    enc_new(o, "dra", enc_ds_status(&s->dra)) < 0 ||
	    (s->has_image_rebuild_trigger_generation &&
	     enc_new(o, "imageRebuildTriggerGeneration",
		     json_integer(s->image_rebuild_trigger_generation)) < 0) ||
	    enc_json(o, "conditions", s->conditions) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

void kmm_module_free(struct kmm_module *m)
{
	if (!m)
		return;
	free(m->name);
	free(m->namespace);
	json_decref(m->metadata);
	spec_done(&m->spec);
	status_done(&m->status);
	json_decref(m->unknown);
	free(m);
}

int kmm_module_from_json(const json_t *j, unsigned flags, struct kmm_module **ret,
			 struct kmm_error **err)
{
	static const char *const versions[] = { KMM_API_VERSION, NULL };
	static const char *const known[] = { "apiVersion", "kind",   "metadata",
					     "spec",	   "status", NULL };
	_cleanup_(kmm_module_freep) struct kmm_module *m = NULL;
	struct dec d = { .flags = flags, .err = err };
	int r = 0;

	r = dec_type_meta(&d, j, "Module", versions);
	if (r < 0)
		return r;
	m = calloc(1, sizeof(*m));
	if (!m)
		return dec_oom(&d);
	STEP(dec_unknown(&d, j, "", known, &m->unknown));
	STEP(dec_metadata(&d, j, true, &m->name, &m->namespace, &m->generation, &m->metadata));
	STEP(dec_spec(&d, j, &m->spec));
	STEP(dec_status(&d, j, m));
	if (r < 0)
		return r;
	*ret = TAKE_PTR(m);
	return 0;
}

json_t *kmm_module_to_json(const struct kmm_module *m)
{
	json_t *o = enc_begin(m->unknown), *md;

	if (!o)
		return NULL;
	md = m->metadata ? json_deep_copy(m->metadata) : json_object();
	if (md && !str_empty(m->name) && enc_str(md, "name", m->name) < 0)
		goto fail_md;
	if (md && !str_empty(m->namespace) && enc_str(md, "namespace", m->namespace) < 0)
		goto fail_md;
	if (enc_str(o, "apiVersion", KMM_API_VERSION) < 0 || enc_str(o, "kind", "Module") < 0 ||
	    enc_new(o, "metadata", md) < 0 || enc_new(o, "spec", enc_spec(&m->spec)) < 0 ||
	    (m->has_status && enc_new(o, "status", enc_status(&m->status)) < 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
fail_md:
	json_decref(md);
	json_decref(o);
	return NULL;
}
