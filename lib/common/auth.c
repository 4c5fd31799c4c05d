/*
 * auth.c - JWT verification on top of libjwt 1.10.
 *
 * libjwt 1.x verifies with whatever algorithm the token's header names, so
 * the key-confusion attack (an HS256 token MACed with the RS256 public key
 * text) and alg=none are stopped here, before jwt_decode runs: the token's
 * shape is checked strictly and the header is decoded and parsed by us.
 * After jwt_decode the algorithm libjwt actually used is checked again, in
 * case its JSON parser (jansson) and ours (cJSON) read a header differently.
 * The claims are then read from the grants libjwt verified.
 */
#include "common/auth.h"
#include "common/mem.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/banned.h"

#define TOKEN_MAX 8192
#define KEY_MAX 16384
#define HS256_SECRET_MIN 32
#define RSA_BITS_MIN 2048
#define HEADER_MEMBERS_MAX 16
#define LEEWAY_MAX 300
#define SERVICE_LEEWAY_S 5
#define SERVICE_NAME_MAX 31
#define NUMERIC_DATE_MAX 253402300799LL /* 9999-12-31T23:59:59Z */
#define VCACHE_SLOTS 32	      /* verified tokens remembered per thread */
#define VCACHE_TOKEN_MAX 1024 /* longer tokens are verified every time */

struct cm_auth {
	enum cm_jwt_alg alg;
	unsigned char *key;
	size_t key_len;
	char *issuer;
	char *audience;
	int leeway_s;
	cm_auth_revoked_fn revoked;
	void *revoked_ctx;
	uint64_t verifier; /* vcache: what this verifier checks */
};

/*
 * The verified-token cache. Checking a token's signature and claims costs
 * tens of microseconds (libjwt parses and re-serialises JSON, HMAC with
 * OpenSSL 3 fetches the digest every time); a caller reuses one token for
 * many requests. So each thread remembers its last VCACHE_SLOTS verified
 * tokens: the exact token text, which verifier accepted it (a hash of the
 * key, audience and the rest of what was checked, so another key or
 * audience never hits), the principal, and until when it stays valid (exp
 * plus the leeway). Only successes are remembered; a hit compares the whole
 * token in constant time and still checks the clock, and the revocation
 * callback runs on every call, hit or not. Per thread, so no lock.
 */
struct vcache_entry {
	uint64_t verifier;
	int64_t until;
	size_t len;
	struct cm_principal p;
	char token[VCACHE_TOKEN_MAX];
};

static __thread struct vcache_entry vcache[VCACHE_SLOTS];

/* The slot hashes the length and the last 32 bytes only: in a JWT they
   are the signature, so they differ between tokens; a hit still compares
   the whole token. */
static struct vcache_entry *
vcache_slot(const char *token, size_t len)
{
	size_t tail = len < 32 ? len : 32;

	return &vcache[cm_hash(cm_hash(CM_HASH_INIT, &len, sizeof(len)),
			       token + len - tail, tail) %
		       VCACHE_SLOTS];
}

/* The cached principal of token under verifier, if any and still valid. */
static bool
vcache_get(uint64_t verifier, const char *token, struct cm_principal *out)
{
	size_t len = token ? strnlen(token, VCACHE_TOKEN_MAX) : 0;
	struct vcache_entry *e;

	if (len == 0 || len >= VCACHE_TOKEN_MAX)
		return false;
	e = vcache_slot(token, len);
	if (e->len != len || e->verifier != verifier ||
	    CRYPTO_memcmp(e->token, token, len) != 0)
		return false;
	if (cm_now_s() > e->until) {
		e->len = 0;
		return false;
	}
	*out = e->p;
	return true;
}

static void
vcache_put(uint64_t verifier, const char *token, const struct cm_principal *p,
	   int64_t until)
{
	size_t len = strnlen(token, VCACHE_TOKEN_MAX);
	struct vcache_entry *e;

	if (len >= VCACHE_TOKEN_MAX)
		return;
	e = vcache_slot(token, len);
	e->verifier = verifier;
	e->until = until;
	e->len = len;
	e->p = *p;
	memcpy(e->token, token, len);
}

struct jws_parts {
	const char *seg[3];
	size_t len[3];
};

static const char *const alg_names[] = {
	[CM_JWT_HS256] = "HS256",
	[CM_JWT_RS256] = "RS256",
	[CM_JWT_ES256] = "ES256",
};

static const jwt_alg_t alg_jwt[] = {
	[CM_JWT_HS256] = JWT_ALG_HS256,
	[CM_JWT_RS256] = JWT_ALG_RS256,
	[CM_JWT_ES256] = JWT_ALG_ES256,
};

static int failf(char *errbuf, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Fill errbuf (may be NULL) and return code, so failures are one line. */
static int
failf(char *errbuf, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cm_verrf(errbuf, fmt, ap);
	va_end(ap);
	return code;
}

static bool
alg_valid(enum cm_jwt_alg alg)
{
	return alg == CM_JWT_HS256 || alg == CM_JWT_RS256 ||
	       alg == CM_JWT_ES256;
}

int
cm_auth_parse_alg(const char *s, enum cm_jwt_alg *out)
{
	size_t i;

	if (!s)
		return CM_EINVAL;
	for (i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++) {
		if (strcmp(s, alg_names[i]) == 0) {
			*out = (enum cm_jwt_alg)i;
			return 0;
		}
	}
	return CM_EINVAL;
}

/* A service name: 1..31 of [a-z-], as the service table spells them. */
static bool
is_service_name(const char *s)
{
	size_t i;

	if (!s || !*s)
		return false;
	for (i = 0; s[i]; i++) {
		if (i >= SERVICE_NAME_MAX)
			return false;
		if (!(s[i] >= 'a' && s[i] <= 'z') && s[i] != '-')
			return false;
	}
	return true;
}

/* ---- keys ---- */

/* The public key must be what the algorithm expects, or nothing verifies
   and every request fails later with a less useful message. */
static int
check_public_key(enum cm_jwt_alg alg, const unsigned char *key, size_t len,
		 char *errbuf)
{
	EVP_PKEY *pk = NULL;
	BIO *bio = NULL;
	char group[32] = "";
	int rc = CM_EINVAL;

	bio = BIO_new_mem_buf(key, (int)len);
	if (bio)
		pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	if (!pk) {
		failf(errbuf, rc, "%s key is not a pem public key",
		      alg_names[alg]);
		goto out;
	}
	if (alg == CM_JWT_RS256 && (!EVP_PKEY_is_a(pk, "RSA") ||
				    EVP_PKEY_get_bits(pk) < RSA_BITS_MIN)) {
		failf(errbuf, rc, "RS256 key is not an rsa key of >= %d bits",
		      RSA_BITS_MIN);
		goto out;
	}
	if (alg == CM_JWT_ES256 &&
	    (!EVP_PKEY_is_a(pk, "EC") ||
	     EVP_PKEY_get_group_name(pk, group, sizeof(group), NULL) != 1 ||
	     strcmp(group, "prime256v1") != 0)) {
		failf(errbuf, rc, "ES256 key is not a p-256 ec key");
		goto out;
	}
	rc = 0;
out:
	EVP_PKEY_free(pk);
	BIO_free(bio);
	ERR_clear_error();
	return rc;
}

static int
check_key(enum cm_jwt_alg alg, const unsigned char *key, size_t len,
	  char *errbuf)
{
	if (!key || len == 0 || len > KEY_MAX)
		return failf(errbuf, CM_EINVAL,
			     "jwt key missing or over %d bytes", KEY_MAX);
	if (alg != CM_JWT_HS256)
		return check_public_key(alg, key, len, errbuf);
	if (len < HS256_SECRET_MIN)
		return failf(errbuf, CM_EINVAL,
			     "HS256 secret shorter than %d bytes",
			     HS256_SECRET_MIN);
	/* A PEM text as an HMAC secret is the key-confusion attack's key:
	   a configuration that does it by mistake is refused. */
	if (len >= 10 && memcmp(key, "-----BEGIN", 10) == 0)
		return failf(errbuf, CM_EINVAL, "HS256 secret is a pem key");
	return 0;
}

struct cm_auth *
cm_auth_new(const struct cm_auth_config *cfg, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_auth *auth;

	if (!cfg || !alg_valid(cfg->alg)) {
		failf(errbuf, CM_EINVAL, "bad jwt algorithm");
		return NULL;
	}
	if (!cfg->issuer || !*cfg->issuer || !cfg->audience ||
	    !*cfg->audience) {
		failf(errbuf, CM_EINVAL, "jwt issuer and audience required");
		return NULL;
	}
	if (cfg->leeway_s < 0 || cfg->leeway_s > LEEWAY_MAX) {
		failf(errbuf, CM_EINVAL, "jwt leeway not in 0..%d", LEEWAY_MAX);
		return NULL;
	}
	if (check_key(cfg->alg, cfg->key, cfg->key_len, errbuf) < 0)
		return NULL;
	auth = cm_xcalloc(1, sizeof(*auth));
	auth->alg = cfg->alg;
	auth->key = cm_xmalloc(cfg->key_len + 1);
	memcpy(auth->key, cfg->key, cfg->key_len);
	auth->key[cfg->key_len] = '\0';
	auth->key_len = cfg->key_len;
	auth->issuer = cm_xstrdup(cfg->issuer);
	auth->audience = cm_xstrdup(cfg->audience);
	auth->leeway_s = cfg->leeway_s;
	auth->verifier = cm_hash(CM_HASH_INIT, "user", 5);
	auth->verifier = cm_hash(auth->verifier, &auth->alg, sizeof(auth->alg));
	auth->verifier = cm_hash(auth->verifier, auth->key, auth->key_len + 1);
	auth->verifier =
		cm_hash(auth->verifier, auth->issuer, strlen(auth->issuer) + 1);
	auth->verifier = cm_hash(auth->verifier, auth->audience,
				 strlen(auth->audience) + 1);
	auth->verifier = cm_hash(auth->verifier, &auth->leeway_s,
				 sizeof(auth->leeway_s));
	return auth;
}

void
cm_auth_free(struct cm_auth *auth)
{
	if (!auth)
		return;
	cm_memzero(auth->key, auth->key_len);
	free(auth->key);
	free(auth->issuer);
	free(auth->audience);
	free(auth);
}

void
cm_auth_set_revocation(struct cm_auth *auth, cm_auth_revoked_fn fn, void *ctx)
{
	auth->revoked = fn;
	auth->revoked_ctx = ctx;
}

/* ---- token shape and header ---- */

static bool
is_b64url(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!isalnum(c) && c != '-' && c != '_')
			return false;
	}
	return true;
}

/* Exactly three non-empty base64url parts, no padding, at most TOKEN_MAX.
   libjwt's base64 decoder skips characters it does not know, so without
   the alphabet check one signature would have many spellings. */
static int
split_token(const char *token, struct jws_parts *p, char *errbuf)
{
	const char *start = token;
	size_t n, i, k = 0;

	if (!token)
		return failf(errbuf, CM_EACCES, "no token");
	n = strnlen(token, TOKEN_MAX + 1);
	if (n > TOKEN_MAX)
		return failf(errbuf, CM_EACCES, "token over %d bytes",
			     TOKEN_MAX);
	for (i = 0; i <= n; i++) {
		if (i < n && token[i] != '.')
			continue;
		if (k == 3)
			return failf(errbuf, CM_EACCES,
				     "token has more than 3 parts");
		p->seg[k] = start;
		p->len[k] = (size_t)(token + i - start);
		k++;
		start = token + i + 1;
	}
	if (k != 3)
		return failf(errbuf, CM_EACCES, "token has fewer than 3 parts");
	for (k = 0; k < 3; k++) {
		if (p->len[k] == 0 || !is_b64url(p->seg[k], p->len[k]))
			return failf(errbuf, CM_EACCES,
				     "token part %zu is empty or not base64url",
				     k + 1);
	}
	return 0;
}

/* Decode unpadded base64url; a malloc'd NUL-terminated buffer, or NULL. */
static char *
b64url_decode(const char *s, size_t n, size_t *outlen)
{
	size_t pad = (4 - n % 4) % 4, i;
	unsigned char *tmp, *out;
	int r;

	if (n % 4 == 1 || n > TOKEN_MAX)
		return NULL;
	tmp = cm_xmalloc(n + pad + 1);
	for (i = 0; i < n; i++)
		tmp[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	memset(tmp + n, '=', pad);
	tmp[n + pad] = '\0';
	out = cm_xmalloc((n + pad) / 4 * 3 + 1);
	r = EVP_DecodeBlock(out, tmp, (int)(n + pad));
	free(tmp);
	if (r < (int)pad) {
		free(out);
		return NULL;
	}
	*outlen = (size_t)r - pad;
	out[*outlen] = '\0';
	return (char *)out;
}

/* Whether an object names a member twice: cJSON would read the first and
   jansson the last, so such a header is refused outright. */
static bool
has_duplicate_or_many_members(const cJSON *obj)
{
	const cJSON *a, *b;
	int n = 0;

	cJSON_ArrayForEach(a, obj)
	{
		if (++n > HEADER_MEMBERS_MAX)
			return true;
		for (b = a->next; b; b = b->next) {
			if (strcmp(a->string, b->string) == 0)
				return true;
		}
	}
	return false;
}

static int
check_header_json(const cJSON *hdr, enum cm_jwt_alg alg, char *errbuf)
{
	const cJSON *v;

	if (!cJSON_IsObject(hdr))
		return failf(errbuf, CM_EACCES,
			     "token header is not a json object");
	if (has_duplicate_or_many_members(hdr))
		return failf(errbuf, CM_EACCES,
			     "token header has duplicate or too many members");
	v = cJSON_GetObjectItemCaseSensitive(hdr, "alg");
	if (!cJSON_IsString(v) || strcmp(v->valuestring, alg_names[alg]))
		return failf(errbuf, CM_EACCES,
			     "token alg is not the configured %s",
			     alg_names[alg]);
	if (cJSON_GetObjectItemCaseSensitive(hdr, "crit"))
		return failf(errbuf, CM_EACCES, "token header has crit");
	v = cJSON_GetObjectItemCaseSensitive(hdr, "typ");
	if (v && (!cJSON_IsString(v) || strcasecmp(v->valuestring, "JWT")))
		return failf(errbuf, CM_EACCES, "token header typ is not JWT");
	return 0;
}

static int
check_header(const struct jws_parts *p, enum cm_jwt_alg alg, char *errbuf)
{
	cJSON *hdr = NULL;
	char *text;
	size_t len = 0;
	int rc;

	text = b64url_decode(p->seg[0], p->len[0], &len);
	if (!text || strlen(text) != len) {
		rc = failf(errbuf, CM_EACCES,
			   "token header is not base64url text");
		goto out;
	}
	/* len + 1: cJSON wants to see the NUL to refuse trailing bytes */
	hdr = cJSON_ParseWithLengthOpts(text, len + 1, NULL, true);
	if (!hdr) {
		rc = failf(errbuf, CM_EACCES, "token header is not json");
		goto out;
	}
	rc = check_header_json(hdr, alg, errbuf);
out:
	cJSON_Delete(hdr);
	free(text);
	return rc;
}

/* Check shape and header, verify the signature with libjwt, and return the
   verified claims as a cJSON object in *claims. */
static int
decode_verified(enum cm_jwt_alg alg, const unsigned char *key, size_t key_len,
		const char *token, cJSON **claims, char *errbuf)
{
	struct jws_parts parts;
	jwt_t *jwt = NULL;
	char *grants = NULL;
	int rc;

	*claims = NULL;
	rc = split_token(token, &parts, errbuf);
	if (rc == 0)
		rc = check_header(&parts, alg, errbuf);
	if (rc < 0)
		goto out;
	rc = CM_EACCES;
	if (jwt_decode(&jwt, token, key, (int)key_len) != 0 || !jwt) {
		failf(errbuf, rc, "token signature or encoding invalid");
		goto out;
	}
	if (jwt_get_alg(jwt) != alg_jwt[alg]) {
		failf(errbuf, rc, "libjwt verified with an alg other than %s",
		      alg_names[alg]);
		goto out;
	}
	grants = jwt_get_grants_json(jwt, NULL);
	*claims = grants ? cJSON_Parse(grants) : NULL;
	if (!cJSON_IsObject(*claims)) {
		failf(errbuf, rc, "token claims are not a json object");
		goto out;
	}
	rc = 0;
out:
	if (rc < 0) {
		cJSON_Delete(*claims);
		*claims = NULL;
	}
	free(grants);
	jwt_free(jwt);
	ERR_clear_error();
	return rc;
}

/* ---- claims ---- */

/* A NumericDate claim as a whole number of seconds: 0, CM_ENOENT when
   absent, CM_EINVAL when not an integer in range. */
static int
claim_time(const cJSON *claims, const char *name, int64_t *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(claims, name);
	double d;

	if (!v)
		return CM_ENOENT;
	if (!cJSON_IsNumber(v))
		return CM_EINVAL;
	d = v->valuedouble;
	if (!(d >= 0 && d <= (double)NUMERIC_DATE_MAX) ||
	    d != (double)(int64_t)d)
		return CM_EINVAL;
	*out = (int64_t)d;
	return 0;
}

/* A string claim of 1..max bytes without control characters: 0 with *out
   pointing into claims, CM_ENOENT when absent, CM_EINVAL otherwise. */
static int
claim_str(const cJSON *claims, const char *name, size_t max, const char **out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(claims, name);
	size_t i, n;

	if (!v)
		return CM_ENOENT;
	if (!cJSON_IsString(v))
		return CM_EINVAL;
	n = strlen(v->valuestring);
	if (n == 0 || n > max)
		return CM_EINVAL;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v->valuestring[i];

		if (c < 0x20 || c == 0x7f)
			return CM_EINVAL;
	}
	*out = v->valuestring;
	return 0;
}

static int
check_user_times(const struct cm_auth *auth, const cJSON *claims,
		 struct cm_principal *p, char *errbuf)
{
	int64_t now = cm_now_s(), lw = auth->leeway_s, t;
	int rc;

	if (claim_time(claims, "exp", &p->exp) < 0)
		return failf(errbuf, CM_EACCES,
			     "token exp missing or not an integer");
	if (now > p->exp + lw)
		return failf(errbuf, CM_EACCES, "token expired");
	rc = claim_time(claims, "nbf", &t);
	if (rc == CM_EINVAL)
		return failf(errbuf, CM_EACCES, "token nbf not an integer");
	if (rc == 0 && now < t - lw)
		return failf(errbuf, CM_EACCES, "token not valid yet (nbf)");
	rc = claim_time(claims, "iat", &t);
	if (rc == CM_EINVAL)
		return failf(errbuf, CM_EACCES, "token iat not an integer");
	if (rc == 0 && t > now + lw)
		return failf(errbuf, CM_EACCES, "token issued in the future");
	return 0;
}

static bool
aud_matches(const cJSON *aud, const char *want)
{
	const cJSON *v;
	bool found = false;

	if (cJSON_IsString(aud))
		return strcmp(aud->valuestring, want) == 0;
	if (!cJSON_IsArray(aud))
		return false;
	cJSON_ArrayForEach(v, aud)
	{
		if (!cJSON_IsString(v))
			return false;
		if (strcmp(v->valuestring, want) == 0)
			found = true;
	}
	return found;
}

static int
check_iss_aud(const struct cm_auth *auth, const cJSON *claims, char *errbuf)
{
	const cJSON *iss = cJSON_GetObjectItemCaseSensitive(claims, "iss");
	const cJSON *aud = cJSON_GetObjectItemCaseSensitive(claims, "aud");

	if (!cJSON_IsString(iss) || strcmp(iss->valuestring, auth->issuer))
		return failf(errbuf, CM_EACCES,
			     "token iss is not the configured issuer");
	if (!aud_matches(aud, auth->audience))
		return failf(errbuf, CM_EACCES,
			     "token aud does not name the configured audience");
	return 0;
}

static int
read_roles(const cJSON *claims, struct cm_principal *p, char *errbuf)
{
	const cJSON *roles = cJSON_GetObjectItemCaseSensitive(claims, "roles");
	const cJSON *v;

	if (!roles)
		return 0;
	if (!cJSON_IsArray(roles))
		return failf(errbuf, CM_EACCES, "token roles is not an array");
	if (cJSON_GetArraySize(roles) > CM_ROLES_MAX)
		return failf(errbuf, CM_EACCES, "token has more than %d roles",
			     CM_ROLES_MAX);
	cJSON_ArrayForEach(v, roles)
	{
		if (!cJSON_IsString(v) || !*v->valuestring ||
		    strlen(v->valuestring) >= CM_ROLE_LEN)
			return failf(
				errbuf, CM_EACCES,
				"token role is not a string of 1..%d bytes",
				CM_ROLE_LEN - 1);
		cm_strlcpy(p->roles[p->nroles++], v->valuestring, CM_ROLE_LEN);
	}
	return 0;
}

/* jti is optional for both kinds of token; when present it is copied. */
static int
read_jti(const cJSON *claims, struct cm_principal *p, char *errbuf)
{
	const char *s;
	int rc = claim_str(claims, "jti", sizeof(p->jti) - 1, &s);

	if (rc == CM_EINVAL)
		return failf(errbuf, CM_EACCES,
			     "token jti is not a string of 1..%zu bytes",
			     sizeof(p->jti) - 1);
	if (rc == 0)
		cm_strlcpy(p->jti, s, sizeof(p->jti));
	return 0;
}

static int
read_identity(const cJSON *claims, struct cm_principal *p, char *errbuf)
{
	const cJSON *typ = cJSON_GetObjectItemCaseSensitive(claims, "typ");
	const char *s;
	int rc;

	if (typ &&
	    (!cJSON_IsString(typ) || strcmp(typ->valuestring, "service") == 0))
		return failf(errbuf, CM_EACCES,
			     "a service token is not a user token");
	if (claim_str(claims, "sub", sizeof(p->sub) - 1, &s) < 0)
		return failf(
			errbuf, CM_EACCES,
			"token sub missing or not a string of 1..%zu bytes",
			sizeof(p->sub) - 1);
	cm_strlcpy(p->sub, s, sizeof(p->sub));
	rc = claim_str(claims, "tenant_id", sizeof(p->tenant_id) - 1, &s);
	if (rc == CM_EINVAL || (rc == 0 && !cm_is_uuid(s)))
		return failf(errbuf, CM_EACCES,
			     "token tenant_id is not a uuid");
	if (rc == 0)
		cm_strlcpy(p->tenant_id, s, sizeof(p->tenant_id));
	return read_jti(claims, p, errbuf);
}

static int
check_user_claims(const struct cm_auth *auth, const cJSON *claims,
		  struct cm_principal *p, char *errbuf)
{
	int rc;

	rc = check_user_times(auth, claims, p, errbuf);
	if (rc == 0)
		rc = check_iss_aud(auth, claims, errbuf);
	if (rc == 0)
		rc = read_identity(claims, p, errbuf);
	if (rc == 0)
		rc = read_roles(claims, p, errbuf);
	return rc;
}

int
cm_auth_verify(const struct cm_auth *auth, const char *token,
	       struct cm_principal *out, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_principal p;
	cJSON *claims = NULL;
	int rc = 0;

	memset(&p, 0, sizeof(p));
	if (!auth) {
		rc = failf(errbuf, CM_EACCES, "no verifier");
		goto out;
	}
	if (!vcache_get(auth->verifier, token, &p)) {
		rc = decode_verified(auth->alg, auth->key, auth->key_len, token,
				     &claims, errbuf);
		if (rc == 0)
			rc = check_user_claims(auth, claims, &p, errbuf);
		if (rc == 0)
			vcache_put(auth->verifier, token, &p,
				   p.exp + auth->leeway_s);
	}
	if (rc == 0 && auth->revoked && p.jti[0] &&
	    auth->revoked(p.jti, auth->revoked_ctx))
		rc = failf(errbuf, CM_EACCES, "token revoked");
out:
	if (rc < 0)
		memset(&p, 0, sizeof(p));
	*out = p;
	cJSON_Delete(claims);
	return rc;
}

/* ---- signing ---- */

int
cm_jwt_sign(enum cm_jwt_alg alg, const unsigned char *key, size_t key_len,
	    const char *claims_json, char **out, char errbuf[CM_ERRBUF_LEN])
{
	cJSON *claims = NULL;
	jwt_t *jwt = NULL;
	char *tok = NULL;
	int rc = CM_EINVAL;

	*out = NULL;
	if (!alg_valid(alg)) {
		failf(errbuf, rc, "bad jwt algorithm");
		goto out;
	}
	if (!key || key_len == 0 || key_len > KEY_MAX ||
	    (alg == CM_JWT_HS256 && key_len < HS256_SECRET_MIN)) {
		failf(errbuf, rc,
		      "jwt signing key missing, too short or too long");
		goto out;
	}
	claims = claims_json ? cJSON_Parse(claims_json) : NULL;
	if (!cJSON_IsObject(claims)) {
		failf(errbuf, rc, "jwt claims are not a json object");
		goto out;
	}
	if (jwt_new(&jwt) != 0 || jwt_add_grants_json(jwt, claims_json) != 0 ||
	    jwt_set_alg(jwt, alg_jwt[alg], key, (int)key_len) != 0) {
		failf(errbuf, rc, "jwt claims or key refused by libjwt");
		goto out;
	}
	tok = jwt_encode_str(jwt);
	if (!tok) {
		failf(errbuf, rc, "jwt signing failed (bad %s key?)",
		      alg_names[alg]);
		goto out;
	}
	*out = cm_xstrdup(tok);
	rc = 0;
out:
	free(tok);
	jwt_free(jwt);
	cJSON_Delete(claims);
	ERR_clear_error();
	return rc;
}

/* ---- service tokens ---- */

static int
check_service_secret(const char *secret, char *errbuf)
{
	size_t n = secret ? strnlen(secret, KEY_MAX + 1) : 0;

	if (n < HS256_SECRET_MIN || n > KEY_MAX)
		return failf(errbuf, CM_EINVAL,
			     "service secret shorter than %d or over %d bytes",
			     HS256_SECRET_MIN, KEY_MAX);
	return 0;
}

/* The user a gateway token carries: uid, tid, roles, key. */
static void
add_user_claims(cJSON *claims, const struct cm_principal *user)
{
	cJSON *roles;
	int i;

	cJSON_AddStringToObject(claims, "uid", user->sub);
	if (user->tenant_id[0])
		cJSON_AddStringToObject(claims, "tid", user->tenant_id);
	roles = cJSON_AddArrayToObject(claims, "roles");
	for (i = 0; roles && i < user->nroles && i < CM_ROLES_MAX; i++)
		cJSON_AddItemToArray(roles, cJSON_CreateString(user->roles[i]));
	if (user->is_api_key)
		cJSON_AddBoolToObject(claims, "key", true);
}

static int
service_token_mint(const char *secret, const char *self, const char *target,
		   int ttl_s, const struct cm_principal *user, char **out,
		   char errbuf[CM_ERRBUF_LEN])
{
	cJSON *claims = NULL;
	char *text = NULL;
	char jti[37];
	int64_t now = cm_now_s();
	int rc;

	*out = NULL;
	rc = check_service_secret(secret, errbuf);
	if (rc < 0)
		goto out;
	rc = CM_EINVAL;
	if (!is_service_name(self) || !is_service_name(target)) {
		failf(errbuf, rc, "service name is not 1..%d of [a-z-]",
		      SERVICE_NAME_MAX);
		goto out;
	}
	if (ttl_s < 1 || ttl_s > CM_SERVICE_TOKEN_MAX_TTL) {
		failf(errbuf, rc, "service token ttl not in 1..%d",
		      CM_SERVICE_TOKEN_MAX_TTL);
		goto out;
	}
	rc = cm_uuid_v4(jti);
	if (rc < 0) {
		failf(errbuf, rc, "no randomness for service token jti");
		goto out;
	}
	claims = cJSON_CreateObject();
	cJSON_AddStringToObject(claims, "iss", self);
	cJSON_AddStringToObject(claims, "aud", target);
	cJSON_AddStringToObject(claims, "sub", self);
	cJSON_AddStringToObject(claims, "typ", "service");
	cJSON_AddNumberToObject(claims, "iat", (double)now);
	cJSON_AddNumberToObject(claims, "exp", (double)(now + ttl_s));
	cJSON_AddStringToObject(claims, "jti", jti);
	if (user)
		add_user_claims(claims, user);
	text = cJSON_PrintUnformatted(claims);
	if (!text) {
		rc = failf(errbuf, CM_ENOMEM, "service token claims");
		goto out;
	}
	rc = cm_jwt_sign(CM_JWT_HS256, (const unsigned char *)secret,
			 strlen(secret), text, out, errbuf);
out:
	free(text);
	cJSON_Delete(claims);
	return rc;
}

int
cm_service_token_mint(const char *secret, const char *self, const char *target,
		      int ttl_s, char **out, char errbuf[CM_ERRBUF_LEN])
{
	return service_token_mint(secret, self, target, ttl_s, NULL, out,
				  errbuf);
}

int
cm_gateway_token_mint(const char *secret, const char *target, int ttl_s,
		      const struct cm_principal *user, char **out,
		      char errbuf[CM_ERRBUF_LEN])
{
	*out = NULL;
	if (!user || !user->sub[0] || user->is_service ||
	    (user->tenant_id[0] && !cm_is_uuid(user->tenant_id)))
		return failf(errbuf, CM_EINVAL,
			     "gateway token needs a user and a uuid tenant");
	return service_token_mint(secret, CM_GATEWAY_ISSUER, target, ttl_s,
				  user, out, errbuf);
}

/* A gateway token: the user it carries becomes the principal. */
static int
read_gateway_user(const cJSON *claims, struct cm_principal *p, char *errbuf)
{
	const cJSON *uid = cJSON_GetObjectItemCaseSensitive(claims, "uid");
	const cJSON *tid = cJSON_GetObjectItemCaseSensitive(claims, "tid");
	const cJSON *key = cJSON_GetObjectItemCaseSensitive(claims, "key");
	int rc;

	if (!cJSON_IsString(uid) || !uid->valuestring[0] ||
	    strlen(uid->valuestring) >= sizeof(p->sub))
		return failf(errbuf, CM_EACCES, "gateway token uid is bad");
	if (tid && (!cJSON_IsString(tid) || !cm_is_uuid(tid->valuestring)))
		return failf(errbuf, CM_EACCES, "gateway token tid is bad");
	if (key && !cJSON_IsBool(key))
		return failf(errbuf, CM_EACCES, "gateway token key is bad");
	rc = read_roles(claims, p, errbuf);
	if (rc < 0)
		return rc;
	cm_strlcpy(p->sub, uid->valuestring, sizeof(p->sub));
	if (tid)
		cm_strlcpy(p->tenant_id, tid->valuestring,
			   sizeof(p->tenant_id));
	p->is_api_key = cJSON_IsTrue(key);
	p->is_service = false;
	cm_strlcpy(p->via, CM_GATEWAY_ISSUER, sizeof(p->via));
	return 0;
}

static int
check_service_times(const cJSON *claims, struct cm_principal *p, char *errbuf)
{
	int64_t now = cm_now_s(), iat;

	if (claim_time(claims, "exp", &p->exp) < 0 ||
	    claim_time(claims, "iat", &iat) < 0)
		return failf(
			errbuf, CM_EACCES,
			"service token exp or iat missing or not an integer");
	if (p->exp <= iat || p->exp - iat > CM_SERVICE_TOKEN_MAX_TTL)
		return failf(errbuf, CM_EACCES,
			     "service token lifetime not in 1..%d s",
			     CM_SERVICE_TOKEN_MAX_TTL);
	if (now > p->exp + SERVICE_LEEWAY_S)
		return failf(errbuf, CM_EACCES, "service token expired");
	if (iat > now + SERVICE_LEEWAY_S)
		return failf(errbuf, CM_EACCES,
			     "service token issued in the future");
	return 0;
}

static int
check_service_claims(const char *self, const cJSON *claims,
		     struct cm_principal *p, char *errbuf)
{
	const cJSON *typ = cJSON_GetObjectItemCaseSensitive(claims, "typ");
	const cJSON *aud = cJSON_GetObjectItemCaseSensitive(claims, "aud");
	const cJSON *iss = cJSON_GetObjectItemCaseSensitive(claims, "iss");
	const cJSON *sub = cJSON_GetObjectItemCaseSensitive(claims, "sub");
	int rc;

	if (!cJSON_IsString(typ) || strcmp(typ->valuestring, "service"))
		return failf(errbuf, CM_EACCES, "not a service token");
	if (!cJSON_IsString(aud) || strcmp(aud->valuestring, self))
		return failf(errbuf, CM_EACCES,
			     "service token is for another service");
	if (!cJSON_IsString(iss) || !is_service_name(iss->valuestring))
		return failf(errbuf, CM_EACCES,
			     "service token iss is not a service name");
	if (sub && (!cJSON_IsString(sub) ||
		    strcmp(sub->valuestring, iss->valuestring)))
		return failf(errbuf, CM_EACCES,
			     "service token sub is not its iss");
	rc = check_service_times(claims, p, errbuf);
	if (rc < 0)
		return rc;
	cm_strlcpy(p->sub, iss->valuestring, sizeof(p->sub));
	p->is_service = true;
	rc = read_jti(claims, p, errbuf);
	if (rc < 0 || !cJSON_GetObjectItemCaseSensitive(claims, "uid"))
		return rc;
	if (strcmp(iss->valuestring, CM_GATEWAY_ISSUER))
		return failf(errbuf, CM_EACCES,
			     "only the gateway may send a user");
	return read_gateway_user(claims, p, errbuf);
}

int
cm_service_token_verify(const char *secret, const char *self, const char *token,
			struct cm_principal *out, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_principal p;
	cJSON *claims = NULL;
	uint64_t verifier;
	int rc = CM_EACCES;

	memset(&p, 0, sizeof(p));
	if (check_service_secret(secret, errbuf) < 0)
		goto out;
	if (!is_service_name(self)) {
		failf(errbuf, rc, "own service name is not 1..%d of [a-z-]",
		      SERVICE_NAME_MAX);
		goto out;
	}
	verifier = cm_hash(CM_HASH_INIT, "service", 8);
	verifier = cm_hash(verifier, secret, strlen(secret) + 1);
	verifier = cm_hash(verifier, self, strlen(self) + 1);
	if (vcache_get(verifier, token, &p)) {
		rc = 0;
		goto out;
	}
	rc = decode_verified(CM_JWT_HS256, (const unsigned char *)secret,
			     strlen(secret), token, &claims, errbuf);
	if (rc == 0)
		rc = check_service_claims(self, claims, &p, errbuf);
	if (rc == 0)
		vcache_put(verifier, token, &p, p.exp + SERVICE_LEEWAY_S);
out:
	if (rc < 0)
		memset(&p, 0, sizeof(p));
	*out = p;
	cJSON_Delete(claims);
	return rc;
}

bool
cm_principal_has_role(const struct cm_principal *p, const char *role)
{
	int i;

	if (!p || !role)
		return false;
	for (i = 0; i < p->nroles && i < CM_ROLES_MAX; i++) {
		if (strcmp(p->roles[i], role) == 0)
			return true;
	}
	return false;
}
