/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the next state of the certificate Secret is, from the current one and
 * the clock: no I/O, so every case (first start, rotation of the certificate,
 * of the CA, a damaged Secret, a changed Service name) is a unit test.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/certs.h"
#include "kmm/shared-macro.h"

void kmm_certs_state_clear(struct kmm_certs_state *s)
{
	if (!s)
		return;
	free(s->ca_bundle);
	free(s->ca_key);
	free(s->tls_cert);
	free(s->tls_key);
	*s = (struct kmm_certs_state){ 0 };
}

const char *kmm_certs_change_name(enum kmm_certs_change c)
{
	switch (c) {
	case KMM_CERTS_KEEP:
		return "keep";
	case KMM_CERTS_PRUNE:
		return "prune";
	case KMM_CERTS_NEW_CERT:
		return "new-cert";
	case KMM_CERTS_NEW_CA:
		return "new-ca";
	}
	return "unknown";
}

static int copy_str(const char *s, char **ret)
{
	*ret = NULL;
	if (!s)
		return 0;
	*ret = strdup(s);
	return *ret ? 0 : -ENOMEM;
}

/* Whether the current CA (the bundle's first certificate) can go on signing. */
static bool ca_usable(const struct kmm_certs_state *cur, time_t now)
{
	time_t nb, na;

	if (!cur || !cur->ca_bundle || !cur->ca_key ||
	    kmm_certs_check_ca(cur->ca_bundle, cur->ca_key, now, NULL) < 0 ||
	    kmm_certs_validity(cur->ca_bundle, &nb, &na, NULL) < 0)
		return false;
	return !kmm_certs_due(nb, na, now);
}

/* Whether the serving certificate is good for the hosts and not yet due. */
static bool cert_usable(const struct kmm_certs_state *cur, const struct kmm_certs_policy *p,
			time_t now)
{
	time_t nb, na;

	if (!cur->tls_cert || !cur->tls_key ||
	    kmm_certs_check_serving(cur->ca_bundle, cur->tls_cert, cur->tls_key, p->hosts, now,
				    NULL) < 0 ||
	    kmm_certs_validity(cur->tls_cert, &nb, &na, NULL) < 0)
		return false;
	return !kmm_certs_due(nb, na, now);
}

int kmm_certs_plan(const struct kmm_certs_state *cur, const struct kmm_certs_policy *p, time_t now,
		   struct kmm_certs_state *ret_next, enum kmm_certs_change *ret_change,
		   struct kmm_error **err)
{
	_cleanup_free_ char *ca_cert = NULL;
	struct kmm_certs_state next = { 0 };
	enum kmm_certs_change change;
	int r;

	if (!p || !p->ca_name || p->ca_valid_seconds <= 0 || p->cert_valid_seconds <= 0)
		return kmm_error_make(err, EINVAL, "certificates: incomplete policy");
	if (!ca_usable(cur, now)) {
		change = KMM_CERTS_NEW_CA;
		r = kmm_certs_new_ca(p->ca_name, now, p->ca_valid_seconds, &ca_cert, &next.ca_key,
				     err);
	} else {
		change = cert_usable(cur, p, now) ? KMM_CERTS_KEEP : KMM_CERTS_NEW_CERT;
		/* The bundle's first certificate is the CA; the bundle then re-adds the rest. */
		r = copy_str(cur->ca_bundle, &ca_cert);
		if (r >= 0)
			r = copy_str(cur->ca_key, &next.ca_key);
		if (r < 0)
			kmm_error_make(err, ENOMEM, "out of memory");
	}
	if (r >= 0)
		r = kmm_certs_bundle(ca_cert, cur ? cur->ca_bundle : NULL, now, &next.ca_bundle,
				     err);
	if (r >= 0 && change == KMM_CERTS_KEEP) {
		if (strcmp(next.ca_bundle, cur->ca_bundle) != 0)
			change = KMM_CERTS_PRUNE;
		r = copy_str(cur->tls_cert, &next.tls_cert);
		if (r >= 0)
			r = copy_str(cur->tls_key, &next.tls_key);
		if (r < 0)
			kmm_error_make(err, ENOMEM, "out of memory");
	} else if (r >= 0) {
		r = kmm_certs_issue(next.ca_bundle, next.ca_key, p->hosts, now,
				    p->cert_valid_seconds, &next.tls_cert, &next.tls_key, err);
	}
	if (r < 0) {
		kmm_certs_state_clear(&next);
		return r;
	}
	*ret_next = next;
	*ret_change = change;
	return 0;
}
