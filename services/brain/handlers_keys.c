/*
 * handlers_keys.c - API keys: created by a tenant's owner or admin, shown
 * once, stored as a SHA-256 hash, scoped, expiring; and the authenticator
 * that turns "Authorization: Bearer bz_live_..." into a principal.
 */
#include "brain.h"

#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

#define KEY_MAX 96 /* longer "keys" are refused unread */
#define DISPLAY_PREFIX 12

/* Copy the scopes array of a key row into p's roles. */
static void
scopes_to_roles(const cJSON *scopes, struct cm_principal *p)
{
	const cJSON *it;

	cJSON_ArrayForEach(it, scopes)
	{
		if (p->nroles >= CM_ROLES_MAX || !cJSON_IsString(it))
			break;
		cm_strlcpy(p->roles[p->nroles++], it->valuestring, CM_ROLE_LEN);
	}
}

int
brain_authenticate(struct cm_req *req, const char *token,
		   struct cm_principal *out, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "", hash[BRAIN_SHA256_HEX];
	const cJSON *exp;
	cJSON *row = NULL;
	int rc;

	(void)req;
	(void)brain_from(arg);
	if (strncmp(token, BRAIN_KEY_PREFIX, strlen(BRAIN_KEY_PREFIX)))
		return CM_ENOENT;
	if (strlen(token) > KEY_MAX)
		return CM_EACCES;
	brain_sha256_hex(token, hash);
	rc = brain_store_key_auth(hash, &row, errbuf);
	if (rc < 0) {
		if (rc != CM_ENOENT)
			cm_log_err("api key lookup: %s", errbuf);
		return CM_EACCES;
	}
	memset(out, 0, sizeof(*out));
	snprintf(out->sub, sizeof(out->sub), "key:%.36s",
		 cJSON_GetStringValue(cJSON_GetObjectItem(row, "id")));
	cm_strlcpy(out->tenant_id,
		   cJSON_GetStringValue(cJSON_GetObjectItem(row, "tenant_id")),
		   sizeof(out->tenant_id));
	scopes_to_roles(cJSON_GetObjectItem(row, "scopes"), out);
	exp = cJSON_GetObjectItem(row, "exp");
	out->exp = cJSON_IsNumber(exp) ? (int64_t)exp->valuedouble : 0;
	out->is_api_key = true;
	cJSON_Delete(row);
	return 0;
}

/* Keys are managed by people: an API key never mints or lists keys. */
static const char *
key_admin_tenant(struct cm_req *req)
{
	const struct cm_principal *p = cm_req_principal(req);

	if (p && p->is_api_key) {
		cm_req_fail(req, 403, "forbidden",
			    "API keys cannot manage API keys");
		return NULL;
	}
	return brain_own_tenant(req, BRAIN_PERM_KEYS_WRITE);
}

struct key_input {
	const char *name;
	char *scopes;
	int64_t ttl_s;
};

static int
parse_key(const cJSON *body, struct key_input *in, char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *scopes = NULL;
	int64_t days = 0;

	if (cm_json_get_str(body, NULL, "name", true, 100, &in->name, errbuf) <
		    0 ||
	    cm_json_get_array(body, NULL, "scopes", true, CM_ROLES_MAX, &scopes,
			      errbuf) < 0 ||
	    cm_json_get_i64(body, NULL, "expires_in_days", false, 1, 3650,
			    &days, errbuf) == CM_EINVAL)
		return CM_EINVAL;
	if (!in->name[0]) {
		snprintf(errbuf, CM_ERRBUF_LEN, "field 'name' is empty");
		return CM_EINVAL;
	}
	in->ttl_s = days * 86400;
	return brain_scopes_parse(scopes, &in->scopes, errbuf);
}

/* The new key and its row; the key goes into the answer once. */
static int
create_key(const char *tid, const char *creator, const struct key_input *in,
	   struct brain_once *once, cJSON **out, char errbuf[CM_ERRBUF_LEN])
{
	char key[BRAIN_TOKEN_LEN], hash[BRAIN_SHA256_HEX];
	char prefix[DISPLAY_PREFIX + 1];
	int rc;

	if ((rc = brain_random_token(BRAIN_KEY_PREFIX, key, sizeof(key))) < 0) {
		snprintf(errbuf, CM_ERRBUF_LEN, "no randomness");
		return rc;
	}
	brain_sha256_hex(key, hash);
	cm_strlcpy(prefix, key, sizeof(prefix));
	rc = brain_store_key_create(tid, in->name, prefix, hash, in->scopes,
				    cm_is_uuid(creator) ? creator : NULL,
				    in->ttl_s, once, out, errbuf);
	if (rc == 0 && !once->replayed) /* a replay never shows it */
		cJSON_AddStringToObject(*out, "key", key);
	cm_memzero(key, sizeof(key));
	return rc;
}

/* POST /api/tenant/api-keys - 201 with the key, shown this once. */
void
brain_h_keys_create(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct key_input in = { 0 };
	struct brain_once once = { 0 };
	cJSON *body = NULL, *row = NULL;
	const char *tid;
	int status = 403, rc;

	(void)brain_from(arg);
	if (!(tid = key_admin_tenant(req)) ||
	    (status = cm_idem_from_req(req, &once.im)) != 0 ||
	    (status = cm_req_json(req, &body)) != 0)
		goto out;
	if (parse_key(body, &in, errbuf) < 0) {
		status = cm_req_fail(req, 400, "validation_failed", "%s",
				     errbuf);
		goto out;
	}
	rc = create_key(tid, cm_req_principal(req)->sub, &in, &once, &row,
			errbuf);
	if ((status = brain_once_answer(req, &once)) != 0)
		goto out;
	if (rc < 0)
		status = brain_fail_store(req, rc, "api key", errbuf);
	else
		status = once.replayed ? once.status : 201;
out:
	cm_req_reply_json(req, status, status < 400 ? row : NULL);
	cJSON_Delete(body);
	cJSON_Delete(row);
	free(in.scopes);
}

/* GET /api/tenant/api-keys - one page of the tenant's keys, never the
   secrets. */
void
brain_h_keys_list(struct cm_req *req, void *arg)
{
	(void)brain_from(arg);
	brain_reply_page(req, key_admin_tenant(req), brain_store_key_page,
			 "api keys");
}

/* DELETE /api/tenant/api-keys/:id - revoke at once. */
void
brain_h_keys_revoke(struct cm_req *req, void *arg)
{
	(void)brain_from(arg);
	brain_reply_revoke(req, key_admin_tenant(req), brain_store_key_revoke,
			   "api key");
}
