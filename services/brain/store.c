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
brain_store_tenant_delete(const char *id, int64_t grace_days, cJSON **out,
			  char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"WITH t AS (UPDATE brain.tenants SET deleted_at = now(),"
		" purge_after = now() + make_interval(days => $2::int),"
		" version = version + 1, updated_at = now()"
		" WHERE id = $1::uuid AND deleted_at IS NULL RETURNING *)"
		" SELECT " TENANT_JSON " FROM t";
	char days[24];
	const char *p[2] = { id, days };

	snprintf(days, sizeof(days), "%lld", (long long)grace_days);
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
brain_store_members(const char *tenant_id, cJSON **out,
		    char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"SELECT COALESCE(json_agg(json_build_object('user_id', u.id,"
		" 'email', u.email, 'name', u.name, 'role', m.role,"
		" 'status', u.status, 'joined_at', " TS(
			"m.created_at") ")"
					" ORDER BY lower(u.email)), '[]')::text"
					" FROM brain.memberships m JOIN "
					"brain.users u ON u.id = m.user_id"
					" WHERE m.tenant_id = $1::uuid";
	const char *p[1] = { tenant_id };

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
		       const char *created_by, int64_t ttl_s, cJSON **out,
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
	return cm_db_tx_tenant(tid, tx_work, &q, errbuf);
}

int
brain_store_key_list(const char *tid, cJSON **out, char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"SELECT COALESCE(json_agg(" KEY_JSON " ORDER BY k.created_at),"
		" '[]')::text FROM brain.api_keys k";
	struct tx_query q = { sql, 0, NULL, out, false };

	return cm_db_tx_tenant(tid, tx_work, &q, errbuf);
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
brain_store_invite_create(const char *tid, const char *email, const char *role,
			  const char *hash, const char *invited_by,
			  int64_t ttl_s, cJSON **out,
			  char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] =
		"WITH i AS (INSERT INTO brain.invitations (tenant_id, email,"
		" role, token_hash, invited_by, expires_at) VALUES ($1::uuid,"
		" $2, $3, $4, $5::uuid, now() + make_interval(secs =>"
		" $6::bigint)) RETURNING *) SELECT " INVITE_JSON
		"::text FROM i";
	char ttl[24];
	const char *p[6] = { tid, email, role, hash, invited_by, ttl };
	struct tx_query q = { sql, 6, p, out, false };

	snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_s);
	return cm_db_tx_tenant(tid, tx_work, &q, errbuf);
}

int
brain_store_invite_list(const char *tid, cJSON **out,
			char errbuf[CM_ERRBUF_LEN])
{
	static const char sql[] = "SELECT COALESCE(json_agg(" INVITE_JSON
				  " ORDER BY i.created_at),"
				  " '[]')::text FROM brain.invitations i";
	struct tx_query q = { sql, 0, NULL, out, false };

	return cm_db_tx_tenant(tid, tx_work, &q, errbuf);
}

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
