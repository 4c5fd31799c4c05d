/*
 * policy.h - canonical secret paths and the service policy table.
 *
 * A secret lives at tenants/<tenant_id>/<name> or platform/<service>/<name>.
 * Names come from request paths and are canonicalised here before anything
 * is looked up: 1..8 segments of [a-z0-9_.-] (1..64 bytes each, "." and
 * ".." refused), VC_NAME_MAX bytes in all, no empty segment (so no leading
 * or trailing "/" and no "//"). Then vc_policy_allows() decides, from a
 * fixed table, whether the calling service may perform an operation on
 * the path; the decision never depends on whether the secret exists.
 * Pure functions over constant data; thread-safe.
 */
#ifndef VC_POLICY_H
#define VC_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

#define VC_NAME_MAX 256
#define VC_SEGMENTS_MAX 8
#define VC_SEGMENT_MAX 64
#define VC_SERVICE_MAX 32

enum vc_scope {
	VC_SCOPE_TENANT = 0,
	VC_SCOPE_PLATFORM,
};

enum vc_op {
	VC_OP_READ = 1u << 0,
	VC_OP_WRITE = 1u << 1,
	VC_OP_DELETE = 1u << 2,	 /* soft delete and undelete */
	VC_OP_DESTROY = 1u << 3, /* erase versions for good */
	VC_OP_META = 1u << 4,	 /* versions and times, never values */
	VC_OP_LIST = 1u << 5,	 /* names under a prefix */
};

#define VC_OP_ALL 0x3fu

struct vc_path {
	enum vc_scope scope;
	char owner[40]; /* the tenant id, or the platform service */
	char name[VC_NAME_MAX + 1];
};

/* vc_name_valid - whether name is canonical (see above). */
bool vc_name_valid(const char *name);
/* vc_path_tenant - canonicalise raw for the caller's tenant_id: 0, or
   CM_EINVAL (malformed), CM_EACCES ("tenants/<other id>/..."), CM_EPERM
   ("platform/..." from a tenant context). "tenants/<own id>/x" is x. */
int vc_path_tenant(const char *tenant_id, const char *raw, struct vc_path *out);
/* vc_path_platform - raw is "<service>/<name>"; 0 or CM_EINVAL. */
int vc_path_platform(const char *raw, struct vc_path *out);
/* vc_path_refusal - the answer to a vc_path_* failure rc: 403
   foreign_tenant (CM_EACCES), 403 platform_path (CM_EPERM), else 400
   invalid_path; *code and *message are static. */
int vc_path_refusal(int rc, const char **code, const char **message);
/* vc_prefix_valid - "" or a canonical name followed by "/". */
bool vc_prefix_valid(const char *prefix);
/* vc_path_full - "tenants/<id>/<name>" or "platform/<svc>/<name>" into
   out[n] (truncated when it does not fit). */
void vc_path_full(const struct vc_path *p, char *out, size_t n);
/* vc_policy_allows - whether service may perform op (one VC_OP_*) on p. */
bool vc_policy_allows(const char *service, const struct vc_path *p,
		      unsigned op);
/* vc_policy_allows_list - whether service may list names under prefix in
   scope (owner: the platform service for VC_SCOPE_PLATFORM, else unused). */
bool vc_policy_allows_list(const char *service, enum vc_scope scope,
			   const char *owner, const char *prefix);
/* vc_op_name - "read", "write", ... for audit records. */
const char *vc_op_name(unsigned op);

/*
 * Tenant users (/api/secrets/..., reached only through brain's gateway).
 * The service table above governs services; these rules govern users,
 * decided from the verified principal alone:
 *   - it must be a user forwarded by brain (via "brain", not a service
 *     token, not a user token presented directly): else "not_via_gateway";
 *   - an API key needs "secrets:read" (list, metadata) or "secrets:write"
 *     (those and write, delete); reveal and the audit read are never for
 *     API keys: else "insufficient_scope";
 *   - a user: owner and admin may do everything; manager may list and
 *     read metadata; any other role nothing: else "forbidden".
 */
struct cm_principal;

enum vc_user_op {
	VC_USER_LIST = 0,
	VC_USER_META,
	VC_USER_WRITE,
	VC_USER_DELETE,
	VC_USER_REVEAL,
	VC_USER_AUDIT,
};

/* vc_user_refusal - NULL when p may perform op, else the refusal's error
   code (above). */
const char *vc_user_refusal(const struct cm_principal *p, enum vc_user_op op);
/* vc_user_op_name - "list", "metadata", "write", "delete", "reveal",
   "audit" for audit records. */
const char *vc_user_op_name(enum vc_user_op op);

/*
 * Transit keys: names of 1..64 bytes of [a-z0-9_-]. A service may use the
 * key named after itself and keys "<service>-<anything>" (crm, crm-notes);
 * nothing else, brain included.
 */
#define VC_TRANSIT_KEY_MAX 64

/* vc_transit_key_valid - whether key is a well-formed key name. */
bool vc_transit_key_valid(const char *key);
/* vc_transit_allows - whether service may encrypt and decrypt with key. */
bool vc_transit_allows(const char *service, const char *key);

#endif
