/* test_log.c - JSON log lines: fields, context, level gating, escaping. */
#include "common/log.h"
#include "common/err.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "common/banned.h"

static int pipe_fds[2] = { -1, -1 };

static void
setup(void)
{
	ck_assert_int_eq(pipe2(pipe_fds, O_NONBLOCK), 0);
	cm_log_set_fd(pipe_fds[1]);
	cm_log_init("test-svc", CM_LOG_INFO);
	cm_log_set_context(NULL, NULL);
}

static void
teardown(void)
{
	close(pipe_fds[0]);
	close(pipe_fds[1]);
	cm_log_set_fd(2);
}

/* Everything written to the pipe so far (malloc'd, NUL-terminated). */
static char *
drain(void)
{
	size_t len = 0, cap = 65536;
	char *out = malloc(cap + 1);
	ssize_t n;

	ck_assert_ptr_nonnull(out);
	while ((n = read(pipe_fds[0], out + len, cap - len)) > 0)
		len += (size_t)n;
	ck_assert_msg(n == 0 || errno == EAGAIN, "read: %s", strerror(errno));
	out[len] = '\0';
	return out;
}

/* The one line written since the last drain, parsed. */
static cJSON *
one_line(void)
{
	char *text = drain();
	char *nl = strchr(text, '\n');
	cJSON *json;

	ck_assert_msg(nl != NULL, "no line: \"%s\"", text);
	ck_assert_msg(nl[1] == '\0', "more than one line: %s", text);
	json = cJSON_ParseWithLength(text, (size_t)(nl - text));
	ck_assert_msg(cJSON_IsObject(json), "not a JSON object: %s", text);
	free(text);
	return json;
}

static const char *
str_field(const cJSON *json, const char *name)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(json, name);

	return cJSON_IsString(f) ? f->valuestring : NULL;
}

static void
assert_nothing_written(void)
{
	char *text = drain();

	ck_assert_msg(text[0] == '\0', "unexpected output: %s", text);
	free(text);
}

/* YYYY-MM-DDTHH:MM:SS.mmmZ */
static bool
is_log_time(const char *s)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
	size_t i;

	if (!s || strlen(s) != sizeof(shape) - 1)
		return false;
	for (i = 0; shape[i]; i++) {
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9')
				    : s[i] != shape[i])
			return false;
	}
	return true;
}

START_TEST(test_a_line_has_time_level_service_and_message)
{
	cJSON *json;

	cm_log_info("started on port %d", 8080);
	json = one_line();
	ck_assert_msg(is_log_time(str_field(json, "time")), "time: %s",
		      str_field(json, "time"));
	ck_assert_str_eq(str_field(json, "level"), "info");
	ck_assert_str_eq(str_field(json, "service"), "test-svc");
	ck_assert_str_eq(str_field(json, "message"), "started on port 8080");
	ck_assert_ptr_null(cJSON_GetObjectItem(json, "request_id"));
	ck_assert_ptr_null(cJSON_GetObjectItem(json, "tenant_id"));
	ck_assert_int_eq(cJSON_GetArraySize(json), 4);
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_each_level_is_named)
{
	static const char *const names[] = { "debug", "info", "warn", "error" };
	cJSON *json;
	int lvl;

	cm_log_init("test-svc", CM_LOG_DEBUG);
	for (lvl = CM_LOG_DEBUG; lvl <= CM_LOG_ERROR; lvl++) {
		cm_log_write((enum cm_log_level)lvl, "at %d", lvl);
		json = one_line();
		ck_assert_str_eq(str_field(json, "level"), names[lvl]);
		cJSON_Delete(json);
	}
}
END_TEST

START_TEST(test_request_and_tenant_ids_appear_when_context_is_set)
{
	cJSON *json;

	cm_log_set_context("req-123", "7c9e6679-7425-40de-944b-e07fc1f90ae7");
	cm_log_warn("slow query");
	json = one_line();
	ck_assert_str_eq(str_field(json, "request_id"), "req-123");
	ck_assert_str_eq(str_field(json, "tenant_id"),
			 "7c9e6679-7425-40de-944b-e07fc1f90ae7");
	cJSON_Delete(json);

	cm_log_set_context("req-only", NULL);
	cm_log_err("failed");
	json = one_line();
	ck_assert_str_eq(str_field(json, "request_id"), "req-only");
	ck_assert_ptr_null(cJSON_GetObjectItem(json, "tenant_id"));
	cJSON_Delete(json);

	cm_log_set_context(NULL, NULL);
	cm_log_err("failed");
	json = one_line();
	ck_assert_ptr_null(cJSON_GetObjectItem(json, "request_id"));
	cJSON_Delete(json);
}
END_TEST

static int side_effects;

static int
counted(void)
{
	return ++side_effects;
}

START_TEST(test_debug_is_suppressed_at_info_without_formatting)
{
	cm_log_debug("expensive %d", counted());
	assert_nothing_written();
	ck_assert_int_eq(side_effects, 0);
	cm_log_write(CM_LOG_DEBUG, "direct call below threshold");
	assert_nothing_written();
	cm_log_init("test-svc", CM_LOG_DEBUG);
	cm_log_debug("now %d", counted());
	cJSON_Delete(one_line());
	ck_assert_int_eq(side_effects, 1);
}
END_TEST

START_TEST(test_warn_threshold_drops_info)
{
	cJSON *json;

	cm_log_init("test-svc", CM_LOG_WARN);
	cm_log_info("dropped");
	assert_nothing_written();
	cm_log_warn("kept");
	json = one_line();
	ck_assert_str_eq(str_field(json, "message"), "kept");
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_off_silences_everything)
{
	cm_log_init("test-svc", CM_LOG_OFF);
	cm_log_err("not even errors");
	cm_log_write(CM_LOG_OFF, "nor this");
	assert_nothing_written();
}
END_TEST

START_TEST(test_quotes_and_newlines_are_escaped_and_stay_one_valid_line)
{
	static const char nasty[] = "say \"hi\"\nsecond line\\ tab\t cr\r "
				    "bell\x07 end";
	cJSON *json;

	cm_log_info("%s", nasty);
	json = one_line();
	ck_assert_str_eq(str_field(json, "message"), nasty);
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_service_name_and_context_are_escaped_too)
{
	cJSON *json;

	cm_log_init("svc\"x\n", CM_LOG_INFO);
	cm_log_set_context("r\"1", "t\n2");
	cm_log_info("m");
	json = one_line();
	ck_assert_str_eq(str_field(json, "service"), "svc\"x\n");
	ck_assert_str_eq(str_field(json, "request_id"), "r\"1");
	ck_assert_str_eq(str_field(json, "tenant_id"), "t\n2");
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_null_service_name_is_unknown)
{
	cJSON *json;

	cm_log_init(NULL, CM_LOG_INFO);
	cm_log_info("m");
	json = one_line();
	ck_assert_str_eq(str_field(json, "service"), "unknown");
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_each_call_writes_exactly_one_line)
{
	char *text;
	const char *p;
	int lines = 0;

	cm_log_info("one");
	cm_log_warn("two");
	cm_log_err("three");
	text = drain();
	for (p = text; *p; p++)
		lines += *p == '\n';
	ck_assert_int_eq(lines, 3);
	free(text);
}
END_TEST

START_TEST(test_oversized_message_still_gives_one_valid_line)
{
	size_t n = 20000;
	char *big = malloc(n + 1);
	cJSON *json;

	ck_assert_ptr_nonnull(big);
	memset(big, 'x', n);
	big[n] = '\0';
	cm_log_info("%s", big);
	json = one_line();
	ck_assert_str_eq(str_field(json, "level"), "info");
	cJSON_Delete(json);
	free(big);
}
END_TEST

START_TEST(test_write_failure_is_ignored)
{
	cm_log_set_fd(-1);
	cm_log_err("nowhere to go");
	cm_log_set_fd(pipe_fds[1]);
	cm_log_info("back");
	cJSON_Delete(one_line());
}
END_TEST

START_TEST(test_parse_level_knows_every_name_in_any_case)
{
	static const struct {
		const char *name;
		enum cm_log_level level;
	} ok[] = {
		{ "debug", CM_LOG_DEBUG }, { "INFO", CM_LOG_INFO },
		{ "warn", CM_LOG_WARN },   { "Warning", CM_LOG_WARN },
		{ "error", CM_LOG_ERROR }, { "OFF", CM_LOG_OFF },
	};
	static const char *const bad[] = { "", "verbose", "err", "info " };
	enum cm_log_level lvl = CM_LOG_INFO;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ck_assert_int_eq(cm_log_parse_level(ok[i].name, &lvl), 0);
		ck_assert_int_eq(lvl, ok[i].level);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(cm_log_parse_level(bad[i], &lvl) == CM_EINVAL,
			      "%s", bad[i]);
	ck_assert_int_eq(cm_log_parse_level(NULL, &lvl), CM_EINVAL);
	ck_assert_int_eq(lvl, CM_LOG_OFF);
}
END_TEST

#define THREADS 4
#define LINES_PER_THREAD 300

static void *
log_thread(void *arg)
{
	int t = (int)(intptr_t)arg, i;
	char rid[32];

	snprintf(rid, sizeof(rid), "req-%d", t);
	cm_log_set_context(rid, NULL);
	for (i = 0; i < LINES_PER_THREAD; i++)
		cm_log_info("thread %d line %d", t, i);
	return NULL;
}

/* Check one line written by log_thread; count it in seen[]. */
static void
check_thread_line(const char *line, size_t len, int *seen)
{
	cJSON *json = cJSON_ParseWithLength(line, len);
	int t = -1, i = -1;
	char want[32];

	ck_assert_msg(cJSON_IsObject(json), "bad line: %.*s", (int)len, line);
	ck_assert_int_eq(
		sscanf(str_field(json, "message"), "thread %d line %d", &t, &i),
		2);
	ck_assert(t >= 0 && t < THREADS);
	snprintf(want, sizeof(want), "req-%d", t);
	ck_assert_str_eq(str_field(json, "request_id"), want);
	seen[t]++;
	cJSON_Delete(json);
}

START_TEST(test_threads_write_whole_lines_with_their_own_context)
{
	char path[] = "/tmp/test_log_XXXXXX";
	int fd = mkstemp(path), t, seen[THREADS] = { 0 };
	pthread_t th[THREADS];
	char *text, *p, *nl;
	FILE *f;
	size_t len = 0;

	ck_assert_int_ge(fd, 0);
	unlink(path);
	cm_log_set_fd(fd);
	for (t = 0; t < THREADS; t++)
		ck_assert_int_eq(pthread_create(&th[t], NULL, log_thread,
						(void *)(intptr_t)t),
				 0);
	for (t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	f = fdopen(fd, "r");
	ck_assert_ptr_nonnull(f);
	rewind(f);
	text = NULL;
	ck_assert(getdelim(&text, &len, '\0', f) > 0);
	for (p = text; (nl = strchr(p, '\n')) != NULL; p = nl + 1)
		check_thread_line(p, (size_t)(nl - p), seen);
	ck_assert_str_eq(p, "");
	for (t = 0; t < THREADS; t++)
		ck_assert_int_eq(seen[t], LINES_PER_THREAD);
	free(text);
	fclose(f);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("log");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_a_line_has_time_level_service_and_message);
	tcase_add_test(tc, test_each_level_is_named);
	tcase_add_test(tc,
		       test_request_and_tenant_ids_appear_when_context_is_set);
	tcase_add_test(tc, test_debug_is_suppressed_at_info_without_formatting);
	tcase_add_test(tc, test_warn_threshold_drops_info);
	tcase_add_test(tc, test_off_silences_everything);
	tcase_add_test(
		tc,
		test_quotes_and_newlines_are_escaped_and_stay_one_valid_line);
	tcase_add_test(tc, test_service_name_and_context_are_escaped_too);
	tcase_add_test(tc, test_null_service_name_is_unknown);
	tcase_add_test(tc, test_each_call_writes_exactly_one_line);
	tcase_add_test(tc, test_oversized_message_still_gives_one_valid_line);
	tcase_add_test(tc, test_write_failure_is_ignored);
	tcase_add_test(tc, test_parse_level_knows_every_name_in_any_case);
	tcase_add_test(tc,
		       test_threads_write_whole_lines_with_their_own_context);
	tcase_set_timeout(tc, 20);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
