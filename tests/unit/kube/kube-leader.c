/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kube-leader NAMESPACE LEASE IDENTITY [LEASE_MS RENEW_MS RETRY_MS [write]]:
 * one leader-election candidate for tests/integration/kube/leader*.t. Prints
 * "leading IDENTITY <unix ms>" and "stopped IDENTITY <unix ms>" lines; SIGTERM
 * stops it cleanly (releasing the lease).
 *
 * With "write" it also stands in for the operator's reconcilers: while it
 * leads, a second thread creates a ConfigMap w-IDENTITY-N (label
 * kmm-test-writer=IDENTITY, data.issued = <unix ms> when it was sent) every
 * 200 ms through the same client, one try each, so the apiserver's side
 * shows when a deposed leader last wrote. Each write's time is taken before
 * it checks that it still leads, and on_stopped_leading takes its time after
 * clearing that flag, so a write's issued is never after the stopped line.
 * KUBE_LEADER_DEBUG set in the environment logs the library's debug lines
 * (failed attempts, timeouts) to stderr.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kmm/kube.h"
#include "kmm/controller-leader.h"
#include "kmm/shared-log.h"

static volatile sig_atomic_t stop;
static atomic_bool leading, quit;
static struct kmm_kube_client *client;
static const char *ns, *identity;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static long long unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void started(void *ud)
{
	printf("leading %s %lld\n", (const char *)ud, unix_ms());
	fflush(stdout);
	atomic_store(&leading, true);
}

static void stopped(void *ud)
{
	atomic_store(&leading, false);
	printf("stopped %s %lld\n", (const char *)ud, unix_ms());
	fflush(stdout);
}

static void write_one(unsigned n, long long issued)
{
	struct kmm_kube_target t = { .res = &kmm_kube_configmaps, .namespace = ns };
	struct kmm_kube_prepared p = { 0 };
	struct kmm_error *err = NULL;
	char name[256], ms[32];
	json_t *obj;
	int r;

	snprintf(name, sizeof(name), "w-%s-%u", identity, n);
	snprintf(ms, sizeof(ms), "%lld", issued);
	obj = json_pack("{s:s,s:s,s:{s:s,s:{s:s}},s:{s:s}}", "apiVersion", "v1", "kind",
			"ConfigMap", "metadata", "name", name, "labels", "kmm-test-writer",
			identity, "data", "issued", ms);
	r = obj ? kmm_kube_prepare_create(&t, obj, NULL, &p, &err) : -1;
	if (r >= 0) {
		/* One try: a retry would be a write sent later than issued says. */
		p.req.no_retry = true;
		r = kmm_kube_request_json(client, &p.req, NULL, &err);
	}
	if (r >= 0)
		printf("wrote %s %u %lld\n", identity, n, issued);
	else
		printf("write-failed %s %u %lld %s\n", identity, n, issued,
		       err ? kmm_error_message(err) : "out of memory");
	fflush(stdout);
	kmm_kube_prepared_clear(&p);
	kmm_error_free(err);
	json_decref(obj);
}

static void *writer(void *arg)
{
	(void)arg;
	for (unsigned n = 0; !atomic_load(&quit);) {
		long long issued = unix_ms();

		if (atomic_load(&leading))
			write_one(n++, issued);
		usleep(atomic_load(&leading) ? 200000 : 50000);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct kmm_kube_config *cfg = NULL;
	struct kmm_leader *l = NULL;
	struct kmm_error *err = NULL;
	struct sigaction sa = { .sa_handler = on_term };
	bool write = argc > 7 && strcmp(argv[7], "write") == 0;
	pthread_t wt;

	if (argc < 4) {
		fprintf(stderr, "usage: kube-leader NAMESPACE LEASE IDENTITY [LEASE_MS RENEW_MS "
				"RETRY_MS [write]]\n");
		return 2;
	}
	ns = argv[1];
	identity = argv[3];
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (getenv("KUBE_LEADER_DEBUG"))
		kmm_log_set_level(KMM_LOG_DEBUG);
	if (kmm_kube_config_load_default(NULL, NULL, &cfg, &err) < 0 ||
	    kmm_kube_client_new(cfg, NULL, &client, &err) < 0) {
		fprintf(stderr, "kube-leader: %s\n", kmm_error_message(err));
		return 1;
	}
	if (write && pthread_create(&wt, NULL, writer, NULL) != 0) {
		fprintf(stderr, "kube-leader: cannot start the writer\n");
		return 1;
	}
	if (kmm_leader_start(client,
			     &(struct kmm_leader_options){
				 .namespace = argv[1],
				 .name = argv[2],
				 .identity = argv[3],
				 .lease_duration_ms = argc > 4 ? strtoll(argv[4], NULL, 10) : 0,
				 .renew_deadline_ms = argc > 5 ? strtoll(argv[5], NULL, 10) : 0,
				 .retry_period_ms = argc > 6 ? strtoll(argv[6], NULL, 10) : 0,
				 .on_started_leading = started,
				 .on_stopped_leading = stopped,
				 .userdata = argv[3],
			     },
			     &l, &err) < 0) {
		fprintf(stderr, "kube-leader: %s\n", kmm_error_message(err));
		return 1;
	}
	while (!stop)
		pause();
	kmm_leader_stop(l);
	if (write) {
		atomic_store(&quit, true);
		pthread_join(wt, NULL);
	}
	kmm_kube_client_free(client);
	kmm_kube_config_free(cfg);
	kmm_error_free(err);
	return 0;
}
