/*
 * http_internal.h - what libcommon's own modules (proxy.c) need from the
 * HTTP server beyond http.h: the worker's libevent loop. Not installed
 * with the public headers; services never include it.
 */
#ifndef COMMON_HTTP_INTERNAL_H
#define COMMON_HTTP_INTERNAL_H

#include "common/http.h"

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

#endif
