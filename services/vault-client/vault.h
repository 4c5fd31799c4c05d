/*
 * vault.h - a HashiCorp Vault client: AppRole login, token renewal, KV
 * version 2, Transit and sys/health (shapes: ../shared/reference/vault.md).
 *
 * Requests go through cm_fetch (user_url off: the address is operator
 * configuration). Every request is retried on a network error, a timeout,
 * 429 or 500/502/503/504, up to `retries` extra times, waiting backoff_ms
 * and doubling up to 2 s. A 403 on a token request logs in again once and
 * repeats the request (the token expired or was revoked).
 *
 * Token lifecycle: vc_vault_maintain(), called about once a second, renews
 * the token (renew-self) once 2/3 of its lease has passed, like Vault
 * Agent, and logs in again instead when the token is not renewable (batch),
 * when renewal fails, or when the renewed lease is under half of the lease
 * login gave (the token is near its max TTL).
 *
 * The token and the secret id are zeroed when freed; neither appears in
 * errbuf or a log line. KV paths are the canonical paths of policy.h
 * (tenants/<id>/<name>, platform/<service>/<name>) and need no escaping.
 * Thread-safe: the token is kept under a mutex; requests run in parallel.
 */
#ifndef VC_VAULT_H
#define VC_VAULT_H

#include <stdbool.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/err.h"

#include "store.h"

struct vc_vault_config {
	const char *addr;	   /* "http://127.0.0.1:8200", no trailing / */
	const char *role_id;	   /* AppRole */
	const char *secret_id;	   /* AppRole (zeroed copy kept) */
	const char *kv_mount;	   /* "secret" */
	const char *transit_mount; /* "transit" */
	int timeout_ms;		   /* per attempt; 0: 5000 */
	int retries;		   /* extra attempts; see above */
	int backoff_ms;		   /* first wait; 0: 100 */
};

struct vc_vault_health {
	long status; /* sys/health's HTTP status */
	bool initialized, sealed, standby;
};

struct vc_vault;

/* vc_vault_new - a client (config copied); no request yet. */
struct vc_vault *vc_vault_new(const struct vc_vault_config *cfg);
/* vc_vault_free - zero the token and secret id; accepts NULL. */
void vc_vault_free(struct vc_vault *v);
/* vc_vault_login - AppRole login; CM_EACCES for refused credentials. */
int vc_vault_login(struct vc_vault *v, char errbuf[CM_ERRBUF_LEN]);
/* vc_vault_maintain - renew or log in again when due (above); 0 when
   nothing was due or it worked. */
int vc_vault_maintain(struct vc_vault *v, char errbuf[CM_ERRBUF_LEN]);
/* vc_vault_token_ttl_ms - time left on the token (0: none). */
int64_t vc_vault_token_ttl_ms(struct vc_vault *v);
/* vc_vault_logins - successful logins so far (tests, metrics). */
int vc_vault_logins(struct vc_vault *v);
/* vc_vault_health - read sys/health; 0 when active and unsealed,
   CM_EAGAIN standby, CM_EIO sealed, uninitialised or unreachable (h says
   which; h->status 0 when unreachable). */
int vc_vault_health(struct vc_vault *v, struct vc_vault_health *h,
		    char errbuf[CM_ERRBUF_LEN]);

/* KV v2 under kv_mount; the semantics of the store.h functions. */
int vc_vault_kv_read(struct vc_vault *v, const char *path, int version,
		     struct vc_secret *out, char errbuf[CM_ERRBUF_LEN]);
int vc_vault_kv_write(struct vc_vault *v, const char *path, const char *json,
		      int64_t cas, struct vc_version *out,
		      char errbuf[CM_ERRBUF_LEN]);
/* n 0: soft-delete the latest version (DELETE data/<path>). */
int vc_vault_kv_delete(struct vc_vault *v, const char *path,
		       const int *versions, int n, char errbuf[CM_ERRBUF_LEN]);
int vc_vault_kv_undelete(struct vc_vault *v, const char *path,
			 const int *versions, int n,
			 char errbuf[CM_ERRBUF_LEN]);
int vc_vault_kv_destroy(struct vc_vault *v, const char *path,
			const int *versions, int n, char errbuf[CM_ERRBUF_LEN]);
/* vc_vault_kv_metadata - the metadata "data" object (caller frees). */
int vc_vault_kv_metadata(struct vc_vault *v, const char *path, cJSON **out,
			 char errbuf[CM_ERRBUF_LEN]);
/* vc_vault_kv_list - the "keys" array under dir ("" or ending in "/");
   CM_ENOENT when empty. */
int vc_vault_kv_list(struct vc_vault *v, const char *dir, cJSON **keys,
		     char errbuf[CM_ERRBUF_LEN]);
/* vc_vault_transit - encrypt (base64 plaintext -> "vault:v1:...") or
   decrypt with key; *out malloc'd (caller zeroes and frees). */
int vc_vault_transit(struct vc_vault *v, const char *key, bool encrypt,
		     const char *in, char **out, char errbuf[CM_ERRBUF_LEN]);

#endif
