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
#include "lib/informer/informer-internal.h"

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

static void test_compact_roundtrip(void **state)
{
	static const char text[] =
	    "{\"metadata\":{\"name\":\"p\",\"labels\":{\"kmm.node.kubernetes.io/a.b\":\"x\"},"
	    "\"generation\":7,\"annotations\":{}},\"spec\":{\"nodeName\":\"n1\",\"unschedulable\":"
	    "true,"
	    "\"taints\":[{\"key\":\"k\"}],\"x\":null,\"r\":1.5}}";
	json_t *in = json_loads(text, 0, NULL), *out, *taints;
	struct kmm_obj *o = NULL;

	assert_int_equal(kube_obj_new(in, "ns/p", &o), 0);
	assert_string_equal(kmm_obj_key(o), "ns/p");
	assert_string_equal(kmm_obj_str(o, "spec.nodeName"), "n1");
	assert_null(kmm_obj_str(o, "spec.unschedulable"));
	assert_string_equal(kmm_obj_label(o, "kmm.node.kubernetes.io/a.b"), "x");
	assert_null(kmm_obj_label(o, "nope"));
	taints = kmm_obj_get_json(o, "spec.taints");
	assert_true(json_is_array(taints));
	json_decref(taints);
	/* Absent paths, including one that only shares a prefix with a key, are NULL. */
	assert_null(kmm_obj_get_json(o, "spec.tain"));
	assert_null(kmm_obj_get_json(o, "status.containerStatuses"));
	assert_null(kmm_obj_get_json(o, "metadata.labels.nope"));
	/* An object is rebuilt from the entries under it. */
	{
		json_t *labels = kmm_obj_get_json(o, "metadata.labels"), *meta;

		assert_true(json_is_object(labels));
		assert_string_equal(
		    json_string_value(json_object_get(labels, "kmm.node.kubernetes.io/a.b")), "x");
		json_decref(labels);
		meta = kmm_obj_get_json(o, "metadata.annotations");
		assert_true(json_is_object(meta) && json_object_size(meta) == 0);
		json_decref(meta);
	}
	out = kmm_obj_to_json(o);
	assert_true(json_equal(in, out));
	assert_true(kmm_obj_size(o) < 400);
	kmm_obj_unref(kmm_obj_ref(o));
	kmm_obj_unref(o);
	json_decref(out);
	json_decref(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_project),
		cmocka_unit_test(test_compact_roundtrip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
