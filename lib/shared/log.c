/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "kmm/shared-buf.h"
#include "kmm/shared-log.h"
#include "lib/testable.h"
#include "log-internal.h"

/* One event never grows past this; longer values are cut and marked. */
#define LOG_LINE_MAX (64 * 1024)

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static enum kmm_log_level log_level = KMM_LOG_INFO;
static enum kmm_log_format log_format = KMM_LOG_FORMAT_TEXT;
static kmm_log_sink_fn log_sink;
static void *log_sink_userdata;

static const char *const level_names[] = {
	[KMM_LOG_DEBUG] = "debug", [KMM_LOG_INFO] = "info", [KMM_LOG_WARN] = "warn",
	[KMM_LOG_ERROR] = "error", [KMM_LOG_OFF] = "off",
};

const char *kmm_log_level_to_string(enum kmm_log_level level)
{
	if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
		return "unknown";
	return level_names[level];
}

int kmm_log_level_from_string(const char *s, enum kmm_log_level *ret_level)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*ret_level = (enum kmm_log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "warning") == 0) {
		*ret_level = KMM_LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

int kmm_log_format_from_string(const char *s, enum kmm_log_format *ret_format)
{
	if (strcmp(s, "text") == 0)
		*ret_format = KMM_LOG_FORMAT_TEXT;
	else if (strcmp(s, "json") == 0)
		*ret_format = KMM_LOG_FORMAT_JSON;
	else
		return -EINVAL;
	return 0;
}

void kmm_log_set_level(enum kmm_log_level level)
{
	pthread_mutex_lock(&log_lock);
	log_level = level;
	pthread_mutex_unlock(&log_lock);
}

enum kmm_log_level kmm_log_get_level(void)
{
	enum kmm_log_level l;

	pthread_mutex_lock(&log_lock);
	l = log_level;
	pthread_mutex_unlock(&log_lock);
	return l;
}

void kmm_log_set_format(enum kmm_log_format format)
{
	pthread_mutex_lock(&log_lock);
	log_format = format;
	pthread_mutex_unlock(&log_lock);
}

void kmm_log_set_sink(kmm_log_sink_fn sink, void *userdata)
{
	pthread_mutex_lock(&log_lock);
	log_sink = sink;
	log_sink_userdata = userdata;
	pthread_mutex_unlock(&log_lock);
}

bool kmm_log_enabled(enum kmm_log_level level)
{
	return level != KMM_LOG_OFF && level >= kmm_log_get_level();
}

/*
 * UTC broken down by arithmetic (days to civil date, proleptic Gregorian):
 * glibc's gmtime_r() reads and parses /etc/localtime on its first call, which
 * short-lived binaries such as kmm-worker would pay for every log line's
 * first timestamp.
 */
KMM_TESTABLE void kmm_log_utc_civil(int64_t secs, int64_t *year, unsigned *month, unsigned *day,
				    unsigned *sod)
{
	int64_t days = secs / 86400, rem = secs % 86400;

	if (rem < 0) {
		rem += 86400;
		days--;
	}
	*sod = (unsigned)rem;
	days += 719468; /* 0000-03-01 to 1970-01-01 */
	int64_t era = (days >= 0 ? days : days - 146096) / 146097;
	unsigned doe = (unsigned)(days - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;

	*day = doy - (153 * mp + 2) / 5 + 1;
	*month = mp < 10 ? mp + 3 : mp - 9;
	*year = (int64_t)yoe + era * 400 + (*month <= 2);
}

static void append_timestamp(struct kmm_buf *b)
{
	struct timespec ts;
	int64_t year;
	unsigned month, day, sod;

	clock_gettime(CLOCK_REALTIME, &ts);
	kmm_log_utc_civil((int64_t)ts.tv_sec, &year, &month, &day, &sod);
	(void)kmm_buf_printf(b, "%04lld-%02u-%02uT%02u:%02u:%02u.%03ldZ", (long long)year, month,
			     day, sod / 3600, sod / 60 % 60, sod % 60, ts.tv_nsec / 1000000);
}

static void append_json_string(struct kmm_buf *b, const char *s)
{
	(void)kmm_buf_append(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			(void)kmm_buf_append_str(b, "\\\"");
			break;
		case '\\':
			(void)kmm_buf_append_str(b, "\\\\");
			break;
		case '\n':
			(void)kmm_buf_append_str(b, "\\n");
			break;
		case '\r':
			(void)kmm_buf_append_str(b, "\\r");
			break;
		case '\t':
			(void)kmm_buf_append_str(b, "\\t");
			break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				(void)kmm_buf_printf(b, "\\u%04x", *p);
			else
				(void)kmm_buf_append(b, p, 1);
		}
	}
	(void)kmm_buf_append(b, "\"", 1);
}

static bool needs_quotes(const char *s)
{
	if (!*s)
		return true;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
			return true;
	}
	return false;
}

static void append_text_value(struct kmm_buf *b, const char *s)
{
	/* Quoted text values use the same escapes as JSON strings. */
	if (needs_quotes(s))
		append_json_string(b, s);
	else
		(void)kmm_buf_append_str(b, s);
}

static void emit(enum kmm_log_level level, const char *line)
{
	kmm_log_sink_fn sink;
	void *userdata;

	pthread_mutex_lock(&log_lock);
	sink = log_sink;
	userdata = log_sink_userdata;
	pthread_mutex_unlock(&log_lock);

	if (sink) {
		sink(level, line, userdata);
		return;
	}
	/* One writev per event keeps lines from different threads whole. */
	struct iovec iov[2] = {
		{ .iov_base = (void *)line, .iov_len = strlen(line) },
		{ .iov_base = (void *)"\n", .iov_len = 1 },
	};
	ssize_t n;
	do
		n = writev(STDERR_FILENO, iov, 2);
	while (n < 0 && errno == EINTR);
}

void kmm_logv(enum kmm_log_level level, const char *msg, va_list fields)
{
	enum kmm_log_format format;
	struct kmm_buf b;
	const char *key;

	if (!kmm_log_enabled(level))
		return;
	pthread_mutex_lock(&log_lock);
	format = log_format;
	pthread_mutex_unlock(&log_lock);

	kmm_buf_init(&b, LOG_LINE_MAX);
	if (format == KMM_LOG_FORMAT_JSON) {
		(void)kmm_buf_append_str(&b, "{\"ts\":\"");
		append_timestamp(&b);
		(void)kmm_buf_printf(
		    &b, "\",\"level\":\"%s\",\"msg\":", kmm_log_level_to_string(level));
		append_json_string(&b, msg);
		while ((key = va_arg(fields, const char *))) {
			const char *value = va_arg(fields, const char *);

			(void)kmm_buf_append(&b, ",", 1);
			append_json_string(&b, key);
			(void)kmm_buf_append(&b, ":", 1);
			append_json_string(&b, value ? value : "");
		}
		if (kmm_buf_append(&b, "}", 1) < 0) {
			/* Cut short: still one valid JSON object. */
			kmm_buf_reset(&b);
			(void)kmm_buf_printf(&b,
					     "{\"level\":\"%s\",\"msg\":\"log event truncated\"}",
					     kmm_log_level_to_string(level));
		}
	} else {
		append_timestamp(&b);
		(void)kmm_buf_printf(&b, " %-5s ", kmm_log_level_to_string(level));
		(void)kmm_buf_append_str(&b, msg);
		while ((key = va_arg(fields, const char *))) {
			const char *value = va_arg(fields, const char *);

			(void)kmm_buf_printf(&b, " %s=", key);
			append_text_value(&b, value ? value : "");
		}
	}
	if (b.data)
		emit(level, b.data);
	kmm_buf_free(&b);
}

void kmm_log(enum kmm_log_level level, const char *msg, ...)
{
	va_list ap;

	va_start(ap, msg);
	kmm_logv(level, msg, ap);
	va_end(ap);
}
