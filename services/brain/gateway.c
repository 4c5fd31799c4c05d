/*
 * gateway.c - /api/<service>/... to the service behind it.
 *
 * By the time a request gets here libcommon has verified the caller (user
 * token or API key) and resolved the tenant. The gateway then checks, in
 * order: the API key's scope for the service (403 insufficient_scope),
 * the tenant's services_enabled (403 service_not_enabled), the tenant's
 * rate limit (429 rate_limited with Retry-After) while counting the call
 * in the tenant's usage (an asynchronous Redis round trip: the request
 * is deferred first, so the worker never waits; with large plans a worker
 * reserves up to 10 ms of the plan's tokens per call, cm_rate_lease_*,
 * and serves the next calls from them), and forwards with
 * common/proxy.h: method, path, query and body as received; the identity
 * headers (X-Service-Token with a gateway token for the target,
 * X-Tenant-ID, X-User-ID, X-User-Roles, X-Request-ID, X-Forwarded-For and
 * -Host) set by brain after the client's copies and its Authorization
 * header are removed. The tenant's plan (services, requests per minute)
 * is cached per worker thread for gw_plan_ttl_ms; gateway tokens per
 * thread for half their 60 s life.
 */
#include "brain.h"

#include "common/db.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/ratelimit.h"
#include "common/tenant.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

#define TOKEN_TTL_S 60
#define TOKEN_REUSE_S 30
#define TOKEN_SLOTS 64
#define PLAN_SLOTS 256
#define LEASE_BATCH_MAX 64

struct gw_route {
	const char *prefix; /* /api/<prefix>/ */
	enum brain_peer peer;
	const char *service; /* the target's service name (token aud) */
	const char *enabled; /* its services_enabled name; NULL: always on */
	const char *scope;   /* API key scope "<scope>:read|write" */
	const char *from;    /* path prefix rewritten, or NULL */
	const char *to;
};

static const struct gw_route gw_routes[] = {
	{ "crm", BRAIN_PEER_CRM, "crm", "crm", "crm", NULL, NULL },
	{ "cms", BRAIN_PEER_CMS, "cms", "cms", "cms", NULL, NULL },
	{ "agents", BRAIN_PEER_AGENTS, "agents", "ai_agents", "ai_agents", NULL,
	  NULL },
	{ "telegram", BRAIN_PEER_TELEGRAM, "telegram", "telegram", "telegram",
	  NULL, NULL },
	{ "images", BRAIN_PEER_IMAGE, "image", "images", "images", NULL, NULL },
	{ "workflows", BRAIN_PEER_TEMPORAL_WORKER, "temporal-worker",
	  "workflows", "workflows", NULL, NULL },
	{ "events", BRAIN_PEER_EVENT_BUS, "event-bus", NULL, "events", NULL,
	  NULL },
	{ "secrets", BRAIN_PEER_VAULT_CLIENT, "vault-client", NULL, "secrets",
	  NULL, NULL },
};

#define NROUTES (sizeof(gw_routes) / sizeof(gw_routes[0]))

/* A tenant's plan as the gateway needs it. */
struct plan {
	char tenant[40];
	unsigned enabled; /* bit i: gw_routes[i] is enabled */
	long per_minute;  /* api_requests_per_minute */
	int64_t until_ms;
};

struct token_slot {
	char key[512];
	char *token;
	int64_t until_s;
};

static __thread struct plan plans[PLAN_SLOTS];
static __thread struct token_slot *tokens; /* TOKEN_SLOTS, per thread */
static pthread_key_t tokens_key;	   /* frees them at thread exit */
static pthread_once_t tokens_once = PTHREAD_ONCE_INIT;

static void
tokens_free(void *p)
{
	struct token_slot *t = p;
	int i;

	for (i = 0; i < TOKEN_SLOTS; i++)
		free(t[i].token);
	free(t);
}

static void
tokens_key_make(void)
{
	if (pthread_key_create(&tokens_key, tokens_free))
		abort();
}

static struct token_slot *
tokens_of_thread(void)
{
	if (!tokens) {
		pthread_once(&tokens_once, tokens_key_make);
		tokens = cm_xcalloc(TOKEN_SLOTS, sizeof(*tokens));
		pthread_setspecific(tokens_key, tokens);
	}
	return tokens;
}

int
brain_gateway_init(struct brain *b, char errbuf[CM_ERRBUF_LEN])
{
	size_t i;
	int rc;

	for (i = 0; i < NROUTES; i++) {
		const struct gw_route *r = &gw_routes[i];
		struct cm_proxy_upstream *up = &b->upstream[r->peer];

		rc = cm_proxy_upstream_parse(r->service, b->peer_url[r->peer],
					     up, errbuf);
		if (rc < 0)
			return rc;
		up->timeout_ms = (int)b->gw_timeout_ms;
		up->idle_timeout_s = (int)b->gw_idle_timeout_s;
	}
	return 0;
}

/* "{crm,cms}" -> the bits of the routes those names enable. */
static unsigned
parse_services(const char *arr)
{
	unsigned bits = 0;
	char name[32];
	const char *p = arr;
	size_t i, n;

	while (p && *p) {
		while (*p == '{' || *p == ',' || *p == '"')
			p++;
		n = strcspn(p, ",}\"");
		if (!n)
			break;
		if (n < sizeof(name)) {
			memcpy(name, p, n);
			name[n] = '\0';
			for (i = 0; i < NROUTES; i++)
				if (gw_routes[i].enabled &&
				    !strcmp(gw_routes[i].enabled, name))
					bits |= 1u << i;
		}
		p += n;
	}
	return bits;
}

static int
plan_load(const char *tenant_id, struct plan *out, char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"SELECT services_enabled::text, subscription_tier, limits::text"
		" FROM brain.tenants WHERE id = $1::uuid";
	const char *params[1] = { tenant_id };
	PGconn *conn = cm_db_conn(errbuf);
	PGresult *res = NULL;
	cJSON *overrides = NULL, *limits = NULL;
	const cJSON *rpm;
	int rc;

	if (!conn)
		return CM_EIO;
	rc = cm_db_query(conn, sql, 1, params, &res, errbuf);
	if (rc == 0 && PQntuples(res) != 1)
		rc = CM_ENOENT;
	if (rc == 0) {
		overrides = cJSON_Parse(PQgetvalue(res, 0, 2));
		limits = brain_limits_effective(PQgetvalue(res, 0, 1),
						overrides);
		rpm = cJSON_GetObjectItemCaseSensitive(
			limits, "api_requests_per_minute");
		out->per_minute = cJSON_IsNumber(rpm) && rpm->valuedouble >= 1
					  ? (long)rpm->valuedouble
					  : 60;
		out->enabled = parse_services(PQgetvalue(res, 0, 0));
		cm_strlcpy(out->tenant, tenant_id, sizeof(out->tenant));
	}
	cJSON_Delete(overrides);
	cJSON_Delete(limits);
	PQclear(res);
	return rc;
}

static int
plan_get(const struct brain *b, const char *tenant_id, struct plan **out,
	 char errbuf[CM_ERRBUF_LEN])
{
	struct plan *p = &plans[cm_hash_str(tenant_id) % PLAN_SLOTS];
	int64_t now = cm_now_ms();
	int rc;

	if (!strcmp(p->tenant, tenant_id) && now < p->until_ms) {
		*out = p;
		return 0;
	}
	p->tenant[0] = '\0';
	rc = plan_load(tenant_id, p, errbuf);
	if (rc < 0)
		return rc;
	p->until_ms = now + b->gw_plan_ttl_ms;
	*out = p;
	return 0;
}

static void
roles_join(const struct cm_principal *p, char *out, size_t cap)
{
	size_t len = 0;
	int i;

	out[0] = '\0';
	for (i = 0; i < p->nroles && i < CM_ROLES_MAX; i++)
		len += (size_t)snprintf(out + len, len < cap ? cap - len : 0,
					"%s%s", i ? "," : "", p->roles[i]);
}

/* A gateway token for (target, user, tenant), reused while fresh. */
static const char *
token_get(const struct brain *b, const char *target,
	  const struct cm_principal *user, const char *roles,
	  char errbuf[CM_ERRBUF_LEN])
{
	struct token_slot *t;
	char key[sizeof(t->key)];
	int64_t now = cm_now_s();
	char *tok = NULL;

	snprintf(key, sizeof(key), "%s|%s|%s|%s|%d", target, user->sub,
		 user->tenant_id, roles, user->is_api_key);
	t = &tokens_of_thread()[cm_hash_str(key) % TOKEN_SLOTS];
	if (t->token && now < t->until_s && !strcmp(t->key, key))
		return t->token;
	if (cm_gateway_token_mint(b->service_secret, target, TOKEN_TTL_S, user,
				  &tok, errbuf) < 0)
		return NULL;
	free(t->token);
	t->token = tok;
	t->until_s = now + TOKEN_REUSE_S;
	cm_strlcpy(t->key, key, sizeof(t->key));
	return tok;
}

static bool
scope_allows(const struct cm_principal *p, const char *scope, bool write)
{
	char want[48];

	snprintf(want, sizeof(want), "%s:write", scope);
	if (cm_principal_has_role(p, want))
		return true; /* write includes read */
	snprintf(want, sizeof(want), "%s:read", scope);
	return !write && cm_principal_has_role(p, want);
}

static const struct gw_route *
route_of(const char *path)
{
	const char *seg = path + strlen("/api/");
	size_t i, n = strcspn(seg, "/");

	for (i = 0; i < NROUTES; i++)
		if (strlen(gw_routes[i].prefix) == n &&
		    !strncmp(gw_routes[i].prefix, seg, n))
			return &gw_routes[i];
	return NULL;
}

/* Tokens a worker reserves at once (ratelimit.h leases): 10 ms of the
   plan's rate, 1 to 64. Plans up to 11,999 requests a minute take one
   at a time (exact); larger ones save a Redis call per request. */
static long
lease_batch(long per_minute)
{
	long b = per_minute / 6000;

	return b < 1 ? 1 : b > LEASE_BATCH_MAX ? LEASE_BATCH_MAX : b;
}

/* The rate headers, and 429 when refused (0 otherwise). */
static int
rate_answer(struct cm_req *req, const struct cm_rate_result *rr,
	    long per_minute)
{
	char v[32];

	snprintf(v, sizeof(v), "%ld", rr->limit);
	cm_req_set_header(req, "X-RateLimit-Limit", v);
	snprintf(v, sizeof(v), "%ld", rr->remaining);
	cm_req_set_header(req, "X-RateLimit-Remaining", v);
	if (rr->allowed)
		return 0;
	snprintf(v, sizeof(v), "%ld", (rr->retry_after_ms + 999) / 1000);
	cm_req_set_header(req, "Retry-After", v);
	return cm_req_fail(req, 429, "rate_limited",
			   "this tenant's plan allows %ld API requests per "
			   "minute",
			   per_minute);
}

static const char *const strip[] = {
	"Authorization",   "X-Service-Token",  "X-Tenant-ID",
	"X-User-ID",	   "X-User-Roles",     "X-Request-ID",
	"X-Forwarded-For", "X-Forwarded-Host", NULL
};

static int
forward(struct brain *b, struct cm_req *req, const struct gw_route *r)
{
	char errbuf[CM_ERRBUF_LEN] = "",
	     roles[CM_ROLES_MAX * (CM_ROLE_LEN + 1)];
	char xff[320], path[4096];
	const struct cm_principal *p = cm_req_principal(req);
	const char *tenant = cm_req_tenant_id(req), *prev, *uri, *tok;
	struct cm_principal user = *p;
	size_t n;

	cm_strlcpy(user.tenant_id, tenant, sizeof(user.tenant_id));
	roles_join(&user, roles, sizeof(roles));
	tok = token_get(b, r->service, &user, roles, errbuf);
	if (!tok) {
		cm_log_err("gateway token: %s", errbuf);
		return cm_req_fail(req, 500, "internal", "internal error");
	}
	uri = cm_req_uri(req);
	if (r->from && !strncmp(uri, r->from, (n = strlen(r->from))))
		snprintf(path, sizeof(path), "%s%s", r->to, uri + n);
	else
		snprintf(path, sizeof(path), "%s", uri);
	if (strlen(uri) >= sizeof(path) - 64)
		return cm_req_fail(req, 414, "uri_too_long",
				   "the request target is too long");
	prev = cm_req_header(req, "X-Forwarded-For");
	if (prev && strlen(prev) < 256)
		snprintf(xff, sizeof(xff), "%s, %s", prev, cm_req_peer(req));
	else
		snprintf(xff, sizeof(xff), "%s", cm_req_peer(req));
	{
		const char *set[] = { "X-Service-Token",
				      tok,
				      "X-Tenant-ID",
				      tenant,
				      "X-User-ID",
				      user.sub,
				      "X-User-Roles",
				      roles,
				      "X-Request-ID",
				      cm_req_id(req),
				      "X-Forwarded-For",
				      xff,
				      "X-Forwarded-Host",
				      cm_req_host(req),
				      NULL };
		struct cm_proxy_request pr = { path, strip, set };

		cm_proxy_forward(req, &b->upstream[r->peer], &pr);
	}
	return 0;
}

/* A request waiting for its rate-limit answer (deferred). */
struct gw_call {
	struct brain *b;
	struct cm_req *req;
	const struct gw_route *r;
	long per_minute;
	bool cancelled; /* the client left: req is gone */
};

/* The client left while Redis had not answered. */
static void
gw_close(struct cm_req *req, void *arg)
{
	struct gw_call *g = arg;

	g->cancelled = true;
	cm_req_reply_json(req, 503, NULL); /* sends nothing, frees req */
}

/* The take-and-count answer: 429, or forward. Redis trouble lets the
   request through, uncounted (logged). */
static void
gw_rated(int rc, const struct cm_rate_result *rr, const char *err, void *arg)
{
	struct gw_call *g = arg;
	struct cm_req *req = g->req;
	int status = 0;

	if (g->cancelled) {
		free(g);
		return;
	}
	cm_req_on_close(req, NULL, NULL);
	if (rc < 0)
		cm_log_warn("gateway rate limit and count unavailable: %s",
			    err ? err : "?");
	else
		status = rate_answer(req, rr, g->per_minute);
	if (!status)
		status = forward(g->b, req, g->r);
	if (status)
		cm_req_reply_json(req, status, NULL);
	free(g);
}

void
brain_h_gateway(struct cm_req *req0, void *arg)
{
	struct brain *b = brain_from(arg);
	const struct cm_principal *p = cm_req_principal(req0);
	const char *tenant = cm_req_tenant_id(req0);
	const char *m = cm_req_method(req0);
	char errbuf[CM_ERRBUF_LEN] = "", key[64];
	const struct gw_route *r = route_of(cm_req_path(req0));
	bool write = strcmp(m, "GET") && strcmp(m, "HEAD");
	struct plan *plan = NULL;
	struct gw_call *g;
	int rc;

	if (!r || !p || !tenant) { /* the route table and hooks rule out */
		cm_req_reply_json(req0, 404, NULL);
		return;
	}
	if (p->is_api_key && !scope_allows(p, r->scope, write)) {
		cm_req_fail(req0, 403, "insufficient_scope",
			    "this API key lacks the %s:%s scope", r->scope,
			    write ? "write" : "read");
		cm_req_reply_json(req0, 403, NULL);
		return;
	}
	rc = plan_get(b, tenant, &plan, errbuf);
	if (rc < 0) {
		cm_log_err("gateway plan of the tenant: %s", errbuf);
		cm_req_fail(req0, 503, "dependency_unavailable",
			    "tenant registry unavailable");
		cm_req_reply_json(req0, 503, NULL);
		return;
	}
	if (r->enabled && !(plan->enabled & (1u << (r - gw_routes)))) {
		cm_req_fail(req0, 403, "service_not_enabled",
			    "%s is not enabled for this tenant", r->enabled);
		cm_req_reply_json(req0, 403, NULL);
		return;
	}
	/* from here on the worker does not wait: not on Redis, not on the
	   upstream */
	g = cm_xcalloc(1, sizeof(*g));
	g->b = b;
	g->r = r;
	g->per_minute = plan->per_minute;
	g->req = cm_req_defer(req0);
	if (!g->req) {
		free(g);
		cm_req_reply_json(req0, 500, NULL);
		return;
	}
	cm_req_on_close(g->req, gw_close, g);
	snprintf(key, sizeof(key), "gw:%s", plan->tenant);
	if (cm_rate_lease_take_async(key, plan->per_minute, plan->per_minute,
				     lease_batch(plan->per_minute),
				     plan->tenant, BRAIN_USAGE_API_CALLS,
				     gw_rated, g, errbuf) < 0)
		gw_rated(CM_EIO, NULL, errbuf, g);
}
