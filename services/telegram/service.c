/*
 * service.c - telegram: Telegram bots and approvals.
 *
 * This file is the service's whole surface: its settings and its routes.
 * /health, /health/ready and /metrics come from libcommon. The features
 * arrive with their own issues; until then the route table is empty.
 */
#include "common/service.h"

#include <stddef.h>

#include "common/banned.h"

static const struct cm_route tg_routes[] = {
	CM_ROUTE_END,
};

const struct cm_service_desc tg_service = {
	.name = "telegram",
	.port_env = "TELEGRAM_PORT",
	.default_port = 8005,
	.schema = "telegram",
	.config = NULL,
	.routes = tg_routes,
};
