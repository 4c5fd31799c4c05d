/*
 * actions.c - lead actions (mark contacted, mark lost, convert), deal
 * stage moves and history, activity completion.
 *
 * Each action is one transaction of the tenant: the row is locked, the
 * change and its timeline entry and events are written together.
 * Converting a lead creates (or links) its contact and company and, when
 * asked, a deal, and marks the lead converted, all or nothing.
 */
#include "crm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bus.h"
#include "common/db.h"
#include "common/http.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"

#include "common/banned.h"

static const struct crm_field *
lf(const char *name)
{
	return crm_entity_field(&crm_leads, name);
}

static void
now_text(char out[21])
{
	cm_time_rfc3339(cm_now_s(), out);
}

/* The common shape of an action: lock, check, change, reply the row. */
struct action {
	const struct crm_ctx *ctx;
	const struct crm_entity *e;
	const char *id;
	int64_t if_match;
	const cJSON *body;
	cJSON *out;
	int64_t version;
};

typedef int (*action_fn)(PGconn *conn, struct action *a, PGresult *row,
			 PGresult **res, char errbuf[CM_ERRBUF_LEN]);

struct action_run {
	struct action *a;
	action_fn fn;
};

static int
action_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct action_run *run = arg;
	struct action *a = run->a;
	PGresult *row = NULL, *res = NULL;
	int64_t version = 0;
	int rc;

	rc = crm_select_row(conn, a->ctx, a->e, a->id, true, &row, errbuf);
	if (rc == 0) {
		cm_parse_i64(crm_col(row, "version"), 0, INT64_MAX, &version);
		if (a->if_match >= 0 && version != a->if_match) {
			cm_errf(errbuf, "the %s changed (version %lld)",
				a->e->name, (long long)version);
			rc = CM_ESTALE;
		}
	}
	if (rc == 0)
		rc = run->fn(conn, a, row, &res, errbuf);
	if (rc == 0 && res && !a->out) {
		a->out = crm_render_row(res, 0);
		cm_parse_i64(crm_col(res, "version"), 0, INT64_MAX,
			     &a->version);
	}
	PQclear(res);
	PQclear(row);
	return rc;
}

/* Run fn on the :id row of e for the request, and reply. */
static void
run_action(struct cm_req *req, void *arg, const struct crm_entity *e,
	   action_fn fn)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct action a = { 0 };
	struct action_run run = { &a, fn };
	struct crm_ctx ctx;
	cJSON *body = NULL;
	const char *ct = cm_req_header(req, "Content-Type");
	const char *data;
	size_t len;
	int status = 500, rc;

	if (!crm_req_ctx(req, arg, true, &ctx, &status))
		goto out;
	if (crm_if_match(req, &a.if_match) < 0) {
		status = cm_req_fail(req, 400, "bad_request",
				     "If-Match must be an ETag of this API");
		goto out;
	}
	cm_req_body(req, &data, &len);
	if ((len > 0 || ct) && (status = cm_req_json(req, &body)) != 0)
		goto out;
	a.ctx = &ctx;
	a.e = e;
	a.id = cm_req_param(req, "id");
	a.body = body;
	rc = cm_db_tx_tenant(ctx.tenant, action_work, &run, errbuf);
	if (rc < 0) {
		cJSON_Delete(a.out);
		a.out = NULL;
		status = crm_fail(req, rc, e->name, errbuf);
		goto out;
	}
	crm_relay_kick(ctx.crm ? ctx.crm->relay : NULL);
	cm_req_set_etag(req, a.version);
	status = 200;
out:
	cm_req_reply_json(req, status, a.out);
	cJSON_Delete(a.out);
	cJSON_Delete(body);
}

static int
lead_open(const PGresult *row, char errbuf[CM_ERRBUF_LEN])
{
	const char *s = crm_col(row, "status");

	if (s && strcmp(s, "converted") == 0) {
		cm_errf(errbuf, "the lead is already converted");
		return CM_EEXIST;
	}
	return 0;
}

/* {"next_follow_up_at": time?}: status contacted, contact times now. */
static int
contacted_fn(PGconn *conn, struct action *a, PGresult *row, PGresult **res,
	     char errbuf[CM_ERRBUF_LEN])
{
	struct crm_values v = { 0 };
	const char *next = NULL;
	char now[21];
	int rc;

	if ((rc = lead_open(row, errbuf)) < 0)
		return rc;
	if (a->body && cm_json_get_str(a->body, NULL, "next_follow_up_at",
				       false, 40, &next, errbuf) == CM_EINVAL)
		return CM_EINVAL;
	if (next && !cm_bus_is_rfc3339(next)) {
		cm_errf(errbuf, "field 'next_follow_up_at' must be an RFC 3339 "
				"time");
		return CM_EINVAL;
	}
	now_text(now);
	crm_values_set(&v, lf("status"), "contacted");
	crm_values_set(&v, lf("last_contact_at"), now);
	if (!crm_col(row, "first_contact_at"))
		crm_values_set(&v, lf("first_contact_at"), now);
	if (next)
		crm_values_set(&v, lf("next_follow_up_at"), next);
	rc = crm_update_row(conn, a->ctx, a->e, a->id, -1, &v, res, errbuf);
	crm_values_release(&v);
	return rc;
}

/* {"reason": text}: status lost (lead.lost). */
static int
lost_fn(PGconn *conn, struct action *a, PGresult *row, PGresult **res,
	char errbuf[CM_ERRBUF_LEN])
{
	struct crm_values v = { 0 };
	const char *reason = NULL;
	int rc;

	if ((rc = lead_open(row, errbuf)) < 0)
		return rc;
	if (cm_json_get_str(a->body, NULL, "reason", true, 500, &reason,
			    errbuf) < 0 ||
	    !*reason) {
		cm_errf(errbuf, "field 'reason' is required (1 to 500 bytes)");
		return CM_EINVAL;
	}
	crm_values_set(&v, lf("status"), "lost");
	crm_values_set(&v, lf("lost_reason"), reason);
	rc = crm_update_row(conn, a->ctx, a->e, a->id, -1, &v, res, errbuf);
	crm_values_release(&v);
	return rc;
}

/* POST /api/crm/leads/:id/mark-contacted */
void
crm_handle_lead_contacted(struct cm_req *req, void *arg)
{
	run_action(req, arg, &crm_leads, contacted_fn);
}

/* POST /api/crm/leads/:id/mark-lost */
void
crm_handle_lead_lost(struct cm_req *req, void *arg)
{
	run_action(req, arg, &crm_leads, lost_fn);
}

/* An existing row of e named by body field `name` (uuid), into id[37];
   CM_ENOENT when absent from the body, CM_EINVAL when it names nothing. */
static int
linked(PGconn *conn, struct action *a, const struct crm_entity *e,
       const char *name, char id[37], char errbuf[CM_ERRBUF_LEN])
{
	const char *v = NULL;
	PGresult *res = NULL;
	int rc;

	rc = cm_json_get_uuid(a->body, NULL, name, false, &v, errbuf);
	if (rc < 0)
		return rc;
	rc = crm_select_row(conn, a->ctx, e, v, false, &res, errbuf);
	PQclear(res);
	if (rc == CM_ENOENT) {
		cm_errf(errbuf, "field '%s' names no such %s", name, e->name);
		return CM_EINVAL;
	}
	if (rc == 0)
		cm_strlcpy(id, v, 37);
	return rc;
}

/* The company of the lead: the one named, one of the same name, or a new
   one from the lead's company fields; none when the lead has no company. */
static int
convert_company(PGconn *conn, struct action *a, const PGresult *lead,
		char id[37], cJSON *out, char errbuf[CM_ERRBUF_LEN])
{
	static const char *const copy[][2] = {
		{ "company", "name" },
		{ "company_website", "website" },
		{ "industry", "industry" },
		{ "company_size", "size" },
		{ "annual_revenue", "annual_revenue" },
	};
	struct crm_values v = { 0 };
	const char *name = crm_col(lead, "company");
	PGresult *res = NULL;
	size_t i;
	int rc;

	if ((rc = linked(conn, a, &crm_companies, "company_id", id, errbuf)) !=
	    CM_ENOENT)
		return rc;
	if (!name || !*name)
		return 0;
	rc = cm_db_query(conn,
			 "SELECT id FROM crm.companies WHERE lower(name) = "
			 "lower($1) AND deleted_at IS NULL "
			 "ORDER BY created_at LIMIT 1",
			 1, &name, &res, errbuf);
	if (rc == 0 && PQntuples(res) == 1) {
		cm_strlcpy(id, PQgetvalue(res, 0, 0), 37);
		PQclear(res);
		return 0;
	}
	PQclear(res);
	res = NULL;
	for (i = 0; rc == 0 && i < sizeof(copy) / sizeof(copy[0]); i++)
		if (crm_col(lead, copy[i][0]))
			crm_values_set(
				&v,
				crm_entity_field(&crm_companies, copy[i][1]),
				crm_col(lead, copy[i][0]));
	if (rc == 0)
		rc = crm_insert_row(conn, a->ctx, &crm_companies, &v, NULL,
				    &res, errbuf);
	if (rc == 0) {
		cm_strlcpy(id, crm_col(res, "id"), 37);
		cJSON_AddItemToObject(out, "company", crm_render_row(res, 0));
	}
	PQclear(res);
	crm_values_release(&v);
	return rc;
}

/* The contact: the one named, one with the lead's email, or a new one. */
static int
convert_contact(PGconn *conn, struct action *a, const PGresult *lead,
		const char *company, char id[37], cJSON *out,
		char errbuf[CM_ERRBUF_LEN])
{
	static const char *const copy[] = { "name", "email", "phone",
					    "job_title", "source" };
	struct crm_values v = { 0 };
	const char *email = crm_col(lead, "email");
	PGresult *res = NULL;
	size_t i;
	int rc;

	if ((rc = linked(conn, a, &crm_contacts, "contact_id", id, errbuf)) !=
	    CM_ENOENT)
		return rc;
	rc = cm_db_query(conn,
			 "SELECT id FROM crm.contacts WHERE $1::text IS NOT "
			 "NULL AND lower(email) = lower($1) AND deleted_at IS "
			 "NULL ORDER BY created_at LIMIT 1",
			 1, &email, &res, errbuf);
	if (rc == 0 && PQntuples(res) == 1) {
		cm_strlcpy(id, PQgetvalue(res, 0, 0), 37);
		PQclear(res);
		return 0;
	}
	PQclear(res);
	res = NULL;
	for (i = 0; i < sizeof(copy) / sizeof(copy[0]); i++)
		if (crm_col(lead, copy[i]))
			crm_values_set(&v,
				       crm_entity_field(&crm_contacts, copy[i]),
				       crm_col(lead, copy[i]));
	if (company[0])
		crm_values_set(&v,
			       crm_entity_field(&crm_contacts, "company_id"),
			       company);
	if (rc == 0)
		rc = crm_insert_row(conn, a->ctx, &crm_contacts, &v, NULL, &res,
				    errbuf);
	if (rc == 0) {
		cm_strlcpy(id, crm_col(res, "id"), 37);
		cJSON_AddItemToObject(out, "contact", crm_render_row(res, 0));
	}
	PQclear(res);
	crm_values_release(&v);
	return rc;
}

/* The optional deal: body "deal" is a deal body (title defaults to the
   lead's company or name), linked to the lead, contact and company. */
static int
convert_deal(PGconn *conn, struct action *a, const PGresult *lead,
	     const char *contact, const char *company, char id[37],
	     char value[32], cJSON *out, char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *deal = cJSON_GetObjectItemCaseSensitive(a->body, "deal");
	char msg[CM_ERRBUF_LEN] = "";
	struct crm_values v = { 0 };
	const char *title;
	PGresult *res = NULL;
	cJSON *copy;
	int rc;

	if (!deal || cJSON_IsNull(deal))
		return 0;
	if (!cJSON_IsObject(deal)) {
		cm_errf(errbuf, "field 'deal' must be an object");
		return CM_EINVAL;
	}
	copy = cJSON_Duplicate(deal, true);
	if (!cJSON_GetObjectItemCaseSensitive(copy, "title")) {
		title = crm_col(lead, "company");
		cJSON_AddStringToObject(
			copy, "title",
			title && *title ? title : crm_col(lead, "name"));
	}
	rc = crm_entity_parse(&crm_deals, copy, true, &v, msg);
	cJSON_Delete(copy);
	if (rc < 0) {
		cm_errf(errbuf, "deal: %s", msg);
		return rc;
	}
	crm_values_set(&v, crm_entity_field(&crm_deals, "lead_id"), a->id);
	crm_values_set(&v, crm_entity_field(&crm_deals, "contact_id"), contact);
	if (company[0])
		crm_values_set(&v, crm_entity_field(&crm_deals, "company_id"),
			       company);
	rc = crm_insert_row(conn, a->ctx, &crm_deals, &v, NULL, &res, errbuf);
	if (rc == 0) {
		cm_strlcpy(id, crm_col(res, "id"), 37);
		cm_strlcpy(value, crm_col(res, "value"), 32);
		cJSON_AddItemToObject(out, "deal", crm_render_row(res, 0));
	}
	PQclear(res);
	crm_values_release(&v);
	return rc;
}

static int
converted_event(PGconn *conn, struct action *a, const char *contact,
		const char *deal, char errbuf[CM_ERRBUF_LEN])
{
	cJSON *d = cJSON_CreateObject();

	cJSON_AddStringToObject(d, "lead_id", a->id);
	cJSON_AddStringToObject(d, "contact_id", contact);
	if (deal[0])
		cJSON_AddStringToObject(d, "deal_id", deal);
	return crm_emit(conn, a->ctx->tenant, "lead.converted", "lead", a->id,
			d, errbuf);
}

static int
convert_fn(PGconn *conn, struct action *a, PGresult *row, PGresult **res,
	   char errbuf[CM_ERRBUF_LEN])
{
	char company[37] = "", contact[37] = "", deal[37] = "", value[32] = "",
	     now[21];
	struct crm_values v = { 0 };
	int rc;

	a->out = cJSON_CreateObject();
	if ((rc = lead_open(row, errbuf)) < 0 ||
	    (rc = convert_company(conn, a, row, company, a->out, errbuf)) < 0 ||
	    (rc = convert_contact(conn, a, row, company, contact, a->out,
				  errbuf)) < 0 ||
	    (rc = convert_deal(conn, a, row, contact, company, deal, value,
			       a->out, errbuf)) < 0)
		return rc;
	now_text(now);
	crm_values_set(&v, lf("status"), "converted");
	crm_values_set(&v, lf("converted_at"), now);
	crm_values_set(&v, lf("contact_id"), contact);
	if (company[0])
		crm_values_set(&v, lf("company_id"), company);
	if (deal[0]) {
		crm_values_set(&v, lf("deal_id"), deal);
		crm_values_set(&v, lf("conversion_value"), value);
	}
	rc = crm_update_row(conn, a->ctx, a->e, a->id, -1, &v, res, errbuf);
	crm_values_release(&v);
	if (rc == 0)
		rc = converted_event(conn, a, contact, deal, errbuf);
	if (rc == 0) {
		cJSON_AddItemToObject(a->out, "lead", crm_render_row(*res, 0));
		cm_parse_i64(crm_col(*res, "version"), 0, INT64_MAX,
			     &a->version);
	}
	return rc;
}

/* POST /api/crm/leads/:id/convert - {"contact_id"?, "company_id"?,
   "deal"?: {...}} -> {"lead","contact"?,"company"?,"deal"?}. */
void
crm_handle_lead_convert(struct cm_req *req, void *arg)
{
	run_action(req, arg, &crm_leads, convert_fn);
}

#define MERGE_MAX 20

/* Tags of both (JSON arrays), the target's first, at most CRM_MAX_TAGS. */
static char *
union_tags(const char *target, const char *source)
{
	char errbuf[CM_ERRBUF_LEN];
	cJSON *t = cm_json_parse(target, strlen(target), errbuf);
	cJSON *s = cm_json_parse(source, strlen(source), errbuf);
	const cJSON *it, *have;
	bool dup;
	char *out;

	if (!cJSON_IsArray(t)) {
		cJSON_Delete(t);
		t = cJSON_CreateArray();
	}
	cJSON_ArrayForEach(it, s)
	{
		dup = false;
		cJSON_ArrayForEach(have, t) dup =
			dup || cJSON_Compare(have, it, true);
		if (!dup && cJSON_GetArraySize(t) < CRM_MAX_TAGS)
			cJSON_AddItemToArray(t, cJSON_Duplicate(it, true));
	}
	out = cm_json_print(t);
	cJSON_Delete(t);
	cJSON_Delete(s);
	return out;
}

/* What the target takes from one source: every empty writable field the
   source has, and the union of the tags. */
static void
merge_values(const PGresult *target, const PGresult *source,
	     struct crm_values *v)
{
	const struct crm_field *f;
	const char *tv, *sv;
	bool set;
	char *tags;

	for (f = crm_leads.fields; f->name; f++) {
		if (f->flags & CRM_F_READONLY)
			continue;
		tv = crm_col(target, f->name);
		sv = crm_col(source, f->name);
		if (f->kind == CRM_K_TAGS) {
			crm_values_find(v, f->name, &set);
			tags = union_tags(
				set  ? crm_values_find(v, f->name, NULL)
				: tv ? tv
				     : "[]",
				sv ? sv : "[]");
			crm_values_set(v, f, tags);
			free(tags);
		} else if (!tv && sv && f->kind != CRM_K_OBJECT) {
			crm_values_find(v, f->name, &set);
			if (!set)
				crm_values_set(v, f, sv);
		}
	}
}

/* Move the source's activities, notes and deals to the target, and
   delete the source (lead.deleted). */
static int
absorb(PGconn *conn, struct action *a, const char *source,
       char errbuf[CM_ERRBUF_LEN])
{
	static const char *const moves[] = {
		"UPDATE crm.activities SET lead_id = $1 WHERE lead_id = $2",
		"UPDATE crm.notes SET lead_id = $1 WHERE lead_id = $2",
		"UPDATE crm.deals SET lead_id = $1 WHERE lead_id = $2",
		"UPDATE crm.leads SET deleted_at = now(), version = version + "
		"1, updated_at = now() WHERE id = $2 AND $1::uuid IS NOT NULL",
	};
	const char *p[2] = { a->id, source };
	cJSON *d;
	size_t i;
	int rc = 0;

	for (i = 0; rc == 0 && i < sizeof(moves) / sizeof(moves[0]); i++)
		rc = cm_db_query(conn, moves[i], 2, p, NULL, errbuf);
	if (rc < 0)
		return rc;
	d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "lead_id", source);
	return crm_emit(conn, a->ctx->tenant, "lead.deleted", "lead", source, d,
			errbuf);
}

/* One source: visible, not the target, not converted. */
static int
merge_source(PGconn *conn, struct action *a, const char *id, PGresult **src,
	     char errbuf[CM_ERRBUF_LEN])
{
	int rc;

	if (strcmp(id, a->id) == 0) {
		cm_errf(errbuf, "field 'from' names the lead itself");
		return CM_EINVAL;
	}
	rc = crm_select_row(conn, a->ctx, &crm_leads, id, true, src, errbuf);
	if (rc == CM_ENOENT) {
		cm_errf(errbuf, "field 'from' names no such lead");
		return CM_EINVAL;
	}
	if (rc == 0)
		rc = lead_open(*src, errbuf);
	return rc;
}

/* {"from": [lead ids]}: fold the duplicates into this lead. */
static int
merge_fn(PGconn *conn, struct action *a, PGresult *row, PGresult **res,
	 char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *from = NULL, *it;
	struct crm_values v = { 0 };
	PGresult *src = NULL;
	char subject[64];
	int rc;

	if (cm_json_get_array(a->body, NULL, "from", true, MERGE_MAX, &from,
			      errbuf) < 0 ||
	    cJSON_GetArraySize(from) == 0) {
		cm_errf(errbuf, "field 'from' must list 1 to %d lead ids",
			MERGE_MAX);
		return CM_EINVAL;
	}
	if ((rc = lead_open(row, errbuf)) < 0)
		return rc;
	cJSON_ArrayForEach(it, from)
	{
		if (!cJSON_IsString(it)) {
			cm_errf(errbuf, "field 'from' must hold uuids");
			rc = CM_EINVAL;
			break;
		}
		rc = merge_source(conn, a, it->valuestring, &src, errbuf);
		if (rc == 0) {
			merge_values(row, src, &v);
			rc = absorb(conn, a, it->valuestring, errbuf);
		}
		PQclear(src);
		src = NULL;
		if (rc < 0)
			break;
	}
	snprintf(subject, sizeof(subject), "merged %d duplicate(s)",
		 cJSON_GetArraySize(from));
	if (rc == 0)
		rc = crm_timeline(conn, "note", subject, "lead_id", a->id,
				  a->ctx->sub, errbuf);
	if (rc == 0)
		rc = crm_update_row(conn, a->ctx, a->e, a->id, -1, &v, res,
				    errbuf);
	crm_values_release(&v);
	return rc;
}

/* POST /api/crm/leads/:id/merge - {"from": [...]}: the duplicates' empty
   fields, tags, activities, notes and deals go to this lead; they are
   deleted. */
void
crm_handle_lead_merge(struct cm_req *req, void *arg)
{
	run_action(req, arg, &crm_leads, merge_fn);
}

/* The target stage of the deal's pipeline: name, flags. */
static int
target_stage(PGconn *conn, const PGresult *deal, const char *stage,
	     PGresult **out, char errbuf[CM_ERRBUF_LEN])
{
	const char *p[3] = { stage, crm_col(deal, "pipeline_id"),
			     crm_col(deal, "stage_id") };
	int rc;

	rc = cm_db_query(conn,
			 "SELECT s.name, CASE WHEN s.is_won THEN 'won' WHEN "
			 "s.is_lost THEN 'lost' ELSE 'open' END, "
			 "(SELECT name FROM crm.pipeline_stages WHERE id = $3) "
			 "FROM crm.pipeline_stages s "
			 "WHERE s.id = $1 AND s.pipeline_id = $2",
			 3, p, out, errbuf);
	if (rc == 0 && PQntuples(*out) == 0) {
		cm_errf(errbuf, "field 'stage_id' names no stage of the deal's "
				"pipeline");
		rc = CM_EINVAL;
	}
	return rc;
}

static int
stage_events(PGconn *conn, struct action *a, const PGresult *deal,
	     const PGresult *st, const char *reason, char errbuf[CM_ERRBUF_LEN])
{
	const char *status = PQgetvalue(st, 0, 1);
	cJSON *d = cJSON_CreateObject();
	double amount = 0;
	int rc;

	cJSON_AddStringToObject(d, "deal_id", a->id);
	cJSON_AddStringToObject(d, "from_stage", PQgetvalue(st, 0, 2));
	cJSON_AddStringToObject(d, "to_stage", PQgetvalue(st, 0, 0));
	rc = crm_emit(conn, a->ctx->tenant, "deal.stage_changed", "deal", a->id,
		      d, errbuf);
	if (rc < 0 || strcmp(status, "open") == 0)
		return rc;
	d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "deal_id", a->id);
	if (strcmp(status, "won") == 0) {
		cm_parse_double(crm_col(deal, "value"), 0, 1e300, &amount);
		cJSON_AddNumberToObject(d, "amount", amount);
		cJSON_AddStringToObject(d, "currency",
					crm_col(deal, "currency"));
	} else if (reason) {
		cJSON_AddStringToObject(d, "reason", reason);
	}
	return crm_emit(conn, a->ctx->tenant,
			strcmp(status, "won") == 0 ? "deal.won" : "deal.lost",
			"deal", a->id, d, errbuf);
}

/* The deal's new stage and status, and the history row. */
static int
move_update(PGconn *conn, struct action *a, const PGresult *row,
	    const char *stage, const char *status, const char *reason,
	    PGresult **res, char errbuf[CM_ERRBUF_LEN])
{
	const char *p[4] = { a->id, stage, status, reason };
	const char *h[4] = { a->id, crm_col(row, "stage_id"), stage,
			     a->ctx->sub };
	char sql[4096];
	int rc;

	snprintf(sql, sizeof(sql),
		 "UPDATE crm.deals SET stage_id = $2, status = $3, "
		 "closed_at = CASE WHEN $3 = 'open' THEN NULL ELSE now() END, "
		 "lost_reason = CASE WHEN $3 = 'lost' THEN $4 END, "
		 "version = version + 1, updated_at = now() "
		 "WHERE id = $1 RETURNING %s",
		 crm_deals.columns);
	rc = cm_db_query(conn, sql, 4, p, res, errbuf);
	if (rc == 0)
		rc = cm_db_query(conn,
				 "INSERT INTO crm.deal_stage_history "
				 "(tenant_id, deal_id, from_stage_id, "
				 "to_stage_id, changed_by) VALUES "
				 "(current_setting('app.tenant_id')::uuid, $1, "
				 "$2, $3, $4)",
				 4, h, NULL, errbuf);
	return rc;
}

/* {"stage_id": uuid, "lost_reason"?: text} */
static int
move_fn(PGconn *conn, struct action *a, PGresult *row, PGresult **res,
	char errbuf[CM_ERRBUF_LEN])
{
	const char *stage = NULL, *reason = NULL;
	char subject[200];
	PGresult *st = NULL;
	int rc;

	if (cm_json_get_uuid(a->body, NULL, "stage_id", true, &stage, errbuf) <
		    0 ||
	    cm_json_get_str(a->body, NULL, "lost_reason", false, 500, &reason,
			    errbuf) == CM_EINVAL)
		return CM_EINVAL;
	if (strcmp(stage, crm_col(row, "stage_id")) == 0)
		return 0; /* already there: the row as it is */
	if ((rc = target_stage(conn, row, stage, &st, errbuf)) < 0)
		goto out;
	if ((rc = move_update(conn, a, row, stage, PQgetvalue(st, 0, 1), reason,
			      res, errbuf)) < 0)
		goto out;
	snprintf(subject, sizeof(subject), "stage: %.80s -> %.80s",
		 PQgetvalue(st, 0, 2), PQgetvalue(st, 0, 0));
	if (rc == 0)
		rc = crm_timeline(conn, "status_change", subject, "deal_id",
				  a->id, a->ctx->sub, errbuf);
	if (rc == 0)
		rc = stage_events(conn, a, *res, st, reason, errbuf);
out:
	PQclear(st);
	return rc;
}

/* POST /api/crm/deals/:id/move - to another stage of its pipeline. */
void
crm_handle_deal_move(struct cm_req *req, void *arg)
{
	run_action(req, arg, &crm_deals, move_fn);
}

static int
complete_fn(PGconn *conn, struct action *a, PGresult *row, PGresult **res,
	    char errbuf[CM_ERRBUF_LEN])
{
	char sql[4096];

	if (crm_col(row, "completed_at"))
		return 0; /* completing twice changes nothing */
	snprintf(sql, sizeof(sql),
		 "UPDATE crm.activities SET completed_at = now(), "
		 "version = version + 1, updated_at = now() WHERE id = $1 "
		 "RETURNING %s",
		 crm_activities.columns);
	return cm_db_query(conn, sql, 1, &a->id, res, errbuf);
}

/* POST /api/crm/activities/:id/complete */
void
crm_handle_activity_complete(struct cm_req *req, void *arg)
{
	run_action(req, arg, &crm_activities, complete_fn);
}

struct history_work {
	const struct crm_ctx *ctx;
	const char *id;
	cJSON *out;
};

static int
history_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct history_work *h = arg;
	PGresult *res = NULL;
	int rc;

	rc = crm_select_row(conn, h->ctx, &crm_deals, h->id, false, &res,
			    errbuf);
	PQclear(res);
	res = NULL;
	if (rc == 0)
		rc = cm_db_query(
			conn,
			"SELECT h.from_stage_id, f.name AS from_stage, "
			"h.to_stage_id, t.name AS to_stage, "
			"h.changed_by, h.changed_at "
			"FROM crm.deal_stage_history h "
			"LEFT JOIN crm.pipeline_stages f ON f.id = "
			"h.from_stage_id JOIN crm.pipeline_stages t "
			"ON t.id = h.to_stage_id WHERE h.deal_id = $1 "
			"ORDER BY h.changed_at, h.id LIMIT 1000",
			1, &h->id, &res, errbuf);
	if (rc == 0)
		h->out = cm_json_list(crm_render_rows(res), NULL);
	PQclear(res);
	return rc;
}

/* GET /api/crm/deals/:id/history - the deal's stage moves, oldest first
   (at most 1000). */
void
crm_handle_deal_history(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct history_work h = { NULL, NULL, NULL };
	struct crm_ctx ctx;
	int status = 500, rc;

	if (!crm_req_ctx(req, arg, false, &ctx, &status))
		goto out;
	h.ctx = &ctx;
	h.id = cm_req_param(req, "id");
	rc = cm_db_tx_tenant(ctx.tenant, history_work, &h, errbuf);
	if (rc < 0) {
		cJSON_Delete(h.out);
		h.out = NULL;
		status = crm_fail(req, rc, "deal", errbuf);
		goto out;
	}
	status = 200;
out:
	cm_req_reply_json(req, status, h.out);
	cJSON_Delete(h.out);
}
