/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Table-driven cmocka tests with one TAP case per row: the fixed tests plus
 * one generated test per table row, whose state is a pointer to the row.
 */
#ifndef KMM_TESTS_UNIT_API_TABLE_H
#define KMM_TESTS_UNIT_API_TABLE_H

#include <stdio.h>
#include <stdlib.h>

struct table_run {
	struct CMUnitTest *tests;
	char **names; /* generated names, freed after the run */
	size_t n, cap;
};

static inline void table_add(struct table_run *t, const char *name, CMUnitTestFunction fn,
			     void *state)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 64;
		t->tests = realloc(t->tests, t->cap * sizeof(*t->tests));
		t->names = realloc(t->names, t->cap * sizeof(*t->names));
		if (!t->tests || !t->names)
			abort();
	}
	t->names[t->n] = NULL;
	t->tests[t->n++] =
	    (struct CMUnitTest){ .name = name, .test_func = fn, .initial_state = state };
}

/* Adds one test per row of `rows` (n rows of size sz), named "prefix index: label". */
static inline void table_add_rows(struct table_run *t, const char *prefix, CMUnitTestFunction fn,
				  void *rows, size_t n, size_t sz,
				  const char *(*label)(const void *))
{
	for (size_t i = 0; i < n; i++) {
		void *row = (char *)rows + i * sz;
		char *name = NULL;

		if (asprintf(&name, "%s %zu: %s", prefix, i, label(row)) < 0)
			abort();
		/* '#' would start a TAP directive; newlines would end the line. */
		for (char *c = name; *c; c++)
			if (*c == '#' || *c == '\n')
				*c = '_';
		table_add(t, name, fn, row);
		t->names[t->n - 1] = name;
	}
}

static inline int table_run(struct table_run *t, const char *group)
{
	int r = _cmocka_run_group_tests(group, t->tests, t->n, NULL, NULL);

	for (size_t i = 0; i < t->n; i++)
		free(t->names[i]);
	free(t->names);
	free(t->tests);
	return r;
}

#endif
