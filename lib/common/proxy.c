/*
 * proxy.c - non-blocking forwarding of a request to an upstream service.
 *
 * One struct px per forwarded request, on the worker thread that received
 * it. Every cancellation (timeout, client gone, slow reader, stop) goes
 * through px->timer, so that evhttp is never re-entered from inside one of
 * its own callbacks. The final call on the deferred request and the
 * return of the connection to the pool happen once, in px_finish.
 *
 * A kept-alive upstream connection may be closed by the upstream just as
 * a request goes out on it: the request then fails before any answer
 * (EOF or a write error). Such a request is sent once more, on a new
 * connection, when its method is safe to repeat (GET, HEAD, OPTIONS, PUT,
 * DELETE: RFC 9110's idempotent ones); any other method answers 502, as
 * the upstream may have acted on it. The retry keeps the first deadline.
 */
#include "common/proxy.h"
#include "http_internal.h"
#include "http_wire.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/metrics.h"

#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/banned.h"

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_IDLE_S 60
#define DEFAULT_MAX_RESPONSE ((size_t)16 << 20)
#define MAX_IDLE_PER_UPSTREAM 64
#define MAX_STREAM_PENDING ((size_t)4 << 20)

#define ERRORS "bz_gateway_upstream_errors_total"
#define ERRORS_HELP "Upstream failures seen by the gateway, by kind."
#define REQUESTS "bz_gateway_requests_total"
#define REQUESTS_HELP "Requests forwarded upstream, by answer status."

/* Idle kept-alive connections to one upstream, on one worker. */
struct pool_entry {
	const struct cm_proxy_upstream *up;
	struct evhttp_connection *idle[MAX_IDLE_PER_UPSTREAM];
	int nidle;
};

struct pool {
	struct pool_entry *e;
	int n;
	bool registered;
};

static __thread struct pool tpool;

enum px_abort {
	PX_NONE = 0,
	PX_TIMEOUT,
	PX_GONE,
	PX_SLOW,
	PX_STOP,
	PX_TOO_LARGE,
	PX_BAD_STATUS,
	PX_RETRY /* not an end: the request goes out again (px_retry) */
};

struct px {
	struct cm_req *req;
	const struct cm_proxy_upstream *up;
	struct pool_entry *pe;
	struct evhttp_connection *evcon;
	struct evhttp_request *ureq; /* in flight; NULL once evhttp freed it */
	struct event *timer;
	struct evbuffer *body;		/* buffered answer */
	enum px_abort abort;		/* scheduled: px_timer_cb ends it */
	enum evhttp_request_error uerr; /* evhttp's failure, when failed */
	bool failed;
	bool head_seen;
	bool streaming;
	bool finished;
	bool reused;  /* the connection came from the pool */
	bool retried; /* sent a second time already */
	int status;
	int64_t deadline_ms;	  /* cm_now_ms() when it times out */
	enum evhttp_cmd_type cmd; /* for a retry: */
	char *path;		  /* NULL: not retryable */
	char *headers;		  /* "name\0value\0"... as first sent */
	size_t headers_len;
	char ctype[128];
};

/* ---- the pool ----------------------------------------------------------- */

static void
pool_free_all(void *arg)
{
	int i, j;

	(void)arg;
	for (i = 0; i < tpool.n; i++)
		for (j = 0; j < tpool.e[i].nidle; j++)
			evhttp_connection_free(tpool.e[i].idle[j]);
	free(tpool.e);
	tpool.e = NULL;
	tpool.n = 0;
	tpool.registered = false;
}

static struct pool_entry *
pool_entry(const struct cm_proxy_upstream *up)
{
	int i;

	for (i = 0; i < tpool.n; i++)
		if (tpool.e[i].up == up)
			return &tpool.e[i];
	if (!tpool.registered)
		tpool.registered =
			cm_http_worker_at_exit_(pool_free_all, NULL) == 0;
	tpool.e =
		cm_xrealloc(tpool.e, (size_t)(tpool.n + 1) * sizeof(*tpool.e));
	memset(&tpool.e[tpool.n], 0, sizeof(tpool.e[0]));
	tpool.e[tpool.n].up = up;
	return &tpool.e[tpool.n++];
}

static struct evhttp_connection *
pool_take(struct pool_entry *pe, struct event_base *base, bool *reused)
{
	const struct cm_proxy_upstream *up = pe->up;
	struct evhttp_connection *evcon;

	*reused = pe->nidle > 0;
	if (pe->nidle > 0)
		return pe->idle[--pe->nidle];
	evcon = evhttp_connection_base_new(base, NULL, up->host,
					   (unsigned short)up->port);
	if (!evcon)
		return NULL;
	evhttp_connection_set_timeout(evcon, up->idle_timeout_s > 0
						     ? up->idle_timeout_s
						     : DEFAULT_IDLE_S);
	evhttp_connection_set_retries(evcon, 0);
	return evcon;
}

static void
free_evcon_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	evhttp_connection_free(arg);
}

/* Back to the pool; with a full pool, freed from the loop (never inside
   one of its own callbacks). */
static void
pool_give(struct pool_entry *pe, struct evhttp_connection *evcon,
	  struct event_base *base)
{
	struct timeval zero = { 0, 0 };

	if (pe->nidle < MAX_IDLE_PER_UPSTREAM) {
		pe->idle[pe->nidle++] = evcon;
		return;
	}
	if (event_base_once(base, -1, EV_TIMEOUT, free_evcon_cb, evcon, &zero))
		cm_log_warn("proxy: leaking a connection to %s", pe->up->name);
}

/* ---- parsing ------------------------------------------------------------- */

int
cm_proxy_upstream_parse(const char *name, const char *url,
			struct cm_proxy_upstream *out,
			char errbuf[CM_ERRBUF_LEN])
{
	struct evhttp_uri *u;
	const char *host, *path, *scheme;
	int port;

	memset(out, 0, sizeof(*out));
	if (!name || !*name || strlen(name) >= sizeof(out->name) || !url) {
		cm_errf(errbuf, "upstream name or URL missing");
		return CM_EINVAL;
	}
	u = evhttp_uri_parse(url);
	if (!u) {
		cm_errf(errbuf, "%s: not a URL", name);
		return CM_EINVAL;
	}
	scheme = evhttp_uri_get_scheme(u);
	host = evhttp_uri_get_host(u);
	path = evhttp_uri_get_path(u);
	port = evhttp_uri_get_port(u);
	if (!scheme || strcmp(scheme, "http") || !host || !*host ||
	    strlen(host) >= sizeof(out->host) || port <= 0 || port > 65535 ||
	    evhttp_uri_get_userinfo(u) || evhttp_uri_get_query(u) ||
	    evhttp_uri_get_fragment(u) ||
	    (path && *path && strcmp(path, "/"))) {
		evhttp_uri_free(u);
		cm_errf(errbuf,
			"%s: want http://host:port without path or user info",
			name);
		return CM_EINVAL;
	}
	cm_strlcpy(out->name, name, sizeof(out->name));
	cm_strlcpy(out->host, host, sizeof(out->host));
	out->port = port;
	evhttp_uri_free(u);
	return 0;
}

/* ---- headers ------------------------------------------------------------- */

static bool
in_list(const char *name, const char *const *list)
{
	for (; list && *list; list++)
		if (!strcasecmp(name, *list))
			return true;
	return false;
}

static const char *const hop_by_hop[] = { "Connection",
					  "Keep-Alive",
					  "Proxy-Connection",
					  "Proxy-Authenticate",
					  "Proxy-Authorization",
					  "TE",
					  "Trailer",
					  "Transfer-Encoding",
					  "Upgrade",
					  "Host",
					  "Content-Length",
					  NULL };

static void
copy_request_headers(const struct cm_req *from, struct evhttp_request *to,
		     const struct cm_proxy_upstream *up,
		     const struct cm_proxy_request *pr, size_t body_len)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(to);
	const char *conn = cm_req_header(from, "Connection");
	const struct cm_wire_hdr *h;
	const char *const *kv;
	char buf[300];
	int i, n;

	h = cm_http_req_headers_(from, &n);
	for (i = 0; i < n; i++) {
		if (in_list(h[i].name, hop_by_hop) ||
		    in_list(h[i].name, pr->strip_headers) ||
		    (conn && cm_wire_list_has(conn, h[i].name)))
			continue;
		evhttp_add_header(out, h[i].name, h[i].value);
	}
	snprintf(buf, sizeof(buf), "%s:%d", up->host, up->port);
	evhttp_add_header(out, "Host", buf);
	for (kv = pr->set_headers; kv && kv[0] && kv[1]; kv += 2)
		evhttp_add_header(out, kv[0], kv[1]);
	if (body_len) {
		snprintf(buf, sizeof(buf), "%zu", body_len);
		evhttp_add_header(out, "Content-Length", buf);
	}
}

/* Response headers the gateway sets itself (http.c) or that are
   hop-by-hop. */
static const char *const not_copied[] = { "Date",
					  "Server",
					  "X-Request-ID",
					  "X-Content-Type-Options",
					  "X-Frame-Options",
					  "Referrer-Policy",
					  "Content-Type",
					  "Access-Control-Allow-Origin",
					  "Access-Control-Allow-Credentials",
					  "Access-Control-Expose-Headers",
					  "Vary",
					  NULL };

static bool
is_json(const char *ctype)
{
	return !strncasecmp(ctype, "application/json", 16);
}

static void
copy_response_headers(struct px *px)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(px->ureq);
	const char *conn = evhttp_find_header(in, "Connection");
	struct evkeyval *h;
	bool json = is_json(px->ctype);

	TAILQ_FOREACH(h, in, next)
	{
		if (in_list(h->key, hop_by_hop) ||
		    in_list(h->key, not_copied) ||
		    (conn && cm_wire_list_has(conn, h->key)))
			continue;
		/* JSON answers get the gateway's own cache and CSP headers */
		if (json && (!strcasecmp(h->key, "Cache-Control") ||
			     !strcasecmp(h->key, "Content-Security-Policy")))
			continue;
		cm_req_set_header(px->req, h->key, h->value);
	}
}

/* ---- the request's life -------------------------------------------------- */

static void
count_error(const struct px *px, const char *kind)
{
	struct cm_buf l = CM_BUF_INIT(128);

	cm_metrics_label_append(&l, "upstream", px->up->name);
	cm_metrics_label_append(&l, "kind", kind);
	cm_metrics_counter_add(ERRORS, ERRORS_HELP, cm_buf_str(&l), 1);
	cm_buf_release(&l);
}

static void
count_request(const struct px *px, int status)
{
	struct cm_buf l = CM_BUF_INIT(128);
	char st[16];

	snprintf(st, sizeof(st), "%d", status);
	cm_metrics_label_append(&l, "upstream", px->up->name);
	cm_metrics_label_append(&l, "status", st);
	cm_metrics_counter_add(REQUESTS, REQUESTS_HELP, cm_buf_str(&l), 1);
	cm_buf_release(&l);
}

/* The one end of a px: the final call on the request (an error reply when
   fail_status is set and nothing was sent yet), the connection back to
   the pool, the px freed. */
static void
px_finish(struct px *px, int fail_status, const char *code, const char *what)
{
	struct cm_req *req = px->req;
	struct event_base *base = cm_http_req_base_(req);
	const unsigned char *data;
	size_t len;

	if (px->finished)
		return;
	px->finished = true;
	if (px->timer)
		event_free(px->timer);
	px->timer = NULL;
	if (px->evcon)
		pool_give(px->pe, px->evcon, base);
	px->evcon = NULL;
	if (px->streaming) {
		cm_req_stream_end(req);
	} else if (fail_status) {
		count_request(px, fail_status);
		cm_req_fail(req, fail_status, code, "%s %s", px->up->name,
			    what);
		cm_req_reply_json(req, fail_status, NULL);
	} else {
		count_request(px, px->status);
		len = evbuffer_get_length(px->body);
		data = len ? evbuffer_pullup(px->body, -1) : NULL;
		cm_req_reply(req, px->status, px->ctype[0] ? px->ctype : NULL,
			     data, len);
	}
	evbuffer_free(px->body);
	free(px->path);
	free(px->headers);
	free(px);
}

static void
px_schedule_abort(struct px *px, enum px_abort why)
{
	if (px->abort != PX_NONE || px->finished)
		return;
	px->abort = why;
	event_active(px->timer, EV_TIMEOUT, 1);
}

static void px_done_cb(struct evhttp_request *ureq, void *arg);
static int px_head_cb(struct evhttp_request *ureq, void *arg);
static void px_chunk_cb(struct evhttp_request *ureq, void *arg);
static void px_error_cb(enum evhttp_request_error err, void *arg);

/* A new upstream request for px, with its callbacks; NULL on failure. */
static struct evhttp_request *
px_request_new(struct px *px)
{
	struct evhttp_request *ureq = evhttp_request_new(px_done_cb, px);

	if (!ureq)
		return NULL;
	evhttp_request_set_header_cb(ureq, px_head_cb);
	evhttp_request_set_chunked_cb(ureq, px_chunk_cb);
	evhttp_request_set_error_cb(ureq, px_error_cb);
	return ureq;
}

/* Keep what a retry sends again: the path and the headers as sent. */
static void
px_keep_for_retry(struct px *px, const char *path)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(px->ureq);
	struct cm_buf b = CM_BUF_INIT(1024);
	struct evkeyval *kv;

	TAILQ_FOREACH(kv, h, next)
	{
		cm_buf_add(&b, kv->key, strlen(kv->key) + 1);
		cm_buf_add(&b, kv->value, strlen(kv->value) + 1);
	}
	px->headers = cm_buf_detach(&b, &px->headers_len);
	px->path = cm_xstrdup(path);
}

/* Whether a failed request goes out once more (see the top). */
static bool
px_may_retry(const struct px *px)
{
	return px->path && px->reused && !px->retried && !px->head_seen &&
	       !px->streaming && px->failed &&
	       (px->uerr == EVREQ_HTTP_EOF ||
		px->uerr == EVREQ_HTTP_BUFFER_ERROR);
}

/* Send the request again on px's connection, which evhttp reset after the
   failure (so it connects anew); false when that cannot be done. */
static bool
px_retry(struct px *px)
{
	struct evkeyvalq *h;
	const char *p, *v, *end, *body;
	struct timeval tv;
	int64_t left;
	size_t len;

	px->retried = true;
	px->failed = false;
	px->abort = PX_NONE;
	if (!(px->ureq = px_request_new(px)))
		return false;
	h = evhttp_request_get_output_headers(px->ureq);
	end = px->headers + px->headers_len;
	for (p = px->headers; p < end; p = v + strlen(v) + 1) {
		v = p + strlen(p) + 1;
		evhttp_add_header(h, p, v);
	}
	cm_req_body(px->req, &body, &len);
	if (len)
		evbuffer_add(evhttp_request_get_output_buffer(px->ureq), body,
			     len);
	left = px->deadline_ms - cm_now_ms();
	if (left < 1)
		left = 1;
	tv.tv_sec = (time_t)(left / 1000);
	tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
	evtimer_add(px->timer, &tv);
	if (evhttp_make_request(px->evcon, px->ureq, px->cmd, px->path)) {
		px->ureq = NULL; /* evhttp freed it */
		return false;
	}
	count_error(px, "stale_connection_retried");
	return true;
}

/* Every abort ends here, outside evhttp's callbacks; so does a retry. */
static void
px_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px *px = arg;
	struct evhttp_request *ureq = px->ureq;

	(void)fd;
	(void)what;
	if (px->abort == PX_RETRY) {
		if (px_retry(px))
			return;
		count_error(px, "unavailable");
		px_finish(px, 502, "upstream_unavailable", "is unavailable");
		return;
	}
	if (px->abort == PX_NONE)
		px->abort = PX_TIMEOUT;
	px->ureq = NULL;
	if (ureq) /* calls px_error_cb with CANCEL, no done callback */
		evhttp_cancel_request(ureq);
	switch (px->abort) {
	case PX_TIMEOUT:
		count_error(px, "timeout");
		px_finish(px, 504, "upstream_timeout",
			  "did not answer in time");
		break;
	case PX_TOO_LARGE:
		count_error(px, "too_large");
		px_finish(px, 502, "upstream_response_too_large",
			  "sent a response that is too large");
		break;
	case PX_BAD_STATUS:
		count_error(px, "protocol");
		px_finish(px, 502, "upstream_unavailable",
			  "sent a malformed response");
		break;
	case PX_SLOW:
		cm_log_warn("proxy: ending a stream from %s: the client reads "
			    "too slowly",
			    px->up->name);
		px_finish(px, 0, NULL, NULL);
		break;
	default: /* client gone or server stopping */
		px_finish(px, 503, "unavailable", "request ended");
		break;
	}
}

static void
px_close_cb(struct cm_req *req, void *arg)
{
	struct px *px = arg;

	(void)req;
	px_schedule_abort(px, cm_req_client_gone(req) ? PX_GONE : PX_STOP);
}

/* The response head: decide between streaming and buffering. */
static int
px_head_cb(struct evhttp_request *ureq, void *arg)
{
	struct px *px = arg;
	struct evkeyvalq *in = evhttp_request_get_input_headers(ureq);
	const char *ct = evhttp_find_header(in, "Content-Type");
	const char *cl = evhttp_find_header(in, "Content-Length");
	int status = evhttp_request_get_response_code(ureq);

	cm_log_debug("proxy head %d from %s", status, px->up->name);
	if (px->abort != PX_NONE)
		return 0;
	px->head_seen = true;
	px->status = status;
	cm_strlcpy(px->ctype, ct ? ct : "", sizeof(px->ctype));
	if (status < 200 || status > 599) {
		px_schedule_abort(px, PX_BAD_STATUS);
		return 0;
	}
	copy_response_headers(px);
	evtimer_del(px->timer); /* the deadline was for the head */
	if ((ct && !strncasecmp(ct, "text/event-stream", 17)) ||
	    (!cl && status != 204 && status != 304 &&
	     strcmp(cm_req_method(px->req), "HEAD"))) {
		if (cm_req_stream_begin(px->req, status, ct) == 0) {
			px->streaming = true;
			count_request(px, status);
		} else {
			px_schedule_abort(px, PX_GONE);
		}
	}
	return 0;
}

static void
px_chunk_cb(struct evhttp_request *ureq, void *arg)
{
	struct px *px = arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(ureq);
	size_t n = evbuffer_get_length(in);
	size_t cap = px->up->max_response ? px->up->max_response
					  : DEFAULT_MAX_RESPONSE;

	if (px->abort != PX_NONE || !n)
		return;
	if (!px->streaming) {
		if (evbuffer_get_length(px->body) + n > cap) {
			px_schedule_abort(px, PX_TOO_LARGE);
			return;
		}
		evbuffer_add_buffer(px->body, in);
		return;
	}
	if (cm_req_stream_write(px->req, evbuffer_pullup(in, -1), n) < 0)
		px_schedule_abort(px, PX_GONE);
	else if (cm_req_stream_pending(px->req) > MAX_STREAM_PENDING)
		px_schedule_abort(px, PX_SLOW);
}

static void
px_error_cb(enum evhttp_request_error err, void *arg)
{
	struct px *px = arg;

	cm_log_debug("proxy error %d from %s", (int)err, px->up->name);
	if (err == EVREQ_HTTP_REQUEST_CANCEL)
		return;	 /* ours: px_timer_cb goes on */
	px->ureq = NULL; /* evhttp frees it; the done callback follows */
	px->failed = true;
	px->uerr = err;
}

static void
px_done_cb(struct evhttp_request *ureq, void *arg)
{
	struct px *px = arg;

	cm_log_debug("proxy done %p from %s", (void *)ureq, px->up->name);
	px->ureq = NULL; /* evhttp frees it after this callback */
	if (px->finished)
		return;
	if (px->abort != PX_NONE) {
		event_active(px->timer, EV_TIMEOUT, 1); /* it finishes there */
		return;
	}
	if (!ureq || px->failed || !px->head_seen) {
		if (px->streaming) {
			px_finish(px, 0, NULL, NULL);
		} else if (px_may_retry(px)) {
			px->abort = PX_RETRY; /* px_timer_cb sends it again */
			event_active(px->timer, EV_TIMEOUT, 1);
		} else if (px->failed && px->uerr == EVREQ_HTTP_TIMEOUT) {
			count_error(px, "timeout");
			px_finish(px, 504, "upstream_timeout",
				  "did not answer in time");
		} else {
			count_error(px, "unavailable");
			px_finish(px, 502, "upstream_unavailable",
				  "is unavailable");
		}
		return;
	}
	px_finish(px, 0, NULL, NULL);
}

static enum evhttp_cmd_type
method_cmd(const char *m)
{
	static const struct {
		const char *name;
		enum evhttp_cmd_type cmd;
	} map[] = {
		{ "GET", EVHTTP_REQ_GET },
		{ "HEAD", EVHTTP_REQ_HEAD },
		{ "POST", EVHTTP_REQ_POST },
		{ "PUT", EVHTTP_REQ_PUT },
		{ "PATCH", EVHTTP_REQ_PATCH },
		{ "DELETE", EVHTTP_REQ_DELETE },
		{ "OPTIONS", EVHTTP_REQ_OPTIONS },
	};
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(m, map[i].name))
			return map[i].cmd;
	return EVHTTP_REQ_GET;
}

/* RFC 9110's idempotent methods (9.2.2). */
static bool
method_idempotent(enum evhttp_cmd_type cmd)
{
	return cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD ||
	       cmd == EVHTTP_REQ_OPTIONS || cmd == EVHTTP_REQ_PUT ||
	       cmd == EVHTTP_REQ_DELETE;
}

void
cm_proxy_forward(struct cm_req *req0, const struct cm_proxy_upstream *up,
		 const struct cm_proxy_request *pr)
{
	struct event_base *base = cm_http_req_base_(req0);
	struct timeval tv;
	struct cm_req *req;
	const char *body;
	size_t body_len;
	struct px *px;
	int ms;

	req = cm_req_deferred(req0) ? req0 : cm_req_defer(req0);
	if (!req) {
		cm_req_fail(req0, 500, "internal", "internal error");
		cm_req_reply_json(req0, 500, NULL);
		return;
	}
	px = cm_xcalloc(1, sizeof(*px));
	px->req = req;
	px->up = up;
	px->body = evbuffer_new();
	px->timer = evtimer_new(base, px_timer_cb, px);
	px->pe = pool_entry(up);
	px->evcon = pool_take(px->pe, base, &px->reused);
	px->ureq = px->evcon ? px_request_new(px) : NULL;
	if (!px->body || !px->timer || !px->ureq) {
		if (px->ureq)
			evhttp_request_free(px->ureq);
		px->ureq = NULL;
		if (!px->body)
			px->body = evbuffer_new();
		count_error(px, "unavailable");
		px_finish(px, 502, "upstream_unavailable", "is unavailable");
		return;
	}
	cm_req_body(req, &body, &body_len);
	copy_request_headers(req, px->ureq, up, pr, body_len);
	if (body_len)
		evbuffer_add(evhttp_request_get_output_buffer(px->ureq), body,
			     body_len);
	px->cmd = method_cmd(cm_req_method(req));
	if (px->reused && method_idempotent(px->cmd))
		px_keep_for_retry(px, pr->path);
	cm_req_on_close(req, px_close_cb, px);
	ms = up->timeout_ms > 0 ? up->timeout_ms : DEFAULT_TIMEOUT_MS;
	px->deadline_ms = cm_now_ms() + ms;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(px->timer, &tv);
	if (evhttp_make_request(px->evcon, px->ureq, px->cmd, pr->path)) {
		/* evhttp freed the request */
		px->ureq = NULL;
		count_error(px, "unavailable");
		px_finish(px, 502, "upstream_unavailable", "is unavailable");
		return;
	}
	/* on a connection already open, the request goes out this round */
	cm_http_write_soon_(evhttp_connection_get_bufferevent(px->evcon));
}
