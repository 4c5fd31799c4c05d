/*
 * pipelines.c - pipelines and their ordered stages.
 *
 * Every tenant has one default pipeline, made on first use (listing the
 * pipelines, or creating a deal without a stage): Lead 10%, Qualified 25%,
 * Proposal 50%, Negotiation 75%, Won 100% (won), Lost 0% (lost). Two first
 * uses racing meet at the unique index on the default; the loser reads the
 * winner's.
 */
#include "crm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/db.h"
#include "common/http.h"
#include "common/json.h"
#include "common/mem.h"

#include "common/banned.h"

#define MAX_STAGES 20

#define PIPELINE_JSON                                                        \
	"SELECT p.id, p.name, p.is_default, p.version, p.created_at, "       \
	"p.updated_at, (SELECT coalesce(jsonb_agg(jsonb_build_object('id', " \
	"s.id, 'name', s.name, 'position', s.position, 'probability', "      \
	"s.probability, 'is_won', s.is_won, 'is_lost', s.is_lost) ORDER BY " \
	"s.position), '[]') FROM crm.pipeline_stages s "                     \
	"WHERE s.pipeline_id = p.id) AS stages FROM crm.pipelines p "        \
	"WHERE p.deleted_at IS NULL "

static int
find_default(PGconn *conn, char pipeline[37], char stage[37], bool *found,
	     char errbuf[CM_ERRBUF_LEN])
{
	PGresult *res = NULL;
	int rc;

	rc = cm_db_query(conn,
			 "SELECT p.id, s.id FROM crm.pipelines p JOIN "
			 "crm.pipeline_stages s ON s.pipeline_id = p.id "
			 "WHERE p.is_default AND p.deleted_at IS NULL "
			 "ORDER BY s.position LIMIT 1",
			 0, NULL, &res, errbuf);
	*found = rc == 0 && PQntuples(res) == 1;
	if (*found) {
		cm_strlcpy(pipeline, PQgetvalue(res, 0, 0), 37);
		cm_strlcpy(stage, PQgetvalue(res, 0, 1), 37);
	}
	PQclear(res);
	return rc;
}

int
crm_default_stage(PGconn *conn, char pipeline[37], char stage[37],
		  char errbuf[CM_ERRBUF_LEN])
{
	bool found;
	int rc;

	if ((rc = find_default(conn, pipeline, stage, &found, errbuf)) < 0 ||
	    found)
		return rc;
	rc = cm_db_query(
		conn,
		"WITH p AS (INSERT INTO crm.pipelines (tenant_id, name, "
		"is_default) VALUES (current_setting('app.tenant_id')::uuid, "
		"'Sales', true) ON CONFLICT (tenant_id) WHERE is_default AND "
		"deleted_at IS NULL DO NOTHING RETURNING id, tenant_id) "
		"INSERT INTO crm.pipeline_stages (tenant_id, pipeline_id, "
		"name, "
		"position, probability, is_won, is_lost) "
		"SELECT p.tenant_id, p.id, s.name, s.pos, s.prob, s.won, "
		"s.lost "
		"FROM p, (VALUES ('Lead', 0, 10, false, false), "
		"('Qualified', 1, 25, false, false), "
		"('Proposal', 2, 50, false, false), "
		"('Negotiation', 3, 75, false, false), "
		"('Won', 4, 100, true, false), ('Lost', 5, 0, false, true)) "
		"AS s (name, pos, prob, won, lost)",
		0, NULL, NULL, errbuf);
	if (rc == 0 &&
	    (rc = find_default(conn, pipeline, stage, &found, errbuf)) == 0 &&
	    !found) {
		cm_errf(errbuf, "the default pipeline has no stage");
		rc = CM_EIO;
	}
	return rc;
}

struct list_work {
	const char *id; /* NULL: all */
	cJSON *out;
};

static int
list_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct list_work *w = arg;
	char pipeline[37], stage[37];
	PGresult *res = NULL;
	int rc;

	if (!w->id && (rc = crm_default_stage(conn, pipeline, stage, errbuf)))
		return rc;
	if (w->id)
		rc = cm_db_query(conn, PIPELINE_JSON "AND p.id = $1", 1, &w->id,
				 &res, errbuf);
	else
		rc = cm_db_query(conn,
				 PIPELINE_JSON "ORDER BY p.created_at, p.id "
					       "LIMIT 200",
				 0, NULL, &res, errbuf);
	if (rc == 0 && w->id && PQntuples(res) == 0) {
		cm_errf(errbuf, "no such pipeline");
		rc = CM_ENOENT;
	} else if (rc == 0) {
		w->out = w->id ? crm_render_row(res, 0)
			       : cm_json_list(crm_render_rows(res), NULL);
	}
	PQclear(res);
	return rc;
}

static void
reply_pipelines(struct cm_req *req, void *arg, const char *id)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct list_work w = { id, NULL };
	struct crm_ctx ctx;
	int status = 500, rc;

	if (!crm_req_ctx(req, arg, false, &ctx, &status))
		goto out;
	if (id && !cm_is_uuid(id)) {
		status = crm_fail(req, CM_ENOENT, "pipeline", "");
		goto out;
	}
	rc = cm_db_tx_tenant(ctx.tenant, list_work, &w, errbuf);
	if (rc < 0) {
		cJSON_Delete(w.out);
		w.out = NULL;
		status = crm_fail(req, rc, "pipeline", errbuf);
		goto out;
	}
	status = 200;
out:
	cm_req_reply_json(req, status, w.out);
	cJSON_Delete(w.out);
}

/* GET /api/crm/pipelines - every pipeline with its stages (the default
   one made on first use). */
void
crm_handle_pipelines_list(struct cm_req *req, void *arg)
{
	reply_pipelines(req, arg, NULL);
}

/* GET /api/crm/pipelines/:id */
void
crm_handle_pipeline_get(struct cm_req *req, void *arg)
{
	reply_pipelines(req, arg, cm_req_param(req, "id"));
}

/* The stages array as JSON rows for jsonb_to_recordset, checked. */
static int
check_stages(const cJSON *stages, char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *it;
	const char *name;
	int64_t prob;
	bool flag;
	char path[32];
	int i = 0, won = 0;

	cJSON_ArrayForEach(it, stages)
	{
		snprintf(path, sizeof(path), "stages[%d]", i);
		if (cm_json_get_str(it, path, "name", true, 64, &name, errbuf) <
			    0 ||
		    cm_json_get_i64(it, path, "probability", false, 0, 100,
				    &prob, errbuf) == CM_EINVAL ||
		    cm_json_get_bool(it, path, "is_won", false, &flag,
				     errbuf) == CM_EINVAL ||
		    cm_json_get_bool(it, path, "is_lost", false, &flag,
				     errbuf) == CM_EINVAL)
			return CM_EINVAL;
		if (!*name) {
			cm_errf(errbuf, "field '%s.name' must not be empty",
				path);
			return CM_EINVAL;
		}
		won += cJSON_IsTrue(cJSON_GetObjectItem(it, "is_won")) &&
		       cJSON_IsTrue(cJSON_GetObjectItem(it, "is_lost"));
		i++;
	}
	if (won) {
		cm_errf(errbuf, "a stage cannot be both won and lost");
		return CM_EINVAL;
	}
	return 0;
}

struct create_work {
	const struct crm_ctx *ctx;
	const char *name;
	char *stages; /* JSON text */
	char id[37];
	cJSON *out;
};

static int
create_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct create_work *w = arg;
	const char *p[3] = { w->name, w->ctx->sub, w->stages };
	struct list_work lw = { w->id, NULL };
	PGresult *res = NULL;
	int rc;

	rc = cm_db_query(
		conn,
		"WITH p AS (INSERT INTO crm.pipelines (tenant_id, name, "
		"created_by) VALUES (current_setting('app.tenant_id')::uuid, "
		"$1, $2) RETURNING id, tenant_id), s AS (INSERT INTO "
		"crm.pipeline_stages (tenant_id, pipeline_id, name, position, "
		"probability, is_won, is_lost) SELECT p.tenant_id, p.id, "
		"x.name, x.ord - 1, coalesce(x.probability, 0), "
		"coalesce(x.is_won, false), coalesce(x.is_lost, false) "
		"FROM p, ROWS FROM (jsonb_to_recordset($3::jsonb) AS "
		"(name text, probability int, is_won boolean, is_lost "
		"boolean)) WITH ORDINALITY AS x (name, probability, is_won, "
		"is_lost, ord)) SELECT id FROM p",
		3, p, &res, errbuf);
	if (rc == 0)
		cm_strlcpy(w->id, PQgetvalue(res, 0, 0), sizeof(w->id));
	PQclear(res);
	if (rc == 0 && (rc = list_work(conn, &lw, errbuf)) == 0)
		w->out = lw.out;
	return rc;
}

/* POST /api/crm/pipelines - {"name", "stages": [{"name", "probability",
   "is_won", "is_lost"}] (1..20, in order)}. */
void
crm_handle_pipeline_create(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct create_work w = { 0 };
	const cJSON *stages = NULL;
	struct crm_ctx ctx;
	cJSON *body = NULL;
	int status = 500, rc;

	if (!crm_req_ctx(req, arg, true, &ctx, &status) ||
	    (status = cm_req_json(req, &body)) != 0)
		goto out;
	if (cm_json_get_str(body, NULL, "name", true, 100, &w.name, errbuf) <
		    0 ||
	    cm_json_get_array(body, NULL, "stages", true, MAX_STAGES, &stages,
			      errbuf) < 0 ||
	    check_stages(stages, errbuf) < 0 || !*w.name ||
	    cJSON_GetArraySize(stages) == 0) {
		status = cm_req_fail(req, 400, "validation_failed", "%s",
				     errbuf[0] ? errbuf
					       : "fields 'name' and 'stages' "
						 "must not be empty");
		goto out;
	}
	w.ctx = &ctx;
	w.stages = cm_json_print(stages);
	rc = cm_db_tx_tenant(ctx.tenant, create_work, &w, errbuf);
	if (rc < 0) {
		cJSON_Delete(w.out);
		w.out = NULL;
		status = crm_fail(req, rc, "pipeline", errbuf);
		goto out;
	}
	status = 201;
out:
	cm_req_reply_json(req, status, w.out);
	cJSON_Delete(w.out);
	cJSON_Delete(body);
	free(w.stages);
}
