/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTPS server for the webhooks, on libmicrohttpd (GnuTLS inside).
 *
 * Certificate rotation: a reloader thread watches the certificate and key
 * files. When they change (and parse), it starts a second daemon with the new
 * pair on the same address (SO_REUSEPORT), makes it current, quiesces the old
 * one (no new connections), lets in-flight requests finish, then stops it. The
 * process and its address stay the same; new handshakes see the new
 * certificate.
 */
#include <errno.h>
#include <netdb.h>
#include <unistd.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "kmm/buf.h"
#include "kmm/fileio.h"
#include "kmm/httpd.h"
#include "kmm/log.h"
#include "kmm/webhook.h"

#define MAX_PEM (1024 * 1024)
#define DEFAULT_RELOAD_MS 10000
#define QUIESCE_GRACE_MS 2000

struct generation {
	struct MHD_Daemon *daemon;
	char *cert;
	char *key;
};

struct kmm_webhook_server {
	struct kmm_webhook_options hooks;
	char host[64];
	uint16_t port;
	char *cert_file, *key_file;
	unsigned reload_ms;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping;
	bool reloader_running;
	pthread_t reloader;
	struct generation cur;
	struct timespec cert_mtime, key_mtime;
	unsigned loads;
};

struct request {
	struct kmm_buf body;
	bool too_big;
};

static void generation_stop(struct generation *g)
{
	if (g->daemon)
		MHD_stop_daemon(g->daemon);
	free(g->cert);
	free(g->key);
	*g = (struct generation){ 0 };
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, char *body,
			     const char *type)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(body ? strlen(body) : 0, body ? body : (void *)"",
					    body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	if (type)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **con_cls)
{
	struct kmm_webhook_server *s = cls;
	struct request *req = *con_cls;
	char *body = NULL;
	int status = 500;

	(void)version;
	if (!req) {
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		kmm_buf_init(&req->body, KMM_WEBHOOK_MAX_BODY);
		*con_cls = req;
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (!req->too_big && kmm_buf_append(&req->body, upload_data, *upload_data_size) < 0)
			req->too_big = true;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0)
		return reply(c, MHD_HTTP_OK, strdup("ok"), "text/plain");
	if (strcmp(method, "POST") != 0)
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, NULL, NULL);
	if (req->too_big)
		return reply(c, MHD_HTTP_CONTENT_TOO_LARGE, NULL, NULL);
	if (kmm_webhook_handle(&s->hooks, url, kmm_buf_str(&req->body), req->body.len, &status,
			       &body) < 0)
		return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, NULL);
	if (kmm_log_enabled(KMM_LOG_DEBUG)) {
		char st[16];

		snprintf(st, sizeof(st), "%d", status);
		kmm_debug("webhook request", "path", url, "status", st);
	}
	return reply(c, (unsigned)status, body, body ? "application/json" : NULL);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct request *req = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (req) {
		kmm_buf_free(&req->body);
		free(req);
		*con_cls = NULL;
	}
}

static int start_daemon(struct kmm_webhook_server *s, const char *cert, const char *key,
			struct MHD_Daemon **ret, struct kmm_error **err)
{
	struct sockaddr_storage ss = { 0 };
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;
	char portstr[8];
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
				  .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai = NULL;

	snprintf(portstr, sizeof(portstr), "%u", s->port);
	if (getaddrinfo(*s->host ? s->host : NULL, portstr, &hints, &ai) != 0 || !ai)
		return kmm_error_make(err, EINVAL, "webhook: invalid bind address %s:%u", s->host,
				      s->port);
	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	d = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_TLS |
		MHD_USE_ITC | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
	    0, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	    MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_HTTPS_MEM_CERT, cert,
	    MHD_OPTION_HTTPS_MEM_KEY, key, MHD_OPTION_NOTIFY_COMPLETED, completed, s,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
	if (!d)
		return kmm_error_make(err, EADDRINUSE,
				      "webhook: cannot serve HTTPS on %s:%u (address in use, or a "
				      "bad certificate/key)",
				      *s->host ? s->host : "*", s->port);
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (info && info->port)
		s->port = info->port;
	*ret = d;
	return 0;
}

static bool changed(const char *path, struct timespec *last, bool update)
{
	struct stat st;
	bool diff;

	if (stat(path, &st) < 0)
		return false;
	diff = st.st_mtim.tv_sec != last->tv_sec || st.st_mtim.tv_nsec != last->tv_nsec;
	if (update)
		*last = st.st_mtim;
	return diff;
}

/* Loads the pair and starts a daemon with it; on success makes it current. */
static int load_and_serve(struct kmm_webhook_server *s, struct kmm_error **err)
{
	struct generation g = { 0 }, old;
	struct timespec cm = s->cert_mtime, km = s->key_mtime;
	int r;

	changed(s->cert_file, &cm, true);
	changed(s->key_file, &km, true);
	r = kmm_read_file(s->cert_file, MAX_PEM, &g.cert, NULL, err);
	if (r >= 0)
		r = kmm_read_file(s->key_file, MAX_PEM, &g.key, NULL, err);
	if (r >= 0)
		r = start_daemon(s, g.cert, g.key, &g.daemon, err);
	if (r < 0) {
		generation_stop(&g);
		return r;
	}
	pthread_mutex_lock(&s->lock);
	old = s->cur;
	s->cur = g;
	s->cert_mtime = cm;
	s->key_mtime = km;
	s->loads++;
	pthread_mutex_unlock(&s->lock);
	if (old.daemon) {
		struct timespec grace = { QUIESCE_GRACE_MS / 1000,
					  (QUIESCE_GRACE_MS % 1000) * 1000000L };
		MHD_socket fd = MHD_quiesce_daemon(old.daemon);

		/* The listening socket is ours after quiescing; in-flight requests get a grace period. */
		if (fd != MHD_INVALID_SOCKET)
			close(fd);
		nanosleep(&grace, NULL);
		generation_stop(&old);
	}
	return 0;
}

static void *reloader(void *arg)
{
	struct kmm_webhook_server *s = arg;

	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		struct timespec until;
		bool due;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += s->reload_ms / 1000;
		until.tv_nsec += (long)(s->reload_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->cond, &s->lock, &until);
		if (s->stopping)
			break;
		due = changed(s->cert_file, &s->cert_mtime, false) ||
		      changed(s->key_file, &s->key_mtime, false);
		if (!due)
			continue;
		pthread_mutex_unlock(&s->lock);
		{
			struct kmm_error *err = NULL;

			/* A half-written pair fails to load: the old one keeps serving, retry later. */
			if (load_and_serve(s, &err) < 0)
				kmm_debug("webhook certificate reload failed", "error",
					  kmm_error_message(err));
			kmm_error_free(err);
		}
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int kmm_webhook_server_start(const struct kmm_webhook_server_options *o,
			     struct kmm_webhook_server **ret, struct kmm_error **err)
{
	struct kmm_webhook_server *s;
	bool disabled = false;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return kmm_error_make(err, ENOMEM, "out of memory");
	s->hooks = o->hooks;
	s->reload_ms = o->reload_interval_ms ? o->reload_interval_ms : DEFAULT_RELOAD_MS;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->cert_file = strdup(o->cert_file ? o->cert_file : "");
	s->key_file = strdup(o->key_file ? o->key_file : "");
	if (!s->cert_file || !s->key_file) {
		r = kmm_error_make(err, ENOMEM, "out of memory");
		goto fail;
	}
	r = kmm_parse_bind_address(o->bind_address ? o->bind_address : ":9443", s->host,
				   sizeof(s->host), &s->port, &disabled, err);
	if (r >= 0 && disabled)
		r = kmm_error_make(err, EINVAL, "webhook: the server cannot be disabled");
	if (r >= 0)
		r = load_and_serve(s, err);
	if (r < 0)
		goto fail;
	if (pthread_create(&s->reloader, NULL, reloader, s) != 0) {
		r = kmm_error_make(err, EAGAIN, "webhook: cannot start the certificate reloader");
		goto fail;
	}
	s->reloader_running = true;
	*ret = s;
	return 0;
fail:
	kmm_webhook_server_stop(s);
	return r;
}

uint16_t kmm_webhook_server_port(const struct kmm_webhook_server *s)
{
	return s ? s->port : 0;
}

unsigned kmm_webhook_server_cert_loads(const struct kmm_webhook_server *s)
{
	unsigned n;

	pthread_mutex_lock((pthread_mutex_t *)&s->lock);
	n = s->loads;
	pthread_mutex_unlock((pthread_mutex_t *)&s->lock);
	return n;
}

void kmm_webhook_server_stop(struct kmm_webhook_server *s)
{
	if (!s)
		return;
	if (s->reloader_running) {
		pthread_mutex_lock(&s->lock);
		s->stopping = true;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->reloader, NULL);
	}
	generation_stop(&s->cur);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s->cert_file);
	free(s->key_file);
	free(s);
}
