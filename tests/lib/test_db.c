/* test_db.c - common/db.h against the test PostgreSQL. */
#include "common/db.h"
#include "common/idem.h"
#include "common/mem.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"
#include "common/banned.h"

#define STATEMENT_TIMEOUT_MS 30000

/* Made once per run by the unchecked fixture, inherited by each test. */
static char g_role[40], g_byp_role[40], g_pass[48], g_schema[40];
static char *g_conninfo, *g_byp_conninfo;
static char g_tmpdir[32]; /* migration dirs go below it */

static void
random_hex(char out[9])
{
	char uuid[37];

	ck_assert_int_eq(cm_uuid_v4(uuid), 0);
	memcpy(out, uuid, 8);
	out[8] = '\0';
}

static char *
role_conninfo(const char *role)
{
	int64_t port;

	ck_assert_int_eq(
		cm_parse_i64(cm_test_env("POSTGRES_PORT"), 1, 65535, &port), 0);
	return cm_db_conninfo(cm_test_env("POSTGRES_HOST"), (int)port,
			      cm_test_env("POSTGRES_DB"), role, g_pass);
}

/* The password holds ' and \ so that cm_db_conninfo's escaping is used
   for real whenever the server asks for a password. */
static void
stack_setup(void)
{
	char sfx[9], uuid[37], sql[2048];

	cm_test_require_stack();
	random_hex(sfx);
	ck_assert_int_eq(cm_uuid_v4(uuid), 0);
	snprintf(g_role, sizeof(g_role), "bz_test_db_%s", sfx);
	snprintf(g_byp_role, sizeof(g_byp_role), "bz_test_db_%s_byp", sfx);
	snprintf(g_schema, sizeof(g_schema), "bz_test_db_%s", sfx);
	snprintf(g_pass, sizeof(g_pass), "p'w\\%s", uuid);
	snprintf(sql, sizeof(sql),
		 "CREATE ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS "
		 "PASSWORD 'p''w\\%s';"
		 "CREATE ROLE %s LOGIN NOSUPERUSER BYPASSRLS "
		 "PASSWORD 'p''w\\%s';"
		 "CREATE SCHEMA %s AUTHORIZATION %s;"
		 "SET ROLE %s;"
		 "CREATE TABLE %s.items (id text PRIMARY KEY, v text);"
		 "CREATE TABLE %s.t (tenant_id uuid NOT NULL, v text);",
		 g_role, uuid, g_byp_role, uuid, g_schema, g_role, g_role,
		 g_schema, g_schema);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	snprintf(sql, sizeof(sql),
		 "SET ROLE %s;"
		 "ALTER TABLE %s.t ENABLE ROW LEVEL SECURITY;"
		 "ALTER TABLE %s.t FORCE ROW LEVEL SECURITY;"
		 "CREATE POLICY tenant ON %s.t USING (tenant_id = NULLIF("
		 "current_setting('app.tenant_id', true), '')::uuid) WITH "
		 "CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', "
		 "true), '')::uuid);"
		 "CREATE TABLE %s.naive (tenant_id uuid NOT NULL);"
		 "ALTER TABLE %s.naive ENABLE ROW LEVEL SECURITY;"
		 "ALTER TABLE %s.naive FORCE ROW LEVEL SECURITY;"
		 "CREATE POLICY tenant ON %s.naive USING (tenant_id = "
		 "current_setting('app.tenant_id', true)::uuid);",
		 g_role, g_schema, g_schema, g_schema, g_schema, g_schema,
		 g_schema, g_schema);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	g_conninfo = role_conninfo(g_role);
	g_byp_conninfo = role_conninfo(g_byp_role);
	cm_strlcpy(g_tmpdir, "/tmp/bz_test_db_XXXXXX", sizeof(g_tmpdir));
	ck_assert_ptr_nonnull(mkdtemp(g_tmpdir));
}

static void remove_dir(const char *dir);

static void
stack_teardown(void)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
		 "SET client_min_messages = warning;"
		 "DROP SCHEMA IF EXISTS %s CASCADE; DROP OWNED BY %s, %s "
		 "CASCADE; DROP ROLE %s; DROP ROLE %s;",
		 g_schema, g_role, g_byp_role, g_role, g_byp_role);
	cm_test_psql(sql);
	free(g_conninfo);
	free(g_byp_conninfo);
	remove_dir(g_tmpdir);
}

static void
init_with(const char *conninfo, int connect_timeout_s, int statement_ms)
{
	struct cm_db_config cfg = { conninfo, "test_db", connect_timeout_s,
				    statement_ms };
	char errbuf[CM_ERRBUF_LEN] = "";

	ck_assert_msg(cm_db_init(&cfg, errbuf) == 0, "init: %s", errbuf);
}

static void
db_setup(void)
{
	init_with(g_conninfo, 5, STATEMENT_TIMEOUT_MS);
}

static void
db_teardown(void)
{
	cm_db_shutdown();
}

/* The first value of sql run as the test superuser, into out. */
static void
su_value(const char *sql, char *out, size_t n)
{
	PGconn *c = PQconnectdb(cm_test_env("TEST_PG_CONNINFO"));
	PGresult *r = PQexec(c, sql);

	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql,
		      PQerrorMessage(c));
	cm_strlcpy(out, PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0), n);
	PQclear(r);
	PQfinish(c);
}

/* The first value of sql run as the service role, into out. */
static void
my_value(const char *sql, char *out, size_t n)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	PGconn *conn = cm_db_conn(errbuf);
	PGresult *r = NULL;

	ck_assert_msg(conn != NULL, "conn: %s", errbuf);
	ck_assert_msg(cm_db_query(conn, sql, 0, NULL, &r, errbuf) == 0,
		      "%s: %s", sql, errbuf);
	ck_assert_int_eq(PQntuples(r), 1);
	cm_strlcpy(out, PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0), n);
	PQclear(r);
}

static int
my_backend_pid(void)
{
	char v[32];
	int64_t pid;

	my_value("SELECT pg_backend_pid()", v, sizeof(v));
	ck_assert_int_eq(cm_parse_i64(v, 1, INT32_MAX, &pid), 0);
	return (int)pid;
}

static void
terminate_backend(int pid)
{
	char sql[128], v[8];

	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%d, 5000)",
		 pid);
	su_value(sql, v, sizeof(v));
	ck_assert_str_eq(v, "t");
}

START_TEST(test_query_with_params_keeps_injection_text_as_data)
{
	const char *evil = "x'); DROP TABLE items; --\\";
	const char *params[2] = { "inj", evil };
	char errbuf[CM_ERRBUF_LEN] = "", sql[256], v[64];
	PGconn *conn = cm_db_conn(errbuf);
	PGresult *r = NULL;

	ck_assert_msg(conn != NULL, "%s", errbuf);
	snprintf(sql, sizeof(sql), "INSERT INTO %s.items VALUES ($1, $2)",
		 g_schema);
	ck_assert_int_eq(cm_db_query(conn, sql, 2, params, NULL, errbuf), 0);
	snprintf(sql, sizeof(sql), "SELECT v FROM %s.items WHERE id = $1",
		 g_schema);
	ck_assert_int_eq(cm_db_query(conn, sql, 1, params, &r, errbuf), 0);
	ck_assert_int_eq(PQntuples(r), 1);
	ck_assert_str_eq(PQgetvalue(r, 0, 0), evil);
	PQclear(r);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s.items", g_schema);
	my_value(sql, v, sizeof(v));
	ck_assert_str_ne(v, "");
}
END_TEST

START_TEST(test_bad_query_arguments_are_einval)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	PGconn *conn = cm_db_conn(errbuf);
	PGresult *r = (PGresult *)1;

	ck_assert_int_eq(cm_db_query(NULL, "SELECT 1", 0, NULL, &r, errbuf),
			 CM_EINVAL);
	ck_assert_ptr_null(r);
	ck_assert_int_eq(cm_db_query(conn, NULL, 0, NULL, NULL, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(cm_db_query(conn, "SELECT $1", 1, NULL, NULL, errbuf),
			 CM_EINVAL);
}
END_TEST

START_TEST(test_unique_violation_is_eexist_without_the_value)
{
	const char *params[2] = { "dup-secret-value", "v" };
	char errbuf[CM_ERRBUF_LEN] = "", sql[256];
	PGconn *conn = cm_db_conn(errbuf);

	snprintf(sql, sizeof(sql), "INSERT INTO %s.items VALUES ($1, $2)",
		 g_schema);
	ck_assert_int_eq(cm_db_query(conn, sql, 2, params, NULL, errbuf), 0);
	ck_assert_int_eq(cm_db_query(conn, sql, 2, params, NULL, errbuf),
			 CM_EEXIST);
	ck_assert_ptr_nonnull(strstr(errbuf, "duplicate key"));
	ck_assert_ptr_nonnull(strstr(errbuf, "23505"));
	ck_assert_ptr_null(strstr(errbuf, "dup-secret-value"));
}
END_TEST

START_TEST(test_bad_input_is_einval_without_the_value)
{
	const char *params[1] = { "secret-not-a-uuid" };
	char errbuf[CM_ERRBUF_LEN] = "";
	PGconn *conn = cm_db_conn(errbuf);

	ck_assert_int_eq(
		cm_db_query(conn, "SELECT $1::uuid", 1, params, NULL, errbuf),
		CM_EINVAL);
	ck_assert_msg(strstr(errbuf, "invalid input syntax"), "%s", errbuf);
	ck_assert_ptr_null(strstr(errbuf, "secret"));
}
END_TEST

START_TEST(test_sqlstates_map_to_error_codes)
{
	static const struct {
		const char *state;
		int code;
	} cases[] = {
		{ "40001", CM_EAGAIN },	   { "40P01", CM_EAGAIN },
		{ "57014", CM_ETIMEDOUT }, { "42501", CM_EPERM },
		{ "22023", CM_EINVAL },	   { "23505", CM_EEXIST },
		{ "42P01", CM_EIO },
	};
	char errbuf[CM_ERRBUF_LEN] = "", sql[160];
	PGconn *conn = cm_db_conn(errbuf);
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(sql, sizeof(sql),
			 "DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = "
			 "'%s'; END $$",
			 cases[i].state);
		ck_assert_int_eq(cm_db_query(conn, sql, 0, NULL, NULL, errbuf),
				 cases[i].code);
		ck_assert_ptr_nonnull(strstr(errbuf, cases[i].state));
	}
}
END_TEST

START_TEST(test_statement_timeout_is_etimedout)
{
	char errbuf[CM_ERRBUF_LEN] = "", v[32];
	PGconn *conn;

	init_with(g_conninfo, 5, 100);
	conn = cm_db_conn(errbuf);
	ck_assert_int_eq(
		cm_db_query(conn, "SELECT pg_sleep(2)", 0, NULL, NULL, errbuf),
		CM_ETIMEDOUT);
	my_value("SHOW statement_timeout", v, sizeof(v));
	ck_assert_str_eq(v, "100ms");
	my_value("SELECT current_setting('application_name')", v, sizeof(v));
	ck_assert_str_eq(v, "test_db");
}
END_TEST

struct rls_work {
	const char *tenant; /* row to insert, or expected on select */
	const char *v;
	int rows;
	int foreign; /* selected rows of another tenant */
	int calls;
};

static int
rls_insert(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct rls_work *w = arg;
	const char *params[2] = { w->tenant, w->v };
	char sql[256];

	w->calls++;
	snprintf(sql, sizeof(sql), "INSERT INTO %s.t VALUES ($1, $2)",
		 g_schema);
	return cm_db_query(conn, sql, 2, params, NULL, errbuf);
}

static int
rls_select(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct rls_work *w = arg;
	PGresult *r = NULL;
	char sql[256];
	int rc, i;

	w->calls++;
	snprintf(sql, sizeof(sql), "SELECT * FROM %s.t", g_schema);
	rc = cm_db_query(conn, sql, 0, NULL, &r, errbuf);
	if (rc < 0)
		return rc;
	w->rows = PQntuples(r);
	for (i = 0; i < w->rows; i++)
		if (!w->tenant || strcmp(PQgetvalue(r, i, 0), w->tenant) != 0)
			w->foreign++;
	PQclear(r);
	return 0;
}

static void
insert_for(const char *tenant, const char *v)
{
	struct rls_work w = { tenant, v, 0, 0, 0 };
	char errbuf[CM_ERRBUF_LEN] = "";

	ck_assert_msg(cm_db_tx_tenant(tenant, rls_insert, &w, errbuf) == 0,
		      "insert: %s", errbuf);
}

static int
su_count_tenant(const char *tenant)
{
	char sql[256], v[16];
	int64_t n;

	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM %s.t WHERE tenant_id = '%s'", g_schema,
		 tenant);
	su_value(sql, v, sizeof(v));
	ck_assert_int_eq(cm_parse_i64(v, 0, 1000000, &n), 0);
	return (int)n;
}

START_TEST(test_tenant_sees_only_its_own_rows)
{
	char a[37], b[37], errbuf[CM_ERRBUF_LEN] = "";
	struct rls_work w = { a, NULL, 0, 0, 0 };

	ck_assert_int_eq(cm_uuid_v4(a), 0);
	ck_assert_int_eq(cm_uuid_v4(b), 0);
	insert_for(a, "a1");
	insert_for(b, "b1");
	insert_for(b, "b2");
	ck_assert_int_eq(su_count_tenant(b), 2);
	ck_assert_int_eq(cm_db_tx_tenant(a, rls_select, &w, errbuf), 0);
	ck_assert_int_eq(w.rows, 1);
	ck_assert_int_eq(w.foreign, 0);
}
END_TEST

START_TEST(test_insert_for_another_tenant_is_eperm_and_rolled_back)
{
	char a[37], b[37], errbuf[CM_ERRBUF_LEN] = "";
	struct rls_work w = { b, "evil", 0, 0, 0 };

	ck_assert_int_eq(cm_uuid_v4(a), 0);
	ck_assert_int_eq(cm_uuid_v4(b), 0);
	ck_assert_int_eq(cm_db_tx_tenant(a, rls_insert, &w, errbuf), CM_EPERM);
	ck_assert_msg(strstr(errbuf, "row-level security"), "%s", errbuf);
	ck_assert_int_eq(su_count_tenant(b), 0);
}
END_TEST

START_TEST(test_no_tenant_context_sees_zero_rows)
{
	char a[37], errbuf[CM_ERRBUF_LEN] = "", sql[256], v[16];
	struct rls_work w = { NULL, NULL, 0, 0, 0 };

	ck_assert_int_eq(cm_uuid_v4(a), 0);
	insert_for(a, "a1"); /* this session has now had a tenant set */
	ck_assert_int_eq(su_count_tenant(a), 1);
	ck_assert_msg(cm_db_tx(rls_select, &w, errbuf) == 0, "%s", errbuf);
	ck_assert_int_eq(w.rows, 0);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s.t", g_schema);
	my_value(sql, v, sizeof(v));
	ck_assert_str_eq(v, "0");
}
END_TEST

/* Why policies need NULLIF: a bare ::uuid fails (closed) once the session
   has run a tenant transaction. */
START_TEST(test_policy_without_nullif_fails_after_a_tenant_tx)
{
	char a[37], errbuf[CM_ERRBUF_LEN] = "", sql[256];
	PGconn *conn;

	ck_assert_int_eq(cm_uuid_v4(a), 0);
	insert_for(a, "a1");
	conn = cm_db_conn(errbuf);
	snprintf(sql, sizeof(sql), "SELECT * FROM %s.naive", g_schema);
	ck_assert_int_eq(cm_db_query(conn, sql, 0, NULL, NULL, errbuf),
			 CM_EINVAL);
}
END_TEST

START_TEST(test_bad_tenant_id_is_refused_before_any_sql)
{
	struct rls_work w = { NULL, NULL, 0, 0, 0 };
	char errbuf[CM_ERRBUF_LEN] = "";

	ck_assert_int_eq(cm_db_tx_tenant("x'); DROP TABLE t; --", rls_select,
					 &w, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(cm_db_tx_tenant(NULL, rls_select, &w, errbuf),
			 CM_EINVAL);
	/* with no settings at all: refused by the check, not the connect */
	cm_db_shutdown();
	ck_assert_int_eq(cm_db_tx_tenant("00000000-0000-0000-0000-00000000000",
					 rls_select, &w, errbuf),
			 CM_EINVAL);
	ck_assert_msg(strstr(errbuf, "not a uuid"), "%s", errbuf);
	ck_assert_int_eq(w.calls, 0);
}
END_TEST

static int
insert_then_fail(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	const char *params[2] = { arg, "x" };
	char sql[256];
	int rc;

	snprintf(sql, sizeof(sql), "INSERT INTO %s.items VALUES ($1, $2)",
		 g_schema);
	rc = cm_db_query(conn, sql, 2, params, NULL, errbuf);
	ck_assert_int_eq(rc, 0);
	snprintf(errbuf, CM_ERRBUF_LEN, "work failed on purpose");
	return CM_ENOENT;
}

static int
ignore_failed_statement(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	(void)arg;
	ck_assert_int_eq(cm_db_query(conn, "SELECT 1/0", 0, NULL, NULL, errbuf),
			 CM_EINVAL);
	return 0;
}

static int
noop_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	(void)conn;
	(void)errbuf;
	(*(int *)arg)++;
	return 0;
}

static int
nested_tx(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	(void)conn;
	return cm_db_tx(noop_work, arg, errbuf);
}

START_TEST(test_failing_work_rolls_back)
{
	char errbuf[CM_ERRBUF_LEN] = "", sql[256], v[16], id[37];
	PGconn *conn;

	ck_assert_int_eq(cm_uuid_v4(id), 0);
	ck_assert_int_eq(cm_db_tx(insert_then_fail, id, errbuf), CM_ENOENT);
	ck_assert_str_eq(errbuf, "work failed on purpose");
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM %s.items WHERE id = '%s'", g_schema, id);
	my_value(sql, v, sizeof(v));
	ck_assert_str_eq(v, "0");
	conn = cm_db_conn(errbuf);
	ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
}
END_TEST

START_TEST(test_statement_error_ignored_by_work_fails_the_commit)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	int calls = 0;

	ck_assert_int_eq(cm_db_tx(ignore_failed_statement, NULL, errbuf),
			 CM_EIO);
	ck_assert_msg(strstr(errbuf, "rolled back"), "%s", errbuf);
	ck_assert_int_eq(cm_db_tx(noop_work, &calls, errbuf), 0);
	ck_assert_int_eq(calls, 1);
}
END_TEST

START_TEST(test_nested_tx_is_refused)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	int calls = 0;

	ck_assert_int_eq(cm_db_tx(nested_tx, &calls, errbuf), CM_EINVAL);
	ck_assert_int_eq(calls, 0);
	ck_assert_int_eq(cm_db_tx(NULL, NULL, errbuf), CM_EINVAL);
}
END_TEST

START_TEST(test_query_reconnects_after_backend_is_terminated)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	PGconn *conn = cm_db_conn(errbuf);
	int pid1, pid2;

	pid1 = my_backend_pid();
	terminate_backend(pid1);
	pid2 = my_backend_pid(); /* the retry makes this first call work */
	ck_assert_int_ne(pid1, pid2);
	ck_assert_ptr_eq(cm_db_conn(errbuf), conn);
	/* the session was set up again on the new backend */
	{
		char v[32];

		my_value("SHOW statement_timeout", v, sizeof(v));
		ck_assert_str_eq(v, "30s");
	}
}
END_TEST

static int
terminate_mid_tx(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	int rc;

	(void)arg;
	terminate_backend(PQbackendPID(conn));
	rc = cm_db_query(conn, "SELECT 1", 0, NULL, NULL, errbuf);
	ck_assert_int_eq(rc, CM_EIO);
	return rc;
}

START_TEST(test_terminated_backend_inside_tx_fails_then_next_tx_works)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	int calls = 0;

	ck_assert_int_eq(cm_db_tx(terminate_mid_tx, NULL, errbuf), CM_EIO);
	ck_assert_msg(cm_db_tx(noop_work, &calls, errbuf) == 0, "%s", errbuf);
	ck_assert_int_eq(calls, 1);
}
END_TEST

START_TEST(test_ping_succeeds)
{
	char errbuf[CM_ERRBUF_LEN] = "";

	ck_assert_msg(cm_db_ping(2000, errbuf) == 0, "%s", errbuf);
	ck_assert_int_eq(cm_db_ping(0, errbuf), CM_EINVAL);
	/* and after the backend went away */
	terminate_backend(my_backend_pid());
	ck_assert_msg(cm_db_ping(2000, errbuf) == 0, "%s", errbuf);
}
END_TEST

START_TEST(test_ping_fails_fast_on_a_closed_port)
{
	char errbuf[CM_ERRBUF_LEN] = "", conninfo[128];
	int64_t t0;

	snprintf(conninfo, sizeof(conninfo),
		 "host=127.0.0.1 port=%d dbname=x user=y", cm_test_free_port());
	init_with(conninfo, 10, 0);
	t0 = cm_now_ms();
	ck_assert_int_eq(cm_db_ping(2000, errbuf), CM_EIO);
	ck_assert_int_lt(cm_now_ms() - t0, 1000);
	ck_assert_msg(strstr(errbuf, "refused"), "%s", errbuf);
	ck_assert_ptr_null(cm_db_conn(errbuf));
}
END_TEST

/* A listener that never accepts: the kernel completes the handshake and
   the startup packet is never answered. */
static int
silent_listener(int *port)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 8), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

START_TEST(test_ping_and_connect_time_out_on_a_silent_server)
{
	char errbuf[CM_ERRBUF_LEN] = "", conninfo[128];
	int port, fd = silent_listener(&port);
	int64_t t0;

	snprintf(conninfo, sizeof(conninfo),
		 "host=127.0.0.1 port=%d dbname=x user=y", port);
	init_with(conninfo, 1, 0);
	t0 = cm_now_ms();
	ck_assert_int_eq(cm_db_ping(300, errbuf), CM_ETIMEDOUT);
	ck_assert_int_lt(cm_now_ms() - t0, 900);
	t0 = cm_now_ms();
	ck_assert_ptr_null(cm_db_conn(errbuf)); /* connect_timeout_s 1 */
	ck_assert_int_ge(cm_now_ms() - t0, 900);
	ck_assert_int_lt(cm_now_ms() - t0, 1900);
	ck_assert_msg(strstr(errbuf, "timed out"), "%s", errbuf);
	close(fd);
}
END_TEST

START_TEST(test_conn_follows_reinit_and_shutdown)
{
	char errbuf[CM_ERRBUF_LEN] = "", conninfo[128];
	int pid1;

	pid1 = my_backend_pid();
	snprintf(conninfo, sizeof(conninfo),
		 "host=127.0.0.1 port=%d dbname=x user=y", cm_test_free_port());
	init_with(conninfo, 2, 0);
	ck_assert_ptr_null(cm_db_conn(errbuf));
	init_with(g_conninfo, 5, 0);
	ck_assert_int_ne(my_backend_pid(), pid1);
	cm_db_shutdown();
	ck_assert_ptr_null(cm_db_conn(errbuf));
	ck_assert_msg(strstr(errbuf, "not initialised"), "%s", errbuf);
	ck_assert_int_eq(cm_db_ping(100, errbuf), CM_EINVAL);
}
END_TEST

START_TEST(test_init_rejects_bad_config)
{
	struct cm_db_config cfg = { "host=x", NULL, 5, 0 };
	char errbuf[CM_ERRBUF_LEN] = "";

	ck_assert_int_eq(cm_db_init(NULL, errbuf), CM_EINVAL);
	cfg.connect_timeout_s = 0;
	ck_assert_int_eq(cm_db_init(&cfg, errbuf), CM_EINVAL);
	cfg.connect_timeout_s = 61;
	ck_assert_int_eq(cm_db_init(&cfg, errbuf), CM_EINVAL);
	cfg.connect_timeout_s = 5;
	cfg.statement_timeout_ms = -1;
	ck_assert_int_eq(cm_db_init(&cfg, errbuf), CM_EINVAL);
	cfg.statement_timeout_ms = 0;
	cfg.conninfo = "password=hunter2 bogus";
	ck_assert_int_eq(cm_db_init(&cfg, errbuf), CM_EINVAL);
	ck_assert_ptr_null(strstr(errbuf, "hunter2"));
	cfg.conninfo = "";
	ck_assert_int_eq(cm_db_init(&cfg, errbuf), CM_EINVAL);
	/* the old settings are still in force */
	ck_assert_int_gt(my_backend_pid(), 0);
}
END_TEST

static void *
thread_pid(void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	PGconn *conn = cm_db_conn(errbuf);

	*(int *)arg = conn ? PQbackendPID(conn) : -1;
	return NULL;
}

START_TEST(test_thread_exit_closes_its_connection)
{
	char sql[128], v[16] = "";
	pthread_t th;
	int pid = 0, i;

	ck_assert_int_eq(pthread_create(&th, NULL, thread_pid, &pid), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_gt(pid, 0);
	ck_assert_int_ne(pid, my_backend_pid());
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM pg_stat_activity WHERE pid = %d", pid);
	for (i = 0; i < 50; i++) {
		su_value(sql, v, sizeof(v));
		if (strcmp(v, "0") == 0)
			break;
		usleep(100 * 1000);
	}
	ck_assert_str_eq(v, "0");
}
END_TEST

START_TEST(test_check_role_refuses_superuser_and_bypassrls)
{
	char errbuf[CM_ERRBUF_LEN] = "";

	ck_assert_msg(cm_db_check_role(errbuf) == 0, "%s", errbuf);
	init_with(cm_test_env("TEST_PG_CONNINFO"), 5, 0);
	ck_assert_int_eq(cm_db_check_role(errbuf), CM_EPERM);
	ck_assert_msg(strstr(errbuf, "superuser"), "%s", errbuf);
	init_with(g_byp_conninfo, 5, 0);
	ck_assert_int_eq(cm_db_check_role(errbuf), CM_EPERM);
	ck_assert_msg(strstr(errbuf, "BYPASSRLS"), "%s", errbuf);
	ck_assert_ptr_nonnull(strstr(errbuf, g_byp_role));
}
END_TEST

START_TEST(test_conninfo_quotes_and_escapes_values)
{
	char *ci = cm_db_conninfo("h o'st", 5432, "d\\b", "u", "p'w\\");
	PQconninfoOption *opts, *o;
	int seen = 0;

	ck_assert_str_eq(ci, "host='h o\\'st' port=5432 dbname='d\\\\b' "
			     "user='u' password='p\\'w\\\\'");
	opts = PQconninfoParse(ci, NULL);
	ck_assert_ptr_nonnull(opts);
	for (o = opts; o->keyword; o++) {
		if (!o->val)
			continue;
		if (strcmp(o->keyword, "host") == 0 && ++seen)
			ck_assert_str_eq(o->val, "h o'st");
		if (strcmp(o->keyword, "dbname") == 0 && ++seen)
			ck_assert_str_eq(o->val, "d\\b");
		if (strcmp(o->keyword, "password") == 0 && ++seen)
			ck_assert_str_eq(o->val, "p'w\\");
	}
	ck_assert_int_eq(seen, 3);
	PQconninfoFree(opts);
	free(ci);
}
END_TEST

START_TEST(test_conninfo_leaves_out_empty_parts)
{
	char *ci = cm_db_conninfo(NULL, 0, "db", "", NULL);

	ck_assert_str_eq(ci, "dbname='db'");
	free(ci);
	ci = cm_db_conninfo(NULL, 0, NULL, NULL, NULL);
	ck_assert_str_eq(ci, "");
	free(ci);
	ci = cm_db_conninfo("h", 1, NULL, NULL, NULL);
	ck_assert_str_eq(ci, "host='h' port=1");
	free(ci);
}
END_TEST

/* ---- migrations ---- */

static void
make_schema(char out[64])
{
	char sfx[9], sql[256];

	random_hex(sfx);
	snprintf(out, 64, "%s_m%s", g_schema, sfx);
	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s AUTHORIZATION %s", out,
		 g_role);
	ck_assert_int_eq(cm_test_psql(sql), 0);
}

static void
drop_schema(const char *schema)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
		 "SET client_min_messages = warning; DROP SCHEMA %s CASCADE",
		 schema);
	ck_assert_int_eq(cm_test_psql(sql), 0);
}

static void
make_dir(char out[64])
{
	snprintf(out, 64, "%s/m_XXXXXX", g_tmpdir);
	ck_assert_ptr_nonnull(mkdtemp(out));
}

/* rm -r dir */
static void
remove_dir(const char *dir)
{
	char path[512];
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (unlink(path) < 0 && errno == EISDIR)
			remove_dir(path);
	}
	closedir(d);
	rmdir(dir);
}

/* Write dir/name; each %s in fmt is replaced by schema. */
static void
write_file(const char *dir, const char *name, const char *fmt,
	   const char *schema)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, fmt, schema, schema, schema);
	ck_assert_int_eq(fclose(f), 0);
}

static void
log_and_versions(const char *schema, char *log, char *versions)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
		 "SELECT string_agg(what, ',' ORDER BY n) FROM %s.log", schema);
	my_value(sql, log, 128);
	snprintf(sql, sizeof(sql),
		 "SELECT string_agg(version, ',' ORDER BY version) FROM "
		 "%s.schema_migrations",
		 schema);
	my_value(sql, versions, 128);
}

START_TEST(test_migrate_applies_new_files_in_order_once)
{
	char dir[64], schema[64], log[128], versions[128];
	char errbuf[CM_ERRBUF_LEN] = "";

	make_dir(dir);
	make_schema(schema);
	write_file(dir, "0002_b.sql", "INSERT INTO %s.log (what) VALUES ('b');",
		   schema);
	write_file(dir, "0001_a.sql",
		   "CREATE TABLE %s.log (n serial PRIMARY KEY, what text);\n"
		   "INSERT INTO %s.log (what) VALUES ('a');",
		   schema);
	write_file(dir, "0010_c.sql",
		   "-- c\nINSERT INTO %s.log (what) "
		   "VALUES ('c');",
		   schema);
	write_file(dir, "0003_Upper.sql", "not sql", schema);
	write_file(dir, "3_short.sql", "not sql", schema);
	write_file(dir, "0004_x.sql.bak", "not sql", schema);
	write_file(dir, "README", "not sql", schema);
	ck_assert_msg(cm_db_migrate(dir, schema, errbuf) == 0, "%s", errbuf);
	log_and_versions(schema, log, versions);
	ck_assert_str_eq(log, "a,b,c");
	ck_assert_str_eq(versions, "0001_a,0002_b,0010_c");
	ck_assert_msg(cm_db_migrate(dir, schema, errbuf) == 0, "%s", errbuf);
	write_file(dir, "0011_d.sql", "INSERT INTO %s.log (what) VALUES ('d');",
		   schema);
	ck_assert_msg(cm_db_migrate(dir, schema, errbuf) == 0, "%s", errbuf);
	log_and_versions(schema, log, versions);
	ck_assert_str_eq(log, "a,b,c,d");
	ck_assert_str_eq(versions, "0001_a,0002_b,0010_c,0011_d");
	drop_schema(schema);
	remove_dir(dir);
}
END_TEST

START_TEST(test_failing_migration_rolls_back_and_names_the_file)
{
	char dir[64], schema[64], log[128], versions[128], sql[256], v[64];
	char errbuf[CM_ERRBUF_LEN] = "";

	make_dir(dir);
	make_schema(schema);
	write_file(dir, "0001_a.sql",
		   "CREATE TABLE %s.log (n serial PRIMARY KEY, what text);\n"
		   "INSERT INTO %s.log (what) VALUES ('a');",
		   schema);
	write_file(dir, "0002_bad.sql",
		   "INSERT INTO %s.log (what) VALUES ('x');\n"
		   "SELECT no_such_function();",
		   schema);
	write_file(dir, "0003_c.sql", "INSERT INTO %s.log (what) VALUES ('c');",
		   schema);
	ck_assert_int_eq(cm_db_migrate(dir, schema, errbuf), CM_EIO);
	ck_assert_msg(strncmp(errbuf, "migration 0002_bad.sql: ", 24) == 0 &&
			      strstr(errbuf, "no_such_function"),
		      "%s", errbuf);
	log_and_versions(schema, log, versions);
	ck_assert_str_eq(log, "a");
	ck_assert_str_eq(versions, "0001_a");
	/* the lock was released and the session's timeout restored */
	snprintf(sql, sizeof(sql),
		 "SELECT pg_try_advisory_lock(hashtext('bz_migrate:%s'))",
		 schema);
	su_value(sql, v, sizeof(v));
	ck_assert_str_eq(v, "t");
	my_value("SHOW statement_timeout", v, sizeof(v));
	ck_assert_str_eq(v, "30s");
	write_file(dir, "0002_bad.sql",
		   "INSERT INTO %s.log (what) VALUES "
		   "('b');",
		   schema);
	ck_assert_msg(cm_db_migrate(dir, schema, errbuf) == 0, "%s", errbuf);
	log_and_versions(schema, log, versions);
	ck_assert_str_eq(log, "a,b,c");
	drop_schema(schema);
	remove_dir(dir);
}
END_TEST

struct migrate_job {
	const char *dir, *schema;
	int rc;
	char errbuf[CM_ERRBUF_LEN];
};

static void *
migrate_thread(void *arg)
{
	struct migrate_job *j = arg;

	j->rc = cm_db_migrate(j->dir, j->schema, j->errbuf);
	return NULL;
}

START_TEST(test_concurrent_migrations_apply_each_file_once)
{
	char dir[64], schema[64], log[128], versions[128];
	struct migrate_job jobs[2];
	pthread_t th[2];
	int i;

	make_dir(dir);
	make_schema(schema);
	write_file(dir, "0001_a.sql",
		   "CREATE TABLE %s.log (n serial PRIMARY KEY, what text);\n"
		   "INSERT INTO %s.log (what) VALUES ('a');",
		   schema);
	write_file(dir, "0002_slow.sql",
		   "SELECT pg_sleep(0.3); INSERT INTO %s.log (what) VALUES "
		   "('b');",
		   schema);
	write_file(dir, "0003_c.sql", "INSERT INTO %s.log (what) VALUES ('c');",
		   schema);
	for (i = 0; i < 2; i++) {
		memset(&jobs[i], 0, sizeof(jobs[i]));
		jobs[i].dir = dir;
		jobs[i].schema = schema;
		ck_assert_int_eq(
			pthread_create(&th[i], NULL, migrate_thread, &jobs[i]),
			0);
	}
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
		ck_assert_msg(jobs[i].rc == 0, "%s", jobs[i].errbuf);
	}
	log_and_versions(schema, log, versions);
	ck_assert_str_eq(log, "a,b,c");
	ck_assert_str_eq(versions, "0001_a,0002_slow,0003_c");
	drop_schema(schema);
	remove_dir(dir);
}
END_TEST

START_TEST(test_migrate_refuses_missing_schema_and_dir)
{
	char dir[64], schema[64], errbuf[CM_ERRBUF_LEN] = "";

	make_dir(dir);
	ck_assert_int_eq(cm_db_migrate(dir, "bz_no_such_schema", errbuf),
			 CM_ENOENT);
	ck_assert_msg(strstr(errbuf, "bz_no_such_schema does not exist"), "%s",
		      errbuf);
	make_schema(schema);
	ck_assert_int_eq(
		cm_db_migrate("/nonexistent/migrations", schema, errbuf),
		CM_ENOENT);
	ck_assert_msg(strstr(errbuf, "/nonexistent/migrations"), "%s", errbuf);
	ck_assert_int_eq(cm_db_migrate(NULL, schema, errbuf), CM_EINVAL);
	/* an empty dir is fine */
	ck_assert_msg(cm_db_migrate(dir, schema, errbuf) == 0, "%s", errbuf);
	drop_schema(schema);
	remove_dir(dir);
}
END_TEST

START_TEST(test_migrate_refuses_big_files_and_own_commits)
{
	char dir[64], schema[64], errbuf[CM_ERRBUF_LEN] = "", path[512];
	FILE *f;
	int i;

	make_dir(dir);
	make_schema(schema);
	write_file(dir, "0001_commit.sql",
		   "CREATE TABLE %s.log (n serial, what text); COMMIT;",
		   schema);
	ck_assert_int_eq(cm_db_migrate(dir, schema, errbuf), CM_EINVAL);
	ck_assert_msg(strstr(errbuf, "migration 0001_commit.sql: ends the "
				     "transaction"),
		      "%s", errbuf);
	write_file(dir, "0001_commit.sql", "SELECT 1;", schema);
	snprintf(path, sizeof(path), "%s/0002_big.sql", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	for (i = 0; i < 1024 * 1024 / 16 + 1; i++)
		fputs("-- 34567890abcd\n", f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(cm_db_migrate(dir, schema, errbuf), CM_E2BIG);
	ck_assert_msg(strstr(errbuf, "migration 0002_big.sql"), "%s", errbuf);
	drop_schema(schema);
	remove_dir(dir);
}
END_TEST

/* ---- common/idem.h ---- */

/* The idempotency table of common/idem.h in the test schema. */
static void
idem_table(char table[96])
{
	char sql[1024];

	snprintf(table, 96, "%s.idem", g_schema);
	snprintf(sql, sizeof(sql),
		 "SET ROLE %s;"
		 "CREATE TABLE IF NOT EXISTS %s (tenant_id uuid NOT NULL,"
		 " key text NOT NULL, scope text NOT NULL,"
		 " request_hash text NOT NULL, status integer NOT NULL,"
		 " response text NOT NULL, created_at timestamptz NOT NULL"
		 " DEFAULT now(), PRIMARY KEY (tenant_id, key));"
		 "ALTER TABLE %s ENABLE ROW LEVEL SECURITY;"
		 "ALTER TABLE %s FORCE ROW LEVEL SECURITY;"
		 "DROP POLICY IF EXISTS tenant ON %s;"
		 "CREATE POLICY tenant ON %s USING (tenant_id = NULLIF("
		 "current_setting('app.tenant_id', true), '')::uuid);",
		 g_role, table, table, table, table, table);
	ck_assert_int_eq(cm_test_psql(sql), 0);
}

/* One create under an Idempotency-Key, as a service writes it. */
struct idem_create {
	const char *table;
	const char *tenant;
	struct cm_idem im;
	const char *v; /* what this create inserts */
	int hold_ms;   /* sleep inside the transaction after the store */
	int status;    /* the answer */
	char answer[64];
	bool replayed;
	int runs;
	char err[CM_ERRBUF_LEN];
};

static int
idem_create_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct idem_create *c = arg;
	const char *p[2] = { c->tenant, c->v };
	char sql[256], hold[32];
	cJSON *body = NULL;
	int rc;

	c->runs++;
	c->replayed = false;
	rc = cm_idem_lookup(conn, c->table, &c->im, &c->status, &body, errbuf);
	if (rc == 0) {
		c->replayed = true;
		cm_strlcpy(c->answer,
			   cJSON_GetStringValue(cJSON_GetObjectItem(body, "v")),
			   sizeof(c->answer));
		cJSON_Delete(body);
		return 0;
	}
	if (rc != CM_ENOENT)
		return rc;
	snprintf(sql, sizeof(sql), "INSERT INTO %s.t VALUES ($1, $2)",
		 g_schema);
	if ((rc = cm_db_query(conn, sql, 2, p, NULL, errbuf)) < 0)
		return rc;
	body = cJSON_CreateObject();
	cJSON_AddStringToObject(body, "v", c->v);
	rc = cm_idem_store(conn, c->table, &c->im, 201, body, errbuf);
	cJSON_Delete(body);
	c->status = 201;
	cm_strlcpy(c->answer, c->v, sizeof(c->answer));
	if (rc == 0 && c->hold_ms) {
		snprintf(hold, sizeof(hold), "SELECT pg_sleep(%g)",
			 c->hold_ms / 1000.0);
		rc = cm_db_query(conn, hold, 0, NULL, NULL, errbuf);
	}
	return rc;
}

/* The create, once more when a concurrent one with the key won. */
static int
idem_create(struct idem_create *c)
{
	int rc, attempt;

	for (attempt = 0; attempt < 2; attempt++) {
		rc = cm_db_tx_tenant(c->tenant, idem_create_work, c, c->err);
		if (!cm_idem_raced(&c->im, rc, c->err))
			break;
	}
	return rc;
}

static void *
idem_create_thread(void *arg)
{
	return (void *)(intptr_t)idem_create(arg); /* exit closes its conn */
}

static void
idem_init(struct idem_create *c, const char *table, const char *tenant,
	  const char *key, const char *hash, const char *v)
{
	memset(c, 0, sizeof(*c));
	c->table = table;
	c->tenant = tenant;
	c->im.key = key;
	cm_strlcpy(c->im.hash, hash, sizeof(c->im.hash));
	cm_strlcpy(c->im.scope, "POST /api/x", sizeof(c->im.scope));
	c->v = v;
}

START_TEST(test_idem_answers_once_and_replays_a_racing_create)
{
	char table[96], tenant[37], other[37];
	struct idem_create a, b, c;
	pthread_t ta, tb;
	void *ra, *rb;

	idem_table(table);
	ck_assert_int_eq(cm_uuid_v4(tenant), 0);
	ck_assert_int_eq(cm_uuid_v4(other), 0);
	/* b starts while a holds its uncommitted record: b's store waits
	   on the key, fails when a commits, and b's second run replays a */
	idem_init(&a, table, tenant, "k-1", "h1", "first");
	idem_init(&b, table, tenant, "k-1", "h1", "second");
	a.hold_ms = 1500; /* b looks up well before a commits */
	ck_assert_int_eq(pthread_create(&ta, NULL, idem_create_thread, &a), 0);
	usleep(100 * 1000);
	ck_assert_int_eq(pthread_create(&tb, NULL, idem_create_thread, &b), 0);
	pthread_join(ta, &ra);
	pthread_join(tb, &rb);
	ck_assert_msg((int)(intptr_t)ra == 0, "%s", a.err);
	ck_assert_msg((int)(intptr_t)rb == 0, "%s", b.err);
	ck_assert(!a.replayed);
	ck_assert(b.replayed);
	ck_assert_int_eq(b.runs, 2);
	ck_assert_int_eq(b.status, 201);
	ck_assert_str_eq(b.answer, "first");
	ck_assert_int_eq(su_count_tenant(tenant), 1);
	/* the key with another request: refused, nothing created */
	idem_init(&c, table, tenant, "k-1", "h2", "third");
	ck_assert_int_eq(idem_create(&c), CM_EEXIST);
	ck_assert_int_eq(su_count_tenant(tenant), 1);
	/* the same key is another tenant's own */
	idem_init(&c, table, other, "k-1", "h1", "theirs");
	ck_assert_int_eq(idem_create(&c), 0);
	ck_assert(!c.replayed);
	ck_assert_int_eq(su_count_tenant(other), 1);
}
END_TEST

START_TEST(test_idem_record_expires_after_a_day_and_is_replaced)
{
	char table[96], tenant[37], other_tenant[37], sql[512];
	struct idem_create c;

	idem_table(table);
	ck_assert_int_eq(cm_uuid_v4(tenant), 0);
	ck_assert_int_eq(cm_uuid_v4(other_tenant), 0);
	idem_init(&c, table, tenant, "k-2", "h1", "old");
	ck_assert_int_eq(idem_create(&c), 0);
	snprintf(sql, sizeof(sql),
		 "UPDATE %s SET created_at = now() - interval '25 hours'"
		 " WHERE tenant_id = '%s'",
		 table, tenant);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	/* an expired record is no answer, even to another request */
	idem_init(&c, table, tenant, "k-2", "h2", "new");
	ck_assert_int_eq(idem_create(&c), 0);
	ck_assert(!c.replayed);
	idem_init(&c, table, tenant, "k-2", "h2", "again");
	ck_assert_int_eq(idem_create(&c), 0);
	ck_assert(c.replayed);
	ck_assert_str_eq(c.answer, "new");
	ck_assert_int_eq(su_count_tenant(tenant), 2);
	/* a store also sweeps the tenant's other expired records, and only
	   the tenant's */
	snprintf(
		sql, sizeof(sql),
		"INSERT INTO %s (tenant_id, key, scope, request_hash, status,"
		" response, created_at) SELECT t, 'old-' || i, 's', 'h', 201,"
		" '{}', now() - interval '2 days' FROM generate_series(1, 5) i,"
		" (VALUES ('%s'::uuid), ('%s'::uuid)) v(t)",
		table, tenant, other_tenant);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	idem_init(&c, table, tenant, "k-4", "h1", "sweeper");
	ck_assert_int_eq(idem_create(&c), 0);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM %s WHERE key LIKE 'old-%%' AND"
		 " tenant_id = $1::uuid",
		 table);
	ck_assert_int_eq(cm_test_psql_count(sql, tenant), 0);
	ck_assert_int_eq(cm_test_psql_count(sql, other_tenant), 5);
	/* a record whose stored answer cannot be read is an error, not a
	   replay and not a new create */
	snprintf(sql, sizeof(sql),
		 "INSERT INTO %s (tenant_id, key, scope, request_hash, status,"
		 " response) VALUES ('%s', 'k-bad', 'POST /api/x', 'h1', 201,"
		 " '{not json')",
		 table, tenant);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	idem_init(&c, table, tenant, "k-bad", "h1", "never");
	ck_assert_int_eq(idem_create(&c), CM_EIO);
	ck_assert_int_eq(c.runs, 1);
	/* a table name that is not schema.table is refused before any SQL */
	idem_init(&c, "idem; DROP TABLE x", tenant, "k-3", "h1", "bad");
	ck_assert_int_eq(idem_create(&c), CM_EINVAL);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("db");
	TCase *tc = tcase_create("db");
	TCase *pure = tcase_create("conninfo");

	tcase_add_unchecked_fixture(tc, stack_setup, stack_teardown);
	tcase_add_checked_fixture(tc, db_setup, db_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_query_with_params_keeps_injection_text_as_data);
	tcase_add_test(tc, test_bad_query_arguments_are_einval);
	tcase_add_test(tc, test_unique_violation_is_eexist_without_the_value);
	tcase_add_test(tc, test_bad_input_is_einval_without_the_value);
	tcase_add_test(tc, test_sqlstates_map_to_error_codes);
	tcase_add_test(tc, test_statement_timeout_is_etimedout);
	tcase_add_test(tc, test_tenant_sees_only_its_own_rows);
	tcase_add_test(tc,
		       test_insert_for_another_tenant_is_eperm_and_rolled_back);
	tcase_add_test(tc, test_no_tenant_context_sees_zero_rows);
	tcase_add_test(tc, test_policy_without_nullif_fails_after_a_tenant_tx);
	tcase_add_test(tc, test_bad_tenant_id_is_refused_before_any_sql);
	tcase_add_test(tc, test_failing_work_rolls_back);
	tcase_add_test(tc,
		       test_statement_error_ignored_by_work_fails_the_commit);
	tcase_add_test(tc, test_nested_tx_is_refused);
	tcase_add_test(tc, test_idem_answers_once_and_replays_a_racing_create);
	tcase_add_test(tc,
		       test_idem_record_expires_after_a_day_and_is_replaced);
	tcase_add_test(tc, test_query_reconnects_after_backend_is_terminated);
	tcase_add_test(
		tc, test_terminated_backend_inside_tx_fails_then_next_tx_works);
	tcase_add_test(tc, test_ping_succeeds);
	tcase_add_test(tc, test_ping_fails_fast_on_a_closed_port);
	tcase_add_test(tc, test_ping_and_connect_time_out_on_a_silent_server);
	tcase_add_test(tc, test_conn_follows_reinit_and_shutdown);
	tcase_add_test(tc, test_init_rejects_bad_config);
	tcase_add_test(tc, test_thread_exit_closes_its_connection);
	tcase_add_test(tc, test_check_role_refuses_superuser_and_bypassrls);
	tcase_add_test(tc, test_migrate_applies_new_files_in_order_once);
	tcase_add_test(tc,
		       test_failing_migration_rolls_back_and_names_the_file);
	tcase_add_test(tc, test_concurrent_migrations_apply_each_file_once);
	tcase_add_test(tc, test_migrate_refuses_missing_schema_and_dir);
	tcase_add_test(tc, test_migrate_refuses_big_files_and_own_commits);
	suite_add_tcase(s, tc);
	tcase_add_test(pure, test_conninfo_quotes_and_escapes_values);
	tcase_add_test(pure, test_conninfo_leaves_out_empty_parts);
	suite_add_tcase(s, pure);
	return s;
}

CM_TEST_MAIN(make_suite)
