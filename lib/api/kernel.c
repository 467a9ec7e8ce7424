/* SPDX-License-Identifier: Apache-2.0 */
/* Kernel strings, template variables and kernel-mapping resolution (reference §2). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-hashmap.h"
#include "kmm/api-kernel.h"
#include "kmm/shared-strv.h"
#include "kmm/api-template.h"
#include "lib/api/decode.h"

char *kmm_kernel_trim(const char *k)
{
	size_t n = strlen(k);

	if (n > 0 && k[n - 1] == '+')
		n--;
	return strndup(k, n);
}

void kmm_kernel_vars_done(struct kmm_kernel_vars *v)
{
	if (!v)
		return;
	free(v->full);
	free(v->xyz);
	free(v->x);
	free(v->y);
	free(v->z);
	*v = (struct kmm_kernel_vars){ 0 };
}

/* Splits on [.,-] keeping empty fields (Go regexp.Split semantics). */
static int split_fields(const char *s, char ***ret)
{
	_cleanup_strv_free_ char **v = calloc(1, sizeof(char *));
	const char *start = s;

	if (!v)
		return -ENOMEM;
	for (const char *p = s;; p++) {
		if (*p == '.' || *p == ',' || *p == '-' || *p == '\0') {
			char *f = strndup(start, (size_t)(p - start));

			if (!f || kmm_strv_consume(&v, f) < 0) {
				free(f);
				return -ENOMEM;
			}
			if (*p == '\0')
				break;
			start = p + 1;
		}
	}
	*ret = TAKE_PTR(v);
	return 0;
}

int kmm_kernel_vars_init(struct kmm_kernel_vars *v, const char *kernel, struct kmm_error **err)
{
	struct kmm_kernel_vars kv = { 0 };
	_cleanup_strv_free_ char **f = NULL;

	kv.full = strdup(kernel);
	if (!kv.full)
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (char *p = kv.full; *p; p++) {
		char c = *p;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			*p = '_';
	}
	if (split_fields(kv.full, &f) < 0) {
		kmm_kernel_vars_done(&kv);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	if (kmm_strv_length(f) < 3) {
		kmm_kernel_vars_done(&kv);
		return kmm_error_make(
		    err, EINVAL,
		    "kernel version \"%s\" has fewer than 3 fields separated by . , or -", kernel);
	}
	kv.x = strdup(f[0]);
	kv.y = strdup(f[1]);
	kv.z = strdup(f[2]);
	if (asprintf(&kv.xyz, "%s.%s.%s", f[0], f[1], f[2]) < 0)
		kv.xyz = NULL;
	if (!kv.x || !kv.y || !kv.z || !kv.xyz) {
		kmm_kernel_vars_done(&kv);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	*v = kv;
	return 0;
}

int kmm_kernel_expand(const char *tmpl, const struct kmm_kernel_vars *kv, const char *mod_name,
		      const char *mod_namespace, char **ret, struct kmm_error **err)
{
	const char *names[] = { "KERNEL_FULL_VERSION",
				"KERNEL_VERSION",
				"KERNEL_XYZ",
				"KERNEL_X",
				"KERNEL_Y",
				"KERNEL_Z",
				"MOD_NAME",
				"MOD_NAMESPACE",
				NULL };
	const char *values[] = { kv->full, kv->full, kv->xyz,	    kv->x, kv->y,
				 kv->z,	   mod_name, mod_namespace, NULL };
	struct kmm_template_vars vars = { names, values };

	if (!mod_name)
		names[6] = NULL; /* MOD_* are only set for container images */
	return kmm_template_expand(tmpl, &vars, ret, err);
}

/* ------------------------------------------------------------------------- */

struct kmm_mapper {
	int64_t generation;
	size_t n;
	struct kmm_regexp **re; /* re[i] for kernelMappings[i].regexp, else NULL */
};

int64_t kmm_mapper_generation(const struct kmm_mapper *mp)
{
	return mp->generation;
}

void kmm_mapper_free(struct kmm_mapper *mp)
{
	if (!mp)
		return;
	for (size_t i = 0; i < mp->n; i++)
		kmm_regexp_free(mp->re[i]);
	free(mp->re);
	free(mp);
}

int kmm_mapper_new(const struct kmm_module *m, struct kmm_mapper **ret, struct kmm_error **err)
{
	_cleanup_(kmm_mapper_freep) struct kmm_mapper *mp = NULL;
	const struct kmm_module_loader_container *c;
	int r;

	mp = calloc(1, sizeof(*mp));
	if (!mp)
		return kmm_error_make(err, ENOMEM, "out of memory");
	mp->generation = m->generation;
	if (m->spec.module_loader) {
		c = &m->spec.module_loader->container;
		mp->re = calloc(c->n_kernel_mappings + 1, sizeof(*mp->re));
		if (!mp->re)
			return kmm_error_make(err, ENOMEM, "out of memory");
		mp->n = c->n_kernel_mappings;
		for (size_t i = 0; i < c->n_kernel_mappings; i++) {
			const char *pat = c->kernel_mappings[i].regexp;

			if (str_empty(pat))
				continue;
			r = kmm_regexp_compile(pat, &mp->re[i], err);
			if (r < 0)
				return kmm_error_wrap(
				    err, "spec.moduleLoader.container.kernelMappings[%zu].regexp",
				    i);
		}
	}
	*ret = TAKE_PTR(mp);
	return 0;
}

void kmm_resolved_mapping_free(struct kmm_resolved_mapping *r)
{
	if (!r)
		return;
	free(r->kernel);
	free(r->reason);
	free(r->container_image);
	kmm_build_free(r->build);
	kmm_sign_free(r->sign);
	json_decref(r->registry_tls.unknown);
	kmm_strv_free(r->in_tree_modules_to_remove);
	free(r);
}

static int cmp_arg_name(const void *a, const void *b)
{
	const struct kmm_build_arg *x = a, *y = b;

	return strcmp(x->name, y->name);
}

/* Merge rules of §2.3 for build. */
static struct kmm_build *merge_build(const struct kmm_build *mod, const struct kmm_build *map)
{
	struct kmm_build *b;
	struct kmm_build_arg *extra = NULL, *nargs;
	size_t n_extra = 0;

	if (!mod || !map)
		return kmm_build_copy(mod ? mod : map);
	b = kmm_build_copy(mod);
	if (!b)
		return NULL;
	if (map->dockerfile_config_map) {
		free(b->dockerfile_config_map);
		b->dockerfile_config_map = strdup(map->dockerfile_config_map);
		if (!b->dockerfile_config_map)
			goto oom;
	}
	extra = calloc(map->n_build_args + 1, sizeof(*extra));
	if (!extra)
		goto oom;
	for (size_t i = 0; i < map->n_build_args; i++) {
		bool found = false;

		for (size_t k = 0; k < b->n_build_args; k++)
			if (strcmp(b->build_args[k].name, map->build_args[i].name) == 0) {
				char *v = strdup(map->build_args[i].value);

				if (!v)
					goto oom;
				free(b->build_args[k].value);
				b->build_args[k].value = v;
				found = true;
			}
		if (!found)
			extra[n_extra++] = map->build_args[i]; /* borrowed, copied below */
	}
	qsort(extra, n_extra, sizeof(*extra), cmp_arg_name);
	nargs = reallocarray(b->build_args, b->n_build_args + n_extra + 1, sizeof(*nargs));
	if (!nargs)
		goto oom;
	b->build_args = nargs;
	for (size_t i = 0; i < n_extra; i++) {
		struct kmm_build_arg *a = &b->build_args[b->n_build_args];

		*a = (struct kmm_build_arg){ strdup(extra[i].name), strdup(extra[i].value), NULL };
		b->n_build_args++;
		if (!a->name || !a->value)
			goto oom;
	}
	if (kmm_strv_extend(&b->secrets, map->secrets) < 0)
		goto oom;
	free(extra);
	return b;
oom:
	free(extra);
	kmm_build_free(b);
	return NULL;
}

static struct kmm_sign *merge_sign(const struct kmm_sign *mod, const struct kmm_sign *map)
{
	struct kmm_sign *s;

	if (!mod || !map)
		return kmm_sign_copy(mod ? mod : map);
	s = kmm_sign_copy(mod);
	if (!s)
		return NULL;
	if (!str_empty(map->unsigned_image)) {
		free(s->unsigned_image);
		if (!(s->unsigned_image = strdup(map->unsigned_image)))
			goto oom;
	}
	if (map->key_secret) {
		free(s->key_secret);
		if (!(s->key_secret = strdup(map->key_secret)))
			goto oom;
	}
	if (map->cert_secret) {
		free(s->cert_secret);
		if (!(s->cert_secret = strdup(map->cert_secret)))
			goto oom;
	}
	if (kmm_strv_extend(&s->files_to_sign, map->files_to_sign) < 0)
		goto oom;
	return s;
oom:
	kmm_sign_free(s);
	return NULL;
}

static int template_sign(struct kmm_sign *s, const struct kmm_kernel_vars *kv,
			 struct kmm_error **err)
{
	int r;

	if (!str_empty(s->unsigned_image)) {
		char *out = NULL;

		r = kmm_kernel_expand(s->unsigned_image, kv, NULL, NULL, &out, err);
		if (r < 0)
			return kmm_error_wrap(err, "sign.unsignedImage");
		free(s->unsigned_image);
		s->unsigned_image = out;
	}
	for (size_t i = 0; s->files_to_sign && s->files_to_sign[i]; i++) {
		char *out = NULL;

		r = kmm_kernel_expand(s->files_to_sign[i], kv, NULL, NULL, &out, err);
		if (r < 0)
			return kmm_error_wrap(err, "sign.filesToSign[%zu]", i);
		free(s->files_to_sign[i]);
		s->files_to_sign[i] = out;
	}
	return 0;
}

static int resolve_in_tree(const struct kmm_module_loader_container *c,
			   const struct kmm_kernel_mapping *km, char ***ret)
{
	char *const *list = km->has_in_tree_modules_to_remove ? km->in_tree_modules_to_remove
							      : c->in_tree_modules_to_remove;
	const char *single = !str_empty(km->in_tree_module_to_remove) ? km->in_tree_module_to_remove
								      : c->in_tree_module_to_remove;
	char **v;

	if (!str_empty(single)) {
		v = calloc(1, sizeof(char *));
		if (!v || kmm_strv_push(&v, single) < 0) {
			free(v);
			return -ENOMEM;
		}
	} else {
		v = kmm_strv_copy(list);
		if (!v)
			return -ENOMEM;
	}
	*ret = v;
	return 0;
}

int kmm_mapper_resolve(const struct kmm_mapper *mp, const struct kmm_module *m,
		       const char *node_kernel, struct kmm_resolved_mapping **ret,
		       struct kmm_error **err)
{
	_cleanup_(kmm_resolved_mapping_freep) struct kmm_resolved_mapping *res = NULL;
	_cleanup_free_ char *kernel = NULL;
	struct kmm_kernel_vars kv = { 0 };
	const struct kmm_module_loader_container *c;
	const struct kmm_kernel_mapping *km = NULL;
	size_t idx = 0;
	int r;

	if (!m->spec.module_loader)
		return 0;
	c = &m->spec.module_loader->container;
	if (!mp || mp->n != c->n_kernel_mappings)
		return kmm_error_make(err, EINVAL, "kernel mapper built for another Module");
	kernel = kmm_kernel_trim(node_kernel);
	if (!kernel)
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < c->n_kernel_mappings && !km; i++) {
		const struct kmm_kernel_mapping *k = &c->kernel_mappings[i];

		if (!str_empty(k->literal) && strcmp(k->literal, kernel) == 0) {
			km = k;
			idx = i;
		} else if (mp->re[i]) {
			r = kmm_regexp_match(mp->re[i], kernel);
			if (r < 0)
				return kmm_error_make(
				    err, -r, "kernelMappings[%zu].regexp: match limit reached", i);
			if (r > 0) {
				km = k;
				idx = i;
			}
		}
	}
	if (!km)
		return 0;

	res = calloc(1, sizeof(*res));
	if (!res)
		return kmm_error_make(err, ENOMEM, "out of memory");
	res->index = idx;
	res->kernel = TAKE_PTR(kernel);
	if (!str_empty(km->literal))
		r = asprintf(&res->reason, "kernelMappings[%zu]: literal \"%s\" equals the kernel",
			     idx, km->literal);
	else
		r = asprintf(&res->reason, "kernelMappings[%zu]: regexp \"%s\" matches", idx,
			     km->regexp);
	if (r < 0) {
		res->reason = NULL;
		return kmm_error_make(err, ENOMEM, "out of memory");
	}

	r = kmm_kernel_vars_init(&kv, res->kernel, err);
	if (r < 0)
		return r;
	r = kmm_kernel_expand(!str_empty(km->container_image) ? km->container_image
							      : c->container_image,
			      &kv, m->name, m->namespace, &res->container_image, err);
	if (r < 0) {
		kmm_kernel_vars_done(&kv);
		return kmm_error_wrap(err, "kernelMappings[%zu].containerImage", idx);
	}
	if (km->build || c->build) {
		res->build = merge_build(c->build, km->build);
		if (!res->build) {
			kmm_kernel_vars_done(&kv);
			return kmm_error_make(err, ENOMEM, "out of memory");
		}
	}
	if (km->sign || c->sign) {
		res->sign = merge_sign(c->sign, km->sign);
		if (!res->sign) {
			kmm_kernel_vars_done(&kv);
			return kmm_error_make(err, ENOMEM, "out of memory");
		}
		r = template_sign(res->sign, &kv, err);
		if (r < 0) {
			kmm_kernel_vars_done(&kv);
			return kmm_error_wrap(err, "kernelMappings[%zu]", idx);
		}
	}
	kmm_kernel_vars_done(&kv);
	{
		const struct kmm_tls_options *t =
		    km->registry_tls ? km->registry_tls : &c->registry_tls;

		res->registry_tls.insecure = t->insecure;
		res->registry_tls.insecure_skip_tls_verify = t->insecure_skip_tls_verify;
	}
	if (resolve_in_tree(c, km, &res->in_tree_modules_to_remove) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	*ret = TAKE_PTR(res);
	return 1;
}

/* ------------------------------------------------------------------------- */

struct kmm_mapper_cache {
	pthread_mutex_t lock;
	struct kmm_hashmap *map; /* "ns/name" -> struct kmm_mapper */
	uint64_t compilations;
};

static void mapper_free_void(void *p)
{
	kmm_mapper_free(p);
}

struct kmm_mapper_cache *kmm_mapper_cache_new(void)
{
	struct kmm_mapper_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->map = kmm_hashmap_new(mapper_free_void);
	if (!c->map) {
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void kmm_mapper_cache_free(struct kmm_mapper_cache *c)
{
	if (!c)
		return;
	kmm_hashmap_free(c->map);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

uint64_t kmm_mapper_cache_compilations(const struct kmm_mapper_cache *c)
{
	return c->compilations;
}

void kmm_mapper_cache_forget(struct kmm_mapper_cache *c, const char *ns, const char *name)
{
	_cleanup_free_ char *key = NULL;

	if (asprintf(&key, "%s/%s", ns ? ns : "", name ? name : "") < 0)
		return;
	pthread_mutex_lock(&c->lock);
	kmm_mapper_free(kmm_hashmap_remove(c->map, key));
	pthread_mutex_unlock(&c->lock);
}

int kmm_mapper_cache_resolve(struct kmm_mapper_cache *c, const struct kmm_module *m,
			     const char *node_kernel, struct kmm_resolved_mapping **ret,
			     struct kmm_error **err)
{
	_cleanup_free_ char *key = NULL;
	struct kmm_mapper *mp;
	int r;

	if (asprintf(&key, "%s/%s", m->namespace ? m->namespace : "", m->name ? m->name : "") < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	pthread_mutex_lock(&c->lock);
	mp = kmm_hashmap_get(c->map, key);
	if (!mp || mp->generation != m->generation || m->generation == 0) {
		struct kmm_mapper *fresh = NULL;

		r = kmm_mapper_new(m, &fresh, err);
		if (r < 0)
			goto out;
		c->compilations++;
		r = kmm_hashmap_put(c->map, key, fresh, NULL);
		if (r < 0) {
			kmm_mapper_free(fresh);
			r = kmm_error_make(err, ENOMEM, "out of memory");
			goto out;
		}
		mp = fresh;
	}
	r = kmm_mapper_resolve(mp, m, node_kernel, ret, err);
out:
	pthread_mutex_unlock(&c->lock);
	return r;
}

/* ------------------------------------------------------------------------- */

int kmm_module_config_for(const struct kmm_module *m, const struct kmm_resolved_mapping *res,
			  struct kmm_module_config **ret, struct kmm_error **err)
{
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *c = NULL;
	const struct kmm_module_loader_container *lc;

	if (!m->spec.module_loader)
		return kmm_error_make(err, EINVAL, "Module has no moduleLoader");
	lc = &m->spec.module_loader->container;
	c = calloc(1, sizeof(*c));
	if (!c)
		return kmm_error_make(err, ENOMEM, "out of memory");
	c->kernel_version = strdup(res->kernel);
	c->container_image = strdup(res->container_image);
	c->image_pull_policy = strdup(!str_empty(lc->image_pull_policy) ? lc->image_pull_policy
									: KMM_DEFAULT_PULL_POLICY);
	c->insecure_pull = res->registry_tls.insecure || res->registry_tls.insecure_skip_tls_verify;
	if (kmm_strv_length(res->in_tree_modules_to_remove))
		c->in_tree_modules_to_remove = kmm_strv_copy(res->in_tree_modules_to_remove);
	if (!c->kernel_version || !c->container_image || !c->image_pull_policy ||
	    (kmm_strv_length(res->in_tree_modules_to_remove) && !c->in_tree_modules_to_remove) ||
	    kmm_modprobe_spec_copy(&c->modprobe, &lc->modprobe) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	/*
	 * The worker decodes its config strictly: fields this version does not
	 * know (kept on the Module for round trips) must not reach it.
	 */
	json_decref(c->modprobe.unknown);
	c->modprobe.unknown = NULL;
	if (c->modprobe.args) {
		json_decref(c->modprobe.args->unknown);
		c->modprobe.args->unknown = NULL;
	}
	if (c->modprobe.raw_args) {
		json_decref(c->modprobe.raw_args->unknown);
		c->modprobe.raw_args->unknown = NULL;
	}
	*ret = TAKE_PTR(c);
	return 0;
}

static int argv_start(char ***v, const char *first)
{
	*v = calloc(1, sizeof(char *));
	if (!*v || kmm_strv_push(v, first) < 0)
		return -ENOMEM;
	return 0;
}

int kmm_modprobe_load_argv(const struct kmm_module_config *c, char ***ret)
{
	_cleanup_strv_free_ char **v = NULL;
	const struct kmm_modprobe_spec *mp = &c->modprobe;

	if (argv_start(&v, "modprobe") < 0)
		return -ENOMEM;
	if (mp->raw_args) {
		if (kmm_strv_extend(&v, mp->raw_args->load) < 0)
			return -ENOMEM;
	} else if (kmm_strv_push(&v, "-vd") < 0 ||
		   kmm_strv_pushf(&v, "/tmp%s", mp->dir_name ? mp->dir_name : "") < 0 ||
		   (mp->args && kmm_strv_extend(&v, mp->args->load) < 0) ||
		   kmm_strv_push(&v, mp->module_name ? mp->module_name : "") < 0 ||
		   kmm_strv_extend(&v, mp->parameters) < 0) {
		return -ENOMEM;
	}
	*ret = TAKE_PTR(v);
	return 0;
}

int kmm_modprobe_unload_argv(const struct kmm_module_config *c, char ***ret)
{
	_cleanup_strv_free_ char **v = NULL;
	const struct kmm_modprobe_spec *mp = &c->modprobe;

	if (argv_start(&v, "modprobe") < 0)
		return -ENOMEM;
	if (mp->raw_args) {
		if (kmm_strv_extend(&v, mp->raw_args->unload) < 0)
			return -ENOMEM;
	} else if (kmm_strv_push(&v, "-rvd") < 0 ||
		   kmm_strv_pushf(&v, "/tmp%s", mp->dir_name ? mp->dir_name : "") < 0 ||
		   (mp->args && kmm_strv_extend(&v, mp->args->unload) < 0)) {
		return -ENOMEM;
	} else if (kmm_strv_length(mp->modules_loading_order)) {
		if (kmm_strv_extend(&v, mp->modules_loading_order) < 0)
			return -ENOMEM;
	} else if (kmm_strv_push(&v, mp->module_name ? mp->module_name : "") < 0) {
		return -ENOMEM;
	}
	*ret = TAKE_PTR(v);
	return 0;
}

int kmm_modprobe_in_tree_argv(const struct kmm_module_config *c, char ***ret)
{
	_cleanup_strv_free_ char **v = NULL;

	if (kmm_strv_length(c->in_tree_modules_to_remove) == 0 &&
	    str_empty(c->in_tree_module_to_remove)) {
		*ret = NULL;
		return 0;
	}
	if (argv_start(&v, "modprobe") < 0 || kmm_strv_push(&v, "-rv") < 0)
		return -ENOMEM;
	if (kmm_strv_length(c->in_tree_modules_to_remove)) {
		if (kmm_strv_extend(&v, c->in_tree_modules_to_remove) < 0)
			return -ENOMEM;
	} else if (kmm_strv_push(&v, c->in_tree_module_to_remove) < 0) {
		return -ENOMEM;
	}
	*ret = TAKE_PTR(v);
	return 0;
}
