/*
 * db.h - PostgreSQL through libpq: per-thread connections, tenant-scoped
 * units of work, migrations, and the row-level-security guard.
 *
 * cm_db_init() stores the connection settings once; each thread then gets
 * its own connection lazily (cm_db_conn), reconnected transparently after a
 * PostgreSQL restart (the failed call returns CM_EIO; the next one
 * reconnects). Thread-exit closes the thread's connection.
 *
 * Only parameterised queries: every call takes SQL text with $1.. and an
 * array of text parameters. Tenant data is touched only inside
 * cm_db_tx_tenant(), which runs
 *   BEGIN; SELECT set_config('app.tenant_id', $1, true); <work>; COMMIT
 * so the row-level-security policies (tenant_id =
 * current_setting('app.tenant_id')::uuid) apply; a failing work function
 * rolls back.
 *
 * Migrations: services/<name>/migrations/NNNN_<what>.sql, applied in
 * order, each once, each in its own transaction, recorded in
 * <schema>.schema_migrations, all under pg_advisory_lock so replicas
 * starting together are safe.
 */
#ifndef COMMON_DB_H
#define COMMON_DB_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "common/err.h"

struct cm_db_config {
	const char *conninfo;		/* libpq conninfo or URI */
	const char *application_name;	/* the service's name */
	int connect_timeout_s;		/* 1..60 */
	int statement_timeout_ms;	/* 0: none */
};

typedef int (*cm_db_work_fn)(PGconn *conn, void *arg,
			     char errbuf[CM_ERRBUF_LEN]);

/* cm_db_conninfo - build a conninfo string from POSTGRES_* parts (values
   quoted as libpq wants); malloc'd. */
char *cm_db_conninfo(const char *host, int port, const char *dbname,
		     const char *user, const char *password);
/* cm_db_init - remember the settings (copied); no connection yet. */
int cm_db_init(const struct cm_db_config *cfg, char errbuf[CM_ERRBUF_LEN]);
/* cm_db_shutdown - close this thread's connection and forget the config. */
void cm_db_shutdown(void);
/* cm_db_conn - this thread's live connection, or NULL with errbuf. */
PGconn *cm_db_conn(char errbuf[CM_ERRBUF_LEN]);
/* cm_db_query - PQexecParams in text mode; 0 with *out (caller PQclears;
   out may be NULL), CM_EEXIST for unique violations, CM_EIO otherwise. */
int cm_db_query(PGconn *conn, const char *sql, int nparams,
		const char *const *params, PGresult **out,
		char errbuf[CM_ERRBUF_LEN]);
/* cm_db_tx - run fn inside BEGIN/COMMIT on this thread's connection. */
int cm_db_tx(cm_db_work_fn fn, void *arg, char errbuf[CM_ERRBUF_LEN]);
/* cm_db_tx_tenant - as cm_db_tx with app.tenant_id set for the tx. */
int cm_db_tx_tenant(const char *tenant_id, cm_db_work_fn fn, void *arg,
		    char errbuf[CM_ERRBUF_LEN]);
/* cm_db_ping - SELECT 1 within timeout_ms; 0 or CM_EIO/CM_ETIMEDOUT. */
int cm_db_ping(int timeout_ms, char errbuf[CM_ERRBUF_LEN]);
/* cm_db_migrate - apply dir's NNNN_*.sql not yet recorded in
   schema.schema_migrations; 0 or CM_E* naming the failing file. */
int cm_db_migrate(const char *dir, const char *schema,
		  char errbuf[CM_ERRBUF_LEN]);
/* cm_db_check_role - CM_EPERM when the session role is a superuser or has
   BYPASSRLS (row-level security would not apply). */
int cm_db_check_role(char errbuf[CM_ERRBUF_LEN]);

#endif
