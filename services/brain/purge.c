/*
 * purge.c - soft-deleted tenants are removed for good once their grace
 * has passed (purge_after <= now()): one thread per process wakes every
 * BRAIN_PURGE_INTERVAL_S and purges in batches. Replicas may all run it:
 * a batch locks its rows with SKIP LOCKED and deletes them in the same
 * statement, so no tenant is purged twice. Each purge stages
 * tenant.updated {changes: {purged: true}} in its transaction (the outbox,
 * events.c) so the other services can drop the tenant's data.
 */
#include "brain.h"

#include "common/config.h"
#include "common/log.h"
#include "common/service.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "common/banned.h"

#define PURGE_BATCH 100

static pthread_mutex_t purge_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t purge_cond;
static pthread_t purge_thread;
static bool purge_running, purge_stopping;
static int64_t purge_interval_s = 3600;
static int64_t grace_override_s; /* 0: the days setting */

int64_t
brain_delete_grace_s(const struct brain *b)
{
	return grace_override_s > 0 ? grace_override_s
				    : b->delete_grace_days * 86400;
}

struct purge_tx {
	cJSON *ids;
	struct brain_staged st;
};

/* One batch: the purge and, in its transaction, tenant.updated
   {changes: {purged: true}} for each purged tenant. */
static int
purge_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct purge_tx *t = arg;
	const cJSON *id;
	cJSON *data;
	int rc;

	if ((rc = brain_store_tenant_purge(PURGE_BATCH, &t->ids, errbuf)) < 0)
		return rc;
	cJSON_ArrayForEach(id, t->ids)
	{
		data = cJSON_CreateObject();
		cJSON_AddStringToObject(data, "tenant_id",
					cJSON_GetStringValue(id));
		cJSON_AddBoolToObject(cJSON_AddObjectToObject(data, "changes"),
				      "purged", true);
		rc = brain_stage(conn, &t->st, "tenant.updated",
				 cJSON_GetStringValue(id), data, errbuf);
		cJSON_Delete(data);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int
brain_purge_run(const struct brain *b, char errbuf[CM_ERRBUF_LEN])
{
	struct purge_tx t;
	const cJSON *id;
	int total = 0, n, rc;

	do {
		t.ids = NULL;
		rc = brain_change(b, purge_work, &t, &t.st, errbuf);
		if (rc < 0) {
			cJSON_Delete(t.ids);
			return rc;
		}
		n = cJSON_GetArraySize(t.ids);
		cJSON_ArrayForEach(id, t.ids)
			cm_log_info("tenant %s purged after its grace",
				    cJSON_GetStringValue(id));
		cJSON_Delete(t.ids);
		total += n;
	} while (n == PURGE_BATCH);
	return total;
}

/* Wait for the interval or a stop; true when stopping. */
static bool
purge_wait(void)
{
	struct timespec until;
	bool stop;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += purge_interval_s;
	pthread_mutex_lock(&purge_lock);
	while (!purge_stopping &&
	       pthread_cond_timedwait(&purge_cond, &purge_lock, &until) == 0)
		;
	stop = purge_stopping;
	pthread_mutex_unlock(&purge_lock);
	return stop;
}

static void *
purge_main(void *arg)
{
	const struct brain *b = arg;
	char errbuf[CM_ERRBUF_LEN];

	while (!purge_wait()) {
		errbuf[0] = '\0';
		if (brain_purge_run(b, errbuf) < 0)
			cm_log_err("tenant purge: %s", errbuf);
	}
	return NULL;
}

int
brain_purge_start(struct cm_service *svc, const struct brain *b)
{
	const struct cm_config *c = cm_service_config(svc);
	pthread_condattr_t attr;

	purge_interval_s = cm_config_int(c, "BRAIN_PURGE_INTERVAL_S");
	grace_override_s = cm_config_int(c, "BRAIN_TENANT_DELETE_GRACE_S");
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&purge_cond, &attr);
	pthread_condattr_destroy(&attr);
	purge_stopping = false;
	if (pthread_create(&purge_thread, NULL, purge_main, (void *)b) != 0) {
		cm_log_err("cannot start the tenant purge thread");
		return CM_EIO;
	}
	purge_running = true;
	return 0;
}

void
brain_purge_stop(void)
{
	if (!purge_running)
		return;
	pthread_mutex_lock(&purge_lock);
	purge_stopping = true;
	pthread_cond_signal(&purge_cond);
	pthread_mutex_unlock(&purge_lock);
	pthread_join(purge_thread, NULL);
	pthread_cond_destroy(&purge_cond);
	purge_running = false;
}
