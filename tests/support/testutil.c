/* testutil.c - helpers shared by the test binaries. */
#include "testutil.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

const char *
cm_test_env(const char *name)
{
	const char *v = getenv(name);

	ck_assert_msg(v && *v, "%s is not set: run through make test", name);
	return v;
}

void
cm_test_require_stack(void)
{
	cm_test_env("TEST_PG_CONNINFO");
	cm_test_env("REDIS_PORT");
}

int
cm_test_free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port;

	ck_assert_int_ge(fd, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

int
cm_test_psql(const char *sql)
{
	PGconn *c = PQconnectdb(cm_test_env("TEST_PG_CONNINFO"));
	PGresult *r;
	int rc = -1;

	if (PQstatus(c) == CONNECTION_OK) {
		r = PQexec(c, sql);
		if (PQresultStatus(r) == PGRES_COMMAND_OK ||
		    PQresultStatus(r) == PGRES_TUPLES_OK)
			rc = 0;
		else
			fprintf(stderr, "psql: %s", PQerrorMessage(c));
		PQclear(r);
	}
	PQfinish(c);
	return rc;
}

long long
cm_test_psql_count(const char *sql, const char *param)
{
	PGconn *c = PQconnectdb(cm_test_env("TEST_PG_CONNINFO"));
	PGresult *res;
	long long n;

	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
	res = PQexecParams(c, sql, param ? 1 : 0, NULL, &param, NULL, NULL, 0);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK &&
			      PQntuples(res) >= 1,
		      "%s: %s", sql, PQresultErrorMessage(res));
	n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	PQfinish(c);
	return n;
}

/* Whether one file holds marker anywhere (read whole). */
static bool
file_has(const char *path, const char *marker)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t len = 0, n;
	bool found;

	if (!f)
		return false;
	buf = malloc(65536);
	ck_assert_ptr_nonnull(buf);
	while ((n = fread(buf + len, 1, 65536, f)) > 0) {
		len += n;
		buf = realloc(buf, len + 65536);
		ck_assert_ptr_nonnull(buf);
	}
	fclose(f);
	found = memmem(buf, len, marker, strlen(marker)) != NULL;
	free(buf);
	return found;
}

int
cm_test_logs_scan(const char *marker, char *hit, size_t cap)
{
	char dir[512], path[1024];
	struct dirent *de;
	DIR *d;
	int files = 0;

	hit[0] = '\0';
	snprintf(dir, sizeof(dir), "%s/test-logs", cm_test_env("BZ_BUILD"));
	d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (!hit[0] && file_has(path, marker))
			snprintf(hit, cap, "%s", de->d_name);
		files++;
	}
	closedir(d);
	return files;
}
