/* log.c - JSON lines on stderr, level-gated, with per-thread request context.
 */
#include "common/log.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/mem.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/banned.h"

enum cm_log_level cm_log_threshold = CM_LOG_INFO;
static char log_service[64] = "unknown";
static int log_fd = 2;
static _Thread_local char log_request_id[128];
static _Thread_local char log_tenant_id[64];

static const char *const level_names[] = { "debug", "info", "warn", "error",
					   "off" };

void
cm_log_init(const char *service, enum cm_log_level level)
{
	cm_strlcpy(log_service, service ? service : "unknown",
		   sizeof(log_service));
	cm_log_threshold = level;
}

int
cm_log_parse_level(const char *s, enum cm_log_level *out)
{
	int i;

	if (!s)
		return CM_EINVAL;
	if (!strcasecmp(s, "warning")) {
		*out = CM_LOG_WARN;
		return 0;
	}
	for (i = CM_LOG_DEBUG; i <= CM_LOG_OFF; i++) {
		if (!strcasecmp(s, level_names[i])) {
			*out = (enum cm_log_level)i;
			return 0;
		}
	}
	return CM_EINVAL;
}

void
cm_log_set_context(const char *request_id, const char *tenant_id)
{
	cm_strlcpy(log_request_id, request_id ? request_id : "",
		   sizeof(log_request_id));
	cm_strlcpy(log_tenant_id, tenant_id ? tenant_id : "",
		   sizeof(log_tenant_id));
}

void
cm_log_set_fd(int fd)
{
	log_fd = fd;
}

/* The time with milliseconds; the second part is cached per thread. */
static void
log_time(char out[32])
{
	static _Thread_local time_t last_sec = -1;
	static _Thread_local char base[24];
	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	if (tv.tv_sec != last_sec) {
		gmtime_r(&tv.tv_sec, &tm);
		strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
		last_sec = tv.tv_sec;
	}
	snprintf(out, 32, "%s.%03dZ", base, (int)(tv.tv_usec / 1000));
}

/* A bounded line on the stack: no allocation per log line. Appends stop
   at the end of the buffer, leaving room for the closing "}\n". */
struct log_line {
	char buf[16384];
	size_t len;
};

#define LINE_ROOM(l) (sizeof((l)->buf) - 3 - (l)->len)

static void
line_raw(struct log_line *l, const char *s)
{
	size_t n = strlen(s);

	if (n > LINE_ROOM(l))
		n = LINE_ROOM(l);
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void
line_json(struct log_line *l, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	char esc[7];

	line_raw(l, "\"");
	for (; *p && LINE_ROOM(l) > 7; p++) {
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			esc[2] = '\0';
		} else if (*p < 0x20) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 15];
			esc[6] = '\0';
		} else {
			l->buf[l->len++] = (char)*p;
			continue;
		}
		line_raw(l, esc);
	}
	line_raw(l, "\"");
}

void
cm_log_write(enum cm_log_level level, const char *fmt, ...)
{
	struct log_line line;
	char msg[8192];
	char ts[32];
	va_list ap;
	ssize_t n;

	if (level < cm_log_threshold || level >= CM_LOG_OFF)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap); /* long messages are cut */
	va_end(ap);
	log_time(ts);
	line.len = 0;
	line_raw(&line, "{\"time\":\"");
	line_raw(&line, ts);
	line_raw(&line, "\",\"level\":\"");
	line_raw(&line, level_names[level]);
	line_raw(&line, "\",\"service\":");
	line_json(&line, log_service);
	line_raw(&line, ",\"message\":");
	line_json(&line, msg);
	if (log_request_id[0]) {
		line_raw(&line, ",\"request_id\":");
		line_json(&line, log_request_id);
	}
	if (log_tenant_id[0]) {
		line_raw(&line, ",\"tenant_id\":");
		line_json(&line, log_tenant_id);
	}
	memcpy(line.buf + line.len, "}\n", 2);
	line.len += 2;
	n = write(log_fd, line.buf, line.len);
	(void)n;
}
