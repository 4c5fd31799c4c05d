/* test_render.c - environment names of the template renderer. */
#include "testutil.h"

#include "../../../services/vault-client/render.h"

#include <string.h>

START_TEST(test_names_and_fields_become_upper_case_env_names)
{
	char out[64];

	ck_assert_int_eq(vc_render_env_name("db", "password", out, sizeof(out)),
			 0);
	ck_assert_str_eq(out, "DB_PASSWORD");
	ck_assert_int_eq(vc_render_env_name("smtp/relay.main", "api-key", out,
					    sizeof(out)),
			 0);
	ck_assert_str_eq(out, "SMTP_RELAY_MAIN_API_KEY");
	ck_assert_int_eq(vc_render_env_name("x", "Ünicode", out, sizeof(out)),
			 0);
	ck_assert_str_eq(out, "X___NICODE");
}
END_TEST

START_TEST(test_a_name_too_long_for_the_buffer_is_refused)
{
	char out[8];

	ck_assert_int_eq(vc_render_env_name("abcd", "efgh", out, sizeof(out)),
			 CM_E2BIG);
	ck_assert_int_eq(vc_render_env_name("ab", "cd", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "AB_CD");
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("vault-client render");
	TCase *tc = tcase_create("render");

	tcase_add_test(tc, test_names_and_fields_become_upper_case_env_names);
	tcase_add_test(tc, test_a_name_too_long_for_the_buffer_is_refused);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
