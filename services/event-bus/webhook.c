/*
 * webhook.c - the pure part of webhooks: secrets, Standard Webhooks
 * signatures, the retry schedule, type patterns. No I/O.
 */
#include "evbus.h"

#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "common/mem.h"

#include "common/banned.h"

#define SECRET_PREFIX "whsec_"
#define SECRET_RAW 32 /* bytes of a new secret */
#define SECRET_MIN 16 /* bytes a secret must decode to */
#define SECRET_MAX 64

int
bus_webhook_secret_new(char out[BUS_WH_SECRET_LEN])
{
	unsigned char raw[SECRET_RAW];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return CM_EIO;
	memcpy(out, SECRET_PREFIX, strlen(SECRET_PREFIX));
	EVP_EncodeBlock((unsigned char *)out + strlen(SECRET_PREFIX), raw,
			sizeof(raw));
	cm_memzero(raw, sizeof(raw));
	return 0;
}

/* The key bytes of "whsec_<base64>"; their count or CM_EINVAL. */
static int
secret_bytes(const char *secret, unsigned char key[SECRET_MAX + 3])
{
	size_t n, pad = 0;
	int len;

	if (!secret || strncmp(secret, SECRET_PREFIX, strlen(SECRET_PREFIX)))
		return CM_EINVAL;
	secret += strlen(SECRET_PREFIX);
	n = strlen(secret);
	if (n == 0 || n % 4 || n > (SECRET_MAX + 2) / 3 * 4)
		return CM_EINVAL;
	if (secret[n - 1] == '=')
		pad = secret[n - 2] == '=' ? 2 : 1;
	len = EVP_DecodeBlock(key, (const unsigned char *)secret, (int)n);
	if (len < 0 || (size_t)len < pad)
		return CM_EINVAL;
	len -= (int)pad;
	return len >= SECRET_MIN && len <= SECRET_MAX ? len : CM_EINVAL;
}

bool
bus_webhook_secret_ok(const char *secret)
{
	unsigned char key[SECRET_MAX + 3];
	int n = secret_bytes(secret, key);

	cm_memzero(key, sizeof(key));
	return n > 0;
}

/* HMAC-SHA256 of head then body under key into mac[32]; 0 or CM_EIO. */
static int
hmac_sha256(const unsigned char *key, int klen, const char *head, size_t hlen,
	    const char *body, size_t blen, unsigned char mac[32])
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						 (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = m ? EVP_MAC_CTX_new(m) : NULL;
	size_t n = 0;
	int rc = CM_EIO;

	if (ctx && EVP_MAC_init(ctx, key, (size_t)klen, params) &&
	    EVP_MAC_update(ctx, (const unsigned char *)head, hlen) &&
	    EVP_MAC_update(ctx, (const unsigned char *)body, blen) &&
	    EVP_MAC_final(ctx, mac, &n, 32) && n == 32)
		rc = 0;
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(m);
	return rc;
}

int
bus_webhook_sign(const char *secret, const char *msg_id, int64_t timestamp,
		 const char *body, size_t body_len, char out[BUS_WH_SIG_LEN])
{
	unsigned char key[SECRET_MAX + 3], mac[32];
	char head[128];
	int klen, hlen, rc = CM_EINVAL;

	klen = secret_bytes(secret, key);
	hlen = snprintf(head, sizeof(head), "%s.%lld.", msg_id,
			(long long)timestamp);
	if (klen < 0 || hlen < 0 || (size_t)hlen >= sizeof(head))
		goto out;
	rc = hmac_sha256(key, klen, head, (size_t)hlen, body ? body : "",
			 body_len, mac);
	if (rc < 0)
		goto out;
	memcpy(out, "v1,", 3);
	EVP_EncodeBlock((unsigned char *)out + 3, mac, sizeof(mac));
out:
	cm_memzero(key, sizeof(key));
	return rc;
}

int64_t
bus_webhook_backoff_ms(const struct bus_webhook_schedule *s, int attempt)
{
	int64_t d = s->backoff_ms;
	int i;

	for (i = 1; i < attempt && d < s->backoff_max_ms; i++)
		d *= 2;
	return d < s->backoff_max_ms ? d : s->backoff_max_ms;
}

int64_t
bus_webhook_schedule_span_ms(const struct bus_webhook_schedule *s)
{
	int64_t sum = 0;
	int i;

	for (i = 1; i < s->max_attempts; i++)
		sum += bus_webhook_backoff_ms(s, i);
	return sum;
}

bool
bus_type_pattern_ok(const char *p)
{
	char dom[70];
	size_t n;

	if (!p)
		return false;
	n = strlen(p);
	if (strcmp(p, "*") == 0)
		return true;
	if (n >= 3 && n < sizeof(dom) - 2 && strcmp(p + n - 2, ".*") == 0) {
		snprintf(dom, sizeof(dom), "%.*s.x", (int)(n - 2), p);
		return cm_bus_valid_type(dom);
	}
	return cm_bus_valid_type(p);
}

int
bus_webhook_check_patterns(const cJSON *arr, char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *it, *other;
	int i = 0;

	if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0 ||
	    cJSON_GetArraySize(arr) > CM_BUS_MAX_PATTERNS) {
		cm_errf(errbuf,
			"field 'event_types' must list 1..%d type patterns",
			CM_BUS_MAX_PATTERNS);
		return CM_EINVAL;
	}
	cJSON_ArrayForEach(it, arr)
	{
		if (!cJSON_IsString(it) ||
		    !bus_type_pattern_ok(it->valuestring)) {
			cm_errf(errbuf,
				"field 'event_types[%d]' must be an event "
				"type, "
				"<domain>.* or *",
				i);
			return CM_EINVAL;
		}
		for (other = arr->child; other != it; other = other->next) {
			if (strcmp(other->valuestring, it->valuestring) == 0) {
				cm_errf(errbuf,
					"field 'event_types[%d]' is repeated",
					i);
				return CM_EINVAL;
			}
		}
		i++;
	}
	return 0;
}
