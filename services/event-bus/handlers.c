/*
 * handlers.c - the event-bus HTTP edge: publish, batch publish, history.
 *
 * The tenant is always cm_req_tenant_id(req) (verified by libcommon's
 * hooks); a body naming another tenant is refused, never obeyed.
 */
#include "evbus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/auth.h"
#include "common/http.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/tenant.h"

#include "common/banned.h"

#define HISTORY_DEFAULT_LIMIT 50
#define HISTORY_MAX_LIMIT 200

bool
bus_scope_ok(const struct cm_principal *p, const char *need)
{
	if (!p || !p->is_api_key)
		return true;
	if (cm_principal_has_role(p, "events:write"))
		return true;
	return strcmp(need, "read") == 0 &&
	       cm_principal_has_role(p, "events:read");
}

/* 0 when the caller's API key (if any) has the scope; else a recorded
   403. */
static int
scope_check(struct cm_req *req, const char *need)
{
	if (bus_scope_ok(cm_req_principal(req), need))
		return 0;
	return cm_req_fail(req, 403, "forbidden",
			   "this API key needs the scope events:%s", need);
}

/* Defaults an outside publisher may leave out. */
static void
fill_defaults(cJSON *env, const char *tenant_id)
{
	char id[37] = "", at[40];

	if (!cJSON_GetObjectItemCaseSensitive(env, "event_id") &&
	    cm_uuid_v4(id) == 0)
		cJSON_AddStringToObject(env, "event_id", id);
	if (!cJSON_GetObjectItemCaseSensitive(env, "occurred_at")) {
		cm_time_rfc3339_us(at); /* microseconds keep the history's
					   order within a second */
		cJSON_AddStringToObject(env, "occurred_at", at);
	}
	if (!cJSON_GetObjectItemCaseSensitive(env, "event_version"))
		cJSON_AddNumberToObject(env, "event_version", 1);
	if (!cJSON_GetObjectItemCaseSensitive(env, "priority"))
		cJSON_AddStringToObject(env, "priority", "normal");
	if (!cJSON_GetObjectItemCaseSensitive(env, "source_service"))
		cJSON_AddStringToObject(env, "source_service", "api");
	if (!cJSON_GetObjectItemCaseSensitive(env, "tenant_id"))
		cJSON_AddStringToObject(env, "tenant_id", tenant_id);
}

/* Complete and check one event: defaults, the tenant, and unless
   `envelope` is false the envelope and the registry (the caller then has
   cm_bus_prepare and bus_registry_check do them, in that order); 0,
   CM_EPERM, CM_ENOENT, CM_EINVAL, CM_E2BIG. */
static int
prepare_event(const struct bus *bus, cJSON *env, const char *tenant_id,
	      bool envelope, char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *t;
	int rc;

	if (!cJSON_IsObject(env)) {
		cm_errf(errbuf, "the event must be a JSON object");
		return CM_EINVAL;
	}
	fill_defaults(env, tenant_id);
	t = cJSON_GetObjectItemCaseSensitive(env, "tenant_id");
	if (!cJSON_IsString(t) || strcmp(t->valuestring, tenant_id) != 0) {
		cm_errf(errbuf, "tenant_id is not the caller's tenant");
		return CM_EPERM;
	}
	if (!envelope)
		return 0;
	if ((rc = cm_bus_validate(env, errbuf)) < 0)
		return rc;
	return bus_registry_check(&bus->registry, env, errbuf);
}

/* The HTTP answer for a prepare_event failure. */
static int
fail_event(struct cm_req *req, int rc, const char *prefix, const char *msg)
{
	if (rc == CM_EPERM)
		return cm_req_fail(req, 403, "tenant_mismatch", "%s%s", prefix,
				   msg);
	if (rc == CM_ENOENT)
		return cm_req_fail(req, 400, "unknown_event_type", "%s%s",
				   prefix, msg);
	if (rc == CM_E2BIG)
		return cm_req_fail(req, 413, "payload_too_large", "%s%s",
				   prefix, msg);
	return cm_req_fail(req, 400, "invalid_event", "%s%s", prefix, msg);
}

static cJSON *
published_item(const cJSON *env, const char *stream_id)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(
		o, "event_id",
		cJSON_GetObjectItemCaseSensitive(env, "event_id")->valuestring);
	cJSON_AddStringToObject(o, "stream_id", stream_id);
	return o;
}

/* Count n events against the tenant's hourly quota; 0 or a status. */
static int
take_quota(struct cm_req *req, const struct bus *bus, int n)
{
	const struct cm_tenant *t = cm_req_tenant(req);
	char errbuf[CM_ERRBUF_LEN] = "", after[16];
	int rc;

	rc = bus_quota_take(bus, cm_req_tenant_id(req), t ? t->tier : NULL, n,
			    errbuf);
	if (rc == 0)
		return 0;
	if (rc == CM_EAGAIN) {
		snprintf(after, sizeof(after), "%lld",
			 (long long)(3600 - cm_now_s() % 3600));
		cm_req_set_header(req, "Retry-After", after);
		return cm_req_fail(req, 429, "quota_exceeded", "%s", errbuf);
	}
	cm_log_err("quota: %s", errbuf);
	return cm_req_fail(req, 503, "bus_unavailable",
			   "the event could not be stored; retry");
}

/* One publish waiting for Redis. */
struct pub_call {
	struct cm_req *req; /* deferred */
	char event_id[80];
};

/* The stored event's answer: 202 with its ids, or 503. Both ids are
   plain (a checked uuid, a Redis entry id): no JSON escaping needed. */
static void
published(int rc, const char *id, const char *err, void *arg)
{
	struct pub_call *c = arg;
	char body[256];
	int n;

	if (rc < 0 || !cm_bus_valid_entry_id(id)) {
		cm_log_err("publish: %s", err ? err : "bad entry id");
		cm_req_fail(c->req, 503, "bus_unavailable",
			    "the event could not be stored; retry with the "
			    "same event_id");
		cm_req_reply_json(c->req, 503, NULL);
	} else {
		n = snprintf(body, sizeof(body),
			     "{\"event_id\":\"%s\",\"stream_id\":\"%s\"}",
			     c->event_id, id);
		cm_req_reply(c->req, 202, "application/json", body, (size_t)n);
	}
	free(c);
}

/* POST /api/events/publish - one event for the caller's tenant. The
   checks run on the worker (the envelope is checked and printed once, by
   cm_bus_prepare); the store is asynchronous (the request is deferred),
   so a worker's publishes share its Redis connection instead of each
   waiting for its own round trip. */
void
bus_handle_publish(struct cm_req *req, void *arg)
{
	struct bus *bus = arg;
	const char *tenant = cm_req_tenant_id(req);
	char errbuf[CM_ERRBUF_LEN] = "";
	struct cm_bus_prepared *prep = NULL;
	struct pub_call *c;
	cJSON *env = NULL;
	int status = 500, rc;

	if ((status = scope_check(req, "write")) != 0 ||
	    (status = cm_req_json(req, &env)) != 0)
		goto out;
	status = 500;
	if ((rc = prepare_event(bus, env, tenant, false, errbuf)) < 0 ||
	    (rc = cm_bus_prepare(tenant, env, &prep, errbuf)) < 0 ||
	    (rc = bus_registry_check(&bus->registry, env, errbuf)) < 0) {
		status = fail_event(req, rc, "", errbuf);
		goto out;
	}
	if ((status = take_quota(req, bus, 1)) != 0)
		goto out;
	c = cm_xcalloc(1, sizeof(*c));
	cm_strlcpy(
		c->event_id,
		cJSON_GetObjectItemCaseSensitive(env, "event_id")->valuestring,
		sizeof(c->event_id));
	if (!(c->req = cm_req_defer(req))) {
		free(c);
		status = 500;
		goto out;
	}
	rc = cm_bus_publish_prepared_async(prep, published, c, errbuf);
	if (rc < 0)
		published(rc, NULL, errbuf, c);
	cJSON_Delete(env);
	return;
out:
	cm_bus_prepared_free(prep);
	cm_req_reply_json(req, status, NULL);
	cJSON_Delete(env);
}

/* Check every event of a batch before publishing any. */
static int
prepare_batch(struct cm_req *req, const struct bus *bus, cJSON *events,
	      const char *tenant)
{
	char errbuf[CM_ERRBUF_LEN], prefix[32];
	cJSON *it;
	int i = 0, rc;

	cJSON_ArrayForEach(it, events)
	{
		errbuf[0] = '\0';
		rc = prepare_event(bus, it, tenant, true, errbuf);
		if (rc < 0) {
			snprintf(prefix, sizeof(prefix), "events[%d]: ", i);
			return fail_event(req, rc, prefix, errbuf);
		}
		i++;
	}
	return 0;
}

static int
publish_batch(struct cm_req *req, cJSON *events, const char *tenant,
	      cJSON *items)
{
	char errbuf[CM_ERRBUF_LEN] = "", sid[64];
	int i = 0;
	cJSON *it;

	cJSON_ArrayForEach(it, events)
	{
		if (cm_bus_publish(tenant, it, sid, errbuf) < 0) {
			cm_log_err("publish batch: %s", errbuf);
			return cm_req_fail(req, 503, "bus_unavailable",
					   "%d of %d events stored; retry the "
					   "rest with the same event_ids",
					   i, cJSON_GetArraySize(events));
		}
		cJSON_AddItemToArray(items, published_item(it, sid));
		i++;
	}
	return 202;
}

/* POST /api/events/publish/batch - {"events": [...]} (1..100), all
   checked before any is published. */
void
bus_handle_publish_batch(struct cm_req *req, void *arg)
{
	struct bus *bus = arg;
	const char *tenant = cm_req_tenant_id(req);
	char errbuf[CM_ERRBUF_LEN] = "";
	const cJSON *events = NULL;
	cJSON *body = NULL, *out = NULL;
	int status;

	if ((status = scope_check(req, "write")) != 0 ||
	    (status = cm_req_json(req, &body)) != 0)
		goto out;
	if (cm_json_get_array(body, NULL, "events", true, BUS_MAX_BATCH,
			      &events, errbuf) < 0 ||
	    cJSON_GetArraySize(events) == 0) {
		status = cm_req_fail(req, 400, "invalid_event", "%s",
				     errbuf[0] ? errbuf
					       : "field 'events' is "
						 "empty");
		goto out;
	}
	if ((status = prepare_batch(req, bus, (cJSON *)events, tenant)) != 0 ||
	    (status = take_quota(req, bus, cJSON_GetArraySize(events))) != 0)
		goto out;
	out = cJSON_CreateObject();
	status = publish_batch(req, (cJSON *)events, tenant,
			       cJSON_AddArrayToObject(out, "items"));
out:
	cm_req_reply_json(req, status, status == 202 ? out : NULL);
	cJSON_Delete(out);
	cJSON_Delete(body);
}

static bool
history_type_ok(const char *t)
{
	char dom[70];
	size_t n = strlen(t);

	if (n >= 3 && n < sizeof(dom) - 2 && strcmp(t + n - 2, ".*") == 0) {
		snprintf(dom, sizeof(dom), "%.*s.x", (int)(n - 2), t);
		return cm_bus_valid_type(dom);
	}
	return cm_bus_valid_type(t);
}

/* Read and check the query; 0 or the status after cm_req_fail. */
static int
history_query(struct cm_req *req, struct bus_history_query *q)
{
	const char *lim = cm_req_query(req, "limit");
	int64_t n = HISTORY_DEFAULT_LIMIT;

	q->tenant_id = cm_req_tenant_id(req);
	q->type = cm_req_query(req, "type");
	q->aggregate_type = cm_req_query(req, "aggregate_type");
	q->aggregate_id = cm_req_query(req, "aggregate_id");
	q->correlation_id = cm_req_query(req, "correlation_id");
	q->since = cm_req_query(req, "since");
	q->until = cm_req_query(req, "until");
	q->cursor = cm_req_query(req, "cursor");
	if (lim && cm_parse_i64(lim, 1, HISTORY_MAX_LIMIT, &n) < 0)
		return cm_req_fail(req, 400, "bad_request",
				   "limit must be an integer 1..200");
	q->limit = (int)n;
	if (q->type && !history_type_ok(q->type))
		return cm_req_fail(req, 400, "bad_request",
				   "type must be <domain>.<what> or "
				   "<domain>.*");
	if ((q->since && !cm_bus_is_rfc3339(q->since)) ||
	    (q->until && !cm_bus_is_rfc3339(q->until)))
		return cm_req_fail(req, 400, "bad_request",
				   "since and until must be RFC 3339 times");
	if ((q->aggregate_type && strlen(q->aggregate_type) > 64) ||
	    (q->aggregate_id && strlen(q->aggregate_id) > 128) ||
	    (q->correlation_id && strlen(q->correlation_id) > 128))
		return cm_req_fail(req, 400, "bad_request",
				   "a filter is too long");
	if (q->cursor && !bus_cursor_ok(q->cursor))
		return cm_req_fail(req, 400, "bad_cursor", "bad cursor");
	return 0;
}

/* GET /api/events/history - the caller's tenant's events, newest first. */
void
bus_handle_history(struct cm_req *req, void *arg)
{
	struct bus_history_query q = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *out = NULL;
	int status, rc;

	(void)arg;
	if ((status = scope_check(req, "read")) != 0 ||
	    (status = history_query(req, &q)) != 0)
		goto out;
	rc = bus_store_history(&q, &out, errbuf);
	if (rc < 0) {
		cm_log_err("history: %s", errbuf);
		status = 500;
		goto out;
	}
	status = 200;
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
}

/* GET /api/events/dead-letters - the tenant's dead letters, newest first. */
void
bus_handle_dlq_list(struct cm_req *req, void *arg)
{
	const char *lim = cm_req_query(req, "limit");
	char errbuf[CM_ERRBUF_LEN] = "";
	int64_t n = HISTORY_DEFAULT_LIMIT;
	cJSON *out = NULL;
	int status = 500, rc;

	(void)arg;
	if ((status = scope_check(req, "read")) != 0)
		goto out;
	status = 500;
	if (lim && cm_parse_i64(lim, 1, HISTORY_MAX_LIMIT, &n) < 0) {
		status = cm_req_fail(req, 400, "bad_request",
				     "limit must be an integer 1..200");
		goto out;
	}
	rc = bus_dlq_list(cm_req_tenant_id(req), cm_req_query(req, "cursor"),
			  (int)n, &out, errbuf);
	if (rc == CM_EINVAL)
		status = cm_req_fail(req, 400, "bad_cursor", "bad cursor");
	else if (rc < 0)
		cm_log_err("dead letters: %s", errbuf);
	else
		status = 200;
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
}

/* The status for a dead-letter call's result. */
static int
dlq_status(struct cm_req *req, int rc, int ok, const char *errbuf)
{
	if (rc == 0)
		return ok;
	if (rc == CM_ENOENT || rc == CM_EINVAL)
		return cm_req_fail(req, 404, "not_found",
				   "no such dead letter");
	cm_log_err("dead letter: %s", errbuf);
	return 500;
}

/* GET /api/events/dead-letters/:id */
void
bus_handle_dlq_get(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *out = NULL;
	int rc;

	(void)arg;
	if (scope_check(req, "read") != 0) {
		cm_req_reply_json(req, 403, NULL);
		return;
	}
	rc = bus_dlq_get(cm_req_tenant_id(req), cm_req_param(req, "id"), &out,
			 errbuf);
	cm_req_reply_json(req, dlq_status(req, rc, 200, errbuf), out);
	cJSON_Delete(out);
}

/* POST /api/events/dead-letters/:id/retry - back to its group only. */
void
bus_handle_dlq_retry(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "", sid[64] = "";
	cJSON *out = NULL;
	int rc, status;

	(void)arg;
	if (scope_check(req, "write") != 0) {
		cm_req_reply_json(req, 403, NULL);
		return;
	}
	rc = cm_bus_dlq_retry(cm_req_tenant_id(req), cm_req_param(req, "id"),
			      sid, errbuf);
	status = dlq_status(req, rc, 202, errbuf);
	if (status == 202) {
		out = cJSON_CreateObject();
		cJSON_AddStringToObject(out, "stream_id", sid);
	}
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
}

/* DELETE /api/events/dead-letters/:id */
void
bus_handle_dlq_discard(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	int rc;

	(void)arg;
	if (scope_check(req, "write") != 0) {
		cm_req_reply_json(req, 403, NULL);
		return;
	}
	rc = bus_dlq_discard(cm_req_tenant_id(req), cm_req_param(req, "id"),
			     errbuf);
	cm_req_reply_json(req, dlq_status(req, rc, 204, errbuf), NULL);
}

/* Check a replay request body; 0 or the status after cm_req_fail. */
static int
replay_request(struct cm_req *req, const cJSON *body, struct bus_replay_req *r)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	const cJSON *it;
	int rc;

	r->tenant_id = cm_req_tenant_id(req);
	if (cm_json_get_str(body, NULL, "subscriber", true, 48, &r->subscriber,
			    errbuf) < 0 ||
	    cm_json_get_array(body, NULL, "types", true, CM_BUS_MAX_PATTERNS,
			      &r->types, errbuf) < 0)
		return cm_req_fail(req, 400, "bad_request", "%s", errbuf);
	if (!cm_bus_valid_group(r->subscriber))
		return cm_req_fail(req, 400, "bad_request",
				   "subscriber must be a group name "
				   "([a-z][a-z0-9_-]*)");
	if (cJSON_GetArraySize(r->types) == 0)
		return cm_req_fail(req, 400, "bad_request", "types is empty");
	cJSON_ArrayForEach(it, r->types)
	{
		if (!cJSON_IsString(it) || (strcmp(it->valuestring, "*") &&
					    !history_type_ok(it->valuestring)))
			return cm_req_fail(req, 400, "bad_request",
					   "types must be event types or "
					   "<domain>.* patterns");
	}
	rc = cm_json_get_str(body, NULL, "since", false, 40, &r->since, errbuf);
	if (rc == 0 && !cm_bus_is_rfc3339(r->since))
		rc = CM_EINVAL;
	if (rc < 0 && rc != CM_ENOENT)
		return cm_req_fail(req, 400, "bad_request",
				   "since must be an RFC 3339 time");
	rc = cm_json_get_str(body, NULL, "until", false, 40, &r->until, errbuf);
	if (rc == 0 && !cm_bus_is_rfc3339(r->until))
		rc = CM_EINVAL;
	if (rc < 0 && rc != CM_ENOENT)
		return cm_req_fail(req, 400, "bad_request",
				   "until must be an RFC 3339 time");
	return 0;
}

/* POST /api/events/replay - {subscriber, types, since?, until?}. */
void
bus_handle_replay_create(struct cm_req *req, void *arg)
{
	struct bus_replay_req r = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "", id[37];
	cJSON *body = NULL, *out = NULL;
	int64_t total = 0;
	int status;

	(void)arg;
	if ((status = scope_check(req, "write")) != 0 ||
	    (status = cm_req_json(req, &body)) != 0 ||
	    (status = replay_request(req, body, &r)) != 0)
		goto out;
	if (bus_replay_create(&r, id, &total, errbuf) < 0) {
		cm_log_err("replay: %s", errbuf);
		status = 500;
		goto out;
	}
	out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "id", id);
	cJSON_AddStringToObject(out, "status", "pending");
	cJSON_AddNumberToObject(out, "total", (double)total);
	status = 202;
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
	cJSON_Delete(body);
}

/* GET /api/events/replay/:id - progress. */
void
bus_handle_replay_get(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *out = NULL;
	int rc, status = 200;

	(void)arg;
	if (scope_check(req, "read") != 0) {
		cm_req_reply_json(req, 403, NULL);
		return;
	}
	rc = bus_replay_get(cm_req_tenant_id(req), cm_req_param(req, "id"),
			    &out, errbuf);
	if (rc == CM_ENOENT) {
		status = cm_req_fail(req, 404, "not_found", "no such replay");
	} else if (rc < 0) {
		cm_log_err("replay: %s", errbuf);
		status = 500;
	}
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
}
