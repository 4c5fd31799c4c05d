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
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/http.h"

#include "cache.h"
#include "crypto.h"
#include "policy.h"

struct vc_secret;
struct vc_version;

struct vc_vault;
struct vc_auditq;

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
	char template_service[32];  /* "" : no template */
	char *template_path;	    /* VAULT_TEMPLATE_FILE */
	pthread_mutex_t render_mu;  /* one render of the file at a time */
	unsigned char idem_key[32]; /* HMAC key of Idempotency-Key hashes */
	struct vc_auditq *auditq;   /* reads' audit rows; NULL: one tx each */
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

/*
 * Shared by the handler files (handlers.c, handlers_user.c,
 * handlers_transit.c). None of them ever logs or fails with a value.
 */
/* vc_of - the context handed to a handler (aborts on a bad magic). */
struct vc *vc_of(void *arg);
/* vc_audit - record one access of req; 0, or CM_EIO (logged). Tenant
   records need the request's verified tenant. */
int vc_audit(struct cm_req *req, enum vc_scope scope, const char *caller,
	     const char *op, const char *full, bool allowed,
	     const char *reason);
/* vc_sanitise - raw (may be NULL) into out[n], control bytes and
   non-ASCII replaced by '?' (for audit records of refused paths). */
void vc_sanitise(const char *raw, char *out, size_t n);
/* vc_store_failed - map a backend error onto the reply (logs 5xx). */
int vc_store_failed(struct cm_req *req, const char *op, const char *full,
		    int rc, const char *errbuf);
/* vc_deleted_reply - 404 deleted/destroyed naming the version. */
int vc_deleted_reply(struct cm_req *req, const struct vc_version *m);
/* vc_render_secret - {"data":...,"metadata":...} as text (malloc'd). */
char *vc_render_secret(const struct vc_secret *s, size_t *len);
/* vc_reply_secret - send body (holding a value) 200, zero and free it. */
void vc_reply_secret(struct cm_req *req, char *body, size_t len);
/* vc_json_zero_delete - zero every string of j, then free it. */
void vc_json_zero_delete(cJSON *j);
/* vc_version_json - {"version","created_time","deletion_time",
   "destroyed"}. */
cJSON *vc_version_json(const struct vc_version *m);
/* vc_publish_change - secret.created/rotated/deleted for a tenant path
   (name and version, never the value); failures are logged. */
void vc_publish_change(const struct vc_path *p, const char *type, int version);
/* vc_read_version_param - ?version=N (0 when absent); else 400. */
int vc_read_version_param(struct cm_req *req, int *version);
/* vc_write_value - body's "data" (object of strings) as *json, "cas" in
 *cas (-1: none); else the 4xx status recorded. */
int vc_write_value(struct cm_req *req, const cJSON *body, char **json,
		   int64_t *cas);
/* vc_list_params - ?prefix=&cursor=&limit= with bounds; else 400. */
int vc_list_params(struct cm_req *req, const char **prefix, const char **cursor,
		   int *limit);

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

/* Tenant users through brain's gateway (handlers_user.c). */
void vc_handle_user_list(struct cm_req *req, void *arg);
void vc_handle_user_metadata(struct cm_req *req, void *arg);
void vc_handle_user_write(struct cm_req *req, void *arg);
void vc_handle_user_delete(struct cm_req *req, void *arg);
void vc_handle_user_reveal(struct cm_req *req, void *arg);
void vc_handle_user_audit(struct cm_req *req, void *arg);
/* Transit for services (handlers_transit.c). */
void vc_handle_transit_encrypt(struct cm_req *req, void *arg);
void vc_handle_transit_decrypt(struct cm_req *req, void *arg);

#endif
