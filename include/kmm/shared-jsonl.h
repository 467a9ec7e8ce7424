/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Incremental splitter for newline-delimited frames (JSON lines), as sent by
 * the Kubernetes watch API: feed it bytes in whatever chunks the transport
 * delivers, and it calls back once per complete line. Lines that are empty or
 * only whitespace are skipped. A line longer than the frame cap is an error,
 * so a hostile peer cannot grow memory without bound.
 */
#ifndef KMM_JSONL_H
#define KMM_JSONL_H

#include <stddef.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-error.h"

struct kmm_jsonl {
	struct kmm_buf pending; /* bytes of the line still being received */
	size_t max_frame;
	size_t frames; /* number of frames delivered so far */
};

/*
 * Called with each frame (not NUL-terminated at len, but frame[len] is '\0').
 * A negative return stops the feed and is returned by it; the callback is then
 * responsible for having filled *err.
 */
typedef int (*kmm_jsonl_frame_fn)(const char *frame, size_t len, void *userdata,
				  struct kmm_error **err);

void kmm_jsonl_init(struct kmm_jsonl *s, size_t max_frame);

/* Feeds bytes. Returns 0, the callback's negative value, or -E2BIG for a frame
 * over the cap (and then the splitter must not be fed again). */
int kmm_jsonl_feed(struct kmm_jsonl *s, const char *data, size_t len, kmm_jsonl_frame_fn fn,
		   void *userdata, struct kmm_error **err);

/* Delivers a final line that had no newline (end of stream). */
int kmm_jsonl_finish(struct kmm_jsonl *s, kmm_jsonl_frame_fn fn, void *userdata,
		     struct kmm_error **err);

void kmm_jsonl_free(struct kmm_jsonl *s);

#endif
