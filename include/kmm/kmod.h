/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loading and unloading kernel modules in-process, through libkmod.
 *
 * This is what kmm-worker uses instead of exec'ing `modprobe -vd DIR` the way
 * upstream's worker does. The semantics follow kmod's modprobe:
 *
 *  - a module tree is `<dir_name>/lib/modules/<kernel>` and must carry depmod's
 *    output (modules.dep.bin); dependencies are resolved from it and loaded
 *    first, with options from modprobe.d applied as modprobe would;
 *  - loading a module that is already live succeeds and does nothing;
 *  - unloading a module that is not loaded succeeds and does nothing; one that
 *    is in use fails with -EBUSY; dependencies left unused are removed too.
 *
 * Failures come back as a struct kmm_error whose message names the module, its
 * file and the cause in an administrator's words (built for another kernel,
 * missing symbol, unsigned module under enforcement, module in use, file
 * missing), followed by what the kernel logged about it while it refused.
 *
 * The library never logs above debug. Each insmod/rmmod it performs is
 * reported through the optional action callback so the binary can log it.
 */
#ifndef KMM_KMOD_H
#define KMM_KMOD_H

#include <stdbool.h>
#include <stdint.h>

#include "kmm/shared-error.h"
#include "kmm/shared-macro.h"

/* One libkmod context over one module tree. Not thread-safe. */
struct kmm_kmod;

struct kmm_kmod_options {
	/*
	 * Prefix holding lib/modules/<kernel>, as `modprobe -d` takes it. NULL or
	 * "" or "/" means the host's own /lib/modules/<kernel>.
	 */
	const char *dir_name;
	/* Kernel release to look up; NULL means the running kernel (uname -r). */
	const char *kernel;
	/*
	 * Tried when <dir_name>/lib/modules/<kernel> does not exist, e.g. the
	 * kernel version of the worker config, which drops a trailing '+' that
	 * uname keeps. NULL for none.
	 */
	const char *fallback_kernel;
	/* modprobe.d-style configuration paths; NULL for libkmod's defaults. */
	const char *const *config_paths;
	/*
	 * Open even when the tree does not exist (modules are then known by
	 * name only), as for removing in-tree modules from a host tree.
	 */
	bool allow_missing;
};

enum kmm_kmod_action {
	KMM_KMOD_ACTION_INSMOD,
	KMM_KMOD_ACTION_RMMOD,
};

/*
 * Called before each module is inserted or removed. `path` may be NULL (a
 * module known only by name), `options` may be "". Strings belong to the
 * library and are valid during the call only.
 */
typedef void (*kmm_kmod_action_fn)(enum kmm_kmod_action action, const char *module,
				   const char *path, const char *options, void *userdata);

/* Flags for kmm_kmod_load(). */
enum {
	KMM_KMOD_LOAD_FAIL_ON_LOADED = 1 << 0,	 /* --first-time */
	KMM_KMOD_LOAD_IGNORE_COMMANDS = 1 << 1,	 /* --ignore-install */
	KMM_KMOD_LOAD_FORCE_VERMAGIC = 1 << 2,	 /* --force-vermagic */
	KMM_KMOD_LOAD_FORCE_MODVERSION = 1 << 3, /* --force-modversion */
	KMM_KMOD_LOAD_USE_BLACKLIST = 1 << 4,	 /* -b */
	KMM_KMOD_LOAD_DRY_RUN = 1 << 5,		 /* -n */
};

/* Flags for kmm_kmod_unload(). */
enum {
	KMM_KMOD_UNLOAD_FAIL_IF_ABSENT = 1 << 8, /* --first-time */
	KMM_KMOD_UNLOAD_REMOVE_HOLDERS = 1 << 9, /* --remove-holders */
	KMM_KMOD_UNLOAD_IGNORE_COMMANDS = 1 << 10,
	KMM_KMOD_UNLOAD_DRY_RUN = 1 << 11,
};

/*
 * Opens the module tree described by opts (NULL for all defaults). Fails with
 * -ENOENT and a clear message when the tree does not exist. On success stores
 * a new handle in *ret_kmod.
 */
int kmm_kmod_new(const struct kmm_kmod_options *opts, struct kmm_kmod **ret_kmod,
		 struct kmm_error **err);

/* Frees the handle. NULL-safe. */
void kmm_kmod_free(struct kmm_kmod *k);
KMM_DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmm_kmod *, kmm_kmod_free)
#define _cleanup_kmod_ _cleanup_(kmm_kmod_freep)

/* Directory holding modules.dep (<dir_name>/lib/modules/<kernel>); owned by k. */
const char *kmm_kmod_dirname(const struct kmm_kmod *k);

/* The kernel release whose tree was opened; owned by k. */
const char *kmm_kmod_kernel(const struct kmm_kmod *k);

/* Sets the callback told about every insmod/rmmod; NULL to stop. */
void kmm_kmod_set_action_fn(struct kmm_kmod *k, kmm_kmod_action_fn fn, void *userdata);

/*
 * Loads `name` (a module name or alias) and its dependencies from the tree.
 * `options` is the module's parameter string ("key=value key2=value2", may be
 * NULL). Returns 0, or a negative errno with *err describing the failure.
 */
int kmm_kmod_load(struct kmm_kmod *k, const char *name, const char *options, unsigned flags,
		  struct kmm_error **err);

/*
 * Unloads `name` the way `modprobe -r` does, then removes its dependencies that
 * nothing uses any more (their failures are ignored). Returns 0, -EBUSY when
 * the module is in use, or another negative errno, with *err filled.
 */
int kmm_kmod_unload(struct kmm_kmod *k, const char *name, unsigned flags, struct kmm_error **err);

/*
 * Returns 1 if a module of that name is live in the kernel, 0 if not, or a
 * negative errno.
 */
int kmm_kmod_is_loaded(struct kmm_kmod *k, const char *name);

/*
 * Joins `key=value` parameters into the option string the kernel takes,
 * quoting values that contain spaces as modprobe does. Returns a heap string
 * ("" for none) or NULL on ENOMEM.
 */
char *kmm_kmod_join_parameters(char *const *parameters);

/*
 * In-tree modules: the names among `names` for which a file whose base name
 * starts with "<name>.ko" exists anywhere under `modules_root` (normally
 * /lib/modules), as upstream's worker checks before `modprobe -r`. The result
 * (never NULL on success, possibly empty) is stored in *ret_present and the
 * skipped names in *ret_absent (either pointer may be NULL).
 */
int kmm_kmod_in_tree_present(char *const *names, const char *modules_root, char ***ret_present,
			     char ***ret_absent, struct kmm_error **err);

/* ---- firmware ---- */

/* Where the kernel's firmware search path lives (firmware_class.path). */
#define KMM_FIRMWARE_CLASS_PATH "/sys/module/firmware_class/parameters/path"
/* The same file where the worker pod mounts its directory outside /sys (workerpod.c). */
#define KMM_FIRMWARE_CLASS_MOUNT "/run/kmm/firmware_class/path"

/*
 * Writes `dir` into firmware_class.path unless it already holds it (read from
 * KMM_FIRMWARE_CLASS_PATH; written through KMM_FIRMWARE_CLASS_MOUNT when that
 * exists, else KMM_FIRMWARE_CLASS_PATH). Stores whether a write happened in
 * *ret_changed (may be NULL).
 */
int kmm_firmware_set_class_path(const char *dir, bool *ret_changed, struct kmm_error **err);

/*
 * Caps on what one image's firmware tree may hold; a tree over any of them is
 * refused before anything is written. The defaults leave room for the largest
 * firmware shipped today (GPU firmware files of some tens of MiB).
 */
#define KMM_FIRMWARE_FILE_MAX (256ULL << 20) /* bytes in one file */
#define KMM_FIRMWARE_TOTAL_MAX (2ULL << 30)  /* bytes in the whole tree */
#define KMM_FIRMWARE_ENTRIES_MAX 65536	     /* files, links and directories */

struct kmm_firmware_limits {
	uint64_t file_max;
	uint64_t total_max;
	unsigned entries_max;
};

/*
 * Copies the firmware tree at `path` inside the image whose files are under
 * `image_root` ("/" or NULL for the root itself) into the host directory
 * `dst`, creating `dst` and sub-directories as needed and replacing files.
 *
 * The image is hostile input and `dst` is shared by every Module: `path` may
 * not contain "..", and links in it resolve inside `image_root`; the tree is
 * checked whole before anything is written (caps of `limits`, NULL for the
 * defaults; only files, directories and relative links that stay inside the
 * tree); nothing below `dst` is ever reached through a link, so a link left
 * there by another image is refused, not followed; each file is written
 * under a temporary name and renamed into place. Stores the number of files
 * and links installed in *ret_count (may be NULL).
 */
int kmm_firmware_install(const char *image_root, const char *path, const char *dst,
			 const struct kmm_firmware_limits *limits, unsigned *ret_count,
			 struct kmm_error **err);

/*
 * For every file or link of the image's firmware tree (`image_root`, `path`
 * as for kmm_firmware_install()), removes the same relative path under `dst`,
 * never through a link, then removes the directories the tree names that are
 * left empty. Files already gone are not an error. Returns 0 when everything
 * that existed was removed, else the first negative errno with *err naming
 * what could not be removed; it goes on past failures. Stores the number of
 * files and links removed in *ret_count (may be NULL).
 */
int kmm_firmware_remove(const char *image_root, const char *path, const char *dst,
			unsigned *ret_count, struct kmm_error **err);

#endif
