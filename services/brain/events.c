/*
 * events.c - tenant events through a transactional outbox (common/bus.h).
 *
 * A tenant change and its events commit together: brain_change runs the
 * change in one transaction, in which the change's code stages each event
 * (brain_stage: an envelope on the tenant's own stream, aggregate
 * "tenant", into brain.outbox). After the commit this process's tenant
 * cache forgets the tenants and the relay thread is kicked; it publishes
 * the rows and marks them. The relay also runs every
 * BRAIN_RELAY_INTERVAL_MS, so an event whose change committed just before
 * a crash (or a Redis outage) is published when brain runs again: a change
 * is never without its event, and no event is published for a change that
 * rolled back.
 */
#include "brain.h"

#include "common/bus.h"
#include "common/db.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/tenant.h"

#include <stdio.h>
#include <string.h>

#include "common/banned.h"

int
brain_stage(PGconn *conn, struct brain_staged *st, const char *type,
	    const char *tenant_id, const cJSON *data,
	    char errbuf[CM_ERRBUF_LEN])
{
	const char *p[1] = { tenant_id };
	cJSON *env;
	int rc, i;

	if (!cm_is_uuid(tenant_id)) {
		cm_errf(errbuf, "stage %s: tenant id is not a uuid", type);
		return CM_EINVAL;
	}
	/* the outbox's row-level security: the row's tenant, for this
	   transaction only (a purge stages several tenants) */
	rc = cm_db_query(conn, "SELECT set_config('app.tenant_id', $1, true)",
			 1, p, NULL, errbuf);
	if (rc < 0)
		return rc;
	env = cm_bus_envelope_new(type, "brain", "tenant", tenant_id,
				  data ? cJSON_Duplicate(data, true) : NULL);
	if (!env) {
		cm_errf(errbuf, "stage %s: no randomness for the event id",
			type);
		return CM_EIO;
	}
	rc = cm_bus_outbox_add(conn, BRAIN_OUTBOX, tenant_id, env, errbuf);
	cJSON_Delete(env);
	if (rc < 0)
		return rc;
	for (i = 0; i < st->n; i++)
		if (!strcmp(st->tenant[i], tenant_id))
			return 0;
	if (st->n < BRAIN_STAGED_MAX)
		cm_strlcpy(st->tenant[st->n++], tenant_id, 37);
	else
		st->overflow = true;
	return 0;
}

int
brain_change(const struct brain *b, cm_db_work_fn fn, void *arg,
	     struct brain_staged *st, char errbuf[CM_ERRBUF_LEN])
{
	int rc, i;

	st->n = 0;
	st->overflow = false;
	if ((rc = cm_db_tx(fn, arg, errbuf)) < 0)
		return rc;
	if (st->overflow)
		cm_tenant_cache_invalidate(NULL);
	else
		for (i = 0; i < st->n; i++)
			cm_tenant_cache_invalidate(st->tenant[i]);
	if (st->n || st->overflow)
		cm_bus_relay_kick(b->relay);
	return 0;
}

int
brain_relay_start(struct brain *b, int interval_ms, char errbuf[CM_ERRBUF_LEN])
{
	b->relay = cm_bus_relay_start(BRAIN_OUTBOX, interval_ms, NULL, NULL,
				      errbuf);
	return b->relay ? 0 : CM_EIO;
}

void
brain_relay_stop(struct brain *b)
{
	cm_bus_relay_stop(b->relay);
	b->relay = NULL;
}
