/* SPDX-License-Identifier: Apache-2.0 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/shared-clock.h"

static void test_mono_clock_moves_forward(void **state)
{
	int64_t ms = kmm_now_mono_ms(), ns = kmm_now_mono_ns();

	kmm_sleep_ms(20);
	assert_true(kmm_now_mono_ms() - ms >= 20);
	assert_true(kmm_now_mono_ns() - ns >= 20 * 1000000LL);
	/* The two readings are of one clock. */
	assert_true(kmm_now_mono_ns() / 1000000 >= kmm_now_mono_ms() - 1);
}

static void test_timespec_conversions(void **state)
{
	struct timespec ts = kmm_timespec_from_ms(12345);

	assert_int_equal(ts.tv_sec, 12);
	assert_int_equal(ts.tv_nsec, 345000000);
	ts = kmm_timespec_from_ns(3000000007LL);
	assert_int_equal(ts.tv_sec, 3);
	assert_int_equal(ts.tv_nsec, 7);
}

static void test_deadline_carries_nanoseconds(void **state)
{
	for (int i = 0; i < 50; i++) {
		struct timespec now, d;

		clock_gettime(CLOCK_MONOTONIC, &now);
		d = kmm_deadline_after_ms(CLOCK_MONOTONIC, 1999);
		assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
		assert_true(d.tv_sec >= now.tv_sec + 1 && d.tv_sec <= now.tv_sec + 3);
	}
}

static void test_monotonic_cond_times_out(void **state)
{
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cond;
	struct timespec until;
	int64_t start = kmm_now_mono_ms();

	assert_int_equal(kmm_cond_init_monotonic(&cond), 0);
	until = kmm_timespec_from_ms(start + 30);
	pthread_mutex_lock(&lock);
	while (pthread_cond_timedwait(&cond, &lock, &until) == 0)
		;
	pthread_mutex_unlock(&lock);
	/* A wall-clock condition variable would take this deadline as long past. */
	assert_true(kmm_now_mono_ms() - start >= 30);
	assert_true(kmm_now_mono_ms() - start < 10000);
	pthread_cond_destroy(&cond);
}

static void test_backoff_bounds(void **state)
{
	for (int n = 0; n < 20; n++) {
		long d = kmm_backoff_ms(100, 5000, n);
		long step = n >= 6 ? 5000 : 100L << n;

		if (step > 5000)
			step = 5000;
		assert_true(d >= step / 2 && d <= step);
	}
}

static void test_rfc3339_micro(void **state)
{
	struct timespec ts = { .tv_sec = 784111777, .tv_nsec = 123456789 };
	char buf[32];

	kmm_format_rfc3339_micro(buf, sizeof(buf), &ts);
	assert_string_equal(buf, "1994-11-06T08:49:37.123456Z");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mono_clock_moves_forward),
		cmocka_unit_test(test_timespec_conversions),
		cmocka_unit_test(test_deadline_carries_nanoseconds),
		cmocka_unit_test(test_monotonic_cond_times_out),
		cmocka_unit_test(test_backoff_bounds),
		cmocka_unit_test(test_rfc3339_micro),
	};
	return cmocka_run_group_tests_name("shared-clock", tests, NULL, NULL);
}
