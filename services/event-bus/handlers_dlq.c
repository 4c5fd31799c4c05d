/*
 * handlers_dlq.c - the platform admins' dead-letter routes: every
 * tenant's dead letters, listed, inspected, retried and discarded.
 *
 * Only a user holding the role super_admin gets past platform_admin()
 * (its own token, or one the gateway forwards); API keys and service
 * tokens never do, whatever roles they carry, and tenant owners and
 * admins get 403. The routes skip the tenant hook (CM_ROUTE_NO_TENANT):
 * the tenant is named in the path or the query of a platform admin's
 * request. The tenant routes (handlers.c) still derive the key from the
 * caller's verified tenant alone.
 */
#include "evbus.h"

#include <ctype.h>
#include <string.h>

#include "common/auth.h"
#include "common/http.h"
#include "common/log.h"
#include "common/mem.h"

#include "common/banned.h"

#define ADMIN_DEFAULT_LIMIT 50

/* 0 when the caller is a platform admin, else the status after
   cm_req_fail. */
static int
platform_admin(struct cm_req *req)
{
	const struct cm_principal *p = cm_req_principal(req);

	if (p && !p->is_service && !p->is_api_key &&
	    cm_principal_has_role(p, "super_admin"))
		return 0;
	return cm_req_fail(req, 403, "forbidden",
			   "every tenant's dead letters are for platform "
			   "administrators (role super_admin) only");
}

/* A tenant id from the request as a lowercase uuid into out; 0 or the
   status after cm_req_fail. */
static int
tenant_arg(struct cm_req *req, const char *s, char out[37])
{
	size_t i;

	if (!cm_is_uuid(s))
		return cm_req_fail(req, 400, "invalid_tenant_id",
				   "tenant_id must be a uuid");
	for (i = 0; i < 36; i++)
		out[i] = (char)tolower((unsigned char)s[i]);
	out[36] = '\0';
	return 0;
}

/* Read and check the list query; 0 or the status after cm_req_fail. */
static int
admin_query(struct cm_req *req, struct bus_dlq_admin_query *q, char tid[37])
{
	const char *lim = cm_req_query(req, "limit");
	const char *tenant = cm_req_query(req, "tenant_id");
	int64_t n = ADMIN_DEFAULT_LIMIT;
	int status;

	if (lim && cm_parse_i64(lim, 1, BUS_DLQ_ADMIN_MAX_LIMIT, &n) < 0)
		return cm_req_fail(req, 400, "bad_request",
				   "limit must be an integer 1..%d",
				   BUS_DLQ_ADMIN_MAX_LIMIT);
	q->limit = (int)n;
	if (tenant) {
		if ((status = tenant_arg(req, tenant, tid)) != 0)
			return status;
		q->tenant_id = tid;
	}
	q->type = cm_req_query(req, "event_type");
	if (q->type && !bus_type_pattern_ok(q->type))
		return cm_req_fail(req, 400, "bad_request",
				   "event_type must be an event type, "
				   "<domain>.* or *");
	q->cursor = cm_req_query(req, "cursor");
	return 0;
}

/* GET /api/events/admin/dead-letters - every tenant's, or one's. */
void
bus_handle_dlq_admin_list(struct cm_req *req, void *arg)
{
	struct bus_dlq_admin_query q = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "", tid[37];
	cJSON *out = NULL;
	int status, rc;

	(void)arg;
	if ((status = platform_admin(req)) != 0 ||
	    (status = admin_query(req, &q, tid)) != 0)
		goto out;
	rc = bus_dlq_admin_list(&q, &out, errbuf);
	if (rc == CM_EINVAL) {
		status = cm_req_fail(req, 400, "bad_cursor", "bad cursor");
	} else if (rc < 0) {
		cm_log_err("admin dead letters: %s", errbuf);
		status = 500;
	} else {
		status = 200;
	}
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
}

/* The status for a dead-letter call's result. */
static int
letter_status(struct cm_req *req, int rc, int ok, const char *errbuf)
{
	if (rc == 0)
		return ok;
	if (rc == CM_ENOENT || rc == CM_EINVAL)
		return cm_req_fail(req, 404, "not_found",
				   "no such dead letter");
	cm_log_err("admin dead letter: %s", errbuf);
	return 500;
}

/* The caller may act and the path names a tenant: 0 (the tenant in
   tid), or the status after cm_req_fail. */
static int
admin_letter(struct cm_req *req, char tid[37])
{
	int status;

	if ((status = platform_admin(req)) != 0)
		return status;
	return tenant_arg(req, cm_req_param(req, "tenant_id"), tid);
}

/* GET /api/events/admin/dead-letters/:tenant_id/:id */
void
bus_handle_dlq_admin_get(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "", tid[37];
	cJSON *out = NULL;
	int status;

	(void)arg;
	if ((status = admin_letter(req, tid)) != 0)
		goto out;
	status = letter_status(
		req, bus_dlq_get(tid, cm_req_param(req, "id"), &out, errbuf),
		200, errbuf);
	if (out)
		cJSON_AddStringToObject(out, "tenant_id", tid);
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
}

/* POST /api/events/admin/dead-letters/:tenant_id/:id/retry */
void
bus_handle_dlq_admin_retry(struct cm_req *req, void *arg)
{
	const struct cm_principal *p = cm_req_principal(req);
	const char *id = cm_req_param(req, "id");
	char errbuf[CM_ERRBUF_LEN] = "", tid[37], sid[64] = "";
	cJSON *out = NULL;
	int status;

	(void)arg;
	if ((status = admin_letter(req, tid)) != 0)
		goto out;
	status = letter_status(req, cm_bus_dlq_retry(tid, id, sid, errbuf), 202,
			       errbuf);
	if (status != 202)
		goto out;
	cm_log_info("platform admin %s retried dead letter %s of tenant %s",
		    p->sub, id, tid);
	out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "tenant_id", tid);
	cJSON_AddStringToObject(out, "stream_id", sid);
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
}

/* DELETE /api/events/admin/dead-letters/:tenant_id/:id */
void
bus_handle_dlq_admin_discard(struct cm_req *req, void *arg)
{
	const struct cm_principal *p = cm_req_principal(req);
	const char *id = cm_req_param(req, "id");
	char errbuf[CM_ERRBUF_LEN] = "", tid[37];
	int status;

	(void)arg;
	if ((status = admin_letter(req, tid)) != 0)
		goto out;
	status = letter_status(req, bus_dlq_discard(tid, id, errbuf), 204,
			       errbuf);
	if (status == 204)
		cm_log_info("platform admin %s discarded dead letter %s of "
			    "tenant %s",
			    p->sub, id, tid);
out:
	cm_req_reply_json(req, status, NULL);
}
