/*
 * crypto.c - password hashing (PBKDF2-HMAC-SHA256) and opaque tokens.
 * Pure apart from OpenSSL's random generator.
 */
#include "brain.h"

#include "common/mem.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "common/banned.h"

#define SALT_LEN 16
#define DK_LEN 32

static const char b64url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Unpadded base64url of n bytes into out (room for 4n/3 + 2). */
static void
b64_encode(const unsigned char *in, size_t n, char *out)
{
	size_t i, o = 0;
	unsigned v;

	for (i = 0; i + 2 < n; i += 3) {
		v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 |
		    in[i + 2];
		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
		out[o++] = b64url[v >> 6 & 63];
		out[o++] = b64url[v & 63];
	}
	if (n - i == 1) {
		v = (unsigned)in[i] << 16;
		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
	} else if (n - i == 2) {
		v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
		out[o++] = b64url[v >> 6 & 63];
	}
	out[o] = '\0';
}

/* Decode exactly n bytes of unpadded base64url; 0 or CM_EINVAL. */
static int
b64_decode(const char *s, size_t slen, unsigned char *out, size_t n)
{
	unsigned v = 0, bits = 0;
	size_t i, o = 0;
	const char *p;

	for (i = 0; i < slen; i++) {
		p = s[i] ? strchr(b64url, s[i]) : NULL;
		if (!p)
			return CM_EINVAL;
		v = v << 6 | (unsigned)(p - b64url);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= n)
				return CM_EINVAL;
			out[o++] = (unsigned char)(v >> bits);
		}
	}
	return o == n ? 0 : CM_EINVAL;
}

static int
derive(const char *password, const unsigned char *salt, int iter,
       unsigned char dk[DK_LEN])
{
	return PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt,
				 SALT_LEN, iter, EVP_sha256(), DK_LEN, dk) == 1
		       ? 0
		       : CM_EIO;
}

int
brain_password_hash(const char *password, int iter, char out[BRAIN_HASH_LEN])
{
	unsigned char salt[SALT_LEN], dk[DK_LEN];
	char s64[32], d64[48];

	if (RAND_bytes(salt, sizeof(salt)) != 1 ||
	    derive(password, salt, iter, dk) < 0)
		return CM_EIO;
	b64_encode(salt, sizeof(salt), s64);
	b64_encode(dk, sizeof(dk), d64);
	snprintf(out, BRAIN_HASH_LEN, "pbkdf2_sha256$%d$%s$%s", iter, s64, d64);
	cm_memzero(dk, sizeof(dk));
	return 0;
}

bool
brain_password_verify(const char *password, const char *encoded)
{
	static const char pfx[] = "pbkdf2_sha256$";
	unsigned char salt[SALT_LEN], want[DK_LEN], got[DK_LEN];
	const char *p, *s, *d;
	char num[16];
	int64_t iter;
	bool ok;

	if (strncmp(encoded, pfx, sizeof(pfx) - 1))
		return false;
	p = encoded + sizeof(pfx) - 1;
	s = strchr(p, '$');
	d = s ? strchr(s + 1, '$') : NULL;
	if (!d || (size_t)(s - p) >= sizeof(num))
		return false;
	memcpy(num, p, (size_t)(s - p));
	num[s - p] = '\0';
	if (cm_parse_i64(num, 1000, 10000000, &iter) < 0 ||
	    b64_decode(s + 1, (size_t)(d - s - 1), salt, SALT_LEN) < 0 ||
	    b64_decode(d + 1, strlen(d + 1), want, DK_LEN) < 0 ||
	    derive(password, salt, (int)iter, got) < 0)
		return false;
	ok = CRYPTO_memcmp(got, want, DK_LEN) == 0;
	cm_memzero(got, sizeof(got));
	return ok;
}

int
brain_random_token(const char *prefix, char *out, size_t outlen)
{
	unsigned char raw[32];
	size_t plen = strlen(prefix);

	if (outlen < plen + 44)
		return CM_E2BIG;
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return CM_EIO;
	memcpy(out, prefix, plen);
	b64_encode(raw, sizeof(raw), out + plen);
	cm_memzero(raw, sizeof(raw));
	return 0;
}

void
brain_sha256_hex(const char *s, char out[BRAIN_SHA256_HEX])
{
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)s, strlen(s), md);
	cm_hex_encode(md, sizeof(md), out);
}
