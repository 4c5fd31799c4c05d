/*
 * vault_client.h - what service.c and handlers.c share: the service
 * context handed to every handler, and the handlers themselves.
 *
 * struct vc is created by the start hook (service.c) once the keyring is
 * loaded (local backend) or the Vault client is set up (VAULT_ADDR), and
 * lives until the stop hook; it is read-only afterwards except for the
 * cache and the Vault client, which lock themselves. The data key is
 * zeroed on stop.
 */
#ifndef VC_VAULT_CLIENT_H
#define VC_VAULT_CLIENT_H

#include <pthread.h>
#include <stdbool.h>

#include "common/config.h"
#include "common/http.h"

#include "cache.h"
#include "crypto.h"

struct vc_vault;

#define VC_MAGIC 0x76636c74u /* "vclt" */

struct vc {
	unsigned magic;
	unsigned char dek[VC_KEY_LEN]; /* local backend only */
	struct vc_cache *cache;
	struct vc_vault *vault; /* NULL: the local backend */
	pthread_t keeper;	/* renews the Vault token */
	bool keeper_running;
	pthread_mutex_t mu; /* guards stopping */
	pthread_cond_t cond;
	bool stopping;
	char template_service[32]; /* "" : no template */
	char *template_path;	   /* VAULT_TEMPLATE_FILE */
	pthread_mutex_t render_mu; /* one render of the file at a time */
};

/* vc_config - the service's own settings (service.c). */
extern const struct cm_config_item vc_config[];
/* vc_load_master - the master key from VAULT_MASTER_KEY_FILE (wins when
   set) or VAULT_MASTER_KEY; neither set is CM_EINVAL. Never invents one. */
int vc_load_master(const struct cm_config *cfg,
		   unsigned char master[VC_KEY_LEN],
		   char errbuf[CM_ERRBUF_LEN]);
/* vc_secret_id - the AppRole secret id from VAULT_SECRET_ID(_FILE). */
int vc_secret_id(const struct cm_config *cfg, char out[257],
		 char errbuf[CM_ERRBUF_LEN]);
/* vc_migrate_main - `vault-client --migrate-secrets=local->vault`: copy
   the current version of every secret (tenant and platform) from the
   local store to Vault; the process exit status (migrate.c). */
int vc_migrate_main(const char *arg);

/* vc_rerender - render the template again after a change to owner's
   platform secrets (no-op for other owners or without a template). */
void vc_rerender(struct vc *vc, const char *owner);

/* GET /v1/backend: backend, seal state, token TTL (no secret). */
void vc_handle_backend(struct cm_req *req, void *arg);

/* Tenant scope: the name follows /v1/tenant/<op>/. */
void vc_handle_tenant_read(struct cm_req *req, void *arg);
void vc_handle_tenant_write(struct cm_req *req, void *arg);
void vc_handle_tenant_delete(struct cm_req *req, void *arg);
void vc_handle_tenant_undelete(struct cm_req *req, void *arg);
void vc_handle_tenant_destroy(struct cm_req *req, void *arg);
void vc_handle_tenant_metadata(struct cm_req *req, void *arg);
void vc_handle_tenant_list(struct cm_req *req, void *arg);
/* Platform scope: "<service>/<name>" follows /v1/platform/<op>/. */
void vc_handle_platform_read(struct cm_req *req, void *arg);
void vc_handle_platform_write(struct cm_req *req, void *arg);
void vc_handle_platform_delete(struct cm_req *req, void *arg);
void vc_handle_platform_undelete(struct cm_req *req, void *arg);
void vc_handle_platform_destroy(struct cm_req *req, void *arg);
void vc_handle_platform_metadata(struct cm_req *req, void *arg);
void vc_handle_platform_list(struct cm_req *req, void *arg);

#endif
