/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What each Module has done on each node, as `kmmctl status` shows it: the
 * objects the operator reads and writes (Module, NodeModulesConfig, the
 * node's labels, worker and device-plugin pods, ModuleImagesConfig, Events)
 * folded into one report. Pure functions: the caller lists the objects, this
 * decides what they say.
 *
 * Ownership: a report borrows the strings of its input objects (names,
 * images, versions, pod and event texts), so the input must outlive it; the
 * strings it composes itself (reasons, details) are its own. Free it with
 * kmm_status_report_free().
 */
#ifndef KMM_API_STATUS_H
#define KMM_API_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "kmm/api.h"
#include "kmm/shared-buf.h"
#include "kmm/shared-error.h"

/* Everything the report is made from, all borrowed. */
struct kmm_status_input {
	struct kmm_module *const *modules;
	size_t n_modules;
	struct kmm_nmc *const *nmcs;
	size_t n_nmcs;
	struct kmm_image_config *const *mics; /* ModuleImagesConfigs */
	size_t n_mics;
	const json_t *nodes;  /* array of core/v1 Node */
	const json_t *pods;   /* array of core/v1 Pod: worker and device-plugin pods */
	const json_t *events; /* array of core/v1 Event; those about a Module are kept */
	/* Filters, NULL for all: a namespace, a Module name, a node name. */
	const char *namespace;
	const char *module;
	const char *node;
};

/* Where a Module stands on one node (the names are what the table prints). */
enum kmm_status_state {
	KMM_STATUS_LOADED,	  /* NMC status = spec, in the node's current boot */
	KMM_STATUS_LOADING,	  /* in the NMC spec, no (or an older-kernel) status yet */
	KMM_STATUS_UPDATING,	  /* spec changed on the same kernel: unload, then load */
	KMM_STATUS_RELOADING,	  /* loaded in an earlier boot: loaded again */
	KMM_STATUS_UNLOADING,	  /* loaded, no longer in the spec */
	KMM_STATUS_WAITING,	  /* targeted, not yet in the spec (image, version label) */
	KMM_STATUS_BUILDING,	  /* targeted; the image is being built or signed */
	KMM_STATUS_IMAGE_MISSING, /* targeted; the image does not exist and will not be built */
	KMM_STATUS_NO_MAPPING,	  /* selected, but no kernel mapping matches the kernel */
	KMM_STATUS_NOT_TARGETED,  /* selected, but a taint is not tolerated (cordoned) */
	KMM_STATUS_NOT_LOADED,	  /* nothing loaded, nothing wanted (stale labels or pods) */
	KMM_STATUS_NO_LOADER,	  /* the Module has no moduleLoader (device plugin only) */
};

/* "Loaded", "Loading", ... */
const char *kmm_status_state_name(enum kmm_status_state s);

/* A worker or device-plugin pod, as far as it explains a state. */
struct kmm_status_pod {
	const char *name;
	const char *action; /* worker: "Load" / "Unload"; device plugin: NULL */
	const char *phase;
	bool ready;
	int64_t restarts;
	char *detail; /* why it is not done: waiting reasons, last exit; NULL if none */
};

struct kmm_status_node {
	const char *node;
	const char *kernel; /* status.nodeInfo.kernelVersion */
	bool node_ready;    /* the Ready condition is True */
	enum kmm_status_state state;
	char *reason; /* why the state, when it is not plain Loaded; NULL otherwise */

	/* What is loaded: the NMC status entry. */
	bool loaded;
	const char *loaded_version, *loaded_image, *loaded_kernel, *loaded_since, *loaded_boot_id;
	bool loaded_this_boot; /* loaded_boot_id is the node's current bootID */

	/* What is wanted: the NMC spec entry, or the mapping when there is none yet. */
	bool configured;
	const char *wanted_version, *wanted_image, *wanted_kernel;
	char *resolved_image;	 /* the mapping's image when there is no spec entry */
	const char *image_state; /* the MIC's word on the wanted image, NULL if none */

	/* Node labels kmm writes. */
	bool ready_label;
	const char *version_ready_label; /* value of .version.ready, NULL when absent */

	struct kmm_status_pod *worker; /* NULL when no worker pod exists */

	/* Device plugin, when the Module has one. */
	bool has_device_plugin;
	const char *device_plugin_state; /* Ready, Pending, NotScheduled, WaitingForModule */
	bool device_plugin_target, device_plugin_ready;
	struct kmm_status_pod *device_plugin_pod;
};

struct kmm_status_image {
	const char *image;
	const char *kernel;
	const char *state; /* MIC status; NULL when not checked yet */
};

struct kmm_status_event {
	const char *type, *reason, *message, *last_seen;
	int64_t count;
};

struct kmm_status_module {
	const char *namespace, *name;
	const char *version; /* moduleLoader.container.version, NULL when unset */
	bool has_loader, has_device_plugin;
	struct kmm_daemonset_status loader, device_plugin;	 /* counts from Module status */
	const char *ready_status, *ready_reason, *ready_message; /* the Ready condition */
	size_t n_images;
	struct kmm_status_image *images;
	size_t n_events; /* the most recent ones, oldest first */
	struct kmm_status_event *events;
	size_t n_nodes;
	struct kmm_status_node *nodes; /* sorted by node name */
};

struct kmm_status_report {
	size_t n_modules;
	struct kmm_status_module *modules; /* sorted by namespace, then name */
};

/* At most this many Events are kept per Module. */
#define KMM_STATUS_MAX_EVENTS 10

/*
 * Builds the report. A node appears under a Module when the Module selects
 * it or anything about the Module is on it (NMC entry, pod, label). Returns
 * 0, or -ENOMEM / -EINVAL (a kernel mapping that does not compile) with err.
 */
int kmm_status_build(const struct kmm_status_input *in, struct kmm_status_report **ret,
		     struct kmm_error **err);
void kmm_status_report_free(struct kmm_status_report *r);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_status_report *, kmm_status_report_free)

/* The report as {"modules": [...]} for -o json|yaml; NULL on ENOMEM. */
json_t *kmm_status_to_json(const struct kmm_status_report *r);

/* The report as text tables (-o table). Returns 0 or -ENOMEM / -E2BIG. */
int kmm_status_format_table(const struct kmm_status_report *r, struct kmm_buf *out);

#endif
