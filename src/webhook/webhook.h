/* SPDX-License-Identifier: Apache-2.0 */
/* kmm-webhook's parts: main.c (flags, server) and certs.c (certificate provisioning). */
#ifndef KMM_SRC_WEBHOOK_H
#define KMM_SRC_WEBHOOK_H

#include <stdint.h>

struct kmm_certs_provisioner;

/* The --cert-* flags: provisioning is on when secret is set. */
struct webhook_certs_args {
	const char *secret, *namespace, *service, *kubeconfig, *cert_dir;
	char **hosts, **webhook_configs, **conversion_crds; /* strv, owned by main */
	int64_t cert_valid_s, ca_valid_s;
	unsigned check_interval_s;
};

/*
 * Provisions the certificates into cert_dir and keeps them current: one sync
 * that must succeed (retried for a minute while the API cannot be reached),
 * then a thread that repeats it. Returns 0 and the thread, or -1 after logging why.
 */
int webhook_certs_start(struct webhook_certs_args *a, struct kmm_certs_provisioner **ret);

/* Stops the thread and frees what webhook_certs_start() allocated. */
void webhook_certs_stop(struct kmm_certs_provisioner *p);

#endif
