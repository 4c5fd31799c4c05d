/*
 * test_bus.c - the event-bus binary against the test stack: registry
 * refusals, tenant isolation of history, the audit row written once,
 * history filters and cursors, metrics, dead letters (per tenant, and
 * every tenant's for a platform admin).
 */
#include "svc.h"
#include "testutil.h"

#include "common/auth.h"
#include "common/buf.h"
#include "common/bus.h"
#include "common/mem.h"
#include "common/redis.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/banned.h"

static struct cm_test_svc brain, bus;
static char tenant_a[37], tenant_b[37], tenant_q[37];

static const char *const bus_env[] = { "BUS_CLAIM_IDLE_MS=1000",
				       "BUS_BACKOFF_MS=10",
				       "EVENT_QUOTA_STARTER=3",
				       "BUS_STATS_INTERVAL_MS=200", NULL };

static void
add_tenant(char id[37], const char *prefix, const char *tier)
{
	char sql[512];

	ck_assert_int_eq(cm_uuid_v4(id), 0);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO brain.tenants (id, slug, name, status, "
		 "subscription_tier) "
		 "VALUES ('%s', '%s-%.8s', 'Tenant %s', 'active', '%s')",
		 id, prefix, id, prefix, tier);
	ck_assert_int_eq(cm_test_psql(sql), 0);
}

static void
setup(void)
{
	cm_test_require_stack();
	ck_assert_int_eq(cm_test_svc_start(&brain, "brain", NULL), 0);
	add_tenant(tenant_a, "busa", "free");
	add_tenant(tenant_b, "busb", "free");
	add_tenant(tenant_q, "busq", "starter");
	ck_assert_int_eq(cm_test_svc_start(&bus, "event-bus", bus_env), 0);
}

static void
teardown(void)
{
	ck_assert_int_eq(cm_test_svc_stop(&bus), 0);
	cm_test_svc_stop(&brain);
}

/* A request as a user of tenant tid. */
static struct cm_test_resp
call(const char *method, const char *tid, const char *path, const char *body)
{
	char *tok = cm_test_user_token("user-1", tid, "[\"owner\"]", 300);
	struct cm_buf auth = CM_BUF_INIT(0);
	const char *hs[3] = { NULL, "Content-Type: application/json", NULL };
	struct cm_test_resp r;

	cm_buf_printf(&auth, "Authorization: Bearer %s", tok);
	hs[0] = cm_buf_str(&auth);
	ck_assert_int_eq(cm_test_http(method, bus.port, path, hs, body, &r), 0);
	cm_buf_release(&auth);
	free(tok);
	return r;
}

static void
expect_refusal(const char *body, int status, const char *code,
	       const char *words)
{
	struct cm_test_resp r =
		call("POST", tenant_a, "/api/events/publish", body);

	ck_assert_msg(r.status == status, "%s -> %ld %s", body, r.status,
		      r.body);
	ck_assert_str_eq(cm_test_resp_error_code(&r), code);
	ck_assert_msg(strstr(r.body, words), "%s: no '%s' in %s", body, words,
		      r.body);
	cm_test_resp_release(&r);
}

START_TEST(test_unknown_types_and_bad_data_are_refused_naming_the_problem)
{
	char body[512];
	struct cm_test_resp r;

	expect_refusal("{\"event_type\":\"lead.exploded\",\"aggregate_type\":"
		       "\"lead\",\"aggregate_id\":\"1\",\"data\":{}}",
		       400, "unknown_event_type", "lead.exploded");
	expect_refusal("{\"event_type\":\"lead.created\",\"aggregate_type\":"
		       "\"lead\",\"aggregate_id\":\"1\",\"data\":{}}",
		       400, "invalid_event", "data.lead_id: is required");
	expect_refusal("{\"event_type\":\"lead.created\",\"aggregate_type\":"
		       "\"lead\",\"aggregate_id\":\"1\",\"data\":"
		       "{\"lead_id\":\"nope\"}}",
		       400, "invalid_event", "data.lead_id: must be a uuid");
	expect_refusal("{\"event_type\":\"lead.created\",\"aggregate_type\":"
		       "\"lead\",\"aggregate_id\":\"1\",\"priority\":\"x\","
		       "\"data\":{}}",
		       400, "invalid_event", "priority");
	snprintf(body, sizeof(body),
		 "{\"event_type\":\"system.maintenance\",\"tenant_id\":\"%s\","
		 "\"aggregate_type\":\"system\",\"aggregate_id\":\"1\","
		 "\"data\":{\"message\":\"hi\"}}",
		 tenant_b);
	expect_refusal(body, 403, "tenant_mismatch", "tenant");
	/* the caller's tenant first, another one second: refused whole */
	snprintf(body, sizeof(body),
		 "{\"event_type\":\"system.maintenance\",\"tenant_id\":\"%s\","
		 "\"tenant_id\":\"%s\",\"aggregate_type\":\"system\","
		 "\"aggregate_id\":\"1\",\"data\":{\"message\":\"hi\"}}",
		 tenant_a, tenant_b);
	expect_refusal(body, 400, "invalid_event",
		       "'tenant_id' appears more than once");
	r = call("POST", tenant_a, "/api/events/publish/batch",
		 "{\"events\":[{\"event_type\":\"system.maintenance\","
		 "\"aggregate_type\":\"system\",\"aggregate_id\":\"1\","
		 "\"data\":{\"message\":\"hi\"}},{\"event_type\":\"nope.x\","
		 "\"aggregate_type\":\"system\",\"aggregate_id\":\"1\","
		 "\"data\":{}}]}");
	ck_assert_int_eq(r.status, 400);
	ck_assert_ptr_nonnull(strstr(r.body, "events[1]"));
	cm_test_resp_release(&r);
}
END_TEST

/* Poll history (as tid, query q) until it holds want items or 10 s. */
static struct cm_test_resp
history_until(const char *tid, const char *q, int want)
{
	struct cm_test_resp r;
	char path[512];
	int i;

	snprintf(path, sizeof(path), "/api/events/history?%s", q);
	for (i = 0; i < 100; i++) {
		r = call("GET", tid, path, NULL);
		ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
		if (cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "items")) >=
			    want ||
		    want == 0)
			return r;
		cm_test_resp_release(&r);
		usleep(100 * 1000);
	}
	ck_abort_msg("history never reached %d items for %s", want, q);
	return r;
}

/* Rows of event_id in the audit table, counted as the superuser. */
static long long
audit_rows(const char *event_id)
{
	return cm_test_psql_count("SELECT count(*) FROM event_bus.events "
				  "WHERE event_id = $1",
				  event_id);
}

START_TEST(test_an_event_is_audited_once_and_seen_only_by_its_tenant)
{
	char body[512], eid[37], lead[37], q[256];
	struct cm_test_resp r;
	int i;

	ck_assert_int_eq(cm_uuid_v4(eid), 0);
	ck_assert_int_eq(cm_uuid_v4(lead), 0);
	snprintf(body, sizeof(body),
		 "{\"event_id\":\"%s\",\"event_type\":\"lead.created\","
		 "\"occurred_at\":\"2026-11-20T10:00:00.000001Z\","
		 "\"aggregate_type\":\"lead\",\"aggregate_id\":\"%s\","
		 "\"correlation_id\":\"corr-%.8s\",\"source_service\":\"crm\","
		 "\"data\":{\"lead_id\":\"%s\",\"email\":\"a@b.test\"}}",
		 eid, lead, lead, lead);
	for (i = 0; i < 2; i++) { /* the same event twice */
		r = call("POST", tenant_a, "/api/events/publish", body);
		ck_assert_msg(r.status == 202, "%ld %s", r.status, r.body);
		ck_assert_str_eq(
			cJSON_GetObjectItem(r.json, "event_id")->valuestring,
			eid);
		cm_test_resp_release(&r);
	}
	snprintf(q, sizeof(q), "aggregate_type=lead&aggregate_id=%s", lead);
	r = history_until(tenant_a, q, 1);
	ck_assert_int_eq(
		cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "items")), 1);
	cm_test_resp_release(&r);
	/* the second delivery is in: the stream holds two entries */
	usleep(500 * 1000);
	ck_assert_int_eq(audit_rows(eid), 1);
	snprintf(q, sizeof(q), "correlation_id=corr-%.8s", lead);
	r = history_until(tenant_a, q, 1);
	cm_test_resp_release(&r);
	/* tenant B sees nothing of it, whatever it asks */
	r = history_until(tenant_b, q, 0);
	ck_assert_int_eq(
		cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "items")), 0);
	cm_test_resp_release(&r);
	r = history_until(tenant_b, "type=lead.*", 0);
	ck_assert_int_eq(
		cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "items")), 0);
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_history_filters_by_type_and_pages_with_a_cursor)
{
	struct cm_buf body = CM_BUF_INIT(0), path = CM_BUF_INIT(0);
	char agg[37], ids[5][40];
	const cJSON *it;
	struct cm_test_resp r;
	int i, seen = 0, pages = 0;

	ck_assert_int_eq(cm_uuid_v4(agg), 0);
	cm_buf_puts(&body, "{\"events\":[");
	for (i = 0; i < 5; i++)
		cm_buf_printf(&body,
			      "%s{\"event_type\":\"%s\",\"aggregate_type\":"
			      "\"deal\",\"aggregate_id\":\"%s\",\"data\":{"
			      "\"deal_id\":\"%s\"%s}}",
			      i ? "," : "", i < 4 ? "deal.created" : "deal.won",
			      agg, agg, i < 4 ? ",\"stage\":\"new\"" : "");
	cm_buf_puts(&body, "]}");
	r = call("POST", tenant_b, "/api/events/publish/batch",
		 cm_buf_str(&body));
	ck_assert_msg(r.status == 202, "%ld %s", r.status, r.body);
	cm_test_resp_release(&r);
	cm_buf_printf(&path, "aggregate_id=%s&limit=2", agg);
	r = history_until(tenant_b, cm_buf_str(&path), 2);
	cm_test_resp_release(&r);
	r = history_until(tenant_b, cm_buf_str(&path), 0);
	for (;;) {
		pages++;
		cJSON_ArrayForEach(it, cJSON_GetObjectItem(r.json, "items"))
		{
			ck_assert_int_lt(seen, 5);
			cm_strlcpy(ids[seen++],
				   cJSON_GetObjectItem(it, "event_id")
					   ->valuestring,
				   40);
		}
		it = cJSON_GetObjectItem(r.json, "next_cursor");
		if (!cJSON_IsString(it))
			break;
		cm_buf_reset(&path);
		cm_buf_printf(&path, "aggregate_id=%s&limit=2&cursor=%s", agg,
			      it->valuestring);
		cm_test_resp_release(&r);
		r = history_until(tenant_b, cm_buf_str(&path), 0);
	}
	cm_test_resp_release(&r);
	if (seen < 5) /* the audit writer may still be behind: wait */
		ck_abort_msg("only %d of 5 events in %d pages", seen, pages);
	ck_assert_int_eq(pages, 3);
	for (i = 1; i < 5; i++)
		ck_assert_str_ne(ids[i], ids[i - 1]);
	cm_buf_reset(&path);
	cm_buf_printf(&path, "aggregate_id=%s&type=deal.won", agg);
	r = history_until(tenant_b, cm_buf_str(&path), 1);
	ck_assert_int_eq(
		cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "items")), 1);
	cm_test_resp_release(&r);
	r = call("GET", tenant_b, "/api/events/history?cursor=zzz", NULL);
	ck_assert_int_eq(r.status, 400);
	cm_test_resp_release(&r);
	r = call("GET", tenant_b, "/api/events/history?since=yesterday", NULL);
	ck_assert_int_eq(r.status, 400);
	cm_test_resp_release(&r);
	cm_buf_release(&body);
	cm_buf_release(&path);
}
END_TEST

START_TEST(test_metrics_count_published_events_by_type)
{
	struct cm_test_resp r;
	bool found = false;
	int i;

	r = call("POST", tenant_a, "/api/events/publish",
		 "{\"event_type\":\"system.maintenance\",\"aggregate_type\":"
		 "\"system\",\"aggregate_id\":\"m\",\"data\":{\"message\":"
		 "\"soon\"}}");
	ck_assert_int_eq(r.status, 202);
	cm_test_resp_release(&r);
	ck_assert_int_eq(
		cm_test_http("GET", bus.port, "/metrics", NULL, NULL, &r), 0);
	ck_assert_ptr_nonnull(strstr(r.body, "bz_bus_published_total{"));
	ck_assert_ptr_nonnull(strstr(r.body, "type=\"system.maintenance\""));
	cm_test_resp_release(&r);
	/* the audit group's pending and lag gauges appear */
	for (i = 0; i < 50; i++) {
		ck_assert_int_eq(cm_test_http("GET", bus.port, "/metrics", NULL,
					      NULL, &r),
				 0);
		found = strstr(r.body, "bz_bus_lag{") &&
			strstr(r.body, "bz_bus_pending{") &&
			strstr(r.body, "group=\"audit\"");
		cm_test_resp_release(&r);
		if (found)
			break;
		usleep(100 * 1000);
	}
	ck_assert(found);
}
END_TEST

static const char quota_event_a[] =
	"{\"event_type\":\"system.maintenance\",\"aggregate_type\":"
	"\"system\",\"aggregate_id\":\"d\",\"data\":{\"message\":\"d\"}}";

/* Poll the tenant's dead letters until one whose id is not `not` shows. */
static struct cm_test_resp
dead_letters_until(const char *tid, const char * not, char id[64])
{
	struct cm_test_resp r;
	const cJSON *first;
	int i;

	for (i = 0; i < 100; i++) {
		r = call("GET", tid, "/api/events/dead-letters", NULL);
		ck_assert_int_eq(r.status, 200);
		first = cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "items"),
					   0);
		if (first &&
		    strcmp(cJSON_GetObjectItem(first, "id")->valuestring,
			   not ) != 0) {
			cm_strlcpy(
				id,
				cJSON_GetObjectItem(first, "id")->valuestring,
				64);
			return r;
		}
		cm_test_resp_release(&r);
		usleep(100 * 1000);
	}
	ck_abort_msg("no dead letter for %s", tid);
	return r;
}

/* An entry on A's stream whose envelope names B: the audit writer must
   dead-letter it (never store it under either tenant). */
static void
forge_redis_init(void)
{
	struct cm_redis_config rc = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	int64_t port;

	ck_assert_int_eq(
		cm_parse_i64(cm_test_env("REDIS_PORT"), 1, 65535, &port), 0);
	rc.host = cm_test_env("REDIS_HOST");
	rc.port = (int)port;
	ck_assert_int_eq(cm_redis_init(&rc, errbuf), 0);
}

/* An entry on `on`'s stream whose envelope names `names`. */
static void
forge_entry_on(const char *on, const char *names)
{
	char errbuf[CM_ERRBUF_LEN] = "", key[CM_BUS_KEY_LEN];
	const char *fields[] = { "type", "event" };
	const char *values[2];
	cJSON *env = cm_bus_envelope_new("system.maintenance", "evil", "system",
					 "x", NULL);
	char *text;

	cJSON_AddStringToObject(env, "tenant_id", names);
	text = cJSON_PrintUnformatted(env);
	forge_redis_init();
	cm_bus_stream_key(on, key);
	values[0] = "system.maintenance";
	values[1] = text;
	ck_assert_msg(cm_redis_xadd(key, 0, 2, fields, values, NULL, errbuf) ==
			      0,
		      "%s", errbuf);
	free(text);
	cJSON_Delete(env);
}

static void
forge_entry(void)
{
	forge_entry_on(tenant_a, tenant_b);
}

START_TEST(test_dead_letters_are_listed_retried_and_discarded_per_tenant)
{
	char id[64], id2[64], path[160];
	struct cm_test_resp r;
	const cJSON *it;

	r = call("POST", tenant_a, "/api/events/publish", quota_event_a);
	ck_assert_int_eq(r.status, 202); /* makes A's stream known */
	cm_test_resp_release(&r);
	forge_entry();
	r = dead_letters_until(tenant_a, "", id);
	it = cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "items"), 0);
	ck_assert_str_eq(cJSON_GetObjectItem(it, "group")->valuestring,
			 "audit");
	ck_assert_ptr_nonnull(
		strstr(cJSON_GetObjectItem(it, "error")->valuestring,
		       "does not match"));
	cm_test_resp_release(&r);
	/* B can neither see nor touch it */
	r = call("GET", tenant_b, "/api/events/dead-letters", NULL);
	ck_assert_int_eq(
		cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "items")), 0);
	cm_test_resp_release(&r);
	snprintf(path, sizeof(path), "/api/events/dead-letters/%s", id);
	r = call("GET", tenant_b, path, NULL);
	ck_assert_int_eq(r.status, 404);
	cm_test_resp_release(&r);
	r = call("DELETE", tenant_b, path, NULL);
	ck_assert_int_eq(r.status, 404);
	cm_test_resp_release(&r);
	r = call("GET", tenant_a, path, NULL);
	ck_assert_int_eq(r.status, 200);
	cm_test_resp_release(&r);
	snprintf(path, sizeof(path), "/api/events/dead-letters/%s/retry", id);
	r = call("POST", tenant_b, path, NULL);
	ck_assert_int_eq(r.status, 404);
	cm_test_resp_release(&r);
	r = call("POST", tenant_a, path, NULL);
	ck_assert_int_eq(r.status, 202);
	cm_test_resp_release(&r);
	/* it fails again, so it comes back as a new dead letter */
	r = dead_letters_until(tenant_a, id, id2);
	ck_assert_int_eq(
		cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "items")), 1);
	cm_test_resp_release(&r);
	snprintf(path, sizeof(path), "/api/events/dead-letters/%s", id2);
	r = call("DELETE", tenant_a, path, NULL);
	ck_assert_int_eq(r.status, 204);
	cm_test_resp_release(&r);
	r = call("GET", tenant_a, path, NULL);
	ck_assert_int_eq(r.status, 404);
	cm_test_resp_release(&r);
	/* nothing of it was ever stored for either tenant */
	r = history_until(tenant_b, "aggregate_id=x", 0);
	ck_assert_int_eq(
		cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "items")), 0);
	cm_test_resp_release(&r);
}
END_TEST

/* A request with one extra header line (a token), no body. */
static struct cm_test_resp
call_with(const char *method, const char *path, const char *h1, const char *h2)
{
	const char *hs[3] = { h1, h2, NULL };
	struct cm_test_resp r;

	ck_assert_int_eq(cm_test_http(method, bus.port, path, hs, NULL, &r), 0);
	return r;
}

/* A request as a user with roles (a JSON array) in tenant tid (NULL:
   none). */
static struct cm_test_resp
call_role(const char *method, const char *tid, const char *roles,
	  const char *path)
{
	char *tok = cm_test_user_token("user-2", tid, roles, 300);
	struct cm_buf auth = CM_BUF_INIT(0);
	struct cm_test_resp r;

	cm_buf_printf(&auth, "Authorization: Bearer %s", tok);
	r = call_with(method, path, cm_buf_str(&auth), NULL);
	cm_buf_release(&auth);
	free(tok);
	return r;
}

static struct cm_test_resp
admin(const char *method, const char *path)
{
	return call_role(method, NULL, "[\"super_admin\"]", path);
}

static void
expect_status(struct cm_test_resp r, long status, const char *code)
{
	ck_assert_msg(r.status == status, "want %ld, got %ld %s", status,
		      r.status, r.body);
	if (code)
		ck_assert_str_eq(cm_test_resp_error_code(&r), code);
	cm_test_resp_release(&r);
}

static int
items_of(const struct cm_test_resp *r)
{
	return cJSON_GetArraySize(cJSON_GetObjectItem(r->json, "items"));
}

/* Poll the tenant's own list until it holds n letters; their ids into
   ids (n <= 4). */
static void
letters_until(const char *tid, int n, char ids[][64])
{
	struct cm_test_resp r;
	const cJSON *it;
	int i, k;

	for (i = 0; i < 100; i++) {
		r = call("GET", tid, "/api/events/dead-letters", NULL);
		ck_assert_int_eq(r.status, 200);
		if (items_of(&r) == n)
			break;
		cm_test_resp_release(&r);
		usleep(100 * 1000);
	}
	ck_assert_msg(i < 100, "no %d dead letters for %s", n, tid);
	k = 0;
	cJSON_ArrayForEach(it, cJSON_GetObjectItem(r.json, "items"))
	{
		ck_assert_ptr_null(cJSON_GetObjectItem(it, "tenant_id"));
		cm_strlcpy(ids[k++], cJSON_GetObjectItem(it, "id")->valuestring,
			   64);
	}
	cm_test_resp_release(&r);
}

/* How many letters of A, of B and of the fake tenants a walk showed. */
struct walked {
	int a, b, fake, pages;
};

/* Letters of n made-up tenants whose ids start with prefix (8 hex). */
static void
fake_tenants(const char *prefix, int n, bool drop)
{
	char errbuf[CM_ERRBUF_LEN] = "", key[CM_BUS_KEY_LEN], tid[37];
	const char *fields[] = { "group", "type", "event", "attempts",
				 "error" };
	const char *values[] = { "audit", "system.maintenance", "{}", "1",
				 "made up" };
	redisReply *r;
	int i;

	forge_redis_init();
	for (i = 0; i < n; i++) {
		snprintf(tid, sizeof(tid), "%s-0000-4000-8000-%012d", prefix,
			 i);
		cm_bus_dlq_key(tid, key);
		if (drop) {
			r = cm_redis_cmdf(errbuf, "DEL %s", key);
			ck_assert_msg(r != NULL, "%s", errbuf);
			freeReplyObject(r);
			continue;
		}
		ck_assert_msg(cm_redis_xadd(key, 0, 5, fields, values, NULL,
					    errbuf) == 0,
			      "%s", errbuf);
	}
}

/* Walk the admin listing with limit and query q ("" or "&..."), counting
   into *w. Every letter must show exactly once and carry its tenant_id. */
static void
admin_walk(int limit, const char *q, const char *fake, struct walked *w)
{
	struct cm_buf seen = CM_BUF_INIT(0), path = CM_BUF_INIT(0),
		      key = CM_BUF_INIT(0);
	const cJSON *it, *next, *tid;
	struct cm_test_resp r;
	char cursor[256] = "";

	memset(w, 0, sizeof(*w));
	cm_buf_puts(&seen, "|");
	do {
		cm_buf_reset(&path);
		cm_buf_printf(&path,
			      "/api/events/admin/dead-letters?limit=%d%s%s%s",
			      limit, q, *cursor ? "&cursor=" : "", cursor);
		r = admin("GET", cm_buf_str(&path));
		ck_assert_msg(r.status == 200, "%s: %ld %s", cm_buf_str(&path),
			      r.status, r.body);
		ck_assert_int_le(items_of(&r), limit);
		cJSON_ArrayForEach(it, cJSON_GetObjectItem(r.json, "items"))
		{
			tid = cJSON_GetObjectItem(it, "tenant_id");
			ck_assert(cJSON_IsString(tid));
			cm_buf_reset(&key);
			cm_buf_printf(
				&key, "|%s/%s|", tid->valuestring,
				cJSON_GetObjectItem(it, "id")->valuestring);
			ck_assert_msg(
				!strstr(cm_buf_str(&seen), cm_buf_str(&key)),
				"%s listed twice", cm_buf_str(&key));
			cm_buf_puts(&seen, cm_buf_str(&key) + 1);
			w->a += strcmp(tid->valuestring, tenant_a) == 0;
			w->b += strcmp(tid->valuestring, tenant_b) == 0;
			w->fake += strncmp(tid->valuestring, fake, 8) == 0;
		}
		next = cJSON_GetObjectItem(r.json, "next_cursor");
		ck_assert(cJSON_IsString(next) || cJSON_IsNull(next));
		cursor[0] = '\0';
		if (cJSON_IsString(next))
			ck_assert_uint_lt(cm_strlcpy(cursor, next->valuestring,
						     sizeof(cursor)),
					  sizeof(cursor));
		cm_test_resp_release(&r);
		ck_assert_int_lt(++w->pages, 10000);
	} while (*cursor);
	cm_buf_release(&seen);
	cm_buf_release(&path);
	cm_buf_release(&key);
}

/* Everything a non-admin tries on the admin routes gets 403. */
static void
expect_admin_routes_refused(const char *h1, const char *h2, const char *letter)
{
	char path[200];

	expect_status(
		call_with("GET", "/api/events/admin/dead-letters", h1, h2), 403,
		"forbidden");
	snprintf(path, sizeof(path), "/api/events/admin/dead-letters/%s",
		 letter);
	expect_status(call_with("GET", path, h1, h2), 403, "forbidden");
	expect_status(call_with("DELETE", path, h1, h2), 403, "forbidden");
	snprintf(path, sizeof(path), "/api/events/admin/dead-letters/%s/retry",
		 letter);
	expect_status(call_with("POST", path, h1, h2), 403, "forbidden");
}

/* Tenant A's admin and owner, a service and an API key with the role
   super_admin: all refused. */
static void
expect_non_admins_refused(const char *letter)
{
	char errbuf[CM_ERRBUF_LEN] = "", *tok = NULL;
	struct cm_buf h = CM_BUF_INIT(0);
	struct cm_principal key;
	const char *roles[] = { "[\"admin\"]", "[\"owner\"]",
				"[\"admin\",\"events:write\"]" };
	size_t i;

	for (i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
		tok = cm_test_user_token("user-3", tenant_a, roles[i], 300);
		cm_buf_reset(&h);
		cm_buf_printf(&h, "Authorization: Bearer %s", tok);
		expect_admin_routes_refused(cm_buf_str(&h), NULL, letter);
		free(tok);
	}
	ck_assert_int_eq(cm_service_token_mint(cm_test_env("SERVICE_SECRET"),
					       "crm", "event-bus", 60, &tok,
					       errbuf),
			 0);
	cm_buf_reset(&h);
	cm_buf_printf(&h, "X-Service-Token: %s", tok);
	expect_admin_routes_refused(cm_buf_str(&h), NULL, letter);
	free(tok);
	memset(&key, 0, sizeof(key));
	cm_strlcpy(key.sub, "key-1", sizeof(key.sub));
	cm_strlcpy(key.roles[0], "super_admin", sizeof(key.roles[0]));
	key.nroles = 1;
	key.is_api_key = true;
	ck_assert_int_eq(cm_gateway_token_mint(cm_test_env("SERVICE_SECRET"),
					       "event-bus", 60, &key, &tok,
					       errbuf),
			 0);
	cm_buf_reset(&h);
	cm_buf_printf(&h, "X-Service-Token: %s", tok);
	expect_admin_routes_refused(cm_buf_str(&h), "X-User-ID: key-1", letter);
	free(tok);
	cm_buf_release(&h);
}

static void
expect_bad_input_refused(const char *b_letter)
{
	char path[200];

	expect_status(admin("GET", "/api/events/admin/dead-letters?tenant_id="
				   "nope"),
		      400, "invalid_tenant_id");
	expect_status(admin("GET", "/api/events/admin/dead-letters/nope/1-0"),
		      400, "invalid_tenant_id");
	expect_status(
		admin("DELETE", "/api/events/admin/dead-letters/nope/1-0"), 400,
		"invalid_tenant_id");
	expect_status(admin("POST", "/api/events/admin/dead-letters/"
				    "00000000-0000-0000-0000-00000000000/1-0/"
				    "retry"),
		      400, "invalid_tenant_id");
	expect_status(admin("GET", "/api/events/admin/dead-letters?limit=101"),
		      400, "bad_request");
	expect_status(admin("GET", "/api/events/admin/dead-letters?limit=0"),
		      400, "bad_request");
	expect_status(admin("GET", "/api/events/admin/dead-letters?cursor=zzz"),
		      400, "bad_cursor");
	expect_status(admin("GET", "/api/events/admin/dead-letters?cursor=0."
				   "nope."),
		      400, "bad_cursor");
	expect_status(admin("GET", "/api/events/admin/dead-letters?event_type="
				   "Not%20A%20Type"),
		      400, "bad_request");
	/* the right id under the wrong tenant is no letter */
	snprintf(path, sizeof(path), "/api/events/admin/dead-letters/%s/%s",
		 tenant_a, b_letter);
	expect_status(admin("GET", path), 404, "not_found");
	snprintf(path, sizeof(path), "/api/events/admin/dead-letters/%s/bad",
		 tenant_b);
	expect_status(admin("GET", path), 404, "not_found");
}

#define FAKE_TENANTS 400

START_TEST(test_a_super_admin_manages_every_tenants_dead_letters_alone)
{
	char a_ids[4][64], b_ids[4][64], b_after[4][64], path[200], q[128];
	char fake[37];
	const char *keep;
	struct cm_test_resp r;
	struct walked w;
	const cJSON *it;
	int i;

	/* two letters in A, three in B (each names the other tenant) */
	r = call("POST", tenant_a, "/api/events/publish", quota_event_a);
	ck_assert_int_eq(r.status, 202);
	cm_test_resp_release(&r);
	r = call("POST", tenant_b, "/api/events/publish", quota_event_a);
	ck_assert_int_eq(r.status, 202);
	cm_test_resp_release(&r);
	for (i = 0; i < 2; i++)
		forge_entry_on(tenant_a, tenant_b);
	for (i = 0; i < 3; i++)
		forge_entry_on(tenant_b, tenant_a);
	letters_until(tenant_a, 2, a_ids);
	letters_until(tenant_b, 3, b_ids);

	/* every tenant, one by one: each letter once, with its tenant;
	   with the made-up tenants the walk takes several SCAN steps */
	ck_assert_int_eq(cm_uuid_v4(fake), 0);
	fake[8] = '\0';
	fake_tenants(fake, FAKE_TENANTS, false);
	admin_walk(1, "", fake, &w);
	ck_assert_int_eq(w.a, 2);
	ck_assert_int_eq(w.b, 3);
	ck_assert_int_eq(w.fake, FAKE_TENANTS);
	admin_walk(100, "", fake, &w);
	ck_assert_int_eq(w.a, 2);
	ck_assert_int_eq(w.b, 3);
	ck_assert_int_eq(w.fake, FAKE_TENANTS);
	ck_assert_int_ge(w.pages, FAKE_TENANTS / 100);
	admin_walk(100, "&event_type=lead.*", fake, &w);
	ck_assert_int_eq(w.a + w.b + w.fake, 0);
	fake_tenants(fake, FAKE_TENANTS, true);
	/* one tenant, and one type */
	snprintf(q, sizeof(q), "&tenant_id=%s", tenant_b);
	admin_walk(2, q, fake, &w);
	ck_assert_int_eq(w.pages, 2);
	ck_assert_int_eq(w.a, 0);
	ck_assert_int_eq(w.b, 3);
	snprintf(q, sizeof(q), "&tenant_id=%s&event_type=system.*", tenant_a);
	admin_walk(1, q, fake, &w);
	ck_assert_int_eq(w.a, 2);
	ck_assert_int_eq(w.b, 0);
	snprintf(q, sizeof(q), "&tenant_id=%s&event_type=lead.created",
		 tenant_a);
	admin_walk(100, q, fake, &w);
	ck_assert_int_eq(w.a + w.b, 0);

	/* inspect, retry and discard B's */
	snprintf(path, sizeof(path), "/api/events/admin/dead-letters/%s/%s",
		 tenant_b, b_ids[0]);
	r = admin("GET", path);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	ck_assert_str_eq(cJSON_GetObjectItem(r.json, "tenant_id")->valuestring,
			 tenant_b);
	ck_assert_str_eq(cJSON_GetObjectItem(r.json, "id")->valuestring,
			 b_ids[0]);
	ck_assert_str_eq(cJSON_GetObjectItem(r.json, "group")->valuestring,
			 "audit");
	cm_test_resp_release(&r);
	snprintf(path, sizeof(path),
		 "/api/events/admin/dead-letters/%s/%s/retry", tenant_b,
		 b_ids[0]);
	r = admin("POST", path);
	ck_assert_msg(r.status == 202, "%ld %s", r.status, r.body);
	ck_assert(cJSON_IsString(cJSON_GetObjectItem(r.json, "stream_id")));
	cm_test_resp_release(&r);
	expect_status(admin("POST", path), 404, "not_found");
	snprintf(path, sizeof(path), "/api/events/admin/dead-letters/%s/%s",
		 tenant_b, b_ids[0]);
	expect_status(admin("GET", path), 404, "not_found");
	/* back on B's stream, failing again: a new letter of B's */
	letters_until(tenant_b, 3, b_after);
	ck_assert_str_ne(b_after[0], b_ids[0]);
	ck_assert_str_eq(b_after[1], b_ids[1]);
	snprintf(path, sizeof(path), "/api/events/admin/dead-letters/%s/%s",
		 tenant_b, b_ids[1]);
	expect_status(admin("DELETE", path), 204, NULL);
	expect_status(admin("GET", path), 404, "not_found");
	expect_status(admin("DELETE", path), 404, "not_found");
	letters_until(tenant_b, 2, b_after);

	/* B's remaining letter for the checks below: entry ids are per
	   stream, so one of B's may carry the same id as one of A's (both
	   written in the same millisecond); A's admin would then rightly
	   find A's own letter under it. The letter from the retry is newer
	   than all of A's. */
	keep = strcmp(b_ids[2], a_ids[0]) && strcmp(b_ids[2], a_ids[1])
		       ? b_ids[2]
		       : b_after[0];
	ck_assert(strcmp(keep, a_ids[0]) && strcmp(keep, a_ids[1]));
	/* nobody else gets in; A's admin still sees only A's own */
	snprintf(path, sizeof(path), "%s/%s", tenant_b, keep);
	expect_non_admins_refused(path);
	r = call_role("GET", tenant_a, "[\"admin\"]",
		      "/api/events/dead-letters");
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(items_of(&r), 2);
	cJSON_ArrayForEach(it, cJSON_GetObjectItem(r.json, "items")) ck_assert(
		!strcmp(cJSON_GetObjectItem(it, "id")->valuestring, a_ids[0]) ||
		!strcmp(cJSON_GetObjectItem(it, "id")->valuestring, a_ids[1]));
	cm_test_resp_release(&r);
	snprintf(path, sizeof(path), "/api/events/dead-letters/%s", keep);
	expect_status(call_role("GET", tenant_a, "[\"admin\"]", path), 404,
		      "not_found");
	expect_status(call_role("DELETE", tenant_a, "[\"admin\"]", path), 404,
		      "not_found");
	expect_bad_input_refused(keep);
	/* B's letter is still there after all of that */
	snprintf(path, sizeof(path), "/api/events/admin/dead-letters/%s/%s",
		 tenant_b, keep);
	expect_status(admin("GET", path), 200, NULL);
}
END_TEST

struct replays_seen {
	const char *replay_id;
	int replays, others;
};

static int
count_replays(const struct cm_bus_event *ev, void *arg,
	      char errbuf[CM_ERRBUF_LEN])
{
	struct replays_seen *r = arg;

	(void)errbuf;
	if (ev->replay_id && strcmp(ev->replay_id, r->replay_id) == 0 &&
	    strcmp(ev->type, "lead.created") == 0)
		r->replays++;
	else
		r->others++;
	return 0;
}

static void
publish_leads(const char *tid, int n)
{
	char body[512], lead[37];
	struct cm_test_resp r;
	int i;

	for (i = 0; i < n; i++) {
		ck_assert_int_eq(cm_uuid_v4(lead), 0);
		snprintf(body, sizeof(body),
			 "{\"event_type\":\"lead.created\",\"aggregate_type\":"
			 "\"lead\",\"aggregate_id\":\"%s\",\"data\":{"
			 "\"lead_id\":\"%s\"}}",
			 lead, lead);
		r = call("POST", tid, "/api/events/publish", body);
		ck_assert_int_eq(r.status, 202);
		cm_test_resp_release(&r);
	}
}

/* HTTP publishes are stored asynchronously: the first for a new stream
   runs the registering script (here after SCRIPT FLUSH, so EVALSHA gets
   NOSCRIPT and the EVAL fallback must answer), the next ones a plain
   XADD; every one answers 202 with its entry, and all are on the stream. */
START_TEST(test_http_publish_survives_a_flushed_script_cache)
{
	char tid[37], key[CM_BUS_KEY_LEN], errbuf[CM_ERRBUF_LEN] = "";
	struct cm_test_resp r;
	redisReply *x;
	int i;

	add_tenant(tid, "busf", "free");
	forge_redis_init();
	x = cm_redis_cmdf(errbuf, "SCRIPT FLUSH");
	ck_assert_msg(x != NULL, "%s", errbuf);
	freeReplyObject(x);
	for (i = 0; i < 3; i++) {
		r = call("POST", tid, "/api/events/publish", quota_event_a);
		ck_assert_msg(r.status == 202, "%ld %s", r.status, r.body);
		ck_assert_ptr_nonnull(strstr(r.body, "\"stream_id\":\""));
		cm_test_resp_release(&r);
	}
	cm_bus_stream_key(tid, key);
	x = cm_redis_cmdf(errbuf, "XLEN %s", key);
	ck_assert_msg(x != NULL, "%s", errbuf);
	ck_assert_int_eq(x->integer, 3);
	freeReplyObject(x);
	x = cm_redis_cmdf(errbuf, "SISMEMBER %s %s", CM_BUS_STREAMS, key);
	ck_assert_msg(x != NULL, "%s", errbuf);
	ck_assert_int_eq(x->integer, 1);
	freeReplyObject(x);
	cm_redis_shutdown();
}
END_TEST

START_TEST(test_a_replay_redelivers_the_tenants_events_to_one_subscriber)
{
	struct cm_bus_sub_config cfg = { 0 };
	struct replays_seen seen = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "", id[37], path[128];
	struct cm_bus_sub *s;
	struct cm_test_resp r;
	int i;

	publish_leads(tenant_a, 3);
	publish_leads(tenant_b, 1);
	r = call("POST", tenant_a, "/api/events/publish", quota_event_a);
	cm_test_resp_release(&r);
	r = history_until(tenant_a, "type=lead.*", 3);
	cm_test_resp_release(&r);
	r = call("POST", tenant_a, "/api/events/replay",
		 "{\"subscriber\":\"replay-test\",\"types\":[\"lead.*\"]}");
	ck_assert_msg(r.status == 202, "%ld %s", r.status, r.body);
	ck_assert_int_eq(cJSON_GetObjectItem(r.json, "total")->valueint, 3);
	cm_strlcpy(id, cJSON_GetObjectItem(r.json, "id")->valuestring,
		   sizeof(id));
	cm_test_resp_release(&r);
	snprintf(path, sizeof(path), "/api/events/replay/%s", id);
	for (i = 0; i < 100; i++) {
		r = call("GET", tenant_a, path, NULL);
		ck_assert_int_eq(r.status, 200);
		if (strcmp(cJSON_GetObjectItem(r.json, "status")->valuestring,
			   "completed") == 0)
			break;
		cm_test_resp_release(&r);
		usleep(100 * 1000);
	}
	ck_assert_int_lt(i, 100);
	ck_assert_int_eq(cJSON_GetObjectItem(r.json, "delivered")->valueint, 3);
	cm_test_resp_release(&r);
	r = call("GET", tenant_b, path, NULL);
	ck_assert_int_eq(r.status, 404);
	cm_test_resp_release(&r);
	r = call("POST", tenant_a, "/api/events/replay",
		 "{\"subscriber\":\"Bad Name\",\"types\":[\"lead.*\"]}");
	ck_assert_int_eq(r.status, 400);
	cm_test_resp_release(&r);
	r = call("POST", tenant_a, "/api/events/replay",
		 "{\"subscriber\":\"x\",\"types\":[]}");
	ck_assert_int_eq(r.status, 400);
	cm_test_resp_release(&r);
	/* the subscriber sees the three, marked as this replay */
	forge_redis_init();
	seen.replay_id = id;
	cfg.group = "replay-test";
	cfg.consumer = "t";
	cfg.tenant_id = tenant_a;
	cfg.block_ms = 50;
	cfg.fn = count_replays;
	cfg.arg = &seen;
	s = cm_bus_sub_new(&cfg);
	for (i = 0; i < 40 && seen.replays < 3; i++)
		ck_assert_msg(cm_bus_sub_poll(s, NULL, errbuf) == 0, "%s",
			      errbuf);
	ck_assert_int_eq(seen.replays, 3);
	cm_bus_sub_free(s);
}
END_TEST

static const char quota_event[] =
	"{\"event_type\":\"system.maintenance\",\"aggregate_type\":"
	"\"system\",\"aggregate_id\":\"q\",\"data\":{\"message\":\"q\"}}";

START_TEST(test_a_tenant_over_its_hourly_quota_gets_429_and_one_billing_event)
{
	struct cm_test_resp r;
	int i;

	for (i = 0; i < 3; i++) {
		r = call("POST", tenant_q, "/api/events/publish", quota_event);
		ck_assert_msg(r.status == 202, "%ld %s", r.status, r.body);
		cm_test_resp_release(&r);
	}
	for (i = 0; i < 3; i++) {
		r = call("POST", tenant_q, "/api/events/publish", quota_event);
		ck_assert_int_eq(r.status, 429);
		ck_assert_str_eq(cm_test_resp_error_code(&r), "quota_exceeded");
		ck_assert_ptr_nonnull(cm_test_resp_header(&r, "Retry-After"));
		cm_test_resp_release(&r);
	}
	r = call("POST", tenant_q, "/api/events/publish/batch",
		 "{\"events\":[{\"event_type\":\"system.maintenance\","
		 "\"aggregate_type\":\"system\",\"aggregate_id\":\"q\","
		 "\"data\":{\"message\":\"q\"}}]}");
	ck_assert_int_eq(r.status, 429);
	cm_test_resp_release(&r);
	/* another tenant (free tier, 1000/h) is not affected */
	r = call("POST", tenant_a, "/api/events/publish", quota_event);
	ck_assert_int_eq(r.status, 202);
	cm_test_resp_release(&r);
	r = history_until(tenant_q, "type=billing.*", 1);
	cm_test_resp_release(&r);
	r = history_until(tenant_q, "type=system.*", 3);
	cm_test_resp_release(&r);
	usleep(300 * 1000);
	r = history_until(tenant_q, "type=billing.limit_exceeded", 1);
	ck_assert_int_eq(
		cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "items")), 1);
	cm_test_resp_release(&r);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("event-bus");
	TCase *tc = tcase_create("http");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(
		tc,
		test_unknown_types_and_bad_data_are_refused_naming_the_problem);
	tcase_add_test(
		tc, test_an_event_is_audited_once_and_seen_only_by_its_tenant);
	tcase_add_test(tc, test_http_publish_survives_a_flushed_script_cache);
	tcase_add_test(tc,
		       test_history_filters_by_type_and_pages_with_a_cursor);
	tcase_add_test(tc, test_metrics_count_published_events_by_type);
	tcase_add_test(
		tc,
		test_dead_letters_are_listed_retried_and_discarded_per_tenant);
	tcase_add_test(
		tc,
		test_a_super_admin_manages_every_tenants_dead_letters_alone);
	tcase_add_test(
		tc,
		test_a_tenant_over_its_hourly_quota_gets_429_and_one_billing_event);
	tcase_add_test(
		tc,
		test_a_replay_redelivers_the_tenants_events_to_one_subscriber);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
