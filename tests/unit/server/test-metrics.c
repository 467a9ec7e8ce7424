/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/server-metrics.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KMM_HAS_ASAN_FEATURE 1
#endif
#endif
#ifndef KMM_HAS_ASAN_FEATURE
#define KMM_HAS_ASAN_FEATURE 0
#endif

static char *render(struct kmm_metrics *r)
{
	struct kmm_buf b;

	kmm_buf_init(&b, 0);
	assert_int_equal(kmm_metrics_render(r, &b), 0);
	return kmm_buf_steal(&b);
}

static void test_counter_and_gauge_render_exactly(void **state)
{
	_cleanup_(kmm_metrics_freep) struct kmm_metrics *r = kmm_metrics_new();
	const char *labels[] = { "controller", "result", NULL };
	struct kmm_metric *c = NULL, *g = NULL;
	_cleanup_free_ char *out = NULL;

	assert_int_equal(kmm_metrics_register(r, KMM_METRIC_COUNTER, "kmm_reconcile_total",
					      "Reconciles by controller.", labels, NULL, 0, &c,
					      NULL),
			 0);
	assert_int_equal(kmm_metrics_register(r, KMM_METRIC_GAUGE, "kmm_module_num",
					      "Number of Modules.", NULL, NULL, 0, &g, NULL),
			 0);
	assert_int_equal(kmm_metric_add(c, (const char *[]){ "nmc", "success" }, 2), 0);
	assert_int_equal(kmm_metric_add(c, (const char *[]){ "module", "success" }, 1), 0);
	assert_int_equal(kmm_metric_add(c, (const char *[]){ "module", "success" }, 1), 0);
	assert_int_equal(kmm_metric_set(g, NULL, 3), 0);
	out = render(r);
	assert_string_equal(out, "# HELP kmm_reconcile_total Reconciles by controller.\n"
				 "# TYPE kmm_reconcile_total counter\n"
				 "kmm_reconcile_total{controller=\"module\",result=\"success\"} 2\n"
				 "kmm_reconcile_total{controller=\"nmc\",result=\"success\"} 2\n"
				 "# HELP kmm_module_num Number of Modules.\n"
				 "# TYPE kmm_module_num gauge\n"
				 "kmm_module_num 3\n");
	assert_true(kmm_metric_value(c, (const char *[]){ "module", "success" }) == 2.0);
}

static void test_histogram_buckets_are_cumulative(void **state)
{
	_cleanup_(kmm_metrics_freep) struct kmm_metrics *r = kmm_metrics_new();
	const double buckets[] = { 0.1, 1 };
	struct kmm_metric *h = NULL;
	_cleanup_free_ char *out = NULL;

	assert_int_equal(kmm_metrics_register(r, KMM_METRIC_HISTOGRAM, "d_seconds", "D.", NULL,
					      buckets, 2, &h, NULL),
			 0);
	kmm_metric_observe(h, NULL, 0.05);
	kmm_metric_observe(h, NULL, 0.5);
	kmm_metric_observe(h, NULL, 4);
	out = render(r);
	assert_string_equal(out, "# HELP d_seconds D.\n"
				 "# TYPE d_seconds histogram\n"
				 "d_seconds_bucket{le=\"0.10000000000000001\"} 1\n"
				 "d_seconds_bucket{le=\"1\"} 2\n"
				 "d_seconds_bucket{le=\"+Inf\"} 3\n"
				 "d_seconds_sum 4.5499999999999998\n"
				 "d_seconds_count 3\n");
}

static void test_label_values_and_help_are_escaped(void **state)
{
	_cleanup_(kmm_metrics_freep) struct kmm_metrics *r = kmm_metrics_new();
	const char *labels[] = { "modprobeArgs", NULL };
	struct kmm_metric *g = NULL;
	_cleanup_free_ char *out = NULL;

	kmm_metrics_register(r, KMM_METRIC_GAUGE, "kmm_modprobe_args", "Args \\ with\nnewline",
			     labels, NULL, 0, &g, NULL);
	kmm_metric_set(g, (const char *[]){ "a=\"1\"\\\n" }, 1);
	out = render(r);
	assert_non_null(strstr(out, "# HELP kmm_modprobe_args Args \\\\ with\\nnewline\n"));
	assert_non_null(strstr(out, "kmm_modprobe_args{modprobeArgs=\"a=\\\"1\\\"\\\\\\n\"} 1\n"));
}

static void test_misuse_is_rejected(void **state)
{
	_cleanup_(kmm_metrics_freep) struct kmm_metrics *r = kmm_metrics_new();
	_cleanup_error_ struct kmm_error *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL;
	const char *bad_labels[] = { "__reserved", NULL };
	const double bad_buckets[] = { 1, 1 };
	struct kmm_metric *c = NULL;

	assert_int_equal(
	    kmm_metrics_register(r, KMM_METRIC_GAUGE, "9lives", "", NULL, NULL, 0, NULL, &e1),
	    -EINVAL);
	assert_string_equal(e1->message, "metric name '9lives' is not valid");
	assert_int_equal(
	    kmm_metrics_register(r, KMM_METRIC_GAUGE, "x", "", bad_labels, NULL, 0, NULL, &e2),
	    -EINVAL);
	assert_int_equal(
	    kmm_metrics_register(r, KMM_METRIC_HISTOGRAM, "h", "", NULL, bad_buckets, 2, NULL, &e3),
	    -EINVAL);
	assert_int_equal(
	    kmm_metrics_register(r, KMM_METRIC_COUNTER, "c", "", NULL, NULL, 0, &c, NULL), 0);
	assert_int_equal(
	    kmm_metrics_register(r, KMM_METRIC_COUNTER, "c", "", NULL, NULL, 0, NULL, &e4),
	    -EEXIST);
	assert_int_equal(kmm_metric_add(c, NULL, -1), -EINVAL);
	assert_int_equal(kmm_metric_set(c, NULL, 5), -EINVAL);
	assert_int_equal(kmm_metric_observe(c, NULL, 5), -EINVAL);
	assert_int_equal(kmm_metric_set(NULL, NULL, 5), -EINVAL);
}

static void test_missing_label_value_is_rejected(void **state)
{
	_cleanup_(kmm_metrics_freep) struct kmm_metrics *r = kmm_metrics_new();
	const char *labels[] = { "a", "b", NULL };
	struct kmm_metric *g = NULL;

	kmm_metrics_register(r, KMM_METRIC_GAUGE, "g", "", labels, NULL, 0, &g, NULL);
	assert_int_equal(kmm_metric_set(g, (const char *[]){ "only-one", NULL }, 1), -ENOMEM);
	assert_int_equal(kmm_metric_set(g, NULL, 1), -ENOMEM);
}

static void test_remove_drops_a_series(void **state)
{
	_cleanup_(kmm_metrics_freep) struct kmm_metrics *r = kmm_metrics_new();
	const char *labels[] = { "name", NULL };
	struct kmm_metric *g = NULL;
	_cleanup_free_ char *out = NULL;

	kmm_metrics_register(r, KMM_METRIC_GAUGE, "g", "G.", labels, NULL, 0, &g, NULL);
	kmm_metric_set(g, (const char *[]){ "a" }, 1);
	kmm_metric_set(g, (const char *[]){ "b" }, 1);
	kmm_metric_remove(g, (const char *[]){ "a" });
	out = render(r);
	assert_null(strstr(out, "name=\"a\""));
	assert_non_null(strstr(out, "g{name=\"b\"} 1\n"));
}

static void test_process_metrics_are_plausible(void **state)
{
	_cleanup_(kmm_metrics_freep) struct kmm_metrics *r = kmm_metrics_new();
	_cleanup_free_ char *out = NULL;
	double rss, fds;

	assert_int_equal(kmm_metrics_register_process(r, NULL), 0);
	out = render(r);
	assert_non_null(strstr(out, "# TYPE process_cpu_seconds_total counter\n"));
	rss = kmm_metric_value(kmm_metrics_find(r, "process_resident_memory_bytes"), NULL);
	fds = kmm_metric_value(kmm_metrics_find(r, "process_open_fds"), NULL);
	assert_true(rss > 1024 * 1024);
	assert_true(fds >= 3);
	assert_true(kmm_metric_value(kmm_metrics_find(r, "process_start_time_seconds"), NULL) >
		    1.7e9);
	{
		const char *in_use[] = { "in_use" };
		_cleanup_free_ char *big = malloc(256 * 1024); /* mmapped: counted too */
		_cleanup_free_ char *again = NULL;

		assert_non_null(big);
		memset(big, 1, 256 * 1024);
		again = render(r);
		assert_non_null(strstr(again, "kmm_heap_bytes{state=\"free\"} "));
#if !defined(__SANITIZE_ADDRESS__) && !KMM_HAS_ASAN_FEATURE
		/* ASan's allocator replaces malloc's: mallinfo2() knows nothing of it. */
		assert_true(kmm_metric_value(kmm_metrics_find(r, "kmm_heap_bytes"), in_use) >=
			    256 * 1024);
#endif
		assert_true(kmm_metric_value(kmm_metrics_find(r, "kmm_heap_bytes"), in_use) < rss);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counter_and_gauge_render_exactly),
		cmocka_unit_test(test_histogram_buckets_are_cumulative),
		cmocka_unit_test(test_label_values_and_help_are_escaped),
		cmocka_unit_test(test_misuse_is_rejected),
		cmocka_unit_test(test_missing_label_value_is_rejected),
		cmocka_unit_test(test_remove_drops_a_series),
		cmocka_unit_test(test_process_metrics_are_plausible),
	};
	return cmocka_run_group_tests_name("server-metrics", tests, NULL, NULL);
}
