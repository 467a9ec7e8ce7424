/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-webhook: the validating webhooks (Module, PreflightValidation, namespace
 * deletion guard) and the PreflightValidation conversion webhook over HTTPS.
 * Flags follow upstream's webhook-server (--enable-module, ...).
 */
#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api.h"
#include "kmm/shared-json.h"
#include "kmm/kube.h"
#include "kmm/shared-log.h"
#include "kmm/shared-options.h"
#include "kmm/api-webhook.h"
#include "kmm/certs.h"
#include "kmm/shared-strv.h"
#include "webhook.h"

#define PROG "kmm-webhook"

/* The command line; o is what the server gets. */
struct args {
	struct kmm_webhook_server_options o;
	const char *cert_dir, *cert, *key, *kubeconfig;
	const char *config; /* accepted for compatibility; unused */
	bool version_given;
	struct webhook_certs_args certs;
};

static void args_clear(struct args *a)
{
	kmm_strv_free(a->certs.hosts);
	kmm_strv_free(a->certs.webhook_configs);
	kmm_strv_free(a->certs.conversion_crds);
}

/* A number of seconds in [1, max]. */
static int parse_seconds(const char *arg, int64_t max, int64_t *ret)
{
	char *end;
	long long s;

	errno = 0;
	s = strtoll(arg, &end, 10);
	if (errno || end == arg || *end || s < 1 || s > max)
		return -EINVAL;
	*ret = s;
	return 0;
}

static int parse_cert_validity(const struct kmm_option *opt, const char *arg, void *ctx,
			       struct kmm_error **err)
{
	struct args *a = ctx;

	/* 100 years: beyond that X.509 dates need GeneralizedTime games nobody needs. */
	return parse_seconds(arg, 100LL * 365 * 86400,
			     strcmp(opt->name, "ca-validity") == 0 ? &a->certs.ca_valid_s
								   : &a->certs.cert_valid_s);
}

static int parse_cert_interval(const struct kmm_option *opt, const char *arg, void *ctx,
			       struct kmm_error **err)
{
	struct args *a = ctx;
	int64_t s;

	if (parse_seconds(arg, 86400, &s) < 0)
		return -EINVAL;
	a->certs.check_interval_s = (unsigned)s;
	return 0;
}

static int parse_reload(const struct kmm_option *opt, const char *arg, void *ctx,
			struct kmm_error **err)
{
	struct args *a = ctx;
	char *end;
	unsigned long s = strtoul(arg, &end, 10);

	if (*end || s == 0 || s > 86400)
		return -EINVAL;
	a->o.reload_interval_ms = (unsigned)s * 1000;
	return 0;
}

static int parse_kube_version(const struct kmm_option *opt, const char *arg, void *ctx,
			      struct kmm_error **err)
{
	struct args *a = ctx;
	int minor;

	a->version_given = true;
	if (strcmp(arg, "none") == 0) {
		a->o.hooks.k8s_minor = -1;
		return 0;
	}
	minor = kmm_kube_version_minor(arg);
	if (minor < 0 || !strchr(arg, '.'))
		return -EINVAL;
	a->o.hooks.k8s_minor = minor;
	return 0;
}

#define ARG(field) offsetof(struct args, field)
static const struct kmm_option options[] = {
	{ "bind-address", 0, KMM_OPTION_STRING, "ADDR", ARG(o.bind_address), NULL,
	  "HOST:PORT to listen on (default :9443)" },
	{ "cert-dir", 0, KMM_OPTION_STRING, "DIR", ARG(cert_dir), NULL,
	  "directory with tls.crt and tls.key\n(default /tmp/k8s-webhook-server/serving-certs)" },
	{ "tls-cert-file", 0, KMM_OPTION_STRING, "FILE", ARG(cert), NULL,
	  "certificate chain (overrides --cert-dir)" },
	{ "tls-private-key-file", 0, KMM_OPTION_STRING, "F", ARG(key), NULL,
	  "private key (overrides --cert-dir)" },
	{ "cert-reload-interval", 0, KMM_OPTION_CALL, "S", 0, parse_reload,
	  "seconds between checks for a rotated certificate\n(default 10)" },
	{ "enable-module", 0, KMM_OPTION_FLAG, NULL, ARG(o.hooks.enable_module), NULL,
	  "validate Modules" },
	{ "enable-namespace", 0, KMM_OPTION_FLAG, NULL, ARG(o.hooks.enable_namespace), NULL,
	  "refuse deleting namespaces that hold Modules" },
	{ "enable-preflightvalidation", 0, KMM_OPTION_FLAG, NULL,
	  ARG(o.hooks.enable_preflightvalidation), NULL,
	  "validate PreflightValidations and convert them" },
	{ "enable-managedclustermodule", 0, KMM_OPTION_FLAG, NULL,
	  ARG(o.hooks.enable_managedclustermodule), NULL,
	  "validate ManagedClusterModules (the hub)" },
	{ "kube-version", 0, KMM_OPTION_CALL, "1.N", 0, parse_kube_version,
	  "apiserver version for the DRA gate (default: not checked)" },
	{ "config", 0, KMM_OPTION_STRING, "NAME", ARG(config), NULL,
	  "accepted for compatibility; unused" },
	{ "kubeconfig", 0, KMM_OPTION_STRING, "FILE", ARG(kubeconfig), NULL, NULL },
	{ 0 },
};

static const struct kmm_option cert_options[] = {
	{ "cert-secret", 0, KMM_OPTION_STRING, "NAME", ARG(certs.secret), NULL,
	  "provision the serving certificate and its CA into this\n"
	  "Secret, write them to --cert-dir, rotate them and keep the\n"
	  "caBundles below current (without it: --cert-dir is given)" },
	{ "cert-namespace", 0, KMM_OPTION_STRING, "NS", ARG(certs.namespace), NULL,
	  "the Secret's namespace (default $POD_NAMESPACE)" },
	{ "cert-service", 0, KMM_OPTION_STRING, "NAME", ARG(certs.service), NULL,
	  "the webhook Service: its DNS names go into the certificate" },
	{ "cert-host", 0, KMM_OPTION_STRV, "NAME", ARG(certs.hosts), NULL,
	  "one more DNS name or IP address for the certificate" },
	{ "cert-webhook-config", 0, KMM_OPTION_STRV, "NAME", ARG(certs.webhook_configs), NULL,
	  "a ValidatingWebhookConfiguration whose caBundles to keep" },
	{ "cert-conversion-crd", 0, KMM_OPTION_STRV, "NAME", ARG(certs.conversion_crds), NULL,
	  "a CRD whose conversion webhook caBundle to keep" },
	{ "cert-validity", 0, KMM_OPTION_CALL, "S", 0, parse_cert_validity,
	  "serving certificate lifetime in seconds (default a year);\n"
	  "renewed after two thirds of it" },
	{ "ca-validity", 0, KMM_OPTION_CALL, "S", 0, parse_cert_validity,
	  "CA lifetime in seconds (default 5 years); renewed likewise" },
	{ "cert-check-interval", 0, KMM_OPTION_CALL, "S", 0, parse_cert_interval,
	  "seconds between checks of the Secret and caBundles (default 60)" },
	{ 0 },
};
#undef ARG

static const struct kmm_option_group groups[] = {
	{ .title = "Options:\n", .options = options, .column = 33 },
	{ .title = "\nCertificates without cert-manager:\n",
	  .options = cert_options,
	  .column = 33 },
	{ .options = kmm_options_common },
	{ 0 },
};

static const struct kmm_options spec = {
	.prog = PROG,
	.usage = "Usage: " PROG " [OPTIONS]\n"
		 "\n"
		 "Serves kmm's admission and conversion webhooks over HTTPS until SIGTERM.\n"
		 "\n",
	.groups = groups,
};

/* The apiserver's minor version from GET /version, or -1 when it cannot be asked. */
static int discover_minor(const char *kubeconfig)
{
	_cleanup_kube_config_ struct kmm_kube_config *cfg = NULL;
	_cleanup_kube_client_ struct kmm_kube_client *c = NULL;
	_cleanup_json_ json_t *v = NULL;
	struct kmm_kube_request req = { .method = "GET", .path = "/version" };
	struct kmm_error *err = NULL;
	const char *minor;
	int m = -1;

	if (kmm_kube_config_load_default(kubeconfig, NULL, &cfg, &err) < 0 ||
	    kmm_kube_client_new(cfg, NULL, &c, &err) < 0 ||
	    kmm_kube_request_json(c, &req, &v, &err) < 0) {
		kmm_log(KMM_LOG_WARN, "cannot ask the apiserver its version; the DRA gate is off",
			"error", kmm_error_message(err), NULL);
		kmm_error_free(err);
		return -1;
	}
	/* "34" or "34+" (some distributions append a '+'). */
	minor = json_string_value(json_object_get(v, "minor"));
	if (minor)
		m = kmm_kube_version_minor(minor);
	return m > 0 ? m : -1;
}

int main(int argc, char **argv)
{
	_cleanup_(args_clear) struct args a = {
		.o = { .hooks = { .k8s_minor = -1 }, .bind_address = ":9443" },
		.cert_dir = "/tmp/k8s-webhook-server/serving-certs",
		.certs = { .cert_valid_s = 365LL * 86400,
			   .ca_valid_s = 5LL * 365 * 86400,
			   .check_interval_s = 60 },
	};
	struct kmm_certs_provisioner *certs = NULL;
	struct kmm_webhook_server_options *o = &a.o;
	_cleanup_free_ char *cert = NULL, *key = NULL;
	struct kmm_webhook_server *srv = NULL;
	struct kmm_error *err = NULL;
	sigset_t set;
	char port[8], minor_s[16];
	int first, r, sig;

	r = kmm_options_parse(&spec, argc, argv, &a, &first);
	if (r >= 0)
		return r;
	if (first < argc)
		return kmm_options_usage_error(PROG, "unexpected argument '%s'", argv[first]);
	cert = a.cert ? strdup(a.cert) : NULL;
	key = a.key ? strdup(a.key) : NULL;
	if (!a.cert && asprintf(&cert, "%s/tls.crt", a.cert_dir) < 0)
		cert = NULL;
	if (!a.key && asprintf(&key, "%s/tls.key", a.cert_dir) < 0)
		key = NULL;
	if (!cert || !key)
		return KMM_EXIT_FAILURE;
	o->cert_file = cert;
	o->key_file = key;
	if (a.certs.secret && (a.cert || a.key))
		return kmm_options_usage_error(
		    PROG, "--cert-secret writes to --cert-dir; "
			  "--tls-cert-file and --tls-private-key-file do not go with it");
	if (!a.version_given && o->hooks.enable_module)
		o->hooks.k8s_minor = discover_minor(a.kubeconfig);

	/* Block the signals before any thread starts so they all inherit the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (a.certs.secret) {
		a.certs.cert_dir = a.cert_dir;
		a.certs.kubeconfig = a.kubeconfig;
		if (!a.certs.namespace)
			a.certs.namespace = secure_getenv("POD_NAMESPACE");
		if (webhook_certs_start(&a.certs, &certs) < 0) {
			webhook_certs_stop(NULL);
			return KMM_EXIT_FAILURE;
		}
	}

	r = kmm_webhook_server_start(o, &srv, &err);
	if (r < 0) {
		kmm_log(KMM_LOG_ERROR, "cannot start the webhook server", "error",
			kmm_error_message(err), NULL);
		kmm_error_free(err);
		webhook_certs_stop(certs);
		return KMM_EXIT_FAILURE;
	}
	snprintf(port, sizeof(port), "%u", kmm_webhook_server_port(srv));
	snprintf(minor_s, sizeof(minor_s), "%d", o->hooks.k8s_minor);
	kmm_log(KMM_LOG_INFO, "webhook server listening", "port", port, "kube-minor", minor_s,
		"module", o->hooks.enable_module ? "true" : "false", "namespace",
		o->hooks.enable_namespace ? "true" : "false", "preflightvalidation",
		o->hooks.enable_preflightvalidation ? "true" : "false", "managedclustermodule",
		o->hooks.enable_managedclustermodule ? "true" : "false", NULL);
	sigwait(&set, &sig);
	kmm_log(KMM_LOG_INFO, "shutting down", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT",
		NULL);
	webhook_certs_stop(certs);
	kmm_webhook_server_stop(srv);
	return KMM_EXIT_OK;
}
