/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Feeds the input to the JSON-lines splitter in chunks whose sizes come from
 * the first byte, and checks that the frames it delivers are exactly the
 * non-blank lines of the input, whatever the chunking.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-jsonl.h"
#include "tests/fuzz/fuzz.h"

#define FRAME_MAX 4096

struct expect {
	const char *data;
	size_t size;
	size_t pos; /* where the next expected line starts */
};

static int is_blank(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			return 0;
	}
	return 1;
}

/* Finds the next non-blank line in the original input. */
static int next_line(struct expect *e, const char **ret, size_t *ret_len)
{
	while (e->pos < e->size) {
		const char *start = e->data + e->pos;
		const char *nl = memchr(start, '\n', e->size - e->pos);
		size_t len = nl ? (size_t)(nl - start) : e->size - e->pos;

		e->pos += len + (nl ? 1 : 0);
		if (!is_blank(start, len)) {
			*ret = start;
			*ret_len = len;
			return 1;
		}
	}
	return 0;
}

static int on_frame(const char *frame, size_t len, void *userdata, struct kmm_error **err)
{
	struct expect *e = userdata;
	const char *want;
	size_t want_len;

	(void)err;
	if (!next_line(e, &want, &want_len) || want_len != len || memcmp(want, frame, len) != 0 ||
	    frame[len] != '\0' || len > FRAME_MAX)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct expect e;
	struct kmm_jsonl s;
	struct kmm_error *err = NULL;
	size_t chunk, off = 0;
	int r = 0;

	if (size < 1)
		return 0;
	chunk = (size_t)data[0] % 17 + 1;
	data++;
	size--;
	e = (struct expect){ .data = (const char *)data, .size = size };

	kmm_jsonl_init(&s, FRAME_MAX);
	while (off < size && r == 0) {
		size_t n = size - off < chunk ? size - off : chunk;

		r = kmm_jsonl_feed(&s, (const char *)data + off, n, on_frame, &e, &err);
		off += n;
	}
	if (r == 0)
		r = kmm_jsonl_finish(&s, on_frame, &e, &err);
	if (r < 0 && (r != -E2BIG || !err))
		abort();
	kmm_error_free(err);
	kmm_jsonl_free(&s);
	return 0;
}
