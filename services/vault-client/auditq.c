/* auditq.c - a bounded queue of audit rows written in batches. */
#include "auditq.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/mem.h"

#include "common/banned.h"

#define AUDITQ_BATCH 500
#define AUDITQ_RESULTS 1024

/* One queued row, owning its strings. */
struct row {
	enum vc_scope scope;
	bool allowed;
	char tenant_id[40];
	char caller[80];
	char op[16];
	char path[VC_NAME_MAX + 80];
	char reason[32];
	char request_id[130];
};

struct result {
	uint64_t first, last; /* tickets of one batch */
	bool ok;
};

struct vc_auditq {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	pthread_t thread;
	vc_auditq_write_fn fn;
	void *ctx;
	void (*resolved_fn)(void); /* after each batch, outside the lock */
	int flush_ms;
	struct row *ring; /* max rows, FIFO */
	size_t max, head, count;
	uint64_t next_ticket; /* the ticket of the next row added */
	/* every ticket <= resolved is written or failed: read without the
	   lock by waiting readers, who look when resolved_fn wakes them */
	_Atomic uint64_t resolved;
	struct result results[AUDITQ_RESULTS];
	size_t nresults; /* batches resolved so far */
	bool stopping;
};

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void
row_from(struct row *r, const struct vc_audit *a)
{
	r->scope = a->scope;
	r->allowed = a->allowed;
	cm_strlcpy(r->tenant_id, a->tenant_id ? a->tenant_id : "",
		   sizeof(r->tenant_id));
	cm_strlcpy(r->caller, a->caller ? a->caller : "", sizeof(r->caller));
	cm_strlcpy(r->op, a->op ? a->op : "", sizeof(r->op));
	cm_strlcpy(r->path, a->path ? a->path : "", sizeof(r->path));
	cm_strlcpy(r->reason, a->reason ? a->reason : "", sizeof(r->reason));
	cm_strlcpy(r->request_id, a->request_id ? a->request_id : "",
		   sizeof(r->request_id));
}

static void
audit_from(struct vc_audit *a, const struct row *r)
{
	a->scope = r->scope;
	a->allowed = r->allowed;
	a->tenant_id = r->tenant_id;
	a->caller = r->caller;
	a->op = r->op;
	a->path = r->path;
	a->reason = r->reason;
	a->request_id = r->request_id;
}

/* Take up to AUDITQ_BATCH rows off the queue (under the lock). */
static size_t
take(struct vc_auditq *q, struct row *batch, uint64_t *first)
{
	size_t n = q->count < AUDITQ_BATCH ? q->count : AUDITQ_BATCH, i;

	*first = q->next_ticket - q->count;
	for (i = 0; i < n; i++)
		batch[i] = q->ring[(q->head + i) % q->max];
	q->head = (q->head + n) % q->max;
	q->count -= n;
	return n;
}

static int
write_batch(struct vc_auditq *q, const struct row *batch, size_t n)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc_audit *rows = cm_xcalloc(n, sizeof(*rows));
	size_t i;
	int rc;

	for (i = 0; i < n; i++)
		audit_from(&rows[i], &batch[i]);
	rc = q->fn(rows, n, q->ctx, errbuf);
	if (rc < 0)
		cm_log_err("audit batch of %zu: %s", n, errbuf);
	free(rows);
	return rc;
}

static void *
flusher(void *arg)
{
	struct vc_auditq *q = arg;
	struct row *batch = cm_xcalloc(AUDITQ_BATCH, sizeof(*batch));
	struct result *res;
	uint64_t first;
	size_t n;
	int rc;

	pthread_mutex_lock(&q->mu);
	for (;;) {
		bool waited = false;

		while (!q->count && !q->stopping) {
			pthread_cond_wait(&q->cond, &q->mu);
			waited = true;
		}
		if (!q->count && q->stopping)
			break;
		/* the first row after a quiet spell waits flush_ms for
		   company; rows that came during a write go at once */
		if (waited && q->flush_ms > 0 && q->count < AUDITQ_BATCH &&
		    !q->stopping) {
			pthread_mutex_unlock(&q->mu);
			sleep_ms(q->flush_ms);
			pthread_mutex_lock(&q->mu);
		}
		n = take(q, batch, &first);
		pthread_mutex_unlock(&q->mu);
		rc = write_batch(q, batch, n);
		pthread_mutex_lock(&q->mu);
		res = &q->results[q->nresults++ % AUDITQ_RESULTS];
		res->first = first;
		res->last = first + n - 1;
		res->ok = rc == 0;
		atomic_store(&q->resolved, res->last);
		if (q->resolved_fn) {
			pthread_mutex_unlock(&q->mu);
			q->resolved_fn();
			pthread_mutex_lock(&q->mu);
		}
	}
	pthread_mutex_unlock(&q->mu);
	free(batch);
	return NULL;
}

struct vc_auditq *
vc_auditq_new(size_t max, int flush_ms, vc_auditq_write_fn fn, void *ctx,
	      void (*resolved_fn)(void))
{
	struct vc_auditq *q = cm_xcalloc(1, sizeof(*q));

	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cond, NULL);
	q->fn = fn;
	q->ctx = ctx;
	q->resolved_fn = resolved_fn;
	q->flush_ms = flush_ms > 0 ? flush_ms : 0; /* 0: no wait */
	q->max = max > 0 ? max : 1;
	q->ring = cm_xcalloc(q->max, sizeof(*q->ring));
	q->next_ticket = 1;
	if (pthread_create(&q->thread, NULL, flusher, q)) {
		free(q->ring);
		pthread_cond_destroy(&q->cond);
		pthread_mutex_destroy(&q->mu);
		free(q);
		return NULL;
	}
	return q;
}

void
vc_auditq_free(struct vc_auditq *q)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	q->stopping = true;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->mu);
	pthread_join(q->thread, NULL);
	free(q->ring);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->mu);
	free(q);
}

uint64_t
vc_auditq_add(struct vc_auditq *q, const struct vc_audit *a)
{
	uint64_t ticket = 0;

	pthread_mutex_lock(&q->mu);
	if (q->count < q->max && !q->stopping) {
		row_from(&q->ring[(q->head + q->count) % q->max], a);
		q->count++;
		ticket = q->next_ticket++;
		if (q->count == 1 || q->count == AUDITQ_BATCH)
			pthread_cond_signal(&q->cond);
	}
	pthread_mutex_unlock(&q->mu);
	return ticket;
}

int
vc_auditq_state(struct vc_auditq *q, uint64_t ticket)
{
	const struct result *r;
	size_t i, n;
	int state = -1;

	if (ticket > atomic_load(&q->resolved))
		return 0; /* the common case, without the lock */
	pthread_mutex_lock(&q->mu);
	n = q->nresults < AUDITQ_RESULTS ? q->nresults : AUDITQ_RESULTS;
	for (i = 1; i <= n; i++) { /* newest first: readers look soon */
		r = &q->results[(q->nresults - i) % AUDITQ_RESULTS];
		if (ticket >= r->first && ticket <= r->last) {
			state = r->ok ? 1 : -1;
			break;
		}
		if (ticket > r->last)
			break;
	}
	pthread_mutex_unlock(&q->mu);
	return state;
}
