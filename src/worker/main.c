/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>

#include "kmm/log.h"
#include "src/common/cli.h"
#include "src/worker/worker.h"

#define PROG "kmm-worker"

static const char help[] =
    "Usage: " PROG " [OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "Loads and unloads kernel modules on a node, through libkmod.\n"
    "\n"
    "Commands:\n"
    "  kmod load CONFIG     load the module a worker config (ModuleConfig YAML) names\n"
    "  kmod unload CONFIG   unload it and remove the firmware files it installed\n"
    "  run -f MODULE.yaml   standalone mode: resolve the Module's kernelMappings for\n"
    "                       this host (--kernel K to override uname -r), pull the\n"
    "                       image and load the module; --unload reverses it\n"
    "\n"
    "Options of kmod load/unload:\n"
    "      --firmware-path DIR  host firmware directory: written to firmware_class.path,\n"
    "                           firmware is copied there (default /lib/firmware)\n"
    "      --image-root DIR     where the image's files were copied (default /tmp, as\n"
    "                           upstream's init container does: /tmp<dirName>)\n"
    "      --kernel RELEASE     kernel release to load for (default: uname -r)\n"
    "      --host-modules DIR   host module tree scanned for in-tree modules\n"
    "                           (default /lib/modules)\n"
    "      --verify-cert FILE   refuse to load any module file not signed with this\n"
    "                           certificate (PEM or DER), even where the kernel does\n"
    "                           not enforce signatures\n"
#ifdef KMM_HAVE_REGISTRY
    "\n"
    "Pulling the kmod image itself (instead of --image-root; only <dirName>/lib/modules/\n"
    "<kernel> and firmwarePath are extracted, checked against their digests):\n"
    "      --pull               pull the config's containerImage\n"
    "      --image REF          pull REF: a registry reference, or oci:DIR[:NAME] for an\n"
    "                           OCI image layout directory\n"
    "      --pull-secret FILE   registry credentials (.dockerconfigjson)\n"
    "      --registry-ca FILE   PEM CA bundle for the registry\n"
    "      --registry-insecure  plain HTTP\n"
    "      --registry-skip-verify  HTTPS without certificate verification (also\n"
    "                           implied by insecurePull: true in the config)\n"
    "      --pull-dir DIR       where images are extracted, then removed\n"
    "                           (default /var/lib/kmm-worker)\n"
#endif
    "\n"
    "Options:\n" KMM_COMMON_OPTIONS_HELP "\n"
    "Exit status: 0 done, 1 failed (the reason is logged), 2 usage error,\n"
    "128+N stopped by signal N (143 for SIGTERM) between two steps.\n";

enum {
	OPT_FIRMWARE_PATH = 0x200,
	OPT_IMAGE_ROOT,
	OPT_KERNEL,
	OPT_HOST_MODULES,
	OPT_PULL,
	OPT_IMAGE,
	OPT_PULL_SECRET,
	OPT_REGISTRY_CA,
	OPT_REGISTRY_INSECURE,
	OPT_REGISTRY_SKIP_VERIFY,
	OPT_PULL_DIR,
	OPT_VERIFY_CERT,
};

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

enum mode {
	MODE_KMOD,
	MODE_RUN
};

struct args {
	struct kmm_worker_opts o;
	bool pull;
	bool unload;	  /* run --unload */
	const char *file; /* run -f */
	bool no_pull;	  /* run with --image-root given */
};

/* Parses the options of `kmod` and `run`. Returns -1 to go on, or an exit code. */
static int parse(enum mode mode, int argc, char **argv, struct args *a)
{
	static const struct option options[] = {
		KMM_COMMON_LONG_OPTIONS,
		{ "firmware-path", required_argument, NULL, OPT_FIRMWARE_PATH },
		{ "image-root", required_argument, NULL, OPT_IMAGE_ROOT },
		{ "kernel", required_argument, NULL, OPT_KERNEL },
		{ "host-modules", required_argument, NULL, OPT_HOST_MODULES },
		{ "pull", no_argument, NULL, OPT_PULL },
		{ "image", required_argument, NULL, OPT_IMAGE },
		{ "pull-secret", required_argument, NULL, OPT_PULL_SECRET },
		{ "registry-ca", required_argument, NULL, OPT_REGISTRY_CA },
		{ "registry-insecure", no_argument, NULL, OPT_REGISTRY_INSECURE },
		{ "registry-skip-verify", no_argument, NULL, OPT_REGISTRY_SKIP_VERIFY },
		{ "pull-dir", required_argument, NULL, OPT_PULL_DIR },
		{ "verify-cert", required_argument, NULL, OPT_VERIFY_CERT },
		{ "unload", no_argument, NULL, 'u' },
		{ "file", required_argument, NULL, 'f' },
		{ 0 },
	};
	int opt, r;

	optind = 0;
	while ((opt = getopt_long(argc, argv, mode == MODE_RUN ? "hf:u" : "h", options, NULL)) !=
	       -1) {
		switch (opt) {
		case KMM_OPT_HELP:
			fputs(help, stdout);
			return KMM_EXIT_OK;
		case OPT_FIRMWARE_PATH:
			a->o.firmware_host_path = optarg;
			break;
		case OPT_IMAGE_ROOT:
			a->o.image_root = optarg;
			a->no_pull = true;
			break;
		case OPT_KERNEL:
			a->o.kernel = optarg;
			break;
		case OPT_HOST_MODULES:
			a->o.host_modules_root = optarg;
			break;
		case OPT_VERIFY_CERT:
			a->o.verify_cert = optarg;
			break;
		case OPT_PULL:
			a->pull = true;
			break;
		case OPT_IMAGE:
			a->o.image = optarg;
			break;
		case OPT_PULL_SECRET:
			a->o.pull_secret_file = optarg;
			break;
		case OPT_REGISTRY_CA:
			a->o.registry_ca_file = optarg;
			break;
		case OPT_REGISTRY_INSECURE:
			a->o.registry_insecure = true;
			break;
		case OPT_REGISTRY_SKIP_VERIFY:
			a->o.registry_skip_verify = true;
			break;
		case OPT_PULL_DIR:
			a->o.pull_dir = optarg;
			break;
		case 'u':
		case 'f':
			if (mode != MODE_RUN)
				return kmm_cli_usage_error(PROG, "--%s is an option of 'run'",
							   opt == 'u' ? "unload" : "file");
			if (opt == 'u')
				a->unload = true;
			else
				a->file = optarg;
			break;
		case '?':
			return kmm_cli_bad_option(PROG, argc, argv);
		default:
			r = kmm_cli_common_option(PROG, opt, optarg);
			if (r <= 0)
				return -r;
			break;
		}
	}
	return -1;
}

static int cmd_kmod(int argc, char **argv)
{
	struct args a = { .o = { .image_root = "/tmp", .host_modules_root = "/lib/modules" } };
	_cleanup_(kmm_module_config_freep) struct kmm_module_config *cfg = NULL;
	_cleanup_error_ struct kmm_error *e = NULL;
	const char *action, *path;
	bool load;
	int r;

	r = parse(MODE_KMOD, argc, argv, &a);
	if (r >= 0)
		return r;
	if (argc - optind != 2)
		return kmm_cli_usage_error(PROG,
					   "usage: kmod load|unload CONFIG [--firmware-path DIR]");
	action = argv[optind];
	path = argv[optind + 1];
	if (strcmp(action, "load") == 0)
		load = true;
	else if (strcmp(action, "unload") == 0)
		load = false;
	else
		return kmm_cli_usage_error(PROG, "unknown kmod action '%s' (load or unload)",
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
	int r;

	r = parse(MODE_RUN, argc, argv, &a);
	if (r >= 0)
		return r;
	if (!a.file || argc != optind)
		return kmm_cli_usage_error(PROG,
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

static const struct kmm_cli_command commands[] = {
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
	return kmm_cli_dispatch(PROG, help, commands, argc, argv);
}
