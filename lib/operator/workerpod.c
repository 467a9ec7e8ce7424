/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Worker pods: the loader and unloader of one module on one node, in
 * upstream's shape (reference §3.5), with least privilege where upstream
 * grants more: no container is privileged, every container drops ALL
 * capabilities, runs the runtime's default seccomp profile, cannot gain
 * privileges (no_new_privs) and has a read-only root filesystem, and the pod
 * gets no ServiceAccount token (the worker never calls the API). The worker
 * keeps only CAP_SYS_MODULE. A firmware loader, privileged upstream only to
 * write firmware_class.path, instead gets the host's firmware_class
 * parameters directory bind-mounted writable and runs as uid 0, the owner of
 * that sysfs file.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmm/shared-json.h"
#include "kmm/operator-runtime.h"
#include "kmm/shared-strv.h"

char *kmm_op_worker_pod_name(const char *node, const char *module)
{
	char *s = NULL;

	if (asprintf(&s, "kmm-worker-%s-%s", node, module) < 0)
		return NULL;
	return s;
}

char *kmm_op_softdep(char *const *order)
{
	_cleanup_free_ char *out = NULL;
	size_t n = kmm_strv_length(order);

	if (n < 2)
		return NULL;
	out = strdup("");
	for (size_t i = 0; out && i + 1 < n; i++) {
		char *next = NULL;

		if (asprintf(&next, "%ssoftdep %s pre: %s\n", out, order[i], order[i + 1]) < 0)
			return NULL;
		free(out);
		out = next;
	}
	return TAKE_PTR(out);
}

char *kmm_op_hash_json(const json_t *obj)
{
	_cleanup_free_ char *text = json_dumps(obj, JSON_SORT_KEYS | JSON_COMPACT);
	uint64_t h = 14695981039346656037ULL;
	char *s = NULL;

	if (!text)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
		h ^= *p;
		h *= 1099511628211ULL;
	}
	if (asprintf(&s, "%" PRIu64, h) < 0)
		return NULL;
	return s;
}

static json_t *resources(void)
{
	return json_pack("{s:{s:s, s:s}, s:{s:s, s:s}}", "requests", "cpu", "500m", "memory",
			 "64Mi", "limits", "cpu", "1", "memory", "128Mi");
}

static json_t *mount(const char *name, const char *path, bool ro)
{
	return json_pack("{s:s, s:s, s:b}", "name", name, "mountPath", path, "readOnly", ro);
}

static json_t *downward_volume(const char *name, const char *file, const char *annotation)
{
	char field[256];

	snprintf(field, sizeof(field), "metadata.annotations['%s']", annotation);
	return json_pack("{s:s, s:{s:[{s:s, s:{s:s}}]}}", "name", name, "downwardAPI", "items",
			 "path", file, "fieldRef", "fieldPath", field);
}

/*
 * sysfs is read-only in an unprivileged container: the loader reaches
 * firmware_class.path through a bind mount of its directory, at its own path
 * (what the worker opens today) and at FIRMWARE_CLASS_MOUNT, outside /sys,
 * where the runtimes' default AppArmor profile, which denies writes under
 * /sys/module, does not apply.
 */
#define FIRMWARE_CLASS_DIR "/sys/module/firmware_class/parameters"
#define FIRMWARE_CLASS_MOUNT "/run/kmm/firmware_class"

static json_t *host_volume(const char *name, const char *path, const char *type)
{
	return json_pack("{s:s, s:{s:s, s:s}}", "name", name, "hostPath", "path", path, "type",
			 type);
}

/*
 * The image extractor runs inside the kmod image, which may be FROM scratch:
 * no shell, no cp. So it runs kmm-worker-copy, a static copier the worker
 * image ships, which the first init container copies from the worker image
 * into the emptyDir COPIER_DIR (docs/worker.md, "Image sources").
 */
#define COPIER_IN_WORKER_IMAGE "/usr/local/bin/kmm-worker-copy"
#define COPIER_DIR KMM_OP_COPIER_DIR
#define COPIER KMM_OP_COPIER

/* kmm-worker-copy's SRC DST pairs: the kernel's module tree, the firmware. */
static json_t *extract_args(const struct kmm_module_config *c)
{
	const char *dir = c->modprobe.dir_name ? c->modprobe.dir_name : KMM_DEFAULT_DIR_NAME;
	const char *fw = c->modprobe.firmware_path;
	_cleanup_free_ char *modules = NULL, *tmp_modules = NULL, *tmp_fw = NULL;

	if (asprintf(&modules, "%s/lib/modules/%s", dir, c->kernel_version) < 0)
		return NULL;
	if (asprintf(&tmp_modules, "/tmp%s", modules) < 0)
		return NULL;
	if (!(fw && *fw))
		return json_pack("[s, s]", modules, tmp_modules);
	if (asprintf(&tmp_fw, "/tmp%s", fw) < 0)
		return NULL;
	return json_pack("[s, s, s, s]", modules, tmp_modules, fw, tmp_fw);
}

/*
 * What every container of a worker pod gets: no capabilities, the runtime's
 * seccomp profile, no_new_privs and nothing writable but its volumes.
 */
static json_t *locked_down_context(void)
{
	return json_pack("{s:b, s:{s:[s]}, s:b, s:{s:s}}", "allowPrivilegeEscalation", 0,
			 "capabilities", "drop", "ALL", "readOnlyRootFilesystem", 1,
			 "seccompProfile", "type", "RuntimeDefault");
}

/*
 * The worker adds CAP_SYS_MODULE (finit_module, delete_module) and the SELinux
 * type that may load modules. Writing firmware_class.path takes no capability,
 * only DAC: the file is root's, mode 0644, as is the host firmware directory
 * the files go to, hence uid 0 for a firmware loader whatever
 * worker.runAsUser says.
 */
static json_t *worker_security_context(const struct kmm_op_worker_params *p, bool firmware)
{
	_cleanup_json_ json_t *sc = locked_down_context();
	json_int_t uid =
	    p->action == KMM_OP_LOAD && firmware ? 0 : (json_int_t)p->op->worker_run_as_user;

	if (!sc ||
	    json_object_set_new(json_object_get(sc, "capabilities"), "add",
				json_pack("[s]", "SYS_MODULE")) < 0 ||
	    json_object_set_new(sc, "runAsUser", json_integer(uid)) < 0 ||
	    json_object_set_new(
		sc, "seLinuxOptions",
		json_pack("{s:s}", "type",
			  p->op->worker_selinux_type ? p->op->worker_selinux_type : "spc_t")) < 0)
		return NULL;
	return TAKE_PTR(sc);
}

static int add_new(json_t *o, const char *key, json_t *v)
{
	return v ? json_object_set_new(o, key, v) : -1;
}

static int append_new(json_t *a, json_t *v)
{
	return v ? json_array_append_new(a, v) : -1;
}

/* metadata: name, labels, annotations (without the hash), finalizer, owner. */
static json_t *pod_metadata(const struct kmm_op_worker_params *p, const char *name,
			    const char *config_text, const char *softdep)
{
	bool load = p->action == KMM_OP_LOAD;
	_cleanup_json_ json_t *md = NULL;
	json_t *ann;

	md =
	    json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s}, s:{s:s}, s:[s], s:[{s:s, s:s, s:s, "
		      "s:s*, s:b, s:b}]}",
		      "name", name, "namespace", p->module_namespace, "labels",
		      "app.kubernetes.io/name", "kmm", "app.kubernetes.io/component", "worker",
		      "app.kubernetes.io/part-of", "kmm", KMM_LABEL_MODULE_NAME, p->module_name,
		      KMM_LABEL_WORKER_ACTION, load ? "Load" : "Unload", "annotations",
		      KMM_ANN_WORKER_CONFIG, config_text, "finalizers", KMM_FINALIZER_WORKER,
		      "ownerReferences", "apiVersion", KMM_API_VERSION, "kind", "NodeModulesConfig",
		      "name", p->node, "uid", p->nmc_uid, "controller", 1, "blockOwnerDeletion", 1);
	if (!md)
		return NULL;
	ann = json_object_get(md, "annotations");
	if (json_array_size(p->tolerations) > 0) {
		_cleanup_free_ char *t = json_dumps(p->tolerations, JSON_COMPACT);

		if (!t || json_object_set_new(ann, KMM_ANN_WORKER_TOLERATIONS, json_string(t)) < 0)
			return NULL;
	}
	if (load && p->version && *p->version &&
	    add_new(ann, KMM_ANN_WORKER_VERSION, json_string(p->version)) < 0)
		return NULL;
	if (softdep && add_new(ann, KMM_ANN_MODULES_ORDER, json_string(softdep)) < 0)
		return NULL;
	return TAKE_PTR(md);
}

/* Where a load pod mounts the Secret with the Module's signing certificate. */
#define SIGN_CERT_DIR "/run/kmm/sign-cert"

/* Loads of a signed mapping check every module against its certificate first. */
static bool verify_cert(const struct kmm_op_worker_params *p)
{
	return p->action == KMM_OP_LOAD && p->sign_cert_secret && *p->sign_cert_secret;
}

static json_t *worker_container(const struct kmm_op_worker_params *p, bool firmware, bool softdep)
{
	const char *fw_host =
	    p->op->worker_firmware_host_path ? p->op->worker_firmware_host_path : "/lib/firmware";
	_cleanup_json_ json_t *c = NULL;
	json_t *args, *mounts;

	/* kmm-worker's last log line on a failure becomes the termination message,
	 * which kmm quotes in the Module's status. */
	c = json_pack("{s:s, s:s, s:[s, s, s], s:s}", "name", "worker", "image",
		      p->op->worker_image ? p->op->worker_image : "", "args", "kmod",
		      p->action == KMM_OP_LOAD ? "load" : "unload", "/etc/kmm-worker/config.yaml",
		      "terminationMessagePolicy", "FallbackToLogsOnError");
	if (!c)
		return NULL;
	args = json_object_get(c, "args");
	if (firmware && (append_new(args, json_string("--firmware-path")) < 0 ||
			 append_new(args, json_string(fw_host)) < 0))
		return NULL;
	if (verify_cert(p) && (append_new(args, json_string("--verify-cert")) < 0 ||
			       append_new(args, json_string(SIGN_CERT_DIR "/cert")) < 0))
		return NULL;
	mounts = json_array();
	if (add_new(c, "volumeMounts", mounts) < 0 ||
	    append_new(mounts, mount("config", "/etc/kmm-worker", true)) < 0 ||
	    append_new(mounts, mount("lib-modules", "/lib/modules", true)) < 0 ||
	    append_new(mounts, mount("lib-modules", "/host/lib/modules", true)) < 0 ||
	    append_new(mounts, mount("tmp", "/tmp", true)) < 0)
		return NULL;
	if (softdep && append_new(mounts, mount("modules-order", "/etc/modprobe.d", true)) < 0)
		return NULL;
	if (firmware && append_new(mounts, mount("lib-firmware", fw_host, false)) < 0)
		return NULL;
	if (verify_cert(p) && append_new(mounts, mount("sign-cert", SIGN_CERT_DIR, true)) < 0)
		return NULL;
	if (firmware && p->action == KMM_OP_LOAD &&
	    (append_new(mounts, mount("firmware-class", FIRMWARE_CLASS_DIR, false)) < 0 ||
	     append_new(mounts, mount("firmware-class", FIRMWARE_CLASS_MOUNT, false)) < 0))
		return NULL;
	if (add_new(c, "resources", resources()) < 0 ||
	    add_new(c, "securityContext", worker_security_context(p, firmware)) < 0)
		return NULL;
	return TAKE_PTR(c);
}

/*
 * Runs in the worker image as nobody, only to put the static copier where the
 * extractor, running in the kmod image, can execute it.
 */
json_t *kmm_op_copier_container(const char *worker_image)
{
	_cleanup_json_ json_t *sc = locked_down_context();

	if (!sc || json_object_set_new(sc, "runAsUser", json_integer(65534)) < 0 ||
	    json_object_set_new(sc, "runAsGroup", json_integer(65534)) < 0)
		return NULL;
	return json_pack("{s:s, s:s, s:[s, s, s], s:[o], s:o, s:o}", "name", "install-copier",
			 "image", worker_image ? worker_image : "", "command",
			 COPIER_IN_WORKER_IMAGE, COPIER_IN_WORKER_IMAGE, COPIER, "volumeMounts",
			 mount(KMM_OP_COPIER_VOLUME, COPIER_DIR, false), "resources", resources(),
			 "securityContext", TAKE_PTR(sc));
}

/*
 * Runs as the kmod image's user: forcing another could leave it unable to
 * read the image's files.
 */
static json_t *extractor_container(const struct kmm_op_worker_params *p)
{
	return json_pack("{s:s, s:s, s:s, s:[s], s:o, s:[o, o], s:o, s:o}", "name",
			 "image-extractor", "image", p->config->container_image, "imagePullPolicy",
			 p->config->image_pull_policy ? p->config->image_pull_policy
						      : KMM_DEFAULT_PULL_POLICY,
			 "command", COPIER, "args", extract_args(p->config), "volumeMounts",
			 mount("tmp", "/tmp", false), mount(KMM_OP_COPIER_VOLUME, COPIER_DIR, true),
			 "resources", resources(), "securityContext", locked_down_context());
}

static json_t *pod_spec(const struct kmm_op_worker_params *p, bool firmware, bool softdep)
{
	const char *fw_host =
	    p->op->worker_firmware_host_path ? p->op->worker_firmware_host_path : "/lib/firmware";
	_cleanup_json_ json_t *s = NULL;
	json_t *vols;

	/*
	 * The ServiceAccount stays (its imagePullSecrets pull the images) but its
	 * token is not mounted.
	 */
	s = json_pack("{s:s, s:s, s:s, s:b, s:[o, o]}", "nodeName", p->node, "restartPolicy",
		      "OnFailure", "serviceAccountName",
		      p->service_account && *p->service_account ? p->service_account : "default",
		      "automountServiceAccountToken", 0, "initContainers",
		      kmm_op_copier_container(p->op->worker_image), extractor_container(p));
	if (!s)
		return NULL;
	if (p->image_repo_secret && *p->image_repo_secret &&
	    add_new(s, "imagePullSecrets", json_pack("[{s:s}]", "name", p->image_repo_secret)) < 0)
		return NULL;
	if (json_array_size(p->tolerations) > 0 &&
	    add_new(s, "tolerations", json_deep_copy(p->tolerations)) < 0)
		return NULL;
	if (add_new(s, "containers", json_pack("[o]", worker_container(p, firmware, softdep))) < 0)
		return NULL;
	vols = json_array();
	if (add_new(s, "volumes", vols) < 0 ||
	    append_new(vols, downward_volume("config", "config.yaml", KMM_ANN_WORKER_CONFIG)) < 0 ||
	    append_new(vols, host_volume("lib-modules", "/lib/modules", "Directory")) < 0 ||
	    append_new(vols, json_pack("{s:s, s:{}}", "name", "tmp", "emptyDir")) < 0 ||
	    append_new(vols, json_pack("{s:s, s:{}}", "name", KMM_OP_COPIER_VOLUME, "emptyDir")) <
		0)
		return NULL;
	if (softdep && append_new(vols, downward_volume("modules-order", "softdep.conf",
							KMM_ANN_MODULES_ORDER)) < 0)
		return NULL;
	if (firmware &&
	    append_new(vols, host_volume("lib-firmware", fw_host, "DirectoryOrCreate")) < 0)
		return NULL;
	if (firmware && p->action == KMM_OP_LOAD &&
	    append_new(vols, host_volume("firmware-class", FIRMWARE_CLASS_DIR, "Directory")) < 0)
		return NULL;
	if (verify_cert(p) &&
	    append_new(vols, json_pack("{s:s, s:{s:s, s:[{s:s, s:s}]}}", "name", "sign-cert",
				       "secret", "secretName", p->sign_cert_secret, "items", "key",
				       "cert", "path", "cert")) < 0)
		return NULL;
	return TAKE_PTR(s);
}

int kmm_op_worker_pod(const struct kmm_op_worker_params *p, json_t **ret, struct kmm_error **err)
{
	const struct kmm_module_config *c = p->config;
	bool firmware = c->modprobe.firmware_path && *c->modprobe.firmware_path;
	_cleanup_free_ char *name = kmm_op_worker_pod_name(p->node, p->module_name);
	_cleanup_free_ char *softdep = NULL;
	_cleanup_free_ char *config_text = NULL;
	_cleanup_free_ char *hash = NULL;
	_cleanup_json_ json_t *config = kmm_module_config_to_json(c);
	_cleanup_json_ json_t *pod = NULL;
	json_t *md, *spec;

	if (p->action == KMM_OP_LOAD)
		softdep = kmm_op_softdep(c->modprobe.modules_loading_order);
	if (!name || !config)
		return kmm_error_make(err, ENOMEM, "out of memory");
	config_text = json_dumps(config, JSON_SORT_KEYS | JSON_INDENT(0) | JSON_COMPACT);
	if (!config_text)
		return kmm_error_make(err, ENOMEM, "out of memory");
	md = pod_metadata(p, name, config_text, softdep);
	spec = pod_spec(p, firmware, softdep != NULL);
	pod = json_pack("{s:s, s:s, s:o*, s:o*}", "apiVersion", "v1", "kind", "Pod", "metadata", md,
			"spec", spec);
	if (!pod || !md || !spec)
		return kmm_error_make(err, ENOMEM, "out of memory");
	hash = kmm_op_hash_json(pod);
	if (!hash || json_object_set_new(json_object_get(md, "annotations"), KMM_ANN_WORKER_HASH,
					 json_string(hash)) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	*ret = TAKE_PTR(pod);
	return 0;
}

const json_t *kmm_op_worker_init_status(const json_t *statuses)
{
	const json_t *st;
	size_t i;

	json_array_foreach (statuses, i, st)
		if (json_object_get(json_object_get(st, "state"), "waiting"))
			return st;
	return json_array_get(statuses, 0);
}
