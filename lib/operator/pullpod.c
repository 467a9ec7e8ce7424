/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pull pods (imageCheck: pullPod): a pod running in the kmod image so that
 * the node's runtime pulls it, in upstream's shape, locked down to the Pod
 * Security Standards' restricted level. Nothing in it needs a privilege: the
 * kubelet pulls the image (with imagePullSecrets, no token), and the program
 * only prints its version. Upstream runs `/bin/sh -c "exit 0"`, which fails
 * in a FROM-scratch image that exists; kmm runs the worker pod's static
 * copier instead, put there by the same install-copier init container.
 */
#include <errno.h>
#include <stdio.h>

#include "kmm/shared-json.h"
#include "kmm/operator-runtime.h"

/*
 * nobody: the kmod image's USER is often root, which runAsNonRoot alone
 * would refuse to start, failing a pull that succeeded.
 */
#define PULL_POD_UID 65534

static json_t *pull_security_context(void)
{
	return json_pack("{s:b, s:{s:[s]}, s:b, s:b, s:i, s:i, s:{s:s}}",
			 "allowPrivilegeEscalation", 0, "capabilities", "drop", "ALL",
			 "readOnlyRootFilesystem", 1, "runAsNonRoot", 1, "runAsUser", PULL_POD_UID,
			 "runAsGroup", PULL_POD_UID, "seccompProfile", "type", "RuntimeDefault");
}

int kmm_op_pull_pod(const struct kmm_image_config *mic, const struct kmm_module_image_spec *img,
		    const char *worker_image, json_t **ret_pod, struct kmm_error **err)
{
	const json_t *uid = json_object_get(mic->metadata, "uid");
	_cleanup_json_ json_t *pod = NULL;
	char prefix[300];
	json_t *spec, *c;

	if (!mic->name || !mic->namespace || !img->image)
		return kmm_error_make(err, EINVAL,
				      "pull pod without owner name, namespace or image");
	snprintf(prefix, sizeof(prefix), "%s-pull-pod-", mic->name);
	/* one-time-pull when a build or sign can supply the image, else until-success. */
	pod = json_pack(
	    "{s:s, s:s, s:{s:s, s:s, s:{s:s, s:s}, s:[{s:s, s:s, s:s, s:s, s:b, s:b}]},"
	    " s:{s:s, s:b, s:[o], s:[{s:s, s:s, s:[s, s], s:[{s:s, s:s, s:b}], s:o}],"
	    " s:[{s:s, s:{}}]}}",
	    "apiVersion", "v1", "kind", "Pod", "metadata", "generateName", prefix, "namespace",
	    mic->namespace, "labels", KMM_LABEL_IMAGE_OWNER, mic->name, KMM_LABEL_PULL_POD_TYPE,
	    img->build || img->sign ? "one-time-pull" : "until-success", "ownerReferences",
	    "apiVersion", KMM_API_VERSION, "kind", "ModuleImagesConfig", "name", mic->name, "uid",
	    json_is_string(uid) ? json_string_value(uid) : "", "controller", 1,
	    "blockOwnerDeletion", 1, "spec", "restartPolicy", "Never",
	    "automountServiceAccountToken", 0, "initContainers",
	    kmm_op_copier_container(worker_image), "containers", "name", "puller", "image",
	    img->image, "command", KMM_OP_COPIER, "--version", "volumeMounts", "name",
	    KMM_OP_COPIER_VOLUME, "mountPath", KMM_OP_COPIER_DIR, "readOnly", 1, "securityContext",
	    pull_security_context(), "volumes", "name", KMM_OP_COPIER_VOLUME, "emptyDir");
	if (!pod)
		return kmm_error_make(err, ENOMEM, "out of memory");
	spec = json_object_get(pod, "spec");
	/* install-copier runs as nobody already; restricted wants it said. */
	if (json_object_set_new(
		json_object_get(json_array_get(json_object_get(spec, "initContainers"), 0),
				"securityContext"),
		"runAsNonRoot", json_true()) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	c = json_array_get(json_object_get(spec, "containers"), 0);
	if ((mic->image_pull_policy &&
	     json_object_set_new(c, "imagePullPolicy", json_string(mic->image_pull_policy)) < 0) ||
	    (mic->image_repo_secret &&
	     json_object_set_new(spec, "imagePullSecrets",
				 json_pack("[{s:s}]", "name", mic->image_repo_secret)) < 0) ||
	    (mic->n_tolerations &&
	     json_object_set_new(spec, "tolerations",
				 kmm_tolerations_to_json(mic->tolerations, mic->n_tolerations)) <
		 0))
		return kmm_error_make(err, ENOMEM, "out of memory");
	*ret_pod = TAKE_PTR(pod);
	return 0;
}
