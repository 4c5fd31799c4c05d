/* backend.c - route each secret operation to the local store or Vault. */
#include "backend.h"

#include <stdio.h>
#include <string.h>

#include "common/mem.h"

#include "vault.h"

#include "common/banned.h"

#define FULL_MAX (VC_NAME_MAX + 80)

static void
full_path(const struct vc_path *p, char out[FULL_MAX])
{
	vc_path_full(p, out, FULL_MAX);
}

int
vc_backend_read(struct vc *vc, const struct vc_path *p, int version,
		struct vc_secret *out, char errbuf[CM_ERRBUF_LEN])
{
	char full[FULL_MAX];

	if (!vc->vault)
		return vc_store_read(vc->dek, p, version, out, errbuf);
	full_path(p, full);
	return vc_vault_kv_read(vc->vault, full, version, out, errbuf);
}

int
vc_backend_write(struct vc *vc, const struct vc_path *p, const char *json,
		 int64_t cas, struct vc_version *out,
		 char errbuf[CM_ERRBUF_LEN])
{
	char full[FULL_MAX];

	if (!vc->vault)
		return vc_store_write(vc->dek, p, json, cas, out, errbuf);
	full_path(p, full);
	return vc_vault_kv_write(vc->vault, full, json, cas, out, errbuf);
}

/* Vault answers 204 for a missing path; the API promises 404. */
static int
vault_exists(struct vc *vc, const char *full, char errbuf[CM_ERRBUF_LEN])
{
	cJSON *meta = NULL;
	int rc = vc_vault_kv_metadata(vc->vault, full, &meta, errbuf);

	cJSON_Delete(meta);
	return rc;
}

int
vc_backend_delete(struct vc *vc, const struct vc_path *p,
		  char errbuf[CM_ERRBUF_LEN])
{
	char full[FULL_MAX];
	int rc;

	if (!vc->vault)
		return vc_store_delete(p, NULL, 0, errbuf);
	full_path(p, full);
	if ((rc = vault_exists(vc, full, errbuf)) < 0)
		return rc;
	return vc_vault_kv_delete(vc->vault, full, NULL, 0, errbuf);
}

int
vc_backend_undelete(struct vc *vc, const struct vc_path *p, const int *versions,
		    int n, char errbuf[CM_ERRBUF_LEN])
{
	char full[FULL_MAX];
	int rc;

	if (!vc->vault)
		return vc_store_undelete(p, versions, n, errbuf);
	full_path(p, full);
	if ((rc = vault_exists(vc, full, errbuf)) < 0)
		return rc;
	return vc_vault_kv_undelete(vc->vault, full, versions, n, errbuf);
}

int
vc_backend_destroy(struct vc *vc, const struct vc_path *p, const int *versions,
		   int n, char errbuf[CM_ERRBUF_LEN])
{
	char full[FULL_MAX];
	int rc;

	if (!vc->vault)
		return vc_store_destroy(p, versions, n, errbuf);
	full_path(p, full);
	if ((rc = vault_exists(vc, full, errbuf)) < 0)
		return rc;
	return vc_vault_kv_destroy(vc->vault, full, versions, n, errbuf);
}

int
vc_backend_metadata(struct vc *vc, const struct vc_path *p, cJSON **out,
		    char errbuf[CM_ERRBUF_LEN])
{
	char full[FULL_MAX];
	int rc;

	if (!vc->vault)
		return vc_store_metadata(p, out, errbuf);
	full_path(p, full);
	rc = vc_vault_kv_metadata(vc->vault, full, out, errbuf);
	if (rc == 0) {
		cJSON_DeleteItemFromObjectCaseSensitive(*out,
							"custom_metadata");
		cJSON_AddStringToObject(*out, "name", p->name);
	}
	return rc;
}

/* Vault's one-level keys, after cursor, at most limit, as items. */
static cJSON *
vault_items(const cJSON *keys, const char *prefix, const char *cursor,
	    int limit, char next[VC_NAME_MAX + 1])
{
	cJSON *items = cJSON_CreateArray(), *item;
	const cJSON *k;
	char name[VC_NAME_MAX + 80];
	int n = 0;

	next[0] = '\0';
	cJSON_ArrayForEach(k, keys)
	{
		if (!cJSON_IsString(k))
			continue;
		snprintf(name, sizeof(name), "%s%s", prefix, k->valuestring);
		if (*cursor && strcmp(name, cursor) <= 0)
			continue;
		if (n == limit) {
			cm_strlcpy(next,
				   cJSON_GetStringValue(cJSON_GetObjectItem(
					   cJSON_GetArrayItem(items, n - 1),
					   "name")),
				   VC_NAME_MAX + 1);
			break;
		}
		item = cJSON_CreateObject();
		cJSON_AddStringToObject(item, "name", name);
		cJSON_AddItemToArray(items, item);
		n++;
	}
	return items;
}

int
vc_backend_list(struct vc *vc, enum vc_scope scope, const char *owner,
		const char *prefix, const char *cursor, int limit,
		cJSON **items, char next_cursor[VC_NAME_MAX + 1],
		char errbuf[CM_ERRBUF_LEN])
{
	char dir[FULL_MAX];
	cJSON *keys = NULL;
	int rc;

	if (!vc->vault)
		return vc_store_list(scope, owner, prefix, cursor, limit, items,
				     next_cursor, errbuf);
	snprintf(dir, sizeof(dir), "%s/%s/%s",
		 scope == VC_SCOPE_TENANT ? "tenants" : "platform", owner,
		 prefix);
	rc = vc_vault_kv_list(vc->vault, dir, &keys, errbuf);
	if (rc == CM_ENOENT) { /* Vault: nothing there */
		keys = cJSON_CreateArray();
		rc = 0;
	}
	if (rc == 0)
		*items = vault_items(keys, prefix, cursor, limit, next_cursor);
	cJSON_Delete(keys);
	return rc;
}
