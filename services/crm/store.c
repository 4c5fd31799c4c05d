/*
 * store.c - the generic SQL of every entity, in the tenant's transaction.
 *
 * Rows are found by id among the tenant's rows (row-level security adds
 * the tenant; soft-deleted rows are invisible), so another tenant's id is
 * CM_ENOENT exactly like a missing one. A write takes the row FOR UPDATE,
 * checks If-Match, writes, adds its events to the outbox and, for leads,
 * recomputes the score from the merged row in the same statement. Table
 * and column names come from the entity tables, never from input.
 */
#include "crm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/bus.h"
#include "common/db.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"

#include "common/banned.h"

#define SQL_CAP 16384
#define TENANT_SQL "current_setting('app.tenant_id')::uuid"
#define CRM_IDEM "crm.idempotency_keys"

int
crm_emit(PGconn *conn, const char *tenant, const char *type,
	 const char *aggregate_type, const char *aggregate_id, cJSON *data,
	 char errbuf[CM_ERRBUF_LEN])
{
	cJSON *env = cm_bus_envelope_new(type, "crm", aggregate_type,
					 aggregate_id, data);
	int rc;

	if (!env) {
		cm_errf(errbuf, "event %s: no randomness", type);
		return CM_EIO;
	}
	rc = cm_bus_outbox_add(conn, CRM_OUTBOX, tenant, env, errbuf);
	cJSON_Delete(env);
	return rc;
}

bool
crm_fk_field(const char *errbuf, char out[64])
{
	const char *p = strstr(errbuf, "\"fk_");
	size_t n;

	if (!p || !strstr(errbuf, "SQLSTATE 23503"))
		return false;
	p += 4;
	n = strspn(p, "abcdefghijklmnopqrstuvwxyz_");
	if (n == 0 || n >= 64)
		return false;
	cm_strlcpy(out, p, n + 1);
	return true;
}

const char *
crm_col(const PGresult *res, const char *name)
{
	int c = PQfnumber(res, name);

	if (c < 0 || PQgetisnull(res, 0, c))
		return NULL;
	return PQgetvalue(res, 0, c);
}

int
crm_load_rules(PGconn *conn, struct crm_score_rules *r,
	       char errbuf[CM_ERRBUF_LEN])
{
	PGresult *res = NULL;
	const char *text;
	cJSON *json;
	int rc;

	crm_score_rules_default(r);
	rc = cm_db_query(conn, "SELECT rules::text FROM crm.scoring_rules", 0,
			 NULL, &res, errbuf);
	if (rc == 0 && PQntuples(res) == 1) {
		text = PQgetvalue(res, 0, 0);
		json = cm_json_parse(text, strlen(text), errbuf);
		if (!json || crm_score_rules_parse(json, r, errbuf) < 0)
			crm_score_rules_default(r); /* checked when stored */
		cJSON_Delete(json);
	}
	PQclear(res);
	return rc;
}

int
crm_lead_prelude(PGconn *conn, const char *tenant, int n,
		 struct crm_score_rules *rules, cJSON **defs,
		 char errbuf[CM_ERRBUF_LEN])
{
	PGresult *res = NULL;
	const char *text;
	int64_t max = -1;
	cJSON *json;
	int rc;

	crm_score_rules_default(rules);
	rc = cm_db_query(conn,
			 "SELECT (SELECT CASE WHEN jsonb_typeof(limits->"
			 "'max_leads') = 'number' THEN (limits->>'max_leads')"
			 "::numeric::bigint END FROM brain.tenants "
			 "WHERE id = $1), "
			 "(SELECT rules::text FROM crm.scoring_rules), "
			 "(SELECT json_agg(json_build_object('key', key, "
			 "'type', type, 'options', options, 'required', "
			 "required))::text FROM crm.custom_field_defs "
			 "WHERE entity = 'lead')",
			 1, &tenant, &res, errbuf);
	if (rc < 0)
		goto out;
	text = PQgetisnull(res, 0, 2) ? "[]" : PQgetvalue(res, 0, 2);
	*defs = cm_json_parse(text, strlen(text), errbuf);
	if (!*defs)
		*defs = cJSON_CreateArray();
	if (!PQgetisnull(res, 0, 0))
		cm_parse_i64(PQgetvalue(res, 0, 0), INT64_MIN, INT64_MAX, &max);
	if (!PQgetisnull(res, 0, 1)) {
		text = PQgetvalue(res, 0, 1);
		json = cm_json_parse(text, strlen(text), errbuf);
		if (!json || crm_score_rules_parse(json, rules, errbuf) < 0)
			crm_score_rules_default(rules);
		cJSON_Delete(json);
	}
	if (max >= 0)
		rc = crm_check_limit(conn, tenant, n, errbuf);
out:
	PQclear(res);
	return rc;
}

int
crm_check_limit(PGconn *conn, const char *tenant, int n,
		char errbuf[CM_ERRBUF_LEN])
{
	const char *p[2] = { tenant, tenant };
	PGresult *res = NULL;
	int64_t max = -1, have = 0;
	int rc;

	rc = cm_db_query(conn,
			 "SELECT pg_advisory_xact_lock(hashtextextended("
			 "'crm.leads:' || $1::text, 0)), "
			 "(SELECT CASE WHEN jsonb_typeof(limits->'max_leads') "
			 "= 'number' THEN (limits->>'max_leads')::numeric"
			 "::bigint END FROM brain.tenants WHERE id = $2::uuid)",
			 2, p, &res, errbuf);
	if (rc == 0 && !PQgetisnull(res, 0, 1))
		cm_parse_i64(PQgetvalue(res, 0, 1), INT64_MIN, INT64_MAX, &max);
	PQclear(res);
	res = NULL;
	if (rc < 0 || max < 0)
		return rc;
	rc = cm_db_query(conn,
			 "SELECT count(*) FROM crm.leads "
			 "WHERE deleted_at IS NULL",
			 0, NULL, &res, errbuf);
	if (rc == 0)
		cm_parse_i64(PQgetvalue(res, 0, 0), 0, INT64_MAX, &have);
	PQclear(res);
	if (rc == 0 && have + n > max) {
		cm_errf(errbuf, "the plan limit max_leads (%lld) is reached",
			(long long)max);
		rc = CM_EACCES;
	}
	return rc;
}

/* Score inputs: the row's values (res may be NULL), overridden by v. */
static const char *
merged(const PGresult *res, const struct crm_values *v, const char *name,
       const char *dflt)
{
	bool set;
	const char *t = crm_values_find(v, name, &set);

	if (set)
		return t;
	if (res)
		return crm_col(res, name);
	return dflt;
}

static void
score_values(const PGresult *res, struct crm_values *v,
	     const struct crm_score_rules *rules)
{
	struct crm_score_input in = { 0 };
	const char *t;
	cJSON *factors = NULL;
	char num[16], now[21], *text;
	int score;

	in.company_size = merged(res, v, "company_size", NULL);
	in.status = merged(res, v, "status", "new");
	in.timeline = merged(res, v, "timeline", NULL);
	t = merged(res, v, "budget", NULL);
	in.has_budget = t && cm_parse_double(t, 0, 1e300, &in.budget) == 0;
	t = merged(res, v, "decision_maker", "false");
	in.decision_maker = t && (t[0] == 't');
	in.has_phone = (t = merged(res, v, "phone", NULL)) && *t;
	in.has_company = (t = merged(res, v, "company", NULL)) && *t;
	in.has_job_title = (t = merged(res, v, "job_title", NULL)) && *t;
	score = crm_score(rules, &in, &factors);
	snprintf(num, sizeof(num), "%d", score);
	text = cm_json_print(factors);
	cm_time_rfc3339(cm_now_s(), now);
	crm_values_set(v, crm_entity_field(&crm_leads, "score"), num);
	crm_values_set(v, crm_entity_field(&crm_leads, "score_factors"), text);
	crm_values_set(v, crm_entity_field(&crm_leads, "scored_at"), now);
	free(text);
	cJSON_Delete(factors);
}

/* Whether v sets any input of the lead score. */
static bool
touches_score(const struct crm_values *v)
{
	int i;

	for (i = 0; i < v->n; i++)
		if (v->field[i]->flags & CRM_F_SCORE)
			return true;
	return false;
}

/* Parameters of v after `first` fixed ones. */
static void
params_of(const struct crm_values *v, const char **p, int first)
{
	int i;

	for (i = 0; i < v->n; i++)
		p[first + i] = v->text[i];
}

/* A deal's pipeline and stage: the named stage (its pipeline must match
   a named pipeline), the first stage of a named pipeline, or the first
   stage of the default pipeline. Sets status, and the stage's name. */
static int
deal_stage(PGconn *conn, struct crm_values *v, char stage_name[65],
	   char errbuf[CM_ERRBUF_LEN])
{
	const char *pipe = crm_values_find(v, "pipeline_id", NULL);
	const char *stage = crm_values_find(v, "stage_id", NULL);
	char dp[37], ds[37];
	const char *p[2] = { stage, pipe };
	PGresult *res = NULL;
	int rc;

	if (!pipe && !stage) {
		if ((rc = crm_default_stage(conn, dp, ds, errbuf)) < 0)
			return rc;
		p[0] = ds;
	}
	rc = cm_db_query(conn,
			 "SELECT s.id, s.pipeline_id, s.name, CASE WHEN "
			 "s.is_won THEN 'won' WHEN s.is_lost THEN 'lost' ELSE "
			 "'open' END FROM crm.pipeline_stages s JOIN "
			 "crm.pipelines pl ON pl.id = s.pipeline_id "
			 "AND pl.deleted_at IS NULL "
			 "WHERE ($1::uuid IS NULL OR s.id = $1) AND "
			 "($2::uuid IS NULL OR s.pipeline_id = $2) "
			 "ORDER BY s.position LIMIT 1",
			 2, p, &res, errbuf);
	if (rc == 0 && PQntuples(res) == 0) {
		cm_errf(errbuf, "field '%s' names no stage of the pipeline",
			stage ? "stage_id" : "pipeline_id");
		rc = CM_EINVAL;
	} else if (rc == 0) {
		crm_values_set(v, crm_entity_field(&crm_deals, "stage_id"),
			       PQgetvalue(res, 0, 0));
		crm_values_set(v, crm_entity_field(&crm_deals, "pipeline_id"),
			       PQgetvalue(res, 0, 1));
		crm_values_set(v, crm_entity_field(&crm_deals, "status"),
			       PQgetvalue(res, 0, 3));
		if (strcmp(PQgetvalue(res, 0, 3), "open") != 0) {
			char now[21];

			cm_time_rfc3339(cm_now_s(), now);
			crm_values_set(
				v, crm_entity_field(&crm_deals, "closed_at"),
				now);
		}
		cm_strlcpy(stage_name, PQgetvalue(res, 0, 2), 65);
	}
	PQclear(res);
	return rc;
}

static void
add_str(cJSON *o, const char *name, const char *v)
{
	if (v)
		cJSON_AddStringToObject(o, name, v);
}

/* The created event's data (the registry's shape for each type). */
static cJSON *
created_data(const struct crm_entity *e, const PGresult *res,
	     const char *stage_name)
{
	cJSON *d = cJSON_CreateObject();
	char key[32];
	double num;

	snprintf(key, sizeof(key), "%s_id", e->name);
	add_str(d, key, crm_col(res, "id"));
	if (e == &crm_deals) {
		add_str(d, "stage", stage_name);
		if (cm_parse_double(crm_col(res, "value"), 0, 1e300, &num) == 0)
			cJSON_AddNumberToObject(d, "amount", num);
		add_str(d, "currency", crm_col(res, "currency"));
		add_str(d, "lead_id", crm_col(res, "lead_id"));
		return d;
	}
	add_str(d, "email", crm_col(res, "email"));
	add_str(d, "name", crm_col(res, "name"));
	if (e == &crm_leads) {
		add_str(d, "source", crm_col(res, "source"));
		if (cm_parse_double(crm_col(res, "score"), 0, 100, &num) == 0)
			cJSON_AddNumberToObject(d, "score", num);
	}
	return d;
}

static int
qualified_event(PGconn *conn, const char *tenant, const PGresult *res,
		char errbuf[CM_ERRBUF_LEN])
{
	cJSON *d = cJSON_CreateObject();
	double score = 0;

	add_str(d, "lead_id", crm_col(res, "id"));
	cm_parse_double(crm_col(res, "score"), 0, 100, &score);
	cJSON_AddNumberToObject(d, "score", score);
	return crm_emit(conn, tenant, "lead.qualified", "lead",
			crm_col(res, "id"), d, errbuf);
}

/* Insert one row of e from v (completed here: score, deal stage) and add
   its events; the new row in *out. */
int
crm_insert_row(PGconn *conn, const struct crm_ctx *ctx,
	       const struct crm_entity *e, struct crm_values *v,
	       const struct crm_score_rules *rules, PGresult **out,
	       char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf sql = CM_BUF_INIT(SQL_CAP);
	const char *p[CRM_MAX_FIELDS + 1];
	char stage_name[65] = "", expr[96];
	const char *status;
	int i, rc;

	*out = NULL;
	if (e == &crm_leads)
		score_values(NULL, v, rules);
	if (e == &crm_deals && (rc = deal_stage(conn, v, stage_name, errbuf)))
		return rc;
	cm_buf_printf(&sql, "INSERT INTO %s (tenant_id, created_by", e->table);
	for (i = 0; i < v->n; i++)
		cm_buf_printf(&sql, ", %s", v->field[i]->name);
	cm_buf_puts(&sql, ") VALUES (" TENANT_SQL ", $1");
	for (i = 0; i < v->n; i++) {
		crm_field_sql_value(v->field[i], i + 2, expr);
		cm_buf_printf(&sql, ", %s", expr);
	}
	cm_buf_printf(&sql, ") RETURNING %s", e->columns);
	p[0] = ctx->sub;
	params_of(v, p, 1);
	rc = cm_db_query(conn, cm_buf_str(&sql), v->n + 1, p, out, errbuf);
	cm_buf_release(&sql);
	if (rc == 0 && e->created_event)
		rc = crm_emit(conn, ctx->tenant, e->created_event, e->name,
			      crm_col(*out, "id"),
			      created_data(e, *out, stage_name), errbuf);
	status = rc == 0 ? crm_col(*out, "status") : NULL;
	if (rc == 0 && e == &crm_leads && status &&
	    strcmp(status, "qualified") == 0)
		rc = qualified_event(conn, ctx->tenant, *out, errbuf);
	return rc;
}

struct create_work {
	const struct crm_ctx *ctx;
	const struct crm_entity *e;
	struct crm_values *v;
	const struct cm_idem *idem;
	struct crm_reply *out;
};

/* A stored answer for the key: 0 and out filled (replayed), CM_ENOENT
   when the key is new, CM_EEXIST when it was used for another request. */
static int
idem_lookup(PGconn *conn, const struct cm_idem *idem, struct crm_reply *out,
	    char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *v;
	int rc = cm_idem_lookup(conn, CRM_IDEM, idem, &out->status, &out->body,
				errbuf);

	if (rc == CM_EEXIST)
		out->reused = true;
	if (rc < 0)
		return rc;
	out->replayed = true;
	v = cJSON_GetObjectItemCaseSensitive(out->body, "version");
	if (cJSON_IsNumber(v))
		out->version = (int64_t)v->valuedouble;
	return 0;
}

static int
create_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct create_work *w = arg;
	struct crm_score_rules rules;
	PGresult *res = NULL;
	cJSON *defs = NULL;
	int64_t version = 0;
	int rc = 0;

	if (w->idem->key) {
		rc = idem_lookup(conn, w->idem, w->out, errbuf);
		if (rc != CM_ENOENT)
			return rc;
	}
	if (w->e == &crm_leads)
		rc = crm_lead_prelude(conn, w->ctx->tenant, 1, &rules, &defs,
				      errbuf);
	else if (crm_entity_field(w->e, "custom_fields"))
		rc = crm_custom_defs(conn, w->e->name, &defs, errbuf);
	if (rc == 0 && defs)
		rc = crm_custom_check(
			defs, crm_values_find(w->v, "custom_fields", NULL),
			true, errbuf);
	cJSON_Delete(defs);
	if (rc < 0)
		return rc;
	if ((rc = crm_insert_row(conn, w->ctx, w->e, w->v, &rules, &res,
				 errbuf)))
		goto out;
	cm_parse_i64(crm_col(res, "version"), 0, INT64_MAX, &version);
	w->out->status = 201;
	w->out->version = version;
	w->out->body = crm_render_row(res, 0);
	if (w->idem->key)
		rc = cm_idem_store(conn, CRM_IDEM, w->idem, w->out->status,
				   w->out->body, errbuf);
out:
	PQclear(res);
	return rc;
}

int
crm_store_create(const struct crm_ctx *ctx, const struct crm_entity *e,
		 struct crm_values *v, const struct cm_idem *idem,
		 struct crm_reply *out, char errbuf[CM_ERRBUF_LEN])
{
	struct create_work w = { ctx, e, v, idem, out };
	int rc, attempt;

	for (attempt = 0; attempt < 2; attempt++) {
		memset(out, 0, sizeof(*out));
		rc = cm_db_tx_tenant(ctx->tenant, create_work, &w, errbuf);
		if (!cm_idem_raced(idem, rc, errbuf))
			break;
		/* a concurrent request with the same key won: replay it */
		cJSON_Delete(out->body);
	}
	if (rc < 0) {
		cJSON_Delete(out->body);
		out->body = NULL;
	}
	if (rc == 0 && !out->replayed)
		crm_relay_kick(ctx->crm ? ctx->crm->relay : NULL);
	return rc;
}

/* The visible row id of e (private notes only for their author), locked
   for update when lock is set. */
int
crm_select_row(PGconn *conn, const struct crm_ctx *ctx,
	       const struct crm_entity *e, const char *id, bool lock,
	       PGresult **out, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf sql = CM_BUF_INIT(SQL_CAP);
	const char *p[2] = { id, ctx->sub };
	int rc;

	*out = NULL;
	if (!cm_is_uuid(id)) {
		cm_errf(errbuf, "no such %s", e->name);
		return CM_ENOENT;
	}
	cm_buf_printf(&sql,
		      "SELECT %s FROM %s WHERE id = $1 AND deleted_at IS NULL",
		      e->columns, e->table);
	if (e->private_notes)
		cm_buf_puts(&sql, " AND (NOT is_private OR created_by = $2)");
	if (lock)
		cm_buf_puts(&sql, " FOR UPDATE");
	rc = cm_db_query(conn, cm_buf_str(&sql), e->private_notes ? 2 : 1, p,
			 out, errbuf);
	cm_buf_release(&sql);
	if (rc == 0 && PQntuples(*out) == 0) {
		cm_errf(errbuf, "no such %s", e->name);
		rc = CM_ENOENT;
	}
	return rc;
}

struct get_work {
	const struct crm_ctx *ctx;
	const struct crm_entity *e;
	const char *id;
	cJSON *out;
	int64_t version;
};

static int
get_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct get_work *g = arg;
	PGresult *res = NULL;
	int rc;

	rc = crm_select_row(conn, g->ctx, g->e, g->id, false, &res, errbuf);
	if (rc == 0) {
		g->out = crm_render_row(res, 0);
		cm_parse_i64(crm_col(res, "version"), 0, INT64_MAX,
			     &g->version);
	}
	PQclear(res);
	return rc;
}

int
crm_store_get(const struct crm_ctx *ctx, const struct crm_entity *e,
	      const char *id, cJSON **out, int64_t *version,
	      char errbuf[CM_ERRBUF_LEN])
{
	struct get_work g = { ctx, e, id, NULL, 0 };
	int rc = cm_db_tx_tenant(ctx->tenant, get_work, &g, errbuf);

	*out = rc == 0 ? g.out : NULL;
	if (rc < 0)
		cJSON_Delete(g.out);
	*version = g.version;
	return rc;
}

int
crm_timeline(PGconn *conn, const char *type, const char *subject,
	     const char *column, const char *id, const char *sub,
	     char errbuf[CM_ERRBUF_LEN])
{
	const char *p[4] = { type, subject, id, sub };
	char sql[320];

	snprintf(sql, sizeof(sql),
		 "INSERT INTO crm.activities (tenant_id, type, subject, "
		 "completed_at, %s, created_by) "
		 "VALUES (" TENANT_SQL ", $1, $2, now(), $3, $4)",
		 column);
	return cm_db_query(conn, sql, 4, p, NULL, errbuf);
}

static bool
same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The lead's automatic timeline and status events after an update. */
static int
lead_after_update(PGconn *conn, const struct crm_ctx *ctx, const PGresult *old,
		  const PGresult *res, char errbuf[CM_ERRBUF_LEN])
{
	const char *id = crm_col(res, "id"), *from = crm_col(old, "status"),
		   *to = crm_col(res, "status");
	char subject[96];
	cJSON *d;
	int rc = 0;

	if (!same(from, to)) {
		snprintf(subject, sizeof(subject), "status: %s -> %s", from,
			 to);
		rc = crm_timeline(conn, "status_change", subject, "lead_id", id,
				  ctx->sub, errbuf);
		if (rc == 0 && strcmp(to, "qualified") == 0)
			rc = qualified_event(conn, ctx->tenant, res, errbuf);
		if (rc == 0 && strcmp(to, "lost") == 0) {
			d = cJSON_CreateObject();
			add_str(d, "lead_id", id);
			add_str(d, "reason", crm_col(res, "lost_reason"));
			rc = crm_emit(conn, ctx->tenant, "lead.lost", "lead",
				      id, d, errbuf);
		}
	}
	if (rc == 0 &&
	    !same(crm_col(old, "owner_id"), crm_col(res, "owner_id"))) {
		snprintf(subject, sizeof(subject), "owner: %s",
			 crm_col(res, "owner_id") ? crm_col(res, "owner_id")
						  : "none");
		rc = crm_timeline(conn, "assignment", subject, "lead_id", id,
				  ctx->sub, errbuf);
	}
	return rc;
}

/* The updated event: {"<e>_id", "changes": {field: new value}}. */
static int
updated_event(PGconn *conn, const struct crm_ctx *ctx,
	      const struct crm_entity *e, const struct crm_values *v,
	      const PGresult *res, char errbuf[CM_ERRBUF_LEN])
{
	cJSON *row, *d, *changes;
	char key[32];
	int i;

	if (!e->updated_event)
		return 0;
	row = crm_render_row(res, 0);
	d = cJSON_CreateObject();
	snprintf(key, sizeof(key), "%s_id", e->name);
	add_str(d, key, crm_col(res, "id"));
	changes = cJSON_AddObjectToObject(d, "changes");
	for (i = 0; i < v->n; i++)
		if (!(v->field[i]->flags & CRM_F_READONLY))
			cJSON_AddItemToObject(
				changes, v->field[i]->name,
				cJSON_DetachItemFromObjectCaseSensitive(
					row, v->field[i]->name));
	cJSON_Delete(row);
	return crm_emit(conn, ctx->tenant, e->updated_event, e->name,
			crm_col(res, "id"), d, errbuf);
}

/* Update row id of e with v (inside a transaction); the new row in *out. */
/* Complete v for an update of old: custom fields checked, an activity's
   due mark cleared when due_at moves, a lead's score recomputed. */
static int
prepare_update(PGconn *conn, const struct crm_entity *e, const PGresult *old,
	       struct crm_values *v, char errbuf[CM_ERRBUF_LEN])
{
	struct crm_score_rules rules;
	const char *text;
	cJSON *defs = NULL;
	bool moved = false;
	int rc = 0;

	if ((text = crm_values_find(v, "custom_fields", NULL)) &&
	    (rc = crm_custom_defs(conn, e->name, &defs, errbuf)) == 0) {
		rc = crm_custom_check(defs, text, false, errbuf);
		cJSON_Delete(defs);
	}
	if (rc < 0)
		return rc;
	crm_values_find(v, "due_at", &moved);
	if (e == &crm_activities && moved) /* announced again when due */
		crm_values_set(v, crm_entity_field(e, "due_notified_at"), NULL);
	if (e == &crm_leads && touches_score(v)) {
		if ((rc = crm_load_rules(conn, &rules, errbuf)) < 0)
			return rc;
		score_values(old, v, &rules);
	}
	return 0;
}

int
crm_update_row(PGconn *conn, const struct crm_ctx *ctx,
	       const struct crm_entity *e, const char *id, int64_t if_match,
	       struct crm_values *v, PGresult **out, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf sql = CM_BUF_INIT(SQL_CAP);
	const char *p[CRM_MAX_FIELDS + 1];
	PGresult *old = NULL;
	int64_t version = 0;
	char expr[96];
	int i, rc;

	*out = NULL;
	if ((rc = crm_select_row(conn, ctx, e, id, true, &old, errbuf)) < 0)
		goto out;
	cm_parse_i64(crm_col(old, "version"), 0, INT64_MAX, &version);
	if (if_match >= 0 && version != if_match) {
		cm_errf(errbuf, "the %s changed (version %lld, If-Match %lld)",
			e->name, (long long)version, (long long)if_match);
		rc = CM_ESTALE;
		goto out;
	}
	if (v->n == 0) { /* nothing to change: the row as it is */
		*out = old;
		return 0;
	}
	if ((rc = prepare_update(conn, e, old, v, errbuf)) < 0)
		goto out;
	cm_buf_printf(&sql,
		      "UPDATE %s SET version = version + 1, "
		      "updated_at = now()",
		      e->table);
	for (i = 0; i < v->n; i++) {
		crm_field_sql_value(v->field[i], i + 2, expr);
		cm_buf_printf(&sql, ", %s = %s", v->field[i]->name, expr);
	}
	cm_buf_printf(&sql, " WHERE id = $1 RETURNING %s", e->columns);
	p[0] = id;
	params_of(v, p, 1);
	rc = cm_db_query(conn, cm_buf_str(&sql), v->n + 1, p, out, errbuf);
	if (rc == 0 && e == &crm_leads)
		rc = lead_after_update(conn, ctx, old, *out, errbuf);
	if (rc == 0)
		rc = updated_event(conn, ctx, e, v, *out, errbuf);
out:
	cm_buf_release(&sql);
	PQclear(old);
	return rc;
}

struct update_work {
	const struct crm_ctx *ctx;
	const struct crm_entity *e;
	const char *id;
	int64_t if_match;
	struct crm_values *v;
	cJSON *out;
	int64_t version;
};

static int
update_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct update_work *u = arg;
	PGresult *res = NULL;
	int rc;

	rc = crm_update_row(conn, u->ctx, u->e, u->id, u->if_match, u->v, &res,
			    errbuf);
	if (rc == 0) {
		u->out = crm_render_row(res, 0);
		cm_parse_i64(crm_col(res, "version"), 0, INT64_MAX,
			     &u->version);
	}
	PQclear(res);
	return rc;
}

int
crm_store_update(const struct crm_ctx *ctx, const struct crm_entity *e,
		 const char *id, int64_t if_match, struct crm_values *v,
		 cJSON **out, int64_t *version, char errbuf[CM_ERRBUF_LEN])
{
	struct update_work u = { ctx, e, id, if_match, v, NULL, 0 };
	int rc = cm_db_tx_tenant(ctx->tenant, update_work, &u, errbuf);

	if (rc < 0) {
		cJSON_Delete(u.out);
		u.out = NULL;
	} else {
		crm_relay_kick(ctx->crm ? ctx->crm->relay : NULL);
	}
	*out = u.out;
	*version = u.version;
	return rc;
}

struct delete_work {
	const struct crm_ctx *ctx;
	const struct crm_entity *e;
	const char *id;
	int64_t if_match;
};

static int
delete_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct delete_work *d = arg;
	const char *p[1] = { d->id };
	PGresult *old = NULL;
	int64_t version = 0;
	char sql[256], key[32];
	cJSON *data;
	int rc;

	rc = crm_select_row(conn, d->ctx, d->e, d->id, true, &old, errbuf);
	if (rc == 0) {
		cm_parse_i64(crm_col(old, "version"), 0, INT64_MAX, &version);
		if (d->if_match >= 0 && version != d->if_match) {
			cm_errf(errbuf, "the %s changed", d->e->name);
			rc = CM_ESTALE;
		}
	}
	PQclear(old);
	if (rc < 0)
		return rc;
	snprintf(sql, sizeof(sql),
		 "UPDATE %s SET deleted_at = now(), version = version + 1, "
		 "updated_at = now() WHERE id = $1",
		 d->e->table);
	rc = cm_db_query(conn, sql, 1, p, NULL, errbuf);
	if (rc == 0 && d->e->deleted_event) {
		data = cJSON_CreateObject();
		snprintf(key, sizeof(key), "%s_id", d->e->name);
		cJSON_AddStringToObject(data, key, d->id);
		rc = crm_emit(conn, d->ctx->tenant, d->e->deleted_event,
			      d->e->name, d->id, data, errbuf);
	}
	return rc;
}

int
crm_store_delete(const struct crm_ctx *ctx, const struct crm_entity *e,
		 const char *id, int64_t if_match, char errbuf[CM_ERRBUF_LEN])
{
	struct delete_work d = { ctx, e, id, if_match };
	int rc = cm_db_tx_tenant(ctx->tenant, delete_work, &d, errbuf);

	if (rc == 0)
		crm_relay_kick(ctx->crm ? ctx->crm->relay : NULL);
	return rc;
}

struct bulk_work {
	const struct crm_ctx *ctx;
	const struct crm_entity *e;
	const cJSON *ids;
	struct crm_values *v;
	cJSON *out;
};

static int
bulk_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct bulk_work *b = arg;
	cJSON *updated, *missing;
	const cJSON *it;
	PGresult *res = NULL;
	int rc = 0;

	b->out = cJSON_CreateObject();
	updated = cJSON_AddArrayToObject(b->out, "updated");
	missing = cJSON_AddArrayToObject(b->out, "not_found");
	cJSON_ArrayForEach(it, b->ids)
	{
		rc = crm_update_row(conn, b->ctx, b->e, it->valuestring, -1,
				    b->v, &res, errbuf);
		PQclear(res);
		res = NULL;
		if (rc == CM_ENOENT) {
			cJSON_AddItemToArray(
				missing, cJSON_CreateString(it->valuestring));
			rc = 0;
			continue;
		}
		if (rc < 0)
			return rc;
		cJSON_AddItemToArray(updated,
				     cJSON_CreateString(it->valuestring));
	}
	return 0;
}

int
crm_store_bulk(const struct crm_ctx *ctx, const struct crm_entity *e,
	       const cJSON *ids, struct crm_values *v, cJSON **out,
	       char errbuf[CM_ERRBUF_LEN])
{
	struct bulk_work b = { ctx, e, ids, v, NULL };
	int rc = cm_db_tx_tenant(ctx->tenant, bulk_work, &b, errbuf);

	if (rc < 0) {
		cJSON_Delete(b.out);
		b.out = NULL;
	} else {
		crm_relay_kick(ctx->crm ? ctx->crm->relay : NULL);
	}
	*out = b.out;
	return rc;
}

/* Row r's score inputs. */
static void
row_input(const PGresult *res, int r, struct crm_score_input *in)
{
	const char *t;

#define CELL(c) (PQgetisnull(res, r, (c)) ? NULL : PQgetvalue(res, r, (c)))
	memset(in, 0, sizeof(*in));
	in->company_size = CELL(1);
	in->status = CELL(2);
	in->timeline = CELL(3);
	t = CELL(4);
	in->has_budget = t && cm_parse_double(t, 0, 1e300, &in->budget) == 0;
	in->decision_maker = (t = CELL(5)) && t[0] == 't';
	in->has_phone = (t = CELL(6)) && *t;
	in->has_company = (t = CELL(7)) && *t;
	in->has_job_title = (t = CELL(8)) && *t;
#undef CELL
}

int
crm_rescore_all(PGconn *conn, int64_t *n, char errbuf[CM_ERRBUF_LEN])
{
	struct crm_score_rules rules;
	struct crm_score_input in;
	PGresult *res = NULL;
	cJSON *factors = NULL, *old;
	const char *p[3], *text;
	char num[16], *ftext;
	int r, score, rc;

	*n = 0;
	if ((rc = crm_load_rules(conn, &rules, errbuf)) < 0)
		return rc;
	rc = cm_db_query(conn,
			 "SELECT id, company_size, status, timeline, budget, "
			 "decision_maker, phone, company, job_title, score, "
			 "score_factors::text FROM crm.leads "
			 "WHERE deleted_at IS NULL FOR UPDATE",
			 0, NULL, &res, errbuf);
	for (r = 0; rc == 0 && r < PQntuples(res); r++) {
		row_input(res, r, &in);
		score = crm_score(&rules, &in, &factors);
		ftext = cm_json_print(factors);
		text = PQgetvalue(res, r, 10);
		old = cm_json_parse(text, strlen(text), errbuf);
		snprintf(num, sizeof(num), "%d", score);
		if (strcmp(num, PQgetvalue(res, r, 9)) != 0 ||
		    !cJSON_Compare(old, factors, true)) {
			p[0] = PQgetvalue(res, r, 0);
			p[1] = num;
			p[2] = ftext;
			rc = cm_db_query(conn,
					 "UPDATE crm.leads SET score = $2, "
					 "score_factors = $3::jsonb, "
					 "scored_at = now(), version = "
					 "version + 1 WHERE id = $1",
					 3, p, NULL, errbuf);
			(*n)++;
		}
		cJSON_Delete(old);
		cJSON_Delete(factors);
		factors = NULL;
		free(ftext);
	}
	PQclear(res);
	return rc;
}

/* Row v as the JSON object jsonb_populate_recordset reads, with its id. */
static cJSON *
row_json(const struct crm_values *v, const char *id)
{
	cJSON *o = cJSON_CreateObject(), *j;
	char errbuf[CM_ERRBUF_LEN];
	int i;

	cJSON_AddStringToObject(o, "id", id);
	for (i = 0; i < v->n; i++) {
		if (!v->text[i])
			continue;
		if (v->field[i]->kind == CRM_K_TAGS ||
		    v->field[i]->kind == CRM_K_OBJECT) {
			j = cm_json_parse(v->text[i], strlen(v->text[i]),
					  errbuf);
			cJSON_AddItemToObject(o, v->field[i]->name,
					      j ? j : cJSON_CreateNull());
		} else {
			cJSON_AddStringToObject(o, v->field[i]->name,
						v->text[i]);
		}
	}
	return o;
}

/* The created event of a batch row, checked, as {"event_id","event"}. */
static int
batch_event(const struct crm_ctx *ctx, const struct crm_entity *e,
	    const struct crm_values *v, const char *id, const char *type,
	    cJSON *events, char errbuf[CM_ERRBUF_LEN])
{
	cJSON *d = cJSON_CreateObject(), *env, *row;
	const char *t;
	char key[32], *text;
	int64_t score;
	int rc;

	snprintf(key, sizeof(key), "%s_id", e->name);
	cJSON_AddStringToObject(d, key, id);
	if (strcmp(type, "lead.qualified") != 0) {
		add_str(d, "email", crm_values_find(v, "email", NULL));
		add_str(d, "name", crm_values_find(v, "name", NULL));
	}
	if (e == &crm_leads && strcmp(type, "lead.qualified") != 0)
		add_str(d, "source", crm_values_find(v, "source", NULL));
	if (e == &crm_leads && (t = crm_values_find(v, "score", NULL)) &&
	    cm_parse_i64(t, 0, 100, &score) == 0)
		cJSON_AddNumberToObject(d, "score", (double)score);
	env = cm_bus_envelope_new(type, "crm", e->name, id, d);
	if (!env) {
		cm_errf(errbuf, "event %s: no randomness", type);
		return CM_EIO;
	}
	cJSON_AddStringToObject(env, "tenant_id", ctx->tenant);
	if ((rc = cm_bus_validate(env, errbuf)) == 0) {
		row = cJSON_CreateObject();
		cJSON_AddStringToObject(
			row, "event_id",
			cJSON_GetObjectItemCaseSensitive(env, "event_id")
				->valuestring);
		text = cm_json_print(env);
		cJSON_AddStringToObject(row, "event", text);
		free(text);
		cJSON_AddItemToArray(events, row);
	}
	cJSON_Delete(env);
	return rc;
}

/* INSERT ... SELECT FROM jsonb_populate_recordset: every field, NOTNULL
   ones defaulted. */
static void
batch_sql(const struct crm_entity *e, struct cm_buf *sql)
{
	const struct crm_field *f;

	cm_buf_printf(sql, "INSERT INTO %s (id, tenant_id, created_by",
		      e->table);
	for (f = e->fields; f->name; f++)
		cm_buf_printf(sql, ", %s", f->name);
	cm_buf_puts(sql, ") SELECT r.id, " TENANT_SQL ", $2");
	for (f = e->fields; f->name; f++) {
		if (f->dflt)
			cm_buf_printf(sql, ", coalesce(r.%s, %s)", f->name,
				      f->dflt);
		else
			cm_buf_printf(sql, ", r.%s", f->name);
	}
	cm_buf_printf(sql,
		      " FROM jsonb_populate_recordset(NULL::%s, $1::jsonb) r",
		      e->table);
}

static int
batch_rows(const struct crm_ctx *ctx, const struct crm_entity *e,
	   struct crm_values *rows, int n, const struct crm_score_rules *rules,
	   cJSON *data, cJSON *events, char errbuf[CM_ERRBUF_LEN])
{
	const char *status;
	char id[37];
	int i, rc = 0;

	for (i = 0; i < n && rc == 0; i++) {
		if (cm_uuid_v4(id) < 0) {
			cm_errf(errbuf, "batch: no randomness");
			return CM_EIO;
		}
		if (e == &crm_leads)
			score_values(NULL, &rows[i], rules);
		cJSON_AddItemToArray(data, row_json(&rows[i], id));
		if (e->created_event)
			rc = batch_event(ctx, e, &rows[i], id, e->created_event,
					 events, errbuf);
		status = crm_values_find(&rows[i], "status", NULL);
		if (rc == 0 && e == &crm_leads && status &&
		    strcmp(status, "qualified") == 0)
			rc = batch_event(ctx, e, &rows[i], id, "lead.qualified",
					 events, errbuf);
	}
	return rc;
}

int
crm_insert_batch(PGconn *conn, const struct crm_ctx *ctx,
		 const struct crm_entity *e, struct crm_values *rows, int n,
		 const struct crm_score_rules *rules,
		 char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf sql = CM_BUF_INIT(SQL_CAP);
	cJSON *data = cJSON_CreateArray(), *events = cJSON_CreateArray();
	char *dtext = NULL, *etext = NULL;
	const char *p[2];
	int rc;

	rc = batch_rows(ctx, e, rows, n, rules, data, events, errbuf);
	if (rc < 0)
		goto out;
	batch_sql(e, &sql);
	dtext = cm_json_print(data);
	p[0] = dtext;
	p[1] = ctx->sub;
	rc = cm_db_query(conn, cm_buf_str(&sql), 2, p, NULL, errbuf);
	if (rc == 0 && cJSON_GetArraySize(events) > 0) {
		etext = cm_json_print(events);
		p[0] = etext;
		rc = cm_db_query(conn,
				 "INSERT INTO " CRM_OUTBOX " (tenant_id, "
				 "event_id, event) SELECT " TENANT_SQL ", "
				 "(x->>'event_id')::uuid, x->>'event' "
				 "FROM jsonb_array_elements($1::jsonb) x",
				 1, p, NULL, errbuf);
	}
out:
	free(dtext);
	free(etext);
	cJSON_Delete(data);
	cJSON_Delete(events);
	cm_buf_release(&sql);
	return rc;
}
