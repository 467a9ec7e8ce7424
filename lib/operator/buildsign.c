/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Build and sign pods in upstream's shape (reference §5), with kaniko or
 * buildah as the builder. Deliberate differences from upstream:
 *  - the sign step runs kmm-sign (exec-form RUN, no shell in its image), which
 *    expands filesToSign globs itself, instead of a shell loop over sign-file;
 *  - last-hash is a SHA-256 of the canonical pod JSON plus its inputs, so it
 *    is stable across operator versions that render the same pod;
 *  - no builder is privileged (see build_security_context()) and the pod gets
 *    no ServiceAccount token: registry credentials come from imageRepoSecret.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "kmm/shared-buf.h"
#include "kmm/operator-buildsign.h"
#include "kmm/shared-json.h"
#include "kmm/shared-strv.h"

#define DNS_LABEL_MAX 63
#define DNS_SUBDOMAIN_MAX 253
/* A rendered Dockerfile or shell script: far above any real one, far below etcd's limits. */
#define SCRIPT_MAX (256 * 1024)

#define WORKSPACE "/workspace"
#define DOCKER_CONFIG_DIR "/kaniko/.docker"
#define BUILDAH_AUTHFILE DOCKER_CONFIG_DIR "/config.json"

char *kmm_shell_quote(const char *s)
{
	_cleanup_buf_ struct kmm_buf b = { 0 };

	kmm_buf_init(&b, 0);
	if (kmm_buf_append_str(&b, "'") < 0)
		return NULL;
	for (; *s; s++) {
		/* Inside single quotes only ' itself is special: close, escape it, reopen. */
		if (*s == '\'' ? kmm_buf_append_str(&b, "'\\''") < 0 : kmm_buf_append(&b, s, 1) < 0)
			return NULL;
	}
	if (kmm_buf_append_str(&b, "'") < 0)
		return NULL;
	return kmm_buf_steal(&b);
}

char *kmm_buildsign_dns_kernel(const char *kernel)
{
	size_t n = 0, start = 0;
	char *out = malloc(DNS_LABEL_MAX + 1);

	if (!out)
		return NULL;
	for (const char *c = kernel ? kernel : ""; *c && n < DNS_LABEL_MAX; c++) {
		char ch = (char)tolower((unsigned char)*c);

		if (ch == '_' || ch == '.')
			ch = '-';
		if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')
			out[n++] = ch;
	}
	/* A label starts and ends with an alphanumeric. */
	while (n > 0 && out[n - 1] == '-')
		n--;
	while (start < n && out[start] == '-')
		start++;
	memmove(out, out + start, n - start);
	out[n - start] = '\0';
	return out;
}

char *kmm_buildsign_pod_name(const char *mbsc, const char *action, const char *kernel)
{
	_cleanup_free_ char *k = NULL;
	const char *verb;
	char *s = NULL;
	size_t n;

	if (!mbsc || !action)
		return NULL;
	if (strcmp(action, KMM_ACTION_BUILD) == 0)
		verb = "build";
	else if (strcmp(action, KMM_ACTION_SIGN) == 0)
		verb = "sign";
	else
		return NULL;
	k = kmm_buildsign_dns_kernel(kernel);
	if (!k || asprintf(&s, "%s-%s-%s", mbsc, verb, k) < 0)
		return NULL;
	n = strlen(s);
	if (n > DNS_SUBDOMAIN_MAX)
		n = DNS_SUBDOMAIN_MAX;
	/* Cutting may leave a separator at the end, which a name must not have. */
	while (n > 0 && (s[n - 1] == '-' || s[n - 1] == '.'))
		n--;
	s[n] = '\0';
	return s;
}

static bool is_build(const struct kmm_buildsign_params *p)
{
	return strcmp(p->image->action, KMM_ACTION_BUILD) == 0;
}

/*
 * A word written unquoted into a Dockerfile line (image references, dirName):
 * whitespace or a control character would split or end the instruction.
 */
static bool dockerfile_word(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++) {
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return false;
	}
	return true;
}

/* image with its tag (and digest, which would pin the old tag's content) replaced. */
static char *replace_tag(const char *image, const char *tag)
{
	const char *at = strchr(image, '@');
	size_t end = at ? (size_t)(at - image) : strlen(image);
	const char *slash = memrchr(image, '/', end);
	const char *colon = memrchr(image, ':', end);
	char *s = NULL;

	/* A ':' before the last '/' is a registry port, not a tag. */
	if (colon && (!slash || colon > slash))
		end = (size_t)(colon - image);
	if (asprintf(&s, "%.*s:%s", (int)end, image, tag) < 0)
		return NULL;
	return s;
}

static const struct kmm_tls_options no_tls_options;

static const struct kmm_tls_options *push_tls(const struct kmm_buildsign_params *p)
{
	return p->image->registry_tls ? p->image->registry_tls : &no_tls_options;
}

static const struct kmm_tls_options *pull_tls(const struct kmm_buildsign_params *p)
{
	return is_build(p) ? &p->image->build->base_image_registry_tls
			   : &p->image->sign->unsigned_image_registry_tls;
}

/*
 * NAME=VALUE for the build: the user's args in their order, where the four
 * kmm injects (KERNEL_VERSION, KERNEL_FULL_VERSION, MOD_NAME, MOD_NAMESPACE)
 * replace a user value of the same name in place, then the injected ones the
 * user did not name, in that fixed order. Upstream overrides the same way,
 * so a Module cannot point MOD_NAME somewhere else.
 */
static int build_args(const struct kmm_buildsign_params *p, char ***ret)
{
	const struct kmm_build *b = p->image->build;
	const char *inj_names[] = { "KERNEL_VERSION", "KERNEL_FULL_VERSION", "MOD_NAME",
				    "MOD_NAMESPACE" };
	const char *inj_values[] = { p->image->kernel_version, p->image->kernel_version,
				     p->module_name, p->mbsc->namespace };
	bool used[KMM_ARRAY_SIZE(inj_names)] = { false };
	_cleanup_strv_free_ char **v = NULL;

	for (size_t i = 0; i < b->n_build_args; i++) {
		const char *name = b->build_args[i].name ? b->build_args[i].name : "";
		const char *value = b->build_args[i].value ? b->build_args[i].value : "";

		for (size_t j = 0; j < KMM_ARRAY_SIZE(inj_names); j++) {
			if (strcmp(name, inj_names[j]) == 0) {
				value = inj_values[j];
				used[j] = true;
			}
		}
		if (kmm_strv_pushf(&v, "%s=%s", name, value) < 0)
			return -ENOMEM;
	}
	for (size_t j = 0; j < KMM_ARRAY_SIZE(inj_names); j++) {
		if (!used[j] && kmm_strv_pushf(&v, "%s=%s", inj_names[j], inj_values[j]) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(v);
	return 0;
}

static const char *unsigned_image(const struct kmm_buildsign_params *p)
{
	/* With a build in the same entry, the build pushed the unsigned image to the tag. */
	if (!p->image->build && p->image->sign->unsigned_image && *p->image->sign->unsigned_image)
		return p->image->sign->unsigned_image;
	return p->image->image;
}

int kmm_buildsign_sign_dockerfile(const struct kmm_buildsign_params *p, char **ret,
				  struct kmm_error **err)
{
	const struct kmm_sign *s = p->image->sign;
	const char *dir =
	    p->image->dir_name && *p->image->dir_name ? p->image->dir_name : KMM_DEFAULT_DIR_NAME;
	const char *src = s ? unsigned_image(p) : NULL;
	_cleanup_json_ json_t *exec = NULL;
	_cleanup_free_ char *exec_text = NULL;
	_cleanup_buf_ struct kmm_buf b = { 0 };

	kmm_buf_init(&b, SCRIPT_MAX);
	if (!s)
		return kmm_error_make(err, EINVAL, "image %s: no sign section", p->image->image);
	if (!dockerfile_word(src))
		return kmm_error_make(err, EINVAL, "image %s: bad unsigned image '%s'",
				      p->image->image, src ? src : "");
	if (!dockerfile_word(p->sign_image))
		return kmm_error_make(err, EINVAL, "no usable sign image (RELATED_IMAGE_SIGN)");
	if (!dockerfile_word(dir) || dir[0] != '/')
		return kmm_error_make(err, EINVAL, "image %s: bad dirName '%s'", p->image->image,
				      dir);
	if (kmm_strv_length(s->files_to_sign) == 0)
		return kmm_error_make(err, EINVAL, "image %s: sign.filesToSign is empty",
				      p->image->image);
	exec = json_pack("[s, s, s, s, s, s]", "/usr/local/bin/kmm-sign", "sign", "--key",
			 KMM_SIGN_KEY_PATH, "--cert", KMM_SIGN_CERT_PATH);
	if (!exec)
		return kmm_error_make(err, ENOMEM, "out of memory");
	for (char **f = s->files_to_sign; *f; f++) {
		_cleanup_free_ char *path = NULL;

		/* Files live under dirName, which the signimage stage copied to /opt<dirName>. */
		if (asprintf(&path, "/opt%s", *f) < 0 ||
		    json_array_append_new(exec, json_string(path)) < 0)
			return kmm_error_make(err, ENOMEM, "out of memory");
	}
	/* JSON is the exec form's syntax, so its escaping is the Dockerfile's. */
	exec_text = json_dumps(exec, JSON_COMPACT);
	if (!exec_text)
		return kmm_error_make(err, EINVAL, "image %s: filesToSign is not valid UTF-8",
				      p->image->image);
	if (kmm_buf_printf(
		&b, "FROM %s AS source\n\nFROM %s AS signimage\nCOPY --from=source %s /opt%s\n",
		src, p->sign_image, dir, dir) < 0 ||
	    kmm_buf_append_str(&b, "RUN ") < 0 ||
	    /* buildah hands the key and cert to the RUN step only; kaniko's pod mounts are visible. */
	    (p->builder == KMM_BUILDER_BUILDAH &&
	     kmm_buf_append_str(&b, "--mount=type=secret,id=key,target=" KMM_SIGN_KEY_PATH
				    " --mount=type=secret,id=cert,target=" KMM_SIGN_CERT_PATH
				    " ") < 0) ||
	    kmm_buf_printf(&b, "%s\n\nFROM source\nCOPY --from=signimage /opt%s %s\n", exec_text,
			   dir, dir) < 0)
		return kmm_error_make(err, E2BIG, "image %s: sign Dockerfile larger than %d bytes",
				      p->image->image, SCRIPT_MAX);
	*ret = kmm_buf_steal(&b);
	if (!*ret)
		return kmm_error_make(err, ENOMEM, "out of memory");
	return 0;
}

static int add_new(json_t *o, const char *key, json_t *v)
{
	return v ? json_object_set_new(o, key, v) : -1;
}

static int append_new(json_t *a, json_t *v)
{
	return v ? json_array_append_new(a, v) : -1;
}

static int append_str(json_t *a, const char *s)
{
	return append_new(a, json_string(s));
}

static json_t *mount(const char *name, const char *path, bool ro)
{
	return json_pack("{s:s, s:s, s:b}", "name", name, "mountPath", path, "readOnly", ro);
}

/* A Secret volume exposing one key under one file name. */
static json_t *secret_volume(const char *name, const char *secret, const char *key,
			     const char *file)
{
	return json_pack("{s:s, s:{s:s, s:[{s:s, s:s}]}}", "name", name, "secret", "secretName",
			 secret, "items", "key", key, "path", file);
}

static json_t *pod_metadata(const struct kmm_buildsign_params *p, const char *name,
			    const char *kernel_label)
{
	const json_t *uid = json_object_get(p->mbsc->metadata, "uid");
	const char *action = p->image->action;

	return json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s, s:s}, s:{}, s:[s, s], "
			 "s:[{s:s, s:s, s:s, s:s, s:b, s:b}]}",
			 "name", name, "namespace", p->mbsc->namespace, "labels",
			 KMM_LABEL_MODULE_NAME, p->mbsc->name, KMM_LABEL_RESOURCE_TYPE, action,
			 KMM_LABEL_TARGET_KERNEL, kernel_label, "app.kubernetes.io/name", "kmm",
			 "app.kubernetes.io/component", action, "app.kubernetes.io/part-of", "kmm",
			 "annotations", "finalizers", KMM_FINALIZER_GC_DELAY,
			 KMM_FINALIZER_JOB_EVENT, "ownerReferences", "apiVersion", KMM_API_VERSION,
			 "kind", "ModuleBuildSignConfig", "name", p->mbsc->name, "uid",
			 json_is_string(uid) ? json_string_value(uid) : "", "controller", 1,
			 "blockOwnerDeletion", 1);
}

/* Volumes and the container's mounts, the same for both builders. */
static int add_volumes(const struct kmm_buildsign_params *p, json_t *vols, json_t *mounts)
{
	const char *pull_secret = p->mbsc->image_repo_secret;

	if (is_build(p)) {
		const struct kmm_build *b = p->image->build;

		if (append_new(vols,
			       json_pack("{s:s, s:{s:s, s:[{s:s, s:s}]}}", "name", "dockerfile",
					 "configMap", "name", b->dockerfile_config_map, "items",
					 "key", "dockerfile", "path", "Dockerfile")) < 0 ||
		    append_new(mounts, mount("dockerfile", WORKSPACE, true)) < 0 ||
		    append_new(vols, json_pack("{s:s, s:{s:s}}", "name", "lib-modules", "hostPath",
					       "path", "/lib/modules")) < 0 ||
		    append_new(mounts, mount("lib-modules", "/host/lib/modules", true)) < 0)
			return -ENOMEM;
		for (size_t i = 0; i < kmm_strv_length(b->secrets); i++) {
			_cleanup_free_ char *vol = NULL, *path = NULL;

			/* Secret names may be longer than a volume name may be. */
			if (asprintf(&vol, "build-secret-%zu", i) < 0 ||
			    asprintf(&path, "/run/secrets/%s", b->secrets[i]) < 0 ||
			    append_new(vols, json_pack("{s:s, s:{s:s}}", "name", vol, "secret",
						       "secretName", b->secrets[i])) < 0 ||
			    append_new(mounts, mount(vol, path, true)) < 0)
				return -ENOMEM;
		}
	} else {
		const struct kmm_sign *s = p->image->sign;
		char field[64];

		snprintf(field, sizeof(field), "metadata.annotations['%s']", KMM_ANN_DOCKERFILE);
		if (append_new(vols, json_pack("{s:s, s:{s:[{s:s, s:{s:s}}]}}", "name",
					       "dockerfile", "downwardAPI", "items", "path",
					       "Dockerfile", "fieldRef", "fieldPath", field)) < 0 ||
		    append_new(mounts, mount("dockerfile", WORKSPACE, true)) < 0 ||
		    append_new(vols, secret_volume("key", s->key_secret, "key", "key.pem")) < 0 ||
		    append_new(mounts, mount("key", "/run/secrets/key", true)) < 0 ||
		    append_new(vols, secret_volume("cert", s->cert_secret, "cert", "cert.pem")) <
			0 ||
		    append_new(mounts, mount("cert", "/run/secrets/cert", true)) < 0)
			return -ENOMEM;
	}
	if (pull_secret && *pull_secret &&
	    (append_new(vols, secret_volume("docker-config", pull_secret, ".dockerconfigjson",
					    "config.json")) < 0 ||
	     append_new(mounts, mount("docker-config", DOCKER_CONFIG_DIR, true)) < 0))
		return -ENOMEM;
	return 0;
}

static json_t *kaniko_container(const struct kmm_buildsign_params *p, char **args_kv)
{
	const struct kmm_tls_options *push = push_tls(p), *pull = pull_tls(p);
	const char *tag =
	    is_build(p) && p->image->build->has_kaniko_params ? p->image->build->kaniko_tag : NULL;
	_cleanup_free_ char *image = NULL;
	_cleanup_json_ json_t *c = NULL;
	json_t *args;

	image = tag && *tag ? replace_tag(p->build_image, tag) : strdup(p->build_image);
	if (!image)
		return NULL;
	c = json_pack("{s:s, s:s, s:[]}", "name", "kaniko", "image", image, "args");
	if (!c)
		return NULL;
	args = json_object_get(c, "args");
	if (p->mbsc->push_built_image) {
		if (append_str(args, "--destination") < 0 ||
		    append_str(args, p->image->image) < 0 ||
		    (push->insecure && append_str(args, "--insecure") < 0) ||
		    (push->insecure_skip_tls_verify && append_str(args, "--skip-tls-verify") < 0))
			return NULL;
	} else if (append_str(args, "--no-push") < 0) {
		return NULL;
	}
	if ((pull->insecure && append_str(args, "--insecure-pull") < 0) ||
	    (pull->insecure_skip_tls_verify && append_str(args, "--skip-tls-verify-pull") < 0))
		return NULL;
	for (char **a = args_kv; a && *a; a++) {
		if (append_str(args, "--build-arg") < 0 || append_str(args, *a) < 0)
			return NULL;
	}
	return TAKE_PTR(c);
}

/* Appends " 'word'" to the script. */
static int script_word(struct kmm_buf *b, const char *word)
{
	_cleanup_free_ char *q = kmm_shell_quote(word);

	if (!q)
		return -ENOMEM;
	return kmm_buf_printf(b, " %s", q);
}

/*
 * The buildah script: bud then push, every value single-quoted. vfs storage
 * and chroot isolation because the pod has no overlay mounts nor nested
 * user namespaces to offer; /bin/sh is the buildah image's.
 */
static char *buildah_script(const struct kmm_buildsign_params *p, char **args_kv)
{
	const struct kmm_tls_options *push = push_tls(p), *pull = pull_tls(p);
	const char *secret = p->mbsc->image_repo_secret;
	bool auth = secret && *secret;
	_cleanup_buf_ struct kmm_buf b = { 0 };
	int r;

	kmm_buf_init(&b, SCRIPT_MAX);
	r = kmm_buf_append_str(&b, "set -e\nbuildah --storage-driver vfs bud --isolation chroot");
	if (r >= 0 && (pull->insecure || pull->insecure_skip_tls_verify))
		r = kmm_buf_append_str(&b, " --tls-verify=false");
	if (r >= 0 && auth)
		r = kmm_buf_append_str(&b, " --authfile " BUILDAH_AUTHFILE);
	for (char **a = args_kv; r >= 0 && a && *a; a++) {
		r = kmm_buf_append_str(&b, " --build-arg");
		if (r >= 0)
			r = script_word(&b, *a);
	}
	if (r >= 0 && !is_build(p))
		r = kmm_buf_append_str(&b, " --secret id=key,src=" KMM_SIGN_KEY_PATH
					   " --secret id=cert,src=" KMM_SIGN_CERT_PATH);
	if (r >= 0)
		r = kmm_buf_append_str(&b, " -f " WORKSPACE "/Dockerfile -t");
	if (r >= 0)
		r = script_word(&b, p->image->image);
	if (r >= 0)
		r = kmm_buf_append_str(&b, " " WORKSPACE "\n");
	if (r >= 0 && p->mbsc->push_built_image) {
		_cleanup_free_ char *dest = NULL;

		r = kmm_buf_append_str(&b, "buildah --storage-driver vfs push");
		if (r >= 0 && (push->insecure || push->insecure_skip_tls_verify))
			r = kmm_buf_append_str(&b, " --tls-verify=false");
		if (r >= 0 && auth)
			r = kmm_buf_append_str(&b, " --authfile " BUILDAH_AUTHFILE);
		if (r >= 0)
			r = script_word(&b, p->image->image);
		if (r >= 0 && asprintf(&dest, "docker://%s", p->image->image) < 0)
			r = -ENOMEM;
		if (r >= 0)
			r = script_word(&b, dest);
		if (r >= 0)
			r = kmm_buf_append_str(&b, "\n");
	}
	if (r < 0)
		return NULL;
	return kmm_buf_steal(&b);
}

static json_t *buildah_container(const struct kmm_buildsign_params *p, char **args_kv)
{
	_cleanup_free_ char *script = buildah_script(p, args_kv);

	if (!script)
		return NULL;
	return json_pack("{s:s, s:s, s:[s, s], s:[s]}", "name", "buildah", "image", p->build_image,
			 "command", "/bin/sh", "-c", "args", script);
}

/*
 * The capabilities a Dockerfile's RUN step has under buildah by default
 * (containers.conf's default_capabilities): the builder needs them to unpack
 * layers as their owners (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, SETFCAP), to
 * chroot into the build container, and to hand the same set to RUN steps,
 * which switch users (SETUID, SETGID) and trim their bounding set (SETPCAP).
 * The runtimes' defaults minus MKNOD, NET_RAW and AUDIT_WRITE; all within
 * the Pod Security Standards' baseline list. kmm-builder's containers.conf
 * (scripts/images) names the same list: buildah's built-in one has those
 * three, and asking for a capability the pod lacks fails every RUN.
 */
static const char *const builder_caps[] = { "CHOWN",   "DAC_OVERRIDE",	   "FOWNER",	"FSETID",
					    "KILL",    "NET_BIND_SERVICE", "SETFCAP",	"SETGID",
					    "SETPCAP", "SETUID",	   "SYS_CHROOT" };

/*
 * Root (a Dockerfile's RUN steps install packages), drop ALL but
 * builder_caps, the runtime's seccomp profile, no_new_privs. buildah's chroot
 * isolation also unshares a mount namespace and bind-mounts into the build
 * container: SYS_ADMIN (which the default seccomp profiles demand for unshare
 * and mount) and no AppArmor profile (the default one denies mount). That is
 * still far from privileged: no devices, no host /sys or /proc, seccomp on.
 * Both write their root filesystem (kaniko unpacks into /, buildah stores
 * images under /var/lib/containers).
 */
static json_t *build_security_context(const struct kmm_buildsign_params *p)
{
	bool buildah = p->builder == KMM_BUILDER_BUILDAH;
	_cleanup_json_ json_t *sc = NULL;
	json_t *add = json_array();

	sc = json_pack("{s:b, s:{s:[s], s:o*}, s:i, s:{s:s}}", "allowPrivilegeEscalation", 0,
		       "capabilities", "drop", "ALL", "add", add, "runAsUser", 0, "seccompProfile",
		       "type", "RuntimeDefault");
	if (!sc || !add)
		return NULL;
	for (size_t i = 0; i < KMM_ARRAY_SIZE(builder_caps); i++) {
		if (append_str(add, builder_caps[i]) < 0)
			return NULL;
	}
	if (buildah &&
	    (append_str(add, "SYS_ADMIN") < 0 ||
	     add_new(sc, "appArmorProfile", json_pack("{s:s}", "type", "Unconfined")) < 0))
		return NULL;
	return TAKE_PTR(sc);
}

static json_t *pod_spec(const struct kmm_buildsign_params *p, char **args_kv)
{
	_cleanup_json_ json_t *s = NULL, *c = NULL;
	json_t *vols;

	c = p->builder == KMM_BUILDER_BUILDAH ? buildah_container(p, args_kv)
					      : kaniko_container(p, args_kv);
	s = json_pack("{s:s, s:b, s:[]}", "restartPolicy", "Never", "automountServiceAccountToken",
		      0, "volumes");
	if (!c || !s || add_new(c, "securityContext", build_security_context(p)) < 0 ||
	    add_new(c, "volumeMounts", json_array()) < 0)
		return NULL;
	vols = json_object_get(s, "volumes");
	if (add_volumes(p, vols, json_object_get(c, "volumeMounts")) < 0)
		return NULL;
	if (is_build(p) && p->image->build->selector.n > 0) {
		const struct kmm_strmap *sel = &p->image->build->selector;
		json_t *ns = json_object();

		if (add_new(s, "nodeSelector", ns) < 0)
			return NULL;
		for (size_t i = 0; i < sel->n; i++) {
			if (add_new(ns, sel->keys[i], json_string(sel->values[i])) < 0)
				return NULL;
		}
	}
	if (p->mbsc->n_tolerations > 0 &&
	    add_new(s, "tolerations",
		    kmm_tolerations_to_json(p->mbsc->tolerations, p->mbsc->n_tolerations)) < 0)
		return NULL;
	if (add_new(s, "containers", json_pack("[O]", c)) < 0)
		return NULL;
	return TAKE_PTR(s);
}

static int digest_part(EVP_MD_CTX *ctx, const char *tag, const char *value)
{
	/* Tagged and NUL-separated, so moving bytes from one input to the next changes the hash. */
	if (!value)
		return 0;
	if (EVP_DigestUpdate(ctx, tag, strlen(tag) + 1) != 1 ||
	    EVP_DigestUpdate(ctx, value, strlen(value) + 1) != 1)
		return -EIO;
	return 0;
}

static char *last_hash(const struct kmm_buildsign_params *p, const json_t *pod)
{
	_cleanup_free_ char *text = json_dumps(pod, JSON_SORT_KEYS | JSON_COMPACT);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	bool ok;
	char *hex;

	ok = text && ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	     digest_part(ctx, "pod", text) == 0 &&
	     (!is_build(p) || digest_part(ctx, "dockerfile", p->dockerfile) == 0) &&
	     (is_build(p) || (digest_part(ctx, "key", p->key_digest) == 0 &&
			      digest_part(ctx, "cert", p->cert_digest) == 0)) &&
	     EVP_DigestFinal_ex(ctx, md, &n) == 1;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return NULL;
	hex = malloc((size_t)n * 2 + 1);
	if (!hex)
		return NULL;
	for (unsigned int i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return hex;
}

static int check_params(const struct kmm_buildsign_params *p, struct kmm_error **err)
{
	const struct kmm_module_image_spec *im = p->image;

	if (!p->mbsc->name || !p->mbsc->namespace || !p->module_name)
		return kmm_error_make(err, EINVAL, "owner without name or namespace");
	if (!im->image || !*im->image || !im->kernel_version || !*im->kernel_version)
		return kmm_error_make(err, EINVAL, "image entry without image or kernelVersion");
	if (!im->action ||
	    (strcmp(im->action, KMM_ACTION_BUILD) != 0 && strcmp(im->action, KMM_ACTION_SIGN) != 0))
		return kmm_error_make(err, EINVAL, "image %s: unknown action '%s'", im->image,
				      im->action ? im->action : "");
	if (!p->build_image || !*p->build_image)
		return kmm_error_make(err, EINVAL, "no build image (RELATED_IMAGE_BUILD)");
	if (is_build(p) && (!im->build || !im->build->dockerfile_config_map))
		return kmm_error_make(err, EINVAL, "image %s: no build.dockerfileConfigMap",
				      im->image);
	if (!is_build(p) && (!im->sign || !im->sign->key_secret || !im->sign->cert_secret))
		return kmm_error_make(err, EINVAL, "image %s: no sign.keySecret or sign.certSecret",
				      im->image);
	return 0;
}

int kmm_buildsign_pod(const struct kmm_buildsign_params *p, json_t **ret_pod,
		      struct kmm_error **err)
{
	_cleanup_free_ char *kernel = NULL, *name = NULL, *dockerfile = NULL, *hash = NULL;
	_cleanup_strv_free_ char **args_kv = NULL;
	_cleanup_json_ json_t *pod = NULL;
	json_t *md, *ann;
	int r;

	r = check_params(p, err);
	if (r < 0)
		return r;
	kernel = kmm_buildsign_dns_kernel(p->image->kernel_version);
	name = kmm_buildsign_pod_name(p->mbsc->name, p->image->action, p->image->kernel_version);
	if (!kernel || !name)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (!*kernel)
		return kmm_error_make(err, EINVAL, "image %s: kernel '%s' has no DNS-safe form",
				      p->image->image, p->image->kernel_version);
	if (is_build(p) && build_args(p, &args_kv) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	if (!is_build(p)) {
		r = kmm_buildsign_sign_dockerfile(p, &dockerfile, err);
		if (r < 0)
			return r;
	}
	md = pod_metadata(p, name, kernel);
	pod = json_pack("{s:s, s:s, s:o*, s:o*}", "apiVersion", "v1", "kind", "Pod", "metadata", md,
			"spec", pod_spec(p, args_kv));
	if (!pod || !md || !json_object_get(pod, "spec"))
		return kmm_error_make(err, ENOMEM, "out of memory");
	ann = json_object_get(md, "annotations");
	if (dockerfile && add_new(ann, KMM_ANN_DOCKERFILE, json_string(dockerfile)) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	hash = last_hash(p, pod);
	if (!hash || add_new(ann, KMM_ANN_LAST_HASH, json_string(hash)) < 0)
		return kmm_error_make(err, ENOMEM, "out of memory");
	*ret_pod = TAKE_PTR(pod);
	return 0;
}
