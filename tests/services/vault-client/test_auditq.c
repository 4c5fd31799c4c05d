/* test_auditq.c - the group-commit queue of audit rows, with a fake
   writer: tickets, batching, failures, a full queue, the final flush. */
#include "testutil.h"

#include "../../../services/vault-client/auditq.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/banned.h"

struct fake {
	atomic_int calls, rows;
	atomic_bool fail;
	pthread_mutex_t gate; /* held by the test: the writer blocks */
};

static int
fake_write(const struct vc_audit *rows, size_t n, void *ctx,
	   char errbuf[CM_ERRBUF_LEN])
{
	struct fake *f = ctx;
	size_t i;

	pthread_mutex_lock(&f->gate);
	pthread_mutex_unlock(&f->gate);
	for (i = 0; i < n; i++)
		ck_assert_str_eq(rows[i].op, "read");
	atomic_fetch_add(&f->calls, 1);
	atomic_fetch_add(&f->rows, (int)n);
	if (atomic_load(&f->fail)) {
		snprintf(errbuf, CM_ERRBUF_LEN, "fake failure");
		return CM_EIO;
	}
	return 0;
}

static struct vc_audit
row(void)
{
	struct vc_audit a = { 0 };

	a.scope = VC_SCOPE_TENANT;
	a.tenant_id = "11111111-2222-4333-8444-555555555555";
	a.caller = "agents";
	a.op = "read";
	a.path = "tenants/x/llm/a";
	a.allowed = true;
	a.reason = "allowed";
	a.request_id = "r-1";
	return a;
}

/* Wait (up to 2 s) for a ticket to leave the pending state. */
static int
settle(struct vc_auditq *q, uint64_t t)
{
	int i, st = 0;

	for (i = 0; i < 2000 && (st = vc_auditq_state(q, t)) == 0; i++)
		usleep(1000);
	return st;
}

/* resolved_fn: batches announced */
static atomic_int announced;

static void
announce(void)
{
	atomic_fetch_add(&announced, 1);
}

static void
fake_init(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->gate, NULL);
}

START_TEST(test_rows_are_written_in_batches_and_tickets_say_so)
{
	struct fake f;
	struct vc_audit a = row();
	struct vc_auditq *q;
	uint64_t t[50];
	int i;

	fake_init(&f);
	atomic_store(&announced, 0);
	q = vc_auditq_new(100, 20, fake_write, &f, announce);
	ck_assert_ptr_nonnull(q);
	for (i = 0; i < 50; i++) {
		t[i] = vc_auditq_add(q, &a);
		ck_assert_uint_eq(t[i], (uint64_t)i + 1);
	}
	ck_assert_int_eq(vc_auditq_state(q, t[49]), 0);
	for (i = 0; i < 50; i++)
		ck_assert_int_eq(settle(q, t[i]), 1);
	ck_assert_int_eq(atomic_load(&f.rows), 50);
	ck_assert_int_lt(atomic_load(&f.calls), 5); /* batched, not 50 */
	vc_auditq_free(q);
	/* every batch was announced, after its tickets resolved */
	ck_assert_int_eq(atomic_load(&announced), atomic_load(&f.calls));
}
END_TEST

START_TEST(test_a_failed_batch_fails_its_tickets_only)
{
	struct fake f;
	struct vc_audit a = row();
	struct vc_auditq *q;
	uint64_t bad, good;

	fake_init(&f);
	q = vc_auditq_new(10, 1, fake_write, &f, NULL);
	atomic_store(&f.fail, true);
	bad = vc_auditq_add(q, &a);
	ck_assert_int_eq(settle(q, bad), -1);
	atomic_store(&f.fail, false);
	good = vc_auditq_add(q, &a);
	ck_assert_int_eq(settle(q, good), 1);
	ck_assert_int_eq(vc_auditq_state(q, bad), -1);
	vc_auditq_free(q);
}
END_TEST

START_TEST(test_a_full_queue_refuses_and_free_flushes_the_rest)
{
	struct fake f;
	struct vc_audit a = row();
	struct vc_auditq *q;
	int i, queued = 0;

	fake_init(&f);
	pthread_mutex_lock(&f.gate); /* the writer stalls on its first batch */
	q = vc_auditq_new(4, 1, fake_write, &f, NULL);
	ck_assert_uint_ne(vc_auditq_add(q, &a), 0);
	usleep(50 * 1000); /* the first row is now being written */
	for (i = 0; i < 10; i++)
		queued += vc_auditq_add(q, &a) != 0;
	ck_assert_int_eq(queued, 4);
	pthread_mutex_unlock(&f.gate);
	vc_auditq_free(q); /* writes what is queued first */
	ck_assert_int_eq(atomic_load(&f.rows), 5);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("vault-client auditq");
	TCase *tc = tcase_create("auditq");

	tcase_add_test(tc, test_rows_are_written_in_batches_and_tickets_say_so);
	tcase_add_test(tc, test_a_failed_batch_fails_its_tickets_only);
	tcase_add_test(tc, test_a_full_queue_refuses_and_free_flushes_the_rest);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
