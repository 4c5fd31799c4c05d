/*
 * bus_relay.c - the outbox relay thread of common/bus.h.
 *
 * A service whose transaction added outbox rows kicks the relay after the
 * commit; the relay waits RELAY_GATHER_US for more kicks (under load one
 * round then publishes many rows in one transaction instead of one each)
 * and publishes until the table has nothing left. It also runs every
 * interval, so rows left by a crash between commit and publish, or by a
 * Redis outage, are published later. cm_bus_outbox_relay locks rows FOR
 * UPDATE SKIP LOCKED, so replicas may relay one table together. Once an
 * hour it deletes rows published more than a week ago, so the table does
 * not grow for ever.
 */
#include "common/bus.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mem.h"

#include "common/banned.h"

#define RELAY_BATCH 500
#define SWEEP_BATCH 1000
#define SWEEP_EVERY_MS (3600 * 1000)
#define RELAY_GATHER_US 10000
#define RELAY_TABLE_MAX 64

struct cm_bus_relay {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool stop, kicked;
	int interval_ms;
	cm_bus_relay_tick_fn tick;
	void *tick_arg;
	int64_t swept_ms; /* when the last sweep ran (relay thread only) */
	char table[RELAY_TABLE_MAX];
};

static bool
stopping(struct cm_bus_relay *r)
{
	bool stop;

	pthread_mutex_lock(&r->mu);
	stop = r->stop;
	pthread_mutex_unlock(&r->mu);
	return stop;
}

/* Publish batches until the outbox is empty (or the relay stops: what is
   left waits for the next start, or another replica). */
static void
relay_once(struct cm_bus_relay *r)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	int published = 0, rc;

	do {
		rc = cm_bus_outbox_relay(r->table, RELAY_BATCH, &published,
					 errbuf);
	} while (rc == 0 && published == RELAY_BATCH && !stopping(r));
	if (rc < 0)
		cm_log_warn("outbox relay %s: %s", r->table, errbuf);
}

/* Once an hour: published rows past their keep, in batches. */
static void
sweep_maybe(struct cm_bus_relay *r)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	long long n = 0, total = 0;
	int64_t now = cm_now_ms();
	int rc;

	if (r->swept_ms && now - r->swept_ms < SWEEP_EVERY_MS)
		return;
	r->swept_ms = now;
	do {
		rc = cm_bus_outbox_sweep(r->table, CM_BUS_OUTBOX_KEEP_S,
					 SWEEP_BATCH, &n, errbuf);
		total += n;
	} while (rc == 0 && n == SWEEP_BATCH && !stopping(r));
	if (rc < 0)
		cm_log_warn("outbox sweep %s: %s", r->table, errbuf);
	else if (total)
		cm_log_info("outbox sweep %s: %lld published rows removed",
			    r->table, total);
}

/* Wait for a kick, the interval or stop; true when stopping. */
static bool
relay_wait(struct cm_bus_relay *r)
{
	struct timespec until;
	bool stop, kicked;

	pthread_mutex_lock(&r->mu);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += r->interval_ms / 1000;
	until.tv_nsec += (long)(r->interval_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (!r->stop && !r->kicked)
		if (pthread_cond_timedwait(&r->cond, &r->mu, &until))
			break;
	stop = r->stop;
	kicked = r->kicked;
	pthread_mutex_unlock(&r->mu);
	if (stop)
		return true;
	if (kicked)
		usleep(RELAY_GATHER_US);
	pthread_mutex_lock(&r->mu);
	r->kicked = false;
	pthread_mutex_unlock(&r->mu);
	return false;
}

static void *
relay_main(void *arg)
{
	struct cm_bus_relay *r = arg;

	while (!relay_wait(r)) {
		if (r->tick)
			r->tick(r->tick_arg);
		relay_once(r);
		sweep_maybe(r);
	}
	relay_once(r); /* one more round: what the last requests added */
	return NULL;
}

struct cm_bus_relay *
cm_bus_relay_start(const char *table, int interval_ms,
		   cm_bus_relay_tick_fn tick, void *arg,
		   char errbuf[CM_ERRBUF_LEN])
{
	struct cm_bus_relay *r;

	if (!table || strlen(table) >= RELAY_TABLE_MAX || interval_ms < 1) {
		cm_errf(errbuf, "outbox relay: bad table or interval");
		return NULL;
	}
	r = cm_xcalloc(1, sizeof(*r));
	cm_strlcpy(r->table, table, sizeof(r->table));
	r->interval_ms = interval_ms;
	r->tick = tick;
	r->tick_arg = arg;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cond, NULL);
	if (pthread_create(&r->thread, NULL, relay_main, r) != 0) {
		cm_errf(errbuf, "outbox relay: cannot start a thread");
		pthread_cond_destroy(&r->cond);
		pthread_mutex_destroy(&r->mu);
		free(r);
		return NULL;
	}
	return r;
}

void
cm_bus_relay_kick(struct cm_bus_relay *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->kicked = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->mu);
}

void
cm_bus_relay_stop(struct cm_bus_relay *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->mu);
	free(r);
}
