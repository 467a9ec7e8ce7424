/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Declarative wire cases (the .json files of tests/data/kube, format in
 * tests/data/kube/README.md): each case runs lib/kube calls against
 * stub-server.py and checks the exact requests sent (method, escaped path and
 * query, headers, body) and the result (errno, HTTP status, reason, message,
 * Retry-After). One TAP line per case.
 *
 * test-wire DATA_DIR STUB_SERVER
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kmm/kube.h"
#include "kmm/shared-strv.h"
#include "kmm/kube-watch.h"

static const struct {
	const char *name;
	int code;
} errnames[] = {
	{ "ENOENT", ENOENT },	{ "EEXIST", EEXIST },
	{ "ESTALE", ESTALE },	{ "EACCES", EACCES },
	{ "EAGAIN", EAGAIN },	{ "EIO", EIO },
	{ "EINVAL", EINVAL },	{ "E2BIG", E2BIG },
	{ "EBADMSG", EBADMSG }, { "ECONNREFUSED", ECONNREFUSED },
};

static int errno_of(const char *name)
{
	for (size_t i = 0; i < KMM_ARRAY_SIZE(errnames); i++)
		if (strcmp(errnames[i].name, name) == 0)
			return errnames[i].code;
	return -1;
}

struct stub {
	pid_t pid;
	int in_fd;
	int out_fd; /* kept open until stop: closing it early can EPIPE the stub */
	int port;
};

static int stub_start(const char *script, const char *case_path, const char *log, struct stub *s)
{
	int in[2], out[2];
	posix_spawn_file_actions_t fa;
	char *argv[] = { (char *)"python3", (char *)script, (char *)case_path, (char *)log, NULL };
	char buf[32] = { 0 };
	ssize_t n;

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	if (posix_spawnp(&s->pid, "python3", &fa, NULL, argv, environ) != 0)
		return -ENOENT;
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	n = read(out[0], buf, sizeof(buf) - 1);
	s->out_fd = out[0];
	s->in_fd = in[1];
	s->port = n > 0 ? (int)strtol(buf, NULL, 10) : 0;
	return s->port > 0 ? 0 : -EIO;
}

static void stub_stop(struct stub *s)
{
	int st;

	close(s->in_fd);
	waitpid(s->pid, &st, 0);
	close(s->out_fd);
}

static char diag[4096];

#define FAIL(...)                                                                                  \
	do {                                                                                       \
		snprintf(diag, sizeof(diag), __VA_ARGS__);                                         \
		return -1;                                                                         \
	} while (0)

static const char *jstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static int check_result(const json_t *exp, int r, const struct kmm_error *err, const json_t *ret)
{
	const json_t *rc = json_object_get(exp, "rc");

	if (json_is_integer(rc) && json_integer_value(rc) == 0) {
		if (r != 0)
			FAIL("expected success, got %d: %s", r, kmm_error_message(err));
	} else if (json_is_string(rc)) {
		if (r != -errno_of(json_string_value(rc)))
			FAIL("expected -%s, got %d (%s)", json_string_value(rc), r,
			     kmm_error_message(err));
	}
	if (json_object_get(exp, "http_status") &&
	    (!err || err->http_status != json_integer_value(json_object_get(exp, "http_status"))))
		FAIL("http_status %d, expected %lld", err ? err->http_status : 0,
		     (long long)json_integer_value(json_object_get(exp, "http_status")));
	if (jstr(exp, "reason") &&
	    (!err || !err->reason || strcmp(err->reason, jstr(exp, "reason")) != 0))
		FAIL("reason %s, expected %s", err && err->reason ? err->reason : "(none)",
		     jstr(exp, "reason"));
	if (jstr(exp, "message") && strcmp(kmm_error_message(err), jstr(exp, "message")) != 0)
		FAIL("message \"%s\", expected \"%s\"", kmm_error_message(err),
		     jstr(exp, "message"));
	if (json_object_get(exp, "retry_after_ms") &&
	    (!err ||
	     err->retry_after_ms != json_integer_value(json_object_get(exp, "retry_after_ms"))))
		FAIL("retry_after_ms %lld", err ? (long long)err->retry_after_ms : -2LL);
	if (json_object_get(exp, "result") && !json_equal(ret, json_object_get(exp, "result"))) {
		char *s = ret ? json_dumps(ret, JSON_COMPACT) : NULL;

		snprintf(diag, sizeof(diag), "result %s differs", s ? s : "(null)");
		free(s);
		return -1;
	}
	if (json_object_get(exp, "items") &&
	    json_array_size(json_object_get(ret, "items")) !=
		(size_t)json_integer_value(json_object_get(exp, "items")))
		FAIL("items %zu", json_array_size(json_object_get(ret, "items")));
	return 0;
}

/* Watch events are collected as {"type": ..., "name": ...} into an array. */
static int collect(enum kmm_watch_event_type t, json_t *o, void *ud, struct kmm_error **err)
{
	const char *name = kmm_kube_meta_str(o, "name");
	const char *rv = kmm_kube_meta_str(o, "resourceVersion");

	return json_array_append_new(ud, json_pack("{s:s,s:s*,s:s*}", "type",
						   kmm_watch_event_type_name(t), "name", name, "rv",
						   rv));
}

static int do_watch(struct kmm_kube_client *c, const struct kmm_kube_target *t, const json_t *o,
		    json_t **ret, struct kmm_error **err)
{
	struct kmm_watch *w = NULL;
	json_t *events = json_array();
	int r;

	if (!events || kmm_watch_new(&w, err) < 0)
		return -ENOMEM;
	r = kmm_kube_watch(
	    c, t,
	    &(struct kmm_watch_options){
		.label_selector = jstr(o, "labelSelector"),
		.resource_version = jstr(o, "resourceVersion"),
		.allow_bookmarks = json_is_true(json_object_get(o, "allowBookmarks")),
		.timeout_seconds = (long)json_integer_value(json_object_get(o, "timeoutSeconds")),
		.max_frame = (size_t)json_integer_value(json_object_get(o, "maxFrame")),
	    },
	    collect, NULL, events, w, err);
	kmm_watch_free(w);
	/* The events seen are the result, also when the stream ended in an error. */
	*ret = events;
	return r;
}

/*
 * A batch of creates (body: the objects) into the target's collection; the
 * result is each item's [status, attempts, maybe_applied].
 */
static int do_batch(struct kmm_kube_client *c, const struct kmm_kube_target *t, const json_t *objs,
		    const json_t *o, json_t **ret, struct kmm_error **err)
{
	size_t n = json_array_size(objs);
	struct kmm_kube_prepared *p = calloc(n ?: 1, sizeof(*p));
	struct kmm_kube_batch_item *items = calloc(n ?: 1, sizeof(*items));
	json_t *res = json_array();
	int r = 0;

	for (size_t i = 0; p && items && res && i < n && r == 0; i++) {
		r = kmm_kube_prepare_create(t, json_array_get(objs, i), NULL, &p[i], err);
		items[i].req = p[i].req;
		items[i].req.no_retry = json_is_true(json_object_get(o, "noRetry"));
	}
	if (!p || !items || !res)
		r = -ENOMEM;
	if (r == 0)
		r = kmm_kube_batch(c, items, n,
				   (size_t)json_integer_value(json_object_get(o, "maxInFlight")),
				   err);
	for (size_t i = 0; r == 0 && i < n; i++)
		json_array_append_new(
		    res,
		    json_pack("[i,i,b]", items[i].rc < 0 ? items[i].rc : (int)items[i].resp.status,
			      items[i].attempts, items[i].resp.maybe_applied));
	if (items)
		kmm_kube_batch_clear(items, n);
	for (size_t i = 0; p && i < n; i++)
		kmm_kube_prepared_clear(&p[i]);
	free(p);
	free(items);
	*ret = res;
	return r;
}

static int do_call(struct kmm_kube_client *c, const json_t *call, json_t **ret,
		   struct kmm_error **err)
{
	const json_t *res = json_object_get(call, "resource");
	struct kmm_kube_resource rs = {
		.group = jstr(res, "group") ? jstr(res, "group") : "",
		.version = jstr(res, "version") ? jstr(res, "version") : "v1",
		.resource = jstr(res, "resource") ? jstr(res, "resource") : "configmaps",
		.namespaced = !json_is_false(json_object_get(res, "namespaced")),
	};
	struct kmm_kube_target t = { .res = &rs,
				     .namespace = jstr(call, "namespace"),
				     .name = jstr(call, "name"),
				     .subresource = jstr(call, "subresource") };
	const char *verb = jstr(call, "verb");
	const json_t *body = json_object_get(call, "body");
	const json_t *o = json_object_get(call, "options");

	if (strcmp(verb, "get") == 0)
		return kmm_kube_get(c, &t, ret, err);
	if (strcmp(verb, "watch") == 0)
		return do_watch(c, &t, o, ret, err);
	if (strcmp(verb, "list") == 0 || strcmp(verb, "list_all") == 0) {
		struct kmm_kube_list_options lo = {
			.label_selector = jstr(o, "labelSelector"),
			.field_selector = jstr(o, "fieldSelector"),
			.resource_version = jstr(o, "resourceVersion"),
			.limit = (long)json_integer_value(json_object_get(o, "limit")),
			.continue_token = jstr(o, "continue"),
		};

		return verb[4] ? kmm_kube_list_all(c, &t, &lo, ret, err)
			       : kmm_kube_list(c, &t, &lo, ret, err);
	}
	if (strcmp(verb, "create") == 0)
		return kmm_kube_create(c, &t, body,
				       &(struct kmm_kube_write_options){
					   .field_manager = jstr(o, "fieldManager"),
					   .dry_run = json_is_true(json_object_get(o, "dryRun")) },
				       ret, err);
	if (strcmp(verb, "batch") == 0)
		return do_batch(c, &t, body, o, ret, err);
	if (strcmp(verb, "update") == 0)
		return kmm_kube_update(c, &t, body, NULL, ret, err);
	if (strcmp(verb, "patch") == 0) {
		const char *pt = jstr(call, "patch_type");
		enum kmm_kube_patch_type type = strcmp(pt, "merge") == 0  ? KMM_KUBE_PATCH_MERGE
						: strcmp(pt, "json") == 0 ? KMM_KUBE_PATCH_JSON
						: strcmp(pt, "strategic") == 0
						    ? KMM_KUBE_PATCH_STRATEGIC
						    : KMM_KUBE_PATCH_APPLY;

		return kmm_kube_patch(c, &t, type, body,
				      &(struct kmm_kube_patch_options){
					  .field_manager = jstr(o, "fieldManager"),
					  .force = json_is_true(json_object_get(o, "force")) },
				      ret, err);
	}
	if (strcmp(verb, "delete") == 0) {
		struct kmm_kube_delete_options d;

		kmm_kube_delete_options_init(&d);
		d.precondition_uid = jstr(o, "uid");
		d.precondition_resource_version = jstr(o, "resourceVersion");
		d.propagation_policy = jstr(o, "propagationPolicy");
		if (json_object_get(o, "gracePeriodSeconds"))
			d.grace_period_seconds =
			    (long)json_integer_value(json_object_get(o, "gracePeriodSeconds"));
		return kmm_kube_delete(c, &t, o ? &d : NULL, ret, err);
	}
	return kmm_error_make(err, EINVAL, "unknown verb %s", verb);
}

static int check_requests(const json_t *expected, const char *log)
{
	FILE *f = fopen(log, "re");
	char line[65536];
	size_t i = 0;

	for (; f && fgets(line, sizeof(line), f); i++) {
		json_t *got = json_loads(line, 0, NULL);
		const json_t *want = json_array_get(expected, i);
		const char *k;
		json_t *v;
		int bad = 0;

		if (!want) {
			json_decref(got);
			continue; /* only the listed prefix is checked */
		}
		if (jstr(want, "method") && strcmp(jstr(want, "method"), jstr(got, "method")) != 0)
			bad = snprintf(diag, sizeof(diag), "request %zu: method %s", i,
				       jstr(got, "method"));
		else if (jstr(want, "path") && strcmp(jstr(want, "path"), jstr(got, "path")) != 0)
			bad = snprintf(diag, sizeof(diag), "request %zu: path %s\n#   expected %s",
				       i, jstr(got, "path"), jstr(want, "path"));
		json_object_foreach (json_object_get(want, "headers"), k, v) {
			const char *gv = jstr(json_object_get(got, "headers"), k);

			if (bad)
				break;
			if (json_is_null(v) ? gv != NULL
					    : !gv || strcmp(gv, json_string_value(v)) != 0)
				bad = snprintf(diag, sizeof(diag), "request %zu: header %s = %s", i,
					       k, gv ? gv : "(absent)");
		}
		if (!bad && json_object_get(want, "body")) {
			json_t *gb =
			    jstr(got, "body") ? json_loads(jstr(got, "body"), 0, NULL) : NULL;

			if (!json_equal(gb, json_object_get(want, "body")))
				bad = snprintf(diag, sizeof(diag), "request %zu: body %s", i,
					       jstr(got, "body") ? jstr(got, "body") : "(none)");
			json_decref(gb);
		}
		if (!bad && json_is_null(json_object_get(want, "body_absent")) == 0 &&
		    json_is_true(json_object_get(want, "no_body")) && jstr(got, "body"))
			bad = snprintf(diag, sizeof(diag), "request %zu: unexpected body", i);
		json_decref(got);
		if (bad) {
			fclose(f);
			return -1;
		}
	}
	if (f)
		fclose(f);
	if (json_object_get(expected, "count") == NULL && i < json_array_size(expected))
		FAIL("%zu requests, expected at least %zu", i, json_array_size(expected));
	return 0;
}

static int write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "we");

	if (!f)
		return -errno;
	fputs(text, f);
	fclose(f);
	return chmod(path, mode);
}

static int run_case(const char *path, const char *stub_script)
{
	_cleanup_(json_decrefp) json_t *tc = json_load_file(path, 0, NULL);
	char tmpl[] = "/tmp/kmm-wire.XXXXXX", log[256], tokf[256], exe[256], server[64];
	const json_t *cfgj, *cl, *calls, *call;
	struct kmm_kube_config cfg = { 0 };
	struct kmm_kube_client_options o;
	struct kmm_kube_client *c = NULL;
	struct kmm_kube_exec ex = { 0 };
	char *noargs[] = { NULL };
	struct stub s = { 0 };
	size_t i;
	int rc = 0;

	if (!tc)
		FAIL("cannot parse %s", path);
	if (!mkdtemp(tmpl))
		FAIL("mkdtemp");
	snprintf(log, sizeof(log), "%s/requests.jsonl", tmpl);
	snprintf(tokf, sizeof(tokf), "%s/token", tmpl);
	snprintf(exe, sizeof(exe), "%s/plugin", tmpl);
	if (stub_start(stub_script, path, log, &s) < 0)
		FAIL("stub server did not start (python3 missing?)");
	snprintf(server, sizeof(server), "http://127.0.0.1:%d", s.port);
	cfg.server = server;
	cfg.namespace = (char *)"default";
	cfgj = json_object_get(tc, "config");
	cfg.token = (char *)jstr(cfgj, "token");
	if (jstr(cfgj, "token_file")) {
		write_file(tokf, jstr(cfgj, "token_file"), 0600);
		cfg.token_file = tokf;
	}
	if (jstr(cfgj, "exec_script")) {
		write_file(exe, jstr(cfgj, "exec_script"), 0700);
		ex.command = exe;
		ex.args = noargs;
		ex.env = noargs;
		ex.api_version = (char *)"client.authentication.k8s.io/v1";
		cfg.exec = &ex;
	}
	kmm_kube_client_options_init(&o);
	o.qps = 0;
	o.retry_base_ms = 10;
	o.retry_max_ms = 2000;
	cl = json_object_get(tc, "client");
	if (json_object_get(cl, "max_retries"))
		o.max_retries = (int)json_integer_value(json_object_get(cl, "max_retries"));
	if (json_object_get(cl, "max_body"))
		o.max_body = (size_t)json_integer_value(json_object_get(cl, "max_body"));
	if (kmm_kube_client_new(&cfg, &o, &c, NULL) < 0) {
		stub_stop(&s);
		FAIL("client");
	}
	calls = json_object_get(tc, "calls");
	json_array_foreach (calls, i, call) {
		struct kmm_error *err = NULL;
		json_t *ret = NULL;
		int r;

		if (jstr(call, "rewrite_token_file")) {
			/* a new inode and mtime, as a kubelet rotation does */
			char tmp[300];

			snprintf(tmp, sizeof(tmp), "%s.new", tokf);
			write_file(tmp, jstr(call, "rewrite_token_file"), 0600);
			rename(tmp, tokf);
		}
		r = do_call(c, call, &ret, &err);
		if (check_result(json_object_get(call, "expect"), r, err, ret) < 0) {
			char msg[sizeof(diag)];

			snprintf(msg, sizeof(msg), "call %zu: %.4000s", i, diag);
			memcpy(diag, msg, sizeof(diag));
			rc = -1;
		}
		kmm_error_free(err);
		json_decref(ret);
		if (rc < 0)
			break;
	}
	kmm_kube_client_free(c);
	stub_stop(&s);
	if (rc == 0)
		rc = check_requests(json_object_get(tc, "requests"), log);
	if (rc == 0 && json_object_get(tc, "request_count")) {
		FILE *f = fopen(log, "re");
		int ch, lines = 0;

		while (f && (ch = fgetc(f)) != EOF)
			lines += ch == '\n';
		if (f)
			fclose(f);
		if (lines != json_integer_value(json_object_get(tc, "request_count"))) {
			snprintf(
			    diag, sizeof(diag), "%d requests, expected %lld", lines,
			    (long long)json_integer_value(json_object_get(tc, "request_count")));
			rc = -1;
		}
	}
	{
		char cnt[300];

		snprintf(cnt, sizeof(cnt), "%s.count", exe);
		unlink(cnt);
	}
	unlink(log);
	unlink(tokf);
	unlink(exe);
	rmdir(tmpl);
	return rc;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	_cleanup_strv_free_ char **files = NULL;
	struct dirent *de;
	DIR *d;
	int n = 0, failed = 0;

	if (argc < 3) {
		fprintf(stderr, "usage: test-wire DATA_DIR STUB_SERVER\n");
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
	while ((de = readdir(d)))
		if (strstr(de->d_name, ".json") &&
		    kmm_strv_pushf(&files, "%s/%s", argv[1], de->d_name) < 0)
			return 1;
	closedir(d);
	if (files)
		qsort(files, kmm_strv_length(files), sizeof(char *), cmp);
	printf("1..%zu\n", kmm_strv_length(files));
	KMM_STRV_FOREACH (f, files) {
		const char *base = strrchr(f, '/') + 1;

		diag[0] = '\0';
		if (run_case(f, argv[2]) == 0) {
			printf("ok %d - %s\n", ++n, base);
		} else {
			printf("not ok %d - %s\n# %s\n", ++n, base, diag);
			failed++;
		}
		fflush(stdout);
	}
	return failed ? 1 : 0;
}
