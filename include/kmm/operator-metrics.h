/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-operator's metrics server as upstream configures it: metrics.bindAddress,
 * metrics.secureServing (HTTPS with the certificate of a directory, or a
 * self-signed one made at start) and metrics.enableAuthnAuthz (TokenReview +
 * SubjectAccessReview of every request, see kmm/server-kube-auth.h).
 */
#ifndef KMM_OPERATOR_METRICS_H
#define KMM_OPERATOR_METRICS_H

#include <stdbool.h>

#include "kmm/shared-error.h"
#include "kmm/server-httpd.h"
#include "kmm/kube.h"
#include "kmm/server-metrics.h"
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

/* The probe server and the metrics server as kmm-operator runs them. */
struct kmm_op_serving {
	struct kmm_httpd *health;  /* /healthz, /readyz (and /metrics when shared) */
	struct kmm_httpd *metrics; /* NULL when shared with health or disabled */
	unsigned health_port, metrics_port;
	bool metrics_tls, metrics_auth;
	/*
	 * metrics.bindAddress is healthProbeBindAddress although secure serving
	 * or authn/authz was asked for: /metrics is served plainly (say so).
	 */
	bool metrics_downgraded;
};

struct kmm_op_engine;
/*
 * Serves /healthz, /readyz (200 once *engine exists and its caches have
 * synced, else 503) and /metrics (kmm_metrics_render of m, borrowed) on the
 * configured addresses. On success *ret owns both servers (kmm_op_serving_stop).
 */
int kmm_op_serving_start(const struct kmm_operator_config *cfg, struct kmm_kube_client *kube,
			 struct kmm_metrics *m, const char *metrics_cert_dir,
			 struct kmm_op_engine *const *engine, struct kmm_op_serving *ret,
			 struct kmm_error **err);
void kmm_op_serving_stop(struct kmm_op_serving *s);

#endif
