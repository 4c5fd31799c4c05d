/*
 * scoring.c - the lead score from a per-tenant rule table.
 *
 * Rules (defaults equal the platform the CRM replaces): points for the
 * company size, the highest budget step reached, a decision maker, a
 * phone, a company and a job title, the status, and a timeline value
 * (matched case-insensitively); the sum is capped. The factors that gave
 * points are kept with the score, so a user sees why.
 */
#include "crm.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/mem.h"

#include "common/banned.h"

#define RULE_MAX_POINTS 1000

void
crm_score_rules_default(struct crm_score_rules *r)
{
	static const int sizes[CRM_SCORE_SIZES] = { 10, 20, 40, 60, 80 };
	static const int statuses[CRM_SCORE_STATUSES] = { 5,  10,  25, 40,
							  60, 100, 0,  0 };

	memset(r, 0, sizeof(*r));
	memcpy(r->company_size, sizes, sizeof(sizes));
	r->budget[0].min = 100000;
	r->budget[0].points = 30;
	r->budget[1].min = 50000;
	r->budget[1].points = 20;
	r->budget[2].min = 10000;
	r->budget[2].points = 10;
	r->nbudget = 3;
	r->decision_maker = 15;
	r->phone = 5;
	r->company = 5;
	r->job_title = 5;
	memcpy(r->status, statuses, sizeof(statuses));
	cm_strlcpy(r->timeline[0].value, "immediate",
		   sizeof(r->timeline[0].value));
	r->timeline[0].points = 20;
	cm_strlcpy(r->timeline[1].value, "month", sizeof(r->timeline[1].value));
	r->timeline[1].points = 15;
	cm_strlcpy(r->timeline[2].value, "quarter",
		   sizeof(r->timeline[2].value));
	r->timeline[2].points = 10;
	r->ntimeline = 3;
	r->cap = 100;
}

static int
points_of(const cJSON *v, const char *path, int *out,
	  char errbuf[CM_ERRBUF_LEN])
{
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 ||
	    v->valuedouble > RULE_MAX_POINTS ||
	    v->valuedouble != (double)(int)v->valuedouble) {
		cm_errf(errbuf,
			"field '%s' must be an integer between 0 and %d", path,
			RULE_MAX_POINTS);
		return CM_EINVAL;
	}
	*out = (int)v->valuedouble;
	return 0;
}

/* {"startup": 10, ...}: every key one of names, into pts[]. */
static int
parse_map(const cJSON *obj, const char *field, const char *const *names,
	  int *pts, char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *it;
	char path[96];
	int i;

	if (!cJSON_IsObject(obj)) {
		cm_errf(errbuf, "field '%s' must be an object", field);
		return CM_EINVAL;
	}
	cJSON_ArrayForEach(it, obj)
	{
		for (i = 0; names[i]; i++)
			if (strcmp(names[i], it->string) == 0)
				break;
		snprintf(path, sizeof(path), "%s.%.40s", field, it->string);
		if (!names[i]) {
			cm_errf(errbuf, "field '%s' is not a known value",
				path);
			return CM_EINVAL;
		}
		if (points_of(it, path, &pts[i], errbuf) < 0)
			return CM_EINVAL;
	}
	return 0;
}

/* [{"min": 100000, "points": 30}, ...], kept highest min first. */
static int
parse_budget(const cJSON *arr, struct crm_score_rules *r,
	     char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *it, *min;
	char path[64];
	int n = 0;

	if (!cJSON_IsArray(arr) ||
	    cJSON_GetArraySize(arr) > CRM_SCORE_MAX_STEPS) {
		cm_errf(errbuf,
			"field 'budget' must be an array of at most %d "
			"steps",
			CRM_SCORE_MAX_STEPS);
		return CM_EINVAL;
	}
	cJSON_ArrayForEach(it, arr)
	{
		snprintf(path, sizeof(path), "budget[%d].points", n);
		min = cJSON_GetObjectItemCaseSensitive(it, "min");
		if (!cJSON_IsNumber(min) || min->valuedouble < 0 ||
		    (n > 0 && min->valuedouble >= r->budget[n - 1].min)) {
			cm_errf(errbuf,
				"field 'budget[%d].min' must be a "
				"number >= 0, below the step before",
				n);
			return CM_EINVAL;
		}
		r->budget[n].min = min->valuedouble;
		if (points_of(cJSON_GetObjectItemCaseSensitive(it, "points"),
			      path, &r->budget[n].points, errbuf) < 0)
			return CM_EINVAL;
		n++;
	}
	r->nbudget = n;
	return 0;
}

static int
parse_timeline(const cJSON *obj, struct crm_score_rules *r,
	       char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *it;
	char path[96];
	int n = 0;

	if (!cJSON_IsObject(obj) ||
	    cJSON_GetArraySize(obj) > CRM_SCORE_MAX_STEPS) {
		cm_errf(errbuf,
			"field 'timeline' must be an object of at most "
			"%d values",
			CRM_SCORE_MAX_STEPS);
		return CM_EINVAL;
	}
	cJSON_ArrayForEach(it, obj)
	{
		snprintf(path, sizeof(path), "timeline.%.40s", it->string);
		if (!it->string[0] ||
		    strlen(it->string) >= sizeof(r->timeline[0].value)) {
			cm_errf(errbuf, "field '%s' must name 1 to 31 bytes",
				path);
			return CM_EINVAL;
		}
		cm_strlcpy(r->timeline[n].value, it->string,
			   sizeof(r->timeline[n].value));
		if (points_of(it, path, &r->timeline[n].points, errbuf) < 0)
			return CM_EINVAL;
		n++;
	}
	r->ntimeline = n;
	return 0;
}

static int
parse_points(const cJSON *json, const char *name, int *out,
	     char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, name);

	return v ? points_of(v, name, out, errbuf) : 0;
}

int
crm_score_rules_parse(const cJSON *json, struct crm_score_rules *r,
		      char errbuf[CM_ERRBUF_LEN])
{
	static const char *const known[] = {
		"company_size", "budget", "decision_maker", "phone", "company",
		"job_title",	"status", "timeline",	    "cap",   NULL
	};
	const cJSON *it;
	int i;

	crm_score_rules_default(r);
	if (!cJSON_IsObject(json)) {
		cm_errf(errbuf, "the rules must be a JSON object");
		return CM_EINVAL;
	}
	cJSON_ArrayForEach(it, json)
	{
		for (i = 0; known[i] && strcmp(known[i], it->string); i++)
			;
		if (!known[i]) {
			cm_errf(errbuf, "field '%.64s' is not a scoring rule",
				it->string);
			return CM_EINVAL;
		}
	}
	if ((it = cJSON_GetObjectItemCaseSensitive(json, "company_size")) &&
	    parse_map(it, "company_size", crm_company_sizes, r->company_size,
		      errbuf) < 0)
		return CM_EINVAL;
	if ((it = cJSON_GetObjectItemCaseSensitive(json, "status")) &&
	    parse_map(it, "status", crm_lead_statuses, r->status, errbuf) < 0)
		return CM_EINVAL;
	if ((it = cJSON_GetObjectItemCaseSensitive(json, "budget")) &&
	    parse_budget(it, r, errbuf) < 0)
		return CM_EINVAL;
	if ((it = cJSON_GetObjectItemCaseSensitive(json, "timeline")) &&
	    parse_timeline(it, r, errbuf) < 0)
		return CM_EINVAL;
	if (parse_points(json, "decision_maker", &r->decision_maker, errbuf) ||
	    parse_points(json, "phone", &r->phone, errbuf) ||
	    parse_points(json, "company", &r->company, errbuf) ||
	    parse_points(json, "job_title", &r->job_title, errbuf) ||
	    parse_points(json, "cap", &r->cap, errbuf))
		return CM_EINVAL;
	if (r->cap > 100) {
		cm_errf(errbuf, "field 'cap' must be at most 100");
		return CM_EINVAL;
	}
	return 0;
}

cJSON *
crm_score_rules_json(const struct crm_score_rules *r)
{
	cJSON *o = cJSON_CreateObject(), *m, *a, *step;
	int i;

	m = cJSON_AddObjectToObject(o, "company_size");
	for (i = 0; i < CRM_SCORE_SIZES; i++)
		cJSON_AddNumberToObject(m, crm_company_sizes[i],
					r->company_size[i]);
	a = cJSON_AddArrayToObject(o, "budget");
	for (i = 0; i < r->nbudget; i++) {
		step = cJSON_CreateObject();
		cJSON_AddNumberToObject(step, "min", r->budget[i].min);
		cJSON_AddNumberToObject(step, "points", r->budget[i].points);
		cJSON_AddItemToArray(a, step);
	}
	cJSON_AddNumberToObject(o, "decision_maker", r->decision_maker);
	cJSON_AddNumberToObject(o, "phone", r->phone);
	cJSON_AddNumberToObject(o, "company", r->company);
	cJSON_AddNumberToObject(o, "job_title", r->job_title);
	m = cJSON_AddObjectToObject(o, "status");
	for (i = 0; i < CRM_SCORE_STATUSES; i++)
		cJSON_AddNumberToObject(m, crm_lead_statuses[i], r->status[i]);
	m = cJSON_AddObjectToObject(o, "timeline");
	for (i = 0; i < r->ntimeline; i++)
		cJSON_AddNumberToObject(m, r->timeline[i].value,
					r->timeline[i].points);
	cJSON_AddNumberToObject(o, "cap", r->cap);
	return o;
}

static void
factor(cJSON *factors, const char *name, cJSON *value, int points)
{
	cJSON *f;

	if (!factors || points == 0) {
		cJSON_Delete(value);
		return;
	}
	f = cJSON_CreateObject();
	cJSON_AddStringToObject(f, "factor", name);
	cJSON_AddItemToObject(f, "value", value);
	cJSON_AddNumberToObject(f, "points", points);
	cJSON_AddItemToArray(factors, f);
}

static int
index_of(const char *const *names, const char *s)
{
	int i;

	for (i = 0; s && names[i]; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return -1;
}

/* The budget and timeline rules: the first step reached, the value
   matched. */
static int
score_steps(const struct crm_score_rules *r, const struct crm_score_input *in,
	    cJSON *f)
{
	int i, sum = 0;

	for (i = 0; in->has_budget && i < r->nbudget; i++) {
		if (in->budget >= r->budget[i].min) {
			factor(f, "budget", cJSON_CreateNumber(in->budget),
			       r->budget[i].points);
			sum += r->budget[i].points;
			break;
		}
	}
	for (i = 0; in->timeline && i < r->ntimeline; i++) {
		if (strcasecmp(in->timeline, r->timeline[i].value) == 0) {
			factor(f, "timeline", cJSON_CreateString(in->timeline),
			       r->timeline[i].points);
			sum += r->timeline[i].points;
			break;
		}
	}
	return sum;
}

int
crm_score(const struct crm_score_rules *r, const struct crm_score_input *in,
	  cJSON **factors)
{
	cJSON *f = factors ? cJSON_CreateArray() : NULL;
	int i, sum = 0;

	if ((i = index_of(crm_company_sizes, in->company_size)) >= 0) {
		factor(f, "company_size", cJSON_CreateString(in->company_size),
		       r->company_size[i]);
		sum += r->company_size[i];
	}
	sum += score_steps(r, in, f);
	if (in->decision_maker) {
		factor(f, "decision_maker", cJSON_CreateTrue(),
		       r->decision_maker);
		sum += r->decision_maker;
	}
	if (in->has_phone) {
		factor(f, "phone", cJSON_CreateTrue(), r->phone);
		sum += r->phone;
	}
	if (in->has_company) {
		factor(f, "company", cJSON_CreateTrue(), r->company);
		sum += r->company;
	}
	if (in->has_job_title) {
		factor(f, "job_title", cJSON_CreateTrue(), r->job_title);
		sum += r->job_title;
	}
	if ((i = index_of(crm_lead_statuses, in->status)) >= 0) {
		factor(f, "status", cJSON_CreateString(in->status),
		       r->status[i]);
		sum += r->status[i];
	}
	if (factors)
		*factors = f;
	return sum > r->cap ? r->cap : sum;
}
