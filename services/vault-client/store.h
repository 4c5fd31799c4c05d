/*
 * store.h - the local backend: encrypted, versioned secrets in PostgreSQL.
 *
 * Versioned like Vault's KV v2: every write adds a version; a version can
 * be soft-deleted (deletion_time set, value kept), undeleted, or destroyed
 * (ciphertext erased for good). Tenant paths are read and written only
 * inside cm_db_tx_tenant(owner) on tables with forced row-level security;
 * platform paths inside cm_db_tx on the platform tables. Values are JSON
 * texts sealed by crypto.h under the data key with AAD binding scope,
 * owner, name and version. errbuf never holds a value.
 *
 * vc_store_keyring() runs once at start-up: it creates the keyring on
 * first start, refuses a master key whose key-check value does not match
 * (CM_EACCES), re-wraps the data key when the stored KCV matches the old
 * master key, and hands out the data key. Everything else is thread-safe
 * (one connection per thread, from libcommon).
 */
#ifndef VC_STORE_H
#define VC_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/err.h"

#include "crypto.h"
#include "policy.h"

#define VC_VALUE_MAX (64 * 1024)
#define VC_VERSIONS_MAX 100

struct vc_version {
	int version; /* 0: none */
	char created_time[40];
	char deletion_time[40]; /* "" when not deleted */
	bool destroyed;
};

struct vc_secret {
	struct vc_version meta;
	char *json; /* the plaintext object, NUL-terminated; NULL if none */
	size_t len;
};

/* vc_secret_release - zero and free the value. */
void vc_secret_release(struct vc_secret *s);

/* vc_store_keyring - load or create the keyring (see above); 0 with dek
   filled, CM_EACCES for a wrong master key, CM_EIO otherwise. old may be
   NULL. */
int vc_store_keyring(const unsigned char master[VC_KEY_LEN],
		     const unsigned char *old, bool *rotated,
		     unsigned char dek[VC_KEY_LEN], char errbuf[CM_ERRBUF_LEN]);
/* vc_store_keyring_exists - whether the keyring row is there. */
int vc_store_keyring_exists(bool *exists, char errbuf[CM_ERRBUF_LEN]);
/* vc_store_read - version (0: the current one) of p. CM_ENOENT when
   there is no such secret or version (out->meta.version 0), or when the
   version is deleted or destroyed (out->meta says which); CM_EACCES when
   the ciphertext fails authentication. */
int vc_store_read(const unsigned char dek[VC_KEY_LEN], const struct vc_path *p,
		  int version, struct vc_secret *out,
		  char errbuf[CM_ERRBUF_LEN]);
/* vc_store_write - add a version holding json; cas < 0: unconditional,
   0: only if absent, N: only if the current version is N (else
   CM_ESTALE). out gets the new version's metadata. */
int vc_store_write(const unsigned char dek[VC_KEY_LEN], const struct vc_path *p,
		   const char *json, int64_t cas, struct vc_version *out,
		   char errbuf[CM_ERRBUF_LEN]);
/* Version operations: versions[n] (n 0: the current version for delete);
   CM_ENOENT when the secret does not exist. */
int vc_store_delete(const struct vc_path *p, const int *versions, int n,
		    char errbuf[CM_ERRBUF_LEN]);
int vc_store_undelete(const struct vc_path *p, const int *versions, int n,
		      char errbuf[CM_ERRBUF_LEN]);
int vc_store_destroy(const struct vc_path *p, const int *versions, int n,
		     char errbuf[CM_ERRBUF_LEN]);
/* vc_store_metadata - {"name","current_version","created_time",
   "updated_time","versions":{"1":{...}}}; CM_ENOENT if absent. */
int vc_store_metadata(const struct vc_path *p, cJSON **out,
		      char errbuf[CM_ERRBUF_LEN]);
/* vc_store_list - names of owner (tenant id or service) in scope starting
   with prefix, after cursor (may be ""), at most limit; *items is a JSON
   array of {"name","current_version","updated_time"}; next_cursor[0] is
   '\0' at the end. */
int vc_store_list(enum vc_scope scope, const char *owner, const char *prefix,
		  const char *cursor, int limit, cJSON **items,
		  char next_cursor[VC_NAME_MAX + 1],
		  char errbuf[CM_ERRBUF_LEN]);

/* vc_store_owners - every tenant id (brain.tenants: the tenant tables'
   row-level security hides other tenants, so each is visited in its own
   transaction) or every service holding platform secrets, as a JSON
   array of strings. */
int vc_store_owners(enum vc_scope scope, cJSON **out,
		    char errbuf[CM_ERRBUF_LEN]);

struct vc_audit {
	enum vc_scope scope;
	const char *tenant_id; /* tenant scope */
	const char *caller;
	const char *op;
	const char *path;
	bool allowed;
	const char *reason;
	const char *request_id;
};

/* vc_store_audit - append one audit record (vc_store_audit_batch of 1). */
int vc_store_audit(const struct vc_audit *a, char errbuf[CM_ERRBUF_LEN]);
/* vc_store_audit_batch - append n records in one statement and
   transaction, vault_client.audit_append (each tenant's rows under its
   own app.tenant_id, row-level security checking every one); the
   auditq.h writer (ctx unused). Runs on this thread's connection outside
   any transaction of its own. */
int vc_store_audit_batch(const struct vc_audit *rows, size_t n, void *ctx,
			 char errbuf[CM_ERRBUF_LEN]);
/* vc_store_audit_list - tenant's audit records, newest first, with an id
   below before_id (0: from the newest), at most limit: *items is a JSON
   array of {"id","at","caller","op","path","allowed","reason",
   "request_id"}; next_cursor is "" at the end, else the id to continue
   below. */
int vc_store_audit_list(const char *tenant_id, int64_t before_id, int limit,
			cJSON **items, char next_cursor[24],
			char errbuf[CM_ERRBUF_LEN]);

/* Idempotency of tenant writes (per tenant, one day). */
enum vc_idem_state {
	VC_IDEM_NEW = 0,     /* claimed: run the write, then finish/abort */
	VC_IDEM_REPLAY,	     /* done before with this request: *status and
			      *response are its answer (response malloc'd) */
	VC_IDEM_MISMATCH,    /* the key was used for another request */
	VC_IDEM_IN_PROGRESS, /* the first request has not finished */
};

/* vc_store_idem_begin - claim key for a request whose hash is given. */
int vc_store_idem_begin(const char *tenant_id, const char *key,
			const unsigned char hash[32], enum vc_idem_state *state,
			int *status, char **response,
			char errbuf[CM_ERRBUF_LEN]);
/* vc_store_idem_finish - remember the answer of a claimed key. */
int vc_store_idem_finish(const char *tenant_id, const char *key, int status,
			 const char *response, char errbuf[CM_ERRBUF_LEN]);
/* vc_store_idem_abort - release a claimed key (the write failed). */
int vc_store_idem_abort(const char *tenant_id, const char *key,
			char errbuf[CM_ERRBUF_LEN]);

/* vc_store_transit_key - the local Transit key name (unwrapped with dek)
   and its version; created (random) when absent and create is set, else
   CM_ENOENT. CM_EACCES when the stored key does not unwrap. */
int vc_store_transit_key(const unsigned char dek[VC_KEY_LEN], const char *name,
			 bool create, unsigned char key[VC_KEY_LEN],
			 int *version, char errbuf[CM_ERRBUF_LEN]);

#endif
