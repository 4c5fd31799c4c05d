/*
 * relay.c - the outbox relay thread.
 *
 * A write that added events to crm.outbox kicks the relay after its
 * commit; the relay also runs every interval, so rows left by a crash
 * between commit and publish (or by a Redis outage) are published later.
 * cm_bus_outbox_relay marks each row in the transaction that publishes it
 * and locks rows FOR UPDATE SKIP LOCKED, so replicas may relay together.
 */
#include "crm.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "common/bus.h"
#include "common/db.h"
#include "common/log.h"
#include "common/mem.h"

#include "common/banned.h"

#define RELAY_BATCH 500
/* After a kick, wait this long for more: under load one relay round then
   publishes many rows in one transaction instead of one each. */
#define RELAY_GATHER_US 10000

struct crm_relay {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool stop, kicked, started;
	int interval_ms;
	int due_interval_ms; /* 0: no activity.due scan */
	int64_t due_last_ms;
};

static bool
stopping(struct crm_relay *r)
{
	bool stop;

	pthread_mutex_lock(&r->mu);
	stop = r->stop;
	pthread_mutex_unlock(&r->mu);
	return stop;
}

/* Publish batches until the outbox is empty (or the relay stops: what
   is left waits for the next start, or another replica). */
static void
relay_once(struct crm_relay *r)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	int published = 0, rc;

	do {
		rc = cm_bus_outbox_relay(CRM_OUTBOX, RELAY_BATCH, &published,
					 errbuf);
	} while (rc == 0 && published == RELAY_BATCH && !stopping(r));
	if (rc < 0)
		cm_log_warn("outbox relay: %s", errbuf);
}

/* The activity.due scan, when its interval has passed. */
static void
due_maybe(struct crm_relay *r)
{
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

static void *
relay_main(void *arg)
{
	struct crm_relay *r = arg;
	struct timespec until;
	bool stop, kicked;

	for (;;) {
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
			break;
		if (kicked)
			usleep(RELAY_GATHER_US);
		pthread_mutex_lock(&r->mu);
		r->kicked = false;
		pthread_mutex_unlock(&r->mu);
		due_maybe(r);
		relay_once(r);
	}
	relay_once(r); /* one more batch: what the last requests added */
	return NULL;
}

struct crm_relay *
crm_relay_start(int interval_ms, int due_interval_ms,
		char errbuf[CM_ERRBUF_LEN])
{
	struct crm_relay *r = cm_xcalloc(1, sizeof(*r));

	r->interval_ms = interval_ms;
	r->due_interval_ms = due_interval_ms;
	r->due_last_ms = cm_now_ms() - due_interval_ms; /* scan at once */
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cond, NULL);
	if (pthread_create(&r->thread, NULL, relay_main, r) != 0) {
		cm_errf(errbuf, "outbox relay: cannot start a thread");
		pthread_cond_destroy(&r->cond);
		pthread_mutex_destroy(&r->mu);
		free(r);
		return NULL;
	}
	r->started = true;
	return r;
}

void
crm_relay_kick(struct crm_relay *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->kicked = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->mu);
}

void
crm_relay_stop(struct crm_relay *r)
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
