/*
 * svc.h - run real service binaries and talk to them over HTTP (tests).
 *
 * cm_test_svc_start() launches $BZ_BUILD/bin/<name> on a free port with the
 * test stack's settings (its own PostgreSQL role and password, Redis,
 * JWT_SECRET_KEY, SERVICE_SECRET) plus extra "NAME=value" overrides, sends
 * its stderr to $BZ_BUILD/test-logs/<name>-<port>.log and waits until
 * /health answers. cm_test_svc_stop() sends SIGTERM and returns the exit
 * status. cm_test_http() performs one request with libcurl.
 */
#ifndef TESTS_SVC_H
#define TESTS_SVC_H

#include <stdbool.h>
#include <sys/types.h>

#include <cJSON.h>

#include "common/http.h"

struct cm_test_svc {
	pid_t pid;
	int port;
	char name[32];
	char log[512];
};

struct cm_test_resp {
	long status;
	char *body;    /* NUL-terminated */
	char *headers; /* raw header block */
	cJSON *json;   /* body parsed, or NULL */
	double seconds;
};

/* cm_test_svc_start - start and wait for /health (15 s); 0 or -1. */
int cm_test_svc_start(struct cm_test_svc *s, const char *name,
		      const char *const *env);
/* cm_test_svc_spawn - start on a free port without waiting for it. */
void cm_test_svc_spawn(struct cm_test_svc *s, const char *name,
		       const char *const *env);
/* cm_test_svc_run - run `<name> args...` to completion with env; returns
   the exit status and the captured stderr in *err (malloc'd). */
int cm_test_svc_run(const char *name, const char *const *env, const char *arg,
		    char **err);
/* cm_test_svc_stop - SIGTERM, wait (15 s, then SIGKILL); exit status. */
int cm_test_svc_stop(struct cm_test_svc *s);
/* cm_test_server_start - an in-process HTTP server on 127.0.0.1, one
   worker, any free port (cm_http_port), serving routes; fails the test
   when it cannot start. cm_test_server_stop - stop, wait, free. */
struct cm_http *cm_test_server_start(const struct cm_route *routes);
void cm_test_server_stop(struct cm_http *h);
/* cm_test_http - one request to 127.0.0.1:port; headers NULL-terminated
   "Name: value" strings; 0 or -1 on transport failure. */
int cm_test_http(const char *method, int port, const char *path,
		 const char *const *headers, const char *body,
		 struct cm_test_resp *out);
/* cm_test_resp_header - a response header's value (static copy) or NULL. */
const char *cm_test_resp_header(const struct cm_test_resp *r, const char *name);
/* cm_test_resp_error_code - error.code of a JSON error body, or "". */
const char *cm_test_resp_error_code(const struct cm_test_resp *r);
/* cm_test_expect - r has status, and error.code `code` unless NULL (the
   test fails otherwise, showing the body). */
void cm_test_expect(const struct cm_test_resp *r, long status,
		    const char *code);
/* cm_test_expect_free - cm_test_expect, then release r. */
void cm_test_expect_free(struct cm_test_resp r, long status, const char *code);
/* cm_test_fresh_name - "<prefix>-<8 random hex>" into out[n]. */
void cm_test_fresh_name(char *out, size_t n, const char *prefix);
/* cm_test_fake_vault_start - tests/fakes/vault on a free port (*port),
   answering; its pid. */
pid_t cm_test_fake_vault_start(int *port);
/* cm_test_fake_vault_state - POST json to the fake's /_fake/state. */
void cm_test_fake_vault_state(int port, const char *json);
/* cm_test_resp_release - free the response. */
void cm_test_resp_release(struct cm_test_resp *r);
/* cm_test_user_token - HS256 user token signed with JWT_SECRET_KEY;
   tenant_id may be NULL; ttl_s may be negative (expired). malloc'd. */
char *cm_test_user_token(const char *sub, const char *tenant_id,
			 const char *roles_json, int ttl_s);
/* cm_test_stack - run "$BZ_STACK_CMD <verb>" (stop-redis, start-pg...). */
int cm_test_stack(const char *verb);

#endif
