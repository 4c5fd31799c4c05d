/*
 * service.c - event-bus: tenant-isolated events on Redis Streams.
 *
 * This file is the service's whole surface: its settings and its routes.
 * /health, /health/ready and /metrics come from libcommon (the bus
 * counters, bz_bus_*_total by type, are in /metrics). Start-up loads the
 * event type registry, makes the audit table's partitions and starts the
 * audit writer, the replay worker, the webhook threads and the retention
 * job; stop joins them. Design: docs/event-bus.md.
 */
#include "common/service.h"

#include <stddef.h>
#include <stdlib.h>

#include "common/httpclient.h"
#include "common/log.h"
#include "common/mem.h"
#include "evbus.h"

#include "common/banned.h"

static const struct cm_config_item bus_config[] = {
	{ "EVENT_REGISTRY_PATH", CM_CFG_STRING, "proto/events/registry.json", 1,
	  4096, 0, "the event type registry (JSON)" },
	{ "AUDIT_ENABLED", CM_CFG_BOOL, "true", 0, 0, 0,
	  "run the audit writer (consumer group audit)" },
	{ "BUS_CLAIM_IDLE_MS", CM_CFG_INT, "30000", 100, 86400000, 0,
	  "claim entries another consumer left pending this long" },
	{ "BUS_MAX_ATTEMPTS", CM_CFG_INT, "5", 1, 100, 0,
	  "handler attempts before the dead-letter stream" },
	{ "BUS_BACKOFF_MS", CM_CFG_INT, "100", 1, 5000, 0,
	  "first retry delay, doubled per attempt" },
	{ "BUS_STATS_INTERVAL_MS", CM_CFG_INT, "15000", 100, 3600000, 0,
	  "how often the pending/lag gauges are refreshed" },
	{ "EVENT_QUOTA_FREE", CM_CFG_INT, "1000", 0, 1000000000, 0,
	  "events per hour over HTTP for the free tier (0: unlimited)" },
	{ "EVENT_QUOTA_STARTER", CM_CFG_INT, "10000", 0, 1000000000, 0,
	  "events per hour, starter tier" },
	{ "EVENT_QUOTA_PROFESSIONAL", CM_CFG_INT, "100000", 0, 1000000000, 0,
	  "events per hour, professional tier" },
	{ "EVENT_QUOTA_ENTERPRISE", CM_CFG_INT, "0", 0, 1000000000, 0,
	  "events per hour, enterprise tier" },
	{ "WEBHOOKS_ENABLED", CM_CFG_BOOL, "true", 0, 0, 0,
	  "run the webhook fan-out (group webhooks) and delivery threads" },
	{ "WEBHOOK_WORKERS", CM_CFG_INT, "2", 1, 16, 0,
	  "webhook delivery threads" },
	{ "WEBHOOK_TIMEOUT_MS", CM_CFG_INT, "10000", 100, 60000, 0,
	  "one delivery attempt, connect to last byte" },
	{ "WEBHOOK_MAX_ATTEMPTS", CM_CFG_INT, "13", 1, 100, 0,
	  "attempts before a delivery is dead (defaults: over 26 h)" },
	{ "WEBHOOK_BACKOFF_MS", CM_CFG_INT, "60000", 1, 86400000, 0,
	  "wait after the first failed attempt, doubled per attempt" },
	{ "WEBHOOK_BACKOFF_MAX_MS", CM_CFG_INT, "21600000", 1, 604800000, 0,
	  "the longest wait between two attempts" },
	{ "WEBHOOK_POLL_MS", CM_CFG_INT, "500", 10, 60000, 0,
	  "idle delivery threads look for due retries this often" },
	{ "WEBHOOK_MAX_PER_TENANT", CM_CFG_INT, "50", 1, 10000, 0,
	  "webhook subscriptions per tenant" },
	{ "WEBHOOK_ALLOW_CIDRS", CM_CFG_STRING, NULL, 0, 1024, 0,
	  "DEV/TEST ONLY: networks webhooks may reach past the SSRF guard "
	  "(e.g. 127.0.0.0/8); empty in production" },
	{ "BUS_RETENTION_INTERVAL_MS", CM_CFG_INT, "3600000", 100, 86400000, 0,
	  "how often the retention job runs" },
	{ "BUS_STREAM_RETENTION_HOURS", CM_CFG_INT, "168", 0, 87600, 0,
	  "keep stream entries this long (never past a group's need)" },
	{ "BUS_DLQ_RETENTION_DAYS", CM_CFG_INT, "30", 0, 3650, 0,
	  "keep dead letters this long (0: forever)" },
	{ "BUS_AUDIT_RETENTION_DAYS", CM_CFG_INT, "365", 0, 36500, 0,
	  "keep audit rows this long (0: forever)" },
	{ "WEBHOOK_DELIVERY_RETENTION_DAYS", CM_CFG_INT, "30", 0, 3650, 0,
	  "keep finished webhook deliveries this long (0: forever)" },
	{ "SSE_POLL_MS", CM_CFG_INT, "250", 10, 10000, 0,
	  "how often an open event stream looks for new events" },
	{ "SSE_HEARTBEAT_MS", CM_CFG_INT, "15000", 100, 300000, 0,
	  "a heartbeat comment after this much silence on a stream" },
	{ "SSE_MAX_STREAMS", CM_CFG_INT, "1000", 1, 100000, 0,
	  "event streams open at once (more: 503)" },
	CM_CONFIG_END,
};

static const struct cm_route bus_routes[] = {
	{ "GET", "/api/events/stream", bus_handle_stream, 0 },
	{ "POST", "/api/events/publish", bus_handle_publish, 0 },
	{ "POST", "/api/events/publish/batch", bus_handle_publish_batch, 0 },
	{ "GET", "/api/events/history", bus_handle_history, 0 },
	{ "POST", "/api/events/replay", bus_handle_replay_create, 0 },
	{ "GET", "/api/events/replay/:id", bus_handle_replay_get, 0 },
	{ "GET", "/api/events/dead-letters", bus_handle_dlq_list, 0 },
	{ "GET", "/api/events/dead-letters/:id", bus_handle_dlq_get, 0 },
	{ "POST", "/api/events/dead-letters/:id/retry", bus_handle_dlq_retry,
	  0 },
	{ "DELETE", "/api/events/dead-letters/:id", bus_handle_dlq_discard, 0 },
	{ "GET", "/api/events/admin/dead-letters", bus_handle_dlq_admin_list,
	  CM_ROUTE_NO_TENANT },
	{ "GET", "/api/events/admin/dead-letters/:tenant_id/:id",
	  bus_handle_dlq_admin_get, CM_ROUTE_NO_TENANT },
	{ "POST", "/api/events/admin/dead-letters/:tenant_id/:id/retry",
	  bus_handle_dlq_admin_retry, CM_ROUTE_NO_TENANT },
	{ "DELETE", "/api/events/admin/dead-letters/:tenant_id/:id",
	  bus_handle_dlq_admin_discard, CM_ROUTE_NO_TENANT },
	{ "GET", "/api/events/webhooks", bus_handle_wh_list, 0 },
	{ "POST", "/api/events/webhooks", bus_handle_wh_create, 0 },
	{ "GET", "/api/events/webhooks/:id", bus_handle_wh_get, 0 },
	{ "PATCH", "/api/events/webhooks/:id", bus_handle_wh_update, 0 },
	{ "DELETE", "/api/events/webhooks/:id", bus_handle_wh_delete, 0 },
	{ "POST", "/api/events/webhooks/:id/rotate-secret",
	  bus_handle_wh_rotate, 0 },
	{ "GET", "/api/events/webhooks/:id/deliveries",
	  bus_handle_wh_deliveries, 0 },
	{ "POST", "/api/events/webhooks/:id/deliveries/:delivery_id/retry",
	  bus_handle_wh_delivery_retry, 0 },
	CM_ROUTE_END,
};

static void
audit_config(const struct cm_config *cfg, struct bus_audit_config *ac)
{
	ac->claim_idle_ms = (int)cm_config_int(cfg, "BUS_CLAIM_IDLE_MS");
	ac->max_attempts = (int)cm_config_int(cfg, "BUS_MAX_ATTEMPTS");
	ac->backoff_ms = (int)cm_config_int(cfg, "BUS_BACKOFF_MS");
	ac->stats_interval_ms =
		(int)cm_config_int(cfg, "BUS_STATS_INTERVAL_MS");
}

/* The webhook settings: the allow list is checked and announced. */
static int
start_webhooks(const struct cm_config *cfg, struct bus *bus,
	       char errbuf[CM_ERRBUF_LEN])
{
	struct bus_webhooks_config wc = { 0 };
	const char *allow = cm_config_str(cfg, "WEBHOOK_ALLOW_CIDRS");
	int64_t span_s;
	int rc;

	if ((rc = cm_cidrs_check(allow, errbuf)) < 0)
		return rc;
	bus->webhook_allow_cidrs = cm_xstrdup(allow ? allow : "");
	bus->webhook_max_per_tenant =
		(int)cm_config_int(cfg, "WEBHOOK_MAX_PER_TENANT");
	if (allow && *allow)
		cm_log_warn("WEBHOOK_ALLOW_CIDRS=%s: webhooks may reach these "
			    "networks past the SSRF guard (dev/test only)",
			    allow);
	if (!cm_config_bool(cfg, "WEBHOOKS_ENABLED"))
		return 0;
	audit_config(cfg, &wc.sub);
	wc.schedule.max_attempts =
		(int)cm_config_int(cfg, "WEBHOOK_MAX_ATTEMPTS");
	wc.schedule.backoff_ms = cm_config_int(cfg, "WEBHOOK_BACKOFF_MS");
	wc.schedule.backoff_max_ms =
		cm_config_int(cfg, "WEBHOOK_BACKOFF_MAX_MS");
	wc.workers = (int)cm_config_int(cfg, "WEBHOOK_WORKERS");
	wc.timeout_ms = (int)cm_config_int(cfg, "WEBHOOK_TIMEOUT_MS");
	wc.poll_ms = (int)cm_config_int(cfg, "WEBHOOK_POLL_MS");
	wc.allow_cidrs = bus->webhook_allow_cidrs;
	span_s = bus_webhook_schedule_span_ms(&wc.schedule) / 1000;
	cm_log_info("webhooks: %d attempts over at least %lld s (%.1f h)",
		    wc.schedule.max_attempts, (long long)span_s,
		    (double)span_s / 3600.0);
	bus->webhooks = bus_webhooks_start(&wc, errbuf);
	return bus->webhooks ? 0 : CM_EIO;
}

static int
start_retention(const struct cm_config *cfg, struct bus *bus,
		char errbuf[CM_ERRBUF_LEN])
{
	struct bus_retention_config rc = { 0 };

	rc.interval_ms = (int)cm_config_int(cfg, "BUS_RETENTION_INTERVAL_MS");
	rc.stream_ms =
		cm_config_int(cfg, "BUS_STREAM_RETENTION_HOURS") * 3600000;
	rc.dlq_ms = cm_config_int(cfg, "BUS_DLQ_RETENTION_DAYS") * 86400000;
	rc.audit_days = (int)cm_config_int(cfg, "BUS_AUDIT_RETENTION_DAYS");
	rc.delivery_days =
		(int)cm_config_int(cfg, "WEBHOOK_DELIVERY_RETENTION_DAYS");
	bus->retention = bus_retention_start(&rc, errbuf);
	return bus->retention ? 0 : CM_EIO;
}

static void
bus_free(struct bus *bus)
{
	bus_retention_stop(bus->retention);
	bus_webhooks_stop(bus->webhooks);
	bus_replayer_stop(bus->replayer);
	bus_audit_stop(bus->audit);
	bus_registry_release(&bus->registry);
	free(bus->webhook_allow_cidrs);
	bus->magic = 0;
	free(bus);
}

static int
bus_start(struct cm_service *svc, void **arg)
{
	const struct cm_config *cfg = cm_service_config(svc);
	struct bus *bus = cm_xcalloc(1, sizeof(*bus));
	struct bus_audit_config ac = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	int rc;

	bus->magic = BUS_MAGIC;
	bus_stream_configure((int)cm_config_int(cfg, "SSE_POLL_MS"),
			     (int)cm_config_int(cfg, "SSE_HEARTBEAT_MS"),
			     (int)cm_config_int(cfg, "SSE_MAX_STREAMS"));
	bus->quota[0] = cm_config_int(cfg, "EVENT_QUOTA_FREE");
	bus->quota[1] = cm_config_int(cfg, "EVENT_QUOTA_STARTER");
	bus->quota[2] = cm_config_int(cfg, "EVENT_QUOTA_PROFESSIONAL");
	bus->quota[3] = cm_config_int(cfg, "EVENT_QUOTA_ENTERPRISE");
	rc = bus_registry_load(cm_config_str(cfg, "EVENT_REGISTRY_PATH"),
			       &bus->registry, errbuf);
	if (rc < 0)
		goto fail;
	if ((rc = bus_store_ensure_partitions(errbuf)) < 0)
		cm_log_warn("event partitions: %s", errbuf); /* DEFAULT holds */
	rc = CM_EIO;
	if (cm_config_bool(cfg, "AUDIT_ENABLED")) {
		audit_config(cfg, &ac);
		if (!(bus->audit = bus_audit_start(&ac, errbuf)))
			goto fail;
	}
	if (!(bus->replayer = bus_replayer_start(errbuf)))
		goto fail;
	if ((rc = start_webhooks(cfg, bus, errbuf)) < 0 ||
	    (rc = start_retention(cfg, bus, errbuf)) < 0)
		goto fail;
	*arg = bus;
	return 0;
fail:
	cm_log_err("event-bus start: %s", errbuf);
	bus_free(bus);
	return rc;
}

static void
bus_stop(struct cm_service *svc, void *arg)
{
	struct bus *bus = arg;

	(void)svc;
	if (!bus || bus->magic != BUS_MAGIC)
		return;
	bus_free(bus);
}

const struct cm_service_desc bus_service = {
	.name = "event-bus",
	.port_env = "EVENT_BUS_PORT",
	.default_port = 8009,
	.schema = "event_bus",
	.config = bus_config,
	.routes = bus_routes,
	.start = bus_start,
	.stop = bus_stop,
};
