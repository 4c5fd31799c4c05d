/*
 * test_platform.c - the real binaries against the real PostgreSQL and Redis
 * that `make test` starts: error bodies, tokens, tenant resolution,
 * readiness when a dependency goes away, config refusal, graceful stop.
 */
#include "svc.h"
#include "testutil.h"

#include "common/auth.h"
#include "common/buf.h"
#include "common/mem.h"
#include "common/redis.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define DOMAIN "bz.test"

static struct cm_test_svc brain, crm;
static char tenant_a[37], tenant_b[37], tenant_s[37], tenant_c[37];
static char slug_a[40], slug_b[40];
static char domain_a[80];

static const char *const crm_env[] = { "DOMAIN=" DOMAIN,
				       "TENANT_CACHE_TTL_MS=1000", NULL };

static void
add_tenant(char id[37], char *slug, size_t slen, const char *prefix,
	   const char *status)
{
	char sql[512];

	ck_assert_int_eq(cm_uuid_v4(id), 0);
	snprintf(slug, slen, "%s-%.8s", prefix, id);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO brain.tenants (id, slug, name, status) "
		 "VALUES ('%s', '%s', 'Tenant %s', '%s')",
		 id, slug, prefix, status);
	ck_assert_int_eq(cm_test_psql(sql), 0);
}

static void
platform_setup(void)
{
	char slug[40], sql[512];

	cm_test_require_stack();
	ck_assert_int_eq(cm_test_svc_start(&brain, "brain", NULL), 0);
	add_tenant(tenant_a, slug_a, sizeof(slug_a), "alpha", "active");
	add_tenant(tenant_b, slug_b, sizeof(slug_b), "beta", "active");
	add_tenant(tenant_s, slug, sizeof(slug), "susp", "suspended");
	add_tenant(tenant_c, slug, sizeof(slug), "gamma", "trial");
	snprintf(domain_a, sizeof(domain_a), "shop-%.8s.example.test",
		 tenant_a);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO brain.tenant_domains (domain, tenant_id, "
		 "verified) VALUES ('%s', '%s', true)",
		 domain_a, tenant_a);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	ck_assert_int_eq(cm_test_svc_start(&crm, "crm", crm_env), 0);
}

static void
platform_teardown(void)
{
	cm_test_svc_stop(&crm);
	cm_test_svc_stop(&brain);
}

/* GET path on crm with up to three headers; returns the response. */
static struct cm_test_resp
get(const char *path, const char *h1, const char *h2, const char *h3)
{
	const char *hs[4] = { h1, h2, h3, NULL };
	struct cm_test_resp r;

	ck_assert_int_eq(cm_test_http("GET", crm.port, path, hs, NULL, &r), 0);
	return r;
}

static char *
bearer(const char *token)
{
	struct cm_buf b = CM_BUF_INIT(0);

	cm_buf_printf(&b, "Authorization: Bearer %s", token);
	return cm_buf_detach(&b, NULL);
}

static const char *
json_str(const cJSON *j, const char *a, const char *b)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, a);

	if (b)
		o = cJSON_GetObjectItemCaseSensitive(o, b);
	return cJSON_IsString(o) ? o->valuestring : "";
}

/* whoami as a user of tenant `tid`, with an optional extra header. */
static struct cm_test_resp
whoami_as(const char *tid, const char *extra)
{
	char *tok = cm_test_user_token("user-1", tid, NULL, 300);
	char *h = bearer(tok);
	struct cm_test_resp r = get("/whoami", h, extra, NULL);

	free(h);
	free(tok);
	return r;
}

static void
assert_error(struct cm_test_resp *r, long status, const char *code)
{
	ck_assert_msg(r->status == status, "status %ld, want %ld: %s",
		      r->status, status, r->body);
	ck_assert_str_eq(cm_test_resp_error_code(r), code);
	ck_assert_str_ne(json_str(r->json, "error", "request_id"), "");
	ck_assert_str_ne(json_str(r->json, "error", "message"), "");
	cm_test_resp_release(r);
}

START_TEST(test_health_names_the_service_and_ready_checks_each_dependency)
{
	struct cm_test_resp r = get("/health", NULL, NULL, NULL);

	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(json_str(r.json, "service", NULL), "crm");
	ck_assert_str_eq(json_str(r.json, "status", NULL), "ok");
	cm_test_resp_release(&r);
	r = get("/health/ready", NULL, NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(json_str(r.json, "checks", "postgres"), "");
	ck_assert_ptr_nonnull(
		strstr(r.body, "\"postgres\":{\"status\":\"up\""));
	ck_assert_ptr_nonnull(strstr(r.body, "\"redis\":{\"status\":\"up\""));
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_unknown_path_is_404_and_wrong_method_is_405_with_allow)
{
	struct cm_test_resp r = get("/no/such/thing", NULL, NULL, NULL);

	assert_error(&r, 404, "not_found");
	ck_assert_int_eq(
		cm_test_http("DELETE", crm.port, "/health", NULL, NULL, &r), 0);
	ck_assert_ptr_nonnull(cm_test_resp_header(&r, "Allow"));
	ck_assert_ptr_nonnull(strstr(cm_test_resp_header(&r, "Allow"), "GET"));
	assert_error(&r, 405, "method_not_allowed");
}
END_TEST

START_TEST(test_oversized_body_is_413_json)
{
	size_t n = 2u << 20; /* HTTP_MAX_BODY defaults to 1 MiB */
	char *body = cm_xmalloc(n + 1);
	const char *hs[] = { "Content-Type: application/json", NULL };
	struct cm_test_resp r;

	memset(body, 'x', n);
	body[n] = '\0';
	ck_assert_int_eq(
		cm_test_http("POST", crm.port, "/whoami", hs, body, &r), 0);
	free(body);
	assert_error(&r, 413, "payload_too_large");
}
END_TEST

START_TEST(test_request_id_is_echoed_in_header_and_error_body)
{
	struct cm_test_resp r =
		get("/nope", "X-Request-ID: trace-abc.123", NULL, NULL);

	ck_assert_str_eq(cm_test_resp_header(&r, "X-Request-ID"),
			 "trace-abc.123");
	ck_assert_str_eq(json_str(r.json, "error", "request_id"),
			 "trace-abc.123");
	cm_test_resp_release(&r);
	r = get("/nope", "X-Request-ID: bad id with spaces", NULL, NULL);
	ck_assert(cm_is_uuid(cm_test_resp_header(&r, "X-Request-ID")));
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_metrics_count_requests_by_route)
{
	struct cm_test_resp r = get("/health", NULL, NULL, NULL);

	cm_test_resp_release(&r);
	r = get("/metrics", NULL, NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(strstr(r.body, "bz_http_requests_total{"));
	ck_assert_ptr_nonnull(strstr(r.body, "route=\"/health\""));
	ck_assert_ptr_nonnull(
		strstr(r.body, "bz_http_request_duration_seconds_bucket{"));
	ck_assert_ptr_nonnull(strstr(r.body, "bz_dependency_up{"));
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_valid_user_token_gets_its_tenant)
{
	struct cm_test_resp r = whoami_as(tenant_a, NULL);

	ck_assert_msg(r.status == 200, "%s", r.body);
	ck_assert_str_eq(json_str(r.json, "tenant", "id"), tenant_a);
	ck_assert_str_eq(json_str(r.json, "subject", NULL), "user-1");
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_missing_token_is_401)
{
	struct cm_test_resp r = get("/whoami", NULL, NULL, NULL);

	assert_error(&r, 401, "unauthenticated");
}
END_TEST

static char *
b64url(const char *s)
{
	size_t n = strlen(s), i, j = 0;
	unsigned char *out = cm_xmalloc(4 * ((n + 2) / 3) + 1);
	int len = EVP_EncodeBlock(out, (const unsigned char *)s, (int)n);

	for (i = 0; i < (size_t)len; i++) {
		if (out[i] == '=')
			break;
		out[j++] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	}
	out[j] = '\0';
	return (char *)out;
}

static char *
claims_for(const char *tid, int ttl)
{
	struct cm_buf b = CM_BUF_INIT(0);
	int64_t now = cm_now_s();

	cm_buf_printf(&b,
		      "{\"sub\":\"user-1\",\"iss\":\"bizosaas-brain\","
		      "\"aud\":\"bizosaas\",\"exp\":%lld,\"iat\":%lld,"
		      "\"tenant_id\":\"%s\",\"roles\":[\"owner\"]}",
		      (long long)(now + ttl), (long long)now, tid);
	return cm_buf_detach(&b, NULL);
}

static long
whoami_status_with(const char *token)
{
	char *h = bearer(token);
	struct cm_test_resp r = get("/whoami", h, NULL, NULL);
	long status = r.status;

	if (status == 401)
		ck_assert_str_eq(cm_test_resp_error_code(&r), "invalid_token");
	cm_test_resp_release(&r);
	free(h);
	return status;
}

START_TEST(test_alg_none_token_is_refused)
{
	char *claims = claims_for(tenant_a, 300);
	char *hdr = b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}");
	char *body = b64url(claims);
	struct cm_buf tok = CM_BUF_INIT(0);

	cm_buf_printf(&tok, "%s.%s.", hdr, body);
	ck_assert_int_eq(whoami_status_with(cm_buf_str(&tok)), 401);
	cm_buf_release(&tok);
	free(claims);
	free(hdr);
	free(body);
}
END_TEST

START_TEST(test_wrong_key_expired_and_tampered_tokens_are_refused)
{
	static const char other[] =
		"another-key-that-is-long-enough-0123456789";
	char errbuf[CM_ERRBUF_LEN], *tok = NULL, *forged, *claims, *dot;
	struct cm_buf t = CM_BUF_INIT(0);

	claims = claims_for(tenant_a, 300);
	ck_assert_int_eq(cm_jwt_sign(CM_JWT_HS256, (const unsigned char *)other,
				     strlen(other), claims, &tok, errbuf),
			 0);
	ck_assert_int_eq(whoami_status_with(tok), 401);
	free(tok);
	tok = cm_test_user_token("user-1", tenant_a, NULL, -120);
	ck_assert_int_eq(whoami_status_with(tok), 401);
	free(tok);
	/* A valid token for A with its payload swapped for one naming B. */
	tok = cm_test_user_token("user-1", tenant_a, NULL, 300);
	ck_assert_int_eq(whoami_status_with(tok), 200);
	free(claims);
	claims = claims_for(tenant_b, 300);
	forged = b64url(claims);
	dot = strchr(tok, '.');
	cm_buf_add(&t, tok, (size_t)(dot - tok) + 1);
	cm_buf_puts(&t, forged);
	cm_buf_puts(&t, strrchr(tok, '.'));
	ck_assert_int_eq(whoami_status_with(cm_buf_str(&t)), 401);
	cm_buf_release(&t);
	free(forged);
	free(claims);
	free(tok);
}
END_TEST

START_TEST(test_revoked_token_is_refused)
{
	struct cm_redis_config rc = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "", jti[37], *tok = NULL, *claims;
	struct cm_buf c = CM_BUF_INIT(0);
	redisReply *rep;
	int64_t now = cm_now_s();
	int i;

	cm_uuid_v4(jti);
	cm_buf_printf(&c,
		      "{\"sub\":\"u\",\"iss\":\"bizosaas-brain\",\"aud\":"
		      "\"bizosaas\",\"exp\":%lld,\"jti\":\"%s\","
		      "\"tenant_id\":\"%s\"}",
		      (long long)(now + 300), jti, tenant_a);
	claims = cm_buf_detach(&c, NULL);
	ck_assert_int_eq(cm_jwt_sign(CM_JWT_HS256,
				     (const unsigned char *)cm_test_env(
					     "JWT_SECRET_KEY"),
				     strlen(cm_test_env("JWT_SECRET_KEY")),
				     claims, &tok, errbuf),
			 0);
	ck_assert_int_eq(whoami_status_with(tok), 200);
	rc.host = "127.0.0.1";
	rc.port = (int)strtol(cm_test_env("REDIS_PORT"), NULL, 10);
	rc.password = getenv("REDIS_PASSWORD");
	rc.connect_timeout_ms = 1000;
	rc.command_timeout_ms = 1000;
	ck_assert_int_eq(cm_redis_init(&rc, errbuf), 0);
	rep = cm_redis_cmdf(errbuf, "SET bz:auth:revoked:%s 1 EX 60", jti);
	ck_assert_ptr_nonnull(rep);
	freeReplyObject(rep);
	/* a "not revoked" answer is remembered for up to 1 s per thread:
	   once that has lapsed every thread refuses it */
	usleep(1100 * 1000);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(whoami_status_with(tok), 401);
	cm_redis_shutdown();
	free(tok);
	free(claims);
}
END_TEST

START_TEST(test_service_token_for_another_service_is_refused)
{
	const char *secret = cm_test_env("SERVICE_SECRET");
	char errbuf[CM_ERRBUF_LEN], *tok = NULL;
	struct cm_buf h = CM_BUF_INIT(0), t = CM_BUF_INIT(0);
	struct cm_test_resp r;

	ck_assert_int_eq(
		cm_service_token_mint(secret, "brain", "cms", 30, &tok, errbuf),
		0);
	cm_buf_printf(&h, "X-Service-Token: %s", tok);
	cm_buf_printf(&t, "X-Tenant-ID: %s", tenant_a);
	r = get("/whoami", cm_buf_str(&h), cm_buf_str(&t), NULL);
	assert_error(&r, 401, "invalid_service_token");
	free(tok);
	cm_buf_reset(&h);
	ck_assert_int_eq(
		cm_service_token_mint(secret, "brain", "crm", 30, &tok, errbuf),
		0);
	cm_buf_printf(&h, "X-Service-Token: %s", tok);
	r = get("/whoami", cm_buf_str(&h), cm_buf_str(&t), NULL);
	ck_assert_msg(r.status == 200, "%s", r.body);
	ck_assert_str_eq(json_str(r.json, "tenant", "id"), tenant_a);
	ck_assert(cJSON_IsTrue(
		cJSON_GetObjectItemCaseSensitive(r.json, "service_token")));
	cm_test_resp_release(&r);
	free(tok);
	cm_buf_release(&h);
	cm_buf_release(&t);
}
END_TEST

static char *
slurp(const char *path)
{
	struct cm_buf b = CM_BUF_INIT(1 << 20);
	char chunk[4096];
	FILE *f = fopen(path, "r");
	size_t n;

	ck_assert_ptr_nonnull(f);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		cm_buf_add(&b, chunk, n);
	fclose(f);
	return cm_buf_detach(&b, NULL);
}

START_TEST(test_rs256_service_refuses_hs256_tokens_and_the_reverse)
{
	char dir[] = "/tmp/bz-rsa-XXXXXX", cmd[2048], pub[64], priv[64];
	char errbuf[CM_ERRBUF_LEN], env_file[128], *priv_pem, *pub_pem;
	char *claims = claims_for(tenant_a, 300), *tok = NULL;
	const char *env[] = { "DOMAIN=" DOMAIN, "JWT_ALGORITHM=RS256", env_file,
			      NULL };
	struct cm_test_svc rs;
	struct cm_test_svc saved = crm;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(priv, sizeof(priv), "%s/priv.pem", dir);
	snprintf(pub, sizeof(pub), "%s/pub.pem", dir);
	snprintf(cmd, sizeof(cmd),
		 "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
		 "-out %s 2>/dev/null && openssl pkey -in %s -pubout -out %s",
		 priv, priv, pub);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(env_file, sizeof(env_file), "JWT_PUBLIC_KEY_FILE=%s", pub);
	ck_assert_int_eq(cm_test_svc_start(&rs, "crm", env), 0);
	priv_pem = slurp(priv);
	pub_pem = slurp(pub);
	ck_assert_int_eq(cm_jwt_sign(CM_JWT_RS256,
				     (const unsigned char *)priv_pem,
				     strlen(priv_pem), claims, &tok, errbuf),
			 0);
	crm = rs;
	ck_assert_int_eq(whoami_status_with(tok), 200);
	crm = saved;
	ck_assert_int_eq(whoami_status_with(tok), 401); /* HS256 service */
	free(tok);
	/* Key confusion: HS256 signed with the public key as the secret. */
	ck_assert_int_eq(cm_jwt_sign(CM_JWT_HS256,
				     (const unsigned char *)pub_pem,
				     strlen(pub_pem), claims, &tok, errbuf),
			 0);
	crm = rs;
	ck_assert_int_eq(whoami_status_with(tok), 401);
	free(tok);
	tok = cm_test_user_token("user-1", tenant_a, NULL, 300);
	ck_assert_int_eq(whoami_status_with(tok), 401);
	crm = saved;
	ck_assert_int_eq(cm_test_svc_stop(&rs), 0);
	free(tok);
	free(claims);
	free(priv_pem);
	free(pub_pem);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_service_token_with_x_tenant_id_and_tenant_hosts_resolve)
{
	struct cm_buf host = CM_BUF_INIT(0);
	struct cm_test_resp r;

	/* <slug>.<DOMAIN> */
	cm_buf_printf(&host, "Host: %s." DOMAIN, slug_a);
	r = whoami_as(tenant_a, cm_buf_str(&host));
	ck_assert_msg(r.status == 200, "%s", r.body);
	ck_assert_str_eq(json_str(r.json, "tenant", "id"), tenant_a);
	cm_test_resp_release(&r);
	/* a verified custom domain */
	cm_buf_reset(&host);
	cm_buf_printf(&host, "Host: %s", domain_a);
	r = whoami_as(tenant_a, cm_buf_str(&host));
	ck_assert_msg(r.status == 200, "%s", r.body);
	ck_assert_str_eq(json_str(r.json, "tenant", "slug"), slug_a);
	cm_test_resp_release(&r);
	/* a token without a tenant, on the tenant's host */
	cm_buf_reset(&host);
	cm_buf_printf(&host, "Host: %s." DOMAIN ":8080", slug_b);
	r = whoami_as(NULL, cm_buf_str(&host));
	ck_assert_msg(r.status == 200, "%s", r.body);
	ck_assert_str_eq(json_str(r.json, "tenant", "id"), tenant_b);
	cm_test_resp_release(&r);
	cm_buf_release(&host);
}
END_TEST

START_TEST(test_disagreeing_sources_are_a_tenant_mismatch)
{
	struct cm_buf host = CM_BUF_INIT(0);
	struct cm_test_resp r;

	cm_buf_printf(&host, "Host: %s." DOMAIN, slug_b);
	r = whoami_as(tenant_a, cm_buf_str(&host));
	assert_error(&r, 403, "tenant_mismatch");
	cm_buf_reset(&host);
	cm_buf_printf(&host, "Host: %s", domain_a);
	r = whoami_as(tenant_b, cm_buf_str(&host));
	assert_error(&r, 403, "tenant_mismatch");
	cm_buf_release(&host);
}
END_TEST

START_TEST(test_unknown_and_suspended_tenants_are_refused)
{
	char ghost[37];
	struct cm_test_resp r;

	cm_uuid_v4(ghost);
	r = whoami_as(ghost, NULL);
	assert_error(&r, 404, "tenant_not_found");
	r = whoami_as(tenant_a, "Host: nosuch-tenant." DOMAIN);
	assert_error(&r, 404, "tenant_not_found");
	r = whoami_as(tenant_s, NULL);
	assert_error(&r, 403, "tenant_suspended");
	r = whoami_as(NULL, NULL);
	assert_error(&r, 400, "tenant_required");
}
END_TEST

START_TEST(test_bare_x_tenant_id_is_ignored)
{
	struct cm_buf h = CM_BUF_INIT(0);
	struct cm_test_resp r;

	cm_buf_printf(&h, "X-Tenant-ID: %s", tenant_b);
	r = whoami_as(tenant_a, cm_buf_str(&h));
	ck_assert_msg(r.status == 200, "%s", r.body);
	ck_assert_str_eq(json_str(r.json, "tenant", "id"), tenant_a);
	cm_test_resp_release(&r);
	r = whoami_as(NULL, cm_buf_str(&h));
	assert_error(&r, 400, "tenant_required");
	r = get("/whoami", cm_buf_str(&h), NULL, NULL);
	assert_error(&r, 401, "unauthenticated");
	cm_buf_release(&h);
}
END_TEST

START_TEST(test_suspension_applies_within_five_seconds)
{
	char sql[256];
	struct cm_test_resp r = whoami_as(tenant_c, NULL);
	int64_t t0;
	long status = 0;

	ck_assert_int_eq(r.status, 200);
	cm_test_resp_release(&r);
	snprintf(
		sql, sizeof(sql),
		"UPDATE brain.tenants SET status = 'suspended' WHERE id = '%s'",
		tenant_c);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	t0 = cm_now_ms();
	while (cm_now_ms() - t0 < 5000) {
		r = whoami_as(tenant_c, NULL);
		status = r.status;
		cm_test_resp_release(&r);
		if (status == 403)
			break;
		usleep(100 * 1000);
	}
	ck_assert_int_eq(status, 403);
	ck_assert_int_lt(cm_now_ms() - t0, 5000);
}
END_TEST

/* Poll /health/ready on port until it answers want (10 s). */
static struct cm_test_resp
ready_until(int port, long want)
{
	struct cm_test_resp r = { 0 };
	int i;

	for (i = 0; i < 100; i++) {
		ck_assert_int_eq(cm_test_http("GET", port, "/health/ready",
					      NULL, NULL, &r),
				 0);
		if (r.status == want)
			break;
		cm_test_resp_release(&r);
		usleep(100 * 1000);
	}
	return r;
}

START_TEST(test_stopped_redis_turns_ready_into_503_and_recovers)
{
	struct cm_test_svc s;
	struct cm_test_resp r;

	ck_assert_int_eq(cm_test_svc_start(&s, "crm", crm_env), 0);
	ck_assert_int_eq(cm_test_stack("stop-redis"), 0);
	r = ready_until(s.port, 503);
	ck_assert_int_eq(r.status, 503);
	ck_assert_str_eq(cm_test_resp_error_code(&r), "not_ready");
	ck_assert_ptr_nonnull(
		strstr(json_str(r.json, "error", "message"), "redis"));
	ck_assert_ptr_null(
		strstr(json_str(r.json, "error", "message"), "postgres"));
	cm_test_resp_release(&r);
	ck_assert_int_eq(cm_test_stack("start-redis"), 0);
	r = ready_until(s.port, 200);
	ck_assert_int_eq(r.status, 200);
	cm_test_resp_release(&r);
	ck_assert_int_eq(cm_test_svc_stop(&s), 0);
}
END_TEST

START_TEST(test_postgres_restart_turns_ready_into_503_and_recovers)
{
	struct cm_test_svc s;
	struct cm_test_resp r;

	ck_assert_int_eq(cm_test_svc_start(&s, "crm", crm_env), 0);
	ck_assert_int_eq(cm_test_stack("stop-pg"), 0);
	r = ready_until(s.port, 503);
	ck_assert_int_eq(r.status, 503);
	ck_assert_ptr_nonnull(
		strstr(json_str(r.json, "error", "message"), "postgres"));
	cm_test_resp_release(&r);
	ck_assert_int_eq(cm_test_stack("start-pg"), 0);
	r = ready_until(s.port, 200);
	ck_assert_int_eq(r.status, 200);
	cm_test_resp_release(&r);
	ck_assert_int_eq(cm_test_svc_stop(&s), 0);
}
END_TEST

struct slow_call {
	int port;
	struct cm_test_resp resp;
	int rc;
};

static void *
slow_call_run(void *arg)
{
	struct slow_call *c = arg;

	c->rc = cm_test_http("GET", c->port, "/health/ready", NULL, NULL,
			     &c->resp);
	return NULL;
}

static pid_t
redis_pid(void)
{
	struct cm_redis_config rc = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	redisReply *r;
	const char *p;
	pid_t pid = 0;

	rc.host = "127.0.0.1";
	rc.port = (int)strtol(cm_test_env("REDIS_PORT"), NULL, 10);
	rc.password = getenv("REDIS_PASSWORD");
	rc.connect_timeout_ms = 1000;
	rc.command_timeout_ms = 1000;
	ck_assert_int_eq(cm_redis_init(&rc, errbuf), 0);
	r = cm_redis_cmdf(errbuf, "INFO server");
	ck_assert_ptr_nonnull(r);
	p = strstr(r->str, "process_id:");
	ck_assert_ptr_nonnull(p);
	pid = (pid_t)strtol(p + 11, NULL, 10);
	freeReplyObject(r);
	cm_redis_shutdown();
	return pid;
}

/* A request is held in flight by a frozen Redis; SIGTERM arrives; the
   client still gets a whole answer and the service exits 0. */
START_TEST(test_sigterm_drains_a_slow_in_flight_request)
{
	struct cm_test_svc s;
	struct slow_call call = { 0 };
	pthread_t th;
	pid_t rpid = redis_pid();

	ck_assert_int_eq(cm_test_svc_start(&s, "crm", crm_env), 0);
	call.port = s.port;
	ck_assert_int_eq(kill(rpid, SIGSTOP), 0);
	pthread_create(&th, NULL, slow_call_run, &call);
	usleep(300 * 1000);
	kill(s.pid, SIGTERM);
	usleep(500 * 1000);
	kill(rpid, SIGCONT);
	pthread_join(th, NULL);
	ck_assert_int_eq(call.rc, 0);
	ck_assert(call.resp.status == 200 || call.resp.status == 503);
	ck_assert_ptr_nonnull(call.resp.json);
	ck_assert(call.resp.seconds > 0.5);
	cm_test_resp_release(&call.resp);
	ck_assert_int_eq(cm_test_svc_stop(&s), 0);
}
END_TEST

START_TEST(test_bad_config_is_refused_listing_every_problem)
{
	const char *env[] = { "CRM_PORT=notaport",
			      "JWT_SECRET_KEY=tiny-secret-value",
			      "SERVICE_SECRET=", "HTTP_THREADS=1000", NULL };
	char *err = NULL;

	ck_assert_int_eq(cm_test_svc_run("crm", env, NULL, &err), 2);
	ck_assert_ptr_nonnull(strstr(err, "CRM_PORT"));
	ck_assert_ptr_nonnull(strstr(err, "JWT_SECRET_KEY"));
	ck_assert_ptr_nonnull(strstr(err, "SERVICE_SECRET"));
	ck_assert_ptr_nonnull(strstr(err, "HTTP_THREADS"));
	ck_assert_ptr_null(strstr(err, "tiny-secret-value"));
	free(err);
}
END_TEST

START_TEST(test_help_lists_settings_without_secret_values)
{
	char *out = NULL;
	const char *secret = cm_test_env("JWT_SECRET_KEY");

	ck_assert_int_eq(cm_test_svc_run("crm", NULL, "--help", &out), 0);
	ck_assert_ptr_nonnull(strstr(out, "POSTGRES_HOST"));
	ck_assert_ptr_nonnull(strstr(out, "CRM_PORT"));
	ck_assert_ptr_nonnull(strstr(out, "8003"));
	ck_assert_ptr_null(strstr(out, secret));
	free(out);
}
END_TEST

START_TEST(test_role_with_bypassrls_is_refused_at_start)
{
	char *err = NULL;
	int rc;

	ck_assert_int_eq(cm_test_psql("ALTER ROLE bz_telegram BYPASSRLS"), 0);
	rc = cm_test_svc_run("telegram", NULL, NULL, &err);
	ck_assert_int_eq(cm_test_psql("ALTER ROLE bz_telegram NOBYPASSRLS"), 0);
	ck_assert_int_ne(rc, 0);
	ck_assert_ptr_nonnull(strstr(err, "BYPASSRLS"));
	free(err);
}
END_TEST

START_TEST(test_sigterm_while_waiting_for_postgres_exits_cleanly)
{
	char port[32];
	const char *env[] = { port, "DB_STARTUP_WAIT_S=60", NULL };
	struct cm_test_svc s;

	snprintf(port, sizeof(port), "POSTGRES_PORT=%d", cm_test_free_port());
	cm_test_svc_spawn(&s, "crm", env);
	usleep(1500 * 1000);
	ck_assert_int_eq(cm_test_svc_stop(&s), 0);
}
END_TEST

static const char *const all_services[] = {
	"brain",	"event-bus",	    "crm",   "cms",
	"agents",	"telegram",	    "image", "temporal-worker",
	"vault-client", "dashboard-server", NULL
};

START_TEST(test_every_service_starts_is_ready_and_stops_cleanly)
{
	struct cm_test_svc s;
	struct cm_test_resp r;
	int i;

	for (i = 0; all_services[i]; i++) {
		ck_assert_msg(cm_test_svc_start(&s, all_services[i], NULL) == 0,
			      "%s did not start", all_services[i]);
		r = ready_until(s.port, 200);
		ck_assert_msg(r.status == 200, "%s: %s", all_services[i],
			      r.body);
		ck_assert_str_eq(json_str(r.json, "status", NULL), "ready");
		cm_test_resp_release(&r);
		ck_assert_int_eq(cm_test_svc_stop(&s), 0);
	}
}
END_TEST

START_TEST(test_healthcheck_flag_probes_readiness)
{
	char *out = NULL, port[32];
	const char *env[] = { port, NULL };

	snprintf(port, sizeof(port), "CRM_PORT=%d", crm.port);
	ck_assert_int_eq(cm_test_svc_run("crm", env, "--healthcheck", &out), 0);
	free(out);
	snprintf(port, sizeof(port), "CRM_PORT=%d", cm_test_free_port());
	ck_assert_int_eq(cm_test_svc_run("crm", env, "--healthcheck", &out), 1);
	free(out);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("platform");
	TCase *http = tcase_create("http");
	TCase *deps = tcase_create("dependencies");
	TCase *start = tcase_create("start-up");

	tcase_add_unchecked_fixture(http, platform_setup, platform_teardown);
	tcase_set_timeout(http, 120);
	tcase_add_test(
		http,
		test_health_names_the_service_and_ready_checks_each_dependency);
	tcase_add_test(
		http,
		test_unknown_path_is_404_and_wrong_method_is_405_with_allow);
	tcase_add_test(http, test_oversized_body_is_413_json);
	tcase_add_test(http,
		       test_request_id_is_echoed_in_header_and_error_body);
	tcase_add_test(http, test_metrics_count_requests_by_route);
	tcase_add_test(http, test_valid_user_token_gets_its_tenant);
	tcase_add_test(http, test_missing_token_is_401);
	tcase_add_test(http, test_alg_none_token_is_refused);
	tcase_add_test(http,
		       test_wrong_key_expired_and_tampered_tokens_are_refused);
	tcase_add_test(http, test_revoked_token_is_refused);
	tcase_add_test(http, test_service_token_for_another_service_is_refused);
	tcase_add_test(http,
		       test_rs256_service_refuses_hs256_tokens_and_the_reverse);
	tcase_add_test(
		http,
		test_service_token_with_x_tenant_id_and_tenant_hosts_resolve);
	tcase_add_test(http, test_disagreeing_sources_are_a_tenant_mismatch);
	tcase_add_test(http, test_unknown_and_suspended_tenants_are_refused);
	tcase_add_test(http, test_bare_x_tenant_id_is_ignored);
	tcase_add_test(http, test_suspension_applies_within_five_seconds);
	tcase_add_test(http, test_healthcheck_flag_probes_readiness);
	suite_add_tcase(s, http);

	tcase_set_timeout(deps, 120);
	tcase_add_test(deps,
		       test_stopped_redis_turns_ready_into_503_and_recovers);
	tcase_add_test(deps,
		       test_postgres_restart_turns_ready_into_503_and_recovers);
	tcase_add_test(deps, test_sigterm_drains_a_slow_in_flight_request);
	suite_add_tcase(s, deps);

	tcase_set_timeout(start, 180);
	tcase_add_test(start, test_bad_config_is_refused_listing_every_problem);
	tcase_add_test(start, test_help_lists_settings_without_secret_values);
	tcase_add_test(start, test_role_with_bypassrls_is_refused_at_start);
	tcase_add_test(start,
		       test_sigterm_while_waiting_for_postgres_exits_cleanly);
	tcase_add_test(start,
		       test_every_service_starts_is_ready_and_stops_cleanly);
	suite_add_tcase(s, start);
	return s;
}

CM_TEST_MAIN(make_suite)
