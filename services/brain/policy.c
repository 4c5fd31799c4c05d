/*
 * policy.c - brain's rules as data: roles to permissions, tier limits, and
 * validation of tenant input. Pure: no I/O.
 */
#include "brain.h"

#include "common/buf.h"
#include "common/json.h"
#include "common/mem.h"

#include <ctype.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/banned.h"

/* The one roles-to-permissions table (docs/brain.md shows it too). */
static const struct {
	const char *role;
	int rank;
	unsigned perms;
} role_table[] = {
	{ "super_admin", 6, ~0u },
	{ "owner", 5,
	  BRAIN_PERM_TENANT_READ | BRAIN_PERM_TENANT_WRITE |
		  BRAIN_PERM_MEMBERS_READ | BRAIN_PERM_MEMBERS_WRITE |
		  BRAIN_PERM_USAGE_READ | BRAIN_PERM_KEYS_WRITE },
	{ "admin", 4,
	  BRAIN_PERM_TENANT_READ | BRAIN_PERM_TENANT_WRITE |
		  BRAIN_PERM_MEMBERS_READ | BRAIN_PERM_MEMBERS_WRITE |
		  BRAIN_PERM_USAGE_READ | BRAIN_PERM_KEYS_WRITE },
	{ "manager", 3,
	  BRAIN_PERM_TENANT_READ | BRAIN_PERM_MEMBERS_READ |
		  BRAIN_PERM_USAGE_READ },
	{ "user", 2, BRAIN_PERM_TENANT_READ },
	{ "readonly", 1, BRAIN_PERM_TENANT_READ },
	/* API key scopes (rank 0: never a member's role) */
	{ "brain:read", 0, BRAIN_PERM_TENANT_READ | BRAIN_PERM_USAGE_READ },
	{ "brain:write", 0,
	  BRAIN_PERM_TENANT_READ | BRAIN_PERM_TENANT_WRITE |
		  BRAIN_PERM_USAGE_READ },
};

#define NROLES (sizeof(role_table) / sizeof(role_table[0]))

bool
brain_role_valid(const char *role)
{
	int r = brain_role_rank(role);

	return r >= 1 && r <= 5;
}

int
brain_role_rank(const char *role)
{
	size_t i;

	for (i = 0; role && i < NROLES; i++)
		if (!strcmp(role, role_table[i].role))
			return role_table[i].rank;
	return 0;
}

unsigned
brain_role_perms(const char *role)
{
	size_t i;

	for (i = 0; role && i < NROLES; i++)
		if (!strcmp(role, role_table[i].role))
			return role_table[i].perms;
	return 0;
}

unsigned
brain_principal_perms(const struct cm_principal *p)
{
	unsigned perms = 0;
	int i;

	if (!p || p->is_service)
		return 0;
	for (i = 0; i < p->nroles; i++)
		perms |= brain_role_perms(p->roles[i]);
	return perms;
}

/* Tier defaults; a tenant's limits overrides replace single entries. */
static const char *const tiers[] = { "free", "starter", "professional",
				     "enterprise", NULL };
static const char *const limit_names[] = {
	"max_users",
	"max_leads",
	"max_storage_mb",
	"api_requests_per_minute",
	"ai_budget_usd_monthly",
	"events_per_hour",
};
#define NLIMITS (sizeof(limit_names) / sizeof(limit_names[0]))
static const int64_t tier_limits[4][NLIMITS] = {
	{ 3, 500, 500, 60, 5, 1000 },
	{ 10, 5000, 5000, 300, 50, 10000 },
	{ 50, 50000, 50000, 1200, 250, 100000 },
	{ 1000, 1000000, 1000000, 6000, 2000, 1000000 },
};
#define LIMIT_MAX 1000000000LL

int
brain_tier_index(const char *tier)
{
	int i;

	for (i = 0; tier && tiers[i]; i++)
		if (!strcmp(tier, tiers[i]))
			return i;
	return -1;
}

cJSON *
brain_limits_effective(const char *tier, const cJSON *overrides)
{
	int t = brain_tier_index(tier);
	cJSON *out = cJSON_CreateObject();
	const cJSON *o;
	size_t i;
	double v;

	for (i = 0; i < NLIMITS; i++) {
		v = t < 0 ? 0 : (double)tier_limits[t][i];
		o = cJSON_GetObjectItemCaseSensitive(overrides, limit_names[i]);
		if (cJSON_IsNumber(o))
			v = o->valuedouble;
		cJSON_AddNumberToObject(out, limit_names[i], v);
	}
	return out;
}

static bool
label_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

bool
brain_slug_valid(const char *slug)
{
	size_t n = slug ? strlen(slug) : 0, i;

	if (n < 1 || n > 63 || slug[0] == '-' || slug[n - 1] == '-')
		return false;
	for (i = 0; i < n; i++)
		if (!label_char(slug[i]))
			return false;
	return true;
}

bool
brain_domain_valid(const char *domain)
{
	size_t n = domain ? strlen(domain) : 0, i, label = 0;
	bool dot = false;

	if (n < 3 || n > 253 || domain[0] == '.' || domain[n - 1] == '.')
		return false;
	for (i = 0; i < n; i++) {
		if (domain[i] == '.') {
			if (label == 0 || domain[i - 1] == '-')
				return false;
			dot = true;
			label = 0;
			continue;
		}
		if (!label_char(domain[i]) || ++label > 63 ||
		    (label == 1 && domain[i] == '-'))
			return false;
	}
	return dot && domain[n - 1] != '-';
}

bool
brain_email_valid(const char *email)
{
	size_t n = email ? strlen(email) : 0, i;
	const char *at = email ? strchr(email, '@') : NULL;

	if (n < 3 || n > 254 || !at || at == email || !at[1] ||
	    strchr(at + 1, '@'))
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)email[i] <= ' ' || email[i] == 0x7f)
			return false;
	return true;
}

static const char *const service_names[] = { "crm",	 "cms",	   "ai_agents",
					     "telegram", "images", "workflows",
					     NULL };

static bool
in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(s, *list))
			return true;
	return false;
}

/* limits: an object of known names -> numbers in 0..LIMIT_MAX. */
static int
parse_limits(const cJSON *obj, char **out, char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *it;
	size_t i;

	cJSON_ArrayForEach(it, obj)
	{
		for (i = 0; i < NLIMITS; i++)
			if (!strcmp(it->string, limit_names[i]))
				break;
		if (i == NLIMITS) {
			snprintf(errbuf, CM_ERRBUF_LEN,
				 "field 'limits.%.64s' is unknown", it->string);
			return CM_EINVAL;
		}
		if (cm_json_get_double(obj, "limits", it->string, true, 0,
				       (double)LIMIT_MAX, NULL, errbuf) < 0)
			return CM_EINVAL;
	}
	*out = cm_json_print(obj);
	return 0;
}

/* services_enabled: known names, no duplicates -> "{crm,cms}". */
static int
parse_services(const cJSON *arr, char **out, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf b = CM_BUF_INIT(256);
	const cJSON *it;
	unsigned seen = 0;
	int i;

	cm_buf_putc(&b, '{');
	cJSON_ArrayForEach(it, arr)
	{
		for (i = 0; cJSON_IsString(it) && service_names[i]; i++)
			if (!strcmp(it->valuestring, service_names[i]))
				break;
		if (!cJSON_IsString(it) || !service_names[i] ||
		    (seen & (1u << i))) {
			snprintf(errbuf, CM_ERRBUF_LEN,
				 "field 'services_enabled' must list distinct "
				 "services of crm, cms, ai_agents, telegram, "
				 "images, workflows");
			cm_buf_release(&b);
			return CM_EINVAL;
		}
		cm_buf_printf(&b, "%s%s", seen ? "," : "", service_names[i]);
		seen |= 1u << i;
	}
	cm_buf_putc(&b, '}');
	*out = cm_buf_detach(&b, NULL);
	return 0;
}

static bool
is_colour(const char *s)
{
	size_t i;

	if (strlen(s) != 7 || s[0] != '#')
		return false;
	for (i = 1; i < 7; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

static bool
is_url(const char *s)
{
	size_t i;

	if (strncmp(s, "https://", 8) && strncmp(s, "http://", 7))
		return false;
	for (i = 0; s[i]; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == '"' || s[i] == 0x7f)
			return false;
	return true;
}

static bool
is_timezone(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("_/+-", s[i]))
			return false;
	return i >= 1 && i <= 64;
}

static bool
is_currency(const char *s)
{
	return strlen(s) == 3 && isupper((unsigned char)s[0]) &&
	       isupper((unsigned char)s[1]) && isupper((unsigned char)s[2]);
}

static bool
is_language(const char *s)
{
	size_t n = strlen(s);

	if (n != 2 && n != 5)
		return false;
	if (!islower((unsigned char)s[0]) || !islower((unsigned char)s[1]))
		return false;
	return n == 2 || (s[2] == '-' && isupper((unsigned char)s[3]) &&
			  isupper((unsigned char)s[4]));
}

struct str_rule {
	const char *name;
	size_t max;
	bool (*ok)(const char *s);
	const char *what;
};

static const struct str_rule branding_rules[] = {
	{ "primary_color", 7, is_colour, "a #rrggbb colour" },
	{ "secondary_color", 7, is_colour, "a #rrggbb colour" },
	{ "logo_url", 2048, is_url, "an http(s) URL" },
	{ "company_name", 200, NULL, "a string" },
	{ NULL, 0, NULL, NULL },
};

static const struct str_rule settings_rules[] = {
	{ "timezone", 64, is_timezone, "a time zone name" },
	{ "currency", 3, is_currency, "an ISO 4217 code" },
	{ "language", 5, is_language, "a language tag like en or en-GB" },
	{ NULL, 0, NULL, NULL },
};

/* An object whose members are strings checked by rules. */
static int
parse_strings(const cJSON *obj, const char *path, const struct str_rule *rules,
	      char **out, char errbuf[CM_ERRBUF_LEN])
{
	const struct str_rule *r;
	const cJSON *it;
	const char *v;

	cJSON_ArrayForEach(it, obj)
	{
		for (r = rules; r->name; r++)
			if (!strcmp(it->string, r->name))
				break;
		if (!r->name) {
			snprintf(errbuf, CM_ERRBUF_LEN,
				 "field '%s.%.64s' is unknown", path,
				 it->string);
			return CM_EINVAL;
		}
		if (cm_json_get_str(obj, path, r->name, true, r->max, &v,
				    errbuf) < 0)
			return CM_EINVAL;
		if (r->ok && !r->ok(v)) {
			snprintf(errbuf, CM_ERRBUF_LEN,
				 "field '%s.%s' must be %s", path, r->name,
				 r->what);
			return CM_EINVAL;
		}
	}
	*out = cm_json_print(obj);
	return 0;
}

static const char *const admin_fields[] = {
	"slug",	  "status",	      "subscription_tier",
	"limits", "services_enabled", NULL
};
static const char *const own_fields[] = { "name", "primary_domain", "branding",
					  "settings", NULL };
static const char *const create_statuses[] = { "trial", "active", NULL };

/* Refuse unknown members and, for tenant admins, platform-only ones. */
static int
check_fields(const cJSON *body, bool admin, char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *it;

	cJSON_ArrayForEach(it, body)
	{
		if (in_list(it->string, own_fields))
			continue;
		if (in_list(it->string, admin_fields)) {
			if (admin)
				continue;
			snprintf(errbuf, CM_ERRBUF_LEN,
				 "field '%s' may only be changed by the "
				 "platform",
				 it->string);
			return CM_EPERM;
		}
		snprintf(errbuf, CM_ERRBUF_LEN, "field '%.64s' is unknown",
			 it->string);
		return CM_EINVAL;
	}
	return 0;
}

static int
parse_scalars(const cJSON *body, struct brain_tenant_input *in,
	      char errbuf[CM_ERRBUF_LEN])
{
	int idx, rc;

	if (cm_json_get_str(body, NULL, "slug", false, 63, &in->slug, errbuf) ==
		    CM_EINVAL ||
	    cm_json_get_str(body, NULL, "name", false, 200, &in->name,
			    errbuf) == CM_EINVAL)
		return CM_EINVAL;
	if (in->slug && !brain_slug_valid(in->slug)) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "field 'slug' must be a DNS label: a-z, 0-9, '-'");
		return CM_EINVAL;
	}
	if (in->name && !in->name[0]) {
		snprintf(errbuf, CM_ERRBUF_LEN, "field 'name' is empty");
		return CM_EINVAL;
	}
	rc = cm_json_get_enum(body, NULL, "status", false, create_statuses,
			      &idx, errbuf);
	if (rc == CM_EINVAL)
		return rc;
	in->status = rc == 0 ? create_statuses[idx] : NULL;
	rc = cm_json_get_enum(body, NULL, "subscription_tier", false, tiers,
			      &idx, errbuf);
	if (rc == CM_EINVAL)
		return rc;
	in->tier = rc == 0 ? tiers[idx] : NULL;
	return 0;
}

static int
parse_domain(const cJSON *body, struct brain_tenant_input *in,
	     char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *d =
		cJSON_GetObjectItemCaseSensitive(body, "primary_domain");

	if (cJSON_IsNull(d)) {
		in->clear_primary_domain = true;
		return 0;
	}
	if (cm_json_get_str(body, NULL, "primary_domain", false, 253,
			    &in->primary_domain, errbuf) == CM_EINVAL)
		return CM_EINVAL;
	if (in->primary_domain && !brain_domain_valid(in->primary_domain)) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "field 'primary_domain' must be a lower-case host "
			 "name");
		return CM_EINVAL;
	}
	return 0;
}

static int
parse_objects(const cJSON *body, struct brain_tenant_input *in,
	      char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *o = NULL;

	if (cm_json_get_object(body, NULL, "limits", false, &o, errbuf) ==
		    CM_EINVAL ||
	    (o && parse_limits(o, &in->limits, errbuf) < 0))
		return CM_EINVAL;
	o = NULL;
	if (cm_json_get_array(body, NULL, "services_enabled", false, 6, &o,
			      errbuf) == CM_EINVAL ||
	    (o && parse_services(o, &in->services, errbuf) < 0))
		return CM_EINVAL;
	o = NULL;
	if (cm_json_get_object(body, NULL, "branding", false, &o, errbuf) ==
		    CM_EINVAL ||
	    (o && parse_strings(o, "branding", branding_rules, &in->branding,
				errbuf) < 0))
		return CM_EINVAL;
	o = NULL;
	if (cm_json_get_object(body, NULL, "settings", false, &o, errbuf) ==
		    CM_EINVAL ||
	    (o && parse_strings(o, "settings", settings_rules, &in->settings,
				errbuf) < 0))
		return CM_EINVAL;
	return 0;
}

int
brain_tenant_input_parse(const cJSON *body, bool admin,
			 struct brain_tenant_input *in,
			 char errbuf[CM_ERRBUF_LEN])
{
	int rc;

	memset(in, 0, sizeof(*in));
	if (!cJSON_IsObject(body)) {
		snprintf(errbuf, CM_ERRBUF_LEN, "the body must be an object");
		return CM_EINVAL;
	}
	if ((rc = check_fields(body, admin, errbuf)) < 0 ||
	    (rc = parse_scalars(body, in, errbuf)) < 0 ||
	    (rc = parse_domain(body, in, errbuf)) < 0 ||
	    (rc = parse_objects(body, in, errbuf)) < 0) {
		brain_tenant_input_release(in);
		return rc;
	}
	return 0;
}

void
brain_tenant_input_release(struct brain_tenant_input *in)
{
	free(in->limits);
	free(in->services);
	free(in->branding);
	free(in->settings);
	memset(in, 0, sizeof(*in));
}

static const char *const scope_services[] = {
	"brain",     "crm",	 "cms",	   "events",	"secrets",
	"ai_agents", "telegram", "images", "workflows", NULL
};

static bool
scope_valid(const char *s)
{
	const char *colon = strchr(s, ':');
	char svc[16];
	size_t n;

	if (!colon || (n = (size_t)(colon - s)) >= sizeof(svc))
		return false;
	memcpy(svc, s, n);
	svc[n] = '\0';
	return in_list(svc, scope_services) &&
	       (!strcmp(colon + 1, "read") || !strcmp(colon + 1, "write"));
}

int
brain_scopes_parse(const cJSON *arr, char **literal, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf b = CM_BUF_INIT(512);
	const cJSON *it, *prev;
	int n = 0;

	cm_buf_putc(&b, '{');
	cJSON_ArrayForEach(it, arr)
	{
		if (!cJSON_IsString(it) || !scope_valid(it->valuestring) ||
		    ++n > CM_ROLES_MAX)
			goto bad;
		for (prev = arr->child; prev != it; prev = prev->next)
			if (!strcmp(prev->valuestring, it->valuestring))
				goto bad;
		cm_buf_printf(&b, "%s%s", n > 1 ? "," : "", it->valuestring);
	}
	if (n == 0)
		goto bad;
	cm_buf_putc(&b, '}');
	*literal = cm_buf_detach(&b, NULL);
	return 0;
bad:
	snprintf(errbuf, CM_ERRBUF_LEN,
		 "field 'scopes' must list 1..%d distinct <service>:read or "
		 "<service>:write",
		 CM_ROLES_MAX);
	cm_buf_release(&b);
	return CM_EINVAL;
}
