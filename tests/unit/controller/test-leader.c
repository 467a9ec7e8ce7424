/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The leader's renew deadline is a bound: against a fake apiserver (plain
 * HTTP on loopback) that lets a candidate create the Lease and then answers
 * nothing more while keeping every connection open, the leader must call
 * on_stopped_leading within renew_deadline of taking the lease, and stop
 * must not wait for the client's 60 s request timeout and its retries.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kmm/kube.h"
#include "kmm/kubeconfig.h"
#include "kmm/controller-leader.h"
#include "kmm/shared-log.h"

#define LEASE_MS 3000
#define RENEW_MS 1500
#define RETRY_MS 300
#define MAX_CONNS 64

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The fake apiserver: answers a Lease GET with 404 and its POST with 201, then hangs. */
struct fake {
	int listener;
	int port;
	bool answer_post; /* false: the create hangs too */
	pthread_t thread;
	pthread_mutex_t lock;
	int conns[MAX_CONNS];
	pthread_t conn_threads[MAX_CONNS];
	int n_conns;
	atomic_bool created, quit;
	atomic_int requests;
};

static void reply(int fd, const char *status, const char *body)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf),
			 "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: "
			 "%zu\r\n\r\n%s",
			 status, strlen(body), body);

	(void)!write(fd, buf, (size_t)n);
}

struct conn {
	struct fake *f;
	int fd;
};

static void *conn_thread(void *arg)
{
	struct conn *cn = arg;
	struct fake *f = cn->f;
	int fd = cn->fd;
	char buf[8192];
	size_t have = 0;

	free(cn);
	for (;;) {
		ssize_t r = read(fd, buf + have, sizeof(buf) - 1 - have);
		char *end;

		if (r <= 0)
			return NULL;
		have += (size_t)r;
		buf[have] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (!end)
			continue;
		/* One request per turn: the client sends the next only after an answer. */
		atomic_fetch_add(&f->requests, 1);
		if (strstr(buf, "watch=")) {
			/*
			 * The Lease watch is refused (the follower then polls):
			 * over HTTP/1.1 an open watch would hold the
			 * connection and curl delays other transfers waiting
			 * to multiplex on it (CURLOPT_PIPEWAIT).
			 */
			reply(fd, "403 Forbidden",
			      "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
			      "\"reason\":\"Forbidden\",\"code\":403}");
			have = 0;
			continue;
		}
		if (atomic_load(&f->created)) {
			have = 0; /* hang: read on, answer nothing */
			continue;
		}
		if (strncmp(buf, "GET ", 4) == 0) {
			reply(fd, "404 Not Found",
			      "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
			      "\"reason\":\"NotFound\",\"code\":404}");
		} else if (strncmp(buf, "POST ", 5) == 0) {
			if (!f->answer_post) {
				have = 0;
				continue;
			}
			atomic_store(&f->created, true);
			reply(fd, "201 Created", "{\"kind\":\"Lease\"}");
		}
		have = 0; /* the bodies are small: the rest of the buffer is the body */
	}
}

static void *accept_thread(void *arg)
{
	struct fake *f = arg;

	while (!atomic_load(&f->quit)) {
		int fd = accept(f->listener, NULL, NULL);
		struct conn *cn;

		if (fd < 0)
			continue;
		cn = malloc(sizeof(*cn));
		assert_non_null(cn);
		*cn = (struct conn){ f, fd };
		pthread_mutex_lock(&f->lock);
		if (f->n_conns == MAX_CONNS ||
		    pthread_create(&f->conn_threads[f->n_conns], NULL, conn_thread, cn) != 0) {
			pthread_mutex_unlock(&f->lock);
			free(cn);
			close(fd);
			continue;
		}
		f->conns[f->n_conns++] = fd;
		pthread_mutex_unlock(&f->lock);
	}
	return NULL;
}

static void fake_start(struct fake *f, bool answer_post)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);

	memset(f, 0, sizeof(*f));
	f->answer_post = answer_post;
	pthread_mutex_init(&f->lock, NULL);
	f->listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->listener >= 0);
	assert_int_equal(bind(f->listener, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f->listener, 64), 0);
	assert_int_equal(getsockname(f->listener, (struct sockaddr *)&a, &len), 0);
	f->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&f->thread, NULL, accept_thread, f), 0);
}

/* Shutting the connections down ends their threads; the listener's, accept(). */
static void fake_stop(struct fake *f)
{
	atomic_store(&f->quit, true);
	shutdown(f->listener, SHUT_RDWR);
	pthread_join(f->thread, NULL);
	close(f->listener);
	for (int i = 0; i < f->n_conns; i++) {
		shutdown(f->conns[i], SHUT_RDWR);
		pthread_join(f->conn_threads[i], NULL);
		close(f->conns[i]);
	}
	pthread_mutex_destroy(&f->lock);
}

static struct kmm_kube_client *client_for(const struct fake *f)
{
	struct kmm_kube_config *cfg = NULL;
	struct kmm_kube_client *c = NULL;
	struct kmm_error *err = NULL;
	char text[512];

	snprintf(text, sizeof(text),
		 "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: "
		 "http://127.0.0.1:%d\nusers:\n- name: u\n  user: {}\ncontexts:\n- name: f\n  "
		 "context: {cluster: fake, user: u}\ncurrent-context: f\n",
		 f->port);
	assert_int_equal(
	    kmm_kube_config_from_text(text, strlen(text), "fake", NULL, NULL, &cfg, &err), 0);
	/* The client's defaults: 60 s per request, 5 retries. */
	assert_int_equal(kmm_kube_client_new(cfg, NULL, &c, &err), 0);
	kmm_kube_config_free(cfg);
	return c;
}

struct events {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int64_t started_ms, stopped_ms;
};

static void on_started(void *ud)
{
	struct events *e = ud;

	pthread_mutex_lock(&e->lock);
	e->started_ms = now_ms();
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
}

static void on_stopped(void *ud)
{
	struct events *e = ud;

	pthread_mutex_lock(&e->lock);
	if (!e->stopped_ms)
		e->stopped_ms = now_ms();
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
}

/* Waits up to ms for *field to be set; returns it (0: not set). */
static int64_t wait_for(struct events *e, int64_t *field, int64_t ms)
{
	int64_t until = now_ms() + ms, v;

	pthread_mutex_lock(&e->lock);
	while (!*field && now_ms() < until) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&e->cond, &e->lock, &ts);
	}
	v = *field;
	pthread_mutex_unlock(&e->lock);
	return v;
}

static struct kmm_leader *start(struct kmm_kube_client *c, struct events *e)
{
	struct kmm_leader *l = NULL;
	struct kmm_error *err = NULL;

	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	assert_int_equal(kmm_leader_start(c,
					  &(struct kmm_leader_options){
					      .namespace = "ns",
					      .name = "lease",
					      .identity = "me",
					      .lease_duration_ms = LEASE_MS,
					      .renew_deadline_ms = RENEW_MS,
					      .retry_period_ms = RETRY_MS,
					      .on_started_leading = on_started,
					      .on_stopped_leading = on_stopped,
					      .userdata = e,
					  },
					  &l, &err),
			 0);
	return l;
}

/* The server hangs right after the create: the first renewal never gets an answer. */
static void test_hung_renewal_stops_by_deadline(void **state)
{
	struct fake f;
	struct events e = { 0 };
	struct kmm_kube_client *c;
	struct kmm_leader *l;
	int64_t started, stopped, t0;

	fake_start(&f, true);
	c = client_for(&f);
	l = start(c, &e);
	started = wait_for(&e, &e.started_ms, 5000);
	assert_true(started > 0);
	stopped = wait_for(&e, &e.stopped_ms, 10000);
	print_message("# stopped leading %lld ms after it started (renew deadline %d)\n",
		      (long long)(stopped ? stopped - started : -1), RENEW_MS);
	assert_true(stopped > 0);
	/*
	 * The deadline runs from when the create was sent, a little before
	 * started; the slack is for thread wake-ups on a loaded machine (ASan,
	 * 2 cores) and stays far below the lease a standby waits out.
	 */
	assert_true(stopped - started <= RENEW_MS + 500);
	assert_true(stopped - started < LEASE_MS - 500);
	/* Back to candidate: its attempts end by their own timeouts, so stop is quick. */
	t0 = now_ms();
	kmm_leader_stop(l);
	print_message("# stop took %lld ms\n", (long long)(now_ms() - t0));
	/* kmm_leader_stop() may take up to two renew deadlines on a hung connection. */
	assert_true(now_ms() - t0 <= 2 * RENEW_MS + 500);
	assert_true(atomic_load(&f.requests) >= 3); /* GET, POST, a renewal's GET */
	fake_stop(&f);
	kmm_kube_client_free(c);
}

/* The create itself hangs: the candidate never leads, and its attempts stay bounded. */
static void test_hung_acquire_never_leads(void **state)
{
	struct fake f;
	struct events e = { 0 };
	struct kmm_kube_client *c;
	struct kmm_leader *l;
	int64_t t0;

	fake_start(&f, false);
	c = client_for(&f);
	l = start(c, &e);
	/* Long enough for the POST to time out and the next attempt's GET, even when loaded. */
	assert_int_equal(wait_for(&e, &e.started_ms, RENEW_MS + 2 * RETRY_MS + 2000), 0);
	assert_false(kmm_leader_is_leader(l));
	t0 = now_ms();
	kmm_leader_stop(l);
	print_message("# stop took %lld ms\n", (long long)(now_ms() - t0));
	assert_true(now_ms() - t0 <= 2 * RENEW_MS + 500);
	/* GET 404, a POST that hung and timed out, and the next attempt's GET. */
	assert_true(atomic_load(&f.requests) >= 3);
	fake_stop(&f);
	kmm_kube_client_free(c);
}

int main(void)
{
	if (getenv("TEST_LEADER_DEBUG"))
		kmm_log_set_level(KMM_LOG_DEBUG);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hung_renewal_stops_by_deadline),
		cmocka_unit_test(test_hung_acquire_never_leads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
