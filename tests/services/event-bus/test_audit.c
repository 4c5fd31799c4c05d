/* test_audit.c - the audit writer on the test stack, as the service's own
   role (so row-level security applies): a writer killed mid-event is
   replaced and the row is stored once; forged tenants are refused. */
#include "../../../services/event-bus/evbus.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/db.h"
#include "common/mem.h"
#include "common/redis.h"
#include "testutil.h"
#include "common/banned.h"

static void
init_all(void)
{
	struct cm_redis_config rc = { 0 };
	struct cm_db_config dc = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	int64_t pgport, rport;
	char *ci;

	ck_assert_int_eq(
		cm_parse_i64(cm_test_env("POSTGRES_PORT"), 1, 65535, &pgport),
		0);
	ck_assert_int_eq(
		cm_parse_i64(cm_test_env("REDIS_PORT"), 1, 65535, &rport), 0);
	ci = cm_db_conninfo(cm_test_env("POSTGRES_HOST"), (int)pgport,
			    cm_test_env("POSTGRES_DB"), "bz_event_bus",
			    cm_test_env("TEST_PG_PASSWORD_BZ_EVENT_BUS"));
	dc.conninfo = ci;
	dc.application_name = "test_audit";
	dc.connect_timeout_s = 5;
	ck_assert_msg(cm_db_init(&dc, errbuf) == 0, "%s", errbuf);
	free(ci);
	rc.host = cm_test_env("REDIS_HOST");
	rc.port = (int)rport;
	ck_assert_msg(cm_redis_init(&rc, errbuf) == 0, "%s", errbuf);
}

static void
setup(void)
{
	char errbuf[CM_ERRBUF_LEN] = "";

	cm_test_require_stack();
	init_all();
	ck_assert_msg(cm_db_migrate("services/event-bus/migrations",
				    "event_bus", errbuf) == 0,
		      "%s", errbuf);
	ck_assert_msg(bus_store_ensure_partitions(errbuf) == 0, "%s", errbuf);
}

static int g_fd = -1;

/* The child's handler: store, say so, then hang until killed. */
static int
store_then_hang(const struct cm_bus_event *ev, void *arg,
		char errbuf[CM_ERRBUF_LEN])
{
	int rc = bus_audit_handle(ev, arg, errbuf);

	if (rc == 0 && write(g_fd, "x", 1) != 1)
		_exit(3);
	for (;;)
		pause();
	return rc;
}

static struct cm_bus_sub *
audit_sub(const char *tenant, const char *consumer, cm_bus_handler_fn fn)
{
	struct cm_bus_sub_config c = { 0 };
	struct cm_bus_sub *s;

	c.group = "audit-test";
	c.consumer = consumer;
	c.tenant_id = tenant;
	c.block_ms = 50;
	c.claim_idle_ms = 300;
	c.max_attempts = 3;
	c.backoff_ms = 1;
	c.fn = fn;
	s = cm_bus_sub_new(&c);
	ck_assert_ptr_nonnull(s);
	return s;
}

static pid_t
spawn_writer(const char *tenant, int fds[2])
{
	char errbuf[CM_ERRBUF_LEN];
	struct cm_bus_sub *s;
	pid_t pid;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid > 0)
		return pid;
	alarm(30);
	close(fds[0]);
	g_fd = fds[1];
	init_all(); /* fresh connections, not the parent's */
	s = audit_sub(tenant, "doomed", store_then_hang);
	for (;;)
		cm_bus_sub_poll(s, NULL, errbuf);
}

struct count {
	const char *event_id;
	long long n;
};

static int
count_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct count *c = arg;
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
rows_seen_by(const char *tenant, const char *event_id)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct count c = { event_id, -1 };

	ck_assert_msg(cm_db_tx_tenant(tenant, count_work, &c, errbuf) == 0,
		      "%s", errbuf);
	return c.n;
}

START_TEST(
	test_a_writer_killed_mid_event_is_replaced_and_the_row_is_stored_once)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], other[37], eid[37], c;
	struct cm_bus_sub *s;
	int fds[2], handled = 0, i, st;
	cJSON *env;
	pid_t pid;

	ck_assert_int_eq(cm_uuid_v4(t), 0);
	ck_assert_int_eq(cm_uuid_v4(other), 0);
	pid = spawn_writer(t, fds);
	close(fds[1]);
	env = cm_bus_envelope_new("system.maintenance", "test", "system", "m",
				  NULL);
	cm_strlcpy(eid, cJSON_GetObjectItem(env, "event_id")->valuestring,
		   sizeof(eid));
	ck_assert_msg(cm_bus_publish(t, env, NULL, errbuf) == 0, "%s", errbuf);
	cJSON_Delete(env);
	ck_assert_int_eq(read(fds[0], &c, 1), 1); /* row committed */
	kill(pid, SIGKILL);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	close(fds[0]);
	s = audit_sub(t, "rescuer", bus_audit_handle);
	for (i = 0; i < 40 && handled == 0; i++)
		ck_assert_msg(cm_bus_sub_poll(s, &handled, errbuf) == 0, "%s",
			      errbuf);
	ck_assert_int_eq(handled, 1);
	ck_assert_int_eq(rows_seen_by(t, eid), 1);
	ck_assert_int_eq(rows_seen_by(other, eid), 0); /* RLS */
	cm_bus_sub_free(s);
}
END_TEST

START_TEST(test_an_envelope_naming_another_tenant_than_its_stream_is_refused)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], other[37];
	struct cm_bus_event ev = { 0 };
	cJSON *env = cm_bus_envelope_new("system.maintenance", "test", "system",
					 "m", NULL);

	ck_assert_int_eq(cm_uuid_v4(t), 0);
	ck_assert_int_eq(cm_uuid_v4(other), 0);
	cJSON_AddStringToObject(env, "tenant_id", other);
	ev.tenant_id = t;
	ev.env = env;
	ev.id = "1-0";
	ck_assert_int_eq(bus_audit_handle(&ev, NULL, errbuf), CM_EPERM);
	ck_assert_ptr_nonnull(strstr(errbuf, "does not match"));
	cJSON_ReplaceItemInObject(env, "tenant_id", cJSON_CreateString(t));
	cJSON_ReplaceItemInObject(env, "priority", cJSON_CreateString("x"));
	ck_assert_int_eq(bus_audit_handle(&ev, NULL, errbuf), CM_EINVAL);
	cJSON_Delete(env);
}
END_TEST

START_TEST(test_the_audit_thread_starts_and_stops)
{
	struct bus_audit_config c = { 1000, 3, 10, 100 };
	char errbuf[CM_ERRBUF_LEN] = "";
	struct bus_audit *a = bus_audit_start(&c, errbuf);

	ck_assert_msg(a != NULL, "%s", errbuf);
	usleep(100 * 1000);
	bus_audit_stop(a);
	bus_audit_stop(NULL);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("audit");
	TCase *tc = tcase_create("audit");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 30);
	tcase_add_test(
		tc,
		test_a_writer_killed_mid_event_is_replaced_and_the_row_is_stored_once);
	tcase_add_test(
		tc,
		test_an_envelope_naming_another_tenant_than_its_stream_is_refused);
	tcase_add_test(tc, test_the_audit_thread_starts_and_stops);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
