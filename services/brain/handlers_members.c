/*
 * handlers_members.c - a tenant's members: list, add (creating the user
 * when the email is new), remove. Tenant admins act on their own tenant
 * and may not grant or remove a role above their own; the platform admin
 * acts on any tenant.
 */
#include "brain.h"

#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"

#include <stdio.h>
#include <string.h>

#include "common/banned.h"

static const char *const roles[] = { "owner", "admin",	  "manager",
				     "user",  "readonly", NULL };

struct member_input {
	const char *email;
	const char *name;
	const char *password;
	const char *role;
};

static int
parse_member(const cJSON *body, struct member_input *in,
	     char errbuf[CM_ERRBUF_LEN])
{
	int idx;

	memset(in, 0, sizeof(*in));
	if (cm_json_get_str(body, NULL, "email", true, 254, &in->email,
			    errbuf) < 0 ||
	    cm_json_get_str(body, NULL, "name", false, 200, &in->name,
			    errbuf) == CM_EINVAL ||
	    cm_json_get_str(body, NULL, "password", false, BRAIN_PASSWORD_MAX,
			    &in->password, errbuf) == CM_EINVAL ||
	    cm_json_get_enum(body, NULL, "role", true, roles, &idx, errbuf) < 0)
		return CM_EINVAL;
	in->role = roles[idx];
	if (!brain_email_valid(in->email)) {
		snprintf(errbuf, CM_ERRBUF_LEN, "field 'email' is invalid");
		return CM_EINVAL;
	}
	if (in->password && strlen(in->password) < BRAIN_PASSWORD_MIN) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "field 'password' needs at least %d characters",
			 BRAIN_PASSWORD_MIN);
		return CM_EINVAL;
	}
	return 0;
}

/* The user id for in->email, creating the user when new (which needs a
   password). */
static int
ensure_user(const struct member_input *in, char id[40],
	    char errbuf[CM_ERRBUF_LEN])
{
	struct brain_user u;
	char hash[BRAIN_HASH_LEN];
	int rc = brain_store_user_by_email(in->email, &u, errbuf);

	if (rc == 0) {
		cm_strlcpy(id, u.id, 40);
		return 0;
	}
	if (rc != CM_ENOENT)
		return rc;
	if (!in->password) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "field 'password' is required for a new user");
		return CM_EINVAL;
	}
	if ((rc = brain_password_hash(in->password, BRAIN_PBKDF2_ITER, hash)) <
	    0) {
		snprintf(errbuf, CM_ERRBUF_LEN, "password hashing failed");
		return rc;
	}
	return brain_store_user_create(in->email, in->name, hash, false, id,
				       errbuf);
}

/* 0 when tenant tid has a free seat under its max_users limit (or uid is
   a member already), CM_EAGAIN when full: a quick look before a new
   account is made; brain_store_member_add_seat decides, atomically. */
static int
check_seat(const char *tid, const char *uid, char errbuf[CM_ERRBUF_LEN])
{
	struct brain_grant g;
	cJSON *row = NULL, *lim = NULL;
	int64_t n = 0;
	double max;
	int rc;

	if (uid && brain_store_grant(uid, tid, &g, errbuf) == 0 && g.role[0])
		return 0;
	if ((rc = brain_store_tenant_get(tid, false, &row, errbuf)) < 0 ||
	    (rc = brain_store_count_members(tid, &n, errbuf)) < 0)
		goto out;
	lim = brain_limits_effective(
		cJSON_GetStringValue(
			cJSON_GetObjectItem(row, "subscription_tier")),
		cJSON_GetObjectItem(row, "limit_overrides"));
	max = cJSON_GetNumberValue(cJSON_GetObjectItem(lim, "max_users"));
	rc = (double)n >= max ? CM_EAGAIN : 0;
out:
	cJSON_Delete(row);
	cJSON_Delete(lim);
	return rc;
}

/* The id of the user with this email (static copy), or NULL. */
static const char *
existing_user(const char *email)
{
	static __thread struct brain_user u;
	char errbuf[CM_ERRBUF_LEN] = "";

	return brain_store_user_by_email(email, &u, errbuf) == 0 ? u.id : NULL;
}

/* Add a member to tid; max_rank bounds the role the caller may grant. */
static int
add_member(struct cm_req *req, const char *tid, int max_rank, cJSON **out)
{
	char errbuf[CM_ERRBUF_LEN] = "", uid[40] = "";
	struct brain_once once = { 0 };
	struct member_input in;
	cJSON *body = NULL;
	int status, rc;

	if ((status = cm_idem_from_req(req, &once.im)) != 0 ||
	    (status = cm_req_json(req, &body)) != 0)
		goto out;
	if (parse_member(body, &in, errbuf) < 0) {
		status = cm_req_fail(req, 400, "validation_failed", "%s",
				     errbuf);
		goto out;
	}
	if (brain_role_rank(in.role) > max_rank) {
		status = cm_req_fail(req, 403, "forbidden",
				     "you may not grant the role %s", in.role);
		goto out;
	}
	rc = check_seat(tid, existing_user(in.email), errbuf);
	if (rc == 0)
		rc = ensure_user(&in, uid, errbuf);
	if (rc == CM_EINVAL) {
		status = cm_req_fail(req, 400, "validation_failed", "%s",
				     errbuf);
		goto out;
	}
	if (rc == 0)
		rc = brain_store_member_add_seat(uid, in.email, tid, in.role,
						 &once, out, errbuf);
	if ((status = brain_once_answer(req, &once)) != 0)
		goto out;
	if (rc == CM_EAGAIN) {
		status = cm_req_fail(req, 403, "limit_reached",
				     "the plan's max_users is reached");
		goto out;
	}
	if (rc < 0) {
		status = brain_fail_store(req, rc, "member", errbuf);
		goto out;
	}
	status = once.replayed ? once.status : 201;
out:
	cJSON_Delete(body);
	return status;
}

/* The highest role rank among the caller's roles. */
static int
caller_rank(const struct cm_principal *p)
{
	int i, r, best = 0;

	for (i = 0; i < p->nroles; i++) {
		r = brain_role_rank(p->roles[i]);
		best = r > best ? r : best;
	}
	return best;
}

/* GET /api/tenant/members - one page, oldest membership first. */
void
brain_h_members_list(struct cm_req *req, void *arg)
{
	(void)brain_from(arg);
	brain_reply_page(req, brain_own_tenant(req, BRAIN_PERM_MEMBERS_READ),
			 brain_store_members_page, "members");
}

/* POST /api/tenant/members - add; roles up to the caller's own. */
void
brain_h_members_add(struct cm_req *req, void *arg)
{
	cJSON *json = NULL;
	const char *tid;
	int status = 403;

	(void)brain_from(arg);
	if ((tid = brain_own_tenant(req, BRAIN_PERM_MEMBERS_WRITE)) != NULL)
		status = add_member(req, tid,
				    caller_rank(cm_req_principal(req)), &json);
	cm_req_reply_json(req, status, status < 400 ? json : NULL);
	cJSON_Delete(json);
}

/* POST /api/admin/tenants/:id/members - platform admin, any role. */
void
brain_h_admin_members_add(struct cm_req *req, void *arg)
{
	const struct cm_principal *p = cm_req_principal(req);
	const char *tid = cm_req_param(req, "id");
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *json = NULL, *row = NULL;
	int status = 403, rc;

	(void)brain_from(arg);
	if (!p || p->is_service || p->is_api_key ||
	    !cm_principal_has_role(p, "super_admin")) {
		cm_req_fail(req, 403, "forbidden",
			    "platform administrators only");
		goto out;
	}
	rc = tid && cm_is_uuid(tid)
		     ? brain_store_tenant_get(tid, false, &row, errbuf)
		     : CM_ENOENT;
	if (rc < 0) {
		status = brain_fail_store(req, rc, "tenant", errbuf);
		goto out;
	}
	status = add_member(req, tid, 5, &json);
out:
	cm_req_reply_json(req, status, status < 400 ? json : NULL);
	cJSON_Delete(json);
	cJSON_Delete(row);
}

/* DELETE /api/tenant/members/:user_id - not above the caller's role. */
void
brain_h_members_remove(struct cm_req *req, void *arg)
{
	const char *uid = cm_req_param(req, "user_id");
	char errbuf[CM_ERRBUF_LEN] = "";
	struct brain_grant g;
	const char *tid;
	int status = 403, rc;

	(void)brain_from(arg);
	if (!(tid = brain_own_tenant(req, BRAIN_PERM_MEMBERS_WRITE)))
		goto out;
	rc = uid && cm_is_uuid(uid) ? brain_store_grant(uid, tid, &g, errbuf)
				    : CM_ENOENT;
	if (rc == 0 && !g.role[0])
		rc = CM_ENOENT;
	if (rc == 0 &&
	    brain_role_rank(g.role) > caller_rank(cm_req_principal(req))) {
		status = cm_req_fail(req, 403, "forbidden",
				     "you may not remove a %s", g.role);
		goto out;
	}
	if (rc == 0)
		rc = brain_store_membership_remove(uid, tid, errbuf);
	status = rc < 0 ? brain_fail_store(req, rc, "member", errbuf) : 204;
out:
	cm_req_reply_json(req, status, NULL);
}

#define INVITE_TTL_S (7 * 86400)

/* POST /api/tenant/invitations {email, role} - 201 with the one-time
   token (shown once; delivering it is the caller's business). */
void
brain_h_invites_create(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "", token[BRAIN_TOKEN_LEN];
	char hash[BRAIN_SHA256_HEX];
	const struct cm_principal *p = cm_req_principal(req);
	struct brain_once once = { 0 };
	struct member_input in;
	cJSON *body = NULL, *row = NULL;
	const char *tid;
	int status = 403, rc;

	(void)brain_from(arg);
	if (!(tid = brain_own_tenant(req, BRAIN_PERM_MEMBERS_WRITE)) ||
	    (status = cm_idem_from_req(req, &once.im)) != 0 ||
	    (status = cm_req_json(req, &body)) != 0)
		goto out;
	if (parse_member(body, &in, errbuf) < 0 || in.password) {
		status = cm_req_fail(req, 400, "validation_failed", "%s",
				     in.password ? "no password in an "
						   "invitation"
						 : errbuf);
		goto out;
	}
	if (brain_role_rank(in.role) > caller_rank(p)) {
		status = cm_req_fail(req, 403, "forbidden",
				     "you may not grant the role %s", in.role);
		goto out;
	}
	if ((rc = brain_random_token("bzi_", token, sizeof(token))) == 0) {
		brain_sha256_hex(token, hash);
		rc = brain_store_invite_create_seat(
			tid, in.email, in.role, hash,
			cm_is_uuid(p->sub) ? p->sub : NULL, INVITE_TTL_S, &once,
			&row, errbuf);
	}
	if (rc == 0 && !once.replayed) /* the token is shown this once */
		cJSON_AddStringToObject(row, "token", token);
	cm_memzero(token, sizeof(token));
	if ((status = brain_once_answer(req, &once)) != 0)
		goto out;
	if (rc == CM_EAGAIN)
		status = cm_req_fail(req, 403, "limit_reached",
				     "the plan's max_users is reached");
	else if (rc < 0)
		status = brain_fail_store(req, rc, "invitation", errbuf);
	else
		status = once.replayed ? once.status : 201;
out:
	cm_req_reply_json(req, status, status < 400 ? row : NULL);
	cJSON_Delete(body);
	cJSON_Delete(row);
}

/* GET /api/tenant/invitations - one page, never the tokens. */
void
brain_h_invites_list(struct cm_req *req, void *arg)
{
	(void)brain_from(arg);
	brain_reply_page(req, brain_own_tenant(req, BRAIN_PERM_MEMBERS_READ),
			 brain_store_invite_page, "invitations");
}

/* DELETE /api/tenant/invitations/:id - an open invitation. */
void
brain_h_invites_revoke(struct cm_req *req, void *arg)
{
	(void)brain_from(arg);
	brain_reply_revoke(req, brain_own_tenant(req, BRAIN_PERM_MEMBERS_WRITE),
			   brain_store_invite_revoke, "invitation");
}

struct accept_input {
	const char *token;
	const char *password;
	const char *name;
};

static int
parse_accept(const cJSON *body, struct accept_input *in,
	     char errbuf[CM_ERRBUF_LEN])
{
	memset(in, 0, sizeof(*in));
	if (cm_json_get_str(body, NULL, "token", true, BRAIN_TOKEN_LEN - 1,
			    &in->token, errbuf) < 0 ||
	    cm_json_get_str(body, NULL, "password", false, BRAIN_PASSWORD_MAX,
			    &in->password, errbuf) == CM_EINVAL ||
	    cm_json_get_str(body, NULL, "name", false, 200, &in->name,
			    errbuf) == CM_EINVAL)
		return CM_EINVAL;
	if (in->password && strlen(in->password) < BRAIN_PASSWORD_MIN) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "field 'password' needs at least %d characters",
			 BRAIN_PASSWORD_MIN);
		return CM_EINVAL;
	}
	return 0;
}

/* POST /api/auth/accept-invitation - public: the token is the proof. */
void
brain_h_invite_accept(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "", hash[BRAIN_SHA256_HEX];
	char pw_hash[BRAIN_HASH_LEN];
	struct accept_input in;
	struct brain_grant g;
	cJSON *body = NULL, *json = NULL;
	int status, rc = 0;

	(void)brain_from(arg);
	if ((status = cm_req_json(req, &body)) != 0)
		goto out;
	if (parse_accept(body, &in, errbuf) < 0) {
		status = cm_req_fail(req, 400, "validation_failed", "%s",
				     errbuf);
		goto out;
	}
	if (in.password)
		rc = brain_password_hash(in.password, BRAIN_PBKDF2_ITER,
					 pw_hash);
	brain_sha256_hex(in.token, hash);
	if (rc == 0)
		rc = brain_store_invite_accept(hash,
					       in.password ? pw_hash : NULL,
					       in.name, &g, errbuf);
	if (rc == CM_ENOENT)
		status = cm_req_fail(req, 404, "invalid_invitation",
				     "the invitation is unknown, used, "
				     "revoked or expired");
	else if (rc == CM_EAGAIN)
		status = cm_req_fail(req, 403, "limit_reached",
				     "the plan's max_users is reached");
	else if (rc == CM_EPERM)
		status = cm_req_fail(req, 400, "validation_failed",
				     "field 'password' is required for a new "
				     "account");
	else if (rc < 0)
		status = brain_fail_store(req, rc, "invitation", errbuf);
	else
		status = 200;
	if (status == 200) {
		json = cJSON_CreateObject();
		cJSON_AddStringToObject(json, "user_id", g.user_id);
		cJSON_AddStringToObject(json, "tenant_id", g.tenant_id);
		cJSON_AddStringToObject(json, "role", g.role);
	}
out:
	cm_req_reply_json(req, status, json);
	cJSON_Delete(body);
	cJSON_Delete(json);
}
