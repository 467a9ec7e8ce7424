/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm_certs_sync(): one round of keeping the webhook's certificates and every
 * caBundle current, against the API; and the thread that repeats it.
 *
 * Order matters for a rotation that nobody notices: a new CA reaches every
 * caBundle (next to the CA it replaces) before the Secret, and so any replica,
 * holds a certificate it signed. Several replicas may run this at once: the
 * Secret is written with its resourceVersion, and the replica that loses takes
 * the winner's state.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "kmm/certs.h"
#include "kmm/kube.h"
#include "kmm/shared-fileio.h"
#include "kmm/shared-json.h"
#include "kmm/shared-macro.h"

#define MAX_FILE (64 * 1024)
#define SECRET_WRITE_TRIES 3

static const struct kmm_kube_resource vwc_res = { "admissionregistration.k8s.io", "v1",
						  "validatingwebhookconfigurations", false };
static const struct kmm_kube_resource crd_res = { "apiextensions.k8s.io", "v1",
						  "customresourcedefinitions", false };

/* The Secret's keys, in the order of state_field(). */
static const char *const secret_keys[] = { "ca.crt", "ca.key", "tls.crt", "tls.key" };

/* Hands e to the caller's err (which may be NULL: the caller does not want it). */
static void pass_error(struct kmm_error **err, struct kmm_error *e)
{
	if (err)
		pass_error(err, e);
	else
		kmm_error_free(e);
}

static char **state_field(struct kmm_certs_state *s, size_t i)
{
	char **fields[] = { &s->ca_bundle, &s->ca_key, &s->tls_cert, &s->tls_key };

	return fields[i];
}

static char *base64(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	char *out = s ? malloc(4 * ((n + 2) / 3) + 1) : NULL;

	if (out)
		EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
	return out;
}

/* The Secret's data as a state; a key that is missing or not base64 stays NULL (the plan replaces it). */
static int secret_state(const json_t *secret, struct kmm_certs_state *ret)
{
	const json_t *data = json_object_get(secret, "data");
	struct kmm_certs_state s = { 0 };

	for (size_t i = 0; i < KMM_ARRAY_SIZE(secret_keys); i++) {
		const char *v = json_string_value(json_object_get(data, secret_keys[i]));
		size_t len;

		if (v && kmm_kube_base64_decode(v, state_field(&s, i), &len) == -ENOMEM) {
			kmm_certs_state_clear(&s);
			return -ENOMEM;
		}
	}
	*ret = s;
	return 0;
}

static json_t *secret_string_data(const struct kmm_certs_state *s)
{
	_cleanup_json_ json_t *sd = json_object();
	struct kmm_certs_state *st = (struct kmm_certs_state *)s;

	if (!sd)
		return NULL;
	for (size_t i = 0; i < KMM_ARRAY_SIZE(secret_keys); i++)
		if (json_object_set_new(sd, secret_keys[i], json_string(*state_field(st, i))) < 0)
			return NULL;
	return TAKE_PTR(sd);
}

/* GET the Secret; *ret_obj NULL when there is none. */
static int get_secret(struct kmm_kube_client *c, const struct kmm_certs_options *o,
		      json_t **ret_obj, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_kube_secrets, o->namespace, o->secret_name, NULL };
	struct kmm_error *e = NULL;

	*ret_obj = NULL;
	if (kmm_kube_get(c, &t, ret_obj, &e) < 0) {
		if (kmm_error_is_http(e, 404)) {
			kmm_error_free(e);
			return 0;
		}
		pass_error(err, e);
		return kmm_error_wrap(err, "get secret %s/%s", o->namespace, o->secret_name);
	}
	return 0;
}

/*
 * Create the Secret, or PUT it over the version read (stringData replaces the
 * four keys and keeps anything else). -ESTALE when another writer came first.
 */
static int write_secret(struct kmm_kube_client *c, const struct kmm_certs_options *o,
			json_t *current, const struct kmm_certs_state *next, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_kube_secrets, o->namespace, o->secret_name, NULL };
	struct kmm_kube_write_options wo = { .field_manager = o->field_manager };
	_cleanup_json_ json_t *obj = NULL;
	json_t *sd = secret_string_data(next);
	struct kmm_error *e = NULL;
	int r;

	if (current) {
		obj = json_deep_copy(current);
		if (obj)
			json_object_del(obj, "data");
	} else {
		obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s, s:s}}, s:s}", "apiVersion", "v1",
				"kind", "Secret", "metadata", "name", o->secret_name, "namespace",
				o->namespace, "labels", "app.kubernetes.io/part-of", "kmm",
				"app.kubernetes.io/component", "webhook-server", "type",
				"kubernetes.io/tls");
	}
	if (!obj || !sd || json_object_set_new(obj, "stringData", sd) < 0) {
		if (!obj)
			json_decref(sd);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	r = current ? kmm_kube_update(c, &t, obj, &wo, NULL, &e)
		    : kmm_kube_create(c, &t, obj, &wo, NULL, &e);
	if (r < 0 && (kmm_error_is_http(e, 409))) {
		kmm_error_free(e);
		return -ESTALE;
	}
	if (r < 0) {
		pass_error(err, e);
		return kmm_error_wrap(err, "%s secret %s/%s", current ? "update" : "create",
				      o->namespace, o->secret_name);
	}
	return 0;
}

/* GET a cluster-scoped object; *ret_obj NULL and (*missing)++ when it does not exist. */
static int get_cluster_obj(struct kmm_kube_client *c, const struct kmm_kube_resource *res,
			   const char *name, json_t **ret_obj, unsigned *missing,
			   struct kmm_error **err)
{
	struct kmm_kube_target t = { res, NULL, name, NULL };
	struct kmm_error *e = NULL;

	*ret_obj = NULL;
	if (kmm_kube_get(c, &t, ret_obj, &e) >= 0)
		return 0;
	if (kmm_error_is_http(e, 404)) {
		kmm_error_free(e);
		(*missing)++;
		return 0;
	}
	pass_error(err, e);
	return kmm_error_wrap(err, "get %s %s", res->resource, name);
}

/*
 * Every webhook of the configuration gets caBundle b64. One JSON patch whose
 * `test` of each webhook's name makes a concurrent reordering fail instead of
 * patching the wrong entry.
 */
static int sync_vwc(struct kmm_kube_client *c, const struct kmm_certs_options *o, const char *name,
		    const char *b64, struct kmm_certs_sync_result *res, struct kmm_error **err)
{
	struct kmm_kube_target t = { &vwc_res, NULL, name, NULL };
	struct kmm_kube_patch_options po = { .field_manager = o->field_manager };
	_cleanup_json_ json_t *vwc = NULL, *ops = json_array();
	const json_t *hooks;
	unsigned patched = 0;
	size_t i;
	json_t *hook;

	if (get_cluster_obj(c, &vwc_res, name, &vwc, &res->missing, err) < 0)
		return -EIO;
	if (!vwc)
		return 0;
	if (!ops)
		return kmm_error_make(err, ENOMEM, "out of memory");
	hooks = json_object_get(vwc, "webhooks");
	json_array_foreach (hooks, i, hook) {
		const char *have = json_string_value(
		    json_object_get(json_object_get(hook, "clientConfig"), "caBundle"));
		char at[64];

		if (have && strcmp(have, b64) == 0)
			continue;
		snprintf(at, sizeof(at), "/webhooks/%zu/name", i);
		if (json_array_append_new(ops,
					  json_pack("{s:s, s:s, s:O}", "op", "test", "path", at,
						    "value", json_object_get(hook, "name"))) < 0)
			return kmm_error_make(err, ENOMEM, "out of memory");
		snprintf(at, sizeof(at), "/webhooks/%zu/clientConfig/caBundle", i);
		if (json_array_append_new(ops, json_pack("{s:s, s:s, s:s}", "op", "add", "path", at,
							 "value", b64)) < 0)
			return kmm_error_make(err, ENOMEM, "out of memory");
		patched++;
	}
	if (patched == 0)
		return 0;
	if (kmm_kube_patch(c, &t, KMM_KUBE_PATCH_JSON, ops, &po, NULL, err) < 0)
		return kmm_error_wrap(err, "patch the caBundles of %s", name);
	res->ca_bundles_patched += patched;
	return 0;
}

/* The CRD's conversion webhook gets caBundle b64 (a CRD without one is left alone). */
static int sync_crd(struct kmm_kube_client *c, const struct kmm_certs_options *o, const char *name,
		    const char *b64, struct kmm_certs_sync_result *res, struct kmm_error **err)
{
	struct kmm_kube_target t = { &crd_res, NULL, name, NULL };
	struct kmm_kube_patch_options po = { .field_manager = o->field_manager };
	_cleanup_json_ json_t *crd = NULL, *patch = NULL;
	const json_t *conv, *cc;
	const char *have;

	if (get_cluster_obj(c, &crd_res, name, &crd, &res->missing, err) < 0)
		return -EIO;
	if (!crd)
		return 0;
	conv = json_object_get(json_object_get(crd, "spec"), "conversion");
	cc = json_object_get(json_object_get(conv, "webhook"), "clientConfig");
	if (!cc)
		return 0;
	have = json_string_value(json_object_get(cc, "caBundle"));
	if (have && strcmp(have, b64) == 0)
		return 0;
	patch = json_pack("{s:{s:{s:{s:{s:s}}}}}", "spec", "conversion", "webhook", "clientConfig",
			  "caBundle", b64);
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (kmm_kube_patch(c, &t, KMM_KUBE_PATCH_MERGE, patch, &po, NULL, err) < 0)
		return kmm_error_wrap(err, "patch the conversion caBundle of %s", name);
	res->ca_bundles_patched++;
	return 0;
}

static int sync_ca_bundles(struct kmm_kube_client *c, const struct kmm_certs_options *o,
			   const char *bundle, struct kmm_certs_sync_result *res,
			   struct kmm_error **err)
{
	_cleanup_free_ char *b64 = base64(bundle);

	if (!b64)
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (size_t i = 0; o->webhook_configs && o->webhook_configs[i]; i++)
		if (sync_vwc(c, o, o->webhook_configs[i], b64, res, err) < 0)
			return -EIO;
	for (size_t i = 0; o->conversion_crds && o->conversion_crds[i]; i++)
		if (sync_crd(c, o, o->conversion_crds[i], b64, res, err) < 0)
			return -EIO;
	return 0;
}

/* Write one file of cert_dir if its content differs. */
static int sync_file(const char *dir, const char *name, const char *content, mode_t mode,
		     bool *written, struct kmm_error **err)
{
	_cleanup_free_ char *path = NULL, *have = NULL;
	size_t len, have_len = 0;

	if (!content)
		return kmm_error_make(err, EINVAL, "%s: nothing to write", name);
	len = strlen(content);
	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (kmm_read_file(path, MAX_FILE, &have, &have_len, NULL) >= 0 && have_len == len &&
	    memcmp(have, content, len) == 0)
		return 0;
	if (kmm_write_file_atomic(path, content, len, mode, err) < 0)
		return -EIO;
	*written = true;
	return 0;
}

static int sync_files(const struct kmm_certs_options *o, const struct kmm_certs_state *s,
		      struct kmm_certs_sync_result *res, struct kmm_error **err)
{
	if (!o->cert_dir)
		return 0;
	/* The key first: a reader that sees the new certificate finds its key already there. */
	if (sync_file(o->cert_dir, "tls.key", s->tls_key, 0600, &res->files_written, err) < 0 ||
	    sync_file(o->cert_dir, "tls.crt", s->tls_cert, 0644, &res->files_written, err) < 0 ||
	    sync_file(o->cert_dir, "ca.crt", s->ca_bundle, 0644, &res->files_written, err) < 0)
		return kmm_error_wrap(err, "write %s", o->cert_dir);
	return 0;
}

/* Read, plan, publish, write: 0 done, -ESTALE lost the Secret to another writer. */
static int sync_round(struct kmm_kube_client *c, const struct kmm_certs_options *o, time_t now,
		      struct kmm_certs_state *ret_state, struct kmm_certs_sync_result *res,
		      struct kmm_error **err)
{
	_cleanup_json_ json_t *secret = NULL;
	_cleanup_(kmm_certs_state_clear) struct kmm_certs_state cur = { 0 };
	struct kmm_certs_state next = { 0 };
	int r;

	if (get_secret(c, o, &secret, err) < 0)
		return -EIO;
	if (secret && secret_state(secret, &cur) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (kmm_certs_plan(secret ? &cur : NULL, &o->policy, now, &next, &res->change, err) < 0)
		return -EINVAL;
	if (res->change != KMM_CERTS_KEEP) {
		r = sync_ca_bundles(c, o, next.ca_bundle, res, err);
		if (r >= 0)
			r = write_secret(c, o, secret, &next, err);
		if (r < 0) {
			kmm_certs_state_clear(&next);
			return r;
		}
		res->secret_written = true;
	}
	*ret_state = next;
	return 0;
}

int kmm_certs_sync(struct kmm_kube_client *c, const struct kmm_certs_options *o, time_t now,
		   struct kmm_certs_sync_result *ret, struct kmm_error **err)
{
	_cleanup_(kmm_certs_state_clear) struct kmm_certs_state s = { 0 };
	struct kmm_certs_sync_result res = { 0 };
	time_t nb;
	int r = -ESTALE;

	if (!o || !o->namespace || !o->secret_name || !o->field_manager)
		return kmm_error_make(err, EINVAL, "certificates: incomplete options");
	for (int i = 0; i < SECRET_WRITE_TRIES && r == -ESTALE; i++) {
		res = (struct kmm_certs_sync_result){ 0 };
		r = sync_round(c, o, now, &s, &res, err);
	}
	if (r == -ESTALE)
		return kmm_error_make(err, ESTALE, "secret %s/%s: %d writers in a row came first",
				      o->namespace, o->secret_name, SECRET_WRITE_TRIES);
	if (r < 0)
		return r;
	/* Again from the Secret's bundle: repairs a caBundle that a re-apply or anyone else reset. */
	if (sync_ca_bundles(c, o, s.ca_bundle, &res, err) < 0 || sync_files(o, &s, &res, err) < 0 ||
	    kmm_certs_validity(s.tls_cert, &nb, &res.cert_not_after, err) < 0)
		return -EIO;
	*ret = res;
	return 0;
}

struct kmm_certs_provisioner {
	struct kmm_kube_client *client;
	const struct kmm_certs_options *o;
	unsigned interval_ms;
	kmm_certs_sync_cb cb;
	void *userdata;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
};

static void *provisioner_main(void *arg)
{
	struct kmm_certs_provisioner *p = arg;
	struct timespec deadline;

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += p->interval_ms / 1000;
		deadline.tv_nsec += (long)(p->interval_ms % 1000) * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
		while (!p->stop && pthread_cond_timedwait(&p->cond, &p->lock, &deadline) == 0)
			;
		if (p->stop)
			break;
		pthread_mutex_unlock(&p->lock);
		{
			struct kmm_certs_sync_result res = { 0 };
			struct kmm_error *err = NULL;
			int r = kmm_certs_sync(p->client, p->o, time(NULL), &res, &err);

			if (p->cb)
				p->cb(p->userdata, &res, r < 0 ? err : NULL);
			kmm_error_free(err);
		}
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int kmm_certs_provisioner_start(struct kmm_kube_client *c, const struct kmm_certs_options *o,
				unsigned interval_ms, kmm_certs_sync_cb cb, void *userdata,
				struct kmm_certs_provisioner **ret, struct kmm_error **err)
{
	_cleanup_free_ struct kmm_certs_provisioner *p = calloc(1, sizeof(*p));
	pthread_condattr_t ca;
	int r;

	if (!p)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (!c || !o || interval_ms == 0)
		return kmm_error_make(err, EINVAL, "certificates: no client, options or interval");
	*p = (struct kmm_certs_provisioner){
		.client = c, .o = o, .interval_ms = interval_ms, .cb = cb, .userdata = userdata
	};
	pthread_mutex_init(&p->lock, NULL);
	/* A monotonic clock: a wall clock set back would stall rotation. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	r = pthread_create(&p->thread, NULL, provisioner_main, p);
	if (r != 0) {
		pthread_cond_destroy(&p->cond);
		pthread_mutex_destroy(&p->lock);
		return kmm_error_make_errno(err, r, "certificates: start the thread");
	}
	*ret = TAKE_PTR(p);
	return 0;
}

void kmm_certs_provisioner_stop(struct kmm_certs_provisioner *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
