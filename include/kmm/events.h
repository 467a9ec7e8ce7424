/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Event recorder: core/v1 Events about an object, de-duplicated the way
 * kubectl shows them: the same (object, type, reason, message) seen again
 * bumps count and lastTimestamp on the existing Event (JSON merge patch)
 * instead of creating a new one.
 *
 * Threads: safe from any thread; each call sends synchronously (one request)
 * on the caller's thread. Failures are returned, never retried here beyond
 * the client's own retries: events are best effort, callers usually ignore
 * the result. The recorder remembers at most 4096 series (then forgets all).
 */
#ifndef KMM_EVENTS_H
#define KMM_EVENTS_H

#include <jansson.h>

#include "kmm/error.h"
#include "kmm/kube.h"

struct kmm_event_recorder;

/* component: source.component / reportingComponent (e.g. "kmm-operator");
 * instance: reportingInstance (e.g. the pod name), may be NULL. */
int kmm_event_recorder_new(struct kmm_kube_client *client, const char *component,
			   const char *instance, struct kmm_event_recorder **ret,
			   struct kmm_error **err);

void kmm_event_recorder_free(struct kmm_event_recorder *r);

/*
 * Records an event about `object` (only apiVersion, kind, metadata.namespace,
 * name, uid, resourceVersion are read; a cluster-scoped object's events go to
 * "default"). type is "Normal" or "Warning".
 */
int kmm_event_record(struct kmm_event_recorder *r, const json_t *object, const char *type,
		     const char *reason, struct kmm_error **err, const char *fmt, ...)
    _printf_(6, 7);

#endif
