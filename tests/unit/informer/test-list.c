/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The informer's paged LIST against tests/unit/kube/stub-server.py: pages
 * are followed through continue tokens, a 410 on a continue token restarts
 * the list (nothing of the abandoned attempt reaches the store or the
 * handlers), the store ends with the last page's resourceVersion, and a DOM
 * built by a handler is dropped once nothing but the store holds the object;
 * whole objects are kept without metadata.managedFields.
 *
 * test-list STUB_SERVER
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kmm/informer.h"
#include "kmm/kube.h"

static const char *stub_script;

struct stub {
	pid_t pid;
	int in_fd, out_fd;
	int port;
};

/* Starts the stub on a case file; it prints its port, then serves until stdin closes. */
static int stub_start(const char *case_path, const char *log, struct stub *s)
{
	char *argv[] = { (char *)"python3", (char *)stub_script, (char *)case_path, (char *)log,
			 NULL };
	posix_spawn_file_actions_t fa;
	int in[2], out[2];
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
	s->in_fd = in[1];
	s->out_fd = out[0];
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

#define NODE(name, rv, app)                                                                        \
	"{\"metadata\":{\"name\":\"" name "\",\"resourceVersion\":\"" rv                           \
	"\",\"labels\":{\"app\":\"" app "\"},\"managedFields\":[{\"manager\":\"x\"}]},"            \
	"\"status\":{\"phase\":\"big\"}}"

/*
 * Page 1 (continue c1), 410 on c1, page 1 again at a newer snapshot
 * (continue c2), page 2; then every watch fails with 500 so the list's
 * resourceVersion stays the store's.
 */
static const char case_json[] =
    "{\"responses\":["
    "{\"status\":200,\"body\":{\"metadata\":{\"resourceVersion\":\"10\",\"continue\":\"c1\"},"
    "\"items\":[" NODE(
	"a", "9",
	"old") "]}},"
	       "{\"status\":410,\"body\":{\"kind\":\"Status\",\"reason\":\"Expired\",\"code\":410,"
	       "\"message\":\"The provided continue parameter is too old\"}},"
	       "{\"status\":200,\"body\":{\"metadata\":{\"resourceVersion\":\"11\",\"continue\":"
	       "\"c2\"},"
	       "\"items\":[" NODE(
		   "a", "11",
		   "new") "]}},"
			  "{\"status\":200,\"body\":{\"metadata\":{\"resourceVersion\":\"11\"},"
			  "\"items\":[" NODE("b", "7",
					     "b") "]}},"
						  "{\"status\":500,\"body\":{\"kind\":\"Status\","
						  "\"code\":500,\"message\":\"no watch\"}}"
						  "]}";

struct seen {
	int adds;
	char apps[8][16];
	struct kmm_obj *kept; /* b, referenced past its handler */
};

static void on_add(const struct kmm_obj *o, void *ud)
{
	struct seen *s = ud;
	const json_t *j = kmm_obj_json(o);
	const char *app = json_string_value(
	    json_object_get(json_object_get(json_object_get(j, "metadata"), "labels"), "app"));

	if (s->adds < 8)
		snprintf(s->apps[s->adds], sizeof(s->apps[0]), "%s", app ? app : "?");
	s->adds++;
	if (strcmp(kmm_obj_key(o), "b") == 0)
		s->kept = kmm_obj_ref((struct kmm_obj *)o);
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 65536);
	size_t n;

	if (!f || !buf) {
		if (f)
			fclose(f);
		free(buf);
		return NULL;
	}
	n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* The path of the n-th request in the stub's log, or NULL. */
static char *request_path(const char *log, int nth)
{
	_cleanup_free_ char *all = read_all(log);
	char *line = all, *end;

	for (int i = 0; line && *line; i++) {
		end = strchr(line, '\n');
		if (end)
			*end = '\0';
		if (i == nth) {
			json_t *j = json_loads(line, 0, NULL);
			char *p = j ? strdup(json_string_value(json_object_get(j, "path"))) : NULL;

			json_decref(j);
			return p;
		}
		line = end ? end + 1 : NULL;
	}
	return NULL;
}

static void test_paged_list(void **state)
{
	static const char *const projection[] = { "metadata.labels", NULL };
	char dir[] = "/tmp/kmm-informer-list.XXXXXX", case_path[256], log[256], server[64];
	struct kmm_kube_config cfg = { 0 };
	struct kmm_kube_client_options co;
	_cleanup_kube_client_ struct kmm_kube_client *c = NULL;
	struct kmm_informer *inf = NULL;
	struct kmm_informer_options io = {
		.res = &kmm_kube_nodes,
		.projection = projection,
		.page_size = 1,
	};
	struct seen seen = { 0 };
	struct kmm_informer_handlers h = { .on_add = on_add, .userdata = &seen };
	struct kmm_obj *a, *b;
	struct stub s = { 0 };
	char *rv;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(case_path, sizeof(case_path), "%s/case.json", dir);
	snprintf(log, sizeof(log), "%s/requests.jsonl", dir);
	f = fopen(case_path, "w");
	assert_non_null(f);
	fputs(case_json, f);
	fclose(f);
	if (stub_start(case_path, log, &s) < 0)
		fail_msg("stub server %s did not start (python3 missing?)", stub_script);

	snprintf(server, sizeof(server), "http://127.0.0.1:%d", s.port);
	cfg.server = server;
	kmm_kube_client_options_init(&co);
	co.qps = 0;
	co.max_retries = -1;
	assert_int_equal(kmm_kube_client_new(&cfg, &co, &c, NULL), 0);
	assert_int_equal(kmm_informer_new(c, &io, &inf, NULL), 0);
	assert_int_equal(kmm_informer_add_handlers(inf, &h), 0);
	assert_int_equal(kmm_informer_start(inf, NULL), 0);
	assert_int_equal(kmm_informer_wait_synced(inf, 30000), 0);

	/* The abandoned first attempt's "a" (app=old) was never announced. */
	assert_int_equal(seen.adds, 2);
	assert_string_equal(seen.apps[0], "new");
	assert_string_equal(seen.apps[1], "b");
	assert_int_equal(kmm_informer_size(inf), 2);
	rv = kmm_informer_resource_version(inf);
	assert_string_equal(rv, "11");
	free(rv);

	a = kmm_informer_get(inf, "a");
	assert_non_null(a);
	assert_string_equal(kmm_obj_resource_version(a), "11");
	assert_string_equal(kmm_obj_label(a, "app"), "new");
	assert_null(kmm_obj_get_json(a, "metadata.managedFields"));
	/* Only the store held "a" after its handler: the DOM the handler built is gone. */
	assert_false(kmm_obj_has_dom(a));
	b = kmm_informer_get(inf, "b");
	assert_non_null(b);
	/* The handler still references "b": its DOM must stay. */
	assert_ptr_equal(b, seen.kept);
	assert_true(kmm_obj_has_dom(b));

	kmm_informer_free(inf);
	kmm_obj_unref(a);
	kmm_obj_unref(b);
	kmm_obj_unref(seen.kept);
	stub_stop(&s);

	{
		static const char *const want[] = {
			"/api/v1/nodes?limit=1",
			"/api/v1/nodes?limit=1&continue=c1",
			"/api/v1/nodes?limit=1",
			"/api/v1/nodes?limit=1&continue=c2",
		};

		for (int i = 0; i < 4; i++) {
			_cleanup_free_ char *p = request_path(log, i);

			assert_non_null(p);
			assert_string_equal(p, want[i]);
		}
	}
	unlink(case_path);
	unlink(log);
	rmdir(dir);
}

/* Whole objects (no projection) are kept without metadata.managedFields. */
static void test_whole_objects(void **state)
{
	static const char one_page[] =
	    "{\"responses\":["
	    "{\"status\":200,\"body\":{\"metadata\":{\"resourceVersion\":\"3\"},"
	    "\"items\":[" NODE(
		"w", "3", "whole") "]}},"
				   "{\"status\":500,\"body\":{\"kind\":\"Status\",\"code\":500}}"
				   "]}";
	char dir[] = "/tmp/kmm-informer-list.XXXXXX", case_path[256], log[256], server[64];
	struct kmm_kube_config cfg = { 0 };
	struct kmm_kube_client_options co;
	_cleanup_kube_client_ struct kmm_kube_client *c = NULL;
	struct kmm_informer *inf = NULL;
	struct kmm_informer_options io = { .res = &kmm_kube_nodes };
	struct kmm_obj *w;
	struct stub s = { 0 };
	json_t *mf, *status;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(case_path, sizeof(case_path), "%s/case.json", dir);
	snprintf(log, sizeof(log), "%s/requests.jsonl", dir);
	f = fopen(case_path, "w");
	assert_non_null(f);
	fputs(one_page, f);
	fclose(f);
	if (stub_start(case_path, log, &s) < 0)
		fail_msg("stub server %s did not start (python3 missing?)", stub_script);
	snprintf(server, sizeof(server), "http://127.0.0.1:%d", s.port);
	cfg.server = server;
	kmm_kube_client_options_init(&co);
	co.qps = 0;
	co.max_retries = -1;
	assert_int_equal(kmm_kube_client_new(&cfg, &co, &c, NULL), 0);
	assert_int_equal(kmm_informer_new(c, &io, &inf, NULL), 0);
	assert_int_equal(kmm_informer_start(inf, NULL), 0);
	assert_int_equal(kmm_informer_wait_synced(inf, 30000), 0);
	w = kmm_informer_get(inf, "w");
	assert_non_null(w);
	mf = kmm_obj_get_json(w, "metadata.managedFields");
	assert_null(mf);
	assert_string_equal(kmm_obj_label(w, "app"), "whole");
	assert_string_equal(kmm_obj_resource_version(w), "3");
	status = kmm_obj_get_json(w, "status.phase");
	assert_true(json_is_string(status));
	json_decref(status);
	kmm_obj_unref(w);
	kmm_informer_free(inf);
	stub_stop(&s);
	unlink(case_path);
	unlink(log);
	rmdir(dir);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paged_list),
		cmocka_unit_test(test_whole_objects),
	};

	if (argc != 2) {
		fprintf(stderr, "usage: test-list STUB_SERVER\n");
		return 2;
	}
	stub_script = argv[1];
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
