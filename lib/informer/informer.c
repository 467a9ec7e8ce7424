/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Informer: reflector (list, watch, 410 -> relist, reconnect with backoff),
 * store (key -> immutable refcounted kmm_obj under a rwlock), indexes and
 * handler dispatch. See docs/internals/informer.md.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmm/shared-clock.h"
#include "kmm/shared-hashmap.h"
#include "kmm/informer.h"
#include "kmm/shared-log.h"
#include "kmm/shared-strv.h"
#include "kmm/kube-watch.h"
#include "lib/informer/informer-internal.h"

#define MAX_HANDLERS 8
#define MAX_INDEXES 8
/* How often the store is swept for DOMs nobody reads any more. */
#define DOM_SWEEP_MS 1000

static const char *const always_kept[] = {
	"metadata.name",
	"metadata.namespace",
	"metadata.uid",
	"metadata.resourceVersion",
	"metadata.generation",
	"metadata.deletionTimestamp",
	NULL,
};

static int project_path(json_t *dst, const json_t *src, const char *path)
{
	const char *dot = strchr(path, '.');
	_cleanup_free_ char *head = dot ? strndup(path, (size_t)(dot - path)) : strdup(path);
	const json_t *v;
	json_t *sub;

	if (!head)
		return -ENOMEM;
	v = json_object_get(src, head);
	if (!v)
		return 0;
	if (!dot || !json_is_object(v))
		return dot ? 0 : json_object_set(dst, head, (json_t *)v) < 0 ? -ENOMEM : 0;
	sub = json_object_get(dst, head);
	if (!sub) {
		sub = json_object();
		if (!sub || json_object_set_new(dst, head, sub) < 0)
			return -ENOMEM;
	}
	if (!json_is_object(sub))
		return 0; /* already kept whole by a shorter path */
	return project_path(sub, v, dot + 1);
}

json_t *kmm_json_project(const json_t *src, const char *const *paths)
{
	json_t *dst = json_object();

	if (!dst)
		return NULL;
	for (size_t i = 0; paths && paths[i]; i++) {
		if (project_path(dst, src, paths[i]) < 0) {
			json_decref(dst);
			return NULL;
		}
	}
	return dst;
}

struct index {
	char *name;
	kmm_index_fn fn;
	void *userdata;
	char *arg;		    /* path or label for the built-in index functions */
	struct kmm_hashmap *values; /* value -> hashmap of keys (value NULL) */
};

struct kmm_informer {
	struct kmm_kube_client *client;
	struct kmm_informer_options o;
	char *ns, *lsel, *fsel;
	char **projection; /* always_kept + the caller's paths, or NULL for whole objects */

	struct kmm_informer_handlers handlers[MAX_HANDLERS];
	size_t n_handlers;
	struct index indexes[MAX_INDEXES];
	size_t n_indexes;

	pthread_rwlock_t lock;	   /* guards store, indexes' maps, rv */
	struct kmm_hashmap *store; /* key -> struct kmm_obj * (one reference) */
	char *rv;

	pthread_mutex_t state_lock; /* guards synced, stopping; with state_cond */
	pthread_cond_t state_cond;
	bool synced, stopping, started;
	pthread_t thread;
	struct kmm_watch *watch;

	int64_t last_resync_ms, last_sweep_ms;
	atomic_uint_fast64_t n_lists, n_watches, n_events, n_gone, n_errors;
};

static void obj_free_value(void *v)
{
	kmm_obj_unref(v);
}

static void keyset_free(void *v)
{
	kmm_hashmap_free(v);
}

int kmm_informer_new(struct kmm_kube_client *client, const struct kmm_informer_options *opts,
		     struct kmm_informer **ret_informer, struct kmm_error **err)
{
	_cleanup_(kmm_informer_freep) struct kmm_informer *inf = NULL;

	if (!opts || !opts->res)
		return kmm_error_make(err, EINVAL, "informer: no resource");
	inf = calloc(1, sizeof(*inf));
	if (!inf)
		return -ENOMEM;
	pthread_rwlock_init(&inf->lock, NULL);
	pthread_mutex_init(&inf->state_lock, NULL);
	pthread_cond_init(&inf->state_cond, NULL);
	inf->client = client;
	inf->o = *opts;
	if (inf->o.watch_timeout_seconds <= 0)
		inf->o.watch_timeout_seconds = 300;
	if (inf->o.page_size <= 0)
		inf->o.page_size = 500;
	inf->store = kmm_hashmap_new(obj_free_value);
	if (!inf->store)
		return -ENOMEM;
	if ((opts->namespace && !(inf->ns = strdup(opts->namespace))) ||
	    (opts->label_selector && !(inf->lsel = strdup(opts->label_selector))) ||
	    (opts->field_selector && !(inf->fsel = strdup(opts->field_selector))))
		return -ENOMEM;
	inf->o.namespace = inf->ns;
	inf->o.label_selector = inf->lsel;
	inf->o.field_selector = inf->fsel;
	if (opts->projection) {
		if (kmm_strv_extend(&inf->projection, (char *const *)always_kept) < 0 ||
		    kmm_strv_extend(&inf->projection, (char *const *)opts->projection) < 0)
			return -ENOMEM;
	}
	inf->o.projection = NULL;
	if (kmm_watch_new(&inf->watch, err) < 0)
		return -ENOMEM;
	*ret_informer = TAKE_PTR(inf);
	return 0;
}

int kmm_informer_add_handlers(struct kmm_informer *inf, const struct kmm_informer_handlers *h)
{
	if (inf->started || inf->n_handlers >= MAX_HANDLERS)
		return -EBUSY;
	inf->handlers[inf->n_handlers++] = *h;
	return 0;
}

int kmm_informer_add_index(struct kmm_informer *inf, const char *name, kmm_index_fn fn,
			   void *userdata)
{
	struct index *ix;

	if (inf->started || inf->n_indexes >= MAX_INDEXES)
		return -EBUSY;
	ix = &inf->indexes[inf->n_indexes];
	*ix = (struct index){ .fn = fn, .userdata = userdata };
	ix->name = strdup(name);
	ix->values = kmm_hashmap_new(keyset_free);
	if (!ix->name || !ix->values) {
		free(ix->name);
		kmm_hashmap_free(ix->values);
		return -ENOMEM;
	}
	inf->n_indexes++;
	return 0;
}

static int index_by_path(const struct kmm_obj *obj, char ***ret, void *ud)
{
	const char *v = kmm_obj_str(obj, ud);
	char **out = calloc(1, sizeof(char *));

	if (!out)
		return -ENOMEM;
	if (v && *v && kmm_strv_push(&out, v) < 0) {
		kmm_strv_free(out);
		return -ENOMEM;
	}
	*ret = out;
	return 0;
}

static int index_by_label(const struct kmm_obj *obj, char ***ret, void *ud)
{
	const char *v = kmm_obj_label(obj, ud);
	char **out = calloc(1, sizeof(char *));

	if (!out)
		return -ENOMEM;
	if (v && kmm_strv_push(&out, v) < 0) {
		kmm_strv_free(out);
		return -ENOMEM;
	}
	*ret = out;
	return 0;
}

static int add_builtin_index(struct kmm_informer *inf, const char *name, kmm_index_fn fn,
			     const char *arg)
{
	char *a = strdup(arg);
	int r;

	if (!a)
		return -ENOMEM;
	r = kmm_informer_add_index(inf, name, fn, a);
	if (r < 0) {
		free(a);
		return r;
	}
	inf->indexes[inf->n_indexes - 1].arg = a;
	return 0;
}

int kmm_informer_add_path_index(struct kmm_informer *inf, const char *name, const char *path)
{
	return add_builtin_index(inf, name, index_by_path, path);
}

int kmm_informer_add_label_index(struct kmm_informer *inf, const char *name, const char *label)
{
	return add_builtin_index(inf, name, index_by_label, label);
}

/* ---- store (callers hold the write lock) ---- */

static void index_update(struct kmm_informer *inf, const char *key, const struct kmm_obj *old,
			 const struct kmm_obj *new)
{
	for (size_t i = 0; i < inf->n_indexes; i++) {
		struct index *ix = &inf->indexes[i];
		_cleanup_strv_free_ char **ov = NULL, **nv = NULL;

		if (old && ix->fn(old, &ov, ix->userdata) < 0)
			ov = NULL;
		if (new && ix->fn(new, &nv, ix->userdata) < 0)
			nv = NULL;
		KMM_STRV_FOREACH (v, ov) {
			struct kmm_hashmap *keys;

			if (kmm_strv_contains(nv, v))
				continue;
			keys = kmm_hashmap_get(ix->values, v);
			if (!keys)
				continue;
			kmm_hashmap_remove(keys, key);
			if (kmm_hashmap_size(keys) == 0)
				kmm_hashmap_free(kmm_hashmap_remove(ix->values, v));
		}
		KMM_STRV_FOREACH (v, nv) {
			struct kmm_hashmap *keys = kmm_hashmap_get(ix->values, v);

			if (!keys) {
				keys = kmm_hashmap_new(NULL);
				if (!keys || kmm_hashmap_put(ix->values, v, keys, NULL) < 0) {
					kmm_hashmap_free(keys);
					continue; /* ENOMEM: the index misses this object */
				}
			}
			(void)kmm_hashmap_put(keys, key, NULL, NULL);
		}
	}
}

json_t *kmm_informer_project(const struct kmm_informer *inf, const json_t *full)
{
	json_t *meta, *proj;

	if (inf->projection)
		return kmm_json_project(full, (const char *const *)inf->projection);
	if (!json_object_get(json_object_get(full, "metadata"), "managedFields"))
		return json_incref((json_t *)full);
	/* Whole objects minus managedFields: the apiserver's bookkeeping for
	 * server-side apply, a third of a small object, read by no client. */
	meta = json_copy(json_object_get(full, "metadata"));
	if (!meta)
		return NULL;
	proj = json_copy((json_t *)full);
	if (!proj || json_object_del(meta, "managedFields") < 0) {
		json_decref(meta);
		json_decref(proj);
		return NULL;
	}
	/* set_new takes meta, also on failure. */
	if (json_object_set_new(proj, "metadata", meta) < 0) {
		json_decref(proj);
		return NULL;
	}
	return proj;
}

static int obj_new(struct kmm_informer *inf, const json_t *full, struct kmm_obj **ret)
{
	_cleanup_free_ char *key = kmm_kube_object_key(full);
	_cleanup_(json_decrefp) json_t *proj = NULL;

	if (!key)
		return -EBADMSG;
	proj = kmm_informer_project(inf, full);
	if (!proj)
		return -ENOMEM;
	return kube_obj_new(proj, key, ret);
}

enum change {
	CH_NONE,
	CH_ADD,
	CH_UPDATE,
	CH_DELETE
};

static void dispatch(struct kmm_informer *inf, enum change ch, struct kmm_obj *old,
		     struct kmm_obj *new)
{
	for (size_t i = 0; i < inf->n_handlers; i++) {
		const struct kmm_informer_handlers *h = &inf->handlers[i];

		switch (ch) {
		case CH_ADD:
			if (h->on_add)
				h->on_add(new, h->userdata);
			break;
		case CH_UPDATE:
			if (h->on_update)
				h->on_update(old, new, h->userdata);
			break;
		case CH_DELETE:
			if (h->on_delete)
				h->on_delete(old, h->userdata);
			break;
		case CH_NONE:
			break;
		}
	}
}

/* Stores o (consumes the caller's reference) and dispatches. */
static int store_put(struct kmm_informer *inf, struct kmm_obj *o)
{
	struct kmm_obj *old = NULL;
	int r;

	pthread_rwlock_wrlock(&inf->lock);
	r = kmm_hashmap_put(inf->store, kmm_obj_key(o), kmm_obj_ref(o), (void **)&old);
	if (r < 0) {
		pthread_rwlock_unlock(&inf->lock);
		kmm_obj_unref(o);
		kmm_obj_unref(o);
		return r;
	}
	index_update(inf, kmm_obj_key(o), old, o);
	pthread_rwlock_unlock(&inf->lock);
	dispatch(inf, old ? CH_UPDATE : CH_ADD, old, o);
	kmm_obj_unref(old);
	/*
	 * Handlers often read o through kmm_obj_json(), whose DOM (~4-5 KiB for
	 * a projected node, ~1.5 KiB compact) would otherwise stay in the store
	 * until the next event replaces o: with kubelet heartbeats, that is a DOM
	 * per node, always. If only the store and we still hold o, nobody can be
	 * using the DOM, and getters, the only way to a new reference, wait for
	 * the write lock: free it; the next reader rebuilds it.
	 */
	if (kmm_obj_has_dom(o)) {
		pthread_rwlock_wrlock(&inf->lock);
		kube_obj_drop_dom(o, 2);
		pthread_rwlock_unlock(&inf->lock);
	}
	kmm_obj_unref(o);
	return 0;
}

static void store_delete(struct kmm_informer *inf, const char *key)
{
	struct kmm_obj *old;

	pthread_rwlock_wrlock(&inf->lock);
	old = kmm_hashmap_remove(inf->store, key);
	if (old)
		index_update(inf, key, old, NULL);
	pthread_rwlock_unlock(&inf->lock);
	if (old) {
		dispatch(inf, CH_DELETE, old, NULL);
		kmm_obj_unref(old);
	}
}

static int set_rv(struct kmm_informer *inf, const char *rv)
{
	char *copy;

	if (!rv || !*rv)
		return 0;
	copy = strdup(rv);
	if (!copy)
		return -ENOMEM;
	pthread_rwlock_wrlock(&inf->lock);
	free(inf->rv);
	inf->rv = copy;
	pthread_rwlock_unlock(&inf->lock);
	return 0;
}

/* The compact objects of one LIST, in list order. */
struct listed {
	struct kmm_obj **objs;
	size_t n, cap;
	char *rv; /* the list's resourceVersion */
};

/* A LIST longer than this is not a cache we can hold; stops a runaway continue chain. */
#define LIST_MAX_ITEMS ((size_t)4 * 1024 * 1024)

static void listed_clear(struct listed *l)
{
	kmm_obj_array_free(l->objs, l->n);
	free(l->rv);
	*l = (struct listed){ 0 };
}

/* Appends o, consuming the caller's reference. */
static int listed_push(struct listed *l, struct kmm_obj *o)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		struct kmm_obj **objs;

		if (l->n >= LIST_MAX_ITEMS) {
			kmm_obj_unref(o);
			return -E2BIG;
		}
		objs = reallocarray(l->objs, cap, sizeof(*objs));
		if (!objs) {
			kmm_obj_unref(o);
			return -ENOMEM;
		}
		l->objs = objs;
		l->cap = cap;
	}
	l->objs[l->n++] = o;
	return 0;
}

/*
 * LIST page by page, reducing each page to compact objects and freeing its
 * DOM before asking for the next page: the whole list never exists parsed
 * (1,000 nodes as one DOM took ~25 MiB, the same nodes projected ~1.5 MiB).
 * Nothing reaches the store until every page has arrived, so a list that
 * fails half-way changes nothing. Like kmm_kube_list_all(), a 410 on a
 * continue token (the snapshot was compacted between pages) restarts from
 * the first page, once.
 */
static int list_compact(struct kmm_informer *inf, struct listed *ret, struct kmm_error **err)
{
	struct kmm_kube_target t = { .res = inf->o.res, .namespace = inf->o.namespace };
	struct kmm_kube_list_options lo = {
		.label_selector = inf->o.label_selector,
		.field_selector = inf->o.field_selector,
		.limit = inf->o.page_size,
	};
	_cleanup_(listed_clear) struct listed l = { 0 };
	_cleanup_free_ char *cont = NULL;
	bool restarted = false;

	for (;;) {
		_cleanup_(json_decrefp) json_t *page = NULL;
		_cleanup_error_ struct kmm_error *e = NULL;
		const char *next, *rv;
		const json_t *items;
		json_t *it;
		size_t i;
		int r;

		lo.continue_token = cont;
		r = kmm_kube_list(inf->client, &t, &lo, &page, &e);
		if (r < 0) {
			if (cont && kmm_error_is_http(e, 410) && !restarted) {
				restarted = true;
				listed_clear(&l);
				free(cont);
				cont = NULL;
				continue;
			}
			if (err)
				*err = TAKE_PTR(e);
			return r;
		}
		items = json_object_get(page, "items");
		if (!json_is_array(items))
			return kmm_error_make(err, EBADMSG, "list %s: no items array",
					      inf->o.res->resource);
		json_array_foreach (items, i, it) {
			struct kmm_obj *o;

			r = obj_new(inf, it, &o);
			if (r < 0)
				return kmm_error_make(err, -r,
						      "informer %s: list item %zu unusable",
						      inf->o.res->resource, l.n);
			r = listed_push(&l, o);
			if (r < 0)
				return kmm_error_make(err, -r, "informer %s: list of %zu items",
						      inf->o.res->resource, l.n);
		}
		/* Every page carries the snapshot's version; the last one is kept. */
		rv = kmm_kube_meta_str(page, "resourceVersion");
		free(l.rv);
		l.rv = rv ? strdup(rv) : NULL;
		if (rv && !l.rv)
			return -ENOMEM;
		next = kmm_kube_meta_str(page, "continue");
		if (!next || !*next)
			break;
		free(cont);
		cont = strdup(next);
		if (!cont)
			return -ENOMEM;
	}
	*ret = l;
	l = (struct listed){ 0 };
	return 0;
}

/* Applies a full LIST: puts every listed object, deletes keys that are gone. */
static int store_replace(struct kmm_informer *inf, struct listed *l)
{
	_cleanup_(kmm_hashmap_freep) struct kmm_hashmap *seen = kmm_hashmap_new(NULL);
	_cleanup_strv_free_ char **gone = NULL;
	const char *key;
	void *val;
	size_t st = 0;
	int r;

	if (!seen)
		return -ENOMEM;
	for (size_t i = 0; i < l->n; i++) {
		/* The list's reference moves to the store (or goes): once the handlers
		 * ran, the store alone holds o, which store_put() counts on. */
		_cleanup_obj_unref_ struct kmm_obj *o = TAKE_PTR(l->objs[i]);
		struct kmm_obj *cur;
		bool same;

		if (kmm_hashmap_put(seen, kmm_obj_key(o), NULL, NULL) < 0)
			return -ENOMEM;
		/* Unchanged objects (same resourceVersion) are not re-announced. */
		pthread_rwlock_rdlock(&inf->lock);
		cur = kmm_hashmap_get(inf->store, kmm_obj_key(o));
		same =
		    cur && strcmp(kmm_obj_resource_version(cur), kmm_obj_resource_version(o)) == 0;
		pthread_rwlock_unlock(&inf->lock);
		if (same)
			continue;
		r = store_put(inf, TAKE_PTR(o));
		if (r < 0)
			return r;
	}
	pthread_rwlock_rdlock(&inf->lock);
	while (kmm_hashmap_iterate(inf->store, &st, &key, &val)) {
		if (!kmm_hashmap_contains(seen, key) && kmm_strv_push(&gone, key) < 0) {
			pthread_rwlock_unlock(&inf->lock);
			return -ENOMEM;
		}
	}
	pthread_rwlock_unlock(&inf->lock);
	KMM_STRV_FOREACH (k, gone)
		store_delete(inf, k);
	return set_rv(inf, l->rv);
}

/* ---- reflector ---- */

static bool stopping(struct kmm_informer *inf)
{
	bool s;

	pthread_mutex_lock(&inf->state_lock);
	s = inf->stopping;
	pthread_mutex_unlock(&inf->state_lock);
	return s;
}

/* Sleeps ms unless stopped meanwhile; returns false if stopping. */
static bool sleep_unless_stopped(struct kmm_informer *inf, long ms)
{
	struct timespec ts = kmm_deadline_after_ms(CLOCK_REALTIME, ms);

	pthread_mutex_lock(&inf->state_lock);
	while (!inf->stopping &&
	       pthread_cond_timedwait(&inf->state_cond, &inf->state_lock, &ts) == 0)
		;
	bool s = inf->stopping;
	pthread_mutex_unlock(&inf->state_lock);
	return !s;
}

static int on_event(enum kmm_watch_event_type type, json_t *obj, void *ud, struct kmm_error **err)
{
	struct kmm_informer *inf = ud;
	struct kmm_obj *o;
	int r;

	atomic_fetch_add(&inf->n_events, 1);
	switch (type) {
	case KMM_WATCH_ADDED:
	case KMM_WATCH_MODIFIED:
		r = obj_new(inf, obj, &o);
		if (r < 0)
			return kmm_error_make(err, -r, "informer %s: event object unusable",
					      inf->o.res->resource);
		r = store_put(inf, o);
		if (r < 0)
			return r;
		break;
	case KMM_WATCH_DELETED: {
		_cleanup_free_ char *key = kmm_kube_object_key(obj);

		if (!key)
			return kmm_error_make(err, EBADMSG, "informer: DELETED without name");
		store_delete(inf, key);
		break;
	}
	case KMM_WATCH_BOOKMARK:
	case KMM_WATCH_ERROR:
		break;
	}
	return set_rv(inf, kmm_kube_meta_str(obj, "resourceVersion"));
}

static void resync(struct kmm_informer *inf)
{
	struct kmm_obj **objs = NULL;
	size_t n = 0;

	if (kmm_informer_list(inf, &objs, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		dispatch(inf, CH_UPDATE, objs[i], objs[i]);
	kmm_obj_array_free(objs, n);
}

/*
 * Frees the kmm_obj_json() DOMs that only the store still holds. A reader
 * that walks every node builds a DOM for each (~5 KiB against ~1.5 KiB
 * compact), and the object would keep it until it is replaced: at 1,000
 * nodes that was most of kmm-operator's heap. Under the write lock no
 * getter can hand out a new reference, and an object referenced by the
 * store alone has no reader that could hold a borrowed pointer into its DOM
 * (holders of json_incref()'d DOMs keep theirs alive).
 */
static void sweep_doms(struct kmm_informer *inf)
{
	const char *key;
	void *val;
	size_t st = 0;

	pthread_rwlock_wrlock(&inf->lock);
	while (kmm_hashmap_iterate(inf->store, &st, &key, &val))
		if (kmm_obj_has_dom(val))
			kube_obj_drop_dom(val, 1);
	pthread_rwlock_unlock(&inf->lock);
}

static int on_tick(void *ud, struct kmm_error **err)
{
	struct kmm_informer *inf = ud;
	int64_t now = kmm_now_mono_ms();

	if (now - inf->last_sweep_ms >= DOM_SWEEP_MS) {
		inf->last_sweep_ms = now;
		sweep_doms(inf);
	}
	if (inf->o.resync_ms <= 0)
		return 0;
	if (now - inf->last_resync_ms >= inf->o.resync_ms) {
		inf->last_resync_ms = now;
		resync(inf);
	}
	return 0;
}

static void set_synced(struct kmm_informer *inf)
{
	pthread_mutex_lock(&inf->state_lock);
	inf->synced = true;
	pthread_cond_broadcast(&inf->state_cond);
	pthread_mutex_unlock(&inf->state_lock);
}

static void *reflector(void *arg)
{
	struct kmm_informer *inf = arg;
	struct kmm_kube_target t = { .res = inf->o.res, .namespace = inf->o.namespace };
	int failures = 0;

	inf->last_resync_ms = kmm_now_mono_ms();
	while (!stopping(inf)) {
		_cleanup_(listed_clear) struct listed list = { 0 };
		_cleanup_error_ struct kmm_error *err = NULL;
		int r;

		r = list_compact(inf, &list, &err);
		if (r >= 0)
			r = store_replace(inf, &list);
		/* The list's references are the store's now, or garbage: drop them before watching. */
		listed_clear(&list);
		if (r < 0) {
			atomic_fetch_add(&inf->n_errors, 1);
			kmm_debug("informer: list failed", "resource", inf->o.res->resource,
				  "error", kmm_error_message(err));
			if (!sleep_unless_stopped(inf, kmm_backoff_ms(200, 30000, failures++)))
				break;
			continue;
		}
		failures = 0;
		atomic_fetch_add(&inf->n_lists, 1);
		set_synced(inf);
		/* Watch from the list's version until 410 (relist) or stop. */
		while (!stopping(inf)) {
			_cleanup_error_ struct kmm_error *werr = NULL;
			_cleanup_free_ char *rv = kmm_informer_resource_version(inf);
			struct kmm_watch_options wo = {
				.label_selector = inf->o.label_selector,
				.field_selector = inf->o.field_selector,
				.resource_version = rv,
				.allow_bookmarks = true,
				.timeout_seconds = inf->o.watch_timeout_seconds,
				.max_frame = inf->o.max_frame,
			};

			int64_t opened = kmm_now_mono_ms();

			atomic_fetch_add(&inf->n_watches, 1);
			r = kmm_kube_watch(inf->client, &t, &wo, on_event, on_tick, inf, inf->watch,
					   &werr);
			if (r == 0) {
				failures = 0;
				/* A server that closes streams at once must not make us spin. */
				if (kmm_now_mono_ms() - opened < 1000 &&
				    !sleep_unless_stopped(inf, 1000))
					break;
				continue;
			}
			if (r == -ECANCELED && stopping(inf))
				break;
			if (kmm_error_is_http(werr, 410)) {
				atomic_fetch_add(&inf->n_gone, 1);
				kmm_debug("informer: 410, relisting", "resource",
					  inf->o.res->resource);
				break;
			}
			atomic_fetch_add(&inf->n_errors, 1);
			kmm_debug("informer: watch failed", "resource", inf->o.res->resource,
				  "error", kmm_error_message(werr));
			if (!sleep_unless_stopped(inf, kmm_backoff_ms(200, 30000, failures++)))
				break;
		}
	}
	return NULL;
}

int kmm_informer_start(struct kmm_informer *inf, struct kmm_error **err)
{
	int r;

	if (inf->started)
		return kmm_error_make(err, EBUSY, "informer already started");
	r = pthread_create(&inf->thread, NULL, reflector, inf);
	if (r != 0)
		return kmm_error_make_errno(err, r, "informer: start thread");
	inf->started = true;
	return 0;
}

bool kmm_informer_has_synced(struct kmm_informer *inf)
{
	bool s;

	pthread_mutex_lock(&inf->state_lock);
	s = inf->synced;
	pthread_mutex_unlock(&inf->state_lock);
	return s;
}

int kmm_informer_wait_synced(struct kmm_informer *inf, int64_t timeout_ms)
{
	struct timespec ts = kmm_deadline_after_ms(CLOCK_REALTIME, timeout_ms);
	bool s;

	pthread_mutex_lock(&inf->state_lock);
	while (!inf->synced && !inf->stopping &&
	       pthread_cond_timedwait(&inf->state_cond, &inf->state_lock, &ts) == 0)
		;
	s = inf->synced;
	pthread_mutex_unlock(&inf->state_lock);
	return s ? 0 : -ETIMEDOUT;
}

struct kmm_obj *kmm_informer_get(struct kmm_informer *inf, const char *key)
{
	struct kmm_obj *o;

	if (!inf)
		return NULL;
	pthread_rwlock_rdlock(&inf->lock);
	o = kmm_obj_ref(kmm_hashmap_get(inf->store, key));
	pthread_rwlock_unlock(&inf->lock);
	return o;
}

size_t kmm_informer_size(struct kmm_informer *inf)
{
	size_t n;

	pthread_rwlock_rdlock(&inf->lock);
	n = kmm_hashmap_size(inf->store);
	pthread_rwlock_unlock(&inf->lock);
	return n;
}

size_t kmm_informer_bytes(struct kmm_informer *inf)
{
	const char *key;
	void *val;
	size_t bytes = 0, st = 0;

	pthread_rwlock_rdlock(&inf->lock);
	while (kmm_hashmap_iterate(inf->store, &st, &key, &val))
		bytes += kmm_obj_size(val);
	pthread_rwlock_unlock(&inf->lock);
	return bytes;
}

int kmm_informer_list(struct kmm_informer *inf, struct kmm_obj ***ret_objs, size_t *ret_n)
{
	struct kmm_obj **objs;
	const char *key;
	void *val;
	size_t n = 0, st = 0;

	pthread_rwlock_rdlock(&inf->lock);
	objs = calloc(kmm_hashmap_size(inf->store) + 1, sizeof(struct kmm_obj *));
	if (!objs) {
		pthread_rwlock_unlock(&inf->lock);
		return -ENOMEM;
	}
	while (kmm_hashmap_iterate(inf->store, &st, &key, &val))
		objs[n++] = kmm_obj_ref(val);
	pthread_rwlock_unlock(&inf->lock);
	*ret_objs = objs;
	*ret_n = n;
	return 0;
}

int kmm_informer_by_index(struct kmm_informer *inf, const char *name, const char *value,
			  struct kmm_obj ***ret_objs, size_t *ret_n)
{
	struct index *ix = NULL;
	struct kmm_hashmap *keys;
	struct kmm_obj **objs;
	const char *key;
	void *val;
	size_t n = 0, st = 0;

	for (size_t i = 0; i < inf->n_indexes; i++)
		if (strcmp(inf->indexes[i].name, name) == 0)
			ix = &inf->indexes[i];
	if (!ix)
		return -ENOENT;
	pthread_rwlock_rdlock(&inf->lock);
	keys = kmm_hashmap_get(ix->values, value);
	objs = calloc((keys ? kmm_hashmap_size(keys) : 0) + 1, sizeof(struct kmm_obj *));
	if (!objs) {
		pthread_rwlock_unlock(&inf->lock);
		return -ENOMEM;
	}
	while (keys && kmm_hashmap_iterate(keys, &st, &key, &val)) {
		struct kmm_obj *o = kmm_hashmap_get(inf->store, key);

		if (o)
			objs[n++] = kmm_obj_ref(o);
	}
	pthread_rwlock_unlock(&inf->lock);
	*ret_objs = objs;
	*ret_n = n;
	return 0;
}

char *kmm_informer_resource_version(struct kmm_informer *inf)
{
	char *rv;

	pthread_rwlock_rdlock(&inf->lock);
	rv = strdup(inf->rv ? inf->rv : "");
	pthread_rwlock_unlock(&inf->lock);
	return rv;
}

void kmm_informer_stats(struct kmm_informer *inf, struct kmm_informer_stats *ret)
{
	ret->lists = atomic_load(&inf->n_lists);
	ret->watches = atomic_load(&inf->n_watches);
	ret->events = atomic_load(&inf->n_events);
	ret->gone = atomic_load(&inf->n_gone);
	ret->errors = atomic_load(&inf->n_errors);
}

void kmm_informer_stop(struct kmm_informer *inf)
{
	if (!inf)
		return;
	pthread_mutex_lock(&inf->state_lock);
	inf->stopping = true;
	pthread_cond_broadcast(&inf->state_cond);
	pthread_mutex_unlock(&inf->state_lock);
	if (inf->watch)
		kmm_watch_cancel(inf->watch);
	if (inf->started) {
		pthread_join(inf->thread, NULL);
		inf->started = false;
	}
}

void kmm_informer_free(struct kmm_informer *inf)
{
	if (!inf)
		return;
	kmm_informer_stop(inf);
	kmm_watch_free(inf->watch);
	for (size_t i = 0; i < inf->n_indexes; i++) {
		free(inf->indexes[i].name);
		free(inf->indexes[i].arg);
		kmm_hashmap_free(inf->indexes[i].values);
	}
	kmm_hashmap_free(inf->store);
	pthread_rwlock_destroy(&inf->lock);
	pthread_mutex_destroy(&inf->state_lock);
	pthread_cond_destroy(&inf->state_cond);
	kmm_strv_free(inf->projection);
	free(inf->ns);
	free(inf->lsel);
	free(inf->fsel);
	free(inf->rv);
	free(inf);
}
