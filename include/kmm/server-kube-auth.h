/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Authentication and authorization of HTTP requests through the Kubernetes
 * API, as controller-runtime's filters.WithAuthenticationAndAuthorization does
 * for the metrics endpoint: the request's bearer token goes to a TokenReview;
 * the user it names (name, uid, groups, extra) goes to a SubjectAccessReview
 * for the non-resource URL and the lower-cased method as verb.
 *
 * Answers are cached per (token, verb, path), allowed and denied alike, for a
 * few seconds and a bounded number of entries, so that a scraper polling every
 * few seconds costs no API call most of the time. The cache key is a SHA-256
 * of the token, never the token itself. API failures are not cached.
 *
 * Threads: kmm_kube_auth_check() may be called from any number of threads at
 * once; API calls run outside the cache's lock, with their own timeout and no
 * retries (the client's next request retries).
 */
#ifndef KMM_KUBE_AUTH_H
#define KMM_KUBE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kmm/shared-error.h"
#include "kmm/kube.h"

struct kmm_kube_auth;

struct kmm_kube_auth_options {
	long timeout_ms;       /* each TokenReview / SubjectAccessReview; default 5000 */
	unsigned allow_ttl_ms; /* how long an allowed answer is reused; default 10000 */
	unsigned deny_ttl_ms;  /* same for 401 and 403; default 10000 */
	size_t max_entries;    /* cache bound; default 4096 */
};

/* `kube` is borrowed and must outlive the authorizer; `opts` may be NULL. */
int kmm_kube_auth_new(struct kmm_kube_client *kube, const struct kmm_kube_auth_options *opts,
		      struct kmm_kube_auth **ret, struct kmm_error **err);

/*
 * Checks one request. `authorization` is the Authorization header or NULL.
 * Returns 200 (allowed), 401 (no, malformed or rejected token), 403 (the
 * user may not), or a negative errno when the API could not answer (err
 * says why; the caller answers 500).
 */
int kmm_kube_auth_check(struct kmm_kube_auth *a, const char *authorization, const char *method,
			const char *path, struct kmm_error **err);

/*
 * A kmm_http_authorize_fn (kmm/server-httpd.h) over kmm_kube_auth_check(), with a
 * struct kmm_kube_auth as userdata: API failures become 500. The reason of
 * the last failure is kept for kmm_kube_auth_last_error().
 */
int kmm_kube_auth_httpd(const char *authorization, const char *method, const char *path,
			void *userdata);

/* The message of the last API failure (a copy for the caller to free), or NULL. */
char *kmm_kube_auth_last_error(struct kmm_kube_auth *a);

struct kmm_kube_auth_stats {
	uint64_t checks;	 /* calls of kmm_kube_auth_check() */
	uint64_t cache_hits;	 /* answered from the cache */
	uint64_t token_reviews;	 /* TokenReviews sent */
	uint64_t access_reviews; /* SubjectAccessReviews sent */
	uint64_t failures;	 /* API failures (answered 500) */
};
void kmm_kube_auth_stats(struct kmm_kube_auth *a, struct kmm_kube_auth_stats *ret);

/* Frees the authorizer; no check may be in flight. NULL-safe. Takes void * so
 * that it can be the free_fn of kmm_httpd_set_authorize(). */
void kmm_kube_auth_free(void *a);

#endif
