/* test_buf.c - the capped string builder and its sticky error. */
#include "common/buf.h"
#include "common/err.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "common/banned.h"

START_TEST(test_new_buffer_is_an_empty_string)
{
	struct cm_buf b = CM_BUF_INIT(16);

	ck_assert_str_eq(cm_buf_str(&b), "");
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(cm_buf_error(&b), 0);
	cm_buf_release(&b);
}
END_TEST

START_TEST(test_appends_concatenate)
{
	struct cm_buf b;

	cm_buf_init(&b, 0);
	cm_buf_puts(&b, "abc");
	cm_buf_putc(&b, '-');
	cm_buf_add(&b, "xyz!!", 3);
	cm_buf_add(&b, NULL, 0);
	cm_buf_printf(&b, "%d/%s", 42, "ok");
	ck_assert_str_eq(cm_buf_str(&b), "abc-xyz42/ok");
	ck_assert_uint_eq(b.len, 12);
	ck_assert_int_eq(cm_buf_error(&b), 0);
	cm_buf_release(&b);
}
END_TEST

START_TEST(test_binary_bytes_are_kept_with_their_length)
{
	struct cm_buf b = CM_BUF_INIT(16);

	cm_buf_add(&b, "a\0b", 3);
	ck_assert_uint_eq(b.len, 3);
	ck_assert_int_eq(memcmp(b.data, "a\0b", 4), 0);
	cm_buf_release(&b);
}
END_TEST

START_TEST(test_overflow_latches_error_and_keeps_prefix)
{
	struct cm_buf b = CM_BUF_INIT(8);

	cm_buf_puts(&b, "hello");
	cm_buf_puts(&b, "world");
	ck_assert_int_eq(cm_buf_error(&b), CM_E2BIG);
	ck_assert_str_eq(cm_buf_str(&b), "hello");
	/* later appends that would fit are ignored: the error is sticky */
	cm_buf_putc(&b, '!');
	cm_buf_printf(&b, "%d", 1);
	cm_buf_json_str(&b, "x");
	ck_assert_str_eq(cm_buf_str(&b), "hello");
	ck_assert_uint_eq(b.len, 5);
	ck_assert_int_eq(cm_buf_error(&b), CM_E2BIG);
	cm_buf_release(&b);
}
END_TEST

START_TEST(test_content_exactly_at_the_cap_fits)
{
	struct cm_buf b = CM_BUF_INIT(5);

	cm_buf_puts(&b, "hello");
	ck_assert_int_eq(cm_buf_error(&b), 0);
	ck_assert_str_eq(cm_buf_str(&b), "hello");
	cm_buf_putc(&b, '!');
	ck_assert_int_eq(cm_buf_error(&b), CM_E2BIG);
	ck_assert_str_eq(cm_buf_str(&b), "hello");
	cm_buf_release(&b);
}
END_TEST

START_TEST(test_printf_grows_the_buffer)
{
	struct cm_buf b = CM_BUF_INIT(0);
	char big[5000];
	int i;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cm_buf_printf(&b, "[%s]", big);
	ck_assert_uint_eq(b.len, sizeof(big) + 1);
	ck_assert_int_eq(b.data[0], '[');
	ck_assert_int_eq(b.data[b.len - 1], ']');
	ck_assert_uint_gt(b.alloc, b.len);
	for (i = 0; i < 1000; i++)
		cm_buf_printf(&b, "%04d", i);
	ck_assert_uint_eq(b.len, sizeof(big) + 1 + 4000);
	ck_assert_int_eq(strncmp(b.data + b.len - 8, "09980999", 8), 0);
	ck_assert_int_eq(cm_buf_error(&b), 0);
	cm_buf_release(&b);
}
END_TEST

START_TEST(test_printf_over_the_cap_latches_and_keeps_prefix)
{
	struct cm_buf b = CM_BUF_INIT(10);

	cm_buf_printf(&b, "%s", "12345");
	cm_buf_printf(&b, "%s", "678901");
	ck_assert_int_eq(cm_buf_error(&b), CM_E2BIG);
	ck_assert_str_eq(cm_buf_str(&b), "12345");
	cm_buf_release(&b);
}
END_TEST

START_TEST(test_json_str_escapes_quotes_backslashes_and_controls)
{
	struct cm_buf b = CM_BUF_INIT(0);

	cm_buf_json_str(&b, "a\"b\\c\nd\re\tf\x01g\x1fh");
	ck_assert_str_eq(cm_buf_str(&b), "\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g"
					 "\\u001fh\"");
	cm_buf_reset(&b);
	cm_buf_json_str(&b, NULL);
	ck_assert_str_eq(cm_buf_str(&b), "\"\"");
	cm_buf_reset(&b);
	cm_buf_json_str(&b, "caf\xc3\xa9 /");
	ck_assert_str_eq(cm_buf_str(&b), "\"caf\xc3\xa9 /\"");
	cm_buf_release(&b);
}
END_TEST

START_TEST(test_json_str_round_trips_through_a_json_parser)
{
	static const char nasty[] = "q\"uote\\ nl\n cr\r tab\t bel\x07 "
				    "esc\x1b del\x7f end";
	struct cm_buf b = CM_BUF_INIT(0);
	cJSON *json;

	cm_buf_json_str(&b, nasty);
	json = cJSON_Parse(cm_buf_str(&b));
	ck_assert_msg(cJSON_IsString(json), "not JSON: %s", cm_buf_str(&b));
	ck_assert_str_eq(json->valuestring, nasty);
	cJSON_Delete(json);
	cm_buf_release(&b);
}
END_TEST

START_TEST(test_detach_hands_out_the_string_and_empties_the_buffer)
{
	struct cm_buf b = CM_BUF_INIT(32);
	size_t len = 0;
	char *s;

	cm_buf_puts(&b, "owned");
	s = cm_buf_detach(&b, &len);
	ck_assert_str_eq(s, "owned");
	ck_assert_uint_eq(len, 5);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.cap, 32);
	free(s);
	cm_buf_puts(&b, "again");
	ck_assert_str_eq(cm_buf_str(&b), "again");
	cm_buf_release(&b);
}
END_TEST

START_TEST(test_detach_of_an_empty_buffer_is_an_empty_string)
{
	struct cm_buf b = CM_BUF_INIT(8);
	char *s = cm_buf_detach(&b, NULL);

	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(s, "");
	free(s);
}
END_TEST

START_TEST(test_detach_clears_a_latched_error)
{
	struct cm_buf b = CM_BUF_INIT(2);
	char *s;

	cm_buf_puts(&b, "abc");
	ck_assert_int_eq(cm_buf_error(&b), CM_E2BIG);
	s = cm_buf_detach(&b, NULL);
	ck_assert_str_eq(s, "");
	ck_assert_int_eq(cm_buf_error(&b), 0);
	free(s);
}
END_TEST

START_TEST(test_reset_clears_content_and_error_but_keeps_storage)
{
	struct cm_buf b = CM_BUF_INIT(4);
	char *storage;

	cm_buf_puts(&b, "ab");
	cm_buf_puts(&b, "cdef");
	ck_assert_int_eq(cm_buf_error(&b), CM_E2BIG);
	storage = b.data;
	ck_assert_ptr_nonnull(storage);
	cm_buf_reset(&b);
	ck_assert_int_eq(cm_buf_error(&b), 0);
	ck_assert_str_eq(cm_buf_str(&b), "");
	ck_assert_ptr_eq(b.data, storage);
	cm_buf_puts(&b, "wxyz");
	ck_assert_str_eq(cm_buf_str(&b), "wxyz");
	cm_buf_release(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.cap, 4);
}
END_TEST

START_TEST(test_zero_cap_means_the_large_default)
{
	struct cm_buf b = CM_BUF_INIT(0);
	size_t n = 1 << 20;
	char *chunk = malloc(n);

	ck_assert_ptr_nonnull(chunk);
	memset(chunk, 'z', n);
	cm_buf_add(&b, chunk, n);
	cm_buf_add(&b, chunk, n);
	ck_assert_int_eq(cm_buf_error(&b), 0);
	ck_assert_uint_eq(b.len, 2 * n);
	free(chunk);
	cm_buf_release(&b);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("buf");
	TCase *tc = tcase_create("buf");

	tcase_add_test(tc, test_new_buffer_is_an_empty_string);
	tcase_add_test(tc, test_appends_concatenate);
	tcase_add_test(tc, test_binary_bytes_are_kept_with_their_length);
	tcase_add_test(tc, test_overflow_latches_error_and_keeps_prefix);
	tcase_add_test(tc, test_content_exactly_at_the_cap_fits);
	tcase_add_test(tc, test_printf_grows_the_buffer);
	tcase_add_test(tc, test_printf_over_the_cap_latches_and_keeps_prefix);
	tcase_add_test(tc,
		       test_json_str_escapes_quotes_backslashes_and_controls);
	tcase_add_test(tc, test_json_str_round_trips_through_a_json_parser);
	tcase_add_test(tc,
		       test_detach_hands_out_the_string_and_empties_the_buffer);
	tcase_add_test(tc, test_detach_of_an_empty_buffer_is_an_empty_string);
	tcase_add_test(tc, test_detach_clears_a_latched_error);
	tcase_add_test(tc,
		       test_reset_clears_content_and_error_but_keeps_storage);
	tcase_add_test(tc, test_zero_cap_means_the_large_default);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
