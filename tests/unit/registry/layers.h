/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test helpers: build tar layers (plain, gzip, zstd) with libarchive's writer
 * and OCI image layouts around them, so hostile layers are crafted by code
 * instead of being committed as binaries.
 */
#ifndef KMM_TEST_LAYERS_H
#define KMM_TEST_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "kmm/shared-buf.h"

/* type: 'f' file, 'd' dir, 'l' symlink, 'h' hard link, 'c'/'b' char/block device, 'p' FIFO */
struct test_entry {
	const char *path;
	long type;	  /* long, so the struct packs without holes */
	const char *data; /* file content, or link target */
	size_t size;	  /* file size when data is NULL: that many 'x' bytes */
	unsigned mode;	  /* 0: 0644 files, 0755 dirs */
};

enum test_compression {
	TEST_TAR,
	TEST_GZIP,
	TEST_ZSTD
};

/* Builds a layer; returns 0 or aborts the test. */
void test_make_layer(const struct test_entry *e, size_t n, enum test_compression c,
		     struct kmm_buf *out);

/* Writes data as a blob of the layout at dir; returns the heap "sha256:..." digest. */
char *test_write_blob(const char *dir, const void *data, size_t len);

struct test_layer {
	struct kmm_buf data;
	const char *media_type;	     /* NULL: chosen from the compression */
	int64_t size_override;	     /* != 0: the descriptor claims this size */
	const char *digest_override; /* descriptor claims this digest */
};

/*
 * Creates an OCI layout at dir with one image manifest (and an index.json
 * entry named ref_name) over the given layers. Returns the manifest digest.
 */
char *test_make_layout(const char *dir, struct test_layer *layers, size_t n, const char *ref_name);

/* mkdtemp under $TMPDIR or /tmp; the returned path is heap. */
char *test_tmpdir(void);

/* "d path", "f path size content", "l path -> target", sorted, one per line. */
char *test_tree(const char *dir);

/* rm -rf */
void test_rm_rf(const char *dir);

#endif
