/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Leader election on a coordination.k8s.io/v1 Lease, as controller-runtime
 * does it (lease 15 s, renew deadline 10 s, retry 2 s): a replica takes the
 * Lease when it is free or its holder stopped renewing for a lease duration
 * (measured on the local clock since the record last changed), renews it
 * every retry period, and gives it up on a clean shutdown.
 *
 * Single-threaded by design: the caller's main thread runs acquire and
 * wait, which also wait for the signals in `sigs` (blocked by the caller),
 * so no renewal thread races the shutdown.
 */
#ifndef KMM_OPERATOR_LEADER_H
#define KMM_OPERATOR_LEADER_H

#include <signal.h>

#include "kmm/error.h"
#include "kmm/kube.h"

struct kmm_leader_options {
	const char *namespace; /* of the Lease */
	const char *name;      /* Lease name (leaderElection.resourceID) */
	const char *identity;  /* NULL: "<hostname>_<random>" */
	int lease_duration_s;  /* default 15 */
	int renew_deadline_s;  /* default 10 */
	int retry_period_s;    /* default 2 */
};

struct kmm_leader;

int kmm_leader_new(struct kmm_kube_client *kube, const struct kmm_leader_options *o,
		   struct kmm_leader **ret, struct kmm_error **err);
void kmm_leader_free(struct kmm_leader *l);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_leader *, kmm_leader_free)
const char *kmm_leader_identity(const struct kmm_leader *l);

/* Blocks until this replica holds the Lease (0) or a signal of sigs arrives (0, *ret_sig set). */
int kmm_leader_acquire(struct kmm_leader *l, const sigset_t *sigs, int *ret_sig,
		       struct kmm_error **err);

/* Renews until a signal arrives (0, *ret_sig set); -ENOLCK once the Lease is lost. */
int kmm_leader_wait(struct kmm_leader *l, const sigset_t *sigs, int *ret_sig,
		    struct kmm_error **err);

/* Gives the Lease up (best effort) so a standby takes over at once. */
void kmm_leader_release(struct kmm_leader *l);

#endif
