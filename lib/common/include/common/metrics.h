/*
 * metrics.h - a process-wide Prometheus registry.
 *
 * Counters, gauges and one histogram family for HTTP latency. Series are
 * identified by a metric name plus a pre-rendered label string
 * (`route="/api/leads/:id",method="GET",status="200"`); callers build the
 * labels from bounded values (route patterns, never raw paths), escaping
 * values with cm_metrics_label_append. Every metric is prefixed "bz_" (added
 * to a name that lacks it) and gets a "service" label, first, at render
 * time; "service" and "le" may not appear in caller labels.
 *
 * Bounds: at most CM_METRICS_MAX_SERIES series (a histogram series counts
 * once). An update that cannot be recorded - a new series over the cap, a
 * malformed name or label string, a name already used with another type -
 * is dropped and counted in bz_metrics_dropped_series_total. The first
 * help text given for a name is kept.
 *
 * Threading: updates are cheap and thread-safe: a lock-free table lookup and
 * an atomic update; only the first update of a new series takes the
 * registry lock. cm_metrics_render() may run concurrently with updates.
 * cm_metrics_init and cm_metrics_reset must not race with anything.
 */
#ifndef COMMON_METRICS_H
#define COMMON_METRICS_H

#include <stdbool.h>

#include "common/buf.h"

#define CM_METRICS_MAX_SERIES 4096

/* cm_metrics_init - set the service label (copied); call once before
   threads. Until then the label is "unknown". */
void cm_metrics_init(const char *service);
/* cm_metrics_counter_add - add v (>= 0, finite; else ignored) to
   name{labels}; labels may be NULL or "". */
void cm_metrics_counter_add(const char *name, const char *help,
			    const char *labels, double v);
/* cm_metrics_gauge_set - set name{labels} to v. */
void cm_metrics_gauge_set(const char *name, const char *help,
			  const char *labels, double v);
/* cm_metrics_gauge_add - add v (may be negative) to name{labels}. */
void cm_metrics_gauge_add(const char *name, const char *help,
			  const char *labels, double v);
/* cm_metrics_http_observe - one request: bz_http_requests_total and the
   bz_http_request_duration_seconds histogram (buckets 0.001 ... 10, +Inf)
   by route, method, status; the values are escaped here. */
void cm_metrics_http_observe(const char *route, const char *method, int status,
			     double seconds);
/* cm_metrics_dep_set - bz_dependency_up{dependency="..."} 1 or 0. */
void cm_metrics_dep_set(const char *dependency, bool up);
/* cm_metrics_label_append - append `name="value"` to a label string,
   with a comma first unless b is empty; value escaped (\\ \" \n). */
void cm_metrics_label_append(struct cm_buf *b, const char *name,
			     const char *value);
/* cm_metrics_render - append the Prometheus text format (0.0.4) to out:
   every family with # HELP and # TYPE once, then
   bz_metrics_dropped_series_total and the process metrics
   (bz_process_resident_memory_bytes, bz_process_start_time_seconds,
   bz_process_open_fds, read from /proc). Check cm_buf_error(out). */
void cm_metrics_render(struct cm_buf *out);
/* cm_metrics_reset - drop every series and the drop count (tests only). */
void cm_metrics_reset(void);

#endif
