/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The security context of every pod kmm creates, field by field: worker
 * loader and unloader (with and without firmware), its image extractor, pull
 * pods, and kaniko and buildah build and sign pods. Each context is compared
 * whole, so a field added or lost fails; on top of that, no container of any
 * pod may be privileged, keep a capability it did not add, run without the
 * runtime's seccomp profile or be able to gain privileges, and no pod gets a
 * ServiceAccount token.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/operator-buildsign.h"
#include "kmm/shared-json.h"
#include "kmm/operator-runtime.h"

#define LOCKED                                                                                     \
	"\"allowPrivilegeEscalation\": false, \"capabilities\": {\"drop\": [\"ALL\"]%s},"          \
	" \"seccompProfile\": {\"type\": \"RuntimeDefault\"}"

/*
 * The worker's and the extractor's common part, the copier installer's (nobody
 * in the worker image), then the worker's own.
 */
#define COPIER_SC                                                                                  \
	"{\"allowPrivilegeEscalation\": false, \"capabilities\": {\"drop\": [\"ALL\"]},"           \
	" \"readOnlyRootFilesystem\": true, \"runAsUser\": 65534, \"runAsGroup\": 65534,"          \
	" \"seccompProfile\": {\"type\": \"RuntimeDefault\"}}"
#define EXTRACTOR_SC                                                                               \
	"{\"allowPrivilegeEscalation\": false, \"capabilities\": {\"drop\": [\"ALL\"]},"           \
	" \"readOnlyRootFilesystem\": true, \"seccompProfile\": {\"type\": \"RuntimeDefault\"}}"
#define WORKER_SC(uid, selinux)                                                                    \
	"{\"allowPrivilegeEscalation\": false,"                                                    \
	" \"capabilities\": {\"drop\": [\"ALL\"], \"add\": [\"SYS_MODULE\"]},"                     \
	" \"readOnlyRootFilesystem\": true, \"runAsUser\": " uid ","                               \
	" \"seLinuxOptions\": {\"type\": \"" selinux "\"},"                                        \
	" \"seccompProfile\": {\"type\": \"RuntimeDefault\"}}"
#define PULL_SC                                                                                    \
	"{\"allowPrivilegeEscalation\": false, \"capabilities\": {\"drop\": [\"ALL\"]},"           \
	" \"readOnlyRootFilesystem\": true, \"runAsNonRoot\": true, \"runAsUser\": 65534,"         \
	" \"runAsGroup\": 65534, \"seccompProfile\": {\"type\": \"RuntimeDefault\"}}"
#define BUILDER_CAPS                                                                               \
	"\"CHOWN\", \"DAC_OVERRIDE\", \"FOWNER\", \"FSETID\", \"KILL\", \"NET_BIND_SERVICE\","     \
	" \"SETFCAP\", \"SETGID\", \"SETPCAP\", \"SETUID\", \"SYS_CHROOT\""
#define KANIKO_SC                                                                                  \
	"{\"allowPrivilegeEscalation\": false,"                                                    \
	" \"capabilities\": {\"drop\": [\"ALL\"], \"add\": [" BUILDER_CAPS "]},"                   \
	" \"runAsUser\": 0, \"seccompProfile\": {\"type\": \"RuntimeDefault\"}}"
#define BUILDAH_SC                                                                                 \
	"{\"allowPrivilegeEscalation\": false,"                                                    \
	" \"capabilities\": {\"drop\": [\"ALL\"], \"add\": [" BUILDER_CAPS ", \"SYS_ADMIN\"]},"    \
	" \"runAsUser\": 0, \"seccompProfile\": {\"type\": \"RuntimeDefault\"},"                   \
	" \"appArmorProfile\": {\"type\": \"Unconfined\"}}"

#define PLAIN_CONFIG                                                                               \
	"{\"kernelVersion\":\"6.1.0\",\"containerImage\":\"reg/img:1\","                           \
	"\"modprobe\":{\"moduleName\":\"a\"}}"
#define FIRMWARE_CONFIG                                                                            \
	"{\"kernelVersion\":\"6.1.0\",\"containerImage\":\"reg/img:1\","                           \
	"\"modprobe\":{\"moduleName\":\"a\",\"firmwarePath\":\"/fw\"}}"

static void assert_json(const json_t *v, const char *expected)
{
	_cleanup_json_ json_t *e = json_loads(expected, JSON_DECODE_ANY, NULL);

	assert_non_null(e);
	if (!json_equal(v, e)) {
		_cleanup_free_ char *got = json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT);

		print_error("got      %s\nexpected %s\n", got ? got : "(null)", expected);
		fail();
	}
}

static const json_t *spec_of(const json_t *pod)
{
	return json_object_get(pod, "spec");
}

static const json_t *nth(const json_t *pod, const char *list, size_t i)
{
	const json_t *c = json_array_get(json_object_get(spec_of(pod), list), i);

	assert_non_null(c);
	return c;
}

static const json_t *sc_of(const json_t *c)
{
	return json_object_get(c, "securityContext");
}

/*
 * What holds for every container of every pod kmm makes, whatever it adds:
 * not privileged, drops ALL, seccomp RuntimeDefault, no_new_privs; and the
 * pod mounts no ServiceAccount token.
 */
static void assert_invariants(const json_t *pod)
{
	static const char *const lists[] = { "initContainers", "containers" };
	const json_t *spec = spec_of(pod);
	size_t n = 0;

	assert_true(json_is_false(json_object_get(spec, "automountServiceAccountToken")));
	assert_null(json_object_get(spec, "securityContext"));
	assert_null(json_object_get(spec, "hostPID"));
	assert_null(json_object_get(spec, "hostNetwork"));
	assert_null(json_object_get(spec, "hostIPC"));
	for (size_t l = 0; l < KMM_ARRAY_SIZE(lists); l++) {
		const json_t *c;
		size_t i;

		json_array_foreach (json_object_get(spec, lists[l]), i, c) {
			const json_t *sc = sc_of(c);

			assert_non_null(sc);
			assert_null(json_object_get(sc, "privileged"));
			assert_true(json_is_false(json_object_get(sc, "allowPrivilegeEscalation")));
			assert_json(json_object_get(json_object_get(sc, "capabilities"), "drop"),
				    "[\"ALL\"]");
			assert_json(json_object_get(sc, "seccompProfile"),
				    "{\"type\": \"RuntimeDefault\"}");
			n++;
		}
	}
	assert_true(n > 0);
}

/* ---- worker pods ---- */

struct worker_opts {
	int64_t run_as_user;
	const char *selinux;
	const char *sign_cert_secret;
};

static json_t *worker_pod(const char *cfg_text, enum kmm_op_worker_action a,
			  const struct worker_opts *o)
{
	struct kmm_operator_config op;
	_cleanup_json_ json_t *j = json_loads(cfg_text, 0, NULL);
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *c = NULL;
	struct kmm_op_worker_params p = {
		.action = a,
		.node = "n1",
		.nmc_uid = "uid-1",
		.module_name = "mod",
		.module_namespace = "ns",
		.service_account = "mod-sa",
	};
	json_t *pod = NULL;

	assert_non_null(j);
	assert_int_equal(kmm_module_config_from_json(j, "", 0, &c, NULL), 0);
	assert_int_equal(kmm_operator_config_init(&op), 0);
	free(op.worker_image);
	op.worker_image = strdup("worker:1");
	if (o) {
		op.worker_run_as_user = o->run_as_user;
		free(op.worker_selinux_type);
		op.worker_selinux_type = strdup(o->selinux);
		p.sign_cert_secret = o->sign_cert_secret;
	}
	p.config = c;
	p.op = &op;
	assert_int_equal(kmm_op_worker_pod(&p, &pod, NULL), 0);
	kmm_operator_config_free(&op);
	assert_invariants(pod);
	return pod;
}

/* The pod's hostPath volumes as {"name": "path type"}. */
static void assert_host_paths(const json_t *pod, const char *expected)
{
	_cleanup_json_ json_t *got = json_object();
	const json_t *v;
	size_t i;

	json_array_foreach (json_object_get(spec_of(pod), "volumes"), i, v) {
		const json_t *hp = json_object_get(v, "hostPath");
		char both[512];

		if (!hp)
			continue;
		snprintf(both, sizeof(both), "%s %s",
			 json_string_value(json_object_get(hp, "path")),
			 json_string_value(json_object_get(hp, "type")));
		json_object_set_new(got, json_string_value(json_object_get(v, "name")),
				    json_string(both));
	}
	assert_json(got, expected);
}

/* The worker container's mounts as {"name path": readOnly}. */
static void assert_worker_mounts(const json_t *pod, const char *expected)
{
	_cleanup_json_ json_t *got = json_object();
	const json_t *m;
	size_t i;

	json_array_foreach (json_object_get(nth(pod, "containers", 0), "volumeMounts"), i, m) {
		char key[512];

		snprintf(key, sizeof(key), "%s %s", json_string_value(json_object_get(m, "name")),
			 json_string_value(json_object_get(m, "mountPath")));
		json_object_set(got, key, json_object_get(m, "readOnly"));
	}
	assert_json(got, expected);
}

static void test_worker_loader(void **state)
{
	_cleanup_json_ json_t *pod = worker_pod(PLAIN_CONFIG, KMM_OP_LOAD, NULL);

	assert_json(sc_of(nth(pod, "initContainers", 0)), COPIER_SC);
	assert_json(sc_of(nth(pod, "initContainers", 1)), EXTRACTOR_SC);
	assert_json(sc_of(nth(pod, "containers", 0)), WORKER_SC("0", "spc_t"));
	/* The ServiceAccount stays for its imagePullSecrets; only the token goes. */
	assert_string_equal(json_string_value(json_object_get(spec_of(pod), "serviceAccountName")),
			    "mod-sa");
	assert_host_paths(pod, "{\"lib-modules\": \"/lib/modules Directory\"}");
	assert_worker_mounts(pod, "{\"config /etc/kmm-worker\": true, \"lib-modules /lib/modules\":"
				  " true, \"lib-modules /host/lib/modules\": true,"
				  " \"tmp /tmp\": true}");
}

static void test_worker_unloader_keeps_run_as_user(void **state)
{
	const struct worker_opts o = { .run_as_user = 201, .selinux = "container_kmod_t" };
	_cleanup_json_ json_t *pod = worker_pod(PLAIN_CONFIG, KMM_OP_UNLOAD, &o);
	_cleanup_json_ json_t *fw = worker_pod(FIRMWARE_CONFIG, KMM_OP_UNLOAD, &o);

	assert_json(sc_of(nth(pod, "initContainers", 0)), COPIER_SC);
	assert_json(sc_of(nth(pod, "initContainers", 1)), EXTRACTOR_SC);
	assert_json(sc_of(nth(pod, "containers", 0)), WORKER_SC("201", "container_kmod_t"));
	assert_host_paths(pod, "{\"lib-modules\": \"/lib/modules Directory\"}");
	/* Unloading firmware deletes files: the firmware dir, but not sysfs. */
	assert_json(sc_of(nth(fw, "containers", 0)), WORKER_SC("201", "container_kmod_t"));
	assert_host_paths(fw, "{\"lib-modules\": \"/lib/modules Directory\","
			      " \"lib-firmware\": \"/lib/firmware DirectoryOrCreate\"}");
}

/* A signed mapping's loader checks modules against the certificate; nothing else changes. */
static void test_signed_loader_verifies(void **state)
{
	const struct worker_opts o = { .selinux = "spc_t", .sign_cert_secret = "signing-cert" };
	_cleanup_json_ json_t *load = worker_pod(PLAIN_CONFIG, KMM_OP_LOAD, &o);
	_cleanup_json_ json_t *unload = worker_pod(PLAIN_CONFIG, KMM_OP_UNLOAD, &o);
	const json_t *v, *vol = NULL;
	size_t i;

	assert_json(json_object_get(nth(load, "containers", 0), "args"),
		    "[\"kmod\", \"load\", \"/etc/kmm-worker/config.yaml\", \"--verify-cert\","
		    " \"/run/kmm/sign-cert/cert\"]");
	assert_worker_mounts(load,
			     "{\"config /etc/kmm-worker\": true, \"lib-modules /lib/modules\":"
			     " true, \"lib-modules /host/lib/modules\": true,"
			     " \"tmp /tmp\": true, \"sign-cert /run/kmm/sign-cert\": true}");
	json_array_foreach (json_object_get(spec_of(load), "volumes"), i, v)
		if (strcmp(json_string_value(json_object_get(v, "name")), "sign-cert") == 0)
			vol = v;
	assert_non_null(vol);
	assert_json(json_object_get(vol, "secret"),
		    "{\"secretName\": \"signing-cert\", \"items\": [{\"key\": \"cert\","
		    " \"path\": \"cert\"}]}");
	assert_json(sc_of(nth(load, "containers", 0)), WORKER_SC("0", "spc_t"));
	assert_json(json_object_get(nth(unload, "containers", 0), "args"),
		    "[\"kmod\", \"unload\", \"/etc/kmm-worker/config.yaml\"]");
}

static void test_firmware_loader_not_privileged(void **state)
{
	const struct worker_opts o = { .run_as_user = 201, .selinux = "spc_t" };
	_cleanup_json_ json_t *pod = worker_pod(FIRMWARE_CONFIG, KMM_OP_LOAD, &o);

	assert_json(sc_of(nth(pod, "initContainers", 0)), COPIER_SC);
	assert_json(sc_of(nth(pod, "initContainers", 1)), EXTRACTOR_SC);
	/* uid 0 whatever worker.runAsUser says: sysfs and the firmware dir are root's. */
	assert_json(sc_of(nth(pod, "containers", 0)), WORKER_SC("0", "spc_t"));
	assert_host_paths(pod, "{\"lib-modules\": \"/lib/modules Directory\","
			       " \"lib-firmware\": \"/lib/firmware DirectoryOrCreate\","
			       " \"firmware-class\": \"/sys/module/firmware_class/parameters "
			       "Directory\"}");
	assert_worker_mounts(
	    pod, "{\"config /etc/kmm-worker\": true, \"lib-modules /lib/modules\": true,"
		 " \"lib-modules /host/lib/modules\": true, \"tmp /tmp\": true,"
		 " \"lib-firmware /lib/firmware\": false,"
		 " \"firmware-class /sys/module/firmware_class/parameters\": false,"
		 " \"firmware-class /run/kmm/firmware_class\": false}");
}

/*
 * The kmod image may be FROM scratch: the first init container copies the
 * static kmm-worker-copy from the worker image into the emptyDir `copier`,
 * and the extractor, in the kmod image, runs it from there: no shell, no cp.
 */
static void test_worker_extracts_with_static_copier(void **state)
{
	_cleanup_json_ json_t *pod = worker_pod(PLAIN_CONFIG, KMM_OP_LOAD, NULL);
	_cleanup_json_ json_t *fw = worker_pod(FIRMWARE_CONFIG, KMM_OP_UNLOAD, NULL);
	const json_t *install = nth(pod, "initContainers", 0);
	const json_t *extract = nth(pod, "initContainers", 1);
	const json_t *v;
	size_t i, copier_volumes = 0;

	assert_int_equal(json_array_size(json_object_get(spec_of(pod), "initContainers")), 2);
	assert_string_equal(json_string_value(json_object_get(install, "name")), "install-copier");
	assert_string_equal(json_string_value(json_object_get(install, "image")), "worker:1");
	assert_json(json_object_get(install, "command"),
		    "[\"/usr/local/bin/kmm-worker-copy\", \"/usr/local/bin/kmm-worker-copy\","
		    " \"/run/kmm/bin/kmm-worker-copy\"]");
	assert_null(json_object_get(install, "args"));
	assert_json(
	    json_object_get(install, "volumeMounts"),
	    "[{\"name\": \"copier\", \"mountPath\": \"/run/kmm/bin\", \"readOnly\": false}]");

	assert_string_equal(json_string_value(json_object_get(extract, "name")), "image-extractor");
	assert_string_equal(json_string_value(json_object_get(extract, "image")), "reg/img:1");
	assert_json(json_object_get(extract, "command"), "[\"/run/kmm/bin/kmm-worker-copy\"]");
	assert_json(json_object_get(extract, "args"),
		    "[\"/opt/lib/modules/6.1.0\", \"/tmp/opt/lib/modules/6.1.0\"]");
	assert_json(
	    json_object_get(extract, "volumeMounts"),
	    "[{\"name\": \"tmp\", \"mountPath\": \"/tmp\", \"readOnly\": false},"
	    " {\"name\": \"copier\", \"mountPath\": \"/run/kmm/bin\", \"readOnly\": true}]");
	json_array_foreach (json_object_get(spec_of(pod), "volumes"), i, v)
		if (strcmp(json_string_value(json_object_get(v, "name")), "copier") == 0) {
			assert_json(json_object_get(v, "emptyDir"), "{}");
			copier_volumes++;
		}
	assert_int_equal(copier_volumes, 1);
	/* The worker never sees the copier. */
	assert_worker_mounts(pod, "{\"config /etc/kmm-worker\": true, \"lib-modules /lib/modules\":"
				  " true, \"lib-modules /host/lib/modules\": true,"
				  " \"tmp /tmp\": true}");

	/* Firmware: its tree too, as upstream's `cp -R` of its contents did; unloads extract the same. */
	assert_json(json_object_get(nth(fw, "initContainers", 1), "args"),
		    "[\"/opt/lib/modules/6.1.0\", \"/tmp/opt/lib/modules/6.1.0\", \"/fw\","
		    " \"/tmp/fw\"]");
}

/* ---- pull pods ---- */

static struct kmm_image_config *mic(const char *text)
{
	_cleanup_json_ json_t *j = json_loads(text, 0, NULL);
	struct kmm_image_config *c = NULL;

	assert_non_null(j);
	assert_int_equal(kmm_image_config_from_json(j, 0, &c, NULL), 0);
	return c;
}

static void test_pull_pod(void **state)
{
	_cleanup_(kmm_image_config_freep) struct kmm_image_config *c = mic(
	    "{\"apiVersion\": \"kmm.sigs.x-k8s.io/v1beta1\", \"kind\": \"ModuleImagesConfig\","
	    " \"metadata\": {\"name\": \"m\", \"namespace\": \"ns\", \"uid\": \"u1\"},"
	    " \"spec\": {\"imageRepoSecret\": {\"name\": \"pull\"}, \"imagePullPolicy\": "
	    "\"Always\", \"images\": [{\"image\": \"reg/img:1\", \"kernelVersion\": \"6.1\"}]}}");
	_cleanup_json_ json_t *pod = NULL;
	const json_t *ctr, *init;

	assert_int_equal(kmm_op_pull_pod(c, &c->images[0], "reg/kmm-worker:2", &pod, NULL), 0);
	assert_invariants(pod);
	ctr = nth(pod, "containers", 0);
	assert_json(sc_of(ctr), PULL_SC);
	/*
	 * No shell in the kmod image is needed: the copier, from the worker
	 * image, prints its version.
	 */
	assert_json(json_object_get(ctr, "command"),
		    "[\"/run/kmm/bin/kmm-worker-copy\", \"--version\"]");
	assert_json(
	    json_object_get(ctr, "volumeMounts"),
	    "[{\"name\": \"copier\", \"mountPath\": \"/run/kmm/bin\", \"readOnly\": true}]");
	init = nth(pod, "initContainers", 0);
	assert_string_equal(json_string_value(json_object_get(init, "name")), "install-copier");
	assert_string_equal(json_string_value(json_object_get(init, "image")), "reg/kmm-worker:2");
	assert_true(json_is_true(json_object_get(sc_of(init), "runAsNonRoot")));
	assert_json(json_object_get(spec_of(pod), "volumes"),
		    "[{\"name\": \"copier\", \"emptyDir\": {}}]");
	/* Upstream's shape otherwise. */
	assert_string_equal(json_string_value(json_object_get(ctr, "image")), "reg/img:1");
	assert_string_equal(json_string_value(json_object_get(ctr, "imagePullPolicy")), "Always");
	assert_json(json_object_get(spec_of(pod), "imagePullSecrets"), "[{\"name\": \"pull\"}]");
	assert_string_equal(json_string_value(json_object_get(
				json_object_get(json_object_get(pod, "metadata"), "labels"),
				KMM_LABEL_PULL_POD_TYPE)),
			    "until-success");
}

/* ---- build and sign pods ---- */

static const char mbsc_json[] =
    "{\"apiVersion\": \"kmm.sigs.x-k8s.io/v1beta1\", \"kind\": \"ModuleBuildSignConfig\","
    " \"metadata\": {\"name\": \"m\", \"namespace\": \"ns\", \"uid\": \"u1\"},"
    " \"spec\": {\"imageRepoSecret\": {\"name\": \"pull\"}, \"pushBuiltImage\": true,"
    "  \"images\": [{\"image\": \"reg/img:1\", \"kernelVersion\": \"6.1.0\","
    "   \"action\": \"BuildImage\", \"build\": {\"dockerfileConfigMap\": {\"name\": \"df\"}},"
    "   \"sign\": {\"keySecret\": {\"name\": \"k\"}, \"certSecret\": {\"name\": \"c\"},"
    "    \"filesToSign\": [\"/opt/lib/modules/6.1.0/a.ko\"]}}]}}";

static json_t *buildsign_pod(const char *action, enum kmm_builder builder)
{
	_cleanup_(kmm_image_config_freep) struct kmm_image_config *c = mic(mbsc_json);
	struct kmm_buildsign_params p = {
		.mbsc = c,
		.image = &c->images[0],
		.module_name = "m",
		.build_image = builder == KMM_BUILDER_BUILDAH ? "quay.io/buildah/stable:v1"
							      : "gcr.io/kaniko-project/executor:v1",
		.sign_image = "reg/kmm-sign:1",
		.builder = builder,
		.dockerfile = "FROM scratch\n",
		.key_digest = "aa",
		.cert_digest = "bb",
	};
	json_t *pod = NULL;

	free(c->images[0].action);
	c->images[0].action = strdup(action);
	assert_int_equal(kmm_buildsign_pod(&p, &pod, NULL), 0);
	assert_invariants(pod);
	assert_null(json_object_get(spec_of(pod), "initContainers"));
	assert_int_equal(json_array_size(json_object_get(spec_of(pod), "containers")), 1);
	return pod;
}

static void test_kaniko_pods(void **state)
{
	_cleanup_json_ json_t *build = buildsign_pod(KMM_ACTION_BUILD, KMM_BUILDER_KANIKO);
	_cleanup_json_ json_t *sign = buildsign_pod(KMM_ACTION_SIGN, KMM_BUILDER_KANIKO);

	assert_json(sc_of(nth(build, "containers", 0)), KANIKO_SC);
	assert_json(sc_of(nth(sign, "containers", 0)), KANIKO_SC);
}

static void test_buildah_pods(void **state)
{
	_cleanup_json_ json_t *build = buildsign_pod(KMM_ACTION_BUILD, KMM_BUILDER_BUILDAH);
	_cleanup_json_ json_t *sign = buildsign_pod(KMM_ACTION_SIGN, KMM_BUILDER_BUILDAH);

	assert_json(sc_of(nth(build, "containers", 0)), BUILDAH_SC);
	assert_json(sc_of(nth(sign, "containers", 0)), BUILDAH_SC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_worker_loader),
		cmocka_unit_test(test_worker_unloader_keeps_run_as_user),
		cmocka_unit_test(test_firmware_loader_not_privileged),
		cmocka_unit_test(test_signed_loader_verifies),
		cmocka_unit_test(test_worker_extracts_with_static_copier),
		cmocka_unit_test(test_pull_pod),
		cmocka_unit_test(test_kaniko_pods),
		cmocka_unit_test(test_buildah_pods),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
