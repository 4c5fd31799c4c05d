/*
 * crypto.h - vault-client's key handling and AES-256-GCM sealing.
 *
 * Keys are 32 bytes. vc_seal() encrypts with a fresh random 96-bit nonce
 * and writes nonce || ciphertext || tag; vc_open() checks the tag and the
 * AAD before handing any plaintext out. The key-check value (KCV) is
 * HMAC-SHA256(key, "bz-vault-client:kcv:v1") cut to 16 bytes: it tells a
 * wrong master key apart from a damaged keyring without revealing the key.
 * Buffers handed out are malloc'd; callers zero plaintexts (cm_memzero)
 * before freeing them. Pure functions over OpenSSL EVP; thread-safe.
 */
#ifndef VC_CRYPTO_H
#define VC_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

#define VC_KEY_LEN 32
#define VC_NONCE_LEN 12
#define VC_TAG_LEN 16
#define VC_KCV_LEN 16
#define VC_SEAL_OVERHEAD (VC_NONCE_LEN + VC_TAG_LEN)

/* vc_key_parse - 64 hex digits or base64 of 32 bytes, surrounding
   whitespace ignored; 0 or CM_EINVAL (key zeroed). */
int vc_key_parse(const char *text, size_t len, unsigned char key[VC_KEY_LEN]);
/* vc_key_load - the key from file (if non-NULL) or value (if non-NULL);
   both or neither set is CM_EINVAL; an unreadable file CM_ENOENT. errbuf
   names the setting `what`, never the key. */
int vc_key_load(const char *what, const char *file, const char *value,
		unsigned char key[VC_KEY_LEN], char errbuf[CM_ERRBUF_LEN]);
/* vc_kcv - the key-check value of key. */
void vc_kcv(const unsigned char key[VC_KEY_LEN], unsigned char out[VC_KCV_LEN]);
/* vc_random - n random bytes; 0 or CM_EIO. */
int vc_random(void *p, size_t n);
/* vc_seal - encrypt pt under key with aad; *out (len pt_len +
   VC_SEAL_OVERHEAD) malloc'd. 0 or CM_EIO. */
int vc_seal(const unsigned char key[VC_KEY_LEN], const void *aad,
	    size_t aad_len, const void *pt, size_t pt_len, unsigned char **out,
	    size_t *out_len);
/* vc_open - decrypt what vc_seal wrote; *pt malloc'd with a NUL after
   *pt_len bytes. CM_EACCES when the tag, key or aad do not match (or the
   input is too short); CM_EIO on an OpenSSL failure. */
int vc_open(const unsigned char key[VC_KEY_LEN], const void *aad,
	    size_t aad_len, const unsigned char *in, size_t in_len,
	    unsigned char **pt, size_t *pt_len);
/* vc_hex_encode - 2*n hex digits plus NUL into a malloc'd string. */
char *vc_hex_encode(const unsigned char *p, size_t n);
/* vc_hex_decode - malloc'd bytes of an even-length hex string; CM_EINVAL
   for anything else. */
int vc_hex_decode(const char *s, unsigned char **out, size_t *out_len);

/* vc_hmac - HMAC-SHA256(key[key_len], data[n]) into out. */
void vc_hmac(const void *key, size_t key_len, const void *data, size_t n,
	     unsigned char out[32]);
/* vc_b64_encode - standard padded base64 of n bytes, malloc'd. */
char *vc_b64_encode(const unsigned char *p, size_t n);
/* vc_b64_decode - the bytes of a standard padded base64 text (no
   whitespace), malloc'd with a NUL after *out_len; CM_EINVAL otherwise. */
int vc_b64_decode(const char *s, unsigned char **out, size_t *out_len);

#endif
