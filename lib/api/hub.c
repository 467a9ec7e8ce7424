/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ManagedClusterModule (kmm/api-hub.h). Its moduleSpec goes through the
 * Module codec as the Module the spokes get, so defaults, unknown-field
 * handling and validation are the Module's own; only the error paths are
 * moved under spec.moduleSpec.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api-hub.h"
#include "kmm/shared-json.h"

void kmm_mcm_free(struct kmm_mcm *m)
{
	if (!m)
		return;
	free(m->name);
	json_decref(m->metadata);
	free(m->spoke_namespace);
	kmm_strmap_done(&m->selector);
	kmm_module_free(m->module);
	free(m);
}

static bool only_keys(const json_t *o, const char *const *known, const char **ret_unknown)
{
	const char *k;
	const json_t *v;

	json_object_foreach ((json_t *)o, k, v) {
		bool found = false;

		for (const char *const *p = known; *p && !found; p++)
			found = strcmp(*p, k) == 0;
		if (!found) {
			*ret_unknown = k;
			return false;
		}
	}
	return true;
}

/*
 * A Module error said of the MCM: every "spec.x: ..." (the first message and
 * each one after "; " when all violations are joined) becomes
 * "spec.moduleSpec.x: ...". Takes e.
 */
static int module_error(struct kmm_error **err, struct kmm_error *e)
{
	const char *msg = kmm_error_message(e);
	int code = kmm_error_code(e), r;
	size_t n = 0, len = strlen(msg);
	_cleanup_free_ char *out = malloc(len * 4 + 1) /* "spec." grows by 11 */;

	if (!out) {
		kmm_error_free(e);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < len; i++) {
		bool segment_start = i == 0 || (i >= 2 && msg[i - 2] == ';' && msg[i - 1] == ' ');

		if (segment_start && strncmp(msg + i, "spec.", 5) == 0) {
			memcpy(out + n, "spec.moduleSpec.", 16);
			n += 16;
			i += 4;
			continue;
		}
		out[n++] = msg[i];
	}
	out[n] = '\0';
	r = kmm_error_make(err, code, "%s", out);
	kmm_error_free(e);
	return r;
}

static int parse_selector(struct kmm_mcm *m, const json_t *sel, struct kmm_error **err)
{
	const char *k;
	const json_t *v;

	if (!sel || json_is_null(sel))
		return 0;
	if (!json_is_object(sel))
		return kmm_error_make(err, EINVAL, "spec.selector: expected an object");
	json_object_foreach ((json_t *)sel, k, v) {
		if (!json_is_string(v))
			return kmm_error_make(err, EINVAL, "spec.selector.%s: expected a string",
					      k);
		if (kmm_strmap_set(&m->selector, k, json_string_value(v)) < 0)
			return kmm_error_make(err, ENOMEM, "out of memory");
	}
	return 0;
}

static int parse_module(struct kmm_mcm *m, const json_t *module_spec, unsigned flags,
			struct kmm_error **err)
{
	struct kmm_error *e = NULL;
	_cleanup_json_ json_t *module = NULL;

	if (!json_is_object(module_spec))
		return kmm_error_make(err, EINVAL, "spec.moduleSpec: %s",
				      module_spec ? "expected an object" : "Required value");
	module = json_pack("{s:s,s:s,s:{s:s,s:s},s:O}", "apiVersion", KMM_API_VERSION, "kind",
			   "Module", "metadata", "name", m->name ? m->name : "", "namespace",
			   m->spoke_namespace, "spec", module_spec);
	if (!module)
		return kmm_error_make(err, ENOMEM, "out of memory");
	/* The MCM's generation: what keeps per-generation caches (kernel mappers) fresh. */
	if (json_is_integer(json_object_get(m->metadata, "generation")) &&
	    json_object_set(json_object_get(module, "metadata"), "generation",
			    json_object_get(m->metadata, "generation")) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (kmm_module_from_json(module, flags, &m->module, &e) < 0)
		return module_error(err, e);
	return 0;
}

int kmm_mcm_from_json(const json_t *j, unsigned flags, struct kmm_mcm **ret, struct kmm_error **err)
{
	static const char *const top_keys[] = { "apiVersion", "kind",	"metadata",
						"spec",	      "status", NULL };
	static const char *const spec_keys[] = { "moduleSpec", "spokeNamespace", "selector", NULL };
	_cleanup_(kmm_mcm_freep) struct kmm_mcm *m = NULL;
	const char *av, *kind, *ns, *unknown = NULL;
	const json_t *meta, *spec, *name;
	int r;

	if (!json_is_object(j))
		return kmm_error_make(err, EINVAL, "expected an object");
	av = json_string_value(json_object_get(j, "apiVersion"));
	kind = json_string_value(json_object_get(j, "kind"));
	if (json_object_get(j, "apiVersion") && (!av || strcmp(av, KMM_HUB_API_VERSION) != 0))
		return kmm_error_make(err, EINVAL, "apiVersion: unsupported apiVersion for %s",
				      KMM_HUB_KIND_MCM);
	if (json_object_get(j, "kind") && (!kind || strcmp(kind, KMM_HUB_KIND_MCM) != 0))
		return kmm_error_make(err, EINVAL, "kind: expected %s", KMM_HUB_KIND_MCM);
	if ((flags & KMM_API_STRICT) && !only_keys(j, top_keys, &unknown))
		return kmm_error_make(err, EINVAL, "%s: unknown field", unknown);
	meta = json_object_get(j, "metadata");
	if (meta && !json_is_object(meta))
		return kmm_error_make(err, EINVAL, "metadata: expected an object");
	name = json_object_get(meta, "name");
	if (name && !json_is_string(name))
		return kmm_error_make(err, EINVAL, "metadata.name: expected a string");
	spec = json_object_get(j, "spec");
	if (!json_is_object(spec))
		return kmm_error_make(err, EINVAL, "spec: %s",
				      spec ? "expected an object" : "Required value");
	if ((flags & KMM_API_STRICT) && !only_keys(spec, spec_keys, &unknown))
		return kmm_error_make(err, EINVAL, "spec.%s: unknown field", unknown);
	ns = json_string_value(json_object_get(spec, "spokeNamespace"));
	if (json_object_get(spec, "spokeNamespace") && !ns)
		return kmm_error_make(err, EINVAL, "spec.spokeNamespace: expected a string");
	if (!ns || !*ns)
		return kmm_error_make(err, EINVAL, "spec.spokeNamespace: Required value");

	m = calloc(1, sizeof(*m));
	if (!m || !(m->metadata = meta ? json_deep_copy(meta) : json_object()) ||
	    (name && !(m->name = strdup(json_string_value(name)))) ||
	    !(m->spoke_namespace = strdup(ns)))
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = parse_selector(m, json_object_get(spec, "selector"), err);
	if (r >= 0)
		r = parse_module(m, json_object_get(spec, "moduleSpec"), flags, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(m);
	return 0;
}

int kmm_mcm_validate(const struct kmm_mcm *m, const struct kmm_mcm *old, bool all,
		     struct kmm_error **err)
{
	struct kmm_error *e = NULL;

	/* -1: no DRA version gate; upstream skips it for MCMs as well. */
	if (kmm_module_validate(m->module, old ? old->module : NULL, -1, all, &e) < 0)
		return module_error(err, e);
	return 0;
}
