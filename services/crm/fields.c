/*
 * fields.c - the tenant's custom field definitions, and the check of a
 * custom_fields object against them.
 *
 * Without definitions for an entity its custom_fields is a free JSON
 * object (bounded in entity.c). With some, only defined keys are allowed,
 * each of its type (text up to 1000 bytes, number, boolean, date
 * YYYY-MM-DD, select: one of the options), and required keys must be
 * present and not null on create (and in any replacement object).
 */
#include "crm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/db.h"
#include "common/http.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"

#include "common/banned.h"

#define CUSTOM_TEXT_MAX 1000

static const char *const def_types[] = { "text", "number", "boolean",
					 "date", "select", NULL };
static const char *const def_entities[] = { "lead", "contact", "company",
					    "deal", NULL };

static const cJSON *
find_def(const cJSON *defs, const char *key)
{
	const cJSON *d, *k;

	cJSON_ArrayForEach(d, defs)
	{
		k = cJSON_GetObjectItemCaseSensitive(d, "key");
		if (cJSON_IsString(k) && strcmp(k->valuestring, key) == 0)
			return d;
	}
	return NULL;
}

static bool
in_options(const cJSON *def, const char *v)
{
	const cJSON *o;

	cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(def, "options"))
	{
		if (cJSON_IsString(o) && strcmp(o->valuestring, v) == 0)
			return true;
	}
	return false;
}

/* value against def's type; false with errbuf naming the key. */
static bool
typed(const cJSON *def, const char *key, const cJSON *v,
      char errbuf[CM_ERRBUF_LEN])
{
	const char *type =
		cJSON_GetObjectItemCaseSensitive(def, "type")->valuestring;
	bool ok;

	if (strcmp(type, "number") == 0)
		ok = cJSON_IsNumber(v);
	else if (strcmp(type, "boolean") == 0)
		ok = cJSON_IsBool(v);
	else if (strcmp(type, "date") == 0)
		ok = cJSON_IsString(v) && crm_valid_date(v->valuestring);
	else if (strcmp(type, "select") == 0)
		ok = cJSON_IsString(v) && in_options(def, v->valuestring);
	else
		ok = cJSON_IsString(v) &&
		     strlen(v->valuestring) <= CUSTOM_TEXT_MAX;
	if (!ok)
		cm_errf(errbuf, "field 'custom_fields.%.40s' must be a %s%s",
			key, type,
			strcmp(type, "select") == 0 ? " option" : "");
	return ok;
}

int
crm_custom_check(const cJSON *defs, const char *text, bool create,
		 char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *it, *def;
	cJSON *values;
	int rc = 0;

	if (cJSON_GetArraySize(defs) == 0 || (!text && !create))
		return 0;
	values = text ? cm_json_parse(text, strlen(text), errbuf)
		      : cJSON_CreateObject();
	if (!cJSON_IsObject(values)) {
		cJSON_Delete(values);
		cm_errf(errbuf, "field 'custom_fields' must be an object");
		return CM_EINVAL;
	}
	cJSON_ArrayForEach(it, values)
	{
		if (!(def = find_def(defs, it->string))) {
			cm_errf(errbuf,
				"field 'custom_fields.%.40s' is not a "
				"defined custom field",
				it->string);
			rc = CM_EINVAL;
			goto out;
		}
		if (!cJSON_IsNull(it) && !typed(def, it->string, it, errbuf)) {
			rc = CM_EINVAL;
			goto out;
		}
	}
	cJSON_ArrayForEach(def, defs)
	{
		const char *key = cJSON_GetObjectItemCaseSensitive(def, "key")
					  ->valuestring;

		it = cJSON_GetObjectItemCaseSensitive(values, key);
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
			    def, "required")) &&
		    (!it || cJSON_IsNull(it))) {
			cm_errf(errbuf, "field 'custom_fields.%s' is required",
				key);
			rc = CM_EINVAL;
			goto out;
		}
	}
out:
	cJSON_Delete(values);
	return rc;
}

#define DEFS_SQL                                                              \
	"SELECT coalesce(json_agg(json_build_object('key', key, 'label', "    \
	"label, 'type', type, 'options', options, 'required', required, "     \
	"'created_at', created_at, 'updated_at', updated_at) ORDER BY key), " \
	"'[]')::text FROM crm.custom_field_defs WHERE entity = $1"

int
crm_custom_defs(PGconn *conn, const char *entity, cJSON **defs,
		char errbuf[CM_ERRBUF_LEN])
{
	PGresult *res = NULL;
	const char *text;
	int rc;

	*defs = NULL;
	rc = cm_db_query(conn, DEFS_SQL, 1, &entity, &res, errbuf);
	if (rc == 0) {
		text = PQgetvalue(res, 0, 0);
		*defs = cm_json_parse(text, strlen(text), errbuf);
		rc = *defs ? 0 : CM_EIO;
	}
	PQclear(res);
	return rc;
}

static bool
known(const char *const *list, const char *s)
{
	for (; s && *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

struct defs_work {
	const char *entity, *key;
	const char *label, *type, *options; /* PUT; NULL: list or delete */
	bool required, remove;
	cJSON *out;
};

static int
defs_work(PGconn *conn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct defs_work *w = arg;
	const char *p[6] = { w->entity,	 w->key,
			     w->label,	 w->type,
			     w->options, w->required ? "true" : "false" };
	PGresult *res = NULL;
	int rc = 0;

	if (w->remove) {
		rc = cm_db_query(conn,
				 "DELETE FROM crm.custom_field_defs WHERE "
				 "entity = $1 AND key = $2",
				 2, p, &res, errbuf);
		if (rc == 0 && strcmp(PQcmdTuples(res), "1") != 0) {
			cm_errf(errbuf, "no such custom field");
			rc = CM_ENOENT;
		}
		PQclear(res);
		return rc;
	}
	if (w->type)
		rc = cm_db_query(
			conn,
			"INSERT INTO crm.custom_field_defs (tenant_id, entity, "
			"key, label, type, options, required) VALUES "
			"(current_setting('app.tenant_id')::uuid, $1, $2, $3, "
			"$4, ARRAY(SELECT "
			"jsonb_array_elements_text($5::jsonb)), "
			"$6) ON CONFLICT (tenant_id, entity, key) DO UPDATE "
			"SET "
			"label = EXCLUDED.label, type = EXCLUDED.type, options "
			"= "
			"EXCLUDED.options, required = EXCLUDED.required, "
			"updated_at = now()",
			6, p, NULL, errbuf);
	if (rc == 0)
		rc = crm_custom_defs(conn, w->entity, &w->out, errbuf);
	return rc;
}

static void
reply_defs(struct cm_req *req, void *arg, struct defs_work *w, bool write)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct crm_ctx ctx;
	cJSON *out = NULL;
	int status = 500, rc;

	if (!crm_req_ctx(req, arg, write, &ctx, &status))
		goto out;
	if (!known(def_entities, w->entity)) {
		status = cm_req_fail(req, 404, "not_found",
				     "custom fields exist for lead, contact, "
				     "company and deal");
		goto out;
	}
	rc = cm_db_tx_tenant(ctx.tenant, defs_work, w, errbuf);
	if (rc < 0) {
		status = crm_fail(req, rc, "custom field", errbuf);
		goto out;
	}
	if (w->remove) {
		status = 204;
		goto out;
	}
	out = cm_json_list(w->out, NULL);
	w->out = NULL;
	status = 200;
out:
	cm_req_reply_json(req, status, out);
	cJSON_Delete(out);
	cJSON_Delete(w->out);
}

/* GET /api/crm/custom-fields/:entity - the entity's definitions. */
void
crm_handle_fields_list(struct cm_req *req, void *arg)
{
	struct defs_work w = { 0 };

	w.entity = cm_req_param(req, "entity");
	reply_defs(req, arg, &w, false);
}

/* DELETE /api/crm/custom-fields/:entity/:key - values already stored stay
   in the rows' custom_fields; new writes may no longer set the key. */
void
crm_handle_field_delete(struct cm_req *req, void *arg)
{
	struct defs_work w = { 0 };

	w.entity = cm_req_param(req, "entity");
	w.key = cm_req_param(req, "key");
	w.remove = true;
	reply_defs(req, arg, &w, true);
}

/* The PUT body into w; 0 or CM_EINVAL with errbuf. */
static int
parse_def(const cJSON *body, struct defs_work *w, char **options,
	  char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *opts = NULL, *o;
	int type;

	if (cm_json_get_str(body, NULL, "label", true, 100, &w->label, errbuf) <
		    0 ||
	    cm_json_get_enum(body, NULL, "type", true, def_types, &type,
			     errbuf) < 0 ||
	    cm_json_get_array(body, NULL, "options", false, 50, &opts,
			      errbuf) == CM_EINVAL ||
	    cm_json_get_bool(body, NULL, "required", false, &w->required,
			     errbuf) == CM_EINVAL)
		return CM_EINVAL;
	w->type = def_types[type];
	if (!*w->label) {
		cm_errf(errbuf, "field 'label' must not be empty");
		return CM_EINVAL;
	}
	cJSON_ArrayForEach(o, opts)
	{
		if (!cJSON_IsString(o) || !*o->valuestring ||
		    strlen(o->valuestring) > 100) {
			cm_errf(errbuf, "field 'options' must hold strings of "
					"1 to 100 bytes");
			return CM_EINVAL;
		}
	}
	if (strcmp(w->type, "select") == 0 && cJSON_GetArraySize(opts) == 0) {
		cm_errf(errbuf, "field 'options' is required for a select");
		return CM_EINVAL;
	}
	*options = opts ? cm_json_print(opts) : cm_xstrdup("[]");
	return 0;
}

/* PUT /api/crm/custom-fields/:entity/:key - {"label", "type", "options"?,
   "required"?}: define or redefine; the entity's definitions back. */
void
crm_handle_field_put(struct cm_req *req, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "", *options = NULL;
	struct defs_work w = { 0 };
	cJSON *body = NULL;
	int status;

	w.entity = cm_req_param(req, "entity");
	w.key = cm_req_param(req, "key");
	if ((status = cm_req_json(req, &body)) != 0)
		goto fail;
	if (!w.key || strlen(w.key) > 40 || w.key[0] < 'a' || w.key[0] > 'z' ||
	    strspn(w.key, "abcdefghijklmnopqrstuvwxyz0123456789_") !=
		    strlen(w.key)) {
		status = cm_req_fail(
			req, 400, "validation_failed",
			"the key must match ^[a-z][a-z0-9_]{0,39}$");
		goto fail;
	}
	if (parse_def(body, &w, &options, errbuf) < 0) {
		status = cm_req_fail(req, 400, "validation_failed", "%s",
				     errbuf);
		goto fail;
	}
	w.options = options;
	reply_defs(req, arg, &w, true);
	free(options);
	cJSON_Delete(body);
	return;
fail:
	cm_req_reply_json(req, status, NULL);
	free(options);
	cJSON_Delete(body);
}
