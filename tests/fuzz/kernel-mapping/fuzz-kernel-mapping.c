/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel mapping resolution: the first line is a node kernel, the rest a
 * Module (YAML). Resolution must not crash, and a match yields an image and a
 * worker config that round-trips.
 */
#include <stdlib.h>
#include <string.h>

#include "kmm/api.h"
#include "kmm/api-kernel.h"
#include "kmm/shared-yaml.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *nl = memchr(data, '\n', size);
	struct kmm_module *m = NULL;
	struct kmm_mapper *mp = NULL;
	json_t *docs = NULL;
	char *kernel;
	size_t klen;

	if (!nl || size > 256 * 1024)
		return 0;
	klen = (size_t)(nl - (const char *)data);
	kernel = strndup((const char *)data, klen);
	if (!kernel)
		return 0;
	if (kmm_api_parse_manifests(nl + 1, size - klen - 1, "fuzz", &docs, NULL) == 0 &&
	    kmm_module_from_json(json_array_get(docs, 0), 0, &m, NULL) == 0 &&
	    kmm_mapper_new(m, &mp, NULL) == 0) {
		struct kmm_resolved_mapping *res = NULL;
		struct kmm_error *err = NULL;
		int r = kmm_mapper_resolve(mp, m, kernel, &res, &err);

		if (r < 0 && !err)
			abort();
		if (r == 1) {
			struct kmm_module_config *c = NULL, *c2 = NULL;

			if (!res->container_image || !res->kernel)
				abort();
			if (kmm_module_config_for(m, res, &c, NULL) == 0) {
				json_t *j = kmm_module_config_to_json(c);

				if (!j ||
				    kmm_module_config_from_json(j, "", KMM_API_STRICT, &c2, NULL) <
					0 ||
				    !kmm_module_config_equal(c, c2))
					abort();
				json_decref(j);
			}
			kmm_module_config_free(c);
			kmm_module_config_free(c2);
		}
		kmm_resolved_mapping_free(res);
		kmm_error_free(err);
	}
	kmm_mapper_free(mp);
	kmm_module_free(m);
	json_decref(docs);
	free(kernel);
	return 0;
}
