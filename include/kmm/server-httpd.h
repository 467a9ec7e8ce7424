/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small HTTP(S) server for the operator's probes and metrics, on
 * libmicrohttpd with its own thread.
 *
 * Routes map an exact path to a handler that fills a response. Handlers run on
 * the server's thread and may run concurrently with any other thread of the
 * program; they must not block for long. Only GET and HEAD are served; other
 * methods get 405, unknown paths 404.
 *
 * Optionally the server speaks HTTPS (a PEM pair given in memory, or read from
 * files and switched without a restart of the process when they change), and
 * asks an authorize callback about every request before routing it: the
 * metrics server uses both, the probes server neither.
 */
#ifndef KMM_HTTPD_H
#define KMM_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-error.h"

struct kmm_httpd;

struct kmm_http_response {
	int status;		  /* default 200 */
	const char *content_type; /* default "text/plain; charset=utf-8" (static string) */
	struct kmm_buf body;	  /* the handler appends here */
};

typedef void (*kmm_http_handler_fn)(struct kmm_http_response *resp, void *userdata);

/*
 * Decides whether a request is served. `authorization` is the request's
 * Authorization header (NULL without one), `method` and `path` as received.
 * Returns the HTTP status to answer: 200 lets the route run; anything else
 * (401, 403, 500) is sent instead with a one-line body. Runs on the server's
 * threads, possibly several at once, and may block for as long as its own
 * timeouts allow.
 */
typedef int (*kmm_http_authorize_fn)(const char *authorization, const char *method,
				     const char *path, void *userdata);

struct kmm_httpd_options {
	/* "HOST:PORT", ":PORT" (all addresses), or "0" to disable the server. */
	const char *bind_address;
};

/*
 * Parses a bind address as above into a dotted IPv4/IPv6 host (empty for any)
 * and a port (0 allowed: the kernel picks one). Returns 0, or -EINVAL with a
 * message naming the address; *ret_disabled is set for "0".
 */
int kmm_parse_bind_address(const char *addr, char *host, size_t host_size, uint16_t *ret_port,
			   bool *ret_disabled, struct kmm_error **err);

/* Creates a server that is not yet listening. */
int kmm_httpd_new(const struct kmm_httpd_options *opts, struct kmm_httpd **ret,
		  struct kmm_error **err);

/*
 * HTTPS with a PEM certificate chain and key held in memory (copied). Call
 * before kmm_httpd_start(); replaces an earlier kmm_httpd_set_tls_files().
 * Returns 0 or -ENOMEM; a pair that does not parse fails the start.
 */
int kmm_httpd_set_tls(struct kmm_httpd *h, const char *cert_pem, const char *key_pem);

/*
 * HTTPS with the PEM pair in these files, re-read every interval_ms (0: 10 s)
 * and served from the next handshake on once both changed files load; until
 * then the previous pair keeps serving. Call before kmm_httpd_start().
 * Returns 0 or -ENOMEM.
 */
int kmm_httpd_set_tls_files(struct kmm_httpd *h, const char *cert_file, const char *key_file,
			    unsigned interval_ms);

/*
 * Asks fn about every request before routing it. If free_fn is set, the
 * server owns userdata from now on and frees it with free_fn after its last
 * request. Also raises the number of serving threads to 4, so that one slow
 * API call does not hold up every other client. Call before kmm_httpd_start().
 */
void kmm_httpd_set_authorize(struct kmm_httpd *h, kmm_http_authorize_fn fn, void *userdata,
			     void (*free_fn)(void *userdata));

/* Adds a route; call before kmm_httpd_start(). */
int kmm_httpd_route(struct kmm_httpd *h, const char *path, kmm_http_handler_fn fn, void *userdata);

/*
 * A POST route: the handler gets the request path and body (NUL-terminated,
 * at most max_body bytes; a larger body is answered 413 without calling it).
 * Other methods on its path get 405. Call before kmm_httpd_start().
 */
typedef void (*kmm_http_post_handler_fn)(struct kmm_http_response *resp, const char *path,
					 const char *body, size_t len, void *userdata);
int kmm_httpd_route_post(struct kmm_httpd *h, const char *path, kmm_http_post_handler_fn fn,
			 void *userdata, size_t max_body);

/* Starts listening. Returns -EADDRINUSE etc. with a message naming the address. */
int kmm_httpd_start(struct kmm_httpd *h, struct kmm_error **err);

/* The port actually bound (useful with port 0), or 0 when not running. */
uint16_t kmm_httpd_port(const struct kmm_httpd *h);

/* Whether the server speaks HTTPS. */
bool kmm_httpd_tls(const struct kmm_httpd *h);

/* Number of certificate (re)loads from files so far, the first included. */
unsigned kmm_httpd_cert_loads(struct kmm_httpd *h);

/*
 * Makes a self-signed certificate and its key (ECDSA P-256, valid for a year
 * from an hour ago) as PEM strings owned by the caller. `hosts` is a
 * NULL-terminated list of names for the subjectAltName: IP addresses become
 * IP entries, anything else DNS entries; the first is also the common name.
 * For serving when no certificate is provided, as controller-runtime does;
 * clients must skip verification or pin this certificate.
 */
int kmm_tls_self_signed(const char *const *hosts, char **ret_cert_pem, char **ret_key_pem,
			struct kmm_error **err);

/* Stops the server (waits for in-flight requests) and frees it. NULL-safe. */
void kmm_httpd_free(struct kmm_httpd *h);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_httpd *, kmm_httpd_free)

#endif
