/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kmm/shared-fileio.h"
#include "kmm/shared-hashmap.h"
#include "kmm/server-metrics.h"
#include "kmm/shared-strv.h"

/* Label values are joined with a byte that cannot appear in valid UTF-8 text. */
#define KEY_SEP "\xff"

struct series {
	char **label_values;
	double value;	   /* counter/gauge value, or histogram sum */
	uint64_t count;	   /* histogram observations */
	uint64_t *buckets; /* cumulative counts per upper bound (histogram) */
};

struct kmm_metric {
	struct kmm_metrics *registry;
	enum kmm_metric_type type;
	char *name;
	char *help;
	char **label_names;
	size_t n_labels;
	double *bounds;
	size_t n_bounds;
	struct kmm_hashmap *series; /* joined label values -> struct series */
};

struct collector {
	kmm_metrics_collect_fn fn;
	void *userdata;
};

struct kmm_metrics {
	pthread_mutex_t lock;
	struct kmm_metric **families; /* in registration order */
	size_t n_families;
	struct collector *collectors;
	size_t n_collectors;
};

static void series_free(void *p)
{
	struct series *s = p;

	if (!s)
		return;
	kmm_strv_free(s->label_values);
	free(s->buckets);
	free(s);
}

static void metric_free(struct kmm_metric *m)
{
	if (!m)
		return;
	free(m->name);
	free(m->help);
	kmm_strv_free(m->label_names);
	free(m->bounds);
	kmm_hashmap_free(m->series);
	free(m);
}

struct kmm_metrics *kmm_metrics_new(void)
{
	struct kmm_metrics *r = calloc(1, sizeof(*r));

	if (r)
		pthread_mutex_init(&r->lock, NULL);
	return r;
}

void kmm_metrics_free(struct kmm_metrics *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_families; i++)
		metric_free(r->families[i]);
	free(r->families);
	free(r->collectors);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static bool valid_name(const char *s, bool allow_colon)
{
	if (!s || !*s)
		return false;
	for (const char *p = s; *p; p++) {
		bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
			     (allow_colon && *p == ':');
		if (!alpha && !(p > s && *p >= '0' && *p <= '9'))
			return false;
	}
	return true;
}

struct kmm_metric *kmm_metrics_find(struct kmm_metrics *r, const char *name)
{
	struct kmm_metric *found = NULL;

	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_families && !found; i++) {
		if (strcmp(r->families[i]->name, name) == 0)
			found = r->families[i];
	}
	pthread_mutex_unlock(&r->lock);
	return found;
}

static int validate_family(enum kmm_metric_type type, const char *name,
			   const char *const *label_names, const double *buckets, size_t n_buckets,
			   struct kmm_error **err)
{
	if (!valid_name(name, true))
		return kmm_error_make(err, EINVAL, "metric name '%s' is not valid",
				      name ? name : "");
	for (size_t i = 0; label_names && label_names[i]; i++) {
		if (!valid_name(label_names[i], false) || strncmp(label_names[i], "__", 2) == 0 ||
		    (type == KMM_METRIC_HISTOGRAM && strcmp(label_names[i], "le") == 0))
			return kmm_error_make(err, EINVAL,
					      "metric %s: label name '%s' is not valid", name,
					      label_names[i]);
	}
	if (type == KMM_METRIC_HISTOGRAM) {
		if (n_buckets == 0)
			return kmm_error_make(err, EINVAL, "histogram %s has no buckets", name);
		for (size_t i = 0; i < n_buckets; i++) {
			if (isnan(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
				return kmm_error_make(
				    err, EINVAL, "histogram %s: buckets must increase strictly",
				    name);
		}
	}
	return 0;
}

int kmm_metrics_register(struct kmm_metrics *r, enum kmm_metric_type type, const char *name,
			 const char *help, const char *const *label_names, const double *buckets,
			 size_t n_buckets, struct kmm_metric **ret_metric, struct kmm_error **err)
{
	struct kmm_metric *m;
	struct kmm_metric **families;
	int rc;

	rc = validate_family(type, name, label_names, buckets, n_buckets, err);
	if (rc < 0)
		return rc;
	if (kmm_metrics_find(r, name))
		return kmm_error_make(err, EEXIST, "metric %s is already registered", name);
	m = calloc(1, sizeof(*m));
	if (!m)
		return kmm_error_make_errno(err, ENOMEM, "register metric %s", name);
	m->registry = r;
	m->type = type;
	m->name = strdup(name);
	m->help = strdup(help ? help : "");
	m->label_names = kmm_strv_copy((char *const *)label_names);
	m->series = kmm_hashmap_new(series_free);
	if (type == KMM_METRIC_HISTOGRAM) {
		m->bounds = calloc(n_buckets, sizeof(double));
		if (m->bounds)
			memcpy(m->bounds, buckets, n_buckets * sizeof(double));
		m->n_bounds = n_buckets;
	}
	if (!m->name || !m->help || !m->label_names || !m->series ||
	    (type == KMM_METRIC_HISTOGRAM && !m->bounds)) {
		metric_free(m);
		return kmm_error_make_errno(err, ENOMEM, "register metric %s", name);
	}
	m->n_labels = kmm_strv_length(m->label_names);

	pthread_mutex_lock(&r->lock);
	families = reallocarray(r->families, r->n_families + 1, sizeof(*families));
	if (families) {
		r->families = families;
		r->families[r->n_families++] = m;
	}
	pthread_mutex_unlock(&r->lock);
	if (!families) {
		metric_free(m);
		return kmm_error_make_errno(err, ENOMEM, "register metric %s", name);
	}
	if (ret_metric)
		*ret_metric = m;
	return 0;
}

static char *series_key(const struct kmm_metric *m, const char *const *values)
{
	struct kmm_buf b;

	kmm_buf_init(&b, 64 * 1024);
	for (size_t i = 0; i < m->n_labels; i++) {
		if (!values || !values[i])
			goto fail;
		if ((i > 0 && kmm_buf_append_str(&b, KEY_SEP) < 0) ||
		    kmm_buf_append_str(&b, values[i]) < 0)
			goto fail;
	}
	return kmm_buf_steal(&b);
fail:
	kmm_buf_free(&b);
	return NULL;
}

/* Finds or creates a series; the registry lock must be held. */
static struct series *get_series(struct kmm_metric *m, const char *const *values, bool create)
{
	_cleanup_free_ char *key = series_key(m, values);
	struct series *s;

	if (!key)
		return NULL;
	s = kmm_hashmap_get(m->series, key);
	if (s || !create)
		return s;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->label_values = calloc(m->n_labels + 1, sizeof(char *));
	if (m->type == KMM_METRIC_HISTOGRAM)
		s->buckets = calloc(m->n_bounds, sizeof(uint64_t));
	for (size_t i = 0; s->label_values && i < m->n_labels; i++) {
		s->label_values[i] = strdup(values[i]);
		if (!s->label_values[i]) {
			kmm_strv_free(s->label_values);
			s->label_values = NULL;
		}
	}
	if (!s->label_values || (m->type == KMM_METRIC_HISTOGRAM && !s->buckets) ||
	    kmm_hashmap_put(m->series, key, s, NULL) < 0) {
		series_free(s);
		return NULL;
	}
	return s;
}

static int update(struct kmm_metric *m, const char *const *values, enum kmm_metric_type want,
		  double v, int op)
{
	struct series *s;
	int r = 0;

	if (!m || m->type != want || (want == KMM_METRIC_COUNTER && op == 'a' && !(v >= 0)))
		return -EINVAL;
	pthread_mutex_lock(&m->registry->lock);
	s = get_series(m, values, true);
	if (!s) {
		r = -ENOMEM;
	} else if (op == 's') {
		s->value = v;
	} else if (op == 'a') {
		s->value += v;
	} else {
		s->value += v;
		s->count++;
		for (size_t i = 0; i < m->n_bounds; i++) {
			if (v <= m->bounds[i])
				s->buckets[i]++;
		}
	}
	pthread_mutex_unlock(&m->registry->lock);
	return r;
}

int kmm_metric_add(struct kmm_metric *m, const char *const *values, double delta)
{
	return update(m, values,
		      m->type == KMM_METRIC_GAUGE ? KMM_METRIC_GAUGE : KMM_METRIC_COUNTER, delta,
		      'a');
}

int kmm_metric_set(struct kmm_metric *m, const char *const *values, double value)
{
	return update(m, values, KMM_METRIC_GAUGE, value, 's');
}

int kmm_metric_observe(struct kmm_metric *m, const char *const *values, double value)
{
	return update(m, values, KMM_METRIC_HISTOGRAM, value, 'o');
}

void kmm_metric_remove(struct kmm_metric *m, const char *const *values)
{
	_cleanup_free_ char *key = series_key(m, values);

	if (!key)
		return;
	pthread_mutex_lock(&m->registry->lock);
	series_free(kmm_hashmap_remove(m->series, key));
	pthread_mutex_unlock(&m->registry->lock);
}

double kmm_metric_value(struct kmm_metric *m, const char *const *values)
{
	struct series *s;
	double v = 0;

	pthread_mutex_lock(&m->registry->lock);
	s = get_series(m, values, false);
	if (s)
		v = m->type == KMM_METRIC_HISTOGRAM ? (double)s->count : s->value;
	pthread_mutex_unlock(&m->registry->lock);
	return v;
}

int kmm_metrics_add_collector(struct kmm_metrics *r, kmm_metrics_collect_fn fn, void *userdata)
{
	struct collector *c;

	pthread_mutex_lock(&r->lock);
	c = reallocarray(r->collectors, r->n_collectors + 1, sizeof(*c));
	if (c) {
		r->collectors = c;
		r->collectors[r->n_collectors++] = (struct collector){ fn, userdata };
	}
	pthread_mutex_unlock(&r->lock);
	return c ? 0 : -ENOMEM;
}

/* Label values and help text escape backslash and newline; values also '"'. */
static int append_escaped(struct kmm_buf *b, const char *s, bool quote)
{
	int r = 0;

	for (const char *p = s; *p && r == 0; p++) {
		if (*p == '\\')
			r = kmm_buf_append_str(b, "\\\\");
		else if (*p == '\n')
			r = kmm_buf_append_str(b, "\\n");
		else if (quote && *p == '"')
			r = kmm_buf_append_str(b, "\\\"");
		else
			r = kmm_buf_append(b, p, 1);
	}
	return r;
}

static int append_number(struct kmm_buf *b, double v)
{
	if (isinf(v))
		return kmm_buf_append_str(b, v > 0 ? "+Inf" : "-Inf");
	if (isnan(v))
		return kmm_buf_append_str(b, "NaN");
	if (v == (double)(long long)v && fabs(v) < 1e15)
		return kmm_buf_printf(b, "%lld", (long long)v);
	return kmm_buf_printf(b, "%.17g", v);
}

/* name{l1="v1",...,extra} value */
static int append_sample(struct kmm_buf *b, const struct kmm_metric *m, const char *suffix,
			 const struct series *s, const char *extra_label, double extra_value,
			 double value)
{
	bool any = m->n_labels > 0 || extra_label;
	int r = kmm_buf_printf(b, "%s%s", m->name, suffix);

	if (r == 0 && any)
		r = kmm_buf_append_str(b, "{");
	for (size_t i = 0; r == 0 && i < m->n_labels; i++) {
		r = kmm_buf_printf(b, "%s%s=\"", i ? "," : "", m->label_names[i]);
		if (r == 0)
			r = append_escaped(b, s->label_values[i], true);
		if (r == 0)
			r = kmm_buf_append_str(b, "\"");
	}
	if (r == 0 && extra_label) {
		r = kmm_buf_printf(b, "%s%s=\"", m->n_labels ? "," : "", extra_label);
		if (r == 0)
			r = append_number(b, extra_value);
		if (r == 0)
			r = kmm_buf_append_str(b, "\"");
	}
	if (r == 0 && any)
		r = kmm_buf_append_str(b, "}");
	if (r == 0)
		r = kmm_buf_append_str(b, " ");
	if (r == 0)
		r = append_number(b, value);
	if (r == 0)
		r = kmm_buf_append_str(b, "\n");
	return r;
}

static int append_series(struct kmm_buf *b, const struct kmm_metric *m, const struct series *s)
{
	int r = 0;

	if (m->type != KMM_METRIC_HISTOGRAM)
		return append_sample(b, m, "", s, NULL, 0, s->value);
	for (size_t i = 0; r == 0 && i < m->n_bounds; i++)
		r = append_sample(b, m, "_bucket", s, "le", m->bounds[i], (double)s->buckets[i]);
	if (r == 0)
		r = append_sample(b, m, "_bucket", s, "le", INFINITY, (double)s->count);
	if (r == 0)
		r = append_sample(b, m, "_sum", s, NULL, 0, s->value);
	if (r == 0)
		r = append_sample(b, m, "_count", s, NULL, 0, (double)s->count);
	return r;
}

static int cmp_series(const void *a, const void *b)
{
	const struct series *x = *(const struct series *const *)a;
	const struct series *y = *(const struct series *const *)b;

	for (size_t i = 0; x->label_values[i] && y->label_values[i]; i++) {
		int c = strcmp(x->label_values[i], y->label_values[i]);
		if (c)
			return c;
	}
	return 0;
}

static int render_family(struct kmm_buf *out, const struct kmm_metric *m)
{
	static const char *const type_names[] = {
		[KMM_METRIC_COUNTER] = "counter",
		[KMM_METRIC_GAUGE] = "gauge",
		[KMM_METRIC_HISTOGRAM] = "histogram",
	};
	size_t n = kmm_hashmap_size(m->series), i = 0, it = 0;
	_cleanup_free_ struct series **sorted = NULL;
	void *v;
	int r;

	r = kmm_buf_printf(out, "# HELP %s ", m->name);
	if (r == 0)
		r = append_escaped(out, m->help, false);
	if (r == 0)
		r = kmm_buf_printf(out, "\n# TYPE %s %s\n", m->name, type_names[m->type]);
	if (r < 0 || n == 0)
		return r;
	/* Sorted output keeps scrapes diffable and tests exact. */
	sorted = calloc(n, sizeof(*sorted));
	if (!sorted)
		return -ENOMEM;
	while (kmm_hashmap_iterate(m->series, &it, NULL, &v))
		sorted[i++] = v;
	qsort(sorted, n, sizeof(*sorted), cmp_series);
	for (i = 0; r == 0 && i < n; i++)
		r = append_series(out, m, sorted[i]);
	return r;
}

int kmm_metrics_render(struct kmm_metrics *r, struct kmm_buf *out)
{
	size_t n_collectors;
	int rc = 0;

	/* Collectors update metrics through the locking API, so run them unlocked. */
	pthread_mutex_lock(&r->lock);
	n_collectors = r->n_collectors;
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; i < n_collectors; i++)
		r->collectors[i].fn(r, r->collectors[i].userdata);

	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; rc == 0 && i < r->n_families; i++)
		rc = render_family(out, r->families[i]);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

/* Process metrics from /proc/self, as the Prometheus client libraries name them. */

static int count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d))) {
		if (de->d_name[0] != '.')
			n++;
	}
	closedir(d);
	return n - 1; /* the directory stream's own descriptor */
}

/* The n-th (1-based) space-separated field of a /proc/self/stat line, counted from
 * field 3, which starts after the command name's closing parenthesis. */
static unsigned long long stat_field(const char *after_comm, int n)
{
	const char *p = after_comm;

	for (int field = 3; field < n && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	return p ? strtoull(p, NULL, 10) : 0;
}

static void collect_process(struct kmm_metrics *r, void *userdata)
{
	_cleanup_free_ char *stat = NULL;
	long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	unsigned long long utime, stime, starttime, vsize, rss;
	struct timespec now, up;
	char *p;

	(void)userdata;
	if (kmm_read_file("/proc/self/stat", 4096, &stat, NULL, NULL) < 0)
		return;
	/* The command name may contain spaces and parentheses: count after the last ')'. */
	p = strrchr(stat, ')');
	if (!p || p[1] != ' ')
		return;
	p += 2;
	utime = stat_field(p, 14);
	stime = stat_field(p, 15);
	starttime = stat_field(p, 22);
	vsize = stat_field(p, 23);
	rss = stat_field(p, 24);
	clock_gettime(CLOCK_REALTIME, &now);
	clock_gettime(CLOCK_BOOTTIME, &up);
	kmm_metric_set(kmm_metrics_find(r, "process_resident_memory_bytes"), NULL,
		       (double)rss * (double)page);
	kmm_metric_set(kmm_metrics_find(r, "process_virtual_memory_bytes"), NULL, (double)vsize);
	/* A counter, but the kernel keeps the total: store it as it is. */
	update(kmm_metrics_find(r, "process_cpu_seconds_total"), NULL, KMM_METRIC_COUNTER,
	       (double)(utime + stime) / (double)ticks, 's');
	kmm_metric_set(kmm_metrics_find(r, "process_open_fds"), NULL, count_open_fds());
	{
		/* Live vs. free heap: how much of the RSS is data and how much fragmentation. */
		struct mallinfo2 mi = mallinfo2();
		const char *in_use[] = { "in_use", NULL }, *free_lv[] = { "free", NULL };

		kmm_metric_set(kmm_metrics_find(r, "kmm_heap_bytes"), in_use,
			       (double)(mi.uordblks + mi.hblkhd));
		kmm_metric_set(kmm_metrics_find(r, "kmm_heap_bytes"), free_lv, (double)mi.fordblks);
	}
	kmm_metric_set(kmm_metrics_find(r, "process_start_time_seconds"), NULL,
		       (double)now.tv_sec - (double)up.tv_sec + (double)starttime / (double)ticks);
}

int kmm_metrics_register_process(struct kmm_metrics *r, struct kmm_error **err)
{
	static const char *const heap_labels[] = { "state", NULL };
	static const struct {
		enum kmm_metric_type type;
		const char *name, *help;
	} gauges[] = {
		{ KMM_METRIC_GAUGE, "process_resident_memory_bytes",
		  "Resident memory size in bytes." },
		{ KMM_METRIC_GAUGE, "process_virtual_memory_bytes",
		  "Virtual memory size in bytes." },
		{ KMM_METRIC_COUNTER, "process_cpu_seconds_total",
		  "Total user and system CPU time spent in seconds." },
		{ KMM_METRIC_GAUGE, "process_open_fds", "Number of open file descriptors." },
		{ KMM_METRIC_GAUGE, "process_start_time_seconds",
		  "Start time of the process since the Unix epoch in seconds." },
	};
	int rc;

	for (size_t i = 0; i < KMM_ARRAY_SIZE(gauges); i++) {
		rc = kmm_metrics_register(r, gauges[i].type, gauges[i].name, gauges[i].help, NULL,
					  NULL, 0, NULL, err);
		if (rc < 0)
			return rc;
	}
	rc = kmm_metrics_register(r, KMM_METRIC_GAUGE, "kmm_heap_bytes",
				  "malloc heap bytes in use (including mmapped blocks) and free "
				  "inside the heap",
				  heap_labels, NULL, 0, NULL, err);
	if (rc < 0)
		return rc;
	return kmm_metrics_add_collector(r, collect_process, NULL);
}
