/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The hub's ManagedClusterModule reconciler (reference §6,
 * docs/hub-spoke.md), kmm-operator --hub. Keyed by MCM name. For each OCM
 * ManagedCluster:
 *
 *   selected (labels match spec.selector) and reporting its kernels (the
 *   ClusterClaim kernel-versions.kmm.node.kubernetes.io in
 *   status.clusterClaims): every kernel resolved through moduleSpec's
 *   kernel mappings; the MIC "<mcm>-<cluster>" in the operator's namespace
 *   (labelled and owned by the MCM) lists the images, so mic.c and mbsc.c
 *   check, build and sign them here on the hub; once the MIC says every
 *   image Exists, each image's digest is asked of its registry (remembered
 *   for DIGEST_TTL_MS) and the
 *   ManifestWork "<mcm>" in namespace <cluster> (labelled and owned by the
 *   MCM) carries the spoke's Module: build and sign removed, one literal
 *   mapping per kernel, its image pinned by digest, so that every spoke
 *   loads exactly what was built and signed here (upstream's documentation
 *   promises digests, its code sends tags);
 *
 *   not selected: its ManifestWork and MIC are deleted (so are those of
 *   clusters that no longer exist).
 *
 * A ManifestWork is written when the annotation holding the digest of what
 * kmm wants differs: the work agent and OCM's defaults may add fields, and
 * kmm never fights them. status: numberDesired (this MCM's ManifestWorks),
 * numberApplied / numberDegraded (those whose Applied / Degraded condition
 * is True). An MCM that is gone takes its ManifestWorks and MICs along
 * (also without the garbage collector).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmm/operator-hub.h"
#include "kmm/registry.h"
#include "kmm/shared-clock.h"
#include "kmm/shared-hashmap.h"
#include "kmm/shared-json.h"
#include "kmm/shared-strv.h"
#include "engine-internal.h"

#define KMM_ANN_WORK_DIGEST "kmm.node.kubernetes.io/manifestwork-digest"

const struct kmm_kube_resource kmm_op_mcms = { KMM_HUB_API_GROUP, "v1beta1",
					       "managedclustermodules", false };
const struct kmm_kube_resource kmm_op_managedclusters = { "cluster.open-cluster-management.io",
							  "v1", "managedclusters", false };
const struct kmm_kube_resource kmm_op_manifestworks = { "work.open-cluster-management.io", "v1",
							"manifestworks", true };

/*
 * How long a digest asked of a registry is used without asking again. Every
 * ManifestWork status change reconciles its MCM (the feedback counters), and
 * a fleet's works change often: a HEAD per image per reconcile would be the
 * registry's load. A rebuild on the hub changes the MIC, which reconciles at
 * once, but within this time still finds the old digest: it is asked again
 * at the next reconcile after the time is up, which the status changes of
 * the rollout's own works bring.
 */
#define DIGEST_TTL_MS 30000

struct digest_entry {
	char *digest;
	int64_t at_ms;
};

struct hub_state {
	struct kmm_registry_policy *policy; /* registryAllowed/DeniedNetworks */
	pthread_mutex_t lock;		    /* guards digests */
	struct kmm_hashmap *digests;	    /* digest_cache_key() -> struct digest_entry */
};

static void digest_entry_free(void *p)
{
	struct digest_entry *e = p;

	if (e)
		free(e->digest);
	free(e);
}

/* The image and everything that decides what a registry answers for it. */
static void digest_cache_key(char *buf, size_t size, const struct kmm_mcm *mcm,
			     const struct kmm_resolved_mapping *res)
{
	snprintf(buf, size, "%s|%d|%d|%s", res->container_image, res->registry_tls.insecure,
		 res->registry_tls.insecure_skip_tls_verify,
		 mcm->module->spec.image_repo_secret ?: "");
}

static char *digest_cached(struct hub_state *s, const char *key)
{
	struct digest_entry *e;
	char *out = NULL;

	pthread_mutex_lock(&s->lock);
	e = kmm_hashmap_get(s->digests, key);
	if (e && kmm_now_mono_ms() - e->at_ms < DIGEST_TTL_MS)
		out = strdup(e->digest);
	pthread_mutex_unlock(&s->lock);
	return out;
}

static void digest_remember(struct hub_state *s, const char *key, const char *digest)
{
	struct digest_entry *e = calloc(1, sizeof(*e));

	if (!e || !(e->digest = strdup(digest))) {
		digest_entry_free(e);
		return; /* a cache: asked again next time */
	}
	e->at_ms = kmm_now_mono_ms();
	pthread_mutex_lock(&s->lock);
	if (kmm_hashmap_put(s->digests, key, e, NULL) < 0)
		digest_entry_free(e);
	pthread_mutex_unlock(&s->lock);
}

static struct hub_state *hub_state(struct kmm_op_engine *op)
{
	return op->state[KMM_OP_HUB];
}

/* "<mcm>-<cluster>": upstream's MIC name. */
static void mic_name(char *buf, size_t size, const char *mcm, const char *cluster)
{
	snprintf(buf, size, "%s-%s", mcm, cluster);
}

/* ---- cleanup ---- */

static int delete_work(struct kmm_op_engine *op, const char *cluster, const char *mcm,
		       struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_op_manifestworks, cluster, mcm, NULL };

	if (kmm_op_delete(&op->api, &t, err) < 0)
		return kmm_error_wrap(err, "delete ManifestWork %s/%s", cluster, mcm);
	kmm_op_log(op, KMM_LOG_INFO, "ManifestWork deleted", "controller", "hub", "mcm", mcm,
		   "cluster", cluster, NULL);
	return 0;
}

static int delete_mic(struct kmm_op_engine *op, const char *name, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_op_mics, op->cfg.operator_namespace, name, NULL };

	if (kmm_op_delete(&op->api, &t, err) < 0)
		return kmm_error_wrap(err, "delete MIC %s", name);
	return 0;
}

/* This MCM's ManifestWorks whose cluster is not in keep (NULL: all), and MICs likewise. */
static int collect(struct kmm_op_engine *op, const char *mcm, char *const *keep,
		   struct kmm_error **err)
{
	struct kmm_obj **objs = NULL;
	size_t n = 0;
	int r = 0;

	if (kmm_informer_by_index(op->cache[KMM_OP_CACHE_MANIFESTWORKS], "mcm", mcm, &objs, &n) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (size_t i = 0; r >= 0 && i < n; i++) {
		const char *ns = kmm_obj_str(objs[i], "metadata.namespace");

		if (ns && !kmm_strv_contains(keep, ns))
			r = delete_work(op, ns, kmm_obj_str(objs[i], "metadata.name"), err);
	}
	kmm_obj_array_free(objs, n);
	if (r < 0)
		return r;
	if (kmm_informer_by_index(op->cache[KMM_OP_CACHE_MICS], "mcm", mcm, &objs, &n) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (size_t i = 0; r >= 0 && i < n; i++) {
		const char *name = kmm_obj_str(objs[i], "metadata.name");
		bool kept = false;

		for (char *const *c = keep; c && *c && !kept; c++) {
			char want[512];

			mic_name(want, sizeof(want), mcm, *c);
			kept = name && strcmp(name, want) == 0;
		}
		if (name && !kept)
			r = delete_mic(op, name, err);
	}
	kmm_obj_array_free(objs, n);
	return r;
}

/* ---- the MIC ---- */

static json_t *owner_ref(const struct kmm_mcm *mcm)
{
	return json_pack("[{s:s,s:s,s:s,s:s,s:b,s:b}]", "apiVersion", KMM_HUB_API_VERSION, "kind",
			 KMM_HUB_KIND_MCM, "name", mcm->name, "uid",
			 str(mcm->metadata, "uid") ?: "", "controller", 1, "blockOwnerDeletion", 1);
}

static int sync_mic(struct kmm_op_engine *op, const struct kmm_mcm *mcm, const char *name,
		    const json_t *images, struct kmm_image_config **ret_mic, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_op_mics, op->cfg.operator_namespace, NULL, NULL };
	_cleanup_json_ json_t *spec = kmm_op_mic_spec(mcm->module, images), *want = NULL;
	_cleanup_json_ json_t *obj = NULL;
	_cleanup_obj_unref_ struct kmm_obj *cur = NULL;
	char key[600];
	const char *k;
	json_t *v;
	void *tmp;
	int r;

	if (!spec)
		return kmm_error_make(err, ENOMEM, "out of memory");
	snprintf(key, sizeof(key), "%s/%s", op->cfg.operator_namespace, name);
	cur = kmm_informer_get(op->cache[KMM_OP_CACHE_MICS], key);
	if (cur) {
		_cleanup_json_ json_t *patch = NULL;

		r = kmm_image_config_from_json(kmm_obj_json(cur), 0, ret_mic, err);
		if (r < 0)
			return kmm_error_wrap(err, "MIC %s", key);
		want = kmm_op_image_config_spec_normalized("ModuleImagesConfig", spec);
		_cleanup_json_ json_t *have = kmm_image_config_to_json(*ret_mic);
		if (want && json_equal(want, json_object_get(have, "spec")))
			return 0;
		patch = json_pack("{s:O}", "spec", spec);
		t.name = name;
		if (!patch)
			return kmm_error_make(err, ENOMEM, "out of memory");
		r = kmm_op_patch(&op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err);
		return r < 0 ? kmm_error_wrap(err, "update MIC %s", key) : 0;
	}
	/* Nulls mean "absent" to a merge patch only: a new object leaves them out. */
	json_object_foreach_safe (spec, tmp, k, v)
		if (json_is_null(v))
			json_object_del(spec, k);
	obj = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s},s:o},s:O}", "apiVersion", KMM_API_VERSION,
			"kind", "ModuleImagesConfig", "metadata", "name", name, "namespace",
			op->cfg.operator_namespace, "labels", KMM_LABEL_MCM_NAME, mcm->name,
			"ownerReferences", owner_ref(mcm), "spec", spec);
	if (!obj)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = kmm_op_create(&op->api, &t, obj, NULL, err);
	if (r == -EEXIST) { /* the cache is behind: the MIC watch brings the key back */
		kmm_error_free(*err);
		*err = NULL;
		return 0;
	}
	return r < 0 ? kmm_error_wrap(err, "create MIC %s", key) : 0;
}

/* ---- digests ---- */

static int image_digest(struct kmm_op_engine *op, const struct kmm_mcm *mcm,
			const struct kmm_resolved_mapping *res, char **docker_config, char **ret,
			struct kmm_error **err)
{
	_cleanup_(kmm_registry_freep) struct kmm_registry *reg = NULL;
	struct kmm_registry_options ro = {
		.insecure = res->registry_tls.insecure,
		.insecure_skip_tls_verify = res->registry_tls.insecure_skip_tls_verify,
		.ca_file = op->cfg.registry_ca_file && *op->cfg.registry_ca_file
			       ? op->cfg.registry_ca_file
			       : NULL,
		.policy = hub_state(op)->policy,
	};
	char *digest = NULL, key[1024];
	int r;

	digest_cache_key(key, sizeof(key), mcm, res);
	if ((digest = digest_cached(hub_state(op), key))) {
		*ret = digest;
		return 0;
	}
	/* The pull secret is read once per reconcile, and only when a registry is asked. */
	if (mcm->module->spec.image_repo_secret && !*docker_config &&
	    !(*docker_config = kmm_op_pull_secret(op, op->cfg.operator_namespace,
						  mcm->module->spec.image_repo_secret, err)))
		return kmm_error_wrap(err, "pull secret");
	ro.docker_config = *docker_config;
	r = kmm_registry_new(&ro, &reg, err);
	if (r < 0)
		return r;
	r = kmm_registry_image_exists(reg, res->container_image, &digest, err);
	if (r < 0)
		return kmm_error_wrap(err, "digest of %s", res->container_image);
	if (r == 0 || !digest) {
		free(digest);
		return kmm_error_make(err, ENOENT, "digest of %s: %s", res->container_image,
				      r == 0 ? "the registry does not have it"
					     : "the registry sent no digest");
	}
	digest_remember(hub_state(op), key, digest);
	*ret = digest;
	return 0;
}

/* ---- one cluster ---- */

struct cluster_plan {
	char **kernels;
	struct kmm_resolved_mapping **res; /* per kernel; NULL: no mapping matches */
	size_t n;
	json_t *images; /* MIC entries by image */
};

static void plan_done(struct cluster_plan *p)
{
	for (size_t i = 0; i < p->n; i++)
		kmm_resolved_mapping_free(p->res[i]);
	free(p->res);
	kmm_strv_free(p->kernels);
	json_decref(p->images);
}

/*
 * A mapper of its own rather than the engine's cache: that one is keyed by
 * namespace/name and generation, which a deleted and re-created MCM repeats.
 */
static int plan(struct kmm_op_engine *op, const struct kmm_mcm *mcm, const char *claim,
		struct cluster_plan *p, struct kmm_error **err)
{
	_cleanup_(kmm_mapper_freep) struct kmm_mapper *mapper = NULL;

	p->kernels = kmm_hub_claim_kernels(claim);
	p->n = kmm_strv_length(p->kernels);
	p->res = calloc(p->n ? p->n : 1, sizeof(*p->res));
	p->images = json_object();
	if (!p->kernels || !p->res || !p->images)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (!mcm->module->spec.module_loader)
		return 0; /* device plugin or DRA only: nothing to build, nothing to pin */
	if (kmm_mapper_new(mcm->module, &mapper, err) < 0)
		return kmm_error_wrap(err, "kernel mappings");
	for (size_t i = 0; i < p->n; i++) {
		int r = kmm_mapper_resolve(mapper, mcm->module, p->kernels[i], &p->res[i], err);

		if (r < 0)
			return kmm_error_wrap(err, "kernel %s", p->kernels[i]);
		if (r > 0 && kmm_op_mic_image_add(p->images, mcm->module, p->res[i]) < 0)
			return kmm_error_make(err, ENOMEM, "out of memory");
	}
	return 0;
}

/* The hex digest of what kmm wants the ManifestWork to be. */
static int work_digest(const json_t *work, char hex[2 * KMM_OP_ENTRY_DIGEST_LEN + 1])
{
	unsigned char d[KMM_OP_ENTRY_DIGEST_LEN];
	int r = kmm_op_nmc_entry_digest(work, d);

	if (r < 0)
		return r;
	for (size_t i = 0; i < sizeof(d); i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	return 0;
}

static int put_work(struct kmm_op_engine *op, const struct kmm_mcm *mcm, const char *cluster,
		    json_t *work, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_op_manifestworks, cluster, NULL, NULL };
	_cleanup_obj_unref_ struct kmm_obj *cur = NULL;
	char hex[2 * KMM_OP_ENTRY_DIGEST_LEN + 1], key[512];
	json_t *meta = json_object_get(work, "metadata");
	const char *have;
	int r;

	if (work_digest(work, hex) < 0 ||
	    json_object_set_new(meta, "annotations", json_pack("{s:s}", KMM_ANN_WORK_DIGEST, hex)) <
		0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	snprintf(key, sizeof(key), "%s/%s", cluster, mcm->name);
	cur = kmm_informer_get(op->cache[KMM_OP_CACHE_MANIFESTWORKS], key);
	if (cur) {
		_cleanup_json_ json_t *patch = NULL;

		have = kmm_obj_annotation(cur, KMM_ANN_WORK_DIGEST);
		if (have && strcmp(have, hex) == 0)
			return 0;
		patch = json_pack("{s:{s:O,s:O,s:O},s:O}", "metadata", "labels",
				  json_object_get(meta, "labels"), "annotations",
				  json_object_get(meta, "annotations"), "ownerReferences",
				  json_object_get(meta, "ownerReferences"), "spec",
				  json_object_get(work, "spec"));
		if (!patch)
			return kmm_error_make(err, ENOMEM, "out of memory");
		t.name = mcm->name;
		r = kmm_op_patch(&op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err);
		if (r < 0)
			return kmm_error_wrap(err, "update ManifestWork %s", key);
		kmm_op_log(op, KMM_LOG_INFO, "ManifestWork updated", "controller", "hub", "mcm",
			   mcm->name, "cluster", cluster, NULL);
		return 0;
	}
	r = kmm_op_create(&op->api, &t, work, NULL, err);
	if (r == -EEXIST) {
		kmm_error_free(*err);
		*err = NULL;
		return 0;
	}
	if (r < 0)
		return kmm_error_wrap(err, "create ManifestWork %s", key);
	kmm_op_log(op, KMM_LOG_INFO, "ManifestWork created", "controller", "hub", "mcm", mcm->name,
		   "cluster", cluster, NULL);
	return 0;
}

/* The literal mappings, every image pinned; digests asked once per image. */
static int pinned_kernels(struct kmm_op_engine *op, const struct kmm_mcm *mcm,
			  const struct cluster_plan *p, struct kmm_hub_kernel_image *k,
			  char **pinned, size_t *ret_n, struct kmm_error **err)
{
	_cleanup_free_ char *docker_config = NULL;
	_cleanup_json_ json_t *digests = json_object();
	size_t n = 0;

	if (!digests)
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < p->n; i++) {
		const struct kmm_resolved_mapping *res = p->res[i];
		const char *digest;
		int r;

		if (!res)
			continue;
		digest = str(digests, res->container_image);
		if (!digest) {
			char *d = NULL;

			r = image_digest(op, mcm, res, &docker_config, &d, err);
			if (r < 0)
				return r;
			r = json_object_set_new(digests, res->container_image, json_string(d));
			free(d);
			if (r < 0)
				return kmm_error_make(err, ENOMEM, "out of memory");
			digest = str(digests, res->container_image);
		}
		r = kmm_hub_pin_image(res->container_image, digest, &pinned[n], err);
		if (r < 0)
			return r;
		k[n] = (struct kmm_hub_kernel_image){
			.kernel = res->kernel,
			.image = pinned[n],
			.in_tree_modules_to_remove = res->in_tree_modules_to_remove,
			.registry_tls = &res->registry_tls,
		};
		n++;
	}
	*ret_n = n;
	return 0;
}

static int sync_cluster(struct kmm_op_engine *op, const struct kmm_mcm *mcm, const char *cluster,
			const char *claim, struct kmm_error **err)
{
	_cleanup_(plan_done) struct cluster_plan p = {};
	_cleanup_(kmm_image_config_freep) struct kmm_image_config *mic = NULL;
	_cleanup_free_ struct kmm_hub_kernel_image *k = NULL;
	_cleanup_json_ json_t *module = NULL, *work = NULL;
	char **pinned = NULL;
	char name[512];
	bool waiting = false;
	size_t n = 0;
	int r;

	r = plan(op, mcm, claim, &p, err);
	if (r < 0)
		return r;
	if (mcm->module->spec.module_loader) {
		if (json_object_size(p.images) == 0)
			return 0; /* no kernel of this cluster is mapped: nothing to send */
		mic_name(name, sizeof(name), mcm->name, cluster);
		r = sync_mic(op, mcm, name, p.images, &mic, err);
		if (r < 0)
			return r;
		/* Only what exists goes out: the MIC's status brings the key back. */
		for (size_t i = 0; i < p.n; i++) {
			if (!p.res[i])
				continue;
			r = kmm_hub_image_ready(mic, p.res[i]->container_image);
			if (r == -ENOENT)
				return kmm_error_make(err, ENOENT,
						      "image %s (kernel %s) does not exist, and no "
						      "build or sign on the hub made it",
						      p.res[i]->container_image, p.kernels[i]);
			waiting |= r == 0;
		}
		if (waiting)
			return 1;
	}
	k = calloc(p.n ? p.n : 1, sizeof(*k));
	pinned = calloc(p.n + 1, sizeof(*pinned));
	if (!k || !pinned) {
		free(pinned);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	r = mcm->module->spec.module_loader ? pinned_kernels(op, mcm, &p, k, pinned, &n, err) : 0;
	if (r >= 0) {
		module = kmm_hub_spoke_module(mcm, k, n);
		work = module ? kmm_hub_manifest_work(mcm, cluster, module) : NULL;
		r = work ? put_work(op, mcm, cluster, work, err)
			 : kmm_error_make(err, ENOMEM, "out of memory");
	}
	kmm_strv_free(pinned);
	return r;
}

/* ---- status ---- */

static bool condition_true(const struct kmm_obj *work, const char *type)
{
	_cleanup_json_ json_t *conds = kmm_obj_get_json(work, "status.conditions");
	size_t i;
	json_t *c;

	json_array_foreach (conds, i, c) {
		const char *t = str(c, "type"), *s = str(c, "status");

		if (t && s && strcmp(t, type) == 0)
			return strcmp(s, "True") == 0;
	}
	return false;
}

/* The same condition but for lastTransitionTime (which only follows the status). */
static bool condition_same(const json_t *a, const json_t *b)
{
	static const char *const keys[] = { "type", "status", "reason", "message",
					    "observedGeneration" };

	for (size_t i = 0; i < KMM_ARRAY_SIZE(keys); i++)
		if (!kmm_json_same(json_object_get(a, keys[i]), json_object_get(b, keys[i])))
			return false;
	return true;
}

static int patch_status(struct kmm_op_engine *op, const struct kmm_obj *obj, const char *mcm,
			struct kmm_hub_progress *p, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_op_mcms, NULL, mcm, "status" };
	_cleanup_json_ json_t *have = kmm_obj_get_json(obj, "status"), *want = NULL;
	json_t *ready, *have_ready = NULL, *c;
	struct kmm_obj **works = NULL;
	_cleanup_json_ json_t *gen = kmm_obj_get_json(obj, "metadata.generation");
	size_t n = 0, i;
	char now[64];
	struct tm tm;
	time_t clock = time(NULL);

	if (kmm_informer_by_index(op->cache[KMM_OP_CACHE_MANIFESTWORKS], "mcm", mcm, &works, &n) <
	    0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	p->desired = (int64_t)n;
	for (i = 0; i < n; i++) {
		p->applied += condition_true(works[i], "Applied");
		p->degraded += condition_true(works[i], "Degraded");
	}
	kmm_obj_array_free(works, n);
	gmtime_r(&clock, &tm);
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
	ready = kmm_hub_ready_condition(p, json_integer_value(gen),
					json_object_get(have, "conditions"), now);
	want = json_pack("{s:I,s:I,s:I,s:[o]}", "numberDesired", (json_int_t)p->desired,
			 "numberApplied", (json_int_t)p->applied, "numberDegraded",
			 (json_int_t)p->degraded, "conditions", ready);
	if (!want)
		return kmm_error_make(err, ENOMEM, "out of memory");
	json_array_foreach (json_object_get(have, "conditions"), i, c)
		if (strcmp(str(c, "type") ?: "", "Ready") == 0)
			have_ready = c;
	if (have && json_array_size(json_object_get(have, "conditions")) == 1 && have_ready &&
	    condition_same(have_ready, ready)) {
		static const char *const counters[] = { "numberDesired", "numberApplied",
							"numberDegraded" };
		bool same = true;

		for (i = 0; i < KMM_ARRAY_SIZE(counters); i++)
			same = same && json_equal(json_object_get(want, counters[i]),
						  json_object_get(have, counters[i]));
		if (same)
			return 0;
	}
	{
		_cleanup_json_ json_t *patch = json_pack("{s:O}", "status", want);

		if (!patch)
			return kmm_error_make(err, ENOMEM, "out of memory");
		if (kmm_op_patch(&op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err) < 0)
			return kmm_error_wrap(err, "patch status");
	}
	return 0;
}

/* ---- reconcile ---- */

static int64_t hub_reconcile(struct kmm_op_engine *op, void *state, const char *key,
			     struct kmm_error **err)
{
	_cleanup_obj_unref_ struct kmm_obj *obj =
	    kmm_informer_get(op->cache[KMM_OP_CACHE_MCMS], key);
	_cleanup_(kmm_mcm_freep) struct kmm_mcm *mcm = NULL;
	_cleanup_strv_free_ char **keep = NULL;
	_cleanup_free_ char *failed = NULL;
	struct kmm_hub_progress progress = {};
	struct kmm_obj **clusters = NULL;
	size_t n = 0;
	int r;

	if (!obj || kmm_obj_str(obj, "metadata.deletionTimestamp")) {
		r = collect(op, key, NULL, err);
		return r < 0 ? kmm_error_wrap(err, "reconcile %s", key) : 0;
	}
	r = kmm_mcm_from_json(kmm_obj_json(obj), 0, &mcm, err);
	if (r < 0)
		return kmm_error_wrap(err, "reconcile %s", key);
	keep = calloc(1, sizeof(*keep));
	if (!keep || kmm_informer_list(op->cache[KMM_OP_CACHE_MANAGEDCLUSTERS], &clusters, &n) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		_cleanup_json_ json_t *c = kmm_obj_to_json(clusters[i]);
		const char *cluster = kmm_obj_str(clusters[i], "metadata.name");
		const char *claim = kmm_hub_cluster_claim(c, KMM_CLAIM_KERNEL_VERSIONS);
		struct kmm_error *e = NULL;

		if (!c || !cluster || !kmm_op_selector_matches(&mcm->selector, c))
			continue;
		if (kmm_strv_push(&keep, cluster) < 0) {
			r = -ENOMEM;
			break;
		}
		if (!claim)
			continue; /* not reporting kernels yet: leave what it has */
		r = sync_cluster(op, mcm, cluster, claim, &e);
		progress.waiting += r > 0;
		if (r < 0) {
			/* One cluster's trouble (a registry down) must not hold the others. */
			char *joined = NULL;

			if (asprintf(&joined, "%s%scluster %s: %s", failed ? failed : "",
				     failed ? "; " : "", cluster, kmm_error_message(e)) >= 0) {
				free(failed);
				failed = joined;
			}
			kmm_error_free(e);
			r = 0;
		}
	}
	kmm_obj_array_free(clusters, n);
	if (r == -ENOMEM)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = collect(op, mcm->name, keep, err);
	progress.failed = failed;
	if (r >= 0)
		r = patch_status(op, obj, mcm->name, &progress, err);
	if (r < 0)
		return kmm_error_wrap(err, "reconcile %s", key);
	if (failed)
		return kmm_error_make(err, EAGAIN, "reconcile %s: %s", key, failed);
	return 0;
}

/* ---- watches ---- */

static void enqueue_mcm(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			const struct kmm_obj *obj, enum kmm_op_event ev)
{
	kmm_op_ctl_enqueue(op->ctl[KMM_OP_HUB], kmm_obj_key(obj));
}

static bool mcm_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			const struct kmm_obj *obj)
{
	static const char *const paths[] = { "metadata.generation", "metadata.uid",
					     "metadata.deletionTimestamp" };

	return kmm_op_obj_paths_differ(old, obj, paths, KMM_ARRAY_SIZE(paths));
}

/* A cluster's labels or claims moved: every MCM may select it now, or no longer. */
static void enqueue_all(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			const struct kmm_obj *obj, enum kmm_op_event ev)
{
	struct kmm_obj **mcms = NULL;
	size_t n = 0;

	if (kmm_informer_list(op->cache[KMM_OP_CACHE_MCMS], &mcms, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		kmm_op_ctl_enqueue(op->ctl[KMM_OP_HUB], kmm_obj_key(mcms[i]));
	kmm_obj_array_free(mcms, n);
}

static void enqueue_owner(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			  const struct kmm_obj *obj, enum kmm_op_event ev)
{
	const char *mcm = kmm_obj_label(obj, KMM_LABEL_MCM_NAME);

	if (mcm)
		kmm_op_ctl_enqueue(op->ctl[KMM_OP_HUB], mcm);
}

/*
 * Only labels and claims count: OCM's registration agent updates a cluster's
 * status (leases, conditions, capacity) all the time.
 */
static bool cluster_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			    const struct kmm_obj *obj)
{
	static const char *const paths[] = { "metadata.labels", "status.clusterClaims" };

	return kmm_op_obj_paths_differ(old, obj, paths, KMM_ARRAY_SIZE(paths));
}

static const struct kmm_op_watch hub_watches[] = {
	{ KMM_OP_CACHE_MCMS, mcm_changed, enqueue_mcm },
	{ KMM_OP_CACHE_MANAGEDCLUSTERS, cluster_changed, enqueue_all },
	{ KMM_OP_CACHE_MANIFESTWORKS, NULL, enqueue_owner },
	{ KMM_OP_CACHE_MICS, NULL, enqueue_owner },
};

/* ---- state ---- */

static void hub_state_free(void *state)
{
	struct hub_state *s = state;

	if (!s)
		return;
	kmm_registry_policy_free(s->policy);
	kmm_hashmap_free(s->digests);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int hub_state_new(struct kmm_op_engine *op, void **ret_state, struct kmm_error **err)
{
	struct hub_state *s = calloc(1, sizeof(*s));

	if (!s)
		return kmm_error_make(err, ENOMEM, "out of memory");
	pthread_mutex_init(&s->lock, NULL);
	if (!(s->digests = kmm_hashmap_new(digest_entry_free))) {
		hub_state_free(s);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	if (kmm_registry_policy_new((const char *const *)op->cfg.registry_allowed_networks,
				    (const char *const *)op->cfg.registry_denied_networks,
				    &s->policy, err) < 0) {
		hub_state_free(s);
		return -EINVAL;
	}
	*ret_state = s;
	return 0;
}

const struct kmm_op_reconciler kmm_op_hub_reconciler = {
	.name = "managedclustermodule",
	.log_name = "hub",
	.watches = hub_watches,
	.n_watches = KMM_ARRAY_SIZE(hub_watches),
	.state_new = hub_state_new,
	.state_free = hub_state_free,
	.reconcile = hub_reconcile,
	.modes = KMM_OP_MODE_HUB,
};
