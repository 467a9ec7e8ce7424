/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm-operator's runtime: the pieces its reconcilers share.
 *
 *  - struct kmm_op_ctl: a named controller (work queue + workers) that keeps
 *    upstream's controller-runtime metrics: reconcile totals by result,
 *    errors, reconcile duration, queue depth and queue latency.
 *  - kmm_op_create/patch/delete: the API writes, counted by verb and HTTP
 *    code in rest_client_requests_total; kmm_op_batch: many of them at once.
 *  - the NodeModulesConfig overlay: the objects our own writes returned,
 *    read in preference to the informer's copy until the informer has seen
 *    them, so a reconcile never acts on a state older than its own write.
 *  - pure helpers (taints and tolerations, node facts, worker pods), kept
 *    here so unit tests reach them.
 *
 * Threads: everything here is safe from any thread. Ownership is stated per
 * function; JSON handed in is borrowed, JSON handed out is a new reference.
 */
#ifndef KMM_OPERATOR_RUNTIME_H
#define KMM_OPERATOR_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "kmm/api.h"
#include "kmm/shared-error.h"
#include "kmm/informer.h"
#include "kmm/kube.h"
#include "kmm/server-metrics.h"
#include "kmm/operator-config.h"

#define KMM_OP_FIELD_MANAGER "kmm-operator"

/* Labels, annotations and finalizers of worker pods and NMCs (reference §3.5, §3.14). */
#define KMM_LABEL_WORKER_ACTION "kmm.node.kubernetes.io/worker-action"
#define KMM_ANN_WORKER_CONFIG "kmm.node.kubernetes.io/worker-config"
#define KMM_ANN_WORKER_TOLERATIONS "kmm.node.kubernetes.io/worker-tolerations"
#define KMM_ANN_WORKER_VERSION "kmm.node.kubernetes.io/worker-module-version"
#define KMM_ANN_MODULES_ORDER "kmm.node.kubernetes.io/modules-order"
#define KMM_ANN_WORKER_HASH "kmm.node.kubernetes.io/worker-hash"
#define KMM_FINALIZER_WORKER "kmm.node.kubernetes.io/nodemodulesconfig-reconciler"
#define KMM_NODE_LABEL_PREFIX "kmm.node.kubernetes.io/"
#define KMM_NMC_LABEL_PREFIX "beta.kmm.node.kubernetes.io/"
#define KMM_VERSION_WORKER_LABEL_PREFIX "beta.kmm.node.kubernetes.io/version-worker-pod."

extern const struct kmm_kube_resource kmm_op_modules, kmm_op_nmcs;

/* ---- controllers ---- */

struct kmm_op_ctl;

/* A reconcile as in kmm/controller-workqueue.h. */
typedef int64_t (*kmm_op_reconcile_fn)(const char *key, void *userdata, struct kmm_error **err);

/* Registers the controller's metrics in m (borrowed; must outlive the controller). */
int kmm_op_ctl_new(const char *name, struct kmm_metrics *m, struct kmm_op_ctl **ret,
		   struct kmm_error **err);
/* Queues key (copied); remembers when, for the queue-latency histogram. */
void kmm_op_ctl_enqueue(struct kmm_op_ctl *c, const char *key);
/* Ahead of other keys: the reconcile finishes work in flight (kmm_workqueue_add_first). */
void kmm_op_ctl_enqueue_first(struct kmm_op_ctl *c, const char *key);
void kmm_op_ctl_enqueue_after(struct kmm_op_ctl *c, const char *key, int64_t delay_ms);
/*
 * Queues key after delay_ms unless it is already queued or due: many events
 * about one key within delay_ms cost one reconcile.
 */
void kmm_op_ctl_enqueue_coalesced(struct kmm_op_ctl *c, const char *key, int64_t delay_ms);
int kmm_op_ctl_start(struct kmm_op_ctl *c, int workers, kmm_op_reconcile_fn fn, void *userdata,
		     struct kmm_error **err);
/* Lets in-flight reconciles finish (queued keys are dropped) and joins the workers. */
void kmm_op_ctl_stop(struct kmm_op_ctl *c);
size_t kmm_op_ctl_depth(struct kmm_op_ctl *c);
/* Keys currently queued or being reconciled (for tests of convergence). */
void kmm_op_ctl_free(struct kmm_op_ctl *c);
const char *kmm_op_ctl_name(const struct kmm_op_ctl *c);

/* ---- API writes ---- */

struct kmm_op_api {
	struct kmm_kube_client *kube; /* borrowed */
	struct kmm_metric *requests;  /* rest_client_requests_total{method,code} */
};

int kmm_op_api_init(struct kmm_op_api *a, struct kmm_kube_client *kube, struct kmm_metrics *m,
		    struct kmm_error **err);
/* Counts one request done outside these helpers (e.g. a GET). */
void kmm_op_api_count(struct kmm_op_api *a, const char *method, int code);

int kmm_op_get(struct kmm_op_api *a, const struct kmm_kube_target *t, json_t **ret,
	       struct kmm_error **err);
int kmm_op_create(struct kmm_op_api *a, const struct kmm_kube_target *t, const json_t *obj,
		  json_t **ret, struct kmm_error **err);
int kmm_op_patch(struct kmm_op_api *a, const struct kmm_kube_target *t,
		 enum kmm_kube_patch_type type, const json_t *patch, json_t **ret,
		 struct kmm_error **err);
/* 404 counts as success. */
int kmm_op_delete(struct kmm_op_api *a, const struct kmm_kube_target *t, struct kmm_error **err);

/*
 * Records an Event (core/v1) about a cluster-scoped object of `kind`
 * (e.g. a Node) with source component "kmm" and an annotation pair (may be
 * NULL). Namespace "default", as events about cluster-scoped objects are.
 */
int kmm_op_event(struct kmm_op_api *a, const char *kind, const char *name, const char *uid,
		 const char *type, const char *reason, const char *message, const char *ann_key,
		 const char *ann_value, struct kmm_error **err);

/*
 * The requests kmm_op_create/patch/delete/event send (same field manager,
 * path, content type and body), built for kmm_op_batch(). On success *ret
 * owns its strings (kmm_kube_prepared_clear); a failure always fills err.
 */
int kmm_op_prepare_create(const struct kmm_kube_target *t, const json_t *obj,
			  struct kmm_kube_prepared *ret, struct kmm_error **err);
int kmm_op_prepare_patch(const struct kmm_kube_target *t, enum kmm_kube_patch_type type,
			 const json_t *patch, struct kmm_kube_prepared *ret,
			 struct kmm_error **err);
int kmm_op_prepare_delete(const struct kmm_kube_target *t, struct kmm_kube_prepared *ret,
			  struct kmm_error **err);
int kmm_op_prepare_event(const char *kind, const char *name, const char *uid, const char *type,
			 const char *reason, const char *message, const char *ann_key,
			 const char *ann_value, struct kmm_kube_prepared *ret,
			 struct kmm_error **err);

/*
 * Requests of one kmm_op_batch() in flight at once (HTTP/2 streams). Each
 * holds a transfer and its response; with a batch per NMC worker, 16 held
 * ~2 MiB at the peak of 300 nodes x 10 Modules, 4 cut most of the round
 * trips already (a node's 10 releases: 30 requests).
 */
#define KMM_OP_BATCH_IN_FLIGHT 4

/*
 * Performs n independent requests concurrently on the calling thread
 * (kmm_kube_batch: rate-limited, no retries) and counts each in
 * rest_client_requests_total like the single writes (code 0 for a transport
 * error). On return every item has an outcome, read it with
 * kmm_kube_batch_item_json() (a DELETE's 404 is -ENOENT there, not success);
 * when the batch fails as a whole (returns a negative errno and fills err),
 * the items it did not complete fail with its error and are not counted.
 * The items' responses and errors belong to the caller (kmm_kube_batch_clear).
 */
int kmm_op_batch(struct kmm_op_api *a, struct kmm_kube_batch_item *items, size_t n,
		 struct kmm_error **err);

/* ---- NMC overlay ---- */

struct kmm_op_overlay;

struct kmm_op_overlay *kmm_op_overlay_new(void);
void kmm_op_overlay_free(struct kmm_op_overlay *o);
/*
 * Remembers obj (an object returned by a write; borrowed) reduced to what inf
 * stores (inf may be NULL: whole), unless inf already shows obj's
 * resourceVersion or newer.
 */
void kmm_op_overlay_put(struct kmm_op_overlay *o, struct kmm_informer *inf, const json_t *obj);
/* Called from the informer's handlers: forgets name once the informer reached rv. */
void kmm_op_overlay_seen(struct kmm_op_overlay *o, const char *name, const char *rv, bool deleted);
/*
 * The freshest known object: the overlay's, else the informer's (inf may be
 * NULL). Returns a new reference or NULL when unknown; the object is shared
 * and must never be modified.
 */
json_t *kmm_op_overlay_get(struct kmm_op_overlay *o, struct kmm_informer *inf, const char *name);
/* True when rv a is older than rv b (numeric comparison; opaque strings: false). */
bool kmm_op_rv_older(const char *a, const char *b);
/*
 * The freshest known resourceVersion of name into buf (truncated to size);
 * false when the object is unknown. No DOM is built.
 */
bool kmm_op_overlay_rv(struct kmm_op_overlay *o, struct kmm_informer *inf, const char *name,
		       char *buf, size_t size);

/* ---- NMC digests ---- */

/*
 * What a Module reconcile asks of one NodeModulesConfig about one module,
 * remembered per resourceVersion of the NMC (read through the overlay) so
 * that asking again costs no parse.
 */
#define KMM_OP_ENTRY_DIGEST_LEN 16

struct kmm_op_nmc_module {
	bool nmc_exists;
	bool in_spec;	       /* spec.modules has an entry for the module */
	bool configured_label; /* beta.kmm.node.kubernetes.io/<ns>.<name>.module-configured */
	bool in_use_label;     /* ....module-in-use */
	bool loaded;	       /* status shows the spec entry's config loaded */
	/* kmm_op_nmc_entry_digest() of the spec entry */
	unsigned char entry_digest[KMM_OP_ENTRY_DIGEST_LEN];
};

struct kmm_op_nmc_digests;

struct kmm_op_nmc_digests *kmm_op_nmc_digests_new(void);
void kmm_op_nmc_digests_free(struct kmm_op_nmc_digests *c);
/* Called when the NMC is deleted. */
void kmm_op_nmc_digests_forget(struct kmm_op_nmc_digests *c, const char *name);
size_t kmm_op_nmc_digests_size(struct kmm_op_nmc_digests *c);
/*
 * The state of module ns/name in NMC nmc_name as the overlay and informer
 * know it now (all false when the NMC does not exist). 0 or -errno.
 */
int kmm_op_nmc_module_get(struct kmm_op_nmc_digests *c, struct kmm_op_overlay *o,
			  struct kmm_informer *inf, const char *nmc_name, const char *ns,
			  const char *name, struct kmm_op_nmc_module *ret);
/* Truncated SHA-256 of the entry's canonical JSON (sorted keys, compact). */
int kmm_op_nmc_entry_digest(const json_t *entry, unsigned char out[KMM_OP_ENTRY_DIGEST_LEN]);

/*
 * A thread-safe set of strings: what kmm's own writes did that the caches
 * have not shown yet (pods created, pods released), so a reconcile running
 * on a cache that lags behind does not repeat the write. Keys expire after
 * 30 s, so a confirmation the cache never delivers (a relist) cannot stick.
 */
struct kmm_op_keyset;
struct kmm_op_keyset *kmm_op_keyset_new(void);
void kmm_op_keyset_free(struct kmm_op_keyset *k);
void kmm_op_keyset_add(struct kmm_op_keyset *k, const char *key);
void kmm_op_keyset_remove(struct kmm_op_keyset *k, const char *key);
bool kmm_op_keyset_contains(struct kmm_op_keyset *k, const char *key);

/* ---- nodes, taints, tolerations ---- */

/* Does one toleration tolerate one taint (core/v1 semantics)? Both JSON objects. */
bool kmm_op_toleration_matches(const json_t *toleration, const json_t *taint);
/*
 * Is the node schedulable for these tolerations (JSON array or NULL): every
 * NoSchedule/NoExecute taint tolerated, counting KMM's internal pressure
 * tolerations. Cordoned nodes carry node.kubernetes.io/unschedulable.
 */
bool kmm_op_node_schedulable(const json_t *node, const json_t *tolerations);
/* The same for a node's spec.taints array (NULL: none). */
bool kmm_op_taints_tolerated(const json_t *taints, const json_t *tolerations);
/* Label selector map (equality, all pairs) against node labels. */
bool kmm_op_selector_matches(const struct kmm_strmap *sel, const json_t *node);
/* The same on a cached node, without building its DOM. */
bool kmm_op_selector_matches_obj(const struct kmm_strmap *sel, const struct kmm_obj *node);
const char *kmm_op_node_kernel(const json_t *node);
const char *kmm_op_node_boot_id(const json_t *node);
bool kmm_op_node_ready(const json_t *node);
/* Does any of the dotted paths (e.g. "metadata.generation") differ between a and b? */
bool kmm_op_obj_paths_differ(const struct kmm_obj *a, const struct kmm_obj *b,
			     const char *const *paths, size_t n);
/* What moved between two versions of a node, as KMM_OP_NODE_* bits. */
#define KMM_OP_NODE_TARGETING 1 /* labels (but those kmm writes), taints, schedulable, kernel */
#define KMM_OP_NODE_READY 2	/* its Ready condition */
#define KMM_OP_NODE_LABELS 4	/* any label, kmm's own included */
int kmm_op_node_change(const struct kmm_obj *old, const struct kmm_obj *new);
const char *kmm_op_label(const json_t *obj, const char *key);
const char *kmm_op_annotation(const json_t *obj, const char *key);

/* "kmm.node.kubernetes.io/<ns>.<name>.ready" and friends; heap strings. */
char *kmm_op_ready_label(const char *ns, const char *name);
char *kmm_op_version_ready_label(const char *ns, const char *name);
char *kmm_op_nmc_configured_label(const char *ns, const char *name);
char *kmm_op_nmc_in_use_label(const char *ns, const char *name);

/* ---- worker pods (reference §3.5) ---- */

enum kmm_op_worker_action {
	KMM_OP_LOAD,
	KMM_OP_UNLOAD,
};

struct kmm_op_worker_params {
	enum kmm_op_worker_action action;
	const char *node;
	const char *nmc_uid;
	const char *module_name;
	const char *module_namespace;
	const char *service_account; /* NULL -> "default" */
	const char *image_repo_secret;
	const json_t *tolerations; /* array or NULL */
	const char *version;	   /* or NULL */
	const struct kmm_module_config *config;
	const struct kmm_operator_config *op; /* worker image, runAsUser, seLinuxType, firmware */
	/*
	 * The Secret (key `cert`) with the certificate of the mapping's `sign`
	 * key, or NULL: a load pod mounts it and runs the worker with
	 * --verify-cert, so only modules signed with that key are loaded.
	 */
	const char *sign_cert_secret;
};

/* "kmm-worker-<node>-<module>"; heap. */
char *kmm_op_worker_pod_name(const char *node, const char *module);

/* The softdep.conf content for a loading order, or NULL when none (heap). */
char *kmm_op_softdep(char *const *order);

/* The pod object with its worker-hash annotation. */
int kmm_op_worker_pod(const struct kmm_op_worker_params *p, json_t **ret, struct kmm_error **err);

/*
 * The init container status of a worker pod that says why it cannot start:
 * the first one waiting (image-extractor's ErrImagePull of the kmod image comes
 * after install-copier completed), else the first; NULL when there is none.
 * Borrowed from statuses (status.initContainerStatuses).
 */
const json_t *kmm_op_worker_init_status(const json_t *statuses);

/*
 * kmm-worker-copy, the static copier that runs inside kmod images (which may
 * have no shell): the init container install-copier puts it from the worker
 * image into the emptyDir volume KMM_OP_COPIER_VOLUME, at KMM_OP_COPIER.
 */
#define KMM_OP_COPIER_VOLUME "copier"
#define KMM_OP_COPIER_DIR "/run/kmm/bin"
#define KMM_OP_COPIER KMM_OP_COPIER_DIR "/kmm-worker-copy"
json_t *kmm_op_copier_container(const char *worker_image);

/* ---- pull pods (imageCheck: pullPod) ---- */

#define KMM_LABEL_IMAGE_OWNER "kmm.node.kubernetes.io/image-owner"
#define KMM_LABEL_PULL_POD_TYPE "kmm.node.kubernetes.io/pull-pod-type"

/*
 * The pull pod of img for mic (generateName, no name): the kmod image running
 * `kmm-worker-copy --version`, which install-copier took from worker_image,
 * so that FROM-scratch kmod images (no shell) pass the check too.
 */
int kmm_op_pull_pod(const struct kmm_image_config *mic, const struct kmm_module_image_spec *img,
		    const char *worker_image, json_t **ret_pod, struct kmm_error **err);

/* FNV-1a 64 of the sorted compact JSON of obj, as decimal text (heap). */
char *kmm_op_hash_json(const json_t *obj);

/* ---- process ---- */

/* "hostname_xxxxxxxx" (random hex): a Lease holder identity unique per process. */
void kmm_op_leader_identity(char *buf, size_t size);

/*
 * glibc hands freed memory back only from the top of the heap, so what a
 * rollout freed in the middle (finished pods, their DOMs, response bodies)
 * would stay resident: measured at 1,000 nodes x 10 Modules, 3-5 MiB of
 * free heap in RSS. kmm_op_trim_heap() returns whole free pages when at
 * least 1 MiB is free; kmm-operator calls it every KMM_OP_HEAP_TRIM_EVERY_S.
 */
#define KMM_OP_HEAP_TRIM_EVERY_S 5
/*
 * A few dozen threads (informers, workers, HTTP) each allocating a little
 * would get a malloc arena apiece, each holding on to its freed pages; one
 * arena (the work is I/O-bound), and large blocks (LIST pages, response
 * bodies) mapped and unmapped on their own, keep the peak RSS near what is
 * live (measured at 1,000 nodes: docs/benchmarks.md). Unless
 * MALLOC_ARENA_MAX or MALLOC_MMAP_THRESHOLD_ say otherwise.
 */
void kmm_op_tune_malloc(void);
void kmm_op_trim_heap(void);

#endif
