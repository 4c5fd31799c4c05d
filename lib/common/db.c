/* db.c - PostgreSQL through libpq: see common/db.h. */
#include "common/db.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/banned.h"

#define DB_MIGRATION_MAX_BYTES ((size_t)1 << 20)
#define DB_MIGRATION_MAX_FILES 10000

/* The settings of the last cm_db_init(); conninfo NULL: not initialised. */
struct db_settings {
	char *conninfo;
	char *application_name;
	int connect_timeout_s;
	int statement_timeout_ms;
	unsigned generation;
};

/* One per thread, behind db_key; freed (connection closed) at thread exit. */
struct db_thread {
	PGconn *conn;
	unsigned generation;   /* of the settings conn was made with */
	int connect_timeout_s; /* copies of those settings, for resets */
	int statement_timeout_ms;
};

static pthread_mutex_t db_lock = PTHREAD_MUTEX_INITIALIZER;
static struct db_settings db_cfg;
static unsigned db_generation;
static pthread_key_t db_key;
static pthread_once_t db_key_once = PTHREAD_ONCE_INIT;

/* "what: libpq message" on one line (libpq's messages end in newlines and
   may span several lines). */
static void
db_pqerr(char *errbuf, const char *what, const char *msg)
{
	size_t len;
	char *p;

	if (!errbuf)
		return;
	cm_errf(errbuf, "%s: %s", what, msg && *msg ? msg : "unknown error");
	for (p = errbuf; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	len = strlen(errbuf);
	while (len > 0 && errbuf[len - 1] == ' ')
		errbuf[--len] = '\0';
}

static void
db_thread_free(void *p)
{
	struct db_thread *t = p;

	if (!t)
		return;
	PQfinish(t->conn);
	free(t);
}

static void
db_key_create(void)
{
	if (pthread_key_create(&db_key, db_thread_free) != 0) {
		fprintf(stderr, "db: pthread_key_create failed\n");
		abort();
	}
}

static struct db_thread *
db_thread_get(void)
{
	struct db_thread *t;

	pthread_once(&db_key_once, db_key_create);
	t = pthread_getspecific(db_key);
	if (!t) {
		t = cm_xcalloc(1, sizeof(*t));
		if (pthread_setspecific(db_key, t) != 0) {
			fprintf(stderr, "db: pthread_setspecific failed\n");
			abort();
		}
	}
	return t;
}

static void
db_thread_close(struct db_thread *t)
{
	PQfinish(t->conn);
	t->conn = NULL;
}

static void
db_settings_release(struct db_settings *s)
{
	if (s->conninfo) {
		cm_memzero(s->conninfo, strlen(s->conninfo));
		free(s->conninfo);
	}
	free(s->application_name);
	memset(s, 0, sizeof(*s));
}

/* A private copy of the settings (the conninfo may hold a password and
   another thread may re-point them at any time). */
static int
db_settings_get(struct db_settings *out, char *errbuf)
{
	int rc = 0;

	pthread_mutex_lock(&db_lock);
	if (!db_cfg.conninfo) {
		cm_errf(errbuf, "db: not initialised");
		rc = CM_EINVAL;
	} else {
		*out = db_cfg;
		out->conninfo = cm_xstrdup(db_cfg.conninfo);
		out->application_name = cm_xstrdup(db_cfg.application_name);
		out->generation = db_generation;
	}
	pthread_mutex_unlock(&db_lock);
	return rc;
}

static int
db_current_generation(unsigned *gen, char *errbuf)
{
	int rc = 0;

	pthread_mutex_lock(&db_lock);
	*gen = db_generation;
	if (!db_cfg.conninfo) {
		cm_errf(errbuf, "db: not initialised");
		rc = CM_EINVAL;
	}
	pthread_mutex_unlock(&db_lock);
	return rc;
}

/* Drive PQconnectPoll or PQresetPoll until done or deadline (ms). */
static int
db_poll_connect(PGconn *conn, PostgresPollingStatusType (*step)(PGconn *),
		int64_t deadline, char *errbuf)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	struct pollfd pfd;
	int64_t left;

	for (;;) {
		if (st == PGRES_POLLING_OK)
			return 0;
		if (st == PGRES_POLLING_FAILED) {
			db_pqerr(errbuf, "db connect", PQerrorMessage(conn));
			return CM_EIO;
		}
		left = deadline - cm_now_ms();
		if (left <= 0) {
			cm_errf(errbuf, "db connect: timed out");
			return CM_ETIMEDOUT;
		}
		pfd.fd = PQsocket(conn);
		pfd.events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
		pfd.revents = 0;
		if (pfd.fd >= 0 && poll(&pfd, 1, (int)left) <= 0)
			continue; /* EINTR or timeout: the deadline decides */
		st = step(conn);
	}
}

static int
db_set_statement_timeout(PGconn *conn, int ms, char *errbuf)
{
	char sql[64];
	PGresult *res;
	int rc = 0;

	if (ms > 0)
		snprintf(sql, sizeof(sql), "SET statement_timeout = %d", ms);
	else
		snprintf(sql, sizeof(sql), "RESET statement_timeout");
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		db_pqerr(errbuf, "db set statement_timeout",
			 PQerrorMessage(conn));
		rc = CM_EIO;
	}
	PQclear(res);
	return rc;
}

/* libpq would print notices ("... already exists, skipping") raw on
   stderr, in the middle of the JSON log lines. */
static void
db_notice(void *arg, const char *msg)
{
	(void)arg;
	cm_log_debug("db notice: %.*s", (int)strcspn(msg, "\n"), msg);
}

/* A new connection made within timeout_ms, with the session set up. */
static int
db_connect(const struct db_settings *s, int timeout_ms, PGconn **out,
	   char *errbuf)
{
	const char *keys[] = { "dbname", "application_name", "connect_timeout",
			       NULL };
	const char *vals[4];
	char ct[16];
	PGconn *conn;
	int rc = CM_EIO;

	snprintf(ct, sizeof(ct), "%d", s->connect_timeout_s);
	vals[0] = s->conninfo; /* expanded; the keys after it override */
	vals[1] = s->application_name;
	vals[2] = ct;
	vals[3] = NULL;
	conn = PQconnectStartParams(keys, vals, 1);
	if (!conn) {
		cm_errf(errbuf, "db connect: out of memory");
		return CM_EIO;
	}
	PQsetNoticeProcessor(conn, db_notice, NULL);
	if (PQstatus(conn) == CONNECTION_BAD) {
		db_pqerr(errbuf, "db connect", PQerrorMessage(conn));
		goto fail;
	}
	rc = db_poll_connect(conn, PQconnectPoll, cm_now_ms() + timeout_ms,
			     errbuf);
	if (rc == 0 && s->statement_timeout_ms > 0)
		rc = db_set_statement_timeout(conn, s->statement_timeout_ms,
					      errbuf);
	if (rc < 0)
		goto fail;
	*out = conn;
	return 0;
fail:
	PQfinish(conn);
	return rc;
}

static int
db_thread_connect(struct db_thread *t, int timeout_ms, char *errbuf)
{
	struct db_settings s = { 0 };
	int rc;

	rc = db_settings_get(&s, errbuf);
	if (rc < 0)
		return rc;
	if (timeout_ms <= 0 || timeout_ms > s.connect_timeout_s * 1000)
		timeout_ms = s.connect_timeout_s * 1000;
	rc = db_connect(&s, timeout_ms, &t->conn, errbuf);
	t->generation = s.generation;
	t->connect_timeout_s = s.connect_timeout_s;
	t->statement_timeout_ms = s.statement_timeout_ms;
	db_settings_release(&s);
	return rc;
}

/* Repair the thread's connection in place: same PGconn, new socket. */
static int
db_reset(struct db_thread *t, int timeout_ms, char *errbuf)
{
	int rc;

	if (timeout_ms <= 0 || timeout_ms > t->connect_timeout_s * 1000)
		timeout_ms = t->connect_timeout_s * 1000;
	if (!PQresetStart(t->conn)) {
		db_pqerr(errbuf, "db reconnect", PQerrorMessage(t->conn));
		return CM_EIO;
	}
	rc = db_poll_connect(t->conn, PQresetPoll, cm_now_ms() + timeout_ms,
			     errbuf);
	if (rc == 0 && t->statement_timeout_ms > 0)
		rc = db_set_statement_timeout(t->conn, t->statement_timeout_ms,
					      errbuf);
	return rc;
}

/* This thread's connection, connected (within timeout_ms if > 0). */
static int
db_conn_get(struct db_thread **tp, int timeout_ms, char *errbuf)
{
	struct db_thread *t = db_thread_get();
	unsigned gen;
	int rc;

	*tp = t;
	rc = db_current_generation(&gen, errbuf);
	if (rc < 0) {
		db_thread_close(t);
		return rc;
	}
	if (t->conn && t->generation != gen)
		db_thread_close(t);
	if (t->conn && PQstatus(t->conn) == CONNECTION_OK)
		return 0;
	if (t->conn)
		return db_reset(t, timeout_ms, errbuf);
	return db_thread_connect(t, timeout_ms, errbuf);
}

char *
cm_db_conninfo(const char *host, int port, const char *dbname, const char *user,
	       const char *password)
{
	const char *keys[] = { "host", "dbname", "user", "password" };
	const char *vals[] = { host, dbname, user, password };
	struct cm_buf b = CM_BUF_INIT(0);
	const char *p;
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (i == 1 && port > 0)
			cm_buf_printf(&b, "%sport=%d", b.len ? " " : "", port);
		if (!vals[i] || !*vals[i])
			continue;
		cm_buf_printf(&b, "%s%s='", b.len ? " " : "", keys[i]);
		for (p = vals[i]; *p; p++) {
			if (*p == '\'' || *p == '\\')
				cm_buf_putc(&b, '\\');
			cm_buf_putc(&b, *p);
		}
		cm_buf_putc(&b, '\'');
	}
	return cm_buf_detach(&b, NULL);
}

static int
db_config_check(const struct cm_db_config *cfg, char *errbuf)
{
	PQconninfoOption *opts;
	char *perr = NULL;

	if (!cfg || !cfg->conninfo || !*cfg->conninfo) {
		cm_errf(errbuf, "db: no conninfo");
		return CM_EINVAL;
	}
	if (cfg->connect_timeout_s < 1 || cfg->connect_timeout_s > 60 ||
	    cfg->statement_timeout_ms < 0) {
		cm_errf(errbuf, "db: connect_timeout_s must be 1..60 and "
				"statement_timeout_ms >= 0");
		return CM_EINVAL;
	}
	opts = PQconninfoParse(cfg->conninfo, &perr);
	if (!opts) {
		/* perr may quote the conninfo, password included: not shown */
		PQfreemem(perr);
		cm_errf(errbuf, "db: conninfo does not parse");
		return CM_EINVAL;
	}
	PQconninfoFree(opts);
	return 0;
}

int
cm_db_init(const struct cm_db_config *cfg, char errbuf[CM_ERRBUF_LEN])
{
	int rc;

	rc = db_config_check(cfg, errbuf);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&db_lock);
	db_settings_release(&db_cfg);
	db_cfg.conninfo = cm_xstrdup(cfg->conninfo);
	db_cfg.application_name = cm_xstrdup(cfg->application_name);
	db_cfg.connect_timeout_s = cfg->connect_timeout_s;
	db_cfg.statement_timeout_ms = cfg->statement_timeout_ms;
	db_generation++;
	pthread_mutex_unlock(&db_lock);
	return 0;
}

void
cm_db_shutdown(void)
{
	struct db_thread *t;

	pthread_mutex_lock(&db_lock);
	db_settings_release(&db_cfg);
	db_generation++;
	pthread_mutex_unlock(&db_lock);
	pthread_once(&db_key_once, db_key_create);
	t = pthread_getspecific(db_key);
	if (t) {
		pthread_setspecific(db_key, NULL);
		db_thread_free(t);
	}
}

PGconn *
cm_db_conn(char errbuf[CM_ERRBUF_LEN])
{
	struct db_thread *t;

	if (db_conn_get(&t, 0, errbuf) < 0)
		return NULL;
	return t->conn;
}

static int
db_sqlstate_code(const char *state)
{
	static const struct {
		const char *state;
		int code;
	} map[] = {
		{ "23505", CM_EEXIST }, { "40001", CM_EAGAIN },
		{ "40P01", CM_EAGAIN }, { "57014", CM_ETIMEDOUT },
		{ "42501", CM_EPERM },
	};
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(state, map[i].state) == 0)
			return map[i].code;
	if (strncmp(state, "22", 2) == 0)
		return CM_EINVAL;
	return CM_EIO;
}

/* errbuf: the primary message, cut before any ': "value"' it quotes. */
static int
db_result_error(PGconn *conn, const PGresult *res, char *errbuf)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *cut;
	int len;

	if (!state || !msg) { /* made by libpq: connection trouble */
		msg = PQresultErrorMessage(res);
		db_pqerr(errbuf, "db", *msg ? msg : PQerrorMessage(conn));
		return CM_EIO;
	}
	cut = strstr(msg, ": \"");
	len = cut ? (int)(cut - msg) : (int)strlen(msg);
	cm_errf(errbuf, "%.*s (SQLSTATE %s)", len, msg, state);
	return db_sqlstate_code(state);
}

static int
db_result_check(PGconn *conn, const PGresult *res, char *errbuf)
{
	ExecStatusType st;

	if (!res) {
		db_pqerr(errbuf, "db", PQerrorMessage(conn));
		return CM_EIO;
	}
	st = PQresultStatus(res);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return 0;
	if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR)
		return db_result_error(conn, res, errbuf);
	cm_errf(errbuf, "db: unexpected result %s", PQresStatus(st));
	return CM_EIO;
}

/* The retry is only safe on our own idle connection outside a
   transaction: a reset inside one would silently end it. */
static struct db_thread *
db_retry_target(PGconn *conn)
{
	struct db_thread *t;

	pthread_once(&db_key_once, db_key_create);
	t = pthread_getspecific(db_key);
	if (!t || t->conn != conn || PQstatus(conn) != CONNECTION_OK ||
	    PQtransactionStatus(conn) != PQTRANS_IDLE)
		return NULL;
	return t;
}

/* One statement, no retry (migrations hold a session lock a reconnect
   would silently drop). */
static int
db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
	PGresult **out, char *errbuf)
{
	PGresult *res;
	int rc;

	res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	rc = db_result_check(conn, res, errbuf);
	if (rc == 0 && out)
		*out = res;
	else
		PQclear(res);
	return rc;
}

int
cm_db_query(PGconn *conn, const char *sql, int nparams,
	    const char *const *params, PGresult **out,
	    char errbuf[CM_ERRBUF_LEN])
{
	struct db_thread *retry;
	int rc;

	if (out)
		*out = NULL;
	if (!conn || !sql || nparams < 0 || (nparams > 0 && !params)) {
		cm_errf(errbuf, "db query: bad arguments");
		return CM_EINVAL;
	}
	retry = db_retry_target(conn);
	rc = db_exec(conn, sql, nparams, params, out, errbuf);
	if (rc < 0 && retry && PQstatus(conn) == CONNECTION_BAD) {
		rc = db_reset(retry, 0, errbuf);
		if (rc == 0)
			rc = db_exec(conn, sql, nparams, params, out, errbuf);
	}
	return rc;
}

static void
db_rollback(PGconn *conn)
{
	PGTransactionStatusType ts = PQtransactionStatus(conn);

	if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
		PQclear(PQexec(conn, "ROLLBACK"));
}

/* COMMIT of a transaction a statement aborted answers "ROLLBACK". */
static int
db_commit(PGconn *conn, char *errbuf)
{
	PGresult *res = NULL;
	int rc;

	rc = cm_db_query(conn, "COMMIT", 0, NULL, &res, errbuf);
	if (rc == 0 && strcmp(PQcmdStatus(res), "COMMIT") != 0) {
		cm_errf(errbuf, "db: transaction aborted by an earlier error "
				"and rolled back");
		rc = CM_EIO;
	}
	PQclear(res);
	return rc;
}

static int
db_tx_run(const char *tenant_id, cm_db_work_fn fn, void *arg, char *errbuf)
{
	const char *params[1] = { tenant_id };
	struct db_thread *t;
	PGconn *conn;
	int rc;

	rc = db_conn_get(&t, 0, errbuf);
	if (rc < 0)
		return rc;
	conn = t->conn;
	if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
		cm_errf(errbuf, "db: a transaction is already open here");
		return CM_EINVAL;
	}
	rc = cm_db_query(conn, "BEGIN", 0, NULL, NULL, errbuf);
	if (rc == 0 && tenant_id)
		rc = cm_db_query(conn,
				 "SELECT set_config('app.tenant_id', $1, true)",
				 1, params, NULL, errbuf);
	if (rc == 0) {
		rc = fn(conn, arg, errbuf);
		if (rc > 0)
			rc = 0;
	}
	if (rc == 0)
		rc = db_commit(conn, errbuf);
	if (rc < 0)
		db_rollback(conn);
	return rc;
}

bool
cm_db_table_ok(const char *t)
{
	const char *dot = t ? strchr(t, '.') : NULL;
	size_t i;

	if (!dot || dot == t || dot - t > 63 || strlen(dot + 1) > 63 || !dot[1])
		return false;
	for (i = 0; t[i]; i++)
		if (t + i != dot &&
		    !((t[i] >= 'a' && t[i] <= 'z') ||
		      (t[i] >= '0' && t[i] <= '9') || t[i] == '_'))
			return false;
	return true;
}

int
cm_db_tx(cm_db_work_fn fn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	if (!fn) {
		cm_errf(errbuf, "db tx: no work function");
		return CM_EINVAL;
	}
	return db_tx_run(NULL, fn, arg, errbuf);
}

int
cm_db_tx_tenant(const char *tenant_id, cm_db_work_fn fn, void *arg,
		char errbuf[CM_ERRBUF_LEN])
{
	if (!tenant_id || !cm_is_uuid(tenant_id)) {
		cm_errf(errbuf, "db tx: tenant id is not a uuid");
		return CM_EINVAL;
	}
	if (!fn) {
		cm_errf(errbuf, "db tx: no work function");
		return CM_EINVAL;
	}
	return db_tx_run(tenant_id, fn, arg, errbuf);
}

/* SELECT 1 by hand, so that the wait is bounded by the deadline. */
static int
db_ping_query(PGconn *conn, int64_t deadline, char *errbuf)
{
	struct pollfd pfd;
	PGresult *res;
	int64_t left;
	int rc = 1; /* no result yet */

	if (!PQsendQuery(conn, "SELECT 1")) {
		db_pqerr(errbuf, "db ping", PQerrorMessage(conn));
		return CM_EIO;
	}
	while (PQisBusy(conn)) {
		left = deadline - cm_now_ms();
		if (left <= 0) {
			cm_errf(errbuf, "db ping: timed out");
			return CM_ETIMEDOUT;
		}
		pfd.fd = PQsocket(conn);
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		if (!PQconsumeInput(conn))
			break;
	}
	while ((res = PQgetResult(conn))) {
		if (rc == 1)
			rc = db_result_check(conn, res, errbuf);
		PQclear(res);
	}
	if (rc == 1) {
		db_pqerr(errbuf, "db ping", PQerrorMessage(conn));
		rc = CM_EIO;
	}
	return rc;
}

int
cm_db_ping(int timeout_ms, char errbuf[CM_ERRBUF_LEN])
{
	int64_t deadline = cm_now_ms() + timeout_ms;
	struct db_thread *t;
	int rc = CM_EIO, attempt;
	int64_t left;

	if (timeout_ms <= 0) {
		cm_errf(errbuf, "db ping: timeout must be positive");
		return CM_EINVAL;
	}
	for (attempt = 0; attempt < 2; attempt++) {
		left = deadline - cm_now_ms();
		rc = db_conn_get(&t, left > 1 ? (int)left : 1, errbuf);
		if (rc == 0)
			rc = db_ping_query(t->conn, deadline, errbuf);
		if (rc == CM_ETIMEDOUT) /* a query may be pending: drop it */
			db_thread_close(t);
		/* a stale connection fails once: retry on a repaired one */
		if (rc == 0 || !t->conn ||
		    PQstatus(t->conn) != CONNECTION_BAD ||
		    cm_now_ms() >= deadline)
			break;
	}
	return rc;
}

static bool
db_migration_name_ok(const char *name)
{
	size_t len = strlen(name), i;

	if (len < 10 || strcmp(name + len - 4, ".sql") != 0 || name[4] != '_')
		return false;
	for (i = 0; i < 4; i++)
		if (name[i] < '0' || name[i] > '9')
			return false;
	for (i = 5; i < len - 4; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') ||
		      (name[i] >= '0' && name[i] <= '9') || name[i] == '_'))
			return false;
	return true;
}

static int
db_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
db_names_free(char **names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The migration file names in dir, sorted. */
static int
db_list_migrations(const char *dir, char ***out, size_t *nout, char *errbuf)
{
	char **names = NULL;
	size_t n = 0, alloc = 0;
	struct dirent *de;
	DIR *d;
	int rc = 0;

	d = opendir(dir);
	if (!d) {
		rc = errno == ENOENT ? CM_ENOENT : CM_EIO;
		cm_errf(errbuf, "migrations dir %s: %s", dir, strerror(errno));
		return rc;
	}
	while ((de = readdir(d))) {
		if (!db_migration_name_ok(de->d_name))
			continue;
		if (n == DB_MIGRATION_MAX_FILES) {
			cm_errf(errbuf, "migrations dir %s: too many files",
				dir);
			rc = CM_E2BIG;
			break;
		}
		if (n == alloc) {
			alloc = alloc ? alloc * 2 : 16;
			names = cm_xrealloc(names, alloc * sizeof(*names));
		}
		names[n++] = cm_xstrdup(de->d_name);
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), db_name_cmp);
	*out = names;
	*nout = n;
	return rc;
}

static int
db_read_fd(int fd, size_t size, char **out, char *errbuf)
{
	char *data = cm_xmalloc(size + 1);
	size_t got = 0;
	ssize_t k;

	while (got < size) {
		k = read(fd, data + got, size - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			cm_errf(errbuf, "read: %s", strerror(errno));
			free(data);
			return CM_EIO;
		}
		if (k == 0)
			break;
		got += (size_t)k;
	}
	data[got] = '\0';
	if (memchr(data, '\0', got)) {
		cm_errf(errbuf, "contains a NUL byte");
		free(data);
		return CM_EINVAL;
	}
	*out = data;
	return 0;
}

/* dir/name, whole, NUL-terminated; at most DB_MIGRATION_MAX_BYTES. */
static int
db_read_migration(const char *dir, const char *name, char **out, char *errbuf)
{
	struct cm_buf path = CM_BUF_INIT(4096);
	struct stat st;
	int fd = -1, rc = CM_EIO;

	cm_buf_printf(&path, "%s/%s", dir, name);
	if (cm_buf_error(&path) < 0) {
		cm_errf(errbuf, "path too long");
		goto out;
	}
	fd = open(cm_buf_str(&path), O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		cm_errf(errbuf, "%s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) ||
	    st.st_size > (off_t)DB_MIGRATION_MAX_BYTES) {
		cm_errf(errbuf, "not a regular file of at most %zu bytes",
			DB_MIGRATION_MAX_BYTES);
		rc = S_ISREG(st.st_mode) ? CM_E2BIG : CM_EINVAL;
		goto out;
	}
	rc = db_read_fd(fd, (size_t)st.st_size, out, errbuf);
out:
	if (fd >= 0)
		close(fd);
	cm_buf_release(&path);
	return rc;
}

/* The file's SQL inside our transaction; a file that ends it (COMMIT or
   ROLLBACK of its own) is refused. */
static int
db_run_migration_sql(PGconn *conn, const char *sql, char *errbuf)
{
	PGresult *res;
	int rc = 0;

	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_EMPTY_QUERY)
		rc = db_result_check(conn, res, errbuf);
	PQclear(res);
	if (rc == 0 && PQtransactionStatus(conn) != PQTRANS_INTRANS) {
		cm_errf(errbuf, "ends the transaction itself (no BEGIN/COMMIT "
				"in migrations)");
		rc = CM_EINVAL;
	}
	return rc;
}

static int
db_apply_migration(PGconn *conn, const char *dir, const char *table,
		   const char *name, char *errbuf)
{
	struct cm_buf sql = CM_BUF_INIT(0);
	char detail[CM_ERRBUF_LEN] = "";
	char *version = cm_xstrndup(name, strlen(name) - 4);
	const char *params[1] = { version };
	char *text = NULL;
	PGresult *res = NULL;
	int rc;

	cm_buf_printf(&sql, "SELECT 1 FROM %s WHERE version = $1", table);
	rc = db_exec(conn, cm_buf_str(&sql), 1, params, &res, detail);
	if (rc < 0 || PQntuples(res) > 0)
		goto out; /* failed, or applied already */
	rc = db_read_migration(dir, name, &text, detail);
	if (rc == 0)
		rc = db_exec(conn, "BEGIN", 0, NULL, NULL, detail);
	if (rc == 0)
		rc = db_run_migration_sql(conn, text, detail);
	cm_buf_reset(&sql);
	cm_buf_printf(&sql, "INSERT INTO %s (version) VALUES ($1)", table);
	if (rc == 0)
		rc = db_exec(conn, cm_buf_str(&sql), 1, params, NULL, detail);
	if (rc == 0)
		rc = db_commit(conn, detail);
out:
	if (rc < 0) {
		db_rollback(conn);
		cm_errf(errbuf, "migration %s: %s", name, detail);
	}
	PQclear(res);
	free(text);
	free(version);
	cm_buf_release(&sql);
	return rc;
}

/* "<schema>".schema_migrations, once the schema is known to exist. */
static int
db_migrations_table(PGconn *conn, const char *schema, char **out, char *errbuf)
{
	const char *params[1] = { schema };
	struct cm_buf b = CM_BUF_INIT(0);
	PGresult *res = NULL;
	char *ident;
	int rc;

	rc = db_exec(conn, "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1,
		     params, &res, errbuf);
	if (rc == 0 && PQntuples(res) == 0) {
		cm_errf(errbuf,
			"db migrate: schema %s does not exist (the "
			"bootstrap script creates it)",
			schema);
		rc = CM_ENOENT;
	}
	PQclear(res);
	if (rc < 0)
		return rc;
	ident = PQescapeIdentifier(conn, schema, strlen(schema));
	if (!ident) {
		db_pqerr(errbuf, "db migrate", PQerrorMessage(conn));
		return CM_EINVAL;
	}
	cm_buf_printf(&b, "%s.schema_migrations", ident);
	PQfreemem(ident);
	*out = cm_buf_detach(&b, NULL);
	return 0;
}

/* Session lock for the schema, statement_timeout lifted while held; then
   the bookkeeping table (created under the lock: concurrent CREATE TABLE
   IF NOT EXISTS can fail). */
static int
db_migrate_lock(PGconn *conn, const char *schema, const char *table,
		char *errbuf)
{
	const char *params[1] = { schema };
	struct cm_buf sql = CM_BUF_INIT(0);
	int rc;

	rc = db_exec(conn, "SET statement_timeout = 0", 0, NULL, NULL, errbuf);
	if (rc == 0)
		rc = db_exec(conn,
			     "SELECT pg_advisory_lock(hashtext('bz_migrate:' "
			     "|| $1))",
			     1, params, NULL, errbuf);
	if (rc < 0)
		return rc;
	cm_buf_printf(&sql,
		      "CREATE TABLE IF NOT EXISTS %s (version text PRIMARY "
		      "KEY, applied_at timestamptz NOT NULL DEFAULT now())",
		      table);
	rc = db_exec(conn, cm_buf_str(&sql), 0, NULL, NULL, errbuf);
	cm_buf_release(&sql);
	return rc;
}

static void
db_migrate_unlock(struct db_thread *t, const char *schema)
{
	const char *params[1] = { schema };

	if (PQstatus(t->conn) != CONNECTION_OK)
		return; /* the server dropped the lock with the session */
	db_exec(t->conn,
		"SELECT pg_advisory_unlock(hashtext('bz_migrate:' "
		"|| $1))",
		1, params, NULL, NULL);
	db_set_statement_timeout(t->conn, t->statement_timeout_ms, NULL);
}

int
cm_db_migrate(const char *dir, const char *schema, char errbuf[CM_ERRBUF_LEN])
{
	struct db_thread *t;
	char *table = NULL;
	char **names = NULL;
	size_t n = 0, i;
	int rc;

	if (!dir || !schema || !*schema) {
		cm_errf(errbuf, "db migrate: no dir or schema");
		return CM_EINVAL;
	}
	rc = db_conn_get(&t, 0, errbuf);
	if (rc < 0)
		return rc;
	rc = db_migrations_table(t->conn, schema, &table, errbuf);
	if (rc == 0)
		rc = db_list_migrations(dir, &names, &n, errbuf);
	if (rc < 0)
		goto out;
	rc = db_migrate_lock(t->conn, schema, table, errbuf);
	for (i = 0; rc == 0 && i < n; i++)
		rc = db_apply_migration(t->conn, dir, table, names[i], errbuf);
	db_migrate_unlock(t, schema);
out:
	db_names_free(names, n);
	free(table);
	return rc;
}

int
cm_db_check_role(char errbuf[CM_ERRBUF_LEN])
{
	struct db_thread *t;
	PGresult *res = NULL;
	const char *role;
	int rc;

	rc = db_conn_get(&t, 0, errbuf);
	if (rc == 0)
		rc = cm_db_query(t->conn,
				 "SELECT rolname, rolsuper, rolbypassrls FROM "
				 "pg_roles WHERE rolname = current_user",
				 0, NULL, &res, errbuf);
	if (rc < 0)
		goto out;
	if (PQntuples(res) != 1) {
		cm_errf(errbuf, "db: the session role is not in pg_roles");
		rc = CM_EIO;
		goto out;
	}
	role = PQgetvalue(res, 0, 0);
	if (strcmp(PQgetvalue(res, 0, 1), "t") == 0) {
		cm_errf(errbuf,
			"db: role %s is a superuser: row-level "
			"security would not apply",
			role);
		rc = CM_EPERM;
	} else if (strcmp(PQgetvalue(res, 0, 2), "t") == 0) {
		cm_errf(errbuf,
			"db: role %s has BYPASSRLS: row-level "
			"security would not apply",
			role);
		rc = CM_EPERM;
	}
out:
	PQclear(res);
	return rc;
}
