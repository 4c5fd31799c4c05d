/* test_policy.c - canonical paths and the service policy table. */
#include "testutil.h"

#include "../../../services/vault-client/policy.h"

#include <stdio.h>
#include <string.h>

#define TA "11111111-2222-4333-8444-555555555555"
#define TB "99999999-2222-4333-8444-555555555555"

START_TEST(test_canonical_names_are_accepted_as_they_are)
{
	struct vc_path p;

	ck_assert_int_eq(vc_path_tenant(TA, "llm/openai", &p), 0);
	ck_assert_str_eq(p.name, "llm/openai");
	ck_assert_str_eq(p.owner, TA);
	ck_assert_int_eq(p.scope, VC_SCOPE_TENANT);
	ck_assert_int_eq(vc_path_tenant(TA, "a.b_c-d/x.1", &p), 0);
	ck_assert_int_eq(vc_path_tenant(TA, "tenants/" TA "/llm/x", &p), 0);
	ck_assert_str_eq(p.name, "llm/x");
}
END_TEST

START_TEST(test_traversal_absolute_and_odd_names_are_refused)
{
	static const char *const bad[] = {
		"",
		"/llm/x",
		"llm/x/",
		"llm//x",
		"..",
		"llm/../x",
		"./llm",
		"llm/.",
		"LLM/x",
		"llm/x y",
		"llm/x\n",
		"llm/\xc3\xa9",
		"a/b/c/d/e/f/g/h/i",
		"tenants/" TA,
		"tenants/" TA "/",
		"tenants/" TA "/../x",
		NULL,
	};
	struct vc_path p;
	char long_seg[80];
	int i;

	for (i = 0; bad[i]; i++)
		ck_assert_msg(vc_path_tenant(TA, bad[i], &p) == CM_EINVAL,
			      "accepted bad name #%d", i);
	memset(long_seg, 'a', 65);
	long_seg[65] = '\0';
	ck_assert_int_eq(vc_path_tenant(TA, long_seg, &p), CM_EINVAL);
	ck_assert_int_eq(vc_path_tenant("not-a-uuid", "llm/x", &p), CM_EINVAL);
	ck_assert_int_eq(vc_path_tenant(TA, NULL, &p), CM_EINVAL);
}
END_TEST

START_TEST(test_foreign_tenants_and_platform_paths_are_refused_apart)
{
	struct vc_path p;

	ck_assert_int_eq(vc_path_tenant(TA, "tenants/" TB "/llm/x", &p),
			 CM_EACCES);
	ck_assert_int_eq(vc_path_tenant(TA, "tenants/x/llm/x", &p), CM_EACCES);
	ck_assert_int_eq(vc_path_tenant(TA, "platform/brain/jwt", &p),
			 CM_EPERM);
	ck_assert_int_eq(vc_path_tenant(TA, "platform", &p), CM_EPERM);
}
END_TEST

START_TEST(test_platform_paths_name_a_service_then_a_name)
{
	struct vc_path p;
	char full[400];

	ck_assert_int_eq(vc_path_platform("crm/db_password", &p), 0);
	ck_assert_str_eq(p.owner, "crm");
	ck_assert_str_eq(p.name, "db_password");
	vc_path_full(&p, full, sizeof(full));
	ck_assert_str_eq(full, "platform/crm/db_password");
	ck_assert_int_eq(vc_path_platform("crm", &p), CM_EINVAL);
	ck_assert_int_eq(vc_path_platform("crm/", &p), CM_EINVAL);
	ck_assert_int_eq(vc_path_platform("../crm/x", &p), CM_EINVAL);
	ck_assert_int_eq(vc_path_platform("c.rm/x", &p), CM_EINVAL);
	ck_assert_int_eq(vc_path_platform("crm/../brain/x", &p), CM_EINVAL);
	ck_assert_int_eq(
		vc_path_platform("a-service-name-longer-than-31-chars/x", &p),
		CM_EINVAL);
}
END_TEST

START_TEST(test_the_policy_table_grants_only_what_it_lists)
{
	struct vc_path llm, tg, plat_crm, plat_brain;

	ck_assert_int_eq(vc_path_tenant(TA, "llm/openai", &llm), 0);
	ck_assert_int_eq(vc_path_tenant(TA, "telegram/bot", &tg), 0);
	ck_assert_int_eq(vc_path_platform("crm/db", &plat_crm), 0);
	ck_assert_int_eq(vc_path_platform("brain/jwt", &plat_brain), 0);
	ck_assert(vc_policy_allows("agents", &llm, VC_OP_READ));
	ck_assert(vc_policy_allows("agents", &llm, VC_OP_META));
	ck_assert(!vc_policy_allows("agents", &llm, VC_OP_WRITE));
	ck_assert(!vc_policy_allows("agents", &tg, VC_OP_READ));
	ck_assert(vc_policy_allows("telegram", &tg, VC_OP_READ));
	ck_assert(!vc_policy_allows("telegram", &llm, VC_OP_READ));
	ck_assert(vc_policy_allows("brain", &tg, VC_OP_DESTROY));
	ck_assert(!vc_policy_allows("cms", &llm, VC_OP_READ));
	ck_assert(!vc_policy_allows("", &llm, VC_OP_READ));
	ck_assert(!vc_policy_allows(NULL, &llm, VC_OP_READ));
	ck_assert(vc_policy_allows("crm", &plat_crm, VC_OP_READ));
	ck_assert(!vc_policy_allows("crm", &plat_crm, VC_OP_WRITE));
	ck_assert(!vc_policy_allows("crm", &plat_brain, VC_OP_READ));
	ck_assert(vc_policy_allows("brain", &plat_crm, VC_OP_WRITE));
}
END_TEST

START_TEST(test_a_pattern_covers_names_under_it_not_the_folder_itself)
{
	struct vc_path p;

	ck_assert_int_eq(vc_path_tenant(TA, "llm", &p), 0);
	ck_assert(!vc_policy_allows("agents", &p, VC_OP_READ));
	ck_assert_int_eq(vc_path_tenant(TA, "llmx/a", &p), 0);
	ck_assert(!vc_policy_allows("agents", &p, VC_OP_READ));
	ck_assert_int_eq(vc_path_tenant(TA, "llm/a/b", &p), 0);
	ck_assert(vc_policy_allows("agents", &p, VC_OP_READ));
}
END_TEST

START_TEST(test_listing_needs_the_list_right_and_a_valid_prefix)
{
	ck_assert(vc_prefix_valid(""));
	ck_assert(vc_prefix_valid("llm/"));
	ck_assert(!vc_prefix_valid("llm"));
	ck_assert(!vc_prefix_valid("../"));
	ck_assert(!vc_prefix_valid("/"));
	ck_assert(vc_policy_allows_list("brain", VC_SCOPE_TENANT, TA, ""));
	ck_assert(
		!vc_policy_allows_list("agents", VC_SCOPE_TENANT, TA, "llm/"));
	ck_assert(vc_policy_allows_list("brain", VC_SCOPE_PLATFORM, "crm", ""));
	ck_assert(!vc_policy_allows_list("crm", VC_SCOPE_PLATFORM, "crm", ""));
	ck_assert_str_eq(vc_op_name(VC_OP_DESTROY), "destroy");
	ck_assert_str_eq(vc_op_name(0), "unknown");
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("vault-client policy");
	TCase *tc = tcase_create("policy");

	tcase_add_test(tc, test_canonical_names_are_accepted_as_they_are);
	tcase_add_test(tc, test_traversal_absolute_and_odd_names_are_refused);
	tcase_add_test(
		tc, test_foreign_tenants_and_platform_paths_are_refused_apart);
	tcase_add_test(tc, test_platform_paths_name_a_service_then_a_name);
	tcase_add_test(tc, test_the_policy_table_grants_only_what_it_lists);
	tcase_add_test(
		tc, test_a_pattern_covers_names_under_it_not_the_folder_itself);
	tcase_add_test(tc,
		       test_listing_needs_the_list_right_and_a_valid_prefix);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
