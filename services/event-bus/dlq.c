/*
 * dlq.c - the tenant's dead letters ("bz:ev:dlq:<tenant>", written by
 * libcommon's subscribers): list, inspect, discard. Retry is libcommon's
 * cm_bus_dlq_retry. The key is the caller's tenant's, so another tenant's
 * dead letters cannot be named at all.
 */
#include "evbus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/mem.h"
#include "common/redis.h"

#include "common/banned.h"

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
