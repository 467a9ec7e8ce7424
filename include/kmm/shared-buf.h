/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A growable byte buffer with a hard cap.
 *
 * Every buffer that outside input can grow (HTTP bodies, watch frames, files
 * read from images) is a kmm_buf with a maximum size chosen by its owner. An
 * append that would pass the cap fails with -E2BIG and leaves the buffer as it
 * was, so the caller can report how much it refused. The content is always
 * NUL-terminated (the terminator is not counted in len nor against the cap).
 */
#ifndef KMM_BUF_H
#define KMM_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "kmm/shared-macro.h"

struct kmm_buf {
	char *data; /* NULL until the first append; NUL-terminated afterwards */
	size_t len; /* bytes used, excluding the terminator */
	size_t cap; /* bytes allocated, including room for the terminator */
	size_t max; /* largest len allowed; 0 means KMM_BUF_DEFAULT_MAX */
};

#define KMM_BUF_DEFAULT_MAX ((size_t)64 * 1024 * 1024)

/* Initializes an empty buffer whose content may grow to at most `max` bytes. */
void kmm_buf_init(struct kmm_buf *b, size_t max);

/* Appends n bytes. Returns 0, -E2BIG if the cap would be passed, -ENOMEM. */
int kmm_buf_append(struct kmm_buf *b, const void *p, size_t n);

/* Appends a NUL-terminated string. */
int kmm_buf_append_str(struct kmm_buf *b, const char *s);

/* Appends formatted text; same errors as kmm_buf_append(). */
int kmm_buf_printf(struct kmm_buf *b, const char *fmt, ...) _printf_(2, 3);
int kmm_buf_vprintf(struct kmm_buf *b, const char *fmt, va_list ap) _printf_(2, 0);

/* Drops the first n bytes (n > len drops all), keeping the allocation. */
void kmm_buf_consume(struct kmm_buf *b, size_t n);

/* Empties the buffer, keeping the allocation and the cap. */
void kmm_buf_reset(struct kmm_buf *b);

/*
 * Returns the content as a malloc'ed NUL-terminated string owned by the caller
 * (an empty string for an empty buffer) and resets the buffer to empty. NULL on
 * allocation failure.
 */
char *kmm_buf_steal(struct kmm_buf *b);

/* The content as a NUL-terminated string ("" when empty); owned by the buffer. */
const char *kmm_buf_str(const struct kmm_buf *b);

/* Frees the content; the buffer is empty afterwards and may be reused. */
void kmm_buf_free(struct kmm_buf *b);
#define _cleanup_buf_ _cleanup_(kmm_buf_free)

#endif
