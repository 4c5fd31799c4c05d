/*
 * io.c - CSV export of any filtered list, and CSV import of leads and
 * contacts.
 *
 * Export streams the file: one page (CRM_EXPORT_PAGE_ROWS, keyset on the
 * list's sort) per step of the worker's loop, each read in its own tenant
 * transaction and written as one chunk, the next step waiting while the
 * client has over 1 MiB unread; at most CRM_EXPORT_MAX_ROWS rows
 * (X-Export-Max-Rows). Pages are separate snapshots: rows written during
 * an export may or may not be in it, none twice (keyset order). Import reads
 * {"csv", "mapping", "dry_run", "allow_partial"}: the header row names the
 * columns, mapping renames them to fields (null skips one), every row is
 * checked as a create body would be, and the report lists each bad row. Unless
 * allow_partial, one bad row means nothing is imported (422 with the report);
 * the good rows go in one transaction, re-read from the text, so a large file
 * is never held as parsed rows.
 */
#include "crm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/db.h"
#include "common/http.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/redis.h"

#include "common/banned.h"

#define OID_BOOL 16
#define OID_TIMESTAMPTZ 1184
#define OID_JSONB 3802
#define EXPORT_PENDING_MAX ((size_t)1 << 20)
#define REPORT_ERRORS 100

static const char *
query_of(void *req, const char *name)
{
	return cm_req_query(req, name);
}

/* A cell as export text: times in RFC 3339, tag arrays joined by ';'. */
static void
put_cell(struct cm_buf *b, const PGresult *res, int r, int c)
{
	const char *v = PQgetvalue(res, r, c);
	struct cm_buf tags = CM_BUF_INIT(0);
	char errbuf[CM_ERRBUF_LEN], t[40];
	const cJSON *it;
	cJSON *j;

	if (PQgetisnull(res, r, c))
		return;
	if (PQftype(res, c) == OID_BOOL) {
		cm_buf_puts(b, v[0] == 't' ? "true" : "false");
		return;
	}
	if (PQftype(res, c) == OID_TIMESTAMPTZ && crm_pg_time(v, t) == 0) {
		crm_csv_put(b, t);
		return;
	}
	if (PQftype(res, c) == OID_JSONB && v[0] == '[' &&
	    (j = cm_json_parse(v, strlen(v), errbuf))) {
		cJSON_ArrayForEach(it, j)
		{
			if (cJSON_IsString(it))
				cm_buf_printf(&tags, "%s%s",
					      tags.len ? ";" : "",
					      it->valuestring);
		}
		if (tags.len || cJSON_GetArraySize(j) == 0) {
			crm_csv_put(b, cm_buf_str(&tags));
			cm_buf_release(&tags);
			cJSON_Delete(j);
			return;
		}
		cm_buf_release(&tags);
		cJSON_Delete(j);
	}
	crm_csv_put(b, v);
}

/* Row r of res as a CSV record (header: the column names). */
static void
put_record(struct cm_buf *b, const PGresult *res, int r, bool header)
{
	int c, n = 0;

	for (c = 0; c < PQnfields(res); c++) {
		if (PQfname(res, c)[0] == '_')
			continue;
		if (n++)
			cm_buf_putc(b, ',');
		if (header)
			crm_csv_put(b, PQfname(res, c));
		else
			put_cell(b, res, r, c);
	}
	cm_buf_puts(b, "\r\n");
}

/* One export in flight: the list query, and where it is. */
struct export
{
	struct cm_req *req;
	struct crm_ctx ctx;
	char tenant[40], sub[64];
	struct crm_list_query q;
	char cursor[160];
	int64_t sent, max;
	int page;
	bool header_sent;
};

/* The final call, and the end of x. */
static void
export_end(struct export *x)
{
	cm_req_stream_end(x->req);
	free(x);
}

/* One page: read it in the tenant's transaction, write it as one chunk.
   A failure after the header cannot change the status any more: a last
   record "#error,..." says the file is incomplete. */
static void
export_tick(struct cm_req *req, void *arg)
{
	struct export *x = arg;
	struct cm_buf b = CM_BUF_INIT(0);
	char errbuf[CM_ERRBUF_LEN] = "", next[160];
	PGresult *res = NULL;
	int64_t left = x->max - x->sent;
	bool done;
	int r;

	(void)req;
	if (cm_req_stream_pending(x->req) > EXPORT_PENDING_MAX)
		return; /* a slow reader: wait until it took what it has */
	x->q.limit = (int)(left < x->page ? left : x->page);
	x->q.cursor = x->cursor[0] ? x->cursor : NULL;
	if (crm_store_page(&x->ctx, &x->q, &res, next, errbuf) < 0) {
		cm_log_err("export: %s", errbuf);
		cm_buf_printf(&b,
			      "#error,the export failed after %lld rows\r\n",
			      (long long)x->sent);
		done = true;
	} else {
		if (!x->header_sent)
			put_record(&b, res, 0, true);
		x->header_sent = true;
		for (r = 0; r < PQntuples(res) && r < x->q.limit; r++)
			put_record(&b, res, r, false);
		x->sent += r;
		cm_strlcpy(x->cursor, next, sizeof(x->cursor));
		done = !next[0] || x->sent >= x->max;
	}
	PQclear(res);
	if ((b.len && cm_req_stream_write(x->req, b.data, b.len) < 0) || done)
		export_end(x);
	cm_buf_release(&b);
}

/* The client left, or the server stops. */
static void
export_close(struct cm_req *req, void *arg)
{
	(void)req;
	export_end(arg);
}

/* The export's state from the request (filters checked); 0 or a status. */
static int
export_setup(struct cm_req *req, void *arg, struct export *x)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct crm_ctx ctx;
	int status = 0;

	if (!crm_req_ctx(req, arg, false, &ctx, &status))
		return status;
	if (!(x->q.e = crm_entity_by_plural(cm_req_param(req, "entity"))))
		return cm_req_fail(req, 404, "not_found", "no such collection");
	if (crm_list_build(&x->q, query_of, req, errbuf) < 0)
		return cm_req_fail(req, 400, "bad_request", "%s", errbuf);
	if (!crm_list_cursor_ok(&x->q))
		return cm_req_fail(req, 400, "bad_request",
				   "the cursor is not one of this list");
	cm_strlcpy(x->tenant, ctx.tenant, sizeof(x->tenant));
	cm_strlcpy(x->sub, ctx.sub, sizeof(x->sub));
	x->ctx.crm = ctx.crm;
	x->ctx.tenant = x->tenant;
	x->ctx.sub = x->sub;
	x->max = ctx.crm ? ctx.crm->export_max_rows : 1000000;
	x->page = ctx.crm ? ctx.crm->export_page_rows : 500;
	if (x->q.cursor)
		cm_strlcpy(x->cursor, x->q.cursor, sizeof(x->cursor));
	return 0;
}

/* GET /api/crm/:entity/export - the filtered list (the list's query
   parameters; limit ignored, a cursor starts after it) as text/csv,
   streamed page by page. */
void
crm_handle_export(struct cm_req *req0, void *arg)
{
	struct export *x = cm_xcalloc(1, sizeof(*x));
	char hdr[128];
	struct cm_req *req;
	int status;

	if ((status = export_setup(req0, arg, x)) != 0) {
		free(x);
		cm_req_reply_json(req0, status, NULL);
		return;
	}
	snprintf(hdr, sizeof(hdr), "attachment; filename=\"%s.csv\"",
		 x->q.e->plural);
	cm_req_set_header(req0, "Content-Disposition", hdr);
	snprintf(hdr, sizeof(hdr), "%lld", (long long)x->max);
	cm_req_set_header(req0, "X-Export-Max-Rows", hdr);
	if (!(req = cm_req_defer(req0))) { /* cannot happen */
		free(x);
		cm_req_reply_json(req0, 500, NULL);
		return;
	}
	x->req = req;
	if (cm_req_stream_begin(req, 200, "text/csv; charset=utf-8") < 0 ||
	    cm_req_every(req, 1, export_tick, x) < 0) {
		export_end(x);
		return;
	}
	cm_req_on_close(req, export_close, x);
}

struct import {
	const struct crm_entity *e;
	const struct crm_ctx *ctx;
	const char *csv;
	size_t len;
	int max_rows;
	int ncols;
	const struct crm_field *map[CRM_CSV_MAX_FIELDS]; /* NULL: skipped */
	char *ckey[CRM_CSV_MAX_FIELDS]; /* "custom_fields.<key>" columns */
	cJSON *defs;			/* the entity's custom fields */
	int rows, valid;
	cJSON *errors; /* [{"row","line","message"}], at most REPORT_ERRORS */
	int nerrors;
	char id[37];  /* the import's id: its progress key */
	int inserted; /* rows written so far (uncommitted until the end) */
	bool dry_run, partial;
	const atomic_bool *stop; /* background: the service stops */
};

#define PROGRESS_TTL "86400"

/* The import's progress for GET /api/crm/imports/{id}: a Redis key of the
   tenant, best effort (a failure is logged, the import goes on). */
static void
progress_with(const struct import *im, const char *phase, int done, int total,
	      const char *name, cJSON *extra)
{
	char errbuf[CM_ERRBUF_LEN] = "", key[160], *text;
	cJSON *o = cJSON_CreateObject();
	redisReply *r;

	cJSON_AddStringToObject(o, "import_id", im->id);
	cJSON_AddStringToObject(o, "collection", im->e->plural);
	cJSON_AddStringToObject(o, "phase", phase);
	cJSON_AddNumberToObject(o, "rows_done", done);
	if (total >= 0)
		cJSON_AddNumberToObject(o, "rows_total", total);
	else
		cJSON_AddNullToObject(o, "rows_total");
	cJSON_AddNumberToObject(o, "imported",
				strcmp(phase, "done") == 0 ? im->inserted : 0);
	if (extra)
		cJSON_AddItemToObject(o, name, extra);
	text = cm_json_print(o);
	snprintf(key, sizeof(key), "crm:import:%s:%s", im->ctx->tenant, im->id);
	r = cm_redis_cmdf(errbuf, "SET %s %s EX " PROGRESS_TTL, key, text);
	if (!r)
		cm_log_warn("import progress: %s", errbuf);
	freeReplyObject(r);
	free(text);
	cJSON_Delete(o);
}

static void
progress(const struct import *im, const char *phase, int done, int total)
{
	progress_with(im, phase, done, total, NULL, NULL);
}

/* Columns an export has that an import leaves alone. */
static bool
system_column(const struct import *im, const char *name)
{
	static const char *const sys[] = { "id",	 "version",
					   "created_by", "created_at",
					   "updated_at", NULL };
	const struct crm_field *f = crm_entity_field(im->e, name);
	int i;

	for (i = 0; sys[i]; i++)
		if (strcmp(sys[i], name) == 0)
			return true;
	return f && (f->flags & CRM_F_READONLY);
}

static const cJSON *
custom_def(const struct import *im, const char *key)
{
	const cJSON *d, *k;

	cJSON_ArrayForEach(d, im->defs)
	{
		k = cJSON_GetObjectItemCaseSensitive(d, "key");
		if (cJSON_IsString(k) && strcmp(k->valuestring, key) == 0)
			return d;
	}
	return NULL;
}

/* Column i holds the defined custom field key. */
static bool
custom_column(struct import *im, int i, const char *key)
{
	if (!custom_def(im, key))
		return false;
	im->map[i] = crm_entity_field(im->e, "custom_fields");
	im->ckey[i] = cm_xstrdup(key);
	return true;
}

/* A custom field cell as its definition's type. */
static cJSON *
custom_value(const struct import *im, const char *key, const char *cell)
{
	const cJSON *t =
		cJSON_GetObjectItemCaseSensitive(custom_def(im, key), "type");
	double d;
	bool b;

	if (cJSON_IsString(t) && strcmp(t->valuestring, "number") == 0 &&
	    cm_parse_double(cell, -1e300, 1e300, &d) == 0)
		return cJSON_CreateNumber(d);
	if (cJSON_IsString(t) && strcmp(t->valuestring, "boolean") == 0 &&
	    cm_parse_bool(cell, &b) == 0)
		return cJSON_CreateBool(b);
	return cJSON_CreateString(cell);
}

/* The column -> field map from the header row and mapping; an export's
   system and read-only columns are skipped unless mapped. */
static int
map_header(struct import *im, const struct crm_csv_row *h, const cJSON *mapping,
	   char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *m;
	const char *name;
	int i, j;

	for (i = 0; i < h->n; i++) {
		m = mapping ? cJSON_GetObjectItemCaseSensitive(mapping,
							       h->cell[i])
			    : NULL;
		if ((m && cJSON_IsNull(m)) ||
		    (!m && system_column(im, h->cell[i]))) {
			im->map[i] = NULL;
			continue;
		}
		name = cJSON_IsString(m) ? m->valuestring : h->cell[i];
		if (strncmp(name, "custom_fields.", 14) == 0 &&
		    custom_column(im, i, name + 14))
			continue;
		im->map[i] = crm_entity_field(im->e, name);
		if (!im->map[i] || (im->map[i]->flags & CRM_F_READONLY)) {
			cm_errf(errbuf,
				"column '%.40s' maps to no %s field; "
				"map it in 'mapping' (null skips it)",
				h->cell[i], im->e->name);
			return CM_EINVAL;
		}
		for (j = 0; j < i; j++) {
			if (im->map[j] == im->map[i]) {
				cm_errf(errbuf, "two columns map to field '%s'",
					im->map[i]->name);
				return CM_EINVAL;
			}
		}
	}
	im->ncols = h->n;
	return 0;
}

/* One data row as values of a create. */
static int
row_values(const struct import *im, const struct crm_csv_row *row,
	   struct crm_values *v, char errbuf[CM_ERRBUF_LEN])
{
	cJSON *obj = cJSON_CreateObject(), *custom;
	const char *cell, *s;
	int i, rc;

	if (row->n > im->ncols) {
		cJSON_Delete(obj);
		cm_errf(errbuf, "more cells (%d) than header columns (%d)",
			row->n, im->ncols);
		return CM_EINVAL;
	}
	for (i = 0; i < row->n; i++) {
		cell = row->cell[i];
		if (!im->map[i] || !cell[0])
			continue;
		if (cell[0] == '\'' && cell[1] && strchr("=+-@\t", cell[1]))
			cell++; /* our export's formula guard */
		if (im->ckey[i]) {
			if (!(custom = cJSON_GetObjectItem(obj,
							   "custom_fields")))
				custom = cJSON_AddObjectToObject(
					obj, "custom_fields");
			cJSON_AddItemToObject(
				custom, im->ckey[i],
				custom_value(im, im->ckey[i], cell));
			continue;
		}
		cJSON_AddItemToObject(obj, im->map[i]->name,
				      crm_coerce_text(im->map[i], cell));
	}
	rc = crm_entity_parse(im->e, obj, true, v, errbuf);
	cJSON_Delete(obj);
	if (rc == 0 &&
	    (rc = crm_custom_check(im->defs,
				   crm_values_find(v, "custom_fields", NULL),
				   true, errbuf)) < 0)
		crm_values_release(v);
	s = rc == 0 ? crm_values_find(v, "status", NULL) : NULL;
	if (rc == 0 && im->e == &crm_leads && s && !strcmp(s, "converted")) {
		crm_values_release(v);
		cm_errf(errbuf, "field 'status' cannot be converted on import");
		rc = CM_EINVAL;
	}
	return rc;
}

static void
report_error(struct import *im, int line, const char *msg)
{
	cJSON *e;

	if (im->nerrors++ >= REPORT_ERRORS)
		return;
	e = cJSON_CreateObject();
	cJSON_AddNumberToObject(e, "row", im->rows);
	cJSON_AddNumberToObject(e, "line", line);
	cJSON_AddStringToObject(e, "message", msg);
	cJSON_AddItemToArray(im->errors, e);
}

#define BATCH_ROWS 1000

/* Insert the batch of valid rows kept so far, and empty it. */
static int
flush(struct import *im, PGconn *conn, const struct crm_score_rules *rules,
      struct crm_values *batch, int *n, char errbuf[CM_ERRBUF_LEN])
{
	char msg[CM_ERRBUF_LEN];
	int i, rc = 0;

	if (im->stop && atomic_load(im->stop)) {
		cm_errf(errbuf, "the service is stopping; import again");
		rc = CM_EAGAIN;
	} else if (*n > 0) {
		rc = crm_insert_batch(conn, im->ctx, im->e, batch, *n, rules,
				      errbuf);
	}
	if (rc == 0 && *n > 0) {
		im->inserted += *n;
		progress(im, "importing", im->inserted, im->valid);
	}
	for (i = 0; i < *n; i++)
		crm_values_release(&batch[i]);
	if (rc < 0) {
		cm_errf(msg, "rows up to %d: %s", im->rows, errbuf);
		cm_strlcpy(errbuf, msg, CM_ERRBUF_LEN);
	}
	*n = 0;
	return rc;
}

/* Walk the data rows; with conn, insert the valid ones in batches (else
   check only). A CSV syntax error or too many rows fails the file. */
static int
walk(struct import *im, PGconn *conn, const struct crm_score_rules *rules,
     struct crm_values *batch, char errbuf[CM_ERRBUF_LEN])
{
	struct crm_csv c;
	struct crm_csv_row row = { 0 };
	char msg[CM_ERRBUF_LEN];
	int rc, line, n = 0;

	crm_csv_init(&c, im->csv, im->len);
	if ((rc = crm_csv_next(&c, &row, errbuf)) < 0)
		return rc; /* the header; checked before */
	crm_csv_row_release(&row);
	im->rows = im->valid = 0;
	for (;;) {
		line = c.line;
		if ((rc = crm_csv_next(&c, &row, errbuf)) == CM_ENOENT)
			break;
		if (rc < 0)
			goto out;
		if (++im->rows > im->max_rows) {
			crm_csv_row_release(&row);
			cm_errf(errbuf, "the file has over %d rows",
				im->max_rows);
			rc = CM_E2BIG;
			goto out;
		}
		msg[0] = '\0';
		rc = row_values(im, &row, conn ? &batch[n] : &batch[0], msg);
		crm_csv_row_release(&row);
		if (rc < 0) {
			if (!conn)
				report_error(im, line, msg);
			continue;
		}
		im->valid++;
		if (!conn) {
			crm_values_release(&batch[0]);
			if (im->rows % BATCH_ROWS == 0)
				progress(im, "checking", im->rows, -1);
			continue;
		}
		if (++n == BATCH_ROWS &&
		    (rc = flush(im, conn, rules, batch, &n, errbuf)) < 0)
			goto out;
	}
	rc = conn ? flush(im, conn, rules, batch, &n, errbuf) : 0;
out:
	while (n > 0)
		crm_values_release(&batch[--n]);
	return rc;
}

struct insert_work {
	struct import *im;
	bool insert;
	struct crm_values *batch; /* BATCH_ROWS */
};

static int
insert_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct insert_work *w = arg;
	struct crm_score_rules rules;
	cJSON *defs = NULL;
	int rc;

	crm_score_rules_default(&rules);
	if (w->im->e == &crm_leads) {
		rc = crm_lead_prelude(conn, w->im->ctx->tenant, w->im->valid,
				      &rules, &defs, errbuf);
		cJSON_Delete(defs);
		if (rc < 0)
			return rc;
	}
	return w->insert ? walk(w->im, conn, &rules, w->batch, errbuf) : 0;
}

static cJSON *
report(struct import *im, bool dry_run, int imported)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "import_id", im->id);
	cJSON_AddBoolToObject(o, "dry_run", dry_run);
	cJSON_AddNumberToObject(o, "rows", im->rows);
	cJSON_AddNumberToObject(o, "valid", im->valid);
	cJSON_AddNumberToObject(o, "invalid", im->rows - im->valid);
	cJSON_AddNumberToObject(o, "imported", imported);
	cJSON_AddItemToObject(o, "errors", im->errors);
	im->errors = NULL;
	return o;
}

/* The 422 answer: the error and the report, nothing imported. */
/* The error of a rejected import (request_id NULL: none). */
static cJSON *
rejection(const struct import *im, const char *request_id)
{
	cJSON *e = cJSON_CreateObject();
	char msg[160];

	snprintf(msg, sizeof(msg),
		 "%d of %d rows are invalid; nothing was imported (see "
		 "report.errors, or set allow_partial)",
		 im->rows - im->valid, im->rows);
	cJSON_AddStringToObject(e, "code", "validation_failed");
	cJSON_AddStringToObject(e, "message", msg);
	if (request_id)
		cJSON_AddStringToObject(e, "request_id", request_id);
	return e;
}

/* Check and insert (one transaction). 0 with *rep (the report) and
   *rejected set when rows were invalid (nothing imported); else a code
   with errbuf. The progress key follows every phase. */
static int
import_run(struct import *im, cJSON **rep, bool *rejected,
	   char errbuf[CM_ERRBUF_LEN])
{
	struct insert_work w = { im, false, NULL };
	int rc;

	*rep = NULL;
	*rejected = false;
	w.batch = cm_xcalloc(BATCH_ROWS, sizeof(*w.batch));
	progress(im, "checking", 0, -1);
	if ((rc = walk(im, NULL, NULL, w.batch, errbuf)) < 0)
		goto out;
	if (im->valid < im->rows && !im->partial) {
		*rejected = true;
		*rep = report(im, im->dry_run, 0);
		progress_with(im, "rejected", im->rows, im->rows, "report",
			      cJSON_Duplicate(*rep, true));
		goto out;
	}
	w.insert = !im->dry_run;
	if ((rc = cm_db_tx_tenant(im->ctx->tenant, insert_work, &w, errbuf)) <
	    0) {
		im->inserted = 0;
		goto out;
	}
	if (!im->dry_run)
		crm_relay_kick(im->ctx->crm ? im->ctx->crm->relay : NULL);
	*rep = report(im, im->dry_run, im->dry_run ? 0 : im->valid);
	progress_with(im, "done", im->inserted, im->valid, "report",
		      cJSON_Duplicate(*rep, true));
out:
	free(w.batch);
	return rc;
}

/* Parse the body and the header row into im; 0 or a status. */
static int
import_setup(struct cm_req *req, struct import *im, const cJSON *body,
	     bool *async)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	const cJSON *mapping = NULL;
	struct crm_csv_row h = { 0 };
	struct crm_csv c;
	const char *csv = NULL, *id = NULL;
	int rc;

	im->dry_run = im->partial = *async = false;
	if (cm_json_get_uuid(body, NULL, "import_id", false, &id, errbuf) ==
	    CM_EINVAL)
		return cm_req_fail(req, 400, "validation_failed", "%s", errbuf);
	if (id)
		cm_strlcpy(im->id, id, sizeof(im->id));
	else if (cm_uuid_v4(im->id) < 0)
		return cm_req_fail(req, 500, "internal", "no randomness");
	if (cm_json_get_str(body, NULL, "csv", true, 0, &csv, errbuf) < 0 ||
	    cm_json_get_object(body, NULL, "mapping", false, &mapping,
			       errbuf) == CM_EINVAL ||
	    cm_json_get_bool(body, NULL, "dry_run", false, &im->dry_run,
			     errbuf) == CM_EINVAL ||
	    cm_json_get_bool(body, NULL, "allow_partial", false, &im->partial,
			     errbuf) == CM_EINVAL ||
	    cm_json_get_bool(body, NULL, "async", false, async, errbuf) ==
		    CM_EINVAL)
		return cm_req_fail(req, 400, "validation_failed", "%s", errbuf);
	im->csv = csv;
	im->len = strlen(csv);
	crm_csv_init(&c, csv, im->len);
	if ((rc = crm_csv_next(&c, &h, errbuf)) < 0) {
		return cm_req_fail(req, 400, "validation_failed", "%s",
				   rc == CM_ENOENT ? "the csv has no header row"
						   : errbuf);
	}
	rc = map_header(im, &h, mapping, errbuf);
	crm_csv_row_release(&h);
	if (rc < 0)
		return cm_req_fail(req, 400, "validation_failed", "%s", errbuf);
	return 0;
}

/* A failed import's error for its progress key (the code and message a
   synchronous import would have answered). */
static cJSON *
failure(int rc, const char *errbuf)
{
	cJSON *e = cJSON_CreateObject();
	char field[64], msg[CM_ERRBUF_LEN];
	const char *code = "internal";

	cm_strlcpy(msg, "the import could not be completed", sizeof(msg));
	if (rc == CM_EACCES || rc == CM_EINVAL || rc == CM_E2BIG ||
	    rc == CM_EAGAIN) {
		code = rc == CM_EACCES	 ? "limit_exceeded"
		       : rc == CM_E2BIG	 ? "payload_too_large"
		       : rc == CM_EAGAIN ? "unavailable"
					 : "validation_failed";
		cm_strlcpy(msg, errbuf, sizeof(msg));
	} else if (crm_fk_field(errbuf, field)) {
		code = "validation_failed";
		snprintf(msg, sizeof(msg), "field '%s' names no such record",
			 field);
	}
	cJSON_AddStringToObject(e, "code", code);
	cJSON_AddStringToObject(e, "message", msg);
	return e;
}

static void
import_free(struct import *im)
{
	int i;

	if (!im)
		return;
	cJSON_Delete(im->errors);
	cJSON_Delete(im->defs);
	for (i = 0; i < CRM_CSV_MAX_FIELDS; i++)
		free(im->ckey[i]);
	free(im);
}

/* A background import: the request's state, copied. */
struct import_job {
	struct import *im;
	struct crm_ctx ctx;
	char tenant[40], sub[64];
	cJSON *body; /* owns the csv text im points into */
	struct import_job *next;
};

struct crm_importer {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct import_job *head, *tail;
	int queued, max_queued;
	atomic_bool stop;
};

static void
job_free(struct import_job *j)
{
	import_free(j->im);
	cJSON_Delete(j->body);
	free(j);
}

static void
job_run(struct import_job *j)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *rep = NULL;
	bool rejected;
	int rc;

	rc = import_run(j->im, &rep, &rejected, errbuf);
	if (rc < 0) {
		if (rc != CM_EAGAIN && rc != CM_EINVAL && rc != CM_EACCES)
			cm_log_err("import %s: %s", j->im->id, errbuf);
		progress_with(j->im, "failed", j->im->rows, -1, "error",
			      failure(rc, errbuf));
	}
	cJSON_Delete(rep);
}

static struct import_job *
next_job(struct crm_importer *q)
{
	struct import_job *j;

	pthread_mutex_lock(&q->mu);
	while (!q->head && !atomic_load(&q->stop))
		pthread_cond_wait(&q->cond, &q->mu);
	j = q->head;
	if (j) {
		q->head = j->next;
		if (!q->head)
			q->tail = NULL;
		q->queued--;
	}
	pthread_mutex_unlock(&q->mu);
	return j;
}

static void *
importer_main(void *arg)
{
	struct crm_importer *q = arg;
	struct import_job *j;

	while ((j = next_job(q))) {
		if (atomic_load(&q->stop)) /* queued, never started */
			progress_with(j->im, "failed", 0, -1, "error",
				      failure(CM_EAGAIN, "the service "
							 "stopped; import "
							 "again"));
		else
			job_run(j);
		job_free(j);
	}
	return NULL;
}

struct crm_importer *
crm_importer_start(int max_queued, char errbuf[CM_ERRBUF_LEN])
{
	struct crm_importer *q = cm_xcalloc(1, sizeof(*q));

	q->max_queued = max_queued;
	atomic_init(&q->stop, false);
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cond, NULL);
	if (pthread_create(&q->thread, NULL, importer_main, q) != 0) {
		cm_errf(errbuf, "importer: cannot start a thread");
		pthread_cond_destroy(&q->cond);
		pthread_mutex_destroy(&q->mu);
		free(q);
		return NULL;
	}
	return q;
}

void
crm_importer_stop(struct crm_importer *q)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	atomic_store(&q->stop, true); /* the running import rolls back */
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->mu);
	pthread_join(q->thread, NULL);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->mu);
	free(q);
}

/* Queue the import for the background thread; false when the queue is
   full. Takes im and body over on success. */
static bool
enqueue(struct crm_importer *q, struct import *im, cJSON *body,
	const struct crm_ctx *ctx)
{
	struct import_job *j;

	pthread_mutex_lock(&q->mu);
	if (q->queued >= q->max_queued) {
		pthread_mutex_unlock(&q->mu);
		return false;
	}
	j = cm_xcalloc(1, sizeof(*j));
	cm_strlcpy(j->tenant, ctx->tenant, sizeof(j->tenant));
	cm_strlcpy(j->sub, ctx->sub, sizeof(j->sub));
	j->ctx.crm = ctx->crm;
	j->ctx.tenant = j->tenant;
	j->ctx.sub = j->sub;
	j->im = im;
	j->body = body;
	im->ctx = &j->ctx;
	im->stop = &q->stop;
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
	q->queued++;
	progress(im, "queued", 0, -1);
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->mu);
	return true;
}

/* Lines of the csv (an upper bound of its rows). */
static int
lines(const char *csv, size_t len)
{
	const char *p = csv, *end = csv + len;
	int n = 0;

	while ((p = memchr(p, '\n', (size_t)(end - p)))) {
		n++;
		p++;
	}
	return n;
}

/* The synchronous answer: 200 report, 422 error + report, or the error. */
static int
import_now(struct cm_req *req, struct import *im, cJSON **out)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *rep = NULL;
	bool rejected;
	int rc;

	rc = import_run(im, &rep, &rejected, errbuf);
	if (rc < 0) {
		progress_with(im, "failed", im->rows, -1, "error",
			      failure(rc, errbuf));
		return crm_fail(req, rc, "import", errbuf);
	}
	if (rejected) {
		*out = cJSON_CreateObject();
		cJSON_AddItemToObject(*out, "error",
				      rejection(im, cm_req_id(req)));
		cJSON_AddItemToObject(*out, "report", rep);
		return 422;
	}
	*out = rep;
	return 200;
}

static int
defs_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct import *im = arg;

	return crm_custom_defs(conn, im->e->name, &im->defs, errbuf);
}

/* POST /api/crm/:entity/import - leads or contacts from CSV: answered
   when done, or with 202 and checked and imported in the background
   ("async": true, or more lines than CRM_IMPORT_SYNC_ROWS). */
void
crm_handle_import(struct cm_req *req, void *arg)
{
	struct import *im = cm_xcalloc(1, sizeof(*im));
	char errbuf[CM_ERRBUF_LEN] = "";
	bool async = false;
	struct crm_ctx ctx;
	cJSON *body = NULL, *out = NULL;
	int status = 500, rc;

	im->errors = cJSON_CreateArray();
	if (!crm_req_ctx(req, arg, true, &ctx, &status))
		goto out;
	im->e = crm_entity_by_plural(cm_req_param(req, "entity"));
	if (im->e != &crm_leads && im->e != &crm_contacts) {
		status = cm_req_fail(req, 404, "not_found",
				     "import takes leads or contacts");
		goto out;
	}
	im->ctx = &ctx;
	im->max_rows = ctx.crm ? ctx.crm->import_max_rows : 50000;
	if ((status = cm_req_json(req, &body)) != 0)
		goto out;
	if ((rc = cm_db_tx_tenant(ctx.tenant, defs_work, im, errbuf)) < 0) {
		status = crm_fail(req, rc, "import", errbuf);
		goto out;
	}
	if ((status = import_setup(req, im, body, &async)) != 0)
		goto out;
	async = async || (ctx.crm &&
			  lines(im->csv, im->len) > ctx.crm->import_sync_rows);
	if (!async || !ctx.crm) {
		status = import_now(req, im, &out);
		goto out;
	}
	if (!enqueue(ctx.crm->importer, im, body, &ctx)) {
		cm_req_set_header(req, "Retry-After", "30");
		status =
			cm_req_fail(req, 503, "unavailable",
				    "too many imports are queued; retry later");
		goto out;
	}
	out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "import_id", im->id);
	cJSON_AddStringToObject(out, "phase", "queued");
	im = NULL; /* the job's now */
	body = NULL;
	status = 202;
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
	cJSON_Delete(body);
	import_free(im);
}

/* GET /api/crm/imports/:id - an import's progress: phase checking,
   importing (rows written in its still open transaction), done, rejected
   or failed; kept 24 h. Another tenant's id is not found. */
void
crm_handle_import_get(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "", key[160];
	const char *id = cm_req_param(req, "id");
	struct crm_ctx ctx;
	redisReply *r = NULL;
	cJSON *out = NULL;
	int status = 500;

	if (!crm_req_ctx(req, arg, false, &ctx, &status))
		goto out;
	if (!id || !cm_is_uuid(id)) {
		status = crm_fail(req, CM_ENOENT, "import", "");
		goto out;
	}
	snprintf(key, sizeof(key), "crm:import:%s:%s", ctx.tenant, id);
	if (!(r = cm_redis_cmdf(errbuf, "GET %s", key))) {
		cm_log_err("import progress: %s", errbuf);
		status = cm_req_fail(req, 503, "unavailable",
				     "the import progress store is down");
		goto out;
	}
	if (r->type != REDIS_REPLY_STRING ||
	    !(out = cm_json_parse(r->str, r->len, errbuf))) {
		status = crm_fail(req, CM_ENOENT, "import", "");
		goto out;
	}
	status = 200;
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
	freeReplyObject(r);
}
