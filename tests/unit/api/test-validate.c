/* SPDX-License-Identifier: Apache-2.0 */
/* Every rule of the Module validating webhook (reference §1.8), one case or more each. */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/api.h"
#include "lib/api/validate-internal.h"
#include "tests/unit/api/helpers.h"
#include "tests/unit/api/table.h"

#define HEAD                                                                                       \
	"apiVersion: kmm.sigs.x-k8s.io/v1beta1\nkind: Module\nmetadata: {name: mod, namespace: "   \
	"ns}\nspec:\n  selector: {a: b}\n"
#define LOADER                                                                                     \
	"  moduleLoader:\n    container:\n      modprobe: {moduleName: m}\n"                       \
	"      kernelMappings: [{literal: 6.1.0-1-amd64, containerImage: 'r/i:1'}]\n"

struct vcase {
	const char *name;
	const char *yaml;
	int k8s_minor;
	const char *error; /* NULL: valid; else a substring of the message */
};

static const struct vcase cases[] = {
	{ "valid minimal", HEAD LOADER, 33, NULL },
	{ "valid without moduleLoader (device plugin only)",
	  HEAD "  devicePlugin: {container: {image: 'dp:1'}}\n", 33, NULL },
	/* 1. name + namespace */
	{ "name+namespace 41 is fine",
	  "apiVersion: kmm.sigs.x-k8s.io/v1beta1\nkind: Module\nmetadata: {name: "
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, namespace: ns1}\nspec:\n  selector: {}\n" LOADER,
	  33, NULL },
	{ "name+namespace 42 is rejected",
	  "apiVersion: kmm.sigs.x-k8s.io/v1beta1\nkind: Module\nmetadata: {name: "
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, namespace: ns1}\nspec:\n  selector: "
	  "{}\n" LOADER,
	  33, "combined length of the name and namespace (42) must not exceed 41" },
	/* 2. tolerations */
	{ "toleration key not a qualified name",
	  HEAD "  tolerations: [{key: 'bad key', operator: Exists}]\n" LOADER, 33,
	  "spec.tolerations[0].key: Invalid value: \"bad key\"" },
	{ "toleration empty key needs Exists",
	  HEAD "  tolerations: [{operator: Equal, value: v}]\n" LOADER, 33,
	  "spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists" },
	{ "toleration empty key with Exists is fine",
	  HEAD "  tolerations: [{operator: Exists}]\n" LOADER, 33, NULL },
	{ "tolerationSeconds needs NoExecute",
	  HEAD "  tolerations: [{key: k, operator: Exists, effect: NoSchedule, tolerationSeconds: "
	       "5}]\n" LOADER,
	  33, "effect must be 'NoExecute' when `tolerationSeconds` is set" },
	{ "unsupported operator", HEAD "  tolerations: [{key: k, operator: In}]\n" LOADER, 33,
	  "spec.tolerations[0].operator: Unsupported value: \"In\"" },
	{ "Equal value must be a label value",
	  HEAD "  tolerations: [{key: k, operator: Equal, value: 'a b'}]\n" LOADER, 33,
	  "spec.tolerations[0].value: Invalid value: \"a b\"" },
	{ "Exists with a value",
	  HEAD "  tolerations: [{key: k, operator: Exists, value: v}]\n" LOADER, 33,
	  "value must be empty when `operator` is 'Exists'" },
	{ "bad effect",
	  HEAD "  tolerations: [{key: k, operator: Exists, effect: Sometimes}]\n" LOADER, 33,
	  "spec.tolerations[0].effect: Unsupported value: \"Sometimes\"" },
	{ "good tolerations",
	  HEAD "  tolerations: [{key: example.com/gpu, operator: Equal, value: 'true', effect: "
	       "NoExecute, tolerationSeconds: 3}, {key: k, effect: PreferNoSchedule}]\n" LOADER,
	  33, NULL },
	/* 3. DRA */
	{ "DRA before 1.34",
	  HEAD "  dra: {container: {image: 'd:1'}, driverName: gpu.example.com}\n", 33,
	  "spec.dra: DRA requires Kubernetes 1.34 or newer" },
	{ "DRA ok on 1.34",
	  HEAD "  dra: {container: {image: 'd:1'}, driverName: gpu.example.com}\n", 34, NULL },
	{ "DRA gate skipped (hub/offline)",
	  HEAD "  dra: {container: {image: 'd:1'}, driverName: gpu.example.com}\n", -1, NULL },
	{ "DRA empty driverName", HEAD "  dra: {container: {image: 'd:1'}, driverName: ''}\n", 34,
	  "spec.dra.driverName: Required value" },
	{ "DRA bad driverName", HEAD "  dra: {container: {image: 'd:1'}, driverName: Bad_Name}\n",
	  34, "spec.dra.driverName: Invalid value: \"Bad_Name\"" },
	{ "DRA empty class name",
	  HEAD "  dra: {container: {image: 'd:1'}, driverName: d.x, deviceClasses: [{name: ''}]}\n",
	  34, "spec.dra.deviceClasses[0].name: Required value" },
	{ "DRA invalid class name",
	  HEAD "  dra: {container: {image: 'd:1'}, driverName: d.x, deviceClasses: [{name: UP}]}\n",
	  34, "spec.dra.deviceClasses[0].name: Invalid value: \"UP\"" },
	{ "DRA duplicate class name",
	  HEAD "  dra: {container: {image: 'd:1'}, driverName: d.x, deviceClasses: [{name: a}, "
	       "{name: a}]}\n",
	  34, "spec.dra.deviceClasses[1].name: Duplicate value: \"a\"" },
	/* 4. hostPath volumes */
	{ "devicePlugin hostPath outside the allow-list",
	  HEAD "  devicePlugin: {container: {image: 'dp:1'}, volumes: [{name: v, hostPath: {path: "
	       "/etc}}]}\n",
	  33, "spec.devicePlugin.volumes[0].hostPath.path: Forbidden: \"/etc\"" },
	{ "devicePlugin hostPath escaping with ..",
	  HEAD "  devicePlugin: {container: {image: 'dp:1'}, volumes: [{name: v, hostPath: {path: "
	       "/dev/../etc/shadow}}]}\n",
	  33, "Forbidden: \"/dev/../etc/shadow\"" },
	{ "devicePlugin hostPath allowed",
	  HEAD "  devicePlugin: {container: {image: 'dp:1'}, volumes: [{name: v, hostPath: {path: "
	       "/var/lib/x/}}, {name: w, emptyDir: {}}]}\n",
	  33, NULL },
	{ "dra hostPath outside the allow-list",
	  HEAD "  dra: {container: {image: 'd:1'}, driverName: d.x, volumes: [{name: v, hostPath: "
	       "{path: /root}}]}\n",
	  34, "spec.dra.volumes[0].hostPath.path: Forbidden" },
	/* 5. moduleLoader */
	{ "both in-tree forms at container level",
	  HEAD LOADER "      inTreeModulesToRemove: [a]\n      inTreeModuleToRemove: b\n", 33,
	  "spec.moduleLoader.container: Invalid value: inTreeModulesToRemove and "
	  "inTreeModuleToRemove are mutually exclusive" },
	{ "container image without tag", HEAD LOADER "      containerImage: registry/image\n", 33,
	  "spec.moduleLoader.container.containerImage: Invalid value: \"registry/image\": must "
	  "explicitly set a tag or digest" },
	{ "container image with digest",
	  HEAD LOADER "      containerImage: registry/image@sha256:0123\n", 33, NULL },
	{ "mapping with regexp and literal",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {moduleName: m}\n      "
	       "kernelMappings: [{literal: a, regexp: b, containerImage: 'i:1'}]\n",
	  33, "kernelMappings[0]: Invalid value: regexp and literal are mutually exclusive" },
	{ "mapping with neither",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {moduleName: m}\n      "
	       "kernelMappings: [{containerImage: 'i:1'}]\n",
	  33, "kernelMappings[0]: Required value: regexp or literal must be set" },
	{ "mapping regexp does not compile",
	  HEAD
	  "  moduleLoader:\n    container:\n      modprobe: {moduleName: m}\n      kernelMappings: "
	  "[{literal: x, containerImage: 'i:1'}, {regexp: '(a', containerImage: 'i:1'}]\n",
	  33, "spec.moduleLoader.container.kernelMappings[1].regexp: Invalid value: \"(a\"" },
	{ "mapping regexp outside RE2",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {moduleName: m}\n      "
	       "kernelMappings: [{regexp: '(?=x)', containerImage: 'i:1'}]\n",
	  33, "unsupported lookahead" },
	{ "mapping and container images both empty",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {moduleName: m}\n      "
	       "kernelMappings: [{literal: x, containerImage: ''}]\n",
	  33, "kernelMappings[0].containerImage: Required value" },
	{ "mapping image empty but container image set",
	  HEAD
	  "  moduleLoader:\n    container:\n      containerImage: 'r/i:$KERNEL_FULL_VERSION'\n     "
	  " modprobe: {moduleName: m}\n      kernelMappings: [{literal: x, containerImage: ''}]\n",
	  33, NULL },
	{ "mapping image without tag",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {moduleName: m}\n      "
	       "kernelMappings: [{literal: x, containerImage: 'r/i'}]\n",
	  33,
	  "kernelMappings[0].containerImage: Invalid value: \"r/i\": must explicitly set a tag or "
	  "digest" },
	{ "both in-tree forms in a mapping",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {moduleName: m}\n      "
	       "kernelMappings: [{literal: x, containerImage: 'i:1', inTreeModulesToRemove: [a], "
	       "inTreeModuleToRemove: b}]\n",
	  33,
	  "kernelMappings[0]: Invalid value: inTreeModulesToRemove and inTreeModuleToRemove are "
	  "mutually exclusive" },
	{ "list at container, string at mapping",
	  HEAD "  moduleLoader:\n    container:\n      inTreeModulesToRemove: [a]\n      modprobe: "
	       "{moduleName: m}\n      kernelMappings: [{literal: x, containerImage: 'i:1', "
	       "inTreeModuleToRemove: b}]\n",
	  33, "cannot be mixed between the container and the kernel mapping" },
	{ "string at container, list at mapping",
	  HEAD "  moduleLoader:\n    container:\n      inTreeModuleToRemove: a\n      modprobe: "
	       "{moduleName: m}\n      kernelMappings: [{literal: x, containerImage: 'i:1', "
	       "inTreeModulesToRemove: [b]}]\n",
	  33, "cannot be mixed between the container and the kernel mapping" },
	{ "moduleName with rawArgs",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {moduleName: m, rawArgs: {load: "
	       "[a], unload: [b]}}\n      kernelMappings: [{literal: x, containerImage: 'i:1'}]\n",
	  33, "moduleName and rawArgs are mutually exclusive" },
	{ "dirName climbing out of the image",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {moduleName: m, dirName: "
	       "/opt/../../host}\n      kernelMappings: [{literal: x, containerImage: 'i:1'}]\n",
	  33, "modprobe.dirName: Invalid value: \"/opt/../../host\": must not contain '..'" },
	{ "firmwarePath climbing out of the image",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {moduleName: m, firmwarePath: "
	       "../etc}\n      kernelMappings: [{literal: x, containerImage: 'i:1'}]\n",
	  33, "modprobe.firmwarePath: Invalid value: \"../etc\": must not contain '..'" },
	{ "dots in names are fine",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {moduleName: m, dirName: "
	       "/opt/..x/y.., firmwarePath: /fw/...}\n      kernelMappings: [{literal: x, "
	       "containerImage: 'i:1'}]\n",
	  33, NULL },
	{ "rawArgs alone is fine",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {rawArgs: {load: [a], unload: "
	       "[b]}}\n      kernelMappings: [{literal: x, containerImage: 'i:1'}]\n",
	  33, NULL },
	/* ModprobeArgs: upstream requires neither list; the webhook has no rule on args. */
	{ "args.load alone is fine",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {moduleName: m, args: {load: "
	       "[--first-time]}}\n      kernelMappings: [{literal: x, containerImage: 'i:1'}]\n",
	  33, NULL },
	{ "args.unload alone is fine",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {moduleName: m, args: {unload: "
	       "[--remove-holders]}}\n      kernelMappings: [{literal: x, containerImage: "
	       "'i:1'}]\n",
	  33, NULL },
	{ "rawArgs.load alone without moduleName",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {rawArgs: {load: [a]}}\n      "
	       "kernelMappings: [{literal: x, containerImage: 'i:1'}]\n",
	  33, "either moduleName or both rawArgs.load and rawArgs.unload must be set" },
	{ "rawArgs.unload alone without moduleName",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {rawArgs: {unload: [a]}}\n      "
	       "kernelMappings: [{literal: x, containerImage: 'i:1'}]\n",
	  33, "either moduleName or both rawArgs.load and rawArgs.unload must be set" },
	{ "no moduleName and no rawArgs",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {dirName: /opt}\n      "
	       "kernelMappings: [{literal: x, containerImage: 'i:1'}]\n",
	  33, "modprobe.moduleName: Required value" },
	{ "modulesLoadingOrder with one entry",
	  HEAD
	  "  moduleLoader:\n    container:\n      modprobe: {moduleName: m, modulesLoadingOrder: "
	  "[m]}\n      kernelMappings: [{literal: x, containerImage: 'i:1'}]\n",
	  33, "modulesLoadingOrder: Invalid value: must list at least 2 modules" },
	{ "modulesLoadingOrder without moduleName",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {rawArgs: {load: [a], unload: "
	       "[b]}, modulesLoadingOrder: [a, b]}\n      kernelMappings: [{literal: x, "
	       "containerImage: 'i:1'}]\n",
	  33, "modulesLoadingOrder: Invalid value: requires modprobe.moduleName" },
	{ "modulesLoadingOrder first entry",
	  HEAD
	  "  moduleLoader:\n    container:\n      modprobe: {moduleName: m, modulesLoadingOrder: "
	  "[a, m]}\n      kernelMappings: [{literal: x, containerImage: 'i:1'}]\n",
	  33, "modulesLoadingOrder[0]: Invalid value: \"a\": must be equal to moduleName \"m\"" },
	{ "modulesLoadingOrder duplicates",
	  HEAD
	  "  moduleLoader:\n    container:\n      modprobe: {moduleName: m, modulesLoadingOrder: "
	  "[m, a, a]}\n      kernelMappings: [{literal: x, containerImage: 'i:1'}]\n",
	  33, "modulesLoadingOrder[2]: Duplicate value: \"a\"" },
	{ "sign without filesToSign (module level)",
	  HEAD LOADER "      sign: {keySecret: {name: k}, certSecret: {name: c}}\n", 33,
	  "spec.moduleLoader.container.sign.filesToSign: Required value" },
	{ "sign file outside dirName (module level)",
	  HEAD LOADER "      sign: {keySecret: {name: k}, certSecret: {name: c}, filesToSign: "
		      "[/lib/modules/x.ko]}\n",
	  33,
	  "spec.moduleLoader.container.sign.filesToSign[0]: Invalid value: \"/lib/modules/x.ko\": "
	  "must be under the modprobe dirName /opt/" },
	{ "sign file outside a custom dirName (mapping level)",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {moduleName: m, dirName: /mods}\n "
	       "     kernelMappings: [{literal: x, containerImage: 'i:1', sign: {keySecret: {name: "
	       "k}, certSecret: {name: c}, filesToSign: [/opt/a.ko]}}]\n",
	  33,
	  "kernelMappings[0].sign.filesToSign[0]: Invalid value: \"/opt/a.ko\": must be under the "
	  "modprobe dirName /mods/" },
	{ "sign without files (mapping level)",
	  HEAD "  moduleLoader:\n    container:\n      modprobe: {moduleName: m}\n      "
	       "kernelMappings: [{literal: x, containerImage: 'i:1', sign: {keySecret: {name: k}, "
	       "certSecret: {name: c}}}]\n",
	  33, "kernelMappings[0].sign.filesToSign: Required value" },
	{ "sign files under dirName",
	  HEAD
	  "  moduleLoader:\n    container:\n      modprobe: {moduleName: m}\n      kernelMappings: "
	  "[{literal: x, containerImage: 'i:1', sign: {keySecret: {name: k}, certSecret: {name: "
	  "c}, filesToSign: ['/opt/lib/modules/${KERNEL_FULL_VERSION}/*.ko']}}]\n",
	  33, NULL },
};

static void test_rule_row(void **state)
{
	const struct vcase *c = *state;
	struct kmm_module *m = NULL;
	struct kmm_error *err = NULL;
	bool good;
	int r;

	r = module_from_yaml(c->yaml, KMM_API_STRICT, &m, &err);
	if (r < 0) {
		print_error("parse: %s\n", kmm_error_message(err));
		kmm_error_free(err);
		fail();
	}
	r = kmm_module_validate(m, NULL, c->k8s_minor, false, &err);
	good = c->error ? r == -EINVAL && strstr(err->message, c->error) : r == 0;
	if (!good)
		print_error("r=%d message=%s\n", r, kmm_error_message(err));
	kmm_error_free(err);
	kmm_module_free(m);
	assert_true(good);
}

static const char *vcase_label(const void *row)
{
	return ((const struct vcase *)row)->name;
}

static void test_version_immutability_on_update(void **state)
{
	const char *without = HEAD LOADER;
	const char *with_v1 = HEAD LOADER "      version: v1\n";
	const char *with_v2 = HEAD LOADER "      version: v2\n";
	struct kmm_module *a = NULL, *b = NULL, *c = NULL;
	struct kmm_error *err = NULL;

	assert_int_equal(module_from_yaml(without, 0, &a, NULL), 0);
	assert_int_equal(module_from_yaml(with_v1, 0, &b, NULL), 0);
	assert_int_equal(module_from_yaml(with_v2, 0, &c, NULL), 0);
	assert_int_equal(kmm_module_validate(b, a, 33, false, &err), -EINVAL);
	assert_non_null(strstr(err->message, "please delete the Module and create it again"));
	kmm_error_free(err);
	err = NULL;
	assert_int_equal(kmm_module_validate(a, b, 33, false, &err), -EINVAL);
	kmm_error_free(err);
	err = NULL;
	assert_int_equal(kmm_module_validate(c, b, 33, false, &err), 0); /* v1 -> v2 is fine */
	assert_int_equal(kmm_module_validate(a, a, 33, false, &err), 0);
	kmm_module_free(a);
	kmm_module_free(b);
	kmm_module_free(c);
}

static void test_all_reports_every_violation(void **state)
{
	const char *y = HEAD "  tolerations: [{key: 'a b'}]\n"
			     "  moduleLoader:\n    container:\n      containerImage: noTag\n"
			     "      modprobe: {}\n      kernelMappings: [{containerImage: ''}]\n";
	struct kmm_module *m = NULL;
	struct kmm_error *err = NULL;

	assert_int_equal(module_from_yaml(y, 0, &m, NULL), 0);
	assert_int_equal(kmm_module_validate(m, NULL, 33, true, &err), -EINVAL);
	assert_non_null(strstr(err->message, "spec.tolerations[0].key"));
	assert_non_null(strstr(err->message, "; spec.moduleLoader.container.containerImage"));
	assert_non_null(strstr(err->message, "kernelMappings[0]: Required value"));
	assert_non_null(strstr(err->message, "modprobe.moduleName: Required value"));
	kmm_error_free(err);
	err = NULL;
	/* Without `all`, only the first, as upstream. */
	assert_int_equal(kmm_module_validate(m, NULL, 33, false, &err), -EINVAL);
	assert_null(strstr(err->message, "; "));
	kmm_error_free(err);
	kmm_module_free(m);
}

static void test_name_helpers(void **state)
{
	char *p;

	assert_true(kmm_is_dns1123_subdomain("a.b-c.d"));
	assert_false(kmm_is_dns1123_subdomain("a..b"));
	assert_false(kmm_is_dns1123_subdomain("-a"));
	assert_false(kmm_is_dns1123_subdomain("a-"));
	assert_false(kmm_is_dns1123_subdomain("A"));
	assert_true(kmm_is_qualified_name("example.com/Gpu_1"));
	assert_false(kmm_is_qualified_name("example.com/"));
	assert_false(kmm_is_qualified_name("a/b/c"));
	assert_true(kmm_is_label_value(""));
	assert_false(kmm_is_label_value("-x"));
	p = kmm_path_clean("/dev/../etc//x/./");
	assert_string_equal(p, "/etc/x");
	free(p);
	p = kmm_path_clean("/../../dev");
	assert_string_equal(p, "/dev");
	free(p);
	p = kmm_path_clean("dev/../..");
	assert_string_equal(p, "..");
	free(p);
}

static void test_kube_version_minor(void **state)
{
	assert_int_equal(kmm_kube_version_minor("1.34"), 34);
	assert_int_equal(kmm_kube_version_minor("v1.37.2"), 37);
	assert_int_equal(kmm_kube_version_minor("34"), 34);
	assert_int_equal(kmm_kube_version_minor("34+"), 34);
	assert_int_equal(kmm_kube_version_minor("2.1"), -1);
	assert_int_equal(kmm_kube_version_minor("1."), -1);
	assert_int_equal(kmm_kube_version_minor("1.x"), -1);
	assert_int_equal(kmm_kube_version_minor("34-"), -1);
	assert_int_equal(kmm_kube_version_minor(""), -1);
	assert_int_equal(kmm_kube_version_minor(NULL), -1);
}

int main(void)
{
	struct table_run t = { 0 };

	table_add_rows(&t, "webhook rule", test_rule_row, (void *)cases, KMM_ARRAY_SIZE(cases),
		       sizeof(cases[0]), vcase_label);
	table_add(&t, "test_version_immutability_on_update", test_version_immutability_on_update,
		  NULL);
	table_add(&t, "test_all_reports_every_violation", test_all_reports_every_violation, NULL);
	table_add(&t, "test_name_helpers", test_name_helpers, NULL);
	table_add(&t, "test_kube_version_minor", test_kube_version_minor, NULL);
	return table_run(&t, "validate");
}
