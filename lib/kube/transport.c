/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Transport: a libcurl easy handle per transfer, run by the client's hub
 * (hub.c: one thread, one multi handle, so one HTTP/2 connection for all), a
 * CURLSH (DNS, TLS sessions) guarded by one mutex per lock class,
 * a token-bucket rate limiter, retries with jittered exponential backoff that
 * honour Retry-After, and authentication (static token, token file re-read on
 * change, client certificates, exec plugins). See docs/internals/transport.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/ssl.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-clock.h"
#include "kmm/shared-fileio.h"
#include "kmm/kube.h"
#include "kmm/shared-log.h"
#include "kmm/shared-strv.h"
#include "version.h"
#include "lib/kube/kube-internal.h"
#include "lib/testable.h"

#define EXEC_OUTPUT_MAX ((size_t)1024 * 1024)
#define TOKEN_MAX ((size_t)64 * 1024)

struct kmm_kube_client {
	struct kmm_kube_config *cfg; /* private deep copy */
	struct kmm_kube_client_options opts;
	char *user_agent;

	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

	struct kube_hub *hub;

	pthread_mutex_t rate_lock; /* guards tokens and last_ns */
	double tokens;
	int64_t last_ns;

	pthread_mutex_t auth_lock; /* guards everything below */
	char *file_token;	   /* last content of cfg->token_file */
	struct stat file_token_st;
	char *exec_token; /* credentials from the exec plugin, valid until exec_expiry */
	char *exec_cert;
	char *exec_key;
	time_t exec_expiry; /* 0 = no expiry */
	bool exec_valid;

	atomic_uint_fast64_t n_requests, n_retries, n_connections;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

void kmm_kube_client_options_init(struct kmm_kube_client_options *o)
{
	*o = (struct kmm_kube_client_options){
		.qps = 50,
		.burst = 100,
		.connect_timeout_ms = 10000,
		.request_timeout_ms = 60000,
		.max_retries = 5,
		.retry_base_ms = 100,
		.retry_max_ms = 30000,
		.max_body = KMM_BUF_DEFAULT_MAX,
	};
}

const struct kmm_kube_client_options *kube_client_options(const struct kmm_kube_client *c)
{
	return &c->opts;
}

const char *kmm_kube_client_namespace(const struct kmm_kube_client *c)
{
	return c->cfg->namespace;
}

void kmm_kube_client_stats(struct kmm_kube_client *c, struct kmm_kube_client_stats *ret)
{
	ret->requests = atomic_load(&c->n_requests);
	ret->retries = atomic_load(&c->n_retries);
	ret->connections = atomic_load(&c->n_connections);
}

void kube_stats_add(struct kmm_kube_client *c, long new_connections)
{
	atomic_fetch_add(&c->n_requests, 1);
	if (new_connections > 0)
		atomic_fetch_add(&c->n_connections, (uint64_t)new_connections);
}

/* ---- config copy ---- */

static int dup_opt(char **dst, const char *src)
{
	if (!src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

static int dup_blob(char **dst, const char *src, size_t len)
{
	if (!src)
		return 0;
	*dst = malloc(len + 1);
	if (!*dst)
		return -ENOMEM;
	memcpy(*dst, src, len);
	(*dst)[len] = '\0';
	return 0;
}

static int config_copy(const struct kmm_kube_config *s, struct kmm_kube_config **ret)
{
	_cleanup_kube_config_ struct kmm_kube_config *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->insecure_skip_tls_verify = s->insecure_skip_tls_verify;
	d->ca_data_len = s->ca_data_len;
	d->cert_data_len = s->cert_data_len;
	d->key_data_len = s->key_data_len;
	if (dup_opt(&d->source, s->source) < 0 || dup_opt(&d->server, s->server) < 0 ||
	    dup_opt(&d->tls_server_name, s->tls_server_name) < 0 ||
	    dup_opt(&d->ca_file, s->ca_file) < 0 ||
	    dup_blob(&d->ca_data, s->ca_data, s->ca_data_len) < 0 ||
	    dup_opt(&d->cert_file, s->cert_file) < 0 ||
	    dup_blob(&d->cert_data, s->cert_data, s->cert_data_len) < 0 ||
	    dup_opt(&d->key_file, s->key_file) < 0 ||
	    dup_blob(&d->key_data, s->key_data, s->key_data_len) < 0 ||
	    dup_opt(&d->token, s->token) < 0 || dup_opt(&d->token_file, s->token_file) < 0 ||
	    dup_opt(&d->username, s->username) < 0 || dup_opt(&d->password, s->password) < 0 ||
	    dup_opt(&d->namespace, s->namespace) < 0 || dup_opt(&d->context, s->context) < 0)
		return -ENOMEM;
	if (s->exec) {
		d->exec = calloc(1, sizeof(*d->exec));
		if (!d->exec || dup_opt(&d->exec->command, s->exec->command) < 0 ||
		    dup_opt(&d->exec->api_version, s->exec->api_version) < 0 ||
		    !(d->exec->args = kmm_strv_copy(s->exec->args)) ||
		    !(d->exec->env = kmm_strv_copy(s->exec->env)))
			return -ENOMEM;
		d->exec->provide_cluster_info = s->exec->provide_cluster_info;
	}
	if (!d->server)
		return -EINVAL;
	*ret = TAKE_PTR(d);
	return 0;
}

/* ---- share locks ---- */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
	struct kmm_kube_client *c = ud;

	(void)h;
	(void)access;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&c->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
	struct kmm_kube_client *c = ud;

	(void)h;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&c->share_locks[data]);
}

int kmm_kube_client_new(const struct kmm_kube_config *config,
			const struct kmm_kube_client_options *opts,
			struct kmm_kube_client **ret_client, struct kmm_error **err)
{
	struct kmm_kube_client *c;
	CURLSHcode sc = CURLSHE_OK;
	int r;

	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK)
		return kmm_error_make(err, EIO, "curl_global_init: %s",
				      curl_easy_strerror(global_rc));
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	for (size_t i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&c->share_locks[i], NULL);
	pthread_mutex_init(&c->rate_lock, NULL);
	pthread_mutex_init(&c->auth_lock, NULL);
	if (opts)
		c->opts = *opts;
	else
		kmm_kube_client_options_init(&c->opts);
	if (c->opts.burst < 1)
		c->opts.burst = 1;
	if (c->opts.max_body == 0)
		c->opts.max_body = KMM_BUF_DEFAULT_MAX;
	if (c->opts.retry_base_ms <= 0)
		c->opts.retry_base_ms = 100;
	if (c->opts.retry_max_ms <= 0)
		c->opts.retry_max_ms = 30000;
	c->opts.user_agent = NULL; /* the borrowed pointer is not kept */
	c->tokens = c->opts.burst;
	c->last_ns = kmm_now_mono_ns();
	r = config_copy(config, &c->cfg);
	if (r < 0) {
		kmm_kube_client_free(c);
		return r == -EINVAL ? kmm_error_make(err, EINVAL, "kube config without server")
				    : -ENOMEM;
	}
	if (asprintf(&c->user_agent, "%s",
		     opts && opts->user_agent ? opts->user_agent : "kmm/" KMM_VERSION) < 0) {
		c->user_agent = NULL;
		kmm_kube_client_free(c);
		return -ENOMEM;
	}
	c->share = curl_share_init();
	if (!c->share || kube_hub_new(&c->hub) < 0) {
		kmm_kube_client_free(c);
		return -ENOMEM;
	}
	if ((sc = curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock)) != CURLSHE_OK ||
	    (sc = curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock)) != CURLSHE_OK ||
	    (sc = curl_share_setopt(c->share, CURLSHOPT_USERDATA, c)) != CURLSHE_OK ||
	    (sc = curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS)) != CURLSHE_OK ||
	    (sc = curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION)) !=
		CURLSHE_OK) {
		/* Connections live in the hub's multi handle, not here: curl's
		 * shared connection cache is not safe across threads. TLS
		 * sessions are shared, so a new connection resumes instead of a
		 * full handshake. */
		kmm_kube_client_free(c);
		return kmm_error_make(err, EIO, "curl_share_setopt: %s", curl_share_strerror(sc));
	}
	*ret_client = c;
	return 0;
}

void kmm_kube_client_free(struct kmm_kube_client *c)
{
	if (!c)
		return;
	kube_hub_free(c->hub);
	if (c->share)
		curl_share_cleanup(c->share);
	for (size_t i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&c->share_locks[i]);
	pthread_mutex_destroy(&c->rate_lock);
	pthread_mutex_destroy(&c->auth_lock);
	kmm_kube_config_free(c->cfg);
	free(c->user_agent);
	free(c->file_token);
	free(c->exec_token);
	free(c->exec_cert);
	free(c->exec_key);
	free(c);
}

struct kube_hub *kube_client_hub(const struct kmm_kube_client *c)
{
	return c->hub;
}

/* ---- rate limiting and backoff ---- */

void kube_rate_wait(struct kmm_kube_client *c)
{
	double wait_s = 0;
	int64_t t;

	if (c->opts.qps <= 0)
		return;
	pthread_mutex_lock(&c->rate_lock);
	t = kmm_now_mono_ns();
	c->tokens += (double)(t - c->last_ns) / 1e9 * c->opts.qps;
	if (c->tokens > c->opts.burst)
		c->tokens = c->opts.burst;
	c->last_ns = t;
	/* Reserve a token now, possibly going negative: waiters queue up fairly. */
	c->tokens -= 1;
	if (c->tokens < 0)
		wait_s = -c->tokens / c->opts.qps;
	pthread_mutex_unlock(&c->rate_lock);
	if (wait_s > 0)
		kmm_sleep_ms((long)(wait_s * 1000 + 0.5));
}

/* ---- authentication ---- */

static int token_file_current(struct kmm_kube_client *c, char **ret, struct kmm_error **err)
{
	_cleanup_free_ char *tok = NULL;
	struct stat st;
	int r;

	if (stat(c->cfg->token_file, &st) < 0)
		return kmm_error_make_errno(err, errno, "token file %s", c->cfg->token_file);
	if (!c->file_token || st.st_mtim.tv_sec != c->file_token_st.st_mtim.tv_sec ||
	    st.st_mtim.tv_nsec != c->file_token_st.st_mtim.tv_nsec ||
	    st.st_size != c->file_token_st.st_size || st.st_ino != c->file_token_st.st_ino) {
		r = kmm_read_file(c->cfg->token_file, TOKEN_MAX, &tok, NULL, err);
		if (r < 0)
			return r;
		tok[strcspn(tok, "\r\n")] = '\0';
		free(c->file_token);
		c->file_token = TAKE_PTR(tok);
		c->file_token_st = st;
		kmm_debug("kube: token file (re)read", "file", c->cfg->token_file);
	}
	*ret = strdup(c->file_token);
	return *ret ? 0 : -ENOMEM;
}

static int exec_env_info(struct kmm_kube_client *c, char **ret)
{
	_cleanup_(json_decrefp) json_t *info = NULL;
	json_t *spec;

	info = json_pack("{s:s, s:s, s:{s:b}}", "apiVersion", c->cfg->exec->api_version, "kind",
			 "ExecCredential", "spec", "interactive", 0);
	if (!info)
		return -ENOMEM;
	spec = json_object_get(info, "spec");
	if (c->cfg->exec->provide_cluster_info) {
		json_t *cl =
		    json_pack("{s:s, s:b}", "server", c->cfg->server, "insecure-skip-tls-verify",
			      c->cfg->insecure_skip_tls_verify);

		if (!cl || json_object_set_new(spec, "cluster", cl) < 0)
			return -ENOMEM;
	}
	*ret = json_dumps(info, JSON_COMPACT);
	return *ret ? 0 : -ENOMEM;
}

/* Runs the exec plugin and caches what it returns. Called with auth_lock held. */
static int exec_run(struct kmm_kube_client *c, struct kmm_error **err)
{
	const struct kmm_kube_exec *x = c->cfg->exec;
	_cleanup_strv_free_ char **argv = NULL, **envp = NULL;
	_cleanup_free_ char *info = NULL;
	_cleanup_buf_ struct kmm_buf out = { 0 };
	_cleanup_(json_decrefp) json_t *cred = NULL;
	posix_spawn_file_actions_t fa;
	json_error_t jerr;
	int pfd[2], status, r;
	const char *tok, *cert, *key, *exp, *kind, *av;
	pid_t pid;
	char chunk[4096];
	ssize_t n;

	if (kmm_strv_push(&argv, x->command) < 0 || kmm_strv_extend(&argv, x->args) < 0 ||
	    exec_env_info(c, &info) < 0)
		return -ENOMEM;
	envp = kmm_strv_copy(environ);
	if (!envp || kmm_strv_extend(&envp, x->env) < 0 ||
	    kmm_strv_pushf(&envp, "KUBERNETES_EXEC_INFO=%s", info) < 0)
		return -ENOMEM;
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return kmm_error_make_errno(err, errno, "exec plugin %s: pipe", x->command);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	r = posix_spawnp(&pid, x->command, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	if (r != 0) {
		close(pfd[0]);
		return kmm_error_make_errno(err, r, "exec plugin %s", x->command);
	}
	kmm_buf_init(&out, EXEC_OUTPUT_MAX);
	r = 0;
	while ((n = read(pfd[0], chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		if (r == 0 && kmm_buf_append(&out, chunk, (size_t)n) < 0)
			r = -E2BIG; /* keep draining so the child does not block */
	}
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (r == -E2BIG)
		return kmm_error_make(err, E2BIG, "exec plugin %s: output over %zu bytes",
				      x->command, EXEC_OUTPUT_MAX);
	if (r < 0)
		return kmm_error_make_errno(err, -r, "exec plugin %s: read", x->command);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return kmm_error_make(err, EACCES, "exec plugin %s: exited with status %d",
				      x->command, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	cred = json_loadb(out.data ? out.data : "", out.len, 0, &jerr);
	if (!cred)
		return kmm_error_make(err, EINVAL, "exec plugin %s: output: %s", x->command,
				      jerr.text);
	kind = json_string_value(json_object_get(cred, "kind"));
	av = json_string_value(json_object_get(cred, "apiVersion"));
	if (!kind || strcmp(kind, "ExecCredential") != 0 || !av || strcmp(av, x->api_version) != 0)
		return kmm_error_make(err, EINVAL,
				      "exec plugin %s: output is not an ExecCredential of %s",
				      x->command, x->api_version);
	tok = json_string_value(json_object_get(json_object_get(cred, "status"), "token"));
	cert = json_string_value(
	    json_object_get(json_object_get(cred, "status"), "clientCertificateData"));
	key = json_string_value(json_object_get(json_object_get(cred, "status"), "clientKeyData"));
	exp = json_string_value(
	    json_object_get(json_object_get(cred, "status"), "expirationTimestamp"));
	if (!tok && !(cert && key))
		return kmm_error_make(
		    err, EINVAL,
		    "exec plugin %s: status has neither token nor client certificate and key",
		    x->command);
	free(c->exec_token);
	free(c->exec_cert);
	free(c->exec_key);
	c->exec_token = tok ? strdup(tok) : NULL;
	c->exec_cert = cert && key ? strdup(cert) : NULL;
	c->exec_key = cert && key ? strdup(key) : NULL;
	c->exec_expiry = 0;
	if (exp && kube_parse_rfc3339(exp, &c->exec_expiry) < 0)
		return kmm_error_make(err, EINVAL,
				      "exec plugin %s: status.expirationTimestamp: bad time \"%s\"",
				      x->command, exp);
	if ((tok && !c->exec_token) || (cert && key && (!c->exec_cert || !c->exec_key)))
		return -ENOMEM;
	c->exec_valid = true;
	return 0;
}

void kube_auth_invalidate(struct kmm_kube_client *c)
{
	pthread_mutex_lock(&c->auth_lock);
	c->exec_valid = false;
	pthread_mutex_unlock(&c->auth_lock);
}

struct auth {
	char *token;
	char *cert; /* PEM, from exec */
	char *key;
};

static void auth_clear(struct auth *a)
{
	free(a->token);
	free(a->cert);
	free(a->key);
}

static int auth_current(struct kmm_kube_client *c, struct auth *a, struct kmm_error **err)
{
	int r = 0;

	pthread_mutex_lock(&c->auth_lock);
	if (c->cfg->exec) {
		/* Re-run a little before expiry. */
		if (!c->exec_valid || (c->exec_expiry && time(NULL) + 10 >= c->exec_expiry))
			r = exec_run(c, err);
		if (r == 0 && ((c->exec_token && !(a->token = strdup(c->exec_token))) ||
			       (c->exec_cert && !(a->cert = strdup(c->exec_cert))) ||
			       (c->exec_key && !(a->key = strdup(c->exec_key)))))
			r = -ENOMEM;
	}
	if (r == 0 && !a->token && c->cfg->token_file)
		r = token_file_current(c, &a->token, err);
	if (r == 0 && !a->token && c->cfg->token && !(a->token = strdup(c->cfg->token)))
		r = -ENOMEM;
	pthread_mutex_unlock(&c->auth_lock);
	return r;
}

/* ---- one request ---- */

static int blob_opt(CURL *e, CURLoption opt, const char *data, size_t len, const char *name,
		    struct kmm_error **err)
{
	struct curl_blob b = { .data = (void *)data, .len = len, .flags = CURL_BLOB_COPY };
	CURLcode cc = curl_easy_setopt(e, opt, &b);

	if (cc != CURLE_OK)
		return kmm_error_make(err, EIO, "curl_easy_setopt(%s): %s", name,
				      curl_easy_strerror(cc));
	return 0;
}

/* Appends "name: value" (or "name:" to suppress a header when v is NULL). */
static int add_header(struct curl_slist **h, const char *name, const char *v)
{
	_cleanup_free_ char *s = NULL;
	struct curl_slist *n;

	if (asprintf(&s, "%s:%s%s", name, v ? " " : "", v ? v : "") < 0)
		return -ENOMEM;
	n = curl_slist_append(*h, s);
	if (!n)
		return -ENOMEM;
	*h = n;
	return 0;
}

static int add_bearer(struct curl_slist **h, const char *token)
{
	_cleanup_free_ char *v = NULL;

	if (asprintf(&v, "Bearer %s", token) < 0)
		return -ENOMEM;
	return add_header(h, "Authorization", v);
}

/* OpenSSL keeps a connection's record buffers while it idles unless told otherwise. */
static CURLcode tls_release_buffers(CURL *e, void *ssl_ctx, void *userdata)
{
	SSL_CTX_set_mode((SSL_CTX *)ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
	return CURLE_OK;
}

int kube_easy_setup(struct kmm_kube_client *c, CURL *e, const char *method, const char *path,
		    const char *content_type, const char *body, size_t body_len,
		    long request_timeout_ms, struct curl_slist **ret_headers,
		    struct kmm_error **err)
{
	const struct kmm_kube_config *cfg = c->cfg;
	struct curl_slist *h = NULL;
	_cleanup_free_ char *url = NULL;
	struct auth a = { 0 };
	int r;

	curl_easy_reset(e);
	if (asprintf(&url, "%s%s", cfg->server, path) < 0)
		return -ENOMEM;
	r = auth_current(c, &a, err);
	if (r < 0)
		goto out;
	r = -ENOMEM;
	if (add_header(&h, "Accept", "application/json") < 0 ||
	    (body && add_header(&h, "Content-Type",
				content_type ? content_type : "application/json") < 0) ||
	    (a.token && add_bearer(&h, a.token) < 0) || add_header(&h, "Expect", NULL) < 0)
		goto out;
	r = 0;
#define SET(opt, val)                                                                              \
	do {                                                                                       \
		CURLcode _cc_ = curl_easy_setopt(e, (opt), (val));                                 \
		if (_cc_ != CURLE_OK) {                                                            \
			r = kmm_error_make(err, EIO, "curl_easy_setopt(%s): %s", #opt,             \
					   curl_easy_strerror(_cc_));                              \
			goto out;                                                                  \
		}                                                                                  \
	} while (0)
	SET(CURLOPT_URL, url);
	SET(CURLOPT_SHARE, c->share);
	/*
	 * Each transfer would otherwise hold a 64 KiB upload buffer, and the
	 * connection two idle TLS record buffers.
	 */
	SET(CURLOPT_UPLOAD_BUFFERSIZE, 16 * 1024L);
	/* Fails only with a TLS backend other than OpenSSL: nothing to tune then. */
	(void)curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, tls_release_buffers);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_HTTPHEADER, h);
	SET(CURLOPT_USERAGENT, c->user_agent);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_CONNECTTIMEOUT_MS,
	    c->opts.connect_timeout_ms > 0 ? c->opts.connect_timeout_ms : 10000L);
	SET(CURLOPT_TIMEOUT_MS, request_timeout_ms > 0 ? request_timeout_ms : 0L);
	SET(CURLOPT_HTTP_VERSION,
	    c->opts.http1_only ? (long)CURL_HTTP_VERSION_1_1 : (long)CURL_HTTP_VERSION_2TLS);
	SET(CURLOPT_ACCEPT_ENCODING, ""); /* whatever curl supports; the cap is on decoded bytes */
	if (strcmp(method, "GET") == 0)
		SET(CURLOPT_HTTPGET, 1L);
	else if (strcmp(method, "POST") != 0)
		SET(CURLOPT_CUSTOMREQUEST, method);
	if (body) {
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
		SET(CURLOPT_POSTFIELDS, body);
	} else if (strcmp(method, "POST") == 0) {
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
		SET(CURLOPT_POSTFIELDS, "");
	}
	if (cfg->insecure_skip_tls_verify) {
		SET(CURLOPT_SSL_VERIFYPEER, 0L);
		SET(CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (cfg->ca_file)
		SET(CURLOPT_CAINFO, cfg->ca_file);
	if (cfg->ca_data && (r = blob_opt(e, CURLOPT_CAINFO_BLOB, cfg->ca_data, cfg->ca_data_len,
					  "CAINFO_BLOB", err)) < 0)
		goto out;
	if (a.cert && a.key) {
		if ((r = blob_opt(e, CURLOPT_SSLCERT_BLOB, a.cert, strlen(a.cert), "SSLCERT_BLOB",
				  err)) < 0 ||
		    (r = blob_opt(e, CURLOPT_SSLKEY_BLOB, a.key, strlen(a.key), "SSLKEY_BLOB",
				  err)) < 0)
			goto out;
	} else {
		if (cfg->cert_file)
			SET(CURLOPT_SSLCERT, cfg->cert_file);
		if (cfg->cert_data && (r = blob_opt(e, CURLOPT_SSLCERT_BLOB, cfg->cert_data,
						    cfg->cert_data_len, "SSLCERT_BLOB", err)) < 0)
			goto out;
		if (cfg->key_file)
			SET(CURLOPT_SSLKEY, cfg->key_file);
		if (cfg->key_data && (r = blob_opt(e, CURLOPT_SSLKEY_BLOB, cfg->key_data,
						   cfg->key_data_len, "SSLKEY_BLOB", err)) < 0)
			goto out;
	}
	if (cfg->username && !a.token) {
		SET(CURLOPT_USERNAME, cfg->username);
		SET(CURLOPT_PASSWORD, cfg->password ? cfg->password : "");
	}
#undef SET
	*ret_headers = TAKE_PTR(h);
out:
	curl_slist_free_all(h);
	auth_clear(&a);
	return r;
}

struct xfer {
	struct kmm_buf body;
	int64_t retry_after_ms;
	bool too_big;
};

static void xfer_free(struct xfer *x)
{
	kmm_buf_free(&x->body);
}

static size_t write_cb(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;

	if (kmm_buf_append(&x->body, p, size * n) < 0) {
		x->too_big = true;
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	return size * n;
}

int kube_parse_retry_after(const char *v, size_t len, time_t now, int64_t *ret_ms)
{
	char tmp[64];
	int64_t secs = 0;
	size_t i;

	while (len > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		len--;
	}
	while (len > 0 && strchr(" \t\r\n", v[len - 1]))
		len--;
	if (len == 0 || len >= sizeof(tmp))
		return -EINVAL;
	for (i = 0; i < len && v[i] >= '0' && v[i] <= '9' && secs <= 86400; i++)
		secs = secs * 10 + (v[i] - '0');
	if (i == len) {
		/* delay-seconds */
	} else if (i == 0 && ((v[0] >= 'A' && v[0] <= 'Z') || (v[0] >= 'a' && v[0] <= 'z'))) {
		time_t t;

		/* An HTTP-date ("Sun, 06 Nov 1994 08:49:37 GMT"); curl parses it. */
		memcpy(tmp, v, len);
		tmp[len] = '\0';
		t = curl_getdate(tmp, NULL);
		if (t == (time_t)-1)
			return -EINVAL;
		secs = t > now ? (int64_t)(t - now) : 0;
	} else {
		return -EINVAL;
	}
	if (secs > 86400)
		return -EINVAL;
	*ret_ms = secs * 1000;
	return 0;
}

static size_t header_cb(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t len = size * n;
	int64_t ms;

	/* A new response (after a 1xx, or a retry on this handle) starts over. */
	if (len >= 5 && strncmp(p, "HTTP/", 5) == 0)
		x->retry_after_ms = -1;
	else if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0 &&
		 kube_parse_retry_after(p + 12, len - 12, time(NULL), &ms) == 0)
		x->retry_after_ms = ms;
	return len;
}

/*
 * A new easy handle set up for req, its body and headers going to x. On
 * failure nothing is left to free; on success *ret_headers must be freed
 * after the transfer.
 */
static int xfer_easy_new(struct kmm_kube_client *c, const struct kmm_kube_request *req,
			 long timeout_ms, struct xfer *x, CURL **ret_easy,
			 struct curl_slist **ret_headers, struct kmm_error **err)
{
	struct curl_slist *h = NULL;
	CURL *e = curl_easy_init();
	int r;

	if (!e)
		return kmm_error_make(err, ENOMEM, "%s %s: curl_easy_init failed", req->method,
				      req->path);
	r = kube_easy_setup(c, e, req->method, req->path, req->content_type, req->body,
			    req->body_len, timeout_ms, &h, err);
	if (r < 0) {
		curl_easy_cleanup(e);
		return kmm_error_wrap(err, "%s %s", req->method, req->path);
	}
	if (curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_WRITEDATA, x) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_HEADERDATA, x) != CURLE_OK) {
		curl_slist_free_all(h);
		curl_easy_cleanup(e);
		return kmm_error_make(err, EIO, "%s %s: curl_easy_setopt: callbacks", req->method,
				      req->path);
	}
	*ret_easy = e;
	*ret_headers = h;
	return 0;
}

void kmm_kube_response_clear(struct kmm_kube_response *r)
{
	if (!r)
		return;
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
}

static bool method_idempotent(const char *m)
{
	return strcmp(m, "GET") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "DELETE") == 0 ||
	       strcmp(m, "HEAD") == 0;
}

static bool status_retryable(long status)
{
	return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

/* Did the failure happen before the request could have reached the server? */
static bool cc_before_send(CURLcode cc)
{
	return cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
	       cc == CURLE_SSL_CONNECT_ERROR;
}

static bool cc_transient(CURLcode cc)
{
	return cc_before_send(cc) || cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR ||
	       cc == CURLE_GOT_NOTHING || cc == CURLE_OPERATION_TIMEDOUT ||
	       cc == CURLE_PARTIAL_FILE || cc == CURLE_HTTP2 || cc == CURLE_HTTP2_STREAM;
}

bool kube_retry_allowed(const char *method, bool named_create, CURLcode cc, long status,
			bool has_retry_after)
{
	bool post = strcmp(method, "POST") == 0;

	if (cc != CURLE_OK)
		return cc_before_send(cc) ||
		       (cc_transient(cc) && (method_idempotent(method) || (post && named_create)));
	if (!status_retryable(status))
		return false;
	/* 429 means the server did not act; a 5xx POST may have created something. */
	return status == 429 || !post || named_create || has_retry_after;
}

bool kube_maybe_applied(const char *method, CURLcode cc, long status)
{
	if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
		return false;
	if (cc != CURLE_OK)
		return !cc_before_send(cc);
	return status >= 500;
}

long kube_retry_delay_ms(const struct kmm_kube_client_options *o, int attempt,
			 int64_t retry_after_ms)
{
	if (retry_after_ms >= 0)
		return retry_after_ms > o->retry_max_ms ? o->retry_max_ms : (long)retry_after_ms;
	return kmm_backoff_ms(o->retry_base_ms, o->retry_max_ms, attempt);
}

/*
 * The server's delay for a failed attempt: the Retry-After header, else
 * details.retryAfterSeconds of a Status body (the apiserver sends both for
 * 429, some 5xx only the latter); -1 when it gave none.
 */
static int64_t server_retry_after_ms(const struct xfer *x, long status)
{
	_cleanup_(kmm_kube_status_freep) struct kmm_kube_status *st = NULL;

	if (x->retry_after_ms >= 0 || !status_retryable(status) || x->body.len == 0)
		return x->retry_after_ms;
	if (kmm_kube_status_parse(x->body.data, x->body.len, &st) < 0 ||
	    st->retry_after_seconds < 0 || st->retry_after_seconds > 86400)
		return -1;
	return st->retry_after_seconds * 1000;
}

int kmm_kube_request(struct kmm_kube_client *c, const struct kmm_kube_request *req,
		     struct kmm_kube_response *ret_resp, struct kmm_error **err)
{
	int max = req->no_retry || c->opts.max_retries < 0 ? 0 : c->opts.max_retries;
	bool reauthed = false, maybe_applied = false;

	for (int attempt = 0;; attempt++) {
		_cleanup_(xfer_free) struct xfer x = { .retry_after_ms = -1 };
		struct curl_slist *h = NULL;
		CURL *e = NULL;
		CURLcode cc;
		long status = 0, conns = 0;
		long delay = -1, timeout;
		int64_t after;
		int r;

		kmm_buf_init(&x.body, c->opts.max_body);
		kube_rate_wait(c);
		timeout = req->timeout_ms > 0 ? req->timeout_ms : c->opts.request_timeout_ms;
		r = xfer_easy_new(c, req, timeout, &x, &e, &h, err);
		if (r < 0)
			return r;
		r = kube_hub_perform(c->hub, e, &cc);
		if (r < 0) {
			curl_slist_free_all(h);
			curl_easy_cleanup(e);
			return kmm_error_make(err, -r, "%s %s: transfer not started", req->method,
					      req->path);
		}
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &conns);
		kube_stats_add(c, conns);
		curl_slist_free_all(h);
		curl_easy_cleanup(e);
		kmm_debug("kube: request", "method", req->method, "path", req->path);
		if (x.too_big)
			return kmm_error_make(err, E2BIG, "%s %s: response body over %zu bytes",
					      req->method, req->path, c->opts.max_body);
		after = cc == CURLE_OK ? server_retry_after_ms(&x, status) : -1;
		if (cc != CURLE_OK) {
			if (attempt >= max ||
			    !kube_retry_allowed(req->method, req->named_create, cc, 0, false))
				return kmm_error_make(
				    err, cc == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT : ECONNREFUSED,
				    "%s %s%s: %s", req->method, c->cfg->server, req->path,
				    curl_easy_strerror(cc));
			delay = kube_retry_delay_ms(&c->opts, attempt, -1);
		} else if (status == 401 && c->cfg->exec && !reauthed) {
			/* The plugin's credential may have been revoked: run it again once. */
			kube_auth_invalidate(c);
			reauthed = true;
			delay = 0;
		} else if (attempt < max && kube_retry_allowed(req->method, req->named_create, cc,
							       status, after >= 0)) {
			delay = kube_retry_delay_ms(&c->opts, attempt, after);
		} else {
			ret_resp->status = status;
			ret_resp->body_len = x.body.len;
			ret_resp->retry_after_ms = after;
			ret_resp->maybe_applied = maybe_applied;
			ret_resp->body = kmm_buf_steal(&x.body);
			return ret_resp->body ? 0 : -ENOMEM;
		}
		maybe_applied = maybe_applied || kube_maybe_applied(req->method, cc, status);
		atomic_fetch_add(&c->n_retries, 1);
		if (delay > 0)
			kmm_sleep_ms(delay);
	}
}

/* A response as the JSON verbs see it: >= 400 (or not 2xx) is an error, else the parsed body. */
static int response_json(const struct kmm_kube_request *req, const struct kmm_kube_response *resp,
			 json_t **ret_obj, struct kmm_error **err)
{
	json_error_t jerr;
	json_t *obj;

	if (resp->status < 200 || resp->status >= 300) {
		_cleanup_free_ char *what = NULL;

		if (asprintf(&what, "%s %s%s", req->method, req->path,
			     resp->maybe_applied && (resp->status == 409 || resp->status == 404)
				 ? " (retried: an earlier attempt may have been applied)"
				 : "") < 0)
			what = NULL;
		return kmm_kube_error_from_response(resp, what ? what : req->path, err);
	}
	if (!ret_obj)
		return 0;
	obj = json_loadb(resp->body, resp->body_len, 0, &jerr);
	if (!obj)
		return kmm_error_make(err, EBADMSG, "%s %s: response is not JSON: %s", req->method,
				      req->path, jerr.text);
	*ret_obj = obj;
	return 0;
}

int kmm_kube_request_json(struct kmm_kube_client *c, const struct kmm_kube_request *req,
			  json_t **ret_obj, struct kmm_error **err)
{
	struct kmm_kube_response resp = { 0 };
	int r;

	r = kmm_kube_request(c, req, &resp, err);
	if (r < 0)
		return r;
	r = response_json(req, &resp, ret_obj, err);
	kmm_kube_response_clear(&resp);
	return r;
}

/* ---- pipelined batch ---- */

/*
 * The batch's transfers run on the hub like single requests, at most
 * max_in_flight at a time; the slots share one mutex and condition variable,
 * so a completion wakes the batch to refill that slot. An item to be retried
 * gives its slot back and waits for its due time in `tries`; a free slot
 * takes a due retry before a new item.
 */
struct batch_slot {
	struct kube_op op; /* op.easy is NULL while the slot is free */
	struct curl_slist *h;
	struct xfer x;
	size_t item;
};

struct batch_try {
	int attempt; /* attempts made so far */
	bool waiting;
	bool maybe_applied;
	int64_t due_ns;
};

struct batch {
	struct kmm_kube_client *c;
	struct kmm_kube_batch_item *items;
	size_t n, next; /* items[next..n) never started */
	struct batch_try *tries;
	size_t waiting; /* items waiting to be retried */
};

void kmm_kube_batch_clear(struct kmm_kube_batch_item *items, size_t n)
{
	for (size_t i = 0; items && i < n; i++) {
		kmm_kube_response_clear(&items[i].resp);
		kmm_error_clear(&items[i].err);
	}
}

int kmm_kube_batch_item_json(const struct kmm_kube_batch_item *it, json_t **ret_obj,
			     struct kmm_error **err)
{
	if (it->rc < 0) {
		int r = kmm_error_make(err, it->err ? it->err->code : -it->rc, "%s",
				       it->err ? kmm_error_message(it->err) : "batch: not sent");

		if (err && *err && it->err) {
			(*err)->http_status = it->err->http_status;
			(*err)->retry_after_ms = it->err->retry_after_ms;
			if (it->err->reason)
				(*err)->reason = strdup(it->err->reason);
		}
		return r;
	}
	return response_json(&it->req, &it->resp, ret_obj, err);
}

static int batch_start(struct kmm_kube_client *c, struct batch_slot *s,
		       struct kmm_kube_batch_item *it, size_t idx)
{
	long timeout = it->req.timeout_ms > 0 ? it->req.timeout_ms : c->opts.request_timeout_ms;
	int r;

	kube_rate_wait(c);
	s->item = idx;
	s->x = (struct xfer){ .retry_after_ms = -1 };
	kmm_buf_init(&s->x.body, c->opts.max_body);
	kmm_error_clear(&it->err); /* a retry's setup error replaces nothing stale */
	r = xfer_easy_new(c, &it->req, timeout, &s->x, &s->op.easy, &s->h, &it->err);
	if (r < 0) {
		kmm_buf_free(&s->x.body);
		return r;
	}
	r = kube_hub_submit(c->hub, &s->op);
	if (r < 0) {
		kmm_error_make(&it->err, -r, "%s %s: transfer not started", it->req.method,
			       it->req.path);
		curl_slist_free_all(s->h);
		s->h = NULL;
		curl_easy_cleanup(s->op.easy);
		s->op.easy = NULL;
		kmm_buf_free(&s->x.body);
	}
	return r;
}

/*
 * Called with the slot's transfer done; frees the slot. Either records the
 * item's outcome or, when the attempt may be retried, marks it waiting.
 */
static void batch_finish(struct batch *b, struct batch_slot *s)
{
	struct kmm_kube_client *c = b->c;
	struct kmm_kube_batch_item *it = &b->items[s->item];
	struct batch_try *t = &b->tries[s->item];
	int max = it->req.no_retry || c->opts.max_retries < 0 ? 0 : c->opts.max_retries;
	CURLcode cc = s->op.result;
	long status = 0, conns = 0;
	int64_t after = -1;

	curl_easy_getinfo(s->op.easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(s->op.easy, CURLINFO_NUM_CONNECTS, &conns);
	kube_stats_add(c, conns);
	kmm_debug("kube: batch request", "method", it->req.method, "path", it->req.path);
	curl_slist_free_all(s->h);
	s->h = NULL;
	curl_easy_cleanup(s->op.easy);
	s->op.easy = NULL;
	it->attempts = ++t->attempt;
	if (!s->x.too_big) {
		if (cc == CURLE_OK)
			after = server_retry_after_ms(&s->x, status);
		if (t->attempt <= max &&
		    kube_retry_allowed(it->req.method, it->req.named_create, cc,
				       cc == CURLE_OK ? status : 0, after >= 0)) {
			t->maybe_applied =
			    t->maybe_applied || kube_maybe_applied(it->req.method, cc, status);
			t->due_ns =
			    kmm_now_mono_ns() +
			    (int64_t)kube_retry_delay_ms(&c->opts, t->attempt - 1, after) * 1000000;
			t->waiting = true;
			b->waiting++;
			atomic_fetch_add(&c->n_retries, 1);
			kmm_buf_free(&s->x.body);
			return;
		}
	}
	if (s->x.too_big) {
		it->rc = kmm_error_make(&it->err, E2BIG, "%s %s: response body over %zu bytes",
					it->req.method, it->req.path, c->opts.max_body);
	} else if (cc != CURLE_OK) {
		it->rc = kmm_error_make(
		    &it->err, cc == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT : ECONNREFUSED,
		    "%s %s: %s", it->req.method, it->req.path, curl_easy_strerror(cc));
	} else {
		it->resp.status = status;
		it->resp.retry_after_ms = after;
		it->resp.maybe_applied = t->maybe_applied;
		it->resp.body_len = s->x.body.len;
		it->resp.body = kmm_buf_steal(&s->x.body);
		it->rc = it->resp.body ? 0 : -ENOMEM;
	}
	kmm_buf_free(&s->x.body);
}

/* The waiting item due first, or SIZE_MAX; *ret_due_ns gets its due time. */
static size_t batch_next_retry(const struct batch *b, int64_t *ret_due_ns)
{
	size_t best = SIZE_MAX;

	for (size_t i = 0; b->waiting > 0 && i < b->n; i++)
		if (b->tries[i].waiting &&
		    (best == SIZE_MAX || b->tries[i].due_ns < b->tries[best].due_ns))
			best = i;
	if (best != SIZE_MAX)
		*ret_due_ns = b->tries[best].due_ns;
	return best;
}

/*
 * Starts a due retry, else a new item, on the free slot s, until one starts
 * or none is ready. An item that cannot even start gets that error as its
 * outcome.
 */
static bool batch_refill(struct batch *b, struct batch_slot *s)
{
	for (;;) {
		int64_t due = 0;
		size_t idx = batch_next_retry(b, &due);

		if (idx != SIZE_MAX && due <= kmm_now_mono_ns()) {
			b->tries[idx].waiting = false;
			b->waiting--;
		} else if (b->next < b->n) {
			idx = b->next++;
		} else {
			return false;
		}
		if (batch_start(b->c, s, &b->items[idx], idx) == 0)
			return true;
		b->items[idx].rc = -kmm_error_code(b->items[idx].err);
	}
}

static void batch_refill_all(struct batch *b, struct batch_slot *slots, size_t n_slots,
			     size_t *active)
{
	for (size_t i = 0; i < n_slots; i++)
		if (!slots[i].op.easy && batch_refill(b, &slots[i]))
			(*active)++;
}

int kmm_kube_batch(struct kmm_kube_client *c, struct kmm_kube_batch_item *items, size_t n,
		   size_t max_in_flight, struct kmm_error **err)
{
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cond;
	_cleanup_free_ struct batch_slot *slots = NULL;
	_cleanup_free_ struct batch_try *tries = NULL;
	struct batch b = { .c = c, .items = items, .n = n };
	size_t active = 0;

	(void)err; /* per-item errors only: a batch as such cannot fail */
	if (max_in_flight == 0)
		max_in_flight = 1;
	if (max_in_flight > n)
		max_in_flight = n;
	for (size_t i = 0; i < n; i++) {
		items[i].rc = 0;
		items[i].err = NULL;
		items[i].attempts = 0;
		items[i].resp = (struct kmm_kube_response){ .retry_after_ms = -1 };
	}
	if (n == 0)
		return 0;
	slots = calloc(max_in_flight, sizeof(*slots));
	tries = calloc(n, sizeof(*tries));
	if (!slots || !tries)
		return -ENOMEM;
	b.tries = tries;
	/* Retry delays are measured on the monotonic clock. */
	if (kmm_cond_init_monotonic(&cond) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < max_in_flight; i++) {
		slots[i].op.lock = &lock;
		slots[i].op.cond = &cond;
	}
	batch_refill_all(&b, slots, max_in_flight, &active);
	pthread_mutex_lock(&lock);
	while (active > 0 || b.waiting > 0) {
		struct batch_slot *s = NULL;

		for (size_t i = 0; i < max_in_flight && !s; i++)
			if (slots[i].op.easy && slots[i].op.done)
				s = &slots[i];
		if (!s) {
			int64_t due = 0;
			bool slot_free = false;

			for (size_t i = 0; i < max_in_flight; i++)
				slot_free = slot_free || !slots[i].op.easy;
			/* Without a free slot, or a retry to put in one, only a completion helps. */
			if (!slot_free || batch_next_retry(&b, &due) == SIZE_MAX) {
				pthread_cond_wait(&cond, &lock);
				continue;
			} else if (due > kmm_now_mono_ns()) {
				struct timespec ts = kmm_timespec_from_ns(due);

				pthread_cond_timedwait(&cond, &lock, &ts);
			}
			/* A retry may be due: the slots are refilled outside the lock. */
			pthread_mutex_unlock(&lock);
			batch_refill_all(&b, slots, max_in_flight, &active);
			pthread_mutex_lock(&lock);
			continue;
		}
		/* The hub is done with s; starting the next transfer may block (rate limit). */
		pthread_mutex_unlock(&lock);
		batch_finish(&b, s);
		active--;
		batch_refill_all(&b, slots, max_in_flight, &active);
		pthread_mutex_lock(&lock);
	}
	pthread_mutex_unlock(&lock);
	pthread_cond_destroy(&cond);
	pthread_mutex_destroy(&lock);
	return 0;
}
