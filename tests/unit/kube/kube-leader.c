/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kube-leader NAMESPACE LEASE IDENTITY [LEASE_MS RENEW_MS RETRY_MS]: one
 * leader-election candidate for tests/integration/kube/leader.t. Prints
 * "leading IDENTITY <unix ms>" and "stopped IDENTITY <unix ms>" lines; SIGTERM
 * stops it cleanly (releasing the lease).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kmm/kube.h"
#include "kmm/leader.h"

static volatile sig_atomic_t stop;

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
}

static void stopped(void *ud)
{
	printf("stopped %s %lld\n", (const char *)ud, unix_ms());
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct kmm_kube_config *cfg = NULL;
	struct kmm_kube_client *c = NULL;
	struct kmm_leader *l = NULL;
	struct kmm_error *err = NULL;
	struct sigaction sa = { .sa_handler = on_term };

	if (argc < 4) {
		fprintf(
		    stderr,
		    "usage: kube-leader NAMESPACE LEASE IDENTITY [LEASE_MS RENEW_MS RETRY_MS]\n");
		return 2;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (kmm_kube_config_load_default(NULL, NULL, &cfg, &err) < 0 ||
	    kmm_kube_client_new(cfg, NULL, &c, &err) < 0 ||
	    kmm_leader_start(c,
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
	kmm_kube_client_free(c);
	kmm_kube_config_free(cfg);
	kmm_error_free(err);
	return 0;
}
