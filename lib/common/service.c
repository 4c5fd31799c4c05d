/* service.c - start-up, the common routes, the auth hook, and shutdown. */
#include "common/service.h"
#include "common/buf.h"
#include "common/db.h"
#include "common/httpclient.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/metrics.h"
#include "common/redis.h"
#include "common/tenant.h"

#include <ctype.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/banned.h"

#define SERVICE_MAGIC 0x5e41c3u
#define MAX_CHECKS 8
#define READY_TIMEOUT_MS 1000
#define REVOKED_PREFIX "bz:auth:revoked:"

struct ready_check {
	const char *name;
	cm_ready_fn fn;
	void *arg;
};

struct cm_service {
	unsigned magic;
	const struct cm_service_desc *desc;
	struct cm_config *cfg;
	struct cm_config_item *items;
	struct cm_auth *auth;
	struct cm_http *http;
	struct cm_route *routes;
	void *arg;
	int64_t started_s;
	struct ready_check checks[MAX_CHECKS];
	int nchecks;
	sigset_t sigs;	     /* SIGTERM, SIGINT: blocked, taken by sigwait */
	bool stop_requested; /* a stop signal came during start-up */
};

/* Settings every service reads; the port item is added per service. */
static const struct cm_config_item common_items[] = {
	{ "POSTGRES_HOST", CM_CFG_STRING, "127.0.0.1", 0, 253, 0,
	  "PostgreSQL host" },
	{ "POSTGRES_PORT", CM_CFG_PORT, "5432", 1, 65535, 0,
	  "PostgreSQL port" },
	{ "POSTGRES_DB", CM_CFG_STRING, "bizosaas", 1, 63, 0,
	  "PostgreSQL database" },
	{ "POSTGRES_USER", CM_CFG_STRING, NULL, 1, 63, CM_CFG_REQUIRED,
	  "PostgreSQL role of this service (bz_<service>)" },
	{ "POSTGRES_PASSWORD", CM_CFG_STRING, NULL, 0, 256, CM_CFG_SECRET,
	  "PostgreSQL password" },
	{ "DATABASE_URL", CM_CFG_STRING, NULL, 0, 2048, CM_CFG_SECRET,
	  "postgresql:// URI; overrides POSTGRES_*" },
	{ "DB_STARTUP_WAIT_S", CM_CFG_INT, "30", 0, 600, 0,
	  "seconds to wait for PostgreSQL at start-up" },
	{ "REDIS_HOST", CM_CFG_STRING, "127.0.0.1", 0, 253, 0, "Redis host" },
	{ "REDIS_PORT", CM_CFG_PORT, "6379", 1, 65535, 0, "Redis port" },
	{ "REDIS_PASSWORD", CM_CFG_STRING, NULL, 0, 512, CM_CFG_SECRET,
	  "Redis password" },
	{ "REDIS_DB", CM_CFG_INT, "0", 0, 15, 0, "Redis database number" },
	{ "REDIS_URL", CM_CFG_STRING, NULL, 0, 2048, CM_CFG_SECRET,
	  "redis:// URL; overrides REDIS_*" },
	{ "JWT_SECRET_KEY", CM_CFG_STRING, NULL, 32, 4096,
	  CM_CFG_REQUIRED | CM_CFG_SECRET, "HS256 key for user tokens" },
	{ "JWT_ALGORITHM", CM_CFG_STRING, "HS256", 5, 5, 0,
	  "HS256, RS256 or ES256; anything else is refused" },
	{ "JWT_PUBLIC_KEY_FILE", CM_CFG_STRING, NULL, 0, 4096, 0,
	  "PEM public key for RS256/ES256" },
	{ "JWT_ISSUER", CM_CFG_STRING, "bizosaas-brain", 1, 128, 0,
	  "required iss of user tokens" },
	{ "JWT_AUDIENCE", CM_CFG_STRING, "bizosaas", 1, 128, 0,
	  "required aud of user tokens" },
	{ "SERVICE_SECRET", CM_CFG_STRING, NULL, 32, 4096,
	  CM_CFG_REQUIRED | CM_CFG_SECRET, "HS256 key for service tokens" },
	{ "LOG_LEVEL", CM_CFG_LEVEL, "info", 0, 0, 0,
	  "debug, info, warn, error" },
	{ "DOMAIN", CM_CFG_STRING, "localhost", 1, 253, 0,
	  "base domain; tenants answer at <slug>.<DOMAIN>" },
	{ "BIND_ADDR", CM_CFG_STRING, "127.0.0.1", 1, 64, 0,
	  "listen address (0.0.0.0 in containers)" },
	{ "HTTP_THREADS", CM_CFG_INT, "2", 1, 64, 0, "worker threads" },
	{ "HTTP_MAX_BODY", CM_CFG_INT, "1048576", 1024, 268435456, 0,
	  "largest request body in bytes" },
	{ "HTTP_MAX_HEADER", CM_CFG_INT, "16384", 1024, 1048576, 0,
	  "largest request header block in bytes" },
	{ "HTTP_READ_TIMEOUT_MS", CM_CFG_INT, "15000", 100, 600000, 0,
	  "cut off clients that stall while sending" },
	{ "HTTP_WRITE_TIMEOUT_MS", CM_CFG_INT, "15000", 100, 600000, 0,
	  "cut off clients that stall while reading" },
	{ "HTTP_DRAIN_TIMEOUT_MS", CM_CFG_INT, "10000", 0, 600000, 0,
	  "grace period for in-flight requests on SIGTERM" },
	{ "CORS_ORIGINS", CM_CFG_STRING, NULL, 0, 4096, 0,
	  "comma-separated allowed origins" },
	{ "TENANT_CACHE_TTL_MS", CM_CFG_INT, "2000", 1, 5000, 0,
	  "tenant cache lifetime (suspensions apply within it)" },
	{ "MIGRATIONS_DIR", CM_CFG_STRING, NULL, 0, 4096, 0,
	  "this service's migrations (default services/<name>/migrations)" },
};

#define NCOMMON (sizeof(common_items) / sizeof(common_items[0]))

static struct cm_config_item *
build_items(const struct cm_service_desc *desc)
{
	size_t nextra = 0, n;
	struct cm_config_item *items;
	char port[16];

	while (desc->config && desc->config[nextra].name)
		nextra++;
	n = NCOMMON + 1 + nextra;
	items = cm_xcalloc(n + 1, sizeof(*items));
	memcpy(items, common_items, sizeof(common_items));
	snprintf(port, sizeof(port), "%d", desc->default_port);
	items[NCOMMON] = (struct cm_config_item){
		desc->port_env, CM_CFG_PORT, cm_xstrdup(port),		 1,
		65535,		0,	     "HTTP port of this service"
	};
	if (nextra)
		memcpy(items + NCOMMON + 1, desc->config,
		       nextra * sizeof(*items));
	return items;
}

static void
free_items(struct cm_config_item *items)
{
	if (!items)
		return;
	free((char *)items[NCOMMON].def);
	free(items);
}

const struct cm_config *
cm_service_config(const struct cm_service *svc)
{
	return svc->cfg;
}

const struct cm_auth *
cm_service_auth(const struct cm_service *svc)
{
	return svc->auth;
}

const char *
cm_service_name(const struct cm_service *svc)
{
	return svc->desc->name;
}

void
cm_service_add_check(struct cm_service *svc, const char *name, cm_ready_fn fn,
		     void *arg)
{
	if (svc->nchecks >= MAX_CHECKS) {
		cm_log_err("too many readiness checks; %s ignored", name);
		return;
	}
	svc->checks[svc->nchecks++] = (struct ready_check){ name, fn, arg };
}

static struct cm_service *the_service; /* one service per process */

/* GET /health - alive, version, uptime. */
static void
handle_health(struct cm_req *req, void *arg)
{
	struct cm_service *svc = the_service;
	cJSON *json = cJSON_CreateObject();

	(void)arg;
	cJSON_AddStringToObject(json, "status", "ok");
	cJSON_AddStringToObject(json, "service", svc->desc->name);
	cJSON_AddStringToObject(json, "version", CM_VERSION);
	cJSON_AddNumberToObject(json, "uptime_s",
				(double)(cm_now_s() - svc->started_s));
	cm_req_reply_json(req, 200, json);
	cJSON_Delete(json);
}

static int
check_postgres(void *arg, char errbuf[CM_ERRBUF_LEN])
{
	(void)arg;
	return cm_db_ping(READY_TIMEOUT_MS, errbuf);
}

static int
check_redis(void *arg, char errbuf[CM_ERRBUF_LEN])
{
	(void)arg;
	return cm_redis_ping(errbuf);
}

/* Run one check into checks{}; true when it is up. */
static bool
run_check(const struct ready_check *c, cJSON *checks, struct cm_buf *down)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	int64_t t0 = cm_now_ms();
	cJSON *one = cJSON_AddObjectToObject(checks, c->name);
	int rc = c->fn(c->arg, errbuf);

	cm_metrics_dep_set(c->name, rc == 0);
	cJSON_AddStringToObject(one, "status", rc == 0 ? "up" : "down");
	cJSON_AddNumberToObject(one, "latency_ms", (double)(cm_now_ms() - t0));
	if (rc == 0)
		return true;
	cJSON_AddStringToObject(one, "error",
				errbuf[0] ? errbuf : cm_strerror(rc));
	cm_buf_printf(down, "%s%s", down->len ? ", " : "", c->name);
	return false;
}

/* GET /health/ready - every dependency, each with a short timeout. */
static void
handle_ready(struct cm_req *req, void *arg)
{
	struct cm_service *svc = the_service;
	struct cm_buf down = CM_BUF_INIT(1024);
	cJSON *json = cJSON_CreateObject(), *err, *checks;
	bool ok = true;
	int i;

	(void)arg;
	checks = cJSON_CreateObject();
	for (i = 0; i < svc->nchecks; i++)
		ok &= run_check(&svc->checks[i], checks, &down);
	if (ok) {
		cJSON_AddStringToObject(json, "status", "ready");
	} else {
		err = cJSON_AddObjectToObject(json, "error");
		cJSON_AddStringToObject(err, "code", "not_ready");
		cm_buf_printf(&down, " down");
		cJSON_AddStringToObject(err, "message", cm_buf_str(&down));
		cJSON_AddStringToObject(err, "request_id", cm_req_id(req));
		cJSON_AddStringToObject(json, "status", "not_ready");
		cm_log_warn("not ready: %s", cm_buf_str(&down));
	}
	cJSON_AddItemToObject(json, "checks", checks);
	cm_req_reply_json(req, ok ? 200 : 503, json);
	cJSON_Delete(json);
	cm_buf_release(&down);
}

/* GET /metrics - Prometheus text. */
static void
handle_metrics(struct cm_req *req, void *arg)
{
	struct cm_buf out = CM_BUF_INIT(4 << 20);

	(void)arg;
	cm_metrics_render(&out);
	cm_req_reply(req, 200, "text/plain; version=0.0.4", out.data, out.len);
	cm_buf_release(&out);
}

/* GET /whoami - the verified caller and tenant of this request, as this
   service sees them; what every other route will be scoped to. */
static void
handle_whoami(struct cm_req *req, void *arg)
{
	const struct cm_principal *p = cm_req_principal(req);
	const struct cm_tenant *t = cm_req_tenant(req);
	cJSON *json = cJSON_CreateObject(), *tj, *roles;
	int i;

	(void)arg;
	cJSON_AddStringToObject(json, "subject", p->sub);
	cJSON_AddBoolToObject(json, "service_token", p->is_service);
	if (p->via[0])
		cJSON_AddStringToObject(json, "via", p->via);
	roles = cJSON_AddArrayToObject(json, "roles");
	for (i = 0; i < p->nroles; i++)
		cJSON_AddItemToArray(roles, cJSON_CreateString(p->roles[i]));
	tj = cJSON_AddObjectToObject(json, "tenant");
	cJSON_AddStringToObject(tj, "id", t->id);
	cJSON_AddStringToObject(tj, "slug", t->slug);
	cJSON_AddStringToObject(tj, "name", t->name);
	cJSON_AddStringToObject(tj, "status", t->status);
	cJSON_AddStringToObject(tj, "subscription_tier", t->tier);
	cm_req_reply_json(req, 200, json);
	cJSON_Delete(json);
}

static const struct cm_route common_routes[] = {
	{ "GET", "/whoami", handle_whoami, 0 },
	{ "GET", "/health", handle_health, CM_ROUTE_PUBLIC },
	{ "GET", "/health/ready", handle_ready, CM_ROUTE_PUBLIC },
	{ "GET", "/metrics", handle_metrics, CM_ROUTE_PUBLIC },
};

#define NCOMMON_ROUTES (sizeof(common_routes) / sizeof(common_routes[0]))

static struct cm_route *
build_routes(const struct cm_route *own)
{
	size_t n = 0;
	struct cm_route *routes;

	while (own && own[n].method)
		n++;
	routes = cm_xcalloc(NCOMMON_ROUTES + n + 1, sizeof(*routes));
	memcpy(routes, common_routes, sizeof(common_routes));
	if (n)
		memcpy(routes + NCOMMON_ROUTES, own, n * sizeof(*routes));
	return routes;
}

/* Revocation hook: brain marks a logged-out jti in Redis until it would
   expire. Fails closed: when Redis cannot answer, the token is refused.
   A "not revoked" answer is remembered per thread for REVOKE_CACHE_MS
   (one Redis round trip per token and second, not per request), unless
   this process revoked something since (cm_service_revocations_changed):
   a logout is seen at once by the process that made it, within
   REVOKE_CACHE_MS by the others. */
#define REVOKE_CACHE_SLOTS 256
#define REVOKE_CACHE_MS 1000

struct revoke_slot {
	char jti[64];
	int64_t until_ms;
	unsigned epoch;
};

static atomic_uint revoke_epoch;
static __thread struct revoke_slot revoke_cache[REVOKE_CACHE_SLOTS];

void
cm_service_revocations_changed(void)
{
	atomic_fetch_add(&revoke_epoch, 1);
}

static struct revoke_slot *
revoke_slot_of(const char *jti)
{
	return &revoke_cache[cm_hash_str(jti) % REVOKE_CACHE_SLOTS];
}

static bool
jti_revoked(const char *jti, void *ctx)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	char key[128];
	struct revoke_slot *slot = revoke_slot_of(jti);
	unsigned epoch = atomic_load(&revoke_epoch);
	int64_t now = cm_now_ms();
	redisReply *r;
	bool revoked;

	(void)ctx;
	if (slot->epoch == epoch && now < slot->until_ms &&
	    !strcmp(slot->jti, jti))
		return false;
	snprintf(key, sizeof(key), REVOKED_PREFIX "%s", jti);
	r = cm_redis_cmdf(errbuf, "EXISTS %s", key);
	if (!r) {
		cm_log_warn("revocation check: %s", errbuf);
		return true;
	}
	revoked = r->type != REDIS_REPLY_INTEGER || r->integer != 0;
	freeReplyObject(r);
	if (!revoked && strlen(jti) < sizeof(slot->jti)) {
		cm_strlcpy(slot->jti, jti, sizeof(slot->jti));
		slot->epoch = epoch;
		slot->until_ms = now + REVOKE_CACHE_MS;
	}
	return revoked;
}

/* Absent, or equal to want (an absent want is ""). */
static bool
header_is(struct cm_req *req, const char *name, const char *want)
{
	const char *v = cm_req_header(req, name);

	return !v || !strcmp(v, want);
}

static int
auth_service_token(struct cm_service *svc, struct cm_req *req,
		   const char *token)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct cm_principal p;
	const char *secret = cm_config_str(svc->cfg, "SERVICE_SECRET");

	if (cm_service_token_verify(secret, svc->desc->name, token, &p,
				    errbuf) < 0) {
		cm_log_info("service token refused: %s", errbuf);
		return cm_req_fail(req, 401, "invalid_service_token",
				   "service token refused");
	}
	/* the gateway's identity headers must say what its token says */
	if (p.via[0] && (!header_is(req, "X-User-ID", p.sub) ||
			 !header_is(req, "X-Tenant-ID", p.tenant_id))) {
		cm_log_info("gateway headers disagree with its token");
		return cm_req_fail(req, 401, "invalid_service_token",
				   "service token refused");
	}
	cm_req_set_principal(req, &p);
	return 0;
}

static int
auth_user_token(struct cm_service *svc, struct cm_req *req, const char *token)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct cm_principal p;
	int rc = CM_ENOENT;

	if (svc->desc->authenticate) {
		memset(&p, 0, sizeof(p));
		rc = svc->desc->authenticate(req, token, &p, svc->arg);
		if (rc == 0) {
			cm_req_set_principal(req, &p);
			return 0;
		}
		if (rc != CM_ENOENT)
			snprintf(errbuf, CM_ERRBUF_LEN,
				 "refused by the service's authenticator");
	}
	if (rc != CM_ENOENT ||
	    cm_auth_verify(svc->auth, token, &p, errbuf) < 0) {
		cm_log_info("token refused: %s", errbuf);
		cm_req_set_header(req, "WWW-Authenticate",
				  "Bearer error=\"invalid_token\"");
		return cm_req_fail(req, 401, "invalid_token",
				   "the access token is invalid or expired");
	}
	cm_req_set_principal(req, &p);
	return 0;
}

/* The auth hook: a service token (X-Service-Token) or a user token
   (Authorization: Bearer). Public routes never reach it. */
static int
auth_hook(struct cm_req *req, void *arg)
{
	struct cm_service *svc = arg;
	const struct cm_route *route = cm_req_route(req);
	const char *svc_token = cm_req_header(req, "X-Service-Token");
	const char *authz = cm_req_header(req, "Authorization");
	int rc;

	if (svc_token)
		rc = auth_service_token(svc, req, svc_token);
	else if (authz && !strncasecmp(authz, "Bearer ", 7))
		rc = auth_user_token(svc, req, authz + 7);
	else {
		cm_req_set_header(req, "WWW-Authenticate", "Bearer");
		rc = cm_req_fail(req, 401, "unauthenticated",
				 "sign in first: no access token given");
	}
	if (rc)
		return rc;
	if (route && (route->flags & CM_ROUTE_SERVICE_ONLY) &&
	    !cm_req_principal(req)->is_service)
		return cm_req_fail(req, 403, "forbidden",
				   "only platform services may call this");
	return 0;
}

static int
tenant_hook(struct cm_req *req, void *arg)
{
	(void)arg;
	return cm_tenant_resolve(req);
}

static int
read_file(const char *path, struct cm_buf *out)
{
	char chunk[4096];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return -errno;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		cm_buf_add(out, chunk, n);
	fclose(f);
	return cm_buf_error(out);
}

static int
setup_auth(struct cm_service *svc, char errbuf[CM_ERRBUF_LEN])
{
	const char *file = cm_config_str(svc->cfg, "JWT_PUBLIC_KEY_FILE");
	const char *secret = cm_config_str(svc->cfg, "JWT_SECRET_KEY");
	struct cm_buf pem = CM_BUF_INIT(65536);
	struct cm_auth_config ac = { 0 };
	int rc;

	if (cm_auth_parse_alg(cm_config_str(svc->cfg, "JWT_ALGORITHM"),
			      &ac.alg) < 0) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "JWT_ALGORITHM must be HS256, RS256 or ES256");
		return CM_EINVAL;
	}
	ac.key = (const unsigned char *)secret;
	ac.key_len = strlen(secret);
	if (ac.alg != CM_JWT_HS256) {
		if (!file || (rc = read_file(file, &pem)) < 0) {
			snprintf(errbuf, CM_ERRBUF_LEN,
				 "JWT_PUBLIC_KEY_FILE unreadable for %s",
				 cm_config_str(svc->cfg, "JWT_ALGORITHM"));
			cm_buf_release(&pem);
			return CM_EINVAL;
		}
		ac.key = (const unsigned char *)pem.data;
		ac.key_len = pem.len;
	}
	ac.issuer = cm_config_str(svc->cfg, "JWT_ISSUER");
	ac.audience = cm_config_str(svc->cfg, "JWT_AUDIENCE");
	ac.leeway_s = 30;
	svc->auth = cm_auth_new(&ac, errbuf);
	cm_buf_release(&pem);
	if (!svc->auth)
		return CM_EINVAL;
	cm_auth_set_revocation(svc->auth, jti_revoked, svc);
	return 0;
}

static int
setup_db(struct cm_service *svc, char errbuf[CM_ERRBUF_LEN])
{
	const struct cm_config *c = svc->cfg;
	struct cm_db_config dc = { 0 };
	char *conninfo;
	int rc;

	conninfo = cm_db_conninfo(cm_config_str(c, "POSTGRES_HOST"),
				  (int)cm_config_int(c, "POSTGRES_PORT"),
				  cm_config_str(c, "POSTGRES_DB"),
				  cm_config_str(c, "POSTGRES_USER"),
				  cm_config_str(c, "POSTGRES_PASSWORD"));
	dc.conninfo = conninfo;
	dc.application_name = svc->desc->name;
	dc.connect_timeout_s = 3;
	dc.statement_timeout_ms = 30000;
	rc = cm_db_init(&dc, errbuf);
	cm_memzero(conninfo, strlen(conninfo));
	free(conninfo);
	return rc;
}

/* Wait for PostgreSQL (containers start together), then refuse a role
   that row-level security would not apply to. */
static int
wait_db(struct cm_service *svc, char errbuf[CM_ERRBUF_LEN])
{
	int64_t deadline = cm_now_ms() +
			   cm_config_int(svc->cfg, "DB_STARTUP_WAIT_S") * 1000;
	const struct timespec pause = { 1, 0 };
	int rc;

	while ((rc = cm_db_ping(2000, errbuf)) < 0 && cm_now_ms() < deadline) {
		cm_log_warn("waiting for postgres: %s", errbuf);
		/* A stop signal while waiting ends start-up cleanly (PID 1 in
		   a container must not ignore SIGTERM). */
		if (sigtimedwait(&svc->sigs, NULL, &pause) > 0) {
			svc->stop_requested = true;
			cm_errf(errbuf, "stopped while waiting for postgres");
			return CM_EAGAIN;
		}
	}
	if (rc < 0)
		return rc;
	return cm_db_check_role(errbuf);
}

static int
run_migrations(struct cm_service *svc, char errbuf[CM_ERRBUF_LEN])
{
	const char *dir = cm_config_str(svc->cfg, "MIGRATIONS_DIR");
	char def[256];

	if (!dir) {
		snprintf(def, sizeof(def), "services/%s/migrations",
			 svc->desc->name);
		if (access(def, R_OK | X_OK) != 0) {
			cm_log_warn("no migrations directory %s; set "
				    "MIGRATIONS_DIR",
				    def);
			return 0;
		}
		dir = def;
	}
	return cm_db_migrate(dir, svc->desc->schema, errbuf);
}

static int
setup_redis(struct cm_service *svc, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_redis_config rc = { 0 };

	rc.host = cm_config_str(svc->cfg, "REDIS_HOST");
	rc.port = (int)cm_config_int(svc->cfg, "REDIS_PORT");
	rc.password = cm_config_str(svc->cfg, "REDIS_PASSWORD");
	rc.db = (int)cm_config_int(svc->cfg, "REDIS_DB");
	rc.connect_timeout_ms = 1000;
	rc.command_timeout_ms = 2000;
	return cm_redis_init(&rc, errbuf);
}

static int
load_config(struct cm_service *svc)
{
	char *problems = NULL;
	enum cm_log_level level = CM_LOG_INFO;

	svc->items = build_items(svc->desc);
	svc->cfg = cm_config_new(svc->items);
	if (cm_config_load(svc->cfg, &problems) < 0) {
		fprintf(stderr, "%s: %s", svc->desc->name,
			problems ? problems : "invalid configuration\n");
		free(problems);
		return CM_EINVAL;
	}
	cm_log_parse_level(cm_config_str(svc->cfg, "LOG_LEVEL"), &level);
	cm_log_init(svc->desc->name, level);
	return 0;
}

/* Everything before serving: config, auth, PostgreSQL, Redis, tenants. */
static int
service_setup(struct cm_service *svc, bool migrate_only)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	int rc;

	if ((rc = load_config(svc)) < 0)
		return rc;
	if ((rc = setup_auth(svc, errbuf)) < 0 ||
	    (rc = setup_db(svc, errbuf)) < 0 ||
	    (rc = wait_db(svc, errbuf)) < 0 ||
	    (rc = run_migrations(svc, errbuf)) < 0)
		goto fail;
	if (migrate_only)
		return 0;
	if ((rc = setup_redis(svc, errbuf)) < 0)
		goto fail;
	rc = cm_tenant_cache_init(
		(int)cm_config_int(svc->cfg, "TENANT_CACHE_TTL_MS"),
		cm_config_str(svc->cfg, "DOMAIN"));
	if (rc < 0) {
		snprintf(errbuf, CM_ERRBUF_LEN, "DOMAIN is too long");
		goto fail;
	}
	cm_service_add_check(svc, "postgres", check_postgres, NULL);
	cm_service_add_check(svc, "redis", check_redis, NULL);
	return 0;
fail:
	cm_log_err("start-up failed: %s", errbuf[0] ? errbuf : cm_strerror(rc));
	return rc;
}

static int
start_http(struct cm_service *svc, char errbuf[CM_ERRBUF_LEN])
{
	const struct cm_config *c = svc->cfg;
	struct cm_http_hooks hooks = { auth_hook, tenant_hook, svc };
	struct cm_http_config hc = { 0 };

	hc.service = svc->desc->name;
	hc.bind_addr = cm_config_str(c, "BIND_ADDR");
	hc.port = (int)cm_config_int(c, svc->desc->port_env);
	hc.threads = (int)cm_config_int(c, "HTTP_THREADS");
	hc.max_body = (size_t)cm_config_int(c, "HTTP_MAX_BODY");
	hc.max_header = (size_t)cm_config_int(c, "HTTP_MAX_HEADER");
	hc.read_timeout_ms = (int)cm_config_int(c, "HTTP_READ_TIMEOUT_MS");
	hc.write_timeout_ms = (int)cm_config_int(c, "HTTP_WRITE_TIMEOUT_MS");
	hc.drain_timeout_ms = (int)cm_config_int(c, "HTTP_DRAIN_TIMEOUT_MS");
	hc.cors_origins = cm_config_str(c, "CORS_ORIGINS");
	svc->routes = build_routes(svc->desc->routes);
	svc->http = cm_http_new(&hc, svc->routes, svc->arg, &hooks);
	if (!svc->http) {
		snprintf(errbuf, CM_ERRBUF_LEN, "invalid route table");
		return CM_EINVAL;
	}
	return cm_http_start(svc->http, errbuf);
}

/* Block the stop signals in every thread; the main thread sigwaits. */
static void
block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	pthread_sigmask(SIG_BLOCK, set, NULL);
}

static int
serve(struct cm_service *svc)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	int sig = 0, rc;

	if (svc->desc->start && (rc = svc->desc->start(svc, &svc->arg)) < 0) {
		cm_log_err("start hook failed: %s", cm_strerror(rc));
		return rc;
	}
	if ((rc = start_http(svc, errbuf)) < 0) {
		cm_log_err("http: %s", errbuf);
		return rc;
	}
	cm_log_info("listening on %s:%d with %d threads",
		    cm_config_str(svc->cfg, "BIND_ADDR"),
		    cm_http_port(svc->http),
		    (int)cm_config_int(svc->cfg, "HTTP_THREADS"));
	sigwait(&svc->sigs, &sig);
	cm_log_info("signal %d: draining", sig);
	cm_http_stop(svc->http);
	rc = cm_http_wait(svc->http);
	if (rc < 0)
		cm_log_warn("drain cut off in-flight requests");
	if (svc->desc->stop)
		svc->desc->stop(svc, svc->arg);
	cm_log_info("stopped");
	return 0;
}

static void
service_free(struct cm_service *svc)
{
	cm_http_free(svc->http);
	free(svc->routes);
	cm_auth_free(svc->auth);
	cm_tenant_cache_shutdown();
	cm_redis_shutdown();
	cm_db_shutdown();
	cm_config_free(svc->cfg);
	free_items(svc->items);
	curl_global_cleanup();
}

/* --healthcheck: GET /health/ready on our own port; exit 0 when ready. */
static int
healthcheck(const struct cm_service_desc *desc)
{
	struct cm_fetch_opts opts = { 0 };
	struct cm_fetch_response resp = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	const char *port = getenv(desc->port_env);
	int64_t p = desc->default_port;
	char url[64];
	int rc;

	if (port && *port && cm_parse_i64(port, 1, 65535, &p) < 0) {
		fprintf(stderr, "%s: bad %s\n", desc->name, desc->port_env);
		return 1;
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/health/ready", (int)p);
	opts.connect_timeout_ms = 1000;
	opts.total_timeout_ms = 3000;
	cm_http_client_global();
	rc = cm_fetch("GET", url, NULL, 0, &opts, &resp, errbuf);
	if (rc == 0 && resp.status != 200)
		fprintf(stderr, "%s: not ready: %s\n", desc->name,
			cm_buf_str(&resp.body));
	else if (rc < 0)
		fprintf(stderr, "%s: %s\n", desc->name, errbuf);
	rc = rc == 0 && resp.status == 200 ? 0 : 1;
	cm_fetch_response_release(&resp);
	return rc;
}

static void
usage(const struct cm_service_desc *desc, struct cm_config_item *items)
{
	const struct cm_service_cmd *c;

	printf("usage: %s [--help | --version | --healthcheck | --migrate]\n",
	       desc->name);
	for (c = desc->commands; c && c->flag; c++)
		printf("       %s %s%s%s\n           %s\n", desc->name, c->flag,
		       c->args ? " " : "", c->args ? c->args : "", c->help);
	printf("\nSettings (environment variables):\n");
	cm_config_help(items, stdout);
}

/* The service's own command argv[1] names ("FLAG", "FLAG ARG" or
   "FLAG=ARG") and its argument; NULL when none does. */
static const struct cm_service_cmd *
find_command(const struct cm_service_desc *desc, int argc, char **argv,
	     const char **arg)
{
	const struct cm_service_cmd *c;
	size_t n;

	for (c = desc->commands; argc > 1 && c && c->flag; c++) {
		n = strlen(c->flag);
		if (strncmp(argv[1], c->flag, n) != 0)
			continue;
		if (argv[1][n] == '=' && argc == 2) {
			*arg = argv[1] + n + 1;
			return c;
		}
		if (argv[1][n] == '\0' && argc <= 3) {
			*arg = argc == 3 ? argv[2] : NULL;
			return c;
		}
	}
	return NULL;
}

int
cm_service_main(const struct cm_service_desc *desc, int argc, char **argv)
{
	struct cm_service svc = { .magic = SERVICE_MAGIC, .desc = desc };
	const char *flag = argc > 1 ? argv[1] : "", *cmd_arg = NULL;
	const struct cm_service_cmd *cmd =
		find_command(desc, argc, argv, &cmd_arg);
	bool migrate = !strcmp(flag, "--migrate");
	int rc, cmd_status = 1;

	if (!strcmp(flag, "--help") || !strcmp(flag, "-h")) {
		svc.items = build_items(desc);
		usage(desc, svc.items);
		free_items(svc.items);
		return 0;
	}
	if (!strcmp(flag, "--version")) {
		printf("%s %s\n", desc->name, CM_VERSION);
		return 0;
	}
	if (!strcmp(flag, "--healthcheck"))
		return healthcheck(desc);
	if (*flag && !migrate && !cmd) {
		fprintf(stderr, "%s: unknown argument %s (try --help)\n",
			desc->name, flag);
		return 2;
	}
	/* No fastbins (the per-thread tcache still serves small blocks):
	   with them, every malloc of 1 KiB or more (an evbuffer chain for a
	   reply, say) first consolidates all the small blocks freed since,
	   which was 1-2 % of a busy worker's time. */
	mallopt(M_MXFAST, 0);
	signal(SIGPIPE, SIG_IGN); /* hiredis and libpq write(2) to sockets */
	block_signals(&svc.sigs); /* before any thread; see wait_db, serve */
	the_service = &svc;
	svc.started_s = cm_now_s();
	cm_log_init(desc->name, CM_LOG_INFO);
	cm_metrics_init(desc->name);
	if (cm_http_client_global() < 0)
		return 1;
	rc = service_setup(&svc, migrate);
	if (rc == 0 && cmd)
		cmd_status = cmd->run(&svc, cmd_arg);
	else if (rc == 0 && !migrate)
		rc = serve(&svc);
	service_free(&svc);
	the_service = NULL;
	if (svc.stop_requested)
		return 0;
	if (rc == 0 && cmd)
		return cmd_status;
	if (rc == CM_EINVAL)
		return 2;
	return rc < 0 ? 1 : 0;
}
