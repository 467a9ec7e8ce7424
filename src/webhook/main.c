/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-webhook: the validating webhooks (Module, PreflightValidation, namespace
 * deletion guard) and the PreflightValidation conversion webhook over HTTPS.
 * Flags follow upstream's webhook-server (--enable-module, ...).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/api.h"
#include "kmm/json.h"
#include "kmm/kube.h"
#include "kmm/log.h"
#include "kmm/webhook.h"
#include "src/common/cli.h"

#define PROG "kmm-webhook"

static const char help[] =
    "Usage: " PROG " [OPTIONS]\n"
    "\n"
    "Serves kmm's admission and conversion webhooks over HTTPS until SIGTERM.\n"
    "\n"
    "Options:\n"
    "      --bind-address ADDR        HOST:PORT to listen on (default :9443)\n"
    "      --cert-dir DIR             directory with tls.crt and tls.key\n"
    "                                 (default /tmp/k8s-webhook-server/serving-certs)\n"
    "      --tls-cert-file FILE       certificate chain (overrides --cert-dir)\n"
    "      --tls-private-key-file F   private key (overrides --cert-dir)\n"
    "      --cert-reload-interval S   seconds between checks for a rotated certificate\n"
    "                                 (default 10)\n"
    "      --enable-module            validate Modules\n"
    "      --enable-namespace         refuse deleting namespaces that hold Modules\n"
    "      --enable-preflightvalidation  validate PreflightValidations and convert them\n"
    "      --kube-version 1.N         apiserver version for the DRA gate (default: not checked)\n"
    "      --config NAME              accepted for compatibility; unused\n" KMM_COMMON_OPTIONS_HELP;

enum {
	OPT_BIND = 0x200,
	OPT_CERT_DIR,
	OPT_CERT,
	OPT_KEY,
	OPT_RELOAD,
	OPT_MODULE,
	OPT_NAMESPACE,
	OPT_PFV,
	OPT_MCM,
	OPT_KUBE_VERSION,
	OPT_CONFIG,
	OPT_KUBECONFIG,
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
	static const struct option options[] = {
		KMM_COMMON_LONG_OPTIONS,
		{ "bind-address", required_argument, NULL, OPT_BIND },
		{ "cert-dir", required_argument, NULL, OPT_CERT_DIR },
		{ "tls-cert-file", required_argument, NULL, OPT_CERT },
		{ "tls-private-key-file", required_argument, NULL, OPT_KEY },
		{ "cert-reload-interval", required_argument, NULL, OPT_RELOAD },
		{ "enable-module", no_argument, NULL, OPT_MODULE },
		{ "enable-namespace", no_argument, NULL, OPT_NAMESPACE },
		{ "enable-preflightvalidation", no_argument, NULL, OPT_PFV },
		{ "enable-managedclustermodule", no_argument, NULL, OPT_MCM },
		{ "kube-version", required_argument, NULL, OPT_KUBE_VERSION },
		{ "config", required_argument, NULL, OPT_CONFIG },
		{ "kubeconfig", required_argument, NULL, OPT_KUBECONFIG },
		{ 0 },
	};
	struct kmm_webhook_server_options o = { .hooks = { .k8s_minor = -1 },
						.bind_address = ":9443" };
	const char *cert_dir = "/tmp/k8s-webhook-server/serving-certs", *kubeconfig = NULL;
	bool version_given = false;
	_cleanup_free_ char *cert = NULL, *key = NULL;
	struct kmm_webhook_server *srv = NULL;
	struct kmm_error *err = NULL;
	sigset_t set;
	char port[8], minor_s[16];
	int opt, r, sig;

	while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(help, stdout);
			return KMM_EXIT_OK;
		case OPT_BIND:
			o.bind_address = optarg;
			break;
		case OPT_CERT_DIR:
			cert_dir = optarg;
			break;
		case OPT_CERT:
			free(cert);
			cert = strdup(optarg);
			break;
		case OPT_KEY:
			free(key);
			key = strdup(optarg);
			break;
		case OPT_RELOAD: {
			char *end;
			unsigned long s = strtoul(optarg, &end, 10);

			if (*end || s == 0 || s > 86400)
				return kmm_cli_usage_error(
				    PROG, "invalid --cert-reload-interval '%s'", optarg);
			o.reload_interval_ms = (unsigned)s * 1000;
			break;
		}
		case OPT_MODULE:
			o.hooks.enable_module = true;
			break;
		case OPT_NAMESPACE:
			o.hooks.enable_namespace = true;
			break;
		case OPT_PFV:
			o.hooks.enable_preflightvalidation = true;
			break;
		case OPT_MCM:
			return kmm_cli_usage_error(PROG,
						   "ManagedClusterModule (hub) is not supported");
		case OPT_KUBE_VERSION: {
			int minor;

			version_given = true;
			if (strcmp(optarg, "none") == 0) {
				o.hooks.k8s_minor = -1;
				break;
			}
			minor = kmm_kube_version_minor(optarg);
			if (minor < 0 || !strchr(optarg, '.'))
				return kmm_cli_usage_error(PROG, "invalid --kube-version '%s'",
							   optarg);
			o.hooks.k8s_minor = minor;
			break;
		}
		case OPT_CONFIG:
			break;
		case OPT_KUBECONFIG:
			kubeconfig = optarg;
			break;
		case '?':
			return kmm_cli_bad_option(PROG, argc, argv);
		default:
			r = kmm_cli_common_option(PROG, opt, optarg);
			if (r <= 0)
				return -r;
		}
	}
	if (optind < argc)
		return kmm_cli_usage_error(PROG, "unexpected argument '%s'", argv[optind]);
	if (!cert && asprintf(&cert, "%s/tls.crt", cert_dir) < 0)
		cert = NULL;
	if (!key && asprintf(&key, "%s/tls.key", cert_dir) < 0)
		key = NULL;
	if (!cert || !key)
		return KMM_EXIT_FAILURE;
	o.cert_file = cert;
	o.key_file = key;
	if (!version_given && o.hooks.enable_module)
		o.hooks.k8s_minor = discover_minor(kubeconfig);

	/* Block the signals before any thread starts so they all inherit the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	r = kmm_webhook_server_start(&o, &srv, &err);
	if (r < 0) {
		kmm_log(KMM_LOG_ERROR, "cannot start the webhook server", "error",
			kmm_error_message(err), NULL);
		kmm_error_free(err);
		return KMM_EXIT_FAILURE;
	}
	snprintf(port, sizeof(port), "%u", kmm_webhook_server_port(srv));
	snprintf(minor_s, sizeof(minor_s), "%d", o.hooks.k8s_minor);
	kmm_log(KMM_LOG_INFO, "webhook server listening", "port", port, "kube-minor", minor_s,
		"module", o.hooks.enable_module ? "true" : "false", "namespace",
		o.hooks.enable_namespace ? "true" : "false", "preflightvalidation",
		o.hooks.enable_preflightvalidation ? "true" : "false", NULL);
	sigwait(&set, &sig);
	kmm_log(KMM_LOG_INFO, "shutting down", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT",
		NULL);
	kmm_webhook_server_stop(srv);
	return KMM_EXIT_OK;
}
