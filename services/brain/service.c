/*
 * service.c - brain: API gateway, tenants, users and sign-in.
 *
 * This file is the service's whole surface: its settings and its routes.
 * /health, /health/ready and /metrics come from libcommon. The features
 * arrive with their own issues; until then the route table is empty.
 */
#include "common/service.h"

#include <stddef.h>

#include "common/banned.h"

/* Peers brain routes to (the gateway issue uses them). */
static const struct cm_config_item brain_config[] = {
	{ "CMS_URL", CM_CFG_URL, "http://127.0.0.1:8002", 0, 2048, 0, "cms" },
	{ "CRM_URL", CM_CFG_URL, "http://127.0.0.1:8003", 0, 2048, 0, "crm" },
	{ "IMAGE_URL", CM_CFG_URL, "http://127.0.0.1:8004", 0, 2048, 0,
	  "image" },
	{ "TELEGRAM_URL", CM_CFG_URL, "http://127.0.0.1:8005", 0, 2048, 0,
	  "telegram" },
	{ "TEMPORAL_WORKER_URL", CM_CFG_URL, "http://127.0.0.1:8006", 0, 2048,
	  0, "temporal-worker" },
	{ "VAULT_CLIENT_URL", CM_CFG_URL, "http://127.0.0.1:8007", 0, 2048, 0,
	  "vault-client" },
	{ "AGENTS_URL", CM_CFG_URL, "http://127.0.0.1:8008", 0, 2048, 0,
	  "agents" },
	{ "EVENT_BUS_URL", CM_CFG_URL, "http://127.0.0.1:8009", 0, 2048, 0,
	  "event-bus" },
	{ "DASHBOARD_SERVER_URL", CM_CFG_URL, "http://127.0.0.1:8010", 0, 2048,
	  0, "dashboard-server" },
	CM_CONFIG_END
};

static const struct cm_route brain_routes[] = {
	CM_ROUTE_END,
};

const struct cm_service_desc brain_service = {
	.name = "brain",
	.port_env = "BRAIN_PORT",
	.default_port = 8001,
	.schema = "brain",
	.config = brain_config,
	.routes = brain_routes,
};
