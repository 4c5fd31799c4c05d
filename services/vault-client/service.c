/*
 * service.c - vault-client: the secrets sidecar.
 *
 * This file is the service's whole surface: its settings and its routes.
 * /health, /health/ready and /metrics come from libcommon. The features
 * arrive with their own issues; until then the route table is empty.
 */
#include "common/service.h"

#include <stddef.h>

#include "common/banned.h"

static const struct cm_route vc_routes[] = {
	CM_ROUTE_END,
};

const struct cm_service_desc vc_service = {
	.name = "vault-client",
	.port_env = "VAULT_CLIENT_PORT",
	.default_port = 8007,
	.schema = "vault_client",
	.config = NULL,
	.routes = vc_routes,
};
