/*
 * webhook_worker.c - delivering webhooks.
 *
 * Two halves, joined by event_bus.webhook_deliveries:
 *   fan-out: the bus group "webhooks" on every tenant stream; for each
 *     event, one pending delivery row per matching active subscription,
 *     inserted in the tenant's transaction before the entry is acked
 *     (at-least-once; (webhook_id, event_id) is unique, so a redelivered
 *     entry adds nothing);
 *   delivery: `workers` threads each claim a due pending row, tenants in
 *     turn (the most overdue row of the next tenant in uuid order after
 *     the last one served: a tenant's flood cannot hold back another's
 *     deliveries by more than one turn per delivery thread) (FOR UPDATE
 *     SKIP LOCKED, leased by pushing next_attempt_at past the
 *     attempt's timeout, attempts + 1), POST it signed, and record the
 *     outcome: succeeded, due again after the backoff, or dead (and the
 *     subscription flagged). A crash mid-attempt leaves the lease to
 *     expire and the row is tried again. Nothing of the schedule lives in
 *     memory, so a restart loses nothing.
 */
#include "evbus.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/db.h"
#include "common/httpclient.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/metrics.h"

#include "common/banned.h"

#define MAX_WORKERS 16
#define LEASE_SLACK_MS 30000
#define MAX_RESPONSE (64 * 1024)

struct bus_webhooks {
	struct bus_webhooks_config cfg;
	char *allow;
	struct cm_bus_sub *sub;
	pthread_t fanout;
	pthread_t workers[MAX_WORKERS];
	int nworkers;
	atomic_int stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned kicks;
	char rr_tenant[37]; /* the tenant last claimed for (under mu) */
};

void
bus_webhooks_kick(struct bus_webhooks *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->kicks++;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

struct fanouts {
	const struct cm_bus_event *evs;
	int n;
	int deliveries;
};

static int
fanouts_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct fanouts *f = arg;
	int i, n, rc;

	for (i = 0; i < f->n; i++) {
		n = 0;
		if ((rc = bus_wh_fanout(conn, &f->evs[i], &n, errbuf)) < 0)
			return rc;
		f->deliveries += n;
	}
	return 0;
}

/* The deliveries of evs[0..n) (checked, one stream) in one transaction. */
static int
fanout_store(struct bus_webhooks *w, const struct cm_bus_event *evs, int n,
	     char errbuf[CM_ERRBUF_LEN])
{
	struct fanouts f = { evs, n, 0 };
	int rc = cm_db_tx_tenant(evs[0].tenant_id, fanouts_work, &f, errbuf);

	if (rc == 0 && f.deliveries > 0)
		bus_webhooks_kick(w);
	return rc;
}

/* The group's handler: the deliveries of one event. */
static int
fanout_handle(const struct cm_bus_event *ev, void *arg,
	      char errbuf[CM_ERRBUF_LEN])
{
	/* A forged or malformed entry is never delivered; the audit group
	   dead-letters it, once, so here it is only skipped. */
	if (bus_event_check(ev, errbuf) < 0) {
		cm_log_warn("webhooks: entry %s of tenant %s skipped: %s",
			    ev->id, ev->tenant_id, errbuf);
		return 0;
	}
	return fanout_store(arg, ev, 1, errbuf);
}

/* The batch handler: the deliveries of a stream's new events in one
   transaction. A bad entry sends the batch one by one, where it alone is
   skipped. */
static int
fanout_handle_batch(const struct cm_bus_event *evs, int n, void *arg,
		    char errbuf[CM_ERRBUF_LEN])
{
	int i;

	for (i = 0; i < n; i++)
		if (bus_event_check(&evs[i], errbuf) < 0)
			return CM_EINVAL;
	return fanout_store(arg, evs, n, errbuf);
}

static void *
fanout_main(void *arg)
{
	struct bus_webhooks *w = arg;
	char errbuf[CM_ERRBUF_LEN];
	int i;

	while (!atomic_load(&w->stop)) {
		errbuf[0] = '\0';
		if (cm_bus_sub_poll(w->sub, NULL, errbuf) == 0)
			continue;
		cm_log_err("webhooks: %s", errbuf);
		for (i = 0; i < 10 && !atomic_load(&w->stop); i++)
			usleep(100 * 1000);
	}
	return NULL;
}

static void
count(const char *result)
{
	char labels[64];

	snprintf(labels, sizeof(labels), "result=\"%s\"", result);
	cm_metrics_counter_add("bz_bus_webhook_attempts_total",
			       "Webhook delivery attempts by result "
			       "(success, failure, dead).",
			       labels, 1);
}

/* The outcome of cm_fetch as a result. */
static void
judge(int rc, const struct cm_fetch_response *resp, struct bus_wh_result *r,
      char errbuf[CM_ERRBUF_LEN])
{
	r->status = rc == 0 ? resp->status : 0;
	r->ok = rc == 0 && resp->status >= 200 && resp->status < 300;
	/* the guard's refusal or a URL curl cannot use never gets better */
	r->permanent = rc == CM_EACCES || rc == CM_EINVAL;
	if (rc == 0 && !r->ok)
		cm_errf(errbuf, "http status %ld", resp->status);
	r->error = r->ok ? NULL : errbuf;
}

void
bus_webhook_deliver(const struct bus_wh_job *job, int timeout_ms,
		    const char *allow_cidrs, struct bus_wh_result *r,
		    char errbuf[CM_ERRBUF_LEN])
{
	struct cm_fetch_response resp = { 0 };
	struct cm_fetch_opts opts = { 0 };
	char sig[BUS_WH_SIG_LEN], old[BUS_WH_SIG_LEN];
	char h_id[64], h_ts[48], h_sig[32 + 2 * BUS_WH_SIG_LEN];
	const char *headers[4] = { h_id, h_ts, h_sig, NULL };
	size_t len = strlen(job->payload);
	int64_t ts = cm_now_s(), t0 = cm_now_ms();
	int rc;

	memset(r, 0, sizeof(*r));
	errbuf[0] = '\0';
	rc = bus_webhook_sign(job->secret, job->id, ts, job->payload, len, sig);
	if (rc < 0) {
		cm_errf(errbuf, "cannot sign: bad secret");
		r->error = errbuf;
		r->permanent = true;
		return;
	}
	/* during a rotation's grace: a signature under each secret */
	if (!job->previous_secret ||
	    bus_webhook_sign(job->previous_secret, job->id, ts, job->payload,
			     len, old) < 0)
		old[0] = '\0';
	snprintf(h_id, sizeof(h_id), "webhook-id: %s", job->id);
	snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %lld", (long long)ts);
	snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s%s%s", sig,
		 old[0] ? " " : "", old);
	opts.user_url = true;
	opts.allow_cidrs = allow_cidrs;
	opts.headers = headers;
	opts.content_type = "application/json";
	opts.total_timeout_ms = timeout_ms;
	opts.connect_timeout_ms = timeout_ms < 5000 ? timeout_ms : 5000;
	opts.max_response = MAX_RESPONSE;
	rc = cm_fetch("POST", job->url, job->payload, len, &opts, &resp,
		      errbuf);
	r->duration_ms = cm_now_ms() - t0;
	judge(rc, &resp, r, errbuf);
	cm_fetch_response_release(&resp);
}

/* Claim, deliver and record one; CM_ENOENT when nothing was due. */
static int
work_one(struct bus_webhooks *w)
{
	struct bus_wh_job job = { 0 };
	struct bus_wh_result r;
	char errbuf[CM_ERRBUF_LEN] = "", why[CM_ERRBUF_LEN] = "", after[37];
	bool dead = false;
	int rc;

	pthread_mutex_lock(&w->mu);
	cm_strlcpy(after, w->rr_tenant, sizeof(after));
	pthread_mutex_unlock(&w->mu);
	rc = bus_wh_claim(w->cfg.timeout_ms + LEASE_SLACK_MS, after, &job,
			  errbuf);
	if (rc == CM_ENOENT)
		return rc;
	if (rc == 0) { /* the next claim starts after this tenant */
		pthread_mutex_lock(&w->mu);
		cm_strlcpy(w->rr_tenant, job.tenant_id, sizeof(w->rr_tenant));
		pthread_mutex_unlock(&w->mu);
	}
	if (rc < 0) {
		cm_log_err("webhooks: claim: %s", errbuf);
		return rc;
	}
	bus_webhook_deliver(&job, w->cfg.timeout_ms, w->allow, &r, why);
	rc = bus_wh_record(&job, &r, &w->cfg.schedule, &dead, errbuf);
	if (rc < 0)
		cm_log_err("webhooks: record delivery %s: %s", job.id, errbuf);
	else if (!r.ok)
		cm_log_info("webhook delivery %s attempt %d: %s%s", job.id,
			    job.attempt, why, dead ? " (dead)" : "");
	count(r.ok ? "success" : dead ? "dead" : "failure");
	bus_wh_job_release(&job);
	return 0;
}

/* Sleep until kicked or poll_ms passed. */
static void
idle(struct bus_webhooks *w, unsigned seen)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += w->cfg.poll_ms / 1000;
	until.tv_nsec += (long)(w->cfg.poll_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->mu);
	while (w->kicks == seen && !atomic_load(&w->stop))
		if (pthread_cond_timedwait(&w->cv, &w->mu, &until) != 0)
			break;
	pthread_mutex_unlock(&w->mu);
}

static void *
worker_main(void *arg)
{
	struct bus_webhooks *w = arg;
	unsigned seen;

	while (!atomic_load(&w->stop)) {
		pthread_mutex_lock(&w->mu);
		seen = w->kicks;
		pthread_mutex_unlock(&w->mu);
		if (work_one(w) == 0)
			continue;
		idle(w, seen);
	}
	return NULL;
}

static struct cm_bus_sub *
fanout_sub(struct bus_webhooks *w, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_bus_sub_config sc = { 0 };
	char host[64] = "", consumer[65];
	struct cm_bus_sub *s;

	if (gethostname(host, sizeof(host) - 1) < 0)
		cm_strlcpy(host, "host", sizeof(host));
	snprintf(consumer, sizeof(consumer), "%.40s-%ld", host, (long)getpid());
	sc.group = "webhooks";
	sc.consumer = consumer;
	sc.claim_idle_ms = w->cfg.sub.claim_idle_ms;
	sc.max_attempts = w->cfg.sub.max_attempts;
	sc.backoff_ms = w->cfg.sub.backoff_ms;
	sc.block_ms = 500;
	sc.fn = fanout_handle;
	sc.batch_fn = fanout_handle_batch;
	sc.batch = 64;
	sc.arg = w;
	if (!(s = cm_bus_sub_new(&sc)))
		cm_errf(errbuf, "webhooks: bad subscriber settings");
	return s;
}

struct bus_webhooks *
bus_webhooks_start(const struct bus_webhooks_config *cfg,
		   char errbuf[CM_ERRBUF_LEN])
{
	struct bus_webhooks *w = cm_xcalloc(1, sizeof(*w));
	int i, n = cfg->workers < 1 ? 1 : cfg->workers;

	w->cfg = *cfg;
	w->allow = cm_xstrdup(cfg->allow_cidrs ? cfg->allow_cidrs : "");
	w->cfg.allow_cidrs = w->allow;
	if (w->cfg.poll_ms <= 0)
		w->cfg.poll_ms = 500;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	if (!(w->sub = fanout_sub(w, errbuf)))
		goto fail;
	if (pthread_create(&w->fanout, NULL, fanout_main, w) != 0) {
		cm_errf(errbuf, "webhooks: cannot start the fan-out thread");
		goto fail;
	}
	for (i = 0; i < n && i < MAX_WORKERS; i++) {
		if (pthread_create(&w->workers[i], NULL, worker_main, w) != 0)
			break;
		w->nworkers++;
	}
	return w;
fail:
	cm_bus_sub_free(w->sub);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w->allow);
	free(w);
	return NULL;
}

void
bus_webhooks_stop(struct bus_webhooks *w)
{
	int i;

	if (!w)
		return;
	atomic_store(&w->stop, 1);
	cm_bus_sub_stop(w->sub);
	bus_webhooks_kick(w);
	pthread_join(w->fanout, NULL);
	for (i = 0; i < w->nworkers; i++)
		pthread_join(w->workers[i], NULL);
	cm_bus_sub_free(w->sub);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w->allow);
	free(w);
}
