/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OCI image index / manifest and their Docker v2 equivalents, parsed with
 * jansson. Only what kmm needs is kept: descriptors with media type, digest,
 * size, platform and the ref.name annotation.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kmm/shared-buf.h"
#include "lib/registry/registry-internal.h"

#define MANIFEST_ITEMS_MAX 4096

static void descriptor_done(struct kmm_oci_descriptor *d)
{
	free(d->media_type);
	free(d->digest);
	free(d->os);
	free(d->architecture);
	free(d->variant);
	free(d->ref_name);
	*d = (struct kmm_oci_descriptor){ 0 };
}

void kmm_oci_manifest_free(struct kmm_oci_manifest *m)
{
	if (!m)
		return;
	free(m->media_type);
	descriptor_done(&m->config);
	for (size_t i = 0; i < m->n_items; i++)
		descriptor_done(&m->items[i]);
	free(m->items);
	free(m);
}

bool kmm_oci_media_type_is_manifest(const char *mt)
{
	return mt &&
	       (strcmp(mt, KMM_MT_OCI_INDEX) == 0 || strcmp(mt, KMM_MT_OCI_MANIFEST) == 0 ||
		strcmp(mt, KMM_MT_DOCKER_LIST) == 0 || strcmp(mt, KMM_MT_DOCKER_MANIFEST) == 0);
}

static bool media_type_is_index(const char *mt)
{
	return strcmp(mt, KMM_MT_OCI_INDEX) == 0 || strcmp(mt, KMM_MT_DOCKER_LIST) == 0;
}

bool kmm_oci_layer_media_type_ok(const char *mt)
{
	static const char *const ok[] = {
		"application/vnd.oci.image.layer.v1.tar",
		"application/vnd.oci.image.layer.v1.tar+gzip",
		"application/vnd.oci.image.layer.v1.tar+zstd",
		"application/vnd.docker.image.rootfs.diff.tar.gzip",
		"application/vnd.docker.image.rootfs.diff.tar",
	};

	for (size_t i = 0; mt && i < KMM_ARRAY_SIZE(ok); i++) {
		if (strcmp(mt, ok[i]) == 0)
			return true;
	}
	return false;
}

const char *kmm_oci_default_arch(void)
{
#if defined(__x86_64__)
	return "amd64";
#elif defined(__aarch64__)
	return "arm64";
#elif defined(__i386__)
	return "386";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return "ppc64le";
#elif defined(__s390x__)
	return "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
	return "riscv64";
#elif defined(__arm__)
	return "arm";
#else
	return "unknown";
#endif
}

/* Copies an optional string member; -EINVAL if present but not a string. */
static int opt_string(json_t *obj, const char *key, char **ret)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -EINVAL;
	*ret = strndup(json_string_value(v), json_string_length(v));
	if (!*ret)
		return -ENOMEM;
	if (strlen(*ret) != json_string_length(v)) /* embedded NUL */
		return -EINVAL;
	return 0;
}

static int parse_descriptor(json_t *j, const char *what, struct kmm_oci_descriptor *d,
			    struct kmm_error **err)
{
	json_t *size, *platform, *annotations;
	int r;

	if (!json_is_object(j))
		return kmm_error_make(err, EINVAL, "%s: not an object", what);
	if ((r = opt_string(j, "mediaType", &d->media_type)) < 0 ||
	    (r = opt_string(j, "digest", &d->digest)) < 0)
		return r == -ENOMEM
			   ? r
			   : kmm_error_make(err, EINVAL, "%s: mediaType and digest must be strings",
					    what);
	if (!d->digest)
		return kmm_error_make(err, EINVAL, "%s: no digest", what);
	if (!kmm_digest_valid(d->digest))
		return kmm_error_make(
		    err, EINVAL,
		    "%s: unsupported digest (only sha256 with 64 lowercase hex digits)", what);
	size = json_object_get(j, "size");
	if (!json_is_integer(size) || json_integer_value(size) < 0)
		return kmm_error_make(err, EINVAL, "%s %s: size must be a non-negative integer",
				      what, d->digest);
	d->size = json_integer_value(size);

	platform = json_object_get(j, "platform");
	if (platform) {
		if (!json_is_object(platform))
			return kmm_error_make(err, EINVAL, "%s %s: platform is not an object", what,
					      d->digest);
		if ((r = opt_string(platform, "os", &d->os)) < 0 ||
		    (r = opt_string(platform, "architecture", &d->architecture)) < 0 ||
		    (r = opt_string(platform, "variant", &d->variant)) < 0)
			return r == -ENOMEM ? r
					    : kmm_error_make(err, EINVAL, "%s %s: bad platform",
							     what, d->digest);
	}
	annotations = json_object_get(j, "annotations");
	if (json_is_object(annotations)) {
		r = opt_string(annotations, "org.opencontainers.image.ref.name", &d->ref_name);
		if (r < 0)
			return r == -ENOMEM
				   ? r
				   : kmm_error_make(err, EINVAL, "%s %s: bad ref.name annotation",
						    what, d->digest);
	}
	return 0;
}

int kmm_oci_manifest_parse(const char *data, size_t len, const char *content_type,
			   struct kmm_oci_manifest **ret, struct kmm_error **err)
{
	_cleanup_(json_decrefp) json_t *root = NULL;
	_cleanup_(kmm_oci_manifest_freep) struct kmm_oci_manifest *m = NULL;
	_cleanup_free_ char *mt = NULL;
	json_error_t jerr;
	json_t *list, *sv;
	const char *list_key;
	int r;

	if (len > KMM_OCI_MANIFEST_MAX)
		return kmm_error_make(err, EFBIG, "manifest larger than %zu bytes",
				      KMM_OCI_MANIFEST_MAX);
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return kmm_error_make(err, EINVAL, "manifest is not valid JSON: %s at line %d",
				      jerr.text, jerr.line);
	if (!json_is_object(root))
		return kmm_error_make(err, EINVAL, "manifest is not a JSON object");
	sv = json_object_get(root, "schemaVersion");
	if (!json_is_integer(sv) || json_integer_value(sv) != 2)
		return kmm_error_make(
		    err, EINVAL,
		    "manifest schemaVersion is not 2 (Docker schema 1 is not supported)");

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	if ((r = opt_string(root, "mediaType", &mt)) < 0)
		return r == -ENOMEM
			   ? r
			   : kmm_error_make(err, EINVAL, "manifest mediaType is not a string");
	if (!mt && content_type) {
		/* "type/subtype; charset=..." -> "type/subtype" */
		mt = strndup(content_type, strcspn(content_type, "; \t"));
		if (!mt)
			return -ENOMEM;
		if (!kmm_oci_media_type_is_manifest(mt))
			mt = kmm_free_and_null(mt);
	}
	if (!mt) {
		bool has_manifests = json_object_get(root, "manifests") != NULL;
		bool has_layers = json_object_get(root, "layers") != NULL;

		if (has_manifests == has_layers)
			return kmm_error_make(err, EINVAL,
					      "manifest has no mediaType and is neither an index "
					      "nor an image manifest");
		mt = strdup(has_manifests ? KMM_MT_OCI_INDEX : KMM_MT_OCI_MANIFEST);
		if (!mt)
			return -ENOMEM;
	}
	if (!kmm_oci_media_type_is_manifest(mt))
		return kmm_error_make(err, EINVAL, "unsupported manifest media type '%s'", mt);
	m->is_index = media_type_is_index(mt);
	m->media_type = TAKE_PTR(mt);

	list_key = m->is_index ? "manifests" : "layers";
	list = json_object_get(root, list_key);
	if (!json_is_array(list))
		return kmm_error_make(err, EINVAL, "manifest (%s): '%s' is not an array",
				      m->media_type, list_key);
	if (json_array_size(list) > MANIFEST_ITEMS_MAX)
		return kmm_error_make(err, E2BIG, "manifest: more than %d %s", MANIFEST_ITEMS_MAX,
				      list_key);
	if (!m->is_index) {
		r = parse_descriptor(json_object_get(root, "config"), "manifest config", &m->config,
				     err);
		if (r < 0)
			return r;
	}
	m->items = calloc(json_array_size(list) + 1, sizeof(*m->items));
	if (!m->items)
		return -ENOMEM;
	for (size_t i = 0; i < json_array_size(list); i++) {
		char what[64];

		snprintf(what, sizeof(what), "manifest %s[%zu]", list_key, i);
		m->n_items = i + 1;
		r = parse_descriptor(json_array_get(list, i), what, &m->items[i], err);
		if (r < 0)
			return r;
		if (!m->items[i].media_type && m->is_index)
			return kmm_error_make(err, EINVAL, "%s: no mediaType", what);
	}
	*ret = TAKE_PTR(m);
	return 0;
}

int kmm_oci_index_select(const struct kmm_oci_manifest *index, const char *os,
			 const char *architecture, const char *variant,
			 const struct kmm_oci_descriptor **ret, struct kmm_error **err)
{
	_cleanup_buf_ struct kmm_buf seen;

	kmm_buf_init(&seen, 4096);
	for (size_t i = 0; i < index->n_items; i++) {
		const struct kmm_oci_descriptor *d = &index->items[i];

		if (!d->os || !d->architecture || !kmm_oci_media_type_is_manifest(d->media_type))
			continue;
		if (strcmp(d->os, os) == 0 && strcmp(d->architecture, architecture) == 0 &&
		    (!variant || (d->variant && strcmp(d->variant, variant) == 0))) {
			*ret = d;
			return 0;
		}
		(void)kmm_buf_printf(&seen, "%s%s/%s%s%s", seen.len ? ", " : "", d->os,
				     d->architecture, d->variant ? "/" : "",
				     d->variant ? d->variant : "");
	}
	return kmm_error_make(err, ENOENT, "image index has no manifest for %s/%s%s%s (has: %s)",
			      os, architecture, variant ? "/" : "", variant ? variant : "",
			      seen.len ? kmm_buf_str(&seen) : "none");
}
