/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "kmm/httpd.h"

#define MAX_ROUTES 16
#define RESPONSE_MAX (32 * 1024 * 1024)

struct route {
	char *path;
	kmm_http_handler_fn fn;
	void *userdata;
};

struct kmm_httpd {
	char *bind_address;
	char host[INET6_ADDRSTRLEN];
	uint16_t port;
	bool disabled;
	struct route routes[MAX_ROUTES];
	size_t n_routes;
	struct MHD_Daemon *daemon;
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
			strcpy(host, "127.0.0.1");
		else if (inet_pton(AF_INET, host, &a4) != 1 && inet_pton(AF_INET6, host, &a6) != 1)
			return kmm_error_make(
			    err, EINVAL, "bind address '%s': host must be an IP address", addr);
	}
	*ret_port = (uint16_t)port;
	*ret_disabled = false;
	return 0;
}

int kmm_httpd_new(const struct kmm_httpd_options *opts, struct kmm_httpd **ret,
		  struct kmm_error **err)
{
	struct kmm_httpd *h = calloc(1, sizeof(*h));
	int r;

	if (!h)
		return kmm_error_make_errno(err, ENOMEM, "create HTTP server");
	h->bind_address = strdup(opts->bind_address ? opts->bind_address : "");
	if (!h->bind_address) {
		free(h);
		return kmm_error_make_errno(err, ENOMEM, "create HTTP server");
	}
	r = kmm_parse_bind_address(opts->bind_address, h->host, sizeof(h->host), &h->port,
				   &h->disabled, err);
	if (r < 0) {
		kmm_httpd_free(h);
		return r;
	}
	*ret = h;
	return 0;
}

int kmm_httpd_route(struct kmm_httpd *h, const char *path, kmm_http_handler_fn fn, void *userdata)
{
	if (h->n_routes == MAX_ROUTES)
		return -ENOSPC;
	h->routes[h->n_routes].path = strdup(path);
	if (!h->routes[h->n_routes].path)
		return -ENOMEM;
	h->routes[h->n_routes].fn = fn;
	h->routes[h->n_routes].userdata = userdata;
	h->n_routes++;
	return 0;
}

static enum MHD_Result respond(struct MHD_Connection *conn, int status, const char *type,
			       const char *body, size_t len)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **con_cls)
{
	struct kmm_httpd *h = cls;
	struct kmm_http_response resp;
	enum MHD_Result ret;

	(void)version;
	(void)upload_data;
	(void)con_cls;
	if (*upload_data_size > 0) {
		/* Request bodies are not used by any route: drop them. */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return respond(conn, 405, "text/plain; charset=utf-8", "method not allowed\n", 19);
	for (size_t i = 0; i < h->n_routes; i++) {
		if (strcmp(url, h->routes[i].path) != 0)
			continue;
		resp = (struct kmm_http_response){ .status = 200,
						   .content_type = "text/plain; charset=utf-8" };
		kmm_buf_init(&resp.body, RESPONSE_MAX);
		h->routes[i].fn(&resp, h->routes[i].userdata);
		ret = respond(conn, resp.status, resp.content_type, kmm_buf_str(&resp.body),
			      resp.body.len);
		kmm_buf_free(&resp.body);
		return ret;
	}
	return respond(conn, 404, "text/plain; charset=utf-8", "not found\n", 10);
}

int kmm_httpd_start(struct kmm_httpd *h, struct kmm_error **err)
{
	struct sockaddr_storage ss = { 0 };
	const union MHD_DaemonInfo *info;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
	socklen_t len;

	if (h->disabled)
		return 0;
	if (strchr(h->host, ':')) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;

		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(h->port);
		inet_pton(AF_INET6, h->host, &a6->sin6_addr);
		flags |= MHD_USE_IPv6;
		len = sizeof(*a6);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;

		a4->sin_family = AF_INET;
		a4->sin_port = htons(h->port);
		a4->sin_addr.s_addr = htonl(INADDR_ANY);
		if (h->host[0])
			inet_pton(AF_INET, h->host, &a4->sin_addr);
		len = sizeof(*a4);
	}
	(void)len;
	errno = 0;
	h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR, &ss,
				     MHD_OPTION_CONNECTION_LIMIT, 64U,
				     MHD_OPTION_CONNECTION_TIMEOUT, 30U, MHD_OPTION_END);
	if (!h->daemon)
		return kmm_error_make_errno(err, errno ? errno : EADDRNOTAVAIL, "listen on %s",
					    h->bind_address);
	info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
	if (info)
		h->port = info->port;
	return 0;
}

uint16_t kmm_httpd_port(const struct kmm_httpd *h)
{
	return h && h->daemon ? h->port : 0;
}

void kmm_httpd_free(struct kmm_httpd *h)
{
	if (!h)
		return;
	if (h->daemon)
		MHD_stop_daemon(h->daemon);
	for (size_t i = 0; i < h->n_routes; i++)
		free(h->routes[i].path);
	free(h->bind_address);
	free(h);
}
