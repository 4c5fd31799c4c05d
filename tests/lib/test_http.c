/* test_http.c - the HTTP server in-process on 127.0.0.1 (port 0), driven
   with libcurl, and with raw sockets where bytes and timing matter. */
#include "common/auth.h"
#include "common/buf.h"
#include "common/http.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/metrics.h"
#include "common/tenant.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "common/banned.h"

/* ---- handlers and hooks ------------------------------------------------ */

static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;
static char order[32];	    /* A auth, T tenant, H handler */
static atomic_int sleepers; /* /sleep handlers entered */
static pthread_mutex_t tid_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_t tids[64];
static int ntids;
static atomic_int inside;     /* /sleep handlers running right now */
static atomic_int max_inside; /* the most that ever ran at once */

static void
order_add(char c)
{
	size_t n;

	pthread_mutex_lock(&order_mu);
	n = strlen(order);
	if (n + 1 < sizeof(order))
		order[n] = c;
	pthread_mutex_unlock(&order_mu);
}

static void
order_get(char out[32])
{
	pthread_mutex_lock(&order_mu);
	memcpy(out, order, 32);
	memset(order, 0, sizeof(order));
	pthread_mutex_unlock(&order_mu);
}

static void
add_str(cJSON *j, const char *name, const char *v)
{
	if (v)
		cJSON_AddStringToObject(j, name, v);
	else
		cJSON_AddNullToObject(j, name);
}

static void
h_ok(struct cm_req *req, void *arg)
{
	cJSON *j = cJSON_CreateObject();

	(void)arg;
	cJSON_AddStringToObject(j, "status", "ok");
	cm_req_reply_json(req, 200, j);
	cJSON_Delete(j);
}

/* Everything the request accessors say, as JSON. */
static void
h_echo(struct cm_req *req, void *arg)
{
	cJSON *j = cJSON_CreateObject();
	int64_t n = 0;

	(void)arg;
	add_str(j, "route", cm_req_route(req)->pattern);
	add_str(j, "method", cm_req_method(req));
	add_str(j, "path", cm_req_path(req));
	add_str(j, "id", cm_req_param(req, "id"));
	add_str(j, "rest", cm_req_param(req, "*"));
	add_str(j, "q", cm_req_query(req, "q"));
	add_str(j, "x", cm_req_query(req, "x"));
	add_str(j, "host", cm_req_host(req));
	add_str(j, "peer", cm_req_peer(req));
	add_str(j, "request_id", cm_req_id(req));
	add_str(j, "uri", cm_req_uri(req));
	if (cm_req_param_i64(req, "id", 1, 1000, &n) == 0)
		cJSON_AddNumberToObject(j, "n", (double)n);
	cm_req_reply_json(req, 200, j);
	cJSON_Delete(j);
}

/* What the server kept of a request: parameter, path, a header, the
   query, and the body's length and byte sum. */
static void
h_kept(struct cm_req *req, void *arg)
{
	struct cm_buf b = CM_BUF_INIT(1024);
	const char *data, *agent = cm_req_header(req, "X-Agent");
	const char *x = cm_req_query(req, "x");
	unsigned sum = 0;
	size_t len, i;

	(void)arg;
	cm_req_body(req, &data, &len);
	for (i = 0; i < len; i++)
		sum += (unsigned char)data[i];
	cm_buf_printf(&b, "%s|%s|%s|%s|%zu|%u", cm_req_param(req, "name"),
		      cm_req_path(req), agent ? agent : "-", x ? x : "-", len,
		      sum);
	cm_req_reply(req, 200, "text/plain", b.data, b.len);
	cm_buf_release(&b);
}

static void
h_json(struct cm_req *req, void *arg)
{
	cJSON *in = NULL;
	int status;

	(void)arg;
	status = cm_req_json(req, &in);
	if (status) {
		ck_assert_ptr_null(in);
		cm_req_reply_json(req, status, NULL);
		return;
	}
	cm_req_reply_json(req, 201, in);
	cJSON_Delete(in);
}

static void
h_forget(struct cm_req *req, void *arg)
{
	(void)req;
	(void)arg;
}

static void
h_twice(struct cm_req *req, void *arg)
{
	cJSON *j = cJSON_CreateObject();

	(void)arg;
	cJSON_AddStringToObject(j, "first", "yes");
	ck_assert(!cm_req_replied(req));
	cm_req_set_header(req, "X-Custom", "custom-value");
	cm_req_set_header(req, "X-Evil", "a\r\nX-Injected: 1");
	cm_req_reply_json(req, 200, j);
	ck_assert(cm_req_replied(req));
	cm_req_set_header(req, "X-Late", "late");
	cm_req_reply_json(req, 500, NULL);
	cm_req_reply(req, 201, "text/plain", "second", 6);
	cJSON_Delete(j);
}

/* A recorded error wins over the json given to the reply. */
static void
h_fail(struct cm_req *req, void *arg)
{
	cJSON *j = cJSON_CreateObject();
	int status;

	(void)arg;
	status = cm_req_fail(req, 422, "bad_thing", "x must be %d", 5);
	ck_assert_int_eq(status, 422);
	cm_req_reply_json(req, 200, j);
	cJSON_Delete(j);
}

static void
h_unavailable(struct cm_req *req, void *arg)
{
	(void)arg;
	cm_req_reply_json(req, 503, NULL);
}

#define BIG_LEN ((size_t)16 << 20)

static void
h_big(struct cm_req *req, void *arg)
{
	char *big = cm_xmalloc(BIG_LEN);

	(void)arg;
	memset(big, 'z', BIG_LEN);
	cm_req_reply(req, 200, "text/plain", big, BIG_LEN);
	free(big);
}

static void
h_text(struct cm_req *req, void *arg)
{
	(void)arg;
	cm_req_reply(req, 200, "text/plain", "hello", 5);
}

/* cm_req_param_i64 without such a parameter. */
static void
h_noparam(struct cm_req *req, void *arg)
{
	int64_t n = 7;

	(void)arg;
	ck_assert_int_eq(cm_req_param_i64(req, "id", 0, 10, &n), CM_ENOENT);
	ck_assert_int_eq(n, 7);
	ck_assert_ptr_null(cm_req_param(req, "id"));
	ck_assert_ptr_null(cm_req_query(req, "missing"));
	ck_assert_str_eq(cm_req_path(req), "/noparam");
	cm_req_reply_json(req, 204, NULL);
}

static void
note_inside(int n)
{
	int seen = atomic_load(&max_inside);

	while (n > seen && !atomic_compare_exchange_weak(&max_inside, &seen, n))
		;
}

static void
h_sleep(struct cm_req *req, void *arg)
{
	cJSON *j = cJSON_CreateObject();
	int64_t ms = 0;

	(void)arg;
	ck_assert_int_eq(cm_req_param_i64(req, "ms", 0, 5000, &ms), 0);
	atomic_fetch_add(&sleepers, 1);
	pthread_mutex_lock(&tid_mu);
	if (ntids < 64)
		tids[ntids++] = pthread_self();
	pthread_mutex_unlock(&tid_mu);
	note_inside(atomic_fetch_add(&inside, 1) + 1);
	usleep((useconds_t)ms * 1000);
	atomic_fetch_sub(&inside, 1);
	cJSON_AddNumberToObject(j, "slept", (double)ms);
	cm_req_reply_json(req, 200, j);
	cJSON_Delete(j);
}

static void
h_order(struct cm_req *req, void *arg)
{
	const struct cm_principal *p = cm_req_principal(req);
	cJSON *j = cJSON_CreateObject();

	(void)arg;
	order_add('H');
	cm_log_info("handler ran");
	add_str(j, "sub", p ? p->sub : NULL);
	add_str(j, "tenant", cm_req_tenant_id(req));
	add_str(j, "slug",
		cm_req_tenant(req) ? cm_req_tenant(req)->slug : NULL);
	cJSON_AddNumberToObject(j, "flags", (double)cm_req_route(req)->flags);
	cm_req_reply_json(req, 200, j);
	cJSON_Delete(j);
}

/* ---- deferred replies and streams ---- */

static atomic_int hold_closed;	/* 1: client gone, 2: server stopping */
static atomic_int stream_ticks; /* ticks seen by /stream */

/* GET /deferred/:id?q=: answered on the first tick, 30 ms later. */
static void
deferred_tick(struct cm_req *req, void *arg)
{
	cJSON *j = cJSON_CreateObject();

	(void)arg;
	add_str(j, "id", cm_req_param(req, "id"));
	add_str(j, "q", cm_req_query(req, "q"));
	add_str(j, "path", cm_req_path(req));
	cm_req_reply_json(req, 200, j); /* the final call: frees req */
	cJSON_Delete(j);
}

static void
h_deferred(struct cm_req *req0, void *arg)
{
	struct cm_req *req;

	(void)arg;
	(void)cm_req_query(req0, "q"); /* parsed before: must survive */
	req = cm_req_defer(req0);
	ck_assert_ptr_nonnull(req);
	ck_assert_ptr_null(cm_req_defer(req0)); /* only once */
	ck_assert_int_eq(cm_req_every(req, 30, deferred_tick, NULL), 0);
	ck_assert_int_eq(cm_req_every(req, 30, deferred_tick, NULL), CM_EINVAL);
}

/* GET /wait/:n: deferred until wait_gate >= n, looked at only when
   woken (cm_req_wait); wait_looks counts the looks. */
static atomic_int wait_gate;
static atomic_int wait_looks;

static void
wait_look(struct cm_req *req, void *arg)
{
	int64_t n = 0;

	(void)arg;
	atomic_fetch_add(&wait_looks, 1);
	ck_assert_int_eq(cm_parse_i64(cm_req_param(req, "n"), 0, 100, &n), 0);
	if (atomic_load(&wait_gate) >= n)
		cm_req_reply(req, 200, "text/plain", "open", 4);
}

static void
h_wait(struct cm_req *req0, void *arg)
{
	struct cm_req *req;

	(void)arg;
	ck_assert_int_eq(cm_req_wait(req0, wait_look, NULL), CM_EINVAL);
	req = cm_req_defer(req0);
	ck_assert_int_eq(cm_req_wait(req, wait_look, NULL), 0);
	ck_assert_int_eq(cm_req_wait(req, wait_look, NULL), CM_EINVAL);
}

/* GET /stream: "a\n", then "tick\n" every 20 ms three times, then end. */
static void
stream_tick(struct cm_req *req, void *arg)
{
	(void)arg;
	if (atomic_fetch_add(&stream_ticks, 1) < 3) {
		ck_assert_int_eq(cm_req_stream_write(req, "tick\n", 5), 0);
		return;
	}
	cm_req_stream_end(req);
}

static void
h_stream(struct cm_req *req0, void *arg)
{
	struct cm_req *req;

	(void)arg;
	ck_assert_int_eq(cm_req_stream_begin(req0, 200, "text/plain"),
			 CM_EINVAL); /* not deferred */
	req = cm_req_defer(req0);
	cm_req_set_header(req, "X-Stream", "yes");
	ck_assert_int_eq(cm_req_stream_begin(req, 200, "text/event-stream"), 0);
	ck_assert_int_eq(cm_req_stream_write(req, "a\n", 2), 0);
	ck_assert_int_eq(cm_req_every(req, 20, stream_tick, NULL), 0);
}

/* GET /hold: a stream that stays open until the client leaves or the
   server stops. */
static void
hold_close(struct cm_req *req, void *arg)
{
	(void)arg;
	atomic_store(&hold_closed, cm_req_client_gone(req) ? 1 : 2);
	cm_req_stream_end(req);
}

static void
h_hold(struct cm_req *req0, void *arg)
{
	struct cm_req *req = cm_req_defer(req0);

	(void)arg;
	ck_assert_int_eq(cm_req_stream_begin(req, 200, "text/event-stream"), 0);
	ck_assert_int_eq(cm_req_stream_write(req, "x\n", 2), 0);
	cm_req_on_close(req, hold_close, NULL);
}

/* GET /etag: what cm_req_if_match made of If-Match; ETag "7". */
static void
h_etag(struct cm_req *req, void *arg)
{
	cJSON *j = cJSON_CreateObject();
	int64_t v = 42;
	int rc = cm_req_if_match(req, &v);

	(void)arg;
	cJSON_AddNumberToObject(j, "rc", rc);
	cJSON_AddNumberToObject(j, "version", (double)v);
	cm_req_set_etag(req, 7);
	cm_req_reply_json(req, 200, j);
	cJSON_Delete(j);
}

static int
test_auth(struct cm_req *req, void *arg)
{
	const char *a = cm_req_header(req, "X-Test-Auth");
	struct cm_principal p;

	(void)arg;
	order_add('A');
	if (a && !strcmp(a, "deny"))
		return cm_req_fail(req, 401, "unauthenticated",
				   "sign in first");
	if (a && !strcmp(a, "silent"))
		return 403; /* nothing recorded: a generic body */
	memset(&p, 0, sizeof(p));
	cm_strlcpy(p.sub, "user-1", sizeof(p.sub));
	cm_req_set_principal(req, &p);
	return 0;
}

static int
test_tenant(struct cm_req *req, void *arg)
{
	const char *t = cm_req_header(req, "X-Test-Tenant");
	struct cm_tenant ten;

	(void)arg;
	order_add('T');
	if (t && !strcmp(t, "none"))
		return cm_req_fail(req, 400, "tenant_required",
				   "no tenant given");
	memset(&ten, 0, sizeof(ten));
	cm_strlcpy(ten.id, "tenant-1", sizeof(ten.id));
	cm_strlcpy(ten.slug, "acme", sizeof(ten.slug));
	cm_req_set_tenant(req, &ten);
	return 0;
}

static const struct cm_route routes[] = {
	{ "GET", "/health", h_ok, CM_ROUTE_PUBLIC },
	{ "GET", "/items/:id", h_echo, CM_ROUTE_PUBLIC },
	{ "GET", "/items/new", h_ok, CM_ROUTE_PUBLIC }, /* shadowed */
	{ "DELETE", "/items/:id", h_echo, CM_ROUTE_PUBLIC },
	{ "GET", "/files/*", h_echo, CM_ROUTE_PUBLIC },
	{ "GET", "/", h_echo, CM_ROUTE_PUBLIC },
	{ "GET", "/a", h_echo, CM_ROUTE_PUBLIC },
	{ "POST", "/json", h_json, CM_ROUTE_PUBLIC },
	{ "POST", "/echo/:name", h_kept, CM_ROUTE_PUBLIC },
	{ "POST", "/upload", h_ok, CM_ROUTE_PUBLIC },
	{ "GET", "/forget", h_forget, CM_ROUTE_PUBLIC },
	{ "GET", "/twice", h_twice, CM_ROUTE_PUBLIC },
	{ "GET", "/fail", h_fail, CM_ROUTE_PUBLIC },
	{ "GET", "/unavailable", h_unavailable, CM_ROUTE_PUBLIC },
	{ "GET", "/text", h_text, CM_ROUTE_PUBLIC },
	{ "GET", "/big", h_big, CM_ROUTE_PUBLIC },
	{ "GET", "/noparam", h_noparam, CM_ROUTE_PUBLIC },
	{ "GET", "/sleep/:ms", h_sleep, CM_ROUTE_PUBLIC },
	{ "GET", "/private", h_order, 0 },
	{ "GET", "/platform", h_order, CM_ROUTE_NO_TENANT },
	{ "GET", "/internal", h_order, CM_ROUTE_SERVICE_ONLY },
	{ "GET", "/public", h_order, CM_ROUTE_PUBLIC },
	{ "GET", "/deferred/:id", h_deferred, CM_ROUTE_PUBLIC },
	{ "GET", "/stream", h_stream, CM_ROUTE_PUBLIC },
	{ "GET", "/wait/:n", h_wait, CM_ROUTE_PUBLIC },
	{ "GET", "/hold", h_hold, CM_ROUTE_PUBLIC },
	{ "GET", "/etag", h_etag, CM_ROUTE_PUBLIC },
	CM_ROUTE_END,
};

/* ---- server fixture ---------------------------------------------------- */

struct server {
	struct cm_http *http;
	int port;
};

static struct cm_http_config
base_config(void)
{
	struct cm_http_config c;

	memset(&c, 0, sizeof(c));
	c.service = "test";
	c.bind_addr = "127.0.0.1";
	c.threads = 1;
	c.max_body = 1024;
	c.max_header = 1024;
	c.read_timeout_ms = 5000;
	c.write_timeout_ms = 5000;
	c.drain_timeout_ms = 3000;
	c.cors_origins = "https://app.example, https://admin.example";
	return c;
}

static void
server_start_cfg(struct server *s, const struct cm_http_config *cfg)
{
	static const struct cm_http_hooks hooks = { test_auth, test_tenant,
						    NULL };
	char errbuf[CM_ERRBUF_LEN] = "";

	s->http = cm_http_new(cfg, routes, NULL, &hooks);
	ck_assert_ptr_nonnull(s->http);
	ck_assert_msg(cm_http_start(s->http, errbuf) == 0, "start: %s", errbuf);
	s->port = cm_http_port(s->http);
	ck_assert_int_gt(s->port, 0);
}

static void
server_start(struct server *s)
{
	struct cm_http_config cfg = base_config();

	server_start_cfg(s, &cfg);
}

static void
server_stop(struct server *s)
{
	cm_http_stop(s->http);
	ck_assert_int_eq(cm_http_wait(s->http), 0);
	cm_http_free(s->http);
	s->http = NULL;
}

static int64_t
ms_since(int64_t t0)
{
	return cm_now_ms() - t0;
}

/* ---- libcurl client ---------------------------------------------------- */

struct resp {
	long status;
	struct cm_buf head;
	struct cm_buf body;
	cJSON *json;
};

static size_t
collect(char *p, size_t size, size_t n, void *arg)
{
	cm_buf_add(arg, p, size * n);
	return size * n;
}

static void
resp_free(struct resp *r)
{
	cm_buf_release(&r->head);
	cm_buf_release(&r->body);
	cJSON_Delete(r->json);
	memset(r, 0, sizeof(*r));
}

/* One request on a fresh connection; headers is NULL-ended or NULL. */
static void
http_do(int port, const char *method, const char *path,
	const char *const *headers, const char *body, struct resp *r)
{
	struct curl_slist *hl = NULL;
	char url[512];
	CURL *c = curl_easy_init();
	CURLcode rc;

	memset(r, 0, sizeof(*r));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	for (; headers && *headers; headers++)
		hl = curl_slist_append(hl, *headers);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->head);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	else if (strcmp(method, "GET"))
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	rc = curl_easy_perform(c);
	ck_assert_msg(rc == CURLE_OK, "%s %s: %s", method, path,
		      curl_easy_strerror(rc));
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_cleanup(c);
	curl_slist_free_all(hl);
	if (r->body.len)
		r->json = cJSON_Parse(cm_buf_str(&r->body));
}

static void
http_get(int port, const char *path, struct resp *r)
{
	http_do(port, "GET", path, NULL, NULL, r);
}

/* A response header's value, or NULL (static storage; one at a time). */
static const char *
header_in(const char *head, const char *name)
{
	static char value[1024];
	size_t n = strlen(name);
	const char *line, *end;

	for (line = head; line && *line; line = strstr(line, "\n")) {
		if (*line == '\n')
			line++;
		if (strncasecmp(line, name, n) || line[n] != ':')
			continue;
		line += n + 1;
		while (*line == ' ')
			line++;
		end = strpbrk(line, "\r\n");
		n = end ? (size_t)(end - line) : strlen(line);
		if (n >= sizeof(value))
			n = sizeof(value) - 1;
		memcpy(value, line, n);
		value[n] = '\0';
		return value;
	}
	return NULL;
}

static const char *
resp_header(const struct resp *r, const char *name)
{
	return header_in(cm_buf_str(&r->head), name);
}

static const char *
json_str(const cJSON *j, const char *name)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, name);

	return cJSON_IsString(f) ? f->valuestring : NULL;
}

/* The error object of an error body, checked for its shape. */
static const cJSON *
error_of(const char *text)
{
	static cJSON *doc;
	const cJSON *e;

	cJSON_Delete(doc);
	doc = cJSON_Parse(text);
	ck_assert_msg(doc != NULL, "not JSON: %s", text);
	e = cJSON_GetObjectItemCaseSensitive(doc, "error");
	ck_assert_msg(cJSON_IsObject(e), "no error object: %s", text);
	ck_assert_ptr_nonnull(json_str(e, "code"));
	ck_assert_ptr_nonnull(json_str(e, "message"));
	ck_assert_ptr_nonnull(json_str(e, "request_id"));
	return e;
}

static const char *
error_code(const struct resp *r)
{
	return json_str(error_of(cm_buf_str(&r->body)), "code");
}

/* ---- raw sockets ------------------------------------------------------- */

static int
raw_connect(int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void
raw_send(int fd, const char *s, size_t n)
{
	ssize_t w;

	while (n) {
		w = send(fd, s, n, MSG_NOSIGNAL);
		if (w <= 0)
			return; /* the server may have answered and closed */
		s += w;
		n -= (size_t)w;
	}
}

/* Read into out until the peer closes (true) or timeout_ms passes. */
static bool
raw_read_all(int fd, struct cm_buf *out, int timeout_ms)
{
	int64_t t0 = cm_now_ms();
	struct pollfd p = { fd, POLLIN, 0 };
	char chunk[4096];
	ssize_t n;

	while (ms_since(t0) < timeout_ms) {
		if (poll(&p, 1, 50) <= 0)
			continue;
		n = recv(fd, chunk, sizeof(chunk), 0);
		if (n <= 0)
			return true;
		cm_buf_add(out, chunk, (size_t)n);
	}
	return false;
}

/* Send a request on a fresh connection and read the answer to the end. */
static bool
raw_exchange(int port, const char *req, size_t len, struct cm_buf *out)
{
	int fd = raw_connect(port);
	bool closed;

	raw_send(fd, req, len);
	closed = raw_read_all(fd, out, 5000);
	close(fd);
	return closed;
}

static bool
connect_refused(int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int rc;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return rc < 0 && errno == ECONNREFUSED;
}

static const char *
raw_body(const struct cm_buf *b)
{
	const char *p = strstr(cm_buf_str(b), "\r\n\r\n");

	return p ? p + 4 : "";
}

/* ---- routing ----------------------------------------------------------- */

START_TEST(test_params_are_decoded_per_segment)
{
	struct server s;
	struct resp r;

	server_start(&s);
	http_get(s.port, "/items/a%20b%2Fc?q=x+y&x=%41", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(json_str(r.json, "route"), "/items/:id");
	ck_assert_str_eq(json_str(r.json, "id"), "a b/c");
	ck_assert_str_eq(json_str(r.json, "path"), "/items/a b/c");
	ck_assert_str_eq(json_str(r.json, "q"), "x y");
	ck_assert_str_eq(json_str(r.json, "x"), "A");
	ck_assert_str_eq(json_str(r.json, "peer"), "127.0.0.1");
	resp_free(&r);
	http_get(s.port, "/items/42", &r);
	ck_assert_int_eq((int)cJSON_GetObjectItem(r.json, "n")->valuedouble,
			 42);
	resp_free(&r);
	http_get(s.port, "/items/4200", &r); /* out of range: no "n" */
	ck_assert_ptr_null(cJSON_GetObjectItem(r.json, "n"));
	resp_free(&r);
	http_get(s.port, "/items/4x", &r);
	ck_assert_ptr_null(cJSON_GetObjectItem(r.json, "n"));
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_missing_parameter_and_empty_reply)
{
	struct server s;
	struct resp r;

	server_start(&s);
	http_get(s.port, "/noparam", &r);
	ck_assert_int_eq(r.status, 204);
	ck_assert_uint_eq(r.body.len, 0);
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_first_route_in_table_order_wins)
{
	struct server s;
	struct resp r;

	server_start(&s);
	http_get(s.port, "/items/new", &r);
	ck_assert_str_eq(json_str(r.json, "route"), "/items/:id");
	ck_assert_str_eq(json_str(r.json, "id"), "new");
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_catch_all_takes_the_rest_of_the_path)
{
	struct server s;
	struct resp r;

	server_start(&s);
	http_get(s.port, "/files/a/b%20c/d", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(json_str(r.json, "rest"), "a/b c/d");
	resp_free(&r);
	http_get(s.port, "/files/", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(json_str(r.json, "rest"), "");
	resp_free(&r);
	http_get(s.port, "/files", &r);
	ck_assert_int_eq(r.status, 404);
	resp_free(&r);
	http_get(s.port, "/", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(json_str(r.json, "route"), "/");
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_trailing_slash_and_empty_segments_do_not_match)
{
	struct server s;
	struct resp r;

	server_start(&s);
	http_get(s.port, "/a", &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	http_get(s.port, "/a/", &r);
	ck_assert_int_eq(r.status, 404);
	resp_free(&r);
	http_get(s.port, "/items/", &r);
	ck_assert_int_eq(r.status, 404);
	resp_free(&r);
	http_get(s.port, "/items//x", &r);
	ck_assert_int_eq(r.status, 404);
	resp_free(&r);
	http_get(s.port, "//a", &r); /* an empty segment, then "a" */
	ck_assert_int_eq(r.status, 404);
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_unknown_path_is_404_json)
{
	struct server s;
	struct resp r;

	server_start(&s);
	http_get(s.port, "/nope/nothing", &r);
	ck_assert_int_eq(r.status, 404);
	ck_assert_str_eq(error_code(&r), "not_found");
	ck_assert_str_eq(resp_header(&r, "Content-Type"), "application/json");
	ck_assert_str_eq(json_str(error_of(cm_buf_str(&r.body)), "request_id"),
			 resp_header(&r, "X-Request-ID"));
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_wrong_method_is_405_with_allow)
{
	struct server s;
	struct resp r;

	server_start(&s);
	http_do(s.port, "POST", "/items/7", NULL, "", &r);
	ck_assert_int_eq(r.status, 405);
	ck_assert_str_eq(error_code(&r), "method_not_allowed");
	ck_assert_str_eq(resp_header(&r, "Allow"),
			 "GET, HEAD, DELETE, OPTIONS");
	resp_free(&r);
	http_do(s.port, "DELETE", "/items/7", NULL, NULL, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(json_str(r.json, "method"), "DELETE");
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_head_runs_the_get_route_without_a_body)
{
	struct server s;
	struct resp r;

	server_start(&s);
	http_do(s.port, "HEAD", "/health", NULL, NULL, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(r.body.len, 0);
	ck_assert_str_eq(resp_header(&r, "Content-Length"), "15");
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_bad_percent_encoding_and_encoded_nul_are_400)
{
	static const char *const paths[] = { "/items/%zz", "/items/%4",
					     "/items/a%00b", "/items/%" };
	struct server s;
	struct resp r;
	size_t i;

	server_start(&s);
	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		http_get(s.port, paths[i], &r);
		ck_assert_msg(r.status == 400, "%s: %ld", paths[i], r.status);
		ck_assert_str_eq(error_code(&r), "bad_request");
		resp_free(&r);
	}
	server_stop(&s);
}
END_TEST

START_TEST(test_host_is_lowercased_without_port)
{
	static const char *const v4[] = { "Host: Example.COM:8080", NULL };
	static const char *const v6[] = { "Host: [::1]:8080", NULL };
	static const char *const bad[] = { "Host: [::1", NULL };
	struct server s;
	struct resp r;

	server_start(&s);
	http_do(s.port, "GET", "/items/1", v4, NULL, &r);
	ck_assert_str_eq(json_str(r.json, "host"), "example.com");
	resp_free(&r);
	http_do(s.port, "GET", "/items/1", v6, NULL, &r);
	ck_assert_str_eq(json_str(r.json, "host"), "[::1]");
	resp_free(&r);
	http_do(s.port, "GET", "/items/1", bad, NULL, &r);
	ck_assert_str_eq(json_str(r.json, "host"), "");
	resp_free(&r);
	server_stop(&s);
}
END_TEST

/* An absolute-form target is routed by its path; what a proxy forwards
   is the path and query. */
START_TEST(test_an_absolute_form_target_is_routed_by_its_path)
{
	static const char req[] = "GET http://Example.com/items/5?q=z HTTP/1.1"
				  "\r\nHost: example.com\r\n"
				  "Connection: close\r\n\r\n";
	struct cm_buf out = CM_BUF_INIT(0);
	struct server s;
	cJSON *j;

	server_start(&s);
	ck_assert(raw_exchange(s.port, req, strlen(req), &out));
	ck_assert_msg(!strncmp(cm_buf_str(&out), "HTTP/1.1 200 ", 13), "%s",
		      cm_buf_str(&out));
	j = cJSON_Parse(raw_body(&out));
	ck_assert_ptr_nonnull(j);
	ck_assert_str_eq(json_str(j, "path"), "/items/5");
	ck_assert_str_eq(json_str(j, "id"), "5");
	ck_assert_str_eq(json_str(j, "q"), "z");
	ck_assert_str_eq(json_str(j, "uri"), "/items/5?q=z");
	cJSON_Delete(j);
	cm_buf_release(&out);
	server_stop(&s);
}
END_TEST

START_TEST(test_malformed_route_tables_are_refused)
{
	static const struct cm_route bad[][2] = {
		{ { "GET", "items", h_ok, 0 }, CM_ROUTE_END },
		{ { "GET", "/a//b", h_ok, 0 }, CM_ROUTE_END },
		{ { "GET", "/a/", h_ok, 0 }, CM_ROUTE_END },
		{ { "GET", "/a/*/b", h_ok, 0 }, CM_ROUTE_END },
		{ { "GET", "/a*", h_ok, 0 }, CM_ROUTE_END },
		{ { "GET", "/:", h_ok, 0 }, CM_ROUTE_END },
		{ { "GET", "/:a-b", h_ok, 0 }, CM_ROUTE_END },
		{ { "GET", "/:a/:a", h_ok, 0 }, CM_ROUTE_END },
		{ { "FETCH", "/a", h_ok, 0 }, CM_ROUTE_END },
		{ { "GET", "/a", NULL, 0 }, CM_ROUTE_END },
		{ { NULL, "/a", h_ok, 0 }, CM_ROUTE_END },
	};
	static const struct cm_route good[] = {
		{ "GET", "/", h_ok, 0 },
		{ "PATCH", "/a/:b/c/*", h_ok, 0 },
		CM_ROUTE_END,
	};
	struct cm_http_config cfg = base_config();
	struct cm_http *h;
	size_t i;

	cm_log_threshold = CM_LOG_OFF;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(cm_http_new(&cfg, bad[i], NULL, NULL) == NULL,
			      "route %zu accepted", i);
	ck_assert_ptr_null(cm_http_new(&cfg, NULL, NULL, NULL));
	h = cm_http_new(&cfg, good, NULL, NULL);
	ck_assert_ptr_nonnull(h);
	cm_http_free(h);
	cm_http_free(NULL);
}
END_TEST

/* ---- request id, replies, headers -------------------------------------- */

START_TEST(test_request_id_is_minted_echoed_or_replaced)
{
	static const char *const good[] = { "X-Request-ID: abc.DEF_1-2", NULL };
	static const char *const bad[] = { "X-Request-ID: bad id!", NULL };
	char long_id[160], hdr[200];
	const char *longh[] = { hdr, NULL };
	struct server s;
	struct resp r;

	server_start(&s);
	http_get(s.port, "/items/1", &r);
	ck_assert(cm_is_uuid(resp_header(&r, "X-Request-ID")));
	ck_assert_str_eq(json_str(r.json, "request_id"),
			 resp_header(&r, "X-Request-ID"));
	resp_free(&r);
	http_do(s.port, "GET", "/items/1", good, NULL, &r);
	ck_assert_str_eq(resp_header(&r, "X-Request-ID"), "abc.DEF_1-2");
	resp_free(&r);
	http_do(s.port, "GET", "/items/1", bad, NULL, &r);
	ck_assert(cm_is_uuid(resp_header(&r, "X-Request-ID")));
	resp_free(&r);
	memset(long_id, 'a', 128);
	long_id[128] = '\0';
	snprintf(hdr, sizeof(hdr), "X-Request-ID: %s", long_id);
	http_do(s.port, "GET", "/items/1", longh, NULL, &r);
	ck_assert_str_eq(resp_header(&r, "X-Request-ID"), long_id);
	resp_free(&r);
	snprintf(hdr, sizeof(hdr), "X-Request-ID: %sa", long_id);
	http_do(s.port, "GET", "/items/1", longh, NULL, &r);
	ck_assert(cm_is_uuid(resp_header(&r, "X-Request-ID")));
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_minted_request_ids_are_distinct_v4_uuids)
{
	char seen[50][37];
	struct server s;
	struct resp r;
	int i, j;

	server_start(&s);
	for (i = 0; i < 50; i++) {
		http_get(s.port, "/health", &r);
		cm_strlcpy(seen[i], resp_header(&r, "X-Request-ID"), 37);
		ck_assert(cm_is_uuid(seen[i]));
		ck_assert_int_eq(seen[i][14], '4');
		for (j = 0; j < i; j++)
			ck_assert_str_ne(seen[i], seen[j]);
		resp_free(&r);
	}
	server_stop(&s);
}
END_TEST

START_TEST(test_security_headers_are_on_every_response)
{
	static const char *const paths[] = { "/health", "/nope", "/text" };
	struct server s;
	struct resp r;
	size_t i;

	server_start(&s);
	for (i = 0; i < 3; i++) {
		http_get(s.port, paths[i], &r);
		ck_assert_str_eq(resp_header(&r, "X-Content-Type-Options"),
				 "nosniff");
		ck_assert_str_eq(resp_header(&r, "X-Frame-Options"), "DENY");
		ck_assert_str_eq(resp_header(&r, "Referrer-Policy"),
				 "no-referrer");
		ck_assert_ptr_nonnull(resp_header(&r, "Date"));
		if (i < 2) {
			ck_assert_str_eq(resp_header(&r, "Cache-Control"),
					 "no-store");
			ck_assert_str_eq(
				resp_header(&r, "Content-Security-Policy"),
				"default-src 'none'; frame-ancestors 'none'");
		} else {
			ck_assert_ptr_null(resp_header(&r, "Cache-Control"));
			ck_assert_str_eq(resp_header(&r, "Content-Type"),
					 "text/plain");
			ck_assert_str_eq(cm_buf_str(&r.body), "hello");
		}
		resp_free(&r);
	}
	server_stop(&s);
}
END_TEST

START_TEST(test_handler_that_forgets_to_reply_gets_500)
{
	struct server s;
	struct resp r;

	server_start(&s);
	http_get(s.port, "/forget", &r);
	ck_assert_int_eq(r.status, 500);
	ck_assert_str_eq(error_code(&r), "internal");
	resp_free(&r);
	http_get(s.port, "/health", &r); /* the server is fine */
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_only_the_first_reply_is_sent)
{
	struct server s;
	struct resp r;

	server_start(&s);
	http_get(s.port, "/twice", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(json_str(r.json, "first"), "yes");
	ck_assert_str_eq(resp_header(&r, "X-Custom"), "custom-value");
	ck_assert_ptr_null(resp_header(&r, "X-Evil"));
	ck_assert_ptr_null(resp_header(&r, "X-Injected"));
	ck_assert_ptr_null(resp_header(&r, "X-Late"));
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_recorded_error_wins_and_generic_errors_are_named)
{
	struct server s;
	struct resp r;
	const cJSON *e;

	server_start(&s);
	http_get(s.port, "/fail", &r);
	ck_assert_int_eq(r.status, 422);
	e = error_of(cm_buf_str(&r.body));
	ck_assert_str_eq(json_str(e, "code"), "bad_thing");
	ck_assert_str_eq(json_str(e, "message"), "x must be 5");
	resp_free(&r);
	http_get(s.port, "/unavailable", &r);
	ck_assert_int_eq(r.status, 503);
	ck_assert_str_eq(error_code(&r), "unavailable");
	resp_free(&r);
	server_stop(&s);
}
END_TEST

/* ---- JSON bodies -------------------------------------------------------- */

static void
post_json(int port, const char *ctype, const char *body, struct resp *r)
{
	char hdr[128];
	const char *h[] = { hdr, NULL };

	snprintf(hdr, sizeof(hdr), "Content-Type: %s", ctype);
	http_do(port, "POST", "/json", h, body, r);
}

START_TEST(test_json_body_is_parsed)
{
	struct server s;
	struct resp r;

	server_start(&s);
	post_json(s.port, "application/json", "{\"a\":[1,2]}", &r);
	ck_assert_int_eq(r.status, 201);
	ck_assert_str_eq(cm_buf_str(&r.body), "{\"a\":[1,2]}");
	resp_free(&r);
	post_json(s.port, "Application/JSON; charset=utf-8", "{}", &r);
	ck_assert_int_eq(r.status, 201);
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_malformed_json_is_400_naming_line_and_column)
{
	struct server s;
	struct resp r;
	const cJSON *e;

	server_start(&s);
	post_json(s.port, "application/json", "{\"a\":\n  1,,}", &r);
	ck_assert_int_eq(r.status, 400);
	e = error_of(cm_buf_str(&r.body));
	ck_assert_str_eq(json_str(e, "code"), "invalid_json");
	ck_assert_msg(strstr(json_str(e, "message"), "line 2, column "), "%s",
		      json_str(e, "message"));
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_empty_or_non_object_json_is_400)
{
	struct server s;
	struct resp r;

	server_start(&s);
	post_json(s.port, "application/json", "", &r);
	ck_assert_int_eq(r.status, 400);
	ck_assert_str_eq(error_code(&r), "invalid_json");
	resp_free(&r);
	post_json(s.port, "application/json", "[1]", &r);
	ck_assert_int_eq(r.status, 400);
	ck_assert_str_eq(error_code(&r), "invalid_json");
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_wrong_content_type_is_415)
{
	static const char *const types[] = {
		"text/plain", "application/jsonx",
		"application/x-www-form-urlencoded"
	};
	struct server s;
	struct resp r;
	size_t i;

	server_start(&s);
	for (i = 0; i < 3; i++) {
		post_json(s.port, types[i], "{}", &r);
		ck_assert_int_eq(r.status, 415);
		ck_assert_str_eq(error_code(&r), "unsupported_media_type");
		resp_free(&r);
	}
	server_stop(&s);
}
END_TEST

/* ---- limits -------------------------------------------------------------- */

static void
assert_json_error(const struct cm_buf *raw, const char *status_line,
		  const char *code)
{
	const char *text = cm_buf_str(raw);

	ck_assert_msg(!strncmp(text, status_line, strlen(status_line)),
		      "got: %.200s", text);
	ck_assert_str_eq(header_in(text, "Content-Type"), "application/json");
	ck_assert_str_eq(header_in(text, "Connection"), "close");
	ck_assert_str_eq(header_in(text, "X-Content-Type-Options"), "nosniff");
	ck_assert(cm_is_uuid(header_in(text, "X-Request-ID")));
	ck_assert_str_eq(json_str(error_of(raw_body(raw)), "code"), code);
}

START_TEST(test_body_over_the_limit_by_content_length_is_413_json)
{
	static const char req[] = "POST /upload HTTP/1.1\r\nHost: x\r\n"
				  "Content-Length: 100000\r\n\r\n";
	struct cm_buf out = CM_BUF_INIT(0);
	struct server s;
	struct resp r;
	char body[2048];

	server_start(&s);
	ck_assert(raw_exchange(s.port, req, strlen(req), &out));
	assert_json_error(&out, "HTTP/1.1 413 ", "payload_too_large");
	cm_buf_release(&out);
	memset(body, 'a', sizeof(body) - 1); /* the same through libcurl */
	body[sizeof(body) - 1] = '\0';
	http_do(s.port, "POST", "/upload", NULL, body, &r);
	ck_assert_int_eq(r.status, 413);
	ck_assert_str_eq(error_code(&r), "payload_too_large");
	resp_free(&r);
	body[1024] = '\0'; /* exactly max_body is fine */
	http_do(s.port, "POST", "/upload", NULL, body, &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_chunked_body_over_the_limit_is_413_json)
{
	static const char head[] = "POST /upload HTTP/1.1\r\nHost: x\r\n"
				   "Transfer-Encoding: chunked\r\n\r\n";
	struct cm_buf out = CM_BUF_INIT(0);
	char chunk[800 + 16];
	struct server s;
	int fd, i;

	server_start(&s);
	fd = raw_connect(s.port);
	raw_send(fd, head, strlen(head));
	snprintf(chunk, sizeof(chunk), "320\r\n");
	memset(chunk + 5, 'b', 800);
	memcpy(chunk + 805, "\r\n", 2);
	for (i = 0; i < 4; i++) /* 3200 bytes, limit 1024 */
		raw_send(fd, chunk, 807);
	ck_assert(raw_read_all(fd, &out, 5000));
	close(fd);
	assert_json_error(&out, "HTTP/1.1 413 ", "payload_too_large");
	cm_buf_release(&out);
	server_stop(&s);
}
END_TEST

START_TEST(test_chunked_body_under_the_limit_is_accepted)
{
	static const char req[] = "POST /json HTTP/1.1\r\nHost: x\r\n"
				  "Content-Type: application/json\r\n"
				  "Transfer-Encoding: chunked\r\n"
				  "Connection: close\r\n\r\n"
				  "4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
	struct cm_buf out = CM_BUF_INIT(0);
	struct server s;

	server_start(&s);
	ck_assert(raw_exchange(s.port, req, strlen(req), &out));
	ck_assert_msg(!strncmp(cm_buf_str(&out), "HTTP/1.1 201 ", 13), "%s",
		      cm_buf_str(&out));
	ck_assert_str_eq(raw_body(&out), "{\"a\":1}");
	cm_buf_release(&out);
	server_stop(&s);
}
END_TEST

/* A body far larger than the first input buffer, sent in pieces (by
   length, then in chunks): the buffer grows under a parsed head, whose
   strings must move with it. */
START_TEST(test_a_large_body_arriving_in_pieces_keeps_the_head_intact)
{
	struct cm_http_config cfg = base_config();
	struct cm_buf head = CM_BUF_INIT(0), out = CM_BUF_INIT(0);
	struct cm_buf want = CM_BUF_INIT(0);
	char *body = cm_xmalloc(300000), size[16];
	unsigned sum = 0;
	struct server s;
	size_t i, n;
	int fd, round;

	for (i = 0; i < 300000; i++) {
		body[i] = (char)('a' + i % 26);
		sum += (unsigned char)body[i];
	}
	cm_buf_printf(&want, "nAme|/echo/nAme|agent-007|1|300000|%u", sum);
	cfg.max_body = 1 << 20;
	server_start_cfg(&s, &cfg);
	for (round = 0; round < 2; round++) {
		cm_buf_reset(&head);
		cm_buf_reset(&out);
		cm_buf_printf(&head,
			      "POST /echo/n%%41me?x=1 HTTP/1.1\r\nHost: x\r\n"
			      "X-Agent: agent-007\r\nConnection: close\r\n%s"
			      "\r\n",
			      round ? "Transfer-Encoding: chunked\r\n"
				    : "Content-Length: 300000\r\n");
		fd = raw_connect(s.port);
		raw_send(fd, head.data, head.len);
		for (i = 0; i < 300000; i += n) {
			n = 300000 - i < 5000 ? 300000 - i : 5000;
			if (round) {
				snprintf(size, sizeof(size), "%zx\r\n", n);
				raw_send(fd, size, strlen(size));
			}
			raw_send(fd, body + i, n);
			if (round)
				raw_send(fd, "\r\n", 2);
			usleep(500);
		}
		if (round)
			raw_send(fd, "0\r\n\r\n", 5);
		ck_assert(raw_read_all(fd, &out, 5000));
		close(fd);
		ck_assert_msg(!strncmp(cm_buf_str(&out), "HTTP/1.1 200 ", 13),
			      "%s", cm_buf_str(&out));
		ck_assert_str_eq(raw_body(&out), cm_buf_str(&want));
	}
	server_stop(&s);
	free(body);
	cm_buf_release(&head);
	cm_buf_release(&out);
	cm_buf_release(&want);
}
END_TEST

START_TEST(test_headers_over_the_limit_are_431_and_the_connection_closes)
{
	struct cm_buf req = CM_BUF_INIT(0), out = CM_BUF_INIT(0);
	struct server s;
	char pad[3001];

	memset(pad, 'p', 3000);
	pad[3000] = '\0';
	cm_buf_printf(&req,
		      "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n",
		      pad);
	server_start(&s);
	ck_assert(raw_exchange(s.port, req.data, req.len, &out));
	assert_json_error(&out, "HTTP/1.1 431 ",
			  "request_header_fields_too_large");
	cm_buf_reset(&out);
	cm_buf_reset(&req); /* a request line alone over the limit */
	cm_buf_printf(&req, "GET /health?%s HTTP/1.1\r\nHost: x\r\n\r\n", pad);
	ck_assert(raw_exchange(s.port, req.data, req.len, &out));
	assert_json_error(&out, "HTTP/1.1 431 ",
			  "request_header_fields_too_large");
	cm_buf_release(&req);
	cm_buf_release(&out);
	server_stop(&s);
}
END_TEST

START_TEST(test_malformed_request_is_400_json)
{
	static const char junk[] = "GARBAGE\r\n\r\n";
	static const char badhdr[] = "GET /health HTTP/1.1\r\nno colon here\r\n"
				     "\r\n";
	static const char trace[] = "TRACE /health HTTP/1.1\r\nHost: x\r\n\r\n";
	struct cm_buf out = CM_BUF_INIT(0);
	struct server s;

	server_start(&s);
	ck_assert(raw_exchange(s.port, junk, strlen(junk), &out));
	assert_json_error(&out, "HTTP/1.1 400 ", "bad_request");
	cm_buf_reset(&out);
	ck_assert(raw_exchange(s.port, badhdr, strlen(badhdr), &out));
	assert_json_error(&out, "HTTP/1.1 400 ", "bad_request");
	cm_buf_reset(&out);
	ck_assert(raw_exchange(s.port, trace, strlen(trace), &out));
	assert_json_error(&out, "HTTP/1.1 501 ", "not_implemented");
	cm_buf_release(&out);
	server_stop(&s);
}
END_TEST

START_TEST(test_expect_continue_is_passed_through)
{
	static const char head[] = "POST /json HTTP/1.1\r\nHost: x\r\n"
				   "Content-Type: application/json\r\n"
				   "Expect: 100-continue\r\n"
				   "Connection: close\r\n"
				   "Content-Length: 7\r\n\r\n";
	struct cm_buf out = CM_BUF_INIT(0);
	struct server s;
	int fd;

	server_start(&s);
	fd = raw_connect(s.port);
	raw_send(fd, head, strlen(head));
	ck_assert(!raw_read_all(fd, &out, 500));
	ck_assert_str_eq(cm_buf_str(&out), "HTTP/1.1 100 Continue\r\n\r\n");
	cm_buf_reset(&out);
	raw_send(fd, "{\"a\":1}", 7);
	ck_assert(raw_read_all(fd, &out, 5000));
	close(fd);
	ck_assert_msg(!strncmp(cm_buf_str(&out), "HTTP/1.1 201 ", 13), "%s",
		      cm_buf_str(&out));
	ck_assert_str_eq(raw_body(&out), "{\"a\":1}");
	cm_buf_release(&out);
	server_stop(&s);
}
END_TEST

START_TEST(test_pipelined_requests_are_answered_in_order)
{
	static const char req[] = "GET /items/1 HTTP/1.1\r\nHost: x\r\n\r\n"
				  "GET /items/2 HTTP/1.1\r\nHost: x\r\n\r\n"
				  "POST /upload HTTP/1.1\r\nHost: x\r\n"
				  "Content-Length: 99999\r\n\r\n";
	struct cm_buf out = CM_BUF_INIT(0);
	struct server s;
	const char *one, *two, *big;

	server_start(&s);
	ck_assert(raw_exchange(s.port, req, strlen(req), &out));
	one = strstr(cm_buf_str(&out), "\"id\":\"1\"");
	two = strstr(cm_buf_str(&out), "\"id\":\"2\"");
	big = strstr(cm_buf_str(&out), "HTTP/1.1 413 ");
	ck_assert_ptr_nonnull(one);
	ck_assert_ptr_nonnull(two);
	ck_assert_ptr_nonnull(big);
	ck_assert(one < two && two < big);
	ck_assert_ptr_null(strstr(cm_buf_str(&out), "<HTML>"));
	cm_buf_release(&out);
	server_stop(&s);
}
END_TEST

/* Read from fd until out holds `want` bytes or timeout_ms passes. */
static bool
raw_read_n(int fd, struct cm_buf *out, size_t want, int timeout_ms)
{
	int64_t t0 = cm_now_ms();
	struct pollfd p = { fd, POLLIN, 0 };
	char *chunk = cm_xmalloc(1 << 16);
	ssize_t n;

	while (out->len < want && ms_since(t0) < timeout_ms) {
		if (poll(&p, 1, 50) <= 0)
			continue;
		n = recv(fd, chunk, 1 << 16, 0);
		if (n <= 0)
			break;
		cm_buf_add(out, chunk, (size_t)n);
	}
	free(chunk);
	return out->len >= want;
}

/* Requests pipelined behind deferred ones wait for them: four answers,
   in the order asked, the deferred ones 30 ms late. */
START_TEST(test_pipelined_requests_behind_deferred_ones_keep_their_order)
{
	static const char req[] =
		"GET /deferred/1?q=a HTTP/1.1\r\nHost: x\r\n\r\n"
		"GET /items/2 HTTP/1.1\r\nHost: x\r\n\r\n"
		"GET /deferred/3?q=c HTTP/1.1\r\nHost: x\r\n\r\n"
		"GET /items/4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	struct cm_buf out = CM_BUF_INIT(0);
	struct server s;
	const char *p[4];
	char want[16];
	int i;

	server_start(&s);
	ck_assert(raw_exchange(s.port, req, strlen(req), &out));
	for (i = 0; i < 4; i++) {
		snprintf(want, sizeof(want), "\"id\":\"%d\"", i + 1);
		p[i] = strstr(cm_buf_str(&out), want);
		ck_assert_msg(p[i], "no answer %d in %s", i + 1,
			      cm_buf_str(&out));
		ck_assert(i == 0 || p[i - 1] < p[i]);
	}
	ck_assert_ptr_nonnull(strstr(cm_buf_str(&out), "\"q\":\"c\""));
	cm_buf_release(&out);
	server_stop(&s);
}
END_TEST

/* HTTP/1.0: answered in kind, closed unless the client asks to keep the
   connection, and a stream is ended by closing (no chunks). */
START_TEST(test_http_1_0_is_answered_in_kind)
{
	static const char plain[] = "GET /items/1 HTTP/1.0\r\n\r\n";
	static const char keep[] = "GET /items/1 HTTP/1.0\r\n"
				   "Connection: keep-alive\r\n\r\n";
	static const char stream[] = "GET /stream HTTP/1.0\r\n\r\n";
	struct cm_buf out = CM_BUF_INIT(0);
	struct server s;
	int fd, i;

	server_start(&s);
	ck_assert(raw_exchange(s.port, plain, strlen(plain), &out));
	ck_assert_msg(!strncmp(cm_buf_str(&out), "HTTP/1.0 200 ", 13), "%s",
		      cm_buf_str(&out));
	ck_assert_ptr_nonnull(strstr(cm_buf_str(&out), "Connection: close"));
	fd = raw_connect(s.port);
	for (i = 0; i < 2; i++) { /* the same connection serves both */
		cm_buf_reset(&out);
		raw_send(fd, keep, strlen(keep));
		while (!strstr(cm_buf_str(&out), "\"id\":\"1\"") &&
		       raw_read_n(fd, &out, out.len + 1, 2000))
			;
		ck_assert_msg(strstr(cm_buf_str(&out), "HTTP/1.0 200 ") &&
				      strstr(cm_buf_str(&out),
					     "Connection: keep-alive"),
			      "%s", cm_buf_str(&out));
	}
	close(fd);
	cm_buf_reset(&out);
	ck_assert(raw_exchange(s.port, stream, strlen(stream), &out));
	ck_assert_ptr_null(strstr(cm_buf_str(&out), "Transfer-Encoding"));
	ck_assert_str_eq(raw_body(&out), "a\ntick\ntick\ntick\n");
	cm_buf_release(&out);
	server_stop(&s);
}
END_TEST

/* A client that shuts its sending side right after a request still
   reads the whole answer, even one the socket takes in many writes. */
START_TEST(test_a_half_closed_client_still_gets_a_large_answer)
{
	static const char req[] = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
	struct cm_buf out = CM_BUF_INIT(0);
	struct server s;
	const char *body;
	int fd;

	server_start(&s);
	fd = raw_connect(s.port);
	raw_send(fd, req, strlen(req));
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	ck_assert(raw_read_all(fd, &out, 10000));
	close(fd);
	body = strstr(cm_buf_str(&out), "\r\n\r\n");
	ck_assert_ptr_nonnull(body);
	ck_assert_uint_eq(out.len - (size_t)(body + 4 - out.data), BIG_LEN);
	cm_buf_release(&out);
	server_stop(&s);
}
END_TEST

/* A client that pipelines requests for large answers without reading
   them: the server stops reading while its output is backed up, and
   goes on once the client reads; every answer arrives whole. */
START_TEST(test_pipelined_large_answers_wait_for_a_client_that_reads_late)
{
	static const char req[] = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"
				  "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"
				  "GET /big HTTP/1.1\r\nHost: x\r\n"
				  "Connection: close\r\n\r\n";
	struct cm_buf out = CM_BUF_INIT(0);
	struct server s;
	const char *p;
	size_t heads = 0;
	int fd;

	server_start(&s);
	fd = raw_connect(s.port);
	raw_send(fd, req, strlen(req));
	usleep(500 * 1000); /* not reading: the first answer backs up */
	ck_assert(raw_read_all(fd, &out, 20000));
	close(fd);
	for (p = out.data; (p = memmem(p, out.len - (size_t)(p - out.data),
				       "HTTP/1.1 200 ", 13));
	     p += 13)
		heads++;
	ck_assert_uint_eq(heads, 3);
	ck_assert_uint_gt(out.len, 3 * BIG_LEN);
	ck_assert_uint_lt(out.len, 3 * BIG_LEN + 3 * 1024);
	cm_buf_release(&out);
	server_stop(&s);
}
END_TEST

/* Replies are written as soon as the handlers are done (not on the next
   write event): one keep-alive connection gets 200 small replies in
   turn; then a reply far larger than the socket takes at once (the rest
   goes out on write events) arrives whole, and the same connection still
   serves the next request. */
START_TEST(test_replies_small_and_large_keep_the_connection_going)
{
	static const char small[] = "GET /items/7 HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char big[] = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
	struct cm_buf out = CM_BUF_INIT(0);
	struct server s;
	const char *body;
	size_t head, i;
	int fd;

	server_start(&s);
	fd = raw_connect(s.port);
	for (i = 0; i < 200; i++) {
		cm_buf_reset(&out);
		raw_send(fd, small, strlen(small));
		while (!strstr(cm_buf_str(&out), "\"id\":\"7\"") &&
		       raw_read_n(fd, &out, out.len + 1, 2000))
			;
		ck_assert_msg(strstr(cm_buf_str(&out), "HTTP/1.1 200 ") &&
				      strstr(cm_buf_str(&out), "\"id\":\"7\""),
			      "reply %zu: %s", i, cm_buf_str(&out));
	}
	cm_buf_reset(&out);
	raw_send(fd, big, strlen(big));
	ck_assert(raw_read_n(fd, &out, 64, 5000));
	while (!strstr(cm_buf_str(&out), "\r\n\r\n") &&
	       raw_read_n(fd, &out, out.len + 1, 2000))
		;
	body = strstr(cm_buf_str(&out), "\r\n\r\n");
	ck_assert_ptr_nonnull(body);
	head = (size_t)(body + 4 - out.data);
	ck_assert(raw_read_n(fd, &out, head + BIG_LEN, 10000));
	ck_assert_uint_eq(out.len, head + BIG_LEN);
	ck_assert_int_eq(out.data[head], 'z');
	ck_assert_int_eq(out.data[out.len - 1], 'z');
	cm_buf_reset(&out);
	raw_send(fd, small, strlen(small));
	while (!strstr(cm_buf_str(&out), "\"id\":\"7\"") &&
	       raw_read_n(fd, &out, out.len + 1, 2000))
		;
	ck_assert_ptr_nonnull(strstr(cm_buf_str(&out), "\"id\":\"7\""));
	close(fd);
	cm_buf_release(&out);
	server_stop(&s);
}
END_TEST

/* A client that trickles its headers one byte at a time is cut off after
   read_timeout_ms, while other clients are served meanwhile. */
START_TEST(test_slow_loris_is_cut_off_while_others_are_served)
{
	static const char slow[] =
		"GET /health HTTP/1.1\r\nHost: x\r\n"
		"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
	struct cm_http_config cfg = base_config();
	struct server s;
	struct resp r;
	struct pollfd p;
	int64_t t0, closed_at = -1;
	size_t i;
	int fd, served = 0;
	char c;

	cfg.read_timeout_ms = 800;
	server_start_cfg(&s, &cfg);
	fd = raw_connect(s.port);
	t0 = cm_now_ms();
	for (i = 0; i < sizeof(slow) - 1 && closed_at < 0; i++) {
		raw_send(fd, slow + i, 1);
		p = (struct pollfd){ fd, POLLIN, 0 };
		if (poll(&p, 1, 40) > 0 && recv(fd, &c, 1, 0) <= 0)
			closed_at = ms_since(t0);
		if (i % 5 == 0) {
			http_get(s.port, "/health", &r);
			served += r.status == 200;
			resp_free(&r);
		}
	}
	close(fd);
	ck_assert_msg(closed_at >= 700 && closed_at < 2000,
		      "closed after %lld ms", (long long)closed_at);
	ck_assert_int_ge(served, 3);
	server_stop(&s);
}
END_TEST

/* A client that stops reading a large reply is dropped after the write
   timeout: what the kernels had buffered still arrives, then EOF. */
START_TEST(test_client_that_stops_reading_is_cut_off_by_write_timeout)
{
	static const char req[] = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
	struct cm_http_config cfg = base_config();
	struct sockaddr_in sa;
	struct server s;
	char *chunk = cm_xmalloc(1 << 20);
	size_t got = 0;
	int64_t t0;
	ssize_t n;
	struct timeval tv = { 5, 0 };
	int fd, small = 4096;

	cfg.write_timeout_ms = 500;
	server_start_cfg(&s, &cfg);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)),
		0);
	ck_assert_int_eq(
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)s.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	raw_send(fd, req, strlen(req));
	usleep(1500000); /* not reading: the server's writes stall */
	t0 = cm_now_ms();
	while ((n = recv(fd, chunk, 1 << 20, 0)) > 0 && ms_since(t0) < 10000)
		got += (size_t)n;
	ck_assert_msg(n == 0 && got < BIG_LEN, "read %zu bytes, last %zd", got,
		      n);
	close(fd);
	free(chunk);
	server_stop(&s); /* nothing left in flight */
}
END_TEST

START_TEST(test_idle_connection_is_closed_after_read_timeout)
{
	struct cm_http_config cfg = base_config();
	struct cm_buf out = CM_BUF_INIT(0);
	struct server s;
	int64_t t0;
	int fd;

	cfg.read_timeout_ms = 500;
	server_start_cfg(&s, &cfg);
	fd = raw_connect(s.port);
	t0 = cm_now_ms();
	ck_assert(raw_read_all(fd, &out, 3000));
	ck_assert_int_ge(ms_since(t0), 400);
	ck_assert_uint_eq(out.len, 0);
	close(fd);
	cm_buf_release(&out);
	server_stop(&s);
}
END_TEST

/* ---- CORS ------------------------------------------------------------------
 */

START_TEST(test_cors_headers_only_for_allowed_origins)
{
	static const char *const ok[] = { "Origin: https://admin.example",
					  NULL };
	static const char *const evil[] = { "Origin: https://evil.example",
					    NULL };
	struct server s;
	struct resp r;

	server_start(&s);
	http_do(s.port, "GET", "/health", ok, NULL, &r);
	ck_assert_str_eq(resp_header(&r, "Access-Control-Allow-Origin"),
			 "https://admin.example");
	ck_assert_str_eq(resp_header(&r, "Access-Control-Allow-Credentials"),
			 "true");
	ck_assert_str_eq(resp_header(&r, "Vary"), "Origin");
	resp_free(&r);
	http_do(s.port, "GET", "/health", evil, NULL, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_null(resp_header(&r, "Access-Control-Allow-Origin"));
	ck_assert_ptr_null(resp_header(&r, "Access-Control-Allow-Credentials"));
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_preflight_is_answered_by_the_server)
{
	static const char *const ok[] = {
		"Origin: https://app.example",
		"Access-Control-Request-Method: DELETE", NULL
	};
	static const char *const evil[] = {
		"Origin: https://evil.example",
		"Access-Control-Request-Method: DELETE", NULL
	};
	struct server s;
	struct resp r;

	server_start(&s);
	http_do(s.port, "OPTIONS", "/items/1", ok, NULL, &r);
	ck_assert_int_eq(r.status, 204);
	ck_assert_str_eq(resp_header(&r, "Access-Control-Allow-Origin"),
			 "https://app.example");
	ck_assert_str_eq(resp_header(&r, "Access-Control-Allow-Methods"),
			 "GET, HEAD, DELETE, OPTIONS");
	ck_assert_str_eq(resp_header(&r, "Access-Control-Allow-Headers"),
			 "Authorization, Content-Type, X-Request-ID, "
			 "Idempotency-Key, If-Match");
	ck_assert_ptr_nonnull(resp_header(&r, "Access-Control-Max-Age"));
	resp_free(&r);
	http_do(s.port, "OPTIONS", "/items/1", evil, NULL, &r);
	ck_assert_int_eq(r.status, 403);
	ck_assert_str_eq(error_code(&r), "origin_not_allowed");
	ck_assert_ptr_null(resp_header(&r, "Access-Control-Allow-Origin"));
	resp_free(&r);
	http_do(s.port, "OPTIONS", "/nope", ok, NULL, &r);
	ck_assert_int_eq(r.status, 404);
	resp_free(&r);
	http_do(s.port, "OPTIONS", "/items/1", NULL, NULL, &r);
	ck_assert_int_eq(r.status, 204);
	ck_assert_str_eq(resp_header(&r, "Allow"),
			 "GET, HEAD, DELETE, OPTIONS");
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_no_allow_list_means_no_cors_headers)
{
	static const char *const ok[] = { "Origin: https://app.example", NULL };
	struct cm_http_config cfg = base_config();
	struct server s;
	struct resp r;

	cfg.cors_origins = NULL;
	server_start_cfg(&s, &cfg);
	http_do(s.port, "GET", "/health", ok, NULL, &r);
	ck_assert_ptr_null(resp_header(&r, "Access-Control-Allow-Origin"));
	ck_assert_ptr_null(resp_header(&r, "Vary"));
	resp_free(&r);
	server_stop(&s);
}
END_TEST

/* ---- hooks ----------------------------------------------------------------
 */

START_TEST(test_hooks_run_in_order_and_set_identity)
{
	struct server s;
	struct resp r;
	char got[32];

	server_start(&s);
	order_get(got);
	http_get(s.port, "/private", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(json_str(r.json, "sub"), "user-1");
	ck_assert_str_eq(json_str(r.json, "tenant"), "tenant-1");
	ck_assert_str_eq(json_str(r.json, "slug"), "acme");
	order_get(got);
	ck_assert_str_eq(got, "ATH");
	resp_free(&r);
	http_get(s.port, "/platform", &r);
	ck_assert_ptr_null(json_str(r.json, "tenant"));
	order_get(got);
	ck_assert_str_eq(got, "AH");
	resp_free(&r);
	http_get(s.port, "/internal", &r); /* flags are the hooks' business */
	ck_assert_int_eq((int)cJSON_GetObjectItem(r.json, "flags")->valuedouble,
			 CM_ROUTE_SERVICE_ONLY);
	order_get(got);
	ck_assert_str_eq(got, "ATH");
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_public_route_skips_both_hooks)
{
	struct server s;
	struct resp r;
	char got[32];

	server_start(&s);
	order_get(got);
	http_get(s.port, "/public", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_null(json_str(r.json, "sub"));
	order_get(got);
	ck_assert_str_eq(got, "H");
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_failing_hook_stops_the_chain_with_its_error)
{
	static const char *const deny[] = { "X-Test-Auth: deny", NULL };
	static const char *const silent[] = { "X-Test-Auth: silent", NULL };
	static const char *const none[] = { "X-Test-Tenant: none", NULL };
	struct server s;
	struct resp r;
	char got[32];

	server_start(&s);
	order_get(got);
	http_do(s.port, "GET", "/private", deny, NULL, &r);
	ck_assert_int_eq(r.status, 401);
	ck_assert_str_eq(error_code(&r), "unauthenticated");
	order_get(got);
	ck_assert_str_eq(got, "A");
	resp_free(&r);
	http_do(s.port, "GET", "/private", silent, NULL, &r);
	ck_assert_int_eq(r.status, 403);
	ck_assert_str_eq(error_code(&r), "forbidden");
	order_get(got);
	resp_free(&r);
	http_do(s.port, "GET", "/private", none, NULL, &r);
	ck_assert_int_eq(r.status, 400);
	ck_assert_str_eq(error_code(&r), "tenant_required");
	order_get(got);
	ck_assert_str_eq(got, "AT");
	resp_free(&r);
	server_stop(&s);
}
END_TEST

/* ---- logs and metrics -------------------------------------------------- */

static char *
slurp_fd(int fd)
{
	struct cm_buf b = CM_BUF_INIT(0);
	char chunk[4096];
	ssize_t n;

	lseek(fd, 0, SEEK_SET);
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		cm_buf_add(&b, chunk, (size_t)n);
	return cm_buf_detach(&b, NULL);
}

START_TEST(test_access_log_line_and_log_context)
{
	static const char *const rid[] = { "X-Request-ID: log-test-1", NULL };
	char path[] = "/tmp/test_http_log_XXXXXX";
	int fd = mkstemp(path);
	struct server s;
	struct resp r;
	char want[128];
	char *log;

	ck_assert_int_ge(fd, 0);
	unlink(path);
	cm_log_init("test", CM_LOG_INFO);
	cm_log_set_fd(fd);
	server_start(&s);
	http_do(s.port, "GET", "/private", rid, NULL, &r);
	snprintf(want, sizeof(want), "ms %zuB\",\"request_id\":\"log-test-1\"",
		 r.body.len);
	resp_free(&r);
	http_get(s.port, "/public", &r); /* same worker, context cleared */
	resp_free(&r);
	server_stop(&s);
	cm_log_set_fd(2);
	log = slurp_fd(fd);
	ck_assert_msg(strstr(log, "\"message\":\"handler ran\",\"request_id\":"
				  "\"log-test-1\",\"tenant_id\":\"tenant-1\""),
		      "%s", log);
	ck_assert_msg(strstr(log, "\"message\":\"GET /private 200 "), "%s",
		      log);
	ck_assert_msg(strstr(log, want), "%s", log);
	ck_assert_ptr_null(strstr(strstr(log, "GET /public 200"), "tenant_id"));
	free(log);
	close(fd);
}
END_TEST

START_TEST(test_metrics_use_route_patterns_and_unmatched)
{
	struct cm_buf out = CM_BUF_INIT(0);
	struct server s;
	struct resp r;

	cm_metrics_reset();
	server_start(&s);
	http_get(s.port, "/items/123", &r);
	resp_free(&r);
	http_get(s.port, "/random/path/9", &r);
	resp_free(&r);
	server_stop(&s);
	cm_metrics_render(&out);
	ck_assert_msg(strstr(cm_buf_str(&out),
			     "route=\"/items/:id\",method=\"GET\","
			     "status=\"200\""),
		      "%s", cm_buf_str(&out));
	ck_assert(strstr(cm_buf_str(&out), "route=\"unmatched\",method=\"GET\","
					   "status=\"404\""));
	ck_assert_ptr_null(strstr(cm_buf_str(&out), "/random/path"));
	ck_assert(strstr(cm_buf_str(&out), "bz_http_in_flight"));
	cm_buf_release(&out);
}
END_TEST

/* ---- lifecycle and threads ------------------------------------------------
 */

struct client {
	pthread_t thread;
	int port;
	char path[64];
	struct resp r;
};

static void *
client_main(void *arg)
{
	struct client *c = arg;

	http_get(c->port, c->path, &c->r);
	return NULL;
}

static bool
wait_for_sleepers(int n, int timeout_ms)
{
	int64_t t0 = cm_now_ms();

	while (atomic_load(&sleepers) < n && ms_since(t0) < timeout_ms)
		usleep(5000);
	return atomic_load(&sleepers) >= n;
}

START_TEST(test_stop_drains_a_request_in_flight)
{
	struct cm_http_config cfg = base_config();
	struct client c;
	struct server s;
	int64_t t0;

	cfg.threads = 2;
	server_start_cfg(&s, &cfg);
	memset(&c, 0, sizeof(c));
	c.port = s.port;
	cm_strlcpy(c.path, "/sleep/1000", sizeof(c.path));
	ck_assert_int_eq(pthread_create(&c.thread, NULL, client_main, &c), 0);
	ck_assert(wait_for_sleepers(1, 5000));
	t0 = cm_now_ms();
	cm_http_stop(s.http); /* from this thread, not a worker */
	cm_http_stop(s.http); /* idempotent */
	ck_assert_int_eq(cm_http_wait(s.http), 0);
	ck_assert_int_lt(ms_since(t0), 2500);
	ck_assert(connect_refused(s.port));
	pthread_join(c.thread, NULL);
	ck_assert_int_eq(c.r.status, 200);
	ck_assert_str_eq(cm_buf_str(&c.r.body), "{\"slept\":1000}");
	ck_assert_str_eq(resp_header(&c.r, "Connection"), "close");
	resp_free(&c.r);
	ck_assert_int_eq(cm_http_wait(s.http), 0); /* joined already */
	cm_http_free(s.http);
}
END_TEST

START_TEST(test_stop_closes_idle_keep_alive_connections_at_once)
{
	static const char req[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
	struct cm_buf out = CM_BUF_INIT(0);
	struct server s;
	int64_t t0;
	int fd;

	server_start(&s);
	fd = raw_connect(s.port);
	raw_send(fd, req, strlen(req));
	ck_assert(!raw_read_all(fd, &out, 300)); /* answered, kept open */
	ck_assert(strstr(cm_buf_str(&out), "{\"status\":\"ok\"}"));
	t0 = cm_now_ms();
	cm_http_stop(s.http);
	ck_assert_int_eq(cm_http_wait(s.http), 0);
	ck_assert_int_lt(ms_since(t0), 1000);
	ck_assert(raw_read_all(fd, &out, 1000)); /* EOF */
	close(fd);
	ck_assert(connect_refused(s.port));
	cm_buf_release(&out);
	cm_http_free(s.http);
}
END_TEST

START_TEST(test_drain_deadline_cuts_off_a_half_received_request)
{
	static const char part[] = "POST /upload HTTP/1.1\r\nHost: x\r\n"
				   "Content-Length: 100\r\n\r\nabc";
	struct cm_http_config cfg = base_config();
	struct server s;
	int64_t t0;
	int fd;

	cfg.drain_timeout_ms = 300;
	server_start_cfg(&s, &cfg);
	fd = raw_connect(s.port);
	raw_send(fd, part, strlen(part));
	usleep(200000);
	t0 = cm_now_ms();
	cm_log_threshold = CM_LOG_OFF;
	cm_http_stop(s.http);
	ck_assert_int_eq(cm_http_wait(s.http), CM_ETIMEDOUT);
	ck_assert_int_ge(ms_since(t0), 250);
	ck_assert_int_lt(ms_since(t0), 2000);
	close(fd);
	cm_http_free(s.http);
}
END_TEST

START_TEST(test_two_workers_serve_in_parallel)
{
	enum {
		N = 16,
		MS = 150
	};
	struct cm_http_config cfg = base_config();
	struct client c[N];
	struct server s;
	int64_t t0, took;
	int i, distinct = 0;

	cfg.threads = 2;
	server_start_cfg(&s, &cfg);
	ntids = 0;
	atomic_store(&max_inside, 0);
	t0 = cm_now_ms();
	for (i = 0; i < N; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		c[i].port = s.port;
		snprintf(c[i].path, sizeof(c[i].path), "/sleep/%d", MS);
		ck_assert_int_eq(
			pthread_create(&c[i].thread, NULL, client_main, &c[i]),
			0);
	}
	for (i = 0; i < N; i++) {
		pthread_join(c[i].thread, NULL);
		ck_assert_int_eq(c[i].r.status, 200);
		resp_free(&c[i].r);
	}
	took = ms_since(t0);
	for (i = 0; i < ntids; i++)
		distinct += !pthread_equal(tids[i], tids[0]);
	ck_assert_msg(distinct > 0, "one worker served everything");
	/* Each worker runs one handler at a time, so two handlers sleeping at
	   once prove two loops ran in parallel, however loaded the machine. */
	ck_assert_msg(atomic_load(&max_inside) >= 2,
		      "%lld ms: handlers never overlapped", (long long)took);
	server_stop(&s);
}
END_TEST

START_TEST(test_start_errors_are_reported)
{
	struct cm_http_config cfg = base_config();
	char errbuf[CM_ERRBUF_LEN] = "";
	struct cm_http *h;

	cfg.bind_addr = "256.1.1.1";
	h = cm_http_new(&cfg, routes, NULL, NULL);
	ck_assert_int_eq(cm_http_start(h, errbuf), CM_EINVAL);
	ck_assert(strstr(errbuf, "256.1.1.1"));
	ck_assert_int_eq(cm_http_wait(h), 0); /* never started */
	cm_http_free(h);
	cfg.bind_addr = "192.0.2.1"; /* not an address of this host */
	h = cm_http_new(&cfg, routes, NULL, NULL);
	ck_assert_int_lt(cm_http_start(h, errbuf), 0);
	ck_assert(strstr(errbuf, "listen on 192.0.2.1"));
	cm_http_free(h);
	cfg.bind_addr = "127.0.0.1";
	h = cm_http_new(&cfg, routes, NULL, NULL);
	ck_assert_int_eq(cm_http_start(h, errbuf), 0);
	ck_assert_int_eq(cm_http_start(h, errbuf), CM_EINVAL);
	cm_http_free(h); /* stops and waits by itself */
}
END_TEST

/* ---- versions ---------------------------------------------------------- */

/* If-Match value -> {rc, version} from /etag. */
static void
if_match_is(int port, const char *value, int rc, int64_t version)
{
	char hdr[128];
	const char *hs[] = { hdr, NULL };
	struct resp r;
	cJSON *j;

	snprintf(hdr, sizeof(hdr), "If-Match: %s", value ? value : "");
	http_do(port, "GET", "/etag", value ? hs : NULL, NULL, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(resp_header(&r, "ETag"), "\"7\"");
	j = cJSON_Parse(cm_buf_str(&r.body));
	ck_assert_msg(cJSON_GetObjectItem(j, "rc")->valueint == rc &&
			      (int64_t)cJSON_GetObjectItem(j, "version")
					      ->valuedouble == version,
		      "If-Match %s -> %s", value ? value : "(none)",
		      cm_buf_str(&r.body));
	cJSON_Delete(j);
	resp_free(&r);
}

START_TEST(test_if_match_names_a_version_or_any)
{
	struct server s;

	server_start(&s);
	if_match_is(s.port, NULL, CM_ENOENT, 42);
	if_match_is(s.port, "\"7\"", 0, 7);
	if_match_is(s.port, "W/\"12\"", 0, 12);
	if_match_is(s.port, "3", 0, 3);
	if_match_is(s.port, "*", 0, 0);
	if_match_is(s.port, "\"0\"", CM_EINVAL, -1);
	if_match_is(s.port, "\"x\"", CM_EINVAL, -1);
	if_match_is(s.port, "\"\"", CM_EINVAL, -1);
	server_stop(&s);
}
END_TEST

/* ---- deferred replies and streams ------------------------------------ */

START_TEST(test_a_deferred_request_keeps_its_params_and_query)
{
	struct server s;
	struct resp r;
	cJSON *j;

	server_start(&s);
	http_get(s.port, "/deferred/a%20b?q=x%2Fy", &r);
	ck_assert_int_eq(r.status, 200);
	j = cJSON_Parse(cm_buf_str(&r.body));
	ck_assert_str_eq(json_str(j, "id"), "a b");
	ck_assert_str_eq(json_str(j, "q"), "x/y");
	ck_assert_str_eq(json_str(j, "path"), "/deferred/a b");
	ck_assert_ptr_nonnull(resp_header(&r, "X-Request-ID"));
	cJSON_Delete(j);
	resp_free(&r);
	server_stop(&s);
}
END_TEST

struct wait_call {
	int port;
	const char *path;
	struct resp r;
	atomic_bool done;
};

static void *
wait_call_run(void *arg)
{
	struct wait_call *c = arg;

	http_get(c->port, c->path, &c->r);
	atomic_store(&c->done, true);
	return NULL;
}

/* A waiting request is looked at once when the wait begins and then only
   when another thread signals: no polling, and nothing missed. */
START_TEST(test_a_waiting_request_is_answered_when_signalled)
{
	struct wait_call c = { 0, "/wait/1", { 0 }, false };
	struct timespec ts = { 0, 150000000L };
	struct server s;
	pthread_t t;
	struct resp r;

	atomic_store(&wait_gate, 0);
	atomic_store(&wait_looks, 0);
	server_start(&s);
	c.port = s.port;
	ck_assert_int_eq(pthread_create(&t, NULL, wait_call_run, &c), 0);
	nanosleep(&ts, NULL);
	ck_assert(!atomic_load(&c.done));
	ck_assert_int_eq(atomic_load(&wait_looks), 1); /* the first look */
	cm_http_signal(); /* nothing published yet: looks, stays */
	nanosleep(&ts, NULL);
	ck_assert(!atomic_load(&c.done));
	ck_assert_int_eq(atomic_load(&wait_looks), 2);
	atomic_store(&wait_gate, 1);
	cm_http_signal();
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(c.r.status, 200);
	ck_assert_str_eq(cm_buf_str(&c.r.body), "open");
	ck_assert_int_eq(atomic_load(&wait_looks), 3);
	resp_free(&c.r);

	/* published before the wait began: the first look answers */
	http_get(s.port, "/wait/1", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(atomic_load(&wait_looks), 4);
	resp_free(&r);
	server_stop(&s);
}
END_TEST

START_TEST(test_a_stream_is_sent_in_chunks_then_ended)
{
	static const char req[] = "GET /stream HTTP/1.1\r\nHost: x\r\n"
				  "Connection: close\r\n\r\n";
	struct cm_buf out = CM_BUF_INIT(1024);
	struct server s;
	const char *body;

	atomic_store(&stream_ticks, 0);
	server_start(&s);
	ck_assert(raw_exchange(s.port, req, sizeof(req) - 1, &out));
	ck_assert_msg(strstr(cm_buf_str(&out), "HTTP/1.1 200"), "%s",
		      cm_buf_str(&out));
	ck_assert(header_in(cm_buf_str(&out), "Transfer-Encoding"));
	ck_assert(header_in(cm_buf_str(&out), "X-Stream"));
	ck_assert(header_in(cm_buf_str(&out), "X-Request-ID"));
	body = raw_body(&out);
	ck_assert_ptr_nonnull(strstr(body, "2\r\na\n\r\n"));
	ck_assert_ptr_nonnull(strstr(body, "tick\n\r\n5\r\ntick\n\r\n5"));
	ck_assert_ptr_nonnull(strstr(body, "\r\n0\r\n\r\n"));
	cm_buf_release(&out);
	server_stop(&s);
}
END_TEST

START_TEST(test_a_stream_learns_that_its_client_left)
{
	static const char req[] = "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n";
	struct cm_buf out = CM_BUF_INIT(1024);
	struct server s;
	int fd, i;

	atomic_store(&hold_closed, 0);
	server_start(&s);
	fd = raw_connect(s.port);
	raw_send(fd, req, sizeof(req) - 1);
	while (!strstr(cm_buf_str(&out), "x\n"))
		ck_assert(!raw_read_all(fd, &out, 200) ||
			  strstr(cm_buf_str(&out), "x\n"));
	close(fd);
	for (i = 0; i < 100 && !atomic_load(&hold_closed); i++)
		usleep(20 * 1000);
	ck_assert_int_eq(atomic_load(&hold_closed), 1);
	cm_buf_release(&out);
	server_stop(&s); /* nothing left in flight: drains at once */
}
END_TEST

START_TEST(test_stopping_ends_open_streams_within_the_drain)
{
	static const char req[] = "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n";
	struct cm_buf out = CM_BUF_INIT(1024);
	struct server s;
	int64_t t0;
	int fd;

	atomic_store(&hold_closed, 0);
	server_start(&s);
	fd = raw_connect(s.port);
	raw_send(fd, req, sizeof(req) - 1);
	while (!strstr(cm_buf_str(&out), "x\n"))
		ck_assert(!raw_read_all(fd, &out, 200) ||
			  strstr(cm_buf_str(&out), "x\n"));
	t0 = cm_now_ms();
	cm_http_stop(s.http);
	ck_assert_int_eq(cm_http_wait(s.http), 0); /* not cut off */
	ck_assert_int_lt(ms_since(t0), 2000);
	ck_assert_int_eq(atomic_load(&hold_closed), 2);
	raw_read_all(fd, &out, 2000);
	ck_assert_ptr_nonnull(strstr(cm_buf_str(&out), "\r\n0\r\n\r\n"));
	close(fd);
	cm_http_free(s.http);
	cm_buf_release(&out);
}
END_TEST

static void
setup(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	cm_log_init("test", CM_LOG_WARN);
	atomic_store(&sleepers, 0);
}

static Suite *
make_suite(void)
{
	Suite *s = suite_create("http");
	TCase *route = tcase_create("routing");
	TCase *reply = tcase_create("replies");
	TCase *limit = tcase_create("limits");
	TCase *cors = tcase_create("cors_and_hooks");
	TCase *life = tcase_create("lifecycle");

	tcase_add_checked_fixture(route, setup, NULL);
	tcase_set_timeout(route, 20);
	tcase_add_test(route, test_params_are_decoded_per_segment);
	tcase_add_test(route, test_missing_parameter_and_empty_reply);
	tcase_add_test(route, test_first_route_in_table_order_wins);
	tcase_add_test(route, test_catch_all_takes_the_rest_of_the_path);
	tcase_add_test(route,
		       test_trailing_slash_and_empty_segments_do_not_match);
	tcase_add_test(route, test_unknown_path_is_404_json);
	tcase_add_test(route, test_wrong_method_is_405_with_allow);
	tcase_add_test(route, test_head_runs_the_get_route_without_a_body);
	tcase_add_test(route,
		       test_bad_percent_encoding_and_encoded_nul_are_400);
	tcase_add_test(route, test_host_is_lowercased_without_port);
	tcase_add_test(route,
		       test_an_absolute_form_target_is_routed_by_its_path);
	tcase_add_test(route, test_malformed_route_tables_are_refused);
	suite_add_tcase(s, route);

	tcase_add_checked_fixture(reply, setup, NULL);
	tcase_set_timeout(reply, 20);
	tcase_add_test(reply, test_request_id_is_minted_echoed_or_replaced);
	tcase_add_test(reply, test_minted_request_ids_are_distinct_v4_uuids);
	tcase_add_test(reply, test_security_headers_are_on_every_response);
	tcase_add_test(reply, test_handler_that_forgets_to_reply_gets_500);
	tcase_add_test(reply, test_only_the_first_reply_is_sent);
	tcase_add_test(reply, test_if_match_names_a_version_or_any);
	tcase_add_test(reply,
		       test_a_deferred_request_keeps_its_params_and_query);
	tcase_add_test(reply,
		       test_a_waiting_request_is_answered_when_signalled);
	tcase_add_test(reply, test_a_stream_is_sent_in_chunks_then_ended);
	tcase_add_test(reply, test_a_stream_learns_that_its_client_left);
	tcase_add_test(reply, test_stopping_ends_open_streams_within_the_drain);
	tcase_add_test(reply,
		       test_recorded_error_wins_and_generic_errors_are_named);
	tcase_add_test(reply, test_json_body_is_parsed);
	tcase_add_test(reply,
		       test_malformed_json_is_400_naming_line_and_column);
	tcase_add_test(reply, test_empty_or_non_object_json_is_400);
	tcase_add_test(reply, test_wrong_content_type_is_415);
	tcase_add_test(reply, test_access_log_line_and_log_context);
	tcase_add_test(reply, test_metrics_use_route_patterns_and_unmatched);
	suite_add_tcase(s, reply);

	tcase_add_checked_fixture(limit, setup, NULL);
	tcase_set_timeout(limit, 30);
	tcase_add_test(limit,
		       test_body_over_the_limit_by_content_length_is_413_json);
	tcase_add_test(limit, test_chunked_body_over_the_limit_is_413_json);
	tcase_add_test(limit, test_chunked_body_under_the_limit_is_accepted);
	tcase_add_test(
		limit,
		test_a_large_body_arriving_in_pieces_keeps_the_head_intact);
	tcase_add_test(
		limit,
		test_headers_over_the_limit_are_431_and_the_connection_closes);
	tcase_add_test(limit, test_malformed_request_is_400_json);
	tcase_add_test(limit, test_expect_continue_is_passed_through);
	tcase_add_test(limit, test_pipelined_requests_are_answered_in_order);
	tcase_add_test(
		limit,
		test_pipelined_requests_behind_deferred_ones_keep_their_order);
	tcase_add_test(limit, test_http_1_0_is_answered_in_kind);
	tcase_add_test(
		limit,
		test_pipelined_large_answers_wait_for_a_client_that_reads_late);
	tcase_add_test(limit,
		       test_a_half_closed_client_still_gets_a_large_answer);
	tcase_add_test(limit,
		       test_replies_small_and_large_keep_the_connection_going);
	tcase_add_test(limit,
		       test_slow_loris_is_cut_off_while_others_are_served);
	tcase_add_test(limit,
		       test_idle_connection_is_closed_after_read_timeout);
	tcase_add_test(
		limit,
		test_client_that_stops_reading_is_cut_off_by_write_timeout);
	suite_add_tcase(s, limit);

	tcase_add_checked_fixture(cors, setup, NULL);
	tcase_set_timeout(cors, 20);
	tcase_add_test(cors, test_cors_headers_only_for_allowed_origins);
	tcase_add_test(cors, test_preflight_is_answered_by_the_server);
	tcase_add_test(cors, test_no_allow_list_means_no_cors_headers);
	tcase_add_test(cors, test_hooks_run_in_order_and_set_identity);
	tcase_add_test(cors, test_public_route_skips_both_hooks);
	tcase_add_test(cors, test_failing_hook_stops_the_chain_with_its_error);
	suite_add_tcase(s, cors);

	tcase_add_checked_fixture(life, setup, NULL);
	tcase_set_timeout(life, 30);
	tcase_add_test(life, test_stop_drains_a_request_in_flight);
	tcase_add_test(life,
		       test_stop_closes_idle_keep_alive_connections_at_once);
	tcase_add_test(life,
		       test_drain_deadline_cuts_off_a_half_received_request);
	tcase_add_test(life, test_two_workers_serve_in_parallel);
	tcase_add_test(life, test_start_errors_are_reported);
	suite_add_tcase(s, life);
	return s;
}

CM_TEST_MAIN(make_suite)
