/*
 * stream.c - GET /api/events/stream: the caller's tenant's events as
 * server-sent events.
 *
 * The stream is the tenant's own Redis stream (cm_bus_stream_key of the
 * verified tenant: a filter can only narrow it). Each open stream is a
 * deferred request on a worker thread with a timer (cm_req_every) that
 * reads what is new with a non-blocking XREAD from the last id sent, so
 * no thread waits on Redis. An event goes out as
 *   id: <stream entry id>\nevent: <event_type>\ndata: <envelope>\n\n
 * and a comment line ": heartbeat" after heartbeat_ms of silence. A
 * client resumes with Last-Event-ID (header, or ?last_event_id=): every
 * event after that id that is still retained. Without it the stream
 * starts with what is published after the connection. A client that
 * reads too slowly (over 1 MiB queued) is disconnected; it can resume.
 */
#include "evbus.h"

#include "common/buf.h"
#include "common/bus.h"
#include "common/http.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/metrics.h"
#include "common/redis.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

#define SSE_MAX_PATTERNS 16
#define SSE_PATTERN_LEN 64
#define SSE_BATCH 200
#define SSE_MAX_PENDING ((size_t)1 << 20)
#define STREAMS_GAUGE "bz_events_sse_streams"
#define STREAMS_HELP "Server-sent event streams open."

struct sse {
	struct cm_req *req;
	char key[CM_BUS_KEY_LEN];
	char last_id[64];
	char patterns[SSE_MAX_PATTERNS][SSE_PATTERN_LEN];
	int npatterns;
	int64_t quiet_since_ms;
};

static int poll_ms = 250;
static int heartbeat_ms = 15000;
static int max_streams = 1000;
static atomic_int nstreams;

void
bus_stream_configure(int poll, int heartbeat, int max)
{
	poll_ms = poll;
	heartbeat_ms = heartbeat;
	max_streams = max;
}

/* "lead.*,deal.won" -> patterns; CM_EINVAL for a bad one. */
static int
parse_types(const char *types, struct sse *s)
{
	const char *p = types;
	size_t n;

	while (p && *p) {
		n = strcspn(p, ",");
		if (n == 0 || n >= SSE_PATTERN_LEN ||
		    s->npatterns == SSE_MAX_PATTERNS)
			return CM_EINVAL;
		memcpy(s->patterns[s->npatterns], p, n);
		s->patterns[s->npatterns][n] = '\0';
		if (!bus_type_pattern_ok(s->patterns[s->npatterns]))
			return CM_EINVAL;
		s->npatterns++;
		p += n;
		if (*p == ',')
			p++;
	}
	return 0;
}

static bool
wanted(const struct sse *s, const char *type)
{
	int i;

	if (!s->npatterns)
		return true;
	for (i = 0; i < s->npatterns; i++)
		if (cm_bus_type_match(s->patterns[i], type))
			return true;
	return false;
}

static void
sse_free(struct sse *s)
{
	atomic_fetch_sub(&nstreams, 1);
	cm_metrics_gauge_add(STREAMS_GAUGE, STREAMS_HELP, NULL, -1);
	free(s);
}

/* The final call and the end of s. */
static void
sse_end(struct sse *s)
{
	cm_req_stream_end(s->req);
	sse_free(s);
}

static const char *
field(const redisReply *fields, const char *name)
{
	size_t i;

	if (!fields || fields->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (i = 0; i + 1 < fields->elements; i += 2)
		if (fields->element[i]->type == REDIS_REPLY_STRING &&
		    !strcmp(fields->element[i]->str, name) &&
		    fields->element[i + 1]->type == REDIS_REPLY_STRING)
			return fields->element[i + 1]->str;
	return NULL;
}

/* One event; data split at newlines (a compact envelope has none). */
static void
format_event(struct cm_buf *b, const char *id, const char *type,
	     const char *env)
{
	const char *p = env, *nl;

	cm_buf_printf(b, "id: %s\nevent: %s\n", id, type);
	do {
		nl = strchr(p, '\n');
		cm_buf_puts(b, "data: ");
		cm_buf_add(b, p, nl ? (size_t)(nl - p) : strlen(p));
		cm_buf_putc(b, '\n');
		p = nl ? nl + 1 : NULL;
	} while (p);
	cm_buf_putc(b, '\n');
}

/* What is new since last_id, formatted into b; 0 or CM_EIO. */
static int
read_new(struct sse *s, struct cm_buf *b)
{
	char errbuf[CM_ERRBUF_LEN] = "", count[16];
	const char *argv[] = { "XREAD",	  "COUNT", count,
			       "STREAMS", s->key,  s->last_id };
	redisReply *r, *entries;
	const char *type, *env;
	size_t i;

	snprintf(count, sizeof(count), "%d", SSE_BATCH);
	r = cm_redis_cmd(6, argv, NULL, errbuf);
	if (!r) {
		cm_log_warn("event stream read: %s", errbuf);
		return CM_EIO;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    r->element[0]->type == REDIS_REPLY_ARRAY &&
	    r->element[0]->elements == 2) {
		entries = r->element[0]->element[1];
		for (i = 0; entries->type == REDIS_REPLY_ARRAY &&
			    i < entries->elements;
		     i++) {
			redisReply *e = entries->element[i];

			if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
			    e->element[0]->type != REDIS_REPLY_STRING)
				continue;
			cm_strlcpy(s->last_id, e->element[0]->str,
				   sizeof(s->last_id));
			type = field(e->element[1], "type");
			env = field(e->element[1], "event");
			if (type && env && wanted(s, type))
				format_event(b, e->element[0]->str, type, env);
		}
	}
	freeReplyObject(r);
	return 0;
}

static void
sse_tick(struct cm_req *req, void *arg)
{
	struct sse *s = arg;
	struct cm_buf b = CM_BUF_INIT(4096);
	int64_t now = cm_now_ms();

	(void)req;
	if (cm_req_stream_pending(s->req) > SSE_MAX_PENDING) {
		cm_log_warn("event stream: the client reads too slowly");
		cm_buf_release(&b);
		sse_end(s);
		return;
	}
	if (read_new(s, &b) == 0 && b.len)
		s->quiet_since_ms = now;
	if (!b.len && now - s->quiet_since_ms >= heartbeat_ms) {
		cm_buf_puts(&b, ": heartbeat\n\n");
		s->quiet_since_ms = now;
	}
	if (b.len && cm_req_stream_write(s->req, b.data, b.len) < 0) {
		cm_buf_release(&b);
		sse_end(s);
		return;
	}
	cm_buf_release(&b);
}

/* The client left, or the server stops. */
static void
sse_close(struct cm_req *req, void *arg)
{
	(void)req;
	sse_end(arg);
}

/* The id of the newest entry, or "0-0" for an empty stream. */
static int
newest_id(const char *key, char out[64], char errbuf[CM_ERRBUF_LEN])
{
	const char *argv[] = { "XREVRANGE", key, "+", "-", "COUNT", "1" };
	redisReply *r = cm_redis_cmd(6, argv, NULL, errbuf);

	if (!r)
		return CM_EIO;
	cm_strlcpy(out, "0-0", 64);
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    r->element[0]->type == REDIS_REPLY_ARRAY &&
	    r->element[0]->elements == 2 &&
	    r->element[0]->element[0]->type == REDIS_REPLY_STRING)
		cm_strlcpy(out, r->element[0]->element[0]->str, 64);
	freeReplyObject(r);
	return 0;
}

void
bus_handle_stream(struct cm_req *req0, void *arg)
{
	const char *tenant = cm_req_tenant_id(req0);
	const char *last = cm_req_header(req0, "Last-Event-ID");
	const char *types = cm_req_query(req0, "types");
	char errbuf[CM_ERRBUF_LEN] = "";
	struct cm_req *req;
	struct sse *s;

	(void)arg;
	if (!last)
		last = cm_req_query(req0, "last_event_id");
	s = cm_xcalloc(1, sizeof(*s));
	if (types && parse_types(types, s) < 0) {
		free(s);
		cm_req_fail(req0, 400, "validation_failed",
			    "types must be up to %d comma-separated patterns "
			    "like lead.* or deal.won",
			    SSE_MAX_PATTERNS);
		cm_req_reply_json(req0, 400, NULL);
		return;
	}
	if (last && *last && !cm_bus_valid_entry_id(last)) {
		free(s);
		cm_req_fail(req0, 400, "validation_failed",
			    "Last-Event-ID must be an event id from this "
			    "stream");
		cm_req_reply_json(req0, 400, NULL);
		return;
	}
	cm_bus_stream_key(tenant, s->key);
	if (last && *last)
		cm_strlcpy(s->last_id, last, sizeof(s->last_id));
	else if (newest_id(s->key, s->last_id, errbuf) < 0) {
		free(s);
		cm_log_err("event stream: %s", errbuf);
		cm_req_fail(req0, 503, "dependency_unavailable",
			    "the event store is unavailable");
		cm_req_reply_json(req0, 503, NULL);
		return;
	}
	if (atomic_fetch_add(&nstreams, 1) >= max_streams) {
		atomic_fetch_sub(&nstreams, 1);
		free(s);
		cm_req_set_header(req0, "Retry-After", "30");
		cm_req_fail(req0, 503, "too_many_streams",
			    "too many event streams are open; retry later");
		cm_req_reply_json(req0, 503, NULL);
		return;
	}
	cm_metrics_gauge_add(STREAMS_GAUGE, STREAMS_HELP, NULL, 1);
	cm_req_set_header(req0, "Cache-Control", "no-cache");
	cm_req_set_header(req0, "X-Accel-Buffering", "no");
	req = cm_req_defer(req0);
	if (!req) { /* cannot happen: not replied, not deferred */
		sse_free(s);
		cm_req_reply_json(req0, 500, NULL);
		return;
	}
	s->req = req;
	s->quiet_since_ms = cm_now_ms();
	if (cm_req_stream_begin(req, 200, "text/event-stream") < 0 ||
	    cm_req_stream_write(req, "retry: 3000\n\n", 13) < 0 ||
	    cm_req_every(req, poll_ms, sse_tick, s) < 0) {
		sse_end(s);
		return;
	}
	cm_req_on_close(req, sse_close, s);
	sse_tick(req, s); /* a resumed stream catches up at once */
}
