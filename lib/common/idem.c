/* idem.c - Idempotency-Key records in the create's transaction: see
   common/idem.h. */
#include "common/idem.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/db.h"
#include "common/json.h"
#include "common/mem.h"

#include "common/banned.h"

#define IDEM_TENANT "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
#define IDEM_LIVE "interval '24 hours'"
#define IDEM_SWEEP "100" /* expired records a store deletes at most */

static void
request_hash(struct cm_req *req, char out[65])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	struct cm_buf b = CM_BUF_INIT(0);
	const char *body;
	size_t len;

	cm_req_body(req, &body, &len);
	cm_buf_printf(&b, "%s %s\n", cm_req_method(req), cm_req_path(req));
	cm_buf_add(&b, body, len);
	SHA256((const unsigned char *)b.data, b.len, md);
	cm_buf_release(&b);
	cm_hex_encode(md, sizeof(md), out);
}

int
cm_idem_from_req(struct cm_req *req, struct cm_idem *im)
{
	const char *key = cm_req_header(req, "Idempotency-Key");
	size_t i;

	memset(im, 0, sizeof(*im));
	if (!key)
		return 0;
	for (i = 0; key[i] && i <= CM_IDEM_KEY_MAX; i++)
		if ((unsigned char)key[i] < 0x21 ||
		    (unsigned char)key[i] > 0x7e)
			break;
	if (i == 0 || i > CM_IDEM_KEY_MAX || key[i])
		return cm_req_fail(req, 400, "bad_request",
				   "Idempotency-Key must be 1 to %d visible "
				   "ASCII characters",
				   CM_IDEM_KEY_MAX);
	im->key = key;
	request_hash(req, im->hash);
	snprintf(im->scope, sizeof(im->scope), "%s %.100s", cm_req_method(req),
		 cm_req_path(req));
	return 0;
}

static int
check(const char *table, const struct cm_idem *im, char errbuf[CM_ERRBUF_LEN])
{
	if (!cm_db_table_ok(table) || !im || !im->key) {
		cm_errf(errbuf, "idempotency: bad table or no key");
		return CM_EINVAL;
	}
	return 0;
}

int
cm_idem_lookup(PGconn *conn, const char *table, const struct cm_idem *im,
	       int *status, cJSON **body, char errbuf[CM_ERRBUF_LEN])
{
	const char *p[1] = { im ? im->key : NULL };
	struct cm_buf sql = CM_BUF_INIT(1024); /* the SQL with 2 table names */
	PGresult *res = NULL;
	const char *text;
	int64_t st = 0;
	int rc;

	*status = 0;
	*body = NULL;
	if ((rc = check(table, im, errbuf)) < 0)
		return rc;
	cm_buf_printf(&sql,
		      "SELECT request_hash, status, response, scope FROM %s"
		      " WHERE tenant_id = " IDEM_TENANT " AND key = $1"
		      " AND created_at > now() - " IDEM_LIVE,
		      table);
	rc = cm_db_query(conn, cm_buf_str(&sql), 1, p, &res, errbuf);
	cm_buf_release(&sql);
	if (rc == 0 && PQntuples(res) == 0) {
		rc = CM_ENOENT;
	} else if (rc == 0 && (strcmp(PQgetvalue(res, 0, 0), im->hash) ||
			       strcmp(PQgetvalue(res, 0, 3), im->scope))) {
		cm_errf(errbuf, "this Idempotency-Key came with another "
				"request");
		rc = CM_EEXIST;
	} else if (rc == 0) {
		text = PQgetvalue(res, 0, 2);
		if (cm_parse_i64(PQgetvalue(res, 0, 1), 100, 599, &st) < 0 ||
		    !(*body = cm_json_parse(text, strlen(text), errbuf))) {
			cm_errf(errbuf, "idempotency: a bad stored answer");
			rc = CM_EIO;
		}
		*status = (int)st;
	}
	PQclear(res);
	return rc;
}

int
cm_idem_store(PGconn *conn, const char *table, const struct cm_idem *im,
	      int status, const cJSON *body, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf sql = CM_BUF_INIT(1024); /* the SQL with 2 table names */
	char st[8], *text;
	const char *p[5];
	int rc;

	if ((rc = check(table, im, errbuf)) < 0)
		return rc;
	text = body ? cm_json_print(body) : cm_xstrdup("{}");
	snprintf(st, sizeof(st), "%d", status);
	p[0] = im->key;
	p[1] = im->scope;
	p[2] = im->hash;
	p[3] = st;
	p[4] = text;
	/* an expired record of the same key makes room first; so do (a
	   bounded number of) the tenant's other expired records: the table
	   is swept by its own writers */
	cm_buf_printf(&sql,
		      "DELETE FROM %s WHERE tenant_id = " IDEM_TENANT
		      " AND created_at <= now() - " IDEM_LIVE
		      " AND (key = $1 OR key IN (SELECT key FROM %s WHERE"
		      " tenant_id = " IDEM_TENANT
		      " AND created_at <= now() - " IDEM_LIVE
		      " LIMIT " IDEM_SWEEP "))",
		      table, table);
	rc = cm_db_query(conn, cm_buf_str(&sql), 1, p, NULL, errbuf);
	cm_buf_reset(&sql);
	cm_buf_printf(&sql,
		      "INSERT INTO %s (tenant_id, key, scope, request_hash,"
		      " status, response) VALUES (" IDEM_TENANT
		      ", $1, $2, $3, $4::int, $5)",
		      table);
	if (rc == 0)
		rc = cm_db_query(conn, cm_buf_str(&sql), 5, p, NULL, errbuf);
	cm_buf_release(&sql);
	free(text);
	return rc;
}

bool
cm_idem_raced(const struct cm_idem *im, int rc, const char *errbuf)
{
	return im && im->key && rc == CM_EEXIST && errbuf &&
	       strstr(errbuf, "23505");
}
