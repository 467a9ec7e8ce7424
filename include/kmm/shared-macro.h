/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ownership helpers shared by every part of kmm.
 *
 * A variable declared with _cleanup_(f) has f(&var) called when it goes out of
 * scope. TAKE_PTR(p) hands the value out and leaves NULL behind, so the cleanup
 * becomes a no-op: this is how a function returns an object it built only on
 * success.
 */
#ifndef KMM_MACRO_H
#define KMM_MACRO_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _nonnull_(...) __attribute__((nonnull(__VA_ARGS__)))
#define _warn_unused_result_ __attribute__((warn_unused_result))
#define _sentinel_ __attribute__((sentinel))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)

#define KMM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Returns the value of p and sets p to NULL (or zero), evaluating p once. */
#define TAKE_PTR(p)                                                                                \
	({                                                                                         \
		__typeof__(p) *_pp_ = &(p);                                                        \
		__typeof__(p) _val_ = *_pp_;                                                       \
		*_pp_ = NULL;                                                                      \
		_val_;                                                                             \
	})

#define TAKE_FD(fd)                                                                                \
	({                                                                                         \
		int *_pfd_ = &(fd);                                                                \
		int _fdval_ = *_pfd_;                                                              \
		*_pfd_ = -1;                                                                       \
		_fdval_;                                                                           \
	})

/*
 * Defines name##p(type *p) that calls func(*p) when *p is not NULL, for use with
 * _cleanup_. func must accept its argument by value.
 */
/* NOLINTBEGIN(bugprone-macro-parentheses): `type` is a type name. */
#define KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                \
	static inline void func##p(type *p)                                                        \
	{                                                                                          \
		if (*p)                                                                            \
			func(*p);                                                                  \
	}
/* NOLINTEND(bugprone-macro-parentheses) */

static inline void kmm_freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(kmm_freep)

static inline void kmm_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
#define _cleanup_close_ _cleanup_(kmm_closep)

static inline void kmm_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(kmm_fclosep)

/* Frees *p and sets it to NULL; returns NULL so it can be used in assignments. */
#define kmm_free_and_null(p)                                                                       \
	({                                                                                         \
		free(p);                                                                           \
		(p) = NULL;                                                                        \
		NULL;                                                                              \
	})

#endif
