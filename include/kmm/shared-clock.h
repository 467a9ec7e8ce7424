/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Time as lib/ measures it: durations, backoffs and deadlines on the
 * monotonic clock (a wall-clock step neither fires nor stalls them), and the
 * few wall-clock formats the API needs.
 */
#ifndef KMM_CLOCK_H
#define KMM_CLOCK_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Now on CLOCK_MONOTONIC, in milliseconds and in nanoseconds. */
int64_t kmm_now_mono_ms(void);
int64_t kmm_now_mono_ns(void);

/*
 * A point in time given in ms or ns (on whatever clock it was read from) as a
 * timespec: the absolute deadline pthread_cond_timedwait() takes.
 */
struct timespec kmm_timespec_from_ms(int64_t ms);
struct timespec kmm_timespec_from_ns(int64_t ns);

/* `ms` from now on `clock`, as an absolute deadline for pthread_cond_timedwait(). */
struct timespec kmm_deadline_after_ms(clockid_t clock, int64_t ms);

/*
 * Initializes cond so that pthread_cond_timedwait() measures its deadline on
 * CLOCK_MONOTONIC (kmm_now_mono_*() + delay). Returns 0 or a negative errno.
 */
int kmm_cond_init_monotonic(pthread_cond_t *cond);

/* Sleeps ms milliseconds (nothing for ms <= 0), the whole time even across signals. */
void kmm_sleep_ms(int64_t ms);

/*
 * Step n (0-based) of an exponential backoff: base_ms doubled n times, capped
 * at max_ms, with equal jitter (half fixed, half random) so that retries
 * neither collapse to 0 nor line up between clients. base_ms > 0.
 */
long kmm_backoff_ms(long base_ms, long max_ms, int n);

/*
 * ts (CLOCK_REALTIME) as RFC 3339 in UTC with microseconds,
 * "2006-01-02T15:04:05.000000Z" (Kubernetes' MicroTime). len >= 32.
 */
void kmm_format_rfc3339_micro(char *buf, size_t len, const struct timespec *ts);

#endif
