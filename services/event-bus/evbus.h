/*
 * evbus.h - the event-bus service's shared declarations (private).
 *
 * registry.c: the event type registry (proto/events/registry.json) and the
 * JSON Schema subset its data schemas use; pure, no I/O but the load.
 * store.c: event_bus.events (the audit table) and its monthly partitions.
 * audit.c: the audit writer, a bus subscriber thread filling the table.
 * quota.c: per-tenant hourly publish quotas. dlq.c: dead letters.
 * handlers_dlq.c: the platform admins' dead-letter routes.
 * replay.c: replay jobs and their worker thread. stats.c: group gauges.
 * handlers.c: the HTTP routes. service.c: settings, routes, start/stop.
 * webhook.c: secrets, signatures, the retry schedule (pure).
 * webhook_store.c: subscriptions, deliveries, Idempotency-Key records.
 * webhook_worker.c: the fan-out consumer (group "webhooks") and the
 * delivery threads. handlers_webhooks.c: the webhook routes.
 * retention.c: the periodic trim of streams and old rows.
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
	const cJSON *types;   /* object: type name -> {version, data} */
	const cJSON **sorted; /* the entries of types by name (bsearch) */
	size_t ntypes;
};

struct bus_audit;
struct bus_webhooks;
struct bus_retention;

/* The service's state, handed to every handler. */
struct bus {
	unsigned magic;
	struct bus_registry registry;
	struct bus_audit *audit;
	struct bus_replayer *replayer;
	struct bus_webhooks *webhooks;
	struct bus_retention *retention;
	int64_t quota[4];	   /* events/hour: free, starter, professional,
				      enterprise; 0: unlimited */
	char *webhook_allow_cidrs; /* WEBHOOK_ALLOW_CIDRS (dev/test), or "" */
	int webhook_max_per_tenant;
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

#define BUS_DLQ_ADMIN_MAX_LIMIT 100

/* One page of every tenant's dead letters (platform admins). */
struct bus_dlq_admin_query {
	const char *tenant_id; /* a lowercase uuid, or NULL: every tenant */
	const char *type;      /* a pattern (bus_type_pattern_ok); NULL: any */
	const char *cursor;    /* from a previous page, or NULL */
	int limit;	       /* 1..BUS_DLQ_ADMIN_MAX_LIMIT */
};
/* bus_dlq_admin_list - {"items", "next_cursor"}, each item with its
   "tenant_id": tenant after tenant (Redis SCAN order), each newest first.
   A page may hold fewer than limit items while next_cursor is not null
   (every page's Redis work is bounded); the walk is over when it is null.
   CM_EINVAL for a bad cursor, CM_EIO when Redis failed. */
int bus_dlq_admin_list(const struct bus_dlq_admin_query *q, cJSON **out,
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
/* Every tenant's dead letters, super_admin only (handlers_dlq.c). */
void bus_handle_dlq_admin_list(struct cm_req *req, void *arg);
void bus_handle_dlq_admin_get(struct cm_req *req, void *arg);
void bus_handle_dlq_admin_retry(struct cm_req *req, void *arg);
void bus_handle_dlq_admin_discard(struct cm_req *req, void *arg);

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
/* bus_event_check - 0 when ev's envelope names the tenant of its stream
   and is valid; CM_EPERM (a forgery) or the validation's code, with
   errbuf. */
int bus_event_check(const struct cm_bus_event *ev, char errbuf[CM_ERRBUF_LEN]);
/* bus_audit_handle - the audit handler (exposed for tests). */
int bus_audit_handle(const struct cm_bus_event *ev, void *arg,
		     char errbuf[CM_ERRBUF_LEN]);
/* bus_audit_handle_batch - the same for the new events of one stream, in
   one transaction (the subscriber's batch handler). */
int bus_audit_handle_batch(const struct cm_bus_event *evs, int n, void *arg,
			   char errbuf[CM_ERRBUF_LEN]);

/* --- webhooks ---------------------------------------------------------- */

#define BUS_WH_SECRET_LEN 64 /* "whsec_" + base64 of 32 bytes + NUL: 51 */
#define BUS_WH_SIG_LEN 64    /* "v1," + base64 of 32 bytes + NUL: 48 */

/* The retry schedule: attempt n (1..) failing waits
   min(backoff_ms * 2^(n-1), backoff_max_ms) (+0..20% jitter) before
   attempt n + 1; after max_attempts the delivery is dead. */
struct bus_webhook_schedule {
	int max_attempts;
	int64_t backoff_ms;
	int64_t backoff_max_ms;
};

/* bus_webhook_secret_new - "whsec_" + base64(32 random bytes); 0 or
   CM_EIO (no randomness). */
int bus_webhook_secret_new(char out[BUS_WH_SECRET_LEN]);
/* bus_webhook_secret_ok - "whsec_" + base64 of 16..64 bytes. */
bool bus_webhook_secret_ok(const char *secret);
/* bus_webhook_sign - Standard Webhooks: "v1," + base64(HMAC-SHA256(the
   secret's decoded bytes, msg_id + "." + timestamp + "." + body));
   CM_EINVAL for a bad secret, CM_EIO if OpenSSL failed. */
int bus_webhook_sign(const char *secret, const char *msg_id, int64_t timestamp,
		     const char *body, size_t body_len,
		     char out[BUS_WH_SIG_LEN]);
/* bus_webhook_backoff_ms - the wait after failed attempt n (no jitter). */
int64_t bus_webhook_backoff_ms(const struct bus_webhook_schedule *s,
			       int attempt);
/* bus_webhook_schedule_span_ms - first to last attempt, without jitter
   (the least time a delivery is retried before it is dead). */
int64_t bus_webhook_schedule_span_ms(const struct bus_webhook_schedule *s);
/* bus_type_pattern_ok - "*", "<domain>.*" or an event type. */
bool bus_type_pattern_ok(const char *p);
/* bus_webhook_check_patterns - 1..CM_BUS_MAX_PATTERNS distinct patterns;
   CM_EINVAL naming the item. */
int bus_webhook_check_patterns(const cJSON *arr, char errbuf[CM_ERRBUF_LEN]);

/* A create or an update (NULL / -1: not given). */
struct bus_webhook_input {
	const char *url;
	const cJSON *event_types;
	const char *description;
	int active; /* -1, 0 or 1 */
};

/* An Idempotency-Key of a create (key NULL: none). */
struct bus_idem {
	const char *key;
	char hash[65]; /* sha256 hex of the body */
};

/* Subscriptions (webhook_store.c); each runs in the tenant's transaction.
   Rendered rows carry "version" (the ETag; the handler takes it out). */
/* bus_wh_create - a new subscription with a fresh secret (in *out once);
   with im->key, a repeat of the same key and body gives the stored answer
   (*replayed true), another body CM_EEXIST. CM_E2BIG over max. */
int bus_wh_create(const char *tenant, const struct bus_webhook_input *in,
		  const struct bus_idem *im, int max, cJSON **out,
		  bool *replayed, char errbuf[CM_ERRBUF_LEN]);
int bus_wh_get(const char *tenant, const char *id, cJSON **out,
	       char errbuf[CM_ERRBUF_LEN]);
int bus_wh_list(const char *tenant, const char *cursor, int limit, cJSON **out,
		char errbuf[CM_ERRBUF_LEN]);
/* bus_wh_update - CM_ENOENT, CM_ESTALE when version is not the row's. */
int bus_wh_update(const char *tenant, const char *id, int64_t version,
		  const struct bus_webhook_input *in, cJSON **out,
		  char errbuf[CM_ERRBUF_LEN]);
/* bus_wh_rotate - a fresh secret (in *out once, as "secret"); the old one
   keeps signing too for grace_s seconds (0: not at all). version 0: any;
   CM_ENOENT, CM_ESTALE. */
int bus_wh_rotate(const char *tenant, const char *id, int64_t version,
		  int64_t grace_s, cJSON **out, char errbuf[CM_ERRBUF_LEN]);
/* bus_wh_delete - version 0: any. */
int bus_wh_delete(const char *tenant, const char *id, int64_t version,
		  char errbuf[CM_ERRBUF_LEN]);
/* bus_wh_deliveries - a subscription's deliveries, newest first, with
   their attempt logs; status NULL: any. CM_ENOENT for no subscription. */
int bus_wh_deliveries(const char *tenant, const char *id, const char *status,
		      const char *cursor, int limit, cJSON **out,
		      char errbuf[CM_ERRBUF_LEN]);
/* bus_wh_delivery_retry - a dead delivery pending again, now, with a
   fresh count of attempts; CM_ENOENT, CM_EEXIST when it is not dead. */
int bus_wh_delivery_retry(const char *tenant, const char *id,
			  const char *delivery_id, char errbuf[CM_ERRBUF_LEN]);

/* One claimed delivery (the worker's). */
struct bus_wh_job {
	char id[37], tenant_id[37], webhook_id[37];
	char *url, *secret, *payload;
	char *previous_secret; /* a rotated-out one still in its grace */
	int attempt;	       /* this attempt, 1.. */
};
void bus_wh_job_release(struct bus_wh_job *j);
/* The outcome of one attempt. */
struct bus_wh_result {
	bool ok;	   /* 2xx */
	bool permanent;	   /* can never succeed: dead at once */
	long status;	   /* HTTP status, 0: none */
	const char *error; /* NULL or a short reason */
	int64_t duration_ms;
};
/* bus_wh_fanout - inside the tenant's transaction: a pending delivery of
   the event for every active subscription whose patterns match; *n gets
   how many were new. */
int bus_wh_fanout(PGconn *conn, const struct cm_bus_event *ev, int *n,
		  char errbuf[CM_ERRBUF_LEN]);
/* bus_wh_claim - a due pending delivery (active subscription), leased
   for lease_ms: the most overdue one of the first tenant after `after`
   (uuid order, wrapping; NULL or "": from the start) that has one due, so
   the delivery threads take tenants in turn and a tenant's flood does
   not hold back the others; else the most overdue of any tenant.
   CM_ENOENT when none is due. */
int bus_wh_claim(int lease_ms, const char *after, struct bus_wh_job *job,
		 char errbuf[CM_ERRBUF_LEN]);
/* bus_wh_record - the attempt's outcome: succeeded, due again after the
   schedule's backoff (+ jitter), or dead (the subscription flagged);
   *dead says which of the last. */
int bus_wh_record(const struct bus_wh_job *job, const struct bus_wh_result *r,
		  const struct bus_webhook_schedule *s, bool *dead,
		  char errbuf[CM_ERRBUF_LEN]);

struct bus_webhooks_config {
	struct bus_webhook_schedule schedule;
	struct bus_audit_config sub; /* the consumer group's settings */
	int workers;		     /* delivery threads */
	int timeout_ms;		     /* one attempt */
	int poll_ms;		     /* idle wait for due deliveries */
	const char *allow_cidrs;     /* copied; "" or NULL: none */
};
/* bus_webhooks_start - the fan-out consumer and the delivery threads. */
struct bus_webhooks *bus_webhooks_start(const struct bus_webhooks_config *cfg,
					char errbuf[CM_ERRBUF_LEN]);
/* bus_webhooks_stop - stop and join; accepts NULL. */
void bus_webhooks_stop(struct bus_webhooks *w);
/* bus_webhooks_kick - wake the delivery threads (new work); NULL ok. */
void bus_webhooks_kick(struct bus_webhooks *w);
/* bus_webhook_deliver - one attempt of job (signing, POST); the
   outcome in *r (r->error points into errbuf). Exposed for tests. */
void bus_webhook_deliver(const struct bus_wh_job *job, int timeout_ms,
			 const char *allow_cidrs, struct bus_wh_result *r,
			 char errbuf[CM_ERRBUF_LEN]);

/* The routes (handlers_webhooks.c). */
void bus_handle_wh_list(struct cm_req *req, void *arg);
void bus_handle_wh_create(struct cm_req *req, void *arg);
void bus_handle_wh_get(struct cm_req *req, void *arg);
void bus_handle_wh_update(struct cm_req *req, void *arg);
void bus_handle_wh_rotate(struct cm_req *req, void *arg);
void bus_handle_wh_delete(struct cm_req *req, void *arg);
void bus_handle_wh_deliveries(struct cm_req *req, void *arg);
void bus_handle_wh_delivery_retry(struct cm_req *req, void *arg);

/* --- API-key scopes ------------------------------------------------------ */

struct cm_principal;
/* bus_scope_ok - whether p may use the events API for `need` ("read" or
   "write"): users and services always (roles are checked per route); an
   API key only with the scope "events:<need>" ("events:write" implies
   read). */
bool bus_scope_ok(const struct cm_principal *p, const char *need);

/* --- retention ----------------------------------------------------------- */

struct bus_retention_config {
	int64_t stream_ms; /* keep stream entries at least this long; 0: trim
			      only what every group acknowledged */
	int64_t dlq_ms;	   /* dead letters; 0: keep */
	int audit_days;	   /* audit rows; 0: keep */
	int delivery_days; /* finished webhook deliveries; 0: keep */
	int interval_ms;   /* how often the job runs */
};
/* What one run removed. */
struct bus_retention_report {
	long long stream_entries, dead_letters, audit_rows, deliveries;
	int partitions;
};
/* bus_retention_run - one pass over every tenant stream (cm_bus_trim: an
   entry some group has not read or acknowledged is never removed), the
   dead-letter streams, the audit table and webhook deliveries. */
int bus_retention_run(const struct bus_retention_config *cfg,
		      struct bus_retention_report *rep,
		      char errbuf[CM_ERRBUF_LEN]);
struct bus_retention *bus_retention_start(const struct bus_retention_config *c,
					  char errbuf[CM_ERRBUF_LEN]);
void bus_retention_stop(struct bus_retention *r);

/* ---- stream.c: GET /api/events/stream (server-sent events) ---- */

/* bus_stream_configure - poll and heartbeat intervals, the most streams
   open at once; before the server starts. */
void bus_stream_configure(int poll_ms, int heartbeat_ms, int max_streams);
void bus_handle_stream(struct cm_req *req, void *arg);

#endif
