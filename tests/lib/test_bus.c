/* test_bus.c - common/bus.h: envelopes, and publish, subscribe, dead
   letters, crash recovery, inbox, outbox and trimming on the test stack. */
#include "common/bus.h"
#include "common/db.h"
#include "common/mem.h"
#include "common/redis.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "common/banned.h"

#define T_SCHEMA "bz_test_bus"

static void
init_redis(int port)
{
	struct cm_redis_config cfg = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	int64_t p = port;

	cfg.host = cm_test_env("REDIS_HOST");
	if (!port)
		ck_assert_int_eq(
			cm_parse_i64(cm_test_env("REDIS_PORT"), 1, 65535, &p),
			0);
	cfg.port = (int)p;
	cfg.connect_timeout_ms = 1000;
	cfg.command_timeout_ms = 5000;
	ck_assert_msg(cm_redis_init(&cfg, errbuf) == 0, "%s", errbuf);
}

static void
init_db(void)
{
	struct cm_db_config cfg = { cm_test_env("TEST_PG_CONNINFO"), "test_bus",
				    5, 10000 };
	char errbuf[CM_ERRBUF_LEN] = "";

	ck_assert_msg(cm_db_init(&cfg, errbuf) == 0, "%s", errbuf);
}

/* Every test: the stack, fresh connections (tests fork), the tables. */
static void
setup(void)
{
	cm_test_require_stack();
	ck_assert_int_eq(
		cm_test_psql(
			"SET client_min_messages = warning;"
			"CREATE SCHEMA IF NOT EXISTS " T_SCHEMA ";"
			"CREATE TABLE IF NOT EXISTS " T_SCHEMA ".inbox "
			"(event_id uuid PRIMARY KEY, tenant_id uuid NOT NULL,"
			" handled_at timestamptz NOT NULL DEFAULT now());"
			"CREATE TABLE IF NOT EXISTS " T_SCHEMA ".effects "
			"(event_id uuid NOT NULL, tenant_id uuid NOT NULL);"
			"CREATE TABLE IF NOT EXISTS " T_SCHEMA ".outbox "
			"(id bigserial PRIMARY KEY, tenant_id uuid NOT NULL,"
			" event_id uuid NOT NULL UNIQUE, event text NOT NULL,"
			" created_at timestamptz NOT NULL DEFAULT now(),"
			" published_at timestamptz)"),
		0);
}

static void
new_tenant(char t[37])
{
	ck_assert_int_eq(cm_uuid_v4(t), 0);
}

static cJSON *
lead_event(const char *agg)
{
	cJSON *data = cJSON_CreateObject();
	char id[37];

	ck_assert_int_eq(cm_uuid_v4(id), 0);
	cJSON_AddStringToObject(data, "lead_id", id);
	return cm_bus_envelope_new("lead.created", "crm", "lead",
				   agg ? agg : id, data);
}

static long long
redis_int(const char *cmd, const char *a1, const char *a2)
{
	const char *argv[3] = { cmd, a1, a2 };
	char errbuf[CM_ERRBUF_LEN];
	redisReply *r = cm_redis_cmd(a2 ? 3 : 2, argv, NULL, errbuf);
	long long v;

	ck_assert_msg(r != NULL, "%s: %s", cmd, errbuf);
	v = r->type == REDIS_REPLY_INTEGER ? r->integer
	    : r->type == REDIS_REPLY_ARRAY ? (long long)r->elements
					   : -1;
	freeReplyObject(r);
	return v;
}

/* Pending count of group on stream (XPENDING summary). */
static long long
pending(const char *stream, const char *group)
{
	const char *argv[] = { "XPENDING", stream, group };
	char errbuf[CM_ERRBUF_LEN];
	redisReply *r = cm_redis_cmd(3, argv, NULL, errbuf);
	long long v;

	ck_assert_msg(r && r->type == REDIS_REPLY_ARRAY, "%s", errbuf);
	v = r->element[0]->integer;
	freeReplyObject(r);
	return v;
}

static void
drop_keys(const char *tenant)
{
	char key[CM_BUS_KEY_LEN];

	cm_bus_stream_key(tenant, key);
	redis_int("DEL", key, NULL);
	redis_int("SREM", CM_BUS_STREAMS, key);
	cm_bus_dlq_key(tenant, key);
	redis_int("DEL", key, NULL);
}

/* ---- envelope ---- */

static void
assert_refused(const char *field, const char *json, const char *want)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *env = lead_event(NULL);
	char t[37];

	new_tenant(t);
	cJSON_AddStringToObject(env, "tenant_id", t);
	cJSON_DeleteItemFromObjectCaseSensitive(env, field);
	if (json)
		cJSON_AddItemToObject(env, field, cJSON_Parse(json));
	ck_assert_int_eq(cm_bus_validate(env, errbuf), CM_EINVAL);
	ck_assert_msg(strstr(errbuf, want), "%s: got '%s'", field, errbuf);
	cJSON_Delete(env);
}

START_TEST(test_a_built_envelope_is_valid_and_each_broken_field_is_named)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37];
	cJSON *env = lead_event(NULL);

	new_tenant(t);
	cJSON_AddStringToObject(env, "tenant_id", t);
	ck_assert_msg(cm_bus_validate(env, errbuf) == 0, "%s", errbuf);
	cJSON_Delete(env);
	assert_refused("event_id", "\"nope\"", "event_id");
	assert_refused("event_type", "\"Lead\"", "event_type");
	assert_refused("event_type", "\"lead.\"", "event_type");
	assert_refused("event_version", "0", "event_version");
	assert_refused("tenant_id", NULL, "tenant_id");
	assert_refused("source_service", "\"CRM!\"", "source_service");
	assert_refused("occurred_at", "\"yesterday\"", "occurred_at");
	assert_refused("occurred_at", "\"2026-01-02 03:04:05Z\"",
		       "occurred_at");
	assert_refused("aggregate_type", "\"\"", "aggregate_type");
	assert_refused("aggregate_id", "\"\"", "aggregate_id");
	assert_refused("priority", "\"urgent\"", "priority");
	assert_refused("data", "[]", "data");
	assert_refused("metadata", "7", "metadata");
	assert_refused("correlation_id", "12", "correlation_id");
	assert_refused("extra", "1", "'extra' is not allowed");
}
END_TEST

/* Every envelope field is known (the optional ones too); a near miss, a
   capitalised or empty name is not; a key given twice is refused, so no
   consumer can read a second tenant_id where the bus checked the first. */
START_TEST(test_envelope_field_names_are_exact_and_given_once)
{
	static const char *const unknown[] = { "Data",	    "",	      "event",
					       "event_ids", "tenant", "zzz",
					       "_id" };
	char errbuf[CM_ERRBUF_LEN] = "", t[37], other[37];
	cJSON *env;
	size_t i;

	new_tenant(t);
	new_tenant(other);
	env = lead_event(NULL);
	cJSON_AddStringToObject(env, "tenant_id", t);
	cJSON_AddStringToObject(env, "correlation_id", "c-1");
	cJSON_AddStringToObject(env, "causation_id", "c-0");
	ck_assert_int_eq(cJSON_GetArraySize(env), 13);
	ck_assert_msg(cm_bus_validate(env, errbuf) == 0, "%s", errbuf);
	for (i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		cJSON_AddNumberToObject(env, unknown[i], 1);
		ck_assert_int_eq(cm_bus_validate(env, errbuf), CM_EINVAL);
		ck_assert_msg(strstr(errbuf, "is not allowed"), "%s: %s",
			      unknown[i], errbuf);
		cJSON_DeleteItemFromObjectCaseSensitive(env, unknown[i]);
	}
	ck_assert_int_eq(cm_bus_validate(env, errbuf), 0);
	cJSON_AddStringToObject(env, "tenant_id", other); /* a second one */
	ck_assert_int_eq(cm_bus_validate(env, errbuf), CM_EINVAL);
	ck_assert_str_eq(errbuf, "field 'tenant_id' appears more than once");
	ck_assert_int_eq(cm_bus_publish(t, env, NULL, errbuf), CM_EINVAL);
	cJSON_Delete(env);
}
END_TEST

START_TEST(test_an_envelope_over_the_size_limit_is_too_big)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37];
	cJSON *env = lead_event(NULL);
	char *big = cm_xmalloc(CM_BUS_MAX_EVENT + 1);

	memset(big, 'x', CM_BUS_MAX_EVENT);
	big[CM_BUS_MAX_EVENT] = '\0';
	new_tenant(t);
	cJSON_AddStringToObject(env, "tenant_id", t);
	cJSON_AddStringToObject(
		cJSON_GetObjectItemCaseSensitive(env, "metadata"), "pad", big);
	ck_assert_int_eq(cm_bus_validate(env, errbuf), CM_E2BIG);
	ck_assert_int_eq(cm_bus_validate(NULL, errbuf), CM_EINVAL);
	free(big);
	cJSON_Delete(env);
}
END_TEST

START_TEST(test_type_patterns_match_a_domain_or_an_exact_type)
{
	ck_assert(cm_bus_type_match("*", "lead.created"));
	ck_assert(cm_bus_type_match("lead.*", "lead.created"));
	ck_assert(!cm_bus_type_match("lead.*", "leads.created"));
	ck_assert(!cm_bus_type_match("lead.*", "deal.won"));
	ck_assert(cm_bus_type_match("deal.won", "deal.won"));
	ck_assert(!cm_bus_type_match("deal.won", "deal.lost"));
	ck_assert(!cm_bus_type_match(NULL, "deal.won"));
	ck_assert(cm_bus_valid_type("agent.run_started"));
	ck_assert(!cm_bus_valid_type("agent"));
	ck_assert(!cm_bus_valid_type(".x"));
	ck_assert(!cm_bus_valid_type("Agent.x"));
}
END_TEST

/* ---- publish ---- */

START_TEST(test_publish_writes_the_callers_tenant_into_its_stream)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], key[CM_BUS_KEY_LEN];
	char id[64] = "";
	cJSON *env = lead_event(NULL);

	init_redis(0);
	new_tenant(t);
	cm_bus_stream_key(t, key);
	ck_assert_msg(cm_bus_publish(t, env, id, errbuf) == 0, "%s", errbuf);
	ck_assert(id[0] != '\0');
	ck_assert_int_eq(redis_int("XLEN", key, NULL), 1);
	ck_assert_int_eq(redis_int("SISMEMBER", CM_BUS_STREAMS, key), 1);
	ck_assert_str_eq(cJSON_GetObjectItem(env, "tenant_id")->valuestring, t);
	cJSON_Delete(env);
	drop_keys(t);
}
END_TEST

/* A stream this thread registered gets plain XADDs for 5 s; if the set of
   streams lost it meanwhile, the next publish after that registers it
   again (and its entries were never lost). */
START_TEST(test_a_known_stream_is_registered_again_within_seconds)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], key[CM_BUS_KEY_LEN];
	cJSON *env;
	int i;

	init_redis(0);
	new_tenant(t);
	cm_bus_stream_key(t, key);
	for (i = 0; i < 3; i++) {
		if (i == 2)
			usleep(5200 * 1000);
		env = lead_event(NULL);
		ck_assert_msg(cm_bus_publish(t, env, NULL, errbuf) == 0, "%s",
			      errbuf);
		cJSON_Delete(env);
		ck_assert_int_eq(redis_int("XLEN", key, NULL), i + 1);
		ck_assert_int_eq(redis_int("SISMEMBER", CM_BUS_STREAMS, key),
				 i == 1 ? 0 : 1);
		if (i == 0) /* the set loses it */
			redis_int("SREM", CM_BUS_STREAMS, key);
	}
	drop_keys(t);
}
END_TEST

START_TEST(test_publish_refuses_another_tenant_a_bad_tenant_and_bad_shape)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], other[37], key[CM_BUS_KEY_LEN];
	cJSON *env = lead_event(NULL);

	init_redis(0);
	new_tenant(t);
	new_tenant(other);
	cJSON_AddStringToObject(env, "tenant_id", other);
	ck_assert_int_eq(cm_bus_publish(t, env, NULL, errbuf), CM_EPERM);
	ck_assert_ptr_nonnull(strstr(errbuf, "another tenant"));
	ck_assert_int_eq(cm_bus_publish("not-a-uuid", env, NULL, errbuf),
			 CM_EINVAL);
	cJSON_DeleteItemFromObject(env, "tenant_id");
	cJSON_ReplaceItemInObject(env, "priority", cJSON_CreateString("x"));
	ck_assert_int_eq(cm_bus_publish(t, env, NULL, errbuf), CM_EINVAL);
	cm_bus_stream_key(t, key);
	ck_assert_int_eq(redis_int("XLEN", key, NULL), 0);
	cJSON_Delete(env);
}
END_TEST

START_TEST(test_publish_fails_when_redis_is_unreachable)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37];
	cJSON *env = lead_event(NULL);

	init_redis(cm_test_free_port());
	new_tenant(t);
	ck_assert_int_eq(cm_bus_publish(t, env, NULL, errbuf), CM_EIO);
	ck_assert(errbuf[0] != '\0');
	cJSON_Delete(env);
}
END_TEST

/* ---- subscribe ---- */

struct seen {
	char aggs[16][64];
	int n;
	int calls;
	int fail; /* always fail */
};

static int
record_handler(const struct cm_bus_event *ev, void *arg,
	       char errbuf[CM_ERRBUF_LEN])
{
	struct seen *s = arg;
	const cJSON *a = cJSON_GetObjectItem(ev->env, "aggregate_id");

	s->calls++;
	if (s->fail) {
		cm_errf(errbuf, "crm unavailable (attempt %d)", ev->attempt);
		return CM_EIO;
	}
	if (s->n < 16)
		cm_strlcpy(s->aggs[s->n++], a->valuestring, 64);
	return 0;
}

static struct cm_bus_sub *
sub_for(const char *tenant, const char *group, const char *consumer,
	const char *const *patterns, cm_bus_handler_fn fn, void *arg)
{
	struct cm_bus_sub_config cfg = { 0 };
	struct cm_bus_sub *s;

	cfg.group = group;
	cfg.consumer = consumer;
	cfg.patterns = patterns;
	cfg.tenant_id = tenant;
	cfg.block_ms = 50;
	cfg.claim_idle_ms = 300;
	cfg.max_attempts = 3;
	cfg.backoff_ms = 1;
	cfg.fn = fn;
	cfg.arg = arg;
	s = cm_bus_sub_new(&cfg);
	ck_assert_ptr_nonnull(s);
	return s;
}

static void
publish_n(const char *t, const char *type, int n)
{
	char errbuf[CM_ERRBUF_LEN] = "", agg[16];
	cJSON *env;
	int i;

	for (i = 0; i < n; i++) {
		snprintf(agg, sizeof(agg), "a%d", i);
		env = lead_event(agg);
		if (type)
			cJSON_ReplaceItemInObject(env, "event_type",
						  cJSON_CreateString(type));
		ck_assert_msg(cm_bus_publish(t, env, NULL, errbuf) == 0, "%s",
			      errbuf);
		cJSON_Delete(env);
	}
}

START_TEST(test_subscriber_handles_events_in_publish_order_and_acks_them)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], key[CM_BUS_KEY_LEN];
	struct seen seen = { 0 };
	struct cm_bus_sub *s;
	int handled = 0;

	init_redis(0);
	new_tenant(t);
	cm_bus_stream_key(t, key);
	publish_n(t, NULL, 5);
	s = sub_for(t, "order", "c1", NULL, record_handler, &seen);
	ck_assert_msg(cm_bus_sub_poll(s, &handled, errbuf) == 0, "%s", errbuf);
	ck_assert_int_eq(handled, 5);
	ck_assert_int_eq(seen.n, 5);
	ck_assert_str_eq(seen.aggs[0], "a0");
	ck_assert_str_eq(seen.aggs[4], "a4");
	ck_assert_int_eq(pending(key, "order"), 0);
	cm_bus_sub_free(s);
	drop_keys(t);
}
END_TEST

START_TEST(test_events_of_other_types_are_acked_without_the_handler)
{
	static const char *const pats[] = { "deal.*", NULL };
	char errbuf[CM_ERRBUF_LEN] = "", t[37], key[CM_BUS_KEY_LEN];
	struct seen seen = { 0 };
	struct cm_bus_sub *s;
	int handled = 0;

	init_redis(0);
	new_tenant(t);
	cm_bus_stream_key(t, key);
	publish_n(t, NULL, 2);
	publish_n(t, "deal.won", 1);
	s = sub_for(t, "deals", "c1", pats, record_handler, &seen);
	ck_assert_msg(cm_bus_sub_poll(s, &handled, errbuf) == 0, "%s", errbuf);
	ck_assert_int_eq(handled, 3);
	ck_assert_int_eq(seen.calls, 1);
	ck_assert_int_eq(pending(key, "deals"), 0);
	cm_bus_sub_free(s);
	drop_keys(t);
}
END_TEST

START_TEST(test_a_handler_that_always_fails_ends_in_the_dead_letter_stream)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], key[CM_BUS_KEY_LEN];
	char dlq[CM_BUS_KEY_LEN];
	const char *argv[4];
	struct seen seen = { .fail = 1 };
	struct cm_bus_sub *s;
	redisReply *r;
	int handled = 0;

	init_redis(0);
	new_tenant(t);
	cm_bus_stream_key(t, key);
	cm_bus_dlq_key(t, dlq);
	publish_n(t, NULL, 1);
	s = sub_for(t, "always-fails", "c1", NULL, record_handler, &seen);
	ck_assert_msg(cm_bus_sub_poll(s, &handled, errbuf) == 0, "%s", errbuf);
	ck_assert_int_eq(seen.calls, 3);
	ck_assert_int_eq(handled, 1);
	ck_assert_int_eq(pending(key, "always-fails"), 0);
	argv[0] = "XRANGE";
	argv[1] = dlq;
	argv[2] = "-";
	argv[3] = "+";
	r = cm_redis_cmd(4, argv, NULL, errbuf);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->elements, 1);
	/* fields: stream id type event attempts error group */
	ck_assert_str_eq(r->element[0]->element[1]->element[1]->str, key);
	ck_assert_str_eq(r->element[0]->element[1]->element[9]->str, "3");
	ck_assert_str_eq(r->element[0]->element[1]->element[11]->str,
			 "crm unavailable (attempt 3)");
	ck_assert_str_eq(r->element[0]->element[1]->element[13]->str,
			 "always-fails");
	freeReplyObject(r);
	cm_bus_sub_free(s);
	drop_keys(t);
}
END_TEST

/* The id of the one entry in the tenant's dead-letter stream. */
static void
only_dead_letter(const char *t, char id[64])
{
	char errbuf[CM_ERRBUF_LEN], dlq[CM_BUS_KEY_LEN];
	const char *argv[] = { "XRANGE", dlq, "-", "+" };
	redisReply *r;

	cm_bus_dlq_key(t, dlq);
	r = cm_redis_cmd(4, argv, NULL, errbuf);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->elements, 1);
	cm_strlcpy(id, r->element[0]->element[0]->str, 64);
	freeReplyObject(r);
}

START_TEST(test_a_retried_dead_letter_goes_back_to_its_group_only)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], dlq[CM_BUS_KEY_LEN], id[64];
	struct seen failing = { .fail = 1 }, other = { 0 };
	struct cm_bus_sub *s, *o;
	int handled = 0;

	init_redis(0);
	new_tenant(t);
	cm_bus_dlq_key(t, dlq);
	publish_n(t, NULL, 1);
	s = sub_for(t, "flaky", "c1", NULL, record_handler, &failing);
	o = sub_for(t, "bystander", "c1", NULL, record_handler, &other);
	ck_assert_int_eq(cm_bus_sub_poll(s, &handled, errbuf), 0);
	ck_assert_int_eq(cm_bus_sub_poll(o, &handled, errbuf), 0);
	ck_assert_int_eq(other.calls, 1);
	only_dead_letter(t, id);
	ck_assert_int_eq(cm_bus_dlq_retry(t, "1-1", NULL, errbuf), CM_ENOENT);
	ck_assert_int_eq(cm_bus_dlq_retry(t, "x", NULL, errbuf), CM_EINVAL);
	ck_assert_msg(cm_bus_dlq_retry(t, id, NULL, errbuf) == 0, "%s", errbuf);
	ck_assert_int_eq(redis_int("XLEN", dlq, NULL), 0);
	failing.fail = 0;
	ck_assert_int_eq(cm_bus_sub_poll(s, &handled, errbuf), 0);
	ck_assert_int_eq(handled, 1);
	ck_assert_int_eq(failing.n, 1); /* handled this time */
	ck_assert_int_eq(cm_bus_sub_poll(o, &handled, errbuf), 0);
	ck_assert_int_eq(handled, 1);	  /* acked ... */
	ck_assert_int_eq(other.calls, 1); /* ... without its handler */
	cm_bus_sub_free(s);
	cm_bus_sub_free(o);
	drop_keys(t);
}
END_TEST

static int
refuse_handler(const struct cm_bus_event *ev, void *arg,
	       char errbuf[CM_ERRBUF_LEN])
{
	int *calls = arg;

	(void)ev;
	(*calls)++;
	cm_errf(errbuf, "forged");
	return CM_EPERM;
}

START_TEST(test_a_permanent_failure_is_dead_lettered_without_retries)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], dlq[CM_BUS_KEY_LEN];
	struct cm_bus_sub *s;
	int calls = 0, handled = 0;

	init_redis(0);
	new_tenant(t);
	cm_bus_dlq_key(t, dlq);
	publish_n(t, NULL, 1);
	s = sub_for(t, "strict", "c1", NULL, refuse_handler, &calls);
	ck_assert_int_eq(cm_bus_sub_poll(s, &handled, errbuf), 0);
	ck_assert_int_eq(calls, 1);
	ck_assert_int_eq(handled, 1);
	ck_assert_int_eq(redis_int("XLEN", dlq, NULL), 1);
	cm_bus_sub_free(s);
	drop_keys(t);
}
END_TEST

/* A batch handler: records each call's size; fails whole batches that
   hold aggregate "a2" when fail_a2 is set. */
struct batches {
	int calls, events, sizes[8];
	bool fail_a2;
};

/* Both handlers' argument: record_handler reads the first member. */
struct batch_ctx {
	struct seen seen;
	struct batches b;
};

static int
batch_handler(const struct cm_bus_event *evs, int n, void *arg,
	      char errbuf[CM_ERRBUF_LEN])
{
	struct batches *b = &((struct batch_ctx *)arg)->b;
	int i;

	if (b->calls < 8)
		b->sizes[b->calls] = n;
	b->calls++;
	for (i = 0; i < n; i++)
		if (b->fail_a2 &&
		    !strcmp(cJSON_GetObjectItem(evs[i].env, "aggregate_id")
				    ->valuestring,
			    "a2")) {
			cm_errf(errbuf, "a2 is poison");
			return CM_EIO;
		}
	b->events += n;
	return 0;
}

/* The one-by-one handler beside the batch one: refuses a2 for good. */
static int
one_handler(const struct cm_bus_event *ev, void *arg,
	    char errbuf[CM_ERRBUF_LEN])
{
	if (!strcmp(cJSON_GetObjectItem(ev->env, "aggregate_id")->valuestring,
		    "a2")) {
		cm_errf(errbuf, "a2 is poison");
		return CM_EINVAL;
	}
	return record_handler(ev, arg, errbuf);
}

/* With a batch handler the new events of a stream arrive in one call and
   are all acked; when the batch fails, each event goes through the
   one-by-one handler, and only the bad one is dead-lettered. */
START_TEST(test_a_batch_handler_gets_a_streams_events_at_once)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], key[CM_BUS_KEY_LEN];
	char dlq[CM_BUS_KEY_LEN];
	struct batch_ctx ctx;
	struct cm_bus_sub_config cfg = { 0 };
	struct cm_bus_sub *s;
	const char *argv[2];
	redisReply *r;
	int handled = 0;

	init_redis(0);
	new_tenant(t);
	cm_bus_stream_key(t, key);
	cm_bus_dlq_key(t, dlq);
	memset(&ctx, 0, sizeof(ctx));
	publish_n(t, NULL, 5);
	cfg.group = "batched";
	cfg.consumer = "c1";
	cfg.tenant_id = t;
	cfg.block_ms = 50;
	cfg.max_attempts = 3;
	cfg.backoff_ms = 1;
	cfg.fn = one_handler;
	cfg.batch_fn = batch_handler;
	cfg.arg = &ctx;
	s = cm_bus_sub_new(&cfg);
	ck_assert_ptr_nonnull(s);
	ck_assert_msg(cm_bus_sub_poll(s, &handled, errbuf) == 0, "%s", errbuf);
	ck_assert_int_eq(handled, 5);
	ck_assert_int_eq(ctx.b.calls, 1);
	ck_assert_int_eq(ctx.b.sizes[0], 5);
	ck_assert_int_eq(ctx.seen.calls, 0); /* fn not needed */
	ck_assert_int_eq(pending(key, "batched"), 0);

	ctx.b.fail_a2 = true;
	publish_n(t, NULL, 4); /* a0..a3 again */
	ck_assert_msg(cm_bus_sub_poll(s, &handled, errbuf) == 0, "%s", errbuf);
	ck_assert_int_eq(handled, 4);
	ck_assert_int_eq(ctx.b.calls, 2);
	ck_assert_int_eq(ctx.seen.n, 3); /* a0, a1, a3 one by one */
	ck_assert_str_eq(ctx.seen.aggs[2], "a3");
	ck_assert_int_eq(pending(key, "batched"), 0);
	argv[0] = "XLEN";
	argv[1] = dlq;
	r = cm_redis_cmd(2, argv, NULL, errbuf);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->integer, 1); /* a2 alone */
	freeReplyObject(r);
	cm_bus_sub_free(s);
	drop_keys(t);
}
END_TEST

START_TEST(test_a_bad_subscriber_config_is_refused)
{
	struct cm_bus_sub_config cfg = { 0 };

	cfg.group = "ok";
	cfg.consumer = "c";
	ck_assert_ptr_null(cm_bus_sub_new(&cfg)); /* no handler */
	cfg.fn = record_handler;
	cfg.group = "Bad Group";
	ck_assert_ptr_null(cm_bus_sub_new(&cfg));
	cfg.group = "ok";
	cfg.tenant_id = "x";
	ck_assert_ptr_null(cm_bus_sub_new(&cfg));
	cfg.tenant_id = NULL;
	cm_bus_sub_free(cm_bus_sub_new(&cfg));
	cm_bus_sub_free(NULL);
}
END_TEST

struct fairness {
	char flood[37], quiet[37];
	int flood_before_quiet, quiet_seen;
};

static int
fairness_handler(const struct cm_bus_event *ev, void *arg,
		 char errbuf[CM_ERRBUF_LEN])
{
	struct fairness *f = arg;

	(void)errbuf;
	if (strcmp(ev->tenant_id, f->quiet) == 0)
		f->quiet_seen = 1;
	else if (strcmp(ev->tenant_id, f->flood) == 0 && !f->quiet_seen)
		f->flood_before_quiet++;
	return 0;
}

/* The fairness bound: a tenant's backlog of 2000 events delays another
   tenant's event by at most one batch (16) of the flooder's events. */
START_TEST(test_a_flooding_tenant_delays_another_by_at_most_one_batch)
{
	char errbuf[CM_ERRBUF_LEN] = "", grp[32];
	struct cm_bus_sub_config cfg = { 0 };
	struct fairness f = { 0 };
	struct cm_bus_sub *s;
	int i;

	init_redis(0);
	new_tenant(f.flood);
	new_tenant(f.quiet);
	publish_n(f.flood, NULL, 2000);
	publish_n(f.quiet, NULL, 1);
	snprintf(grp, sizeof(grp), "fair-%.8s", f.flood);
	cfg.group = grp;
	cfg.consumer = "c1";
	cfg.block_ms = 10;
	cfg.fn = fairness_handler;
	cfg.arg = &f;
	s = cm_bus_sub_new(&cfg);
	ck_assert_ptr_nonnull(s);
	for (i = 0; i < 500 && !f.quiet_seen; i++)
		ck_assert_msg(cm_bus_sub_poll(s, NULL, errbuf) == 0, "%s",
			      errbuf);
	ck_assert(f.quiet_seen);
	ck_assert_int_le(f.flood_before_quiet, 16);
	cm_bus_sub_free(s);
	drop_keys(f.flood);
	drop_keys(f.quiet);
}
END_TEST

/* ---- crash recovery with the inbox ---- */

struct effect_tx {
	const struct cm_bus_event *ev;
};

/* The handler's effect and its inbox row in one tenant transaction. */
static int
effect_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	const struct cm_bus_event *ev = arg;
	const char *eid = cJSON_GetObjectItem(ev->env, "event_id")->valuestring;
	const char *params[2] = { eid, ev->tenant_id };
	int rc;

	rc = cm_bus_inbox_claim(conn, T_SCHEMA ".inbox", ev->tenant_id, eid,
				errbuf);
	if (rc == CM_EEXIST)
		return 0; /* handled before: do nothing */
	if (rc < 0)
		return rc;
	return cm_db_query(conn,
			   "INSERT INTO " T_SCHEMA ".effects VALUES ($1, $2)",
			   2, params, NULL, errbuf);
}

static int
effect_handler(const struct cm_bus_event *ev, void *arg,
	       char errbuf[CM_ERRBUF_LEN])
{
	int *calls = arg;

	(*calls)++;
	return cm_db_tx_tenant(ev->tenant_id, effect_work, (void *)ev, errbuf);
}

static int g_signal_fd = -1;

/* Child: do the effect, commit, tell the parent, then hang (killed). */
static int
effect_then_hang(const struct cm_bus_event *ev, void *arg,
		 char errbuf[CM_ERRBUF_LEN])
{
	int rc = effect_handler(ev, arg, errbuf);

	if (rc == 0 && write(g_signal_fd, "x", 1) != 1)
		_exit(3);
	for (;;)
		pause();
	return rc;
}

static long long
effects_for(const char *tenant)
{
	char errbuf[CM_ERRBUF_LEN];
	const char *p = tenant;
	PGresult *res = NULL;
	long long n;

	ck_assert_msg(cm_db_query(cm_db_conn(errbuf),
				  "SELECT count(*) FROM " T_SCHEMA
				  ".effects WHERE tenant_id = $1",
				  1, &p, &res, errbuf) == 0,
		      "%s", errbuf);
	n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return n;
}

static pid_t
spawn_dying_consumer(const char *t, int fds[2])
{
	char errbuf[CM_ERRBUF_LEN];
	struct cm_bus_sub *s;
	int calls = 0;
	pid_t pid;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid > 0)
		return pid;
	close(fds[0]);
	alarm(30); /* never outlive a failed test */
	g_signal_fd = fds[1];
	init_redis(0);
	init_db();
	s = sub_for(t, "crashy", "doomed", NULL, effect_then_hang, &calls);
	for (;;)
		cm_bus_sub_poll(s, NULL, errbuf);
}

START_TEST(
	test_a_consumer_killed_mid_handler_is_replaced_and_the_effect_is_once)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], key[CM_BUS_KEY_LEN], c;
	struct cm_bus_sub *s;
	int fds[2], calls = 0, handled = 0, st, i;
	pid_t pid;

	new_tenant(t);
	cm_bus_stream_key(t, key);
	pid = spawn_dying_consumer(t, fds);
	close(fds[1]);
	init_redis(0);
	init_db();
	publish_n(t, NULL, 1);
	ck_assert_int_eq(read(fds[0], &c, 1), 1); /* effect committed */
	kill(pid, SIGKILL);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	close(fds[0]);
	ck_assert_int_eq(pending(key, "crashy"), 1);
	s = sub_for(t, "crashy", "rescuer", NULL, effect_handler, &calls);
	for (i = 0; i < 40 && handled == 0; i++)
		ck_assert_msg(cm_bus_sub_poll(s, &handled, errbuf) == 0, "%s",
			      errbuf);
	ck_assert_int_eq(handled, 1);
	ck_assert_int_eq(calls, 1);
	ck_assert_int_eq(pending(key, "crashy"), 0);
	ck_assert_int_eq(effects_for(t), 1);
	cm_bus_sub_free(s);
	drop_keys(t);
}
END_TEST

START_TEST(test_an_entry_delivered_too_often_is_dead_lettered_on_claim)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], key[CM_BUS_KEY_LEN];
	struct seen seen = { 0 };
	struct cm_bus_sub *s;
	redisReply *r;
	int handled = 0, i;

	init_redis(0);
	new_tenant(t);
	cm_bus_stream_key(t, key);
	publish_n(t, NULL, 1);
	ck_assert_int_eq(cm_redis_xgroup_create(key, "poison", "0", errbuf), 0);
	/* three consumers take it and "die" (never ack) */
	r = cm_redis_xreadgroup(key, "poison", "dead1", 1, 0, errbuf);
	freeReplyObject(r);
	for (i = 0; i < 3; i++) {
		r = cm_redis_xautoclaim(key, "poison", "deadN", 0, NULL, 1,
					errbuf);
		freeReplyObject(r);
	}
	usleep(350 * 1000);
	s = sub_for(t, "poison", "c1", NULL, record_handler, &seen);
	ck_assert_msg(cm_bus_sub_poll(s, &handled, errbuf) == 0, "%s", errbuf);
	ck_assert_int_eq(handled, 1);
	ck_assert_int_eq(seen.calls, 0);
	ck_assert_int_eq(pending(key, "poison"), 0);
	cm_bus_dlq_key(t, key);
	ck_assert_int_eq(redis_int("XLEN", key, NULL), 1);
	cm_bus_sub_free(s);
	drop_keys(t);
}
END_TEST

/* ---- inbox ---- */

static int
claim_twice(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	const char *t = arg;
	char eid[37];
	int rc;

	ck_assert_int_eq(cm_uuid_v4(eid), 0);
	rc = cm_bus_inbox_claim(conn, T_SCHEMA ".inbox", t, eid, errbuf);
	ck_assert_int_eq(rc, 0);
	rc = cm_bus_inbox_claim(conn, T_SCHEMA ".inbox", t, eid, errbuf);
	ck_assert_int_eq(rc, CM_EEXIST);
	rc = cm_bus_inbox_claim(conn, "bad table", t, eid, errbuf);
	ck_assert_int_eq(rc, CM_EINVAL);
	rc = cm_bus_inbox_claim(conn, T_SCHEMA ".inbox", t, "x", errbuf);
	ck_assert_int_eq(rc, CM_EINVAL);
	return 0;
}

START_TEST(test_the_inbox_says_eexist_for_an_event_already_handled)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37];

	init_db();
	new_tenant(t);
	ck_assert_msg(cm_db_tx_tenant(t, claim_twice, t, errbuf) == 0, "%s",
		      errbuf);
}
END_TEST

/* ---- outbox ---- */

struct outbox_arg {
	const char *tenant;
	cJSON *env;
};

static int
outbox_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct outbox_arg *a = arg;

	return cm_bus_outbox_add(conn, T_SCHEMA ".outbox", a->tenant, a->env,
				 errbuf);
}

/* Child: commit the outbox row, then die before any relay ran. */
static void
commit_then_die(const char *t)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct outbox_arg a = { t, lead_event("crash") };

	init_db();
	if (cm_db_tx_tenant(t, outbox_work, &a, errbuf) < 0)
		_exit(2);
	kill(getpid(), SIGKILL);
}

START_TEST(test_the_outbox_publishes_after_a_crash_between_commit_and_publish)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], key[CM_BUS_KEY_LEN];
	int published = -1, st;
	pid_t pid;

	new_tenant(t);
	cm_bus_stream_key(t, key);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		commit_then_die(t);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	init_redis(0);
	init_db();
	ck_assert_int_eq(redis_int("XLEN", key, NULL), 0);
	ck_assert_msg(cm_bus_outbox_relay(T_SCHEMA ".outbox", 10000, &published,
					  errbuf) == 0,
		      "%s", errbuf);
	ck_assert_int_ge(published, 1);
	ck_assert_int_eq(redis_int("XLEN", key, NULL), 1);
	ck_assert_int_eq(cm_bus_outbox_relay(T_SCHEMA ".outbox", 100,
					     &published, errbuf),
			 0);
	ck_assert_int_eq(redis_int("XLEN", key, NULL), 1);
	ck_assert_int_eq(cm_bus_outbox_relay("nope", 1, NULL, errbuf),
			 CM_EINVAL);
	drop_keys(t);
}
END_TEST

/* Published rows past their keep go, oldest first and at most limit at a
   time; unpublished ones stay, however old, and so do recent ones. */
START_TEST(test_the_outbox_sweep_removes_only_old_published_rows)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], sql[1024], count[256];
	long long removed = -1;

	init_db();
	new_tenant(t);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO " T_SCHEMA ".outbox (tenant_id, event_id, event,"
		 " created_at, published_at) SELECT '%s', gen_random_uuid(),"
		 " '{}', now() - interval '30 days', CASE WHEN i <= 3 THEN"
		 " now() - interval '8 days' WHEN i = 4 THEN now() - interval"
		 " '1 hour' END FROM generate_series(1, 5) i",
		 t);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	snprintf(count, sizeof(count),
		 "SELECT count(*) FROM " T_SCHEMA ".outbox WHERE tenant_id = "
		 "'%s'",
		 t);
	ck_assert_msg(cm_bus_outbox_sweep(T_SCHEMA ".outbox", 7 * 86400, 2,
					  &removed, errbuf) == 0,
		      "%s", errbuf);
	ck_assert_int_eq(removed, 2);
	ck_assert_int_eq(cm_test_psql_count(count, NULL), 3);
	ck_assert_int_eq(cm_bus_outbox_sweep(T_SCHEMA ".outbox", 7 * 86400, 100,
					     &removed, errbuf),
			 0);
	ck_assert_int_eq(removed, 1);
	ck_assert_int_eq(cm_test_psql_count(count, NULL), 2);
	ck_assert_int_eq(cm_bus_outbox_sweep(T_SCHEMA ".outbox", 7 * 86400, 100,
					     &removed, errbuf),
			 0);
	ck_assert_int_eq(removed, 0);
	/* what is left: the unpublished row and the recent one */
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM " T_SCHEMA ".outbox WHERE tenant_id = "
		 "'%s' AND (published_at IS NULL OR published_at > now() -"
		 " interval '2 hours')",
		 t);
	ck_assert_int_eq(cm_test_psql_count(sql, NULL), 2);
	ck_assert_int_eq(cm_bus_outbox_sweep("x; DROP", 1, 1, NULL, errbuf),
			 CM_EINVAL);
}
END_TEST

START_TEST(test_an_outbox_row_stays_unpublished_while_redis_is_down)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], key[CM_BUS_KEY_LEN];
	struct outbox_arg a;
	int published = -1;

	init_db();
	new_tenant(t);
	cm_bus_stream_key(t, key);
	a.tenant = t;
	a.env = lead_event(NULL);
	ck_assert_int_eq(cm_db_tx_tenant(t, outbox_work, &a, errbuf), 0);
	cJSON_Delete(a.env);
	init_redis(cm_test_free_port()); /* nobody listens there */
	ck_assert_int_eq(cm_bus_outbox_relay(T_SCHEMA ".outbox", 10000,
					     &published, errbuf),
			 CM_EIO);
	ck_assert_ptr_nonnull(strstr(errbuf, "outbox relay"));
	init_redis(0);
	ck_assert_int_eq(redis_int("XLEN", key, NULL), 0);
	ck_assert_msg(cm_bus_outbox_relay(T_SCHEMA ".outbox", 10000, &published,
					  errbuf) == 0,
		      "%s", errbuf);
	ck_assert_int_ge(published, 1);
	ck_assert_int_eq(redis_int("XLEN", key, NULL), 1);
	drop_keys(t);
}
END_TEST

START_TEST(test_the_outbox_refuses_a_duplicate_event_and_another_tenant)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], other[37];
	struct outbox_arg a;

	init_db();
	new_tenant(t);
	new_tenant(other);
	a.tenant = t;
	a.env = lead_event(NULL);
	ck_assert_int_eq(cm_db_tx_tenant(t, outbox_work, &a, errbuf), 0);
	ck_assert_int_eq(cm_db_tx_tenant(t, outbox_work, &a, errbuf),
			 CM_EEXIST);
	a.tenant = other;
	ck_assert_int_eq(cm_db_tx_tenant(other, outbox_work, &a, errbuf),
			 CM_EPERM);
	cJSON_Delete(a.env);
}
END_TEST

/* ---- trimming ---- */

START_TEST(test_trim_never_removes_entries_a_group_has_not_acked)
{
	char errbuf[CM_ERRBUF_LEN] = "", t[37], key[CM_BUS_KEY_LEN];
	redisReply *r;
	long long removed = -1;
	size_t i;

	init_redis(0);
	new_tenant(t);
	cm_bus_stream_key(t, key);
	publish_n(t, NULL, 5);
	ck_assert_int_eq(cm_bus_trim(key, NULL, &removed, errbuf), 0);
	ck_assert_int_eq(removed, 0); /* no group: untouched */
	ck_assert_int_eq(cm_redis_xgroup_create(key, "g1", "0", errbuf), 0);
	r = cm_redis_xreadgroup(key, "g1", "c", 5, 0, errbuf);
	ck_assert_ptr_nonnull(r);
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(cm_redis_xack(key, "g1",
					       r->element[0]
						       ->element[1]
						       ->element[i]
						       ->element[0]
						       ->str,
					       errbuf),
				 0);
	freeReplyObject(r);
	ck_assert_int_eq(cm_bus_trim(key, "99999999999999-0", &removed, errbuf),
			 0);
	ck_assert_int_eq(removed, 2);
	ck_assert_int_eq(redis_int("XLEN", key, NULL), 3);
	ck_assert_int_eq(pending(key, "g1"), 3);
	/* a group that has read nothing holds everything */
	ck_assert_int_eq(cm_redis_xgroup_create(key, "g2", "0", errbuf), 0);
	ck_assert_int_eq(cm_bus_trim(key, NULL, &removed, errbuf), 0);
	ck_assert_int_eq(removed, 0);
	ck_assert_int_eq(cm_bus_trim(key, "x-y", &removed, errbuf), CM_EINVAL);
	drop_keys(t);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("bus");
	TCase *tc = tcase_create("envelope");
	TCase *io = tcase_create("redis");

	tcase_add_test(
		tc,
		test_a_built_envelope_is_valid_and_each_broken_field_is_named);
	tcase_add_test(tc, test_envelope_field_names_are_exact_and_given_once);
	tcase_add_test(tc, test_an_envelope_over_the_size_limit_is_too_big);
	tcase_add_test(tc, test_type_patterns_match_a_domain_or_an_exact_type);
	tcase_add_test(tc, test_a_batch_handler_gets_a_streams_events_at_once);
	tcase_add_test(tc, test_a_bad_subscriber_config_is_refused);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(io, setup, NULL);
	tcase_set_timeout(io, 20);
	tcase_add_test(io,
		       test_publish_writes_the_callers_tenant_into_its_stream);
	tcase_add_test(io,
		       test_a_known_stream_is_registered_again_within_seconds);
	tcase_add_test(
		io,
		test_publish_refuses_another_tenant_a_bad_tenant_and_bad_shape);
	tcase_add_test(io, test_publish_fails_when_redis_is_unreachable);
	tcase_add_test(
		io,
		test_subscriber_handles_events_in_publish_order_and_acks_them);
	tcase_add_test(
		io, test_events_of_other_types_are_acked_without_the_handler);
	tcase_add_test(
		io,
		test_a_handler_that_always_fails_ends_in_the_dead_letter_stream);
	tcase_add_test(io,
		       test_a_retried_dead_letter_goes_back_to_its_group_only);
	tcase_add_test(
		io, test_a_flooding_tenant_delays_another_by_at_most_one_batch);
	tcase_add_test(
		io,
		test_a_consumer_killed_mid_handler_is_replaced_and_the_effect_is_once);
	tcase_add_test(
		io,
		test_an_entry_delivered_too_often_is_dead_lettered_on_claim);
	tcase_add_test(io,
		       test_the_inbox_says_eexist_for_an_event_already_handled);
	tcase_add_test(
		io,
		test_the_outbox_publishes_after_a_crash_between_commit_and_publish);
	tcase_add_test(
		io,
		test_the_outbox_refuses_a_duplicate_event_and_another_tenant);
	tcase_add_test(io,
		       test_trim_never_removes_entries_a_group_has_not_acked);
	tcase_add_test(
		io, test_an_outbox_row_stays_unpublished_while_redis_is_down);
	tcase_add_test(io,
		       test_the_outbox_sweep_removes_only_old_published_rows);
	tcase_add_test(
		io, test_a_permanent_failure_is_dead_lettered_without_retries);
	suite_add_tcase(s, io);
	return s;
}

CM_TEST_MAIN(make_suite)
