/* SPDX-License-Identifier: Apache-2.0 */
/*
 * LD_PRELOAD shim for fast worker tests without a kernel (the idea of kmod's
 * testsuite): the module syscalls and uname are faked, and the kernel's files
 * (/sys, /proc/modules, /dev/kmsg, /lib/modules, modprobe.d) are redirected
 * into a fake root whose state the fake syscalls keep up to date.
 *
 * Environment, read at each call:
 *   KMM_SHIM_ROOT     the fake root (required for any redirection)
 *   KMM_SHIM_UNAME    release uname() reports (default 9.9.9-test)
 *   KMM_SHIM_FAIL     "name:ERRNO[:kernel log line],..." makes inserting `name` fail
 *   KMM_SHIM_DELAY_MS sleep this long in every insert (signal tests)
 *
 * An insert appends "insmod NAME OPTIONS" to <root>/calls.log, a removal
 * "rmmod NAME"; a loaded module gets a /proc/modules line and
 * /sys/module/NAME/{initstate,refcnt,holders/}, its "depends=" modules get
 * their refcnt raised and a holders entry.
 */
/* Both the plain and the 64-bit names are defined below, so no redirection. */
#undef _FILE_OFFSET_BITS
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static const char *const redirected[] = {
	"/sys/",
	"/proc/modules",
	"/proc/cmdline",
	"/dev/kmsg",
	"/lib/modules",
	"/etc/modprobe.d",
	"/run/modprobe.d",
	"/lib/modprobe.d",
	"/usr/lib/modprobe.d",
	"/etc/modprobe.conf",
	"/run/kmm/",
	NULL,
};

static __thread char path_buf[2][4096];
static __thread int path_idx;

static const char *redirect(const char *path)
{
	const char *root = getenv("KMM_SHIM_ROOT");
	char *out;

	if (!root || !path || path[0] != '/')
		return path;
	for (const char *const *p = redirected; *p; p++) {
		size_t n = strlen(*p);
		if (strncmp(path, *p, n) == 0 &&
		    (path[n] == '\0' || path[n] == '/' || (*p)[n - 1] == '/')) {
			out = path_buf[path_idx++ & 1];
			snprintf(out, sizeof(path_buf[0]), "%s%s", root, path);
			return out;
		}
	}
	return path;
}

#define REAL(name)                                                                                 \
	static __typeof__(name) *real_##name;                                                      \
	if (!real_##name)                                                                          \
	real_##name = dlsym(RTLD_NEXT, #name)

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;
	REAL(open);

	va_start(ap, flags);
	if (flags & (O_CREAT | __O_TMPFILE))
		mode = va_arg(ap, mode_t);
	va_end(ap);
	return real_open(redirect(path), flags, mode);
}

int open64(const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;
	REAL(open64);

	va_start(ap, flags);
	if (flags & (O_CREAT | __O_TMPFILE))
		mode = va_arg(ap, mode_t);
	va_end(ap);
	return real_open64(redirect(path), flags, mode);
}

int openat(int dfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;
	REAL(openat);

	va_start(ap, flags);
	if (flags & (O_CREAT | __O_TMPFILE))
		mode = va_arg(ap, mode_t);
	va_end(ap);
	return real_openat(dfd, redirect(path), flags, mode);
}

int openat64(int dfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;
	REAL(openat64);

	va_start(ap, flags);
	if (flags & (O_CREAT | __O_TMPFILE))
		mode = va_arg(ap, mode_t);
	va_end(ap);
	return real_openat64(dfd, redirect(path), flags, mode);
}

FILE *fopen(const char *path, const char *mode)
{
	REAL(fopen);
	return real_fopen(redirect(path), mode);
}

FILE *fopen64(const char *path, const char *mode)
{
	REAL(fopen64);
	return real_fopen64(redirect(path), mode);
}

int stat(const char *path, struct stat *st)
{
	REAL(stat);
	return real_stat(redirect(path), st);
}

int stat64(const char *path, struct stat64 *st)
{
	REAL(stat64);
	return real_stat64(redirect(path), st);
}

int lstat64(const char *path, struct stat64 *st)
{
	REAL(lstat64);
	return real_lstat64(redirect(path), st);
}

int fstatat64(int dfd, const char *path, struct stat64 *st, int flags)
{
	REAL(fstatat64);
	return real_fstatat64(dfd, redirect(path), st, flags);
}

int lstat(const char *path, struct stat *st)
{
	REAL(lstat);
	return real_lstat(redirect(path), st);
}

int fstatat(int dfd, const char *path, struct stat *st, int flags)
{
	REAL(fstatat);
	return real_fstatat(dfd, redirect(path), st, flags);
}

int access(const char *path, int mode)
{
	REAL(access);
	return real_access(redirect(path), mode);
}

DIR *opendir(const char *path)
{
	REAL(opendir);
	return real_opendir(redirect(path));
}

int uname(struct utsname *u)
{
	const char *rel = getenv("KMM_SHIM_UNAME");

	memset(u, 0, sizeof(*u));
	snprintf(u->sysname, sizeof(u->sysname), "Linux");
	snprintf(u->nodename, sizeof(u->nodename), "kmm-shim");
	snprintf(u->release, sizeof(u->release), "%s", rel ? rel : "9.9.9-test");
	snprintf(u->version, sizeof(u->version), "#1 SMP kmm-shim");
	snprintf(u->machine, sizeof(u->machine), "x86_64");
	return 0;
}

/* ---- the fake kernel ---- */

static int root_path(char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int root_path(char *buf, size_t n, const char *fmt, ...)
{
	const char *root = getenv("KMM_SHIM_ROOT");
	char rel[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	return snprintf(buf, n, "%s%s", root ? root : "", rel);
}

/* The integer at the start of a FILE, or `dflt` when there is none. */
static int read_int(FILE *f, int dflt)
{
	char buf[32];
	char *end;
	long v;

	if (!fgets(buf, sizeof(buf), f))
		return dflt;
	v = strtol(buf, &end, 10);
	return end == buf ? dflt : (int)v;
}

static void write_file(const char *path, const char *mode, const char *text)
{
	REAL(fopen);
	FILE *f = real_fopen(path, mode);

	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void log_call(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_call(const char *fmt, ...)
{
	char path[4096], line[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	root_path(path, sizeof(path), "/calls.log");
	write_file(path, "a", line);
}

/*
 * Finds "key=" in the module image (the .modinfo strings; the byte before the
 * first one belongs to another section, so it is not required to be NUL) and
 * copies the value.
 */
static int modinfo_get(const char *img, size_t len, const char *key, char *out, size_t n)
{
	size_t kl = strlen(key);

	for (size_t i = 0; i + kl + 1 < len; i++) {
		if (memcmp(img + i, key, kl) == 0 && img[i + kl] == '=') {
			snprintf(out, n, "%.*s", (int)strnlen(img + i + kl + 1, len - i - kl - 1),
				 img + i + kl + 1);
			return 0;
		}
	}
	return -1;
}

/* Returns 0 or the errno KMM_SHIM_FAIL asks for (and logs its kernel line). */
static int injected_failure(const char *name)
{
	const char *spec = getenv("KMM_SHIM_FAIL");
	char buf[2048], *save = NULL, *tok;

	if (!spec)
		return 0;
	snprintf(buf, sizeof(buf), "%s", spec);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *c1 = strchr(tok, ':'), *c2;
		if (!c1)
			continue;
		*c1 = '\0';
		if (strcmp(tok, name) != 0)
			continue;
		c2 = strchr(c1 + 1, ':');
		if (c2) {
			char path[4096], line[1200];
			*c2 = '\0';
			root_path(path, sizeof(path), "/dev/kmsg");
			snprintf(line, sizeof(line), "3,100,1000,-;%s\n", c2 + 1);
			write_file(path, "a", line);
		}
		return (int)strtol(c1 + 1, NULL, 10);
	}
	return 0;
}

static int fake_insert(const void *img, size_t len, const char *options)
{
	char name[256], deps[1024], path[4096], line[1400];
	const char *delay = getenv("KMM_SHIM_DELAY_MS");
	int e;

	if (modinfo_get(img, len, "name", name, sizeof(name)) < 0) {
		errno = ENOEXEC;
		return -1;
	}
	if (delay) {
		long ms = strtol(delay, NULL, 10);
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
	root_path(path, sizeof(path), "/sys/module/%s/initstate", name);
	if (access(path, F_OK) == 0) {
		errno = EEXIST;
		return -1;
	}
	e = injected_failure(name);
	if (e) {
		errno = e;
		return -1;
	}
	log_call("insmod %s %s\n", name, options ? options : "");
	root_path(path, sizeof(path), "/sys/module/%s", name);
	mkdir(path, 0755);
	root_path(path, sizeof(path), "/sys/module/%s/holders", name);
	mkdir(path, 0755);
	root_path(path, sizeof(path), "/sys/module/%s/initstate", name);
	write_file(path, "w", "live\n");
	root_path(path, sizeof(path), "/sys/module/%s/refcnt", name);
	write_file(path, "w", "0\n");
	root_path(path, sizeof(path), "/proc/modules");
	snprintf(line, sizeof(line), "%s 16384 0 - Live 0x0000000000000000\n", name);
	write_file(path, "a", line);
	if (modinfo_get(img, len, "depends", deps, sizeof(deps)) == 0) {
		char *save = NULL;
		for (char *d = strtok_r(deps, ",", &save); d; d = strtok_r(NULL, ",", &save)) {
			char rc[16];
			int n = 0;
			REAL(fopen);
			FILE *f;
			root_path(path, sizeof(path), "/sys/module/%s/refcnt", d);
			f = real_fopen(path, "r");
			if (f) {
				n = read_int(f, 0);
				fclose(f);
			}
			snprintf(rc, sizeof(rc), "%d\n", n + 1);
			write_file(path, "w", rc);
			root_path(path, sizeof(path), "/sys/module/%s/holders/%s", d, name);
			write_file(path, "w", "");
		}
	}
	return 0;
}

static int fake_finit(int fd, const char *options)
{
	struct stat st;
	void *img;
	int r;

	if (fstat(fd, &st) < 0)
		return -1;
	img = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (img == MAP_FAILED)
		return -1;
	r = fake_insert(img, (size_t)st.st_size, options);
	munmap(img, (size_t)st.st_size);
	return r;
}

static void rm_rf(const char *path)
{
	DIR *d;
	struct dirent *de;
	REAL(opendir);

	d = real_opendir(path);
	if (d) {
		while ((de = readdir(d))) {
			char sub[4096];
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
			rm_rf(sub);
		}
		closedir(d);
		rmdir(path);
	} else {
		unlink(path);
	}
}

static int fake_delete(const char *name)
{
	char path[4096], line[1024], out[65536] = "";
	int refcnt = 0;
	REAL(fopen);
	FILE *f;

	root_path(path, sizeof(path), "/sys/module/%s/refcnt", name);
	f = real_fopen(path, "r");
	if (!f) {
		errno = ENOENT;
		return -1;
	}
	refcnt = read_int(f, 0);
	fclose(f);
	if (refcnt > 0) {
		errno = EWOULDBLOCK;
		return -1;
	}
	log_call("rmmod %s\n", name);
	root_path(path, sizeof(path), "/proc/modules");
	f = real_fopen(path, "r");
	if (f) {
		size_t nl = strlen(name);
		while (fgets(line, sizeof(line), f)) {
			if (strncmp(line, name, nl) == 0 && line[nl] == ' ')
				continue;
			strncat(out, line, sizeof(out) - strlen(out) - 1);
		}
		fclose(f);
		write_file(path, "w", out);
	}
	/* Drop the reference this module held on the ones it depended on. */
	root_path(path, sizeof(path), "/sys/module");
	{
		REAL(opendir);
		DIR *d = real_opendir(path);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			char h[4096], rc[16];
			int n = 0;
			root_path(h, sizeof(h), "/sys/module/%s/holders/%s", de->d_name, name);
			if (access(h, F_OK) < 0)
				continue;
			unlink(h);
			root_path(h, sizeof(h), "/sys/module/%s/refcnt", de->d_name);
			f = real_fopen(h, "r");
			if (f) {
				n = read_int(f, 1);
				fclose(f);
			}
			snprintf(rc, sizeof(rc), "%d\n", n > 0 ? n - 1 : 0);
			write_file(h, "w", rc);
		}
		if (d)
			closedir(d);
	}
	root_path(path, sizeof(path), "/sys/module/%s", name);
	rm_rf(path);
	return 0;
}

int init_module(void *img, unsigned long len, const char *options);
int finit_module(int fd, const char *options, int flags);
int delete_module(const char *name, unsigned int flags);

int init_module(void *img, unsigned long len, const char *options)
{
	return fake_insert(img, len, options);
}

int finit_module(int fd, const char *options, int flags)
{
	return fake_finit(fd, options);
}

int delete_module(const char *name, unsigned int flags)
{
	return fake_delete(name);
}

long syscall(long nr, ...)
{
	va_list ap;
	long a1, a2, a3, a4, a5, a6;
	REAL(syscall);

	va_start(ap, nr);
	a1 = va_arg(ap, long);
	a2 = va_arg(ap, long);
	a3 = va_arg(ap, long);
	a4 = va_arg(ap, long);
	a5 = va_arg(ap, long);
	a6 = va_arg(ap, long);
	va_end(ap);
	/* syscall() hands every argument over as a long; pointers among them. */
	if (nr == __NR_finit_module)
		return fake_finit((int)a1, (const char *)a2); // NOLINT(performance-no-int-to-ptr)
	if (nr == __NR_init_module) {
		const void *img = (const void *)a1;  // NOLINT(performance-no-int-to-ptr)
		const char *opts = (const char *)a3; // NOLINT(performance-no-int-to-ptr)
		return fake_insert(img, (size_t)a2, opts);
	}
	if (nr == __NR_delete_module)
		return fake_delete((const char *)a1); // NOLINT(performance-no-int-to-ptr)
	return real_syscall(nr, a1, a2, a3, a4, a5, a6);
}
