/*
 * handlers_tenants.c - the HTTP edge of tenants: the platform-admin API
 * (super_admin only), the seed's unified-tenants endpoints and host
 * resolution, and the tenant-admin API on the caller's own tenant.
 */
#include "brain.h"

#include "common/buf.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/tenant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

struct brain *
brain_from(void *arg)
{
	struct brain *b = arg;

	if (!b || b->magic != BRAIN_MAGIC)
		abort();
	return b;
}

bool
brain_allowed(struct cm_req *req, unsigned perm)
{
	const struct cm_principal *p = cm_req_principal(req);

	if ((brain_principal_perms(p) & perm) == perm)
		return true;
	cm_req_fail(req, 403, "forbidden", "your role does not allow this");
	return false;
}

int
brain_fail_store(struct cm_req *req, int rc, const char *what,
		 const char *errbuf)
{
	switch (rc) {
	case CM_ENOENT:
		return cm_req_fail(req, 404, "not_found", "no such %s", what);
	case CM_EEXIST:
		return cm_req_fail(req, 409, "conflict", "that %s exists",
				   what);
	case CM_ESTALE:
		return cm_req_fail(req, 412, "precondition_failed",
				   "the %s changed; read it again", what);
	case CM_EINVAL:
		return cm_req_fail(req, 400, "bad_request", "invalid %s", what);
	default:
		cm_log_err("%s: %s", what, errbuf);
		return 500;
	}
}

int
brain_once_answer(struct cm_req *req, const struct brain_once *once)
{
	if (once->reused)
		return cm_req_fail(req, 422, "idempotency_key_reused",
				   "this Idempotency-Key came with another "
				   "request");
	if (once->replayed)
		cm_req_set_header(req, "Idempotent-Replayed", "true");
	return 0;
}

/* ?limit= and ?cursor= of a tenant list; 0 or the recorded 400. */
static int
page_query(struct cm_req *req, struct brain_page *pg)
{
	const char *lim = cm_req_query(req, "limit");
	int64_t n = BRAIN_PAGE_DEFAULT;

	if (lim && cm_parse_i64(lim, 1, BRAIN_PAGE_MAX, &n) < 0)
		return cm_req_fail(req, 400, "bad_request",
				   "limit must be an integer 1..%d",
				   BRAIN_PAGE_MAX);
	pg->limit = (int)n;
	pg->cursor = cm_req_query(req, "cursor");
	if (pg->cursor && !brain_cursor_valid(pg->cursor))
		return cm_req_fail(req, 400, "bad_cursor", "bad cursor");
	return 0;
}

void
brain_reply_page(struct cm_req *req, const char *tid, brain_page_fn page,
		 const char *what)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct brain_page pg;
	cJSON *json = NULL;
	int status = 403, rc;

	if (!tid || (status = page_query(req, &pg)) != 0)
		goto out;
	rc = page(tid, &pg, &json, errbuf);
	if (rc == CM_EINVAL)
		status = cm_req_fail(req, 400, "bad_cursor", "bad cursor");
	else if (rc < 0)
		status = brain_fail_store(req, rc, what, errbuf);
	else
		status = 200;
out:
	cm_req_reply_json(req, status, status == 200 ? json : NULL);
	cJSON_Delete(json);
}

void
brain_reply_revoke(struct cm_req *req, const char *tid, brain_revoke_fn revoke,
		   const char *what)
{
	const char *id = cm_req_param(req, "id");
	char errbuf[CM_ERRBUF_LEN] = "";
	int status = 403, rc;

	if (!tid)
		goto out;
	rc = id && cm_is_uuid(id) ? revoke(tid, id, errbuf) : CM_ENOENT;
	status = rc < 0 ? brain_fail_store(req, rc, what, errbuf) : 204;
out:
	cm_req_reply_json(req, status, NULL);
}

/* Add the effective limits and the ETag to a tenant row. */
static void
render_tenant(struct cm_req *req, cJSON *row)
{
	const cJSON *tier =
		cJSON_GetObjectItemCaseSensitive(row, "subscription_tier");
	const cJSON *ov =
		cJSON_GetObjectItemCaseSensitive(row, "limit_overrides");
	const cJSON *ver = cJSON_GetObjectItemCaseSensitive(row, "version");

	cJSON_AddItemToObject(
		row, "limits",
		brain_limits_effective(cJSON_GetStringValue(tier), ov));
	if (req && cJSON_IsNumber(ver)) {
		cm_req_set_etag(req, (int64_t)ver->valuedouble);
	}
}

/* The version an If-Match names; CM_ENOENT when absent, CM_EINVAL when
   malformed or "*" (a tenant update names the version it read). */
static int
if_match_version(struct cm_req *req, int64_t *out)
{
	int rc = cm_req_if_match(req, out);

	return rc == 0 && *out == 0 ? CM_EINVAL : rc;
}

/* Path :id must be a uuid (platform routes act on ids). */
static const char *
path_id(struct cm_req *req)
{
	const char *id = cm_req_param(req, "id");

	if (id && cm_is_uuid(id))
		return id;
	cm_req_fail(req, 404, "not_found", "no such tenant");
	return NULL;
}

static const char *
tenant_id_of(const cJSON *row)
{
	return cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(row, "id"));
}

/* The event's data, shaped as proto/events/registry.json says: created
   {slug, name, tier}, updated {changes}, suspended {reason}. */
static cJSON *
event_data(const char *type, const cJSON *row, const cJSON *extra)
{
	cJSON *d = cJSON_CreateObject();

	cJSON_AddStringToObject(d, "tenant_id", tenant_id_of(row));
	if (!strcmp(type, "tenant.created")) {
		cJSON_AddItemToObject(
			d, "slug",
			cJSON_Duplicate(cJSON_GetObjectItem(row, "slug"), 1));
		cJSON_AddItemToObject(
			d, "name",
			cJSON_Duplicate(cJSON_GetObjectItem(row, "name"), 1));
		cJSON_AddItemToObject(
			d, "tier",
			cJSON_Duplicate(
				cJSON_GetObjectItem(row, "subscription_tier"),
				1));
	} else if (!strcmp(type, "tenant.updated")) {
		cJSON_AddItemToObject(d, "changes",
				      extra ? cJSON_Duplicate(extra, 1)
					    : cJSON_CreateObject());
	} else if (!strcmp(type, "tenant.suspended")) {
		cJSON_AddStringToObject(d, "reason",
					cJSON_IsString(extra)
						? extra->valuestring
						: "suspended by the platform");
	}
	return d;
}

/* Stage the event of a change to row (inside brain_change). */
static int
stage(PGconn *conn, struct brain_staged *st, const char *type, const cJSON *row,
      const cJSON *extra, char errbuf[CM_ERRBUF_LEN])
{
	cJSON *data = event_data(type, row, extra);
	int rc = brain_stage(conn, st, type, tenant_id_of(row), data, errbuf);

	cJSON_Delete(data);
	return rc;
}

/* tenant.plan_changed {tenant_id, from_tier, to_tier}. */
static int
stage_plan_changed(PGconn *conn, struct brain_staged *st, const cJSON *row,
		   const char *from, const char *to, char errbuf[CM_ERRBUF_LEN])
{
	const char *id = tenant_id_of(row);
	cJSON *data = cJSON_CreateObject();
	int rc;

	cJSON_AddStringToObject(data, "tenant_id", id);
	cJSON_AddStringToObject(data, "from_tier", from);
	cJSON_AddStringToObject(data, "to_tier", to);
	rc = brain_stage(conn, st, "tenant.plan_changed", id, data, errbuf);
	cJSON_Delete(data);
	return rc;
}

/* The caller must be a platform super admin (never a key or service). */
static bool
platform_admin(struct cm_req *req)
{
	const struct cm_principal *p = cm_req_principal(req);

	if (p && !p->is_service && !p->is_api_key &&
	    cm_principal_has_role(p, "super_admin"))
		return true;
	cm_req_fail(req, 403, "forbidden", "platform administrators only");
	return false;
}

/* The status for a store result on a tenant row (rendered when ok). */
static int
tenant_status(struct cm_req *req, int ok_status, int rc, cJSON *row,
	      const char *errbuf)
{
	if (rc < 0)
		return brain_fail_store(req, rc, "tenant", errbuf);
	render_tenant(req, row);
	return ok_status;
}

/* Parse a tenant body; 0 or the status already recorded. */
static int
parse_input(struct cm_req *req, bool admin, cJSON **body,
	    struct brain_tenant_input *in)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	int rc, status;

	if ((status = cm_req_json(req, body)) != 0)
		return status;
	rc = brain_tenant_input_parse(*body, admin, in, errbuf);
	if (rc == CM_EPERM)
		return cm_req_fail(req, 403, "forbidden", "%s", errbuf);
	if (rc < 0)
		return cm_req_fail(req, 400, "validation_failed", "%s", errbuf);
	return 0;
}

struct create_tx {
	const struct brain_tenant_input *in;
	struct brain_once *once;
	cJSON *row;
	struct brain_staged st;
};

#define PLATFORM_SCOPE "00000000-0000-0000-0000-000000000000"

/* The platform's own Idempotency-Key records (tenant creates) live under
   the nil tenant in brain.idempotency_keys. */
static int
platform_scope(PGconn *conn, char errbuf[CM_ERRBUF_LEN])
{
	return cm_db_query(conn,
			   "SELECT set_config('app.tenant_id', '" PLATFORM_SCOPE
			   "', true)",
			   0, NULL, NULL, errbuf);
}

/* The create, tenant.created, and the key's record, in one transaction;
   or the answer recorded under the key. */
static int
create_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct create_tx *c = arg;
	bool key = c->once->im.key != NULL;
	int rc;

	if (key && (rc = platform_scope(conn, errbuf)) < 0)
		return rc;
	rc = brain_once_lookup(conn, c->once, &c->row, errbuf);
	if (rc != CM_ENOENT)
		return rc; /* replayed (0) or failed */
	if ((rc = brain_store_tenant_create(c->in, &c->row, errbuf)) < 0 ||
	    (rc = stage(conn, &c->st, "tenant.created", c->row, NULL, errbuf)) <
		    0)
		return rc;
	/* brain_stage set the new tenant's scope: back to the platform's */
	if (key && (rc = platform_scope(conn, errbuf)) < 0)
		return rc;
	return brain_once_record(conn, c->once, c->row, errbuf);
}

/* POST /api/admin/tenants - create (Idempotency-Key honoured for 24 h);
   tenant.created. */
void
brain_h_tenants_create(struct cm_req *req, void *arg)
{
	struct brain *b = brain_from(arg);
	struct brain_tenant_input in = { 0 };
	struct brain_once once = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *body = NULL;
	struct create_tx c = { &in, &once, NULL, { 0 } };
	int status = 403, rc = 0, attempt;

	if (!platform_admin(req) ||
	    (status = cm_idem_from_req(req, &once.im)) != 0 ||
	    (status = parse_input(req, true, &body, &in)) != 0)
		goto out;
	if (!in.slug || !in.name) {
		status = cm_req_fail(req, 400, "validation_failed",
				     "fields 'slug' and 'name' are required");
		goto out;
	}
	/* a concurrent create with the same key that committed first makes
	   this one fail on the slug or the key: run again, replaying it */
	for (attempt = 0; attempt < 2; attempt++) {
		cJSON_Delete(c.row);
		c.row = NULL;
		rc = brain_change(b, create_work, &c, &c.st, errbuf);
		if (!cm_idem_raced(&once.im, rc, errbuf))
			break;
	}
	if ((status = brain_once_answer(req, &once)) != 0)
		goto out;
	status = tenant_status(req, once.replayed ? once.status : 201, rc,
			       c.row, errbuf);
out:
	cm_req_reply_json(req, status, status < 400 ? c.row : NULL);
	brain_tenant_input_release(&in);
	cJSON_Delete(body);
	cJSON_Delete(c.row);
}

/* limit, cursor and filters of a list request; 0 or a recorded 400. */
static int
list_query(struct cm_req *req, struct brain_list_query *q)
{
	const char *lim = cm_req_query(req, "limit");
	const char *del = cm_req_query(req, "include_deleted");
	int64_t n = 50;

	memset(q, 0, sizeof(*q));
	if (lim && cm_parse_i64(lim, 1, 100, &n) < 0)
		return cm_req_fail(req, 400, "bad_request",
				   "limit must be 1..100");
	q->limit = (int)n;
	q->status = cm_req_query(req, "status");
	q->tier = cm_req_query(req, "tier");
	q->q = cm_req_query(req, "q");
	q->cursor = cm_req_query(req, "cursor");
	q->include_deleted = del && !strcmp(del, "true");
	if ((q->q && strlen(q->q) > 253) ||
	    (q->cursor && !brain_slug_valid(q->cursor)) ||
	    (q->status && strlen(q->status) > 16) ||
	    (q->tier && strlen(q->tier) > 16))
		return cm_req_fail(req, 400, "bad_request",
				   "bad filter or cursor");
	return 0;
}

/* GET /api/admin/tenants, GET /api/unified-tenants - one page. */
void
brain_h_tenants_list(struct cm_req *req, void *arg)
{
	struct brain_list_query q;
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *items = NULL, *json = NULL, *it;
	int status = 403, rc, n;

	(void)brain_from(arg);
	if (!platform_admin(req) || (status = list_query(req, &q)) != 0)
		goto out;
	rc = brain_store_tenant_list(&q, &items, errbuf);
	if (rc < 0) {
		status = brain_fail_store(req, rc, "tenant list", errbuf);
		goto out;
	}
	cJSON_ArrayForEach(it, items) render_tenant(NULL, it);
	n = cJSON_GetArraySize(items);
	json = cm_json_list(
		items,
		n == q.limit
			? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
				  cJSON_GetArrayItem(items, n - 1), "slug"))
			: NULL);
	items = NULL;
	status = 200;
out:
	cm_req_reply_json(req, status, json);
	cJSON_Delete(items);
	cJSON_Delete(json);
}

/* GET /api/admin/tenants/:id, GET /api/unified-tenants/:id - by id or
   slug, deleted ones included. */
void
brain_h_tenant_get(struct cm_req *req, void *arg)
{
	const char *key = cm_req_param(req, "id");
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *row = NULL;
	int status = 403, rc;

	(void)brain_from(arg);
	if (!platform_admin(req))
		goto out;
	if (strlen(key) > 63 || (!cm_is_uuid(key) && !brain_slug_valid(key)))
		rc = CM_ENOENT;
	else
		rc = brain_store_tenant_get(key, true, &row, errbuf);
	status = tenant_status(req, 200, rc, row, errbuf);
out:
	cm_req_reply_json(req, status, status < 400 ? row : NULL);
	cJSON_Delete(row);
}

struct update_tx {
	const char *id;
	int64_t version;
	const struct brain_tenant_input *in;
	const cJSON *body; /* the changes, for tenant.updated */
	cJSON *row;
	struct brain_staged st;
};

/* The update, tenant.updated and, for a new tier, tenant.plan_changed. */
static int
update_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct update_tx *u = arg;
	char prev_tier[16] = "";
	int rc;

	rc = brain_store_tenant_update(u->id, u->version, u->in, &u->row,
				       prev_tier, errbuf);
	if (rc == 0)
		rc = stage(conn, &u->st, "tenant.updated", u->row, u->body,
			   errbuf);
	if (rc == 0 && u->in->tier && strcmp(u->in->tier, prev_tier))
		rc = stage_plan_changed(conn, &u->st, u->row, prev_tier,
					u->in->tier, errbuf);
	return rc;
}

/* An update of tenant id with If-Match; admin: platform fields allowed.
   Returns the status; *row is the new tenant. */
static int
update_tenant(struct cm_req *req, const struct brain *b, const char *id,
	      bool admin, cJSON **row)
{
	struct brain_tenant_input in = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *body = NULL;
	struct update_tx u = { 0 };
	int64_t version = 0;
	int status, rc;

	rc = if_match_version(req, &version);
	if (rc == CM_ENOENT) {
		status = cm_req_fail(req, 428, "precondition_required",
				     "send If-Match with the tenant's ETag");
		goto out;
	}
	if (rc < 0) {
		status = cm_req_fail(req, 412, "precondition_failed",
				     "If-Match is not a tenant ETag");
		goto out;
	}
	if ((status = parse_input(req, admin, &body, &in)) != 0)
		goto out;
	if (in.status) {
		status = cm_req_fail(req, 400, "validation_failed",
				     "change 'status' with suspend or "
				     "reactivate");
		goto out;
	}
	u.id = id;
	u.version = version;
	u.in = &in;
	u.body = body;
	rc = brain_change(b, update_work, &u, &u.st, errbuf);
	*row = u.row;
	status = tenant_status(req, 200, rc, *row, errbuf);
out:
	brain_tenant_input_release(&in);
	cJSON_Delete(body);
	return status;
}

/* PATCH /api/admin/tenants/:id - update; tenant.updated. */
void
brain_h_tenant_update(struct cm_req *req, void *arg)
{
	struct brain *b = brain_from(arg);
	const char *id = NULL;
	cJSON *row = NULL;
	int status = 403;

	if (!platform_admin(req))
		status = 403;
	else if (!(id = path_id(req)))
		status = 404;
	else
		status = update_tenant(req, b, id, true, &row);
	cm_req_reply_json(req, status, status < 400 ? row : NULL);
	cJSON_Delete(row);
}

typedef int (*tenant_action_fn)(const struct brain *b, const char *id,
				cJSON **row, char errbuf[CM_ERRBUF_LEN]);

/* The optional {"reason": ...} of a suspension; 0 or a recorded 400. */
static int
suspend_reason(struct cm_req *req, cJSON **body, const cJSON **reason)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	const char *data;
	size_t len;
	int status;

	*reason = NULL;
	cm_req_body(req, &data, &len);
	if (!len)
		return 0;
	if ((status = cm_req_json(req, body)) != 0)
		return status;
	if (cm_json_get_str(*body, NULL, "reason", false, 500, NULL, errbuf) ==
	    CM_EINVAL)
		return cm_req_fail(req, 400, "validation_failed", "%s", errbuf);
	*reason = cJSON_GetObjectItemCaseSensitive(*body, "reason");
	return 0;
}

/* A field of row copied into a new "changes" object. */
static cJSON *
changes_of(const cJSON *row, const char *a, const char *b)
{
	cJSON *c = cJSON_CreateObject();

	cJSON_AddItemToObject(c, a,
			      cJSON_Duplicate(cJSON_GetObjectItem(row, a), 1));
	if (b)
		cJSON_AddItemToObject(
			c, b, cJSON_Duplicate(cJSON_GetObjectItem(row, b), 1));
	return c;
}

struct action_tx {
	const struct brain *b;
	const char *id;
	tenant_action_fn fn;
	const char *event;
	const cJSON *reason; /* tenant.suspended's */
	cJSON *row;
	struct brain_staged st;
};

static int
action_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct action_tx *t = arg;
	cJSON *changes = NULL;
	int rc = t->fn(t->b, t->id, &t->row, errbuf);

	if (rc < 0)
		return rc;
	if (!strcmp(t->event, "tenant.updated"))
		changes = changes_of(t->row, "deleted_at", "purge_after");
	rc = stage(conn, &t->st, t->event, t->row,
		   changes ? changes : t->reason, errbuf);
	cJSON_Delete(changes);
	return rc;
}

/* The shape of suspend, reactivate, delete and restore. */
static void
tenant_action(struct cm_req *req, void *arg, tenant_action_fn fn,
	      const char *event)
{
	struct brain *b = brain_from(arg);
	char errbuf[CM_ERRBUF_LEN] = "";
	const cJSON *reason = NULL;
	cJSON *body = NULL, *row = NULL;
	struct action_tx t = { 0 };
	const char *id;
	int status = 403, rc;

	if (!platform_admin(req))
		goto out;
	status = 404;
	if (!(id = path_id(req)))
		goto out;
	if (!strcmp(event, "tenant.suspended") &&
	    (status = suspend_reason(req, &body, &reason)) != 0)
		goto out;
	t.b = b;
	t.id = id;
	t.fn = fn;
	t.event = event;
	t.reason = reason;
	rc = brain_change(b, action_work, &t, &t.st, errbuf);
	row = t.row;
	status = tenant_status(req, 200, rc, row, errbuf);
out:
	cm_req_reply_json(req, status, status < 400 ? row : NULL);
	cJSON_Delete(body);
	cJSON_Delete(row);
}

static int
do_suspend(const struct brain *b, const char *id, cJSON **row,
	   char errbuf[CM_ERRBUF_LEN])
{
	(void)b;
	return brain_store_tenant_set_status(id, "suspended", row, errbuf);
}

static int
do_reactivate(const struct brain *b, const char *id, cJSON **row,
	      char errbuf[CM_ERRBUF_LEN])
{
	(void)b;
	return brain_store_tenant_set_status(id, "active", row, errbuf);
}

static int
do_delete(const struct brain *b, const char *id, cJSON **row,
	  char errbuf[CM_ERRBUF_LEN])
{
	return brain_store_tenant_delete_s(id, brain_delete_grace_s(b), row,
					   errbuf);
}

static int
do_restore(const struct brain *b, const char *id, cJSON **row,
	   char errbuf[CM_ERRBUF_LEN])
{
	(void)b;
	return brain_store_tenant_restore(id, row, errbuf);
}

/* POST /api/admin/tenants/:id/suspend - tenant.suspended. */
void
brain_h_tenant_suspend(struct cm_req *req, void *arg)
{
	tenant_action(req, arg, do_suspend, "tenant.suspended");
}

/* POST /api/admin/tenants/:id/reactivate - tenant.reactivated. */
void
brain_h_tenant_reactivate(struct cm_req *req, void *arg)
{
	tenant_action(req, arg, do_reactivate, "tenant.reactivated");
}

/* DELETE /api/admin/tenants/:id - soft delete; tenant.updated. */
void
brain_h_tenant_delete(struct cm_req *req, void *arg)
{
	tenant_action(req, arg, do_delete, "tenant.updated");
}

/* POST /api/admin/tenants/:id/restore - within the grace period. */
void
brain_h_tenant_restore(struct cm_req *req, void *arg)
{
	tenant_action(req, arg, do_restore, "tenant.updated");
}

enum domain_op {
	DOMAIN_ADD,
	DOMAIN_VERIFY,
	DOMAIN_REMOVE
};

/* The domain of a domain request: the body's for add, else the path's. */
static int
domain_arg(struct cm_req *req, enum domain_op op, cJSON **body,
	   const char **domain)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	int status;

	*domain = cm_req_param(req, "domain");
	if (op == DOMAIN_ADD) {
		if ((status = cm_req_json(req, body)) != 0)
			return status;
		if (cm_json_get_str(*body, NULL, "domain", true, 253, domain,
				    errbuf) < 0)
			return cm_req_fail(req, 400, "validation_failed", "%s",
					   errbuf);
	}
	if (!*domain || !brain_domain_valid(*domain))
		return cm_req_fail(req, 400, "validation_failed",
				   "'domain' must be a lower-case host name");
	return 0;
}

static int
domain_store(enum domain_op op, const char *id, const char *domain,
	     char errbuf[CM_ERRBUF_LEN])
{
	if (op == DOMAIN_ADD)
		return brain_store_domain_add(id, domain, errbuf);
	if (op == DOMAIN_VERIFY)
		return brain_store_domain_verify(id, domain, errbuf);
	return brain_store_domain_remove(id, domain, errbuf);
}

struct domain_tx {
	enum domain_op op;
	const char *id;
	const char *domain;
	cJSON *row;
	struct brain_staged st;
};

/* The domain change, the tenant as it now is, tenant.updated. */
static int
domain_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct domain_tx *d = arg;
	cJSON *changes;
	int rc = domain_store(d->op, d->id, d->domain, errbuf);

	if (rc == 0)
		rc = brain_store_tenant_get(d->id, false, &d->row, errbuf);
	if (rc < 0)
		return rc;
	changes = changes_of(d->row, "domains", NULL);
	rc = stage(conn, &d->st, "tenant.updated", d->row, changes, errbuf);
	cJSON_Delete(changes);
	return rc;
}

static void
domain_action(struct cm_req *req, void *arg, enum domain_op op)
{
	struct brain *b = brain_from(arg);
	char errbuf[CM_ERRBUF_LEN] = "";
	const char *id, *domain = NULL;
	cJSON *body = NULL, *row = NULL;
	struct domain_tx d = { 0 };
	int status = 403, rc;

	if (!platform_admin(req))
		goto out;
	status = 404;
	if (!(id = path_id(req)) ||
	    (status = domain_arg(req, op, &body, &domain)) != 0)
		goto out;
	d.op = op;
	d.id = id;
	d.domain = domain;
	rc = brain_change(b, domain_work, &d, &d.st, errbuf);
	row = d.row;
	if (rc == 0)
		cm_tenant_cache_invalidate(NULL); /* host entries too */
	status = rc < 0 ? brain_fail_store(req, rc, "domain", errbuf)
			: tenant_status(req, op == DOMAIN_ADD ? 201 : 200, rc,
					row, errbuf);
out:
	cm_req_reply_json(req, status, status < 400 ? row : NULL);
	cJSON_Delete(body);
	cJSON_Delete(row);
}

/* POST /api/admin/tenants/:id/domains - add an unverified domain. */
void
brain_h_domain_add(struct cm_req *req, void *arg)
{
	domain_action(req, arg, DOMAIN_ADD);
}

/* POST /api/admin/tenants/:id/domains/:domain/verify - mark verified. */
void
brain_h_domain_verify(struct cm_req *req, void *arg)
{
	domain_action(req, arg, DOMAIN_VERIFY);
}

/* DELETE /api/admin/tenants/:id/domains/:domain */
void
brain_h_domain_remove(struct cm_req *req, void *arg)
{
	domain_action(req, arg, DOMAIN_REMOVE);
}

/* Whether host is domain or a name under it. */
static bool
under_domain(const char *host, const char *domain)
{
	size_t h = strlen(host), d = strlen(domain);

	if (h == d)
		return !strcmp(host, domain);
	return h > d + 1 && host[h - d - 1] == '.' &&
	       !strcmp(host + h - d, domain);
}

/* Why a host did not resolve, as {reason, message}. */
static int
unresolved(const struct brain *b, const char *host, bool tenant_host,
	   cJSON *json, char errbuf[CM_ERRBUF_LEN])
{
	const char *reason, *msg;
	bool verified = false, deleted = false;
	char slug[64];
	int rc = 0;

	if (cm_tenant_host_slug(host, b->domain, slug)) {
		reason = "unknown_slug";
		msg = "no tenant has this slug (or it was deleted)";
	} else if (!tenant_host && under_domain(host, b->domain)) {
		reason = "platform_host";
		msg = "a platform host (the base domain or a reserved "
		      "subdomain) belongs to no tenant";
	} else if ((rc = brain_store_domain_state(host, &verified, &deleted,
						  errbuf)) == CM_ENOENT) {
		rc = 0;
		reason = "unknown_domain";
		msg = "no tenant has added this domain";
	} else {
		reason = deleted ? "tenant_deleted" : "domain_unverified";
		msg = deleted ? "the domain's tenant was deleted"
			      : "the domain is not verified yet";
	}
	cJSON_AddBoolToObject(json, "resolved", false);
	cJSON_AddStringToObject(json, "reason", reason);
	cJSON_AddStringToObject(json, "message", msg);
	return rc;
}

static void
resolved(const struct brain *b, const char *host, const struct cm_tenant *t,
	 cJSON *json)
{
	char slug[64];
	cJSON *tj;
	bool usable =
		strcmp(t->status, "suspended") && strcmp(t->status, "inactive");

	cJSON_AddBoolToObject(json, "resolved", true);
	cJSON_AddStringToObject(json, "source",
				cm_tenant_host_slug(host, b->domain, slug)
					? "subdomain"
					: "custom_domain");
	cJSON_AddBoolToObject(json, "usable", usable);
	if (!usable)
		cJSON_AddStringToObject(json, "reason",
					!strcmp(t->status, "suspended")
						? "tenant_suspended"
						: "tenant_inactive");
	tj = cJSON_AddObjectToObject(json, "tenant");
	cJSON_AddStringToObject(tj, "id", t->id);
	cJSON_AddStringToObject(tj, "slug", t->slug);
	cJSON_AddStringToObject(tj, "name", t->name);
	cJSON_AddStringToObject(tj, "status", t->status);
	cJSON_AddStringToObject(tj, "subscription_tier", t->tier);
}

/* Lower-case host without port into out[256]; false when unusable. */
static bool
normalise_host(const char *in, char out[256])
{
	size_t i, n = in ? strlen(in) : 0;

	if (n == 0 || n > 255)
		return false;
	for (i = 0; i < n && in[i] != ':'; i++)
		out[i] = (char)((in[i] >= 'A' && in[i] <= 'Z') ? in[i] + 32
							       : in[i]);
	out[i] = '\0';
	return i > 0;
}

/* GET /api/unified-tenants/resolve?host= - how a host resolves. */
void
brain_h_resolve(struct cm_req *req, void *arg)
{
	struct brain *b = brain_from(arg);
	char errbuf[CM_ERRBUF_LEN] = "", host[256];
	struct cm_tenant t;
	bool tenant_host = false;
	cJSON *json = NULL;
	int status = 403, rc;

	if (!platform_admin(req))
		goto out;
	if (!normalise_host(cm_req_query(req, "host"), host)) {
		status = cm_req_fail(req, 400, "bad_request",
				     "give ?host= (1..255 bytes)");
		goto out;
	}
	json = cJSON_CreateObject();
	cJSON_AddStringToObject(json, "host", host);
	rc = cm_tenant_lookup_host(host, &t, &tenant_host, errbuf);
	if (rc == 0)
		resolved(b, host, &t, json);
	else if (rc == CM_ENOENT)
		rc = unresolved(b, host, tenant_host, json, errbuf);
	status =
		rc < 0 ? brain_fail_store(req, rc, "host lookup", errbuf) : 200;
out:
	cm_req_reply_json(req, status, status < 400 ? json : NULL);
	cJSON_Delete(json);
}

/* The caller's own tenant for /api/tenant routes: the resolved tenant,
   which must be the one the caller's token names (a super admin may act
   on any). NULL after recording 403. */
const char *
brain_own_tenant(struct cm_req *req, unsigned perm)
{
	const struct cm_principal *p = cm_req_principal(req);
	const char *tid = cm_req_tenant_id(req);

	if (!tid || !p || p->is_service) {
		cm_req_fail(req, 403, "forbidden", "users only");
		return NULL;
	}
	if (strcmp(p->tenant_id, tid) &&
	    !cm_principal_has_role(p, "super_admin")) {
		cm_req_fail(req, 403, "tenant_mismatch",
			    "your sign-in is for another tenant");
		return NULL;
	}
	return brain_allowed(req, perm) ? tid : NULL;
}

/* GET /api/tenant - the caller's tenant. */
void
brain_h_own_get(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	const char *tid;
	cJSON *row = NULL;
	int status = 403, rc;

	(void)brain_from(arg);
	if ((tid = brain_own_tenant(req, BRAIN_PERM_TENANT_READ)) != NULL) {
		rc = brain_store_tenant_get(tid, false, &row, errbuf);
		status = tenant_status(req, 200, rc, row, errbuf);
	}
	cm_req_reply_json(req, status, status < 400 ? row : NULL);
	cJSON_Delete(row);
}

/* PATCH /api/tenant - name, primary_domain, branding, settings. */
void
brain_h_own_update(struct cm_req *req, void *arg)
{
	struct brain *b = brain_from(arg);
	const char *tid;
	cJSON *row = NULL;
	int status = 403;

	if ((tid = brain_own_tenant(req, BRAIN_PERM_TENANT_WRITE)) != NULL)
		status = update_tenant(req, b, tid, false, &row);
	cm_req_reply_json(req, status, status < 400 ? row : NULL);
	cJSON_Delete(row);
}
