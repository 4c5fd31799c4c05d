/* ratelimit.c - token buckets and usage counters in Redis: see
   common/ratelimit.h. */
#include "common/ratelimit.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/mem.h"
#include "common/redis.h"
#include "common/banned.h"

#define RL_PREFIX "bz:rl:"
#define USAGE_PREFIX "bz:usage:"

/* KEYS[1] the bucket; ARGV per_minute, burst, cost. Returns {allowed,
   whole tokens left, ms until cost tokens}. A refusal writes nothing:
   the next call computes the same refill from the same stored state. */
#define LUA_RATE                                                               \
	"local rate = tonumber(ARGV[1])\n"                                     \
	"local burst = tonumber(ARGV[2])\n"                                    \
	"local cost = tonumber(ARGV[3])\n"                                     \
	"local t = redis.call('TIME')\n"                                       \
	"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"              \
	"local st = redis.call('HMGET', KEYS[1], 't', 'ts')\n"                 \
	"local tokens, ts = tonumber(st[1]), tonumber(st[2])\n"                \
	"if not tokens or not ts then\n"                                       \
	"  tokens = burst\n"                                                   \
	"elseif now > ts then\n"                                               \
	"  tokens = tokens + (now - ts) * rate / 60000000\n"                   \
	"end\n"                                                                \
	"if tokens > burst then tokens = burst end\n"                          \
	"if tokens < cost then\n"                                              \
	"  return {0, math.floor(tokens),\n"                                   \
	"          math.ceil((cost - tokens) * 60000 / rate)}\n"               \
	"end\n"                                                                \
	"if cost > 0 then\n"                                                   \
	"  tokens = tokens - cost\n"                                           \
	"  redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens),\n" \
	"             'ts', string.format('%d', now))\n"                       \
	"  redis.call('PEXPIRE', KEYS[1],\n"                                   \
	"             math.ceil((burst - tokens) * 60000 / rate) + 1000)\n"    \
	"end\n"

static const char rate_lua[] = LUA_RATE "return {1, math.floor(tokens), 0}\n";

/* The day and month hash names (UTC, the server's clock) from the prefix
   key k: locals `day` and `month`. */
#define LUA_USAGE_KEYS(k)                                                  \
	"local t = redis.call('TIME')\n"                                   \
	"local z = math.floor(tonumber(t[1]) / 86400) + 719468\n"          \
	"local era = math.floor(z / 146097)\n"                             \
	"local doe = z - era * 146097\n"                                   \
	"local yoe = math.floor((doe - math.floor(doe / 1460) +\n"         \
	"  math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)\n"   \
	"local doy = doe - (365 * yoe + math.floor(yoe / 4) -\n"           \
	"  math.floor(yoe / 100))\n"                                       \
	"local mp = math.floor((5 * doy + 2) / 153)\n"                     \
	"local d = doy - math.floor((153 * mp + 2) / 5) + 1\n"             \
	"local m = mp < 10 and mp + 3 or mp - 9\n"                         \
	"local y = yoe + era * 400 + (m <= 2 and 1 or 0)\n"                \
	"local month = " k " .. ':' .. string.format('%04d-%02d', y, m)\n" \
	"local day = month .. string.format('-%02d', d)\n"

/* After LUA_USAGE_KEYS: ARGV[4] counter, ARGV[5] n. */
#define LUA_COUNT                                                    \
	"redis.call('HINCRBY', day, ARGV[4], tonumber(ARGV[5]))\n"   \
	"redis.call('HINCRBY', month, ARGV[4], tonumber(ARGV[5]))\n" \
	"redis.call('EXPIRE', day, 40 * 86400)\n"                    \
	"redis.call('EXPIRE', month, 400 * 86400)\n"

/* KEYS[1] bucket, KEYS[2] "bz:usage:<tenant>"; ARGV per_minute, burst,
   cost, counter, n: the take, and only when allowed the count. */
static const char take_count_lua[] = LUA_RATE LUA_USAGE_KEYS("KEYS[2]")
	LUA_COUNT "return {1, math.floor(tokens), 0}\n";

/* KEYS[1] "bz:usage:<tenant>"; ARGV[1] "incr" counter n | "get" period
   counter | "all" period. The day and month are the server's (UTC). */
static const char usage_lua[] = LUA_USAGE_KEYS(
	"KEYS[1]") "local op = ARGV[1]\n"
		   "if op == 'incr' then\n"
		   "  local n = tonumber(ARGV[3])\n"
		   "  local a = redis.call('HINCRBY', day, ARGV[2], n)\n"
		   "  local b = redis.call('HINCRBY', month, ARGV[2], n)\n"
		   "  redis.call('EXPIRE', day, 40 * 86400)\n"
		   "  redis.call('EXPIRE', month, 400 * 86400)\n"
		   "  return {a, b}\n"
		   "end\n"
		   "local key = ARGV[2] == 'day' and day or month\n"
		   "if op == 'get' then return redis.call('HGET', key, "
		   "ARGV[3]) end\n"
		   "return redis.call('HGETALL', key)\n";

struct script {
	const char *lua;
	char sha[41]; /* "" when it could not be computed: always EVAL */
};

static struct script rate_script = { rate_lua, "" };
static struct script usage_script = { usage_lua, "" };
static struct script take_count_script = { take_count_lua, "" };
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;

static void
script_sha(struct script *s)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;

	if (!EVP_Digest(s->lua, strlen(s->lua), md, &n, EVP_sha1(), NULL) ||
	    n != 20)
		return;
	for (i = 0; i < n; i++)
		snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
}

static void
sha_init(void)
{
	script_sha(&rate_script);
	script_sha(&usage_script);
	script_sha(&take_count_script);
}

/* EVALSHA s with nkeys keys (1 or 2) then nargs arguments (at most 5);
   EVAL when the server does not know the script. NULL with errbuf on
   failure. */
static redisReply *
script_run_keys(struct script *s, int nkeys, const char *const *keys, int nargs,
		const char *const *args, char errbuf[CM_ERRBUF_LEN])
{
	const char *argv[10] = { "EVALSHA", s->sha, nkeys == 2 ? "2" : "1" };
	redisReply *r;
	int i, n = 3;

	for (i = 0; i < nkeys && i < 2; i++)
		argv[n++] = keys[i];
	for (i = 0; i < nargs && i < 5; i++)
		argv[n++] = args[i];
	pthread_once(&sha_once, sha_init);
	if (s->sha[0]) {
		r = cm_redis_cmd(n, argv, NULL, errbuf);
		if (r || !strstr(errbuf, "NOSCRIPT"))
			return r;
	}
	argv[0] = "EVAL";
	argv[1] = s->lua;
	return cm_redis_cmd(n, argv, NULL, errbuf);
}

/* EVALSHA s with one key and nargs arguments (at most 4). */
static redisReply *
script_run(struct script *s, const char *key, int nargs,
	   const char *const *args, char errbuf[CM_ERRBUF_LEN])
{
	return script_run_keys(s, 1, &key, nargs < 4 ? nargs : 4, args, errbuf);
}

static bool
key_valid(const char *key)
{
	size_t i;

	if (!key || !key[0])
		return false;
	for (i = 0; key[i]; i++)
		if (i >= CM_RATE_KEY_MAX || key[i] <= ' ' || key[i] > '~')
			return false;
	return true;
}

static bool
int_reply(const redisReply *r, long long *out)
{
	if (!r || r->type != REDIS_REPLY_INTEGER)
		return false;
	*out = r->integer;
	return true;
}

/* The {allowed, left, wait} answer of a take into out; 0 or CM_EIO. */
static int
parse_take(const redisReply *r, long burst, struct cm_rate_result *out,
	   char errbuf[CM_ERRBUF_LEN])
{
	long long allowed, left, wait;

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    !int_reply(r->element[0], &allowed) ||
	    !int_reply(r->element[1], &left) ||
	    !int_reply(r->element[2], &wait)) {
		cm_errf(errbuf, "ratelimit: unexpected reply");
		return CM_EIO;
	}
	out->allowed = allowed == 1;
	out->remaining = (long)left;
	out->retry_after_ms = (long)wait;
	out->limit = burst;
	return 0;
}

/* parse_take, then free r. */
static int
take_reply(redisReply *r, long burst, struct cm_rate_result *out,
	   char errbuf[CM_ERRBUF_LEN])
{
	int rc = parse_take(r, burst, out, errbuf);

	freeReplyObject(r);
	return rc;
}

static bool
take_args_ok(const char *key, long per_minute, long burst, long cost)
{
	return key_valid(key) && per_minute >= 1 && per_minute <= CM_RATE_MAX &&
	       burst >= 1 && burst <= CM_RATE_MAX && cost >= 0 && cost <= burst;
}

int
cm_rate_take(const char *key, long per_minute, long burst, long cost,
	     struct cm_rate_result *out, char errbuf[CM_ERRBUF_LEN])
{
	char full[sizeof(RL_PREFIX) + CM_RATE_KEY_MAX], a[3][24];
	const char *args[3] = { a[0], a[1], a[2] };
	redisReply *r;

	memset(out, 0, sizeof(*out));
	if (!take_args_ok(key, per_minute, burst, cost)) {
		cm_errf(errbuf, "ratelimit: bad key, rate, burst or cost");
		return CM_EINVAL;
	}
	snprintf(full, sizeof(full), RL_PREFIX "%s", key);
	snprintf(a[0], sizeof(a[0]), "%ld", per_minute);
	snprintf(a[1], sizeof(a[1]), "%ld", burst);
	snprintf(a[2], sizeof(a[2]), "%ld", cost);
	if (!(r = script_run(&rate_script, full, 3, args, errbuf)))
		return CM_EIO;
	return take_reply(r, burst, out, errbuf);
}

bool
cm_usage_counter_valid(const char *counter)
{
	size_t i;

	if (!counter || !counter[0])
		return false;
	for (i = 0; counter[i]; i++)
		if (i >= CM_USAGE_COUNTER_MAX ||
		    !((counter[i] >= 'a' && counter[i] <= 'z') ||
		      (counter[i] >= '0' && counter[i] <= '9') ||
		      counter[i] == '_' || counter[i] == '.' ||
		      counter[i] == '-'))
			return false;
	return true;
}

/* "bz:usage:<tenant>" into out, or CM_EINVAL. */
static int
usage_prefix(const char *tenant_id, char out[64], char errbuf[CM_ERRBUF_LEN])
{
	if (!tenant_id || !cm_is_uuid(tenant_id)) {
		cm_errf(errbuf, "usage: bad tenant id");
		return CM_EINVAL;
	}
	snprintf(out, 64, USAGE_PREFIX "%s", tenant_id);
	return 0;
}

static bool
period_valid(const char *period)
{
	return period && (!strcmp(period, "day") || !strcmp(period, "month"));
}

int
cm_rate_take_count(const char *key, long per_minute, long burst, long cost,
		   const char *tenant_id, const char *counter, long n,
		   struct cm_rate_result *out, char errbuf[CM_ERRBUF_LEN])
{
	char full[sizeof(RL_PREFIX) + CM_RATE_KEY_MAX], usage[64], a[4][24];
	const char *keys[2] = { full, usage };
	const char *args[5] = { a[0], a[1], a[2], counter, a[3] };
	redisReply *r;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!take_args_ok(key, per_minute, burst, cost) ||
	    !cm_usage_counter_valid(counter) || n < 1 ||
	    n > CM_USAGE_INCR_MAX) {
		cm_errf(errbuf, "ratelimit: bad key, rate, burst, cost, "
				"counter or increment");
		return CM_EINVAL;
	}
	if ((rc = usage_prefix(tenant_id, usage, errbuf)) < 0)
		return rc;
	snprintf(full, sizeof(full), RL_PREFIX "%s", key);
	snprintf(a[0], sizeof(a[0]), "%ld", per_minute);
	snprintf(a[1], sizeof(a[1]), "%ld", burst);
	snprintf(a[2], sizeof(a[2]), "%ld", cost);
	snprintf(a[3], sizeof(a[3]), "%ld", n);
	if (!(r = script_run_keys(&take_count_script, 2, keys, 5, args,
				  errbuf)))
		return CM_EIO;
	return take_reply(r, burst, out, errbuf);
}

/* One async take-count: the arguments kept for an EVAL after NOSCRIPT. */
struct take_async {
	cm_rate_fn fn;
	void *arg;
	long burst;
	bool evaled; /* the EVAL fallback was sent */
	char full[sizeof(RL_PREFIX) + CM_RATE_KEY_MAX];
	char usage[64];
	char counter[CM_USAGE_COUNTER_MAX + 1];
	char a[4][24];
};

static int take_async_send(struct take_async *t, char errbuf[CM_ERRBUF_LEN]);

static void
take_async_done(redisReply *r, const char *err, void *arg)
{
	struct take_async *t = arg;
	char errbuf[CM_ERRBUF_LEN] = "";
	struct cm_rate_result out = { 0 };
	int rc = CM_EIO;

	if (r && r->type == REDIS_REPLY_ERROR && !t->evaled &&
	    !strncmp(r->str, "NOSCRIPT", 8)) {
		t->evaled = true;
		if (take_async_send(t, errbuf) == 0)
			return; /* answered by the EVAL */
		err = errbuf;
	} else if (r && r->type == REDIS_REPLY_ERROR) {
		cm_errf(errbuf, "ratelimit: %.200s", r->str);
		err = errbuf;
	} else if (r) {
		rc = parse_take(r, t->burst, &out, errbuf);
		err = rc < 0 ? errbuf : NULL;
	}
	t->fn(rc, rc == 0 ? &out : NULL, err, t->arg);
	free(t);
}

static int
take_async_send(struct take_async *t, char errbuf[CM_ERRBUF_LEN])
{
	const char *argv[10] = { "EVALSHA",  take_count_script.sha,
				 "2",	     t->full,
				 t->usage,   t->a[0],
				 t->a[1],    t->a[2],
				 t->counter, t->a[3] };

	pthread_once(&sha_once, sha_init);
	if (t->evaled || !take_count_script.sha[0]) {
		t->evaled = true;
		argv[0] = "EVAL";
		argv[1] = take_count_script.lua;
	}
	return cm_redis_async_argv(10, argv, 0, take_async_done, t, errbuf);
}

int
cm_rate_take_count_async(const char *key, long per_minute, long burst,
			 long cost, const char *tenant_id, const char *counter,
			 long n, cm_rate_fn fn, void *arg,
			 char errbuf[CM_ERRBUF_LEN])
{
	struct take_async *t;
	int rc;

	if (!fn || !take_args_ok(key, per_minute, burst, cost) ||
	    !cm_usage_counter_valid(counter) || n < 1 ||
	    n > CM_USAGE_INCR_MAX) {
		cm_errf(errbuf, "ratelimit: bad key, rate, burst, cost, "
				"counter or increment");
		return CM_EINVAL;
	}
	t = cm_xcalloc(1, sizeof(*t));
	if ((rc = usage_prefix(tenant_id, t->usage, errbuf)) < 0) {
		free(t);
		return rc;
	}
	t->fn = fn;
	t->arg = arg;
	t->burst = burst;
	snprintf(t->full, sizeof(t->full), RL_PREFIX "%s", key);
	cm_strlcpy(t->counter, counter, sizeof(t->counter));
	snprintf(t->a[0], sizeof(t->a[0]), "%ld", per_minute);
	snprintf(t->a[1], sizeof(t->a[1]), "%ld", burst);
	snprintf(t->a[2], sizeof(t->a[2]), "%ld", cost);
	snprintf(t->a[3], sizeof(t->a[3]), "%ld", n);
	if ((rc = take_async_send(t, errbuf)) < 0)
		free(t);
	return rc;
}

int
cm_usage_incr(const char *tenant_id, const char *counter, long n,
	      char errbuf[CM_ERRBUF_LEN])
{
	char key[64], ns[24];
	const char *args[3] = { "incr", counter, ns };
	redisReply *r;
	int rc;

	if ((rc = usage_prefix(tenant_id, key, errbuf)) < 0)
		return rc;
	if (!cm_usage_counter_valid(counter) || n < 1 ||
	    n > CM_USAGE_INCR_MAX) {
		cm_errf(errbuf, "usage: bad counter or increment");
		return CM_EINVAL;
	}
	snprintf(ns, sizeof(ns), "%ld", n);
	if (!(r = script_run(&usage_script, key, 3, args, errbuf)))
		return CM_EIO;
	rc = r->type == REDIS_REPLY_ARRAY && r->elements == 2 ? 0 : CM_EIO;
	if (rc < 0)
		cm_errf(errbuf, "usage: unexpected reply");
	freeReplyObject(r);
	return rc;
}

/* A counter's value from a bulk reply (nil: 0); false if malformed. */
static bool
value_of(const redisReply *r, long long *out)
{
	int64_t v = 0;

	if (r->type == REDIS_REPLY_NIL) {
		*out = 0;
		return true;
	}
	if (r->type != REDIS_REPLY_STRING ||
	    cm_parse_i64(r->str, INT64_MIN, INT64_MAX, &v) < 0)
		return false;
	*out = (long long)v;
	return true;
}

int
cm_usage_get(const char *tenant_id, const char *counter, const char *period,
	     long long *out, char errbuf[CM_ERRBUF_LEN])
{
	const char *args[3] = { "get", period, counter };
	redisReply *r;
	char key[64];
	int rc;

	*out = 0;
	if ((rc = usage_prefix(tenant_id, key, errbuf)) < 0)
		return rc;
	if (!cm_usage_counter_valid(counter) || !period_valid(period)) {
		cm_errf(errbuf, "usage: bad counter or period");
		return CM_EINVAL;
	}
	if (!(r = script_run(&usage_script, key, 3, args, errbuf)))
		return CM_EIO;
	rc = value_of(r, out) ? 0 : CM_EIO;
	if (rc < 0)
		cm_errf(errbuf, "usage: unexpected reply");
	freeReplyObject(r);
	return rc;
}

int
cm_usage_each(const char *tenant_id, const char *period, cm_usage_fn fn,
	      void *arg, char errbuf[CM_ERRBUF_LEN])
{
	const char *args[2] = { "all", period };
	long long v;
	redisReply *r;
	char key[64];
	size_t i;
	int rc;

	if ((rc = usage_prefix(tenant_id, key, errbuf)) < 0)
		return rc;
	if (!period_valid(period) || !fn) {
		cm_errf(errbuf, "usage: bad period");
		return CM_EINVAL;
	}
	if (!(r = script_run(&usage_script, key, 2, args, errbuf)))
		return CM_EIO;
	if (r->type != REDIS_REPLY_ARRAY) {
		cm_errf(errbuf, "usage: unexpected reply");
		freeReplyObject(r);
		return CM_EIO;
	}
	for (i = 0; i + 1 < r->elements; i += 2)
		if (r->element[i]->type == REDIS_REPLY_STRING &&
		    cm_usage_counter_valid(r->element[i]->str) &&
		    value_of(r->element[i + 1], &v))
			fn(r->element[i]->str, v, arg);
	freeReplyObject(r);
	return 0;
}
