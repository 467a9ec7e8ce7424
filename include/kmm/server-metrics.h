/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A metrics registry that renders the Prometheus text exposition format
 * (version 0.0.4), for kmm-operator's /metrics.
 *
 * A metric family is registered once with its type, help text and label
 * names; series are created on first use with a vector of label values (NULL
 * for a family without labels). All functions are thread-safe: one mutex per
 * registry, held only while a series is updated or the registry is rendered.
 * Families are owned by the registry and live until kmm_metrics_free().
 */
#ifndef KMM_METRICS_H
#define KMM_METRICS_H

#include <stddef.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-error.h"

enum kmm_metric_type {
	KMM_METRIC_COUNTER,
	KMM_METRIC_GAUGE,
	KMM_METRIC_HISTOGRAM,
};

struct kmm_metrics;
struct kmm_metric;

/* Called at the start of every render, e.g. to refresh process metrics. */
typedef void (*kmm_metrics_collect_fn)(struct kmm_metrics *registry, void *userdata);

struct kmm_metrics *kmm_metrics_new(void);
void kmm_metrics_free(struct kmm_metrics *registry);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_metrics *, kmm_metrics_free)

/*
 * Registers a family. `label_names` is a NULL-terminated list (or NULL for
 * none). `buckets` are the upper bounds of a histogram in increasing order
 * (+Inf is implicit); ignored for other types. Names are validated; a name
 * registered twice is -EEXIST. Returns the family through ret_metric.
 */
int kmm_metrics_register(struct kmm_metrics *registry, enum kmm_metric_type type, const char *name,
			 const char *help, const char *const *label_names, const double *buckets,
			 size_t n_buckets, struct kmm_metric **ret_metric, struct kmm_error **err);

/* Looks a family up by name, or NULL. */
struct kmm_metric *kmm_metrics_find(struct kmm_metrics *registry, const char *name);

/*
 * Updates one series, creating it at 0 first. `label_values` must have as many
 * entries as the family has label names. Counters only accept add() with a
 * non-negative delta; set() is for gauges; observe() for histograms. Returns
 * 0, -EINVAL for a misuse, -ENOMEM.
 */
int kmm_metric_add(struct kmm_metric *metric, const char *const *label_values, double delta);
int kmm_metric_set(struct kmm_metric *metric, const char *const *label_values, double value);
int kmm_metric_observe(struct kmm_metric *metric, const char *const *label_values, double value);

/* Removes one series (e.g. a per-Module gauge after the Module is gone). */
void kmm_metric_remove(struct kmm_metric *metric, const char *const *label_values);

/* The current value of a counter or gauge series, or of a histogram's count. */
double kmm_metric_value(struct kmm_metric *metric, const char *const *label_values);

/* Adds a collector run before each render. */
int kmm_metrics_add_collector(struct kmm_metrics *registry, kmm_metrics_collect_fn fn,
			      void *userdata);

/* Appends the whole registry in the text exposition format to out. */
int kmm_metrics_render(struct kmm_metrics *registry, struct kmm_buf *out);

/*
 * Registers process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_cpu_seconds_total, process_open_fds and process_start_time_seconds,
 * read from /proc/self at each render.
 */
int kmm_metrics_register_process(struct kmm_metrics *registry, struct kmm_error **err);

#endif
