/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test helper for tests/integration/operator/podsecurity.t: prints one pod of
 * each kind kmm creates, rendered by the operator's own functions from fixed
 * inputs, for the suite to submit to a kube-apiserver's PodSecurity
 * admission.
 *
 *   pod-render worker-load|worker-load-firmware|worker-unload|pull|
 *              kaniko-build|kaniko-sign|buildah-build|buildah-sign
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/operator-buildsign.h"
#include "kmm/shared-json.h"
#include "kmm/operator-runtime.h"

static const char module_config[] =
    "{\"kernelVersion\":\"6.1.0\",\"containerImage\":\"registry.example/kmod:6.1.0\","
    "\"modprobe\":{\"moduleName\":\"kmm_ci\"}}";
static const char firmware_config[] =
    "{\"kernelVersion\":\"6.1.0\",\"containerImage\":\"registry.example/kmod:6.1.0\","
    "\"modprobe\":{\"moduleName\":\"kmm_ci\",\"firmwarePath\":\"/firmware\"}}";
static const char image_config[] =
    "{\"apiVersion\": \"kmm.sigs.x-k8s.io/v1beta1\", \"kind\": \"ModuleBuildSignConfig\","
    " \"metadata\": {\"name\": \"kmm-ci\", \"namespace\": \"ns\", \"uid\": \"u1\"},"
    " \"spec\": {\"imageRepoSecret\": {\"name\": \"pull\"}, \"pushBuiltImage\": true,"
    "  \"images\": [{\"image\": \"registry.example/kmod:6.1.0\", \"kernelVersion\": \"6.1.0\","
    "   \"action\": \"BuildImage\", \"build\": {\"dockerfileConfigMap\": {\"name\": \"df\"}},"
    "   \"sign\": {\"keySecret\": {\"name\": \"k\"}, \"certSecret\": {\"name\": \"c\"},"
    "    \"filesToSign\": [\"/opt/lib/modules/6.1.0/kmm_ci.ko\"]}}]}}";

static int worker(const char *cfg_text, enum kmm_op_worker_action action, json_t **ret,
		  struct kmm_error **err)
{
	_cleanup_json_ json_t *j = json_loads(cfg_text, 0, NULL);
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *c = NULL;
	struct kmm_operator_config op;
	int r;

	if (!j || kmm_module_config_from_json(j, "", 0, &c, err) < 0 ||
	    kmm_operator_config_init(&op) < 0)
		return -1;
	free(op.worker_image);
	op.worker_image = strdup("registry.example/kmm-worker:1");
	r = kmm_op_worker_pod(&(struct kmm_op_worker_params){ .action = action,
							      .node = "node-1",
							      .nmc_uid = "u1",
							      .module_name = "kmm-ci",
							      .module_namespace = "ns",
							      .config = c,
							      .op = &op },
			      ret, err);
	kmm_operator_config_free(&op);
	return r;
}

static int image_pod(const char *kind, json_t **ret, struct kmm_error **err)
{
	_cleanup_json_ json_t *j = json_loads(image_config, 0, NULL);
	_cleanup_(kmm_image_config_freep) struct kmm_image_config *c = NULL;
	bool buildah = strncmp(kind, "buildah-", 8) == 0;

	if (!j || kmm_image_config_from_json(j, 0, &c, err) < 0)
		return -1;
	if (strcmp(kind, "pull") == 0)
		return kmm_op_pull_pod(c, &c->images[0], "registry.example/kmm-worker:1", ret, err);
	free(c->images[0].action);
	c->images[0].action = strdup(strstr(kind, "-sign") ? KMM_ACTION_SIGN : KMM_ACTION_BUILD);
	return kmm_buildsign_pod(
	    &(struct kmm_buildsign_params){
		.mbsc = c,
		.image = &c->images[0],
		.module_name = "kmm-ci",
		.build_image =
		    buildah ? "quay.io/buildah/stable:v1" : "gcr.io/kaniko-project/executor:v1",
		.sign_image = "registry.example/kmm-sign:1",
		.builder = buildah ? KMM_BUILDER_BUILDAH : KMM_BUILDER_KANIKO,
		.dockerfile = "FROM scratch\n",
	    },
	    ret, err);
}

int main(int argc, char **argv)
{
	_cleanup_error_ struct kmm_error *err = NULL;
	_cleanup_json_ json_t *pod = NULL;
	const char *kind = argc == 2 ? argv[1] : "";
	int r;

	if (strcmp(kind, "worker-load") == 0)
		r = worker(module_config, KMM_OP_LOAD, &pod, &err);
	else if (strcmp(kind, "worker-load-firmware") == 0)
		r = worker(firmware_config, KMM_OP_LOAD, &pod, &err);
	else if (strcmp(kind, "worker-unload") == 0)
		r = worker(module_config, KMM_OP_UNLOAD, &pod, &err);
	else if (strcmp(kind, "pull") == 0 || strcmp(kind, "kaniko-build") == 0 ||
		 strcmp(kind, "kaniko-sign") == 0 || strcmp(kind, "buildah-build") == 0 ||
		 strcmp(kind, "buildah-sign") == 0)
		r = image_pod(kind, &pod, &err);
	else {
		fputs("usage: pod-render worker-load|worker-load-firmware|worker-unload|pull|"
		      "kaniko-build|kaniko-sign|buildah-build|buildah-sign\n",
		      stderr);
		return 2;
	}
	if (r < 0 || !pod) {
		fprintf(stderr, "pod-render %s: %s\n", kind,
			err ? kmm_error_message(err) : "out of memory");
		return 1;
	}
	return json_dumpf(pod, stdout, JSON_INDENT(2) | JSON_SORT_KEYS) == 0 ? 0 : 1;
}
