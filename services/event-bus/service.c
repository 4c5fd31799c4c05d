/*
 * service.c - event-bus: tenant-isolated events on Redis Streams.
 *
 * This file is the service's whole surface: its settings and its routes.
 * /health, /health/ready and /metrics come from libcommon (the bus
 * counters, bz_bus_*_total by type, are in /metrics). Start-up loads the
 * event type registry, makes the audit table's partitions and starts the
 * audit writer; stop joins it. Design: docs/event-bus.md.
 */
#include "common/service.h"

#include <stddef.h>
#include <stdlib.h>

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
	CM_CONFIG_END,
};

static const struct cm_route bus_routes[] = {
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
	CM_ROUTE_END,
};

static int
bus_start(struct cm_service *svc, void **arg)
{
	const struct cm_config *cfg = cm_service_config(svc);
	struct bus *bus = cm_xcalloc(1, sizeof(*bus));
	struct bus_audit_config ac = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	int rc;

	bus->magic = BUS_MAGIC;
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
	if (cm_config_bool(cfg, "AUDIT_ENABLED")) {
		ac.claim_idle_ms = (int)cm_config_int(cfg, "BUS_CLAIM_IDLE_MS");
		ac.max_attempts = (int)cm_config_int(cfg, "BUS_MAX_ATTEMPTS");
		ac.backoff_ms = (int)cm_config_int(cfg, "BUS_BACKOFF_MS");
		ac.stats_interval_ms =
			(int)cm_config_int(cfg, "BUS_STATS_INTERVAL_MS");
		bus->audit = bus_audit_start(&ac, errbuf);
		if (!bus->audit) {
			rc = CM_EIO;
			goto fail;
		}
	}
	if (!(bus->replayer = bus_replayer_start(errbuf))) {
		rc = CM_EIO;
		goto fail;
	}
	*arg = bus;
	return 0;
fail:
	cm_log_err("event-bus start: %s", errbuf);
	bus_audit_stop(bus->audit);
	bus_registry_release(&bus->registry);
	free(bus);
	return rc;
}

static void
bus_stop(struct cm_service *svc, void *arg)
{
	struct bus *bus = arg;

	(void)svc;
	if (!bus || bus->magic != BUS_MAGIC)
		return;
	bus_replayer_stop(bus->replayer);
	bus_audit_stop(bus->audit);
	bus_registry_release(&bus->registry);
	bus->magic = 0;
	free(bus);
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
