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
	assert_true(kmm_obj_size(o) < 600); /* leaves held alone: ~40 bytes of bookkeeping each */
	kmm_obj_unref(kmm_obj_ref(o));
	kmm_obj_unref(o);
	json_decref(out);
	json_decref(in);
}

/* Arrays are flattened element by element; the DOM comes back the same. */
static void test_compact_arrays(void **state)
{
	static const char *const texts[] = {
		"{\"a\":[1,\"x\",true,null,[],{},[[2,3],[]],{\"b\":[{\"c\":\"d\"}]}]}",
		("{\"spec\":{\"modules\":[{\"name\":\"m0\",\"config\":{\"args\":[\"-v\"]}},{}]},"
		 "\"\":{\"\":0}}"),
		"{\"x\":[[[[]]]],\"y\":[{}],\"z\":{\"10\":[0,1,2,3,4,5,6,7,8,9,10,11]}}",
	};

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		json_t *in = json_loads(texts[i], 0, NULL), *out;
		struct kmm_obj *o = NULL;

		assert_non_null(in);
		assert_int_equal(kube_obj_new(in, "k", &o), 0);
		out = kmm_obj_to_json(o);
		assert_true(json_equal(in, out));
		json_decref(out);
		json_decref(in);
		kmm_obj_unref(o);
	}
	{
		json_t *in = json_loads(texts[0], 0, NULL), *a, *b;
		struct kmm_obj *o = NULL;

		assert_int_equal(kube_obj_new(in, "k", &o), 0);
		a = kmm_obj_get_json(o, "a");
		assert_true(json_equal(a, json_object_get(in, "a")));
		b = kmm_obj_get_json(o, "b");
		assert_null(b);
		json_decref(a);
		json_decref(in);
		kmm_obj_unref(o);
	}
}

/* Objects holding the same leaves share them: the second costs pointers only. */
static void test_compact_shared(void **state)
{
	json_t *in = json_loads("{\"spec\":{\"modules\":[{\"config\":{\"containerImage\":"
				"\"registry.example/kmod:6.1.0-18-amd64\",\"kernelVersion\":"
				"\"6.1.0-18-amd64\"}}]}}",
				0, NULL);
	struct kmm_obj *a = NULL, *b = NULL;
	size_t alone;

	assert_int_equal(kube_obj_new(in, "a", &a), 0);
	alone = kmm_obj_size(a);
	assert_int_equal(kube_obj_new(in, "b", &b), 0);
	/* two holders: each is charged half of the shared leaves */
	assert_true(kmm_obj_size(a) < alone);
	assert_true(kmm_obj_size(a) + kmm_obj_size(b) < alone + 64);
	assert_string_equal(kmm_obj_key(b), "b");
	kmm_obj_unref(a);
	assert_int_equal(kmm_obj_size(b), alone);
	{
		json_t *out = kmm_obj_to_json(b);

		assert_true(json_equal(in, out));
		json_decref(out);
	}
	kmm_obj_unref(b);
	json_decref(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_project),
		cmocka_unit_test(test_compact_roundtrip),
		cmocka_unit_test(test_compact_arrays),
		cmocka_unit_test(test_compact_shared),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
