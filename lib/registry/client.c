/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The distribution (OCI) HTTP API over libcurl: one easy handle per client,
 * reused so connections stay alive; auth negotiated on the first 401 and then
 * sent up front (Basic, or a Bearer token fetched from the challenge's realm).
 */
#include <pthread.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-clock.h"
#include "kmm/shared-fileio.h"
#include "kmm/shared-hashmap.h"
#include "kmm/shared-log.h"
#include "lib/registry/registry-client.h"
#include "lib/registry/registry-internal.h"
#include "version.h"

#define ERROR_BODY_MAX (64 * 1024)
#define POLICY_MARK "refused by destination policy: "
#define TOKEN_BODY_MAX (1024 * 1024)
#define DOCKER_CONFIG_MAX (1024 * 1024)

static const char manifest_accept[] = "Accept: " KMM_MT_OCI_INDEX ", " KMM_MT_OCI_MANIFEST
				      ", " KMM_MT_DOCKER_LIST ", " KMM_MT_DOCKER_MANIFEST;

struct kmm_registry {
	CURL *curl;
	bool insecure;
	bool skip_verify;
	char *ca_file;
	char *ca_pem;
	char *username;
	char *password;
	char *docker_config;	  /* text given in the options */
	char *docker_config_file; /* content of the file given in the options */
	long connect_timeout_ms;
	long request_timeout_ms;
	long stall_timeout_s;
	char *os;
	char *architecture;
	char *variant;
	struct kmm_hashmap *auth;		  /* "host/repository" -> "Authorization: ..." */
	const struct kmm_registry_policy *policy; /* borrowed; never NULL */
	char policy_why[128];	 /* the last address the policy refused, this request */
	const atomic_bool *stop; /* set: abort transfers (kmm_image_checks stopping) */
	int64_t deadline_ms;	 /* > 0: CLOCK_MONOTONIC ms after which requests fail */
	char errbuf[CURL_ERROR_SIZE];
};

void kmm_registry_set_limits(struct kmm_registry *r, const atomic_bool *stop, int64_t deadline_ms)
{
	r->stop = stop;
	r->deadline_ms = deadline_ms;
}

/*
 * An error with a machine-readable reason of ours, so
 * kmm_registry_error_summary() can describe it without quoting the message.
 */
_printf_(4, 5) static int make_reasoned(struct kmm_error **err, int code, const char *reason,
					const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	r = kmm_error_make(err, code, "%s", msg);
	if (err && *err && (*err)->code == code && !(*err)->reason)
		(*err)->reason = strdup(reason); /* best effort: the message says it all */
	return r;
}

static void slist_freep(struct curl_slist **l)
{
	curl_slist_free_all(*l);
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *strdup_or_null(const char *s, bool *oom)
{
	char *c;

	if (!s)
		return NULL;
	c = strdup(s);
	if (!c)
		*oom = true;
	return c;
}

void kmm_registry_free(struct kmm_registry *r)
{
	if (!r)
		return;
	if (r->curl)
		curl_easy_cleanup(r->curl);
	free(r->ca_file);
	free(r->ca_pem);
	free(r->username);
	if (r->password) {
		explicit_bzero(r->password, strlen(r->password));
		free(r->password);
	}
	free(r->docker_config);
	free(r->docker_config_file);
	free(r->os);
	free(r->architecture);
	free(r->variant);
	kmm_hashmap_free(r->auth);
	free(r);
}

int kmm_registry_new(const struct kmm_registry_options *opts, struct kmm_registry **ret,
		     struct kmm_error **err)
{
	static const struct kmm_registry_options none = { 0 };
	_cleanup_(kmm_registry_freep) struct kmm_registry *r = NULL;
	bool oom = false;
	int rc;

	if (!opts)
		opts = &none;
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_result != CURLE_OK)
		return kmm_error_make(err, EIO, "curl_global_init: %s",
				      curl_easy_strerror(curl_init_result));
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->insecure = opts->insecure;
	r->skip_verify = opts->insecure_skip_tls_verify;
	r->ca_file = strdup_or_null(opts->ca_file, &oom);
	r->ca_pem = strdup_or_null(opts->ca_pem, &oom);
	r->username = strdup_or_null(opts->username, &oom);
	r->password = strdup_or_null(opts->password, &oom);
	r->docker_config = strdup_or_null(opts->docker_config, &oom);
	r->os = strdup_or_null(opts->os ? opts->os : "linux", &oom);
	r->architecture =
	    strdup_or_null(opts->architecture ? opts->architecture : kmm_oci_default_arch(), &oom);
	r->variant = strdup_or_null(opts->variant, &oom);
	r->policy = opts->policy ? opts->policy : kmm_registry_policy_default();
	r->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 10000;
	r->request_timeout_ms = opts->request_timeout_ms > 0 ? opts->request_timeout_ms : 30000;
	r->stall_timeout_s = opts->stall_timeout_s > 0 ? opts->stall_timeout_s : 60;
	r->auth = kmm_hashmap_new(free);
	r->curl = curl_easy_init();
	if (oom || !r->auth)
		return -ENOMEM;
	if (!r->curl)
		return kmm_error_make(err, ENOMEM, "curl_easy_init failed");
	if (opts->username && !opts->password)
		return kmm_error_make(err, EINVAL, "registry username given without a password");
	if (opts->docker_config_file) {
		rc = kmm_read_file(opts->docker_config_file, DOCKER_CONFIG_MAX,
				   &r->docker_config_file, NULL, err);
		if (rc < 0)
			return kmm_error_wrap(err, "registry pull secret");
	}
	/* Parse both documents now so a broken pull secret is reported up front. */
	for (int i = 0; i < 2; i++) {
		const char *doc = i ? r->docker_config_file : r->docker_config;
		_cleanup_free_ char *u = NULL, *p = NULL;

		if (!doc)
			continue;
		rc = kmm_docker_config_lookup(doc, strlen(doc), "", &u, &p, err);
		if (rc < 0 && err && *err && (*err)->code == EINVAL && !(*err)->reason)
			(*err)->reason = strdup("BadPullSecret");
		if (rc < 0)
			return kmm_error_wrap(err, "registry pull secret %s",
					      i ? opts->docker_config_file : "(inline)");
	}
	*ret = TAKE_PTR(r);
	return 0;
}

const char *kmm_registry_platform(const struct kmm_registry *r, const char **ret_arch,
				  const char **ret_variant)
{
	*ret_arch = r->architecture;
	*ret_variant = r->variant;
	return r->os;
}

/* ---- one HTTP exchange ---- */

void kmm_response_done(struct kmm_response *resp)
{
	free(resp->content_type);
	free(resp->digest);
	free(resp->www_authenticate);
	kmm_buf_free(&resp->body);
	kmm_digester_free(resp->dg);
	resp->content_type = resp->digest = resp->www_authenticate = NULL;
	resp->dg = NULL;
}

static char *header_value(const char *line, size_t n, const char *name)
{
	size_t k = strlen(name);
	const char *v, *end = line + n;

	if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
		return NULL;
	v = line + k + 1;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	return strndup(v, (size_t)(end - v));
}

static void set_header(char **slot, char *v)
{
	if (!v)
		return;
	free(*slot);
	*slot = v;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct kmm_response *resp = userdata;
	size_t n = size * nmemb;

	if (n > 5 && strncmp(data, "HTTP/", 5) == 0) {
		/* A new response (after a redirect or 100-continue) starts over. */
		free(resp->content_type);
		free(resp->digest);
		free(resp->www_authenticate);
		resp->content_type = resp->digest = resp->www_authenticate = NULL;
		return n;
	}
	set_header(&resp->content_type, header_value(data, n, "Content-Type"));
	set_header(&resp->digest, header_value(data, n, "Docker-Content-Digest"));
	set_header(&resp->www_authenticate, header_value(data, n, "WWW-Authenticate"));
	return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct kmm_response *resp = userdata;
	size_t n = size * nmemb;
	long status = 0;

	curl_easy_getinfo(resp->curl, CURLINFO_RESPONSE_CODE, &status);
	if (resp->fd >= 0 && status >= 200 && status < 300) {
		const char *p = data;
		size_t left = n;

		resp->written += n;
		if (resp->written > resp->max) {
			resp->overflow = true;
			return 0;
		}
		kmm_digester_update(resp->dg, data, n);
		while (left > 0) {
			ssize_t w = write(resp->fd, p, left);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				resp->write_errno = w < 0 ? errno : EIO;
				return 0;
			}
			p += w;
			left -= (size_t)w;
		}
		return n;
	}
	if (kmm_buf_append(&resp->body, data, n) < 0) {
		if (status >= 300)
			return n; /* error bodies are only for the message: keep the head */
		resp->overflow = true;
		return 0;
	}
	return n;
}

static int curl_fail(struct kmm_registry *r, CURLcode c, const struct kmm_response *resp,
		     const char *what, struct kmm_error **err)
{
	const char *detail = r->errbuf[0] ? r->errbuf : curl_easy_strerror(c);

	/* A refused address makes curl's connect fail: say why instead. */
	if (r->policy_why[0] && (c == CURLE_COULDNT_CONNECT || c == CURLE_COULDNT_RESOLVE_HOST ||
				 c == CURLE_COULDNT_RESOLVE_PROXY || c == CURLE_RECV_ERROR))
		return make_reasoned(err, EPERM, "DestinationRefused",
				     "%s: " POLICY_MARK
				     "%s (allow it with registryAllowedNetworks)",
				     what, r->policy_why);
	if (c == CURLE_ABORTED_BY_CALLBACK && r->stop && atomic_load(r->stop))
		return make_reasoned(err, ECANCELED, "Canceled", "%s: canceled", what);
	if (c == CURLE_OPERATION_TIMEDOUT ||
	    (c == CURLE_ABORTED_BY_CALLBACK && r->deadline_ms > 0 &&
	     kmm_now_mono_ms() >= r->deadline_ms))
		return make_reasoned(err, ETIMEDOUT, "Timeout", "%s: timed out: %s", what, detail);
	if (c == CURLE_COULDNT_CONNECT)
		return make_reasoned(err, ECONNREFUSED, "ConnectFailed", "%s: cannot connect: %s",
				     what, detail);
	if (c == CURLE_COULDNT_RESOLVE_HOST)
		return make_reasoned(err, EHOSTUNREACH, "ResolveFailed",
				     "%s: cannot resolve host: %s", what, detail);
	if (c == CURLE_PEER_FAILED_VERIFICATION)
		return make_reasoned(err, EPROTO, "TLSVerifyFailed",
				     "%s: TLS certificate verification failed: %s", what, detail);
	if (c == CURLE_SSL_CONNECT_ERROR || c == CURLE_SSL_CERTPROBLEM || c == CURLE_SSL_CIPHER ||
	    c == CURLE_SSL_CACERT_BADFILE || c == CURLE_SSL_ISSUER_ERROR ||
	    c == CURLE_SSL_CRL_BADFILE || c == CURLE_SSL_PINNEDPUBKEYNOTMATCH ||
	    c == CURLE_SSL_INVALIDCERTSTATUS)
		return make_reasoned(err, EPROTO, "TLSError", "%s: TLS error: %s", what, detail);
	if (c == CURLE_TOO_MANY_REDIRECTS)
		return make_reasoned(err, ELOOP, "TooManyRedirects", "%s: too many redirects",
				     what);
	if (c == CURLE_WRITE_ERROR && resp->overflow)
		return make_reasoned(err, EFBIG, "TooLarge", "%s: response larger than %zu bytes",
				     what, resp->fd >= 0 ? (size_t)resp->max : resp->body.max);
	if (c == CURLE_WRITE_ERROR && resp->write_errno)
		return kmm_error_make_errno(err, resp->write_errno, "%s: writing the blob", what);
	return kmm_error_make(err, EIO, "%s: %s", what, detail);
}

/*
 * Every socket curl opens goes through here, after DNS and for each redirect
 * and token realm: a refused address gets no socket, so nothing is sent to
 * it, not even a SYN.
 */
static curl_socket_t open_socket(void *userdata, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct kmm_registry *r = userdata;
	char why[sizeof(r->policy_why)];

	if (kmm_registry_policy_check(r->policy, &a->addr, a->addrlen, why, sizeof(why)) < 0) {
		snprintf(r->policy_why, sizeof(r->policy_why), "%s", why);
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* Aborts transfers when the check pool stops or the check's deadline passed. */
static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	const struct kmm_registry *r = userdata;

	if (r->stop && atomic_load(r->stop))
		return 1;
	return r->deadline_ms > 0 && kmm_now_mono_ms() >= r->deadline_ms;
}

/*
 * A URL whose host is an IP literal is checked before curl runs: with a proxy
 * configured, curl only ever connects to the proxy.
 */
static int check_url_host(struct kmm_registry *r, const char *url, const char *what,
			  struct kmm_error **err)
{
	CURLU *u = curl_url();
	char *host = NULL;
	char why[sizeof(r->policy_why)];
	int rc = 0;

	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		size_t n = strlen(host);
		char *h = host;

		if (n > 2 && h[0] == '[' && h[n - 1] == ']') { /* [v6] */
			h[n - 1] = '\0';
			h++;
		}
		if (kmm_registry_policy_check_text(r->policy, h, why, sizeof(why)) == -EPERM)
			rc = make_reasoned(err, EPERM, "DestinationRefused",
					   "%s: " POLICY_MARK
					   "%s (allow it with registryAllowedNetworks)",
					   what, why);
	}
	curl_free(host);
	curl_url_cleanup(u);
	return rc;
}

#define SETOPT(opt, val)                                                                           \
	do {                                                                                       \
		CURLcode _c = curl_easy_setopt(r->curl, opt, val);                                 \
		if (_c != CURLE_OK)                                                                \
			return kmm_error_make(err, EIO, "curl_easy_setopt(%s): %s", #opt,          \
					      curl_easy_strerror(_c));                             \
	} while (0)

/*
 * Performs one request. resp must be initialized by kmm_response_init; the
 * status lands in resp->status. user/password (may be NULL) are sent as
 * Basic credentials (token requests only).
 */
static int perform(struct kmm_registry *r, const char *method, const char *url, const char *accept,
		   const char *authorization, const char *user, const char *password,
		   struct kmm_response *resp, struct kmm_error **err)
{
	_cleanup_(slist_freep) struct curl_slist *headers = NULL;
	_cleanup_free_ char *what = NULL;
	struct curl_slist *tmp;
	long timeout_ms = r->request_timeout_ms, connect_ms = r->connect_timeout_ms;
	CURLcode c;
	int rc;

	if (asprintf(&what, "%s %s", method, url) < 0)
		return -ENOMEM;
	curl_easy_reset(r->curl);
	r->errbuf[0] = '\0';
	r->policy_why[0] = '\0';
	resp->curl = r->curl;
	rc = check_url_host(r, url, what, err);
	if (rc < 0)
		return rc;
	if (r->deadline_ms > 0) {
		int64_t left = r->deadline_ms - kmm_now_mono_ms();

		if (left <= 0)
			return make_reasoned(err, ETIMEDOUT, "Timeout",
					     "%s: timed out: the check's deadline passed", what);
		/* Each request ends by the deadline even if the progress callback lags. */
		if (timeout_ms > left)
			timeout_ms = left;
		if (connect_ms > left)
			connect_ms = left;
	}
	SETOPT(CURLOPT_URL, url);
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_OPENSOCKETFUNCTION, open_socket);
	SETOPT(CURLOPT_OPENSOCKETDATA, r);
	SETOPT(CURLOPT_NOPROGRESS, 0L);
	SETOPT(CURLOPT_XFERINFOFUNCTION, on_progress);
	SETOPT(CURLOPT_XFERINFODATA, r);
	SETOPT(CURLOPT_ERRORBUFFER, r->errbuf);
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	/* Credentials never follow a redirect to plain http. */
	SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, r->insecure && !user ? "http,https" : "https");
	SETOPT(CURLOPT_FOLLOWLOCATION, 1L);
	SETOPT(CURLOPT_MAXREDIRS, 5L);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	if (resp->fd >= 0) {
		SETOPT(CURLOPT_LOW_SPEED_LIMIT, 1024L);
		SETOPT(CURLOPT_LOW_SPEED_TIME, r->stall_timeout_s);
		if (r->deadline_ms > 0)
			SETOPT(CURLOPT_TIMEOUT_MS, timeout_ms);
	} else {
		SETOPT(CURLOPT_TIMEOUT_MS, timeout_ms);
	}
	SETOPT(CURLOPT_USERAGENT, "kmm/" KMM_VERSION);
	SETOPT(CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(CURLOPT_HEADERDATA, resp);
	SETOPT(CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(CURLOPT_WRITEDATA, resp);
	if (strcmp(method, "HEAD") == 0)
		SETOPT(CURLOPT_NOBODY, 1L);
	if (r->ca_pem) {
		struct curl_blob blob = { .data = r->ca_pem,
					  .len = strlen(r->ca_pem),
					  .flags = CURL_BLOB_NOCOPY };

		SETOPT(CURLOPT_CAINFO_BLOB, &blob);
	} else if (r->ca_file) {
		SETOPT(CURLOPT_CAINFO, r->ca_file);
	}
	if (r->skip_verify) {
		SETOPT(CURLOPT_SSL_VERIFYPEER, 0L);
		SETOPT(CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (user) {
		SETOPT(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		SETOPT(CURLOPT_USERNAME, user);
		SETOPT(CURLOPT_PASSWORD, password);
	}
	if (accept) {
		if (!(tmp = curl_slist_append(headers, accept)))
			return -ENOMEM;
		headers = tmp;
	}
	if (authorization) {
		if (!(tmp = curl_slist_append(headers, authorization)))
			return -ENOMEM;
		headers = tmp;
	}
	if (headers)
		SETOPT(CURLOPT_HTTPHEADER, headers);
	c = curl_easy_perform(r->curl);
	if (c != CURLE_OK)
		return curl_fail(r, c, resp, what, err);
	curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &resp->status);
	kmm_debug("registry request", "method", method, "url", url);
	return 0;
}

void kmm_response_init(struct kmm_response *resp, size_t body_max, int fd, uint64_t blob_max)
{
	*resp = (struct kmm_response){ .fd = fd, .max = blob_max };
	kmm_buf_init(&resp->body, body_max);
}

static int response_reset(struct kmm_response *resp)
{
	size_t body_max = resp->body.max;
	int fd = resp->fd;
	uint64_t max = resp->max;

	kmm_response_done(resp);
	kmm_response_init(resp, body_max, fd, max);
	if (fd >= 0) {
		if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
			return -errno;
		resp->dg = kmm_digester_new();
		if (!resp->dg)
			return -ENOMEM;
	}
	return 0;
}

/* ---- auth ---- */

static const char *api_host(const char *registry)
{
	return strcmp(registry, "docker.io") == 0 ? "registry-1.docker.io" : registry;
}

static int credentials(struct kmm_registry *r, const char *registry, char **ret_user,
		       char **ret_password, struct kmm_error **err)
{
	if (r->username) {
		*ret_user = strdup(r->username);
		*ret_password = strdup(r->password);
		if (!*ret_user || !*ret_password) {
			free(*ret_user);
			free(*ret_password);
			return -ENOMEM;
		}
		return 1;
	}
	for (int i = 0; i < 2; i++) {
		const char *doc = i ? r->docker_config_file : r->docker_config;
		int rc;

		if (!doc)
			continue;
		rc = kmm_docker_config_lookup(doc, strlen(doc), registry, ret_user, ret_password,
					      err);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* The registry's error document {"errors":[{"code","message"}]}, if any. */
static void error_body(const struct kmm_response *resp, char **ret_code, char **ret_message)
{
	_cleanup_(json_decrefp) json_t *root = NULL;
	json_t *first;
	const char *code = NULL, *message = NULL;

	*ret_code = *ret_message = NULL;
	if (!resp->body.len)
		return;
	root = json_loadb(resp->body.data, resp->body.len, 0, NULL);
	first = json_array_get(json_object_get(root, "errors"), 0);
	code = json_string_value(json_object_get(first, "code"));
	message = json_string_value(json_object_get(first, "message"));
	if (code)
		*ret_code = strndup(code, 64);
	if (message)
		*ret_message = strndup(message, 512);
}

int kmm_registry_http_fail(const struct kmm_response *resp, const char *what,
			   struct kmm_error **err)
{
	_cleanup_free_ char *code = NULL, *message = NULL;

	error_body(resp, &code, &message);
	return kmm_error_make_http(err, (int)resp->status, code, "%s: HTTP %ld%s%s%s%s%s", what,
				   resp->status, code ? " " : "", code ? code : "",
				   message ? " (" : "", message ? message : "", message ? ")" : "");
}

static char *url_escape(CURL *curl, const char *s)
{
	char *e = curl_easy_escape(curl, s, 0);
	char *copy = e ? strdup(e) : NULL;

	curl_free(e);
	return copy;
}

/* The host name of an http(s) URL, lowercased (heap), or NULL. */
static char *url_host(const char *url)
{
	CURLU *u = curl_url();
	char *host = NULL, *copy = NULL;

	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
		copy = strdup(host);
	for (char *p = copy; p && *p; p++)
		*p = (char)tolower((unsigned char)*p);
	curl_free(host);
	curl_url_cleanup(u);
	return copy;
}

/*
 * Whether Basic credentials may go to a token realm. The realm is named by
 * the registry's answer: over plain http anyone on the path can name any
 * realm, and a realm URL over plain http shows the password to the path.
 */
static int realm_may_get_credentials(const struct kmm_registry *r, const struct kmm_image_ref *ref,
				     const char *realm, struct kmm_error **err)
{
	_cleanup_free_ char *registry_url = NULL, *registry_host = NULL, *realm_host = NULL;

	if (strncasecmp(realm, "https://", 8) != 0)
		return make_reasoned(err, EACCES, "CredentialsWithheld",
				     "not sending the credentials for %s to token realm %.200s: "
				     "it is not https",
				     ref->registry, realm);
	if (!r->insecure && !r->skip_verify)
		return 0;
	if (asprintf(&registry_url, "https://%s/", api_host(ref->registry)) < 0)
		return -ENOMEM;
	registry_host = url_host(registry_url);
	realm_host = url_host(realm);
	if (!registry_host || !realm_host || strcmp(registry_host, realm_host) != 0)
		return make_reasoned(err, EACCES, "CredentialsWithheld",
				     "not sending the credentials for %s to token realm %.200s: "
				     "the challenge came over an unverified connection and names "
				     "another host",
				     ref->registry, realm);
	return 0;
}

static int fetch_token(struct kmm_registry *r, const struct kmm_image_ref *ref,
		       const struct kmm_auth_challenge *ch, char **ret_header,
		       struct kmm_error **err)
{
	_cleanup_free_ char *user = NULL, *password = NULL, *scope = NULL, *url = NULL,
			    *esc_service = NULL, *esc_scope = NULL;
	_cleanup_(json_decrefp) json_t *root = NULL;
	struct kmm_response resp;
	const char *token;
	int rc;

	rc = credentials(r, ref->registry, &user, &password, err);
	if (rc < 0)
		return rc;
	if (ch->scope)
		scope = strdup(ch->scope);
	else if (asprintf(&scope, "repository:%s:pull", ref->repository) < 0)
		scope = NULL;
	if (!scope)
		return -ENOMEM;
	if (strncmp(ch->realm, "https://", 8) != 0 && strncmp(ch->realm, "http://", 7) != 0)
		return kmm_error_make(err, EPROTO, "token realm '%.200s' is not an http(s) URL",
				      ch->realm);
	if (user) {
		rc = realm_may_get_credentials(r, ref, ch->realm, err);
		if (rc < 0)
			return rc;
	}
	esc_scope = url_escape(r->curl, scope);
	esc_service = ch->service ? url_escape(r->curl, ch->service) : strdup("");
	if (!esc_scope || !esc_service)
		return -ENOMEM;
	if (asprintf(&url, "%s%cscope=%s%s%s", ch->realm, strchr(ch->realm, '?') ? '&' : '?',
		     esc_scope, ch->service ? "&service=" : "", esc_service) < 0)
		return -ENOMEM;

	kmm_response_init(&resp, TOKEN_BODY_MAX, -1, 0);
	rc = perform(r, "GET", url, NULL, NULL, user, password, &resp, err);
	if (rc < 0) {
		kmm_response_done(&resp);
		return kmm_error_wrap(err, "token request");
	}
	if (resp.status != 200) {
		rc = kmm_registry_http_fail(&resp, "token request", err);
		if (resp.status == 401 || resp.status == 403)
			kmm_error_wrap(err, "%s",
				       user ? "credentials rejected"
					    : "no credentials for this registry");
		kmm_response_done(&resp);
		return rc;
	}
	root = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
	kmm_response_done(&resp);
	token = json_string_value(json_object_get(root, "token"));
	if (!token || !*token)
		token = json_string_value(json_object_get(root, "access_token"));
	if (!token || !*token || strpbrk(token, "\r\n"))
		return kmm_error_make(err, EPROTO, "token response from %.200s has no usable token",
				      ch->realm);
	if (asprintf(ret_header, "Authorization: Bearer %s", token) < 0)
		return -ENOMEM;
	return 0;
}

static int basic_header(struct kmm_registry *r, const struct kmm_image_ref *ref, char **ret_header,
			struct kmm_error **err)
{
	_cleanup_free_ char *user = NULL, *password = NULL, *pair = NULL, *b64 = NULL;
	int rc = credentials(r, ref->registry, &user, &password, err);

	if (rc < 0)
		return rc;
	if (rc == 0)
		return kmm_error_make_http(
		    err, 401, "UNAUTHORIZED",
		    "registry %s requires authentication and no credentials for it were given",
		    ref->registry);
	if (asprintf(&pair, "%s:%s", user, password) < 0)
		return -ENOMEM;
	b64 = kmm_base64_encode(pair, strlen(pair));
	explicit_bzero(pair, strlen(pair));
	if (!b64 || asprintf(ret_header, "Authorization: Basic %s", b64) < 0)
		return -ENOMEM;
	return 0;
}

int kmm_registry_request(struct kmm_registry *r, const struct kmm_image_ref *ref,
			 const char *method, const char *kind, const char *reference,
			 struct kmm_response *resp, struct kmm_error **err)
{
	_cleanup_free_ char *url = NULL, *key = NULL;
	bool retried = false;
	int rc;

	if (asprintf(&url, "%s://%s/v2/%s/%s/%s", r->insecure ? "http" : "https",
		     api_host(ref->registry), ref->repository, kind, reference) < 0 ||
	    asprintf(&key, "%s/%s", ref->registry, ref->repository) < 0)
		return -ENOMEM;
	for (;;) {
		struct kmm_auth_challenge ch = { 0 };
		char *header = NULL;

		rc =
		    perform(r, method, url, strcmp(kind, "manifests") == 0 ? manifest_accept : NULL,
			    kmm_hashmap_get(r->auth, key), NULL, NULL, resp, err);
		if (rc < 0)
			return rc;
		if (resp->status != 401 || retried)
			break;
		if (!resp->www_authenticate)
			return kmm_registry_http_fail(resp, url, err);
		rc = kmm_auth_challenge_parse(resp->www_authenticate, &ch, err);
		if (rc < 0)
			return rc;
		if (strcmp(ch.scheme, "basic") == 0)
			rc = basic_header(r, ref, &header, err);
		else if (strcmp(ch.scheme, "bearer") == 0)
			rc = fetch_token(r, ref, &ch, &header, err);
		else
			rc =
			    kmm_error_make_http(err, 401, "UNAUTHORIZED",
						"%s: unsupported auth scheme '%s'", url, ch.scheme);
		kmm_auth_challenge_done(&ch);
		if (rc < 0)
			return rc;
		rc = kmm_hashmap_put(r->auth, key, header, NULL);
		if (rc < 0) {
			free(header);
			return rc;
		}
		rc = response_reset(resp);
		if (rc < 0)
			return rc;
		retried = true;
	}
	if (resp->status == 401) {
		_cleanup_free_ char *code = NULL, *message = NULL;

		error_body(resp, &code, &message);
		return kmm_error_make_http(
		    err, 401, code ? code : "UNAUTHORIZED",
		    "%s %s: HTTP 401: authentication failed (credentials rejected)%s%s%s", method,
		    url, message ? " (" : "", message ? message : "", message ? ")" : "");
	}
	return 0;
}

int kmm_registry_image_exists(struct kmm_registry *r, const char *image, char **ret_digest,
			      struct kmm_error **err)
{
	_cleanup_(kmm_image_ref_freep) struct kmm_image_ref *ref = NULL;
	struct kmm_response resp;
	int rc;

	rc = kmm_image_ref_parse(image, &ref, err);
	if (rc < 0) {
		if (rc == -EINVAL && err && *err && !(*err)->reason)
			(*err)->reason = strdup("BadReference");
		return rc;
	}
	kmm_response_init(&resp, ERROR_BODY_MAX, -1, 0);
	rc = kmm_registry_request(r, ref, "HEAD", "manifests", ref->digest ? ref->digest : ref->tag,
				  &resp, err);
	if (rc < 0) {
		kmm_response_done(&resp);
		return kmm_error_wrap(err, "image %s", image);
	}
	if (resp.status == 404) {
		kmm_response_done(&resp);
		return 0;
	}
	if (resp.status != 200) {
		(void)kmm_registry_http_fail(&resp, "HEAD manifest", err);
		kmm_response_done(&resp);
		return kmm_error_wrap(err, "image %s", image);
	}
	if (ret_digest && resp.digest && kmm_digest_valid(resp.digest))
		*ret_digest = TAKE_PTR(resp.digest);
	else if (ret_digest)
		*ret_digest = NULL;
	kmm_response_done(&resp);
	return 1;
}

/* ---- errors fit for a status condition ---- */

/* True if s is a registry error code as the distribution spec has them. */
static bool code_token(const char *s)
{
	size_t n = 0;

	for (; s && s[n]; n++)
		if (!(isupper((unsigned char)s[n]) || isdigit((unsigned char)s[n]) || s[n] == '_'))
			return false;
	return n > 0 && n <= 40;
}

/* Copies src into buf as printable ASCII, anything else as '?'. */
static void printable(char *buf, size_t size, const char *src)
{
	size_t i = 0;

	if (!size)
		return;
	for (; src && src[i] && i + 1 < size; i++)
		buf[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
	buf[i] = '\0';
}

void kmm_registry_error_summary(const struct kmm_error *e, char *buf, size_t size)
{
	static const struct {
		const char *reason, *text;
	} ours[] = {
		{ "Timeout", "no answer in time" },
		{ "ConnectFailed", "cannot connect" },
		{ "ResolveFailed", "cannot resolve the registry host" },
		{ "TLSVerifyFailed", "TLS certificate verification failed" },
		{ "TLSError", "TLS error" },
		{ "TooManyRedirects", "too many redirects" },
		{ "TooLarge", "reply too large" },
		{ "Canceled", "check canceled" },
		{ "BadReference", "invalid image reference" },
		{ "BadPullSecret", "the pull secret is not a valid docker config" },
		{ "CredentialsWithheld",
		  "credentials withheld: the token realm is not https, or names another host "
		  "over an unverified connection" },
	};
	const char *reason = e ? e->reason : NULL;
	char tmp[256];

	if (!size)
		return;
	if (!e) {
		printable(buf, size, "unknown error");
		return;
	}
	if (reason && strcmp(reason, "DestinationRefused") == 0) {
		/* The tail after the mark is ours: an address we formatted and its label. */
		const char *m = e->message ? strstr(e->message, POLICY_MARK) : NULL;

		snprintf(tmp, sizeof(tmp), "refused by the operator's destination policy%s%.120s",
			 m ? ": " : "", m ? m + strlen(POLICY_MARK) : "");
		printable(buf, size, tmp);
		return;
	}
	for (size_t i = 0; reason && i < KMM_ARRAY_SIZE(ours); i++)
		if (strcmp(reason, ours[i].reason) == 0) {
			printable(buf, size, ours[i].text);
			return;
		}
	if (e->http_status) {
		const char *code = code_token(reason) ? reason : NULL;

		snprintf(tmp, sizeof(tmp), "%sHTTP %d%s%s",
			 e->http_status == 401	 ? "authentication failed: "
			 : e->http_status == 403 ? "access denied: "
						 : "registry answered ",
			 e->http_status, code ? " " : "", code ? code : "");
		printable(buf, size, tmp);
		return;
	}
	snprintf(tmp, sizeof(tmp), "%s", e->code == EPROTO ? "protocol error" : strerror(e->code));
	printable(buf, size, tmp);
}
