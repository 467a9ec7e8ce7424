/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to lib/registry and its unit tests: manifest parsing, credentials,
 * auth challenges and the layer extractor.
 */
#ifndef KMM_REGISTRY_INTERNAL_H
#define KMM_REGISTRY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kmm/shared-error.h"
#include "kmm/registry.h"

#define KMM_OCI_MANIFEST_MAX ((size_t)4 * 1024 * 1024)

#define KMM_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define KMM_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define KMM_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define KMM_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"

/* ---- digests (digest.c) ---- */

/* True if s is "sha256:" followed by exactly 64 lowercase hex digits. */
bool kmm_digest_valid(const char *s);

/* "sha256:<hex>" of data; NULL on ENOMEM. */
char *kmm_digest_of(const void *data, size_t len);

struct kmm_digester;
struct kmm_digester *kmm_digester_new(void);
void kmm_digester_update(struct kmm_digester *d, const void *p, size_t n);
/* "sha256:<hex>" of everything fed so far; NULL on ENOMEM. */
char *kmm_digester_final(struct kmm_digester *d);
void kmm_digester_free(struct kmm_digester *d);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_digester *, kmm_digester_free)

/* ---- manifests (manifest.c) ---- */

struct kmm_oci_descriptor {
	char *media_type;
	char *digest;
	int64_t size;
	char *os; /* platform, index entries only (may be NULL) */
	char *architecture;
	char *variant;
	char *ref_name; /* org.opencontainers.image.ref.name annotation */
};

struct kmm_oci_manifest {
	bool is_index;
	char *media_type;		  /* resolved media type */
	struct kmm_oci_descriptor config; /* manifests only */
	struct kmm_oci_descriptor *items; /* index: manifests[]; manifest: layers[] */
	size_t n_items;
};

/*
 * Parses an image manifest or index. content_type (may be NULL) is the HTTP
 * Content-Type; the document's own mediaType wins when present, and without
 * either the shape decides ("manifests" -> index, "layers" -> manifest).
 * Every digest is validated, sizes must be >= 0.
 */
int kmm_oci_manifest_parse(const char *data, size_t len, const char *content_type,
			   struct kmm_oci_manifest **ret, struct kmm_error **err);
void kmm_oci_manifest_free(struct kmm_oci_manifest *m);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_oci_manifest *, kmm_oci_manifest_free)

/* True for media types of manifests that may be fetched (index or image). */
bool kmm_oci_media_type_is_manifest(const char *mt);

/*
 * Picks the entry for os/architecture[/variant] from an index (variant NULL
 * matches any; entries without platform never match). -ENOENT with a list of
 * the platforms present when none matches.
 */
int kmm_oci_index_select(const struct kmm_oci_manifest *index, const char *os,
			 const char *architecture, const char *variant,
			 const struct kmm_oci_descriptor **ret, struct kmm_error **err);

/* True if mt is a layer type we can read (tar, tar+gzip, tar+zstd; OCI and Docker). */
bool kmm_oci_layer_media_type_ok(const char *mt);

/* The build's GOARCH-style architecture ("amd64", "arm64", ...). */
const char *kmm_oci_default_arch(void);

/* ---- credentials and challenges (auth.c) ---- */

/*
 * Looks up `registry` (host[:port]) in a .dockerconfigjson document. Keys may
 * carry a scheme and a path ("https://index.docker.io/v1/"); docker.io also
 * matches index.docker.io and registry-1.docker.io. Returns 1 and stores the
 * credentials, 0 when there is no entry, or -EINVAL for a malformed document.
 */
int kmm_docker_config_lookup(const char *json, size_t len, const char *registry, char **ret_user,
			     char **ret_password, struct kmm_error **err);

struct kmm_auth_challenge {
	char *scheme; /* "basic" or "bearer", lowercased */
	char *realm;
	char *service;
	char *scope;
};

/* Parses a WWW-Authenticate value (one challenge, quoted or token params). */
int kmm_auth_challenge_parse(const char *value, struct kmm_auth_challenge *ret,
			     struct kmm_error **err);
void kmm_auth_challenge_done(struct kmm_auth_challenge *c);

/* base64 helpers (OpenSSL); decode rejects malformed input with -EINVAL. */
char *kmm_base64_encode(const void *data, size_t len);
int kmm_base64_decode(const char *s, char **ret, size_t *ret_len);

/* ---- extraction (extract.c) ---- */

struct kmm_extractor;

/*
 * An extractor writes into the directory open as root_fd (borrowed; the
 * caller keeps it open until kmm_extractor_free). prefixes are image paths as
 * given to kmm_image_extract. limits must have every field set (see
 * kmm_extract_limits_fill). image is used in error messages.
 */
int kmm_extractor_new(int root_fd, const char *const *prefixes,
		      const struct kmm_extract_limits *limits, const char *image,
		      struct kmm_extractor **ret, struct kmm_error **err);
void kmm_extractor_free(struct kmm_extractor *x);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_extractor *, kmm_extractor_free)

/*
 * Applies one layer read from blob_fd (from its current offset to EOF). The
 * bytes are hashed as they are read and must match digest and size (size < 0:
 * not checked). Whiteouts apply to what earlier layers wrote.
 */
int kmm_extractor_apply_layer(struct kmm_extractor *x, int blob_fd, const char *digest,
			      int64_t size, struct kmm_error **err);

/* Replaces 0 fields of *l with the defaults. */
void kmm_extract_limits_fill(struct kmm_extract_limits *l);

/* Removes name under dir_fd recursively without following symlinks. */
int kmm_remove_tree_at(int dir_fd, const char *name);

#endif
