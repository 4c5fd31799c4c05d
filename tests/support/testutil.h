/*
 * testutil.h - shared helpers for the Check test binaries.
 *
 * Every tests/.../test_x.c builds into its own binary; it defines a
 * `static Suite *make_suite(void)` and ends with CM_TEST_MAIN(make_suite).
 * The throwaway stack started by scripts/test-run exports:
 *   TEST_PG_CONNINFO   superuser conninfo of the test cluster (tests only)
 *   POSTGRES_HOST/PORT/DB, REDIS_HOST/PORT, BZ_BUILD (build dir), and the
 *   per-service role passwords in TEST_PG_PASSWORD_<ROLE> (ROLE uppercased,
 *   dashes as underscores).
 * Tests that need PostgreSQL or Redis call cm_test_require_stack() first.
 */
#ifndef TESTS_TESTUTIL_H
#define TESTS_TESTUTIL_H

#include <check.h>
#include <stdlib.h>

#define CM_TEST_MAIN(make)                                   \
	int main(void)                                       \
	{                                                    \
		SRunner *sr = srunner_create(make());        \
		int failed;                                  \
		srunner_run_all(sr, CK_NORMAL);              \
		failed = srunner_ntests_failed(sr);          \
		srunner_free(sr);                            \
		return failed ? EXIT_FAILURE : EXIT_SUCCESS; \
	}

/* cm_test_env - getenv or fail the test naming the variable. */
const char *cm_test_env(const char *name);
/* cm_test_require_stack - fail unless the test stack's variables are set. */
void cm_test_require_stack(void);
/* cm_test_free_port - a TCP port on 127.0.0.1 that was free a moment ago. */
int cm_test_free_port(void);
/* cm_test_psql - run SQL as the test superuser; 0 on success. */
int cm_test_psql(const char *sql);
/* cm_test_psql_count - the first cell of SQL's first row as an integer,
   run as the test superuser with param as $1 when not NULL; fails the
   test when the query does. */
long long cm_test_psql_count(const char *sql, const char *param);
/* cm_test_logs_scan - read every file of $BZ_BUILD/test-logs whole; the
   number of files read, and in hit (cap bytes) the name of the first one
   holding marker ("" when none does). */
int cm_test_logs_scan(const char *marker, char *hit, size_t cap);

#endif
