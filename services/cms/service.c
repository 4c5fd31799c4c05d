/*
 * service.c - cms: pages and content per tenant.
 *
 * This file is the service's whole surface: its settings and its routes.
 * /health, /health/ready and /metrics come from libcommon. The features
 * arrive with their own issues; until then the route table is empty.
 */
#include "common/service.h"

#include <stddef.h>

#include "common/banned.h"

static const struct cm_route cms_routes[] = {
	CM_ROUTE_END,
};

const struct cm_service_desc cms_service = {
	.name = "cms",
	.port_env = "CMS_PORT",
	.default_port = 8002,
	.schema = "cms",
	.config = NULL,
	.routes = cms_routes,
};
