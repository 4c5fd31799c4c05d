/*
 * test_brain.c - brain against the real PostgreSQL and Redis, with crm as
 * the second running service: sign-in, refresh rotation and reuse, logout
 * revocation seen by crm, role refusals, tenant CRUD with ETags, events,
 * suspension and deletion reaching crm within 5 s, host resolution, and
 * the cross-tenant cases.
 */
#include "svc.h"
#include "testutil.h"

#include "common/buf.h"
#include "common/bus.h"
#include "common/mem.h"
#include "common/redis.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/banned.h"

#define DOMAIN "bz.test"
#define PW "correct-horse-battery-staple"

static struct cm_test_svc brain, crm;
static char pwfile[256];
static char admin_email[80];
static char *admin_token;

static const char *const crm_env[] = { "DOMAIN=" DOMAIN,
				       "TENANT_CACHE_TTL_MS=1000", NULL };

/* One request to port with an optional bearer token, body and header. */
static struct cm_test_resp
call(int port, const char *method, const char *path, const char *token,
     const char *body, const char *extra)
{
	struct cm_buf auth = CM_BUF_INIT(0);
	const char *hs[4] = { NULL, NULL, NULL, NULL };
	struct cm_test_resp r;
	int n = 0;

	if (token) {
		cm_buf_printf(&auth, "Authorization: Bearer %s", token);
		hs[n++] = cm_buf_str(&auth);
	}
	if (body)
		hs[n++] = "Content-Type: application/json";
	if (extra)
		hs[n++] = extra;
	ck_assert_int_eq(cm_test_http(method, port, path, hs, body, &r), 0);
	cm_buf_release(&auth);
	return r;
}

static struct cm_test_resp
bcall(const char *method, const char *path, const char *token, const char *body,
      const char *extra)
{
	return call(brain.port, method, path, token, body, extra);
}

static const char *
jstr(const cJSON *j, const char *name)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, name);

	return cJSON_IsString(o) ? o->valuestring : "";
}

/* Sign in; the access token (malloc'd), the refresh token optionally. */
static char *
login(const char *email, const char *tenant, char **refresh)
{
	struct cm_buf b = CM_BUF_INIT(0);
	struct cm_test_resp r;
	char *tok;

	cm_buf_printf(&b, "{\"email\":\"%s\",\"password\":\"%s\"", email, PW);
	if (tenant)
		cm_buf_printf(&b, ",\"tenant\":\"%s\"", tenant);
	cm_buf_puts(&b, "}");
	r = bcall("POST", "/api/auth/login", NULL, cm_buf_str(&b), NULL);
	cm_test_expect(&r, 200, NULL);
	tok = cm_xstrdup(jstr(r.json, "access_token"));
	if (refresh)
		*refresh = cm_xstrdup(jstr(r.json, "refresh_token"));
	cm_test_resp_release(&r);
	cm_buf_release(&b);
	return tok;
}

/* A new tenant through the admin API: id[37] and slug[64]. */
static void
make_tenant(char id[37], char slug[64], const char *extra_json)
{
	struct cm_buf b = CM_BUF_INIT(0);
	struct cm_test_resp r;

	cm_test_fresh_name(slug, 64, "t");
	cm_buf_printf(&b,
		      "{\"slug\":\"%s\",\"name\":\"Tenant %s\","
		      "\"status\":\"active\"%s%s}",
		      slug, slug, extra_json ? "," : "",
		      extra_json ? extra_json : "");
	r = bcall("POST", "/api/admin/tenants", admin_token, cm_buf_str(&b),
		  NULL);
	cm_test_expect(&r, 201, NULL);
	cm_strlcpy(id, jstr(r.json, "id"), 37);
	cm_test_resp_release(&r);
	cm_buf_release(&b);
}

/* A new user (email into email[80]) with role in tenant tid. */
static void
make_member(const char *tid, const char *role, char email[80])
{
	char path[128], body[256], name[40];
	struct cm_test_resp r;

	cm_test_fresh_name(name, sizeof(name), role);
	snprintf(email, 80, "%s@example.test", name);
	snprintf(path, sizeof(path), "/api/admin/tenants/%s/members", tid);
	snprintf(body, sizeof(body),
		 "{\"email\":\"%s\",\"password\":\"%s\",\"role\":\"%s\"}",
		 email, PW, role);
	r = bcall("POST", path, admin_token, body, NULL);
	cm_test_expect(&r, 201, NULL);
	cm_test_resp_release(&r);
}

static void
brain_setup(void)
{
	char env1[128], env2[300], crm_url[64];
	const char *env[8];
	FILE *f;

	cm_test_require_stack();
	cm_test_fresh_name(env1, sizeof(env1), "root");
	snprintf(admin_email, sizeof(admin_email), "%.40s@example.test", env1);
	snprintf(pwfile, sizeof(pwfile), "/tmp/bz-brain-pw-%d", (int)getpid());
	f = fopen(pwfile, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "%s\n", PW);
	fclose(f);
	snprintf(env1, sizeof(env1), "BRAIN_BOOTSTRAP_ADMIN_EMAIL=%s",
		 admin_email);
	snprintf(env2, sizeof(env2), "BRAIN_BOOTSTRAP_ADMIN_PASSWORD_FILE=%s",
		 pwfile);
	env[0] = env1;
	env[1] = env2;
	env[2] = "DOMAIN=" DOMAIN;
	env[3] = "TENANT_CACHE_TTL_MS=1000";
	env[4] = "BRAIN_LOGIN_MAX_FAILS=3";
	env[5] = crm_url;
	env[6] = "CMS_URL=http://127.0.0.1:1";
	env[7] = NULL;
	ck_assert_int_eq(cm_test_svc_start(&crm, "crm", crm_env), 0);
	snprintf(crm_url, sizeof(crm_url), "CRM_URL=http://127.0.0.1:%d",
		 crm.port);
	ck_assert_int_eq(cm_test_svc_start(&brain, "brain", env), 0);
	admin_token = login(admin_email, NULL, NULL);
}

static void
brain_teardown(void)
{
	cm_test_svc_stop(&crm);
	cm_test_svc_stop(&brain);
	unlink(pwfile);
	free(admin_token);
	admin_token = NULL;
}

/* crm's /whoami status for a token, polled until want or 5 s pass. */
static long
crm_whoami_until(const char *token, long want)
{
	struct cm_test_resp r;
	long status = 0;
	int i;

	for (i = 0; i < 50; i++) {
		r = call(crm.port, "GET", "/whoami", token, NULL, NULL);
		status = r.status;
		cm_test_resp_release(&r);
		if (status == want)
			break;
		usleep(100 * 1000);
	}
	return status;
}

START_TEST(test_login_token_is_accepted_by_another_service_with_tenant_and_role)
{
	char tid[37], slug[64], email[80];
	struct cm_test_resp r;
	char *tok;

	make_tenant(tid, slug, NULL);
	make_member(tid, "owner", email);
	tok = login(email, NULL, NULL);
	r = call(crm.port, "GET", "/whoami", tok, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_ptr_nonnull(strstr(r.body, tid));
	ck_assert_ptr_nonnull(strstr(r.body, "\"roles\":[\"owner\"]"));
	cm_test_resp_release(&r);
	r = bcall("GET", "/api/auth/me", tok, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_str_eq(jstr(r.json, "tenant_id"), tid);
	ck_assert_str_eq(jstr(r.json, "email"), email);
	ck_assert_ptr_null(strstr(r.body, "password"));
	cm_test_resp_release(&r);
	free(tok);
}
END_TEST

START_TEST(test_unknown_user_and_wrong_password_get_the_same_answer)
{
	char tid[37], slug[64], email[80], body[256], nobody[40];
	struct cm_test_resp a, b;

	make_tenant(tid, slug, NULL);
	make_member(tid, "user", email);
	snprintf(body, sizeof(body),
		 "{\"email\":\"%s\",\"password\":\"wrong-password-1\"}", email);
	a = bcall("POST", "/api/auth/login", NULL, body, NULL);
	cm_test_fresh_name(nobody, sizeof(nobody), "nobody");
	snprintf(body, sizeof(body),
		 "{\"email\":\"%s@example.test\","
		 "\"password\":\"wrong-password-1\"}",
		 nobody);
	b = bcall("POST", "/api/auth/login", NULL, body, NULL);
	cm_test_expect(&a, 401, "invalid_credentials");
	cm_test_expect(&b, 401, "invalid_credentials");
	ck_assert_str_eq(
		cJSON_GetObjectItem(cJSON_GetObjectItem(a.json, "error"),
				    "message")
			->valuestring,
		cJSON_GetObjectItem(cJSON_GetObjectItem(b.json, "error"),
				    "message")
			->valuestring);
	/* both ran the KDF: neither answers in a fraction of the other */
	ck_assert_msg(b.seconds > a.seconds / 4 && a.seconds > b.seconds / 4,
		      "known %.3fs vs unknown %.3fs", a.seconds, b.seconds);
	cm_test_resp_release(&a);
	cm_test_resp_release(&b);
}
END_TEST

START_TEST(
	test_failed_logins_are_throttled_per_account_even_for_the_right_password)
{
	char tid[37], slug[64], email[80], body[256];
	struct cm_test_resp r;
	int i;

	make_tenant(tid, slug, NULL);
	make_member(tid, "user", email);
	snprintf(body, sizeof(body),
		 "{\"email\":\"%s\",\"password\":\"wrong-password-1\"}", email);
	for (i = 0; i < 3; i++)
		cm_test_expect_free(
			bcall("POST", "/api/auth/login", NULL, body, NULL), 401,
			"invalid_credentials");
	snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}",
		 email, PW);
	r = bcall("POST", "/api/auth/login", NULL, body, NULL);
	cm_test_expect(&r, 429, "too_many_attempts");
	ck_assert_ptr_nonnull(cm_test_resp_header(&r, "Retry-After"));
	cm_test_resp_release(&r);
}
END_TEST

static struct cm_test_resp
refresh(const char *token)
{
	char body[256];

	snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", token);
	return bcall("POST", "/api/auth/refresh", NULL, body, NULL);
}

START_TEST(test_refresh_rotates_and_reuse_revokes_the_whole_family)
{
	char tid[37], slug[64], email[80];
	char *r1 = NULL, *tok, *r2;
	struct cm_test_resp r;

	make_tenant(tid, slug, NULL);
	make_member(tid, "user", email);
	tok = login(email, NULL, &r1);
	r = refresh(r1);
	cm_test_expect(&r, 200, NULL);
	r2 = cm_xstrdup(jstr(r.json, "refresh_token"));
	ck_assert_str_ne(r2, r1);
	ck_assert_str_eq(jstr(r.json, "tenant_id"), tid);
	cm_test_expect_free(call(crm.port, "GET", "/whoami",
				 jstr(r.json, "access_token"), NULL, NULL),
			    200, NULL);
	cm_test_resp_release(&r);
	cm_test_expect_free(refresh(r1), 401, "invalid_refresh_token");
	/* the reuse revoked r2 as well */
	cm_test_expect_free(refresh(r2), 401, "invalid_refresh_token");
	cm_test_expect_free(refresh("bzr_not-a-token"), 401,
			    "invalid_refresh_token");
	free(r1);
	free(r2);
	free(tok);
}
END_TEST

START_TEST(test_logout_revokes_the_access_token_in_every_service)
{
	char tid[37], slug[64], email[80], body[256];
	char *tok, *rt = NULL;
	int i;

	make_tenant(tid, slug, NULL);
	make_member(tid, "user", email);
	tok = login(email, NULL, &rt);
	ck_assert_int_eq(crm_whoami_until(tok, 200), 200);
	snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", rt);
	cm_test_expect_free(bcall("POST", "/api/auth/logout", tok, body, NULL),
			    204, NULL);
	/* brain, which revoked it, refuses it at once; another service once
	   its 1 s per-thread revocation cache has lapsed, on every thread */
	cm_test_expect_free(bcall("GET", "/api/auth/me", tok, NULL, NULL), 401,
			    "invalid_token");
	usleep(1100 * 1000);
	for (i = 0; i < 4; i++)
		cm_test_expect_free(
			call(crm.port, "GET", "/whoami", tok, NULL, NULL), 401,
			"invalid_token");
	cm_test_expect_free(refresh(rt), 401, "invalid_refresh_token");
	free(tok);
	free(rt);
}
END_TEST

START_TEST(test_platform_routes_refuse_every_tenant_role)
{
	static const char *const roles[] = { "owner", "admin", "manager",
					     "user", "readonly" };
	static const char *const paths[][2] = {
		{ "GET", "/api/admin/tenants" },
		{ "GET", "/api/unified-tenants" },
		{ "GET", "/api/unified-tenants/resolve?host=a.bz.test" },
		{ "POST", "/api/admin/tenants" },
	};
	char tid[37], slug[64], email[80], path[160];
	size_t i, j;
	char *tok;

	make_tenant(tid, slug, "\"subscription_tier\":\"starter\"");
	for (i = 0; i < 5; i++) {
		make_member(tid, roles[i], email);
		tok = login(email, NULL, NULL);
		for (j = 0; j < 4; j++)
			cm_test_expect_free(bcall(paths[j][0], paths[j][1], tok,
						  j == 3 ? "{}" : NULL, NULL),
					    403, "forbidden");
		snprintf(path, sizeof(path), "/api/admin/tenants/%s/suspend",
			 tid);
		cm_test_expect_free(bcall("POST", path, tok, NULL, NULL), 403,
				    "forbidden");
		free(tok);
	}
	cm_test_expect_free(
		bcall("GET", "/api/admin/tenants", NULL, NULL, NULL), 401,
		"unauthenticated");
}
END_TEST

START_TEST(test_tenant_roles_are_refused_where_they_must_be)
{
	char tid[37], slug[64], ro[80], mgr[80], adm[80], body[256];
	char *t_ro, *t_mgr, *t_adm;
	struct cm_test_resp r;
	char etag[32];

	make_tenant(tid, slug, NULL);
	make_member(tid, "readonly", ro);
	make_member(tid, "manager", mgr);
	make_member(tid, "admin", adm);
	t_ro = login(ro, NULL, NULL);
	t_mgr = login(mgr, NULL, NULL);
	t_adm = login(adm, NULL, NULL);
	r = bcall("GET", "/api/tenant", t_ro, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	cm_strlcpy(etag, cm_test_resp_header(&r, "ETag"), sizeof(etag));
	cm_test_resp_release(&r);
	snprintf(body, sizeof(body), "If-Match: %s", etag);
	cm_test_expect_free(
		bcall("PATCH", "/api/tenant", t_ro, "{\"name\":\"x\"}", body),
		403, "forbidden");
	cm_test_expect_free(
		bcall("GET", "/api/tenant/members", t_ro, NULL, NULL), 403,
		"forbidden");
	cm_test_expect_free(bcall("GET", "/api/tenant/usage", t_ro, NULL, NULL),
			    403, "forbidden");
	cm_test_expect_free(
		bcall("GET", "/api/tenant/members", t_mgr, NULL, NULL), 200,
		NULL);
	cm_test_expect_free(
		bcall("POST", "/api/tenant/members", t_mgr,
		      "{\"email\":\"n1@example.test\",\"role\":\"user\","
		      "\"password\":\"" PW "\"}",
		      NULL),
		403, "forbidden");
	cm_test_expect_free(
		bcall("POST", "/api/tenant/members", t_adm,
		      "{\"email\":\"n2@example.test\",\"role\":\"owner\","
		      "\"password\":\"" PW "\"}",
		      NULL),
		403, "forbidden");
	cm_test_expect_free(bcall("PATCH", "/api/tenant", t_adm,
				  "{\"subscription_tier\":\"enterprise\"}",
				  body),
			    403, "forbidden");
	r = bcall("PATCH", "/api/tenant", t_adm,
		  "{\"name\":\"Renamed\",\"settings\":{\"currency\":\"EUR\"}}",
		  body);
	cm_test_expect(&r, 200, NULL);
	ck_assert_str_eq(jstr(r.json, "name"), "Renamed");
	cm_test_resp_release(&r);
	r = bcall("GET", "/api/tenant/usage", t_mgr, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_ptr_nonnull(strstr(r.body, "\"users\":3"));
	cm_test_resp_release(&r);
	free(t_ro);
	free(t_mgr);
	free(t_adm);
}
END_TEST

static bool stream_has(const char *tid, const char *type);
static bool outbox_published_until(const char *tid, long long n);
static long long outbox_rows(const char *tid, bool published);

START_TEST(test_tenant_crud_with_etags_limits_filters_and_pages)
{
	char tid[37], slug[64], path[160], hdr[64], etag[32];
	struct cm_test_resp r;
	const cJSON *lim;

	make_tenant(tid, slug,
		    "\"subscription_tier\":\"starter\","
		    "\"limits\":{\"max_users\":7}");
	snprintf(path, sizeof(path), "/api/admin/tenants/%s", slug);
	r = bcall("GET", path, admin_token, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	lim = cJSON_GetObjectItem(r.json, "limits");
	ck_assert_int_eq(cJSON_GetObjectItem(lim, "max_users")->valueint, 7);
	ck_assert_int_eq(
		cJSON_GetObjectItem(lim, "api_requests_per_minute")->valueint,
		300);
	cm_strlcpy(etag, cm_test_resp_header(&r, "ETag"), sizeof(etag));
	cm_test_resp_release(&r);
	snprintf(path, sizeof(path), "/api/admin/tenants/%s", tid);
	cm_test_expect_free(
		bcall("PATCH", path, admin_token, "{\"name\":\"N\"}", NULL),
		428, "precondition_required");
	cm_test_expect_free(bcall("PATCH", path, admin_token,
				  "{\"name\":\"N\"}", "If-Match: \"999\""),
			    412, "precondition_failed");
	cm_test_expect_free(bcall("PATCH", path, admin_token, "{\"bogus\":1}",
				  "If-Match: \"1\""),
			    400, "validation_failed");
	snprintf(hdr, sizeof(hdr), "If-Match: %s", etag);
	r = bcall("PATCH", path, admin_token,
		  "{\"subscription_tier\":\"enterprise\",\"branding\":"
		  "{\"primary_color\":\"#112233\"}}",
		  hdr);
	cm_test_expect(&r, 200, NULL);
	ck_assert_str_ne(cm_test_resp_header(&r, "ETag"), etag);
	lim = cJSON_GetObjectItem(r.json, "limits");
	ck_assert_int_eq(cJSON_GetObjectItem(lim, "max_users")->valueint, 7);
	ck_assert_int_eq(
		cJSON_GetObjectItem(lim, "api_requests_per_minute")->valueint,
		6000);
	cm_test_resp_release(&r);
	ck_assert(stream_has(tid, "tenant.updated"));
	ck_assert(stream_has(tid, "tenant.plan_changed"));
	/* the same stale ETag again */
	cm_test_expect_free(
		bcall("PATCH", path, admin_token, "{\"name\":\"N\"}", hdr), 412,
		"precondition_failed");
	snprintf(path, sizeof(path),
		 "/api/unified-tenants?q=%s&tier=enterprise", slug);
	r = bcall("GET", path, admin_token, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_int_eq(
		cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "items")), 1);
	cm_test_resp_release(&r);
	r = bcall("GET", "/api/admin/tenants?limit=1", admin_token, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_str_ne(jstr(r.json, "next_cursor"), "");
	cm_test_resp_release(&r);
	snprintf(path, sizeof(path), "{\"slug\":\"%s\",\"name\":\"Dup\"}",
		 slug);
	cm_test_expect_free(
		bcall("POST", "/api/admin/tenants", admin_token, path, NULL),
		409, "conflict");
	snprintf(path, sizeof(path), "/api/unified-tenants/%s", tid);
	cm_test_expect_free(bcall("GET", path, admin_token, NULL, NULL), 200,
			    NULL);
	cm_test_expect_free(bcall("GET",
				  "/api/unified-tenants/no-such-tenant-x",
				  admin_token, NULL, NULL),
			    404, "not_found");
}
END_TEST

/* Whether the tenant's bus stream comes to hold, within 5 s, an entry of
   type (NULL: any) whose event text contains needle (NULL: any). Tenant
   events leave through the outbox relay, a moment after the change. */
static bool
stream_match(const char *tid, const char *type, const char *needle)
{
	struct cm_redis_config rc = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "", key[96];
	const redisReply *f;
	redisReply *r;
	bool found = false;
	size_t i;
	int64_t port;
	int tries;

	rc.host = cm_test_env("REDIS_HOST");
	ck_assert_int_eq(
		cm_parse_i64(cm_test_env("REDIS_PORT"), 1, 65535, &port), 0);
	rc.port = (int)port;
	ck_assert_int_eq(cm_redis_init(&rc, errbuf), 0);
	snprintf(key, sizeof(key), "bz:ev:t:%s", tid);
	for (tries = 0; tries < 250 && !found; tries++) {
		if (tries)
			usleep(20 * 1000);
		r = cm_redis_cmdf(errbuf, "XRANGE %s - +", key);
		ck_assert_ptr_nonnull(r);
		for (i = 0; i < r->elements; i++) {
			f = r->element[i]->element[1];
			if (f->elements == 4 &&
			    (!type || !strcmp(f->element[1]->str, type)) &&
			    (!needle || strstr(f->element[3]->str, needle)))
				found = true;
		}
		freeReplyObject(r);
	}
	cm_redis_shutdown();
	return found;
}

static bool
stream_has(const char *tid, const char *type)
{
	return stream_match(tid, type, NULL);
}

/* Rows of the tenant's in brain.outbox: all, or those published. */
static long long
outbox_rows(const char *tid, bool published)
{
	return cm_test_psql_count(
		published ? "SELECT count(*) FROM brain.outbox WHERE"
			    " tenant_id = $1::uuid AND published_at IS NOT NULL"
			  : "SELECT count(*) FROM brain.outbox WHERE"
			    " tenant_id = $1::uuid",
		tid);
}

/* Whether n of the tenant's outbox rows are marked published within 5 s. */
static bool
outbox_published_until(const char *tid, long long n)
{
	int tries;

	for (tries = 0; tries < 250; tries++) {
		if (outbox_rows(tid, true) == n)
			return true;
		usleep(20 * 1000);
	}
	return false;
}

START_TEST(
	test_suspension_reaches_another_service_and_every_change_is_published)
{
	char tid[37], slug[64], email[80], path[160];
	char *tok;

	make_tenant(tid, slug, NULL);
	make_member(tid, "user", email);
	tok = login(email, NULL, NULL);
	ck_assert_int_eq(crm_whoami_until(tok, 200), 200);
	snprintf(path, sizeof(path), "/api/admin/tenants/%s/suspend", tid);
	cm_test_expect_free(bcall("POST", path, admin_token,
				  "{\"reason\":\"unpaid invoice\"}", NULL),
			    200, NULL);
	ck_assert_int_eq(crm_whoami_until(tok, 403), 403);
	cm_test_expect_free(call(crm.port, "GET", "/whoami", tok, NULL, NULL),
			    403, "tenant_suspended");
	snprintf(path, sizeof(path), "/api/admin/tenants/%s/reactivate", tid);
	cm_test_expect_free(bcall("POST", path, admin_token, NULL, NULL), 200,
			    NULL);
	ck_assert_int_eq(crm_whoami_until(tok, 200), 200);
	ck_assert(stream_has(tid, "tenant.created"));
	ck_assert(stream_has(tid, "tenant.suspended"));
	ck_assert(stream_has(tid, "tenant.reactivated"));
	free(tok);
}
END_TEST

START_TEST(test_soft_delete_refuses_the_tenant_everywhere_until_restored)
{
	char tid[37], slug[64], email[80], path[160];
	struct cm_test_resp r;
	char *tok;

	make_tenant(tid, slug, NULL);
	make_member(tid, "owner", email);
	tok = login(email, NULL, NULL);
	snprintf(path, sizeof(path), "/api/admin/tenants/%s", tid);
	r = bcall("DELETE", path, admin_token, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_str_ne(jstr(r.json, "deleted_at"), "");
	ck_assert_str_ne(jstr(r.json, "purge_after"), "");
	cm_test_resp_release(&r);
	ck_assert_int_eq(crm_whoami_until(tok, 404), 404);
	cm_test_expect_free(bcall("GET", "/api/tenant", tok, NULL, NULL), 404,
			    "tenant_not_found");
	cm_test_expect_free(bcall("GET", path, admin_token, NULL, NULL), 200,
			    NULL);
	snprintf(path, sizeof(path), "/api/admin/tenants/%s/restore", tid);
	cm_test_expect_free(bcall("POST", path, admin_token, NULL, NULL), 200,
			    NULL);
	ck_assert_int_eq(crm_whoami_until(tok, 200), 200);
	ck_assert(stream_has(tid, "tenant.updated"));
	free(tok);
}
END_TEST

/* A tenant change and its event commit together (brain.outbox); a change
   that is refused stages nothing; and an event whose change committed
   just before brain died (its row unpublished) goes out on the relay's
   next round. */
START_TEST(test_tenant_events_leave_through_the_outbox_even_after_a_crash)
{
	char tid[37], slug[64], path[160], sql[1024], *text;
	cJSON *env, *data;
	const char *eid;

	make_tenant(tid, slug, NULL);
	ck_assert(stream_has(tid, "tenant.created"));
	ck_assert(outbox_published_until(tid, 1));
	ck_assert_int_eq(outbox_rows(tid, false), 1);
	/* a stale ETag: no change, no event */
	snprintf(path, sizeof(path), "/api/admin/tenants/%s", tid);
	cm_test_expect_free(bcall("PATCH", path, admin_token,
				  "{\"name\":\"Renamed\"}",
				  "If-Match: \"999\""),
			    412, "precondition_failed");
	cm_test_expect_free(bcall("PATCH", path, admin_token,
				  "{\"subscription_tier\":\"bogus\"}",
				  "If-Match: \"1\""),
			    400, NULL);
	ck_assert_int_eq(outbox_rows(tid, false), 1);
	/* committed, never published: what a crash right after the commit
	   leaves behind */
	data = cJSON_CreateObject();
	cJSON_AddStringToObject(data, "tenant_id", tid);
	cJSON_AddObjectToObject(data, "changes");
	env = cm_bus_envelope_new("tenant.updated", "brain", "tenant", tid,
				  data);
	ck_assert_ptr_nonnull(env);
	cJSON_AddStringToObject(env, "tenant_id", tid);
	eid = cJSON_GetObjectItem(env, "event_id")->valuestring;
	text = cJSON_PrintUnformatted(env);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO brain.outbox (tenant_id, event_id, event)"
		 " VALUES ('%s', '%s', '%s')",
		 tid, eid, text);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	ck_assert(stream_match(tid, "tenant.updated", eid));
	ck_assert(outbox_published_until(tid, 2));
	free(text);
	cJSON_Delete(env);
}
END_TEST

static void
resolve_is(const char *host, const char *field, const char *want)
{
	char path[400];
	struct cm_test_resp r;

	snprintf(path, sizeof(path), "/api/unified-tenants/resolve?host=%s",
		 host);
	r = bcall("GET", path, admin_token, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_msg(!strcmp(jstr(r.json, field), want), "%s: %s", host,
		      r.body);
	cm_test_resp_release(&r);
}

START_TEST(test_resolve_names_the_source_or_the_exact_reason)
{
	char tid[37], slug[64], host[128], dom[128], path[300], body[200];

	make_tenant(tid, slug, NULL);
	snprintf(host, sizeof(host), "%s." DOMAIN, slug);
	resolve_is(host, "source", "subdomain");
	resolve_is("nosuchslug-zz." DOMAIN, "reason", "unknown_slug");
	resolve_is("api." DOMAIN, "reason", "platform_host");
	resolve_is("nowhere-zz.example.org", "reason", "unknown_domain");
	snprintf(dom, sizeof(dom), "shop-%s.example.org", slug);
	snprintf(path, sizeof(path), "/api/admin/tenants/%s/domains", tid);
	snprintf(body, sizeof(body), "{\"domain\":\"%s\"}", dom);
	cm_test_expect_free(bcall("POST", path, admin_token, body, NULL), 201,
			    NULL);
	resolve_is(dom, "reason", "domain_unverified");
	snprintf(path, sizeof(path), "/api/admin/tenants/%s/domains/%s/verify",
		 tid, dom);
	cm_test_expect_free(bcall("POST", path, admin_token, NULL, NULL), 200,
			    NULL);
	resolve_is(dom, "source", "custom_domain");
	snprintf(path, sizeof(path), "/api/admin/tenants/%s/domains/%s", tid,
		 dom);
	cm_test_expect_free(bcall("DELETE", path, admin_token, NULL, NULL), 200,
			    NULL);
	resolve_is(dom, "reason", "unknown_domain");
	cm_test_expect_free(bcall("GET", "/api/unified-tenants/resolve",
				  admin_token, NULL, NULL),
			    400, "bad_request");
}
END_TEST

START_TEST(test_a_user_of_tenant_a_cannot_read_change_or_detect_tenant_b)
{
	char ta[37], sa[64], tb[37], sb[64], ea[80], eb[80], body[256];
	char host[128], path[160], rnd[37];
	struct cm_test_resp r, r2;
	char *tok, *tokb;

	make_tenant(ta, sa, NULL);
	make_tenant(tb, sb, NULL);
	make_member(ta, "owner", ea);
	make_member(tb, "owner", eb);
	tok = login(ea, NULL, NULL);
	tokb = login(eb, NULL, NULL);
	/* B's host with A's token: refused before any handler runs */
	snprintf(host, sizeof(host), "Host: %s." DOMAIN, sb);
	cm_test_expect_free(bcall("GET", "/api/tenant", tok, NULL, host), 403,
			    "tenant_mismatch");
	cm_test_expect_free(
		bcall("GET", "/api/tenant/members", tok, NULL, host), 403,
		"tenant_mismatch");
	/* A's own views never mention B */
	r = bcall("GET", "/api/tenant/members", tok, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_ptr_null(strstr(r.body, eb));
	cm_test_resp_release(&r);
	/* removing B's owner looks exactly like removing nobody */
	r = bcall("GET", "/api/auth/me", tokb, NULL, NULL);
	snprintf(path, sizeof(path), "/api/tenant/members/%s",
		 jstr(r.json, "id"));
	cm_test_resp_release(&r);
	r = bcall("DELETE", path, tok, NULL, NULL);
	ck_assert_int_eq(cm_uuid_v4(rnd), 0);
	snprintf(path, sizeof(path), "/api/tenant/members/%s", rnd);
	r2 = bcall("DELETE", path, tok, NULL, NULL);
	cm_test_expect(&r, 404, "not_found");
	cm_test_expect(&r2, 404, "not_found");
	cm_test_resp_release(&r);
	cm_test_resp_release(&r2);
	cm_test_expect_free(call(crm.port, "GET", "/whoami", tokb, NULL, NULL),
			    200, NULL);
	/* switching or signing in to B looks like a tenant that is not */
	snprintf(body, sizeof(body), "{\"tenant\":\"%s\"}", sb);
	r = bcall("POST", "/api/auth/switch-tenant", tok, body, NULL);
	r2 = bcall("POST", "/api/auth/switch-tenant", tok,
		   "{\"tenant\":\"no-such-tenant-zz\"}", NULL);
	cm_test_expect(&r, 403, "no_tenant_access");
	cm_test_expect(&r2, 403, "no_tenant_access");
	ck_assert_str_eq(
		cJSON_GetObjectItem(cJSON_GetObjectItem(r.json, "error"),
				    "message")
			->valuestring,
		cJSON_GetObjectItem(cJSON_GetObjectItem(r2.json, "error"),
				    "message")
			->valuestring);
	cm_test_resp_release(&r);
	cm_test_resp_release(&r2);
	snprintf(body, sizeof(body),
		 "{\"email\":\"%s\",\"password\":\"%s\",\"tenant\":\"%s\"}", ea,
		 PW, tb);
	cm_test_expect_free(bcall("POST", "/api/auth/login", NULL, body, NULL),
			    403, "no_tenant_access");
	/* a tenant admin cannot change platform fields of its own tenant */
	cm_test_expect_free(bcall("PATCH", "/api/tenant", tok,
				  "{\"status\":\"active\"}", "If-Match: \"1\""),
			    403, "forbidden");
	free(tok);
	free(tokb);
}
END_TEST

START_TEST(test_switch_tenant_issues_a_token_for_another_membership)
{
	char ta[37], sa[64], tb[37], sb[64], email[80], path[160], body[300];
	struct cm_test_resp r;
	char *tok;

	make_tenant(ta, sa, NULL);
	make_tenant(tb, sb, NULL);
	make_member(ta, "owner", email);
	snprintf(path, sizeof(path), "/api/admin/tenants/%s/members", tb);
	snprintf(body, sizeof(body), "{\"email\":\"%s\",\"role\":\"readonly\"}",
		 email);
	cm_test_expect_free(bcall("POST", path, admin_token, body, NULL), 201,
			    NULL);
	tok = login(email, sa, NULL);
	r = bcall("GET", "/api/auth/me", tok, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_int_eq(
		cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "memberships")),
		2);
	cm_test_resp_release(&r);
	snprintf(body, sizeof(body), "{\"tenant\":\"%s\"}", sb);
	r = bcall("POST", "/api/auth/switch-tenant", tok, body, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_str_eq(jstr(r.json, "tenant_id"), tb);
	ck_assert_str_eq(jstr(r.json, "role"), "readonly");
	cm_test_expect_free(call(crm.port, "GET", "/whoami",
				 jstr(r.json, "access_token"), NULL, NULL),
			    200, NULL);
	cm_test_resp_release(&r);
	free(tok);
}
END_TEST

START_TEST(test_bootstrap_admin_without_a_password_file_refuses_to_start)
{
	const char *env[] = {
		"BRAIN_BOOTSTRAP_ADMIN_EMAIL=boot@example.test",
		"BRAIN_BOOTSTRAP_ADMIN_PASSWORD_FILE=/nonexistent", NULL
	};
	char *err = NULL;
	int rc;

	cm_test_require_stack();
	rc = cm_test_svc_run("brain", env, NULL, &err);
	ck_assert_int_ne(rc, 0);
	ck_assert_ptr_nonnull(strstr(err, "PASSWORD_FILE"));
	free(err);
}
END_TEST

/* A new API key of tenant tid with scopes (JSON array text): the key. */
static char *
make_key(const char *owner_token, const char *scopes, char id[37])
{
	char body[256];
	struct cm_test_resp r;
	char *key;

	snprintf(body, sizeof(body), "{\"name\":\"ci\",\"scopes\":%s}", scopes);
	r = bcall("POST", "/api/tenant/api-keys", owner_token, body, NULL);
	cm_test_expect(&r, 201, NULL);
	key = cm_xstrdup(jstr(r.json, "key"));
	ck_assert(!strncmp(key, "bz_live_", 8));
	cm_strlcpy(id, jstr(r.json, "id"), 37);
	cm_test_resp_release(&r);
	return key;
}

START_TEST(test_api_keys_are_shown_once_scoped_expiring_and_revocable)
{
	char tid[37], slug[64], email[80], uemail[80], kid[37], kid2[37];
	char path[160], sql[256];
	struct cm_test_resp r;
	char *tok, *utok, *key, *key2;

	make_tenant(tid, slug, NULL);
	make_member(tid, "owner", email);
	make_member(tid, "user", uemail);
	tok = login(email, NULL, NULL);
	utok = login(uemail, NULL, NULL);
	cm_test_expect_free(
		bcall("POST", "/api/tenant/api-keys", utok,
		      "{\"name\":\"x\",\"scopes\":[\"brain:read\"]}", NULL),
		403, "forbidden");
	cm_test_expect_free(bcall("POST", "/api/tenant/api-keys", tok,
				  "{\"name\":\"x\",\"scopes\":[\"root:all\"]}",
				  NULL),
			    400, "validation_failed");
	key = make_key(tok, "[\"brain:read\",\"crm:write\"]", kid);
	r = bcall("GET", "/api/tenant", key, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_str_eq(jstr(r.json, "id"), tid);
	cm_test_resp_release(&r);
	/* read scope: no writes, no members, no keys, no platform */
	cm_test_expect_free(bcall("PATCH", "/api/tenant", key,
				  "{\"name\":\"k\"}", "If-Match: \"1\""),
			    403, "forbidden");
	cm_test_expect_free(
		bcall("GET", "/api/tenant/members", key, NULL, NULL), 403,
		"forbidden");
	cm_test_expect_free(
		bcall("GET", "/api/tenant/api-keys", key, NULL, NULL), 403,
		"forbidden");
	cm_test_expect_free(bcall("GET", "/api/admin/tenants", key, NULL, NULL),
			    403, "forbidden");
	/* the list never shows the key or its hash */
	r = bcall("GET", "/api/tenant/api-keys", tok, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_ptr_null(strstr(r.body, key));
	ck_assert_ptr_null(strstr(r.body, "hash"));
	ck_assert_ptr_nonnull(strstr(r.body, "last_used_at\":\"20"));
	cm_test_resp_release(&r);
	/* expiry */
	key2 = make_key(tok, "[\"brain:read\"]", kid2);
	cm_test_expect_free(bcall("GET", "/api/tenant", key2, NULL, NULL), 200,
			    NULL);
	snprintf(sql, sizeof(sql),
		 "UPDATE brain.api_keys SET expires_at = now() - interval "
		 "'1 second' WHERE id = '%s'",
		 kid2);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	cm_test_expect_free(bcall("GET", "/api/tenant", key2, NULL, NULL), 401,
			    "invalid_token");
	/* revocation, and a made-up key */
	snprintf(path, sizeof(path), "/api/tenant/api-keys/%s", kid);
	cm_test_expect_free(bcall("DELETE", path, tok, NULL, NULL), 204, NULL);
	cm_test_expect_free(bcall("GET", "/api/tenant", key, NULL, NULL), 401,
			    "invalid_token");
	cm_test_expect_free(bcall("DELETE", path, tok, NULL, NULL), 404,
			    "not_found");
	cm_test_expect_free(
		bcall("GET", "/api/tenant",
		      "bz_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		      NULL, NULL),
		401, "invalid_token");
	free(key);
	free(key2);
	free(tok);
	free(utok);
}
END_TEST

START_TEST(test_an_api_key_of_tenant_a_cannot_reach_tenant_b)
{
	char ta[37], sa[64], tb[37], sb[64], ea[80], eb[80], kid[37];
	char host[128], path[160];
	char *toka, *tokb, *key, *keyb;

	make_tenant(ta, sa, NULL);
	make_tenant(tb, sb, NULL);
	make_member(ta, "owner", ea);
	make_member(tb, "owner", eb);
	toka = login(ea, NULL, NULL);
	tokb = login(eb, NULL, NULL);
	key = make_key(toka, "[\"brain:write\"]", kid);
	keyb = make_key(tokb, "[\"brain:read\"]", kid);
	snprintf(host, sizeof(host), "Host: %s." DOMAIN, sb);
	cm_test_expect_free(bcall("GET", "/api/tenant", key, NULL, host), 403,
			    "tenant_mismatch");
	/* B's key id, revoked through A's owner: as if it did not exist */
	snprintf(path, sizeof(path), "/api/tenant/api-keys/%s", kid);
	cm_test_expect_free(bcall("DELETE", path, toka, NULL, NULL), 404,
			    "not_found");
	cm_test_expect_free(bcall("GET", "/api/tenant", keyb, NULL, NULL), 200,
			    NULL);
	free(toka);
	free(tokb);
	free(key);
	free(keyb);
}
END_TEST

START_TEST(test_api_document_and_docs_page_are_served_without_sign_in)
{
	struct cm_test_resp r =
		bcall("GET", "/brain/openapi.json", NULL, NULL, NULL);

	cm_test_expect(&r, 200, NULL);
	ck_assert_str_eq(jstr(r.json, "openapi"), "3.1.0");
	ck_assert_ptr_nonnull(strstr(r.body, "/api/unified-tenants/resolve"));
	cm_test_resp_release(&r);
	r = bcall("GET", "/brain/docs", NULL, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_ptr_nonnull(
		strstr(cm_test_resp_header(&r, "Content-Type"), "text/html"));
	ck_assert_ptr_nonnull(strstr(r.body, "POST /api/auth/refresh"));
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_an_invitation_is_accepted_once_and_then_signs_in)
{
	char tid[37], slug[64], email[80], adm[80], body[300], name[40];
	char token[80], token2[80], id2[37], path[160];
	struct cm_test_resp r;
	char *tok, *atok, *itok;

	make_tenant(tid, slug, NULL);
	make_member(tid, "owner", email);
	make_member(tid, "admin", adm);
	tok = login(email, NULL, NULL);
	atok = login(adm, NULL, NULL);
	cm_test_fresh_name(name, sizeof(name), "invitee");
	snprintf(body, sizeof(body),
		 "{\"email\":\"%s@example.test\",\"role\":\"manager\"}", name);
	r = bcall("POST", "/api/tenant/invitations", tok, body, NULL);
	cm_test_expect(&r, 201, NULL);
	cm_strlcpy(token, jstr(r.json, "token"), sizeof(token));
	ck_assert(!strncmp(token, "bzi_", 4));
	cm_test_resp_release(&r);
	r = bcall("POST", "/api/tenant/invitations", tok, body, NULL);
	cm_strlcpy(token2, jstr(r.json, "token"), sizeof(token2));
	cm_strlcpy(id2, jstr(r.json, "id"), sizeof(id2));
	cm_test_resp_release(&r);
	cm_test_expect_free(
		bcall("POST", "/api/tenant/invitations", atok,
		      "{\"email\":\"x@example.test\",\"role\":\"owner\"}",
		      NULL),
		403, "forbidden");
	r = bcall("GET", "/api/tenant/invitations", tok, NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_ptr_null(strstr(r.body, token));
	cm_test_resp_release(&r);
	snprintf(body, sizeof(body), "{\"token\":\"%s\"}", token);
	cm_test_expect_free(
		bcall("POST", "/api/auth/accept-invitation", NULL, body, NULL),
		400, "validation_failed");
	snprintf(body, sizeof(body), "{\"token\":\"%s\",\"password\":\"%s\"}",
		 token, PW);
	r = bcall("POST", "/api/auth/accept-invitation", NULL, body, NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_str_eq(jstr(r.json, "tenant_id"), tid);
	ck_assert_str_eq(jstr(r.json, "role"), "manager");
	cm_test_resp_release(&r);
	cm_test_expect_free(
		bcall("POST", "/api/auth/accept-invitation", NULL, body, NULL),
		404, "invalid_invitation");
	snprintf(path, sizeof(path), "%s@example.test", name);
	itok = login(path, NULL, NULL);
	cm_test_expect_free(
		bcall("GET", "/api/tenant/members", itok, NULL, NULL), 200,
		NULL);
	snprintf(path, sizeof(path), "/api/tenant/invitations/%s", id2);
	cm_test_expect_free(bcall("DELETE", path, tok, NULL, NULL), 204, NULL);
	snprintf(body, sizeof(body), "{\"token\":\"%s\"}", token2);
	cm_test_expect_free(
		bcall("POST", "/api/auth/accept-invitation", NULL, body, NULL),
		404, "invalid_invitation");
	free(tok);
	free(atok);
	free(itok);
}
END_TEST

START_TEST(test_health_all_checks_everything_in_parallel_and_names_what_is_down)
{
	struct cm_test_resp r = bcall("GET", "/health/all", NULL, NULL, NULL);
	const cJSON *checks;

	cm_test_expect(&r, 200, NULL);
	ck_assert_str_eq(jstr(r.json, "status"), "degraded");
	checks = cJSON_GetObjectItem(r.json, "checks");
	ck_assert_str_eq(
		jstr(cJSON_GetObjectItem(checks, "postgres"), "status"), "up");
	ck_assert_str_eq(jstr(cJSON_GetObjectItem(checks, "crm"), "status"),
			 "up");
	ck_assert_str_eq(jstr(cJSON_GetObjectItem(checks, "cms"), "status"),
			 "down");
	ck_assert_msg(r.seconds < 4.0, "took %.2fs", r.seconds);
	cm_test_resp_release(&r);
	cm_test_expect_free(bcall("GET", "/health/crm", NULL, NULL, NULL), 200,
			    NULL);
	r = bcall("GET", "/health/cms", NULL, NULL, NULL);
	cm_test_expect(&r, 503, NULL);
	ck_assert_str_eq(jstr(r.json, "status"), "down");
	cm_test_resp_release(&r);
	cm_test_expect_free(bcall("GET", "/health/nosuch", NULL, NULL, NULL),
			    404, "not_found");
	cm_test_expect_free(bcall("GET", "/health/ready", NULL, NULL, NULL),
			    200, NULL);
}
END_TEST

START_TEST(test_members_stop_at_the_plans_max_users)
{
	char tid[37], slug[64], email[80], body[256], name[40];
	char *tok;

	make_tenant(tid, slug, "\"limits\":{\"max_users\":2}");
	make_member(tid, "owner", email);
	make_member(tid, "user", body);
	tok = login(email, NULL, NULL);
	cm_test_fresh_name(name, sizeof(name), "extra");
	snprintf(body, sizeof(body),
		 "{\"email\":\"%s@example.test\",\"role\":\"user\","
		 "\"password\":\"%s\"}",
		 name, PW);
	cm_test_expect_free(
		bcall("POST", "/api/tenant/members", tok, body, NULL), 403,
		"limit_reached");
	cm_test_expect_free(
		bcall("POST", "/api/tenant/invitations", tok,
		      "{\"email\":\"x@example.test\",\"role\":\"user\"}", NULL),
		403, "limit_reached");
	/* changing a member's role takes no new seat */
	snprintf(body, sizeof(body), "{\"email\":\"%s\",\"role\":\"owner\"}",
		 email);
	cm_test_expect_free(
		bcall("POST", "/api/tenant/members", tok, body, NULL), 201,
		NULL);
	free(tok);
}
END_TEST

START_TEST(test_sign_in_fails_closed_while_redis_is_down)
{
	char tid[37], slug[64], email[80], body[256];
	struct cm_test_resp r;

	make_tenant(tid, slug, NULL);
	make_member(tid, "user", email);
	snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}",
		 email, PW);
	ck_assert_int_eq(cm_test_stack("stop-redis"), 0);
	r = bcall("POST", "/api/auth/login", NULL, body, NULL);
	ck_assert_int_eq(cm_test_stack("start-redis"), 0);
	cm_test_expect(&r, 503, "unavailable");
	cm_test_resp_release(&r);
	free(login(email, NULL, NULL));
}
END_TEST

/* Connect this test process to the stack's Redis. */
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

START_TEST(test_a_failure_counter_left_without_expiry_gets_one)
{
	char tid[37], slug[64], email[80], body[256], key[160];
	char errbuf[CM_ERRBUF_LEN] = "";
	unsigned char md[SHA256_DIGEST_LENGTH];
	struct cm_test_resp r;
	redisReply *rep;
	int i;

	make_tenant(tid, slug, NULL);
	make_member(tid, "user", email);
	SHA256((const unsigned char *)email, strlen(email), md);
	snprintf(key, sizeof(key), "bz:brain:login-fail:acct:");
	for (i = 0; i < SHA256_DIGEST_LENGTH; i++)
		snprintf(key + strlen(key), sizeof(key) - strlen(key), "%02x",
			 md[i]);
	redis_connect();
	rep = cm_redis_cmdf(errbuf, "SET %s 99", key);
	ck_assert_ptr_nonnull(rep);
	freeReplyObject(rep);
	snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}",
		 email, PW);
	r = bcall("POST", "/api/auth/login", NULL, body, NULL);
	cm_test_expect(&r, 429, "too_many_attempts");
	cm_test_resp_release(&r);
	rep = cm_redis_cmdf(errbuf, "TTL %s", key);
	ck_assert_ptr_nonnull(rep);
	ck_assert_int_gt(rep->integer, 0);
	freeReplyObject(rep);
	cm_redis_shutdown();
}
END_TEST

START_TEST(test_a_create_repeated_with_its_idempotency_key_makes_one_tenant)
{
	char slug[64], body[200], hdr[100], id[37];
	struct cm_test_resp r;

	cm_test_fresh_name(slug, sizeof(slug), "idem");
	snprintf(hdr, sizeof(hdr), "Idempotency-Key: %s", slug);
	snprintf(body, sizeof(body), "{\"slug\":\"%s\",\"name\":\"Idem\"}",
		 slug);
	r = bcall("POST", "/api/admin/tenants", admin_token, body, hdr);
	cm_test_expect(&r, 201, NULL);
	cm_strlcpy(id, jstr(r.json, "id"), sizeof(id));
	cm_test_resp_release(&r);
	r = bcall("POST", "/api/admin/tenants", admin_token, body, hdr);
	cm_test_expect(&r, 201, NULL);
	ck_assert_str_eq(jstr(r.json, "id"), id);
	ck_assert_str_eq(cm_test_resp_header(&r, "Idempotent-Replayed"),
			 "true");
	cm_test_resp_release(&r);
	/* recorded with the create, under the platform's nil tenant */
	ck_assert_int_eq(cm_test_psql_count(
				 "SELECT count(*) FROM brain.idempotency_keys"
				 " WHERE tenant_id = '00000000-0000-0000-0000-"
				 "000000000000' AND key = $1",
				 slug),
			 1);
	snprintf(body, sizeof(body), "{\"slug\":\"%s\",\"name\":\"Other\"}",
		 slug);
	cm_test_expect_free(
		bcall("POST", "/api/admin/tenants", admin_token, body, hdr),
		422, "idempotency_key_reused");
	/* without the key the same body is a conflict */
	cm_test_expect_free(
		bcall("POST", "/api/admin/tenants", admin_token, body, NULL),
		409, "conflict");
	cm_test_expect_free(bcall("POST", "/api/admin/tenants", admin_token,
				  body, "Idempotency-Key: has space"),
			    400, "bad_request");
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("brain");
	TCase *tc = tcase_create("brain");
	TCase *start = tcase_create("start-up");

	tcase_add_unchecked_fixture(tc, brain_setup, brain_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(
		tc,
		test_login_token_is_accepted_by_another_service_with_tenant_and_role);
	tcase_add_test(
		tc, test_unknown_user_and_wrong_password_get_the_same_answer);
	tcase_add_test(
		tc,
		test_failed_logins_are_throttled_per_account_even_for_the_right_password);
	tcase_add_test(tc,
		       test_refresh_rotates_and_reuse_revokes_the_whole_family);
	tcase_add_test(tc,
		       test_logout_revokes_the_access_token_in_every_service);
	tcase_add_test(tc, test_platform_routes_refuse_every_tenant_role);
	tcase_add_test(tc, test_tenant_roles_are_refused_where_they_must_be);
	tcase_add_test(tc,
		       test_tenant_crud_with_etags_limits_filters_and_pages);
	tcase_add_test(
		tc,
		test_suspension_reaches_another_service_and_every_change_is_published);
	tcase_add_test(
		tc,
		test_soft_delete_refuses_the_tenant_everywhere_until_restored);
	tcase_add_test(tc, test_resolve_names_the_source_or_the_exact_reason);
	tcase_add_test(
		tc,
		test_a_user_of_tenant_a_cannot_read_change_or_detect_tenant_b);
	tcase_add_test(
		tc, test_switch_tenant_issues_a_token_for_another_membership);
	tcase_add_test(
		tc, test_api_keys_are_shown_once_scoped_expiring_and_revocable);
	tcase_add_test(tc, test_an_api_key_of_tenant_a_cannot_reach_tenant_b);
	tcase_add_test(
		tc,
		test_tenant_events_leave_through_the_outbox_even_after_a_crash);
	tcase_add_test(tc,
		       test_an_invitation_is_accepted_once_and_then_signs_in);
	tcase_add_test(
		tc, test_api_document_and_docs_page_are_served_without_sign_in);
	tcase_add_test(
		tc,
		test_health_all_checks_everything_in_parallel_and_names_what_is_down);
	tcase_add_test(tc, test_members_stop_at_the_plans_max_users);
	tcase_add_test(tc, test_sign_in_fails_closed_while_redis_is_down);
	tcase_add_test(tc, test_a_failure_counter_left_without_expiry_gets_one);
	tcase_add_test(
		tc,
		test_a_create_repeated_with_its_idempotency_key_makes_one_tenant);
	suite_add_tcase(s, tc);
	tcase_set_timeout(start, 60);
	tcase_add_test(
		start,
		test_bootstrap_admin_without_a_password_file_refuses_to_start);
	suite_add_tcase(s, start);
	return s;
}

CM_TEST_MAIN(make_suite)
