/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The admission and conversion webhooks of kmm.sigs.x-k8s.io (reference
 * §1.8): request handling (pure: JSON in, JSON out) and an HTTPS server on
 * libmicrohttpd that serves them and picks up a rotated certificate without a
 * restart.
 *
 * Paths, as upstream:
 *   /validate-kmm-sigs-x-k8s-io-v1beta1-module           Module CREATE/UPDATE
 *   /validate-kmm-sigs-x-k8s-io-v1beta2-preflightvalidation  PFV CREATE/UPDATE
 *   /validate-hub-kmm-sigs-x-k8s-io-v1beta1-managedclustermodule  MCM CREATE/UPDATE (hub)
 *   /validate--v1-namespace                               Namespace DELETE guard
 *   /convert                                              PFV v1beta1 <-> v1beta2
 */
#ifndef KMM_WEBHOOK_H
#define KMM_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kmm/shared-error.h"
#include "kmm/shared-macro.h"

#define KMM_WEBHOOK_PATH_MODULE "/validate-kmm-sigs-x-k8s-io-v1beta1-module"
#define KMM_WEBHOOK_PATH_PFV "/validate-kmm-sigs-x-k8s-io-v1beta2-preflightvalidation"
#define KMM_WEBHOOK_PATH_MCM "/validate-hub-kmm-sigs-x-k8s-io-v1beta1-managedclustermodule"
#define KMM_WEBHOOK_PATH_NAMESPACE "/validate--v1-namespace"
#define KMM_WEBHOOK_PATH_CONVERT "/convert"

/* Request bodies larger than this are refused (413): an UPDATE review carries two objects. */
#define KMM_WEBHOOK_MAX_BODY (8 * 1024 * 1024)

struct kmm_webhook_options {
	bool enable_module;
	bool enable_namespace;
	bool enable_preflightvalidation;  /* validation and /convert */
	int k8s_minor;			  /* apiserver 1.<minor> for the DRA gate; -1 skips it */
	bool enable_managedclustermodule; /* the hub's ManagedClusterModule validation */
};

/*
 * Handles one request body for `path`. On success stores the HTTP status
 * (200 for every well-formed review, allowed or not; 400 for a malformed
 * review; 404 for a path that is not enabled) and a heap JSON body (NULL for
 * 404) in *ret_status / *ret_body. Returns -ENOMEM only.
 */
int kmm_webhook_handle(const struct kmm_webhook_options *opts, const char *path, const char *body,
		       size_t len, int *ret_status, char **ret_body);

/* ------------------------------------------------------------------------- */

struct kmm_webhook_server;

struct kmm_webhook_server_options {
	struct kmm_webhook_options hooks;
	const char *bind_address; /* "HOST:PORT" (PORT 0 picks one) */
	const char *cert_file;	  /* PEM certificate chain */
	const char *key_file;	  /* PEM private key */
	/*
	 * How often the certificate files are checked for changes; on a change
	 * the server switches to the new certificate without dropping its
	 * listening socket's address (default 10 s when 0).
	 */
	unsigned reload_interval_ms;
};

int kmm_webhook_server_start(const struct kmm_webhook_server_options *opts,
			     struct kmm_webhook_server **ret, struct kmm_error **err);
uint16_t kmm_webhook_server_port(const struct kmm_webhook_server *s);
/* Number of certificate (re)loads so far, the first included. */
unsigned kmm_webhook_server_cert_loads(const struct kmm_webhook_server *s);
void kmm_webhook_server_stop(struct kmm_webhook_server *s);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_webhook_server *, kmm_webhook_server_stop)

#endif
