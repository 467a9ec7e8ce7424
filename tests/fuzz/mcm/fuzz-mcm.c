/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ManagedClusterModule parser: YAML/JSON text -> documents -> MCM (lenient
 * and strict) -> webhook validation, with the MCM as its own old object (an
 * UPDATE that changes nothing must pass the version rule). A failure always
 * explains itself.
 */
#include <stdlib.h>

#include "kmm/api-hub.h"
#include "tests/fuzz/fuzz.h"

static void one(const json_t *doc)
{
	static const unsigned flags[] = { KMM_API_STRICT, 0 };

	for (size_t f = 0; f < 2; f++) {
		struct kmm_mcm *m = NULL;
		struct kmm_error *err = NULL;

		if (kmm_mcm_from_json(doc, flags[f], &m, &err) < 0) {
			if (!err)
				abort();
			kmm_error_free(err);
			continue;
		}
		if (!m->module || !m->spoke_namespace || !*m->spoke_namespace)
			abort();
		if (kmm_mcm_validate(m, m, true, &err) < 0 && !err)
			abort();
		kmm_error_free(err);
		kmm_mcm_free(m);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *docs = NULL;
	size_t i;
	json_t *d;

	if (size > 256 * 1024)
		return 0;
	if (kmm_api_parse_manifests((const char *)data, size, "fuzz", &docs, NULL) < 0)
		return 0;
	json_array_foreach (docs, i, d)
		one(d);
	json_decref(docs);
	return 0;
}
