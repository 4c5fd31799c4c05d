/*
 * idem.h - Idempotency-Key on creates, kept in the create's own
 * transaction (PostgreSQL), so a replay answers exactly what the first
 * request committed and a rolled-back create leaves no record.
 *
 * The table a service creates (its own schema, tenant data):
 *   CREATE TABLE <schema>.idempotency_keys (tenant_id uuid NOT NULL,
 *     key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
 *     scope text NOT NULL, request_hash text NOT NULL,
 *     status integer NOT NULL, response text NOT NULL,
 *     created_at timestamptz NOT NULL DEFAULT now(),
 *     PRIMARY KEY (tenant_id, key));  + ENABLE/FORCE RLS on tenant_id.
 * Table names are "schema.table" of [a-z0-9_] (checked; they come from the
 * service's code).
 *
 * A key belongs to the tenant and lives 24 hours. The same key with the
 * same method, path and body replays the stored status and body; with
 * anything else it is refused (CM_EEXIST; answer 422
 * idempotency_key_reused). Two requests racing with one key: the second
 * one's store (or commit) fails on the primary key; cm_idem_raced says so,
 * and running the transaction again replays the winner's answer.
 *
 * Flow, in a handler:
 *   cm_idem_from_req(req, &im)            -- before the transaction
 *   in the tenant transaction (cm_db_tx_tenant):
 *     cm_idem_lookup(conn, table, &im, &status, &body) -- 0: replay it
 *     ... the create ...
 *     cm_idem_store(conn, table, &im, 201, body)
 *   if (cm_idem_raced(&im, rc, errbuf)) run the transaction once more.
 */
#ifndef COMMON_IDEM_H
#define COMMON_IDEM_H

#include <stdbool.h>

#include <cJSON.h>
#include <libpq-fe.h>

#include "common/err.h"
#include "common/http.h"

#define CM_IDEM_KEY_MAX 255

struct cm_idem {
	const char *key; /* NULL: the request has none (points into req) */
	char hash[65];	 /* SHA-256 of method, path and body, hex */
	char scope[128]; /* "POST /api/crm/leads" */
};

/* cm_idem_from_req - the request's Idempotency-Key (1..255 visible ASCII
   characters) with its scope and hash; 0 (im->key NULL when absent), or
   the 400 status already recorded on req. */
int cm_idem_from_req(struct cm_req *req, struct cm_idem *im);
/* cm_idem_lookup - the answer stored under im's key in the last 24 hours:
   0 with *status and *body (owned), CM_ENOENT when there is none,
   CM_EEXIST (errbuf says why) when the key came with another request. */
int cm_idem_lookup(PGconn *conn, const char *table, const struct cm_idem *im,
		   int *status, cJSON **body, char errbuf[CM_ERRBUF_LEN]);
/* cm_idem_store - record status and body under im's key (replacing an
   expired record of the same key, and deleting up to 100 other expired
   records of the tenant: no separate sweep is needed). */
int cm_idem_store(PGconn *conn, const char *table, const struct cm_idem *im,
		  int status, const cJSON *body, char errbuf[CM_ERRBUF_LEN]);
/* cm_idem_raced - whether a create's transaction failed (rc, errbuf)
   because a concurrent request with the same key committed first. */
bool cm_idem_raced(const struct cm_idem *im, int rc, const char *errbuf);

#endif
