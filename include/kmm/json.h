/* SPDX-License-Identifier: Apache-2.0 */
/* jansson helpers shared by every parser. */
#ifndef KMM_JSON_H
#define KMM_JSON_H

#include <jansson.h>

#include "kmm/macro.h"

/* jansson ships json_decrefp() for its json_auto_t; reuse it. */
#define _cleanup_json_ _cleanup_(json_decrefp)

#endif
