/*
 * httpclient.h - outbound HTTP with libcurl: timeouts, a response cap,
 * retries with backoff for idempotent calls, and an SSRF guard.
 *
 * Only http and https are spoken, also across redirects. Fetches of
 * non-user URLs follow up to 5 redirects and honour the proxy environment.
 *
 * With opts->user_url set the URL came from a user (a webhook, an image
 * URL): it must pass cm_url_check_user, and the address curl actually
 * connects to - checked after DNS resolution in curl's open-socket
 * callback, so a hostname cannot smuggle 127.0.0.1 - must satisfy
 * cm_addr_is_public; such fetches fail with CM_EACCES and errbuf "address
 * not allowed", before any packet is sent. Redirects are not followed and
 * proxies are not used (a proxy would connect past the check).
 * opts->allow_cidrs (NULL or "" by default: the guard exactly as above)
 * lets addresses inside the listed networks through both checks; it exists
 * so that tests and local development can reach a receiver on 127.0.0.1,
 * and stays empty in production.
 *
 * Retries: only GET, HEAD, PUT, DELETE and OPTIONS, only after a connect
 * failure, a timeout or a 502/503/504, waiting 100 ms before the first
 * retry and doubling up to 2 s. The timeouts apply to each attempt.
 *
 * errbuf never holds the URL's path, query or credentials (curl's messages
 * name at most the host and port). errbuf may be NULL.
 *
 * Thread-safe: each call uses its own easy handle; cm_http_client_global
 * should be called once before threads start (cm_fetch calls it too, under
 * pthread_once).
 */
#ifndef COMMON_HTTPCLIENT_H
#define COMMON_HTTPCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "common/buf.h"
#include "common/err.h"

struct cm_fetch_opts {
	int connect_timeout_ms;	    /* 0: 2000 */
	int total_timeout_ms;	    /* 0: 10000 */
	size_t max_response;	    /* body cap; 0: 4 MiB; over: CM_E2BIG */
	int retries;		    /* extra attempts for idempotent
				       methods on connect errors, timeouts
				       and 502/503/504; see above */
	bool user_url;		    /* apply the SSRF guard */
	const char *const *headers; /* "Name: value", NULL-terminated;
				       CR or LF in one: CM_EINVAL */
	const char *content_type;   /* for the body, or NULL */
	const char *allow_cidrs;    /* user_url only: "127.0.0.0/8,::1/128"
				       passes the guard (dev/test; see
				       above); NULL or "": nothing */
};

struct cm_fetch_response {
	long status;
	struct cm_buf body;
	char content_type[128]; /* of the response; "" if none;
				   truncated to fit */
};

/* cm_http_client_global - curl_global_init once; 0 or CM_EIO. */
int cm_http_client_global(void);
/* cm_fetch - perform method (upper-case token) on url with body (may be
   NULL; not with HEAD) and opts (NULL: defaults); 0 with *resp filled (any
   HTTP status), or CM_EACCES (guard), CM_ETIMEDOUT, CM_E2BIG (body or
   declared Content-Length over max_response), CM_EINVAL (bad URL, method,
   header or scheme), CM_EIO (network). On error resp holds no body. resp
   must be released with cm_fetch_response_release either way. */
int cm_fetch(const char *method, const char *url, const void *body,
	     size_t body_len, const struct cm_fetch_opts *opts,
	     struct cm_fetch_response *resp, char errbuf[CM_ERRBUF_LEN]);
/* cm_fetch_response_release - free the body; accepts a zeroed struct. */
void cm_fetch_response_release(struct cm_fetch_response *resp);
/* cm_addr_is_public - false for every address class the guard refuses:
   IPv4 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.0.0/24,
   192.0.2/24, 192.168/16, 198.18/15, 198.51.100/24, 203.0.113/24, 224/4,
   240/4 (with 255.255.255.255); IPv6 ::/96 (::, ::1, compat), fc00::/7,
   fe80::/10, fec0::/10, ff00::/8, 2001:db8::/32, and ::ffff:0:0/96 or
   64:ff9b::/96 embedding a refused IPv4; any other family. sa must point
   to a whole sockaddr_in or sockaddr_in6. */
bool cm_addr_is_public(const struct sockaddr *sa);
/* cm_url_check_user - static checks of a user URL: CM_EINVAL when it is
   missing, over 2048 bytes, malformed, not http/https, carries a user or
   password, or has no host; CM_EACCES when the host is a literal address
   (any form a resolver accepts: 0x7f.1, 2130706433, [::1]) that
   cm_addr_is_public refuses; else 0. */
int cm_url_check_user(const char *url, char errbuf[CM_ERRBUF_LEN]);
/* cm_url_check_user_allow - cm_url_check_user, except that a literal
   address inside allow_cidrs (as in cm_fetch_opts; NULL: none) passes. */
int cm_url_check_user_allow(const char *url, const char *allow_cidrs,
			    char errbuf[CM_ERRBUF_LEN]);
/* cm_cidrs_check - the syntax of an allow list: at most 16
   comma-separated networks "a.b.c.d/n" (n 0..32) or "x:y::/n" (n 0..128),
   a bare address meaning the one host, spaces around commas allowed;
   NULL or "" is the empty list. 0 or CM_EINVAL naming the bad item. */
int cm_cidrs_check(const char *list, char errbuf[CM_ERRBUF_LEN]);
/* cm_addr_in_cidrs - whether sa (an IPv4-mapped IPv6 address counting as
   its IPv4 address) lies in one of list's networks; false for a malformed
   list. */
bool cm_addr_in_cidrs(const struct sockaddr *sa, const char *list);

#endif
