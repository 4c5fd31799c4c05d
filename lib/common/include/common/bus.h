/*
 * bus.h - the event bus client: publish, subscribe, inbox and outbox.
 *
 * Events are JSON envelopes (proto/events/envelope.schema.json) carried on
 * Redis Streams, one stream per tenant ("bz:ev:t:<tenant_id>"), every such
 * stream listed in the set "bz:ev:streams"; the design and its reasons are in
 * docs/event-bus.md. Each stream entry has two fields: "type" (the event
 * type) and "event" (the envelope as compact JSON).
 *
 * Publishing: cm_bus_publish() takes the caller's *verified* tenant id as an
 * argument, puts it into the envelope (refusing an envelope that names
 * another tenant), validates the envelope's shape (cm_bus_validate) and
 * writes it with one atomic script (SADD of the stream name + XADD, never
 * MAXLEN); a stream the same thread registered in the last 5 s gets a
 * plain XADD. It returns 0 only after Redis has stored the entry. The event
 * type registry (data schemas) is checked by the event-bus service, not
 * here: services publish without reading any file.
 *
 * Subscribing: a struct cm_bus_sub is one consumer of one consumer group.
 * cm_bus_sub_poll() does one round: refresh the list of tenant streams
 * (every refresh_ms; the group is created on new streams at id 0), claim
 * entries other consumers left pending longer than claim_idle_ms
 * (XAUTOCLAIM), then read new entries from all streams at once (XREADGROUP
 * COUNT batch: at most `batch` entries per tenant per round, the fairness
 * bound) and run the handler on each, in stream order. An entry is XACKed
 * only after the handler returned 0, or after it was dead-lettered: a
 * failing handler is retried max_attempts times in place with exponential
 * backoff (backoff_ms doubled per attempt, capped at 5 s), then the entry
 * goes to the tenant's dead-letter stream "bz:ev:dlq:<tenant_id>" with
 * fields stream, id, type, event, attempts, error (the handler's last
 * errbuf), group, and is acked. An entry with a field "target" (a retried
 * dead letter) is handled only by that group; others ack it unhandled. A
 * claimed entry that Redis already delivered more than max_attempts times goes
 * to the dead-letter stream without running the handler. Entries whose type
 * matches none of the patterns are acked unhandled. Malformed entries are
 * dead-lettered. Per-tenant (and so per-aggregate) order holds for one
 * consumer per group; several consumers of one group share a stream's
 * entries and each sees them in order, but not each other's
 * (docs/event-bus.md). A stop during a retry's backoff leaves the entry
 * pending for another consumer rather than dead-lettering it.
 *
 * Threading: a cm_bus_sub is used by one thread (cm_bus_sub_run loops on
 * it); cm_bus_sub_stop() may be called from any thread and makes
 * cm_bus_sub_run return after the current round (at most block_ms).
 * Publishing is thread-safe (each thread has its own Redis connection).
 *
 * Inbox (idempotent handlers), the table a service creates:
 *   CREATE TABLE <schema>.inbox (event_id uuid PRIMARY KEY,
 *     tenant_id uuid NOT NULL, handled_at timestamptz NOT NULL
 *     DEFAULT now());  + ENABLE/FORCE RLS on tenant_id.
 * Outbox (publish after commit), the table a service creates:
 *   CREATE TABLE <schema>.outbox (id bigserial PRIMARY KEY,
 *     tenant_id uuid NOT NULL, event_id uuid NOT NULL UNIQUE,
 *     event text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
 *     published_at timestamptz);  + ENABLE/FORCE RLS with the policy
 *   USING (tenant_id = NULLIF(current_setting('app.tenant_id', true),
 *          '')::uuid OR current_setting('app.bus_relay', true) = 'on')
 *   (and the same WITH CHECK): the relay alone sets app.bus_relay, for its
 *   own transaction, to publish every tenant's rows.
 * Table names are "schema.table" of [a-z0-9_] (checked, then put into the
 * SQL text; they come from the service's code, never from input).
 */
#ifndef COMMON_BUS_H
#define COMMON_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>
#include <libpq-fe.h>

#include "common/err.h"

#define CM_BUS_MAX_EVENT 65536 /* bytes of one envelope as JSON */
#define CM_BUS_KEY_LEN 96      /* room for any bus key */
#define CM_BUS_STREAMS "bz:ev:streams"
#define CM_BUS_MAX_PATTERNS 16

/* One delivered event, valid during the handler call. */
struct cm_bus_event {
	const char *stream;    /* "bz:ev:t:<tenant>" */
	const char *id;	       /* the stream entry id */
	const char *tenant_id; /* the stream's tenant (the verified one) */
	const char *type;
	const cJSON *env;      /* the parsed envelope */
	const char *json;      /* the envelope text as stored */
	int attempt;	       /* 1.. */
	const char *replay_id; /* set when this is a replay (see below) */
};

/* A handler: 0 on success (the entry is acked), else CM_E* with errbuf.
   CM_EINVAL or CM_EPERM say the event can never succeed (bad or forged
   input): it is dead-lettered at once, without retries, so it does not
   hold the consumer up for the whole backoff. Any other code is retried. */
typedef int (*cm_bus_handler_fn)(const struct cm_bus_event *ev, void *arg,
				 char errbuf[CM_ERRBUF_LEN]);

/* A batch handler (optional): the new events of one stream (so of one
   tenant, in stream order) handled at once, e.g. in one transaction. 0
   when every one of them is done: all are acked. Anything else and the
   subscriber hands each of them to fn, one by one, with the usual
   retries and dead letters - so a batch handler must leave nothing half
   done when it fails (roll back), and fn must exist too. */
typedef int (*cm_bus_batch_fn)(const struct cm_bus_event *evs, int n, void *arg,
			       char errbuf[CM_ERRBUF_LEN]);

struct cm_bus_sub_config {
	const char *group;    /* [a-z0-9_-], 1..48 chars */
	const char *consumer; /* unique per process, 1..64 chars */
	/* NULL-ended type patterns ("lead.*", "deal.won", "*"); NULL: all */
	const char *const *patterns;
	const char *tenant_id; /* only this tenant's stream; NULL: all */
	int batch;	       /* entries per stream per round; 0: 16 */
	int block_ms;	       /* XREADGROUP BLOCK; 0: 1000; capped at 2000,
				  below the Redis command timeout */
	int claim_idle_ms;     /* claim pending entries idle this long; 0:
				  30000 */
	int max_attempts;      /* handler runs before dead-letter; 0: 5 */
	int backoff_ms;	       /* first retry delay; 0: 100 */
	int refresh_ms;	       /* re-read the stream set; 0: 1000 */
	cm_bus_handler_fn fn;
	cm_bus_batch_fn batch_fn; /* NULL: fn for each event */
	void *arg;
};

struct cm_bus_sub;

/* cm_bus_stream_key - "bz:ev:t:<tenant_id>" into out. */
void cm_bus_stream_key(const char *tenant_id, char out[CM_BUS_KEY_LEN]);
/* cm_bus_dlq_key - the tenant's dead letters, "bz:ev:dlq:<tenant_id>". */
void cm_bus_dlq_key(const char *tenant_id, char out[CM_BUS_KEY_LEN]);
/* cm_bus_valid_entry_id - "<ms>-<seq>", a stream entry id. */
bool cm_bus_valid_entry_id(const char *id);
/* cm_bus_dlq_retry - atomically move dead letter dlq_id of the tenant back
   onto the tenant's stream with field target=<its group>: only that group
   handles it again, every other group acks it unhandled. The new entry id
   in id_out[64] (may be NULL). CM_ENOENT if there is no such dead letter,
   CM_EINVAL for a bad id, CM_EIO when Redis failed. */
int cm_bus_dlq_retry(const char *tenant_id, const char *dlq_id, char id_out[64],
		     char errbuf[CM_ERRBUF_LEN]);
/* cm_bus_type_match - pattern "*", "<domain>.*" or an exact type. */
bool cm_bus_type_match(const char *pattern, const char *type);
/* cm_bus_valid_group - a consumer group name: [a-z][a-z0-9_-]*, <= 48. */
bool cm_bus_valid_group(const char *group);
/* cm_bus_valid_type - "<domain>.<what>": [a-z][a-z0-9_]* "." [a-z][a-z0-9_.]*,
   at most 64 bytes. */
bool cm_bus_valid_type(const char *type);

/* cm_bus_is_rfc3339 - YYYY-MM-DDTHH:MM:SS[.1-9 digits](Z|+HH:MM|-HH:MM). */
bool cm_bus_is_rfc3339(const char *s);
/* cm_bus_validate - check env against the envelope schema's shape;
   CM_EINVAL with errbuf naming the field ("field 'priority' must be one of
   low, normal, high, critical"), CM_E2BIG over CM_BUS_MAX_EVENT. */
int cm_bus_validate(const cJSON *env, char errbuf[CM_ERRBUF_LEN]);
/* cm_bus_envelope_new - an envelope with a fresh event_id, occurred_at now,
   event_version 1, priority "normal", empty metadata, no tenant (publish
   sets it); data is taken over (NULL: {}). NULL if randomness failed. */
cJSON *cm_bus_envelope_new(const char *type, const char *source_service,
			   const char *aggregate_type, const char *aggregate_id,
			   cJSON *data);
/* cm_bus_publish - set env's tenant_id to tenant_id (CM_EPERM if env names
   another tenant; CM_EINVAL if tenant_id is not a uuid), validate, store;
   the entry id in id_out[64] (may be NULL). 0 only once Redis has it;
   CM_EIO when Redis failed or timed out (the event may then have been
   stored: publish again with the same event_id, consumers dedupe).
   Threads publishing at the same moment share one pipeline
   (cm_redis_cmd_grouped). */
int cm_bus_publish(const char *tenant_id, cJSON *env, char id_out[64],
		   char errbuf[CM_ERRBUF_LEN]);
/* cm_bus_published_fn - the outcome of an async publish: rc 0 with the
   entry id, or CM_EIO with err (the event may have been stored, as for
   cm_bus_publish). id and err live during the call only. */
typedef void (*cm_bus_published_fn)(int rc, const char *id, const char *err,
				    void *arg);
/* cm_bus_publish without blocking, in two halves, for an HTTP worker
   thread whose handler deferred its request (common/http.h) and has its
   own checks between them (event-bus's registry and quota):
   cm_bus_prepare does every check of cm_bus_publish (same codes) and
   prints the envelope once into *out; cm_bus_publish_prepared_async
   stores it over the worker's own Redis connection (common/redis.h
   cm_redis_async_argv), so many requests' publishes share it, and frees
   it (also on failure); fn runs exactly once, later, on this thread.
   cm_bus_prepared_free drops one unused. */
struct cm_bus_prepared;
int cm_bus_prepare(const char *tenant_id, cJSON *env,
		   struct cm_bus_prepared **out, char errbuf[CM_ERRBUF_LEN]);
int cm_bus_publish_prepared_async(struct cm_bus_prepared *prep,
				  cm_bus_published_fn fn, void *arg,
				  char errbuf[CM_ERRBUF_LEN]);
void cm_bus_prepared_free(struct cm_bus_prepared *prep);

/* cm_bus_replay_append - put an event (its type and envelope text) on the
   tenant's stream again, for `group` only (field target) and marked as a
   replay of replay_id (field replay: handlers see ev->replay_id). */
int cm_bus_replay_append(const char *tenant_id, const char *group,
			 const char *type, const char *event_json,
			 const char *replay_id, char errbuf[CM_ERRBUF_LEN]);

/* cm_bus_sub_new - a consumer (config copied); NULL for a bad config. */
struct cm_bus_sub *cm_bus_sub_new(const struct cm_bus_sub_config *cfg);
/* cm_bus_sub_free - accepts NULL. */
void cm_bus_sub_free(struct cm_bus_sub *s);
/* cm_bus_sub_poll - one round (see above); *handled (may be NULL) gets the
   number of entries acked or dead-lettered. 0, or CM_EIO when
   Redis failed (the round stops; nothing is acked that was not handled). */
int cm_bus_sub_poll(struct cm_bus_sub *s, int *handled,
		    char errbuf[CM_ERRBUF_LEN]);
/* cm_bus_sub_run - poll until cm_bus_sub_stop; a Redis failure is logged
   and retried after a second. */
void cm_bus_sub_run(struct cm_bus_sub *s);
/* cm_bus_sub_stop - make cm_bus_sub_run return; any thread. */
void cm_bus_sub_stop(struct cm_bus_sub *s);

/* cm_bus_inbox_claim - inside the handler's tenant transaction: record
   event_id in table; 0 the first time, CM_EEXIST if already handled (the
   handler then does nothing and returns 0). */
int cm_bus_inbox_claim(PGconn *conn, const char *table, const char *tenant_id,
		       const char *event_id, char errbuf[CM_ERRBUF_LEN]);
/* cm_bus_outbox_add - inside the caller's tenant transaction: validate env
   (tenant_id set to tenant_id as cm_bus_publish does) and insert it into
   table, unpublished. CM_EEXIST for an event_id already there. */
int cm_bus_outbox_add(PGconn *conn, const char *table, const char *tenant_id,
		      cJSON *env, char errbuf[CM_ERRBUF_LEN]);
/* cm_bus_outbox_relay - publish up to limit unpublished rows of every
   tenant, oldest first, each marked published in the same transaction
   (rows locked FOR UPDATE SKIP LOCKED, so relays may run concurrently);
   *published (may be NULL) gets the count. A row that fails to publish
   stops the run with its error and stays unpublished. */
int cm_bus_outbox_relay(const char *table, int limit, int *published,
			char errbuf[CM_ERRBUF_LEN]);

/* cm_bus_outbox_sweep - delete at most limit rows of table published more
   than keep_s seconds ago (oldest first; every tenant's: the relay's
   setting); *removed (may be NULL) gets the count. */
int cm_bus_outbox_sweep(const char *table, int64_t keep_s, int limit,
			long long *removed, char errbuf[CM_ERRBUF_LEN]);
/* cm_bus_relay - a thread publishing an outbox table (lib/common/bus_relay.c):
   soon after each cm_bus_relay_kick (a commit that added rows; kicks
   within 10 ms share a round) and every interval_ms, so rows a crash
   between commit and publish (or a Redis outage) left behind go out
   later. tick (may be NULL) runs on the same thread before each round:
   a service's own periodic job. Once an hour it also sweeps the rows
   published more than CM_BUS_OUTBOX_KEEP_S ago (cm_bus_outbox_sweep, in
   batches). Stop runs one last round and joins. Kick and stop accept
   NULL. */
#define CM_BUS_OUTBOX_KEEP_S (7 * 86400)
struct cm_bus_relay;
typedef void (*cm_bus_relay_tick_fn)(void *arg);
struct cm_bus_relay *cm_bus_relay_start(const char *table, int interval_ms,
					cm_bus_relay_tick_fn tick, void *arg,
					char errbuf[CM_ERRBUF_LEN]);
void cm_bus_relay_kick(struct cm_bus_relay *r);
void cm_bus_relay_stop(struct cm_bus_relay *r);

/* cm_bus_trim - XTRIM stream MINID to the smallest id any group of the
   stream still needs (its first pending id, else its last delivered id,
   which is kept), or to
   min_id when that is smaller (NULL: no age cutoff); a stream without
   groups is left alone. *removed (may be NULL) gets XTRIM's count. */
int cm_bus_trim(const char *stream, const char *min_id, long long *removed,
		char errbuf[CM_ERRBUF_LEN]);

#endif
