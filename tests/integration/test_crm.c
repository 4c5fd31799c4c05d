/*
 * test_crm.c - the crm binary (with brain owning brain.tenants) against
 * the test stack: CRUD, ETags and 412, soft delete, every action,
 * scoring stored and recomputed, idempotency, the plan limit, lists and
 * cursors, search ranking, import and export, events published once
 * (also for an outbox row left by a crash), and tenant isolation.
 *
 * The services start once for the suite; each test makes its own tenants.
 */
#include "svc.h"
#include "testutil.h"

#include "common/buf.h"
#include "common/bus.h"
#include "common/mem.h"
#include "common/redis.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/banned.h"

static struct cm_test_svc brain, crm;

/* Short relay and due intervals; exports in pages of 2, at most 7 rows. */
static const char *const crm_env[] = {
	"CRM_RELAY_INTERVAL_MS=200",
	"CRM_DUE_INTERVAL_MS=200",
	"CRM_EXPORT_MAX_ROWS=7",
	"CRM_EXPORT_PAGE_ROWS=2",
	"HTTP_MAX_BODY=16777216",
	"TENANT_CACHE_TTL_MS=500",
	NULL,
};

#define USER1 "11111111-1111-4111-8111-111111111111"
#define USER2 "22222222-2222-4222-8222-222222222222"
#define NO_ID "00000000-0000-4000-8000-000000000000"

static void
start_all(void)
{
	cm_test_require_stack();
	ck_assert_int_eq(cm_test_svc_start(&brain, "brain", NULL), 0);
	ck_assert_int_eq(cm_test_svc_start(&crm, "crm", crm_env), 0);
}

static void
stop_all(void)
{
	ck_assert_int_eq(cm_test_svc_stop(&crm), 0);
	cm_test_svc_stop(&brain);
}

/* A fresh active tenant; limits a JSON object or NULL. */
static void
add_tenant(char id[37], const char *limits)
{
	char sql[512];

	ck_assert_int_eq(cm_uuid_v4(id), 0);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO brain.tenants (id, slug, name, status, limits) "
		 "VALUES ('%s', 'crm-%.8s', 'CRM %.8s', 'active', '%s')",
		 id, id, id, limits ? limits : "{}");
	ck_assert_int_eq(cm_test_psql(sql), 0);
}

/* One request as user sub of tenant tid with roles; extra header or NULL. */
static struct cm_test_resp
call_as(const char *sub, const char *roles, const char *tid, const char *method,
	const char *path, const char *body, const char *extra)
{
	char *tok = cm_test_user_token(sub, tid, roles, 300);
	struct cm_buf auth = CM_BUF_INIT(0);
	const char *hs[4] = { NULL, NULL, NULL, NULL };
	struct cm_test_resp r;
	int n = 1;

	cm_buf_printf(&auth, "Authorization: Bearer %s", tok);
	hs[0] = cm_buf_str(&auth);
	if (body)
		hs[n++] = "Content-Type: application/json";
	if (extra)
		hs[n++] = extra;
	ck_assert_int_eq(cm_test_http(method, crm.port, path, hs, body, &r), 0);
	cm_buf_release(&auth);
	free(tok);
	return r;
}

static struct cm_test_resp
call(const char *tid, const char *method, const char *path, const char *body)
{
	return call_as(USER1, "[\"owner\"]", tid, method, path, body, NULL);
}

/* call, expecting status; the response is the caller's. */
static struct cm_test_resp
expect(long status, const char *tid, const char *method, const char *path,
       const char *body)
{
	struct cm_test_resp r = call(tid, method, path, body);

	ck_assert_msg(r.status == status, "%s %s -> %ld %s (want %ld)", method,
		      path, r.status, r.body, status);
	return r;
}

static const char *
str(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	ck_assert_msg(cJSON_IsString(v), "no string '%s'", name);
	return v->valuestring;
}

static double
num(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	ck_assert_msg(cJSON_IsNumber(v), "no number '%s'", name);
	return v->valuedouble;
}

static int
items(const struct cm_test_resp *r)
{
	return cJSON_GetArraySize(cJSON_GetObjectItem(r->json, "items"));
}

/* POST body to path as tid; the new id into id[37]. */
static void
create(const char *tid, const char *path, const char *body, char id[37])
{
	struct cm_test_resp r = expect(201, tid, "POST", path, body);

	cm_strlcpy(id, str(r.json, "id"), 37);
	cm_test_resp_release(&r);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

static char *
fmt(const char *f, ...)
{
	struct cm_buf b = CM_BUF_INIT(0);
	va_list ap;

	va_start(ap, f);
	cm_buf_vprintf(&b, f, ap);
	va_end(ap);
	return cm_buf_detach(&b, NULL);
}

START_TEST(test_a_lead_is_created_read_updated_with_etags_and_soft_deleted)
{
	char t[37], id[37], *path;
	struct cm_test_resp r;

	add_tenant(t, NULL);
	r = expect(201, t, "POST", "/api/crm/leads",
		   "{\"name\":\"Ada\",\"email\":\"ada@example.com\","
		   "\"tags\":[\"vip\"],\"custom_fields\":{\"tier\":\"gold\"},"
		   "\"utm_source\":\"news\",\"next_follow_up_at\":"
		   "\"2030-01-02T03:04:05Z\"}");
	ck_assert_str_eq(cm_test_resp_header(&r, "ETag"), "\"1\"");
	cm_strlcpy(id, str(r.json, "id"), sizeof(id));
	ck_assert_str_eq(str(r.json, "status"), "new");
	ck_assert_str_eq(str(r.json, "priority"), "medium");
	ck_assert_str_eq(str(r.json, "next_follow_up_at"),
			 "2030-01-02T03:04:05Z");
	ck_assert_str_eq(str(r.json, "created_by"), USER1);
	ck_assert_ptr_null(cJSON_GetObjectItem(r.json, "tenant_id"));
	cm_test_resp_release(&r);

	path = fmt("/api/crm/leads/%s", id);
	r = expect(200, t, "GET", path, NULL);
	ck_assert_str_eq(str(r.json, "utm_source"), "news");
	ck_assert_str_eq(
		str(cJSON_GetObjectItem(r.json, "custom_fields"), "tier"),
		"gold");
	cm_test_resp_release(&r);

	r = call_as(USER1, "[\"owner\"]", t, "PATCH", path,
		    "{\"priority\":\"urgent\",\"tags\":[\"a\",\"b\"]}",
		    "If-Match: \"1\"");
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	ck_assert_str_eq(cm_test_resp_header(&r, "ETag"), "\"2\"");
	ck_assert_str_eq(str(r.json, "priority"), "urgent");
	ck_assert_str_eq(str(r.json, "email"), "ada@example.com");
	cm_test_resp_release(&r);

	/* a write based on version 1 is stale now */
	r = call_as(USER1, "[\"owner\"]", t, "PATCH", path,
		    "{\"priority\":\"low\"}", "If-Match: \"1\"");
	ck_assert_int_eq(r.status, 412);
	ck_assert_str_eq(cm_test_resp_error_code(&r), "precondition_failed");
	cm_test_resp_release(&r);
	r = call_as(USER1, "[\"owner\"]", t, "DELETE", path, NULL,
		    "If-Match: \"1\"");
	ck_assert_int_eq(r.status, 412);
	cm_test_resp_release(&r);

	r = expect(400, t, "PATCH", path, "{\"status\":\"won\"}");
	ck_assert_str_eq(cm_test_resp_error_code(&r), "validation_failed");
	ck_assert_ptr_nonnull(strstr(r.body, "status"));
	cm_test_resp_release(&r);
	r = expect(400, t, "PATCH", path, "{\"status\":\"converted\"}");
	ck_assert_ptr_nonnull(strstr(r.body, "/convert"));
	cm_test_resp_release(&r);

	r = call_as(USER1, "[\"owner\"]", t, "DELETE", path, NULL,
		    "If-Match: \"2\"");
	ck_assert_int_eq(r.status, 204);
	cm_test_resp_release(&r);
	r = expect(404, t, "GET", path, NULL);
	cm_test_resp_release(&r);
	r = expect(404, t, "PATCH", path, "{\"priority\":\"low\"}");
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", "/api/crm/leads", NULL);
	ck_assert_int_eq(items(&r), 0);
	cm_test_resp_release(&r);
	ck_assert_int_eq(
		cm_test_psql_count("SELECT count(*) FROM crm.leads WHERE id = "
				   "$1 AND deleted_at IS NOT NULL",
				   id),
		1);
	free(path);
}
END_TEST

START_TEST(test_every_other_entity_has_crud_too)
{
	static const struct {
		const char *plural, *create, *patch, *field, *value;
	} cases[] = {
		{ "contacts", "{\"name\":\"Cy\",\"email\":\"cy@x.io\"}",
		  "{\"job_title\":\"CTO\"}", "job_title", "CTO" },
		{ "companies", "{\"name\":\"Acme\",\"size\":\"small\"}",
		  "{\"industry\":\"tools\"}", "industry", "tools" },
		{ "deals", "{\"title\":\"Big\",\"value\":1000}",
		  "{\"currency\":\"EUR\"}", "currency", "EUR" },
		{ "activities", "{\"type\":\"call\",\"subject\":\"Ring\"}",
		  "{\"body\":\"notes\"}", "body", "notes" },
		{ "notes", "{\"body\":\"hello\"}", "{\"body\":\"bye\"}", "body",
		  "bye" },
	};
	char t[37], id[37], *path;
	struct cm_test_resp r;
	size_t i;

	add_tenant(t, NULL);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		path = fmt("/api/crm/%s", cases[i].plural);
		create(t, path, cases[i].create, id);
		free(path);
		path = fmt("/api/crm/%s/%s", cases[i].plural, id);
		r = expect(200, t, "PATCH", path, cases[i].patch);
		ck_assert_str_eq(str(r.json, cases[i].field), cases[i].value);
		cm_test_resp_release(&r);
		r = expect(200, t, "GET", path, NULL);
		ck_assert_str_eq(cm_test_resp_header(&r, "ETag"), "\"2\"");
		cm_test_resp_release(&r);
		r = expect(204, t, "DELETE", path, NULL);
		cm_test_resp_release(&r);
		r = expect(404, t, "GET", path, NULL);
		cm_test_resp_release(&r);
		free(path);
	}
	r = expect(404, t, "GET", "/api/crm/widgets", NULL);
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_the_score_is_stored_with_its_factors_and_recomputed)
{
	char t[37], id[37], *path;
	struct cm_test_resp r;
	const cJSON *factors;

	add_tenant(t, NULL);
	/* startup 10 + budget >= 10k 10 + phone 5 + status new 5 */
	r = expect(201, t, "POST", "/api/crm/leads",
		   "{\"name\":\"S\",\"company_size\":\"startup\","
		   "\"budget\":10000,\"phone\":\"+1 555\"}");
	cm_strlcpy(id, str(r.json, "id"), sizeof(id));
	ck_assert_int_eq((int)num(r.json, "score"), 30);
	factors = cJSON_GetObjectItem(r.json, "score_factors");
	ck_assert_int_eq(cJSON_GetArraySize(factors), 4);
	ck_assert_ptr_nonnull(cJSON_GetObjectItem(r.json, "scored_at"));
	cm_test_resp_release(&r);
	path = fmt("/api/crm/leads/%s", id);
	/* + proposal 40 - new 5 + decision maker 15 + timeline month 15 */
	r = expect(200, t, "PATCH", path,
		   "{\"status\":\"proposal\",\"decision_maker\":true,"
		   "\"timeline\":\"month\"}");
	ck_assert_int_eq((int)num(r.json, "score"), 95);
	cm_test_resp_release(&r);
	r = expect(200, t, "PATCH", path, "{\"company_size\":\"enterprise\"}");
	ck_assert_int_eq((int)num(r.json, "score"), 100); /* capped */
	cm_test_resp_release(&r);
	r = expect(200, t, "PATCH", path,
		   "{\"company_size\":null,\"budget\":null}");
	ck_assert_int_eq((int)num(r.json, "score"), 75);
	cm_test_resp_release(&r);

	/* a tenant's own table rescores its leads */
	r = expect(200, t, "GET", "/api/crm/scoring-rules", NULL);
	ck_assert_int_eq((int)num(cJSON_GetObjectItem(
					  cJSON_GetObjectItem(r.json, "rules"),
					  "status"),
				  "negotiation"),
			 60);
	cm_test_resp_release(&r);
	r = expect(200, t, "PUT", "/api/crm/scoring-rules",
		   "{\"rules\":{\"status\":{\"proposal\":1}}}");
	ck_assert_int_eq((int)num(r.json, "rescored"), 1);
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", path, NULL);
	ck_assert_int_eq((int)num(r.json, "score"), 36);
	cm_test_resp_release(&r);
	r = expect(400, t, "PUT", "/api/crm/scoring-rules",
		   "{\"rules\":{\"status\":{\"won\":1}}}");
	ck_assert_ptr_nonnull(strstr(r.body, "status.won"));
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", "/api/crm/leads?sort=score&order=desc", NULL);
	ck_assert_int_eq(items(&r), 1);
	cm_test_resp_release(&r);
	free(path);
}
END_TEST

/* The lead's timeline (automatic activities), newest first. */
static struct cm_test_resp
timeline(const char *t, const char *lead)
{
	char *path = fmt("/api/crm/activities?lead_id=%s", lead);
	struct cm_test_resp r = expect(200, t, "GET", path, NULL);

	free(path);
	return r;
}

START_TEST(test_mark_contacted_and_mark_lost_change_status_and_timeline)
{
	char t[37], id[37], *path;
	struct cm_test_resp r;

	add_tenant(t, NULL);
	create(t, "/api/crm/leads", "{\"name\":\"L\"}", id);
	path = fmt("/api/crm/leads/%s/mark-contacted", id);
	r = expect(200, t, "POST", path,
		   "{\"next_follow_up_at\":\"2020-01-01T00:00:00Z\"}");
	ck_assert_str_eq(str(r.json, "status"), "contacted");
	ck_assert_str_eq(str(r.json, "first_contact_at"),
			 str(r.json, "last_contact_at"));
	cm_test_resp_release(&r);
	free(path);
	r = expect(200, t, "GET", "/api/crm/leads?view=overdue_follow_ups",
		   NULL);
	ck_assert_int_eq(items(&r), 1);
	cm_test_resp_release(&r);

	path = fmt("/api/crm/leads/%s/mark-lost", id);
	r = expect(400, t, "POST", path, "{}");
	ck_assert_ptr_nonnull(strstr(r.body, "reason"));
	cm_test_resp_release(&r);
	r = expect(200, t, "POST", path, "{\"reason\":\"budget cut\"}");
	ck_assert_str_eq(str(r.json, "status"), "lost");
	ck_assert_str_eq(str(r.json, "lost_reason"), "budget cut");
	ck_assert_int_eq((int)num(r.json, "score"), 0);
	cm_test_resp_release(&r);
	free(path);

	r = timeline(t, id);
	ck_assert_int_eq(items(&r), 2);
	ck_assert_str_eq(
		str(cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "items"), 0),
		    "subject"),
		"status: contacted -> lost");
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", "/api/crm/leads?view=overdue_follow_ups",
		   NULL);
	ck_assert_int_eq(items(&r), 0); /* lost leads need no follow-up */
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_converting_a_lead_makes_contact_company_and_deal_at_once)
{
	char t[37], id[37], *path;
	struct cm_test_resp r;
	const cJSON *lead, *deal;

	add_tenant(t, NULL);
	create(t, "/api/crm/leads",
	       "{\"name\":\"Grace\",\"email\":\"grace@navy.mil\","
	       "\"company\":\"Navy\",\"company_size\":\"large\"}",
	       id);
	path = fmt("/api/crm/leads/%s/convert", id);
	/* a bad deal changes nothing */
	r = expect(400, t, "POST", path, "{\"deal\":{\"value\":-5}}");
	ck_assert_ptr_nonnull(strstr(r.body, "deal: field 'value'"));
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", "/api/crm/contacts", NULL);
	ck_assert_int_eq(items(&r), 0);
	cm_test_resp_release(&r);

	r = expect(200, t, "POST", path,
		   "{\"deal\":{\"value\":2500,\"currency\":\"EUR\"}}");
	lead = cJSON_GetObjectItem(r.json, "lead");
	deal = cJSON_GetObjectItem(r.json, "deal");
	ck_assert_str_eq(str(lead, "status"), "converted");
	ck_assert_int_eq((int)num(lead, "score"), 100);
	ck_assert_int_eq((int)num(lead, "conversion_value"), 2500);
	ck_assert_str_eq(str(lead, "contact_id"),
			 str(cJSON_GetObjectItem(r.json, "contact"), "id"));
	ck_assert_str_eq(str(lead, "company_id"),
			 str(cJSON_GetObjectItem(r.json, "company"), "id"));
	ck_assert_str_eq(str(deal, "title"), "Navy");
	ck_assert_str_eq(str(deal, "lead_id"), id);
	ck_assert_str_eq(str(deal, "status"), "open");
	cm_test_resp_release(&r);
	r = expect(409, t, "POST", path, "{}");
	ck_assert_str_eq(cm_test_resp_error_code(&r), "conflict");
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", "/api/crm/dashboard", NULL);
	ck_assert_int_eq((int)num(r.json, "conversion_rate"), 1);
	cm_test_resp_release(&r);
	free(path);
}
END_TEST

/* The id of the default pipeline's stage named name. */
static void
stage_id(const char *t, const char *name, char out[37])
{
	struct cm_test_resp r =
		expect(200, t, "GET", "/api/crm/pipelines", NULL);
	const cJSON *p, *s;

	out[0] = '\0';
	cJSON_ArrayForEach(p, cJSON_GetObjectItem(r.json, "items"))
	{
		if (!cJSON_IsTrue(cJSON_GetObjectItem(p, "is_default")))
			continue;
		cJSON_ArrayForEach(s, cJSON_GetObjectItem(p, "stages"))
		{
			if (strcmp(str(s, "name"), name) == 0)
				cm_strlcpy(out, str(s, "id"), 37);
		}
	}
	cm_test_resp_release(&r);
	ck_assert_msg(out[0], "no stage %s", name);
}

START_TEST(test_deals_move_between_stages_with_history_and_close)
{
	char t[37], deal[37], won[37], other[37], act[37], *path, *body;
	struct cm_test_resp r;

	add_tenant(t, NULL);
	r = expect(201, t, "POST", "/api/crm/deals",
		   "{\"title\":\"D\",\"value\":100}");
	cm_strlcpy(deal, str(r.json, "id"), sizeof(deal));
	cm_test_resp_release(&r);
	stage_id(t, "Won", won);
	path = fmt("/api/crm/deals/%s/move", deal);
	body = fmt("{\"stage_id\":\"%s\"}", won);
	r = expect(200, t, "POST", path, body);
	ck_assert_str_eq(str(r.json, "status"), "won");
	ck_assert_ptr_nonnull(cJSON_GetObjectItem(r.json, "closed_at"));
	cm_test_resp_release(&r);
	free(path);
	path = fmt("/api/crm/deals/%s/history", deal);
	r = expect(200, t, "GET", path, NULL);
	ck_assert_int_eq(items(&r), 1);
	ck_assert_str_eq(
		str(cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "items"), 0),
		    "to_stage"),
		"Won");
	cm_test_resp_release(&r);
	free(path);

	/* a stage of another pipeline is refused */
	r = expect(
		201, t, "POST", "/api/crm/pipelines",
		"{\"name\":\"Partners\",\"stages\":[{\"name\":\"Intro\","
		"\"probability\":5},{\"name\":\"Signed\",\"is_won\":true}]}");
	cm_strlcpy(other,
		   str(cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "stages"),
					  0),
		       "id"),
		   sizeof(other));
	cm_test_resp_release(&r);
	free(body);
	body = fmt("{\"stage_id\":\"%s\"}", other);
	path = fmt("/api/crm/deals/%s/move", deal);
	r = expect(400, t, "POST", path, body);
	ck_assert_ptr_nonnull(strstr(r.body, "stage_id"));
	cm_test_resp_release(&r);
	free(path);
	free(body);

	create(t, "/api/crm/activities",
	       "{\"type\":\"task\",\"subject\":\"Call back\",\"due_at\":"
	       "\"2020-01-01T00:00:00Z\"}",
	       act);
	r = expect(200, t, "GET", "/api/crm/activities?view=overdue", NULL);
	ck_assert_int_eq(items(&r), 1);
	cm_test_resp_release(&r);
	path = fmt("/api/crm/activities/%s/complete", act);
	r = expect(200, t, "POST", path, NULL);
	ck_assert_ptr_nonnull(cJSON_GetObjectItem(r.json, "completed_at"));
	cm_test_resp_release(&r);
	free(path);
	r = expect(200, t, "GET", "/api/crm/activities?view=overdue", NULL);
	ck_assert_int_eq(items(&r), 0);
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_lists_filter_sort_and_page_with_a_stable_cursor)
{
	static const char *const bodies[] = {
		"{\"name\":\"A\",\"status\":\"qualified\",\"source\":\"web\"}",
		"{\"name\":\"B\",\"source\":\"web\",\"priority\":\"high\"}",
		"{\"name\":\"C\",\"source\":\"ads\",\"company_size\":"
		"\"large\"}",
		"{\"name\":\"D\",\"source\":\"ads\",\"owner_id\":\"" USER2
		"\"}",
		"{\"name\":\"E\",\"source\":\"web\",\"tags\":[\"x\"]}",
	};
	char t[37], id[37], *path, cursor[200] = "";
	struct cm_test_resp r;
	cJSON *seen = cJSON_CreateObject();
	const cJSON *it, *nc;
	size_t i;
	int pages = 0;

	add_tenant(t, NULL);
	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		create(t, "/api/crm/leads", bodies[i], id);
	r = expect(200, t, "GET", "/api/crm/leads?source=web", NULL);
	ck_assert_int_eq(items(&r), 3);
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", "/api/crm/leads?source=ads&status=new", NULL);
	ck_assert_int_eq(items(&r), 2);
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", "/api/crm/leads?status=qualified,contacted",
		   NULL);
	ck_assert_int_eq(items(&r), 1);
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", "/api/crm/leads?view=unassigned", NULL);
	ck_assert_int_eq(items(&r), 4);
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", "/api/crm/leads?view=high_priority", NULL);
	ck_assert_int_eq(items(&r), 1);
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", "/api/crm/leads?tags=x", NULL);
	ck_assert_int_eq(items(&r), 1);
	cm_test_resp_release(&r);
	r = expect(200, t, "GET",
		   "/api/crm/leads?created_after=2000-01-01T00:00:00Z&"
		   "created_before=2000-01-02T00:00:00Z",
		   NULL);
	ck_assert_int_eq(items(&r), 0);
	cm_test_resp_release(&r);
	r = expect(200, t, "GET",
		   "/api/crm/leads?sort=score&order=desc&limit=1", NULL);
	ck_assert_str_eq(
		str(cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "items"), 0),
		    "name"),
		"C"); /* large 60 + new 5 */
	cm_test_resp_release(&r);

	/* two per page: every lead once, in three pages */
	do {
		path = fmt(
			"/api/crm/leads?limit=2&sort=created_at&order=asc%s%s",
			cursor[0] ? "&cursor=" : "", cursor);
		r = expect(200, t, "GET", path, NULL);
		free(path);
		cJSON_ArrayForEach(it, cJSON_GetObjectItem(r.json, "items"))
		{
			ck_assert_ptr_null(
				cJSON_GetObjectItem(seen, str(it, "name")));
			cJSON_AddTrueToObject(seen, str(it, "name"));
		}
		nc = cJSON_GetObjectItem(r.json, "next_cursor");
		cursor[0] = '\0';
		if (cJSON_IsString(nc))
			cm_strlcpy(cursor, nc->valuestring, sizeof(cursor));
		cm_test_resp_release(&r);
		pages++;
	} while (cursor[0] && pages < 10);
	ck_assert_int_eq(pages, 3);
	ck_assert_int_eq(cJSON_GetArraySize(seen), 5);
	cJSON_Delete(seen);

	r = expect(400, t, "GET", "/api/crm/leads?status=won", NULL);
	ck_assert_ptr_nonnull(strstr(r.body, "status"));
	cm_test_resp_release(&r);
	r = expect(400, t, "GET", "/api/crm/leads?cursor=garbage", NULL);
	cm_test_resp_release(&r);
	r = expect(400, t, "GET", "/api/crm/leads?limit=201", NULL);
	cm_test_resp_release(&r);
	r = expect(400, t, "GET", "/api/crm/leads?sort=name", NULL);
	cm_test_resp_release(&r);
	r = expect(400, t, "GET", "/api/crm/leads?owner_id=me", NULL);
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_bulk_update_changes_every_named_lead_in_one_go)
{
	char t[37], a[37], b[37], *body;
	struct cm_test_resp r;

	add_tenant(t, NULL);
	create(t, "/api/crm/leads", "{\"name\":\"A\"}", a);
	create(t, "/api/crm/leads", "{\"name\":\"B\"}", b);
	body = fmt("{\"ids\":[\"%s\",\"%s\",\"" NO_ID "\"],\"changes\":"
		   "{\"status\":\"qualified\",\"owner_id\":\"" USER2 "\"}}",
		   a, b);
	r = expect(200, t, "POST", "/api/crm/leads/bulk", body);
	ck_assert_int_eq(
		cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "updated")), 2);
	ck_assert_str_eq(
		cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "not_found"), 0)
			->valuestring,
		NO_ID);
	cm_test_resp_release(&r);
	free(body);
	r = expect(200, t, "GET",
		   "/api/crm/leads?status=qualified&owner_id=" USER2, NULL);
	ck_assert_int_eq(items(&r), 2);
	ck_assert_int_eq(
		(int)num(cJSON_GetArrayItem(
				 cJSON_GetObjectItem(r.json, "items"), 0),
			 "score"),
		25);
	cm_test_resp_release(&r);
	body = fmt("{\"ids\":[\"%s\"],\"changes\":{\"status\":\"nope\"}}", a);
	r = expect(400, t, "POST", "/api/crm/leads/bulk", body);
	cm_test_resp_release(&r);
	free(body);
}
END_TEST

START_TEST(test_a_create_with_an_idempotency_key_is_answered_once)
{
	char t[37], first[37];
	struct cm_test_resp r;

	add_tenant(t, NULL);
	r = call_as(USER1, "[\"owner\"]", t, "POST", "/api/crm/leads",
		    "{\"name\":\"Once\"}", "Idempotency-Key: abc-1");
	ck_assert_int_eq(r.status, 201);
	cm_strlcpy(first, str(r.json, "id"), sizeof(first));
	cm_test_resp_release(&r);
	r = call_as(USER1, "[\"owner\"]", t, "POST", "/api/crm/leads",
		    "{\"name\":\"Once\"}", "Idempotency-Key: abc-1");
	ck_assert_int_eq(r.status, 201);
	ck_assert_str_eq(str(r.json, "id"), first);
	ck_assert_str_eq(cm_test_resp_header(&r, "Idempotent-Replayed"),
			 "true");
	ck_assert_str_eq(cm_test_resp_header(&r, "ETag"), "\"1\"");
	cm_test_resp_release(&r);
	r = call_as(USER1, "[\"owner\"]", t, "POST", "/api/crm/leads",
		    "{\"name\":\"Other\"}", "Idempotency-Key: abc-1");
	ck_assert_int_eq(r.status, 422);
	ck_assert_str_eq(cm_test_resp_error_code(&r), "idempotency_key_reused");
	cm_test_resp_release(&r);
	r = call_as(USER1, "[\"owner\"]", t, "POST", "/api/crm/leads",
		    "{\"name\":\"Once\"}", "Idempotency-Key: bad key");
	ck_assert_int_eq(r.status, 400);
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", "/api/crm/leads", NULL);
	ck_assert_int_eq(items(&r), 1);
	cm_test_resp_release(&r);
	/* the same key in another tenant is another key */
	{
		char u[37];

		add_tenant(u, NULL);
		r = call_as(USER1, "[\"owner\"]", u, "POST", "/api/crm/leads",
			    "{\"name\":\"Once\"}", "Idempotency-Key: abc-1");
		ck_assert_int_eq(r.status, 201);
		ck_assert_str_ne(str(r.json, "id"), first);
		cm_test_resp_release(&r);
	}
}
END_TEST

START_TEST(test_the_plan_limit_on_leads_is_enforced_and_named)
{
	char t[37], id[37];
	struct cm_test_resp r;

	add_tenant(t, "{\"max_leads\": 2}");
	create(t, "/api/crm/leads", "{\"name\":\"1\"}", id);
	create(t, "/api/crm/leads", "{\"name\":\"2\"}", id);
	r = expect(403, t, "POST", "/api/crm/leads", "{\"name\":\"3\"}");
	ck_assert_str_eq(cm_test_resp_error_code(&r), "limit_exceeded");
	ck_assert_ptr_nonnull(strstr(r.body, "max_leads (2)"));
	cm_test_resp_release(&r);
	r = expect(403, t, "POST", "/api/crm/leads/import",
		   "{\"csv\":\"name\\nx\\n\"}");
	ck_assert_str_eq(cm_test_resp_error_code(&r), "limit_exceeded");
	cm_test_resp_release(&r);
	/* a deleted lead makes room */
	{
		char *path = fmt("/api/crm/leads/%s", id);

		r = expect(204, t, "DELETE", path, NULL);
		cm_test_resp_release(&r);
		free(path);
	}
	create(t, "/api/crm/leads", "{\"name\":\"3\"}", id);
	/* contacts are not limited */
	create(t, "/api/crm/contacts", "{\"name\":\"c\"}", id);
}
END_TEST

START_TEST(test_search_ranks_name_matches_first_and_stays_in_its_tenant)
{
	char t[37], u[37], id[37], name_hit[37];
	struct cm_test_resp r;
	const cJSON *first;

	add_tenant(t, NULL);
	add_tenant(u, NULL);
	create(t, "/api/crm/leads",
	       "{\"name\":\"Pat\",\"pain_points\":\"zorblax tooling\"}", id);
	create(t, "/api/crm/leads", "{\"name\":\"Zorblax Ltd buyer\"}",
	       name_hit);
	create(t, "/api/crm/companies", "{\"name\":\"Other\"}", id);
	create(t, "/api/crm/deals", "{\"title\":\"zorblax renewal\"}", id);
	create(u, "/api/crm/leads", "{\"name\":\"Zorblax at tenant U\"}", id);
	r = expect(200, t, "GET", "/api/crm/search?q=zorblax", NULL);
	ck_assert_int_eq(items(&r), 3);
	first = cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "items"), 0);
	ck_assert_str_eq(str(first, "id"), name_hit);
	ck_assert_str_eq(str(first, "type"), "lead");
	ck_assert_ptr_null(strstr(r.body, id)); /* never U's lead */
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", "/api/crm/search?q=zorblax&types=deal", NULL);
	ck_assert_int_eq(items(&r), 1);
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", "/api/crm/leads?q=zorblax", NULL);
	ck_assert_int_eq(items(&r), 2);
	cm_test_resp_release(&r);
	r = expect(400, t, "GET", "/api/crm/search", NULL);
	cm_test_resp_release(&r);
}
END_TEST

/* The import's progress as the caller of tenant t sees it. */
static struct cm_test_resp
import_status(const char *t, const char *id)
{
	char *path = fmt("/api/crm/imports/%s", id);
	struct cm_test_resp r = call(t, "GET", path, NULL);

	free(path);
	return r;
}

START_TEST(test_an_import_with_bad_rows_imports_nothing_and_reports_them)
{
	char t[37];
	struct cm_test_resp r;
	const cJSON *rep, *err;

	add_tenant(t, NULL);
	r = expect(422, t, "POST", "/api/crm/leads/import",
		   "{\"csv\":\"Full Name,E-mail,Size,Junk\\n"
		   "Ann,ann@x.io,small,1\\n"
		   "Bob,not-an-email,large,2\\n"
		   ",carl@x.io,medium,3\\n"
		   "Dee,dee@x.io,huge,4\\n\","
		   "\"mapping\":{\"Full Name\":\"name\",\"E-mail\":\"email\","
		   "\"Size\":\"company_size\",\"Junk\":null}}");
	ck_assert_str_eq(cm_test_resp_error_code(&r), "validation_failed");
	rep = cJSON_GetObjectItem(r.json, "report");
	ck_assert_int_eq((int)num(rep, "rows"), 4);
	ck_assert_int_eq((int)num(rep, "invalid"), 3);
	ck_assert_int_eq((int)num(rep, "imported"), 0);
	err = cJSON_GetArrayItem(cJSON_GetObjectItem(rep, "errors"), 0);
	ck_assert_int_eq((int)num(err, "row"), 2);
	ck_assert_int_eq((int)num(err, "line"), 3);
	ck_assert_ptr_nonnull(strstr(str(err, "message"), "email"));
	err = cJSON_GetArrayItem(cJSON_GetObjectItem(rep, "errors"), 2);
	ck_assert_ptr_nonnull(strstr(str(err, "message"), "company_size"));
	{
		struct cm_test_resp p = import_status(t, str(rep, "import_id"));

		ck_assert_int_eq(p.status, 200);
		ck_assert_str_eq(str(p.json, "phase"), "rejected");
		cm_test_resp_release(&p);
	}
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", "/api/crm/leads", NULL);
	ck_assert_int_eq(items(&r), 0);
	cm_test_resp_release(&r);

	r = expect(200, t, "POST", "/api/crm/leads/import",
		   "{\"csv\":\"name,email\\nAnn,ann@x.io\\nBob,bad\\n\","
		   "\"dry_run\":true,\"allow_partial\":true}");
	ck_assert_int_eq((int)num(r.json, "valid"), 1);
	ck_assert_int_eq((int)num(r.json, "imported"), 0);
	cm_test_resp_release(&r);
	r = expect(200, t, "POST", "/api/crm/leads/import",
		   "{\"csv\":\"name,email,tags,budget\\n"
		   "Ann,ann@x.io,a;b,50000\\nBob,bad,,\\n\","
		   "\"allow_partial\":true}");
	ck_assert_int_eq((int)num(r.json, "imported"), 1);
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", "/api/crm/leads", NULL);
	ck_assert_int_eq(items(&r), 1);
	ck_assert_int_eq(
		(int)num(cJSON_GetArrayItem(
				 cJSON_GetObjectItem(r.json, "items"), 0),
			 "score"),
		25); /* budget 20 + new 5 */
	cm_test_resp_release(&r);

	r = expect(400, t, "POST", "/api/crm/leads/import",
		   "{\"csv\":\"name,colour\\nAnn,red\\n\"}");
	ck_assert_ptr_nonnull(strstr(r.body, "colour"));
	cm_test_resp_release(&r);
	r = expect(400, t, "POST", "/api/crm/leads/import",
		   "{\"csv\":\"name\\n\\\"open\\n\"}");
	ck_assert_ptr_nonnull(strstr(r.body, "line 2"));
	cm_test_resp_release(&r);
	r = expect(404, t, "POST", "/api/crm/deals/import",
		   "{\"csv\":\"title\\nx\\n\"}");
	cm_test_resp_release(&r);
}
END_TEST

#define BIG_IMPORT 50000

/* Poll the import until it leaves the running phases (queued, checking,
   importing); the last state in *out, whether a running one was seen. */
static bool
wait_import(const char *t, const char *id, struct cm_test_resp *out)
{
	bool running = false;
	const char *phase;
	int i;

	for (i = 0; i < 2400; i++) {
		*out = import_status(t, id);
		ck_assert_msg(out->status == 200, "%ld %s", out->status,
			      out->body);
		phase = str(out->json, "phase");
		if (strcmp(phase, "queued") && strcmp(phase, "checking") &&
		    strcmp(phase, "importing"))
			return running;
		running = true;
		cm_test_resp_release(out);
		usleep(50 * 1000);
	}
	ck_abort_msg("import %s never finished", id);
	return running;
}

START_TEST(test_a_50000_row_file_imports_in_the_background_with_progress)
{
	struct cm_buf b = CM_BUF_INIT(0);
	struct cm_test_resp r;
	char t[37], u[37], id[37];
	int i;

	add_tenant(t, NULL);
	add_tenant(u, NULL);
	cm_buf_puts(&b, "{\"csv\":\"name,email,company_size,phone\\n");
	for (i = 0; i < BIG_IMPORT; i++)
		cm_buf_printf(&b, "Lead %d,l%d@bulk.test,small,+1 555 %07d\\n",
			      i, i, i);
	cm_buf_puts(&b, "\"}");
	ck_assert_int_eq(cm_buf_error(&b), 0);
	r = expect(202, t, "POST", "/api/crm/leads/import", cm_buf_str(&b));
	cm_strlcpy(id, str(r.json, "import_id"), sizeof(id));
	cm_test_resp_release(&r);
	ck_assert(wait_import(t, id, &r)); /* seen running, then: */
	ck_assert_str_eq(str(r.json, "phase"), "done");
	ck_assert_int_eq((int)num(r.json, "imported"), BIG_IMPORT);
	ck_assert_int_eq((int)num(r.json, "rows_total"), BIG_IMPORT);
	ck_assert_int_eq(
		(int)num(cJSON_GetObjectItem(r.json, "report"), "valid"),
		BIG_IMPORT);
	cm_test_resp_release(&r);
	r = import_status(u, id); /* another tenant: not found */
	ck_assert_int_eq(r.status, 404);
	cm_test_resp_release(&r);
	ck_assert_int_eq(
		cm_test_psql_count("SELECT count(*) FROM crm.leads WHERE "
				   "tenant_id = $1 AND score = 30",
				   t),
		BIG_IMPORT);

	/* the same in the background with one bad row: nothing imported */
	cm_buf_reset(&b);
	cm_buf_puts(&b, "{\"async\":true,\"csv\":\"name,email\\n");
	for (i = 0; i < 100; i++)
		cm_buf_printf(&b, "Late %d,%s\\n", i,
			      i == 57 ? "broken" : "late@x.io");
	cm_buf_puts(&b, "\"}");
	r = expect(202, t, "POST", "/api/crm/leads/import", cm_buf_str(&b));
	cm_strlcpy(id, str(r.json, "import_id"), sizeof(id));
	cm_test_resp_release(&r);
	wait_import(t, id, &r);
	ck_assert_str_eq(str(r.json, "phase"), "rejected");
	ck_assert_int_eq(
		(int)num(cJSON_GetArrayItem(
				 cJSON_GetObjectItem(
					 cJSON_GetObjectItem(r.json, "report"),
					 "errors"),
				 0),
			 "row"),
		58);
	cm_test_resp_release(&r);
	ck_assert_int_eq(
		cm_test_psql_count("SELECT count(*) FROM crm.leads WHERE "
				   "tenant_id = $1 AND name LIKE 'Late %'",
				   t),
		0);
	cm_buf_release(&b);
}
END_TEST

/* Records of a CSV body (lines ending in CRLF; no cell here holds one). */
static int
records(const char *body)
{
	int n = 0;

	for (; (body = strstr(body, "\r\n")); body += 2)
		n++;
	return n;
}

START_TEST(test_export_streams_the_filtered_list_page_by_page_within_its_bound)
{
	char t[37], u[37], id[37];
	struct cm_test_resp r;
	int i;

	add_tenant(t, NULL);
	add_tenant(u, NULL);
	create(t, "/api/crm/leads",
	       "{\"name\":\"Ann, "
	       "Jr\",\"tags\":[\"a\",\"b\"],\"source\":\"web\","
	       "\"phone\":\"+1 555\"}",
	       id);
	create(t, "/api/crm/leads", "{\"name\":\"Bob\",\"source\":\"ads\"}",
	       id);
	r = expect(200, t, "GET", "/api/crm/leads/export?source=web", NULL);
	ck_assert_ptr_nonnull(
		strstr(cm_test_resp_header(&r, "Content-Type"), "text/csv"));
	ck_assert_str_eq(cm_test_resp_header(&r, "X-Export-Max-Rows"), "7");
	ck_assert(strncmp(r.body, "id,name,email,", 14) == 0);
	ck_assert_ptr_nonnull(strstr(r.body, "\"Ann, Jr\""));
	ck_assert_ptr_nonnull(strstr(r.body, ",a;b,"));
	ck_assert_ptr_nonnull(strstr(r.body, ",'+1 555,")); /* defused */
	ck_assert_ptr_null(strstr(r.body, "Bob"));
	ck_assert_int_eq(records(r.body), 2);
	cm_test_resp_release(&r);
	/* 5 rows in pages of 2, oldest first: all of them, each once */
	for (i = 0; i < 3; i++)
		create(t, "/api/crm/leads", "{\"name\":\"More\"}", id);
	r = expect(200, t, "GET", "/api/crm/leads/export?order=asc", NULL);
	ck_assert_int_eq(records(r.body), 6);
	ck_assert_ptr_nonnull(strstr(strstr(r.body, "Ann, Jr"), "Bob"));
	cm_test_resp_release(&r);
	/* at most CRM_EXPORT_MAX_ROWS (7) */
	for (i = 0; i < 3; i++)
		create(t, "/api/crm/leads", "{\"name\":\"More\"}", id);
	r = expect(200, t, "GET", "/api/crm/leads/export", NULL);
	ck_assert_int_eq(records(r.body), 8);
	cm_test_resp_release(&r);
	r = expect(400, t, "GET", "/api/crm/leads/export?status=won", NULL);
	cm_test_resp_release(&r);
	r = expect(400, t, "GET", "/api/crm/leads/export?cursor=x", NULL);
	cm_test_resp_release(&r);
	/* another tenant: the header only */
	r = expect(200, u, "GET", "/api/crm/leads/export", NULL);
	ck_assert_int_eq(records(r.body), 1);
	ck_assert_ptr_null(strstr(r.body, "Ann"));
	cm_test_resp_release(&r);
}
END_TEST

static void
redis_up(void)
{
	struct cm_redis_config rc = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	int64_t port;

	ck_assert_int_eq(
		cm_parse_i64(cm_test_env("REDIS_PORT"), 1, 65535, &port), 0);
	rc.host = cm_test_env("REDIS_HOST");
	rc.port = (int)port;
	ck_assert_int_eq(cm_redis_init(&rc, errbuf), 0);
}

/* How many entries of the tenant's stream mention needle with type. */
static int
stream_count(const char *tenant, const char *type, const char *needle)
{
	char errbuf[CM_ERRBUF_LEN] = "", key[CM_BUS_KEY_LEN];
	redisReply *rep;
	size_t i, j;
	int n = 0;

	cm_bus_stream_key(tenant, key);
	rep = cm_redis_cmdf(errbuf, "XRANGE %s - +", key);
	ck_assert_msg(rep != NULL, "%s", errbuf);
	for (i = 0; i < rep->elements; i++) {
		redisReply *f = rep->element[i]->element[1];
		const char *t = NULL, *ev = NULL;

		for (j = 0; j + 1 < f->elements; j += 2) {
			if (strcmp(f->element[j]->str, "type") == 0)
				t = f->element[j + 1]->str;
			if (strcmp(f->element[j]->str, "event") == 0)
				ev = f->element[j + 1]->str;
		}
		if (t && ev && strcmp(t, type) == 0 && strstr(ev, needle))
			n++;
	}
	freeReplyObject(rep);
	return n;
}

static void
wait_for_event(const char *tenant, const char *type, const char *needle)
{
	int i;

	for (i = 0; i < 100 && stream_count(tenant, type, needle) == 0; i++)
		usleep(100 * 1000);
	ck_assert_msg(stream_count(tenant, type, needle) == 1, "%s for %s: %d",
		      type, needle, stream_count(tenant, type, needle));
}

START_TEST(test_every_change_is_published_once_through_the_outbox)
{
	char t[37], id[37], *path, deal[37], won[37], *body;
	struct cm_test_resp r;

	redis_up();
	add_tenant(t, NULL);
	create(t, "/api/crm/leads",
	       "{\"name\":\"Evt\",\"email\":\"evt@x.io\",\"source\":\"web\"}",
	       id);
	wait_for_event(t, "lead.created", id);
	path = fmt("/api/crm/leads/%s", id);
	r = expect(200, t, "PATCH", path, "{\"status\":\"qualified\"}");
	cm_test_resp_release(&r);
	free(path);
	wait_for_event(t, "lead.updated", id);
	wait_for_event(t, "lead.qualified", id);
	path = fmt("/api/crm/leads/%s/convert", id);
	r = expect(200, t, "POST", path, "{\"deal\":{\"value\":10}}");
	cm_strlcpy(deal, str(cJSON_GetObjectItem(r.json, "deal"), "id"),
		   sizeof(deal));
	cm_test_resp_release(&r);
	free(path);
	wait_for_event(t, "lead.converted", id);
	wait_for_event(t, "contact.created", "evt@x.io");
	wait_for_event(t, "deal.created", deal);
	stage_id(t, "Won", won);
	path = fmt("/api/crm/deals/%s/move", deal);
	body = fmt("{\"stage_id\":\"%s\"}", won);
	r = expect(200, t, "POST", path, body);
	cm_test_resp_release(&r);
	free(path);
	free(body);
	wait_for_event(t, "deal.stage_changed", deal);
	wait_for_event(t, "deal.won", deal);
	create(t, "/api/crm/leads", "{\"name\":\"Gone\"}", id);
	path = fmt("/api/crm/leads/%s/mark-lost", id);
	r = expect(200, t, "POST", path, "{\"reason\":\"silence\"}");
	cm_test_resp_release(&r);
	free(path);
	wait_for_event(t, "lead.lost", id);
	/* several relay rounds later, still once each */
	usleep(700 * 1000);
	ck_assert_int_eq(stream_count(t, "lead.created", id), 1);
	ck_assert_int_eq(stream_count(t, "deal.won", deal), 1);
	ck_assert_int_eq(
		cm_test_psql_count("SELECT count(*) FROM crm.outbox WHERE "
				   "tenant_id = $1 AND published_at IS NULL",
				   t),
		0);
}
END_TEST

START_TEST(test_a_due_activity_is_announced_once_per_due_time)
{
	char t[37], act[37], *path;
	struct cm_test_resp r;
	int i;

	redis_up();
	add_tenant(t, NULL);
	create(t, "/api/crm/activities",
	       "{\"type\":\"follow_up\",\"subject\":\"Chase\",\"due_at\":"
	       "\"2020-01-01T00:00:00Z\"}",
	       act);
	wait_for_event(t, "activity.due", act);
	usleep(700 * 1000);
	ck_assert_int_eq(stream_count(t, "activity.due", act), 1);
	path = fmt("/api/crm/activities/%s", act);
	r = expect(200, t, "GET", path, NULL);
	ck_assert_ptr_nonnull(cJSON_GetObjectItem(r.json, "due_notified_at"));
	cm_test_resp_release(&r);
	/* rescheduled: announced again at its new time (already past) */
	r = expect(200, t, "PATCH", path,
		   "{\"due_at\":\"2021-01-01T00:00:00Z\"}");
	cm_test_resp_release(&r);
	for (i = 0; i < 100 && stream_count(t, "activity.due", act) < 2; i++)
		usleep(100 * 1000);
	ck_assert_int_eq(stream_count(t, "activity.due", act), 2);
	free(path);
	/* completed ones are not announced */
	create(t, "/api/crm/activities",
	       "{\"type\":\"task\",\"subject\":\"Later\",\"due_at\":"
	       "\"2099-01-01T00:00:00Z\"}",
	       act);
	usleep(500 * 1000);
	ck_assert_int_eq(stream_count(t, "activity.due", act), 0);
}
END_TEST

/* An event committed by a process that died before publishing is an
   unpublished outbox row; the periodic relay publishes it, once. */
START_TEST(test_an_event_left_by_a_crash_is_published_once_later)
{
	char t[37], eid[37], lead[37], sql[1024];

	redis_up();
	add_tenant(t, NULL);
	ck_assert_int_eq(cm_uuid_v4(eid), 0);
	ck_assert_int_eq(cm_uuid_v4(lead), 0);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO crm.outbox (tenant_id, event_id, event) VALUES "
		 "('%s', '%s', '{\"event_id\":\"%s\",\"event_type\":"
		 "\"lead.created\",\"event_version\":1,\"tenant_id\":\"%s\","
		 "\"source_service\":\"crm\",\"occurred_at\":"
		 "\"2026-01-01T00:00:00Z\",\"aggregate_type\":\"lead\","
		 "\"aggregate_id\":\"%s\",\"priority\":\"normal\",\"data\":"
		 "{\"lead_id\":\"%s\"}}')",
		 t, eid, eid, t, lead, lead);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	wait_for_event(t, "lead.created", lead);
	usleep(700 * 1000);
	ck_assert_int_eq(stream_count(t, "lead.created", lead), 1);
}
END_TEST

START_TEST(test_custom_fields_follow_the_tenants_definitions)
{
	char t[37], id[37], *path;
	struct cm_test_resp r;

	add_tenant(t, NULL);
	/* no definitions: a free object */
	create(t, "/api/crm/leads",
	       "{\"name\":\"Free\",\"custom_fields\":{\"any\":1}}", id);
	r = expect(200, t, "PUT", "/api/crm/custom-fields/lead/tier",
		   "{\"label\":\"Tier\",\"type\":\"select\",\"options\":"
		   "[\"gold\",\"silver\"],\"required\":true}");
	ck_assert_int_eq(items(&r), 1);
	cm_test_resp_release(&r);
	r = expect(200, t, "PUT", "/api/crm/custom-fields/lead/seats",
		   "{\"label\":\"Seats\",\"type\":\"number\"}");
	ck_assert_int_eq(items(&r), 2);
	cm_test_resp_release(&r);
	r = expect(400, t, "PUT", "/api/crm/custom-fields/lead/x",
		   "{\"label\":\"X\",\"type\":\"select\"}");
	cm_test_resp_release(&r);
	r = expect(404, t, "GET", "/api/crm/custom-fields/widget", NULL);
	cm_test_resp_release(&r);

	r = expect(400, t, "POST", "/api/crm/leads", "{\"name\":\"N\"}");
	ck_assert_ptr_nonnull(
		strstr(r.body, "custom_fields.tier' is required"));
	cm_test_resp_release(&r);
	r = expect(400, t, "POST", "/api/crm/leads",
		   "{\"name\":\"N\",\"custom_fields\":{\"tier\":\"bronze\"}}");
	ck_assert_ptr_nonnull(strstr(r.body, "custom_fields.tier"));
	cm_test_resp_release(&r);
	r = expect(400, t, "POST", "/api/crm/leads",
		   "{\"name\":\"N\",\"custom_fields\":{\"tier\":\"gold\","
		   "\"seats\":\"many\"}}");
	ck_assert_ptr_nonnull(strstr(r.body, "custom_fields.seats"));
	cm_test_resp_release(&r);
	r = expect(400, t, "POST", "/api/crm/leads",
		   "{\"name\":\"N\",\"custom_fields\":{\"tier\":\"gold\","
		   "\"colour\":\"red\"}}");
	ck_assert_ptr_nonnull(strstr(r.body, "not a defined custom field"));
	cm_test_resp_release(&r);
	r = expect(201, t, "POST", "/api/crm/leads",
		   "{\"name\":\"N\",\"custom_fields\":{\"tier\":\"gold\","
		   "\"seats\":12}}");
	cm_strlcpy(id, str(r.json, "id"), sizeof(id));
	cm_test_resp_release(&r);
	path = fmt("/api/crm/leads/%s", id);
	r = expect(400, t, "PATCH", path,
		   "{\"custom_fields\":{\"seats\":3}}"); /* drops tier */
	cm_test_resp_release(&r);
	r = expect(200, t, "PATCH", path, "{\"name\":\"N2\"}");
	cm_test_resp_release(&r);
	free(path);
	/* contacts have their own definitions (none) */
	create(t, "/api/crm/contacts",
	       "{\"name\":\"C\",\"custom_fields\":{\"any\":true}}", id);
	/* import: a column per custom field, typed by its definition */
	r = expect(200, t, "POST", "/api/crm/leads/import",
		   "{\"csv\":\"name,custom_fields.tier,Seats\\n"
		   "Ann,silver,4\\nBob,,5\\n\",\"mapping\":{\"Seats\":"
		   "\"custom_fields.seats\"},\"allow_partial\":true}");
	ck_assert_int_eq((int)num(r.json, "imported"), 1);
	ck_assert_ptr_nonnull(strstr(r.body, "custom_fields.tier"));
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", "/api/crm/leads?q=ann", NULL);
	ck_assert_int_eq(
		(int)num(cJSON_GetObjectItem(
				 cJSON_GetArrayItem(
					 cJSON_GetObjectItem(r.json, "items"),
					 0),
				 "custom_fields"),
			 "seats"),
		4);
	cm_test_resp_release(&r);
	r = expect(204, t, "DELETE", "/api/crm/custom-fields/lead/tier", NULL);
	cm_test_resp_release(&r);
	r = expect(404, t, "DELETE", "/api/crm/custom-fields/lead/tier", NULL);
	cm_test_resp_release(&r);
	create(t, "/api/crm/leads", "{\"name\":\"Free again\"}", id);
}
END_TEST

/* Send an export request and hang up before reading the answer. */
static void
export_and_hang_up(const char *tenant)
{
	char *tok = cm_test_user_token(USER1, tenant, "[\"owner\"]", 300);
	char *msg = fmt("GET /api/crm/leads/export HTTP/1.1\r\n"
			"Host: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n",
			tok);
	struct sockaddr_in a = { 0 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)crm.port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(write(fd, msg, strlen(msg)), (ssize_t)strlen(msg));
	usleep(20 * 1000); /* the stream has begun */
	close(fd);
	free(msg);
	free(tok);
}

START_TEST(test_an_export_whose_client_hangs_up_is_dropped_cleanly)
{
	char t[37], id[37];
	struct cm_test_resp r;
	int i;

	add_tenant(t, NULL);
	for (i = 0; i < 6; i++)
		create(t, "/api/crm/leads", "{\"name\":\"Row\"}", id);
	for (i = 0; i < 5; i++)
		export_and_hang_up(t);
	usleep(200 * 1000);
	r = expect(200, t, "GET", "/api/crm/leads/export", NULL);
	ck_assert_int_eq(records(r.body), 7); /* the service still serves */
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_a_readonly_member_reads_but_cannot_write)
{
	char t[37], id[37], *path;
	struct cm_test_resp r;

	add_tenant(t, NULL);
	create(t, "/api/crm/leads", "{\"name\":\"R\"}", id);
	path = fmt("/api/crm/leads/%s", id);
	r = call_as(USER2, "[\"readonly\"]", t, "GET", path, NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	cm_test_resp_release(&r);
	r = call_as(USER2, "[\"readonly\"]", t, "PATCH", path,
		    "{\"name\":\"x\"}", NULL);
	ck_assert_int_eq(r.status, 403);
	cm_test_resp_release(&r);
	r = call_as(USER2, "[\"readonly\"]", t, "POST", "/api/crm/leads",
		    "{\"name\":\"x\"}", NULL);
	ck_assert_int_eq(r.status, 403);
	cm_test_resp_release(&r);
	free(path);
}
END_TEST

START_TEST(test_a_private_note_is_seen_by_its_author_only)
{
	char t[37], note[37], *path;
	struct cm_test_resp r;

	add_tenant(t, NULL);
	create(t, "/api/crm/notes", "{\"body\":\"secret\",\"is_private\":true}",
	       note);
	path = fmt("/api/crm/notes/%s", note);
	r = call_as(USER2, "[\"owner\"]", t, "GET", path, NULL, NULL);
	ck_assert_int_eq(r.status, 404);
	cm_test_resp_release(&r);
	r = call_as(USER2, "[\"owner\"]", t, "GET", "/api/crm/notes", NULL,
		    NULL);
	ck_assert_int_eq(items(&r), 0);
	cm_test_resp_release(&r);
	r = expect(200, t, "GET", path, NULL);
	cm_test_resp_release(&r);
	free(path);
}
END_TEST

START_TEST(test_duplicates_are_found_by_email_or_phone)
{
	char t[37], a[37], b[37], c[37], *path;
	struct cm_test_resp r;

	add_tenant(t, NULL);
	create(t, "/api/crm/leads",
	       "{\"name\":\"A\",\"email\":\"Dup@X.io\",\"phone\":\"+1 (555) "
	       "0100\"}",
	       a);
	create(t, "/api/crm/leads", "{\"name\":\"B\",\"email\":\"dup@x.io\"}",
	       b);
	create(t, "/api/crm/leads", "{\"name\":\"C\",\"phone\":\"+15550100\"}",
	       c);
	path = fmt("/api/crm/leads/%s/duplicates", a);
	r = expect(200, t, "GET", path, NULL);
	ck_assert_int_eq(items(&r), 2);
	cm_test_resp_release(&r);
	free(path);

	/* merge B into A: B's activity and tags move, B is gone */
	{
		char act[37], *body;
		const cJSON *tags;

		path = fmt("/api/crm/leads/%s", b);
		r = expect(200, t, "PATCH", path,
			   "{\"tags\":[\"from-b\"],\"job_title\":\"CTO\"}");
		cm_test_resp_release(&r);
		body = fmt("{\"type\":\"call\",\"subject\":\"B call\","
			   "\"lead_id\":\"%s\"}",
			   b);
		create(t, "/api/crm/activities", body, act);
		free(body);
		free(path);
		path = fmt("/api/crm/leads/%s/merge", a);
		body = fmt("{\"from\":[\"%s\"]}", b);
		r = expect(200, t, "POST", path, body);
		ck_assert_str_eq(str(r.json, "job_title"), "CTO");
		tags = cJSON_GetObjectItem(r.json, "tags");
		ck_assert_int_eq(cJSON_GetArraySize(tags), 1);
		ck_assert_int_eq((int)num(r.json, "score"), 15); /* +title */
		cm_test_resp_release(&r);
		free(body);
		body = fmt("{\"from\":[\"%s\"]}", a);
		r = expect(400, t, "POST", path, body); /* itself */
		cm_test_resp_release(&r);
		free(body);
		free(path);
		path = fmt("/api/crm/leads/%s", b);
		r = expect(404, t, "GET", path, NULL);
		cm_test_resp_release(&r);
		free(path);
		path = fmt("/api/crm/activities/%s", act);
		r = expect(200, t, "GET", path, NULL);
		ck_assert_str_eq(str(r.json, "lead_id"), a);
		cm_test_resp_release(&r);
		free(path);
	}
	r = expect(404, t, "GET", "/api/crm/leads/" NO_ID "/duplicates", NULL);
	cm_test_resp_release(&r);
}
END_TEST

/* Tenant B's answer for its own id and for a random id must be the same
   for a caller of tenant A: status and error code. */
static void
same_as_missing(const char *a, const char *method, const char *fmt_path,
		const char *b_id, const char *body)
{
	char *p1 = fmt(fmt_path, b_id), *p2 = fmt(fmt_path, NO_ID);
	struct cm_test_resp r1 = call(a, method, p1, body),
			    r2 = call(a, method, p2, body);

	ck_assert_msg(r1.status == r2.status && r1.status >= 400,
		      "%s %s: %ld vs %ld (%s)", method, fmt_path, r1.status,
		      r2.status, r1.body);
	ck_assert_str_eq(cm_test_resp_error_code(&r1),
			 cm_test_resp_error_code(&r2));
	cm_test_resp_release(&r1);
	cm_test_resp_release(&r2);
	free(p1);
	free(p2);
}

START_TEST(test_another_tenants_records_look_exactly_like_missing_ones)
{
	char a[37], b[37], lead[37], contact[37], company[37], deal[37],
		act[37], note[37], stage[37], *body;
	struct cm_test_resp r;

	add_tenant(a, NULL);
	add_tenant(b, NULL);
	create(b, "/api/crm/leads",
	       "{\"name\":\"Bsecret\",\"email\":\"b@b.io\"}", lead);
	create(b, "/api/crm/contacts", "{\"name\":\"Bcontact\"}", contact);
	create(b, "/api/crm/companies", "{\"name\":\"Bco\"}", company);
	create(b, "/api/crm/deals", "{\"title\":\"Bdeal\"}", deal);
	create(b, "/api/crm/activities",
	       "{\"type\":\"call\",\"subject\":\"Bcall\"}", act);
	create(b, "/api/crm/notes", "{\"body\":\"Bnote\"}", note);
	stage_id(b, "Won", stage);

	same_as_missing(a, "GET", "/api/crm/leads/%s", lead, NULL);
	same_as_missing(a, "GET", "/api/crm/contacts/%s", contact, NULL);
	same_as_missing(a, "GET", "/api/crm/companies/%s", company, NULL);
	same_as_missing(a, "GET", "/api/crm/deals/%s", deal, NULL);
	same_as_missing(a, "GET", "/api/crm/activities/%s", act, NULL);
	same_as_missing(a, "GET", "/api/crm/notes/%s", note, NULL);
	same_as_missing(a, "GET", "/api/crm/pipelines/%s", stage, NULL);
	same_as_missing(a, "PATCH", "/api/crm/leads/%s", lead,
			"{\"name\":\"pwned\"}");
	same_as_missing(a, "DELETE", "/api/crm/deals/%s", deal, NULL);
	same_as_missing(a, "POST", "/api/crm/leads/%s/mark-lost", lead,
			"{\"reason\":\"x\"}");
	same_as_missing(a, "POST", "/api/crm/leads/%s/mark-contacted", lead,
			"{}");
	same_as_missing(a, "POST", "/api/crm/leads/%s/convert", lead, "{}");
	same_as_missing(a, "GET", "/api/crm/leads/%s/duplicates", lead, NULL);
	same_as_missing(a, "GET", "/api/crm/deals/%s/history", deal, NULL);
	same_as_missing(a, "POST", "/api/crm/activities/%s/complete", act,
			NULL);
	/* references to B's rows fail like references to nothing */
	body = fmt("{\"body\":\"x\",\"lead_id\":\"%s\"}", lead);
	r = call(a, "POST", "/api/crm/notes", body);
	ck_assert_int_eq(r.status, 400);
	ck_assert_ptr_nonnull(strstr(r.body, "'lead_id' names no such"));
	cm_test_resp_release(&r);
	free(body);
	body = fmt("{\"name\":\"x\",\"company_id\":\"%s\"}", company);
	r = call(a, "POST", "/api/crm/contacts", body);
	ck_assert_int_eq(r.status, 400);
	ck_assert_ptr_nonnull(strstr(r.body, "'company_id' names no such"));
	cm_test_resp_release(&r);
	free(body);
	body = fmt("{\"title\":\"x\",\"stage_id\":\"%s\"}", stage);
	r = call(a, "POST", "/api/crm/deals", body);
	ck_assert_int_eq(r.status, 400);
	cm_test_resp_release(&r);
	free(body);
	body = fmt("{\"ids\":[\"%s\"],\"changes\":{\"name\":\"pwned\"}}", lead);
	r = expect(200, a, "POST", "/api/crm/leads/bulk", body);
	ck_assert_int_eq(
		cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "updated")), 0);
	cm_test_resp_release(&r);
	free(body);
	body = fmt("{\"csv\":\"name,company_id\\nx,%s\\n\"}", company);
	r = call(a, "POST", "/api/crm/contacts/import", body);
	ck_assert_int_eq(r.status, 400);
	ck_assert_ptr_nonnull(strstr(r.body, "company_id"));
	cm_test_resp_release(&r);
	free(body);

	/* lists, search, export, views: nothing of B */
	r = expect(200, a, "GET", "/api/crm/leads", NULL);
	ck_assert_int_eq(items(&r), 0);
	cm_test_resp_release(&r);
	r = expect(200, a, "GET", "/api/crm/search?q=bsecret", NULL);
	ck_assert_int_eq(items(&r), 0);
	cm_test_resp_release(&r);
	r = expect(200, a, "GET", "/api/crm/leads/export", NULL);
	ck_assert_ptr_null(strstr(r.body, "Bsecret"));
	cm_test_resp_release(&r);
	r = expect(200, a, "GET", "/api/crm/dashboard", NULL);
	ck_assert_int_eq((int)num(r.json, "leads_total"), 0);
	cm_test_resp_release(&r);
	r = expect(200, a, "GET", "/api/crm/tags", NULL);
	ck_assert_int_eq(items(&r), 0);
	cm_test_resp_release(&r);

	/* merging B's lead into one of A's fails like merging nothing */
	{
		char mine[37], *path, *b1, *b2;
		struct cm_test_resp r2;

		create(a, "/api/crm/leads", "{\"name\":\"Amine\"}", mine);
		path = fmt("/api/crm/leads/%s/merge", mine);
		b1 = fmt("{\"from\":[\"%s\"]}", lead);
		b2 = fmt("{\"from\":[\"%s\"]}", NO_ID);
		r = call(a, "POST", path, b1);
		r2 = call(a, "POST", path, b2);
		ck_assert_int_eq(r.status, 400);
		ck_assert_int_eq(r2.status, 400);
		ck_assert_str_eq(
			cJSON_GetObjectItem(
				cJSON_GetObjectItem(r.json, "error"), "message")
				->valuestring,
			cJSON_GetObjectItem(
				cJSON_GetObjectItem(r2.json, "error"),
				"message")
				->valuestring);
		cm_test_resp_release(&r);
		cm_test_resp_release(&r2);
		free(path);
		free(b1);
		free(b2);
	}

	/* and B's rows are untouched */
	{
		char *path = fmt("/api/crm/leads/%s", lead);

		r = expect(200, b, "GET", path, NULL);
		ck_assert_str_eq(str(r.json, "name"), "Bsecret");
		ck_assert_str_eq(cm_test_resp_header(&r, "ETag"), "\"1\"");
		cm_test_resp_release(&r);
		free(path);
	}
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("crm");
	TCase *tc = tcase_create("http");

	tcase_add_unchecked_fixture(tc, start_all, stop_all);
	tcase_set_timeout(tc, 120);
	tcase_add_test(
		tc,
		test_a_lead_is_created_read_updated_with_etags_and_soft_deleted);
	tcase_add_test(tc, test_every_other_entity_has_crud_too);
	tcase_add_test(
		tc, test_the_score_is_stored_with_its_factors_and_recomputed);
	tcase_add_test(
		tc,
		test_mark_contacted_and_mark_lost_change_status_and_timeline);
	tcase_add_test(
		tc,
		test_converting_a_lead_makes_contact_company_and_deal_at_once);
	tcase_add_test(tc,
		       test_deals_move_between_stages_with_history_and_close);
	tcase_add_test(tc,
		       test_lists_filter_sort_and_page_with_a_stable_cursor);
	tcase_add_test(tc, test_bulk_update_changes_every_named_lead_in_one_go);
	tcase_add_test(tc,
		       test_a_create_with_an_idempotency_key_is_answered_once);
	tcase_add_test(tc, test_the_plan_limit_on_leads_is_enforced_and_named);
	tcase_add_test(
		tc,
		test_search_ranks_name_matches_first_and_stays_in_its_tenant);
	tcase_add_test(
		tc,
		test_an_import_with_bad_rows_imports_nothing_and_reports_them);
	tcase_add_test(
		tc,
		test_export_streams_the_filtered_list_page_by_page_within_its_bound);
	tcase_add_test(tc,
		       test_every_change_is_published_once_through_the_outbox);
	tcase_add_test(tc,
		       test_an_event_left_by_a_crash_is_published_once_later);
	tcase_add_test(tc, test_a_due_activity_is_announced_once_per_due_time);
	tcase_add_test(tc, test_custom_fields_follow_the_tenants_definitions);
	tcase_add_test(tc,
		       test_an_export_whose_client_hangs_up_is_dropped_cleanly);
	tcase_add_test(tc, test_a_readonly_member_reads_but_cannot_write);
	tcase_add_test(tc, test_a_private_note_is_seen_by_its_author_only);
	tcase_add_test(tc, test_duplicates_are_found_by_email_or_phone);
	tcase_add_test(
		tc,
		test_another_tenants_records_look_exactly_like_missing_ones);
	suite_add_tcase(s, tc);
	/* last: its 50,000 events keep the relay busy for a while */
	tc = tcase_create("bulk");
	tcase_add_unchecked_fixture(tc, start_all, stop_all);
	tcase_set_timeout(tc, 240);
	tcase_add_test(
		tc,
		test_a_50000_row_file_imports_in_the_background_with_progress);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
