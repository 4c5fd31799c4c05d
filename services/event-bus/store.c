/*
 * store.c - event_bus.events: the audit rows, their partitions, history.
 */
#include "evbus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/db.h"
#include "common/json.h"
#include "common/mem.h"

#include "common/banned.h"

#define HISTORY_COLUMNS                                                  \
	"SELECT envelope::text, "                                        \
	"(extract(epoch FROM occurred_at) * 1000000)::bigint, event_id " \
	"FROM event_bus.events "

static int
ensure_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	(void)arg;
	return cm_db_query(conn,
			   "SELECT event_bus.ensure_month(current_date), "
			   "event_bus.ensure_month((current_date + "
			   "interval '1 month')::date), "
			   "event_bus.ensure_month((current_date + "
			   "interval '2 months')::date)",
			   0, NULL, NULL, errbuf);
}

int
bus_store_ensure_partitions(char errbuf[CM_ERRBUF_LEN])
{
	return cm_db_tx(ensure_work, NULL, errbuf);
}

static const char *
str_or_null(const cJSON *env, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(env, name);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

int
bus_store_record(PGconn *conn, const char *tenant_id, const cJSON *env,
		 const char *stream_id, bool *inserted,
		 char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *ver =
		cJSON_GetObjectItemCaseSensitive(env, "event_version");
	char version[24], *text = cm_json_print(env);
	const char *p[13];
	PGresult *res = NULL;
	int rc;

	snprintf(version, sizeof(version), "%.0f",
		 cJSON_IsNumber(ver) ? ver->valuedouble : 1.0);
	p[0] = str_or_null(env, "event_id");
	p[1] = tenant_id;
	p[2] = str_or_null(env, "event_type");
	p[3] = version;
	p[4] = str_or_null(env, "source_service");
	p[5] = str_or_null(env, "occurred_at");
	p[6] = str_or_null(env, "correlation_id");
	p[7] = str_or_null(env, "causation_id");
	p[8] = str_or_null(env, "aggregate_type");
	p[9] = str_or_null(env, "aggregate_id");
	p[10] = str_or_null(env, "priority");
	p[11] = text;
	p[12] = stream_id;
	rc = cm_db_query(conn,
			 "INSERT INTO event_bus.events (event_id, tenant_id, "
			 "event_type, event_version, source_service, "
			 "occurred_at, correlation_id, causation_id, "
			 "aggregate_type, aggregate_id, priority, envelope, "
			 "stream_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
			 "$9, $10, $11, $12, $13) "
			 "ON CONFLICT (event_id, occurred_at) DO NOTHING",
			 13, p, &res, errbuf);
	if (rc == 0 && inserted)
		*inserted = strcmp(PQcmdTuples(res), "1") == 0;
	PQclear(res);
	free(text);
	return rc;
}

bool
bus_cursor_ok(const char *c)
{
	const char *dot = c ? strchr(c, '.') : NULL;
	int64_t us;
	char num[24];

	if (!dot || dot - c >= (long)sizeof(num) || dot == c)
		return false;
	cm_strlcpy(num, c, (size_t)(dot - c) + 1);
	return cm_parse_i64(num, 0, INT64_MAX, &us) == 0 && cm_is_uuid(dot + 1);
}

char *
bus_type_like(const char *type)
{
	struct cm_buf b = CM_BUF_INIT(256);
	size_t n = strlen(type), i;
	bool prefix = n >= 2 && strcmp(type + n - 2, ".*") == 0;

	if (strcmp(type, "*") == 0)
		return cm_xstrdup("%");
	for (i = 0; i < (prefix ? n - 1 : n); i++) {
		if (type[i] == '_' || type[i] == '%' || type[i] == '\\')
			cm_buf_putc(&b, '\\');
		cm_buf_putc(&b, type[i]);
	}
	if (prefix)
		cm_buf_putc(&b, '%');
	return cm_buf_detach(&b, NULL);
}

struct history {
	const struct bus_history_query *q;
	cJSON *out;
};

static void
render_page(PGresult *res, int limit, cJSON *out)
{
	cJSON *items = cJSON_AddArrayToObject(out, "items");
	char errbuf[CM_ERRBUF_LEN], cursor[80];
	const char *text;
	int i, n = PQntuples(res);
	cJSON *env;

	for (i = 0; i < n && i < limit; i++) {
		text = PQgetvalue(res, i, 0);
		env = cm_json_parse(text, strlen(text), errbuf);
		if (env)
			cJSON_AddItemToArray(items, env);
	}
	if (n > limit) {
		snprintf(cursor, sizeof(cursor), "%s.%s",
			 PQgetvalue(res, limit - 1, 1),
			 PQgetvalue(res, limit - 1, 2));
		cm_json_add_next_cursor(out, cursor);
	} else {
		cm_json_add_next_cursor(out, NULL);
	}
}

static int
history_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct history *h = arg;
	const struct bus_history_query *q = h->q;
	char lim[16], us[24] = "",
		      *like = q->type ? bus_type_like(q->type) : NULL;
	const char *p[9];
	PGresult *res = NULL;
	int rc;

	snprintf(lim, sizeof(lim), "%d", q->limit + 1);
	if (q->cursor)
		cm_strlcpy(us, q->cursor,
			   (size_t)(strchr(q->cursor, '.') - q->cursor) + 1);
	p[0] = like;
	p[1] = q->aggregate_type;
	p[2] = q->aggregate_id;
	p[3] = q->correlation_id;
	p[4] = q->since;
	p[5] = q->until;
	p[6] = q->cursor ? us : NULL;
	p[7] = q->cursor ? strchr(q->cursor, '.') + 1 : NULL;
	p[8] = lim;
	rc = cm_db_query(
		conn,
		HISTORY_COLUMNS
		"WHERE ($1::text IS NULL OR event_type LIKE $1) "
		"AND ($2::text IS NULL OR aggregate_type = $2) "
		"AND ($3::text IS NULL OR aggregate_id = $3) "
		"AND ($4::text IS NULL OR correlation_id = $4) "
		"AND ($5::timestamptz IS NULL OR occurred_at >= $5) "
		"AND ($6::timestamptz IS NULL OR occurred_at < $6) "
		"AND ($7::bigint IS NULL OR (occurred_at, event_id) < "
		"('epoch'::timestamptz + $7::bigint * interval '1 microsecond',"
		" $8::uuid)) "
		"ORDER BY occurred_at DESC, event_id DESC LIMIT $9::int",
		9, p, &res, errbuf);
	if (rc == 0) {
		h->out = cJSON_CreateObject();
		render_page(res, q->limit, h->out);
	}
	PQclear(res);
	free(like);
	return rc;
}

int
bus_store_history(const struct bus_history_query *q, cJSON **out,
		  char errbuf[CM_ERRBUF_LEN])
{
	struct history h = { q, NULL };
	int rc;

	*out = NULL;
	if (q->cursor && !bus_cursor_ok(q->cursor)) {
		cm_errf(errbuf, "bad cursor");
		return CM_EINVAL;
	}
	rc = cm_db_tx_tenant(q->tenant_id, history_work, &h, errbuf);
	if (rc < 0) {
		cJSON_Delete(h.out);
		return rc;
	}
	*out = h.out;
	return 0;
}
