/*
 * service.c - image: image search and storage.
 *
 * This file is the service's whole surface: its settings and its routes.
 * /health, /health/ready and /metrics come from libcommon. The features
 * arrive with their own issues; until then the route table is empty.
 */
#include "common/service.h"

#include <stddef.h>

#include "common/banned.h"

static const struct cm_route img_routes[] = {
	CM_ROUTE_END,
};

const struct cm_service_desc img_service = {
	.name = "image",
	.port_env = "IMAGE_PORT",
	.default_port = 8004,
	.schema = "image",
	.config = NULL,
	.routes = img_routes,
};
