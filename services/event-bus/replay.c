/*
 * replay.c - replay jobs: a tenant's stored events of some types and time
 * range, put on its stream again for one subscriber (field target) and
 * marked as replays (field replay = the job id), page by page.
 *
 * The worker thread takes the oldest open job (FOR UPDATE SKIP LOCKED, so
 * replicas share the work), sends one page of 500 events in occurred_at
 * order after the job's cursor, and moves the cursor in the same
 * transaction. A crash mid-page re-sends that page: subscribers dedupe by
 * event_id (inbox), as for any redelivery.
 */
#include "evbus.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/db.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"

#include "common/banned.h"

#define REPLAY_PAGE 500

struct bus_replayer {
	pthread_t thread;
	atomic_int stop;
};

/* The patterns as a JSON array of LIKE patterns. */
static char *
like_array(const cJSON *types)
{
	cJSON *arr = cJSON_CreateArray();
	const cJSON *it;
	char *like, *text;

	cJSON_ArrayForEach(it, types)
	{
		like = bus_type_like(it->valuestring);
		cJSON_AddItemToArray(arr, cJSON_CreateString(like));
		free(like);
	}
	text = cm_json_print(arr);
	cJSON_Delete(arr);
	return text;
}

struct create {
	const struct bus_replay_req *r;
	char *likes;
	char id[37];
	int64_t total;
};

static int
create_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct create *c = arg;
	const char *p[5] = { c->id, c->r->subscriber, c->likes, c->r->since,
			     c->r->until };
	PGresult *res = NULL;
	int rc;

	rc = cm_db_query(conn,
			 "INSERT INTO event_bus.replays (id, tenant_id, "
			 "subscriber, type_patterns, since, until, total) "
			 "SELECT $1, current_setting('app.tenant_id')::uuid, "
			 "$2, ARRAY(SELECT jsonb_array_elements_text($3)), "
			 "$4, $5, (SELECT count(*) FROM event_bus.events "
			 "WHERE event_type LIKE ANY (ARRAY(SELECT "
			 "jsonb_array_elements_text($3))) "
			 "AND ($4::timestamptz IS NULL OR occurred_at >= $4) "
			 "AND ($5::timestamptz IS NULL OR occurred_at < $5)) "
			 "RETURNING total",
			 5, p, &res, errbuf);
	if (rc == 0)
		cm_parse_i64(PQgetvalue(res, 0, 0), 0, INT64_MAX, &c->total);
	PQclear(res);
	return rc;
}

int
bus_replay_create(const struct bus_replay_req *r, char id_out[37],
		  int64_t *total, char errbuf[CM_ERRBUF_LEN])
{
	struct create c = { r, NULL, "", 0 };
	int rc;

	if (cm_uuid_v4(c.id) < 0) {
		cm_errf(errbuf, "replay: no randomness");
		return CM_EIO;
	}
	c.likes = like_array(r->types);
	rc = cm_db_tx_tenant(r->tenant_id, create_work, &c, errbuf);
	free(c.likes);
	if (rc == 0) {
		cm_strlcpy(id_out, c.id, 37);
		*total = c.total;
	}
	return rc;
}

struct get {
	const char *id;
	cJSON *out;
};

static int
get_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct get *g = arg;
	PGresult *res = NULL;
	const char *text;
	int rc;

	rc = cm_db_query(conn,
			 "SELECT json_build_object('id', id, 'subscriber', "
			 "subscriber, 'status', status, 'total', total, "
			 "'delivered', delivered, 'error', error, "
			 "'created_at', to_char(created_at AT TIME ZONE 'UTC', "
			 "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'updated_at', "
			 "to_char(updated_at AT TIME ZONE 'UTC', "
			 "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))::text "
			 "FROM event_bus.replays WHERE id = $1",
			 1, &g->id, &res, errbuf);
	if (rc == 0 && PQntuples(res) == 0) {
		cm_errf(errbuf, "no such replay");
		rc = CM_ENOENT;
	} else if (rc == 0) {
		text = PQgetvalue(res, 0, 0);
		g->out = cm_json_parse(text, strlen(text), errbuf);
		rc = g->out ? 0 : CM_EIO;
	}
	PQclear(res);
	return rc;
}

int
bus_replay_get(const char *tenant, const char *id, cJSON **out,
	       char errbuf[CM_ERRBUF_LEN])
{
	struct get g = { id, NULL };
	int rc;

	*out = NULL;
	if (!id || !cm_is_uuid(id)) {
		cm_errf(errbuf, "no such replay");
		return CM_ENOENT;
	}
	rc = cm_db_tx_tenant(tenant, get_work, &g, errbuf);
	if (rc < 0) {
		cJSON_Delete(g.out);
		return rc;
	}
	*out = g.out;
	return 0;
}

/* Take the oldest open job, become its tenant; job row in *job. */
static int
take_job(PGconn *conn, PGresult **job, char errbuf[CM_ERRBUF_LEN])
{
	const char *t;
	int rc;

	rc = cm_db_query(conn,
			 "SELECT set_config('app.bus_worker', 'on', true)", 0,
			 NULL, NULL, errbuf);
	if (rc == 0)
		rc = cm_db_query(conn,
				 "SELECT id, tenant_id, subscriber "
				 "FROM event_bus.replays WHERE status IN "
				 "('pending', 'running') ORDER BY created_at "
				 "LIMIT 1 FOR UPDATE SKIP LOCKED",
				 0, NULL, job, errbuf);
	if (rc < 0 || PQntuples(*job) == 0)
		return rc;
	t = PQgetvalue(*job, 0, 1);
	return cm_db_query(conn,
			   "SELECT set_config('app.tenant_id', $1, true), "
			   "set_config('app.bus_worker', '', true)",
			   1, &t, NULL, errbuf);
}

/* Send rows; the index of the last sent, or a negative code. */
static int
send_page(PGresult *job, PGresult *rows, char errbuf[CM_ERRBUF_LEN])
{
	int i, rc;

	for (i = 0; i < PQntuples(rows); i++) {
		rc = cm_bus_replay_append(
			PQgetvalue(job, 0, 1), PQgetvalue(job, 0, 2),
			PQgetvalue(rows, i, 1), PQgetvalue(rows, i, 2),
			PQgetvalue(job, 0, 0), errbuf);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int
advance(PGconn *conn, PGresult *job, PGresult *rows, char errbuf[CM_ERRBUF_LEN])
{
	int n = PQntuples(rows);
	char count[16];
	const char *p[5];

	snprintf(count, sizeof(count), "%d", n);
	p[0] = PQgetvalue(job, 0, 0);
	p[1] = count;
	p[2] = n ? PQgetvalue(rows, n - 1, 3) : NULL;
	p[3] = n ? PQgetvalue(rows, n - 1, 0) : NULL;
	p[4] = n < REPLAY_PAGE ? "completed" : "running";
	return cm_db_query(conn,
			   "UPDATE event_bus.replays SET status = $5, "
			   "delivered = delivered + $2::bigint, "
			   "cursor_at = coalesce($3::timestamptz, cursor_at), "
			   "cursor_id = coalesce($4::uuid, cursor_id), "
			   "updated_at = now() WHERE id = $1",
			   5, p, NULL, errbuf);
}

static int
step_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	int *sent = arg;
	PGresult *job = NULL, *rows = NULL;
	const char *id;
	int rc;

	if ((rc = take_job(conn, &job, errbuf)) < 0 || PQntuples(job) == 0)
		goto out;
	id = PQgetvalue(job, 0, 0);
	rc = cm_db_query(
		conn,
		"SELECT e.event_id, e.event_type, e.envelope::text, "
		"e.occurred_at FROM event_bus.events e, event_bus.replays r "
		"WHERE r.id = $1 AND e.event_type LIKE ANY (r.type_patterns) "
		"AND (r.since IS NULL OR e.occurred_at >= r.since) "
		"AND (r.until IS NULL OR e.occurred_at < r.until) "
		"AND (r.cursor_at IS NULL OR (e.occurred_at, e.event_id) > "
		"(r.cursor_at, r.cursor_id)) "
		"ORDER BY e.occurred_at, e.event_id LIMIT 500",
		1, &id, &rows, errbuf);
	if (rc < 0 || (rc = send_page(job, rows, errbuf)) < 0 ||
	    (rc = advance(conn, job, rows, errbuf)) < 0)
		goto out;
	*sent = PQntuples(rows) + 1; /* a job was worked on */
out:
	PQclear(rows);
	PQclear(job);
	return rc;
}

int
bus_replay_step(int *worked, char errbuf[CM_ERRBUF_LEN])
{
	*worked = 0;
	return cm_db_tx(step_work, worked, errbuf);
}

static void *
replayer_main(void *arg)
{
	struct bus_replayer *w = arg;
	char errbuf[CM_ERRBUF_LEN];
	int worked, i;

	while (!atomic_load(&w->stop)) {
		errbuf[0] = '\0';
		if (bus_replay_step(&worked, errbuf) < 0)
			cm_log_err("replay: %s", errbuf);
		else if (worked)
			continue;
		for (i = 0; i < 5 && !atomic_load(&w->stop); i++)
			usleep(50 * 1000);
	}
	return NULL;
}

struct bus_replayer *
bus_replayer_start(char errbuf[CM_ERRBUF_LEN])
{
	struct bus_replayer *w = cm_xcalloc(1, sizeof(*w));

	if (pthread_create(&w->thread, NULL, replayer_main, w) != 0) {
		cm_errf(errbuf, "replay: cannot start its thread");
		free(w);
		return NULL;
	}
	return w;
}

void
bus_replayer_stop(struct bus_replayer *w)
{
	if (!w)
		return;
	atomic_store(&w->stop, 1);
	pthread_join(w->thread, NULL);
	free(w);
}
