/* SPDX-License-Identifier: Apache-2.0 */
/* Private to lib/kube (and reachable by unit tests through the test library). */
#ifndef KMM_LIB_KUBE_INTERNAL_H
#define KMM_LIB_KUBE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "kmm/shared-error.h"
#include "kmm/kube.h"

/*
 * Resets e and configures it for one request to c: URL, method, body, auth,
 * TLS, timeouts (request_timeout_ms 0 = none, for watches), HTTP version.
 * *ret_headers must be freed with curl_slist_free_all after the transfer.
 */
int kube_easy_setup(struct kmm_kube_client *c, CURL *e, const char *method, const char *path,
		    const char *content_type, const char *body, size_t body_len,
		    long request_timeout_ms, struct curl_slist **ret_headers,
		    struct kmm_error **err);

/* Blocks until the rate limiter allows one more request. */
void kube_rate_wait(struct kmm_kube_client *c);

/* Called after a 401: drops cached exec credentials so the next call re-runs the plugin. */
void kube_auth_invalidate(struct kmm_kube_client *c);

/*
 * A Retry-After header value (len bytes, not NUL-terminated, surrounding
 * blanks allowed): delay-seconds or an HTTP-date (now is the epoch time it is
 * measured from). Returns 0 and the delay in ms (a date in the past is 0), or
 * -EINVAL for anything else, a negative number, or more than a day.
 */
int kube_parse_retry_after(const char *v, size_t len, time_t now, int64_t *ret_ms);

/*
 * Whether a failed attempt may be retried (not counting attempts or the
 * request's no_retry): cc is the transfer's result, status the HTTP status
 * when cc is CURLE_OK, has_retry_after whether the server gave a delay. See
 * kmm_kube_request() for the rules.
 */
bool kube_retry_allowed(const char *method, bool named_create, CURLcode cc, long status,
			bool has_retry_after);

/* Whether a failed attempt (as above) may have been carried out by the server. */
bool kube_maybe_applied(const char *method, CURLcode cc, long status);

/*
 * The delay before retry `attempt` (0-based): retry_after_ms when >= 0, else
 * the jittered backoff; capped by the client's retry_max_ms either way.
 */
long kube_retry_delay_ms(const struct kmm_kube_client_options *o, int attempt,
			 int64_t retry_after_ms);

/* Parses an RFC 3339 timestamp ("2006-01-02T15:04:05Z", fractional seconds and
 * offsets allowed) into seconds since the epoch. */
int kube_parse_rfc3339(const char *s, time_t *ret);

/* The client's config and options, for watches and leader election. */
const struct kmm_kube_client_options *kube_client_options(const struct kmm_kube_client *c);

void kube_stats_add(struct kmm_kube_client *c, long new_connections);

/*
 * The hub (hub.c): one thread per client runs every transfer on one curl
 * multi handle. An op is one transfer handed to it: the caller owns the op
 * and its easy handle, and must not touch the handle (nor free either) until
 * op->done, which the hub sets under *lock and signals on *cond once it has
 * let go of the handle. The transfer's callbacks run on the hub's thread.
 */
struct kube_hub;

struct kube_op {
	CURL *easy;
	pthread_mutex_t *lock; /* the caller's; guards done, result, removal_acked */
	pthread_cond_t *cond;
	bool done;
	CURLcode result;
	bool removal_acked;
	/* The hub's own. */
	bool in_multi;
	struct kube_op *next, *next_removal;
};

int kube_hub_new(struct kube_hub **ret_hub);

/* Stops the thread. Every op must be done (or cancelled) before. NULL-safe. */
void kube_hub_free(struct kube_hub *h);

/* Hands op over (starting the thread on first use). -ESHUTDOWN once stopping. */
int kube_hub_submit(struct kube_hub *h, struct kube_op *op);

/* Stops op if it still runs (result CURLE_ABORTED_BY_CALLBACK); returns once done. */
void kube_hub_cancel(struct kube_hub *h, struct kube_op *op);

/* Runs one transfer to its end; *ret_result as curl_easy_perform() would return. */
int kube_hub_perform(struct kube_hub *h, CURL *e, CURLcode *ret_result);

/* The client's hub, for watches. */
struct kube_hub *kube_client_hub(const struct kmm_kube_client *c);

#endif
