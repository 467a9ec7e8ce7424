/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Any HTTP error body -> kmm_error: never crash, always an error with a
 * message. The same bytes as a Retry-After header value: a delay within a
 * day, or refused.
 */
#include <stdlib.h>
#include <string.h>

#include "kmm/kube.h"
#include "lib/kube/kube-internal.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kmm_kube_status *st = NULL;
	struct kmm_error *err = NULL;
	char *body = malloc(size + 1);
	struct kmm_kube_response resp = { .status = 400 + (size % 200), .retry_after_ms = -1 };
	int64_t ms = -1;

	if (kube_parse_retry_after((const char *)data, size, 784111777, &ms) == 0 &&
	    (ms < 0 || ms > 86400000))
		abort();
	if (!body)
		return 0;
	memcpy(body, data, size);
	body[size] = '\0';
	if (kmm_kube_status_parse(body, size, &st) == 0)
		kmm_kube_status_free(st);
	resp.body = body;
	resp.body_len = size;
	if (kmm_kube_error_from_response(&resp, "fuzz", &err) >= 0 || !err || !err->message)
		abort();
	kmm_error_free(err);
	free(body);
	return 0;
}
