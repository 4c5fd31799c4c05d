/*
 * auditq.h - group commit of audit records for the read path.
 *
 * Writing one audit row per read in its own transaction bounds reads by
 * PostgreSQL commits. Instead a read queues its row here and gets a
 * ticket; a thread hands everything queued (at most 500 rows) to the
 * writer in one call (one transaction, store.c): the first row after a
 * quiet spell waits flush_ms (0: not at all) for others, rows that arrive
 * while a batch is being written go in the next batch at once (group
 * commit). After each batch the queue calls resolved_fn (vault-client
 * passes cm_http_signal, so readers parked with cm_req_wait look at their
 * tickets; nothing polls). The reader answers only once its ticket is
 * written, and answers 503 when the batch failed or the queue was full: no
 * value is ever sent before the record of its access is committed, exactly
 * as with one transaction per read; only the commits are shared.
 *
 * Rows are copied (bounded fields, cut to size). Tickets grow from 1 in
 * the order rows were queued, and batches are contiguous runs of them.
 * The results of the last AUDITQ_RESULTS batches are remembered; an older
 * ticket is reported failed (a reader looks within milliseconds, so this
 * only errs towards refusing). Thread-safe (one mutex; a pending ticket
 * is told from an atomic without it); the writer runs on the queue's own
 * thread.
 */
#ifndef VC_AUDITQ_H
#define VC_AUDITQ_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#include "store.h"

struct vc_auditq;

/* The writer: store all n rows (one transaction), 0 or CM_E*. */
typedef int (*vc_auditq_write_fn)(const struct vc_audit *rows, size_t n,
				  void *ctx, char errbuf[CM_ERRBUF_LEN]);

/* vc_auditq_new - a queue of at most max rows written by a new thread
   (flush_ms >= 0 as above; resolved_fn may be NULL); NULL when the thread
   cannot start. */
struct vc_auditq *vc_auditq_new(size_t max, int flush_ms, vc_auditq_write_fn fn,
				void *ctx, void (*resolved_fn)(void));
/* vc_auditq_free - write what is queued, stop the thread; accepts NULL. */
void vc_auditq_free(struct vc_auditq *q);
/* vc_auditq_add - queue a copy of a; its ticket, or 0 when full. */
uint64_t vc_auditq_add(struct vc_auditq *q, const struct vc_audit *a);
/* vc_auditq_state - 1 when the ticket's row is written, 0 while pending,
   -1 when its batch failed (or is too old to tell). */
int vc_auditq_state(struct vc_auditq *q, uint64_t ticket);

#endif
