// SPDX-License-Identifier: Apache-2.0
// The sandbox ("pause") process of the real-node suite's pods (tests/node):
// it holds the pod's namespaces open, reaps the zombies the pod leaves to it
// as PID 1, and exits when the runtime stops the sandbox. Linked statically
// so that its image is this one file, FROM scratch.
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig)
{
	// The runtime's SIGTERM/SIGINT ends the sandbox; 128+N as a shell would say.
	_exit(128 + sig);
}

static void reap(int sig)
{
	(void)sig;
	int saved = errno;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
	errno = saved;
}

int main(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		return 2; // no options: a stray argument is a mistake of the caller
	}
	struct sigaction on_stop = { .sa_handler = stop };
	struct sigaction on_child = { .sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART };
	if (sigaction(SIGINT, &on_stop, NULL) < 0 || sigaction(SIGTERM, &on_stop, NULL) < 0 ||
	    sigaction(SIGCHLD, &on_child, NULL) < 0) {
		return 1;
	}
	for (;;) {
		pause();
	}
}
