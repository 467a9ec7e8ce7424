/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/shared-hashmap.h"

static int freed;

static void count_free(void *p)
{
	freed++;
	free(p);
}

static void test_put_get_replace(void **state)
{
	_cleanup_hashmap_free_ struct kmm_hashmap *m = kmm_hashmap_new(NULL);
	int a = 1, b = 2;
	void *old = NULL;

	assert_non_null(m);
	assert_null(kmm_hashmap_get(m, "missing"));
	assert_int_equal(kmm_hashmap_put(m, "k", &a, NULL), 1);
	assert_ptr_equal(kmm_hashmap_get(m, "k"), &a);
	assert_int_equal(kmm_hashmap_put(m, "k", &b, &old), 0);
	assert_ptr_equal(old, &a);
	assert_ptr_equal(kmm_hashmap_get(m, "k"), &b);
	assert_int_equal(kmm_hashmap_size(m), 1);
	assert_true(kmm_hashmap_contains(m, "k"));
}

static void test_null_value_is_present(void **state)
{
	_cleanup_hashmap_free_ struct kmm_hashmap *m = kmm_hashmap_new(NULL);

	kmm_hashmap_put(m, "nothing", NULL, NULL);
	assert_true(kmm_hashmap_contains(m, "nothing"));
	assert_null(kmm_hashmap_get(m, "nothing"));
}

static void test_many_keys_with_removals(void **state)
{
	_cleanup_hashmap_free_ struct kmm_hashmap *m = kmm_hashmap_new(count_free);
	char key[32];

	freed = 0;
	for (int i = 0; i < 5000; i++) {
		int *v = malloc(sizeof(int));
		*v = i;
		snprintf(key, sizeof(key), "node-%d", i);
		assert_int_equal(kmm_hashmap_put(m, key, v, NULL), 1);
	}
	assert_int_equal(kmm_hashmap_size(m), 5000);
	/* Remove every third key; the rest must stay reachable after the shifts. */
	for (int i = 0; i < 5000; i += 3) {
		snprintf(key, sizeof(key), "node-%d", i);
		int *v = kmm_hashmap_remove(m, key);
		assert_non_null(v);
		assert_int_equal(*v, i);
		free(v);
	}
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "node-%d", i);
		int *v = kmm_hashmap_get(m, key);
		if (i % 3 == 0) {
			assert_null(v);
		} else {
			assert_non_null(v);
			assert_int_equal(*v, i);
		}
	}
	assert_int_equal(kmm_hashmap_size(m), 5000 - 1667);
	assert_null(kmm_hashmap_remove(m, "node-0"));
}

static void test_iterate_sees_every_entry_once(void **state)
{
	_cleanup_hashmap_free_ struct kmm_hashmap *m = kmm_hashmap_new(NULL);
	int vals[100], seen[100] = { 0 };
	size_t it = 0, n = 0;
	const char *k;
	void *v;
	char key[16];

	for (int i = 0; i < 100; i++) {
		vals[i] = i;
		snprintf(key, sizeof(key), "%d", i);
		kmm_hashmap_put(m, key, &vals[i], NULL);
	}
	while (kmm_hashmap_iterate(m, &it, &k, &v)) {
		int i = *(int *)v;
		assert_int_equal(strtol(k, NULL, 10), i);
		seen[i]++;
		n++;
	}
	assert_int_equal(n, 100);
	for (int i = 0; i < 100; i++)
		assert_int_equal(seen[i], 1);
}

static void test_free_destroys_values_and_replaced_ones(void **state)
{
	struct kmm_hashmap *m = kmm_hashmap_new(count_free);

	freed = 0;
	kmm_hashmap_put(m, "a", strdup("1"), NULL);
	kmm_hashmap_put(m, "a", strdup("2"), NULL);
	assert_int_equal(freed, 1);
	kmm_hashmap_put(m, "b", strdup("3"), NULL);
	kmm_hashmap_free(m);
	assert_int_equal(freed, 3);
	kmm_hashmap_free(NULL);
	assert_int_equal(kmm_hashmap_size(NULL), 0);
}

static void test_empty_map_lookups(void **state)
{
	_cleanup_hashmap_free_ struct kmm_hashmap *m = kmm_hashmap_new(NULL);
	size_t it = 0;

	assert_null(kmm_hashmap_get(m, "x"));
	assert_false(kmm_hashmap_contains(m, "x"));
	assert_null(kmm_hashmap_remove(m, "x"));
	assert_false(kmm_hashmap_iterate(m, &it, NULL, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_replace),
		cmocka_unit_test(test_null_value_is_present),
		cmocka_unit_test(test_many_keys_with_removals),
		cmocka_unit_test(test_iterate_sees_every_entry_once),
		cmocka_unit_test(test_free_destroys_values_and_replaced_ones),
		cmocka_unit_test(test_empty_map_lookups),
	};
	return cmocka_run_group_tests_name("shared-hashmap", tests, NULL, NULL);
}
