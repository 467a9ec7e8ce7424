/* SPDX-License-Identifier: Apache-2.0 */
/* Time formats for lib/kube. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/kube/kube-internal.h"

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
		const char *q = p + 1;
		int hh, mm;

		/* exactly "hh:mm" */
		if (q[0] < '0' || q[0] > '9' || q[1] < '0' || q[1] > '9' || q[2] != ':' ||
		    q[3] < '0' || q[3] > '9' || q[4] < '0' || q[4] > '9')
			return -EINVAL;
		hh = (q[0] - '0') * 10 + (q[1] - '0');
		mm = (q[3] - '0') * 10 + (q[4] - '0');
		if (hh > 23 || mm > 59)
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
