/*
 * transit.h - encryption as a service for other platform services.
 *
 * With VAULT_ADDR, Vault's Transit engine does the work (vault.c) and its
 * ciphertexts are Vault's own ("vault:v1:<base64>"). Otherwise the local
 * equivalent: each key name has its own 32-byte key, created on first
 * encrypt, stored wrapped under the data key (store.c); plaintexts are
 * sealed with AES-256-GCM under it with a fresh 96-bit nonce and the AAD
 * "bz-vault-client:transit:v1\0<key>\0<version>", and the ciphertext is
 * "local:v<version>:" followed by base64(nonce || ciphertext || tag).
 * A ciphertext of one key never decrypts under another key name.
 *
 * Plaintexts are base64 texts (as in Vault's API) of at most
 * VC_TRANSIT_DATA_MAX bytes once decoded. Outputs are malloc'd; the
 * caller zeroes and frees a plaintext. Thread-safe.
 */
#ifndef VC_TRANSIT_H
#define VC_TRANSIT_H

#include "common/err.h"

#include "vault_client.h"

#define VC_TRANSIT_DATA_MAX (64 * 1024)
/* base64 of VC_TRANSIT_DATA_MAX bytes, and of a sealed one plus prefix */
#define VC_TRANSIT_B64_MAX (4 * ((VC_TRANSIT_DATA_MAX + 2) / 3))
#define VC_TRANSIT_CT_MAX \
	(4 * ((VC_TRANSIT_DATA_MAX + VC_SEAL_OVERHEAD + 2) / 3) + 32)

/* vc_transit_encrypt - *ciphertext for the base64 plaintext with key;
   CM_EINVAL when plaintext is not base64 or too large, CM_EIO/others
   when the backend fails. */
int vc_transit_encrypt(struct vc *vc, const char *key, const char *plaintext,
		       char **ciphertext, int *key_version,
		       char errbuf[CM_ERRBUF_LEN]);
/* vc_transit_decrypt - *plaintext (base64) of a ciphertext of key;
   CM_EINVAL when it is malformed, from the other backend, of another key
   or fails authentication. */
int vc_transit_decrypt(struct vc *vc, const char *key, const char *ciphertext,
		       char **plaintext, char errbuf[CM_ERRBUF_LEN]);

#endif
