/*
 * service.c - vault-client: the secrets sidecar.
 *
 * This file is the service's whole surface: its settings and its routes
 * (docs/vault-client.md, proto/openapi/vault-client.yaml). The /v1 routes
 * are for platform services only (a service token); their tenant routes
 * take the tenant from X-Tenant-ID, which libcommon accepts only with that
 * token. The /api/secrets routes are for tenant users forwarded by brain's
 * gateway (policy.c's user rules refuse anything else).
 * The start hook either loads the master key and opens (or creates, or
 * re-wraps) the keyring, keeping only the data key (local backend), or,
 * with VAULT_ADDR, logs in to Vault with AppRole, starts the thread that
 * keeps the token renewed and adds Vault to /health/ready.
 */
#include "common/service.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mem.h"

#include "auditq.h"
#include "render.h"
#include "store.h"
#include "vault.h"
#include "vault_client.h"

#include "common/banned.h"

#define SO CM_ROUTE_SERVICE_ONLY
#define PSO (CM_ROUTE_SERVICE_ONLY | CM_ROUTE_NO_TENANT)

static const struct cm_route vc_routes[] = {
	{ "GET", "/v1/tenant/secrets/*", vc_handle_tenant_read, SO },
	{ "PUT", "/v1/tenant/secrets/*", vc_handle_tenant_write, SO },
	{ "DELETE", "/v1/tenant/secrets/*", vc_handle_tenant_delete, SO },
	{ "POST", "/v1/tenant/undelete/*", vc_handle_tenant_undelete, SO },
	{ "POST", "/v1/tenant/destroy/*", vc_handle_tenant_destroy, SO },
	{ "GET", "/v1/tenant/metadata/*", vc_handle_tenant_metadata, SO },
	{ "GET", "/v1/tenant/list", vc_handle_tenant_list, SO },
	{ "GET", "/v1/platform/secrets/*", vc_handle_platform_read, PSO },
	{ "PUT", "/v1/platform/secrets/*", vc_handle_platform_write, PSO },
	{ "DELETE", "/v1/platform/secrets/*", vc_handle_platform_delete, PSO },
	{ "POST", "/v1/platform/undelete/*", vc_handle_platform_undelete, PSO },
	{ "POST", "/v1/platform/destroy/*", vc_handle_platform_destroy, PSO },
	{ "GET", "/v1/platform/metadata/*", vc_handle_platform_metadata, PSO },
	{ "GET", "/v1/platform/list/:service", vc_handle_platform_list, PSO },
	{ "GET", "/v1/backend", vc_handle_backend, PSO },
	{ "POST", "/v1/transit/encrypt/:key", vc_handle_transit_encrypt, PSO },
	{ "POST", "/v1/transit/decrypt/:key", vc_handle_transit_decrypt, PSO },
	/* tenant users, through brain's gateway only (handlers_user.c) */
	{ "GET", "/api/secrets/list", vc_handle_user_list, 0 },
	{ "GET", "/api/secrets/audit", vc_handle_user_audit, 0 },
	{ "GET", "/api/secrets/metadata/*", vc_handle_user_metadata, 0 },
	{ "PUT", "/api/secrets/data/*", vc_handle_user_write, 0 },
	{ "DELETE", "/api/secrets/data/*", vc_handle_user_delete, 0 },
	{ "POST", "/api/secrets/reveal/*", vc_handle_user_reveal, 0 },
	CM_ROUTE_END,
};

const struct cm_config_item vc_config[] = {
	{ "VAULT_MASTER_KEY_FILE", CM_CFG_STRING, NULL, 0, 4096, 0,
	  "file holding the 32-byte master key (64 hex digits or base64); "
	  "no default: scripts/stack generates VAULT_MASTER_KEY locally" },
	{ "VAULT_MASTER_KEY", CM_CFG_STRING, NULL, 0, 128, CM_CFG_SECRET,
	  "the master key itself, when no file is used" },
	{ "VAULT_MASTER_KEY_OLD_FILE", CM_CFG_STRING, NULL, 0, 4096, 0,
	  "the previous master key's file, to re-wrap the data key" },
	{ "VAULT_MASTER_KEY_OLD", CM_CFG_STRING, NULL, 0, 128, CM_CFG_SECRET,
	  "the previous master key, to re-wrap the data key" },
	{ "VAULT_CACHE_TTL_MS", CM_CFG_INT, "5000", 0, 60000, 0,
	  "how long reads are cached in memory (0: no cache)" },
	{ "VAULT_CACHE_MAX", CM_CFG_INT, "10000", 1, 1000000, 0,
	  "most cached reads held" },
	{ "VAULT_AUDIT_BATCHED", CM_CFG_BOOL, "true", 0, 0, 0,
	  "reads' audit rows are committed in shared transactions (group "
	  "commit), each read answered once its row is (false: one "
	  "transaction per read)" },
	{ "VAULT_AUDIT_FLUSH_MS", CM_CFG_INT, "0", 0, 100, 0,
	  "how long the first audit row after a quiet spell waits for others "
	  "before its batch is written (rows that arrive during a write always "
	  "go in the next batch at once)" },
	{ "VAULT_AUDIT_QUEUE_MAX", CM_CFG_INT, "4096", 1, 100000, 0,
	  "audit rows waiting for a batch; a read beyond answers 503" },
	{ "VAULT_TEMPLATE_SERVICE", CM_CFG_STRING, NULL, 0, 31, 0,
	  "render this service's platform secrets into VAULT_TEMPLATE_FILE" },
	{ "VAULT_TEMPLATE_FILE", CM_CFG_STRING, NULL, 0, 4000, 0,
	  "environment file (mode 0600) re-rendered on every change" },
	{ "VAULT_ADDR", CM_CFG_URL, NULL, 0, 2048, 0,
	  "HashiCorp Vault address; set: secrets live in Vault, not locally" },
	{ "VAULT_ROLE_ID", CM_CFG_STRING, NULL, 0, 256, 0,
	  "AppRole role id (with VAULT_ADDR)" },
	{ "VAULT_SECRET_ID", CM_CFG_STRING, NULL, 0, 256, CM_CFG_SECRET,
	  "AppRole secret id (or VAULT_SECRET_ID_FILE)" },
	{ "VAULT_SECRET_ID_FILE", CM_CFG_STRING, NULL, 0, 4096, 0,
	  "file holding the AppRole secret id" },
	{ "VAULT_KV_MOUNT", CM_CFG_STRING, "secret", 1, 64, 0,
	  "the KV version 2 mount" },
	{ "VAULT_TRANSIT_MOUNT", CM_CFG_STRING, "transit", 1, 64, 0,
	  "the Transit mount" },
	{ "VAULT_RETRIES", CM_CFG_INT, "3", 0, 12, 0,
	  "extra attempts on network errors, 429 and 5xx" },
	{ "VAULT_TIMEOUT_MS", CM_CFG_INT, "5000", 100, 60000, 0,
	  "per-attempt timeout of a Vault request" },
	CM_CONFIG_END,
};

/*
 * The master key: VAULT_MASTER_KEY, or the file VAULT_MASTER_KEY_FILE.
 * Neither has a default and none is ever invented here: the local dev
 * stack (scripts/stack) generates one into var/secrets.env, a deployment
 * provides its own (compose.yml refuses to start without it).
 */
int
vc_load_master(const struct cm_config *cfg, unsigned char master[VC_KEY_LEN],
	       char errbuf[CM_ERRBUF_LEN])
{
	const char *value = cm_config_str(cfg, "VAULT_MASTER_KEY");
	const char *file = cm_config_str(cfg, "VAULT_MASTER_KEY_FILE");

	if (!value && !file) {
		cm_errf(errbuf, "set VAULT_MASTER_KEY or VAULT_MASTER_KEY_FILE "
				"(the local backend's master key)");
		return CM_EINVAL;
	}
	if (file)
		value = NULL; /* an explicit file wins over the value */
	if (file && access(file, F_OK) != 0) {
		cm_errf(errbuf, "VAULT_MASTER_KEY_FILE %s is missing", file);
		return CM_ENOENT;
	}
	return vc_key_load("VAULT_MASTER_KEY", file, value, master, errbuf);
}

/* Load the current and (optional) old master keys. */
static int
load_keys(const struct cm_config *cfg, unsigned char master[VC_KEY_LEN],
	  unsigned char old[VC_KEY_LEN], bool *have_old,
	  char errbuf[CM_ERRBUF_LEN])
{
	const char *old_file = cm_config_str(cfg, "VAULT_MASTER_KEY_OLD_FILE");
	const char *old_value = cm_config_str(cfg, "VAULT_MASTER_KEY_OLD");
	int rc;

	rc = vc_load_master(cfg, master, errbuf);
	*have_old = old_file || old_value;
	if (rc == 0 && *have_old)
		rc = vc_key_load("VAULT_MASTER_KEY_OLD", old_file, old_value,
				 old, errbuf);
	return rc;
}

/* The local backend: open, create or re-wrap the keyring. */
static int
start_local(const struct cm_config *cfg, struct vc *vc,
	    char errbuf[CM_ERRBUF_LEN])
{
	unsigned char master[VC_KEY_LEN], old[VC_KEY_LEN];
	bool have_old = false, rotated = false;
	int rc;

	rc = load_keys(cfg, master, old, &have_old, errbuf);
	if (rc == 0)
		rc = vc_store_keyring(master, have_old ? old : NULL, &rotated,
				      vc->dek, errbuf);
	if (rc == 0 && rotated)
		cm_log_info("master key rotated: data key re-wrapped");
	cm_memzero(master, sizeof(master));
	cm_memzero(old, sizeof(old));
	return rc;
}

/* The AppRole secret id: VAULT_SECRET_ID or the first line of its file. */
int
vc_secret_id(const struct cm_config *cfg, char out[257],
	     char errbuf[CM_ERRBUF_LEN])
{
	const char *file = cm_config_str(cfg, "VAULT_SECRET_ID_FILE");
	const char *value = cm_config_str(cfg, "VAULT_SECRET_ID");
	FILE *f;
	size_t n = 0;

	out[0] = '\0';
	if (!cm_config_str(cfg, "VAULT_ROLE_ID") || !!file == !!value) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "VAULT_ADDR needs VAULT_ROLE_ID and exactly one of "
			 "VAULT_SECRET_ID and VAULT_SECRET_ID_FILE");
		return CM_EINVAL;
	}
	if (value) {
		cm_strlcpy(out, value, 257);
		return 0;
	}
	if (!(f = fopen(file, "r"))) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "VAULT_SECRET_ID_FILE: cannot read %s", file);
		return CM_ENOENT;
	}
	n = fread(out, 1, 256, f);
	fclose(f);
	out[n] = '\0';
	while (n &&
	       (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
		out[--n] = '\0';
	return 0;
}

/* Renew the Vault token when due, about twice a second, until stop. */
static void *
keeper(void *arg)
{
	struct vc *vc = arg;
	char errbuf[CM_ERRBUF_LEN];
	struct timespec until;
	int64_t logged_ms = INT64_MIN / 2;

	pthread_mutex_lock(&vc->mu);
	while (!vc->stopping) {
		pthread_mutex_unlock(&vc->mu);
		errbuf[0] = '\0';
		if (vc_vault_maintain(vc->vault, errbuf) < 0 &&
		    cm_now_ms() - logged_ms >= 30000) { /* no log flood */
			cm_log_warn("vault token: %s", errbuf);
			logged_ms = cm_now_ms();
		}
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 500 * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&vc->mu);
		if (!vc->stopping)
			pthread_cond_timedwait(&vc->cond, &vc->mu, &until);
	}
	pthread_mutex_unlock(&vc->mu);
	return NULL;
}

/* /health/ready: Vault active and unsealed, and a live token. */
static int
check_vault(void *arg, char errbuf[CM_ERRBUF_LEN])
{
	struct vc *vc = arg;
	struct vc_vault_health h;
	int rc = vc_vault_health(vc->vault, &h, errbuf);

	if (rc == 0 && vc_vault_token_ttl_ms(vc->vault) == 0) {
		snprintf(errbuf, CM_ERRBUF_LEN, "no vault token");
		rc = CM_EACCES;
	}
	return rc;
}

static int
start_vault(struct cm_service *svc, const struct cm_config *cfg, struct vc *vc,
	    char errbuf[CM_ERRBUF_LEN])
{
	struct vc_vault_config c = { 0 };
	char sid[257];
	int rc;

	if ((rc = vc_secret_id(cfg, sid, errbuf)) < 0)
		goto out;
	c.addr = cm_config_str(cfg, "VAULT_ADDR");
	c.role_id = cm_config_str(cfg, "VAULT_ROLE_ID");
	c.secret_id = sid;
	c.kv_mount = cm_config_str(cfg, "VAULT_KV_MOUNT");
	c.transit_mount = cm_config_str(cfg, "VAULT_TRANSIT_MOUNT");
	c.retries = (int)cm_config_int(cfg, "VAULT_RETRIES");
	c.timeout_ms = (int)cm_config_int(cfg, "VAULT_TIMEOUT_MS");
	vc->vault = vc_vault_new(&c);
	rc = vc_vault_login(vc->vault, errbuf);
	if (rc == CM_EACCES) /* wrong credentials never fix themselves */
		goto out;
	if (rc < 0) /* unreachable or sealed: not ready until it answers */
		cm_log_warn("vault login: %s", errbuf);
	rc = pthread_create(&vc->keeper, NULL, keeper, vc) ? CM_EIO : 0;
	vc->keeper_running = rc == 0;
	if (rc == 0)
		cm_service_add_check(svc, "vault", check_vault, vc);
out:
	cm_memzero(sid, sizeof(sid));
	return rc;
}

void
vc_rerender(struct vc *vc, const char *owner)
{
	char errbuf[CM_ERRBUF_LEN] = "";

	if (!vc->template_service[0] || strcmp(owner, vc->template_service))
		return;
	pthread_mutex_lock(&vc->render_mu);
	if (vc_render_env(vc, vc->template_service, vc->template_path, errbuf) <
	    0)
		cm_log_err("template: %s", errbuf);
	pthread_mutex_unlock(&vc->render_mu);
}

/* The template settings (both or neither), and the first render. */
static int
start_template(const struct cm_config *cfg, struct vc *vc,
	       char errbuf[CM_ERRBUF_LEN])
{
	const char *svc = cm_config_str(cfg, "VAULT_TEMPLATE_SERVICE");
	const char *file = cm_config_str(cfg, "VAULT_TEMPLATE_FILE");

	if (!svc && !file)
		return 0;
	if (!svc || !file || !vc_name_valid(svc) || strchr(svc, '/')) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "VAULT_TEMPLATE_SERVICE (a service name) and "
			 "VAULT_TEMPLATE_FILE go together");
		return CM_EINVAL;
	}
	cm_strlcpy(vc->template_service, svc, sizeof(vc->template_service));
	vc->template_path = cm_xstrdup(file);
	return vc_render_env(vc, svc, file, errbuf);
}

/* The key of Idempotency-Key request hashes: derived from the service
   secret, so replicas agree and a stored hash says nothing of a value. */
static void
idem_key(const struct cm_config *cfg, unsigned char out[32])
{
	static const char label[] = "bz-vault-client:idempotency:v1";
	const char *secret = cm_config_str(cfg, "SERVICE_SECRET");

	vc_hmac(secret ? secret : "", secret ? strlen(secret) : 0, label,
		sizeof(label) - 1, out);
}

static void
vc_free(struct vc *vc)
{
	if (!vc)
		return;
	if (vc->keeper_running) {
		pthread_mutex_lock(&vc->mu);
		vc->stopping = true;
		pthread_cond_signal(&vc->cond);
		pthread_mutex_unlock(&vc->mu);
		pthread_join(vc->keeper, NULL);
	}
	cm_memzero(vc->dek, sizeof(vc->dek));
	cm_memzero(vc->idem_key, sizeof(vc->idem_key));
	vc_auditq_free(vc->auditq);
	vc_cache_free(vc->cache);
	vc_vault_free(vc->vault);
	free(vc->template_path);
	pthread_mutex_destroy(&vc->render_mu);
	pthread_cond_destroy(&vc->cond);
	pthread_mutex_destroy(&vc->mu);
	free(vc);
}

static int
vc_start(struct cm_service *svc, void **arg)
{
	const struct cm_config *cfg = cm_service_config(svc);
	char errbuf[CM_ERRBUF_LEN] = "";
	struct vc *vc = cm_xcalloc(1, sizeof(*vc));
	bool vault = cm_config_is_set(cfg, "VAULT_ADDR");
	int rc;

	vc->magic = VC_MAGIC;
	pthread_mutex_init(&vc->mu, NULL);
	pthread_cond_init(&vc->cond, NULL);
	pthread_mutex_init(&vc->render_mu, NULL);
	vc->cache = vc_cache_new((int)cm_config_int(cfg, "VAULT_CACHE_TTL_MS"),
				 (size_t)cm_config_int(cfg, "VAULT_CACHE_MAX"));
	idem_key(cfg, vc->idem_key);
	rc = vault ? start_vault(svc, cfg, vc, errbuf)
		   : start_local(cfg, vc, errbuf);
	if (rc == 0)
		rc = start_template(cfg, vc, errbuf);
	if (rc == 0 && cm_config_bool(cfg, "VAULT_AUDIT_BATCHED") &&
	    !(vc->auditq = vc_auditq_new(
		      (size_t)cm_config_int(cfg, "VAULT_AUDIT_QUEUE_MAX"),
		      (int)cm_config_int(cfg, "VAULT_AUDIT_FLUSH_MS"),
		      vc_store_audit_batch, NULL, cm_http_signal))) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "cannot start the audit writer");
		rc = CM_EIO;
	}
	if (rc < 0) {
		cm_log_err("%s: %s", vault ? "vault backend" : "keyring",
			   errbuf);
		vc_free(vc);
		return rc;
	}
	cm_log_info("%s backend ready", vault ? "vault" : "local");
	*arg = vc;
	return 0;
}

static void
vc_stop(struct cm_service *svc, void *arg)
{
	(void)svc;
	vc_free(arg);
}

const struct cm_service_desc vc_service = {
	.name = "vault-client",
	.port_env = "VAULT_CLIENT_PORT",
	.default_port = 8007,
	.schema = "vault_client",
	.config = vc_config,
	.routes = vc_routes,
	.start = vc_start,
	.stop = vc_stop,
};
