/* SPDX-License-Identifier: Apache-2.0 */
/* core/v1 Event recorder with count-based de-duplication. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmm/events.h"
#include "kmm/hashmap.h"
#include "lib/kube/kube-internal.h"

#define MAX_SERIES 4096

struct series {
	char *ns;
	char *name;
	int64_t count;
};

struct kmm_event_recorder {
	struct kmm_kube_client *c;
	char *component, *instance;
	pthread_mutex_t lock; /* guards series */
	struct kmm_hashmap *series;
};

static void series_free(void *p)
{
	struct series *s = p;

	if (!s)
		return;
	free(s->ns);
	free(s->name);
	free(s);
}

int kmm_event_recorder_new(struct kmm_kube_client *client, const char *component,
			   const char *instance, struct kmm_event_recorder **ret,
			   struct kmm_error **err)
{
	struct kmm_event_recorder *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->c = client;
	r->component = strdup(component ? component : "kmm");
	r->instance = instance ? strdup(instance) : NULL;
	r->series = kmm_hashmap_new(series_free);
	pthread_mutex_init(&r->lock, NULL);
	if (!r->component || (instance && !r->instance) || !r->series) {
		kmm_event_recorder_free(r);
		return -ENOMEM;
	}
	*ret = r;
	return 0;
}

void kmm_event_recorder_free(struct kmm_event_recorder *r)
{
	if (!r)
		return;
	kmm_hashmap_free(r->series);
	pthread_mutex_destroy(&r->lock);
	free(r->component);
	free(r->instance);
	free(r);
}

static int create_event(struct kmm_event_recorder *r, const json_t *obj, const char *ns,
			const char *type, const char *reason, const char *msg, const char *now,
			char **ret_name, struct kmm_error **err)
{
	_cleanup_(json_decrefp) json_t *ev = NULL, *created = NULL;
	const char *oname = kmm_kube_meta_str(obj, "name");
	char name[320];
	struct timespec ts;
	int rc;

	clock_gettime(CLOCK_REALTIME, &ts);
	/* Like client-go: <object>.<unique hex>. */
	snprintf(name, sizeof(name), "%.230s.%llx", oname ? oname : "unknown",
		 (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec);
	ev = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s?,s:s?,s:s?,s:s?,s:s?,s:s?},s:s,s:s,s:s,"
		       "s:s,s:s,s:i,s:{s:s,s:s?},s:s,s:s?}",
		       "apiVersion", "v1", "kind", "Event", "metadata", "name", name, "namespace",
		       ns, "involvedObject", "apiVersion",
		       json_string_value(json_object_get(obj, "apiVersion")), "kind",
		       json_string_value(json_object_get(obj, "kind")), "namespace",
		       kmm_kube_meta_str(obj, "namespace"), "name", oname, "uid",
		       kmm_kube_meta_str(obj, "uid"), "resourceVersion",
		       kmm_kube_meta_str(obj, "resourceVersion"), "type", type, "reason", reason,
		       "message", msg, "firstTimestamp", now, "lastTimestamp", now, "count", 1,
		       "source", "component", r->component, "host", r->instance,
		       "reportingComponent", r->component, "reportingInstance", r->instance);
	if (!ev)
		return -ENOMEM;
	rc = kmm_kube_create(r->c,
			     &(struct kmm_kube_target){ .res = &kmm_kube_events, .namespace = ns },
			     ev, NULL, &created, err);
	if (rc < 0)
		return rc;
	*ret_name = strdup(name);
	return *ret_name ? 0 : -ENOMEM;
}

int kmm_event_record(struct kmm_event_recorder *r, const json_t *object, const char *type,
		     const char *reason, struct kmm_error **err, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL, *key = NULL, *name = NULL, *ev_ns = NULL;
	const char *ns = kmm_kube_meta_str(object, "namespace");
	struct series *s;
	char now[32];
	time_t t = time(NULL);
	struct tm tm;
	int64_t count = 0;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (rc < 0)
		return -ENOMEM;
	if (!ns || !*ns)
		ns = "default";
	gmtime_r(&t, &tm);
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
	/* A series is (object, type, reason, message). */
	if (asprintf(&key, "%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s", ns,
		     json_string_value(json_object_get(object, "kind")) ?: "",
		     kmm_kube_meta_str(object, "name") ?: "",
		     kmm_kube_meta_str(object, "uid") ?: "", type, reason, msg) < 0)
		return -ENOMEM;
	pthread_mutex_lock(&r->lock);
	s = r->series ? kmm_hashmap_get(r->series, key) : NULL;
	if (s) {
		name = strdup(s->name);
		ev_ns = strdup(s->ns);
		count = ++s->count;
	}
	pthread_mutex_unlock(&r->lock);
	if (s && (!name || !ev_ns))
		return -ENOMEM;
	if (name) {
		_cleanup_(json_decrefp) json_t *patch =
		    json_pack("{s:I,s:s}", "count", (json_int_t)count, "lastTimestamp", now);

		if (!patch)
			return -ENOMEM;
		rc = kmm_kube_patch(r->c,
				    &(struct kmm_kube_target){
					.res = &kmm_kube_events, .namespace = ev_ns, .name = name },
				    KMM_KUBE_PATCH_MERGE, patch, NULL, NULL, NULL);
		if (rc == 0)
			return 0;
		/* The Event expired or was deleted: start a new series. */
		free(name);
		name = NULL;
	}
	rc = create_event(r, object, ns, type, reason, msg, now, &name, err);
	if (rc < 0)
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->ns = strdup(ns))) {
		series_free(s);
		return -ENOMEM;
	}
	s->name = TAKE_PTR(name);
	s->count = 1;
	pthread_mutex_lock(&r->lock);
	if (kmm_hashmap_size(r->series) >= MAX_SERIES) {
		kmm_hashmap_free(r->series);
		r->series = kmm_hashmap_new(series_free);
	}
	if (!r->series || kmm_hashmap_put(r->series, key, s, NULL) < 0)
		series_free(s);
	pthread_mutex_unlock(&r->lock);
	return 0;
}
