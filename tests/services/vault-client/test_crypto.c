/* test_crypto.c - AES-256-GCM sealing, key parsing and the key check. */
#include "testutil.h"

#include "common/mem.h"

#include "../../../services/vault-client/crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char hex_key[] =
	"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/* the same 32 bytes in base64 */
#define B64_KEY "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
static const char b64_key[] = B64_KEY;

START_TEST(test_hex_and_base64_keys_parse_to_the_same_bytes)
{
	unsigned char a[VC_KEY_LEN], b[VC_KEY_LEN];

	ck_assert_int_eq(vc_key_parse(hex_key, strlen(hex_key), a), 0);
	ck_assert_int_eq(vc_key_parse(b64_key, strlen(b64_key), b), 0);
	ck_assert_mem_eq(a, b, VC_KEY_LEN);
	ck_assert_int_eq(a[31], 0x1f);
	ck_assert_int_eq(
		vc_key_parse(" \n" B64_KEY "\n", strlen(b64_key) + 3, b), 0);
}
END_TEST

START_TEST(test_short_long_and_malformed_keys_are_refused)
{
	unsigned char k[VC_KEY_LEN];

	ck_assert_int_eq(vc_key_parse("abcd", 4, k), CM_EINVAL);
	ck_assert_int_eq(vc_key_parse(hex_key, 62, k), CM_EINVAL);
	ck_assert_int_eq(vc_key_parse("zz0102030405060708090a0b0c0d0e0f10111"
				      "2131415161718191a1b1c1d1e1f",
				      64, k),
			 CM_EINVAL);
	/* 44 base64 chars without padding decode to 33 bytes: refused */
	ck_assert_int_eq(vc_key_parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaG"
				      "xwdHh8A",
				      44, k),
			 CM_EINVAL);
	ck_assert_int_eq(vc_key_parse("", 0, k), CM_EINVAL);
}
END_TEST

START_TEST(test_key_load_wants_exactly_one_source_and_hides_the_value)
{
	char errbuf[CM_ERRBUF_LEN] = "", path[] = "/tmp/vc-key-XXXXXX";
	unsigned char k[VC_KEY_LEN];
	int fd;

	ck_assert_int_eq(vc_key_load("K", NULL, NULL, k, errbuf), CM_EINVAL);
	ck_assert_int_eq(vc_key_load("K", "/x", hex_key, k, errbuf), CM_EINVAL);
	ck_assert_int_eq(vc_key_load("K", NULL, "deadbeef", k, errbuf),
			 CM_EINVAL);
	ck_assert_ptr_null(strstr(errbuf, "deadbeef"));
	ck_assert_int_eq(vc_key_load("K", "/nonexistent/k", NULL, k, errbuf),
			 CM_ENOENT);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, hex_key, 64), 64);
	close(fd);
	ck_assert_int_eq(vc_key_load("K", path, NULL, k, errbuf), 0);
	ck_assert_int_eq(k[1], 1);
	unlink(path);
}
END_TEST

START_TEST(test_seal_then_open_round_trips_with_a_fresh_nonce)
{
	unsigned char key[VC_KEY_LEN], *c1 = NULL, *c2 = NULL, *pt = NULL;
	size_t l1 = 0, l2 = 0, plen = 0;

	ck_assert_int_eq(vc_key_parse(hex_key, 64, key), 0);
	ck_assert_int_eq(vc_seal(key, "aad", 3, "hello", 5, &c1, &l1), 0);
	ck_assert_int_eq(vc_seal(key, "aad", 3, "hello", 5, &c2, &l2), 0);
	ck_assert_uint_eq(l1, 5 + VC_SEAL_OVERHEAD);
	ck_assert(memcmp(c1, c2, l1) != 0); /* random nonce */
	ck_assert_int_eq(vc_open(key, "aad", 3, c1, l1, &pt, &plen), 0);
	ck_assert_uint_eq(plen, 5);
	ck_assert_str_eq((char *)pt, "hello");
	free(pt);
	free(c1);
	free(c2);
}
END_TEST

START_TEST(test_a_changed_byte_aad_or_key_fails_authentication)
{
	unsigned char key[VC_KEY_LEN], other[VC_KEY_LEN], *c = NULL;
	unsigned char *pt = NULL;
	size_t l = 0, plen = 0, i;

	ck_assert_int_eq(vc_key_parse(hex_key, 64, key), 0);
	memcpy(other, key, sizeof(key));
	other[0] ^= 1;
	ck_assert_int_eq(vc_seal(key, "t\0a\0n\0001", 8, "secret", 6, &c, &l),
			 0);
	ck_assert_int_eq(vc_open(other, "t\0a\0n\0001", 8, c, l, &pt, &plen),
			 CM_EACCES);
	ck_assert_int_eq(vc_open(key, "t\0a\0n\0002", 8, c, l, &pt, &plen),
			 CM_EACCES);
	for (i = 0; i < l; i++) {
		c[i] ^= 0x80;
		ck_assert_int_eq(
			vc_open(key, "t\0a\0n\0001", 8, c, l, &pt, &plen),
			CM_EACCES);
		c[i] ^= 0x80;
	}
	ck_assert_int_eq(vc_open(key, "t\0a\0n\0001", 8, c,
				 VC_SEAL_OVERHEAD - 1, &pt, &plen),
			 CM_EACCES);
	ck_assert_ptr_null(pt);
	free(c);
}
END_TEST

START_TEST(test_key_check_values_tell_keys_apart)
{
	unsigned char a[VC_KEY_LEN], b[VC_KEY_LEN];
	unsigned char ka[VC_KCV_LEN], kb[VC_KCV_LEN], ka2[VC_KCV_LEN];

	ck_assert_int_eq(vc_key_parse(hex_key, 64, a), 0);
	memcpy(b, a, sizeof(a));
	b[31] ^= 1;
	vc_kcv(a, ka);
	vc_kcv(a, ka2);
	vc_kcv(b, kb);
	ck_assert_mem_eq(ka, ka2, VC_KCV_LEN);
	ck_assert(memcmp(ka, kb, VC_KCV_LEN) != 0);
	ck_assert(memcmp(ka, a, VC_KCV_LEN) != 0); /* not the key itself */
}
END_TEST

START_TEST(test_hex_round_trips_and_refuses_odd_or_bad_input)
{
	unsigned char in[3] = { 0x00, 0xab, 0xff }, *out = NULL;
	char *hex = vc_hex_encode(in, 3);
	size_t n = 0;

	ck_assert_str_eq(hex, "00abff");
	ck_assert_int_eq(vc_hex_decode(hex, &out, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_mem_eq(out, in, 3);
	free(out);
	free(hex);
	ck_assert_int_eq(vc_hex_decode("abc", &out, &n), CM_EINVAL);
	ck_assert_int_eq(vc_hex_decode("zz", &out, &n), CM_EINVAL);
}
END_TEST

START_TEST(test_base64_round_trips_and_refuses_anything_loose)
{
	static const char *const bad[] = { "a",	    "abc",  "ab=c",
					   "a===",  "ab c", "ab-_",
					   "YQ=\n", "====", NULL };
	unsigned char *out = NULL;
	size_t len = 0;
	char *s;
	int i;

	s = vc_b64_encode((const unsigned char *)"hello", 5);
	ck_assert_str_eq(s, "aGVsbG8=");
	ck_assert_int_eq(vc_b64_decode(s, &out, &len), 0);
	ck_assert_uint_eq(len, 5);
	ck_assert_mem_eq(out, "hello", 5);
	free(out);
	free(s);
	ck_assert_int_eq(vc_b64_decode("", &out, &len), 0);
	ck_assert_uint_eq(len, 0);
	free(out);
	for (i = 0; bad[i]; i++)
		ck_assert_msg(vc_b64_decode(bad[i], &out, &len) == CM_EINVAL,
			      "accepted #%d", i);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("vault-client crypto");
	TCase *tc = tcase_create("crypto");

	tcase_add_test(tc, test_hex_and_base64_keys_parse_to_the_same_bytes);
	tcase_add_test(tc, test_short_long_and_malformed_keys_are_refused);
	tcase_add_test(
		tc, test_key_load_wants_exactly_one_source_and_hides_the_value);
	tcase_add_test(tc, test_seal_then_open_round_trips_with_a_fresh_nonce);
	tcase_add_test(tc, test_a_changed_byte_aad_or_key_fails_authentication);
	tcase_add_test(tc, test_key_check_values_tell_keys_apart);
	tcase_add_test(tc, test_hex_round_trips_and_refuses_odd_or_bad_input);
	tcase_add_test(tc, test_base64_round_trips_and_refuses_anything_loose);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
