/*
 * backend.h - one interface over the two secret stores.
 *
 * The local backend (store.c: PostgreSQL, AES-256-GCM under the data key)
 * is used unless the service was started with VAULT_ADDR, in which case
 * every operation goes to HashiCorp Vault's KV v2 (vault.c) at the same
 * canonical path (tenants/<id>/<name>, platform/<service>/<name>). The
 * semantics and error codes are those of store.h. Listing differs by
 * nature: the local store lists every name under the prefix with its
 * current version; Vault lists one level, folders ending in "/", without
 * versions. Thread-safe as the backends are.
 */
#ifndef VC_BACKEND_H
#define VC_BACKEND_H

#include "store.h"
#include "vault_client.h"

int vc_backend_read(struct vc *vc, const struct vc_path *p, int version,
		    struct vc_secret *out, char errbuf[CM_ERRBUF_LEN]);
int vc_backend_write(struct vc *vc, const struct vc_path *p, const char *json,
		     int64_t cas, struct vc_version *out,
		     char errbuf[CM_ERRBUF_LEN]);
int vc_backend_delete(struct vc *vc, const struct vc_path *p,
		      char errbuf[CM_ERRBUF_LEN]);
int vc_backend_undelete(struct vc *vc, const struct vc_path *p,
			const int *versions, int n, char errbuf[CM_ERRBUF_LEN]);
int vc_backend_destroy(struct vc *vc, const struct vc_path *p,
		       const int *versions, int n, char errbuf[CM_ERRBUF_LEN]);
int vc_backend_metadata(struct vc *vc, const struct vc_path *p, cJSON **out,
			char errbuf[CM_ERRBUF_LEN]);
/* vc_backend_list - as vc_store_list (see above for Vault). */
int vc_backend_list(struct vc *vc, enum vc_scope scope, const char *owner,
		    const char *prefix, const char *cursor, int limit,
		    cJSON **items, char next_cursor[VC_NAME_MAX + 1],
		    char errbuf[CM_ERRBUF_LEN]);

#endif
