/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Structured logging: one line per event, text or JSON, to stderr by default.
 *
 *     kmm_log(KMM_LOG_INFO, "module loaded", "module", "ns/name", "node", node, NULL);
 *
 * text: 2026-11-24T06:30:00.123Z INFO module loaded module=ns/name node=n1
 * json: {"ts":"2026-11-24T06:30:00.123Z","level":"info","msg":"module loaded",
 *        "module":"ns/name","node":"n1"}
 *
 * Fields are key/value string pairs ended by NULL. Values with spaces, quotes or
 * control characters are quoted in text format. The library itself only logs at
 * KMM_LOG_DEBUG (see docs/design/logging.md); binaries log everything else.
 *
 * The logger is process-global and thread-safe: each event is formatted into
 * one buffer and written with a single write() call, and configuration changes
 * are protected by a lock.
 */
#ifndef KMM_LOG_H
#define KMM_LOG_H

#include <stdarg.h>
#include <stdbool.h>

#include "kmm/shared-macro.h"

enum kmm_log_level {
	KMM_LOG_DEBUG = 0,
	KMM_LOG_INFO = 1,
	KMM_LOG_WARN = 2,
	KMM_LOG_ERROR = 3,
	KMM_LOG_OFF = 4,
};

enum kmm_log_format {
	KMM_LOG_FORMAT_TEXT = 0,
	KMM_LOG_FORMAT_JSON = 1,
};

/*
 * A sink receives each formatted line (without the trailing newline) along with
 * the event's level. The default sink writes line + '\n' to stderr.
 */
typedef void (*kmm_log_sink_fn)(enum kmm_log_level level, const char *line, void *userdata);

void kmm_log_set_level(enum kmm_log_level level);
enum kmm_log_level kmm_log_get_level(void);
void kmm_log_set_format(enum kmm_log_format format);

/* Installs a sink; NULL restores the stderr sink. */
void kmm_log_set_sink(kmm_log_sink_fn sink, void *userdata);

/* Parses "debug", "info", "warn"/"warning", "error", "off". Returns 0 or -EINVAL. */
int kmm_log_level_from_string(const char *s, enum kmm_log_level *ret_level);

/* Parses "text" or "json". Returns 0 or -EINVAL. */
int kmm_log_format_from_string(const char *s, enum kmm_log_format *ret_format);

const char *kmm_log_level_to_string(enum kmm_log_level level);

/* True if an event at this level would be emitted (cheap check before formatting). */
bool kmm_log_enabled(enum kmm_log_level level);

/* Logs msg with NULL-terminated key/value string pairs. A NULL value prints as "". */
void kmm_log(enum kmm_log_level level, const char *msg, ...) _sentinel_;
void kmm_logv(enum kmm_log_level level, const char *msg, va_list fields);

/* Convenience for the library's debug output. */
#define kmm_debug(msg, ...)                                                                        \
	do {                                                                                       \
		if (kmm_log_enabled(KMM_LOG_DEBUG))                                                \
			kmm_log(KMM_LOG_DEBUG, msg, ##__VA_ARGS__, NULL);                          \
	} while (0)

#endif
