/*
 * httpclient.h - outbound HTTP with libcurl: timeouts, a response cap,
 * retries with backoff for idempotent calls, and an SSRF guard.
 *
 * With opts->user_url set the URL came from a user (a webhook, an image
 * URL): only http/https, no credentials in the URL, and the address curl
 * actually connects to - checked after DNS resolution in curl's
 * open-socket callback, so a hostname cannot smuggle 127.0.0.1 - must not
 * be private, loopback, link-local, multicast, unspecified, CGNAT or
 * IPv4-mapped versions of those; such fetches fail with CM_EACCES.
 * Redirects are not followed for user URLs.
 * Thread-safe: each call uses its own easy handle; cm_http_client_global
 * must be called once before threads start.
 */
#ifndef COMMON_HTTPCLIENT_H
#define COMMON_HTTPCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "common/buf.h"
#include "common/err.h"

struct cm_fetch_opts {
	int connect_timeout_ms;		/* 0: 2000 */
	int total_timeout_ms;		/* 0: 10000 */
	size_t max_response;		/* body cap; 0: 4 MiB; over: CM_E2BIG */
	int retries;			/* extra attempts for GET/HEAD/PUT/
					   DELETE on connect errors and 502/503/
					   504; backoff 100 ms doubling */
	bool user_url;			/* apply the SSRF guard */
	const char *const *headers;	/* "Name: value", NULL-terminated */
	const char *content_type;	/* for the body, or NULL */
};

struct cm_fetch_response {
	long status;
	struct cm_buf body;
	char content_type[128];
};

/* cm_http_client_global - curl_global_init once; 0 or CM_EIO. */
int cm_http_client_global(void);
/* cm_fetch - perform method on url; 0 with *resp filled (any HTTP status),
   or CM_EACCES (guard), CM_ETIMEDOUT, CM_E2BIG, CM_EINVAL (bad URL),
   CM_EIO (network). resp must be released with cm_fetch_response_release. */
int cm_fetch(const char *method, const char *url, const void *body,
	     size_t body_len, const struct cm_fetch_opts *opts,
	     struct cm_fetch_response *resp, char errbuf[CM_ERRBUF_LEN]);
/* cm_fetch_response_release - free the body; accepts a zeroed struct. */
void cm_fetch_response_release(struct cm_fetch_response *resp);
/* cm_addr_is_public - false for every address class the guard refuses. */
bool cm_addr_is_public(const struct sockaddr *sa);
/* cm_url_check_user - static checks of a user URL (scheme, credentials,
   literal private IPs, length <= 2048); 0 or CM_EINVAL/CM_EACCES. */
int cm_url_check_user(const char *url, char errbuf[CM_ERRBUF_LEN]);

#endif
