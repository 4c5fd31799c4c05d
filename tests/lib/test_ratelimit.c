/* test_ratelimit.c - common/ratelimit.h against the test stack's Redis:
   buckets (burst, cost, refill, retry_after, the server's clock, expiry,
   two replicas sharing one bucket) and the usage counters. */
#include "common/ratelimit.h"
#include "common/http.h"
#include "common/json.h"
#include "common/mem.h"
#include "common/redis.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "svc.h"
#include "testutil.h"
#include "common/banned.h"

static char g_run[16]; /* per-run key part, so runs never share buckets */

static int
redis_port(void)
{
	int64_t port;

	ck_assert_int_eq(
		cm_parse_i64(cm_test_env("REDIS_PORT"), 1, 65535, &port), 0);
	return (int)port;
}

static void
init_port(int port)
{
	struct cm_redis_config cfg = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";

	cfg.host = cm_test_env("REDIS_HOST");
	cfg.port = port;
	cfg.connect_timeout_ms = 1000;
	cfg.command_timeout_ms = 2000;
	ck_assert_msg(cm_redis_init(&cfg, errbuf) == 0, "init: %s", errbuf);
}

static void
run_setup(void)
{
	char uuid[37];

	cm_test_require_stack();
	ck_assert_int_eq(cm_uuid_v4(uuid), 0);
	snprintf(g_run, sizeof(g_run), "%.8s", uuid);
}

static void
rl_setup(void)
{
	init_port(redis_port());
}

static void
rl_teardown(void)
{
	cm_redis_shutdown();
}

/* "test:<run>:<name>": a bucket key of this run. */
static void
bucket(char out[96], const char *name)
{
	snprintf(out, 96, "test:%s:%s", g_run, name);
}

static struct cm_rate_result
take(const char *key, long per_minute, long burst, long cost)
{
	struct cm_rate_result r;
	char errbuf[CM_ERRBUF_LEN] = "";

	ck_assert_msg(cm_rate_take(key, per_minute, burst, cost, &r, errbuf) ==
			      0,
		      "take: %s", errbuf);
	return r;
}

/* One command on the shared connection; the reply (caller frees). */
static redisReply *
cmd(int argc, const char **argv)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	redisReply *r = cm_redis_cmd(argc, argv, NULL, errbuf);

	ck_assert_msg(r != NULL, "%s", errbuf);
	return r;
}

/* Redis's TIME in seconds and microseconds. */
static void
server_time(long long *s, long long *us)
{
	const char *argv[] = { "TIME" };
	redisReply *r = cmd(1, argv);
	int64_t a, b;

	ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
	ck_assert_int_eq(cm_parse_i64(r->element[0]->str, 0, INT64_MAX, &a), 0);
	ck_assert_int_eq(cm_parse_i64(r->element[1]->str, 0, INT64_MAX, &b), 0);
	*s = a;
	*us = b;
	freeReplyObject(r);
}

START_TEST(test_a_new_bucket_is_full_and_refuses_past_its_burst)
{
	struct cm_rate_result r;
	char k[96];
	int i;

	bucket(k, "burst");
	for (i = 2; i >= 0; i--) { /* 6 a minute: one token per 10 s */
		r = take(k, 6, 3, 1);
		ck_assert(r.allowed);
		ck_assert_int_eq(r.remaining, i);
		ck_assert_int_eq(r.retry_after_ms, 0);
		ck_assert_int_eq(r.limit, 3);
	}
	r = take(k, 6, 3, 1);
	ck_assert(!r.allowed);
	ck_assert_int_eq(r.remaining, 0);
	ck_assert_int_gt(r.retry_after_ms, 0);
	ck_assert_int_le(r.retry_after_ms, 10000);
	ck_assert_int_eq(r.limit, 3);
}
END_TEST

START_TEST(test_cost_takes_several_tokens_and_zero_only_looks)
{
	struct cm_rate_result r;
	char k[96], errbuf[CM_ERRBUF_LEN] = "";

	bucket(k, "cost");
	r = take(k, 6, 5, 0);
	ck_assert(r.allowed);
	ck_assert_int_eq(r.remaining, 5);
	r = take(k, 6, 5, 3);
	ck_assert(r.allowed);
	ck_assert_int_eq(r.remaining, 2);
	r = take(k, 6, 5, 3); /* one token short: about 10 s away */
	ck_assert(!r.allowed);
	ck_assert_int_eq(r.remaining, 2);
	ck_assert_int_gt(r.retry_after_ms, 9000);
	ck_assert_int_le(r.retry_after_ms, 10000);
	r = take(k, 6, 5, 0); /* a refusal took nothing */
	ck_assert(r.allowed);
	ck_assert_int_eq(r.remaining, 2);
	ck_assert_int_eq(cm_rate_take(k, 6, 5, 6, &r, errbuf), CM_EINVAL);
}
END_TEST

START_TEST(test_the_bucket_refills_at_its_rate_and_retry_after_is_honest)
{
	struct cm_rate_result r;
	char k[96];

	bucket(k, "refill");
	r = take(k, 60, 2, 2); /* one token a second */
	ck_assert(r.allowed);
	ck_assert_int_eq(r.remaining, 0);
	r = take(k, 60, 2, 1);
	ck_assert(!r.allowed);
	ck_assert_int_gt(r.retry_after_ms, 0);
	ck_assert_int_le(r.retry_after_ms, 1000);
	usleep((useconds_t)(r.retry_after_ms + 20) * 1000);
	r = take(k, 60, 2, 1);
	ck_assert_msg(r.allowed, "refused again, retry after %ld ms",
		      r.retry_after_ms);
	ck_assert_int_eq(r.remaining, 0);
	usleep(2100 * 1000); /* past full: never more than burst */
	r = take(k, 60, 2, 0);
	ck_assert_int_eq(r.remaining, 2);
}
END_TEST

START_TEST(test_a_smaller_burst_clamps_the_stored_tokens)
{
	struct cm_rate_result r;
	char k[96];

	bucket(k, "clamp");
	r = take(k, 6, 10, 1);
	ck_assert_int_eq(r.remaining, 9);
	r = take(k, 6, 3, 1); /* the plan shrank */
	ck_assert(r.allowed);
	ck_assert_int_eq(r.remaining, 2);
	ck_assert_int_eq(r.limit, 3);
}
END_TEST

START_TEST(test_the_state_uses_the_redis_clock_and_expires_when_idle)
{
	char k[96], full[128];
	const char *hget[] = { "HGET", full, "ts" };
	const char *pttl[] = { "PTTL", full };
	long long s, us, before, after;
	redisReply *r;
	int64_t ts;

	bucket(k, "clock");
	snprintf(full, sizeof(full), "bz:rl:%s", k);
	server_time(&s, &us);
	before = s * 1000000 + us;
	take(k, 60, 2, 1);
	server_time(&s, &us);
	after = s * 1000000 + us;
	r = cmd(3, hget);
	ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
	ck_assert_int_eq(cm_parse_i64(r->str, 0, INT64_MAX, &ts), 0);
	ck_assert(ts >= before && ts <= after);
	freeReplyObject(r);
	r = cmd(2, pttl); /* one token short of full: 1 s, plus 1 s */
	ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
	ck_assert_int_gt(r->integer, 0);
	ck_assert_int_le(r->integer, 2000);
	freeReplyObject(r);
}
END_TEST

START_TEST(test_a_flushed_script_cache_falls_back_to_eval)
{
	const char *flush[] = { "SCRIPT", "FLUSH" };
	struct cm_rate_result r;
	char k[96];

	bucket(k, "noscript");
	take(k, 6, 3, 1);
	freeReplyObject(cmd(2, flush));
	r = take(k, 6, 3, 1);
	ck_assert(r.allowed);
	ck_assert_int_eq(r.remaining, 1);
	r = take(k, 6, 3, 1); /* cached again by the EVAL */
	ck_assert_int_eq(r.remaining, 0);
}
END_TEST

struct replica {
	const char *key;
	int tries;
	int allowed;
	int errors;
};

/* One "replica": its own thread, so its own Redis connection. */
static void *
replica_run(void *arg)
{
	struct replica *rp = arg;
	char errbuf[CM_ERRBUF_LEN];
	struct cm_rate_result r;
	int i;

	for (i = 0; i < rp->tries; i++) {
		if (cm_rate_take(rp->key, 1, 40, 1, &r, errbuf) < 0)
			rp->errors++;
		else if (r.allowed)
			rp->allowed++;
	}
	return NULL;
}

START_TEST(test_two_replicas_share_one_bucket_exactly)
{
	struct replica a = { 0 }, b = { 0 };
	pthread_t ta, tb;
	char k[96];

	bucket(k, "shared");
	a.key = b.key = k;
	a.tries = b.tries = 50;
	ck_assert_int_eq(pthread_create(&ta, NULL, replica_run, &a), 0);
	ck_assert_int_eq(pthread_create(&tb, NULL, replica_run, &b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	ck_assert_int_eq(a.errors + b.errors, 0);
	/* 40 tokens, one a minute: 100 tries from two connections take
	   exactly the burst, however they interleave */
	ck_assert_int_eq(a.allowed + b.allowed, 40);
	ck_assert_int_gt(a.allowed, 0);
	ck_assert_int_gt(b.allowed, 0);
	ck_assert(!take(k, 1, 40, 1).allowed);
}
END_TEST

START_TEST(test_bad_bucket_inputs_are_refused_before_redis)
{
	char longkey[CM_RATE_KEY_MAX + 2], errbuf[CM_ERRBUF_LEN] = "";
	struct cm_rate_result r;

	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	ck_assert_int_eq(cm_rate_take("", 1, 1, 1, &r, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_rate_take(NULL, 1, 1, 1, &r, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_rate_take("a b", 1, 1, 1, &r, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_rate_take("a\nb", 1, 1, 1, &r, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_rate_take(longkey, 1, 1, 1, &r, errbuf), CM_EINVAL);
	longkey[CM_RATE_KEY_MAX] = '\0'; /* exactly the maximum is fine */
	ck_assert_int_eq(cm_rate_take(longkey, 1, 1, 0, &r, errbuf), 0);
	ck_assert_int_eq(cm_rate_take("k", 0, 1, 1, &r, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_rate_take("k", 1, 0, 0, &r, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_rate_take("k", 1, 1, -1, &r, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_rate_take("k", CM_RATE_MAX + 1, 1, 1, &r, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(cm_rate_take("k", 1, CM_RATE_MAX + 1, 1, &r, errbuf),
			 CM_EINVAL);
}
END_TEST

START_TEST(test_redis_down_is_an_error_the_caller_sees)
{
	char k[96], errbuf[CM_ERRBUF_LEN] = "", tid[37];
	struct cm_rate_result r;
	long long v = 7;

	init_port(cm_test_free_port()); /* nothing listens there */
	bucket(k, "down");
	ck_assert_int_eq(cm_rate_take(k, 6, 3, 1, &r, errbuf), CM_EIO);
	ck_assert(!r.allowed);
	ck_assert_ptr_nonnull(strstr(errbuf, "redis"));
	ck_assert_int_eq(cm_uuid_v4(tid), 0);
	ck_assert_int_eq(cm_usage_incr(tid, "api_calls", 1, errbuf), CM_EIO);
	ck_assert_int_eq(cm_usage_get(tid, "api_calls", "day", &v, errbuf),
			 CM_EIO);
	ck_assert_int_eq(v, 0);
}
END_TEST

/* ---- usage counters ---- */

struct seen {
	long long api_calls;
	long long leads;
	int n;
};

static void
collect(const char *counter, long long value, void *arg)
{
	struct seen *s = arg;

	s->n++;
	if (!strcmp(counter, "api_calls"))
		s->api_calls = value;
	else if (!strcmp(counter, "leads_created"))
		s->leads = value;
}

/* The TTL of key (seconds). */
static long long
ttl_of(const char *key)
{
	const char *argv[] = { "TTL", key };
	redisReply *r = cmd(2, argv);
	long long t = r->integer;

	freeReplyObject(r);
	return t;
}

static void
del_usage(const char *tid)
{
	char pattern[80];
	const char *keys[] = { "KEYS", pattern };
	const char *del[2] = { "DEL", NULL };
	redisReply *r;
	size_t i;

	snprintf(pattern, sizeof(pattern), "bz:usage:%s:*", tid);
	r = cmd(2, keys);
	for (i = 0; i < r->elements; i++) {
		del[1] = r->element[i]->str;
		freeReplyObject(cmd(2, del));
	}
	freeReplyObject(r);
}

START_TEST(test_usage_counts_per_utc_day_and_month_by_the_redis_clock)
{
	char tid[37], day[96], month[80], errbuf[CM_ERRBUF_LEN] = "";
	const char *hget[] = { "HGET", day, "api_calls" };
	struct seen seen = { 0 };
	long long s, us, v;
	struct tm tm;
	time_t now;
	redisReply *r;

	ck_assert_int_eq(cm_uuid_v4(tid), 0);
	ck_assert_int_eq(cm_usage_incr(tid, "api_calls", 1, errbuf), 0);
	ck_assert_int_eq(cm_usage_incr(tid, "api_calls", 41, errbuf), 0);
	ck_assert_int_eq(cm_usage_incr(tid, "leads_created", 5, errbuf), 0);
	ck_assert_int_eq(cm_usage_get(tid, "api_calls", "day", &v, errbuf), 0);
	ck_assert_int_eq(v, 42);
	ck_assert_int_eq(cm_usage_get(tid, "api_calls", "month", &v, errbuf),
			 0);
	ck_assert_int_eq(v, 42);
	ck_assert_int_eq(cm_usage_get(tid, "never", "month", &v, errbuf), 0);
	ck_assert_int_eq(v, 0);
	/* the hashes are named by the server's UTC date */
	server_time(&s, &us);
	now = (time_t)s;
	gmtime_r(&now, &tm);
	snprintf(month, sizeof(month), "bz:usage:%s:%04d-%02d", tid,
		 tm.tm_year + 1900, tm.tm_mon + 1);
	snprintf(day, sizeof(day), "%s-%02d", month, tm.tm_mday);
	r = cmd(3, hget);
	ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
	ck_assert_str_eq(r->str, "42");
	freeReplyObject(r);
	ck_assert_int_gt(ttl_of(day), 39 * 86400);
	ck_assert_int_le(ttl_of(day), 40 * 86400);
	ck_assert_int_gt(ttl_of(month), 399 * 86400);
	ck_assert_int_le(ttl_of(month), 400 * 86400);
	ck_assert_int_eq(cm_usage_each(tid, "day", collect, &seen, errbuf), 0);
	ck_assert_int_eq(seen.n, 2);
	ck_assert_int_eq(seen.api_calls, 42);
	ck_assert_int_eq(seen.leads, 5);
	del_usage(tid);
}
END_TEST

START_TEST(test_a_month_counter_outlives_the_day_it_was_counted_on)
{
	char tid[37], day[96], month[80], errbuf[CM_ERRBUF_LEN] = "";
	const char *hset[] = { "HSET", month, "api_calls", "100" };
	const char *del[] = { "DEL", day };
	long long s, us, v;
	struct tm tm;
	time_t now;

	ck_assert_int_eq(cm_uuid_v4(tid), 0);
	server_time(&s, &us);
	now = (time_t)s;
	gmtime_r(&now, &tm);
	snprintf(month, sizeof(month), "bz:usage:%s:%04d-%02d", tid,
		 tm.tm_year + 1900, tm.tm_mon + 1);
	snprintf(day, sizeof(day), "%s-%02d", month, tm.tm_mday);
	freeReplyObject(cmd(4, hset)); /* earlier days of this month */
	ck_assert_int_eq(cm_usage_incr(tid, "api_calls", 3, errbuf), 0);
	ck_assert_int_eq(cm_usage_get(tid, "api_calls", "day", &v, errbuf), 0);
	ck_assert_int_eq(v, 3);
	ck_assert_int_eq(cm_usage_get(tid, "api_calls", "month", &v, errbuf),
			 0);
	ck_assert_int_eq(v, 103);
	freeReplyObject(cmd(2, del)); /* yesterday, as seen tomorrow */
	ck_assert_int_eq(cm_usage_get(tid, "api_calls", "day", &v, errbuf), 0);
	ck_assert_int_eq(v, 0);
	del_usage(tid);
}
END_TEST

struct counter_thread {
	const char *tid;
	int errors;
};

static void *
count_run(void *arg)
{
	struct counter_thread *ct = arg;
	char errbuf[CM_ERRBUF_LEN];
	int i;

	for (i = 0; i < 100; i++)
		if (cm_usage_incr(ct->tid, "api_calls", 1, errbuf) < 0)
			ct->errors++;
	return NULL;
}

START_TEST(test_two_replicas_counting_at_once_lose_nothing)
{
	struct counter_thread a = { 0 }, b = { 0 };
	char tid[37], errbuf[CM_ERRBUF_LEN] = "";
	pthread_t ta, tb;
	long long v;

	ck_assert_int_eq(cm_uuid_v4(tid), 0);
	a.tid = b.tid = tid;
	ck_assert_int_eq(pthread_create(&ta, NULL, count_run, &a), 0);
	ck_assert_int_eq(pthread_create(&tb, NULL, count_run, &b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	ck_assert_int_eq(a.errors + b.errors, 0);
	ck_assert_int_eq(cm_usage_get(tid, "api_calls", "month", &v, errbuf),
			 0);
	ck_assert_int_eq(v, 200);
	del_usage(tid);
}
END_TEST

START_TEST(test_bad_usage_inputs_are_refused_before_redis)
{
	char tid[37], errbuf[CM_ERRBUF_LEN] = "",
		      name[CM_USAGE_COUNTER_MAX + 2];
	long long v;

	ck_assert_int_eq(cm_uuid_v4(tid), 0);
	memset(name, 'c', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	ck_assert_int_eq(cm_usage_incr("not-a-uuid", "x", 1, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(cm_usage_incr(NULL, "x", 1, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_usage_incr(tid, "Api", 1, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_usage_incr(tid, "a b", 1, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_usage_incr(tid, "", 1, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_usage_incr(tid, name, 1, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_usage_incr(tid, "x", 0, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_usage_incr(tid, "x", CM_USAGE_INCR_MAX + 1, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(cm_usage_get(tid, "x", "year", &v, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_usage_get(tid, "x", NULL, &v, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_usage_each(tid, "week", collect, NULL, errbuf),
			 CM_EINVAL);
	name[CM_USAGE_COUNTER_MAX] = '\0';
	ck_assert(cm_usage_counter_valid(name));
	ck_assert(cm_usage_counter_valid("ai.tokens-in_2"));
}
END_TEST

START_TEST(test_take_and_count_counts_only_what_it_lets_through)
{
	char k[96], tid[37], errbuf[CM_ERRBUF_LEN] = "";
	struct cm_rate_result r;
	long long v;
	int i, allowed = 0;

	bucket(k, "takecount");
	ck_assert_int_eq(cm_uuid_v4(tid), 0);
	for (i = 0; i < 5; i++) {
		ck_assert_int_eq(cm_rate_take_count(k, 6, 3, 1, tid,
						    "api_calls", 1, &r, errbuf),
				 0);
		allowed += r.allowed;
		ck_assert_int_eq(r.limit, 3);
	}
	ck_assert_int_eq(allowed, 3);
	ck_assert(!r.allowed);
	ck_assert_int_gt(r.retry_after_ms, 0);
	ck_assert_int_eq(cm_usage_get(tid, "api_calls", "day", &v, errbuf), 0);
	ck_assert_int_eq(v, 3);
	ck_assert_int_eq(cm_usage_get(tid, "api_calls", "month", &v, errbuf),
			 0);
	ck_assert_int_eq(v, 3);
	ck_assert_int_eq(cm_rate_take_count(k, 6, 3, 1, "not-a-uuid",
					    "api_calls", 1, &r, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(
		cm_rate_take_count(k, 6, 3, 1, tid, "Bad Name", 1, &r, errbuf),
		CM_EINVAL);
}
END_TEST

/* ---- leases: cm_rate_lease_take_async on a real HTTP worker ---- */

/* GET /lease/:key/:tenant?pm=&burst=&batch= - one leased take; answers
   {"allowed", "remaining", "limit"} or 503 with the error. */
static void
lease_answer(int rc, const struct cm_rate_result *r, const char *err, void *arg)
{
	struct cm_req *req = arg;
	cJSON *j;

	if (rc < 0) {
		cm_req_fail(req, 503, "unavailable", "%s", err ? err : "?");
		cm_req_reply_json(req, 503, NULL);
		return;
	}
	j = cJSON_CreateObject();
	cJSON_AddBoolToObject(j, "allowed", r->allowed);
	cJSON_AddNumberToObject(j, "remaining", (double)r->remaining);
	cJSON_AddNumberToObject(j, "limit", (double)r->limit);
	cm_req_reply_json(req, 200, j);
	cJSON_Delete(j);
}

static long
query_long(struct cm_req *req, const char *name)
{
	int64_t v = 0;

	ck_assert_int_eq(
		cm_parse_i64(cm_req_query(req, name), 1, CM_RATE_MAX, &v), 0);
	return (long)v;
}

static void
h_lease(struct cm_req *req0, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	long pm = query_long(req0, "pm"), burst = query_long(req0, "burst");
	long batch = query_long(req0, "batch");
	struct cm_req *req = cm_req_defer(req0);

	(void)arg;
	ck_assert_ptr_nonnull(req);
	if (cm_rate_lease_take_async(cm_req_param(req, "key"), pm, burst, batch,
				     cm_req_param(req, "tenant"), "api_calls",
				     lease_answer, req, errbuf) < 0) {
		cm_req_fail(req, 400, "bad_request", "%s", errbuf);
		cm_req_reply_json(req, 400, NULL);
	}
}

static const struct cm_route lease_routes[] = {
	{ "GET", "/lease/:key/:tenant", h_lease, CM_ROUTE_PUBLIC },
	CM_ROUTE_END,
};

/* One leased take through the server on port: 1 allowed, 0 refused. */
static int
lease_take(int port, const char *key, const char *tid, long pm, long burst,
	   long batch)
{
	struct cm_test_resp r;
	char path[256];
	const cJSON *a;
	int allowed;

	snprintf(path, sizeof(path), "/lease/%s/%s?pm=%ld&burst=%ld&batch=%ld",
		 key, tid, pm, burst, batch);
	ck_assert_int_eq(cm_test_http("GET", port, path, NULL, NULL, &r), 0);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	a = cJSON_GetObjectItemCaseSensitive(r.json, "allowed");
	ck_assert(cJSON_IsBool(a));
	allowed = cJSON_IsTrue(a);
	cm_test_resp_release(&r);
	return allowed;
}

/* The bucket's stored tokens (whole), as Redis holds them. */
static long
stored_tokens(const char *key)
{
	char full[128];
	const char *argv[3] = { "HGET", full, "t" };
	redisReply *r;
	double t;

	snprintf(full, sizeof(full), "bz:rl:%s", key);
	r = cmd(3, argv);
	ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
	t = strtod(r->str, NULL);
	freeReplyObject(r);
	return (long)t;
}

static long long
api_calls(const char *tid)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	long long v = -1;

	ck_assert_int_eq(cm_usage_get(tid, "api_calls", "day", &v, errbuf), 0);
	return v;
}

/* What the worker served is counted within about 3 s (its timer), and
   stopping the server counts nothing twice. */
static void
counted_then_stop(const char *tid, long long n, struct cm_http *h)
{
	struct timespec ts = { 0, 100000000L };
	int i;

	for (i = 0; i < 30 && api_calls(tid) < n; i++)
		nanosleep(&ts, NULL);
	ck_assert_int_eq(api_calls(tid), n);
	cm_test_server_stop(h);
	ck_assert_int_eq(api_calls(tid), n);
}

/* A worker reserves `batch` tokens at once, serves the next takes from
   them, and never lets more through than the bucket holds; what it
   served is counted by its timer within about a second. */
START_TEST(test_a_lease_reserves_tokens_and_never_exceeds_the_bucket)
{
	char k[96], tid[37];
	struct cm_http *h;
	int port, i, allowed = 0;

	bucket(k, "lease");
	ck_assert_int_eq(cm_uuid_v4(tid), 0);
	freeReplyObject(cmd(2, (const char *[]){ "SCRIPT", "FLUSH" }));
	h = cm_test_server_start(
		lease_routes); /* its first refill meets NOSCRIPT */
	port = cm_http_port(h);
	ck_assert_int_eq(lease_take(port, k, tid, 1, 25, 10), 1);
	ck_assert_int_eq(stored_tokens(k), 15); /* 10 reserved, 1 used */
	allowed = 1;
	for (i = 0; i < 3; i++)
		allowed += lease_take(port, k, tid, 1, 25, 10);
	ck_assert_int_eq(stored_tokens(k), 15); /* served from the reserve */
	/* the fifth leaves half the batch (5): a refill of 5 goes out
	   ahead, with no take waiting for it */
	allowed += lease_take(port, k, tid, 1, 25, 10);
	ck_assert_int_eq(allowed, 5);
	for (i = 0; i < 100 && stored_tokens(k) != 10; i++)
		nanosleep(&(struct timespec){ 0, 10000000L }, NULL);
	ck_assert_int_eq(stored_tokens(k), 10);
	for (i = 0; i < 30; i++)
		allowed += lease_take(port, k, tid, 1, 25, 10);
	ck_assert_int_eq(allowed, 25); /* never more than the bucket */
	counted_then_stop(tid, 25, h);
}
END_TEST

/* How many EVALSHA calls Redis has run (INFO commandstats). */
static long
evalsha_calls(void)
{
	redisReply *r = cmd(2, (const char *[]){ "INFO", "commandstats" });
	const char *p;
	long n = 0;

	ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
	p = strstr(r->str, "cmdstat_evalsha:calls=");
	if (p)
		n = strtol(p + 22, NULL, 10);
	freeReplyObject(r);
	return n;
}

/* A refill ahead that finds the bucket empty refuses nobody: the takes
   go on from the reserve, without asking Redis again, until it is used
   up; then a take's own refill is refused. Every call let through is
   counted, the ones before the empty refill included. */
START_TEST(test_a_refill_ahead_that_finds_the_bucket_empty_stops)
{
	char k[96], tid[37];
	struct cm_http *h;
	int port, i, allowed = 0;
	long calls;

	bucket(k, "lease-dry");
	ck_assert_int_eq(cm_uuid_v4(tid), 0);
	h = cm_test_server_start(lease_routes);
	port = cm_http_port(h);
	for (i = 0; i < 5; i++) /* the fifth sends a refill ahead */
		allowed += lease_take(port, k, tid, 1, 10, 10);
	ck_assert_int_eq(allowed, 5);
	ck_assert_int_eq(stored_tokens(k), 0); /* all 10 reserved at once */
	nanosleep(&(struct timespec){ 0, 50000000L }, NULL); /* it answers */
	calls = evalsha_calls();
	for (i = 0; i < 5; i++) /* the rest of the reserve */
		allowed += lease_take(port, k, tid, 1, 10, 10);
	ck_assert_int_eq(allowed, 10);
	ck_assert_int_eq(evalsha_calls(), calls); /* none ahead again */
	ck_assert_int_eq(lease_take(port, k, tid, 1, 10, 10), 0);
	ck_assert_int_eq(evalsha_calls(), calls + 1); /* its own refill */
	counted_then_stop(tid, 10, h);
}
END_TEST

struct lease_client {
	int port;
	const char *key, *tid;
	int allowed;
};

static void *
lease_client_run(void *arg)
{
	struct lease_client *c = arg;
	int i;

	for (i = 0; i < 10; i++)
		c->allowed += lease_take(c->port, c->key, c->tid, 1, 25, 10);
	return NULL;
}

/* Takes that arrive while a refill is in flight wait for it and share
   what it brought: eight clients at once still get exactly the burst. */
START_TEST(test_concurrent_leased_takes_get_exactly_the_burst)
{
	struct lease_client c[8];
	pthread_t t[8];
	char k[96], tid[37];
	struct cm_http *h;
	int port, i, allowed = 0;

	bucket(k, "lease-burst");
	ck_assert_int_eq(cm_uuid_v4(tid), 0);
	h = cm_test_server_start(lease_routes);
	port = cm_http_port(h);
	for (i = 0; i < 8; i++) {
		c[i] = (struct lease_client){ port, k, tid, 0 };
		ck_assert_int_eq(
			pthread_create(&t[i], NULL, lease_client_run, &c[i]),
			0);
	}
	for (i = 0; i < 8; i++) {
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		allowed += c[i].allowed;
	}
	ck_assert_int_eq(allowed, 25);
	counted_then_stop(tid, 25, h);
}
END_TEST

/* A "Redis" that accepts connections and never answers. */
struct silent {
	int fd;
	atomic_bool stop;
	pthread_t t;
};

static void *
silent_run(void *arg)
{
	struct silent *sl = arg;
	int conns[16], n = 0, c;

	while (!atomic_load(&sl->stop)) {
		c = accept(sl->fd, NULL, NULL);
		if (c >= 0 && n < 16)
			conns[n++] = c;
		else if (c >= 0)
			close(c);
	}
	while (n > 0)
		close(conns[--n]);
	return NULL;
}

static int
silent_start(struct silent *sl)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	struct timeval tv = { 0, 100000 };

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sl->fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(sl->fd, 0);
	ck_assert_int_eq(
		setsockopt(sl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)),
		0);
	ck_assert_int_eq(bind(sl->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(sl->fd, 16), 0);
	ck_assert_int_eq(getsockname(sl->fd, (struct sockaddr *)&a, &len), 0);
	atomic_store(&sl->stop, false);
	ck_assert_int_eq(pthread_create(&sl->t, NULL, silent_run, sl), 0);
	return ntohs(a.sin_port);
}

static void
silent_stop(struct silent *sl)
{
	atomic_store(&sl->stop, true);
	pthread_join(sl->t, NULL);
	close(sl->fd);
}

/* A Redis that never answers: the async take times out (5 s), the
   request gets its answer (503 here) instead of hanging, and the worker
   still serves and stops cleanly. */
START_TEST(test_a_silent_redis_times_the_async_take_out)
{
	struct silent sl;
	struct cm_test_resp r;
	struct cm_http *h;
	char path[256], tid[37];
	int port;
	int64_t t0;

	init_port(silent_start(&sl));
	ck_assert_int_eq(cm_uuid_v4(tid), 0);
	h = cm_test_server_start(lease_routes);
	port = cm_http_port(h);
	snprintf(path, sizeof(path),
		 "/lease/test-silent/%s?pm=6&burst=3&batch=1", tid);
	t0 = cm_now_ms();
	ck_assert_int_eq(cm_test_http("GET", port, path, NULL, NULL, &r), 0);
	ck_assert_int_eq(r.status, 503);
	ck_assert_int_ge(cm_now_ms() - t0, 4500); /* it waited: a timeout */
	ck_assert_int_lt(cm_now_ms() - t0, 9000);
	ck_assert_ptr_nonnull(strstr(r.body, "redis"));
	cm_test_resp_release(&r);
	ck_assert_int_eq(cm_test_http("GET", port, "/nowhere", NULL, NULL, &r),
			 0);
	ck_assert_int_eq(r.status, 404); /* the worker still answers */
	cm_test_resp_release(&r);
	cm_test_server_stop(h);
	silent_stop(&sl);
}
END_TEST

/* Two replicas with their own reserves share one bucket: together they
   let exactly the burst through. Stopping a worker counts what it
   served from its reserve at once. */
START_TEST(test_two_replicas_leasing_share_the_bucket_and_count_on_stop)
{
	char k[96], tid[37];
	struct cm_http *a, *b;
	int pa, pb, i, allowed = 0;

	bucket(k, "lease2");
	ck_assert_int_eq(cm_uuid_v4(tid), 0);
	a = cm_test_server_start(lease_routes);
	pa = cm_http_port(a);
	b = cm_test_server_start(lease_routes);
	pb = cm_http_port(b);
	for (i = 0; i < 20; i++) {
		allowed += lease_take(pa, k, tid, 1, 30, 8);
		allowed += lease_take(pb, k, tid, 1, 30, 8);
	}
	ck_assert_int_eq(allowed, 30);
	cm_test_server_stop(a);
	cm_test_server_stop(b);
	ck_assert_int_eq(api_calls(tid), 30);

	/* batch 1 is the plain take: nothing reserved */
	bucket(k, "lease3");
	a = cm_test_server_start(lease_routes);
	pa = cm_http_port(a);
	ck_assert_int_eq(lease_take(pa, k, tid, 1, 5, 1), 1);
	ck_assert_int_eq(stored_tokens(k), 4);
	cm_test_server_stop(a);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("ratelimit");
	TCase *tc = tcase_create("ratelimit");

	tcase_add_unchecked_fixture(tc, run_setup, NULL);
	tcase_add_checked_fixture(tc, rl_setup, rl_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc,
		       test_a_new_bucket_is_full_and_refuses_past_its_burst);
	tcase_add_test(tc, test_cost_takes_several_tokens_and_zero_only_looks);
	tcase_add_test(
		tc,
		test_the_bucket_refills_at_its_rate_and_retry_after_is_honest);
	tcase_add_test(tc, test_a_smaller_burst_clamps_the_stored_tokens);
	tcase_add_test(
		tc, test_the_state_uses_the_redis_clock_and_expires_when_idle);
	tcase_add_test(tc, test_a_flushed_script_cache_falls_back_to_eval);
	tcase_add_test(tc, test_two_replicas_share_one_bucket_exactly);
	tcase_add_test(tc, test_bad_bucket_inputs_are_refused_before_redis);
	tcase_add_test(tc, test_redis_down_is_an_error_the_caller_sees);
	tcase_add_test(
		tc, test_usage_counts_per_utc_day_and_month_by_the_redis_clock);
	tcase_add_test(tc,
		       test_a_month_counter_outlives_the_day_it_was_counted_on);
	tcase_add_test(tc, test_two_replicas_counting_at_once_lose_nothing);
	tcase_add_test(tc, test_bad_usage_inputs_are_refused_before_redis);
	tcase_add_test(tc,
		       test_take_and_count_counts_only_what_it_lets_through);
	tcase_add_test(
		tc, test_a_lease_reserves_tokens_and_never_exceeds_the_bucket);
	tcase_add_test(
		tc,
		test_two_replicas_leasing_share_the_bucket_and_count_on_stop);
	tcase_add_test(tc, test_concurrent_leased_takes_get_exactly_the_burst);
	tcase_add_test(tc,
		       test_a_refill_ahead_that_finds_the_bucket_empty_stops);
	tcase_add_test(tc, test_a_silent_redis_times_the_async_take_out);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
