/* crypto.c - AES-256-GCM sealing and key parsing for vault-client. */
#include "crypto.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "common/mem.h"

#include "common/banned.h"

#define KCV_LABEL "bz-vault-client:kcv:v1"
#define KEY_FILE_MAX 4096

static int
hex_into(const char *s, size_t n, unsigned char *out)
{
	size_t i;
	int hi, lo;

	for (i = 0; i < n / 2; i++) {
		hi = cm_hex_digit((unsigned char)s[2 * i]);
		lo = cm_hex_digit((unsigned char)s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return CM_EINVAL;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

int
vc_key_parse(const char *text, size_t len, unsigned char key[VC_KEY_LEN])
{
	unsigned char tmp[48];
	int n;

	while (len && isspace((unsigned char)text[0])) {
		text++;
		len--;
	}
	while (len && isspace((unsigned char)text[len - 1]))
		len--;
	if (len == 2 * VC_KEY_LEN && hex_into(text, len, key) == 0)
		return 0;
	if (len == 44) {
		n = EVP_DecodeBlock(tmp, (const unsigned char *)text, 44);
		/* 44 chars decode to 33 bytes with one '=' of padding */
		if (n == 33 && text[43] == '=' && text[42] != '=') {
			memcpy(key, tmp, VC_KEY_LEN);
			cm_memzero(tmp, sizeof(tmp));
			return 0;
		}
		cm_memzero(tmp, sizeof(tmp));
	}
	cm_memzero(key, VC_KEY_LEN);
	return CM_EINVAL;
}

static int
read_key_file(const char *path, char *buf, size_t cap, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	size_t got = 0;

	if (fd < 0)
		return CM_ENOENT;
	while (got < cap && (n = read(fd, buf + got, cap - got)) > 0)
		got += (size_t)n;
	close(fd);
	*len = got;
	return got == cap ? CM_E2BIG : 0;
}

int
vc_key_load(const char *what, const char *file, const char *value,
	    unsigned char key[VC_KEY_LEN], char errbuf[CM_ERRBUF_LEN])
{
	char buf[KEY_FILE_MAX];
	size_t len = 0;
	int rc;

	if ((file && value) || (!file && !value)) {
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "set exactly one of %s_FILE and %s", what, what);
		return CM_EINVAL;
	}
	if (value)
		rc = vc_key_parse(value, strlen(value), key);
	else if ((rc = read_key_file(file, buf, sizeof(buf), &len)) == 0)
		rc = vc_key_parse(buf, len, key);
	cm_memzero(buf, sizeof(buf));
	if (rc == CM_ENOENT)
		snprintf(errbuf, CM_ERRBUF_LEN, "%s_FILE: cannot read %s", what,
			 file);
	else if (rc < 0)
		snprintf(errbuf, CM_ERRBUF_LEN,
			 "%s must be 32 bytes as 64 hex digits or base64 "
			 "(value hidden)",
			 what);
	return rc;
}

void
vc_kcv(const unsigned char key[VC_KEY_LEN], unsigned char out[VC_KCV_LEN])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	HMAC(EVP_sha256(), key, VC_KEY_LEN, (const unsigned char *)KCV_LABEL,
	     strlen(KCV_LABEL), mac, &n);
	memcpy(out, mac, VC_KCV_LEN);
	cm_memzero(mac, sizeof(mac));
}

int
vc_random(void *p, size_t n)
{
	return RAND_bytes(p, (int)n) == 1 ? 0 : CM_EIO;
}

/* Set up ctx for key, nonce and aad in either direction. */
static int
gcm_init(EVP_CIPHER_CTX *ctx, int enc, const unsigned char *key,
	 const unsigned char *nonce, const void *aad, size_t aad_len)
{
	int n;

	if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) !=
		    1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, VC_NONCE_LEN,
				NULL) != 1 ||
	    EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) != 1)
		return CM_EIO;
	if (aad_len && EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)
		return CM_EIO;
	return 0;
}

int
vc_seal(const unsigned char key[VC_KEY_LEN], const void *aad, size_t aad_len,
	const void *pt, size_t pt_len, unsigned char **out, size_t *out_len)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	unsigned char *buf = cm_xmalloc(pt_len + VC_SEAL_OVERHEAD);
	unsigned char *ct = buf + VC_NONCE_LEN;
	int n = 0, fin = 0, rc = CM_EIO;

	if (!ctx || pt_len > (size_t)1 << 30 || vc_random(buf, VC_NONCE_LEN))
		goto out;
	if (gcm_init(ctx, 1, key, buf, aad, aad_len) < 0 ||
	    EVP_EncryptUpdate(ctx, ct, &n, pt, (int)pt_len) != 1 ||
	    EVP_EncryptFinal_ex(ctx, ct + n, &fin) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, VC_TAG_LEN,
				ct + pt_len) != 1)
		goto out;
	*out = buf;
	*out_len = pt_len + VC_SEAL_OVERHEAD;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

int
vc_open(const unsigned char key[VC_KEY_LEN], const void *aad, size_t aad_len,
	const unsigned char *in, size_t in_len, unsigned char **pt,
	size_t *pt_len)
{
	EVP_CIPHER_CTX *ctx = NULL;
	unsigned char *buf = NULL;
	size_t len;
	int n = 0, fin = 0, rc = CM_EACCES;

	if (in_len < VC_SEAL_OVERHEAD || in_len > ((size_t)1 << 30))
		goto out;
	len = in_len - VC_SEAL_OVERHEAD;
	buf = cm_xmalloc(len + 1);
	rc = CM_EIO;
	if (!(ctx = EVP_CIPHER_CTX_new()) ||
	    gcm_init(ctx, 0, key, in, aad, aad_len) < 0 ||
	    EVP_DecryptUpdate(ctx, buf, &n, in + VC_NONCE_LEN, (int)len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, VC_TAG_LEN,
				(void *)(in + in_len - VC_TAG_LEN)) != 1)
		goto out;
	rc = CM_EACCES;
	if (EVP_DecryptFinal_ex(ctx, buf + n, &fin) != 1)
		goto out;
	buf[len] = '\0';
	*pt = buf;
	*pt_len = len;
	buf = NULL;
	rc = 0;
out:
	if (buf) {
		cm_memzero(buf, len + 1);
		free(buf);
	}
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

char *
vc_hex_encode(const unsigned char *p, size_t n)
{
	char *s = cm_xmalloc(2 * n + 1);

	cm_hex_encode(p, n, s);
	return s;
}

int
vc_hex_decode(const char *s, unsigned char **out, size_t *out_len)
{
	size_t n = strlen(s);
	unsigned char *buf;

	if (n % 2)
		return CM_EINVAL;
	buf = cm_xmalloc(n / 2 + 1);
	if (hex_into(s, n, buf) < 0) {
		free(buf);
		return CM_EINVAL;
	}
	*out = buf;
	*out_len = n / 2;
	return 0;
}

void
vc_hmac(const void *key, size_t key_len, const void *data, size_t n,
	unsigned char out[32])
{
	unsigned int len = 32;

	HMAC(EVP_sha256(), key, (int)key_len, data, n, out, &len);
}

char *
vc_b64_encode(const unsigned char *p, size_t n)
{
	char *s = cm_xmalloc(4 * ((n + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)s, p, (int)n);
	return s;
}

static bool
b64_char_ok(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int
vc_b64_decode(const char *s, unsigned char **out, size_t *out_len)
{
	size_t n = strlen(s), i, pad = 0;
	int got;

	*out = NULL;
	*out_len = 0;
	if (n % 4 || n > (size_t)INT32_MAX / 2)
		return CM_EINVAL;
	if (n && s[n - 1] == '=')
		pad = n > 1 && s[n - 2] == '=' ? 2 : 1;
	for (i = 0; i < n - pad; i++)
		if (!b64_char_ok((unsigned char)s[i]))
			return CM_EINVAL;
	*out = cm_xmalloc(n / 4 * 3 + 1);
	got = EVP_DecodeBlock(*out, (const unsigned char *)s, (int)n);
	if (got < 0 || (size_t)got < pad) {
		free(*out);
		*out = NULL;
		return CM_EINVAL;
	}
	*out_len = (size_t)got - pad;
	(*out)[*out_len] = '\0';
	return 0;
}
