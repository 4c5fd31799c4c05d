/*
 * handlers_webhooks.c - /api/events/webhooks: subscriptions and their
 * deliveries, for the caller's tenant only (another tenant's id is a 404).
 *
 * Reading needs a tenant member (or an API key with events:read);
 * creating, changing and deleting need the owner or admin role (or
 * events:write). A URL must pass the SSRF guard at create and update
 * time: the static check (scheme, no credentials, no literal private
 * address) and, when its name resolves now, every address it resolves to;
 * the delivery threads check again at connect time (DNS can change).
 */
#include "evbus.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "common/auth.h"
#include "common/http.h"
#include "common/httpclient.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"

#include "common/banned.h"

#define ROTATE_GRACE_HOURS 24	   /* the old secret's default grace */
#define ROTATE_GRACE_MAX_HOURS 168 /* a week */

#define LIST_DEFAULT 50
#define LIST_MAX 200
#define DESCRIPTION_MAX 500
#define URL_MAX 2048
#define IDEM_KEY_MAX 128

/* 0 when the caller may read (write false) or manage webhooks, else the
   status after cm_req_fail. */
static int
allowed(struct cm_req *req, bool write)
{
	const struct cm_principal *p = cm_req_principal(req);

	if ((p && p->is_api_key) || !write) {
		if (bus_scope_ok(p, write ? "write" : "read"))
			return 0;
		return cm_req_fail(req, 403, "forbidden",
				   "this API key needs the scope events:%s",
				   write ? "write" : "read");
	}
	if (p && (p->is_service || cm_principal_has_role(p, "owner") ||
		  cm_principal_has_role(p, "admin") ||
		  cm_principal_has_role(p, "super_admin")))
		return 0;
	return cm_req_fail(req, 403, "forbidden",
			   "managing webhooks needs the owner or admin role");
}

/* Set the ETag from the row's "version" and take it out of the body. */
static void
set_etag(struct cm_req *req, cJSON *row)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, "version");

	if (cJSON_IsNumber(v))
		cm_req_set_etag(req, (int64_t)v->valuedouble);
	cJSON_DeleteItemFromObjectCaseSensitive(row, "version");
}

/* The answer for a store result that is not 0. */
static int
store_fail(struct cm_req *req, int rc, const char *what, const char *errbuf)
{
	if (rc == CM_ENOENT)
		return cm_req_fail(req, 404, "not_found", "no such %s", what);
	if (rc == CM_ESTALE)
		return cm_req_fail(req, 412, "precondition_failed",
				   "the %s changed since that ETag; read it "
				   "again",
				   what);
	if (rc == CM_EINVAL)
		return cm_req_fail(req, 400, "bad_cursor", "bad cursor");
	cm_log_err("webhooks: %s", errbuf);
	return 500;
}

/* The status for a store call that read back one webhook (out): 200 with
   its ETag, or the failure's. */
static int
webhook_read(struct cm_req *req, int rc, cJSON *out, const char *errbuf)
{
	if (rc < 0)
		return store_fail(req, rc, "webhook", errbuf);
	set_etag(req, out);
	return 200;
}

/* Every address host resolves to (if it resolves now) must pass the
   guard; a name that does not resolve is left to delivery time. */
static int
resolved_ok(const char *host, const char *allow)
{
	struct addrinfo hints = { 0 }, *res = NULL, *ai;
	int rc = 0;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, NULL, &hints, &res) != 0)
		return 0;
	for (ai = res; ai && rc == 0; ai = ai->ai_next) {
		if (!cm_addr_is_public(ai->ai_addr) &&
		    !cm_addr_in_cidrs(ai->ai_addr, allow))
			rc = CM_EACCES;
	}
	freeaddrinfo(res);
	return rc;
}

/* The URL against the guard; 0 or the status after cm_req_fail. */
static int
check_url(struct cm_req *req, const struct bus *bus, const char *url)
{
	char errbuf[CM_ERRBUF_LEN] = "", *host = NULL;
	CURLU *u = NULL;
	int rc;

	rc = cm_url_check_user_allow(url, bus->webhook_allow_cidrs, errbuf);
	if (rc == 0 && (u = curl_url()) &&
	    curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    host[0] != '[')
		rc = resolved_ok(host, bus->webhook_allow_cidrs);
	curl_free(host);
	curl_url_cleanup(u);
	if (rc == CM_EACCES)
		return cm_req_fail(req, 400, "url_not_allowed",
				   "field 'url' points to a private, loopback "
				   "or link-local address");
	if (rc < 0)
		return cm_req_fail(req, 400, "validation_failed",
				   "field 'url': %s", errbuf);
	return 0;
}

static bool
known_field(const char *name)
{
	static const char *const fields[] = { "url", "event_types",
					      "description", "active", NULL };
	int i;

	for (i = 0; fields[i]; i++)
		if (strcmp(fields[i], name) == 0)
			return true;
	return false;
}

/* Read a create (all required) or an update; 0 or a recorded 400. */
static int
parse_input(struct cm_req *req, const struct bus *bus, const cJSON *body,
	    bool create, struct bus_webhook_input *in)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	const cJSON *it;
	bool active;
	int rc;

	in->active = -1;
	cJSON_ArrayForEach(it, body)
	{
		if (!known_field(it->string))
			return cm_req_fail(req, 400, "validation_failed",
					   "field '%.64s' is not allowed",
					   it->string);
	}
	if ((rc = cm_json_get_str(body, NULL, "url", create, URL_MAX, &in->url,
				  errbuf)) == CM_EINVAL ||
	    (rc = cm_json_get_array(body, NULL, "event_types", create,
				    CM_BUS_MAX_PATTERNS, &in->event_types,
				    errbuf)) == CM_EINVAL ||
	    (rc = cm_json_get_str(body, NULL, "description", false,
				  DESCRIPTION_MAX, &in->description, errbuf)) ==
		    CM_EINVAL ||
	    (rc = cm_json_get_bool(body, NULL, "active", false, &active,
				   errbuf)) == CM_EINVAL)
		return cm_req_fail(req, 400, "validation_failed", "%s", errbuf);
	if (rc == 0)
		in->active = active;
	if (in->event_types &&
	    bus_webhook_check_patterns(in->event_types, errbuf) < 0)
		return cm_req_fail(req, 400, "validation_failed", "%s", errbuf);
	return in->url ? check_url(req, bus, in->url) : 0;
}

/* limit and cursor of a list; 0 or a recorded 400. */
static int
page_query(struct cm_req *req, int *limit, const char **cursor)
{
	const char *lim = cm_req_query(req, "limit");
	int64_t n = LIST_DEFAULT;

	if (lim && cm_parse_i64(lim, 1, LIST_MAX, &n) < 0)
		return cm_req_fail(req, 400, "bad_request",
				   "limit must be an integer 1..%d", LIST_MAX);
	*limit = (int)n;
	*cursor = cm_req_query(req, "cursor");
	if (*cursor && !bus_cursor_ok(*cursor))
		return cm_req_fail(req, 400, "bad_cursor", "bad cursor");
	return 0;
}

/* GET /api/events/webhooks - the tenant's subscriptions, newest first. */
void
bus_handle_wh_list(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	const char *cursor = NULL;
	cJSON *out = NULL, *it;
	int status, limit = 0, rc;

	(void)arg;
	if ((status = allowed(req, false)) != 0 ||
	    (status = page_query(req, &limit, &cursor)) != 0)
		goto out;
	rc = bus_wh_list(cm_req_tenant_id(req), cursor, limit, &out, errbuf);
	if (rc < 0) {
		status = store_fail(req, rc, "webhook", errbuf);
		goto out;
	}
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(out, "items"))
		cJSON_DeleteItemFromObjectCaseSensitive(it, "version");
	status = 200;
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
}

/* Idempotency-Key (1..128 visible characters) and the body's hash; 0 or
   a recorded 400. */
static int
idem_prepare(struct cm_req *req, struct bus_idem *im)
{
	const char *h = cm_req_header(req, "Idempotency-Key");
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	const char *data;
	size_t len, j;

	memset(im, 0, sizeof(*im));
	if (!h)
		return 0;
	for (j = 0; h[j] && j <= IDEM_KEY_MAX; j++)
		if ((unsigned char)h[j] < 0x21 || (unsigned char)h[j] > 0x7e)
			break;
	if (j == 0 || j > IDEM_KEY_MAX || h[j])
		return cm_req_fail(req, 400, "bad_request",
				   "Idempotency-Key must be 1..%d visible "
				   "characters",
				   IDEM_KEY_MAX);
	cm_req_body(req, &data, &len);
	if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL))
		return 500;
	cm_hex_encode(md, n < 32 ? n : 32, im->hash);
	im->key = h;
	return 0;
}

/* POST /api/events/webhooks - a new subscription; its secret is in this
   answer only (and in a repeat of it under the same Idempotency-Key). */
void
bus_handle_wh_create(struct cm_req *req, void *arg)
{
	struct bus *bus = arg;
	struct bus_webhook_input in = { 0 };
	struct bus_idem im;
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *body = NULL, *out = NULL;
	bool replayed = false;
	int status, rc;

	if ((status = allowed(req, true)) != 0 ||
	    (status = idem_prepare(req, &im)) != 0 ||
	    (status = cm_req_json(req, &body)) != 0 ||
	    (status = parse_input(req, bus, body, true, &in)) != 0)
		goto out;
	rc = bus_wh_create(cm_req_tenant_id(req), &in, &im,
			   bus->webhook_max_per_tenant, &out, &replayed,
			   errbuf);
	if (rc == CM_EEXIST)
		status = cm_req_fail(req, 422, "idempotency_key_reused",
				     "this Idempotency-Key came with another "
				     "body");
	else if (rc == CM_E2BIG)
		status = cm_req_fail(req, 409, "limit_exceeded", "%s", errbuf);
	else if (rc < 0)
		status = store_fail(req, rc, "webhook", errbuf);
	else
		status = 201;
	if (status == 201) {
		set_etag(req, out);
		if (replayed)
			cm_req_set_header(req, "Idempotent-Replayed", "true");
	}
out:
	cm_req_reply_json(req, status, status == 201 ? out : NULL);
	cJSON_Delete(out);
	cJSON_Delete(body);
}

/* GET /api/events/webhooks/:id */
void
bus_handle_wh_get(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *out = NULL;
	int status, rc;

	(void)arg;
	if ((status = allowed(req, false)) != 0)
		goto out;
	rc = bus_wh_get(cm_req_tenant_id(req), cm_req_param(req, "id"), &out,
			errbuf);
	status = webhook_read(req, rc, out, errbuf);
out:
	cm_req_reply_json(req, status, status == 200 ? out : NULL);
	cJSON_Delete(out);
}

/* The If-Match of an update (required); 0 or a recorded 412/428. */
static int
required_if_match(struct cm_req *req, int64_t *version)
{
	int rc = cm_req_if_match(req, version);

	if (rc == CM_ENOENT)
		return cm_req_fail(req, 428, "precondition_required",
				   "send If-Match with the webhook's ETag");
	if (rc < 0)
		return cm_req_fail(req, 412, "precondition_failed",
				   "If-Match is not a webhook ETag");
	return 0;
}

/* An optional If-Match: *version 0 when absent; 0 or a recorded 412. */
static int
optional_if_match(struct cm_req *req, int64_t *version)
{
	if (cm_req_if_match(req, version) == CM_EINVAL)
		return cm_req_fail(req, 412, "precondition_failed",
				   "If-Match is not a webhook ETag");
	return 0;
}

/* PATCH /api/events/webhooks/:id - url, event_types, description,
   active; If-Match required (428 without, 412 when stale). */
void
bus_handle_wh_update(struct cm_req *req, void *arg)
{
	struct bus *bus = arg;
	struct bus_webhook_input in = { 0 };
	const char *id = cm_req_param(req, "id");
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *body = NULL, *out = NULL, *cur = NULL;
	int64_t version = 0;
	int status, rc;

	if ((status = allowed(req, true)) != 0 ||
	    (status = required_if_match(req, &version)) != 0 ||
	    (status = cm_req_json(req, &body)) != 0 ||
	    (status = parse_input(req, bus, body, false, &in)) != 0)
		goto out;
	if (version == 0) { /* If-Match: * - whatever version is there now */
		rc = bus_wh_get(cm_req_tenant_id(req), id, &cur, errbuf);
		if (rc == 0)
			version = (int64_t)cJSON_GetNumberValue(
				cJSON_GetObjectItem(cur, "version"));
	}
	rc = bus_wh_update(cm_req_tenant_id(req), id, version, &in, &out,
			   errbuf);
	status = webhook_read(req, rc, out, errbuf);
out:
	cm_req_reply_json(req, status, status == 200 ? out : NULL);
	cJSON_Delete(out);
	cJSON_Delete(cur);
	cJSON_Delete(body);
}

/* DELETE /api/events/webhooks/:id - If-Match optional (412 when stale);
   its pending deliveries go with it. */
void
bus_handle_wh_delete(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	int64_t version = 0;
	int status, rc;

	(void)arg;
	if ((status = allowed(req, true)) != 0 ||
	    (status = optional_if_match(req, &version)) != 0)
		goto out;
	rc = bus_wh_delete(cm_req_tenant_id(req), cm_req_param(req, "id"),
			   version, errbuf);
	status = rc < 0 ? store_fail(req, rc, "webhook", errbuf) : 204;
out:
	cm_req_reply_json(req, status, NULL);
}

/* POST /api/events/webhooks/:id/rotate-secret - a new secret, in this
   answer only; the old one keeps signing too (a second signature) for
   grace_hours (body, optional: 0..168, default 24). If-Match optional
   (412 when stale). */
void
bus_handle_wh_rotate(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *body = NULL, *out = NULL;
	int64_t version = 0, hours = ROTATE_GRACE_HOURS;
	const char *data;
	size_t len;
	int status, rc;

	(void)arg;
	if ((status = allowed(req, true)) != 0 ||
	    (status = optional_if_match(req, &version)) != 0)
		goto out;
	cm_req_body(req, &data, &len);
	if (len && (status = cm_req_json(req, &body)) != 0)
		goto out;
	if (body && (!cJSON_IsObject(body) ||
		     cm_json_get_i64(body, NULL, "grace_hours", false, 0,
				     ROTATE_GRACE_MAX_HOURS, &hours,
				     errbuf) == CM_EINVAL)) {
		status = cm_req_fail(req, 400, "validation_failed", "%s",
				     errbuf[0] ? errbuf
					       : "the body must be an object");
		goto out;
	}
	rc = bus_wh_rotate(cm_req_tenant_id(req), cm_req_param(req, "id"),
			   version, hours * 3600, &out, errbuf);
	status = webhook_read(req, rc, out, errbuf);
out:
	cm_req_reply_json(req, status, status == 200 ? out : NULL);
	cJSON_Delete(out);
	cJSON_Delete(body);
}

/* GET /api/events/webhooks/:id/deliveries - newest first, each with its
   attempts; ?status=pending|succeeded|dead. */
void
bus_handle_wh_deliveries(struct cm_req *req, void *arg)
{
	const char *st = cm_req_query(req, "status"), *cursor = NULL;
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *out = NULL;
	int status, limit = 0, rc;

	(void)arg;
	if ((status = allowed(req, false)) != 0 ||
	    (status = page_query(req, &limit, &cursor)) != 0)
		goto out;
	if (st && strcmp(st, "pending") && strcmp(st, "succeeded") &&
	    strcmp(st, "dead")) {
		status = cm_req_fail(req, 400, "bad_request",
				     "status must be pending, succeeded or "
				     "dead");
		goto out;
	}
	rc = bus_wh_deliveries(cm_req_tenant_id(req), cm_req_param(req, "id"),
			       st, cursor, limit, &out, errbuf);
	status = rc < 0 ? store_fail(req, rc, "webhook", errbuf) : 200;
out:
	cm_req_reply_json(req, status, status == 200 ? out : NULL);
	cJSON_Delete(out);
}

/* POST /api/events/webhooks/:id/deliveries/:delivery_id/retry - a dead
   delivery is tried again now, with a fresh schedule. */
void
bus_handle_wh_delivery_retry(struct cm_req *req, void *arg)
{
	struct bus *bus = arg;
	char errbuf[CM_ERRBUF_LEN] = "";
	int status, rc;

	if ((status = allowed(req, true)) != 0)
		goto out;
	rc = bus_wh_delivery_retry(cm_req_tenant_id(req),
				   cm_req_param(req, "id"),
				   cm_req_param(req, "delivery_id"), errbuf);
	if (rc == CM_EEXIST)
		status = cm_req_fail(req, 409, "conflict",
				     "only a dead delivery can be retried");
	else
		status = rc < 0 ? store_fail(req, rc, "delivery", errbuf) : 202;
	if (status == 202)
		bus_webhooks_kick(bus->webhooks);
out:
	cm_req_reply_json(req, status, NULL);
}
