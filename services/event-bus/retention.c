/*
 * retention.c - the periodic clean-up: tenant streams, dead letters, the
 * audit table, finished webhook deliveries, old Idempotency-Key records.
 *
 * Streams are trimmed only through cm_bus_trim: the cut is the older of
 * the age cutoff and the oldest entry any consumer group still needs (its
 * first pending entry, else its last delivered one), so an entry that
 * some group has not read or acknowledged is never removed. Dead-letter
 * streams have no groups; they are cut by age alone. Audit rows go by
 * whole monthly partitions where possible, then row by row.
 */
#include "evbus.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/db.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/redis.h"

#include "common/banned.h"

#define STREAM_PREFIX "bz:ev:t:"

struct bus_retention {
	struct bus_retention_config cfg;
	pthread_t thread;
	atomic_int stop;
};

/* The wall clock in milliseconds (stream ids are wall-clock based). */
static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* XTRIM key MINID id (no groups involved: dead letters). */
static int
trim_by_age(const char *key, const char *min_id, long long *removed,
	    char errbuf[CM_ERRBUF_LEN])
{
	const char *argv[4] = { "XTRIM", key, "MINID", min_id };
	redisReply *r = cm_redis_cmd(4, argv, NULL, errbuf);

	if (!r)
		return CM_EIO;
	if (r->type == REDIS_REPLY_INTEGER)
		*removed += r->integer;
	freeReplyObject(r);
	return 0;
}

/* One tenant stream and its dead letters. */
static int
trim_tenant(const struct bus_retention_config *cfg, const char *stream,
	    struct bus_retention_report *rep, char errbuf[CM_ERRBUF_LEN])
{
	char min_id[32], dlq[CM_BUS_KEY_LEN], dlq_min[32];
	long long n = 0;
	int rc;

	snprintf(min_id, sizeof(min_id), "%lld-0",
		 (long long)(wall_ms() - cfg->stream_ms));
	rc = cm_bus_trim(stream, cfg->stream_ms > 0 ? min_id : NULL, &n,
			 errbuf);
	if (rc < 0)
		return rc;
	rep->stream_entries += n;
	if (cfg->dlq_ms <= 0 ||
	    strncmp(stream, STREAM_PREFIX, strlen(STREAM_PREFIX)) != 0)
		return 0;
	cm_bus_dlq_key(stream + strlen(STREAM_PREFIX), dlq);
	snprintf(dlq_min, sizeof(dlq_min), "%lld-0",
		 (long long)(wall_ms() - cfg->dlq_ms));
	return trim_by_age(dlq, dlq_min, &rep->dead_letters, errbuf);
}

static int
trim_streams(const struct bus_retention_config *cfg,
	     struct bus_retention_report *rep, char errbuf[CM_ERRBUF_LEN])
{
	const char *argv[2] = { "SMEMBERS", CM_BUS_STREAMS };
	redisReply *r = cm_redis_cmd(2, argv, NULL, errbuf);
	size_t i;
	int rc = 0;

	if (!r)
		return CM_EIO;
	for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		if (r->element[i]->type != REDIS_REPLY_STRING)
			continue;
		rc = trim_tenant(cfg, r->element[i]->str, rep, errbuf);
		if (rc < 0)
			break;
	}
	freeReplyObject(r);
	return rc;
}

struct rows {
	const struct bus_retention_config *cfg;
	struct bus_retention_report *rep;
};

static long long
affected(PGresult *res)
{
	return strtoll(PQcmdTuples(res), NULL, 10);
}

/* One DELETE with $1 = days; its row count into *n. */
static int
delete_older(PGconn *conn, const char *sql, int days, long long *n,
	     char errbuf[CM_ERRBUF_LEN])
{
	char d[16];
	const char *p[1] = { d };
	PGresult *res = NULL;
	int rc;

	snprintf(d, sizeof(d), "%d", days);
	rc = cm_db_query(conn, sql, 1, p, &res, errbuf);
	if (rc == 0)
		*n += affected(res);
	PQclear(res);
	return rc;
}

static int
audit_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct rows *w = arg;
	char d[16];
	const char *p[1] = { d };
	PGresult *res = NULL;
	int rc;

	snprintf(d, sizeof(d), "%d", w->cfg->audit_days);
	rc = cm_db_query(conn,
			 "SELECT set_config('app.bus_worker', 'on', true), "
			 "event_bus.drop_months_before(now() - $1::int * "
			 "interval '1 day')",
			 1, p, &res, errbuf);
	if (rc == 0)
		w->rep->partitions +=
			(int)strtol(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	if (rc == 0)
		rc = delete_older(conn,
				  "DELETE FROM event_bus.events WHERE "
				  "occurred_at < now() - $1::int * "
				  "interval '1 day'",
				  w->cfg->audit_days, &w->rep->audit_rows,
				  errbuf);
	return rc;
}

static int
rows_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct rows *w = arg;
	long long ignored = 0;
	int rc;

	rc = cm_db_query(conn,
			 "SELECT set_config('app.bus_worker', 'on', true)", 0,
			 NULL, NULL, errbuf);
	if (rc == 0 && w->cfg->delivery_days > 0)
		rc = delete_older(conn,
				  "DELETE FROM event_bus.webhook_deliveries "
				  "WHERE finished_at < now() - $1::int * "
				  "interval '1 day'",
				  w->cfg->delivery_days, &w->rep->deliveries,
				  errbuf);
	if (rc == 0)
		rc = delete_older(conn,
				  "DELETE FROM event_bus.idempotency WHERE "
				  "created_at < now() - $1::int * "
				  "interval '1 day'",
				  1, &ignored, errbuf);
	if (rc == 0 && w->cfg->audit_days > 0)
		rc = delete_older(conn,
				  "DELETE FROM event_bus.replays WHERE status "
				  "IN ('completed', 'failed') AND updated_at < "
				  "now() - $1::int * interval '1 day'",
				  w->cfg->audit_days, &ignored, errbuf);
	return rc;
}

int
bus_retention_run(const struct bus_retention_config *cfg,
		  struct bus_retention_report *rep, char errbuf[CM_ERRBUF_LEN])
{
	struct rows w = { cfg, rep };
	int rc;

	memset(rep, 0, sizeof(*rep));
	if ((rc = trim_streams(cfg, rep, errbuf)) < 0)
		return rc;
	if (cfg->audit_days > 0 && (rc = cm_db_tx(audit_work, &w, errbuf)) < 0)
		return rc;
	return cm_db_tx(rows_work, &w, errbuf);
}

static void *
retention_main(void *arg)
{
	struct bus_retention *r = arg;
	struct bus_retention_report rep;
	char errbuf[CM_ERRBUF_LEN];
	int64_t last = 0;

	while (!atomic_load(&r->stop)) {
		if (last && cm_now_ms() - last < r->cfg.interval_ms) {
			usleep(100 * 1000);
			continue;
		}
		last = cm_now_ms();
		errbuf[0] = '\0';
		if (bus_retention_run(&r->cfg, &rep, errbuf) < 0)
			cm_log_warn("retention: %s", errbuf);
		else if (rep.stream_entries || rep.dead_letters ||
			 rep.audit_rows || rep.partitions || rep.deliveries)
			cm_log_info("retention: removed %lld stream entries, "
				    "%lld dead letters, %d audit partitions, "
				    "%lld audit rows, %lld deliveries",
				    rep.stream_entries, rep.dead_letters,
				    rep.partitions, rep.audit_rows,
				    rep.deliveries);
	}
	return NULL;
}

struct bus_retention *
bus_retention_start(const struct bus_retention_config *c,
		    char errbuf[CM_ERRBUF_LEN])
{
	struct bus_retention *r = cm_xcalloc(1, sizeof(*r));

	r->cfg = *c;
	if (pthread_create(&r->thread, NULL, retention_main, r) != 0) {
		cm_errf(errbuf, "retention: cannot start its thread");
		free(r);
		return NULL;
	}
	return r;
}

void
bus_retention_stop(struct bus_retention *r)
{
	if (!r)
		return;
	atomic_store(&r->stop, 1);
	pthread_join(r->thread, NULL);
	free(r);
}
