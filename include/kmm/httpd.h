/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small HTTP(S) server for the operator's probes and metrics, on
 * libmicrohttpd with its own thread.
 *
 * Routes map an exact path to a handler that fills a response. Handlers run on
 * the server's thread and may run concurrently with any other thread of the
 * program; they must not block for long. Only GET and HEAD are served; other
 * methods get 405, unknown paths 404. Plain HTTP: probes and metrics are
 * served on the pod network or loopback; TLS for the webhook lives with the
 * webhook server.
 */
#ifndef KMM_HTTPD_H
#define KMM_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kmm/buf.h"
#include "kmm/error.h"

struct kmm_httpd;

struct kmm_http_response {
	int status;		  /* default 200 */
	const char *content_type; /* default "text/plain; charset=utf-8" (static string) */
	struct kmm_buf body;	  /* the handler appends here */
};

typedef void (*kmm_http_handler_fn)(struct kmm_http_response *resp, void *userdata);

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

/* Adds a route; call before kmm_httpd_start(). */
int kmm_httpd_route(struct kmm_httpd *h, const char *path, kmm_http_handler_fn fn, void *userdata);

/* Starts listening. Returns -EADDRINUSE etc. with a message naming the address. */
int kmm_httpd_start(struct kmm_httpd *h, struct kmm_error **err);

/* The port actually bound (useful with port 0), or 0 when not running. */
uint16_t kmm_httpd_port(const struct kmm_httpd *h);

/* Stops the server (waits for in-flight requests) and frees it. NULL-safe. */
void kmm_httpd_free(struct kmm_httpd *h);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_httpd *, kmm_httpd_free)

#endif
