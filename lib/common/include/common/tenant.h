/*
 * tenant.h - which tenant a request belongs to, and a cache of tenants.
 *
 * Each request that is not platform-level gets exactly one verified tenant,
 * from these sources:
 *   token   the user token's tenant_id claim;
 *   header  X-Tenant-ID, only when the caller presented a valid service
 *           token (a bare header from anyone else is ignored);
 *   host    a tenant's custom domain, or "<slug>.<DOMAIN>" (reserved
 *           subdomains such as api, admin, crm are not tenant hosts).
 * Two sources naming different tenants -> 403 tenant_mismatch; a named
 * tenant that does not exist -> 404 tenant_not_found; a suspended one ->
 * 403 tenant_suspended; an inactive one -> 403 tenant_inactive; no source
 * at all -> 400 tenant_required.
 *
 * Records come from brain.tenants (and brain.tenant_domains) through a
 * per-process cache with a TTL of at most 5 s, so a suspension is refused
 * everywhere within 5 s. The cache is thread-safe (one mutex; lookups copy
 * the record out). cm_tenant_decide() is pure logic, unit-tested alone.
 */
#ifndef COMMON_TENANT_H
#define COMMON_TENANT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

struct cm_req;

/* A tenant as the other services see it. A value type. */
struct cm_tenant {
	char id[40];
	char slug[64];
	char name[128];
	char status[16]; /* trial, active, suspended, inactive */
	char tier[16];	 /* free, starter, professional, enterprise */
};

enum cm_tenant_source {
	CM_TSRC_NONE = 0,
	CM_TSRC_TOKEN,
	CM_TSRC_HEADER,
	CM_TSRC_HOST
};

/* What a request offers; any field may be NULL/empty. */
struct cm_tenant_claim {
	const char *token_tenant;  /* from a verified user token */
	const char *header_tenant; /* X-Tenant-ID */
	bool service_token;	   /* caller holds a valid service token */
	const char *host_tenant;   /* id found for the Host, if any */
	bool host_is_tenant_host;  /* Host looked like a tenant's */
};

/* The outcome: either an id with its source, or an HTTP error. */
struct cm_tenant_decision {
	const char *tenant_id; /* borrowed from the claim */
	enum cm_tenant_source source;
	int status;	  /* 0 ok; else 400/403/404 */
	const char *code; /* tenant_mismatch, ... */
	const char *message;
};

/* cm_tenant_decide - combine the sources (pure; no lookups). */
void cm_tenant_decide(const struct cm_tenant_claim *claim,
		      struct cm_tenant_decision *out);
/* cm_tenant_host_slug - if host is "<slug>.<domain>" with a non-reserved
   DNS-safe slug, copy it to slug[64] and return true. */
bool cm_tenant_host_slug(const char *host, const char *domain, char slug[64]);
/* cm_tenant_source_name - "token", "header", "host" or "none". */
const char *cm_tenant_source_name(enum cm_tenant_source src);

/* cm_tenant_cache_init - ttl_ms in 1..5000; domain is DOMAIN. */
int cm_tenant_cache_init(int ttl_ms, const char *domain);
/* cm_tenant_cache_shutdown - free every entry. */
void cm_tenant_cache_shutdown(void);
/* cm_tenant_lookup_id - 0, CM_ENOENT, or CM_EIO (database down). */
int cm_tenant_lookup_id(const char *id, struct cm_tenant *out,
			char errbuf[CM_ERRBUF_LEN]);
/* cm_tenant_lookup_host - by custom domain or <slug>.<DOMAIN>; sets
 *tenant_host when the host had a tenant's shape. */
int cm_tenant_lookup_host(const char *host, struct cm_tenant *out,
			  bool *tenant_host, char errbuf[CM_ERRBUF_LEN]);
/* cm_tenant_cache_invalidate - drop one id (NULL: everything). */
void cm_tenant_cache_invalidate(const char *id);

/* cm_tenant_resolve - the HTTP tenant hook: decide, look up, check status,
   cm_req_set_tenant; 0 or the status after cm_req_fail. */
int cm_tenant_resolve(struct cm_req *req);

#endif
