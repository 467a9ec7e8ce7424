/* SPDX-License-Identifier: Apache-2.0 */
#ifndef KMM_LIB_INFORMER_INTERNAL_H
#define KMM_LIB_INFORMER_INTERNAL_H

#include <jansson.h>

#include "kmm/informer.h"

/* Flattens `projected` (an object) into a new compact object stored under key. */
int kube_obj_new(const json_t *projected, const char *key, struct kmm_obj **ret);

/*
 * Frees o's kmm_obj_json() DOM if exactly `owners` references to o exist.
 * Only for a caller that holds `owners` of them and knows that no other
 * reference can appear meanwhile (the informer, under its store's write
 * lock): then no pointer into the DOM can be in use.
 */
void kube_obj_drop_dom(struct kmm_obj *o, unsigned owners);

#endif
