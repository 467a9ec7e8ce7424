/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Module parser: YAML/JSON text -> documents -> Module (lenient and strict),
 * webhook validation, and a serialize/parse/serialize round trip that must be
 * stable.
 */
#include <stdlib.h>
#include <string.h>

#include "kmm/api.h"
#include "kmm/shared-yaml.h"
#include "tests/fuzz/fuzz.h"

static void one(const json_t *doc)
{
	struct kmm_module *m = NULL, *again = NULL;
	struct kmm_error *err = NULL;
	json_t *a, *b;

	if (kmm_module_from_json(doc, KMM_API_STRICT, &m, &err) == 0)
		kmm_module_free(m);
	else if (!err)
		abort(); /* a failure always explains itself */
	kmm_error_free(err);
	err = NULL;
	m = NULL;
	if (kmm_module_from_json(doc, 0, &m, &err) < 0) {
		kmm_error_free(err);
		return;
	}
	(void)kmm_module_validate(m, m, 33, true, NULL);
	a = kmm_module_to_json(m);
	if (!a)
		abort();
	if (kmm_module_from_json(a, 0, &again, NULL) < 0)
		abort(); /* what we write we must read */
	b = kmm_module_to_json(again);
	if (!b || !json_equal(a, b))
		abort();
	json_decref(a);
	json_decref(b);
	kmm_module_free(again);
	kmm_module_free(m);
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
