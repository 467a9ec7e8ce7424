/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NodeModulesConfig reconciler (reference §3.5): one NMC per node; its spec
 * says which modules should be loaded there, its status what the worker
 * pods reported. Reads top to bottom:
 *
 *   1. record the results of finished worker pods in the status;
 *   2. drop statuses of modules that vanished with a reboot;
 *   3. patch the status, then release and delete the processed pods;
 *   4. start loaders/unloaders where spec and status disagree;
 *   5. keep the node's ready labels and the NMC's in-use labels true.
 *
 * Only the status patch goes out alone (the pods hold their results until
 * it is recorded); the writes of steps 3-5 and the Events are collected and
 * sent together as one batch at the end.
 *
 * Differences from upstream, on purpose: the ready label requires the
 * module to have been loaded since the node's last boot (upstream #1083);
 * worker pods of modules in neither spec nor status are deleted whatever
 * their phase (#1004); an unloader that cannot pull its image for
 * unload_pull_timeout_s is given up with a Warning event (#1004, see
 * docs/operator.md).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmm/controller-events.h"
#include "kmm/shared-json.h"
#include "kmm/shared-log.h"
#include "kmm/shared-strv.h"
#include "engine-internal.h"

/* What the NMC reconciler keeps between reconciles: what the pod cache may not show yet. */
struct nmc_reconciler_state {
	struct kmm_op_keyset *pods_created;  /* "ns/name" created, not yet in the cache */
	struct kmm_op_keyset *pods_released; /* uids released, not yet gone from the cache */
	/* Events that failed retryably, kept for a later reconcile (kmm/controller-events.h has the bounds). */
	struct kmm_event_queue *events;
};

static struct nmc_reconciler_state *nmc_reconciler_state(struct kmm_op_engine *op)
{
	return op->state[KMM_OP_NMC];
}

/* A worker pod of this node, as the cache shows it. */
struct wpod {
	const json_t *j;
	const char *name, *ns, *module;
	bool load;
	const char *phase;
	bool deleting;
	int restarts;
	const char *waiting; /* init container waiting reason, e.g. ImagePullBackOff */
	bool handled;	     /* result taken or pod condemned */
};

struct outbox;

struct nmc_state {
	struct kmm_op_engine *op;
	const char *name;
	json_t *nmc; /* freshest NMC */
	const json_t *node;
	const char *boot_id;
	json_t *status; /* new status.modules (array) */
	bool status_dirty;
	struct wpod *pods;
	size_t n_pods;
	char **events; /* triples: type, reason, module key */
	struct outbox *out;
	int64_t requeue_ms;
	struct kmm_error *errs;
};

static const json_t *spec_modules(const json_t *nmc)
{
	return json_object_get(json_object_get(nmc, "spec"), "modules");
}

static json_t *find_entry(const json_t *arr, const char *ns, const char *name, size_t *ret_i)
{
	json_t *e;
	size_t i;

	json_array_foreach (arr, i, e) {
		if (strcmp(str(e, "namespace") ? str(e, "namespace") : "", ns) == 0 &&
		    strcmp(str(e, "name") ? str(e, "name") : "", name) == 0) {
			if (ret_i)
				*ret_i = i;
			return e;
		}
	}
	return NULL;
}

static struct wpod *find_pod(struct nmc_state *s, const char *ns, const char *mod)
{
	for (size_t i = 0; i < s->n_pods; i++)
		if (!s->pods[i].handled && strcmp(s->pods[i].ns, ns) == 0 &&
		    strcmp(s->pods[i].module, mod) == 0)
			return &s->pods[i];
	return NULL;
}

static void note_error(struct nmc_state *s, struct kmm_error *e)
{
	if (!e)
		return;
	if (!s->errs)
		s->errs = e;
	else
		kmm_error_free(e);
}

static struct kmm_module_config *entry_config(const json_t *entry)
{
	struct kmm_module_config *c = NULL;

	if (kmm_module_config_from_json(json_object_get(entry, "config"), "config", 0, &c, NULL) <
	    0)
		return NULL;
	return c;
}

static bool configs_equal(const json_t *a, const json_t *b)
{
	return kmm_module_config_json_equal(json_object_get(a, "config"),
					    json_object_get(b, "config"));
}

/* ---- 1. results of worker pods ---- */

static void load_pods(struct nmc_state *s, struct kmm_obj **objs, size_t n)
{
	s->pods = calloc(n ? n : 1, sizeof(*s->pods));
	if (!s->pods)
		return;
	for (size_t i = 0; i < n; i++) {
		const json_t *j = kmm_obj_json(objs[i]);
		const json_t *st = json_object_get(j, "status");
		const json_t *cs = json_array_get(json_object_get(st, "containerStatuses"), 0);
		const json_t *ics =
		    kmm_op_worker_init_status(json_object_get(st, "initContainerStatuses"));
		struct wpod *p = &s->pods[s->n_pods];

		p->j = j;
		p->name = kmm_kube_meta_str(j, "name");
		p->ns = kmm_kube_meta_str(j, "namespace");
		p->module = kmm_op_label(j, KMM_LABEL_MODULE_NAME);
		if (!p->name || !p->ns || !p->module)
			continue;
		if (s->op && kmm_op_keyset_contains(nmc_reconciler_state(s->op)->pods_released,
						    kmm_kube_meta_str(j, "uid") ?: ""))
			continue; /* we deleted it; the cache has not caught up */
		p->load = strcmp(kmm_op_label(j, KMM_LABEL_WORKER_ACTION) ?: "", "Load") == 0;
		p->phase = str(st, "phase") ?: "Pending";
		p->deleting = json_object_get(json_object_get(j, "metadata"), "deletionTimestamp");
		p->restarts = (int)json_integer_value(json_object_get(cs, "restartCount"));
		p->waiting =
		    str(json_object_get(json_object_get(ics, "state"), "waiting"), "reason");
		if (!p->waiting || strcmp(p->waiting, "PodInitializing") == 0)
			p->waiting =
			    str(json_object_get(json_object_get(cs, "state"), "waiting"), "reason");
		s->n_pods++;
	}
}

/* Status entry for a loader that succeeded: what it loaded, and the boot it loaded into. */
static json_t *status_from_loader(struct nmc_state *s, const struct wpod *p)
{
	const char *text = kmm_op_annotation(p->j, KMM_ANN_WORKER_CONFIG);
	const char *tols = kmm_op_annotation(p->j, KMM_ANN_WORKER_TOLERATIONS);
	const char *version = kmm_op_annotation(p->j, KMM_ANN_WORKER_VERSION);
	const json_t *spec = json_object_get(p->j, "spec");
	const char *secret =
	    str(json_array_get(json_object_get(spec, "imagePullSecrets"), 0), "name");
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *c = NULL;
	json_t *e;

	if (!text || kmm_module_config_parse(text, strlen(text), p->name, &c, NULL) < 0)
		return NULL;
	e = json_pack("{s:s, s:s, s:s, s:o, s:s*}", "name", p->module, "namespace", p->ns,
		      "serviceAccountName", str(spec, "serviceAccountName") ?: "default", "config",
		      kmm_module_config_to_json(c), "bootId", s->boot_id);
	if (!e)
		return NULL;
	if (secret)
		json_object_set_new(e, "imageRepoSecret", json_pack("{s:s}", "name", secret));
	if (tols)
		json_object_set_new(e, "tolerations", json_loads(tols, 0, NULL));
	if (version && *version)
		json_object_set_new(e, "version", json_string(version));
	return e;
}

static void add_event(struct nmc_state *s, const char *type, const char *reason, const char *ns,
		      const char *mod)
{
	kmm_strv_push(&s->events, type);
	kmm_strv_push(&s->events, reason);
	kmm_strv_pushf(&s->events, "%s/%s", ns, mod);
}

static void take_results(struct nmc_state *s)
{
	const json_t *spec = spec_modules(s->nmc);

	for (size_t i = 0; i < s->n_pods; i++) {
		struct wpod *p = &s->pods[i];
		bool wanted = find_entry(spec, p->ns, p->module, NULL) ||
			      find_entry(s->status, p->ns, p->module, NULL);
		size_t at;

		if (strcmp(p->phase, "Succeeded") == 0) {
			p->handled = true;
			if (p->load) {
				json_t *e = status_from_loader(s, p);
				json_t *cur = find_entry(s->status, p->ns, p->module, &at);

				if (!e)
					continue;
				if (cur && json_equal(cur, e)) {
					json_decref(e);
					continue;
				}
				if (cur)
					json_array_set_new(s->status, at, e);
				else
					json_array_append_new(s->status, e);
				add_event(s, "Normal", "ModuleLoaded", p->ns, p->module);
			} else {
				if (!find_entry(s->status, p->ns, p->module, &at))
					continue;
				json_array_remove(s->status, at);
				add_event(s, "Normal", "ModuleUnloaded", p->ns, p->module);
			}
			s->status_dirty = true;
		} else if (strcmp(p->phase, "Failed") == 0 || !wanted || p->deleting) {
			/* failed: retried by a new pod; orphans just go; deleted by someone else */
			p->handled = true;
		}
	}
}

/* ---- 2. reboots and stuck unloaders ---- */

static int64_t age_s(const json_t *pod)
{
	const char *ts = kmm_kube_meta_str(pod, "creationTimestamp");
	struct tm tm = {};

	if (!ts || !strptime(ts, "%Y-%m-%dT%H:%M:%SZ", &tm))
		return 0;
	return (int64_t)(time(NULL) - timegm(&tm));
}

static void drop_vanished(struct nmc_state *s)
{
	const json_t *spec = spec_modules(s->nmc);
	size_t i = 0;

	while (i < json_array_size(s->status)) {
		const json_t *e = json_array_get(s->status, i);
		const char *ns = str(e, "namespace") ?: "", *mod = str(e, "name") ?: "";
		const char *boot = str(e, "bootId");
		struct wpod *p = find_pod(s, ns, mod);
		bool rebooted = s->boot_id && boot && strcmp(boot, s->boot_id) != 0;

		if (!find_entry(spec, ns, mod, NULL) && rebooted && kmm_op_node_ready(s->node)) {
			/* Not wanted and gone with the reboot: nothing to unload. */
			json_array_remove(s->status, i);
			s->status_dirty = true;
			if (p)
				p->handled = true;
			continue;
		}
		bool stuck = p && !p->load && p->waiting && strstr(p->waiting, "Image");

		if (stuck && age_s(p->j) < s->op->unload_pull_timeout_s) {
			/* Nothing will change on its own: look again when the time is up. */
			int64_t ms = (s->op->unload_pull_timeout_s - age_s(p->j)) * 1000 + 500;

			if (!s->requeue_ms || ms < s->requeue_ms)
				s->requeue_ms = ms;
		} else if (stuck) {
			kmm_op_log(s->op, KMM_LOG_WARN, "unloader cannot pull its image, giving up",
				   "controller", "nmc", "key", s->name, "module", mod, "pod",
				   p->name, "reason", p->waiting, NULL);
			add_event(s, "Warning", "ModuleUnloadFailed", ns,
				  mod); /* ns, mod die next */
			json_array_remove(s->status, i);
			s->status_dirty = true;
			p->handled = true;
			continue;
		}
		i++;
	}
}

/* ---- 3. status, then pod cleanup ---- */

static int patch_status(struct nmc_state *s, struct kmm_error **err)
{
	struct kmm_kube_target t = { &kmm_op_nmcs, NULL, s->name, "status" };
	_cleanup_json_ json_t *patch = NULL, *out = NULL;
	int r;

	if (!s->status_dirty)
		return 0;
	patch = json_pack("{s:{s:O}}", "status", "modules", s->status);
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = kmm_op_patch(&s->op->api, &t, KMM_KUBE_PATCH_MERGE, patch, &out, err);
	if (r < 0)
		return kmm_error_wrap(err, "patch status");
	kmm_op_overlay_put(s->op->overlay[KMM_OP_CACHE_NMCS], s->op->cache[KMM_OP_CACHE_NMCS], out);
	return 0;
}

/*
 * Releasing a worker pod: DELETE it (unless it is being deleted already) and
 * take kmm's finalizer off with a JSON patch whose "test" op fails when the
 * finalizer moved in the list. Both requests go out together, the pods of a
 * reconcile all in one batch: a terminal pod is removed once both happened,
 * in either order. A pod already gone (404) is fine; a failed test (409/422)
 * or any other error fails that pod, and the reconcile retries it. A released
 * pod's uid goes to pods_released, so a cache that lags does not release it
 * again.
 */
struct release {
	const struct wpod *p;
	ssize_t del, fin;      /* its batch items, or -1 */
	struct kmm_error *err; /* building its requests failed */
};

static int finalizer_at(const struct wpod *p, size_t *ret_i)
{
	const json_t *fins = json_object_get(json_object_get(p->j, "metadata"), "finalizers");
	const json_t *f;
	size_t i;

	json_array_foreach (fins, i, f) {
		if (strcmp(json_string_value(f) ?: "", KMM_FINALIZER_WORKER) == 0) {
			*ret_i = i;
			return 0;
		}
	}
	return -ENOENT;
}

/* Adds rel's requests at preps + *n (room for two). */
static int release_prepare(struct release *rel, struct kmm_kube_prepared *preps, size_t *n,
			   struct kmm_error **err)
{
	const struct wpod *p = rel->p;
	struct kmm_kube_target t = { &kmm_kube_pods, p->ns, p->name, NULL };
	_cleanup_json_ json_t *patch = NULL;
	char path[64];
	size_t i;
	int r;

	if (!p->deleting) {
		r = kmm_op_prepare_delete(&t, &preps[*n], err);
		if (r < 0)
			return kmm_error_wrap(err, "delete pod %s/%s", p->ns, p->name);
		rel->del = (ssize_t)(*n)++;
	}
	if (finalizer_at(p, &i) < 0)
		return 0;
	snprintf(path, sizeof(path), "/metadata/finalizers/%zu", i);
	patch = json_pack("[{s:s, s:s, s:s}, {s:s, s:s}]", "op", "test", "path", path, "value",
			  KMM_FINALIZER_WORKER, "op", "remove", "path", path);
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	r = kmm_op_prepare_patch(&t, KMM_KUBE_PATCH_JSON, patch, &preps[*n], err);
	if (r < 0)
		return kmm_error_wrap(err, "release pod %s/%s", p->ns, p->name);
	rel->fin = (ssize_t)(*n)++;
	return 0;
}

/* What the batch did to one pod. */
static int release_outcome(struct kmm_op_engine *op, struct release *rel,
			   const struct kmm_kube_batch_item *items, struct kmm_error **err)
{
	const struct wpod *p = rel->p;
	struct kmm_error *e = NULL;
	int r;

	if (rel->err) {
		r = -kmm_error_code(rel->err);
		*err = TAKE_PTR(rel->err);
		return r;
	}
	if (rel->del >= 0) {
		r = kmm_kube_batch_item_json(&items[rel->del], NULL, &e);
		if (r < 0 && r != -ENOENT) {
			*err = e;
			return kmm_error_wrap(err, "delete pod %s/%s", p->ns, p->name);
		}
		kmm_error_free(e);
		e = NULL;
	}
	if (rel->fin >= 0) {
		r = kmm_kube_batch_item_json(&items[rel->fin], NULL, &e);
		if (r == -ENOENT) {
			kmm_error_free(e);
			return 0; /* gone already */
		}
		if (r < 0) {
			*err = e;
			return kmm_error_wrap(err, "release pod %s/%s", p->ns, p->name);
		}
	}
	if (kmm_kube_meta_str(p->j, "uid"))
		kmm_op_keyset_add(nmc_reconciler_state(op)->pods_released,
				  kmm_kube_meta_str(p->j, "uid"));
	return 0;
}

/* ---- the writes after the status patch: one batch with the Events ---- */

enum out_kind {
	OUT_RELEASE,
	OUT_CREATE,
	OUT_NODE_LABELS,
	OUT_NMC_LABELS
};

struct out_write {
	enum out_kind kind;
	struct release rel;		  /* OUT_RELEASE: its items */
	ssize_t at;			  /* the others: their item */
	enum kmm_op_worker_action action; /* OUT_CREATE */
	const char *ns, *mod;		  /* OUT_CREATE: borrowed from the NMC or s->status */
	char key[512];			  /* OUT_CREATE: "ns/pod name" */
	struct kmm_error *err;		  /* preparing it failed: its outcome */
};

/* Room for every write a reconcile can make, sized from its NMC and pods. */
struct outbox {
	struct out_write *w;
	size_t n, cap;
	struct kmm_kube_prepared *preps; /* two per write at most */
	size_t n_preps;
};

static int outbox_new(struct nmc_state *s, struct outbox **ret)
{
	/* a release or a create per pod and entry, the two label patches */
	size_t cap =
	    s->n_pods + json_array_size(spec_modules(s->nmc)) + json_array_size(s->status) + 2;
	struct outbox *o = calloc(1, sizeof(*o));

	if (!o)
		return -ENOMEM;
	o->w = calloc(cap, sizeof(*o->w));
	o->preps = calloc(2 * cap, sizeof(*o->preps));
	if (!o->w || !o->preps) {
		free(o->w);
		free(o->preps);
		free(o);
		return -ENOMEM;
	}
	o->cap = cap;
	*ret = o;
	return 0;
}

static void outbox_free(struct outbox *o)
{
	if (!o)
		return;
	for (size_t i = 0; i < o->n; i++) {
		kmm_error_free(o->w[i].err);
		kmm_error_free(o->w[i].rel.err);
	}
	for (size_t i = 0; i < o->n_preps; i++)
		kmm_kube_prepared_clear(&o->preps[i]);
	free(o->w);
	free(o->preps);
	free(o);
}

/* The next write's slot (zeroed, kind set), or NULL with an error noted. */
static struct out_write *out_next(struct nmc_state *s, enum out_kind kind)
{
	struct out_write *w;

	if (s->out->n == s->out->cap) {
		struct kmm_error *e = NULL;

		kmm_error_make(&e, ENOBUFS, "more writes than the reconcile made room for (%zu)",
			       s->out->cap);
		note_error(s, e);
		return NULL;
	}
	w = &s->out->w[s->out->n++];
	*w = (struct out_write){ .kind = kind, .at = -1, .rel = { .del = -1, .fin = -1 } };
	return w;
}

static void out_release(struct nmc_state *s, const struct wpod *p)
{
	struct out_write *w = out_next(s, OUT_RELEASE);

	if (!w)
		return;
	w->rel.p = p;
	if (release_prepare(&w->rel, s->out->preps, &s->out->n_preps, &w->rel.err) < 0 &&
	    !w->rel.err)
		kmm_error_make(&w->rel.err, ENOMEM, "release pod %s/%s: out of memory", p->ns,
			       p->name);
}

static void out_patch(struct nmc_state *s, enum out_kind kind, const struct kmm_kube_target *t,
		      const json_t *patch)
{
	struct out_write *w = out_next(s, kind);

	if (!w)
		return;
	if (kmm_op_prepare_patch(t, KMM_KUBE_PATCH_MERGE, patch, &s->out->preps[s->out->n_preps],
				 &w->err) == 0)
		w->at = (ssize_t)s->out->n_preps++;
}

static void release_handled(struct nmc_state *s)
{
	for (size_t i = 0; i < s->n_pods; i++)
		if (s->pods[i].handled)
			out_release(s, &s->pods[i]);
}

static void event_batch(void *userdata, struct kmm_kube_batch_item *items, size_t n)
{
	(void)kmm_op_batch(userdata, items, n, NULL); /* every item has its outcome */
}

static struct kmm_event_queue *event_queue(struct kmm_op_engine *op)
{
	return nmc_reconciler_state(op)->events;
}

/* What the batch did for one write: errors noted, caches told, pods counted. */
static void out_settle(struct nmc_state *s, struct out_write *w,
		       const struct kmm_kube_batch_item *items)
{
	struct kmm_error *e = TAKE_PTR(w->err);
	_cleanup_json_ json_t *obj = NULL;
	bool labels = w->kind == OUT_NODE_LABELS || w->kind == OUT_NMC_LABELS;
	int r;

	if (w->kind == OUT_RELEASE) {
		if (release_outcome(s->op, &w->rel, items, &e) < 0)
			note_error(s, e);
		return;
	}
	if (!e && w->at >= 0) {
		r = kmm_kube_batch_item_json(&items[w->at], labels ? &obj : NULL, &e);
		if (r == -EEXIST && w->kind == OUT_CREATE) {
			/* an earlier pod of that name is still going away: its events queue us */
			kmm_error_free(e);
			return;
		}
	}
	if (e && w->kind == OUT_CREATE)
		kmm_error_wrap(&e, "create %s pod for %s/%s",
			       w->action == KMM_OP_LOAD ? "loader" : "unloader", w->ns, w->mod);
	else if (e)
		kmm_error_wrap(&e, w->kind == OUT_NODE_LABELS ? "patch node labels"
							      : "patch in-use labels");
	if (e) {
		note_error(s, e);
		return;
	}
	switch (w->kind) {
	case OUT_CREATE:
		kmm_op_keyset_add(nmc_reconciler_state(s->op)->pods_created, w->key);
		kmm_op_log(s->op, KMM_LOG_INFO,
			   w->action == KMM_OP_LOAD ? "loader started" : "unloader started",
			   "controller", "nmc", "key", s->name, "module", w->mod, "namespace",
			   w->ns, NULL);
		break;
	case OUT_NODE_LABELS:
		kmm_op_overlay_put(s->op->overlay[KMM_OP_CACHE_NODES],
				   s->op->cache[KMM_OP_CACHE_NODES], obj);
		break;
	case OUT_NMC_LABELS:
		kmm_op_overlay_put(s->op->overlay[KMM_OP_CACHE_NMCS],
				   s->op->cache[KMM_OP_CACHE_NMCS], obj);
		break;
	case OUT_RELEASE:
		break;
	}
}

/*
 * Sends the collected writes as one batch, with the Events reqs[0..k) and
 * the kept ones now due when q is given, and settles each write.
 */
static void outbox_send(struct nmc_state *s, struct kmm_event_queue *q,
			const struct kmm_kube_request *reqs, size_t k)
{
	size_t n_items = s->out->n_preps;
	_cleanup_free_ struct kmm_kube_batch_item *items = calloc(n_items ?: 1, sizeof(*items));
	struct kmm_error *e = NULL;
	int64_t next = -1;

	if (!items) { /* nothing goes out; the reconcile comes back */
		kmm_error_make(&e, ENOMEM, "out of memory");
		note_error(s, e);
		return;
	}
	for (size_t i = 0; i < n_items; i++)
		items[i].req = s->out->preps[i].req;
	if (!q) {
		if (n_items > 0) /* every item has its outcome */
			(void)kmm_op_batch(&s->op->api, items, n_items, NULL);
	} else if (kmm_event_queue_send_with(q, reqs, k, items, n_items, &next, &e) < 0) {
		note_error(s, e); /* every item has that as its outcome too */
	} else if (next >= 0 && (!s->requeue_ms || next + 1 < s->requeue_ms)) {
		s->requeue_ms = next + 1;
	}
	for (size_t i = 0; i < s->out->n; i++)
		out_settle(s, &s->out->w[i], items);
	kmm_kube_batch_clear(items, n_items);
}

/*
 * The collected writes, the Events of this reconcile and the kept ones now
 * due, one batch. Kept Events are not this reconcile's errors: the reconcile
 * comes back when the next is due.
 */
static void send_writes(struct nmc_state *s)
{
	const char *uid = kmm_kube_meta_str(s->node, "uid");
	size_t n = kmm_strv_length(s->events) / 3, k = 0;
	_cleanup_free_ struct kmm_kube_prepared *preps = calloc(n ?: 1, sizeof(*preps));
	_cleanup_free_ struct kmm_kube_request *reqs = calloc(n ?: 1, sizeof(*reqs));
	struct kmm_error *e = NULL;

	if (!preps || !reqs) { /* nothing goes out; the reconcile comes back */
		kmm_error_make(&e, ENOMEM, "out of memory");
		note_error(s, e);
		return;
	}
	for (size_t i = 0; s->events && i < 3 * n; i += 3) {
		const char *type = s->events[i], *reason = s->events[i + 1],
			   *key = s->events[i + 2];
		char msg[600];

		if (strcmp(reason, "ModuleLoaded") == 0)
			snprintf(msg, sizeof(msg), "Module %s loaded into the kernel", key);
		else if (strcmp(reason, "ModuleUnloaded") == 0)
			snprintf(msg, sizeof(msg), "Module %s unloaded from the kernel", key);
		else
			snprintf(msg, sizeof(msg),
				 "Module %s: the unloader could not pull its image; kmm stopped "
				 "trying and the module stays loaded until the node reboots",
				 key);
		kmm_op_log(s->op, KMM_LOG_INFO, reason, "controller", "nmc", "key", s->name,
			   "module", key, NULL);
		if (kmm_op_prepare_event("Node", s->name, uid, type, reason, msg, "module", key,
					 &preps[k], &e) < 0) {
			note_error(s, e);
			e = NULL;
			continue;
		}
		reqs[k] = preps[k].req;
		k++;
	}
	outbox_send(s, event_queue(s->op), reqs, k);
	for (size_t i = 0; i < k; i++)
		kmm_kube_prepared_clear(&preps[i]);
}

/* ---- 4. worker pods ---- */

/*
 * The Secret with the signing certificate when the Module's mapping for
 * `kernel` signs (heap), else NULL: the load pod then refuses modules that
 * key did not sign, even where the kernel does not enforce signatures.
 */
static char *sign_cert_secret(struct kmm_op_engine *op, const char *ns, const char *name,
			      const char *kernel)
{
	_cleanup_(kmm_module_freep) struct kmm_module *m = NULL;
	_cleanup_(kmm_resolved_mapping_freep) struct kmm_resolved_mapping *res = NULL;
	_cleanup_obj_unref_ struct kmm_obj *obj = NULL;
	char key[512];

	if (!kernel || (size_t)snprintf(key, sizeof(key), "%s/%s", ns, name) >= sizeof(key))
		return NULL;
	obj = kmm_informer_get(op->cache[KMM_OP_CACHE_MODULES], key);
	if (!obj || kmm_module_from_json(kmm_obj_json(obj), 0, &m, NULL) < 0 ||
	    kmm_mapper_cache_resolve(op->mappers, m, kernel, &res, NULL) <= 0)
		return NULL;
	if (!res->sign || !res->sign->cert_secret || !*res->sign->cert_secret)
		return NULL;
	return strdup(res->sign->cert_secret);
}

/* Adds the creation of a worker pod for entry to the reconcile's writes. */
static int create_worker(struct nmc_state *s, const json_t *entry, enum kmm_op_worker_action a,
			 struct kmm_error **err)
{
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *c = entry_config(entry);
	const char *mod = str(entry, "name"), *ns = str(entry, "namespace");
	_cleanup_free_ char *cert_secret = a == KMM_OP_LOAD && c && mod && ns
					       ? sign_cert_secret(s->op, ns, mod, c->kernel_version)
					       : NULL;
	struct kmm_kube_target t = { &kmm_kube_pods, ns, NULL, NULL };
	_cleanup_json_ json_t *pod = NULL;
	struct kmm_op_worker_params wp = {
		.action = a,
		.node = s->name,
		.nmc_uid = kmm_kube_meta_str(s->nmc, "uid"),
		.module_name = mod,
		.module_namespace = ns,
		.service_account = str(entry, "serviceAccountName"),
		.image_repo_secret = str(json_object_get(entry, "imageRepoSecret"), "name"),
		.tolerations = json_object_get(entry, "tolerations"),
		.version = str(entry, "version"),
		.config = c,
		.op = &s->op->cfg,
		.sign_cert_secret = cert_secret,
	};
	struct out_write *w;
	char key[512];
	int r;

	if (!c || !mod || !ns)
		return kmm_error_make(err, EINVAL, "entry %s/%s: unreadable config", ns, mod);
	r = kmm_op_worker_pod(&wp, &pod, err);
	if (r < 0)
		return r;
	snprintf(key, sizeof(key), "%s/%s", ns, kmm_kube_meta_str(pod, "name"));
	if (kmm_op_keyset_contains(nmc_reconciler_state(s->op)->pods_created, key))
		return 0; /* created moments ago; the cache will show it */
	{
		/*
		 * Arrived in the cache since load_pods() (the informer stores a
		 * pod before its handler drops the key above), or an earlier pod
		 * of that name is still going away (released in this very
		 * batch, maybe): its events queue us again.
		 */
		_cleanup_obj_unref_ struct kmm_obj *cached =
		    kmm_informer_get(s->op->cache[KMM_OP_CACHE_PODS], key);

		if (cached)
			return 0;
	}
	w = out_next(s, OUT_CREATE);
	if (!w)
		return 0; /* noted */
	w->action = a;
	w->ns = ns;
	w->mod = mod;
	snprintf(w->key, sizeof(w->key), "%s", key);
	if (kmm_op_prepare_create(&t, pod, &s->out->preps[s->out->n_preps], &w->err) == 0)
		w->at = (ssize_t)s->out->n_preps++;
	return 0;
}

/* A loader that keeps failing is replaced when its spec changed meanwhile. */
static void replace_stale_loader(struct nmc_state *s, struct wpod *p, const json_t *entry)
{
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *c = entry_config(entry);
	_cleanup_free_ char *cert_secret =
	    c ? sign_cert_secret(s->op, p->ns, p->module, c->kernel_version) : NULL;
	_cleanup_json_ json_t *pod = NULL;
	struct kmm_op_worker_params wp = {
		.action = KMM_OP_LOAD,
		.node = s->name,
		.nmc_uid = kmm_kube_meta_str(s->nmc, "uid"),
		.module_name = p->module,
		.module_namespace = p->ns,
		.service_account = str(entry, "serviceAccountName"),
		.image_repo_secret = str(json_object_get(entry, "imageRepoSecret"), "name"),
		.tolerations = json_object_get(entry, "tolerations"),
		.version = str(entry, "version"),
		.config = c,
		.op = &s->op->cfg,
		.sign_cert_secret = cert_secret,
	};

	if (!c || kmm_op_worker_pod(&wp, &pod, NULL) < 0)
		return;
	if (strcmp(kmm_op_annotation(pod, KMM_ANN_WORKER_HASH) ?: "",
		   kmm_op_annotation(p->j, KMM_ANN_WORKER_HASH) ?: "") == 0)
		return;
	out_release(s, p);
}

static bool same_kernel(const json_t *a, const json_t *b)
{
	const char *k1 = str(json_object_get(a, "config"), "kernelVersion");
	const char *k2 = str(json_object_get(b, "config"), "kernelVersion");

	return k1 && k2 && strcmp(k1, k2) == 0;
}

/*
 * An unloader waits while a device plugin or DRA driver pod of its Module is
 * on the node: the module is in use until that pod is gone (a drain evicts
 * it with the target label, a lost ready label or the Module's deletion
 * removes it, and its deletion queues the NMC again). Upstream starts the
 * unloader at once and relies on the eviction winning the race.
 */
static bool unload_waits(struct nmc_state *s, const char *ns, const char *mod)
{
	if (!kmm_op_plugin_pod_on(s->op, s->name, ns, mod))
		return false;
	kmm_op_log(s->op, KMM_LOG_DEBUG, "unloader waits for the device plugin to leave",
		   "controller", "nmc", "key", s->name, "module", mod, "namespace", ns, NULL);
	if (!s->requeue_ms || KMM_OP_PLUGIN_WAIT_MS < s->requeue_ms)
		s->requeue_ms = KMM_OP_PLUGIN_WAIT_MS;
	return true;
}

static void sync_spec(struct nmc_state *s)
{
	const json_t *spec = spec_modules(s->nmc), *entry;
	size_t i;

	json_array_foreach (spec, i, entry) {
		const char *ns = str(entry, "namespace") ?: "", *mod = str(entry, "name") ?: "";
		const json_t *st = find_entry(s->status, ns, mod, NULL);
		struct wpod *p = find_pod(s, ns, mod);
		struct kmm_error *e = NULL;
		int r = 0;

		if (!kmm_op_node_schedulable(s->node, json_object_get(entry, "tolerations")))
			continue;
		if (p) {
			if (p->load && p->restarts > 0)
				replace_stale_loader(s, p, entry);
			continue;
		}
		if (st && !configs_equal(entry, st) && same_kernel(entry, st)) {
			/* changed in place: unload the old config first, then load */
			if (!unload_waits(s, ns, mod))
				r = create_worker(s, st, KMM_OP_UNLOAD, &e);
		} else if (!st || !configs_equal(entry, st) ||
			   (s->boot_id && strcmp(str(st, "bootId") ?: "", s->boot_id) != 0)) {
			/* new, another kernel booted, or rebooted: the old module is gone */
			r = create_worker(s, entry, KMM_OP_LOAD, &e);
		}
		if (r < 0)
			note_error(s, e);
	}
}

static void sync_orphans(struct nmc_state *s)
{
	const json_t *spec = spec_modules(s->nmc), *st;
	size_t i;

	json_array_foreach (s->status, i, st) {
		const char *ns = str(st, "namespace") ?: "", *mod = str(st, "name") ?: "";
		struct wpod *p = find_pod(s, ns, mod);
		struct kmm_error *e = NULL;

		if (find_entry(spec, ns, mod, NULL))
			continue;
		if (!p) {
			if (!unload_waits(s, ns, mod) &&
			    create_worker(s, st, KMM_OP_UNLOAD, &e) < 0)
				note_error(s, e);
		} else if (p->load) {
			out_release(s, p);
		}
	}
}

/* ---- 5. labels ---- */

static bool is_ready_label(const char *k)
{
	size_t n = strlen(k), plen = strlen(KMM_NODE_LABEL_PREFIX);

	return n > plen + 6 && strncmp(k, KMM_NODE_LABEL_PREFIX, plen) == 0 &&
	       strcmp(k + n - 6, ".ready") == 0;
}

static int sync_node_labels(struct nmc_state *s, struct kmm_error **err)
{
	const json_t *spec = spec_modules(s->nmc), *entry;
	_cleanup_json_ json_t *fresh = kmm_op_overlay_get(
	    s->op->overlay[KMM_OP_CACHE_NODES], s->op->cache[KMM_OP_CACHE_NODES], s->name);
	const json_t *labels = json_object_get(json_object_get(fresh, "metadata"), "labels");
	_cleanup_json_ json_t *want = json_object(), *patch = NULL;
	json_t *changes;
	const char *k;
	json_t *v;
	size_t i;
	struct kmm_kube_target t = { &kmm_kube_nodes, NULL, s->name, NULL };

	if (!want)
		return kmm_error_make(err, ENOMEM, "out of memory");
	json_array_foreach (spec, i, entry) {
		const char *ns = str(entry, "namespace") ?: "", *mod = str(entry, "name") ?: "";
		const json_t *st = find_entry(s->status, ns, mod, NULL);
		const char *boot = st ? str(st, "bootId") : NULL;
		_cleanup_free_ char *rl = kmm_op_ready_label(ns, mod);
		_cleanup_free_ char *vl = kmm_op_version_ready_label(ns, mod);

		if (!st || !configs_equal(entry, st) ||
		    !kmm_op_node_schedulable(s->node, json_object_get(entry, "tolerations")) ||
		    (s->boot_id && boot && strcmp(boot, s->boot_id) != 0) || !rl || !vl)
			continue;
		json_object_set_new(want, rl, json_string(""));
		if (str(st, "version") && *str(st, "version"))
			json_object_set_new(want, vl, json_string(str(st, "version")));
	}
	changes = json_object();
	patch = json_pack("{s:{s:o}}", "metadata", "labels", changes);
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	json_object_foreach ((json_t *)labels, k, v) {
		if (is_ready_label(k) && !json_object_get(want, k))
			json_object_set_new(changes, k, json_null());
	}
	json_object_foreach (want, k, v) {
		if (!json_equal(v, json_object_get(labels, k)))
			json_object_set(changes, k, v);
	}
	if (json_object_size(changes) > 0)
		out_patch(s, OUT_NODE_LABELS, &t, patch);
	return 0;
}

/* In-use labels go once a module is in neither spec, status nor a worker pod. */
static int sync_in_use_labels(struct nmc_state *s, struct kmm_error **err)
{
	const json_t *labels = json_object_get(json_object_get(s->nmc, "metadata"), "labels");
	const json_t *spec = spec_modules(s->nmc);
	_cleanup_json_ json_t *changes = json_object(), *patch = NULL;
	struct kmm_kube_target t = { &kmm_op_nmcs, NULL, s->name, NULL };
	size_t plen = strlen(KMM_NMC_LABEL_PREFIX);
	const char *k;
	json_t *v;

	if (!changes)
		return kmm_error_make(err, ENOMEM, "out of memory");
	json_object_foreach ((json_t *)labels, k, v) {
		const char *rest = k + plen, *dot, *suffix;
		char ns[256], mod[256];

		if (strncmp(k, KMM_NMC_LABEL_PREFIX, plen) != 0 ||
		    !(suffix = strstr(rest, ".module-in-use")) || !(dot = strchr(rest, '.')) ||
		    dot >= suffix)
			continue;
		snprintf(ns, sizeof(ns), "%.*s", (int)(dot - rest), rest);
		snprintf(mod, sizeof(mod), "%.*s", (int)(suffix - dot - 1), dot + 1);
		if (find_entry(spec, ns, mod, NULL) || find_entry(s->status, ns, mod, NULL))
			continue;
		bool pod = false;
		for (size_t i = 0; i < s->n_pods; i++)
			if (strcmp(s->pods[i].ns, ns) == 0 && strcmp(s->pods[i].module, mod) == 0 &&
			    !s->pods[i].handled)
				pod = true;
		if (!pod)
			json_object_set_new(changes, k, json_null());
	}
	if (json_object_size(changes) == 0)
		return 0;
	patch = json_pack("{s:{s:O}}", "metadata", "labels", changes);
	if (!patch)
		return kmm_error_make(err, ENOMEM, "out of memory");
	out_patch(s, OUT_NMC_LABELS, &t, patch);
	return 0;
}

/* ---- the reconcile ---- */

/* The NMC or its node is gone: the node's worker pods lose their finalizer, one batch. */
static int release_all(struct kmm_op_engine *op, struct kmm_obj **objs, size_t n,
		       struct kmm_error **err)
{
	struct nmc_state s = { .op = op };
	int r;

	load_pods(&s, objs, n);
	if (!s.pods || outbox_new(&s, &s.out) < 0) {
		free(s.pods);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < s.n_pods; i++) {
		s.pods[i].deleting = true; /* only strip the finalizer; the GC deletes */
		out_release(&s, &s.pods[i]);
	}
	outbox_send(&s, NULL, NULL, 0);
	outbox_free(s.out);
	free(s.pods);
	r = s.errs ? -kmm_error_code(s.errs) : 0;
	if (err)
		*err = TAKE_PTR(s.errs);
	kmm_error_free(s.errs);
	return r;
}

static int64_t nmc_reconcile(struct kmm_op_engine *op, void *state, const char *name,
			     struct kmm_error **err)
{
	_cleanup_json_ json_t *nmc =
	    kmm_op_overlay_get(op->overlay[KMM_OP_CACHE_NMCS], op->cache[KMM_OP_CACHE_NMCS], name);
	_cleanup_obj_unref_ struct kmm_obj *node =
	    kmm_informer_get(op->cache[KMM_OP_CACHE_NODES], name);
	_cleanup_json_ json_t *node_json = NULL;
	struct kmm_obj **objs = NULL;
	size_t n = 0;
	struct nmc_state s = { .op = op, .name = name, .nmc = nmc };
	int r = 0;

	if (kmm_informer_by_index(op->cache[KMM_OP_CACHE_PODS], "node", name, &objs, &n) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (!nmc || !node) {
		r = release_all(op, objs, n, err);
		kmm_obj_array_free(objs, n);
		return r < 0 ? kmm_error_wrap(err, "reconcile %s", name) : 0;
	}
	/*
	 * A DOM of our own, freed on return: one attached to the cached node
	 * lives until the informer's sweep, and a rollout reconciles every node
	 * within that second (4.5 MiB at 1,000 nodes).
	 */
	node_json = kmm_obj_to_json(node);
	if (!node_json) {
		kmm_obj_array_free(objs, n);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	s.node = node_json;
	s.boot_id = kmm_op_node_boot_id(s.node);
	s.status = json_deep_copy(json_object_get(json_object_get(nmc, "status"), "modules"));
	if (!s.status)
		s.status = json_array();
	load_pods(&s, objs, n);
	if (!s.status || !s.pods || outbox_new(&s, &s.out) < 0) {
		r = kmm_error_make(err, ENOMEM, "out of memory");
		goto out;
	}

	take_results(&s);
	drop_vanished(&s);
	r = patch_status(&s, err);
	if (r < 0)
		goto out; /* pods stay until their result is recorded */
	release_handled(&s);
	if (kmm_op_node_ready(s.node)) { /* workers wait for a Ready node */
		sync_spec(&s);
		sync_orphans(&s);
	}
	{
		struct kmm_error *e = NULL;

		if (sync_node_labels(&s, &e) < 0)
			note_error(&s, e);
		e = NULL;
		if (sync_in_use_labels(&s, &e) < 0)
			note_error(&s, e);
	}
	send_writes(&s);
	if (s.errs) {
		*err = TAKE_PTR(s.errs);
		r = -kmm_error_code(*err);
	} else if (s.requeue_ms > 0) {
		r = (int)(s.requeue_ms > INT32_MAX ? INT32_MAX : s.requeue_ms);
	}
out:
	if (r < 0)
		kmm_error_wrap(err, "reconcile %s", name);
	kmm_error_free(s.errs);
	kmm_strv_free(s.events);
	outbox_free(s.out);
	json_decref(s.status);
	free(s.pods);
	kmm_obj_array_free(objs, n);
	return r;
}

/* ---- watches: what queues an NMC (named after its node) ---- */

static void enqueue_nmc(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			const struct kmm_obj *obj, enum kmm_op_event ev)
{
	kmm_op_ctl_enqueue(op->ctl[KMM_OP_NMC], kmm_obj_key(obj));
}

/* The node's targeting facts, its readiness or its labels (the ready labels kmm keeps). */
static bool node_changed(struct kmm_op_engine *op, void *state, const struct kmm_obj *old,
			 const struct kmm_obj *obj)
{
	return kmm_op_node_change(old, obj) != 0;
}

static bool pod_finished(const struct kmm_obj *pod)
{
	const char *phase = kmm_obj_str(pod, "status.phase");

	return phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0);
}

static void enqueue_from_worker_pod(struct kmm_op_engine *op, void *state,
				    const struct kmm_obj *old, const struct kmm_obj *obj,
				    enum kmm_op_event ev)
{
	struct nmc_reconciler_state *ns_state = state;
	const json_t *j = kmm_obj_json(obj);
	const char *node =
	    json_string_value(json_object_get(json_object_get(j, "spec"), "nodeName"));
	const char *ns = kmm_kube_meta_str(j, "namespace");
	const char *uid = kmm_kube_meta_str(j, "uid");
	const char *name = kmm_kube_meta_str(j, "name");
	bool deleted = ev == KMM_OP_DELETED;

	if (ns && name) {
		char key[512];

		snprintf(key, sizeof(key), "%s/%s", ns, name);
		kmm_op_keyset_remove(ns_state->pods_created, key); /* the cache has it now */
	}
	if (deleted && uid)
		kmm_op_keyset_remove(ns_state->pods_released, uid);
	/*
	 * A finished or vanished worker pod goes ahead of nodes whose pods are
	 * yet to be created: its result is recorded and the pod released while
	 * a rollout keeps starting new ones. In plain order, at 1,000 nodes x
	 * 10 Modules, ~6,000 finished pods waited in the cache at once.
	 */
	if (node && (deleted || pod_finished(obj)))
		kmm_op_ctl_enqueue_first(op->ctl[KMM_OP_NMC], node);
	else if (node)
		kmm_op_ctl_enqueue(op->ctl[KMM_OP_NMC], node);
}

/* A device plugin or DRA driver pod gone: an unloader may start on its node now. */
static void enqueue_from_plugin_pod(struct kmm_op_engine *op, void *state,
				    const struct kmm_obj *old, const struct kmm_obj *obj,
				    enum kmm_op_event ev)
{
	const char *node = kmm_obj_str(obj, "spec.nodeName");

	if (ev == KMM_OP_DELETED && node)
		kmm_op_ctl_enqueue(op->ctl[KMM_OP_NMC], node);
}

static const struct kmm_op_watch nmc_watches[] = {
	{ KMM_OP_CACHE_NMCS, NULL, enqueue_nmc },
	{ KMM_OP_CACHE_NODES, node_changed, enqueue_nmc },
	{ KMM_OP_CACHE_PODS, NULL, enqueue_from_worker_pod },
	{ KMM_OP_CACHE_DPPODS, NULL, enqueue_from_plugin_pod },
	{ KMM_OP_CACHE_DRAPODS, NULL, enqueue_from_plugin_pod },
};

/* ---- state ---- */

static void nmc_state_free(void *state)
{
	struct nmc_reconciler_state *ns = state;

	if (!ns)
		return;
	kmm_op_keyset_free(ns->pods_created);
	kmm_op_keyset_free(ns->pods_released);
	kmm_event_queue_free(ns->events);
	free(ns);
}

static int nmc_state_new(struct kmm_op_engine *op, void **ret_state, struct kmm_error **err)
{
	struct nmc_reconciler_state *ns = calloc(1, sizeof(*ns));

	if (ns) {
		ns->pods_created = kmm_op_keyset_new();
		ns->pods_released = kmm_op_keyset_new();
		/* Its batches go through the engine's API helpers, which count them. */
		if (kmm_event_queue_new(op->kube, 0, event_batch, &op->api, &ns->events) < 0)
			ns->events = NULL;
	}
	if (!ns || !ns->pods_created || !ns->pods_released || !ns->events) {
		nmc_state_free(ns);
		return kmm_error_make(err, ENOMEM, "out of memory");
	}
	*ret_state = ns;
	return 0;
}

const struct kmm_op_reconciler kmm_op_nmc_reconciler = {
	.name = "nodemodulesconfig",
	.log_name = "nmc",
	.watches = nmc_watches,
	.n_watches = KMM_ARRAY_SIZE(nmc_watches),
	.state_new = nmc_state_new,
	.state_free = nmc_state_free,
	.reconcile = nmc_reconcile,
};
