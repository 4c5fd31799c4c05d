/* tenant.c - tenant resolution for requests, and the tenant cache. */
#include "common/tenant.h"
#include "common/auth.h"
#include "common/db.h"
#include "common/http.h"
#include "common/log.h"
#include "common/mem.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

#define CACHE_SLOTS 1024
#define NEGATIVE_TTL_MS 1000

/* Subdomains of DOMAIN that belong to the platform, never to a tenant. */
static const char *const reserved_slugs[] = {
	"api",	   "admin",	"crm",	      "cms",	"events", "agents",
	"bots",	   "images",	"automation", "www",	"app",	  "vault",
	"traefik", "dashboard", "mail",	      "status", NULL
};

struct cache_entry {
	char key[300]; /* "id:<uuid>" or "host:<host>" */
	bool found;
	bool tenant_host;
	struct cm_tenant tenant;
	int64_t expires_ms;
};

static struct {
	pthread_mutex_t lock;
	struct cache_entry *slots;
	int ttl_ms;
	char domain[254];
} cache = { .lock = PTHREAD_MUTEX_INITIALIZER };

static const char *const source_names[] = { "none", "token", "header", "host" };

const char *
cm_tenant_source_name(enum cm_tenant_source src)
{
	if ((unsigned)src > CM_TSRC_HOST)
		return "none";
	return source_names[src];
}

static bool
same_id(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

static void
decide_fail(struct cm_tenant_decision *out, int status, const char *code,
	    const char *message)
{
	out->tenant_id = NULL;
	out->source = CM_TSRC_NONE;
	out->status = status;
	out->code = code;
	out->message = message;
}

/* Take one more source; false (and fail) when it names another tenant. */
static bool
decide_take(struct cm_tenant_decision *out, const char *id,
	    enum cm_tenant_source src)
{
	if (!id || !*id)
		return true;
	if (out->tenant_id && !same_id(out->tenant_id, id)) {
		decide_fail(out, 403, "tenant_mismatch",
			    "the request names two different tenants");
		return false;
	}
	if (!out->tenant_id) {
		out->tenant_id = id;
		out->source = src;
	}
	return true;
}

void
cm_tenant_decide(const struct cm_tenant_claim *claim,
		 struct cm_tenant_decision *out)
{
	const char *header = claim->service_token ? claim->header_tenant : NULL;

	memset(out, 0, sizeof(*out));
	if (header && *header && !cm_is_uuid(header)) {
		decide_fail(out, 400, "invalid_tenant_id",
			    "X-Tenant-ID must be a uuid");
		return;
	}
	if (claim->host_is_tenant_host &&
	    !(claim->host_tenant && *claim->host_tenant)) {
		decide_fail(out, 404, "tenant_not_found",
			    "no tenant for this host");
		return;
	}
	if (!decide_take(out, claim->token_tenant, CM_TSRC_TOKEN) ||
	    !decide_take(out, header, CM_TSRC_HEADER) ||
	    !decide_take(out, claim->host_tenant, CM_TSRC_HOST))
		return;
	if (!out->tenant_id)
		decide_fail(out, 400, "tenant_required",
			    "this route needs a tenant: sign in to one, or "
			    "use the tenant's host");
}

static bool
is_reserved(const char *slug)
{
	size_t i;

	for (i = 0; reserved_slugs[i]; i++)
		if (!strcmp(slug, reserved_slugs[i]))
			return true;
	return false;
}

static bool
is_dns_label(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-')
		return false;
	for (i = 0; i < len; i++)
		if (!(islower((unsigned char)s[i]) ||
		      isdigit((unsigned char)s[i]) || s[i] == '-'))
			return false;
	return true;
}

bool
cm_tenant_host_slug(const char *host, const char *domain, char slug[64])
{
	size_t hlen, dlen, slen;

	if (!host || !domain || !*domain)
		return false;
	hlen = strlen(host);
	dlen = strlen(domain);
	if (hlen <= dlen + 1 || strcmp(host + hlen - dlen, domain) != 0 ||
	    host[hlen - dlen - 1] != '.')
		return false;
	slen = hlen - dlen - 1;
	if (!is_dns_label(host, slen))
		return false;
	memcpy(slug, host, slen);
	slug[slen] = '\0';
	return !is_reserved(slug);
}

int
cm_tenant_cache_init(int ttl_ms, const char *domain)
{
	if (ttl_ms < 1 || ttl_ms > 5000 || !domain ||
	    strlen(domain) >= sizeof(cache.domain))
		return CM_EINVAL;
	pthread_mutex_lock(&cache.lock);
	if (!cache.slots)
		cache.slots = cm_xcalloc(CACHE_SLOTS, sizeof(*cache.slots));
	cache.ttl_ms = ttl_ms;
	cm_strlcpy(cache.domain, domain, sizeof(cache.domain));
	pthread_mutex_unlock(&cache.lock);
	return 0;
}

void
cm_tenant_cache_shutdown(void)
{
	pthread_mutex_lock(&cache.lock);
	free(cache.slots);
	cache.slots = NULL;
	pthread_mutex_unlock(&cache.lock);
}

static size_t
slot_of(const char *key)
{
	return (size_t)(cm_hash_str(key) % CACHE_SLOTS);
}

/* Copy a fresh entry for key out of the cache; false on a miss. */
static bool
cache_get(const char *key, struct cache_entry *out)
{
	struct cache_entry *e;
	bool hit = false;

	pthread_mutex_lock(&cache.lock);
	if (cache.slots) {
		e = &cache.slots[slot_of(key)];
		if (!strcmp(e->key, key) && e->expires_ms > cm_now_ms()) {
			*out = *e;
			hit = true;
		}
	}
	pthread_mutex_unlock(&cache.lock);
	return hit;
}

static void
cache_put(const struct cache_entry *in)
{
	struct cache_entry *e;

	pthread_mutex_lock(&cache.lock);
	if (cache.slots) {
		e = &cache.slots[slot_of(in->key)];
		*e = *in;
		e->expires_ms = cm_now_ms() +
				(in->found ? cache.ttl_ms : NEGATIVE_TTL_MS);
	}
	pthread_mutex_unlock(&cache.lock);
}

void
cm_tenant_cache_invalidate(const char *id)
{
	size_t i;

	pthread_mutex_lock(&cache.lock);
	for (i = 0; cache.slots && i < CACHE_SLOTS; i++) {
		struct cache_entry *e = &cache.slots[i];

		if (!id || (e->found && same_id(e->tenant.id, id)))
			e->key[0] = '\0';
	}
	pthread_mutex_unlock(&cache.lock);
}

#define TENANT_COLS "t.id, t.slug, t.name, t.status, t.subscription_tier"

static const char sql_by_id[] =
	"SELECT " TENANT_COLS " FROM brain.tenants t"
	" WHERE t.id = $1::uuid AND t.deleted_at IS NULL";
static const char sql_by_slug[] = "SELECT " TENANT_COLS " FROM brain.tenants t"
				  " WHERE t.slug = $1 AND t.deleted_at IS NULL";
static const char sql_by_domain[] =
	"SELECT " TENANT_COLS " FROM brain.tenant_domains d"
	" JOIN brain.tenants t ON t.id = d.tenant_id"
	" WHERE d.domain = $1 AND d.verified AND t.deleted_at IS NULL";

/* Run one lookup query; 0 with *out, CM_ENOENT, or CM_EIO. */
static int
tenant_query(const char *sql, const char *param, struct cm_tenant *out,
	     char errbuf[CM_ERRBUF_LEN])
{
	const char *params[1] = { param };
	PGresult *res = NULL;
	PGconn *conn;
	int rc;

	conn = cm_db_conn(errbuf);
	if (!conn)
		return CM_EIO;
	rc = cm_db_query(conn, sql, 1, params, &res, errbuf);
	if (rc < 0)
		goto out;
	if (PQntuples(res) != 1) {
		rc = CM_ENOENT;
		goto out;
	}
	memset(out, 0, sizeof(*out));
	cm_strlcpy(out->id, PQgetvalue(res, 0, 0), sizeof(out->id));
	cm_strlcpy(out->slug, PQgetvalue(res, 0, 1), sizeof(out->slug));
	cm_strlcpy(out->name, PQgetvalue(res, 0, 2), sizeof(out->name));
	cm_strlcpy(out->status, PQgetvalue(res, 0, 3), sizeof(out->status));
	cm_strlcpy(out->tier, PQgetvalue(res, 0, 4), sizeof(out->tier));
	rc = 0;
out:
	PQclear(res);
	return rc;
}

int
cm_tenant_lookup_id(const char *id, struct cm_tenant *out,
		    char errbuf[CM_ERRBUF_LEN])
{
	struct cache_entry e;
	int rc;

	if (!cm_is_uuid(id))
		return CM_ENOENT;
	memset(&e, 0, sizeof(e));
	snprintf(e.key, sizeof(e.key), "id:%s", id);
	if (cache_get(e.key, &e)) {
		if (!e.found)
			return CM_ENOENT;
		*out = e.tenant;
		return 0;
	}
	rc = tenant_query(sql_by_id, id, &e.tenant, errbuf);
	if (rc == CM_EIO)
		return rc;
	e.found = rc == 0;
	cache_put(&e);
	if (e.found)
		*out = e.tenant;
	return rc;
}

/* Hosts that are never a tenant's: empty, localhost, IP literals. */
static bool
is_platform_host(const char *host)
{
	size_t i;
	bool digits_dots = true;

	if (!*host || !strcmp(host, "localhost") || strchr(host, ':') ||
	    !strcmp(host, cache.domain))
		return true;
	for (i = 0; host[i]; i++)
		if (!isdigit((unsigned char)host[i]) && host[i] != '.')
			digits_dots = false;
	return digits_dots;
}

static int
host_query(const char *host, struct cache_entry *e, char errbuf[CM_ERRBUF_LEN])
{
	char slug[64];
	size_t dlen = strlen(cache.domain), hlen = strlen(host);
	bool under_domain = hlen > dlen &&
			    !strcmp(host + hlen - dlen, cache.domain) &&
			    host[hlen - dlen - 1] == '.';

	if (cm_tenant_host_slug(host, cache.domain, slug)) {
		e->tenant_host = true;
		return tenant_query(sql_by_slug, slug, &e->tenant, errbuf);
	}
	if (under_domain || is_platform_host(host))
		return CM_ENOENT; /* a platform host: api.<DOMAIN>, ... */
	return tenant_query(sql_by_domain, host, &e->tenant, errbuf);
}

int
cm_tenant_lookup_host(const char *host, struct cm_tenant *out,
		      bool *tenant_host, char errbuf[CM_ERRBUF_LEN])
{
	struct cache_entry e;
	int rc;

	*tenant_host = false;
	if (!host || strlen(host) > 253)
		return CM_ENOENT;
	memset(&e, 0, sizeof(e));
	snprintf(e.key, sizeof(e.key), "host:%s", host);
	if (!cache_get(e.key, &e)) {
		rc = host_query(host, &e, errbuf);
		if (rc == CM_EIO)
			return rc;
		e.found = rc == 0;
		if (e.found)
			e.tenant_host = true;
		cache_put(&e);
	}
	*tenant_host = e.tenant_host;
	if (!e.found)
		return CM_ENOENT;
	*out = e.tenant;
	return 0;
}

static int
fail_unavailable(struct cm_req *req, const char *errbuf)
{
	cm_log_err("tenant lookup: %s", errbuf);
	return cm_req_fail(req, 503, "dependency_unavailable",
			   "tenant registry unavailable");
}

static int
check_status(struct cm_req *req, const struct cm_tenant *t)
{
	if (!strcmp(t->status, "suspended"))
		return cm_req_fail(req, 403, "tenant_suspended",
				   "this tenant is suspended");
	if (!strcmp(t->status, "inactive"))
		return cm_req_fail(req, 403, "tenant_inactive",
				   "this tenant is inactive");
	return 0;
}

int
cm_tenant_resolve(struct cm_req *req)
{
	const struct cm_principal *p = cm_req_principal(req);
	char errbuf[CM_ERRBUF_LEN] = "";
	struct cm_tenant_claim claim = { 0 };
	struct cm_tenant_decision d;
	struct cm_tenant host_t, t;
	int rc;

	claim.service_token = p && p->is_service;
	claim.token_tenant = p && !p->is_service ? p->tenant_id : NULL;
	claim.header_tenant = cm_req_header(req, "X-Tenant-ID");
	rc = cm_tenant_lookup_host(cm_req_host(req), &host_t,
				   &claim.host_is_tenant_host, errbuf);
	if (rc == CM_EIO)
		return fail_unavailable(req, errbuf);
	claim.host_tenant = rc == 0 ? host_t.id : NULL;
	cm_tenant_decide(&claim, &d);
	if (d.status)
		return cm_req_fail(req, d.status, d.code, "%s", d.message);
	if (d.source == CM_TSRC_HOST) {
		t = host_t;
	} else {
		rc = cm_tenant_lookup_id(d.tenant_id, &t, errbuf);
		if (rc == CM_EIO)
			return fail_unavailable(req, errbuf);
		if (rc < 0)
			return cm_req_fail(req, 404, "tenant_not_found",
					   "no such tenant");
	}
	rc = check_status(req, &t);
	if (rc)
		return rc;
	cm_req_set_tenant(req, &t);
	return 0;
}
