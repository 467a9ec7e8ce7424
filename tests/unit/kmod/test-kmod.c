/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lib/kmod against a fake kernel: runs under the LD_PRELOAD shim (shim.c),
 * with stand-in modules (fixture-mod.c) in a fake root built per test.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kmm/kmod.h"
#include "kmm/shared-strv.h"
#include "lib/kmod/kmod-internal.h"

#define KVER "9.9.9-test"

static char root[256];
static char img[512];

_printf_(1, 2) static void sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;

	pid_t pid;
	int status = -1;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	/* Test fixtures only: fixed commands with paths this test made. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void put(const char *rel, const char *text)
{
	char p[1024];
	FILE *f;

	snprintf(p, sizeof(p), "%s%s", root, rel);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static char *slurp(const char *rel)
{
	static char buf[65536];
	char p[1024];
	FILE *f;
	size_t n;

	snprintf(p, sizeof(p), "%s%s", root, rel);
	f = fopen(p, "r");
	if (!f) {
		buf[0] = '\0';
		return buf;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* A module tree <dir>/lib/modules/KVER/extra with the named fixtures, depmod'ed. */
static void tree(const char *dir, const char *mods)
{
	const char *fx = getenv("KMM_TEST_FIXTURES");
	char list[256], *save = NULL;

	assert_non_null(fx);
	sh("mkdir -p %s/lib/modules/%s/extra", dir, KVER);
	snprintf(list, sizeof(list), "%s", mods);
	for (char *m = strtok_r(list, " ", &save); m; m = strtok_r(NULL, " ", &save))
		sh("cp %s/%s.ko %s/lib/modules/%s/extra/", fx, m, dir, KVER);
	sh("env -u LD_PRELOAD PATH=/sbin:/usr/sbin:$PATH depmod -b %s %s 2>/dev/null", dir, KVER);
}

static int setup(void **state)
{
	snprintf(root, sizeof(root), "/tmp/kmm-kmod-test.XXXXXX");
	if (!mkdtemp(root))
		return -1;
	unsetenv("KMM_SHIM_ROOT");
	sh("mkdir -p %s/sys/module/firmware_class/parameters %s/proc %s/dev", root, root, root);
	put("/sys/module/firmware_class/parameters/path", "");
	put("/proc/modules", "");
	put("/dev/kmsg", "");
	snprintf(img, sizeof(img), "%s/img/opt", root);
	tree(img, "fx_a fx_b fx_wrong");
	{
		char host[512];
		snprintf(host, sizeof(host), "%s/lib/modules", root);
		(void)host;
		sh("mkdir -p %s/lib/modules/%s/kernel && cp %s/fx_intree.ko "
		   "%s/lib/modules/%s/kernel/",
		   root, KVER, getenv("KMM_TEST_FIXTURES"), root, KVER);
		sh("env -u LD_PRELOAD PATH=/sbin:/usr/sbin:$PATH depmod -b %s %s 2>/dev/null", root,
		   KVER);
	}
	setenv("KMM_SHIM_ROOT", root, 1);
	setenv("KMM_SHIM_UNAME", KVER, 1);
	unsetenv("KMM_SHIM_FAIL");
	return 0;
}

static int teardown(void **state)
{
	unsetenv("KMM_SHIM_ROOT");
	sh("rm -rf %s", root);
	return 0;
}

static struct kmm_kmod *open_img(void)
{
	struct kmm_kmod_options o = { .dir_name = img };
	struct kmm_kmod *k = NULL;
	struct kmm_error *e = NULL;

	assert_int_equal(kmm_kmod_new(&o, &k, &e), 0);
	assert_null(e);
	return k;
}

static void test_load_pulls_dependency_first(void **state)
{
	_cleanup_kmod_ struct kmm_kmod *k = open_img();
	_cleanup_error_ struct kmm_error *e = NULL;

	assert_int_equal(kmm_kmod_load(k, "fx_b", "x=1 y=\"a b\"", 0, &e), 0);
	assert_string_equal(slurp("/calls.log"), "insmod fx_a \ninsmod fx_b x=1 y=\"a b\"\n");
	assert_int_equal(kmm_kmod_is_loaded(k, "fx_a"), 1);
	assert_int_equal(kmm_kmod_is_loaded(k, "fx_b"), 1);
	/* Loaded already: success, and nothing inserted again. */
	assert_int_equal(kmm_kmod_load(k, "fx_b", NULL, 0, &e), 0);
	assert_string_equal(slurp("/calls.log"), "insmod fx_a \ninsmod fx_b x=1 y=\"a b\"\n");
	/* --first-time refuses it. */
	assert_int_equal(kmm_kmod_load(k, "fx_b", NULL, KMM_KMOD_LOAD_FAIL_ON_LOADED, &e), -EEXIST);
}

static void test_unload_in_use_then_with_deps(void **state)
{
	_cleanup_kmod_ struct kmm_kmod *k = open_img();
	_cleanup_error_ struct kmm_error *e = NULL, *e2 = NULL;

	assert_int_equal(kmm_kmod_load(k, "fx_b", NULL, 0, &e), 0);
	assert_int_equal(kmm_kmod_unload(k, "fx_a", 0, &e), -EBUSY);
	assert_non_null(
	    strstr(kmm_error_message(e), "unload module fx_a: the module is in use by fx_b"));
	assert_int_equal(kmm_kmod_is_loaded(k, "fx_a"), 1);
	assert_int_equal(kmm_kmod_unload(k, "fx_b", 0, &e2), 0);
	assert_int_equal(kmm_kmod_is_loaded(k, "fx_b"), 0);
	assert_int_equal(kmm_kmod_is_loaded(k, "fx_a"), 0); /* unused dependency removed */
	assert_string_equal(slurp("/proc/modules"), "");
	/* Not loaded: nothing to do, as modprobe -r. */
	assert_int_equal(kmm_kmod_unload(k, "fx_b", 0, NULL), 0);
	assert_int_equal(kmm_kmod_unload(k, "fx_b", KMM_KMOD_UNLOAD_FAIL_IF_ABSENT, NULL), -ENOENT);
}

static void test_wrong_kernel_message(void **state)
{
	_cleanup_kmod_ struct kmm_kmod *k = open_img();
	_cleanup_error_ struct kmm_error *e = NULL;

	setenv("KMM_SHIM_FAIL",
	       "fx_wrong:8:fx_wrong: version magic '1.2.3-other SMP' should be "
	       "'9.9.9-test SMP'",
	       1);
	assert_int_equal(kmm_kmod_load(k, "fx_wrong", NULL, 0, &e), -ENOEXEC);
	assert_non_null(strstr(kmm_error_message(e),
			       "wrong kernel: the module was built for kernel 1.2.3-other, this "
			       "kernel is 9.9.9-test"));
	assert_non_null(strstr(kmm_error_message(e), "/extra/fx_wrong.ko"));
	assert_non_null(strstr(kmm_error_message(e), "kernel log: fx_wrong: version magic"));
	assert_int_equal(kmm_kmod_is_loaded(k, "fx_wrong"), 0);
}

static void test_missing_symbol_and_dependency_named(void **state)
{
	_cleanup_kmod_ struct kmm_kmod *k = open_img();
	_cleanup_error_ struct kmm_error *e = NULL, *e2 = NULL;

	setenv("KMM_SHIM_FAIL", "fx_b:2:fx_b: Unknown symbol fx_a_sym (err -2)", 1);
	assert_int_equal(kmm_kmod_load(k, "fx_b", NULL, 0, &e), -ENOENT);
	assert_non_null(strstr(kmm_error_message(e), "load module fx_b (file "));
	assert_non_null(strstr(kmm_error_message(e), "missing symbol fx_a_sym"));
	/* A failing dependency is named as such. */
	setenv("KMM_SHIM_FAIL", "fx_a:129", 1);
	assert_int_equal(kmm_kmod_unload(k, "fx_a", 0, NULL), 0);
	assert_int_equal(kmm_kmod_load(k, "fx_b", NULL, 0, &e2), -EKEYREJECTED);
	assert_non_null(strstr(kmm_error_message(e2), "dependency of fx_b: load module fx_a"));
	assert_non_null(strstr(kmm_error_message(e2), "the module is not signed"));
}

static void test_lookup_errors(void **state)
{
	_cleanup_kmod_ struct kmm_kmod *k = open_img();
	_cleanup_error_ struct kmm_error *e = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL;
	struct kmm_kmod_options o = { .dir_name = "/nonexistent" };
	struct kmm_kmod *k2 = NULL;
	char p[1024];

	assert_int_equal(kmm_kmod_load(k, "nosuch", NULL, 0, &e), -ENOENT);
	assert_non_null(strstr(kmm_error_message(e), "module nosuch not found in"));

	assert_int_equal(kmm_kmod_new(&o, &k2, &e2), -ENOENT);
	assert_non_null(strstr(kmm_error_message(e2), "no modules for kernel 9.9.9-test"));

	/* A file modules.dep lists but the image lacks. */
	snprintf(p, sizeof(p), "%s/lib/modules/%s/extra/fx_a.ko", img, KVER);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(kmm_kmod_load(k, "fx_a", NULL, 0, &e3), -ENOENT);
	assert_non_null(strstr(kmm_error_message(e3), "the file is missing from the image"));

	/* No depmod output at all. */
	snprintf(p, sizeof(p), "rm -f %s/lib/modules/%s/modules.*", img, KVER);
	sh("%s", p);
	{
		_cleanup_kmod_ struct kmm_kmod *k3 = open_img();
		assert_int_equal(kmm_kmod_load(k3, "fx_b", NULL, 0, &e4), -ENOENT);
		assert_non_null(strstr(kmm_error_message(e4), "has no modules.dep.bin"));
	}
}

static void test_fallback_kernel(void **state)
{
	struct kmm_kmod_options o = { .dir_name = img,
				      .kernel = "9.9.9-test+",
				      .fallback_kernel = KVER };
	_cleanup_kmod_ struct kmm_kmod *k = NULL;

	assert_int_equal(kmm_kmod_new(&o, &k, NULL), 0);
	assert_string_equal(kmm_kmod_kernel(k), KVER);
}

static void test_in_tree_present(void **state)
{
	char n1[] = "fx_intree", n2[] = "fx-intree", n3[] = "nothere";
	char *names[] = { n1, n2, n3, NULL };
	_cleanup_strv_free_ char **present = NULL, **absent = NULL;
	char host[512];

	snprintf(host, sizeof(host), "%s/lib/modules", root);
	unsetenv("KMM_SHIM_ROOT"); /* scan the real path */
	assert_int_equal(kmm_kmod_in_tree_present(names, host, &present, &absent, NULL), 0);
	assert_int_equal(kmm_strv_length(present), 2);
	assert_string_equal(absent[0], "nothere");
	assert_null(absent[1]);

	assert_true(kmm_in_tree_name_matches("dummy.ko.xz", "dummy"));
	assert_true(kmm_in_tree_name_matches("my_mod.ko", "my-mod"));
	assert_false(kmm_in_tree_name_matches("dummy2.ko", "dummy"));
	assert_false(kmm_in_tree_name_matches("dummy", "dummy"));
}

static void test_remove_in_tree_from_host(void **state)
{
	struct kmm_kmod_options o = { .allow_missing = true };
	_cleanup_kmod_ struct kmm_kmod *host = NULL;

	/* The host tree is the shim-redirected /lib/modules/<uname -r>. */
	assert_int_equal(kmm_kmod_new(&o, &host, NULL), 0);
	assert_int_equal(kmm_kmod_load(host, "fx_intree", NULL, 0, NULL), 0);
	assert_int_equal(kmm_kmod_is_loaded(host, "fx_intree"), 1);
	assert_int_equal(kmm_kmod_unload(host, "fx_intree", 0, NULL), 0);
	assert_int_equal(kmm_kmod_is_loaded(host, "fx_intree"), 0);
}

static void test_firmware(void **state)
{
	char image[512], dst[512], p[1024];
	_cleanup_error_ struct kmm_error *e = NULL;
	bool changed = false;
	unsigned n = 0;
	struct stat st;

	assert_int_equal(kmm_firmware_set_class_path("/lib/firmware-kmm", &changed, NULL), 0);
	assert_true(changed);
	assert_string_equal(slurp("/sys/module/firmware_class/parameters/path"),
			    "/lib/firmware-kmm");
	assert_int_equal(kmm_firmware_set_class_path("/lib/firmware-kmm", &changed, NULL), 0);
	assert_false(changed);
	/* In the worker pod the write goes through the mount outside /sys. */
	sh("mkdir -p %s/run/kmm/firmware_class && : > %s/run/kmm/firmware_class/path", root, root);
	assert_int_equal(kmm_firmware_set_class_path("/var/lib/firmware", &changed, NULL), 0);
	assert_true(changed);
	assert_string_equal(slurp("/run/kmm/firmware_class/path"), "/var/lib/firmware");
	assert_string_equal(slurp("/sys/module/firmware_class/parameters/path"),
			    "/lib/firmware-kmm");
	sh("rm -r %s/run/kmm", root);

	snprintf(image, sizeof(image), "%s/img", root);
	snprintf(dst, sizeof(dst), "%s/host/fw", root);
	sh("mkdir -p %s/firmware/sub && echo blob > %s/firmware/a.bin && echo two > "
	   "%s/firmware/sub/b.bin && ln -s a.bin %s/firmware/link.bin && "
	   "ln -s ../a.bin %s/firmware/sub/up.bin",
	   image, image, image, image, image);
	assert_int_equal(kmm_firmware_install(image, "/firmware", dst, NULL, &n, NULL), 0);
	assert_int_equal(n, 4);
	snprintf(p, sizeof(p), "%s/sub/b.bin", dst);
	assert_int_equal(stat(p, &st), 0);
	snprintf(p, sizeof(p), "%s/link.bin", dst);
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	/* Installing again overwrites, and leaves no temporary files behind. */
	assert_int_equal(kmm_firmware_install(image, "firmware", dst, NULL, &n, NULL), 0);
	snprintf(p, sizeof(p), "%s/.a.bin.kmm-new", dst);
	assert_int_equal(access(p, F_OK), -1);

	sh("echo keep > %s/other.bin && mkdir -p %s/theirs && echo x > %s/theirs/t.bin", dst, dst,
	   dst);
	assert_int_equal(kmm_firmware_remove(image, "/firmware", dst, &n, NULL), 0);
	assert_int_equal(n, 4);
	snprintf(p, sizeof(p), "%s/a.bin", dst);
	assert_int_equal(access(p, F_OK), -1);
	/* The directory the install made is gone with its files... */
	snprintf(p, sizeof(p), "%s/sub", dst);
	assert_int_equal(access(p, F_OK), -1);
	/* ...what is not ours stays. */
	snprintf(p, sizeof(p), "%s/other.bin", dst);
	assert_int_equal(access(p, F_OK), 0);
	snprintf(p, sizeof(p), "%s/theirs/t.bin", dst);
	assert_int_equal(access(p, F_OK), 0);

	/* A FIFO in the image is refused. */
	sh("mkfifo %s/firmware/pipe", image);
	assert_int_equal(kmm_firmware_install(image, "/firmware", dst, NULL, NULL, &e), -EPERM);
	assert_non_null(strstr(kmm_error_message(e), "not a file, directory or link"));
}

/* Nothing exists or changed outside `dst` (a marker tree under outside/). */
static void assert_outside_untouched(const char *outside)
{
	char p[1024];
	struct stat st;

	snprintf(p, sizeof(p), "%s/keep", outside);
	assert_int_equal(stat(p, &st), 0);
	assert_string_equal(slurp(p + strlen(root)), "precious\n");
	snprintf(p, sizeof(p), "%s/evil", outside);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/sub/evil", outside);
	assert_int_equal(access(p, F_OK), -1);
}

static void test_firmware_hostile_images(void **state)
{
	char a[512], b[512], dst[512], outside[512], p[1024];
	unsigned n = 0;

	snprintf(a, sizeof(a), "%s/img-a", root);
	snprintf(b, sizeof(b), "%s/img-b", root);
	snprintf(dst, sizeof(dst), "%s/host/fw", root);
	snprintf(outside, sizeof(outside), "%s/outside", root);
	sh("mkdir -p %s/sub %s && echo precious > %s/keep", outside, dst, outside);

	/* Module A's image plants x -> /outside (absolute): refused, nothing written. */
	sh("mkdir -p %s/fw && echo ok > %s/fw/ok.bin && ln -s %s %s/fw/x", a, a, outside, a);
	{
		_cleanup_error_ struct kmm_error *e = NULL;
		assert_int_equal(kmm_firmware_install(a, "/fw", dst, NULL, NULL, &e), -EPERM);
		assert_non_null(strstr(kmm_error_message(e), "x -> "));
		assert_non_null(strstr(kmm_error_message(e), "leaves the firmware directory"));
		snprintf(p, sizeof(p), "%s/ok.bin", dst);
		assert_int_equal(access(p, F_OK), -1); /* checked whole before writing */
	}
	/* A relative link that climbs out is refused too. */
	sh("rm %s/fw/x && mkdir -p %s/fw/d && ln -s ../../../outside %s/fw/d/x", a, a, a);
	{
		_cleanup_error_ struct kmm_error *e = NULL;
		assert_int_equal(kmm_firmware_install(a, "/fw", dst, NULL, NULL, &e), -EPERM);
		assert_non_null(strstr(kmm_error_message(e), "d/x -> ../../../outside"));
	}

	/* The host directory already holds x -> outside (planted by anything): B's
	 * x/evil and x/sub/evil must not land there, and removal must not follow it. */
	sh("ln -s %s %s/x && mkdir -p %s/fw/x/sub && echo evil > %s/fw/x/evil && "
	   "echo evil > %s/fw/x/sub/evil",
	   outside, dst, b, b, b);
	{
		_cleanup_error_ struct kmm_error *e = NULL;
		assert_int_equal(kmm_firmware_install(b, "/fw", dst, NULL, NULL, &e), -ENOTDIR);
		assert_non_null(strstr(kmm_error_message(e), "refusing to write through it"));
	}
	assert_outside_untouched(outside);
	sh("cp %s/keep %s/evil", outside, outside); /* a file removal must not reach */
	{
		_cleanup_error_ struct kmm_error *e = NULL;
		assert_int_equal(kmm_firmware_remove(b, "/fw", dst, &n, &e), -ENOTDIR);
		assert_non_null(strstr(kmm_error_message(e), "x"));
	}
	snprintf(p, sizeof(p), "%s/evil", outside);
	assert_int_equal(access(p, F_OK), 0);
	sh("rm %s/evil", outside);

	/* A file planted as a link at a file's name is replaced, not written through. */
	sh("rm %s/x && ln -s %s/keep %s/ok.bin", dst, outside, dst);
	sh("rm -rf %s/fw/d", a);
	assert_int_equal(kmm_firmware_install(a, "/fw", dst, NULL, &n, NULL), 0);
	assert_outside_untouched(outside);
	snprintf(p, sizeof(p), "%s/host/fw/ok.bin", "");
	assert_string_equal(slurp("/host/fw/ok.bin"), "ok\n");

	/* firmwarePath with "..", or a link in it that leaves the image. */
	{
		_cleanup_error_ struct kmm_error *e = NULL;
		assert_int_equal(kmm_firmware_install(a, "/fw/../../outside", dst, NULL, NULL, &e),
				 -EINVAL);
		assert_non_null(strstr(kmm_error_message(e), "must not contain '..'"));
	}
	sh("ln -s %s %s/escape && ln -s ../../outside %s/escape2", outside, a, a);
	{
		/* Absolute and climbing links resolve inside the image root: no such dir there. */
		_cleanup_error_ struct kmm_error *e = NULL, *e2 = NULL;
		assert_true(kmm_firmware_install(a, "/escape", dst, NULL, NULL, &e) < 0);
		assert_true(kmm_firmware_install(a, "/escape2", dst, NULL, NULL, &e2) < 0);
	}
	assert_outside_untouched(outside);
	/* A link inside the image that stays inside it is followed, as in a container. */
	sh("ln -s fw %s/fwlink", a);
	assert_int_equal(kmm_firmware_install(a, "/fwlink", dst, NULL, &n, NULL), 0);
	assert_int_equal(n, 1);
}

static void test_firmware_caps(void **state)
{
	char img_dir[512], dst[512], p[1024];
	struct kmm_firmware_limits lim = { .file_max = 1024, .total_max = 1536, .entries_max = 8 };

	snprintf(img_dir, sizeof(img_dir), "%s/img-c", root);
	snprintf(dst, sizeof(dst), "%s/host/fw", root);
	sh("mkdir -p %s/fw && head -c 1025 /dev/zero > %s/fw/big.bin", img_dir, img_dir);
	{
		_cleanup_error_ struct kmm_error *e = NULL;
		assert_int_equal(kmm_firmware_install(img_dir, "/fw", dst, &lim, NULL, &e), -EFBIG);
		assert_non_null(
		    strstr(kmm_error_message(e), "big.bin is larger than the per-file cap"));
	}
	snprintf(p, sizeof(p), "%s/big.bin", dst);
	assert_int_equal(access(p, F_OK), -1);
	sh("head -c 1000 /dev/zero > %s/fw/big.bin && head -c 1000 /dev/zero > %s/fw/big2.bin",
	   img_dir, img_dir);
	{
		_cleanup_error_ struct kmm_error *e = NULL;
		assert_int_equal(kmm_firmware_install(img_dir, "/fw", dst, &lim, NULL, &e), -EFBIG);
		assert_non_null(strstr(kmm_error_message(e), "larger than the total cap"));
	}
	sh("rm %s/fw/big2.bin && for i in 1 2 3 4 5 6 7 8; do : > %s/fw/f$i; done", img_dir,
	   img_dir);
	{
		_cleanup_error_ struct kmm_error *e = NULL;
		assert_int_equal(kmm_firmware_install(img_dir, "/fw", dst, &lim, NULL, &e), -EFBIG);
		assert_non_null(strstr(kmm_error_message(e), "more than the allowed entries"));
	}
	/* A deep tree. */
	sh("rm -rf %s/fw && mkdir -p %s/fw/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17/18", img_dir,
	   img_dir);
	{
		_cleanup_error_ struct kmm_error *e = NULL;
		assert_int_equal(kmm_firmware_install(img_dir, "/fw", dst, NULL, NULL, &e), -ELOOP);
	}
	/* The default caps take a sparse file just under the per-file cap's size check. */
	sh("truncate -s %llu %s/big.bin && rm -rf %s/fw && mkdir %s/fw && mv %s/big.bin %s/fw/",
	   (unsigned long long)KMM_FIRMWARE_FILE_MAX + 1, img_dir, img_dir, img_dir, img_dir,
	   img_dir);
	{
		_cleanup_error_ struct kmm_error *e = NULL;
		assert_int_equal(kmm_firmware_install(img_dir, "/fw", dst, NULL, NULL, &e), -EFBIG);
	}
}

static void test_firmware_link_stays_inside(void **state)
{
	assert_true(kmm_firmware_link_stays_inside("", "a.bin"));
	assert_true(kmm_firmware_link_stays_inside("sub", "../a.bin"));
	assert_true(kmm_firmware_link_stays_inside("a/b", "../../c/./d"));
	assert_true(kmm_firmware_link_stays_inside("", "./x/../y"));
	assert_false(kmm_firmware_link_stays_inside("", "../a.bin"));
	assert_false(kmm_firmware_link_stays_inside("sub", "../../a.bin"));
	assert_false(kmm_firmware_link_stays_inside("a", "x/../../../y"));
	assert_false(kmm_firmware_link_stays_inside("", "/lib/firmware/a.bin"));
	assert_false(kmm_firmware_link_stays_inside("", ""));
	assert_false(kmm_firmware_link_stays_inside("./.", ".."));
}

static void test_helpers(void **state)
{
	char buf[64];
	_cleanup_free_ char *opts = NULL;
	char p1[] = "a=1", p2[] = "b=x y", p3[] = "c='q r'";
	char *params[] = { p1, p2, p3, NULL };

	assert_string_equal(kmm_kmsg_record_text("6,339,5140900,-;vmk_a: loaded\n"),
			    "vmk_a: loaded\n");
	assert_null(kmm_kmsg_record_text(" SUBSYSTEM=module"));
	assert_null(kmm_kmsg_record_text("no record"));
	assert_string_equal(kmm_vermagic_release("6.1.0-56-amd64 SMP preempt", buf, sizeof(buf)),
			    "6.1.0-56-amd64");
	assert_null(kmm_vermagic_release("", buf, sizeof(buf)));
	opts = kmm_kmod_join_parameters(params);
	assert_string_equal(opts, "a=1 b=\"x y\" c='q r'");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_load_pulls_dependency_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unload_in_use_then_with_deps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_kernel_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_symbol_and_dependency_named, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_lookup_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fallback_kernel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_in_tree_present, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_in_tree_from_host, setup, teardown),
		cmocka_unit_test_setup_teardown(test_firmware, setup, teardown),
		cmocka_unit_test_setup_teardown(test_firmware_hostile_images, setup, teardown),
		cmocka_unit_test_setup_teardown(test_firmware_caps, setup, teardown),
		cmocka_unit_test(test_firmware_link_stays_inside),
		cmocka_unit_test(test_helpers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
