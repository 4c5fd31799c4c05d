/*
 * health.c - /health/all and /health/<service>: brain's own dependencies
 * and every peer's /health/ready, checked in parallel (one thread per
 * peer, each fetch bounded by PEER_TIMEOUT_MS), so the answer comes within
 * about one timeout however many peers are down. /health/vault (and
 * /health/vault-client) adds vault-client's GET /v1/backend, fetched with
 * a service token: which backend serves, Vault's seal and standby state
 * and the token's time to live (never a secret).
 */
#include "brain.h"

#include "common/buf.h"
#include "common/auth.h"
#include "common/db.h"
#include "common/httpclient.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/redis.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

#define PEER_TIMEOUT_MS 2000
#define DEP_TIMEOUT_MS 1000

/* Peer names as /health/<name> accepts them, the seed's aliases too. */
static const struct {
	const char *name;
	int peer;
} aliases[] = {
	{ "vault", BRAIN_PEER_VAULT_CLIENT },
	{ "ai-agents", BRAIN_PEER_AGENTS },
};

static const char *const peer_names[BRAIN_NPEERS] = {
	"cms",
	"crm",
	"image",
	"telegram",
	"temporal-worker",
	"vault-client",
	"agents",
	"event-bus",
	"dashboard-server",
};

struct probe {
	const char *name;
	const char *url;
	bool up;
	int64_t ms;
	char error[CM_ERRBUF_LEN];
	pthread_t thread;
	bool started;
};

static void *
probe_run(void *arg)
{
	struct probe *p = arg;
	struct cm_fetch_opts opts = { 0 };
	struct cm_fetch_response resp = { 0 };
	struct cm_buf url = CM_BUF_INIT(4096);
	int64_t t0 = cm_now_ms();
	int rc;

	opts.connect_timeout_ms = PEER_TIMEOUT_MS / 2;
	opts.total_timeout_ms = PEER_TIMEOUT_MS;
	opts.max_response = 65536;
	cm_buf_printf(&url, "%s/health/ready", p->url);
	rc = cm_fetch("GET", cm_buf_str(&url), NULL, 0, &opts, &resp, p->error);
	p->up = rc == 0 && resp.status == 200;
	if (rc == 0 && !p->up)
		snprintf(p->error, sizeof(p->error), "not ready (HTTP %ld)",
			 resp.status);
	p->ms = cm_now_ms() - t0;
	cm_fetch_response_release(&resp);
	cm_buf_release(&url);
	return NULL;
}

static void
probe_json(const struct probe *p, cJSON *into)
{
	cJSON *o = cJSON_AddObjectToObject(into, p->name);

	cJSON_AddStringToObject(o, "status", p->up ? "up" : "down");
	cJSON_AddNumberToObject(o, "latency_ms", (double)p->ms);
	if (!p->up)
		cJSON_AddStringToObject(o, "error",
					p->error[0] ? p->error : "unreachable");
}

/* Run the probes at once, falling back to inline when no thread. */
static void
run_probes(struct probe *ps, int n)
{
	int i;

	for (i = 0; i < n; i++)
		ps[i].started = pthread_create(&ps[i].thread, NULL, probe_run,
					       &ps[i]) == 0;
	for (i = 0; i < n; i++) {
		if (ps[i].started)
			pthread_join(ps[i].thread, NULL);
		else
			probe_run(&ps[i]);
	}
}

static bool
dep_check(const char *name, int rc, int64_t t0, const char *errbuf, cJSON *into)
{
	struct probe p = { .name = name, .up = rc == 0 };

	p.ms = cm_now_ms() - t0;
	cm_strlcpy(p.error, errbuf[0] ? errbuf : cm_strerror(rc),
		   sizeof(p.error));
	probe_json(&p, into);
	return p.up;
}

/* GET /health/all - healthy, degraded (a peer is down) or down (brain's
   own PostgreSQL or Redis is): 200, 200 or 503. */
void
brain_h_health_all(struct cm_req *req, void *arg)
{
	struct brain *b = brain_from(arg);
	struct probe ps[BRAIN_NPEERS];
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *json = cJSON_CreateObject(), *checks;
	bool core = true, peers = true;
	int64_t t0;
	int i;

	memset(ps, 0, sizeof(ps));
	for (i = 0; i < BRAIN_NPEERS; i++) {
		ps[i].name = peer_names[i];
		ps[i].url = b->peer_url[i];
	}
	run_probes(ps, BRAIN_NPEERS);
	checks = cJSON_CreateObject();
	t0 = cm_now_ms();
	core &= dep_check("postgres", cm_db_ping(DEP_TIMEOUT_MS, errbuf), t0,
			  errbuf, checks);
	t0 = cm_now_ms();
	errbuf[0] = '\0';
	core &= dep_check("redis", cm_redis_ping(errbuf), t0, errbuf, checks);
	for (i = 0; i < BRAIN_NPEERS; i++) {
		probe_json(&ps[i], checks);
		peers &= ps[i].up;
	}
	cJSON_AddStringToObject(json, "status",
				!core	? "down"
				: peers ? "healthy"
					: "degraded");
	cJSON_AddItemToObject(json, "checks", checks);
	cm_req_reply_json(req, core ? 200 : 503, json);
	cJSON_Delete(json);
}

static int
peer_index(const char *name)
{
	size_t i;

	for (i = 0; name && i < BRAIN_NPEERS; i++)
		if (!strcmp(name, peer_names[i]))
			return (int)i;
	for (i = 0; name && i < sizeof(aliases) / sizeof(aliases[0]); i++)
		if (!strcmp(name, aliases[i].name))
			return aliases[i].peer;
	return -1;
}

/* vault-client's GET /v1/backend as "backend", or "backend_error". */
static void
vault_backend(const struct brain *b, cJSON *into)
{
	char errbuf[CM_ERRBUF_LEN] = "", *tok = NULL;
	struct cm_fetch_opts opts = { 0 };
	struct cm_fetch_response resp = { 0 };
	struct cm_buf url = CM_BUF_INIT(4096), hdr = CM_BUF_INIT(0);
	const char *headers[2] = { NULL, NULL };
	cJSON *j = NULL;
	int rc;

	rc = cm_service_token_mint(b->service_secret, "brain", "vault-client",
				   30, &tok, errbuf);
	if (rc == 0) {
		cm_buf_printf(&hdr, "X-Service-Token: %s", tok);
		headers[0] = cm_buf_str(&hdr);
		cm_buf_printf(&url, "%s/v1/backend",
			      b->peer_url[BRAIN_PEER_VAULT_CLIENT]);
		opts.connect_timeout_ms = PEER_TIMEOUT_MS / 2;
		opts.total_timeout_ms = PEER_TIMEOUT_MS;
		opts.max_response = 65536;
		opts.headers = headers;
		rc = cm_fetch("GET", cm_buf_str(&url), NULL, 0, &opts, &resp,
			      errbuf);
	}
	if (rc == 0 && resp.status != 200) {
		snprintf(errbuf, CM_ERRBUF_LEN, "GET /v1/backend: HTTP %ld",
			 resp.status);
		rc = CM_EIO;
	}
	if (rc == 0 &&
	    !(j = cJSON_ParseWithLength(resp.body.data, resp.body.len))) {
		snprintf(errbuf, CM_ERRBUF_LEN, "GET /v1/backend: bad JSON");
		rc = CM_EPROTO;
	}
	if (rc == 0)
		cJSON_AddItemToObject(into, "backend", j);
	else
		cJSON_AddStringToObject(into, "backend_error", errbuf);
	if (hdr.data)
		cm_memzero(hdr.data, hdr.len);
	cm_buf_release(&hdr);
	if (tok) {
		cm_memzero(tok, strlen(tok));
		free(tok);
	}
	cm_buf_release(&url);
	cm_fetch_response_release(&resp);
}

/* GET /health/:service - one peer's readiness: 200 up, 503 down. */
void
brain_h_health_one(struct cm_req *req, void *arg)
{
	struct brain *b = brain_from(arg);
	int i = peer_index(cm_req_param(req, "service"));
	struct probe p;
	cJSON *json;

	if (i < 0) {
		cm_req_fail(req, 404, "not_found", "no such service");
		cm_req_reply_json(req, 404, NULL);
		return;
	}
	memset(&p, 0, sizeof(p));
	p.name = peer_names[i];
	p.url = b->peer_url[i];
	probe_run(&p);
	json = cJSON_CreateObject();
	cJSON_AddStringToObject(json, "service", p.name);
	cJSON_AddStringToObject(json, "status", p.up ? "up" : "down");
	cJSON_AddNumberToObject(json, "latency_ms", (double)p.ms);
	if (!p.up)
		cJSON_AddStringToObject(json, "error",
					p.error[0] ? p.error : "unreachable");
	if (i == BRAIN_PEER_VAULT_CLIENT)
		vault_backend(b, json);
	cm_req_reply_json(req, p.up ? 200 : 503, json);
	cJSON_Delete(json);
}
