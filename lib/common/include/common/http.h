/*
 * http.h - the HTTP server, router and request/response types.
 *
 * libevent runs each worker's loop and HTTP/1.x is libcommon's own
 * (http.c, framing in http_wire.c); nothing of either is visible here:
 * handlers only see struct cm_req, so the engine can be replaced without
 * touching a service.
 *
 * Routes are a table: {method, pattern, handler, flags}, ended by
 * CM_ROUTE_END. Patterns are literal segments and ":name" parameters
 * ("/api/leads/:id"); a trailing "*" segment matches the rest of the path,
 * at least one (possibly empty) segment (read with cm_req_param(req, "*")).
 * Matching is segment by segment on the percent-decoded path, first match
 * in table order wins, and a trailing slash is significant: "/a/" is the
 * segments "a" and "", so it does not match "/a" (and a catch-all after
 * "a" matches "/a/" but not "/a"). A parameter never matches an empty
 * segment. A HEAD request runs the GET route when no HEAD route exists
 * (the body is not sent). An unknown path answers 404 not_found; a known
 * path with another method answers 405 method_not_allowed with `Allow`. A
 * path with a bad percent-encoding or an encoded NUL answers 400
 * bad_request. An encoded "/" (%2F) stays inside its segment.
 *
 * Middleware order (fixed, owned here): request id (accept a sane
 * X-Request-ID of 1..128 [A-Za-z0-9._-] chars or mint a uuid; echoed in the
 * response) -> access log (one info line per request after the reply:
 * method, route pattern or path, status, duration, body bytes; the log
 * context carries the request id, and the tenant id once set) -> limits
 * (body size -> 413, header size -> 431, read/write timeouts) -> auth hook
 * -> tenant hook -> handler -> metrics (cm_metrics_http_observe labelled by
 * route pattern, "unmatched" when no pattern applies; gauge
 * bz_http_in_flight). CM_ROUTE_PUBLIC skips both hooks, CM_ROUTE_NO_TENANT
 * skips the tenant hook; what other flags mean is the hooks' business
 * (they read cm_req_route(req)->flags). The hooks come from the service
 * layer (service.c); they return 0 to continue or an HTTP status after
 * calling cm_req_fail(), and that error is sent. A handler that returns
 * without replying gets a 500 "internal" reply and an error log line.
 *
 * Limits, exactly: a request body over max_body (by Content-Length, or
 * once the chunks received exceed it) is answered 413 payload_too_large
 * without reading the rest, and the connection is closed. A request line
 * plus headers over max_header bytes is answered 431
 * request_header_fields_too_large and the connection closed; other
 * malformed requests get 400 bad_request (among them every ambiguous
 * framing: differing Content-Lengths, Content-Length beside
 * Transfer-Encoding, a coding other than chunked, folded header lines),
 * methods other than GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS 501
 * not_implemented, versions other than HTTP/1.0 and 1.1 505
 * http_version_not_supported, an Expect other than 100-continue 417
 * expectation_failed (these are the parser's answers: the JSON body
 * below with a fresh request id, Connection: close; they skip routing and
 * hooks and are logged and counted as "unmatched"; the rest of the input
 * is read and dropped for up to a second so that the client sees the
 * answer, not a reset). read_timeout_ms bounds both the
 * silence between two reads and the whole time a client may take to send
 * one request, head and body (and so the keep-alive idle time): a
 * slow-loris client is disconnected after read_timeout_ms, without an
 * answer. write_timeout_ms bounds each stalled write. "Expect:
 * 100-continue" is honoured. Zero config values take defaults: 1 thread,
 * 1 MiB body, 8 KiB headers, 30 s read/write, 10 s drain, bind 127.0.0.1.
 *
 * Every error answer has one body, Content-Type application/json:
 *   {"error":{"code":"...","message":"...","request_id":"..."}}
 * Every response carries X-Request-ID, X-Content-Type-Options: nosniff,
 * X-Frame-Options: DENY and Referrer-Policy: no-referrer; JSON responses
 * also Cache-Control: no-store and Content-Security-Policy: default-src
 * 'none'; frame-ancestors 'none'. CORS: when Origin exactly equals one of
 * cors_origins, Access-Control-Allow-Origin echoes it with
 * Access-Control-Allow-Credentials: true (never "*"); Vary: Origin is sent
 * whenever an allow-list is configured. A preflight (OPTIONS with Origin
 * and Access-Control-Request-Method) is answered by the server: 204 with
 * Allow-Methods (the path's methods), Allow-Headers (Authorization,
 * Content-Type, X-Request-ID, Idempotency-Key, If-Match) and Max-Age for an
 * allowed origin, 403 origin_not_allowed otherwise, 404 for an unknown
 * path. Any other OPTIONS without its own route gets 204 with `Allow`.
 *
 * Threading: cm_http_start() starts `threads` workers, each with its own
 * event loop and its own listening socket bound with SO_REUSEPORT to the
 * same port (the kernel spreads connections over them). A handler runs on
 * one worker thread and must not block for long (database calls are
 * acceptable: one connection per worker; calls to other services use
 * cm_req_defer and common/proxy.h). A struct cm_req is valid only until
 * the handler returns (unless deferred, below), and is used by one
 * thread. cm_http_stop() may
 * be called from any thread (it only writes to an eventfd, so also from a
 * signal handler): workers stop accepting, close idle keep-alive
 * connections, let requests being received or answered finish (their
 * replies carry Connection: close) for up to drain_timeout_ms, then exit.
 * cm_http_start() sets SIGPIPE to SIG_IGN for the process.
 */
#ifndef COMMON_HTTP_H
#define COMMON_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/err.h"

struct cm_req;
struct cm_http;
struct cm_principal;
struct cm_tenant;

typedef void (*cm_handler_fn)(struct cm_req *req, void *arg);

/* Route flags: who may call. The default (0) is authenticated and tenant
 * scoped. */
#define CM_ROUTE_PUBLIC (1u << 0)	/* no auth, no tenant: health, login */
#define CM_ROUTE_NO_TENANT (1u << 1)	/* authenticated, platform-level */
#define CM_ROUTE_SERVICE_ONLY (1u << 2) /* only service tokens */

struct cm_route {
	const char *method;  /* "GET", "POST", ... */
	const char *pattern; /* "/api/leads/:id" */
	cm_handler_fn fn;
	unsigned flags;
};

#define CM_ROUTE_END                \
	{                           \
		NULL, NULL, NULL, 0 \
	}

struct cm_http_config {
	const char *service;   /* name for logs and metrics */
	const char *bind_addr; /* "127.0.0.1", "0.0.0.0" */
	int port;	       /* 0: pick a free port (tests) */
	int threads;	       /* worker threads, >= 1 */
	size_t max_body;       /* bytes; larger -> 413 */
	size_t max_header;     /* bytes of all headers; larger -> 431 */
	int read_timeout_ms;   /* per read and per request; see above */
	int write_timeout_ms;
	int drain_timeout_ms;	  /* cm_http_stop grace period */
	const char *cors_origins; /* comma-separated exact origins, or NULL */
};

typedef int (*cm_http_hook_fn)(struct cm_req *req, void *arg);

struct cm_http_hooks {
	cm_http_hook_fn auth;	/* may be NULL */
	cm_http_hook_fn tenant; /* may be NULL */
	void *arg;
};

/* cm_http_new - server for the routes (table not copied: keep it alive
   until cm_http_free); `arg` is passed to every handler, hooks (may be
   NULL) are copied. NULL if a route is malformed: unknown method, pattern
   not starting with "/", an empty segment, a bad ":name", "*" not last,
   more than 32 segments or 8 parameters, or a NULL handler. */
struct cm_http *cm_http_new(const struct cm_http_config *cfg,
			    const struct cm_route *routes, void *arg,
			    const struct cm_http_hooks *hooks);
/* cm_http_start - bind and start the workers; 0 or CM_E* with errbuf
   (CM_EINVAL when called twice). */
int cm_http_start(struct cm_http *http, char errbuf[CM_ERRBUF_LEN]);
/* cm_http_port - the bound port (after start). */
int cm_http_port(const struct cm_http *http);
/* cm_http_stop - begin a graceful drain; thread-safe; idempotent. */
void cm_http_stop(struct cm_http *http);
/* cm_http_wait - wait for the workers to exit after cm_http_stop; 0 if
   every in-flight request finished, CM_ETIMEDOUT if the drain deadline cut
   some off. 0 at once for a server never started. */
int cm_http_wait(struct cm_http *http);
/* cm_http_free - free a server (stops and waits first if still running);
   accepts NULL. */
void cm_http_free(struct cm_http *http);

/* Request accessors. Strings live until the handler returns (for a
   deferred request: until its final call). */
const char *cm_req_method(const struct cm_req *req);
/* cm_req_path - the decoded path, without the query string. */
const char *cm_req_path(const struct cm_req *req);
/* cm_req_uri - the request target as received (path and query, still
   percent-encoded; of an absolute-form target "http://host/p?q" the
   "/p?q"): what a proxy forwards. */
const char *cm_req_uri(const struct cm_req *req);
/* cm_req_route - the matched route (NULL for 404s). */
const struct cm_route *cm_req_route(const struct cm_req *req);
/* cm_req_param - a path parameter by name (decoded), or NULL. */
const char *cm_req_param(const struct cm_req *req, const char *name);
/* cm_req_query - a query parameter's value ("+" and %XX decoded; names
   match undecoded), or NULL. The query is parsed once, on first use; a
   malformed query string has no parameters. */
const char *cm_req_query(struct cm_req *req, const char *name);
/* cm_req_header - a request header (case-insensitive), or NULL. */
const char *cm_req_header(const struct cm_req *req, const char *name);
/* cm_req_host - the Host header, lowercased, without port ("[::1]:80" ->
   "[::1]"); "" if none or longer than 255 bytes. */
const char *cm_req_host(struct cm_req *req);
/* cm_req_id - the request id (never NULL). */
const char *cm_req_id(const struct cm_req *req);
/* cm_req_peer - the client's address as text ("" if unknown). */
const char *cm_req_peer(const struct cm_req *req);
/* cm_req_body - the raw body (may be empty, never NULL). */
void cm_req_body(const struct cm_req *req, const char **data, size_t *len);
/* cm_req_json - parse the body as a JSON object. 0, or an HTTP status
   already recorded with cm_req_fail: 415 unsupported_media_type unless the
   Content-Type is application/json (parameters such as charset allowed),
   400 invalid_json for an empty body, malformed JSON (the message says
   "line L, column C") or a value that is not an object. The caller frees
   *out (NULL on error) with cJSON_Delete. */
int cm_req_json(struct cm_req *req, cJSON **out);

/* Identity set by the hooks; NULL when absent. */
const struct cm_principal *cm_req_principal(const struct cm_req *req);
const struct cm_tenant *cm_req_tenant(const struct cm_req *req);
/* cm_req_tenant_id - the verified tenant's id, or NULL. */
const char *cm_req_tenant_id(const struct cm_req *req);
/* cm_req_set_principal - copy the verified caller onto the request. */
void cm_req_set_principal(struct cm_req *req, const struct cm_principal *p);
/* cm_req_set_tenant - copy the verified tenant (also into log context). */
void cm_req_set_tenant(struct cm_req *req, const struct cm_tenant *t);

/* Replies. A request is answered exactly once; later calls are ignored. */
/* cm_req_fail - record an error body (code, printf message; the last call
   wins, the message is cut at 255 bytes); returns status so handlers write
   `status = cm_req_fail(...)`. */
int cm_req_fail(struct cm_req *req, int status, const char *code,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* cm_req_reply_json - send json with status; if an error was recorded, or
   json is NULL with status >= 400, send the error body instead, with the
   recorded status (or a generic one named after status, "internal" for
   5xx, when none was recorded). json NULL with status < 400 sends no body
   (use 204). */
void cm_req_reply_json(struct cm_req *req, int status, const cJSON *json);
/* cm_req_reply - send raw bytes with a content type. */
void cm_req_reply(struct cm_req *req, int status, const char *content_type,
		  const void *body, size_t len);
/* cm_req_set_header - add a response header before replying (values with
   CR or LF are dropped). */
void cm_req_set_header(struct cm_req *req, const char *name, const char *value);
/* Versions (optimistic concurrency): a row's version n is the ETag "n";
   an update names the version it read in If-Match. */
/* cm_req_if_match - the version If-Match names ("7", "\"7\"" or W/"7",
   >= 1), or 0 for "*" (any). CM_ENOENT when absent (*version left as
   it was), CM_EINVAL when malformed (*version -1). */
int cm_req_if_match(const struct cm_req *req, int64_t *version);
/* cm_req_set_etag - ETag: "<version>" (nothing for version < 1). */
void cm_req_set_etag(struct cm_req *req, int64_t version);
/* cm_req_replied - whether a reply was sent. */
bool cm_req_replied(const struct cm_req *req);
/*
 * Deferred replies and streams. A handler that answers later (after an
 * upstream call, or a stream of server-sent events) calls cm_req_defer()
 * and returns; the request it gets back lives on the heap, is used on the
 * same worker thread (from callbacks of that thread's event loop: see
 * common/proxy.h), and is freed by exactly one final call: a reply
 * (cm_req_reply, cm_req_reply_json), cm_req_stream_end or
 * cm_req_stream_abort. Everything read
 * from the request before the defer must be read again from the new one.
 * The worker's drain waits for deferred requests like any other.
 */
typedef void (*cm_req_close_fn)(struct cm_req *req, void *arg);
/* cm_req_defer - hand the request on; the heap copy, or NULL when it was
   already replied to or deferred (then reply as usual). */
struct cm_req *cm_req_defer(struct cm_req *req);
/* cm_req_on_close - fn is called at most once, on the worker thread, when
   the client goes away before the final call (cm_req_client_gone() is
   then true; the final call still has to be made, and sends nothing) or,
   for a stream, when the server starts to stop (end the stream soon).
   fn may make the final call itself. */
void cm_req_on_close(struct cm_req *req, cm_req_close_fn fn, void *arg);
/* cm_req_deferred - req is a deferred (heap) request. */
bool cm_req_deferred(const struct cm_req *req);
/* cm_req_client_gone - the client's connection closed. */
bool cm_req_client_gone(const struct cm_req *req);
typedef void (*cm_req_tick_fn)(struct cm_req *req, void *arg);
/* cm_req_every - call fn(req, arg) every ms on the worker thread until the
   final call (deferred requests only; one per request; fn may make the
   final call). 0, CM_EINVAL or CM_ENOMEM. */
int cm_req_every(struct cm_req *req, int ms, cm_req_tick_fn fn, void *arg);
/* cm_req_wait - call fn(req, arg) on the worker thread once on the next
   turn of its loop and then after every cm_http_signal(), until the final
   call (deferred requests only; once per request; fn may make the final
   call). For a request waiting on another thread's work: that thread
   publishes its result, then calls cm_http_signal(); fn looks. No
   polling, and no signal is missed: a result published before the wait
   began is seen on that first call. 0, CM_EINVAL or CM_EIO. */
int cm_req_wait(struct cm_req *req, cm_req_tick_fn fn, void *arg);
/* cm_http_signal - wake every worker (of every server in the process)
   that has requests in cm_req_wait, so their fns run. Thread-safe; costs
   one eventfd write per such worker, nothing when none waits. */
void cm_http_signal(void);
/* cm_req_stream_begin - send status and headers (those set so far plus
   the usual ones), then the body in chunks: deferred requests only, 2xx
   with a body. 0, CM_EINVAL, or CM_EPIPE when the client is gone. */
int cm_req_stream_begin(struct cm_req *req, int status,
			const char *content_type);
/* cm_req_stream_write - queue len bytes as one chunk (sent as the socket
   allows). 0, CM_EINVAL (no stream begun), CM_EPIPE (client gone). */
int cm_req_stream_write(struct cm_req *req, const void *data, size_t len);
/* cm_req_stream_pending - bytes queued for the client, not yet written
   (for back-pressure: a slow reader's stream should be ended). */
size_t cm_req_stream_pending(const struct cm_req *req);
/* cm_req_stream_end - the final call of a stream; without a stream begun
   it sends the recorded error (or 500). */
void cm_req_stream_end(struct cm_req *req);
/* cm_req_stream_abort - the final call of a stream that was cut short
   (its source failed): what is queued is written, then the connection
   is closed without the chunked body's end, so the client can tell the
   answer is incomplete. Without a stream begun, as cm_req_stream_end. */
void cm_req_stream_abort(struct cm_req *req);

/* cm_req_param_i64 - a path parameter as a base-10 integer in [min, max]:
   0, CM_ENOENT (no such parameter) or CM_EINVAL. */
int cm_req_param_i64(const struct cm_req *req, const char *name, int64_t min,
		     int64_t max, int64_t *out);

#endif
