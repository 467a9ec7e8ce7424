/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>

#include "kmm/shared-log.h"
#include "kmm/shared-options.h"
#include "src/worker/worker.h"

#define PROG "kmm-worker"

static int finish(int r, struct kmm_error *e, const char *what)
{
	if (r >= 0)
		return KMM_EXIT_OK;
	if (kmm_worker_stop_signal) {
		kmm_log(KMM_LOG_ERROR, "stopped", "error", kmm_error_message(e), NULL);
		return KMM_WORKER_EXIT_SIGNAL_BASE + kmm_worker_stop_signal;
	}
	kmm_log(KMM_LOG_ERROR, what, "error", kmm_error_message(e), NULL);
	return KMM_EXIT_FAILURE;
}

struct args {
	struct kmm_worker_opts o;
	bool pull;
	bool unload;	  /* run --unload */
	const char *file; /* run -f */
	bool no_pull;	  /* run with --image-root given */
};

static int parse_image_root(const struct kmm_option *opt, const char *arg, void *ctx,
			    struct kmm_error **err)
{
	struct args *a = ctx;

	a->o.image_root = arg;
	a->no_pull = true;
	return 0;
}

/* kmod refuses run's options, by name. */
static int parse_run_only(const struct kmm_option *opt, const char *arg, void *ctx,
			  struct kmm_error **err)
{
	return kmm_error_make(err, EINVAL, "--%s is an option of 'run'", opt->name);
}

#define ARG(field) offsetof(struct args, field)
static const struct kmm_option kmod_options[] = {
	{ "firmware-path", 0, KMM_OPTION_STRING, "DIR", ARG(o.firmware_host_path), NULL,
	  "host firmware directory: written to firmware_class.path,\n"
	  "firmware is copied there (default /lib/firmware)" },
	{ "image-root", 0, KMM_OPTION_CALL, "DIR", 0, parse_image_root,
	  "where the image's files were copied (default /tmp, as\n"
	  "upstream's init container does: /tmp<dirName>)" },
	{ "kernel", 0, KMM_OPTION_STRING, "RELEASE", ARG(o.kernel), NULL,
	  "kernel release to load for (default: uname -r)" },
	{ "host-modules", 0, KMM_OPTION_STRING, "DIR", ARG(o.host_modules_root), NULL,
	  "host module tree scanned for in-tree modules\n(default /lib/modules)" },
	{ "verify-cert", 0, KMM_OPTION_STRING, "FILE", ARG(o.verify_cert), NULL,
	  "refuse to load any module file not signed with this\n"
	  "certificate (PEM or DER), even where the kernel does\n"
	  "not enforce signatures" },
	{ 0 },
};

/* Listed in --help only where the worker is built with lib/registry. */
#ifdef KMM_HAVE_REGISTRY
#define PULL_HELP(text) text
#else
#define PULL_HELP(text) NULL
#endif
static const struct kmm_option pull_options[] = {
	{ "pull", 0, KMM_OPTION_FLAG, NULL, ARG(pull), NULL,
	  PULL_HELP("pull the config's containerImage") },
	{ "image", 0, KMM_OPTION_STRING, "REF", ARG(o.image), NULL,
	  PULL_HELP("pull REF: a registry reference, or oci:DIR[:NAME] for an\n"
		    "OCI image layout directory") },
	{ "pull-secret", 0, KMM_OPTION_STRING, "FILE", ARG(o.pull_secret_file), NULL,
	  PULL_HELP("registry credentials (.dockerconfigjson)") },
	{ "registry-ca", 0, KMM_OPTION_STRING, "FILE", ARG(o.registry_ca_file), NULL,
	  PULL_HELP("PEM CA bundle for the registry") },
	{ "registry-insecure", 0, KMM_OPTION_FLAG, NULL, ARG(o.registry_insecure), NULL,
	  PULL_HELP("plain HTTP") },
	{ "registry-skip-verify", 0, KMM_OPTION_FLAG, NULL, ARG(o.registry_skip_verify), NULL,
	  PULL_HELP("HTTPS without certificate verification (also\n"
		    "implied by insecurePull: true in the config)") },
	{ "pull-dir", 0, KMM_OPTION_STRING, "DIR", ARG(o.pull_dir), NULL,
	  PULL_HELP("where images are extracted, then removed\n(default /var/lib/kmm-worker)") },
	{ 0 },
};

/* run's own options, described in the Commands part of --help. */
static const struct kmm_option run_options[] = {
	{ "unload", 'u', KMM_OPTION_FLAG, NULL, ARG(unload), NULL, NULL },
	{ "file", 'f', KMM_OPTION_STRING, "FILE", ARG(file), NULL, NULL },
	{ 0 },
};

static const struct kmm_option kmod_refused_options[] = {
	{ "unload", 0, KMM_OPTION_CALL, NULL, 0, parse_run_only, NULL },
	{ "file", 0, KMM_OPTION_CALL, "FILE", 0, parse_run_only, NULL },
	{ 0 },
};
#undef ARG

static const char usage[] =
    "Usage: " PROG " [OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "Loads and unloads kernel modules on a node, through libkmod.\n"
    "\n"
    "Commands:\n"
    "  kmod load CONFIG     load the module a worker config (ModuleConfig YAML) names\n"
    "  kmod unload CONFIG   unload it and remove the firmware files it installed\n"
    "  run -f MODULE.yaml   standalone mode: resolve the Module's kernelMappings for\n"
    "                       this host (--kernel K to override uname -r), pull the\n"
    "                       image and load the module; --unload reverses it\n";

static const struct kmm_option_group program_groups[] = {
	{ .title = "\nOptions of kmod load/unload:\n", .options = kmod_options, .help_only = true },
	{ .title = PULL_HELP("\nPulling the kmod image itself (instead of --image-root; only "
			     "<dirName>/lib/modules/\n"
			     "<kernel> and firmwarePath are extracted, checked against their "
			     "digests):\n"),
	  .options = pull_options,
	  .help_only = true },
	{ .title = "\nOptions:\n", .options = kmm_options_common },
	{ 0 },
};

static const struct kmm_options program = {
	.prog = PROG,
	.usage = usage,
	.groups = program_groups,
	.footer = "\n"
		  "Exit status: 0 done, 1 failed (the reason is logged), 2 usage error,\n"
		  "128+N stopped by signal N (143 for SIGTERM) between two steps.\n",
};

static const struct kmm_option_group kmod_groups[] = {
	{ .options = kmod_options },
	{ .options = pull_options },
	{ .options = kmod_refused_options },
	{ .options = kmm_options_common },
	{ 0 },
};

static const struct kmm_options kmod_spec = { .prog = PROG,
					      .groups = kmod_groups,
					      .help = &program };

static const struct kmm_option_group run_groups[] = {
	{ .options = kmod_options },
	{ .options = pull_options },
	{ .options = run_options },
	{ .options = kmm_options_common },
	{ 0 },
};

static const struct kmm_options run_spec = { .prog = PROG, .groups = run_groups, .help = &program };

static int cmd_kmod(int argc, char **argv)
{
	struct args a = { .o = { .image_root = "/tmp", .host_modules_root = "/lib/modules" } };
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *cfg = NULL;
	_cleanup_error_ struct kmm_error *e = NULL;
	const char *action, *path;
	bool load;
	int first, r;

	r = kmm_options_parse(&kmod_spec, argc, argv, &a, &first);
	if (r >= 0)
		return r;
	if (argc - first != 2)
		return kmm_options_usage_error(
		    PROG, "usage: kmod load|unload CONFIG [--firmware-path DIR]");
	action = argv[first];
	path = argv[first + 1];
	if (strcmp(action, "load") == 0)
		load = true;
	else if (strcmp(action, "unload") == 0)
		load = false;
	else
		return kmm_options_usage_error(PROG, "unknown kmod action '%s' (load or unload)",
					       action);

	kmm_worker_install_signal_handlers();
	r = kmm_worker_config_load(path, &cfg, &e);
	if (r < 0)
		return finish(r, e, "cannot read the worker config");
	if (a.pull && !a.o.image)
		a.o.image = cfg->container_image;
	kmm_log(KMM_LOG_INFO, load ? "loading module" : "unloading module", "module",
		cfg->modprobe.module_name ? cfg->modprobe.module_name : "(rawArgs)", "config", path,
		NULL);
	r = load ? kmm_worker_load(cfg, &a.o, &e) : kmm_worker_unload(cfg, &a.o, &e);
	return finish(r, e, load ? "load failed" : "unload failed");
}

static int cmd_run(int argc, char **argv)
{
	struct args a = { .o = { .image_root = "/", .host_modules_root = "/lib/modules" } };
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *cfg = NULL;
	_cleanup_error_ struct kmm_error *e = NULL;
	int first, r;

	r = kmm_options_parse(&run_spec, argc, argv, &a, &first);
	if (r >= 0)
		return r;
	if (!a.file || argc != first)
		return kmm_options_usage_error(PROG,
					       "usage: run -f MODULE.yaml [--kernel K] [--unload]");
	kmm_worker_install_signal_handlers();
	r = kmm_worker_standalone_config(a.file, a.o.kernel, &cfg, &e);
	if (r >= 0)
		r = kmm_worker_config_check(cfg, a.file, &e);
	if (r < 0)
		return finish(r, e, "cannot resolve the Module for this host");
	/* Standalone pulls the resolved image unless told where the files are. */
	if (!a.o.image && !a.no_pull)
		a.o.image = cfg->container_image;
	kmm_log(KMM_LOG_INFO, a.unload ? "unloading module" : "loading module", "module",
		cfg->modprobe.module_name ? cfg->modprobe.module_name : "(rawArgs)", "kernel",
		cfg->kernel_version, "image", a.o.image ? a.o.image : a.o.image_root, NULL);
	r = a.unload ? kmm_worker_unload(cfg, &a.o, &e) : kmm_worker_load(cfg, &a.o, &e);
	return finish(r, e, a.unload ? "unload failed" : "load failed");
}

static const struct kmm_command commands[] = {
	{ "kmod", "load or unload a module from a worker config", cmd_kmod },
	{ "run", "standalone mode", cmd_run },
	{ NULL, NULL, NULL },
};

/*
 * jansson seeds its hash function from /dev/urandom on first use, and reading
 * it before the kernel's random pool is ready (a worker run early in boot, or
 * the bench's fresh guest) waits for entropy: a second under QEMU. The kernel
 * already put 16 random bytes in every process's auxiliary vector.
 */
static void seed_json_hash(void)
{
	/* getauxval() returns the address as an integer. */
	// NOLINTNEXTLINE(performance-no-int-to-ptr)
	const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
	size_t seed = 0;

	if (r)
		memcpy(&seed, r, sizeof(seed));
	json_object_seed(seed ? seed : 1);
}

int main(int argc, char **argv)
{
	seed_json_hash();
	return kmm_options_dispatch(&program, commands, argc, argv);
}
