/*
 * http.c - the evhttp-based server: workers, connections, router,
 * middleware and replies.
 *
 * Each worker owns an event_base, an evhttp and a SO_REUSEPORT listener;
 * nothing is shared between workers except the read-only route table, so
 * the request path takes no lock (metrics use atomics).
 *
 * evhttp in libevent 2.1 gives no hook before a request is fully read, so
 * three things are done around it, per connection (struct conn):
 *  - we create each connection's bufferevent (evhttp_set_bevcb) and, one
 *    event-loop turn later, find the evhttp_connection that adopted it (it
 *    is the bufferevent's callback argument) and hook its close callback,
 *    which is where struct conn is freed;
 *  - a per-connection deadline closes a connection that has not delivered
 *    a whole request within read_timeout_ms (slow loris), since evhttp's
 *    own timeout restarts on every byte;
 *  - evhttp answers protocol errors (body or header limit, bad syntax)
 *    itself with an HTML page. A callback on the connection's output
 *    buffer notices bytes written while we are not replying, and before
 *    the loop next polls for writes those bytes are replaced by our JSON
 *    error response (Connection: close, as evhttp's was).
 */
#include "common/http.h"
#include "http_internal.h"
#include "common/auth.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/metrics.h"
#include "common/tenant.h"

#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#include <openssl/rand.h>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/banned.h"

#define HTTP_MAGIC 0x48545450u
#define CONN_MAGIC 0x434f4e4eu
#define REQ_MAGIC 0x52455155u

#define MAX_SEGS 32
#define MAX_PARAMS 8
#define PATH_STACK 1024
#define HOST_MAX 255
#define REQUEST_ID_MAX 128
#define DRAIN_TICK_US 10000
#define LISTEN_BACKLOG 1024
#define UUID_BATCH 64 /* request ids minted per RAND_bytes call */

#define DEFAULT_MAX_BODY ((size_t)1 << 20)
#define DEFAULT_MAX_HEADER ((size_t)8 << 10)
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_DRAIN_MS 10000

#define IN_FLIGHT "bz_http_in_flight"
#define IN_FLIGHT_HELP "HTTP requests being handled."
#define CORS_ALLOW_HEADERS \
	"Authorization, Content-Type, X-Request-ID, Idempotency-Key, If-Match"
#define CORS_MAX_AGE "600"
#define JSON_CSP "default-src 'none'; frame-ancestors 'none'"

/* Methods the router knows, as bits for Allow lists. */
enum {
	M_GET = 1 << 0,
	M_HEAD = 1 << 1,
	M_POST = 1 << 2,
	M_PUT = 1 << 3,
	M_PATCH = 1 << 4,
	M_DELETE = 1 << 5,
	M_OPTIONS = 1 << 6,
};

static const struct method {
	const char *name;
	unsigned bit;
	enum evhttp_cmd_type cmd;
} methods[] = {
	{ "GET", M_GET, EVHTTP_REQ_GET },
	{ "HEAD", M_HEAD, EVHTTP_REQ_HEAD },
	{ "POST", M_POST, EVHTTP_REQ_POST },
	{ "PUT", M_PUT, EVHTTP_REQ_PUT },
	{ "PATCH", M_PATCH, EVHTTP_REQ_PATCH },
	{ "DELETE", M_DELETE, EVHTTP_REQ_DELETE },
	{ "OPTIONS", M_OPTIONS, EVHTTP_REQ_OPTIONS },
};

#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

/* One route with its pattern split into segments. */
struct pattern {
	const struct cm_route *route;
	unsigned mbit;
	int nsegs;	/* including a trailing "*" */
	bool catch_all; /* the last segment is "*" */
	char *copy;	/* owns the segment strings */
	char *segs[MAX_SEGS];
};

struct conn;

#define WRITE_SOON_MAX 128 /* bufferevents written at once per round */

struct worker {
	struct cm_http *http;
	pthread_t thread;
	bool running;
	struct event_base *base;
	struct evhttp *evh;
	struct evhttp_bound_socket *bound;
	int wake_fd; /* cm_http_stop writes here */
	struct event *wake_ev;
	int signal_fd; /* cm_http_signal writes here */
	struct event *signal_ev;
	atomic_int nwaiting;	/* requests in cm_req_wait */
	bool signalled;		/* in the cm_http_signal registry */
	struct event *drain_ev; /* drain progress while stopping */
	struct event *fix_ev;	/* replaces evhttp's own error pages */
	struct event *write_ev; /* writes what write_q holds */
	struct bufferevent *write_q[WRITE_SOON_MAX]; /* cm_http_write_soon_ */
	int write_n;
	bool own_write; /* we are writing a reply */
	bool stopping;
	bool cut_off; /* the drain deadline hit busy conns */
	int64_t drain_deadline_ms;
	struct conn *conns;  /* every open connection */
	struct conn **by_fd; /* attached connections by socket */
	size_t nby_fd;
	time_t date_sec;	 /* when date was formatted */
	char date[40];		 /* Date header value */
	size_t rnd_pos;		 /* next unused byte of rnd */
	struct cm_req *deferred; /* requests answered later (a list) */
	struct {
		void (*fn)(void *arg);
		void *arg;
	} at_exit[4]; /* cm_http_worker_at_exit_ */
	int nat_exit;
	unsigned char rnd[16 * UUID_BATCH];
};

struct cm_http {
	unsigned magic;
	struct cm_http_config cfg; /* strings point to the copies below */
	char *service;
	char *bind_addr;
	char *cors_copy;
	char **origins;
	int norigins;
	struct pattern *pats;
	int npats;
	void *arg;
	struct cm_http_hooks hooks;
	struct timeval read_tv;
	struct timeval write_tv;
	int port;
	int nworkers;
	struct worker *workers;
	bool started;
	bool joined;
	atomic_bool stopped;
};

/* A client connection, alive from our bufferevent's creation until
   evhttp's close callback (or, if evhttp never adopted it, the attach). */
struct conn {
	unsigned magic;
	struct worker *w;
	struct bufferevent *bev;
	struct evhttp_connection *evcon; /* NULL until attached */
	struct evbuffer_cb_entry *out_cb;
	struct evbuffer_cb_entry *in_cb;
	struct event timer; /* attach first, then the request deadline */
	struct conn *prev, *next;
	int fd;
	bool attached;
	bool responding;	 /* request handed to us, reply not yet sent */
	struct cm_req *deferred; /* its request, when deferred */
	bool fix_pending;	 /* evhttp wrote an answer of its own */
	size_t fix_start;	 /* where in the output buffer it starts */
	size_t in_added;	 /* bytes received since the request began */
	size_t in_used;		 /* bytes evhttp consumed since then */
};

struct param {
	const char *name;
	const char *value;
};

/* Lives on the worker's stack for one request. Only the fields up to
   `segs` are zeroed per request; the rest is guarded by them. */
struct cm_req {
	unsigned magic;
	struct worker *w;
	struct conn *conn;
	struct evhttp_request *ev;
	const struct pattern *pat; /* the matched route */
	const char *label;	   /* metrics route label */
	const char *method;
	unsigned mbit;
	int64_t t0_ns;
	const char *raw_path;
	char *path; /* decoded, "/a/b" */
	char *heap; /* path storage when buf is too small */
	int nsegs;
	bool too_deep; /* more than MAX_SEGS segments */
	int nparams;
	bool query_parsed; /* query is valid */
	bool host_done;	   /* host is valid */
	bool has_principal;
	bool has_tenant;
	int err_status; /* err_code, err_msg are valid */
	bool deferred;	/* the handler handed it on (cm_req_defer) */
	bool on_heap;	/* the deferred copy: freed by its final call */
	bool streaming; /* cm_req_stream_begin sent the head */
	bool gone;	/* the client went away (ev may be NULL) */
	bool close_called;
	cm_req_close_fn close_fn;
	void *close_arg;
	struct event *tick_ev; /* cm_req_every */
	cm_req_tick_fn tick_fn;
	void *tick_arg;
	bool waiting; /* cm_req_wait */
	cm_req_tick_fn wait_fn;
	void *wait_arg;
	struct cm_req *dprev, *dnext; /* the worker's deferred list */
	bool replied;
	int status;
	size_t bytes;
	const char *segs[MAX_SEGS];
	size_t seg_off[MAX_SEGS]; /* where segs[i] starts in path */
	struct param params[MAX_PARAMS];
	struct evkeyvalq query;
	char host[HOST_MAX + 1];
	char id[REQUEST_ID_MAX + 1];
	struct cm_principal principal;
	struct cm_tenant tenant;
	char err_code[64];
	char err_msg[256];
	char buf[PATH_STACK];
};

static const struct status_info {
	int status;
	const char *reason;
	const char *code;
} statuses[] = {
	{ 200, "OK", NULL },
	{ 201, "Created", NULL },
	{ 202, "Accepted", NULL },
	{ 204, "No Content", NULL },
	{ 304, "Not Modified", NULL },
	{ 400, "Bad Request", "bad_request" },
	{ 401, "Unauthorized", "unauthenticated" },
	{ 403, "Forbidden", "forbidden" },
	{ 404, "Not Found", "not_found" },
	{ 405, "Method Not Allowed", "method_not_allowed" },
	{ 408, "Request Timeout", "request_timeout" },
	{ 409, "Conflict", "conflict" },
	{ 410, "Gone", "gone" },
	{ 412, "Precondition Failed", "precondition_failed" },
	{ 413, "Payload Too Large", "payload_too_large" },
	{ 415, "Unsupported Media Type", "unsupported_media_type" },
	{ 417, "Expectation Failed", "expectation_failed" },
	{ 422, "Unprocessable Entity", "unprocessable_entity" },
	{ 428, "Precondition Required", "precondition_required" },
	{ 429, "Too Many Requests", "rate_limited" },
	{ 431, "Request Header Fields Too Large",
	  "request_header_fields_too_large" },
	{ 501, "Not Implemented", "not_implemented" },
	{ 502, "Bad Gateway", "bad_gateway" },
	{ 503, "Service Unavailable", "unavailable" },
	{ 504, "Gateway Timeout", "gateway_timeout" },
};

static const struct status_info *
status_find(int status)
{
	size_t i;

	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		if (statuses[i].status == status)
			return &statuses[i];
	return NULL;
}

static const char *
status_reason(int status)
{
	const struct status_info *si = status_find(status);

	return si ? si->reason : NULL; /* NULL: evhttp picks a phrase */
}

/* The error code used when a reply names a status but recorded none. */
static const char *
status_code(int status)
{
	const struct status_info *si = status_find(status);

	if (si && si->code)
		return si->code;
	return status < 500 ? "bad_request" : "internal";
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A random (v4) uuid for a request id. RAND_bytes per id would be a fifth
   of the cost of a small request, so the randomness comes in batches. */
static void
mint_uuid(struct worker *w, char out[37])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char *b;
	int i, j = 0;

	if (w->rnd_pos == 0 || w->rnd_pos >= sizeof(w->rnd)) {
		if (RAND_bytes(w->rnd, sizeof(w->rnd)) != 1) {
			if (cm_uuid_v4(out) < 0)
				cm_strlcpy(out, "-", 37);
			return;
		}
		w->rnd_pos = 0;
	}
	b = w->rnd + w->rnd_pos;
	w->rnd_pos += 16;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[j++] = '-';
		out[j++] = hex[b[i] >> 4];
		out[j++] = hex[b[i] & 15];
	}
	out[j] = '\0';
	cm_memzero(b, 16);
}

static void
ms_to_tv(int ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

/* ---- route table ------------------------------------------------------ */

static const struct method *
method_by_name(const char *name)
{
	size_t i;

	for (i = 0; name && i < NMETHODS; i++)
		if (!strcmp(methods[i].name, name))
			return &methods[i];
	return NULL;
}

static const struct method *
method_by_cmd(enum evhttp_cmd_type cmd)
{
	size_t i;

	for (i = 0; i < NMETHODS; i++)
		if (methods[i].cmd == cmd)
			return &methods[i];
	return NULL;
}

static bool
param_name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!(*s == '_' || (*s >= 'a' && *s <= 'z') ||
		      (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
			return false;
	return true;
}

/* Whether segment i of p is acceptable; counts parameters. */
static bool
segment_ok(const struct pattern *p, int i, int *nparams)
{
	const char *s = p->segs[i];
	int j;

	if (!*s)
		return false;
	if (!strcmp(s, "*"))
		return i == p->nsegs - 1;
	if (s[0] != ':')
		return !strchr(s, '*');
	if (!param_name_ok(s + 1) || ++*nparams > MAX_PARAMS)
		return false;
	for (j = 0; j < i; j++)
		if (!strcmp(p->segs[j], s))
			return false;
	return true;
}

static bool
pattern_parse(struct pattern *p, const struct cm_route *r)
{
	const struct method *m = method_by_name(r->method);
	char *s;
	int i, nparams = 0;

	p->route = r;
	if (!m || !r->fn || !r->pattern || r->pattern[0] != '/')
		return false;
	p->mbit = m->bit;
	p->copy = cm_xstrdup(r->pattern + 1);
	for (s = p->copy; *p->copy && s; s = s ? s + 1 : NULL) {
		if (p->nsegs == MAX_SEGS)
			return false;
		p->segs[p->nsegs++] = s;
		s = strchr(s, '/');
		if (s)
			*s = '\0';
	}
	for (i = 0; i < p->nsegs; i++)
		if (!segment_ok(p, i, &nparams))
			return false;
	p->catch_all = p->nsegs && !strcmp(p->segs[p->nsegs - 1], "*");
	return true;
}

/* ---- configuration ---------------------------------------------------- */

static void
origins_parse(struct cm_http *http, const char *list)
{
	char *s, *end, *next;

	if (!list || !*list)
		return;
	http->cors_copy = cm_xstrdup(list);
	for (s = http->cors_copy; s; s = next) {
		next = strchr(s, ',');
		if (next)
			*next++ = '\0';
		while (*s == ' ' || *s == '\t')
			s++;
		end = s + strlen(s);
		while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (!*s)
			continue;
		http->origins = cm_xrealloc(http->origins,
					    (size_t)(http->norigins + 1) *
						    sizeof(*http->origins));
		http->origins[http->norigins++] = s;
	}
}

static void
config_copy(struct cm_http *http, const struct cm_http_config *cfg)
{
	struct cm_http_config *c = &http->cfg;

	*c = *cfg;
	http->service = cm_xstrdup(cfg->service ? cfg->service : "http");
	http->bind_addr =
		cm_xstrdup(cfg->bind_addr ? cfg->bind_addr : "127.0.0.1");
	c->service = http->service;
	c->bind_addr = http->bind_addr;
	c->cors_origins = NULL;
	if (c->threads < 1)
		c->threads = 1;
	if (!c->max_body)
		c->max_body = DEFAULT_MAX_BODY;
	if (!c->max_header)
		c->max_header = DEFAULT_MAX_HEADER;
	if (c->read_timeout_ms <= 0)
		c->read_timeout_ms = DEFAULT_TIMEOUT_MS;
	if (c->write_timeout_ms <= 0)
		c->write_timeout_ms = DEFAULT_TIMEOUT_MS;
	if (c->drain_timeout_ms <= 0)
		c->drain_timeout_ms = DEFAULT_DRAIN_MS;
	ms_to_tv(c->read_timeout_ms, &http->read_tv);
	ms_to_tv(c->write_timeout_ms, &http->write_tv);
	origins_parse(http, cfg->cors_origins);
}

struct cm_http *
cm_http_new(const struct cm_http_config *cfg, const struct cm_route *routes,
	    void *arg, const struct cm_http_hooks *hooks)
{
	struct cm_http *http;
	int n = 0, i;

	if (!cfg || !routes)
		return NULL;
	while (routes[n].method || routes[n].pattern)
		n++;
	http = cm_xcalloc(1, sizeof(*http));
	http->magic = HTTP_MAGIC;
	http->pats = cm_xcalloc((size_t)n + 1, sizeof(*http->pats));
	http->npats = n;
	for (i = 0; i < n; i++) {
		if (!pattern_parse(&http->pats[i], &routes[i])) {
			cm_log_err("http: malformed route %d: %s %s", i,
				   routes[i].method ? routes[i].method : "-",
				   routes[i].pattern ? routes[i].pattern : "-");
			cm_http_free(http);
			return NULL;
		}
	}
	config_copy(http, cfg);
	http->arg = arg;
	if (hooks)
		http->hooks = *hooks;
	atomic_init(&http->stopped, false);
	return http;
}

/* ---- connections ------------------------------------------------------ */

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);

static void
conn_link(struct worker *w, struct conn *c)
{
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
}

static void
conn_unlink(struct conn *c)
{
	struct worker *w = c->w;

	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->fd >= 0 && (size_t)c->fd < w->nby_fd && w->by_fd[c->fd] == c)
		w->by_fd[c->fd] = NULL;
}

static void
conn_release(struct conn *c)
{
	event_del(&c->timer);
	conn_unlink(c);
	c->magic = 0;
	free(c);
}

/* evhttp wrote to the connection; if not on our behalf, note where. */
static void
conn_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
	    void *arg)
{
	struct conn *c = arg;

	(void)buf;
	if (!info->n_added || c->w->own_write || c->fix_pending)
		return;
	c->fix_pending = true;
	c->fix_start = info->orig_size;
	event_active(c->w->fix_ev, EV_TIMEOUT, 1);
}

static void
conn_in_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct conn *c = arg;

	(void)buf;
	c->in_added += info->n_added;
	c->in_used += info->n_deleted;
}

/* evhttp_set_bevcb: our bufferevent, so that we see the connection. */
static struct bufferevent *
conn_new_bev(struct event_base *base, void *arg)
{
	struct worker *w = arg;
	struct conn *c = cm_xcalloc(1, sizeof(*c));

	c->bev = bufferevent_socket_new(base, -1, 0);
	if (!c->bev) {
		free(c);
		return NULL; /* evhttp makes its own; no deadline then */
	}
	c->magic = CONN_MAGIC;
	c->w = w;
	c->fd = -1;
	c->out_cb =
		evbuffer_add_cb(bufferevent_get_output(c->bev), conn_out_cb, c);
	c->in_cb =
		evbuffer_add_cb(bufferevent_get_input(c->bev), conn_in_cb, c);
	evtimer_assign(&c->timer, base, conn_timer_cb, c);
	/* evhttp adopts the bufferevent right after we return; the attach
	   runs before the loop next polls, so before any byte is read */
	event_active(&c->timer, EV_TIMEOUT, 1);
	conn_link(w, c);
	return c->bev;
}

static void deferred_gone(struct conn *c);

static void
conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct conn *c = arg;

	(void)evcon;
	if (!c || c->magic != CONN_MAGIC)
		return;
	if (c->deferred)
		deferred_gone(c);
	evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
	evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->in_cb);
	conn_release(c);
}

/* A new request may start: reset the counters and arm the deadline. */
static void
conn_request_begin(struct conn *c)
{
	c->in_added = 0;
	c->in_used = 0;
	evtimer_add(&c->timer, &c->w->http->read_tv);
}

static void
conn_index(struct worker *w, struct conn *c)
{
	size_t n = w->nby_fd;

	if ((size_t)c->fd >= n) {
		n = (size_t)c->fd + 64;
		w->by_fd = cm_xrealloc(w->by_fd, n * sizeof(*w->by_fd));
		memset(w->by_fd + w->nby_fd, 0,
		       (n - w->nby_fd) * sizeof(*w->by_fd));
		w->nby_fd = n;
	}
	w->by_fd[c->fd] = c;
}

/* Find the evhttp_connection that adopted our bufferevent: evhttp makes it
   the bufferevent's callback argument. (libevent 2.1 has no hook at
   connection creation. If evhttp adopted the bufferevent and then failed
   an allocation before this runs, it has freed it: that window is only
   reachable through an out-of-memory inside libevent.) */
static void
conn_attach(struct conn *c)
{
	bufferevent_data_cb rcb, wcb;
	bufferevent_event_cb ecb;
	void *cbarg = NULL;
	int one = 1;

	bufferevent_getcb(c->bev, &rcb, &wcb, &ecb, &cbarg);
	if (!cbarg) { /* evhttp failed before adopting it */
		evbuffer_remove_cb_entry(bufferevent_get_output(c->bev),
					 c->out_cb);
		evbuffer_remove_cb_entry(bufferevent_get_input(c->bev),
					 c->in_cb);
		bufferevent_free(c->bev);
		conn_release(c);
		return;
	}
	c->evcon = cbarg;
	c->attached = true;
	c->fd = (int)bufferevent_getfd(c->bev);
	if (c->fd >= 0) {
		/* replies leave in one write or in stream chunks: never
		   hold a segment back for the client's delayed ACK */
		(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one,
				 sizeof(one));
		conn_index(c->w, c);
	}
	evhttp_connection_set_closecb(c->evcon, conn_closed, c);
	bufferevent_set_timeouts(c->bev, &c->w->http->read_tv,
				 &c->w->http->write_tv);
	conn_request_begin(c);
}

static bool
conn_idle(struct conn *c)
{
	return c->attached && !c->responding && !c->in_added &&
	       !evbuffer_get_length(bufferevent_get_input(c->bev));
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	char *addr = NULL;
	ev_uint16_t port = 0;

	(void)fd;
	(void)what;
	if (c->magic != CONN_MAGIC)
		return;
	if (!c->attached) {
		conn_attach(c);
		return;
	}
	if (!conn_idle(c)) {
		evhttp_connection_get_peer(c->evcon, &addr, &port);
		cm_log_warn("http: closing connection from %s: request not "
			    "received within %d ms",
			    addr ? addr : "?", c->w->http->cfg.read_timeout_ms);
	}
	evhttp_connection_free(c->evcon); /* calls conn_closed */
}

/* ---- writing at once ---------------------------------------------------
 *
 * A bufferevent writes only when its write event fires, so every reply
 * (and every request the proxy sends upstream) costs an epoll_ctl to ask
 * for writability, a trip through epoll_wait to hear it and another
 * epoll_ctl afterwards, and waits a loop round. Instead, whoever queues
 * output calls cm_http_write_soon_(): once the current round of callbacks
 * is done, the worker writes the bufferevent's output itself and, when the
 * socket took all of it, tells the owner (evhttp) through
 * bufferevent_trigger, just as the write event would have. Whatever the
 * socket does not take waits for the write event, as before; a bufferevent
 * freed meanwhile (held by a reference until then) or no longer writing is
 * left alone.
 */

static __thread struct worker *cur_worker; /* set on worker threads */

void
cm_http_write_soon_(struct bufferevent *bev)
{
	struct worker *w = cur_worker;
	int i;

	if (!w || !bev || !w->write_ev)
		return;
	for (i = 0; i < w->write_n; i++)
		if (w->write_q[i] == bev)
			return;
	if (w->write_n == WRITE_SOON_MAX)
		return; /* its write event writes it */
	bufferevent_incref(bev);
	w->write_q[w->write_n++] = bev;
	if (w->write_n == 1)
		event_active(w->write_ev, EV_TIMEOUT, 1);
}

static void
write_now(struct bufferevent *bev)
{
	struct evbuffer *out = bufferevent_get_output(bev);
	evutil_socket_t fd = bufferevent_getfd(bev);
	bufferevent_data_cb wcb = NULL;
	int n;

	bufferevent_getcb(bev, NULL, &wcb, NULL, NULL);
	if (fd < 0 || !wcb || !(bufferevent_get_enabled(bev) & EV_WRITE) ||
	    evbuffer_get_length(out) == 0)
		return;
	/* a socket bufferevent keeps the front of its output frozen except
	   while it writes */
	evbuffer_unfreeze(out, 1);
	n = evbuffer_write(out, fd);
	evbuffer_freeze(out, 1);
	if (n > 0 && evbuffer_get_length(out) == 0)
		bufferevent_trigger(bev, EV_WRITE, 0);
}

/* Drop the queue: write each (unless stopping) and let go of it. */
static void
write_queue_run(struct worker *w, bool write)
{
	struct bufferevent *q[WRITE_SOON_MAX];
	int i, n = w->write_n;

	memcpy(q, w->write_q, (size_t)n * sizeof(q[0]));
	w->write_n = 0;
	for (i = 0; i < n; i++) {
		if (write)
			write_now(q[i]);
		bufferevent_decref(q[i]);
	}
}

static void
write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	write_queue_run(arg, true);
}

/* ---- evhttp's own error pages ----------------------------------------- */

struct fix_info {
	int status;
	const char *code;
	const char *message;
};

static void
fix_classify(const struct conn *c, int status, struct fix_info *fi)
{
	const struct cm_http_config *cfg = &c->w->http->cfg;
	size_t head =
		c->in_used + evbuffer_get_length(bufferevent_get_input(c->bev));

	fi->status = status;
	fi->code = status_code(status);
	fi->message = "the request could not be processed";
	if (status == 413) {
		fi->message = "request body too large";
	} else if (status == 400 && head > cfg->max_header) {
		/* evhttp says 400 for both; the size tells them apart */
		fi->status = 431;
		fi->code = status_code(431);
		fi->message = "request headers too large";
	} else if (status == 400) {
		fi->message = "malformed HTTP request";
	} else if (status == 501) {
		fi->message = "method not supported";
	}
}

/* The whole response; returns the body length. */
static size_t
fix_render(const struct fix_info *fi, char minor, const char *id,
	   struct cm_buf *out)
{
	size_t len;
	struct cm_buf body = CM_BUF_INIT(1024);
	const char *reason = status_reason(fi->status);

	cm_buf_puts(&body, "{\"error\":{\"code\":");
	cm_buf_json_str(&body, fi->code);
	cm_buf_puts(&body, ",\"message\":");
	cm_buf_json_str(&body, fi->message);
	cm_buf_puts(&body, ",\"request_id\":");
	cm_buf_json_str(&body, id);
	cm_buf_puts(&body, "}}");
	cm_buf_printf(out,
		      "HTTP/1.%c %d %s\r\n"
		      "Content-Type: application/json\r\n"
		      "Content-Length: %zu\r\n"
		      "Connection: close\r\n"
		      "X-Request-ID: %s\r\n"
		      "X-Content-Type-Options: nosniff\r\n"
		      "X-Frame-Options: DENY\r\n"
		      "Referrer-Policy: no-referrer\r\n"
		      "Cache-Control: no-store\r\n"
		      "Content-Security-Policy: " JSON_CSP "\r\n\r\n",
		      minor == '0' ? '0' : '1', fi->status,
		      reason ? reason : "Error", body.len, id);
	cm_buf_add(out, body.data, body.len);
	len = body.len;
	cm_buf_release(&body);
	return len;
}

/* Swap evhttp's answer (from fix_start on) for ours. */
static void
fix_replace(struct conn *c, struct evbuffer *out, const struct fix_info *fi,
	    char minor)
{
	struct cm_buf resp = CM_BUF_INIT(4096);
	struct evbuffer *keep = NULL;
	char id[37];
	int64_t t0 = now_ns();
	size_t len;

	mint_uuid(c->w, id);
	len = fix_render(fi, minor, id, &resp);
	c->w->own_write = true;
	if (c->fix_start) {
		keep = evbuffer_new();
		evbuffer_remove_buffer(out, keep, c->fix_start);
	}
	evbuffer_drain(out, evbuffer_get_length(out));
	if (keep) {
		evbuffer_add_buffer(out, keep);
		evbuffer_free(keep);
	}
	evbuffer_add(out, resp.data, resp.len);
	c->w->own_write = false;
	cm_buf_release(&resp);
	cm_metrics_http_observe("unmatched", "OTHER", fi->status,
				(double)(now_ns() - t0) / 1e9);
	cm_log_set_context(id, NULL);
	cm_log_info("- - %d 0.000ms %zuB (%s, answered for the parser)",
		    fi->status, len, fi->message);
	cm_log_set_context(NULL, NULL);
}

/* The status of the answer evhttp wrote at fix_start, or 0. */
static int
fix_status(struct conn *c, struct evbuffer *out, char *minor)
{
	struct evbuffer_ptr pos;
	char line[13] = "";

	if (evbuffer_ptr_set(out, &pos, c->fix_start, EVBUFFER_PTR_SET) < 0 ||
	    evbuffer_copyout_from(out, &pos, line, 12) != 12)
		return 0;
	if (memcmp(line, "HTTP/1.", 7) || line[8] != ' ')
		return 0;
	*minor = line[7];
	return (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
}

static void
conn_fix(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct fix_info fi;
	char minor = '1';
	int status;

	c->fix_pending = false;
	/* a socket bufferevent keeps the front of its output frozen except
	   while it writes; it unfreezes again before its next write */
	evbuffer_unfreeze(out, 1);
	status = fix_status(c, out, &minor);
	if (status >= 400 && status <= 599) { /* 100 Continue passes */
		fix_classify(c, status, &fi);
		fix_replace(c, out, &fi, minor);
	}
	evbuffer_freeze(out, 1);
}

static void
fix_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct conn *c;

	(void)fd;
	(void)what;
	for (c = w->conns; c; c = c->next)
		if (c->fix_pending)
			conn_fix(c);
}

/* ---- path and router -------------------------------------------------- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode one raw segment at raw[*i] into both path (*p) and segment (*s)
   storage; false on a bad escape or an encoded NUL. */
static bool
segment_decode(const char *raw, size_t *i, char **p, char **s)
{
	int hi, lo;
	char ch;

	while (raw[*i] && raw[*i] != '/') {
		ch = raw[*i];
		if (ch == '%') {
			hi = hexval(raw[*i + 1]);
			lo = hi < 0 ? -1 : hexval(raw[*i + 2]);
			if (lo < 0 || (hi | lo) == 0)
				return false;
			ch = (char)(hi << 4 | lo);
			*i += 3;
		} else {
			*i += 1;
		}
		*(*p)++ = ch;
		*(*s)++ = ch;
	}
	*(*s)++ = '\0';
	return true;
}

/* Split and decode the raw path; false answers 400. */
static bool
path_decode(struct cm_req *req, const char *raw)
{
	size_t n = strlen(raw), i = 1;
	char *p, *s;

	if (raw[0] != '/')
		return false;
	p = req->buf;
	if (2 * n + 2 > sizeof(req->buf))
		p = req->heap = cm_xmalloc(2 * n + 2);
	req->path = p;
	s = p + n + 1;
	*p++ = '/';
	while (n > 1) {
		if (req->nsegs < MAX_SEGS) {
			req->segs[req->nsegs] = s;
			req->seg_off[req->nsegs] = (size_t)(p - req->path);
			req->nsegs++;
		} else {
			req->too_deep = true;
		}
		if (!segment_decode(raw, &i, &p, &s)) {
			req->path = NULL; /* cm_req_path: the raw one */
			return false;
		}
		if (raw[i] != '/')
			break;
		*p++ = '/';
		i++;
	}
	*p = '\0';
	return true;
}

static bool
pattern_match(const struct pattern *pat, const struct cm_req *req)
{
	int i, n = pat->nsegs;

	if (req->too_deep)
		return false;
	if (pat->catch_all ? req->nsegs < n : req->nsegs != n)
		return false;
	if (pat->catch_all)
		n--;
	for (i = 0; i < n; i++) {
		if (pat->segs[i][0] == ':') {
			if (!req->segs[i][0])
				return false;
		} else if (strcmp(pat->segs[i], req->segs[i])) {
			return false;
		}
	}
	return true;
}

static void
params_bind(struct cm_req *req)
{
	const struct pattern *pat = req->pat;
	int i;

	req->nparams = 0;
	for (i = 0; i < pat->nsegs && req->nparams < MAX_PARAMS; i++) {
		if (pat->catch_all && i == pat->nsegs - 1)
			req->params[req->nparams++] =
				(struct param){ "*",
						req->path + req->seg_off[i] };
		else if (pat->segs[i][0] == ':')
			req->params[req->nparams++] =
				(struct param){ pat->segs[i] + 1,
						req->segs[i] };
	}
}

/* Match the table: the route for this method (HEAD falls back to GET),
   and in *allowed every method the path answers to. */
static const struct pattern *
route_find(struct cm_req *req, unsigned *allowed)
{
	const struct cm_http *http = req->w->http;
	const struct pattern *exact = NULL, *get = NULL, *first = NULL;
	int i;

	*allowed = 0;
	for (i = 0; i < http->npats; i++) {
		const struct pattern *pat = &http->pats[i];

		if (!pattern_match(pat, req))
			continue;
		*allowed |= pat->mbit;
		if (!first)
			first = pat;
		if (!exact && pat->mbit == req->mbit)
			exact = pat;
		if (!get && pat->mbit == M_GET)
			get = pat;
	}
	if (first)
		req->label = first->route->pattern;
	if (!exact && req->mbit == M_HEAD)
		exact = get;
	return exact;
}

static void
allow_list(unsigned allowed, struct cm_buf *b)
{
	size_t i;

	if (allowed & M_GET)
		allowed |= M_HEAD;
	allowed |= M_OPTIONS;
	for (i = 0; i < NMETHODS; i++)
		if (allowed & methods[i].bit)
			cm_buf_printf(b, "%s%s", b->len ? ", " : "",
				      methods[i].name);
}

/* ---- replies ---------------------------------------------------------- */

static const char *
origin_allowed(const struct cm_req *req)
{
	const struct cm_http *http = req->w->http;
	const char *origin;
	int i;

	if (!http->norigins)
		return NULL;
	origin = cm_req_header(req, "Origin");
	for (i = 0; origin && i < http->norigins; i++)
		if (!strcmp(origin, http->origins[i]))
			return origin;
	return NULL;
}

/* Date, X-Request-ID and the constant security headers go out as ONE
   header entry. evhttp formats every header with its own printf and three
   allocations (and the Date with gmtime), which made up a third of the
   cost of a small reply. The entry is added with filler text of the
   right length (evhttp refuses CR LF in values), then overwritten in
   place; its key is "Date" so that evhttp adds no second one. Only
   validated or constant text goes in (the request id is [A-Za-z0-9._-]). */
#define X8 "xxxxxxxx"
#define X64 X8 X8 X8 X8 X8 X8 X8 X8
static const char filler[] = X64 X64 X64 X64 X64 X64 X64 X64;

#define SEC_HEADERS                           \
	"X-Content-Type-Options: nosniff\r\n" \
	"X-Frame-Options: DENY\r\n"           \
	"Referrer-Policy: no-referrer"
#define SEC_HEADERS_JSON                  \
	"\r\nCache-Control: no-store\r\n" \
	"Content-Security-Policy: " JSON_CSP

static size_t
put(char *dst, size_t pos, size_t cap, const char *s)
{
	size_t n = strlen(s);

	if (pos + n >= cap)
		return cap;
	memcpy(dst + pos, s, n + 1);
	return pos + n;
}

static const char *
worker_date(struct worker *w)
{
	time_t now = time(NULL);
	struct tm tm;

	if (now != w->date_sec) {
		w->date_sec = now;
		gmtime_r(&now, &tm);
		strftime(w->date, sizeof(w->date), "%a, %d %b %Y %H:%M:%S GMT",
			 &tm);
	}
	return w->date;
}

static void
headers_block(struct cm_req *req, struct evkeyvalq *h, bool json)
{
	char v[sizeof(filler)];
	size_t n = 0, cap = sizeof(v);
	struct evkeyval *kv;

	n = put(v, n, cap, worker_date(req->w));
	n = put(v, n, cap, "\r\nX-Request-ID: ");
	n = put(v, n, cap, req->id);
	n = put(v, n, cap, "\r\n" SEC_HEADERS);
	if (json)
		n = put(v, n, cap, SEC_HEADERS_JSON);
	if (req->w->http->norigins)
		n = put(v, n, cap, "\r\nVary: Origin");
	if (n >= cap) /* cannot happen: the parts are bounded */
		return;
	evhttp_add_header(h, "Date", filler + (sizeof(filler) - 1 - n));
	kv = TAILQ_LAST(h, evkeyvalq);
	if (kv && !strcmp(kv->key, "Date") && strlen(kv->value) == n)
		memcpy(kv->value, v, n);
}

static void
headers_common(struct cm_req *req, bool json)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req->ev);
	const char *origin = origin_allowed(req);

	headers_block(req, h, json);
	if (origin) {
		evhttp_add_header(h, "Access-Control-Allow-Origin", origin);
		evhttp_add_header(h, "Access-Control-Allow-Credentials",
				  "true");
		evhttp_add_header(h, "Access-Control-Expose-Headers",
				  "X-Request-ID");
	}
	/* the worker may not have seen the stop yet: its handler ran */
	if (req->w->stopping ||
	    atomic_load_explicit(&req->w->http->stopped, memory_order_relaxed))
		evhttp_add_header(h, "Connection", "close");
}

static void deferred_finish(struct cm_req *req);

static bool
status_has_body(int status)
{
	return status >= 200 && status != 204 && status != 304;
}

/* The one place a reply leaves: headers, body, evhttp_send_reply. */
static void
reply_send(struct cm_req *req, int status, const char *ctype, const void *body,
	   size_t len)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req->ev);
	struct evbuffer *out = evhttp_request_get_output_buffer(req->ev);
	struct evhttp_connection *evcon;
	struct bufferevent *bev;
	char clen[32];
	bool json = ctype && !strncmp(ctype, "application/json", 16);

	if (req->replied || req->streaming)
		return;
	req->replied = true;
	req->status = status;
	if (!req->ev) { /* the client is gone and evhttp freed its request */
		deferred_finish(req);
		return;
	}
	if (!status_has_body(status))
		len = 0;
	req->bytes = len;
	headers_common(req, json);
	if (ctype && status_has_body(status))
		evhttp_add_header(h, "Content-Type", ctype);
	if (req->mbit == M_HEAD && status_has_body(status)) {
		snprintf(clen, sizeof(clen), "%zu", len);
		evhttp_add_header(h, "Content-Length", clen);
	} else if (len) {
		evbuffer_add(out, body, len);
	}
	evcon = evhttp_request_get_connection(req->ev);
	bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	req->w->own_write = true;
	evhttp_send_reply(req->ev, status, status_reason(status), NULL);
	req->w->own_write = false;
	cm_http_write_soon_(bev);
	if (req->on_heap)
		deferred_finish(req);
}

/* Record the generic error for status, as no one recorded any. */
static void
error_generic(struct cm_req *req, int status)
{
	const char *reason = status_reason(status);

	req->err_status = status;
	cm_strlcpy(req->err_code, status_code(status), sizeof(req->err_code));
	if (status >= 500 || !reason)
		reason = status >= 500 ? "internal error" : "request failed";
	cm_strlcpy(req->err_msg, reason, sizeof(req->err_msg));
}

/* Send the recorded error (or a generic one for status). */
static void
reply_error(struct cm_req *req, int status)
{
	struct cm_buf b = CM_BUF_INIT(4096);

	if (!req->err_status)
		error_generic(req,
			      status >= 400 && status <= 599 ? status : 500);
	status = req->err_status;
	cm_buf_puts(&b, "{\"error\":{\"code\":");
	cm_buf_json_str(&b, req->err_code);
	cm_buf_puts(&b, ",\"message\":");
	cm_buf_json_str(&b, req->err_msg);
	cm_buf_puts(&b, ",\"request_id\":");
	cm_buf_json_str(&b, req->id);
	cm_buf_puts(&b, "}}");
	reply_send(req, status, "application/json", b.data, b.len);
	cm_buf_release(&b);
}

int
cm_req_fail(struct cm_req *req, int status, const char *code, const char *fmt,
	    ...)
{
	va_list ap;

	req->err_status = status;
	cm_strlcpy(req->err_code, code ? code : status_code(status),
		   sizeof(req->err_code));
	va_start(ap, fmt);
	vsnprintf(req->err_msg, sizeof(req->err_msg), fmt, ap);
	va_end(ap);
	return status;
}

void
cm_req_reply_json(struct cm_req *req, int status, const cJSON *json)
{
	char *text;

	if (req->replied)
		return;
	if (req->err_status || (!json && status >= 400)) {
		reply_error(req, status);
		return;
	}
	if (!json) {
		reply_send(req, status, NULL, NULL, 0);
		return;
	}
	text = cm_json_print(json);
	reply_send(req, status, "application/json", text, strlen(text));
	free(text);
}

void
cm_req_reply(struct cm_req *req, int status, const char *content_type,
	     const void *body, size_t len)
{
	reply_send(req, status, content_type, body, len);
}

void
cm_req_set_header(struct cm_req *req, const char *name, const char *value)
{
	if (req->replied || req->streaming || !req->ev || !name || !value)
		return;
	evhttp_add_header(evhttp_request_get_output_headers(req->ev), name,
			  value);
}

int
cm_req_if_match(const struct cm_req *req, int64_t *version)
{
	const char *h = cm_req_header(req, "If-Match");
	char num[24];
	size_t n;

	if (!h)
		return CM_ENOENT;
	*version = -1;
	if (!strcmp(h, "*")) {
		*version = 0;
		return 0;
	}
	if (!strncmp(h, "W/", 2))
		h += 2;
	n = strlen(h);
	if (n >= 2 && h[0] == '"' && h[n - 1] == '"') {
		h++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(num))
		return CM_EINVAL;
	memcpy(num, h, n);
	num[n] = '\0';
	return cm_parse_i64(num, 1, INT64_MAX, version);
}

void
cm_req_set_etag(struct cm_req *req, int64_t version)
{
	char etag[32];

	if (version < 1)
		return;
	snprintf(etag, sizeof(etag), "\"%lld\"", (long long)version);
	cm_req_set_header(req, "ETag", etag);
}

bool
cm_req_replied(const struct cm_req *req)
{
	return req->replied;
}

/* ---- request accessors ------------------------------------------------ */

const char *
cm_req_method(const struct cm_req *req)
{
	return req->method;
}

const char *
cm_req_path(const struct cm_req *req)
{
	return req->path ? req->path : req->raw_path;
}

const char *
cm_req_uri(const struct cm_req *req)
{
	const char *u = req->ev ? evhttp_request_get_uri(req->ev) : NULL;

	return u ? u : "";
}

const struct cm_route *
cm_req_route(const struct cm_req *req)
{
	return req->pat ? req->pat->route : NULL;
}

const char *
cm_req_param(const struct cm_req *req, const char *name)
{
	int i;

	for (i = 0; name && i < req->nparams; i++)
		if (!strcmp(req->params[i].name, name))
			return req->params[i].value;
	return NULL;
}

int
cm_req_param_i64(const struct cm_req *req, const char *name, int64_t min,
		 int64_t max, int64_t *out)
{
	const char *v = cm_req_param(req, name);

	if (!v)
		return CM_ENOENT;
	return cm_parse_i64(v, min, max, out);
}

const char *
cm_req_query(struct cm_req *req, const char *name)
{
	const char *q;

	if (!req->query_parsed) {
		if (!req->ev)
			return NULL;
		req->query_parsed = true;
		TAILQ_INIT(&req->query);
		q = evhttp_uri_get_query(
			evhttp_request_get_evhttp_uri(req->ev));
		if (q)
			evhttp_parse_query_str(q, &req->query);
	}
	return name ? evhttp_find_header(&req->query, name) : NULL;
}

const char *
cm_req_header(const struct cm_req *req, const char *name)
{
	if (!req->ev)
		return NULL;
	return evhttp_find_header(evhttp_request_get_input_headers(req->ev),
				  name);
}

/* Lowercased host without the port; "" when absent or unusable. */
static void
host_parse(const char *h, char out[HOST_MAX + 1])
{
	size_t n, i;
	const char *end;

	out[0] = '\0';
	if (!h)
		return;
	if (h[0] == '[') {
		end = strchr(h, ']');
		n = end ? (size_t)(end - h) + 1 : 0;
	} else {
		end = strchr(h, ':');
		n = end ? (size_t)(end - h) : strlen(h);
	}
	if (!n || n > HOST_MAX)
		return;
	for (i = 0; i < n; i++)
		out[i] =
			(h[i] >= 'A' && h[i] <= 'Z') ? (char)(h[i] + 32) : h[i];
	out[n] = '\0';
}

const char *
cm_req_host(struct cm_req *req)
{
	if (!req->host_done) {
		req->host_done = true;
		host_parse(cm_req_header(req, "Host"), req->host);
	}
	return req->host;
}

const char *
cm_req_id(const struct cm_req *req)
{
	return req->id;
}

const char *
cm_req_peer(const struct cm_req *req)
{
	struct evhttp_connection *evcon =
		req->ev ? evhttp_request_get_connection(req->ev) : NULL;
	char *addr = NULL;
	ev_uint16_t port = 0;

	if (!evcon)
		return "";
	evhttp_connection_get_peer(evcon, &addr, &port);
	return addr ? addr : "";
}

void
cm_req_body(const struct cm_req *req, const char **data, size_t *len)
{
	struct evbuffer *in =
		req->ev ? evhttp_request_get_input_buffer(req->ev) : NULL;
	size_t n = in ? evbuffer_get_length(in) : 0;

	*len = n;
	*data = n ? (const char *)evbuffer_pullup(in, -1) : "";
}

/* application/json, any case, optionally followed by parameters. */
static bool
is_json_type(const char *ct)
{
	static const char want[] = "application/json";
	size_t n = sizeof(want) - 1;

	if (!ct)
		return false;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, want, n))
		return false;
	ct += n;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}

int
cm_req_json(struct cm_req *req, cJSON **out)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	const char *data;
	size_t len;
	cJSON *json;

	*out = NULL;
	if (!is_json_type(cm_req_header(req, "Content-Type")))
		return cm_req_fail(req, 415, "unsupported_media_type",
				   "Content-Type must be application/json");
	cm_req_body(req, &data, &len);
	if (!len)
		return cm_req_fail(req, 400, "invalid_json",
				   "the request body is empty");
	json = cm_json_parse(data, len, errbuf);
	if (!json)
		return cm_req_fail(req, 400, "invalid_json", "%s", errbuf);
	if (!cJSON_IsObject(json)) {
		cJSON_Delete(json);
		return cm_req_fail(req, 400, "invalid_json",
				   "the request body must be a JSON object");
	}
	*out = json;
	return 0;
}

const struct cm_principal *
cm_req_principal(const struct cm_req *req)
{
	return req->has_principal ? &req->principal : NULL;
}

const struct cm_tenant *
cm_req_tenant(const struct cm_req *req)
{
	return req->has_tenant ? &req->tenant : NULL;
}

const char *
cm_req_tenant_id(const struct cm_req *req)
{
	return req->has_tenant ? req->tenant.id : NULL;
}

void
cm_req_set_principal(struct cm_req *req, const struct cm_principal *p)
{
	if (!p)
		return;
	req->principal = *p;
	req->has_principal = true;
}

void
cm_req_set_tenant(struct cm_req *req, const struct cm_tenant *t)
{
	if (!t)
		return;
	req->tenant = *t;
	req->tenant.id[sizeof(req->tenant.id) - 1] = '\0';
	req->has_tenant = true;
	cm_log_set_context(req->id, req->tenant.id);
}

/* ---- the request pipeline --------------------------------------------- */

static bool
request_id_ok(const char *s)
{
	size_t n;

	if (!s)
		return false;
	for (n = 0; s[n]; n++) {
		char c = s[n];

		if (n == REQUEST_ID_MAX ||
		    !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return n > 0;
}

static void
req_init(struct cm_req *req, struct worker *w, struct evhttp_request *ev)
{
	const struct method *m = method_by_cmd(evhttp_request_get_command(ev));
	const char *rid;

	memset(req, 0, offsetof(struct cm_req, segs));
	req->magic = REQ_MAGIC;
	req->t0_ns = now_ns();
	req->w = w;
	req->ev = ev;
	req->method = m ? m->name : "OTHER";
	req->mbit = m ? m->bit : 0;
	req->raw_path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(ev));
	if (!req->raw_path)
		req->raw_path = "";
	rid = cm_req_header(req, "X-Request-ID");
	if (request_id_ok(rid))
		cm_strlcpy(req->id, rid, sizeof(req->id));
	else
		mint_uuid(w, req->id);
	cm_log_set_context(req->id, NULL);
}

static void
req_release(struct cm_req *req)
{
	if (req->query_parsed)
		evhttp_clear_headers(&req->query);
	free(req->heap);
	req->heap = NULL;
	req->magic = 0;
}

static bool
is_preflight(const struct cm_req *req)
{
	return req->mbit == M_OPTIONS && cm_req_header(req, "Origin") &&
	       cm_req_header(req, "Access-Control-Request-Method");
}

/* OPTIONS without a route of its own: CORS preflight or plain Allow. */
static void
answer_options(struct cm_req *req, unsigned allowed)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req->ev);
	struct cm_buf allow = CM_BUF_INIT(256);

	allow_list(allowed, &allow);
	if (!is_preflight(req)) {
		evhttp_add_header(h, "Allow", cm_buf_str(&allow));
		reply_send(req, 204, NULL, NULL, 0);
	} else if (!origin_allowed(req)) {
		cm_req_fail(req, 403, "origin_not_allowed",
			    "cross-origin requests from this origin are "
			    "not allowed");
		reply_error(req, 403);
	} else {
		evhttp_add_header(h, "Access-Control-Allow-Methods",
				  cm_buf_str(&allow));
		evhttp_add_header(h, "Access-Control-Allow-Headers",
				  CORS_ALLOW_HEADERS);
		evhttp_add_header(h, "Access-Control-Max-Age", CORS_MAX_AGE);
		reply_send(req, 204, NULL, NULL, 0);
	}
	cm_buf_release(&allow);
}

static void
answer_405(struct cm_req *req, unsigned allowed)
{
	struct cm_buf allow = CM_BUF_INIT(256);

	allow_list(allowed, &allow);
	evhttp_add_header(evhttp_request_get_output_headers(req->ev), "Allow",
			  cm_buf_str(&allow));
	cm_req_fail(req, 405, "method_not_allowed",
		    "%s is not allowed here; allowed: %s", req->method,
		    cm_buf_str(&allow));
	reply_error(req, 405);
	cm_buf_release(&allow);
}

/* Auth then tenant hook, as the route's flags say; 0 to go on. */
static int
run_hooks(struct cm_req *req)
{
	const struct cm_http *http = req->w->http;
	unsigned flags = req->pat->route->flags;
	int rc = 0;

	if (flags & CM_ROUTE_PUBLIC)
		return 0;
	if (http->hooks.auth)
		rc = http->hooks.auth(req, http->hooks.arg);
	if (!rc && http->hooks.tenant && !(flags & CM_ROUTE_NO_TENANT))
		rc = http->hooks.tenant(req, http->hooks.arg);
	return rc;
}

/* Limits, routing, hooks, handler; whatever stops the chain replies. */
static void
dispatch(struct cm_req *req)
{
	const struct cm_http *http = req->w->http;
	struct evbuffer *in = evhttp_request_get_input_buffer(req->ev);
	unsigned allowed = 0;
	int rc;

	if (evbuffer_get_length(in) > http->cfg.max_body) { /* evhttp did */
		cm_req_fail(req, 413, "payload_too_large",
			    "request body too large");
		reply_error(req, 413);
		return;
	}
	if (!path_decode(req, req->raw_path)) {
		cm_req_fail(req, 400, "bad_request", "malformed request path");
		reply_error(req, 400);
		return;
	}
	req->pat = route_find(req, &allowed);
	if (req->mbit == M_OPTIONS && allowed &&
	    (!req->pat || is_preflight(req))) {
		req->pat = NULL;
		answer_options(req, allowed);
	} else if (!req->pat && allowed) {
		answer_405(req, allowed);
	} else if (!req->pat) {
		cm_req_fail(req, 404, "not_found", "no such resource");
		reply_error(req, 404);
	} else {
		req->label = req->pat->route->pattern;
		params_bind(req);
		rc = run_hooks(req);
		if (rc)
			cm_req_reply_json(req, rc >= 400 ? rc : 500, NULL);
		else
			req->pat->route->fn(req, http->arg);
	}
}

static struct conn *
conn_of(struct worker *w, struct evhttp_request *ev)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
	struct bufferevent *bev;
	evutil_socket_t fd;
	struct conn *c;

	if (!evcon)
		return NULL;
	bev = evhttp_connection_get_bufferevent(evcon);
	fd = bev ? bufferevent_getfd(bev) : -1;
	if (fd < 0 || (size_t)fd >= w->nby_fd)
		return NULL;
	c = w->by_fd[fd];
	return c && c->evcon == evcon ? c : NULL;
}

static void
on_complete(struct evhttp_request *ev, void *arg)
{
	struct conn *c = arg;

	(void)ev;
	if (c->magic != CONN_MAGIC)
		return;
	c->responding = false;
	conn_request_begin(c);
}

static void
req_finish(struct cm_req *req)
{
	double secs = (double)(now_ns() - req->t0_ns) / 1e9;

	cm_metrics_http_observe(req->label ? req->label : "unmatched",
				req->method, req->status, secs);
	cm_log_info("%s %.256s %d %.3fms %zuB", req->method,
		    req->pat ? req->pat->route->pattern : cm_req_path(req),
		    req->status, secs * 1e3, req->bytes);
	cm_log_set_context(NULL, NULL);
	req_release(req);
}

/* evhttp_set_gencb: every request that evhttp parsed comes here. */
static void
on_request(struct evhttp_request *ev, void *arg)
{
	struct worker *w = arg;
	struct cm_req req;

	req_init(&req, w, ev);
	req.conn = conn_of(w, ev);
	if (req.conn) {
		req.conn->responding = true;
		evtimer_del(&req.conn->timer);
		evhttp_request_set_on_complete_cb(ev, on_complete, req.conn);
	}
	cm_metrics_gauge_add(IN_FLIGHT, IN_FLIGHT_HELP, NULL, 1);
	dispatch(&req);
	if (req.deferred) { /* the heap copy finishes it */
		cm_log_set_context(NULL, NULL);
		return;
	}
	if (!req.replied) {
		cm_log_err("http: handler for %s %s returned without a reply",
			   req.method, req.label ? req.label : "?");
		cm_req_fail(&req, 500, "internal", "internal error");
		reply_error(&req, 500);
	}
	cm_metrics_gauge_add(IN_FLIGHT, IN_FLIGHT_HELP, NULL, -1);
	req_finish(&req);
}

/* ---- deferred replies and streams -------------------------------------- */

static const char *
rebase(const char *p, const struct cm_req *from, struct cm_req *to)
{
	if (p && p >= from->buf && p < from->buf + sizeof(from->buf))
		return to->buf + (p - from->buf);
	return p;
}

struct cm_req *
cm_req_defer(struct cm_req *req)
{
	struct cm_req *d;
	struct worker *w = req->w;
	int i;

	if (req->magic != REQ_MAGIC || req->replied || req->deferred ||
	    req->on_heap)
		return NULL;
	d = cm_xmalloc(sizeof(*d));
	memcpy(d, req, sizeof(*d));
	d->path = (char *)rebase(req->path, req, d);
	for (i = 0; i < req->nsegs && i < MAX_SEGS; i++)
		d->segs[i] = rebase(req->segs[i], req, d);
	for (i = 0; i < req->nparams; i++)
		d->params[i].value = rebase(req->params[i].value, req, d);
	if (req->query_parsed) { /* a list head does not move: parse again */
		evhttp_clear_headers(&req->query);
		req->query_parsed = false;
		d->query_parsed = false;
	}
	req->heap = NULL; /* the path storage is d's now */
	req->deferred = true;
	d->deferred = true;
	d->on_heap = true;
	d->dprev = NULL;
	d->dnext = w->deferred;
	if (w->deferred)
		w->deferred->dprev = d;
	w->deferred = d;
	if (d->conn)
		d->conn->deferred = d;
	return d;
}

void
cm_req_on_close(struct cm_req *req, cm_req_close_fn fn, void *arg)
{
	if (!req->on_heap)
		return;
	req->close_fn = fn;
	req->close_arg = arg;
}

bool
cm_req_deferred(const struct cm_req *req)
{
	return req->on_heap;
}

bool
cm_req_client_gone(const struct cm_req *req)
{
	return req->gone;
}

static void
deferred_close_cb(struct cm_req *req)
{
	if (req->close_called || !req->close_fn)
		return;
	req->close_called = true;
	req->close_fn(req, req->close_arg); /* may free req */
}

/* The final step of a deferred request: log, metrics, free. */
static void
deferred_finish(struct cm_req *req)
{
	struct worker *w = req->w;

	if (req->dprev)
		req->dprev->dnext = req->dnext;
	else if (w->deferred == req)
		w->deferred = req->dnext;
	if (req->dnext)
		req->dnext->dprev = req->dprev;
	if (req->conn && req->conn->deferred == req)
		req->conn->deferred = NULL;
	if (req->tick_ev)
		event_free(req->tick_ev);
	req->tick_ev = NULL;
	if (req->waiting)
		atomic_fetch_sub(&w->nwaiting, 1);
	req->waiting = false;
	if (req->gone && !req->status)
		req->status = 499; /* nginx's "client closed request" */
	cm_log_set_context(req->id, req->has_tenant ? req->tenant.id : NULL);
	cm_metrics_gauge_add(IN_FLIGHT, IN_FLIGHT_HELP, NULL, -1);
	req_finish(req);
	free(req);
}

/* The connection of a deferred request closes (client gone, timeout,
   teardown). evhttp frees the request with the connection unless it
   detached it first (an EOF or error while we held it). */
static void
deferred_gone(struct conn *c)
{
	struct cm_req *req = c->deferred;

	c->deferred = NULL;
	req->conn = NULL;
	req->gone = true;
	if (req->ev && evhttp_request_get_connection(req->ev))
		req->ev = NULL;
	deferred_close_cb(req);
}

static void
deferred_stopping(struct worker *w)
{
	struct cm_req *req, *next;

	for (req = w->deferred; req; req = next) {
		next = req->dnext;
		if (req->streaming)
			deferred_close_cb(req);
	}
}

/* After evhttp_free: owners get their close call, then what is left is
   freed (its evhttp request went with evhttp). */
static void
deferred_teardown(struct worker *w)
{
	struct cm_req *req;

	while ((req = w->deferred)) {
		req->gone = true;
		req->ev = NULL;
		req->conn = NULL;
		deferred_close_cb(req);
		if (w->deferred == req) {
			cm_log_warn("http: deferred %s %s never finished",
				    req->method, cm_req_path(req));
			deferred_finish(req);
		}
	}
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cm_req *req = arg;

	(void)fd;
	(void)what;
	req->tick_fn(req, req->tick_arg); /* may free req */
}

int
cm_req_every(struct cm_req *req, int ms, cm_req_tick_fn fn, void *arg)
{
	struct timeval tv;

	if (!req->on_heap || req->tick_ev || ms < 1 || !fn)
		return CM_EINVAL;
	req->tick_ev = event_new(req->w->base, -1, EV_PERSIST, tick_cb, req);
	if (!req->tick_ev)
		return CM_ENOMEM;
	req->tick_fn = fn;
	req->tick_arg = arg;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (event_add(req->tick_ev, &tv)) {
		event_free(req->tick_ev);
		req->tick_ev = NULL;
		return CM_EIO;
	}
	return 0;
}

/* Every worker that can be signalled (cm_http_signal), while its loop
   runs. */
#define SIGNAL_WORKERS_MAX 1024
static pthread_mutex_t signal_mu = PTHREAD_MUTEX_INITIALIZER;
static struct worker *signal_workers[SIGNAL_WORKERS_MAX];
static int nsignal_workers;

static void
signal_register(struct worker *w)
{
	pthread_mutex_lock(&signal_mu);
	if (nsignal_workers < SIGNAL_WORKERS_MAX) {
		signal_workers[nsignal_workers++] = w;
		w->signalled = true;
	}
	pthread_mutex_unlock(&signal_mu);
}

static void
signal_unregister(struct worker *w)
{
	int i;

	pthread_mutex_lock(&signal_mu);
	for (i = 0; i < nsignal_workers; i++)
		if (signal_workers[i] == w) {
			signal_workers[i] = signal_workers[--nsignal_workers];
			break;
		}
	pthread_mutex_unlock(&signal_mu);
}

void
cm_http_signal(void)
{
	uint64_t one = 1;
	ssize_t n;
	int i;

	pthread_mutex_lock(&signal_mu);
	for (i = 0; i < nsignal_workers; i++)
		if (atomic_load(&signal_workers[i]->nwaiting) > 0) {
			n = write(signal_workers[i]->signal_fd, &one,
				  sizeof(one));
			(void)n; /* EAGAIN: a wake-up is pending anyway */
		}
	pthread_mutex_unlock(&signal_mu);
}

/* The worker was signalled (or a wait began): every waiting request
   looks. */
static void
signal_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct cm_req *req, *next;
	uint64_t v;
	ssize_t n;

	(void)what;
	n = read(fd, &v, sizeof(v)); /* EAGAIN after event_active */
	(void)n;
	for (req = w->deferred; req; req = next) {
		next = req->dnext;
		if (req->waiting)
			req->wait_fn(req, req->wait_arg); /* may free req */
	}
}

int
cm_req_wait(struct cm_req *req, cm_req_tick_fn fn, void *arg)
{
	if (!req->on_heap || req->waiting || !fn)
		return CM_EINVAL;
	if (!req->w->signal_ev || !req->w->signalled)
		return CM_EIO; /* no signal could reach it */
	req->wait_fn = fn;
	req->wait_arg = arg;
	req->waiting = true;
	/* counted before the first look: a signaller that published its
	   result before this count could be seen also published it before
	   the look, so the look sees it */
	atomic_fetch_add(&req->w->nwaiting, 1);
	event_active(req->w->signal_ev, EV_READ, 0);
	return 0;
}

int
cm_req_stream_begin(struct cm_req *req, int status, const char *content_type)
{
	struct evkeyvalq *h;

	if (!req->on_heap || req->replied || req->streaming || status < 200 ||
	    !status_has_body(status))
		return CM_EINVAL;
	if (!req->ev || req->gone)
		return CM_EPIPE;
	req->streaming = true;
	req->status = status;
	h = evhttp_request_get_output_headers(req->ev);
	headers_common(req, false);
	if (content_type)
		evhttp_add_header(h, "Content-Type", content_type);
	req->w->own_write = true;
	evhttp_send_reply_start(req->ev, status, status_reason(status));
	req->w->own_write = false;
	return 0;
}

int
cm_req_stream_write(struct cm_req *req, const void *data, size_t len)
{
	struct evbuffer *b;

	if (!req->streaming || req->replied)
		return CM_EINVAL;
	if (!req->ev || req->gone)
		return CM_EPIPE;
	if (!len)
		return 0;
	b = evbuffer_new();
	if (!b || evbuffer_add(b, data, len)) {
		if (b)
			evbuffer_free(b);
		return CM_ENOMEM;
	}
	req->w->own_write = true;
	evhttp_send_reply_chunk(req->ev, b);
	req->w->own_write = false;
	evbuffer_free(b);
	req->bytes += len;
	return 0;
}

size_t
cm_req_stream_pending(const struct cm_req *req)
{
	struct evhttp_connection *evcon =
		req->ev ? evhttp_request_get_connection(req->ev) : NULL;
	struct bufferevent *bev =
		evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;

	return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

void
cm_req_stream_end(struct cm_req *req)
{
	if (!req->on_heap || req->replied)
		return;
	if (!req->streaming) { /* nothing was sent: an error reply */
		if (!req->err_status)
			cm_req_fail(req, 500, "internal", "internal error");
		reply_error(req, 500);
		return;
	}
	req->replied = true;
	if (req->ev) {
		req->w->own_write = true;
		evhttp_send_reply_end(req->ev); /* frees a detached request */
		req->w->own_write = false;
	}
	deferred_finish(req);
}

struct evhttp_request *
cm_http_req_ev_(const struct cm_req *req)
{
	return req->ev;
}

struct event_base *
cm_http_req_base_(const struct cm_req *req)
{
	return req->w->base;
}

struct event_base *
cm_http_worker_base_(void)
{
	return cur_worker ? cur_worker->base : NULL;
}

int
cm_http_worker_at_exit_(void (*fn)(void *arg), void *arg)
{
	struct worker *w = cur_worker;

	if (!w ||
	    w->nat_exit >= (int)(sizeof(w->at_exit) / sizeof(w->at_exit[0])))
		return CM_ENOSPC;
	w->at_exit[w->nat_exit].fn = fn;
	w->at_exit[w->nat_exit].arg = arg;
	w->nat_exit++;
	return 0;
}

/* ---- workers and lifecycle -------------------------------------------- */

static void
drain_step(struct worker *w)
{
	struct timeval tick = { 0, DRAIN_TICK_US };
	struct conn *c, *next;
	bool busy = false;

	for (c = w->conns; c; c = next) {
		next = c->next;
		if (conn_idle(c))
			evhttp_connection_free(c->evcon); /* frees c */
		else
			busy = true;
	}
	if (!busy) {
		event_base_loopexit(w->base, NULL);
		return;
	}
	if (cm_now_ms() >= w->drain_deadline_ms) {
		w->cut_off = true;
		cm_log_warn("http: drain deadline reached with requests in "
			    "flight");
		event_base_loopexit(w->base, NULL);
		return;
	}
	evtimer_add(w->drain_ev, &tick);
}

static void
drain_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drain_step(arg);
}

static void deferred_stopping(struct worker *w);

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint64_t v;

	(void)what;
	if (read(fd, &v, sizeof(v)) < 0 || w->stopping)
		return;
	w->stopping = true;
	if (w->bound) {
		evhttp_del_accept_socket(w->evh, w->bound);
		w->bound = NULL;
	}
	w->drain_deadline_ms = cm_now_ms() + w->http->cfg.drain_timeout_ms;
	deferred_stopping(w);
	drain_step(w);
}

static void deferred_teardown(struct worker *w);

static void
worker_teardown(struct worker *w)
{
	struct conn *c, *next;

	for (c = w->conns; c; c = next) { /* closecbs must be in place */
		next = c->next;
		if (!c->attached)
			conn_attach(c);
	}
	if (w->evh)
		evhttp_free(w->evh); /* closes every connection */
	w->evh = NULL;
	w->bound = NULL;
	while (w->conns)
		conn_release(w->conns);
	write_queue_run(w, false);
	deferred_teardown(w);
	while (w->nat_exit > 0) {
		w->nat_exit--;
		w->at_exit[w->nat_exit].fn(w->at_exit[w->nat_exit].arg);
	}
	if (w->wake_ev)
		event_free(w->wake_ev);
	if (w->signal_ev)
		event_free(w->signal_ev);
	w->signal_ev = NULL;
	if (w->drain_ev)
		event_free(w->drain_ev);
	if (w->fix_ev)
		event_free(w->fix_ev);
	if (w->write_ev)
		event_free(w->write_ev);
	w->wake_ev = w->drain_ev = w->fix_ev = w->write_ev = NULL;
	if (w->base)
		event_base_free(w->base);
	w->base = NULL;
	free(w->by_fd);
	w->by_fd = NULL;
	w->nby_fd = 0;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;

	cur_worker = w;
	signal_register(w);
	event_base_dispatch(w->base);
	signal_unregister(w);
	worker_teardown(w);
	return NULL;
}

/* A listening socket on addr:port with SO_REUSEPORT; fd or CM_E*. */
static int
listen_socket(const char *addr, int port, char errbuf[CM_ERRBUF_LEN])
{
	struct addrinfo hints, *ai = NULL;
	char service[16];
	int fd = -1, one = 1, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	snprintf(service, sizeof(service), "%d", port);
	rc = getaddrinfo(addr, service, &hints, &ai);
	if (rc) {
		snprintf(errbuf, CM_ERRBUF_LEN, "bad bind address %s: %s", addr,
			 gai_strerror(rc));
		return CM_EINVAL;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) ||
	    listen(fd, LISTEN_BACKLOG)) {
		rc = -errno;
		snprintf(errbuf, CM_ERRBUF_LEN, "listen on %s:%d: %s", addr,
			 port, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = rc;
	}
	freeaddrinfo(ai);
	return fd;
}

static int
bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len))
		return -1;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void
worker_evhttp(struct cm_http *http, struct worker *w)
{
	const struct cm_http_config *c = &http->cfg;

	evhttp_set_gencb(w->evh, on_request, w);
	evhttp_set_bevcb(w->evh, conn_new_bev, w);
	evhttp_set_allowed_methods(
		w->evh, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
				EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH |
				EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS);
	evhttp_set_max_body_size(w->evh, (ev_ssize_t)c->max_body);
	evhttp_set_max_headers_size(w->evh, (ev_ssize_t)c->max_header);
	evhttp_set_timeout_tv(w->evh, &http->read_tv);
}

/* Event base, evhttp and events of one worker around its listener fd
   (owned from here on, also on failure). */
static int
worker_init(struct cm_http *http, struct worker *w, int fd,
	    char errbuf[CM_ERRBUF_LEN])
{
	struct event_config *ec = event_config_new();

	w->http = http;
	/* one thread per base: no locks. evhttp switches read and write
	   interest several times per request: let epoll see only the net
	   change once per loop turn (we never dup a watched fd) */
	if (ec)
		event_config_set_flag(
			ec, EVENT_BASE_FLAG_NOLOCK |
				    EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	w->base = ec ? event_base_new_with_config(ec) : NULL;
	if (ec)
		event_config_free(ec);
	w->evh = w->base ? evhttp_new(w->base) : NULL;
	w->bound = w->evh ? evhttp_accept_socket_with_handle(w->evh, fd) : NULL;
	if (!w->bound) {
		close(fd);
		snprintf(errbuf, CM_ERRBUF_LEN, "libevent set-up failed");
		return CM_EIO;
	}
	worker_evhttp(http, w);
	w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	w->wake_ev = w->wake_fd >= 0
			     ? event_new(w->base, w->wake_fd,
					 EV_READ | EV_PERSIST, wake_cb, w)
			     : NULL;
	w->signal_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	w->signal_ev = w->signal_fd >= 0
			       ? event_new(w->base, w->signal_fd,
					   EV_READ | EV_PERSIST, signal_cb, w)
			       : NULL;
	w->drain_ev = evtimer_new(w->base, drain_cb, w);
	w->fix_ev = event_new(w->base, -1, 0, fix_cb, w);
	w->write_ev = event_new(w->base, -1, 0, write_cb, w);
	if (!w->wake_ev || !w->signal_ev || !w->drain_ev || !w->fix_ev ||
	    !w->write_ev || event_add(w->wake_ev, NULL) ||
	    event_add(w->signal_ev, NULL)) {
		snprintf(errbuf, CM_ERRBUF_LEN, "libevent set-up failed");
		return CM_EIO;
	}
	return 0;
}

/* Bind every worker's listener (port 0: the first picks the port). */
static int
workers_init(struct cm_http *http, char errbuf[CM_ERRBUF_LEN])
{
	int i, fd, port = http->cfg.port, rc;

	for (i = 0; i < http->nworkers; i++)
		http->workers[i].wake_fd = http->workers[i].signal_fd = -1;
	for (i = 0; i < http->nworkers; i++) {
		fd = listen_socket(http->cfg.bind_addr, port, errbuf);
		if (fd < 0)
			return fd;
		if (i == 0 && (port = bound_port(fd)) <= 0) {
			close(fd);
			snprintf(errbuf, CM_ERRBUF_LEN, "getsockname failed");
			return CM_EIO;
		}
		rc = worker_init(http, &http->workers[i], fd, errbuf);
		if (rc < 0)
			return rc;
	}
	http->port = port;
	return 0;
}

static void
workers_free(struct cm_http *http)
{
	int i;

	for (i = 0; http->workers && i < http->nworkers; i++) {
		struct worker *w = &http->workers[i];

		if (!w->running)
			worker_teardown(w);
		if (w->wake_fd >= 0)
			close(w->wake_fd);
		if (w->signal_fd >= 0)
			close(w->signal_fd);
	}
	free(http->workers);
	http->workers = NULL;
}

int
cm_http_start(struct cm_http *http, char errbuf[CM_ERRBUF_LEN])
{
	int i, rc;

	if (!http || http->magic != HTTP_MAGIC || http->started) {
		snprintf(errbuf, CM_ERRBUF_LEN, "server already started");
		return CM_EINVAL;
	}
	signal(SIGPIPE, SIG_IGN); /* a peer that went away is not fatal */
	http->nworkers = http->cfg.threads;
	http->workers =
		cm_xcalloc((size_t)http->nworkers, sizeof(*http->workers));
	rc = workers_init(http, errbuf);
	for (i = 0; rc == 0 && i < http->nworkers; i++) {
		rc = -pthread_create(&http->workers[i].thread, NULL,
				     worker_main, &http->workers[i]);
		if (rc)
			snprintf(errbuf, CM_ERRBUF_LEN, "pthread_create: %s",
				 strerror(-rc));
		else
			http->workers[i].running = true;
	}
	http->started = true;
	if (rc < 0) {
		cm_http_stop(http);
		cm_http_wait(http);
		workers_free(http);
		http->started = false;
	}
	return rc;
}

int
cm_http_port(const struct cm_http *http)
{
	return http ? http->port : -1;
}

void
cm_http_stop(struct cm_http *http)
{
	uint64_t one = 1;
	ssize_t n;
	int i;

	if (!http || !http->started || atomic_exchange(&http->stopped, true))
		return;
	for (i = 0; i < http->nworkers; i++) {
		if (http->workers[i].wake_fd < 0)
			continue;
		n = write(http->workers[i].wake_fd, &one, sizeof(one));
		(void)n;
	}
}

int
cm_http_wait(struct cm_http *http)
{
	bool cut = false;
	int i;

	if (!http || !http->started || http->joined)
		return 0;
	for (i = 0; i < http->nworkers; i++) {
		struct worker *w = &http->workers[i];

		if (!w->running)
			continue;
		pthread_join(w->thread, NULL);
		w->running = false;
		cut |= w->cut_off;
	}
	http->joined = true;
	return cut ? CM_ETIMEDOUT : 0;
}

void
cm_http_free(struct cm_http *http)
{
	int i;

	if (!http)
		return;
	if (http->started && !http->joined) {
		cm_http_stop(http);
		cm_http_wait(http);
	}
	workers_free(http);
	for (i = 0; http->pats && i < http->npats; i++)
		free(http->pats[i].copy);
	free(http->pats);
	free(http->origins);
	free(http->cors_copy);
	free(http->service);
	free(http->bind_addr);
	http->magic = 0;
	free(http);
}
