/*
 * metrics.h - a process-wide Prometheus registry.
 *
 * Counters, gauges and one histogram family for HTTP latency. Series are
 * identified by a metric name plus a pre-rendered label string
 * (`route="/api/leads/:id",method="GET",status="200"`); callers build the
 * labels from bounded values (route patterns, never raw paths). Every
 * metric is prefixed "bz_" and gets a "service" label at render time.
 *
 * Threading: updates are cheap and thread-safe (per-thread shards or
 * atomics; no global lock on the request path); cm_metrics_render() may run
 * concurrently with updates.
 */
#ifndef COMMON_METRICS_H
#define COMMON_METRICS_H

#include <stdbool.h>

#include "common/buf.h"

/* cm_metrics_init - set the service label; call once before threads. */
void cm_metrics_init(const char *service);
/* cm_metrics_counter_add - add v (>= 0) to name{labels}. */
void cm_metrics_counter_add(const char *name, const char *help,
			    const char *labels, double v);
/* cm_metrics_gauge_set - set name{labels} to v. */
void cm_metrics_gauge_set(const char *name, const char *help,
			  const char *labels, double v);
/* cm_metrics_gauge_add - add v (may be negative) to name{labels}. */
void cm_metrics_gauge_add(const char *name, const char *help,
			  const char *labels, double v);
/* cm_metrics_http_observe - one request: bz_http_requests_total and the
   bz_http_request_duration_seconds histogram by route, method, status. */
void cm_metrics_http_observe(const char *route, const char *method,
			     int status, double seconds);
/* cm_metrics_dep_set - bz_dependency_up{dependency="..."} 1 or 0. */
void cm_metrics_dep_set(const char *dependency, bool up);
/* cm_metrics_render - append the Prometheus text format (0.0.4) to out. */
void cm_metrics_render(struct cm_buf *out);
/* cm_metrics_reset - drop every series (tests only). */
void cm_metrics_reset(void);

#endif
