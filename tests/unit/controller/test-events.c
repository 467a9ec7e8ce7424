/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Event retry queue (kmm/controller-events.h) with a scripted batch function in
 * place of the apiserver: naming, what is kept, dropped and delivered, the
 * bound, and due times.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kmm/controller-events.h"

/* What the fake apiserver answers, per item in order (the last repeats), and what it saw. */
struct script {
	const long *status; /* 0: transport error rc[] */
	const int *rc;
	size_t n;
	int64_t retry_after_ms;
	size_t calls, sent;
	char *bodies[16];
};

static void scripted(void *ud, struct kmm_kube_batch_item *items, size_t n)
{
	struct script *s = ud;

	s->calls++;
	for (size_t i = 0; i < n; i++, s->sent++) {
		size_t k = s->sent < s->n ? s->sent : s->n - 1;
		struct kmm_kube_batch_item *it = &items[i];

		assert_string_equal(it->req.method, "POST");
		if (s->sent < 16)
			s->bodies[s->sent] = strdup(it->req.body);
		it->resp = (struct kmm_kube_response){ .retry_after_ms = -1 };
		if (s->status[k] == 0) {
			it->rc = s->rc[k];
			kmm_error_make(&it->err, -s->rc[k], "scripted transport error");
			continue;
		}
		it->rc = 0;
		it->resp.status = s->status[k];
		it->resp.body = strdup("{}");
		it->resp.body_len = 2;
		if (s->status[k] == 429)
			it->resp.retry_after_ms = s->retry_after_ms;
	}
}

static void script_clear(struct script *s)
{
	for (size_t i = 0; i < 16; i++)
		free(s->bodies[i]);
}

static struct kmm_kube_request event_req(const char *body)
{
	return (struct kmm_kube_request){ .method = "POST",
					  .path = "/api/v1/namespaces/default/events",
					  .body = body,
					  .body_len = strlen(body) };
}

static void test_naming(void **state)
{
	static const long st[] = { 201 };
	struct script s = { .status = st, .n = 1 };
	struct kmm_event_queue *q = NULL;
	struct kmm_kube_request r[2] = {
		event_req("{\"metadata\":{\"generateName\":\"node-a.\"},\"message\":\"m\"}"),
		event_req("{\"metadata\":{\"name\":\"fixed\"},\"message\":\"m\"}"),
	};
	json_t *j;
	const char *name;

	assert_int_equal(kmm_event_queue_new(NULL, 0, scripted, &s, &q), 0);
	assert_int_equal(kmm_event_queue_send(q, r, 2, NULL, NULL), 0);
	assert_int_equal(s.sent, 2);
	/* generateName became a name of its own, so a resend cannot duplicate. */
	j = json_loads(s.bodies[0], 0, NULL);
	name = json_string_value(json_object_get(json_object_get(j, "metadata"), "name"));
	assert_non_null(name);
	assert_true(strncmp(name, "node-a.", 7) == 0 && strlen(name) > 7);
	assert_null(json_object_get(json_object_get(j, "metadata"), "generateName"));
	assert_string_equal(json_string_value(json_object_get(j, "message")), "m");
	json_decref(j);
	assert_string_equal(s.bodies[1], "{\"metadata\":{\"name\":\"fixed\"},\"message\":\"m\"}");
	kmm_event_queue_free(q);
	script_clear(&s);
}

static void test_outcomes(void **state)
{
	static const long st[] = { 201, 409, 429, 500, 403, 0, 0, 422 };
	static const int rc[] = { 0, 0, 0, 0, 0, -ECONNREFUSED, -E2BIG, 0 };
	struct script s = { .status = st, .rc = rc, .n = 8, .retry_after_ms = 5000 };
	struct kmm_event_queue *q = NULL;
	struct kmm_event_queue_stats es;
	struct kmm_kube_request r[8];
	int64_t next = -2;

	for (size_t i = 0; i < 8; i++)
		r[i] = event_req("{\"metadata\":{\"name\":\"e\"}}");
	assert_int_equal(kmm_event_queue_new(NULL, 0, scripted, &s, &q), 0);
	assert_int_equal(kmm_event_queue_send(q, r, 8, &next, NULL), 0);
	kmm_event_queue_stats(q, &es);
	/* 2xx and 409 arrived; 429, 500, a transport error are kept; 403, 422 and an
	 * over-cap answer are refused for good. */
	assert_int_equal(es.delivered, 2);
	assert_int_equal(es.requeued, 3);
	assert_int_equal(es.dropped_failed, 3);
	assert_int_equal(es.pending, 3);
	/* The first resend is due after 1 s (the 429's 5 s Retry-After only holds it). */
	assert_true(next > 900 && next <= 1000);
	/* Nothing is due yet: no batch at all; the first caller comes back, not this one. */
	assert_int_equal(kmm_event_queue_send(q, NULL, 0, &next, NULL), 0);
	assert_int_equal(s.calls, 1);
	assert_int_equal(next, -1);
	kmm_event_queue_free(q);
	script_clear(&s);
}

static void test_bound_and_resend(void **state)
{
	static const long st[] = { 500, 500, 500, 201 };
	struct script s = { .status = st, .n = 4 };
	struct kmm_event_queue *q = NULL;
	struct kmm_event_queue_stats es;
	struct kmm_kube_request r[3] = {
		event_req("{\"metadata\":{\"name\":\"e1\"}}"),
		event_req("{\"metadata\":{\"name\":\"e2\"}}"),
		event_req("{\"metadata\":{\"name\":\"e3\"}}"),
	};
	struct timespec ts = { 1, 100000000 };
	int64_t next = -2;

	assert_int_equal(kmm_event_queue_new(NULL, 2, scripted, &s, &q), 0);
	assert_int_equal(kmm_event_queue_send(q, r, 3, &next, NULL), 0);
	kmm_event_queue_stats(q, &es);
	/* Three failed into a queue of two: the oldest went. */
	assert_int_equal(es.requeued, 3);
	assert_int_equal(es.dropped_full, 1);
	assert_int_equal(es.pending, 2);
	nanosleep(&ts, NULL);
	assert_int_equal(kmm_event_queue_send(q, NULL, 0, &next, NULL), 0);
	assert_int_equal(s.sent, 5);
	assert_string_equal(s.bodies[3], "{\"metadata\":{\"name\":\"e2\"}}");
	assert_string_equal(s.bodies[4], "{\"metadata\":{\"name\":\"e3\"}}");
	kmm_event_queue_stats(q, &es);
	assert_int_equal(es.delivered, 2);
	assert_int_equal(es.pending, 0);
	assert_int_equal(next, -1);
	kmm_event_queue_free(q);
	script_clear(&s);
}

/* The caller's own requests ride in the Events' batch, ahead of them, and get their outcomes. */
static void test_send_with(void **state)
{
	static const long st[] = { 201, 500, 429 };
	static const int rc[] = { 0, 0, 0 };
	struct script s = { .status = st, .rc = rc, .n = 3, .retry_after_ms = 5000 };
	struct kmm_event_queue *q = NULL;
	struct kmm_event_queue_stats es;
	struct kmm_kube_request r[1] = { event_req("{\"metadata\":{\"name\":\"e\"}}") };
	struct kmm_kube_batch_item with[2] = {
		{ .req = { .method = "POST",
			   .path = "/api/v1/namespaces/demo/pods",
			   .body = "{\"pod\":1}",
			   .body_len = 9 } },
		{ .req = { .method = "POST",
			   .path = "/api/v1/namespaces/demo/pods",
			   .body = "{\"pod\":2}",
			   .body_len = 9 } },
	};
	int64_t next = -2;

	assert_int_equal(kmm_event_queue_new(NULL, 0, scripted, &s, &q), 0);
	assert_int_equal(kmm_event_queue_send_with(q, r, 1, with, 2, &next, NULL), 0);
	assert_int_equal(s.calls, 1); /* one batch, one round trip */
	assert_int_equal(s.sent, 3);
	assert_string_equal(s.bodies[0], "{\"pod\":1}");
	assert_string_equal(s.bodies[1], "{\"pod\":2}");
	assert_int_equal(with[0].rc, 0);
	assert_int_equal(with[0].resp.status, 201);
	assert_int_equal(with[1].resp.status, 500);
	/* Only the Event is the queue's to keep: the failed request is the caller's. */
	kmm_event_queue_stats(q, &es);
	assert_int_equal(es.pending, 1);
	assert_int_equal(es.requeued, 1);
	assert_true(next >= 4000 && next <= 5000);
	kmm_kube_batch_clear(with, 2);
	kmm_event_queue_free(q);
	script_clear(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_naming),
		cmocka_unit_test(test_outcomes),
		cmocka_unit_test(test_bound_and_resend),
		cmocka_unit_test(test_send_with),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
