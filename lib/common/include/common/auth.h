/*
 * auth.h - JWT verification for users and service-to-service tokens.
 *
 * User tokens: the algorithm is fixed by configuration (HS256 keyed by
 * JWT_SECRET_KEY; RS256 or ES256 by a PEM public key) and a token whose
 * header names any other algorithm - "none" included - is refused before
 * its signature is looked at. exp is required, exp/nbf/iat are checked with
 * a small leeway, iss and aud must match the configuration, and the claims
 * sub, tenant_id, roles (array of strings) and jti are read into a
 * struct cm_principal. An optional revocation hook is consulted with the
 * jti (brain revokes on logout).
 *
 * Service tokens: HS256 with SERVICE_SECRET, typ "service", iss = calling
 * service, aud = target service, lifetime <= 60 s. Minted by
 * cm_service_token_mint, checked by cm_service_token_verify.
 *
 * Every verification failure returns CM_EACCES; errbuf says why, for logs
 * only (clients get a generic 401). Thread-safe: a struct cm_auth is
 * read-only after cm_auth_new.
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
	char sub[64];		/* user id, or the calling service's name */
	char tenant_id[40];	/* "" when the token names no tenant */
	char roles[CM_ROLES_MAX][CM_ROLE_LEN];
	int nroles;
	char jti[64];
	int64_t exp;
	bool is_service;	/* a service token (typ=service) */
	bool is_api_key;	/* set by brain for bz_ API keys */
};

enum cm_jwt_alg { CM_JWT_HS256 = 0, CM_JWT_RS256, CM_JWT_ES256 };

struct cm_auth_config {
	enum cm_jwt_alg alg;
	const unsigned char *key;	/* HS256 secret or PEM public key */
	size_t key_len;
	const char *issuer;		/* required iss */
	const char *audience;		/* required aud */
	int leeway_s;			/* exp/nbf slack, 0..300 */
};

struct cm_auth;

typedef bool (*cm_auth_revoked_fn)(const char *jti, void *ctx);

/* cm_auth_parse_alg - "HS256" | "RS256" | "ES256". */
int cm_auth_parse_alg(const char *s, enum cm_jwt_alg *out);
/* cm_auth_new - verifier for cfg (key copied); NULL with errbuf on a bad
   key (HS256 keys must be >= 32 bytes). */
struct cm_auth *cm_auth_new(const struct cm_auth_config *cfg,
			    char errbuf[CM_ERRBUF_LEN]);
/* cm_auth_free - accepts NULL. */
void cm_auth_free(struct cm_auth *auth);
/* cm_auth_set_revocation - consult fn(jti) after a valid signature. */
void cm_auth_set_revocation(struct cm_auth *auth, cm_auth_revoked_fn fn,
			    void *ctx);
/* cm_auth_verify - verify a user token; 0 and *out filled, or CM_EACCES. */
int cm_auth_verify(const struct cm_auth *auth, const char *token,
		   struct cm_principal *out, char errbuf[CM_ERRBUF_LEN]);

/* cm_jwt_sign - sign claims (a JSON object text) with alg and key (HS256
   secret or PEM private key); *out is malloc'd. Used by brain and tests. */
int cm_jwt_sign(enum cm_jwt_alg alg, const unsigned char *key, size_t key_len,
		const char *claims_json, char **out,
		char errbuf[CM_ERRBUF_LEN]);

/* cm_service_token_mint - token from `self` to `target`, ttl_s in 1..60;
   tenant_id may be NULL. *out is malloc'd. */
int cm_service_token_mint(const char *secret, const char *self,
			  const char *target, int ttl_s, char **out,
			  char errbuf[CM_ERRBUF_LEN]);
/* cm_service_token_verify - accept only typ=service, aud == self, a
   lifetime <= 60 s, a valid HS256 signature with secret. */
int cm_service_token_verify(const char *secret, const char *self,
			    const char *token, struct cm_principal *out,
			    char errbuf[CM_ERRBUF_LEN]);

/* cm_principal_has_role - whether p holds role. */
bool cm_principal_has_role(const struct cm_principal *p, const char *role);

#endif
