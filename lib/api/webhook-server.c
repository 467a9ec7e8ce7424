/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTPS server for the webhooks: kmm_httpd with certificate files that are
 * reloaded when they change (see lib/server/httpd.c for how rotation keeps the
 * address), one POST route per webhook path, and /healthz, /readyz.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-buf.h"
#include "kmm/server-httpd.h"
#include "kmm/shared-log.h"
#include "kmm/api-webhook.h"

struct kmm_webhook_server {
	struct kmm_webhook_options hooks;
	struct kmm_httpd *httpd;
};

static const char *const webhook_paths[] = {
	KMM_WEBHOOK_PATH_MODULE,    KMM_WEBHOOK_PATH_PFV,     KMM_WEBHOOK_PATH_MCM,
	KMM_WEBHOOK_PATH_NAMESPACE, KMM_WEBHOOK_PATH_CONVERT,
};

static void serve_ok(struct kmm_http_response *resp, void *userdata)
{
	(void)userdata;
	kmm_buf_append_str(&resp->body, "ok");
}

static void serve_review(struct kmm_http_response *resp, const char *path, const char *body,
			 size_t len, void *userdata)
{
	struct kmm_webhook_server *s = userdata;
	_cleanup_free_ char *out = NULL;
	int status = 500;

	if (kmm_webhook_handle(&s->hooks, path, body, len, &status, &out) < 0) {
		resp->status = 500;
		return;
	}
	if (kmm_log_enabled(KMM_LOG_DEBUG)) {
		char st[16];

		snprintf(st, sizeof(st), "%d", status);
		kmm_debug("webhook request", "path", path, "status", st);
	}
	resp->status = status;
	if (out) {
		resp->content_type = "application/json";
		if (kmm_buf_append_str(&resp->body, out) < 0)
			resp->status = 500;
	}
}

int kmm_webhook_server_start(const struct kmm_webhook_server_options *o,
			     struct kmm_webhook_server **ret, struct kmm_error **err)
{
	_cleanup_(kmm_webhook_server_stopp) struct kmm_webhook_server *s = calloc(1, sizeof(*s));
	struct kmm_httpd_options ho = { o->bind_address ? o->bind_address : ":9443" };
	int r;

	if (!s)
		return kmm_error_make(err, ENOMEM, "out of memory");
	s->hooks = o->hooks;
	if (strcmp(ho.bind_address, "0") == 0)
		return kmm_error_make(err, EINVAL, "webhook: the server cannot be disabled");
	r = kmm_httpd_new(&ho, &s->httpd, err);
	if (r < 0)
		return kmm_error_wrap(err, "webhook");
	r = kmm_httpd_set_tls_files(s->httpd, o->cert_file ? o->cert_file : "",
				    o->key_file ? o->key_file : "", o->reload_interval_ms);
	if (r >= 0)
		r = kmm_httpd_route(s->httpd, "/healthz", serve_ok, s);
	if (r >= 0)
		r = kmm_httpd_route(s->httpd, "/readyz", serve_ok, s);
	for (size_t i = 0; r >= 0 && i < sizeof(webhook_paths) / sizeof(webhook_paths[0]); i++)
		r = kmm_httpd_route_post(s->httpd, webhook_paths[i], serve_review, s,
					 KMM_WEBHOOK_MAX_BODY);
	if (r < 0)
		return kmm_error_make(err, -r, "webhook: routes");
	r = kmm_httpd_start(s->httpd, err);
	if (r < 0)
		return kmm_error_wrap(err, "webhook");
	*ret = TAKE_PTR(s);
	return 0;
}

uint16_t kmm_webhook_server_port(const struct kmm_webhook_server *s)
{
	return s ? kmm_httpd_port(s->httpd) : 0;
}

unsigned kmm_webhook_server_cert_loads(const struct kmm_webhook_server *s)
{
	return kmm_httpd_cert_loads(s->httpd);
}

void kmm_webhook_server_stop(struct kmm_webhook_server *s)
{
	if (!s)
		return;
	kmm_httpd_free(s->httpd);
	free(s);
}
