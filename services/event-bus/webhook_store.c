/*
 * webhook_store.c - event_bus.webhooks, webhook_deliveries and
 * idempotency: the SQL of webhooks. Rows are rendered by PostgreSQL
 * (json_build_object) and parsed once here.
 */
#include "evbus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "common/db.h"
#include "common/json.h"
#include "common/mem.h"

#include "common/banned.h"

#define NIL_UUID "00000000-0000-0000-0000-000000000000"

/* The patterns as a JSON array of LIKE patterns (text, malloc'd). */
static char *
likes_of(const cJSON *types)
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

/* The first column of the first row, parsed; CM_ENOENT for no row. */
static int
first_json(PGresult *res, cJSON **out, char errbuf[CM_ERRBUF_LEN])
{
	const char *text;

	if (PQntuples(res) == 0) {
		cm_errf(errbuf, "no such row");
		return CM_ENOENT;
	}
	text = PQgetvalue(res, 0, 0);
	*out = cm_json_parse(text, strlen(text), errbuf);
	return *out ? 0 : CM_EIO;
}

struct create {
	const struct bus_webhook_input *in;
	const struct bus_idem *im;
	int max;
	cJSON *out;
	bool replayed;
};

/* A stored answer for the key: 0 (replayed), CM_ENOENT, CM_EEXIST. */
static int
idem_lookup(PGconn *conn, struct create *c, char errbuf[CM_ERRBUF_LEN])
{
	const char *p[1] = { c->im->key };
	PGresult *res = NULL;
	int rc;

	rc = cm_db_query(
		conn,
		"SELECT request_hash, response FROM event_bus.idempotency "
		"WHERE key = $1 AND created_at > now() - interval '24 hours'",
		1, p, &res, errbuf);
	if (rc == 0 && PQntuples(res) == 0)
		rc = CM_ENOENT;
	else if (rc == 0 && strcmp(PQgetvalue(res, 0, 0), c->im->hash) != 0)
		rc = CM_EEXIST;
	else if (rc == 0) {
		c->out = cm_json_parse(PQgetvalue(res, 0, 1),
				       (size_t)PQgetlength(res, 0, 1), errbuf);
		rc = c->out ? 0 : CM_EIO;
		c->replayed = true;
	}
	if (rc == CM_EEXIST)
		cm_errf(errbuf, "idempotency key reused with another body");
	PQclear(res);
	return rc;
}

static int
idem_store(PGconn *conn, const struct create *c, char errbuf[CM_ERRBUF_LEN])
{
	char *text = cm_json_print(c->out);
	const char *p[3] = { c->im->key, c->im->hash, text };
	int rc;

	/* an expired record of the same key makes room for this one */
	rc = cm_db_query(conn,
			 "DELETE FROM event_bus.idempotency WHERE key = $1 AND "
			 "created_at <= now() - interval '24 hours'",
			 1, p, NULL, errbuf);
	if (rc == 0)
		rc = cm_db_query(
			conn,
			"INSERT INTO event_bus.idempotency (tenant_id, "
			"key, request_hash, status, response) VALUES "
			"(current_setting('app.tenant_id')::uuid, $1, "
			"$2, 201, $3)",
			3, p, NULL, errbuf);
	free(text);
	return rc;
}

static int
insert_webhook(PGconn *conn, struct create *c, const char *secret,
	       char errbuf[CM_ERRBUF_LEN])
{
	char id[37], max[16], active[8],
		*types = cm_json_print(c->in->event_types);
	char *likes = likes_of(c->in->event_types);
	const char *p[8];
	PGresult *res = NULL;
	int rc;

	if ((rc = cm_uuid_v4(id)) < 0) {
		cm_errf(errbuf, "no randomness");
		goto out;
	}
	snprintf(max, sizeof(max), "%d", c->max);
	snprintf(active, sizeof(active), "%s", c->in->active == 0 ? "f" : "t");
	p[0] = id;
	p[1] = c->in->url;
	p[2] = types;
	p[3] = likes;
	p[4] = c->in->description ? c->in->description : "";
	p[5] = secret;
	p[6] = active;
	p[7] = max;
	/* one create at a time per tenant, so the count below holds */
	rc = cm_db_query(conn,
			 "SELECT pg_advisory_xact_lock(hashtextextended("
			 "current_setting('app.tenant_id'), 4242)), "
			 "(SELECT count(*) FROM event_bus.webhooks) < $1::int",
			 1, p + 7, &res, errbuf);
	if (rc == 0 && PQgetvalue(res, 0, 1)[0] != 't') {
		cm_errf(errbuf, "a tenant has at most %d webhooks", c->max);
		rc = CM_E2BIG;
	}
	PQclear(res);
	res = NULL;
	if (rc < 0)
		goto out;
	rc = cm_db_query(
		conn,
		"INSERT INTO event_bus.webhooks AS w (id, tenant_id, "
		"url, event_types, type_likes, description, secret, "
		"active) VALUES ($1, current_setting('app.tenant_id')"
		"::uuid, $2, ARRAY(SELECT jsonb_array_elements_text("
		"$3)), ARRAY(SELECT jsonb_array_elements_text($4)), "
		"$5, $6, $7) RETURNING event_bus.webhook_json(w)::text",
		7, p, &res, errbuf);
	if (rc == 0)
		rc = first_json(res, &c->out, errbuf);
out:
	PQclear(res);
	free(types);
	free(likes);
	return rc;
}

static int
create_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct create *c = arg;
	char secret[BUS_WH_SECRET_LEN] = "";
	int rc;

	cJSON_Delete(c->out);
	c->out = NULL;
	c->replayed = false;
	if (c->im->key && (rc = idem_lookup(conn, c, errbuf)) != CM_ENOENT)
		return rc;
	if (bus_webhook_secret_new(secret) < 0) {
		cm_errf(errbuf, "no randomness");
		return CM_EIO;
	}
	rc = insert_webhook(conn, c, secret, errbuf);
	if (rc == 0)
		cJSON_AddStringToObject(c->out, "secret", secret);
	if (rc == 0 && c->im->key)
		rc = idem_store(conn, c, errbuf);
	cm_memzero(secret, sizeof(secret));
	return rc;
}

int
bus_wh_create(const char *tenant, const struct bus_webhook_input *in,
	      const struct bus_idem *im, int max, cJSON **out, bool *replayed,
	      char errbuf[CM_ERRBUF_LEN])
{
	struct create c = { in, im, max, NULL, false };
	int rc;

	*out = NULL;
	rc = cm_db_tx_tenant(tenant, create_work, &c, errbuf);
	/* two creates racing on one key: the loser answers as a repeat */
	if (rc == CM_EEXIST && im->key && !c.replayed)
		rc = cm_db_tx_tenant(tenant, create_work, &c, errbuf);
	if (rc < 0) {
		cJSON_Delete(c.out);
		return rc;
	}
	*out = c.out;
	*replayed = c.replayed;
	return 0;
}

struct one {
	const char *sql;
	int n;
	const char *p[8];
	cJSON *out;
};

static int
one_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct one *o = arg;
	PGresult *res = NULL;
	int rc;

	rc = cm_db_query(conn, o->sql, o->n, o->p, &res, errbuf);
	if (rc == 0)
		rc = first_json(res, &o->out, errbuf);
	PQclear(res);
	return rc;
}

/* Run o (one row of JSON) in the tenant's transaction. */
static int
run_one(const char *tenant, struct one *o, cJSON **out,
	char errbuf[CM_ERRBUF_LEN])
{
	int rc = cm_db_tx_tenant(tenant, one_work, o, errbuf);

	if (rc < 0) {
		cJSON_Delete(o->out);
		o->out = NULL;
	}
	if (out)
		*out = o->out;
	else
		cJSON_Delete(o->out);
	return rc;
}

int
bus_wh_get(const char *tenant, const char *id, cJSON **out,
	   char errbuf[CM_ERRBUF_LEN])
{
	struct one o = { "SELECT event_bus.webhook_json(w)::text "
			 "FROM event_bus.webhooks w WHERE w.id = $1",
			 1,
			 { id },
			 NULL };

	*out = NULL;
	if (!id || !cm_is_uuid(id)) {
		cm_errf(errbuf, "no such webhook");
		return CM_ENOENT;
	}
	return run_one(tenant, &o, out, errbuf);
}

/* A cursor's two halves ("<us>.<uuid>", checked) into us[24] and *uuid. */
static void
split_cursor(const char *cursor, char us[24], const char **uuid)
{
	const char *dot = strchr(cursor, '.');

	cm_strlcpy(us, cursor, (size_t)(dot - cursor) + 1);
	*uuid = dot + 1;
}

/* One page: SQL selecting (json text, created_at us, id) newest first;
   $1 is limit + 1, $2 and $3 the cursor's halves, then n extra params. */
struct page {
	const char *sql;
	const char *p[6];
	int n;
	int limit;
	cJSON *out;
};

static int
page_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct page *pg = arg;
	cJSON *items = cJSON_CreateArray(), *it;
	char next[80] = "";
	PGresult *res = NULL;
	const char *text;
	int rc, i, n;

	rc = cm_db_query(conn, pg->sql, pg->n, pg->p, &res, errbuf);
	for (i = 0, n = rc == 0 ? PQntuples(res) : 0; i < n && i < pg->limit;
	     i++) {
		text = PQgetvalue(res, i, 0);
		if ((it = cm_json_parse(text, strlen(text), errbuf)))
			cJSON_AddItemToArray(items, it);
	}
	if (rc == 0 && n > pg->limit)
		snprintf(next, sizeof(next), "%s.%s",
			 PQgetvalue(res, pg->limit - 1, 1),
			 PQgetvalue(res, pg->limit - 1, 2));
	PQclear(res);
	if (rc < 0) {
		cJSON_Delete(items);
		return rc;
	}
	pg->out = cm_json_list(items, next);
	return 0;
}

static int
list_page(const char *tenant, const char *sql, const char *const *extra,
	  int nextra, const char *cursor, int limit, cJSON **out,
	  char errbuf[CM_ERRBUF_LEN])
{
	struct page pg = { sql, { 0 }, 3 + nextra, limit, NULL };
	int i;
	char us[24] = "", lim[16];
	int rc;

	*out = NULL;
	if (cursor && !bus_cursor_ok(cursor)) {
		cm_errf(errbuf, "bad cursor");
		return CM_EINVAL;
	}
	snprintf(lim, sizeof(lim), "%d", limit + 1);
	pg.p[0] = lim;
	if (cursor)
		split_cursor(cursor, us, &pg.p[2]);
	pg.p[1] = cursor ? us : NULL;
	for (i = 0; i < nextra && i < 3; i++)
		pg.p[3 + i] = extra[i];
	rc = cm_db_tx_tenant(tenant, page_work, &pg, errbuf);
	if (rc == 0)
		*out = pg.out;
	return rc;
}

int
bus_wh_list(const char *tenant, const char *cursor, int limit, cJSON **out,
	    char errbuf[CM_ERRBUF_LEN])
{
	return list_page(tenant,
			 "SELECT event_bus.webhook_json(w)::text, "
			 "event_bus.epoch_us(w.created_at), w.id "
			 "FROM event_bus.webhooks w WHERE ($2::bigint IS NULL "
			 "OR (w.created_at, w.id) < ('epoch'::timestamptz + "
			 "$2::bigint * interval '1 microsecond', $3::uuid)) "
			 "ORDER BY w.created_at DESC, w.id DESC LIMIT $1::int",
			 NULL, 0, cursor, limit, out, errbuf);
}

int
bus_wh_deliveries(const char *tenant, const char *id, const char *status,
		  const char *cursor, int limit, cJSON **out,
		  char errbuf[CM_ERRBUF_LEN])
{
	const char *p[2] = { id, status };
	cJSON *hook = NULL;
	int rc;

	*out = NULL;
	/* the subscription first: another tenant's id is a 404, not [] */
	if ((rc = bus_wh_get(tenant, id, &hook, errbuf)) < 0)
		return rc;
	cJSON_Delete(hook);
	return list_page(tenant,
			 "SELECT event_bus.delivery_json(d)::text, "
			 "event_bus.epoch_us(d.created_at), d.id "
			 "FROM event_bus.webhook_deliveries d WHERE "
			 "d.webhook_id = $4 AND ($5::text IS NULL OR d.status "
			 "= $5) AND ($2::bigint IS NULL OR (d.created_at, "
			 "d.id) < ('epoch'::timestamptz + $2::bigint * "
			 "interval '1 microsecond', $3::uuid)) ORDER BY "
			 "d.created_at DESC, d.id DESC LIMIT $1::int",
			 p, 2, cursor, limit, out, errbuf);
}

/* o, a write of webhook id guarded by its version: CM_ENOENT when there
   is no such webhook, CM_ESTALE when there is but o matched no row. */
static int
run_versioned(const char *tenant, const char *id, struct one *o, cJSON **out,
	      char errbuf[CM_ERRBUF_LEN])
{
	cJSON *cur = NULL;
	int rc = bus_wh_get(tenant, id, &cur, errbuf);

	cJSON_Delete(cur);
	if (rc < 0)
		return rc;
	rc = run_one(tenant, o, out, errbuf);
	if (rc == CM_ENOENT) { /* it exists: the version moved on */
		cm_errf(errbuf, "the webhook changed since that ETag");
		rc = CM_ESTALE;
	}
	return rc;
}

int
bus_wh_update(const char *tenant, const char *id, int64_t version,
	      const struct bus_webhook_input *in, cJSON **out,
	      char errbuf[CM_ERRBUF_LEN])
{
	char ver[24], active[4];
	char *types = in->event_types ? cm_json_print(in->event_types) : NULL;
	char *likes = in->event_types ? likes_of(in->event_types) : NULL;
	struct one o = {
		"UPDATE event_bus.webhooks w SET url = coalesce($3, w.url), "
		"event_types = CASE WHEN $4::jsonb IS NULL THEN w.event_types "
		"ELSE ARRAY(SELECT jsonb_array_elements_text($4)) END, "
		"type_likes = CASE WHEN $5::jsonb IS NULL THEN w.type_likes "
		"ELSE ARRAY(SELECT jsonb_array_elements_text($5)) END, "
		"description = coalesce($6, w.description), "
		"active = coalesce($7::boolean, "
		"w.active), version = w.version + 1, updated_at = "
		"clock_timestamp() WHERE w.id = $1 AND w.version = $2::bigint "
		"RETURNING event_bus.webhook_json(w)::text",
		7,
		{ id, ver, in->url, types, likes, in->description,
		  in->active < 0 ? NULL : active },
		NULL
	};
	int rc;

	*out = NULL;
	snprintf(ver, sizeof(ver), "%lld", (long long)version);
	snprintf(active, sizeof(active), "%s", in->active ? "t" : "f");
	rc = run_versioned(tenant, id, &o, out, errbuf);
	free(types);
	free(likes);
	return rc;
}

int
bus_wh_rotate(const char *tenant, const char *id, int64_t version,
	      int64_t grace_s, cJSON **out, char errbuf[CM_ERRBUF_LEN])
{
	char ver[24], grace[24], secret[BUS_WH_SECRET_LEN] = "";
	struct one o = {
		"UPDATE event_bus.webhooks w SET previous_secret = CASE WHEN "
		"$4::bigint > 0 THEN w.secret END, previous_secret_until = "
		"CASE WHEN $4::bigint > 0 THEN clock_timestamp() + "
		"make_interval(secs => $4::bigint) END, secret = $3, "
		"version = w.version + 1, updated_at = clock_timestamp() "
		"WHERE w.id = $1 AND ($2::bigint = 0 OR w.version = "
		"$2::bigint) RETURNING event_bus.webhook_json(w)::text",
		4,
		{ id, ver, secret, grace },
		NULL
	};
	int rc;

	*out = NULL;
	if (bus_webhook_secret_new(secret) < 0) {
		cm_errf(errbuf, "no randomness for a secret");
		return CM_EIO;
	}
	snprintf(ver, sizeof(ver), "%lld", (long long)version);
	snprintf(grace, sizeof(grace), "%lld", (long long)grace_s);
	rc = run_versioned(tenant, id, &o, out, errbuf);
	if (rc == 0)
		cJSON_AddStringToObject(*out, "secret", secret);
	cm_memzero(secret, sizeof(secret));
	return rc;
}

int
bus_wh_delete(const char *tenant, const char *id, int64_t version,
	      char errbuf[CM_ERRBUF_LEN])
{
	char ver[24];
	struct one o = { "DELETE FROM event_bus.webhooks w WHERE w.id = $1 "
			 "AND ($2::bigint = 0 OR w.version = $2::bigint) "
			 "RETURNING '{}'",
			 2,
			 { id, ver },
			 NULL };

	snprintf(ver, sizeof(ver), "%lld", (long long)version);
	return run_versioned(tenant, id, &o, NULL, errbuf);
}

int
bus_wh_delivery_retry(const char *tenant, const char *id,
		      const char *delivery_id, char errbuf[CM_ERRBUF_LEN])
{
	struct one o = { "UPDATE event_bus.webhook_deliveries d SET status = "
			 "'pending', attempts = 0, next_attempt_at = now(), "
			 "finished_at = NULL WHERE d.id = $2 AND d.webhook_id "
			 "= $1 AND d.status = 'dead' RETURNING '{}'",
			 2,
			 { id, delivery_id },
			 NULL };
	struct one exists = { "SELECT '{}' FROM event_bus.webhook_deliveries "
			      "d WHERE d.id = $2 AND d.webhook_id = $1",
			      2,
			      { id, delivery_id },
			      NULL };
	int rc;

	if (!id || !cm_is_uuid(id) || !delivery_id ||
	    !cm_is_uuid(delivery_id)) {
		cm_errf(errbuf, "no such delivery");
		return CM_ENOENT;
	}
	rc = run_one(tenant, &o, NULL, errbuf);
	if (rc == CM_ENOENT && run_one(tenant, &exists, NULL, errbuf) == 0) {
		cm_errf(errbuf, "only a dead delivery can be retried");
		rc = CM_EEXIST;
	}
	return rc;
}

/* --- the workers' side --------------------------------------------------- */

int
bus_wh_fanout(PGconn *conn, const struct cm_bus_event *ev, int *n,
	      char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *eid =
		cJSON_GetObjectItemCaseSensitive(ev->env, "event_id");
	const char *p[3] = { cJSON_IsString(eid) ? eid->valuestring : NULL,
			     ev->type, ev->json };
	PGresult *res = NULL;
	int rc;

	*n = 0;
	if (!p[0] || !cm_is_uuid(p[0])) {
		cm_errf(errbuf, "event without a uuid event_id");
		return CM_EINVAL;
	}
	rc = cm_db_query(
		conn,
		"INSERT INTO event_bus.webhook_deliveries (id, tenant_id, "
		"webhook_id, event_id, event_type, payload, next_attempt_at) "
		"SELECT gen_random_uuid(), w.tenant_id, w.id, $1, $2, $3, "
		"now() "
		"FROM event_bus.webhooks w WHERE w.active AND "
		"$2 LIKE ANY (w.type_likes) "
		"ON CONFLICT (webhook_id, event_id) DO NOTHING",
		3, p, &res, errbuf);
	if (rc == 0)
		*n = (int)strtol(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return rc;
}

void
bus_wh_job_release(struct bus_wh_job *j)
{
	if (!j)
		return;
	free(j->url);
	if (j->secret)
		cm_memzero(j->secret, strlen(j->secret));
	free(j->secret);
	if (j->previous_secret)
		cm_memzero(j->previous_secret, strlen(j->previous_secret));
	free(j->previous_secret);
	free(j->payload);
	memset(j, 0, sizeof(*j));
}

struct claim {
	int lease_ms;
	const char *after; /* the round-robin's last tenant ("" : none) */
	struct bus_wh_job *job;
};

/* The claim: UPDATE ... d.id = (the chosen row) RETURNING the job; cond
   narrows the choice. */
#define CLAIM_SQL(cond)                                                       \
	"UPDATE event_bus.webhook_deliveries d SET attempts = d.attempts + "  \
	"1, next_attempt_at = clock_timestamp() + $1::int * interval '1 "     \
	"millisecond' FROM event_bus.webhooks w WHERE w.id = d.webhook_id "   \
	"AND d.id = (SELECT d2.id FROM event_bus.webhook_deliveries d2 "      \
	"JOIN event_bus.webhooks w2 ON w2.id = d2.webhook_id WHERE "          \
	"d2.status = 'pending' AND d2.next_attempt_at <= clock_timestamp() "  \
	"AND w2.active " cond " ORDER BY d2.next_attempt_at LIMIT 1 FOR "     \
	"UPDATE OF d2 SKIP LOCKED) RETURNING d.id, d.tenant_id, "             \
	"d.webhook_id, d.attempts, w.url, w.secret, d.payload, CASE WHEN "    \
	"w.previous_secret_until > clock_timestamp() THEN w.previous_secret " \
	"END"

/* Round-robin over tenants: the first tenant after $2 (in uuid order,
   wrapping) with a due delivery, through webhook_deliveries_rr_idx. */
#define CLAIM_NEXT_TENANT                                                    \
	"AND d2.tenant_id = coalesce((SELECT d3.tenant_id FROM "             \
	"event_bus.webhook_deliveries d3 WHERE d3.status = 'pending' AND "   \
	"d3.next_attempt_at <= clock_timestamp() AND d3.tenant_id > "        \
	"$2::uuid ORDER BY d3.tenant_id LIMIT 1), (SELECT d3.tenant_id "     \
	"FROM event_bus.webhook_deliveries d3 WHERE d3.status = 'pending' "  \
	"AND d3.next_attempt_at <= clock_timestamp() ORDER BY d3.tenant_id " \
	"LIMIT 1))"

static int
claim_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	static const char fair[] = CLAIM_SQL(CLAIM_NEXT_TENANT);
	static const char any[] = CLAIM_SQL("");
	struct claim *c = arg;
	char lease[16];
	const char *p[2] = { lease, c->after[0] ? c->after : NIL_UUID };
	PGresult *res = NULL;
	int64_t attempt = 0;
	int rc;

	snprintf(lease, sizeof(lease), "%d", c->lease_ms);
	rc = cm_db_query(conn,
			 "SELECT set_config('app.bus_worker', 'on', true)", 0,
			 NULL, NULL, errbuf);
	/* the next tenant's most overdue delivery; when that tenant has
	   none to give (a paused subscription, rows locked by another
	   worker), the most overdue of any tenant, so nothing stalls */
	if (rc == 0)
		rc = cm_db_query(conn, fair, 2, p, &res, errbuf);
	if (rc == 0 && PQntuples(res) == 0) {
		PQclear(res);
		res = NULL;
		rc = cm_db_query(conn, any, 1, p, &res, errbuf);
	}
	if (rc == 0 && PQntuples(res) == 0) {
		rc = CM_ENOENT;
	} else if (rc == 0) {
		cm_strlcpy(c->job->id, PQgetvalue(res, 0, 0), 37);
		cm_strlcpy(c->job->tenant_id, PQgetvalue(res, 0, 1), 37);
		cm_strlcpy(c->job->webhook_id, PQgetvalue(res, 0, 2), 37);
		cm_parse_i64(PQgetvalue(res, 0, 3), 0, 1000000, &attempt);
		c->job->attempt = (int)attempt;
		c->job->url = cm_xstrdup(PQgetvalue(res, 0, 4));
		c->job->secret = cm_xstrdup(PQgetvalue(res, 0, 5));
		c->job->payload = cm_xstrdup(PQgetvalue(res, 0, 6));
		if (!PQgetisnull(res, 0, 7))
			c->job->previous_secret =
				cm_xstrdup(PQgetvalue(res, 0, 7));
	}
	PQclear(res);
	return rc;
}

int
bus_wh_claim(int lease_ms, const char *after, struct bus_wh_job *job,
	     char errbuf[CM_ERRBUF_LEN])
{
	struct claim c = { lease_ms, after && cm_is_uuid(after) ? after : "",
			   job };
	int rc;

	memset(job, 0, sizeof(*job));
	rc = cm_db_tx(claim_work, &c, errbuf);
	if (rc < 0)
		bus_wh_job_release(job);
	return rc;
}

struct record {
	const struct bus_wh_job *job;
	const struct bus_wh_result *r;
	const struct bus_webhook_schedule *s;
	bool dead;
};

/* Jitter: 0..20% of the delay, so retries of many deliveries spread out. */
static int64_t
jittered(int64_t ms)
{
	uint32_t x = 0;

	if (ms <= 0 || RAND_bytes((unsigned char *)&x, sizeof(x)) != 1)
		return ms;
	return ms + (int64_t)((double)ms * 0.2 * ((double)x / 4294967296.0));
}

static int
record_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct record *rec = arg;
	const struct bus_wh_result *r = rec->r;
	char status[16], delay[24], dur[24], attempt[16];
	const char *p[8];
	const char *outcome;
	int64_t wait = 0;
	int err;

	rec->dead = !r->ok &&
		    (r->permanent || rec->job->attempt >= rec->s->max_attempts);
	outcome = r->ok ? "succeeded" : rec->dead ? "dead" : "pending";
	if (!r->ok && !rec->dead)
		wait = jittered(
			bus_webhook_backoff_ms(rec->s, rec->job->attempt));
	snprintf(status, sizeof(status), "%ld", r->status);
	snprintf(delay, sizeof(delay), "%lld", (long long)wait);
	snprintf(dur, sizeof(dur), "%lld", (long long)r->duration_ms);
	snprintf(attempt, sizeof(attempt), "%d", rec->job->attempt);
	p[0] = rec->job->id;
	p[1] = outcome;
	p[2] = r->status ? status : NULL;
	p[3] = r->error;
	p[4] = delay;
	p[5] = dur;
	p[6] = attempt;
	p[7] = rec->job->webhook_id;
	err = cm_db_query(
		conn,
		"UPDATE event_bus.webhook_deliveries d SET status = $2, "
		"last_status = $3::int, last_error = $4, next_attempt_at = "
		"CASE WHEN $2 = 'pending' THEN clock_timestamp() + "
		"$5::bigint * interval '1 millisecond' END, finished_at = "
		"CASE WHEN $2 <> 'pending' THEN clock_timestamp() END, "
		"attempt_log = d.attempt_log || jsonb_build_object('attempt', "
		"$7::int, 'at', event_bus.rfc3339(clock_timestamp()), "
		"'status', $3::int, 'error', $4::text, 'duration_ms', "
		"$6::bigint) WHERE d.id = $1",
		7, p, NULL, errbuf);
	if (err == 0 && !rec->dead && r->ok)
		err = cm_db_query(conn,
				  "UPDATE event_bus.webhooks SET failing = "
				  "false, failing_since = NULL, version = "
				  "version + 1 WHERE id = $1 AND failing",
				  1, p + 7, NULL, errbuf);
	if (err == 0 && rec->dead)
		err = cm_db_query(conn,
				  "UPDATE event_bus.webhooks SET failing = "
				  "true, failing_since = clock_timestamp(), "
				  "version = version + 1 WHERE id = $1 AND "
				  "NOT failing",
				  1, p + 7, NULL, errbuf);
	return err;
}

int
bus_wh_record(const struct bus_wh_job *job, const struct bus_wh_result *r,
	      const struct bus_webhook_schedule *s, bool *dead,
	      char errbuf[CM_ERRBUF_LEN])
{
	struct record rec = { job, r, s, false };
	int rc = cm_db_tx_tenant(job->tenant_id, record_work, &rec, errbuf);

	if (dead)
		*dead = rc == 0 && rec.dead;
	return rc;
}
