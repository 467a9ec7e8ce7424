/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shell-style variable substitution, as upstream KMM applies it to image
 * names and files to sign (the semantics of github.com/a8m/envsubst):
 *
 *   $VAR  ${VAR}          value of VAR, "" when VAR is not set
 *   ${VAR-word}           word when VAR is not set
 *   ${VAR:-word}          word when VAR is not set or empty
 *   ${VAR=word} ${VAR:=word}  as - and :- (the assignment is not kept)
 *   ${VAR+word}           word when VAR is set, else ""
 *   ${VAR:+word}          word when VAR is set and not empty, else ""
 *   $$                    a literal $ (so $$VAR gives "$VAR")
 *
 * `word` is itself expanded. A `$` not followed by a name, `{` or `$` is kept
 * literally. A malformed expression (unterminated `${`, empty or invalid name,
 * unknown operator) is an error naming its offset.
 */
#ifndef KMM_TEMPLATE_H
#define KMM_TEMPLATE_H

#include <stddef.h>

#include "kmm/shared-error.h"

/* Variables: parallel NULL-terminated name and value arrays (borrowed). */
struct kmm_template_vars {
	const char *const *names;
	const char *const *values;
};

/* The value of name, NULL when not set. */
const char *kmm_template_var(const struct kmm_template_vars *vars, const char *name);

/*
 * Expands `in`. On success stores a new heap string in *ret. Output is capped
 * at 64 KiB (-E2BIG). -EINVAL for malformed expressions.
 */
int kmm_template_expand(const char *in, const struct kmm_template_vars *vars, char **ret,
			struct kmm_error **err);

#endif
