/*
 * quota.c - per-tenant publish quotas (events per hour, by plan tier).
 *
 * One Redis counter per tenant and UTC hour, "bz:ev:quota:<tenant>:<hour>"
 * (INCRBY, expiring after two hours). A request that would go over the
 * limit is refused whole and its count given back; the first refusal of
 * the hour also publishes billing.limit_exceeded (SET NX on a marker key,
 * so once per tenant and hour however many replicas refuse). Counted:
 * events published over HTTP; services publishing directly through
 * libcommon are trusted and not counted.
 */
#include "evbus.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/redis.h"

#include "common/banned.h"

#define QUOTA_TTL "7200"

static const char *const quota_tiers[] = { "free", "starter", "professional",
					   "enterprise", NULL };

int64_t
bus_quota_limit(const struct bus *bus, const char *tier)
{
	int i;

	for (i = 0; quota_tiers[i]; i++)
		if (tier && strcmp(tier, quota_tiers[i]) == 0)
			return bus->quota[i];
	return bus->quota[0]; /* unknown tier: the smallest plan */
}

static int
redis_int(int argc, const char **argv, long long *out,
	  char errbuf[CM_ERRBUF_LEN])
{
	redisReply *r = cm_redis_cmd(argc, argv, NULL, errbuf);
	int rc = 0;

	if (!r)
		return CM_EIO;
	if (r->type == REDIS_REPLY_INTEGER)
		*out = r->integer;
	else if (r->type == REDIS_REPLY_NIL)
		*out = 0;
	else if (r->type == REDIS_REPLY_STATUS)
		*out = 1;
	else
		rc = CM_EIO;
	freeReplyObject(r);
	return rc;
}

/* billing.limit_exceeded, once per tenant and hour. */
static void
notify_once(const char *tenant, int64_t hour, int64_t limit)
{
	char key[CM_BUS_KEY_LEN], errbuf[CM_ERRBUF_LEN] = "";
	const char *argv[] = { "SET", key, "1", "NX", "EX", QUOTA_TTL };
	cJSON *data = cJSON_CreateObject(), *env;
	long long set = 0;

	snprintf(key, sizeof(key), "bz:ev:quota:%s:%lld:told", tenant,
		 (long long)hour);
	if (redis_int(6, argv, &set, errbuf) < 0 || !set) {
		cJSON_Delete(data);
		return;
	}
	cJSON_AddStringToObject(data, "limit", "events_per_hour");
	cJSON_AddNumberToObject(data, "value", (double)limit);
	cJSON_AddStringToObject(data, "period", "hour");
	env = cm_bus_envelope_new("billing.limit_exceeded", "event-bus",
				  "tenant", tenant, data);
	if (!env || cm_bus_publish(tenant, env, NULL, errbuf) < 0)
		cm_log_err("quota: billing.limit_exceeded: %s", errbuf);
	cJSON_Delete(env);
}

int
bus_quota_take(const struct bus *bus, const char *tenant, const char *tier,
	       int n, char errbuf[CM_ERRBUF_LEN])
{
	int64_t limit = bus_quota_limit(bus, tier), hour = cm_now_s() / 3600;
	char key[CM_BUS_KEY_LEN], ns[16];
	const char *incr[] = { "INCRBY", key, ns };
	const char *expire[] = { "EXPIRE", key, QUOTA_TTL };
	const char *decr[] = { "DECRBY", key, ns };
	long long v = 0, ignored;
	int rc;

	if (limit <= 0)
		return 0; /* unlimited */
	snprintf(key, sizeof(key), "bz:ev:quota:%s:%lld", tenant,
		 (long long)hour);
	snprintf(ns, sizeof(ns), "%d", n);
	if ((rc = redis_int(3, incr, &v, errbuf)) < 0)
		return rc;
	if (v == n && (rc = redis_int(3, expire, &ignored, errbuf)) < 0)
		return rc;
	if (v <= limit)
		return 0;
	if ((rc = redis_int(3, decr, &ignored, errbuf)) < 0)
		return rc;
	notify_once(tenant, hour, limit);
	cm_errf(errbuf, "over the plan's %lld events per hour",
		(long long)limit);
	return CM_EAGAIN;
}
