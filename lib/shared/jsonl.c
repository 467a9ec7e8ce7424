/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "kmm/shared-jsonl.h"

void kmm_jsonl_init(struct kmm_jsonl *s, size_t max_frame)
{
	*s = (struct kmm_jsonl){ .max_frame = max_frame };
	kmm_buf_init(&s->pending, max_frame);
}

static bool blank(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			return false;
	}
	return true;
}

static int deliver(struct kmm_jsonl *s, const char *frame, size_t len, kmm_jsonl_frame_fn fn,
		   void *userdata, struct kmm_error **err)
{
	if (blank(frame, len))
		return 0;
	s->frames++;
	return fn(frame, len, userdata, err);
}

static int too_big(struct kmm_jsonl *s, struct kmm_error **err)
{
	return kmm_error_make(err, E2BIG, "frame %zu exceeds the limit of %zu bytes", s->frames + 1,
			      s->max_frame);
}

int kmm_jsonl_feed(struct kmm_jsonl *s, const char *data, size_t len, kmm_jsonl_frame_fn fn,
		   void *userdata, struct kmm_error **err)
{
	while (len > 0) {
		const char *nl = memchr(data, '\n', len);
		size_t part = nl ? (size_t)(nl - data) : len;
		int r;

		if (kmm_buf_append(&s->pending, data, part) < 0)
			return too_big(s, err);
		if (!nl)
			return 0;
		r = deliver(s, kmm_buf_str(&s->pending), s->pending.len, fn, userdata, err);
		kmm_buf_reset(&s->pending);
		if (r < 0)
			return r;
		data += part + 1;
		len -= part + 1;
	}
	return 0;
}

int kmm_jsonl_finish(struct kmm_jsonl *s, kmm_jsonl_frame_fn fn, void *userdata,
		     struct kmm_error **err)
{
	int r = 0;

	if (s->pending.len > 0)
		r = deliver(s, kmm_buf_str(&s->pending), s->pending.len, fn, userdata, err);
	kmm_buf_reset(&s->pending);
	return r;
}

void kmm_jsonl_free(struct kmm_jsonl *s)
{
	kmm_buf_free(&s->pending);
}
