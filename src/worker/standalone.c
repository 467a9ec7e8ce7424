/* SPDX-License-Identifier: Apache-2.0 */
/* Standalone mode: a Module manifest resolved for this host, as the operator would. */
#include <errno.h>
#include <string.h>
#include <sys/utsname.h>

#include "kmm/shared-json.h"
#include "kmm/shared-yaml.h"
#include "src/worker/worker.h"
#ifdef KMM_HAVE_KERNEL_MAPPING
#include "kmm/api-kernel.h"
#endif

#define MODULE_FILE_MAX ((size_t)4 * 1024 * 1024)

#ifdef KMM_HAVE_KERNEL_MAPPING
/* The first document of kind Module in the stream. */
static json_t *find_module(json_t *docs)
{
	size_t i;
	json_t *d;

	json_array_foreach (docs, i, d) {
		const char *kind = json_string_value(json_object_get(d, "kind"));
		if (kind && strcmp(kind, "Module") == 0)
			return d;
	}
	return NULL;
}
#endif

int kmm_worker_standalone_config(const char *path, const char *kernel,
				 struct kmm_module_config **ret_cfg, struct kmm_error **err)
{
#ifdef KMM_HAVE_KERNEL_MAPPING
	_cleanup_json_ json_t *docs = NULL;
	_cleanup_(kmm_module_freep) struct kmm_module *m = NULL;
	_cleanup_(kmm_mapper_freep) struct kmm_mapper *mp = NULL;
	_cleanup_(kmm_resolved_mapping_freep) struct kmm_resolved_mapping *res = NULL;
	struct utsname u;
	json_t *doc;
	int r;

	r = kmm_yaml_parse_file(path, MODULE_FILE_MAX, KMM_YAML_BOOL_1_1, &docs, err);
	if (r < 0)
		return r;
	doc = find_module(docs);
	if (!doc)
		return kmm_error_make(err, EINVAL, "%s: no document of kind Module", path);
	r = kmm_module_from_json(doc, 0, &m, err);
	if (r < 0)
		return kmm_error_wrap(err, "%s", path);
	if (!m->spec.module_loader)
		return kmm_error_make(err, EINVAL,
				      "%s: Module %s has no spec.moduleLoader: nothing to load",
				      path, m->name ? m->name : "");
	if (!kernel) {
		if (uname(&u) < 0)
			return kmm_error_make_errno(err, errno, "uname");
		kernel = u.release;
	}
	r = kmm_mapper_new(m, &mp, err);
	if (r < 0)
		return kmm_error_wrap(err, "%s", path);
	r = kmm_mapper_resolve(mp, m, kernel, &res, err);
	if (r < 0)
		return kmm_error_wrap(err, "%s: kernel %s", path, kernel);
	if (r == 0)
		return kmm_error_make(err, ENOENT,
				      "%s: no kernelMappings entry of Module %s matches kernel %s",
				      path, m->name ? m->name : "", kernel);
	return kmm_module_config_for(m, res, ret_cfg, err);
#else
	return kmm_error_make(
	    err, EOPNOTSUPP,
	    "standalone mode is not in this build (it needs lib/api's kernel mapping)");
#endif
}
