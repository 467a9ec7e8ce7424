/* SPDX-License-Identifier: Apache-2.0 */
/* YAML/JSON text -> kubeconfig: must never crash, leak, or succeed without a server. */
#include <stdlib.h>

#include "kmm/kubeconfig.h"
#include "kmm/yaml.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *docs = NULL;
	struct kmm_error *err = NULL;
	struct kmm_kube_config *c = NULL;

	if (size > 256 * 1024)
		return 0;
	if (kmm_yaml_parse((const char *)data, size, "fuzz", 0, &docs, &err) == 0 &&
	    json_array_size(docs) > 0) {
		if (kmm_kube_config_from_json(json_array_get(docs, 0), "fuzz", "/base", NULL, &c,
					      &err) == 0) {
			if (!c->server || !c->namespace)
				abort();
		} else if (!err) {
			abort();
		}
	}
	kmm_kube_config_free(c);
	kmm_error_free(err);
	json_decref(docs);
	return 0;
}
