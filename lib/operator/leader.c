/* SPDX-License-Identifier: Apache-2.0 */
/* Lease-based leader election (see kmm/operator-leader.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "kmm/json.h"
#include "kmm/log.h"
#include "kmm/operator-leader.h"

struct kmm_leader {
	struct kmm_kube_client *kube;
	char *namespace, *name, *identity;
	int lease_s, renew_s, retry_s;
	char *rv;	     /* of our last successful write */
	char *observed;	     /* holder + renewTime as last seen */
	int64_t observed_ms; /* monotonic time the record last changed */
	int64_t renewed_ms;  /* monotonic time of our last successful renewal */
	int transitions;
	bool leading;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void micro_time(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	char base[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%06ldZ", base, ts.tv_nsec / 1000);
}

int kmm_leader_new(struct kmm_kube_client *kube, const struct kmm_leader_options *o,
		   struct kmm_leader **ret, struct kmm_error **err)
{
	struct kmm_leader *l = calloc(1, sizeof(*l));
	char host[256] = "kmm";
	unsigned char rnd[4] = {};

	if (!l)
		return kmm_error_make(err, ENOMEM, "out of memory");
	l->kube = kube;
	l->lease_s = o->lease_duration_s > 0 ? o->lease_duration_s : 15;
	l->renew_s = o->renew_deadline_s > 0 ? o->renew_deadline_s : 10;
	l->retry_s = o->retry_period_s > 0 ? o->retry_period_s : 2;
	l->namespace = strdup(o->namespace ? o->namespace : "default");
	l->name = strdup(o->name ? o->name : "kmm.sigs.x-k8s.io");
	if (o->identity) {
		l->identity = strdup(o->identity);
	} else {
		gethostname(host, sizeof(host) - 1);
		if (getrandom(rnd, sizeof(rnd), 0) < 0)
			memset(rnd, 0, sizeof(rnd));
		if (asprintf(&l->identity, "%s_%02x%02x%02x%02x", host, rnd[0], rnd[1], rnd[2],
			     rnd[3]) < 0)
			l->identity = NULL;
	}
	if (!l->namespace || !l->name || !l->identity) {
		kmm_leader_free(l);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	*ret = l;
	return 0;
}

void kmm_leader_free(struct kmm_leader *l)
{
	if (!l)
		return;
	free(l->namespace);
	free(l->name);
	free(l->identity);
	free(l->rv);
	free(l->observed);
	free(l);
}

const char *kmm_leader_identity(const struct kmm_leader *l)
{
	return l->identity;
}

static void set_rv(struct kmm_leader *l, const json_t *lease)
{
	const char *rv = kmm_kube_meta_str(lease, "resourceVersion");

	free(l->rv);
	l->rv = rv ? strdup(rv) : NULL;
}

static json_t *lease_spec(struct kmm_leader *l, bool acquire)
{
	char now[64];
	json_t *spec;

	micro_time(now, sizeof(now));
	spec =
	    json_pack("{s:s, s:i, s:s, s:i}", "holderIdentity", l->identity, "leaseDurationSeconds",
		      l->lease_s, "renewTime", now, "leaseTransitions", l->transitions);
	if (spec && acquire)
		json_object_set_new(spec, "acquireTime", json_string(now));
	return spec;
}

/* One attempt: 1 = we hold the lease now, 0 = someone else does, <0 = error. */
static int try_acquire_or_renew(struct kmm_leader *l, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_kube_leases, l->namespace, l->name, NULL };
	_cleanup_json_ json_t *lease = NULL, *patch = NULL, *out = NULL;
	const json_t *spec;
	const char *holder, *renew;
	_cleanup_free_ char *record = NULL;
	int r;

	r = kmm_kube_get(l->kube, &t, &lease, err);
	if (r == -ENOENT) {
		kmm_error_free(*err);
		*err = NULL;
		lease = json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion",
				  "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name",
				  l->name, "namespace", l->namespace, "spec", lease_spec(l, true));
		if (!lease)
			return kmm_error_make(err, ENOMEM, "out of memory");
		r = kmm_kube_create(l->kube, &t, lease, NULL, &out, err);
		if (r == -EEXIST) {
			kmm_error_free(*err);
			*err = NULL;
			return 0;
		}
		if (r < 0)
			return r;
		set_rv(l, out);
		return 1;
	}
	if (r < 0)
		return r;
	spec = json_object_get(lease, "spec");
	holder = json_string_value(json_object_get(spec, "holderIdentity"));
	renew = json_string_value(json_object_get(spec, "renewTime"));
	l->transitions = (int)json_integer_value(json_object_get(spec, "leaseTransitions"));
	if (asprintf(&record, "%s|%s", holder ? holder : "", renew ? renew : "") < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (!l->observed || strcmp(l->observed, record) != 0) {
		free(l->observed);
		l->observed = TAKE_PTR(record);
		l->observed_ms = mono_ms();
	}
	if (holder && *holder && strcmp(holder, l->identity) != 0) {
		int64_t dur = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));

		if (dur <= 0)
			dur = l->lease_s;
		if (mono_ms() < l->observed_ms + dur * 1000)
			return 0; /* held and not expired */
		l->transitions++;
	} else if (!holder || !*holder) {
		l->transitions++;
	}
	patch = json_pack("{s:{s:s}, s:o}", "metadata", "resourceVersion",
			  kmm_kube_meta_str(lease, "resourceVersion"), "spec",
			  lease_spec(l, !holder || strcmp(holder, l->identity) != 0));
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = kmm_kube_patch(l->kube, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, &out, err);
	if (r == -ESTALE || r == -EEXIST) {
		kmm_error_free(*err);
		*err = NULL;
		return 0; /* someone else wrote first */
	}
	if (r < 0)
		return r;
	set_rv(l, out);
	return 1;
}

static int wait_signal(const sigset_t *sigs, int ms, int *ret_sig)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	int s = sigtimedwait(sigs, NULL, &ts);

	if (s > 0) {
		*ret_sig = s;
		return 1;
	}
	return 0;
}

int kmm_leader_acquire(struct kmm_leader *l, const sigset_t *sigs, int *ret_sig,
		       struct kmm_error **err)
{
	*ret_sig = 0;
	for (;;) {
		struct kmm_error *e = NULL;
		int r = try_acquire_or_renew(l, &e);

		if (r > 0) {
			l->leading = true;
			l->renewed_ms = mono_ms();
			return 0;
		}
		if (r < 0) {
			kmm_debug("leader election attempt failed", "error", kmm_error_message(e));
			kmm_error_free(e);
		}
		if (wait_signal(sigs, l->retry_s * 1000, ret_sig))
			return 0;
	}
}

int kmm_leader_wait(struct kmm_leader *l, const sigset_t *sigs, int *ret_sig,
		    struct kmm_error **err)
{
	*ret_sig = 0;
	for (;;) {
		struct kmm_error *e = NULL;
		int r;

		if (wait_signal(sigs, l->retry_s * 1000, ret_sig))
			return 0;
		r = try_acquire_or_renew(l, &e);
		if (r > 0) {
			l->renewed_ms = mono_ms();
			continue;
		}
		if (r == 0) {
			l->leading = false;
			return kmm_error_make(err, ENOLCK, "lease %s/%s taken by another replica",
					      l->namespace, l->name);
		}
		if (mono_ms() - l->renewed_ms > (int64_t)l->renew_s * 1000) {
			l->leading = false;
			kmm_error_free(*err);
			*err = e;
			kmm_error_wrap(err, "lease %s/%s not renewed within %d s", l->namespace,
				       l->name, l->renew_s);
			return -ENOLCK;
		}
		kmm_error_free(e);
	}
}

void kmm_leader_release(struct kmm_leader *l)
{
	struct kmm_kube_target t = { &kmm_kube_leases, l->namespace, l->name, NULL };
	_cleanup_json_ json_t *patch = NULL;
	char now[64];

	if (!l->leading || !l->rv)
		return;
	micro_time(now, sizeof(now));
	patch =
	    json_pack("{s:{s:s}, s:{s:s, s:i, s:s}}", "metadata", "resourceVersion", l->rv, "spec",
		      "holderIdentity", "", "leaseDurationSeconds", 1, "renewTime", now);
	if (patch)
		kmm_kube_patch(l->kube, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, NULL, NULL);
	l->leading = false;
}
