/*
 * service.c - crm: leads, contacts, companies, deals, pipelines,
 * activities, notes; scoring, search, views, CSV import and export.
 *
 * This file is the service's whole surface: its settings and its routes.
 * /health, /health/ready and /metrics come from libcommon. The generic
 * routes take the collection as :entity (leads, contacts, companies,
 * deals, activities, notes); the fixed routes above them win, in table
 * order. Start-up builds the entity tables and starts the outbox relay
 * and the background importer; stop joins them (a running background
 * import rolls back). Design: docs/crm.md.
 */
#include "common/service.h"

#include <stddef.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/mem.h"
#include "crm.h"

#include "common/banned.h"

static const struct cm_config_item crm_config[] = {
	{ "CRM_RELAY_INTERVAL_MS", CM_CFG_INT, "1000", 10, 600000, 0,
	  "how often the outbox relay looks for unpublished events" },
	{ "CRM_DUE_INTERVAL_MS", CM_CFG_INT, "60000", 0, 86400000, 0,
	  "how often due activities are announced (activity.due); 0: never" },
	{ "CRM_EXPORT_MAX_ROWS", CM_CFG_INT, "1000000", 1, 100000000, 0,
	  "rows in one CSV export at most" },
	{ "CRM_EXPORT_PAGE_ROWS", CM_CFG_INT, "500", 1, 10000, 0,
	  "rows an export reads and sends per step" },
	{ "CRM_IMPORT_MAX_ROWS", CM_CFG_INT, "50000", 1, 1000000, 0,
	  "data rows in one CSV import at most" },
	{ "CRM_IMPORT_SYNC_ROWS", CM_CFG_INT, "10000", 0, 1000000, 0,
	  "imports with more lines run in the background (202)" },
	{ "CRM_IMPORT_QUEUE", CM_CFG_INT, "8", 1, 1000, 0,
	  "background imports waiting at most (then 503)" },
	CM_CONFIG_END,
};

static const struct cm_route crm_routes[] = {
	{ "GET", "/api/crm/search", crm_handle_search, 0 },
	{ "GET", "/api/crm/dashboard", crm_handle_dashboard, 0 },
	{ "GET", "/api/crm/lead-sources", crm_handle_lead_sources, 0 },
	{ "GET", "/api/crm/tags", crm_handle_tags, 0 },
	{ "GET", "/api/crm/scoring-rules", crm_handle_rules_get, 0 },
	{ "PUT", "/api/crm/scoring-rules", crm_handle_rules_put, 0 },
	{ "GET", "/api/crm/pipelines", crm_handle_pipelines_list, 0 },
	{ "POST", "/api/crm/pipelines", crm_handle_pipeline_create, 0 },
	{ "GET", "/api/crm/pipelines/:id", crm_handle_pipeline_get, 0 },
	{ "POST", "/api/crm/leads/:id/mark-contacted",
	  crm_handle_lead_contacted, 0 },
	{ "POST", "/api/crm/leads/:id/mark-lost", crm_handle_lead_lost, 0 },
	{ "POST", "/api/crm/leads/:id/convert", crm_handle_lead_convert, 0 },
	{ "GET", "/api/crm/leads/:id/duplicates", crm_handle_duplicates, 0 },
	{ "POST", "/api/crm/leads/:id/merge", crm_handle_lead_merge, 0 },
	{ "POST", "/api/crm/deals/:id/move", crm_handle_deal_move, 0 },
	{ "GET", "/api/crm/deals/:id/history", crm_handle_deal_history, 0 },
	{ "POST", "/api/crm/activities/:id/complete",
	  crm_handle_activity_complete, 0 },
	{ "GET", "/api/crm/custom-fields/:entity", crm_handle_fields_list, 0 },
	{ "PUT", "/api/crm/custom-fields/:entity/:key", crm_handle_field_put,
	  0 },
	{ "DELETE", "/api/crm/custom-fields/:entity/:key",
	  crm_handle_field_delete, 0 },
	{ "GET", "/api/crm/imports/:id", crm_handle_import_get, 0 },
	{ "GET", "/api/crm/:entity/export", crm_handle_export, 0 },
	{ "POST", "/api/crm/:entity/import", crm_handle_import, 0 },
	{ "POST", "/api/crm/:entity/bulk", crm_handle_bulk, 0 },
	{ "GET", "/api/crm/:entity", crm_handle_list, 0 },
	{ "POST", "/api/crm/:entity", crm_handle_create, 0 },
	{ "GET", "/api/crm/:entity/:id", crm_handle_get, 0 },
	{ "PATCH", "/api/crm/:entity/:id", crm_handle_update, 0 },
	{ "DELETE", "/api/crm/:entity/:id", crm_handle_delete, 0 },
	CM_ROUTE_END,
};

static int
crm_start(struct cm_service *svc, void **arg)
{
	const struct cm_config *cfg = cm_service_config(svc);
	struct crm *crm = cm_xcalloc(1, sizeof(*crm));
	char errbuf[CM_ERRBUF_LEN] = "";

	crm->magic = CRM_MAGIC;
	crm->export_max_rows = (int)cm_config_int(cfg, "CRM_EXPORT_MAX_ROWS");
	crm->export_page_rows = (int)cm_config_int(cfg, "CRM_EXPORT_PAGE_ROWS");
	crm->import_max_rows = (int)cm_config_int(cfg, "CRM_IMPORT_MAX_ROWS");
	crm->import_sync_rows = (int)cm_config_int(cfg, "CRM_IMPORT_SYNC_ROWS");
	crm_entities_init();
	crm->relay = crm_relay_start(
		(int)cm_config_int(cfg, "CRM_RELAY_INTERVAL_MS"),
		(int)cm_config_int(cfg, "CRM_DUE_INTERVAL_MS"), errbuf);
	if (crm->relay)
		crm->importer = crm_importer_start(
			(int)cm_config_int(cfg, "CRM_IMPORT_QUEUE"), errbuf);
	if (!crm->relay || !crm->importer) {
		cm_log_err("crm start: %s", errbuf);
		crm_relay_stop(crm->relay);
		free(crm);
		return CM_EIO;
	}
	*arg = crm;
	return 0;
}

static void
crm_stop(struct cm_service *svc, void *arg)
{
	struct crm *crm = arg;

	(void)svc;
	if (!crm || crm->magic != CRM_MAGIC)
		return;
	crm_importer_stop(crm->importer); /* before the relay it kicks */
	crm_relay_stop(crm->relay);
	crm->magic = 0;
	free(crm);
}

const struct cm_service_desc crm_service = {
	.name = "crm",
	.port_env = "CRM_PORT",
	.default_port = 8003,
	.schema = "crm",
	.config = crm_config,
	.routes = crm_routes,
	.start = crm_start,
	.stop = crm_stop,
};
