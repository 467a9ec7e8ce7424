/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Declarative reconciler cases (the .yaml files of tests/data/operator, format
 * in tests/data/operator/README.md): each case starts apiserver-stub.py with
 * its objects, builds the operator's engine against it, lets the caches list,
 * runs the case's reconciles one by one on this thread (no workers), and
 * compares what each returned and every write the stub received with what
 * the case expects. One TAP line per case.
 *
 * test-reconcile DATA_DIR APISERVER_STUB [CASE...]   (CASE: file name filter)
 *
 * With KMM_RECONCILE_RECORD=DIR, the writes each case received are also saved
 * as DIR/<case>.json: a start for a new case's expectations, to be cut down
 * to what matters and checked against the reconciler, never pasted blindly.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-json.h"
#include "kmm/kube.h"
#include "kmm/kubeconfig.h"
#include "kmm/server-metrics.h"
#include "kmm/operator-config.h"
#include "kmm/operator.h"
#include "kmm/shared-strv.h"
#include "kmm/shared-yaml.h"

#define CASE_MAX_BYTES (1024 * 1024)
#define SYNC_TIMEOUT_MS 10000
#define DIAG_MAX (64 * 1024)
#define SHOWN_BODY_MAX 600

static const struct {
	const char *name;
	int code;
} errnames[] = {
	{ "ENOENT", ENOENT }, { "EEXIST", EEXIST },	    { "ESTALE", ESTALE },
	{ "EACCES", EACCES }, { "EAGAIN", EAGAIN },	    { "EIO", EIO },
	{ "EINVAL", EINVAL }, { "ENOMEM", ENOMEM },	    { "ETIMEDOUT", ETIMEDOUT },
	{ "EPROTO", EPROTO }, { "EBADMSG", EBADMSG },	    { "ECONNREFUSED", ECONNREFUSED },
	{ "E2BIG", E2BIG },   { "EOPNOTSUPP", EOPNOTSUPP },
};

static const char *const reconcilers[KMM_OP_RECONCILER_COUNT] = {
	[KMM_OP_MODULE] = "module",
	[KMM_OP_NMC] = "nmc",
	[KMM_OP_MIC] = "mic",
	[KMM_OP_MBSC] = "mbsc",
	[KMM_OP_DEVICE_PLUGIN] = "deviceplugin",
	[KMM_OP_PREFLIGHT] = "preflight",
	[KMM_OP_VERSION] = "version",
	[KMM_OP_DRA] = "dra",
};

/* What the operator reads from its environment, unless a case says otherwise. */
static const char *const default_env[][2] = {
	{ "OPERATOR_NAMESPACE", "kmm-system" },
	{ "RELATED_IMAGE_WORKER", "registry.example/kmm-worker:test" },
	{ "RELATED_IMAGE_BUILD", "registry.example/kmm-build:test" },
	{ "RELATED_IMAGE_SIGN", "registry.example/kmm-sign:test" },
};

/* A case's failure, as TAP diagnostics (one "# " line per line). */
static struct kmm_buf diag;

static int fail(const char *fmt, ...) _printf_(1, 2);
static int fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kmm_buf_vprintf(&diag, fmt, ap);
	va_end(ap);
	kmm_buf_append_str(&diag, "\n");
	return -1;
}

static const char *jstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* Compact JSON, cut after SHOWN_BODY_MAX bytes; for diagnostics. */
static void show_json(const json_t *j)
{
	_cleanup_free_ char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	size_t n = s ? strlen(s) : 0;

	if (!s) {
		kmm_buf_append_str(&diag, "(none)");
		return;
	}
	kmm_buf_append(&diag, s, n > SHOWN_BODY_MAX ? SHOWN_BODY_MAX : n);
	if (n > SHOWN_BODY_MAX)
		kmm_buf_printf(&diag, "... (%zu bytes)", n);
}

/* ---- the stub apiserver ---- */

/* One line from fd (without its newline): pipes may split or join writes. */
static int read_line(int fd, char *buf, size_t size)
{
	size_t n = 0;

	while (n + 1 < size) {
		ssize_t r = read(fd, buf + n, 1);

		if (r <= 0)
			return -EIO;
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = '\0';
	return 0;
}

struct stub {
	pid_t pid;
	int in_fd;
	int out_fd; /* kept open until stop: closing it early can EPIPE the stub */
	int port;
};

/* One stub for the whole run: starting python3 costs more than a case. */
static int stub_start(const char *script, struct stub *s)
{
	char *argv[] = { (char *)"python3", (char *)script, NULL };
	posix_spawn_file_actions_t fa;
	int in[2], out[2], r;
	char buf[32] = { 0 };

	if (pipe2(in, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(out, O_CLOEXEC) < 0) {
		r = -errno;
		close(in[0]);
		close(in[1]);
		return r;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	r = posix_spawnp(&s->pid, "python3", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	s->in_fd = in[1];
	s->out_fd = out[0];
	if (r != 0) {
		close(s->in_fd);
		close(s->out_fd);
		return -r;
	}
	s->port = read_line(s->out_fd, buf, sizeof(buf)) == 0 ? (int)strtol(buf, NULL, 10) : 0;
	return s->port > 0 ? 0 : -EIO;
}

/* Makes the case the stub's cluster, its log the one to append to. */
static int stub_load(struct stub *s, const char *case_json, const char *log)
{
	char line[600], ack[8] = { 0 };
	int n = snprintf(line, sizeof(line), "%s %s\n", case_json, log);

	if (n < 0 || (size_t)n >= sizeof(line) || write(s->in_fd, line, (size_t)n) != n ||
	    read_line(s->out_fd, ack, sizeof(ack)) < 0 || strcmp(ack, "ok") != 0)
		return -EIO;
	return 0;
}

static void stub_stop(struct stub *s)
{
	int st;

	close(s->in_fd);
	waitpid(s->pid, &st, 0);
	close(s->out_fd);
}

/* ---- the operator's configuration ---- */

static const json_t
    *case_env; /* for case_getenv(): kmm_operator_config_from_env takes no userdata */

static char *case_getenv(const char *name)
{
	const json_t *v = json_object_get(case_env, name);

	if (v)
		return (char *)json_string_value(v); /* null: unset */
	for (size_t i = 0; i < KMM_ARRAY_SIZE(default_env); i++)
		if (strcmp(default_env[i][0], name) == 0)
			return (char *)default_env[i][1];
	return NULL;
}

/* The configuration the engine takes: defaults, the case's env and controller_config. */
static int make_config(const json_t *tc, struct kmm_operator_config **ret)
{
	struct kmm_operator_config *cfg = calloc(1, sizeof(*cfg));
	const char *yaml = jstr(tc, "controller_config");
	struct kmm_error *e = NULL;
	int r;

	if (!cfg || kmm_operator_config_init(cfg) < 0) {
		free(cfg);
		return fail("out of memory");
	}
	case_env = json_object_get(tc, "env");
	r = kmm_operator_config_from_env(cfg, case_getenv, &e);
	if (r >= 0 && yaml)
		r = kmm_operator_config_parse(cfg, yaml, strlen(yaml), "controller_config", &e);
	case_env = NULL;
	if (r < 0) {
		fail("configuration: %s", kmm_error_message(e));
		kmm_error_free(e);
		kmm_operator_config_free(cfg);
		free(cfg);
		return -1;
	}
	*ret = cfg;
	return 0;
}

/* ---- reconciles ---- */

static int errno_of(const char *name)
{
	for (size_t i = 0; i < KMM_ARRAY_SIZE(errnames); i++)
		if (strcmp(errnames[i].name, name) == 0)
			return errnames[i].code;
	return -1;
}

static const char *errno_name(int code)
{
	for (size_t i = 0; i < KMM_ARRAY_SIZE(errnames); i++)
		if (errnames[i].code == code)
			return errnames[i].name;
	return "E?";
}

static void show_result(int64_t r, const struct kmm_error *e)
{
	if (r == 0)
		kmm_buf_append_str(&diag, "ok");
	else if (r > 0)
		kmm_buf_printf(&diag, "requeue after %lld ms", (long long)r);
	else
		kmm_buf_printf(&diag, "error %s (%s)", errno_name(e ? e->code : (int)-r),
			       kmm_error_message(e));
}

/*
 * expect: "ok" (0), "requeue" (> 0, optionally requeue_ms exact or
 * requeue_min_ms/requeue_max_ms), or {error: ERRNO, message: substring,
 * http_status: N}.
 */
static bool result_matches(const json_t *exp, int64_t r, const struct kmm_error *e)
{
	const char *word = json_string_value(exp);
	const json_t *v;

	if (!exp || (word && strcmp(word, "ok") == 0))
		return r == 0;
	if (word && strcmp(word, "requeue") == 0)
		return r > 0;
	if (word)
		return false;
	if ((v = json_object_get(exp, "requeue_ms")))
		return r == json_integer_value(v);
	if (json_object_get(exp, "requeue_min_ms") || json_object_get(exp, "requeue_max_ms")) {
		v = json_object_get(exp, "requeue_max_ms");
		return r >= json_integer_value(json_object_get(exp, "requeue_min_ms")) && r > 0 &&
		       (!v || r <= json_integer_value(v));
	}
	if (!json_object_get(exp, "error"))
		return false;
	if (r >= 0 || !e)
		return false;
	if (e->code != errno_of(jstr(exp, "error")))
		return false;
	if (jstr(exp, "message") && !strstr(kmm_error_message(e), jstr(exp, "message")))
		return false;
	if ((v = json_object_get(exp, "http_status")) && e->http_status != json_integer_value(v))
		return false;
	return true;
}

static int reconciler_id(const char *name)
{
	for (int i = 0; i < KMM_OP_RECONCILER_COUNT; i++)
		if (name && strcmp(reconcilers[i], name) == 0)
			return i;
	return -1;
}

static int run_steps(struct kmm_op_engine *eng, const json_t *steps)
{
	const json_t *step;
	size_t i;

	json_array_foreach (steps, i, step) {
		int id = reconciler_id(jstr(step, "reconcile"));
		const char *key = jstr(step, "key");
		const json_t *exp = json_object_get(step, "expect");
		_cleanup_(kmm_error_freep) struct kmm_error *e = NULL;
		int64_t r;

		if (id < 0 || !key)
			return fail("step %zu: needs reconcile (module, nmc, mic, mbsc) and key",
				    i);
		if (json_integer_value(json_object_get(step, "sleep_ms")) > 0) {
			int64_t ms = json_integer_value(json_object_get(step, "sleep_ms"));
			struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

			nanosleep(&ts, NULL);
		}
		r = kmm_op_engine_reconcile(eng, id, key, &e);
		if (!result_matches(exp, r, e)) {
			_cleanup_free_ char *want =
			    exp ? json_dumps(exp, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

			kmm_buf_printf(&diag, "step %zu (%s %s): expected %s, got ", i,
				       reconcilers[id], key, want ? want : "\"ok\"");
			show_result(r, e);
			return fail("%s", "");
		}
	}
	return 0;
}

/* ---- writes ---- */

static json_t *read_log(const char *path)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	json_t *all = json_array();
	char *line = NULL;
	size_t cap = 0;

	while (f && all && getline(&line, &cap, f) > 0) {
		json_t *j = json_loads(line, 0, NULL);

		if (j)
			json_array_append_new(all, j);
	}
	free(line);
	return all;
}

static bool matches_re(const char *re, const char *s)
{
	regex_t rx;
	bool m;

	if (regcomp(&rx, re, REG_EXTENDED | REG_NOSUB) != 0)
		return false;
	m = regexec(&rx, s ? s : "", 0, NULL, 0) == 0;
	regfree(&rx);
	return m;
}

static bool is_write(const char *method)
{
	static const char *const writes[] = { "POST", "PATCH", "PUT", "DELETE" };

	for (size_t i = 0; method && i < KMM_ARRAY_SIZE(writes); i++)
		if (strcmp(method, writes[i]) == 0)
			return true;
	return false;
}

/* The writes of the log, without those an "ignore" pattern {method, path} matches. */
static json_t *writes_of(const json_t *log, const json_t *ignore)
{
	json_t *out = json_array();
	const json_t *w, *ig;
	size_t i, k;

	json_array_foreach (log, i, w) {
		bool skip = !is_write(jstr(w, "method"));

		json_array_foreach (ignore, k, ig) {
			if ((!jstr(ig, "method") ||
			     strcmp(jstr(ig, "method"), jstr(w, "method")) == 0) &&
			    matches_re(jstr(ig, "path") ?: "", jstr(w, "path")))
				skip = true;
		}
		if (!skip)
			json_array_append(out, (json_t *)w);
	}
	return out;
}

/*
 * Is want a subset of got? Objects: every key of want matches (the string
 * "$absent" asks for the key to be absent); arrays: the same length, element
 * by element; scalars: equal. On a mismatch, where holds its JSON path.
 */
static bool subset(const json_t *want, const json_t *got, char *where, size_t size)
{
	size_t len = strlen(where);

	if (json_is_object(want)) {
		const char *k;
		json_t *v;

		if (!json_is_object(got))
			return false;
		json_object_foreach ((json_t *)want, k, v) {
			const json_t *g = json_object_get(got, k);
			bool absent =
			    json_is_string(v) && strcmp(json_string_value(v), "$absent") == 0;

			snprintf(where + len, size - len, ".%s", k);
			if (absent ? g != NULL : !g || !subset(v, g, where, size))
				return false;
		}
		where[len] = '\0';
		return true;
	}
	if (json_is_array(want)) {
		const json_t *v;
		size_t i;

		if (!json_is_array(got) || json_array_size(got) != json_array_size(want))
			return false;
		json_array_foreach (want, i, v) {
			snprintf(where + len, size - len, "[%zu]", i);
			if (!subset(v, json_array_get(got, i), where, size))
				return false;
		}
		where[len] = '\0';
		return true;
	}
	return json_equal(want, got);
}

/* Does the logged write w match the expected one? why says where it does not. */
static bool write_matches(const json_t *want, const json_t *w, char *why, size_t size)
{
	const char *k;
	json_t *v;

	why[0] = '\0';
	if (jstr(want, "method") && strcmp(jstr(want, "method"), jstr(w, "method")) != 0) {
		snprintf(why, size, "method");
		return false;
	}
	if (jstr(want, "path") && strcmp(jstr(want, "path"), jstr(w, "path")) != 0) {
		snprintf(why, size, "path");
		return false;
	}
	if (jstr(want, "path_re") && !matches_re(jstr(want, "path_re"), jstr(w, "path"))) {
		snprintf(why, size, "path");
		return false;
	}
	json_object_foreach (json_object_get(want, "headers"), k, v) {
		const char *g = jstr(json_object_get(w, "headers"), k);

		if (!g || !json_string_value(v) || strcmp(g, json_string_value(v)) != 0) {
			snprintf(why, size, "header %s", k);
			return false;
		}
	}
	if (json_object_get(want, "query") &&
	    !subset(json_object_get(want, "query"), json_object_get(w, "query"), why, size)) {
		memmove(why + 5, why, strnlen(why, size - 6) + 1);
		memcpy(why, "query", 5);
		return false;
	}
	if (json_object_get(want, "status") &&
	    !json_equal(json_object_get(want, "status"), json_object_get(w, "status"))) {
		snprintf(why, size, "answered status");
		return false;
	}
	if (json_object_get(want, "body")) {
		char where[512] = "";

		if (!subset(json_object_get(want, "body"), json_object_get(w, "body"), where,
			    sizeof(where))) {
			snprintf(why, size, "body at %s", where[0] ? where : "(top)");
			return false;
		}
	}
	return true;
}

static void show_write(const json_t *w, bool with_status)
{
	kmm_buf_printf(&diag, "%s %s", jstr(w, "method") ?: "*",
		       jstr(w, "path") ?: jstr(w, "path_re") ?: "*");
	if (with_status && json_object_get(w, "status"))
		kmm_buf_printf(&diag, " -> %lld",
			       (long long)json_integer_value(json_object_get(w, "status")));
	if (json_object_get(w, "body")) {
		kmm_buf_append_str(&diag, " ");
		show_json(json_object_get(w, "body"));
	}
	kmm_buf_append_str(&diag, "\n");
}

static void show_writes(const json_t *got)
{
	const json_t *w;
	size_t i;

	kmm_buf_printf(&diag, "the %zu write(s) received:\n", json_array_size(got));
	json_array_foreach (got, i, w) {
		kmm_buf_printf(&diag, "  %zu: ", i);
		show_write(w, true);
	}
}

/* Reports that expected write i (one of a group or not) found no match from got[at]. */
static int no_match(size_t i, bool group, const json_t *one, const json_t *got, size_t at)
{
	char why[600];

	/* The write it most likely meant: the first later one to the same method and path. */
	for (size_t g = at; g < json_array_size(got); g++) {
		const json_t *w = json_array_get(got, g);

		if (jstr(one, "method") && jstr(one, "path") &&
		    strcmp(jstr(one, "method"), jstr(w, "method")) == 0 &&
		    strcmp(jstr(one, "path"), jstr(w, "path")) == 0) {
			at = g;
			break;
		}
	}

	kmm_buf_printf(&diag, "expected write %zu%s: ", i, group ? " (unordered group)" : "");
	show_write(one, false);
	if (at < json_array_size(got)) {
		write_matches(one, json_array_get(got, at), why, sizeof(why));
		kmm_buf_printf(&diag, "got %zu: ", at);
		show_write(json_array_get(got, at), true);
		kmm_buf_printf(&diag, "first difference: %s\n", why);
	} else {
		kmm_buf_append_str(&diag, "got no more writes\n");
	}
	show_writes(got);
	return -1;
}

/*
 * The expected writes, in order; an element {unordered: [...]} matches its
 * writes in any order. Without extra_writes the writes received are exactly
 * those; with it, writes that match nothing expected are skipped.
 */
static int check_writes(const json_t *tc, const json_t *got)
{
	const json_t *expected = json_object_get(tc, "writes");
	bool extra = json_is_true(json_object_get(tc, "extra_writes"));
	size_t next = 0, n_got = json_array_size(got);
	_cleanup_free_ bool *taken = calloc(n_got + 1, sizeof(bool));
	const json_t *want;
	char why[600];
	size_t i;

	if (!taken)
		return fail("out of memory");
	json_array_foreach (expected, i, want) {
		const json_t *group = json_object_get(want, "unordered");
		size_t n = group ? json_array_size(group) : 1, end = next;

		for (size_t k = 0; k < n; k++) {
			const json_t *one = group ? json_array_get(group, k) : want;
			/* Without extras, the group is exactly the next n writes. */
			size_t limit = extra ? n_got : (next + n < n_got ? next + n : n_got);
			size_t g = next;

			while (g < limit && (taken[g] || !write_matches(one, json_array_get(got, g),
									why, sizeof(why))))
				g++;
			if (g >= limit)
				return no_match(i, group != NULL, one, got, next);
			taken[g] = true;
			if (g + 1 > end)
				end = g + 1;
		}
		next = extra ? end : next + n;
	}
	if (next < n_got && !extra) {
		kmm_buf_printf(&diag, "unexpected write %zu: ", next);
		show_write(json_array_get(got, next), true);
		show_writes(got);
		return -1;
	}
	return 0;
}

/* ---- one case ---- */

static int write_json(const char *path, const json_t *j)
{
	return json_dump_file(j, path, JSON_COMPACT) == 0 ? 0 : -EIO;
}

static int load_case(const char *path, json_t **ret)
{
	_cleanup_json_ json_t *docs = NULL;
	struct kmm_error *e = NULL;

	if (kmm_yaml_parse_file(path, CASE_MAX_BYTES, 0, &docs, &e) < 0) {
		fail("cannot read the case: %s", kmm_error_message(e));
		kmm_error_free(e);
		return -1;
	}
	if (json_array_size(docs) != 1 || !json_is_object(json_array_get(docs, 0)))
		return fail("a case is one YAML document, a mapping");
	*ret = json_incref(json_array_get(docs, 0));
	return 0;
}

static int new_client(int port, const json_t *tc, struct kmm_kube_client **ret)
{
	const json_t *cl = json_object_get(tc, "client");
	struct kmm_kube_config cfg = { 0 };
	struct kmm_kube_client_options o;
	struct kmm_error *e = NULL;
	char server[64];

	snprintf(server, sizeof(server), "http://127.0.0.1:%d", port);
	cfg.server = server;
	cfg.namespace = (char *)"default";
	kmm_kube_client_options_init(&o);
	o.qps = 0;
	o.retry_base_ms = 5;
	o.retry_max_ms = 100; /* Retry-After too: cases stay fast */
	if (json_object_get(cl, "max_retries"))
		o.max_retries = (int)json_integer_value(json_object_get(cl, "max_retries"));
	if (json_object_get(cl, "retry_max_ms"))
		o.retry_max_ms = (long)json_integer_value(json_object_get(cl, "retry_max_ms"));
	if (kmm_kube_client_new(&cfg, &o, ret, &e) < 0) {
		fail("kube client: %s", kmm_error_message(e));
		kmm_error_free(e);
		return -1;
	}
	return 0;
}

/* The engine on the stub, synced; then the steps. */
static int run_engine(const json_t *tc, struct kmm_kube_client *kube)
{
	struct kmm_operator_config *cfg = NULL;
	struct kmm_metrics *metrics = kmm_metrics_new();
	struct kmm_op_engine *eng = NULL;
	struct kmm_error *e = NULL;
	int r = -1;

	if (!metrics)
		return fail("out of memory");
	if (make_config(tc, &cfg) < 0)
		goto out;
	struct kmm_op_engine_options o = {
		.cfg = cfg,
		.kube = kube,
		.metrics = metrics,
		.workers = 1,
		.unload_pull_timeout_s =
		    json_integer_value(json_object_get(tc, "unload_pull_timeout_s")),
	};
	if (kmm_op_engine_new(&o, &eng, &e) < 0) {
		fail("engine: %s", kmm_error_message(e));
		goto out;
	}
	if (kmm_op_engine_sync(eng, SYNC_TIMEOUT_MS, &e) < 0) {
		fail("sync: %s", kmm_error_message(e));
		goto out;
	}
	r = run_steps(eng, json_object_get(tc, "steps"));
out:
	kmm_error_free(e);
	kmm_op_engine_free(eng);
	kmm_metrics_free(metrics);
	return r;
}

static int run_case(const char *path, struct stub *s, char **ret_todo)
{
	_cleanup_json_ json_t *tc = NULL, *log = NULL, *got = NULL;
	char dir[] = "/tmp/kmm-reconcile.XXXXXX", case_json[256], log_path[256];
	struct kmm_kube_client *kube = NULL;
	int r;

	if (load_case(path, &tc) < 0)
		return -1;
	if (jstr(tc, "todo") && !(*ret_todo = strdup(jstr(tc, "todo"))))
		return fail("out of memory");
	if (!mkdtemp(dir))
		return fail("mkdtemp: %s", strerror(errno));
	snprintf(case_json, sizeof(case_json), "%s/case.json", dir);
	snprintf(log_path, sizeof(log_path), "%s/requests.jsonl", dir);
	if (write_json(case_json, tc) < 0) {
		rmdir(dir);
		return fail("cannot write %s", case_json);
	}
	r = stub_load(s, case_json, log_path) < 0 ? fail("the stub apiserver did not load the case")
						  : new_client(s->port, tc, &kube);
	if (r >= 0)
		r = run_engine(tc, kube);
	/* Every request was logged before it was answered: the log is complete. */
	kmm_kube_client_free(kube);
	log = read_log(log_path);
	got = log ? writes_of(log, json_object_get(tc, "ignore")) : NULL;
	if (got && secure_getenv("KMM_RECONCILE_RECORD")) {
		char rec[4096];
		const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;

		snprintf(rec, sizeof(rec), "%s/%.*s.json", secure_getenv("KMM_RECONCILE_RECORD"),
			 (int)strcspn(base, "."), base);
		json_dump_file(got, rec, JSON_INDENT(1));
	}
	if (r >= 0)
		r = got ? check_writes(tc, got) : fail("out of memory");
	else if (got && json_array_size(got) > 0)
		show_writes(got);
	unlink(case_json);
	unlink(log_path);
	rmdir(dir);
	return r;
}

/*
 * Runs the case in a child process, which reports its TODO and diagnostics
 * through a pipe: a crash fails one case, not the run, and state a reconciler
 * keeps for the process (static, not in the engine) cannot leak into the next
 * case. Each child exits normally, so LSan checks it for leaks.
 */
static int run_case_isolated(const char *path, struct stub *s, char **ret_todo)
{
	_cleanup_free_ char *out = NULL;
	struct kmm_buf got;
	int p[2], st = 0;
	char chunk[4096];
	size_t len;
	ssize_t n;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return fail("pipe: %s", strerror(errno));
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return fail("fork: %s", strerror(errno));
	if (pid == 0) {
		_cleanup_free_ char *todo = NULL;
		int r;

		close(p[0]);
		r = run_case(path, s, &todo);
		/* The TODO text (or nothing), a NUL, the diagnostics. */
		if (write(p[1], todo ? todo : "", todo ? strlen(todo) + 1 : 1) < 0 ||
		    write(p[1], kmm_buf_str(&diag) ?: "", diag.len) < 0)
			r = -1;
		close(p[1]);
		kmm_buf_free(&diag);
		free(TAKE_PTR(todo));
		exit(r == 0 ? 0 : 1);
	}
	close(p[1]);
	kmm_buf_init(&got, DIAG_MAX + 4096);
	while ((n = read(p[0], chunk, sizeof(chunk))) > 0)
		kmm_buf_append(&got, chunk, (size_t)n);
	close(p[0]);
	waitpid(pid, &st, 0);
	len = got.len;
	out = kmm_buf_steal(&got);
	if (out && *out && !(*ret_todo = strdup(out)))
		return fail("out of memory");
	if (out && len > strlen(out) + 1)
		kmm_buf_append_str(&diag, out + strlen(out) + 1);
	if (WIFSIGNALED(st))
		return fail("the case crashed: signal %d", WTERMSIG(st));
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool wanted(const char *base, int argc, char **argv)
{
	if (argc <= 3)
		return true;
	for (int i = 3; i < argc; i++)
		if (strstr(base, argv[i]))
			return true;
	return false;
}

static void print_diag(void)
{
	const char *p = kmm_buf_str(&diag);

	while (p && *p) {
		const char *nl = strchr(p, '\n');
		int n = nl ? (int)(nl - p) : (int)strlen(p);

		printf("# %.*s\n", n, p);
		p += n + (nl ? 1 : 0);
	}
}

int main(int argc, char **argv)
{
	_cleanup_strv_free_ char **files = NULL;
	struct stub stub = { 0 };
	struct dirent *de;
	int n = 0, failed = 0;
	DIR *d;

	if (argc < 3) {
		fprintf(stderr, "usage: test-reconcile DATA_DIR APISERVER_STUB [CASE...]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	/* With fd 0/1 closed, pipe2() could return them and dup2() onto the
	 * same number would keep O_CLOEXEC: make sure 0-2 are taken. */
	for (int fd; (fd = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0;) {
		if (fd > 2) {
			close(fd);
			break;
		}
		fcntl(fd, F_SETFD, 0);
	}
	d = opendir(argv[1]);
	if (!d) {
		printf("1..1\nnot ok 1 - %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);

		if (len > 5 && strcmp(de->d_name + len - 5, ".yaml") == 0 &&
		    wanted(de->d_name, argc, argv) &&
		    kmm_strv_pushf(&files, "%s/%s", argv[1], de->d_name) < 0)
			return 1;
	}
	closedir(d);
	if (files)
		qsort(files, kmm_strv_length(files), sizeof(char *), cmp);
	kmm_buf_init(&diag, DIAG_MAX);
	printf("1..%zu\n", kmm_strv_length(files));
	if (files && stub_start(argv[2], &stub) < 0) {
		printf("not ok 1 - the stub apiserver did not start (python3 missing?)\n");
		return 1;
	}
	KMM_STRV_FOREACH (f, files) {
		const char *base = strrchr(f, '/') + 1;

		_cleanup_free_ char *todo = NULL;
		int r;

		kmm_buf_reset(&diag);
		r = run_case_isolated(f, &stub, &todo);
		/* A known bug: "not ok # TODO" is an expected failure, "ok # TODO" says it is fixed. */
		printf("%s %d - %s%s%s\n", r == 0 ? "ok" : "not ok", ++n, base,
		       todo ? " # TODO " : "", todo ? todo : "");
		if (r < 0)
			print_diag();
		if (r < 0 && !todo)
			failed++;
		fflush(stdout);
	}
	if (files)
		stub_stop(&stub);
	kmm_buf_free(&diag);
	return failed ? 1 : 0;
}
