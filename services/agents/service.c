/*
 * service.c - agents: AI agent crews.
 *
 * This file is the service's whole surface: its settings and its routes.
 * /health, /health/ready and /metrics come from libcommon. The features
 * arrive with their own issues; until then the route table is empty.
 */
#include "common/service.h"

#include <stddef.h>

#include "common/banned.h"

static const struct cm_route agents_routes[] = {
	CM_ROUTE_END,
};

const struct cm_service_desc agents_service = {
	.name = "agents",
	.port_env = "AGENTS_PORT",
	.default_port = 8008,
	.schema = "agents",
	.config = NULL,
	.routes = agents_routes,
};
