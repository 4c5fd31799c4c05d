/*
 * service.c - event-bus: tenant-isolated events on Redis Streams.
 *
 * This file is the service's whole surface: its settings and its routes.
 * /health, /health/ready and /metrics come from libcommon. The features
 * arrive with their own issues; until then the route table is empty.
 */
#include "common/service.h"

#include <stddef.h>

#include "common/banned.h"

static const struct cm_route bus_routes[] = {
	CM_ROUTE_END,
};

const struct cm_service_desc bus_service = {
	.name = "event-bus",
	.port_env = "EVENT_BUS_PORT",
	.default_port = 8009,
	.schema = "event_bus",
	.config = NULL,
	.routes = bus_routes,
};
