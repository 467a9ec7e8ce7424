/* SPDX-License-Identifier: Apache-2.0 */
/* Test helpers: Modules from inline YAML. */
#ifndef KMM_TESTS_UNIT_API_HELPERS_H
#define KMM_TESTS_UNIT_API_HELPERS_H

#include <string.h>

#include "kmm/api.h"
#include "kmm/shared-yaml.h"

/* Parses the single YAML document `y` as a Module; r gets the result code. */
static inline int module_from_yaml(const char *y, unsigned flags, struct kmm_module **ret,
				   struct kmm_error **err)
{
	json_t *docs = NULL;
	int r = kmm_yaml_parse(y, strlen(y), "test.yaml", KMM_YAML_BOOL_1_1, &docs, err);

	if (r < 0)
		return r;
	r = kmm_module_from_json(json_array_get(docs, 0), flags, ret, err);
	json_decref(docs);
	return r;
}

#endif
