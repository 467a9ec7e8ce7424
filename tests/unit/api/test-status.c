/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm_status_build() on the cases of tests/data/status (see its README):
 * each case's report against its golden JSON and table, plus the filters.
 * Usage: test-api-status DATA_DIR   (KMM_UPDATE_GOLDEN=1 rewrites the goldens)
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/api-status.h"
#include "kmm/api.h"
#include "kmm/shared-fileio.h"
#include "kmm/shared-json.h"
#include "kmm/shared-yaml.h"

static const char *data_dir;

/* One case's objects, decoded as kmmctl status decodes the cluster's. */
struct case_objects {
	json_t *docs;
	json_t *nodes, *pods, *events; /* arrays, borrowed from docs */
	struct kmm_module *modules[16];
	struct kmm_nmc *nmcs[16];
	struct kmm_image_config *mics[16];
	size_t n_modules, n_nmcs, n_mics;
	struct kmm_status_input in;
};

static void objects_done(struct case_objects *o)
{
	for (size_t i = 0; i < o->n_modules; i++)
		kmm_module_free(o->modules[i]);
	for (size_t i = 0; i < o->n_nmcs; i++)
		kmm_nmc_free(o->nmcs[i]);
	for (size_t i = 0; i < o->n_mics; i++)
		kmm_image_config_free(o->mics[i]);
	json_decref(o->nodes);
	json_decref(o->pods);
	json_decref(o->events);
	json_decref(o->docs);
}

static void add_doc(struct case_objects *o, json_t *d)
{
	const char *kind = json_string_value(json_object_get(d, "kind"));
	struct kmm_error *err = NULL;
	int r = 0;

	assert_non_null(kind);
	if (strcmp(kind, "StatusCase") == 0) {
		o->in.namespace = json_string_value(json_object_get(d, "namespace"));
		o->in.module = json_string_value(json_object_get(d, "module"));
		o->in.node = json_string_value(json_object_get(d, "node"));
	} else if (strcmp(kind, "Module") == 0) {
		assert_true(o->n_modules < 16);
		r = kmm_module_from_json(d, KMM_API_STRICT, &o->modules[o->n_modules++], &err);
	} else if (strcmp(kind, "NodeModulesConfig") == 0) {
		assert_true(o->n_nmcs < 16);
		r = kmm_nmc_from_json(d, KMM_API_STRICT, &o->nmcs[o->n_nmcs++], &err);
	} else if (strcmp(kind, "ModuleImagesConfig") == 0) {
		assert_true(o->n_mics < 16);
		r = kmm_image_config_from_json(d, KMM_API_STRICT, &o->mics[o->n_mics++], &err);
	} else if (strcmp(kind, "Node") == 0) {
		json_array_append(o->nodes, d);
	} else if (strcmp(kind, "Pod") == 0) {
		json_array_append(o->pods, d);
	} else if (strcmp(kind, "Event") == 0) {
		json_array_append(o->events, d);
	} else {
		fail_msg("unexpected kind %s", kind);
	}
	if (r < 0)
		fail_msg("%s: %s", kind, kmm_error_message(err));
}

static void load_case(const char *name, struct case_objects *o)
{
	_cleanup_free_ char *path = NULL;
	struct kmm_error *err = NULL;
	size_t i;
	json_t *d;

	*o = (struct case_objects){ 0 };
	o->nodes = json_array();
	o->pods = json_array();
	o->events = json_array();
	assert_true(asprintf(&path, "%s/%s.yaml", data_dir, name) > 0);
	if (kmm_yaml_parse_file(path, 1 << 20, 0, &o->docs, &err) < 0)
		fail_msg("%s: %s", path, kmm_error_message(err));
	json_array_foreach (o->docs, i, d)
		add_doc(o, d);
	o->in = (struct kmm_status_input){
		.modules = o->modules,
		.n_modules = o->n_modules,
		.nmcs = o->nmcs,
		.n_nmcs = o->n_nmcs,
		.mics = o->mics,
		.n_mics = o->n_mics,
		.nodes = o->nodes,
		.pods = o->pods,
		.events = o->events,
		.namespace = o->in.namespace,
		.module = o->in.module,
		.node = o->in.node,
	};
}

/* Compares text with the golden file, or rewrites it under KMM_UPDATE_GOLDEN. */
static void golden(const char *name, const char *ext, const char *text)
{
	_cleanup_free_ char *path = NULL, *want = NULL;
	size_t len = 0;
	FILE *f;

	assert_true(asprintf(&path, "%s/%s.%s", data_dir, name, ext) > 0);
	if (secure_getenv("KMM_UPDATE_GOLDEN")) {
		f = fopen(path, "we");
		assert_non_null(f);
		fputs(text, f);
		assert_int_equal(fclose(f), 0);
		return;
	}
	if (kmm_read_file(path, 1 << 20, &want, &len, NULL) < 0)
		fail_msg("%s: missing golden file (run with KMM_UPDATE_GOLDEN=1)", path);
	if (strcmp(want, text) != 0) {
		print_error("%s differs; got:\n%s\n", path, text);
		fail();
	}
}

static void test_case(void **state)
{
	const char *name = *state;
	_cleanup_(kmm_status_report_freep) struct kmm_status_report *r = NULL;
	_cleanup_buf_ struct kmm_buf table = { 0 };
	_cleanup_json_ json_t *j = NULL;
	_cleanup_free_ char *text = NULL;
	struct kmm_error *err = NULL;
	struct case_objects o;

	load_case(name, &o);
	if (kmm_status_build(&o.in, &r, &err) < 0)
		fail_msg("%s: %s", name, kmm_error_message(err));
	j = kmm_status_to_json(r);
	assert_non_null(j);
	text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	assert_non_null(text);
	golden(name, "json", text);
	kmm_buf_init(&table, 0);
	assert_int_equal(kmm_status_format_table(r, &table), 0);
	golden(name, "txt", kmm_buf_str(&table));
	kmm_status_report_free(TAKE_PTR(r));
	objects_done(&o);
}

/* --node and a Module name narrow the report; an unknown name leaves it empty. */
static void test_filters(void **state)
{
	_cleanup_(kmm_status_report_freep) struct kmm_status_report *r = NULL, *none = NULL;
	_cleanup_buf_ struct kmm_buf table = { 0 };
	struct case_objects o;

	load_case("mixed", &o);
	o.in.node = "n2";
	o.in.module = "drv";
	assert_int_equal(kmm_status_build(&o.in, &r, NULL), 0);
	assert_int_equal(r->n_modules, 1);
	assert_int_equal(r->modules[0].n_nodes, 1);
	assert_string_equal(r->modules[0].nodes[0].node, "n2");
	assert_int_equal(r->modules[0].nodes[0].state, KMM_STATUS_LOADING);
	assert_non_null(strstr(r->modules[0].nodes[0].reason, "ImagePullBackOff"));
	o.in.module = "nope";
	assert_int_equal(kmm_status_build(&o.in, &none, NULL), 0);
	assert_int_equal(none->n_modules, 0);
	kmm_buf_init(&table, 0);
	assert_int_equal(kmm_status_format_table(none, &table), 0);
	assert_string_equal(kmm_buf_str(&table), "No Modules found.\n");
	kmm_status_report_free(TAKE_PTR(r));
	kmm_status_report_free(TAKE_PTR(none));
	objects_done(&o);
}

int main(int argc, char **argv)
{
	static const char *const cases[] = { "mixed", "ordered-upgrade", "device-plugin-only" };
	struct CMUnitTest tests[KMM_ARRAY_SIZE(cases) + 1];

	if (argc != 2) {
		fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
		return 2;
	}
	data_dir = argv[1];
	for (size_t i = 0; i < KMM_ARRAY_SIZE(cases); i++)
		tests[i] = (struct CMUnitTest){ cases[i], test_case, NULL, NULL, (void *)cases[i] };
	tests[KMM_ARRAY_SIZE(cases)] = (struct CMUnitTest)cmocka_unit_test(test_filters);
	return _cmocka_run_group_tests("api-status", tests, KMM_ARRAY_SIZE(tests), NULL, NULL);
}
