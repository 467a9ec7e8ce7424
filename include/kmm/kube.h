/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes API client: transport and typed-by-resource requests.
 *
 * Threads: a struct kmm_kube_client is safe to use from any number of threads
 * at once. Every transfer (requests, batches, watches in kmm/kube-watch.h) is
 * run by one thread the client starts on first use, on one curl multi handle:
 * over HTTP/2 they all share one connection, as streams. The calling thread
 * waits for its own transfer; callbacks it gives run on the calling thread.
 *
 * Ownership: objects passed in (json_t *body) are borrowed and never
 * modified; objects returned through ret_* are new references owned by the
 * caller (json_decref). Write paths send exactly what the caller gives, so
 * fields this code does not know are never dropped.
 *
 * Errors: an API error becomes a kmm_error with http_status, the Status
 * reason and message, retry_after_ms from Retry-After or
 * details.retryAfterSeconds; the errno code follows kmm_errno_from_http_status
 * (404 ENOENT, 409 AlreadyExists EEXIST, 409 Conflict ESTALE, 410 ESTALE,
 * 401/403 EACCES, 422 EINVAL, 429 EAGAIN, 5xx EIO). The full Status (details,
 * causes) is available with kmm_kube_status_parse() on the body of a raw
 * request.
 */
#ifndef KMM_KUBE_H
#define KMM_KUBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "kmm/shared-error.h"
#include "kmm/kubeconfig.h"

struct kmm_kube_client;

struct kmm_kube_client_options {
	double qps;		 /* client-side rate limit; <= 0 disables it (default 50) */
	int burst;		 /* bucket size (default 100) */
	long connect_timeout_ms; /* default 10000 */
	long request_timeout_ms; /* whole request, not used for watches; default 60000 */
	int max_retries;	 /* retries for 429/5xx/connection errors; default 5; -1 = none */
	long retry_base_ms;	 /* first backoff step (default 100), doubled, with jitter */
	long retry_max_ms;	 /* cap of one backoff step and of Retry-After (default 30000) */
	size_t max_body;	 /* response body cap (default 64 MiB) */
	const char *user_agent;	 /* default "kmm/<version>" */
	bool http1_only;	 /* disable HTTP/2 (default: HTTP/2 over TLS when offered) */
};

/* Fills o with the defaults above. */
void kmm_kube_client_options_init(struct kmm_kube_client_options *o);

/*
 * Creates a client. `config` is copied (the caller keeps ownership); `opts`
 * may be NULL for defaults. Needs curl_global_init() to have been called or
 * calls it once itself (thread-safe through pthread_once).
 */
int kmm_kube_client_new(const struct kmm_kube_config *config,
			const struct kmm_kube_client_options *opts,
			struct kmm_kube_client **ret_client, struct kmm_error **err);

/* Frees the client. No call may be in flight. NULL-safe. */
void kmm_kube_client_free(struct kmm_kube_client *c);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_kube_client *, kmm_kube_client_free)
#define _cleanup_kube_client_ _cleanup_(kmm_kube_client_freep)

/* The default namespace of the config the client was made from. Owned by c. */
const char *kmm_kube_client_namespace(const struct kmm_kube_client *c);

/* Counters since creation (for tests and benchmarks). */
struct kmm_kube_client_stats {
	uint64_t requests; /* HTTP exchanges, including retries */
	uint64_t retries;
	uint64_t connections; /* new TCP connections made */
};
void kmm_kube_client_stats(struct kmm_kube_client *c, struct kmm_kube_client_stats *ret);

/* ---- resources and paths ---- */

/*
 * A resource: group ("" for the core group), version, plural resource name
 * and scope. Usually a static const, e.g. kmm_kube_pods.
 */
struct kmm_kube_resource {
	const char *group;
	const char *version;
	const char *resource;
	bool namespaced;
};

extern const struct kmm_kube_resource kmm_kube_pods, kmm_kube_nodes, kmm_kube_configmaps,
    kmm_kube_secrets, kmm_kube_namespaces, kmm_kube_events, kmm_kube_leases, kmm_kube_events_v1,
    kmm_kube_deployments, kmm_kube_daemonsets;

/* A (namespace, name, subresource) target. namespace is ignored for
 * cluster-scoped resources; name NULL means the collection. */
struct kmm_kube_target {
	const struct kmm_kube_resource *res;
	const char *namespace;
	const char *name;
	const char *subresource; /* e.g. "status", or NULL */
};

/* One query parameter; the value is escaped by the client. */
struct kmm_kube_query {
	const char *key;
	const char *value;
};

/*
 * Builds the request path for t plus query parameters (terminated by a
 * {NULL, NULL} entry, or q == NULL; entries with a NULL value are skipped):
 * every segment and value is percent-escaped, so a name containing '/', '?'
 * or '#' stays one segment. A namespaced resource with namespace NULL
 * addresses all namespaces (collections only). Returns 0 and a heap string
 * owned by the caller, or -EINVAL for an empty or "."/".." segment or a
 * subresource without a name.
 */
int kmm_kube_path(const struct kmm_kube_target *t, const struct kmm_kube_query *q, char **ret_path,
		  struct kmm_error **err);

/* ---- raw requests ---- */

struct kmm_kube_request {
	const char *method;	  /* GET, POST, PUT, PATCH, DELETE */
	const char *path;	  /* starting with '/', already escaped (kmm_kube_path) */
	const char *content_type; /* for the body; default application/json */
	const char *body;	  /* or NULL */
	size_t body_len;
	bool no_retry;	 /* do not retry even when the error would allow it */
	long timeout_ms; /* whole request; 0: the client's request_timeout_ms */
	/*
	 * A POST that creates an object with a fixed metadata.name (set by
	 * kmm_kube_prepare_create()): sending it again cannot make a second
	 * object, a repeat of a create that landed fails with 409
	 * AlreadyExists. So it is retried after a 5xx or a connection lost
	 * after sending, as PUT and DELETE are; a POST without it only after
	 * 429, a connection that never reached the server, or a 5xx with
	 * Retry-After.
	 */
	bool named_create;
};

struct kmm_kube_response {
	long status; /* HTTP status */
	char *body;  /* NUL-terminated, owned by the response */
	size_t body_len;
	int64_t retry_after_ms; /* from Retry-After, or -1 */
	/*
	 * An earlier attempt of this request failed after it was sent (5xx,
	 * connection lost) and may have been carried out: a 409 AlreadyExists
	 * answering a named create, or a 404 answering a DELETE, may be that
	 * attempt's doing. Such errors say so in their message.
	 */
	bool maybe_applied;
};

/* Frees what the response owns (not the struct itself). */
void kmm_kube_response_clear(struct kmm_kube_response *r);

/*
 * Performs one request with rate limiting and retries, and returns the
 * response whatever its status (only transport failures fail). Retries, at
 * most the client's max_retries (none with req->no_retry): connection
 * failures always (before anything was sent) or for idempotent methods (GET,
 * PUT, DELETE, and named creates); 429 always (the server did not act on
 * it); 500, 502, 503 and 504 for every method but POST, which is retried only
 * as a named create or when the server sent a Retry-After. The delay is the
 * server's Retry-After (header, else the Status' details.retryAfterSeconds)
 * or the jittered backoff, capped by retry_max_ms either way.
 */
int kmm_kube_request(struct kmm_kube_client *c, const struct kmm_kube_request *req,
		     struct kmm_kube_response *ret_resp, struct kmm_error **err);

/*
 * Like kmm_kube_request() but a status >= 400 becomes a kmm_error (Status
 * decoded) and a 2xx body is parsed into *ret_obj (if ret_obj is not NULL).
 */
int kmm_kube_request_json(struct kmm_kube_client *c, const struct kmm_kube_request *req,
			  json_t **ret_obj, struct kmm_error **err);

/*
 * Pipelined requests: performs n requests with up to max_in_flight in flight
 * at once, on the client's shared connection (HTTP/2 streams; one connection
 * per in-flight request over HTTP/1.1); the calling thread waits. Each item
 * is retried as kmm_kube_request() would retry it (same rules, same
 * max_retries, delays and stats), while the other items go on: an item
 * waiting out its delay holds no slot. Each item gets its own final response
 * or error (look at each item's status; resp.maybe_applied tells that a 409
 * AlreadyExists or 404 may answer the item's own earlier attempt). The
 * 401 re-authentication of exec credentials is not done here. Returns 0 when
 * every item was attempted (even if some failed), -ENOMEM when out of
 * memory. Items' responses and errors belong to the caller
 * (kmm_kube_batch_clear).
 */
struct kmm_kube_batch_item {
	struct kmm_kube_request req;   /* in */
	struct kmm_kube_response resp; /* out: valid when rc == 0 */
	int rc;			       /* out: 0 or negative errno (transport) */
	struct kmm_error *err;	       /* out: set when rc < 0 */
	int attempts;		       /* out: HTTP exchanges made for it (1 + retries) */
};

int kmm_kube_batch(struct kmm_kube_client *c, struct kmm_kube_batch_item *items, size_t n,
		   size_t max_in_flight, struct kmm_error **err);

/* Frees the responses and errors of items (not the array). */
void kmm_kube_batch_clear(struct kmm_kube_batch_item *items, size_t n);

/*
 * The outcome of one item of a finished batch, as kmm_kube_request_json()
 * would have given it: the transport error (a copy), an error made from a
 * status >= 400 (Status decoded, the errno code as for every verb, e.g. a
 * 404 is -ENOENT), or 0 and the 2xx body parsed into *ret_obj (if ret_obj is
 * not NULL). The item is not modified; kmm_kube_batch_clear() still frees it.
 */
int kmm_kube_batch_item_json(const struct kmm_kube_batch_item *it, json_t **ret_obj,
			     struct kmm_error **err);

/* ---- metav1.Status ---- */

struct kmm_kube_status_cause {
	char *type;
	char *message;
	char *field;
};

struct kmm_kube_status {
	int code;     /* HTTP code from the Status, 0 if absent */
	char *status; /* "Failure" / "Success" */
	char *reason; /* e.g. AlreadyExists, Conflict, NotFound, Expired, TooManyRequests */
	char *message;
	/* details */
	char *name;
	char *group;
	char *kind;
	char *uid;
	int64_t retry_after_seconds; /* -1 if absent */
	struct kmm_kube_status_cause *causes;
	size_t n_causes;
};

/* Parses a Status object; -EINVAL if body is not JSON with kind Status. */
int kmm_kube_status_parse(const char *body, size_t len, struct kmm_kube_status **ret_status);
void kmm_kube_status_free(struct kmm_kube_status *s);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_kube_status *, kmm_kube_status_free)

/*
 * Makes the kmm_error for an HTTP error response: decodes a Status body if
 * there is one (code, reason, message, the first causes, retry-after), else
 * uses the status line and a prefix of the body. Returns -code.
 */
int kmm_kube_error_from_response(const struct kmm_kube_response *resp, const char *what,
				 struct kmm_error **err);

/* ---- verbs ---- */

struct kmm_kube_list_options {
	const char *label_selector;
	const char *field_selector;
	const char *resource_version;	    /* "0" = from cache, NULL = consistent read */
	const char *resource_version_match; /* "NotOlderThan" / "Exact", or NULL */
	long limit;			    /* page size, 0 = server default (no paging) */
	const char *continue_token;
	long timeout_seconds;
};

/* GET one object. */
int kmm_kube_get(struct kmm_kube_client *c, const struct kmm_kube_target *t, json_t **ret_obj,
		 struct kmm_error **err);

/* One LIST page; the list's metadata.continue tells whether more follow. */
int kmm_kube_list(struct kmm_kube_client *c, const struct kmm_kube_target *t,
		  const struct kmm_kube_list_options *o, json_t **ret_list, struct kmm_error **err);

/*
 * LIST following continue tokens (page size o->limit, default 500) and returns
 * one list whose items are all pages' items and whose metadata is the last
 * page's (resourceVersion of the snapshot). A 410 on a continue token
 * (snapshot compacted) restarts the list from the beginning once.
 */
int kmm_kube_list_all(struct kmm_kube_client *c, const struct kmm_kube_target *t,
		      const struct kmm_kube_list_options *o, json_t **ret_list,
		      struct kmm_error **err);

struct kmm_kube_write_options {
	const char *field_manager; /* fieldManager query parameter */
	bool dry_run;
};

/* POST obj to the collection of t (t->name ignored). */
int kmm_kube_create(struct kmm_kube_client *c, const struct kmm_kube_target *t, const json_t *obj,
		    const struct kmm_kube_write_options *o, json_t **ret_obj,
		    struct kmm_error **err);

/* PUT obj to t (a stale metadata.resourceVersion fails with 409 Conflict, ESTALE). */
int kmm_kube_update(struct kmm_kube_client *c, const struct kmm_kube_target *t, const json_t *obj,
		    const struct kmm_kube_write_options *o, json_t **ret_obj,
		    struct kmm_error **err);

enum kmm_kube_patch_type {
	KMM_KUBE_PATCH_MERGE,	  /* application/merge-patch+json */
	KMM_KUBE_PATCH_JSON,	  /* application/json-patch+json (patch is an array) */
	KMM_KUBE_PATCH_STRATEGIC, /* application/strategic-merge-patch+json (built-ins only) */
	KMM_KUBE_PATCH_APPLY, /* application/apply-patch+yaml (server-side apply; JSON is YAML) */
};

struct kmm_kube_patch_options {
	const char *field_manager; /* required for APPLY */
	bool force;		   /* APPLY: take ownership of conflicting fields */
	bool dry_run;
};

int kmm_kube_patch(struct kmm_kube_client *c, const struct kmm_kube_target *t,
		   enum kmm_kube_patch_type type, const json_t *patch,
		   const struct kmm_kube_patch_options *o, json_t **ret_obj,
		   struct kmm_error **err);

struct kmm_kube_delete_options {
	const char *precondition_uid;
	const char *precondition_resource_version;
	const char *propagation_policy; /* "Foreground", "Background", "Orphan" or NULL */
	long grace_period_seconds;	/* -1 = server default */
	bool dry_run;
};

/* Initializes o: everything unset, grace_period_seconds -1. */
void kmm_kube_delete_options_init(struct kmm_kube_delete_options *o);

/* DELETE; *ret_obj (optional) gets the object (if still terminating) or the Status. */
int kmm_kube_delete(struct kmm_kube_client *c, const struct kmm_kube_target *t,
		    const struct kmm_kube_delete_options *o, json_t **ret_obj,
		    struct kmm_error **err);

/*
 * A write built but not sent, for kmm_kube_batch(): exactly what
 * kmm_kube_create/update/patch/delete send (method, path and query, content
 * type, serialized body). req.path and req.body point into path and body,
 * which the struct owns; kmm_kube_prepared_clear() frees them.
 */
struct kmm_kube_prepared {
	struct kmm_kube_request req;
	char *path;
	char *body;
};

int kmm_kube_prepare_create(const struct kmm_kube_target *t, const json_t *obj,
			    const struct kmm_kube_write_options *o, struct kmm_kube_prepared *ret,
			    struct kmm_error **err);
int kmm_kube_prepare_update(const struct kmm_kube_target *t, const json_t *obj,
			    const struct kmm_kube_write_options *o, struct kmm_kube_prepared *ret,
			    struct kmm_error **err);
int kmm_kube_prepare_patch(const struct kmm_kube_target *t, enum kmm_kube_patch_type type,
			   const json_t *patch, const struct kmm_kube_patch_options *o,
			   struct kmm_kube_prepared *ret, struct kmm_error **err);
int kmm_kube_prepare_delete(const struct kmm_kube_target *t,
			    const struct kmm_kube_delete_options *o, struct kmm_kube_prepared *ret,
			    struct kmm_error **err);
/* Frees what p owns and zeroes it. NULL-safe. */
void kmm_kube_prepared_clear(struct kmm_kube_prepared *p);

/* ---- discovery ---- */

struct kmm_kube_resource_info {
	char *kind;
	bool namespaced;
	char **verbs;	     /* NULL-terminated */
	char **subresources; /* e.g. "status" */
};

/* Asks /api/v1 or /apis/<group>/<version> about one resource. */
int kmm_kube_discover(struct kmm_kube_client *c, const char *group, const char *version,
		      const char *resource, struct kmm_kube_resource_info **ret_info,
		      struct kmm_error **err);
void kmm_kube_resource_info_free(struct kmm_kube_resource_info *i);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_kube_resource_info *, kmm_kube_resource_info_free)

/* ---- small JSON helpers used by every consumer ---- */

/* metadata.<field> as a string, or NULL. Borrowed from obj. */
const char *kmm_kube_meta_str(const json_t *obj, const char *field);

/* Store key "namespace/name" (or "name" when there is no namespace); heap. */
char *kmm_kube_object_key(const json_t *obj);

/*
 * Decodes standard base64 as Kubernetes stores it (kubeconfig *-data, Secret
 * data), whitespace ignored, into a NUL-terminated buffer. Returns 0, -EINVAL
 * for text that is not base64, or -ENOMEM.
 */
int kmm_kube_base64_decode(const char *in, char **ret, size_t *ret_len);

#endif
