/*
 * proxy.h - forward a request to an upstream HTTP service without holding
 * a worker thread (brain's gateway).
 *
 * cm_proxy_forward() defers the request (http.h), sends it to the
 * upstream on the worker's own event loop over a kept-alive connection
 * from a per-worker pool, and answers when the upstream does:
 *   - request: method, body and the given path (with its query) are sent
 *     as they are; the request's headers are copied except hop-by-hop
 *     ones (Connection and the names it lists, Keep-Alive,
 *     Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, TE,
 *     Trailer, Transfer-Encoding, Upgrade), Host, Content-Length and the
 *     caller's strip list; then the caller's own headers are added.
 *   - response: a text/event-stream response or one without a
 *     Content-Length (chunked) is passed through as it arrives, chunk by
 *     chunk, unbuffered; any other is buffered (at most max_response bytes,
 *     else 502) and sent with its status, content type and end-to-end
 *     headers (the server's own security headers, Date, Server and CORS
 *     headers are the gateway's, not the upstream's).
 *   - failures, as the JSON error body with the upstream's name in the
 *     message: connection refused or reset, or a malformed answer -> 502
 *     upstream_unavailable; no response head within timeout_ms -> 504
 *     upstream_timeout; body over max_response -> 502
 *     upstream_response_too_large. Each is counted in
 *     bz_gateway_upstream_errors_total{upstream,kind}; every forwarded
 *     request in bz_gateway_requests_total{upstream,status}.
 *   - a request that fails before any answer (EOF, write error) on a
 *     pooled connection is sent once more, on a new connection and within
 *     the same timeout, when its method is idempotent (GET, HEAD, OPTIONS,
 *     PUT, DELETE); POST and PATCH are never repeated.
 *   - the client going away cancels the upstream request; a server stop
 *     ends streams (cleanly: the final chunk is sent). A stream cut short
 *     - the upstream fails, breaks the framing or goes idle, or the
 *     client reads too slowly (over 4 MiB queued) - ends with the client's
 *     connection closed without the final chunk (cm_req_stream_abort),
 *     so the client can tell it is incomplete.
 * Streams have no overall deadline once the head arrived (the upstream's
 * idle timeout still applies: keep streams alive with heartbeats).
 *
 * Threading: call from a handler on a worker thread. The upstream struct
 * must outlive the server (it is the pool's key).
 */
#ifndef COMMON_PROXY_H
#define COMMON_PROXY_H

#include <stddef.h>

#include "common/err.h"
#include "common/http.h"

struct cm_proxy_upstream {
	char name[32];	     /* "crm": in errors and metrics */
	char host[256];	     /* name or address (a name is looked up,
				blocking, once per worker and 30 s, and
				again after a failed connect) */
	int port;	     /* 1..65535 */
	int timeout_ms;	     /* until the response head; 0: 30000 */
	int idle_timeout_s;  /* a pooled connection idle this long is
				closed (checked every 5 s), a stream or
				body silent this long is cut; 0: 60 */
	size_t max_response; /* buffered body cap; 0: 16 MiB */
};

struct cm_proxy_request {
	const char *path; /* upstream path with query: "/api/crm/x?a=1" */
	/* request header names to drop, NULL-terminated (may be NULL) */
	const char *const *strip_headers;
	/* headers to add: name, value, name, value, ..., NULL (may be NULL) */
	const char *const *set_headers;
};

/* cm_proxy_upstream_parse - "http://host:port" (no path, no user info,
   port required) into out with name; 0 or CM_EINVAL with errbuf. */
int cm_proxy_upstream_parse(const char *name, const char *url,
			    struct cm_proxy_upstream *out,
			    char errbuf[CM_ERRBUF_LEN]);
/* cm_proxy_forward - forward req as above; req may already be deferred
   (then it is used as it is). The request is always answered (now with
   500 when it cannot be deferred, else later): the caller just returns. */
void cm_proxy_forward(struct cm_req *req, const struct cm_proxy_upstream *up,
		      const struct cm_proxy_request *pr);

#endif
