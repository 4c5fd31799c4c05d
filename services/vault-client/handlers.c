/*
 * handlers.c - vault-client's HTTP edge for services (/v1): canonicalise
 * the path, apply the policy, audit, then call the store and render.
 * Values never reach a log line or an error message; reply bodies holding
 * values are zeroed after sending. Reads queue their audit row for the
 * group commit (auditq.h) and answer only once it is committed; every
 * other operation writes its row in its own transaction first. Also the
 * helpers the other handler files share (vault_client.h).
 */
#include "vault_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/auth.h"
#include "common/bus.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"

#include "auditq.h"
#include "backend.h"
#include "vault.h"

#include "common/banned.h"

#define LIST_LIMIT_MAX 200
#define LIST_LIMIT_DEF 50
#define FULL_MAX (VC_NAME_MAX + 80)

/* One request's verified target. */
struct call {
	struct cm_req *req;
	struct vc *vc;
	struct vc_path path;
	unsigned op;
	uint64_t ticket; /* the queued audit row (reads with auditq.h) */
	const char *caller;
	char full[FULL_MAX]; /* canonical path, or the sanitised input */
};

struct vc *
vc_of(void *arg)
{
	struct vc *vc = arg;

	if (!vc || vc->magic != VC_MAGIC)
		abort();
	return vc;
}

int
vc_audit(struct cm_req *req, enum vc_scope scope, const char *caller,
	 const char *op, const char *full, bool allowed, const char *reason)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_audit a = { 0 };
	int rc;

	a.scope = scope;
	a.tenant_id = cm_req_tenant_id(req);
	a.caller = caller;
	a.op = op;
	a.path = full;
	a.allowed = allowed;
	a.reason = reason;
	a.request_id = cm_req_id(req);
	if (a.scope == VC_SCOPE_TENANT && !a.tenant_id)
		return CM_EIO;
	rc = vc_store_audit(&a, errbuf);
	if (rc < 0)
		cm_log_err("audit %s %s: %s", a.op, full, errbuf);
	return rc;
}

/* Record the access; 0, or CM_EIO when the record could not be written. */
static int
audit(struct call *c, bool allowed, const char *reason)
{
	return vc_audit(c->req, c->path.scope, c->caller, vc_op_name(c->op),
			c->full, allowed, reason);
}

/* Keep a refused raw path printable and short for the audit record. */
void
vc_sanitise(const char *raw, char *out, size_t n)
{
	size_t i;

	if (raw != out)
		cm_strlcpy(out, raw ? raw : "", n);
	for (i = 0; out[i]; i++)
		if ((unsigned char)out[i] < 0x20 ||
		    (unsigned char)out[i] > 0x7e)
			out[i] = '?';
}

static int
refuse(struct call *c, int status, const char *code, const char *msg)
{
	audit(c, false, code);
	return cm_req_fail(c->req, status, code, "%s", msg);
}

/* Map a canonicalisation failure onto its answer. */
static int
path_refused(struct call *c, int rc)
{
	const char *code, *msg;
	int status = vc_path_refusal(rc, &code, &msg);

	return refuse(c, status, code, msg);
}

/* Queue the allowed row of a read (group commit, auditq.h): the answer
   waits for it (read_finish). A full queue refuses the read. */
static int
queue_allowed(struct call *c)
{
	struct vc_audit a = { 0 };

	a.scope = c->path.scope;
	a.tenant_id = cm_req_tenant_id(c->req);
	a.caller = c->caller;
	a.op = vc_op_name(c->op);
	a.path = c->full;
	a.allowed = true;
	a.reason = "allowed";
	a.request_id = cm_req_id(c->req);
	if (a.scope == VC_SCOPE_TENANT && !a.tenant_id)
		return cm_req_fail(c->req, 503, "audit_unavailable",
				   "the access could not be audited");
	c->ticket = vc_auditq_add(c->vc->auditq, &a);
	if (!c->ticket) {
		cm_log_warn("audit queue full: %s refused", c->full);
		return cm_req_fail(c->req, 503, "audit_unavailable",
				   "the audit log is behind: try again");
	}
	return 0;
}

/* Resolve, authorise and audit; 0 to go on, else the status recorded. */
static int
call_begin(struct call *c, struct cm_req *req, void *arg, enum vc_scope scope,
	   unsigned op)
{
	const char *raw = cm_req_param(req, "*");
	int rc;

	memset(c, 0, sizeof(*c));
	c->req = req;
	c->vc = vc_of(arg);
	c->op = op;
	c->caller = cm_req_principal(req)->sub;
	c->path.scope = scope;
	vc_sanitise(raw, c->full, sizeof(c->full));
	if (scope == VC_SCOPE_PLATFORM && cm_req_header(req, "X-Tenant-ID"))
		return refuse(c, 403, "tenant_context",
			      "platform paths are not reachable from a "
			      "tenant context");
	if (scope == VC_SCOPE_TENANT)
		rc = vc_path_tenant(cm_req_tenant_id(req), raw, &c->path);
	else
		rc = vc_path_platform(raw, &c->path);
	c->path.scope = scope;
	if (rc < 0)
		return path_refused(c, rc);
	vc_path_full(&c->path, c->full, sizeof(c->full));
	if (!vc_policy_allows(c->caller, &c->path, op))
		return refuse(c, 403, "forbidden",
			      "this service may not do that to this path");
	if (op == VC_OP_READ && c->vc->auditq)
		return queue_allowed(c);
	if (audit(c, true, "allowed") < 0)
		return cm_req_fail(req, 503, "audit_unavailable",
				   "the access could not be audited");
	return 0;
}

/* Send a JSON text holding a value, then zero and free it. */
void
vc_reply_secret(struct cm_req *req, char *body, size_t len)
{
	cm_req_reply(req, 200, "application/json", body, len);
	cm_memzero(body, len);
	free(body);
}

/* Zero every string in a tree (values of a request). */
static void
json_zero(cJSON *j)
{
	cJSON *it;

	for (it = j ? j->child : NULL; it; it = it->next) {
		if (cJSON_IsString(it) && it->valuestring)
			cm_memzero(it->valuestring, strlen(it->valuestring));
		else
			json_zero(it);
	}
}

void
vc_json_zero_delete(cJSON *j)
{
	json_zero(j);
	cJSON_Delete(j);
}

/*
 * Tell other services a tenant secret changed (name and version, never
 * the value) so they drop their caches: secret.created / secret.rotated /
 * secret.deleted on the tenant's stream. The change is already committed,
 * so a failure is logged and the other caches expire by their TTL.
 * Platform secrets have no tenant stream and publish nothing.
 */
void
vc_publish_change(const struct vc_path *p, const char *type, int version)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *data, *env;

	if (p->scope != VC_SCOPE_TENANT || strlen(p->name) > 200)
		return;
	data = cJSON_CreateObject();
	cJSON_AddStringToObject(data, "secret_name", p->name);
	if (version > 0)
		cJSON_AddNumberToObject(data, "version", version);
	env = cm_bus_envelope_new(type, "vault-client", "secret", p->name,
				  data);
	if (!env || cm_bus_publish(p->owner, env, NULL, errbuf) < 0)
		cm_log_warn("publish %s for tenants/%s/%s: %s", type, p->owner,
			    p->name, errbuf[0] ? errbuf : "no envelope");
	cJSON_Delete(env);
}

cJSON *
vc_version_json(const struct vc_version *m)
{
	cJSON *j = cJSON_CreateObject();

	cJSON_AddNumberToObject(j, "version", m->version);
	cJSON_AddStringToObject(j, "created_time", m->created_time);
	cJSON_AddStringToObject(j, "deletion_time", m->deletion_time);
	cJSON_AddBoolToObject(j, "destroyed", m->destroyed);
	return j;
}

int
vc_store_failed(struct cm_req *req, const char *op, const char *full, int rc,
		const char *errbuf)
{
	switch (rc) {
	case CM_ENOENT:
		return cm_req_fail(req, 404, "not_found", "no such secret");
	case CM_ESTALE:
		return cm_req_fail(req, 409, "cas_mismatch",
				   "check-and-set parameter did not match the "
				   "current version");
	case CM_E2BIG:
		return cm_req_fail(req, 413, "payload_too_large",
				   "the secret is too large");
	case CM_EINVAL:
		return cm_req_fail(req, 400, "invalid_request",
				   "invalid versions");
	case CM_EIO:
	case CM_ETIMEDOUT:
	case CM_ECONNREFUSED:
		cm_log_err("%s %s: %s", op, full,
			   errbuf[0] ? errbuf : cm_strerror(rc));
		return cm_req_fail(req, 503, "backend_unavailable",
				   "the secret store is unavailable");
	}
	cm_log_err("%s %s: %s", op, full, errbuf[0] ? errbuf : cm_strerror(rc));
	return cm_req_fail(req, 500, "internal", "internal error");
}

/* Map a store error onto the answer (values never in errbuf). */
static int
store_failed(struct call *c, int rc, const char *errbuf)
{
	return vc_store_failed(c->req, vc_op_name(c->op), c->full, rc, errbuf);
}

/* {"data": <value>, "metadata": {...}} as text; NULL if the stored value
   is not JSON (it always is: we wrote it). */
char *
vc_render_secret(const struct vc_secret *s, size_t *len)
{
	cJSON *root = cJSON_CreateObject(), *data;
	char errbuf[CM_ERRBUF_LEN];
	char *text = NULL;

	data = cm_json_parse(s->json, s->len, errbuf);
	if (data) {
		cJSON_AddItemToObject(root, "data", data);
		cJSON_AddItemToObject(root, "metadata",
				      vc_version_json(&s->meta));
		text = cJSON_PrintUnformatted(root);
		*len = text ? strlen(text) : 0;
	}
	vc_json_zero_delete(root);
	return text;
}

int
vc_read_version_param(struct cm_req *req, int *version)
{
	const char *q = cm_req_query(req, "version");
	int64_t v = 0;

	*version = 0;
	if (q && cm_parse_i64(q, 1, INT32_MAX, &v) < 0)
		return cm_req_fail(req, 400, "invalid_version",
				   "version must be a positive integer");
	*version = (int)v;
	return 0;
}

int
vc_deleted_reply(struct cm_req *req, const struct vc_version *m)
{
	if (m->destroyed)
		return cm_req_fail(req, 404, "destroyed",
				   "version %d was destroyed", m->version);
	return cm_req_fail(req, 404, "deleted", "version %d was deleted at %s",
			   m->version, m->deletion_time);
}

/* A read's answer, held until its audit row is committed. */
struct pending_read {
	unsigned magic;
	struct vc *vc;
	uint64_t ticket;
	char *body; /* holds the value; NULL: the recorded status */
	size_t len;
	int status;
};

#define PENDING_MAGIC 0x76637072u /* "vcpr" */

/* Answer by the audit state: written -> the answer, failed -> 503. */
static void
read_answer(struct cm_req *req, int state, char *body, size_t len, int status)
{
	if (state < 0) {
		if (body) {
			cm_memzero(body, len);
			free(body);
		}
		cm_req_fail(req, 503, "audit_unavailable",
			    "the access could not be audited");
		cm_req_reply_json(req, 503, NULL);
	} else if (body) {
		vc_reply_secret(req, body, len);
	} else {
		cm_req_reply_json(req, status, NULL);
	}
}

static void
pending_tick(struct cm_req *req, void *arg)
{
	struct pending_read *p = arg;
	int state;

	if (!p || p->magic != PENDING_MAGIC)
		abort();
	state = vc_auditq_state(p->vc->auditq, p->ticket);
	if (state == 0)
		return;
	p->magic = 0;
	read_answer(req, state, p->body, p->len, p->status);
	free(p);
}

/* Send the answer of a read (body owned, or the recorded status) once
   its audit row is written: deferred, and looked at again each time the
   audit queue signals a written batch (cm_req_wait), so the worker
   serves others meanwhile. */
static void
read_finish(struct cm_req *req, struct call *c, char *body, size_t len,
	    int status)
{
	struct pending_read *p;
	struct cm_req *d = NULL;
	int state = 1;

	if (c->ticket)
		state = vc_auditq_state(c->vc->auditq, c->ticket);
	if (state == 0 && (d = cm_req_defer(req))) {
		p = cm_xcalloc(1, sizeof(*p));
		*p = (struct pending_read){ PENDING_MAGIC, c->vc, c->ticket,
					    body,	   len,	  status };
		if (cm_req_wait(d, pending_tick, p) == 0)
			return;
		free(p);
		req = d;
	}
	while (state == 0) { /* cannot wait: wait here (never seen) */
		struct timespec ts = { 0, 1000000L };

		nanosleep(&ts, NULL);
		state = vc_auditq_state(c->vc->auditq, c->ticket);
	}
	read_answer(req, state, body, len, status);
}

static void
do_read(struct cm_req *req, void *arg, enum vc_scope scope)
{
	struct vc_secret secret = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	struct call c;
	char *body = NULL;
	size_t len = 0;
	uint64_t gen;
	int status, version = 0, rc;

	if ((status = call_begin(&c, req, arg, scope, VC_OP_READ)) ||
	    (status = vc_read_version_param(req, &version)))
		goto out;
	if (vc_cache_get(c.vc->cache, &c.path, version, &body, &len))
		goto out;
	gen = vc_cache_generation(c.vc->cache);
	rc = vc_backend_read(c.vc, &c.path, version, &secret, errbuf);
	if (rc == CM_ENOENT && secret.meta.version) {
		status = vc_deleted_reply(req, &secret.meta);
		goto out;
	}
	if (rc < 0 || !(body = vc_render_secret(&secret, &len))) {
		status = store_failed(&c, rc < 0 ? rc : CM_EIO, errbuf);
		goto out;
	}
	vc_cache_put(c.vc->cache, &c.path, version, body, len, gen);
out:
	vc_secret_release(&secret);
	if (!c.ticket) { /* refused before the queue, or no queue */
		if (body)
			vc_reply_secret(req, body, len);
		else
			cm_req_reply_json(req, status, NULL);
		return;
	}
	read_finish(req, &c, body, len, status);
}

/* The body's "data": an object of at most 100 string members. */
int
vc_write_value(struct cm_req *req, const cJSON *body, char **json, int64_t *cas)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	const cJSON *data = NULL, *it;
	int n = 0;

	*cas = -1;
	if (cm_json_get_object(body, NULL, "data", true, &data, errbuf) < 0 ||
	    cm_json_get_i64(body, NULL, "cas", false, 0, INT32_MAX, cas,
			    errbuf) == CM_EINVAL)
		return cm_req_fail(req, 400, "invalid_request", "%s", errbuf);
	for (it = data->child; it; it = it->next, n++)
		if (!cJSON_IsString(it) || n >= 100)
			return cm_req_fail(req, 400, "invalid_request",
					   "data must be an object of at most "
					   "100 string values");
	*json = cJSON_PrintUnformatted(data);
	if (!*json || strlen(*json) > VC_VALUE_MAX)
		return cm_req_fail(req, 413, "payload_too_large",
				   "the secret is over %d bytes", VC_VALUE_MAX);
	return 0;
}

static void
do_write(struct cm_req *req, void *arg, enum vc_scope scope)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_version meta = { 0 };
	cJSON *body = NULL, *out = NULL;
	char *json = NULL;
	struct call c;
	int64_t cas = -1;
	int status, rc;

	if ((status = call_begin(&c, req, arg, scope, VC_OP_WRITE)) ||
	    (status = cm_req_json(req, &body)) ||
	    (status = vc_write_value(req, body, &json, &cas)))
		goto out;
	rc = vc_backend_write(c.vc, &c.path, json, cas, &meta, errbuf);
	vc_cache_invalidate(c.vc->cache, &c.path);
	if (rc < 0) {
		status = store_failed(&c, rc, errbuf);
		goto out;
	}
	cm_log_info("secret written: %s version %d", c.full, meta.version);
	if (scope == VC_SCOPE_PLATFORM)
		vc_rerender(c.vc, c.path.owner);
	vc_publish_change(&c.path,
			  meta.version == 1 ? "secret.created"
					    : "secret.rotated",
			  meta.version);
	out = vc_version_json(&meta);
	status = 200;
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
	vc_json_zero_delete(body);
	if (json) {
		cm_memzero(json, strlen(json));
		free(json);
	}
}

/* {"versions": [1, 2]}: 1..VC_VERSIONS_MAX positive integers. */
static int
parse_versions(struct cm_req *req, int *versions, int *n)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	const cJSON *arr = NULL, *it;
	cJSON *body = NULL;
	int status;

	*n = 0;
	if ((status = cm_req_json(req, &body)))
		return status;
	if (cm_json_get_array(body, NULL, "versions", true, VC_VERSIONS_MAX,
			      &arr, errbuf) < 0 ||
	    !cJSON_GetArraySize(arr)) {
		status = cm_req_fail(req, 400, "invalid_request",
				     "versions must be a list of 1-%d "
				     "versions",
				     VC_VERSIONS_MAX);
		goto out;
	}
	cJSON_ArrayForEach(it, arr)
	{
		if (!cJSON_IsNumber(it) || it->valuedouble < 1 ||
		    it->valuedouble > INT32_MAX ||
		    it->valuedouble != (double)(int)it->valuedouble) {
			status = cm_req_fail(req, 400, "invalid_request",
					     "versions must be positive "
					     "integers");
			goto out;
		}
		versions[(*n)++] = (int)it->valuedouble;
	}
out:
	cJSON_Delete(body);
	return status;
}

enum vop {
	VOP_DELETE_LATEST,
	VOP_UNDELETE,
	VOP_DESTROY
};

static void
do_versions(struct cm_req *req, void *arg, enum vc_scope scope, enum vop vop)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	int versions[VC_VERSIONS_MAX];
	unsigned op = vop == VOP_DESTROY ? VC_OP_DESTROY : VC_OP_DELETE;
	struct call c;
	int status, n = 0, rc;

	if ((status = call_begin(&c, req, arg, scope, op)))
		goto out;
	if (vop != VOP_DELETE_LATEST &&
	    (status = parse_versions(req, versions, &n)))
		goto out;
	if (vop == VOP_DELETE_LATEST)
		rc = vc_backend_delete(c.vc, &c.path, errbuf);
	else if (vop == VOP_UNDELETE)
		rc = vc_backend_undelete(c.vc, &c.path, versions, n, errbuf);
	else
		rc = vc_backend_destroy(c.vc, &c.path, versions, n, errbuf);
	vc_cache_invalidate(c.vc->cache, &c.path);
	status = rc < 0 ? store_failed(&c, rc, errbuf) : 204;
	if (rc == 0 && scope == VC_SCOPE_PLATFORM)
		vc_rerender(c.vc, c.path.owner);
	if (rc == 0)
		vc_publish_change(&c.path,
				  vop == VOP_UNDELETE ? "secret.rotated"
						      : "secret.deleted",
				  0);
	if (rc == 0)
		cm_log_info("secret %s: %s",
			    vop == VOP_DESTROY	  ? "destroyed"
			    : vop == VOP_UNDELETE ? "undeleted"
						  : "deleted",
			    c.full);
out:
	cm_req_reply_json(req, status, NULL);
}

static void
do_metadata(struct cm_req *req, void *arg, enum vc_scope scope)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *out = NULL;
	struct call c;
	int status, rc;

	if ((status = call_begin(&c, req, arg, scope, VC_OP_META)))
		goto out;
	rc = vc_backend_metadata(c.vc, &c.path, &out, errbuf);
	status = rc < 0 ? store_failed(&c, rc, errbuf) : 200;
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
}

int
vc_list_params(struct cm_req *req, const char **prefix, const char **cursor,
	       int *limit)
{
	const char *l = cm_req_query(req, "limit");
	int64_t v = LIST_LIMIT_DEF;

	*prefix = cm_req_query(req, "prefix");
	*cursor = cm_req_query(req, "cursor");
	if (!*prefix)
		*prefix = "";
	if (!*cursor)
		*cursor = "";
	if (l && cm_parse_i64(l, 1, LIST_LIMIT_MAX, &v) < 0)
		return cm_req_fail(req, 400, "invalid_limit",
				   "limit must be between 1 and %d",
				   LIST_LIMIT_MAX);
	*limit = (int)v;
	if (strlen(*cursor) > VC_NAME_MAX)
		return cm_req_fail(req, 400, "invalid_cursor",
				   "cursor is too long");
	return 0;
}

/* Authorise a list of names under prefix (the "*" parameter, if any,
   names the platform service). */
static int
list_begin(struct call *c, struct cm_req *req, void *arg, enum vc_scope scope,
	   const char *prefix)
{
	const char *svc = cm_req_param(req, "service");

	memset(c, 0, sizeof(*c));
	c->req = req;
	c->vc = vc_of(arg);
	c->op = VC_OP_LIST;
	c->caller = cm_req_principal(req)->sub;
	c->path.scope = scope;
	cm_strlcpy(c->path.owner,
		   scope == VC_SCOPE_TENANT ? cm_req_tenant_id(req) : svc,
		   sizeof(c->path.owner));
	snprintf(c->full, sizeof(c->full), "%s/%s/%s",
		 scope == VC_SCOPE_TENANT ? "tenants" : "platform",
		 c->path.owner, prefix);
	vc_sanitise(c->full, c->full, sizeof(c->full));
	if (scope == VC_SCOPE_PLATFORM && cm_req_header(req, "X-Tenant-ID"))
		return refuse(c, 403, "tenant_context",
			      "platform paths are not reachable from a "
			      "tenant context");
	if (!vc_prefix_valid(prefix) ||
	    (scope == VC_SCOPE_PLATFORM && !vc_name_valid(svc)))
		return refuse(c, 400, "invalid_path",
			      "prefix must be empty or end with /");
	if (!vc_policy_allows_list(c->caller, scope, c->path.owner, prefix))
		return refuse(c, 403, "forbidden",
			      "this service may not list these names");
	if (audit(c, true, "allowed") < 0)
		return cm_req_fail(req, 503, "audit_unavailable",
				   "the access could not be audited");
	return 0;
}

static void
do_list(struct cm_req *req, void *arg, enum vc_scope scope)
{
	char errbuf[CM_ERRBUF_LEN] = "", next[VC_NAME_MAX + 1] = "";
	const char *prefix = "", *cursor = "";
	cJSON *out = NULL, *items = NULL;
	struct call c;
	int status, limit = 0, rc;

	if ((status = vc_list_params(req, &prefix, &cursor, &limit)) ||
	    (status = list_begin(&c, req, arg, scope, prefix)))
		goto out;
	rc = vc_backend_list(c.vc, scope, c.path.owner, prefix, cursor, limit,
			     &items, next, errbuf);
	if (rc < 0) {
		status = store_failed(&c, rc, errbuf);
		goto out;
	}
	out = cm_json_list(items, next);
	status = 200;
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
}

/* GET /v1/backend - which store serves, and for Vault its seal state and
   the token's time to live (brain's /health/vault); never a secret. */
void
vc_handle_backend(struct cm_req *req, void *arg)
{
	struct vc *vc = vc_of(arg);
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_vault_health h;
	cJSON *out = cJSON_CreateObject(), *v;
	bool ok = true;

	cJSON_AddStringToObject(out, "backend", vc->vault ? "vault" : "local");
	if (vc->vault) {
		ok = vc_vault_health(vc->vault, &h, errbuf) == 0;
		v = cJSON_AddObjectToObject(out, "vault");
		cJSON_AddBoolToObject(v, "reachable", h.status != 0);
		cJSON_AddBoolToObject(v, "initialized", h.initialized);
		cJSON_AddBoolToObject(v, "sealed", h.sealed);
		cJSON_AddBoolToObject(v, "standby", h.standby);
		cJSON_AddNumberToObject(
			v, "token_ttl_s",
			(double)(vc_vault_token_ttl_ms(vc->vault) / 1000));
		if (!ok)
			cJSON_AddStringToObject(v, "error", errbuf);
	}
	cJSON_AddBoolToObject(out, "ok", ok);
	cm_req_reply_json(req, 200, out);
	cJSON_Delete(out);
}

/* clang-format off */
#define SCOPED(scope, kind, call)					\
	void vc_handle_##scope##_##kind(struct cm_req *req, void *arg)	\
	{								\
		call;							\
	}
/* clang-format on */

SCOPED(tenant, read, do_read(req, arg, VC_SCOPE_TENANT))
SCOPED(tenant, write, do_write(req, arg, VC_SCOPE_TENANT))
SCOPED(tenant, delete,
       do_versions(req, arg, VC_SCOPE_TENANT, VOP_DELETE_LATEST))
SCOPED(tenant, undelete, do_versions(req, arg, VC_SCOPE_TENANT, VOP_UNDELETE))
SCOPED(tenant, destroy, do_versions(req, arg, VC_SCOPE_TENANT, VOP_DESTROY))
SCOPED(tenant, metadata, do_metadata(req, arg, VC_SCOPE_TENANT))
SCOPED(tenant, list, do_list(req, arg, VC_SCOPE_TENANT))
SCOPED(platform, read, do_read(req, arg, VC_SCOPE_PLATFORM))
SCOPED(platform, write, do_write(req, arg, VC_SCOPE_PLATFORM))
SCOPED(platform, delete,
       do_versions(req, arg, VC_SCOPE_PLATFORM, VOP_DELETE_LATEST))
SCOPED(platform, undelete,
       do_versions(req, arg, VC_SCOPE_PLATFORM, VOP_UNDELETE))
SCOPED(platform, destroy, do_versions(req, arg, VC_SCOPE_PLATFORM, VOP_DESTROY))
SCOPED(platform, metadata, do_metadata(req, arg, VC_SCOPE_PLATFORM))
SCOPED(platform, list, do_list(req, arg, VC_SCOPE_PLATFORM))
