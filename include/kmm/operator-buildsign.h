/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Build and sign pods: what the ModuleBuildSignConfig reconciler creates for
 * one spec.images[] entry (reference §3.4, §5).
 *
 * Everything here is pure: it renders JSON and text from its inputs and
 * never talks to the apiserver, so the reconciler decides when to create,
 * compare (last-hash) and delete pods.
 *
 * Two builders render the same pod identity (name, labels, annotations,
 * finalizers, owner, volumes); they differ in the container:
 *  - kaniko (upstream's, the default): container `kaniko` with kaniko's
 *    flags; the build context is /workspace.
 *  - buildah: container `buildah` running `buildah bud` then `buildah push`
 *    through /bin/sh -c, every value single-quoted.
 *
 * Ownership: inputs are borrowed; returned strings and JSON belong to the
 * caller (free(), json_decref()). Thread-safe.
 */
#ifndef KMM_BUILDSIGN_H
#define KMM_BUILDSIGN_H

#include <jansson.h>

#include "kmm/api.h"
#include "kmm/shared-error.h"

/* Labels, annotations and finalizers of build/sign pods (reference §3.14). */
#define KMM_LABEL_RESOURCE_TYPE "kmm.node.kubernetes.io/resource-type"
#define KMM_LABEL_TARGET_KERNEL "kmm.node.kubernetes.io/target-kernel"
#define KMM_ANN_LAST_HASH "kmm.node.kubernetes.io/last-hash"
#define KMM_ANN_DOCKERFILE "dockerfile"
#define KMM_FINALIZER_GC_DELAY "kmm.node.kubernetes.io/gc-delay"
#define KMM_FINALIZER_JOB_EVENT "kmm.node.kubernetes.io/job-event-finalizer"
/* MBSC spec.images[].action values, also the resource-type label values. */
#define KMM_ACTION_BUILD "BuildImage"
#define KMM_ACTION_SIGN "SignImage"

/* Where the sign pod mounts the signing key and certificate. */
#define KMM_SIGN_KEY_PATH "/run/secrets/key/key.pem"
#define KMM_SIGN_CERT_PATH "/run/secrets/cert/cert.pem"

enum kmm_builder {
	KMM_BUILDER_KANIKO = 0,
	KMM_BUILDER_BUILDAH = 1
};

struct kmm_buildsign_params {
	/* owner: name, namespace, metadata.uid, imageRepoSecret, pushBuiltImage, tolerations */
	const struct kmm_image_config *mbsc;
	/* one spec.images[] entry; image->action is "BuildImage" or "SignImage" */
	const struct kmm_module_image_spec *image;
	const char *module_name; /* MOD_NAME build arg (== MBSC name upstream) */
	/* RELATED_IMAGE_BUILD (kaniko image, or the buildah image with builder buildah) */
	const char *build_image;
	const char *sign_image; /* RELATED_IMAGE_SIGN (kmm-sign image, FROM scratch, no shell) */
	enum kmm_builder builder;
	const char
	    *dockerfile; /* build: the ConfigMap's `dockerfile` text (hashed into last-hash) */
	/* sign: hex sha256 of the key/cert Secret data (hashed into last-hash); may be NULL for build */
	const char *key_digest, *cert_digest;
};

/*
 * DNS-safe kernel: lowercase, '_' and '.' -> '-', other invalid chars dropped,
 * trimmed of '-', max 63. Heap string ("" for NULL or a kernel with nothing
 * usable), NULL on ENOMEM.
 */
char *kmm_buildsign_dns_kernel(const char *kernel);

/*
 * "<mbsc>-build-<dns kernel>" or "<mbsc>-sign-<dns kernel>" (action is
 * KMM_ACTION_BUILD or KMM_ACTION_SIGN), capped to 253 chars. Heap string, NULL
 * on ENOMEM or an unknown action.
 */
char *kmm_buildsign_pod_name(const char *mbsc, const char *action, const char *kernel);

/*
 * The whole Pod object (JSON, ready to POST), including the annotation
 * KMM_ANN_LAST_HASH: the hex SHA-256 of the canonical (sorted keys, compact)
 * JSON of the pod without that annotation, followed by the Dockerfile text and,
 * for a sign pod, the key and cert digests. It is stable across runs and
 * changes exactly when one of those inputs does. Compare it with
 * kmm_op_annotation(existing_pod, KMM_ANN_LAST_HASH).
 *
 * Fails with -EINVAL when the entry cannot be rendered (no build/sign section
 * for its action, no Dockerfile ConfigMap, no key/cert Secret, no images).
 */
int kmm_buildsign_pod(const struct kmm_buildsign_params *p, json_t **ret_pod,
		      struct kmm_error **err);

/*
 * The Dockerfile the sign pod runs (also stored in the pod's `dockerfile`
 * annotation). Heap string in *ret.
 */
int kmm_buildsign_sign_dockerfile(const struct kmm_buildsign_params *p, char **ret,
				  struct kmm_error **err);

/*
 * `s` single-quoted for a POSIX shell: 'it'\''s'. Heap string, NULL on ENOMEM.
 * Exposed for the buildah scripts' tests.
 */
char *kmm_shell_quote(const char *s);

#endif
