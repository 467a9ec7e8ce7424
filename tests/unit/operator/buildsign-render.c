/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test helper for tests/integration/sign/buildah-pods.t: renders the build
 * or sign pod of the first image entry of a ModuleBuildSignConfig (a JSON
 * file) and prints the part asked for, so the suite runs exactly what the
 * pod would run.
 *
 *   buildsign-render MBSC.json kaniko|buildah BUILD_IMAGE SIGN_IMAGE pod|script|dockerfile
 *
 * `dockerfile` is the sign pod's `dockerfile` annotation; `script` the
 * buildah container's shell script.
 */
#include <stdio.h>
#include <string.h>

#include "kmm/operator-buildsign.h"
#include "kmm/shared-json.h"

static const char *container_script(const json_t *pod)
{
	const json_t *c =
	    json_array_get(json_object_get(json_object_get(pod, "spec"), "containers"), 0);

	return json_string_value(json_array_get(json_object_get(c, "args"), 0));
}

int main(int argc, char **argv)
{
	_cleanup_(kmm_image_config_freep) struct kmm_image_config *mbsc = NULL;
	_cleanup_error_ struct kmm_error *err = NULL;
	_cleanup_json_ json_t *j = NULL, *pod = NULL;
	struct kmm_buildsign_params p;
	const char *out = NULL;

	if (argc != 6) {
		fputs("usage: buildsign-render MBSC.json kaniko|buildah BUILD_IMAGE SIGN_IMAGE "
		      "pod|script|dockerfile\n",
		      stderr);
		return 2;
	}
	j = json_load_file(argv[1], 0, NULL);
	if (!j || kmm_image_config_from_json(j, 0, &mbsc, &err) < 0 || mbsc->n_images == 0) {
		fprintf(stderr, "%s: not a ModuleBuildSignConfig with images: %s\n", argv[1],
			kmm_error_message(err));
		return 1;
	}
	p = (struct kmm_buildsign_params){
		.mbsc = mbsc,
		.image = &mbsc->images[0],
		.module_name = mbsc->name,
		.build_image = argv[3],
		.sign_image = argv[4],
		.builder =
		    strcmp(argv[2], "buildah") == 0 ? KMM_BUILDER_BUILDAH : KMM_BUILDER_KANIKO,
	};
	if (kmm_buildsign_pod(&p, &pod, &err) < 0) {
		fprintf(stderr, "render: %s\n", kmm_error_message(err));
		return 1;
	}
	if (strcmp(argv[5], "pod") == 0)
		return json_dumpf(pod, stdout, JSON_INDENT(2) | JSON_SORT_KEYS) == 0 ? 0 : 1;
	if (strcmp(argv[5], "script") == 0)
		out = container_script(pod);
	else if (strcmp(argv[5], "dockerfile") == 0)
		out = json_string_value(json_object_get(
		    json_object_get(json_object_get(pod, "metadata"), "annotations"),
		    KMM_ANN_DOCKERFILE));
	if (!out) {
		fprintf(stderr, "render: the pod has no %s\n", argv[5]);
		return 1;
	}
	fputs(out, stdout);
	return 0;
}
