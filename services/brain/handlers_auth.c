/*
 * handlers_auth.c - sign-in: login, refresh (rotation with reuse
 * detection), logout (jti revocation), me, switch-tenant; and the
 * bootstrap of the first super admin.
 */
#include "brain.h"

#include "common/service.h"

#include "common/buf.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

#define FAIL_PREFIX "bz:brain:login-fail:"

/* Signed access token for a grant; *out malloc'd. */
static int
sign_access(const struct brain *b, const struct brain_grant *g, char **out,
	    char errbuf[CM_ERRBUF_LEN])
{
	cJSON *c = cJSON_CreateObject(), *roles;
	int64_t now = cm_now_s();
	char jti[37];
	char *text;
	int rc;

	if (cm_uuid_v4(jti) < 0) {
		cJSON_Delete(c);
		snprintf(errbuf, CM_ERRBUF_LEN, "no randomness");
		return CM_EIO;
	}
	cJSON_AddStringToObject(c, "sub", g->user_id);
	if (g->tenant_id[0])
		cJSON_AddStringToObject(c, "tenant_id", g->tenant_id);
	roles = cJSON_AddArrayToObject(c, "roles");
	if (g->role[0])
		cJSON_AddItemToArray(roles, cJSON_CreateString(g->role));
	if (g->super_admin)
		cJSON_AddItemToArray(roles, cJSON_CreateString("super_admin"));
	cJSON_AddStringToObject(c, "jti", jti);
	cJSON_AddStringToObject(c, "iss", b->issuer);
	cJSON_AddStringToObject(c, "aud", b->audience);
	cJSON_AddNumberToObject(c, "iat", (double)now);
	cJSON_AddNumberToObject(c, "exp", (double)(now + BRAIN_ACCESS_TTL_S));
	text = cm_json_print(c);
	rc = cm_jwt_sign(b->alg, (const unsigned char *)b->jwt_key,
			 strlen(b->jwt_key), text, out, errbuf);
	free(text);
	cJSON_Delete(c);
	return rc;
}

/* Access + refresh tokens for g; family NULL starts a new family. The
   answer object goes to *out. */
static int
issue_tokens(const struct brain *b, const struct brain_grant *g,
	     const char *family, cJSON **out, char errbuf[CM_ERRBUF_LEN])
{
	char refresh[BRAIN_TOKEN_LEN], hash[BRAIN_SHA256_HEX], fam[37];
	char *access = NULL;
	int rc;

	if (!family && cm_uuid_v4(fam) < 0)
		return CM_EIO;
	if ((rc = brain_random_token("bzr_", refresh, sizeof(refresh))) < 0 ||
	    (rc = sign_access(b, g, &access, errbuf)) < 0)
		goto out;
	brain_sha256_hex(refresh, hash);
	rc = brain_store_refresh_insert(hash, family ? family : fam, g->user_id,
					g->tenant_id, b->refresh_ttl_s, errbuf);
	if (rc < 0)
		goto out;
	*out = cJSON_CreateObject();
	cJSON_AddStringToObject(*out, "access_token", access);
	cJSON_AddStringToObject(*out, "token_type", "Bearer");
	cJSON_AddNumberToObject(*out, "expires_in", BRAIN_ACCESS_TTL_S);
	cJSON_AddStringToObject(*out, "refresh_token", refresh);
	cJSON_AddNumberToObject(*out, "refresh_expires_in",
				(double)b->refresh_ttl_s);
	cJSON_AddStringToObject(*out, "user_id", g->user_id);
	if (g->tenant_id[0])
		cJSON_AddStringToObject(*out, "tenant_id", g->tenant_id);
	else
		cJSON_AddNullToObject(*out, "tenant_id");
	cJSON_AddStringToObject(*out, "role", g->role);
	cJSON_AddBoolToObject(*out, "super_admin", g->super_admin);
out:
	cm_memzero(refresh, sizeof(refresh));
	if (access)
		cm_memzero(access, strlen(access));
	free(access);
	return rc;
}

/* Failed-login counters: per account (hash of the lower-cased email, so
   unknown accounts count the same) and per address. */
static void
fail_keys(struct cm_req *req, const char *email, char acct[128], char addr[128])
{
	char lower[256], hash[BRAIN_SHA256_HEX];
	size_t i;

	for (i = 0; email[i] && i < sizeof(lower) - 1; i++)
		lower[i] = (char)((email[i] >= 'A' && email[i] <= 'Z')
					  ? email[i] + 32
					  : email[i]);
	lower[i] = '\0';
	brain_sha256_hex(lower, hash);
	snprintf(acct, 128, FAIL_PREFIX "acct:%s", hash);
	snprintf(addr, 128, FAIL_PREFIX "addr:%.64s", cm_req_peer(req));
}

/* A failure counter and its remaining lifetime; CM_EIO when Redis does
   not answer. A counter left without a lifetime (its EXPIRE was lost)
   gets one here, so no account stays locked for good. */
static int
counter(const char *key, int64_t window, int64_t *val, int64_t *ttl)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	redisReply *r = cm_redis_cmdf(errbuf, "GET %s", key);

	*val = 0;
	*ttl = 1;
	if (!r) {
		cm_log_warn("login throttle: %s", errbuf);
		return CM_EIO;
	}
	if (r->type == REDIS_REPLY_STRING)
		cm_parse_i64(r->str, 0, INT64_MAX, val);
	freeReplyObject(r);
	r = *val ? cm_redis_cmdf(errbuf, "TTL %s", key) : NULL;
	if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0)
		*ttl = r->integer;
	if (r && r->type == REDIS_REPLY_INTEGER && r->integer == -1) {
		freeReplyObject(r);
		r = cm_redis_cmdf(errbuf, "EXPIRE %s %lld", key,
				  (long long)window);
		*ttl = window;
	}
	if (r)
		freeReplyObject(r);
	return 0;
}

/* 0, or 429 after recording it, when either counter is at its limit;
   503 when the counters cannot be read (fail closed: no unthrottled
   guessing while Redis is away). */
static int
check_throttle(struct cm_req *req, const struct brain *b, const char *acct,
	       const char *addr)
{
	int64_t na, nb, ta, tb;
	char hdr[24];

	if (counter(acct, b->login_window_s, &na, &ta) < 0 ||
	    counter(addr, b->login_window_s, &nb, &tb) < 0)
		return cm_req_fail(req, 503, "unavailable",
				   "sign-in is unavailable; try again soon");
	if (na < b->login_max_fails && nb < b->login_max_addr)
		return 0;
	snprintf(hdr, sizeof(hdr), "%lld",
		 (long long)(na >= b->login_max_fails ? ta : tb));
	cm_req_set_header(req, "Retry-After", hdr);
	return cm_req_fail(req, 429, "too_many_attempts",
			   "too many failed sign-ins; try again later");
}

static void
count_failure(const struct brain *b, const char *key)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	redisReply *r = cm_redis_cmdf(errbuf, "INCR %s", key);

	if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
		freeReplyObject(r);
		r = cm_redis_cmdf(errbuf, "EXPIRE %s %lld", key,
				  (long long)b->login_window_s);
	}
	if (!r)
		cm_log_warn("login throttle: %s", errbuf);
	else
		freeReplyObject(r);
}

static void
clear_failures(const char *key)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	redisReply *r = cm_redis_cmdf(errbuf, "DEL %s", key);

	if (r)
		freeReplyObject(r);
}

/* The password check; unknown users run the KDF on a dummy hash so the
   answer takes as long. 0 with *u, or CM_EACCES. */
static int
check_password(const struct brain *b, const char *email, const char *pw,
	       struct brain_user *u, char errbuf[CM_ERRBUF_LEN])
{
	int rc = brain_store_user_by_email(email, u, errbuf);

	if (rc < 0 && rc != CM_ENOENT)
		return rc;
	if (rc == CM_ENOENT) {
		(void)brain_password_verify(pw, b->dummy_hash);
		return CM_EACCES;
	}
	if (!brain_password_verify(pw, u->password_hash) || !u->active)
		return CM_EACCES;
	return 0;
}

struct login_input {
	const char *email;
	const char *password;
	const char *tenant; /* id or slug, optional */
};

static int
parse_login(const cJSON *body, struct login_input *in,
	    char errbuf[CM_ERRBUF_LEN])
{
	memset(in, 0, sizeof(*in));
	if (cm_json_get_str(body, NULL, "email", true, 254, &in->email,
			    errbuf) < 0 ||
	    cm_json_get_str(body, NULL, "password", true, BRAIN_PASSWORD_MAX,
			    &in->password, errbuf) < 0 ||
	    cm_json_get_str(body, NULL, "tenant", false, 63, &in->tenant,
			    errbuf) == CM_EINVAL)
		return CM_EINVAL;
	return 0;
}

/* Sign in: check throttle and password, pick the tenant, issue tokens. */
static int
login(struct cm_req *req, const struct brain *b, const struct login_input *in,
      cJSON **out)
{
	char errbuf[CM_ERRBUF_LEN] = "", acct[128], addr[128];
	struct brain_user u;
	struct brain_grant g;
	int status, rc;

	fail_keys(req, in->email, acct, addr);
	if ((status = check_throttle(req, b, acct, addr)) != 0)
		return status;
	rc = check_password(b, in->email, in->password, &u, errbuf);
	if (rc == CM_EACCES) {
		count_failure(b, acct);
		count_failure(b, addr);
		return cm_req_fail(req, 401, "invalid_credentials",
				   "wrong email or password");
	}
	if (rc == 0)
		rc = brain_store_grant(u.id, in->tenant, &g, errbuf);
	if (rc == CM_ENOENT || rc == CM_EINVAL)
		return cm_req_fail(req, 403, "no_tenant_access",
				   "this account has no access to that "
				   "tenant");
	if (rc < 0)
		return brain_fail_store(req, rc, "sign-in", errbuf);
	cm_memzero(u.password_hash, sizeof(u.password_hash));
	if ((rc = issue_tokens(b, &g, NULL, out, errbuf)) < 0)
		return brain_fail_store(req, rc, "token issue", errbuf);
	clear_failures(acct);
	return 200;
}

/* POST /api/auth/login - public. */
void
brain_h_login(struct cm_req *req, void *arg)
{
	struct brain *b = brain_from(arg);
	char errbuf[CM_ERRBUF_LEN] = "";
	struct login_input in;
	cJSON *body = NULL, *json = NULL;
	int status;

	if ((status = cm_req_json(req, &body)) != 0)
		goto out;
	if (parse_login(body, &in, errbuf) < 0) {
		status = cm_req_fail(req, 400, "validation_failed", "%s",
				     errbuf);
		goto out;
	}
	status = login(req, b, &in, &json);
out:
	cm_req_reply_json(req, status, status < 400 ? json : NULL);
	cJSON_Delete(body);
	cJSON_Delete(json);
}

/* The refresh_token member of a body into *out (NULL when absent and
   optional); 0 or 400 after recording it. */
static int
body_refresh(struct cm_req *req, cJSON *body, bool required, const char **out)
{
	char errbuf[CM_ERRBUF_LEN] = "";

	*out = NULL;
	if (cm_json_get_str(body, NULL, "refresh_token", required,
			    BRAIN_TOKEN_LEN - 1, out, errbuf) == CM_EINVAL)
		return cm_req_fail(req, 400, "validation_failed", "%s", errbuf);
	return 0;
}

/* POST /api/auth/refresh - public; rotates the refresh token. */
void
brain_h_refresh(struct cm_req *req, void *arg)
{
	struct brain *b = brain_from(arg);
	char errbuf[CM_ERRBUF_LEN] = "", hash[BRAIN_SHA256_HEX];
	char family[40], uid[40], tid[40];
	struct brain_grant g;
	cJSON *body = NULL, *json = NULL;
	const char *tok;
	int status, rc;

	if ((status = cm_req_json(req, &body)) != 0)
		goto out;
	if ((status = body_refresh(req, body, true, &tok)) != 0)
		goto out;
	brain_sha256_hex(tok, hash);
	rc = brain_store_refresh_consume(hash, family, uid, tid, errbuf);
	if (rc == CM_EACCES)
		cm_log_warn("refresh token reused: family revoked");
	if (rc == 0)
		rc = brain_store_grant(uid, tid, &g, errbuf);
	if (rc == CM_EACCES || rc == CM_ENOENT) {
		status = cm_req_fail(req, 401, "invalid_refresh_token",
				     "sign in again");
		goto out;
	}
	if (rc == 0)
		rc = issue_tokens(b, &g, family, &json, errbuf);
	status = rc < 0 ? brain_fail_store(req, rc, "refresh", errbuf) : 200;
out:
	cm_req_reply_json(req, status, status < 400 ? json : NULL);
	cJSON_Delete(body);
	cJSON_Delete(json);
}

/* A user principal (not a service or key); NULL after recording 403. */
static const struct cm_principal *
user_principal(struct cm_req *req)
{
	const struct cm_principal *p = cm_req_principal(req);

	if (p && !p->is_service && !p->is_api_key && cm_is_uuid(p->sub))
		return p;
	cm_req_fail(req, 403, "forbidden", "only signed-in users");
	return NULL;
}

/* Revoke the jti until the token would have expired (plus leeway). */
static int
revoke_jti(const struct cm_principal *p, char errbuf[CM_ERRBUF_LEN])
{
	int64_t ttl = p->exp - cm_now_s() + 60;
	redisReply *r;

	if (!p->jti[0])
		return 0;
	r = cm_redis_cmdf(errbuf, "SET bz:auth:revoked:%s 1 EX %lld", p->jti,
			  (long long)(ttl > 60 ? ttl : 60));
	if (!r)
		return CM_EIO;
	freeReplyObject(r);
	cm_service_revocations_changed(); /* no cached "valid" here */
	return 0;
}

/* POST /api/auth/logout - revoke this access token, and the refresh
   family when the body names its token. */
void
brain_h_logout(struct cm_req *req, void *arg)
{
	const struct cm_principal *p;
	char errbuf[CM_ERRBUF_LEN] = "", hash[BRAIN_SHA256_HEX];
	const char *data, *tok = NULL;
	cJSON *body = NULL;
	size_t len;
	int status = 403, rc;

	(void)brain_from(arg);
	if (!(p = user_principal(req)))
		goto out;
	cm_req_body(req, &data, &len);
	if (len && ((status = cm_req_json(req, &body)) != 0 ||
		    (status = body_refresh(req, body, false, &tok)) != 0))
		goto out;
	rc = revoke_jti(p, errbuf);
	if (rc == 0 && tok) {
		brain_sha256_hex(tok, hash);
		rc = brain_store_refresh_revoke_family(hash, p->sub, errbuf);
		rc = rc == CM_ENOENT ? 0 : rc;
	}
	status = rc < 0 ? brain_fail_store(req, rc, "logout", errbuf) : 204;
out:
	cm_req_reply_json(req, status, NULL);
	cJSON_Delete(body);
}

/* GET /api/auth/me - the user, memberships, and this token's tenant. */
void
brain_h_me(struct cm_req *req, void *arg)
{
	const struct cm_principal *p;
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *json = NULL, *roles;
	int status = 403, rc, i;

	(void)brain_from(arg);
	if (!(p = user_principal(req)))
		goto out;
	if ((rc = brain_store_me(p->sub, &json, errbuf)) < 0) {
		status = brain_fail_store(req, rc, "user", errbuf);
		goto out;
	}
	if (p->tenant_id[0])
		cJSON_AddStringToObject(json, "tenant_id", p->tenant_id);
	else
		cJSON_AddNullToObject(json, "tenant_id");
	roles = cJSON_AddArrayToObject(json, "roles");
	for (i = 0; i < p->nroles; i++)
		cJSON_AddItemToArray(roles, cJSON_CreateString(p->roles[i]));
	status = 200;
out:
	cm_req_reply_json(req, status, status < 400 ? json : NULL);
	cJSON_Delete(json);
}

/* POST /api/auth/switch-tenant {"tenant": id or slug} - new tokens for
   another of the user's tenants (a new refresh family). */
void
brain_h_switch_tenant(struct cm_req *req, void *arg)
{
	struct brain *b = brain_from(arg);
	const struct cm_principal *p;
	char errbuf[CM_ERRBUF_LEN] = "";
	struct brain_grant g;
	cJSON *body = NULL, *json = NULL;
	const char *tenant = NULL;
	int status = 403, rc;

	if (!(p = user_principal(req)) ||
	    (status = cm_req_json(req, &body)) != 0)
		goto out;
	if (cm_json_get_str(body, NULL, "tenant", true, 63, &tenant, errbuf) <
	    0) {
		status = cm_req_fail(req, 400, "validation_failed", "%s",
				     errbuf);
		goto out;
	}
	rc = brain_store_grant(p->sub, tenant, &g, errbuf);
	if (rc == CM_ENOENT || rc == CM_EINVAL) {
		status = cm_req_fail(req, 403, "no_tenant_access",
				     "you have no access to that tenant");
		goto out;
	}
	if (rc == 0)
		rc = issue_tokens(b, &g, NULL, &json, errbuf);
	status = rc < 0 ? brain_fail_store(req, rc, "switch", errbuf) : 200;
out:
	cm_req_reply_json(req, status, status < 400 ? json : NULL);
	cJSON_Delete(body);
	cJSON_Delete(json);
}

/* The password file's first line, 12..256 bytes. */
static int
read_password(const char *path, char out[BRAIN_PASSWORD_MAX + 2],
	      char errbuf[CM_ERRBUF_LEN])
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "BRAIN_BOOTSTRAP_ADMIN_PASSWORD_FILE unreadable");
		return CM_EINVAL;
	}
	if (!fgets(out, BRAIN_PASSWORD_MAX + 2, f))
		out[0] = '\0';
	fclose(f);
	n = strcspn(out, "\r\n");
	out[n] = '\0';
	if (n < BRAIN_PASSWORD_MIN || n > BRAIN_PASSWORD_MAX) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "the bootstrap admin password must have %d..%d "
			 "characters",
			 BRAIN_PASSWORD_MIN, BRAIN_PASSWORD_MAX);
		return CM_EINVAL;
	}
	return 0;
}

int
brain_bootstrap_admin(const struct brain *b, const char *email,
		      const char *password_file, char errbuf[CM_ERRBUF_LEN])
{
	char pw[BRAIN_PASSWORD_MAX + 2], hash[BRAIN_HASH_LEN], id[40];
	struct brain_user u;
	int rc;

	(void)b;
	if (!brain_email_valid(email) || !password_file) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "BRAIN_BOOTSTRAP_ADMIN_EMAIL needs a valid email and "
			 "BRAIN_BOOTSTRAP_ADMIN_PASSWORD_FILE");
		return CM_EINVAL;
	}
	rc = brain_store_user_by_email(email, &u, errbuf);
	if (rc == 0) /* an existing account keeps its password */
		return u.super_admin
			       ? 0
			       : brain_store_user_set_super_admin(u.id, errbuf);
	if (rc != CM_ENOENT ||
	    (rc = read_password(password_file, pw, errbuf)) < 0)
		goto out;
	if ((rc = brain_password_hash(pw, BRAIN_PBKDF2_ITER, hash)) == 0)
		rc = brain_store_user_create(email, "Platform admin", hash,
					     true, id, errbuf);
	if (rc == 0)
		cm_log_info("bootstrap super admin created");
out:
	cm_memzero(pw, sizeof(pw));
	return rc;
}
