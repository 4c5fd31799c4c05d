/*
 * http_internal.h - what libcommon's own modules (proxy.c) need from the
 * HTTP server beyond http.h: the worker's libevent loop, and writes at the
 * end of its round of callbacks. Not installed
 * with the public headers; services never include it.
 */
#ifndef COMMON_HTTP_INTERNAL_H
#define COMMON_HTTP_INTERNAL_H

#include "common/http.h"

#include <sys/queue.h>

struct cm_wire_hdr;
struct event_base;

/* cm_http_req_headers_ - the request's headers, as received (*n of them;
   valid as long as req). */
const struct cm_wire_hdr *cm_http_req_headers_(const struct cm_req *req,
					       int *n);
/* cm_http_req_base_ - the event loop of the worker handling req. */
struct event_base *cm_http_req_base_(const struct cm_req *req);
/* cm_http_worker_base_ - the calling worker thread's loop, or NULL off a
   worker thread. */
struct event_base *cm_http_worker_base_(void);
/* cm_http_worker_at_exit_ - run fn(arg) on this worker thread after its
   connections are closed and before its loop is freed (up to 4 per
   worker). 0, or CM_ENOSPC off a worker thread or when full. */
int cm_http_worker_at_exit_(void (*fn)(void *arg), void *arg);

/* Output to send when the worker's round of callbacks ends, together with
   the replies the server writes then (one burst instead of a write per
   callback). Embed one in the object that writes; zeroed is idle. */
struct cm_http_soon {
	void (*fn)(struct cm_http_soon *s); /* set by the owner */
	TAILQ_ENTRY(cm_http_soon) link;
	bool queued;
};
/* cm_http_soon_ - run s->fn once when the calling worker's round ends
   (queued once however often called). 0, or CM_EINVAL off a worker
   thread. */
int cm_http_soon_(struct cm_http_soon *s);
/* cm_http_soon_cancel_ - s will not run (no-op when not queued); on the
   worker thread that queued it. */
void cm_http_soon_cancel_(struct cm_http_soon *s);

#endif
