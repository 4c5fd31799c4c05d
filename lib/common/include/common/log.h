/*
 * log.h - one JSON object per line on stderr.
 *
 * Each line: {"time","level","service","message"} plus "request_id" and
 * "tenant_id" when the calling thread is serving a request (the HTTP server
 * sets them with cm_log_set_context). The level is checked before any
 * formatting happens, so a disabled cm_log_debug costs one comparison.
 * Messages are lowercase, say what failed first, and never contain secrets.
 * Thread-safe: each line is written with a single write(2). The service name
 * and level are set once at start-up, before threads start.
 */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

#include <stdarg.h>

enum cm_log_level {
	CM_LOG_DEBUG = 0,
	CM_LOG_INFO,
	CM_LOG_WARN,
	CM_LOG_ERROR,
	CM_LOG_OFF
};

extern enum cm_log_level cm_log_threshold;

/* cm_log_init - set the service name (copied) and the level. */
void cm_log_init(const char *service, enum cm_log_level level);
/* cm_log_parse_level - "debug|info|warn|warning|error|off" (any case). */
int cm_log_parse_level(const char *s, enum cm_log_level *out);
/* cm_log_set_context - this thread's request/tenant ids (NULL clears). */
void cm_log_set_context(const char *request_id, const char *tenant_id);
/* cm_log_set_fd - where lines go (default 2); for tests. */
void cm_log_set_fd(int fd);
/* cm_log_write - format and write one line; use the macros instead. */
void cm_log_write(enum cm_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define CM_LOG_AT(lvl, ...)                               \
	do {                                              \
		if ((lvl) >= cm_log_threshold)            \
			cm_log_write((lvl), __VA_ARGS__); \
	} while (0)

#define cm_log_debug(...) CM_LOG_AT(CM_LOG_DEBUG, __VA_ARGS__)
#define cm_log_info(...) CM_LOG_AT(CM_LOG_INFO, __VA_ARGS__)
#define cm_log_warn(...) CM_LOG_AT(CM_LOG_WARN, __VA_ARGS__)
#define cm_log_err(...) CM_LOG_AT(CM_LOG_ERROR, __VA_ARGS__)

#endif
