/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "kmm/shared-clock.h"
#include "kmm/shared-hashmap.h"
#include "kmm/shared-json.h"
#include "kmm/server-kube-auth.h"
#include "lib/server/kube-auth-internal.h"

#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_TTL_MS 10000
#define DEFAULT_MAX_ENTRIES 4096
#define MAX_TOKEN 16384 /* service-account JWTs are ~1 KiB; anything this long is junk */
#define MAX_VERB 16
#define MAX_PATH 1024

#define TOKEN_REVIEWS "/apis/authentication.k8s.io/v1/tokenreviews"
#define ACCESS_REVIEWS "/apis/authorization.k8s.io/v1/subjectaccessreviews"

struct entry {
	int status;
	uint64_t expires_ms;
};

struct kmm_kube_auth {
	struct kmm_kube_auth_backend backend;
	struct kmm_kube_client *kube; /* borrowed; the real backend's userdata */
	long timeout_ms;
	unsigned allow_ttl_ms, deny_ttl_ms;
	size_t max_entries;

	pthread_mutex_t lock;	   /* guards everything below */
	struct kmm_hashmap *cache; /* sha256 hex -> struct entry */
	struct kmm_kube_auth_stats stats;
	char *last_error;
};

/* ---- the API side ---- */

static int post_review(struct kmm_kube_auth *a, const char *path, json_t *body, json_t **ret,
		       struct kmm_error **err)
{
	_cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
	struct kmm_kube_request req = {
		.method = "POST",
		.path = path,
		.body = text,
		.body_len = text ? strlen(text) : 0,
		/* On the HTTP server's thread: fail fast, the scraper retries. */
		.no_retry = true,
		.timeout_ms = a->timeout_ms,
	};

	if (!text)
		return kmm_error_make(err, ENOMEM, "out of memory");
	return kmm_kube_request_json(a->kube, &req, ret, err);
}

static int kube_review(void *userdata, const char *token, json_t **ret_user, struct kmm_error **err)
{
	struct kmm_kube_auth *a = userdata;
	_cleanup_json_ json_t *body = NULL, *resp = NULL;
	json_t *status, *user;
	int r;

	body = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "authentication.k8s.io/v1", "kind",
			 "TokenReview", "spec", "token", token);
	if (!body)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = post_review(a, TOKEN_REVIEWS, body, &resp, err);
	if (r < 0)
		return kmm_error_wrap(err, "TokenReview");
	status = json_object_get(resp, "status");
	user = json_object_get(status, "user");
	if (!json_is_true(json_object_get(status, "authenticated")))
		return 0;
	if (!json_is_object(user) || !json_is_string(json_object_get(user, "username")))
		return kmm_error_make(err, EPROTO, "TokenReview: authenticated without a user");
	*ret_user = json_incref(user);
	return 1;
}

static int kube_access(void *userdata, json_t *user, const char *verb, const char *path,
		       struct kmm_error **err)
{
	struct kmm_kube_auth *a = userdata;
	_cleanup_json_ json_t *body = NULL, *resp = NULL;
	json_t *spec, *v;
	int r;

	body = json_pack("{s:s, s:s, s:{s:O, s:{s:s, s:s}}}", "apiVersion",
			 "authorization.k8s.io/v1", "kind", "SubjectAccessReview", "spec", "user",
			 json_object_get(user, "username"), "nonResourceAttributes", "path", path,
			 "verb", verb);
	if (!body)
		return kmm_error_make(err, ENOMEM, "out of memory");
	spec = json_object_get(body, "spec");
	/* Everything the TokenReview said about the user, as kube-rbac-proxy passes it. */
	if (((v = json_object_get(user, "uid")) && json_is_string(v) &&
	     json_object_set(spec, "uid", v) < 0) ||
	    ((v = json_object_get(user, "groups")) && json_is_array(v) &&
	     json_object_set(spec, "groups", v) < 0) ||
	    ((v = json_object_get(user, "extra")) && json_is_object(v) &&
	     json_object_set(spec, "extra", v) < 0))
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = post_review(a, ACCESS_REVIEWS, body, &resp, err);
	if (r < 0)
		return kmm_error_wrap(err, "SubjectAccessReview");
	return json_is_true(json_object_get(json_object_get(resp, "status"), "allowed")) ? 1 : 0;
}

static uint64_t monotonic_ms(void *userdata)
{
	(void)userdata;
	return (uint64_t)kmm_now_mono_ms();
}

/* ---- the cache ---- */

/* "Bearer <token>" (scheme case-insensitive, one token, nothing after it). */
static const char *bearer_token(const char *authorization, size_t *ret_len)
{
	const char *p = authorization, *tok;
	size_t n;

	if (!p)
		return NULL;
	while (*p == ' ' || *p == '\t')
		p++;
	if (strncasecmp(p, "bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
		return NULL;
	p += 6;
	while (*p == ' ' || *p == '\t')
		p++;
	tok = p;
	n = strcspn(tok, " \t");
	for (p = tok + n; *p == ' ' || *p == '\t'; p++)
		;
	if (n == 0 || n > MAX_TOKEN || *p)
		return NULL;
	*ret_len = n;
	return tok;
}

static int cache_key(const char *token, size_t len, const char *verb, const char *path,
		     char key[2 * 32 + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok;

	ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) && EVP_DigestUpdate(c, token, len) &&
	     EVP_DigestUpdate(c, "", 1) && EVP_DigestUpdate(c, verb, strlen(verb) + 1) &&
	     EVP_DigestUpdate(c, path, strlen(path)) && EVP_DigestFinal_ex(c, md, &mdlen);
	EVP_MD_CTX_free(c);
	if (!ok || mdlen != 32)
		return -EIO;
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(key + 2 * i, 3, "%02x", md[i]);
	return 0;
}

static int cache_lookup(struct kmm_kube_auth *a, const char *key, uint64_t now)
{
	struct entry *e;
	int status = 0;

	pthread_mutex_lock(&a->lock);
	a->stats.checks++;
	e = kmm_hashmap_get(a->cache, key);
	if (e && e->expires_ms > now) {
		status = e->status;
		a->stats.cache_hits++;
	}
	pthread_mutex_unlock(&a->lock);
	return status;
}

/* Makes room: expired entries go first; if every entry is fresh, all go. */
static void cache_prune(struct kmm_kube_auth *a, uint64_t now)
{
	size_t state = 0, n = 0, cap = kmm_hashmap_size(a->cache);
	_cleanup_free_ char **stale = calloc(cap ? cap : 1, sizeof(*stale));
	const char *k;
	void *v;

	while (stale && kmm_hashmap_iterate(a->cache, &state, &k, &v))
		if (((struct entry *)v)->expires_ms <= now && (stale[n] = strdup(k)))
			n++;
	for (size_t i = 0; i < n; i++) {
		free(kmm_hashmap_remove(a->cache, stale[i]));
		free(stale[i]);
	}
	if (kmm_hashmap_size(a->cache) >= a->max_entries) {
		struct kmm_hashmap *fresh = kmm_hashmap_new(free);

		if (fresh) {
			kmm_hashmap_free(a->cache);
			a->cache = fresh;
		}
	}
}

static void cache_store(struct kmm_kube_auth *a, const char *key, int status, uint64_t now)
{
	struct entry *e = malloc(sizeof(*e));

	if (!e)
		return; /* uncached is only slower */
	e->status = status;
	e->expires_ms = now + (status == 200 ? a->allow_ttl_ms : a->deny_ttl_ms);
	pthread_mutex_lock(&a->lock);
	if (!kmm_hashmap_contains(a->cache, key) && kmm_hashmap_size(a->cache) >= a->max_entries)
		cache_prune(a, now);
	if (kmm_hashmap_put(a->cache, key, e, NULL) < 0)
		free(e);
	pthread_mutex_unlock(&a->lock);
}

static void count(struct kmm_kube_auth *a, uint64_t *counter)
{
	pthread_mutex_lock(&a->lock);
	(*counter)++;
	pthread_mutex_unlock(&a->lock);
}

/* Asks the API; returns 200/401/403 or a negative errno. */
static int ask(struct kmm_kube_auth *a, const char *token, const char *verb, const char *path,
	       struct kmm_error **err)
{
	_cleanup_json_ json_t *user = NULL;
	int r;

	count(a, &a->stats.token_reviews);
	r = a->backend.review(a->backend.userdata, token, &user, err);
	if (r <= 0)
		return r < 0 ? r : 401;
	count(a, &a->stats.access_reviews);
	r = a->backend.access(a->backend.userdata, user, verb, path, err);
	if (r < 0)
		return r;
	return r ? 200 : 403;
}

int kmm_kube_auth_check(struct kmm_kube_auth *a, const char *authorization, const char *method,
			const char *path, struct kmm_error **err)
{
	_cleanup_free_ char *token = NULL;
	char verb[MAX_VERB + 1], key[2 * 32 + 1];
	const char *tok;
	size_t len = 0, vlen = method ? strlen(method) : 0;
	uint64_t now;
	int status;

	tok = bearer_token(authorization, &len);
	if (!tok || !path || strlen(path) > MAX_PATH || vlen == 0 || vlen > MAX_VERB) {
		count(a, &a->stats.checks);
		return 401;
	}
	/* Verbs of non-resource requests are the lower-cased method, as in the apiserver. */
	for (size_t i = 0; i <= vlen; i++)
		verb[i] = (char)tolower((unsigned char)method[i]);
	if (cache_key(tok, len, verb, path, key) < 0)
		return kmm_error_make(err, EIO, "hash the token");
	now = a->backend.now_ms(a->backend.userdata);
	status = cache_lookup(a, key, now);
	if (status)
		return status;
	token = strndup(tok, len);
	if (!token)
		return kmm_error_make(err, ENOMEM, "out of memory");
	status = ask(a, token, verb, path, err);
	explicit_bzero(token, len);
	if (status < 0) {
		count(a, &a->stats.failures);
		return status;
	}
	cache_store(a, key, status, a->backend.now_ms(a->backend.userdata));
	return status;
}

int kmm_kube_auth_httpd(const char *authorization, const char *method, const char *path,
			void *userdata)
{
	struct kmm_kube_auth *a = userdata;
	struct kmm_error *e = NULL;
	int r = kmm_kube_auth_check(a, authorization, method, path, &e);

	if (r < 0) {
		char *msg = strdup(e ? kmm_error_message(e) : "unknown error");

		pthread_mutex_lock(&a->lock);
		free(a->last_error);
		a->last_error = msg;
		pthread_mutex_unlock(&a->lock);
		kmm_error_free(e);
		return 500;
	}
	return r;
}

char *kmm_kube_auth_last_error(struct kmm_kube_auth *a)
{
	char *msg;

	pthread_mutex_lock(&a->lock);
	msg = a->last_error ? strdup(a->last_error) : NULL;
	pthread_mutex_unlock(&a->lock);
	return msg;
}

void kmm_kube_auth_stats(struct kmm_kube_auth *a, struct kmm_kube_auth_stats *ret)
{
	pthread_mutex_lock(&a->lock);
	*ret = a->stats;
	pthread_mutex_unlock(&a->lock);
}

KMM_TESTABLE int kmm_kube_auth_new_backend(const struct kmm_kube_auth_backend *b,
					   const struct kmm_kube_auth_options *opts,
					   struct kmm_kube_auth **ret, struct kmm_error **err)
{
	struct kmm_kube_auth *a = calloc(1, sizeof(*a));

	if (!a || !(a->cache = kmm_hashmap_new(free))) {
		free(a);
		kmm_error_make(err, ENOMEM, "out of memory");
		return -ENOMEM; /* spelled out: callers rely on *ret being set when >= 0 */
	}
	a->backend = *b;
	a->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
	a->allow_ttl_ms = opts && opts->allow_ttl_ms ? opts->allow_ttl_ms : DEFAULT_TTL_MS;
	a->deny_ttl_ms = opts && opts->deny_ttl_ms ? opts->deny_ttl_ms : DEFAULT_TTL_MS;
	a->max_entries = opts && opts->max_entries ? opts->max_entries : DEFAULT_MAX_ENTRIES;
	pthread_mutex_init(&a->lock, NULL);
	*ret = a;
	return 0;
}

int kmm_kube_auth_new(struct kmm_kube_client *kube, const struct kmm_kube_auth_options *opts,
		      struct kmm_kube_auth **ret, struct kmm_error **err)
{
	struct kmm_kube_auth_backend b = { kube_review, kube_access, monotonic_ms, NULL };
	struct kmm_kube_auth *a = NULL;
	int r;

	r = kmm_kube_auth_new_backend(&b, opts, &a, err);
	if (r < 0)
		return r;
	a->kube = kube;
	a->backend.userdata = a;
	*ret = a;
	return 0;
}

void kmm_kube_auth_free(void *p)
{
	struct kmm_kube_auth *a = p;

	if (!a)
		return;
	kmm_hashmap_free(a->cache);
	free(a->last_error);
	pthread_mutex_destroy(&a->lock);
	free(a);
}
