/* store.c - vault-client's SQL: keyring, secret versions, audit. */
#include "store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/db.h"
#include "common/mem.h"

#include "common/banned.h"

#define DEK_AAD "bz-vault-client:dek:v1"
#define TS(col)                                                           \
	"to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS." \
	"US\"Z\"')"

/*
 * Each statement is written once with {S} for the table prefix (tenant_ /
 * platform_) and {K} for the owner column (tenant_id / service); both
 * variants are built on first use.
 */
enum query {
	Q_ENSURE,
	Q_LOCK,
	Q_INSERT,
	Q_BUMP,
	Q_CURRENT,
	Q_VERSION,
	Q_DELETE,
	Q_UNDELETE,
	Q_DESTROY,
	Q_META,
	Q_VERSIONS,
	Q_LIST,
	Q_COUNT
};

static const char *const templates[Q_COUNT] = {
	[Q_ENSURE] = "INSERT INTO vault_client.{S}secrets ({K}, name) "
		     "VALUES ($1, $2) ON CONFLICT DO NOTHING",
	[Q_LOCK] = "SELECT current_version FROM vault_client.{S}secrets "
		   "WHERE {K} = $1 AND name = $2 FOR UPDATE",
	[Q_INSERT] = "INSERT INTO vault_client.{S}secret_versions ({K}, name, "
		     "version, ciphertext) VALUES ($1, $2, $3, "
		     "decode($4, 'hex')) RETURNING " TS("created_at"),
	[Q_BUMP] = "UPDATE vault_client.{S}secrets SET current_version = $3, "
		   "updated_at = now() WHERE {K} = $1 AND name = $2",
	[Q_CURRENT] = "SELECT current_version FROM vault_client.{S}secrets "
		      "WHERE {K} = $1 AND name = $2",
	[Q_VERSION] = "SELECT encode(ciphertext, 'hex'), " TS(
		"created_at") ", "
			      "coalesce(" TS(
				      "deletion_time") ", ''), destroyed "
						       "FROM "
						       "vault_client.{S}secret_"
						       "versions "
						       "WHERE {K} = $1 AND "
						       "name = $2 AND version "
						       "= $3",
	[Q_DELETE] = "UPDATE vault_client.{S}secret_versions SET "
		     "deletion_time = now() WHERE {K} = $1 AND name = $2 AND "
		     "version = ANY($3::int[]) AND deletion_time IS NULL "
		     "AND NOT destroyed",
	[Q_UNDELETE] = "UPDATE vault_client.{S}secret_versions SET "
		       "deletion_time = NULL WHERE {K} = $1 AND name = $2 AND "
		       "version = ANY($3::int[]) AND NOT destroyed",
	[Q_DESTROY] = "UPDATE vault_client.{S}secret_versions SET "
		      "ciphertext = NULL, destroyed = true WHERE {K} = $1 AND "
		      "name = $2 AND version = ANY($3::int[])",
	[Q_META] = "SELECT current_version, " TS("created_at") ", " TS(
		"updated_at") " FROM vault_client.{S}secrets "
			      "WHERE {K} = $1 AND name = $2",
	[Q_VERSIONS] = "SELECT version, " TS(
		"created_at") ", "
			      "coalesce(" TS(
				      "deletion_time") ", ''), destroyed "
						       "FROM "
						       "vault_client.{S}secret_"
						       "versions "
						       "WHERE {K} = $1 AND "
						       "name = $2 ORDER BY "
						       "version",
	[Q_LIST] = "SELECT name, current_version, " TS(
		"updated_at") " "
			      "FROM vault_client.{S}secrets WHERE {K} = $1 "
			      "AND starts_with(name, $2) AND name > $3 "
			      "AND current_version > 0 ORDER BY name LIMIT $4",
};

static char *queries[2][Q_COUNT];
static pthread_once_t queries_once = PTHREAD_ONCE_INIT;

static char *
expand(const char *tpl, const char *prefix, const char *key)
{
	struct cm_buf b = CM_BUF_INIT(0);
	const char *p;

	for (p = tpl; *p; p++) {
		if (!strncmp(p, "{S}", 3)) {
			cm_buf_puts(&b, prefix);
			p += 2;
		} else if (!strncmp(p, "{K}", 3)) {
			cm_buf_puts(&b, key);
			p += 2;
		} else {
			cm_buf_putc(&b, *p);
		}
	}
	return cm_buf_detach(&b, NULL);
}

static void
build_queries(void)
{
	int i;

	for (i = 0; i < Q_COUNT; i++) {
		queries[VC_SCOPE_TENANT][i] =
			expand(templates[i], "tenant_", "tenant_id");
		queries[VC_SCOPE_PLATFORM][i] =
			expand(templates[i], "platform_", "service");
	}
}

static const char *
sql(enum vc_scope scope, enum query q)
{
	pthread_once(&queries_once, build_queries);
	return queries[scope][q];
}

/* Run fn in the transaction p's scope wants. */
static int
run_tx(const struct vc_path *p, cm_db_work_fn fn, void *arg,
       char errbuf[CM_ERRBUF_LEN])
{
	if (p->scope == VC_SCOPE_TENANT)
		return cm_db_tx_tenant(p->owner, fn, arg, errbuf);
	return cm_db_tx(fn, arg, errbuf);
}

void
vc_secret_release(struct vc_secret *s)
{
	if (s->json) {
		cm_memzero(s->json, s->len);
		free(s->json);
	}
	memset(s, 0, sizeof(*s));
}

/* The AAD of one version: binds scope, owner, name and version. */
static void
version_aad(const struct vc_path *p, int version, struct cm_buf *aad)
{
	cm_buf_puts(aad, "bz-vault-client:v1");
	cm_buf_putc(aad, '\0');
	cm_buf_puts(aad, p->scope == VC_SCOPE_TENANT ? "tenant" : "platform");
	cm_buf_putc(aad, '\0');
	cm_buf_puts(aad, p->owner);
	cm_buf_putc(aad, '\0');
	cm_buf_puts(aad, p->name);
	cm_buf_putc(aad, '\0');
	cm_buf_printf(aad, "%d", version);
}

/* Current version of p (0 if the secret row is absent: CM_ENOENT). */
static int
current_version(PGconn *conn, const struct vc_path *p, enum query q, int *out,
		char errbuf[CM_ERRBUF_LEN])
{
	const char *params[2] = { p->owner, p->name };
	PGresult *res = NULL;
	int64_t v = 0;
	int rc;

	rc = cm_db_query(conn, sql(p->scope, q), 2, params, &res, errbuf);
	if (rc == 0 && PQntuples(res) == 0)
		rc = CM_ENOENT;
	if (rc == 0 &&
	    cm_parse_i64(PQgetvalue(res, 0, 0), 0, INT32_MAX, &v) < 0)
		rc = CM_EIO;
	*out = (int)v;
	PQclear(res);
	return rc;
}

/* ---- keyring ---- */

struct keyring_work {
	const unsigned char *master, *old;
	unsigned char *dek;
	bool rotated;
};

static int
keyring_create(PGconn *conn, struct keyring_work *w, char errbuf[CM_ERRBUF_LEN])
{
	unsigned char kcv[VC_KCV_LEN], *wrapped = NULL;
	char *kcv_hex = NULL, *wrapped_hex = NULL;
	const char *params[2];
	size_t len = 0;
	int rc;

	if ((rc = vc_random(w->dek, VC_KEY_LEN)) < 0 ||
	    (rc = vc_seal(w->master, DEK_AAD, strlen(DEK_AAD), w->dek,
			  VC_KEY_LEN, &wrapped, &len)) < 0) {
		snprintf(errbuf, CM_ERRBUF_LEN, "cannot create the data key");
		return rc;
	}
	vc_kcv(w->master, kcv);
	params[0] = kcv_hex = vc_hex_encode(kcv, sizeof(kcv));
	params[1] = wrapped_hex = vc_hex_encode(wrapped, len);
	rc = cm_db_query(conn,
			 "INSERT INTO vault_client.keyring (id, kcv, "
			 "wrapped_key) VALUES (1, decode($1, 'hex'), "
			 "decode($2, 'hex'))",
			 2, params, NULL, errbuf);
	free(kcv_hex);
	free(wrapped_hex);
	free(wrapped);
	return rc;
}

/* Unwrap the stored key with key; CM_EACCES if it does not open. */
static int
keyring_unwrap(const unsigned char *key, const char *wrapped_hex,
	       unsigned char *dek)
{
	unsigned char *wrapped = NULL, *pt = NULL;
	size_t wlen = 0, len = 0;
	int rc;

	if ((rc = vc_hex_decode(wrapped_hex, &wrapped, &wlen)) < 0)
		return CM_EIO;
	rc = vc_open(key, DEK_AAD, strlen(DEK_AAD), wrapped, wlen, &pt, &len);
	if (rc == 0 && len != VC_KEY_LEN)
		rc = CM_EIO;
	if (rc == 0)
		memcpy(dek, pt, VC_KEY_LEN);
	if (pt) {
		cm_memzero(pt, len);
		free(pt);
	}
	free(wrapped);
	return rc;
}

/* The stored KCV matches the old key: re-wrap under the new one. */
static int
keyring_rewrap(PGconn *conn, struct keyring_work *w, const char *kcv_hex,
	       char errbuf[CM_ERRBUF_LEN])
{
	unsigned char kcv[VC_KCV_LEN], *wrapped = NULL;
	char *new_kcv = NULL, *wrapped_hex = NULL;
	const char *params[3];
	size_t len = 0;
	int rc;

	if ((rc = vc_seal(w->master, DEK_AAD, strlen(DEK_AAD), w->dek,
			  VC_KEY_LEN, &wrapped, &len)) < 0) {
		snprintf(errbuf, CM_ERRBUF_LEN, "cannot re-wrap the data key");
		return rc;
	}
	vc_kcv(w->master, kcv);
	params[0] = new_kcv = vc_hex_encode(kcv, sizeof(kcv));
	params[1] = wrapped_hex = vc_hex_encode(wrapped, len);
	params[2] = kcv_hex;
	rc = cm_db_query(conn,
			 "UPDATE vault_client.keyring SET kcv = decode($1, "
			 "'hex'), wrapped_key = decode($2, 'hex'), rotated_at "
			 "= now() WHERE id = 1 AND kcv = decode($3, 'hex')",
			 3, params, NULL, errbuf);
	w->rotated = rc == 0;
	free(new_kcv);
	free(wrapped_hex);
	free(wrapped);
	return rc;
}

static bool
kcv_matches(const unsigned char *key, const char *stored_hex)
{
	unsigned char kcv[VC_KCV_LEN];
	char *hex;
	bool eq;

	vc_kcv(key, kcv);
	hex = vc_hex_encode(kcv, sizeof(kcv));
	eq = cm_consttime_eq(hex, strlen(hex), stored_hex, strlen(stored_hex));
	free(hex);
	return eq;
}

static int
keyring_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct keyring_work *w = arg;
	PGresult *res = NULL;
	const char *kcv, *wrapped;
	int rc;

	rc = cm_db_query(conn,
			 "SELECT encode(kcv, 'hex'), encode(wrapped_key, "
			 "'hex') FROM vault_client.keyring WHERE id = 1 "
			 "FOR UPDATE",
			 0, NULL, &res, errbuf);
	if (rc < 0)
		goto out;
	if (PQntuples(res) == 0) {
		rc = keyring_create(conn, w, errbuf);
		goto out;
	}
	kcv = PQgetvalue(res, 0, 0);
	wrapped = PQgetvalue(res, 0, 1);
	if (kcv_matches(w->master, kcv)) {
		rc = keyring_unwrap(w->master, wrapped, w->dek);
	} else if (w->old && kcv_matches(w->old, kcv)) {
		rc = keyring_unwrap(w->old, wrapped, w->dek);
		if (rc == 0)
			rc = keyring_rewrap(conn, w, kcv, errbuf);
	} else {
		rc = CM_EACCES;
	}
	if (rc == CM_EACCES)
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "master key does not match the keyring (wrong "
			 "VAULT_MASTER_KEY?)");
	else if (rc < 0 && !errbuf[0])
		snprintf(errbuf, CM_ERRBUF_LEN, "keyring is damaged");
out:
	PQclear(res);
	return rc;
}

int
vc_store_keyring(const unsigned char master[VC_KEY_LEN],
		 const unsigned char *old, bool *rotated,
		 unsigned char dek[VC_KEY_LEN], char errbuf[CM_ERRBUF_LEN])
{
	struct keyring_work w = { master, old, dek, false };
	int rc;

	rc = cm_db_tx(keyring_work, &w, errbuf);
	if (rc == CM_EEXIST) /* another replica created it first */
		rc = cm_db_tx(keyring_work, &w, errbuf);
	*rotated = w.rotated;
	if (rc < 0)
		cm_memzero(dek, VC_KEY_LEN);
	return rc;
}

static int
exists_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	PGresult *res = NULL;
	int rc;

	rc = cm_db_query(conn, "SELECT 1 FROM vault_client.keyring", 0, NULL,
			 &res, errbuf);
	if (rc == 0)
		*(bool *)arg = PQntuples(res) > 0;
	PQclear(res);
	return rc;
}

int
vc_store_keyring_exists(bool *exists, char errbuf[CM_ERRBUF_LEN])
{
	*exists = false;
	return cm_db_tx(exists_work, exists, errbuf);
}

/* ---- read and write ---- */

struct rw_work {
	const unsigned char *dek;
	const struct vc_path *p;
	int version;
	const char *json;
	int64_t cas;
	struct vc_secret *secret;
	struct vc_version *meta;
};

static void
meta_from_row(PGresult *res, int row, int first, struct vc_version *m)
{
	cm_strlcpy(m->created_time, PQgetvalue(res, row, first),
		   sizeof(m->created_time));
	cm_strlcpy(m->deletion_time, PQgetvalue(res, row, first + 1),
		   sizeof(m->deletion_time));
	m->destroyed = !strcmp(PQgetvalue(res, row, first + 2), "t");
}

static int
decrypt_version(const struct rw_work *w, const char *hex,
		char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf aad = CM_BUF_INIT(0);
	unsigned char *ct = NULL, *pt = NULL;
	size_t ctlen = 0, len = 0;
	int rc;

	version_aad(w->p, w->version, &aad);
	rc = vc_hex_decode(hex, &ct, &ctlen);
	if (rc == 0)
		rc = vc_open(w->dek, aad.data, aad.len, ct, ctlen, &pt, &len);
	if (rc < 0) {
		snprintf(errbuf, CM_ERRBUF_LEN, "decrypt failed");
		rc = CM_EACCES;
	} else {
		w->secret->json = (char *)pt;
		w->secret->len = len;
	}
	free(ct);
	cm_buf_release(&aad);
	return rc;
}

static int
read_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct rw_work *w = arg;
	struct vc_version *m = &w->secret->meta;
	PGresult *res = NULL;
	char vbuf[16];
	const char *params[3] = { w->p->owner, w->p->name, vbuf };
	int rc = 0;

	if (!w->version)
		rc = current_version(conn, w->p, Q_CURRENT, &w->version,
				     errbuf);
	if (rc < 0 || !w->version)
		return rc < 0 ? rc : CM_ENOENT;
	snprintf(vbuf, sizeof(vbuf), "%d", w->version);
	rc = cm_db_query(conn, sql(w->p->scope, Q_VERSION), 3, params, &res,
			 errbuf);
	if (rc == 0 && PQntuples(res) == 0)
		rc = CM_ENOENT;
	if (rc < 0)
		goto out;
	m->version = w->version;
	meta_from_row(res, 0, 1, m);
	if (m->destroyed || m->deletion_time[0])
		rc = CM_ENOENT;
	else
		rc = decrypt_version(w, PQgetvalue(res, 0, 0), errbuf);
out:
	PQclear(res);
	return rc;
}

int
vc_store_read(const unsigned char dek[VC_KEY_LEN], const struct vc_path *p,
	      int version, struct vc_secret *out, char errbuf[CM_ERRBUF_LEN])
{
	struct rw_work w = { .dek = dek, .p = p, .version = version };
	int rc;

	memset(out, 0, sizeof(*out));
	w.secret = out;
	rc = run_tx(p, read_work, &w, errbuf);
	if (rc < 0 && out->json)
		vc_secret_release(out);
	return rc;
}

/* Seal and insert version v of the locked secret. */
static int
insert_version(PGconn *conn, struct rw_work *w, int v,
	       char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf aad = CM_BUF_INIT(0);
	unsigned char *ct = NULL;
	char *hex = NULL, vbuf[16];
	const char *params[4] = { w->p->owner, w->p->name, vbuf, NULL };
	PGresult *res = NULL;
	size_t len = 0;
	int rc;

	snprintf(vbuf, sizeof(vbuf), "%d", v);
	version_aad(w->p, v, &aad);
	rc = vc_seal(w->dek, aad.data, aad.len, w->json, strlen(w->json), &ct,
		     &len);
	if (rc < 0) {
		snprintf(errbuf, CM_ERRBUF_LEN, "encrypt failed");
		goto out;
	}
	params[3] = hex = vc_hex_encode(ct, len);
	rc = cm_db_query(conn, sql(w->p->scope, Q_INSERT), 4, params, &res,
			 errbuf);
	if (rc == 0)
		rc = cm_db_query(conn, sql(w->p->scope, Q_BUMP), 3, params,
				 NULL, errbuf);
	if (rc == 0) {
		memset(w->meta, 0, sizeof(*w->meta));
		w->meta->version = v;
		cm_strlcpy(w->meta->created_time, PQgetvalue(res, 0, 0),
			   sizeof(w->meta->created_time));
	}
out:
	PQclear(res);
	free(hex);
	free(ct);
	cm_buf_release(&aad);
	return rc;
}

static int
write_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct rw_work *w = arg;
	const char *params[2] = { w->p->owner, w->p->name };
	int cur = 0, rc;

	rc = cm_db_query(conn, sql(w->p->scope, Q_ENSURE), 2, params, NULL,
			 errbuf);
	if (rc == 0)
		rc = current_version(conn, w->p, Q_LOCK, &cur, errbuf);
	if (rc < 0)
		return rc;
	if (w->cas >= 0 && w->cas != cur) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "check-and-set parameter did not match the current "
			 "version");
		return CM_ESTALE;
	}
	if (cur == INT32_MAX)
		return CM_E2BIG;
	return insert_version(conn, w, cur + 1, errbuf);
}

int
vc_store_write(const unsigned char dek[VC_KEY_LEN], const struct vc_path *p,
	       const char *json, int64_t cas, struct vc_version *out,
	       char errbuf[CM_ERRBUF_LEN])
{
	struct rw_work w = { .dek = dek, .p = p, .json = json, .cas = cas };

	w.meta = out;
	if (strlen(json) > VC_VALUE_MAX)
		return CM_E2BIG;
	return run_tx(p, write_work, &w, errbuf);
}

/* ---- version operations, metadata, list ---- */

struct versions_work {
	const struct vc_path *p;
	enum query q;
	const int *versions;
	int n;
	cJSON *json;
};

static int
versions_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct versions_work *w = arg;
	struct cm_buf list = CM_BUF_INIT(0);
	const char *params[3] = { w->p->owner, w->p->name, NULL };
	int cur = 0, i, rc;

	rc = current_version(conn, w->p, Q_LOCK, &cur, errbuf);
	if (rc < 0)
		goto out;
	cm_buf_putc(&list, '{');
	if (w->n == 0)
		cm_buf_printf(&list, "%d", cur);
	for (i = 0; i < w->n; i++)
		cm_buf_printf(&list, "%s%d", i ? "," : "", w->versions[i]);
	cm_buf_putc(&list, '}');
	params[2] = cm_buf_str(&list);
	rc = cm_db_query(conn, sql(w->p->scope, w->q), 3, params, NULL, errbuf);
out:
	cm_buf_release(&list);
	return rc;
}

static int
versions_op(const struct vc_path *p, enum query q, const int *versions, int n,
	    char errbuf[CM_ERRBUF_LEN])
{
	struct versions_work w = { p, q, versions, n, NULL };

	if (n < 0 || n > VC_VERSIONS_MAX)
		return CM_EINVAL;
	return run_tx(p, versions_work, &w, errbuf);
}

int
vc_store_delete(const struct vc_path *p, const int *versions, int n,
		char errbuf[CM_ERRBUF_LEN])
{
	return versions_op(p, Q_DELETE, versions, n, errbuf);
}

int
vc_store_undelete(const struct vc_path *p, const int *versions, int n,
		  char errbuf[CM_ERRBUF_LEN])
{
	return n ? versions_op(p, Q_UNDELETE, versions, n, errbuf) : CM_EINVAL;
}

int
vc_store_destroy(const struct vc_path *p, const int *versions, int n,
		 char errbuf[CM_ERRBUF_LEN])
{
	return n ? versions_op(p, Q_DESTROY, versions, n, errbuf) : CM_EINVAL;
}

static cJSON *
versions_json(PGresult *res)
{
	cJSON *obj = cJSON_CreateObject(), *v;
	struct vc_version m;
	int i;

	for (i = 0; i < PQntuples(res); i++) {
		memset(&m, 0, sizeof(m));
		meta_from_row(res, i, 1, &m);
		v = cJSON_AddObjectToObject(obj, PQgetvalue(res, i, 0));
		cJSON_AddStringToObject(v, "created_time", m.created_time);
		cJSON_AddStringToObject(v, "deletion_time", m.deletion_time);
		cJSON_AddBoolToObject(v, "destroyed", m.destroyed);
	}
	return obj;
}

static int
meta_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct versions_work *w = arg;
	const char *params[2] = { w->p->owner, w->p->name };
	PGresult *res = NULL, *vres = NULL;
	int rc;

	rc = cm_db_query(conn, sql(w->p->scope, Q_META), 2, params, &res,
			 errbuf);
	if (rc == 0 && PQntuples(res) == 0)
		rc = CM_ENOENT;
	if (rc == 0)
		rc = cm_db_query(conn, sql(w->p->scope, Q_VERSIONS), 2, params,
				 &vres, errbuf);
	if (rc < 0)
		goto out;
	w->json = cJSON_CreateObject();
	cJSON_AddStringToObject(w->json, "name", w->p->name);
	cJSON_AddNumberToObject(w->json, "current_version",
				strtol(PQgetvalue(res, 0, 0), NULL, 10));
	cJSON_AddStringToObject(w->json, "created_time", PQgetvalue(res, 0, 1));
	cJSON_AddStringToObject(w->json, "updated_time", PQgetvalue(res, 0, 2));
	cJSON_AddItemToObject(w->json, "versions", versions_json(vres));
out:
	PQclear(res);
	PQclear(vres);
	return rc;
}

int
vc_store_metadata(const struct vc_path *p, cJSON **out,
		  char errbuf[CM_ERRBUF_LEN])
{
	struct versions_work w = { .p = p };
	int rc;

	rc = run_tx(p, meta_work, &w, errbuf);
	if (rc < 0) {
		cJSON_Delete(w.json);
		w.json = NULL;
	}
	*out = w.json;
	return rc;
}

struct list_work {
	const char *params[4];
	cJSON *items;
	int limit;
	char *next;
	enum vc_scope scope;
};

static int
list_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct list_work *w = arg;
	PGresult *res = NULL;
	cJSON *item;
	int i, n, rc;

	rc = cm_db_query(conn, sql(w->scope, Q_LIST), 4, w->params, &res,
			 errbuf);
	if (rc < 0)
		return rc;
	n = PQntuples(res);
	w->items = cJSON_CreateArray();
	for (i = 0; i < n && i < w->limit; i++) {
		item = cJSON_CreateObject();
		cJSON_AddStringToObject(item, "name", PQgetvalue(res, i, 0));
		cJSON_AddNumberToObject(
			item, "current_version",
			strtol(PQgetvalue(res, i, 1), NULL, 10));
		cJSON_AddStringToObject(item, "updated_time",
					PQgetvalue(res, i, 2));
		cJSON_AddItemToArray(w->items, item);
	}
	if (n > w->limit) /* one more row was fetched: there is a next page */
		cm_strlcpy(w->next, PQgetvalue(res, w->limit - 1, 0),
			   VC_NAME_MAX + 1);
	PQclear(res);
	return 0;
}

int
vc_store_list(enum vc_scope scope, const char *owner, const char *prefix,
	      const char *cursor, int limit, cJSON **items,
	      char next_cursor[VC_NAME_MAX + 1], char errbuf[CM_ERRBUF_LEN])
{
	struct list_work w = { .limit = limit, .next = next_cursor };
	char lbuf[16];
	int rc;

	snprintf(lbuf, sizeof(lbuf), "%d", limit + 1);
	w.params[0] = owner;
	w.params[1] = prefix;
	w.params[2] = cursor;
	w.params[3] = lbuf;
	w.scope = scope;
	next_cursor[0] = '\0';
	*items = NULL;
	if (limit < 1)
		return CM_EINVAL;
	if (scope == VC_SCOPE_TENANT)
		rc = cm_db_tx_tenant(owner, list_work, &w, errbuf);
	else
		rc = cm_db_tx(list_work, &w, errbuf);
	if (rc < 0) {
		cJSON_Delete(w.items);
		w.items = NULL;
	}
	*items = w.items;
	return rc;
}

int
vc_store_owners(enum vc_scope scope, cJSON **out, char errbuf[CM_ERRBUF_LEN])
{
	PGconn *conn = cm_db_conn(errbuf);
	PGresult *res = NULL;
	int i, rc;

	*out = NULL;
	if (!conn)
		return CM_EIO;
	rc = cm_db_query(conn,
			 scope == VC_SCOPE_TENANT
				 ? "SELECT id::text FROM brain.tenants "
				   "ORDER BY id"
				 : "SELECT DISTINCT service FROM "
				   "vault_client.platform_secrets ORDER BY 1",
			 0, NULL, &res, errbuf);
	if (rc == 0) {
		*out = cJSON_CreateArray();
		for (i = 0; i < PQntuples(res); i++)
			cJSON_AddItemToArray(
				*out,
				cJSON_CreateString(PQgetvalue(res, i, 0)));
	}
	PQclear(res);
	return rc;
}

/* ---- audit: one row, or a batch (auditq.h) ---- */

/* Append s to an array literal as one element: quoted, or NULL. Runs
   without a quote or backslash (all of them, in practice) are copied
   whole. */
static void
array_put(struct cm_buf *b, const char *s)
{
	size_t n;

	cm_buf_putc(b, b->len ? ',' : '{');
	if (!s) {
		cm_buf_puts(b, "NULL");
		return;
	}
	cm_buf_putc(b, '"');
	while (*s) {
		n = strcspn(s, "\"\\");
		cm_buf_add(b, s, n);
		s += n;
		if (*s) {
			cm_buf_putc(b, '\\');
			cm_buf_putc(b, *s++);
		}
	}
	cm_buf_putc(b, '"');
}

/* The whole batch is one call of vault_client.audit_append (migration
   0003): one round trip and one transaction (autocommit), each column an
   array parameter, tenant rows inserted under their own app.tenant_id
   and platform rows (tenant NULL) into platform_audit. */
int
vc_store_audit_batch(const struct vc_audit *rows, size_t n, void *ctx,
		     char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf col[7];
	const char *params[7];
	PGconn *conn;
	size_t i;
	int c, rc = 0;

	(void)ctx;
	if (!n)
		return 0;
	for (c = 0; c < 7; c++)
		cm_buf_init(&col[c], 0);
	for (i = 0; i < n; i++) {
		array_put(&col[0], rows[i].scope == VC_SCOPE_TENANT
					   ? rows[i].tenant_id
					   : NULL);
		array_put(&col[1], rows[i].caller);
		array_put(&col[2], rows[i].op);
		array_put(&col[3], rows[i].path);
		array_put(&col[4], rows[i].allowed ? "t" : "f");
		array_put(&col[5], rows[i].reason);
		array_put(&col[6], rows[i].request_id);
	}
	for (c = 0; c < 7; c++) {
		cm_buf_putc(&col[c], '}');
		params[c] = cm_buf_str(&col[c]);
		if (cm_buf_error(&col[c]))
			rc = CM_ENOMEM;
	}
	if (rc < 0)
		snprintf(errbuf, CM_ERRBUF_LEN, "audit batch too large");
	else if (!(conn = cm_db_conn(errbuf)))
		rc = CM_EIO;
	else
		rc = cm_db_query(conn,
				 "SELECT vault_client.audit_append($1::uuid[], "
				 "$2::text[], $3::text[], $4::text[], "
				 "$5::boolean[], $6::text[], $7::text[])",
				 7, params, NULL, errbuf);
	for (c = 0; c < 7; c++)
		cm_buf_release(&col[c]);
	return rc;
}

int
vc_store_audit(const struct vc_audit *a, char errbuf[CM_ERRBUF_LEN])
{
	return vc_store_audit_batch(a, 1, NULL, errbuf);
}

/* ---- the tenant audit read ---- */

struct audit_list_work {
	const char *tenant_id;
	int64_t before;
	int limit;
	cJSON *items;
	char *next;
};

static cJSON *
audit_row_json(PGresult *res, int i)
{
	cJSON *item = cJSON_CreateObject();

	cJSON_AddNumberToObject(
		item, "id", (double)strtoll(PQgetvalue(res, i, 0), NULL, 10));
	cJSON_AddStringToObject(item, "at", PQgetvalue(res, i, 1));
	cJSON_AddStringToObject(item, "caller", PQgetvalue(res, i, 2));
	cJSON_AddStringToObject(item, "op", PQgetvalue(res, i, 3));
	cJSON_AddStringToObject(item, "path", PQgetvalue(res, i, 4));
	cJSON_AddBoolToObject(item, "allowed",
			      !strcmp(PQgetvalue(res, i, 5), "t"));
	cJSON_AddStringToObject(item, "reason", PQgetvalue(res, i, 6));
	cJSON_AddStringToObject(item, "request_id", PQgetvalue(res, i, 7));
	return item;
}

static int
audit_list_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct audit_list_work *w = arg;
	char before[24], lim[16];
	const char *params[3] = { w->tenant_id, before, lim };
	PGresult *res = NULL;
	int i, n, rc;

	snprintf(before, sizeof(before), "%lld",
		 (long long)(w->before > 0 ? w->before : INT64_MAX));
	snprintf(lim, sizeof(lim), "%d", w->limit + 1);
	rc = cm_db_query(conn,
			 "SELECT id, " TS("at") ", caller, op, path, allowed, "
						"reason, request_id FROM "
						"vault_client.audit WHERE "
						"tenant_id = $1 AND id < "
						"$2::bigint ORDER BY id DESC "
						"LIMIT $3::int",
			 3, params, &res, errbuf);
	if (rc < 0)
		return rc;
	n = PQntuples(res);
	w->items = cJSON_CreateArray();
	for (i = 0; i < n && i < w->limit; i++)
		cJSON_AddItemToArray(w->items, audit_row_json(res, i));
	if (n > w->limit)
		cm_strlcpy(w->next, PQgetvalue(res, w->limit - 1, 0), 24);
	PQclear(res);
	return 0;
}

int
vc_store_audit_list(const char *tenant_id, int64_t before_id, int limit,
		    cJSON **items, char next_cursor[24],
		    char errbuf[CM_ERRBUF_LEN])
{
	struct audit_list_work w = { tenant_id, before_id, limit, NULL,
				     next_cursor };
	int rc;

	next_cursor[0] = '\0';
	*items = NULL;
	if (limit < 1)
		return CM_EINVAL;
	rc = cm_db_tx_tenant(tenant_id, audit_list_work, &w, errbuf);
	if (rc < 0) {
		cJSON_Delete(w.items);
		w.items = NULL;
	}
	*items = w.items;
	return rc;
}

/* ---- idempotency ---- */

struct idem_work {
	const char *tenant_id, *key;
	const unsigned char *hash;
	enum vc_idem_state state;
	int status;
	char *response;
};

/* The key exists: the same request (replay or still running) or not. */
static int
idem_existing(PGconn *conn, struct idem_work *w, const char *hash_hex,
	      char errbuf[CM_ERRBUF_LEN])
{
	const char *params[2] = { w->tenant_id, w->key };
	PGresult *res = NULL;
	int rc;

	rc = cm_db_query(conn,
			 "SELECT encode(request_hash, 'hex'), status, "
			 "coalesce(response, '') FROM vault_client.idempotency "
			 "WHERE tenant_id = $1 AND key = $2",
			 2, params, &res, errbuf);
	if (rc == 0 && PQntuples(res) != 1)
		rc = CM_EAGAIN; /* expired in between: try the claim again */
	if (rc < 0)
		goto out;
	w->status = (int)strtol(PQgetvalue(res, 0, 1), NULL, 10);
	if (!cm_consttime_eq(PQgetvalue(res, 0, 0),
			     (size_t)PQgetlength(res, 0, 0), hash_hex,
			     strlen(hash_hex)))
		w->state = VC_IDEM_MISMATCH;
	else if (w->status == 0)
		w->state = VC_IDEM_IN_PROGRESS;
	else {
		w->state = VC_IDEM_REPLAY;
		w->response = cm_xstrdup(PQgetvalue(res, 0, 2));
	}
out:
	PQclear(res);
	return rc;
}

static int
idem_begin_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct idem_work *w = arg;
	char *hex = vc_hex_encode(w->hash, 32);
	const char *params[3] = { w->tenant_id, w->key, hex };
	PGresult *res = NULL;
	int rc;

	rc = cm_db_query(conn,
			 "DELETE FROM vault_client.idempotency WHERE "
			 "created_at < now() - interval '1 day'",
			 0, NULL, NULL, errbuf);
	if (rc == 0)
		rc = cm_db_query(conn,
				 "INSERT INTO vault_client.idempotency "
				 "(tenant_id, key, request_hash) VALUES ($1, "
				 "$2, decode($3, 'hex')) ON CONFLICT DO "
				 "NOTHING RETURNING 1",
				 3, params, &res, errbuf);
	if (rc == 0 && PQntuples(res) == 1)
		w->state = VC_IDEM_NEW;
	else if (rc == 0)
		rc = idem_existing(conn, w, hex, errbuf);
	PQclear(res);
	free(hex);
	return rc;
}

int
vc_store_idem_begin(const char *tenant_id, const char *key,
		    const unsigned char hash[32], enum vc_idem_state *state,
		    int *status, char **response, char errbuf[CM_ERRBUF_LEN])
{
	struct idem_work w = { tenant_id, key, hash, VC_IDEM_NEW, 0, NULL };
	int rc;

	rc = cm_db_tx_tenant(tenant_id, idem_begin_work, &w, errbuf);
	if (rc == CM_EAGAIN)
		rc = cm_db_tx_tenant(tenant_id, idem_begin_work, &w, errbuf);
	*state = w.state;
	*status = w.status;
	*response = w.response;
	return rc;
}

struct idem_end_work {
	const char *params[4];
	bool finish;
};

static int
idem_end_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct idem_end_work *w = arg;

	if (!w->finish)
		return cm_db_query(conn,
				   "DELETE FROM vault_client.idempotency "
				   "WHERE tenant_id = $1 AND key = $2 AND "
				   "status = 0",
				   2, w->params, NULL, errbuf);
	return cm_db_query(conn,
			   "UPDATE vault_client.idempotency SET status = "
			   "$3::int, response = $4 WHERE tenant_id = $1 AND "
			   "key = $2",
			   4, w->params, NULL, errbuf);
}

int
vc_store_idem_finish(const char *tenant_id, const char *key, int status,
		     const char *response, char errbuf[CM_ERRBUF_LEN])
{
	char st[16];
	struct idem_end_work w = { { tenant_id, key, st, response }, true };

	snprintf(st, sizeof(st), "%d", status);
	return cm_db_tx_tenant(tenant_id, idem_end_work, &w, errbuf);
}

int
vc_store_idem_abort(const char *tenant_id, const char *key,
		    char errbuf[CM_ERRBUF_LEN])
{
	struct idem_end_work w = { { tenant_id, key, NULL, NULL }, false };

	return cm_db_tx_tenant(tenant_id, idem_end_work, &w, errbuf);
}

/* ---- local Transit keys ---- */

#define TRANSIT_KEY_AAD "bz-vault-client:transit-key:v1"

struct transit_key_work {
	const unsigned char *dek;
	const char *name;
	bool create;
	unsigned char *key;
	int version;
};

/* A new random key, wrapped under the data key, unless one exists. */
static int
transit_key_create(PGconn *conn, struct transit_key_work *w,
		   char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf aad = CM_BUF_INIT(0);
	unsigned char raw[VC_KEY_LEN], *wrapped = NULL;
	char *hex = NULL;
	const char *params[2] = { w->name, NULL };
	size_t len = 0;
	int rc;

	cm_buf_puts(&aad, TRANSIT_KEY_AAD);
	cm_buf_putc(&aad, '\0');
	cm_buf_puts(&aad, w->name);
	rc = vc_random(raw, sizeof(raw));
	if (rc == 0)
		rc = vc_seal(w->dek, aad.data, aad.len, raw, sizeof(raw),
			     &wrapped, &len);
	cm_memzero(raw, sizeof(raw));
	if (rc < 0) {
		snprintf(errbuf, CM_ERRBUF_LEN, "cannot create a transit key");
		goto out;
	}
	params[1] = hex = vc_hex_encode(wrapped, len);
	rc = cm_db_query(conn,
			 "INSERT INTO vault_client.transit_keys (name, "
			 "wrapped_key) VALUES ($1, decode($2, 'hex')) ON "
			 "CONFLICT DO NOTHING",
			 2, params, NULL, errbuf);
out:
	free(hex);
	free(wrapped);
	cm_buf_release(&aad);
	return rc;
}

static int
transit_key_load(PGconn *conn, struct transit_key_work *w,
		 char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf aad = CM_BUF_INIT(0);
	const char *params[1] = { w->name };
	unsigned char *wrapped = NULL, *pt = NULL;
	size_t wlen = 0, len = 0;
	PGresult *res = NULL;
	int rc;

	rc = cm_db_query(conn,
			 "SELECT encode(wrapped_key, 'hex'), version FROM "
			 "vault_client.transit_keys WHERE name = $1",
			 1, params, &res, errbuf);
	if (rc == 0 && PQntuples(res) != 1)
		rc = CM_ENOENT;
	if (rc == 0)
		rc = vc_hex_decode(PQgetvalue(res, 0, 0), &wrapped, &wlen) < 0
			     ? CM_EIO
			     : 0;
	if (rc < 0)
		goto out;
	cm_buf_puts(&aad, TRANSIT_KEY_AAD);
	cm_buf_putc(&aad, '\0');
	cm_buf_puts(&aad, w->name);
	rc = vc_open(w->dek, aad.data, aad.len, wrapped, wlen, &pt, &len);
	if (rc == 0 && len != VC_KEY_LEN)
		rc = CM_EACCES;
	if (rc == 0) {
		memcpy(w->key, pt, VC_KEY_LEN);
		w->version = (int)strtol(PQgetvalue(res, 0, 1), NULL, 10);
	} else {
		snprintf(errbuf, CM_ERRBUF_LEN, "transit key does not unwrap");
	}
out:
	if (pt) {
		cm_memzero(pt, len);
		free(pt);
	}
	free(wrapped);
	cm_buf_release(&aad);
	PQclear(res);
	return rc;
}

static int
transit_key_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct transit_key_work *w = arg;
	int rc = transit_key_load(conn, w, errbuf);

	if (rc != CM_ENOENT || !w->create)
		return rc;
	rc = transit_key_create(conn, w, errbuf);
	return rc < 0 ? rc : transit_key_load(conn, w, errbuf);
}

int
vc_store_transit_key(const unsigned char dek[VC_KEY_LEN], const char *name,
		     bool create, unsigned char key[VC_KEY_LEN], int *version,
		     char errbuf[CM_ERRBUF_LEN])
{
	struct transit_key_work w = { dek, name, create, key, 0 };
	int rc;

	rc = cm_db_tx(transit_key_work, &w, errbuf);
	*version = w.version;
	if (rc < 0)
		cm_memzero(key, VC_KEY_LEN);
	return rc;
}
