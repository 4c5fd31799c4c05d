/*
 * integration.c - POST /api/events/test-integration: does the event bus
 * deliver this tenant's events?
 *
 * Brain publishes a system.integration_test event on the caller's tenant
 * stream (common/bus.h) and then watches the event bus's own consumer
 * group "audit" (every tenant stream has it once the event-bus runs): the
 * event came back through the bus when that group has read it and no
 * longer holds it pending (it was handled and acknowledged). The request
 * is deferred while brain looks every 20 ms, so no worker waits. The
 * answer is 200 either way, a report:
 *   {"event_id","stream_id","delivered":true,"consumer_group":"audit",
 *    "round_trip_ms":12}
 * or "delivered":false with "waited_ms" and a "reason" after
 * BRAIN_INTEGRATION_TIMEOUT_MS. 503 when Redis refuses the publish.
 */
#include "brain.h"

#include "common/bus.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

#define PROBE_TICK_MS 20
#define PROBE_GROUP "audit"

struct probe {
	struct cm_req *req;
	char key[CM_BUS_KEY_LEN];
	char stream_id[64];
	char event_id[40];
	int64_t t0_ms;
	int64_t deadline_ms;
};

/* a < b for stream ids "<ms>-<seq>" */
static bool
id_before(const char *a, const char *b)
{
	unsigned long long am = 0, as = 0, bm = 0, bs = 0;

	if (sscanf(a, "%llu-%llu", &am, &as) != 2 ||
	    sscanf(b, "%llu-%llu", &bm, &bs) != 2)
		return true;
	return am < bm || (am == bm && as < bs);
}

/* Whether the group has read the entry and holds it no more. */
static bool
delivered(const struct probe *pr)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	const char *info[] = { "XINFO", "GROUPS", pr->key };
	const char *pend[] = { "XPENDING",    pr->key,	     PROBE_GROUP,
			       pr->stream_id, pr->stream_id, "1" };
	redisReply *r = cm_redis_cmd(3, info, NULL, errbuf);
	bool read = false, pending = true;
	size_t i, j;

	if (!r)
		return false;
	for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		redisReply *g = r->element[i];
		const char *name = NULL, *last = NULL;

		for (j = 0; g->type == REDIS_REPLY_ARRAY && j + 1 < g->elements;
		     j += 2) {
			if (g->element[j]->type != REDIS_REPLY_STRING ||
			    g->element[j + 1]->type != REDIS_REPLY_STRING)
				continue;
			if (!strcmp(g->element[j]->str, "name"))
				name = g->element[j + 1]->str;
			else if (!strcmp(g->element[j]->str,
					 "last-delivered-id"))
				last = g->element[j + 1]->str;
		}
		if (name && last && !strcmp(name, PROBE_GROUP))
			read = !id_before(last, pr->stream_id);
	}
	freeReplyObject(r);
	if (!read)
		return false;
	r = cm_redis_cmd(6, pend, NULL, errbuf);
	if (!r)
		return false;
	pending = r->type == REDIS_REPLY_ARRAY && r->elements > 0;
	freeReplyObject(r);
	return !pending;
}

static void
probe_tick(struct cm_req *req, void *arg)
{
	struct probe *pr = arg;
	bool ok = delivered(pr);
	cJSON *out;
	double ms;

	if (!ok && cm_now_ms() < pr->deadline_ms)
		return;
	ms = (double)(cm_now_ms() - pr->t0_ms);
	out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "event_id", pr->event_id);
	cJSON_AddStringToObject(out, "stream_id", pr->stream_id);
	cJSON_AddStringToObject(out, "consumer_group", PROBE_GROUP);
	cJSON_AddBoolToObject(out, "delivered", ok);
	if (ok) {
		cJSON_AddNumberToObject(out, "round_trip_ms", ms);
	} else {
		cJSON_AddNumberToObject(out, "waited_ms", (double)(int64_t)ms);
		cJSON_AddStringToObject(out, "reason",
					"the bus's audit consumer did not "
					"acknowledge the event in time: is "
					"event-bus running?");
	}
	cm_req_reply_json(req, 200, out); /* frees req */
	cJSON_Delete(out);
	free(pr);
}

static void
probe_close(struct cm_req *req, void *arg)
{
	cm_req_reply_json(req, 503, NULL); /* the client is gone: sends
					      nothing, frees req */
	free(arg);
}

void
brain_h_test_integration(struct cm_req *req0, void *arg)
{
	struct brain *b = brain_from(arg);
	const struct cm_principal *p = cm_req_principal(req0);
	const char *tid = brain_own_tenant(req0, BRAIN_PERM_TENANT_READ);
	char errbuf[CM_ERRBUF_LEN] = "", nonce[37];
	struct cm_req *req;
	struct probe *pr;
	cJSON *env, *data, *eid;

	if (!tid) {
		cm_req_reply_json(req0, 403, NULL);
		return;
	}
	if (cm_uuid_v4(nonce) < 0) {
		cm_req_reply_json(req0, 500, NULL);
		return;
	}
	data = cJSON_CreateObject();
	cJSON_AddStringToObject(data, "nonce", nonce);
	cJSON_AddStringToObject(data, "requested_by", p->sub);
	env = cm_bus_envelope_new("system.integration_test", "brain", "system",
				  "integration-test", data);
	pr = cm_xcalloc(1, sizeof(*pr));
	cm_bus_stream_key(tid, pr->key);
	pr->t0_ms = cm_now_ms();
	if (!env || cm_bus_publish(tid, env, pr->stream_id, errbuf) < 0) {
		cm_log_err("test-integration publish: %s", errbuf);
		cJSON_Delete(env);
		free(pr);
		cm_req_fail(req0, 503, "dependency_unavailable",
			    "the event stream is unavailable");
		cm_req_reply_json(req0, 503, NULL);
		return;
	}
	eid = cJSON_GetObjectItemCaseSensitive(env, "event_id");
	cm_strlcpy(pr->event_id, cJSON_IsString(eid) ? eid->valuestring : "",
		   sizeof(pr->event_id));
	cJSON_Delete(env);
	pr->deadline_ms = cm_now_ms() + b->integration_timeout_ms;
	req = cm_req_defer(req0);
	if (!req || cm_req_every(req, PROBE_TICK_MS, probe_tick, pr) < 0) {
		free(pr);
		cm_req_reply_json(req ? req : req0, 500, NULL);
		return;
	}
	pr->req = req;
	cm_req_on_close(req, probe_close, pr);
}
