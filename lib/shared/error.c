/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-error.h"

/*
 * Out of memory while building an error: the caller still gets the code, and a
 * static message tells the reader why the detail is missing. The static error
 * is never freed (kmm_error_free() recognises it).
 */
static char oom_message[] = "out of memory while reporting an error";
static struct kmm_error oom_error = {
	.code = ENOMEM,
	.message = oom_message,
	.retry_after_ms = -1,
};

static int normalize_code(int code)
{
	if (code < 0)
		code = -code;
	return code == 0 ? EIO : code;
}

static int store(struct kmm_error **err, int code, int http_status, const char *reason,
		 char *message)
{
	struct kmm_error *e;

	if (!err) {
		free(message);
		return -code;
	}
	e = calloc(1, sizeof(*e));
	if (!e || !message || (reason && !(e->reason = strdup(reason)))) {
		free(e);
		free(message);
		*err = &oom_error;
		return -code;
	}
	e->code = code;
	e->http_status = http_status;
	e->message = message;
	e->retry_after_ms = -1;
	*err = e;
	return -code;
}

_printf_(1, 0) static char *vformat(const char *fmt, va_list ap)
{
	char *s = NULL;

	if (vasprintf(&s, fmt, ap) < 0)
		return NULL;
	return s;
}

/*
 * Every function here keeps errno as its caller left it: an error is often
 * built between a failed call and the caller's look at errno, and the
 * allocations and formatting below may change it.
 */
int kmm_error_make(struct kmm_error **err, int code, const char *fmt, ...)
{
	int saved_errno = errno;
	va_list ap;
	char *msg;

	code = normalize_code(code);
	if (!err)
		return -code;
	va_start(ap, fmt);
	msg = vformat(fmt, ap);
	va_end(ap);
	code = store(err, code, 0, NULL, msg);
	errno = saved_errno;
	return code;
}

int kmm_error_make_errno(struct kmm_error **err, int code, const char *fmt, ...)
{
	int saved_errno = errno;
	va_list ap;
	char *head, *msg = NULL;

	code = normalize_code(code);
	if (!err)
		return -code;
	va_start(ap, fmt);
	head = vformat(fmt, ap);
	va_end(ap);
	if (head && asprintf(&msg, "%s: %s", head, strerror(code)) < 0)
		msg = NULL;
	free(head);
	code = store(err, code, 0, NULL, msg);
	errno = saved_errno;
	return code;
}

int kmm_errno_from_http_status(int http_status, const char *reason)
{
	switch (http_status) {
	case 400:
	case 422:
		return EINVAL;
	case 401:
	case 403:
		return EACCES;
	case 404:
		return ENOENT;
	case 405:
		return EOPNOTSUPP;
	case 408:
	case 504:
		return ETIMEDOUT;
	case 409:
		/* A conflict on resourceVersion is a stale write, not a duplicate. */
		if (reason && strcmp(reason, "Conflict") == 0)
			return ESTALE;
		return EEXIST;
	case 410:
		return ESTALE;
	case 413:
		return E2BIG;
	case 415:
		return EPROTO;
	case 429:
	case 503:
		return EAGAIN;
	default:
		break;
	}
	if (http_status >= 500)
		return EIO;
	if (http_status >= 400)
		return EPROTO;
	return EIO;
}

int kmm_error_make_http(struct kmm_error **err, int http_status, const char *reason,
			const char *fmt, ...)
{
	int code = kmm_errno_from_http_status(http_status, reason), saved_errno = errno;
	va_list ap;
	char *msg;

	if (!err)
		return -code;
	va_start(ap, fmt);
	msg = vformat(fmt, ap);
	va_end(ap);
	code = store(err, code, http_status, reason, msg);
	errno = saved_errno;
	return code;
}

int kmm_error_wrap(struct kmm_error **err, const char *fmt, ...)
{
	int saved_errno = errno;
	char *ctx, *msg = NULL;
	va_list ap;

	if (!err || !*err)
		return -EIO;
	if (*err == &oom_error)
		return -oom_error.code;
	va_start(ap, fmt);
	ctx = vformat(fmt, ap);
	va_end(ap);
	/* Losing the context to ENOMEM keeps the original error intact. */
	if (ctx && asprintf(&msg, "%s: %s", ctx, (*err)->message) >= 0) {
		free((*err)->message);
		(*err)->message = msg;
	}
	free(ctx);
	errno = saved_errno;
	return -(*err)->code;
}

int kmm_error_code(const struct kmm_error *err)
{
	return err ? err->code : 0;
}

const char *kmm_error_message(const struct kmm_error *err)
{
	return err && err->message ? err->message : "";
}

bool kmm_error_is_http(const struct kmm_error *err, int http_status)
{
	return err && err->http_status == http_status;
}

void kmm_error_free(struct kmm_error *err)
{
	if (!err || err == &oom_error)
		return;
	free(err->message);
	free(err->reason);
	free(err);
}

void kmm_error_clear(struct kmm_error **err)
{
	if (!err)
		return;
	kmm_error_free(*err);
	*err = NULL;
}
