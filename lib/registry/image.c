/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kmm_image_extract(): resolve the image (registry or OCI layout) to one
 * platform manifest, then flatten its layers into a staging directory next
 * to the target and rename it into place.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-fileio.h"
#include "kmm/shared-log.h"
#include "lib/registry/registry-client.h"
#include "lib/registry/registry-internal.h"

#define INDEX_DEPTH_MAX 4

struct source {
	const char *image;	   /* as given, for messages */
	struct kmm_registry *r;	   /* may be NULL for layouts */
	struct kmm_image_ref *ref; /* registry images */
	int layout_fd;		   /* layouts: the directory, else -1 */
	char *layout_name;	   /* layouts: ref.name wanted, or NULL */
};

static void source_done(struct source *s)
{
	kmm_image_ref_free(s->ref);
	if (s->layout_fd >= 0)
		close(s->layout_fd);
	free(s->layout_name);
}

static int source_open(struct kmm_registry *r, const char *image, struct source *s,
		       struct kmm_error **err)
{
	*s = (struct source){ .image = image, .r = r, .layout_fd = -1 };
	if (strncmp(image, "oci:", 4) == 0) {
		_cleanup_free_ char *dir = strdup(image + 4);
		char *colon;

		if (!dir)
			return -ENOMEM;
		colon = strrchr(dir, ':');
		if (colon && colon[1] && !strchr(colon, '/')) {
			*colon = '\0';
			s->layout_name = strdup(colon + 1);
			if (!s->layout_name)
				return -ENOMEM;
		}
		if (!*dir)
			return kmm_error_make(err, EINVAL, "image %s: no layout directory", image);
		s->layout_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (s->layout_fd < 0)
			return kmm_error_make_errno(err, errno, "image %s: open layout %s", image,
						    dir);
		return 0;
	}
	if (!r)
		return kmm_error_make(err, EINVAL,
				      "image %s: a registry client is needed for registry images",
				      image);
	return kmm_image_ref_parse(image, &s->ref, err);
}

/* Opens blobs/<alg>/<hex> in the layout without following symlinks. */
static int layout_open_blob(struct source *s, const char *digest, struct kmm_error **err)
{
	_cleanup_close_ int blobs = -1, alg = -1;
	int fd;

	blobs = openat(s->layout_fd, "blobs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (blobs >= 0)
		alg = openat(blobs, "sha256", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (alg >= 0)
		fd = openat(alg, digest + 7, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	else
		fd = -1;
	if (fd < 0)
		return kmm_error_make_errno(err, errno, "image %s: blob %s", s->image, digest);
	return fd;
}

/* Fetches a manifest: by descriptor (digest/size checked) or, with d == NULL, the image's root. */
static int get_manifest(struct source *s, const struct kmm_oci_descriptor *d, struct kmm_buf *ret,
			char **ret_ct, char **ret_digest, struct kmm_error **err)
{
	_cleanup_free_ char *got = NULL;
	const char *want;
	int r;

	/* Layouts are always read by descriptor; registries need their reference. */
	if ((s->layout_fd >= 0 && !d) || (s->layout_fd < 0 && !s->ref) || (d && !d->digest))
		return -EINVAL;
	want = d ? d->digest : s->ref->digest;
	if (s->layout_fd >= 0) {
		_cleanup_close_ int fd = -1;

		fd = layout_open_blob(s, d->digest, err);
		if (fd < 0)
			return fd;
		r = kmm_read_fd(fd, KMM_OCI_MANIFEST_MAX, ret);
		if (r < 0)
			return kmm_error_make_errno(err, -r, "image %s: manifest %s", s->image,
						    d->digest);
		*ret_ct = NULL;
	} else {
		struct kmm_response resp;

		kmm_response_init(&resp, KMM_OCI_MANIFEST_MAX, -1, 0);
		r = kmm_registry_request(s->r, s->ref, "GET", "manifests",
					 want ? want : s->ref->tag, &resp, err);
		if (r == 0 && resp.status != 200)
			r = kmm_registry_http_fail(&resp, "GET manifest", err);
		if (r == 0 && !want && resp.digest && kmm_digest_valid(resp.digest))
			want = resp.digest; /* checked below; resp lives until then */
		if (r < 0) {
			kmm_response_done(&resp);
			return kmm_error_wrap(err, "image %s", s->image);
		}
		*ret = resp.body;
		kmm_buf_init(&resp.body, 0);
		got = kmm_digest_of(ret->data ? ret->data : "", ret->len);
		if (!got) {
			kmm_response_done(&resp);
			return -ENOMEM;
		}
		if (want && strcmp(want, got) != 0) {
			r = kmm_error_make(
			    err, EBADMSG,
			    "image %s: manifest digest mismatch: expected %s, content is %s",
			    s->image, want, got);
			kmm_response_done(&resp);
			return r;
		}
		*ret_ct = TAKE_PTR(resp.content_type);
		kmm_response_done(&resp);
		*ret_digest = TAKE_PTR(got);
		if (d && (int64_t)ret->len != d->size)
			return kmm_error_make(
			    err, EBADMSG,
			    "image %s: manifest %s is %zu bytes, descriptor says %" PRId64,
			    s->image, d->digest, ret->len, d->size);
		return 0;
	}
	got = kmm_digest_of(ret->data ? ret->data : "", ret->len);
	if (!got)
		return -ENOMEM;
	if (strcmp(got, d->digest) != 0)
		return kmm_error_make(
		    err, EBADMSG, "image %s: manifest digest mismatch: expected %s, content is %s",
		    s->image, d->digest, got);
	if ((int64_t)ret->len != d->size)
		return kmm_error_make(
		    err, EBADMSG, "image %s: manifest %s is %zu bytes, descriptor says %" PRId64,
		    s->image, d->digest, ret->len, d->size);
	*ret_digest = TAKE_PTR(got);
	return 0;
}

static int copy_descriptor(const struct kmm_oci_descriptor *d, struct kmm_oci_descriptor *out)
{
	*out = (struct kmm_oci_descriptor){ .size = d->size };
	out->digest = strdup(d->digest);
	out->media_type = d->media_type ? strdup(d->media_type) : NULL;
	if (!out->digest || (d->media_type && !out->media_type)) {
		free(out->digest);
		free(out->media_type);
		return -ENOMEM;
	}
	return 0;
}

static void descriptor_free_fields(struct kmm_oci_descriptor *d)
{
	free(d->digest);
	free(d->media_type);
}

/* The layout's index.json entry to start from. */
static int layout_root(struct source *s, struct kmm_oci_descriptor *ret, struct kmm_error **err)
{
	_cleanup_(kmm_oci_manifest_freep) struct kmm_oci_manifest *index = NULL;
	_cleanup_buf_ struct kmm_buf b;
	_cleanup_close_ int fd = -1;
	const struct kmm_oci_descriptor *pick = NULL;
	int r;

	kmm_buf_init(&b, KMM_OCI_MANIFEST_MAX);
	fd = openat(s->layout_fd, "index.json", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return kmm_error_make_errno(err, errno, "image %s: index.json", s->image);
	r = kmm_read_fd(fd, KMM_OCI_MANIFEST_MAX, &b);
	if (r < 0)
		return kmm_error_make_errno(err, -r, "image %s: index.json", s->image);
	r = kmm_oci_manifest_parse(b.data ? b.data : "", b.len, KMM_MT_OCI_INDEX, &index, err);
	if (r < 0)
		return kmm_error_wrap(err, "image %s: index.json", s->image);
	if (!index->is_index)
		return kmm_error_make(err, EINVAL, "image %s: index.json is not an image index",
				      s->image);
	for (size_t i = 0; i < index->n_items; i++) {
		const struct kmm_oci_descriptor *d = &index->items[i];

		if (s->layout_name && (!d->ref_name || strcmp(d->ref_name, s->layout_name) != 0))
			continue;
		if (pick)
			return kmm_error_make(
			    err, EINVAL, "image %s: index.json has several entries%s%s; name one",
			    s->image, s->layout_name ? " named " : "",
			    s->layout_name ? s->layout_name : "");
		pick = d;
	}
	if (!pick)
		return kmm_error_make(err, ENOENT, "image %s: index.json has no entry%s%s",
				      s->image, s->layout_name ? " named " : "",
				      s->layout_name ? s->layout_name : "");
	return copy_descriptor(pick, ret);
}

/* Resolves indexes down to one image manifest. */
static int resolve(struct source *s, struct kmm_oci_manifest **ret, char **ret_digest,
		   struct kmm_error **err)
{
	struct kmm_oci_descriptor cur = { 0 };
	bool have_desc = false;
	const char *os = "linux", *arch = kmm_oci_default_arch(), *variant = NULL;
	int r = 0;

	if (s->r)
		os = kmm_registry_platform(s->r, &arch, &variant);
	if (s->layout_fd >= 0) {
		r = layout_root(s, &cur, err);
		if (r < 0)
			return r;
		have_desc = true;
	}
	for (int depth = 0;; depth++) {
		_cleanup_(kmm_oci_manifest_freep) struct kmm_oci_manifest *m = NULL;
		_cleanup_buf_ struct kmm_buf body;
		_cleanup_free_ char *ct = NULL, *digest = NULL;
		const struct kmm_oci_descriptor *pick;

		kmm_buf_init(&body, 0);
		if (depth >= INDEX_DEPTH_MAX) {
			r = kmm_error_make(err, ELOOP, "image %s: indexes nested deeper than %d",
					   s->image, INDEX_DEPTH_MAX);
			break;
		}
		r = get_manifest(s, have_desc ? &cur : NULL, &body, &ct, &digest, err);
		if (r < 0)
			break;
		r = kmm_oci_manifest_parse(body.data ? body.data : "", body.len,
					   ct ? ct : cur.media_type, &m, err);
		if (r < 0) {
			kmm_error_wrap(err, "image %s: manifest %s", s->image, digest);
			break;
		}
		if (!m->is_index) {
			*ret = TAKE_PTR(m);
			*ret_digest = TAKE_PTR(digest);
			break;
		}
		r = kmm_oci_index_select(m, os, arch, variant, &pick, err);
		if (r < 0) {
			kmm_error_wrap(err, "image %s", s->image);
			break;
		}
		descriptor_free_fields(&cur);
		r = copy_descriptor(pick, &cur);
		if (r < 0)
			break;
		have_desc = true;
	}
	descriptor_free_fields(&cur);
	return r;
}

/* An unlinked temporary file in dir_fd for a downloaded blob. */
static int temp_blob_file(int dir_fd)
{
	int fd = openat(dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != ENOENT))
		return fd < 0 ? -errno : fd;
	for (int i = 0; i < 100; i++) {
		char name[64];

		snprintf(name, sizeof(name), ".kmm-blob-%d-%d", getpid(), i);
		fd = openat(dir_fd, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd >= 0) {
			unlinkat(dir_fd, name, 0);
			return fd;
		}
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

/* Downloads a layer into a temporary file, verifies it, and rewinds. */
static int download_blob(struct source *s, const struct kmm_oci_descriptor *d, int tmp_dir_fd,
			 uint64_t max, struct kmm_error **err)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *got = NULL;
	struct kmm_response resp;
	int r;

	fd = temp_blob_file(tmp_dir_fd);
	if (fd < 0)
		return kmm_error_make_errno(err, -fd, "image %s: temporary file for layer %s",
					    s->image, d->digest);
	kmm_response_init(&resp, 64 * 1024, fd, max);
	resp.dg = kmm_digester_new();
	if (!resp.dg) {
		kmm_response_done(&resp);
		return -ENOMEM;
	}
	r = kmm_registry_request(s->r, s->ref, "GET", "blobs", d->digest, &resp, err);
	if (r == 0 && resp.status != 200)
		r = kmm_registry_http_fail(&resp, "GET blob", err);
	if (r < 0) {
		kmm_response_done(&resp);
		return kmm_error_wrap(err, "image %s: layer %s", s->image, d->digest);
	}
	got = kmm_digester_final(resp.dg);
	kmm_response_done(&resp);
	if (!got)
		return -ENOMEM;
	if (resp.written != (uint64_t)d->size)
		return kmm_error_make(err, EBADMSG,
				      "image %s: layer %s: blob is %" PRIu64
				      " bytes, its descriptor says %" PRId64,
				      s->image, d->digest, resp.written, d->size);
	if (strcmp(got, d->digest) != 0)
		return kmm_error_make(err, EBADMSG,
				      "image %s: layer %s: digest mismatch: content is %s",
				      s->image, d->digest, got);
	if (lseek(fd, 0, SEEK_SET) < 0)
		return kmm_error_make_errno(err, errno, "image %s: layer %s", s->image, d->digest);
	return TAKE_FD(fd);
}

/* Checks that target is absent or an empty directory. */
static int check_target(const char *target, struct kmm_error **err)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	bool empty = true;
	int fd;

	if (lstat(target, &st) < 0)
		return errno == ENOENT ? 0 : kmm_error_make_errno(err, errno, "target %s", target);
	if (!S_ISDIR(st.st_mode))
		return kmm_error_make(err, EEXIST, "target %s exists and is not a directory",
				      target);
	fd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return kmm_error_make_errno(err, errno, "target %s", target);
	d = fdopendir(fd);
	if (!d) {
		int e = errno;

		close(fd);
		return kmm_error_make_errno(err, e, "target %s", target);
	}
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			empty = false;
			break;
		}
	}
	closedir(d);
	if (!empty)
		return kmm_error_make(err, ENOTEMPTY, "target %s exists and is not empty", target);
	return 0;
}

static int extract_layers(struct source *s, const struct kmm_oci_manifest *m, int parent_fd,
			  int root_fd, const char *const *prefixes,
			  const struct kmm_extract_limits *lim, struct kmm_error **err)
{
	_cleanup_(kmm_extractor_freep) struct kmm_extractor *x = NULL;
	int r;

	if (m->n_items > lim->max_layers)
		return kmm_error_make(err, E2BIG,
				      "image %s: %zu layers, more than the limit of %" PRIu64,
				      s->image, m->n_items, lim->max_layers);
	r = kmm_extractor_new(root_fd, prefixes, lim, s->image, &x, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < m->n_items; i++) {
		const struct kmm_oci_descriptor *d = &m->items[i];
		_cleanup_close_ int fd = -1;

		if (!kmm_oci_layer_media_type_ok(d->media_type))
			return kmm_error_make(
			    err, ENOTSUP, "image %s: layer %s: unsupported media type '%s'",
			    s->image, d->digest, d->media_type ? d->media_type : "(none)");
		if ((uint64_t)d->size > lim->max_blob_bytes)
			return kmm_error_make(err, EFBIG,
					      "image %s: layer %s: %" PRId64
					      " bytes, more than the blob size limit",
					      s->image, d->digest, d->size);
		if (s->layout_fd >= 0)
			fd = layout_open_blob(s, d->digest, err);
		else
			fd = download_blob(s, d, parent_fd, lim->max_blob_bytes, err);
		if (fd < 0)
			return fd;
		r = kmm_extractor_apply_layer(x, fd, d->digest, d->size, err);
		if (r < 0)
			return r;
		kmm_debug("layer extracted", "image", s->image, "layer", d->digest);
	}
	return 0;
}

int kmm_image_extract(struct kmm_registry *r, const char *image,
		      const char *const *include_prefixes, const char *target_dir,
		      const struct kmm_extract_limits *limits, char **ret_manifest_digest,
		      struct kmm_error **err)
{
	_cleanup_(kmm_oci_manifest_freep) struct kmm_oci_manifest *m = NULL;
	_cleanup_free_ char *digest = NULL, *parent_copy = NULL, *base_copy = NULL, *staging = NULL;
	_cleanup_close_ int parent_fd = -1, root_fd = -1;
	struct kmm_extract_limits lim = { 0 };
	struct source s;
	const char *parent, *base;
	int rc;

	if (!image || !target_dir || !*target_dir)
		return kmm_error_make(err, EINVAL,
				      "kmm_image_extract: image and target are required");
	if (limits)
		lim = *limits;
	kmm_extract_limits_fill(&lim);
	rc = check_target(target_dir, err);
	if (rc < 0)
		return rc;
	parent_copy = strdup(target_dir);
	base_copy = strdup(target_dir);
	if (!parent_copy || !base_copy)
		return -ENOMEM;
	parent = dirname(parent_copy);
	base = basename(base_copy);
	if (!*base || strcmp(base, "/") == 0 || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return kmm_error_make(err, EINVAL, "target %s: not a usable directory name",
				      target_dir);
	parent_fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (parent_fd < 0)
		return kmm_error_make_errno(err, errno, "target parent %s", parent);

	rc = source_open(r, image, &s, err);
	if (rc < 0) {
		source_done(&s);
		return rc;
	}
	rc = resolve(&s, &m, &digest, err);
	if (rc < 0) {
		source_done(&s);
		return rc;
	}

	if (asprintf(&staging, ".kmm-extract-%.100s-XXXXXX", base) < 0) {
		source_done(&s);
		return -ENOMEM;
	}
	{
		_cleanup_free_ char *full = NULL;

		if (asprintf(&full, "%s/%s", parent, staging) < 0 || !mkdtemp(full)) {
			rc = full ? kmm_error_make_errno(err, errno,
							 "create staging directory in %s", parent)
				  : -ENOMEM;
			source_done(&s);
			return rc;
		}
		free(staging);
		staging = strdup(strrchr(full, '/') + 1);
		if (!staging) {
			rmdir(full);
			source_done(&s);
			return -ENOMEM;
		}
	}
	root_fd = openat(parent_fd, staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (root_fd < 0)
		rc = kmm_error_make_errno(err, errno, "open staging directory");
	else
		rc = extract_layers(&s, m, parent_fd, root_fd, include_prefixes, &lim, err);
	source_done(&s);
	if (rc == 0 && fchmod(root_fd, 0755) < 0)
		rc = kmm_error_make_errno(err, errno, "chmod staging directory");
	if (rc == 0 && renameat(parent_fd, staging, parent_fd, base) < 0)
		rc = kmm_error_make_errno(err, errno, "rename staging directory to %s", target_dir);
	if (rc < 0) {
		(void)kmm_remove_tree_at(parent_fd, staging);
		return rc;
	}
	kmm_debug("image extracted", "image", image, "digest", digest, "target", target_dir);
	if (ret_manifest_digest)
		*ret_manifest_digest = TAKE_PTR(digest);
	return 0;
}
