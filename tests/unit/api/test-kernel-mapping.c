/* SPDX-License-Identifier: Apache-2.0 */
/* Kernel mapping resolution: first match wins, merge rules, templating, the cache. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/api-kernel.h"
#include "kmm/shared-strv.h"
#include "tests/unit/api/helpers.h"
#include "tests/unit/api/table.h"

static const char module_yaml[] =
    "apiVersion: kmm.sigs.x-k8s.io/v1beta1\n"
    "kind: Module\n"
    "metadata: {name: mod1, namespace: ns1, generation: 1}\n"
    "spec:\n"
    "  selector: {}\n"
    "  moduleLoader:\n"
    "    container:\n"
    "      modprobe: {moduleName: kmm_ci_a, parameters: [p=1], args: {load: [--first-time], "
    "unload: [-q]}}\n"
    "      containerImage: reg/$MOD_NAMESPACE/$MOD_NAME:$KERNEL_FULL_VERSION\n"
    "      inTreeModulesToRemove: [dummy]\n"
    "      registryTLS: {insecureSkipTLSVerify: true}\n"
    "      build:\n"
    "        dockerfileConfigMap: {name: df}\n"
    "        buildArgs: [{name: B, value: mod}, {name: A, value: mod}]\n"
    "        secrets: [{name: s1}]\n"
    "        selector: {a: b}\n"
    "      sign:\n"
    "        keySecret: {name: k}\n"
    "        certSecret: {name: c}\n"
    "        unsignedImage: 'reg/unsigned:${KERNEL_FULL_VERSION}${MOD_NAME}'\n"
    "        filesToSign: ['/opt/lib/modules/${KERNEL_FULL_VERSION}/a.ko']\n"
    "      kernelMappings:\n"
    "      - literal: 6.1.0-18-amd64\n"
    "        containerImage: ''\n"
    "      - regexp: '^5\\.14\\.0-427.*\\.el9_4\\.x86_64$'\n"
    "        containerImage: 'el9/$MOD_NAME:${KERNEL_XYZ}'\n"
    "        build:\n"
    "          dockerfileConfigMap: {name: df9}\n"
    "          buildArgs: [{name: A, value: map}, {name: Z, value: z}, {name: C, value: c}]\n"
    "          secrets: [{name: s2}]\n"
    "        registryTLS: {insecure: true}\n"
    "      - regexp: 'fc37'\n"
    "        containerImage: 'fc/${KERNEL_X}.${KERNEL_Y}:${KERNEL_Z}'\n"
    "        sign:\n"
    "          keySecret: {name: k2}\n"
    "          certSecret: {name: c2}\n"
    "          filesToSign: ['/opt/lib/modules/${KERNEL_FULL_VERSION}/b.ko']\n"
    "        inTreeModulesToRemove: []\n"
    "      - regexp: '-gke$'\n"
    "        containerImage: 'gke:${KERNEL_FULL_VERSION}'\n"
    "        inTreeModuleToRemove: old\n"
    "      - regexp: '^6\\.6\\.0-rt\\d+$'\n"
    "        containerImage: 'rt:$KERNEL_VERSION'\n"
    "        inTreeModulesToRemove: [a, b]\n"
    "      - regexp: 'aarch64'\n"
    "        containerImage: 'arm:${KERNEL_FULL_VERSION}'\n"
    "      - regexp: '^bad'\n"
    "        containerImage: 'bad:${KERNEL'\n"
    "      - literal: 6.1.0-18-amd64\n"
    "        containerImage: 'never:1'\n";

struct mcase {
	const char *kernel;
	int result; /* 1 match, 0 none, <0 error */
	size_t index;
	const char *kernel_out;
	const char *image;
	const char *in_tree; /* joined with ',' */
	bool insecure, skip_verify;
	const char *build; /* "cm|A=..,B=..|secrets" or NULL */
	const char *sign;  /* "key|cert|unsigned|files" or NULL */
};

static const struct mcase cases[] = {
	{ "6.1.0-18-amd64", 1, 0, "6.1.0-18-amd64", "reg/ns1/mod1:6.1.0-18-amd64", "dummy", false,
	  true, "df|B=mod,A=mod|s1",
	  "k|c|reg/unsigned:6.1.0-18-amd64|/opt/lib/modules/6.1.0-18-amd64/a.ko" },
	{ "6.1.0-18-amd64+", 1, 0, "6.1.0-18-amd64", "reg/ns1/mod1:6.1.0-18-amd64", "dummy", false,
	  true, "df|B=mod,A=mod|s1", NULL },
	{ "5.14.0-427.13.1.el9_4.x86_64", 1, 1, "5.14.0-427.13.1.el9_4.x86_64", "el9/mod1:5.14.0",
	  "dummy", true, false, "df9|B=mod,A=map,C=c,Z=z|s1,s2",
	  "k|c|reg/unsigned:5.14.0-427.13.1.el9_4.x86_64|/opt/lib/modules/"
	  "5.14.0-427.13.1.el9_4.x86_64/a.ko" },
	{ "6.0.15-300.fc37.x86_64", 1, 2, "6.0.15-300.fc37.x86_64", "fc/6.0:15", "", false, true,
	  "df|B=mod,A=mod|s1",
	  "k2|c2|reg/unsigned:6.0.15-300.fc37.x86_64|/opt/lib/modules/6.0.15-300.fc37.x86_64/a.ko,/"
	  "opt/lib/modules/6.0.15-300.fc37.x86_64/b.ko" },
	{ "5.15.0-1051-gke+", 1, 3, "5.15.0-1051-gke", "gke:5.15.0-1051-gke", "old", false, true,
	  NULL, NULL },
	{ "6.6.0-rt15", 1, 4, "6.6.0-rt15", "rt:6.6.0-rt15", "a,b", false, true, NULL, NULL },
	{ "4.18.0-513.el8.aarch64+64k", 1, 5, "4.18.0-513.el8.aarch64+64k",
	  "arm:4.18.0-513.el8.aarch64_64k", "dummy", false, true, NULL, NULL },
	{ "6.2.0-1-generic", 0, 0, NULL, NULL, NULL, false, false, NULL, NULL },
	{ "5.14.0-427.13.1.el9_4.x86_64.debug", 0, 0, NULL, NULL, NULL, false, false, NULL, NULL },
	{ "6.6.0-rt15x", 0, 0, NULL, NULL, NULL, false, false, NULL, NULL },
	{ "foo-gke", -EINVAL, 3, NULL, NULL, NULL, false, false, NULL, NULL }, /* < 3 fields */
	{ "bad.1.2", -EINVAL, 6, NULL, NULL, NULL, false, false, NULL,
	  NULL }, /* malformed template */
};

static char *build_summary(const struct kmm_build *b)
{
	_cleanup_strv_free_ char **args = NULL;
	_cleanup_free_ char *a = NULL, *s = NULL;
	char *out = NULL;

	for (size_t i = 0; i < b->n_build_args; i++)
		assert_int_equal(
		    kmm_strv_pushf(&args, "%s=%s", b->build_args[i].name, b->build_args[i].value),
		    0);
	a = kmm_strv_join(args, ",");
	s = kmm_strv_join(b->secrets, ",");
	assert_true(asprintf(&out, "%s|%s|%s", b->dockerfile_config_map, a, s) > 0);
	return out;
}

static char *sign_summary(const struct kmm_sign *s)
{
	_cleanup_free_ char *f = kmm_strv_join(s->files_to_sign, ",");
	char *out = NULL;

	assert_true(asprintf(&out, "%s|%s|%s|%s", s->key_secret, s->cert_secret,
			     s->unsigned_image ? s->unsigned_image : "", f) > 0);
	return out;
}

static struct kmm_module *mapping_module;
static struct kmm_mapper *mapping_mapper;

static void test_resolve_row(void **state)
{
	const struct mcase *c = *state;
	struct kmm_resolved_mapping *res = NULL;
	struct kmm_error *e = NULL;
	int r = kmm_mapper_resolve(mapping_mapper, mapping_module, c->kernel, &res, &e);

	if (r != c->result) {
		print_error("r=%d (%s)\n", r, kmm_error_message(e));
		kmm_error_free(e);
		fail();
	}
	if (r < 0) {
		char want[64];

		snprintf(want, sizeof(want), "[%zu]", c->index);
		if (!strstr(e->message, want) && !strstr(e->message, "fewer than 3")) {
			print_error("error %s\n", e->message);
			kmm_error_free(e);
			fail();
		}
	}
	kmm_error_free(e);
	if (r == 1) {
		_cleanup_free_ char *it = kmm_strv_join(res->in_tree_modules_to_remove, ",");
		_cleanup_free_ char *b = c->build ? build_summary(res->build) : NULL;
		_cleanup_free_ char *s = c->sign ? sign_summary(res->sign) : NULL;

		assert_int_equal(res->index, c->index);
		assert_string_equal(res->kernel, c->kernel_out);
		assert_string_equal(res->container_image, c->image);
		assert_string_equal(it, c->in_tree);
		assert_int_equal(res->registry_tls.insecure, c->insecure);
		assert_int_equal(res->registry_tls.insecure_skip_tls_verify, c->skip_verify);
		assert_non_null(res->reason);
		if (c->build) {
			assert_string_equal(b, c->build);
			assert_string_equal(kmm_strmap_get(&res->build->selector, "a"), "b");
		}
		if (c->sign)
			assert_string_equal(s, c->sign);
	}
	kmm_resolved_mapping_free(res);
}

static const char *mapping_label(const void *row)
{
	return ((const struct mcase *)row)->kernel;
}

static void test_module_config_and_modprobe(void **state)
{
	_cleanup_(kmm_module_freep) struct kmm_module *m = NULL;
	_cleanup_(kmm_mapper_freep) struct kmm_mapper *mp = NULL;
	_cleanup_(kmm_resolved_mapping_freep) struct kmm_resolved_mapping *res = NULL;
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *cfg = NULL;
	_cleanup_strv_free_ char **load = NULL, **unload = NULL, **intree = NULL;
	_cleanup_free_ char *l = NULL, *u = NULL, *t = NULL;

	assert_int_equal(module_from_yaml(module_yaml, 0, &m, NULL), 0);
	assert_int_equal(kmm_mapper_new(m, &mp, NULL), 0);
	assert_int_equal(kmm_mapper_resolve(mp, m, "6.1.0-18-amd64", &res, NULL), 1);
	assert_int_equal(kmm_module_config_for(m, res, &cfg, NULL), 0);
	assert_string_equal(cfg->kernel_version, "6.1.0-18-amd64");
	assert_string_equal(cfg->image_pull_policy, "IfNotPresent");
	assert_true(cfg->insecure_pull);
	assert_int_equal(kmm_modprobe_load_argv(cfg, &load), 0);
	assert_int_equal(kmm_modprobe_unload_argv(cfg, &unload), 0);
	assert_int_equal(kmm_modprobe_in_tree_argv(cfg, &intree), 0);
	l = kmm_strv_join(load, " ");
	u = kmm_strv_join(unload, " ");
	t = kmm_strv_join(intree, " ");
	assert_string_equal(l, "modprobe -vd /tmp/opt --first-time kmm_ci_a p=1");
	assert_string_equal(u, "modprobe -rvd /tmp/opt -q kmm_ci_a");
	assert_string_equal(t, "modprobe -rv dummy");
}

static void test_cache_compiles_once_per_generation(void **state)
{
	_cleanup_(kmm_module_freep) struct kmm_module *m = NULL;
	struct kmm_mapper_cache *c = kmm_mapper_cache_new();
	const char *kernels[] = { "6.6.0-rt15", "6.1.0-18-amd64", "6.0.15-300.fc37.x86_64" };

	assert_non_null(c);
	assert_int_equal(module_from_yaml(module_yaml, 0, &m, NULL), 0);
	for (int round = 0; round < 3; round++)
		for (size_t i = 0; i < 3; i++) {
			struct kmm_resolved_mapping *res = NULL;

			assert_int_equal(kmm_mapper_cache_resolve(c, m, kernels[i], &res, NULL), 1);
			kmm_resolved_mapping_free(res);
		}
	assert_int_equal(kmm_mapper_cache_compilations(c), 1);
	m->generation = 2;
	{
		struct kmm_resolved_mapping *res = NULL;

		assert_int_equal(kmm_mapper_cache_resolve(c, m, kernels[0], &res, NULL), 1);
		kmm_resolved_mapping_free(res);
	}
	assert_int_equal(kmm_mapper_cache_compilations(c), 2);
	kmm_mapper_cache_forget(c, "ns1", "mod1");
	kmm_mapper_cache_free(c);
}

static void test_raw_args_and_loading_order(void **state)
{
	struct kmm_module_config cfg = { 0 };
	struct kmm_modprobe_args raw = { 0 };
	char v[] = "-v", x[] = "x", r[] = "-r", a[] = "a", b[] = "b", c[] = "c", opt[] = "/opt";
	char *load_raw[] = { v, x, NULL }, *unload_raw[] = { r, x, NULL };
	char *order[] = { a, b, c, NULL };
	_cleanup_strv_free_ char **l = NULL, **u = NULL;
	_cleanup_free_ char *ls = NULL, *us = NULL;

	raw.load = load_raw;
	raw.unload = unload_raw;
	cfg.modprobe.raw_args = &raw;
	assert_int_equal(kmm_modprobe_load_argv(&cfg, &l), 0);
	ls = kmm_strv_join(l, " ");
	assert_string_equal(ls, "modprobe -v x");
	cfg.modprobe.raw_args = NULL;
	cfg.modprobe.module_name = a;
	cfg.modprobe.dir_name = opt;
	cfg.modprobe.modules_loading_order = order;
	assert_int_equal(kmm_modprobe_unload_argv(&cfg, &u), 0);
	us = kmm_strv_join(u, " ");
	assert_string_equal(us, "modprobe -rvd /tmp/opt a b c");
}

/* args with one list: the other side's command is the one without args. */
static void test_args_one_side_only(void **state)
{
	struct kmm_module_config cfg = { 0 };
	struct kmm_modprobe_args args = { 0 };
	char first[] = "--first-time", holders[] = "--remove-holders", m[] = "m", opt[] = "/opt";
	char p[] = "p=1";
	char *load[] = { first, NULL }, *unload[] = { holders, NULL }, *params[] = { p, NULL };
	char **l = NULL, **u = NULL;
	_cleanup_free_ char *ls = NULL, *us = NULL, *ls2 = NULL, *us2 = NULL;

	cfg.modprobe.module_name = m;
	cfg.modprobe.dir_name = opt;
	cfg.modprobe.parameters = params;
	cfg.modprobe.args = &args;
	args.load = load;
	assert_int_equal(kmm_modprobe_load_argv(&cfg, &l), 0);
	assert_int_equal(kmm_modprobe_unload_argv(&cfg, &u), 0);
	ls = kmm_strv_join(l, " ");
	us = kmm_strv_join(u, " ");
	assert_string_equal(ls, "modprobe -vd /tmp/opt --first-time m p=1");
	assert_string_equal(us, "modprobe -rvd /tmp/opt m");
	kmm_strv_free(l);
	kmm_strv_free(u);
	args.load = NULL;
	args.unload = unload;
	assert_int_equal(kmm_modprobe_load_argv(&cfg, &l), 0);
	assert_int_equal(kmm_modprobe_unload_argv(&cfg, &u), 0);
	ls2 = kmm_strv_join(l, " ");
	us2 = kmm_strv_join(u, " ");
	assert_string_equal(ls2, "modprobe -vd /tmp/opt m p=1");
	assert_string_equal(us2, "modprobe -rvd /tmp/opt --remove-holders m");
	kmm_strv_free(l);
	kmm_strv_free(u);
}

int main(void)
{
	struct table_run t = { 0 };
	struct kmm_error *err = NULL;
	int r;

	if (module_from_yaml(module_yaml, KMM_API_STRICT, &mapping_module, &err) != 0 ||
	    kmm_mapper_new(mapping_module, &mapping_mapper, &err) != 0) {
		fprintf(stderr, "setup: %s\n", kmm_error_message(err));
		return 1;
	}
	table_add_rows(&t, "kernel", test_resolve_row, (void *)cases, KMM_ARRAY_SIZE(cases),
		       sizeof(cases[0]), mapping_label);
	table_add(&t, "test_module_config_and_modprobe", test_module_config_and_modprobe, NULL);
	table_add(&t, "test_cache_compiles_once_per_generation",
		  test_cache_compiles_once_per_generation, NULL);
	table_add(&t, "test_raw_args_and_loading_order", test_raw_args_and_loading_order, NULL);
	table_add(&t, "test_args_one_side_only", test_args_one_side_only, NULL);
	r = table_run(&t, "kernel-mapping");
	kmm_mapper_free(mapping_mapper);
	kmm_module_free(mapping_module);
	return r;
}
