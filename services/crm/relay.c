/*
 * relay.c - the outbox relay (libcommon's cm_bus_relay thread), which
 * also runs due.c's activity.due scan on its thread.
 *
 * A write that added events to crm.outbox kicks the relay after its
 * commit; the relay also runs every interval, so rows left by a crash
 * between commit and publish (or by a Redis outage) are published later.
 */
#include "crm.h"

#include <stdlib.h>

#include "common/bus.h"
#include "common/log.h"
#include "common/mem.h"

#include "common/banned.h"

struct crm_relay {
	struct cm_bus_relay *relay;
	int due_interval_ms; /* 0: no activity.due scan */
	int64_t due_last_ms; /* touched on the relay's thread only */
};

/* The activity.due scan, when its interval has passed. */
static void
due_maybe(void *arg)
{
	struct crm_relay *r = arg;
	char errbuf[CM_ERRBUF_LEN] = "";
	int64_t now = cm_now_ms();
	int n = 0;

	if (r->due_interval_ms <= 0 ||
	    now - r->due_last_ms < r->due_interval_ms)
		return;
	r->due_last_ms = now;
	if (crm_due_scan(&n, errbuf) < 0)
		cm_log_warn("activity.due scan: %s", errbuf);
	else if (n > 0)
		cm_log_info("activity.due: %d announced", n);
}

struct crm_relay *
crm_relay_start(int interval_ms, int due_interval_ms,
		char errbuf[CM_ERRBUF_LEN])
{
	struct crm_relay *r = cm_xcalloc(1, sizeof(*r));

	r->due_interval_ms = due_interval_ms;
	r->due_last_ms = cm_now_ms() - due_interval_ms; /* scan at once */
	r->relay = cm_bus_relay_start(CRM_OUTBOX, interval_ms, due_maybe, r,
				      errbuf);
	if (!r->relay) {
		free(r);
		return NULL;
	}
	return r;
}

void
crm_relay_kick(struct crm_relay *r)
{
	if (r)
		cm_bus_relay_kick(r->relay);
}

void
crm_relay_stop(struct crm_relay *r)
{
	if (!r)
		return;
	cm_bus_relay_stop(r->relay);
	free(r);
}
