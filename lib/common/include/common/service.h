/*
 * service.h - the one way a service binary starts, runs and stops.
 *
 * A service's main() hands a struct cm_service_desc to cm_service_main(),
 * which:
 *   1. builds the config table (the common settings below + the service's
 *      own), handles --help (lists settings with defaults, never secret
 *      values) and --version, loads and validates everything and stops with
 *      one message listing every problem;
 *   2. starts logging, metrics, PostgreSQL and Redis settings, refuses a
 *      database role that is a superuser or has BYPASSRLS, applies the
 *      service's migrations (MIGRATIONS_DIR) under an advisory lock;
 *   3. calls desc->start, serves the routes plus /health, /health/ready and
 *      /metrics with the auth and tenant hooks installed;
 *   4. on SIGTERM or SIGINT drains in-flight requests, calls desc->stop and
 *      returns 0.
 * `<svc> --healthcheck` probes http://127.0.0.1:<port>/health/ready and
 * exits 0 or 1 (container health checks need no curl); `<svc> --migrate`
 * applies migrations and exits; desc->commands adds the service's own
 * (struct cm_service_cmd).
 *
 * Common settings (every service): POSTGRES_HOST, POSTGRES_PORT,
 * POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD or DATABASE_URL; REDIS_HOST,
 * REDIS_PORT, REDIS_PASSWORD, REDIS_DB or REDIS_URL; JWT_SECRET_KEY,
 * JWT_ALGORITHM, JWT_PUBLIC_KEY_FILE, JWT_ISSUER, JWT_AUDIENCE,
 * SERVICE_SECRET, LOG_LEVEL, DOMAIN, BIND_ADDR, HTTP_THREADS, HTTP_MAX_BODY,
 * HTTP_MAX_HEADER, HTTP_READ_TIMEOUT_MS, HTTP_WRITE_TIMEOUT_MS,
 * HTTP_DRAIN_TIMEOUT_MS, CORS_ORIGINS, TENANT_CACHE_TTL_MS, MIGRATIONS_DIR,
 * and the service's own <NAME>_PORT.
 */
#ifndef COMMON_SERVICE_H
#define COMMON_SERVICE_H

#include <stdbool.h>

#include "common/auth.h"
#include "common/config.h"
#include "common/err.h"
#include "common/http.h"

struct cm_service;

/* A readiness check: 0 when the dependency answers, else CM_E* + errbuf. */
typedef int (*cm_ready_fn)(void *arg, char errbuf[CM_ERRBUF_LEN]);

struct cm_service_desc {
	const char *name;     /* "crm"; also the service-token aud */
	const char *port_env; /* "CRM_PORT" */
	int default_port;     /* 8003 */
	const char *schema;   /* the service's PostgreSQL schema */
	const struct cm_config_item *config; /* extra settings, or NULL */
	const struct cm_route *routes;	     /* the service's own routes */
	/* start - after config, db and redis are ready; *arg goes to every
	   handler. 0 or CM_E* (start-up fails). May be NULL. */
	int (*start)(struct cm_service *svc, void **arg);
	/* stop - after the server drained. May be NULL. */
	void (*stop)(struct cm_service *svc, void *arg);
	/* authenticate - optional credential check of the service's own
	   (brain's bz_live_ API keys): offered every "Authorization: Bearer"
	   token before JWT verification, with the start hook's *arg. It
	   returns CM_ENOENT to leave the token to the JWT verifier, 0 after
	   filling *out (the caller is authenticated as *out; the tenant hook
	   then runs as for a user token), or any other CM_E* to refuse it
	   (401 invalid_token). Runs on worker threads. May be NULL. */
	int (*authenticate)(struct cm_req *req, const char *token,
			    struct cm_principal *out, void *arg);
	/* commands - the service's own command-line commands, ended by a
	   NULL flag. May be NULL. */
	const struct cm_service_cmd *commands;
};

/* A command of the service's own: `<svc> FLAG [ARG]` or `<svc> FLAG=ARG`
   sets up as for serving (configuration, PostgreSQL with migrations
   applied, Redis settings; no start hook, no HTTP server), then calls run
   instead of serving, and the process exits with run's status. --help
   lists the commands. */
struct cm_service_cmd {
	const char *flag; /* "--create-super-admin" */
	const char *args; /* for --help: "EMAIL", or NULL */
	const char *help; /* one line for --help */
	/* run - arg is the argument (NULL when none was given); returns the
	   exit status (0 success, 1 failure, 2 bad usage). */
	int (*run)(struct cm_service *svc, const char *arg);
};

/* cm_service_main - run the service; the process exit status. */
int cm_service_main(const struct cm_service_desc *desc, int argc, char **argv);
/* cm_service_config - the loaded configuration. */
const struct cm_config *cm_service_config(const struct cm_service *svc);
/* cm_service_auth - the user-token verifier. */
const struct cm_auth *cm_service_auth(const struct cm_service *svc);
/* cm_service_name - desc->name. */
const char *cm_service_name(const struct cm_service *svc);
/* cm_service_revocations_changed - this process just revoked a token
   (brain's logout): forget every cached "not revoked" answer here. Other
   processes see a revocation within 1 s (their per-thread cache). */
void cm_service_revocations_changed(void);
/* cm_service_add_check - one more /health/ready dependency (before start
   returns); name appears in the 503 body and metrics. */
void cm_service_add_check(struct cm_service *svc, const char *name,
			  cm_ready_fn fn, void *arg);

#endif
