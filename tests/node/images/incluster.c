// SPDX-License-Identifier: Apache-2.0
// One request to the apiserver as a pod makes it with its in-cluster
// credentials, for the real-node suite (tests/node/node.t): TLS to
// HOST:PORT (the `kubernetes` Service the kubelet names in the pod's
// environment), the server verified against CA_FILE for the IP address
// HOST, the token of TOKEN_FILE as a bearer token. Prints the response
// body; exits 0 on a 2xx status. Linked statically with OpenSSL so that it
// runs in a FROM-scratch image.
//
// usage: incluster HOST PORT METHOD PATH CA_FILE TOKEN_FILE [BODY]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *what)
{
	fprintf(stderr, "incluster: %s\n", what);
	ERR_print_errors_fp(stderr);
	return 2;
}

static int connect_to(const char *host, const char *port)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	char *end = NULL;
	unsigned long number = strtoul(port, &end, 10);
	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1 || *end != '\0' || number == 0 ||
	    number > 65535) {
		return -1;
	}
	addr.sin_port = htons((unsigned short)number);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

// The token file without its trailing newline, at most size-1 bytes.
static int read_token(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		return -1;
	}
	size_t n = fread(buf, 1, size - 1, f);
	fclose(f);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
		n--;
	}
	buf[n] = '\0';
	return n > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc != 7 && argc != 8) {
		fprintf(stderr,
			"usage: incluster HOST PORT METHOD PATH CA_FILE TOKEN_FILE [BODY]\n");
		return 2;
	}
	const char *host = argv[1], *method = argv[3], *path = argv[4],
		   *body = argc == 8 ? argv[7] : "";
	static char token[16384];
	if (read_token(argv[6], token, sizeof(token)) < 0) {
		return fail("cannot read the token");
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || SSL_CTX_load_verify_locations(ctx, argv[5], NULL) != 1) {
		return fail("cannot load the CA");
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	int fd = connect_to(host, argv[2]);
	if (fd < 0) {
		return fail("cannot connect (HOST must be an IPv4 address)");
	}
	SSL *ssl = SSL_new(ctx);
	// The certificate must name the Service's IP address itself.
	if (!ssl || X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1 ||
	    SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1) {
		return fail("TLS handshake failed");
	}
	static char request[32768];
	int len = snprintf(
	    request, sizeof(request),
	    "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
	    method, path, host, token, strlen(body), body);
	if (len < 0 || (size_t)len >= sizeof(request) || SSL_write(ssl, request, len) != len) {
		return fail("cannot send the request");
	}
	static char response[1 << 20];
	size_t have = 0;
	int n;
	while (have < sizeof(response) - 1 &&
	       (n = SSL_read(ssl, response + have, (int)(sizeof(response) - 1 - have))) > 0) {
		have += (size_t)n;
	}
	response[have] = '\0';
	const char *payload = strstr(response, "\r\n\r\n");
	fputs(payload ? payload + 4 : response, stdout);
	fputc('\n', stdout);
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(ctx);
	return strncmp(response, "HTTP/1.1 2", 10) == 0 ? 0 : 1;
}
