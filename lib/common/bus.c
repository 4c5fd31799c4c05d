/*
 * bus.c - the event bus client (see common/bus.h and docs/event-bus.md).
 */
#include "common/bus.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/db.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/metrics.h"
#include "common/redis.h"

#include "common/banned.h"

#define BUS_STREAM_PREFIX "bz:ev:t:"
#define BUS_DLQ_PREFIX "bz:ev:dlq:"
#define BUS_MAX_TYPE 64
#define BUS_CHUNK 64 /* streams per XREADGROUP */
#define BUS_MAX_BACKOFF_MS 5000
#define BUS_MAX_BLOCK_MS 2000 /* below the default command timeout */
#define BUS_SUB_MAGIC 0x62757373u

/* Publish atomically: remember the stream, then append. */
static const char bus_publish_lua[] =
	"redis.call('SADD', KEYS[2], KEYS[1]) "
	"return redis.call('XADD', KEYS[1], '*', 'type', ARGV[1], "
	"'event', ARGV[2])";

static const char *const bus_priorities[] = { "low", "normal", "high",
					      "critical", NULL };

static const char *const bus_fields[] = {
	"event_id",	  "event_type",	  "event_version",  "tenant_id",
	"source_service", "occurred_at",  "correlation_id", "causation_id",
	"aggregate_type", "aggregate_id", "priority",	    "data",
	"metadata",	  NULL,
};

void
cm_bus_stream_key(const char *tenant_id, char out[CM_BUS_KEY_LEN])
{
	snprintf(out, CM_BUS_KEY_LEN, BUS_STREAM_PREFIX "%s", tenant_id);
}

void
cm_bus_dlq_key(const char *tenant_id, char out[CM_BUS_KEY_LEN])
{
	snprintf(out, CM_BUS_KEY_LEN, BUS_DLQ_PREFIX "%s", tenant_id);
}

bool
cm_bus_type_match(const char *pattern, const char *type)
{
	size_t n;

	if (!pattern || !type)
		return false;
	if (strcmp(pattern, "*") == 0)
		return true;
	n = strlen(pattern);
	if (n >= 2 && pattern[n - 1] == '*' && pattern[n - 2] == '.')
		return strncmp(pattern, type, n - 1) == 0;
	return strcmp(pattern, type) == 0;
}

static bool
is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* ident - [a-z][a-z0-9_]* plus the extra characters allowed. */
static bool
is_ident(const char *s, const char *extra, size_t max)
{
	size_t i;

	if (!s || !(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	for (i = 0; s[i]; i++) {
		if (i >= max)
			return false;
		if (!is_lower_alnum(s[i]) && !strchr(extra, s[i]))
			return false;
	}
	return true;
}

bool
cm_bus_valid_group(const char *group)
{
	return is_ident(group, "-", 48);
}

bool
cm_bus_valid_type(const char *type)
{
	const char *dot;
	char domain[BUS_MAX_TYPE + 1];

	if (!type || strlen(type) > BUS_MAX_TYPE)
		return false;
	dot = strchr(type, '.');
	if (!dot || dot == type)
		return false;
	cm_strlcpy(domain, type, (size_t)(dot - type) + 1);
	return is_ident(domain, "", BUS_MAX_TYPE) &&
	       is_ident(dot + 1, ".", BUS_MAX_TYPE) && dot[1] != '\0' &&
	       type[strlen(type) - 1] != '.';
}

static bool
digits(const char *s, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

bool
cm_bus_is_rfc3339(const char *s)
{
	size_t i = 19;

	if (!s || strlen(s) < 20 || !digits(s, 4) || s[4] != '-' ||
	    !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2) ||
	    (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2) ||
	    s[13] != ':' || !digits(s + 14, 2) || s[16] != ':' ||
	    !digits(s + 17, 2))
		return false;
	if (s[i] == '.') {
		for (i++; s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == 20 || i > 29)
			return false;
	}
	if ((s[i] == 'Z' || s[i] == 'z') && s[i + 1] == '\0')
		return true;
	return (s[i] == '+' || s[i] == '-') && digits(s + i + 1, 2) &&
	       s[i + 3] == ':' && digits(s + i + 4, 2) && s[i + 6] == '\0';
}

/* The index of name in bus_fields, or -1: a switch on the first letter,
   then at most three compares (an envelope has about a dozen fields and
   each publish looks at all of them). The table holds index + 1, so 0
   ends a row. */
static int
field_index(const char *name)
{
	static const unsigned char by_first[26][4] = {
		['a' - 'a'] = { 9, 10 }, ['c' - 'a'] = { 7, 8 },
		['d' - 'a'] = { 12 },	 ['e' - 'a'] = { 1, 2, 3 },
		['m' - 'a'] = { 13 },	 ['o' - 'a'] = { 6 },
		['p' - 'a'] = { 11 },	 ['s' - 'a'] = { 5 },
		['t' - 'a'] = { 4 },
	};
	const unsigned char *row;
	int i;

	if (!name || name[0] < 'a' || name[0] > 'z')
		return -1;
	row = by_first[name[0] - 'a'];
	for (i = 0; i < 4 && row[i]; i++)
		if (strcmp(bus_fields[row[i] - 1], name) == 0)
			return row[i] - 1;
	return -1;
}

/* Every field present is a known one, and present once: cJSON keeps both
   copies of a repeated key, and a consumer in another language might read
   the second one (a second tenant_id, say) where we checked the first. */
static int
check_no_extra(const cJSON *env, char errbuf[CM_ERRBUF_LEN])
{
	unsigned seen = 0;
	const cJSON *it;
	int i;

	cJSON_ArrayForEach(it, env)
	{
		if ((i = field_index(it->string)) < 0) {
			cm_errf(errbuf, "field '%.64s' is not allowed",
				it->string ? it->string : "");
			return CM_EINVAL;
		}
		if (seen & (1u << i)) {
			cm_errf(errbuf, "field '%s' appears more than once",
				bus_fields[i]);
			return CM_EINVAL;
		}
		seen |= 1u << i;
	}
	return 0;
}

/* Required strings with a shape check. */
static int
check_idents(const cJSON *env, char errbuf[CM_ERRBUF_LEN])
{
	const char *s = NULL;
	int rc;

	if ((rc = cm_json_get_str(env, NULL, "event_type", true, BUS_MAX_TYPE,
				  &s, errbuf)) < 0)
		return rc;
	if (!cm_bus_valid_type(s))
		goto bad_type;
	if ((rc = cm_json_get_str(env, NULL, "source_service", true, 64, &s,
				  errbuf)) < 0)
		return rc;
	if (!is_ident(s, "-", 64)) {
		cm_errf(errbuf, "field 'source_service' must match "
				"[a-z][a-z0-9-]*");
		return CM_EINVAL;
	}
	if ((rc = cm_json_get_str(env, NULL, "aggregate_type", true, 64, &s,
				  errbuf)) < 0)
		return rc;
	if (!is_ident(s, "", 64)) {
		cm_errf(errbuf, "field 'aggregate_type' must match "
				"[a-z][a-z0-9_]*");
		return CM_EINVAL;
	}
	return 0;
bad_type:
	cm_errf(errbuf, "field 'event_type' must be <domain>.<what> "
			"(lowercase, e.g. lead.created)");
	return CM_EINVAL;
}

static int
check_optional(const cJSON *env, char errbuf[CM_ERRBUF_LEN])
{
	int rc;

	rc = cm_json_get_str(env, NULL, "correlation_id", false, 128, NULL,
			     errbuf);
	if (rc < 0 && rc != CM_ENOENT)
		return rc;
	rc = cm_json_get_str(env, NULL, "causation_id", false, 128, NULL,
			     errbuf);
	if (rc < 0 && rc != CM_ENOENT)
		return rc;
	rc = cm_json_get_object(env, NULL, "metadata", false, NULL, errbuf);
	if (rc < 0 && rc != CM_ENOENT)
		return rc;
	return 0;
}

static int
check_fields(const cJSON *env, char errbuf[CM_ERRBUF_LEN])
{
	const char *s = NULL;
	int64_t v;
	int rc;

	if ((rc = check_no_extra(env, errbuf)) < 0 ||
	    (rc = cm_json_get_uuid(env, NULL, "event_id", true, NULL, errbuf)) <
		    0 ||
	    (rc = check_idents(env, errbuf)) < 0 ||
	    (rc = cm_json_get_i64(env, NULL, "event_version", true, 1, 1000, &v,
				  errbuf)) < 0 ||
	    (rc = cm_json_get_uuid(env, NULL, "tenant_id", true, NULL,
				   errbuf)) < 0 ||
	    (rc = cm_json_get_str(env, NULL, "occurred_at", true, 40, &s,
				  errbuf)) < 0)
		return rc;
	if (!cm_bus_is_rfc3339(s)) {
		cm_errf(errbuf, "field 'occurred_at' must be an RFC 3339 time");
		return CM_EINVAL;
	}
	if ((rc = cm_json_get_str(env, NULL, "aggregate_id", true, 128, &s,
				  errbuf)) < 0)
		return rc;
	if (!*s) {
		cm_errf(errbuf, "field 'aggregate_id' must not be empty");
		return CM_EINVAL;
	}
	if ((rc = cm_json_get_enum(env, NULL, "priority", true, bus_priorities,
				   NULL, errbuf)) < 0 ||
	    (rc = cm_json_get_object(env, NULL, "data", true, NULL, errbuf)) <
		    0)
		return rc;
	return check_optional(env, errbuf);
}

/* Validate, and hand out the text (printed once) when text is not NULL. */
static int
validate_text(const cJSON *env, char **text, char errbuf[CM_ERRBUF_LEN])
{
	char *t;
	size_t n;
	int rc;

	if (!cJSON_IsObject(env)) {
		cm_errf(errbuf, "the event must be a JSON object");
		return CM_EINVAL;
	}
	if ((rc = check_fields(env, errbuf)) < 0)
		return rc;
	t = cm_json_print(env);
	n = strlen(t);
	if (n > CM_BUS_MAX_EVENT) {
		free(t);
		cm_errf(errbuf, "the event is %zu bytes, over the %d limit", n,
			CM_BUS_MAX_EVENT);
		return CM_E2BIG;
	}
	if (text)
		*text = t;
	else
		free(t);
	return 0;
}

int
cm_bus_validate(const cJSON *env, char errbuf[CM_ERRBUF_LEN])
{
	return validate_text(env, NULL, errbuf);
}

cJSON *
cm_bus_envelope_new(const char *type, const char *source_service,
		    const char *aggregate_type, const char *aggregate_id,
		    cJSON *data)
{
	char id[37], at[40];
	cJSON *env;

	if (cm_uuid_v4(id) < 0) {
		cJSON_Delete(data);
		return NULL;
	}
	cm_time_rfc3339_us(at);
	env = cJSON_CreateObject();
	cJSON_AddStringToObject(env, "event_id", id);
	cJSON_AddStringToObject(env, "event_type", type ? type : "");
	cJSON_AddNumberToObject(env, "event_version", 1);
	cJSON_AddStringToObject(env, "source_service",
				source_service ? source_service : "");
	cJSON_AddStringToObject(env, "occurred_at", at);
	cJSON_AddStringToObject(env, "aggregate_type",
				aggregate_type ? aggregate_type : "");
	cJSON_AddStringToObject(env, "aggregate_id",
				aggregate_id ? aggregate_id : "");
	cJSON_AddStringToObject(env, "priority", "normal");
	cJSON_AddItemToObject(env, "data", data ? data : cJSON_CreateObject());
	cJSON_AddItemToObject(env, "metadata", cJSON_CreateObject());
	return env;
}

/* Put the verified tenant into env; refuse one naming another tenant. */
static int
bus_set_tenant(const char *tenant_id, cJSON *env, char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *t;

	if (!cm_is_uuid(tenant_id)) {
		cm_errf(errbuf, "publish: tenant id is not a uuid");
		return CM_EINVAL;
	}
	if (!cJSON_IsObject(env)) {
		cm_errf(errbuf, "the event must be a JSON object");
		return CM_EINVAL;
	}
	t = cJSON_GetObjectItemCaseSensitive(env, "tenant_id");
	if (t && !cJSON_IsNull(t)) {
		if (!cJSON_IsString(t) || strcmp(t->valuestring, tenant_id)) {
			cm_errf(errbuf, "field 'tenant_id' names another "
					"tenant than the caller's");
			return CM_EPERM;
		}
		return 0;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(env, "tenant_id");
	cJSON_AddStringToObject(env, "tenant_id", tenant_id);
	return 0;
}

static void
bus_count(const char *name, const char *help, const char *group,
	  const char *type)
{
	struct cm_buf l = CM_BUF_INIT(256);

	if (group)
		cm_metrics_label_append(&l, "group", group);
	cm_metrics_label_append(&l, "type", type);
	cm_metrics_counter_add(name, help, cm_buf_str(&l), 1);
	cm_buf_release(&l);
}

static char bus_publish_sha[41];
static pthread_once_t bus_sha_once = PTHREAD_ONCE_INIT;

static void
publish_sha_init(void)
{
	cm_redis_script_sha(bus_publish_lua, bus_publish_sha);
}

/* Streams this thread saw registered in CM_BUS_STREAMS lately: their
   publishes are a plain XADD. Nothing removes a stream from the set, and
   an entry lives BUS_KNOWN_MS only, so if the set is ever lost (a Redis
   without persistence restarting) the next script publish after that
   registers the stream again; subscribers create their group at id 0, so
   the entries added meanwhile are still read. */
#define BUS_KNOWN_SLOTS 64
#define BUS_KNOWN_MS 5000

struct known_stream {
	char key[CM_BUS_KEY_LEN];
	int64_t until_ms;
};

static __thread struct known_stream bus_known[BUS_KNOWN_SLOTS];

static struct known_stream *
known_slot(const char *key)
{
	return &bus_known[cm_hash_str(key) % BUS_KNOWN_SLOTS];
}

/* XADD alone for a known stream (grouped with other threads' publishes
   into one pipeline); else EVALSHA the publish script (SADD + XADD), EVAL
   when Redis does not know it yet, and remember the stream. */
static redisReply *
run_publish(const char *key, const char *type, const char *text,
	    char errbuf[CM_ERRBUF_LEN])
{
	const char *argv[7] = { "EVALSHA", bus_publish_sha, "2",
				key,	   CM_BUS_STREAMS,  type,
				text };
	const char *xadd[7] = { "XADD", key, "*", "type", type, "event", text };
	struct known_stream *k = known_slot(key);
	int64_t now = cm_now_ms();
	redisReply *r = NULL;

	if (now < k->until_ms && !strcmp(k->key, key))
		return cm_redis_cmd_grouped(7, xadd, NULL, errbuf);
	pthread_once(&bus_sha_once, publish_sha_init);
	if (bus_publish_sha[0]) {
		r = cm_redis_cmd(7, argv, NULL, errbuf);
		if (!r && strstr(errbuf, "NOSCRIPT")) {
			argv[0] = "EVAL";
			argv[1] = bus_publish_lua;
			r = cm_redis_cmd(7, argv, NULL, errbuf);
		}
	} else {
		argv[0] = "EVAL";
		argv[1] = bus_publish_lua;
		r = cm_redis_cmd(7, argv, NULL, errbuf);
	}
	if (r && r->type == REDIS_REPLY_STRING) {
		cm_strlcpy(k->key, key, sizeof(k->key));
		k->until_ms = now + BUS_KNOWN_MS;
	}
	return r;
}

int
cm_bus_publish(const char *tenant_id, cJSON *env, char id_out[64],
	       char errbuf[CM_ERRBUF_LEN])
{
	char key[CM_BUS_KEY_LEN];
	redisReply *r = NULL;
	const char *type;
	char *text = NULL;
	int rc;

	if ((rc = bus_set_tenant(tenant_id, env, errbuf)) < 0 ||
	    (rc = validate_text(env, &text, errbuf)) < 0)
		goto out;
	type = cJSON_GetObjectItemCaseSensitive(env, "event_type")->valuestring;
	cm_bus_stream_key(tenant_id, key);
	r = run_publish(key, type, text, errbuf);
	if (!r) {
		rc = CM_EIO;
		goto out;
	}
	if (r->type != REDIS_REPLY_STRING) {
		cm_errf(errbuf, "redis publish: unexpected reply");
		rc = CM_EIO;
		goto out;
	}
	if (id_out)
		cm_strlcpy(id_out, r->str, 64);
	bus_count("bz_bus_published_total", "Events published.", NULL, type);
	rc = 0;
out:
	if (r)
		freeReplyObject(r);
	free(text);
	return rc;
}

/* One asynchronous publish in flight. */
struct publish_async {
	cm_bus_published_fn fn;
	void *arg;
	bool scripted; /* the script (not a plain XADD) was sent */
	char key[CM_BUS_KEY_LEN];
	char type[BUS_MAX_TYPE + 1];
	char *text;
};

static void
publish_async_done(redisReply *r, const char *err, void *arg)
{
	struct publish_async *p = arg;
	char errbuf[CM_ERRBUF_LEN] = "";
	struct known_stream *k;
	const char *id = NULL;

	if (r && r->type == REDIS_REPLY_STRING) {
		id = r->str;
		if (p->scripted) {
			k = known_slot(p->key);
			cm_strlcpy(k->key, p->key, sizeof(k->key));
			k->until_ms = cm_now_ms() + BUS_KNOWN_MS;
		}
		bus_count("bz_bus_published_total", "Events published.", NULL,
			  p->type);
	} else if (r) {
		cm_errf(errbuf, "redis publish: %.200s",
			r->type == REDIS_REPLY_ERROR ? r->str
						     : "unexpected reply");
		err = errbuf;
	}
	p->fn(id ? 0 : CM_EIO, id,
	      id    ? NULL
	      : err ? err
		    : "redis publish",
	      p->arg);
	free(p->text);
	free(p);
}

static int
publish_async_send(struct publish_async *p, char errbuf[CM_ERRBUF_LEN])
{
	const char *args[5] = { "2", p->key, CM_BUS_STREAMS, p->type, p->text };
	const char *xadd[7] = { "XADD",	 p->key,  "*",	  "type",
				p->type, "event", p->text };
	struct known_stream *k = known_slot(p->key);

	if (cm_now_ms() < k->until_ms && !strcmp(k->key, p->key))
		return cm_redis_async_argv(7, xadd, 0, publish_async_done, p,
					   errbuf);
	p->scripted = true;
	pthread_once(&bus_sha_once, publish_sha_init);
	return cm_redis_async_eval(bus_publish_lua, bus_publish_sha, 5, args,
				   publish_async_done, p, errbuf);
}

/* An envelope checked and printed by cm_bus_prepare. */
struct cm_bus_prepared {
	char tenant[37];
	char type[BUS_MAX_TYPE + 1];
	char *text;
};

int
cm_bus_prepare(const char *tenant_id, cJSON *env, struct cm_bus_prepared **out,
	       char errbuf[CM_ERRBUF_LEN])
{
	struct cm_bus_prepared *p;
	char *text = NULL;
	int rc;

	*out = NULL;
	if ((rc = bus_set_tenant(tenant_id, env, errbuf)) < 0 ||
	    (rc = validate_text(env, &text, errbuf)) < 0) {
		free(text);
		return rc;
	}
	p = cm_xcalloc(1, sizeof(*p));
	cm_strlcpy(p->tenant, tenant_id, sizeof(p->tenant));
	cm_strlcpy(p->type,
		   cJSON_GetObjectItemCaseSensitive(env, "event_type")
			   ->valuestring,
		   sizeof(p->type));
	p->text = text;
	*out = p;
	return 0;
}

void
cm_bus_prepared_free(struct cm_bus_prepared *p)
{
	if (!p)
		return;
	free(p->text);
	free(p);
}

int
cm_bus_publish_prepared_async(struct cm_bus_prepared *prep,
			      cm_bus_published_fn fn, void *arg,
			      char errbuf[CM_ERRBUF_LEN])
{
	struct publish_async *p;
	int rc;

	if (!prep || !fn) {
		cm_errf(errbuf, "publish: nothing prepared or no callback");
		cm_bus_prepared_free(prep);
		return CM_EINVAL;
	}
	p = cm_xcalloc(1, sizeof(*p));
	p->fn = fn;
	p->arg = arg;
	p->text = prep->text;
	prep->text = NULL;
	cm_strlcpy(p->type, prep->type, sizeof(p->type));
	cm_bus_stream_key(prep->tenant, p->key);
	cm_bus_prepared_free(prep);
	if ((rc = publish_async_send(p, errbuf)) < 0) {
		free(p->text);
		free(p);
	}
	return rc;
}

/* ---- subscriber ---- */

struct cm_bus_sub {
	unsigned magic;
	struct cm_bus_sub_config cfg; /* strings point into the copies */
	char group[49];
	char consumer[65];
	char tenant[37];
	char *patterns[CM_BUS_MAX_PATTERNS + 1];
	char **streams; /* known tenant streams with our group */
	int nstreams;
	int64_t last_refresh_ms, last_claim_ms;
	atomic_int stop;
};

static int
clamp_default(int v, int def, int max)
{
	if (v <= 0)
		return def;
	return v > max ? max : v;
}

static bool
sub_config_ok(const struct cm_bus_sub_config *cfg)
{
	int n = 0;

	if (!cfg || !cfg->fn || !cfg->group || !cfg->consumer ||
	    !*cfg->consumer || strlen(cfg->consumer) > 64 ||
	    !is_ident(cfg->group, "-", 48))
		return false;
	if (cfg->tenant_id && !cm_is_uuid(cfg->tenant_id))
		return false;
	while (cfg->patterns && cfg->patterns[n])
		if (++n > CM_BUS_MAX_PATTERNS)
			return false;
	return true;
}

struct cm_bus_sub *
cm_bus_sub_new(const struct cm_bus_sub_config *cfg)
{
	struct cm_bus_sub *s;
	int i;

	if (!sub_config_ok(cfg))
		return NULL;
	s = cm_xcalloc(1, sizeof(*s));
	s->magic = BUS_SUB_MAGIC;
	s->cfg = *cfg;
	cm_strlcpy(s->group, cfg->group, sizeof(s->group));
	cm_strlcpy(s->consumer, cfg->consumer, sizeof(s->consumer));
	s->cfg.group = s->group;
	s->cfg.consumer = s->consumer;
	if (cfg->tenant_id) {
		cm_strlcpy(s->tenant, cfg->tenant_id, sizeof(s->tenant));
		s->cfg.tenant_id = s->tenant;
	}
	for (i = 0; cfg->patterns && cfg->patterns[i]; i++)
		s->patterns[i] = cm_xstrdup(cfg->patterns[i]);
	s->cfg.patterns = NULL;
	s->cfg.batch = clamp_default(cfg->batch, 16, 1000);
	s->cfg.block_ms = clamp_default(cfg->block_ms, 1000, BUS_MAX_BLOCK_MS);
	s->cfg.claim_idle_ms =
		clamp_default(cfg->claim_idle_ms, 30000, 86400000);
	s->cfg.max_attempts = clamp_default(cfg->max_attempts, 5, 100);
	s->cfg.backoff_ms =
		clamp_default(cfg->backoff_ms, 100, BUS_MAX_BACKOFF_MS);
	s->cfg.refresh_ms = clamp_default(cfg->refresh_ms, 1000, 600000);
	s->last_refresh_ms = INT64_MIN / 2;
	s->last_claim_ms = INT64_MIN / 2;
	return s;
}

static void
free_streams(char **v, int n)
{
	int i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void
cm_bus_sub_free(struct cm_bus_sub *s)
{
	int i;

	if (!s)
		return;
	for (i = 0; s->patterns[i]; i++)
		free(s->patterns[i]);
	free_streams(s->streams, s->nstreams);
	s->magic = 0;
	free(s);
}

void
cm_bus_sub_stop(struct cm_bus_sub *s)
{
	atomic_store(&s->stop, 1);
}

static bool
sub_wants(const struct cm_bus_sub *s, const char *type)
{
	int i;

	if (!s->patterns[0])
		return true;
	for (i = 0; s->patterns[i]; i++)
		if (cm_bus_type_match(s->patterns[i], type))
			return true;
	return false;
}

static bool
has_stream(const struct cm_bus_sub *s, const char *key)
{
	int i;

	for (i = 0; i < s->nstreams; i++)
		if (strcmp(s->streams[i], key) == 0)
			return true;
	return false;
}

/* Make our group on key unless known already; add it to next. */
static int
adopt_stream(struct cm_bus_sub *s, const char *key, char **next, int *n,
	     char errbuf[CM_ERRBUF_LEN])
{
	int rc;

	if (strncmp(key, BUS_STREAM_PREFIX, strlen(BUS_STREAM_PREFIX)) ||
	    !cm_is_uuid(key + strlen(BUS_STREAM_PREFIX)))
		return 0; /* not a tenant stream: ignore */
	if (!has_stream(s, key) &&
	    (rc = cm_redis_xgroup_create(key, s->group, "0", errbuf)) < 0)
		return rc;
	next[(*n)++] = cm_xstrdup(key);
	return 0;
}

/* Re-read the stream set (or the one tenant's stream). */
static int
refresh_streams(struct cm_bus_sub *s, char errbuf[CM_ERRBUF_LEN])
{
	char key[CM_BUS_KEY_LEN];
	redisReply *r = NULL;
	char **next = NULL;
	int n = 0, rc = 0;
	size_t i;

	if (s->cfg.tenant_id) {
		next = cm_xcalloc(1, sizeof(*next));
		cm_bus_stream_key(s->cfg.tenant_id, key);
		rc = adopt_stream(s, key, next, &n, errbuf);
		goto out;
	}
	r = cm_redis_cmdf(errbuf, "SMEMBERS " CM_BUS_STREAMS);
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		rc = CM_EIO;
		goto out;
	}
	next = cm_xcalloc(r->elements + 1, sizeof(*next));
	for (i = 0; i < r->elements && rc == 0; i++)
		if (r->element[i]->type == REDIS_REPLY_STRING)
			rc = adopt_stream(s, r->element[i]->str, next, &n,
					  errbuf);
out:
	if (r)
		freeReplyObject(r);
	if (rc < 0) {
		free_streams(next, n);
		return rc;
	}
	free_streams(s->streams, s->nstreams);
	s->streams = next;
	s->nstreams = n;
	s->last_refresh_ms = cm_now_ms();
	return 0;
}

static const char *
entry_field(const redisReply *fields, const char *name)
{
	size_t i;

	if (!fields || fields->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (i = 0; i + 1 < fields->elements; i += 2)
		if (fields->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(fields->element[i]->str, name) == 0 &&
		    fields->element[i + 1]->type == REDIS_REPLY_STRING)
			return fields->element[i + 1]->str;
	return NULL;
}

/* Dead-letter then ack (in that order: a crash between gives a duplicate
   dead letter, never a lost event). */
static int
dead_letter(struct cm_bus_sub *s, const char *stream, const char *id,
	    const char *type, const char *event, int attempts, const char *why,
	    char errbuf[CM_ERRBUF_LEN])
{
	const char *fields[] = { "stream",   "id",    "type", "event",
				 "attempts", "error", "group" };
	const char *values[7];
	char key[CM_BUS_KEY_LEN], natt[16];
	int rc;

	snprintf(natt, sizeof(natt), "%d", attempts);
	values[0] = stream;
	values[1] = id;
	values[2] = type ? type : "";
	values[3] = event ? event : "";
	values[4] = natt;
	values[5] = why && *why ? why : "unknown error";
	values[6] = s->group;
	cm_bus_dlq_key(stream + strlen(BUS_STREAM_PREFIX), key);
	if ((rc = cm_redis_xadd(key, 0, 7, fields, values, NULL, errbuf)) < 0)
		return rc;
	cm_log_warn("bus: %s %s dead-lettered by %s after %d attempts: %s",
		    stream, id, s->group, attempts, values[5]);
	bus_count("bz_bus_dead_lettered_total", "Events dead-lettered.",
		  s->group, type ? type : "");
	return cm_redis_xack(stream, s->group, id, errbuf);
}

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Run the handler from attempt `first` to max_attempts. 0 on success, else
   the last error in why. */
static int
run_handler(struct cm_bus_sub *s, struct cm_bus_event *ev, int first,
	    char why[CM_ERRBUF_LEN])
{
	int delay = s->cfg.backoff_ms, rc = CM_EIO, a;

	for (a = first; a <= s->cfg.max_attempts; a++) {
		ev->attempt = a;
		why[0] = '\0';
		rc = s->cfg.fn(ev, s->cfg.arg, why);
		if (rc == 0)
			return 0;
		if (rc == CM_EINVAL || rc == CM_EPERM)
			break; /* can never succeed: no retries */
		bus_count("bz_bus_retried_total", "Handler failures retried.",
			  s->group, ev->type);
		if (a == s->cfg.max_attempts)
			break;
		if (atomic_load(&s->stop))
			return CM_EAGAIN; /* stay pending for another consumer
					   */
		sleep_ms(delay);
		delay = delay * 2 > BUS_MAX_BACKOFF_MS ? BUS_MAX_BACKOFF_MS
						       : delay * 2;
	}
	if (!why[0])
		cm_errf(why, "handler failed: %s", cm_strerror(rc));
	return rc < 0 ? rc : CM_EIO;
}

/* The entries of one stream handled in a round, acked with one XACK. Ids
   point into the Redis reply, which outlives the list. */
struct acks {
	const char *stream;
	const char **ids;
	int n, cap;
};

static void
acks_init(struct acks *a, const char *stream, int cap)
{
	a->stream = stream;
	a->ids = cm_xcalloc((size_t)cap, sizeof(*a->ids));
	a->n = 0;
	a->cap = cap;
}

/* XACK what was gathered (in one command), then forget it. */
static int
acks_flush(struct cm_bus_sub *s, struct acks *a, char errbuf[CM_ERRBUF_LEN])
{
	const char **argv;
	redisReply *r;
	int i, rc = 0;

	if (a->n == 0)
		return 0;
	argv = cm_xcalloc((size_t)a->n + 3, sizeof(*argv));
	argv[0] = "XACK";
	argv[1] = a->stream;
	argv[2] = s->group;
	for (i = 0; i < a->n; i++)
		argv[3 + i] = a->ids[i];
	r = cm_redis_cmd(a->n + 3, argv, NULL, errbuf);
	if (!r)
		rc = CM_EIO;
	else if (r->type != REDIS_REPLY_INTEGER) {
		cm_errf(errbuf, "redis xack: unexpected reply");
		rc = CM_EIO;
	}
	if (r)
		freeReplyObject(r);
	free(argv);
	a->n = 0;
	return rc;
}

/* Ack id now (no list) or with the list's next flush. */
static int
ack(struct cm_bus_sub *s, struct acks *a, const char *stream, const char *id,
    char errbuf[CM_ERRBUF_LEN])
{
	if (!a)
		return cm_redis_xack(stream, s->group, id, errbuf);
	if (a->n == a->cap && acks_flush(s, a, errbuf) < 0)
		return CM_EIO;
	a->ids[a->n++] = id;
	return 0;
}

static void
acks_release(struct acks *a)
{
	free(a->ids);
	a->ids = NULL;
}

/* Filter and parse one entry into *ev (*env owned by the caller). 1 when
   the event is for the handler; 0 when it was dealt with here (acked:
   not wanted; dead-lettered: malformed, or delivered too often), or a
   Redis error. */
static int
prepare_entry(struct cm_bus_sub *s, const char *stream, const redisReply *e,
	      int first, struct acks *acks, struct cm_bus_event *ev,
	      cJSON **env, char errbuf[CM_ERRBUF_LEN])
{
	char why[CM_ERRBUF_LEN] = "";
	const char *type, *text, *id, *target;
	int rc;

	*env = NULL;
	if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING)
		return 0; /* an entry deleted meanwhile */
	id = e->element[0]->str;
	type = entry_field(e->element[1], "type");
	text = entry_field(e->element[1], "event");
	if (!type || !text) {
		rc = dead_letter(s, stream, id, type, text, first,
				 "malformed entry: no type or event field",
				 errbuf);
		return rc < 0 ? rc : 0;
	}
	target = entry_field(e->element[1], "target");
	if (!sub_wants(s, type) || (target && strcmp(target, s->group))) {
		rc = ack(s, acks, stream, id, errbuf);
		return rc < 0 ? rc : 0;
	}
	if (first > s->cfg.max_attempts) {
		cm_errf(why,
			"delivered %d times without success (its "
			"consumers crashed or timed out)",
			first - 1);
		rc = dead_letter(s, stream, id, type, text, first - 1, why,
				 errbuf);
		return rc < 0 ? rc : 0;
	}
	*env = cm_json_parse(text, strlen(text), why);
	if (!*env) {
		rc = dead_letter(s, stream, id, type, text, first, why, errbuf);
		return rc < 0 ? rc : 0;
	}
	memset(ev, 0, sizeof(*ev));
	ev->stream = stream;
	ev->id = id;
	ev->tenant_id = stream + strlen(BUS_STREAM_PREFIX);
	ev->type = type;
	ev->env = *env;
	ev->json = text;
	ev->attempt = first;
	ev->replay_id = entry_field(e->element[1], "replay");
	return 1;
}

/* One prepared event through fn (with retries), then ack or dead-letter.
   1 when acked or dead-lettered, 0 when left pending, or a Redis error. */
static int
deliver_one(struct cm_bus_sub *s, struct cm_bus_event *ev, int first,
	    struct acks *acks, char errbuf[CM_ERRBUF_LEN])
{
	char why[CM_ERRBUF_LEN] = "";
	int rc = run_handler(s, ev, first, why);

	if (rc == CM_EAGAIN)
		return 0;
	if (rc < 0) {
		rc = dead_letter(s, ev->stream, ev->id, ev->type, ev->json,
				 ev->attempt, why, errbuf);
		return rc < 0 ? rc : 1;
	}
	bus_count("bz_bus_delivered_total", "Events handled successfully.",
		  s->group, ev->type);
	rc = ack(s, acks, ev->stream, ev->id, errbuf);
	return rc < 0 ? rc : 1;
}

/* One entry: filter, parse, handle (with retries), then ack (now, or
   into acks) or dead-letter. `first` is the attempt number Redis's
   delivery count gives. 1 when the entry was dealt with, 0 when left
   pending, or a Redis error. */
static int
handle_entry(struct cm_bus_sub *s, const char *stream, const redisReply *e,
	     int first, struct acks *acks, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_bus_event ev;
	cJSON *env = NULL;
	int rc;

	rc = prepare_entry(s, stream, e, first, acks, &ev, &env, errbuf);
	if (rc == 1)
		rc = deliver_one(s, &ev, first, acks, errbuf);
	else if (rc == 0)
		rc = 1;
	cJSON_Delete(env);
	return rc;
}

/* The new entries of one stream (first deliveries): with a batch handler,
   every wanted event goes to it at once and is acked when it succeeds;
   when it fails (or without one), each goes through fn on its own. All
   acks of the round are one XACK. */
static int
handle_entries(struct cm_bus_sub *s, const char *stream,
	       const redisReply *entries, int *handled,
	       char errbuf[CM_ERRBUF_LEN])
{
	size_t n = entries->elements, i;
	struct cm_bus_event *evs = cm_xcalloc(n ? n : 1, sizeof(*evs));
	cJSON **envs = cm_xcalloc(n ? n : 1, sizeof(*envs));
	char why[CM_ERRBUF_LEN] = "";
	struct acks acks;
	int nev = 0, rc = 0, k;

	acks_init(&acks, stream, (int)n + 1);
	for (i = 0; i < n && rc >= 0; i++) {
		if (!s->cfg.batch_fn) {
			rc = handle_entry(s, stream, entries->element[i], 1,
					  &acks, errbuf);
			if (rc > 0)
				*handled += rc;
			continue;
		}
		rc = prepare_entry(s, stream, entries->element[i], 1, &acks,
				   &evs[nev], &envs[nev], errbuf);
		if (rc == 1)
			nev++;
		else if (rc == 0)
			(*handled)++;
	}
	if (rc >= 0 && nev > 0) {
		rc = s->cfg.batch_fn(evs, nev, s->cfg.arg, why);
		if (rc == 0) {
			for (k = 0; k < nev && rc >= 0; k++) {
				bus_count("bz_bus_delivered_total",
					  "Events handled successfully.",
					  s->group, evs[k].type);
				rc = ack(s, &acks, stream, evs[k].id, errbuf);
				(*handled)++;
			}
		} else {
			for (k = 0, rc = 0; k < nev && rc >= 0; k++) {
				rc = deliver_one(s, &evs[k], 1, &acks, errbuf);
				if (rc > 0)
					(*handled)++;
			}
		}
	}
	if (rc >= 0)
		rc = acks_flush(s, &acks, errbuf);
	for (k = 0; k < nev; k++)
		cJSON_Delete(envs[k]);
	acks_release(&acks);
	free(envs);
	free(evs);
	return rc < 0 ? rc : 0;
}

/* How often Redis delivered entry id (XPENDING ... id id 1); 1 if unknown. */
static int
delivery_count(struct cm_bus_sub *s, const char *stream, const char *id)
{
	const char *argv[] = { "XPENDING", stream, s->group, id, id, "1" };
	char errbuf[CM_ERRBUF_LEN];
	redisReply *r = cm_redis_cmd(6, argv, NULL, errbuf);
	int n = 1;

	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    r->element[0]->type == REDIS_REPLY_ARRAY &&
	    r->element[0]->elements == 4 &&
	    r->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
		n = (int)r->element[0]->element[3]->integer;
	if (r)
		freeReplyObject(r);
	return n < 1 ? 1 : n;
}

/* Take over entries of this stream idle longer than claim_idle_ms. */
static int
claim_stream(struct cm_bus_sub *s, const char *stream, int *handled,
	     char errbuf[CM_ERRBUF_LEN])
{
	redisReply *r, *entries;
	int rc = 0;
	size_t i;

	r = cm_redis_xautoclaim(stream, s->group, s->consumer,
				s->cfg.claim_idle_ms, NULL, s->cfg.batch,
				errbuf);
	if (!r)
		return CM_EIO;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
		freeReplyObject(r);
		cm_errf(errbuf, "redis xautoclaim: unexpected reply");
		return CM_EIO;
	}
	entries = r->element[1];
	for (i = 0; entries->type == REDIS_REPLY_ARRAY &&
		    i < entries->elements && rc >= 0;
	     i++) {
		const redisReply *e = entries->element[i];
		int first = 1;

		if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1)
			first = delivery_count(s, stream, e->element[0]->str);
		rc = handle_entry(s, stream, e, first, NULL, errbuf);
		if (rc > 0)
			(*handled)++;
	}
	freeReplyObject(r);
	return rc < 0 ? rc : 0;
}

static int
claim_all(struct cm_bus_sub *s, int *handled, char errbuf[CM_ERRBUF_LEN])
{
	int64_t now = cm_now_ms();
	int i, rc;

	if (now - s->last_claim_ms < s->cfg.claim_idle_ms / 2)
		return 0;
	for (i = 0; i < s->nstreams; i++)
		if ((rc = claim_stream(s, s->streams[i], handled, errbuf)) < 0)
			return rc;
	s->last_claim_ms = now;
	return 0;
}

/* One XREADGROUP reply: [[stream, [entry...]]...] or nil. */
static int
handle_read(struct cm_bus_sub *s, const redisReply *r, int *handled,
	    char errbuf[CM_ERRBUF_LEN])
{
	size_t i;
	int rc;

	if (r->type == REDIS_REPLY_NIL)
		return 0;
	if (r->type != REDIS_REPLY_ARRAY)
		goto bad;
	for (i = 0; i < r->elements; i++) {
		const redisReply *sr = r->element[i];

		if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2 ||
		    sr->element[0]->type != REDIS_REPLY_STRING ||
		    sr->element[1]->type != REDIS_REPLY_ARRAY)
			goto bad;
		rc = handle_entries(s, sr->element[0]->str, sr->element[1],
				    handled, errbuf);
		if (rc < 0)
			return rc;
	}
	return 0;
bad:
	cm_errf(errbuf, "redis xreadgroup: unexpected reply");
	return CM_EIO;
}

/* XREADGROUP over streams[from, from + n) with BLOCK block_ms. */
static int
read_chunk(struct cm_bus_sub *s, int from, int n, int block_ms, int *handled,
	   char errbuf[CM_ERRBUF_LEN])
{
	const char **argv = cm_xcalloc((size_t)(10 + 2 * n), sizeof(*argv));
	char counts[16], blocks[16];
	redisReply *r;
	int argc = 0, i, rc;

	snprintf(counts, sizeof(counts), "%d", s->cfg.batch);
	snprintf(blocks, sizeof(blocks), "%d", block_ms);
	argv[argc++] = "XREADGROUP";
	argv[argc++] = "GROUP";
	argv[argc++] = s->group;
	argv[argc++] = s->consumer;
	argv[argc++] = "COUNT";
	argv[argc++] = counts;
	argv[argc++] = "BLOCK";
	argv[argc++] = blocks;
	argv[argc++] = "STREAMS";
	for (i = 0; i < n; i++)
		argv[argc++] = s->streams[from + i];
	for (i = 0; i < n; i++)
		argv[argc++] = ">";
	r = cm_redis_cmd(argc, argv, NULL, errbuf);
	free(argv);
	if (!r)
		return CM_EIO;
	rc = handle_read(s, r, handled, errbuf);
	freeReplyObject(r);
	return rc;
}

int
cm_bus_sub_poll(struct cm_bus_sub *s, int *handled, char errbuf[CM_ERRBUF_LEN])
{
	int nhandled = 0, rc = 0, from, n, nchunks, block;

	if (cm_now_ms() - s->last_refresh_ms >= s->cfg.refresh_ms &&
	    (rc = refresh_streams(s, errbuf)) < 0)
		goto out;
	if (s->nstreams == 0) {
		sleep_ms(s->cfg.block_ms);
		goto out;
	}
	if ((rc = claim_all(s, &nhandled, errbuf)) < 0)
		goto out;
	nchunks = (s->nstreams + BUS_CHUNK - 1) / BUS_CHUNK;
	block = s->cfg.block_ms / nchunks;
	for (from = 0; from < s->nstreams; from += BUS_CHUNK) {
		n = s->nstreams - from < BUS_CHUNK ? s->nstreams - from
						   : BUS_CHUNK;
		rc = read_chunk(s, from, n,
				nhandled ? 1
				: block	 ? block
					 : 1,
				&nhandled, errbuf);
		if (rc < 0)
			goto out;
	}
out:
	if (rc < 0) { /* e.g. NOGROUP after a stream was deleted: re-adopt */
		free_streams(s->streams, s->nstreams);
		s->streams = NULL;
		s->nstreams = 0;
		s->last_refresh_ms = INT64_MIN / 2;
	}
	if (handled)
		*handled = nhandled;
	return rc;
}

void
cm_bus_sub_run(struct cm_bus_sub *s)
{
	char errbuf[CM_ERRBUF_LEN];

	while (!atomic_load(&s->stop)) {
		errbuf[0] = '\0';
		if (cm_bus_sub_poll(s, NULL, errbuf) < 0) {
			cm_log_err("bus %s: %s", s->group, errbuf);
			sleep_ms(1000);
		}
	}
}

/* ---- inbox and outbox ---- */

int
cm_bus_inbox_claim(PGconn *conn, const char *table, const char *tenant_id,
		   const char *event_id, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf sql = CM_BUF_INIT(512);
	const char *params[2] = { event_id, tenant_id };
	PGresult *res = NULL;
	int rc;

	if (!cm_db_table_ok(table) || !cm_is_uuid(event_id) ||
	    !cm_is_uuid(tenant_id)) {
		cm_errf(errbuf, "inbox: bad table, tenant or event id");
		rc = CM_EINVAL;
		goto out;
	}
	cm_buf_printf(&sql,
		      "INSERT INTO %s (event_id, tenant_id) VALUES ($1, $2) "
		      "ON CONFLICT (event_id) DO NOTHING",
		      table);
	rc = cm_db_query(conn, cm_buf_str(&sql), 2, params, &res, errbuf);
	if (rc == 0 && strcmp(PQcmdTuples(res), "1") != 0)
		rc = CM_EEXIST;
out:
	PQclear(res);
	cm_buf_release(&sql);
	return rc;
}

int
cm_bus_outbox_add(PGconn *conn, const char *table, const char *tenant_id,
		  cJSON *env, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf sql = CM_BUF_INIT(512);
	const char *params[3];
	char *text = NULL;
	int rc;

	if (!cm_db_table_ok(table)) {
		cm_errf(errbuf, "outbox: bad table name");
		rc = CM_EINVAL;
		goto out;
	}
	if ((rc = bus_set_tenant(tenant_id, env, errbuf)) < 0 ||
	    (rc = cm_bus_validate(env, errbuf)) < 0)
		goto out;
	text = cm_json_print(env);
	params[0] = tenant_id;
	params[1] =
		cJSON_GetObjectItemCaseSensitive(env, "event_id")->valuestring;
	params[2] = text;
	cm_buf_printf(&sql,
		      "INSERT INTO %s (tenant_id, event_id, event) "
		      "VALUES ($1, $2, $3)",
		      table);
	rc = cm_db_query(conn, cm_buf_str(&sql), 3, params, NULL, errbuf);
out:
	free(text);
	cm_buf_release(&sql);
	return rc;
}

struct relay {
	const char *table;
	int limit;
	int published;
	int err; /* a publish failure, reported after the commit */
	char errbuf[CM_ERRBUF_LEN];
};

/* Publish one outbox row and mark it. */
static int
relay_row(PGconn *conn, struct relay *rl, PGresult *rows, int i,
	  char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf sql = CM_BUF_INIT(256);
	const char *id = PQgetvalue(rows, i, 0);
	const char *text = PQgetvalue(rows, i, 2);
	cJSON *env = cm_json_parse(text, strlen(text), rl->errbuf);
	int rc;

	if (!env) {
		rl->err = CM_EINVAL;
		rc = 0;
		goto out;
	}
	rc = cm_bus_publish(PQgetvalue(rows, i, 1), env, NULL, rl->errbuf);
	if (rc < 0) {
		rl->err = rc;
		rc = 0;
		goto out;
	}
	cm_buf_printf(&sql, "UPDATE %s SET published_at = now() WHERE id = $1",
		      rl->table);
	rc = cm_db_query(conn, cm_buf_str(&sql), 1, &id, NULL, errbuf);
	if (rc == 0)
		rl->published++;
out:
	cJSON_Delete(env);
	cm_buf_release(&sql);
	return rc;
}

static int
relay_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct relay *rl = arg;
	struct cm_buf sql = CM_BUF_INIT(512);
	char lim[16];
	const char *p = lim;
	PGresult *rows = NULL;
	int rc, i;

	rc = cm_db_query(conn, "SELECT set_config('app.bus_relay', 'on', true)",
			 0, NULL, NULL, errbuf);
	if (rc < 0)
		goto out;
	snprintf(lim, sizeof(lim), "%d", rl->limit);
	cm_buf_printf(&sql,
		      "SELECT id, tenant_id, event FROM %s WHERE "
		      "published_at IS NULL ORDER BY id LIMIT $1 "
		      "FOR UPDATE SKIP LOCKED",
		      rl->table);
	if ((rc = cm_db_query(conn, cm_buf_str(&sql), 1, &p, &rows, errbuf)) <
	    0)
		goto out;
	for (i = 0; i < PQntuples(rows) && !rl->err && rc == 0; i++)
		rc = relay_row(conn, rl, rows, i, errbuf);
out:
	PQclear(rows);
	cm_buf_release(&sql);
	return rc;
}

int
cm_bus_outbox_relay(const char *table, int limit, int *published,
		    char errbuf[CM_ERRBUF_LEN])
{
	struct relay rl = { table, limit, 0, 0, "" };
	int rc;

	if (published)
		*published = 0;
	if (!cm_db_table_ok(table) || limit < 1 || limit > 10000) {
		cm_errf(errbuf, "outbox relay: bad table or limit");
		return CM_EINVAL;
	}
	rc = cm_db_tx(relay_work, &rl, errbuf);
	if (rc == 0 && published)
		*published = rl.published;
	if (rc == 0 && rl.err) {
		cm_errf(errbuf, "outbox relay: %s", rl.errbuf);
		rc = rl.err;
	}
	return rc;
}

struct sweep {
	const char *table;
	int64_t keep_s;
	int limit;
	long long removed;
};

static int
sweep_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct sweep *sw = arg;
	struct cm_buf sql = CM_BUF_INIT(512);
	char keep[24], lim[16];
	const char *p[2] = { keep, lim };
	PGresult *res = NULL;
	int rc;

	rc = cm_db_query(conn, "SELECT set_config('app.bus_relay', 'on', true)",
			 0, NULL, NULL, errbuf);
	if (rc < 0)
		return rc;
	snprintf(keep, sizeof(keep), "%lld", (long long)sw->keep_s);
	snprintf(lim, sizeof(lim), "%d", sw->limit);
	cm_buf_printf(&sql,
		      "DELETE FROM %s WHERE id IN (SELECT id FROM %s WHERE "
		      "published_at < now() - make_interval(secs => "
		      "$1::bigint) ORDER BY id LIMIT $2::int)",
		      sw->table, sw->table);
	rc = cm_db_query(conn, cm_buf_str(&sql), 2, p, &res, errbuf);
	if (rc == 0)
		sw->removed = strtoll(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	cm_buf_release(&sql);
	return rc;
}

int
cm_bus_outbox_sweep(const char *table, int64_t keep_s, int limit,
		    long long *removed, char errbuf[CM_ERRBUF_LEN])
{
	struct sweep sw = { table, keep_s, limit, 0 };
	int rc;

	if (removed)
		*removed = 0;
	if (!cm_db_table_ok(table) || keep_s < 0 || limit < 1 ||
	    limit > 100000) {
		cm_errf(errbuf, "outbox sweep: bad table, age or limit");
		return CM_EINVAL;
	}
	rc = cm_db_tx(sweep_work, &sw, errbuf);
	if (rc == 0 && removed)
		*removed = sw.removed;
	return rc;
}

/* ---- dead letters ---- */

static bool parse_id(const char *s, unsigned long long *ms,
		     unsigned long long *seq);

/* Move one dead letter back onto its tenant stream, for its group only. */
static const char bus_retry_lua[] =
	"local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) "
	"if #e == 0 then return false end "
	"local f, m = e[1][2], {} "
	"for i = 1, #f, 2 do m[f[i]] = f[i + 1] end "
	"if not m['group'] or not m['type'] or not m['event'] then "
	"return false end "
	"local id = redis.call('XADD', KEYS[2], '*', 'type', m['type'], "
	"'event', m['event'], 'target', m['group']) "
	"redis.call('XDEL', KEYS[1], ARGV[1]) "
	"return id";

bool
cm_bus_valid_entry_id(const char *id)
{
	unsigned long long ms, seq;

	return id && strlen(id) < 48 && strchr(id, '-') && id[0] >= '0' &&
	       id[0] <= '9' && parse_id(id, &ms, &seq);
}

int
cm_bus_dlq_retry(const char *tenant_id, const char *dlq_id, char id_out[64],
		 char errbuf[CM_ERRBUF_LEN])
{
	char dlq[CM_BUS_KEY_LEN], stream[CM_BUS_KEY_LEN];
	const char *argv[6];
	redisReply *r;
	int rc = 0;

	if (!cm_is_uuid(tenant_id) || !cm_bus_valid_entry_id(dlq_id)) {
		cm_errf(errbuf, "dead letter retry: bad tenant or id");
		return CM_EINVAL;
	}
	cm_bus_dlq_key(tenant_id, dlq);
	cm_bus_stream_key(tenant_id, stream);
	argv[0] = "EVAL";
	argv[1] = bus_retry_lua;
	argv[2] = "2";
	argv[3] = dlq;
	argv[4] = stream;
	argv[5] = dlq_id;
	if (!(r = cm_redis_cmd(6, argv, NULL, errbuf)))
		return CM_EIO;
	if (r->type == REDIS_REPLY_STRING) {
		if (id_out)
			cm_strlcpy(id_out, r->str, 64);
	} else {
		cm_errf(errbuf, "no such dead letter");
		rc = CM_ENOENT;
	}
	freeReplyObject(r);
	return rc;
}

int
cm_bus_replay_append(const char *tenant_id, const char *group, const char *type,
		     const char *event_json, const char *replay_id,
		     char errbuf[CM_ERRBUF_LEN])
{
	const char *fields[] = { "type", "event", "target", "replay" };
	const char *values[4] = { type, event_json, group, replay_id };
	char key[CM_BUS_KEY_LEN];

	if (!cm_is_uuid(tenant_id) || !is_ident(group, "-", 48) ||
	    !cm_bus_valid_type(type) || !event_json || !cm_is_uuid(replay_id)) {
		cm_errf(errbuf, "replay append: bad arguments");
		return CM_EINVAL;
	}
	cm_bus_stream_key(tenant_id, key);
	return cm_redis_xadd(key, 0, 4, fields, values, NULL, errbuf);
}

/* ---- retention ---- */

static bool
parse_id(const char *s, unsigned long long *ms, unsigned long long *seq)
{
	char *end;

	if (!s || !*s)
		return false;
	*ms = strtoull(s, &end, 10);
	*seq = 0;
	if (*end == '-')
		*seq = strtoull(end + 1, &end, 10);
	return *end == '\0';
}

/* a < b as stream ids. */
static bool
id_less(const char *a, const char *b)
{
	unsigned long long am, as, bm, bs;

	if (!parse_id(a, &am, &as) || !parse_id(b, &bm, &bs))
		return false;
	return am < bm || (am == bm && as < bs);
}

static const redisReply *
map_get(const redisReply *m, const char *key)
{
	size_t i;

	for (i = 0; m->type == REDIS_REPLY_ARRAY && i + 1 < m->elements; i += 2)
		if (m->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(m->element[i]->str, key) == 0)
			return m->element[i + 1];
	return NULL;
}

/* The group's floor: its first pending id, else its last delivered id. */
static int
group_floor(const char *stream, const redisReply *g, char floor[64],
	    char errbuf[CM_ERRBUF_LEN])
{
	const redisReply *name = map_get(g, "name");
	const redisReply *pend = map_get(g, "pending");
	const redisReply *last = map_get(g, "last-delivered-id");
	const char *argv[3];
	redisReply *r;

	if (!name || !pend || !last || name->type != REDIS_REPLY_STRING ||
	    last->type != REDIS_REPLY_STRING) {
		cm_errf(errbuf, "redis xinfo groups: unexpected reply");
		return CM_EIO;
	}
	cm_strlcpy(floor, last->str, 64);
	if (pend->type != REDIS_REPLY_INTEGER || pend->integer == 0)
		return 0;
	argv[0] = "XPENDING";
	argv[1] = stream;
	argv[2] = name->str;
	if (!(r = cm_redis_cmd(3, argv, NULL, errbuf)))
		return CM_EIO;
	if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
	    r->element[1]->type == REDIS_REPLY_STRING)
		cm_strlcpy(floor, r->element[1]->str, 64);
	freeReplyObject(r);
	return 0;
}

static int
stream_floor(const char *stream, char floor[64], char errbuf[CM_ERRBUF_LEN])
{
	const char *argv[] = { "XINFO", "GROUPS", stream };
	char f[64];
	redisReply *r = cm_redis_cmd(3, argv, NULL, errbuf);
	size_t i;
	int rc = 0;

	floor[0] = '\0';
	if (!r)
		return CM_EIO;
	for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		if ((rc = group_floor(stream, r->element[i], f, errbuf)) < 0)
			break;
		if (!floor[0] || id_less(f, floor))
			cm_strlcpy(floor, f, 64);
	}
	freeReplyObject(r);
	return rc;
}

int
cm_bus_trim(const char *stream, const char *min_id, long long *removed,
	    char errbuf[CM_ERRBUF_LEN])
{
	const char *argv[4] = { "XTRIM", stream, "MINID", NULL };
	char floor[64];
	redisReply *r;
	int rc;

	if (removed)
		*removed = 0;
	if (!stream || (min_id && !parse_id(min_id, &(unsigned long long){ 0 },
					    &(unsigned long long){ 0 }))) {
		cm_errf(errbuf, "bus trim: bad stream or id");
		return CM_EINVAL;
	}
	if ((rc = stream_floor(stream, floor, errbuf)) < 0)
		return rc;
	if (!floor[0])
		return 0; /* no group: nobody said what may go */
	argv[3] = min_id && id_less(min_id, floor) ? min_id : floor;
	if (!(r = cm_redis_cmd(4, argv, NULL, errbuf)))
		return CM_EIO;
	if (removed && r->type == REDIS_REPLY_INTEGER)
		*removed = r->integer;
	freeReplyObject(r);
	return 0;
}
