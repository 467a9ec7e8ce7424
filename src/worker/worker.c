/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "kmm/shared-fileio.h"
#include "kmm/kmod.h"
#include "kmm/shared-log.h"
#include "kmm/sign.h"
#include "kmm/shared-strv.h"
#include "src/worker/worker.h"

volatile sig_atomic_t kmm_worker_stop_signal;

static void on_stop_signal(int sig)
{
	kmm_worker_stop_signal = sig;
}

void kmm_worker_install_signal_handlers(void)
{
	struct sigaction sa = { .sa_handler = on_stop_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

int kmm_worker_config_load(const char *path, struct kmm_module_config **ret_cfg,
			   struct kmm_error **err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r;

	r = kmm_read_file(path, KMM_WORKER_CONFIG_MAX, &text, &len, err);
	if (r < 0)
		return r;
	return kmm_worker_config_parse(text, len, path, ret_cfg, err);
}

/* The list, or the deprecated single name when the list is absent (upstream). */
static char **in_tree_names(const struct kmm_module_config *cfg)
{
	char **v = NULL;

	if (cfg->in_tree_modules_to_remove)
		return kmm_strv_copy(cfg->in_tree_modules_to_remove);
	if (cfg->in_tree_module_to_remove && *cfg->in_tree_module_to_remove &&
	    kmm_strv_push(&v, cfg->in_tree_module_to_remove) < 0)
		return NULL;
	return v;
}

static int check_stop(const char *before, struct kmm_error **err)
{
	if (!kmm_worker_stop_signal)
		return 0;
	return kmm_error_make(err, EINTR, "stopped by %s before %s",
			      strsignal(kmm_worker_stop_signal), before);
}

/* <image_root><path>, with "/" or "" as root meaning the path itself. */
static char *image_path(const struct kmm_worker_opts *o, const char *path)
{
	const char *root = o->image_root ? o->image_root : "";
	size_t n = strlen(root);
	char *p = NULL;

	while (n > 0 && root[n - 1] == '/')
		n--;
	if (asprintf(&p, "%.*s%s%s", (int)n, root, path[0] == '/' ? "" : "/", path) < 0)
		return NULL;
	return p;
}

static void log_action(enum kmm_kmod_action action, const char *module, const char *path,
		       const char *options, void *userdata)
{
	kmm_log(KMM_LOG_INFO, action == KMM_KMOD_ACTION_INSMOD ? "insmod" : "rmmod", "module",
		module, "path", path ? path : "", "options", options, NULL);
}

/*
 * Maps modprobe flags from args.load/args.unload onto libkmod flags. Returns
 * false when one of them has no in-process equivalent: the caller then runs
 * modprobe itself with the same arguments, as upstream does.
 */
static bool map_flags(char *const *args, bool unload, unsigned *ret_flags)
{
	unsigned f = 0;

	KMM_STRV_FOREACH (a, args) {
		if (!strcmp(a, "-v") || !strcmp(a, "--verbose") || !strcmp(a, "-q") ||
		    !strcmp(a, "--quiet") || !strcmp(a, "-s") || !strcmp(a, "--syslog") ||
		    (unload && (!strcmp(a, "-r") || !strcmp(a, "--remove"))))
			continue;
		if (!strcmp(a, "--first-time"))
			f |= unload ? KMM_KMOD_UNLOAD_FAIL_IF_ABSENT : KMM_KMOD_LOAD_FAIL_ON_LOADED;
		else if (!strcmp(a, "-i") || !strcmp(a, "--ignore-install") ||
			 !strcmp(a, "--ignore-remove"))
			f |= unload ? KMM_KMOD_UNLOAD_IGNORE_COMMANDS
				    : KMM_KMOD_LOAD_IGNORE_COMMANDS;
		else if (!strcmp(a, "-n") || !strcmp(a, "--dry-run"))
			f |= unload ? KMM_KMOD_UNLOAD_DRY_RUN : KMM_KMOD_LOAD_DRY_RUN;
		else if (unload && !strcmp(a, "--remove-holders"))
			f |= KMM_KMOD_UNLOAD_REMOVE_HOLDERS;
		else if (!unload && !strcmp(a, "--force-vermagic"))
			f |= KMM_KMOD_LOAD_FORCE_VERMAGIC;
		else if (!unload && !strcmp(a, "--force-modversion"))
			f |= KMM_KMOD_LOAD_FORCE_MODVERSION;
		else if (!unload && (!strcmp(a, "-f") || !strcmp(a, "--force")))
			f |= KMM_KMOD_LOAD_FORCE_VERMAGIC | KMM_KMOD_LOAD_FORCE_MODVERSION;
		else if (!unload && (!strcmp(a, "-b") || !strcmp(a, "--use-blacklist")))
			f |= KMM_KMOD_LOAD_USE_BLACKLIST;
		else
			return false;
	}
	*ret_flags = f;
	return true;
}

/* modprobe <flag> <dir> [args...] <names...> [params...], upstream's command line. */
static int modprobe_fallback(const char *flag, const char *dir, char *const *args,
			     char *const *names, char *const *params, struct kmm_error **err)
{
	_cleanup_strv_free_ char **argv = NULL;

	if (kmm_strv_push(&argv, "modprobe") < 0 || kmm_strv_push(&argv, flag) < 0 ||
	    kmm_strv_push(&argv, dir) < 0 || kmm_strv_extend(&argv, args) < 0 ||
	    kmm_strv_extend(&argv, names) < 0 || kmm_strv_extend(&argv, params) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	return kmm_worker_run_modprobe(argv, err);
}

static int set_firmware_class_path(const struct kmm_worker_opts *o, struct kmm_error **err)
{
	bool changed = false;
	int r;

	if (!o->firmware_host_path)
		return 0;
	r = kmm_firmware_set_class_path(o->firmware_host_path, &changed, err);
	if (r < 0)
		return kmm_error_wrap(err, "set firmware_class.path");
	kmm_log(KMM_LOG_INFO,
		changed ? "set firmware_class.path" : "firmware_class.path already set", "path",
		o->firmware_host_path, NULL);
	return 0;
}

static int remove_in_tree(const struct kmm_module_config *cfg, const struct kmm_worker_opts *o,
			  struct kmm_error **err)
{
	_cleanup_strv_free_ char **names = in_tree_names(cfg);
	_cleanup_strv_free_ char **present = NULL, **absent = NULL;
	_cleanup_kmod_ struct kmm_kmod *host = NULL;
	_cleanup_free_ char *joined = NULL;
	struct kmm_kmod_options kopts = { .kernel = o->kernel, .allow_missing = true };
	int r;

	if (!names)
		return 0;
	r = kmm_kmod_in_tree_present(names, o->host_modules_root, &present, &absent, err);
	if (r < 0)
		return r;
	KMM_STRV_FOREACH (n, absent)
		kmm_log(KMM_LOG_INFO, "in-tree module has no file on this host; skipping", "module",
			n, "root", o->host_modules_root, NULL);
	if (!present[0])
		return 0;
	joined = kmm_strv_join(present, ",");
	kmm_log(KMM_LOG_INFO, "removing in-tree modules", "names", joined, NULL);
	r = kmm_kmod_new(&kopts, &host, err);
	if (r < 0)
		return r;
	kmm_kmod_set_action_fn(host, log_action, NULL);
	KMM_STRV_FOREACH (n, present) {
		r = kmm_kmod_unload(host, n, 0, err);
		if (r < 0)
			return kmm_error_wrap(err, "remove in-tree module %s", n);
	}
	return 0;
}

/* ---- pulling the kmod image ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* A pulled image's directory, removed when the step is over. */
struct pulled {
	char *dir;
};

static void pulled_done(struct pulled *p)
{
	if (p->dir) {
		nftw(p->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		free(p->dir);
		p->dir = NULL;
	}
}

#ifdef KMM_HAVE_REGISTRY
/* kmm-worker-pull: KMM_WORKER_PULL, else next to this binary, else from PATH. */
static char *pull_helper(void)
{
	const char *env = secure_getenv("KMM_WORKER_PULL");
	char self[4096], *p = NULL;
	ssize_t n;

	if (env && *env)
		return strdup(env);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		if (strrchr(self, '/'))
			*strrchr(self, '/') = '\0';
		if (asprintf(&p, "%s/kmm-worker-pull", self) >= 0 && access(p, X_OK) == 0)
			return p;
		free(p);
	}
	return strdup("kmm-worker-pull");
}

static int pull(const struct kmm_module_config *cfg, const struct kmm_worker_opts *o,
		struct pulled *ret, struct kmm_error **err)
{
	_cleanup_strv_free_ char **argv = NULL;
	_cleanup_free_ char *dir = NULL, *helper = pull_helper();
	const char *image = o->image ? o->image : cfg->container_image;
	const char *dir_name = cfg->modprobe.dir_name ? cfg->modprobe.dir_name : "/opt";
	const char *pull_dir = o->pull_dir ? o->pull_dir : "/var/lib/kmm-worker";
	struct utsname u;
	int r;

	if (!image || !*image)
		return kmm_error_make(err, EINVAL, "no image to pull (containerImage is empty)");
	if (uname(&u) < 0)
		return kmm_error_make_errno(err, errno, "uname");
	if (!helper || asprintf(&dir, "%s/image.XXXXXX", pull_dir) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (mkdir(pull_dir, 0700) < 0 && errno != EEXIST)
		return kmm_error_make_errno(err, errno, "create %s", pull_dir);
	if (!mkdtemp(dir))
		return kmm_error_make_errno(err, errno, "create a directory in %s", pull_dir);
	ret->dir = TAKE_PTR(dir);

	if (kmm_strv_push(&argv, "kmm-worker-pull") < 0 ||
	    (o->registry_insecure && kmm_strv_push(&argv, "--insecure") < 0) ||
	    ((o->registry_skip_verify || cfg->insecure_pull) &&
	     kmm_strv_push(&argv, "--skip-verify") < 0) ||
	    (o->registry_ca_file &&
	     (kmm_strv_push(&argv, "--ca") < 0 || kmm_strv_push(&argv, o->registry_ca_file) < 0)) ||
	    (o->pull_secret_file && (kmm_strv_push(&argv, "--pull-secret") < 0 ||
				     kmm_strv_push(&argv, o->pull_secret_file) < 0)) ||
	    kmm_strv_push(&argv, image) < 0 || kmm_strv_push(&argv, ret->dir) < 0 ||
	    kmm_strv_pushf(&argv, "%s/lib/modules/%s", dir_name,
			   o->kernel ? o->kernel : u.release) < 0 ||
	    (cfg->kernel_version && *cfg->kernel_version &&
	     strcmp(cfg->kernel_version, o->kernel ? o->kernel : u.release) != 0 &&
	     kmm_strv_pushf(&argv, "%s/lib/modules/%s", dir_name, cfg->kernel_version) < 0) ||
	    (cfg->modprobe.firmware_path && *cfg->modprobe.firmware_path &&
	     kmm_strv_push(&argv, cfg->modprobe.firmware_path) < 0))
		return kmm_error_make(err, ENOMEM, "out of memory");
	kmm_log(KMM_LOG_INFO, "pulling image", "image", image, "into", ret->dir, NULL);
	/* The target exists and is empty, which kmm_image_extract accepts. */
	r = kmm_worker_run(helper, "pull", argv, err);
	if (r < 0)
		return kmm_error_wrap(err, "pull %s", image);
	return 0;
}
#endif

/*
 * Where the image's files are for this step: pulled into a fresh directory
 * when an image source was asked for, else o->image_root as given.
 */
static int image_source(const struct kmm_module_config *cfg, const struct kmm_worker_opts *o,
			struct kmm_worker_opts *eff, struct pulled *pulled, struct kmm_error **err)
{
	*eff = *o;
	if (!o->image)
		return 0;
#ifdef KMM_HAVE_REGISTRY
	{
		int r = pull(cfg, o, pulled, err);
		if (r < 0)
			return r;
		eff->image_root = pulled->dir;
		return 0;
	}
#else
	return kmm_error_make(err, EOPNOTSUPP,
			      "this kmm-worker was built without image pulling (lib/registry)");
#endif
}

static int load_from(const struct kmm_module_config *cfg, const struct kmm_worker_opts *o,
		     struct kmm_error **err);
static int unload_from(const struct kmm_module_config *cfg, const struct kmm_worker_opts *o,
		       struct kmm_error **err);

/* ---- signatures (--verify-cert) ---- */

static void closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

/*
 * Why a module file does not verify, naming the file and who signed it, so an
 * administrator sees at once whether the image holds an unsigned build, one
 * signed with another key, or one changed after signing.
 */
static int refuse_module(const char *path, const char *cert_path, const struct kmm_error *why,
			 struct kmm_error **err)
{
	_cleanup_(kmm_sig_info_freep) struct kmm_sig_info *info = NULL;
	_cleanup_free_ char *key = NULL;
	int signed_ = kmm_sig_info_from_file(path, &info, NULL);

	if (signed_ == 0)
		return kmm_error_make(err, EKEYREJECTED,
				      "module %s is not signed, but the Module asks for modules "
				      "signed with %s: refusing to load it",
				      path, cert_path);
	if (signed_ > 0) {
		key = kmm_sig_hex(info->key_id, info->key_id_len, 0);
		return kmm_error_make(
		    err, EKEYREJECTED,
		    "module %s is signed by \"%s\" (%s %s), which does not verify "
		    "against the Module's certificate %s (%s): refusing to load it",
		    path, info->signer ? info->signer : "unnamed signer",
		    info->key_id_is_skid ? "key id" : "serial", key ? key : "?", cert_path,
		    kmm_error_message(why));
	}
	return kmm_error_make(err, EKEYREJECTED,
			      "module %s: its signature cannot be read (%s): refusing to load it",
			      path, kmm_error_message(why));
}

static int verify_module_file(const struct kmm_sign_cert *cert, const char *cert_path,
			      const char *path, struct kmm_error **err)
{
	_cleanup_error_ struct kmm_error *e = NULL;

	if (kmm_sign_verify_file(cert, path, &e) >= 0) {
		kmm_log(KMM_LOG_INFO, "module signature verified", "file", path, "cert", cert_path,
			NULL);
		return 0;
	}
	return refuse_module(path, cert_path, e, err);
}

struct insmod_list {
	char **paths;
	bool oom;
};

static void collect_insmod(enum kmm_kmod_action action, const char *module, const char *path,
			   const char *options, void *userdata)
{
	struct insmod_list *l = userdata;

	if (action == KMM_KMOD_ACTION_INSMOD && path && kmm_strv_push(&l->paths, path) < 0)
		l->oom = true;
}

/* Every module file below dir (modprobe may load any of them). */
static int verify_tree(const struct kmm_sign_cert *cert, const char *cert_path, const char *dir,
		       int depth, struct kmm_error **err)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	int r = 0;

	if (depth > 16)
		return kmm_error_make(err, ELOOP, "module tree %s is too deep", dir);
	d = opendir(dir);
	if (!d)
		return kmm_error_make_errno(err, errno, "list modules in %s", dir);
	while (r >= 0 && (de = readdir(d))) {
		_cleanup_free_ char *path = NULL;
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (asprintf(&path, "%s/%s", dir, de->d_name) < 0)
			return kmm_error_make(err, ENOMEM, "out of memory");
		if (lstat(path, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode))
			r = verify_tree(cert, cert_path, path, depth + 1, err);
		else if (S_ISREG(st.st_mode) && strstr(de->d_name, ".ko"))
			r = verify_module_file(cert, cert_path, path, err);
	}
	return r;
}

/*
 * With --verify-cert (the Module's mapping has `sign`), every module file the
 * load would insert must carry a signature by that certificate, whether or
 * not this kernel enforces signatures: an image changed after kmm signed it
 * is refused before anything on the node changes.
 */
static int verify_signatures(const struct kmm_module_config *cfg, const struct kmm_worker_opts *o,
			     const char *dir, bool through_libkmod, struct kmm_error **err)
{
	_cleanup_(kmm_sign_cert_freep) struct kmm_sign_cert *cert = NULL;
	_cleanup_kmod_ struct kmm_kmod *k = NULL;
	struct insmod_list list = { NULL, false };
	char *const *order = cfg->modprobe.modules_loading_order;
	struct kmm_kmod_options kopts = {
		.dir_name = dir,
		.kernel = o->kernel,
		.fallback_kernel = cfg->kernel_version,
	};
	int r;

	r = kmm_sign_cert_load(o->verify_cert, &cert, err);
	if (r < 0)
		return kmm_error_wrap(err, "signing certificate");
	r = kmm_kmod_new(&kopts, &k, err);
	if (r < 0)
		return r;
	if (!through_libkmod) {
		_cleanup_free_ char *tree = NULL;
		if (asprintf(&tree, "%s", kmm_kmod_dirname(k)) < 0)
			return kmm_error_make(err, ENOMEM, "out of memory");
		return verify_tree(cert, o->verify_cert, tree, 0, err);
	}
	kmm_kmod_set_action_fn(k, collect_insmod, &list);
	for (size_t i = kmm_strv_length(order); r >= 0 && i > 1; i--)
		r = kmm_kmod_load(k, order[i - 1], NULL, KMM_KMOD_LOAD_DRY_RUN, err);
	if (r >= 0)
		r = kmm_kmod_load(k, cfg->modprobe.module_name, NULL, KMM_KMOD_LOAD_DRY_RUN, err);
	if (r >= 0 && list.oom)
		r = kmm_error_make(err, ENOMEM, "out of memory");
	KMM_STRV_FOREACH (path, list.paths) {
		if (r < 0)
			break;
		r = verify_module_file(cert, o->verify_cert, path, err);
	}
	kmm_strv_free(list.paths);
	return r;
}

/* dirName and firmwarePath name places inside the image; ".." would leave it. */
static int check_image_paths(const struct kmm_module_config *cfg, struct kmm_error **err)
{
	if (cfg->modprobe.dir_name && kmm_path_has_dotdot(cfg->modprobe.dir_name))
		return kmm_error_make(err, EINVAL, "modprobe.dirName %s must not contain '..'",
				      cfg->modprobe.dir_name);
	if (cfg->modprobe.firmware_path && kmm_path_has_dotdot(cfg->modprobe.firmware_path))
		return kmm_error_make(err, EINVAL, "modprobe.firmwarePath %s must not contain '..'",
				      cfg->modprobe.firmware_path);
	return 0;
}

int kmm_worker_load(const struct kmm_module_config *cfg, const struct kmm_worker_opts *o,
		    struct kmm_error **err)
{
	_cleanup_(pulled_done) struct pulled pulled = { NULL };
	struct kmm_worker_opts eff;
	int r;

	r = check_image_paths(cfg, err);
	if (r < 0)
		return r;
	r = image_source(cfg, o, &eff, &pulled, err);
	if (r < 0)
		return r;
	return load_from(cfg, &eff, err);
}

int kmm_worker_unload(const struct kmm_module_config *cfg, const struct kmm_worker_opts *o,
		      struct kmm_error **err)
{
	_cleanup_(pulled_done) struct pulled pulled = { NULL };
	struct kmm_worker_opts eff;
	int r;

	r = check_image_paths(cfg, err);
	if (r < 0)
		return r;
	r = image_source(cfg, o, &eff, &pulled, err);
	if (r < 0)
		return r;
	return unload_from(cfg, &eff, err);
}

static int load_from(const struct kmm_module_config *cfg, const struct kmm_worker_opts *o,
		     struct kmm_error **err)
{
	const char *name = cfg->modprobe.module_name;
	_cleanup_free_ char *dir = image_path(o, cfg->modprobe.dir_name);
	_cleanup_free_ char *options = kmm_kmod_join_parameters(cfg->modprobe.parameters);
	_cleanup_kmod_ struct kmm_kmod *k = NULL;
	char *const *order = cfg->modprobe.modules_loading_order;
	char *const *args_load = cfg->modprobe.args ? cfg->modprobe.args->load : NULL;
	unsigned flags = 0;
	int r;

	if (!dir || !options)
		return kmm_error_make(err, ENOMEM, "out of memory");

	/* 0. signatures, before anything on the node changes */
	if (o->verify_cert) {
		bool through_libkmod =
		    !cfg->modprobe.raw_args && map_flags(args_load, false, &flags);
		if ((r = verify_signatures(cfg, o, dir, through_libkmod, err)) < 0)
			return r;
	}
	/* 1. firmware search path */
	if ((r = set_firmware_class_path(o, err)) < 0)
		return r;
	/* 2. in-tree modules */
	if ((r = check_stop("removing in-tree modules", err)) < 0 ||
	    (r = remove_in_tree(cfg, o, err)) < 0)
		return r;
	/* 3. firmware files */
	if (cfg->modprobe.firmware_path && *cfg->modprobe.firmware_path) {
		const char *dst = o->firmware_host_path ? o->firmware_host_path : "/lib/firmware";
		unsigned count = 0;
		char num[16];

		if ((r = check_stop("copying firmware", err)) < 0)
			return r;
		r = kmm_firmware_install(o->image_root, cfg->modprobe.firmware_path, dst, NULL,
					 &count, err);
		if (r < 0)
			return r;
		snprintf(num, sizeof(num), "%u", count);
		kmm_log(KMM_LOG_INFO, "firmware copied", "from", cfg->modprobe.firmware_path, "to",
			dst, "files", num, NULL);
	}
	if ((r = check_stop("loading", err)) < 0)
		return r;
	/* 4. the module(s) */
	if (cfg->modprobe.raw_args) {
		_cleanup_strv_free_ char **argv = NULL;
		if (kmm_strv_push(&argv, "modprobe") < 0 ||
		    kmm_strv_extend(&argv, cfg->modprobe.raw_args->load) < 0)
			return kmm_error_make(err, ENOMEM, "out of memory");
		return kmm_worker_run_modprobe(argv, err);
	}
	if (!map_flags(args_load, false, &flags)) {
		char *const names[] = { (char *)name, NULL };
		for (size_t i = kmm_strv_length(order); i > 1; i--) {
			char *const dep[] = { order[i - 1], NULL };
			r = modprobe_fallback("-vd", dir, args_load, dep, NULL, err);
			if (r < 0)
				return r;
		}
		return modprobe_fallback("-vd", dir, args_load, names, cfg->modprobe.parameters,
					 err);
	}
	{
		struct kmm_kmod_options kopts = {
			.dir_name = dir,
			.kernel = o->kernel,
			.fallback_kernel = cfg->kernel_version,
		};
		r = kmm_kmod_new(&kopts, &k, err);
		if (r < 0)
			return r;
	}
	kmm_kmod_set_action_fn(k, log_action, NULL);
	/*
	 * modulesLoadingOrder [A, B, C] means A needs B needs C (upstream writes
	 * softdeps for modprobe): load C, then B, then A with its parameters.
	 */
	for (size_t i = kmm_strv_length(order); i > 1; i--) {
		r = kmm_kmod_load(k, order[i - 1], NULL, flags, err);
		if (r < 0)
			return kmm_error_wrap(err, "modulesLoadingOrder");
		if ((r = check_stop("loading the next module", err)) < 0)
			return r;
	}
	r = kmm_kmod_load(k, name, options, flags, err);
	if (r < 0)
		return r;
	kmm_log(KMM_LOG_INFO, "module loaded", "module", name, "dir", kmm_kmod_dirname(k), NULL);
	return 0;
}

static int unload_from(const struct kmm_module_config *cfg, const struct kmm_worker_opts *o,
		       struct kmm_error **err)
{
	const char *name = cfg->modprobe.module_name;
	_cleanup_free_ char *dir = image_path(o, cfg->modprobe.dir_name);
	_cleanup_kmod_ struct kmm_kmod *k = NULL;
	char *const single[] = { (char *)name, NULL };
	char *const *names =
	    cfg->modprobe.modules_loading_order ? cfg->modprobe.modules_loading_order : single;
	char *const *args_unload = cfg->modprobe.args ? cfg->modprobe.args->unload : NULL;
	unsigned flags = 0;
	int r = 0;

	if (!dir)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (cfg->modprobe.raw_args) {
		_cleanup_strv_free_ char **argv = NULL;
		if (kmm_strv_push(&argv, "modprobe") < 0 ||
		    kmm_strv_extend(&argv, cfg->modprobe.raw_args->unload) < 0)
			return kmm_error_make(err, ENOMEM, "out of memory");
		r = kmm_worker_run_modprobe(argv, err);
	} else if (!map_flags(args_unload, true, &flags)) {
		r = modprobe_fallback("-rvd", dir, args_unload, names, NULL, err);
	} else {
		struct kmm_kmod_options kopts = {
			.dir_name = dir,
			.kernel = o->kernel,
			.fallback_kernel = cfg->kernel_version,
			.allow_missing = true,
		};
		r = kmm_kmod_new(&kopts, &k, err);
		if (r < 0)
			return r;
		kmm_kmod_set_action_fn(k, log_action, NULL);
		/* All listed modules, in list order, like `modprobe -r A B C`. */
		KMM_STRV_FOREACH (n, names) {
			_cleanup_error_ struct kmm_error *e = NULL;
			int q = kmm_kmod_unload(k, n, flags, &e);
			if (q < 0 && r == 0) {
				r = q;
				if (err)
					*err = TAKE_PTR(e);
			}
		}
	}
	if (r < 0)
		return r;
	kmm_log(KMM_LOG_INFO, "module unloaded", "module", name ? name : "(rawArgs)", NULL);

	/* Firmware files this module installed; failures are only reported. */
	if (cfg->modprobe.firmware_path && *cfg->modprobe.firmware_path) {
		_cleanup_error_ struct kmm_error *e = NULL;
		const char *dst = o->firmware_host_path ? o->firmware_host_path : "/lib/firmware";
		unsigned count = 0;
		char num[16];

		if (kmm_firmware_remove(o->image_root, cfg->modprobe.firmware_path, dst, &count,
					&e) < 0)
			kmm_log(KMM_LOG_WARN, "could not remove all firmware files", "error",
				kmm_error_message(e), NULL);
		snprintf(num, sizeof(num), "%u", count);
		kmm_log(KMM_LOG_INFO, "firmware removed", "dir", dst, "files", num, NULL);
	}
	return 0;
}
