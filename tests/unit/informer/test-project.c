/* SPDX-License-Identifier: Apache-2.0 */
/* Projection of objects into the informer's compact form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/informer.h"

static void test_project(void **state)
{
	static const char *const paths[] = { "metadata.name",
					     "metadata.labels",
					     "spec.nodeName",
					     "status.phase",
					     "spec.missing.deep",
					     "metadata",
					     NULL };
	static const char *const narrow[] = { "metadata.labels.app", "spec.containers", NULL };
	json_t *pod =
	    json_loads("{\"metadata\":{\"name\":\"p\",\"labels\":{\"app\":\"x\",\"b\":\"y\"},"
		       "\"managedFields\":[{}]},\"spec\":{\"nodeName\":\"n1\",\"containers\":[{"
		       "\"name\":\"c\"}]},"
		       "\"status\":{\"phase\":\"Running\",\"conditions\":[]}}",
		       0, NULL);
	json_t *p, *q;
	char *s;

	assert_non_null(pod);
	p = kmm_json_project(pod, paths);
	s = json_dumps(p, JSON_SORT_KEYS | JSON_COMPACT);
	/* "metadata" listed last keeps the whole object (already partly built: kept as built) */
	assert_non_null(strstr(s, "\"nodeName\":\"n1\""));
	assert_non_null(strstr(s, "\"phase\":\"Running\""));
	assert_null(strstr(s, "conditions"));
	assert_null(strstr(s, "containers"));
	free(s);
	q = kmm_json_project(pod, narrow);
	s = json_dumps(q, JSON_SORT_KEYS | JSON_COMPACT);
	assert_string_equal(s, "{\"metadata\":{\"labels\":{\"app\":\"x\"}},\"spec\":{"
			       "\"containers\":[{\"name\":\"c\"}]}}");
	free(s);
	json_decref(p);
	json_decref(q);
	json_decref(pod);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_project),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
