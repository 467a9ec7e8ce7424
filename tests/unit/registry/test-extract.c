/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Extraction through kmm_image_extract("oci:DIR:NAME") with layers crafted
 * by tests/unit/registry/layers.c: the happy paths (prefix filtering, links,
 * whiteouts, gzip/zstd) and every hostile case, each rejected with its
 * message and leaving nothing behind.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kmm/registry.h"
#include "lib/registry/registry-internal.h"
#include "tests/unit/registry/layers.h"

/* Entries are written positionally ({ path, type, data }); the rest default to 0. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define K "opt/lib/modules/6.1.0-18-amd64"

static const char *const prefixes[] = { "/opt/lib/modules/6.1.0-18-amd64", "/firmware", NULL };

struct fixture {
	char *dir;
	char *layout;
	char *target;
	char *image;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->dir = test_tmpdir();
	assert_true(asprintf(&f->layout, "%s/layout", f->dir) > 0);
	assert_true(asprintf(&f->target, "%s/out", f->dir) > 0);
	assert_true(asprintf(&f->image, "oci:%s:v1", f->layout) > 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	test_rm_rf(f->dir);
	free(f->dir);
	free(f->layout);
	free(f->target);
	free(f->image);
	free(f);
	return 0;
}

/* Names in the fixture dir other than the layout (target, staging debris). */
static char *leftovers(struct fixture *f)
{
	struct kmm_buf b;
	DIR *d = opendir(f->dir);
	struct dirent *de;

	kmm_buf_init(&b, 1 << 16);
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
		    strcmp(de->d_name, "layout") != 0)
			kmm_buf_printf(&b, "%s ", de->d_name);
	}
	closedir(d);
	return kmm_buf_steal(&b);
}

static int extract_layers(struct fixture *f, struct test_layer *layers, size_t n,
			  const struct kmm_extract_limits *lim, struct kmm_error **err)
{
	char *digest = test_make_layout(f->layout, layers, n, "v1");
	char *got = NULL;
	int r;

	r = kmm_image_extract(NULL, f->image, prefixes, f->target, lim, &got, err);
	if (r == 0)
		assert_string_equal(got, digest);
	free(got);
	free(digest);
	for (size_t i = 0; i < n; i++)
		kmm_buf_free(&layers[i].data);
	return r;
}

static int extract_entries(struct fixture *f, const struct test_entry *e, size_t n,
			   const struct kmm_extract_limits *lim, struct kmm_error **err)
{
	struct test_layer l = { 0 };

	test_make_layer(e, n, TEST_GZIP, &l.data);
	return extract_layers(f, &l, 1, lim, err);
}

/* Expects rejection with a message containing every given fragment, and no debris. */
static void expect_rejected(struct fixture *f, int r, struct kmm_error *err, int code, ...)
{
	va_list ap;
	const char *frag;
	char *left;

	assert_int_equal(r, -code);
	assert_non_null(err);
	va_start(ap, code);
	while ((frag = va_arg(ap, const char *))) {
		if (!strstr(err->message, frag))
			fail_msg("message '%s' lacks '%s'", err->message, frag);
	}
	va_end(ap);
	left = leftovers(f);
	assert_string_equal(left, "");
	free(left);
	kmm_error_free(err);
}

static void assert_tree(struct fixture *f, const char *want)
{
	char *tree = test_tree(f->target);

	if (strcmp(tree, want) != 0)
		fail_msg("tree:\n%s\nwant:\n%s", tree, want);
	free(tree);
}

static void test_happy_path(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = {
		{ "./", 'd' },
		{ "./etc/passwd", 'f', "root:x:0:0\n" },
		{ "./opt/", 'd' },
		{ "./opt/lib/modules/6.1.0-18-amd64/", 'd' },
		{ "./" K "/extra/kmm_ci_a.ko", 'f', "module a", 0, 0640 },
		{ "./" K "/extra/setuid.ko", 'f', "s", 0, 04755 },
		{ "./" K "/modules.dep", 'f', "extra/kmm_ci_a.ko:\n" },
		{ "./" K "/extra/alias.ko", 'l', "kmm_ci_a.ko" },
		{ "./" K "/build", 'l', "/usr/src/linux-headers-6.1.0-18-amd64" },
		{ "./" K "/extra/hard.ko", 'h', "./" K "/extra/kmm_ci_a.ko" },
		{ "./opt/lib/modules/6.1.0-other/x.ko", 'f', "other kernel" },
		{ "./firmware/fw.bin", 'f', "FW" },
		{ "./firmwarex/no.bin", 'f', "prefix match is per component" },
	};
	char *left;

	assert_int_equal(extract_entries(f, e, KMM_ARRAY_SIZE(e), NULL, &err), 0);
	assert_null(err);
	assert_tree(f, "d firmware 755\n"
		       "d opt 755\n"
		       "d opt/lib 755\n"
		       "d opt/lib/modules 755\n"
		       "d " K " 755\n"
		       "d " K "/extra 755\n"
		       "f firmware/fw.bin 2 644 FW\n"
		       "f " K "/extra/hard.ko 8 640 (linked) module a\n"
		       "f " K "/extra/kmm_ci_a.ko 8 640 (linked) module a\n"
		       "f " K "/extra/setuid.ko 1 755 s\n"
		       "f " K "/modules.dep 19 644 extra/kmm_ci_a.ko:\n\n"
		       "l " K "/build -> ../../../../usr/src/linux-headers-6.1.0-18-amd64\n"
		       "l " K "/extra/alias.ko -> kmm_ci_a.ko");
	left = leftovers(f);
	assert_string_equal(left, "out ");
	free(left);
}

static void test_zstd_and_plain_layers(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry a[] = { { K "/a.ko", 'f', "A" } };
	const struct test_entry b[] = { { K "/b.ko", 'f', "B" } };
	struct test_layer l[2] = { 0 };

	test_make_layer(a, 1, TEST_ZSTD, &l[0].data);
	test_make_layer(b, 1, TEST_TAR, &l[1].data);
	assert_int_equal(extract_layers(f, l, 2, NULL, &err), 0);
	assert_tree(f, "d opt 755\nd opt/lib 755\nd opt/lib/modules 755\nd " K " 755\n"
		       "f " K "/a.ko 1 644 A\nf " K "/b.ko 1 644 B");
}

static void test_whiteouts(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry l1[] = {
		{ K "/a.ko", 'f', "A" },
		{ K "/b.ko", 'f', "B" },
		{ K "/sub/c.ko", 'f', "C" },
		{ K "/sub/deeper/d.ko", 'f', "D" },
		{ "firmware/old.bin", 'f', "old" },
	};
	const struct test_entry l2[] = {
		{ K "/.wh.a.ko", 'f', "" },
		{ K "/sub/new.ko", 'f', "N" }, /* same layer as the opaque marker: kept */
		{ K "/sub/.wh..wh..opq", 'f', "" },
		{ K "/.wh.missing.ko", 'f', "" }, /* nothing to remove: fine */
		{ K "/.wh..wh.plnk", 'f', "" },	  /* aufs bookkeeping: ignored */
		{ ".wh.firmware", 'f', "" },	  /* removes the whole firmware tree */
		{ "etc/.wh.passwd", 'f', "" },	  /* outside the prefixes: ignored */
	};
	const struct test_entry l3[] = {
		{ "firmware/new.bin", 'f', "new" }, { K "/b.ko", 'f', "B3" }, /* replaces */
	};
	struct test_layer l[3] = { 0 };

	test_make_layer(l1, KMM_ARRAY_SIZE(l1), TEST_GZIP, &l[0].data);
	test_make_layer(l2, KMM_ARRAY_SIZE(l2), TEST_GZIP, &l[1].data);
	test_make_layer(l3, KMM_ARRAY_SIZE(l3), TEST_GZIP, &l[2].data);
	assert_int_equal(extract_layers(f, l, 3, NULL, &err), 0);
	assert_tree(f, "d firmware 755\nd opt 755\nd opt/lib 755\nd opt/lib/modules 755\n"
		       "d " K " 755\nd " K "/sub 755\n"
		       "f firmware/new.bin 3 644 new\n"
		       "f " K "/b.ko 2 644 B3\n"
		       "f " K "/sub/new.ko 1 644 N");
}

static void test_whiteout_same_layer_kept(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = {
		{ K "/a.ko", 'f', "A" },
		{ K "/.wh.a.ko", 'f', "" }, /* applies to lower layers only */
	};

	assert_int_equal(extract_entries(f, e, 2, NULL, &err), 0);
	assert_tree(f, "d opt 755\nd opt/lib 755\nd opt/lib/modules 755\nd " K " 755\nf " K
		       "/a.ko 1 644 A");
}

static void test_reject_dotdot(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = { { K "/ok.ko", 'f', "x" },
					{ "../etc/passwd", 'f', "pwned" } };
	int r = extract_entries(f, e, 2, NULL, &err);

	expect_rejected(f, r, err, EXDEV, "image oci:", "layer sha256:",
			"entry '../etc/passwd': path escapes the target", NULL);
}

static void test_reject_dotdot_inside(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = { { K "/../../../../../../etc/passwd", 'f', "pwned" } };
	int r = extract_entries(f, e, 1, NULL, &err);

	expect_rejected(f, r, err, EXDEV, "path escapes the target", NULL);
}

static void test_reject_absolute(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = { { "/" K "/x.ko", 'f', "x" } };
	int r = extract_entries(f, e, 1, NULL, &err);

	expect_rejected(f, r, err, EXDEV, "entry '/opt/lib", "absolute path", NULL);
}

static void test_reject_symlink_escape(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = { { K "/evil", 'l', "../../../../../etc" } };
	int r = extract_entries(f, e, 1, NULL, &err);

	expect_rejected(f, r, err, EXDEV, "entry '" K "/evil'", "symlink target escapes the target",
			NULL);
}

static void test_reject_symlink_chain(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	/* dot -> . is harmless alone; ../dot/.. would climb out once dot is followed. */
	const struct test_entry e[] = {
		{ K "/dot", 'l', "." },
		{ K "/x/chain", 'l', "../dot/../../../../../.." },
	};
	int r = extract_entries(f, e, 2, NULL, &err);

	expect_rejected(f, r, err, EXDEV, "entry '" K "/x/chain'", "symlink target escapes", NULL);
}

static void test_reject_absolute_symlink_dotdot(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = { { K "/evil", 'l', "/../../etc/shadow" } };
	int r = extract_entries(f, e, 1, NULL, &err);

	expect_rejected(f, r, err, EXDEV, "symlink target escapes", NULL);
}

static void test_reject_write_through_symlink(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = {
		{ K "/real/", 'd' },
		{ K "/link", 'l', "real" },
		{ K "/link/x.ko", 'f', "x" },
	};
	int r = extract_entries(f, e, 3, NULL, &err);

	expect_rejected(f, r, err, ELOOP, "entry '" K "/link/x.ko'",
			"parent directory is a symlink", NULL);
}

static void test_reject_write_through_symlink_from_lower_layer(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	/* The link is rewritten to stay inside, but nothing is written through it anyway. */
	const struct test_entry l1[] = { { "firmware", 'l', "/" } };
	const struct test_entry l2[] = { { "firmware/etc/passwd", 'f', "pwned" } };
	struct test_layer l[2] = { 0 };
	int r;

	test_make_layer(l1, 1, TEST_GZIP, &l[0].data);
	test_make_layer(l2, 1, TEST_GZIP, &l[1].data);
	r = extract_layers(f, l, 2, NULL, &err);
	expect_rejected(f, r, err, ELOOP, "entry 'firmware/etc/passwd'", "symlink", NULL);
}

static void test_reject_hardlink_escape(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = { { K "/shadow.ko", 'h', "../../../../../etc/shadow" } };
	int r = extract_entries(f, e, 1, NULL, &err);

	expect_rejected(f, r, err, EXDEV, "entry '" K "/shadow.ko'", "hard link target escapes",
			NULL);
}

static void test_reject_hardlink_outside_prefix(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = {
		{ "etc/shadow", 'f', "secret" },
		{ K "/shadow.ko", 'h', "etc/shadow" },
	};
	int r = extract_entries(f, e, 2, NULL, &err);

	expect_rejected(f, r, err, EXDEV, "hard link target is outside the extracted paths", NULL);
}

static void test_reject_hardlink_to_symlink(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = {
		{ K "/l", 'l', "a.ko" },
		{ K "/h.ko", 'h', K "/l" },
	};
	int r = extract_entries(f, e, 2, NULL, &err);

	expect_rejected(f, r, err, EXDEV, "not an extracted regular file", NULL);
}

static void test_reject_devices(void **state)
{
	struct fixture *f = *state;
	const struct {
		char type;
		const char *msg;
	} cases[] = {
		{ 'c', "device nodes are not allowed" },
		{ 'b', "device nodes are not allowed" },
		{ 'p', "FIFOs are not allowed" },
	};

	for (size_t i = 0; i < KMM_ARRAY_SIZE(cases); i++) {
		struct kmm_error *err = NULL;
		struct test_entry e[] = { { K "/dev0", cases[i].type, NULL, 1 } };
		int r = extract_entries(f, e, 1, NULL, &err);

		expect_rejected(f, r, err, EPERM, "entry '" K "/dev0'", cases[i].msg, NULL);
	}
}

static void test_reject_overlay_whiteout_device(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	/* overlayfs-style whiteout (char 0:0) is not an OCI whiteout */
	const struct test_entry e[] = { { K "/gone.ko", 'c', NULL, 0 } };
	int r = extract_entries(f, e, 1, NULL, &err);

	expect_rejected(f, r, err, EPERM, "device nodes are not allowed", NULL);
}

static void test_reject_malformed_whiteout(void **state)
{
	struct fixture *f = *state;
	const char *names[] = { K "/.wh.", K "/.wh..", K "/.wh..." };

	for (size_t i = 0; i < KMM_ARRAY_SIZE(names); i++) {
		struct kmm_error *err = NULL;
		struct test_entry e[] = { { names[i], 'f', "" } };
		int r = extract_entries(f, e, 1, NULL, &err);

		expect_rejected(f, r, err, EINVAL, "malformed whiteout", NULL);
	}
}

static void test_reject_file_too_big(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = { { K "/big.ko", 'f', NULL, 3 << 20 } };
	struct kmm_extract_limits lim = { .max_file_bytes = 1 << 20 };
	int r = extract_entries(f, e, 1, &lim, &err);

	expect_rejected(f, r, err, EFBIG, "entry '" K "/big.ko'", "per-file limit", NULL);
}

static void test_reject_total_too_big(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = {
		{ K "/a.ko", 'f', NULL, 600 << 10 },
		{ K "/b.ko", 'f', NULL, 600 << 10 },
	};
	struct kmm_extract_limits lim = { .max_total_bytes = 1 << 20 };
	int r = extract_entries(f, e, 2, &lim, &err);

	expect_rejected(f, r, err, EFBIG, "entry '" K "/b.ko'", "total size limit", NULL);
}

static void test_reject_archive_bomb_outside_prefix(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	/* 8 MiB of 'x' gzips to a few KiB; it is outside the prefixes but still read. */
	const struct test_entry e[] = { { "var/bomb", 'f', NULL, 8 << 20 } };
	struct kmm_extract_limits lim = { .max_archive_bytes = 4 << 20 };
	int r = extract_entries(f, e, 1, &lim, &err);

	expect_rejected(f, r, err, E2BIG, "archive size limit", NULL);
}

static void test_reject_too_many_entries(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	struct test_entry e[300];
	char names[300][64];
	struct kmm_extract_limits lim = { .max_entries = 256 };
	int r;

	for (size_t i = 0; i < KMM_ARRAY_SIZE(e); i++) {
		snprintf(names[i], sizeof(names[i]), "var/f%zu", i);
		e[i] = (struct test_entry){ names[i], 'f', "" };
	}
	r = extract_entries(f, e, KMM_ARRAY_SIZE(e), &lim, &err);
	expect_rejected(f, r, err, E2BIG, "more than 256 entries", NULL);
}

static void test_reject_digest_mismatch(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = { { K "/a.ko", 'f', "A" } };
	struct test_layer l = { 0 };
	char *path = NULL, *digest;
	FILE *fp;
	int r;

	test_make_layer(e, 1, TEST_GZIP, &l.data);
	digest = test_make_layout(f->layout, &l, 1, "v1");
	free(digest);
	/* Corrupt the layer blob in place (same size, one byte flipped at the end). */
	digest = kmm_digest_of(l.data.data, l.data.len);
	assert_true(asprintf(&path, "%s/blobs/sha256/%s", f->layout, digest + 7) > 0);
	fp = fopen(path, "r+e");
	assert_non_null(fp);
	fseek(fp, -1, SEEK_END);
	fputc(l.data.data[l.data.len - 1] ^ 0x55, fp);
	fclose(fp);
	r = kmm_image_extract(NULL, f->image, prefixes, f->target, NULL, NULL, &err);
	expect_rejected(f, r, err, EBADMSG,
			"layer sha256:", "digest mismatch: content is sha256:", NULL);
	free(path);
	free(digest);
	kmm_buf_free(&l.data);
}

static void test_reject_size_mismatch(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = { { K "/a.ko", 'f', "A" } };
	struct test_layer l = { 0 };
	int r;

	test_make_layer(e, 1, TEST_GZIP, &l.data);
	l.size_override = 10;
	r = extract_layers(f, &l, 1, NULL, &err);
	expect_rejected(f, r, err, EFBIG, "larger than its descriptor says", NULL);
}

static void test_reject_media_type(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = { { K "/a.ko", 'f', "A" } };
	struct test_layer l = {
		.media_type = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
	};
	int r;

	test_make_layer(e, 1, TEST_GZIP, &l.data);
	r = extract_layers(f, &l, 1, NULL, &err);
	expect_rejected(f, r, err, ENOTSUP, "unsupported media type", NULL);
}

static void test_reject_not_a_tar(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	struct test_layer l = { 0 };
	int r;

	kmm_buf_init(&l.data, 1 << 20);
	kmm_buf_append_str(
	    &l.data,
	    "this is not a tar archive, not even close, and long enough to fill a header block?");
	r = extract_layers(f, &l, 1, NULL, &err);
	expect_rejected(f, r, err, EINVAL, "layer sha256:", NULL);
}

static void test_target_must_be_empty(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = { { K "/a.ko", 'f', "A" } };
	char *file = NULL;
	int r;

	assert_int_equal(mkdir(f->target, 0755), 0);
	assert_true(asprintf(&file, "%s/keep", f->target) > 0);
	fclose(fopen(file, "we"));
	r = extract_entries(f, e, 1, NULL, &err);
	assert_int_equal(r, -ENOTEMPTY);
	assert_non_null(strstr(err->message, "not empty"));
	kmm_error_free(err);
	unlink(file);
	free(file);
	/* An empty directory is replaced. */
	err = NULL;
	assert_int_equal(extract_entries(f, e, 1, NULL, &err), 0);
	assert_tree(f, "d opt 755\nd opt/lib 755\nd opt/lib/modules 755\nd " K " 755\nf " K
		       "/a.ko 1 644 A");
}

static void test_layout_name_missing(void **state)
{
	struct fixture *f = *state;
	struct kmm_error *err = NULL;
	const struct test_entry e[] = { { K "/a.ko", 'f', "A" } };
	struct test_layer l = { 0 };
	char *digest, *image = NULL;
	int r;

	test_make_layer(e, 1, TEST_GZIP, &l.data);
	digest = test_make_layout(f->layout, &l, 1, "v1");
	assert_true(asprintf(&image, "oci:%s:v2", f->layout) > 0);
	r = kmm_image_extract(NULL, image, prefixes, f->target, NULL, NULL, &err);
	assert_int_equal(r, -ENOENT);
	assert_non_null(strstr(err->message, "no entry named v2"));
	kmm_error_free(err);
	/* Without a name, the single entry is used. */
	free(image);
	assert_true(asprintf(&image, "oci:%s", f->layout) > 0);
	err = NULL;
	assert_int_equal(kmm_image_extract(NULL, image, prefixes, f->target, NULL, NULL, &err), 0);
	free(image);
	free(digest);
	kmm_buf_free(&l.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, setup, teardown)
		T(test_happy_path),
		T(test_zstd_and_plain_layers),
		T(test_whiteouts),
		T(test_whiteout_same_layer_kept),
		T(test_reject_dotdot),
		T(test_reject_dotdot_inside),
		T(test_reject_absolute),
		T(test_reject_symlink_escape),
		T(test_reject_symlink_chain),
		T(test_reject_absolute_symlink_dotdot),
		T(test_reject_write_through_symlink),
		T(test_reject_write_through_symlink_from_lower_layer),
		T(test_reject_hardlink_escape),
		T(test_reject_hardlink_outside_prefix),
		T(test_reject_hardlink_to_symlink),
		T(test_reject_devices),
		T(test_reject_overlay_whiteout_device),
		T(test_reject_malformed_whiteout),
		T(test_reject_file_too_big),
		T(test_reject_total_too_big),
		T(test_reject_archive_bomb_outside_prefix),
		T(test_reject_too_many_entries),
		T(test_reject_digest_mismatch),
		T(test_reject_size_mismatch),
		T(test_reject_media_type),
		T(test_reject_not_a_tar),
		T(test_target_must_be_empty),
		T(test_layout_name_missing),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
