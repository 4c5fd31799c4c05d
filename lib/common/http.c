/*
 * http.c - the server: workers, connections, router, middleware and
 * replies.
 *
 * Each worker owns an event_base and a SO_REUSEPORT listener; nothing is
 * shared between workers except the read-only route table, so the request
 * path takes no lock (metrics use atomics).
 *
 * libevent runs the loop, but HTTP/1.x itself is ours (http_wire.c frames
 * requests): evhttp allocated a request, a header entry per header and
 * several buffers per request, gave no hook before a request was fully
 * read and answered protocol errors with HTML of its own. Per connection
 * (struct conn) there is one input buffer that grows up to max_header +
 * max_body (plus one read), into which the head is parsed in place and a
 * chunked body decoded in place; one output evbuffer; a read event that
 * stays registered; a write event only while a write is stalled; and one
 * timer: the deadline for the next whole request (read_timeout_ms, which
 * is also the keep-alive idle time), or the lingering close.
 *
 * A request is handled once it is complete; the next one on the
 * connection (pipelined) only after its reply has been queued in full, so
 * answers keep their order and the strings of a request (which point into
 * the input buffer) stay put. If the client goes away while a deferred
 * request is pending, the buffers pass to that request. Replies are
 * written when the worker's round of callbacks ends (one writev per
 * connection), and an error that ends a connection (400, 413, 431, ...)
 * is written, then the write side shut and the rest of the input read
 * and dropped for up to a second, so that the client reads the answer
 * rather than a reset.
 */
#include "common/http.h"
#include "http_internal.h"
#include "http_wire.h"
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
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h> /* the query string parser */
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#include <openssl/rand.h>

#include <arpa/inet.h>
#include <errno.h>
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
} methods[] = {
	{ "GET", M_GET },	  { "HEAD", M_HEAD },	{ "POST", M_POST },
	{ "PUT", M_PUT },	  { "PATCH", M_PATCH }, { "DELETE", M_DELETE },
	{ "OPTIONS", M_OPTIONS },
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

#define CONN_QUEUE_MAX 256    /* connections written at once per round */
#define IN_MIN 4096	      /* first input buffer */
#define IN_SPARE 8192	      /* beyond max_header + max_body */
#define IN_KEEP 16384	      /* a larger buffer is freed when empty */
#define OUT_HIGH (256 * 1024) /* pipelined answers waiting: stop reading */
#define LINGER_MS 1000
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100 /* after EMFILE and the like */

struct worker {
	struct cm_http *http;
	pthread_t thread;
	bool running;
	struct event_base *base;
	int listen_fd;
	struct event *listen_ev;
	struct event *accept_pause_ev;
	int wake_fd; /* cm_http_stop writes here */
	struct event *wake_ev;
	int signal_fd; /* cm_http_signal writes here */
	struct event *signal_ev;
	atomic_int nwaiting;		 /* requests in cm_req_wait */
	bool signalled;			 /* in the cm_http_signal registry */
	struct event *drain_ev;		 /* drain progress while stopping */
	struct event *write_ev;		 /* writes what the queues hold */
	bool write_armed;		 /* write_ev is active */
	TAILQ_HEAD(, cm_http_soon) soon; /* cm_http_soon_, run first */
	struct conn *conn_q[CONN_QUEUE_MAX]; /* connections with output */
	int conn_n;
	bool stopping;
	bool cut_off; /* the drain deadline hit busy conns */
	int64_t drain_deadline_ms;
	struct conn *conns;	 /* every open connection */
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

/* A client connection, from accept to close. */
struct conn {
	unsigned magic;
	struct worker *w;
	int fd;
	struct event rd;    /* registered unless paused */
	struct event wr;    /* registered while a write is stalled */
	struct event timer; /* request deadline, or the lingering close */
	struct evbuffer *out;
	char *in; /* input: the request being read, then what follows */
	size_t in_len, in_cap;
	size_t scan;		   /* cm_wire_head_end's progress */
	struct cm_wire_head *head; /* of the request being read */
	struct cm_wire_chunks chunks;
	bool have_head;
	bool continue_sent;
	size_t body_off, body_len, req_end; /* of a complete request */
	bool reading;			    /* rd is registered */
	bool writing;			    /* wr is registered */
	bool queued;			    /* in the worker's conn_q */
	bool responding;		    /* a request is being handled */
	bool closing;		 /* no more requests: close once written */
	bool lingering;		 /* write side shut; reading what is left */
	bool out_full;		 /* reading paused until the output drains */
	bool keep;		 /* the reply being sent keeps the connection */
	struct cm_req *deferred; /* its request, when deferred */
	struct conn *prev, *next;
	struct sockaddr_storage peer;
	char peer_text[INET6_ADDRSTRLEN]; /* "" until cm_req_peer */
	socklen_t peer_len;
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
	const struct cm_wire_head *head; /* NULL for a refusal */
	const char *body;
	size_t body_len;
	const struct pattern *pat; /* the matched route */
	const char *label;	   /* metrics route label */
	const char *method;
	unsigned mbit;
	int64_t t0_ns;
	const char *raw_path; /* the target from the path on */
	size_t raw_path_len;  /* without the query */
	char *path;	      /* decoded, "/a/b" */
	char *heap;	      /* path storage when buf is too small */
	char *xh;	      /* response headers set, "Name: value\r\n"... */
	size_t xh_len, xh_cap;
	char *own_in; /* the connection's buffers, once it closed */
	struct cm_wire_head *own_head;
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
	bool chunked;	/* the stream is sent in chunks */
	bool gone;	/* the client went away (conn is NULL) */
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
	{ 505, "HTTP Version Not Supported", "http_version_not_supported" },
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

static void conn_read_cb(evutil_socket_t fd, short what, void *arg);
static void conn_write_cb(evutil_socket_t fd, short what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_process(struct conn *c);
static void deferred_gone(struct conn *c);

static __thread struct worker *cur_worker; /* set on worker threads */

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
}

static void
conn_reading(struct conn *c, bool on)
{
	if (on == c->reading)
		return;
	c->reading = on;
	if (on)
		event_add(&c->rd, NULL);
	else
		event_del(&c->rd);
}

static void
conn_dequeue(struct conn *c)
{
	struct worker *w = c->w;
	int i;

	if (!c->queued)
		return;
	c->queued = false;
	for (i = 0; i < w->conn_n; i++)
		if (w->conn_q[i] == c) {
			w->conn_q[i] = w->conn_q[--w->conn_n];
			return;
		}
}

/* Close now; a deferred request learns that its client is gone. */
static void
conn_close(struct conn *c)
{
	if (c->deferred)
		deferred_gone(c);
	event_del(&c->rd);
	event_del(&c->wr);
	event_del(&c->timer);
	conn_dequeue(c);
	close(c->fd);
	evbuffer_free(c->out);
	free(c->in);
	free(c->head);
	conn_unlink(c);
	c->magic = 0;
	free(c);
}

/* The next request may start: its deadline runs from now. */
static void
conn_request_begin(struct conn *c)
{
	evtimer_add(&c->timer, &c->w->http->read_tv);
}

static void
write_armed(struct worker *w)
{
	if (!w->write_armed) {
		w->write_armed = true;
		event_active(w->write_ev, EV_TIMEOUT, 1);
	}
}

/* Write c's output when this round of callbacks ends. */
static void
conn_write_soon(struct conn *c)
{
	struct worker *w = c->w;

	if (c->queued || c->writing)
		return;
	if (w->conn_n == CONN_QUEUE_MAX) { /* its write event writes it */
		c->writing = true;
		event_add(&c->wr, &w->http->write_tv);
		return;
	}
	c->queued = true;
	w->conn_q[w->conn_n++] = c;
	write_armed(w);
}

/* All output is written: close, go on reading, or nothing. */
static void
conn_drained(struct conn *c)
{
	struct timeval tv = { LINGER_MS / 1000, (LINGER_MS % 1000) * 1000 };

	if (c->closing && !c->responding) {
		if (c->lingering || shutdown(c->fd, SHUT_WR) < 0) {
			conn_close(c);
			return;
		}
		c->lingering = true;
		c->in_len = 0;
		conn_reading(c, true);
		evtimer_add(&c->timer, &tv);
		return;
	}
	if (c->out_full) {
		c->out_full = false;
		conn_reading(c, true);
		conn_process(c);
	}
}

static void
conn_flush(struct conn *c)
{
	int n = evbuffer_get_length(c->out) ? evbuffer_write(c->out, c->fd) : 0;

	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		conn_close(c); /* the peer is gone */
		return;
	}
	if (evbuffer_get_length(c->out)) {
		if (!c->writing) {
			c->writing = true;
			event_add(&c->wr, &c->w->http->write_tv);
		}
		return;
	}
	if (c->writing) {
		c->writing = false;
		event_del(&c->wr);
	}
	conn_drained(c);
}

static void
conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	if (what & EV_TIMEOUT) {
		cm_log_warn("http: closing connection: write stalled for %d ms",
			    c->w->http->cfg.write_timeout_ms);
		conn_close(c);
		return;
	}
	conn_flush(c);
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (c->magic != CONN_MAGIC)
		return;
	if (!c->lingering && (c->in_len || c->responding))
		cm_log_warn("http: closing connection: request not received "
			    "within %d ms",
			    c->w->http->cfg.read_timeout_ms);
	conn_close(c);
}

/* A larger input buffer. Not while a request is being handled (its
   strings point into the buffer); a parsed head is moved along. */
static void
conn_grow(struct conn *c, size_t cap)
{
	char *in = cm_xmalloc(cap);

	if (c->in_len)
		memcpy(in, c->in, c->in_len);
	if (c->have_head)
		cm_wire_head_rebase(c->head, c->in, in);
	free(c->in);
	c->in = in;
	c->in_cap = cap;
}

/* Room to read into: grown up to the limit, a chunked body compacted. */
static bool
conn_room(struct conn *c)
{
	const struct cm_http_config *cfg = &c->w->http->cfg;
	size_t max = cfg->max_header + cfg->max_body + IN_SPARE, cap;
	struct cm_wire_chunks *k = &c->chunks;

	if (c->in_cap - c->in_len >= 1024 ||
	    (c->in_cap == max && c->in_len < max))
		return true;
	if (c->have_head && c->head->chunked && !c->responding &&
	    k->pos > k->body + k->out) {
		memmove(c->in + k->body + k->out, c->in + k->pos,
			c->in_len - k->pos);
		c->in_len -= k->pos - (k->body + k->out);
		k->pos = k->body + k->out;
		if (c->in_cap - c->in_len >= 1024)
			return true;
	}
	if (c->responding || c->in_cap >= max)
		return c->in_len <
		       c->in_cap; /* no moving a request's strings */
	cap = c->in_cap ? c->in_cap * 2 : IN_MIN;
	conn_grow(c, cap < max ? cap : max);
	return true;
}

static void
conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	char junk[4096];
	ssize_t n;

	(void)what;
	if (c->lingering) {
		n = read(fd, junk, sizeof(junk));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			conn_close(c);
		return;
	}
	if (!conn_room(c)) {
		conn_reading(c, false); /* until this request is done */
		return;
	}
	n = read(fd, c->in + c->in_len, c->in_cap - c->in_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		conn_process(c); /* woken for pipelined input */
		return;
	}
	if (n <= 0) { /* the client is gone, or half-closed: done either way */
		if (evbuffer_get_length(c->out) && !c->responding) {
			c->closing = true;
			c->lingering = true; /* nothing more to read */
			conn_reading(c, false);
			conn_write_soon(c);
			return;
		}
		conn_close(c);
		return;
	}
	c->in_len += (size_t)n;
	conn_process(c);
}

static void
conn_new(struct worker *w, int fd, const struct sockaddr_storage *ss,
	 socklen_t len)
{
	struct conn *c = cm_xcalloc(1, sizeof(*c));
	int one = 1;

	c->out = evbuffer_new();
	if (!c->out) {
		close(fd);
		free(c);
		return;
	}
	c->magic = CONN_MAGIC;
	c->w = w;
	c->fd = fd;
	memcpy(&c->peer, ss, len <= sizeof(c->peer) ? len : sizeof(c->peer));
	c->peer_len = len;
	/* replies leave in one write or in stream chunks: never hold a
	   segment back for the client's delayed ACK */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	event_assign(&c->rd, w->base, fd, EV_READ | EV_PERSIST, conn_read_cb,
		     c);
	event_assign(&c->wr, w->base, fd, EV_WRITE | EV_PERSIST, conn_write_cb,
		     c);
	evtimer_assign(&c->timer, w->base, conn_timer_cb, c);
	conn_link(w, c);
	conn_reading(c, true);
	conn_request_begin(c);
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct worker *w = arg;
	struct timeval pause = { 0, ACCEPT_PAUSE_MS * 1000 };
	struct sockaddr_storage ss;
	socklen_t len;
	int i, fd;

	(void)what;
	for (i = 0; i < ACCEPT_BATCH && !w->stopping; i++) {
		len = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &len,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			conn_new(w, fd, &ss, len);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			cm_log_warn("http: accept: %s", strerror(errno));
			event_del(w->listen_ev); /* EMFILE would spin */
			evtimer_add(w->accept_pause_ev, &pause);
		}
		return;
	}
}

static void
accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	if (!w->stopping && w->listen_ev)
		event_add(w->listen_ev, NULL);
}

static bool
conn_idle(const struct conn *c)
{
	return c->lingering ||
	       (!c->responding && !c->in_len && !evbuffer_get_length(c->out));
}

/* ---- writing at once ---------------------------------------------------
 *
 * Replies queued during a round of callbacks are written when the round
 * is over, so every reply costs one writev and no wait for a write
 * event. What a socket does not take waits for its write event.
 */

static void
write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct cm_http_soon *s;
	struct conn *c;

	(void)fd;
	(void)what;
	w->write_armed = false;
	while ((s = TAILQ_FIRST(&w->soon))) { /* upstream requests */
		TAILQ_REMOVE(&w->soon, s, link);
		s->queued = false;
		s->fn(s);
	}
	while (w->conn_n) { /* a flush may queue more, or close others */
		c = w->conn_q[--w->conn_n];
		c->queued = false;
		conn_flush(c);
	}
}

/* ---- answers of the server's own ------------------------------------- */

/* The whole error response; returns the body length. */
static size_t
refusal_render(int status, const char *message, int minor, const char *id,
	       struct cm_buf *out)
{
	size_t len;
	struct cm_buf body = CM_BUF_INIT(1024);
	const char *reason = status_reason(status);

	cm_buf_puts(&body, "{\"error\":{\"code\":");
	cm_buf_json_str(&body, status_code(status));
	cm_buf_puts(&body, ",\"message\":");
	cm_buf_json_str(&body, message);
	cm_buf_puts(&body, ",\"request_id\":");
	cm_buf_json_str(&body, id);
	cm_buf_puts(&body, "}}");
	cm_buf_printf(out,
		      "HTTP/1.%d %d %s\r\n"
		      "Content-Type: application/json\r\n"
		      "Content-Length: %zu\r\n"
		      "Connection: close\r\n"
		      "X-Request-ID: %s\r\n"
		      "X-Content-Type-Options: nosniff\r\n"
		      "X-Frame-Options: DENY\r\n"
		      "Referrer-Policy: no-referrer\r\n"
		      "Cache-Control: no-store\r\n"
		      "Content-Security-Policy: " JSON_CSP "\r\n\r\n",
		      minor, status, reason ? reason : "Error", body.len, id);
	cm_buf_add(out, body.data, body.len);
	len = body.len;
	cm_buf_release(&body);
	return len;
}

static const char *
refusal_message(int status)
{
	switch (status) {
	case 413:
		return "request body too large";
	case 431:
		return "request headers too large";
	case 417:
		return "only Expect: 100-continue is supported";
	case 501:
		return "method not supported";
	case 505:
		return "HTTP version not supported";
	default:
		return "malformed HTTP request";
	}
}

/* A request the framing refused: answer, read no further, close. */
static void
conn_refuse(struct conn *c, int status)
{
	struct cm_buf resp = CM_BUF_INIT(4096);
	const char *message = refusal_message(status);
	int minor = c->have_head ? c->head->minor : 1;
	int64_t t0 = now_ns();
	char id[37];
	size_t len;

	mint_uuid(c->w, id);
	len = refusal_render(status, message, minor, id, &resp);
	evbuffer_add(c->out, resp.data, resp.len);
	cm_buf_release(&resp);
	c->closing = true;
	conn_reading(c, false);
	evtimer_del(&c->timer);
	conn_write_soon(c);
	cm_metrics_http_observe("unmatched", "OTHER", status,
				(double)(now_ns() - t0) / 1e9);
	cm_log_set_context(id, NULL);
	cm_log_info("- - %d 0.000ms %zuB (%s, answered for the parser)", status,
		    len, message);
	cm_log_set_context(NULL, NULL);
}

/* Is the request at the front of the input complete? 1 yes, 0 not yet,
   or the status to refuse it with. */
static int
conn_frame(struct conn *c)
{
	const struct cm_http_config *cfg = &c->w->http->cfg;
	struct cm_wire_head *h;
	size_t end, cl;
	int rc;

	if (!c->have_head) {
		end = cm_wire_head_end(c->in, c->in_len, &c->scan);
		if (!end)
			return c->in_len > cfg->max_header ? 431 : 0;
		if (end > cfg->max_header)
			return 431;
		if (!c->head)
			c->head = cm_xmalloc(sizeof(*c->head));
		if ((rc = cm_wire_head_parse(c->in, end, c->head)))
			return rc;
		c->have_head = true;
		c->continue_sent = false;
		if (c->head->chunked)
			cm_wire_chunks_init(&c->chunks, end);
		else if (c->head->content_length > (int64_t)cfg->max_body)
			return 413;
		else if (c->head->content_length > 0 &&
			 end + (size_t)c->head->content_length > c->in_cap)
			/* the whole body at once, not by doublings */
			conn_grow(c, end + (size_t)c->head->content_length +
					     IN_SPARE);
	}
	h = c->head;
	if (h->chunked) {
		rc = cm_wire_chunks_step(c->in, c->in_len, cfg->max_body,
					 cfg->max_header, &c->chunks);
		if (rc == 1) {
			c->body_off = c->chunks.body;
			c->body_len = c->chunks.out;
			c->req_end = c->chunks.pos;
			return 1;
		}
		if (rc)
			return rc;
	} else {
		cl = h->content_length > 0 ? (size_t)h->content_length : 0;
		if (c->in_len - h->len >= cl) {
			c->body_off = h->len;
			c->body_len = cl;
			c->req_end = h->len + cl;
			return 1;
		}
	}
	if (h->expect_continue && !c->continue_sent) {
		c->continue_sent = true;
		evbuffer_add(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
		conn_write_soon(c);
	}
	return 0;
}

static void conn_dispatch(struct conn *c);

/* Handle every complete request in the input, in turn. */
static void
conn_process(struct conn *c)
{
	int rc;

	while (!c->responding && !c->closing && c->in_len) {
		if (evbuffer_get_length(c->out) > OUT_HIGH) {
			c->out_full = true; /* a client not reading answers */
			conn_reading(c, false);
			return;
		}
		rc = conn_frame(c);
		if (rc == 0) {
			if (!c->reading && conn_room(c))
				conn_reading(c, true);
			return;
		}
		if (rc != 1) {
			conn_refuse(c, rc);
			return;
		}
		conn_dispatch(c);
	}
}

/* The request's reply is queued (or its client gone): drop it from the
   input and go on with the next. */
static void
conn_request_done(struct conn *c, bool keep, bool later)
{
	size_t rest = c->in_len - c->req_end;

	c->responding = false;
	c->have_head = false;
	c->scan = 0;
	if (rest)
		memmove(c->in, c->in + c->req_end, rest);
	c->in_len = rest;
	c->req_end = 0;
	if (!rest && c->in_cap > IN_KEEP) {
		free(c->in);
		c->in = NULL;
		c->in_cap = 0;
	}
	if (!keep) {
		c->closing = true;
		conn_reading(c, false);
	} else {
		conn_request_begin(c);
		if (!c->out_full)
			conn_reading(c, true);
		if (rest && later)
			event_active(&c->rd, EV_READ, 1);
	}
	conn_write_soon(c);
}

/* ---- path and router -------------------------------------------------- */

/* Decode one raw segment at raw[*i] into both path (*p) and segment (*s)
   storage; false on a bad escape or an encoded NUL. */
static bool
segment_decode(const char *raw, size_t n, size_t *i, char **p, char **s)
{
	int hi, lo;
	char ch;

	while (*i < n && raw[*i] != '/') {
		ch = raw[*i];
		if (ch == '%') {
			if (*i + 2 >= n)
				return false;
			hi = cm_hex_digit(raw[*i + 1]);
			lo = hi < 0 ? -1 : cm_hex_digit(raw[*i + 2]);
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
path_decode(struct cm_req *req, const char *raw, size_t n)
{
	size_t i = 1;
	char *p, *s;

	if (!n || raw[0] != '/')
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
		if (!segment_decode(raw, n, &i, &p, &s)) {
			req->path = NULL; /* cm_req_path: the raw one */
			return false;
		}
		if (i >= n || raw[i] != '/')
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

#define SEC_HEADERS                           \
	"X-Content-Type-Options: nosniff\r\n" \
	"X-Frame-Options: DENY\r\n"           \
	"Referrer-Policy: no-referrer\r\n"
#define SEC_HEADERS_JSON              \
	"Cache-Control: no-store\r\n" \
	"Content-Security-Policy: " JSON_CSP "\r\n"

/* A response head being built on the stack (status line and the
   server's own headers are bounded; what handlers set goes separately). */
struct head_buf {
	char d[2048]; /* the parts are bounded: about 1.4 KiB at most */
	size_t n;
};

static void
hb_puts(struct head_buf *b, const char *s)
{
	size_t n = strlen(s);

	if (b->n + n < sizeof(b->d)) {
		memcpy(b->d + b->n, s, n);
		b->n += n;
	}
}

static void
hb_num(struct head_buf *b, uint64_t v, unsigned base)
{
	char num[24];

	cm_u64_text(v, base, num);
	hb_puts(b, num);
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

enum framing {
	F_LENGTH,
	F_NONE,
	F_CHUNKED,
	F_CLOSE
};

/* Status line and headers into c's output; decides whether the
   connection stays open after this exchange. */
static void
head_write(struct cm_req *req, int status, const char *ctype, bool json,
	   enum framing fr, size_t clen)
{
	struct conn *c = req->conn;
	const char *reason = status_reason(status);
	const char *origin = origin_allowed(req);
	struct head_buf b;
	int minor = req->head ? req->head->minor : 1;

	c->keep = req->head && req->head->keep_alive && fr != F_CLOSE &&
		  !req->w->stopping &&
		  !atomic_load_explicit(&req->w->http->stopped,
					memory_order_relaxed);
	b.n = 0;
	hb_puts(&b, minor ? "HTTP/1.1 " : "HTTP/1.0 ");
	hb_num(&b, (uint64_t)status, 10);
	hb_puts(&b, " ");
	hb_puts(&b, reason ? reason : "Unknown");
	hb_puts(&b, "\r\nDate: ");
	hb_puts(&b, worker_date(req->w));
	hb_puts(&b, "\r\nX-Request-ID: ");
	hb_puts(&b, req->id);
	hb_puts(&b, "\r\n" SEC_HEADERS);
	if (json)
		hb_puts(&b, SEC_HEADERS_JSON);
	if (req->w->http->norigins)
		hb_puts(&b, "Vary: Origin\r\n");
	if (origin && strlen(origin) < 512) {
		hb_puts(&b, "Access-Control-Allow-Origin: ");
		hb_puts(&b, origin);
		hb_puts(&b, "\r\nAccess-Control-Allow-Credentials: true\r\n"
			    "Access-Control-Expose-Headers: X-Request-ID\r\n");
	}
	if (ctype && strlen(ctype) < 256) {
		hb_puts(&b, "Content-Type: ");
		hb_puts(&b, ctype);
		hb_puts(&b, "\r\n");
	}
	if (fr == F_LENGTH) {
		hb_puts(&b, "Content-Length: ");
		hb_num(&b, clen, 10);
		hb_puts(&b, "\r\n");
	} else if (fr == F_CHUNKED) {
		hb_puts(&b, "Transfer-Encoding: chunked\r\n");
	}
	if (!c->keep)
		hb_puts(&b, "Connection: close\r\n");
	else if (minor == 0)
		hb_puts(&b, "Connection: keep-alive\r\n");
	evbuffer_add(c->out, b.d, b.n);
	if (req->xh_len)
		evbuffer_add(c->out, req->xh, req->xh_len);
	evbuffer_add(c->out, "\r\n", 2);
}

static void deferred_finish(struct cm_req *req);

static bool
status_has_body(int status)
{
	return status >= 200 && status != 204 && status != 304;
}

/* The one place a reply leaves. */
static void
reply_send(struct cm_req *req, int status, const char *ctype, const void *body,
	   size_t len)
{
	bool json = ctype && !strncmp(ctype, "application/json", 16);
	bool has_body = status_has_body(status);

	if (req->replied || req->streaming)
		return;
	req->replied = true;
	req->status = status;
	if (!req->conn) { /* the client is gone */
		deferred_finish(req);
		return;
	}
	if (!has_body)
		len = 0;
	req->bytes = len;
	head_write(req, status, has_body ? ctype : NULL, json,
		   has_body ? F_LENGTH : F_NONE, len);
	if (len && req->mbit != M_HEAD)
		evbuffer_add(req->conn->out, body, len);
	conn_write_soon(req->conn);
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

#define XH_MAX (64 * 1024) /* response headers a handler may set */

void
cm_req_set_header(struct cm_req *req, const char *name, const char *value)
{
	size_t nn, nv, need, cap;

	if (req->replied || req->streaming || !req->conn || !name || !value ||
	    !*name || strpbrk(name, "\r\n: \t") || strpbrk(value, "\r\n"))
		return;
	nn = strlen(name);
	nv = strlen(value);
	need = req->xh_len + nn + nv + 4;
	if (need > XH_MAX) {
		cm_log_warn(
			"http: response header %.64s dropped: over %d bytes "
			"of headers",
			name, XH_MAX);
		return;
	}
	if (need > req->xh_cap) {
		cap = req->xh_cap ? req->xh_cap * 2 : 256;
		while (cap < need)
			cap *= 2;
		req->xh = cm_xrealloc(req->xh, cap);
		req->xh_cap = cap;
	}
	memcpy(req->xh + req->xh_len, name, nn);
	memcpy(req->xh + req->xh_len + nn, ": ", 2);
	memcpy(req->xh + req->xh_len + nn + 2, value, nv);
	memcpy(req->xh + req->xh_len + nn + 2 + nv, "\r\n", 2);
	req->xh_len = need;
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
	return req->raw_path ? req->raw_path : "";
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
		if (!req->head)
			return NULL;
		req->query_parsed = true;
		TAILQ_INIT(&req->query);
		q = req->raw_path + req->raw_path_len;
		if (*q == '?')
			evhttp_parse_query_str(q + 1, &req->query);
	}
	return name ? evhttp_find_header(&req->query, name) : NULL;
}

const char *
cm_req_header(const struct cm_req *req, const char *name)
{
	if (!req->head || !name)
		return NULL;
	return cm_wire_find(req->head->hdrs, req->head->nhdrs, name);
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
	struct conn *c = req->conn; /* its text is made once, on demand */
	const struct sockaddr_storage *ss;

	if (!c)
		return "";
	if (c->peer_text[0])
		return c->peer_text;
	ss = &c->peer;
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
			  c->peer_text, sizeof(c->peer_text));
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)ss)->sin6_addr,
			  c->peer_text, sizeof(c->peer_text));
	return c->peer_text;
}

void
cm_req_body(const struct cm_req *req, const char **data, size_t *len)
{
	*len = req->body_len;
	*data = req->body_len ? req->body : "";
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

/* Where the path starts in a request target: origin form "/p?q", or
   absolute form "http://host/p?q" (whose path may be empty: 400). */
static const char *
target_path(const char *t)
{
	if (t[0] == '/')
		return t;
	if (!strncasecmp(t, "http://", 7))
		t += 7;
	else if (!strncasecmp(t, "https://", 8))
		t += 8;
	else
		return t;
	return t + strcspn(t, "/?");
}

static void
req_init(struct cm_req *req, struct worker *w, struct conn *c)
{
	const struct method *m = method_by_name(c->head->method);
	const char *rid;

	memset(req, 0, offsetof(struct cm_req, segs));
	req->magic = REQ_MAGIC;
	req->t0_ns = now_ns();
	req->w = w;
	req->conn = c;
	req->head = c->head;
	req->body = c->in + c->body_off;
	req->body_len = c->body_len;
	req->method = m ? m->name : "OTHER";
	req->mbit = m ? m->bit : 0;
	req->raw_path = target_path(c->head->target);
	req->raw_path_len = strcspn(req->raw_path, "?");
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
	free(req->xh);
	req->xh = NULL;
	free(req->own_in);
	req->own_in = NULL;
	free(req->own_head);
	req->own_head = NULL;
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
	struct cm_buf allow = CM_BUF_INIT(256);

	allow_list(allowed, &allow);
	if (!is_preflight(req)) {
		cm_req_set_header(req, "Allow", cm_buf_str(&allow));
		reply_send(req, 204, NULL, NULL, 0);
	} else if (!origin_allowed(req)) {
		cm_req_fail(req, 403, "origin_not_allowed",
			    "cross-origin requests from this origin are "
			    "not allowed");
		reply_error(req, 403);
	} else {
		cm_req_set_header(req, "Access-Control-Allow-Methods",
				  cm_buf_str(&allow));
		cm_req_set_header(req, "Access-Control-Allow-Headers",
				  CORS_ALLOW_HEADERS);
		cm_req_set_header(req, "Access-Control-Max-Age", CORS_MAX_AGE);
		reply_send(req, 204, NULL, NULL, 0);
	}
	cm_buf_release(&allow);
}

static void
answer_405(struct cm_req *req, unsigned allowed)
{
	struct cm_buf allow = CM_BUF_INIT(256);

	allow_list(allowed, &allow);
	cm_req_set_header(req, "Allow", cm_buf_str(&allow));
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
	unsigned allowed = 0;
	int rc;

	if (!path_decode(req, req->raw_path, req->raw_path_len)) {
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

/* A complete request at the front of c's input: run it. */
static void
conn_dispatch(struct conn *c)
{
	struct cm_req req;

	c->responding = true;
	evtimer_del(&c->timer);
	req_init(&req, c->w, c);
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
	conn_request_done(c, c->keep, false);
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
	req->xh = NULL;	  /* and so are the headers set */
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
	struct conn *c = req->conn;

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
	if (c) /* its strings are gone: on to the next request */
		conn_request_done(c, c->keep, true);
}

/* The connection of a deferred request closes (client gone, timeout,
   teardown): the request keeps the buffers its strings point into. */
static void
deferred_gone(struct conn *c)
{
	struct cm_req *req = c->deferred;

	c->deferred = NULL;
	req->conn = NULL;
	req->gone = true;
	req->own_in = c->in;
	req->own_head = c->head;
	c->in = NULL;
	c->in_cap = c->in_len = 0;
	c->head = NULL;
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

/* After every connection closed: owners get their close call, then what
   is left is freed. */
static void
deferred_teardown(struct worker *w)
{
	struct cm_req *req;

	while ((req = w->deferred)) {
		req->gone = true;
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
	if (!req->on_heap || req->replied || req->streaming || status < 200 ||
	    !status_has_body(status))
		return CM_EINVAL;
	if (!req->conn || req->gone)
		return CM_EPIPE;
	req->streaming = true;
	req->status = status;
	/* HTTP/1.0 has no chunks: the end of the stream closes */
	req->chunked = req->head && req->head->minor == 1;
	head_write(req, status, content_type, false,
		   req->chunked ? F_CHUNKED : F_CLOSE, 0);
	conn_write_soon(req->conn);
	return 0;
}

int
cm_req_stream_write(struct cm_req *req, const void *data, size_t len)
{
	struct evbuffer *out;
	struct head_buf b;

	if (!req->streaming || req->replied)
		return CM_EINVAL;
	if (!req->conn || req->gone)
		return CM_EPIPE;
	if (!len)
		return 0;
	out = req->conn->out;
	if (req->chunked) {
		b.n = 0;
		hb_num(&b, len, 16);
		hb_puts(&b, "\r\n");
		evbuffer_add(out, b.d, b.n);
	}
	if (evbuffer_add(out, data, len))
		return CM_ENOMEM;
	if (req->chunked)
		evbuffer_add(out, "\r\n", 2);
	conn_write_soon(req->conn);
	req->bytes += len;
	return 0;
}

size_t
cm_req_stream_pending(const struct cm_req *req)
{
	return req->conn ? evbuffer_get_length(req->conn->out) : 0;
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
	if (req->conn && req->chunked) {
		evbuffer_add(req->conn->out, "0\r\n\r\n", 5);
		conn_write_soon(req->conn);
	}
	deferred_finish(req);
}

void
cm_req_stream_abort(struct cm_req *req)
{
	if (!req->on_heap || req->replied)
		return;
	if (!req->streaming) {
		cm_req_stream_end(req);
		return;
	}
	req->replied = true;
	if (req->conn)
		req->conn->keep = false; /* written, then closed */
	deferred_finish(req);
}

const struct cm_wire_hdr *
cm_http_req_headers_(const struct cm_req *req, int *n)
{
	*n = req->head ? req->head->nhdrs : 0;
	return req->head ? req->head->hdrs : NULL;
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
cm_http_soon_(struct cm_http_soon *s)
{
	struct worker *w = cur_worker;

	if (!w)
		return CM_EINVAL;
	if (!s->queued) {
		s->queued = true;
		TAILQ_INSERT_TAIL(&w->soon, s, link);
		write_armed(w);
	}
	return 0;
}

void
cm_http_soon_cancel_(struct cm_http_soon *s)
{
	if (s->queued && cur_worker)
		TAILQ_REMOVE(&cur_worker->soon, s, link);
	s->queued = false;
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
			conn_close(c);
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

static void
listener_close(struct worker *w)
{
	if (w->listen_ev)
		event_free(w->listen_ev);
	w->listen_ev = NULL;
	if (w->listen_fd >= 0)
		close(w->listen_fd);
	w->listen_fd = -1;
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint64_t v;

	(void)what;
	if (read(fd, &v, sizeof(v)) < 0 || w->stopping)
		return;
	w->stopping = true;
	listener_close(w);
	w->drain_deadline_ms = cm_now_ms() + w->http->cfg.drain_timeout_ms;
	deferred_stopping(w);
	drain_step(w);
}

static void
worker_teardown(struct worker *w)
{
	while (w->conns)
		conn_close(w->conns);
	listener_close(w);
	w->conn_n = 0;
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
	if (w->write_ev)
		event_free(w->write_ev);
	if (w->accept_pause_ev)
		event_free(w->accept_pause_ev);
	w->wake_ev = w->drain_ev = w->write_ev = w->accept_pause_ev = NULL;
	if (w->base)
		event_base_free(w->base);
	w->base = NULL;
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

/* Event base and events of one worker around its listener fd (owned from
   here on, also on failure). */
static int
worker_init(struct cm_http *http, struct worker *w, int fd,
	    char errbuf[CM_ERRBUF_LEN])
{
	struct event_config *ec = event_config_new();

	w->http = http;
	w->listen_fd = fd;
	/* one thread per base: no locks; let epoll see only the net change
	   of an event once per loop turn (we never dup a watched fd) */
	if (ec)
		event_config_set_flag(
			ec, EVENT_BASE_FLAG_NOLOCK |
				    EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	w->base = ec ? event_base_new_with_config(ec) : NULL;
	if (ec)
		event_config_free(ec);
	if (!w->base) {
		listener_close(w);
		snprintf(errbuf, CM_ERRBUF_LEN, "libevent set-up failed");
		return CM_EIO;
	}
	w->listen_ev =
		event_new(w->base, fd, EV_READ | EV_PERSIST, accept_cb, w);
	w->accept_pause_ev = evtimer_new(w->base, accept_resume_cb, w);
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
	w->write_ev = event_new(w->base, -1, 0, write_cb, w);
	TAILQ_INIT(&w->soon);
	if (!w->listen_ev || !w->accept_pause_ev || !w->wake_ev ||
	    !w->signal_ev || !w->drain_ev || !w->write_ev ||
	    event_add(w->listen_ev, NULL) || event_add(w->wake_ev, NULL) ||
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
