/* transit.c - Transit encrypt/decrypt: Vault's engine or the local one. */
#include "transit.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/mem.h"

#include "store.h"
#include "vault.h"

#include "common/banned.h"

#define LOCAL_PREFIX "local:v"
#define VAULT_PREFIX "vault:v"
#define TRANSIT_AAD "bz-vault-client:transit:v1"

static void
transit_aad(const char *key, int version, struct cm_buf *aad)
{
	cm_buf_puts(aad, TRANSIT_AAD);
	cm_buf_putc(aad, '\0');
	cm_buf_puts(aad, key);
	cm_buf_putc(aad, '\0');
	cm_buf_printf(aad, "%d", version);
}

/* The decoded plaintext, checked for size; CM_EINVAL otherwise. */
static int
plaintext_bytes(const char *b64, unsigned char **out, size_t *len)
{
	if (strlen(b64) > VC_TRANSIT_B64_MAX || vc_b64_decode(b64, out, len))
		return CM_EINVAL;
	return 0;
}

static int
local_encrypt(struct vc *vc, const char *key, const char *plaintext,
	      char **ciphertext, int *version, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf aad = CM_BUF_INIT(0), out = CM_BUF_INIT(0);
	unsigned char k[VC_KEY_LEN], *pt = NULL, *ct = NULL;
	size_t ptlen = 0, ctlen = 0;
	char *b64 = NULL;
	int rc;

	if ((rc = plaintext_bytes(plaintext, &pt, &ptlen)) < 0)
		return rc;
	rc = vc_store_transit_key(vc->dek, key, true, k, version, errbuf);
	if (rc < 0)
		goto out;
	transit_aad(key, *version, &aad);
	if ((rc = vc_seal(k, aad.data, aad.len, pt, ptlen, &ct, &ctlen)) < 0) {
		snprintf(errbuf, CM_ERRBUF_LEN, "encrypt failed");
		goto out;
	}
	b64 = vc_b64_encode(ct, ctlen);
	cm_buf_printf(&out, LOCAL_PREFIX "%d:%s", *version, b64);
	*ciphertext = cm_buf_detach(&out, NULL);
out:
	cm_memzero(k, sizeof(k));
	if (pt) {
		cm_memzero(pt, ptlen);
		free(pt);
	}
	free(ct);
	free(b64);
	cm_buf_release(&aad);
	cm_buf_release(&out);
	return rc;
}

/* "local:v<N>:<base64>" -> N and the sealed bytes. */
static int
local_parse(const char *ciphertext, int *version, unsigned char **ct,
	    size_t *ctlen)
{
	const char *p = ciphertext + strlen(LOCAL_PREFIX), *colon;
	char num[12];
	int64_t v = 0;
	size_t n;

	if (strncmp(ciphertext, LOCAL_PREFIX, strlen(LOCAL_PREFIX)) ||
	    !(colon = strchr(p, ':')) || (n = (size_t)(colon - p)) == 0 ||
	    n >= sizeof(num))
		return CM_EINVAL;
	memcpy(num, p, n);
	num[n] = '\0';
	if (cm_parse_i64(num, 1, INT32_MAX, &v) < 0 ||
	    vc_b64_decode(colon + 1, ct, ctlen) < 0)
		return CM_EINVAL;
	*version = (int)v;
	return 0;
}

static int
local_decrypt(struct vc *vc, const char *key, const char *ciphertext,
	      char **plaintext, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf aad = CM_BUF_INIT(0);
	unsigned char k[VC_KEY_LEN], *ct = NULL, *pt = NULL;
	size_t ctlen = 0, ptlen = 0;
	int version = 0, have = 0, rc;

	if ((rc = local_parse(ciphertext, &version, &ct, &ctlen)) < 0)
		goto out;
	rc = vc_store_transit_key(vc->dek, key, false, k, &have, errbuf);
	if (rc == CM_ENOENT || (rc == 0 && have != version))
		rc = CM_EINVAL; /* no such key (version): cannot be ours */
	if (rc < 0)
		goto out;
	transit_aad(key, version, &aad);
	if (vc_open(k, aad.data, aad.len, ct, ctlen, &pt, &ptlen) < 0) {
		rc = CM_EINVAL;
		goto out;
	}
	*plaintext = vc_b64_encode(pt, ptlen);
out:
	if (rc == CM_EINVAL)
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "the ciphertext does not decrypt with this key");
	cm_memzero(k, sizeof(k));
	if (pt) {
		cm_memzero(pt, ptlen);
		free(pt);
	}
	free(ct);
	cm_buf_release(&aad);
	return rc;
}

int
vc_transit_encrypt(struct vc *vc, const char *key, const char *plaintext,
		   char **ciphertext, int *key_version,
		   char errbuf[CM_ERRBUF_LEN])
{
	unsigned char *pt = NULL;
	size_t len = 0;
	int rc;

	*ciphertext = NULL;
	*key_version = 0;
	if (!vc->vault)
		return local_encrypt(vc, key, plaintext, ciphertext,
				     key_version, errbuf);
	if ((rc = plaintext_bytes(plaintext, &pt, &len)) < 0)
		return rc;
	cm_memzero(pt, len);
	free(pt);
	rc = vc_vault_transit(vc->vault, key, true, plaintext, ciphertext,
			      errbuf);
	if (rc == 0 && strncmp(*ciphertext, VAULT_PREFIX, 7)) {
		free(*ciphertext);
		*ciphertext = NULL;
		snprintf(errbuf, CM_ERRBUF_LEN, "vault sent no ciphertext");
		return CM_EPROTO;
	}
	if (rc == 0)
		*key_version = (int)strtol(*ciphertext + 7, NULL, 10);
	return rc;
}

int
vc_transit_decrypt(struct vc *vc, const char *key, const char *ciphertext,
		   char **plaintext, char errbuf[CM_ERRBUF_LEN])
{
	*plaintext = NULL;
	if (strlen(ciphertext) > VC_TRANSIT_CT_MAX)
		return CM_EINVAL;
	if (!vc->vault)
		return local_decrypt(vc, key, ciphertext, plaintext, errbuf);
	if (strncmp(ciphertext, VAULT_PREFIX, strlen(VAULT_PREFIX)))
		return CM_EINVAL; /* a local ciphertext, or none */
	return vc_vault_transit(vc->vault, key, false, ciphertext, plaintext,
				errbuf);
}
