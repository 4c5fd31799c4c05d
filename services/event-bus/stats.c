/*
 * stats.c - consumer pending counts and lag per group, summed over every
 * tenant stream, as the gauges bz_bus_pending{group} and bz_bus_lag{group}
 * (lag: entries not yet delivered to the group, Redis 7's XINFO "lag").
 * One XINFO GROUPS per tenant stream, so the audit thread runs it every
 * BUS_STATS_INTERVAL_MS, not per request.
 */
#include "evbus.h"

#include <string.h>

#include "common/buf.h"
#include "common/mem.h"
#include "common/metrics.h"
#include "common/redis.h"

#include "common/banned.h"

#define STATS_MAX_GROUPS 64

struct group_sum {
	char name[49];
	double pending, lag;
};

static const redisReply *
map_get(const redisReply *m, const char *key)
{
	size_t i;

	for (i = 0; m->type == REDIS_REPLY_ARRAY && i + 1 < m->elements; i += 2)
		if (m->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(m->element[i]->str, key) == 0)
			return m->element[i + 1];
	return NULL;
}

static void
add_group(struct group_sum *g, int *n, const redisReply *info)
{
	const redisReply *name = map_get(info, "name");
	const redisReply *pend = map_get(info, "pending");
	const redisReply *lag = map_get(info, "lag");
	int i;

	if (!name || name->type != REDIS_REPLY_STRING ||
	    !cm_bus_valid_group(name->str))
		return;
	for (i = 0; i < *n && strcmp(g[i].name, name->str); i++)
		;
	if (i == *n) {
		if (*n == STATS_MAX_GROUPS)
			return;
		memset(&g[i], 0, sizeof(g[i]));
		cm_strlcpy(g[i].name, name->str, sizeof(g[i].name));
		(*n)++;
	}
	if (pend && pend->type == REDIS_REPLY_INTEGER)
		g[i].pending += (double)pend->integer;
	if (lag && lag->type == REDIS_REPLY_INTEGER)
		g[i].lag += (double)lag->integer;
}

static void
publish_gauges(const struct group_sum *g, int n)
{
	struct cm_buf l = CM_BUF_INIT(128);
	int i;

	for (i = 0; i < n; i++) {
		cm_buf_reset(&l);
		cm_metrics_label_append(&l, "group", g[i].name);
		cm_metrics_gauge_set("bz_bus_pending",
				     "Entries delivered, not yet acked.",
				     cm_buf_str(&l), g[i].pending);
		cm_metrics_gauge_set("bz_bus_lag",
				     "Entries not yet delivered to the group.",
				     cm_buf_str(&l), g[i].lag);
	}
	cm_buf_release(&l);
}

int
bus_stats_refresh(char errbuf[CM_ERRBUF_LEN])
{
	struct group_sum g[STATS_MAX_GROUPS];
	const char *argv[3] = { "XINFO", "GROUPS", NULL };
	redisReply *set, *info;
	size_t i, j;
	int n = 0;

	set = cm_redis_cmdf(errbuf, "SMEMBERS " CM_BUS_STREAMS);
	if (!set)
		return CM_EIO;
	for (i = 0; set->type == REDIS_REPLY_ARRAY && i < set->elements; i++) {
		if (set->element[i]->type != REDIS_REPLY_STRING)
			continue;
		argv[2] = set->element[i]->str;
		info = cm_redis_cmd(3, argv, NULL, errbuf);
		if (!info)
			continue; /* a stream deleted meanwhile */
		for (j = 0;
		     info->type == REDIS_REPLY_ARRAY && j < info->elements; j++)
			add_group(g, &n, info->element[j]);
		freeReplyObject(info);
	}
	freeReplyObject(set);
	publish_gauges(g, n);
	return 0;
}
