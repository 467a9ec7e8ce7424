/* SPDX-License-Identifier: Apache-2.0 */
/* A watch byte stream split by jsonl and decoded frame by frame, as kmm_kube_watch does. */
#include <stdlib.h>

#include "kmm/shared-jsonl.h"
#include "kmm/kube-watch.h"
#include "tests/fuzz/fuzz.h"

static int on_frame(const char *frame, size_t len, void *ud, struct kmm_error **err)
{
	enum kmm_watch_event_type t;
	json_t *o = NULL;
	int r = kmm_watch_decode(frame, len, &t, &o, err);

	if (r < 0)
		return r;
	if (!json_is_object(o))
		abort();
	if (t == KMM_WATCH_ERROR) {
		r = kmm_watch_error_event(o, err);
		if (r >= 0)
			abort();
	} else {
		free(kmm_kube_object_key(o));
	}
	json_decref(o);
	return r < 0 ? r : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kmm_jsonl s;
	struct kmm_error *err = NULL;
	int r;

	kmm_jsonl_init(&s, 64 * 1024);
	r = kmm_jsonl_feed(&s, (const char *)data, size, on_frame, NULL, &err);
	if (r == 0)
		r = kmm_jsonl_finish(&s, on_frame, NULL, &err);
	if (r < 0 && r != -E2BIG && !err)
		abort();
	kmm_error_free(err);
	kmm_jsonl_free(&s);
	return 0;
}
