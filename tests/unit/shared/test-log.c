/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kmm/shared-log.h"
#include "lib/shared/log-internal.h"

struct captured {
	char line[70000];
	enum kmm_log_level level;
	int count;
};

static void capture(enum kmm_log_level level, const char *line, void *userdata)
{
	struct captured *c = userdata;

	snprintf(c->line, sizeof(c->line), "%s", line);
	c->level = level;
	c->count++;
}

static int setup(void **state)
{
	static struct captured c;

	memset(&c, 0, sizeof(c));
	kmm_log_set_sink(capture, &c);
	kmm_log_set_level(KMM_LOG_INFO);
	kmm_log_set_format(KMM_LOG_FORMAT_TEXT);
	*state = &c;
	return 0;
}

static int teardown(void **state)
{
	kmm_log_set_sink(NULL, NULL);
	return 0;
}

static void test_text_line_has_level_message_and_fields(void **state)
{
	struct captured *c = *state;

	kmm_log(KMM_LOG_INFO, "module loaded", "module", "ns/name", "node", "n1", NULL);
	assert_int_equal(c->count, 1);
	assert_int_equal(c->level, KMM_LOG_INFO);
	/* 2026-11-24T06:30:00.123Z info  module loaded module=ns/name node=n1 */
	assert_int_equal(strlen(c->line) > 24, 1);
	assert_int_equal(c->line[23], 'Z');
	assert_non_null(strstr(c->line, " info  module loaded module=ns/name node=n1"));
}

static void test_text_values_are_quoted_when_needed(void **state)
{
	struct captured *c = *state;

	kmm_log(KMM_LOG_WARN, "x", "reason", "two words", "empty", "", "nl", "a\nb", "null", NULL,
		NULL);
	assert_non_null(strstr(c->line, "reason=\"two words\""));
	assert_non_null(strstr(c->line, "empty=\"\""));
	assert_non_null(strstr(c->line, "nl=\"a\\nb\""));
	assert_non_null(strstr(c->line, "null=\"\""));
}

static void test_level_filtering(void **state)
{
	struct captured *c = *state;

	kmm_log(KMM_LOG_DEBUG, "hidden", NULL);
	assert_int_equal(c->count, 0);
	assert_false(kmm_log_enabled(KMM_LOG_DEBUG));
	kmm_log_set_level(KMM_LOG_DEBUG);
	kmm_debug("shown", "k", "v");
	assert_int_equal(c->count, 1);
	kmm_log_set_level(KMM_LOG_OFF);
	kmm_log(KMM_LOG_ERROR, "hidden too", NULL);
	assert_int_equal(c->count, 1);
}

static void test_json_line_is_valid_json(void **state)
{
	struct captured *c = *state;
	json_error_t jerr;
	json_t *obj;

	kmm_log_set_format(KMM_LOG_FORMAT_JSON);
	kmm_log(KMM_LOG_ERROR, "load \"failed\"", "module", "a\tb", "ctl", "\x01", NULL);
	obj = json_loads(c->line, 0, &jerr);
	assert_non_null(obj);
	assert_string_equal(json_string_value(json_object_get(obj, "level")), "error");
	assert_string_equal(json_string_value(json_object_get(obj, "msg")), "load \"failed\"");
	assert_string_equal(json_string_value(json_object_get(obj, "module")), "a\tb");
	assert_string_equal(json_string_value(json_object_get(obj, "ctl")), "\x01");
	assert_non_null(json_object_get(obj, "ts"));
	json_decref(obj);
}

static void test_oversized_json_event_stays_valid(void **state)
{
	struct captured *c = *state;
	char *big = malloc(100000);
	json_t *obj;

	memset(big, 'x', 99999);
	big[99999] = '\0';
	kmm_log_set_format(KMM_LOG_FORMAT_JSON);
	kmm_log(KMM_LOG_INFO, "big", "v", big, NULL);
	obj = json_loads(c->line, 0, NULL);
	assert_non_null(obj);
	assert_string_equal(json_string_value(json_object_get(obj, "msg")), "log event truncated");
	json_decref(obj);
	free(big);
}

static void check_against_libc(int64_t secs)
{
	time_t t = (time_t)secs;
	struct tm tm;
	int64_t year;
	unsigned month, day, sod;

	assert_non_null(gmtime_r(&t, &tm));
	kmm_log_utc_civil(secs, &year, &month, &day, &sod);
	assert_int_equal(year, (int64_t)tm.tm_year + 1900);
	assert_int_equal(month, (unsigned)tm.tm_mon + 1);
	assert_int_equal(day, (unsigned)tm.tm_mday);
	assert_int_equal(sod, (unsigned)(tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec));
}

static void test_utc_timestamps_match_libc(void **state)
{
	static const int64_t edges[] = {
		0,
		-1,
		86399,
		86400,
		951782400 /* 2000-02-29 */,
		951868799,
		4107542399,
		4102444800,
		-2208988800 /* 1900-01-01 */,
		1798675200 /* 2026-12-31 */,
		253402300799 /* 9999-12-31T23:59:59 */,
	};
	uint64_t x = 88172645463325252ULL;

	(void)state;
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		check_against_libc(edges[i]);
	/* xorshift: reproducible spread over 1600..2400 */
	for (int i = 0; i < 200000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		check_against_libc((int64_t)(x % 25246080000ULL) - 11676096000LL);
	}
}

static void test_parsing_levels_and_formats(void **state)
{
	enum kmm_log_level l;
	enum kmm_log_format f;

	assert_int_equal(kmm_log_level_from_string("warning", &l), 0);
	assert_int_equal(l, KMM_LOG_WARN);
	assert_int_equal(kmm_log_level_from_string("DEBUG", &l), 0);
	assert_int_equal(l, KMM_LOG_DEBUG);
	assert_int_equal(kmm_log_level_from_string("loud", &l), -EINVAL);
	assert_int_equal(kmm_log_format_from_string("json", &f), 0);
	assert_int_equal(f, KMM_LOG_FORMAT_JSON);
	assert_int_equal(kmm_log_format_from_string("xml", &f), -EINVAL);
	assert_string_equal(kmm_log_level_to_string(KMM_LOG_ERROR), "error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_text_line_has_level_message_and_fields, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_text_values_are_quoted_when_needed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_level_filtering, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_line_is_valid_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversized_json_event_stays_valid, setup,
						teardown),
		cmocka_unit_test(test_parsing_levels_and_formats),
		cmocka_unit_test(test_utc_timestamps_match_libc),
	};
	return cmocka_run_group_tests_name("shared-log", tests, NULL, NULL);
}
