/*
 * auth.h - JWT verification for users and service-to-service tokens.
 *
 * User tokens: the algorithm is fixed by configuration (HS256 keyed by
 * JWT_SECRET_KEY; RS256 or ES256 by a PEM public key) and a token whose
 * header names any other algorithm - "none" included - is refused before
 * its signature is looked at. This is what stops key confusion: libjwt 1.x
 * verifies with the algorithm the token names, so an HS256 token MACed
 * with the RS256 public key text would otherwise pass. Before libjwt sees
 * a token it must be at most 8 KiB of exactly three non-empty unpadded
 * base64url parts, and its header a JSON object without duplicate members,
 * without "crit", with "alg" equal to the configured name and "typ" absent
 * or "JWT"; after verification the algorithm libjwt used is checked again.
 *
 * Claims of a user token: exp (integer) is required and refused once
 * now > exp + leeway; nbf, if present, is refused while now < nbf - leeway;
 * iat, if present, is refused when more than leeway in the future. iss must
 * equal the configured issuer and aud must equal the configured audience
 * or be an array of strings containing it. sub is required (1..63 bytes, no
 * control characters); tenant_id, if present, must be a uuid string (null
 * is refused); roles, if present, an array of at most CM_ROLES_MAX strings
 * of 1..CM_ROLE_LEN-1 bytes; jti, if present, 1..63 bytes. A token whose
 * "typ" claim is "service" or not a string is refused. The optional
 * revocation hook is consulted with the jti (brain revokes on logout); a
 * token without a jti cannot be revoked, so issuers should always set one.
 *
 * Service tokens: HS256 with SERVICE_SECRET, typ "service", iss = calling
 * service, aud = target service, lifetime <= 60 s. Minted by
 * cm_service_token_mint, checked by cm_service_token_verify.
 *
 * Every verification failure returns CM_EACCES and *out is zeroed; errbuf
 * says why, for logs only (clients get a generic 401), and never holds the
 * token or key. Thread-safe: a struct cm_auth is read-only after
 * cm_auth_new and cm_auth_set_revocation.
 *
 * Each thread remembers its last 32 verified tokens (up to 1 KiB each):
 * the exact token text, which key and audience (or service) accepted it,
 * the principal, and its exp. A repeat is compared in constant time and
 * answered from there until exp (plus leeway) passes; failures are never
 * remembered, and the revocation callback runs on every call.
 */
#ifndef COMMON_AUTH_H
#define COMMON_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define CM_ROLES_MAX 8
#define CM_ROLE_LEN 32
#define CM_SERVICE_TOKEN_MAX_TTL 60

/* The verified caller. A value type: copy freely, no release needed. */
struct cm_principal {
	char sub[64];	    /* user id, or the calling service's name */
	char tenant_id[40]; /* "" when the token names no tenant */
	char roles[CM_ROLES_MAX][CM_ROLE_LEN];
	int nroles;
	char jti[64];
	int64_t exp;
	bool is_service; /* a service token (typ=service) */
	bool is_api_key; /* set by brain for bz_ API keys */
	char via[32];	 /* "brain" for a user forwarded by the gateway */
};

/* The service whose tokens may carry a user (cm_gateway_token_mint). */
#define CM_GATEWAY_ISSUER "brain"

enum cm_jwt_alg {
	CM_JWT_HS256 = 0,
	CM_JWT_RS256,
	CM_JWT_ES256
};

struct cm_auth_config {
	enum cm_jwt_alg alg;
	const unsigned char *key; /* HS256 secret or PEM public key */
	size_t key_len;
	const char *issuer;   /* required iss */
	const char *audience; /* required aud */
	int leeway_s;	      /* exp/nbf/iat slack, 0..300 */
};

struct cm_auth;

typedef bool (*cm_auth_revoked_fn)(const char *jti, void *ctx);

/* cm_auth_parse_alg - "HS256" | "RS256" | "ES256" exactly; CM_EINVAL for
   anything else ("none", "HS384", "hs256", NULL). */
int cm_auth_parse_alg(const char *s, enum cm_jwt_alg *out);
/* cm_auth_new - verifier for cfg (key, issuer, audience copied); NULL with
   errbuf on bad settings: HS256 secrets must be >= 32 bytes and not a PEM
   text, RS256 keys RSA >= 2048 bits, ES256 keys P-256, keys <= 16 KiB;
   issuer and audience non-empty; leeway_s in 0..300. */
struct cm_auth *cm_auth_new(const struct cm_auth_config *cfg,
			    char errbuf[CM_ERRBUF_LEN]);
/* cm_auth_free - accepts NULL. */
void cm_auth_free(struct cm_auth *auth);
/* cm_auth_set_revocation - consult fn(jti, ctx) after a valid signature
   and claims, when the token has a jti; true refuses. Call before the
   verifier is shared between threads; fn itself must be thread-safe. */
void cm_auth_set_revocation(struct cm_auth *auth, cm_auth_revoked_fn fn,
			    void *ctx);
/* cm_auth_verify - verify a user token; 0 and *out filled, or CM_EACCES
   with *out zeroed. */
int cm_auth_verify(const struct cm_auth *auth, const char *token,
		   struct cm_principal *out, char errbuf[CM_ERRBUF_LEN]);

/* cm_jwt_sign - sign claims (a JSON object text, copied as is) with alg and
   key (HS256 secret of >= 32 bytes, or PEM private key); *out is malloc'd.
   CM_EINVAL for claims that are not an object or a key libjwt cannot sign
   with. Does not add exp/iat: the caller's claims are the token's. Used
   by brain and tests. */
int cm_jwt_sign(enum cm_jwt_alg alg, const unsigned char *key, size_t key_len,
		const char *claims_json, char **out,
		char errbuf[CM_ERRBUF_LEN]);

/* cm_service_token_mint - token from `self` to `target` (service names:
   1..31 of [a-z-]), ttl_s in 1..60: iss=self, sub=self, aud=target,
   typ="service", iat=now, exp=now+ttl_s, a random uuid jti, HS256 with
   secret (>= 32 bytes). *out is malloc'd. CM_EINVAL on bad arguments,
   CM_EIO when no randomness is available. */
int cm_service_token_mint(const char *secret, const char *self,
			  const char *target, int ttl_s, char **out,
			  char errbuf[CM_ERRBUF_LEN]);
/* cm_gateway_token_mint - a service token from the gateway (iss "brain")
   to target that also carries the user the gateway verified: claims uid
   (user->sub), tid (user->tenant_id, omitted when empty), roles, and
   key=true for an API key. CM_EINVAL as above, or for a missing user, a
   service principal or a tenant that is not a uuid. */
int cm_gateway_token_mint(const char *secret, const char *target, int ttl_s,
			  const struct cm_principal *user, char **out,
			  char errbuf[CM_ERRBUF_LEN]);
/* cm_service_token_verify - accept only a valid HS256 signature with
   secret (>= 32 bytes), typ=service, aud == self (a string), iss a service
   name, sub absent or equal to iss, integer iat and exp with 0 < exp - iat
   <= 60, not expired and not issued in the future (5 s leeway). Then
   out->sub = iss, out->jti, out->exp and out->is_service are set; nothing
   else (no tenant, no roles) is taken from a service token - except from
   a gateway token (one with a uid claim; refused unless iss is "brain"):
   then *out is the user it carries (sub = uid, tenant_id = tid, roles,
   is_api_key = key, is_service false, via "brain"; exp and jti the
   token's), so the route is served as for that user's own token.
   CM_EACCES with *out zeroed otherwise. */
int cm_service_token_verify(const char *secret, const char *self,
			    const char *token, struct cm_principal *out,
			    char errbuf[CM_ERRBUF_LEN]);

/* cm_principal_has_role - whether p holds role. */
bool cm_principal_has_role(const struct cm_principal *p, const char *role);

#endif
