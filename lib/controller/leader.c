/* SPDX-License-Identifier: Apache-2.0 */
/* Lease-based leader election. See include/kmm/controller-leader.h and docs/internals/leader-election.md. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmm/shared-clock.h"
#include "kmm/controller-leader.h"
#include "kmm/shared-log.h"
#include "kmm/kube-watch.h"

/* Server-side timeout of one watch stream on the Lease; it is then reopened. */
#define LEASE_WATCH_TIMEOUT_S 300

struct kmm_leader {
	struct kmm_kube_client *c;
	struct kmm_leader_options o;
	char *ns, *name, *identity;

	pthread_t thread;
	pthread_t watcher; /* watches the Lease so followers see renewals at once */
	bool thread_started, watcher_started;
	struct kmm_watch *watch; /* cancelled by kmm_leader_stop() */
	pthread_mutex_t lock;	 /* guards the fields below, with cond (CLOCK_MONOTONIC) */
	pthread_cond_t cond;	 /* broadcast on stop and when the observed record changes */
	bool stopping;
	atomic_bool leading;

	/* Shared by the elector and the watcher thread, under lock. */
	char *observed_record;	 /* holder + renewTime + duration as last seen */
	int64_t observed_ms;	 /* monotonic time when it last changed */
	int64_t observed_dur_ms; /* its leaseDurationSeconds, in ms */
	bool watch_synced;	 /* the watch is open and has delivered the Lease */
	bool lease_free;	 /* the watch saw it released or deleted: try now */

	/* Elector thread only. */
	char *last_leader;
};

static void now_micro(char *buf, size_t len)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	kmm_format_rfc3339_micro(buf, len, &ts);
}

static int64_t jittered(int64_t ms)
{
	return ms + kmm_backoff_ms(ms / 5 + 1, ms / 5 + 1, 0) - ms / 10;
}

/* Waits ms (with up to 20% jitter added); false if stopping. */
static bool wait_or_stop(struct kmm_leader *l, int64_t ms, bool jitter)
{
	struct timespec ts = kmm_timespec_from_ms(kmm_now_mono_ms() + (jitter ? jittered(ms) : ms));
	bool stop;

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

/* The part of a Lease whose change counts as a renewal: holder|renewTime|duration. */
static int lease_record(struct kmm_leader *l, const json_t *lease, char **ret_record,
			int64_t *ret_dur_ms)
{
	const json_t *spec = json_object_get(lease, "spec");
	const char *holder = json_string_value(json_object_get(spec, "holderIdentity"));
	const char *renew = json_string_value(json_object_get(spec, "renewTime"));
	int64_t dur_ms = json_integer_value(json_object_get(spec, "leaseDurationSeconds")) * 1000;

	if (dur_ms <= 0)
		dur_ms = l->o.lease_duration_ms;
	if (asprintf(ret_record, "%s|%s|%lld", holder ? holder : "", renew ? renew : "",
		     (long long)dur_ms) < 0)
		return -ENOMEM;
	*ret_dur_ms = dur_ms;
	return 0;
}

/*
 * Notes a record read by GET or delivered by the watch (takes *record). Only
 * a change restarts the expiry, and it is timed on our monotonic clock when
 * we saw it, never from the holder's renewTime. Called with l->lock held.
 */
static void observe(struct kmm_leader *l, char **record, int64_t dur_ms)
{
	if (!l->observed_record || strcmp(*record, l->observed_record) != 0) {
		free(l->observed_record);
		l->observed_record = TAKE_PTR(*record);
		l->observed_ms = kmm_now_mono_ms();
		pthread_cond_broadcast(&l->cond);
	}
	l->observed_dur_ms = dur_ms;
}

/*
 * One acquire or renew attempt. Every request it makes is a single try whose
 * timeout is the time left before deadline_ms: a stalled connection cannot
 * hold it past the deadline, and no retry is sent after it.
 */
struct attempt {
	struct kmm_leader *l;
	int64_t deadline_ms; /* in: monotonic */
	int r;		     /* out: 1 we hold the lease, 0 someone else does, <0 error */
	int64_t written_ms;  /* out, r == 1: when the write that took or renewed it was sent */
	char *holder;	     /* out: the holder seen, for on_new_leader on the elector thread */
	struct kmm_error *err;
	bool done; /* under l->lock: the attempt's thread has finished */
};

static void attempt_free(struct attempt *a)
{
	if (!a)
		return;
	free(a->holder);
	kmm_error_free(a->err);
	free(a);
}
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct attempt *, attempt_free)

static int bounded_request(struct kmm_leader *l, struct kmm_kube_request *req, int64_t deadline_ms,
			   json_t **ret_obj, struct kmm_error **err)
{
	int64_t left = deadline_ms - kmm_now_mono_ms();

	if (left <= 0)
		return kmm_error_make(err, ETIMEDOUT, "%s %s: leader election deadline passed",
				      req->method, req->path);
	req->no_retry = true;
	req->timeout_ms = (long)left;
	return kmm_kube_request_json(l->c, req, ret_obj, err);
}

static int try_acquire_or_renew(struct attempt *a)
{
	struct kmm_leader *l = a->l;
	struct kmm_kube_target t = { .res = &kmm_kube_leases, .namespace = l->ns, .name = l->name };
	_cleanup_(json_decrefp) json_t *lease = NULL, *spec = NULL;
	_cleanup_(kmm_kube_prepared_clear) struct kmm_kube_prepared put = { 0 };
	_cleanup_error_ struct kmm_error *gerr = NULL;
	_cleanup_free_ char *record = NULL, *path = NULL;
	struct kmm_error **err = &a->err;
	const json_t *cur;
	const char *holder, *acquire;
	int64_t transitions, dur_ms, sent_ms;
	int dur_s = (int)((l->o.lease_duration_ms + 999) / 1000);
	int r;

	r = kmm_kube_path(&t, NULL, &path, err);
	if (r < 0)
		return r;
	r = bounded_request(l, &(struct kmm_kube_request){ .method = "GET", .path = path },
			    a->deadline_ms, &lease, &gerr);
	if (r == -ENOENT) {
		_cleanup_(kmm_kube_prepared_clear) struct kmm_kube_prepared post = { 0 };
		_cleanup_(json_decrefp) json_t *obj = NULL;

		spec = lease_spec(l, l->identity, dur_s, NULL, 0);
		obj = json_pack("{s:s,s:s,s:{s:s,s:s},s:O}", "apiVersion", "coordination.k8s.io/v1",
				"kind", "Lease", "metadata", "name", l->name, "namespace", l->ns,
				"spec", spec);
		if (!spec || !obj)
			return -ENOMEM;
		r = kmm_kube_prepare_create(&t, obj, NULL, &post, err);
		if (r < 0)
			return r;
		sent_ms = kmm_now_mono_ms();
		r = bounded_request(l, &post.req, a->deadline_ms, NULL, err);
		if (r < 0)
			return r == -EEXIST ? 0 : r;
		pthread_mutex_lock(&l->lock);
		l->observed_ms = kmm_now_mono_ms();
		pthread_mutex_unlock(&l->lock);
		a->written_ms = sent_ms;
		return 1;
	}
	if (r < 0) {
		*err = TAKE_PTR(gerr);
		return r;
	}
	cur = json_object_get(lease, "spec");
	holder = json_string_value(json_object_get(cur, "holderIdentity"));
	acquire = json_string_value(json_object_get(cur, "acquireTime"));
	transitions = json_integer_value(json_object_get(cur, "leaseTransitions"));
	r = lease_record(l, lease, &record, &dur_ms);
	if (r < 0)
		return r;
	if (holder && *holder && !(a->holder = strdup(holder)))
		return -ENOMEM;
	pthread_mutex_lock(&l->lock);
	observe(l, &record, dur_ms);
	bool expired = kmm_now_mono_ms() >= l->observed_ms + dur_ms;
	pthread_mutex_unlock(&l->lock);
	bool mine = holder && strcmp(holder, l->identity) == 0;
	if (!mine && holder && *holder && !expired)
		return 0; /* held by someone else and not expired as we see it */
	spec = lease_spec(l, l->identity, dur_s, mine ? acquire : NULL,
			  mine ? transitions : transitions + 1);
	if (!spec || json_object_set(lease, "spec", spec) < 0)
		return -ENOMEM;
	/* PUT with the resourceVersion we read: a concurrent writer makes it 409. */
	r = kmm_kube_prepare_update(&t, lease, NULL, &put, err);
	if (r < 0)
		return r;
	/*
	 * Timed before it is sent: the server writes the renewal, and a
	 * follower restarts its expiry, no earlier than this.
	 */
	sent_ms = kmm_now_mono_ms();
	r = bounded_request(l, &put.req, a->deadline_ms, NULL, err);
	if (r == -ESTALE)
		return 0;
	if (r < 0)
		return r;
	pthread_mutex_lock(&l->lock);
	l->observed_ms = kmm_now_mono_ms();
	pthread_mutex_unlock(&l->lock);
	a->written_ms = sent_ms;
	return 1;
}

static void *attempt_thread(void *arg)
{
	struct attempt *a = arg;

	a->r = try_acquire_or_renew(a);
	pthread_mutex_lock(&a->l->lock);
	a->done = true;
	pthread_cond_broadcast(&a->l->cond);
	pthread_mutex_unlock(&a->l->lock);
	return NULL;
}

/* Bounded like the renewals, so a stalled connection cannot hold up a stop. */
static void release(struct kmm_leader *l)
{
	struct kmm_kube_target t = { .res = &kmm_kube_leases, .namespace = l->ns, .name = l->name };
	_cleanup_(json_decrefp) json_t *lease = NULL, *spec = NULL;
	_cleanup_(kmm_kube_prepared_clear) struct kmm_kube_prepared put = { 0 };
	_cleanup_free_ char *path = NULL;
	int64_t deadline_ms = kmm_now_mono_ms() + l->o.renew_deadline_ms;
	const json_t *cur;
	const char *holder;

	if (kmm_kube_path(&t, NULL, &path, NULL) < 0 ||
	    bounded_request(l, &(struct kmm_kube_request){ .method = "GET", .path = path },
			    deadline_ms, &lease, NULL) < 0)
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
	if (kmm_kube_prepare_update(&t, lease, NULL, &put, NULL) < 0)
		return;
	(void)bounded_request(l, &put.req, deadline_ms, NULL, NULL);
}

/*
 * Follower: waits until the holder's lease expires as we observed it (plus
 * 10 ms). While the watch is synced every renewal it delivers moves that
 * deadline, so no GET is needed until then; without it (not yet open, failed,
 * reconnecting) we also wake every retry period to poll. A lease the watch saw
 * released or deleted ends the wait at once. held: the last attempt found the
 * lease held by someone else (else the observed record says nothing useful).
 * False if stopping.
 */
static bool follow(struct kmm_leader *l, bool held)
{
	int64_t poll_at = kmm_now_mono_ms() + jittered(l->o.retry_period_ms);
	bool stop;

	pthread_mutex_lock(&l->lock);
	for (;;) {
		int64_t until = poll_at;

		if (l->stopping || l->lease_free)
			break;
		if (held && l->observed_dur_ms > 0) {
			int64_t expiry = l->observed_ms + l->observed_dur_ms + 10;

			if (l->watch_synced || expiry < until)
				until = expiry;
		}
		if (kmm_now_mono_ms() >= until)
			break;
		struct timespec ts = kmm_timespec_from_ms(until);
		(void)pthread_cond_timedwait(&l->cond, &l->lock, &ts);
	}
	stop = l->stopping;
	pthread_mutex_unlock(&l->lock);
	return !stop;
}

static int on_lease_event(enum kmm_watch_event_type type, json_t *object, void *userdata,
			  struct kmm_error **err)
{
	struct kmm_leader *l = userdata;
	_cleanup_free_ char *record = NULL;
	const char *holder;
	int64_t dur_ms;
	int r;

	(void)err;
	if (type == KMM_WATCH_BOOKMARK)
		return 0;
	pthread_mutex_lock(&l->lock);
	l->watch_synced = true;
	if (type == KMM_WATCH_DELETED) {
		l->lease_free = true;
		pthread_cond_broadcast(&l->cond);
		pthread_mutex_unlock(&l->lock);
		return 0;
	}
	pthread_mutex_unlock(&l->lock);
	r = lease_record(l, object, &record, &dur_ms);
	if (r < 0)
		return r;
	holder =
	    json_string_value(json_object_get(json_object_get(object, "spec"), "holderIdentity"));
	pthread_mutex_lock(&l->lock);
	observe(l, &record, dur_ms);
	if (!holder || !*holder)
		l->lease_free = true;
	/* Also wakes a follower that was polling before the watch synced. */
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

/*
 * Watches the one Lease for the life of the elector, reopening the stream with
 * backoff when it fails or ends; while it is down followers poll.
 */
static void *watcher(void *arg)
{
	struct kmm_leader *l = arg;
	_cleanup_free_ char *selector = NULL;
	struct kmm_kube_target t = { .res = &kmm_kube_leases, .namespace = l->ns };
	int failures = 0;

	if (asprintf(&selector, "metadata.name=%s", l->name) < 0)
		return NULL;
	while (!is_stopping(l)) {
		_cleanup_error_ struct kmm_error *err = NULL;
		struct kmm_watch_options wo = {
			.field_selector = selector,
			.timeout_seconds = LEASE_WATCH_TIMEOUT_S,
		};
		int64_t opened = kmm_now_mono_ms();
		int r;

		r = kmm_kube_watch(l->c, &t, &wo, on_lease_event, NULL, l, l->watch, &err);
		pthread_mutex_lock(&l->lock);
		l->watch_synced = false;
		pthread_cond_broadcast(&l->cond); /* a follower goes back to polling */
		pthread_mutex_unlock(&l->lock);
		if (r == -ECANCELED || kmm_watch_cancelled(l->watch))
			break;
		if (r < 0)
			kmm_debug("leader: lease watch failed", "lease", l->name, "error",
				  kmm_error_message(err));
		/* A stream that lived a while was healthy: reopen at once. */
		failures = r == 0 && kmm_now_mono_ms() - opened >= 10000 ? 0 : failures + 1;
		if (failures > 0 &&
		    !wait_or_stop(l, kmm_backoff_ms(l->o.retry_period_ms, 30000, failures - 1),
				  false))
			break;
	}
	return NULL;
}

/* Waits until at_ms (monotonic); false if stopping. */
static bool wait_until_or_stop(struct kmm_leader *l, int64_t at_ms)
{
	struct timespec ts = kmm_timespec_from_ms(at_ms);
	bool stop;

	pthread_mutex_lock(&l->lock);
	while (!l->stopping && kmm_now_mono_ms() < at_ms &&
	       pthread_cond_timedwait(&l->cond, &l->lock, &ts) == 0)
		;
	stop = l->stopping;
	pthread_mutex_unlock(&l->lock);
	return !stop;
}

/*
 * Runs a renewal on a thread of its own and waits for it until deadline_ms.
 * Its requests already time out then, but waiting here as well makes the
 * deadline hold whatever delays a request before curl's clock starts (the
 * client's rate limiter, a credential plugin). Returns the attempt when it
 * finished in time (*ret_late NULL), else NULL and *ret_late, the attempt
 * still running on *ret_thread, to be joined after stepping down.
 */
static struct attempt *renew_within(struct kmm_leader *l, int64_t deadline_ms,
				    pthread_t *ret_thread, struct attempt **ret_late)
{
	struct attempt *a = calloc(1, sizeof(*a));
	struct timespec ts = kmm_timespec_from_ms(deadline_ms);
	bool done;

	*ret_late = NULL;
	if (!a)
		return NULL;
	a->l = l;
	a->deadline_ms = deadline_ms;
	if (pthread_create(ret_thread, NULL, attempt_thread, a) != 0) {
		/* No thread: the requests' own timeouts still bound it, nearly as well. */
		a->r = try_acquire_or_renew(a);
		return a;
	}
	pthread_mutex_lock(&l->lock);
	while (!a->done && kmm_now_mono_ms() < deadline_ms)
		(void)pthread_cond_timedwait(&l->cond, &l->lock, &ts);
	done = a->done;
	pthread_mutex_unlock(&l->lock);
	if (!done) {
		*ret_late = a;
		return NULL;
	}
	pthread_join(*ret_thread, NULL);
	return a;
}

static void *elector(void *arg)
{
	struct kmm_leader *l = arg;

	while (!is_stopping(l)) {
		struct attempt *late = NULL;
		pthread_t late_thread;
		int64_t renewed_ms;
		int r;

		/* Acquire. */
		for (;;) {
			_cleanup_(attempt_freep) struct attempt *a = NULL;

			/* Cleared before the GET, so a release the watch reports
			 * while we decide is not missed. */
			pthread_mutex_lock(&l->lock);
			l->lease_free = false;
			pthread_mutex_unlock(&l->lock);
			a = calloc(1, sizeof(*a));
			if (a) {
				a->l = l;
				a->deadline_ms = kmm_now_mono_ms() + l->o.renew_deadline_ms;
				r = try_acquire_or_renew(a);
				note_leader(l, a->holder);
			} else {
				r = -ENOMEM;
			}
			/*
			 * Leading starts from when our write was sent: one that
			 * took a renew deadline to answer (a delay before curl's
			 * timer started) has left no time to lead.
			 */
			if (r == 1 && kmm_now_mono_ms() < a->written_ms + l->o.renew_deadline_ms) {
				renewed_ms = a->written_ms;
				break;
			}
			if (r < 0)
				kmm_debug("leader: acquire failed", "lease", l->name, "error",
					  a && a->err ? kmm_error_message(a->err) : "late");
			if (!follow(l, r == 0))
				goto out;
		}
		atomic_store(&l->leading, true);
		note_leader(l, l->identity);
		if (l->o.on_started_leading)
			l->o.on_started_leading(l->o.userdata);
		/*
		 * Renew until renew_deadline passes since the last renewal was
		 * sent, or someone else holds the lease, or stop. No attempt
		 * outlives that deadline: a follower takes over no earlier than
		 * lease_duration after it, so we stop leading first.
		 */
		for (;;) {
			int64_t deadline_ms = renewed_ms + l->o.renew_deadline_ms;
			int64_t next_ms = kmm_now_mono_ms() + l->o.retry_period_ms;
			_cleanup_(attempt_freep) struct attempt *a = NULL;

			if (!wait_until_or_stop(l, next_ms < deadline_ms ? next_ms : deadline_ms))
				break;
			if (kmm_now_mono_ms() >= deadline_ms) {
				kmm_debug("leader: renew deadline passed", "lease", l->name);
				break;
			}
			a = renew_within(l, deadline_ms, &late_thread, &late);
			if (late) {
				kmm_debug("leader: renewal still running at the renew deadline",
					  "lease", l->name);
				break;
			}
			if (!a)
				continue; /* out of memory: try again until the deadline */
			note_leader(l, a->holder);
			if (a->r == 1) {
				renewed_ms = a->written_ms;
				continue;
			}
			if (a->r == 0) {
				kmm_debug("leader: lost the lease", "lease", l->name);
				break;
			}
			kmm_debug("leader: renew failed", "lease", l->name, "error",
				  kmm_error_message(a->err));
		}
		atomic_store(&l->leading, false);
		if (is_stopping(l) && !late && !l->o.no_release)
			release(l);
		if (l->o.on_stopped_leading)
			l->o.on_stopped_leading(l->o.userdata);
		if (late) {
			/* Its requests time out at the deadline just passed. */
			pthread_join(late_thread, NULL);
			note_leader(l, late->holder);
			attempt_free(late);
		}
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
	(void)kmm_cond_init_monotonic(&l->cond);
	atomic_init(&l->leading, false);
	if (!l->ns || !l->name || !l->identity) {
		kmm_leader_stop(l);
		return -ENOMEM;
	}
	r = kmm_watch_new(&l->watch, err);
	if (r < 0) {
		kmm_leader_stop(l);
		return r;
	}
	r = pthread_create(&l->watcher, NULL, watcher, l);
	if (r == 0) {
		l->watcher_started = true;
		r = pthread_create(&l->thread, NULL, elector, l);
		if (r == 0)
			l->thread_started = true;
	}
	if (r != 0) {
		kmm_leader_stop(l);
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
	if (l->watch)
		kmm_watch_cancel(l->watch);
	if (l->thread_started)
		pthread_join(l->thread, NULL);
	if (l->watcher_started)
		pthread_join(l->watcher, NULL);
	kmm_watch_free(l->watch);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	free(l->observed_record);
	free(l->last_leader);
	free(l->ns);
	free(l->name);
	free(l->identity);
	free(l);
}
