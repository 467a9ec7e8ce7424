/* SPDX-License-Identifier: Apache-2.0 */
#ifndef KMM_LIB_INFORMER_INTERNAL_H
#define KMM_LIB_INFORMER_INTERNAL_H

#include <jansson.h>

#include "kmm/informer.h"

/* Flattens `projected` (an object) into a new compact object stored under key. */
int kube_obj_new(const json_t *projected, const char *key, struct kmm_obj **ret);

#endif
