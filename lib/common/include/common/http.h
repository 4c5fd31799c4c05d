/*
 * http.h - the HTTP server, router and request/response types.
 *
 * libevent (evhttp) is the engine, but nothing of it is visible here:
 * handlers only see struct cm_req, so the engine can be replaced without
 * touching a service.
 *
 * Routes are a table: {method, pattern, handler, flags}, ended by
 * CM_ROUTE_END. Patterns are literal segments and ":name" parameters
 * ("/api/leads/:id"); a trailing "*" segment matches the rest of the path
 * (read with cm_req_param(req, "*")). An unknown path answers 404
 * not_found; a known path with another method answers 405 with `Allow`.
 *
 * Middleware order (fixed, owned here): request id (accept a sane
 * X-Request-ID of <= 128 [A-Za-z0-9._-] chars or mint a uuid; echoed in the
 * response) -> access log -> limits (body size -> 413, header size -> 431,
 * read/write timeouts) -> auth hook -> tenant hook -> handler -> metrics.
 * The auth and tenant hooks come from the service layer (service.c); they
 * return 0 to continue or an HTTP status after calling cm_req_fail().
 *
 * Every error answer has one body:
 *   {"error":{"code":"...","message":"...","request_id":"..."}}
 * Responses carry security headers (X-Content-Type-Options: nosniff,
 * X-Frame-Options: DENY, Referrer-Policy: no-referrer,
 * Cache-Control: no-store on JSON) and CORS headers for allow-listed
 * origins only (never "*" with credentials); OPTIONS preflights are
 * answered by the server.
 *
 * Threading: cm_http_start() starts `threads` workers, each with its own
 * event loop and its own listening socket bound with SO_REUSEPORT to the
 * same port. A handler runs on one worker thread and must not block for
 * long (database calls are acceptable: one connection per worker). A struct
 * cm_req is valid only until the handler returns, and is used by one thread.
 * cm_http_stop() may be called from any thread: workers stop accepting,
 * finish in-flight requests (up to drain_timeout_ms) and exit.
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
	const char *method;	/* "GET", "POST", ... */
	const char *pattern;	/* "/api/leads/:id" */
	cm_handler_fn fn;
	unsigned flags;
};

#define CM_ROUTE_END { NULL, NULL, NULL, 0 }

struct cm_http_config {
	const char *service;	/* name for logs and metrics */
	const char *bind_addr;	/* "127.0.0.1", "0.0.0.0" */
	int port;		/* 0: pick a free port (tests) */
	int threads;		/* worker threads, >= 1 */
	size_t max_body;	/* bytes; larger -> 413 */
	size_t max_header;	/* bytes of all headers; larger -> 431 */
	int read_timeout_ms;	/* per read; slow clients are cut off */
	int write_timeout_ms;
	int drain_timeout_ms;	/* cm_http_stop grace period */
	const char *cors_origins; /* comma-separated exact origins, or NULL */
};

typedef int (*cm_http_hook_fn)(struct cm_req *req, void *arg);

struct cm_http_hooks {
	cm_http_hook_fn auth;	/* may be NULL */
	cm_http_hook_fn tenant;	/* may be NULL */
	void *arg;
};

/* cm_http_new - server for the routes (table not copied: keep it static);
   `arg` is passed to every handler. NULL if a pattern is malformed. */
struct cm_http *cm_http_new(const struct cm_http_config *cfg,
			    const struct cm_route *routes, void *arg,
			    const struct cm_http_hooks *hooks);
/* cm_http_start - bind and start the workers; 0 or CM_E* with errbuf. */
int cm_http_start(struct cm_http *http, char errbuf[CM_ERRBUF_LEN]);
/* cm_http_port - the bound port (after start). */
int cm_http_port(const struct cm_http *http);
/* cm_http_stop - begin a graceful drain; thread-safe; idempotent. */
void cm_http_stop(struct cm_http *http);
/* cm_http_wait - join the workers; 0 if every in-flight request finished. */
int cm_http_wait(struct cm_http *http);
/* cm_http_free - free a stopped server; accepts NULL. */
void cm_http_free(struct cm_http *http);

/* Request accessors. Strings live until the handler returns. */
const char *cm_req_method(const struct cm_req *req);
/* cm_req_path - the decoded path, without the query string. */
const char *cm_req_path(const struct cm_req *req);
/* cm_req_route - the matched route (NULL for 404s). */
const struct cm_route *cm_req_route(const struct cm_req *req);
/* cm_req_param - a path parameter by name, or NULL. */
const char *cm_req_param(const struct cm_req *req, const char *name);
/* cm_req_query - a decoded query parameter, or NULL. */
const char *cm_req_query(struct cm_req *req, const char *name);
/* cm_req_header - a request header (case-insensitive), or NULL. */
const char *cm_req_header(const struct cm_req *req, const char *name);
/* cm_req_host - the Host header, lowercased, without port; "" if none. */
const char *cm_req_host(struct cm_req *req);
/* cm_req_id - the request id (never NULL). */
const char *cm_req_id(const struct cm_req *req);
/* cm_req_peer - the client's address as text. */
const char *cm_req_peer(const struct cm_req *req);
/* cm_req_body - the raw body (may be empty, never NULL). */
void cm_req_body(const struct cm_req *req, const char **data, size_t *len);
/* cm_req_json - parse the body as a JSON object. 0, or an HTTP status (400
   "invalid_json" saying where, 415 wrong Content-Type) already recorded with
   cm_req_fail. The caller frees *out with cJSON_Delete. */
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
/* cm_req_fail - record an error body (code, printf message); returns
   status so handlers write `status = cm_req_fail(...)`. */
int cm_req_fail(struct cm_req *req, int status, const char *code,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* cm_req_reply_json - send json with status; if an error was recorded, or
   json is NULL with status >= 400, send the error body instead (a generic
   "internal" one when none was recorded). */
void cm_req_reply_json(struct cm_req *req, int status, const cJSON *json);
/* cm_req_reply - send raw bytes with a content type. */
void cm_req_reply(struct cm_req *req, int status, const char *content_type,
		  const void *body, size_t len);
/* cm_req_set_header - add a response header before replying. */
void cm_req_set_header(struct cm_req *req, const char *name,
		       const char *value);
/* cm_req_replied - whether a reply was sent. */
bool cm_req_replied(const struct cm_req *req);

#endif
