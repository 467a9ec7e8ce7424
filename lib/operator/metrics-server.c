/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kmm/kube-auth.h"
#include "kmm/operator-metrics.h"

static int self_signed(char **ret_cert, char **ret_key, struct kmm_error **err)
{
	char host[HOST_NAME_MAX + 1] = "";
	const char *hosts[4] = { "localhost", "127.0.0.1", NULL, NULL };

	/* The pod's name: what a client inside the cluster may dial. */
	if (gethostname(host, sizeof(host)) == 0 && host[0] && strcmp(host, "localhost") != 0)
		hosts[2] = host;
	return kmm_tls_self_signed(hosts, ret_cert, ret_key, err);
}

static int setup_tls(struct kmm_httpd *h, const char *cert_dir, struct kmm_error **err)
{
	_cleanup_free_ char *cert = NULL, *key = NULL;
	int r;

	if (cert_dir) {
		/* The names a kubernetes.io/tls Secret mounted as a volume has. */
		if (asprintf(&cert, "%s/tls.crt", cert_dir) < 0) {
			cert = NULL;
			return kmm_error_make(err, ENOMEM, "out of memory");
		}
		if (asprintf(&key, "%s/tls.key", cert_dir) < 0) {
			key = NULL;
			return kmm_error_make(err, ENOMEM, "out of memory");
		}
		r = kmm_httpd_set_tls_files(h, cert, key, 0);
	} else {
		r = self_signed(&cert, &key, err);
		if (r < 0)
			return r;
		r = kmm_httpd_set_tls(h, cert, key);
		explicit_bzero(key, strlen(key));
	}
	return r < 0 ? kmm_error_make(err, -r, "out of memory") : 0;
}

int kmm_op_metrics_server_start(const struct kmm_operator_config *cfg, struct kmm_kube_client *kube,
				const char *cert_dir, kmm_http_handler_fn metrics_fn,
				void *userdata, struct kmm_httpd **ret, struct kmm_error **err)
{
	_cleanup_(kmm_httpd_freep) struct kmm_httpd *h = NULL;
	struct kmm_httpd_options o = { .bind_address = cfg->metrics_bind_address };
	struct kmm_kube_auth *auth = NULL;
	int r;

	if (strcmp(cfg->metrics_bind_address, "0") == 0) {
		*ret = NULL;
		return 0;
	}
	r = kmm_httpd_new(&o, &h, err);
	if (r < 0)
		return kmm_error_wrap(err, "metrics.bindAddress");
	if (cfg->metrics_secure_serving) {
		r = setup_tls(h, cert_dir, err);
		if (r < 0)
			return kmm_error_wrap(err, "metrics server certificate");
	}
	if (cfg->metrics_enable_authn_authz) {
		r = kmm_kube_auth_new(kube, NULL, &auth, err);
		if (r < 0)
			return r;
		kmm_httpd_set_authorize(h, kmm_kube_auth_httpd, auth, kmm_kube_auth_free);
	}
	r = kmm_httpd_route(h, "/metrics", metrics_fn, userdata);
	if (r < 0)
		return kmm_error_make(err, -r, "metrics route");
	r = kmm_httpd_start(h, err);
	if (r < 0)
		return kmm_error_wrap(err, "metrics.bindAddress %s", cfg->metrics_bind_address);
	*ret = TAKE_PTR(h);
	return 0;
}
