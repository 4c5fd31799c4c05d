/*
 * render.c - result rows as JSON, by column type.
 *
 * Times leave as RFC 3339 UTC with a Z whatever the session's TimeZone;
 * numeric and integer columns as numbers, booleans as booleans, json and
 * jsonb parsed, NULL as null, everything else as the text PostgreSQL sent.
 */
#include "crm.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/json.h"
#include "common/mem.h"

#include "common/banned.h"

/* Type oids (pg_type.h is not a client header). */
#define OID_BOOL 16
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_JSON 114
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_TIMESTAMPTZ 1184
#define OID_NUMERIC 1700
#define OID_JSONB 3802

/* n digits at s into *out; false if any is not a digit. */
static bool
digits(const char *s, int n, int *out)
{
	int i, v = 0;

	for (i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* "+HH", "+HH:MM" or "+HH:MM:SS" into seconds east of UTC. */
static int
parse_offset(const char *s, long *out)
{
	int h, m = 0, sec = 0, sign = *s == '-' ? -1 : 1;

	if ((*s != '+' && *s != '-') || !digits(s + 1, 2, &h))
		return CM_EINVAL;
	s += 3;
	if (*s == ':') {
		if (!digits(s + 1, 2, &m))
			return CM_EINVAL;
		s += 3;
		if (*s == ':') {
			if (!digits(s + 1, 2, &sec))
				return CM_EINVAL;
			s += 3;
		}
	}
	if (*s)
		return CM_EINVAL;
	*out = sign * (h * 3600L + m * 60L + sec);
	return 0;
}

int
crm_pg_time(const char *pg, char out[40])
{
	struct tm tm = { 0 };
	char frac[16] = "";
	const char *p = pg + 19;
	size_t nf = 0;
	long off;
	time_t t;

	if (strlen(pg) < 22 || pg[4] != '-' || pg[7] != '-' ||
	    (pg[10] != ' ' && pg[10] != 'T') || pg[13] != ':' ||
	    pg[16] != ':' || !digits(pg, 4, &tm.tm_year) ||
	    !digits(pg + 5, 2, &tm.tm_mon) || !digits(pg + 8, 2, &tm.tm_mday) ||
	    !digits(pg + 11, 2, &tm.tm_hour) ||
	    !digits(pg + 14, 2, &tm.tm_min) || !digits(pg + 17, 2, &tm.tm_sec))
		return CM_EINVAL;
	if (*p == '.') {
		nf = strspn(p + 1, "0123456789");
		if (nf == 0 || nf > 9)
			return CM_EINVAL;
		cm_strlcpy(frac, p, nf + 2);
		p += nf + 1;
	}
	if (parse_offset(p, &off) < 0)
		return CM_EINVAL;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	t = timegm(&tm) - off;
	if (!gmtime_r(&t, &tm))
		return CM_EINVAL;
	snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d%sZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 frac);
	return 0;
}

static cJSON *
render_value(const PGresult *res, int row, int col)
{
	const char *v = PQgetvalue(res, row, col);
	char errbuf[CM_ERRBUF_LEN], t[40];
	cJSON *j;
	double d;

	if (PQgetisnull(res, row, col))
		return cJSON_CreateNull();
	switch (PQftype(res, col)) {
	case OID_BOOL:
		return cJSON_CreateBool(v[0] == 't');
	case OID_INT2:
	case OID_INT4:
	case OID_INT8:
	case OID_FLOAT4:
	case OID_FLOAT8:
	case OID_NUMERIC:
		if (cm_parse_double(v, -1e300, 1e300, &d) == 0)
			return cJSON_CreateNumber(d);
		break;
	case OID_JSON:
	case OID_JSONB:
		if ((j = cm_json_parse(v, strlen(v), errbuf)))
			return j;
		break;
	case OID_TIMESTAMPTZ:
		if (crm_pg_time(v, t) == 0)
			return cJSON_CreateString(t);
		break;
	default:
		break;
	}
	return cJSON_CreateString(v);
}

cJSON *
crm_render_row(const PGresult *res, int row)
{
	cJSON *o = cJSON_CreateObject();
	const char *name;
	int c;

	for (c = 0; c < PQnfields(res); c++) {
		name = PQfname(res, c);
		if (name[0] == '_')
			continue;
		cJSON_AddItemToObject(o, name, render_value(res, row, c));
	}
	return o;
}

cJSON *
crm_render_rows(const PGresult *res)
{
	cJSON *a = cJSON_CreateArray();
	int r;

	for (r = 0; r < PQntuples(res); r++)
		cJSON_AddItemToArray(a, crm_render_row(res, r));
	return a;
}

/* A JSON value straight from the text PostgreSQL sent (no tree). */
static void
put_value(struct cm_buf *b, const PGresult *res, int row, int col)
{
	const char *v = PQgetvalue(res, row, col);
	char t[40];
	double d;

	if (PQgetisnull(res, row, col)) {
		cm_buf_puts(b, "null");
		return;
	}
	switch (PQftype(res, col)) {
	case OID_BOOL:
		cm_buf_puts(b, v[0] == 't' ? "true" : "false");
		return;
	case OID_INT2:
	case OID_INT4:
	case OID_INT8:
	case OID_FLOAT4:
	case OID_FLOAT8:
	case OID_NUMERIC:
		/* integer and numeric text is a JSON number (NaN and
		   infinities aside, which no crm column holds) */
		if (cm_parse_double(v, -1e300, 1e300, &d) == 0) {
			cm_buf_puts(b, v);
			return;
		}
		break;
	case OID_JSON:
	case OID_JSONB:
		cm_buf_puts(b, v); /* the server's own JSON */
		return;
	case OID_TIMESTAMPTZ:
		if (crm_pg_time(v, t) == 0) {
			cm_buf_json_str(b, t);
			return;
		}
		break;
	default:
		break;
	}
	cm_buf_json_str(b, v);
}

void
crm_render_json(struct cm_buf *b, const PGresult *res, int row)
{
	const char *name;
	int c, n = 0;

	cm_buf_putc(b, '{');
	for (c = 0; c < PQnfields(res); c++) {
		name = PQfname(res, c);
		if (name[0] == '_')
			continue;
		if (n++)
			cm_buf_putc(b, ',');
		cm_buf_json_str(b, name);
		cm_buf_putc(b, ':');
		put_value(b, res, row, c);
	}
	cm_buf_putc(b, '}');
}
