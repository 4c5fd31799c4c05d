/*
 * handlers_user.c - /api/secrets/...: tenant owners and admins manage
 * their own secrets through brain's gateway.
 *
 * brain forwards the path unchanged with a gateway token, which libcommon
 * turns into the user (via "brain", the tenant, the roles, is_api_key).
 * Who may do what is policy.c's vc_user_refusal(); names are canonicalised
 * exactly like the service routes (vc_path_tenant: the name is relative
 * to the verified tenant). Every access, refused or allowed, is audited in
 * the tenant's audit log before anything is looked up; values leave only
 * through the reveal action, which has its own audit op.
 */
#include "vault_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/auth.h"
#include "common/buf.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"

#include "backend.h"
#include "store.h"

#include "common/banned.h"

#define FULL_MAX (VC_NAME_MAX + 80)
#define IDEM_KEY_MAX 255

/* One user request's verified target. */
struct ucall {
	struct cm_req *req;
	struct vc *vc;
	enum vc_user_op op;
	struct vc_path path;
	char caller[80]; /* "user:<id>", "api_key:<id>", "direct:<id>" ... */
	char full[FULL_MAX];
};

/* Who, for the audit record: a gateway user or API key, or what else
   tried (a service, a user token sent directly). */
static void
caller_name(const struct cm_principal *p, char *out, size_t n)
{
	const char *kind = "user";

	if (!p) {
		cm_strlcpy(out, "unknown", n);
		return;
	}
	if (p->is_service)
		kind = "service";
	else if (strcmp(p->via, CM_GATEWAY_ISSUER))
		kind = "direct";
	else if (p->is_api_key)
		kind = "api_key";
	snprintf(out, n, "%s:%s", kind, p->sub);
	vc_sanitise(out, out, n);
}

static int
urefuse(struct ucall *c, int status, const char *code, const char *msg)
{
	vc_audit(c->req, VC_SCOPE_TENANT, c->caller, vc_user_op_name(c->op),
		 c->full, false, code);
	return cm_req_fail(c->req, status, code, "%s", msg);
}

static int
role_refused(struct ucall *c, const char *why)
{
	if (!strcmp(why, "not_via_gateway"))
		return urefuse(c, 403, why,
			       "tenant secrets are managed through brain's "
			       "/api/secrets");
	if (!strcmp(why, "insufficient_scope"))
		return urefuse(c, 403, why,
			       "this API key lacks the secrets scope for "
			       "that (reveal and the audit log are never "
			       "for API keys)");
	return urefuse(c, 403, why,
		       "only tenant owners and admins may do that");
}

static int
upath_refused(struct ucall *c, int rc)
{
	const char *code, *msg;
	int status = vc_path_refusal(rc, &code, &msg);

	return urefuse(c, status, code, msg);
}

/*
 * Authorise and audit: the user rules first (they do not depend on the
 * path), then the name (raw; NULL for list and audit, whose path is the
 * tenant's root or prefix). 0 to go on, else the status recorded.
 */
static int
ucall_begin(struct ucall *c, struct cm_req *req, void *arg, enum vc_user_op op,
	    const char *raw, const char *prefix)
{
	const struct cm_principal *p = cm_req_principal(req);
	const char *tenant = cm_req_tenant_id(req), *why;
	int rc;

	memset(c, 0, sizeof(*c));
	c->req = req;
	c->vc = vc_of(arg);
	c->op = op;
	caller_name(p, c->caller, sizeof(c->caller));
	snprintf(c->full, sizeof(c->full), "tenants/%s/%s",
		 tenant ? tenant : "-",
		 raw	  ? raw
		 : prefix ? prefix
			  : "");
	vc_sanitise(c->full, c->full, sizeof(c->full));
	why = tenant ? vc_user_refusal(p, op) : "not_via_gateway";
	if (why)
		return role_refused(c, why);
	c->path.scope = VC_SCOPE_TENANT;
	cm_strlcpy(c->path.owner, tenant, sizeof(c->path.owner));
	if (raw && (rc = vc_path_tenant(tenant, raw, &c->path)) < 0)
		return upath_refused(c, rc);
	if (raw)
		vc_path_full(&c->path, c->full, sizeof(c->full));
	if (prefix && !vc_prefix_valid(prefix))
		return urefuse(c, 400, "invalid_path",
			       "prefix must be empty or end with /");
	if (vc_audit(req, VC_SCOPE_TENANT, c->caller, vc_user_op_name(op),
		     c->full, true, "allowed") < 0)
		return cm_req_fail(req, 503, "audit_unavailable",
				   "the access could not be audited");
	return 0;
}

static int
ufailed(struct ucall *c, int rc, const char *errbuf)
{
	return vc_store_failed(c->req, vc_user_op_name(c->op), c->full, rc,
			       errbuf);
}

static void
set_etag(struct cm_req *req, int version)
{
	char etag[24];

	snprintf(etag, sizeof(etag), "\"%d\"", version);
	cm_req_set_header(req, "ETag", etag);
}

/* GET /api/secrets/list?prefix=&limit=&cursor= - names, never values. */
void
vc_handle_user_list(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "", next[VC_NAME_MAX + 1] = "";
	const char *prefix = "", *cursor = "";
	cJSON *out = NULL, *items = NULL;
	struct ucall c;
	int status, limit = 0, rc;

	if ((status = vc_list_params(req, &prefix, &cursor, &limit)) ||
	    (status = ucall_begin(&c, req, arg, VC_USER_LIST, NULL, prefix)))
		goto out;
	rc = vc_backend_list(c.vc, VC_SCOPE_TENANT, c.path.owner, prefix,
			     cursor, limit, &items, next, errbuf);
	if (rc < 0) {
		status = ufailed(&c, rc, errbuf);
		goto out;
	}
	out = cm_json_list(items, next);
	status = 200;
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
}

/* GET /api/secrets/metadata/<name> - versions and times; ETag. */
void
vc_handle_user_metadata(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	const cJSON *cur;
	cJSON *out = NULL;
	struct ucall c;
	int status, rc;

	if ((status = ucall_begin(&c, req, arg, VC_USER_META,
				  cm_req_param(req, "*"), NULL)))
		goto out;
	rc = vc_backend_metadata(c.vc, &c.path, &out, errbuf);
	if (rc < 0) {
		status = ufailed(&c, rc, errbuf);
		goto out;
	}
	cur = cJSON_GetObjectItemCaseSensitive(out, "current_version");
	if (cJSON_IsNumber(cur))
		set_etag(req, cur->valueint);
	status = 200;
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
}

/* If-Match: "N" (the metadata's ETag) -> cas N; If-None-Match: * ->
   cas 0 (create only). *precondition tells a mismatch is a 412. */
static int
preconditions(struct cm_req *req, int64_t *cas, bool *precondition)
{
	const char *m = cm_req_header(req, "If-Match");
	const char *none = cm_req_header(req, "If-None-Match");
	char num[16];
	int64_t v = 0;
	size_t n;

	*precondition = false;
	if (none && !strcmp(none, "*")) {
		*cas = 0;
		*precondition = true;
	}
	if (!m)
		return 0;
	n = strlen(m);
	if (n >= 3 && n < sizeof(num) + 2 && m[0] == '"' && m[n - 1] == '"') {
		memcpy(num, m + 1, n - 2);
		num[n - 2] = '\0';
		if (cm_parse_i64(num, 0, INT32_MAX, &v) == 0) {
			*cas = v;
			*precondition = true;
			return 0;
		}
	}
	return cm_req_fail(
		req, 400, "invalid_if_match",
		"If-Match must be the metadata's ETag, \"<version>\"");
}

/* The hash that tells a replay from another request under one key. */
static void
idem_hash(const struct ucall *c, const char *json, int64_t cas,
	  unsigned char out[32])
{
	struct cm_buf b = CM_BUF_INIT(0);

	cm_buf_puts(&b, c->path.name);
	cm_buf_putc(&b, '\0');
	cm_buf_puts(&b, json);
	cm_buf_putc(&b, '\0');
	cm_buf_printf(&b, "%lld", (long long)cas);
	vc_hmac(c->vc->idem_key, sizeof(c->vc->idem_key), b.data, b.len, out);
	cm_memzero(b.data, b.len);
	cm_buf_release(&b);
}

/*
 * Claim the Idempotency-Key: 0 with *claimed set (run the write), or a
 * status: the first answer replayed, 409 for another body under the same
 * key or while the first request still runs, 503 when the store fails.
 */
static int
idem_claim(struct ucall *c, const char *key, const char *json, int64_t cas,
	   bool *claimed)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	unsigned char hash[32];
	enum vc_idem_state state;
	char *response = NULL;
	int status = 0, rc;

	*claimed = false;
	if (!*key || strlen(key) > IDEM_KEY_MAX)
		return cm_req_fail(c->req, 400, "invalid_idempotency_key",
				   "Idempotency-Key must be 1-%d bytes",
				   IDEM_KEY_MAX);
	idem_hash(c, json, cas, hash);
	rc = vc_store_idem_begin(c->path.owner, key, hash, &state, &status,
				 &response, errbuf);
	if (rc < 0)
		return ufailed(c, CM_EIO, errbuf);
	if (state == VC_IDEM_NEW) {
		*claimed = true;
		return 0;
	}
	if (state == VC_IDEM_REPLAY) {
		cm_req_set_header(c->req, "Idempotent-Replayed", "true");
		cm_req_reply(c->req, status, "application/json", response,
			     strlen(response));
		free(response);
		return status;
	}
	return cm_req_fail(c->req, 409, "idempotency_conflict",
			   state == VC_IDEM_MISMATCH
				   ? "this Idempotency-Key was used for "
				     "another request"
				   : "the first request with this "
				     "Idempotency-Key is still running");
}

static void
idem_end(struct ucall *c, const char *key, int status, const cJSON *out)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	char *text = out ? cJSON_PrintUnformatted(out) : NULL;
	int rc;

	if (text)
		rc = vc_store_idem_finish(c->path.owner, key, status, text,
					  errbuf);
	else
		rc = vc_store_idem_abort(c->path.owner, key, errbuf);
	if (rc < 0)
		cm_log_warn("idempotency record for %s: %s", c->full, errbuf);
	free(text);
}

static void
free_value(char *json)
{
	if (json) {
		cm_memzero(json, strlen(json));
		free(json);
	}
}

/* Write the value as a new version; the answer's status. */
static int
user_write(struct ucall *c, const char *json, int64_t cas, bool precondition,
	   cJSON **out)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_version meta = { 0 };
	int rc;

	rc = vc_backend_write(c->vc, &c->path, json, cas, &meta, errbuf);
	vc_cache_invalidate(c->vc->cache, &c->path);
	if (rc == CM_ESTALE && precondition)
		return cm_req_fail(c->req, 412, "precondition_failed",
				   "the secret changed (or exists): read its "
				   "metadata again");
	if (rc < 0)
		return ufailed(c, rc, errbuf);
	cm_log_info("secret written: %s version %d by %s", c->full,
		    meta.version, c->caller);
	vc_publish_change(&c->path,
			  meta.version == 1 ? "secret.created"
					    : "secret.rotated",
			  meta.version);
	*out = vc_version_json(&meta);
	cJSON_AddStringToObject(*out, "name", c->path.name);
	set_etag(c->req, meta.version);
	return meta.version == 1 ? 201 : 200;
}

/* PUT /api/secrets/data/<name> {"data":{...}} - create, or rotate to a
   new version; If-Match / If-None-Match, Idempotency-Key. */
void
vc_handle_user_write(struct cm_req *req, void *arg)
{
	const char *ikey = cm_req_header(req, "Idempotency-Key");
	cJSON *body = NULL, *out = NULL;
	bool precondition = false, claimed = false;
	char *json = NULL;
	struct ucall c;
	int64_t cas = -1;
	int status;

	if ((status = ucall_begin(&c, req, arg, VC_USER_WRITE,
				  cm_req_param(req, "*"), NULL)) ||
	    (status = cm_req_json(req, &body)) ||
	    (status = vc_write_value(req, body, &json, &cas)) ||
	    (status = preconditions(req, &cas, &precondition)))
		goto out;
	if (ikey && (status = idem_claim(&c, ikey, json, cas, &claimed)))
		goto out;
	status = user_write(&c, json, cas, precondition, &out);
	if (claimed)
		idem_end(&c, ikey, status, status < 300 ? out : NULL);
out:
	if (!cm_req_replied(req))
		cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
	vc_json_zero_delete(body);
	free_value(json);
}

/* DELETE /api/secrets/data/<name> - soft-delete the current version. */
void
vc_handle_user_delete(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct ucall c;
	int status, rc;

	if ((status = ucall_begin(&c, req, arg, VC_USER_DELETE,
				  cm_req_param(req, "*"), NULL)))
		goto out;
	rc = vc_backend_delete(c.vc, &c.path, errbuf);
	vc_cache_invalidate(c.vc->cache, &c.path);
	if (rc < 0) {
		status = ufailed(&c, rc, errbuf);
		goto out;
	}
	cm_log_info("secret deleted: %s by %s", c.full, c.caller);
	vc_publish_change(&c.path, "secret.deleted", 0);
	status = 204;
out:
	cm_req_reply_json(req, status, NULL);
}

/* POST /api/secrets/reveal/<name>[?version=N] - the value, audited as
   "reveal"; owners and admins only, never an API key. */
void
vc_handle_user_reveal(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_secret secret = { 0 };
	char *body = NULL;
	struct ucall c;
	size_t len = 0;
	int status, version = 0, rc;

	if ((status = ucall_begin(&c, req, arg, VC_USER_REVEAL,
				  cm_req_param(req, "*"), NULL)) ||
	    (status = vc_read_version_param(req, &version)))
		goto out;
	rc = vc_backend_read(c.vc, &c.path, version, &secret, errbuf);
	if (rc == CM_ENOENT && secret.meta.version) {
		status = vc_deleted_reply(req, &secret.meta);
		goto out;
	}
	if (rc < 0 || !(body = vc_render_secret(&secret, &len))) {
		status = ufailed(&c, rc < 0 ? rc : CM_EIO, errbuf);
		goto out;
	}
	cm_log_info("secret revealed: %s version %d to %s", c.full,
		    secret.meta.version, c.caller);
	vc_reply_secret(req, body, len);
out:
	vc_secret_release(&secret);
	if (!cm_req_replied(req))
		cm_req_reply_json(req, status, NULL);
}

/* GET /api/secrets/audit?limit=&cursor= - the tenant's audit log, newest
   first; who, which path, when, allowed or refused; never a value. */
void
vc_handle_user_audit(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "", next[24] = "";
	const char *prefix = "", *cursor = "";
	cJSON *out = NULL, *items = NULL;
	struct ucall c;
	int64_t before = 0;
	int status, limit = 0, rc;

	if ((status = vc_list_params(req, &prefix, &cursor, &limit)))
		goto out;
	if (*cursor && cm_parse_i64(cursor, 1, INT64_MAX, &before) < 0) {
		status = cm_req_fail(req, 400, "invalid_cursor",
				     "cursor is not one this API gave");
		goto out;
	}
	if ((status = ucall_begin(&c, req, arg, VC_USER_AUDIT, NULL, "")))
		goto out;
	rc = vc_store_audit_list(c.path.owner, before, limit, &items, next,
				 errbuf);
	if (rc < 0) {
		status = ufailed(&c, CM_EIO, errbuf);
		goto out;
	}
	out = cm_json_list(items, next);
	status = 200;
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
}
