/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Module reconciler (reference §3.2, §3.8): decides, for every node, whether
 * the Module belongs in that node's NodeModulesConfig and with which config.
 * Reads top to bottom:
 *
 *   deleting?  -> take the Module out of every NMC; once no NMC says the
 *                 module may still be loaded (in-use label), release the
 *                 finalizer and the namespace label with the last Module;
 *   otherwise  -> namespace label and finalizer; for each node: targeted
 *                 (selector + taints) and mapped (kernel mapping) -> its
 *                 image goes into the ModuleImagesConfig (one per Module,
 *                 images deduplicated; mic.c decides whether each exists,
 *                 or has it built and signed), and once the MIC says the
 *                 image Exists -> upsert the NMC entry; not targeted ->
 *                 remove it; then the status counts and conditions.
 *
 * Writes are JSON patches whose "test" operations pin the entry they
 * change, so a concurrent writer makes them fail (and retry) instead of
 * overwriting each other; our own writes are read back through the NMC
 * overlay, never from a stale cache.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmm/shared-json.h"
#include "kmm/shared-log.h"
#include "kmm/shared-strv.h"
#include "engine-internal.h"

/* What the Module reconciler keeps between reconciles. */
struct module_state {
	struct kmm_op_nmc_digests *nmc_digests; /* each NMC's entries, as digests per version */
	pthread_mutex_t nmc_create_locks[32];	/* one NMC POST per node at a time */
	pthread_mutex_t status_lock;
	struct kmm_hashmap *status_times; /* "ns/name" -> int64_t*: last status write, mono ms */
	struct kmm_metric *g_modules, *g_build, *g_sign, *g_device_plugin, *g_modprobe_args;
};

static struct module_state *module_state(struct kmm_op_engine *op)
{
	return op->state[KMM_OP_MODULE];
}

static void enqueue_all_modules(struct kmm_op_engine *op)
{
	struct kmm_obj **objs = NULL;
	size_t n = 0;

	if (!op->cache[KMM_OP_CACHE_MODULES] ||
	    kmm_informer_list(op->cache[KMM_OP_CACHE_MODULES], &objs, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		kmm_op_ctl_enqueue(op->ctl[KMM_OP_MODULE], kmm_obj_key(objs[i]));
	kmm_obj_array_free(objs, n);
}

/* ---- NMC entries ---- */

static json_t *desired_entry(const struct kmm_module *m, const struct kmm_module_config *c)
{
	const struct kmm_module_loader *ml = m->spec.module_loader;
	json_t *e = json_pack("{s:s, s:s, s:s, s:o}", "name", m->name, "namespace", m->namespace,
			      "serviceAccountName",
			      ml->service_account_name && *ml->service_account_name
				  ? ml->service_account_name
				  : "default",
			      "config", kmm_module_config_to_json(c));

	if (!e)
		return NULL;
	if (m->spec.image_repo_secret)
		json_object_set_new(e, "imageRepoSecret",
				    json_pack("{s:s}", "name", m->spec.image_repo_secret));
	if (m->spec.n_tolerations)
		json_object_set_new(
		    e, "tolerations",
		    kmm_tolerations_to_json(m->spec.tolerations, m->spec.n_tolerations));
	if (ml->container.version && *ml->container.version)
		json_object_set_new(e, "version", json_string(ml->container.version));
	return e;
}

static json_t *find_entry(const json_t *nmc, const char *ns, const char *name, size_t *ret_i)
{
	const json_t *arr = json_object_get(json_object_get(nmc, "spec"), "modules");
	json_t *e;
	size_t i;

	json_array_foreach (arr, i, e) {
		if (strcmp(str(e, "namespace") ?: "", ns) == 0 &&
		    strcmp(str(e, "name") ?: "", name) == 0) {
			if (ret_i)
				*ret_i = i;
			return e;
		}
	}
	return NULL;
}

static bool entry_equal(const json_t *have, const json_t *want)
{
	static const char *const keys[] = { "name", "namespace", "serviceAccountName", "version" };
	const json_t *ta = json_object_get(have, "tolerations"),
		     *tb = json_object_get(want, "tolerations");
	bool eq = true;

	if (json_equal(have, want))
		return true; /* the usual case: we wrote it */
	for (size_t i = 0; i < KMM_ARRAY_SIZE(keys) && eq; i++)
		eq = strcmp(str(have, keys[i]) ?: "", str(want, keys[i]) ?: "") == 0;
	eq = eq && strcmp(str(json_object_get(have, "imageRepoSecret"), "name") ?: "",
			  str(json_object_get(want, "imageRepoSecret"), "name") ?: "") == 0;
	eq = eq && (json_array_size(ta) == 0 ? json_array_size(tb) == 0 : json_equal(ta, tb));
	return eq && kmm_module_config_json_equal(json_object_get(have, "config"),
						  json_object_get(want, "config"));
}

static size_t name_hash(const char *s)
{
	size_t h = 5381;

	for (; *s; s++)
		h = h * 33 + (unsigned char)*s;
	return h;
}

static int add_op(json_t *ops, const char *op, const char *path, json_t *value)
{
	json_t *o = json_pack("{s:s, s:s}", "op", op, "path", path);

	if (!o || (value && json_object_set_new(o, "value", value) < 0))
		return -ENOMEM;
	return json_array_append_new(ops, o);
}

static int label_ops(json_t *ops, const json_t *nmc, const char *const *keys, bool add)
{
	const json_t *labels = json_object_get(json_object_get(nmc, "metadata"), "labels");

	if (add && !labels) {
		json_t *all = json_object();

		for (size_t i = 0; keys[i]; i++)
			json_object_set_new(all, keys[i], json_string(""));
		return add_op(ops, "add", "/metadata/labels", all);
	}
	for (size_t i = 0; keys[i]; i++) {
		_cleanup_free_ char *esc = kmm_json_pointer_escape(keys[i]);
		char path[600];

		if (!esc)
			return -ENOMEM;
		if (!add && !json_object_get(labels, keys[i]))
			continue;
		snprintf(path, sizeof(path), "/metadata/labels/%s", esc);
		if (add_op(ops, add ? "add" : "remove", path, add ? json_string("") : NULL) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* A new NMC for node, holding entry: the Module's labels, owned by the Node. */
static json_t *new_nmc(const struct kmm_obj *node, const struct kmm_module *m, const json_t *entry)
{
	_cleanup_free_ char *cl = kmm_op_nmc_configured_label(m->namespace, m->name);
	_cleanup_free_ char *ul = kmm_op_nmc_in_use_label(m->namespace, m->name);
	const char *name = kmm_obj_key(node);

	if (!cl || !ul)
		return NULL;
	return json_pack("{s:s, s:s, s:{s:s, s:{s:s, s:s}, s:[{s:s, s:s, s:s, s:s}]}, s:{s:[O]}}",
			 "apiVersion", KMM_API_VERSION, "kind", "NodeModulesConfig", "metadata",
			 "name", name, "labels", cl, "", ul, "", "ownerReferences", "apiVersion",
			 "v1", "kind", "Node", "name", name, "uid",
			 kmm_obj_str(node, "metadata.uid") ?: "", "spec", "modules", entry);
}

/*
 * True when the NMC already says what entry (NULL: no entry; digest: its
 * kmm_op_nmc_entry_digest()) wants, judged from the NMC's digest: no DOM of
 * the NMC is built. False when unsure.
 */
static bool nmc_up_to_date(struct kmm_op_engine *op, const char *name, const struct kmm_module *m,
			   const json_t *entry, const unsigned char *digest)
{
	struct kmm_op_nmc_module st;

	if (kmm_op_nmc_module_get(module_state(op)->nmc_digests, op->overlay[KMM_OP_CACHE_NMCS],
				  op->cache[KMM_OP_CACHE_NMCS], name, m->namespace, m->name,
				  &st) < 0)
		return false;
	if (!entry)
		return !st.in_spec && !st.configured_label;
	return st.in_spec && st.configured_label && st.in_use_label &&
	       memcmp(digest, st.entry_digest, KMM_OP_ENTRY_DIGEST_LEN) == 0;
}

/*
 * The JSON patch that makes nmc carry entry (NULL: not carry the Module's
 * entry), labels included: an empty array when it already does, NULL when
 * out of memory.
 */
static json_t *entry_patch(const json_t *nmc, const struct kmm_module *m, json_t *entry)
{
	_cleanup_json_ json_t *ops = json_array();
	_cleanup_free_ char *cl = kmm_op_nmc_configured_label(m->namespace, m->name);
	_cleanup_free_ char *ul = kmm_op_nmc_in_use_label(m->namespace, m->name);
	const json_t *have;
	size_t i = 0;
	char path[64];

	if (!ops || !cl || !ul)
		return NULL;
	const char *add_keys[] = { cl, ul, NULL }, *rm_keys[] = { cl, NULL };

	have = find_entry(nmc, m->namespace, m->name, &i);
	if (entry ? (have && entry_equal(have, entry) && kmm_op_label(nmc, cl) &&
		     kmm_op_label(nmc, ul))
		  : (!have && !kmm_op_label(nmc, cl)))
		return TAKE_PTR(ops);
	if (have) {
		snprintf(path, sizeof(path), "/spec/modules/%zu/name", i);
		add_op(ops, "test", path, json_string(m->name));
		snprintf(path, sizeof(path), "/spec/modules/%zu/namespace", i);
		add_op(ops, "test", path, json_string(m->namespace));
		snprintf(path, sizeof(path), "/spec/modules/%zu", i);
		add_op(ops, entry ? "replace" : "remove", path, entry ? json_incref(entry) : NULL);
	} else if (entry) {
		if (json_object_get(json_object_get(nmc, "spec"), "modules")) {
			add_op(ops, "add", "/spec/modules/-", json_incref(entry));
		} else {
			add_op(ops, "test", "/metadata/resourceVersion",
			       json_string(kmm_kube_meta_str(nmc, "resourceVersion")));
			add_op(ops, "add", "/spec/modules", json_pack("[O]", entry));
		}
	}
	if (label_ops(ops, nmc, entry ? add_keys : rm_keys, entry != NULL) < 0)
		return NULL;
	return TAKE_PTR(ops);
}

/* ---- finalizer, namespace label, status ---- */

static bool has_finalizer(const struct kmm_module *m)
{
	const json_t *f;
	size_t i;

	json_array_foreach (json_object_get(m->metadata, "finalizers"), i, f) {
		if (strcmp(json_string_value(f) ?: "", KMM_FINALIZER_MODULE) == 0)
			return true;
	}
	return false;
}

static int set_finalizer(struct kmm_op_engine *op, const struct kmm_module *m, bool on,
			 struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_op_modules, m->namespace, m->name, NULL };
	const json_t *cur = json_object_get(m->metadata, "finalizers");
	_cleanup_json_ json_t *list = json_array(), *patch = NULL;
	const json_t *f;
	size_t i;
	int r;

	json_array_foreach (cur, i, f) {
		if (strcmp(json_string_value(f) ?: "", KMM_FINALIZER_MODULE) != 0)
			json_array_append(list, (json_t *)f);
	}
	if (on)
		json_array_append_new(list, json_string(KMM_FINALIZER_MODULE));
	patch = json_pack("{s:{s:O, s:s}}", "metadata", "finalizers", list, "resourceVersion",
			  str(m->metadata, "resourceVersion") ?: "");
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = kmm_op_patch(&op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err);
	if (r == -ENOENT && !on) { /* already gone: our earlier removal went through */
		kmm_error_free(*err);
		*err = NULL;
		return 0;
	}
	if (r < 0)
		return kmm_error_wrap(err, "%s finalizer", on ? "add" : "remove");
	return 0;
}

static int namespace_label(struct kmm_op_engine *op, const char *ns, bool on,
			   struct kmm_error **err)
{
	_cleanup_obj_unref_ struct kmm_obj *o =
	    kmm_informer_get(op->cache[KMM_OP_CACHE_NAMESPACES], ns);
	struct kmm_kube_target t = { &kmm_kube_namespaces, NULL, ns, NULL };
	_cleanup_json_ json_t *patch = NULL;
	bool has = o && kmm_op_label(kmm_obj_json(o), KMM_LABEL_NAMESPACE_CONTAINS_MODULES);

	if (has == on || (!o && !on))
		return 0;
	patch = json_pack("{s:{s:{s:o}}}", "metadata", "labels",
			  KMM_LABEL_NAMESPACE_CONTAINS_MODULES, on ? json_string("") : json_null());
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (kmm_op_patch(&op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err) < 0)
		return kmm_error_wrap(err, "label namespace %s", ns);
	return 0;
}

static bool last_in_namespace(struct kmm_op_engine *op, const struct kmm_module *m)
{
	struct kmm_obj **objs = NULL;
	size_t n = 0;
	bool last = true;

	if (kmm_informer_list(op->cache[KMM_OP_CACHE_MODULES], &objs, &n) < 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		const json_t *j = kmm_obj_json(objs[i]);

		if (strcmp(kmm_kube_meta_str(j, "namespace") ?: "", m->namespace) == 0 &&
		    strcmp(kmm_kube_meta_str(j, "name") ?: "", m->name) != 0)
			last = false;
	}
	kmm_obj_array_free(objs, n);
	return last;
}

struct counts {
	int matching, desired, available;
	char *progress; /* why not everything is loaded yet (first few reasons) */
	int n_reasons;
};

static void add_reason(struct counts *c, const char *a, const char *b)
{
	char *next = NULL;

	c->n_reasons++;
	if (c->n_reasons > 3)
		return;
	if (asprintf(&next, "%s%s%s%s", c->progress ? c->progress : "", c->progress ? "; " : "", a,
		     b) >= 0) {
		free(c->progress);
		c->progress = next;
	}
}

/* The last non-empty line of a container's termination message (the tail of its
 * log), without control characters, at most size - 1 bytes of it. */
static void last_line(const char *msg, char *out, size_t size)
{
	const char *end, *start;
	size_t n = 0;

	out[0] = '\0';
	if (!msg)
		return;
	end = msg + strlen(msg);
	while (end > msg && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
		end--;
	start = end;
	while (start > msg && start[-1] != '\n')
		start--;
	for (const char *p = start; p < end && n + 1 < size; p++)
		out[n++] = (unsigned char)*p < 0x20 ? ' ' : *p;
	out[n] = '\0';
}

bool kmm_op_worker_pod_trouble(const struct kmm_obj *pod, char *why, size_t size)
{
	/* Only the two status arrays are parsed, from the compact object. */
	_cleanup_json_ json_t *css = kmm_obj_get_json(pod, "status.containerStatuses");
	_cleanup_json_ json_t *icss = kmm_obj_get_json(pod, "status.initContainerStatuses");
	const json_t *cs = json_array_get(css, 0), *ics = kmm_op_worker_init_status(icss);
	const json_t *term = json_object_get(json_object_get(cs, "lastState"), "terminated");
	const char *wait = str(json_object_get(json_object_get(ics, "state"), "waiting"), "reason");
	const char *node = kmm_obj_str(pod, "spec.nodeName") ?: "?";

	if (term) {
		char said[256];

		last_line(str(term, "message"), said, sizeof(said));
		snprintf(why, size, "node %s: worker failed %d time(s), last exit code %d (%s)%s%s",
			 node, (int)json_integer_value(json_object_get(cs, "restartCount")),
			 (int)json_integer_value(json_object_get(term, "exitCode")),
			 str(term, "reason") ?: "Error", said[0] ? ": " : "", said);
		return true;
	}
	if (wait && strcmp(wait, "PodInitializing") != 0) {
		snprintf(why, size, "node %s: cannot start the worker: %s", node, wait);
		return true;
	}
	return false;
}

int kmm_op_pod_trouble_index(const struct kmm_obj *pod, char ***ret_values, void *userdata)
{
	const char *ns = kmm_obj_str(pod, "metadata.namespace");
	const char *mod = kmm_obj_label(pod, KMM_LABEL_MODULE_NAME);
	char **out = calloc(1, sizeof(char *));
	char why[256];

	(void)userdata;
	if (!out)
		return -ENOMEM;
	if (ns && mod && kmm_op_worker_pod_trouble(pod, why, sizeof(why)) &&
	    kmm_strv_pushf(&out, "%s/%s", ns, mod) < 0) {
		kmm_strv_free(out);
		return -ENOMEM;
	}
	*ret_values = out;
	return 0;
}

/*
 * Worker pods of this Module that failed at least once: say why. The
 * "trouble" index holds only those, worked out once per pod version: a
 * rollout keeps thousands of healthy worker pods in the cache.
 */
static void pod_reasons(struct kmm_op_engine *op, const struct kmm_module *m, struct counts *c)
{
	struct kmm_obj **objs = NULL;
	size_t n = 0;
	char key[512];

	snprintf(key, sizeof(key), "%s/%s", m->namespace, m->name);
	if (kmm_informer_by_index(op->cache[KMM_OP_CACHE_PODS], "trouble", key, &objs, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		char why[256];

		if (kmm_op_worker_pod_trouble(objs[i], why, sizeof(why)))
			add_reason(c, why, "");
	}
	kmm_obj_array_free(objs, n);
}

static json_t *condition(const struct kmm_module *m, const char *type, bool status,
			 const char *reason, const char *message)
{
	const json_t *old = NULL, *c;
	size_t i;
	char now[64];
	struct tm tm;
	time_t t = time(NULL);

	json_array_foreach (m->status.conditions, i, c) {
		if (strcmp(str(c, "type") ?: "", type) == 0)
			old = c;
	}
	gmtime_r(&t, &tm);
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "type", type, "status",
			 status ? "True" : "False", "reason", reason, "message", message,
			 "lastTransitionTime",
			 old && strcmp(str(old, "status") ?: "", status ? "True" : "False") == 0
			     ? str(old, "lastTransitionTime") ?: now
			     : now,
			 "observedGeneration", (json_int_t)m->generation);
}

static bool conditions_same(const json_t *a, const json_t *b)
{
	const json_t *x;
	size_t i;

	if (json_array_size(a) != json_array_size(b))
		return false;
	json_array_foreach (a, i, x) {
		const json_t *y = json_array_get(b, i);

		if (strcmp(str(x, "type") ?: "", str(y, "type") ?: "") != 0 ||
		    strcmp(str(x, "status") ?: "", str(y, "status") ?: "") != 0 ||
		    strcmp(str(x, "reason") ?: "", str(y, "reason") ?: "") != 0 ||
		    strcmp(str(x, "message") ?: "", str(y, "message") ?: "") != 0 ||
		    !kmm_json_same(json_object_get(x, "observedGeneration"),
				   json_object_get(y, "observedGeneration")))
			return false;
	}
	return true;
}

#define STATUS_MIN_INTERVAL_MS 1000

/* 0 to write the status now (and note the time), else ms to wait. */
static int64_t status_wait_ms(struct kmm_op_engine *op, const struct kmm_module *m)
{
	struct module_state *ms = module_state(op);
	char key[512];
	int64_t now = kmm_now_mono_ms(), *last, r = 0;

	snprintf(key, sizeof(key), "%s/%s", m->namespace, m->name);
	pthread_mutex_lock(&ms->status_lock);
	last = kmm_hashmap_get(ms->status_times, key);
	if (last && now - *last < STATUS_MIN_INTERVAL_MS) {
		r = STATUS_MIN_INTERVAL_MS - (now - *last);
	} else if (last) {
		*last = now;
	} else if ((last = malloc(sizeof(*last)))) {
		*last = now;
		if (kmm_hashmap_put(ms->status_times, key, last, NULL) < 0)
			free(last);
	}
	pthread_mutex_unlock(&ms->status_lock);
	return r;
}

static int patch_status(struct kmm_op_engine *op, const struct kmm_module *m,
			const struct kmm_image_config *mic, struct counts *c,
			struct kmm_error **err)
{
	bool gen = mic && mic->has_status_trigger_generation;
	bool gen_same =
	    gen ? m->status.has_image_rebuild_trigger_generation &&
		      m->status.image_rebuild_trigger_generation == mic->status_trigger_generation
		: !m->status.has_image_rebuild_trigger_generation;
	struct kmm_kube_target t = { &kmm_op_modules, m->namespace, m->name, "status" };
	bool ready = c->desired == c->available && c->n_reasons == 0;
	char msg[128];
	_cleanup_json_ json_t *conds = json_array(), *patch = NULL;
	const struct kmm_daemonset_status *s = &m->status.module_loader;

	snprintf(msg, sizeof(msg), "loaded on %d of %d targeted node(s)", c->available, c->desired);
	json_array_append_new(conds, condition(m, "Ready", ready, ready ? "Loaded" : "Progressing",
					       ready	     ? msg
					       : c->progress ? c->progress
							     : msg));
	json_array_append_new(
	    conds, condition(m, "Progressing", !ready, ready ? "Loaded" : "Progressing", msg));
	if (s->nodes_matching_selector_number == c->matching && s->desired_number == c->desired &&
	    s->available_number == c->available && conditions_same(conds, m->status.conditions) &&
	    gen_same)
		return 0;
	if (!ready) {
		/* While rolling out, progress is written at most once a second. */
		int64_t wait_ms = status_wait_ms(op, m);

		if (wait_ms > 0)
			return (int)wait_ms;
	}
	patch = json_pack("{s:{s:{s:i, s:i, s:i}, s:O}}", "status", "moduleLoader",
			  "nodesMatchingSelectorNumber", c->matching, "desiredNumber", c->desired,
			  "availableNumber", c->available, "conditions", conds);
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (gen)
		json_object_set_new(json_object_get(patch, "status"),
				    "imageRebuildTriggerGeneration",
				    json_integer(mic->status_trigger_generation));
	if (kmm_op_patch(&op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err) < 0)
		return kmm_error_wrap(err, "patch status");
	return 0;
}

/* ---- the reconcile ---- */

static void keep_first(struct kmm_error **first, struct kmm_error *e)
{
	if (!*first)
		*first = e;
	else
		kmm_error_free(e);
}

/*
 * Every NMC write of a reconcile: putting the Module's entry into a node's
 * NMC (creating the NMC if there is none) or taking it out. They go out
 * together, NMC_WRITES_PER_BATCH at a time, each lot one pipelined batch
 * (kmm_op_batch): one after the other, a rollout to 1,000 nodes waited
 * 1,000 round trips before the last node's NMC, and so its worker pod,
 * existed (docs/benchmarks.md, "Where the time goes"). A lot bounds what
 * the prepared requests hold at once. Our writes are read back through the
 * NMC overlay.
 */
#define NMC_WRITES_PER_BATCH 64

struct nmc_write {
	const struct kmm_obj *node;
	json_t *entry; /* a reference; NULL: take the Module's entry out */
	/* a copy: the plans it comes from move as they grow */
	unsigned char digest[KMM_OP_ENTRY_DIGEST_LEN];
	bool create;
	bool lost; /* its create lost to another Module's before it was sent */
	size_t item;
	struct kmm_kube_prepared prep;
};

struct nmc_writer {
	struct kmm_op_engine *op;
	const struct kmm_module *m;
	bool retry; /* writes again what lost a create: patches only */
	struct nmc_write w[NMC_WRITES_PER_BATCH];
	size_t n;
	struct kmm_error *first;
};

static struct nmc_writer *writer_new(struct kmm_op_engine *op, const struct kmm_module *m)
{
	struct nmc_writer *wr = calloc(1, sizeof(*wr));

	if (wr) {
		wr->op = op;
		wr->m = m;
	}
	return wr;
}

static void writer_add(struct nmc_writer *wr, const struct kmm_obj *node, json_t *entry,
		       const unsigned char *digest);
static void writer_flush(struct nmc_writer *wr);

/*
 * The request that makes w's node carry w's entry (NULL: not carry the
 * Module's), not sent: 1 when there is one, 0 when the NMC already says so.
 */
static int prepare_entry(struct kmm_op_engine *op, const struct kmm_module *m, struct nmc_write *w,
			 struct kmm_error **err)
{
	const char *name = kmm_obj_key(w->node);
	_cleanup_json_ json_t *nmc = NULL, *body = NULL;
	int r;

	/* The usual case, for every node on every reconcile: nothing to write, nothing allocated. */
	if (nmc_up_to_date(op, name, m, w->entry, w->entry ? w->digest : NULL))
		return 0;
	nmc =
	    kmm_op_overlay_get(op->overlay[KMM_OP_CACHE_NMCS], op->cache[KMM_OP_CACHE_NMCS], name);
	if (!nmc) {
		struct kmm_kube_target t = { &kmm_op_nmcs, NULL, NULL, NULL };

		if (!w->entry)
			return 0;
		body = new_nmc(w->node, m, w->entry);
		if (!body)
			return kmm_error_make(err, ENOMEM, "out of memory");
		w->create = true;
		r = kmm_op_prepare_create(&t, body, &w->prep, err);
		return r < 0 ? kmm_error_wrap(err, "create NMC %s", name) : 1;
	}
	struct kmm_kube_target t = { &kmm_op_nmcs, NULL, name, NULL };

	body = entry_patch(nmc, m, w->entry);
	if (!body)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (json_array_size(body) == 0)
		return 0;
	r = kmm_op_prepare_patch(&t, KMM_KUBE_PATCH_JSON, body, &w->prep, err);
	return r < 0 ? kmm_error_wrap(err, "%s NMC %s", w->entry ? "update" : "clear", name) : 1;
}

/*
 * w's create lost to another Module's: w again, on its own, now a patch of
 * the NMC the overlay holds. A retry that would create again (the NMC went
 * meanwhile) is an error: the next reconcile starts over.
 */
static void write_again(struct nmc_writer *wr, const struct nmc_write *w)
{
	_cleanup_free_ struct nmc_writer *one = NULL;
	struct kmm_error *e = NULL;

	if (wr->retry) {
		kmm_error_make(&e, EAGAIN, "NMC %s: created concurrently", kmm_obj_key(w->node));
		keep_first(&wr->first, e);
		return;
	}
	one = writer_new(wr->op, wr->m);
	if (!one) {
		kmm_error_make(&e, ENOMEM, "out of memory");
		keep_first(&wr->first, e);
		return;
	}
	one->retry = true;
	writer_add(one, w->node, w->entry, w->entry ? w->digest : NULL);
	writer_flush(one);
	if (one->first)
		keep_first(&wr->first, TAKE_PTR(one->first));
}

/* What the batch did for w. */
static void write_outcome(struct nmc_writer *wr, struct nmc_write *w,
			  const struct kmm_kube_batch_item *items)
{
	struct kmm_op_engine *op = wr->op;
	const char *name = kmm_obj_key(w->node);
	struct kmm_kube_target g = { &kmm_op_nmcs, NULL, name, NULL };
	_cleanup_json_ json_t *out = NULL;
	struct kmm_error *e = NULL;
	int r;

	if (w->lost) {
		write_again(wr, w);
		return;
	}
	r = kmm_kube_batch_item_json(&items[w->item], &out, &e);
	if (r >= 0) {
		kmm_op_overlay_put(op->overlay[KMM_OP_CACHE_NMCS], op->cache[KMM_OP_CACHE_NMCS],
				   out);
		return;
	}
	if (w->create && r == -EEXIST) {
		/* Another Module created it first: read it so that w can patch it. */
		kmm_error_free(e);
		e = NULL;
		if (kmm_op_get(&op->api, &g, &out, &e) >= 0) {
			kmm_op_overlay_put(op->overlay[KMM_OP_CACHE_NMCS],
					   op->cache[KMM_OP_CACHE_NMCS], out);
			write_again(wr, w);
			return;
		}
		kmm_error_wrap(&e, "read NMC %s", name);
	} else {
		kmm_error_wrap(&e, "%s NMC %s",
			       w->create  ? "create"
			       : w->entry ? "update"
					  : "clear",
			       name);
	}
	keep_first(&wr->first, e);
}

static void writer_flush(struct nmc_writer *wr)
{
	struct module_state *ms = module_state(wr->op);
	bool stripe[KMM_ARRAY_SIZE(ms->nmc_create_locks)] = { false };
	struct kmm_kube_batch_item items[NMC_WRITES_PER_BATCH];
	size_t k = 0;

	memset(items, 0, sizeof(items));
	/*
	 * Modules reconciled at once must not all POST the same new NMC: the
	 * stripes of the names created here, taken in ascending order (so two
	 * reconciles never wait on each other) and held across the batch.
	 */
	for (size_t i = 0; i < wr->n; i++)
		if (wr->w[i].create)
			stripe[name_hash(kmm_obj_key(wr->w[i].node)) % KMM_ARRAY_SIZE(stripe)] =
			    true;
	for (size_t i = 0; i < KMM_ARRAY_SIZE(stripe); i++)
		if (stripe[i])
			pthread_mutex_lock(&ms->nmc_create_locks[i]);
	for (size_t i = 0; i < wr->n; i++) {
		struct nmc_write *w = &wr->w[i];
		_cleanup_json_ json_t *now = NULL;

		if (w->create)
			now = kmm_op_overlay_get(wr->op->overlay[KMM_OP_CACHE_NMCS],
						 wr->op->cache[KMM_OP_CACHE_NMCS],
						 kmm_obj_key(w->node));
		if (now) {
			w->lost = true;
			continue;
		}
		w->item = k;
		items[k++].req = w->prep.req;
	}
	if (k > 0)
		(void)kmm_op_batch(&wr->op->api, items, k, NULL); /* every item has its outcome */
	for (size_t i = 0; i < KMM_ARRAY_SIZE(stripe); i++)
		if (stripe[i])
			pthread_mutex_unlock(&ms->nmc_create_locks[i]);
	for (size_t i = 0; i < wr->n; i++)
		write_outcome(wr, &wr->w[i], items);
	kmm_kube_batch_clear(items, k);
	for (size_t i = 0; i < wr->n; i++) {
		kmm_kube_prepared_clear(&wr->w[i].prep);
		json_decref(wr->w[i].entry);
	}
	wr->n = 0;
}

/* Puts entry (NULL: none of the Module's) into node's NMC with the next flush, if it is not there. */
static void writer_add(struct nmc_writer *wr, const struct kmm_obj *node, json_t *entry,
		       const unsigned char *digest)
{
	struct nmc_write *w = &wr->w[wr->n];
	struct kmm_error *e = NULL;
	int r;

	*w = (struct nmc_write){ .node = node, .entry = json_incref(entry) };
	if (entry && digest)
		memcpy(w->digest, digest, sizeof(w->digest));
	r = prepare_entry(wr->op, wr->m, w, &e);
	if (r <= 0) {
		kmm_kube_prepared_clear(&w->prep);
		json_decref(w->entry);
		if (r < 0)
			keep_first(&wr->first, e);
		return;
	}
	if (++wr->n == NMC_WRITES_PER_BATCH)
		writer_flush(wr);
}

static int64_t finalize(struct kmm_op_engine *op, const struct kmm_module *m,
			struct kmm_error **err)
{
	_cleanup_free_ char *ul = kmm_op_nmc_in_use_label(m->namespace, m->name);
	struct kmm_obj **nodes = NULL, **nmcs = NULL;
	size_t n_nodes = 0, n_nmcs = 0;
	struct kmm_error *first = NULL;
	bool in_use = false;

	if (!has_finalizer(m))
		return 0;
	kmm_informer_list(op->cache[KMM_OP_CACHE_NODES], &nodes, &n_nodes);
	{
		_cleanup_free_ struct nmc_writer *wr = writer_new(op, m);

		if (!wr) {
			kmm_obj_array_free(nodes, n_nodes);
			return kmm_error_make(err, ENOMEM, "out of memory");
		}
		for (size_t i = 0; i < n_nodes; i++)
			writer_add(wr, nodes[i], NULL, NULL);
		writer_flush(wr);
		first = wr->first;
	}
	kmm_obj_array_free(nodes, n_nodes);
	kmm_informer_list(op->cache[KMM_OP_CACHE_NMCS], &nmcs, &n_nmcs);
	for (size_t i = 0; i < n_nmcs; i++) {
		_cleanup_json_ json_t *nmc =
		    kmm_op_overlay_get(op->overlay[KMM_OP_CACHE_NMCS], op->cache[KMM_OP_CACHE_NMCS],
				       kmm_obj_key(nmcs[i]));

		if (nmc && kmm_op_label(nmc, ul))
			in_use = true;
	}
	kmm_obj_array_free(nmcs, n_nmcs);
	if (first) {
		*err = first;
		return kmm_error_wrap(err, "unload %s/%s", m->namespace, m->name);
	}
	if (in_use)
		return 0; /* the NMC label change brings us back */
	if (last_in_namespace(op, m) && namespace_label(op, m->namespace, false, err) < 0)
		return -kmm_error_code(*err);
	if (set_finalizer(op, m, false, err) < 0)
		return -kmm_error_code(*err);
	kmm_mapper_cache_forget(op->mappers, m->namespace, m->name);
	kmm_op_log(op, KMM_LOG_INFO, "module unloaded everywhere, finalizer released", "controller",
		   "module", "key", m->name, "namespace", m->namespace, NULL);
	return 0;
}

/* ---- the ModuleImagesConfig ---- */

/* The images the targeted nodes need, and the MIC as the cache shows it. */
struct mic_images {
	json_t *images;		      /* image -> ModuleImageSpec JSON */
	struct kmm_image_config *mic; /* NULL when none yet */
};

static void mic_images_done(struct mic_images *mc)
{
	json_decref(mc->images);
	kmm_image_config_free(mc->mic);
}

static json_t *tls_json(const struct kmm_tls_options *t)
{
	json_t *o = json_object();

	if (o && t->insecure)
		json_object_set_new(o, "insecure", json_true());
	if (o && t->insecure_skip_tls_verify)
		json_object_set_new(o, "insecureSkipTLSVerify", json_true());
	return o;
}

int kmm_op_mic_image_add(json_t *images, const struct kmm_module *m,
			 const struct kmm_resolved_mapping *res)
{
	const char *dir = m->spec.module_loader->container.modprobe.dir_name;
	json_t *e;

	if (json_object_get(images, res->container_image))
		return 0;
	e = json_pack("{s:s, s:s, s:o, s:s}", "image", res->container_image, "kernelVersion",
		      res->kernel, "registryTLS", tls_json(&res->registry_tls), "dirName",
		      dir && *dir ? dir : KMM_DEFAULT_DIR_NAME);
	if (!e)
		return -ENOMEM;
	if (res->build)
		json_object_set_new(e, "build", kmm_build_to_json(res->build));
	if (res->sign)
		json_object_set_new(e, "sign", kmm_sign_to_json(res->sign));
	return json_object_set_new(images, res->container_image, e);
}

static const char *mic_state(const struct mic_images *mc, const char *image)
{
	if (!mc->mic)
		return NULL;
	for (size_t i = 0; i < mc->mic->n_states; i++)
		if (strcmp(mc->mic->states[i].image ?: "", image) == 0)
			return mc->mic->states[i].status;
	return NULL;
}

/* Why the Module's build or sign pod for kernel does not start ("" when it does). */
static void pod_trouble(struct kmm_op_engine *op, const struct kmm_module *m, const char *action,
			const char *kernel, char *buf, size_t size)
{
	_cleanup_free_ char *name = kmm_buildsign_pod_name(m->name, action, kernel);
	_cleanup_obj_unref_ struct kmm_obj *pod = NULL;
	char key[600];

	if (!name)
		return;
	snprintf(key, sizeof(key), "%s/%s", m->namespace, name);
	pod = kmm_informer_get(op->cache[KMM_OP_CACHE_BSPODS], key);
	if (pod && !kmm_op_bspod_trouble(kmm_obj_json(pod), buf, size))
		*buf = 0;
}

/* True when the MIC says the image Exists; else why not, in why. */
static bool image_ready(struct kmm_op_engine *op, const struct kmm_module *m,
			const struct mic_images *mc, const struct kmm_resolved_mapping *res,
			char *why, size_t size)
{
	const char *st = mic_state(mc, res->container_image);
	const char *img = res->container_image;

	if (st && strcmp(st, KMM_IMAGE_EXISTS) == 0)
		return true;
	if (st && (strcmp(st, KMM_IMAGE_NEEDS_BUILDING) == 0 ||
		   strcmp(st, KMM_IMAGE_NEEDS_SIGNING) == 0)) {
		bool build = strcmp(st, KMM_IMAGE_NEEDS_BUILDING) == 0 && res->build;
		char trouble[384] = "";

		pod_trouble(op, m, build ? KMM_ACTION_BUILD : KMM_ACTION_SIGN, res->kernel, trouble,
			    sizeof(trouble));
		snprintf(why, size, "image %s is being %s%s%s%s", img, build ? "built" : "signed",
			 *trouble ? " (pod cannot start: " : "", trouble, *trouble ? ")" : "");
	} else if (st && (res->build || res->sign)) {
		snprintf(why, size, "image %s does not exist and its %s failed", img,
			 res->build ? "build" : "sign");
	} else {
		kmm_op_image_why(op, m->namespace, m->name, img, why, size);
		if (!*why)
			snprintf(why, size,
				 st ? "image %s does not exist"
				    : "image %s: existence not known yet",
				 img);
	}
	return false;
}

static int cmp_image(const void *a, const void *b)
{
	return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "image")) ?: "",
		      json_string_value(json_object_get(*(json_t *const *)b, "image")) ?: "");
}

json_t *kmm_op_mic_spec(const struct kmm_module *m, const json_t *images)
{
	const struct kmm_module_loader_container *c = &m->spec.module_loader->container;
	size_t n = json_object_size(images), i = 0;
	_cleanup_free_ json_t **v = calloc(n ? n : 1, sizeof(*v));
	json_t *arr = json_array(), *spec;
	const char *k;
	json_t *e;

	if (!v || !arr) {
		json_decref(arr);
		return NULL;
	}
	json_object_foreach ((json_t *)images, k, e)
		v[i++] = e;
	qsort(v, n, sizeof(*v), cmp_image);
	for (i = 0; i < n; i++)
		json_array_append(arr, v[i]);
	spec = json_pack(
	    "{s:o, s:b, s:o, s:o, s:o}", "images", arr, "pushBuiltImage", 1, "imageRepoSecret",
	    m->spec.image_repo_secret ? json_pack("{s:s}", "name", m->spec.image_repo_secret)
				      : json_null(),
	    "tolerations",
	    m->spec.n_tolerations
		? kmm_tolerations_to_json(m->spec.tolerations, m->spec.n_tolerations)
		: json_null(),
	    "imageRebuildTriggerGeneration",
	    m->spec.has_image_rebuild_trigger_generation
		? json_integer(m->spec.image_rebuild_trigger_generation)
		: json_null());
	if (spec)
		json_object_set_new(spec, "imagePullPolicy",
				    json_string(c->image_pull_policy && *c->image_pull_policy
						    ? c->image_pull_policy
						    : KMM_DEFAULT_PULL_POLICY));
	return spec;
}

/* Creates or updates the Module's MIC (owned by the Module) when its spec differs. */
static int sync_mic(struct kmm_op_engine *op, const struct kmm_module *m,
		    const struct mic_images *mc, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_op_mics, m->namespace, NULL, NULL };
	_cleanup_json_ json_t *spec = kmm_op_mic_spec(m, mc->images), *want = NULL, *obj = NULL;
	int r;

	if (!spec)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (mc->mic) {
		_cleanup_json_ json_t *cur = kmm_image_config_to_json(mc->mic), *patch = NULL;

		want = kmm_op_image_config_spec_normalized("ModuleImagesConfig", spec);
		if (want && json_equal(want, json_object_get(cur, "spec")))
			return 0;
		patch = json_pack("{s:O}", "spec", spec);
		t.name = m->name;
		if (!patch)
			return kmm_error_make(err, ENOMEM, "out of memory");
		r = kmm_op_patch(&op->api, &t, KMM_KUBE_PATCH_MERGE, patch, NULL, err);
		return r < 0 ? kmm_error_wrap(err, "update MIC") : 0;
	}
	/* Nulls mean "absent" to a merge patch only: a new object leaves them out. */
	{
		const char *k;
		json_t *v;
		void *tmp;

		json_object_foreach_safe (spec, tmp, k, v)
			if (json_is_null(v))
				json_object_del(spec, k);
	}
	obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:[{s:s, s:s, s:s, s:s, s:b, s:b}]}, s:O}",
			"apiVersion", KMM_API_VERSION, "kind", "ModuleImagesConfig", "metadata",
			"name", m->name, "namespace", m->namespace, "ownerReferences", "apiVersion",
			KMM_API_VERSION, "kind", "Module", "name", m->name, "uid",
			str(m->metadata, "uid") ?: "", "controller", 1, "blockOwnerDeletion", 1,
			"spec", spec);
	if (!obj)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = kmm_op_create(&op->api, &t, obj, NULL, err);
	if (r == -EEXIST) { /* the cache is behind: the next reconcile compares */
		kmm_error_free(*err);
		*err = NULL;
		return 0;
	}
	return r < 0 ? kmm_error_wrap(err, "create MIC") : 0;
}

/*
 * What one kernel gets from this Module, worked out once per reconcile: the
 * nodes of a cluster run a handful of kernels, and resolving the mapping,
 * rendering the entry and hashing it per node was most of a reconcile.
 */
struct kernel_plan {
	char *kernel;
	bool mapped;
	bool ready;    /* the image Exists */
	char why[300]; /* when not ready */
	json_t *entry; /* when ready */
	unsigned char digest[KMM_OP_ENTRY_DIGEST_LEN];
};

struct kernel_plans {
	struct kernel_plan *v;
	size_t n;
};

static void kernel_plans_done(struct kernel_plans *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->v[i].kernel);
		json_decref(p->v[i].entry);
	}
	free(p->v);
}

static int kernel_plan(struct kmm_op_engine *op, const struct kmm_module *m, struct mic_images *mc,
		       struct kernel_plans *plans, const char *kernel,
		       const struct kernel_plan **ret, struct kmm_error **err)
{
	_cleanup_(kmm_resolved_mapping_freep) struct kmm_resolved_mapping *res = NULL;
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *cfg = NULL;
	struct kernel_plan p = {}, *grown;
	int r;

	for (size_t i = 0; i < plans->n; i++) {
		if (strcmp(plans->v[i].kernel, kernel) == 0) {
			*ret = &plans->v[i];
			return 0;
		}
	}
	r = kmm_mapper_cache_resolve(op->mappers, m, kernel, &res, err);
	if (r < 0)
		return r; /* not remembered: every node of this kernel reports it */
	p.mapped = r > 0;
	if (p.mapped) {
		if (kmm_op_mic_image_add(mc->images, m, res) < 0)
			return kmm_error_make(err, ENOMEM, "out of memory");
		p.ready = image_ready(op, m, mc, res, p.why, sizeof(p.why));
	}
	if (p.ready) {
		r = kmm_module_config_for(m, res, &cfg, err);
		if (r < 0)
			return r;
		p.entry = desired_entry(m, cfg);
		if (!p.entry || kmm_op_nmc_entry_digest(p.entry, p.digest) < 0) {
			json_decref(p.entry);
			return kmm_error_make(err, ENOMEM, "out of memory");
		}
	}
	p.kernel = strdup(kernel);
	grown = p.kernel ? realloc(plans->v, (plans->n + 1) * sizeof(*grown)) : NULL;
	if (!grown) {
		free(p.kernel);
		json_decref(p.entry);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	plans->v = grown;
	plans->v[plans->n] = p;
	*ret = &plans->v[plans->n++];
	return 0;
}

/*
 * One node: the entry it should carry (NULL: none; a reference to the
 * kernel's plan) and its digest, and whether it counts as targeted. 1
 * without a plan: leave the node's entry as it is.
 */
static int node_entry(struct kmm_op_engine *op, const struct kmm_module *m, struct mic_images *mc,
		      struct kernel_plans *plans, const struct kmm_obj *node, const json_t *tols,
		      struct counts *c, const struct kernel_plan **ret_plan, struct kmm_error **err)
{
	_cleanup_json_ json_t *taints = NULL;
	const char *kernel = kmm_obj_str(node, "status.nodeInfo.kernelVersion");
	const struct kernel_plan *plan = NULL;
	int r;

	/*
	 * Read from the compact cached node, no DOM: this runs for every node
	 * on every Module reconcile (half the CPU of a 1,000 x 10 rollout when
	 * each node was parsed whole).
	 */
	*ret_plan = NULL;
	if (!kmm_op_selector_matches_obj(&m->spec.selector, node))
		return 0;
	taints = kmm_obj_get_json(node, "spec.taints");
	if (!kmm_op_taints_tolerated(taints, tols))
		return 0;
	c->matching++;
	if (!kernel)
		return 0;
	r = kernel_plan(op, m, mc, plans, kernel, &plan, err);
	if (r < 0)
		return r;
	if (!plan || !plan->mapped)
		return 0;
	if (m->spec.module_loader->container.version && *m->spec.module_loader->container.version) {
		/*
		 * Ordered upgrade (reference §3.10, version.c): the node's
		 * version-worker-pod label says which version its NMC carries.
		 * Absent: none (the old version is unloaded). Another version:
		 * the entry stays as it is, and the node keeps the version it
		 * loaded until its label moves on.
		 */
		char label[512];
		const char *v;

		snprintf(label, sizeof(label), KMM_VERSION_WORKER_LABEL_PREFIX "%s.%s",
			 m->namespace, m->name);
		v = kmm_obj_label(node, label);
		if (!v)
			return 0;
		if (strcmp(v, m->spec.module_loader->container.version) != 0)
			return 1;
	}
	if (!plan->ready) {
		add_reason(c, plan->why, "");
		return 1; /* keep an existing entry until the image is there */
	}
	*ret_plan = plan;
	return 1;
}

/* Does the container or any mapping have a `key` (build, sign) section? */
static bool any_section(const json_t *container, const char *key)
{
	const json_t *km;
	size_t i;

	if (json_object_get(container, key))
		return true;
	json_array_foreach (json_object_get(container, "kernelMappings"), i, km) {
		if (json_object_get(km, key))
			return true;
	}
	return false;
}

/* Upstream's gauges, recomputed from the cache (cheap: one pass over the Modules). */
static void update_gauges(struct kmm_op_engine *op)
{
	struct kmm_obj **objs = NULL;
	size_t n = 0;
	int mods = 0, dp = 0, build = 0, sign = 0;

	if (kmm_informer_list(op->cache[KMM_OP_CACHE_MODULES], &objs, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		const json_t *j = kmm_obj_json(objs[i]);
		const json_t *spec = json_object_get(j, "spec");
		const json_t *c =
		    json_object_get(json_object_get(spec, "moduleLoader"), "container");
		const json_t *load = json_object_get(
		    json_object_get(json_object_get(c, "modprobe"), "args"), "load");

		mods++;
		dp += json_object_get(spec, "devicePlugin") != NULL;
		build += any_section(c, "build");
		sign += any_section(c, "sign");
		if (json_array_size(load) > 0) {
			char joined[1024] = "";
			const json_t *a;
			size_t k;

			json_array_foreach (load, k, a) {
				size_t len = strlen(joined);

				snprintf(joined + len, sizeof(joined) - len, "%s%s", k ? "," : "",
					 json_string_value(a) ?: "");
			}
			const char *lv[] = { kmm_kube_meta_str(j, "name"),
					     kmm_kube_meta_str(j, "namespace"), joined };
			kmm_metric_set(module_state(op)->g_modprobe_args, lv, 1);
		}
	}
	kmm_obj_array_free(objs, n);
	kmm_metric_set(module_state(op)->g_modules, NULL, mods);
	kmm_metric_set(module_state(op)->g_device_plugin, NULL, dp);
	kmm_metric_set(module_state(op)->g_build, NULL, build);
	kmm_metric_set(module_state(op)->g_sign, NULL, sign);
}

/* Counts NMC name (overlay first, then cache) for Module m's status. */
static void count_nmc(struct kmm_op_engine *op, const struct kmm_module *m, const char *name,
		      struct counts *c)
{
	struct kmm_op_nmc_module st;

	if (kmm_op_nmc_module_get(module_state(op)->nmc_digests, op->overlay[KMM_OP_CACHE_NMCS],
				  op->cache[KMM_OP_CACHE_NMCS], name, m->namespace, m->name,
				  &st) < 0 ||
	    !st.configured_label)
		return;
	c->desired++;
	if (st.in_spec && st.loaded)
		c->available++;
}

/*
 * Counts from the NMCs as they are now, our writes included: those the cache
 * holds, and those this reconcile created that it does not show yet (without
 * them a first rollout reported Ready on 0 of 0 nodes).
 */
static void count_nmcs(struct kmm_op_engine *op, const struct kmm_module *m,
		       struct kmm_obj *const *nodes, size_t n_nodes, struct counts *c)
{
	struct kmm_obj **nmcs = NULL;
	size_t n = 0;

	kmm_informer_list(op->cache[KMM_OP_CACHE_NMCS], &nmcs, &n);
	for (size_t i = 0; i < n; i++)
		count_nmc(op, m, kmm_obj_key(nmcs[i]), c);
	kmm_obj_array_free(nmcs, n);
	for (size_t i = 0; i < n_nodes; i++) {
		_cleanup_obj_unref_ struct kmm_obj *cached =
		    kmm_informer_get(op->cache[KMM_OP_CACHE_NMCS], kmm_obj_key(nodes[i]));

		if (!cached)
			count_nmc(op, m, kmm_obj_key(nodes[i]), c);
	}
}

static int64_t module_reconcile(struct kmm_op_engine *op, void *state, const char *key,
				struct kmm_error **err)
{
	_cleanup_obj_unref_ struct kmm_obj *obj =
	    kmm_informer_get(op->cache[KMM_OP_CACHE_MODULES], key);
	_cleanup_(kmm_module_freep) struct kmm_module *m = NULL;
	struct kmm_obj **nodes = NULL;
	size_t n_nodes = 0;
	struct counts c = {};
	struct kmm_error *first = NULL;
	_cleanup_obj_unref_ struct kmm_obj *mic_obj = NULL;
	_cleanup_(mic_images_done) struct mic_images mc = {};
	_cleanup_json_ json_t *tols = NULL;
	_cleanup_(kernel_plans_done) struct kernel_plans plans = {};
	_cleanup_free_ struct nmc_writer *wr = NULL;
	int64_t retry_ms = 0;
	int r;

	update_gauges(op);
	if (!obj)
		return 0;
	r = kmm_module_from_json(kmm_obj_json(obj), 0, &m, err);
	if (r < 0)
		return kmm_error_wrap(err, "reconcile %s", key);
	if (!m->namespace)
		return kmm_error_make(err, EINVAL, "reconcile %s: no namespace", key);
	if (json_object_get(m->metadata, "deletionTimestamp")) {
		int64_t fr = finalize(op, m, err);

		return fr < 0 ? kmm_error_wrap(err, "reconcile %s", key) : fr;
	}
	if (namespace_label(op, m->namespace, true, err) < 0 ||
	    (!has_finalizer(m) && set_finalizer(op, m, true, err) < 0))
		return kmm_error_wrap(err, "reconcile %s", key);
	if (!m->spec.module_loader)
		return 0;

	mc.images = json_object();
	mic_obj = kmm_informer_get(op->cache[KMM_OP_CACHE_MICS], key);
	if (mic_obj && kmm_image_config_from_json(kmm_obj_json(mic_obj), 0, &mc.mic, err) < 0)
		return kmm_error_wrap(err, "reconcile %s: MIC", key);
	if (!mc.images || kmm_informer_list(op->cache[KMM_OP_CACHE_NODES], &nodes, &n_nodes) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	tols = kmm_tolerations_to_json(m->spec.tolerations, m->spec.n_tolerations);
	wr = writer_new(op, m);
	if (!wr) {
		kmm_obj_array_free(nodes, n_nodes);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n_nodes; i++) {
		const struct kernel_plan *plan = NULL;
		struct kmm_error *e = NULL;

		r = node_entry(op, m, &mc, &plans, nodes[i], tols, &c, &plan, &e);
		if (r < 0) {
			keep_first(&first, e);
			continue;
		}
		if (r > 0 && !plan)
			continue; /* image unknown yet, or another version: leave the NMC as it is */
		writer_add(wr, nodes[i], plan ? plan->entry : NULL, plan ? plan->digest : NULL);
	}
	writer_flush(wr);
	if (wr->first)
		keep_first(&first, TAKE_PTR(wr->first));
	{
		struct kmm_error *e = NULL;

		if (sync_mic(op, m, &mc, &e) < 0)
			keep_first(&first, e);
	}

	count_nmcs(op, m, nodes, n_nodes, &c);
	kmm_obj_array_free(nodes, n_nodes);
	pod_reasons(op, m, &c);
	if (!first) {
		struct kmm_error *e = NULL;

		r = patch_status(op, m, mc.mic, &c, &e);
		if (r < 0)
			keep_first(&first, e);
		else if (r > 0 && (retry_ms == 0 || r < retry_ms))
			retry_ms = r; /* progress deferred: come back to write it */
	}
	free(c.progress);
	if (first) {
		*err = first;
		return kmm_error_wrap(err, "reconcile %s", key);
	}
	return retry_ms > 0 ? retry_ms : 0;
}

/* ---- watches: what queues a Module ---- */

/* NMC progress and worker pod trouble are batched into one Module reconcile per this many ms. */
#define MODULE_STATUS_BATCH_MS 2000

static void enqueue_module(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			   const struct kmm_obj *obj, enum kmm_op_event ev)
{
	kmm_op_ctl_enqueue(op->ctl[KMM_OP_MODULE], kmm_obj_key(obj));
}

/* Did anything but the status change? Our own status writes must not trigger reconciles. */
static bool module_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			   const struct kmm_obj *obj)
{
	static const char *const paths[] = { "metadata.generation", "metadata.deletionTimestamp",
					     "metadata.finalizers", "metadata.labels",
					     "metadata.annotations" };

	return kmm_op_obj_paths_differ(old, obj, paths, KMM_ARRAY_SIZE(paths));
}

static const json_t *nmc_entry_of(const json_t *nmc, const char *part, const char *ns,
				  const char *name)
{
	const json_t *arr = json_object_get(json_object_get(nmc, part), "modules"), *e;
	size_t i;

	json_array_foreach (arr, i, e) {
		if (strcmp(json_string_value(json_object_get(e, "namespace")) ?: "", ns) == 0 &&
		    strcmp(json_string_value(json_object_get(e, "name")) ?: "", name) == 0)
			return e;
	}
	return NULL;
}

/* Did anything the Module ns/name cares about change between a and b? */
static bool module_part_changed(const json_t *a, const json_t *b, const char *ns, const char *name)
{
	_cleanup_free_ char *cl = kmm_op_nmc_configured_label(ns, name);
	_cleanup_free_ char *ul = kmm_op_nmc_in_use_label(ns, name);

	if (!a || !b || !cl || !ul)
		return true;
	return !kmm_json_same(nmc_entry_of(a, "spec", ns, name),
			      nmc_entry_of(b, "spec", ns, name)) ||
	       !kmm_json_same(nmc_entry_of(a, "status", ns, name),
			      nmc_entry_of(b, "status", ns, name)) ||
	       !kmm_op_label(a, cl) != !kmm_op_label(b, cl) ||
	       !kmm_op_label(a, ul) != !kmm_op_label(b, ul);
}

/*
 * Modules named by an NMC's configured/in-use labels, those whose part
 * changed between old and new (old NULL: all of them).
 */
static void enqueue_nmc_modules(struct kmm_op_engine *op, const json_t *nmc, const json_t *old)
{
	const json_t *labels = json_object_get(json_object_get(nmc, "metadata"), "labels");
	const char *k;
	const json_t *v;
	size_t plen = strlen(KMM_NMC_LABEL_PREFIX);

	json_object_foreach ((json_t *)labels, k, v) {
		const char *rest, *dot, *suffix;
		char ns[256], name[256], key[512];

		if (strncmp(k, KMM_NMC_LABEL_PREFIX, plen) != 0)
			continue;
		rest = k + plen;
		suffix = strstr(rest, ".module-");
		dot = strchr(rest, '.');
		if (!suffix || !dot || dot >= suffix)
			continue;
		snprintf(ns, sizeof(ns), "%.*s", (int)(dot - rest), rest);
		snprintf(name, sizeof(name), "%.*s", (int)(suffix - dot - 1), dot + 1);
		if (old && !module_part_changed(old, nmc, ns, name))
			continue;
		snprintf(key, sizeof(key), "%s/%s", ns, name);
		/*
		 * NMC progress only moves the Module's status counts (and, once
		 * unloaded everywhere, its finalizer): batch it. Node and Module
		 * changes, which move entries, are not delayed.
		 */
		kmm_op_ctl_enqueue_coalesced(op->ctl[KMM_OP_MODULE], key, MODULE_STATUS_BATCH_MS);
	}
}

static void enqueue_from_nmc(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			     const struct kmm_obj *obj, enum kmm_op_event ev)
{
	struct module_state *ms = state;

	if (ev == KMM_OP_DELETED)
		kmm_op_nmc_digests_forget(ms->nmc_digests, kmm_obj_key(obj));
	if (!old) {
		enqueue_nmc_modules(op, kmm_obj_json(obj), NULL);
		return;
	}
	enqueue_nmc_modules(op, kmm_obj_json(obj), kmm_obj_json(old));
	enqueue_nmc_modules(op, kmm_obj_json(old), kmm_obj_json(obj));
}

/* A node's targeting facts (labels, taints, kernel) moved: any Module may select it now. */
static bool node_targeting_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
				   const struct kmm_obj *obj)
{
	return kmm_op_node_change(old, obj) & KMM_OP_NODE_TARGETING;
}

static void enqueue_all(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			const struct kmm_obj *obj, enum kmm_op_event ev)
{
	enqueue_all_modules(op);
}

/* What the Module's Ready condition reports of a worker pod: restarts and waiting reasons. */
static json_t *pod_trouble_facts(const json_t *pod)
{
	const json_t *st = json_object_get(pod, "status");
	const json_t *cs = json_array_get(json_object_get(st, "containerStatuses"), 0);
	const json_t *ics = kmm_op_worker_init_status(json_object_get(st, "initContainerStatuses"));

	return json_pack("{s:O*, s:O*, s:O*}", "restarts", json_object_get(cs, "restartCount"),
			 "init", json_object_get(json_object_get(ics, "state"), "waiting"), "main",
			 json_object_get(json_object_get(cs, "state"), "waiting"));
}

/*
 * The Module only reports on troubled pods: tell it when that changes,
 * batched like NMC progress (every worker pod's start changes its waiting
 * reason; 10,000 starts must not mean 10,000 Module reconciles).
 */
static void enqueue_from_worker_pod(struct kmm_op_engine *op, void *state,
				    const struct kmm_obj *old, const struct kmm_obj *obj,
				    enum kmm_op_event ev)
{
	const json_t *j = kmm_obj_json(obj);
	const char *mod = kmm_op_label(j, KMM_LABEL_MODULE_NAME);
	const char *ns = kmm_kube_meta_str(j, "namespace");
	_cleanup_json_ json_t *now = NULL, *before = NULL;
	char key[512];

	if (!mod || !ns)
		return;
	now = pod_trouble_facts(j);
	before = old ? pod_trouble_facts(kmm_obj_json(old)) : json_object();
	if (now && before &&
	    (ev == KMM_OP_DELETED ? json_object_size(now) > 0 : !json_equal(now, before))) {
		snprintf(key, sizeof(key), "%s/%s", ns, mod);
		kmm_op_ctl_enqueue_coalesced(op->ctl[KMM_OP_MODULE], key, MODULE_STATUS_BATCH_MS);
	}
}

/* A MIC has its Module's name: a new one, or a status that moved, is the Module's news. */
static bool status_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			   const struct kmm_obj *obj)
{
	return kmm_op_status_differs(old, obj);
}

/* The Module's Ready message tells why a build or sign pod does not start. */
static void enqueue_from_bspod(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			       const struct kmm_obj *obj, enum kmm_op_event ev)
{
	const char *ns = kmm_obj_str(obj, "metadata.namespace");
	const char *owner = kmm_obj_label(obj, KMM_LABEL_MODULE_NAME);
	char key[512];

	if (!ns || !owner || ev == KMM_OP_DELETED)
		return;
	snprintf(key, sizeof(key), "%s/%s", ns, owner);
	kmm_op_ctl_enqueue_coalesced(op->ctl[KMM_OP_MODULE], key, 1000);
}

static const struct kmm_op_watch module_watches[] = {
	{ KMM_OP_CACHE_MODULES, module_changed, enqueue_module },
	{ KMM_OP_CACHE_NMCS, NULL, enqueue_from_nmc },
	{ KMM_OP_CACHE_NODES, node_targeting_changed, enqueue_all },
	{ KMM_OP_CACHE_PODS, NULL, enqueue_from_worker_pod },
	{ KMM_OP_CACHE_MICS, status_changed, enqueue_module },
	{ KMM_OP_CACHE_BSPODS, NULL, enqueue_from_bspod },
};

/* ---- state ---- */

static void module_state_free(void *state)
{
	struct module_state *ms = state;

	if (!ms)
		return;
	kmm_op_nmc_digests_free(ms->nmc_digests);
	kmm_hashmap_free(ms->status_times);
	for (size_t i = 0; i < KMM_ARRAY_SIZE(ms->nmc_create_locks); i++)
		pthread_mutex_destroy(&ms->nmc_create_locks[i]);
	pthread_mutex_destroy(&ms->status_lock);
	free(ms);
}

static int module_state_new(struct kmm_op_engine *op, void **ret_state, struct kmm_error **err)
{
	static const char *const args[] = { "name", "namespace", "modprobeArgs", NULL };
	struct module_state *ms = calloc(1, sizeof(*ms));
	int r;

	if (!ms)
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < KMM_ARRAY_SIZE(ms->nmc_create_locks); i++)
		pthread_mutex_init(&ms->nmc_create_locks[i], NULL);
	pthread_mutex_init(&ms->status_lock, NULL);
	ms->nmc_digests = kmm_op_nmc_digests_new();
	ms->status_times = kmm_hashmap_new(free);
	if (!ms->nmc_digests || !ms->status_times) {
		module_state_free(ms);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	/* Upstream's gauges (reference §3.15), refreshed by every Module reconcile. */
	r = kmm_metrics_register(op->metrics, KMM_METRIC_GAUGE, "kmm_module_num",
				 "Number of existing KMM modules", NULL, NULL, 0, &ms->g_modules,
				 err);
	if (r >= 0)
		r = kmm_metrics_register(op->metrics, KMM_METRIC_GAUGE, "kmm_in_cluster_build_num",
					 "Number of existing KMM modules with in-cluster build "
					 "defined",
					 NULL, NULL, 0, &ms->g_build, err);
	if (r >= 0)
		r = kmm_metrics_register(op->metrics, KMM_METRIC_GAUGE, "kmm_in_cluster_sign_num",
					 "Number of existing KMM modules with in-cluster sign "
					 "defined",
					 NULL, NULL, 0, &ms->g_sign, err);
	if (r >= 0)
		r = kmm_metrics_register(op->metrics, KMM_METRIC_GAUGE, "kmm_device_plugin_num",
					 "Number of existing KMM modules with device plugin "
					 "defined",
					 NULL, NULL, 0, &ms->g_device_plugin, err);
	if (r >= 0)
		r = kmm_metrics_register(op->metrics, KMM_METRIC_GAUGE, "kmm_modprobe_args",
					 "for a given module, the modprobe arguments used", args,
					 NULL, 0, &ms->g_modprobe_args, err);
	if (r < 0) {
		module_state_free(ms);
		return r;
	}
	*ret_state = ms;
	return 0;
}

const struct kmm_op_reconciler kmm_op_module_reconciler = {
	.name = "module",
	.log_name = "module",
	.watches = module_watches,
	.n_watches = KMM_ARRAY_SIZE(module_watches),
	.state_new = module_state_new,
	.state_free = module_state_free,
	.reconcile = module_reconcile,
};
