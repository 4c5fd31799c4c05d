/* test_retention.c - the retention job on the test stack, as the
   service's own role: a stream loses only what every group has read and
   acknowledged (pending and unread entries stay), old audit rows and
   month partitions go, recent ones stay. */
#include "../../../services/event-bus/evbus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/db.h"
#include "common/mem.h"
#include "common/redis.h"
#include "testutil.h"

#include "common/banned.h"

static void
setup(void)
{
	struct cm_redis_config rc = { 0 };
	struct cm_db_config dc = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	int64_t pgport, rport;
	char *ci;

	cm_test_require_stack();
	ck_assert_int_eq(
		cm_parse_i64(cm_test_env("POSTGRES_PORT"), 1, 65535, &pgport),
		0);
	ck_assert_int_eq(
		cm_parse_i64(cm_test_env("REDIS_PORT"), 1, 65535, &rport), 0);
	ci = cm_db_conninfo(cm_test_env("POSTGRES_HOST"), (int)pgport,
			    cm_test_env("POSTGRES_DB"), "bz_event_bus",
			    cm_test_env("TEST_PG_PASSWORD_BZ_EVENT_BUS"));
	dc.conninfo = ci;
	dc.application_name = "test_retention";
	dc.connect_timeout_s = 5;
	ck_assert_msg(cm_db_init(&dc, errbuf) == 0, "%s", errbuf);
	free(ci);
	rc.host = cm_test_env("REDIS_HOST");
	rc.port = (int)rport;
	ck_assert_msg(cm_redis_init(&rc, errbuf) == 0, "%s", errbuf);
	ck_assert_msg(cm_db_migrate("services/event-bus/migrations",
				    "event_bus", errbuf) == 0,
		      "%s", errbuf);
	ck_assert_msg(bus_store_ensure_partitions(errbuf) == 0, "%s", errbuf);
}

static long long
redis_int(const char *cmd, const char *key, const char *arg)
{
	const char *argv[3] = { cmd, key, arg };
	char errbuf[CM_ERRBUF_LEN] = "";
	redisReply *r = cm_redis_cmd(arg ? 3 : 2, argv, NULL, errbuf);
	long long n;

	ck_assert_msg(r && r->type == REDIS_REPLY_INTEGER, "%s %s: %s", cmd,
		      key, errbuf);
	n = r->integer;
	freeReplyObject(r);
	return n;
}

/* Publish n events to tenant t; their entry ids into ids. */
static void
publish(const char *t, int n, char ids[][64])
{
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *env;
	int i;

	for (i = 0; i < n; i++) {
		env = cm_bus_envelope_new("system.maintenance", "test",
					  "system", "r", NULL);
		ck_assert_msg(cm_bus_publish(t, env, ids[i], errbuf) == 0, "%s",
			      errbuf);
		cJSON_Delete(env);
	}
}

/* Group g reads n entries of stream (consumer c) without acking. */
static void
read_n(const char *stream, const char *g, int n)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	redisReply *r = cm_redis_xreadgroup(stream, g, "c", n, 0, errbuf);

	ck_assert_msg(r != NULL, "%s", errbuf);
	freeReplyObject(r);
}

static void
ack(const char *stream, const char *g, const char *id)
{
	char errbuf[CM_ERRBUF_LEN] = "";

	ck_assert_msg(cm_redis_xack(stream, g, id, errbuf) == 0, "%s", errbuf);
}

static void
run(const struct bus_retention_config *cfg, struct bus_retention_report *rep)
{
	char errbuf[CM_ERRBUF_LEN] = "";

	ck_assert_msg(bus_retention_run(cfg, rep, errbuf) == 0, "%s", errbuf);
}

START_TEST(test_only_entries_every_group_acknowledged_are_trimmed)
{
	struct bus_retention_config cfg = { 0 };
	struct bus_retention_report rep;
	char t[37], key[CM_BUS_KEY_LEN], errbuf[CM_ERRBUF_LEN] = "";
	char ids[6][64];

	ck_assert_int_eq(cm_uuid_v4(t), 0);
	cm_bus_stream_key(t, key);
	publish(t, 5, ids);
	/* no group yet: nobody said what may go, nothing goes */
	run(&cfg, &rep);
	ck_assert_int_eq(redis_int("XLEN", key, NULL), 5);
	ck_assert_int_eq(cm_redis_xgroup_create(key, "g1", "0", errbuf), 0);
	read_n(key, "g1", 3); /* 1..3 delivered, 4..5 unread */
	ack(key, "g1", ids[0]);
	ack(key, "g1", ids[1]); /* 3 stays pending */
	/* an age cutoff of an hour keeps everything younger */
	cfg.stream_ms = 3600 * 1000;
	run(&cfg, &rep);
	ck_assert_int_eq(redis_int("XLEN", key, NULL), 5);
	/* no age cutoff: the two acknowledged go, the pending one stays */
	cfg.stream_ms = 0;
	run(&cfg, &rep);
	ck_assert_int_ge(rep.stream_entries, 2);
	ck_assert_int_eq(redis_int("XLEN", key, NULL), 3);
	/* a second group that has read nothing holds everything */
	ck_assert_int_eq(cm_redis_xgroup_create(key, "g2", "0", errbuf), 0);
	ack(key, "g1", ids[2]);
	read_n(key, "g1", 2);
	ack(key, "g1", ids[3]);
	ack(key, "g1", ids[4]);
	run(&cfg, &rep);
	ck_assert_int_eq(redis_int("XLEN", key, NULL), 3);
	/* g2 reads and acks all: only the last delivered entry is kept */
	read_n(key, "g2", 10);
	ack(key, "g2", ids[2]);
	ack(key, "g2", ids[3]);
	ack(key, "g2", ids[4]);
	run(&cfg, &rep);
	ck_assert_int_eq(redis_int("XLEN", key, NULL), 1);
	publish(t, 1, ids + 5); /* unread by both: kept */
	run(&cfg, &rep);
	ck_assert_int_eq(redis_int("XLEN", key, NULL), 2);
}
END_TEST

START_TEST(test_dead_letters_are_cut_by_age_alone)
{
	struct bus_retention_config cfg = { 0 };
	struct bus_retention_report rep;
	char t[37], dlq[CM_BUS_KEY_LEN], errbuf[CM_ERRBUF_LEN] = "";
	const char *f[1] = { "error" }, *v[1] = { "x" };
	const char *argv[5] = { "XADD", dlq, "1000-0", "error", "old" };
	char ids[1][64];
	redisReply *r;

	ck_assert_int_eq(cm_uuid_v4(t), 0);
	publish(t, 1, ids); /* makes the tenant's stream known */
	cm_bus_dlq_key(t, dlq);
	r = cm_redis_cmd(5, argv, NULL, errbuf);
	ck_assert_msg(r != NULL, "%s", errbuf);
	freeReplyObject(r);
	ck_assert_int_eq(cm_redis_xadd(dlq, 0, 1, f, v, NULL, errbuf), 0);
	cfg.stream_ms = 3600 * 1000;
	cfg.dlq_ms = 0; /* keep */
	run(&cfg, &rep);
	ck_assert_int_eq(redis_int("XLEN", dlq, NULL), 2);
	cfg.dlq_ms = 24 * 3600 * 1000LL;
	run(&cfg, &rep);
	ck_assert_int_ge(rep.dead_letters, 1);
	ck_assert_int_eq(redis_int("XLEN", dlq, NULL), 1); /* the new one */
}
END_TEST

struct rows {
	const char *event_id;
	long long n;
};

static int
count_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct rows *c = arg;
	PGresult *res = NULL;
	int rc;

	rc = cm_db_query(conn,
			 "SELECT count(*) FROM event_bus.events "
			 "WHERE event_id = $1",
			 1, &c->event_id, &res, errbuf);
	if (rc == 0)
		c->n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return rc;
}

static long long
rows_of(const char *tenant, const char *event_id)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct rows c = { event_id, -1 };

	ck_assert_msg(cm_db_tx_tenant(tenant, count_work, &c, errbuf) == 0,
		      "%s", errbuf);
	return c.n;
}

struct rec {
	const char *tenant;
	cJSON *env;
};

static int
record_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct rec *r = arg;

	return bus_store_record(conn, r->tenant, r->env, "1-0", NULL, errbuf);
}

/* Store an event of tenant t that occurred at `at`; its id in eid. */
static void
store_event(const char *t, const char *at, char eid[37])
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct rec r = { t, NULL };

	r.env = cm_bus_envelope_new("system.maintenance", "test", "system", "a",
				    NULL);
	cJSON_AddStringToObject(r.env, "tenant_id", t);
	cJSON_ReplaceItemInObject(r.env, "occurred_at", cJSON_CreateString(at));
	cm_strlcpy(eid, cJSON_GetObjectItem(r.env, "event_id")->valuestring,
		   37);
	ck_assert_msg(cm_db_tx_tenant(t, record_work, &r, errbuf) == 0, "%s",
		      errbuf);
	cJSON_Delete(r.env);
}

static int
old_month_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	(void)arg;
	return cm_db_query(conn, "SELECT event_bus.ensure_month('2020-01-15')",
			   0, NULL, NULL, errbuf);
}

static bool
table_exists(const char *name)
{
	PGconn *c = PQconnectdb(cm_test_env("TEST_PG_CONNINFO"));
	PGresult *res;
	bool found;

	ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
	res = PQexecParams(c, "SELECT to_regclass($1) IS NOT NULL", 1, NULL,
			   &name, NULL, NULL, 0);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	found = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	PQfinish(c);
	return found;
}

START_TEST(test_old_audit_rows_and_months_go_recent_ones_stay)
{
	struct bus_retention_config cfg = { 0 };
	struct bus_retention_report rep;
	char t[37], old_id[37], new_id[37], at[21], errbuf[CM_ERRBUF_LEN] = "";

	ck_assert_int_eq(cm_uuid_v4(t), 0);
	cm_time_rfc3339(cm_now_s() - 400 * 86400LL, at);
	store_event(t, at, old_id);
	cm_time_rfc3339(cm_now_s() - 60, at);
	store_event(t, at, new_id);
	ck_assert_msg(cm_db_tx(old_month_work, NULL, errbuf) == 0, "%s",
		      errbuf);
	ck_assert(table_exists("event_bus.events_2020_01"));
	cfg.stream_ms = 3600 * 1000;
	cfg.audit_days = 365;
	run(&cfg, &rep);
	ck_assert_int_ge(rep.partitions, 1);
	ck_assert_int_ge(rep.audit_rows, 1);
	ck_assert(!table_exists("event_bus.events_2020_01"));
	ck_assert_int_eq(rows_of(t, old_id), 0);
	ck_assert_int_eq(rows_of(t, new_id), 1);
	/* this month's partition is never a candidate */
	ck_assert_msg(bus_store_ensure_partitions(errbuf) == 0, "%s", errbuf);
	cfg.audit_days = 1;
	run(&cfg, &rep);
	ck_assert_int_eq(rep.partitions, 0);
	ck_assert_int_eq(rows_of(t, new_id), 1);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("retention");
	TCase *tc = tcase_create("stack");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc,
		       test_only_entries_every_group_acknowledged_are_trimmed);
	tcase_add_test(tc, test_dead_letters_are_cut_by_age_alone);
	tcase_add_test(tc, test_old_audit_rows_and_months_go_recent_ones_stay);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
