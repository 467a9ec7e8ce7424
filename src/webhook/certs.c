/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-webhook --cert-secret: the serving certificate comes from lib/certs,
 * which kmm-webhook runs itself (docs/install.md says why here and not in the
 * operator). This file only turns flags into options and logs the rounds.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kmm/certs.h"
#include "kmm/kube.h"
#include "kmm/kubeconfig.h"
#include "kmm/shared-log.h"
#include "kmm/shared-strv.h"
#include "webhook.h"

#define FIRST_SYNC_TRIES 30
#define FIRST_SYNC_PAUSE_S 2

/* What the provisioner thread reads until it stops. */
static struct {
	struct kmm_certs_options o;
	char **hosts;
	struct kmm_kube_client *client;
} st;

/* Rounds that change nothing are logged only at start (always is true then). */
static void log_round(const struct kmm_certs_sync_result *r, const struct kmm_error *err,
		      bool always)
{
	char patched[16], until[32];
	struct tm tm;

	if (err) {
		kmm_log(KMM_LOG_ERROR, "certificates: sync failed", "error", kmm_error_message(err),
			NULL);
		return;
	}
	if (r->missing)
		kmm_log(KMM_LOG_WARN,
			"certificates: a webhook configuration or CRD to patch is missing", NULL);
	if (!always && r->change == KMM_CERTS_KEEP && !r->ca_bundles_patched && !r->files_written)
		return;
	snprintf(patched, sizeof(patched), "%u", r->ca_bundles_patched);
	gmtime_r(&r->cert_not_after, &tm);
	strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &tm);
	kmm_log(KMM_LOG_INFO, "certificates synced", "change", kmm_certs_change_name(r->change),
		"secretWritten", r->secret_written ? "true" : "false", "caBundlesPatched", patched,
		"filesWritten", r->files_written ? "true" : "false", "notAfter", until, NULL);
}

static void on_round(void *userdata, const struct kmm_certs_sync_result *r,
		     const struct kmm_error *err)
{
	(void)userdata;
	log_round(r, err, false);
}

/* svc, svc.ns, svc.ns.svc, svc.ns.svc.cluster.local, then --cert-host names. */
static int make_hosts(const struct webhook_certs_args *a)
{
	if (a->service &&
	    (kmm_strv_push(&st.hosts, a->service) < 0 ||
	     kmm_strv_pushf(&st.hosts, "%s.%s", a->service, a->namespace) < 0 ||
	     kmm_strv_pushf(&st.hosts, "%s.%s.svc", a->service, a->namespace) < 0 ||
	     kmm_strv_pushf(&st.hosts, "%s.%s.svc.cluster.local", a->service, a->namespace) < 0))
		return -ENOMEM;
	if (a->hosts && kmm_strv_extend(&st.hosts, a->hosts) < 0)
		return -ENOMEM;
	return st.hosts ? 0 : -EINVAL;
}

static int first_sync(struct kmm_kube_client *c)
{
	for (int i = 1;; i++) {
		struct kmm_certs_sync_result r = { 0 };
		struct kmm_error *err = NULL;

		if (kmm_certs_sync(c, &st.o, time(NULL), &r, &err) >= 0) {
			log_round(&r, NULL, true);
			return 0;
		}
		log_round(&r, err, true);
		kmm_error_free(err);
		if (i == FIRST_SYNC_TRIES)
			return -1;
		sleep(FIRST_SYNC_PAUSE_S);
	}
}

int webhook_certs_start(struct webhook_certs_args *a, struct kmm_certs_provisioner **ret)
{
	_cleanup_kube_config_ struct kmm_kube_config *cfg = NULL;
	_cleanup_kube_client_ struct kmm_kube_client *first = NULL;
	struct kmm_error *err = NULL;

	if (!a->namespace || !*a->namespace) {
		kmm_log(KMM_LOG_ERROR, "--cert-secret needs --cert-namespace or $POD_NAMESPACE",
			NULL);
		return -1;
	}
	if (!a->service && !a->hosts) {
		kmm_log(KMM_LOG_ERROR, "--cert-secret needs --cert-service or --cert-host", NULL);
		return -1;
	}
	if (make_hosts(a) < 0)
		return -1;
	st.o = (struct kmm_certs_options){
		.namespace = a->namespace,
		.secret_name = a->secret,
		.webhook_configs = (const char *const *)a->webhook_configs,
		.conversion_crds = (const char *const *)a->conversion_crds,
		.cert_dir = a->cert_dir,
		.field_manager = "kmm-webhook",
		.policy = { .hosts = (const char *const *)st.hosts,
			    .ca_name = "kmm-webhook-ca",
			    .ca_valid_seconds = a->ca_valid_s,
			    .cert_valid_seconds = a->cert_valid_s },
	};
	/* Two clients: the first sync's, and the thread's own (a client serves one thread). */
	if (kmm_kube_config_load_default(a->kubeconfig, NULL, &cfg, &err) < 0 ||
	    kmm_kube_client_new(cfg, NULL, &first, &err) < 0 ||
	    kmm_kube_client_new(cfg, NULL, &st.client, &err) < 0) {
		kmm_log(KMM_LOG_ERROR, "certificates: no API client", "error",
			kmm_error_message(err), NULL);
		kmm_error_free(err);
		return -1;
	}
	if (first_sync(first) < 0)
		return -1;
	if (kmm_certs_provisioner_start(st.client, &st.o, a->check_interval_s * 1000, on_round,
					NULL, ret, &err) < 0) {
		kmm_log(KMM_LOG_ERROR, "certificates: cannot start", "error",
			kmm_error_message(err), NULL);
		kmm_error_free(err);
		return -1;
	}
	return 0;
}

void webhook_certs_stop(struct kmm_certs_provisioner *p)
{
	kmm_certs_provisioner_stop(p);
	kmm_kube_client_free(st.client);
	st.client = NULL;
	kmm_strv_free(st.hosts);
	st.hosts = NULL;
}
