/* SPDX-License-Identifier: Apache-2.0 */
/* jansson helpers shared by every parser. */
#ifndef KMM_JSON_H
#define KMM_JSON_H

#include <stdbool.h>

#include <jansson.h>

#include "kmm/shared-macro.h"

/* jansson ships json_decrefp() for its json_auto_t; reuse it. */
#define _cleanup_json_ _cleanup_(json_decrefp)

/*
 * json_equal() that treats two absent values (NULL) as the same: jansson's
 * says they differ, so comparing a field missing on both sides reports a
 * change that never happened.
 */
static inline bool kmm_json_same(const json_t *a, const json_t *b)
{
	return a == b || (a && b && json_equal(a, b));
}

/*
 * One object key as a JSON-pointer reference token (RFC 6901: '~' as "~0",
 * '/' as "~1"), for JSON patches of label keys such as
 * "kmm.node.kubernetes.io/...". Heap; NULL when out of memory.
 */
char *kmm_json_pointer_escape(const char *key);

#endif
