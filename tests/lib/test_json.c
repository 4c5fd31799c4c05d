/* test_json.c - bounded parsing and typed field getters. */
#include "common/json.h"
#include "common/err.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "common/banned.h"

#define UUID "123e4567-e89b-42d3-a456-426614174000"

static char errbuf[CM_ERRBUF_LEN];

/* Parse a C string that must be valid JSON. */
static cJSON *
parse(const char *text)
{
	cJSON *json = cm_json_parse(text, strlen(text), errbuf);

	ck_assert_msg(json != NULL, "parse %s: %s", text, errbuf);
	return json;
}

/* Parse text that must fail; assert the message. */
static void
parse_fails(const char *text, size_t len, const char *want)
{
	errbuf[0] = '\0';
	ck_assert_ptr_null(cm_json_parse(text, len, errbuf));
	ck_assert_str_eq(errbuf, want);
}

/* A document nested depth levels deep: [[...1...]] */
static char *
nested(int depth)
{
	char *s = malloc((size_t)depth * 2 + 2);
	int i;

	ck_assert_ptr_nonnull(s);
	for (i = 0; i < depth; i++) {
		s[i] = '[';
		s[depth + 1 + i] = ']';
	}
	s[depth] = '1';
	s[depth * 2 + 1] = '\0';
	return s;
}

START_TEST(test_parse_reads_exactly_len_bytes_of_unterminated_input)
{
	static const char buf[] = { '{', '"', 'a', '"', ':',
				    '1', '}', 'x', 'y', 'z' };
	cJSON *json = cm_json_parse(buf, 7, errbuf);

	ck_assert_ptr_nonnull(json);
	ck_assert_int_eq(cJSON_GetObjectItem(json, "a")->valueint, 1);
	cJSON_Delete(json);
	parse_fails(buf, sizeof(buf), "invalid JSON at line 1, column 8");
}
END_TEST

START_TEST(test_parse_error_names_line_and_column)
{
	static const char text[] = "{\n  \"a\": 1,\n  \"b\": tru\n}";

	parse_fails(text, strlen(text), "invalid JSON at line 3, column 8");
	parse_fails("[1,2", 4, "invalid JSON at line 1, column 5");
	parse_fails("[1,]", 4, "invalid JSON at line 1, column 4");
}
END_TEST

START_TEST(test_empty_input_is_invalid)
{
	parse_fails("", 0, "invalid JSON at line 1, column 1");
	parse_fails(NULL, 0, "invalid JSON at line 1, column 1");
	parse_fails("  \n ", 4, "invalid JSON at line 2, column 2");
}
END_TEST

START_TEST(test_nul_byte_inside_the_input_is_refused)
{
	static const char buf[] = { '{', '}', '\0', 'x' };

	parse_fails(buf, sizeof(buf),
		    "invalid JSON (NUL byte) at line 1, "
		    "column 3");
}
END_TEST

START_TEST(test_nesting_up_to_64_levels_is_accepted)
{
	char *s = nested(64);
	cJSON *json = cm_json_parse(s, strlen(s), errbuf);

	ck_assert_msg(json != NULL, "%s", errbuf);
	cJSON_Delete(json);
	free(s);
}
END_TEST

START_TEST(test_nesting_deeper_than_64_levels_is_refused)
{
	char *s = nested(65);

	parse_fails(s, strlen(s),
		    "JSON nested deeper than 64 levels at line 1, column 65");
	free(s);
	s = nested(100000);
	errbuf[0] = '\0';
	ck_assert_ptr_null(cm_json_parse(s, strlen(s), errbuf));
	ck_assert_ptr_nonnull(strstr(errbuf, "nested deeper than 64"));
	free(s);
}
END_TEST

START_TEST(test_brackets_inside_strings_do_not_count_as_nesting)
{
	char text[400];
	cJSON *json;

	memset(text, '[', sizeof(text));
	text[0] = '"';
	memcpy(text + 200, "\\\"{{{{", 6);
	text[sizeof(text) - 2] = '"';
	text[sizeof(text) - 1] = '\0';
	json = cm_json_parse(text, strlen(text), errbuf);
	ck_assert_msg(json != NULL, "%s", errbuf);
	ck_assert(cJSON_IsString(json));
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_input_over_the_cap_is_refused)
{
	size_t len = CM_JSON_MAX_INPUT + 1;
	char *big = malloc(len);

	ck_assert_ptr_nonnull(big);
	memset(big, ' ', len);
	big[0] = '1';
	errbuf[0] = '\0';
	ck_assert_ptr_null(cm_json_parse(big, len, errbuf));
	ck_assert_ptr_nonnull(strstr(errbuf, "too large"));
	free(big);
}
END_TEST

START_TEST(test_print_is_compact_and_handles_null)
{
	cJSON *json = parse("{ \"a\" : [1, 2], \"b\" : \"x\\\"y\" }");
	char *s = cm_json_print(json);

	ck_assert_str_eq(s, "{\"a\":[1,2],\"b\":\"x\\\"y\"}");
	free(s);
	cJSON_Delete(json);
	s = cm_json_print(NULL);
	ck_assert_str_eq(s, "null");
	free(s);
}
END_TEST

START_TEST(test_string_field_is_returned_borrowed)
{
	cJSON *json = parse("{\"email\":\"a@b.c\"}");
	const char *s = NULL;

	ck_assert_int_eq(
		cm_json_get_str(json, NULL, "email", true, 5, &s, errbuf), 0);
	ck_assert_str_eq(s, "a@b.c");
	ck_assert_int_eq(
		cm_json_get_str(json, NULL, "email", true, 0, NULL, errbuf), 0);
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_missing_optional_field_is_enoent_and_leaves_out_alone)
{
	cJSON *json = parse("{\"a\":null}");
	const char *s = "keep";
	int64_t i = 7;

	ck_assert_int_eq(cm_json_get_str(json, NULL, "b", false, 0, &s, errbuf),
			 CM_ENOENT);
	ck_assert_int_eq(cm_json_get_str(json, NULL, "a", false, 0, &s, errbuf),
			 CM_ENOENT);
	ck_assert_int_eq(
		cm_json_get_i64(json, NULL, "a", false, 0, 9, &i, errbuf),
		CM_ENOENT);
	ck_assert_str_eq(s, "keep");
	ck_assert_int_eq(i, 7);
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_missing_required_field_names_the_full_path)
{
	cJSON *json = parse("{\"a\":null}");

	ck_assert_int_eq(
		cm_json_get_str(json, NULL, "email", true, 0, NULL, errbuf),
		CM_EINVAL);
	ck_assert_str_eq(errbuf, "field 'email' is required");
	ck_assert_int_eq(
		cm_json_get_bool(json, "user", "a", true, NULL, errbuf),
		CM_EINVAL);
	ck_assert_str_eq(errbuf, "field 'user.a' is required");
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_parent_that_is_not_an_object_is_refused)
{
	cJSON *json = parse("[1]");

	ck_assert_int_eq(
		cm_json_get_str(json, NULL, "a", false, 0, NULL, errbuf),
		CM_EINVAL);
	ck_assert_str_eq(errbuf, "the JSON document must be an object");
	ck_assert_int_eq(
		cm_json_get_str(json, "limits", "a", false, 0, NULL, errbuf),
		CM_EINVAL);
	ck_assert_str_eq(errbuf, "field 'limits' must be an object");
	ck_assert_int_eq(
		cm_json_get_str(NULL, NULL, "a", false, 0, NULL, errbuf),
		CM_EINVAL);
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_string_field_of_wrong_type_or_too_long_is_refused)
{
	cJSON *json = parse("{\"n\":5,\"s\":\"\\u00e9t\\u00e9\"}");
	const char *s = "keep";

	ck_assert_int_eq(
		cm_json_get_str(json, "user", "n", true, 0, &s, errbuf),
		CM_EINVAL);
	ck_assert_str_eq(errbuf, "field 'user.n' must be a string");
	/* "ete" with accents is 5 bytes in UTF-8 */
	ck_assert_int_eq(cm_json_get_str(json, NULL, "s", true, 4, &s, errbuf),
			 CM_EINVAL);
	ck_assert_str_eq(errbuf, "field 's' must be a string of at most 4 "
				 "bytes");
	ck_assert_str_eq(s, "keep");
	ck_assert_int_eq(cm_json_get_str(json, NULL, "s", true, 5, &s, errbuf),
			 0);
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_integer_field_within_bounds_is_read)
{
	cJSON *json = parse("{\"n\":42,\"e\":1e2,\"neg\":-9007199254740991,"
			    "\"max\":9007199254740991}");
	int64_t v = 0;

	ck_assert_int_eq(
		cm_json_get_i64(json, NULL, "n", true, 42, 42, &v, errbuf), 0);
	ck_assert_int_eq(v, 42);
	ck_assert_int_eq(
		cm_json_get_i64(json, NULL, "e", true, 0, 100, &v, errbuf), 0);
	ck_assert_int_eq(v, 100);
	ck_assert_int_eq(cm_json_get_i64(json, NULL, "neg", true, INT64_MIN,
					 INT64_MAX, &v, errbuf),
			 0);
	ck_assert(v == -9007199254740991LL);
	ck_assert_int_eq(cm_json_get_i64(json, NULL, "max", true, INT64_MIN,
					 INT64_MAX, &v, errbuf),
			 0);
	ck_assert(v == 9007199254740991LL);
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_integer_field_out_of_bounds_names_the_range)
{
	cJSON *json = parse("{\"limits\":{\"max_users\":100001}}");
	const cJSON *limits = NULL;
	int64_t v = 5;

	ck_assert_int_eq(
		cm_json_get_object(json, NULL, "limits", true, &limits, errbuf),
		0);
	ck_assert_int_eq(cm_json_get_i64(limits, "limits", "max_users", true, 1,
					 100000, &v, errbuf),
			 CM_EINVAL);
	ck_assert_str_eq(errbuf, "field 'limits.max_users' must be an "
				 "integer between 1 and 100000");
	ck_assert_int_eq(v, 5);
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_non_integral_or_unsafe_numbers_are_not_integers)
{
	static const char *const bad[] = {
		"{\"v\":1.5}",
		"{\"v\":\"5\"}",
		"{\"v\":true}",
		"{\"v\":9007199254740992}",
		"{\"v\":-9007199254740992}",
		"{\"v\":1e300}",
		"{\"v\":[1]}",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *json = parse(bad[i]);

		ck_assert_msg(cm_json_get_i64(json, NULL, "v", true, INT64_MIN,
					      INT64_MAX, NULL,
					      errbuf) == CM_EINVAL,
			      "%s", bad[i]);
		ck_assert_ptr_nonnull(strstr(errbuf, "must be an integer"));
		cJSON_Delete(json);
	}
}
END_TEST

START_TEST(test_double_field_respects_bounds)
{
	cJSON *json = parse("{\"t\":0.25,\"s\":\"1\"}");
	double d = 0;

	ck_assert_int_eq(
		cm_json_get_double(json, NULL, "t", true, 0, 1, &d, errbuf), 0);
	ck_assert(d == 0.25);
	ck_assert_int_eq(
		cm_json_get_double(json, "opts", "t", true, 0.5, 2, &d, errbuf),
		CM_EINVAL);
	ck_assert_str_eq(errbuf,
			 "field 'opts.t' must be a number between 0.5 and 2");
	ck_assert_int_eq(
		cm_json_get_double(json, NULL, "s", true, 0, 2, &d, errbuf),
		CM_EINVAL);
	ck_assert(d == 0.25);
	ck_assert_int_eq(
		cm_json_get_double(json, NULL, "x", false, 0, 2, &d, errbuf),
		CM_ENOENT);
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_bool_field_must_be_true_or_false)
{
	cJSON *json = parse("{\"t\":true,\"f\":false,\"n\":1}");
	bool b = false;

	ck_assert_int_eq(cm_json_get_bool(json, NULL, "t", true, &b, errbuf),
			 0);
	ck_assert(b);
	ck_assert_int_eq(cm_json_get_bool(json, NULL, "f", true, &b, errbuf),
			 0);
	ck_assert(!b);
	ck_assert_int_eq(cm_json_get_bool(json, NULL, "n", true, &b, errbuf),
			 CM_EINVAL);
	ck_assert_str_eq(errbuf, "field 'n' must be true or false");
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_enum_field_gives_the_index_or_lists_the_choices)
{
	static const char *const roles[] = { "admin", "user", "viewer", NULL };
	cJSON *json = parse("{\"a\":\"user\",\"b\":\"root\",\"c\":3}");
	int idx = -1;

	ck_assert_int_eq(
		cm_json_get_enum(json, NULL, "a", true, roles, &idx, errbuf),
		0);
	ck_assert_int_eq(idx, 1);
	ck_assert_int_eq(
		cm_json_get_enum(json, NULL, "b", true, roles, &idx, errbuf),
		CM_EINVAL);
	ck_assert_str_eq(errbuf,
			 "field 'b' must be one of: admin, user, viewer");
	ck_assert_int_eq(
		cm_json_get_enum(json, NULL, "c", true, roles, &idx, errbuf),
		CM_EINVAL);
	ck_assert_int_eq(idx, 1);
	ck_assert_int_eq(
		cm_json_get_enum(json, NULL, "d", false, roles, &idx, errbuf),
		CM_ENOENT);
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_uuid_field_must_be_canonical)
{
	cJSON *json = parse("{\"id\":\"" UUID "\",\"bad\":\"123e4567e89b\","
			    "\"n\":1}");
	const char *s = NULL;

	ck_assert_int_eq(cm_json_get_uuid(json, NULL, "id", true, &s, errbuf),
			 0);
	ck_assert_str_eq(s, UUID);
	ck_assert_int_eq(
		cm_json_get_uuid(json, "lead", "bad", true, &s, errbuf),
		CM_EINVAL);
	ck_assert_str_eq(errbuf, "field 'lead.bad' must be a UUID");
	ck_assert_int_eq(cm_json_get_uuid(json, NULL, "n", true, &s, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(cm_json_get_uuid(json, NULL, "none", true, &s, errbuf),
			 CM_EINVAL);
	ck_assert_str_eq(errbuf, "field 'none' is required");
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_object_and_array_fields_are_type_checked)
{
	cJSON *json = parse("{\"o\":{},\"a\":[1,2,3]}");
	const cJSON *out = NULL;

	ck_assert_int_eq(
		cm_json_get_object(json, NULL, "o", true, &out, errbuf), 0);
	ck_assert(cJSON_IsObject(out));
	ck_assert_int_eq(
		cm_json_get_object(json, NULL, "a", true, &out, errbuf),
		CM_EINVAL);
	ck_assert_str_eq(errbuf, "field 'a' must be an object");
	ck_assert_int_eq(
		cm_json_get_array(json, NULL, "a", true, 3, &out, errbuf), 0);
	ck_assert_int_eq(cJSON_GetArraySize(out), 3);
	ck_assert_int_eq(
		cm_json_get_array(json, NULL, "a", true, 0, &out, errbuf), 0);
	ck_assert_int_eq(
		cm_json_get_array(json, "x", "a", true, 2, &out, errbuf),
		CM_EINVAL);
	ck_assert_str_eq(errbuf,
			 "field 'x.a' must be an array of at most 2 items");
	ck_assert_int_eq(
		cm_json_get_array(json, NULL, "o", true, 0, &out, errbuf),
		CM_EINVAL);
	ck_assert_str_eq(errbuf, "field 'o' must be an array");
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_field_names_are_case_sensitive)
{
	cJSON *json = parse("{\"Email\":\"x\"}");

	ck_assert_int_eq(
		cm_json_get_str(json, NULL, "email", false, 0, NULL, errbuf),
		CM_ENOENT);
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_list_pages_carry_a_cursor_or_null_on_the_last)
{
	cJSON *items = cJSON_CreateArray(), *page;
	char *text;

	cJSON_AddItemToArray(items, cJSON_CreateString("a"));
	page = cm_json_list(items, "c1");
	text = cJSON_PrintUnformatted(page);
	ck_assert_str_eq(text, "{\"items\":[\"a\"],\"next_cursor\":\"c1\"}");
	free(text);
	cJSON_Delete(page);
	page = cm_json_list(NULL, "");
	text = cJSON_PrintUnformatted(page);
	ck_assert_str_eq(text, "{\"items\":[],\"next_cursor\":null}");
	free(text);
	cJSON_Delete(page);
}
END_TEST

/* ---- cm_json_print against cJSON_PrintUnformatted ---- */

static uint64_t print_rng = 0x9e3779b97f4a7c15ULL;

static uint64_t
next_rand(void)
{
	print_rng ^= print_rng << 13;
	print_rng ^= print_rng >> 7;
	print_rng ^= print_rng << 17;
	return print_rng;
}

/* A number of the kinds that print differently: small and large whole
   numbers, around 10^15 where "%1.15g" turns exponential, fractions that
   need 17 digits, tiny and huge magnitudes, zero of both signs. */
static double
random_number(void)
{
	static const double fixed[] = { 0.0,
					-0.0,
					1.0,
					-1.0,
					0.1,
					1.0 / 3.0,
					1e15,
					1e15 - 1,
					-1e15 + 1,
					1e15 + 2,
					9007199254740991.0,
					1e300,
					-1e-300,
					5e-324,
					123.456,
					2147483647.0,
					-2147483648.0,
					4294967296.0,
					0.5,
					1e21 };
	uint64_t r = next_rand();

	switch (r % 5) {
	case 0:
		return fixed[(r >> 8) % (sizeof(fixed) / sizeof(fixed[0]))];
	case 1:
		return (double)(int64_t)(next_rand() % 2000001) - 1000000.0;
	case 2:
		return (double)(int64_t)(next_rand() >> 10) *
		       ((r >> 9) & 1 ? -1.0 : 1.0);
	case 3:
		return ((double)(next_rand() % 1000000007)) / 997.0;
	default:
		return ldexp((double)(next_rand() >> 11),
			     (int)((r >> 8) % 200) - 100);
	}
}

/* A string of random bytes 1..255: control characters, quotes,
   backslashes and bytes above 127 all appear. */
static void
random_text(char *out, size_t max)
{
	size_t n = next_rand() % max, i;

	for (i = 0; i < n; i++)
		out[i] = (char)(1 + next_rand() % 255);
	out[n] = '\0';
}

static cJSON *
random_item(int depth)
{
	char text[40], key[12];
	cJSON *c;
	int i, n;

	switch (depth > 3 ? next_rand() % 5 : next_rand() % 7) {
	case 0:
		return cJSON_CreateNull();
	case 1:
		return cJSON_CreateBool(next_rand() & 1);
	case 2:
		return cJSON_CreateNumber(random_number());
	case 3:
	case 4:
		random_text(text, sizeof(text));
		return cJSON_CreateString(text);
	case 5:
		c = cJSON_CreateArray();
		n = (int)(next_rand() % 5);
		for (i = 0; i < n; i++)
			cJSON_AddItemToArray(c, random_item(depth + 1));
		return c;
	default:
		c = cJSON_CreateObject();
		n = (int)(next_rand() % 5);
		for (i = 0; i < n; i++) {
			random_text(key, sizeof(key));
			cJSON_AddItemToObject(c, key, random_item(depth + 1));
		}
		return c;
	}
}

/* cm_json_print writes its own text; it is cJSON's, byte for byte. */
START_TEST(test_print_matches_cjson_byte_for_byte)
{
	cJSON *item, *raw;
	char *ours, *theirs;
	int i;

	for (i = 0; i < 20000; i++) {
		item = random_item(0);
		ours = cm_json_print(item);
		theirs = cJSON_PrintUnformatted(item);
		ck_assert_ptr_nonnull(theirs);
		ck_assert_msg(strcmp(ours, theirs) == 0, "ours %s, cJSON %s",
			      ours, theirs);
		free(ours);
		cJSON_free(theirs);
		cJSON_Delete(item);
	}
	item = cJSON_CreateObject();
	cJSON_AddNumberToObject(item, "nan", NAN);
	cJSON_AddNumberToObject(item, "inf", -INFINITY);
	raw = cJSON_CreateRaw("{\"pre\":[1,2]}");
	cJSON_AddItemToObject(item, "raw", raw);
	ours = cm_json_print(item);
	ck_assert_str_eq(ours, "{\"nan\":null,\"inf\":null,"
			       "\"raw\":{\"pre\":[1,2]}}");
	free(ours);
	cJSON_Delete(item);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("json");
	TCase *p = tcase_create("parse");
	TCase *g = tcase_create("getters");

	tcase_add_test(
		p, test_parse_reads_exactly_len_bytes_of_unterminated_input);
	tcase_add_test(p, test_parse_error_names_line_and_column);
	tcase_add_test(p, test_empty_input_is_invalid);
	tcase_add_test(p, test_nul_byte_inside_the_input_is_refused);
	tcase_add_test(p, test_nesting_up_to_64_levels_is_accepted);
	tcase_add_test(p, test_nesting_deeper_than_64_levels_is_refused);
	tcase_add_test(p, test_brackets_inside_strings_do_not_count_as_nesting);
	tcase_add_test(p, test_input_over_the_cap_is_refused);
	tcase_add_test(p, test_print_is_compact_and_handles_null);
	tcase_add_test(p, test_print_matches_cjson_byte_for_byte);
	tcase_set_timeout(p, 20);
	suite_add_tcase(s, p);

	tcase_add_test(g, test_string_field_is_returned_borrowed);
	tcase_add_test(
		g, test_missing_optional_field_is_enoent_and_leaves_out_alone);
	tcase_add_test(g, test_missing_required_field_names_the_full_path);
	tcase_add_test(g, test_parent_that_is_not_an_object_is_refused);
	tcase_add_test(g,
		       test_string_field_of_wrong_type_or_too_long_is_refused);
	tcase_add_test(g, test_integer_field_within_bounds_is_read);
	tcase_add_test(g, test_integer_field_out_of_bounds_names_the_range);
	tcase_add_test(g, test_non_integral_or_unsafe_numbers_are_not_integers);
	tcase_add_test(g, test_double_field_respects_bounds);
	tcase_add_test(g, test_bool_field_must_be_true_or_false);
	tcase_add_test(g, test_enum_field_gives_the_index_or_lists_the_choices);
	tcase_add_test(g, test_uuid_field_must_be_canonical);
	tcase_add_test(g, test_object_and_array_fields_are_type_checked);
	tcase_add_test(g, test_field_names_are_case_sensitive);
	tcase_add_test(g, test_list_pages_carry_a_cursor_or_null_on_the_last);
	suite_add_tcase(s, g);
	return s;
}

CM_TEST_MAIN(make_suite)
