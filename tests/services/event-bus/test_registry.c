/* test_registry.c - the event type registry and its JSON Schema subset. */
#include "../../../services/event-bus/evbus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "testutil.h"
#include "common/banned.h"

static struct bus_registry reg;

static void
load_real(void)
{
	char errbuf[CM_ERRBUF_LEN] = "";

	ck_assert_msg(bus_registry_load("proto/events/registry.json", &reg,
					errbuf) == 0,
		      "%s", errbuf);
}

static void
unload(void)
{
	bus_registry_release(&reg);
}

static cJSON *
env_with(const char *type, const char *data)
{
	cJSON *env = cm_bus_envelope_new(type, "crm", "lead", "1",
					 cJSON_Parse(data));

	ck_assert_ptr_nonnull(env);
	return env;
}

static int
check(const char *type, const char *data, char errbuf[CM_ERRBUF_LEN])
{
	cJSON *env = env_with(type, data);
	int rc = bus_registry_check(&reg, env, errbuf);

	cJSON_Delete(env);
	return rc;
}

START_TEST(test_the_shipped_registry_loads_and_covers_every_domain)
{
	static const char *const want[] = {
		"tenant.created",
		"lead.created",
		"deal.won",
		"page.published",
		"agent.run_started",
		"approval.granted",
		"workflow.completed",
		"secret.rotated",
		"security.login_failed",
		"system.health_changed",
		"billing.limit_exceeded",
		NULL,
	};
	int i;

	for (i = 0; want[i]; i++)
		ck_assert_msg(cJSON_GetObjectItem(reg.types, want[i]), "%s",
			      want[i]);
}
END_TEST

/* The lookup index (sorted, bsearch) finds every registered type - the
   first, the last, each one - and no other. */
START_TEST(test_every_registered_type_is_found_and_no_other)
{
	char errbuf[CM_ERRBUF_LEN], name[80];
	const cJSON *it;
	cJSON *env;
	size_t n = 0;

	cJSON_ArrayForEach(it, reg.types)
	{
		env = env_with(it->string, "{}");
		errbuf[0] = '\0';
		ck_assert_msg(bus_registry_check(&reg, env, errbuf) !=
				      CM_ENOENT,
			      "%s: %s", it->string, errbuf);
		cJSON_Delete(env);
		snprintf(name, sizeof(name), "%sx", it->string);
		if (!cJSON_GetObjectItemCaseSensitive(reg.types, name))
			ck_assert_int_eq(check(name, "{}", errbuf), CM_ENOENT);
		n++;
	}
	ck_assert_uint_eq(n, reg.ntypes);
	ck_assert_int_eq(check("aaa.first", "{}", errbuf), CM_ENOENT);
	ck_assert_int_eq(check("zzz.last", "{}", errbuf), CM_ENOENT);
}
END_TEST

START_TEST(test_a_valid_event_passes_and_bad_data_is_named_by_path)
{
	char e[CM_ERRBUF_LEN] = "";
	char ok[128];
	char id[37];

	ck_assert_int_eq(cm_uuid_v4(id), 0);
	snprintf(ok, sizeof(ok), "{\"lead_id\":\"%s\",\"score\":3}", id);
	ck_assert_msg(check("lead.created", ok, e) == 0, "%s", e);
	ck_assert_int_eq(check("lead.nope", "{}", e), CM_ENOENT);
	ck_assert_ptr_nonnull(strstr(e, "unknown event type 'lead.nope'"));
	ck_assert_int_eq(check("lead.created", "{}", e), CM_EINVAL);
	ck_assert_str_eq(e, "data.lead_id: is required");
	ck_assert_int_eq(check("lead.created", "{\"lead_id\":\"x\"}", e),
			 CM_EINVAL);
	ck_assert_str_eq(e, "data.lead_id: must be a uuid");
	snprintf(ok, sizeof(ok), "{\"lead_id\":\"%s\",\"score\":-1}", id);
	ck_assert_int_eq(check("lead.created", ok, e), CM_EINVAL);
	ck_assert_str_eq(e, "data.score: is out of range");
	snprintf(ok, sizeof(ok), "{\"lead_id\":\"%s\",\"score\":1.5}", id);
	ck_assert_int_eq(check("lead.created", ok, e), CM_EINVAL);
	ck_assert_str_eq(e, "data.score: must be of type integer");
	snprintf(ok, sizeof(ok), "{\"lead_id\":\"%s\",\"zz\":1}", id);
	ck_assert_int_eq(check("lead.created", ok, e), CM_EINVAL);
	ck_assert_str_eq(e, "data.zz: is not an allowed field");
	ck_assert_int_eq(check("system.health_changed",
			       "{\"service\":\"crm\",\"dependency\":\"pg\","
			       "\"status\":\"sideways\"}",
			       e),
			 CM_EINVAL);
	ck_assert_str_eq(e, "data.status: is not one of the allowed values");
	ck_assert_int_eq(check("system.maintenance",
			       "{\"message\":\"m\",\"starts_at\":\"soon\"}", e),
			 CM_EINVAL);
	ck_assert_str_eq(e, "data.starts_at: must be an RFC 3339 time");
}
END_TEST

START_TEST(test_an_unregistered_version_is_refused)
{
	char e[CM_ERRBUF_LEN] = "";
	cJSON *env = env_with("system.maintenance", "{\"message\":\"m\"}");

	cJSON_ReplaceItemInObject(env, "event_version", cJSON_CreateNumber(2));
	ck_assert_int_eq(bus_registry_check(&reg, env, e), CM_EINVAL);
	ck_assert_ptr_nonnull(strstr(e, "event_version 2"));
	cJSON_Delete(env);
}
END_TEST

START_TEST(test_schema_subset_checks_arrays_lengths_and_type_unions)
{
	char e[CM_ERRBUF_LEN] = "";
	cJSON *s = cJSON_Parse("{\"type\":\"array\",\"maxItems\":2,"
			       "\"items\":{\"type\":[\"string\",\"null\"],"
			       "\"maxLength\":3,\"minLength\":1}}");
	cJSON *v;

	v = cJSON_Parse("[\"abc\",null]");
	ck_assert_int_eq(bus_schema_check(s, v, "x", e), 0);
	cJSON_Delete(v);
	v = cJSON_Parse("[\"abcd\"]");
	ck_assert_int_eq(bus_schema_check(s, v, "x", e), CM_EINVAL);
	ck_assert_str_eq(e, "x[0]: is longer than 3 bytes");
	cJSON_Delete(v);
	v = cJSON_Parse("[\"\"]");
	ck_assert_int_eq(bus_schema_check(s, v, "x", e), CM_EINVAL);
	ck_assert_str_eq(e, "x[0]: is too short");
	cJSON_Delete(v);
	v = cJSON_Parse("[1]");
	ck_assert_int_eq(bus_schema_check(s, v, "x", e), CM_EINVAL);
	ck_assert_str_eq(e, "x[0]: has the wrong type");
	cJSON_Delete(v);
	v = cJSON_Parse("[\"a\",\"b\",\"c\"]");
	ck_assert_int_eq(bus_schema_check(s, v, "x", e), CM_EINVAL);
	ck_assert_str_eq(e, "x: has too many items");
	cJSON_Delete(v);
	cJSON_Delete(s);
}
END_TEST

START_TEST(test_a_broken_or_missing_registry_is_refused)
{
	struct bus_registry r;
	char e[CM_ERRBUF_LEN] = "";

	ck_assert_int_eq(bus_registry_load("/nonexistent/registry.json", &r, e),
			 CM_ENOENT);
	ck_assert_int_eq(bus_registry_parse("{", 1, &r, e), CM_EINVAL);
	ck_assert_int_eq(bus_registry_parse("{\"types\":{}}", 12, &r, e),
			 CM_EINVAL);
	ck_assert_int_eq(
		bus_registry_parse("{\"types\":{\"Bad\":{\"data\":{}}}}", 29,
				   &r, e),
		CM_EINVAL);
	ck_assert_ptr_nonnull(strstr(e, "bad event type"));
	ck_assert_int_eq(
		bus_registry_parse("{\"types\":{\"a.b\":{}}}", 20, &r, e),
		CM_EINVAL);
	ck_assert_ptr_nonnull(strstr(e, "no data schema"));
}
END_TEST

START_TEST(test_cursors_must_be_microseconds_dot_uuid)
{
	char c[80], id[37];

	ck_assert_int_eq(cm_uuid_v4(id), 0);
	snprintf(c, sizeof(c), "1795652513293000.%s", id);
	ck_assert(bus_cursor_ok(c));
	ck_assert(!bus_cursor_ok("zzz"));
	ck_assert(!bus_cursor_ok(".x"));
	snprintf(c, sizeof(c), "-5.%s", id);
	ck_assert(!bus_cursor_ok(c));
	ck_assert(!bus_cursor_ok("12.not-a-uuid"));
	ck_assert(!bus_cursor_ok(NULL));
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("registry");
	TCase *tc = tcase_create("registry");

	tcase_add_checked_fixture(tc, load_real, unload);
	tcase_add_test(tc,
		       test_the_shipped_registry_loads_and_covers_every_domain);
	tcase_add_test(tc,
		       test_a_valid_event_passes_and_bad_data_is_named_by_path);
	tcase_add_test(tc, test_an_unregistered_version_is_refused);
	tcase_add_test(tc, test_every_registered_type_is_found_and_no_other);
	tcase_add_test(
		tc, test_schema_subset_checks_arrays_lengths_and_type_unions);
	tcase_add_test(tc, test_a_broken_or_missing_registry_is_refused);
	tcase_add_test(tc, test_cursors_must_be_microseconds_dot_uuid);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
