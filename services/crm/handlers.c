/*
 * handlers.c - the HTTP edge of the generic entity routes:
 * /api/crm/:entity (list, create), /api/crm/:entity/:id (read, update,
 * delete) and /api/crm/:entity/bulk.
 *
 * The tenant is always cm_req_tenant_id(req); the caller's id (sub) is
 * recorded as created_by. A caller whose only role is readonly may read
 * but not write. Updates take If-Match (optional: without it the write
 * applies to whatever version is current); every answer carrying one row
 * has its ETag.
 */
#include "crm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/auth.h"
#include "common/buf.h"
#include "common/http.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"

#include "common/banned.h"

#define BULK_MAX 200

static bool
read_only(const struct cm_principal *p)
{
	int i;

	if (!p || p->is_service)
		return false;
	for (i = 0; i < p->nroles; i++)
		if (strcmp(p->roles[i], "readonly") != 0)
			return false;
	return p->nroles > 0;
}

bool
crm_req_ctx(struct cm_req *req, void *arg, bool write, struct crm_ctx *ctx,
	    int *status)
{
	const struct cm_principal *p = cm_req_principal(req);
	struct crm *crm = arg;

	ctx->crm = crm && crm->magic == CRM_MAGIC ? crm : NULL;
	ctx->tenant = cm_req_tenant_id(req);
	ctx->sub = p && p->sub[0] ? p->sub : "unknown";
	if (!ctx->tenant) {
		*status = cm_req_fail(req, 400, "tenant_required",
				      "no tenant for this request");
		return false;
	}
	if (write && read_only(p)) {
		*status = cm_req_fail(req, 403, "forbidden",
				      "the readonly role cannot change data");
		return false;
	}
	return true;
}

int
crm_fail(struct cm_req *req, int rc, const char *what, const char *errbuf)
{
	char field[64];

	switch (rc) {
	case CM_ENOENT:
		return cm_req_fail(req, 404, "not_found", "no such %s", what);
	case CM_EINVAL:
		return cm_req_fail(req, 400, "validation_failed", "%s", errbuf);
	case CM_ESTALE:
		return cm_req_fail(req, 412, "precondition_failed",
				   "%s; read it again and retry", errbuf);
	case CM_EEXIST:
		return cm_req_fail(req, 409, "conflict", "%s", errbuf);
	case CM_EACCES:
		return cm_req_fail(req, 403, "limit_exceeded", "%s", errbuf);
	case CM_E2BIG:
		return cm_req_fail(req, 413, "payload_too_large", "%s", errbuf);
	default:
		break;
	}
	if (crm_fk_field(errbuf, field))
		return cm_req_fail(req, 400, "validation_failed",
				   "field '%s' names no such record", field);
	cm_log_err("%s: %s", what, errbuf);
	return cm_req_fail(req, rc == CM_ETIMEDOUT ? 503 : 500,
			   rc == CM_ETIMEDOUT ? "unavailable" : "internal",
			   "the request could not be completed");
}

int
crm_if_match(struct cm_req *req, int64_t *version)
{
	int rc;

	*version = -1;
	rc = cm_req_if_match(req, version);
	if (rc == CM_ENOENT || (rc == 0 && *version == 0)) {
		*version = -1; /* absent or "*": no check */
		return 0;
	}
	return rc;
}

/* The :entity segment; replies 404 for an unknown collection. */
static const struct crm_entity *
entity_of(struct cm_req *req, int *status)
{
	const struct crm_entity *e =
		crm_entity_by_plural(cm_req_param(req, "entity"));

	if (!e)
		*status = cm_req_fail(req, 404, "not_found",
				      "no such collection");
	return e;
}

static const char *
query_of(void *req, const char *name)
{
	return cm_req_query(req, name);
}

/* GET /api/crm/:entity - a page of the tenant's rows. */
void
crm_handle_list(struct cm_req *req, void *arg)
{
	struct crm_list_query *q = cm_xcalloc(1, sizeof(*q));
	struct cm_buf out = CM_BUF_INIT(0);
	char errbuf[CM_ERRBUF_LEN] = "";
	struct crm_ctx ctx;
	int status = 500, rc;

	if (!crm_req_ctx(req, arg, false, &ctx, &status) ||
	    !(q->e = entity_of(req, &status)))
		goto out;
	if ((rc = crm_list_build(q, query_of, req, errbuf)) < 0) {
		status = cm_req_fail(req, 400, "bad_request", "%s", errbuf);
		goto out;
	}
	rc = crm_store_list(&ctx, q, &out, errbuf);
	if (rc == CM_EINVAL) {
		status = cm_req_fail(req, 400, "bad_request", "%s", errbuf);
		goto out;
	}
	if (rc < 0) {
		status = crm_fail(req, rc, q->e->plural, errbuf);
		goto out;
	}
	cm_req_reply(req, 200, "application/json", cm_buf_str(&out), out.len);
	status = 0;
out:
	if (status)
		cm_req_reply_json(req, status, NULL);
	cm_buf_release(&out);
	free(q);
}

/* Check a body for e; leads reach status converted through the convert
   action only. */
static int
parse_body(const struct crm_entity *e, const cJSON *body, bool create,
	   struct crm_values *v, char errbuf[CM_ERRBUF_LEN])
{
	const char *s;
	int rc;

	if ((rc = crm_entity_parse(e, body, create, v, errbuf)) < 0)
		return rc;
	s = crm_values_find(v, "status", NULL);
	if (e == &crm_leads && s && strcmp(s, "converted") == 0) {
		cm_errf(errbuf, "field 'status' becomes converted only through "
				"POST /api/crm/leads/{id}/convert");
		crm_values_release(v);
		return CM_EINVAL;
	}
	return 0;
}

/* POST /api/crm/:entity - create one row (Idempotency-Key honoured). */
void
crm_handle_create(struct cm_req *req, void *arg)
{
	struct crm_values v = { 0 };
	struct crm_reply reply = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	const struct crm_entity *e;
	struct cm_idem idem;
	struct crm_ctx ctx;
	cJSON *body = NULL;
	int status = 500, rc;

	if (!crm_req_ctx(req, arg, true, &ctx, &status) ||
	    !(e = entity_of(req, &status)) ||
	    (status = cm_idem_from_req(req, &idem)) != 0 ||
	    (status = cm_req_json(req, &body)) != 0)
		goto out;
	if (parse_body(e, body, true, &v, errbuf) < 0) {
		status = cm_req_fail(req, 400, "validation_failed", "%s",
				     errbuf);
		goto out;
	}
	rc = crm_store_create(&ctx, e, &v, &idem, &reply, errbuf);
	if (rc < 0 && reply.reused) {
		status = cm_req_fail(req, 422, "idempotency_key_reused", "%s",
				     errbuf);
		goto out;
	}
	if (rc < 0) {
		status = crm_fail(req, rc, e->name, errbuf);
		goto out;
	}
	status = reply.status;
	cm_req_set_etag(req, reply.version);
	if (reply.replayed)
		cm_req_set_header(req, "Idempotent-Replayed", "true");
out:
	cm_req_reply_json(req, status, reply.body);
	cJSON_Delete(reply.body);
	cJSON_Delete(body);
	crm_values_release(&v);
}

/* GET /api/crm/:entity/:id */
void
crm_handle_get(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	const struct crm_entity *e;
	struct crm_ctx ctx;
	cJSON *out = NULL;
	int64_t version = 0;
	int status = 500, rc;

	if (!crm_req_ctx(req, arg, false, &ctx, &status) ||
	    !(e = entity_of(req, &status)))
		goto out;
	rc = crm_store_get(&ctx, e, cm_req_param(req, "id"), &out, &version,
			   errbuf);
	if (rc < 0) {
		status = crm_fail(req, rc, e->name, errbuf);
		goto out;
	}
	cm_req_set_etag(req, version);
	status = 200;
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
}

/* PATCH /api/crm/:entity/:id - the fields given; If-Match optional. */
void
crm_handle_update(struct cm_req *req, void *arg)
{
	struct crm_values v = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	const struct crm_entity *e;
	struct crm_ctx ctx;
	cJSON *body = NULL, *out = NULL;
	int64_t if_match, version = 0;
	int status = 500, rc;

	if (!crm_req_ctx(req, arg, true, &ctx, &status) ||
	    !(e = entity_of(req, &status)))
		goto out;
	if (crm_if_match(req, &if_match) < 0) {
		status = cm_req_fail(req, 400, "bad_request",
				     "If-Match must be an ETag of this API");
		goto out;
	}
	if ((status = cm_req_json(req, &body)) != 0)
		goto out;
	if (parse_body(e, body, false, &v, errbuf) < 0) {
		status = cm_req_fail(req, 400, "validation_failed", "%s",
				     errbuf);
		goto out;
	}
	rc = crm_store_update(&ctx, e, cm_req_param(req, "id"), if_match, &v,
			      &out, &version, errbuf);
	if (rc < 0) {
		status = crm_fail(req, rc, e->name, errbuf);
		goto out;
	}
	cm_req_set_etag(req, version);
	status = 200;
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
	cJSON_Delete(body);
	crm_values_release(&v);
}

/* DELETE /api/crm/:entity/:id - soft delete; 204. */
void
crm_handle_delete(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	const struct crm_entity *e;
	struct crm_ctx ctx;
	int64_t if_match;
	int status = 500, rc;

	if (!crm_req_ctx(req, arg, true, &ctx, &status) ||
	    !(e = entity_of(req, &status)))
		goto out;
	if (crm_if_match(req, &if_match) < 0) {
		status = cm_req_fail(req, 400, "bad_request",
				     "If-Match must be an ETag of this API");
		goto out;
	}
	rc = crm_store_delete(&ctx, e, cm_req_param(req, "id"), if_match,
			      errbuf);
	status = rc < 0 ? crm_fail(req, rc, e->name, errbuf) : 204;
out:
	cm_req_reply_json(req, status, NULL);
}

/* Every item of ids a uuid, 1..BULK_MAX of them. */
static int
check_ids(const cJSON *ids, char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *it;
	int n = cJSON_GetArraySize(ids);

	if (n < 1 || n > BULK_MAX) {
		cm_errf(errbuf, "field 'ids' must hold 1 to %d ids", BULK_MAX);
		return CM_EINVAL;
	}
	cJSON_ArrayForEach(it, ids)
	{
		if (!cJSON_IsString(it) || !cm_is_uuid(it->valuestring)) {
			cm_errf(errbuf, "field 'ids' must hold uuids");
			return CM_EINVAL;
		}
	}
	return 0;
}

/* POST /api/crm/:entity/bulk - {"ids": [...], "changes": {...}}: the same
   changes to every row, all or nothing; ids not found are listed. */
void
crm_handle_bulk(struct cm_req *req, void *arg)
{
	struct crm_values v = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	const struct crm_entity *e;
	const cJSON *ids = NULL, *changes = NULL;
	struct crm_ctx ctx;
	cJSON *body = NULL, *out = NULL;
	int status = 500, rc;

	if (!crm_req_ctx(req, arg, true, &ctx, &status) ||
	    !(e = entity_of(req, &status)) ||
	    (status = cm_req_json(req, &body)) != 0)
		goto out;
	if (cm_json_get_array(body, NULL, "ids", true, BULK_MAX, &ids, errbuf) <
		    0 ||
	    check_ids(ids, errbuf) < 0 ||
	    cm_json_get_object(body, NULL, "changes", true, &changes, errbuf) <
		    0 ||
	    parse_body(e, changes, false, &v, errbuf) < 0) {
		status = cm_req_fail(req, 400, "validation_failed", "%s",
				     errbuf);
		goto out;
	}
	rc = crm_store_bulk(&ctx, e, ids, &v, &out, errbuf);
	status = rc < 0 ? crm_fail(req, rc, e->name, errbuf) : 200;
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
	cJSON_Delete(body);
	crm_values_release(&v);
}
