/* SPDX-License-Identifier: Apache-2.0 */
/* Lease-based leader election. See include/kmm/leader.h and docs/internals/leader-election.md. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmm/leader.h"
#include "kmm/log.h"
#include "lib/kube/kube-internal.h"

struct kmm_leader {
	struct kmm_kube_client *c;
	struct kmm_leader_options o;
	char *ns, *name, *identity;

	pthread_t thread;
	pthread_mutex_t lock; /* guards stopping, with cond */
	pthread_cond_t cond;
	bool stopping;
	atomic_bool leading;

	/* Elector thread only. */
	char *observed_record;	 /* holder + renewTime + duration as last seen */
	int64_t observed_ms;	 /* monotonic time when it last changed */
	int64_t observed_dur_ms; /* its leaseDurationSeconds, in ms */
	char *last_leader;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void now_micro(char *buf, size_t len)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	kube_format_microtime(buf, len, &ts);
}

/* Waits ms (with up to 20% jitter added); false if stopping. */
static bool wait_or_stop(struct kmm_leader *l, int64_t ms, bool jitter)
{
	struct timespec ts;
	bool stop;

	if (jitter)
		ms += kube_backoff_ms(ms / 5 + 1, ms / 5 + 1, 0) - ms / 10;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&l->lock);
	while (!l->stopping && pthread_cond_timedwait(&l->cond, &l->lock, &ts) == 0)
		;
	stop = l->stopping;
	pthread_mutex_unlock(&l->lock);
	return !stop;
}

static bool is_stopping(struct kmm_leader *l)
{
	bool s;

	pthread_mutex_lock(&l->lock);
	s = l->stopping;
	pthread_mutex_unlock(&l->lock);
	return s;
}

static json_t *lease_spec(struct kmm_leader *l, const char *holder, int duration_s,
			  const char *acquire, int64_t transitions)
{
	char now[40];

	now_micro(now, sizeof(now));
	return json_pack("{s:s,s:i,s:s,s:s,s:I}", "holderIdentity", holder, "leaseDurationSeconds",
			 duration_s, "acquireTime", acquire ? acquire : now, "renewTime", now,
			 "leaseTransitions", (json_int_t)transitions);
}

static void note_leader(struct kmm_leader *l, const char *holder)
{
	if (!holder || !*holder || (l->last_leader && strcmp(l->last_leader, holder) == 0))
		return;
	free(l->last_leader);
	l->last_leader = strdup(holder);
	if (l->o.on_new_leader)
		l->o.on_new_leader(holder, l->o.userdata);
}

/* One attempt: returns 1 if we hold the lease afterwards, 0 if someone else does, <0 on error. */
static int try_acquire_or_renew(struct kmm_leader *l, struct kmm_error **err)
{
	struct kmm_kube_target t = { .res = &kmm_kube_leases, .namespace = l->ns, .name = l->name };
	_cleanup_(json_decrefp) json_t *lease = NULL, *spec = NULL;
	_cleanup_error_ struct kmm_error *gerr = NULL;
	_cleanup_free_ char *record = NULL;
	const json_t *cur;
	const char *holder, *renew, *acquire;
	int64_t transitions, dur_ms;
	int dur_s = (int)((l->o.lease_duration_ms + 999) / 1000);
	int r;

	r = kmm_kube_get(l->c, &t, &lease, &gerr);
	if (r == -ENOENT) {
		_cleanup_(json_decrefp) json_t *obj = NULL;

		spec = lease_spec(l, l->identity, dur_s, NULL, 0);
		obj = json_pack("{s:s,s:s,s:{s:s,s:s},s:O}", "apiVersion", "coordination.k8s.io/v1",
				"kind", "Lease", "metadata", "name", l->name, "namespace", l->ns,
				"spec", spec);
		if (!spec || !obj)
			return -ENOMEM;
		r = kmm_kube_create(l->c, &t, obj, NULL, NULL, err);
		if (r < 0)
			return r == -EEXIST ? 0 : r;
		l->observed_ms = mono_ms();
		return 1;
	}
	if (r < 0) {
		if (err)
			*err = TAKE_PTR(gerr);
		return r;
	}
	cur = json_object_get(lease, "spec");
	holder = json_string_value(json_object_get(cur, "holderIdentity"));
	renew = json_string_value(json_object_get(cur, "renewTime"));
	acquire = json_string_value(json_object_get(cur, "acquireTime"));
	transitions = json_integer_value(json_object_get(cur, "leaseTransitions"));
	dur_ms = json_integer_value(json_object_get(cur, "leaseDurationSeconds")) * 1000;
	if (dur_ms <= 0)
		dur_ms = l->o.lease_duration_ms;
	if (asprintf(&record, "%s|%s|%lld", holder ? holder : "", renew ? renew : "",
		     (long long)dur_ms) < 0)
		return -ENOMEM;
	if (!l->observed_record || strcmp(record, l->observed_record) != 0) {
		free(l->observed_record);
		l->observed_record = TAKE_PTR(record);
		l->observed_ms = mono_ms();
	}
	l->observed_dur_ms = dur_ms;
	note_leader(l, holder);
	bool mine = holder && strcmp(holder, l->identity) == 0;
	if (!mine && holder && *holder && mono_ms() < l->observed_ms + dur_ms)
		return 0; /* held by someone else and not expired as we see it */
	spec = lease_spec(l, l->identity, dur_s, mine ? acquire : NULL,
			  mine ? transitions : transitions + 1);
	if (!spec || json_object_set(lease, "spec", spec) < 0)
		return -ENOMEM;
	/* PUT with the resourceVersion we read: a concurrent writer makes it 409. */
	r = kmm_kube_update(l->c, &t, lease, NULL, NULL, err);
	if (r == -ESTALE)
		return 0;
	if (r < 0)
		return r;
	l->observed_ms = mono_ms();
	return 1;
}

static void release(struct kmm_leader *l)
{
	struct kmm_kube_target t = { .res = &kmm_kube_leases, .namespace = l->ns, .name = l->name };
	_cleanup_(json_decrefp) json_t *lease = NULL, *spec = NULL;
	const json_t *cur;
	const char *holder;

	if (kmm_kube_get(l->c, &t, &lease, NULL) < 0)
		return;
	cur = json_object_get(lease, "spec");
	holder = json_string_value(json_object_get(cur, "holderIdentity"));
	if (!holder || strcmp(holder, l->identity) != 0)
		return;
	spec = lease_spec(l, "", 1, json_string_value(json_object_get(cur, "acquireTime")),
			  json_integer_value(json_object_get(cur, "leaseTransitions")));
	if (!spec || json_object_set(lease, "spec", spec) < 0)
		return;
	/* holderIdentity "" must be sent, not omitted: json_pack keeps it. */
	(void)kmm_kube_update(l->c, &t, lease, NULL, NULL, NULL);
}

static void *elector(void *arg)
{
	struct kmm_leader *l = arg;

	while (!is_stopping(l)) {
		int64_t last_renew;
		int r;

		/* Acquire. */
		for (;;) {
			_cleanup_error_ struct kmm_error *err = NULL;

			r = try_acquire_or_renew(l, &err);
			if (r == 1)
				break;
			if (r < 0)
				kmm_debug("leader: acquire failed", "lease", l->name, "error",
					  kmm_error_message(err));
			/* Wake right when the holder's lease expires as we see it,
			 * if that comes before the next retry. */
			int64_t wait = l->o.retry_period_ms;
			int64_t expiry = l->observed_ms + l->observed_dur_ms - mono_ms() + 10;

			if (r == 0 && l->observed_dur_ms > 0 && expiry > 0 && expiry < wait)
				wait = expiry;
			if (!wait_or_stop(l, wait, wait == l->o.retry_period_ms))
				goto out;
		}
		atomic_store(&l->leading, true);
		note_leader(l, l->identity);
		if (l->o.on_started_leading)
			l->o.on_started_leading(l->o.userdata);
		/* Renew until the deadline passes without a success, or stop. */
		last_renew = mono_ms();
		while (wait_or_stop(l, l->o.retry_period_ms, false)) {
			_cleanup_error_ struct kmm_error *err = NULL;

			r = try_acquire_or_renew(l, &err);
			if (r == 1) {
				last_renew = mono_ms();
				continue;
			}
			if (r == 0 || mono_ms() - last_renew >= l->o.renew_deadline_ms) {
				kmm_debug("leader: lost the lease", "lease", l->name);
				break;
			}
		}
		atomic_store(&l->leading, false);
		if (is_stopping(l)) {
			if (!l->o.no_release)
				release(l);
			if (l->o.on_stopped_leading)
				l->o.on_stopped_leading(l->o.userdata);
			break;
		}
		if (l->o.on_stopped_leading)
			l->o.on_stopped_leading(l->o.userdata);
	}
out:
	return NULL;
}

int kmm_leader_start(struct kmm_kube_client *client, const struct kmm_leader_options *opts,
		     struct kmm_leader **ret_leader, struct kmm_error **err)
{
	struct kmm_leader *l;
	int r;

	if (!opts->namespace || !opts->name || !opts->identity || !*opts->identity)
		return kmm_error_make(err, EINVAL,
				      "leader election: namespace, name and identity required");
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->c = client;
	l->o = *opts;
	if (l->o.lease_duration_ms <= 0)
		l->o.lease_duration_ms = 15000;
	if (l->o.renew_deadline_ms <= 0)
		l->o.renew_deadline_ms = 10000;
	if (l->o.retry_period_ms <= 0)
		l->o.retry_period_ms = 2000;
	if (l->o.renew_deadline_ms >= l->o.lease_duration_ms ||
	    l->o.retry_period_ms >= l->o.renew_deadline_ms) {
		free(l);
		return kmm_error_make(
		    err, EINVAL,
		    "leader election: need retry period < renew deadline < lease duration");
	}
	l->ns = strdup(opts->namespace);
	l->name = strdup(opts->name);
	l->identity = strdup(opts->identity);
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	atomic_init(&l->leading, false);
	if (!l->ns || !l->name || !l->identity) {
		kmm_leader_stop(l);
		return -ENOMEM;
	}
	r = pthread_create(&l->thread, NULL, elector, l);
	if (r != 0) {
		l->thread = 0;
		free(l->ns);
		free(l->name);
		free(l->identity);
		free(l);
		return kmm_error_make_errno(err, r, "leader election: thread");
	}
	*ret_leader = l;
	return 0;
}

bool kmm_leader_is_leader(struct kmm_leader *l)
{
	return atomic_load(&l->leading);
}

void kmm_leader_stop(struct kmm_leader *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->stopping = true;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	if (l->thread)
		pthread_join(l->thread, NULL);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	free(l->observed_record);
	free(l->last_leader);
	free(l->ns);
	free(l->name);
	free(l->identity);
	free(l);
}
