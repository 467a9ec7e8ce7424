/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where the Kubernetes API is and how to authenticate to it.
 *
 * A struct kmm_kube_config is built once (from a kubeconfig file or from the
 * in-cluster service-account mount), handed to kmm_kube_client_new(), which
 * copies what it needs, and freed by its creator. It is plain data: no thread
 * touches it after the client has been created.
 *
 * Credentials that change at run time are handled by the client, not here:
 *  - token_file is re-read whenever its mtime, size or inode change (the
 *    kubelet rotates projected service-account tokens);
 *  - an exec plugin (client.authentication.k8s.io/v1) is run when no cached
 *    credential is valid, and again after a 401.
 *
 * Errors name the source file, the key and the problem, e.g.
 *   /root/.kube/config: users[0].user.client-key-data: invalid base64
 */
#ifndef KMM_KUBECONFIG_H
#define KMM_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "kmm/shared-error.h"

/* An exec credential plugin (users[].user.exec). */
struct kmm_kube_exec {
	char *
	    command; /* resolved against PATH by the client, relative to the file's dir if it contains '/' */
	char **args;	   /* NULL-terminated, may be empty */
	char **env;	   /* NULL-terminated "NAME=value" strings added to the environment */
	char *api_version; /* must be client.authentication.k8s.io/v1 (v1beta1 is accepted too) */
	bool provide_cluster_info;
};

struct kmm_kube_config {
	char *source;	       /* file the config came from, or "in-cluster"; for messages */
	char *server;	       /* base URL without trailing '/', e.g. https://127.0.0.1:6443 */
	char *tls_server_name; /* SNI / verification name override, or NULL */
	bool insecure_skip_tls_verify;

	/* CA: at most one of file / data. Data is PEM bytes (already base64-decoded). */
	char *ca_file;
	char *ca_data;
	size_t ca_data_len;

	/* Client certificate and key: each either a file or PEM data. */
	char *cert_file;
	char *cert_data;
	size_t cert_data_len;
	char *key_file;
	char *key_data;
	size_t key_data_len;

	/* Bearer token: literal, or a file re-read when it changes (file wins). */
	char *token;
	char *token_file;

	/* Basic auth (rare; kept because kubeconfig allows it). */
	char *username;
	char *password;

	struct kmm_kube_exec *exec; /* or NULL */

	char *namespace; /* context namespace, service-account namespace, or "default" */
	char *context;	 /* name of the context used, NULL for in-cluster */
};

/*
 * Loads a kubeconfig file (YAML or JSON). `context` selects a context by name;
 * NULL means current-context. Relative file paths inside the file are resolved
 * against the file's directory. On success *ret_config is owned by the caller.
 */
int kmm_kube_config_load_file(const char *path, const char *context,
			      struct kmm_kube_config **ret_config, struct kmm_error **err);

/*
 * Same as kmm_kube_config_load_file() for file content already in memory
 * (`source` names it in errors, `base_dir` resolves relative paths, may be
 * NULL). Input that is not UTF-8 is refused before YAML parsing (libfyaml
 * 0.7.12 loops forever on a '%' directive followed by invalid UTF-8).
 */
int kmm_kube_config_from_text(const char *data, size_t len, const char *source,
			      const char *base_dir, const char *context,
			      struct kmm_kube_config **ret_config, struct kmm_error **err);

/*
 * Same as kmm_kube_config_load_file() for an already parsed document. `source`
 * names it in errors and `base_dir` resolves relative paths (may be NULL).
 */
int kmm_kube_config_from_json(const json_t *doc, const char *source, const char *base_dir,
			      const char *context, struct kmm_kube_config **ret_config,
			      struct kmm_error **err);

/*
 * In-cluster configuration: KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT
 * and the service-account directory (sa_dir, NULL for
 * /var/run/secrets/kubernetes.io/serviceaccount) holding token, ca.crt and
 * namespace. The token is referenced by file, so rotations are picked up.
 */
int kmm_kube_config_in_cluster(const char *sa_dir, struct kmm_kube_config **ret_config,
			       struct kmm_error **err);

/*
 * What a binary does by default: `kubeconfig` if not NULL, else $KUBECONFIG
 * (first entry of a ':'-separated list), else in-cluster when
 * KUBERNETES_SERVICE_HOST is set, else ~/.kube/config.
 */
int kmm_kube_config_load_default(const char *kubeconfig, const char *context,
				 struct kmm_kube_config **ret_config, struct kmm_error **err);

/* Frees the config and everything it owns. NULL-safe. */
void kmm_kube_config_free(struct kmm_kube_config *config);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_kube_config *, kmm_kube_config_free)
#define _cleanup_kube_config_ _cleanup_(kmm_kube_config_freep)

#endif
