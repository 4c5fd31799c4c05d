/*
 * due.c - activity.due: open activities whose due time has passed are
 * announced once.
 *
 * Row-level security keeps the scan per tenant: the list of tenants comes
 * from brain.tenants (readable by every service), and each tenant's due
 * activities are taken in that tenant's own transaction (FOR UPDATE SKIP
 * LOCKED, so replicas share the work), the events added to the outbox and
 * the activities marked in the same transaction. One transaction per
 * tenant per scan: fine for thousands of tenants at the default interval;
 * beyond that a worker clause in the activities policy (as event-bus's
 * replay worker has) would let one statement find the tenants with work.
 */
#include "crm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/db.h"
#include "common/log.h"
#include "common/mem.h"

#include "common/banned.h"

#define DUE_BATCH 500
#define DUE_BATCH_TEXT "500"

static int
tenants_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	return cm_db_query(conn,
			   "SELECT id::text FROM brain.tenants WHERE "
			   "deleted_at IS NULL AND status IN ('active', "
			   "'trial') ORDER BY id",
			   0, NULL, (PGresult **)arg, errbuf);
}

static cJSON *
due_data(const PGresult *res, int r)
{
	cJSON *d = cJSON_CreateObject();
	char t[40];

	cJSON_AddStringToObject(d, "activity_id", PQgetvalue(res, r, 0));
	cJSON_AddStringToObject(d, "type", PQgetvalue(res, r, 1));
	cJSON_AddStringToObject(d, "subject", PQgetvalue(res, r, 2));
	if (crm_pg_time(PQgetvalue(res, r, 3), t) == 0)
		cJSON_AddStringToObject(d, "due_at", t);
	if (!PQgetisnull(res, r, 4))
		cJSON_AddStringToObject(d, "owner_id", PQgetvalue(res, r, 4));
	return d;
}

struct due_work {
	const char *tenant;
	int announced;
};

static int
due_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct due_work *w = arg;
	PGresult *res = NULL;
	const char *id;
	int r, rc;

	rc = cm_db_query(conn,
			 "SELECT id, type, subject, due_at, owner_id FROM "
			 "crm.activities WHERE deleted_at IS NULL AND "
			 "completed_at IS NULL AND due_notified_at IS NULL "
			 "AND due_at <= now() ORDER BY due_at LIMIT $1::int "
			 "FOR UPDATE SKIP LOCKED",
			 1, (const char *[]){ DUE_BATCH_TEXT }, &res, errbuf);
	for (r = 0; rc == 0 && r < PQntuples(res); r++) {
		id = PQgetvalue(res, r, 0);
		rc = crm_emit(conn, w->tenant, "activity.due", "activity", id,
			      due_data(res, r), errbuf);
		if (rc == 0)
			rc = cm_db_query(
				conn,
				"UPDATE crm.activities SET "
				"due_notified_at = now() WHERE id = $1",
				1, &id, NULL, errbuf);
		if (rc == 0)
			w->announced++;
	}
	PQclear(res);
	return rc;
}

int
crm_due_scan(int *announced, char errbuf[CM_ERRBUF_LEN])
{
	PGresult *tenants = NULL;
	struct due_work w = { NULL, 0 };
	int t, rc;

	*announced = 0;
	if ((rc = cm_db_tx(tenants_work, &tenants, errbuf)) < 0) {
		PQclear(tenants);
		return rc;
	}
	for (t = 0; t < PQntuples(tenants); t++) {
		w.tenant = PQgetvalue(tenants, t, 0);
		do {
			w.announced = 0;
			rc = cm_db_tx_tenant(w.tenant, due_work, &w, errbuf);
			*announced += rc == 0 ? w.announced : 0;
		} while (rc == 0 && w.announced == DUE_BATCH);
		if (rc < 0)
			cm_log_warn("activity.due scan of %s: %s", w.tenant,
				    errbuf);
	}
	PQclear(tenants);
	return 0;
}
