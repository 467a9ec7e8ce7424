/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Errors that carry their context.
 *
 * A function that can fail returns a negative errno value (or NULL) and, when
 * its caller passed a non-NULL `struct kmm_error **err`, stores a heap error
 * there. Callers add context on the way up with kmm_error_wrap(), so the final
 * message reads outermost first:
 *
 *     reconcile ns/name: create pod: 409 AlreadyExists: pods "x" already exists
 *
 * Conventions (see docs/design/error-handling.md):
 *  - *err must be NULL on entry; a function fills it at most once.
 *  - The caller owns the error and frees it with kmm_error_free() (NULL-safe).
 *  - Passing err == NULL is allowed: the code is still returned.
 *  - None of these functions changes errno.
 */
#ifndef KMM_ERROR_H
#define KMM_ERROR_H

#include <stdbool.h>
#include <stdint.h>

#include "kmm/shared-macro.h"

struct kmm_error {
	int code;	 /* positive errno value, never 0 */
	int http_status; /* HTTP status when the error came from an HTTP peer, else 0 */
	char *reason;	 /* machine-readable reason (e.g. Kubernetes Status reason), or NULL */
	char *message;	 /* human-readable message including every wrapped context */
	int64_t retry_after_ms; /* server-advised delay before retrying, or -1 */
};

/*
 * Creates a new error with errno-style `code` (sign ignored; 0 becomes EIO) and a
 * printf-style message. Stores it in *err if err is not NULL. Returns -code.
 */
int kmm_error_make(struct kmm_error **err, int code, const char *fmt, ...) _printf_(3, 4);

/*
 * Like kmm_error_make() but appends ": strerror(code)" to the message.
 */
int kmm_error_make_errno(struct kmm_error **err, int code, const char *fmt, ...) _printf_(3, 4);

/*
 * Creates an error for an HTTP response: `http_status`, an optional `reason`
 * (copied, may be NULL) and a message. The errno-style code is derived from the
 * status (404 -> ENOENT, 409 -> EEXIST or ESTALE for conflicts, 401/403 -> EACCES,
 * 410 -> ESTALE, 429 -> EAGAIN, 5xx -> EIO, ...). Returns -code.
 */
int kmm_error_make_http(struct kmm_error **err, int http_status, const char *reason,
			const char *fmt, ...) _printf_(4, 5);

/*
 * Prefixes the message of *err with a printf-style context and ": ". If err or
 * *err is NULL nothing is stored. Returns -(*err)->code, or -EIO when there is no
 * error to wrap, so `return kmm_error_wrap(err, "load %s", name);` is the idiom.
 */
int kmm_error_wrap(struct kmm_error **err, const char *fmt, ...) _printf_(2, 3);

/* The errno value of err, or 0 for NULL. */
int kmm_error_code(const struct kmm_error *err);

/* The message of err, or "" for NULL. The string belongs to err. */
const char *kmm_error_message(const struct kmm_error *err);

/* True if err is an HTTP error with that status. */
bool kmm_error_is_http(const struct kmm_error *err, int http_status);

/* Frees err and everything it owns. NULL-safe. */
void kmm_error_free(struct kmm_error *err);

/*
 * Frees *err and sets it to NULL, so the variable can take the next error (a
 * loop that reports each failure and goes on). NULL-safe, for err and *err.
 */
void kmm_error_clear(struct kmm_error **err);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_error *, kmm_error_free)
#define _cleanup_error_ _cleanup_(kmm_error_freep)

/* The errno value that an HTTP status maps to, as used by kmm_error_make_http(). */
int kmm_errno_from_http_status(int http_status, const char *reason);

#endif
