/* test_config.c - the declarative config table: types, bounds, reports. */
#include "common/config.h"
#include "common/err.h"
#include "common/log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "common/banned.h"

#define SECRET_VALUE "s3cr3t-value-that-must-never-show"

/* A fake environment: NULL-terminated name/value pairs. */
struct kv {
	const char *name;
	const char *value;
};

static const char *
kv_lookup(const char *name, void *ctx)
{
	const struct kv *kv = ctx;

	for (; kv && kv->name; kv++)
		if (!strcmp(kv->name, name))
			return kv->value;
	return NULL;
}

static const struct cm_config_item typed_items[] = {
	{ "NAME", CM_CFG_STRING, "svc", 0, 16, 0, "display name" },
	{ "COUNT", CM_CFG_INT, "10", 1, 100, 0, "how many" },
	{ "ANY_INT", CM_CFG_INT, NULL, 0, 0, 0, "unbounded" },
	{ "VERBOSE", CM_CFG_BOOL, "false", 0, 0, 0, "chatty" },
	{ "HTTP_PORT", CM_CFG_PORT, "8080", 1, 0, 0, "listen port" },
	{ "UPSTREAM", CM_CFG_URL, "http://localhost:9000", 0, 0, 0, "peer" },
	{ "LOG_LEVEL", CM_CFG_LEVEL, "info", 0, 0, 0, "log level" },
	{ "OPTIONAL", CM_CFG_STRING, NULL, 0, 0, 0, "may be unset" },
	CM_CONFIG_END
};

static const struct cm_config_item secret_items[] = {
	{ "JWT_SECRET_KEY", CM_CFG_STRING, NULL, 32, 0,
	  CM_CFG_REQUIRED | CM_CFG_SECRET, "HMAC key" },
	{ "API_KEY", CM_CFG_STRING, "dflt-key", 0, 8, CM_CFG_SECRET,
	  "short key" },
	{ "HOOK_URL", CM_CFG_URL, NULL, 0, 0, CM_CFG_SECRET, "webhook" },
	{ "PUBLIC_URL", CM_CFG_URL, NULL, 0, 0, 0, "public" },
	CM_CONFIG_END
};

static const struct cm_config_item db_items[] = {
	{ "DATABASE_URL", CM_CFG_STRING, NULL, 0, 0, CM_CFG_SECRET, "uri" },
	{ "POSTGRES_HOST", CM_CFG_STRING, "localhost", 0, 0, 0, "host" },
	{ "POSTGRES_PORT", CM_CFG_PORT, "5432", 1, 0, 0, "port" },
	{ "POSTGRES_DB", CM_CFG_STRING, "bizosaas", 0, 0, 0, "database" },
	{ "POSTGRES_USER", CM_CFG_STRING, "app", 0, 0, 0, "role" },
	{ "POSTGRES_PASSWORD", CM_CFG_STRING, NULL, 0, 0,
	  CM_CFG_REQUIRED | CM_CFG_SECRET, "password" },
	{ "REDIS_URL", CM_CFG_STRING, NULL, 0, 0, CM_CFG_SECRET, "uri" },
	{ "REDIS_HOST", CM_CFG_STRING, "localhost", 0, 0, 0, "host" },
	{ "REDIS_PORT", CM_CFG_PORT, "6379", 1, 0, 0, "port" },
	{ "REDIS_PASSWORD", CM_CFG_STRING, NULL, 0, 0, CM_CFG_SECRET, "pw" },
	{ "REDIS_DB", CM_CFG_INT, "0", 0, 15, 0, "db" },
	CM_CONFIG_END
};

/* Load table with env; return the status and the report in *report. */
static int
load(struct cm_config **cfg, const struct cm_config_item *items,
     const struct kv *env, char **report)
{
	*cfg = cm_config_new(items);
	ck_assert_ptr_nonnull(*cfg);
	return cm_config_load_from(*cfg, kv_lookup, (void *)env, report);
}

/* Load expecting success. */
static struct cm_config *
load_ok(const struct cm_config_item *items, const struct kv *env)
{
	struct cm_config *cfg;
	char *report = NULL;
	int rc = load(&cfg, items, env, &report);

	ck_assert_msg(rc == 0, "unexpected problems: %s",
		      report ? report : "(none)");
	ck_assert_ptr_null(report);
	return cfg;
}

/* Load expecting failure; the report (caller frees). */
static char *
load_bad(const struct cm_config_item *items, const struct kv *env)
{
	struct cm_config *cfg;
	char *report = NULL;

	ck_assert_int_eq(load(&cfg, items, env, &report), CM_EINVAL);
	ck_assert_ptr_nonnull(report);
	ck_assert_msg(!strncmp(report, "invalid configuration:\n", 23),
		      "report: %s", report);
	cm_config_free(cfg);
	return report;
}

/* Exactly one problem: assert the whole report. */
static void
assert_one_problem(const struct cm_config_item *items, const struct kv *env,
		   const char *line)
{
	char *report = load_bad(items, env);
	char want[1024];

	snprintf(want, sizeof(want), "invalid configuration:\n  %s\n", line);
	ck_assert_str_eq(report, want);
	free(report);
}

START_TEST(test_defaults_apply_when_nothing_is_set)
{
	struct cm_config *cfg = load_ok(typed_items, NULL);

	ck_assert_str_eq(cm_config_str(cfg, "NAME"), "svc");
	ck_assert_int_eq(cm_config_int(cfg, "COUNT"), 10);
	ck_assert(!cm_config_bool(cfg, "VERBOSE"));
	ck_assert_int_eq(cm_config_int(cfg, "HTTP_PORT"), 8080);
	ck_assert_str_eq(cm_config_str(cfg, "UPSTREAM"),
			 "http://localhost:9000");
	ck_assert_int_eq(cm_config_int(cfg, "LOG_LEVEL"), CM_LOG_INFO);
	ck_assert(!cm_config_is_set(cfg, "NAME"));
	ck_assert(!cm_config_is_set(cfg, "COUNT"));
	cm_config_free(cfg);
}
END_TEST

START_TEST(test_unset_without_default_reads_as_null_zero_false)
{
	static const struct cm_config_item items[] = {
		{ "S", CM_CFG_STRING, NULL, 0, 0, 0, "" },
		{ "I", CM_CFG_INT, NULL, 1, 5, 0, "" },
		{ "B", CM_CFG_BOOL, NULL, 0, 0, 0, "" },
		CM_CONFIG_END
	};
	struct cm_config *cfg = load_ok(items, NULL);

	ck_assert_ptr_null(cm_config_str(cfg, "S"));
	ck_assert_ptr_null(cm_config_str(cfg, "I"));
	ck_assert_int_eq(cm_config_int(cfg, "I"), 0);
	ck_assert(!cm_config_bool(cfg, "B"));
	ck_assert(!cm_config_is_set(cfg, "S"));
	cm_config_free(cfg);
}
END_TEST

START_TEST(test_values_from_the_environment_are_converted_by_type)
{
	static const struct kv env[] = { { "NAME", "crm" },
					 { "COUNT", "100" },
					 { "ANY_INT", "-9223372036854775808" },
					 { "VERBOSE", "Yes" },
					 { "HTTP_PORT", "65535" },
					 { "UPSTREAM",
					   "HTTPS://[::1]:8443/api?x=1" },
					 { "LOG_LEVEL", "WARNING" },
					 { "OPTIONAL", "here" },
					 { NULL, NULL } };
	struct cm_config *cfg = load_ok(typed_items, env);

	ck_assert_str_eq(cm_config_str(cfg, "NAME"), "crm");
	ck_assert_int_eq(cm_config_int(cfg, "COUNT"), 100);
	ck_assert(cm_config_int(cfg, "ANY_INT") == INT64_MIN);
	ck_assert(cm_config_bool(cfg, "VERBOSE"));
	ck_assert_int_eq(cm_config_int(cfg, "HTTP_PORT"), 65535);
	ck_assert_str_eq(cm_config_str(cfg, "UPSTREAM"),
			 "HTTPS://[::1]:8443/api?x=1");
	ck_assert_int_eq(cm_config_int(cfg, "LOG_LEVEL"), CM_LOG_WARN);
	ck_assert_str_eq(cm_config_str(cfg, "LOG_LEVEL"), "WARNING");
	ck_assert_str_eq(cm_config_str(cfg, "OPTIONAL"), "here");
	ck_assert(cm_config_is_set(cfg, "NAME"));
	ck_assert(cm_config_is_set(cfg, "COUNT"));
	cm_config_free(cfg);
}
END_TEST

START_TEST(test_empty_string_counts_as_unset)
{
	static const struct kv env[] = { { "NAME", "" },
					 { "COUNT", "" },
					 { "OPTIONAL", "" },
					 { NULL, NULL } };
	struct cm_config *cfg = load_ok(typed_items, env);

	ck_assert_str_eq(cm_config_str(cfg, "NAME"), "svc");
	ck_assert_int_eq(cm_config_int(cfg, "COUNT"), 10);
	ck_assert_ptr_null(cm_config_str(cfg, "OPTIONAL"));
	ck_assert(!cm_config_is_set(cfg, "NAME"));
	cm_config_free(cfg);
}
END_TEST

START_TEST(test_int_bounds_are_inclusive_and_enforced)
{
	static const struct kv low[] = { { "COUNT", "1" }, { NULL, NULL } };
	static const struct kv zero[] = { { "COUNT", "0" }, { NULL, NULL } };
	static const struct kv high[] = { { "COUNT", "101" }, { NULL, NULL } };
	struct cm_config *cfg = load_ok(typed_items, low);

	ck_assert_int_eq(cm_config_int(cfg, "COUNT"), 1);
	cm_config_free(cfg);
	assert_one_problem(typed_items, zero,
			   "COUNT: must be an integer between 1 and 100 "
			   "(got \"0\")");
	assert_one_problem(typed_items, high,
			   "COUNT: must be an integer between 1 and 100 "
			   "(got \"101\")");
}
END_TEST

START_TEST(test_int_garbage_whitespace_and_overflow_are_refused)
{
	static const char *const bad[] = { "12abc", " 12", "12 ",
					   "0x10",  "1.5", "abc" };
	static const struct kv overflow[] = {
		{ "ANY_INT", "9223372036854775808" }, { NULL, NULL }
	};
	struct kv env[] = { { "COUNT", NULL }, { NULL, NULL } };
	char *report;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		env[0].value = bad[i];
		report = load_bad(typed_items, env);
		ck_assert_msg(strstr(report, "COUNT: must be an integer"),
			      "%s: %s", bad[i], report);
		free(report);
	}
	assert_one_problem(typed_items, overflow,
			   "ANY_INT: must be an integer between "
			   "-9223372036854775808 and 9223372036854775807 "
			   "(got \"9223372036854775808\")");
}
END_TEST

START_TEST(test_bool_accepts_the_usual_spellings_and_refuses_others)
{
	static const char *const yes[] = { "true", "TRUE", "1", "yes", "On" };
	static const char *const no[] = { "false", "0", "NO", "off" };
	static const struct kv maybe[] = { { "VERBOSE", "maybe" },
					   { NULL, NULL } };
	struct kv env[] = { { "VERBOSE", NULL }, { NULL, NULL } };
	struct cm_config *cfg;
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		env[0].value = yes[i];
		cfg = load_ok(typed_items, env);
		ck_assert_msg(cm_config_bool(cfg, "VERBOSE"), "%s", yes[i]);
		cm_config_free(cfg);
	}
	for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		env[0].value = no[i];
		cfg = load_ok(typed_items, env);
		ck_assert_msg(!cm_config_bool(cfg, "VERBOSE"), "%s", no[i]);
		cm_config_free(cfg);
	}
	assert_one_problem(typed_items, maybe,
			   "VERBOSE: must be true/false, 1/0, yes/no or "
			   "on/off (got \"maybe\")");
}
END_TEST

START_TEST(test_port_range_follows_min_and_max)
{
	static const struct cm_config_item items[] = {
		{ "ANY_PORT", CM_CFG_PORT, NULL, 0, 0, 0, "0 allowed" },
		{ "LOW_PORT", CM_CFG_PORT, NULL, 1024, 2048, 0, "narrow" },
		CM_CONFIG_END
	};
	static const struct kv ok[] = { { "ANY_PORT", "0" },
					{ "LOW_PORT", "2048" },
					{ NULL, NULL } };
	static const struct kv bad[] = { { "ANY_PORT", "65536" },
					 { "LOW_PORT", "80" },
					 { NULL, NULL } };
	static const struct kv zero[] = { { "HTTP_PORT", "0" },
					  { NULL, NULL } };
	struct cm_config *cfg = load_ok(items, ok);
	char *report;

	ck_assert_int_eq(cm_config_int(cfg, "ANY_PORT"), 0);
	ck_assert_int_eq(cm_config_int(cfg, "LOW_PORT"), 2048);
	cm_config_free(cfg);
	report = load_bad(items, bad);
	ck_assert_str_eq(report,
			 "invalid configuration:\n"
			 "  ANY_PORT: must be an integer between 0 and 65535 "
			 "(got \"65536\")\n"
			 "  LOW_PORT: must be an integer between 1024 and "
			 "2048 (got \"80\")\n");
	free(report);
	assert_one_problem(typed_items, zero,
			   "HTTP_PORT: must be an integer between 1 and 65535 "
			   "(got \"0\")");
}
END_TEST

START_TEST(test_url_must_be_http_or_https_with_a_host)
{
	static const char *const good[] = {
		"http://a",	  "https://example.com/x",
		"http://h:1/",	  "http://user@h:65535?q#f",
		"https://[::1]/", "http://127.0.0.1:8080",
	};
	static const char *const bad[] = {
		"ftp://example.com", "http://",	      "http://:80",
		"http:/example.com", "example.com",   "http://h:0",
		"http://h:65536",    "http://h:port", "http://a b",
		"http://[::1",	     "http://[]:80",  "https://h\n",
	};
	struct kv env[] = { { "UPSTREAM", NULL }, { NULL, NULL } };
	struct cm_config *cfg;
	char *report;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		env[0].value = good[i];
		cfg = load_ok(typed_items, env);
		ck_assert_str_eq(cm_config_str(cfg, "UPSTREAM"), good[i]);
		cm_config_free(cfg);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		env[0].value = bad[i];
		report = load_bad(typed_items, env);
		ck_assert_msg(strstr(report, "  UPSTREAM: must be an http:// "
					     "or https:// URL with a host"),
			      "%s: %s", bad[i], report);
		free(report);
	}
}
END_TEST

START_TEST(test_url_length_bounds_apply)
{
	static const struct cm_config_item items[] = {
		{ "SHORT_URL", CM_CFG_URL, NULL, 0, 12, 0, "" }, CM_CONFIG_END
	};
	static const struct kv ok[] = { { "SHORT_URL", "http://a.b/c" },
					{ NULL, NULL } };
	static const struct kv bad[] = { { "SHORT_URL", "http://a.b/cd" },
					 { NULL, NULL } };

	cm_config_free(load_ok(items, ok));
	assert_one_problem(items, bad,
			   "SHORT_URL: must be an http:// or https:// URL at "
			   "most 12 bytes long (got \"http://a.b/cd\")");
}
END_TEST

START_TEST(test_url_with_user_info_is_never_echoed)
{
	static const struct kv env[] = {
		{ "PUBLIC_URL", "ftp://user:" SECRET_VALUE "@host/" },
		{ "JWT_SECRET_KEY", "0123456789abcdef0123456789abcdef" },
		{ NULL, NULL }
	};
	static const struct kv bad_port[] = {
		{ "PUBLIC_URL", "https://user:" SECRET_VALUE "@host:x/" },
		{ "JWT_SECRET_KEY", "0123456789abcdef0123456789abcdef" },
		{ NULL, NULL }
	};
	char *report = load_bad(secret_items, env);

	ck_assert_str_eq(report, "invalid configuration:\n"
				 "  PUBLIC_URL: must be an http:// or https:// "
				 "URL with a host (value hidden)\n");
	free(report);
	report = load_bad(secret_items, bad_port);
	ck_assert_str_eq(report, "invalid configuration:\n"
				 "  PUBLIC_URL: must be an http:// or https:// "
				 "URL with a host (value hidden)\n");
	free(report);
}
END_TEST

START_TEST(test_level_accepts_names_in_any_case)
{
	static const struct kv dbg[] = { { "LOG_LEVEL", "Debug" },
					 { NULL, NULL } };
	static const struct kv off[] = { { "LOG_LEVEL", "off" },
					 { NULL, NULL } };
	static const struct kv loud[] = { { "LOG_LEVEL", "loud" },
					  { NULL, NULL } };
	struct cm_config *cfg = load_ok(typed_items, dbg);

	ck_assert_int_eq(cm_config_int(cfg, "LOG_LEVEL"), CM_LOG_DEBUG);
	cm_config_free(cfg);
	cfg = load_ok(typed_items, off);
	ck_assert_int_eq(cm_config_int(cfg, "LOG_LEVEL"), CM_LOG_OFF);
	cm_config_free(cfg);
	assert_one_problem(typed_items, loud,
			   "LOG_LEVEL: must be one of debug, info, warn, "
			   "error, off (got \"loud\")");
}
END_TEST

START_TEST(test_string_length_bounds_apply)
{
	static const struct cm_config_item items[] = {
		{ "CODE", CM_CFG_STRING, NULL, 2, 4, 0, "" }, CM_CONFIG_END
	};
	static const char *const good[] = { "ab", "abcd" };
	static const struct kv short_env[] = { { "CODE", "a" },
					       { NULL, NULL } };
	static const struct kv long_env[] = { { "CODE", "abcde" },
					      { NULL, NULL } };
	struct kv env[] = { { "CODE", NULL }, { NULL, NULL } };
	size_t i;

	for (i = 0; i < 2; i++) {
		env[0].value = good[i];
		cm_config_free(load_ok(items, env));
	}
	assert_one_problem(items, short_env,
			   "CODE: must be between 2 and 4 bytes long "
			   "(got \"a\")");
	assert_one_problem(items, long_env,
			   "CODE: must be between 2 and 4 bytes long "
			   "(got \"abcde\")");
	assert_one_problem(typed_items,
			   (const struct kv[]){ { "NAME", "seventeen-chars!!" },
						{ NULL, NULL } },
			   "NAME: must be at most 16 bytes long "
			   "(got \"seventeen-chars!!\")");
}
END_TEST

START_TEST(test_required_setting_missing_is_a_problem)
{
	assert_one_problem(secret_items, NULL,
			   "JWT_SECRET_KEY: required but not set");
}
END_TEST

START_TEST(test_every_problem_is_listed_at_once)
{
	static const struct cm_config_item items[] = {
		{ "POSTGRES_PORT", CM_CFG_PORT, "5432", 1, 0, 0, "" },
		{ "JWT_SECRET_KEY", CM_CFG_STRING, NULL, 32, 0,
		  CM_CFG_REQUIRED | CM_CFG_SECRET, "" },
		{ "COUNT", CM_CFG_INT, "5", 1, 10, 0, "" },
		{ "FINE", CM_CFG_STRING, "x", 0, 0, 0, "" },
		{ "VERBOSE", CM_CFG_BOOL, NULL, 0, 0, 0, "" },
		CM_CONFIG_END
	};
	static const struct kv env[] = { { "POSTGRES_PORT", "abc" },
					 { "COUNT", "11" },
					 { "FINE", "ok" },
					 { "VERBOSE", "2" },
					 { NULL, NULL } };
	char *report = load_bad(items, env);

	ck_assert_str_eq(report,
			 "invalid configuration:\n"
			 "  POSTGRES_PORT: must be an integer between 1 and "
			 "65535 (got \"abc\")\n"
			 "  JWT_SECRET_KEY: required but not set\n"
			 "  COUNT: must be an integer between 1 and 10 "
			 "(got \"11\")\n"
			 "  VERBOSE: must be true/false, 1/0, yes/no or "
			 "on/off (got \"2\")\n");
	free(report);
}
END_TEST

START_TEST(test_secret_values_never_appear_in_the_report)
{
	static const struct kv env[] = {
		{ "JWT_SECRET_KEY", "s3cr3t-but-short" },
		{ "API_KEY", SECRET_VALUE },
		{ "HOOK_URL", "gopher://" SECRET_VALUE },
		{ NULL, NULL }
	};
	char *report = load_bad(secret_items, env);

	ck_assert_msg(!strstr(report, SECRET_VALUE), "%s", report);
	ck_assert_msg(!strstr(report, "s3cr3t"), "%s", report);
	ck_assert_str_eq(report,
			 "invalid configuration:\n"
			 "  JWT_SECRET_KEY: must be at least 32 bytes "
			 "long (value hidden)\n"
			 "  API_KEY: must be at most 8 bytes long "
			 "(value hidden)\n"
			 "  HOOK_URL: must be an http:// or https:// URL "
			 "with a host (value hidden)\n");
	free(report);
}
END_TEST

START_TEST(test_invalid_default_is_reported_as_coming_from_the_default)
{
	static const struct cm_config_item items[] = {
		{ "TIMEOUT_MS", CM_CFG_INT, "fast", 1, 1000, 0, "" },
		{ "TOKEN", CM_CFG_STRING, SECRET_VALUE, 0, 4, CM_CFG_SECRET,
		  "" },
		CM_CONFIG_END
	};
	char *report = load_bad(items, NULL);

	ck_assert_str_eq(report, "invalid configuration:\n"
				 "  TIMEOUT_MS (from default): must be an "
				 "integer between 1 and 1000 (got \"fast\")\n"
				 "  TOKEN (from default): must be at most 4 "
				 "bytes long (value hidden)\n");
	free(report);
}
END_TEST

START_TEST(test_long_or_control_values_are_cut_and_escaped_in_the_report)
{
	char big[200];
	struct kv env[] = { { "COUNT", big }, { NULL, NULL } };
	static const struct kv nl[] = { { "COUNT", "1\n2\"" }, { NULL, NULL } };
	char want[256];

	memset(big, '7', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	snprintf(want, sizeof(want),
		 "COUNT: must be an integer between 1 and 100 "
		 "(got \"%.64s...\")",
		 big);
	assert_one_problem(typed_items, env, want);
	assert_one_problem(typed_items, nl,
			   "COUNT: must be an integer between 1 and 100 "
			   "(got \"1\\n2\\\"\")");
}
END_TEST

START_TEST(test_database_url_overrides_the_postgres_settings)
{
	static const struct kv env[] = {
		{ "DATABASE_URL", "postgresql://crm%40x:p%3Aw%2Fd@db.internal:"
				  "6543/crm%20db" },
		{ "POSTGRES_HOST", "ignored" },
		{ "POSTGRES_PASSWORD", "ignored too" },
		{ NULL, NULL }
	};
	struct cm_config *cfg = load_ok(db_items, env);

	ck_assert_str_eq(cm_config_str(cfg, "POSTGRES_HOST"), "db.internal");
	ck_assert_int_eq(cm_config_int(cfg, "POSTGRES_PORT"), 6543);
	ck_assert_str_eq(cm_config_str(cfg, "POSTGRES_DB"), "crm db");
	ck_assert_str_eq(cm_config_str(cfg, "POSTGRES_USER"), "crm@x");
	ck_assert_str_eq(cm_config_str(cfg, "POSTGRES_PASSWORD"), "p:w/d");
	ck_assert(cm_config_is_set(cfg, "POSTGRES_PORT"));
	ck_assert(cm_config_is_set(cfg, "POSTGRES_DB"));
	cm_config_free(cfg);
}
END_TEST

START_TEST(test_database_url_parts_it_lacks_keep_their_own_values)
{
	static const struct kv env[] = { { "DATABASE_URL", "postgres://[::1]" },
					 { "POSTGRES_USER", "svc" },
					 { "POSTGRES_PASSWORD", "pw" },
					 { NULL, NULL } };
	struct cm_config *cfg = load_ok(db_items, env);

	ck_assert_str_eq(cm_config_str(cfg, "POSTGRES_HOST"), "::1");
	ck_assert_int_eq(cm_config_int(cfg, "POSTGRES_PORT"), 5432);
	ck_assert(!cm_config_is_set(cfg, "POSTGRES_PORT"));
	ck_assert_str_eq(cm_config_str(cfg, "POSTGRES_DB"), "bizosaas");
	ck_assert_str_eq(cm_config_str(cfg, "POSTGRES_USER"), "svc");
	ck_assert_str_eq(cm_config_str(cfg, "POSTGRES_PASSWORD"), "pw");
	cm_config_free(cfg);
}
END_TEST

START_TEST(test_database_url_password_satisfies_a_required_password)
{
	static const struct kv env[] = {
		{ "DATABASE_URL", "postgres://u:pw@h/d" }, { NULL, NULL }
	};
	struct cm_config *cfg = load_ok(db_items, env);

	ck_assert_str_eq(cm_config_str(cfg, "POSTGRES_PASSWORD"), "pw");
	cm_config_free(cfg);
}
END_TEST

START_TEST(test_malformed_database_url_is_a_problem_without_its_value)
{
	static const char *const bad[][2] = {
		{ "mysql://u:" SECRET_VALUE "@h/d", "wrong scheme" },
		{ "postgres://u:" SECRET_VALUE "@/d", "no host" },
		{ "postgres://u:" SECRET_VALUE "@h:0/d",
		  "port must be a number between 1 and 65535" },
		{ "postgres://u:" SECRET_VALUE "@h:54x/d",
		  "port must be a number between 1 and 65535" },
		{ "postgres://u:" SECRET_VALUE "%zz@h/d",
		  "bad percent-encoding" },
		{ "postgres://u:" SECRET_VALUE "%00@h/d",
		  "bad percent-encoding" },
		{ "postgres://u:" SECRET_VALUE "@h/d?sslmode=require",
		  "query parameters and fragments are not supported" },
		{ "postgres://u:" SECRET_VALUE "@h /d",
		  "contains spaces or control characters" },
	};
	struct kv env[] = { { "DATABASE_URL", NULL },
			    { "POSTGRES_PASSWORD", "pw" },
			    { NULL, NULL } };
	char want[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		env[0].value = bad[i][0];
		snprintf(want, sizeof(want),
			 "DATABASE_URL: must be postgres://user:password@"
			 "host:port/dbname (%s) (value hidden)",
			 bad[i][1]);
		assert_one_problem(db_items, env, want);
	}
}
END_TEST

START_TEST(test_redis_url_overrides_the_redis_settings)
{
	static const struct kv env[] = { { "REDIS_URL",
					   "redis://:p%40ss@cache:6380/3" },
					 { "REDIS_HOST", "ignored" },
					 { "POSTGRES_PASSWORD", "pw" },
					 { NULL, NULL } };
	static const struct kv def_user[] = { { "REDIS_URL",
						"redis://default:pw@cache" },
					      { "POSTGRES_PASSWORD", "pw" },
					      { NULL, NULL } };
	struct cm_config *cfg = load_ok(db_items, env);

	ck_assert_str_eq(cm_config_str(cfg, "REDIS_HOST"), "cache");
	ck_assert_int_eq(cm_config_int(cfg, "REDIS_PORT"), 6380);
	ck_assert_str_eq(cm_config_str(cfg, "REDIS_PASSWORD"), "p@ss");
	ck_assert_int_eq(cm_config_int(cfg, "REDIS_DB"), 3);
	ck_assert(cm_config_is_set(cfg, "REDIS_DB"));
	cm_config_free(cfg);
	cfg = load_ok(db_items, def_user);
	ck_assert_str_eq(cm_config_str(cfg, "REDIS_PASSWORD"), "pw");
	ck_assert_int_eq(cm_config_int(cfg, "REDIS_PORT"), 6379);
	ck_assert_int_eq(cm_config_int(cfg, "REDIS_DB"), 0);
	cm_config_free(cfg);
}
END_TEST

START_TEST(test_malformed_redis_url_is_a_problem_without_its_value)
{
	static const char *const bad[][2] = {
		{ "rediss://:" SECRET_VALUE "@h", "wrong scheme" },
		{ "redis://:" SECRET_VALUE "@", "no host" },
		{ "redis://alice:" SECRET_VALUE "@h",
		  "user names other than 'default' are not supported" },
		{ "redis://:" SECRET_VALUE "@h/zero",
		  "database must be a number" },
	};
	struct kv env[] = { { "REDIS_URL", NULL },
			    { "POSTGRES_PASSWORD", "pw" },
			    { NULL, NULL } };
	char want[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		env[0].value = bad[i][0];
		snprintf(want, sizeof(want),
			 "REDIS_URL: must be redis://[:password@]host[:port]"
			 "[/db] (%s) (value hidden)",
			 bad[i][1]);
		assert_one_problem(db_items, env, want);
	}
}
END_TEST

START_TEST(test_url_parts_are_checked_by_their_own_items)
{
	static const struct kv env[] = { { "REDIS_URL", "redis://h/16" },
					 { "POSTGRES_PASSWORD", "pw" },
					 { NULL, NULL } };

	assert_one_problem(db_items, env,
			   "REDIS_DB (from REDIS_URL): must be an integer "
			   "between 0 and 15 (got \"16\")");
}
END_TEST

START_TEST(test_urls_without_target_items_are_just_strings)
{
	static const struct cm_config_item items[] = {
		{ "DATABASE_URL", CM_CFG_STRING, NULL, 0, 0, 0, "" },
		CM_CONFIG_END
	};
	static const struct kv env[] = { { "DATABASE_URL", "postgres://h/d" },
					 { NULL, NULL } };
	struct cm_config *cfg = load_ok(items, env);

	ck_assert_str_eq(cm_config_str(cfg, "DATABASE_URL"), "postgres://h/d");
	cm_config_free(cfg);
}
END_TEST

START_TEST(test_loading_again_starts_over)
{
	static const struct kv first[] = { { "COUNT", "50" },
					   { "OPTIONAL", "x" },
					   { NULL, NULL } };
	struct cm_config *cfg = load_ok(typed_items, first);
	char *report = (char *)"untouched";

	ck_assert_int_eq(cm_config_load_from(cfg, kv_lookup, NULL, &report), 0);
	ck_assert_ptr_null(report);
	ck_assert_int_eq(cm_config_int(cfg, "COUNT"), 10);
	ck_assert_ptr_null(cm_config_str(cfg, "OPTIONAL"));
	ck_assert(!cm_config_is_set(cfg, "COUNT"));
	cm_config_free(cfg);
}
END_TEST

START_TEST(test_problems_pointer_may_be_null)
{
	struct cm_config *cfg = cm_config_new(secret_items);

	ck_assert_int_eq(cm_config_load_from(cfg, kv_lookup, NULL, NULL),
			 CM_EINVAL);
	cm_config_free(cfg);
	cm_config_free(NULL);
}
END_TEST

START_TEST(test_load_reads_the_process_environment)
{
	static const struct cm_config_item items[] = {
		{ "CM_TEST_CONFIG_COUNT", CM_CFG_INT, "1", 1, 100, 0, "" },
		CM_CONFIG_END
	};
	struct cm_config *cfg = cm_config_new(items);
	char *report = NULL;

	/* Check forks each test, so this stays in this test */
	ck_assert_int_eq(setenv("CM_TEST_CONFIG_COUNT", "42", 1), 0);
	ck_assert_int_eq(cm_config_load(cfg, &report), 0);
	ck_assert_int_eq(cm_config_int(cfg, "CM_TEST_CONFIG_COUNT"), 42);
	ck_assert(cm_config_is_set(cfg, "CM_TEST_CONFIG_COUNT"));
	ck_assert_int_eq(setenv("CM_TEST_CONFIG_COUNT", "0", 1), 0);
	ck_assert_int_eq(cm_config_load(cfg, &report), CM_EINVAL);
	ck_assert_ptr_nonnull(strstr(report, "CM_TEST_CONFIG_COUNT"));
	free(report);
	cm_config_free(cfg);
}
END_TEST

START_TEST(test_getter_on_unknown_name_aborts)
{
	struct cm_config *cfg = load_ok(typed_items, NULL);

	cm_config_str(cfg, "NOT_IN_TABLE");
}
END_TEST

START_TEST(test_int_getter_on_a_string_setting_aborts)
{
	struct cm_config *cfg = load_ok(typed_items, NULL);

	cm_config_int(cfg, "NAME");
}
END_TEST

START_TEST(test_bool_getter_on_an_int_setting_aborts)
{
	struct cm_config *cfg = load_ok(typed_items, NULL);

	cm_config_bool(cfg, "COUNT");
}
END_TEST

START_TEST(test_duplicate_names_in_a_table_abort)
{
	static const struct cm_config_item items[] = {
		{ "TWICE", CM_CFG_STRING, NULL, 0, 0, 0, "" },
		{ "TWICE", CM_CFG_INT, NULL, 0, 0, 0, "" },
		CM_CONFIG_END
	};

	cm_config_new(items);
}
END_TEST

/* cm_config_help's output for items, malloc'd. */
static char *
help_text(const struct cm_config_item *items)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	ck_assert_ptr_nonnull(f);
	cm_config_help(items, f);
	ck_assert_int_eq(fclose(f), 0);
	return text;
}

/* The line of text that starts with "  name ". */
static const char *
help_line(const char *text, const char *name, char *out, size_t n)
{
	char key[64];
	const char *p, *nl;

	snprintf(key, sizeof(key), "  %s ", name);
	p = strstr(text, key);
	ck_assert_msg(p != NULL, "no line for %s in:\n%s", name, text);
	nl = strchr(p, '\n');
	ck_assert_ptr_nonnull(nl);
	snprintf(out, n, "%.*s", (int)(nl - p), p);
	return out;
}

START_TEST(test_help_prints_one_line_per_item_with_defaults)
{
	char *text = help_text(typed_items);
	char line[256];
	size_t lines = 0;
	const char *p;

	for (p = text; *p; p++)
		lines += *p == '\n';
	ck_assert_int_eq(lines, 8);
	help_line(text, "COUNT", line, sizeof(line));
	ck_assert_ptr_nonnull(strstr(line, " int "));
	ck_assert_ptr_nonnull(strstr(line, " 10 "));
	ck_assert_ptr_nonnull(strstr(line, "how many"));
	ck_assert_ptr_nonnull(strstr(line, "[1..100]"));
	help_line(text, "UPSTREAM", line, sizeof(line));
	ck_assert_ptr_nonnull(strstr(line, " url "));
	ck_assert_ptr_nonnull(strstr(line, "http://localhost:9000"));
	help_line(text, "OPTIONAL", line, sizeof(line));
	ck_assert_ptr_nonnull(strstr(line, "(none)"));
	free(text);
}
END_TEST

START_TEST(test_help_hides_secret_defaults_and_marks_required)
{
	static const struct cm_config_item items[] = {
		{ "API_KEY", CM_CFG_STRING, SECRET_VALUE, 0, 0, CM_CFG_SECRET,
		  "key" },
		{ "JWT_SECRET_KEY", CM_CFG_STRING, NULL, 32, 0,
		  CM_CFG_REQUIRED | CM_CFG_SECRET, "hmac" },
		{ "TENANT", CM_CFG_STRING, NULL, 0, 0, CM_CFG_REQUIRED, "t" },
		CM_CONFIG_END
	};
	char *text = help_text(items);
	char line[256];

	ck_assert_msg(!strstr(text, "s3cr3t"), "%s", text);
	help_line(text, "API_KEY", line, sizeof(line));
	ck_assert_ptr_nonnull(strstr(line, "(secret)"));
	help_line(text, "JWT_SECRET_KEY", line, sizeof(line));
	ck_assert_ptr_nonnull(strstr(line, "(required) (secret)"));
	ck_assert_ptr_nonnull(strstr(line, "[at least 32 bytes]"));
	help_line(text, "TENANT", line, sizeof(line));
	ck_assert_ptr_nonnull(strstr(line, "(required)"));
	free(text);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("config");
	TCase *types = tcase_create("types");
	TCase *report = tcase_create("report");
	TCase *urls = tcase_create("urls");
	TCase *misuse = tcase_create("misuse");

	tcase_add_test(types, test_defaults_apply_when_nothing_is_set);
	tcase_add_test(types,
		       test_unset_without_default_reads_as_null_zero_false);
	tcase_add_test(types,
		       test_values_from_the_environment_are_converted_by_type);
	tcase_add_test(types, test_empty_string_counts_as_unset);
	tcase_add_test(types, test_int_bounds_are_inclusive_and_enforced);
	tcase_add_test(types,
		       test_int_garbage_whitespace_and_overflow_are_refused);
	tcase_add_test(
		types,
		test_bool_accepts_the_usual_spellings_and_refuses_others);
	tcase_add_test(types, test_port_range_follows_min_and_max);
	tcase_add_test(types, test_url_must_be_http_or_https_with_a_host);
	tcase_add_test(types, test_url_length_bounds_apply);
	tcase_add_test(types, test_level_accepts_names_in_any_case);
	tcase_add_test(types, test_string_length_bounds_apply);
	tcase_add_test(types, test_loading_again_starts_over);
	tcase_add_test(types, test_load_reads_the_process_environment);
	suite_add_tcase(s, types);

	tcase_add_test(report, test_required_setting_missing_is_a_problem);
	tcase_add_test(report, test_every_problem_is_listed_at_once);
	tcase_add_test(report, test_secret_values_never_appear_in_the_report);
	tcase_add_test(report, test_url_with_user_info_is_never_echoed);
	tcase_add_test(
		report,
		test_invalid_default_is_reported_as_coming_from_the_default);
	tcase_add_test(
		report,
		test_long_or_control_values_are_cut_and_escaped_in_the_report);
	tcase_add_test(report, test_problems_pointer_may_be_null);
	tcase_add_test(report,
		       test_help_prints_one_line_per_item_with_defaults);
	tcase_add_test(report,
		       test_help_hides_secret_defaults_and_marks_required);
	suite_add_tcase(s, report);

	tcase_add_test(urls, test_database_url_overrides_the_postgres_settings);
	tcase_add_test(urls,
		       test_database_url_parts_it_lacks_keep_their_own_values);
	tcase_add_test(
		urls, test_database_url_password_satisfies_a_required_password);
	tcase_add_test(
		urls,
		test_malformed_database_url_is_a_problem_without_its_value);
	tcase_add_test(urls, test_redis_url_overrides_the_redis_settings);
	tcase_add_test(urls,
		       test_malformed_redis_url_is_a_problem_without_its_value);
	tcase_add_test(urls, test_url_parts_are_checked_by_their_own_items);
	tcase_add_test(urls, test_urls_without_target_items_are_just_strings);
	suite_add_tcase(s, urls);

	tcase_add_test_raise_signal(misuse, test_getter_on_unknown_name_aborts,
				    SIGABRT);
	tcase_add_test_raise_signal(
		misuse, test_int_getter_on_a_string_setting_aborts, SIGABRT);
	tcase_add_test_raise_signal(
		misuse, test_bool_getter_on_an_int_setting_aborts, SIGABRT);
	tcase_add_test_raise_signal(
		misuse, test_duplicate_names_in_a_table_abort, SIGABRT);
	suite_add_tcase(s, misuse);
	return s;
}

CM_TEST_MAIN(make_suite)
