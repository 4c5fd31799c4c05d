/*
 * usage.c - a tenant's usage against its limits: members counted in
 * PostgreSQL, everything else in the counters of common/ratelimit.h (per
 * UTC day and month in Redis): "api_calls" counted by the gateway, the
 * others reported by services through POST /api/tenant/usage.
 */
#include "brain.h"

#include "common/json.h"
#include "common/log.h"
#include "common/ratelimit.h"

#include <stdio.h>
#include <string.h>

#include "common/banned.h"

/* Counters brain keeps itself; services may not report them. */
static const char *const reserved[] = { "users", BRAIN_USAGE_API_CALLS, NULL };

static void
add_counter(const char *counter, long long value, void *arg)
{
	cJSON_AddNumberToObject(arg, counter, (double)value);
}

/* A counter of one period's object (0 when absent). */
static double
counter_of(const cJSON *period, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(period, name);

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* {"day": {...}, "month": {...}} and the api_calls of both into usage. */
static int
add_counters(const char *tid, cJSON *json, cJSON *usage,
	     char errbuf[CM_ERRBUF_LEN])
{
	cJSON *counters = cJSON_AddObjectToObject(json, "counters");
	cJSON *day = cJSON_AddObjectToObject(counters, "day");
	cJSON *month = cJSON_AddObjectToObject(counters, "month");
	int rc;

	if ((rc = cm_usage_each(tid, "day", add_counter, day, errbuf)) < 0 ||
	    (rc = cm_usage_each(tid, "month", add_counter, month, errbuf)) < 0)
		return rc;
	cJSON_AddNumberToObject(usage, "api_calls_today",
				counter_of(day, BRAIN_USAGE_API_CALLS));
	cJSON_AddNumberToObject(usage, "api_calls_this_month",
				counter_of(month, BRAIN_USAGE_API_CALLS));
	return 0;
}

/* GET /api/tenant/usage - members, API calls and reported counters
   against the effective limits; 503 when Redis cannot be read. */
void
brain_h_own_usage(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *row = NULL, *json = NULL, *usage;
	const char *tid;
	int64_t users = 0;
	int status = 403, rc;

	(void)brain_from(arg);
	if (!(tid = brain_own_tenant(req, BRAIN_PERM_USAGE_READ)))
		goto out;
	if ((rc = brain_store_tenant_get(tid, false, &row, errbuf)) < 0 ||
	    (rc = brain_store_count_members(tid, &users, errbuf)) < 0) {
		status = brain_fail_store(req, rc, "tenant", errbuf);
		goto out;
	}
	json = cJSON_CreateObject();
	cJSON_AddStringToObject(json, "tenant_id", tid);
	cJSON_AddItemToObject(
		json, "limits",
		brain_limits_effective(
			cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
				row, "subscription_tier")),
			cJSON_GetObjectItemCaseSensitive(row,
							 "limit_overrides")));
	usage = cJSON_AddObjectToObject(json, "usage");
	cJSON_AddNumberToObject(usage, "users", (double)users);
	if (add_counters(tid, json, usage, errbuf) < 0) {
		cm_log_err("usage counters: %s", errbuf);
		status = cm_req_fail(req, 503, "unavailable",
				     "usage counters cannot be read now");
		goto out;
	}
	status = 200;
out:
	cm_req_reply_json(req, status, status == 200 ? json : NULL);
	cJSON_Delete(row);
	cJSON_Delete(json);
}

static int
parse_report(const cJSON *body, const char **counter, int64_t *n,
	     char errbuf[CM_ERRBUF_LEN])
{
	int i;

	if (cm_json_get_str(body, NULL, "counter", true, CM_USAGE_COUNTER_MAX,
			    counter, errbuf) < 0 ||
	    cm_json_get_i64(body, NULL, "n", true, 1, CM_USAGE_INCR_MAX, n,
			    errbuf) < 0)
		return CM_EINVAL;
	if (!cm_usage_counter_valid(*counter)) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "field 'counter' must be 1..%d of [a-z0-9_.-]",
			 CM_USAGE_COUNTER_MAX);
		return CM_EINVAL;
	}
	for (i = 0; reserved[i]; i++)
		if (!strcmp(*counter, reserved[i])) {
			snprintf(errbuf, CM_ERRBUF_LEN,
				 "field 'counter': %s is counted by brain",
				 *counter);
			return CM_EINVAL;
		}
	return 0;
}

/* POST /api/tenant/usage {counter, n} - a service (service token; the
   tenant from X-Tenant-ID) adds n to one of the tenant's counters. */
void
brain_h_usage_report(struct cm_req *req, void *arg)
{
	const struct cm_principal *p = cm_req_principal(req);
	const char *tid = cm_req_tenant_id(req), *counter = NULL;
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *body = NULL;
	int64_t n = 0;
	int status;

	(void)brain_from(arg);
	if (!p || !p->is_service || !tid) { /* the route says so; be sure */
		status = cm_req_fail(req, 403, "forbidden",
				     "only platform services may call this");
		goto out;
	}
	if ((status = cm_req_json(req, &body)) != 0)
		goto out;
	if (parse_report(body, &counter, &n, errbuf) < 0) {
		status = cm_req_fail(req, 400, "validation_failed", "%s",
				     errbuf);
		goto out;
	}
	if (cm_usage_incr(tid, counter, (long)n, errbuf) < 0) {
		cm_log_err("usage report from %s: %s", p->sub, errbuf);
		status = cm_req_fail(req, 503, "unavailable",
				     "usage counters cannot be written now");
		goto out;
	}
	status = 204;
out:
	cm_req_reply_json(req, status, NULL);
	cJSON_Delete(body);
}
