/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Running helper programs: the modprobe binary, for rawArgs (passed verbatim,
 * as upstream) and for modprobe flags that have no libkmod equivalent; and
 * kmm-worker-pull, which keeps libcurl and its dependencies out of the
 * worker's own start-up (they cost more than the load itself under TCG).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-log.h"
#include "kmm/shared-strv.h"
#include "src/worker/worker.h"

/* Logs each complete line of `pending` and keeps the last one for errors. */
static void flush_lines(struct kmm_buf *pending, const char *tag, char *last, size_t last_size,
			bool all)
{
	for (;;) {
		const char *s = kmm_buf_str(pending);
		size_t n = strcspn(s, "\n");

		if (s[n] != '\n' && !(all && n > 0))
			break;
		if (n > 0) {
			snprintf(last, last_size, "%.*s", (int)n, s);
			kmm_log(KMM_LOG_INFO, tag, "output", last, NULL);
		}
		kmm_buf_consume(pending, s[n] == '\n' ? n + 1 : n);
		if (pending->len == 0)
			break;
	}
}

int kmm_worker_run_modprobe(char *const *args, struct kmm_error **err)
{
	const char *prog = secure_getenv("KMM_MODPROBE");

	if (!prog || !*prog)
		prog = "modprobe";
	return kmm_worker_run(prog, "modprobe", args, err);
}

int kmm_worker_run(const char *prog, const char *tag, char *const *args, struct kmm_error **err)
{
	_cleanup_strv_free_ char **argv = NULL;
	_cleanup_free_ char *cmdline = NULL;
	_cleanup_buf_ struct kmm_buf pending;
	char last[512] = "";
	int pipefd[2], status = 0;
	bool signalled = false;
	const char *what;
	pid_t pid;

	if (kmm_strv_push(&argv, prog) < 0 || (args[0] && kmm_strv_extend(&argv, args + 1) < 0))
		return kmm_error_make(err, ENOMEM, "out of memory");
	cmdline = kmm_strv_join(argv, " ");
	kmm_log(KMM_LOG_INFO, "running", "command", cmdline, NULL);
	kmm_buf_init(&pending, 1024 * 1024);

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return kmm_error_make_errno(err, errno, "pipe");
	pid = fork();
	if (pid < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		return kmm_error_make_errno(err, errno, "fork");
	}
	if (pid == 0) {
		dup2(pipefd[1], STDOUT_FILENO);
		dup2(pipefd[1], STDERR_FILENO);
		execvp(prog, argv);
		dprintf(STDERR_FILENO, "cannot run %s: %s\n", prog, strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);
	for (;;) {
		struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
		char buf[4096];
		ssize_t n;

		if (kmm_worker_stop_signal && !signalled) {
			kill(pid, SIGTERM);
			signalled = true;
		}
		if (poll(&p, 1, 200) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (!(p.revents & (POLLIN | POLLHUP)))
			continue;
		n = read(pipefd[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (kmm_buf_append(&pending, buf, (size_t)n) < 0)
			kmm_buf_reset(&pending);
		flush_lines(&pending, tag, last, sizeof(last), false);
	}
	flush_lines(&pending, tag, last, sizeof(last), true);
	close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
		if (kmm_worker_stop_signal && !signalled) {
			kill(pid, SIGTERM);
			signalled = true;
		}
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	/* modprobe's command line helps whoever reads the error; the helper's does not. */
	what = strcmp(tag, "modprobe") == 0 ? cmdline : tag;
	if (WIFSIGNALED(status))
		return kmm_error_make(err, EINTR, "%s: killed by %s", what,
				      strsignal(WTERMSIG(status)));
	if (*last && strcmp(tag, "modprobe") != 0)
		return kmm_error_make(err, EIO, "%s", last);
	return kmm_error_make(err, EIO, "%s: exit status %d%s%s", what, WEXITSTATUS(status),
			      *last ? ": " : "", last);
}
