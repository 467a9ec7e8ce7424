/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pure parts of hub and spoke (kmm/operator-hub.h): the kernel-versions
 * claim's value, digest pinning, the spoke Module and its ManifestWork.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/operator-hub.h"
#include "kmm/registry.h"
#include "kmm/shared-json.h"
#include "kmm/shared-strv.h"
#include "engine-internal.h"

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *kmm_hub_claim_value(const char *const *kernels, size_t n)
{
	_cleanup_free_ const char **v = calloc(n ? n : 1, sizeof(*v));
	size_t m = 0, len = 1;
	char *out, *p;

	if (!v)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (kernels[i] && *kernels[i])
			v[m++] = kernels[i];
	qsort(v, m, sizeof(*v), cmp_str);
	for (size_t i = 0; i < m; i++)
		len += strlen(v[i]) + 1;
	out = p = malloc(len);
	if (!out)
		return NULL;
	*p = '\0';
	for (size_t i = 0; i < m; i++) {
		if (i > 0 && strcmp(v[i], v[i - 1]) == 0)
			continue;
		if (p != out)
			*p++ = '\n';
		p = stpcpy(p, v[i]);
	}
	return out;
}

char **kmm_hub_claim_kernels(const char *value)
{
	char **v = calloc(1, sizeof(*v)); /* an empty strv, not NULL */
	const char *p = value ? value : "";

	while (v && *p) {
		size_t n = strcspn(p, "\n");

		if (n > 0 && kmm_strv_pushf(&v, "%.*s", (int)n, p) < 0) {
			kmm_strv_free(v);
			return NULL;
		}
		p += n;
		if (*p)
			p++;
	}
	return v;
}

const char *kmm_hub_cluster_claim(const json_t *cluster, const char *claim)
{
	const json_t *claims = json_object_get(json_object_get(cluster, "status"), "clusterClaims");
	size_t i;
	const json_t *c;

	json_array_foreach ((json_t *)claims, i, c) {
		const char *name = str(c, "name");

		if (name && strcmp(name, claim) == 0)
			return str(c, "value");
	}
	return NULL;
}

int kmm_hub_pin_image(const char *image, const char *digest, char **ret, struct kmm_error **err)
{
	_cleanup_(kmm_image_ref_freep) struct kmm_image_ref *ref = NULL;
	_cleanup_free_ char *tag = NULL;
	char *out;
	int r;

	r = kmm_image_ref_parse(image, &ref, err);
	if (r < 0)
		return r;
	if (ref->digest) {
		if (digest && strcmp(digest, ref->digest) != 0)
			return kmm_error_make(err, EINVAL, "image %s: the registry serves %s",
					      image, digest);
		out = strdup(image);
	} else {
		if (!digest || strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 71)
			return kmm_error_make(err, EINVAL, "image %s: no sha256 digest to pin",
					      image);
		/* Keep the name as written (no docker.io/library/ added), drop the tag. */
		tag = strdup(image);
		if (tag && ref->tag) {
			size_t n = strlen(tag), t = strlen(ref->tag);

			if (n > t + 1 && tag[n - t - 1] == ':' &&
			    strcmp(tag + n - t, ref->tag) == 0)
				tag[n - t - 1] = '\0';
		}
		out = NULL;
		if (tag && asprintf(&out, "%s@%s", tag, digest) < 0)
			out = NULL;
	}
	if (!out)
		return kmm_error_make(err, ENOMEM, "out of memory");
	*ret = out;
	return 0;
}

/* Drops build and sign from a container or mapping JSON object. */
static void drop_build_sign(json_t *o)
{
	json_object_del(o, "build");
	json_object_del(o, "sign");
}

static json_t *literal_mapping(const struct kmm_hub_kernel_image *k)
{
	json_t *m = json_pack("{s:s,s:s}", "literal", k->kernel, "containerImage", k->image);

	if (m && k->in_tree_modules_to_remove && *k->in_tree_modules_to_remove) {
		json_t *list = json_array();

		for (char *const *p = k->in_tree_modules_to_remove; list && *p; p++)
			json_array_append_new(list, json_string(*p));
		json_object_set_new(m, "inTreeModulesToRemove", list);
	}
	if (m && k->registry_tls &&
	    (k->registry_tls->insecure || k->registry_tls->insecure_skip_tls_verify)) {
		json_t *tls = json_object();

		if (tls && k->registry_tls->insecure)
			json_object_set_new(tls, "insecure", json_true());
		if (tls && k->registry_tls->insecure_skip_tls_verify)
			json_object_set_new(tls, "insecureSkipTLSVerify", json_true());
		json_object_set_new(m, "registryTLS", tls);
	}
	return m;
}

int kmm_hub_image_ready(const struct kmm_image_config *mic, const char *image)
{
	for (size_t i = 0; mic && image && i < mic->n_states; i++) {
		const char *status = mic->states[i].status;

		if (!mic->states[i].image || strcmp(mic->states[i].image, image) != 0)
			continue;
		if (status && strcmp(status, KMM_IMAGE_EXISTS) == 0)
			return 1;
		return status && strcmp(status, KMM_IMAGE_DOES_NOT_EXIST) == 0 ? -ENOENT : 0;
	}
	return 0;
}

json_t *kmm_hub_spoke_module(const struct kmm_mcm *mcm, const struct kmm_hub_kernel_image *k,
			     size_t n)
{
	_cleanup_json_ json_t *full = kmm_module_to_json(mcm->module);
	json_t *spec = json_object_get(full, "spec");
	json_t *container;

	if (!full || !spec)
		return NULL;
	container = json_object_get(json_object_get(spec, "moduleLoader"), "container");
	if (container) {
		json_t *mappings = json_array();

		if (!mappings)
			return NULL;
		drop_build_sign(container);
		/* The mappings' in-tree lists moved to each literal; the container's would mix. */
		json_object_del(container, "inTreeModulesToRemove");
		json_object_del(container, "inTreeModuleToRemove");
		for (size_t i = 0; i < n; i++)
			if (json_array_append_new(mappings, literal_mapping(&k[i])) < 0) {
				json_decref(mappings);
				return NULL;
			}
		if (json_object_set_new(container, "kernelMappings", mappings) < 0)
			return NULL;
	}
	return json_pack("{s:s,s:s,s:{s:s,s:s},s:O}", "apiVersion", KMM_API_VERSION, "kind",
			 "Module", "metadata", "name", mcm->name, "namespace", mcm->spoke_namespace,
			 "spec", spec);
}

json_t *kmm_hub_ready_condition(const struct kmm_hub_progress *p, int64_t generation,
				const json_t *old_conditions, const char *now)
{
	const char *reason = "Applied", *since = now, *status;
	char msg[1024];
	size_t i;
	const json_t *c;

	if (p->failed) {
		reason = "Failed";
		snprintf(msg, sizeof(msg), "%s", p->failed);
	} else if (p->waiting > 0) {
		reason = "ImagesNotReady";
		snprintf(msg, sizeof(msg),
			 "%lld cluster(s) wait for their images (checked, built and signed on the "
			 "hub)",
			 (long long)p->waiting);
	} else if (p->degraded > 0) {
		reason = "Degraded";
		snprintf(msg, sizeof(msg), "%lld of %lld ManifestWork(s) degraded",
			 (long long)p->degraded, (long long)p->desired);
	} else if (p->applied < p->desired) {
		reason = "NotApplied";
		snprintf(msg, sizeof(msg), "%lld of %lld ManifestWork(s) applied",
			 (long long)p->applied, (long long)p->desired);
	} else {
		snprintf(msg, sizeof(msg), "%lld ManifestWork(s) applied", (long long)p->desired);
	}
	status = strcmp(reason, "Applied") == 0 ? "True" : "False";
	json_array_foreach ((json_t *)old_conditions, i, c)
		if (strcmp(str(c, "type") ?: "", "Ready") == 0 &&
		    strcmp(str(c, "status") ?: "", status) == 0 && str(c, "lastTransitionTime"))
			since = str(c, "lastTransitionTime");
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "type", "Ready", "status", status, "reason",
			 reason, "message", msg, "lastTransitionTime", since, "observedGeneration",
			 (json_int_t)generation);
}

/* The Module status counters, as upstream's feedback rules name them. */
static json_t *feedback_paths(void)
{
	static const char *const parts[] = { "moduleLoader", "devicePlugin", "dra" };
	static const char *const counters[] = { "nodesMatchingSelectorNumber", "desiredNumber",
						"availableNumber" };
	json_t *paths = json_array();
	char name[96], path[96];

	for (size_t p = 0; paths && p < KMM_ARRAY_SIZE(parts); p++)
		for (size_t c = 0; c < KMM_ARRAY_SIZE(counters); c++) {
			snprintf(name, sizeof(name), "%s.%s", parts[p], counters[c]);
			snprintf(path, sizeof(path), ".status.%s.%s", parts[p], counters[c]);
			if (json_array_append_new(
				paths, json_pack("{s:s,s:s}", "name", name, "path", path)) < 0) {
				json_decref(paths);
				return NULL;
			}
		}
	return paths;
}

json_t *kmm_hub_manifest_work(const struct kmm_mcm *mcm, const char *cluster, const json_t *module)
{
	json_t *paths = feedback_paths();

	if (!paths)
		return NULL;
	return json_pack("{s:s,s:s,"
			 "s:{s:s,s:s,s:{s:s},s:[{s:s,s:s,s:s,s:s,s:b,s:b}]},"
			 "s:{s:{s:[O]},s:[{s:{s:s,s:s,s:s,s:s},s:[{s:s,s:o}]}]}}",
			 "apiVersion", KMM_OCM_WORK_API_VERSION, "kind", "ManifestWork",
			 /* metadata */
			 "metadata", "name", mcm->name, "namespace", cluster, "labels",
			 KMM_LABEL_MCM_NAME, mcm->name, "ownerReferences", "apiVersion",
			 KMM_HUB_API_VERSION, "kind", KMM_HUB_KIND_MCM, "name", mcm->name, "uid",
			 str(mcm->metadata, "uid") ?: "", "controller", 1, "blockOwnerDeletion", 1,
			 /* spec */
			 "spec", "workload", "manifests", module, "manifestConfigs",
			 "resourceIdentifier", "group", KMM_API_GROUP, "resource", "modules",
			 "name", mcm->name, "namespace", mcm->spoke_namespace, "feedbackRules",
			 "type", "JSONPaths", "jsonPaths", paths);
}
