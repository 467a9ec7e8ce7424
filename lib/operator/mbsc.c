/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ModuleBuildSignConfig reconciler (reference §1.4, §3.4, §3.12): one build
 * or sign pod per spec.images[] entry, rendered by kmm/operator-buildsign.h. Reads
 * top to bottom:
 *
 *   1. per entry: a recorded Success stays (a sign entry whose key or cert
 *      Secret changed since is signed again, once; those Secrets, like the
 *      Dockerfile of a build not yet done, are read again every
 *      KMM_OP_INPUT_RECHECK_MS); otherwise render the pod
 *      and look at the one of that name: none -> create it; another hash
 *      (inputs changed) -> delete it, the next pass creates the new one;
 *      Succeeded -> Success; Failed -> Failure, and the pod is kept, so a
 *      failure is not retried until its inputs change or someone deletes it;
 *   2. per pod: on completion one <Type>Succeeded / <Type>Failed event and
 *      the job-event finalizer released; a deleted pod's gc-delay finalizer
 *      released once job.gcDelay has passed (at once unless it succeeded);
 *      pods of entries no longer in the spec deleted;
 *   3. the signing digests (annotation) and the status written, then the
 *      Succeeded pods whose result is recorded deleted.
 *
 * Events go to the MBSC with upstream's reasons (BuildimageCreated, ...) and
 * annotations kernel-version and pod-name, and to the Module of the same
 * name with the documented ones (BuildCreated, BuildSucceeded, ...).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "kmm/shared-json.h"
#include "kmm/shared-log.h"
#include "engine-internal.h"

/* What the MBSC reconciler keeps between reconciles. */
struct mbsc_state {
	struct kmm_op_keyset *bspods_created; /* "ns/name" created, not yet in the cache */
};

static struct mbsc_state *mbsc_state(struct kmm_op_engine *op)
{
	return op->state[KMM_OP_MBSC];
}

/* Annotation on the MBSC: image -> "<key digest>:<cert digest>" of its last good sign. */
#define KMM_ANN_SIGNED_WITH "kmm.node.kubernetes.io/signed-with"
/* Annotation on a pod: the <Type>Pending event about why it cannot start was sent. */
#define KMM_ANN_PENDING_EVENT "kmm.node.kubernetes.io/pending-event-sent"

static bool is(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* ---- events ---- */

int kmm_op_ns_event(struct kmm_op_engine *op, const char *api_version, const char *kind,
		    const char *ns, const char *name, const char *uid, const char *type,
		    const char *reason, const char *message, const json_t *annotations,
		    struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_kube_events, ns, NULL, NULL };
	_cleanup_json_ json_t *ev = NULL;
	char now[64], prefix[256];
	time_t tt = time(NULL);
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(prefix, sizeof(prefix), "%s.", name);
	ev = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:s, s:s, s:s*}, s:s, s:s, s:s, "
		       "s:{s:s}, s:s, s:s, s:i, s:s}",
		       "apiVersion", "v1", "kind", "Event", "metadata", "generateName", prefix,
		       "namespace", ns, "involvedObject", "apiVersion", api_version, "kind", kind,
		       "name", name, "namespace", ns, "uid", uid, "reason", reason, "message",
		       message, "type", type, "source", "component", "kmm", "firstTimestamp", now,
		       "lastTimestamp", now, "count", 1, "reportingComponent", "kmm");
	if (!ev)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (annotations && json_object_set(json_object_get(ev, "metadata"), "annotations",
					   (json_t *)annotations) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	return kmm_op_create(&op->api, &t, ev, NULL, err);
}

/* ---- one reconcile's state ---- */

struct bspod {
	const json_t *j;
	const char *name;
	const char *phase;
	bool deleting;
	bool used;     /* an entry of the spec owns it */
	bool recorded; /* Succeeded and its Success is in the status we write */
};

struct mbsc_run {
	struct kmm_op_engine *op;
	char ns[256], name[256];
	const struct kmm_image_config *mbsc; /* NULL when gone */
	struct bspod *pods;
	size_t n_pods;
	json_t *status;	     /* new status.images */
	json_t *signed_with; /* new signed-with annotation (object) */
	json_t *digests;     /* "secret|field" -> digest, read during this reconcile */
	int64_t retry_ms;
	struct kmm_error *errs;
};

static void note_error(struct mbsc_run *s, struct kmm_error *e)
{
	if (!s->errs)
		s->errs = e;
	else
		kmm_error_free(e);
}

static void want_retry(struct mbsc_run *s, int64_t ms)
{
	if (ms > 0 && (s->retry_ms == 0 || ms < s->retry_ms))
		s->retry_ms = ms;
}

/* Reason word of upstream's events: the label value title-cased ("Buildimage"). */
static const char *upstream_word(const char *action)
{
	return is(action, KMM_ACTION_SIGN) ? "Signimage" : "Buildimage";
}

static const char *module_word(const char *action)
{
	return is(action, KMM_ACTION_SIGN) ? "Sign" : "Build";
}

/* <Type><what> on the MBSC and <Build|Sign><what> on the Module (best effort). */
static void pod_event(struct mbsc_run *s, const char *action, const char *pod, const char *kernel,
		      const char *type, const char *what, const char *message)
{
	_cleanup_obj_unref_ struct kmm_obj *mbsc = NULL, *mod = NULL;
	_cleanup_json_ json_t *ann =
	    json_pack("{s:s, s:s}", "kernel-version", kernel ?: "", "pod-name", pod);
	char key[600], reason[64];
	struct kmm_error *e = NULL;

	snprintf(key, sizeof(key), "%s/%s", s->ns, s->name);
	mbsc = kmm_informer_get(s->op->cache[KMM_OP_CACHE_MBSCS], key);
	mod = kmm_informer_get(s->op->cache[KMM_OP_CACHE_MODULES], key);
	snprintf(reason, sizeof(reason), "%s%s", upstream_word(action), what);
	if (mbsc && kmm_op_ns_event(s->op, KMM_API_VERSION, "ModuleBuildSignConfig", s->ns, s->name,
				    kmm_obj_str(mbsc, "metadata.uid"), type, reason, message, ann,
				    &e) < 0) {
		kmm_op_log(s->op, KMM_LOG_WARN, "cannot record event", "controller", "mbsc", "key",
			   key, "error", kmm_error_message(e), NULL);
		kmm_error_free(TAKE_PTR(e));
	}
	snprintf(reason, sizeof(reason), "%s%s", module_word(action), what);
	if (mod &&
	    kmm_op_ns_event(s->op, KMM_API_VERSION, "Module", s->ns, s->name,
			    kmm_obj_str(mod, "metadata.uid"), type, reason, message, ann, &e) < 0) {
		kmm_op_log(s->op, KMM_LOG_WARN, "cannot record event", "controller", "mbsc", "key",
			   key, "error", kmm_error_message(e), NULL);
		kmm_error_free(e);
	}
}

/* ---- inputs: the Dockerfile and the signing digests ---- */

static int dockerfile(struct mbsc_run *s, const struct kmm_module_image_spec *img, char **ret,
		      struct kmm_error **err)
{
	const char *cm = img->build ? img->build->dockerfile_config_map : NULL;
	struct kmm_kube_target t = { &kmm_kube_configmaps, s->ns, cm, NULL };
	_cleanup_json_ json_t *obj = NULL;
	const char *text;

	if (!cm)
		return kmm_error_make(err, EINVAL, "image %s: build has no dockerfileConfigMap",
				      img->image);
	if (kmm_op_get(&s->op->api, &t, &obj, err) < 0)
		return kmm_error_wrap(err, "Dockerfile ConfigMap %s/%s", s->ns, cm);
	text = str(json_object_get(obj, "data"), "dockerfile");
	if (!text)
		return kmm_error_make(err, EINVAL, "ConfigMap %s/%s has no key `dockerfile`", s->ns,
				      cm);
	*ret = strdup(text);
	return *ret ? 0 : kmm_error_make(err, ENOMEM, "out of memory");
}

static char *sha256_hex(const char *data)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	char *hex;

	if (EVP_Digest(data, strlen(data), md, &n, EVP_sha256(), NULL) != 1)
		return NULL;
	hex = malloc((size_t)n * 2 + 1);
	if (!hex)
		return NULL;
	for (unsigned int i = 0; i < n; i++)
		snprintf(hex + i * 2, 3, "%02x", md[i]);
	return hex;
}

/*
 * Hex sha256 of a Secret's data[field] (its base64 text: the same content
 * gives the same text), read by name: the operator keeps no Secret cache
 * (docs/operator.md, "Secrets and ConfigMaps"). One GET per Secret and
 * field per reconcile, however many images (kernels) name it.
 */
static int secret_digest(struct mbsc_run *s, const char *name, const char *field, char **ret,
			 struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_kube_secrets, s->ns, name, NULL };
	_cleanup_json_ json_t *sec = NULL;
	char key[600];
	const char *data, *seen;
	char *hex;

	if (!name)
		return kmm_error_make(err, EINVAL, "sign has no %sSecret", field);
	snprintf(key, sizeof(key), "%s|%s", name, field);
	seen = str(s->digests, key);
	if (seen) {
		*ret = strdup(seen);
		return *ret ? 0 : kmm_error_make(err, ENOMEM, "out of memory");
	}
	if (kmm_op_get(&s->op->api, &t, &sec, err) < 0)
		return kmm_error_wrap(err, "%s Secret %s/%s", field, s->ns, name);
	data = str(json_object_get(sec, "data"), field);
	if (!data)
		return kmm_error_make(err, EINVAL, "Secret %s/%s has no key `%s`", s->ns, name,
				      field);
	hex = sha256_hex(data);
	if (!hex || json_object_set_new(s->digests, key, json_string(hex)) < 0) {
		free(hex);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	*ret = hex;
	return 0;
}

/* ---- why a pod does not start ---- */

bool kmm_op_bspod_trouble(const json_t *pod, char *buf, size_t size)
{
	const json_t *st = json_object_get(pod, "status");
	const json_t *cs = json_array_get(json_object_get(st, "containerStatuses"), 0);
	const json_t *wait = json_object_get(json_object_get(cs, "state"), "waiting");
	const char *why = str(wait, "reason");
	const json_t *c;
	size_t i;

	if (!is(str(st, "phase") ?: "Pending", "Pending"))
		return false;
	json_array_foreach (json_object_get(st, "conditions"), i, c) {
		if (is(str(c, "type"), "PodScheduled") && is(str(c, "status"), "False")) {
			snprintf(buf, size, "%s: %s", str(c, "reason") ?: "not scheduled",
				 str(c, "message") ?: "");
			return true;
		}
	}
	if (why && strcmp(why, "ContainerCreating") != 0 && strcmp(why, "PodInitializing") != 0) {
		snprintf(buf, size, "%s: %s", why, str(wait, "message") ?: "");
		return true;
	}
	return false;
}

/*
 * A pod that cannot start (unschedulable: no node matches build.selector;
 * its image cannot be pulled) is not failed by the kubelet: say so once, with
 * a Warning event, so it does not wait unnoticed.
 */
static void pending_event(struct mbsc_run *s, const struct kmm_module_image_spec *img,
			  const struct bspod *p)
{
	struct kmm_kube_target t = { &kmm_kube_pods, s->ns, p->name, NULL };
	_cleanup_json_ json_t *patch = NULL;
	struct kmm_error *e = NULL;
	char why[512], msg[768];

	if (kmm_op_annotation(p->j, KMM_ANN_PENDING_EVENT) ||
	    !kmm_op_bspod_trouble(p->j, why, sizeof(why)))
		return;
	patch =
	    json_pack("{s:{s:{s:s}}}", "metadata", "annotations", KMM_ANN_PENDING_EVENT, "true");
	if (!patch || kmm_op_patch(&s->op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, &e) < 0) {
		note_error(s, e);
		return;
	}
	snprintf(msg, sizeof(msg), "%s pod %s cannot start: %s",
		 is(img->action, KMM_ACTION_SIGN) ? "sign" : "build", p->name, why);
	pod_event(s, img->action, p->name, img->kernel_version, "Warning", "Pending", msg);
}

/* ---- 1. entries ---- */

static struct bspod *find_pod(struct mbsc_run *s, const char *name)
{
	for (size_t i = 0; i < s->n_pods; i++)
		if (strcmp(s->pods[i].name, name) == 0)
			return &s->pods[i];
	return NULL;
}

static const char *old_status(const struct kmm_image_config *c, const char *image,
			      const char *action)
{
	for (size_t i = 0; i < c->n_states; i++)
		if (is(c->states[i].image, image) && is(c->states[i].action, action))
			return c->states[i].status;
	return NULL;
}

static void set_status(struct mbsc_run *s, const char *image, const char *action,
		       const char *status)
{
	json_array_append_new(s->status, json_pack("{s:s, s:s, s:s}", "image", image, "action",
						   action, "status", status));
}

static int render(struct mbsc_run *s, const struct kmm_module_image_spec *img, const char *kd,
		  const char *cd, json_t **ret, struct kmm_error **err)
{
	_cleanup_free_ char *df = NULL;
	struct kmm_buildsign_params p = {
		.mbsc = s->mbsc,
		.image = img,
		.module_name = s->name,
		.build_image = s->op->cfg.build_image,
		.sign_image = s->op->cfg.sign_image,
		.builder = s->op->cfg.job_builder,
		.key_digest = kd,
		.cert_digest = cd,
	};

	if (!p.build_image)
		return kmm_error_make(err, EINVAL, "RELATED_IMAGE_BUILD is not set");
	if (is(img->action, KMM_ACTION_SIGN) && !p.sign_image)
		return kmm_error_make(err, EINVAL, "RELATED_IMAGE_SIGN is not set");
	if (is(img->action, KMM_ACTION_BUILD) && dockerfile(s, img, &df, err) < 0)
		return -kmm_error_code(*err);
	p.dockerfile = df;
	return kmm_buildsign_pod(&p, ret, err);
}

static int create_pod(struct mbsc_run *s, const struct kmm_module_image_spec *img,
		      const json_t *pod, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_kube_pods, s->ns, NULL, NULL };
	const char *name = kmm_kube_meta_str(pod, "name");
	char key[600], msg[1024];
	int r;

	r = kmm_op_create(&s->op->api, &t, pod, NULL, err);
	if (r == -EEXIST) { /* the old one is still going away */
		kmm_error_free(*err);
		*err = NULL;
		want_retry(s, 1000);
		return 0;
	}
	if (r < 0)
		return kmm_error_wrap(err, "create pod %s", name);
	snprintf(key, sizeof(key), "%s/%s", s->ns, name);
	kmm_op_keyset_add(mbsc_state(s->op)->bspods_created, key);
	snprintf(msg, sizeof(msg), "%s pod %s created for image %s (kernel %s)",
		 is(img->action, KMM_ACTION_SIGN) ? "sign" : "build", name, img->image,
		 img->kernel_version ?: "?");
	pod_event(s, img->action, name, img->kernel_version, "Normal", "Created", msg);
	kmm_op_log(s->op, KMM_LOG_INFO, "pod created", "controller", "mbsc", "key", s->name,
		   "namespace", s->ns, "pod", name, NULL);
	return 0;
}

static int sync_entry(struct mbsc_run *s, const struct kmm_module_image_spec *img,
		      struct kmm_error **err)
{
	const char *action = img->action;
	bool sign = is(action, KMM_ACTION_SIGN);
	const char *was = old_status(s->mbsc, img->image, action);
	_cleanup_free_ char *kd = NULL, *cd = NULL, *pair = NULL;
	_cleanup_json_ json_t *pod = NULL;
	const char *name, *hash;
	struct bspod *p;
	int r;

	if (!is(action, KMM_ACTION_BUILD) && !sign)
		return kmm_error_make(err, EINVAL, "image %s: unknown action %s", img->image,
				      action ?: "(none)");
	/*
	 * Nothing tells us that a Secret or ConfigMap changed (no watch: see
	 * docs/operator.md, "Secrets and ConfigMaps"): look again in a while
	 * while a change would matter. A succeeded build is final.
	 */
	if (sign || !is(was, "Success"))
		want_retry(s, KMM_OP_INPUT_RECHECK_MS);
	if (sign) {
		r = secret_digest(s, img->sign ? img->sign->key_secret : NULL, "key", &kd, err);
		if (r >= 0)
			r = secret_digest(s, img->sign ? img->sign->cert_secret : NULL, "cert", &cd,
					  err);
		if (r < 0 || asprintf(&pair, "%s:%s", kd, cd) < 0)
			return r < 0 ? r : kmm_error_make(err, ENOMEM, "out of memory");
	}
	if (is(was, "Success")) {
		const char *rec = sign ? str(s->signed_with, img->image) : NULL;

		if (!sign || !rec || strcmp(rec, pair) == 0) {
			/* Done. A sign recorded before digests were kept adopts the current ones. */
			if (sign && !rec)
				json_object_set_new(s->signed_with, img->image, json_string(pair));
			set_status(s, img->image, action, "Success");
			return 0;
		}
		kmm_op_log(s->op, KMM_LOG_INFO, "signing key or certificate changed: signing again",
			   "controller", "mbsc", "key", s->name, "namespace", s->ns, "image",
			   img->image, NULL);
	}
	r = render(s, img, kd, cd, &pod, err);
	if (r < 0)
		return kmm_error_wrap(err, "image %s", img->image);
	name = kmm_kube_meta_str(pod, "name");
	hash = kmm_op_annotation(pod, KMM_ANN_LAST_HASH);
	p = name ? find_pod(s, name) : NULL;
	if (!p) {
		char key[600];

		snprintf(key, sizeof(key), "%s/%s", s->ns, name ?: "");
		if (kmm_op_keyset_contains(mbsc_state(s->op)->bspods_created, key))
			return 0; /* created a moment ago; the cache has not shown it yet */
		return create_pod(s, img, pod, err);
	}
	p->used = true;
	if (p->deleting) {
		want_retry(s, 1000);
		return 0;
	}
	if (!is(kmm_op_annotation(p->j, KMM_ANN_LAST_HASH), hash)) {
		struct kmm_kube_target t = { &kmm_kube_pods, s->ns, p->name, NULL };

		kmm_op_log(s->op, KMM_LOG_INFO, "inputs changed: replacing pod", "controller",
			   "mbsc", "key", s->name, "namespace", s->ns, "pod", p->name, NULL);
		if (kmm_op_delete(&s->op->api, &t, err) < 0)
			return kmm_error_wrap(err, "delete pod %s", p->name);
		p->deleting = true;
		return 0;
	}
	if (is(p->phase, "Succeeded")) {
		set_status(s, img->image, action, "Success");
		p->recorded = true;
		if (sign)
			json_object_set_new(s->signed_with, img->image, json_string(pair));
	} else if (is(p->phase, "Failed")) {
		set_status(s, img->image, action, "Failure");
	} else {
		pending_event(s, img, p);
	}
	return 0;
}

/* ---- 2. pods ---- */

static int64_t deleted_ago_ms(const json_t *pod)
{
	const char *ts = str(json_object_get(pod, "metadata"), "deletionTimestamp");
	struct tm tm = {};

	if (!ts || !strptime(ts, "%Y-%m-%dT%H:%M:%SZ", &tm))
		return INT64_MAX;
	return ((int64_t)time(NULL) - (int64_t)timegm(&tm)) * 1000;
}

static bool has_finalizer(const json_t *pod, const char *f)
{
	const json_t *v;
	size_t i;

	json_array_foreach (json_object_get(json_object_get(pod, "metadata"), "finalizers"), i, v)
		if (is(json_string_value(v), f))
			return true;
	return false;
}

static int drop_finalizers(struct mbsc_run *s, const struct bspod *p, bool job_event, bool gc_delay,
			   struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_kube_pods, s->ns, p->name, NULL };
	_cleanup_json_ json_t *list = json_array(), *patch = NULL;
	const json_t *v;
	size_t i;
	int r;

	json_array_foreach (json_object_get(json_object_get(p->j, "metadata"), "finalizers"), i,
			    v) {
		const char *f = json_string_value(v);

		if ((job_event && is(f, KMM_FINALIZER_JOB_EVENT)) ||
		    (gc_delay && is(f, KMM_FINALIZER_GC_DELAY)))
			continue;
		json_array_append(list, (json_t *)v);
	}
	patch = json_pack("{s:{s:O, s:s}}", "metadata", "finalizers", list, "resourceVersion",
			  str(json_object_get(p->j, "metadata"), "resourceVersion") ?: "");
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = kmm_op_patch(&s->op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err);
	if (r == -ENOENT) {
		kmm_error_free(*err);
		*err = NULL;
		return 0;
	}
	return r < 0 ? kmm_error_wrap(err, "release pod %s", p->name) : 0;
}

static void completion_message(const struct bspod *p, char *buf, size_t size)
{
	const json_t *cs = json_array_get(
	    json_object_get(json_object_get(p->j, "status"), "containerStatuses"), 0);
	const json_t *term = json_object_get(json_object_get(cs, "state"), "terminated");
	const char *kind =
	    is(kmm_op_label(p->j, KMM_LABEL_RESOURCE_TYPE), KMM_ACTION_SIGN) ? "sign" : "build";

	if (is(p->phase, "Succeeded"))
		snprintf(buf, size, "%s pod %s succeeded", kind, p->name);
	else if (term)
		snprintf(buf, size, "%s pod %s failed: exit code %d (%s)", kind, p->name,
			 (int)json_integer_value(json_object_get(term, "exitCode")),
			 str(term, "reason") ?: "Error");
	else
		snprintf(buf, size, "%s pod %s failed", kind, p->name);
}

static void pod_lifecycle(struct mbsc_run *s, struct bspod *p)
{
	bool done = is(p->phase, "Succeeded") || is(p->phase, "Failed");
	bool job = has_finalizer(p->j, KMM_FINALIZER_JOB_EVENT);
	bool gc = has_finalizer(p->j, KMM_FINALIZER_GC_DELAY);
	bool drop_job = false, drop_gc = false;
	struct kmm_error *e = NULL;

	if (job && done) {
		drop_job = true;
	} else if (job && p->deleting) {
		drop_job = true; /* never completed: nothing to report */
		done = false;
	}
	if (gc && p->deleting) {
		int64_t delay = s->op->cfg.job_gc_delay_ns / 1000000;
		int64_t ago = deleted_ago_ms(p->j);

		if (is(p->phase, "Succeeded") && ago < delay)
			want_retry(s, delay - ago);
		else
			drop_gc = true;
	}
	if (!drop_job && !drop_gc)
		return;
	if (drop_finalizers(s, p, drop_job, drop_gc, &e) < 0) {
		note_error(s, e);
		return;
	}
	if (drop_job && done) {
		char msg[512];
		const char *action = kmm_op_label(p->j, KMM_LABEL_RESOURCE_TYPE);
		bool ok = is(p->phase, "Succeeded");

		completion_message(p, msg, sizeof(msg));
		pod_event(s, action, p->name, kmm_op_label(p->j, KMM_LABEL_TARGET_KERNEL),
			  ok ? "Normal" : "Warning", ok ? "Succeeded" : "Failed", msg);
	}
}

static int delete_pod(struct mbsc_run *s, struct bspod *p, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_kube_pods, s->ns, p->name, NULL };

	if (kmm_op_delete(&s->op->api, &t, err) < 0)
		return kmm_error_wrap(err, "delete pod %s", p->name);
	p->deleting = true;
	return 0;
}

/* ---- 3. status ---- */

static bool status_changed(struct mbsc_run *s)
{
	_cleanup_json_ json_t *old = json_array();

	for (size_t i = 0; i < s->mbsc->n_states; i++) {
		const struct kmm_image_state *st = &s->mbsc->states[i];

		json_array_append_new(old, json_pack("{s:s?, s:s?, s:s?}", "image", st->image,
						     "action", st->action, "status", st->status));
	}
	return !kmm_json_same(old, s->status);
}

static int write_signed_with(struct mbsc_run *s, const json_t *mbsc_json, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_op_mbscs, s->ns, s->name, NULL };
	const char *cur = kmm_op_annotation(mbsc_json, KMM_ANN_SIGNED_WITH);
	_cleanup_json_ json_t *old = cur ? json_loads(cur, 0, NULL) : NULL;
	_cleanup_free_ char *text = NULL;
	_cleanup_json_ json_t *patch = NULL;

	if (json_object_size(s->signed_with) == 0 && !old)
		return 0;
	if (old && json_equal(old, s->signed_with))
		return 0;
	text = json_dumps(s->signed_with, JSON_COMPACT | JSON_SORT_KEYS);
	patch =
	    text ? json_pack("{s:{s:{s:s}}}", "metadata", "annotations", KMM_ANN_SIGNED_WITH, text)
		 : NULL;
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (kmm_op_patch(&s->op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err) < 0)
		return kmm_error_wrap(err, "record signing digests");
	return 0;
}

static int write_status(struct mbsc_run *s, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_op_mbscs, s->ns, s->name, "status" };
	_cleanup_json_ json_t *patch = NULL;

	if (!status_changed(s))
		return 0;
	patch = json_pack("{s:{s:O}}", "status", "images", s->status);
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (kmm_op_patch(&s->op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err) < 0)
		return kmm_error_wrap(err, "patch status");
	return 0;
}

/* ---- the reconcile ---- */

static void load_pods(struct mbsc_run *s, struct kmm_obj **objs, size_t n)
{
	s->pods = calloc(n ? n : 1, sizeof(*s->pods));
	if (!s->pods)
		return;
	for (size_t i = 0; i < n; i++) {
		const json_t *j = kmm_obj_json(objs[i]);
		struct bspod *p = &s->pods[s->n_pods];

		if (!j || !is(kmm_kube_meta_str(j, "namespace"), s->ns) ||
		    !is(kmm_op_label(j, KMM_LABEL_MODULE_NAME), s->name) ||
		    !kmm_kube_meta_str(j, "name"))
			continue;
		p->j = j;
		p->name = kmm_kube_meta_str(j, "name");
		p->phase = str(json_object_get(j, "status"), "phase") ?: "Pending";
		p->deleting = json_object_get(json_object_get(j, "metadata"), "deletionTimestamp");
		s->n_pods++;
	}
}

static void sync_entries(struct mbsc_run *s, const json_t *mbsc_json)
{
	const char *cur = kmm_op_annotation(mbsc_json, KMM_ANN_SIGNED_WITH);
	json_t *old = cur ? json_loads(cur, 0, NULL) : NULL;

	if (json_is_object(old)) {
		json_decref(s->signed_with);
		s->signed_with = old;
	} else {
		json_decref(old);
	}
	for (size_t i = 0; i < s->mbsc->n_images; i++) {
		const struct kmm_module_image_spec *img = &s->mbsc->images[i];
		struct kmm_error *e = NULL;

		if (!img->image)
			continue;
		if (sync_entry(s, img, &e) < 0) {
			/* Could not look (a Secret or ConfigMap missing): the result stands. */
			const char *was = old_status(s->mbsc, img->image, img->action);

			if (was && img->action)
				set_status(s, img->image, img->action, was);
			note_error(s, e);
		}
	}
	/* Digests of images no longer signed are forgotten. */
	{
		const char *k;
		json_t *v, *keep = json_object();
		void *tmp;

		json_object_foreach_safe (s->signed_with, tmp, k, v) {
			for (size_t i = 0; i < s->mbsc->n_images; i++)
				if (is(s->mbsc->images[i].image, k) &&
				    is(s->mbsc->images[i].action, KMM_ACTION_SIGN))
					json_object_set(keep, k, v);
		}
		json_decref(s->signed_with);
		s->signed_with = keep;
	}
}

static int64_t mbsc_reconcile(struct kmm_op_engine *op, void *state, const char *key,
			      struct kmm_error **err)
{
	_cleanup_obj_unref_ struct kmm_obj *obj =
	    kmm_informer_get(op->cache[KMM_OP_CACHE_MBSCS], key);
	_cleanup_(kmm_image_config_freep) struct kmm_image_config *mbsc = NULL;
	struct kmm_obj **objs = NULL;
	size_t n = 0;
	const char *slash = strchr(key, '/');
	struct mbsc_run s = { .op = op };
	bool results_written = false;

	if (!slash || (size_t)(slash - key) >= sizeof(s.ns) || strlen(slash + 1) >= sizeof(s.name))
		return kmm_error_make(err, EINVAL, "reconcile MBSC %s: bad key", key);
	memcpy(s.ns, key, (size_t)(slash - key));
	snprintf(s.name, sizeof(s.name), "%s", slash + 1);
	if (obj && kmm_image_config_from_json(kmm_obj_json(obj), 0, &mbsc, err) < 0)
		return kmm_error_wrap(err, "reconcile MBSC %s", key);
	/* A deleting MBSC is as good as gone: only its pods' finalizers matter. */
	s.mbsc = mbsc && !json_object_get(mbsc->metadata, "deletionTimestamp") ? mbsc : NULL;
	s.status = json_array();
	s.signed_with = json_object();
	s.digests = json_object();
	if (!s.status || !s.signed_with || !s.digests ||
	    kmm_informer_list(op->cache[KMM_OP_CACHE_BSPODS], &objs, &n) < 0) {
		json_decref(s.status);
		json_decref(s.signed_with);
		json_decref(s.digests);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	load_pods(&s, objs, n);

	if (s.mbsc)
		sync_entries(&s, kmm_obj_json(obj));
	for (size_t i = 0; i < s.n_pods; i++)
		pod_lifecycle(&s, &s.pods[i]);
	if (s.mbsc) {
		struct kmm_error *e = NULL;

		if (write_signed_with(&s, kmm_obj_json(obj), &e) < 0 || write_status(&s, &e) < 0)
			note_error(&s, e);
		else
			results_written = true;
	}
	for (size_t i = 0; i < s.n_pods; i++) {
		struct bspod *p = &s.pods[i];
		struct kmm_error *e = NULL;

		if (p->deleting)
			continue;
		/*
		 * Orphans (entry gone; not while an entry could not be looked at,
		 * its pod is not marked used), and successes once recorded.
		 */
		if ((!p->used && (!s.mbsc || !s.errs)) || (p->recorded && results_written))
			if (delete_pod(&s, p, &e) < 0)
				note_error(&s, e);
	}
	kmm_obj_array_free(objs, n);
	free(s.pods);
	json_decref(s.status);
	json_decref(s.signed_with);
	json_decref(s.digests);
	if (s.errs) {
		*err = s.errs;
		return kmm_error_wrap(err, "reconcile MBSC %s", key);
	}
	return s.retry_ms;
}

/* ---- watches: what queues an MBSC ---- */

static void enqueue_mbsc(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			 const struct kmm_obj *obj, enum kmm_op_event ev)
{
	kmm_op_ctl_enqueue(op->ctl[KMM_OP_MBSC], kmm_obj_key(obj));
}

/* A build or sign pod changed: its MBSC (named by the module-name label) reads it. */
static void enqueue_from_bspod(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			       const struct kmm_obj *obj, enum kmm_op_event ev)
{
	struct mbsc_state *ms = state;
	const char *ns = kmm_obj_str(obj, "metadata.namespace");
	const char *owner = kmm_obj_label(obj, KMM_LABEL_MODULE_NAME);
	char key[512];

	if (!ns || !owner)
		return;
	snprintf(key, sizeof(key), "%s/%s", ns, kmm_obj_str(obj, "metadata.name") ?: "");
	kmm_op_keyset_remove(ms->bspods_created, key); /* the cache has it now */
	snprintf(key, sizeof(key), "%s/%s", ns, owner);
	kmm_op_ctl_enqueue(op->ctl[KMM_OP_MBSC], key);
}

static const struct kmm_op_watch mbsc_watches[] = {
	{ KMM_OP_CACHE_MBSCS, NULL, enqueue_mbsc },
	{ KMM_OP_CACHE_BSPODS, NULL, enqueue_from_bspod },
};

/* ---- state ---- */

static void mbsc_state_free(void *state)
{
	struct mbsc_state *ms = state;

	if (!ms)
		return;
	kmm_op_keyset_free(ms->bspods_created);
	free(ms);
}

static int mbsc_state_new(struct kmm_op_engine *op, void **ret_state, struct kmm_error **err)
{
	struct mbsc_state *ms = calloc(1, sizeof(*ms));

	if (!ms || !(ms->bspods_created = kmm_op_keyset_new())) {
		free(ms);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	*ret_state = ms;
	return 0;
}

const struct kmm_op_reconciler kmm_op_mbsc_reconciler = {
	.name = "modulebuildsignconfig",
	.log_name = "mbsc",
	.watches = mbsc_watches,
	.n_watches = KMM_ARRAY_SIZE(mbsc_watches),
	.state_new = mbsc_state_new,
	.state_free = mbsc_state_free,
	.reconcile = mbsc_reconcile,
	/* A spoke builds and signs nothing: its hub does (reference §3.1). */
	.modes = KMM_OP_MODE_STANDALONE | KMM_OP_MODE_HUB,
};
