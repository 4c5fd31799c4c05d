/* ratelimit.c - token buckets and usage counters in Redis: see
   common/ratelimit.h. */
#include "common/ratelimit.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/redis.h"
#include "http_internal.h"

#include <event2/event.h>

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

/* KEYS[1] bucket, KEYS[2] "bz:usage:<tenant>"; ARGV per_minute, burst,
   want, counter, done, self: take min(whole tokens, want) tokens when at
   least one is there, and count done (calls already served from an
   earlier lease) plus, when self is 1, this call when it is let through
   (self 0: a refill ahead of need, no call of its own). Returns
   {allowed, whole tokens left, ms until one token, tokens taken}. */
static const char lease_lua[] =
	"local rate = tonumber(ARGV[1])\n"
	"local burst = tonumber(ARGV[2])\n"
	"local want = tonumber(ARGV[3])\n"
	"local done = tonumber(ARGV[5])\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
	"local st = redis.call('HMGET', KEYS[1], 't', 'ts')\n"
	"local tokens, ts = tonumber(st[1]), tonumber(st[2])\n"
	"if not tokens or not ts then\n"
	"  tokens = burst\n"
	"elseif now > ts then\n"
	"  tokens = tokens + (now - ts) * rate / 60000000\n"
	"end\n"
	"if tokens > burst then tokens = burst end\n"
	"local got = 0\n"
	"if tokens >= 1 then\n"
	"  got = math.min(math.floor(tokens), want)\n"
	"  tokens = tokens - got\n"
	"  redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens),\n"
	"             'ts', string.format('%d', now))\n"
	"  redis.call('PEXPIRE', KEYS[1],\n"
	"             math.ceil((burst - tokens) * 60000 / rate) + 1000)\n"
	"end\n"
	"local n = done + (got > 0 and tonumber(ARGV[6]) or 0)\n"
	"if n > 0 then\n" LUA_USAGE_KEYS(
		"KEYS[2]") "  redis.call('HINCRBY', day, ARGV[4], n)\n"
			   "  redis.call('HINCRBY', month, ARGV[4], n)\n"
			   "  redis.call('EXPIRE', day, 40 * 86400)\n"
			   "  redis.call('EXPIRE', month, 400 * 86400)\n"
			   "end\n"
			   "if got == 0 then\n"
			   "  return {0, math.floor(tokens),\n"
			   "          math.ceil((1 - tokens) * 60000 / rate), "
			   "0}\n"
			   "end\n"
			   "return {1, math.floor(tokens), 0, got}\n";

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
static struct script lease_script = { lease_lua, "" };
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;

static void
script_sha(struct script *s)
{
	cm_redis_script_sha(s->lua, s->sha);
}

static void
sha_init(void)
{
	script_sha(&rate_script);
	script_sha(&usage_script);
	script_sha(&take_count_script);
	script_sha(&lease_script);
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

/* ---- leases (cm_rate_lease_take_async) ---- */

#define LEASE_SLOTS 64
#define LEASE_MS 1000

/* Tokens this worker thread took from a bucket ahead of use. */
struct lease {
	char full[sizeof(RL_PREFIX) + CM_RATE_KEY_MAX]; /* "" when free */
	char usage[64];
	char counter[CM_USAGE_COUNTER_MAX + 1];
	long tokens;	  /* reserved, not used yet */
	long used;	  /* served from the reserve, not counted yet */
	long remaining;	  /* the bucket's whole tokens at the last take */
	int64_t until_ms; /* the reserve is dropped after */
	struct lease_call *call; /* the refill in flight, or NULL */
	bool dry; /* a refill ahead found no tokens or failed: no more
		     ahead until a take's own refill brings some */
};

static __thread struct lease leases[LEASE_SLOTS];
static __thread struct event *lease_timer;
static __thread bool lease_exit_hooked;

static struct lease *
lease_slot(const char *full)
{
	return &leases[cm_hash_str(full) % LEASE_SLOTS];
}

static void
lease_flushed(redisReply *r, const char *err, void *arg)
{
	long n = (long)(intptr_t)arg;

	if (!r || r->type == REDIS_REPLY_ERROR)
		cm_log_warn("usage: %ld calls not counted: %s", n,
			    r && r->str ? r->str
			    : err	? err
					: "?");
}

/* Count l->used now (asynchronously when possible) and clear it. */
static void
lease_flush(struct lease *l, bool blocking)
{
	char n[24], errbuf[CM_ERRBUF_LEN] = "";
	const char *argv[7] = { "EVAL", usage_lua,  "1", l->usage,
				"incr", l->counter, n };
	long used = l->used;
	int rc;

	if (used <= 0)
		return;
	l->used = 0;
	snprintf(n, sizeof(n), "%ld", used);
	rc = blocking ? cm_usage_incr(l->usage + strlen(USAGE_PREFIX),
				      l->counter, used, errbuf)
		      : cm_redis_async_argv(7, argv, 0, lease_flushed,
					    (void *)(intptr_t)used, errbuf);
	if (rc < 0)
		cm_log_warn("usage: %ld calls not counted: %s", used, errbuf);
}

/* Every second while calls are served from reserves: count them. */
static void
lease_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	int i;

	(void)fd;
	(void)what;
	(void)arg;
	for (i = 0; i < LEASE_SLOTS; i++)
		lease_flush(&leases[i], false);
}

static void
lease_exit(void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < LEASE_SLOTS; i++) {
		lease_flush(&leases[i], true);
		leases[i].full[0] = '\0';
	}
	if (lease_timer)
		event_free(lease_timer);
	lease_timer = NULL;
	lease_exit_hooked = false;
}

static void
lease_timer_arm(void)
{
	struct timeval tv = { LEASE_MS / 1000, (LEASE_MS % 1000) * 1000 };

	if (!lease_timer) {
		struct event_base *base = cm_http_worker_base_();

		if (!base)
			return;
		if (!lease_exit_hooked)
			lease_exit_hooked =
				cm_http_worker_at_exit_(lease_exit, NULL) == 0;
		if (!lease_exit_hooked ||
		    !(lease_timer = evtimer_new(base, lease_timer_cb, NULL)))
			return;
	}
	if (!evtimer_pending(lease_timer, NULL))
		evtimer_add(lease_timer, &tv);
}

/* A take waiting for the refill in flight. */
struct lease_waiter {
	cm_rate_fn fn;
	void *arg;
	struct lease_waiter *next;
};

/* One refill in flight, and the takes that arrived meanwhile. fn is
   the take that sent it, or NULL for a refill ahead of need. */
struct lease_call {
	cm_rate_fn fn;
	void *arg;
	long per_minute, burst, batch;
	long done; /* counted by this call */
	struct lease_waiter *waiters, **tail;
	char key[CM_RATE_KEY_MAX + 1];
	char tenant[40];
	char full[sizeof(RL_PREFIX) + CM_RATE_KEY_MAX];
	char usage[64];
	char counter[CM_USAGE_COUNTER_MAX + 1];
	char a[5][24]; /* per_minute, burst, want, done, self */
};

static bool
lease_is(const struct lease *l, const char *full, const char *usage,
	 const char *counter)
{
	return !strcmp(l->full, full) && !strcmp(l->usage, usage) &&
	       !strcmp(l->counter, counter);
}

/* The waiters of a finished refill: served from the reserve while it
   lasts, refused alike when the bucket was found empty, else queued
   behind a new refill. */
static void
lease_waiters(struct lease_call *c, struct lease *l, bool ours,
	      const struct cm_rate_result *res)
{
	char errbuf[CM_ERRBUF_LEN];
	struct lease_waiter *w;
	struct cm_rate_result out;

	while ((w = c->waiters)) {
		c->waiters = w->next;
		out = *res;
		if (ours && l->tokens > 0) {
			l->tokens--;
			l->used++;
			lease_timer_arm();
			out.allowed = true;
			out.retry_after_ms = 0;
			out.remaining = l->remaining + l->tokens;
			w->fn(0, &out, NULL, w->arg);
		} else if (!res->allowed) {
			w->fn(0, &out, NULL, w->arg);
		} else if (cm_rate_lease_take_async(
				   c->key, c->per_minute, c->burst, c->batch,
				   c->tenant, c->counter, w->fn, w->arg,
				   errbuf) < 0) {
			w->fn(CM_EIO, NULL, errbuf, w->arg);
		}
		free(w);
	}
}

static void
lease_done(redisReply *r, const char *err, void *arg)
{
	struct lease_call *c = arg;
	char errbuf[CM_ERRBUF_LEN] = "";
	struct cm_rate_result out = { 0 };
	struct lease *l = lease_slot(c->full);
	bool ours = lease_is(l, c->full, c->usage, c->counter);
	long long allowed, left, wait, got, keep;
	struct lease_waiter *w;
	int rc = CM_EIO;

	if (ours && l->call == c)
		l->call = NULL;
	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
	    int_reply(r->element[0], &allowed) &&
	    int_reply(r->element[1], &left) &&
	    int_reply(r->element[2], &wait) && int_reply(r->element[3], &got)) {
		rc = 0;
		keep = got - (c->fn ? 1 : 0); /* the sender's own token */
		if (ours && keep > 0) {
			l->tokens += (long)keep;
			l->until_ms = cm_now_ms() + LEASE_MS;
		}
		if (ours) {
			l->remaining = (long)left;
			l->dry = c->fn ? l->dry && got == 0 : got == 0;
		}
		out.allowed = allowed == 1;
		out.remaining = (long)left + (ours ? l->tokens : 0);
		out.retry_after_ms = (long)wait;
		out.limit = c->burst;
	} else if (r) {
		cm_errf(errbuf, "ratelimit: %.200s",
			r->type == REDIS_REPLY_ERROR ? r->str
						     : "unexpected reply");
		err = errbuf;
	}
	if (rc < 0 && ours) {
		l->used += c->done; /* not counted: try again later */
		l->dry = l->dry || !c->fn;
	}
	if (!c->fn && rc < 0)
		cm_log_warn("ratelimit: refill ahead: %s", err ? err : "?");
	if (c->fn)
		c->fn(rc, rc == 0 ? &out : NULL, err, c->arg);
	if (rc == 0) {
		lease_waiters(c, l, ours, &out);
	} else {
		while ((w = c->waiters)) {
			c->waiters = w->next;
			w->fn(rc, NULL, err, w->arg);
			free(w);
		}
	}
	free(c);
}

static int
lease_send(struct lease_call *c, char errbuf[CM_ERRBUF_LEN])
{
	const char *argv[9] = { "2",	 c->full,    c->usage, c->a[0], c->a[1],
				c->a[2], c->counter, c->a[3],  c->a[4] };

	pthread_once(&sha_once, sha_init);
	return cm_redis_async_eval(lease_script.lua, lease_script.sha, 9, argv,
				   lease_done, c, errbuf);
}

/* Send l's refill of want tokens: for the take fn (which waits for it),
   or ahead of need (fn NULL). The calls served from the reserve so far
   are counted by it. */
static int
lease_start(struct lease *l, const char *key, long per_minute, long burst,
	    long batch, long want, const char *tenant_id, cm_rate_fn fn,
	    void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct lease_call *c = cm_xcalloc(1, sizeof(*c));
	int rc;

	c->fn = fn;
	c->arg = arg;
	c->per_minute = per_minute;
	c->burst = burst;
	c->batch = batch;
	c->done = l->used;
	c->tail = &c->waiters;
	cm_strlcpy(c->key, key, sizeof(c->key));
	cm_strlcpy(c->tenant, tenant_id, sizeof(c->tenant));
	cm_strlcpy(c->full, l->full, sizeof(c->full));
	cm_strlcpy(c->usage, l->usage, sizeof(c->usage));
	cm_strlcpy(c->counter, l->counter, sizeof(c->counter));
	snprintf(c->a[0], sizeof(c->a[0]), "%ld", per_minute);
	snprintf(c->a[1], sizeof(c->a[1]), "%ld", burst);
	snprintf(c->a[2], sizeof(c->a[2]), "%ld", want);
	snprintf(c->a[3], sizeof(c->a[3]), "%ld", c->done);
	cm_strlcpy(c->a[4], fn ? "1" : "0", sizeof(c->a[4]));
	if ((rc = lease_send(c, errbuf)) < 0) {
		free(c);
		return rc;
	}
	l->used = 0; /* counted by the call now in flight */
	l->call = c;
	return 0;
}

int
cm_rate_lease_take_async(const char *key, long per_minute, long burst,
			 long batch, const char *tenant_id, const char *counter,
			 cm_rate_fn fn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	char full[sizeof(RL_PREFIX) + CM_RATE_KEY_MAX], usage[64];
	struct cm_rate_result out = { 0 };
	struct lease_waiter *w;
	struct lease *l;
	int64_t now = cm_now_ms();
	int rc;

	if (!fn || !take_args_ok(key, per_minute, burst, 1) || batch < 1 ||
	    batch > burst || !cm_usage_counter_valid(counter)) {
		cm_errf(errbuf, "ratelimit: bad key, rate, burst, batch or "
				"counter");
		return CM_EINVAL;
	}
	if (!cm_http_worker_base_()) {
		cm_errf(errbuf, "ratelimit: leases need an HTTP worker thread");
		return CM_EINVAL;
	}
	if ((rc = usage_prefix(tenant_id, usage, errbuf)) < 0)
		return rc;
	snprintf(full, sizeof(full), RL_PREFIX "%s", key);
	l = lease_slot(full);
	if (!lease_is(l, full, usage, counter)) {
		lease_flush(l, false); /* another bucket's slot */
		memset(l, 0, sizeof(*l));
		cm_strlcpy(l->full, full, sizeof(l->full));
		cm_strlcpy(l->usage, usage, sizeof(l->usage));
		cm_strlcpy(l->counter, counter, sizeof(l->counter));
	}
	if (now >= l->until_ms)
		l->tokens = 0; /* a stale reserve is dropped, not used */
	if (l->tokens > 0) {
		l->tokens--;
		l->used++;
		lease_timer_arm();
		/* half the reserve left: refill it now, so that the takes
		   after it need not wait for Redis */
		if (batch > 1 && !l->call && !l->dry &&
		    l->tokens * 2 <= batch &&
		    lease_start(l, key, per_minute, burst, batch,
				batch - l->tokens, tenant_id, NULL, NULL,
				errbuf) < 0) {
			cm_log_warn("ratelimit: refill ahead: %s", errbuf);
			l->dry = true;
		}
		out.allowed = true;
		out.remaining = l->remaining + l->tokens;
		out.limit = burst;
		fn(0, &out, NULL, arg);
		return 0;
	}
	if (l->call) { /* a refill is on its way: wait for it */
		w = cm_xcalloc(1, sizeof(*w));
		w->fn = fn;
		w->arg = arg;
		*l->call->tail = w;
		l->call->tail = &w->next;
		return 0;
	}
	return lease_start(l, key, per_minute, burst, batch, batch, tenant_id,
			   fn, arg, errbuf);
}
