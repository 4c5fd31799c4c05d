/* policy.c - path canonicalisation and the policy table. */
#include "policy.h"

#include <stdio.h>
#include <string.h>

#include "common/auth.h"
#include "common/mem.h"

#include "common/banned.h"

#define SELF "$self" /* the platform owner equal to the caller */

struct policy_rule {
	const char *service; /* "*": any service */
	enum vc_scope scope;
	const char *owner;   /* platform only: "*" or SELF */
	const char *pattern; /* "*", or a prefix ending in "/" then "*" */
	unsigned ops;
};

#define RO (VC_OP_READ | VC_OP_META)

static const struct policy_rule rules[] = {
	{ "agents", VC_SCOPE_TENANT, NULL, "llm/*", RO },
	{ "telegram", VC_SCOPE_TENANT, NULL, "telegram/*", RO },
	{ "image", VC_SCOPE_TENANT, NULL, "images/*", RO },
	{ "crm", VC_SCOPE_TENANT, NULL, "webhooks/*", RO },
	{ "brain", VC_SCOPE_TENANT, NULL, "*", VC_OP_ALL },
	{ "*", VC_SCOPE_PLATFORM, SELF, "*", RO },
	{ "brain", VC_SCOPE_PLATFORM, "*", "*", VC_OP_ALL },
};

static bool
seg_char_ok(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
	       c == '-' || c == '.';
}

/* Check one segment of n bytes. */
static bool
segment_valid(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > VC_SEGMENT_MAX)
		return false;
	if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
		return false;
	for (i = 0; i < n; i++)
		if (!seg_char_ok((unsigned char)s[i]))
			return false;
	return true;
}

bool
vc_name_valid(const char *name)
{
	const char *p = name, *slash;
	int nsegs = 0;

	if (!name || !*name || strlen(name) > VC_NAME_MAX)
		return false;
	for (;;) {
		slash = strchr(p, '/');
		if (!segment_valid(p, slash ? (size_t)(slash - p) : strlen(p)))
			return false;
		if (++nsegs > VC_SEGMENTS_MAX)
			return false;
		if (!slash)
			return true;
		p = slash + 1;
	}
}

static bool
starts_with(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

int
vc_path_tenant(const char *tenant_id, const char *raw, struct vc_path *out)
{
	const char *name = raw;
	size_t idlen = strlen(tenant_id);

	memset(out, 0, sizeof(*out));
	if (!raw || !cm_is_uuid(tenant_id))
		return CM_EINVAL;
	if (starts_with(raw, "platform/") || !strcmp(raw, "platform"))
		return CM_EPERM;
	if (starts_with(raw, "tenants/")) {
		name = raw + strlen("tenants/");
		if (strncmp(name, tenant_id, idlen) ||
		    (name[idlen] != '/' && name[idlen] != '\0'))
			return CM_EACCES;
		if (name[idlen] == '\0')
			return CM_EINVAL;
		name += idlen + 1;
	}
	if (!vc_name_valid(name))
		return CM_EINVAL;
	out->scope = VC_SCOPE_TENANT;
	cm_strlcpy(out->owner, tenant_id, sizeof(out->owner));
	cm_strlcpy(out->name, name, sizeof(out->name));
	return 0;
}

int
vc_path_platform(const char *raw, struct vc_path *out)
{
	const char *slash = raw ? strchr(raw, '/') : NULL;
	size_t n;

	memset(out, 0, sizeof(*out));
	if (!slash)
		return CM_EINVAL;
	n = (size_t)(slash - raw);
	if (n >= VC_SERVICE_MAX || !segment_valid(raw, n) ||
	    memchr(raw, '.', n) || !vc_name_valid(slash + 1))
		return CM_EINVAL;
	out->scope = VC_SCOPE_PLATFORM;
	memcpy(out->owner, raw, n);
	out->owner[n] = '\0';
	cm_strlcpy(out->name, slash + 1, sizeof(out->name));
	return 0;
}

int
vc_path_refusal(int rc, const char **code, const char **message)
{
	if (rc == CM_EACCES) {
		*code = "foreign_tenant";
		*message = "the path names another tenant";
		return 403;
	}
	if (rc == CM_EPERM) {
		*code = "platform_path";
		*message = "platform paths are not reachable from a tenant "
			   "context";
		return 403;
	}
	*code = "invalid_path";
	*message = "names are 1-8 segments of [a-z0-9_.-]";
	return 400;
}

bool
vc_prefix_valid(const char *prefix)
{
	char tmp[VC_NAME_MAX + 2];
	size_t n = prefix ? strlen(prefix) : 0;

	if (n == 0)
		return true;
	if (n > VC_NAME_MAX || prefix[n - 1] != '/')
		return false;
	memcpy(tmp, prefix, n - 1);
	tmp[n - 1] = '\0';
	return vc_name_valid(tmp);
}

void
vc_path_full(const struct vc_path *p, char *out, size_t n)
{
	snprintf(out, n, "%s/%s/%s",
		 p->scope == VC_SCOPE_TENANT ? "tenants" : "platform", p->owner,
		 p->name);
}

/* Whether name (or a list prefix) falls under pattern. */
static bool
pattern_covers(const char *pattern, const char *name)
{
	size_t n = strlen(pattern) - 1; /* without the "*" */

	if (!strcmp(pattern, "*"))
		return true;
	return !strncmp(name, pattern, n) && name[n] != '\0';
}

static bool
rule_matches(const struct policy_rule *r, const char *service,
	     enum vc_scope scope, const char *owner)
{
	if (r->scope != scope)
		return false;
	if (strcmp(r->service, "*") && strcmp(r->service, service))
		return false;
	if (scope == VC_SCOPE_PLATFORM && !strcmp(r->owner, SELF))
		return !strcmp(owner, service);
	return true;
}

bool
vc_policy_allows(const char *service, const struct vc_path *p, unsigned op)
{
	size_t i;

	if (!service || !*service)
		return false;
	for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		if (rule_matches(&rules[i], service, p->scope, p->owner) &&
		    (rules[i].ops & op) == op &&
		    pattern_covers(rules[i].pattern, p->name))
			return true;
	return false;
}

bool
vc_policy_allows_list(const char *service, enum vc_scope scope,
		      const char *owner, const char *prefix)
{
	size_t i;

	if (!service || !*service)
		return false;
	for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		if (rule_matches(&rules[i], service, scope, owner) &&
		    (rules[i].ops & VC_OP_LIST) &&
		    pattern_covers(rules[i].pattern, prefix))
			return true;
	return false;
}

const char *
vc_op_name(unsigned op)
{
	switch (op) {
	case VC_OP_READ:
		return "read";
	case VC_OP_WRITE:
		return "write";
	case VC_OP_DELETE:
		return "delete";
	case VC_OP_DESTROY:
		return "destroy";
	case VC_OP_META:
		return "metadata";
	case VC_OP_LIST:
		return "list";
	}
	return "unknown";
}

/* What an API key's scopes allow: read covers list and metadata, write
   covers those and write/delete; reveal and audit never. */
static bool
api_key_allows(const struct cm_principal *p, enum vc_user_op op)
{
	bool write = cm_principal_has_role(p, "secrets:write");
	bool read = write || cm_principal_has_role(p, "secrets:read");

	switch (op) {
	case VC_USER_LIST:
	case VC_USER_META:
		return read;
	case VC_USER_WRITE:
	case VC_USER_DELETE:
		return write;
	case VC_USER_REVEAL:
	case VC_USER_AUDIT:
		break;
	}
	return false;
}

const char *
vc_user_refusal(const struct cm_principal *p, enum vc_user_op op)
{
	bool admin, reader;

	if (!p || p->is_service || strcmp(p->via, CM_GATEWAY_ISSUER) ||
	    !p->sub[0] || !p->tenant_id[0])
		return "not_via_gateway";
	if (p->is_api_key)
		return api_key_allows(p, op) ? NULL : "insufficient_scope";
	admin = cm_principal_has_role(p, "owner") ||
		cm_principal_has_role(p, "admin");
	reader = admin || cm_principal_has_role(p, "manager");
	if (admin || (reader && (op == VC_USER_LIST || op == VC_USER_META)))
		return NULL;
	return "forbidden";
}

const char *
vc_user_op_name(enum vc_user_op op)
{
	static const char *const names[] = {
		[VC_USER_LIST] = "list",     [VC_USER_META] = "metadata",
		[VC_USER_WRITE] = "write",   [VC_USER_DELETE] = "delete",
		[VC_USER_REVEAL] = "reveal", [VC_USER_AUDIT] = "audit",
	};

	if ((unsigned)op >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[op];
}

bool
vc_transit_key_valid(const char *key)
{
	size_t i, n = key ? strlen(key) : 0;

	if (n == 0 || n > VC_TRANSIT_KEY_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (!seg_char_ok((unsigned char)key[i]) || key[i] == '.')
			return false;
	return true;
}

bool
vc_transit_allows(const char *service, const char *key)
{
	size_t n = service ? strlen(service) : 0;

	if (!n || !vc_transit_key_valid(key) || strncmp(key, service, n))
		return false;
	return key[n] == '\0' || (key[n] == '-' && key[n + 1] != '\0');
}
