/* test_auth.c - user and service token verification, attacks included. */
#include "common/auth.h"
#include "common/err.h"
#include "common/mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "testutil.h"

#include "common/banned.h"

#define SECRET "0123456789abcdef0123456789abcdef-user"
#define SVC_SECRET "fedcba9876543210fedcba9876543210-svc"
#define ISS "https://brain.test"
#define AUD "bizosaas"
#define TENANT "7d3c1b2a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

/* Key pairs made once per run in the unchecked fixture, before Check
   forks each test; nothing is committed to the tree. */
static struct {
	char *rsa_pub, *rsa_priv, *rsa2_pub, *rsa2_priv;
	char *ec_pub, *ec_priv, *ec2_pub, *ec2_priv;
} keys;

static char *
pem_of(EVP_PKEY *k, bool pub)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *s;
	long n;
	int ok;

	ck_assert_ptr_nonnull(b);
	ok = pub ? PEM_write_bio_PUBKEY(b, k)
		 : PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
	ck_assert_int_eq(ok, 1);
	n = BIO_get_mem_data(b, &data);
	s = cm_xstrndup(data, (size_t)n);
	BIO_free(b);
	return s;
}

static void
make_pair(const char *type, char **pub, char **priv)
{
	EVP_PKEY *k;

	if (strcmp(type, "RSA") == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	else
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	ck_assert_ptr_nonnull(k);
	*pub = pem_of(k, true);
	*priv = pem_of(k, false);
	EVP_PKEY_free(k);
}

static void
keys_setup(void)
{
	make_pair("RSA", &keys.rsa_pub, &keys.rsa_priv);
	make_pair("RSA", &keys.rsa2_pub, &keys.rsa2_priv);
	make_pair("EC", &keys.ec_pub, &keys.ec_priv);
	make_pair("EC", &keys.ec2_pub, &keys.ec2_priv);
}

static void
keys_teardown(void)
{
	free(keys.rsa_pub);
	free(keys.rsa_priv);
	free(keys.rsa2_pub);
	free(keys.rsa2_priv);
	free(keys.ec_pub);
	free(keys.ec_priv);
	free(keys.ec2_pub);
	free(keys.ec2_priv);
}

/* ---- helpers ---- */

static struct cm_auth *
new_auth(enum cm_jwt_alg alg, const char *key, int leeway)
{
	struct cm_auth_config cfg = {
		.alg = alg,
		.key = (const unsigned char *)key,
		.key_len = strlen(key),
		.issuer = ISS,
		.audience = AUD,
		.leeway_s = leeway,
	};
	char errbuf[CM_ERRBUF_LEN] = "";
	struct cm_auth *auth = cm_auth_new(&cfg, errbuf);

	ck_assert_msg(auth != NULL, "cm_auth_new: %s", errbuf);
	return auth;
}

static char *sign(enum cm_jwt_alg alg, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Sign the claims printed from fmt; the test fails if signing does. */
static char *
sign(enum cm_jwt_alg alg, const char *key, const char *fmt, ...)
{
	char claims[16384], errbuf[CM_ERRBUF_LEN] = "";
	char *tok = NULL;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(claims, sizeof(claims), fmt, ap);
	va_end(ap);
	rc = cm_jwt_sign(alg, (const unsigned char *)key, strlen(key), claims,
			 &tok, errbuf);
	ck_assert_msg(rc == 0, "cm_jwt_sign: %s", errbuf);
	ck_assert_ptr_nonnull(tok);
	return tok;
}

/* A valid user token's claims, with `extra` (",\"k\":v..." or "")
   appended. */
static char *
user_token(enum cm_jwt_alg alg, const char *key, const char *extra)
{
	return sign(alg, key,
		    "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u-1\","
		    "\"exp\":%lld%s}",
		    (long long)cm_now_s() + 300, extra);
}

/* cm_auth_verify must refuse: CM_EACCES, a reason, a zeroed principal
   and no piece of the token in the reason. */
#define assert_refused(auth, tok, why) \
	assert_refused_at(auth, tok, why, __LINE__)
static void
assert_refused_at(const struct cm_auth *auth, const char *tok, const char *why,
		  int line)
{
	struct cm_principal p;
	char errbuf[CM_ERRBUF_LEN] = "";
	const char *sig;
	int rc;

	memset(&p, 0x5a, sizeof(p));
	rc = cm_auth_verify(auth, tok, &p, errbuf);
	ck_assert_int_eq(rc, CM_EACCES);
	ck_assert_msg(strstr(errbuf, why) != NULL,
		      "line %d: refused for \"%s\", expected \"%s\"", line,
		      errbuf, why);
	ck_assert_str_eq(p.sub, "");
	ck_assert_int_eq(p.nroles, 0);
	sig = tok ? strrchr(tok, '.') : NULL;
	if (sig && strlen(sig) > 8)
		ck_assert_ptr_null(strstr(errbuf, sig + 1));
}

static void
assert_accepted(const struct cm_auth *auth, const char *tok,
		struct cm_principal *p)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	int rc = cm_auth_verify(auth, tok, p, errbuf);

	ck_assert_msg(rc == 0, "refused: %s", errbuf);
}

static char *
b64url(const char *s, size_t n)
{
	unsigned char *out = cm_xmalloc(n / 3 * 4 + 8);
	int len = EVP_EncodeBlock(out, (const unsigned char *)s, (int)n);
	int i;

	for (i = 0; i < len; i++) {
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	return (char *)out;
}

/* header.payload.sig from raw JSON header/payload and a literal sig. */
static char *
craft(const char *header, const char *payload, const char *sig)
{
	char *h = b64url(header, strlen(header));
	char *b = b64url(payload, strlen(payload));
	size_t n = strlen(h) + strlen(b) + (sig ? strlen(sig) : 0) + 3;
	char *tok = cm_xmalloc(n);

	snprintf(tok, n, "%s.%s%s%s", h, b, sig ? "." : "", sig ? sig : "");
	free(h);
	free(b);
	return tok;
}

/* HMAC-SHA256 with an arbitrary key (any length), as an attacker would
   compute it: libjwt itself, bypassing cm_jwt_sign's key rules. */
static char *
hs256_raw_n(const char *header, size_t header_len, const char *claims,
	    const char *key)
{
	char *h = b64url(header, header_len);
	char *b = b64url(claims, strlen(claims));
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	size_t n = strlen(h) + strlen(b) + 2;
	char *input = cm_xmalloc(n), *sig, *tok;

	snprintf(input, n, "%s.%s", h, b);
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, (int)strlen(key),
				   (const unsigned char *)input, strlen(input),
				   mac, &maclen));
	sig = b64url((const char *)mac, maclen);
	n = strlen(input) + strlen(sig) + 2;
	tok = cm_xmalloc(n);
	snprintf(tok, n, "%s.%s", input, sig);
	free(input);
	free(sig);
	free(h);
	free(b);
	return tok;
}

static char *
hs256_raw(const char *header, const char *claims, const char *key)
{
	return hs256_raw_n(header, strlen(header), claims, key);
}

static char *
user_claims_text(void)
{
	char *s = cm_xmalloc(256);

	snprintf(s, 256,
		 "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u-1\","
		 "\"exp\":%lld}",
		 (long long)cm_now_s() + 300);
	return s;
}

/* ---- cm_auth_parse_alg / cm_auth_new ---- */

START_TEST(test_parse_alg_accepts_three_names_and_nothing_else)
{
	static const char *const bad[] = { "none",   "HS384", "hs256", "RS512",
					   "ES256 ", "",      NULL };
	enum cm_jwt_alg a = CM_JWT_RS256;
	size_t i;

	ck_assert_int_eq(cm_auth_parse_alg("HS256", &a), 0);
	ck_assert_int_eq(a, CM_JWT_HS256);
	ck_assert_int_eq(cm_auth_parse_alg("RS256", &a), 0);
	ck_assert_int_eq(a, CM_JWT_RS256);
	ck_assert_int_eq(cm_auth_parse_alg("ES256", &a), 0);
	ck_assert_int_eq(a, CM_JWT_ES256);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_int_eq(cm_auth_parse_alg(bad[i], &a), CM_EINVAL);
}
END_TEST

static void
assert_new_fails(enum cm_jwt_alg alg, const char *key, const char *iss,
		 int leeway, const char *why)
{
	struct cm_auth_config cfg = {
		.alg = alg,
		.key = (const unsigned char *)key,
		.key_len = key ? strlen(key) : 0,
		.issuer = iss,
		.audience = AUD,
		.leeway_s = leeway,
	};
	char errbuf[CM_ERRBUF_LEN] = "";

	ck_assert_ptr_null(cm_auth_new(&cfg, errbuf));
	ck_assert_msg(strstr(errbuf, why) != NULL,
		      "refused for \"%s\", expected \"%s\"", errbuf, why);
	if (key && strlen(key) > 8)
		ck_assert_ptr_null(strstr(errbuf, key));
}

/* A public key PEM of an unsuitable kind, made on the spot. */
static char *
weak_pub(bool rsa)
{
	EVP_PKEY *k = rsa ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024)
			  : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	char *pem;

	ck_assert_ptr_nonnull(k);
	pem = pem_of(k, true);
	EVP_PKEY_free(k);
	return pem;
}

START_TEST(test_new_refuses_bad_keys_and_settings)
{
	char *rsa1024 = weak_pub(true), *p384 = weak_pub(false);

	assert_new_fails(CM_JWT_HS256, "0123456789abcdef0123456789abcde", ISS,
			 0, "shorter than 32"); /* 31 bytes */
	assert_new_fails(CM_JWT_HS256, keys.rsa_pub, ISS, 0, "is a pem key");
	assert_new_fails(CM_JWT_HS256, NULL, ISS, 0, "key missing");
	assert_new_fails(CM_JWT_RS256, "not a pem key at all, just text", ISS,
			 0, "not a pem public key");
	assert_new_fails(CM_JWT_RS256, keys.rsa_priv, ISS, 0,
			 "not a pem public key");
	assert_new_fails(CM_JWT_RS256, keys.ec_pub, ISS, 0, "not an rsa key");
	assert_new_fails(CM_JWT_RS256, rsa1024, ISS, 0, ">= 2048 bits");
	assert_new_fails(CM_JWT_ES256, keys.rsa_pub, ISS, 0, "not a p-256");
	assert_new_fails(CM_JWT_ES256, p384, ISS, 0, "not a p-256");
	assert_new_fails((enum cm_jwt_alg)7, SECRET, ISS, 0, "algorithm");
	assert_new_fails(CM_JWT_HS256, SECRET, NULL, 0, "issuer");
	assert_new_fails(CM_JWT_HS256, SECRET, "", 0, "issuer");
	assert_new_fails(CM_JWT_HS256, SECRET, ISS, -1, "leeway");
	assert_new_fails(CM_JWT_HS256, SECRET, ISS, 301, "leeway");
	cm_auth_free(NULL);
	free(rsa1024);
	free(p384);
}
END_TEST

/* ---- accepted tokens ---- */

static void
assert_full_claims_read(enum cm_jwt_alg alg, const char *priv, const char *pub)
{
	struct cm_auth *auth = new_auth(alg, pub, 0);
	int64_t exp = cm_now_s() + 600;
	struct cm_principal p;
	char *tok;

	tok = sign(alg, priv,
		   "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u-42\","
		   "\"tenant_id\":\"" TENANT "\",\"roles\":[\"admin\","
		   "\"editor\"],\"jti\":\"j-1\",\"exp\":%lld,\"iat\":%lld,"
		   "\"nbf\":%lld}",
		   (long long)exp, (long long)cm_now_s(),
		   (long long)cm_now_s());
	assert_accepted(auth, tok, &p);
	ck_assert_str_eq(p.sub, "u-42");
	ck_assert_str_eq(p.tenant_id, TENANT);
	ck_assert_int_eq(p.nroles, 2);
	ck_assert_str_eq(p.roles[0], "admin");
	ck_assert_str_eq(p.roles[1], "editor");
	ck_assert_str_eq(p.jti, "j-1");
	ck_assert_int_eq(p.exp, exp);
	ck_assert(!p.is_service);
	ck_assert(!p.is_api_key);
	ck_assert(cm_principal_has_role(&p, "editor"));
	ck_assert(!cm_principal_has_role(&p, "owner"));
	ck_assert(!cm_principal_has_role(NULL, "admin"));
	free(tok);
	cm_auth_free(auth);
}

START_TEST(test_hs256_token_is_accepted_and_claims_read)
{
	assert_full_claims_read(CM_JWT_HS256, SECRET, SECRET);
}
END_TEST

START_TEST(test_rs256_token_is_accepted_and_claims_read)
{
	assert_full_claims_read(CM_JWT_RS256, keys.rsa_priv, keys.rsa_pub);
}
END_TEST

START_TEST(test_es256_token_is_accepted_and_claims_read)
{
	assert_full_claims_read(CM_JWT_ES256, keys.ec_priv, keys.ec_pub);
}
END_TEST

START_TEST(test_minimal_token_leaves_optional_fields_empty)
{
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	struct cm_principal p;
	char *tok = user_token(CM_JWT_HS256, SECRET, "");

	assert_accepted(auth, tok, &p);
	ck_assert_str_eq(p.sub, "u-1");
	ck_assert_str_eq(p.tenant_id, "");
	ck_assert_str_eq(p.jti, "");
	ck_assert_int_eq(p.nroles, 0);
	free(tok);
	cm_auth_free(auth);
}
END_TEST

/* ---- algorithm attacks ---- */

START_TEST(test_alg_none_is_refused_with_and_without_signature)
{
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	char *claims = user_claims_text();
	char *good = user_token(CM_JWT_HS256, SECRET, "");
	char *t1 = craft("{\"alg\":\"none\"}", claims, "");
	char *t2 = craft("{\"alg\":\"none\"}", claims, NULL);
	char *t3 = craft("{\"alg\":\"none\"}", claims, strrchr(good, '.') + 1);
	char *t4 = craft("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, "AAAA");

	ck_assert(strncmp(t1, "eyJhbGciOiJub25lIn0.", 20) == 0);
	assert_refused(auth, t1, "part 3");
	assert_refused(auth, t2, "fewer than 3");
	assert_refused(auth, t3, "alg is not");
	assert_refused(auth, t4, "alg is not");
	free(claims);
	free(good);
	free(t1);
	free(t2);
	free(t3);
	free(t4);
	cm_auth_free(auth);
}
END_TEST

START_TEST(test_hs256_token_macd_with_public_key_is_refused_under_rs256)
{
	struct cm_auth *auth = new_auth(CM_JWT_RS256, keys.rsa_pub, 0);
	char *claims = user_claims_text();
	char *tok = hs256_raw("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims,
			      keys.rsa_pub);
	jwt_t *jwt = NULL;

	/* The forgery is real: bare libjwt 1.10 accepts it with the public
	   key, which is why the header is checked before jwt_decode. */
	ck_assert_int_eq(jwt_decode(&jwt, tok,
				    (const unsigned char *)keys.rsa_pub,
				    (int)strlen(keys.rsa_pub)),
			 0);
	jwt_free(jwt);
	assert_refused(auth, tok, "alg is not the configured RS256");
	free(tok);
	/* A header naming RS256 twice over HS256 must not slip through
	   because two JSON parsers disagree on duplicate members. */
	tok = hs256_raw("{\"alg\":\"RS256\",\"alg\":\"HS256\"}", claims,
			keys.rsa_pub);
	assert_refused(auth, tok, "duplicate");
	free(tok);
	tok = hs256_raw("{\"alg\":\"HS256\",\"alg\":\"RS256\"}", claims,
			keys.rsa_pub);
	assert_refused(auth, tok, "duplicate");
	free(tok);
	free(claims);
	cm_auth_free(auth);
}
END_TEST

START_TEST(test_rs256_token_is_refused_under_hs256)
{
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	char *tok = user_token(CM_JWT_RS256, keys.rsa_priv, "");

	assert_refused(auth, tok, "alg is not");
	free(tok);
	cm_auth_free(auth);
}
END_TEST

START_TEST(test_es256_token_is_refused_under_rs256_and_the_reverse)
{
	struct cm_auth *rs = new_auth(CM_JWT_RS256, keys.rsa_pub, 0);
	struct cm_auth *es = new_auth(CM_JWT_ES256, keys.ec_pub, 0);
	char *es_tok = user_token(CM_JWT_ES256, keys.ec_priv, "");
	char *rs_tok = user_token(CM_JWT_RS256, keys.rsa_priv, "");

	assert_refused(rs, es_tok, "alg is not");
	assert_refused(es, rs_tok, "alg is not");
	free(es_tok);
	free(rs_tok);
	cm_auth_free(rs);
	cm_auth_free(es);
}
END_TEST

START_TEST(test_hs384_token_is_refused_under_hs256)
{
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	char *claims = user_claims_text();
	jwt_t *jwt = NULL;
	char *tok;

	ck_assert_int_eq(jwt_new(&jwt), 0);
	ck_assert_int_eq(jwt_add_grants_json(jwt, claims), 0);
	ck_assert_int_eq(jwt_set_alg(jwt, JWT_ALG_HS384,
				     (const unsigned char *)SECRET,
				     (int)strlen(SECRET)),
			 0);
	tok = jwt_encode_str(jwt);
	ck_assert_ptr_nonnull(tok);
	assert_refused(auth, tok, "alg is not");
	free(tok);
	jwt_free(jwt);
	free(claims);
	cm_auth_free(auth);
}
END_TEST

START_TEST(test_header_with_crit_or_foreign_typ_is_refused)
{
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	char *claims = user_claims_text();
	struct cm_principal p;
	char *tok;

	tok = hs256_raw("{\"alg\":\"HS256\",\"crit\":[\"x\"],\"x\":1}", claims,
			SECRET);
	assert_refused(auth, tok, "crit");
	free(tok);
	tok = hs256_raw("{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", claims,
			SECRET);
	assert_refused(auth, tok, "typ");
	free(tok);
	tok = hs256_raw("{\"alg\":\"HS256\",\"a\":1,\"b\":1,\"c\":1,\"d\":1,"
			"\"e\":1,\"f\":1,\"g\":1,\"h\":1,\"i\":1,\"j\":1,"
			"\"k\":1,\"l\":1,\"m\":1,\"n\":1,\"o\":1,\"p\":1}",
			claims, SECRET);
	assert_refused(auth, tok, "too many members");
	free(tok);
	tok = hs256_raw("[\"HS256\"]", claims, SECRET);
	assert_refused(auth, tok, "not a json object");
	free(tok);
	tok = hs256_raw("{\"alg\":\"HS256\"", claims, SECRET);
	assert_refused(auth, tok, "header is not json");
	free(tok);
	tok = hs256_raw("{\"alg\":\"HS256\"} {}", claims, SECRET);
	assert_refused(auth, tok, "header is not json");
	free(tok);
	tok = hs256_raw_n("{\"alg\":\"HS256\"}\0{}", 18, claims, SECRET);
	assert_refused(auth, tok, "header is not base64url text");
	free(tok);
	/* The same construction with a plain header is accepted, so the
	   refusals above are about the header. */
	tok = hs256_raw("{\"alg\":\"HS256\"}", claims, SECRET);
	assert_accepted(auth, tok, &p);
	free(tok);
	free(claims);
	cm_auth_free(auth);
}
END_TEST

/* ---- signatures ---- */

START_TEST(test_header_in_the_url_alphabet_is_decoded)
{
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	char *claims = user_claims_text();
	struct cm_principal p;
	char *tok, *dot;

	/* "???" encodes as "Pz8_" and ">>>" as "Pj4-" in base64url */
	tok = hs256_raw("{\"alg\":\"HS256\",\"kid\":\"\?\?\?\?\?\?>>>>>>\"}",
			claims, SECRET);
	dot = strchr(tok, '.');
	ck_assert_ptr_nonnull(memchr(tok, '_', (size_t)(dot - tok)));
	ck_assert_ptr_nonnull(memchr(tok, '-', (size_t)(dot - tok)));
	assert_accepted(auth, tok, &p);
	ck_assert_str_eq(p.sub, "u-1");
	free(tok);
	free(claims);
	cm_auth_free(auth);
}
END_TEST

START_TEST(test_wrong_key_is_refused)
{
	struct cm_auth *hs = new_auth(CM_JWT_HS256, SECRET, 0);
	struct cm_auth *rs = new_auth(CM_JWT_RS256, keys.rsa_pub, 0);
	struct cm_auth *es = new_auth(CM_JWT_ES256, keys.ec_pub, 0);
	char *t1 = user_token(CM_JWT_HS256, SECRET "-other", "");
	char *t2 = user_token(CM_JWT_RS256, keys.rsa2_priv, "");
	char *t3 = user_token(CM_JWT_ES256, keys.ec2_priv, "");

	assert_refused(hs, t1, "signature");
	assert_refused(rs, t2, "signature");
	assert_refused(es, t3, "signature");
	free(t1);
	free(t2);
	free(t3);
	cm_auth_free(hs);
	cm_auth_free(rs);
	cm_auth_free(es);
}
END_TEST

START_TEST(test_tampered_payload_or_signature_is_refused)
{
	struct cm_auth *auth = new_auth(CM_JWT_RS256, keys.rsa_pub, 0);
	char *good = user_token(CM_JWT_RS256, keys.rsa_priv,
				",\"roles\":[\"viewer\"]");
	char *evil_body, *evil, *p1, *p2;
	char claims[512];
	size_t n;

	snprintf(claims, sizeof(claims),
		 "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u-1\","
		 "\"exp\":%lld,\"roles\":[\"admin\"]}",
		 (long long)cm_now_s() + 300);
	evil_body = b64url(claims, strlen(claims));
	p1 = strchr(good, '.');
	p2 = strrchr(good, '.');
	n = strlen(good) + strlen(evil_body) + 1;
	evil = cm_xmalloc(n);
	snprintf(evil, n, "%.*s.%s%s", (int)(p1 - good), good, evil_body, p2);
	assert_refused(auth, evil, "signature");
	/* flip one signature character */
	n = strlen(good);
	good[n - 3] = good[n - 3] == 'A' ? 'B' : 'A';
	assert_refused(auth, good, "signature");
	free(evil_body);
	free(evil);
	free(good);
	cm_auth_free(auth);
}
END_TEST

/* ---- shape ---- */

START_TEST(test_malformed_tokens_are_refused)
{
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	char *good = user_token(CM_JWT_HS256, SECRET, "");
	char *p2 = strrchr(good, '.');
	char buf[4096];

	assert_refused(auth, NULL, "no token");
	assert_refused(auth, "", "fewer than 3");
	assert_refused(auth, "abc.def", "fewer than 3");
	assert_refused(auth, "...", "more than 3");
	snprintf(buf, sizeof(buf), "%.*s", (int)(p2 - good), good);
	assert_refused(auth, buf, "fewer than 3");
	snprintf(buf, sizeof(buf), "%s.AAAA", good);
	assert_refused(auth, buf, "more than 3");
	snprintf(buf, sizeof(buf), "%s=", good);
	assert_refused(auth, buf, "part 3"); /* padding */
	/* a character libb64 would skip over */
	snprintf(buf, sizeof(buf), "%.*s!%s", (int)(p2 - good + 1), good,
		 p2 + 1);
	assert_refused(auth, buf, "part 3");
	snprintf(buf, sizeof(buf), "%s", good);
	buf[3] = '*';
	assert_refused(auth, buf, "part 1");
	assert_refused(auth, "A.eyJ9.AAAA", "header is not base64url");
	assert_refused(auth, "!!!!.@@@@.####", "part 1");
	free(good);
	cm_auth_free(auth);
}
END_TEST

START_TEST(test_token_over_8_kib_is_refused)
{
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	char pad[7000], extra[7100];
	char *tok;

	memset(pad, 'x', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	snprintf(extra, sizeof(extra), ",\"pad\":\"%s\"", pad);
	tok = user_token(CM_JWT_HS256, SECRET, extra);
	ck_assert_uint_gt(strlen(tok), 8192);
	assert_refused(auth, tok, "over 8192");
	free(tok);
	cm_auth_free(auth);
}
END_TEST

/* ---- time ---- */

START_TEST(test_expired_token_is_refused)
{
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	char *tok = sign(CM_JWT_HS256, SECRET,
			 "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\","
			 "\"sub\":\"u\",\"exp\":%lld}",
			 (long long)cm_now_s() - 10);

	assert_refused(auth, tok, "expired");
	free(tok);
	cm_auth_free(auth);
}
END_TEST

START_TEST(test_missing_or_non_integer_exp_is_refused)
{
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	static const char *const exps[] = { "\"9999999999\"", "4102444800.5",
					    "-1", "1e300", "null" };
	char *tok;
	size_t i;

	tok = sign(CM_JWT_HS256, SECRET,
		   "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u\"}");
	assert_refused(auth, tok, "exp missing");
	free(tok);
	for (i = 0; i < sizeof(exps) / sizeof(exps[0]); i++) {
		tok = sign(CM_JWT_HS256, SECRET,
			   "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\","
			   "\"sub\":\"u\",\"exp\":%s}",
			   exps[i]);
		assert_refused(auth, tok, "exp missing");
		free(tok);
	}
	cm_auth_free(auth);
}
END_TEST

START_TEST(test_nbf_in_the_future_is_refused)
{
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	char extra[64];
	char *tok;

	snprintf(extra, sizeof(extra), ",\"nbf\":%lld",
		 (long long)cm_now_s() + 60);
	tok = user_token(CM_JWT_HS256, SECRET, extra);
	assert_refused(auth, tok, "(nbf)");
	free(tok);
	tok = user_token(CM_JWT_HS256, SECRET, ",\"nbf\":\"soon\"");
	assert_refused(auth, tok, "nbf not an integer");
	free(tok);
	cm_auth_free(auth);
}
END_TEST

START_TEST(test_iat_in_the_future_is_refused)
{
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	char extra[64];
	char *tok;

	snprintf(extra, sizeof(extra), ",\"iat\":%lld",
		 (long long)cm_now_s() + 60);
	tok = user_token(CM_JWT_HS256, SECRET, extra);
	assert_refused(auth, tok, "issued in the future");
	free(tok);
	tok = user_token(CM_JWT_HS256, SECRET, ",\"iat\":1.25");
	assert_refused(auth, tok, "iat not an integer");
	free(tok);
	cm_auth_free(auth);
}
END_TEST

START_TEST(test_leeway_is_honoured_for_exp_nbf_and_iat)
{
	struct cm_auth *strict = new_auth(CM_JWT_HS256, SECRET, 0);
	struct cm_auth *lax = new_auth(CM_JWT_HS256, SECRET, 30);
	int64_t now = cm_now_s();
	struct cm_principal p;
	char *late, *early;

	late = sign(CM_JWT_HS256, SECRET,
		    "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u\","
		    "\"exp\":%lld}",
		    (long long)now - 10);
	early = sign(CM_JWT_HS256, SECRET,
		     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u\","
		     "\"exp\":%lld,\"nbf\":%lld,\"iat\":%lld}",
		     (long long)now + 300, (long long)now + 10,
		     (long long)now + 10);
	assert_refused(strict, late, "expired");
	assert_refused(strict, early, "(nbf)");
	assert_accepted(lax, late, &p);
	assert_accepted(lax, early, &p);
	free(late);
	free(early);
	cm_auth_free(strict);
	cm_auth_free(lax);
}
END_TEST

/* ---- iss / aud ---- */

START_TEST(test_wrong_or_missing_issuer_is_refused)
{
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	long long exp = (long long)cm_now_s() + 300;
	char *tok;

	tok = sign(CM_JWT_HS256, SECRET,
		   "{\"iss\":\"https://evil.test\",\"aud\":\"" AUD "\","
		   "\"sub\":\"u\",\"exp\":%lld}",
		   exp);
	assert_refused(auth, tok, "iss");
	free(tok);
	tok = sign(CM_JWT_HS256, SECRET,
		   "{\"aud\":\"" AUD "\",\"sub\":\"u\",\"exp\":%lld}", exp);
	assert_refused(auth, tok, "iss");
	free(tok);
	tok = sign(CM_JWT_HS256, SECRET,
		   "{\"iss\":[\"" ISS "\"],\"aud\":\"" AUD "\","
		   "\"sub\":\"u\",\"exp\":%lld}",
		   exp);
	assert_refused(auth, tok, "iss");
	free(tok);
	cm_auth_free(auth);
}
END_TEST

static char *
aud_token(const char *aud_json)
{
	return sign(CM_JWT_HS256, SECRET,
		    "{\"iss\":\"" ISS "\",\"aud\":%s,\"sub\":\"u\","
		    "\"exp\":%lld}",
		    aud_json, (long long)cm_now_s() + 300);
}

START_TEST(test_wrong_or_missing_audience_is_refused)
{
	static const char *const bad[] = { "\"other\"", "\"bizosaas2\"",
					   "[]",	"[\"other\"]",
					   "42",	"[\"" AUD "\",7]" };
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	char *tok;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tok = aud_token(bad[i]);
		assert_refused(auth, tok, "aud");
		free(tok);
	}
	tok = sign(CM_JWT_HS256, SECRET,
		   "{\"iss\":\"" ISS "\",\"sub\":\"u\",\"exp\":%lld}",
		   (long long)cm_now_s() + 300);
	assert_refused(auth, tok, "aud");
	free(tok);
	cm_auth_free(auth);
}
END_TEST

START_TEST(test_audience_array_containing_ours_is_accepted)
{
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	struct cm_principal p;
	char *tok = aud_token("[\"other\",\"" AUD "\"]");

	assert_accepted(auth, tok, &p);
	ck_assert_str_eq(p.sub, "u");
	free(tok);
	cm_auth_free(auth);
}
END_TEST

/* ---- other claims ---- */

START_TEST(test_bad_roles_are_refused)
{
	static const struct {
		const char *extra, *why;
	} bad[] = {
		{ ",\"roles\":\"admin\"", "not an array" },
		{ ",\"roles\":{\"admin\":true}", "not an array" },
		{ ",\"roles\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\","
		  "\"i\"]",
		  "more than 8 roles" },
		{ ",\"roles\":[\"a\",3]", "role is not" },
		{ ",\"roles\":[\"\"]", "role is not" },
		{ ",\"roles\":[\"0123456789abcdef0123456789abcdef\"]",
		  "role is not" },
	};
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	struct cm_principal p;
	char *tok;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tok = user_token(CM_JWT_HS256, SECRET, bad[i].extra);
		assert_refused(auth, tok, bad[i].why);
		free(tok);
	}
	/* the limits themselves are fine: 8 roles, 31 bytes */
	tok = user_token(CM_JWT_HS256, SECRET,
			 ",\"roles\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\","
			 "\"g\",\"0123456789abcdef0123456789abcde\"]");
	assert_accepted(auth, tok, &p);
	ck_assert_int_eq(p.nroles, 8);
	ck_assert_str_eq(p.roles[7], "0123456789abcdef0123456789abcde");
	free(tok);
	cm_auth_free(auth);
}
END_TEST

START_TEST(test_bad_tenant_id_is_refused)
{
	static const char *const bad[] = {
		",\"tenant_id\":\"acme\"", ",\"tenant_id\":42",
		",\"tenant_id\":null",	   ",\"tenant_id\":\"" TENANT "0\"",
		",\"tenant_id\":\"\"",
	};
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	char *tok;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tok = user_token(CM_JWT_HS256, SECRET, bad[i]);
		assert_refused(auth, tok, "tenant_id");
		free(tok);
	}
	cm_auth_free(auth);
}
END_TEST

START_TEST(test_missing_or_bad_sub_and_jti_are_refused)
{
	static const char *const subs[] = {
		"", "\"sub\":\"\",", "\"sub\":7,", "\"sub\":\"a\\nb\",",
		"\"sub\":\"0123456789abcdef0123456789"
		"abcdef0123456789abcdef0123456789"
		"abcdef\","
	};
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	char *tok;
	size_t i;

	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		tok = sign(CM_JWT_HS256, SECRET,
			   "{%s\"iss\":\"" ISS "\",\"aud\":\"" AUD "\","
			   "\"exp\":%lld}",
			   subs[i], (long long)cm_now_s() + 300);
		assert_refused(auth, tok, "sub");
		free(tok);
	}
	tok = user_token(CM_JWT_HS256, SECRET, ",\"jti\":12");
	assert_refused(auth, tok, "jti");
	free(tok);
	cm_auth_free(auth);
}
END_TEST

struct revoke_ctx {
	int calls;
	char last[64];
};

static bool
revoke_j2(const char *jti, void *arg)
{
	struct revoke_ctx *ctx = arg;

	ctx->calls++;
	cm_strlcpy(ctx->last, jti, sizeof(ctx->last));
	return strcmp(jti, "j-2") == 0;
}

START_TEST(test_revocation_hook_refuses_a_revoked_jti)
{
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SECRET, 0);
	struct revoke_ctx ctx = { 0, "" };
	struct cm_principal p;
	char *ok = user_token(CM_JWT_HS256, SECRET, ",\"jti\":\"j-1\"");
	char *revoked = user_token(CM_JWT_HS256, SECRET, ",\"jti\":\"j-2\"");
	char *nojti = user_token(CM_JWT_HS256, SECRET, "");

	cm_auth_set_revocation(auth, revoke_j2, &ctx);
	assert_accepted(auth, ok, &p);
	ck_assert_int_eq(ctx.calls, 1);
	ck_assert_str_eq(ctx.last, "j-1");
	assert_refused(auth, revoked, "revoked");
	ck_assert_int_eq(ctx.calls, 2);
	ck_assert_str_eq(ctx.last, "j-2");
	assert_accepted(auth, nojti, &p);
	ck_assert_int_eq(ctx.calls, 2);
	free(ok);
	free(revoked);
	free(nojti);
	cm_auth_free(auth);
}
END_TEST

START_TEST(test_service_token_is_refused_as_a_user_token)
{
	struct cm_auth *auth = new_auth(CM_JWT_HS256, SVC_SECRET, 0);
	char errbuf[CM_ERRBUF_LEN] = "";
	char *tok = NULL, *svc = NULL;

	/* user-shaped in every way but typ */
	tok = user_token(CM_JWT_HS256, SVC_SECRET, ",\"typ\":\"service\"");
	assert_refused(auth, tok, "service token is not a user");
	free(tok);
	tok = user_token(CM_JWT_HS256, SVC_SECRET, ",\"typ\":1");
	assert_refused(auth, tok, "service token is not a user");
	ck_assert_int_eq(cm_service_token_mint(SVC_SECRET, "crm", "brain", 30,
					       &svc, errbuf),
			 0);
	assert_refused(auth, svc, "iss");
	free(tok);
	free(svc);
	cm_auth_free(auth);
}
END_TEST

/* ---- cm_jwt_sign ---- */

START_TEST(test_sign_refuses_bad_claims_and_keys)
{
	char errbuf[CM_ERRBUF_LEN];
	char *tok = (char *)1;
	const unsigned char *s = (const unsigned char *)SECRET;

	ck_assert_int_eq(
		cm_jwt_sign(CM_JWT_HS256, s, strlen(SECRET), "{", &tok, errbuf),
		CM_EINVAL);
	ck_assert_ptr_null(tok);
	ck_assert_int_eq(cm_jwt_sign(CM_JWT_HS256, s, strlen(SECRET), "[1]",
				     &tok, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(cm_jwt_sign(CM_JWT_HS256, s, strlen(SECRET), NULL,
				     &tok, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(cm_jwt_sign(CM_JWT_HS256, s, 31, "{}", &tok, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(cm_jwt_sign((enum cm_jwt_alg)9, s, strlen(SECRET),
				     "{}", &tok, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(cm_jwt_sign(CM_JWT_RS256, s, strlen(SECRET), "{}",
				     &tok, errbuf),
			 CM_EINVAL);
	ck_assert_ptr_null(tok);
	ck_assert_int_eq(cm_jwt_sign(CM_JWT_ES256,
				     (const unsigned char *)keys.rsa_priv,
				     strlen(keys.rsa_priv), "{}", &tok, errbuf),
			 CM_EINVAL);
	ck_assert_ptr_null(tok);
}
END_TEST

/* ---- service tokens ---- */

START_TEST(test_service_token_round_trip)
{
	struct cm_principal p;
	char errbuf[CM_ERRBUF_LEN] = "";
	char *tok = NULL, *tok2 = NULL;
	int64_t now = cm_now_s();

	ck_assert_int_eq(cm_service_token_mint(SVC_SECRET, "event-bus", "crm",
					       30, &tok, errbuf),
			 0);
	ck_assert_int_eq(
		cm_service_token_verify(SVC_SECRET, "crm", tok, &p, errbuf), 0);
	ck_assert_str_eq(p.sub, "event-bus");
	ck_assert(p.is_service);
	ck_assert(cm_is_uuid(p.jti));
	ck_assert_int_ge(p.exp, now + 30);
	ck_assert_int_le(p.exp, cm_now_s() + 30);
	ck_assert_str_eq(p.tenant_id, "");
	ck_assert_int_eq(p.nroles, 0);
	ck_assert_int_eq(cm_service_token_mint(SVC_SECRET, "event-bus", "crm",
					       30, &tok2, errbuf),
			 0);
	ck_assert_str_ne(tok, tok2); /* fresh jti */
	free(tok);
	free(tok2);
}
END_TEST

#define assert_svc_refused(secret, self, tok, why) \
	assert_svc_refused_at(secret, self, tok, why, __LINE__)
static void
assert_svc_refused_at(const char *secret, const char *self, const char *tok,
		      const char *why, int line)
{
	struct cm_principal p;
	char errbuf[CM_ERRBUF_LEN] = "";

	memset(&p, 0x5a, sizeof(p));
	ck_assert_int_eq(cm_service_token_verify(secret, self, tok, &p, errbuf),
			 CM_EACCES);
	ck_assert_msg(strstr(errbuf, why) != NULL,
		      "line %d: refused for \"%s\", expected \"%s\"", line,
		      errbuf, why);
	ck_assert_str_eq(p.sub, "");
	ck_assert(!p.is_service);
}

START_TEST(test_service_token_for_another_service_is_refused)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	char *tok = NULL;

	ck_assert_int_eq(cm_service_token_mint(SVC_SECRET, "brain", "crm", 30,
					       &tok, errbuf),
			 0);
	assert_svc_refused(SVC_SECRET, "cms", tok, "another service");
	assert_svc_refused(SVC_SECRET, "brain", tok, "another service");
	free(tok);
}
END_TEST

/* A service token hand-made with cm_jwt_sign from a claims template. */
#define svc_token(fmt, iat, exp) \
	sign(CM_JWT_HS256, SVC_SECRET, fmt, (long long)(iat), (long long)(exp))

#define SVC_CLAIMS(rest)                                             \
	"{\"iss\":\"brain\",\"aud\":\"crm\",\"sub\":\"brain\"," rest \
	"\"iat\":%lld,\"exp\":%lld}"

START_TEST(test_expired_service_token_is_refused)
{
	long long now = (long long)cm_now_s();
	char *tok = svc_token(SVC_CLAIMS("\"typ\":\"service\","), now - 100,
			      now - 40);

	assert_svc_refused(SVC_SECRET, "crm", tok, "expired");
	free(tok);
}
END_TEST

START_TEST(test_service_token_ttl_over_60_is_refused_at_mint_and_verify)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	long long now = (long long)cm_now_s();
	struct cm_principal p;
	char *tok = NULL;

	ck_assert_int_eq(cm_service_token_mint(SVC_SECRET, "brain", "crm", 61,
					       &tok, errbuf),
			 CM_EINVAL);
	ck_assert_ptr_null(tok);
	ck_assert_int_eq(cm_service_token_mint(SVC_SECRET, "brain", "crm", 0,
					       &tok, errbuf),
			 CM_EINVAL);
	tok = svc_token(SVC_CLAIMS("\"typ\":\"service\","), now, now + 3600);
	assert_svc_refused(SVC_SECRET, "crm", tok, "lifetime");
	free(tok);
	tok = svc_token(SVC_CLAIMS("\"typ\":\"service\","), now, now);
	assert_svc_refused(SVC_SECRET, "crm", tok, "lifetime");
	free(tok);
	/* exactly 60 s is allowed: the construction is otherwise sound */
	tok = svc_token(SVC_CLAIMS("\"typ\":\"service\","), now, now + 60);
	ck_assert_int_eq(
		cm_service_token_verify(SVC_SECRET, "crm", tok, &p, errbuf), 0);
	ck_assert_str_eq(p.sub, "brain");
	free(tok);
}
END_TEST

START_TEST(test_service_token_with_bad_claims_is_refused)
{
	long long now = (long long)cm_now_s();
	char *tok;

	tok = svc_token("{\"iss\":\"Evil!\",\"aud\":\"crm\",\"typ\":"
			"\"service\",\"iat\":%lld,\"exp\":%lld}",
			now, now + 30);
	assert_svc_refused(SVC_SECRET, "crm", tok, "iss is not a service name");
	free(tok);
	tok = svc_token(SVC_CLAIMS("\"typ\":\"Service\","), now, now + 30);
	assert_svc_refused(SVC_SECRET, "crm", tok, "not a service token");
	free(tok);
	tok = svc_token("{\"iss\":\"brain\",\"aud\":\"crm\",\"sub\":\"crm\","
			"\"typ\":\"service\",\"iat\":%lld,\"exp\":%lld}",
			now, now + 30);
	assert_svc_refused(SVC_SECRET, "crm", tok, "sub is not");
	free(tok);
	tok = svc_token("{\"iss\":\"brain\",\"aud\":[\"crm\"],\"typ\":"
			"\"service\",\"iat\":%lld,\"exp\":%lld}",
			now, now + 30);
	assert_svc_refused(SVC_SECRET, "crm", tok, "another service");
	free(tok);
	tok = svc_token(SVC_CLAIMS("\"typ\":\"service\","), now + 120,
			now + 150);
	assert_svc_refused(SVC_SECRET, "crm", tok, "issued in the future");
	free(tok);
	tok = sign(CM_JWT_HS256, SVC_SECRET,
		   "{\"iss\":\"brain\",\"aud\":\"crm\",\"typ\":\"service\","
		   "\"exp\":%lld}",
		   now + 30);
	assert_svc_refused(SVC_SECRET, "crm", tok, "exp or iat"); /* no iat */
	free(tok);
}
END_TEST

START_TEST(test_service_token_with_wrong_secret_or_alg_is_refused)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	long long now = (long long)cm_now_s();
	char claims[256];
	char *tok = NULL;

	ck_assert_int_eq(cm_service_token_mint(SVC_SECRET "x", "brain", "crm",
					       30, &tok, errbuf),
			 0);
	assert_svc_refused(SVC_SECRET, "crm", tok, "signature");
	free(tok);
	snprintf(claims, sizeof(claims), SVC_CLAIMS("\"typ\":\"service\","),
		 now, now + 30);
	tok = hs256_raw("{\"alg\":\"none\"}", claims, SVC_SECRET);
	assert_svc_refused(SVC_SECRET, "crm", tok, "alg is not");
	free(tok);
	tok = sign(CM_JWT_RS256, keys.rsa_priv, "%s", claims);
	assert_svc_refused(SVC_SECRET, "crm", tok, "alg is not");
	free(tok);
}
END_TEST

START_TEST(test_user_token_is_refused_as_a_service_token)
{
	char *tok = sign(CM_JWT_HS256, SVC_SECRET,
			 "{\"iss\":\"brain\",\"aud\":\"crm\",\"sub\":\"u-1\","
			 "\"iat\":%lld,\"exp\":%lld}",
			 (long long)cm_now_s(), (long long)cm_now_s() + 30);

	assert_svc_refused(SVC_SECRET, "crm", tok, "not a service token");
	free(tok);
}
END_TEST

START_TEST(test_short_secret_or_bad_names_are_refused_for_service_tokens)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	char *tok = NULL;

	ck_assert_int_eq(cm_service_token_mint("short-secret", "brain", "crm",
					       30, &tok, errbuf),
			 CM_EINVAL);
	ck_assert_ptr_null(tok);
	ck_assert_int_eq(
		cm_service_token_mint(NULL, "brain", "crm", 30, &tok, errbuf),
		CM_EINVAL);
	ck_assert_int_eq(cm_service_token_mint(SVC_SECRET, "Brain", "crm", 30,
					       &tok, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(cm_service_token_mint(SVC_SECRET, "brain", "", 30,
					       &tok, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(
		cm_service_token_mint(SVC_SECRET, "brain",
				      "a-service-name-of-thirty-one-ch", 30,
				      &tok, errbuf),
		0);
	free(tok);
	tok = NULL;
	ck_assert_int_eq(
		cm_service_token_mint(SVC_SECRET, "brain",
				      "a-service-name-of-thirty-two-chr", 30,
				      &tok, errbuf),
		CM_EINVAL);
	ck_assert_int_eq(cm_service_token_mint(SVC_SECRET, "brain", "crm", 30,
					       &tok, errbuf),
			 0);
	assert_svc_refused("short-secret", "crm", tok, "shorter than 32");
	assert_svc_refused(SVC_SECRET, "CRM", tok, "own service name");
	assert_svc_refused(SVC_SECRET, "crm", NULL, "no token");
	free(tok);
}
END_TEST

/* The per-thread cache of verified tokens (auth.c) must never accept what
   a full verification would refuse: another key, audience or service, a
   changed byte, a token past exp, or a jti revoked since it was cached. */
START_TEST(test_cached_token_is_only_accepted_where_it_was_verified)
{
	struct cm_auth *a = new_auth(CM_JWT_HS256, SECRET, 0);
	struct cm_auth *other_key = new_auth(CM_JWT_HS256, SECRET "-2", 0);
	struct cm_auth_config cfg = {
		.alg = CM_JWT_HS256,
		.key = (const unsigned char *)SECRET,
		.key_len = strlen(SECRET),
		.issuer = ISS,
		.audience = "another-audience",
	};
	char errbuf[CM_ERRBUF_LEN] = "";
	struct cm_auth *other_aud = cm_auth_new(&cfg, errbuf);
	char *tok = user_token(CM_JWT_HS256, SECRET, ",\"jti\":\"j-2\"");
	char *svc = NULL, *bad, *user;
	struct cm_auth *svc_auth;
	struct revoke_ctx ctx = { 0, "" };
	struct cm_principal p, q;

	ck_assert_ptr_nonnull(other_aud);
	assert_accepted(a, tok, &p);
	assert_accepted(a, tok, &q);
	ck_assert_mem_eq(&p, &q, sizeof(p));
	ck_assert_str_eq(q.sub, "u-1");
	assert_refused(other_key, tok, "signature");
	assert_refused(other_aud, tok, "audience");
	bad = cm_xstrdup(tok);
	bad[strlen(bad) - 2] = bad[strlen(bad) - 2] == 'A' ? 'B' : 'A';
	assert_refused(a, bad, "signature");
	cm_auth_set_revocation(a, revoke_j2, &ctx);
	assert_refused(a, tok, "revoked");
	ck_assert_int_eq(ctx.calls, 1);

	ck_assert_int_eq(cm_service_token_mint(SVC_SECRET, "brain", "crm", 30,
					       &svc, errbuf),
			 0);
	ck_assert_int_eq(
		cm_service_token_verify(SVC_SECRET, "crm", svc, &p, errbuf), 0);
	ck_assert_int_eq(
		cm_service_token_verify(SVC_SECRET, "crm", svc, &q, errbuf), 0);
	ck_assert_mem_eq(&p, &q, sizeof(p));
	assert_svc_refused(SVC_SECRET, "cms", svc, "another service");
	assert_svc_refused(SVC_SECRET "-2", "crm", svc, "signature");
	/* a token cached as one kind is not taken as the other */
	svc_auth = new_auth(CM_JWT_HS256, SVC_SECRET, 0);
	assert_refused(svc_auth, svc, "iss");
	user = user_token(CM_JWT_HS256, SVC_SECRET, "");
	assert_accepted(svc_auth, user, &p);
	assert_svc_refused(SVC_SECRET, "crm", user, "not a service token");
	cm_auth_free(svc_auth);
	free(user);
	free(svc);
	free(bad);
	free(tok);
	cm_auth_free(other_aud);
	cm_auth_free(other_key);
	cm_auth_free(a);
}
END_TEST

START_TEST(test_cached_token_is_refused_once_expired)
{
	struct cm_auth *a = new_auth(CM_JWT_HS256, SECRET, 0);
	int64_t exp = cm_now_s() + 1;
	struct cm_principal p;
	char *tok = sign(CM_JWT_HS256, SECRET,
			 "{\"iss\":\"" ISS "\",\"aud\":\"" AUD
			 "\",\"sub\":\"u-1\",\"exp\":%lld}",
			 (long long)exp);
	struct timespec ts = { 0, 50000000L };

	assert_accepted(a, tok, &p);
	assert_accepted(a, tok, &p);
	while (cm_now_s() <= exp)
		nanosleep(&ts, NULL);
	assert_refused(a, tok, "expired");
	free(tok);
	cm_auth_free(a);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("user");
	TCase *svc = tcase_create("service");

	tcase_add_unchecked_fixture(tc, keys_setup, keys_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_parse_alg_accepts_three_names_and_nothing_else);
	tcase_add_test(tc, test_new_refuses_bad_keys_and_settings);
	tcase_add_test(tc, test_hs256_token_is_accepted_and_claims_read);
	tcase_add_test(tc, test_rs256_token_is_accepted_and_claims_read);
	tcase_add_test(tc, test_es256_token_is_accepted_and_claims_read);
	tcase_add_test(tc, test_minimal_token_leaves_optional_fields_empty);
	tcase_add_test(tc, test_alg_none_is_refused_with_and_without_signature);
	tcase_add_test(
		tc,
		test_hs256_token_macd_with_public_key_is_refused_under_rs256);
	tcase_add_test(tc, test_rs256_token_is_refused_under_hs256);
	tcase_add_test(tc,
		       test_es256_token_is_refused_under_rs256_and_the_reverse);
	tcase_add_test(tc, test_hs384_token_is_refused_under_hs256);
	tcase_add_test(tc, test_header_with_crit_or_foreign_typ_is_refused);
	tcase_add_test(tc, test_header_in_the_url_alphabet_is_decoded);
	tcase_add_test(tc, test_wrong_key_is_refused);
	tcase_add_test(tc, test_tampered_payload_or_signature_is_refused);
	tcase_add_test(tc, test_malformed_tokens_are_refused);
	tcase_add_test(tc, test_token_over_8_kib_is_refused);
	tcase_add_test(tc, test_expired_token_is_refused);
	tcase_add_test(tc, test_missing_or_non_integer_exp_is_refused);
	tcase_add_test(tc, test_nbf_in_the_future_is_refused);
	tcase_add_test(tc, test_iat_in_the_future_is_refused);
	tcase_add_test(tc, test_leeway_is_honoured_for_exp_nbf_and_iat);
	tcase_add_test(tc, test_wrong_or_missing_issuer_is_refused);
	tcase_add_test(tc, test_wrong_or_missing_audience_is_refused);
	tcase_add_test(tc, test_audience_array_containing_ours_is_accepted);
	tcase_add_test(tc, test_bad_roles_are_refused);
	tcase_add_test(tc, test_bad_tenant_id_is_refused);
	tcase_add_test(tc, test_missing_or_bad_sub_and_jti_are_refused);
	tcase_add_test(tc, test_revocation_hook_refuses_a_revoked_jti);
	tcase_add_test(
		tc, test_cached_token_is_only_accepted_where_it_was_verified);
	tcase_add_test(tc, test_cached_token_is_refused_once_expired);
	tcase_add_test(tc, test_service_token_is_refused_as_a_user_token);
	tcase_add_test(tc, test_sign_refuses_bad_claims_and_keys);
	suite_add_tcase(s, tc);

	tcase_add_unchecked_fixture(svc, keys_setup, keys_teardown);
	tcase_set_timeout(svc, 30);
	tcase_add_test(svc, test_service_token_round_trip);
	tcase_add_test(svc, test_service_token_for_another_service_is_refused);
	tcase_add_test(svc, test_expired_service_token_is_refused);
	tcase_add_test(
		svc,
		test_service_token_ttl_over_60_is_refused_at_mint_and_verify);
	tcase_add_test(svc, test_service_token_with_bad_claims_is_refused);
	tcase_add_test(svc,
		       test_service_token_with_wrong_secret_or_alg_is_refused);
	tcase_add_test(svc, test_user_token_is_refused_as_a_service_token);
	tcase_add_test(
		svc,
		test_short_secret_or_bad_names_are_refused_for_service_tokens);
	suite_add_tcase(s, svc);
	return s;
}

CM_TEST_MAIN(make_suite)
