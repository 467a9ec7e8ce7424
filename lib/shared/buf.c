/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-buf.h"

static size_t effective_max(const struct kmm_buf *b)
{
	return b->max ? b->max : KMM_BUF_DEFAULT_MAX;
}

void kmm_buf_init(struct kmm_buf *b, size_t max)
{
	*b = (struct kmm_buf){ .max = max };
}

/* Makes room for `extra` more bytes plus the terminator. */
static int reserve(struct kmm_buf *b, size_t extra)
{
	size_t need, newcap;
	char *p;

	if (extra > effective_max(b) - b->len)
		return -E2BIG;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	newcap = b->cap ? b->cap : 256;
	while (newcap < need)
		newcap = newcap > SIZE_MAX / 2 ? need : newcap * 2;
	/* Never allocate much beyond the cap. */
	if (newcap > effective_max(b) + 1)
		newcap = effective_max(b) + 1;
	p = realloc(b->data, newcap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = newcap;
	return 0;
}

int kmm_buf_append(struct kmm_buf *b, const void *p, size_t n)
{
	int r = reserve(b, n);

	if (r < 0)
		return r;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int kmm_buf_append_str(struct kmm_buf *b, const char *s)
{
	return kmm_buf_append(b, s, strlen(s));
}

int kmm_buf_vprintf(struct kmm_buf *b, const char *fmt, va_list ap)
{
	va_list aq;
	int n, r;

	va_copy(aq, ap);
	n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0)
		return -EINVAL;
	r = reserve(b, (size_t)n);
	if (r < 0)
		return r;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int kmm_buf_printf(struct kmm_buf *b, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = kmm_buf_vprintf(b, fmt, ap);
	va_end(ap);
	return r;
}

void kmm_buf_consume(struct kmm_buf *b, size_t n)
{
	if (n >= b->len) {
		kmm_buf_reset(b);
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

void kmm_buf_reset(struct kmm_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

char *kmm_buf_steal(struct kmm_buf *b)
{
	char *s;

	if (!b->data)
		return strdup("");
	s = b->data;
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return s;
}

const char *kmm_buf_str(const struct kmm_buf *b)
{
	return b->data ? b->data : "";
}

void kmm_buf_free(struct kmm_buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}
