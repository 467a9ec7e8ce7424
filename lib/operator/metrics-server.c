/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kmm/server-kube-auth.h"
#include "kmm/operator-metrics.h"
#include "kmm/operator.h"

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

/* ---- probes and metrics, as kmm-operator serves them ---- */

struct serving_ctx {
	struct kmm_metrics *metrics;
	struct kmm_op_engine *const *engine;
};

static void serve_metrics(struct kmm_http_response *resp, void *userdata)
{
	struct serving_ctx *c = userdata;

	resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
	if (kmm_metrics_render(c->metrics, &resp->body) < 0)
		resp->status = 500;
}

static void serve_healthz(struct kmm_http_response *resp, void *userdata)
{
	kmm_buf_append(&resp->body, "ok", 2);
}

static void serve_readyz(struct kmm_http_response *resp, void *userdata)
{
	struct serving_ctx *c = userdata;

	if (!*c->engine || !kmm_op_engine_synced(*c->engine)) {
		resp->status = 503;
		kmm_buf_append(&resp->body, "caches not synced", 17);
		return;
	}
	kmm_buf_append(&resp->body, "ok", 2);
}

/* The handlers' context lives as long as the servers: one per process is all kmm needs. */
static struct serving_ctx serving;

int kmm_op_serving_start(const struct kmm_operator_config *cfg, struct kmm_kube_client *kube,
			 struct kmm_metrics *m, const char *metrics_cert_dir,
			 struct kmm_op_engine *const *engine, struct kmm_op_serving *ret,
			 struct kmm_error **err)
{
	_cleanup_(kmm_httpd_freep) struct kmm_httpd *health = NULL, *metrics = NULL;
	struct kmm_httpd_options ho = { cfg->health_probe_bind_address };
	bool same = strcmp(ho.bind_address, cfg->metrics_bind_address) == 0;
	int r;

	serving = (struct serving_ctx){ m, engine };
	r = kmm_httpd_new(&ho, &health, err);
	if (r < 0 || (r = kmm_httpd_route(health, "/healthz", serve_healthz, &serving)) < 0 ||
	    (r = kmm_httpd_route(health, "/readyz", serve_readyz, &serving)) < 0)
		return r < 0 && err && !*err ? kmm_error_make(err, -r, "health server") : r;
	if (same && (r = kmm_httpd_route(health, "/metrics", serve_metrics, &serving)) < 0)
		return kmm_error_make(err, -r, "metrics route");
	r = kmm_httpd_start(health, err);
	if (r < 0)
		return kmm_error_wrap(err, "healthProbeBindAddress");
	if (!same) {
		r = kmm_op_metrics_server_start(cfg, kube, metrics_cert_dir, serve_metrics,
						&serving, &metrics, err);
		if (r < 0)
			return r;
	}
	*ret = (struct kmm_op_serving){
		.health_port = kmm_httpd_port(health),
		.metrics_port = same	  ? kmm_httpd_port(health)
				: metrics ? kmm_httpd_port(metrics)
					  : 0,
		.metrics_tls = !same && kmm_httpd_tls(metrics),
		.metrics_auth = !same && metrics && cfg->metrics_enable_authn_authz,
		.metrics_downgraded =
		    same && (cfg->metrics_secure_serving || cfg->metrics_enable_authn_authz),
	};
	ret->health = TAKE_PTR(health);
	ret->metrics = TAKE_PTR(metrics);
	return 0;
}

void kmm_op_serving_stop(struct kmm_op_serving *s)
{
	kmm_httpd_free(TAKE_PTR(s->metrics));
	kmm_httpd_free(TAKE_PTR(s->health));
}
