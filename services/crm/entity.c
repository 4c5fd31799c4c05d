/*
 * entity.c - the entities as field tables, and body validation.
 *
 * A field's kind decides how a JSON value is checked and turned into the
 * text PostgreSQL receives as a parameter. The tables are the contract:
 * docs/crm.md and proto/openapi/crm.yaml list the same fields.
 */
#include "crm.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/bus.h"
#include "common/json.h"
#include "common/mem.h"

#include "common/banned.h"

const char *const crm_company_sizes[] = { "startup", "small",	   "medium",
					  "large",   "enterprise", NULL };
const char *const crm_lead_statuses[] = {
	"new",	     "contacted", "qualified",	  "proposal", "negotiation",
	"converted", "lost",	  "unresponsive", NULL
};
static const char *const priorities[] = { "low", "medium", "high", "urgent",
					  NULL };
static const char *const deal_statuses[] = { "open", "won", "lost", NULL };
static const char *const activity_types[] = {
	"note",	     "email",	      "call",	    "meeting", "task",
	"follow_up", "status_change", "assignment", NULL
};

#define RO CRM_F_READONLY
#define FL CRM_F_FILTER
#define SC CRM_F_SCORE
#define NN CRM_F_NOTNULL
#define RQ CRM_F_REQUIRED
#define CO CRM_F_CREATEONLY
#define END_FIELDS                        \
	{                                 \
		NULL, 0, 0, NULL, 0, NULL \
	}

static const struct crm_field lead_fields[] = {
	{ "name", CRM_K_TEXT, 200, NULL, RQ, NULL },
	{ "email", CRM_K_EMAIL, 254, NULL, 0, NULL },
	{ "phone", CRM_K_TEXT, 40, NULL, SC, NULL },
	{ "company", CRM_K_TEXT, 200, NULL, SC, NULL },
	{ "job_title", CRM_K_TEXT, 200, NULL, SC, NULL },
	{ "company_website", CRM_K_TEXT, 2048, NULL, 0, NULL },
	{ "company_size", CRM_K_ENUM, 0, crm_company_sizes, FL | SC, NULL },
	{ "industry", CRM_K_TEXT, 100, NULL, FL, NULL },
	{ "annual_revenue", CRM_K_MONEY, 0, NULL, 0, NULL },
	{ "status", CRM_K_ENUM, 0, crm_lead_statuses, FL | SC | NN, "'new'" },
	{ "priority", CRM_K_ENUM, 0, priorities, FL | NN, "'medium'" },
	{ "source", CRM_K_TEXT, 64, NULL, FL, NULL },
	{ "owner_id", CRM_K_UUID, 0, NULL, FL, NULL },
	{ "score", CRM_K_INT, 100, NULL, RO | NN, "0" },
	{ "score_factors", CRM_K_OBJECT, 0, NULL, RO | NN, "'[]'" },
	{ "scored_at", CRM_K_TIME, 0, NULL, RO, NULL },
	{ "tags", CRM_K_TAGS, 0, NULL, FL | NN, "'{}'" },
	{ "budget", CRM_K_MONEY, 0, NULL, SC, NULL },
	{ "timeline", CRM_K_TEXT, 64, NULL, SC, NULL },
	{ "decision_maker", CRM_K_BOOL, 0, NULL, SC | NN, "false" },
	{ "pain_points", CRM_K_TEXT, 5000, NULL, 0, NULL },
	{ "requirements", CRM_K_TEXT, 5000, NULL, 0, NULL },
	{ "utm_source", CRM_K_TEXT, 200, NULL, FL, NULL },
	{ "utm_medium", CRM_K_TEXT, 200, NULL, FL, NULL },
	{ "utm_campaign", CRM_K_TEXT, 200, NULL, FL, NULL },
	{ "utm_term", CRM_K_TEXT, 200, NULL, 0, NULL },
	{ "utm_content", CRM_K_TEXT, 200, NULL, 0, NULL },
	{ "referrer", CRM_K_TEXT, 2048, NULL, 0, NULL },
	{ "first_contact_at", CRM_K_TIME, 0, NULL, 0, NULL },
	{ "last_contact_at", CRM_K_TIME, 0, NULL, 0, NULL },
	{ "next_follow_up_at", CRM_K_TIME, 0, NULL, 0, NULL },
	{ "converted_at", CRM_K_TIME, 0, NULL, RO, NULL },
	{ "conversion_value", CRM_K_MONEY, 0, NULL, RO, NULL },
	{ "lost_reason", CRM_K_TEXT, 500, NULL, 0, NULL },
	{ "contact_id", CRM_K_UUID, 0, NULL, RO | FL, NULL },
	{ "company_id", CRM_K_UUID, 0, NULL, RO | FL, NULL },
	{ "deal_id", CRM_K_UUID, 0, NULL, RO, NULL },
	{ "custom_fields", CRM_K_OBJECT, 0, NULL, NN, "'{}'" },
	END_FIELDS,
};

static const struct crm_field contact_fields[] = {
	{ "name", CRM_K_TEXT, 200, NULL, RQ, NULL },
	{ "email", CRM_K_EMAIL, 254, NULL, 0, NULL },
	{ "phone", CRM_K_TEXT, 40, NULL, 0, NULL },
	{ "job_title", CRM_K_TEXT, 200, NULL, 0, NULL },
	{ "company_id", CRM_K_UUID, 0, NULL, FL, NULL },
	{ "owner_id", CRM_K_UUID, 0, NULL, FL, NULL },
	{ "source", CRM_K_TEXT, 64, NULL, FL, NULL },
	{ "tags", CRM_K_TAGS, 0, NULL, FL | NN, "'{}'" },
	{ "custom_fields", CRM_K_OBJECT, 0, NULL, NN, "'{}'" },
	END_FIELDS,
};

static const struct crm_field company_fields[] = {
	{ "name", CRM_K_TEXT, 200, NULL, RQ, NULL },
	{ "domain", CRM_K_TEXT, 253, NULL, 0, NULL },
	{ "website", CRM_K_TEXT, 2048, NULL, 0, NULL },
	{ "industry", CRM_K_TEXT, 100, NULL, FL, NULL },
	{ "size", CRM_K_ENUM, 0, crm_company_sizes, FL, NULL },
	{ "annual_revenue", CRM_K_MONEY, 0, NULL, 0, NULL },
	{ "phone", CRM_K_TEXT, 40, NULL, 0, NULL },
	{ "address", CRM_K_TEXT, 500, NULL, 0, NULL },
	{ "description", CRM_K_TEXT, 5000, NULL, 0, NULL },
	{ "owner_id", CRM_K_UUID, 0, NULL, FL, NULL },
	{ "tags", CRM_K_TAGS, 0, NULL, FL | NN, "'{}'" },
	{ "custom_fields", CRM_K_OBJECT, 0, NULL, NN, "'{}'" },
	END_FIELDS,
};

static const struct crm_field deal_fields[] = {
	{ "title", CRM_K_TEXT, 200, NULL, RQ, NULL },
	{ "value", CRM_K_MONEY, 0, NULL, NN, "0" },
	{ "currency", CRM_K_CURRENCY, 3, NULL, NN | FL, "'USD'" },
	{ "expected_close_date", CRM_K_DATE, 0, NULL, 0, NULL },
	{ "pipeline_id", CRM_K_UUID, 0, NULL, CO | FL, NULL },
	{ "stage_id", CRM_K_UUID, 0, NULL, CO | FL, NULL },
	{ "status", CRM_K_ENUM, 0, deal_statuses, RO | FL, NULL },
	{ "owner_id", CRM_K_UUID, 0, NULL, FL, NULL },
	{ "contact_id", CRM_K_UUID, 0, NULL, FL, NULL },
	{ "company_id", CRM_K_UUID, 0, NULL, FL, NULL },
	{ "lead_id", CRM_K_UUID, 0, NULL, FL, NULL },
	{ "lost_reason", CRM_K_TEXT, 500, NULL, RO, NULL },
	{ "closed_at", CRM_K_TIME, 0, NULL, RO, NULL },
	{ "description", CRM_K_TEXT, 5000, NULL, 0, NULL },
	{ "tags", CRM_K_TAGS, 0, NULL, FL | NN, "'{}'" },
	{ "custom_fields", CRM_K_OBJECT, 0, NULL, NN, "'{}'" },
	END_FIELDS,
};

static const struct crm_field activity_fields[] = {
	{ "type", CRM_K_ENUM, 0, activity_types, RQ | FL, NULL },
	{ "subject", CRM_K_TEXT, 200, NULL, RQ, NULL },
	{ "body", CRM_K_TEXT, 10000, NULL, 0, NULL },
	{ "due_at", CRM_K_TIME, 0, NULL, 0, NULL },
	{ "completed_at", CRM_K_TIME, 0, NULL, RO, NULL },
	{ "due_notified_at", CRM_K_TIME, 0, NULL, RO, NULL },
	{ "owner_id", CRM_K_UUID, 0, NULL, FL, NULL },
	{ "lead_id", CRM_K_UUID, 0, NULL, FL, NULL },
	{ "contact_id", CRM_K_UUID, 0, NULL, FL, NULL },
	{ "company_id", CRM_K_UUID, 0, NULL, FL, NULL },
	{ "deal_id", CRM_K_UUID, 0, NULL, FL, NULL },
	END_FIELDS,
};

static const struct crm_field note_fields[] = {
	{ "body", CRM_K_TEXT, 10000, NULL, RQ, NULL },
	{ "is_private", CRM_K_BOOL, 0, NULL, NN, "false" },
	{ "lead_id", CRM_K_UUID, 0, NULL, FL, NULL },
	{ "contact_id", CRM_K_UUID, 0, NULL, FL, NULL },
	{ "company_id", CRM_K_UUID, 0, NULL, FL, NULL },
	{ "deal_id", CRM_K_UUID, 0, NULL, FL, NULL },
	END_FIELDS,
};

#define SORT_CREATED                     \
	{                                \
		"created_at", true, NULL \
	}
#define SORT_UPDATED                     \
	{                                \
		"updated_at", true, NULL \
	}
#define SORT_END                  \
	{                         \
		NULL, false, NULL \
	}

static const struct crm_sort lead_sorts[] = {
	SORT_CREATED, SORT_UPDATED, { "score", false, "integer" }, SORT_END
};
static const struct crm_sort deal_sorts[] = {
	SORT_CREATED, SORT_UPDATED, { "value", false, "numeric" }, SORT_END
};
static const struct crm_sort plain_sorts[] = { SORT_CREATED, SORT_UPDATED,
					       SORT_END };

static const struct crm_view lead_views[] = {
	{ "overdue_follow_ups",
	  "next_follow_up_at < now() AND status NOT IN ('converted', 'lost')" },
	{ "high_priority", "priority IN ('high', 'urgent') "
			   "AND status NOT IN ('converted', 'lost')" },
	{ "unassigned", "owner_id IS NULL" },
	{ NULL, NULL },
};
static const struct crm_view activity_views[] = {
	{ "upcoming", "completed_at IS NULL AND due_at >= now()" },
	{ "overdue", "completed_at IS NULL AND due_at < now()" },
	{ "open", "completed_at IS NULL" },
	{ NULL, NULL },
};
static const struct crm_view no_views[] = { { NULL, NULL } };

struct crm_entity crm_leads = {
	.name = "lead",
	.plural = "leads",
	.table = "crm.leads",
	.fields = lead_fields,
	.sorts = lead_sorts,
	.views = lead_views,
	.searchable = true,
	.created_event = "lead.created",
	.updated_event = "lead.updated",
	.deleted_event = "lead.deleted",
};
struct crm_entity crm_contacts = {
	.name = "contact",
	.plural = "contacts",
	.table = "crm.contacts",
	.fields = contact_fields,
	.sorts = plain_sorts,
	.views = no_views,
	.searchable = true,
	.created_event = "contact.created",
};
struct crm_entity crm_companies = {
	.name = "company",
	.plural = "companies",
	.table = "crm.companies",
	.fields = company_fields,
	.sorts = plain_sorts,
	.views = no_views,
	.searchable = true,
};
struct crm_entity crm_deals = {
	.name = "deal",
	.plural = "deals",
	.table = "crm.deals",
	.fields = deal_fields,
	.sorts = deal_sorts,
	.views = no_views,
	.searchable = true,
	.created_event = "deal.created",
};
struct crm_entity crm_activities = {
	.name = "activity",
	.plural = "activities",
	.table = "crm.activities",
	.fields = activity_fields,
	.sorts = plain_sorts,
	.views = activity_views,
};
struct crm_entity crm_notes = {
	.name = "note",
	.plural = "notes",
	.table = "crm.notes",
	.fields = note_fields,
	.sorts = plain_sorts,
	.views = no_views,
	.private_notes = true,
};

static struct crm_entity *const all_entities[] = {
	&crm_leads, &crm_contacts,   &crm_companies,
	&crm_deals, &crm_activities, &crm_notes,
};

void
crm_entities_init(void)
{
	struct cm_buf b = CM_BUF_INIT(sizeof(crm_leads.columns) - 1);
	const struct crm_field *f;
	size_t i;

	for (i = 0; i < sizeof(all_entities) / sizeof(all_entities[0]); i++) {
		cm_buf_reset(&b);
		cm_buf_puts(&b, "id");
		for (f = all_entities[i]->fields; f->name; f++) {
			if (f->kind == CRM_K_TAGS)
				cm_buf_printf(&b, ", to_jsonb(%s) AS %s",
					      f->name, f->name);
			else
				cm_buf_printf(&b, ", %s", f->name);
		}
		cm_buf_puts(&b, ", version, created_by, created_at, "
				"updated_at");
		if (cm_buf_error(&b) == 0)
			cm_strlcpy(all_entities[i]->columns, cm_buf_str(&b),
				   sizeof(all_entities[i]->columns));
	}
	cm_buf_release(&b);
}

const struct crm_entity *
crm_entity_by_plural(const char *plural)
{
	size_t i;

	for (i = 0;
	     plural && i < sizeof(all_entities) / sizeof(all_entities[0]); i++)
		if (strcmp(all_entities[i]->plural, plural) == 0)
			return all_entities[i];
	return NULL;
}

const struct crm_field *
crm_entity_field(const struct crm_entity *e, const char *name)
{
	const struct crm_field *f;

	for (f = e->fields; f->name; f++)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

bool
crm_valid_date(const char *s)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30,
				     31, 31, 30, 31, 30, 31 };
	int64_t y, m, d;
	char part[5];
	int i;

	if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return false;
	for (i = 0; i < 10; i++)
		if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
			return false;
	cm_strlcpy(part, s, 5);
	cm_parse_i64(part, 0, 9999, &y);
	cm_strlcpy(part, s + 5, 3);
	cm_parse_i64(part, 0, 99, &m);
	cm_strlcpy(part, s + 8, 3);
	cm_parse_i64(part, 0, 99, &d);
	if (y < 1 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return false;
	return !(m == 2 && d == 29 &&
		 !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
}

static bool
valid_email(const char *s)
{
	const char *at = strchr(s, '@');
	const char *p;

	if (!at || at == s || !at[1] || strchr(at + 1, '@') ||
	    !strchr(at + 1, '.'))
		return false;
	for (p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return false;
	return true;
}

/* Tags: an array of 1..64-byte strings, at most CRM_MAX_TAGS, as JSON. */
static int
tags_text(const struct crm_field *f, const cJSON *v, char **out,
	  char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *it;
	size_t n;

	if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > CRM_MAX_TAGS) {
		cm_errf(errbuf,
			"field '%s' must be an array of at most %d "
			"strings",
			f->name, CRM_MAX_TAGS);
		return CM_EINVAL;
	}
	cJSON_ArrayForEach(it, v)
	{
		n = cJSON_IsString(it) ? strlen(it->valuestring) : 0;
		if (n == 0 || n > CRM_TAG_LEN) {
			cm_errf(errbuf,
				"field '%s' items must be strings of "
				"1 to %d bytes",
				f->name, CRM_TAG_LEN);
			return CM_EINVAL;
		}
	}
	*out = cm_json_print(v);
	return 0;
}

static int
object_text(const struct crm_field *f, const cJSON *v, char **out,
	    char errbuf[CM_ERRBUF_LEN])
{
	char *text;

	if (!cJSON_IsObject(v)) {
		cm_errf(errbuf, "field '%s' must be an object", f->name);
		return CM_EINVAL;
	}
	text = cm_json_print(v);
	if (strlen(text) > CRM_OBJECT_MAX) {
		free(text);
		cm_errf(errbuf, "field '%s' must be at most %d bytes as JSON",
			f->name, CRM_OBJECT_MAX);
		return CM_EINVAL;
	}
	*out = text;
	return 0;
}

/* A string kind: the string, checked for its kind. */
static int
string_text(const struct crm_field *f, const cJSON *v, char **out,
	    char errbuf[CM_ERRBUF_LEN])
{
	const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
	size_t max = f->max > 0 ? (size_t)f->max : 1000;

	if (!s) {
		cm_errf(errbuf, "field '%s' must be a string", f->name);
		return CM_EINVAL;
	}
	if (f->kind == CRM_K_ENUM) {
		const char *const *e;
		int i = 0;

		for (e = f->values; *e; e++, i++)
			if (strcmp(*e, s) == 0)
				break;
		if (!*e) {
			struct cm_buf b = CM_BUF_INIT(200);

			for (e = f->values; *e; e++)
				cm_buf_printf(&b, "%s%s",
					      e == f->values ? "" : ", ", *e);
			cm_errf(errbuf, "field '%s' must be one of %s", f->name,
				cm_buf_str(&b));
			cm_buf_release(&b);
			return CM_EINVAL;
		}
	} else if (f->kind == CRM_K_UUID && !cm_is_uuid(s)) {
		cm_errf(errbuf, "field '%s' must be a uuid", f->name);
		return CM_EINVAL;
	} else if (f->kind == CRM_K_TIME && !cm_bus_is_rfc3339(s)) {
		cm_errf(errbuf, "field '%s' must be an RFC 3339 time", f->name);
		return CM_EINVAL;
	} else if (f->kind == CRM_K_DATE && !crm_valid_date(s)) {
		cm_errf(errbuf, "field '%s' must be a date (YYYY-MM-DD)",
			f->name);
		return CM_EINVAL;
	} else if (f->kind == CRM_K_CURRENCY &&
		   (strlen(s) != 3 || !isupper((unsigned char)s[0]) ||
		    !isupper((unsigned char)s[1]) ||
		    !isupper((unsigned char)s[2]))) {
		cm_errf(errbuf, "field '%s' must be an ISO 4217 code (USD)",
			f->name);
		return CM_EINVAL;
	} else if (f->kind == CRM_K_EMAIL && !valid_email(s)) {
		cm_errf(errbuf, "field '%s' must be an email address", f->name);
		return CM_EINVAL;
	} else if (strlen(s) > max) {
		cm_errf(errbuf, "field '%s' must be at most %zu bytes", f->name,
			max);
		return CM_EINVAL;
	} else if ((f->flags & CRM_F_REQUIRED) && !s[strspn(s, " \t")]) {
		cm_errf(errbuf, "field '%s' must not be empty", f->name);
		return CM_EINVAL;
	}
	*out = cm_xstrdup(s);
	return 0;
}

/* One value as parameter text; *out NULL for JSON null. */
static int
value_text(const struct crm_field *f, const cJSON *v, char **out,
	   char errbuf[CM_ERRBUF_LEN])
{
	char num[48];
	int64_t i;
	double d;

	*out = NULL;
	switch (f->kind) {
	case CRM_K_INT:
		if (!cJSON_IsNumber(v) || v->valuedouble < 0 ||
		    v->valuedouble > f->max)
			goto number;
		i = (int64_t)v->valuedouble;
		if ((double)i != v->valuedouble)
			goto number;
		snprintf(num, sizeof(num), "%lld", (long long)i);
		break;
	case CRM_K_MONEY:
		if (!cJSON_IsNumber(v) || v->valuedouble < 0 ||
		    v->valuedouble >= 1e13)
			goto number;
		d = v->valuedouble;
		snprintf(num, sizeof(num), "%.2f", d);
		break;
	case CRM_K_BOOL:
		if (!cJSON_IsBool(v)) {
			cm_errf(errbuf, "field '%s' must be a boolean",
				f->name);
			return CM_EINVAL;
		}
		cm_strlcpy(num, cJSON_IsTrue(v) ? "true" : "false",
			   sizeof(num));
		break;
	case CRM_K_TAGS:
		return tags_text(f, v, out, errbuf);
	case CRM_K_OBJECT:
		return object_text(f, v, out, errbuf);
	default:
		return string_text(f, v, out, errbuf);
	}
	*out = cm_xstrdup(num);
	return 0;
number:
	cm_errf(errbuf, "field '%s' must be a number between 0 and %s", f->name,
		f->kind == CRM_K_INT ? "100" : "9999999999999.99");
	return CM_EINVAL;
}

static int
parse_member(const struct crm_entity *e, const cJSON *it, bool create,
	     struct crm_values *out, char errbuf[CM_ERRBUF_LEN])
{
	const struct crm_field *f = crm_entity_field(e, it->string);
	char *text = NULL;
	int rc;

	if (!f) {
		cm_errf(errbuf, "field '%.64s' is not a %s field", it->string,
			e->name);
		return CM_EINVAL;
	}
	if ((f->flags & CRM_F_READONLY) ||
	    (!create && (f->flags & CRM_F_CREATEONLY))) {
		cm_errf(errbuf, "field '%s' cannot be set%s", f->name,
			create ? "" : " by an update");
		return CM_EINVAL;
	}
	if (cJSON_IsNull(it)) {
		if (f->flags & (CRM_F_REQUIRED | CRM_F_NOTNULL)) {
			cm_errf(errbuf, "field '%s' must not be null", f->name);
			return CM_EINVAL;
		}
		if (!create)
			crm_values_set(out, f, NULL);
		return 0;
	}
	if ((rc = value_text(f, it, &text, errbuf)) < 0)
		return rc;
	crm_values_set(out, f, text);
	free(text);
	return 0;
}

int
crm_entity_parse(const struct crm_entity *e, const cJSON *body, bool create,
		 struct crm_values *out, char errbuf[CM_ERRBUF_LEN])
{
	const struct crm_field *f;
	const cJSON *it;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(body)) {
		cm_errf(errbuf, "the body must be a JSON object");
		return CM_EINVAL;
	}
	cJSON_ArrayForEach(it, body)
	{
		if ((rc = parse_member(e, it, create, out, errbuf)) < 0)
			goto fail;
	}
	for (f = e->fields; create && f->name; f++) {
		if ((f->flags & CRM_F_REQUIRED) &&
		    !crm_values_find(out, f->name, NULL)) {
			cm_errf(errbuf, "field '%s' is required", f->name);
			rc = CM_EINVAL;
			goto fail;
		}
	}
	return 0;
fail:
	crm_values_release(out);
	return rc;
}

const char *
crm_values_find(const struct crm_values *v, const char *name, bool *set)
{
	int i;

	for (i = 0; i < v->n; i++) {
		if (strcmp(v->field[i]->name, name) == 0) {
			if (set)
				*set = true;
			return v->text[i];
		}
	}
	if (set)
		*set = false;
	return NULL;
}

void
crm_values_set(struct crm_values *v, const struct crm_field *f,
	       const char *text)
{
	int i;

	for (i = 0; i < v->n; i++) {
		if (v->field[i] == f) {
			free(v->text[i]);
			v->text[i] = cm_xstrdup(text);
			return;
		}
	}
	if (v->n >= CRM_MAX_FIELDS)
		return; /* fields are unique per table: cannot happen */
	v->field[v->n] = f;
	v->text[v->n++] = cm_xstrdup(text);
}

void
crm_values_release(struct crm_values *v)
{
	int i;

	for (i = 0; i < v->n; i++)
		free(v->text[i]);
	v->n = 0;
}

void
crm_field_sql_value(const struct crm_field *f, int n, char out[96])
{
	if (f->kind == CRM_K_TAGS)
		snprintf(out, 96,
			 "ARRAY(SELECT jsonb_array_elements_text($%d::jsonb))",
			 n);
	else if (f->kind == CRM_K_OBJECT)
		snprintf(out, 96, "$%d::jsonb", n);
	else
		snprintf(out, 96, "$%d", n);
}

static cJSON *
split_tags(const char *text)
{
	cJSON *arr = cJSON_CreateArray();
	const char *p = text, *end;
	size_t n;

	while (*p) {
		end = strchr(p, ';');
		n = end ? (size_t)(end - p) : strlen(p);
		while (n && isspace((unsigned char)*p)) {
			p++;
			n--;
		}
		while (n && isspace((unsigned char)p[n - 1]))
			n--;
		if (n) {
			char *t = cm_xstrndup(p, n);

			cJSON_AddItemToArray(arr, cJSON_CreateString(t));
			free(t);
		}
		if (!end)
			break;
		p = end + 1;
	}
	return arr;
}

cJSON *
crm_coerce_text(const struct crm_field *f, const char *text)
{
	double d;
	bool b;

	switch (f->kind) {
	case CRM_K_INT:
	case CRM_K_MONEY:
		if (cm_parse_double(text, -1e300, 1e300, &d) == 0)
			return cJSON_CreateNumber(d);
		break;
	case CRM_K_BOOL:
		if (cm_parse_bool(text, &b) == 0)
			return cJSON_CreateBool(b);
		break;
	case CRM_K_TAGS:
		return split_tags(text);
	default:
		break;
	}
	return cJSON_CreateString(text);
}
