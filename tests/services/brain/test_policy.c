/*
 * test_policy.c - brain's pure rules: the roles-to-permissions table, tier
 * limits, name validation, tenant input, password hashing and tokens.
 */
#include "testutil.h"

#include "../../../services/brain/brain.h"

#include "common/json.h"
#include "common/mem.h"

#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

START_TEST(test_roles_map_to_permissions_by_one_table)
{
	struct cm_principal p = { 0 };

	ck_assert(brain_role_perms("owner") & BRAIN_PERM_MEMBERS_WRITE);
	ck_assert(brain_role_perms("admin") & BRAIN_PERM_TENANT_WRITE);
	ck_assert(!(brain_role_perms("manager") & BRAIN_PERM_TENANT_WRITE));
	ck_assert(brain_role_perms("manager") & BRAIN_PERM_MEMBERS_READ);
	ck_assert_uint_eq(brain_role_perms("user"), BRAIN_PERM_TENANT_READ);
	ck_assert_uint_eq(brain_role_perms("readonly"), BRAIN_PERM_TENANT_READ);
	ck_assert_uint_eq(brain_role_perms("root"), 0);
	ck_assert_uint_eq(brain_role_perms(NULL), 0);
	ck_assert(!(brain_role_perms("owner") & BRAIN_PERM_PLATFORM));
	ck_assert(brain_role_perms("super_admin") & BRAIN_PERM_PLATFORM);
	ck_assert(brain_role_valid("readonly"));
	ck_assert(!brain_role_valid("super_admin")); /* not a member role */
	ck_assert_int_gt(brain_role_rank("owner"), brain_role_rank("admin"));
	cm_strlcpy(p.roles[0], "user", CM_ROLE_LEN);
	cm_strlcpy(p.roles[1], "manager", CM_ROLE_LEN);
	p.nroles = 2;
	ck_assert(brain_principal_perms(&p) & BRAIN_PERM_USAGE_READ);
	p.is_service = true;
	ck_assert_uint_eq(brain_principal_perms(&p), 0);
}
END_TEST

START_TEST(test_tier_defaults_fill_limits_unless_overridden)
{
	cJSON *ov = cJSON_Parse("{\"max_users\":7}");
	cJSON *l = brain_limits_effective("starter", ov);

	ck_assert_int_eq(cJSON_GetObjectItem(l, "max_users")->valueint, 7);
	ck_assert_int_eq(cJSON_GetObjectItem(l, "max_leads")->valueint, 5000);
	cJSON_Delete(l);
	l = brain_limits_effective("enterprise", NULL);
	ck_assert_int_eq(cJSON_GetObjectItem(l, "max_users")->valueint, 1000);
	cJSON_Delete(l);
	cJSON_Delete(ov);
	ck_assert_int_eq(brain_tier_index("free"), 0);
	ck_assert_int_eq(brain_tier_index("gold"), -1);
}
END_TEST

START_TEST(test_slugs_domains_and_emails_are_validated)
{
	ck_assert(brain_slug_valid("acme-1"));
	ck_assert(!brain_slug_valid("-acme"));
	ck_assert(!brain_slug_valid("acme-"));
	ck_assert(!brain_slug_valid("Acme"));
	ck_assert(!brain_slug_valid(""));
	ck_assert(brain_domain_valid("shop.example.com"));
	ck_assert(!brain_domain_valid("localhost"));
	ck_assert(!brain_domain_valid("Shop.example.com"));
	ck_assert(!brain_domain_valid("a..b.com"));
	ck_assert(!brain_domain_valid("-a.b.com"));
	ck_assert(!brain_domain_valid("a-.b.com"));
	ck_assert(brain_email_valid("a@b.c"));
	ck_assert(!brain_email_valid("a b@c.d"));
	ck_assert(!brain_email_valid("@c.d"));
	ck_assert(!brain_email_valid("a@b@c"));
}
END_TEST

/* Parse text as a tenant body; the return code. */
static int
parse(const char *text, bool admin, struct brain_tenant_input *in,
      char errbuf[CM_ERRBUF_LEN])
{
	cJSON *j = cJSON_Parse(text);
	int rc = brain_tenant_input_parse(j, admin, in, errbuf);

	/* borrowed strings must not outlive j: keep only the codes here */
	brain_tenant_input_release(in);
	cJSON_Delete(j);
	return rc;
}

START_TEST(test_tenant_input_accepts_known_fields_and_names_bad_ones)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct brain_tenant_input in;
	cJSON *j = cJSON_Parse(
		"{\"slug\":\"acme\",\"name\":\"Acme\",\"subscription_tier\":"
		"\"starter\",\"services_enabled\":[\"crm\",\"images\"],"
		"\"limits\":{\"max_users\":9},\"branding\":{\"primary_color\":"
		"\"#A0b1C2\",\"logo_url\":\"https://x.test/l.png\"},"
		"\"settings\":{\"timezone\":\"Europe/Berlin\",\"currency\":"
		"\"EUR\",\"language\":\"de-DE\"},\"primary_domain\":null}");

	ck_assert_int_eq(brain_tenant_input_parse(j, true, &in, errbuf), 0);
	ck_assert_str_eq(in.slug, "acme");
	ck_assert_str_eq(in.tier, "starter");
	ck_assert_str_eq(in.services, "{crm,images}");
	ck_assert_ptr_nonnull(strstr(in.limits, "\"max_users\":9"));
	ck_assert(in.clear_primary_domain);
	brain_tenant_input_release(&in);
	cJSON_Delete(j);
	ck_assert_int_eq(parse("{\"bogus\":1}", true, &in, errbuf), CM_EINVAL);
	ck_assert_ptr_nonnull(strstr(errbuf, "bogus"));
	ck_assert_int_eq(
		parse("{\"subscription_tier\":\"free\"}", false, &in, errbuf),
		CM_EPERM);
	ck_assert_int_eq(parse("{\"slug\":\"Bad Slug\"}", true, &in, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(parse("{\"name\":\"\"}", true, &in, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(parse("{\"status\":\"suspended\"}", true, &in, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(parse("{\"services_enabled\":[\"crm\",\"crm\"]}", true,
			       &in, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(
		parse("{\"limits\":{\"max_users\":-1}}", true, &in, errbuf),
		CM_EINVAL);
	ck_assert_int_eq(
		parse("{\"limits\":{\"max_cats\":1}}", true, &in, errbuf),
		CM_EINVAL);
	ck_assert_int_eq(parse("{\"branding\":{\"primary_color\":\"red\"}}",
			       false, &in, errbuf),
			 CM_EINVAL);
	ck_assert_ptr_nonnull(strstr(errbuf, "branding.primary_color"));
	ck_assert_int_eq(parse("{\"branding\":{\"logo_url\":\"javascript:x\"}}",
			       false, &in, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(parse("{\"settings\":{\"currency\":\"eur\"}}", false,
			       &in, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(parse("{\"settings\":{\"language\":\"english\"}}",
			       false, &in, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(
		parse("{\"primary_domain\":\"NOPE\"}", false, &in, errbuf),
		CM_EINVAL);
	ck_assert_int_eq(parse("[1]", true, &in, errbuf), CM_EINVAL);
}
END_TEST

START_TEST(test_password_hash_verifies_only_the_right_password)
{
	char h[BRAIN_HASH_LEN], h2[BRAIN_HASH_LEN];

	ck_assert_int_eq(brain_password_hash("s3cret-password", 1000, h), 0);
	ck_assert(!strncmp(h, "pbkdf2_sha256$1000$", 19));
	ck_assert(brain_password_verify("s3cret-password", h));
	ck_assert(!brain_password_verify("s3cret-passwore", h));
	ck_assert_int_eq(brain_password_hash("s3cret-password", 1000, h2), 0);
	ck_assert_str_ne(h, h2); /* salted */
	ck_assert(!brain_password_verify("x", "plain"));
	ck_assert(!brain_password_verify("x", "pbkdf2_sha256$10$AAAA$AAAA"));
	ck_assert(!brain_password_verify("x", "pbkdf2_sha256$1000$!!$AAAA"));
	ck_assert(!brain_password_verify("x", "pbkdf2_sha256$1000"));
}
END_TEST

START_TEST(test_random_tokens_and_digests)
{
	char a[BRAIN_TOKEN_LEN], b[BRAIN_TOKEN_LEN], small[10];
	char hex[BRAIN_SHA256_HEX];

	ck_assert_int_eq(brain_random_token("bzr_", a, sizeof(a)), 0);
	ck_assert_int_eq(brain_random_token("bzr_", b, sizeof(b)), 0);
	ck_assert_uint_eq(strlen(a), 4 + 43);
	ck_assert_str_ne(a, b);
	ck_assert_int_eq(brain_random_token("bzr_", small, sizeof(small)),
			 CM_E2BIG);
	brain_sha256_hex("abc", hex);
	ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9"
			      "cb410ff61f20015ad");
}
END_TEST

/* Parse a scopes array given as JSON text; the return code. */
static int
scopes(const char *text, char **lit)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *j = cJSON_Parse(text);
	int rc;

	*lit = NULL;
	rc = brain_scopes_parse(j, lit, errbuf);
	cJSON_Delete(j);
	return rc;
}

START_TEST(test_api_key_scopes_are_distinct_known_service_modes)
{
	char *lit;
	struct cm_principal p = { 0 };

	ck_assert_int_eq(scopes("[\"brain:read\",\"crm:write\"]", &lit), 0);
	ck_assert_str_eq(lit, "{brain:read,crm:write}");
	free(lit);
	ck_assert_int_eq(scopes("[]", &lit), CM_EINVAL);
	ck_assert_int_eq(scopes("[\"crm:read\",\"crm:read\"]", &lit),
			 CM_EINVAL);
	ck_assert_int_eq(scopes("[\"crm:admin\"]", &lit), CM_EINVAL);
	ck_assert_int_eq(scopes("[\"root:read\"]", &lit), CM_EINVAL);
	ck_assert_int_eq(scopes("[\"crm\"]", &lit), CM_EINVAL);
	ck_assert_int_eq(scopes("[1]", &lit), CM_EINVAL);
	ck_assert_int_eq(scopes("[\"brain:read\",\"brain:write\",\"crm:read\","
				"\"crm:write\","
				"\"cms:read\",\"cms:write\",\"images:read\","
				"\"images:write\",\"telegram:read\"]",
				&lit),
			 CM_EINVAL);
	ck_assert_ptr_null(lit);
	/* scopes as roles: brain:read reads, never writes or manages */
	cm_strlcpy(p.roles[0], "brain:read", CM_ROLE_LEN);
	p.nroles = 1;
	ck_assert(brain_principal_perms(&p) & BRAIN_PERM_TENANT_READ);
	ck_assert(!(brain_principal_perms(&p) & BRAIN_PERM_TENANT_WRITE));
	ck_assert(!(brain_principal_perms(&p) & BRAIN_PERM_KEYS_WRITE));
	ck_assert(!brain_role_valid("brain:read"));
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("brain_policy");
	TCase *tc = tcase_create("policy");

	tcase_add_test(tc, test_roles_map_to_permissions_by_one_table);
	tcase_add_test(tc, test_tier_defaults_fill_limits_unless_overridden);
	tcase_add_test(tc, test_slugs_domains_and_emails_are_validated);
	tcase_add_test(
		tc, test_tenant_input_accepts_known_fields_and_names_bad_ones);
	tcase_add_test(tc, test_password_hash_verifies_only_the_right_password);
	tcase_add_test(tc, test_random_tokens_and_digests);
	tcase_add_test(tc,
		       test_api_key_scopes_are_distinct_known_service_modes);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
