/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Module validating webhook's rules (reference §1.8), in upstream's order.
 * Used by the webhook server and by `kmmctl validate`.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api.h"
#include "kmm/shared-fileio.h"
#include "kmm/api-kernel.h"
#include "kmm/shared-strv.h"
#include "lib/api/decode.h"
#include "lib/api/validate-internal.h"
#include "lib/testable.h"

#define MAX_NAME_NAMESPACE 41
#define ML "spec.moduleLoader.container"

struct verr {
	bool all;
	char **msgs;
	bool oom;
};

_printf_(2, 3) static bool add(struct verr *v, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0 || kmm_strv_consume(&v->msgs, s) < 0) {
		if (r >= 0)
			free(s);
		v->oom = true;
	}
	/* Tells the caller whether to stop. */
	return !v->all;
}

static bool done(const struct verr *v)
{
	return v->oom || (!v->all && v->msgs);
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

KMM_TESTABLE bool kmm_is_dns1123_subdomain(const char *s)
{
	size_t n = strlen(s);
	bool start = true;

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool lower_alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (start) {
			if (!lower_alnum)
				return false;
			start = false;
			continue;
		}
		if (c == '.') {
			if (s[i - 1] == '-')
				return false;
			start = true;
			continue;
		}
		if (!lower_alnum && c != '-')
			return false;
	}
	return !start && s[n - 1] != '-';
}

/* [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])? of at most 63 characters. */
static bool is_label_name_part(const char *s, size_t n)
{
	if (n == 0 || n > 63 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

KMM_TESTABLE bool kmm_is_qualified_name(const char *s)
{
	const char *slash = strchr(s, '/');

	if (!slash)
		return is_label_name_part(s, strlen(s));
	if (strchr(slash + 1, '/'))
		return false;
	{
		_cleanup_free_ char *prefix = strndup(s, (size_t)(slash - s));

		if (!prefix || !kmm_is_dns1123_subdomain(prefix))
			return false;
	}
	return is_label_name_part(slash + 1, strlen(slash + 1));
}

KMM_TESTABLE bool kmm_is_label_value(const char *s)
{
	return *s == '\0' || is_label_name_part(s, strlen(s));
}

static void validate_tolerations(const struct kmm_module_spec *s, struct verr *v)
{
	for (size_t i = 0; i < s->n_tolerations && !done(v); i++) {
		const struct kmm_toleration *t = &s->tolerations[i];
		const char *key = t->key ? t->key : "", *op = t->operator? t->operator: "";
		const char *val = t->value ? t->value : "", *eff = t->effect ? t->effect : "";

		if (*key && !kmm_is_qualified_name(key) &&
		    add(v,
			"spec.tolerations[%zu].key: Invalid value: \"%s\": must be a qualified "
			"name",
			i, key))
			return;
		if (!*key && strcmp(op, "Exists") != 0 &&
		    add(v,
			"spec.tolerations[%zu].operator: Invalid value: \"%s\": operator must be "
			"Exists when `key` is empty, which means \"match all values and all keys\"",
			i, op))
			return;
		if (t->has_toleration_seconds && strcmp(eff, "NoExecute") != 0 &&
		    add(v,
			"spec.tolerations[%zu].effect: Invalid value: \"%s\": effect must be "
			"'NoExecute' when `tolerationSeconds` is set",
			i, eff))
			return;
		if (!*op || strcmp(op, "Equal") == 0) {
			if (!kmm_is_label_value(val) &&
			    add(v,
				"spec.tolerations[%zu].value: Invalid value: \"%s\": must be a "
				"valid label value",
				i, val))
				return;
		} else if (strcmp(op, "Exists") == 0) {
			if (*val && add(v,
					"spec.tolerations[%zu].operator: Invalid value: \"%s\": "
					"value must be empty when `operator` is 'Exists'",
					i, val))
				return;
		} else if (add(v,
			       "spec.tolerations[%zu].operator: Unsupported value: \"%s\": "
			       "supported values: \"Equal\", \"Exists\"",
			       i, op)) {
			return;
		}
		if (*eff && strcmp(eff, "NoSchedule") != 0 &&
		    strcmp(eff, "PreferNoSchedule") != 0 && strcmp(eff, "NoExecute") != 0 &&
		    add(v,
			"spec.tolerations[%zu].effect: Unsupported value: \"%s\": supported "
			"values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
			i, eff))
			return;
	}
}

static void validate_dra(const struct kmm_plugin_spec *d, int k8s_minor, struct verr *v)
{
	if (!d)
		return;
	if (k8s_minor >= 0 && k8s_minor < 34 &&
	    add(v, "spec.dra: DRA requires Kubernetes 1.34 or newer (the API server is 1.%d)",
		k8s_minor))
		return;
	if (str_empty(d->driver_name)) {
		if (add(v, "spec.dra.driverName: Required value: must not be empty"))
			return;
	} else if (!kmm_is_dns1123_subdomain(d->driver_name) &&
		   add(v,
		       "spec.dra.driverName: Invalid value: \"%s\": must be a lowercase RFC 1123 "
		       "subdomain",
		       d->driver_name)) {
		return;
	}
	for (size_t i = 0; i < d->n_device_classes && !done(v); i++) {
		const char *name = d->device_classes[i].name;

		if (str_empty(name)) {
			if (add(v,
				"spec.dra.deviceClasses[%zu].name: Required value: must not be "
				"empty",
				i))
				return;
			continue;
		}
		if (!kmm_is_dns1123_subdomain(name) &&
		    add(v,
			"spec.dra.deviceClasses[%zu].name: Invalid value: \"%s\": must be a "
			"lowercase RFC 1123 subdomain",
			i, name))
			return;
		for (size_t k = 0; k < i; k++)
			if (str_equal(d->device_classes[k].name, name) &&
			    add(v, "spec.dra.deviceClasses[%zu].name: Duplicate value: \"%s\"", i,
				name))
				return;
	}
}

/* Lexical cleaning as Go's filepath.Clean, for absolute and relative paths. */
KMM_TESTABLE char *kmm_path_clean(const char *p)
{
	bool rooted = p[0] == '/';
	size_t n = strlen(p);
	char *out = malloc(n + 2);
	size_t w = 0, dotdot;
	size_t r = 0;

	if (!out)
		return NULL;
	if (rooted) {
		out[w++] = '/';
		r = 1;
	}
	dotdot = w;
	while (r < n) {
		if (p[r] == '/') {
			r++;
		} else if (p[r] == '.' && (r + 1 == n || p[r + 1] == '/')) {
			r++;
		} else if (p[r] == '.' && p[r + 1] == '.' && (r + 2 == n || p[r + 2] == '/')) {
			r += 2;
			if (w > dotdot) {
				w--;
				while (w > dotdot && out[w] != '/')
					w--;
			} else if (!rooted) {
				if (w > 0)
					out[w++] = '/';
				out[w++] = '.';
				out[w++] = '.';
				dotdot = w;
			}
		} else {
			if ((rooted && w != 1) || (!rooted && w != 0))
				out[w++] = '/';
			for (; r < n && p[r] != '/'; r++)
				out[w++] = p[r];
		}
	}
	if (w == 0)
		out[w++] = '.';
	out[w] = '\0';
	return out;
}

static bool host_path_allowed(const char *clean)
{
	static const char *const allowed[] = { "/dev", "/sys", "/var", "/opt", "/run" };

	for (size_t i = 0; i < KMM_ARRAY_SIZE(allowed); i++) {
		size_t n = strlen(allowed[i]);

		/* strncmp matched n bytes, so clean[n] exists. */
		/* NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
		if (strncmp(clean, allowed[i], n) == 0 && (clean[n] == '\0' || clean[n] == '/'))
			return true;
	}
	return false;
}

static void validate_volumes(const char *field, const json_t *vols, struct verr *v)
{
	size_t i;
	json_t *vol;

	json_array_foreach ((json_t *)vols, i, vol) {
		const char *path =
		    json_string_value(json_object_get(json_object_get(vol, "hostPath"), "path"));
		_cleanup_free_ char *clean = NULL;

		if (!path)
			continue;
		clean = kmm_path_clean(path);
		if (!clean) {
			v->oom = true;
			return;
		}
		if (!host_path_allowed(clean) &&
		    add(v,
			"%s.volumes[%zu].hostPath.path: Forbidden: \"%s\" is not under /dev, /sys, "
			"/var, /opt or /run",
			field, i, path))
			return;
	}
}

static bool has_tag_or_digest(const char *image)
{
	return strchr(image, ':') || strchr(image, '@');
}

static void validate_sign(const char *field, const struct kmm_sign *s, const char *dir_name,
			  struct verr *v)
{
	_cleanup_free_ char *prefix = NULL;

	if (!s)
		return;
	if (kmm_strv_length(s->files_to_sign) == 0) {
		add(v, "%s.filesToSign: Required value: at least one file to sign must be set",
		    field);
		return;
	}
	if (asprintf(&prefix, "%s/", dir_name ? dir_name : "") < 0) {
		v->oom = true;
		return;
	}
	for (size_t i = 0; s->files_to_sign[i] && !done(v); i++)
		if (strncmp(s->files_to_sign[i], prefix, strlen(prefix)) != 0 &&
		    add(v,
			"%s.filesToSign[%zu]: Invalid value: \"%s\": must be under the modprobe "
			"dirName %s",
			field, i, s->files_to_sign[i], prefix))
			return;
}

static void validate_modprobe(const struct kmm_modprobe_spec *m, struct verr *v)
{
	size_t n;

	if (!str_empty(m->module_name) && m->raw_args &&
	    add(v, ML ".modprobe: Invalid value: moduleName and rawArgs are mutually exclusive"))
		return;
	if (str_empty(m->module_name) &&
	    (!m->raw_args || kmm_strv_length(m->raw_args->load) == 0 ||
	     kmm_strv_length(m->raw_args->unload) == 0) &&
	    add(v, ML ".modprobe.moduleName: Required value: either moduleName or both "
		      "rawArgs.load and rawArgs.unload must be set"))
		return;
	/* Both name places inside the image: ".." would climb out of it onto the node. */
	if (m->dir_name && kmm_path_has_dotdot(m->dir_name) &&
	    add(v, ML ".modprobe.dirName: Invalid value: \"%s\": must not contain '..'",
		m->dir_name))
		return;
	if (m->firmware_path && kmm_path_has_dotdot(m->firmware_path) &&
	    add(v, ML ".modprobe.firmwarePath: Invalid value: \"%s\": must not contain '..'",
		m->firmware_path))
		return;
	n = kmm_strv_length(m->modules_loading_order);
	if (n == 0)
		return;
	if (n < 2 &&
	    add(v, ML ".modprobe.modulesLoadingOrder: Invalid value: must list at least 2 modules"))
		return;
	if (str_empty(m->module_name)) {
		add(v, ML ".modprobe.modulesLoadingOrder: Invalid value: requires "
			  "modprobe.moduleName to be set");
		return;
	}
	if (strcmp(m->modules_loading_order[0], m->module_name) != 0 &&
	    add(v,
		ML ".modprobe.modulesLoadingOrder[0]: Invalid value: \"%s\": must be equal to "
		   "moduleName \"%s\"",
		m->modules_loading_order[0], m->module_name))
		return;
	for (size_t i = 1; i < n; i++)
		for (size_t k = 0; k < i; k++)
			if (strcmp(m->modules_loading_order[i], m->modules_loading_order[k]) == 0 &&
			    add(v, ML ".modprobe.modulesLoadingOrder[%zu]: Duplicate value: \"%s\"",
				i, m->modules_loading_order[i]))
				return;
}

static void validate_mapping(const struct kmm_module_loader_container *c, size_t i, struct verr *v)
{
	const struct kmm_kernel_mapping *km = &c->kernel_mappings[i];
	bool has_re = !str_empty(km->regexp), has_lit = !str_empty(km->literal);
	bool c_list = kmm_strv_length(c->in_tree_modules_to_remove) > 0;
	bool c_one = !str_empty(c->in_tree_module_to_remove);
	bool m_list = kmm_strv_length(km->in_tree_modules_to_remove) > 0;
	bool m_one = !str_empty(km->in_tree_module_to_remove);
	char field[96];

	snprintf(field, sizeof(field), ML ".kernelMappings[%zu]", i);
	if (has_re && has_lit &&
	    add(v, "%s: Invalid value: regexp and literal are mutually exclusive", field))
		return;
	if (!has_re && !has_lit &&
	    add(v, "%s: Required value: regexp or literal must be set", field))
		return;
	if (has_re) {
		_cleanup_error_ struct kmm_error *e = NULL;

		struct kmm_regexp *re = NULL;
		int rc = kmm_regexp_compile(km->regexp, &re, &e);

		kmm_regexp_free(re);
		if (rc < 0 && add(v, "%s.regexp: Invalid value: \"%s\": %s", field, km->regexp,
				  kmm_error_message(e)))
			return;
	}
	if (str_empty(km->container_image)) {
		if (str_empty(c->container_image) &&
		    add(v,
			"%s.containerImage: Required value: must be set when the container-level "
			"containerImage is empty",
			field))
			return;
	} else if (
	    !has_tag_or_digest(km->container_image) &&
	    add(v, "%s.containerImage: Invalid value: \"%s\": must explicitly set a tag or digest",
		field, km->container_image)) {
		return;
	}
	if (m_list && m_one &&
	    add(v,
		"%s: Invalid value: inTreeModulesToRemove and inTreeModuleToRemove are mutually "
		"exclusive",
		field))
		return;
	if (((c_list && m_one) || (c_one && m_list)) &&
	    add(v,
		"%s: Invalid value: inTreeModulesToRemove and inTreeModuleToRemove cannot be mixed "
		"between the container and the kernel mapping",
		field))
		return;
	if (km->sign) {
		char sf[112];

		snprintf(sf, sizeof(sf), "%s.sign", field);
		validate_sign(sf, km->sign, c->modprobe.dir_name, v);
	}
}

static void validate_loader(const struct kmm_module_loader *l, struct verr *v)
{
	const struct kmm_module_loader_container *c;

	if (!l)
		return;
	c = &l->container;
	if (kmm_strv_length(c->in_tree_modules_to_remove) &&
	    !str_empty(c->in_tree_module_to_remove) &&
	    add(v, ML ": Invalid value: inTreeModulesToRemove and inTreeModuleToRemove are "
		      "mutually exclusive"))
		return;
	if (!str_empty(c->container_image) && !has_tag_or_digest(c->container_image) &&
	    add(v, ML ".containerImage: Invalid value: \"%s\": must explicitly set a tag or digest",
		c->container_image))
		return;
	if (c->n_kernel_mappings == 0 &&
	    add(v, ML ".kernelMappings: Required value: at least one kernel mapping is required"))
		return;
	for (size_t i = 0; i < c->n_kernel_mappings && !done(v); i++)
		validate_mapping(c, i, v);
	if (done(v))
		return;
	validate_modprobe(&c->modprobe, v);
	if (done(v))
		return;
	validate_sign(ML ".sign", c->sign, c->modprobe.dir_name, v);
}

int kmm_module_validate(const struct kmm_module *m, const struct kmm_module *old, int k8s_minor,
			bool all, struct kmm_error **err)
{
	struct verr v = { .all = all };
	size_t len = strlen(m->name ? m->name : "") + strlen(m->namespace ? m->namespace : "");
	_cleanup_free_ char *joined = NULL;

	if (len > MAX_NAME_NAMESPACE)
		add(&v,
		    "metadata.name: Invalid value: \"%s\": the combined length of the name and "
		    "namespace (%zu) must not exceed %d characters",
		    m->name, len, MAX_NAME_NAMESPACE);
	if (!done(&v))
		validate_tolerations(&m->spec, &v);
	if (!done(&v))
		validate_dra(m->spec.dra, k8s_minor, &v);
	if (!done(&v) && m->spec.dra)
		validate_volumes("spec.dra", m->spec.dra->volumes, &v);
	if (!done(&v) && m->spec.device_plugin)
		validate_volumes("spec.devicePlugin", m->spec.device_plugin->volumes, &v);
	if (!done(&v))
		validate_loader(m->spec.module_loader, &v);
	if (!done(&v) && old) {
		const char *ov =
		    old->spec.module_loader ? old->spec.module_loader->container.version : NULL;
		const char *nv =
		    m->spec.module_loader ? m->spec.module_loader->container.version : NULL;

		if (str_empty(ov) != str_empty(nv))
			add(&v,
			    ML ".version: Forbidden: cannot change the version from \"%s\" to "
			       "\"%s\"; please delete the Module and create it again",
			    ov ? ov : "", nv ? nv : "");
	}
	if (v.oom) {
		kmm_strv_free(v.msgs);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	if (!v.msgs)
		return 0;
	joined = kmm_strv_join(v.msgs, "; ");
	kmm_strv_free(v.msgs);
	if (!joined)
		return kmm_error_make(err, ENOMEM, "out of memory");
	return kmm_error_make(err, EINVAL, "%s", joined);
}

int kmm_kube_version_minor(const char *version)
{
	const char *p = version;
	unsigned long major = 1, minor;
	char *end;

	if (!p || !*p)
		return -1;
	if (*p == 'v')
		p++;
	errno = 0;
	minor = strtoul(p, &end, 10);
	if (end == p || errno)
		return -1;
	if (*end == '.') {
		/* "1.34[.2]": what came first was the major. */
		major = minor;
		p = end + 1;
		minor = strtoul(p, &end, 10);
		if (end == p || errno || (*end && *end != '.'))
			return -1;
	} else if (*end && strcmp(end, "+") != 0) {
		return -1;
	}
	if (major != 1 || minor > 1000)
		return -1;
	return (int)minor;
}
