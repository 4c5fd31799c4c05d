/* test_mem.c - allocation, bounded parsers, uuids, comparisons, time. */
#include "common/err.h"
#include "common/mem.h"

#include <math.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "common/banned.h"

START_TEST(test_parse_i64_reads_whole_base10_numbers)
{
	int64_t v = 0;

	ck_assert_int_eq(cm_parse_i64("0", 0, 0, &v), 0);
	ck_assert_int_eq(v, 0);
	ck_assert_int_eq(cm_parse_i64("-17", -100, 100, &v), 0);
	ck_assert_int_eq(v, -17);
	ck_assert_int_eq(cm_parse_i64("007", 0, 10, &v), 0);
	ck_assert_int_eq(v, 7);
	ck_assert_int_eq(
		cm_parse_i64("9223372036854775807", INT64_MIN, INT64_MAX, &v),
		0);
	ck_assert(v == INT64_MAX);
	ck_assert_int_eq(
		cm_parse_i64("-9223372036854775808", INT64_MIN, INT64_MAX, &v),
		0);
	ck_assert(v == INT64_MIN);
}
END_TEST

START_TEST(test_parse_i64_bounds_are_inclusive)
{
	int64_t v = 0;

	ck_assert_int_eq(cm_parse_i64("1", 1, 10, &v), 0);
	ck_assert_int_eq(cm_parse_i64("10", 1, 10, &v), 0);
	ck_assert_int_eq(v, 10);
	ck_assert_int_eq(cm_parse_i64("0", 1, 10, &v), CM_EINVAL);
	ck_assert_int_eq(cm_parse_i64("11", 1, 10, &v), CM_EINVAL);
	ck_assert_int_eq(v, 10);
}
END_TEST

START_TEST(test_parse_i64_refuses_garbage_whitespace_and_overflow)
{
	static const char *const bad[] = {
		"",
		" 1",
		"1 ",
		"\t1",
		"1\n",
		"1a",
		"a1",
		"0x10",
		"1.0",
		"1e3",
		"--1",
		"-",
		"+",
		"9223372036854775808",
		"-9223372036854775809",
		"99999999999999999999999",
	};
	int64_t v = 123;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(cm_parse_i64(bad[i], INT64_MIN, INT64_MAX, &v) ==
				      CM_EINVAL,
			      "accepted \"%s\"", bad[i]);
	ck_assert_int_eq(cm_parse_i64(NULL, 0, 1, &v), CM_EINVAL);
	ck_assert_int_eq(v, 123);
}
END_TEST

START_TEST(test_parse_bool_knows_the_usual_words_in_any_case)
{
	static const char *const yes[] = { "true", "TRUE", "1", "yes",
					   "Yes",  "on",   "ON" };
	static const char *const no[] = { "false", "False", "0",  "no",
					  "NO",	   "off",   "Off" };
	static const char *const bad[] = { "",	    "2",     "y",     "n",
					   "truee", " true", "enable" };
	bool b;
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		b = false;
		ck_assert_int_eq(cm_parse_bool(yes[i], &b), 0);
		ck_assert_msg(b, "%s", yes[i]);
	}
	for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		b = true;
		ck_assert_int_eq(cm_parse_bool(no[i], &b), 0);
		ck_assert_msg(!b, "%s", no[i]);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(cm_parse_bool(bad[i], &b) == CM_EINVAL, "%s",
			      bad[i]);
	ck_assert_int_eq(cm_parse_bool(NULL, &b), CM_EINVAL);
}
END_TEST

START_TEST(test_parse_double_refuses_non_finite_and_out_of_range)
{
	double d = 0;

	ck_assert_int_eq(cm_parse_double("0.25", 0, 1, &d), 0);
	ck_assert(d == 0.25);
	ck_assert_int_eq(cm_parse_double("1e-3", 0, 1, &d), 0);
	ck_assert(d == 0.001);
	ck_assert_int_eq(cm_parse_double("1.5", 0, 1, &d), CM_EINVAL);
	ck_assert_int_eq(cm_parse_double("nan", -INFINITY, INFINITY, &d),
			 CM_EINVAL);
	ck_assert_int_eq(cm_parse_double("inf", -INFINITY, INFINITY, &d),
			 CM_EINVAL);
	ck_assert_int_eq(cm_parse_double("1e999", -INFINITY, INFINITY, &d),
			 CM_EINVAL);
	ck_assert_int_eq(cm_parse_double(" 1", 0, 2, &d), CM_EINVAL);
	ck_assert_int_eq(cm_parse_double("1x", 0, 2, &d), CM_EINVAL);
	ck_assert_int_eq(cm_parse_double("", 0, 2, &d), CM_EINVAL);
	ck_assert(d == 0.001);
}
END_TEST

START_TEST(test_uuid_v4_has_the_version_and_variant_bits)
{
	char u[37];
	int i;

	for (i = 0; i < 100; i++) {
		ck_assert_int_eq(cm_uuid_v4(u), 0);
		ck_assert_uint_eq(strlen(u), 36);
		ck_assert_msg(cm_is_uuid(u), "%s", u);
		ck_assert_int_eq(u[14], '4');
		ck_assert_msg(strchr("89ab", u[19]) != NULL, "%s", u);
		ck_assert_msg(strspn(u, "0123456789abcdef-") == 36,
			      "not lowercase: %s", u);
	}
}
END_TEST

static int
cmp_uuid(const void *a, const void *b)
{
	return strcmp(a, b);
}

START_TEST(test_uuid_v4_values_are_unique)
{
	enum {
		N = 2000
	};
	static char ids[N][37];
	int i;

	for (i = 0; i < N; i++)
		ck_assert_int_eq(cm_uuid_v4(ids[i]), 0);
	qsort(ids, N, sizeof(ids[0]), cmp_uuid);
	for (i = 1; i < N; i++)
		ck_assert_str_ne(ids[i - 1], ids[i]);
}
END_TEST

/* uuids come from a per-thread pool of random bytes: a forked child must
   not draw the same uuids as its parent. */
START_TEST(test_a_forked_child_never_repeats_its_parents_uuids)
{
	char mine[37], theirs[37] = "";
	int fds[2], status;
	pid_t pid;

	ck_assert_int_eq(cm_uuid_v4(mine), 0); /* the pool is filled */
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char u[37];

		close(fds[0]);
		if (cm_uuid_v4(u) != 0 || write(fds[1], u, 37) != 37)
			_exit(1);
		_exit(0);
	}
	close(fds[1]);
	ck_assert_int_eq(read(fds[0], theirs, 37), 37);
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(cm_uuid_v4(mine), 0);
	ck_assert(cm_is_uuid(theirs));
	ck_assert_str_ne(mine, theirs);
}
END_TEST

/* FNV-1a 64: the published test vectors, and chaining. */
START_TEST(test_hash_is_fnv1a_64_and_chains)
{
	ck_assert_uint_eq(cm_hash_str(""), 0xcbf29ce484222325ULL);
	ck_assert_uint_eq(cm_hash_str("a"), 0xaf63dc4c8601ec8cULL);
	ck_assert_uint_eq(cm_hash_str("foobar"), 0x85944171f73967e8ULL);
	ck_assert_uint_eq(cm_hash(cm_hash(CM_HASH_INIT, "foo", 3), "bar", 3),
			  cm_hash_str("foobar"));
}
END_TEST

START_TEST(test_time_rfc3339_us_is_now_to_the_microsecond)
{
	char at[40], sec[21];
	int64_t before = cm_now_s();
	int i;

	cm_time_rfc3339_us(at);
	ck_assert_uint_eq(strlen(at), 27);
	ck_assert_int_eq(at[19], '.');
	ck_assert_int_eq(at[26], 'Z');
	for (i = 20; i < 26; i++)
		ck_assert(at[i] >= '0' && at[i] <= '9');
	cm_time_rfc3339(before, sec);
	if (strncmp(at, sec, 19) != 0) { /* a second boundary passed */
		cm_time_rfc3339(before + 1, sec);
		ck_assert_int_eq(strncmp(at, sec, 19), 0);
	}
}
END_TEST

START_TEST(test_is_uuid_accepts_only_the_canonical_form)
{
	static const char *const bad[] = {
		"",
		"123e4567-e89b-42d3-a456-42661417400",	 /* short */
		"123e4567-e89b-42d3-a456-4266141740000", /* long */
		"123e4567e89b-42d3-a456-4266141740000",	 /* dash moved */
		"123e4567-e89b-42d3-a456_426614174000",
		"g23e4567-e89b-42d3-a456-426614174000",
		"{123e4567-e89b-42d3-a456-426614174000}",
		"123e4567e89b42d3a456426614174000",
	};
	size_t i;

	ck_assert(cm_is_uuid("123e4567-e89b-42d3-a456-426614174000"));
	ck_assert(cm_is_uuid("123E4567-E89B-42D3-A456-426614174000"));
	ck_assert(cm_is_uuid("00000000-0000-0000-0000-000000000000"));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!cm_is_uuid(bad[i]), "accepted %s", bad[i]);
	ck_assert(!cm_is_uuid(NULL));
}
END_TEST

START_TEST(test_consttime_eq_compares_content_and_length)
{
	ck_assert(cm_consttime_eq("abc", 3, "abc", 3));
	ck_assert(!cm_consttime_eq("abc", 3, "abd", 3));
	ck_assert(!cm_consttime_eq("abc", 3, "abcd", 4));
	ck_assert(!cm_consttime_eq("abc", 3, "ab", 2));
	ck_assert(cm_consttime_eq("", 0, "x", 0));
	ck_assert(cm_consttime_eq("a\0b", 3, "a\0b", 3));
	ck_assert(!cm_consttime_eq("a\0b", 3, "a\0c", 3));
}
END_TEST

START_TEST(test_rfc3339_formats_utc_with_z)
{
	char out[21];

	cm_time_rfc3339(0, out);
	ck_assert_str_eq(out, "1970-01-01T00:00:00Z");
	cm_time_rfc3339(1700000000, out);
	ck_assert_str_eq(out, "2023-11-14T22:13:20Z");
	cm_time_rfc3339(951782400, out); /* leap day */
	ck_assert_str_eq(out, "2000-02-29T00:00:00Z");
	cm_time_rfc3339(4102444799LL, out);
	ck_assert_str_eq(out, "2099-12-31T23:59:59Z");
}
END_TEST

/* The arithmetic date against the C library's, over the four-digit
   years, day boundaries and the clamp at both ends. */
START_TEST(test_rfc3339_matches_gmtime)
{
	const int64_t lo = -62167219200LL, hi = 253402300799LL;
	char out[21], want[80];
	uint64_t x = 88172645463325252ULL;
	struct tm tm;
	time_t t;
	int64_t e;
	int i;

	for (i = 0; i < 200000; i++) {
		x ^= x << 13; /* xorshift: many dates, the same ones each run */
		x ^= x >> 7;
		x ^= x << 17;
		e = lo + (int64_t)(x % (uint64_t)(hi - lo + 1));
		if (i % 4 == 0) /* near midnight, where days roll over */
			e -= e % 86400 + (i % 8 == 0 ? 1 : 0);
		t = (time_t)e;
		ck_assert_ptr_nonnull(gmtime_r(&t, &tm));
		snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02dZ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec);
		cm_time_rfc3339(e, out);
		ck_assert_msg(strcmp(out, want) == 0, "%lld: %s, want %s",
			      (long long)e, out, want);
	}
	cm_time_rfc3339(-1, out);
	ck_assert_str_eq(out, "1969-12-31T23:59:59Z");
	cm_time_rfc3339(lo - 1000, out);
	ck_assert_str_eq(out, "0000-01-01T00:00:00Z");
	cm_time_rfc3339(hi + 1, out);
	ck_assert_str_eq(out, "9999-12-31T23:59:59Z");
}
END_TEST

START_TEST(test_clocks_move_forward)
{
	int64_t a = cm_now_ms(), b;
	struct timespec ts = { 0, 20 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	b = cm_now_ms();
	ck_assert(b >= a + 19);
	ck_assert(cm_now_s() > 1600000000);
}
END_TEST

START_TEST(test_string_copies_bound_and_terminate)
{
	char small[4];
	char *s;

	ck_assert_uint_eq(cm_strlcpy(small, "abcdef", sizeof(small)), 6);
	ck_assert_str_eq(small, "abc");
	ck_assert_uint_eq(cm_strlcpy(small, "ab", sizeof(small)), 2);
	ck_assert_str_eq(small, "ab");
	small[0] = 'q';
	ck_assert_uint_eq(cm_strlcpy(small, "xyz", 0), 3);
	ck_assert_int_eq(small[0], 'q');
	s = cm_xstrndup("abcdef", 3);
	ck_assert_str_eq(s, "abc");
	free(s);
	s = cm_xstrndup("ab", 10);
	ck_assert_str_eq(s, "ab");
	free(s);
	s = cm_xstrdup("dup");
	ck_assert_str_eq(s, "dup");
	free(s);
	ck_assert_ptr_null(cm_xstrdup(NULL));
}
END_TEST

START_TEST(test_allocators_return_usable_memory)
{
	unsigned char *p = cm_xcalloc(16, 4);
	size_t i;

	for (i = 0; i < 64; i++)
		ck_assert_int_eq(p[i], 0);
	p = cm_xrealloc(p, 128);
	p[127] = 1;
	free(p);
	free(cm_xmalloc(0));
	free(cm_xcalloc(0, 0));
}
END_TEST

START_TEST(test_memzero_clears_bytes)
{
	char secret[] = "hunter2";

	cm_memzero(secret, sizeof(secret));
	ck_assert_int_eq(memcmp(secret, "\0\0\0\0\0\0\0\0", 8), 0);
	cm_memzero(NULL, 4);
}
END_TEST

START_TEST(test_u64_text_in_decimal_and_hex)
{
	char out[24];

	ck_assert_uint_eq(cm_u64_text(0, 10, out), 1);
	ck_assert_str_eq(out, "0");
	ck_assert_uint_eq(cm_u64_text(1234567890, 10, out), 10);
	ck_assert_str_eq(out, "1234567890");
	ck_assert_uint_eq(cm_u64_text(UINT64_MAX, 10, out), 20);
	ck_assert_str_eq(out, "18446744073709551615");
	ck_assert_uint_eq(cm_u64_text(0x3fe, 16, out), 3);
	ck_assert_str_eq(out, "3fe");
	ck_assert_uint_eq(cm_u64_text(UINT64_MAX, 16, out), 16);
	ck_assert_str_eq(out, "ffffffffffffffff");
}
END_TEST

START_TEST(test_hex_digits_of_either_case_and_nothing_else)
{
	const char *all = "0123456789abcdef", *upper = "ABCDEF";
	int i;

	for (i = 0; i < 16; i++)
		ck_assert_int_eq(cm_hex_digit(all[i]), i);
	for (i = 0; i < 6; i++)
		ck_assert_int_eq(cm_hex_digit(upper[i]), 10 + i);
	ck_assert_int_eq(cm_hex_digit('g'), -1);
	ck_assert_int_eq(cm_hex_digit('G'), -1);
	ck_assert_int_eq(cm_hex_digit('/'), -1);
	ck_assert_int_eq(cm_hex_digit(':'), -1);
	ck_assert_int_eq(cm_hex_digit('\0'), -1);
	ck_assert_int_eq(cm_hex_digit(0xe9), -1);
}
END_TEST

START_TEST(test_xcalloc_size_overflow_aborts)
{
	cm_xcalloc(SIZE_MAX / 2, 4);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("mem");
	TCase *parse = tcase_create("parse");
	TCase *misc = tcase_create("misc");

	tcase_add_test(parse, test_parse_i64_reads_whole_base10_numbers);
	tcase_add_test(parse, test_parse_i64_bounds_are_inclusive);
	tcase_add_test(parse,
		       test_parse_i64_refuses_garbage_whitespace_and_overflow);
	tcase_add_test(parse,
		       test_parse_bool_knows_the_usual_words_in_any_case);
	tcase_add_test(parse,
		       test_parse_double_refuses_non_finite_and_out_of_range);
	suite_add_tcase(s, parse);

	tcase_add_test(misc, test_uuid_v4_has_the_version_and_variant_bits);
	tcase_add_test(misc, test_uuid_v4_values_are_unique);
	tcase_add_test(misc, test_hash_is_fnv1a_64_and_chains);
	tcase_add_test(misc, test_time_rfc3339_us_is_now_to_the_microsecond);
	tcase_add_test(misc,
		       test_a_forked_child_never_repeats_its_parents_uuids);
	tcase_add_test(misc, test_is_uuid_accepts_only_the_canonical_form);
	tcase_add_test(misc, test_consttime_eq_compares_content_and_length);
	tcase_add_test(misc, test_rfc3339_formats_utc_with_z);
	tcase_add_test(misc, test_rfc3339_matches_gmtime);
	tcase_add_test(misc, test_clocks_move_forward);
	tcase_add_test(misc, test_string_copies_bound_and_terminate);
	tcase_add_test(misc, test_allocators_return_usable_memory);
	tcase_add_test(misc, test_memzero_clears_bytes);
	tcase_add_test(misc, test_hex_digits_of_either_case_and_nothing_else);
	tcase_add_test(misc, test_u64_text_in_decimal_and_hex);
	tcase_add_test_raise_signal(misc, test_xcalloc_size_overflow_aborts,
				    SIGABRT);
	suite_add_tcase(s, misc);
	return s;
}

CM_TEST_MAIN(make_suite)
