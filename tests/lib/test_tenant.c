/* test_tenant.c - the pure tenant decision and host parsing. */
#include "testutil.h"

#include "common/tenant.h"

#include <string.h>

#define A "11111111-1111-4111-8111-111111111111"
#define B "22222222-2222-4222-8222-222222222222"

static struct cm_tenant_decision
decide(const char *token, const char *header, bool service, const char *host,
       bool tenant_host)
{
	struct cm_tenant_claim c = { token, header, service, host,
				     tenant_host };
	struct cm_tenant_decision d;

	cm_tenant_decide(&c, &d);
	return d;
}

START_TEST(test_each_source_alone_names_the_tenant)
{
	struct cm_tenant_decision d = decide(A, NULL, false, NULL, false);

	ck_assert_int_eq(d.status, 0);
	ck_assert_str_eq(d.tenant_id, A);
	ck_assert_int_eq(d.source, CM_TSRC_TOKEN);
	d = decide(NULL, A, true, NULL, false);
	ck_assert_int_eq(d.status, 0);
	ck_assert_int_eq(d.source, CM_TSRC_HEADER);
	d = decide(NULL, NULL, false, B, true);
	ck_assert_int_eq(d.status, 0);
	ck_assert_str_eq(d.tenant_id, B);
	ck_assert_int_eq(d.source, CM_TSRC_HOST);
}
END_TEST

START_TEST(test_header_without_service_token_is_ignored)
{
	struct cm_tenant_decision d = decide(NULL, A, false, NULL, false);

	ck_assert_int_eq(d.status, 400);
	ck_assert_str_eq(d.code, "tenant_required");
	d = decide(A, B, false, NULL, false);
	ck_assert_int_eq(d.status, 0);
	ck_assert_str_eq(d.tenant_id, A);
}
END_TEST

START_TEST(test_disagreeing_sources_are_a_mismatch)
{
	struct cm_tenant_decision d = decide(A, NULL, false, B, true);

	ck_assert_int_eq(d.status, 403);
	ck_assert_str_eq(d.code, "tenant_mismatch");
	d = decide(NULL, A, true, B, true);
	ck_assert_str_eq(d.code, "tenant_mismatch");
	d = decide(A, B, true, NULL, false);
	ck_assert_str_eq(d.code, "tenant_mismatch");
}
END_TEST

START_TEST(test_agreeing_sources_pass_case_insensitively)
{
	struct cm_tenant_decision d = decide(
		A, NULL, false, "11111111-1111-4111-8111-111111111111", true);

	ck_assert_int_eq(d.status, 0);
	d = decide("AAAAAAAA-1111-4111-8111-111111111111", NULL, false,
		   "aaaaaaaa-1111-4111-8111-111111111111", true);
	ck_assert_int_eq(d.status, 0);
}
END_TEST

START_TEST(test_unknown_tenant_host_and_bad_header_are_refused)
{
	struct cm_tenant_decision d = decide(A, NULL, false, NULL, true);

	ck_assert_int_eq(d.status, 404);
	ck_assert_str_eq(d.code, "tenant_not_found");
	d = decide(NULL, "not-a-uuid", true, NULL, false);
	ck_assert_int_eq(d.status, 400);
	ck_assert_str_eq(d.code, "invalid_tenant_id");
	d = decide(NULL, NULL, false, NULL, false);
	ck_assert_str_eq(d.code, "tenant_required");
}
END_TEST

START_TEST(test_host_slug_accepts_tenant_subdomains_only)
{
	char slug[64];

	ck_assert(cm_tenant_host_slug("acme.bz.test", "bz.test", slug));
	ck_assert_str_eq(slug, "acme");
	ck_assert(!cm_tenant_host_slug("api.bz.test", "bz.test", slug));
	ck_assert(!cm_tenant_host_slug("admin.bz.test", "bz.test", slug));
	ck_assert(!cm_tenant_host_slug("bz.test", "bz.test", slug));
	ck_assert(!cm_tenant_host_slug("a.b.bz.test", "bz.test", slug));
	ck_assert(!cm_tenant_host_slug("-x.bz.test", "bz.test", slug));
	ck_assert(!cm_tenant_host_slug("acmebz.test", "bz.test", slug));
	ck_assert(!cm_tenant_host_slug("acme.evil.test", "bz.test", slug));
	ck_assert(!cm_tenant_host_slug("acme_1.bz.test", "bz.test", slug));
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("tenant");
	TCase *tc = tcase_create("decide");

	tcase_add_test(tc, test_each_source_alone_names_the_tenant);
	tcase_add_test(tc, test_header_without_service_token_is_ignored);
	tcase_add_test(tc, test_disagreeing_sources_are_a_mismatch);
	tcase_add_test(tc, test_agreeing_sources_pass_case_insensitively);
	tcase_add_test(tc, test_unknown_tenant_host_and_bad_header_are_refused);
	tcase_add_test(tc, test_host_slug_accepts_tenant_subdomains_only);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
