/*
 * test_bus.c - the event-bus binary against the test stack: registry
 * refusals, tenant isolation of history, the audit row written once,
 * history filters and cursors, metrics.
 */
#include "svc.h"
#include "testutil.h"

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
	PGconn *c = PQconnectdb(cm_test_env("TEST_PG_CONNINFO"));
	PGresult *res;
	long long n;

	ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
	res = PQexecParams(c,
			   "SELECT count(*) FROM event_bus.events "
			   "WHERE event_id = $1",
			   1, NULL, &event_id, NULL, NULL, 0);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	PQfinish(c);
	return n;
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

static void
forge_entry(void)
{
	char errbuf[CM_ERRBUF_LEN] = "", key[CM_BUS_KEY_LEN];
	const char *fields[] = { "type", "event" };
	const char *values[2];
	cJSON *env = cm_bus_envelope_new("system.maintenance", "evil", "system",
					 "x", NULL);
	char *text;

	cJSON_AddStringToObject(env, "tenant_id", tenant_b);
	text = cJSON_PrintUnformatted(env);
	forge_redis_init();
	cm_bus_stream_key(tenant_a, key);
	values[0] = "system.maintenance";
	values[1] = text;
	ck_assert_msg(cm_redis_xadd(key, 0, 2, fields, values, NULL, errbuf) ==
			      0,
		      "%s", errbuf);
	free(text);
	cJSON_Delete(env);
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
	tcase_add_test(tc,
		       test_history_filters_by_type_and_pages_with_a_cursor);
	tcase_add_test(tc, test_metrics_count_published_events_by_type);
	tcase_add_test(
		tc,
		test_dead_letters_are_listed_retried_and_discarded_per_tenant);
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
