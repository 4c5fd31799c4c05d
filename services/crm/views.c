/*
 * views.c - read-mostly views over the tenant's data: search, the
 * dashboard, lead sources with conversion, tags, duplicates, and the
 * scoring rule table (read and replace, rescoring every lead).
 */
#include "crm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/db.h"
#include "common/http.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"

#include "common/banned.h"

#define SEARCH_DEFAULT 20
#define SEARCH_MAX 100

/* One query of the tenant, its single text column parsed as JSON. */
struct json_work {
	const char *sql;
	const char *p[4];
	int n;
	cJSON *out;
};

static int
json_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct json_work *w = arg;
	PGresult *res = NULL;
	const char *text;
	int rc;

	rc = cm_db_query(conn, w->sql, w->n, w->p, &res, errbuf);
	if (rc == 0 && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
		text = PQgetvalue(res, 0, 0);
		w->out = cm_json_parse(text, strlen(text), errbuf);
		rc = w->out ? 0 : CM_EIO;
	} else if (rc == 0) {
		cm_errf(errbuf, "not found");
		rc = CM_ENOENT;
	}
	PQclear(res);
	return rc;
}

static void
reply_json_query(struct cm_req *req, void *arg, struct json_work *w,
		 const char *what)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct crm_ctx ctx;
	int status = 500, rc;

	if (!crm_req_ctx(req, arg, false, &ctx, &status))
		goto out;
	rc = cm_db_tx_tenant(ctx.tenant, json_work, w, errbuf);
	if (rc < 0) {
		cJSON_Delete(w->out);
		w->out = NULL;
		status = crm_fail(req, rc, what, errbuf);
		goto out;
	}
	status = 200;
out:
	cm_req_reply_json(req, status, w->out);
	cJSON_Delete(w->out);
}

#define SEARCH_PART(type, table, title, subtitle)                      \
	"SELECT '" type "' AS type, id, " title " AS title, " subtitle \
	" AS subtitle, ts_rank(search, q) AS rank FROM " table ", qq " \
	"WHERE deleted_at IS NULL AND search @@ q "                    \
	"AND ($3::text[] IS NULL OR '" type "' = ANY($3::text[])) "

#define SEARCH_LEADS \
	SEARCH_PART("lead", "crm.leads", "name", "coalesce(company, email)")
#define SEARCH_CONTACTS SEARCH_PART("contact", "crm.contacts", "name", "email")
#define SEARCH_COMPANIES \
	SEARCH_PART("company", "crm.companies", "name", "domain")
#define SEARCH_DEALS                              \
	SEARCH_PART("deal", "crm.deals", "title", \
		    "currency || ' ' || value::text")

static const char search_sql[] =
	"WITH qq AS (SELECT websearch_to_tsquery('simple', $1) AS q) "
	"SELECT json_build_object('items', coalesce(json_agg(r), '[]'), "
	"'next_cursor', NULL)::text FROM (SELECT * FROM (" SEARCH_LEADS
	"UNION ALL " SEARCH_CONTACTS "UNION ALL " SEARCH_COMPANIES
	"UNION ALL " SEARCH_DEALS ") u ORDER BY rank DESC, id LIMIT $2::int) r";

/* GET /api/crm/search?q=&types=lead,contact&limit= - the best matches of
   the tenant's leads, contacts, companies and deals, best first. */
void
crm_handle_search(struct cm_req *req, void *arg)
{
	struct json_work w = { 0 };
	const char *q = cm_req_query(req, "q"),
		   *types = cm_req_query(req, "types"),
		   *limit = cm_req_query(req, "limit");
	char lim[16], tarr[64] = "";
	int64_t n = SEARCH_DEFAULT;
	int status;

	if (!q || !*q || strlen(q) > 200) {
		status = cm_req_fail(req, 400, "bad_request",
				     "q must be 1 to 200 bytes");
		goto fail;
	}
	if (limit && cm_parse_i64(limit, 1, SEARCH_MAX, &n) < 0) {
		status = cm_req_fail(req, 400, "bad_request",
				     "limit must be between 1 and %d",
				     SEARCH_MAX);
		goto fail;
	}
	if (types) {
		if (strlen(types) > 40 ||
		    strspn(types, "abcdefghijklmnopqrstuvwxyz,") !=
			    strlen(types)) {
			status = cm_req_fail(req, 400, "bad_request",
					     "types lists lead, contact, "
					     "company, deal");
			goto fail;
		}
		snprintf(tarr, sizeof(tarr), "{%s}", types);
	}
	snprintf(lim, sizeof(lim), "%lld", (long long)n);
	w.sql = search_sql;
	w.p[0] = q;
	w.p[1] = lim;
	w.p[2] = types ? tarr : NULL;
	w.n = 3;
	reply_json_query(req, arg, &w, "search");
	return;
fail:
	cm_req_reply_json(req, status, NULL);
}

/* GET /api/crm/dashboard - counts by status and source, pipeline value by
   stage, conversion rate and the work lists' sizes. */
void
crm_handle_dashboard(struct cm_req *req, void *arg)
{
	struct json_work w = { 0 };

	w.sql = "WITH l AS (SELECT status, source, priority, owner_id, "
		"next_follow_up_at, score FROM crm.leads "
		"WHERE deleted_at IS NULL) "
		"SELECT jsonb_build_object("
		"'leads_total', (SELECT count(*) FROM l), "
		"'leads_by_status', (SELECT coalesce(jsonb_object_agg(status, "
		"n), '{}') FROM (SELECT status, count(*) n FROM l "
		"GROUP BY status) s), "
		"'leads_by_source', (SELECT coalesce(jsonb_object_agg(src, n), "
		"'{}') FROM (SELECT coalesce(source, 'unknown') src, count(*) "
		"n "
		"FROM l GROUP BY 1) s), "
		"'conversion_rate', (SELECT CASE WHEN count(*) = 0 THEN 0 ELSE "
		"round(count(*) FILTER (WHERE status = 'converted')::numeric / "
		"count(*), 4) END FROM l), "
		"'average_score', (SELECT coalesce(round(avg(score), 1), 0) "
		"FROM l), "
		"'overdue_follow_ups', (SELECT count(*) FROM l WHERE "
		"next_follow_up_at < now() AND status NOT IN ('converted', "
		"'lost')), "
		"'high_priority', (SELECT count(*) FROM l WHERE priority IN "
		"('high', 'urgent') AND status NOT IN ('converted', 'lost')), "
		"'unassigned', (SELECT count(*) FROM l WHERE owner_id IS "
		"NULL), "
		"'activities_overdue', (SELECT count(*) FROM crm.activities "
		"WHERE deleted_at IS NULL AND completed_at IS NULL AND due_at "
		"< "
		"now()), "
		"'activities_upcoming', (SELECT count(*) FROM crm.activities "
		"WHERE deleted_at IS NULL AND completed_at IS NULL AND due_at "
		">= "
		"now()), "
		"'pipeline_value_by_stage', (SELECT coalesce(jsonb_agg(x ORDER "
		"BY "
		"x.pipeline, x.position), '[]') FROM (SELECT p.name AS "
		"pipeline, "
		"s.id AS stage_id, s.name AS stage, s.position, count(d.id) AS "
		"deals, coalesce(sum(d.value), 0) AS value FROM "
		"crm.pipeline_stages s JOIN crm.pipelines p ON p.id = "
		"s.pipeline_id AND p.deleted_at IS NULL LEFT JOIN crm.deals d "
		"ON "
		"d.stage_id = s.id AND d.deleted_at IS NULL GROUP BY p.name, "
		"s.id, "
		"s.name, s.position) x))::text";
	reply_json_query(req, arg, &w, "dashboard");
}

/* GET /api/crm/lead-sources - each source with its leads, conversions,
   conversion rate and converted value. */
void
crm_handle_lead_sources(struct cm_req *req, void *arg)
{
	struct json_work w = { 0 };

	w.sql = "SELECT json_build_object('items', coalesce(json_agg(x ORDER "
		"BY x.leads DESC, x.source), '[]'), 'next_cursor', NULL)::text "
		"FROM (SELECT coalesce(source, 'unknown') AS source, count(*) "
		"AS leads, count(*) FILTER (WHERE status = 'converted') AS "
		"converted, round(count(*) FILTER (WHERE status = 'converted')"
		"::numeric / count(*), 4) AS conversion_rate, "
		"coalesce(sum(conversion_value), 0) AS converted_value "
		"FROM crm.leads WHERE deleted_at IS NULL GROUP BY 1 "
		"ORDER BY 2 DESC LIMIT 200) x";
	reply_json_query(req, arg, &w, "lead sources");
}

/* GET /api/crm/tags - tags in use on leads, contacts, companies and deals,
   most used first (at most 200). */
void
crm_handle_tags(struct cm_req *req, void *arg)
{
	struct json_work w = { 0 };

	w.sql = "SELECT json_build_object('items', coalesce(json_agg(x ORDER "
		"BY x.count DESC, x.tag), '[]'), 'next_cursor', NULL)::text "
		"FROM (SELECT tag, count(*) AS count FROM ("
		"SELECT unnest(tags) tag FROM crm.leads WHERE deleted_at IS "
		"NULL "
		"UNION ALL SELECT unnest(tags) FROM crm.contacts WHERE "
		"deleted_at IS NULL UNION ALL SELECT unnest(tags) FROM "
		"crm.companies WHERE deleted_at IS NULL UNION ALL SELECT "
		"unnest(tags) FROM crm.deals WHERE deleted_at IS NULL) t "
		"GROUP BY tag ORDER BY 2 DESC, 1 LIMIT 200) x";
	reply_json_query(req, arg, &w, "tags");
}

/* GET /api/crm/leads/:id/duplicates - the tenant's other leads with the
   same email (any case) or phone (digits and +). */
void
crm_handle_duplicates(struct cm_req *req, void *arg)
{
	struct json_work w = { 0 };
	const char *id = cm_req_param(req, "id");
	int status;

	if (!id || !cm_is_uuid(id)) {
		status = crm_fail(req, CM_ENOENT, "lead", "");
		cm_req_reply_json(req, status, NULL);
		return;
	}
	w.sql = "WITH me AS (SELECT id, lower(email) AS email, "
		"nullif(regexp_replace(phone, '[^0-9+]', '', 'g'), '') AS "
		"phone "
		"FROM crm.leads WHERE id = $1 AND deleted_at IS NULL) "
		"SELECT CASE WHEN NOT EXISTS (SELECT FROM me) THEN NULL ELSE "
		"json_build_object('items', coalesce((SELECT json_agg(json_"
		"build_object('id', l.id, 'name', l.name, 'email', l.email, "
		"'phone', l.phone, 'status', l.status, 'matched_on', CASE WHEN "
		"lower(l.email) = me.email THEN 'email' ELSE 'phone' END) "
		"ORDER BY l.created_at) FROM crm.leads l, me WHERE l.id <> "
		"me.id "
		"AND l.deleted_at IS NULL AND (lower(l.email) = me.email OR "
		"regexp_replace(l.phone, '[^0-9+]', '', 'g') = me.phone)), "
		"'[]'), 'next_cursor', NULL)::text END";
	w.p[0] = id;
	w.n = 1;
	reply_json_query(req, arg, &w, "lead");
}

struct rules_work {
	const char *text; /* NULL: read */
	const char *sub;
	bool rescore;
	cJSON *out;
};

static int
rules_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct rules_work *w = arg;
	struct crm_score_rules r;
	const char *p[2] = { w->text, w->sub };
	int64_t n = 0;
	int rc = 0;

	if (w->text)
		rc = cm_db_query(
			conn,
			"INSERT INTO crm.scoring_rules (tenant_id, "
			"rules, updated_by) VALUES (current_setting("
			"'app.tenant_id')::uuid, $1::jsonb, $2) "
			"ON CONFLICT (tenant_id) DO UPDATE SET rules = "
			"EXCLUDED.rules, updated_by = EXCLUDED."
			"updated_by, version = crm.scoring_rules."
			"version + 1, updated_at = now()",
			2, p, NULL, errbuf);
	if (rc == 0 && w->text && w->rescore)
		rc = crm_rescore_all(conn, &n, errbuf);
	if (rc == 0)
		rc = crm_load_rules(conn, &r, errbuf);
	if (rc == 0) {
		w->out = cJSON_CreateObject();
		cJSON_AddItemToObject(w->out, "rules",
				      crm_score_rules_json(&r));
		if (w->text)
			cJSON_AddNumberToObject(w->out, "rescored", (double)n);
	}
	return rc;
}

static void
reply_rules(struct cm_req *req, void *arg, struct rules_work *w, bool write)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct crm_ctx ctx;
	int status = 500, rc;

	if (!crm_req_ctx(req, arg, write, &ctx, &status))
		goto out;
	w->sub = ctx.sub;
	rc = cm_db_tx_tenant(ctx.tenant, rules_work, w, errbuf);
	if (rc < 0) {
		cJSON_Delete(w->out);
		w->out = NULL;
		status = crm_fail(req, rc, "scoring rules", errbuf);
		goto out;
	}
	if (write)
		crm_relay_kick(ctx.crm ? ctx.crm->relay : NULL);
	status = 200;
out:
	cm_req_reply_json(req, status, w->out);
	cJSON_Delete(w->out);
}

/* GET /api/crm/scoring-rules - the tenant's rule table (or the defaults). */
void
crm_handle_rules_get(struct cm_req *req, void *arg)
{
	struct rules_work w = { NULL, NULL, false, NULL };

	reply_rules(req, arg, &w, false);
}

/* PUT /api/crm/scoring-rules - {"rules": {...}}: replace the table (left
   out rules keep their defaults) and rescore every lead unless
   ?rescore=false. */
void
crm_handle_rules_put(struct cm_req *req, void *arg)
{
	struct rules_work w = { NULL, NULL, true, NULL };
	const char *rescore = cm_req_query(req, "rescore");
	char errbuf[CM_ERRBUF_LEN] = "";
	struct crm_score_rules r;
	const cJSON *rules = NULL;
	cJSON *body = NULL;
	char *text = NULL;
	int status;

	if ((status = cm_req_json(req, &body)) != 0)
		goto fail;
	if (rescore && cm_parse_bool(rescore, &w.rescore) < 0)
		cm_errf(errbuf, "rescore must be true or false");
	if (errbuf[0] ||
	    cm_json_get_object(body, NULL, "rules", true, &rules, errbuf) < 0 ||
	    crm_score_rules_parse(rules, &r, errbuf) < 0) {
		status = cm_req_fail(req, 400, "validation_failed", "%s",
				     errbuf);
		goto fail;
	}
	text = cm_json_print(rules);
	w.text = text;
	reply_rules(req, arg, &w, true);
	free(text);
	cJSON_Delete(body);
	return;
fail:
	cm_req_reply_json(req, status, NULL);
	cJSON_Delete(body);
}
