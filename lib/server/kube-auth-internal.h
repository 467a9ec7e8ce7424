/* SPDX-License-Identifier: Apache-2.0 */
/* Private to lib/server: the API side of kube-auth.c, replaceable in unit tests. */
#ifndef KMM_LIB_SERVER_KUBE_AUTH_INTERNAL_H
#define KMM_LIB_SERVER_KUBE_AUTH_INTERNAL_H

#include <jansson.h>

#include "kmm/server-kube-auth.h"
#include "lib/testable.h"

struct kmm_kube_auth_backend {
	/*
	 * TokenReview: returns 1 and a new reference to status.user when the
	 * token is authenticated, 0 when it is not, a negative errno when the
	 * API could not tell.
	 */
	int (*review)(void *userdata, const char *token, json_t **ret_user, struct kmm_error **err);
	/* SubjectAccessReview: 1 allowed, 0 denied, negative errno on failure. */
	int (*access)(void *userdata, json_t *user, const char *verb, const char *path,
		      struct kmm_error **err);
	/* Milliseconds on a monotonic clock. */
	uint64_t (*now_ms)(void *userdata);
	void *userdata;
};

#ifdef KMM_TESTING
int kmm_kube_auth_new_backend(const struct kmm_kube_auth_backend *b,
			      const struct kmm_kube_auth_options *opts, struct kmm_kube_auth **ret,
			      struct kmm_error **err);
#endif

#endif
