/* SPDX-License-Identifier: Apache-2.0 */
#ifndef KMM_LIB_SHARED_LOG_INTERNAL_H
#define KMM_LIB_SHARED_LOG_INTERNAL_H

#include <stdint.h>

#ifdef KMM_TESTING
/* Seconds since the epoch to UTC year, month (1-12), day (1-31), second of the day. */
void kmm_log_utc_civil(int64_t secs, int64_t *year, unsigned *month, unsigned *day, unsigned *sod);
#endif

#endif
