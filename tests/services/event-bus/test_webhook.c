/* test_webhook.c - the pure part of webhooks: the Standard Webhooks
   signature (the specification's published test vector and an
   independent OpenSSL HMAC), secrets, the retry schedule, type patterns,
   API-key scopes. */
#include "../../../services/event-bus/evbus.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/auth.h"
#include "common/json.h"
#include "common/mem.h"
#include "testutil.h"

#include "common/banned.h"

/* The vector every Standard Webhooks library tests against. */
START_TEST(test_the_standard_webhooks_test_vector_is_reproduced)
{
	char sig[BUS_WH_SIG_LEN];
	const char *body = "{\"test\": 2432232314}";

	ck_assert_int_eq(
		bus_webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
				 "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
				 body, strlen(body), sig),
		0);
	ck_assert_str_eq(sig,
			 "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}
END_TEST

/* A receiver's check written with OpenSSL's one-shot HMAC. */
START_TEST(test_a_new_secret_signs_what_a_receiver_verifies)
{
	char secret[BUS_WH_SECRET_LEN], other[BUS_WH_SECRET_LEN];
	char sig[BUS_WH_SIG_LEN], expect[BUS_WH_SIG_LEN] = "v1,";
	unsigned char key[64], mac[32];
	unsigned int mlen = 0;
	const char *body = "{\"a\":1}",
		   *signed_text = "d-1.1700000000.{\"a\":1}";
	int klen;

	ck_assert_int_eq(bus_webhook_secret_new(secret), 0);
	ck_assert_int_eq(bus_webhook_secret_new(other), 0);
	ck_assert_str_ne(secret, other);
	ck_assert_int_eq(strncmp(secret, "whsec_", 6), 0);
	ck_assert_int_eq(strlen(secret), 6 + 44);
	ck_assert(bus_webhook_secret_ok(secret));
	klen = EVP_DecodeBlock(key, (const unsigned char *)secret + 6, 44) - 1;
	ck_assert_int_eq(klen, 32);
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, klen,
				   (const unsigned char *)signed_text,
				   strlen(signed_text), mac, &mlen));
	EVP_EncodeBlock((unsigned char *)expect + 3, mac, (int)mlen);
	ck_assert_int_eq(bus_webhook_sign(secret, "d-1", 1700000000, body,
					  strlen(body), sig),
			 0);
	ck_assert_str_eq(sig, expect);
	ck_assert_int_eq(bus_webhook_sign(other, "d-1", 1700000000, body,
					  strlen(body), sig),
			 0);
	ck_assert_str_ne(sig, expect);
}
END_TEST

START_TEST(test_malformed_secrets_are_refused)
{
	char sig[BUS_WH_SIG_LEN];

	ck_assert(!bus_webhook_secret_ok(NULL));
	ck_assert(!bus_webhook_secret_ok(""));
	ck_assert(!bus_webhook_secret_ok("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
	ck_assert(!bus_webhook_secret_ok("whsec_"));
	ck_assert(!bus_webhook_secret_ok("whsec_abc"));
	ck_assert(!bus_webhook_secret_ok("whsec_YWJj")); /* 3 bytes */
	ck_assert(!bus_webhook_secret_ok("whsec_!!!!!!!!!!!!!!!!!!!!!!!!"));
	ck_assert_int_eq(bus_webhook_sign("whsec_abc", "x", 1, "", 0, sig),
			 CM_EINVAL);
}
END_TEST

START_TEST(test_the_default_schedule_retries_for_more_than_a_day)
{
	struct bus_webhook_schedule s = { 13, 60000, 21600000 };
	struct bus_webhook_schedule fast = { 4, 100, 250 };

	ck_assert_int_eq(bus_webhook_backoff_ms(&s, 1), 60000);
	ck_assert_int_eq(bus_webhook_backoff_ms(&s, 2), 120000);
	ck_assert_int_eq(bus_webhook_backoff_ms(&s, 9), 256 * 60000);
	ck_assert_int_eq(bus_webhook_backoff_ms(&s, 10), 21600000);
	ck_assert_int_eq(bus_webhook_backoff_ms(&s, 99), 21600000);
	ck_assert_int_ge(bus_webhook_schedule_span_ms(&s),
			 (int64_t)24 * 3600 * 1000);
	ck_assert_int_eq(bus_webhook_schedule_span_ms(&s),
			 (int64_t)1591 * 60000);
	ck_assert_int_eq(bus_webhook_schedule_span_ms(&fast), 100 + 200 + 250);
}
END_TEST

START_TEST(test_type_patterns_are_checked_item_by_item)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	const char *bad[] = { "[]",
			      "[1]",
			      "[\"lead\"]",
			      "[\"lead.*.*\"]",
			      "[\"Lead.created\"]",
			      "[\"*.created\"]",
			      "[\"lead.*\",\"lead.*\"]",
			      "{}",
			      NULL };
	cJSON *j;
	int i;

	j = cm_json_parse("[\"lead.*\",\"deal.won\",\"*\"]", 25, errbuf);
	ck_assert_ptr_nonnull(j);
	ck_assert_int_eq(bus_webhook_check_patterns(j, errbuf), 0);
	cJSON_Delete(j);
	for (i = 0; bad[i]; i++) {
		j = cm_json_parse(bad[i], strlen(bad[i]), errbuf);
		ck_assert_ptr_nonnull(j);
		ck_assert_msg(bus_webhook_check_patterns(j, errbuf) ==
				      CM_EINVAL,
			      "%s accepted", bad[i]);
		ck_assert_ptr_nonnull(strstr(errbuf, "event_types"));
		cJSON_Delete(j);
	}
}
END_TEST

START_TEST(test_api_keys_need_an_events_scope)
{
	struct cm_principal user = { .sub = "u" }, key = { .is_api_key = true };

	ck_assert(bus_scope_ok(NULL, "write"));
	ck_assert(bus_scope_ok(&user, "write"));
	ck_assert(!bus_scope_ok(&key, "read"));
	ck_assert(!bus_scope_ok(&key, "write"));
	cm_strlcpy(key.roles[key.nroles++], "crm:write", CM_ROLE_LEN);
	ck_assert(!bus_scope_ok(&key, "read"));
	cm_strlcpy(key.roles[key.nroles++], "events:read", CM_ROLE_LEN);
	ck_assert(bus_scope_ok(&key, "read"));
	ck_assert(!bus_scope_ok(&key, "write"));
	cm_strlcpy(key.roles[key.nroles++], "events:write", CM_ROLE_LEN);
	ck_assert(bus_scope_ok(&key, "write"));
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("webhook");
	TCase *tc = tcase_create("pure");

	tcase_add_test(tc,
		       test_the_standard_webhooks_test_vector_is_reproduced);
	tcase_add_test(tc, test_a_new_secret_signs_what_a_receiver_verifies);
	tcase_add_test(tc, test_malformed_secrets_are_refused);
	tcase_add_test(tc,
		       test_the_default_schedule_retries_for_more_than_a_day);
	tcase_add_test(tc, test_type_patterns_are_checked_item_by_item);
	tcase_add_test(tc, test_api_keys_need_an_events_scope);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
