/*
 * list.c - list pages: filters, views, date ranges, text search, sort and
 * the keyset cursor.
 *
 * A cursor is "<sort>~<a|d>~<value>~<id>" of the last row of a page (the
 * value as epoch microseconds for times): the next page is the rows after
 * it in (sort, id) order, so pages stay stable under inserts. Filters are
 * parameters, never SQL text; a filter may list values separated by
 * commas (any of them matches).
 */
#include "crm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/bus.h"
#include "common/db.h"
#include "common/json.h"
#include "common/mem.h"

#include "common/banned.h"

#define FILTER_MAX 1000
#define FILTER_VALUES 20

/* Keep text for a parameter: q->params point into q->store. */
static const char *
keep(struct crm_list_query *q, const char *text)
{
	size_t n = strlen(text) + 1;
	char *p;

	if (q->used + n > sizeof(q->store))
		return NULL;
	p = q->store + q->used;
	memcpy(p, text, n);
	q->used += n;
	return p;
}

static int
add_param(struct crm_list_query *q, const char *text,
	  char errbuf[CM_ERRBUF_LEN])
{
	const char *p = keep(q, text);

	if (!p ||
	    q->nparams >= (int)(sizeof(q->params) / sizeof(q->params[0]))) {
		cm_errf(errbuf, "too many or too long filters");
		return CM_E2BIG;
	}
	q->params[q->nparams++] = p;
	return q->nparams;
}

static int add_where(struct crm_list_query *q, char errbuf[CM_ERRBUF_LEN],
		     const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
add_where(struct crm_list_query *q, char errbuf[CM_ERRBUF_LEN], const char *fmt,
	  ...)
{
	size_t used = strlen(q->where);
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(q->where + used, sizeof(q->where) - used, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(q->where) - used) {
		cm_errf(errbuf, "too many filters");
		return CM_E2BIG;
	}
	return 0;
}

/* One filter value checked for its field's kind. */
static int
check_value(const struct crm_field *f, const char *v,
	    char errbuf[CM_ERRBUF_LEN])
{
	const char *const *e;

	if (f->kind == CRM_K_UUID && !cm_is_uuid(v)) {
		cm_errf(errbuf, "filter '%s' must be uuids", f->name);
		return CM_EINVAL;
	}
	if (f->kind == CRM_K_ENUM) {
		for (e = f->values; *e && strcmp(*e, v); e++)
			;
		if (!*e) {
			cm_errf(errbuf, "filter '%s': '%.40s' is not a value",
				f->name, v);
			return CM_EINVAL;
		}
	}
	if (!*v || strlen(v) > (f->max > 0 ? (size_t)f->max : 200)) {
		cm_errf(errbuf, "filter '%s' has an empty or long value",
			f->name);
		return CM_EINVAL;
	}
	return 0;
}

/* "a,b" as the array literal {"a","b"}, each value checked. */
static int
array_literal(const struct crm_field *f, const char *list, struct cm_buf *b,
	      char errbuf[CM_ERRBUF_LEN])
{
	char *copy = cm_xstrdup(list), *v = copy, *end;
	const char *s;
	int n = 0, rc = 0;

	cm_buf_putc(b, '{');
	for (;;) {
		end = strchr(v, ',');
		if (end)
			*end = '\0';
		if ((rc = check_value(f, v, errbuf)) < 0 ||
		    ++n > FILTER_VALUES) {
			if (rc == 0)
				cm_errf(errbuf,
					"filter '%s' has over %d "
					"values",
					f->name, FILTER_VALUES);
			rc = CM_EINVAL;
			break;
		}
		cm_buf_puts(b, n > 1 ? ",\"" : "\"");
		for (s = v; *s; s++) {
			if (*s == '"' || *s == '\\')
				cm_buf_putc(b, '\\');
			cm_buf_putc(b, *s);
		}
		cm_buf_putc(b, '"');
		if (!end)
			break;
		v = end + 1;
	}
	cm_buf_putc(b, '}');
	free(copy);
	return rc;
}

static int
field_filter(struct crm_list_query *q, const struct crm_field *f,
	     const char *value, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf b = CM_BUF_INIT(FILTER_MAX * 2);
	const char *type = f->kind == CRM_K_UUID ? "uuid" : "text";
	int rc, n;

	if (strlen(value) > FILTER_MAX) {
		cm_errf(errbuf, "filter '%s' is over %d bytes", f->name,
			FILTER_MAX);
		return CM_EINVAL;
	}
	if (f->kind == CRM_K_UUID && strcmp(value, "none") == 0)
		return add_where(q, errbuf, " AND %s IS NULL", f->name);
	rc = array_literal(f, value, &b, errbuf);
	if (rc == 0 && (n = add_param(q, cm_buf_str(&b), errbuf)) < 0)
		rc = n;
	if (rc == 0 && f->kind == CRM_K_TAGS)
		rc = add_where(q, errbuf, " AND %s && $%d::text[]", f->name, n);
	else if (rc == 0)
		rc = add_where(q, errbuf, " AND %s = ANY($%d::%s[])", f->name,
			       n, type);
	cm_buf_release(&b);
	return rc;
}

static int
range_filter(struct crm_list_query *q, const char *name, const char *value,
	     char errbuf[CM_ERRBUF_LEN])
{
	char column[16];
	bool after = strstr(name, "_after") != NULL;
	int n;

	if (!cm_bus_is_rfc3339(value)) {
		cm_errf(errbuf, "filter '%s' must be an RFC 3339 time", name);
		return CM_EINVAL;
	}
	cm_strlcpy(column, name, (size_t)(strchr(name, '_') - name) + 1);
	if ((n = add_param(q, value, errbuf)) < 0)
		return n;
	return add_where(q, errbuf, " AND %s_at %s $%d::timestamptz", column,
			 after ? ">=" : "<", n);
}

static int
view_filter(struct crm_list_query *q, const char *name,
	    char errbuf[CM_ERRBUF_LEN])
{
	const struct crm_view *v;

	for (v = q->e->views; v->name; v++)
		if (strcmp(v->name, name) == 0)
			return add_where(q, errbuf, " AND (%s)", v->sql);
	cm_errf(errbuf, "view '%.40s' is not a %s view", name, q->e->name);
	return CM_EINVAL;
}

static int
sort_and_page(struct crm_list_query *q, crm_query_fn get, void *req,
	      char errbuf[CM_ERRBUF_LEN])
{
	const char *sort = get(req, "sort"), *order = get(req, "order"),
		   *limit = get(req, "limit");
	int64_t n = CRM_LIST_DEFAULT;
	const struct crm_sort *s;

	q->sort = q->e->sorts;
	for (s = q->e->sorts; sort && s->name; s++)
		if (strcmp(s->name, sort) == 0)
			break;
	if (sort && !s->name) {
		cm_errf(errbuf, "sort must be one of the %s sort keys",
			q->e->name);
		return CM_EINVAL;
	}
	if (sort)
		q->sort = s;
	if (order && strcmp(order, "asc") && strcmp(order, "desc")) {
		cm_errf(errbuf, "order must be asc or desc");
		return CM_EINVAL;
	}
	q->asc = order && strcmp(order, "asc") == 0;
	if (limit && cm_parse_i64(limit, 1, CRM_LIST_MAX, &n) < 0) {
		cm_errf(errbuf, "limit must be between 1 and %d", CRM_LIST_MAX);
		return CM_EINVAL;
	}
	q->limit = (int)n;
	q->cursor = get(req, "cursor");
	return 0;
}

int
crm_list_build(struct crm_list_query *q, crm_query_fn get, void *req,
	       char errbuf[CM_ERRBUF_LEN])
{
	static const char *const ranges[] = { "created_after", "created_before",
					      "updated_after", "updated_before",
					      NULL };
	const struct crm_field *f;
	const char *v;
	int i, n, rc;

	for (f = q->e->fields; f->name; f++) {
		if ((f->flags & CRM_F_FILTER) && (v = get(req, f->name)) &&
		    (rc = field_filter(q, f, v, errbuf)) < 0)
			return rc;
	}
	for (i = 0; ranges[i]; i++) {
		if ((v = get(req, ranges[i])) &&
		    (rc = range_filter(q, ranges[i], v, errbuf)) < 0)
			return rc;
	}
	if ((v = get(req, "view")) && (rc = view_filter(q, v, errbuf)) < 0)
		return rc;
	if ((v = get(req, "q"))) {
		if (!q->e->searchable || strlen(v) > 200 || !*v) {
			cm_errf(errbuf, "q must be 1 to 200 bytes (leads, "
					"contacts, companies, deals)");
			return CM_EINVAL;
		}
		if ((n = add_param(q, v, errbuf)) < 0)
			return n;
		if ((rc = add_where(q, errbuf,
				    " AND search @@ websearch_to_tsquery("
				    "'simple', $%d)",
				    n)) < 0)
			return rc;
	}
	return sort_and_page(q, get, req, errbuf);
}

/* Split "<sort>~<a|d>~<value>~<uuid>"; false unless it fits q. */
static bool
cursor_parts(const struct crm_list_query *q, char value[48], char id[37])
{
	const char *c = q->cursor, *p, *last;
	size_t ns = strlen(q->sort->name), nv;
	int64_t us;
	double d;

	if (strncmp(c, q->sort->name, ns) != 0 || c[ns] != '~' ||
	    c[ns + 1] != (q->asc ? 'a' : 'd') || c[ns + 2] != '~')
		return false;
	p = c + ns + 3;
	last = strrchr(p, '~');
	if (!last || !cm_is_uuid(last + 1))
		return false;
	nv = (size_t)(last - p);
	if (nv == 0 || nv >= 48)
		return false;
	cm_strlcpy(value, p, nv + 1);
	cm_strlcpy(id, last + 1, 37);
	if (q->sort->is_time)
		return cm_parse_i64(value, INT64_MIN, INT64_MAX, &us) == 0;
	return cm_parse_double(value, -1e300, 1e300, &d) == 0;
}

bool
crm_list_cursor_ok(const struct crm_list_query *q)
{
	char value[48], id[37];

	return !q->cursor || cursor_parts(q, value, id);
}

/* The list SELECT; with_cursor adds the keyset condition. */
static int
list_sql(const struct crm_list_query *q, const struct crm_ctx *ctx,
	 struct cm_buf *sql, const char **p, int *np, char value[48],
	 char id[37], char lim[16], bool page, char errbuf[CM_ERRBUF_LEN])
{
	const char *dir = q->asc ? "ASC" : "DESC", *s = q->sort->name;
	int n = q->nparams;

	memcpy(p, q->params, sizeof(q->params[0]) * (size_t)n);
	if (q->sort->is_time)
		cm_buf_printf(sql,
			      "SELECT %s, (extract(epoch FROM %s) * "
			      "1000000)::bigint AS _k FROM %s "
			      "WHERE deleted_at IS NULL%s",
			      q->e->columns, s, q->e->table, q->where);
	else
		cm_buf_printf(sql,
			      "SELECT %s, %s::text AS _k FROM %s "
			      "WHERE deleted_at IS NULL%s",
			      q->e->columns, s, q->e->table, q->where);
	if (q->e->private_notes) {
		p[n++] = ctx->sub;
		cm_buf_printf(sql, " AND (NOT is_private OR created_by = $%d)",
			      n);
	}
	if (page && q->cursor) {
		if (!cursor_parts(q, value, id)) {
			cm_errf(errbuf, "the cursor is not one of this list");
			return CM_EINVAL;
		}
		p[n++] = value;
		p[n++] = id;
		if (q->sort->is_time)
			cm_buf_printf(sql,
				      " AND (%s, id) %s ('epoch'::"
				      "timestamptz + $%d::bigint * "
				      "interval '1 microsecond', $%d::uuid)",
				      s, q->asc ? ">" : "<", n - 1, n);
		else
			cm_buf_printf(sql,
				      " AND (%s, id) %s ($%d::%s, "
				      "$%d::uuid)",
				      s, q->asc ? ">" : "<", n - 1,
				      q->sort->cast, n);
	}
	snprintf(lim, 16, "%d", q->limit + (page ? 1 : 0));
	p[n++] = lim;
	cm_buf_printf(sql, " ORDER BY %s %s, id %s LIMIT $%d::int", s, dir, dir,
		      n);
	*np = n;
	return cm_buf_error(sql);
}

struct list_work {
	const struct crm_ctx *ctx;
	const struct crm_list_query *q;
	bool page;
	PGresult *res;
};

static int
list_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct list_work *w = arg;
	struct cm_buf sql = CM_BUF_INIT(16384);
	const char *p[32];
	char value[48] = "", id[37] = "", lim[16];
	int n = 0, rc;

	rc = list_sql(w->q, w->ctx, &sql, p, &n, value, id, lim, w->page,
		      errbuf);
	if (rc == 0)
		rc = cm_db_query(conn, cm_buf_str(&sql), n, p, &w->res, errbuf);
	cm_buf_release(&sql);
	return rc;
}

int
crm_store_page(const struct crm_ctx *ctx, const struct crm_list_query *q,
	       PGresult **out, char next[160], char errbuf[CM_ERRBUF_LEN])
{
	struct list_work w = { ctx, q, true, NULL };
	int rc = cm_db_tx_tenant(ctx->tenant, list_work, &w, errbuf);
	int k;

	next[0] = '\0';
	if (rc < 0) {
		PQclear(w.res);
		*out = NULL;
		return rc;
	}
	if (PQntuples(w.res) > q->limit) {
		k = PQfnumber(w.res, "_k");
		snprintf(next, 160, "%s~%c~%s~%s", q->sort->name,
			 q->asc ? 'a' : 'd', PQgetvalue(w.res, q->limit - 1, k),
			 PQgetvalue(w.res, q->limit - 1, 0));
	}
	*out = w.res;
	return 0;
}

int
crm_store_list(const struct crm_ctx *ctx, const struct crm_list_query *q,
	       struct cm_buf *out, char errbuf[CM_ERRBUF_LEN])
{
	PGresult *res = NULL;
	char next[160];
	int rc, i;

	if ((rc = crm_store_page(ctx, q, &res, next, errbuf)) < 0)
		return rc;
	cm_buf_puts(out, "{\"items\":[");
	for (i = 0; i < PQntuples(res) && i < q->limit; i++) {
		if (i)
			cm_buf_putc(out, ',');
		crm_render_json(out, res, i);
	}
	cm_buf_puts(out, "],\"next_cursor\":");
	if (next[0])
		cm_buf_printf(out, "\"%s\"}", next);
	else
		cm_buf_puts(out, "null}");
	PQclear(res);
	if (cm_buf_error(out)) {
		cm_errf(errbuf, "the page is too large");
		return CM_E2BIG;
	}
	return 0;
}
