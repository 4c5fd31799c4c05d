/*
 * service.c - brain: tenants, users and sign-in, and the API gateway.
 *
 * This file is the service's whole surface: its settings and its routes.
 * /health, /health/ready, /metrics and /whoami come from libcommon. The
 * design (data model, roles, tokens) is in docs/brain.md and the contract
 * in proto/openapi/brain.yaml.
 */
#include "common/service.h"

#include "brain.h"

#include "common/log.h"
#include "common/mem.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

static const struct cm_config_item brain_config[] = {
	/* Peers brain routes to (the gateway issue uses them). */
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
	/* Sign-in and tenants. */
	{ "BRAIN_BOOTSTRAP_ADMIN_EMAIL", CM_CFG_STRING, NULL, 0, 254, 0,
	  "create (or promote) this platform super admin at start-up" },
	{ "BRAIN_BOOTSTRAP_ADMIN_PASSWORD_FILE", CM_CFG_STRING, NULL, 0, 4096,
	  0, "file holding the bootstrap admin's password (12+ chars)" },
	{ "BRAIN_REFRESH_TTL_S", CM_CFG_INT, "2592000", 300, 31536000, 0,
	  "refresh token lifetime in seconds" },
	{ "BRAIN_TENANT_DELETE_GRACE_DAYS", CM_CFG_INT, "30", 1, 365, 0,
	  "days a deleted tenant can be restored" },
	{ "BRAIN_TENANT_DELETE_GRACE_S", CM_CFG_INT, "0", 0, 31536000, 0,
	  "the grace in seconds instead of days when not 0 (tests)" },
	{ "BRAIN_PURGE_INTERVAL_S", CM_CFG_INT, "3600", 1, 86400, 0,
	  "seconds between purges of tenants past their grace" },
	{ "BRAIN_RELAY_INTERVAL_MS", CM_CFG_INT, "1000", 10, 3600000, 0,
	  "how often the outbox relay looks for unpublished tenant events" },
	{ "BRAIN_LOGIN_MAX_FAILS", CM_CFG_INT, "5", 1, 1000, 0,
	  "failed sign-ins per account per window" },
	{ "BRAIN_LOGIN_MAX_FAILS_PER_ADDR", CM_CFG_INT, "50", 1, 100000, 0,
	  "failed sign-ins per client address per window" },
	{ "BRAIN_LOGIN_WINDOW_S", CM_CFG_INT, "900", 1, 86400, 0,
	  "failed sign-in window in seconds" },
	{ "BRAIN_OPENAPI_FILE", CM_CFG_STRING, "proto/openapi/brain.yaml", 1,
	  4096, 0, "the API document served at /brain/openapi.json" },
	{ "BRAIN_INTEGRATION_TIMEOUT_MS", CM_CFG_INT, "5000", 100, 60000, 0,
	  "how long POST /api/events/test-integration waits for the bus" },
	/* The gateway. */
	{ "GATEWAY_TIMEOUT_MS", CM_CFG_INT, "30000", 100, 600000, 0,
	  "how long an upstream may take to start its answer" },
	{ "GATEWAY_PLAN_TTL_MS", CM_CFG_INT, "5000", 0, 5000, 0,
	  "how long a tenant's services and rate are cached per thread" },
	{ "GATEWAY_IDLE_TIMEOUT_S", CM_CFG_INT, "60", 1, 3600, 0,
	  "how long an upstream connection or stream may sit idle" },
	CM_CONFIG_END
};

#define ADMIN CM_ROUTE_NO_TENANT
#define USER CM_ROUTE_NO_TENANT
/* Every method of /api/<prefix>/... to the gateway (gateway.c). */
#define GATEWAY(prefix)                                               \
	{ "GET", "/api/" prefix "/*", brain_h_gateway, 0 },           \
		{ "POST", "/api/" prefix "/*", brain_h_gateway, 0 },  \
		{ "PUT", "/api/" prefix "/*", brain_h_gateway, 0 },   \
		{ "PATCH", "/api/" prefix "/*", brain_h_gateway, 0 }, \
	{                                                             \
		"DELETE", "/api/" prefix "/*", brain_h_gateway, 0     \
	}

static const struct cm_route brain_routes[] = {
	{ "POST", "/api/auth/login", brain_h_login, CM_ROUTE_PUBLIC },
	{ "POST", "/api/auth/refresh", brain_h_refresh, CM_ROUTE_PUBLIC },
	{ "POST", "/api/auth/logout", brain_h_logout, USER },
	{ "GET", "/api/auth/me", brain_h_me, USER },
	{ "POST", "/api/auth/switch-tenant", brain_h_switch_tenant, USER },
	{ "POST", "/api/auth/accept-invitation", brain_h_invite_accept,
	  CM_ROUTE_PUBLIC },
	{ "GET", "/api/admin/tenants", brain_h_tenants_list, ADMIN },
	{ "POST", "/api/admin/tenants", brain_h_tenants_create, ADMIN },
	{ "GET", "/api/admin/tenants/:id", brain_h_tenant_get, ADMIN },
	{ "PATCH", "/api/admin/tenants/:id", brain_h_tenant_update, ADMIN },
	{ "DELETE", "/api/admin/tenants/:id", brain_h_tenant_delete, ADMIN },
	{ "POST", "/api/admin/tenants/:id/suspend", brain_h_tenant_suspend,
	  ADMIN },
	{ "POST", "/api/admin/tenants/:id/reactivate",
	  brain_h_tenant_reactivate, ADMIN },
	{ "POST", "/api/admin/tenants/:id/restore", brain_h_tenant_restore,
	  ADMIN },
	{ "POST", "/api/admin/tenants/:id/domains", brain_h_domain_add, ADMIN },
	{ "POST", "/api/admin/tenants/:id/domains/:domain/verify",
	  brain_h_domain_verify, ADMIN },
	{ "DELETE", "/api/admin/tenants/:id/domains/:domain",
	  brain_h_domain_remove, ADMIN },
	{ "POST", "/api/admin/tenants/:id/members", brain_h_admin_members_add,
	  ADMIN },
	{ "GET", "/api/unified-tenants", brain_h_tenants_list, ADMIN },
	{ "GET", "/api/unified-tenants/resolve", brain_h_resolve, ADMIN },
	{ "GET", "/api/unified-tenants/:id", brain_h_tenant_get, ADMIN },
	{ "GET", "/api/tenant", brain_h_own_get, 0 },
	{ "PATCH", "/api/tenant", brain_h_own_update, 0 },
	{ "GET", "/api/tenant/usage", brain_h_own_usage, 0 },
	{ "POST", "/api/tenant/usage", brain_h_usage_report,
	  CM_ROUTE_SERVICE_ONLY },
	{ "GET", "/api/tenant/members", brain_h_members_list, 0 },
	{ "POST", "/api/tenant/members", brain_h_members_add, 0 },
	{ "DELETE", "/api/tenant/members/:user_id", brain_h_members_remove, 0 },
	{ "GET", "/api/tenant/invitations", brain_h_invites_list, 0 },
	{ "POST", "/api/tenant/invitations", brain_h_invites_create, 0 },
	{ "DELETE", "/api/tenant/invitations/:id", brain_h_invites_revoke, 0 },
	{ "GET", "/api/tenant/api-keys", brain_h_keys_list, 0 },
	{ "POST", "/api/tenant/api-keys", brain_h_keys_create, 0 },
	{ "DELETE", "/api/tenant/api-keys/:id", brain_h_keys_revoke, 0 },
	{ "GET", "/health/all", brain_h_health_all, CM_ROUTE_PUBLIC },
	{ "GET", "/health/:service", brain_h_health_one, CM_ROUTE_PUBLIC },
	{ "GET", "/brain/openapi.json", brain_h_openapi, CM_ROUTE_PUBLIC },
	{ "GET", "/brain/docs", brain_h_docs, CM_ROUTE_PUBLIC },
	{ "POST", "/api/events/test-integration", brain_h_test_integration, 0 },
	/* the gateway, after brain's own routes (a brain route under
	   /api/events/ must come before GATEWAY("events")) */
	GATEWAY("crm"),
	GATEWAY("cms"),
	GATEWAY("agents"),
	GATEWAY("telegram"),
	GATEWAY("images"),
	GATEWAY("workflows"),
	GATEWAY("events"),
	GATEWAY("secrets"),
	CM_ROUTE_END,
};

static struct brain the_brain;

/* Config names of the peers, in enum brain_peer order. */
static const char *const peer_env[BRAIN_NPEERS] = {
	"CMS_URL",
	"CRM_URL",
	"IMAGE_URL",
	"TELEGRAM_URL",
	"TEMPORAL_WORKER_URL",
	"VAULT_CLIENT_URL",
	"AGENTS_URL",
	"EVENT_BUS_URL",
	"DASHBOARD_SERVER_URL",
};

static void
read_settings(struct brain *b, const struct cm_config *c)
{
	int i;

	b->magic = BRAIN_MAGIC;
	for (i = 0; i < BRAIN_NPEERS; i++)
		b->peer_url[i] = cm_config_str(c, peer_env[i]);
	b->alg = CM_JWT_HS256;
	b->jwt_key = cm_config_str(c, "JWT_SECRET_KEY");
	b->issuer = cm_config_str(c, "JWT_ISSUER");
	b->audience = cm_config_str(c, "JWT_AUDIENCE");
	b->domain = cm_config_str(c, "DOMAIN");
	b->refresh_ttl_s = cm_config_int(c, "BRAIN_REFRESH_TTL_S");
	b->delete_grace_days =
		cm_config_int(c, "BRAIN_TENANT_DELETE_GRACE_DAYS");
	b->login_max_fails = cm_config_int(c, "BRAIN_LOGIN_MAX_FAILS");
	b->login_max_addr = cm_config_int(c, "BRAIN_LOGIN_MAX_FAILS_PER_ADDR");
	b->login_window_s = cm_config_int(c, "BRAIN_LOGIN_WINDOW_S");
	b->service_secret = cm_config_str(c, "SERVICE_SECRET");
	b->gw_timeout_ms = cm_config_int(c, "GATEWAY_TIMEOUT_MS");
	b->gw_idle_timeout_s = cm_config_int(c, "GATEWAY_IDLE_TIMEOUT_S");
	b->gw_plan_ttl_ms = cm_config_int(c, "GATEWAY_PLAN_TTL_MS");
	b->integration_timeout_ms =
		cm_config_int(c, "BRAIN_INTEGRATION_TIMEOUT_MS");
}

/* Settings, the dummy hash for unknown users, the bootstrap admin. */
static int
brain_start(struct cm_service *svc, void **arg)
{
	const struct cm_config *c = cm_service_config(svc);
	const char *email = cm_config_str(c, "BRAIN_BOOTSTRAP_ADMIN_EMAIL");
	char errbuf[CM_ERRBUF_LEN] = "", dummy[BRAIN_TOKEN_LEN];
	struct brain *b = &the_brain;
	int rc;

	read_settings(b, c);
	if ((rc = brain_gateway_init(b, errbuf)) < 0) {
		cm_log_err("gateway: %s", errbuf);
		return rc;
	}
	if (strcmp(cm_config_str(c, "JWT_ALGORITHM"), "HS256")) {
		cm_log_err("brain signs user tokens with HS256 only");
		return CM_ENOTSUP;
	}
	if ((rc = brain_random_token("", dummy, sizeof(dummy))) < 0 ||
	    (rc = brain_password_hash(dummy, BRAIN_PBKDF2_ITER,
				      b->dummy_hash)) < 0) {
		cm_log_err("no randomness for the dummy password hash");
		return rc;
	}
	if (email &&
	    (rc = brain_bootstrap_admin(
		     b, email,
		     cm_config_str(c, "BRAIN_BOOTSTRAP_ADMIN_PASSWORD_FILE"),
		     errbuf)) < 0) {
		cm_log_err("bootstrap admin: %s", errbuf);
		return rc;
	}
	if (brain_docs_load(b, cm_config_str(c, "BRAIN_OPENAPI_FILE"), errbuf) <
	    0)
		cm_log_warn("no API document: %s", errbuf);
	if ((rc = brain_relay_start(
		     b, (int)cm_config_int(c, "BRAIN_RELAY_INTERVAL_MS"),
		     errbuf)) < 0) {
		cm_log_err("outbox relay: %s", errbuf);
		return rc;
	}
	if ((rc = brain_purge_start(svc, b)) < 0) {
		brain_relay_stop(b);
		return rc;
	}
	*arg = b;
	return 0;
}

static void
brain_stop(struct cm_service *svc, void *arg)
{
	(void)svc;
	brain_purge_stop(); /* before the relay it kicks */
	brain_relay_stop(brain_from(arg));
	brain_docs_free(brain_from(arg));
}

const struct cm_service_desc brain_service = {
	.name = "brain",
	.port_env = "BRAIN_PORT",
	.default_port = 8001,
	.schema = "brain",
	.config = brain_config,
	.routes = brain_routes,
	.start = brain_start,
	.stop = brain_stop,
	.authenticate = brain_authenticate,
};
