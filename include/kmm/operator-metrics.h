/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-operator's metrics server as upstream configures it: metrics.bindAddress,
 * metrics.secureServing (HTTPS with the certificate of a directory, or a
 * self-signed one made at start) and metrics.enableAuthnAuthz (TokenReview +
 * SubjectAccessReview of every request, see kmm/kube-auth.h).
 */
#ifndef KMM_OPERATOR_METRICS_H
#define KMM_OPERATOR_METRICS_H

#include "kmm/error.h"
#include "kmm/httpd.h"
#include "kmm/kube.h"
#include "kmm/operator-config.h"

/*
 * Starts the server serving metrics_fn(userdata) on /metrics. `cert_dir`
 * (may be NULL) holds tls.crt and tls.key, re-read when they change; without
 * it a self-signed certificate for localhost, 127.0.0.1 and the host name is
 * made. `kube` is borrowed for the reviews and must outlive the server.
 * Returns 0 with *ret NULL when metrics.bindAddress is "0"; the server, once
 * returned, owns its authorizer (kmm_httpd_free frees both).
 */
int kmm_op_metrics_server_start(const struct kmm_operator_config *cfg, struct kmm_kube_client *kube,
				const char *cert_dir, kmm_http_handler_fn metrics_fn,
				void *userdata, struct kmm_httpd **ret, struct kmm_error **err);

#endif
