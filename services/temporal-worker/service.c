/*
 * service.c - temporal-worker: durable workflows.
 *
 * This file is the service's whole surface: its settings and its routes.
 * /health, /health/ready and /metrics come from libcommon. The features
 * arrive with their own issues; until then the route table is empty.
 */
#include "common/service.h"

#include <stddef.h>

#include "common/banned.h"

static const struct cm_route wf_routes[] = {
	CM_ROUTE_END,
};

const struct cm_service_desc wf_service = {
	.name = "temporal-worker",
	.port_env = "TEMPORAL_WORKER_PORT",
	.default_port = 8006,
	.schema = "temporal_worker",
	.config = NULL,
	.routes = wf_routes,
};
