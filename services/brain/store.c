/*
 * store.c - brain's SQL. Every statement is parameterised; output objects
 * are built by PostgreSQL (json_build_object) and parsed once here.
 */
#include "brain.h"

#include "common/db.h"
#include "common/json.h"
#include "common/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

/* clang-format off */
#define TS(col) \
	"to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
/* clang-format on */

/* clang-format off */
#define TENANT_JSON \
	"json_build_object('id', t.id, 'slug', t.slug, 'name', t.name," \
	" 'status', t.status, 'subscription_tier', t.subscription_tier," \
	" 'primary_domain', t.primary_domain, 'limit_overrides', t.limits," \
	" 'services_enabled', to_json(t.services_enabled)," \
	" 'branding', t.branding, 'settings', t.settings," \
	" 'version', t.version, 'created_at', " TS("t.created_at") "," \
	" 'updated_at', " TS("t.updated_at") "," \
	" 'deleted_at', " TS("t.deleted_at") "," \
	" 'purge_after', " TS("t.purge_after") "," \
	" 'domains', COALESCE((SELECT json_agg(json_build_object(" \
	"'domain', d.domain, 'verified', d.verified) ORDER BY d.domain)" \
	" FROM brain.tenant_domains d WHERE d.tenant_id = t.id), '[]'))::text"
/* clang-format on */

static int
run(const char *sql, int n, const char *const *params, PGresult **res,
    char errbuf[CM_ERRBUF_LEN])
{
	PGconn *conn = cm_db_conn(errbuf);

	if (!conn)
		return CM_EIO;
	return cm_db_query(conn, sql, n, params, res, errbuf);
}

/* One row of one JSON column -> *out; CM_ENOENT for no row. */
static int
run_json(const char *sql, int n, const char *const *params, cJSON **out,
	 char errbuf[CM_ERRBUF_LEN])
{
	PGresult *res = NULL;
	int rc;

	*out = NULL;
	if ((rc = run(sql, n, params, &res, errbuf)) < 0)
		goto out;
	if (PQntuples(res) < 1 || PQgetisnull(res, 0, 0)) {
		rc = CM_ENOENT;
		goto out;
	}
	*out = cm_json_parse(PQgetvalue(res, 0, 0),
			     (size_t)PQgetlength(res, 0, 0), errbuf);
	rc = *out ? 0 : CM_EIO;
out:
	PQclear(res);
	return rc;
}

/* Rows affected by a command; CM_ENOENT for none. */
static int
run_cmd(const char *sql, int n, const char *const *params,
	char errbuf[CM_ERRBUF_LEN])
{
	PGresult *res = NULL;
	int rc = run(sql, n, params, &res, errbuf);

	if (rc == 0 && !strcmp(PQcmdTuples(res), "0"))
		rc = CM_ENOENT;
	PQclear(res);
	return rc;
}

int
brain_store_tenant_create(const struct brain_tenant_input *in, cJSON **out,
			  char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"WITH t AS (INSERT INTO brain.tenants (slug, name, status,"
		" subscription_tier, primary_domain, limits, services_enabled,"
		" branding, settings) VALUES ($1, $2, COALESCE($3, 'trial'),"
		" COALESCE($4, 'free'), $5, COALESCE($6::jsonb, '{}'),"
		" COALESCE($7::text[], '{crm,cms}'),"
		" COALESCE($8::jsonb, '{}'), COALESCE($9::jsonb, '{}'))"
		" RETURNING *) SELECT " TENANT_JSON " FROM t";
	const char *p[9] = { in->slug,	   in->name,	       in->status,
			     in->tier,	   in->primary_domain, in->limits,
			     in->services, in->branding,       in->settings };

	return run_json(sql, 9, p, out, errbuf);
}

int
brain_store_tenant_get(const char *id_or_slug, bool include_deleted,
		       cJSON **out, char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] = "SELECT " TENANT_JSON " FROM brain.tenants t"
				  " WHERE (t.id::text = $1 OR t.slug = $1)"
				  " AND ($2 OR t.deleted_at IS NULL)";
	const char *p[2] = { id_or_slug, include_deleted ? "t" : "f" };

	return run_json(sql, 2, p, out, errbuf);
}

int
brain_store_tenant_list(const struct brain_list_query *q, cJSON **items,
			char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"SELECT COALESCE(json_agg(j ORDER BY s), '[]')::text FROM"
		" (SELECT " TENANT_JSON "::json AS j, t.slug AS s"
		" FROM brain.tenants t WHERE ($1::text IS NULL OR t.status = "
		"$1)"
		" AND ($2::text IS NULL OR t.subscription_tier = $2)"
		" AND ($3::text IS NULL OR position(lower($3) IN lower(t.name))"
		" > 0 OR position(lower($3) IN t.slug) > 0 OR EXISTS (SELECT 1"
		" FROM brain.tenant_domains d WHERE d.tenant_id = t.id AND"
		" position(lower($3) IN d.domain) > 0) OR position(lower($3) IN"
		" COALESCE(t.primary_domain, '')) > 0)"
		" AND ($4::text IS NULL OR t.slug > $4)"
		" AND ($6 OR t.deleted_at IS NULL)"
		" ORDER BY t.slug LIMIT $5::int) x";
	char lim[16];
	const char *p[6] = {
		q->status, q->tier, q->q,
		q->cursor, lim,	    q->include_deleted ? "t" : "f"
	};

	snprintf(lim, sizeof(lim), "%d", q->limit);
	return run_json(sql, 6, p, items, errbuf);
}

/* Whether a tenant (not deleted) exists: tells 404 from 412 apart. */
static int
tenant_exists(const char *id, char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] = "SELECT 1 FROM brain.tenants WHERE"
				  " id = $1::uuid AND deleted_at IS NULL";
	const char *p[1] = { id };
	PGresult *res = NULL;
	int rc = run(sql, 1, p, &res, errbuf);

	if (rc == 0 && PQntuples(res) == 0)
		rc = CM_ENOENT;
	PQclear(res);
	return rc;
}

/* Column 0 as JSON into *out, column 1 (text) into col1[n]. */
static int
run_json2(const char *sql, int n, const char *const *params, cJSON **out,
	  char *col1, size_t col1_len, char errbuf[CM_ERRBUF_LEN])
{
	PGresult *res = NULL;
	int rc;

	*out = NULL;
	if ((rc = run(sql, n, params, &res, errbuf)) < 0)
		goto out;
	if (PQntuples(res) < 1 || PQnfields(res) < 2) {
		rc = CM_ENOENT;
		goto out;
	}
	cm_strlcpy(col1, PQgetvalue(res, 0, 1), col1_len);
	*out = cm_json_parse(PQgetvalue(res, 0, 0),
			     (size_t)PQgetlength(res, 0, 0), errbuf);
	rc = *out ? 0 : CM_EIO;
out:
	PQclear(res);
	return rc;
}

int
brain_store_tenant_update(const char *id, int64_t version,
			  const struct brain_tenant_input *in, cJSON **out,
			  char prev_tier[16], char errbuf[CM_ERRBUF_LEN])
{
	/* o reads the row as it was: every part of one WITH statement sees
	   the same snapshot */
	static const char sql[] =
		"WITH o AS (SELECT subscription_tier AS tier FROM brain.tenants"
		" WHERE id = $1::uuid),"
		" t AS (UPDATE brain.tenants SET slug = COALESCE($3, slug),"
		" name = COALESCE($4, name),"
		" subscription_tier = COALESCE($5, subscription_tier),"
		" primary_domain = CASE WHEN $6 THEN NULL"
		" ELSE COALESCE($7, primary_domain) END,"
		" limits = COALESCE($8::jsonb, limits),"
		" services_enabled = COALESCE($9::text[], services_enabled),"
		" branding = COALESCE($10::jsonb, branding),"
		" settings = COALESCE($11::jsonb, settings),"
		" version = version + 1, updated_at = now()"
		" WHERE id = $1::uuid AND version = $2::bigint"
		" AND deleted_at IS NULL RETURNING *)"
		" SELECT " TENANT_JSON ", o.tier FROM t, o";
	char ver[24];
	const char *p[11] = { id,
			      ver,
			      in->slug,
			      in->name,
			      in->tier,
			      in->clear_primary_domain ? "t" : "f",
			      in->primary_domain,
			      in->limits,
			      in->services,
			      in->branding,
			      in->settings };
	int rc;

	snprintf(ver, sizeof(ver), "%lld", (long long)version);
	rc = run_json2(sql, 11, p, out, prev_tier, 16, errbuf);
	if (rc == CM_ENOENT && tenant_exists(id, errbuf) == 0)
		rc = CM_ESTALE;
	return rc;
}

int
brain_store_tenant_set_status(const char *id, const char *status, cJSON **out,
			      char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"WITH t AS (UPDATE brain.tenants SET status = $2,"
		" version = version + 1, updated_at = now()"
		" WHERE id = $1::uuid AND deleted_at IS NULL RETURNING *)"
		" SELECT " TENANT_JSON " FROM t";
	const char *p[2] = { id, status };

	return run_json(sql, 2, p, out, errbuf);
}

int
brain_store_tenant_delete_s(const char *id, int64_t grace_s, cJSON **out,
			    char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"WITH t AS (UPDATE brain.tenants SET deleted_at = now(),"
		" purge_after = now() + make_interval(secs => $2::bigint),"
		" version = version + 1, updated_at = now()"
		" WHERE id = $1::uuid AND deleted_at IS NULL RETURNING *)"
		" SELECT " TENANT_JSON " FROM t";
	char secs[24];
	const char *p[2] = { id, secs };

	snprintf(secs, sizeof(secs), "%lld", (long long)grace_s);
	return run_json(sql, 2, p, out, errbuf);
}

int
brain_store_tenant_restore(const char *id, cJSON **out,
			   char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"WITH t AS (UPDATE brain.tenants SET deleted_at = NULL,"
		" purge_after = NULL, version = version + 1, updated_at = now()"
		" WHERE id = $1::uuid AND deleted_at IS NOT NULL"
		" AND purge_after > now() RETURNING *)"
		" SELECT " TENANT_JSON " FROM t";
	const char *p[1] = { id };

	return run_json(sql, 1, p, out, errbuf);
}

int
brain_store_domain_add(const char *id, const char *domain,
		       char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"INSERT INTO brain.tenant_domains (domain, tenant_id)"
		" SELECT $2, id FROM brain.tenants"
		" WHERE id = $1::uuid AND deleted_at IS NULL";
	const char *p[2] = { id, domain };

	return run_cmd(sql, 2, p, errbuf);
}

int
brain_store_domain_verify(const char *id, const char *domain,
			  char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"UPDATE brain.tenant_domains SET verified = true"
		" WHERE tenant_id = $1::uuid AND domain = $2";
	const char *p[2] = { id, domain };

	return run_cmd(sql, 2, p, errbuf);
}

int
brain_store_domain_remove(const char *id, const char *domain,
			  char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] = "DELETE FROM brain.tenant_domains"
				  " WHERE tenant_id = $1::uuid AND domain = $2";
	const char *p[2] = { id, domain };

	return run_cmd(sql, 2, p, errbuf);
}

int
brain_store_user_by_email(const char *email, struct brain_user *out,
			  char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"SELECT id, password_hash, is_super_admin, status = 'active'"
		" FROM brain.users WHERE lower(email) = lower($1)";
	const char *p[1] = { email };
	PGresult *res = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = run(sql, 1, p, &res, errbuf)) < 0)
		goto out;
	if (PQntuples(res) < 1) {
		rc = CM_ENOENT;
		goto out;
	}
	cm_strlcpy(out->id, PQgetvalue(res, 0, 0), sizeof(out->id));
	cm_strlcpy(out->password_hash, PQgetvalue(res, 0, 1),
		   sizeof(out->password_hash));
	out->super_admin = !strcmp(PQgetvalue(res, 0, 2), "t");
	out->active = !strcmp(PQgetvalue(res, 0, 3), "t");
out:
	PQclear(res);
	return rc;
}

int
brain_store_user_create(const char *email, const char *name, const char *hash,
			bool super_admin, char id_out[40],
			char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"INSERT INTO brain.users (email, name, password_hash,"
		" is_super_admin) VALUES ($1, COALESCE($2, ''), $3, $4)"
		" RETURNING id";
	const char *p[4] = { email, name, hash, super_admin ? "t" : "f" };
	PGresult *res = NULL;
	int rc;

	if ((rc = run(sql, 4, p, &res, errbuf)) == 0)
		cm_strlcpy(id_out, PQgetvalue(res, 0, 0), 40);
	PQclear(res);
	return rc;
}

int
brain_store_user_set_super_admin(const char *id, char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] = "UPDATE brain.users SET is_super_admin ="
				  " true, updated_at = now() WHERE id = $1";
	const char *p[1] = { id };

	return run_cmd(sql, 1, p, errbuf);
}

int
brain_store_membership_set(const char *user_id, const char *tenant_id,
			   const char *role, char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"INSERT INTO brain.memberships (user_id, tenant_id, role)"
		" VALUES ($1, $2, $3) ON CONFLICT (user_id, tenant_id)"
		" DO UPDATE SET role = EXCLUDED.role";
	const char *p[3] = { user_id, tenant_id, role };

	return run_cmd(sql, 3, p, errbuf);
}

int
brain_store_membership_remove(const char *user_id, const char *tenant_id,
			      char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] = "DELETE FROM brain.memberships"
				  " WHERE user_id = $1 AND tenant_id = $2";
	const char *p[2] = { user_id, tenant_id };

	return run_cmd(sql, 2, p, errbuf);
}

/* The user (active) and, when tenant is given, the role in it; else the
   earliest membership. Rows: is_super_admin, tenant_id, role. */
int
brain_store_grant(const char *user_id, const char *tenant,
		  struct brain_grant *out, char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"SELECT u.is_super_admin, m.tenant_id, m.role FROM brain.users "
		"u"
		" LEFT JOIN LATERAL (SELECT m.tenant_id, m.role"
		" FROM brain.memberships m JOIN brain.tenants t"
		" ON t.id = m.tenant_id AND t.deleted_at IS NULL"
		" WHERE m.user_id = u.id AND ($2::text IS NULL OR"
		" t.id::text = $2 OR t.slug = $2)"
		" ORDER BY m.created_at, m.tenant_id LIMIT 1) m ON true"
		" WHERE u.id = $1::uuid AND u.status = 'active'";
	const char *p[2] = { user_id, tenant && *tenant ? tenant : NULL };
	PGresult *res = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = run(sql, 2, p, &res, errbuf)) < 0)
		goto out;
	if (PQntuples(res) < 1 || (PQgetisnull(res, 0, 1) && p[1] != NULL)) {
		rc = CM_ENOENT;
		goto out;
	}
	cm_strlcpy(out->user_id, user_id, sizeof(out->user_id));
	out->super_admin = !strcmp(PQgetvalue(res, 0, 0), "t");
	cm_strlcpy(out->tenant_id, PQgetvalue(res, 0, 1),
		   sizeof(out->tenant_id));
	cm_strlcpy(out->role, PQgetvalue(res, 0, 2), sizeof(out->role));
	if (!out->tenant_id[0] && !out->super_admin)
		rc = CM_ENOENT;
out:
	PQclear(res);
	return rc;
}

int
brain_store_me(const char *user_id, cJSON **out, char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"SELECT json_build_object('id', u.id, 'email', u.email,"
		" 'name', u.name, 'super_admin', u.is_super_admin,"
		" 'memberships', COALESCE((SELECT json_agg(json_build_object("
		"'tenant_id', t.id, 'slug', t.slug, 'name', t.name,"
		" 'role', m.role) ORDER BY m.created_at)"
		" FROM brain.memberships m JOIN brain.tenants t"
		" ON t.id = m.tenant_id AND t.deleted_at IS NULL"
		" WHERE m.user_id = u.id), '[]'))::text"
		" FROM brain.users u WHERE u.id = $1::uuid";
	const char *p[1] = { user_id };

	return run_json(sql, 1, p, out, errbuf);
}

int
brain_store_count_members(const char *tenant_id, int64_t *out,
			  char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] = "SELECT count(*) FROM brain.memberships"
				  " WHERE tenant_id = $1::uuid";
	const char *p[1] = { tenant_id };
	PGresult *res = NULL;
	int rc = run(sql, 1, p, &res, errbuf);

	if (rc == 0)
		rc = cm_parse_i64(PQgetvalue(res, 0, 0), 0, INT64_MAX, out);
	PQclear(res);
	return rc;
}

int
brain_store_refresh_insert(const char *hash, const char *family_id,
			   const char *user_id, const char *tenant_id,
			   int64_t ttl_s, char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"INSERT INTO brain.refresh_tokens (token_hash, family_id,"
		" user_id, tenant_id, expires_at) VALUES ($1, $2, $3,"
		" NULLIF($4, '')::uuid,"
		" now() + make_interval(secs => $5::bigint))";
	char ttl[24];
	const char *p[5] = { hash, family_id, user_id, tenant_id, ttl };

	snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_s);
	return run_cmd(sql, 5, p, errbuf);
}

/* A used or revoked token came back: revoke its whole family. */
static int
revoke_reused(const char *hash, char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"UPDATE brain.refresh_tokens SET revoked_at = now()"
		" WHERE revoked_at IS NULL AND family_id = (SELECT family_id"
		" FROM brain.refresh_tokens WHERE token_hash = $1"
		" AND (used_at IS NOT NULL OR revoked_at IS NOT NULL))";
	static const char any[] = "SELECT 1 FROM brain.refresh_tokens WHERE"
				  " token_hash = $1 AND expires_at > now()"
				  " AND (used_at IS NOT NULL"
				  " OR revoked_at IS NOT NULL)";
	const char *p[1] = { hash };
	PGresult *res = NULL;
	int rc = run(any, 1, p, &res, errbuf);

	if (rc == 0 && PQntuples(res) == 0)
		rc = CM_ENOENT;
	PQclear(res);
	if (rc < 0)
		return rc;
	rc = run_cmd(sql, 1, p, errbuf);
	return rc == 0 || rc == CM_ENOENT ? CM_EACCES : rc;
}

int
brain_store_refresh_consume(const char *hash, char family[40], char user_id[40],
			    char tenant_id[40], char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"UPDATE brain.refresh_tokens SET used_at = now()"
		" WHERE token_hash = $1 AND used_at IS NULL"
		" AND revoked_at IS NULL AND expires_at > now()"
		" RETURNING family_id, user_id, COALESCE(tenant_id::text, '')";
	const char *p[1] = { hash };
	PGresult *res = NULL;
	int rc;

	if ((rc = run(sql, 1, p, &res, errbuf)) < 0)
		goto out;
	if (PQntuples(res) < 1) {
		rc = revoke_reused(hash, errbuf);
		goto out;
	}
	cm_strlcpy(family, PQgetvalue(res, 0, 0), 40);
	cm_strlcpy(user_id, PQgetvalue(res, 0, 1), 40);
	cm_strlcpy(tenant_id, PQgetvalue(res, 0, 2), 40);
out:
	PQclear(res);
	return rc;
}

int
brain_store_refresh_revoke_family(const char *hash, const char *user_id,
				  char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"UPDATE brain.refresh_tokens SET revoked_at = now()"
		" WHERE revoked_at IS NULL AND family_id = (SELECT family_id"
		" FROM brain.refresh_tokens WHERE token_hash = $1"
		" AND user_id = $2::uuid)";
	const char *p[2] = { hash, user_id };

	return run_cmd(sql, 2, p, errbuf);
}

int
brain_store_domain_state(const char *domain, bool *verified, bool *deleted,
			 char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"SELECT d.verified, t.deleted_at IS NOT NULL"
		" FROM brain.tenant_domains d JOIN brain.tenants t"
		" ON t.id = d.tenant_id WHERE d.domain = $1";
	const char *p[1] = { domain };
	PGresult *res = NULL;
	int rc = run(sql, 1, p, &res, errbuf);

	if (rc == 0 && PQntuples(res) < 1)
		rc = CM_ENOENT;
	if (rc == 0) {
		*verified = !strcmp(PQgetvalue(res, 0, 0), "t");
		*deleted = !strcmp(PQgetvalue(res, 0, 1), "t");
	}
	PQclear(res);
	return rc;
}

/* ---- API keys: tenant data under row-level security ---- */

/* clang-format off */
#define KEY_JSON \
	"json_build_object('id', k.id, 'name', k.name, 'prefix', k.prefix," \
	" 'scopes', to_json(k.scopes), 'created_at', " TS("k.created_at") \
	", 'expires_at', " TS("k.expires_at") \
	", 'last_used_at', " TS("k.last_used_at") \
	", 'revoked_at', " TS("k.revoked_at") ")"
/* clang-format on */

/* A tenant create under an Idempotency-Key: the stored answer, or the
   create (fn leaves its answer in *out) and its record, in one
   transaction. */
struct once_tx {
	struct brain_once *once;
	cm_db_work_fn fn;
	void *arg;
	cJSON **out;
};

int
brain_once_lookup(PGconn *conn, struct brain_once *o, cJSON **out,
		  char errbuf[CM_ERRBUF_LEN])
{
	int rc;

	if (!o || !o->im.key)
		return CM_ENOENT;
	rc = cm_idem_lookup(conn, BRAIN_IDEM, &o->im, &o->status, out, errbuf);
	o->replayed = rc == 0;
	o->reused = rc == CM_EEXIST;
	return rc;
}

int
brain_once_record(PGconn *conn, const struct brain_once *o, const cJSON *out,
		  char errbuf[CM_ERRBUF_LEN])
{
	if (!o || !o->im.key)
		return 0;
	return cm_idem_store(conn, BRAIN_IDEM, &o->im, 201, out, errbuf);
}

static int
once_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct once_tx *t = arg;
	int rc = brain_once_lookup(conn, t->once, t->out, errbuf);

	if (rc != CM_ENOENT)
		return rc; /* replayed (0) or failed */
	if ((rc = t->fn(conn, t->arg, errbuf)) < 0)
		return rc;
	return brain_once_record(conn, t->once, *t->out, errbuf);
}

/* Run it in tid's transaction; once more when a concurrent request with
   the same key committed first (the second run replays it). */
static int
once_tx_tenant(const char *tid, struct brain_once *once, cm_db_work_fn fn,
	       void *arg, cJSON **out, char errbuf[CM_ERRBUF_LEN])
{
	struct once_tx t = { once, fn, arg, out };
	int rc = 0, attempt;

	for (attempt = 0; attempt < 2; attempt++) {
		cJSON_Delete(*out);
		*out = NULL;
		rc = cm_db_tx_tenant(tid, once_work, &t, errbuf);
		if (!once || !cm_idem_raced(&once->im, rc, errbuf))
			break;
	}
	if (rc < 0) {
		cJSON_Delete(*out);
		*out = NULL;
	}
	return rc;
}

struct tx_query {
	const char *sql;
	int n;
	const char *const *params;
	cJSON **out; /* NULL: a command (CM_ENOENT when no row) */
	bool lookup; /* set app.api_key_lookup for this transaction */
};

static int
tx_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	static const char on[] =
		"SELECT set_config('app.api_key_lookup', 'on', true)";
	struct tx_query *q = arg;
	int rc;

	(void)conn;
	if (q->lookup && (rc = run(on, 0, NULL, NULL, errbuf)) < 0)
		return rc;
	if (q->out)
		return run_json(q->sql, q->n, q->params, q->out, errbuf);
	return run_cmd(q->sql, q->n, q->params, errbuf);
}

int
brain_store_key_create(const char *tid, const char *name, const char *prefix,
		       const char *hash, const char *scopes,
		       const char *created_by, int64_t ttl_s,
		       struct brain_once *once, cJSON **out,
		       char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"WITH k AS (INSERT INTO brain.api_keys (tenant_id, name,"
		" prefix, key_hash, scopes, created_by, expires_at)"
		" VALUES ($1::uuid, $2, $3, $4, $5::text[], $6::uuid,"
		" CASE WHEN $7::bigint > 0 THEN now() +"
		" make_interval(secs => $7::bigint) END) RETURNING *)"
		" SELECT " KEY_JSON "::text FROM k";
	char ttl[24];
	const char *p[7] = { tid, name, prefix, hash, scopes, created_by, ttl };
	struct tx_query q = { sql, 7, p, out, false };

	snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_s);
	return once_tx_tenant(tid, once, tx_work, &q, out, errbuf);
}

int
brain_store_key_revoke(const char *tid, const char *id,
		       char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] = "UPDATE brain.api_keys SET revoked_at = now()"
				  " WHERE id = $1::uuid AND revoked_at IS NULL";
	const char *p[1] = { id };
	struct tx_query q = { sql, 1, p, NULL, false };

	return cm_db_tx_tenant(tid, tx_work, &q, errbuf);
}

int
brain_store_key_auth(const char *hash, cJSON **out, char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"UPDATE brain.api_keys k SET last_used_at = now()"
		" WHERE key_hash = $1 AND revoked_at IS NULL"
		" AND (expires_at IS NULL OR expires_at > now())"
		" RETURNING json_build_object('id', k.id, 'tenant_id',"
		" k.tenant_id, 'scopes', to_json(k.scopes),"
		" 'exp', extract(epoch FROM k.expires_at)::bigint)::text";
	const char *p[1] = { hash };
	struct tx_query q = { sql, 1, p, out, true };

	return cm_db_tx(tx_work, &q, errbuf);
}

/* ---- invitations: tenant data under row-level security ---- */

/* clang-format off */
#define INVITE_JSON \
	"json_build_object('id', i.id, 'email', i.email, 'role', i.role," \
	" 'created_at', " TS("i.created_at") \
	", 'expires_at', " TS("i.expires_at") \
	", 'accepted_at', " TS("i.accepted_at") \
	", 'revoked_at', " TS("i.revoked_at") ")"
/* clang-format on */

int
brain_store_invite_revoke(const char *tid, const char *id,
			  char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"UPDATE brain.invitations SET revoked_at = now() WHERE id ="
		" $1::uuid AND revoked_at IS NULL AND accepted_at IS NULL";
	const char *p[1] = { id };
	struct tx_query q = { sql, 1, p, NULL, false };

	return cm_db_tx_tenant(tid, tx_work, &q, errbuf);
}

static int take_seat(const char *tid, const char *email,
		     char errbuf[CM_ERRBUF_LEN]);

struct accept {
	const char *hash;
	const char *pw_hash; /* for a new user; NULL: none given */
	const char *name;
	struct brain_grant *out;
};

/* The live invitation (locked), the user (created when new), the
   membership, and the invitation used up - or nothing at all. */
static int
accept_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	static const char on[] =
		"SELECT set_config('app.invitation_lookup', 'on', true)";
	static const char sql[] =
		"UPDATE brain.invitations SET accepted_at = now()"
		" WHERE token_hash = $1 AND accepted_at IS NULL"
		" AND revoked_at IS NULL AND expires_at > now()"
		" RETURNING tenant_id, email, role";
	struct accept *a = arg;
	const char *p[1] = { a->hash };
	struct brain_user u;
	PGresult *res = NULL;
	int rc;

	(void)conn;
	if ((rc = run(on, 0, NULL, NULL, errbuf)) < 0 ||
	    (rc = run(sql, 1, p, &res, errbuf)) < 0)
		goto out;
	if (PQntuples(res) < 1) {
		rc = CM_ENOENT;
		goto out;
	}
	cm_strlcpy(a->out->tenant_id, PQgetvalue(res, 0, 0), 40);
	cm_strlcpy(a->out->role, PQgetvalue(res, 0, 2), CM_ROLE_LEN);
	rc = brain_store_user_by_email(PQgetvalue(res, 0, 1), &u, errbuf);
	if (rc == 0)
		cm_strlcpy(a->out->user_id, u.id, 40);
	else if (rc == CM_ENOENT && !a->pw_hash)
		rc = CM_EPERM; /* a new user must choose a password */
	else if (rc == CM_ENOENT)
		rc = brain_store_user_create(PQgetvalue(res, 0, 1), a->name,
					     a->pw_hash, false, a->out->user_id,
					     errbuf);
	if (rc == 0) /* its seat was held, unless the limit was lowered */
		rc = take_seat(a->out->tenant_id, PQgetvalue(res, 0, 1),
			       errbuf);
	if (rc == 0)
		rc = brain_store_membership_set(a->out->user_id,
						a->out->tenant_id, a->out->role,
						errbuf);
out:
	PQclear(res);
	return rc;
}

int
brain_store_invite_accept(const char *hash, const char *pw_hash,
			  const char *name, struct brain_grant *out,
			  char errbuf[CM_ERRBUF_LEN])
{
	struct accept a = { hash, pw_hash, name, out };

	memset(out, 0, sizeof(*out));
	return cm_db_tx(accept_work, &a, errbuf);
}

/* ---- list pages: keyset on (created_at, id), oldest first ---- */

/* clang-format off */
#define MEMBER_JSON \
	"json_build_object('user_id', u.id, 'email', u.email," \
	" 'name', u.name, 'role', m.role, 'status', u.status," \
	" 'joined_at', " TS("m.created_at") ")"
#define PAGE_KEY(col) \
	"(extract(epoch FROM " col ") * 1000000)::bigint"
#define PAGE_AFTER(ts, id) \
	" AND ($2::bigint IS NULL OR (" ts ", " id ") > ('epoch'::timestamptz" \
	" + $2::bigint * interval '1 microsecond', $3::uuid))" \
	" ORDER BY " ts ", " id " LIMIT $4::int"
#define MEMBERS_PAGE_SQL \
	"SELECT " MEMBER_JSON "::text, " PAGE_KEY("m.created_at") "," \
	" m.user_id FROM brain.memberships m JOIN brain.users u" \
	" ON u.id = m.user_id WHERE m.tenant_id = $1::uuid" \
	PAGE_AFTER("m.created_at", "m.user_id")
#define KEYS_PAGE_SQL \
	"SELECT " KEY_JSON "::text, " PAGE_KEY("k.created_at") ", k.id" \
	" FROM brain.api_keys k WHERE k.tenant_id = $1::uuid" \
	PAGE_AFTER("k.created_at", "k.id")
#define INVITES_PAGE_SQL \
	"SELECT " INVITE_JSON "::text, " PAGE_KEY("i.created_at") "," \
	" i.id FROM brain.invitations i WHERE i.tenant_id = $1::uuid" \
	PAGE_AFTER("i.created_at", "i.id")
/* clang-format on */

bool
brain_cursor_valid(const char *cursor)
{
	const char *dot = cursor ? strchr(cursor, '.') : NULL;
	char num[24];
	int64_t us;

	if (!dot || dot == cursor || dot - cursor >= (long)sizeof(num))
		return false;
	cm_strlcpy(num, cursor, (size_t)(dot - cursor) + 1);
	return cm_parse_i64(num, 0, INT64_MAX, &us) == 0 && cm_is_uuid(dot + 1);
}

struct page_query {
	const char *sql; /* $1 tenant, $2/$3 cursor, $4 limit + 1; rows:
			    json text, created_at in us, id */
	const char *tid;
	const struct brain_page *pg;
	cJSON **out;
};

/* The rows as {"items", "next_cursor"}: limit + 1 rows were asked for,
   so a last extra row means there is a next page. */
static void
render_page(PGresult *res, int limit, cJSON *out)
{
	cJSON *items = cJSON_AddArrayToObject(out, "items"), *it;
	char errbuf[CM_ERRBUF_LEN], cursor[BRAIN_CURSOR_LEN];
	int i, n = PQntuples(res);

	for (i = 0; i < n && i < limit; i++) {
		it = cm_json_parse(PQgetvalue(res, i, 0),
				   (size_t)PQgetlength(res, i, 0), errbuf);
		if (it)
			cJSON_AddItemToArray(items, it);
	}
	cursor[0] = '\0';
	if (n > limit)
		snprintf(cursor, sizeof(cursor), "%s.%s",
			 PQgetvalue(res, limit - 1, 1),
			 PQgetvalue(res, limit - 1, 2));
	cm_json_add_next_cursor(out, cursor);
}

static int
page_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct page_query *q = arg;
	char us[24] = "", id[40] = "", lim[16];
	const char *dot = q->pg->cursor ? strchr(q->pg->cursor, '.') : NULL;
	const char *p[4] = { q->tid, dot ? us : NULL, dot ? id : NULL, lim };
	PGresult *res = NULL;
	int rc;

	(void)conn;
	if (dot) {
		cm_strlcpy(us, q->pg->cursor,
			   (size_t)(dot - q->pg->cursor) + 1);
		cm_strlcpy(id, dot + 1, sizeof(id));
	}
	snprintf(lim, sizeof(lim), "%d", q->pg->limit + 1);
	if ((rc = run(q->sql, 4, p, &res, errbuf)) == 0) {
		*q->out = cJSON_CreateObject();
		render_page(res, q->pg->limit, *q->out);
	}
	PQclear(res);
	return rc;
}

static int
page_check(const struct brain_page *pg, cJSON **out, char errbuf[CM_ERRBUF_LEN])
{
	*out = NULL;
	if (pg->limit < 1 || pg->limit > BRAIN_PAGE_MAX ||
	    (pg->cursor && !brain_cursor_valid(pg->cursor))) {
		snprintf(errbuf, CM_ERRBUF_LEN, "bad limit or cursor");
		return CM_EINVAL;
	}
	return 0;
}

int
brain_store_members_page(const char *tid, const struct brain_page *pg,
			 cJSON **out, char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] = MEMBERS_PAGE_SQL;
	struct page_query q = { sql, tid, pg, out };
	int rc;

	if ((rc = page_check(pg, out, errbuf)) < 0)
		return rc;
	return page_work(NULL, &q, errbuf);
}

/* Keys and invitations are tenant data: the page runs in the tenant's
   transaction (row-level security); the tenant_id filter is a second
   guard. */
static int
tenant_page(const char *sql, const char *tid, const struct brain_page *pg,
	    cJSON **out, char errbuf[CM_ERRBUF_LEN])
{
	struct page_query q = { sql, tid, pg, out };
	int rc;

	if ((rc = page_check(pg, out, errbuf)) < 0)
		return rc;
	rc = cm_db_tx_tenant(tid, page_work, &q, errbuf);
	if (rc < 0) {
		cJSON_Delete(*out);
		*out = NULL;
	}
	return rc;
}

int
brain_store_key_page(const char *tid, const struct brain_page *pg, cJSON **out,
		     char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] = KEYS_PAGE_SQL;

	return tenant_page(sql, tid, pg, out, errbuf);
}

int
brain_store_invite_page(const char *tid, const struct brain_page *pg,
			cJSON **out, char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] = INVITES_PAGE_SQL;

	return tenant_page(sql, tid, pg, out, errbuf);
}

/* ---- seats: max_users checked and taken in one transaction ---- */

struct seats {
	int64_t max;   /* the effective max_users */
	int64_t taken; /* by others */
	bool member;   /* the email is a member already */
};

/* Lock the tenant's row (so seat checks of one tenant run one at a
   time) and read its seat limit, the seats taken by others than email
   (members, and each other email with an open invitation: it holds a
   seat until accepted, revoked or expired), and whether email is a
   member already. CM_ENOENT for a missing or deleted tenant. */
static int
lock_seats(const char *tid, const char *email, struct seats *out,
	   char errbuf[CM_ERRBUF_LEN])
{
	/* The lock first, the counts in a second statement: under READ
	   COMMITTED a statement that waited for the lock still counts
	   from the snapshot it started with. */
	static const char lock[] = "SELECT 1 FROM brain.tenants WHERE id ="
				   " $1::uuid FOR UPDATE";
	static const char sql[] =
		"SELECT t.subscription_tier, t.limits::text,"
		" (SELECT count(*) FROM brain.memberships m"
		"  WHERE m.tenant_id = t.id) +"
		" (SELECT count(DISTINCT lower(i.email)) FROM brain.invitations"
		"  i WHERE i.tenant_id = t.id AND i.accepted_at IS NULL"
		"  AND i.revoked_at IS NULL AND i.expires_at > now()"
		"  AND lower(i.email) <> lower($2) AND NOT EXISTS (SELECT 1"
		"  FROM brain.memberships m JOIN brain.users u"
		"  ON u.id = m.user_id WHERE m.tenant_id = t.id"
		"  AND lower(u.email) = lower(i.email))),"
		" EXISTS (SELECT 1 FROM brain.memberships m JOIN brain.users u"
		"  ON u.id = m.user_id WHERE m.tenant_id = t.id"
		"  AND lower(u.email) = lower($2))"
		" FROM brain.tenants t WHERE t.id = $1::uuid"
		" AND t.deleted_at IS NULL";
	const char *p[2] = { tid, email };
	cJSON *over = NULL, *lim = NULL;
	PGresult *res = NULL;
	int rc;

	if ((rc = run(lock, 1, p, NULL, errbuf)) < 0 ||
	    (rc = run(sql, 2, p, &res, errbuf)) < 0)
		goto out;
	if (PQntuples(res) < 1) {
		rc = CM_ENOENT;
		goto out;
	}
	over = cm_json_parse(PQgetvalue(res, 0, 1),
			     (size_t)PQgetlength(res, 0, 1), errbuf);
	lim = brain_limits_effective(PQgetvalue(res, 0, 0), over);
	out->max = (int64_t)cJSON_GetNumberValue(
		cJSON_GetObjectItemCaseSensitive(lim, "max_users"));
	out->member = !strcmp(PQgetvalue(res, 0, 3), "t");
	rc = cm_parse_i64(PQgetvalue(res, 0, 2), 0, INT64_MAX, &out->taken);
out:
	cJSON_Delete(over);
	cJSON_Delete(lim);
	PQclear(res);
	return rc;
}

/* 0 when email is a member or fits; CM_EAGAIN when the seats are full. */
static int
take_seat(const char *tid, const char *email, char errbuf[CM_ERRBUF_LEN])
{
	struct seats st = { 0, 0, false };
	int rc = lock_seats(tid, email, &st, errbuf);

	if (rc < 0)
		return rc;
	return st.member || st.taken < st.max ? 0 : CM_EAGAIN;
}

struct seat_member {
	const char *uid;
	const char *tid;
	const char *role;
	const char *email;
	cJSON **out;
};

static int
member_seat_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"INSERT INTO brain.memberships (user_id, tenant_id, role)"
		" VALUES ($1, $2, $3) ON CONFLICT (user_id, tenant_id)"
		" DO UPDATE SET role = EXCLUDED.role";
	struct seat_member *s = arg;
	const char *p[3] = { s->uid, s->tid, s->role };
	int rc;

	(void)conn;
	if ((rc = take_seat(s->tid, s->email, errbuf)) < 0 ||
	    (rc = run_cmd(sql, 3, p, errbuf)) < 0)
		return rc;
	*s->out = cJSON_CreateObject();
	cJSON_AddStringToObject(*s->out, "user_id", s->uid);
	cJSON_AddStringToObject(*s->out, "tenant_id", s->tid);
	cJSON_AddStringToObject(*s->out, "role", s->role);
	return 0;
}

int
brain_store_member_add_seat(const char *user_id, const char *email,
			    const char *tid, const char *role,
			    struct brain_once *once, cJSON **out,
			    char errbuf[CM_ERRBUF_LEN])
{
	struct seat_member s = { user_id, tid, role, email, out };

	*out = NULL;
	return once_tx_tenant(tid, once, member_seat_work, &s, out, errbuf);
}

struct seat_invite {
	const char *tid;
	const char *const *p; /* the 6 parameters of the insert */
	cJSON **out;
};

static int
invite_seat_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"WITH i AS (INSERT INTO brain.invitations (tenant_id, email,"
		" role, token_hash, invited_by, expires_at) VALUES ($1::uuid,"
		" $2, $3, $4, $5::uuid, now() + make_interval(secs =>"
		" $6::bigint)) RETURNING *) SELECT " INVITE_JSON
		"::text FROM i";
	struct seat_invite *s = arg;
	int rc;

	(void)conn;
	if ((rc = take_seat(s->tid, s->p[1], errbuf)) < 0)
		return rc;
	return run_json(sql, 6, s->p, s->out, errbuf);
}

int
brain_store_invite_create_seat(const char *tid, const char *email,
			       const char *role, const char *hash,
			       const char *invited_by, int64_t ttl_s,
			       struct brain_once *once, cJSON **out,
			       char errbuf[CM_ERRBUF_LEN])
{
	char ttl[24];
	const char *p[6] = { tid, email, role, hash, invited_by, ttl };
	struct seat_invite s = { tid, p, out };

	*out = NULL;
	snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_s);
	return once_tx_tenant(tid, once, invite_seat_work, &s, out, errbuf);
}

/* ---- purge ---- */

int
brain_store_tenant_purge(int limit, cJSON **ids, char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"WITH due AS (SELECT id FROM brain.tenants"
		" WHERE deleted_at IS NOT NULL AND purge_after <= now()"
		" ORDER BY purge_after LIMIT $1::int FOR UPDATE SKIP LOCKED),"
		" gone AS (DELETE FROM brain.tenants t USING due"
		" WHERE t.id = due.id RETURNING t.id)"
		" SELECT COALESCE(json_agg(id), '[]')::text FROM gone";
	char lim[16];
	const char *p[1] = { lim };

	snprintf(lim, sizeof(lim), "%d", limit);
	return run_json(sql, 1, p, ids, errbuf);
}
