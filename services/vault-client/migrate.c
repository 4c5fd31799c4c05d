/*
 * migrate.c - `vault-client --migrate-secrets=local->vault`: copy every
 * secret's current version from the local store to Vault, at the same
 * canonical paths. Deleted and destroyed current versions are skipped;
 * older versions are not copied (Vault numbers its own). A version that
 * fails authentication (tampered) is named, the others are still copied,
 * and the exit status is 1; a Vault error stops the run (1). Running it
 * again is safe: it writes each value once more as a new version. Values
 * go from the store to Vault and nowhere else: the output says how many.
 */
#include "vault_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/db.h"
#include "common/log.h"
#include "common/mem.h"

#include "store.h"
#include "vault.h"

#include "common/banned.h"

static const struct cm_config_item db_items[] = {
	{ "POSTGRES_HOST", CM_CFG_STRING, "127.0.0.1", 0, 253, 0, "" },
	{ "POSTGRES_PORT", CM_CFG_PORT, "5432", 1, 65535, 0, "" },
	{ "POSTGRES_DB", CM_CFG_STRING, "bizosaas", 1, 63, 0, "" },
	{ "POSTGRES_USER", CM_CFG_STRING, NULL, 1, 63, CM_CFG_REQUIRED, "" },
	{ "POSTGRES_PASSWORD", CM_CFG_STRING, NULL, 0, 256, CM_CFG_SECRET, "" },
	{ "DATABASE_URL", CM_CFG_STRING, NULL, 0, 2048, CM_CFG_SECRET, "" },
};

struct migration {
	struct vc_vault *vault;
	unsigned char dek[VC_KEY_LEN];
	int copied, skipped, failed;
};

/* db_items followed by the service's own settings. */
static struct cm_config_item *
all_items(void)
{
	size_t ndb = sizeof(db_items) / sizeof(db_items[0]), n = 0;
	struct cm_config_item *items;

	while (vc_config[n].name)
		n++;
	items = cm_xcalloc(ndb + n + 1, sizeof(*items));
	memcpy(items, db_items, sizeof(db_items));
	memcpy(items + ndb, vc_config, n * sizeof(*items));
	return items;
}

static int
open_db(const struct cm_config *c, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_db_config dc = { 0 };
	char *conninfo;
	int rc;

	conninfo = cm_db_conninfo(cm_config_str(c, "POSTGRES_HOST"),
				  (int)cm_config_int(c, "POSTGRES_PORT"),
				  cm_config_str(c, "POSTGRES_DB"),
				  cm_config_str(c, "POSTGRES_USER"),
				  cm_config_str(c, "POSTGRES_PASSWORD"));
	dc.conninfo = conninfo;
	dc.application_name = "vault-client-migrate";
	dc.connect_timeout_s = 5;
	rc = cm_db_init(&dc, errbuf);
	cm_memzero(conninfo, strlen(conninfo));
	free(conninfo);
	return rc;
}

/* Copy one secret's current version. */
static int
copy_one(struct migration *m, const struct vc_path *p,
	 char errbuf[CM_ERRBUF_LEN])
{
	struct vc_secret s;
	struct vc_version meta;
	char full[VC_NAME_MAX + 80];
	int rc;

	vc_path_full(p, full, sizeof(full));
	rc = vc_store_read(m->dek, p, 0, &s, errbuf);
	if (rc == CM_ENOENT) {
		m->skipped++;
		return 0;
	}
	if (rc == CM_EACCES) { /* fails authentication: report, go on */
		cm_log_err("migrate %s: %s", full, errbuf);
		m->failed++;
		return 0;
	}
	if (rc == 0)
		rc = vc_vault_kv_write(m->vault, full, s.json, -1, &meta,
				       errbuf);
	vc_secret_release(&s);
	if (rc < 0) {
		cm_log_err("migrate %s: %s", full, errbuf);
		return rc;
	}
	m->copied++;
	return 0;
}

/* Every name of one owner, a page at a time. */
static int
copy_owner(struct migration *m, enum vc_scope scope, const char *owner,
	   char errbuf[CM_ERRBUF_LEN])
{
	char cursor[VC_NAME_MAX + 1] = "", next[VC_NAME_MAX + 1] = "";
	struct vc_path p = { .scope = scope };
	const cJSON *it;
	cJSON *items = NULL;
	int rc;

	cm_strlcpy(p.owner, owner, sizeof(p.owner));
	do {
		rc = vc_store_list(scope, owner, "", cursor, 200, &items, next,
				   errbuf);
		if (rc < 0)
			break;
		cJSON_ArrayForEach(it, items)
		{
			cm_strlcpy(p.name,
				   cJSON_GetStringValue(
					   cJSON_GetObjectItem(it, "name")),
				   sizeof(p.name));
			if ((rc = copy_one(m, &p, errbuf)) < 0)
				break;
		}
		cJSON_Delete(items);
		items = NULL;
		cm_strlcpy(cursor, next, sizeof(cursor));
	} while (rc == 0 && cursor[0]);
	return rc;
}

static int
copy_all(struct migration *m, char errbuf[CM_ERRBUF_LEN])
{
	enum vc_scope scopes[2] = { VC_SCOPE_TENANT, VC_SCOPE_PLATFORM };
	const cJSON *it;
	cJSON *owners = NULL;
	int i, rc = 0;

	for (i = 0; i < 2 && rc == 0; i++) {
		rc = vc_store_owners(scopes[i], &owners, errbuf);
		if (rc < 0)
			break;
		cJSON_ArrayForEach(it, owners)
		{
			rc = copy_owner(m, scopes[i], it->valuestring, errbuf);
			if (rc < 0)
				break;
		}
		cJSON_Delete(owners);
		owners = NULL;
	}
	return rc;
}

/* Open both ends: the keyring (never created here) and Vault. */
static int
open_ends(const struct cm_config *cfg, struct migration *m,
	  char errbuf[CM_ERRBUF_LEN])
{
	struct vc_vault_config vcfg = { 0 };
	unsigned char master[VC_KEY_LEN];
	bool exists = false, rotated = false;
	char sid[257] = "";
	int rc;

	if ((rc = open_db(cfg, errbuf)) < 0 ||
	    (rc = vc_store_keyring_exists(&exists, errbuf)) < 0)
		return rc;
	if (!exists) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "no local keyring: nothing "
			 "to migrate");
		return CM_ENOENT;
	}
	if ((rc = vc_load_master(cfg, master, errbuf)) == 0)
		rc = vc_store_keyring(master, NULL, &rotated, m->dek, errbuf);
	cm_memzero(master, sizeof(master));
	if (rc == 0)
		rc = vc_secret_id(cfg, sid, errbuf);
	if (rc < 0)
		return rc;
	vcfg.addr = cm_config_str(cfg, "VAULT_ADDR");
	vcfg.role_id = cm_config_str(cfg, "VAULT_ROLE_ID");
	vcfg.secret_id = sid;
	vcfg.kv_mount = cm_config_str(cfg, "VAULT_KV_MOUNT");
	vcfg.retries = (int)cm_config_int(cfg, "VAULT_RETRIES");
	vcfg.timeout_ms = (int)cm_config_int(cfg, "VAULT_TIMEOUT_MS");
	m->vault = vc_vault_new(&vcfg);
	cm_memzero(sid, sizeof(sid));
	return vc_vault_login(m->vault, errbuf);
}

int
vc_migrate_main(const char *arg)
{
	struct cm_config_item *items = all_items();
	struct cm_config *cfg = cm_config_new(items);
	struct migration m = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "", *problems = NULL;
	int rc = CM_EINVAL;

	cm_log_init("vault-client", CM_LOG_INFO);
	if (strcmp(arg, "local->vault")) {
		fprintf(stderr, "vault-client: --migrate-secrets=local->vault "
				"is the one direction supported\n");
		goto out;
	}
	if (cm_config_load(cfg, &problems) < 0) {
		fprintf(stderr, "vault-client: %s", problems);
		goto out;
	}
	if (!cm_config_is_set(cfg, "VAULT_ADDR")) {
		fprintf(stderr, "vault-client: set VAULT_ADDR (the target)\n");
		goto out;
	}
	rc = open_ends(cfg, &m, errbuf);
	if (rc == 0)
		rc = copy_all(&m, errbuf);
	if (rc < 0)
		cm_log_err("migration failed: %s", errbuf);
	cm_log_info("migrated %d secrets to vault (%d deleted or destroyed "
		    "left out, %d failed to decrypt)",
		    m.copied, m.skipped, m.failed);
	if (rc == 0 && m.failed)
		rc = CM_EIO;
out:
	cm_memzero(m.dek, sizeof(m.dek));
	vc_vault_free(m.vault);
	cm_db_shutdown();
	free(problems);
	cm_config_free(cfg);
	free(items);
	return rc == 0 ? 0 : rc == CM_EINVAL ? 2 : 1;
}
