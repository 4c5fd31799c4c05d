/* test_policy.c - canonical paths and the service policy table. */
#include "testutil.h"

#include "common/auth.h"
#include "common/mem.h"

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

/* Each failure has its own answer, the same on every route. */
START_TEST(test_each_path_failure_has_its_answer)
{
	const char *code, *msg;

	ck_assert_int_eq(vc_path_refusal(CM_EACCES, &code, &msg), 403);
	ck_assert_str_eq(code, "foreign_tenant");
	ck_assert_int_eq(vc_path_refusal(CM_EPERM, &code, &msg), 403);
	ck_assert_str_eq(code, "platform_path");
	ck_assert_int_eq(vc_path_refusal(CM_EINVAL, &code, &msg), 400);
	ck_assert_str_eq(code, "invalid_path");
	ck_assert_ptr_nonnull(strstr(msg, "segments"));
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

/* A principal as libcommon makes it from a gateway token. */
static struct cm_principal
gateway_user(const char *r1, const char *r2, bool api_key)
{
	struct cm_principal p;

	memset(&p, 0, sizeof(p));
	cm_strlcpy(p.sub, "u-1", sizeof(p.sub));
	cm_strlcpy(p.tenant_id, TA, sizeof(p.tenant_id));
	cm_strlcpy(p.via, "brain", sizeof(p.via));
	if (r1)
		cm_strlcpy(p.roles[p.nroles++], r1, CM_ROLE_LEN);
	if (r2)
		cm_strlcpy(p.roles[p.nroles++], r2, CM_ROLE_LEN);
	p.is_api_key = api_key;
	return p;
}

static bool
may(const struct cm_principal *p, enum vc_user_op op)
{
	return vc_user_refusal(p, op) == NULL;
}

START_TEST(test_owners_and_admins_do_everything_managers_only_look)
{
	struct cm_principal owner = gateway_user("owner", NULL, false);
	struct cm_principal admin = gateway_user("user", "admin", false);
	struct cm_principal mgr = gateway_user("manager", NULL, false);
	struct cm_principal user = gateway_user("user", "readonly", false);
	int op;

	for (op = VC_USER_LIST; op <= VC_USER_AUDIT; op++) {
		ck_assert(may(&owner, op));
		ck_assert(may(&admin, op));
		ck_assert_str_eq(vc_user_refusal(&user, op), "forbidden");
	}
	ck_assert(may(&mgr, VC_USER_LIST));
	ck_assert(may(&mgr, VC_USER_META));
	ck_assert_str_eq(vc_user_refusal(&mgr, VC_USER_WRITE), "forbidden");
	ck_assert_str_eq(vc_user_refusal(&mgr, VC_USER_DELETE), "forbidden");
	ck_assert_str_eq(vc_user_refusal(&mgr, VC_USER_REVEAL), "forbidden");
	ck_assert_str_eq(vc_user_refusal(&mgr, VC_USER_AUDIT), "forbidden");
	ck_assert_str_eq(vc_user_op_name(VC_USER_REVEAL), "reveal");
}
END_TEST

START_TEST(test_api_keys_get_their_scopes_and_never_a_value)
{
	struct cm_principal r = gateway_user("secrets:read", NULL, true);
	struct cm_principal w = gateway_user("secrets:write", NULL, true);
	struct cm_principal o = gateway_user("owner", "crm:write", true);

	ck_assert(may(&r, VC_USER_LIST) && may(&r, VC_USER_META));
	ck_assert_str_eq(vc_user_refusal(&r, VC_USER_WRITE),
			 "insufficient_scope");
	ck_assert(may(&w, VC_USER_LIST) && may(&w, VC_USER_WRITE) &&
		  may(&w, VC_USER_DELETE));
	ck_assert_str_eq(vc_user_refusal(&w, VC_USER_REVEAL),
			 "insufficient_scope");
	ck_assert_str_eq(vc_user_refusal(&w, VC_USER_AUDIT),
			 "insufficient_scope");
	/* a key never counts as its creator's role */
	ck_assert_str_eq(vc_user_refusal(&o, VC_USER_LIST),
			 "insufficient_scope");
}
END_TEST

START_TEST(test_only_users_forwarded_by_brain_are_served)
{
	struct cm_principal direct = gateway_user("owner", NULL, false);
	struct cm_principal svc = gateway_user("owner", NULL, false);
	struct cm_principal other = gateway_user("owner", NULL, false);
	struct cm_principal none = gateway_user("owner", NULL, false);

	direct.via[0] = '\0';
	svc.is_service = true;
	cm_strlcpy(other.via, "crm", sizeof(other.via));
	none.tenant_id[0] = '\0';
	ck_assert_str_eq(vc_user_refusal(&direct, VC_USER_LIST),
			 "not_via_gateway");
	ck_assert_str_eq(vc_user_refusal(&svc, VC_USER_LIST),
			 "not_via_gateway");
	ck_assert_str_eq(vc_user_refusal(&other, VC_USER_LIST),
			 "not_via_gateway");
	ck_assert_str_eq(vc_user_refusal(&none, VC_USER_LIST),
			 "not_via_gateway");
	ck_assert_str_eq(vc_user_refusal(NULL, VC_USER_LIST),
			 "not_via_gateway");
}
END_TEST

START_TEST(test_transit_keys_belong_to_the_service_they_are_named_after)
{
	ck_assert(vc_transit_allows("crm", "crm"));
	ck_assert(vc_transit_allows("crm", "crm-notes"));
	ck_assert(vc_transit_allows("agents", "agents-llm_1"));
	ck_assert(!vc_transit_allows("crm", "crm-"));
	ck_assert(!vc_transit_allows("crm", "crmx"));
	ck_assert(!vc_transit_allows("crm", "agents"));
	ck_assert(!vc_transit_allows("brain", "crm"));
	ck_assert(!vc_transit_allows("crm", "crm/x"));
	ck_assert(!vc_transit_allows("crm", "crm-a.b"));
	ck_assert(!vc_transit_allows("", "crm"));
	ck_assert(!vc_transit_key_valid(""));
	ck_assert(!vc_transit_key_valid("CRM"));
	ck_assert(!vc_transit_key_valid("a b"));
	ck_assert(!vc_transit_key_valid(NULL));
	ck_assert(vc_transit_key_valid("a_b-c9"));
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
	tcase_add_test(tc, test_each_path_failure_has_its_answer);
	tcase_add_test(tc, test_platform_paths_name_a_service_then_a_name);
	tcase_add_test(tc, test_the_policy_table_grants_only_what_it_lists);
	tcase_add_test(
		tc, test_a_pattern_covers_names_under_it_not_the_folder_itself);
	tcase_add_test(tc,
		       test_listing_needs_the_list_right_and_a_valid_prefix);
	tcase_add_test(tc,
		       test_owners_and_admins_do_everything_managers_only_look);
	tcase_add_test(tc, test_api_keys_get_their_scopes_and_never_a_value);
	tcase_add_test(tc, test_only_users_forwarded_by_brain_are_served);
	tcase_add_test(
		tc,
		test_transit_keys_belong_to_the_service_they_are_named_after);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
