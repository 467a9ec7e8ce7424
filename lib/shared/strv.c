/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-strv.h"

size_t kmm_strv_length(char *const *v)
{
	size_t n = 0;

	if (!v)
		return 0;
	while (v[n])
		n++;
	return n;
}

int kmm_strv_consume(char ***v, char *s)
{
	size_t n = kmm_strv_length(*v);
	char **nv;

	nv = reallocarray(*v, n + 2, sizeof(char *));
	if (!nv)
		return -ENOMEM;
	nv[n] = s;
	nv[n + 1] = NULL;
	*v = nv;
	return 0;
}

int kmm_strv_push(char ***v, const char *s)
{
	char *copy = strdup(s);
	int r;

	if (!copy)
		return -ENOMEM;
	r = kmm_strv_consume(v, copy);
	if (r < 0)
		free(copy);
	return r;
}

int kmm_strv_pushf(char ***v, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	r = kmm_strv_consume(v, s);
	if (r < 0)
		free(s);
	return r;
}

int kmm_strv_extend(char ***v, char *const *other)
{
	size_t n = kmm_strv_length(*v), added = 0;
	int r;

	KMM_STRV_FOREACH (s, other) {
		r = kmm_strv_push(v, s);
		if (r < 0) {
			/* Leave *v as it was on entry. */
			for (size_t i = n; i < n + added; i++)
				free((*v)[i]);
			if (*v)
				(*v)[n] = NULL;
			return r;
		}
		added++;
	}
	return 0;
}

bool kmm_strv_contains(char *const *v, const char *s)
{
	KMM_STRV_FOREACH (x, v) {
		if (strcmp(x, s) == 0)
			return true;
	}
	return false;
}

char *kmm_strv_join(char *const *v, const char *sep)
{
	struct kmm_buf b;
	bool first = true;

	kmm_buf_init(&b, SIZE_MAX / 2);
	KMM_STRV_FOREACH (s, v) {
		if ((!first && kmm_buf_append_str(&b, sep) < 0) || kmm_buf_append_str(&b, s) < 0) {
			kmm_buf_free(&b);
			return NULL;
		}
		first = false;
	}
	return kmm_buf_steal(&b);
}

int kmm_strv_split(const char *s, const char *separators, char ***ret_v)
{
	_cleanup_strv_free_ char **v = NULL;
	const char *p = s;

	/* An empty result is still a vector, never NULL. */
	v = calloc(1, sizeof(char *));
	if (!v)
		return -ENOMEM;
	while (*p) {
		size_t skip = strspn(p, separators), len;

		p += skip;
		if (!*p)
			break;
		len = strcspn(p, separators);
		char *field = strndup(p, len);
		if (!field || kmm_strv_consume(&v, field) < 0) {
			free(field);
			return -ENOMEM;
		}
		p += len;
	}
	*ret_v = TAKE_PTR(v);
	return 0;
}

char **kmm_strv_copy(char *const *v)
{
	char **copy = calloc(1, sizeof(char *));

	if (!copy)
		return NULL;
	if (kmm_strv_extend(&copy, v) < 0) {
		kmm_strv_free(copy);
		return NULL;
	}
	return copy;
}

void kmm_strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}
