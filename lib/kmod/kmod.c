/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The libkmod wrapper: load and unload with modprobe's semantics, and errors
 * worded for the person who runs the node.
 */
#include <errno.h>
#include <libkmod.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "kmm/shared-buf.h"
#include "kmm/kmod.h"
#include "kmm/shared-log.h"
#include "kmm/shared-strv.h"
#include "lib/kmod/kmod-internal.h"

struct kmm_kmod {
	struct kmod_ctx *ctx;
	char *dirname; /* <dir_name>/lib/modules/<kernel> */
	char *kernel;
	char *running; /* uname -r, for messages */
	kmm_kmod_action_fn action_fn;
	void *action_data;
	/* The module libkmod is inserting right now (from its print_action hook). */
	char *current_name;
	char *current_path;
};

/*
 * libkmod's print_action hook has no user pointer; the handle in use is kept
 * here for the duration of one probe (the handle is not thread-safe anyway).
 */
static __thread struct kmm_kmod *probing;

static void kmod_log_to_debug(void *data, int priority, const char *file, int line, const char *fn,
			      const char *format, va_list args) _printf_(6, 0);
static void kmod_log_to_debug(void *data, int priority, const char *file, int line, const char *fn,
			      const char *format, va_list args)
{
	char msg[512];

	if (!kmm_log_enabled(KMM_LOG_DEBUG))
		return;
	vsnprintf(msg, sizeof(msg), format, args);
	msg[strcspn(msg, "\n")] = '\0';
	kmm_debug("libkmod", "msg", msg, "fn", fn);
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *tree_path(const char *dir_name, const char *kernel)
{
	char *p = NULL;
	bool host = !dir_name || !*dir_name || strcmp(dir_name, "/") == 0;
	size_t n = host ? 0 : strlen(dir_name);

	while (n > 1 && dir_name[n - 1] == '/')
		n--;
	if (asprintf(&p, "%.*s/lib/modules/%s", (int)n, host ? "" : dir_name, kernel) < 0)
		return NULL;
	return p;
}

int kmm_kmod_new(const struct kmm_kmod_options *opts, struct kmm_kmod **ret_kmod,
		 struct kmm_error **err)
{
	static const struct kmm_kmod_options defaults = { 0 };
	_cleanup_free_ struct kmm_kmod *k = NULL;
	_cleanup_free_ char *dirname = NULL, *kernel = NULL, *running = NULL;
	struct utsname u;

	if (!opts)
		opts = &defaults;
	if (uname(&u) < 0)
		return kmm_error_make_errno(err, errno, "uname");
	running = strdup(u.release);
	kernel = strdup(opts->kernel ? opts->kernel : u.release);
	if (!running || !kernel)
		return kmm_error_make(err, ENOMEM, "out of memory");
	dirname = tree_path(opts->dir_name, kernel);
	if (!dirname)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (!is_dir(dirname) && opts->fallback_kernel && *opts->fallback_kernel &&
	    strcmp(opts->fallback_kernel, kernel) != 0) {
		_cleanup_free_ char *alt = tree_path(opts->dir_name, opts->fallback_kernel);
		if (!alt)
			return kmm_error_make(err, ENOMEM, "out of memory");
		if (is_dir(alt)) {
			free(dirname);
			free(kernel);
			dirname = TAKE_PTR(alt);
			kernel = strdup(opts->fallback_kernel);
			if (!kernel)
				return kmm_error_make(err, ENOMEM, "out of memory");
		}
	}
	if (!is_dir(dirname) && !opts->allow_missing)
		return kmm_error_make(err, ENOENT,
				      "no modules for kernel %s: directory %s does not exist "
				      "(the image must hold <dirName>/lib/modules/<kernel>)",
				      kernel, dirname);

	k = calloc(1, sizeof(*k));
	if (!k)
		return kmm_error_make(err, ENOMEM, "out of memory");
	k->ctx = kmod_new(dirname, opts->config_paths);
	if (!k->ctx)
		return kmm_error_make(err, ENOMEM, "libkmod: cannot create a context for %s",
				      dirname);
	kmod_set_log_fn(k->ctx, kmod_log_to_debug, NULL);
	/* Map the indexes once, as modprobe does, rather than per lookup. */
	if (is_dir(dirname))
		(void)kmod_load_resources(k->ctx);
	k->dirname = TAKE_PTR(dirname);
	k->kernel = TAKE_PTR(kernel);
	k->running = TAKE_PTR(running);
	*ret_kmod = TAKE_PTR(k);
	return 0;
}

void kmm_kmod_free(struct kmm_kmod *k)
{
	if (!k)
		return;
	kmod_unref(k->ctx);
	free(k->dirname);
	free(k->kernel);
	free(k->running);
	free(k->current_name);
	free(k->current_path);
	free(k);
}

const char *kmm_kmod_dirname(const struct kmm_kmod *k)
{
	return k->dirname;
}

const char *kmm_kmod_kernel(const struct kmm_kmod *k)
{
	return k->kernel;
}

void kmm_kmod_set_action_fn(struct kmm_kmod *k, kmm_kmod_action_fn fn, void *userdata)
{
	k->action_fn = fn;
	k->action_data = userdata;
}

char *kmm_kmod_join_parameters(char *const *parameters)
{
	struct kmm_buf b;

	kmm_buf_init(&b, 0);
	KMM_STRV_FOREACH (p, parameters) {
		const char *eq = strchr(p, '=');
		bool quote = eq && eq[1] != '"' && eq[1] != '\'' && strchr(eq, ' ');
		int r = 0;

		if (b.len > 0)
			r = kmm_buf_append_str(&b, " ");
		if (r == 0 && quote)
			r = kmm_buf_printf(&b, "%.*s\"%s\"", (int)(eq - p + 1), p, eq + 1);
		else if (r == 0)
			r = kmm_buf_append_str(&b, p);
		if (r < 0) {
			kmm_buf_free(&b);
			return NULL;
		}
	}
	return kmm_buf_steal(&b);
}

/* ---- describing failures ---- */

KMM_TESTABLE const char *kmm_vermagic_release(const char *vermagic, char *buf, size_t n)
{
	size_t len;

	if (!vermagic)
		return NULL;
	vermagic += strspn(vermagic, " ");
	len = strcspn(vermagic, " ");
	if (len == 0 || n == 0)
		return NULL;
	if (len >= n)
		len = n - 1;
	memcpy(buf, vermagic, len);
	buf[len] = '\0';
	return buf;
}

/* The module's .modinfo as libkmod reads it (signature keys included). */
struct modinfo {
	char *vermagic;
	char *signer;
	char *sig_key;
	bool signed_;
};

static void modinfo_done(struct modinfo *mi)
{
	free(mi->vermagic);
	free(mi->signer);
	free(mi->sig_key);
}

static void modinfo_read(struct kmod_module *mod, struct modinfo *mi)
{
	struct kmod_list *list = NULL, *l;

	memset(mi, 0, sizeof(*mi));
	if (kmod_module_get_info(mod, &list) < 0)
		return;
	kmod_list_foreach (l, list) {
		const char *key = kmod_module_info_get_key(l);
		const char *value = kmod_module_info_get_value(l);

		if (!key || !value)
			continue;
		if (strcmp(key, "vermagic") == 0 && !mi->vermagic)
			mi->vermagic = strdup(value);
		else if (strcmp(key, "signer") == 0 && !mi->signer)
			mi->signer = strdup(value);
		else if (strcmp(key, "sig_key") == 0 && !mi->sig_key)
			mi->sig_key = strdup(value);
		else if (strcmp(key, "sig_id") == 0)
			mi->signed_ = true;
	}
	kmod_module_info_free_list(list);
}

/* First line of the kernel log that contains `needle`, or NULL. */
static const char *log_find(const char *log, const char *needle)
{
	const char *p = strstr(log, needle);

	if (!p)
		return NULL;
	while (p > log && p[-1] != '\n')
		p--;
	return p;
}

/* The word after `needle` in the kernel log (e.g. the symbol name), in buf. */
static const char *log_word_after(const char *log, const char *needle, char *buf, size_t n)
{
	const char *p = strstr(log, needle);
	size_t len;

	if (!p || n == 0)
		return NULL;
	p += strlen(needle);
	p += strspn(p, " '`");
	len = strcspn(p, " '\n()");
	if (len == 0)
		return NULL;
	if (len >= n)
		len = n - 1;
	memcpy(buf, p, len);
	buf[len] = '\0';
	return buf;
}

static void describe_signature(struct kmm_buf *b, const struct modinfo *mi, int code)
{
	if (code == EBADMSG) {
		kmm_buf_printf(b, "its signature is malformed (a corrupt or truncated "
				  "PKCS#7 blob), so the kernel refuses it; re-sign the "
				  "module with sign-file");
		return;
	}
	if (code == EKEYEXPIRED) {
		kmm_buf_printf(b, "the key that signed it has expired or is not yet valid");
		return;
	}
	if (!mi->signed_) {
		kmm_buf_printf(b, "the module is not signed, and this kernel only loads "
				  "signed modules (module.sig_enforce=1, or Secure Boot "
				  "lockdown); sign it with a key the kernel trusts");
		return;
	}
	kmm_buf_printf(b,
		       "the module is signed by '%s' (key %s), a key this kernel does "
		       "not trust while it enforces signatures; enroll that certificate "
		       "(e.g. as a MOK) or sign with a trusted key",
		       mi->signer ? mi->signer : "unknown signer",
		       mi->sig_key ? mi->sig_key : "unknown");
}

/*
 * Builds "load module X (file F): <cause>[; kernel log: ...]" for an insert that
 * failed with -code.
 */
static int insert_error(struct kmm_kmod *k, struct kmod_module *mod, int code, const char *klog,
			struct kmm_error **err)
{
	const char *name = kmod_module_get_name(mod);
	const char *path = kmod_module_get_path(mod);
	_cleanup_buf_ struct kmm_buf cause;
	struct modinfo mi;
	char word[128], built[128];

	kmm_buf_init(&cause, 0);
	if (path && access(path, F_OK) < 0) {
		kmm_buf_printf(&cause, "the file is missing from the image (modules.dep lists it; "
				       "rebuild the image or re-run depmod)");
		goto out;
	}
	modinfo_read(mod, &mi);
	switch (code) {
	case ENOEXEC:
		if (kmm_vermagic_release(mi.vermagic, built, sizeof(built)) &&
		    strcmp(built, k->running) != 0)
			kmm_buf_printf(&cause,
				       "wrong kernel: the module was built for kernel %s, "
				       "this kernel is %s (vermagic '%s')",
				       built, k->running, mi.vermagic);
		else
			kmm_buf_printf(&cause,
				       "the kernel rejected the module's format: it does not "
				       "match this kernel's build (vermagic '%s', symbol "
				       "versions or architecture)",
				       mi.vermagic ? mi.vermagic : "none");
		break;
	case EKEYREJECTED:
	case ENOKEY:
	case EKEYEXPIRED:
	case EBADMSG:
		describe_signature(&cause, &mi, code);
		break;
	case ENOENT:
		if (log_word_after(klog, "Unknown symbol", word, sizeof(word)))
			kmm_buf_printf(&cause,
				       "missing symbol %s: no loaded module exports it (a "
				       "dependency is missing from the image or from modules.dep)",
				       word);
		else if (log_word_after(klog, "nknown parameter", word, sizeof(word)))
			kmm_buf_printf(&cause, "unknown parameter '%s'", word);
		else
			kmm_buf_printf(&cause,
				       "the module's init failed with 'No such file or "
				       "directory' (often a firmware file it requested is "
				       "missing: check firmware_class.path and firmwarePath)");
		break;
	case EEXIST:
		kmm_buf_printf(&cause, "a module of that name is already loaded");
		break;
	case EPERM:
		kmm_buf_printf(&cause,
			       "operation not permitted: the worker needs CAP_SYS_MODULE, and "
			       "the kernel may forbid loading (kernel.modules_disabled=1 or "
			       "lockdown)");
		break;
	case EINVAL:
		if (log_find(klog, "disagrees about version of symbol"))
			kmm_buf_printf(&cause,
				       "wrong kernel: the module's symbol versions do "
				       "not match this kernel (%s)",
				       k->running);
		else
			kmm_buf_printf(&cause, "invalid module or parameters (%s)", strerror(code));
		break;
	case EBUSY:
		kmm_buf_printf(&cause, "the kernel is busy loading it (try again)");
		break;
	default:
		kmm_buf_printf(&cause, "%s (the module's init or the kernel refused it)",
			       strerror(code));
		break;
	}
	modinfo_done(&mi);
out:
	if (klog && *klog)
		kmm_buf_printf(&cause, "; kernel log: %s", klog);
	return kmm_error_make(err, code, "load module %s (file %s): %s", name,
			      path ? path : "(none)", kmm_buf_str(&cause));
}

static void on_probe_action(struct kmod_module *m, bool install, const char *options)
{
	struct kmm_kmod *k = probing;
	const char *path = kmod_module_get_path(m);

	if (!k)
		return;
	free(k->current_name);
	free(k->current_path);
	k->current_name = strdup(kmod_module_get_name(m));
	k->current_path = path ? strdup(path) : NULL;
	if (k->action_fn && !install)
		k->action_fn(KMM_KMOD_ACTION_INSMOD, kmod_module_get_name(m), path,
			     options ? options : "", k->action_data);
}

static int lookup(struct kmm_kmod *k, const char *name, struct kmod_list **ret_list,
		  struct kmm_error **err)
{
	struct kmod_list *list = NULL;
	_cleanup_free_ char *dep = NULL;
	int r;

	r = kmod_module_new_from_lookup(k->ctx, name, &list);
	if (r >= 0 && list) {
		*ret_list = list;
		return 0;
	}
	if (asprintf(&dep, "%s/modules.dep.bin", k->dirname) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (access(dep, F_OK) < 0)
		return kmm_error_make(err, ENOENT,
				      "module %s: %s has no modules.dep.bin; build the image "
				      "with `depmod -b <dirName> %s`",
				      name, k->dirname, k->kernel);
	return kmm_error_make(err, ENOENT,
			      "module %s not found in %s (no such module or alias in "
			      "modules.dep; check moduleName and the image)",
			      name, k->dirname);
}

static int probe_flags(unsigned flags)
{
	int f = KMOD_PROBE_APPLY_BLACKLIST_ALIAS_ONLY;

	if (flags & KMM_KMOD_LOAD_FAIL_ON_LOADED)
		f |= KMOD_PROBE_FAIL_ON_LOADED;
	if (flags & KMM_KMOD_LOAD_IGNORE_COMMANDS)
		f |= KMOD_PROBE_IGNORE_COMMAND;
	if (flags & KMM_KMOD_LOAD_FORCE_VERMAGIC)
		f |= KMOD_PROBE_FORCE_VERMAGIC;
	if (flags & KMM_KMOD_LOAD_FORCE_MODVERSION)
		f |= KMOD_PROBE_FORCE_MODVERSION;
	if (flags & KMM_KMOD_LOAD_USE_BLACKLIST)
		f |= KMOD_PROBE_APPLY_BLACKLIST;
	if (flags & KMM_KMOD_LOAD_DRY_RUN)
		f |= KMOD_PROBE_DRY_RUN | KMOD_PROBE_IGNORE_LOADED;
	return f;
}

static int probe_one(struct kmm_kmod *k, struct kmod_module *mod, const char *options,
		     unsigned flags, struct kmm_error **err)
{
	_cleanup_buf_ struct kmm_buf klog;
	struct kmm_kmsg kmsg;
	struct kmod_module *failed = NULL;
	int r;

	kmm_buf_init(&klog, 4096);
	kmm_kmsg_open(&kmsg);
	k->current_name = kmm_free_and_null(k->current_name);
	probing = k;
	r = kmod_module_probe_insert_module(mod, probe_flags(flags), options, NULL, NULL,
					    on_probe_action);
	probing = NULL;
	if (r >= 0) {
		kmm_kmsg_close(&kmsg);
		return 0;
	}
	kmm_kmsg_collect(&kmsg, &klog, 6);
	kmm_kmsg_close(&kmsg);

	if (r == -EEXIST && (flags & KMM_KMOD_LOAD_FAIL_ON_LOADED))
		return kmm_error_make(err, EEXIST, "load module %s: already loaded (--first-time)",
				      kmod_module_get_name(mod));
	/* The module being inserted when it failed: a dependency, or mod itself. */
	if (k->current_name && strcmp(k->current_name, kmod_module_get_name(mod)) != 0) {
		if (k->current_path)
			kmod_module_new_from_path(k->ctx, k->current_path, &failed);
		else
			kmod_module_new_from_name(k->ctx, k->current_name, &failed);
	}
	r = insert_error(k, failed ? failed : mod, -r, kmm_buf_str(&klog), err);
	if (failed) {
		kmm_error_wrap(err, "dependency of %s", kmod_module_get_name(mod));
		kmod_module_unref(failed);
	}
	return r;
}

int kmm_kmod_load(struct kmm_kmod *k, const char *name, const char *options, unsigned flags,
		  struct kmm_error **err)
{
	struct kmod_list *list = NULL, *l;
	int r;

	r = lookup(k, name, &list, err);
	if (r < 0)
		return r;
	kmod_list_foreach (l, list) {
		struct kmod_module *mod = kmod_module_get_module(l);

		r = probe_one(k, mod, options, flags, err);
		kmod_module_unref(mod);
		if (r < 0)
			break;
	}
	kmod_module_unref_list(list);
	return r;
}

/* ---- unloading ---- */

static int remove_error(struct kmod_module *mod, int code, struct kmm_error **err)
{
	const char *name = kmod_module_get_name(mod);
	struct kmod_list *holders, *l;
	_cleanup_strv_free_ char **names = NULL;
	_cleanup_free_ char *joined = NULL;

	if (code != EBUSY && code != EAGAIN)
		return kmm_error_make_errno(err, code, "unload module %s", name);
	holders = kmod_module_get_holders(mod);
	kmod_list_foreach (l, holders) {
		struct kmod_module *h = kmod_module_get_module(l);
		(void)kmm_strv_push(&names, kmod_module_get_name(h));
		kmod_module_unref(h);
	}
	kmod_module_unref_list(holders);
	joined = kmm_strv_join(names, ", ");
	if (joined && *joined)
		return kmm_error_make(err, EBUSY,
				      "unload module %s: the module is in use by %s (use count "
				      "%d); unload those first",
				      name, joined, kmod_module_get_refcnt(mod));
	return kmm_error_make(err, EBUSY,
			      "unload module %s: the module is in use (use count %d: a "
			      "process or device holds it); stop its users first",
			      name, kmod_module_get_refcnt(mod));
}

static int remove_module(struct kmm_kmod *k, struct kmod_module *mod, unsigned flags)
{
	const char *path = kmod_module_get_path(mod);

	if (k->action_fn)
		k->action_fn(KMM_KMOD_ACTION_RMMOD, kmod_module_get_name(mod), path, "",
			     k->action_data);
	if (flags & KMM_KMOD_UNLOAD_DRY_RUN)
		return 0;
	return kmod_module_remove_module(mod, 0);
}

static int unload_module(struct kmm_kmod *k, struct kmod_module *mod, unsigned flags, bool first,
			 struct kmm_error **err);

static void unload_list_reverse(struct kmm_kmod *k, struct kmod_list *list, unsigned flags)
{
	struct kmod_list *l;

	kmod_list_foreach_reverse(l, list)
	{
		struct kmod_module *m = kmod_module_get_module(l);
		(void)unload_module(k, m, flags & ~KMM_KMOD_UNLOAD_REMOVE_HOLDERS, false, NULL);
		kmod_module_unref(m);
	}
}

static int unload_module(struct kmm_kmod *k, struct kmod_module *mod, unsigned flags, bool first,
			 struct kmm_error **err)
{
	const char *name = kmod_module_get_name(mod);
	struct kmod_list *pre = NULL, *post = NULL, *deps, *l;
	const char *cmd = NULL;
	int state, r = 0;

	if (!(flags & KMM_KMOD_UNLOAD_IGNORE_COMMANDS)) {
		(void)kmod_module_get_softdeps(mod, &pre, &post);
		cmd = kmod_module_get_remove_commands(mod);
	}
	if (cmd) {
		r = kmm_error_make(err, EOPNOTSUPP,
				   "unload module %s: modprobe.d has a 'remove' command for it; "
				   "use rawArgs to run modprobe",
				   name);
		goto out;
	}
	state = kmod_module_get_initstate(mod);
	if (state < 0) {
		if (first && (flags & KMM_KMOD_UNLOAD_FAIL_IF_ABSENT))
			r = kmm_error_make(err, ENOENT, "unload module %s: not loaded", name);
		goto out; /* nothing to do */
	}
	if (state == KMOD_MODULE_BUILTIN) {
		if (first)
			r = kmm_error_make(err, ENOENT,
					   "unload module %s: it is built into the kernel and "
					   "cannot be unloaded",
					   name);
		goto out;
	}
	unload_list_reverse(k, post, flags);
	if (flags & KMM_KMOD_UNLOAD_REMOVE_HOLDERS) {
		struct kmod_list *holders = kmod_module_get_holders(mod);
		kmod_list_foreach_reverse(l, holders)
		{
			struct kmod_module *h = kmod_module_get_module(l);
			r = unload_module(k, h, flags & ~KMM_KMOD_UNLOAD_REMOVE_HOLDERS, false,
					  err);
			kmod_module_unref(h);
			if (r < 0)
				break;
		}
		kmod_module_unref_list(holders);
		if (r < 0)
			goto out;
	}
	if (kmod_module_get_refcnt(mod) > 0) {
		r = remove_error(mod, EBUSY, err);
		goto out;
	}
	r = remove_module(k, mod, flags);
	if (r < 0) {
		r = remove_error(mod, -r, err);
		goto out;
	}
	/* Dependencies nothing uses any more go too; failures do not matter. */
	deps = kmod_module_get_dependencies(mod);
	kmod_list_foreach (l, deps) {
		struct kmod_module *d = kmod_module_get_module(l);
		if (kmod_module_get_initstate(d) == KMOD_MODULE_LIVE &&
		    kmod_module_get_refcnt(d) == 0)
			(void)remove_module(k, d, flags);
		kmod_module_unref(d);
	}
	kmod_module_unref_list(deps);
	unload_list_reverse(k, pre, flags);
out:
	kmod_module_unref_list(pre);
	kmod_module_unref_list(post);
	return r;
}

int kmm_kmod_unload(struct kmm_kmod *k, const char *name, unsigned flags, struct kmm_error **err)
{
	struct kmod_list *list = NULL, *l;
	int r;

	r = kmod_module_new_from_lookup(k->ctx, name, &list);
	if (r < 0 || !list) {
		/* Not in this tree, but perhaps loaded: go by name, as rmmod does. */
		struct kmod_module *mod = NULL;
		if (kmod_module_new_from_name(k->ctx, name, &mod) < 0)
			return kmm_error_make(err, ENOMEM, "out of memory");
		r = unload_module(k, mod, flags, true, err);
		kmod_module_unref(mod);
		return r;
	}
	kmod_list_foreach (l, list) {
		struct kmod_module *mod = kmod_module_get_module(l);
		r = unload_module(k, mod, flags, true, err);
		kmod_module_unref(mod);
		if (r < 0)
			break;
	}
	kmod_module_unref_list(list);
	return r;
}

int kmm_kmod_is_loaded(struct kmm_kmod *k, const char *name)
{
	struct kmod_module *mod = NULL;
	int r;

	r = kmod_module_new_from_name(k->ctx, name, &mod);
	if (r < 0)
		return r;
	r = kmod_module_get_initstate(mod);
	kmod_module_unref(mod);
	return r == KMOD_MODULE_LIVE || r == KMOD_MODULE_COMING;
}
