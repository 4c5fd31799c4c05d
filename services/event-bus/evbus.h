/*
 * evbus.h - the event-bus service's shared declarations (private).
 *
 * registry.c: the event type registry (proto/events/registry.json) and the
 * JSON Schema subset its data schemas use; pure, no I/O but the load.
 * store.c: event_bus.events (the audit table) and its monthly partitions.
 * audit.c: the audit writer, a bus subscriber thread filling the table.
 * quota.c: per-tenant hourly publish quotas. dlq.c: dead letters.
 * replay.c: replay jobs and their worker thread. stats.c: group gauges.
 * handlers.c: the HTTP routes. service.c: settings, routes, start/stop.
 */
#ifndef EVENT_BUS_EVBUS_H
#define EVENT_BUS_EVBUS_H

#include <stdbool.h>
#include <stdint.h>

#include <cJSON.h>
#include <libpq-fe.h>

#include "common/bus.h"
#include "common/err.h"

#define BUS_MAGIC 0x65766273u
#define BUS_MAX_BATCH 100
#define BUS_REGISTRY_MAX_BYTES (1 << 20)

struct bus_registry {
	cJSON *root;
	const cJSON *types; /* object: type name -> {version, data} */
};

struct bus_audit;

/* The service's state, handed to every handler. */
struct bus {
	unsigned magic;
	struct bus_registry registry;
	struct bus_audit *audit;
	struct bus_replayer *replayer;
	int64_t quota[4]; /* events/hour: free, starter, professional,
			     enterprise; 0: unlimited */
};

/* bus_registry_load - read and check the registry file; 0, CM_ENOENT (no
   file), CM_E2BIG or CM_EINVAL with errbuf. */
int bus_registry_load(const char *path, struct bus_registry *reg,
		      char errbuf[CM_ERRBUF_LEN]);
/* bus_registry_parse - the same from text. */
int bus_registry_parse(const char *text, size_t len, struct bus_registry *reg,
		       char errbuf[CM_ERRBUF_LEN]);
void bus_registry_release(struct bus_registry *reg);
/* bus_registry_check - env's type is registered (else CM_ENOENT "unknown
   event type ...") with a version it knows and data matching its schema
   (else CM_EINVAL naming the path, "data.lead_id: must be a uuid"). */
int bus_registry_check(const struct bus_registry *reg, const cJSON *env,
		       char errbuf[CM_ERRBUF_LEN]);
/* bus_schema_check - value against a schema (the subset); path names it. */
int bus_schema_check(const cJSON *schema, const cJSON *value, const char *path,
		     char errbuf[CM_ERRBUF_LEN]);

/* One page of history. */
struct bus_history_query {
	const char *tenant_id;
	const char *type; /* exact, or "<domain>.*"; NULL: any */
	const char *aggregate_type;
	const char *aggregate_id;
	const char *correlation_id;
	const char *since;  /* RFC 3339, inclusive; NULL: open */
	const char *until;  /* RFC 3339, exclusive */
	int limit;	    /* 1..200 */
	const char *cursor; /* from a previous page, or NULL */
};

/* bus_type_like - a type pattern ("*", "lead.*", "lead.created") as a
   LIKE pattern ("%", "lead.%", "lead.created"; "_" "%" "\\" escaped);
   malloc'd. */
char *bus_type_like(const char *type);
/* bus_cursor_ok - a cursor's shape: "<microseconds>.<event uuid>". */
bool bus_cursor_ok(const char *cursor);
/* bus_store_ensure_partitions - this month and the next two. */
int bus_store_ensure_partitions(char errbuf[CM_ERRBUF_LEN]);
/* bus_store_record - insert an envelope once (by event_id); *inserted says
   whether this call stored it. Inside the tenant's transaction. */
int bus_store_record(PGconn *conn, const char *tenant_id, const cJSON *env,
		     const char *stream_id, bool *inserted,
		     char errbuf[CM_ERRBUF_LEN]);
/* bus_store_history - {"items":[envelopes],"next_cursor":...} into *out. */
int bus_store_history(const struct bus_history_query *q, cJSON **out,
		      char errbuf[CM_ERRBUF_LEN]);

/* bus_quota_limit - the tier's events per hour (unknown tier: free's). */
int64_t bus_quota_limit(const struct bus *bus, const char *tier);
/* bus_quota_take - count n events for tenant this hour; CM_EAGAIN (and
   billing.limit_exceeded once per hour) when that goes over the limit,
   CM_EIO when Redis failed. */
int bus_quota_take(const struct bus *bus, const char *tenant, const char *tier,
		   int n, char errbuf[CM_ERRBUF_LEN]);

/* Dead letters of one tenant (dlq.c): list newest first ({"items",
   "next_cursor"}), get one, discard one; CM_ENOENT for an unknown id. */
int bus_dlq_list(const char *tenant, const char *cursor, int limit, cJSON **out,
		 char errbuf[CM_ERRBUF_LEN]);
int bus_dlq_get(const char *tenant, const char *id, cJSON **out,
		char errbuf[CM_ERRBUF_LEN]);
int bus_dlq_discard(const char *tenant, const char *id,
		    char errbuf[CM_ERRBUF_LEN]);

/* Replays (replay.c). */
struct bus_replay_req {
	const char *tenant_id;
	const char *subscriber;	   /* a consumer group name */
	const cJSON *types;	   /* array of type patterns (checked) */
	const char *since, *until; /* RFC 3339 or NULL */
};
/* bus_replay_create - record a job; its id and the number of matching
   stored events. */
int bus_replay_create(const struct bus_replay_req *r, char id_out[37],
		      int64_t *total, char errbuf[CM_ERRBUF_LEN]);
/* bus_replay_get - the job as JSON (the tenant's only; else CM_ENOENT). */
int bus_replay_get(const char *tenant, const char *id, cJSON **out,
		   char errbuf[CM_ERRBUF_LEN]);
/* bus_replay_step - one page of the oldest open job; *worked is 0 when
   there was no job. */
int bus_replay_step(int *worked, char errbuf[CM_ERRBUF_LEN]);
struct bus_replayer;
struct bus_replayer *bus_replayer_start(char errbuf[CM_ERRBUF_LEN]);
void bus_replayer_stop(struct bus_replayer *w);

struct cm_req;
/* The routes (handlers.c); arg is the struct bus. */
void bus_handle_publish(struct cm_req *req, void *arg);
void bus_handle_publish_batch(struct cm_req *req, void *arg);
void bus_handle_history(struct cm_req *req, void *arg);
void bus_handle_replay_create(struct cm_req *req, void *arg);
void bus_handle_replay_get(struct cm_req *req, void *arg);
void bus_handle_dlq_list(struct cm_req *req, void *arg);
void bus_handle_dlq_get(struct cm_req *req, void *arg);
void bus_handle_dlq_retry(struct cm_req *req, void *arg);
void bus_handle_dlq_discard(struct cm_req *req, void *arg);

struct bus_audit_config {
	int claim_idle_ms;
	int max_attempts;
	int backoff_ms;
	int stats_interval_ms; /* bus_stats_refresh every this often */
};
/* bus_stats_refresh - set bz_bus_pending{group} and bz_bus_lag{group},
   summed over every tenant stream (stats.c). */
int bus_stats_refresh(char errbuf[CM_ERRBUF_LEN]);
/* bus_audit_start - start the audit writer thread; NULL with errbuf. */
struct bus_audit *bus_audit_start(const struct bus_audit_config *cfg,
				  char errbuf[CM_ERRBUF_LEN]);
/* bus_audit_stop - stop and join it; accepts NULL. */
void bus_audit_stop(struct bus_audit *a);
/* bus_audit_handle - the audit handler (exposed for tests). */
int bus_audit_handle(const struct cm_bus_event *ev, void *arg,
		     char errbuf[CM_ERRBUF_LEN]);

#endif
