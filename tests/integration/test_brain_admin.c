/*
 * test_brain_admin.c - brain's administration extras against the real
 * PostgreSQL and Redis: the --create-super-admin command (environment and
 * stdin, weak passwords refused, idempotent, promotion), usage (API calls
 * and counters services report, per tenant), and the paginated members,
 * API keys and invitations lists, max_users held under concurrent adds
 * and invitations, and the purge of deleted tenants after their grace
 * (1 s here, BRAIN_TENANT_DELETE_GRACE_S).
 */
#include "svc.h"
#include "testutil.h"

#include "common/auth.h"
#include "common/buf.h"
#include "common/mem.h"
#include "common/ratelimit.h"
#include "common/redis.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/banned.h"

#define PW "correct-horse-battery-staple"

static struct cm_test_svc brain;
static char admin_email[80];
static char *admin_token;

/* One request with an optional bearer token, body and extra headers. */
static struct cm_test_resp
call(const char *method, const char *path, const char *token, const char *body,
     const char *extra1, const char *extra2)
{
	struct cm_buf auth = CM_BUF_INIT(0);
	const char *hs[5] = { NULL, NULL, NULL, NULL, NULL };
	struct cm_test_resp r;
	int n = 0;

	if (token) {
		cm_buf_printf(&auth, "Authorization: Bearer %s", token);
		hs[n++] = cm_buf_str(&auth);
	}
	if (body)
		hs[n++] = "Content-Type: application/json";
	if (extra1)
		hs[n++] = extra1;
	if (extra2)
		hs[n++] = extra2;
	ck_assert_int_eq(cm_test_http(method, brain.port, path, hs, body, &r),
			 0);
	cm_buf_release(&auth);
	return r;
}

static const char *
jstr(const cJSON *j, const char *name)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, name);

	return cJSON_IsString(o) ? o->valuestring : "";
}

static double
jnum(const cJSON *j, const char *a, const char *b)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, a);

	if (b)
		o = cJSON_GetObjectItemCaseSensitive(o, b);
	return cJSON_IsNumber(o) ? o->valuedouble : -1;
}

static char *
login_pw(const char *email, const char *pw)
{
	struct cm_buf b = CM_BUF_INIT(0);
	struct cm_test_resp r;
	char *tok;

	cm_buf_printf(&b, "{\"email\":\"%s\",\"password\":\"%s\"}", email, pw);
	r = call("POST", "/api/auth/login", NULL, cm_buf_str(&b), NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	tok = cm_xstrdup(jstr(r.json, "access_token"));
	cm_test_resp_release(&r);
	cm_buf_release(&b);
	return tok;
}

static char *
login(const char *email)
{
	return login_pw(email, PW);
}

/* `brain --create-super-admin=EMAIL` with BRAIN_ADMIN_PASSWORD=pw; the
   exit status, its output in *out (malloc'd). */
static int
create_admin_env(const char *email, const char *pw, char **out)
{
	char arg[160], env_pw[300];
	const char *env[] = { env_pw, NULL };

	snprintf(arg, sizeof(arg), "--create-super-admin=%s", email);
	snprintf(env_pw, sizeof(env_pw), "BRAIN_ADMIN_PASSWORD=%s",
		 pw ? pw : "");
	return cm_test_svc_run("brain", env, arg, out);
}

/* `brain --create-super-admin EMAIL` with input on its stdin (no
   BRAIN_ADMIN_PASSWORD); the exit status, its output in *out. */
static int
create_admin_stdin(const char *email, const char *input, char **out)
{
	char bin[600], log[600], pwvar[96], dir[600];
	struct cm_buf b = CM_BUF_INIT(1 << 16);
	char chunk[4096];
	int fds[2], st = 0, fd;
	pid_t pid;
	FILE *f;
	size_t n;

	snprintf(bin, sizeof(bin), "%s/bin/brain", cm_test_env("BZ_BUILD"));
	snprintf(log, sizeof(log), "%s/test-logs/brain-stdin-%d.log",
		 cm_test_env("BZ_BUILD"), (int)getpid());
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(fds[0], 0);
		close(fds[0]);
		close(fds[1]);
		fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		snprintf(pwvar, sizeof(pwvar), "%s",
			 "TEST_PG_PASSWORD_BZ_BRAIN");
		setenv("POSTGRES_USER", "bz_brain", 1);
		setenv("POSTGRES_PASSWORD", getenv(pwvar), 1);
		snprintf(dir, sizeof(dir), "%s/services/brain/migrations",
			 getenv("BZ_ROOT"));
		setenv("MIGRATIONS_DIR", dir, 1);
		setenv("DB_STARTUP_WAIT_S", "5", 1);
		unsetenv("BRAIN_ADMIN_PASSWORD");
		execl(bin, bin, "--create-super-admin", email, (char *)NULL);
		_exit(127);
	}
	close(fds[0]);
	if (input)
		ck_assert_int_eq(write(fds[1], input, strlen(input)),
				 (ssize_t)strlen(input));
	close(fds[1]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	f = fopen(log, "r");
	while (f && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		cm_buf_add(&b, chunk, n);
	if (f)
		fclose(f);
	unlink(log);
	*out = cm_buf_detach(&b, NULL);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void
admin_setup(void)
{
	const char *env[] = { "DOMAIN=bz.test", "TENANT_CACHE_TTL_MS=1000",
			      "BRAIN_TENANT_DELETE_GRACE_S=1",
			      "BRAIN_PURGE_INTERVAL_S=1", NULL };
	char name[40], *out = NULL;
	int rc;

	cm_test_require_stack();
	cm_test_fresh_name(name, sizeof(name), "root");
	snprintf(admin_email, sizeof(admin_email), "%s@example.test", name);
	rc = create_admin_env(admin_email, PW, &out);
	ck_assert_msg(rc == 0, "create admin: %d %s", rc, out);
	free(out);
	ck_assert_int_eq(cm_test_svc_start(&brain, "brain", env), 0);
	admin_token = login(admin_email);
}

static void
admin_teardown(void)
{
	cm_test_svc_stop(&brain);
	free(admin_token);
	admin_token = NULL;
}

/* A new tenant: id[37]. */
static void
make_tenant(char id[37], const char *extra_json)
{
	struct cm_buf b = CM_BUF_INIT(0);
	struct cm_test_resp r;
	char slug[64];

	cm_test_fresh_name(slug, sizeof(slug), "t");
	cm_buf_printf(&b,
		      "{\"slug\":\"%s\",\"name\":\"Tenant %s\","
		      "\"status\":\"active\"%s%s}",
		      slug, slug, extra_json ? "," : "",
		      extra_json ? extra_json : "");
	r = call("POST", "/api/admin/tenants", admin_token, cm_buf_str(&b),
		 NULL, NULL);
	cm_test_expect(&r, 201, NULL);
	cm_strlcpy(id, jstr(r.json, "id"), 37);
	cm_test_resp_release(&r);
	cm_buf_release(&b);
}

/* A new user with role in tenant tid (email into email[80]). */
static void
make_member(const char *tid, const char *role, char email[80])
{
	char path[128], body[256], name[40];

	cm_test_fresh_name(name, sizeof(name), role);
	snprintf(email, 80, "%s@example.test", name);
	snprintf(path, sizeof(path), "/api/admin/tenants/%s/members", tid);
	snprintf(body, sizeof(body),
		 "{\"email\":\"%s\",\"password\":\"%s\",\"role\":\"%s\"}",
		 email, PW, role);
	cm_test_expect_free(call("POST", path, admin_token, body, NULL, NULL),
			    201, NULL);
}

/* A tenant with an owner signed in: *owner_token malloc'd. */
static char *
tenant_with_owner(char tid[37], const char *extra_json)
{
	char email[80];

	make_tenant(tid, extra_json);
	make_member(tid, "owner", email);
	return login(email);
}

/* ---- --create-super-admin ---- */

START_TEST(test_create_super_admin_is_idempotent_and_signs_in)
{
	char name[40], email[80], *out = NULL, *tok;

	cm_test_fresh_name(name, sizeof(name), "ops");
	snprintf(email, sizeof(email), "%s@example.test", name);
	ck_assert_int_eq(create_admin_env(email, PW, &out), 0);
	ck_assert_msg(strstr(out, "created super admin"), "%s", out);
	ck_assert_ptr_null(strstr(out, PW)); /* never echoed */
	free(out);
	ck_assert_int_eq(create_admin_env(email, "other-but-strong-9xQ", &out),
			 0);
	ck_assert_msg(strstr(out, "already a super admin"), "%s", out);
	free(out);
	tok = login(email); /* the first password stands */
	cm_test_expect_free(
		call("GET", "/api/admin/tenants", tok, NULL, NULL, NULL), 200,
		NULL);
	free(tok);
}
END_TEST

START_TEST(test_create_super_admin_reads_the_password_from_stdin)
{
	char name[40], email[80], *out = NULL, *tok;

	cm_test_fresh_name(name, sizeof(name), "stdin");
	snprintf(email, sizeof(email), "%s@example.test", name);
	ck_assert_int_eq(create_admin_stdin(email, PW "\n", &out), 0);
	ck_assert_msg(strstr(out, "created super admin"), "%s", out);
	free(out);
	tok = login(email);
	cm_test_expect_free(
		call("GET", "/api/admin/tenants", tok, NULL, NULL, NULL), 200,
		NULL);
	free(tok);
	cm_test_fresh_name(name, sizeof(name), "nopw");
	snprintf(email, sizeof(email), "%s@example.test", name);
	ck_assert_int_eq(create_admin_stdin(email, "", &out), 2);
	ck_assert_msg(strstr(out, "no password"), "%s", out);
	free(out);
}
END_TEST

START_TEST(test_create_super_admin_refuses_weak_passwords_and_bad_emails)
{
	static const char *const weak[] = {
		"short-9xQ",	    /* under 12 */
		"aaaaaaaaaaaaaaaa", /* one character */
		"abababababababab", /* two */
		"MyPassword-2024!", /* a common word */
		"zz-123456-zz-qq",  /* a common sequence */
		NULL
	};
	char email[80], name[40], mine[80], *out = NULL, *tok;
	int i;

	cm_test_fresh_name(name, sizeof(name), "weakling");
	snprintf(email, sizeof(email), "%s@example.test", name);
	for (i = 0; weak[i]; i++) {
		ck_assert_int_eq(create_admin_env(email, weak[i], &out), 2);
		ck_assert_msg(strstr(out, "password refused"), "%s: %s",
			      weak[i], out);
		ck_assert_ptr_null(strstr(out, weak[i]));
		free(out);
	}
	snprintf(mine, sizeof(mine), "Gorilla-%s-9Q", name); /* its name */
	ck_assert_int_eq(create_admin_env(email, mine, &out), 2);
	ck_assert_msg(strstr(out, "account's name"), "%s", out);
	free(out);
	ck_assert_int_eq(create_admin_env(email, "", &out), 2);
	free(out);
	/* nothing was created: a good password now creates the account */
	ck_assert_int_eq(create_admin_env(email, PW, &out), 0);
	ck_assert_msg(strstr(out, "created super admin"), "%s", out);
	free(out);
	tok = login(email);
	free(tok);
	ck_assert_int_eq(create_admin_env("not-an-email", PW, &out), 2);
	free(out);
	ck_assert_int_eq(
		cm_test_svc_run("brain", NULL, "--create-super-admin", &out),
		2);
	free(out);
}
END_TEST

START_TEST(test_create_super_admin_promotes_an_existing_account)
{
	char tid[37], email[80], *out = NULL, *tok;

	make_tenant(tid, NULL);
	make_member(tid, "user", email);
	tok = login(email);
	cm_test_expect_free(
		call("GET", "/api/admin/tenants", tok, NULL, NULL, NULL), 403,
		"forbidden");
	free(tok);
	ck_assert_int_eq(create_admin_env(email, NULL, &out), 0);
	ck_assert_msg(strstr(out, "promoted"), "%s", out);
	free(out);
	tok = login(email); /* same password, now a platform admin */
	cm_test_expect_free(
		call("GET", "/api/admin/tenants", tok, NULL, NULL, NULL), 200,
		NULL);
	free(tok);
}
END_TEST

/* ---- usage ---- */

/* A service token from crm to brain (malloc'd). */
static char *
service_token(void)
{
	char errbuf[CM_ERRBUF_LEN] = "", *tok = NULL;

	ck_assert_int_eq(cm_service_token_mint(cm_test_env("SERVICE_SECRET"),
					       "crm", "brain", 30, &tok,
					       errbuf),
			 0);
	return tok;
}

/* POST /api/tenant/usage as crm for tid. */
static struct cm_test_resp
report(const char *tid, const char *body)
{
	char h1[600], h2[80], *tok = service_token();
	struct cm_test_resp r;

	snprintf(h1, sizeof(h1), "X-Service-Token: %s", tok);
	snprintf(h2, sizeof(h2), "X-Tenant-ID: %s", tid);
	r = call("POST", "/api/tenant/usage", NULL, body, h1, tid ? h2 : NULL);
	free(tok);
	return r;
}

static void
redis_connect(void)
{
	struct cm_redis_config rc = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	int64_t port;

	rc.host = cm_test_env("REDIS_HOST");
	ck_assert_int_eq(
		cm_parse_i64(cm_test_env("REDIS_PORT"), 1, 65535, &port), 0);
	rc.port = (int)port;
	ck_assert_int_eq(cm_redis_init(&rc, errbuf), 0);
}

START_TEST(test_usage_shows_api_calls_and_reported_counters_per_tenant)
{
	char ta[37], tb[37], errbuf[CM_ERRBUF_LEN] = "";
	char *tok_a, *tok_b;
	const cJSON *counters;
	struct cm_test_resp r;
	int i;

	tok_a = tenant_with_owner(ta, NULL);
	tok_b = tenant_with_owner(tb, NULL);
	redis_connect(); /* the gateway's part: one api_call a request */
	for (i = 0; i < 7; i++)
		ck_assert_int_eq(cm_usage_incr(ta, "api_calls", 1, errbuf), 0);
	ck_assert_int_eq(cm_usage_incr(tb, "api_calls", 100, errbuf), 0);
	cm_test_expect_free(
		report(ta, "{\"counter\":\"leads_created\",\"n\":2}"), 204,
		NULL);
	cm_test_expect_free(
		report(ta, "{\"counter\":\"leads_created\",\"n\":3}"), 204,
		NULL);
	cm_test_expect_free(
		report(tb, "{\"counter\":\"images.generated\",\"n\":9}"), 204,
		NULL);
	r = call("GET", "/api/tenant/usage", tok_a, NULL, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_str_eq(jstr(r.json, "tenant_id"), ta);
	ck_assert(jnum(r.json, "usage", "users") == 1);
	ck_assert(jnum(r.json, "usage", "api_calls_today") == 7);
	ck_assert(jnum(r.json, "usage", "api_calls_this_month") == 7);
	counters = cJSON_GetObjectItemCaseSensitive(r.json, "counters");
	ck_assert(jnum(counters, "day", "leads_created") == 5);
	ck_assert(jnum(counters, "month", "leads_created") == 5);
	ck_assert(jnum(counters, "month", "images.generated") == -1);
	ck_assert(jnum(r.json, "limits", "max_users") > 0);
	cm_test_resp_release(&r);
	r = call("GET", "/api/tenant/usage", tok_b, NULL, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert(jnum(r.json, "usage", "api_calls_today") == 100);
	counters = cJSON_GetObjectItemCaseSensitive(r.json, "counters");
	ck_assert(jnum(counters, "day", "images.generated") == 9);
	ck_assert(jnum(counters, "day", "leads_created") == -1);
	cm_test_resp_release(&r);
	free(tok_a);
	free(tok_b);
}
END_TEST

START_TEST(test_only_services_report_usage_and_bad_reports_are_refused)
{
	char tid[37], *tok;

	tok = tenant_with_owner(tid, NULL);
	cm_test_expect_free(call("POST", "/api/tenant/usage", tok,
				 "{\"counter\":\"leads_created\",\"n\":1}",
				 NULL, NULL),
			    403, "forbidden");
	cm_test_expect_free(report(tid, "{\"counter\":\"api_calls\",\"n\":1}"),
			    400, "validation_failed");
	cm_test_expect_free(report(tid, "{\"counter\":\"users\",\"n\":1}"), 400,
			    "validation_failed");
	cm_test_expect_free(
		report(tid, "{\"counter\":\"Leads Created\",\"n\":1}"), 400,
		"validation_failed");
	cm_test_expect_free(report(tid, "{\"counter\":\"leads\",\"n\":0}"), 400,
			    "validation_failed");
	cm_test_expect_free(report(tid, "{\"counter\":\"leads\",\"n\":1.5}"),
			    400, "validation_failed");
	cm_test_expect_free(report(tid, "{\"counter\":\"leads\"}"), 400,
			    "validation_failed");
	cm_test_expect_free(report(tid, "not json"), 400, NULL);
	cm_test_expect_free(report(NULL, "{\"counter\":\"leads\",\"n\":1}"),
			    400, "tenant_required");
	free(tok);
}
END_TEST

START_TEST(test_usage_answers_503_while_redis_is_down)
{
	char tid[37], *tok;
	struct cm_test_resp r;

	tok = tenant_with_owner(tid, NULL);
	ck_assert_int_eq(cm_test_stack("stop-redis"), 0);
	r = report(tid, "{\"counter\":\"leads_created\",\"n\":1}");
	ck_assert_int_eq(cm_test_stack("start-redis"), 0);
	ck_assert_msg(r.status == 503, "%ld %s", r.status, r.body);
	cm_test_resp_release(&r);
	cm_test_expect_free(
		report(tid, "{\"counter\":\"leads_created\",\"n\":1}"), 204,
		NULL);
	free(tok);
}
END_TEST

/* ---- pages ---- */

/* Walk every page of path at limit; the ids (field) in order, joined by
   spaces (malloc'd), and the number of pages. */
static char *
walk(const char *path, const char *tok, int limit, const char *field,
     int *pages)
{
	struct cm_buf ids = CM_BUF_INIT(0), url = CM_BUF_INIT(0);
	char cursor[128] = "";
	struct cm_test_resp r;
	const cJSON *it, *next;

	*pages = 0;
	for (;;) {
		cm_buf_reset(&url);
		cm_buf_printf(&url, "%s?limit=%d%s%s", path, limit,
			      cursor[0] ? "&cursor=" : "", cursor);
		r = call("GET", cm_buf_str(&url), tok, NULL, NULL, NULL);
		cm_test_expect(&r, 200, NULL);
		(*pages)++;
		it = cJSON_GetObjectItemCaseSensitive(r.json, "items");
		ck_assert(cJSON_GetArraySize(it) <= limit);
		cJSON_ArrayForEach(it, it)
			cm_buf_printf(&ids, "%s ", jstr(it, field));
		next = cJSON_GetObjectItemCaseSensitive(r.json, "next_cursor");
		ck_assert(cJSON_IsNull(next) || cJSON_IsString(next));
		if (!cJSON_IsString(next)) {
			cm_test_resp_release(&r);
			break;
		}
		cm_strlcpy(cursor, next->valuestring, sizeof(cursor));
		cm_test_resp_release(&r);
		ck_assert_int_lt(*pages, 50);
	}
	cm_buf_release(&url);
	return cm_buf_detach(&ids, NULL);
}

/* Every word of all appears exactly once. */
static int
count_words(const char *all)
{
	int n = 0;

	for (; *all; all++)
		n += *all == ' ';
	return n;
}

START_TEST(test_members_come_in_pages_in_join_order_without_repeats)
{
	char tid[37], email[80], *tok, *all, *one;
	int pages, i;

	tok = tenant_with_owner(tid, "\"limits\":{\"max_users\":20}");
	for (i = 0; i < 5; i++)
		make_member(tid, "user", email);
	all = walk("/api/tenant/members", tok, 200, "user_id", &pages);
	ck_assert_int_eq(pages, 1);
	ck_assert_int_eq(count_words(all), 6);
	one = walk("/api/tenant/members", tok, 2, "user_id", &pages);
	ck_assert_int_eq(pages, 3); /* 2 + 2 + 2, the last says no more */
	ck_assert_str_eq(one, all);
	free(one);
	one = walk("/api/tenant/members", tok, 4, "user_id", &pages);
	ck_assert_int_eq(pages, 2);
	ck_assert_str_eq(one, all);
	free(one);
	free(all);
	cm_test_expect_free(call("GET", "/api/tenant/members?limit=0", tok,
				 NULL, NULL, NULL),
			    400, "bad_request");
	cm_test_expect_free(call("GET", "/api/tenant/members?limit=201", tok,
				 NULL, NULL, NULL),
			    400, "bad_request");
	cm_test_expect_free(call("GET", "/api/tenant/members?cursor=x.y", tok,
				 NULL, NULL, NULL),
			    400, "bad_cursor");
	cm_test_expect_free(call("GET",
				 "/api/tenant/members?cursor=12.not-a-uuid",
				 tok, NULL, NULL, NULL),
			    400, "bad_cursor");
	free(tok);
}
END_TEST

START_TEST(test_keys_and_invitations_come_in_pages_and_stay_in_the_tenant)
{
	char ta[37], tb[37], body[160], *tok_a, *tok_b, *a, *b, *one;
	struct cm_test_resp r;
	int pages, i;

	tok_a = tenant_with_owner(ta, "\"limits\":{\"max_users\":20}");
	tok_b = tenant_with_owner(tb, NULL);
	for (i = 0; i < 3; i++) {
		snprintf(body, sizeof(body),
			 "{\"name\":\"k%d\",\"scopes\":[\"crm:read\"]}", i);
		cm_test_expect_free(call("POST", "/api/tenant/api-keys", tok_a,
					 body, NULL, NULL),
				    201, NULL);
		snprintf(body, sizeof(body),
			 "{\"email\":\"inv%d-%d@example.test\","
			 "\"role\":\"user\"}",
			 i, (int)getpid());
		cm_test_expect_free(call("POST", "/api/tenant/invitations",
					 tok_a, body, NULL, NULL),
				    201, NULL);
	}
	cm_test_expect_free(call("POST", "/api/tenant/api-keys", tok_b,
				 "{\"name\":\"b\",\"scopes\":[\"crm:read\"]}",
				 NULL, NULL),
			    201, NULL);
	a = walk("/api/tenant/api-keys", tok_a, 200, "id", &pages);
	ck_assert_int_eq(count_words(a), 3);
	one = walk("/api/tenant/api-keys", tok_a, 2, "id", &pages);
	ck_assert_int_eq(pages, 2);
	ck_assert_str_eq(one, a);
	free(one);
	b = walk("/api/tenant/api-keys", tok_b, 2, "id", &pages);
	ck_assert_int_eq(count_words(b), 1);
	ck_assert_ptr_null(strstr(a, b)); /* B's key never in A's pages */
	free(a);
	free(b);
	a = walk("/api/tenant/invitations", tok_a, 1, "id", &pages);
	ck_assert_int_eq(count_words(a), 3);
	ck_assert_int_eq(pages, 3); /* a full last page says no more */
	free(a);
	r = call("GET", "/api/tenant/invitations?limit=1", tok_a, NULL, NULL,
		 NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_ptr_null(strstr(r.body, "\"token\""));
	cm_test_resp_release(&r);
	b = walk("/api/tenant/invitations", tok_b, 5, "id", &pages);
	ck_assert_int_eq(count_words(b), 0);
	free(b);
	free(tok_a);
	free(tok_b);
}
END_TEST

/* ---- seats ---- */

struct adder {
	const char *path;
	const char *token;
	char body[256];
	long status;
	char code[40];
};

static void *
adder_run(void *arg)
{
	struct adder *a = arg;
	struct cm_test_resp r;

	r = call("POST", a->path, a->token, a->body, NULL, NULL);
	a->status = r.status;
	cm_strlcpy(a->code, cm_test_resp_error_code(&r), sizeof(a->code));
	cm_test_resp_release(&r);
	return NULL;
}

/* Run n POSTs to path at once; the number of 201s (the rest must be
   403 limit_reached). */
static int
race(const char *path, const char *token, char bodies[][256], int n)
{
	struct adder a[8];
	pthread_t t[8];
	int i, created = 0;

	for (i = 0; i < n; i++) {
		a[i].path = path;
		a[i].token = token;
		cm_strlcpy(a[i].body, bodies[i], sizeof(a[i].body));
		ck_assert_int_eq(pthread_create(&t[i], NULL, adder_run, &a[i]),
				 0);
	}
	for (i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	for (i = 0; i < n; i++) {
		if (a[i].status == 201) {
			created++;
			continue;
		}
		ck_assert_msg(a[i].status == 403 &&
				      !strcmp(a[i].code, "limit_reached"),
			      "%ld %s", a[i].status, a[i].code);
	}
	return created;
}

START_TEST(test_concurrent_adds_and_invitations_never_pass_max_users)
{
	char tx[37], tm[37], ti[37], email[80], bodies[9][256];
	char *tok_m, *tok_i, *all;
	int i, pages;

	make_tenant(tx, "\"limits\":{\"max_users\":20}");
	for (i = 0; i < 9; i++) { /* existing accounts: no hashing inside */
		make_member(tx, "user", email);
		snprintf(bodies[i], sizeof(bodies[i]),
			 "{\"email\":\"%s\",\"role\":\"user\"}", email);
	}
	tok_m = tenant_with_owner(tm, "\"limits\":{\"max_users\":3}");
	ck_assert_int_eq(race("/api/tenant/members", tok_m, bodies, 8), 2);
	all = walk("/api/tenant/members", tok_m, 50, "user_id", &pages);
	ck_assert_int_eq(count_words(all), 3);
	free(all);
	tok_i = tenant_with_owner(ti, "\"limits\":{\"max_users\":3}");
	ck_assert_int_eq(race("/api/tenant/invitations", tok_i, bodies, 8), 2);
	/* two open invitations hold the last two seats */
	cm_test_expect_free(call("POST", "/api/tenant/members", tok_i,
				 bodies[8], NULL, NULL),
			    403, "limit_reached");
	free(tok_m);
	free(tok_i);
}
END_TEST

START_TEST(test_accepting_an_invitation_rechecks_a_lowered_limit)
{
	char tid[37], sql[200], body[300], *tok;
	struct cm_test_resp r;

	tok = tenant_with_owner(tid, "\"limits\":{\"max_users\":2}");
	snprintf(body, sizeof(body),
		 "{\"email\":\"late-%d@example.test\",\"role\":\"user\"}",
		 (int)getpid());
	r = call("POST", "/api/tenant/invitations", tok, body, NULL, NULL);
	cm_test_expect(&r, 201, NULL);
	snprintf(body, sizeof(body), "{\"token\":\"%s\",\"password\":\"%s\"}",
		 jstr(r.json, "token"), PW);
	cm_test_resp_release(&r);
	snprintf(sql, sizeof(sql),
		 "UPDATE brain.tenants SET limits = '{\"max_users\":1}'"
		 " WHERE id = '%s'",
		 tid);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	cm_test_expect_free(call("POST", "/api/auth/accept-invitation", NULL,
				 body, NULL, NULL),
			    403, "limit_reached");
	snprintf(sql, sizeof(sql),
		 "UPDATE brain.tenants SET limits = '{\"max_users\":2}'"
		 " WHERE id = '%s'",
		 tid);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	/* refused means untouched: the invitation still works */
	cm_test_expect_free(call("POST", "/api/auth/accept-invitation", NULL,
				 body, NULL, NULL),
			    200, NULL);
	free(tok);
}
END_TEST

/* ---- Idempotency-Key on the tenant creates ---- */

/* POST path twice with one key and body: both 201, the second replayed
   with the same id_field and without the secret field; then the key with
   another body (422) and a malformed key (400). */
static void
once_only(const char *path, const char *tok, const char *body,
	  const char *other, const char *id_field, const char *secret)
{
	char id[64], key[64], hkey[96];
	struct cm_test_resp r;

	cm_test_fresh_name(key, sizeof(key), "idem");
	snprintf(hkey, sizeof(hkey), "Idempotency-Key: %s", key);
	r = call("POST", path, tok, body, hkey, NULL);
	cm_test_expect(&r, 201, NULL);
	cm_strlcpy(id, jstr(r.json, id_field), sizeof(id));
	ck_assert(id[0]);
	if (secret) { /* never stored with the answer */
		ck_assert(strlen(jstr(r.json, secret)) > 10);
		ck_assert_int_eq(
			cm_test_psql_count(
				"SELECT count(*) FROM brain.idempotency_keys"
				" WHERE strpos(response, $1) > 0",
				jstr(r.json, secret)),
			0);
	}
	ck_assert_ptr_null(cm_test_resp_header(&r, "Idempotent-Replayed"));
	cm_test_resp_release(&r);
	r = call("POST", path, tok, body, hkey, NULL);
	cm_test_expect(&r, 201, NULL);
	ck_assert_str_eq(jstr(r.json, id_field), id);
	ck_assert_str_eq(cm_test_resp_header(&r, "Idempotent-Replayed"),
			 "true");
	if (secret) /* shown once: never stored, never replayed */
		ck_assert_ptr_null(cJSON_GetObjectItem(r.json, secret));
	cm_test_resp_release(&r);
	cm_test_expect_free(call("POST", path, tok, other, hkey, NULL), 422,
			    "idempotency_key_reused");
	cm_test_expect_free(call("POST", path, tok, body,
				 "Idempotency-Key: two words", NULL),
			    400, "bad_request");
}

START_TEST(test_member_key_and_invitation_creates_honour_idempotency_keys)
{
	char ta[37], tb[37], body[256], other[256], name[40], sql[256];
	char *tok_a, *tok_b;
	struct cm_test_resp r;

	tok_a = tenant_with_owner(ta, NULL);
	tok_b = tenant_with_owner(tb, NULL);
	once_only("/api/tenant/api-keys", tok_a,
		  "{\"name\":\"ci\",\"scopes\":[\"crm:read\"]}",
		  "{\"name\":\"ci2\",\"scopes\":[\"crm:read\"]}", "id", "key");
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM brain.api_keys WHERE tenant_id = '%s'",
		 ta);
	ck_assert_int_eq(cm_test_psql_count(sql, NULL), 1);
	cm_test_fresh_name(name, sizeof(name), "inv");
	snprintf(body, sizeof(body),
		 "{\"email\":\"%s@example.test\",\"role\":\"user\"}", name);
	snprintf(other, sizeof(other),
		 "{\"email\":\"%s@example.test\",\"role\":\"manager\"}", name);
	once_only("/api/tenant/invitations", tok_a, body, other, "id", "token");
	cm_test_fresh_name(name, sizeof(name), "mem");
	snprintf(body, sizeof(body),
		 "{\"email\":\"%s@example.test\",\"password\":\"%s\","
		 "\"role\":\"user\"}",
		 name, PW);
	snprintf(other, sizeof(other),
		 "{\"email\":\"%s@example.test\",\"password\":\"%s\","
		 "\"role\":\"manager\"}",
		 name, PW);
	once_only("/api/tenant/members", tok_a, body, other, "user_id", NULL);
	/* the same key in another tenant is another key */
	r = call("POST", "/api/tenant/api-keys", tok_b,
		 "{\"name\":\"ci\",\"scopes\":[\"crm:read\"]}",
		 "Idempotency-Key: shared-key-1", NULL);
	cm_test_expect(&r, 201, NULL);
	ck_assert(strlen(jstr(r.json, "key")) > 10);
	cm_test_resp_release(&r);
	r = call("POST", "/api/tenant/api-keys", tok_a,
		 "{\"name\":\"ci\",\"scopes\":[\"crm:read\"]}",
		 "Idempotency-Key: shared-key-1", NULL);
	cm_test_expect(&r, 201, NULL);
	ck_assert(strlen(jstr(r.json, "key")) > 10);
	ck_assert_ptr_null(cm_test_resp_header(&r, "Idempotent-Replayed"));
	cm_test_resp_release(&r);
	free(tok_a);
	free(tok_b);
}
END_TEST

/* ---- purge ---- */

/* GET /api/admin/tenants/:id until want or 10 s pass; the last status. */
static long
tenant_status_until(const char *tid, long want)
{
	char path[96];
	struct cm_test_resp r;
	long status = 0;
	int i;

	snprintf(path, sizeof(path), "/api/admin/tenants/%s", tid);
	for (i = 0; i < 100; i++) {
		r = call("GET", path, admin_token, NULL, NULL, NULL);
		status = r.status;
		cm_test_resp_release(&r);
		if (status == want)
			break;
		usleep(100 * 1000);
	}
	return status;
}

/* Whether the tenant's stream has a tenant.updated saying purged. */
static bool
purge_announced(const char *tid)
{
	char key[80], errbuf[CM_ERRBUF_LEN] = "";
	const char *argv[] = { "XRANGE", key, "-", "+" };
	redisReply *r;
	bool found = false;
	size_t i;
	int tries;

	snprintf(key, sizeof(key), "bz:ev:t:%s", tid);
	for (tries = 0; tries < 250 && !found; tries++) {
		if (tries) /* it leaves through the outbox relay */
			usleep(20 * 1000);
		r = cm_redis_cmd(4, argv, NULL, errbuf);
		ck_assert_msg(r != NULL, "%s", errbuf);
		for (i = 0; i < r->elements; i++)
			if (r->element[i]->elements == 2 &&
			    r->element[i]->element[1]->elements == 4 &&
			    strstr(r->element[i]->element[1]->element[3]->str,
				   "\"purged\":true"))
				found = true;
		freeReplyObject(r);
	}
	return found;
}

START_TEST(test_a_deleted_tenant_is_purged_after_its_grace_and_only_then)
{
	char ta[37], tb[37], email[80], path[96], sql[200], *tok;
	struct cm_test_resp r;

	make_tenant(ta, NULL);
	make_member(ta, "owner", email);
	tok = login(email);
	cm_test_expect_free(call("POST", "/api/tenant/api-keys", tok,
				 "{\"name\":\"k\",\"scopes\":[\"crm:read\"]}",
				 NULL, NULL),
			    201, NULL);
	make_tenant(tb, NULL); /* deleted too, but due tomorrow */
	snprintf(sql, sizeof(sql),
		 "UPDATE brain.tenants SET deleted_at = now(), purge_after ="
		 " now() + interval '1 day' WHERE id = '%s'",
		 tb);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	snprintf(path, sizeof(path), "/api/admin/tenants/%s", ta);
	r = call("DELETE", path, admin_token, NULL, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert(strlen(jstr(r.json, "purge_after")) > 0);
	cm_test_resp_release(&r);
	ck_assert_int_eq(tenant_status_until(ta, 404), 404);
	snprintf(path, sizeof(path), "/api/admin/tenants/%s/restore", ta);
	cm_test_expect_free(call("POST", path, admin_token, NULL, NULL, NULL),
			    404, "not_found");
	/* the owner's membership went with it */
	r = call("GET", "/api/auth/me", tok, NULL, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
				 r.json, "memberships")),
			 0);
	cm_test_resp_release(&r);
	redis_connect();
	ck_assert(purge_announced(ta));
	ck_assert_int_eq(tenant_status_until(tb, 200), 200);
	snprintf(path, sizeof(path), "/api/admin/tenants/%s/restore", tb);
	cm_test_expect_free(call("POST", path, admin_token, NULL, NULL, NULL),
			    200, NULL);
	free(tok);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("brain-admin");
	TCase *tc = tcase_create("brain-admin");

	tcase_add_unchecked_fixture(tc, admin_setup, admin_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_create_super_admin_is_idempotent_and_signs_in);
	tcase_add_test(tc,
		       test_create_super_admin_reads_the_password_from_stdin);
	tcase_add_test(
		tc,
		test_create_super_admin_refuses_weak_passwords_and_bad_emails);
	tcase_add_test(tc,
		       test_create_super_admin_promotes_an_existing_account);
	tcase_add_test(
		tc,
		test_usage_shows_api_calls_and_reported_counters_per_tenant);
	tcase_add_test(
		tc,
		test_only_services_report_usage_and_bad_reports_are_refused);
	tcase_add_test(tc, test_usage_answers_503_while_redis_is_down);
	tcase_add_test(
		tc, test_members_come_in_pages_in_join_order_without_repeats);
	tcase_add_test(
		tc,
		test_keys_and_invitations_come_in_pages_and_stay_in_the_tenant);
	tcase_add_test(
		tc, test_concurrent_adds_and_invitations_never_pass_max_users);
	tcase_add_test(tc,
		       test_accepting_an_invitation_rechecks_a_lowered_limit);
	tcase_add_test(
		tc,
		test_a_deleted_tenant_is_purged_after_its_grace_and_only_then);
	tcase_add_test(
		tc,
		test_member_key_and_invitation_creates_honour_idempotency_keys);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
