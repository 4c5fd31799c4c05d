/* test_scoring.c - the lead score against the rule table of the issue,
   rule by rule, then the cap, the factors, and tenant rule tables. */
#include "../../../services/crm/crm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "testutil.h"
#include "common/banned.h"

static struct crm_score_rules rules;

static void
load_defaults(void)
{
	crm_score_rules_default(&rules);
}

/* A lead with nothing but a status that scores 0 (lost). */
static struct crm_score_input
blank(void)
{
	struct crm_score_input in = { 0 };

	in.status = "lost";
	return in;
}

START_TEST(test_company_size_scores_as_the_table_says)
{
	static const struct {
		const char *size;
		int points;
	} cases[] = { { "startup", 10 }, { "small", 20 },      { "medium", 40 },
		      { "large", 60 },	 { "enterprise", 80 }, { "huge", 0 },
		      { NULL, 0 } };
	struct crm_score_input in = blank();
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		in.company_size = cases[i].size;
		ck_assert_msg(crm_score(&rules, &in, NULL) == cases[i].points,
			      "size %s", cases[i].size ? cases[i].size : "-");
	}
}
END_TEST

START_TEST(test_budget_takes_the_highest_step_reached)
{
	static const struct {
		double budget;
		int points;
	} cases[] = { { 250000, 30 }, { 100000, 30 }, { 99999.99, 20 },
		      { 50000, 20 },  { 49999, 10 },  { 10000, 10 },
		      { 9999.99, 0 }, { 0, 0 } };
	struct crm_score_input in = blank();
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		in.has_budget = true;
		in.budget = cases[i].budget;
		ck_assert_msg(crm_score(&rules, &in, NULL) == cases[i].points,
			      "budget %.2f", cases[i].budget);
	}
	in.has_budget = false;
	in.budget = 1e9;
	ck_assert_int_eq(crm_score(&rules, &in, NULL), 0);
}
END_TEST

START_TEST(test_decision_maker_phone_company_and_job_title_add_their_points)
{
	struct crm_score_input in = blank();

	in.decision_maker = true;
	ck_assert_int_eq(crm_score(&rules, &in, NULL), 15);
	in = blank();
	in.has_phone = true;
	ck_assert_int_eq(crm_score(&rules, &in, NULL), 5);
	in = blank();
	in.has_company = true;
	ck_assert_int_eq(crm_score(&rules, &in, NULL), 5);
	in = blank();
	in.has_job_title = true;
	ck_assert_int_eq(crm_score(&rules, &in, NULL), 5);
	in.has_phone = in.has_company = in.decision_maker = true;
	ck_assert_int_eq(crm_score(&rules, &in, NULL), 30);
}
END_TEST

START_TEST(test_every_status_scores_as_the_table_says)
{
	static const struct {
		const char *status;
		int points;
	} cases[] = { { "new", 5 },	     { "contacted", 10 },
		      { "qualified", 25 },   { "proposal", 40 },
		      { "negotiation", 60 }, { "converted", 100 },
		      { "lost", 0 },	     { "unresponsive", 0 } };
	struct crm_score_input in = { 0 };
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		in.status = cases[i].status;
		ck_assert_msg(crm_score(&rules, &in, NULL) == cases[i].points,
			      "status %s", cases[i].status);
	}
}
END_TEST

START_TEST(test_timeline_values_match_without_case)
{
	static const struct {
		const char *timeline;
		int points;
	} cases[] = { { "immediate", 20 }, { "IMMEDIATE", 20 }, { "month", 15 },
		      { "Quarter", 10 },   { "year", 0 },	{ "", 0 } };
	struct crm_score_input in = blank();
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		in.timeline = cases[i].timeline;
		ck_assert_msg(crm_score(&rules, &in, NULL) == cases[i].points,
			      "timeline %s", cases[i].timeline);
	}
}
END_TEST

START_TEST(test_the_sum_is_capped_at_100_and_every_factor_is_listed)
{
	struct crm_score_input in = { 0 };
	cJSON *factors = NULL, *f;
	int total = 0;

	in.company_size = "enterprise"; /* 80 */
	in.has_budget = true;
	in.budget = 100000;	   /* 30 */
	in.decision_maker = true;  /* 15 */
	in.has_phone = true;	   /* 5 */
	in.status = "new";	   /* 5 */
	in.timeline = "immediate"; /* 20 */
	ck_assert_int_eq(crm_score(&rules, &in, &factors), 100);
	ck_assert_int_eq(cJSON_GetArraySize(factors), 6);
	cJSON_ArrayForEach(f, factors)
	{
		ck_assert_ptr_nonnull(cJSON_GetObjectItem(f, "factor"));
		ck_assert_ptr_nonnull(cJSON_GetObjectItem(f, "value"));
		total += cJSON_GetObjectItem(f, "points")->valueint;
	}
	ck_assert_int_eq(total, 155);
	ck_assert_str_eq(
		cJSON_GetObjectItem(cJSON_GetArrayItem(factors, 0), "factor")
			->valuestring,
		"company_size");
	cJSON_Delete(factors);
	in.company_size = "startup";
	in.has_budget = false;
	in.decision_maker = false;
	in.timeline = NULL;
	ck_assert_int_eq(crm_score(&rules, &in, &factors), 20);
	ck_assert_int_eq(cJSON_GetArraySize(factors), 3);
	cJSON_Delete(factors);
}
END_TEST

static cJSON *
parse(const char *text)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *j = cm_json_parse(text, strlen(text), errbuf);

	ck_assert_msg(j != NULL, "%s", errbuf);
	return j;
}

START_TEST(test_a_tenant_table_overrides_only_what_it_names)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct crm_score_rules r;
	struct crm_score_input in = blank();
	cJSON *j = parse("{\"company_size\":{\"startup\":50},"
			 "\"budget\":[{\"min\":1000,\"points\":7}],"
			 "\"timeline\":{\"asap\":3},\"cap\":60}");

	ck_assert_int_eq(crm_score_rules_parse(j, &r, errbuf), 0);
	in.company_size = "startup";
	ck_assert_int_eq(crm_score(&r, &in, NULL), 50);
	in.company_size = "small"; /* default kept */
	ck_assert_int_eq(crm_score(&r, &in, NULL), 20);
	in.has_budget = true;
	in.budget = 5000;
	ck_assert_int_eq(crm_score(&r, &in, NULL), 27);
	in.timeline = "month"; /* replaced by the tenant's timeline map */
	ck_assert_int_eq(crm_score(&r, &in, NULL), 27);
	in.timeline = "ASAP";
	in.company_size = "enterprise";
	ck_assert_int_eq(crm_score(&r, &in, NULL), 60); /* 80+7+3, capped */
	cJSON_Delete(j);
	j = crm_score_rules_json(&r);
	ck_assert_int_eq(crm_score_rules_parse(j, &rules, errbuf), 0);
	ck_assert_int_eq(crm_score(&rules, &in, NULL), 60);
	cJSON_Delete(j);
}
END_TEST

START_TEST(test_bad_rule_tables_are_refused_naming_the_field)
{
	static const struct {
		const char *json, *words;
	} cases[] = {
		{ "{\"nope\":1}", "'nope'" },
		{ "{\"company_size\":{\"giant\":5}}", "company_size.giant" },
		{ "{\"status\":{\"new\":-1}}", "status.new" },
		{ "{\"status\":{\"new\":1.5}}", "status.new" },
		{ "{\"budget\":[{\"min\":10,\"points\":1},"
		  "{\"min\":20,\"points\":2}]}",
		  "budget[1].min" },
		{ "{\"budget\":{}}", "budget" },
		{ "{\"phone\":\"5\"}", "phone" },
		{ "{\"cap\":101}", "cap" },
		{ "[]", "object" },
	};
	char errbuf[CM_ERRBUF_LEN];
	struct crm_score_rules r;
	size_t i;
	cJSON *j;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		errbuf[0] = '\0';
		j = parse(cases[i].json);
		ck_assert_msg(crm_score_rules_parse(j, &r, errbuf) == CM_EINVAL,
			      "%s accepted", cases[i].json);
		ck_assert_msg(strstr(errbuf, cases[i].words), "%s: %s",
			      cases[i].json, errbuf);
		cJSON_Delete(j);
	}
}
END_TEST

START_TEST(test_the_default_table_round_trips_as_json)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct crm_score_rules r;
	cJSON *j = crm_score_rules_json(&rules), *again;

	ck_assert_int_eq(
		cJSON_GetObjectItem(cJSON_GetObjectItem(j, "company_size"),
				    "enterprise")
			->valueint,
		80);
	ck_assert_int_eq(crm_score_rules_parse(j, &r, errbuf), 0);
	again = crm_score_rules_json(&r);
	ck_assert(cJSON_Compare(j, again, true));
	cJSON_Delete(again);
	cJSON_Delete(j);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("crm scoring");
	TCase *tc = tcase_create("rules");

	tcase_add_checked_fixture(tc, load_defaults, NULL);
	tcase_add_test(tc, test_company_size_scores_as_the_table_says);
	tcase_add_test(tc, test_budget_takes_the_highest_step_reached);
	tcase_add_test(
		tc,
		test_decision_maker_phone_company_and_job_title_add_their_points);
	tcase_add_test(tc, test_every_status_scores_as_the_table_says);
	tcase_add_test(tc, test_timeline_values_match_without_case);
	tcase_add_test(
		tc, test_the_sum_is_capped_at_100_and_every_factor_is_listed);
	tcase_add_test(tc, test_a_tenant_table_overrides_only_what_it_names);
	tcase_add_test(tc, test_bad_rule_tables_are_refused_naming_the_field);
	tcase_add_test(tc, test_the_default_table_round_trips_as_json);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
