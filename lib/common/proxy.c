/*
 * proxy.c - non-blocking forwarding of a request to an upstream service.
 *
 * One struct px per forwarded request, on the worker thread that received
 * it, and one struct uconn per upstream connection (ours: the request is
 * written from one buffer, the response head parsed in place with
 * http_wire.c and the body passed on as it arrives). Every end that does
 * not come from the connection's own read (timeout, client gone, slow
 * reader, stop, a failure to retry) goes through px->timer, so that a
 * connection is never closed under one of its own callbacks. The final
 * call on the deferred request and the return of the connection to the
 * pool happen once, in px_finish. A request on a kept-alive connection
 * is written when the worker's round of callbacks ends, with the others
 * of that round and the server's replies (cm_http_soon_), so that an
 * upstream woken by the first finds the others there too.
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

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h> /* evhttp_uri_parse */

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/banned.h"

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_IDLE_S 60
#define DEFAULT_MAX_RESPONSE ((size_t)16 << 20)
#define MAX_IDLE_PER_UPSTREAM 64
#define MAX_STREAM_PENDING ((size_t)4 << 20)
#define HEAD_MAX (64 * 1024) /* an upstream's response head */
#define READ_CHUNK 16384
#define UCONN_MAGIC 0x55434f4eu
#define ADDR_TTL_MS 30000 /* an upstream's looked-up address is reused */
#define SWEEP_MS 5000	  /* idle pooled connections are checked */

#define ERRORS "bz_gateway_upstream_errors_total"
#define ERRORS_HELP "Upstream failures seen by the gateway, by kind."
#define REQUESTS "bz_gateway_requests_total"
#define REQUESTS_HELP "Requests forwarded upstream, by answer status."

struct px;
struct pool_entry;

/* A connection to an upstream: idle in the pool, or carrying one px. */
struct uconn {
	unsigned magic;
	int fd;
	struct event rd, wr;
	bool writing;	 /* wr is registered */
	bool connecting; /* connect() not done yet */
	struct pool_entry *pe;
	struct px *px;
	char *in;
	size_t in_len, in_cap;
	int64_t idle_since_ms;
};

/* Idle kept-alive connections to one upstream, on one worker, and the
   upstream's address as last looked up. */
struct pool_entry {
	const struct cm_proxy_upstream *up;
	struct uconn *idle[MAX_IDLE_PER_UPSTREAM];
	int nidle;
	struct sockaddr_storage addr;
	socklen_t addr_len;    /* 0: look it up */
	int64_t addr_until_ms; /* looked up again after */
};

struct pool {
	struct pool_entry *e;
	int n;
	bool registered;
	struct event *sweep; /* closes connections idle too long */
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
	PX_FAILED, /* the connection failed: retry or 502 */
};

/* How the response body ends. */
enum body_end {
	B_NONE,
	B_LENGTH,
	B_CHUNKED,
	B_CLOSE
};

struct px {
	struct cm_req *req;
	const struct cm_proxy_upstream *up;
	struct pool_entry *pe;
	struct uconn *uc;
	struct event *timer;
	enum px_abort abort; /* scheduled: px_timer_cb ends it */
	bool head_seen;
	bool streaming;
	bool finished;
	bool reused;	/* the connection came from the pool */
	bool retried;	/* sent a second time already */
	bool retryable; /* an idempotent method */
	bool head_only; /* a HEAD request: no body comes back */
	bool keep;	/* the upstream keeps the connection */
	bool got_bytes; /* something of a response arrived */
	int status;
	int64_t deadline_ms; /* cm_now_ms() when it times out */
	char *out;	     /* the request as sent */
	size_t out_len, sent;
	enum body_end body_end;
	uint64_t left; /* B_LENGTH: body bytes still to come */
	struct cm_wire_chunks chunks;
	size_t scan; /* cm_wire_head_end's progress */
	char *body;  /* buffered answer */
	size_t body_len, body_cap;
	char ctype[128];
	struct cm_http_soon send; /* the write when the round ends */
};

/* ---- connections --------------------------------------------------------- */

/* How long a connection may sit idle (in the pool, or mid-response). */
static int64_t
idle_ms(const struct cm_proxy_upstream *up)
{
	return (int64_t)(up->idle_timeout_s > 0 ? up->idle_timeout_s
						: DEFAULT_IDLE_S) *
	       1000;
}

static void uconn_read_cb(evutil_socket_t fd, short what, void *arg);
static void uconn_write_cb(evutil_socket_t fd, short what, void *arg);

static void
uconn_free(struct uconn *u)
{
	event_del(&u->rd);
	event_del(&u->wr);
	close(u->fd);
	free(u->in);
	u->magic = 0;
	free(u);
}

/* pe's upstream address: the one looked up within ADDR_TTL_MS, else
   looked up now (blocking: once per upstream, worker and 30 s, and after
   a failed connect). false when the name does not resolve. */
static bool
pe_addr(struct pool_entry *pe)
{
	struct addrinfo hints, *ai = NULL;
	char port[16];
	int64_t now = cm_now_ms();

	if (pe->addr_len && now < pe->addr_until_ms)
		return true;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", pe->up->port);
	if (getaddrinfo(pe->up->host, port, &hints, &ai) || !ai ||
	    ai->ai_addrlen > sizeof(pe->addr)) {
		if (ai)
			freeaddrinfo(ai);
		pe->addr_len = 0;
		return false;
	}
	memcpy(&pe->addr, ai->ai_addr, ai->ai_addrlen);
	pe->addr_len = ai->ai_addrlen;
	pe->addr_until_ms = now + ADDR_TTL_MS;
	freeaddrinfo(ai);
	return true;
}

/* A new connection to pe's upstream (non-blocking connect). */
static struct uconn *
uconn_new(struct pool_entry *pe, struct event_base *base)
{
	struct uconn *u;
	int fd, one = 1;

	if (!pe_addr(pe))
		return NULL;
	fd = socket(pe->addr.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || (connect(fd, (const struct sockaddr *)&pe->addr,
			       pe->addr_len) < 0 &&
		       errno != EINPROGRESS)) {
		if (fd >= 0)
			close(fd);
		pe->addr_len = 0; /* look the name up again next time */
		return NULL;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	u = cm_xcalloc(1, sizeof(*u));
	u->magic = UCONN_MAGIC;
	u->fd = fd;
	u->pe = pe;
	u->connecting = true;
	event_assign(&u->rd, base, fd, EV_READ | EV_PERSIST, uconn_read_cb, u);
	event_assign(&u->wr, base, fd, EV_WRITE | EV_PERSIST, uconn_write_cb,
		     u);
	event_add(&u->rd, NULL);
	return u;
}

/* ---- the pool ------------------------------------------------------------ */

static void
pool_free_all(void *arg)
{
	int i, j;

	(void)arg;
	for (i = 0; i < tpool.n; i++)
		for (j = 0; j < tpool.e[i].nidle; j++)
			uconn_free(tpool.e[i].idle[j]);
	free(tpool.e);
	if (tpool.sweep)
		event_free(tpool.sweep);
	tpool.sweep = NULL;
	tpool.e = NULL;
	tpool.n = 0;
	tpool.registered = false;
}

static void pool_sweep_cb(evutil_socket_t fd, short what, void *arg);

/* Look at the pool again in SWEEP_MS (the timer is made on first use, on
   base). */
static void
sweep_arm(struct event_base *base)
{
	struct timeval tv = { SWEEP_MS / 1000, (SWEEP_MS % 1000) * 1000 };

	if (!tpool.sweep)
		tpool.sweep = evtimer_new(base, pool_sweep_cb, NULL);
	if (tpool.sweep && !evtimer_pending(tpool.sweep, NULL))
		evtimer_add(tpool.sweep, &tv);
}

/* Every SWEEP_MS while connections are pooled: close those idle longer
   than their upstream's idle timeout (the upstream may keep them open). */
static void
pool_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	int64_t now = cm_now_ms();
	struct pool_entry *pe;
	bool any = false;
	int i, j;

	(void)fd;
	(void)what;
	(void)arg;
	for (i = 0; i < tpool.n; i++) {
		pe = &tpool.e[i];
		for (j = 0; j < pe->nidle;) {
			if (now - pe->idle[j]->idle_since_ms >=
			    idle_ms(pe->up)) {
				uconn_free(pe->idle[j]);
				pe->idle[j] = pe->idle[--pe->nidle];
			} else {
				j++;
			}
		}
		any = any || pe->nidle > 0;
	}
	if (any)
		sweep_arm(NULL);
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

static void
pool_remove(struct pool_entry *pe, struct uconn *u)
{
	int i;

	for (i = 0; i < pe->nidle; i++)
		if (pe->idle[i] == u) {
			pe->idle[i] = pe->idle[--pe->nidle];
			return;
		}
}

/* The most recently used idle connection (closing those idle too long),
   else a new one. */
static struct uconn *
pool_take(struct pool_entry *pe, struct event_base *base, bool *reused)
{
	int64_t max_idle = idle_ms(pe->up);
	struct uconn *u;

	while (pe->nidle > 0) {
		u = pe->idle[--pe->nidle];
		if (cm_now_ms() - u->idle_since_ms < max_idle) {
			*reused = true;
			return u;
		}
		uconn_free(u);
	}
	*reused = false;
	return uconn_new(pe, base);
}

static void
pool_give(struct pool_entry *pe, struct uconn *u)
{
	u->px = NULL;
	u->in_len = 0;
	if (pe->nidle == MAX_IDLE_PER_UPSTREAM) {
		uconn_free(u);
		return;
	}
	u->idle_since_ms = cm_now_ms();
	pe->idle[pe->nidle++] = u;
	sweep_arm(event_get_base(&u->rd));
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
header_put(struct cm_buf *b, const char *name, const char *value)
{
	if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
		return; /* never split a line */
	cm_buf_puts(b, name);
	cm_buf_puts(b, ": ");
	cm_buf_puts(b, value);
	cm_buf_puts(b, "\r\n");
}

/* The whole request as it goes upstream: line, headers, body. */
static void
request_build(struct px *px, const struct cm_proxy_request *pr)
{
	struct cm_buf b = CM_BUF_INIT((size_t)64 << 20);
	const char *conn = cm_req_header(px->req, "Connection");
	const struct cm_wire_hdr *h;
	const char *const *kv;
	const char *body;
	size_t body_len;
	char num[300];
	int i, n;

	cm_req_body(px->req, &body, &body_len);
	cm_buf_puts(&b, cm_req_method(px->req));
	cm_buf_puts(&b, " ");
	cm_buf_puts(&b, pr->path);
	cm_buf_puts(&b, " HTTP/1.1\r\n");
	h = cm_http_req_headers_(px->req, &n);
	for (i = 0; i < n; i++)
		if (!in_list(h[i].name, hop_by_hop) &&
		    !in_list(h[i].name, pr->strip_headers) &&
		    !(conn && cm_wire_list_has(conn, h[i].name)))
			header_put(&b, h[i].name, h[i].value);
	snprintf(num, sizeof(num), "%s:%d", px->up->host, px->up->port);
	header_put(&b, "Host", num);
	for (kv = pr->set_headers; kv && kv[0] && kv[1]; kv += 2)
		header_put(&b, kv[0], kv[1]);
	if (body_len) {
		snprintf(num, sizeof(num), "%zu", body_len);
		header_put(&b, "Content-Length", num);
	}
	cm_buf_puts(&b, "\r\n");
	cm_buf_add(&b, body, body_len);
	px->out = cm_buf_detach(&b, &px->out_len);
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
copy_response_headers(struct px *px, const struct cm_wire_head *h)
{
	const char *conn = cm_wire_find(h->hdrs, h->nhdrs, "Connection");
	bool json = is_json(px->ctype);
	int i;

	for (i = 0; i < h->nhdrs; i++) {
		const char *name = h->hdrs[i].name;

		if (in_list(name, hop_by_hop) || in_list(name, not_copied) ||
		    (conn && cm_wire_list_has(conn, name)))
			continue;
		/* JSON answers get the gateway's own cache and CSP headers */
		if (json && (!strcasecmp(name, "Cache-Control") ||
			     !strcasecmp(name, "Content-Security-Policy")))
			continue;
		cm_req_set_header(px->req, name, h->hdrs[i].value);
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

/* Let go of px's connection: back to the pool when the exchange ended
   cleanly on a kept-alive connection, else closed. */
static void
px_release_conn(struct px *px, bool clean)
{
	struct uconn *u = px->uc;

	if (!u)
		return;
	px->uc = NULL;
	u->px = NULL;
	if (clean && px->keep && !u->in_len && !u->writing)
		pool_give(px->pe, u);
	else
		uconn_free(u);
}

/* The one end of a px: the final call on the request (an error reply when
   fail_status is set and nothing was sent yet), the connection let go,
   the px freed. */
static void
px_finish(struct px *px, int fail_status, const char *code, const char *what)
{
	struct cm_req *req = px->req;

	if (px->finished)
		return;
	px->finished = true;
	cm_http_soon_cancel_(&px->send);
	if (px->timer)
		event_free(px->timer);
	px->timer = NULL;
	px_release_conn(px, !fail_status && px->abort == PX_NONE);
	if (px->streaming && px->abort != PX_NONE && px->abort != PX_STOP &&
	    px->abort != PX_GONE) {
		cm_req_stream_abort(
			req); /* cut short: the client must see it */
	} else if (px->streaming) {
		cm_req_stream_end(req);
	} else if (fail_status) {
		count_request(px, fail_status);
		cm_req_fail(req, fail_status, code, "%s %s", px->up->name,
			    what);
		cm_req_reply_json(req, fail_status, NULL);
	} else {
		count_request(px, px->status);
		cm_req_reply(req, px->status, px->ctype[0] ? px->ctype : NULL,
			     px->body, px->body_len);
	}
	free(px->body);
	free(px->out);
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

static void
timer_set(struct px *px, int64_t ms)
{
	struct timeval tv;

	if (ms < 1)
		ms = 1;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(px->timer, &tv);
}

/* Write what the socket takes; the rest on write events. */
static void
px_write(struct px *px)
{
	struct uconn *u = px->uc;
	ssize_t n;

	while (px->sent < px->out_len) {
		n = send(u->fd, px->out + px->sent, px->out_len - px->sent,
			 MSG_NOSIGNAL);
		if (n > 0) {
			px->sent += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!u->writing) {
				u->writing = true;
				event_add(&u->wr, NULL);
			}
			return;
		}
		px_schedule_abort(px, PX_FAILED);
		return;
	}
	if (u->writing) {
		u->writing = false;
		event_del(&u->wr);
	}
}

static void
px_send_soon(struct cm_http_soon *s)
{
	struct px *px = (struct px *)((char *)s - offsetof(struct px, send));

	if (px->abort == PX_NONE && px->uc)
		px_write(px);
}

/* Send px's request on connection u: a new one once it is connected, a
   kept-alive one when this round of callbacks ends. */
static void
px_send(struct px *px, struct uconn *u)
{
	px->uc = u;
	u->px = px;
	px->sent = 0;
	if (u->connecting) {
		u->writing = true;
		event_add(&u->wr, NULL);
		return;
	}
	if (cm_http_soon_(&px->send) < 0)
		px_write(px);
}

static void
uconn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct uconn *u = arg;
	int err = 0;
	socklen_t len = sizeof(err);

	(void)what;
	if (u->connecting) {
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		u->connecting = false;
		if (err) {
			u->pe->addr_len = 0; /* look the name up again */
			event_del(&u->wr);
			u->writing = false;
			if (u->px)
				px_schedule_abort(u->px, PX_FAILED);
			return;
		}
	}
	if (u->px)
		px_write(u->px);
	else if (u->writing) {
		u->writing = false;
		event_del(&u->wr);
	}
}

/* Whether a failed request goes out once more (see the top). */
static bool
px_may_retry(const struct px *px)
{
	return px->retryable && px->reused && !px->retried && !px->got_bytes &&
	       !px->streaming;
}

/* Every abort ends here, outside the connection's callbacks; so does a
   retry. */
static void
px_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px *px = arg;
	struct uconn *u;

	(void)fd;
	(void)what;
	if (px->abort == PX_NONE)
		px->abort = PX_TIMEOUT;
	if (px->abort == PX_FAILED && px_may_retry(px)) {
		px_release_conn(px, false);
		px->retried = true;
		px->reused = false;
		px->abort = PX_NONE;
		u = uconn_new(px->pe, cm_http_req_base_(px->req));
		if (u) {
			count_error(px, "stale_connection_retried");
			timer_set(px, px->deadline_ms - cm_now_ms());
			px_send(px, u);
			return;
		}
		px->abort = PX_FAILED;
	}
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
	case PX_FAILED:
		if (px->streaming) {
			px_finish(px, 0, NULL, NULL);
			break;
		}
		count_error(px, "unavailable");
		px_finish(px, 502, "upstream_unavailable", "is unavailable");
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

/* Body bytes: to the client as they come, or into the buffer. */
static void
px_deliver(struct px *px, const char *data, size_t n)
{
	size_t cap = px->up->max_response ? px->up->max_response
					  : DEFAULT_MAX_RESPONSE;

	if (!n || px->abort != PX_NONE)
		return;
	if (px->streaming) {
		if (cm_req_stream_write(px->req, data, n) < 0)
			px_schedule_abort(px, PX_GONE);
		else if (cm_req_stream_pending(px->req) > MAX_STREAM_PENDING)
			px_schedule_abort(px, PX_SLOW);
		return;
	}
	if (px->body_len + n > cap) {
		px_schedule_abort(px, PX_TOO_LARGE);
		return;
	}
	if (px->body_len + n > px->body_cap) {
		px->body_cap = px->body_cap ? px->body_cap * 2 : 4096;
		while (px->body_cap < px->body_len + n)
			px->body_cap *= 2;
		px->body = cm_xrealloc(px->body, px->body_cap);
	}
	memcpy(px->body + px->body_len, data, n);
	px->body_len += n;
}

/* The response head: decide between streaming and buffering, and how
   the body ends. */
static void
px_head(struct px *px, const struct cm_wire_head *h)
{
	const char *ct = cm_wire_find(h->hdrs, h->nhdrs, "Content-Type");
	int status = h->status;
	bool no_body = px->head_only || status == 204 || status == 304;

	px->head_seen = true;
	px->status = status;
	px->keep = h->keep_alive;
	cm_strlcpy(px->ctype, ct ? ct : "", sizeof(px->ctype));
	copy_response_headers(px, h);
	if (no_body)
		px->body_end = B_NONE;
	else if (h->chunked)
		px->body_end = B_CHUNKED;
	else if (h->content_length >= 0)
		px->body_end = B_LENGTH;
	else
		px->body_end = B_CLOSE;
	px->left = h->content_length > 0 ? (uint64_t)h->content_length : 0;
	if (px->body_end == B_LENGTH && !px->left)
		px->body_end = B_NONE;
	if (px->body_end == B_CLOSE)
		px->keep = false;
	cm_wire_chunks_init(&px->chunks, 0);
	/* the deadline was for the head; an idle stream ends after the
	   upstream's idle timeout */
	timer_set(px, idle_ms(px->up));
	if ((ct && !strncasecmp(ct, "text/event-stream", 17)) ||
	    (h->content_length < 0 && !no_body)) {
		if (cm_req_stream_begin(px->req, status, ct) == 0) {
			px->streaming = true;
			count_request(px, status);
		} else {
			px_schedule_abort(px, PX_GONE);
		}
	}
}

/* Drop n bytes from the front of u's input. */
static void
uconn_consume(struct uconn *u, size_t n)
{
	if (n < u->in_len)
		memmove(u->in, u->in + n, u->in_len - n);
	u->in_len -= n;
}

/* Parse what u holds: head, then body; 1 when the response is complete,
   0 for more, -1 when px was aborted. */
static int
px_consume(struct px *px, struct uconn *u)
{
	struct cm_wire_head h;
	size_t end, n;
	int rc;

	while (!px->head_seen) {
		end = cm_wire_head_end(u->in, u->in_len, &px->scan);
		if (!end && u->in_len <= HEAD_MAX)
			return 0;
		if (!end || end > HEAD_MAX ||
		    cm_wire_response_parse(u->in, end, &h) || h.status == 101) {
			px_schedule_abort(px, PX_BAD_STATUS);
			return -1;
		}
		px->scan = 0;
		if (h.status >= 200)
			px_head(px, &h); /* strings in u->in: used here only */
		uconn_consume(u, end);	 /* an interim 1xx is dropped */
		if (px->abort != PX_NONE)
			return -1;
	}
	switch (px->body_end) {
	case B_NONE:
		return 1;
	case B_LENGTH:
		n = u->in_len < px->left ? u->in_len : (size_t)px->left;
		px_deliver(px, u->in, n);
		uconn_consume(u, n);
		px->left -= n;
		return px->abort != PX_NONE ? -1 : px->left == 0;
	case B_CHUNKED:
		rc = cm_wire_chunks_step(u->in, u->in_len, SIZE_MAX / 2,
					 HEAD_MAX, &px->chunks);
		if (rc > 1) {
			px_schedule_abort(px, PX_BAD_STATUS);
			return -1;
		}
		px_deliver(px, u->in, px->chunks.out);
		uconn_consume(u, px->chunks.pos);
		px->chunks.pos = px->chunks.out = 0;
		return px->abort != PX_NONE ? -1 : rc;
	case B_CLOSE:
		px_deliver(px, u->in, u->in_len);
		u->in_len = 0;
		return px->abort != PX_NONE ? -1 : 0;
	}
	return 0;
}

/* The upstream closed: the end of a close-delimited body, else a
   failure. */
static void
px_eof(struct px *px)
{
	if (px->head_seen && px->body_end == B_CLOSE) {
		px->keep = false;
		px_finish(px, 0, NULL, NULL);
		return;
	}
	px_schedule_abort(px, PX_FAILED);
}

static void
uconn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct uconn *u = arg;
	struct px *px = u->px;
	ssize_t n;
	int rc;

	(void)what;
	if (u->in_cap - u->in_len < 1024) {
		u->in_cap = u->in_cap ? u->in_cap * 2 : READ_CHUNK;
		u->in = cm_xrealloc(u->in, u->in_cap);
	}
	n = read(fd, u->in + u->in_len, u->in_cap - u->in_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (!px) { /* idle: the upstream closed it (or spoke out of turn) */
		pool_remove(u->pe, u);
		uconn_free(u);
		return;
	}
	if (px->abort != PX_NONE) /* being ended by the timer */
		return;
	if (n <= 0) {
		px_eof(px);
		return;
	}
	u->in_len += (size_t)n;
	px->got_bytes = true;
	if (px->head_seen) /* the idle timeout restarts */
		timer_set(px, idle_ms(px->up));
	rc = px_consume(px, u);
	if (rc == 1)
		px_finish(px, 0, NULL, NULL);
}

/* RFC 9110's idempotent methods (9.2.2). */
static bool
method_idempotent(const char *m)
{
	return !strcmp(m, "GET") || !strcmp(m, "HEAD") ||
	       !strcmp(m, "OPTIONS") || !strcmp(m, "PUT") ||
	       !strcmp(m, "DELETE");
}

void
cm_proxy_forward(struct cm_req *req0, const struct cm_proxy_upstream *up,
		 const struct cm_proxy_request *pr)
{
	struct event_base *base = cm_http_req_base_(req0);
	struct cm_req *req;
	struct uconn *u;
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
	px->timer = evtimer_new(base, px_timer_cb, px);
	px->send.fn = px_send_soon;
	px->pe = pool_entry(up);
	px->head_only = !strcmp(cm_req_method(req), "HEAD");
	px->retryable = method_idempotent(cm_req_method(req));
	u = px->timer ? pool_take(px->pe, base, &px->reused) : NULL;
	if (!u) {
		count_error(px, "unavailable");
		px_finish(px, 502, "upstream_unavailable", "is unavailable");
		return;
	}
	request_build(px, pr);
	cm_req_on_close(req, px_close_cb, px);
	ms = up->timeout_ms > 0 ? up->timeout_ms : DEFAULT_TIMEOUT_MS;
	px->deadline_ms = cm_now_ms() + ms;
	timer_set(px, ms);
	px_send(px, u);
}
