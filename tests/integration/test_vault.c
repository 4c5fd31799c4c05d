/*
 * test_vault.c - vault-client's local backend through the real binary,
 * against the real PostgreSQL: versions, cas, soft delete, destroy,
 * tenant isolation, path traversal, the policy, platform paths, audit,
 * the cache, a wrong master key, master-key rotation, and a scan of every
 * captured log for the secret values written here.
 *
 * Secret values carry a random marker made at start-up; the test never
 * prints one (no ck_assert_str_eq on values), so finding the marker in
 * $BZ_BUILD/test-logs means a service leaked it.
 */
#include "svc.h"
#include "testutil.h"

#include "common/auth.h"
#include "common/mem.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define HEX64 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

static struct cm_test_svc vcs;
static char tenant_a[37], tenant_b[37];
static char marker[40]; /* random, only ever inside secret values */
static char value1[128], value2[128], value3[128];
static char key_a[64], key_b[64]; /* key file paths */

static void
write_key_file(char *path, size_t n)
{
	unsigned char raw[32];
	char hex[65];
	FILE *f;
	int fd, i;

	snprintf(path, n, "/tmp/vc-test-key-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	f = fopen("/dev/urandom", "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fread(raw, 1, 32, f), 32);
	fclose(f);
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", raw[i]);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "%s\n", hex);
	fclose(f);
}

static void
add_tenant(char id[37])
{
	char sql[256];

	ck_assert_int_eq(cm_uuid_v4(id), 0);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO brain.tenants (id, slug, name, status) VALUES "
		 "('%s', 'vc-%.8s', 'Vault test', 'active')",
		 id, id);
	ck_assert_int_eq(cm_test_psql(sql), 0);
}

static int
start_vc(struct cm_test_svc *s, const char *key_file, const char *old_file)
{
	char k[128], o[128];
	const char *env[] = { k, o, "VAULT_CACHE_TTL_MS=3000", NULL };

	snprintf(k, sizeof(k), "VAULT_MASTER_KEY_FILE=%s", key_file);
	snprintf(o, sizeof(o), "VAULT_MASTER_KEY_OLD_FILE=%s",
		 old_file ? old_file : "");
	return cm_test_svc_start(s, "vault-client", env);
}

static void
vault_setup(void)
{
	char *err = NULL;

	cm_test_require_stack();
	ck_assert_int_eq(cm_test_svc_run("brain", NULL, "--migrate", &err), 0);
	free(err);
	add_tenant(tenant_a);
	add_tenant(tenant_b);
	ck_assert_int_eq(cm_uuid_v4(marker), 0);
	snprintf(value1, sizeof(value1), "sk-one-%s", marker);
	snprintf(value2, sizeof(value2), "sk-two-%s", marker);
	snprintf(value3, sizeof(value3), "tg-three-%s", marker);
	write_key_file(key_a, sizeof(key_a));
	write_key_file(key_b, sizeof(key_b));
	/* start from an empty store: another test may have started the
	   service with the default key file */
	ck_assert_int_eq(
		cm_test_psql("DO $$ BEGIN IF to_regclass("
			     "'vault_client.keyring') IS NOT NULL "
			     "THEN DELETE FROM vault_client.keyring; "
			     "DELETE FROM vault_client.tenant_secrets; "
			     "DELETE FROM "
			     "vault_client.platform_secrets; END IF; "
			     "END $$"),
		0);
	ck_assert_int_eq(start_vc(&vcs, key_a, NULL), 0);
}

static void
vault_teardown(void)
{
	cm_test_svc_stop(&vcs);
	/* leave no keyring under this test's keys for later starts with the
	   default key file */
	cm_test_psql("DELETE FROM vault_client.keyring; DELETE FROM "
		     "vault_client.tenant_secrets; DELETE FROM "
		     "vault_client.platform_secrets");
	unlink(key_a);
	unlink(key_b);
}

/* One request as `caller` (NULL: no service token) for tenant (NULL:
   none) to port. */
static struct cm_test_resp
call_port(int port, const char *method, const char *caller, const char *tenant,
	  const char *path, const char *body)
{
	char th[1024], tn[80];
	const char *hs[4] = { NULL, NULL, NULL, NULL };
	char errbuf[CM_ERRBUF_LEN];
	struct cm_test_resp r;
	char *token = NULL;
	int n = 0;

	if (caller) {
		ck_assert_int_eq(cm_service_token_mint(
					 cm_test_env("SERVICE_SECRET"), caller,
					 "vault-client", 60, &token, errbuf),
				 0);
		snprintf(th, sizeof(th), "X-Service-Token: %s", token);
		hs[n++] = th;
	}
	if (tenant) {
		snprintf(tn, sizeof(tn), "X-Tenant-ID: %s", tenant);
		hs[n++] = tn;
	}
	if (body)
		hs[n++] = "Content-Type: application/json";
	ck_assert_int_eq(cm_test_http(method, port, path, hs, body, &r), 0);
	free(token);
	return r;
}

static struct cm_test_resp
call(const char *method, const char *caller, const char *tenant,
     const char *path, const char *body)
{
	return call_port(vcs.port, method, caller, tenant, path, body);
}

/* Status of one call, response released. */
static long
status_of(const char *method, const char *caller, const char *tenant,
	  const char *path, const char *body)
{
	struct cm_test_resp r = call(method, caller, tenant, path, body);
	long st = r.status;

	cm_test_resp_release(&r);
	return st;
}

/* A GET sent byte for byte (curl would resolve "..": the server must
   see it); the status, or -1. */
static long
raw_get(const char *caller, const char *tenant, const char *path)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char errbuf[CM_ERRBUF_LEN], req[2048], resp[64] = "";
	char *token = NULL;
	long st = -1;
	int fd, n;

	ck_assert_int_eq(cm_service_token_mint(cm_test_env("SERVICE_SECRET"),
					       caller, "vault-client", 60,
					       &token, errbuf),
			 0);
	n = snprintf(req, sizeof(req),
		     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		     "X-Service-Token: %s\r\n%s%s%sConnection: close\r\n\r\n",
		     path, token, tenant ? "X-Tenant-ID: " : "",
		     tenant ? tenant : "", tenant ? "\r\n" : "");
	free(token);
	sa.sin_port = htons((uint16_t)vcs.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    write(fd, req, (size_t)n) == n &&
	    read(fd, resp, sizeof(resp) - 1) > 12 &&
	    !strncmp(resp, "HTTP/1.1 ", 9))
		st = strtol(resp + 9, NULL, 10);
	close(fd);
	return st;
}

static void
put_secret(const char *caller, const char *tenant, const char *path,
	   const char *key, const char *value, long want)
{
	char body[512];

	snprintf(body, sizeof(body), "{\"data\":{\"%s\":\"%s\"}}", key, value);
	ck_assert_int_eq(status_of("PUT", caller, tenant, path, body), want);
}

/* Whether a read answered 200 with data[key] equal to value (no value is
   ever printed). */
static bool
reads_value(const struct cm_test_resp *r, const char *key, const char *value)
{
	const cJSON *data, *v;

	if (r->status != 200 || !r->json)
		return false;
	data = cJSON_GetObjectItemCaseSensitive(r->json, "data");
	v = cJSON_GetObjectItemCaseSensitive(data, key);
	return cJSON_IsString(v) && !strcmp(v->valuestring, value);
}

static int
json_int(const cJSON *obj, const char *a, const char *b)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(obj, a);

	if (b)
		o = cJSON_GetObjectItemCaseSensitive(o, b);
	return cJSON_IsNumber(o) ? o->valueint : -1;
}

/* First cell of a superuser query as an integer (-1 on error). */
static long
query_long(const char *sql)
{
	PGconn *c = PQconnectdb(cm_test_env("TEST_PG_CONNINFO"));
	PGresult *res = PQexec(c, sql);
	long v = -1;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		v = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	PQfinish(c);
	return v;
}

START_TEST(test_brain_writes_and_agents_read_a_tenant_secret)
{
	struct cm_test_resp r;
	char path[160];

	put_secret("brain", tenant_a, "/v1/tenant/secrets/llm/openai",
		   "api_key", value1, 200);
	r = call("GET", "agents", tenant_a, "/v1/tenant/secrets/llm/openai",
		 NULL);
	ck_assert(reads_value(&r, "api_key", value1));
	ck_assert_int_eq(json_int(r.json, "metadata", "version"), 1);
	ck_assert_ptr_nonnull(
		strstr(cm_test_resp_header(&r, "Cache-Control"), "no-store"));
	cm_test_resp_release(&r);
	/* the same through the canonical full path of the own tenant */
	snprintf(path, sizeof(path), "/v1/tenant/secrets/tenants/%s/llm/openai",
		 tenant_a);
	r = call("GET", "agents", tenant_a, path, NULL);
	ck_assert(reads_value(&r, "api_key", value1));
	cm_test_resp_release(&r);
	r = call("GET", "crm", NULL, "/v1/backend", NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(strstr(r.body, "\"backend\":\"local\""));
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_writes_add_versions_and_old_versions_stay_readable)
{
	struct cm_test_resp r;

	put_secret("brain", tenant_a, "/v1/tenant/secrets/llm/anthropic",
		   "api_key", value1, 200);
	put_secret("brain", tenant_a, "/v1/tenant/secrets/llm/anthropic",
		   "api_key", value2, 200);
	r = call("GET", "agents", tenant_a, "/v1/tenant/secrets/llm/anthropic",
		 NULL);
	ck_assert(reads_value(&r, "api_key", value2));
	ck_assert_int_eq(json_int(r.json, "metadata", "version"), 2);
	cm_test_resp_release(&r);
	r = call("GET", "agents", tenant_a,
		 "/v1/tenant/secrets/llm/anthropic?version=1", NULL);
	ck_assert(reads_value(&r, "api_key", value1));
	cm_test_resp_release(&r);
	ck_assert_int_eq(status_of("GET", "agents", tenant_a,
				   "/v1/tenant/secrets/llm/anthropic?"
				   "version=9",
				   NULL),
			 404);
	ck_assert_int_eq(status_of("GET", "agents", tenant_a,
				   "/v1/tenant/secrets/llm/anthropic?"
				   "version=0",
				   NULL),
			 400);
}
END_TEST

START_TEST(test_cas_refuses_a_stale_version_and_an_existing_secret)
{
	const char *p = "/v1/tenant/secrets/llm/cas";
	struct cm_test_resp r;

	ck_assert_int_eq(status_of("PUT", "brain", tenant_a, p,
				   "{\"cas\":0,\"data\":{\"k\":\"v1\"}}"),
			 200);
	r = call("PUT", "brain", tenant_a, p,
		 "{\"cas\":0,\"data\":{\"k\":\"v2\"}}");
	ck_assert_int_eq(r.status, 409);
	ck_assert_str_eq(cm_test_resp_error_code(&r), "cas_mismatch");
	cm_test_resp_release(&r);
	ck_assert_int_eq(status_of("PUT", "brain", tenant_a, p,
				   "{\"cas\":5,\"data\":{\"k\":\"v2\"}}"),
			 409);
	r = call("PUT", "brain", tenant_a, p,
		 "{\"cas\":1,\"data\":{\"k\":\"v2\"}}");
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(json_int(r.json, "version", NULL), 2);
	cm_test_resp_release(&r);
	ck_assert_int_eq(
		status_of("PUT", "brain", tenant_a, p, "{\"data\":{\"k\":1}}"),
		400);
	ck_assert_int_eq(
		status_of("PUT", "brain", tenant_a, p, "{\"data\":\"x\"}"),
		400);
}
END_TEST

START_TEST(test_soft_delete_hides_the_value_until_undeleted)
{
	const char *p = "/v1/tenant/secrets/llm/soft";
	struct cm_test_resp r;

	put_secret("brain", tenant_a, p, "api_key", value2, 200);
	ck_assert_int_eq(status_of("GET", "agents", tenant_a, p, NULL), 200);
	ck_assert_int_eq(status_of("DELETE", "brain", tenant_a, p, NULL), 204);
	r = call("GET", "agents", tenant_a, p, NULL); /* cache dropped */
	ck_assert_int_eq(r.status, 404);
	ck_assert_str_eq(cm_test_resp_error_code(&r), "deleted");
	ck_assert_ptr_null(strstr(r.body, marker));
	cm_test_resp_release(&r);
	ck_assert_int_eq(status_of("POST", "brain", tenant_a,
				   "/v1/tenant/undelete/llm/soft",
				   "{\"versions\":[1]}"),
			 204);
	r = call("GET", "agents", tenant_a, p, NULL);
	ck_assert(reads_value(&r, "api_key", value2));
	cm_test_resp_release(&r);
	ck_assert_int_eq(status_of("POST", "brain", tenant_a,
				   "/v1/tenant/undelete/llm/soft",
				   "{\"versions\":[]}"),
			 400);
	ck_assert_int_eq(status_of("DELETE", "brain", tenant_a,
				   "/v1/tenant/secrets/llm/never", NULL),
			 404);
}
END_TEST

START_TEST(test_destroy_erases_a_version_for_good)
{
	const char *p = "/v1/tenant/secrets/llm/gone";
	struct cm_test_resp r;

	put_secret("brain", tenant_a, p, "api_key", value1, 200);
	put_secret("brain", tenant_a, p, "api_key", value2, 200);
	ck_assert_int_eq(status_of("POST", "brain", tenant_a,
				   "/v1/tenant/destroy/llm/gone",
				   "{\"versions\":[1]}"),
			 204);
	r = call("GET", "agents", tenant_a,
		 "/v1/tenant/secrets/llm/gone?version=1", NULL);
	ck_assert_int_eq(r.status, 404);
	ck_assert_str_eq(cm_test_resp_error_code(&r), "destroyed");
	cm_test_resp_release(&r);
	ck_assert_int_eq(status_of("POST", "brain", tenant_a,
				   "/v1/tenant/undelete/llm/gone",
				   "{\"versions\":[1]}"),
			 204);
	ck_assert_int_eq(status_of("GET", "agents", tenant_a,
				   "/v1/tenant/secrets/llm/gone?version=1",
				   NULL),
			 404);
	ck_assert_int_eq(query_long("SELECT count(*) FROM "
				    "vault_client.tenant_secret_versions "
				    "WHERE name = 'llm/gone' AND destroyed "
				    "AND ciphertext IS NULL"),
			 1);
	r = call("GET", "agents", tenant_a, p, NULL);
	ck_assert(reads_value(&r, "api_key", value2));
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_metadata_lists_versions_and_never_a_value)
{
	struct cm_test_resp r;
	const cJSON *versions;

	put_secret("brain", tenant_a, "/v1/tenant/secrets/llm/meta", "k",
		   value1, 200);
	put_secret("brain", tenant_a, "/v1/tenant/secrets/llm/meta", "k",
		   value2, 200);
	r = call("GET", "agents", tenant_a, "/v1/tenant/metadata/llm/meta",
		 NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(json_int(r.json, "current_version", NULL), 2);
	versions = cJSON_GetObjectItemCaseSensitive(r.json, "versions");
	ck_assert_int_eq(cJSON_GetArraySize(versions), 2);
	ck_assert_ptr_null(strstr(r.body, marker));
	cm_test_resp_release(&r);
	r = call("GET", "brain", tenant_a, "/v1/tenant/list?prefix=llm/", NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(strstr(r.body, "\"llm/meta\""));
	ck_assert_ptr_null(strstr(r.body, marker));
	cm_test_resp_release(&r);
	r = call("GET", "brain", tenant_a, "/v1/tenant/list?limit=1", NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
				 r.json, "items")),
			 1);
	ck_assert(cJSON_IsString(
		cJSON_GetObjectItemCaseSensitive(r.json, "next_cursor")));
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_tenant_b_cannot_read_list_or_infer_tenant_a_secrets)
{
	struct cm_test_resp r, r2;
	char path[200];

	put_secret("brain", tenant_a, "/v1/tenant/secrets/llm/iso", "api_key",
		   value1, 200);
	/* the same name in B is simply absent: same answer as a name that
	   exists nowhere */
	r = call("GET", "agents", tenant_b, "/v1/tenant/secrets/llm/iso", NULL);
	r2 = call("GET", "agents", tenant_b, "/v1/tenant/secrets/llm/nowhere",
		  NULL);
	ck_assert_int_eq(r.status, 404);
	ck_assert_int_eq(r2.status, 404);
	ck_assert_str_eq(cm_test_resp_error_code(&r),
			 cm_test_resp_error_code(&r2));
	cm_test_resp_release(&r);
	cm_test_resp_release(&r2);
	ck_assert_int_eq(status_of("GET", "agents", tenant_b,
				   "/v1/tenant/metadata/llm/iso", NULL),
			 404);
	/* naming A's tenant explicitly from B */
	snprintf(path, sizeof(path), "/v1/tenant/secrets/tenants/%s/llm/iso",
		 tenant_a);
	r = call("GET", "agents", tenant_b, path, NULL);
	ck_assert_int_eq(r.status, 403);
	ck_assert_str_eq(cm_test_resp_error_code(&r), "foreign_tenant");
	cm_test_resp_release(&r);
	/* B's list shows none of A's names */
	r = call("GET", "brain", tenant_b, "/v1/tenant/list", NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_null(strstr(r.body, "llm/"));
	cm_test_resp_release(&r);
	/* B overwriting "its" llm/iso does not touch A's */
	put_secret("brain", tenant_b, "/v1/tenant/secrets/llm/iso", "api_key",
		   "b-value", 200);
	r = call("GET", "agents", tenant_a, "/v1/tenant/secrets/llm/iso", NULL);
	ck_assert(reads_value(&r, "api_key", value1));
	ck_assert_int_eq(json_int(r.json, "metadata", "version"), 1);
	cm_test_resp_release(&r);
	/* one row per tenant under the same name */
	ck_assert_int_eq(query_long("SELECT count(*) FROM "
				    "vault_client.tenant_secrets WHERE "
				    "name = 'llm/iso'"),
			 2);
}
END_TEST

START_TEST(test_path_traversal_and_foreign_paths_are_refused)
{
	static const char *const bad[] = {
		"/v1/tenant/secrets/llm/../telegram/bot",
		"/v1/tenant/secrets/llm/%2e%2e/x",
		"/v1/tenant/secrets/./llm/x",
		"/v1/tenant/secrets/llm//x",
		"/v1/tenant/secrets//etc/passwd",
		"/v1/tenant/secrets/llm/x/",
		"/v1/tenant/secrets/LLM/x",
		"/v1/tenant/secrets/llm/x%00y",
		"/v1/tenant/secrets/llm/a%2Fb%2F..%2F..%2Fz",
		"/v1/tenant/secrets/a/b/c/d/e/f/g/h/i",
		NULL,
	};
	struct cm_test_resp r;
	long st;
	int i;

	for (i = 0; bad[i]; i++) {
		st = raw_get("brain", tenant_a, bad[i]);
		ck_assert_msg(st == 400, "%s answered %ld", bad[i], st);
	}
	r = call("GET", "brain", tenant_a,
		 "/v1/tenant/secrets/platform/brain/jwt", NULL);
	ck_assert_int_eq(r.status, 403);
	ck_assert_str_eq(cm_test_resp_error_code(&r), "platform_path");
	cm_test_resp_release(&r);
	ck_assert_int_eq(status_of("GET", "brain", tenant_a,
				   "/v1/tenant/list?prefix=../", NULL),
			 400);
}
END_TEST

START_TEST(test_services_outside_the_policy_are_refused)
{
	struct cm_test_resp r;

	put_secret("brain", tenant_a, "/v1/tenant/secrets/telegram/bot",
		   "token", value3, 200);
	/* agents may only read names under llm/, never write */
	r = call("GET", "agents", tenant_a, "/v1/tenant/secrets/telegram/bot",
		 NULL);
	ck_assert_int_eq(r.status, 403);
	ck_assert_str_eq(cm_test_resp_error_code(&r), "forbidden");
	cm_test_resp_release(&r);
	put_secret("agents", tenant_a, "/v1/tenant/secrets/llm/openai", "k",
		   "v", 403);
	ck_assert_int_eq(status_of("DELETE", "agents", tenant_a,
				   "/v1/tenant/secrets/llm/openai", NULL),
			 403);
	ck_assert_int_eq(
		status_of("GET", "agents", tenant_a, "/v1/tenant/list", NULL),
		403);
	/* telegram reads its own, not llm keys */
	r = call("GET", "telegram", tenant_a, "/v1/tenant/secrets/telegram/bot",
		 NULL);
	ck_assert(reads_value(&r, "token", value3));
	cm_test_resp_release(&r);
	ck_assert_int_eq(status_of("GET", "telegram", tenant_a,
				   "/v1/tenant/secrets/llm/openai", NULL),
			 403);
	/* a service not in the table at all */
	ck_assert_int_eq(status_of("GET", "cms", tenant_a,
				   "/v1/tenant/secrets/llm/openai", NULL),
			 403);
	/* no service token: user tokens and anonymous callers */
	ck_assert_int_eq(status_of("GET", NULL, tenant_a,
				   "/v1/tenant/secrets/llm/openai", NULL),
			 401);
	/* the policy answers before existence: no inference either way */
	ck_assert_int_eq(status_of("GET", "cms", tenant_a,
				   "/v1/tenant/secrets/llm/none", NULL),
			 403);
}
END_TEST

START_TEST(test_platform_secrets_are_only_for_their_service_and_no_tenant)
{
	struct cm_test_resp r;

	put_secret("brain", NULL, "/v1/platform/secrets/crm/db_password",
		   "password", value2, 200);
	r = call("GET", "crm", NULL, "/v1/platform/secrets/crm/db_password",
		 NULL);
	ck_assert(reads_value(&r, "password", value2));
	cm_test_resp_release(&r);
	ck_assert_int_eq(status_of("GET", "agents", NULL,
				   "/v1/platform/secrets/crm/db_password",
				   NULL),
			 403);
	put_secret("crm", NULL, "/v1/platform/secrets/crm/db_password",
		   "password", "x", 403);
	r = call("GET", "crm", tenant_a, "/v1/platform/secrets/crm/db_password",
		 NULL);
	ck_assert_int_eq(r.status, 403);
	ck_assert_str_eq(cm_test_resp_error_code(&r), "tenant_context");
	cm_test_resp_release(&r);
	ck_assert_int_eq(
		raw_get("crm", NULL, "/v1/platform/secrets/crm/../brain/jwt"),
		400);
	ck_assert_int_eq(
		status_of("GET", "crm", NULL, "/v1/platform/secrets/crm", NULL),
		400);
	r = call("GET", "brain", NULL, "/v1/platform/list/crm", NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(strstr(r.body, "db_password"));
	cm_test_resp_release(&r);
	ck_assert_int_eq(
		status_of("GET", "crm", NULL, "/v1/platform/list/crm", NULL),
		403);
}
END_TEST

START_TEST(test_every_access_is_audited_in_its_tenant)
{
	char sql[512];

	ck_assert_int_eq(status_of("GET", "cms", tenant_b,
				   "/v1/tenant/secrets/llm/audited", NULL),
			 403);
	ck_assert_int_eq(status_of("GET", "agents", tenant_b,
				   "/v1/tenant/secrets/llm/audited", NULL),
			 404);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM vault_client.audit WHERE tenant_id = "
		 "'%s' AND path = 'tenants/%s/llm/audited' AND ((caller = "
		 "'cms' AND NOT allowed AND reason = 'forbidden') OR (caller "
		 "= 'agents' AND allowed AND op = 'read'))",
		 tenant_b, tenant_b);
	ck_assert_int_eq(query_long(sql), 2);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM vault_client.audit WHERE tenant_id = "
		 "'%s' AND path LIKE 'tenants/%s/%%'",
		 tenant_a, tenant_b);
	ck_assert_int_eq(query_long(sql), 0);
	ck_assert_int_ge(query_long("SELECT count(*) FROM "
				    "vault_client.platform_audit WHERE "
				    "caller = 'agents' AND NOT allowed"),
			 1);
}
END_TEST

/* Reads of two tenants and of the platform at once share audit batches
   (vault_client.audit_append): every row still lands in its own tenant,
   or in platform_audit, exactly once. */
#define MIX_READS 40

struct mix_reader {
	const char *caller, *tenant, *path;
	long status[MIX_READS];
};

static void *
mix_read(void *arg)
{
	struct mix_reader *m = arg;
	int i;

	for (i = 0; i < MIX_READS; i++)
		m->status[i] =
			status_of("GET", m->caller, m->tenant, m->path, NULL);
	return NULL;
}

START_TEST(test_concurrent_reads_of_two_tenants_are_each_audited_once)
{
	struct mix_reader m[3] = {
		{ "agents", tenant_a, "/v1/tenant/secrets/llm/mixed", { 0 } },
		{ "agents", tenant_b, "/v1/tenant/secrets/llm/mixed", { 0 } },
		{ "brain", NULL, "/v1/platform/secrets/brain/mixed", { 0 } },
	};
	pthread_t t[3];
	char sql[512];
	int i, j;

	for (i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, mix_read, &m[i]),
				 0);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
	for (i = 0; i < 3; i++)
		for (j = 0; j < MIX_READS; j++)
			ck_assert_int_eq(m[i].status[j], 404);
	for (i = 0; i < 2; i++) {
		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM vault_client.audit WHERE "
			 "tenant_id = '%s' AND path = 'tenants/%s/llm/mixed' "
			 "AND caller = 'agents' AND allowed AND op = 'read'",
			 m[i].tenant, m[i].tenant);
		ck_assert_int_eq(query_long(sql), MIX_READS);
	}
	ck_assert_int_eq(query_long("SELECT count(*) FROM vault_client.audit "
				    "WHERE path LIKE '%/mixed'"),
			 2 * MIX_READS);
	ck_assert_int_eq(query_long("SELECT count(*) FROM "
				    "vault_client.platform_audit WHERE path = "
				    "'platform/brain/mixed' AND allowed"),
			 MIX_READS);
	ck_assert_int_eq(query_long("SELECT count(DISTINCT request_id) FROM "
				    "vault_client.audit WHERE path LIKE "
				    "'%/mixed'"),
			 2 * MIX_READS);
}
END_TEST

START_TEST(test_changes_publish_the_name_and_never_the_value)
{
	redisContext *rc;
	redisReply *rep;
	char stream[80];
	bool rotated = false, created = false, leaked = false;
	size_t i, j;

	put_secret("brain", tenant_b, "/v1/tenant/secrets/llm/evt", "api_key",
		   value1, 200);
	put_secret("brain", tenant_b, "/v1/tenant/secrets/llm/evt", "api_key",
		   value2, 200);
	rc = redisConnect(cm_test_env("REDIS_HOST"),
			  (int)strtol(cm_test_env("REDIS_PORT"), NULL, 10));
	ck_assert(rc && !rc->err);
	snprintf(stream, sizeof(stream), "bz:ev:t:%s", tenant_b);
	rep = redisCommand(rc, "XRANGE %s - +", stream);
	ck_assert(rep && rep->type == REDIS_REPLY_ARRAY);
	for (i = 0; i < rep->elements; i++) {
		redisReply *fields = rep->element[i]->element[1];

		for (j = 0; j + 1 < fields->elements; j += 2) {
			const char *v = fields->element[j + 1]->str;

			leaked |= strstr(v, marker) != NULL;
			if (!strstr(v, "llm/evt"))
				continue;
			rotated |= !strcmp(v, "secret.rotated") ||
				   strstr(v, "\"secret.rotated\"") != NULL;
			created |= strstr(v, "\"secret.created\"") != NULL;
		}
	}
	freeReplyObject(rep);
	redisFree(rc);
	ck_assert(created);
	ck_assert(rotated);
	ck_assert(!leaked);
}
END_TEST

START_TEST(test_a_write_drops_the_cached_read)
{
	const char *p = "/v1/tenant/secrets/llm/cached";
	struct cm_test_resp r;

	put_secret("brain", tenant_a, p, "api_key", value1, 200);
	r = call("GET", "agents", tenant_a, p, NULL);
	ck_assert(reads_value(&r, "api_key", value1));
	cm_test_resp_release(&r);
	put_secret("brain", tenant_a, p, "api_key", value2, 200);
	r = call("GET", "agents", tenant_a, p, NULL);
	ck_assert(reads_value(&r, "api_key", value2));
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_a_moved_ciphertext_fails_to_decrypt)
{
	char sql[512];

	put_secret("brain", tenant_a, "/v1/tenant/secrets/llm/moved", "k",
		   value1, 200);
	put_secret("brain", tenant_a, "/v1/tenant/secrets/llm/moved", "k",
		   value2, 200);
	/* copy version 1's ciphertext over version 2: the AAD names the
	   version, so it must not open as version 2 */
	snprintf(sql, sizeof(sql),
		 "UPDATE vault_client.tenant_secret_versions v SET "
		 "ciphertext = (SELECT ciphertext FROM "
		 "vault_client.tenant_secret_versions WHERE tenant_id = '%s' "
		 "AND name = 'llm/moved' AND version = 1) WHERE tenant_id = "
		 "'%s' AND name = 'llm/moved' AND version = 2",
		 tenant_a, tenant_a);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	ck_assert_int_eq(status_of("GET", "agents", tenant_a,
				   "/v1/tenant/secrets/llm/moved?version=2",
				   NULL),
			 500);
}
END_TEST

/* Whether the log file of s contains needle. */
static bool
log_has(const char *log, const char *needle)
{
	char buf[65536];
	FILE *f = fopen(log, "r");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

START_TEST(test_a_wrong_or_missing_master_key_is_refused_at_start_up)
{
	struct cm_test_svc other;
	const char *no_key[] = { "VAULT_MASTER_KEY_FILE=/tmp/vc-no-such/key",
				 "VAULT_MASTER_KEY=", NULL };
	const char *both[] = { "VAULT_MASTER_KEY_FILE=/tmp/vc-no-such/key",
			       "VAULT_MASTER_KEY=" HEX64, NULL };
	const char *none[] = { "VAULT_MASTER_KEY_FILE=", "VAULT_MASTER_KEY=",
			       NULL };
	const char *bad_key[] = { "VAULT_MASTER_KEY=abcd", NULL };

	ck_assert_int_eq(start_vc(&other, key_b, NULL), -1);
	ck_assert(log_has(other.log, "master key does not match"));
	/* a missing key file is never replaced by a new key */
	ck_assert_int_eq(cm_test_svc_start(&other, "vault-client", no_key), -1);
	ck_assert(log_has(other.log, "VAULT_MASTER_KEY_FILE"));
	ck_assert(log_has(other.log, "is missing"));
	ck_assert_int_ne(access("/tmp/vc-no-such/key", F_OK), 0);
	/* an explicit file wins: the value is not used in its place */
	ck_assert_int_eq(cm_test_svc_start(&other, "vault-client", both), -1);
	ck_assert(log_has(other.log, "is missing"));
	/* and no key at all is refused, never invented */
	ck_assert_int_eq(cm_test_svc_start(&other, "vault-client", none), -1);
	ck_assert(log_has(other.log,
			  "set VAULT_MASTER_KEY or VAULT_MASTER_KEY_FILE"));
	ck_assert_int_eq(cm_test_svc_start(&other, "vault-client", bad_key),
			 -1);
	ck_assert(log_has(other.log, "must be 32 bytes"));
	ck_assert(!log_has(other.log, "abcd"));
}
END_TEST

static int
start_vc_vault(struct cm_test_svc *s, int vport, const char *secret_id)
{
	char a[80], sid[80];
	const char *env[] = { a,
			      "VAULT_ROLE_ID=test-role",
			      sid,
			      "VAULT_MASTER_KEY_FILE=",
			      "VAULT_RETRIES=1",
			      NULL };

	snprintf(a, sizeof(a), "VAULT_ADDR=http://127.0.0.1:%d", vport);
	snprintf(sid, sizeof(sid), "VAULT_SECRET_ID=%s", secret_id);
	return cm_test_svc_start(s, "vault-client", env);
}

/* Whether the fake holds value at KV path (read with its own login). */
static bool
fake_vault_holds(int port, const char *path, const char *value)
{
	const char *hs[3] = { "Content-Type: application/json", NULL, NULL };
	char th[200], url[300];
	struct cm_test_resp r;
	const cJSON *tok;
	bool found;

	ck_assert_int_eq(cm_test_http("POST", port, "/v1/auth/approle/login",
				      hs,
				      "{\"role_id\":\"test-role\","
				      "\"secret_id\":\"test-secret\"}",
				      &r),
			 0);
	tok = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(r.json, "auth"),
		"client_token");
	ck_assert(cJSON_IsString(tok));
	snprintf(th, sizeof(th), "X-Vault-Token: %s", tok->valuestring);
	cm_test_resp_release(&r);
	hs[0] = th;
	snprintf(url, sizeof(url), "/v1/secret/data/%s", path);
	ck_assert_int_eq(cm_test_http("GET", port, url, hs, NULL, &r), 0);
	found = r.status == 200 && r.body && strstr(r.body, value);
	cm_test_resp_release(&r);
	return found;
}

START_TEST(test_with_vault_addr_secrets_live_in_vault_under_the_same_paths)
{
	struct cm_test_svc v;
	struct cm_test_resp r;
	char path[200];
	pid_t fake;
	int vport;

	fake = cm_test_fake_vault_start(&vport);
	ck_assert_int_eq(start_vc_vault(&v, vport, "test-secret"), 0);
	r = call_port(v.port, "PUT", "brain", tenant_a,
		      "/v1/tenant/secrets/llm/openai",
		      "{\"data\":{\"api_key\":\"vault-kept\"}}");
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(json_int(r.json, "version", NULL), 1);
	cm_test_resp_release(&r);
	r = call_port(v.port, "GET", "agents", tenant_a,
		      "/v1/tenant/secrets/llm/openai", NULL);
	ck_assert(reads_value(&r, "api_key", "vault-kept"));
	cm_test_resp_release(&r);
	r = call_port(v.port, "GET", "agents", tenant_b,
		      "/v1/tenant/secrets/llm/openai", NULL);
	ck_assert_int_eq(r.status, 404);
	cm_test_resp_release(&r);
	r = call_port(v.port, "PUT", "brain", tenant_a,
		      "/v1/tenant/secrets/llm/openai",
		      "{\"cas\":0,\"data\":{\"api_key\":\"x\"}}");
	ck_assert_int_eq(r.status, 409);
	cm_test_resp_release(&r);
	r = call_port(v.port, "DELETE", "brain", tenant_a,
		      "/v1/tenant/secrets/llm/openai", NULL);
	ck_assert_int_eq(r.status, 204);
	cm_test_resp_release(&r);
	r = call_port(v.port, "GET", "agents", tenant_a,
		      "/v1/tenant/secrets/llm/openai", NULL);
	ck_assert_int_eq(r.status, 404);
	ck_assert_str_eq(cm_test_resp_error_code(&r), "deleted");
	cm_test_resp_release(&r);
	r = call_port(v.port, "GET", "brain", tenant_a, "/v1/tenant/list",
		      NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(strstr(r.body, "\"llm/\""));
	cm_test_resp_release(&r);
	r = call_port(v.port, "PUT", "brain", tenant_a,
		      "/v1/tenant/secrets/llm/kept",
		      "{\"data\":{\"api_key\":\"in-vault\"}}");
	cm_test_resp_release(&r);
	snprintf(path, sizeof(path), "tenants/%s/llm/kept", tenant_a);
	ck_assert(fake_vault_holds(vport, path, "in-vault"));
	ck_assert_int_eq(cm_test_svc_stop(&v), 0);
	kill(fake, SIGTERM);
	waitpid(fake, NULL, 0);
}
END_TEST

START_TEST(test_readiness_reports_a_sealed_or_standby_vault)
{
	struct cm_test_svc v;
	struct cm_test_resp r;
	pid_t fake;
	int vport;

	fake = cm_test_fake_vault_start(&vport);
	ck_assert_int_eq(start_vc_vault(&v, vport, "test-secret"), 0);
	ck_assert_int_eq(
		cm_test_http("GET", v.port, "/health/ready", NULL, NULL, &r),
		0);
	ck_assert_int_eq(r.status, 200);
	cm_test_resp_release(&r);
	r = call_port(v.port, "GET", "brain", NULL, "/v1/backend", NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(strstr(r.body, "\"backend\":\"vault\""));
	ck_assert_ptr_nonnull(strstr(r.body, "\"sealed\":false"));
	ck_assert_int_gt(json_int(r.json, "vault", "token_ttl_s"), 60);
	cm_test_resp_release(&r);
	cm_test_fake_vault_state(vport, "{\"sealed\":true}");
	ck_assert_int_eq(
		cm_test_http("GET", v.port, "/health/ready", NULL, NULL, &r),
		0);
	ck_assert_int_eq(r.status, 503);
	ck_assert_ptr_nonnull(strstr(r.body, "vault is sealed"));
	cm_test_resp_release(&r);
	r = call_port(v.port, "GET", "brain", NULL, "/v1/backend", NULL);
	ck_assert_ptr_nonnull(strstr(r.body, "\"sealed\":true"));
	ck_assert_ptr_nonnull(strstr(r.body, "\"ok\":false"));
	cm_test_resp_release(&r);
	cm_test_fake_vault_state(vport, "{\"sealed\":false,\"standby\":true}");
	ck_assert_int_eq(
		cm_test_http("GET", v.port, "/health/ready", NULL, NULL, &r),
		0);
	ck_assert_int_eq(r.status, 503);
	ck_assert_ptr_nonnull(strstr(r.body, "standby"));
	cm_test_resp_release(&r);
	ck_assert_int_eq(cm_test_svc_stop(&v), 0);
	kill(fake, SIGTERM);
	waitpid(fake, NULL, 0);
}
END_TEST

START_TEST(test_refused_approle_credentials_stop_the_start_up)
{
	struct cm_test_svc v;
	pid_t fake;
	int vport;

	fake = cm_test_fake_vault_start(&vport);
	ck_assert_int_eq(start_vc_vault(&v, vport, "not-the-secret"), -1);
	ck_assert(log_has(v.log, "invalid role or secret ID"));
	ck_assert(!log_has(v.log, "not-the-secret"));
	kill(fake, SIGTERM);
	waitpid(fake, NULL, 0);
}
END_TEST

/* Whether file holds needle (never printed). */
static bool
file_holds(const char *path, const char *needle)
{
	return log_has(path, needle);
}

START_TEST(test_a_template_renders_platform_secrets_into_a_0600_file)
{
	char tpl[64], k[128], f[128], want[160];
	const char *env[] = { k, f, "VAULT_TEMPLATE_SERVICE=crm", NULL };
	struct cm_test_svc other;
	struct cm_test_resp r;
	struct stat st;
	int fd;

	snprintf(tpl, sizeof(tpl), "/tmp/vc-tpl-XXXXXX");
	fd = mkstemp(tpl);
	ck_assert_int_ge(fd, 0);
	close(fd);
	chmod(tpl, 0644); /* the render must not keep a looser mode */
	snprintf(k, sizeof(k), "VAULT_MASTER_KEY_FILE=%s", key_a);
	snprintf(f, sizeof(f), "VAULT_TEMPLATE_FILE=%s", tpl);
	put_secret("brain", NULL, "/v1/platform/secrets/crm/db_password",
		   "password", value2, 200);
	ck_assert_int_eq(cm_test_svc_start(&other, "vault-client", env), 0);
	ck_assert_int_eq(stat(tpl, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	snprintf(want, sizeof(want), "DB_PASSWORD_PASSWORD=%s\n", value2);
	ck_assert(file_holds(tpl, want));
	/* a change through this instance re-renders at once */
	r = call_port(other.port, "PUT", "brain", NULL,
		      "/v1/platform/secrets/crm/smtp",
		      "{\"data\":{\"user\":\"mailer\"}}");
	ck_assert_int_eq(r.status, 200);
	cm_test_resp_release(&r);
	ck_assert(file_holds(tpl, "SMTP_USER=mailer\n"));
	ck_assert(file_holds(tpl, want));
	ck_assert_int_eq(stat(tpl, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(cm_test_svc_stop(&other), 0);
	unlink(tpl);
}
END_TEST

START_TEST(test_migration_copies_every_current_secret_into_vault)
{
	char k[128], a[80], path[200], *err = NULL;
	const char *env[] = { k, a, "VAULT_ROLE_ID=test-role",
			      "VAULT_SECRET_ID=test-secret", NULL };
	pid_t fake;
	int vport;

	put_secret("brain", tenant_a, "/v1/tenant/secrets/llm/dropped", "k",
		   value3, 200);
	ck_assert_int_eq(status_of("DELETE", "brain", tenant_a,
				   "/v1/tenant/secrets/llm/dropped", NULL),
			 204);
	fake = cm_test_fake_vault_start(&vport);
	snprintf(k, sizeof(k), "VAULT_MASTER_KEY_FILE=%s", key_a);
	snprintf(a, sizeof(a), "VAULT_ADDR=http://127.0.0.1:%d", vport);
	/* llm/moved was tampered with above: named, the rest copied, 1 */
	ck_assert_int_eq(cm_test_svc_run("vault-client", env,
					 "--migrate-secrets=local->vault",
					 &err),
			 1);
	ck_assert_ptr_nonnull(strstr(err, "llm/moved: decrypt failed"));
	ck_assert_ptr_nonnull(strstr(err, "1 failed to decrypt"));
	ck_assert_ptr_null(strstr(err, marker));
	free(err);
	snprintf(path, sizeof(path), "tenants/%s/llm/openai", tenant_a);
	ck_assert(fake_vault_holds(vport, path, value1));
	snprintf(path, sizeof(path), "tenants/%s/llm/anthropic", tenant_a);
	ck_assert(fake_vault_holds(vport, path, value2));
	ck_assert(fake_vault_holds(vport, "platform/crm/db_password", value2));
	/* a soft-deleted current version is not copied */
	snprintf(path, sizeof(path), "tenants/%s/llm/dropped", tenant_a);
	ck_assert(!fake_vault_holds(vport, path, value3));
	ck_assert_int_eq(cm_test_svc_run("vault-client", env,
					 "--migrate-secrets=vault->local",
					 &err),
			 2);
	free(err);
	kill(fake, SIGTERM);
	waitpid(fake, NULL, 0);
}
END_TEST

START_TEST(test_master_key_rotation_rewraps_without_losing_a_secret)
{
	struct cm_test_svc other;
	struct cm_test_resp r;

	put_secret("brain", tenant_a, "/v1/tenant/secrets/llm/rotate",
		   "api_key", value1, 200);
	/* new key with the old one: the data key is re-wrapped */
	ck_assert_int_eq(start_vc(&other, key_b, key_a), 0);
	ck_assert(log_has(other.log, "master key rotated"));
	r = call_port(other.port, "GET", "agents", tenant_a,
		      "/v1/tenant/secrets/llm/rotate", NULL);
	ck_assert(reads_value(&r, "api_key", value1));
	cm_test_resp_release(&r);
	ck_assert_int_eq(cm_test_svc_stop(&other), 0);
	/* the new key alone now opens everything written before */
	ck_assert_int_eq(start_vc(&other, key_b, NULL), 0);
	ck_assert(!log_has(other.log, "master key rotated"));
	r = call_port(other.port, "GET", "agents", tenant_a,
		      "/v1/tenant/secrets/llm/openai", NULL);
	ck_assert(reads_value(&r, "api_key", value1));
	cm_test_resp_release(&r);
	ck_assert_int_eq(cm_test_svc_stop(&other), 0);
	/* and the old key is refused */
	ck_assert_int_eq(start_vc(&other, key_a, NULL), -1);
	ck_assert(log_has(other.log, "master key does not match"));
}
END_TEST

START_TEST(test_no_secret_value_appears_in_any_captured_log)
{
	char hit[256];
	int files = cm_test_logs_scan(marker, hit, sizeof(hit));

	ck_assert_msg(!hit[0], "a secret leaked into %s", hit);
	ck_assert_int_gt(files, 3);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("vault-client");
	TCase *tc = tcase_create("local");

	tcase_add_unchecked_fixture(tc, vault_setup, vault_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_brain_writes_and_agents_read_a_tenant_secret);
	tcase_add_test(tc,
		       test_writes_add_versions_and_old_versions_stay_readable);
	tcase_add_test(tc,
		       test_cas_refuses_a_stale_version_and_an_existing_secret);
	tcase_add_test(tc, test_soft_delete_hides_the_value_until_undeleted);
	tcase_add_test(tc, test_destroy_erases_a_version_for_good);
	tcase_add_test(tc, test_metadata_lists_versions_and_never_a_value);
	tcase_add_test(
		tc, test_tenant_b_cannot_read_list_or_infer_tenant_a_secrets);
	tcase_add_test(tc, test_path_traversal_and_foreign_paths_are_refused);
	tcase_add_test(tc, test_services_outside_the_policy_are_refused);
	tcase_add_test(
		tc,
		test_platform_secrets_are_only_for_their_service_and_no_tenant);
	tcase_add_test(tc, test_every_access_is_audited_in_its_tenant);
	tcase_add_test(
		tc, test_concurrent_reads_of_two_tenants_are_each_audited_once);
	tcase_add_test(tc, test_changes_publish_the_name_and_never_the_value);
	tcase_add_test(tc, test_a_write_drops_the_cached_read);
	tcase_add_test(tc, test_a_moved_ciphertext_fails_to_decrypt);
	tcase_add_test(
		tc, test_a_wrong_or_missing_master_key_is_refused_at_start_up);
	tcase_add_test(
		tc,
		test_with_vault_addr_secrets_live_in_vault_under_the_same_paths);
	tcase_add_test(tc, test_readiness_reports_a_sealed_or_standby_vault);
	tcase_add_test(tc, test_refused_approle_credentials_stop_the_start_up);
	tcase_add_test(
		tc, test_a_template_renders_platform_secrets_into_a_0600_file);
	tcase_add_test(tc,
		       test_migration_copies_every_current_secret_into_vault);
	tcase_add_test(
		tc, test_master_key_rotation_rewraps_without_losing_a_secret);
	tcase_add_test(tc, test_no_secret_value_appears_in_any_captured_log);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
