/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kmm/shared-jsonl.h"
#include "kmm/shared-strv.h"

static int collect(const char *frame, size_t len, void *userdata, struct kmm_error **err)
{
	char ***frames = userdata;

	assert_int_equal(strlen(frame), len);
	return kmm_strv_push(frames, frame);
}

static int stop_at_second(const char *frame, size_t len, void *userdata, struct kmm_error **err)
{
	int *n = userdata;

	if (++*n == 2)
		return kmm_error_make(err, ECANCELED, "stop");
	return 0;
}

static void test_frames_split_across_chunks(void **state)
{
	_cleanup_strv_free_ char **frames = NULL;
	const char *stream = "{\"type\":\"ADDED\"}\n{\"type\":\"MODIFIED\"}\n{\"type\":";
	struct kmm_jsonl s;

	kmm_jsonl_init(&s, 1024);
	/* One byte at a time: the hardest chunking. */
	for (size_t i = 0; i < strlen(stream); i++)
		assert_int_equal(kmm_jsonl_feed(&s, stream + i, 1, collect, &frames, NULL), 0);
	assert_int_equal(kmm_strv_length(frames), 2);
	assert_string_equal(frames[1], "{\"type\":\"MODIFIED\"}");
	assert_int_equal(kmm_jsonl_feed(&s, "\"DELETED\"}\n", 11, collect, &frames, NULL), 0);
	assert_string_equal(frames[2], "{\"type\":\"DELETED\"}");
	assert_int_equal(s.frames, 3);
	kmm_jsonl_free(&s);
}

static void test_blank_lines_and_crlf_are_skipped(void **state)
{
	_cleanup_strv_free_ char **frames = NULL;
	struct kmm_jsonl s;

	kmm_jsonl_init(&s, 1024);
	assert_int_equal(kmm_jsonl_feed(&s, "\n \r\n{}\r\n\n", 10, collect, &frames, NULL), 0);
	assert_int_equal(kmm_strv_length(frames), 1);
	assert_string_equal(frames[0], "{}\r");
	kmm_jsonl_free(&s);
}

static void test_finish_delivers_unterminated_tail(void **state)
{
	_cleanup_strv_free_ char **frames = NULL;
	struct kmm_jsonl s;

	kmm_jsonl_init(&s, 1024);
	kmm_jsonl_feed(&s, "{\"a\":1}", 7, collect, &frames, NULL);
	assert_int_equal(kmm_strv_length(frames), 0);
	assert_int_equal(kmm_jsonl_finish(&s, collect, &frames, NULL), 0);
	assert_int_equal(kmm_strv_length(frames), 1);
	assert_int_equal(kmm_jsonl_finish(&s, collect, &frames, NULL), 0);
	assert_int_equal(kmm_strv_length(frames), 1);
	kmm_jsonl_free(&s);
}

static void test_oversized_frame_is_an_error(void **state)
{
	_cleanup_error_ struct kmm_error *err = NULL;
	_cleanup_strv_free_ char **frames = NULL;
	char big[100];
	struct kmm_jsonl s;

	memset(big, 'x', sizeof(big));
	kmm_jsonl_init(&s, 64);
	assert_int_equal(kmm_jsonl_feed(&s, "{}\n", 3, collect, &frames, &err), 0);
	assert_int_equal(kmm_jsonl_feed(&s, big, sizeof(big), collect, &frames, &err), -E2BIG);
	assert_non_null(err);
	assert_string_equal(err->message, "frame 2 exceeds the limit of 64 bytes");
	kmm_jsonl_free(&s);
}

static void test_frame_exactly_at_cap_is_accepted(void **state)
{
	_cleanup_strv_free_ char **frames = NULL;
	char line[65];
	struct kmm_jsonl s;

	memset(line, 'y', 64);
	line[64] = '\n';
	kmm_jsonl_init(&s, 64);
	assert_int_equal(kmm_jsonl_feed(&s, line, sizeof(line), collect, &frames, NULL), 0);
	assert_int_equal(strlen(frames[0]), 64);
	kmm_jsonl_free(&s);
}

static void test_callback_error_stops_the_feed(void **state)
{
	_cleanup_error_ struct kmm_error *err = NULL;
	struct kmm_jsonl s;
	int n = 0;

	kmm_jsonl_init(&s, 64);
	assert_int_equal(kmm_jsonl_feed(&s, "1\n2\n3\n", 6, stop_at_second, &n, &err), -ECANCELED);
	assert_int_equal(n, 2);
	assert_string_equal(err->message, "stop");
	kmm_jsonl_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frames_split_across_chunks),
		cmocka_unit_test(test_blank_lines_and_crlf_are_skipped),
		cmocka_unit_test(test_finish_delivers_unterminated_tail),
		cmocka_unit_test(test_oversized_frame_is_an_error),
		cmocka_unit_test(test_frame_exactly_at_cap_is_accepted),
		cmocka_unit_test(test_callback_error_stops_the_feed),
	};
	return cmocka_run_group_tests_name("shared-jsonl", tests, NULL, NULL);
}
