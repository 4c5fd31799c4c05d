/*
 * dlq.c - the tenant's dead letters ("bz:ev:dlq:<tenant>", written by
 * libcommon's subscribers): list, inspect, discard. Retry is libcommon's
 * cm_bus_dlq_retry. The key is the caller's tenant's, so another tenant's
 * dead letters cannot be named at all.
 *
 * The platform admins' listing walks every tenant's dead-letter stream:
 * SCAN MATCH bz:ev:dlq:* (COUNT ADMIN_SCAN_COUNT), each step's tenants in
 * byte order, each tenant's letters newest first. Its cursor is the place
 * to go on from, "<scan cursor>.<tenant>.<entry id>": after that entry of
 * that tenant, or after that whole tenant when the entry is empty. Every
 * page does at most ADMIN_MAX_SCANS SCAN steps, ADMIN_MAX_READS stream
 * reads and looks at ADMIN_MAX_EXAMINED letters, so a page may be short
 * (even empty) while next_cursor is not null.
 */
#include "evbus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/mem.h"
#include "common/redis.h"

#include "common/banned.h"

#define DLQ_PREFIX "bz:ev:dlq:"
#define ADMIN_SCAN_COUNT "250"
#define ADMIN_MAX_SCANS 8
#define ADMIN_MAX_READS 64
#define ADMIN_MAX_EXAMINED 1000
#define ADMIN_CHUNK 100 /* letters per read when a type filter applies */

static const char *
field(const redisReply *f, const char *name)
{
	size_t i;

	for (i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2)
		if (f->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(f->element[i]->str, name) == 0 &&
		    f->element[i + 1]->type == REDIS_REPLY_STRING)
			return f->element[i + 1]->str;
	return "";
}

/* When the entry id says it was written. */
static void
id_time(const char *id, char at[21])
{
	char ms[24];
	const char *dash = strchr(id, '-');
	int64_t v = 0;

	cm_strlcpy(ms, id,
		   dash && (size_t)(dash - id) < sizeof(ms)
			   ? (size_t)(dash - id) + 1
			   : sizeof(ms));
	cm_parse_i64(ms, 0, INT64_MAX, &v);
	cm_time_rfc3339(v / 1000, at);
}

/* One entry [id, [fields]] as the API shows it. */
static cJSON *
render(const redisReply *e)
{
	const redisReply *f = e->element[1];
	const char *text = field(f, "event");
	char errbuf[CM_ERRBUF_LEN], at[21];
	cJSON *o = cJSON_CreateObject(), *ev;
	int64_t n = 0;

	cJSON_AddStringToObject(o, "id", e->element[0]->str);
	cJSON_AddStringToObject(o, "group", field(f, "group"));
	cJSON_AddStringToObject(o, "stream_id", field(f, "id"));
	cJSON_AddStringToObject(o, "event_type", field(f, "type"));
	cm_parse_i64(field(f, "attempts"), 0, 1000000, &n);
	cJSON_AddNumberToObject(o, "attempts", (double)n);
	cJSON_AddStringToObject(o, "error", field(f, "error"));
	id_time(e->element[0]->str, at);
	cJSON_AddStringToObject(o, "failed_at", at);
	ev = cm_json_parse(text, strlen(text), errbuf);
	if (ev)
		cJSON_AddItemToObject(o, "event", ev);
	else
		cJSON_AddStringToObject(o, "event", text);
	return o;
}

static bool
entry_ok(const redisReply *e)
{
	return e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
	       e->element[0]->type == REDIS_REPLY_STRING &&
	       e->element[1]->type == REDIS_REPLY_ARRAY;
}

int
bus_dlq_list(const char *tenant, const char *cursor, int limit, cJSON **out,
	     char errbuf[CM_ERRBUF_LEN])
{
	char key[CM_BUS_KEY_LEN], from[64], count[16];
	const char *argv[] = { "XREVRANGE", key, from, "-", "COUNT", count };
	cJSON *items;
	redisReply *r;
	size_t i;

	*out = NULL;
	if (cursor && !cm_bus_valid_entry_id(cursor)) {
		cm_errf(errbuf, "bad cursor");
		return CM_EINVAL;
	}
	cm_bus_dlq_key(tenant, key);
	snprintf(from, sizeof(from), "%s%s", cursor ? "(" : "",
		 cursor ? cursor : "+");
	snprintf(count, sizeof(count), "%d", limit + 1);
	if (!(r = cm_redis_cmd(6, argv, NULL, errbuf)))
		return CM_EIO;
	*out = cJSON_CreateObject();
	items = cJSON_AddArrayToObject(*out, "items");
	for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements &&
		    i < (size_t)limit;
	     i++)
		if (entry_ok(r->element[i]))
			cJSON_AddItemToArray(items, render(r->element[i]));
	cm_json_add_next_cursor(*out,
				r->type == REDIS_REPLY_ARRAY &&
						r->elements > (size_t)limit
					? r->element[limit - 1]->element[0]->str
					: NULL);
	freeReplyObject(r);
	return 0;
}

int
bus_dlq_get(const char *tenant, const char *id, cJSON **out,
	    char errbuf[CM_ERRBUF_LEN])
{
	char key[CM_BUS_KEY_LEN];
	const char *argv[] = { "XRANGE", key, id, id };
	redisReply *r;
	int rc = 0;

	*out = NULL;
	if (!cm_bus_valid_entry_id(id)) {
		cm_errf(errbuf, "no such dead letter");
		return CM_ENOENT;
	}
	cm_bus_dlq_key(tenant, key);
	if (!(r = cm_redis_cmd(4, argv, NULL, errbuf)))
		return CM_EIO;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    entry_ok(r->element[0])) {
		*out = render(r->element[0]);
	} else {
		cm_errf(errbuf, "no such dead letter");
		rc = CM_ENOENT;
	}
	freeReplyObject(r);
	return rc;
}

int
bus_dlq_discard(const char *tenant, const char *id, char errbuf[CM_ERRBUF_LEN])
{
	char key[CM_BUS_KEY_LEN];
	const char *argv[] = { "XDEL", key, id };
	redisReply *r;
	int rc = 0;

	if (!cm_bus_valid_entry_id(id)) {
		cm_errf(errbuf, "no such dead letter");
		return CM_ENOENT;
	}
	cm_bus_dlq_key(tenant, key);
	if (!(r = cm_redis_cmd(3, argv, NULL, errbuf)))
		return CM_EIO;
	if (r->type != REDIS_REPLY_INTEGER || r->integer != 1) {
		cm_errf(errbuf, "no such dead letter");
		rc = CM_ENOENT;
	}
	freeReplyObject(r);
	return rc;
}

/* --- every tenant's dead letters (platform admins) ----------------------- */

/* Where a page goes on from (see the top of the file). */
struct dlq_pos {
	char scan[24];
	char tenant[40];
	char entry[64];
};

/* One page being filled. */
struct dlq_page {
	const struct bus_dlq_admin_query *q;
	cJSON *items;
	int n, reads, examined;
	struct dlq_pos at;
};

static bool
all_digits(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return n > 0;
}

/* "<scan>.<tenant or empty>.<entry id or empty>"; an entry needs a
   tenant. */
static int
pos_parse(const char *s, struct dlq_pos *p)
{
	const char *d1 = strchr(s, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	size_t ns, nt;

	if (!d2 || strchr(d2 + 1, '.'))
		return CM_EINVAL;
	ns = (size_t)(d1 - s);
	nt = (size_t)(d2 - d1 - 1);
	if (!all_digits(s, ns) || ns >= sizeof(p->scan) ||
	    (nt != 0 && nt != 36) || strlen(d2 + 1) >= sizeof(p->entry))
		return CM_EINVAL;
	snprintf(p->scan, sizeof(p->scan), "%.*s", (int)ns, s);
	snprintf(p->tenant, sizeof(p->tenant), "%.*s", (int)nt, d1 + 1);
	cm_strlcpy(p->entry, d2 + 1, sizeof(p->entry));
	if ((nt && !cm_is_uuid(p->tenant)) ||
	    (*p->entry && (!nt || !cm_bus_valid_entry_id(p->entry))))
		return CM_EINVAL;
	return 0;
}

static bool
page_stops(const struct dlq_page *pg)
{
	return pg->n >= pg->q->limit || pg->reads >= ADMIN_MAX_READS ||
	       pg->examined >= ADMIN_MAX_EXAMINED;
}

/* Take the entries of one read into the page, last[] following the
   last one looked at; *rest says the page stopped before the reply's
   end. */
static void
take_entries(struct dlq_page *pg, const char *tenant, const redisReply *r,
	     char last[64], bool *rest)
{
	const char *type = pg->q->type;
	const redisReply *e;
	cJSON *o;
	size_t i;

	*rest = false;
	for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		e = r->element[i];
		if (pg->n >= pg->q->limit ||
		    pg->examined >= ADMIN_MAX_EXAMINED) {
			*rest = true;
			return;
		}
		if (!entry_ok(e) || !cm_bus_valid_entry_id(e->element[0]->str))
			continue;
		pg->examined++;
		cm_strlcpy(last, e->element[0]->str, 64);
		if (type &&
		    !cm_bus_type_match(type, field(e->element[1], "type")))
			continue;
		o = render(e);
		cJSON_AddStringToObject(o, "tenant_id", tenant);
		cJSON_AddItemToArray(pg->items, o);
		pg->n++;
	}
}

/* The tenant's letters after entry `after` ("": from the newest) into
   the page until it is full or a budget runs out; *done says the tenant
   has none left, else last[] is where it stopped. */
static int
walk_tenant(struct dlq_page *pg, const char *tenant, const char *after,
	    char last[64], bool *done, char errbuf[CM_ERRBUF_LEN])
{
	char key[CM_BUS_KEY_LEN], from[72], count[16];
	const char *argv[] = { "XREVRANGE", key, from, "-", "COUNT", count };
	redisReply *r;
	bool rest;
	int want;

	cm_bus_dlq_key(tenant, key);
	cm_strlcpy(last, after, 64);
	*done = false;
	while (!page_stops(pg)) {
		/* one more than fits tells whether the tenant has more */
		want = pg->q->type ? ADMIN_CHUNK : pg->q->limit - pg->n + 1;
		snprintf(from, sizeof(from), "%s%s", *last ? "(" : "",
			 *last ? last : "+");
		snprintf(count, sizeof(count), "%d", want);
		if (!(r = cm_redis_cmd(6, argv, NULL, errbuf)))
			return CM_EIO;
		pg->reads++;
		take_entries(pg, tenant, r, last, &rest);
		*done = !rest && (r->type != REDIS_REPLY_ARRAY ||
				  r->elements < (size_t)want);
		freeReplyObject(r);
		if (*done || rest)
			break;
	}
	return 0;
}

/* The tenants of one step (sorted) after pg->at; 0 when the step is
   done, 1 when the page stopped inside it. */
static int
walk_step(struct dlq_page *pg, const char **tenants, size_t n,
	  char errbuf[CM_ERRBUF_LEN])
{
	char last[64];
	bool done;
	size_t i;
	int cmp, rc;

	for (i = 0; i < n; i++) {
		cmp = *pg->at.tenant ? strcmp(tenants[i], pg->at.tenant) : 1;
		if (cmp < 0 || (cmp == 0 && !*pg->at.entry))
			continue; /* done before (or a repeat) */
		if (page_stops(pg))
			return 1;
		rc = walk_tenant(pg, tenants[i], cmp == 0 ? pg->at.entry : "",
				 last, &done, errbuf);
		if (rc < 0)
			return rc;
		cm_strlcpy(pg->at.tenant, tenants[i], sizeof(pg->at.tenant));
		cm_strlcpy(pg->at.entry, done ? "" : last,
			   sizeof(pg->at.entry));
		if (!done)
			return 1;
	}
	return 0;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* One SCAN step at pg->at.scan, walked; *next the step after it. */
static int
scan_step(struct dlq_page *pg, char next[24], char errbuf[CM_ERRBUF_LEN])
{
	const char *argv[] = { "SCAN",	       pg->at.scan, "MATCH",
			       DLQ_PREFIX "*", "COUNT",	    ADMIN_SCAN_COUNT,
			       "TYPE",	       "stream" };
	const redisReply *keys;
	const char **tenants = NULL;
	redisReply *r;
	size_t i, n = 0;
	int rc;

	if (!(r = cm_redis_cmd(8, argv, NULL, errbuf)))
		return CM_EIO;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    !all_digits(r->element[0]->str, strlen(r->element[0]->str)) ||
	    strlen(r->element[0]->str) >= 24 ||
	    r->element[1]->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(r);
		cm_errf(errbuf, "unexpected SCAN reply");
		return CM_EIO;
	}
	cm_strlcpy(next, r->element[0]->str, 24);
	keys = r->element[1];
	tenants = cm_xcalloc(keys->elements + 1, sizeof(*tenants));
	for (i = 0; i < keys->elements; i++)
		if (keys->element[i]->type == REDIS_REPLY_STRING &&
		    cm_is_uuid(keys->element[i]->str + strlen(DLQ_PREFIX)))
			tenants[n++] =
				keys->element[i]->str + strlen(DLQ_PREFIX);
	qsort(tenants, n, sizeof(*tenants), by_name);
	rc = walk_step(pg, tenants, n, errbuf);
	free(tenants);
	freeReplyObject(r);
	return rc;
}

/* Walk SCAN steps from pg->at; *end when the last one is done. */
static int
walk_all(struct dlq_page *pg, bool *end, char errbuf[CM_ERRBUF_LEN])
{
	char next[24];
	int scans, rc;

	*end = false;
	for (scans = 1;; scans++) {
		if ((rc = scan_step(pg, next, errbuf)) != 0)
			return rc < 0 ? rc : 0;
		if (strcmp(next, "0") == 0) {
			*end = true;
			return 0;
		}
		cm_strlcpy(pg->at.scan, next, sizeof(pg->at.scan));
		pg->at.tenant[0] = pg->at.entry[0] = '\0';
		if (scans >= ADMIN_MAX_SCANS || page_stops(pg))
			return 0;
	}
}

int
bus_dlq_admin_list(const struct bus_dlq_admin_query *q, cJSON **out,
		   char errbuf[CM_ERRBUF_LEN])
{
	struct dlq_page pg = { .q = q, .at = { "0", "", "" } };
	const char *one[1] = { q->tenant_id };
	char cursor[sizeof(pg.at) + 4];
	bool end = false;
	int rc;

	*out = NULL;
	if (q->cursor && pos_parse(q->cursor, &pg.at) < 0) {
		cm_errf(errbuf, "bad cursor");
		return CM_EINVAL;
	}
	*out = cJSON_CreateObject();
	pg.items = cJSON_AddArrayToObject(*out, "items");
	if (q->tenant_id) {
		rc = walk_step(&pg, one, 1, errbuf);
		end = rc == 0;
	} else {
		rc = walk_all(&pg, &end, errbuf);
	}
	if (rc < 0) {
		cJSON_Delete(*out);
		*out = NULL;
		return rc;
	}
	snprintf(cursor, sizeof(cursor), "%s.%s.%s", pg.at.scan, pg.at.tenant,
		 pg.at.entry);
	cm_json_add_next_cursor(*out, end ? NULL : cursor);
	return 0;
}
