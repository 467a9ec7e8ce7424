/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ModuleImagesConfig reconciler (reference §1.3, §3.3): one MIC per Module
 * lists the images its targeted nodes need; this decides, per image, one of
 * Exists / DoesNotExist / NeedsBuilding / NeedsSigning, and asks the
 * ModuleBuildSignConfig (same name, owned by the MIC) for a build or a sign
 * where one is needed. Reads top to bottom:
 *
 *   1. imageRebuildTriggerGeneration changed -> delete the MBSC, forget
 *      every state and every cached registry answer, record the generation;
 *   2. per image: the MBSC's result when it has one (Failure -> DoesNotExist,
 *      sign Success -> Exists, build Success -> NeedsSigning or Exists);
 *      else a state already reached stays (a build in flight, or Exists);
 *      else ask the registry (HEAD of the manifest with the pull secret and
 *      registryTLS): there -> Exists; missing -> NeedsBuilding with a build,
 *      NeedsSigning with only a sign, otherwise DoesNotExist, re-checked with
 *      backoff and reported to the Module (condition and Warning event);
 *   3. upsert the MBSC entries (BuildImage / SignImage), then the status.
 *
 * Unlike upstream the operator asks the registry itself by default, so a
 * missing image never leaves a pod waiting forever. Pull pods are opt-in
 * (imageCheck: pullPod) and bounded: an until-success pod that cannot pull
 * is reported DoesNotExist after the re-check backoff and replaced later; a
 * Failed or Unknown pod is read (DoesNotExist with its reason) and deleted. A failed
 * sign-only image never asks for a build it has no section for, and a failed
 * build is not asked again until its inputs change (the MBSC keeps the
 * failed pod and its hash).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmm/shared-json.h"
#include "kmm/shared-log.h"
#include "kmm/registry.h"
#include "engine-internal.h"

const struct kmm_kube_resource kmm_op_mics = { KMM_API_GROUP, "v1beta1", "moduleimagesconfigs",
					       true };
const struct kmm_kube_resource kmm_op_mbscs = { KMM_API_GROUP, "v1beta1", "modulebuildsignconfigs",
						true };

#define IMAGE_RECHECK_MIN_MS 5000
#define IMAGE_RECHECK_MAX_MS 300000

/* ---- image existence ---- */

struct image_state {
	int exists; /* 1 yes, 0 no, -1 could not tell (when checked) */
	bool checked;
	bool pending; /* a check with this tag is queued or running */
	uint64_t tag;
	int64_t pending_since_ms;
	int failures;
	int64_t next_check_ms;
	char why[224]; /* the registry's verdict, summarized (kmm_registry_error_summary) */
};

struct kmm_op_image_checks;

/* What the MIC reconciler keeps between reconciles; every member under lock. */
struct mic_state {
	pthread_mutex_t lock;
	struct kmm_hashmap *images;  /* cache_key() -> struct image_state */
	struct kmm_hashmap *waiters; /* cache_key() -> "ns/mic\n"... waiting for its check */
	struct kmm_hashmap *whys;    /* why_key() -> char *: why the image is not there */
	struct kmm_hashmap *pulls;   /* pull_key() -> struct pull_state (imageCheck pullPod) */
	struct kmm_op_image_checks *checks;  /* the registry checks, started on first use */
	uint64_t check_tag;		     /* tells a verdict from a superseded one */
	struct kmm_op_keyset *pullpods_done; /* pull pod uids read and deleted, maybe cached */
	struct kmm_op_keyset *mbscs_deleted; /* MBSC uids deleted, maybe still cached */
};

static struct mic_state *mic_reconciler_state(struct kmm_op_engine *op)
{
	return op->state[KMM_OP_MIC];
}

static int64_t backoff_ms(int failures);

char *kmm_op_pull_secret(struct kmm_op_engine *op, const char *ns, const char *name,
			 struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_kube_secrets, ns, name, NULL };
	_cleanup_json_ json_t *sec = NULL;
	const char *data;
	char *out = NULL;
	size_t len;

	if (kmm_op_get(&op->api, &t, &sec, err) < 0)
		return NULL;
	data = str(json_object_get(sec, "data"), ".dockerconfigjson");
	if (!data)
		data = str(json_object_get(sec, "data"), ".dockercfg");
	if (!data) {
		kmm_error_make(err, EINVAL, "secret %s/%s has no .dockerconfigjson", ns, name);
		return NULL;
	}
	if (kmm_kube_base64_decode(data, &out, &len) < 0) {
		kmm_error_make(err, EINVAL, "secret %s/%s: .dockerconfigjson is not valid base64",
			       ns, name);
		return NULL;
	}
	return out;
}

static void cache_key(char *key, size_t size, const struct kmm_image_config *mic,
		      const struct kmm_module_image_spec *img)
{
	const struct kmm_tls_options *tls = img->registry_tls;
	const char *secret = mic->image_repo_secret;

	snprintf(key, size, "%s|%d|%d|%s/%s", img->image, tls && tls->insecure,
		 tls && tls->insecure_skip_tls_verify, secret ? mic->namespace : "",
		 secret ? secret : "");
}

/* map[key], created zeroed (size bytes) when absent; NULL on ENOMEM. Hold the state's lock. */
static void *images_entry(struct kmm_hashmap *map, const char *key, size_t size)
{
	void *v = kmm_hashmap_get(map, key);

	if (v)
		return v;
	v = calloc(1, size);
	if (v && kmm_hashmap_put(map, key, v, NULL) < 0) {
		free(v);
		v = NULL;
	}
	return v;
}

/*
 * Per MIC, not per image: two Modules may use one image with different pull
 * secrets, and one's success must not erase why the other's check failed.
 */
static void why_key(char *key, size_t size, const char *ns, const char *mic_name, const char *image)
{
	snprintf(key, size, "%s|%s|%s", ns, mic_name, image);
}

static bool set_why(struct kmm_op_engine *op, const struct kmm_image_config *mic, const char *image,
		    const char *why)
{
	char key[1024];
	char *copy = why ? strdup(why) : NULL;
	void *old = NULL;
	bool changed;

	why_key(key, sizeof(key), mic->namespace, mic->name, image);
	if (!copy)
		old = kmm_hashmap_remove(mic_reconciler_state(op)->whys, key);
	else if (kmm_hashmap_put(mic_reconciler_state(op)->whys, key, copy, &old) < 0)
		free(copy);
	if (old && why)
		changed = strcmp(old, why) != 0;
	else
		changed = old || why;
	free(old);
	return changed;
}

void kmm_op_image_why(struct kmm_op_engine *op, const char *ns, const char *mic_name,
		      const char *image, char *buf, size_t size)
{
	char key[1024];
	const char *why;

	why_key(key, sizeof(key), ns, mic_name, image);
	pthread_mutex_lock(&mic_reconciler_state(op)->lock);
	why = kmm_hashmap_get(mic_reconciler_state(op)->whys, key);
	snprintf(buf, size, "%s", why ? why : "");
	pthread_mutex_unlock(&mic_reconciler_state(op)->lock);
}

/* ---- registry checks, off the reconcile workers ---- */

/*
 * A registry that accepts connections and never answers holds a check for
 * its whole deadline: checks run on kmm_image_checks' threads (a few, two per
 * registry host), never on a reconcile worker. A MIC that needs an answer
 * marks its image's state pending, queues a check and leaves the image's
 * state unset; the verdict lands in the state and requeues every MIC that
 * waited for it.
 */
#define CHECK_THREADS 4
#define CHECK_PER_HOST 2
#define CHECK_QUEUE_MAX 1024
#define CHECK_DEADLINE_MS 30000
/* A pending check not answered by then is asked again (a lost verdict never sticks). */
#define CHECK_STALE_MS (CHECK_DEADLINE_MS + 15000)
#define CHECK_QUEUE_FULL_RETRY_MS 5000
#define WAITERS_MAX 4096 /* bytes of "ns/name\n" per image state; more wait for the retry */

struct kmm_op_image_checks {
	struct kmm_image_checks *pool;
	struct kmm_registry_policy *policy;
};

/* The pool, started on first use with the configured policy. Hold the state's lock. */
static struct kmm_op_image_checks *checks_locked(struct kmm_op_engine *op, struct kmm_error **err);

/* Stops the registry checks (joins their threads): no callback requeues a MIC after this. */
static void mic_state_stop(struct kmm_op_engine *op, void *state)
{
	struct kmm_op_image_checks *c;

	pthread_mutex_lock(&mic_reconciler_state(op)->lock);
	c = TAKE_PTR(mic_reconciler_state(op)->checks);
	pthread_mutex_unlock(&mic_reconciler_state(op)->lock);
	if (!c)
		return;
	kmm_image_checks_free(c->pool); /* joins: no callback runs after this */
	kmm_registry_policy_free(c->policy);
	free(c);
}

/* Remembers that MIC ns/name waits for the check of cache_key. Hold the state's lock. */
static void add_waiter(struct kmm_op_engine *op, const char *cache_key,
		       const struct kmm_image_config *mic)
{
	char who[512];
	const char *old;
	char *joined = NULL;

	snprintf(who, sizeof(who), "%s/%s\n", mic->namespace, mic->name);
	old = kmm_hashmap_get(mic_reconciler_state(op)->waiters, cache_key);
	for (const char *p = old; p && (p = strstr(p, who)); p++)
		if (p == old || p[-1] == '\n')
			return; /* listed already */
	if (old && strlen(old) + strlen(who) > WAITERS_MAX)
		return; /* too many: the retry after CHECK_STALE_MS covers the rest */
	if (asprintf(&joined, "%s%s", old ? old : "", who) < 0)
		return;
	if (kmm_hashmap_put(mic_reconciler_state(op)->waiters, cache_key, joined, NULL) < 0)
		free(joined);
}

/*
 * Records the verdict of the check of cache_key claimed with tag and requeues
 * the MICs that wait for it. local_why (may be NULL) replaces the summary of e
 * for errors found before any registry was asked.
 */
static void record_verdict(struct kmm_op_engine *op, const char *cache_key, uint64_t tag, int r,
			   const struct kmm_error *e, const char *local_why)
{
	struct image_state *st;
	_cleanup_free_ char *waiters = NULL;

	pthread_mutex_lock(&mic_reconciler_state(op)->lock);
	st = kmm_hashmap_get(mic_reconciler_state(op)->images, cache_key);
	/* Forgotten meanwhile (a rebuild trigger), or superseded: not ours to answer. */
	if (!st || !st->pending || st->tag != tag) {
		pthread_mutex_unlock(&mic_reconciler_state(op)->lock);
		return;
	}
	st->pending = false;
	st->checked = true;
	st->exists = r > 0 ? 1 : r == 0 ? 0 : -1;
	st->why[0] = '\0';
	if (r > 0) {
		st->failures = 0;
	} else {
		st->next_check_ms = kmm_now_mono_ms() + backoff_ms(st->failures);
		st->failures++;
		if (r == 0)
			snprintf(st->why, sizeof(st->why), "does not exist");
		else if (local_why)
			snprintf(st->why, sizeof(st->why), "%s", local_why);
		else
			kmm_registry_error_summary(e, st->why, sizeof(st->why));
	}
	waiters = kmm_hashmap_remove(mic_reconciler_state(op)->waiters, cache_key);
	pthread_mutex_unlock(&mic_reconciler_state(op)->lock);
	for (char *w = waiters, *nl; w && (nl = strchr(w, '\n')); w = nl + 1) {
		*nl = '\0';
		kmm_op_ctl_enqueue(op->ctl[KMM_OP_MIC], w);
	}
}

/* kmm_image_checks' callback, on a check thread. */
static void check_done(void *userdata, const char *cache_key, uint64_t tag, int r,
		       const struct kmm_error *e)
{
	/* The full error quotes the registry: the log's debug level only. */
	if (r < 0)
		kmm_debug("image check failed", "controller", "mic", "check", cache_key, "error",
			  kmm_error_message(e));
	record_verdict(userdata, cache_key, tag, r, e, NULL);
}

static struct kmm_op_image_checks *checks_locked(struct kmm_op_engine *op, struct kmm_error **err)
{
	const struct kmm_image_checks_options o = {
		.threads = CHECK_THREADS,
		.per_host = CHECK_PER_HOST,
		.max_queued = CHECK_QUEUE_MAX,
		.deadline_ms = CHECK_DEADLINE_MS,
	};
	_cleanup_free_ struct kmm_op_image_checks *c = NULL;

	if (mic_reconciler_state(op)->checks)
		return mic_reconciler_state(op)->checks;
	c = calloc(1, sizeof(*c));
	if (!c) {
		kmm_error_make(err, ENOMEM, "out of memory");
		return NULL;
	}
	if (kmm_registry_policy_new((const char *const *)op->cfg.registry_allowed_networks,
				    (const char *const *)op->cfg.registry_denied_networks,
				    &c->policy, err) < 0)
		return NULL;
	if (kmm_image_checks_new(&o, check_done, op, &c->pool, err) < 0) {
		kmm_registry_policy_free(c->policy);
		return NULL;
	}
	mic_reconciler_state(op)->checks = TAKE_PTR(c);
	return mic_reconciler_state(op)->checks;
}

/* Printable ASCII, capped: an image name from a Module spec goes into a status. */
static void status_text(char *buf, size_t size, const char *fmt, ...) _printf_(3, 4);
static void status_text(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	for (char *p = buf; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			*p = '?';
}

/*
 * Queues the check claimed with tag (the state is pending). Returns 0 when
 * queued; otherwise the verdict to record at once (< 0, *ret_e set; why set
 * when the pull secret is to blame), or -EAGAIN when the queue is full
 * (nothing to record).
 */
static int submit_check(struct kmm_op_engine *op, const struct kmm_image_config *mic,
			const struct kmm_module_image_spec *img, const char *key, uint64_t tag,
			char *why, size_t why_size, struct kmm_error **ret_e)
{
	const char *secret = mic->image_repo_secret;
	_cleanup_free_ char *docker_config = NULL;
	struct kmm_registry *reg = NULL;
	struct kmm_op_image_checks *c;
	int r;

	pthread_mutex_lock(&mic_reconciler_state(op)->lock);
	c = checks_locked(op, ret_e);
	pthread_mutex_unlock(&mic_reconciler_state(op)->lock);
	if (!c)
		return -EIO;
	/* The apiserver, not the registry: fine on a reconcile worker. */
	if (secret && !(docker_config = kmm_op_pull_secret(op, mic->namespace, secret, ret_e))) {
		/* The apiserver's or pull_secret()'s words, not a registry's. */
		status_text(why, why_size, "pull secret %s: %s", secret, kmm_error_message(*ret_e));
		return -EINVAL;
	}
	struct kmm_registry_options ro = {
		.insecure = img->registry_tls && img->registry_tls->insecure,
		.insecure_skip_tls_verify =
		    img->registry_tls && img->registry_tls->insecure_skip_tls_verify,
		.ca_file = op->cfg.registry_ca_file && *op->cfg.registry_ca_file
			       ? op->cfg.registry_ca_file
			       : NULL,
		.docker_config = docker_config,
		.policy = c->policy,
	};
	r = kmm_registry_new(&ro, &reg, ret_e);
	if (r < 0)
		return r;
	r = kmm_image_checks_submit(c->pool, key, tag, img->image, reg, ret_e);
	if (r == -EAGAIN) {
		kmm_error_free(*ret_e);
		*ret_e = NULL;
	}
	return r;
}

/*
 * 1 when the image exists, 0 when not or when nobody can tell yet
 * (*ret_unknown set); *ret_retry_ms says when to look again.
 */
static int image_exists(struct kmm_op_engine *op, const struct kmm_image_config *mic,
			const struct kmm_module_image_spec *img, bool *ret_unknown,
			int64_t *ret_retry_ms)
{
	char key[1024], why[300];
	struct image_state *st;
	int64_t now = kmm_now_mono_ms();
	bool why_changed = false;
	int exists = -1;

	cache_key(key, sizeof(key), mic, img);
	for (int pass = 0; pass < 2; pass++) {
		struct kmm_error *e = NULL;
		char local_why[200] = "";
		uint64_t tag;
		int r;

		pthread_mutex_lock(&mic_reconciler_state(op)->lock);
		st = images_entry(mic_reconciler_state(op)->images, key, sizeof(*st));
		if (!st) {
			pthread_mutex_unlock(&mic_reconciler_state(op)->lock);
			*ret_retry_ms = CHECK_QUEUE_FULL_RETRY_MS;
			*ret_unknown = true;
			return 0;
		}
		if (st->pending && now - st->pending_since_ms < CHECK_STALE_MS) {
			add_waiter(op, key, mic);
			pthread_mutex_unlock(&mic_reconciler_state(op)->lock);
			*ret_retry_ms = CHECK_STALE_MS - (now - st->pending_since_ms);
			*ret_unknown = true;
			return 0;
		}
		if (st->checked && !st->pending && (st->exists == 1 || now < st->next_check_ms)) {
			exists = st->exists;
			if (exists == 1) {
				why_changed = set_why(op, mic, img->image, NULL);
			} else {
				if (exists == 0)
					status_text(why, sizeof(why), "image %s does not exist",
						    img->image);
				else
					status_text(why, sizeof(why), "image %s: %s", img->image,
						    st->why);
				why_changed = set_why(op, mic, img->image, why);
				*ret_retry_ms = st->next_check_ms - now;
			}
			pthread_mutex_unlock(&mic_reconciler_state(op)->lock);
			break;
		}
		if (pass == 1) { /* a local verdict was just recorded; cannot happen twice */
			pthread_mutex_unlock(&mic_reconciler_state(op)->lock);
			*ret_retry_ms = CHECK_QUEUE_FULL_RETRY_MS;
			*ret_unknown = true;
			return 0;
		}
		/* Ours to ask: claim it so other MICs with this image wait for this check. */
		tag = ++mic_reconciler_state(op)->check_tag;
		st->pending = true;
		st->tag = tag;
		st->pending_since_ms = now;
		add_waiter(op, key, mic);
		pthread_mutex_unlock(&mic_reconciler_state(op)->lock);

		r = submit_check(op, mic, img, key, tag, local_why, sizeof(local_why), &e);
		if (r == 0) {
			*ret_retry_ms = CHECK_STALE_MS;
			*ret_unknown = true;
			return 0;
		}
		if (r == -EAGAIN) {
			pthread_mutex_lock(&mic_reconciler_state(op)->lock);
			if (st == kmm_hashmap_get(mic_reconciler_state(op)->images, key) &&
			    st->tag == tag)
				st->pending = false;
			pthread_mutex_unlock(&mic_reconciler_state(op)->lock);
			kmm_op_log(op, KMM_LOG_WARN,
				   "too many image checks waiting, retrying later", "controller",
				   "mic", "image", img->image, NULL);
			*ret_retry_ms = CHECK_QUEUE_FULL_RETRY_MS;
			*ret_unknown = true;
			return 0;
		}
		if (e)
			kmm_op_log(op, KMM_LOG_DEBUG, "image check failed", "controller", "mic",
				   "image", img->image, "error", kmm_error_message(e), NULL);
		record_verdict(op, key, tag, r, e, local_why[0] ? local_why : NULL);
		kmm_error_free(e);
	}
	/*
	 * An unknown verdict leaves the MIC's status as it was, so nothing else
	 * would show the Module (same name) why its image is not known yet.
	 */
	if (exists < 0 && why_changed) {
		char mkey[512];

		snprintf(mkey, sizeof(mkey), "%s/%s", mic->namespace, mic->name);
		kmm_op_ctl_enqueue(op->ctl[KMM_OP_MODULE], mkey);
		kmm_op_log(op, KMM_LOG_WARN, "cannot check image", "controller", "mic", "key", mkey,
			   "reason", why, NULL);
	}
	*ret_unknown = exists < 0;
	return exists > 0;
}

static void pull_key(char *key, size_t size, const struct kmm_image_config *mic, const char *image);

/* A new imageRebuildTriggerGeneration: every image is asked about afresh. */
static void forget_images(struct kmm_op_engine *op, const struct kmm_image_config *mic)
{
	char key[1024];

	pthread_mutex_lock(&mic_reconciler_state(op)->lock);
	for (size_t i = 0; i < mic->n_images; i++) {
		cache_key(key, sizeof(key), mic, &mic->images[i]);
		free(kmm_hashmap_remove(mic_reconciler_state(op)->images, key));
		free(kmm_hashmap_remove(mic_reconciler_state(op)->waiters, key));
		pull_key(key, sizeof(key), mic, mic->images[i].image);
		free(kmm_hashmap_remove(mic_reconciler_state(op)->pulls, key));
		set_why(op, mic, mic->images[i].image, NULL);
	}
	pthread_mutex_unlock(&mic_reconciler_state(op)->lock);
}

/* ---- states ---- */

static const char *mic_state(const struct kmm_image_config *mic, const char *image)
{
	for (size_t i = 0; i < mic->n_states; i++)
		if (mic->states[i].image && strcmp(mic->states[i].image, image) == 0)
			return mic->states[i].status;
	return NULL;
}

/* The MBSC's result for image under its current action, or NULL. */
static const char *mbsc_result(const struct kmm_image_config *mbsc, const char *image,
			       const char **ret_action)
{
	const char *action = NULL;

	if (!mbsc)
		return NULL;
	for (size_t i = 0; i < mbsc->n_images; i++)
		if (strcmp(mbsc->images[i].image ?: "", image) == 0)
			action = mbsc->images[i].action;
	if (!action)
		return NULL;
	for (size_t i = 0; i < mbsc->n_states; i++) {
		const struct kmm_image_state *s = &mbsc->states[i];

		if (s->image && s->action && strcmp(s->image, image) == 0 &&
		    strcmp(s->action, action) == 0) {
			*ret_action = action;
			return s->status;
		}
	}
	return NULL;
}

static bool is(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

struct mic_run {
	struct kmm_op_engine *op;
	const struct kmm_image_config *mic;
	const struct kmm_image_config *mbsc; /* NULL when none (or deleted) */
	int64_t retry_ms;
	json_t *pull_pods; /* imageCheck: pullPod: this MIC's pull pods */
	json_t *pull_done; /* ... read this time: {name, uid}, deleted after the status */
};

static void want_retry(struct mic_run *s, int64_t ms)
{
	if (ms > 0 && (s->retry_ms == 0 || ms < s->retry_ms))
		s->retry_ms = ms;
}

/* ---- pull pods (imageCheck: pullPod) ---- */

/*
 * Opt-in, for clusters where the nodes' container runtime can reach the
 * registry (mirrors, node credentials) but the operator cannot: a pod runs
 * the kmod image itself, and its fate says whether the image exists. Like
 * upstream the container runs `/bin/sh -c "exit 0"`, so an image without a
 * shell (FROM scratch) fails here: such images need the registry check.
 */

#define PULL_POD_STUCK_MS 600000 /* a pod neither pulling nor failing: given up after this */
#define PULL_POD_CACHE_WAIT_MS 10000

enum pull_verdict {
	PULL_EXISTS,
	PULL_MISSING,
	PULL_FAILED,
	PULL_WAITING
};

struct pull_state {
	int failures;
	enum pull_verdict last; /* of the last pod read */
	int64_t next_pod_ms;	/* no new pod before (backoff after a miss) */
	int64_t created_ms;	/* a pod asked for, not yet seen in the cache */
	int64_t seen_ms;	/* when the current pod was first seen */
	bool exists;		/* a pod succeeded: no other pod until the state is forgotten */
	char uid[64];		/* the current pod's */
};

static int64_t backoff_ms(int failures)
{
	int64_t d = (int64_t)IMAGE_RECHECK_MIN_MS << (failures < 6 ? failures : 6);

	return d > IMAGE_RECHECK_MAX_MS ? IMAGE_RECHECK_MAX_MS : d;
}

static void pull_key(char *key, size_t size, const struct kmm_image_config *mic, const char *image)
{
	snprintf(key, size, "%s/%s|%s", mic->namespace, mic->name, image);
}

static struct pull_state *pull_state(struct kmm_op_engine *op, const struct kmm_image_config *mic,
				     const char *image)
{
	char key[1024];
	struct pull_state *st;

	pull_key(key, sizeof(key), mic, image);
	pthread_mutex_lock(&mic_reconciler_state(op)->lock);
	st = images_entry(mic_reconciler_state(op)->pulls, key, sizeof(*st));
	pthread_mutex_unlock(&mic_reconciler_state(op)->lock);
	return st;
}

static const char *pod_image(const json_t *pod)
{
	return str(json_array_get(json_object_get(json_object_get(pod, "spec"), "containers"), 0),
		   "image");
}

/* This MIC's pull pods in the cache (DOM copies), but not those already read. */
static json_t *owned_pull_pods(struct mic_run *s)
{
	struct kmm_obj **objs = NULL;
	size_t n = 0;
	json_t *out = json_array();

	if (!out || kmm_informer_list(s->op->cache[KMM_OP_CACHE_PULLPODS], &objs, &n) < 0)
		return out;
	for (size_t i = 0; i < n; i++) {
		const struct kmm_obj *o = objs[i];

		if (is(kmm_obj_str(o, "metadata.namespace"), s->mic->namespace) &&
		    is(kmm_obj_label(o, KMM_LABEL_IMAGE_OWNER), s->mic->name) &&
		    !kmm_obj_str(o, "metadata.deletionTimestamp") &&
		    !kmm_op_keyset_contains(mic_reconciler_state(s->op)->pullpods_done,
					    kmm_obj_str(o, "metadata.uid") ?: ""))
			json_array_append_new(out, kmm_obj_to_json(o));
	}
	kmm_obj_array_free(objs, n);
	return out;
}

static bool pull_error(const char *reason)
{
	static const char *const errs[] = { "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
					    "ErrImageNeverPull", NULL };

	for (size_t i = 0; reason && errs[i]; i++)
		if (strcmp(reason, errs[i]) == 0)
			return true;
	return false;
}

/* Why a pod that ended without success did, from the kubelet's words. */
static void failed_why(const json_t *pod, char *buf, size_t size)
{
	const json_t *st = json_object_get(pod, "status");
	const json_t *cs = json_array_get(json_object_get(st, "containerStatuses"), 0);
	const json_t *term = json_object_get(json_object_get(cs, "state"), "terminated");

	if (term)
		snprintf(buf, size, "%s (exit code %lld)%s%s", str(term, "reason") ?: "terminated",
			 (long long)json_integer_value(json_object_get(term, "exitCode")),
			 str(term, "message") ? ": " : "", str(term, "message") ?: "");
	else
		snprintf(buf, size, "%s%s%s", str(st, "reason") ?: "no reason given",
			 str(st, "message") ? ": " : "", str(st, "message") ?: "");
}

static int create_pull_pod(struct mic_run *s, const struct kmm_module_image_spec *img,
			   struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_kube_pods, s->mic->namespace, NULL, NULL };
	_cleanup_json_ json_t *pod = NULL;

	if (kmm_op_pull_pod(s->mic, img, s->op->cfg.worker_image, &pod, err) < 0 ||
	    kmm_op_create(&s->op->api, &t, pod, NULL, err) < 0)
		return kmm_error_wrap(err, "create pull pod for %s", img->image);
	return 0;
}

/* pull_check() when img has no pull pod: the last answer, or a new pod. */
static enum pull_verdict no_pull_pod(struct mic_run *s, const struct kmm_module_image_spec *img,
				     struct pull_state *st, int64_t now, int64_t *ret_retry_ms)
{
	struct kmm_error *e = NULL;

	/*
	 * The MIC status saying Exists may still be on its way to our
	 * cache, and the pod already deleted: the answer stands.
	 */
	if (st->exists)
		return PULL_EXISTS;
	if (now < st->next_pod_ms) {
		*ret_retry_ms = st->next_pod_ms - now;
		return st->last;
	}
	if (st->created_ms && now - st->created_ms < PULL_POD_CACHE_WAIT_MS) {
		*ret_retry_ms = 1000;
		return PULL_WAITING;
	}
	if (create_pull_pod(s, img, &e) < 0) {
		kmm_op_log(s->op, KMM_LOG_WARN, "cannot create pull pod", "controller", "mic",
			   "image", img->image, "error", kmm_error_message(e), NULL);
		kmm_error_free(e);
		*ret_retry_ms = backoff_ms(st->failures);
		return PULL_WAITING;
	}
	st->created_ms = now;
	*ret_retry_ms = PULL_POD_CACHE_WAIT_MS;
	return PULL_WAITING;
}

/* Reads what the pull pod of img says, creating one when there is none. */
static enum pull_verdict pull_check(struct mic_run *s, const struct kmm_module_image_spec *img,
				    int64_t *ret_retry_ms)
{
	struct pull_state *st = pull_state(s->op, s->mic, img->image);
	json_t *pod = NULL, *p;
	int64_t now = kmm_now_mono_ms(), d;
	char why[768] = "", trouble[512];
	enum pull_verdict v;
	const char *phase;
	size_t i;

	if (!st)
		return PULL_WAITING;
	json_array_foreach (s->pull_pods, i, p) {
		if (is(pod_image(p), img->image)) {
			pod = p;
			json_object_set_new(p, "kmm-chosen", json_true());
			break;
		}
	}
	d = backoff_ms(st->failures);
	if (!pod)
		return no_pull_pod(s, img, st, now, ret_retry_ms);

	const char *uid = str(json_object_get(pod, "metadata"), "uid") ?: "";
	const char *name = str(json_object_get(pod, "metadata"), "name") ?: "";
	const json_t *cs =
	    json_array_get(json_object_get(json_object_get(pod, "status"), "containerStatuses"), 0);
	const json_t *wait = json_object_get(json_object_get(cs, "state"), "waiting");
	bool until_success = is(str(json_object_get(json_object_get(pod, "metadata"), "labels"),
				    KMM_LABEL_PULL_POD_TYPE),
				"until-success");

	if (strcmp(st->uid, uid) != 0) {
		snprintf(st->uid, sizeof(st->uid), "%s", uid);
		st->seen_ms = now;
		st->created_ms = 0;
	}
	phase = str(json_object_get(pod, "status"), "phase") ?: "Pending";
	if (is(phase, "Succeeded")) {
		v = PULL_EXISTS;
	} else if (is(phase, "Failed") || is(phase, "Unknown")) {
		failed_why(pod, trouble, sizeof(trouble));
		snprintf(why, sizeof(why), "pull pod %s for image %s: %s: %s", name, img->image,
			 phase, trouble);
		v = PULL_FAILED;
	} else if (pull_error(str(wait, "reason"))) {
		/* Somebody may push the image: until-success waits, but not forever. */
		if (until_success && now - st->seen_ms < d) {
			*ret_retry_ms = d - (now - st->seen_ms);
			return PULL_WAITING;
		}
		snprintf(why, sizeof(why), "image %s cannot be pulled: %s: %s", img->image,
			 str(wait, "reason"), str(wait, "message") ?: "");
		v = PULL_MISSING;
	} else if (now - st->seen_ms >= PULL_POD_STUCK_MS) {
		if (!kmm_op_bspod_trouble(pod, trouble, sizeof(trouble)))
			snprintf(trouble, sizeof(trouble), "still %s", phase);
		snprintf(why, sizeof(why),
			 "pull pod %s for image %s did not finish within %d s: %s", name,
			 img->image, PULL_POD_STUCK_MS / 1000, trouble);
		v = PULL_FAILED;
	} else {
		*ret_retry_ms = PULL_POD_STUCK_MS - (now - st->seen_ms);
		return PULL_WAITING;
	}

	/* Read: deleted once the status is written; the next pod waits for the backoff. */
	json_array_append_new(s->pull_done, json_pack("{s:s, s:s}", "name", name, "uid", uid));
	st->last = v;
	st->uid[0] = 0;
	pthread_mutex_lock(&mic_reconciler_state(s->op)->lock);
	set_why(s->op, s->mic, img->image, v == PULL_EXISTS ? NULL : why);
	pthread_mutex_unlock(&mic_reconciler_state(s->op)->lock);
	if (v == PULL_EXISTS) {
		st->exists = true;
		st->failures = 0;
		st->next_pod_ms = 0;
	} else {
		st->failures++;
		st->next_pod_ms = now + d;
		*ret_retry_ms = d;
	}
	return v;
}

/* Deletes the pods read this time, and those for images no longer listed or doubled. */
static void delete_pull_pods(struct mic_run *s)
{
	struct kmm_kube_target t = { &kmm_kube_pods, s->mic->namespace, NULL, NULL };
	const json_t *p;
	size_t i;

	json_array_foreach (s->pull_pods, i, p) {
		const json_t *md = json_object_get(p, "metadata");

		if (!json_is_true(json_object_get(p, "kmm-chosen")))
			json_array_append_new(s->pull_done,
					      json_pack("{s:s?, s:s?}", "name", str(md, "name"),
							"uid", str(md, "uid")));
	}
	json_array_foreach (s->pull_done, i, p) {
		struct kmm_error *e = NULL;

		t.name = str(p, "name");
		if (!t.name)
			continue;
		/* Before the DELETE: its watch event may come back before the call does. */
		kmm_op_keyset_add(mic_reconciler_state(s->op)->pullpods_done, str(p, "uid") ?: "");
		if (kmm_op_delete(&s->op->api, &t, &e) < 0) {
			kmm_op_log(s->op, KMM_LOG_WARN, "cannot delete pull pod", "controller",
				   "mic", "pod", t.name, "error", kmm_error_message(e), NULL);
			kmm_op_keyset_remove(mic_reconciler_state(s->op)->pullpods_done,
					     str(p, "uid") ?: "");
			kmm_error_free(e);
		}
	}
}

/* The state of one image (static string) or NULL when unknown yet. */
static const char *image_state(struct mic_run *s, const struct kmm_module_image_spec *img)
{
	const char *cur = mic_state(s->mic, img->image);
	const char *action = NULL;
	const char *res = mbsc_result(s->mbsc, img->image, &action);
	int64_t retry = 0;
	bool unknown = false;

	if (is(res, "Failure"))
		return KMM_IMAGE_DOES_NOT_EXIST;
	if (is(res, "Success"))
		return is(action, KMM_ACTION_BUILD) && img->sign ? KMM_IMAGE_NEEDS_SIGNING
								 : KMM_IMAGE_EXISTS;
	/* A build or sign on its way, or an image known to exist: stays. */
	if (is(cur, KMM_IMAGE_EXISTS))
		return KMM_IMAGE_EXISTS;
	if (is(cur, KMM_IMAGE_NEEDS_BUILDING) && img->build)
		return KMM_IMAGE_NEEDS_BUILDING;
	if (is(cur, KMM_IMAGE_NEEDS_SIGNING) && img->sign)
		return KMM_IMAGE_NEEDS_SIGNING;
	if (s->pull_pods) {
		switch (pull_check(s, img, &retry)) {
		case PULL_EXISTS:
			return KMM_IMAGE_EXISTS;
		case PULL_MISSING:
			break;
		case PULL_FAILED:
			/* The image may be there (e.g. no /bin/sh): a build would not help. */
			want_retry(s, retry);
			return KMM_IMAGE_DOES_NOT_EXIST;
		case PULL_WAITING:
			unknown = true;
			break;
		}
	} else if (image_exists(s->op, s->mic, img, &unknown, &retry)) {
		return KMM_IMAGE_EXISTS;
	}
	if (unknown) {
		want_retry(s, retry);
		return is(cur, KMM_IMAGE_DOES_NOT_EXIST) ? KMM_IMAGE_DOES_NOT_EXIST : NULL;
	}
	if (img->build)
		return KMM_IMAGE_NEEDS_BUILDING;
	if (img->sign)
		return KMM_IMAGE_NEEDS_SIGNING;
	want_retry(s, retry);
	return KMM_IMAGE_DOES_NOT_EXIST;
}

/* Tells the owning Module, once per transition, that an image is missing for good. */
static void missing_event(struct mic_run *s, const struct kmm_module_image_spec *img)
{
	char key[512], msg[1024];
	_cleanup_obj_unref_ struct kmm_obj *mod = NULL;
	struct kmm_error *e = NULL;

	if (!s->op->cache[KMM_OP_CACHE_MODULES])
		return; /* the hub: a MIC of a ManagedClusterModule, no Module */
	snprintf(key, sizeof(key), "%s/%s", s->mic->namespace, s->mic->name);
	mod = kmm_informer_get(s->op->cache[KMM_OP_CACHE_MODULES], key);
	if (!mod)
		return;
	snprintf(msg, sizeof(msg),
		 "image %s (kernel %s) does not exist and the Module has no build or sign for it; "
		 "checking again with backoff",
		 img->image, img->kernel_version ?: "?");
	if (kmm_op_ns_event(s->op, KMM_API_VERSION, "Module", s->mic->namespace, s->mic->name,
			    kmm_obj_str(mod, "metadata.uid"), "Warning", "ImageDoesNotExist", msg,
			    NULL, &e) < 0)
		kmm_op_log(s->op, KMM_LOG_WARN, "cannot record event", "controller", "mic", "key",
			   key, "error", kmm_error_message(e), NULL);
	kmm_error_free(e);
}

/* ---- the MBSC ---- */

json_t *kmm_op_image_config_spec_normalized(const char *kind, const json_t *spec)
{
	_cleanup_(kmm_image_config_freep) struct kmm_image_config *c = NULL;
	_cleanup_json_ json_t *obj = NULL, *out = NULL;

	obj = json_pack("{s:s, s:s, s:{s:s, s:s}, s:O}", "apiVersion", KMM_API_VERSION, "kind",
			kind, "metadata", "name", "x", "namespace", "x", "spec", spec);
	if (!obj || kmm_image_config_from_json(obj, 0, &c, NULL) < 0)
		return NULL;
	out = kmm_image_config_to_json(c);
	return json_incref(json_object_get(out, "spec"));
}

static const char *existing_action(const struct kmm_image_config *mbsc, const char *image)
{
	if (!mbsc)
		return NULL;
	for (size_t i = 0; i < mbsc->n_images; i++)
		if (strcmp(mbsc->images[i].image ?: "", image) == 0)
			return mbsc->images[i].action;
	return NULL;
}

/* The action an image's MBSC entry should carry, or NULL for no entry. */
static const char *wanted_action(struct mic_run *s, const struct kmm_module_image_spec *img,
				 const char *state)
{
	const char *have = existing_action(s->mbsc, img->image);

	if (is(state, KMM_IMAGE_NEEDS_BUILDING))
		return img->build ? KMM_ACTION_BUILD : img->sign ? KMM_ACTION_SIGN : NULL;
	if (is(state, KMM_IMAGE_NEEDS_SIGNING))
		return img->sign ? KMM_ACTION_SIGN : NULL;
	/* Done or failed: keep the entry (its result, its failed pod, its signing key). */
	if (is(have, KMM_ACTION_BUILD) && img->build)
		return have;
	if (is(have, KMM_ACTION_SIGN) && img->sign)
		return have;
	return NULL;
}

static int sync_mbsc(struct mic_run *s, const json_t *mic_json, const char *const *states,
		     struct kmm_error **err)
{
	const struct kmm_image_config *mic = s->mic;
	const json_t *spec_images = json_object_get(json_object_get(mic_json, "spec"), "images");
	_cleanup_json_ json_t *images = json_array(), *spec = NULL, *want = NULL, *have = NULL;
	_cleanup_json_ json_t *obj = NULL;
	struct kmm_kube_target t = { &kmm_op_mbscs, mic->namespace, NULL, NULL };
	int r;

	if (!images)
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < mic->n_images; i++) {
		const char *action = wanted_action(s, &mic->images[i], states[i]);
		const json_t *src = json_array_get(spec_images, i);
		json_t *e;

		if (!action || !src)
			continue;
		e = json_deep_copy(src);
		if (!e || json_object_set_new(e, "action", json_string(action)) < 0 ||
		    json_array_append_new(images, e) < 0)
			return kmm_error_make(err, ENOMEM, "out of memory");
	}
	if (json_array_size(images) == 0 && !s->mbsc)
		return 0;
	spec = json_pack("{s:O, s:b}", "images", images, "pushBuiltImage", mic->push_built_image);
	if (!spec)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (mic->image_repo_secret)
		json_object_set_new(spec, "imageRepoSecret",
				    json_pack("{s:s}", "name", mic->image_repo_secret));
	if (mic->n_tolerations)
		json_object_set_new(spec, "tolerations",
				    kmm_tolerations_to_json(mic->tolerations, mic->n_tolerations));
	want = kmm_op_image_config_spec_normalized("ModuleBuildSignConfig", spec);
	if (s->mbsc) {
		_cleanup_json_ json_t *cur = kmm_image_config_to_json(s->mbsc), *patch = NULL;

		have = json_incref(json_object_get(cur, "spec"));
		if (want && have && json_equal(want, have))
			return 0;
		/* Keys we no longer want are nulled: a merge patch keeps absent ones. */
		patch = json_pack("{s:O}", "spec", spec);
		if (!patch)
			return kmm_error_make(err, ENOMEM, "out of memory");
		if (!mic->image_repo_secret)
			json_object_set_new(json_object_get(patch, "spec"), "imageRepoSecret",
					    json_null());
		if (!mic->n_tolerations)
			json_object_set_new(json_object_get(patch, "spec"), "tolerations",
					    json_null());
		t.name = mic->name;
		r = kmm_op_patch(&s->op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err);
		return r < 0 ? kmm_error_wrap(err, "update MBSC") : 0;
	}
	obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:[{s:s, s:s, s:s, s:s, s:b, s:b}]}, s:O}",
			"apiVersion", KMM_API_VERSION, "kind", "ModuleBuildSignConfig", "metadata",
			"name", mic->name, "namespace", mic->namespace, "ownerReferences",
			"apiVersion", KMM_API_VERSION, "kind", "ModuleImagesConfig", "name",
			mic->name, "uid", str(mic->metadata, "uid") ?: "", "controller", 1,
			"blockOwnerDeletion", 1, "spec", spec);
	if (!obj)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = kmm_op_create(&s->op->api, &t, obj, NULL, err);
	if (r == -EEXIST) { /* the cache is behind (or a deleted one lingers): next time */
		kmm_error_free(*err);
		*err = NULL;
		want_retry(s, 1000);
		return 0;
	}
	return r < 0 ? kmm_error_wrap(err, "create MBSC") : 0;
}

/* ---- status ---- */

static int patch_status(struct mic_run *s, const char *const *states, bool *ret_changed,
			struct kmm_error **err)
{
	const struct kmm_image_config *mic = s->mic;
	struct kmm_kube_target t = { &kmm_op_mics, mic->namespace, mic->name, "status" };
	_cleanup_json_ json_t *arr = json_array(), *old = json_array(), *patch = NULL;
	bool gen = mic->has_image_rebuild_trigger_generation &&
		   (!mic->has_status_trigger_generation ||
		    mic->status_trigger_generation != mic->image_rebuild_trigger_generation);

	if (!arr || !old)
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < mic->n_images; i++)
		if (states[i])
			json_array_append_new(arr,
					      json_pack("{s:s, s:s}", "image", mic->images[i].image,
							"status", states[i]));
	for (size_t i = 0; i < mic->n_states; i++)
		json_array_append_new(old, json_pack("{s:s?, s:s?}", "image", mic->states[i].image,
						     "status", mic->states[i].status));
	*ret_changed = !kmm_json_same(arr, old);
	if (!*ret_changed && !gen)
		return 0;
	patch = json_pack("{s:{s:O}}", "status", "imagesStates", arr);
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (mic->has_image_rebuild_trigger_generation)
		json_object_set_new(json_object_get(patch, "status"),
				    "imageRebuildTriggerGeneration",
				    json_integer(mic->image_rebuild_trigger_generation));
	if (kmm_op_patch(&s->op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err) < 0)
		return kmm_error_wrap(err, "patch status");
	return 0;
}

/* ---- 1. imageRebuildTriggerGeneration ---- */

static int rebuild_trigger(struct mic_run *s, const struct kmm_obj *mbsc_obj,
			   struct kmm_error **err)
{
	const struct kmm_image_config *mic = s->mic;
	struct kmm_kube_target t = { &kmm_op_mbscs, mic->namespace, mic->name, NULL };
	struct kmm_kube_target st = { &kmm_op_mics, mic->namespace, mic->name, "status" };
	_cleanup_json_ json_t *patch = NULL;

	if (mbsc_obj) {
		if (kmm_op_delete(&s->op->api, &t, err) < 0)
			return kmm_error_wrap(err, "delete MBSC for a rebuild");
		kmm_op_keyset_add(mic_reconciler_state(s->op)->mbscs_deleted,
				  kmm_obj_str(mbsc_obj, "metadata.uid") ?: "");
	}
	forget_images(s->op, mic);
	patch =
	    json_pack("{s:{s:[], s:I}}", "status", "imagesStates", "imageRebuildTriggerGeneration",
		      (json_int_t)mic->image_rebuild_trigger_generation);
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (kmm_op_patch(&s->op->api, &st, KMM_KUBE_PATCH_MERGE, patch, NULL, err) < 0)
		return kmm_error_wrap(err, "reset status");
	kmm_op_log(s->op, KMM_LOG_INFO,
		   "imageRebuildTriggerGeneration changed: images checked afresh", "controller",
		   "mic", "key", mic->name, "namespace", mic->namespace, NULL);
	return 0;
}

/* ---- the reconcile ---- */

static int64_t mic_reconcile(struct kmm_op_engine *op, void *state, const char *key,
			     struct kmm_error **err)
{
	_cleanup_obj_unref_ struct kmm_obj *obj =
	    kmm_informer_get(op->cache[KMM_OP_CACHE_MICS], key);
	_cleanup_obj_unref_ struct kmm_obj *mobj = NULL;
	_cleanup_(kmm_image_config_freep) struct kmm_image_config *mic = NULL, *mbsc = NULL;
	_cleanup_free_ const char **states = NULL;
	_cleanup_json_ json_t *pull_pods = NULL, *pull_done = NULL;
	struct mic_run s = { .op = op };
	bool changed = false;
	int r;

	if (!obj)
		return 0;
	r = kmm_image_config_from_json(kmm_obj_json(obj), 0, &mic, err);
	if (r < 0)
		return kmm_error_wrap(err, "reconcile MIC %s", key);
	if (!mic->namespace || json_object_get(mic->metadata, "deletionTimestamp"))
		return 0;
	s.mic = mic;
	mobj = kmm_informer_get(op->cache[KMM_OP_CACHE_MBSCS], key);
	if (mobj && kmm_op_keyset_contains(mic_reconciler_state(op)->mbscs_deleted,
					   kmm_obj_str(mobj, "metadata.uid") ?: ""))
		kmm_obj_unref(TAKE_PTR(mobj)); /* deleted by us, the cache lags */
	if (mic->has_image_rebuild_trigger_generation &&
	    (!mic->has_status_trigger_generation ||
	     mic->status_trigger_generation != mic->image_rebuild_trigger_generation) &&
	    mic->n_states > 0) {
		r = rebuild_trigger(&s, mobj, err);
		return r < 0 ? kmm_error_wrap(err, "reconcile MIC %s", key) : 0;
	}
	if (mobj && kmm_image_config_from_json(kmm_obj_json(mobj), 0, &mbsc, err) < 0)
		return kmm_error_wrap(err, "reconcile MIC %s: MBSC", key);
	s.mbsc = mbsc;
	if (op->cache[KMM_OP_CACHE_PULLPODS]) {
		s.pull_pods = pull_pods = owned_pull_pods(&s);
		s.pull_done = pull_done = json_array();
		if (!pull_pods || !pull_done)
			return kmm_error_make(err, ENOMEM, "out of memory");
	}

	states = calloc(mic->n_images + 1, sizeof(*states));
	if (!states)
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < mic->n_images; i++) {
		const struct kmm_module_image_spec *img = &mic->images[i];

		if (!img->image)
			continue;
		states[i] = image_state(&s, img);
		if (is(states[i], KMM_IMAGE_DOES_NOT_EXIST) && !img->build && !img->sign &&
		    !is(mic_state(mic, img->image), KMM_IMAGE_DOES_NOT_EXIST))
			missing_event(&s, img);
	}
	r = sync_mbsc(&s, kmm_obj_json(obj), states, err);
	if (r >= 0)
		r = patch_status(&s, states, &changed, err);
	if (r < 0)
		return kmm_error_wrap(err, "reconcile MIC %s", key);
	if (s.pull_pods)
		delete_pull_pods(&s);
	return s.retry_ms;
}

/* ---- watches: what queues a MIC ---- */

static void enqueue_mic(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			const struct kmm_obj *obj, enum kmm_op_event ev)
{
	kmm_op_ctl_enqueue(op->ctl[KMM_OP_MIC], kmm_obj_key(obj));
}

/* An MBSC has its MIC's name: a new one, or a status that moved, is the MIC's news. */
static bool status_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			   const struct kmm_obj *obj)
{
	return kmm_op_status_differs(old, obj);
}

/* A pull pod changed: its MIC (named by the image-owner label) reads it. */
static void enqueue_from_pull_pod(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
				  const struct kmm_obj *obj, enum kmm_op_event ev)
{
	struct mic_state *ms = state;
	const char *owner = kmm_obj_label(obj, KMM_LABEL_IMAGE_OWNER);
	char key[512];

	if (ev == KMM_OP_DELETED)
		kmm_op_keyset_remove(ms->pullpods_done, kmm_obj_str(obj, "metadata.uid") ?: "");
	if (!owner)
		return;
	snprintf(key, sizeof(key), "%s/%s", kmm_obj_str(obj, "metadata.namespace") ?: "", owner);
	kmm_op_ctl_enqueue(op->ctl[KMM_OP_MIC], key);
}

static const struct kmm_op_watch mic_watches[] = {
	{ KMM_OP_CACHE_MICS, NULL, enqueue_mic },
	{ KMM_OP_CACHE_MBSCS, status_changed, enqueue_mic },
	{ KMM_OP_CACHE_PULLPODS, NULL, enqueue_from_pull_pod },
};

/* ---- state ---- */

static void mic_state_free(void *state)
{
	struct mic_state *ms = state;

	if (!ms)
		return;
	kmm_hashmap_free(ms->images);
	kmm_hashmap_free(ms->waiters);
	kmm_hashmap_free(ms->whys);
	kmm_hashmap_free(ms->pulls);
	kmm_op_keyset_free(ms->pullpods_done);
	kmm_op_keyset_free(ms->mbscs_deleted);
	pthread_mutex_destroy(&ms->lock);
	free(ms);
}

static int mic_state_new(struct kmm_op_engine *op, void **ret_state, struct kmm_error **err)
{
	struct mic_state *ms = calloc(1, sizeof(*ms));

	if (!ms)
		return kmm_error_make(err, ENOMEM, "out of memory");
	pthread_mutex_init(&ms->lock, NULL);
	ms->images = kmm_hashmap_new(free);
	ms->waiters = kmm_hashmap_new(free);
	ms->whys = kmm_hashmap_new(free);
	ms->pulls = kmm_hashmap_new(free);
	ms->pullpods_done = kmm_op_keyset_new();
	ms->mbscs_deleted = kmm_op_keyset_new();
	if (!ms->images || !ms->waiters || !ms->whys || !ms->pulls || !ms->pullpods_done ||
	    !ms->mbscs_deleted) {
		mic_state_free(ms);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	*ret_state = ms;
	return 0;
}

const struct kmm_op_reconciler kmm_op_mic_reconciler = {
	.name = "moduleimagesconfig",
	.log_name = "mic",
	.watches = mic_watches,
	.n_watches = KMM_ARRAY_SIZE(mic_watches),
	.state_new = mic_state_new,
	.state_stop = mic_state_stop,
	.state_free = mic_state_free,
	.reconcile = mic_reconcile,
	/* The hub checks (and has built) the images of its ManagedClusterModules. */
	.modes = KMM_OP_MODE_STANDALONE | KMM_OP_MODE_SPOKE | KMM_OP_MODE_HUB,
};
