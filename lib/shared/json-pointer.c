/* SPDX-License-Identifier: Apache-2.0 */
#include <stdlib.h>

#include "kmm/shared-json.h"

char *kmm_json_pointer_escape(const char *key)
{
	size_t n = 0, j = 0;
	char *out;

	for (const char *p = key; *p; p++)
		n += (*p == '/' || *p == '~') ? 2 : 1;
	out = malloc(n + 1);
	if (!out)
		return NULL;
	for (const char *p = key; *p; p++) {
		if (*p == '/' || *p == '~') {
			out[j++] = '~';
			out[j++] = *p == '/' ? '1' : '0';
		} else {
			out[j++] = *p;
		}
	}
	out[j] = '\0';
	return out;
}
