/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Leader election on a coordination.k8s.io/v1 Lease, with client-go's
 * semantics: a candidate takes the lease when it is free or when the holder
 * has not renewed it for lease_duration as observed locally (no clock sync
 * needed between candidates); the leader renews every retry_period and
 * steps down when it could not renew for renew_deadline; on a clean stop the
 * leader releases the lease (empty holder, 1 s duration) so a successor does
 * not have to wait for expiry.
 *
 * Followers watch the Lease, so each renewal restarts the expiry when it
 * happens (measured on the local monotonic clock) and a dead leader is
 * replaced within lease_duration of its last renewal; they fall back to
 * polling every retry_period while the watch is down.
 *
 * The renew deadline is a bound, not a check after the fact: it runs from
 * when the last successful renewal was sent, every request of an attempt is
 * one try whose timeout is the time left, and at the deadline the elector
 * stops leading (on_stopped_leading) even if a request is still hung, e.g. on
 * a stalled connection. A follower takes over no earlier than lease_duration
 * after it saw that renewal, so a leader stops at least
 * lease_duration - renew_deadline before anyone else can lead (local clocks
 * running at the same rate). Acquiring is bounded the same way.
 *
 * Threads: kmm_leader_start() runs the election on its own thread (and the
 * Lease watch on a second one); the callbacks are called on the election
 * thread. on_stopped_leading is called when leadership is lost or given up
 * (also at stop); a process that loses leadership should stop doing leader
 * work at once (client-go's default is to exit). kmm_leader_is_leader() may
 * be called from any thread.
 */
#ifndef KMM_LEADER_H
#define KMM_LEADER_H

#include <stdbool.h>
#include <stdint.h>

#include "kmm/shared-error.h"
#include "kmm/kube.h"

struct kmm_leader_options {
	const char *namespace;	   /* of the Lease */
	const char *name;	   /* of the Lease */
	const char *identity;	   /* unique per candidate, e.g. hostname_pid */
	int64_t lease_duration_ms; /* default 15000 */
	int64_t renew_deadline_ms; /* default 10000 */
	int64_t retry_period_ms;   /* default 2000 */
	bool no_release;	   /* keep the lease on stop (default: release) */
	void (*on_started_leading)(void *userdata);
	void (*on_stopped_leading)(void *userdata);
	void (*on_new_leader)(const char *identity, void *userdata); /* may be NULL */
	void *userdata;
};

struct kmm_leader;

/* The client is borrowed and must outlive the elector. Strings are copied. */
int kmm_leader_start(struct kmm_kube_client *client, const struct kmm_leader_options *opts,
		     struct kmm_leader **ret_leader, struct kmm_error **err);

bool kmm_leader_is_leader(struct kmm_leader *l);

/*
 * Stops the election (releasing the lease if leading), joins, frees. NULL-safe.
 * Takes at most about two renew deadlines (an attempt in flight, then the
 * release), even when the connection hangs.
 */
void kmm_leader_stop(struct kmm_leader *l);

#endif
