/*
 * test_vault_api.c - tenant users' /api/secrets through the real brain
 * gateway to the real vault-client (PostgreSQL, Redis), Transit for
 * services on both backends (the fake Vault for one), and brain's
 * /health/vault.
 *
 * Users are tenant owners/admins/managers/readers (cm_test_user_token)
 * and API keys made through brain. Secret values carry a random marker
 * that the test never prints; the last test scans every captured log for
 * it.
 */
#include "svc.h"
#include "testutil.h"

#include "common/auth.h"
#include "common/buf.h"
#include "common/mem.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/banned.h"

static struct cm_test_svc vcs, brain;
static char tenant_a[37], tenant_b[37], user_a[37], user_b[37];
static char marker[40]; /* random, only ever inside secret values */
static char value1[128], value2[128], key_file[64];

/* ---- set-up ------------------------------------------------------------- */

static void
write_key_file(char *path, size_t n)
{
	unsigned char raw[32];
	FILE *f;
	int fd, i;

	snprintf(path, n, "/tmp/vc-api-key-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	f = fopen("/dev/urandom", "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fread(raw, 1, 32, f), 32);
	fclose(f);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	for (i = 0; i < 32; i++)
		fprintf(f, "%02x", raw[i]);
	fprintf(f, "\n");
	fclose(f);
}

static void
add_tenant(char id[37])
{
	char sql[256];

	ck_assert_int_eq(cm_uuid_v4(id), 0);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO brain.tenants (id, slug, name, status) VALUES "
		 "('%s', 'vca-%.8s', 'Vault API test', 'active')",
		 id, id);
	ck_assert_int_eq(cm_test_psql(sql), 0);
}

/* Start from an empty local store (another test may have left one under
   another master key). */
static void
clear_store(void)
{
	ck_assert_int_eq(
		cm_test_psql("DO $$ BEGIN IF to_regclass("
			     "'vault_client.transit_keys') IS NOT NULL "
			     "THEN DELETE FROM vault_client.transit_keys; "
			     "END IF; IF to_regclass("
			     "'vault_client.keyring') IS NOT NULL "
			     "THEN DELETE FROM vault_client.keyring; "
			     "DELETE FROM vault_client.tenant_secrets; "
			     "DELETE FROM vault_client.platform_secrets; "
			     "END IF; END $$"),
		0);
}

static int
start_brain(struct cm_test_svc *s, int vc_port)
{
	char url[80];
	const char *env[] = { url, "GATEWAY_PLAN_TTL_MS=0", NULL };

	snprintf(url, sizeof(url), "VAULT_CLIENT_URL=http://127.0.0.1:%d",
		 vc_port);
	return cm_test_svc_start(s, "brain", env);
}

static void
setup(void)
{
	char k[128];
	const char *env[] = { k, NULL };
	char *err = NULL;

	cm_test_require_stack();
	ck_assert_int_eq(cm_test_svc_run("brain", NULL, "--migrate", &err), 0);
	free(err);
	add_tenant(tenant_a);
	add_tenant(tenant_b);
	ck_assert_int_eq(cm_uuid_v4(user_a), 0);
	ck_assert_int_eq(cm_uuid_v4(user_b), 0);
	ck_assert_int_eq(cm_uuid_v4(marker), 0);
	snprintf(value1, sizeof(value1), "sk-api-one-%s", marker);
	snprintf(value2, sizeof(value2), "sk-api-two-%s", marker);
	write_key_file(key_file, sizeof(key_file));
	clear_store();
	snprintf(k, sizeof(k), "VAULT_MASTER_KEY_FILE=%s", key_file);
	ck_assert_int_eq(cm_test_svc_start(&vcs, "vault-client", env), 0);
	ck_assert_int_eq(start_brain(&brain, vcs.port), 0);
}

static void
teardown(void)
{
	cm_test_psql("GRANT INSERT ON vault_client.audit TO bz_vault_client");
	cm_test_svc_stop(&brain);
	cm_test_svc_stop(&vcs);
	clear_store();
	unlink(key_file);
}

/* ---- requests ------------------------------------------------------------ */

/* One request to port with `auth` ("Authorization: ..." or
   "X-Service-Token: ..." or NULL) and extra headers. */
static struct cm_test_resp
req_port(int port, const char *method, const char *auth, const char *path,
	 const char *body, const char *const *extra)
{
	const char *hs[12] = { NULL };
	struct cm_test_resp r;
	int n = 0;

	if (auth)
		hs[n++] = auth;
	if (body)
		hs[n++] = "Content-Type: application/json";
	while (extra && *extra && n < 11)
		hs[n++] = *extra++;
	ck_assert_int_eq(cm_test_http(method, port, path, hs, body, &r), 0);
	return r;
}

/* Through brain as user (sub) of tenant with roles (a JSON array). */
static struct cm_test_resp
as_user(const char *sub, const char *tenant, const char *roles,
	const char *method, const char *path, const char *body,
	const char *const *extra)
{
	char *tok = cm_test_user_token(sub, tenant, roles, 300);
	struct cm_buf auth = CM_BUF_INIT(0);
	struct cm_test_resp r;

	cm_buf_printf(&auth, "Authorization: Bearer %s", tok);
	r = req_port(brain.port, method, cm_buf_str(&auth), path, body, extra);
	cm_buf_release(&auth);
	free(tok);
	return r;
}

#define OWNER_A(m, p, b) as_user(user_a, tenant_a, "[\"owner\"]", m, p, b, NULL)
#define OWNER_B(m, p, b) as_user(user_b, tenant_b, "[\"owner\"]", m, p, b, NULL)

/* Status (and code) of one call, response released. */
static void
expect_call(struct cm_test_resp r, long status, const char *code)
{
	cm_test_expect(&r, status, code);
	cm_test_resp_release(&r);
}

static char *
secret_body(const char *value)
{
	struct cm_buf b = CM_BUF_INIT(0);

	cm_buf_printf(&b, "{\"data\":{\"api_key\":\"%s\"}}", value);
	return cm_buf_detach(&b, NULL);
}

/* Whether a reveal answered 200 with api_key equal to value (never
   printed). */
static bool
reveals(const struct cm_test_resp *r, const char *value)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(r->json, "data"), "api_key");

	return r->status == 200 && cJSON_IsString(v) &&
	       !strcmp(v->valuestring, value);
}

static int
json_int(const cJSON *obj, const char *name)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsNumber(o) ? o->valueint : -1;
}

static bool
has_marker(const struct cm_test_resp *r)
{
	return r->body && strstr(r->body, marker);
}

/* Owner of A writes name with value; the status. */
static long
owner_a_writes(const char *name, const char *value)
{
	char path[300], *body = secret_body(value);
	struct cm_test_resp r;
	long st;

	snprintf(path, sizeof(path), "/api/secrets/data/%s", name);
	r = OWNER_A("PUT", path, body);
	st = r.status;
	ck_assert(!has_marker(&r));
	cm_test_resp_release(&r);
	free(body);
	return st;
}

/* ---- tenant users ---------------------------------------------------------
 */

START_TEST(test_owner_writes_rotates_lists_and_reveals_through_brain)
{
	struct cm_test_resp r;

	ck_assert_int_eq(owner_a_writes("llm/openai", value1), 201);
	ck_assert_int_eq(owner_a_writes("llm/openai", value2), 200);
	r = OWNER_A("GET", "/api/secrets/list?prefix=llm/", NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_ptr_nonnull(strstr(r.body, "\"llm/openai\""));
	ck_assert(!has_marker(&r));
	cm_test_resp_release(&r);
	r = OWNER_A("GET", "/api/secrets/metadata/llm/openai", NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_int_eq(json_int(r.json, "current_version"), 2);
	ck_assert_str_eq(cm_test_resp_header(&r, "ETag"), "\"2\"");
	ck_assert(!has_marker(&r));
	cm_test_resp_release(&r);
	r = OWNER_A("POST", "/api/secrets/reveal/llm/openai", NULL);
	ck_assert(reveals(&r, value2));
	ck_assert_ptr_nonnull(cm_test_resp_header(&r, "Cache-Control"));
	cm_test_resp_release(&r);
	r = OWNER_A("POST", "/api/secrets/reveal/llm/openai?version=1", NULL);
	ck_assert(reveals(&r, value1));
	cm_test_resp_release(&r);
	/* paths are canonicalised as for services */
	expect_call(OWNER_A("GET", "/api/secrets/metadata/llm/%2E%2E/x", NULL),
		    400, "invalid_path");
	expect_call(
		OWNER_A("POST", "/api/secrets/reveal/platform/brain/x", NULL),
		403, "platform_path");
	expect_call(OWNER_A("GET", "/api/secrets/metadata/llm/nope", NULL), 404,
		    "not_found");
}
END_TEST

START_TEST(test_tenant_b_cannot_read_list_touch_or_infer_tenant_a_secrets)
{
	char path[300];
	struct cm_test_resp r;

	ck_assert_int_le(owner_a_writes("telegram/bot", value1), 201);
	expect_call(OWNER_B("GET", "/api/secrets/metadata/telegram/bot", NULL),
		    404, "not_found");
	expect_call(OWNER_B("POST", "/api/secrets/reveal/telegram/bot", NULL),
		    404, "not_found");
	expect_call(OWNER_B("DELETE", "/api/secrets/data/telegram/bot", NULL),
		    404, "not_found");
	/* a missing name of B answers exactly like A's existing one */
	expect_call(OWNER_B("GET", "/api/secrets/metadata/telegram/none", NULL),
		    404, "not_found");
	snprintf(path, sizeof(path),
		 "/api/secrets/reveal/tenants/%s/telegram/bot", tenant_a);
	expect_call(OWNER_B("POST", path, NULL), 403, "foreign_tenant");
	snprintf(path, sizeof(path), "/api/secrets/data/tenants/%s/x",
		 tenant_a);
	expect_call(OWNER_B("PUT", path, "{\"data\":{\"k\":\"v\"}}"), 403,
		    "foreign_tenant");
	r = OWNER_B("GET", "/api/secrets/list", NULL);
	cm_test_expect(&r, 200, NULL);
	ck_assert_ptr_null(strstr(r.body, "telegram/bot"));
	cm_test_resp_release(&r);
	/* B's audit log holds B's own attempts only (one named A's id) */
	r = OWNER_B("GET", "/api/secrets/audit?limit=200", NULL);
	cm_test_expect(&r, 200, NULL);
	snprintf(path, sizeof(path), "\"path\":\"tenants/%s", tenant_a);
	ck_assert_ptr_null(strstr(r.body, path));
	ck_assert_ptr_null(strstr(r.body, user_a));
	cm_test_resp_release(&r);
	/* B's own secret of the same name is B's */
	expect_call(OWNER_B("PUT", "/api/secrets/data/telegram/bot",
			    "{\"data\":{\"api_key\":\"b-own\"}}"),
		    201, NULL);
	r = OWNER_A("POST", "/api/secrets/reveal/telegram/bot", NULL);
	ck_assert(reveals(&r, value1));
	cm_test_resp_release(&r);
	r = OWNER_B("POST", "/api/secrets/reveal/telegram/bot", NULL);
	ck_assert(reveals(&r, "b-own"));
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_roles_decide_who_may_write_reveal_or_only_look)
{
	static const char mgr[] = "[\"manager\"]", usr[] = "[\"user\"]",
			  adm[] = "[\"admin\"]";

	ck_assert_int_le(owner_a_writes("images/pexels", value1), 201);
	expect_call(as_user(user_a, tenant_a, mgr, "GET", "/api/secrets/list",
			    NULL, NULL),
		    200, NULL);
	expect_call(as_user(user_a, tenant_a, mgr, "GET",
			    "/api/secrets/metadata/images/pexels", NULL, NULL),
		    200, NULL);
	expect_call(as_user(user_a, tenant_a, mgr, "POST",
			    "/api/secrets/reveal/images/pexels", NULL, NULL),
		    403, "forbidden");
	expect_call(as_user(user_a, tenant_a, mgr, "PUT",
			    "/api/secrets/data/images/pexels",
			    "{\"data\":{\"k\":\"v\"}}", NULL),
		    403, "forbidden");
	expect_call(as_user(user_a, tenant_a, mgr, "DELETE",
			    "/api/secrets/data/images/pexels", NULL, NULL),
		    403, "forbidden");
	expect_call(as_user(user_a, tenant_a, mgr, "GET", "/api/secrets/audit",
			    NULL, NULL),
		    403, "forbidden");
	expect_call(as_user(user_a, tenant_a, usr, "GET", "/api/secrets/list",
			    NULL, NULL),
		    403, "forbidden");
	expect_call(as_user(user_a, tenant_a, "[\"readonly\"]", "GET",
			    "/api/secrets/metadata/images/pexels", NULL, NULL),
		    403, "forbidden");
	expect_call(as_user(user_a, tenant_a, adm, "GET", "/api/secrets/audit",
			    NULL, NULL),
		    200, NULL);
	expect_call(as_user(user_a, tenant_a, adm, "PUT",
			    "/api/secrets/data/images/admin-made",
			    "{\"data\":{\"k\":\"v\"}}", NULL),
		    201, NULL);
}
END_TEST

/* An API key of tenant A with scopes (a JSON array), as a header. */
static void
make_api_key(const char *scopes, struct cm_buf *auth)
{
	char body[256];
	struct cm_test_resp r;
	const cJSON *key;

	snprintf(body, sizeof(body), "{\"name\":\"vc\",\"scopes\":%s}", scopes);
	r = OWNER_A("POST", "/api/tenant/api-keys", body);
	cm_test_expect(&r, 201, NULL);
	key = cJSON_GetObjectItemCaseSensitive(r.json, "key");
	ck_assert(cJSON_IsString(key));
	cm_buf_printf(auth, "Authorization: Bearer %s", key->valuestring);
	cm_test_resp_release(&r);
}

START_TEST(test_api_keys_use_the_secrets_scopes_and_never_reveal)
{
	struct cm_buf rk = CM_BUF_INIT(0), wk = CM_BUF_INIT(0);
	const char *put = "{\"data\":{\"api_key\":\"by-key\"}}";
	int bp = brain.port;

	ck_assert_int_le(owner_a_writes("webhooks/stripe", value1), 201);
	make_api_key("[\"secrets:read\"]", &rk);
	make_api_key("[\"secrets:write\"]", &wk);
	expect_call(req_port(bp, "GET", cm_buf_str(&rk), "/api/secrets/list",
			     NULL, NULL),
		    200, NULL);
	expect_call(req_port(bp, "GET", cm_buf_str(&rk),
			     "/api/secrets/metadata/webhooks/stripe", NULL,
			     NULL),
		    200, NULL);
	expect_call(req_port(bp, "PUT", cm_buf_str(&rk),
			     "/api/secrets/data/webhooks/k", put, NULL),
		    403, "insufficient_scope");
	expect_call(req_port(bp, "POST", cm_buf_str(&rk),
			     "/api/secrets/reveal/webhooks/stripe", NULL, NULL),
		    403, "insufficient_scope");
	expect_call(req_port(bp, "PUT", cm_buf_str(&wk),
			     "/api/secrets/data/webhooks/k", put, NULL),
		    201, NULL);
	/* write scope passes the gateway, but a value never goes to a key */
	expect_call(req_port(bp, "POST", cm_buf_str(&wk),
			     "/api/secrets/reveal/webhooks/stripe", NULL, NULL),
		    403, "insufficient_scope");
	expect_call(req_port(bp, "GET", cm_buf_str(&wk), "/api/secrets/audit",
			     NULL, NULL),
		    403, "insufficient_scope");
	expect_call(req_port(bp, "DELETE", cm_buf_str(&wk),
			     "/api/secrets/data/webhooks/k", NULL, NULL),
		    204, NULL);
	cm_buf_release(&rk);
	cm_buf_release(&wk);
}
END_TEST

/* A gateway token as brain mints it, for a test-made user. */
static char *
gateway_token(const char *sub, const char *tenant, const char *role)
{
	char errbuf[CM_ERRBUF_LEN] = "", *tok = NULL;
	struct cm_principal u;

	memset(&u, 0, sizeof(u));
	cm_strlcpy(u.sub, sub, sizeof(u.sub));
	cm_strlcpy(u.tenant_id, tenant, sizeof(u.tenant_id));
	cm_strlcpy(u.roles[0], role, sizeof(u.roles[0]));
	u.nroles = 1;
	ck_assert_int_eq(cm_gateway_token_mint(cm_test_env("SERVICE_SECRET"),
					       "vault-client", 60, &u, &tok,
					       errbuf),
			 0);
	return tok;
}

START_TEST(test_user_and_service_tokens_sent_straight_to_vault_client_fail)
{
	char *utok = cm_test_user_token(user_a, tenant_a, "[\"owner\"]", 300);
	char *gtok = gateway_token(user_a, tenant_a, "owner");
	char errbuf[CM_ERRBUF_LEN], *stok = NULL;
	struct cm_buf ua = CM_BUF_INIT(0), ga = CM_BUF_INIT(0),
		      sa = CM_BUF_INIT(0), tid = CM_BUF_INIT(0);
	const char *tenant_hdr[2] = { NULL, NULL };
	int vp = vcs.port;

	ck_assert_int_le(owner_a_writes("llm/direct", value1), 201);
	cm_buf_printf(&ua, "Authorization: Bearer %s", utok);
	cm_buf_printf(&ga, "X-Service-Token: %s", gtok);
	ck_assert_int_eq(cm_service_token_mint(cm_test_env("SERVICE_SECRET"),
					       "brain", "vault-client", 60,
					       &stok, errbuf),
			 0);
	cm_buf_printf(&sa, "X-Service-Token: %s", stok);
	cm_buf_printf(&tid, "X-Tenant-ID: %s", tenant_a);
	tenant_hdr[0] = cm_buf_str(&tid);
	/* a user token straight to the sidecar */
	expect_call(req_port(vp, "GET", cm_buf_str(&ua), "/api/secrets/list",
			     NULL, NULL),
		    403, "not_via_gateway");
	expect_call(req_port(vp, "POST", cm_buf_str(&ua),
			     "/api/secrets/reveal/llm/direct", NULL, NULL),
		    403, "not_via_gateway");
	/* a plain service token is no user */
	expect_call(req_port(vp, "POST", cm_buf_str(&sa),
			     "/api/secrets/reveal/llm/direct", NULL,
			     tenant_hdr),
		    403, "not_via_gateway");
	/* the service routes stay service-only: a gateway user is refused */
	expect_call(req_port(vp, "GET", cm_buf_str(&ga),
			     "/v1/tenant/secrets/llm/direct", NULL, tenant_hdr),
		    403, "forbidden");
	expect_call(req_port(vp, "GET", cm_buf_str(&ua),
			     "/v1/tenant/secrets/llm/direct", NULL, NULL),
		    403, "forbidden");
	/* what brain sends is served */
	expect_call(req_port(vp, "GET", cm_buf_str(&ga),
			     "/api/secrets/metadata/llm/direct", NULL,
			     tenant_hdr),
		    200, NULL);
	cm_buf_release(&ua);
	cm_buf_release(&ga);
	cm_buf_release(&sa);
	cm_buf_release(&tid);
	free(utok);
	free(gtok);
	free(stok);
}
END_TEST

/* The audit row of request_id in A's audit log (a copy), or NULL. */
static cJSON *
audit_row(const char *request_id)
{
	struct cm_test_resp r =
		OWNER_A("GET", "/api/secrets/audit?limit=200", NULL);
	const cJSON *it, *id;
	cJSON *found = NULL;

	cm_test_expect(&r, 200, NULL);
	ck_assert(!has_marker(&r));
	cJSON_ArrayForEach(it,
			   cJSON_GetObjectItemCaseSensitive(r.json, "items"))
	{
		id = cJSON_GetObjectItemCaseSensitive(it, "request_id");
		if (cJSON_IsString(id) && !strcmp(id->valuestring, request_id))
			found = cJSON_Duplicate(it, true);
	}
	cm_test_resp_release(&r);
	return found;
}

static bool
row_is(const cJSON *row, const char *field, const char *want)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, field);

	return cJSON_IsString(v) && !strcmp(v->valuestring, want);
}

START_TEST(test_reveal_and_every_refusal_are_audited_in_the_tenant)
{
	char rid[80], rid2[80], rhdr[120], rhdr2[120], caller[80];
	const char *h1[] = { rhdr, NULL }, *h2[] = { rhdr2, NULL };
	struct cm_test_resp r, r2;
	const cJSON *next, *a, *b;
	cJSON *row;

	ck_assert_int_le(owner_a_writes("llm/audited", value1), 201);
	snprintf(rid, sizeof(rid), "vc-api-reveal-%.8s", marker + 9);
	snprintf(rhdr, sizeof(rhdr), "X-Request-ID: %s", rid);
	r = as_user(user_a, tenant_a, "[\"owner\"]", "POST",
		    "/api/secrets/reveal/llm/audited", NULL, h1);
	ck_assert(reveals(&r, value1));
	cm_test_resp_release(&r);
	row = audit_row(rid);
	ck_assert_ptr_nonnull(row);
	ck_assert(row_is(row, "op", "reveal"));
	snprintf(caller, sizeof(caller), "user:%s", user_a);
	ck_assert(row_is(row, "caller", caller));
	ck_assert(
		cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(row, "allowed")));
	ck_assert_ptr_nonnull(strstr(
		cJSON_GetObjectItemCaseSensitive(row, "path")->valuestring,
		"llm/audited"));
	cJSON_Delete(row);

	snprintf(rid2, sizeof(rid2), "vc-api-refused-%.8s", marker + 9);
	snprintf(rhdr2, sizeof(rhdr2), "X-Request-ID: %s", rid2);
	expect_call(as_user(user_a, tenant_a, "[\"manager\"]", "POST",
			    "/api/secrets/reveal/llm/audited", NULL, h2),
		    403, "forbidden");
	row = audit_row(rid2);
	ck_assert_ptr_nonnull(row);
	ck_assert(row_is(row, "op", "reveal"));
	ck_assert(row_is(row, "reason", "forbidden"));
	ck_assert(cJSON_IsFalse(
		cJSON_GetObjectItemCaseSensitive(row, "allowed")));
	cJSON_Delete(row);

	/* keyset pages, newest first, no overlap */
	r = OWNER_A("GET", "/api/secrets/audit?limit=2", NULL);
	cm_test_expect(&r, 200, NULL);
	next = cJSON_GetObjectItemCaseSensitive(r.json, "next_cursor");
	ck_assert(cJSON_IsString(next));
	{
		char path[120];

		snprintf(path, sizeof(path),
			 "/api/secrets/audit?limit=2&cursor=%s",
			 next->valuestring);
		r2 = OWNER_A("GET", path, NULL);
	}
	cm_test_expect(&r2, 200, NULL);
	a = cJSON_GetArrayItem(
		cJSON_GetObjectItemCaseSensitive(r.json, "items"), 1);
	b = cJSON_GetArrayItem(
		cJSON_GetObjectItemCaseSensitive(r2.json, "items"), 0);
	ck_assert_int_gt(json_int(a, "id"), json_int(b, "id"));
	cm_test_resp_release(&r);
	cm_test_resp_release(&r2);
	expect_call(OWNER_A("GET", "/api/secrets/audit?cursor=x", NULL), 400,
		    "invalid_cursor");
}
END_TEST

START_TEST(test_idempotent_writes_replay_and_preconditions_guard_rotation)
{
	const char *k1[] = { "Idempotency-Key: vc-api-k1", NULL };
	const char *stale[] = { "If-Match: \"1\"", NULL };
	const char *create_only[] = { "If-None-Match: *", NULL };
	char *b1 = secret_body(value1), *b2 = secret_body(value2);
	struct cm_test_resp r;
	char cur[40], *first = NULL;
	const char *cm[] = { cur, NULL };

	r = as_user(user_a, tenant_a, "[\"owner\"]", "PUT",
		    "/api/secrets/data/llm/idem", b1, k1);
	cm_test_expect(&r, 201, NULL);
	first = cm_xstrdup(r.body);
	cm_test_resp_release(&r);
	r = as_user(user_a, tenant_a, "[\"owner\"]", "PUT",
		    "/api/secrets/data/llm/idem", b1, k1);
	cm_test_expect(&r, 201, NULL);
	ck_assert_str_eq(r.body, first);
	ck_assert_str_eq(cm_test_resp_header(&r, "Idempotent-Replayed"),
			 "true");
	cm_test_resp_release(&r);
	expect_call(as_user(user_a, tenant_a, "[\"owner\"]", "PUT",
			    "/api/secrets/data/llm/idem", b2, k1),
		    409, "idempotency_conflict");
	/* B's key space is its own */
	expect_call(as_user(user_b, tenant_b, "[\"owner\"]", "PUT",
			    "/api/secrets/data/llm/idem", b2, k1),
		    201, NULL);
	r = OWNER_A("GET", "/api/secrets/metadata/llm/idem", NULL);
	ck_assert_int_eq(json_int(r.json, "current_version"), 1);
	cm_test_resp_release(&r);
	/* rotation under If-Match */
	expect_call(as_user(user_a, tenant_a, "[\"owner\"]", "PUT",
			    "/api/secrets/data/llm/idem", b2, create_only),
		    412, "precondition_failed");
	expect_call(as_user(user_a, tenant_a, "[\"owner\"]", "PUT",
			    "/api/secrets/data/llm/idem", b2, stale),
		    200, NULL);
	expect_call(as_user(user_a, tenant_a, "[\"owner\"]", "PUT",
			    "/api/secrets/data/llm/idem", b1, stale),
		    412, "precondition_failed");
	snprintf(cur, sizeof(cur), "If-Match: \"2\"");
	expect_call(as_user(user_a, tenant_a, "[\"owner\"]", "PUT",
			    "/api/secrets/data/llm/idem", b1, cm),
		    200, NULL);
	snprintf(cur, sizeof(cur), "If-Match: nope");
	expect_call(as_user(user_a, tenant_a, "[\"owner\"]", "PUT",
			    "/api/secrets/data/llm/idem", b1, cm),
		    400, "invalid_if_match");
	/* soft delete hides the value */
	expect_call(OWNER_A("DELETE", "/api/secrets/data/llm/idem", NULL), 204,
		    NULL);
	expect_call(OWNER_A("POST", "/api/secrets/reveal/llm/idem", NULL), 404,
		    "deleted");
	r = OWNER_A("POST", "/api/secrets/reveal/llm/idem?version=2", NULL);
	ck_assert(reveals(&r, value2));
	cm_test_resp_release(&r);
	free(first);
	free(b1);
	free(b2);
}
END_TEST

/* A read as brain (a service) of tenant A's name, status and code. */
static void
service_read(const char *name, long status, const char *code)
{
	char errbuf[CM_ERRBUF_LEN] = "", path[300], *tok = NULL;
	struct cm_buf auth = CM_BUF_INIT(0), tid = CM_BUF_INIT(0);
	const char *extra[2] = { NULL, NULL };

	ck_assert_int_eq(cm_service_token_mint(cm_test_env("SERVICE_SECRET"),
					       "brain", "vault-client", 60,
					       &tok, errbuf),
			 0);
	cm_buf_printf(&auth, "X-Service-Token: %s", tok);
	cm_buf_printf(&tid, "X-Tenant-ID: %s", tenant_a);
	extra[0] = cm_buf_str(&tid);
	snprintf(path, sizeof(path), "/v1/tenant/secrets/%s", name);
	expect_call(
		req_port(vcs.port, "GET", cm_buf_str(&auth), path, NULL, extra),
		status, code);
	cm_buf_release(&auth);
	cm_buf_release(&tid);
	free(tok);
}

/* Reads commit their audit rows in batches before answering; when that
   commit fails, nothing is served (cached or not), and writes refuse too. */
START_TEST(test_no_value_is_served_when_its_audit_row_cannot_be_written)
{
	struct cm_test_resp r;

	ck_assert_int_le(owner_a_writes("llm/guarded", value1), 201);
	service_read("llm/guarded", 200, NULL); /* now cached */
	ck_assert_int_eq(cm_test_psql("REVOKE INSERT ON vault_client.audit "
				      "FROM bz_vault_client"),
			 0);
	service_read("llm/guarded", 503, "audit_unavailable");
	service_read("llm/none", 503, "audit_unavailable");
	r = OWNER_A("POST", "/api/secrets/reveal/llm/guarded", NULL);
	cm_test_expect(&r, 503, "audit_unavailable");
	ck_assert(!has_marker(&r));
	cm_test_resp_release(&r);
	ck_assert_int_eq(cm_test_psql("GRANT INSERT ON vault_client.audit "
				      "TO bz_vault_client"),
			 0);
	service_read("llm/guarded", 200, NULL);
}
END_TEST

/* ---- Transit --------------------------------------------------------------
 */

/* POST /v1/transit/<op>/<key> as service (tenant: X-Tenant-ID or NULL). */
static struct cm_test_resp
transit(int port, const char *service, const char *op, const char *key,
	const char *member, const char *value, const char *tenant)
{
	char errbuf[CM_ERRBUF_LEN] = "", path[200], *tok = NULL;
	struct cm_buf auth = CM_BUF_INIT(0), body = CM_BUF_INIT(0),
		      th = CM_BUF_INIT(0);
	const char *extra[2] = { NULL, NULL };
	struct cm_test_resp r;

	ck_assert_int_eq(cm_service_token_mint(cm_test_env("SERVICE_SECRET"),
					       service, "vault-client", 60,
					       &tok, errbuf),
			 0);
	cm_buf_printf(&auth, "X-Service-Token: %s", tok);
	cm_buf_printf(&body, "{\"%s\":\"%s\"}", member, value);
	if (tenant) {
		cm_buf_printf(&th, "X-Tenant-ID: %s", tenant);
		extra[0] = cm_buf_str(&th);
	}
	snprintf(path, sizeof(path), "/v1/transit/%s/%s", op, key);
	r = req_port(port, "POST", cm_buf_str(&auth), path, cm_buf_str(&body),
		     extra);
	cm_buf_release(&auth);
	cm_buf_release(&body);
	cm_buf_release(&th);
	free(tok);
	return r;
}

/* The "ciphertext" of an encryption (malloc'd). */
static char *
encrypt_with(int port, const char *service, const char *key, const char *b64)
{
	struct cm_test_resp r =
		transit(port, service, "encrypt", key, "plaintext", b64, NULL);
	const cJSON *ct =
		cJSON_GetObjectItemCaseSensitive(r.json, "ciphertext");
	char *out;

	cm_test_expect(&r, 200, NULL);
	ck_assert(cJSON_IsString(ct));
	ck_assert_int_eq(json_int(r.json, "key_version"), 1);
	out = cm_xstrdup(ct->valuestring);
	cm_test_resp_release(&r);
	return out;
}

/* Round trip, refusals and key separation on one sidecar whose
   ciphertexts start with prefix. */
static void
transit_checks(int port, const char *prefix)
{
	static const char pt[] = "c2VjcmV0IG5vdGU="; /* "secret note" */
	char *c1 = encrypt_with(port, "crm", "crm-notes", pt);
	char *c2 = encrypt_with(port, "crm", "crm-notes", pt);
	char *other = encrypt_with(port, "crm", "crm", pt);
	const cJSON *p;
	struct cm_test_resp r;
	size_t n;

	ck_assert_int_eq(strncmp(c1, prefix, strlen(prefix)), 0);
	ck_assert_str_ne(c1, c2);
	r = transit(port, "crm", "decrypt", "crm-notes", "ciphertext", c1,
		    NULL);
	cm_test_expect(&r, 200, NULL);
	p = cJSON_GetObjectItemCaseSensitive(r.json, "plaintext");
	ck_assert(cJSON_IsString(p));
	ck_assert_str_eq(p->valuestring, pt);
	cm_test_resp_release(&r);
	/* a ciphertext of one key never opens under another */
	expect_call(transit(port, "crm", "decrypt", "crm-notes", "ciphertext",
			    other, NULL),
		    400, "invalid_ciphertext");
	/* tampered */
	n = strlen(c1);
	c1[n - 3] = c1[n - 3] == 'A' ? 'B' : 'A';
	expect_call(transit(port, "crm", "decrypt", "crm-notes", "ciphertext",
			    c1, NULL),
		    400, "invalid_ciphertext");
	expect_call(transit(port, "crm", "decrypt", "crm-notes", "ciphertext",
			    strncmp(prefix, "vault", 5) ? "vault:v1:AAAA"
							: "local:v1:AAAA",
			    NULL),
		    400, "invalid_ciphertext");
	/* only the service's own keys, never from a tenant context */
	expect_call(transit(port, "agents", "decrypt", "crm-notes",
			    "ciphertext", c2, NULL),
		    403, "forbidden");
	expect_call(
		transit(port, "brain", "encrypt", "crm", "plaintext", pt, NULL),
		403, "forbidden");
	expect_call(transit(port, "crm", "encrypt", "crm", "plaintext", pt,
			    tenant_a),
		    403, "tenant_context");
	expect_call(
		transit(port, "crm", "encrypt", "Crm", "plaintext", pt, NULL),
		400, "invalid_key");
	expect_call(transit(port, "crm", "encrypt", "crm", "plaintext",
			    "not base64!", NULL),
		    400, "invalid_plaintext");
	free(c1);
	free(c2);
	free(other);
}

START_TEST(test_local_transit_round_trips_and_keeps_keys_apart)
{
	struct cm_test_resp r;
	char *gtok = gateway_token(user_a, tenant_a, "owner");
	struct cm_buf ga = CM_BUF_INIT(0);

	transit_checks(vcs.port, "local:v1:");
	/* users never reach Transit, even through brain's token */
	cm_buf_printf(&ga, "X-Service-Token: %s", gtok);
	r = req_port(vcs.port, "POST", cm_buf_str(&ga),
		     "/v1/transit/encrypt/crm", "{\"plaintext\":\"\"}", NULL);
	cm_test_expect(&r, 403, "forbidden");
	cm_test_resp_release(&r);
	cm_buf_release(&ga);
	free(gtok);
}
END_TEST

/* ---- the Vault backend and brain's /health/vault --------------------------
 */

static const cJSON *
backend_of(const struct cm_test_resp *r)
{
	return cJSON_GetObjectItemCaseSensitive(r->json, "backend");
}

START_TEST(test_brain_health_vault_reports_the_local_backend)
{
	struct cm_test_resp r;
	const cJSON *be;

	ck_assert_int_eq(cm_test_http("GET", brain.port, "/health/vault", NULL,
				      NULL, &r),
			 0);
	cm_test_expect(&r, 200, NULL);
	be = backend_of(&r);
	ck_assert_ptr_nonnull(be);
	ck_assert_str_eq(
		cJSON_GetObjectItemCaseSensitive(be, "backend")->valuestring,
		"local");
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_with_vault_transit_and_health_come_from_vault)
{
	struct cm_test_svc v, b2;
	struct cm_test_resp r;
	const cJSON *vault;
	char a[80];
	const char *env[] = { a,
			      "VAULT_ROLE_ID=test-role",
			      "VAULT_SECRET_ID=test-secret",
			      "VAULT_MASTER_KEY_FILE=",
			      "VAULT_RETRIES=1",
			      NULL };
	pid_t fake;
	int vport;

	fake = cm_test_fake_vault_start(&vport);
	snprintf(a, sizeof(a), "VAULT_ADDR=http://127.0.0.1:%d", vport);
	ck_assert_int_eq(cm_test_svc_start(&v, "vault-client", env), 0);
	transit_checks(v.port, "vault:v1:");
	ck_assert_int_eq(start_brain(&b2, v.port), 0);
	ck_assert_int_eq(
		cm_test_http("GET", b2.port, "/health/vault", NULL, NULL, &r),
		0);
	cm_test_expect(&r, 200, NULL);
	ck_assert_str_eq(
		cJSON_GetObjectItemCaseSensitive(backend_of(&r), "backend")
			->valuestring,
		"vault");
	vault = cJSON_GetObjectItemCaseSensitive(backend_of(&r), "vault");
	ck_assert(cJSON_IsFalse(
		cJSON_GetObjectItemCaseSensitive(vault, "sealed")));
	ck_assert_int_gt(json_int(vault, "token_ttl_s"), 60);
	cm_test_resp_release(&r);
	cm_test_fake_vault_state(vport, "{\"sealed\":true}");
	ck_assert_int_eq(
		cm_test_http("GET", b2.port, "/health/vault", NULL, NULL, &r),
		0);
	cm_test_expect(&r, 503, NULL);
	vault = cJSON_GetObjectItemCaseSensitive(backend_of(&r), "vault");
	ck_assert(cJSON_IsTrue(
		cJSON_GetObjectItemCaseSensitive(vault, "sealed")));
	cm_test_resp_release(&r);
	ck_assert_int_eq(cm_test_svc_stop(&b2), 0);
	ck_assert_int_eq(cm_test_svc_stop(&v), 0);
	kill(fake, SIGTERM);
	waitpid(fake, NULL, 0);
}
END_TEST

/* ---- logs -----------------------------------------------------------------
 */

START_TEST(test_no_secret_value_appears_in_any_captured_log)
{
	char hit[256];
	int files = cm_test_logs_scan(marker, hit, sizeof(hit));

	ck_assert_msg(!hit[0], "a secret leaked into %s", hit);
	ck_assert_int_gt(files, 1);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("vault-client api");
	TCase *tc = tcase_create("api");

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 90);
	tcase_add_test(
		tc, test_owner_writes_rotates_lists_and_reveals_through_brain);
	tcase_add_test(
		tc,
		test_tenant_b_cannot_read_list_touch_or_infer_tenant_a_secrets);
	tcase_add_test(tc, test_roles_decide_who_may_write_reveal_or_only_look);
	tcase_add_test(tc,
		       test_api_keys_use_the_secrets_scopes_and_never_reveal);
	tcase_add_test(
		tc,
		test_user_and_service_tokens_sent_straight_to_vault_client_fail);
	tcase_add_test(tc,
		       test_reveal_and_every_refusal_are_audited_in_the_tenant);
	tcase_add_test(
		tc,
		test_idempotent_writes_replay_and_preconditions_guard_rotation);
	tcase_add_test(
		tc,
		test_no_value_is_served_when_its_audit_row_cannot_be_written);
	tcase_add_test(tc, test_local_transit_round_trips_and_keeps_keys_apart);
	tcase_add_test(tc, test_brain_health_vault_reports_the_local_backend);
	tcase_add_test(tc, test_with_vault_transit_and_health_come_from_vault);
	tcase_add_test(tc, test_no_secret_value_appears_in_any_captured_log);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
