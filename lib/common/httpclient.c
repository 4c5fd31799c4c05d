/* httpclient.c - libcurl wrapper: timeouts, a body cap, retries, SSRF guard. */
#include "common/httpclient.h"
#include "common/mem.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "common/banned.h"

#define DEFAULT_CONNECT_MS 2000
#define DEFAULT_TOTAL_MS 10000
#define DEFAULT_MAX_RESPONSE ((size_t)4 << 20)
#define USER_URL_MAX 2048
#define METHOD_MAX 16
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000
#define MAX_REDIRS 5

/* Per-call state shared with curl's callbacks. */
struct fetch_ctx {
	CURL *curl;
	struct cm_buf *body;
	bool too_big;	   /* the write callback refused the body */
	bool refused;	   /* the guard refused an address */
	const char *allow; /* opts->allow_cidrs */
	char curl_err[CURL_ERROR_SIZE];
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void
global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int
cm_http_client_global(void)
{
	pthread_once(&global_once, global_init);
	return global_rc == CURLE_OK ? 0 : CM_EIO;
}

/* Refused IPv4 networks, host byte order. */
static const struct v4net {
	uint32_t net;
	unsigned bits;
} v4_refused[] = {
	{ 0x00000000, 8 },  /* 0.0.0.0/8 "this network" */
	{ 0x0a000000, 8 },  /* 10/8 private */
	{ 0x64400000, 10 }, /* 100.64/10 CGNAT */
	{ 0x7f000000, 8 },  /* 127/8 loopback */
	{ 0xa9fe0000, 16 }, /* 169.254/16 link-local, cloud metadata */
	{ 0xac100000, 12 }, /* 172.16/12 private */
	{ 0xc0000000, 24 }, /* 192.0.0/24 IETF protocol assignments */
	{ 0xc0000200, 24 }, /* 192.0.2/24 TEST-NET-1 */
	{ 0xc0a80000, 16 }, /* 192.168/16 private */
	{ 0xc6120000, 15 }, /* 198.18/15 benchmarking */
	{ 0xc6336400, 24 }, /* 198.51.100/24 TEST-NET-2 */
	{ 0xcb007100, 24 }, /* 203.0.113/24 TEST-NET-3 */
	{ 0xe0000000, 4 },  /* 224/4 multicast */
	{ 0xf0000000, 4 },  /* 240/4 reserved, broadcast */
};

static bool
v4_is_public(uint32_t a)
{
	size_t i;

	for (i = 0; i < sizeof(v4_refused) / sizeof(v4_refused[0]); i++) {
		uint32_t mask = ~(uint32_t)0 << (32 - v4_refused[i].bits);

		if ((a & mask) == v4_refused[i].net)
			return false;
	}
	return true;
}

static bool
v6_is_public(const struct in6_addr *in6)
{
	static const uint8_t compat[12] = { 0 };
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0,    0,
					    0, 0, 0, 0, 0xff, 0xff };
	static const uint8_t nat64[12] = { 0, 0x64, 0xff, 0x9b };
	const uint8_t *b = in6->s6_addr;
	uint32_t v4;

	if (!memcmp(b, compat, 12)) /* ::, ::1, deprecated ::a.b.c.d */
		return false;
	if (!memcmp(b, mapped, 12) || !memcmp(b, nat64, 12)) {
		memcpy(&v4, b + 12, 4);
		return v4_is_public(ntohl(v4));
	}
	if ((b[0] & 0xfe) == 0xfc) /* fc00::/7 unique local */
		return false;
	if (b[0] == 0xfe && (b[1] & 0x80)) /* fe80::/10, fec0::/10 */
		return false;
	if (b[0] == 0xff) /* multicast */
		return false;
	return !(b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8);
}

bool
cm_addr_is_public(const struct sockaddr *sa)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	if (!sa)
		return false;
	if (sa->sa_family == AF_INET) {
		memcpy(&sin, sa, sizeof(sin));
		return v4_is_public(ntohl(sin.sin_addr.s_addr));
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(&sin6, sa, sizeof(sin6));
		return v6_is_public(&sin6.sin6_addr);
	}
	return false;
}

#define CIDRS_MAX 16

/* One network of an allow list. */
struct cidr {
	int family;
	uint8_t addr[16];
	unsigned bits;
};

/* Parse "addr[/bits]" (len bytes of item); 0 or CM_EINVAL. */
static int
cidr_parse(const char *item, size_t len, struct cidr *c)
{
	char tmp[64], *slash;
	int64_t bits;

	if (len == 0 || len >= sizeof(tmp))
		return CM_EINVAL;
	memcpy(tmp, item, len);
	tmp[len] = '\0';
	slash = strchr(tmp, '/');
	if (slash)
		*slash++ = '\0';
	if (inet_pton(AF_INET, tmp, c->addr) == 1)
		c->family = AF_INET;
	else if (inet_pton(AF_INET6, tmp, c->addr) == 1)
		c->family = AF_INET6;
	else
		return CM_EINVAL;
	bits = c->family == AF_INET ? 32 : 128;
	if (slash && cm_parse_i64(slash, 0, bits, &bits) < 0)
		return CM_EINVAL;
	c->bits = (unsigned)bits;
	return 0;
}

/* Walk list's items into out (at most CIDRS_MAX); the count, or CM_EINVAL
   with errbuf naming the bad item. */
static int
cidrs_parse(const char *list, struct cidr out[CIDRS_MAX], char *errbuf)
{
	const char *p = list ? list : "";
	size_t len;
	int n = 0;

	while (*p) {
		p += strspn(p, " ");
		len = strcspn(p, ",");
		while (len > 0 && p[len - 1] == ' ')
			len--;
		if (n == CIDRS_MAX || cidr_parse(p, len, &out[n]) < 0) {
			cm_errf(errbuf,
				"bad network '%.*s' (a.b.c.d/n or x::/n, "
				"at most %d)",
				(int)(len > 64 ? 64 : len), p, CIDRS_MAX);
			return CM_EINVAL;
		}
		n++;
		p += strcspn(p, ",");
		if (*p == ',' && !*++p) {
			cm_errf(errbuf, "empty network after ','");
			return CM_EINVAL;
		}
	}
	return n;
}

int
cm_cidrs_check(const char *list, char errbuf[CM_ERRBUF_LEN])
{
	struct cidr c[CIDRS_MAX];
	int n = cidrs_parse(list, c, errbuf);

	return n < 0 ? n : 0;
}

static bool
prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;
	uint8_t mask;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	mask = (uint8_t)(0xff << (8 - rest));
	return (a[whole] & mask) == (b[whole] & mask);
}

bool
cm_addr_in_cidrs(const struct sockaddr *sa, const char *list)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0,    0,
					    0, 0, 0, 0, 0xff, 0xff };
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct cidr c[CIDRS_MAX];
	uint8_t addr[16];
	int family, n, i;

	if (!sa || !list || !*list || (n = cidrs_parse(list, c, NULL)) <= 0)
		return false;
	if (sa->sa_family == AF_INET) {
		memcpy(&sin, sa, sizeof(sin));
		memcpy(addr, &sin.sin_addr, 4);
		family = AF_INET;
	} else if (sa->sa_family == AF_INET6) {
		memcpy(&sin6, sa, sizeof(sin6));
		memcpy(addr, &sin6.sin6_addr, 16);
		family = AF_INET6;
		if (!memcmp(addr, mapped, 12)) {
			memmove(addr, addr + 12, 4);
			family = AF_INET;
		}
	} else {
		return false;
	}
	for (i = 0; i < n; i++) {
		if (c[i].family == family &&
		    prefix_equal(addr, c[i].addr, c[i].bits))
			return true;
	}
	return false;
}

/* The guard's verdict on one address. */
static bool
addr_allowed(const struct sockaddr *sa, const char *allow)
{
	return cm_addr_is_public(sa) || cm_addr_in_cidrs(sa, allow);
}

/* A literal address in a URL's host is checked now; a name is checked
   after resolution. inet_aton takes every form a resolver would
   (0x7f.1, 2130706433, 0177.0.0.1). */
static int
check_literal_host(const char *host, const char *allow, char *errbuf)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	char tmp[128];
	size_t len = cm_strlcpy(tmp, host, sizeof(tmp));
	const struct sockaddr *sa = NULL;

	if (len >= sizeof(tmp))
		return 0; /* longer than any literal: a name */
	if (tmp[0] == '[') {
		tmp[strcspn(tmp, "%]")] = '\0';
		if (inet_pton(AF_INET6, tmp + 1, &sin6.sin6_addr) != 1) {
			cm_errf(errbuf, "bad ipv6 literal in url");
			return CM_EINVAL;
		}
		sa = (const struct sockaddr *)&sin6;
	} else {
		if (len > 1 && tmp[len - 1] == '.')
			tmp[len - 1] = '\0';
		if (inet_aton(tmp, &sin.sin_addr))
			sa = (const struct sockaddr *)&sin;
	}
	if (sa && !addr_allowed(sa, allow)) {
		cm_errf(errbuf, "address not allowed");
		return CM_EACCES;
	}
	return 0;
}

/* Scheme, credentials and host of a parsed user URL. */
static int
check_url_parts(CURLU *u, const char *allow, char *errbuf)
{
	char *scheme = NULL, *user = NULL, *pass = NULL, *host = NULL;
	int rc = CM_EINVAL;

	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		cm_errf(errbuf, "url scheme not allowed");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PASSWORD, &pass, 0) == CURLUE_OK) {
		cm_errf(errbuf, "credentials in url not allowed");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    !host[0]) {
		cm_errf(errbuf, "url has no host");
		goto out;
	}
	rc = check_literal_host(host, allow, errbuf);
out:
	curl_free(scheme);
	curl_free(user);
	curl_free(pass);
	curl_free(host);
	return rc;
}

int
cm_url_check_user(const char *url, char errbuf[CM_ERRBUF_LEN])
{
	return cm_url_check_user_allow(url, NULL, errbuf);
}

int
cm_url_check_user_allow(const char *url, const char *allow_cidrs,
			char errbuf[CM_ERRBUF_LEN])
{
	CURLU *u = NULL;
	int rc = CM_EINVAL;

	if (!url || strnlen(url, USER_URL_MAX + 1) > USER_URL_MAX) {
		cm_errf(errbuf, "url missing or over %d bytes", USER_URL_MAX);
		goto out;
	}
	u = curl_url();
	if (!u) {
		cm_errf(errbuf, "out of memory parsing url");
		rc = CM_ENOMEM;
		goto out;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
		cm_errf(errbuf, "malformed url");
		goto out;
	}
	rc = check_url_parts(u, allow_cidrs, errbuf);
out:
	curl_url_cleanup(u);
	return rc;
}

/* curl connects only to sockets opened here: refuse non-public peers. */
static curl_socket_t
on_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
	struct fetch_ctx *ctx = arg;
	struct sockaddr_storage ss;
	const char *raw =
		(const char *)addr + offsetof(struct curl_sockaddr, addr);

	memset(&ss, 0, sizeof(ss));
	if (purpose != CURLSOCKTYPE_IPCXN || addr->addrlen > sizeof(ss))
		goto refuse;
	memcpy(&ss, raw, addr->addrlen);
	if (!addr_allowed((const struct sockaddr *)&ss, ctx->allow))
		goto refuse;
	return socket(addr->family, addr->socktype | SOCK_CLOEXEC,
		      addr->protocol);
refuse:
	ctx->refused = true;
	return CURL_SOCKET_BAD;
}

/* Body bytes: refuse a declared length over the cap before storing any,
   and stop a stream at the cap. */
static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct fetch_ctx *ctx = arg;
	curl_off_t declared = -1;
	size_t n = size * nmemb;

	if (curl_easy_getinfo(ctx->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
			      &declared) == CURLE_OK &&
	    declared > 0 && (uint64_t)declared > ctx->body->cap) {
		ctx->too_big = true;
		return 0;
	}
	cm_buf_add(ctx->body, data, n);
	if (cm_buf_error(ctx->body)) {
		ctx->too_big = true;
		return 0;
	}
	return n;
}

static bool
valid_method(const char *method)
{
	size_t i;

	for (i = 0; method[i]; i++) {
		if (method[i] < 'A' || method[i] > 'Z')
			return false;
	}
	return i > 0 && i <= METHOD_MAX;
}

static bool
idempotent(const char *method)
{
	static const char *const safe[] = { "GET", "HEAD", "PUT", "DELETE",
					    "OPTIONS" };
	size_t i;

	for (i = 0; i < sizeof(safe) / sizeof(safe[0]); i++) {
		if (!strcmp(method, safe[i]))
			return true;
	}
	return false;
}

static bool
header_ok(const char *h)
{
	return strchr(h, ':') && !strpbrk(h, "\r\n");
}

static int
check_args(const char *method, const char *url, const void *body,
	   size_t body_len, const struct cm_fetch_opts *opts, char *errbuf)
{
	size_t i;

	if (!method || !valid_method(method) || !url || !*url) {
		cm_errf(errbuf, "bad method or url");
		return CM_EINVAL;
	}
	if ((!body && body_len) || (body && !strcmp(method, "HEAD"))) {
		cm_errf(errbuf, "bad request body");
		return CM_EINVAL;
	}
	for (i = 0; opts->headers && opts->headers[i]; i++) {
		if (!header_ok(opts->headers[i])) {
			cm_errf(errbuf, "bad request header %zu", i);
			return CM_EINVAL;
		}
	}
	if (opts->content_type && strpbrk(opts->content_type, "\r\n")) {
		cm_errf(errbuf, "bad content type");
		return CM_EINVAL;
	}
	return cm_cidrs_check(opts->allow_cidrs, errbuf);
}

static int
build_headers(const struct cm_fetch_opts *opts, struct curl_slist **out,
	      char *errbuf)
{
	char ctype[256];
	size_t i;

	/* No "Expect: 100-continue" round trip for larger bodies. */
	*out = curl_slist_append(*out, "Expect:");
	for (i = 0; *out && opts->headers && opts->headers[i]; i++)
		*out = curl_slist_append(*out, opts->headers[i]);
	if (*out && opts->content_type) {
		if ((size_t)snprintf(ctype, sizeof(ctype), "Content-Type: %s",
				     opts->content_type) >= sizeof(ctype)) {
			cm_errf(errbuf, "content type too long");
			return CM_EINVAL;
		}
		*out = curl_slist_append(*out, ctype);
	}
	if (!*out) {
		cm_errf(errbuf, "out of memory building headers");
		return CM_ENOMEM;
	}
	return 0;
}

static CURLcode
setup_method(CURL *curl, const char *method, const void *body, size_t body_len)
{
	bool post = !strcmp(method, "POST");
	CURLcode c = CURLE_OK;

	if (!strcmp(method, "HEAD"))
		return curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
	if (body || post) {
		c = curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
				     (curl_off_t)body_len);
		if (c == CURLE_OK)
			c = curl_easy_setopt(curl, CURLOPT_POSTFIELDS,
					     body ? body : "");
	}
	if (c == CURLE_OK && !post && (body || strcmp(method, "GET") != 0))
		c = curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	return c;
}

/* User URLs: check every connected address, no redirects, no proxy (a
   proxy would connect on our behalf, past the check). */
static CURLcode
setup_redirects_and_guard(CURL *curl, struct fetch_ctx *ctx, bool user_url)
{
	CURLcode c;

	if (!user_url) {
		c = curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
		if (c == CURLE_OK)
			c = curl_easy_setopt(curl, CURLOPT_MAXREDIRS,
					     (long)MAX_REDIRS);
		return c;
	}
	c = curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	if (c == CURLE_OK)
		c = curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
	if (c == CURLE_OK)
		c = curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION,
				     on_open_socket);
	if (c == CURLE_OK)
		c = curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, ctx);
	return c;
}

static long
or_default(int v, long def)
{
	return v > 0 ? (long)v : def;
}

static CURLcode
setup_common(CURL *curl, const char *url, const struct cm_fetch_opts *opts,
	     struct curl_slist *headers, struct fetch_ctx *ctx)
{
	CURLcode c = curl_easy_setopt(curl, CURLOPT_URL, url);

#define SET(opt, val)                                         \
	do {                                                  \
		if (c == CURLE_OK)                            \
			c = curl_easy_setopt(curl, opt, val); \
	} while (0)
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_CONNECTTIMEOUT_MS,
	    or_default(opts->connect_timeout_ms, DEFAULT_CONNECT_MS));
	SET(CURLOPT_TIMEOUT_MS,
	    or_default(opts->total_timeout_ms, DEFAULT_TOTAL_MS));
	SET(CURLOPT_HTTPHEADER, headers);
	SET(CURLOPT_USERAGENT, "bizosaas/1");
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, ctx);
	SET(CURLOPT_ERRORBUFFER, ctx->curl_err);
#undef SET
	return c;
}

/* The outcome of one attempt as a CM_E* code, with resp filled on 0. */
static int
attempt_result(struct fetch_ctx *ctx, CURLcode code,
	       struct cm_fetch_response *resp, char *errbuf)
{
	char *ctype = NULL;

	if (code == CURLE_OK) {
		curl_easy_getinfo(ctx->curl, CURLINFO_RESPONSE_CODE,
				  &resp->status);
		if (curl_easy_getinfo(ctx->curl, CURLINFO_CONTENT_TYPE,
				      &ctype) == CURLE_OK &&
		    ctype)
			cm_strlcpy(resp->content_type, ctype,
				   sizeof(resp->content_type));
		return 0;
	}
	if (ctx->too_big) {
		cm_errf(errbuf, "response over %zu bytes", ctx->body->cap);
		return CM_E2BIG;
	}
	if (ctx->refused && code == CURLE_COULDNT_CONNECT) {
		cm_errf(errbuf, "address not allowed");
		return CM_EACCES;
	}
	cm_errf(errbuf, "%s",
		ctx->curl_err[0] ? ctx->curl_err : curl_easy_strerror(code));
	if (code == CURLE_OPERATION_TIMEDOUT)
		return CM_ETIMEDOUT;
	if (code == CURLE_URL_MALFORMAT || code == CURLE_UNSUPPORTED_PROTOCOL)
		return CM_EINVAL;
	return CM_EIO;
}

static bool
worth_retrying(const struct fetch_ctx *ctx, CURLcode code, long status)
{
	if (code == CURLE_OK)
		return status == 502 || status == 503 || status == 504;
	if (code == CURLE_COULDNT_CONNECT)
		return !ctx->refused;
	return code == CURLE_OPERATION_TIMEDOUT;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int
perform(struct fetch_ctx *ctx, const char *method,
	const struct cm_fetch_opts *opts, struct cm_fetch_response *resp,
	char *errbuf)
{
	int attempts =
		idempotent(method) && opts->retries > 0 ? opts->retries + 1 : 1;
	long delay = BACKOFF_FIRST_MS;
	CURLcode code;
	int rc;

	for (;;) {
		ctx->too_big = false;
		ctx->refused = false;
		ctx->curl_err[0] = '\0';
		cm_buf_reset(&resp->body);
		resp->status = 0;
		resp->content_type[0] = '\0';
		code = curl_easy_perform(ctx->curl);
		rc = attempt_result(ctx, code, resp, errbuf);
		if (--attempts <= 0 || !worth_retrying(ctx, code, resp->status))
			break;
		sleep_ms(delay);
		delay = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
	}
	return rc;
}

static void
response_init(struct cm_fetch_response *resp, const struct cm_fetch_opts *opts)
{
	resp->status = 0;
	cm_buf_init(&resp->body, opts->max_response ? opts->max_response
						    : DEFAULT_MAX_RESPONSE);
	resp->content_type[0] = '\0';
}

int
cm_fetch(const char *method, const char *url, const void *body, size_t body_len,
	 const struct cm_fetch_opts *opts, struct cm_fetch_response *resp,
	 char errbuf[CM_ERRBUF_LEN])
{
	static const struct cm_fetch_opts defaults;
	struct fetch_ctx ctx = { .curl = NULL };
	struct curl_slist *headers = NULL;
	int rc;

	cm_errf(errbuf, "%s", "");
	opts = opts ? opts : &defaults;
	response_init(resp, opts);
	rc = check_args(method, url, body, body_len, opts, errbuf);
	if (rc < 0)
		goto out;
	if (cm_http_client_global() < 0) {
		cm_errf(errbuf, "curl_global_init failed");
		rc = CM_EIO;
		goto out;
	}
	if (opts->user_url &&
	    (rc = cm_url_check_user_allow(url, opts->allow_cidrs, errbuf)) < 0)
		goto out;
	rc = build_headers(opts, &headers, errbuf);
	if (rc < 0)
		goto out;
	ctx.curl = curl_easy_init();
	ctx.body = &resp->body;
	ctx.allow = opts->allow_cidrs;
	if (!ctx.curl ||
	    setup_common(ctx.curl, url, opts, headers, &ctx) != CURLE_OK ||
	    setup_method(ctx.curl, method, body, body_len) != CURLE_OK ||
	    setup_redirects_and_guard(ctx.curl, &ctx, opts->user_url) !=
		    CURLE_OK) {
		cm_errf(errbuf, "curl setup failed");
		rc = CM_EIO;
		goto out;
	}
	rc = perform(&ctx, method, opts, resp, errbuf);
out:
	if (rc < 0)
		cm_buf_release(&resp->body);
	curl_slist_free_all(headers);
	curl_easy_cleanup(ctx.curl);
	return rc;
}

void
cm_fetch_response_release(struct cm_fetch_response *resp)
{
	if (!resp)
		return;
	cm_buf_release(&resp->body);
	resp->status = 0;
	resp->content_type[0] = '\0';
}
