/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "kmm/shared-clock.h"

#define NSEC_PER_SEC 1000000000L
#define NSEC_PER_MSEC 1000000L

int64_t kmm_now_mono_ms(void)
{
	return kmm_now_mono_ns() / NSEC_PER_MSEC;
}

int64_t kmm_now_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

struct timespec kmm_timespec_from_ms(int64_t ms)
{
	return (struct timespec){ .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * NSEC_PER_MSEC };
}

struct timespec kmm_timespec_from_ns(int64_t ns)
{
	return (struct timespec){ .tv_sec = ns / NSEC_PER_SEC, .tv_nsec = ns % NSEC_PER_SEC };
}

struct timespec kmm_deadline_after_ms(clockid_t clock, int64_t ms)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * NSEC_PER_MSEC;
	if (ts.tv_nsec >= NSEC_PER_SEC) {
		ts.tv_sec++;
		ts.tv_nsec -= NSEC_PER_SEC;
	}
	return ts;
}

int kmm_cond_init_monotonic(pthread_cond_t *cond)
{
	pthread_condattr_t attr;
	int r;

	r = pthread_condattr_init(&attr);
	if (r != 0)
		return -r;
	r = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (r == 0)
		r = pthread_cond_init(cond, &attr);
	pthread_condattr_destroy(&attr);
	return -r;
}

void kmm_sleep_ms(int64_t ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts = kmm_timespec_from_ms(ms);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

long kmm_backoff_ms(long base_ms, long max_ms, int n)
{
	long step = base_ms;
	unsigned int seed;

	for (int i = 0; i < n && step < max_ms; i++)
		step *= 2;
	if (step > max_ms)
		step = max_ms;
	seed = (unsigned int)kmm_now_mono_ns() ^ (unsigned int)(uintptr_t)&seed;
	return step / 2 + (long)(rand_r(&seed) % (step / 2 + 1));
}

void kmm_format_rfc3339_micro(char *buf, size_t len, const struct timespec *ts)
{
	struct tm tm;
	char base[32];

	gmtime_r(&ts->tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%06ldZ", base, ts->tv_nsec / 1000);
}
