/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Webhook serving certificates without cert-manager (lib/certs): a private CA
 * and a serving certificate it signs, kept in one Secret, rotated before they
 * expire, with every caBundle that must trust them (ValidatingWebhookConfigurations,
 * CRD conversion webhooks) kept equal to the Secret's CA bundle.
 *
 * Two layers:
 * - pure functions on PEM text (x509.c, plan.c): make a CA, issue a serving
 *   certificate (or make a self-signed one, for lib/server), read validity, check a pair, merge CA bundles, and
 *   kmm_certs_plan(), which decides from the current state and the clock what
 *   the next state is. No I/O; `now` is always a parameter.
 * - kmm_certs_sync() (provision.c): one round against the API (GET the Secret,
 *   plan, patch the caBundles, write the Secret, write the files), and a thread
 *   that repeats it (kmm_certs_provisioner_start()).
 *
 * Strings returned through ret_* are heap-allocated and owned by the caller.
 * Every function that can fail returns a negative errno and fills *err.
 */
#ifndef KMM_CERTS_H
#define KMM_CERTS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "kmm/shared-error.h"

struct kmm_kube_client;

/* Certificates a CA bundle may hold: the current CA and the ones it replaced. */
#define KMM_CERTS_MAX_BUNDLE 8

/* A self-signed CA (EC P-256, CA:TRUE, keyCertSign) valid from now (backdated an
 * hour, or a quarter of valid_seconds if less, for clocks a little behind) for
 * valid_seconds. */
int kmm_certs_new_ca(const char *common_name, time_t now, int64_t valid_seconds,
		     char **ret_cert_pem, char **ret_key_pem, struct kmm_error **err);

/*
 * A serving certificate (EC P-256, CA:FALSE, serverAuth) for hosts (NULL
 * terminated, DNS names or IP addresses; the first is also the CN), signed by
 * the CA, valid for valid_seconds but never past the CA's notAfter.
 */
int kmm_certs_issue(const char *ca_cert_pem, const char *ca_key_pem, const char *const *hosts,
		    time_t now, int64_t valid_seconds, char **ret_cert_pem, char **ret_key_pem,
		    struct kmm_error **err);

/*
 * A self-signed serving certificate (EC P-256, CA:FALSE, serverAuth) for hosts
 * (as kmm_certs_issue()), valid from now (backdated as kmm_certs_new_ca()) for
 * valid_seconds: for a server given no certificate, whose clients pin it or
 * skip verification.
 */
int kmm_certs_self_signed(const char *const *hosts, time_t now, int64_t valid_seconds,
			  char **ret_cert_pem, char **ret_key_pem, struct kmm_error **err);

/* notBefore and notAfter of the first certificate in pem. */
int kmm_certs_validity(const char *pem, time_t *ret_not_before, time_t *ret_not_after,
		       struct kmm_error **err);

/* Number of certificates in a PEM bundle, or a negative errno if one does not parse. */
int kmm_certs_count(const char *pem);

/*
 * Whether a certificate valid from not_before to not_after is due for renewal
 * at now: two thirds of its lifetime have passed (as cert-manager's default),
 * it is not valid yet, or it has expired.
 */
bool kmm_certs_due(time_t not_before, time_t not_after, time_t now);

/* ca_cert_pem (the first certificate of it) is a CA, valid at now, and ca_key_pem is its key. */
int kmm_certs_check_ca(const char *ca_cert_pem, const char *ca_key_pem, time_t now,
		       struct kmm_error **err);

/*
 * cert_pem chains to the CA ca_cert_pem at now, key_pem is its key and its
 * subjectAltNames cover every one of hosts.
 */
int kmm_certs_check_serving(const char *ca_cert_pem, const char *cert_pem, const char *key_pem,
			    const char *const *hosts, time_t now, struct kmm_error **err);

/*
 * The CA bundle to publish: ca_cert_pem first, then the certificates of
 * old_bundle_pem (may be NULL) that are still valid at now and are not
 * ca_cert_pem, at most KMM_CERTS_MAX_BUNDLE in all. Keeping the replaced CAs
 * lets clients that still hold a certificate they signed keep verifying it
 * while a rotation spreads.
 */
int kmm_certs_bundle(const char *ca_cert_pem, const char *old_bundle_pem, time_t now,
		     char **ret_bundle_pem, struct kmm_error **err);

/* What the Secret holds. ca_bundle's first certificate is the current CA, whose key is ca_key. */
struct kmm_certs_state {
	char *ca_bundle; /* Secret key ca.crt; what every caBundle gets */
	char *ca_key;	 /* ca.key */
	char *tls_cert;	 /* tls.crt */
	char *tls_key;	 /* tls.key */
};

void kmm_certs_state_clear(struct kmm_certs_state *s);

struct kmm_certs_policy {
	const char *const *hosts; /* the serving certificate's names (Service DNS names) */
	const char *ca_name;	  /* the CA's common name */
	int64_t ca_valid_seconds;
	int64_t cert_valid_seconds;
};

enum kmm_certs_change {
	KMM_CERTS_KEEP,	    /* nothing to do */
	KMM_CERTS_PRUNE,    /* an expired old CA leaves the bundle */
	KMM_CERTS_NEW_CERT, /* a new serving certificate from the current CA */
	KMM_CERTS_NEW_CA,   /* a new CA (added in front of the bundle) and certificate */
};

const char *kmm_certs_change_name(enum kmm_certs_change c);

/*
 * The next state from cur (NULL or with NULL fields when there is no Secret
 * yet) at now: a CA that is missing, unusable or due is replaced (and with it
 * the certificate); a certificate that is missing, does not check against the
 * CA and the hosts, or is due is reissued; otherwise only the bundle is
 * pruned. *ret_next is always a complete state (a copy of cur for KEEP).
 */
int kmm_certs_plan(const struct kmm_certs_state *cur, const struct kmm_certs_policy *p, time_t now,
		   struct kmm_certs_state *ret_next, enum kmm_certs_change *ret_change,
		   struct kmm_error **err);

struct kmm_certs_options {
	const char *namespace; /* of the Secret */
	const char *secret_name;
	const char *const *webhook_configs; /* ValidatingWebhookConfiguration names, or NULL */
	const char *const
	    *conversion_crds;	   /* CRD names whose conversion webhook is ours, or NULL */
	const char *cert_dir;	   /* tls.crt, tls.key, ca.crt are written here, or NULL */
	const char *field_manager; /* of every write */
	struct kmm_certs_policy policy;
};

struct kmm_certs_sync_result {
	enum kmm_certs_change change;
	bool secret_written;	     /* the Secret was created or updated by this round */
	bool files_written;	     /* cert_dir's files changed */
	unsigned ca_bundles_patched; /* webhooks and CRDs whose caBundle this round set */
	unsigned missing; /* named webhook configurations or CRDs that do not exist (yet) */
	time_t cert_not_after;
};

/*
 * One round: read the Secret, plan, publish a changed CA bundle to every
 * caBundle before the Secret holds a certificate that needs it, write the
 * Secret (optimistically: when another replica wrote it first, its state is
 * taken instead), make every caBundle equal the Secret's bundle and write the
 * files. Idempotent; safe to run from several replicas.
 */
int kmm_certs_sync(struct kmm_kube_client *c, const struct kmm_certs_options *o, time_t now,
		   struct kmm_certs_sync_result *ret, struct kmm_error **err);

/* Called after every round of the provisioner thread; err is NULL on success. */
typedef void (*kmm_certs_sync_cb)(void *userdata, const struct kmm_certs_sync_result *result,
				  const struct kmm_error *err);

struct kmm_certs_provisioner;

/*
 * A thread that runs kmm_certs_sync() every interval_ms with the client c
 * (which it uses alone from then on) until kmm_certs_provisioner_stop(). o and
 * everything it points to must outlive the provisioner.
 */
int kmm_certs_provisioner_start(struct kmm_kube_client *c, const struct kmm_certs_options *o,
				unsigned interval_ms, kmm_certs_sync_cb cb, void *userdata,
				struct kmm_certs_provisioner **ret, struct kmm_error **err);

/* Stops the thread (waiting for a round in flight) and frees p. Accepts NULL. */
void kmm_certs_provisioner_stop(struct kmm_certs_provisioner *p);

#endif
