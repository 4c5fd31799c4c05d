/* test_entity.c - body validation against the entity tables, CSV reading
   and writing, timestamp rendering and CSV cell coercion (pure code). */
#include "../../../services/crm/crm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/json.h"
#include "testutil.h"
#include "common/banned.h"

static void
init(void)
{
	crm_entities_init();
}

static int
parse_as(const struct crm_entity *e, const char *text, bool create,
	 struct crm_values *v, char errbuf[CM_ERRBUF_LEN])
{
	cJSON *j = cm_json_parse(text, strlen(text), errbuf);
	int rc;

	ck_assert_msg(j != NULL, "%s", errbuf);
	rc = crm_entity_parse(e, j, create, v, errbuf);
	cJSON_Delete(j);
	return rc;
}

START_TEST(test_a_full_lead_body_becomes_column_texts)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct crm_values v;
	bool set;

	ck_assert_int_eq(
		parse_as(
			&crm_leads,
			"{\"name\":\"Ada\",\"email\":\"ada@x.io\",\"budget\":"
			"1500.5,\"decision_maker\":true,\"tags\":[\"a\",\"b\"],"
			"\"custom_fields\":{\"k\":1},\"next_follow_up_at\":"
			"\"2026-01-02T03:04:05Z\",\"owner_id\":null}",
			true, &v, errbuf),
		0);
	ck_assert_str_eq(crm_values_find(&v, "name", NULL), "Ada");
	ck_assert_str_eq(crm_values_find(&v, "budget", NULL), "1500.50");
	ck_assert_str_eq(crm_values_find(&v, "decision_maker", NULL), "true");
	ck_assert_str_eq(crm_values_find(&v, "tags", NULL), "[\"a\",\"b\"]");
	ck_assert_str_eq(crm_values_find(&v, "custom_fields", NULL),
			 "{\"k\":1}");
	/* null on create means "not given" */
	ck_assert_ptr_null(crm_values_find(&v, "owner_id", &set));
	ck_assert(!set);
	crm_values_release(&v);
	ck_assert_int_eq(
		parse_as(&crm_leads, "{\"owner_id\":null}", false, &v, errbuf),
		0);
	ck_assert_ptr_null(crm_values_find(&v, "owner_id", &set));
	ck_assert(set); /* on update: set it to NULL */
	crm_values_release(&v);
}
END_TEST

START_TEST(test_bad_bodies_are_refused_naming_the_field)
{
	static const struct {
		const struct crm_entity *e;
		const char *json, *words;
		bool create;
	} cases[] = {
		{ &crm_leads, "{}", "'name' is required", true },
		{ &crm_leads, "{\"name\":\"  \"}", "'name' must not be empty",
		  true },
		{ &crm_leads, "{\"name\":\"a\",\"x\":1}",
		  "'x' is not a lead field", true },
		{ &crm_leads, "{\"score\":5}", "'score' cannot be set", false },
		{ &crm_leads, "{\"status\":\"won\"}",
		  "'status' must be one of new, contacted", false },
		{ &crm_leads, "{\"status\":null}", "'status' must not be null",
		  false },
		{ &crm_leads, "{\"email\":\"nope\"}",
		  "'email' must be an email", false },
		{ &crm_leads, "{\"budget\":-1}", "'budget' must be a number",
		  false },
		{ &crm_leads, "{\"budget\":\"5\"}", "'budget' must be a number",
		  false },
		{ &crm_leads, "{\"owner_id\":\"123\"}",
		  "'owner_id' must be a uuid", false },
		{ &crm_leads, "{\"next_follow_up_at\":\"tomorrow\"}",
		  "RFC 3339", false },
		{ &crm_leads, "{\"tags\":[\"\"]}", "'tags' items", false },
		{ &crm_leads, "{\"tags\":\"a\"}", "'tags' must be an array",
		  false },
		{ &crm_leads, "{\"custom_fields\":[]}",
		  "'custom_fields' must be an object", false },
		{ &crm_leads, "{\"decision_maker\":1}",
		  "'decision_maker' must be a boolean", false },
		{ &crm_deals, "{\"currency\":\"usd\"}", "ISO 4217", false },
		{ &crm_deals, "{\"expected_close_date\":\"2026-02-30\"}",
		  "YYYY-MM-DD", false },
		{ &crm_deals,
		  "{\"stage_id\":\"00000000-0000-0000-0000-"
		  "000000000000\"}",
		  "'stage_id' cannot be set by an update", false },
		{ &crm_activities, "{\"type\":\"fax\",\"subject\":\"s\"}",
		  "'type' must be one of", true },
		{ &crm_leads, "[]", "JSON object", true },
	};
	char errbuf[CM_ERRBUF_LEN];
	struct crm_values v;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		errbuf[0] = '\0';
		ck_assert_msg(parse_as(cases[i].e, cases[i].json,
				       cases[i].create, &v,
				       errbuf) == CM_EINVAL,
			      "%s accepted", cases[i].json);
		ck_assert_msg(strstr(errbuf, cases[i].words), "%s: %s",
			      cases[i].json, errbuf);
	}
}
END_TEST

START_TEST(test_the_select_list_has_every_field_and_tags_as_json)
{
	ck_assert_ptr_nonnull(strstr(crm_leads.columns, "to_jsonb(tags) AS "
							"tags"));
	ck_assert_ptr_nonnull(strstr(crm_leads.columns, ", score_factors,"));
	ck_assert_ptr_nonnull(strstr(crm_deals.columns, "updated_at"));
	ck_assert_ptr_null(strstr(crm_leads.columns, "search"));
	ck_assert_ptr_null(strstr(crm_leads.columns, "tenant_id"));
	ck_assert_ptr_eq(crm_entity_by_plural("deals"), &crm_deals);
	ck_assert_ptr_null(crm_entity_by_plural("pipelines"));
	ck_assert_ptr_null(crm_entity_by_plural(NULL));
}
END_TEST

START_TEST(test_postgres_times_become_rfc3339_utc)
{
	char out[40];

	ck_assert_int_eq(crm_pg_time("2026-01-02 03:04:05+00", out), 0);
	ck_assert_str_eq(out, "2026-01-02T03:04:05Z");
	ck_assert_int_eq(crm_pg_time("2026-01-02 03:04:05.123456+02", out), 0);
	ck_assert_str_eq(out, "2026-01-02T01:04:05.123456Z");
	ck_assert_int_eq(crm_pg_time("2026-01-01 00:30:00-05:30", out), 0);
	ck_assert_str_eq(out, "2026-01-01T06:00:00Z");
	ck_assert_int_eq(crm_pg_time("2024-03-01 01:00:00+03", out), 0);
	ck_assert_str_eq(out, "2024-02-29T22:00:00Z");
	ck_assert_int_eq(crm_pg_time("infinity", out), CM_EINVAL);
	ck_assert_int_eq(crm_pg_time("2026-01-02 03:04:05", out), CM_EINVAL);
	ck_assert_int_eq(crm_pg_time("2026-01-02 03:04:05.+00", out),
			 CM_EINVAL);
}
END_TEST

START_TEST(test_csv_records_with_quotes_commas_and_line_breaks)
{
	const char *text = "\xef\xbb\xbfname,note\r\n"
			   "\"Ada, Countess\",\"said \"\"hi\"\"\nthen left\"\n"
			   "\n"
			   "Bob,\n"
			   "Carol";
	char errbuf[CM_ERRBUF_LEN] = "";
	struct crm_csv_row row;
	struct crm_csv c;

	crm_csv_init(&c, text, strlen(text));
	ck_assert_int_eq(crm_csv_next(&c, &row, errbuf), 0);
	ck_assert_int_eq(row.n, 2);
	ck_assert_str_eq(row.cell[0], "name");
	crm_csv_row_release(&row);
	ck_assert_int_eq(c.line, 2);
	ck_assert_int_eq(crm_csv_next(&c, &row, errbuf), 0);
	ck_assert_str_eq(row.cell[0], "Ada, Countess");
	ck_assert_str_eq(row.cell[1], "said \"hi\"\nthen left");
	crm_csv_row_release(&row);
	ck_assert_int_eq(crm_csv_next(&c, &row, errbuf), 0);
	ck_assert_int_eq(c.line, 6);
	ck_assert_int_eq(row.n, 2);
	ck_assert_str_eq(row.cell[0], "Bob");
	ck_assert_str_eq(row.cell[1], "");
	crm_csv_row_release(&row);
	ck_assert_int_eq(crm_csv_next(&c, &row, errbuf), 0);
	ck_assert_str_eq(row.cell[0], "Carol");
	crm_csv_row_release(&row);
	ck_assert_int_eq(crm_csv_next(&c, &row, errbuf), CM_ENOENT);
}
END_TEST

START_TEST(test_broken_csv_is_refused_naming_the_line)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct crm_csv_row row;
	struct crm_csv c;
	struct cm_buf big = CM_BUF_INIT(0);
	int i;

	crm_csv_init(&c, "a\n\"open", 7);
	ck_assert_int_eq(crm_csv_next(&c, &row, errbuf), 0);
	crm_csv_row_release(&row);
	ck_assert_int_eq(crm_csv_next(&c, &row, errbuf), CM_EINVAL);
	ck_assert_ptr_nonnull(strstr(errbuf, "line 2"));
	crm_csv_init(&c, "\"a\"b,c", 6);
	ck_assert_int_eq(crm_csv_next(&c, &row, errbuf), CM_EINVAL);
	ck_assert_ptr_nonnull(strstr(errbuf, "after a closing quote"));
	for (i = 0; i <= CRM_CSV_MAX_FIELDS; i++)
		cm_buf_puts(&big, "x,");
	crm_csv_init(&c, cm_buf_str(&big), big.len);
	ck_assert_int_eq(crm_csv_next(&c, &row, errbuf), CM_E2BIG);
	cm_buf_reset(&big);
	for (i = 0; i <= CRM_CSV_MAX_CELL; i++)
		cm_buf_putc(&big, 'y');
	crm_csv_init(&c, cm_buf_str(&big), big.len);
	ck_assert_int_eq(crm_csv_next(&c, &row, errbuf), CM_E2BIG);
	cm_buf_release(&big);
}
END_TEST

START_TEST(test_written_cells_are_quoted_and_formulas_defused)
{
	struct cm_buf b = CM_BUF_INIT(0);

	crm_csv_put(&b, "plain");
	cm_buf_putc(&b, '|');
	crm_csv_put(&b, "a,b");
	cm_buf_putc(&b, '|');
	crm_csv_put(&b, "say \"x\"");
	cm_buf_putc(&b, '|');
	crm_csv_put(&b, "=HYPERLINK(1)");
	cm_buf_putc(&b, '|');
	crm_csv_put(&b, "");
	ck_assert_str_eq(cm_buf_str(&b),
			 "plain|\"a,b\"|\"say \"\"x\"\"\"|'=HYPERLINK(1)|");
	cm_buf_release(&b);
}
END_TEST

START_TEST(test_csv_cells_are_coerced_to_the_fields_types)
{
	cJSON *j;

	j = crm_coerce_text(crm_entity_field(&crm_leads, "budget"), "1200.5");
	ck_assert(cJSON_IsNumber(j) && j->valuedouble == 1200.5);
	cJSON_Delete(j);
	j = crm_coerce_text(crm_entity_field(&crm_leads, "decision_maker"),
			    "yes");
	ck_assert(cJSON_IsTrue(j));
	cJSON_Delete(j);
	j = crm_coerce_text(crm_entity_field(&crm_leads, "tags"), " a ; b;;");
	ck_assert_int_eq(cJSON_GetArraySize(j), 2);
	ck_assert_str_eq(cJSON_GetArrayItem(j, 1)->valuestring, "b");
	cJSON_Delete(j);
	j = crm_coerce_text(crm_entity_field(&crm_leads, "budget"), "lots");
	ck_assert(cJSON_IsString(j)); /* validation names the field */
	cJSON_Delete(j);
}
END_TEST

START_TEST(test_foreign_key_failures_name_the_field)
{
	char field[64];

	ck_assert(crm_fk_field("insert or update on table \"notes\" violates "
			       "foreign key constraint \"fk_lead_id\" "
			       "(SQLSTATE 23503)",
			       field));
	ck_assert_str_eq(field, "lead_id");
	ck_assert(!crm_fk_field("duplicate key (SQLSTATE 23505)", field));
}
END_TEST

START_TEST(test_custom_fields_are_checked_against_their_definitions)
{
	static const struct {
		const char *values;
		bool create;
		int rc;
		const char *words;
	} cases[] = {
		{ NULL, true, CM_EINVAL, "'custom_fields.tier' is required" },
		{ NULL, false, 0, "" },
		{ "{\"tier\":\"gold\"}", true, 0, "" },
		{ "{\"tier\":\"lead\"}", true, CM_EINVAL, "select option" },
		{ "{\"tier\":null}", false, CM_EINVAL, "required" },
		{ "{\"tier\":\"gold\",\"n\":\"1\"}", true, CM_EINVAL,
		  "'custom_fields.n' must be a number" },
		{ "{\"tier\":\"gold\",\"n\":1.5,\"ok\":false,"
		  "\"d\":\"2026-02-28\",\"s\":\"x\"}",
		  true, 0, "" },
		{ "{\"tier\":\"gold\",\"d\":\"2026-02-30\"}", true, CM_EINVAL,
		  "'custom_fields.d' must be a date" },
		{ "{\"tier\":\"gold\",\"zz\":1}", true, CM_EINVAL,
		  "not a defined custom field" },
	};
	const char *text =
		"[{\"key\":\"tier\",\"type\":\"select\",\"options\":"
		"[\"gold\",\"silver\"],\"required\":true},"
		"{\"key\":\"n\",\"type\":\"number\",\"required\":false},"
		"{\"key\":\"ok\",\"type\":\"boolean\"},"
		"{\"key\":\"d\",\"type\":\"date\"},"
		"{\"key\":\"s\",\"type\":\"text\"}]";
	char errbuf[CM_ERRBUF_LEN];
	cJSON *defs = cm_json_parse(text, strlen(text), errbuf), *none;
	size_t i;

	ck_assert_ptr_nonnull(defs);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		errbuf[0] = '\0';
		ck_assert_msg(crm_custom_check(defs, cases[i].values,
					       cases[i].create,
					       errbuf) == cases[i].rc,
			      "%s: %s", cases[i].values, errbuf);
		ck_assert_msg(strstr(errbuf, cases[i].words), "%s: %s",
			      cases[i].values, errbuf);
	}
	none = cJSON_CreateArray(); /* no definitions: anything goes */
	ck_assert_int_eq(crm_custom_check(none, "{\"zz\":1}", true, errbuf), 0);
	cJSON_Delete(none);
	cJSON_Delete(defs);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("crm entity");
	TCase *tc = tcase_create("pure");

	tcase_add_checked_fixture(tc, init, NULL);
	tcase_add_test(tc, test_a_full_lead_body_becomes_column_texts);
	tcase_add_test(tc, test_bad_bodies_are_refused_naming_the_field);
	tcase_add_test(tc,
		       test_the_select_list_has_every_field_and_tags_as_json);
	tcase_add_test(tc, test_postgres_times_become_rfc3339_utc);
	tcase_add_test(tc, test_csv_records_with_quotes_commas_and_line_breaks);
	tcase_add_test(tc, test_broken_csv_is_refused_naming_the_line);
	tcase_add_test(tc, test_written_cells_are_quoted_and_formulas_defused);
	tcase_add_test(tc, test_csv_cells_are_coerced_to_the_fields_types);
	tcase_add_test(tc, test_foreign_key_failures_name_the_field);
	tcase_add_test(
		tc, test_custom_fields_are_checked_against_their_definitions);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
