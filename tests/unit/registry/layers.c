/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "kmm/shared-strv.h"
#include "lib/registry/registry-internal.h"
#include "tests/unit/registry/layers.h"

static void die(const char *what)
{
	fprintf(stderr, "test helper failed: %s: %s\n", what, strerror(errno));
	abort();
}

static la_ssize_t buf_write(struct archive *a, void *ud, const void *p, size_t n)
{
	(void)a;
	if (kmm_buf_append(ud, p, n) < 0)
		return -1;
	return (la_ssize_t)n;
}

void test_make_layer(const struct test_entry *e, size_t n, enum test_compression c,
		     struct kmm_buf *out)
{
	struct archive *a = archive_write_new();

	kmm_buf_init(out, (size_t)1 << 30);
	if (!a || archive_write_set_format_pax_restricted(a) != ARCHIVE_OK)
		die("archive_write_new");
	if (c == TEST_GZIP && archive_write_add_filter_gzip(a) != ARCHIVE_OK)
		die("gzip");
	if (c == TEST_ZSTD && archive_write_add_filter_zstd(a) != ARCHIVE_OK)
		die("zstd");
	archive_write_set_bytes_in_last_block(a, 1);
	if (archive_write_open(a, out, NULL, buf_write, NULL) != ARCHIVE_OK)
		die("archive_write_open");
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *ae = archive_entry_new();
		size_t size = 0;

		archive_entry_set_pathname(ae, e[i].path);
		archive_entry_set_uid(ae, 0);
		archive_entry_set_gid(ae, 0);
		archive_entry_set_mtime(ae, 1577836800, 0);
		switch (e[i].type) {
		case 'f':
			size = e[i].data ? strlen(e[i].data) : e[i].size;
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_perm(ae, e[i].mode ? e[i].mode : 0644);
			archive_entry_set_size(ae, (la_int64_t)size);
			break;
		case 'd':
			archive_entry_set_filetype(ae, AE_IFDIR);
			archive_entry_set_perm(ae, e[i].mode ? e[i].mode : 0755);
			break;
		case 'l':
			archive_entry_set_filetype(ae, AE_IFLNK);
			archive_entry_set_perm(ae, 0777);
			archive_entry_set_symlink(ae, e[i].data);
			break;
		case 'h':
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_perm(ae, 0644);
			archive_entry_set_hardlink(ae, e[i].data);
			archive_entry_set_size(ae, 0);
			break;
		case 'c':
		case 'b':
			archive_entry_set_filetype(ae, e[i].type == 'c' ? AE_IFCHR : AE_IFBLK);
			archive_entry_set_perm(ae, 0600);
			archive_entry_set_rdevmajor(ae, e[i].size);
			archive_entry_set_rdevminor(ae, 0);
			break;
		case 'p':
			archive_entry_set_filetype(ae, AE_IFIFO);
			archive_entry_set_perm(ae, 0600);
			break;
		default:
			abort();
		}
		if (archive_write_header(a, ae) != ARCHIVE_OK)
			die(archive_error_string(a));
		if (size) {
			if (e[i].data) {
				if (archive_write_data(a, e[i].data, size) != (la_ssize_t)size)
					die("write data");
			} else {
				static char chunk[65536];

				memset(chunk, 'x', sizeof(chunk));
				for (size_t done = 0; done < size;) {
					size_t k = size - done < sizeof(chunk) ? size - done
									       : sizeof(chunk);

					if (archive_write_data(a, chunk, k) != (la_ssize_t)k)
						die("write data");
					done += k;
				}
			}
		}
		archive_entry_free(ae);
	}
	if (archive_write_close(a) != ARCHIVE_OK)
		die("archive_write_close");
	archive_write_free(a);
}

char *test_write_blob(const char *dir, const void *data, size_t len)
{
	char *digest = kmm_digest_of(data, len), *path = NULL;
	int fd;

	if (!digest || asprintf(&path, "%s/blobs/sha256/%s", dir, digest + 7) < 0)
		die("alloc");
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || (len && write(fd, data, len) != (ssize_t)len))
		die(path);
	close(fd);
	free(path);
	return digest;
}

static void write_text(const char *dir, const char *name, const char *text)
{
	char *path = NULL;
	FILE *f;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		die("alloc");
	f = fopen(path, "we");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		die(path);
	free(path);
}

static const char *default_media_type(const struct kmm_buf *b)
{
	const unsigned char *p = (const unsigned char *)b->data;

	if (!p)
		return "application/vnd.oci.image.layer.v1.tar";
	if (b->len >= 2 && p[0] == 0x1f && p[1] == 0x8b)
		return "application/vnd.oci.image.layer.v1.tar+gzip";
	if (b->len >= 4 && p[0] == 0x28 && p[1] == 0xb5 && p[2] == 0x2f && p[3] == 0xfd)
		return "application/vnd.oci.image.layer.v1.tar+zstd";
	return "application/vnd.oci.image.layer.v1.tar";
}

char *test_make_layout(const char *dir, struct test_layer *layers, size_t n, const char *ref_name)
{
	struct kmm_buf m, idx;
	char *blobs = NULL, *cfg_digest, *man_digest;
	const char *cfg = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":"
			  "\"layers\",\"diff_ids\":[]}}";

	if (asprintf(&blobs, "%s/blobs/sha256", dir) < 0)
		die("alloc");
	{
		char *b = NULL;

		if (asprintf(&b, "%s/blobs", dir) < 0)
			die("alloc");
		if ((mkdir(dir, 0755) < 0 && errno != EEXIST) ||
		    (mkdir(b, 0755) < 0 && errno != EEXIST) ||
		    (mkdir(blobs, 0755) < 0 && errno != EEXIST))
			die("mkdir layout");
		free(b);
	}
	cfg_digest = test_write_blob(dir, cfg, strlen(cfg));
	kmm_buf_init(&m, 1 << 20);
	kmm_buf_printf(
	    &m,
	    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	    "\"config\":{\"mediaType\":\"application/"
	    "vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
	    "\"layers\":[",
	    cfg_digest, strlen(cfg));
	for (size_t i = 0; i < n; i++) {
		char *d = test_write_blob(dir, layers[i].data.data ? layers[i].data.data : "",
					  layers[i].data.len);

		kmm_buf_printf(&m, "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%lld}",
			       i ? "," : "",
			       layers[i].media_type ? layers[i].media_type
						    : default_media_type(&layers[i].data),
			       layers[i].digest_override ? layers[i].digest_override : d,
			       layers[i].size_override ? (long long)layers[i].size_override
						       : (long long)layers[i].data.len);
		free(d);
	}
	kmm_buf_append_str(&m, "]}");
	man_digest = test_write_blob(dir, m.data, m.len);
	kmm_buf_init(&idx, 1 << 20);
	kmm_buf_printf(&idx,
		       "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/"
		       "vnd.oci.image.manifest.v1+json\","
		       "\"digest\":\"%s\",\"size\":%zu,\"annotations\":{\"org.opencontainers.image."
		       "ref.name\":\"%s\"}}]}",
		       man_digest, m.len, ref_name);
	write_text(dir, "index.json", idx.data);
	write_text(dir, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
	kmm_buf_free(&m);
	kmm_buf_free(&idx);
	free(cfg_digest);
	free(blobs);
	return man_digest;
}

char *test_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *p = NULL;

	if (asprintf(&p, "%s/kmm-registry-test-XXXXXX", base && *base ? base : "/tmp") < 0 ||
	    !mkdtemp(p))
		die("mkdtemp");
	return p;
}

static char **tree_lines;
static size_t tree_root_len;

static int tree_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	const char *rel = path + tree_root_len;
	char *line = NULL;

	(void)flag;
	if (ftw->level == 0)
		return 0;
	if (*rel == '/')
		rel++;
	if (S_ISDIR(st->st_mode)) {
		if (asprintf(&line, "d %s %o", rel, st->st_mode & 07777) < 0)
			die("alloc");
	} else if (S_ISLNK(st->st_mode)) {
		char target[4096];
		ssize_t n = readlink(path, target, sizeof(target) - 1);

		if (n < 0)
			die("readlink");
		target[n] = '\0';
		if (asprintf(&line, "l %s -> %s", rel, target) < 0)
			die("alloc");
	} else if (S_ISREG(st->st_mode)) {
		char content[64] = "";
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, content, sizeof(content) - 1) : -1;

		if (n < 0)
			die("read");
		content[n] = '\0';
		close(fd);
		if (asprintf(&line, "f %s %lld %o %s%s", rel, (long long)st->st_size,
			     st->st_mode & 07777, st->st_nlink > 1 ? "(linked) " : "", content) < 0)
			die("alloc");
	} else {
		if (asprintf(&line, "? %s", rel) < 0)
			die("alloc");
	}
	if (kmm_strv_consume(&tree_lines, line) < 0)
		die("alloc");
	return 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char *test_tree(const char *dir)
{
	char *s;

	tree_lines = NULL;
	tree_root_len = strlen(dir);
	if (nftw(dir, tree_visit, 16, FTW_PHYS) < 0)
		return strdup("(missing)");
	if (!tree_lines)
		return strdup("");
	qsort(tree_lines, kmm_strv_length(tree_lines), sizeof(char *), cmp);
	s = kmm_strv_join(tree_lines, "\n");
	kmm_strv_free(tree_lines);
	tree_lines = NULL;
	return s;
}

static int rm_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path);
	return unlink(path);
}

void test_rm_rf(const char *dir)
{
	nftw(dir, rm_visit, 16, FTW_PHYS | FTW_DEPTH);
}
