/*
 * service.c - crm: leads, contacts, companies, deals.
 *
 * This file is the service's whole surface: its settings and its routes.
 * /health, /health/ready and /metrics come from libcommon. The features
 * arrive with their own issues; until then the route table is empty.
 */
#include "common/service.h"

#include <stddef.h>

#include "common/banned.h"

static const struct cm_route crm_routes[] = {
	CM_ROUTE_END,
};

const struct cm_service_desc crm_service = {
	.name = "crm",
	.port_env = "CRM_PORT",
	.default_port = 8003,
	.schema = "crm",
	.config = NULL,
	.routes = crm_routes,
};
