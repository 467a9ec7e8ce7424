/* SPDX-License-Identifier: Apache-2.0 */
/* File reading, document parsing and time formats for lib/kube. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmm/fileio.h"
#include "lib/kube/kube-internal.h"

int kube_read_small_file(const char *path, size_t max, char **ret, struct kmm_error **err)
{
	return kmm_read_file(path, max, ret, NULL, err);
}

int kube_parse_rfc3339(const char *s, time_t *ret)
{
	struct tm tm = { 0 };
	const char *p;
	long off = 0;
	time_t t;

	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return -EINVAL;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int hh, mm, n = 0;

		if (sscanf(p + 1, "%2d:%2d%n", &hh, &mm, &n) != 2 || n != 5 || hh > 23 || mm > 59)
			return -EINVAL;
		off = (hh * 3600L + mm * 60L) * (*p == '+' ? 1 : -1);
		p += 6;
	} else {
		return -EINVAL;
	}
	if (*p)
		return -EINVAL;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*ret = t - off;
	return 0;
}

void kube_format_microtime(char *buf, size_t len, const struct timespec *ts)
{
	struct tm tm;
	char base[32];

	gmtime_r(&ts->tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%06ldZ", base, ts->tv_nsec / 1000);
}
