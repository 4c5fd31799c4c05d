/*
 * service.c - dashboard-server: the live admin dashboard.
 *
 * This file is the service's whole surface: its settings and its routes.
 * /health, /health/ready and /metrics come from libcommon. The features
 * arrive with their own issues; until then the route table is empty.
 */
#include "common/service.h"

#include <stddef.h>

#include "common/banned.h"

static const struct cm_route dash_routes[] = {
	CM_ROUTE_END,
};

const struct cm_service_desc dash_service = {
	.name = "dashboard-server",
	.port_env = "DASHBOARD_SERVER_PORT",
	.default_port = 8010,
	.schema = "dashboard_server",
	.config = NULL,
	.routes = dash_routes,
};
