/*
 * db.h - PostgreSQL through libpq: per-thread connections, tenant-scoped
 * units of work, migrations, and the row-level-security guard.
 *
 * cm_db_init() stores the connection settings (copied, under a mutex); each
 * thread then gets its own connection lazily (cm_db_conn), made with the
 * configured connect_timeout and application_name and with
 * `SET statement_timeout` applied; search_path is left alone, so SQL names
 * its tables schema-qualified. When a thread exits, its connection is
 * closed (a pthread key destructor). cm_db_init() may be called again to
 * re-point the settings: every thread drops its old connection on its next
 * call and connects with the new settings.
 *
 * The PGconn returned by cm_db_conn() belongs to the calling thread; it is
 * valid until that thread's next cm_db_init/cm_db_shutdown/cm_db_ping, so
 * fetch it per unit of work rather than keeping it. After a PostgreSQL
 * restart (or a terminated backend) the connection is repaired in place
 * (PQreset: same PGconn): cm_db_query() on an idle connection, outside a
 * transaction, retries once on a connection-level failure, so the first
 * statement normally succeeds; inside a transaction the statement fails
 * with CM_EIO, the work rolls back, and the next call reconnects. (The retry
 * assumes the lost statement did not commit: a backend killed exactly
 * between committing an autocommit statement and replying would see it run
 * twice; idle-connection drops, the common case, never ran it.)
 *
 * Only parameterised queries: every call takes SQL text with $1.. and an
 * array of text parameters. Tenant data is touched only inside
 * cm_db_tx_tenant(), which runs
 *   BEGIN; SELECT set_config('app.tenant_id', $1, true); <work>; COMMIT
 * so the row-level-security policies apply; a failing work function rolls
 * back. Write policies as
 *   USING (tenant_id = NULLIF(current_setting('app.tenant_id', true),
 *                             '')::uuid)  (and the same WITH CHECK)
 * so that no tenant matches no row: once a session has run one tenant
 * transaction the setting reads '' (not NULL) outside it, and a bare
 * ''::uuid makes every query on the table fail.
 *
 * Error codes from SQLSTATE: 23505 -> CM_EEXIST, 40001/40P01 -> CM_EAGAIN,
 * 57014 (statement timeout) -> CM_ETIMEDOUT, 42501 (also row-level-security
 * WITH CHECK violations) -> CM_EPERM, class 22 (bad input data) ->
 * CM_EINVAL, connection failures and everything else -> CM_EIO. errbuf gets
 * "<primary message> (SQLSTATE xxxxx)" with any quoted value after ': "'
 * cut off, never DETAIL or the parameters (they may be secrets).
 *
 * Migrations: services/<name>/migrations/NNNN_<what>.sql (names matching
 * ^[0-9]{4}_[a-z0-9_]+\.sql$, other files ignored, at most 1 MiB each),
 * applied in name order, each once, each in its own transaction (so a file
 * must not contain BEGIN/COMMIT), recorded by name without ".sql" in
 * <schema>.schema_migrations, all under a session pg_advisory_lock so
 * replicas starting together are safe. The schema must already exist (the
 * bootstrap script creates it, owned by the service's role). While
 * migrating, statement_timeout is lifted (a long CREATE INDEX, or waiting
 * for another replica's lock, must not fail the start-up).
 *
 * Thread-safe: settings under a mutex, one connection per thread.
 */
#ifndef COMMON_DB_H
#define COMMON_DB_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "common/err.h"

struct cm_db_config {
	const char *conninfo;	      /* libpq conninfo or URI */
	const char *application_name; /* the service's name; NULL: none */
	int connect_timeout_s;	      /* 1..60 */
	int statement_timeout_ms;     /* 0: none (the server's default) */
};

typedef int (*cm_db_work_fn)(PGconn *conn, void *arg,
			     char errbuf[CM_ERRBUF_LEN]);

/* cm_db_conninfo - build "host='..' port=.. dbname='..' user='..'
   password='..'" (values quoted, ' and \ escaped as libpq wants; NULL or
   empty parts and port <= 0 left out); malloc'd, never NULL. */
char *cm_db_conninfo(const char *host, int port, const char *dbname,
		     const char *user, const char *password);
/* cm_db_init - remember the settings (copied); no connection yet. May be
   called again to re-point every thread; CM_EINVAL for a bad config. */
int cm_db_init(const struct cm_db_config *cfg, char errbuf[CM_ERRBUF_LEN]);
/* cm_db_shutdown - close this thread's connection and forget the config. */
void cm_db_shutdown(void);
/* cm_db_conn - this thread's live connection (connecting or repairing it
   as needed), or NULL with errbuf. */
PGconn *cm_db_conn(char errbuf[CM_ERRBUF_LEN]);
/* cm_db_table_ok - whether t is "schema.table" of [a-z0-9_] (each part 1
   to 63 bytes): a name safe to put into SQL text. */
bool cm_db_table_ok(const char *t);

/* cm_db_query - PQexecParams in text mode; 0 with *out (caller PQclears;
   out may be NULL), or a CM_E* code mapped from the SQLSTATE (above). */
int cm_db_query(PGconn *conn, const char *sql, int nparams,
		const char *const *params, PGresult **out,
		char errbuf[CM_ERRBUF_LEN]);
/* cm_db_tx - run fn inside BEGIN/COMMIT on this thread's connection; fn < 0
   (its code and errbuf are returned) or a failed COMMIT rolls back. A
   transaction aborted by a statement fn ignored is CM_EIO. CM_EINVAL if
   this thread's connection is already inside a transaction. */
int cm_db_tx(cm_db_work_fn fn, void *arg, char errbuf[CM_ERRBUF_LEN]);
/* cm_db_tx_tenant - as cm_db_tx with app.tenant_id set for the tx;
   CM_EINVAL, before any SQL, unless tenant_id is a canonical uuid. */
int cm_db_tx_tenant(const char *tenant_id, cm_db_work_fn fn, void *arg,
		    char errbuf[CM_ERRBUF_LEN]);
/* cm_db_ping - SELECT 1 within timeout_ms overall, connecting if needed;
   0 or CM_EIO/CM_ETIMEDOUT. Never waits longer than timeout_ms: on timeout
   the connection is dropped rather than cancelled (a cancel request to an
   unresponsive server could itself hang). */
int cm_db_ping(int timeout_ms, char errbuf[CM_ERRBUF_LEN]);
/* cm_db_migrate - apply dir's NNNN_*.sql not yet recorded in
   schema.schema_migrations; 0, or CM_EIO "migration NNNN_x.sql: <error>",
   CM_E2BIG for a file over 1 MiB, CM_ENOENT for a missing dir or schema. */
int cm_db_migrate(const char *dir, const char *schema,
		  char errbuf[CM_ERRBUF_LEN]);
/* cm_db_check_role - CM_EPERM when the session role is a superuser or has
   BYPASSRLS (row-level security would not apply). */
int cm_db_check_role(char errbuf[CM_ERRBUF_LEN]);

#endif
