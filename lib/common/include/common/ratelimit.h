/*
 * ratelimit.h - rate limits and usage counters kept in Redis, so every
 * replica of a service sees the same numbers.
 *
 * Rate limits are token buckets: a bucket holds at most `burst` tokens,
 * refills at `per_minute` tokens a minute (continuously, to the
 * microsecond), and a request takes `cost` tokens or is refused. Each
 * bucket is one Redis hash "bz:rl:<key>" (fields t = tokens, ts = the
 * last refill in microseconds) updated by one Lua script, so the read,
 * the refill and the take are atomic across every connection and
 * replica. The clock is the Redis server's TIME, never the caller's: two
 * replicas with skewed clocks still share one bucket exactly. A bucket
 * left alone expires once it would be full again (plus a second), so idle
 * keys cost nothing. The script is sent as EVALSHA and, when the server
 * does not know it yet (NOSCRIPT: first use, restart, SCRIPT FLUSH), as
 * EVAL.
 *
 * Usage counters count per tenant, per UTC day and per UTC month (again by
 * the Redis server's clock), in the hashes "bz:usage:<tenant>:<yyyy-mm-dd>"
 * (kept 40 days after their last write) and "bz:usage:<tenant>:<yyyy-mm>"
 * (kept 400 days), one field per counter, both moved by one script. The
 * script names its keys itself (from the tenant prefix in KEYS[1]) because
 * the date is the server's: fine for the single Redis the platform runs,
 * not for Redis Cluster.
 *
 * Inputs are bounded: a bucket key is 1..CM_RATE_KEY_MAX bytes of
 * printable ASCII without spaces; a tenant id is a canonical uuid; a
 * counter name is 1..CM_USAGE_COUNTER_MAX bytes of [a-z0-9_.-]. Anything
 * else is CM_EINVAL before Redis is asked.
 *
 * Threading: every call uses the calling thread's Redis connection
 * (common/redis.h); cm_redis_init() must have run. Errors: CM_EINVAL (bad
 * input) or CM_EIO (Redis failed, timed out or answered garbage; the
 * caller decides to fail open or closed), with errbuf filled.
 */
#ifndef COMMON_RATELIMIT_H
#define COMMON_RATELIMIT_H

#include <stdbool.h>

#include "common/err.h"

#define CM_RATE_KEY_MAX 200
#define CM_RATE_MAX 1000000000L /* per_minute, burst and cost at most */
#define CM_USAGE_COUNTER_MAX 64
#define CM_USAGE_INCR_MAX 1000000000L /* n per call at most */

/* The answer of one take. */
struct cm_rate_result {
	bool allowed;	     /* the tokens were taken */
	long remaining;	     /* whole tokens left after this take */
	long retry_after_ms; /* refused: when `cost` tokens will be there;
				allowed: 0 */
	long limit;	     /* the bucket's size (burst) */
};

/* cm_rate_take - take cost (0..burst; 0 only looks) tokens from the bucket
   key (per_minute and burst 1..CM_RATE_MAX; a bucket starts full). A
   smaller burst than before clamps the stored tokens. 0 with *out filled
   (allowed or not), or CM_EINVAL / CM_EIO. */
int cm_rate_take(const char *key, long per_minute, long burst, long cost,
		 struct cm_rate_result *out, char errbuf[CM_ERRBUF_LEN]);

/* cm_rate_take_count - cm_rate_take and, only when the take is allowed,
   cm_usage_incr(tenant_id, counter, n), atomically in one round trip
   (the gateway's per-request pair). Arguments and results as theirs. */
int cm_rate_take_count(const char *key, long per_minute, long burst, long cost,
		       const char *tenant_id, const char *counter, long n,
		       struct cm_rate_result *out, char errbuf[CM_ERRBUF_LEN]);

/* cm_rate_fn - the answer of an async take: rc 0 with *r, or CM_EIO
   with err (r NULL). */
typedef void (*cm_rate_fn)(int rc, const struct cm_rate_result *r,
			   const char *err, void *arg);
/* cm_rate_lease_take_async - the gateway's per-request take of one token
   and count of one call (as cm_rate_take_count with cost 1, n 1, and
   without blocking: on an HTTP worker thread only),
   with the tokens reserved by this HTTP worker thread up to `batch`
   (1..burst) at a time: a take that finds a reserve of the same bucket
   (taken less than 1 s ago) is answered from it at once - fn runs before
   this returns - and costs no Redis call. Otherwise one asynchronous call
   takes min(whole tokens there, batch) tokens, lets this call through
   when at least one was there, and counts the calls served from the
   previous reserve together with this one; takes of the same bucket that
   arrive meanwhile wait for that call and are served from what it
   brought (refused alike when it found the bucket empty, queued behind
   the next refill when it brought too few). A take that leaves half the
   batch or less in the reserve sends the refill up to batch ahead (no
   caller waits for it; the calls served so far are counted by it), so
   under a steady rate takes do not wait for Redis; one that finds the
   bucket empty or fails stops these until a take's own refill brings
   tokens. So:
   - never more calls are let through than the bucket holds: a reserve
     is part of the bucket, taken out of it; a reserve left unused for
     1 s is dropped, so a tenant at its limit may be refused up to
     batch calls per worker early, never late. batch 1 is exact.
   - calls served from a reserve are counted on the next refill or within
     about 1 s by a timer on the worker, and when the worker stops.
   - remaining (X-RateLimit-Remaining) is the bucket's tokens at the last
     refill plus this worker's reserve.
   0, or CM_EINVAL / CM_EIO and fn is not called. */
int cm_rate_lease_take_async(const char *key, long per_minute, long burst,
			     long batch, const char *tenant_id,
			     const char *counter, cm_rate_fn fn, void *arg,
			     char errbuf[CM_ERRBUF_LEN]);

/* cm_usage_incr - add n (1..CM_USAGE_INCR_MAX) to the tenant's counter
   for today and for this month. 0 or CM_E*. */
int cm_usage_incr(const char *tenant_id, const char *counter, long n,
		  char errbuf[CM_ERRBUF_LEN]);

/* cm_usage_get - the counter's value for the current "day" or "month"
   (0 when never counted). 0 or CM_E*. */
int cm_usage_get(const char *tenant_id, const char *counter, const char *period,
		 long long *out, char errbuf[CM_ERRBUF_LEN]);

/* cm_usage_fn - one counter of a period; its name is valid during the
   call only. */
typedef void (*cm_usage_fn)(const char *counter, long long value, void *arg);

/* cm_usage_each - call fn for every counter the tenant has for the
   current "day" or "month" (in no particular order; fields that are not
   well-formed counters are skipped). 0 or CM_E*. */
int cm_usage_each(const char *tenant_id, const char *period, cm_usage_fn fn,
		  void *arg, char errbuf[CM_ERRBUF_LEN]);

/* cm_usage_counter_valid - 1..CM_USAGE_COUNTER_MAX of [a-z0-9_.-]. */
bool cm_usage_counter_valid(const char *counter);

#endif
