/*
 * brain.h - what brain's files share: the service context, the pure
 * policy (roles to permissions, tier limits, tenant input validation), the
 * credential helpers, the store, the event publisher and the handlers.
 *
 * policy.c and crypto.c are pure (no libevent, libpq or Redis) and are the
 * unit-test targets; store.c holds every SQL statement; events.c stages
 * tenant events in the outbox and relays them through common/bus.h;
 * handlers_*.c, health.c and docs.c are the HTTP edge. One struct brain lives
 * for the whole process, filled by the start hook and read-only afterwards,
 * shared by every worker thread. The design is docs/brain.md.
 */
#ifndef BRAIN_BRAIN_H
#define BRAIN_BRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>
#include <libpq-fe.h>

#include "common/auth.h"
#include "common/db.h"
#include "common/err.h"
#include "common/http.h"
#include "common/idem.h"
#include "common/proxy.h"

#define BRAIN_MAGIC 0xb4a1e5u
#define BRAIN_ACCESS_TTL_S 900
#define BRAIN_PBKDF2_ITER 600000
#define BRAIN_PASSWORD_MIN 12
#define BRAIN_PASSWORD_MAX 256
#define BRAIN_HASH_LEN 160 /* an encoded password hash, with NUL */
#define BRAIN_TOKEN_LEN 64 /* an opaque refresh token, with NUL */
#define BRAIN_KEY_PREFIX "bz_live_"
#define BRAIN_SHA256_HEX 65 /* hex digest, with NUL */

/* The peers brain checks (and will route to), in config order. */
enum brain_peer {
	BRAIN_PEER_CMS = 0,
	BRAIN_PEER_CRM,
	BRAIN_PEER_IMAGE,
	BRAIN_PEER_TELEGRAM,
	BRAIN_PEER_TEMPORAL_WORKER,
	BRAIN_PEER_VAULT_CLIENT,
	BRAIN_PEER_AGENTS,
	BRAIN_PEER_EVENT_BUS,
	BRAIN_PEER_DASHBOARD_SERVER,
	BRAIN_NPEERS
};

struct brain {
	unsigned magic;
	const char *peer_url[BRAIN_NPEERS]; /* base URLs from config */
	enum cm_jwt_alg alg;
	const char *jwt_key; /* HS256 secret (from config) */
	const char *issuer;
	const char *audience;
	const char *domain;
	int64_t refresh_ttl_s;
	int64_t delete_grace_days;
	int64_t login_max_fails; /* per account, per window */
	int64_t login_max_addr;	 /* per address, per window */
	int64_t login_window_s;
	char dummy_hash[BRAIN_HASH_LEN]; /* run for unknown users */
	char *openapi_json; /* the API document, compact; NULL if absent */
	char *docs_html;    /* the rendered docs page; NULL if absent */
	/* the gateway (gateway.c) */
	const char *service_secret;	/* signs the gateway tokens */
	int64_t gw_timeout_ms;		/* until an upstream's response head */
	int64_t gw_idle_timeout_s;	/* upstream connection / stream idle */
	int64_t gw_plan_ttl_ms;		/* how long a tenant's plan is cached */
	int64_t integration_timeout_ms; /* test-integration's wait */
	struct cm_proxy_upstream upstream[BRAIN_NPEERS];
	struct cm_bus_relay *relay; /* publishes brain.outbox (events.c) */
};

/* brain_from - the context behind a handler's arg (checks the magic). */
struct brain *brain_from(void *arg);

/* ---- policy.c: pure rules ---- */

enum brain_perm {
	BRAIN_PERM_PLATFORM = 1u << 0,	   /* manage every tenant */
	BRAIN_PERM_TENANT_READ = 1u << 1,  /* own tenant's profile */
	BRAIN_PERM_TENANT_WRITE = 1u << 2, /* own tenant's allowed fields */
	BRAIN_PERM_MEMBERS_READ = 1u << 3,
	BRAIN_PERM_MEMBERS_WRITE = 1u << 4,
	BRAIN_PERM_USAGE_READ = 1u << 5,
	BRAIN_PERM_KEYS_WRITE = 1u << 6, /* create, list, revoke API keys */
};

/* brain_role_valid - one of owner, admin, manager, user, readonly. */
bool brain_role_valid(const char *role);
/* brain_role_rank - owner 5 .. readonly 1; 0 for anything else. */
int brain_role_rank(const char *role);
/* brain_role_perms - the permission bits of one role (0 if unknown). */
unsigned brain_role_perms(const char *role);
/* brain_scopes_parse - an API key's scopes: 1..8 distinct
   "<service>:read|write" (services: brain and those of services_enabled)
   as a PostgreSQL array literal (malloc'd). 0 or CM_EINVAL + errbuf. */
int brain_scopes_parse(const cJSON *arr, char **literal,
		       char errbuf[CM_ERRBUF_LEN]);
/* brain_principal_perms - the union over a principal's roles (an API
   key's roles are its scopes; "brain:read"/"brain:write" carry
   permissions, other scopes only matter to the gateway). */
unsigned brain_principal_perms(const struct cm_principal *p);
/* brain_tier_index - 0..3 for free..enterprise, -1 otherwise. */
int brain_tier_index(const char *tier);
/* brain_limits_effective - the tier's defaults overlaid with overrides
   (an object, or NULL); a new object the caller frees. */
cJSON *brain_limits_effective(const char *tier, const cJSON *overrides);
/* brain_slug_valid - DNS-safe label: [a-z0-9] then up to 61 of [a-z0-9-]
   then [a-z0-9]. */
bool brain_slug_valid(const char *slug);
/* brain_domain_valid - lower-case host name of 1..253 bytes, labels of
   1..63 [a-z0-9-] not starting or ending with '-', at least one dot. */
bool brain_domain_valid(const char *domain);
/* brain_email_valid - 3..254 bytes, one '@' with text on both sides, no
   spaces or control characters. */
bool brain_email_valid(const char *email);

/* The editable parts of a tenant, validated and re-serialised. */
struct brain_tenant_input {
	const char *slug; /* borrowed from the request tree, or NULL */
	const char *name;
	const char *status;
	const char *tier;
	const char *primary_domain;
	char *limits;	/* JSON text (malloc'd) or NULL */
	char *services; /* PostgreSQL array literal (malloc'd) or NULL */
	char *branding; /* JSON text (malloc'd) or NULL */
	char *settings; /* JSON text (malloc'd) or NULL */
	bool clear_primary_domain;
};

/* brain_tenant_input_parse - validate body; admin allows the platform
   fields, otherwise only name, primary_domain, branding and settings are
   accepted (others: CM_EPERM). 0 or CM_EINVAL with errbuf naming the
   field. Unknown fields are refused. */
int brain_tenant_input_parse(const cJSON *body, bool admin,
			     struct brain_tenant_input *in,
			     char errbuf[CM_ERRBUF_LEN]);
/* brain_tenant_input_release - free what parse allocated. */
void brain_tenant_input_release(struct brain_tenant_input *in);

/* ---- crypto.c: passwords and opaque tokens ---- */

/* brain_password_hash - PBKDF2-HMAC-SHA256 with a random 16-byte salt,
   `iter` iterations, encoded "pbkdf2_sha256$<iter>$<salt b64>$<dk b64>".
   0 or CM_EIO. */
int brain_password_hash(const char *password, int iter,
			char out[BRAIN_HASH_LEN]);
/* brain_password_verify - true when password matches the encoded hash
   (constant-time compare; false for a malformed hash). */
bool brain_password_verify(const char *password, const char *encoded);
/* brain_random_token - prefix + 43 base64url chars of 32 random bytes
   into out[outlen]; 0, CM_E2BIG (too small) or CM_EIO. */
int brain_random_token(const char *prefix, char *out, size_t outlen);
/* brain_sha256_hex - lower-case hex SHA-256 of s. */
void brain_sha256_hex(const char *s, char out[BRAIN_SHA256_HEX]);

/* ---- events.c: tenant events through the outbox ---- */

#define BRAIN_OUTBOX "brain.outbox"
#define BRAIN_STAGED_MAX 128

/* The tenants whose events one change staged (their caches are dropped
   after the commit). */
struct brain_staged {
	int n;
	bool overflow; /* more than BRAIN_STAGED_MAX: drop every entry */
	char tenant[BRAIN_STAGED_MAX][37];
};

/* brain_change - run fn(conn, arg, errbuf) in one transaction (cm_db_tx):
   fn makes the change through the store functions (they use this
   thread's connection, so they are inside it) and stages its events with
   brain_stage. After the commit: this process's tenant cache forgets the
   staged tenants and the relay publishes. 0 or fn's CM_E* (nothing
   committed). */
int brain_change(const struct brain *b, cm_db_work_fn fn, void *arg,
		 struct brain_staged *st, char errbuf[CM_ERRBUF_LEN]);
/* brain_stage - inside brain_change: a tenant event (type "tenant.created",
   ...) on tenant_id's stream with data (copied; may be NULL) into
   brain.outbox. */
int brain_stage(PGconn *conn, struct brain_staged *st, const char *type,
		const char *tenant_id, const cJSON *data,
		char errbuf[CM_ERRBUF_LEN]);
/* brain_relay_start/stop - the outbox relay thread (b->relay). */
int brain_relay_start(struct brain *b, int interval_ms,
		      char errbuf[CM_ERRBUF_LEN]);
void brain_relay_stop(struct brain *b);

/* ---- Idempotency-Key on the tenant creates (members, API keys,
   invitations): common/idem.h records in brain.idempotency_keys, in the
   create's transaction. A replay answers the stored body, which never
   holds a key or invitation token: those are shown once. ---- */

#define BRAIN_IDEM "brain.idempotency_keys"

struct brain_once {
	struct cm_idem im; /* cm_idem_from_req; im.key NULL: no header */
	bool replayed;	   /* the answer came from the record */
	bool reused;	   /* the key came with another request (422) */
	int status;	   /* the replayed answer's status */
};

/* brain_once_lookup - in the create's transaction: CM_ENOENT when there
   is no key or no record (go on creating); 0 with *out the recorded answer
   (once->replayed); CM_EEXIST when the key came with another request
   (once->reused); another CM_E*. brain_once_record - after the create,
   record *out under the key (nothing without one). */
int brain_once_lookup(PGconn *conn, struct brain_once *once, cJSON **out,
		      char errbuf[CM_ERRBUF_LEN]);
int brain_once_record(PGconn *conn, const struct brain_once *once,
		      const cJSON *out, char errbuf[CM_ERRBUF_LEN]);
/* brain_once_answer - the answer when the store refused because of the key
   (reused: 422); 0 otherwise. A replay's header is set too. */
int brain_once_answer(struct cm_req *req, const struct brain_once *once);

/* ---- store.c: every SQL statement (platform tables, no RLS) ---- */

struct brain_list_query {
	const char *status; /* filters; NULL: any */
	const char *tier;
	const char *q;	    /* substring of name, slug or a domain */
	const char *cursor; /* the last slug of the previous page */
	int limit;	    /* 1..100 */
	bool include_deleted;
};

struct brain_user {
	char id[40];
	char password_hash[BRAIN_HASH_LEN];
	bool super_admin;
	bool active;
};

/* A session's identity for one tenant (tenant_id "" for none). */
struct brain_grant {
	char user_id[40];
	char tenant_id[40];
	char role[CM_ROLE_LEN]; /* "" when no membership */
	bool super_admin;
};

/* Tenants: JSON objects as the API shows them (with limit_overrides;
   handlers add effective limits). CM_ENOENT for none (and deleted ones
   unless asked), CM_EEXIST for a taken slug or domain, CM_ESTALE for a
   version mismatch. */
int brain_store_tenant_create(const struct brain_tenant_input *in, cJSON **out,
			      char errbuf[CM_ERRBUF_LEN]);
int brain_store_tenant_get(const char *id_or_slug, bool include_deleted,
			   cJSON **out, char errbuf[CM_ERRBUF_LEN]);
int brain_store_tenant_list(const struct brain_list_query *q, cJSON **items,
			    char errbuf[CM_ERRBUF_LEN]);
/* brain_store_tenant_update - also the tier before the update in
   prev_tier (for tenant.plan_changed). */
int brain_store_tenant_update(const char *id, int64_t version,
			      const struct brain_tenant_input *in, cJSON **out,
			      char prev_tier[16], char errbuf[CM_ERRBUF_LEN]);
/* brain_store_tenant_set_status - suspend/reactivate (not deleted). */
int brain_store_tenant_set_status(const char *id, const char *status,
				  cJSON **out, char errbuf[CM_ERRBUF_LEN]);
/* brain_store_tenant_restore - undo a soft delete within its grace. */
int brain_store_tenant_restore(const char *id, cJSON **out,
			       char errbuf[CM_ERRBUF_LEN]);
/* brain_store_domain_add/verify/remove - a tenant's custom domains. */
int brain_store_domain_add(const char *id, const char *domain,
			   char errbuf[CM_ERRBUF_LEN]);
int brain_store_domain_verify(const char *id, const char *domain,
			      char errbuf[CM_ERRBUF_LEN]);
int brain_store_domain_remove(const char *id, const char *domain,
			      char errbuf[CM_ERRBUF_LEN]);

/* Users and memberships. */
int brain_store_user_by_email(const char *email, struct brain_user *out,
			      char errbuf[CM_ERRBUF_LEN]);
/* brain_store_user_create - *id_out[40]; CM_EEXIST for a taken email. */
int brain_store_user_create(const char *email, const char *name,
			    const char *hash, bool super_admin, char id_out[40],
			    char errbuf[CM_ERRBUF_LEN]);
int brain_store_user_set_super_admin(const char *id,
				     char errbuf[CM_ERRBUF_LEN]);
/* brain_store_membership_set - add or change a user's role in a tenant. */
int brain_store_membership_set(const char *user_id, const char *tenant_id,
			       const char *role, char errbuf[CM_ERRBUF_LEN]);
int brain_store_membership_remove(const char *user_id, const char *tenant_id,
				  char errbuf[CM_ERRBUF_LEN]);
/* brain_store_grant - the user's role in tenant (id or slug; NULL or ""
   for the earliest membership, or none for a super admin without any).
   CM_ENOENT when the user is not active or not a member. */
int brain_store_grant(const char *user_id, const char *tenant,
		      struct brain_grant *out, char errbuf[CM_ERRBUF_LEN]);
/* brain_store_me - a user's profile with memberships, as JSON. */
int brain_store_me(const char *user_id, cJSON **out,
		   char errbuf[CM_ERRBUF_LEN]);
/* brain_store_count_members - for usage against max_users. */
int brain_store_count_members(const char *tenant_id, int64_t *out,
			      char errbuf[CM_ERRBUF_LEN]);

/* Refresh tokens (by SHA-256 hex of the opaque token). */
int brain_store_refresh_insert(const char *hash, const char *family_id,
			       const char *user_id, const char *tenant_id,
			       int64_t ttl_s, char errbuf[CM_ERRBUF_LEN]);
/* brain_store_refresh_consume - mark a live token used and return its
   family, user and tenant. A token already used or revoked revokes its
   whole family and gives CM_EACCES; an unknown or expired one CM_ENOENT. */
int brain_store_refresh_consume(const char *hash, char family[40],
				char user_id[40], char tenant_id[40],
				char errbuf[CM_ERRBUF_LEN]);
/* brain_store_refresh_revoke_family - revoke the family of a token that
   belongs to user_id (nothing otherwise). */
int brain_store_refresh_revoke_family(const char *hash, const char *user_id,
				      char errbuf[CM_ERRBUF_LEN]);
/* brain_store_domain_state - for a host that did not resolve: CM_ENOENT
   (no such domain), else *verified and *deleted (its tenant's). */
int brain_store_domain_state(const char *domain, bool *verified, bool *deleted,
			     char errbuf[CM_ERRBUF_LEN]);

/* ---- handlers: shared edge helpers (handlers_tenants.c) ---- */

/* brain_allowed - whether the caller (a user, not a service) holds perm;
   otherwise records 403 forbidden and returns false. */
bool brain_allowed(struct cm_req *req, unsigned perm);
/* brain_fail_store - map a store error to its answer; the status. */
int brain_fail_store(struct cm_req *req, int rc, const char *what,
		     const char *errbuf);

typedef int (*brain_revoke_fn)(const char *tid, const char *id,
			       char errbuf[CM_ERRBUF_LEN]);
/* brain_reply_revoke - revoke(tid, :id) and answer 204; unknown and
   other tenants' ids are both 404; a NULL tid means the caller was
   refused already (403 recorded). */
void brain_reply_revoke(struct cm_req *req, const char *tid,
			brain_revoke_fn revoke, const char *what);

/* Route handlers (the route table is in service.c). */
void brain_h_tenants_list(struct cm_req *req, void *arg);
void brain_h_tenants_create(struct cm_req *req, void *arg);
void brain_h_tenant_get(struct cm_req *req, void *arg);
void brain_h_tenant_update(struct cm_req *req, void *arg);
void brain_h_tenant_delete(struct cm_req *req, void *arg);
void brain_h_tenant_suspend(struct cm_req *req, void *arg);
void brain_h_tenant_reactivate(struct cm_req *req, void *arg);
void brain_h_tenant_restore(struct cm_req *req, void *arg);
void brain_h_domain_add(struct cm_req *req, void *arg);
void brain_h_domain_verify(struct cm_req *req, void *arg);
void brain_h_domain_remove(struct cm_req *req, void *arg);
void brain_h_resolve(struct cm_req *req, void *arg);
void brain_h_own_get(struct cm_req *req, void *arg);
void brain_h_own_update(struct cm_req *req, void *arg);
void brain_h_own_usage(struct cm_req *req, void *arg);
void brain_h_members_list(struct cm_req *req, void *arg);
void brain_h_members_add(struct cm_req *req, void *arg);
void brain_h_members_remove(struct cm_req *req, void *arg);
void brain_h_admin_members_add(struct cm_req *req, void *arg);
void brain_h_login(struct cm_req *req, void *arg);
void brain_h_refresh(struct cm_req *req, void *arg);
void brain_h_logout(struct cm_req *req, void *arg);
void brain_h_me(struct cm_req *req, void *arg);
void brain_h_switch_tenant(struct cm_req *req, void *arg);

void brain_h_keys_list(struct cm_req *req, void *arg);
void brain_h_keys_create(struct cm_req *req, void *arg);
void brain_h_keys_revoke(struct cm_req *req, void *arg);
/* ---- gateway.c: /api/<service>/... to the service behind it ---- */

/* brain_gateway_init - the upstreams from b->peer_url; 0 or CM_EINVAL. */
int brain_gateway_init(struct brain *b, char errbuf[CM_ERRBUF_LEN]);
/* brain_h_gateway - forward a request under /api/<service>/ (see
   docs/brain.md "Gateway"). */
void brain_h_gateway(struct cm_req *req, void *arg);

/* ---- integration.c: POST /api/events/test-integration ---- */
void brain_h_test_integration(struct cm_req *req, void *arg);

/* brain_authenticate - the service's authenticator (service.h): bz_live_
   keys become a principal with is_api_key, sub "key:<id>", the key's
   tenant, and its scopes as roles; other tokens are left to the JWT
   verifier. */
int brain_authenticate(struct cm_req *req, const char *token,
		       struct cm_principal *out, void *arg);

void brain_h_health_all(struct cm_req *req, void *arg);
void brain_h_health_one(struct cm_req *req, void *arg);
void brain_h_openapi(struct cm_req *req, void *arg);
void brain_h_docs(struct cm_req *req, void *arg);
/* brain_docs_load - read the OpenAPI document (JSON-subset YAML) at path
   and render the docs page; 0 or CM_E* + errbuf. */
int brain_docs_load(struct brain *b, const char *path,
		    char errbuf[CM_ERRBUF_LEN]);
/* brain_docs_free - drop what brain_docs_load made. */
void brain_docs_free(struct brain *b);

/* brain_bootstrap_admin - create or promote the first super admin from
   BRAIN_BOOTSTRAP_ADMIN_EMAIL and the password file; 0 or CM_E*. */
int brain_bootstrap_admin(const struct brain *b, const char *email,
			  const char *password_file,
			  char errbuf[CM_ERRBUF_LEN]);

/* brain_own_tenant - the caller's own tenant id for /api/tenant routes
   when the caller holds perm; NULL after recording 403. */
const char *brain_own_tenant(struct cm_req *req, unsigned perm);

/* API keys (store.c). Management runs in the tenant's transaction (RLS);
   brain_store_key_auth looks a live key up by hash across tenants and
   stamps last_used_at: {id, tenant_id, scopes, exp} or CM_ENOENT. */
int brain_store_key_create(const char *tid, const char *name,
			   const char *prefix, const char *hash,
			   const char *scopes, const char *created_by,
			   int64_t ttl_s, struct brain_once *once, cJSON **out,
			   char errbuf[CM_ERRBUF_LEN]);
int brain_store_key_revoke(const char *tid, const char *id,
			   char errbuf[CM_ERRBUF_LEN]);
int brain_store_key_auth(const char *hash, cJSON **out,
			 char errbuf[CM_ERRBUF_LEN]);

/* Invitations (store.c): management in the tenant's transaction;
   accepting looks the token's hash up across tenants and, in one
   transaction, uses it up, creates the user when new (pw_hash needed:
   CM_EPERM without) and adds the membership; CM_ENOENT for a token that
   is unknown, used, revoked or expired. Creating one holds a seat
   (brain_store_invite_create_seat, below). */
int brain_store_invite_revoke(const char *tid, const char *id,
			      char errbuf[CM_ERRBUF_LEN]);
int brain_store_invite_accept(const char *hash, const char *pw_hash,
			      const char *name, struct brain_grant *out,
			      char errbuf[CM_ERRBUF_LEN]);
void brain_h_invites_list(struct cm_req *req, void *arg);
void brain_h_invites_create(struct cm_req *req, void *arg);
void brain_h_invites_revoke(struct cm_req *req, void *arg);
void brain_h_invite_accept(struct cm_req *req, void *arg);

/* ---- usage (usage.c), list pages, seats and purge (store.c, purge.c) ---- */

/* The counter the gateway adds one to per forwarded request
   (cm_usage_incr of common/ratelimit.h); services may not report it. */
#define BRAIN_USAGE_API_CALLS "api_calls"

/* POST /api/tenant/usage {counter, n} - services only (usage.c). */
void brain_h_usage_report(struct cm_req *req, void *arg);

#define BRAIN_PAGE_DEFAULT 50
#define BRAIN_PAGE_MAX 200
#define BRAIN_CURSOR_LEN 64 /* "<created_at in us>.<uuid>", with NUL */

/* One page of a tenant's members, API keys or invitations, oldest first:
   the rows after cursor (NULL: from the start), at most limit. */
struct brain_page {
	const char *cursor;
	int limit; /* 1..BRAIN_PAGE_MAX */
};

/* brain_cursor_valid - "<microseconds since the epoch>.<uuid>". */
bool brain_cursor_valid(const char *cursor);

/* A page as {"items": [...], "next_cursor": "..." or null} in *out;
   CM_EINVAL for a malformed cursor. */
typedef int (*brain_page_fn)(const char *tid, const struct brain_page *pg,
			     cJSON **out, char errbuf[CM_ERRBUF_LEN]);
int brain_store_members_page(const char *tid, const struct brain_page *pg,
			     cJSON **out, char errbuf[CM_ERRBUF_LEN]);
int brain_store_key_page(const char *tid, const struct brain_page *pg,
			 cJSON **out, char errbuf[CM_ERRBUF_LEN]);
int brain_store_invite_page(const char *tid, const struct brain_page *pg,
			    cJSON **out, char errbuf[CM_ERRBUF_LEN]);
/* brain_reply_page - answer one page from ?limit=&cursor= (400
   bad_request / bad_cursor); a NULL tid as for brain_reply_revoke. */
void brain_reply_page(struct cm_req *req, const char *tid, brain_page_fn page,
		      const char *what);

/* Seats (store.c): in one transaction that locks the tenant's row, add a
   member or an invitation only while the seats taken stay under
   max_users (CM_EAGAIN when full). Seats are members plus the other
   emails with an open invitation; an email's own invitation is its seat,
   and an existing member takes no new one. CM_ENOENT for a missing or
   deleted tenant. Accepting an invitation re-checks (CM_EAGAIN when the
   limit was lowered meanwhile). */
int brain_store_member_add_seat(const char *user_id, const char *email,
				const char *tid, const char *role,
				struct brain_once *once, cJSON **out,
				char errbuf[CM_ERRBUF_LEN]);
int brain_store_invite_create_seat(const char *tid, const char *email,
				   const char *role, const char *hash,
				   const char *invited_by, int64_t ttl_s,
				   struct brain_once *once, cJSON **out,
				   char errbuf[CM_ERRBUF_LEN]);

/* brain_store_tenant_delete_s - soft delete, purge after grace_s
   seconds. */
int brain_store_tenant_delete_s(const char *id, int64_t grace_s, cJSON **out,
				char errbuf[CM_ERRBUF_LEN]);
/* brain_store_tenant_purge - delete for good at most limit soft-deleted
   tenants whose purge_after has passed (domains, memberships, keys and
   invitations go with them); their ids as a JSON array in *ids. */
int brain_store_tenant_purge(int limit, cJSON **ids,
			     char errbuf[CM_ERRBUF_LEN]);

/* ---- purge.c: the purge job ---- */

struct cm_service;

/* brain_purge_start - read BRAIN_PURGE_INTERVAL_S and
   BRAIN_TENANT_DELETE_GRACE_S and start the thread that purges tenants
   past their grace every interval. 0 or CM_E*. */
int brain_purge_start(struct cm_service *svc, const struct brain *b);
/* brain_purge_stop - stop and join the thread (no-op if not started). */
void brain_purge_stop(void);
/* brain_purge_run - one round now: every tenant due (in batches); the
   number purged, or CM_E* with errbuf. */
int brain_purge_run(const struct brain *b, char errbuf[CM_ERRBUF_LEN]);
/* brain_delete_grace_s - the grace a soft delete gets, in seconds:
   BRAIN_TENANT_DELETE_GRACE_S when set, else the days setting. */
int64_t brain_delete_grace_s(const struct brain *b);

#endif
