/* SPDX-License-Identifier: Apache-2.0 */
/* Work queue semantics and the controller loop. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kmm/controller-workqueue.h"

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_dedup_and_order(void **state)
{
	struct kmm_workqueue *q = kmm_workqueue_new(NULL);
	char *k;

	assert_int_equal(kmm_workqueue_add(q, "a"), 0);
	assert_int_equal(kmm_workqueue_add(q, "b"), 0);
	assert_int_equal(kmm_workqueue_add(q, "a"), 0);
	assert_int_equal(kmm_workqueue_len(q), 2);
	assert_true(kmm_workqueue_get(q, &k));
	assert_string_equal(k, "a");
	kmm_workqueue_done(q, k);
	assert_true(kmm_workqueue_get(q, &k));
	assert_string_equal(k, "b");
	kmm_workqueue_done(q, k);
	assert_int_equal(kmm_workqueue_len(q), 0);
	kmm_workqueue_free(q);
}

static void test_requeue_while_processing(void **state)
{
	struct kmm_workqueue *q = kmm_workqueue_new(NULL);
	char *k, *k2;

	kmm_workqueue_add(q, "a");
	assert_true(kmm_workqueue_get(q, &k));
	/* Changed while processing: not handed out again until done(). */
	kmm_workqueue_add(q, "a");
	kmm_workqueue_add(q, "a");
	assert_int_equal(kmm_workqueue_len(q), 0);
	kmm_workqueue_done(q, k);
	assert_int_equal(kmm_workqueue_len(q), 1);
	assert_true(kmm_workqueue_get(q, &k2));
	assert_string_equal(k2, "a");
	kmm_workqueue_done(q, k2);
	assert_int_equal(kmm_workqueue_len(q), 0);
	kmm_workqueue_free(q);
}

static void expect_next(struct kmm_workqueue *q, const char *want)
{
	char *k;

	assert_true(kmm_workqueue_get(q, &k));
	assert_string_equal(k, want);
	kmm_workqueue_done(q, k);
}

/* add_first: ahead of plain adds, moved up if queued, first after done() if processing. */
static void test_add_first(void **state)
{
	struct kmm_workqueue *q = kmm_workqueue_new(NULL);
	char *k;

	kmm_workqueue_add(q, "a");
	kmm_workqueue_add(q, "b");
	kmm_workqueue_add(q, "c");
	assert_int_equal(kmm_workqueue_add_first(q, "d"), 0);
	assert_int_equal(kmm_workqueue_add_first(q, "c"), 0); /* queued last: moved up */
	assert_int_equal(kmm_workqueue_add_first(q, "c"), 0);
	assert_int_equal(kmm_workqueue_len(q), 4);
	expect_next(q, "c");
	expect_next(q, "d");
	/* the tail moved away: plain adds still go last */
	kmm_workqueue_add(q, "e");
	kmm_workqueue_add_first(q, "b");
	expect_next(q, "b");
	expect_next(q, "a");
	expect_next(q, "e");
	assert_int_equal(kmm_workqueue_len(q), 0);
	/* processing: an urgent re-add goes first once done */
	kmm_workqueue_add(q, "x");
	assert_true(kmm_workqueue_get(q, &k));
	kmm_workqueue_add(q, "y");
	kmm_workqueue_add(q, "x");
	kmm_workqueue_add_first(q, "x");
	assert_int_equal(kmm_workqueue_len(q), 1);
	kmm_workqueue_done(q, k);
	assert_int_equal(kmm_workqueue_len(q), 2);
	expect_next(q, "x");
	expect_next(q, "y");
	/* a plain re-add while processing stays behind */
	kmm_workqueue_add(q, "x");
	assert_true(kmm_workqueue_get(q, &k));
	kmm_workqueue_add(q, "x");
	kmm_workqueue_add(q, "y");
	kmm_workqueue_done(q, k);
	expect_next(q, "y");
	expect_next(q, "x");
	kmm_workqueue_free(q);
}

static void test_add_after(void **state)
{
	struct kmm_workqueue *q = kmm_workqueue_new(NULL);
	int64_t t0 = now_ms();
	char *k;

	kmm_workqueue_add_after(q, "late", 150);
	kmm_workqueue_add_after(q, "early", 50);
	assert_int_equal(kmm_workqueue_len(q), 0);
	assert_true(kmm_workqueue_get(q, &k));
	assert_string_equal(k, "early");
	assert_true(now_ms() - t0 >= 45);
	kmm_workqueue_done(q, k);
	assert_true(kmm_workqueue_get(q, &k));
	assert_string_equal(k, "late");
	assert_true(now_ms() - t0 >= 145);
	kmm_workqueue_done(q, k);
	kmm_workqueue_free(q);
}

static void test_rate_limited_backoff(void **state)
{
	struct kmm_workqueue_options o;
	struct kmm_workqueue *q;
	int64_t t0;
	char *k;

	kmm_workqueue_options_init(&o);
	o.base_delay_ms = 10;
	q = kmm_workqueue_new(&o);
	for (int i = 0; i < 4; i++) {
		t0 = now_ms();
		kmm_workqueue_add_rate_limited(q, "x");
		assert_true(kmm_workqueue_get(q, &k));
		/* 10, 20, 40, 80 ms */
		assert_true(now_ms() - t0 >= (10 << i) - 2);
		kmm_workqueue_done(q, k);
	}
	assert_int_equal(kmm_workqueue_num_requeues(q, "x"), 4);
	kmm_workqueue_forget(q, "x");
	assert_int_equal(kmm_workqueue_num_requeues(q, "x"), 0);
	kmm_workqueue_free(q);
}

static void test_overall_bucket(void **state)
{
	struct kmm_workqueue_options o;
	struct kmm_workqueue *q;
	int64_t t0 = now_ms();
	char *k, name[8];

	kmm_workqueue_options_init(&o);
	o.base_delay_ms = 1;
	o.qps = 20;
	o.burst = 2;
	q = kmm_workqueue_new(&o);
	for (int i = 0; i < 6; i++) {
		snprintf(name, sizeof(name), "k%d", i);
		kmm_workqueue_add_rate_limited(q, name);
	}
	for (int i = 0; i < 6; i++) {
		assert_true(kmm_workqueue_get(q, &k));
		kmm_workqueue_done(q, k);
	}
	/* 2 from the burst, then 4 at 20/s: >= 200 ms. */
	assert_true(now_ms() - t0 >= 190);
	kmm_workqueue_free(q);
}

static void test_shutdown_drains(void **state)
{
	struct kmm_workqueue *q = kmm_workqueue_new(NULL);
	char *k;

	kmm_workqueue_add(q, "a");
	kmm_workqueue_add(q, "b");
	kmm_workqueue_add_after(q, "never", 10000);
	kmm_workqueue_shutdown(q);
	assert_int_equal(kmm_workqueue_add(q, "c"), -ESHUTDOWN);
	assert_true(kmm_workqueue_get(q, &k));
	kmm_workqueue_done(q, k);
	assert_true(kmm_workqueue_get(q, &k));
	kmm_workqueue_done(q, k);
	assert_false(kmm_workqueue_get(q, &k));
	kmm_workqueue_free(q);
}

/* Controller: N workers, a key is never reconciled by two at once. */
struct ctl {
	atomic_int active[16];
	atomic_int violations, calls, fails_left;
};

static int64_t reconcile(const char *key, void *ud, struct kmm_error **err)
{
	struct ctl *c = ud;
	int i = (int)strtol(key + 1, NULL, 10);
	struct timespec ts = { 0, 2000000 };

	if (atomic_fetch_add(&c->active[i], 1) != 0)
		atomic_fetch_add(&c->violations, 1);
	nanosleep(&ts, NULL);
	atomic_fetch_sub(&c->active[i], 1);
	atomic_fetch_add(&c->calls, 1);
	if (i == 0 && atomic_fetch_sub(&c->fails_left, 1) > 0)
		return kmm_error_make(err, EIO, "transient");
	return 0;
}

static void test_controller(void **state)
{
	struct kmm_workqueue_options o;
	struct kmm_workqueue *q;
	struct kmm_controller *ctl = NULL;
	struct ctl c = { 0 };
	char name[8];

	kmm_workqueue_options_init(&o);
	o.base_delay_ms = 1;
	q = kmm_workqueue_new(&o);
	atomic_store(&c.fails_left, 3);
	assert_int_equal(kmm_controller_start(q, 4, reconcile, NULL, &c, &ctl, NULL), 0);
	for (int round = 0; round < 50; round++)
		for (int i = 0; i < 16; i++) {
			snprintf(name, sizeof(name), "k%d", i);
			kmm_workqueue_add(q, name);
		}
	/*
	 * Let the failing key retry (1, 2, 4 ms) and then succeed, which forgets its
	 * failures, before draining; allow for a slow, loaded machine.
	 */
	for (int i = 0; i < 500 && (atomic_load(&c.fails_left) >= 0 ||
				    kmm_workqueue_num_requeues(q, "k0") != 0);
	     i++) {
		struct timespec ts = { 0, 10000000 };

		nanosleep(&ts, NULL);
	}
	kmm_controller_stop(ctl);
	assert_int_equal(atomic_load(&c.violations), 0);
	assert_true(atomic_load(&c.calls) >= 16);
	assert_true(atomic_load(&c.fails_left) < 0);
	assert_int_equal(kmm_workqueue_num_requeues(q, "k0"), 0);
	kmm_workqueue_free(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dedup_and_order),
		cmocka_unit_test(test_requeue_while_processing),
		cmocka_unit_test(test_add_first),
		cmocka_unit_test(test_add_after),
		cmocka_unit_test(test_rate_limited_backoff),
		cmocka_unit_test(test_overall_bucket),
		cmocka_unit_test(test_shutdown_drains),
		cmocka_unit_test(test_controller),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
