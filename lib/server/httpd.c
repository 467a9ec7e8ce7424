/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS certificate rotation: a reloader thread polls the files' mtimes. When
 * they changed, the serving daemon is quiesced and its listening socket is
 * handed to a new daemon with the new pair: connections that arrive between
 * the two wait in the socket's backlog, none is refused or reset. The old
 * daemon keeps the connections it has (a webhook client such as the
 * apiserver keeps them alive) and answers each next request on them with
 * "Connection: close", so the client opens its next connection to the new
 * certificate; it is stopped once it has none left, or after the idle
 * timeout. Stopping it earlier would close connections a client may just be
 * sending a request on, which the client sees as a failed call.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kmm/shared-clock.h"
#include "kmm/shared-fileio.h"
#include "kmm/server-httpd.h"

#define MAX_ROUTES 16
#define RESPONSE_MAX (32 * 1024 * 1024)
#define MAX_PEM (1024 * 1024)
#define DEFAULT_RELOAD_MS 10000
#define CONNECTION_TIMEOUT_S 30
/* An old daemon's idle connections are closed by its own idle timeout. */
#define RETIRE_MAX_MS ((CONNECTION_TIMEOUT_S + 5) * 1000)
#define RETIRE_POLL_MS 200
#define AUTH_THREADS 4

struct route {
	char *path;
	kmm_http_handler_fn fn;
	kmm_http_post_handler_fn post_fn; /* set for POST routes, fn is NULL then */
	size_t max_body;
	void *userdata;
};

/* A POST request's body while it arrives (the connection's con_cls). */
struct upload {
	struct kmm_buf body;
	bool too_big;
};

/* A daemon and the PEM pair it serves, which must outlive it. */
struct generation {
	struct MHD_Daemon *daemon;
	char *cert;
	char *key;
};

struct kmm_httpd {
	char *bind_address;
	char host[INET6_ADDRSTRLEN];
	uint16_t port;
	bool disabled;
	struct route routes[MAX_ROUTES]; /* fixed once started: read without the lock */
	size_t n_routes;
	unsigned threads;

	kmm_http_authorize_fn authorize;
	void *authorize_userdata;
	void (*authorize_free)(void *userdata);

	bool tls;
	char *mem_cert, *mem_key; /* in-memory pair, until the first start */
	char *cert_file, *key_file;
	unsigned reload_ms;

	pthread_mutex_t lock; /* guards cur, retiring, the mtimes, loads, stopping */
	pthread_cond_t cond;
	bool stopping;
	bool reloader_running;
	pthread_t reloader;
	struct generation cur;
	struct generation retiring; /* quiesced, serving its last connections */
	int64_t retire_deadline_ms; /* monotonic */
	struct timespec cert_mtime, key_mtime;
	unsigned loads;
};

int kmm_parse_bind_address(const char *addr, char *host, size_t host_size, uint16_t *ret_port,
			   bool *ret_disabled, struct kmm_error **err)
{
	const char *colon;
	char *end;
	unsigned long port;
	size_t hlen;

	if (!addr || !*addr)
		return kmm_error_make(err, EINVAL, "empty bind address");
	if (strcmp(addr, "0") == 0) {
		*ret_disabled = true;
		host[0] = '\0';
		*ret_port = 0;
		return 0;
	}
	colon = strrchr(addr, ':');
	if (!colon)
		return kmm_error_make(err, EINVAL, "bind address '%s' has no ':PORT'", addr);
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port > 65535)
		return kmm_error_make(err, EINVAL, "bind address '%s': invalid port", addr);
	hlen = (size_t)(colon - addr);
	/* "[::1]:8080" names an IPv6 host. */
	if (hlen >= 2 && addr[0] == '[' && addr[hlen - 1] == ']') {
		addr++;
		hlen -= 2;
	}
	if (hlen >= host_size)
		return kmm_error_make(err, EINVAL, "bind address '%s': host too long", addr);
	memcpy(host, addr, hlen);
	host[hlen] = '\0';
	if (hlen > 0) {
		struct in6_addr a6;
		struct in_addr a4;

		if (strcmp(host, "localhost") == 0)
			snprintf(host, host_size, "%s", "127.0.0.1");
		else if (inet_pton(AF_INET, host, &a4) != 1 && inet_pton(AF_INET6, host, &a6) != 1)
			return kmm_error_make(
			    err, EINVAL, "bind address '%s': host must be an IP address", addr);
	}
	*ret_port = (uint16_t)port;
	*ret_disabled = false;
	return 0;
}

static void generation_stop(struct generation *g)
{
	if (g->daemon)
		MHD_stop_daemon(g->daemon);
	free(g->cert);
	free(g->key);
	*g = (struct generation){ 0 };
}

int kmm_httpd_new(const struct kmm_httpd_options *opts, struct kmm_httpd **ret,
		  struct kmm_error **err)
{
	_cleanup_(kmm_httpd_freep) struct kmm_httpd *h = calloc(1, sizeof(*h));
	int r;

	if (!h)
		return kmm_error_make_errno(err, ENOMEM, "create HTTP server");
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	h->threads = 1;
	h->reload_ms = DEFAULT_RELOAD_MS;
	h->bind_address = strdup(opts->bind_address ? opts->bind_address : "");
	if (!h->bind_address)
		return kmm_error_make_errno(err, ENOMEM, "create HTTP server");
	r = kmm_parse_bind_address(opts->bind_address, h->host, sizeof(h->host), &h->port,
				   &h->disabled, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(h);
	return 0;
}

static void clear_tls(struct kmm_httpd *h)
{
	kmm_free_and_null(h->mem_cert);
	kmm_free_and_null(h->mem_key);
	kmm_free_and_null(h->cert_file);
	kmm_free_and_null(h->key_file);
	h->tls = false;
}

int kmm_httpd_set_tls(struct kmm_httpd *h, const char *cert_pem, const char *key_pem)
{
	clear_tls(h);
	h->mem_cert = strdup(cert_pem);
	h->mem_key = strdup(key_pem);
	if (!h->mem_cert || !h->mem_key) {
		clear_tls(h);
		return -ENOMEM;
	}
	h->tls = true;
	return 0;
}

int kmm_httpd_set_tls_files(struct kmm_httpd *h, const char *cert_file, const char *key_file,
			    unsigned interval_ms)
{
	clear_tls(h);
	h->cert_file = strdup(cert_file);
	h->key_file = strdup(key_file);
	if (!h->cert_file || !h->key_file) {
		clear_tls(h);
		return -ENOMEM;
	}
	h->reload_ms = interval_ms ? interval_ms : DEFAULT_RELOAD_MS;
	h->tls = true;
	return 0;
}

void kmm_httpd_set_authorize(struct kmm_httpd *h, kmm_http_authorize_fn fn, void *userdata,
			     void (*free_fn)(void *userdata))
{
	if (h->authorize_free)
		h->authorize_free(h->authorize_userdata);
	h->authorize = fn;
	h->authorize_userdata = userdata;
	h->authorize_free = free_fn;
	if (fn && h->threads < AUTH_THREADS)
		h->threads = AUTH_THREADS;
}

static int add_route(struct kmm_httpd *h, const struct route *r)
{
	if (h->n_routes == MAX_ROUTES)
		return -ENOSPC;
	h->routes[h->n_routes] = *r;
	h->routes[h->n_routes].path = strdup(r->path);
	if (!h->routes[h->n_routes].path)
		return -ENOMEM;
	h->n_routes++;
	return 0;
}

int kmm_httpd_route(struct kmm_httpd *h, const char *path, kmm_http_handler_fn fn, void *userdata)
{
	return add_route(h,
			 &(struct route){ .path = (char *)path, .fn = fn, .userdata = userdata });
}

int kmm_httpd_route_post(struct kmm_httpd *h, const char *path, kmm_http_post_handler_fn fn,
			 void *userdata, size_t max_body)
{
	return add_route(h, &(struct route){ .path = (char *)path,
					     .post_fn = fn,
					     .max_body = max_body,
					     .userdata = userdata });
}

static const struct route *find_route(const struct kmm_httpd *h, const char *url)
{
	for (size_t i = 0; i < h->n_routes; i++)
		if (strcmp(url, h->routes[i].path) == 0)
			return &h->routes[i];
	return NULL;
}

/* Each connection remembers the generation that accepted it, by the address of
 * its certificate, which lives as long as the daemon and its connections. */
static void note_generation(void *cls, struct MHD_Connection *conn, void **socket_context,
			    enum MHD_ConnectionNotificationCode toe)
{
	(void)conn;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
		*socket_context = cls;
}

/* Whether conn was accepted by a daemon that a rotation has since retired. */
static bool on_retired_daemon(struct kmm_httpd *h, struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	bool retired;

	pthread_mutex_lock(&h->lock);
	retired = ci && h->cur.cert && ci->socket_context != h->cur.cert;
	pthread_mutex_unlock(&h->lock);
	return retired;
}

static enum MHD_Result respond(struct kmm_httpd *h, struct MHD_Connection *conn, int status,
			       const char *type, const char *body, size_t len)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	if (on_retired_daemon(h, conn))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	ret = MHD_queue_response(conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result respond_status(struct kmm_httpd *h, struct MHD_Connection *conn, int status)
{
	const char *text;
	char line[64];
	int n;

	switch (status) {
	case MHD_HTTP_UNAUTHORIZED:
		text = "Unauthorized";
		break;
	case MHD_HTTP_FORBIDDEN:
		text = "Forbidden";
		break;
	case MHD_HTTP_INTERNAL_SERVER_ERROR:
		text = "Internal Server Error";
		break;
	default:
		text = "Error";
	}
	n = snprintf(line, sizeof(line), "%s\n", text);
	return respond(h, conn, status, "text/plain; charset=utf-8", line, (size_t)n);
}

static enum MHD_Result run_route(struct kmm_httpd *h, struct MHD_Connection *conn,
				 const struct route *rt, const char *url, const struct upload *up)
{
	struct kmm_http_response resp = { .status = 200,
					  .content_type = "text/plain; charset=utf-8" };
	enum MHD_Result ret;

	kmm_buf_init(&resp.body, RESPONSE_MAX);
	if (rt->post_fn)
		rt->post_fn(&resp, url, kmm_buf_str(&up->body), up->body.len, rt->userdata);
	else
		rt->fn(&resp, rt->userdata);
	ret = respond(h, conn, resp.status, resp.content_type, kmm_buf_str(&resp.body),
		      resp.body.len);
	kmm_buf_free(&resp.body);
	return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **con_cls)
{
	struct kmm_httpd *h = cls;
	const struct route *rt = find_route(h, url);
	bool post = strcmp(method, "POST") == 0;
	struct upload *up = *con_cls;

	(void)version;
	if (post && rt && rt->post_fn) {
		/* The first call only announces the request; the body follows in pieces. */
		if (!up) {
			up = calloc(1, sizeof(*up));
			if (!up)
				return MHD_NO;
			kmm_buf_init(&up->body, rt->max_body);
			*con_cls = up;
			return MHD_YES;
		}
		if (*upload_data_size > 0) {
			if (!up->too_big &&
			    kmm_buf_append(&up->body, upload_data, *upload_data_size) < 0)
				up->too_big = true;
			*upload_data_size = 0;
			return MHD_YES;
		}
	} else if (*upload_data_size > 0) {
		/* Only POST routes read bodies: drop anything else's. */
		*upload_data_size = 0;
		return MHD_YES;
	}
	/* Before anything else, as controller-runtime's filter does: an
	 * unauthenticated client learns nothing, not even which paths exist. */
	if (h->authorize) {
		const char *authz = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
								MHD_HTTP_HEADER_AUTHORIZATION);
		int st = h->authorize(authz, method, url, h->authorize_userdata);

		if (st != MHD_HTTP_OK)
			return respond_status(h, conn, st >= 400 && st < 600 ? st : 500);
	}
	if (!rt)
		return respond(h, conn, 404, "text/plain; charset=utf-8", "not found\n", 10);
	if (rt->post_fn ? !post : strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return respond(h, conn, 405, "text/plain; charset=utf-8", "method not allowed\n",
			       19);
	if (up && up->too_big)
		return respond(h, conn, 413, "text/plain; charset=utf-8",
			       "request body too large\n", 23);
	return run_route(h, conn, rt, url, up);
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			      enum MHD_RequestTerminationCode toe)
{
	struct upload *up = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (up) {
		kmm_buf_free(&up->body);
		free(up);
		*con_cls = NULL;
	}
}

static void fill_sockaddr(const struct kmm_httpd *h, struct sockaddr_storage *ss, unsigned *flags)
{
	if (strchr(h->host, ':')) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(h->port);
		inet_pton(AF_INET6, h->host, &a6->sin6_addr);
		*flags |= MHD_USE_IPv6;
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)ss;

		a4->sin_family = AF_INET;
		a4->sin_port = htons(h->port);
		a4->sin_addr.s_addr = htonl(INADDR_ANY);
		if (h->host[0])
			inet_pton(AF_INET, h->host, &a4->sin_addr);
	}
}

/* Starts one daemon with the pair in g (none for plain HTTP): on h's address,
 * or on listen_fd, the listening socket of a daemon it replaces. */
static int start_daemon(struct kmm_httpd *h, struct generation *g, MHD_socket listen_fd,
			struct kmm_error **err)
{
	struct sockaddr_storage ss = { 0 };
	const union MHD_DaemonInfo *info;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
	struct MHD_OptionItem o[13];
	size_t n = 0;

	fill_sockaddr(h, &ss, &flags);
	if (listen_fd != MHD_INVALID_SOCKET)
		o[n++] = (struct MHD_OptionItem){ MHD_OPTION_LISTEN_SOCKET, listen_fd, NULL };
	else
		o[n++] = (struct MHD_OptionItem){ MHD_OPTION_SOCK_ADDR, 0, &ss };
	o[n++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_LIMIT, 64, NULL };
	o[n++] =
	    (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_TIMEOUT, CONNECTION_TIMEOUT_S, NULL };
	o[n++] = (struct MHD_OptionItem){ MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)request_completed,
					  NULL };
	o[n++] = (struct MHD_OptionItem){ MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)note_generation,
					  g->cert };
	if (h->threads > 1)
		o[n++] = (struct MHD_OptionItem){ MHD_OPTION_THREAD_POOL_SIZE, h->threads, NULL };
	if (g->cert) {
		flags |= MHD_USE_TLS;
		o[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_CERT, 0, g->cert };
		o[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_KEY, 0, g->key };
	}
	/* Quiescing, to hand the socket over at a rotation, needs the ITC. */
	if (h->cert_file)
		flags |= MHD_USE_ITC;
	o[n++] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };
	errno = 0;
	g->daemon =
	    MHD_start_daemon(flags, 0, NULL, NULL, handle, h, MHD_OPTION_ARRAY, o, MHD_OPTION_END);
	if (!g->daemon) {
		if (h->tls)
			return kmm_error_make_errno(err, errno ? errno : EINVAL,
						    "serve HTTPS on %s (address in use, or a bad "
						    "certificate or key)",
						    h->bind_address);
		return kmm_error_make_errno(err, errno ? errno : EADDRNOTAVAIL, "listen on %s",
					    h->bind_address);
	}
	info = MHD_get_daemon_info(g->daemon, MHD_DAEMON_INFO_BIND_PORT);
	if (info && info->port)
		h->port = info->port;
	return 0;
}

static bool file_changed(const char *path, struct timespec *last, bool update)
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

/* Whether the PEM pair parses and the key is the certificate's: a pair written
 * halfway is found here, before the serving daemon is touched. */
static bool pair_usable(const char *cert_pem, const char *key_pem)
{
	BIO *cb = BIO_new_mem_buf(cert_pem, -1), *kb = BIO_new_mem_buf(key_pem, -1);
	X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
	EVP_PKEY *k = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
	bool ok = x && k && X509_check_private_key(x, k) == 1;

	EVP_PKEY_free(k);
	X509_free(x);
	BIO_free(kb);
	BIO_free(cb);
	ERR_clear_error();
	return ok;
}

/* Stops the daemon of the rotation before, whatever it still serves. */
static void stop_retiring(struct kmm_httpd *h)
{
	struct generation r;

	pthread_mutex_lock(&h->lock);
	r = h->retiring;
	h->retiring = (struct generation){ 0 };
	pthread_mutex_unlock(&h->lock);
	generation_stop(&r);
}

/* Stops the retired daemon once its last connection is gone or its time is up. */
static void check_retiring(struct kmm_httpd *h)
{
	const union MHD_DaemonInfo *info;
	bool done;

	pthread_mutex_lock(&h->lock);
	if (!h->retiring.daemon) {
		pthread_mutex_unlock(&h->lock);
		return;
	}
	info = MHD_get_daemon_info(h->retiring.daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
	done = (info && info->num_connections == 0) || kmm_now_mono_ms() >= h->retire_deadline_ms;
	pthread_mutex_unlock(&h->lock);
	if (done)
		stop_retiring(h);
}

/* Serves g on the listening socket of the current daemon, which retires. On
 * failure the current daemon is serving as before. */
static int hand_over(struct kmm_httpd *h, struct generation *g, struct kmm_error **err)
{
	struct generation old;
	MHD_socket fd;
	int r;

	/* One retired daemon at a time: the one before has had a round at least. */
	stop_retiring(h);
	pthread_mutex_lock(&h->lock);
	old = h->cur;
	pthread_mutex_unlock(&h->lock);
	fd = MHD_quiesce_daemon(old.daemon);
	if (fd == MHD_INVALID_SOCKET)
		return kmm_error_make(err, EIO,
				      "rotate the certificate of %s: cannot quiesce "
				      "the serving daemon",
				      h->bind_address);
	r = start_daemon(h, g, fd, err);
	if (r < 0) {
		/* The old pair takes the socket back; connections waited in its backlog. */
		struct generation back = { .cert = strdup(old.cert), .key = strdup(old.key) };

		if (!back.cert || !back.key || start_daemon(h, &back, fd, NULL) < 0) {
			generation_stop(&back);
			close(fd);
			return kmm_error_wrap(err,
					      "rotate the certificate of %s; the address "
					      "is no longer served",
					      h->bind_address);
		}
		generation_stop(g);
		*g = back;
	}
	pthread_mutex_lock(&h->lock);
	h->retiring = old;
	h->cur = *g;
	h->retire_deadline_ms = kmm_now_mono_ms() + RETIRE_MAX_MS;
	pthread_mutex_unlock(&h->lock);
	*g = (struct generation){ 0 };
	return r;
}

/* Reads the pair from the files and serves it (see the top of the file). */
static int load_and_serve(struct kmm_httpd *h, struct kmm_error **err)
{
	struct generation g = { 0 };
	struct timespec cm, km;
	bool serving;
	int r;

	pthread_mutex_lock(&h->lock);
	cm = h->cert_mtime;
	km = h->key_mtime;
	serving = h->cur.daemon != NULL;
	pthread_mutex_unlock(&h->lock);
	/* mtimes first: a write racing the read shows up again next round. */
	file_changed(h->cert_file, &cm, true);
	file_changed(h->key_file, &km, true);
	r = kmm_read_file(h->cert_file, MAX_PEM, &g.cert, NULL, err);
	if (r >= 0)
		r = kmm_read_file(h->key_file, MAX_PEM, &g.key, NULL, err);
	if (r >= 0 && !pair_usable(g.cert, g.key))
		r = kmm_error_make(err, EINVAL, "%s and %s: not a certificate and its key",
				   h->cert_file, h->key_file);
	if (r >= 0)
		r = serving ? hand_over(h, &g, err) : start_daemon(h, &g, MHD_INVALID_SOCKET, err);
	if (r < 0) {
		generation_stop(&g);
		return r;
	}
	pthread_mutex_lock(&h->lock);
	if (!serving)
		h->cur = g;
	h->cert_mtime = cm;
	h->key_mtime = km;
	/* Counted once only the new pair accepts connections on the address. */
	h->loads++;
	pthread_mutex_unlock(&h->lock);
	return 0;
}

static void *reloader(void *arg)
{
	struct kmm_httpd *h = arg;

	pthread_mutex_lock(&h->lock);
	while (!h->stopping) {
		unsigned wait_ms = h->retiring.daemon && h->reload_ms > RETIRE_POLL_MS
				       ? RETIRE_POLL_MS
				       : h->reload_ms;
		struct timespec until = kmm_deadline_after_ms(CLOCK_REALTIME, wait_ms);
		bool due;

		pthread_cond_timedwait(&h->cond, &h->lock, &until);
		if (h->stopping)
			break;
		pthread_mutex_unlock(&h->lock);
		check_retiring(h);
		pthread_mutex_lock(&h->lock);
		due = file_changed(h->cert_file, &h->cert_mtime, false) ||
		      file_changed(h->key_file, &h->key_mtime, false);
		if (!due)
			continue;
		pthread_mutex_unlock(&h->lock);
		{
			struct kmm_error *e = NULL;

			/* A half-written pair does not load: the old one keeps serving
			 * and the next round retries. */
			(void)load_and_serve(h, &e);
			kmm_error_free(e);
		}
		pthread_mutex_lock(&h->lock);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

int kmm_httpd_start(struct kmm_httpd *h, struct kmm_error **err)
{
	struct generation g = { 0 };
	int r;

	if (h->disabled)
		return 0;
	if (h->cert_file) {
		r = load_and_serve(h, err);
		if (r < 0)
			return r;
		if (pthread_create(&h->reloader, NULL, reloader, h) != 0)
			return kmm_error_make(err, EAGAIN, "start the certificate reloader of %s",
					      h->bind_address);
		h->reloader_running = true;
		return 0;
	}
	g.cert = TAKE_PTR(h->mem_cert);
	g.key = TAKE_PTR(h->mem_key);
	r = start_daemon(h, &g, MHD_INVALID_SOCKET, err);
	if (r < 0) {
		generation_stop(&g);
		return r;
	}
	pthread_mutex_lock(&h->lock);
	h->cur = g;
	pthread_mutex_unlock(&h->lock);
	return 0;
}

uint16_t kmm_httpd_port(const struct kmm_httpd *h)
{
	uint16_t port;

	if (!h)
		return 0;
	/* The reloader swaps generations; the lock is not part of h's value. */
	pthread_mutex_lock((pthread_mutex_t *)&h->lock);
	port = h->cur.daemon ? h->port : 0;
	pthread_mutex_unlock((pthread_mutex_t *)&h->lock);
	return port;
}

bool kmm_httpd_tls(const struct kmm_httpd *h)
{
	return h && h->tls;
}

unsigned kmm_httpd_cert_loads(struct kmm_httpd *h)
{
	unsigned n;

	pthread_mutex_lock(&h->lock);
	n = h->loads;
	pthread_mutex_unlock(&h->lock);
	return n;
}

void kmm_httpd_free(struct kmm_httpd *h)
{
	if (!h)
		return;
	if (h->reloader_running) {
		pthread_mutex_lock(&h->lock);
		h->stopping = true;
		pthread_cond_broadcast(&h->cond);
		pthread_mutex_unlock(&h->lock);
		pthread_join(h->reloader, NULL);
	}
	generation_stop(&h->retiring);
	generation_stop(&h->cur);
	if (h->authorize_free)
		h->authorize_free(h->authorize_userdata);
	for (size_t i = 0; i < h->n_routes; i++)
		free(h->routes[i].path);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	free(h->mem_cert);
	free(h->mem_key);
	free(h->cert_file);
	free(h->key_file);
	free(h->bind_address);
	free(h);
}
