/* SPDX-License-Identifier: Apache-2.0 */
/* YAML/JSON text -> kubeconfig: must never crash, leak, or succeed without a server. */
#include <stdlib.h>

#include "kmm/kubeconfig.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kmm_error *err = NULL;
	struct kmm_kube_config *c = NULL;

	if (size > 256 * 1024)
		return 0;
	if (kmm_kube_config_from_text((const char *)data, size, "fuzz", "/base", NULL, &c, &err) ==
	    0) {
		if (!c->server || !c->namespace || err)
			abort();
	} else if (!err) {
		abort();
	}
	kmm_kube_config_free(c);
	kmm_error_free(err);
	return 0;
}
