/*
 * test_vault_backend.c - the Vault client (services/vault-client/vault.c)
 * against the fake Vault ($BZ_BUILD/fakes/vault) started per test on a
 * free port: login, renewal, re-login near the max TTL and after expiry,
 * KV v2 read/write/cas/soft delete/undelete/destroy/versions/metadata/
 * list, Transit round trip, health states, retries and network errors.
 */
#include "svc.h"
#include "testutil.h"

#include "common/mem.h"

#include "../../../services/vault-client/vault.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t fake_pid;
static int fake_port;
static char addr[64];

/* Start the fake with extra "NAME=value" settings; wait for it. */
static void
start_fake(const char *const *env)
{
	char bin[600], port[16];
	struct cm_test_resp r;
	int i;

	fake_port = cm_test_free_port();
	snprintf(bin, sizeof(bin), "%s/fakes/vault", cm_test_env("BZ_BUILD"));
	snprintf(port, sizeof(port), "%d", fake_port);
	snprintf(addr, sizeof(addr), "http://127.0.0.1:%d", fake_port);
	fake_pid = fork();
	ck_assert_int_ge(fake_pid, 0);
	if (fake_pid == 0) {
		for (i = 0; env && env[i]; i++)
			putenv((char *)env[i]);
		execl(bin, bin, port, (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 100; i++) {
		if (cm_test_http("GET", fake_port, "/_fake/stats", NULL, NULL,
				 &r) == 0 &&
		    r.status == 200) {
			cm_test_resp_release(&r);
			return;
		}
		cm_test_resp_release(&r);
		usleep(50 * 1000);
	}
	ck_abort_msg("fake vault did not start");
}

static void
stop_fake(void)
{
	if (fake_pid > 0) {
		kill(fake_pid, SIGTERM);
		waitpid(fake_pid, NULL, 0);
		fake_pid = 0;
	}
}

static void
fake_state(const char *json)
{
	const char *hs[] = { "Content-Type: application/json", NULL };
	struct cm_test_resp r;

	ck_assert_int_eq(
		cm_test_http("POST", fake_port, "/_fake/state", hs, json, &r),
		0);
	ck_assert_int_eq(r.status, 200);
	cm_test_resp_release(&r);
}

static int
fake_stat(const char *name)
{
	struct cm_test_resp r;
	const cJSON *v;
	int n;

	ck_assert_int_eq(
		cm_test_http("GET", fake_port, "/_fake/stats", NULL, NULL, &r),
		0);
	v = cJSON_GetObjectItemCaseSensitive(r.json, name);
	n = cJSON_IsNumber(v) ? v->valueint : -1;
	cm_test_resp_release(&r);
	return n;
}

static struct vc_vault *
client(const char *secret_id, int retries)
{
	struct vc_vault_config c = { 0 };

	c.addr = addr;
	c.role_id = "test-role";
	c.secret_id = secret_id;
	c.kv_mount = "secret";
	c.timeout_ms = 2000;
	c.retries = retries;
	c.backoff_ms = 20;
	return vc_vault_new(&c);
}

static void
setup(void)
{
	start_fake(NULL);
}

START_TEST(test_approle_login_gets_a_token_and_bad_credentials_are_refused)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_vault *v = client("test-secret", 0);
	struct vc_vault *bad = client("wrong-secret", 0);

	ck_assert_int_eq(vc_vault_login(v, errbuf), 0);
	ck_assert_int_gt(vc_vault_token_ttl_ms(v), 3000 * 1000 - 5000);
	ck_assert_int_eq(vc_vault_logins(v), 1);
	ck_assert_int_eq(vc_vault_login(bad, errbuf), CM_EACCES);
	ck_assert_ptr_nonnull(strstr(errbuf, "invalid role or secret ID"));
	ck_assert_ptr_null(strstr(errbuf, "wrong-secret"));
	ck_assert_int_eq(vc_vault_token_ttl_ms(bad), 0);
	vc_vault_free(v);
	vc_vault_free(bad);
}
END_TEST

START_TEST(test_the_token_is_renewed_after_two_thirds_of_its_lease)
{
	static const char *const env[] = { "FAKE_VAULT_TOKEN_TTL=3", NULL };
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_vault *v;

	stop_fake();
	start_fake(env);
	v = client("test-secret", 0);
	ck_assert_int_eq(vc_vault_login(v, errbuf), 0);
	ck_assert_int_eq(vc_vault_maintain(v, errbuf), 0);
	ck_assert_int_eq(fake_stat("renewals"), 0);
	usleep(2100 * 1000);
	ck_assert_int_eq(vc_vault_maintain(v, errbuf), 0);
	ck_assert_int_eq(fake_stat("renewals"), 1);
	ck_assert_int_eq(fake_stat("logins"), 1);
	ck_assert_int_gt(vc_vault_token_ttl_ms(v), 1500);
	vc_vault_free(v);
}
END_TEST

START_TEST(test_near_the_max_ttl_the_client_logs_in_again)
{
	static const char *const env[] = { "FAKE_VAULT_TOKEN_TTL=3",
					   "FAKE_VAULT_MAX_TTL=4", NULL };
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_vault *v;
	int i;

	stop_fake();
	start_fake(env);
	v = client("test-secret", 0);
	ck_assert_int_eq(vc_vault_login(v, errbuf), 0);
	for (i = 0; i < 50 && vc_vault_logins(v) < 2; i++) {
		ck_assert_int_eq(vc_vault_maintain(v, errbuf), 0);
		usleep(100 * 1000);
	}
	ck_assert_int_eq(vc_vault_logins(v), 2);
	ck_assert_int_eq(fake_stat("logins"), 2);
	ck_assert_int_ge(fake_stat("renewals"), 1);
	vc_vault_free(v);
}
END_TEST

START_TEST(test_batch_tokens_are_replaced_by_a_new_login)
{
	static const char *const env[] = { "FAKE_VAULT_TOKEN_TTL=3",
					   "FAKE_VAULT_BATCH=1", NULL };
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_vault *v;

	stop_fake();
	start_fake(env);
	v = client("test-secret", 0);
	ck_assert_int_eq(vc_vault_login(v, errbuf), 0);
	usleep(2100 * 1000);
	ck_assert_int_eq(vc_vault_maintain(v, errbuf), 0);
	ck_assert_int_eq(fake_stat("renewals"), 0);
	ck_assert_int_eq(fake_stat("logins"), 2);
	vc_vault_free(v);
}
END_TEST

START_TEST(test_an_expired_token_is_replaced_on_its_first_403)
{
	static const char *const env[] = { "FAKE_VAULT_TOKEN_TTL=1", NULL };
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_version meta;
	struct vc_vault *v;

	stop_fake();
	start_fake(env);
	v = client("test-secret", 0);
	ck_assert_int_eq(vc_vault_login(v, errbuf), 0);
	usleep(1200 * 1000);
	ck_assert_int_eq(vc_vault_kv_write(v, "tenants/a/x", "{\"k\":\"v\"}",
					   -1, &meta, errbuf),
			 0);
	ck_assert_int_eq(vc_vault_logins(v), 2);
	vc_vault_free(v);
}
END_TEST

START_TEST(test_kv_versions_cas_soft_delete_undelete_and_destroy)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_vault *v = client("test-secret", 0);
	struct vc_version meta;
	struct vc_secret s;
	int one = 1, two = 2;

	ck_assert_int_eq(vc_vault_kv_write(v, "tenants/t/llm/k",
					   "{\"api_key\":\"one\"}", 0, &meta,
					   errbuf),
			 0); /* logs in by itself */
	ck_assert_int_eq(meta.version, 1);
	ck_assert_int_eq(vc_vault_kv_write(v, "tenants/t/llm/k",
					   "{\"api_key\":\"x\"}", 0, &meta,
					   errbuf),
			 CM_ESTALE);
	ck_assert_int_eq(vc_vault_kv_write(v, "tenants/t/llm/k",
					   "{\"api_key\":\"two\"}", 1, &meta,
					   errbuf),
			 0);
	ck_assert_int_eq(meta.version, 2);
	ck_assert_int_eq(vc_vault_kv_read(v, "tenants/t/llm/k", 0, &s, errbuf),
			 0);
	ck_assert_str_eq(s.json, "{\"api_key\":\"two\"}");
	ck_assert_int_eq(s.meta.version, 2);
	vc_secret_release(&s);
	ck_assert_int_eq(vc_vault_kv_read(v, "tenants/t/llm/k", 1, &s, errbuf),
			 0);
	ck_assert_str_eq(s.json, "{\"api_key\":\"one\"}");
	vc_secret_release(&s);
	ck_assert_int_eq(
		vc_vault_kv_delete(v, "tenants/t/llm/k", NULL, 0, errbuf), 0);
	ck_assert_int_eq(vc_vault_kv_read(v, "tenants/t/llm/k", 0, &s, errbuf),
			 CM_ENOENT);
	ck_assert_int_eq(s.meta.version, 2);
	ck_assert_str_ne(s.meta.deletion_time, "");
	ck_assert_ptr_null(s.json);
	ck_assert_int_eq(
		vc_vault_kv_undelete(v, "tenants/t/llm/k", &two, 1, errbuf), 0);
	ck_assert_int_eq(vc_vault_kv_read(v, "tenants/t/llm/k", 0, &s, errbuf),
			 0);
	vc_secret_release(&s);
	ck_assert_int_eq(
		vc_vault_kv_destroy(v, "tenants/t/llm/k", &one, 1, errbuf), 0);
	ck_assert_int_eq(vc_vault_kv_read(v, "tenants/t/llm/k", 1, &s, errbuf),
			 CM_ENOENT);
	ck_assert(s.meta.destroyed);
	ck_assert_int_eq(
		vc_vault_kv_read(v, "tenants/t/llm/none", 0, &s, errbuf),
		CM_ENOENT);
	ck_assert_int_eq(s.meta.version, 0);
	vc_vault_free(v);
}
END_TEST

START_TEST(test_kv_metadata_and_list_show_versions_and_folders)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_vault *v = client("test-secret", 0);
	struct vc_version meta;
	cJSON *m = NULL, *keys = NULL;

	ck_assert_int_eq(vc_vault_kv_write(v, "tenants/t/llm/a",
					   "{\"k\":\"1\"}", -1, &meta, errbuf),
			 0);
	ck_assert_int_eq(vc_vault_kv_write(v, "tenants/t/llm/a",
					   "{\"k\":\"2\"}", -1, &meta, errbuf),
			 0);
	ck_assert_int_eq(vc_vault_kv_write(v, "tenants/t/tg", "{\"k\":\"3\"}",
					   -1, &meta, errbuf),
			 0);
	ck_assert_int_eq(vc_vault_kv_metadata(v, "tenants/t/llm/a", &m, errbuf),
			 0);
	ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(m, "current_version")
				 ->valueint,
			 2);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
				 m, "versions")),
			 2);
	cJSON_Delete(m);
	ck_assert_int_eq(vc_vault_kv_list(v, "tenants/t/", &keys, errbuf), 0);
	ck_assert_int_eq(cJSON_GetArraySize(keys), 2);
	ck_assert_str_eq(cJSON_GetArrayItem(keys, 0)->valuestring, "llm/");
	cJSON_Delete(keys);
	ck_assert_int_eq(vc_vault_kv_list(v, "tenants/none/", &keys, errbuf),
			 CM_ENOENT);
	ck_assert_int_eq(vc_vault_kv_metadata(v, "tenants/t/none", &m, errbuf),
			 CM_ENOENT);
	vc_vault_free(v);
}
END_TEST

START_TEST(test_transit_encrypts_differently_each_time_and_round_trips)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_vault *v = client("test-secret", 0);
	char *c1 = NULL, *c2 = NULL, *p = NULL;

	ck_assert_int_eq(
		vc_vault_transit(v, "crm", true, "aGVsbG8=", &c1, errbuf), 0);
	ck_assert_int_eq(
		vc_vault_transit(v, "crm", true, "aGVsbG8=", &c2, errbuf), 0);
	ck_assert_int_eq(strncmp(c1, "vault:v1:", 9), 0);
	ck_assert_str_ne(c1, c2);
	ck_assert_int_eq(vc_vault_transit(v, "crm", false, c1, &p, errbuf), 0);
	ck_assert_str_eq(p, "aGVsbG8=");
	free(p);
	c1[12] = c1[12] == 'A' ? 'B' : 'A';
	ck_assert_int_eq(vc_vault_transit(v, "crm", false, c1, &p, errbuf),
			 CM_EINVAL);
	ck_assert_ptr_null(p);
	free(c1);
	free(c2);
	vc_vault_free(v);
}
END_TEST

START_TEST(test_health_tells_sealed_standby_and_uninitialised_apart)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_vault *v = client("test-secret", 0);
	struct vc_vault_health h;

	ck_assert_int_eq(vc_vault_health(v, &h, errbuf), 0);
	ck_assert_int_eq(h.status, 200);
	fake_state("{\"standby\":true}");
	ck_assert_int_eq(vc_vault_health(v, &h, errbuf), CM_EAGAIN);
	ck_assert_int_eq(h.status, 429);
	ck_assert(h.standby);
	ck_assert_str_eq(errbuf, "vault is a standby");
	fake_state("{\"standby\":false,\"sealed\":true}");
	ck_assert_int_eq(vc_vault_health(v, &h, errbuf), CM_EIO);
	ck_assert_int_eq(h.status, 503);
	ck_assert(h.sealed);
	ck_assert_str_eq(errbuf, "vault is sealed");
	fake_state("{\"sealed\":false,\"initialized\":false}");
	ck_assert_int_eq(vc_vault_health(v, &h, errbuf), CM_EIO);
	ck_assert_int_eq(h.status, 501);
	ck_assert_str_eq(errbuf, "vault is not initialised");
	vc_vault_free(v);
}
END_TEST

START_TEST(test_transient_failures_are_retried_with_backoff)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_vault *v = client("test-secret", 3);
	struct vc_version meta;
	int before;

	ck_assert_int_eq(vc_vault_login(v, errbuf), 0);
	before = fake_stat("requests");
	fake_state("{\"fail_next\":2,\"fail_status\":502}");
	ck_assert_int_eq(vc_vault_kv_write(v, "platform/crm/db",
					   "{\"password\":\"p\"}", -1, &meta,
					   errbuf),
			 0);
	ck_assert_int_eq(fake_stat("requests") - before, 3);
	fake_state("{\"fail_next\":10,\"fail_status\":503}");
	ck_assert_int_eq(vc_vault_kv_write(v, "platform/crm/db",
					   "{\"password\":\"p\"}", -1, &meta,
					   errbuf),
			 CM_EIO);
	ck_assert_ptr_nonnull(strstr(errbuf, "503"));
	fake_state("{\"fail_next\":0}");
	vc_vault_free(v);
}
END_TEST

START_TEST(test_an_unreachable_vault_is_a_network_error_after_retries)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_vault_health h;
	struct vc_vault *v;
	int64_t t0;

	stop_fake(); /* nothing listens on the port any more */
	v = client("test-secret", 2);
	t0 = cm_now_ms();
	ck_assert_int_lt(vc_vault_login(v, errbuf), 0);
	ck_assert_int_ge(cm_now_ms() - t0, 20 + 40);
	ck_assert_int_lt(vc_vault_health(v, &h, errbuf), 0);
	ck_assert_int_eq(h.status, 0);
	vc_vault_free(v);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("vault-client vault backend");
	TCase *tc = tcase_create("fake vault");

	tcase_add_checked_fixture(tc, setup, stop_fake);
	tcase_set_timeout(tc, 30);
	tcase_add_test(
		tc,
		test_approle_login_gets_a_token_and_bad_credentials_are_refused);
	tcase_add_test(tc,
		       test_the_token_is_renewed_after_two_thirds_of_its_lease);
	tcase_add_test(tc, test_near_the_max_ttl_the_client_logs_in_again);
	tcase_add_test(tc, test_batch_tokens_are_replaced_by_a_new_login);
	tcase_add_test(tc, test_an_expired_token_is_replaced_on_its_first_403);
	tcase_add_test(tc,
		       test_kv_versions_cas_soft_delete_undelete_and_destroy);
	tcase_add_test(tc, test_kv_metadata_and_list_show_versions_and_folders);
	tcase_add_test(
		tc,
		test_transit_encrypts_differently_each_time_and_round_trips);
	tcase_add_test(
		tc, test_health_tells_sealed_standby_and_uninitialised_apart);
	tcase_add_test(tc, test_transient_failures_are_retried_with_backoff);
	tcase_add_test(
		tc, test_an_unreachable_vault_is_a_network_error_after_retries);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
