/*
 * audit.c - the audit writer: the bus group "audit" on every tenant stream,
 * storing each event once in event_bus.events.
 */
#include "evbus.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/db.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/metrics.h"

#include "common/banned.h"

#define AUDIT_PARTITION_EVERY_MS (3600 * 1000)

struct bus_audit {
	struct cm_bus_sub *sub;
	int stats_interval_ms;
	pthread_t thread;
	atomic_int stop;
};

int
bus_event_check(const struct cm_bus_event *ev, char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev->env, "tenant_id");

	/* The stream is the tenant: an envelope naming another is a forgery
	   (or a bug). */
	if (!cJSON_IsString(t) || strcmp(t->valuestring, ev->tenant_id) != 0) {
		cm_errf(errbuf, "envelope tenant does not match its stream");
		return CM_EPERM;
	}
	return cm_bus_validate(ev->env, errbuf);
}

struct records {
	const struct cm_bus_event *evs;
	int n;
	int duplicates;
};

static int
records_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct records *r = arg;
	bool inserted;
	int i, rc;

	for (i = 0; i < r->n; i++) {
		rc = bus_store_record(conn, r->evs[i].tenant_id, r->evs[i].env,
				      r->evs[i].id, &inserted, errbuf);
		if (rc < 0)
			return rc;
		r->duplicates += !inserted;
	}
	return 0;
}

int
bus_audit_handle_batch(const struct cm_bus_event *evs, int n, void *arg,
		       char errbuf[CM_ERRBUF_LEN])
{
	struct records r = { evs, n, 0 };
	int i, rc;

	(void)arg;
	/* a forged or invalid event fails the batch: the subscriber then
	   hands each to bus_audit_handle, and that one alone is
	   dead-lettered, never stored */
	for (i = 0; i < n; i++)
		if ((rc = bus_event_check(&evs[i], errbuf)) < 0)
			return rc;
	rc = cm_db_tx_tenant(evs[0].tenant_id, records_work, &r, errbuf);
	if (rc == 0 && r.duplicates)
		cm_metrics_counter_add("bz_bus_audit_duplicates_total",
				       "Deliveries of events already stored.",
				       NULL, r.duplicates);
	return rc;
}

int
bus_audit_handle(const struct cm_bus_event *ev, void *arg,
		 char errbuf[CM_ERRBUF_LEN])
{
	return bus_audit_handle_batch(ev, 1, arg, errbuf);
}

/* Poll until stopped; keep next months' partitions made (hourly). */
static void *
audit_main(void *arg)
{
	struct bus_audit *a = arg;
	char errbuf[CM_ERRBUF_LEN];
	int64_t last = cm_now_ms(), last_stats = 0;
	int i;

	while (!atomic_load(&a->stop)) {
		errbuf[0] = '\0';
		if (cm_now_ms() - last_stats >= a->stats_interval_ms) {
			last_stats = cm_now_ms();
			if (bus_stats_refresh(errbuf) < 0)
				cm_log_warn("audit: stats: %s", errbuf);
		}
		if (cm_now_ms() - last >= AUDIT_PARTITION_EVERY_MS) {
			last = cm_now_ms();
			if (bus_store_ensure_partitions(errbuf) < 0)
				cm_log_warn("audit: partitions: %s", errbuf);
		}
		if (cm_bus_sub_poll(a->sub, NULL, errbuf) == 0)
			continue;
		cm_log_err("audit: %s", errbuf);
		for (i = 0; i < 10 && !atomic_load(&a->stop); i++)
			usleep(100 * 1000);
	}
	return NULL;
}

struct bus_audit *
bus_audit_start(const struct bus_audit_config *cfg, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_bus_sub_config sc = { 0 };
	struct bus_audit *a = cm_xcalloc(1, sizeof(*a));
	char host[64] = "", consumer[65];

	if (gethostname(host, sizeof(host) - 1) < 0)
		cm_strlcpy(host, "host", sizeof(host));
	snprintf(consumer, sizeof(consumer), "%.40s-%ld", host, (long)getpid());
	a->stats_interval_ms =
		cfg->stats_interval_ms > 0 ? cfg->stats_interval_ms : 15000;
	sc.group = "audit";
	sc.consumer = consumer;
	sc.claim_idle_ms = cfg->claim_idle_ms;
	sc.max_attempts = cfg->max_attempts;
	sc.backoff_ms = cfg->backoff_ms;
	sc.block_ms = 500;
	sc.fn = bus_audit_handle;
	sc.batch_fn = bus_audit_handle_batch;
	sc.batch = 64;
	a->sub = cm_bus_sub_new(&sc);
	if (!a->sub) {
		cm_errf(errbuf, "audit: bad subscriber settings");
		goto fail;
	}
	if (pthread_create(&a->thread, NULL, audit_main, a) != 0) {
		cm_errf(errbuf, "audit: cannot start its thread");
		goto fail;
	}
	return a;
fail:
	cm_bus_sub_free(a->sub);
	free(a);
	return NULL;
}

void
bus_audit_stop(struct bus_audit *a)
{
	if (!a)
		return;
	atomic_store(&a->stop, 1);
	cm_bus_sub_stop(a->sub);
	pthread_join(a->thread, NULL);
	cm_bus_sub_free(a->sub);
	free(a);
}
