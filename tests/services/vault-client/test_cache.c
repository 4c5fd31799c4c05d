/* test_cache.c - the read cache: TTL, invalidation, bound, disabled. */
#include "testutil.h"

#include "../../../services/vault-client/cache.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TA "11111111-2222-4333-8444-555555555555"

static struct vc_path
path(const char *name)
{
	struct vc_path p;

	ck_assert_int_eq(vc_path_tenant(TA, name, &p), 0);
	return p;
}

START_TEST(test_a_put_is_found_per_version_until_it_expires)
{
	struct vc_cache *c = vc_cache_new(100, 10);
	struct vc_path p = path("llm/x");
	char *body = NULL;
	size_t len = 0;

	vc_cache_put(c, &p, 0, "{\"a\":1}", 7, vc_cache_generation(c));
	ck_assert(vc_cache_get(c, &p, 0, &body, &len));
	ck_assert_uint_eq(len, 7);
	ck_assert_str_eq(body, "{\"a\":1}");
	free(body);
	ck_assert(!vc_cache_get(c, &p, 1, &body, &len));
	usleep(150 * 1000);
	ck_assert(!vc_cache_get(c, &p, 0, &body, &len));
	vc_cache_free(c);
}
END_TEST

START_TEST(test_invalidate_drops_every_version_of_one_name_only)
{
	struct vc_cache *c = vc_cache_new(10000, 10);
	struct vc_path p = path("llm/x"), q = path("llm/y");
	char *body = NULL;
	size_t len = 0;

	vc_cache_put(c, &p, 0, "a", 1, vc_cache_generation(c));
	vc_cache_put(c, &p, 3, "b", 1, vc_cache_generation(c));
	vc_cache_put(c, &q, 0, "c", 1, vc_cache_generation(c));
	ck_assert_uint_eq(vc_cache_size(c), 3);
	vc_cache_invalidate(c, &p);
	ck_assert_uint_eq(vc_cache_size(c), 1);
	ck_assert(!vc_cache_get(c, &p, 0, &body, &len));
	ck_assert(!vc_cache_get(c, &p, 3, &body, &len));
	ck_assert(vc_cache_get(c, &q, 0, &body, &len));
	free(body);
	vc_cache_free(c);
}
END_TEST

START_TEST(test_a_full_cache_declines_until_entries_expire)
{
	struct vc_cache *c = vc_cache_new(100, 2);
	struct vc_path a = path("a"), b = path("b"), d = path("d");
	char *body = NULL;
	size_t len = 0;

	vc_cache_put(c, &a, 0, "1", 1, vc_cache_generation(c));
	vc_cache_put(c, &b, 0, "2", 1, vc_cache_generation(c));
	vc_cache_put(c, &d, 0, "3", 1, vc_cache_generation(c));
	ck_assert_uint_eq(vc_cache_size(c), 2);
	ck_assert(!vc_cache_get(c, &d, 0, &body, &len));
	usleep(150 * 1000);
	vc_cache_put(c, &d, 0, "3", 1, vc_cache_generation(c));
	ck_assert_uint_eq(vc_cache_size(c), 1);
	ck_assert(vc_cache_get(c, &d, 0, &body, &len));
	free(body);
	vc_cache_free(c);
}
END_TEST

START_TEST(test_a_put_after_an_invalidation_is_dropped)
{
	struct vc_cache *c = vc_cache_new(10000, 10);
	struct vc_path p = path("llm/x"), q = path("llm/y");
	uint64_t gen = vc_cache_generation(c);
	char *body = NULL;
	size_t len = 0;

	vc_cache_invalidate(c, &q); /* a write raced the read of p */
	vc_cache_put(c, &p, 0, "old", 3, gen);
	ck_assert(!vc_cache_get(c, &p, 0, &body, &len));
	vc_cache_put(c, &p, 0, "new", 3, vc_cache_generation(c));
	ck_assert(vc_cache_get(c, &p, 0, &body, &len));
	free(body);
	vc_cache_free(c);
}
END_TEST

START_TEST(test_a_zero_ttl_disables_the_cache)
{
	struct vc_cache *c = vc_cache_new(0, 10);
	struct vc_path p = path("llm/x");
	char *body = NULL;
	size_t len = 0;

	vc_cache_put(c, &p, 0, "a", 1, vc_cache_generation(c));
	ck_assert_uint_eq(vc_cache_size(c), 0);
	ck_assert(!vc_cache_get(c, &p, 0, &body, &len));
	vc_cache_free(c);
	vc_cache_free(NULL);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("vault-client cache");
	TCase *tc = tcase_create("cache");

	tcase_add_test(tc, test_a_put_is_found_per_version_until_it_expires);
	tcase_add_test(tc,
		       test_invalidate_drops_every_version_of_one_name_only);
	tcase_add_test(tc, test_a_full_cache_declines_until_entries_expire);
	tcase_add_test(tc, test_a_put_after_an_invalidation_is_dropped);
	tcase_add_test(tc, test_a_zero_ttl_disables_the_cache);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
