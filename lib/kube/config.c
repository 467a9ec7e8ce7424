/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kubeconfig and in-cluster configuration. Pure data: parse, validate, resolve
 * relative paths, decode base64 blobs. The client (transport.c) turns this
 * into curl options and handles token re-reads and exec plugins.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "kmm/shared-fileio.h"
#include "kmm/kubeconfig.h"
#include "kmm/shared-yaml.h"
#include "kmm/shared-strv.h"
#include "lib/kube/kube-internal.h"
#include "lib/testable.h"

#define SA_DIR_DEFAULT "/var/run/secrets/kubernetes.io/serviceaccount"
#define KUBECONFIG_MAX ((size_t)4 * 1024 * 1024)

void kmm_kube_config_free(struct kmm_kube_config *c)
{
	if (!c)
		return;
	free(c->source);
	free(c->server);
	free(c->tls_server_name);
	free(c->ca_file);
	free(c->ca_data);
	free(c->cert_file);
	free(c->cert_data);
	free(c->key_file);
	free(c->key_data);
	free(c->token);
	free(c->token_file);
	free(c->username);
	free(c->password);
	if (c->exec) {
		free(c->exec->command);
		kmm_strv_free(c->exec->args);
		kmm_strv_free(c->exec->env);
		free(c->exec->api_version);
		free(c->exec);
	}
	free(c->namespace);
	free(c->context);
	free(c);
}

int kmm_kube_base64_decode(const char *in, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *clean = NULL;
	_cleanup_free_ unsigned char *out = NULL;
	size_t n = 0, pad = 0, inlen = strlen(in);
	int len;

	clean = malloc(inlen + 1);
	if (!clean)
		return -ENOMEM;
	for (size_t i = 0; i < inlen; i++) {
		if (in[i] == ' ' || in[i] == '\n' || in[i] == '\r' || in[i] == '\t')
			continue;
		clean[n++] = in[i];
	}
	clean[n] = '\0';
	if (n % 4 != 0 || n > INT_MAX)
		return -EINVAL;
	if (n > 0 && clean[n - 1] == '=')
		pad++;
	if (n > 1 && clean[n - 2] == '=')
		pad++;
	out = malloc(n / 4 * 3 + 1);
	if (!out)
		return -ENOMEM;
	/* EVP_DecodeBlock rejects invalid characters; '=' is only legal as padding. */
	for (size_t i = 0; i + pad < n; i++)
		if (clean[i] == '=')
			return -EINVAL;
	len = EVP_DecodeBlock(out, (const unsigned char *)clean, (int)n);
	if (len < 0 || (size_t)len < pad)
		return -EINVAL;
	len -= (int)pad;
	out[len] = '\0';
	*ret = (char *)TAKE_PTR(out);
	*ret_len = (size_t)len;
	return 0;
}

/* Finds the entry named `name` in the list at doc[list] ({name, <field>: {...}}). */
static int find_named(const json_t *doc, const char *source, const char *list, const char *field,
		      const char *name, const json_t **ret, char **ret_where,
		      struct kmm_error **err)
{
	const json_t *arr = json_object_get(doc, list);
	size_t i;
	json_t *it;

	if (arr && !json_is_array(arr))
		return kmm_error_make(err, EINVAL, "%s: %s: not a list", source, list);
	json_array_foreach (arr, i, it) {
		const json_t *n = json_object_get(it, "name");
		const json_t *v;

		if (!json_is_string(n) || strcmp(json_string_value(n), name) != 0)
			continue;
		v = json_object_get(it, field);
		if (!json_is_object(v))
			return kmm_error_make(err, EINVAL,
					      "%s: %s[%zu].%s: missing or not a mapping", source,
					      list, i, field);
		if (asprintf(ret_where, "%s[%zu].%s", list, i, field) < 0)
			return -ENOMEM;
		*ret = v;
		return 0;
	}
	return kmm_error_make(err, ENOENT, "%s: %s: no entry named \"%s\"", source, list, name);
}

/* Optional string member: NULL if absent; error if present but not a string. */
static int get_str(const json_t *obj, const char *key, const char *source, const char *where,
		   const char **ret, struct kmm_error **err)
{
	const json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v)) {
		*ret = NULL;
		return 0;
	}
	if (!json_is_string(v))
		return kmm_error_make(err, EINVAL, "%s: %s.%s: not a string", source, where, key);
	*ret = json_string_value(v);
	return 0;
}

static int dup_str(const json_t *obj, const char *key, const char *source, const char *where,
		   char **ret, struct kmm_error **err)
{
	const char *s = NULL;
	int r = get_str(obj, key, source, where, &s, err);

	if (r < 0)
		return r;
	if (!s || !*s)
		return 0;
	*ret = strdup(s);
	return *ret ? 0 : -ENOMEM;
}

static int dup_path(const json_t *obj, const char *key, const char *source, const char *where,
		    const char *base_dir, char **ret, struct kmm_error **err)
{
	const char *s = NULL;
	int r = get_str(obj, key, source, where, &s, err);

	if (r < 0)
		return r;
	if (!s || !*s)
		return 0;
	if (s[0] == '/' || !base_dir)
		*ret = strdup(s);
	else if (asprintf(ret, "%s/%s", base_dir, s) < 0)
		*ret = NULL;
	return *ret ? 0 : -ENOMEM;
}

static int dup_b64(const json_t *obj, const char *key, const char *source, const char *where,
		   char **ret, size_t *ret_len, struct kmm_error **err)
{
	const char *s = NULL;
	int r = get_str(obj, key, source, where, &s, err);

	if (r < 0)
		return r;
	if (!s || !*s)
		return 0;
	r = kmm_kube_base64_decode(s, ret, ret_len);
	if (r == -EINVAL)
		return kmm_error_make(err, EINVAL, "%s: %s.%s: invalid base64", source, where, key);
	return r;
}

static int get_bool(const json_t *obj, const char *key, const char *source, const char *where,
		    bool *ret, struct kmm_error **err)
{
	const json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return kmm_error_make(err, EINVAL, "%s: %s.%s: not a boolean", source, where, key);
	*ret = json_is_true(v);
	return 0;
}

static int parse_exec(const json_t *ex, const char *source, const char *where, const char *base_dir,
		      struct kmm_kube_exec **ret, struct kmm_error **err)
{
	_cleanup_free_ char *w = NULL;
	struct kmm_kube_exec *e;
	const json_t *args, *env;
	const char *cmd = NULL;
	size_t i;
	json_t *it;
	int r;

	if (asprintf(&w, "%s.exec", where) < 0)
		return -ENOMEM;
	if (!json_is_object(ex))
		return kmm_error_make(err, EINVAL, "%s: %s: not a mapping", source, w);
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	*ret = e; /* owned by the config from here on, freed with it */
	r = get_str(ex, "command", source, w, &cmd, err);
	if (r < 0)
		return r;
	if (!cmd || !*cmd)
		return kmm_error_make(err, EINVAL, "%s: %s.command: missing", source, w);
	if (strchr(cmd, '/') && cmd[0] != '/' && base_dir)
		r = asprintf(&e->command, "%s/%s", base_dir, cmd) < 0 ? -ENOMEM : 0;
	else
		r = (e->command = strdup(cmd)) ? 0 : -ENOMEM;
	if (r < 0)
		return r;
	r = dup_str(ex, "apiVersion", source, w, &e->api_version, err);
	if (r < 0)
		return r;
	if (!e->api_version)
		return kmm_error_make(err, EINVAL, "%s: %s.apiVersion: missing", source, w);
	if (strcmp(e->api_version, "client.authentication.k8s.io/v1") != 0 &&
	    strcmp(e->api_version, "client.authentication.k8s.io/v1beta1") != 0)
		return kmm_error_make(err, EINVAL, "%s: %s.apiVersion: unsupported \"%s\"", source,
				      w, e->api_version);
	r = get_bool(ex, "provideClusterInfo", source, w, &e->provide_cluster_info, err);
	if (r < 0)
		return r;
	e->args = calloc(1, sizeof(char *));
	e->env = calloc(1, sizeof(char *));
	if (!e->args || !e->env)
		return -ENOMEM;
	args = json_object_get(ex, "args");
	if (args && !json_is_null(args) && !json_is_array(args))
		return kmm_error_make(err, EINVAL, "%s: %s.args: not a list", source, w);
	json_array_foreach (args, i, it) {
		if (!json_is_string(it))
			return kmm_error_make(err, EINVAL, "%s: %s.args[%zu]: not a string", source,
					      w, i);
		if (kmm_strv_push(&e->args, json_string_value(it)) < 0)
			return -ENOMEM;
	}
	env = json_object_get(ex, "env");
	if (env && !json_is_null(env) && !json_is_array(env))
		return kmm_error_make(err, EINVAL, "%s: %s.env: not a list", source, w);
	json_array_foreach (env, i, it) {
		const char *n = json_string_value(json_object_get(it, "name"));
		const char *v = json_string_value(json_object_get(it, "value"));

		if (!n || !v || !*n || strchr(n, '='))
			return kmm_error_make(err, EINVAL,
					      "%s: %s.env[%zu]: needs string name and value",
					      source, w, i);
		if (kmm_strv_pushf(&e->env, "%s=%s", n, v) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int parse_cluster(struct kmm_kube_config *c, const json_t *cl, const char *where,
			 const char *base_dir, struct kmm_error **err)
{
	const char *src = c->source;
	size_t l;
	int r;

	if ((r = dup_str(cl, "server", src, where, &c->server, err)) < 0 ||
	    (r = dup_str(cl, "tls-server-name", src, where, &c->tls_server_name, err)) < 0 ||
	    (r = dup_path(cl, "certificate-authority", src, where, base_dir, &c->ca_file, err)) <
		0 ||
	    (r = dup_b64(cl, "certificate-authority-data", src, where, &c->ca_data, &c->ca_data_len,
			 err)) < 0 ||
	    (r = get_bool(cl, "insecure-skip-tls-verify", src, where, &c->insecure_skip_tls_verify,
			  err)) < 0)
		return r;
	if (!c->server)
		return kmm_error_make(err, EINVAL, "%s: %s.server: missing", src, where);
	if (strncmp(c->server, "https://", 8) != 0 && strncmp(c->server, "http://", 7) != 0)
		return kmm_error_make(err, EINVAL, "%s: %s.server: \"%s\" is not an http(s) URL",
				      src, where, c->server);
	l = strlen(c->server);
	while (l > 0 && c->server[l - 1] == '/')
		c->server[--l] = '\0';
	if (c->insecure_skip_tls_verify && (c->ca_file || c->ca_data))
		return kmm_error_make(
		    err, EINVAL, "%s: %s: insecure-skip-tls-verify with a certificate authority",
		    src, where);
	return 0;
}

static int parse_user(struct kmm_kube_config *c, const json_t *u, const char *where,
		      const char *base_dir, struct kmm_error **err)
{
	const char *src = c->source;
	const json_t *ex;
	int r;

	if ((r = dup_path(u, "client-certificate", src, where, base_dir, &c->cert_file, err)) < 0 ||
	    (r = dup_b64(u, "client-certificate-data", src, where, &c->cert_data, &c->cert_data_len,
			 err)) < 0 ||
	    (r = dup_path(u, "client-key", src, where, base_dir, &c->key_file, err)) < 0 ||
	    (r = dup_b64(u, "client-key-data", src, where, &c->key_data, &c->key_data_len, err)) <
		0 ||
	    (r = dup_str(u, "token", src, where, &c->token, err)) < 0 ||
	    (r = dup_path(u, "tokenFile", src, where, base_dir, &c->token_file, err)) < 0 ||
	    (r = dup_str(u, "username", src, where, &c->username, err)) < 0 ||
	    (r = dup_str(u, "password", src, where, &c->password, err)) < 0)
		return r;
	if ((c->cert_file || c->cert_data) != (c->key_file || c->key_data))
		return kmm_error_make(
		    err, EINVAL, "%s: %s: client certificate and client key must come together",
		    src, where);
	if (json_object_get(u, "auth-provider"))
		return kmm_error_make(err, ENOTSUP,
				      "%s: %s.auth-provider: not supported, use an exec plugin",
				      src, where);
	ex = json_object_get(u, "exec");
	if (ex && !json_is_null(ex)) {
		r = parse_exec(ex, src, where, base_dir, &c->exec, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int kmm_kube_config_from_json(const json_t *doc, const char *source, const char *base_dir,
			      const char *context, struct kmm_kube_config **ret_config,
			      struct kmm_error **err)
{
	_cleanup_kube_config_ struct kmm_kube_config *c = NULL;
	_cleanup_free_ char *ctx_where = NULL, *cl_where = NULL, *u_where = NULL;
	const json_t *ctx = NULL, *cl = NULL, *u = NULL;
	const char *name = NULL, *cluster = NULL, *user = NULL;
	int r;

	if (!source)
		source = "kubeconfig";
	if (!json_is_object(doc))
		return kmm_error_make(err, EINVAL, "%s: not a mapping", source);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->source = strdup(source);
	if (!c->source)
		return -ENOMEM;
	if (!context) {
		r = get_str(doc, "current-context", source, "", &context, err);
		if (r < 0)
			return r;
		if (!context || !*context)
			return kmm_error_make(err, EINVAL,
					      "%s: current-context: missing and no context given",
					      source);
	}
	c->context = strdup(context);
	if (!c->context)
		return -ENOMEM;
	r = find_named(doc, source, "contexts", "context", context, &ctx, &ctx_where, err);
	if (r < 0)
		return r;
	if ((r = get_str(ctx, "cluster", source, ctx_where, &cluster, err)) < 0 ||
	    (r = get_str(ctx, "user", source, ctx_where, &user, err)) < 0 ||
	    (r = dup_str(ctx, "namespace", source, ctx_where, &c->namespace, err)) < 0)
		return r;
	if (!cluster || !*cluster)
		return kmm_error_make(err, EINVAL, "%s: %s.cluster: missing", source, ctx_where);
	r = find_named(doc, source, "clusters", "cluster", cluster, &cl, &cl_where, err);
	if (r < 0)
		return r;
	r = parse_cluster(c, cl, cl_where, base_dir, err);
	if (r < 0)
		return r;
	if (user && *user) {
		r = find_named(doc, source, "users", "user", user, &u, &u_where, err);
		if (r < 0)
			return r;
		r = parse_user(c, u, u_where, base_dir, err);
		if (r < 0)
			return r;
	}
	if (!c->namespace && !(c->namespace = strdup("default")))
		return -ENOMEM;
	(void)name;
	*ret_config = TAKE_PTR(c);
	return 0;
}

/* Offset of the first byte that is not part of well-formed UTF-8, or len. */
static size_t utf8_valid_prefix(const unsigned char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = p[i];
		size_t n = c < 0x80		? 1
			   : (c & 0xe0) == 0xc0 ? 2
			   : (c & 0xf0) == 0xe0 ? 3
			   : (c & 0xf8) == 0xf0 ? 4
						: 0;
		uint32_t cp;

		if (n == 0 || i + n > len)
			return i;
		cp = n == 1 ? c : c & (0x7f >> n);
		for (size_t k = 1; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return i;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		/* overlong forms, surrogates, beyond U+10FFFF */
		if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return i;
		i += n;
	}
	return len;
}

int kmm_kube_config_from_text(const char *data, size_t len, const char *source,
			      const char *base_dir, const char *context,
			      struct kmm_kube_config **ret_config, struct kmm_error **err)
{
	_cleanup_(json_decrefp) json_t *docs = NULL;
	size_t bad;
	int r;

	if (!source)
		source = "kubeconfig";
	bad = utf8_valid_prefix((const unsigned char *)data, len);
	if (bad < len)
		return kmm_error_make(err, EINVAL, "%s: not UTF-8 (byte %zu)", source, bad);
	r = kmm_yaml_parse(data, len, source, 0, &docs, err);
	if (r < 0)
		return r;
	if (json_array_size(docs) != 1)
		return kmm_error_make(err, EINVAL, "%s: expected one YAML document, found %zu",
				      source, json_array_size(docs));
	return kmm_kube_config_from_json(json_array_get(docs, 0), source, base_dir, context,
					 ret_config, err);
}

int kmm_kube_config_load_file(const char *path, const char *context,
			      struct kmm_kube_config **ret_config, struct kmm_error **err)
{
	_cleanup_free_ char *dir = NULL, *data = NULL;
	size_t len = 0;
	char *slash;
	int r;

	r = kmm_read_file(path, KUBECONFIG_MAX, &data, &len, err);
	if (r < 0)
		return r;
	dir = realpath(path, NULL);
	if (!dir && !(dir = strdup(path)))
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (slash && slash != dir)
		*slash = '\0';
	else if (slash)
		slash[1] = '\0';
	else
		kmm_free_and_null(dir);
	return kmm_kube_config_from_text(data, len, path, dir, context, ret_config, err);
}

int kmm_kube_config_in_cluster(const char *sa_dir, struct kmm_kube_config **ret_config,
			       struct kmm_error **err)
{
	_cleanup_kube_config_ struct kmm_kube_config *c = NULL;
	_cleanup_free_ char *ns_file = NULL, *ns = NULL;
	const char *host = secure_getenv("KUBERNETES_SERVICE_HOST");
	const char *port = secure_getenv("KUBERNETES_SERVICE_PORT");
	struct stat st;
	int r;

	if (!sa_dir)
		sa_dir = SA_DIR_DEFAULT;
	if (!host || !*host || !port || !*port)
		return kmm_error_make(
		    err, ENOENT,
		    "in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set");
	c = calloc(1, sizeof(*c));
	if (!c || !(c->source = strdup("in-cluster")))
		return -ENOMEM;
	/* An IPv6 service address needs brackets in the URL. */
	if (asprintf(&c->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
		     port) < 0) {
		c->server = NULL;
		return -ENOMEM;
	}
	if (asprintf(&c->token_file, "%s/token", sa_dir) < 0 ||
	    asprintf(&c->ca_file, "%s/ca.crt", sa_dir) < 0 ||
	    asprintf(&ns_file, "%s/namespace", sa_dir) < 0)
		return -ENOMEM;
	if (stat(c->token_file, &st) < 0)
		return kmm_error_make_errno(err, errno, "in-cluster: %s", c->token_file);
	if (stat(c->ca_file, &st) < 0)
		return kmm_error_make_errno(err, errno, "in-cluster: %s", c->ca_file);
	r = kmm_read_file(ns_file, 4096, &ns, NULL, NULL);
	if (r >= 0) {
		ns[strcspn(ns, " \t\r\n")] = '\0';
		if (*ns)
			c->namespace = TAKE_PTR(ns);
	}
	if (!c->namespace && !(c->namespace = strdup("default")))
		return -ENOMEM;
	*ret_config = TAKE_PTR(c);
	return 0;
}

int kmm_kube_config_load_default(const char *kubeconfig, const char *context,
				 struct kmm_kube_config **ret_config, struct kmm_error **err)
{
	_cleanup_free_ char *path = NULL;
	const char *env, *home;

	if (kubeconfig && *kubeconfig)
		return kmm_kube_config_load_file(kubeconfig, context, ret_config, err);
	env = secure_getenv("KUBECONFIG");
	if (env && *env) {
		size_t n = strcspn(env, ":");

		path = strndup(env, n);
		if (!path)
			return -ENOMEM;
		return kmm_kube_config_load_file(path, context, ret_config, err);
	}
	if (secure_getenv("KUBERNETES_SERVICE_HOST"))
		return kmm_kube_config_in_cluster(NULL, ret_config, err);
	home = secure_getenv("HOME");
	if (!home)
		return kmm_error_make(err, ENOENT,
				      "no kubeconfig: KUBECONFIG and HOME unset, not in a cluster");
	if (asprintf(&path, "%s/.kube/config", home) < 0)
		return -ENOMEM;
	return kmm_kube_config_load_file(path, context, ret_config, err);
}
