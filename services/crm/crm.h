/*
 * crm.h - the crm service's shared declarations (private).
 *
 * entity.c: the entities (leads, contacts, companies, deals, activities,
 * notes) as field tables, and the body validation that turns a JSON object
 * into column values; pure. render.c: result rows as JSON; pure (libpq
 * result accessors only). scoring.c: the lead score and its rule table;
 * pure. csv.c: CSV reading and writing; pure. fields.c: custom field
 * definitions and their check. store.c: the generic SQL of every entity
 * (create, read, update, delete, bulk, batch insert) with idempotency
 * keys, plan limits, scoring and outbox events. list.c: list pages
 * (filters, views, sort, keyset cursor). actions.c: lead actions
 * (contacted, lost, convert, merge), deal stage moves, activity
 * completion. pipelines.c: pipelines and stages (a default per tenant on
 * first use). views.c: search, dashboard, lead sources, tags,
 * duplicates, scoring rules. io.c: CSV export (streamed) and import.
 * relay.c: the outbox relay thread, which also runs due.c's activity.due
 * scan. handlers.c: the HTTP edge of the generic routes. service.c:
 * settings, routes, start/stop.
 *
 * Threading: handlers run on the HTTP worker threads, each with its own
 * PostgreSQL connection; the entity tables are built once at start and
 * only read afterwards; the relay has its own thread (and connection). An
 * export runs as a deferred request on the worker that took it.
 */
#ifndef CRM_CRM_H
#define CRM_CRM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>
#include <libpq-fe.h>

#include "common/err.h"
#include "common/idem.h"

#define CRM_MAGIC 0x63726d21u
#define CRM_MAX_FIELDS 64
#define CRM_LIST_DEFAULT 50
#define CRM_LIST_MAX 200
#define CRM_MAX_TAGS 50
#define CRM_TAG_LEN 64
#define CRM_OBJECT_MAX 16384 /* bytes of custom_fields as JSON */
#define CRM_OUTBOX "crm.outbox"

enum crm_kind {
	CRM_K_TEXT,
	CRM_K_EMAIL,
	CRM_K_ENUM,
	CRM_K_INT,
	CRM_K_MONEY,
	CRM_K_BOOL,
	CRM_K_DATE,
	CRM_K_TIME,
	CRM_K_UUID,
	CRM_K_TAGS,
	CRM_K_OBJECT,
	CRM_K_CURRENCY
};

#define CRM_F_REQUIRED 0x01u   /* a create needs it; never null */
#define CRM_F_FILTER 0x02u     /* a list filter ?name=v[,v] */
#define CRM_F_READONLY 0x04u   /* shown; set only by the service */
#define CRM_F_SCORE 0x08u      /* an input of the lead score */
#define CRM_F_NOTNULL 0x10u    /* has a default; null is refused */
#define CRM_F_CREATEONLY 0x20u /* settable on create only */

struct crm_field {
	const char *name;
	enum crm_kind kind;
	int max;		   /* text: bytes; int: the maximum */
	const char *const *values; /* enum values, NULL-ended */
	unsigned flags;
	const char *dflt; /* SQL default of a NOTNULL field (batch insert) */
};

/* A sort key of a list: its column, and how its cursor value is kept. */
struct crm_sort {
	const char *name;
	bool is_time;	  /* cursor holds epoch microseconds */
	const char *cast; /* SQL type of the cursor value otherwise */
};

/* A named list view: a fixed SQL condition (no parameters). */
struct crm_view {
	const char *name;
	const char *sql;
};

struct crm_entity {
	const char *name;   /* "lead": events and messages */
	const char *plural; /* "leads": the route segment */
	const char *table;  /* "crm.leads" */
	const struct crm_field *fields;
	const struct crm_sort *sorts; /* the first is the default */
	const struct crm_view *views;
	bool searchable;    /* has the search tsvector */
	bool private_notes; /* rows with is_private only for the author */
	const char *created_event, *updated_event, *deleted_event;
	char columns[2048]; /* the SELECT list, built by crm_entities_init */
};

extern struct crm_entity crm_leads, crm_contacts, crm_companies, crm_deals,
	crm_activities, crm_notes;

/* One parsed body: the columns it sets and their text values (NULL: SQL
   NULL). A value type: crm_values_release frees the texts. */
struct crm_values {
	int n;
	const struct crm_field *field[CRM_MAX_FIELDS];
	char *text[CRM_MAX_FIELDS];
};

/* crm_entities_init - build every entity's SELECT list; once, at start. */
void crm_entities_init(void);
/* crm_entity_by_plural - "leads" -> &crm_leads; NULL if unknown. */
const struct crm_entity *crm_entity_by_plural(const char *plural);
/* crm_entity_field - a field by name, or NULL. */
const struct crm_field *crm_entity_field(const struct crm_entity *e,
					 const char *name);
/* crm_entity_parse - check body (an object) against e's fields: unknown,
   read-only or (on update) create-only fields, types, bounds, enum values,
   and on create the required ones. CM_EINVAL with errbuf naming the field
   ("field 'status' must be one of new, contacted, ..."). */
int crm_entity_parse(const struct crm_entity *e, const cJSON *body, bool create,
		     struct crm_values *out, char errbuf[CM_ERRBUF_LEN]);
/* crm_values_find - the text of a field set in v, or NULL; *set (may be
   NULL) says whether the field is in v at all. */
const char *crm_values_find(const struct crm_values *v, const char *name,
			    bool *set);
/* crm_values_set - add or replace a column value (text copied; NULL is
   SQL NULL). */
void crm_values_set(struct crm_values *v, const struct crm_field *f,
		    const char *text);
void crm_values_release(struct crm_values *v);
/* crm_field_sql_value - the SQL expression for parameter $n of field f
   into out[96] ("$3", "ARRAY(SELECT jsonb_array_elements_text($3::jsonb))"
   for tags, "$3::jsonb" for objects). */
void crm_field_sql_value(const struct crm_field *f, int n, char out[96]);
/* crm_coerce_text - a CSV cell as the JSON value field f expects (numbers,
   booleans, tags split on ';'); a cell that does not convert stays a
   string, so crm_entity_parse names the field. */
cJSON *crm_coerce_text(const struct crm_field *f, const char *text);
/* crm_valid_date - YYYY-MM-DD of a real day. */
bool crm_valid_date(const char *s);

/* render.c */
/* crm_pg_time - PostgreSQL's timestamptz text ("2026-01-02 03:04:05.5+02")
   as RFC 3339 UTC ("2026-01-02T01:04:05.5Z") into out[40]; CM_EINVAL. */
int crm_pg_time(const char *pg, char out[40]);
/* crm_render_row - row of res as a JSON object by column type (columns
   named "_..." are left out); never NULL. */
cJSON *crm_render_row(const PGresult *res, int row);
/* crm_render_rows - every row as an array. */
cJSON *crm_render_rows(const PGresult *res);
struct cm_buf;
/* crm_render_json - the same object as crm_render_row, written as text
   straight into b (the list's hot path: no tree, no copies). */
void crm_render_json(struct cm_buf *b, const PGresult *res, int row);

/* scoring.c - the lead score: points per rule, capped (docs/crm.md). */
#define CRM_SCORE_SIZES 5
#define CRM_SCORE_STATUSES 8
#define CRM_SCORE_MAX_STEPS 8

struct crm_score_rules {
	int company_size[CRM_SCORE_SIZES]; /* startup .. enterprise */
	struct {
		double min;
		int points;
	} budget[CRM_SCORE_MAX_STEPS]; /* highest min first */
	int nbudget;
	int decision_maker, phone, company, job_title;
	int status[CRM_SCORE_STATUSES]; /* new .. unresponsive */
	struct {
		char value[32];
		int points;
	} timeline[CRM_SCORE_MAX_STEPS];
	int ntimeline;
	int cap;
};

struct crm_score_input {
	const char *company_size; /* NULL: unknown */
	const char *status;
	const char *timeline;
	bool has_budget;
	double budget;
	bool decision_maker;
	bool has_phone, has_company, has_job_title;
};

extern const char *const crm_company_sizes[];
extern const char *const crm_lead_statuses[];

/* crm_score_rules_default - the platform defaults (the table). */
void crm_score_rules_default(struct crm_score_rules *r);
/* crm_score_rules_parse - a tenant's rule object; fields left out keep
   the defaults. CM_EINVAL naming the field. */
int crm_score_rules_parse(const cJSON *json, struct crm_score_rules *r,
			  char errbuf[CM_ERRBUF_LEN]);
/* crm_score_rules_json - the rules as the object parse reads. */
cJSON *crm_score_rules_json(const struct crm_score_rules *r);
/* crm_score - the score 0..cap; *factors (may be NULL) gets an array of
   {"factor","value","points"} for every rule that gave points. */
int crm_score(const struct crm_score_rules *r, const struct crm_score_input *in,
	      cJSON **factors);

/* csv.c */
#define CRM_CSV_MAX_FIELDS 128
#define CRM_CSV_MAX_CELL 10000

struct crm_csv {
	const char *data;
	size_t len, pos;
	int line; /* the line the next record starts on, 1.. */
};

struct crm_csv_row {
	int n;
	char *cell[CRM_CSV_MAX_FIELDS];
};

void crm_csv_init(struct crm_csv *c, const char *data, size_t len);
/* crm_csv_next - the next record into row (release it with
   crm_csv_row_release): 0, CM_ENOENT at the end, CM_EINVAL (unterminated
   quote, text after a closing quote) or CM_E2BIG (too many cells, a cell
   too long) with errbuf naming the line. Blank lines are skipped. */
int crm_csv_next(struct crm_csv *c, struct crm_csv_row *row,
		 char errbuf[CM_ERRBUF_LEN]);
void crm_csv_row_release(struct crm_csv_row *row);
/* crm_csv_put - one cell, quoted when needed; a cell starting with = + -
   @ or a tab is prefixed with ' so spreadsheets do not run it. */
void crm_csv_put(struct cm_buf *b, const char *cell);

/* The service's state, handed to every handler. */
struct crm_relay;
struct crm_importer;
struct crm {
	unsigned magic;
	struct crm_relay *relay;
	struct crm_importer *importer;
	int import_sync_rows; /* more lines: the import runs in the background
			       */
	int export_max_rows;
	int export_page_rows;
	int import_max_rows;
};

/* relay.c - publish outbox rows: after each commit that added some
   (crm_relay_kick) and every interval_ms; run crm_due_scan every
   due_interval_ms (0: never). */
struct crm_relay *crm_relay_start(int interval_ms, int due_interval_ms,
				  char errbuf[CM_ERRBUF_LEN]);
void crm_relay_kick(struct crm_relay *r);
void crm_relay_stop(struct crm_relay *r);
/* io.c - the background importer: one thread taking queued imports in
   order; at most max_queued wait. Stopping rolls back a running import
   (its progress says failed) and fails the queued ones. */
struct crm_importer *crm_importer_start(int max_queued,
					char errbuf[CM_ERRBUF_LEN]);
void crm_importer_stop(struct crm_importer *q);
/* due.c - announce (activity.due) every tenant's open activities whose due
   time passed, once each; *announced gets how many. */
int crm_due_scan(int *announced, char errbuf[CM_ERRBUF_LEN]);

/* store.c, list.c - the generic operations; all in the tenant's
   transaction. */
struct crm_ctx {
	struct crm *crm;
	const char *tenant; /* verified tenant id */
	const char *sub;    /* the caller (principal sub) */
};

/* The answer of a create: status and body (owned). */
struct crm_reply {
	int status;
	cJSON *body;
	int64_t version; /* for the ETag; 0: none */
	bool replayed;	 /* from the idempotency store */
	bool reused;	 /* the key came with another request */
};

struct crm_list_query {
	const struct crm_entity *e;
	const struct crm_sort *sort;
	bool asc;
	int limit;
	const char *cursor;	/* NULL: first page */
	const char *params[24]; /* SQL parameters of the filters */
	int nparams;
	char where[2048]; /* " AND ..." conditions */
	char store[8192]; /* the parameters' text */
	size_t used;
};

/* crm_emit - an event into the outbox (inside the transaction); data is
   taken over. */
int crm_emit(PGconn *conn, const char *tenant, const char *type,
	     const char *aggregate_type, const char *aggregate_id, cJSON *data,
	     char errbuf[CM_ERRBUF_LEN]);
/* crm_fk_field - the field a foreign-key failure names ("fk_company_id"
   in errbuf -> "company_id" into out[64]); false if it is not one. */
bool crm_fk_field(const char *errbuf, char out[64]);

int crm_store_create(const struct crm_ctx *ctx, const struct crm_entity *e,
		     struct crm_values *v, const struct cm_idem *idem,
		     struct crm_reply *out, char errbuf[CM_ERRBUF_LEN]);
int crm_store_get(const struct crm_ctx *ctx, const struct crm_entity *e,
		  const char *id, cJSON **out, int64_t *version,
		  char errbuf[CM_ERRBUF_LEN]);
/* crm_store_update - patch v onto row id when its version is if_match
   (< 0: any); CM_ENOENT, CM_ESTALE. */
int crm_store_update(const struct crm_ctx *ctx, const struct crm_entity *e,
		     const char *id, int64_t if_match, struct crm_values *v,
		     cJSON **out, int64_t *version, char errbuf[CM_ERRBUF_LEN]);
int crm_store_delete(const struct crm_ctx *ctx, const struct crm_entity *e,
		     const char *id, int64_t if_match,
		     char errbuf[CM_ERRBUF_LEN]);
/* crm_store_bulk - apply v to each of ids (an array of uuids); *out gets
   {"updated":[ids],"not_found":[ids]}. All or nothing. */
int crm_store_bulk(const struct crm_ctx *ctx, const struct crm_entity *e,
		   const cJSON *ids, struct crm_values *v, cJSON **out,
		   char errbuf[CM_ERRBUF_LEN]);
/* crm_list_build - fill q (q->e set) from the request's query: filters,
   view, date ranges, q, sort, order, limit, cursor (get is the query
   accessor); CM_EINVAL (or CM_E2BIG) naming the parameter. */
typedef const char *(*crm_query_fn)(void *req, const char *name);
int crm_list_build(struct crm_list_query *q, crm_query_fn get, void *req,
		   char errbuf[CM_ERRBUF_LEN]);
/* crm_list_cursor_ok - q->cursor is absent or one of this sort/order. */
bool crm_list_cursor_ok(const struct crm_list_query *q);
/* crm_store_list - the page {"items","next_cursor"} as JSON text into
   out. */
int crm_store_list(const struct crm_ctx *ctx, const struct crm_list_query *q,
		   struct cm_buf *out, char errbuf[CM_ERRBUF_LEN]);
/* crm_store_page - one page's rows (at most q->limit + 1: the caller uses
   q->limit of them) after q->cursor, and the cursor of the next page in
   next[160] ("" on the last page); the caller PQclears *out. */
int crm_store_page(const struct crm_ctx *ctx, const struct crm_list_query *q,
		   PGresult **out, char next[160],
		   char errbuf[CM_ERRBUF_LEN]); /* crm_col - a column's text in
row 0 of res, or NULL (SQL NULL, or no such column). */
const char *crm_col(const PGresult *res, const char *name);
/* crm_select_row - the visible row id of e (private notes only for their
   author), FOR UPDATE when lock is set; CM_ENOENT. */
int crm_select_row(PGconn *conn, const struct crm_ctx *ctx,
		   const struct crm_entity *e, const char *id, bool lock,
		   PGresult **out, char errbuf[CM_ERRBUF_LEN]);
/* crm_insert_row - insert a row of e from v, completing it (a lead's score
   from rules, a deal's pipeline, stage and status) and adding its events;
   the new row in *out. */
int crm_insert_row(PGconn *conn, const struct crm_ctx *ctx,
		   const struct crm_entity *e, struct crm_values *v,
		   const struct crm_score_rules *rules, PGresult **out,
		   char errbuf[CM_ERRBUF_LEN]);
/* crm_update_row - lock row id, check if_match (< 0: any), apply v (a
   lead is rescored when v touches a score input; status and owner changes
   go to the timeline), add the events; the new row in *out. */
int crm_update_row(PGconn *conn, const struct crm_ctx *ctx,
		   const struct crm_entity *e, const char *id, int64_t if_match,
		   struct crm_values *v, PGresult **out,
		   char errbuf[CM_ERRBUF_LEN]);
/* crm_rescore_all - recompute every lead's score with the tenant's rules;
 *n gets how many changed. */
int crm_rescore_all(PGconn *conn, int64_t *n, char errbuf[CM_ERRBUF_LEN]);
/* crm_load_rules - the tenant's scoring rules (defaults when none). */
int crm_load_rules(PGconn *conn, struct crm_score_rules *r,
		   char errbuf[CM_ERRBUF_LEN]);
/* crm_insert_batch - insert n rows of e (leads or contacts) in one
   statement, with their scores (rules) and their created events in one
   more; CM_EINVAL for an event that fails the envelope check. */
int crm_insert_batch(PGconn *conn, const struct crm_ctx *ctx,
		     const struct crm_entity *e, struct crm_values *rows, int n,
		     const struct crm_score_rules *rules,
		     char errbuf[CM_ERRBUF_LEN]);
/* crm_lead_prelude - before adding n leads: the tenant's scoring rules
   into *rules, its lead custom field definitions into *defs (the
   caller's) and, when its plan sets max_leads, the limit check
   (crm_check_limit) - one round trip when there is no limit. */
int crm_lead_prelude(PGconn *conn, const char *tenant, int n,
		     struct crm_score_rules *rules, cJSON **defs,
		     char errbuf[CM_ERRBUF_LEN]);
/* fields.c - crm_custom_defs: the entity's ("lead") custom field
   definitions as a JSON array (the caller's). crm_custom_check: a
   custom_fields object (JSON text; NULL: not given) against them; on
   create a missing object counts as {}. CM_EINVAL naming the key. */
int crm_custom_defs(PGconn *conn, const char *entity, cJSON **defs,
		    char errbuf[CM_ERRBUF_LEN]);
int crm_custom_check(const cJSON *defs, const char *text, bool create,
		     char errbuf[CM_ERRBUF_LEN]);
/* crm_check_limit - CM_EACCES "max_leads (N) reached" when adding n
   leads would pass the tenant's plan limit. */
int crm_check_limit(PGconn *conn, const char *tenant, int n,
		    char errbuf[CM_ERRBUF_LEN]);
/* crm_timeline - an automatic activity (status_change, assignment). */
int crm_timeline(PGconn *conn, const char *type, const char *subject,
		 const char *column, const char *id, const char *sub,
		 char errbuf[CM_ERRBUF_LEN]);

struct cm_req;
/* handlers.c: the HTTP edge helpers the other files share. */
/* crm_req_ctx - ctx from req; false (after replying 403) for a read-only
   caller when write is set. */
bool crm_req_ctx(struct cm_req *req, void *arg, bool write, struct crm_ctx *ctx,
		 int *status);
/* crm_fail - the HTTP answer for a store error; returns the status. */
int crm_fail(struct cm_req *req, int rc, const char *what, const char *errbuf);
/* crm_if_match - the If-Match version (cm_req_if_match), -1 when absent
   or "*" (no check); CM_EINVAL when malformed. */
int crm_if_match(struct cm_req *req, int64_t *version);

void crm_handle_list(struct cm_req *req, void *arg);
void crm_handle_create(struct cm_req *req, void *arg);
void crm_handle_get(struct cm_req *req, void *arg);
void crm_handle_update(struct cm_req *req, void *arg);
void crm_handle_delete(struct cm_req *req, void *arg);
void crm_handle_bulk(struct cm_req *req, void *arg);
/* actions.c */
void crm_handle_lead_contacted(struct cm_req *req, void *arg);
void crm_handle_lead_lost(struct cm_req *req, void *arg);
void crm_handle_lead_convert(struct cm_req *req, void *arg);
void crm_handle_lead_merge(struct cm_req *req, void *arg);
void crm_handle_deal_move(struct cm_req *req, void *arg);
void crm_handle_activity_complete(struct cm_req *req, void *arg);
void crm_handle_deal_history(struct cm_req *req, void *arg);
/* pipelines.c */
void crm_handle_pipelines_list(struct cm_req *req, void *arg);
void crm_handle_pipeline_create(struct cm_req *req, void *arg);
void crm_handle_pipeline_get(struct cm_req *req, void *arg);
/* crm_default_stage - the default pipeline (made on first use) and its
   first stage, into pipeline[37] and stage[37]. */
int crm_default_stage(PGconn *conn, char pipeline[37], char stage[37],
		      char errbuf[CM_ERRBUF_LEN]);
/* views.c */
void crm_handle_search(struct cm_req *req, void *arg);
void crm_handle_dashboard(struct cm_req *req, void *arg);
void crm_handle_lead_sources(struct cm_req *req, void *arg);
void crm_handle_tags(struct cm_req *req, void *arg);
void crm_handle_rules_get(struct cm_req *req, void *arg);
void crm_handle_rules_put(struct cm_req *req, void *arg);
void crm_handle_duplicates(struct cm_req *req, void *arg);
void crm_handle_fields_list(struct cm_req *req, void *arg);
void crm_handle_field_put(struct cm_req *req, void *arg);
void crm_handle_field_delete(struct cm_req *req, void *arg);
/* io.c */
void crm_handle_export(struct cm_req *req, void *arg);
void crm_handle_import(struct cm_req *req, void *arg);
void crm_handle_import_get(struct cm_req *req, void *arg);

#endif
