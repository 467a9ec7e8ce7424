/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NULL-terminated vectors of heap strings (char **), as in kmod and systemd.
 * A NULL vector is a valid empty vector for every read-only function. The
 * vector owns its strings; kmm_strv_free() frees both.
 */
#ifndef KMM_STRV_H
#define KMM_STRV_H

#include <stdbool.h>
#include <stddef.h>

#include "kmm/shared-macro.h"

/* Number of strings in v (0 for NULL). */
size_t kmm_strv_length(char *const *v);

/* Appends a copy of s to *v. Returns 0 or -ENOMEM; *v is unchanged on failure. */
int kmm_strv_push(char ***v, const char *s);

/* Appends s itself, taking ownership of it on success only. */
int kmm_strv_consume(char ***v, char *s);

/* Appends printf-formatted text. */
int kmm_strv_pushf(char ***v, const char *fmt, ...) _printf_(2, 3);

/* Appends copies of every string of other. */
int kmm_strv_extend(char ***v, char *const *other);

/* True if v holds a string equal to s. */
bool kmm_strv_contains(char *const *v, const char *s);

/* Joins the strings with sep; returns a heap string ("" for empty), NULL on ENOMEM. */
char *kmm_strv_join(char *const *v, const char *sep);

/*
 * Splits s at every occurrence of any byte of `separators`, dropping empty
 * fields. Returns 0 and stores a new vector (never NULL) in *ret_v, or -ENOMEM.
 */
int kmm_strv_split(const char *s, const char *separators, char ***ret_v);

/* Returns a deep copy of v (an empty vector for NULL), NULL on ENOMEM. */
char **kmm_strv_copy(char *const *v);

/* Frees every string and the vector. NULL-safe. */
void kmm_strv_free(char **v);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(char **, kmm_strv_free)
#define _cleanup_strv_free_ _cleanup_(kmm_strv_freep)

/* NOLINTBEGIN(bugprone-macro-parentheses): `s` names a new variable. */
#define KMM_STRV_FOREACH(s, v)                                                                     \
	for (char *const *_it_##s = (v), *s; _it_##s && (s = *_it_##s); _it_##s++)
/* NOLINTEND(bugprone-macro-parentheses) */

#endif
