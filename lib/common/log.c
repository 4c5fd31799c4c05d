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

static void
log_time(char out[32])
{
	struct timeval tv;
	struct tm tm;
	char base[24];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 32, "%s.%03dZ", base, (int)(tv.tv_usec / 1000));
}

void
cm_log_write(enum cm_log_level level, const char *fmt, ...)
{
	struct cm_buf line = CM_BUF_INIT(65536);
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
	cm_buf_printf(&line,
		      "{\"time\":\"%s\",\"level\":\"%s\",\"service\":", ts,
		      level_names[level]);
	cm_buf_json_str(&line, log_service);
	cm_buf_puts(&line, ",\"message\":");
	cm_buf_json_str(&line, msg);
	if (log_request_id[0]) {
		cm_buf_puts(&line, ",\"request_id\":");
		cm_buf_json_str(&line, log_request_id);
	}
	if (log_tenant_id[0]) {
		cm_buf_puts(&line, ",\"tenant_id\":");
		cm_buf_json_str(&line, log_tenant_id);
	}
	cm_buf_puts(&line, "}\n");
	if (cm_buf_error(&line) == 0) {
		n = write(log_fd, line.data, line.len);
		(void)n;
	}
	cm_buf_release(&line);
}
