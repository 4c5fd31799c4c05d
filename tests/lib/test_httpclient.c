/* test_httpclient.c - cm_fetch against an in-process server on 127.0.0.1,
   and the SSRF guard. No test sends a packet past the loopback interface:
   public addresses are only ever checked as sockaddr structs. */
#include "common/httpclient.h"
#include "common/mem.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

#include "common/banned.h"

/*
 * A one-connection-at-a-time HTTP/1.1 server. Routes:
 *   /ok          200 "hello", text/plain
 *   /echo        200, the raw request as the body
 *   /big         200, Content-Length 65536
 *   /stream      200, 65536 bytes, no Content-Length (ends at close)
 *   /liar        200, Content-Length 65536 but only 10 bytes, then waits
 *   /flaky       503 for the first two hits, then 200 "recovered"
 *   /status/NNN  status NNN
 *   /slow        no answer until the client hangs up (3 s at most)
 */
struct srv {
	int fd;
	int port;
	pthread_t thread;
	atomic_bool stop;
	atomic_int conns;
	atomic_int requests;
	atomic_int flaky_hits;
};

#define BIG_LEN 65536

static int
send_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);

		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static void
reply(int fd, int status, const char *ctype, const char *body, size_t len,
      bool head_only)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d X\r\nContent-Type: %s\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			 status, ctype, len);

	if (send_all(fd, head, (size_t)n) == 0 && !head_only)
		send_all(fd, body, len);
}

static void
reply_big(int fd, bool declare_length)
{
	char chunk[4096];
	size_t sent;

	memset(chunk, 'x', sizeof(chunk));
	if (declare_length)
		dprintf(fd,
			"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
			"Connection: close\r\n\r\n",
			BIG_LEN);
	else
		dprintf(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
	for (sent = 0; sent < BIG_LEN; sent += sizeof(chunk)) {
		if (send_all(fd, chunk, sizeof(chunk)) < 0)
			break;
	}
}

/* Read one request (head and Content-Length body) into buf. */
static ssize_t
read_request(int fd, char *buf, size_t size)
{
	size_t len = 0, want = 0;
	char *end, *cl;
	ssize_t r;

	while (len < size - 1 && (!want || len < want)) {
		r = recv(fd, buf + len, size - 1 - len, 0);
		if (r <= 0)
			return -1;
		len += (size_t)r;
		buf[len] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (!end || want)
			continue;
		cl = strcasestr(buf, "\r\nContent-Length:");
		want = (size_t)(end + 4 - buf) +
		       (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
	}
	return (ssize_t)len;
}

static void
wait_for_hangup(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	if (poll(&p, 1, 3000) > 0)
		(void)recv(fd, &c, 1, 0);
}

static void
reply_liar(int fd)
{
	dprintf(fd, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n0123456789",
		BIG_LEN);
	wait_for_hangup(fd);
}

static void
serve(struct srv *s, int fd)
{
	char req[16384];
	ssize_t len = read_request(fd, req, sizeof(req));
	bool head = len > 0 && !strncmp(req, "HEAD ", 5);
	const char *path;

	if (len < 0)
		return;
	atomic_fetch_add(&s->requests, 1);
	path = strchr(req, ' ');
	path = path ? path + 1 : "";
	if (!strncmp(path, "/ok ", 4))
		reply(fd, 200, "text/plain; charset=utf-8", "hello", 5, head);
	else if (!strncmp(path, "/echo ", 6))
		reply(fd, 200, "message/http", req, (size_t)len, head);
	else if (!strncmp(path, "/big ", 5) || !strncmp(path, "/stream ", 8))
		reply_big(fd, path[1] == 'b');
	else if (!strncmp(path, "/flaky ", 7) &&
		 atomic_fetch_add(&s->flaky_hits, 1) < 2)
		reply(fd, 503, "text/plain", "busy", 4, head);
	else if (!strncmp(path, "/flaky ", 7))
		reply(fd, 200, "text/plain", "recovered", 9, head);
	else if (!strncmp(path, "/status/", 8))
		reply(fd, (int)strtol(path + 8, NULL, 10), "text/plain", "s", 1,
		      head);
	else if (!strncmp(path, "/liar ", 6))
		reply_liar(fd);
	else if (!strncmp(path, "/slow ", 6))
		wait_for_hangup(fd);
	else
		reply(fd, 404, "text/plain", "no", 2, head);
}

static void *
srv_main(void *arg)
{
	struct srv *s = arg;
	struct pollfd p = { .fd = s->fd, .events = POLLIN };
	int c;

	while (!atomic_load(&s->stop)) {
		if (poll(&p, 1, 20) <= 0)
			continue;
		c = accept(s->fd, NULL, NULL);
		if (c < 0)
			continue;
		atomic_fetch_add(&s->conns, 1);
		serve(s, c);
		close(c);
	}
	return NULL;
}

static void
srv_start(struct srv *s)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	memset(s, 0, sizeof(*s));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(s->fd, 0);
	ck_assert_int_eq(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(s->fd, 16), 0);
	ck_assert_int_eq(getsockname(s->fd, (struct sockaddr *)&sa, &len), 0);
	s->port = ntohs(sa.sin_port);
	ck_assert_int_eq(pthread_create(&s->thread, NULL, srv_main, s), 0);
}

/* Stop, then count connections still waiting in the backlog: afterwards
   s->conns is every connection that ever reached the server. */
static void
srv_stop(struct srv *s)
{
	struct pollfd p = { .fd = s->fd, .events = POLLIN };

	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	while (poll(&p, 1, 0) > 0) {
		int c = accept(s->fd, NULL, NULL);

		if (c < 0)
			break;
		atomic_fetch_add(&s->conns, 1);
		close(c);
	}
	close(s->fd);
}

static char *
url_of(const struct srv *s, const char *host, const char *path)
{
	static char buf[256];

	snprintf(buf, sizeof(buf), "http://%s:%d%s", host, s->port, path);
	return buf;
}

static struct srv srv;
static struct cm_fetch_response resp;
static char err[CM_ERRBUF_LEN];

static void
setup(void)
{
	static const char *const proxies[] = { "http_proxy", "https_proxy",
					       "HTTPS_PROXY", "all_proxy",
					       "ALL_PROXY" };
	size_t i;

	/* A proxy from the environment would carry test traffic off-host. */
	for (i = 0; i < sizeof(proxies) / sizeof(proxies[0]); i++)
		unsetenv(proxies[i]);
	ck_assert_int_eq(cm_http_client_global(), 0);
	memset(&resp, 0, sizeof(resp));
	err[0] = '\0';
	srv_start(&srv);
}

static void
teardown(void)
{
	cm_fetch_response_release(&resp);
	srv_stop(&srv);
}

START_TEST(test_get_returns_status_body_and_content_type)
{
	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "127.0.0.1", "/ok"), NULL,
				  0, NULL, &resp, err),
			 0);
	ck_assert_int_eq(resp.status, 200);
	ck_assert_str_eq(cm_buf_str(&resp.body), "hello");
	ck_assert_str_eq(resp.content_type, "text/plain; charset=utf-8");
	ck_assert_str_eq(err, "");
}
END_TEST

START_TEST(test_http_error_status_is_still_success)
{
	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "127.0.0.1", "/nope"),
				  NULL, 0, NULL, &resp, err),
			 0);
	ck_assert_int_eq(resp.status, 404);
	ck_assert_str_eq(cm_buf_str(&resp.body), "no");
}
END_TEST

START_TEST(test_put_sends_method_body_headers_and_content_type)
{
	static const char *const hdrs[] = { "X-Test: one", "Accept: a/b",
					    NULL };
	struct cm_fetch_opts o = { .headers = hdrs,
				   .content_type = "application/json" };
	const char *body;

	ck_assert_int_eq(cm_fetch("PUT", url_of(&srv, "127.0.0.1", "/echo"),
				  "{\"a\":1}", 7, &o, &resp, err),
			 0);
	body = cm_buf_str(&resp.body);
	ck_assert_int_eq(strncmp(body, "PUT /echo HTTP/1.1\r\n", 20), 0);
	ck_assert_ptr_nonnull(strstr(body, "\r\nX-Test: one\r\n"));
	ck_assert_ptr_nonnull(strstr(body, "\r\nAccept: a/b\r\n"));
	ck_assert_ptr_nonnull(
		strstr(body, "\r\nContent-Type: application/json\r\n"));
	ck_assert_ptr_nonnull(strstr(body, "\r\nContent-Length: 7\r\n"));
	ck_assert_ptr_nonnull(strstr(body, "\r\n\r\n{\"a\":1}"));
}
END_TEST

START_TEST(test_post_and_delete_and_head_use_their_methods)
{
	ck_assert_int_eq(cm_fetch("POST", url_of(&srv, "127.0.0.1", "/echo"),
				  NULL, 0, NULL, &resp, err),
			 0);
	ck_assert_int_eq(strncmp(cm_buf_str(&resp.body), "POST /echo ", 11), 0);
	ck_assert_ptr_nonnull(
		strstr(cm_buf_str(&resp.body), "Content-Length: 0\r\n"));
	cm_fetch_response_release(&resp);
	ck_assert_int_eq(cm_fetch("DELETE", url_of(&srv, "127.0.0.1", "/echo"),
				  NULL, 0, NULL, &resp, err),
			 0);
	ck_assert_int_eq(strncmp(cm_buf_str(&resp.body), "DELETE /echo ", 13),
			 0);
	cm_fetch_response_release(&resp);
	ck_assert_int_eq(cm_fetch("HEAD", url_of(&srv, "127.0.0.1", "/ok"),
				  NULL, 0, NULL, &resp, err),
			 0);
	ck_assert_int_eq(resp.status, 200);
	ck_assert_uint_eq(resp.body.len, 0);
}
END_TEST

START_TEST(test_body_exactly_at_the_cap_is_accepted)
{
	struct cm_fetch_opts o = { .max_response = 5 };

	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "127.0.0.1", "/ok"), NULL,
				  0, &o, &resp, err),
			 0);
	ck_assert_str_eq(cm_buf_str(&resp.body), "hello");
	cm_fetch_response_release(&resp);
	o.max_response = 4;
	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "127.0.0.1", "/ok"), NULL,
				  0, &o, &resp, err),
			 CM_E2BIG);
	ck_assert_uint_eq(resp.body.len, 0);
}
END_TEST

START_TEST(test_declared_length_over_the_cap_is_refused)
{
	struct cm_fetch_opts o = { .max_response = BIG_LEN - 1 };

	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "127.0.0.1", "/big"),
				  NULL, 0, &o, &resp, err),
			 CM_E2BIG);
	ck_assert_ptr_nonnull(strstr(err, "response over"));
	ck_assert_ptr_null(resp.body.data);
	cm_fetch_response_release(&resp);
	o.max_response = BIG_LEN;
	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "127.0.0.1", "/big"),
				  NULL, 0, &o, &resp, err),
			 0);
	ck_assert_uint_eq(resp.body.len, BIG_LEN);
}
END_TEST

/* The cap is enforced on the declared length, not only once the bytes
   arrive: this server never sends them. */
START_TEST(test_declared_length_is_refused_before_the_body_arrives)
{
	struct cm_fetch_opts o = { .max_response = 1000,
				   .total_timeout_ms = 3000 };
	int64_t t0 = cm_now_ms();

	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "127.0.0.1", "/liar"),
				  NULL, 0, &o, &resp, err),
			 CM_E2BIG);
	ck_assert_int_lt(cm_now_ms() - t0, 1000);
}
END_TEST

START_TEST(test_streamed_body_over_the_cap_is_cut_off)
{
	struct cm_fetch_opts o = { .max_response = 10000 };

	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "127.0.0.1", "/stream"),
				  NULL, 0, &o, &resp, err),
			 CM_E2BIG);
	cm_fetch_response_release(&resp);
	o.max_response = 0; /* default 4 MiB */
	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "127.0.0.1", "/stream"),
				  NULL, 0, &o, &resp, err),
			 0);
	ck_assert_uint_eq(resp.body.len, BIG_LEN);
}
END_TEST

START_TEST(test_get_retries_503_until_success)
{
	struct cm_fetch_opts o = { .retries = 2 };
	int64_t t0 = cm_now_ms();

	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "127.0.0.1", "/flaky"),
				  NULL, 0, &o, &resp, err),
			 0);
	ck_assert_int_eq(resp.status, 200);
	ck_assert_str_eq(cm_buf_str(&resp.body), "recovered");
	ck_assert_int_eq(atomic_load(&srv.requests), 3);
	ck_assert_int_ge(cm_now_ms() - t0, 300); /* 100 + 200 ms backoff */
}
END_TEST

START_TEST(test_retries_run_out_and_return_the_last_status)
{
	struct cm_fetch_opts o = { .retries = 1 };

	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "127.0.0.1", "/flaky"),
				  NULL, 0, &o, &resp, err),
			 0);
	ck_assert_int_eq(resp.status, 503);
	ck_assert_str_eq(cm_buf_str(&resp.body), "busy");
	ck_assert_int_eq(atomic_load(&srv.requests), 2);
}
END_TEST

START_TEST(test_post_is_never_retried)
{
	struct cm_fetch_opts o = { .retries = 3 };

	ck_assert_int_eq(cm_fetch("POST", url_of(&srv, "127.0.0.1", "/flaky"),
				  "x", 1, &o, &resp, err),
			 0);
	ck_assert_int_eq(resp.status, 503);
	ck_assert_int_eq(atomic_load(&srv.requests), 1);
}
END_TEST

START_TEST(test_only_502_503_504_are_retried)
{
	struct cm_fetch_opts o = { .retries = 2 };

	ck_assert_int_eq(cm_fetch("DELETE",
				  url_of(&srv, "127.0.0.1", "/status/500"),
				  NULL, 0, &o, &resp, err),
			 0);
	ck_assert_int_eq(resp.status, 500);
	ck_assert_int_eq(atomic_load(&srv.requests), 1);
	cm_fetch_response_release(&resp);
	ck_assert_int_eq(cm_fetch("PUT",
				  url_of(&srv, "127.0.0.1", "/status/504"),
				  NULL, 0, &o, &resp, err),
			 0);
	ck_assert_int_eq(resp.status, 504);
	ck_assert_int_eq(atomic_load(&srv.requests), 4);
	cm_fetch_response_release(&resp);
	ck_assert_int_eq(cm_fetch("GET",
				  url_of(&srv, "127.0.0.1", "/status/502"),
				  NULL, 0, &o, &resp, err),
			 0);
	ck_assert_int_eq(atomic_load(&srv.requests), 7);
}
END_TEST

START_TEST(test_slow_server_times_out)
{
	struct cm_fetch_opts o = { .total_timeout_ms = 200 };
	int64_t t0 = cm_now_ms();

	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "127.0.0.1", "/slow"),
				  NULL, 0, &o, &resp, err),
			 CM_ETIMEDOUT);
	ck_assert_int_lt(cm_now_ms() - t0, 2000);
	ck_assert_str_ne(err, "");
}
END_TEST

START_TEST(test_timeouts_of_idempotent_calls_are_retried)
{
	struct cm_fetch_opts o = { .total_timeout_ms = 150, .retries = 1 };

	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "127.0.0.1", "/slow"),
				  NULL, 0, &o, &resp, err),
			 CM_ETIMEDOUT);
	srv_stop(&srv);
	ck_assert_int_eq(atomic_load(&srv.requests), 2);
	srv_start(&srv);
}
END_TEST

START_TEST(test_connect_failure_is_eio_and_retried_with_backoff)
{
	struct cm_fetch_opts o = { .retries = 2 };
	char url[64];
	int64_t t0;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", cm_test_free_port());
	t0 = cm_now_ms();
	ck_assert_int_eq(cm_fetch("GET", url, NULL, 0, NULL, &resp, err),
			 CM_EIO);
	ck_assert_int_lt(cm_now_ms() - t0, 100);
	ck_assert_str_ne(err, "");
	t0 = cm_now_ms();
	ck_assert_int_eq(cm_fetch("GET", url, NULL, 0, &o, &resp, err), CM_EIO);
	ck_assert_int_ge(cm_now_ms() - t0, 300);
}
END_TEST

START_TEST(test_bad_arguments_are_einval)
{
	static const char *const crlf[] = { "X-A: b\r\nX-Injected: 1", NULL };
	static const char *const nocolon[] = { "X-A", NULL };
	struct cm_fetch_opts o = { .headers = crlf };
	const char *ok = url_of(&srv, "127.0.0.1", "/ok");

	ck_assert_int_eq(
		cm_fetch("GET", "http://[::1", NULL, 0, NULL, &resp, err),
		CM_EINVAL);
	ck_assert_int_eq(
		cm_fetch("GET", "ftp://127.0.0.1/", NULL, 0, NULL, &resp, err),
		CM_EINVAL);
	ck_assert_int_eq(cm_fetch("GET", "", NULL, 0, NULL, &resp, err),
			 CM_EINVAL);
	ck_assert_int_eq(cm_fetch("G T", ok, NULL, 0, NULL, &resp, err),
			 CM_EINVAL);
	ck_assert_int_eq(cm_fetch("get", ok, NULL, 0, NULL, &resp, err),
			 CM_EINVAL);
	ck_assert_int_eq(cm_fetch("POST", ok, NULL, 3, NULL, &resp, err),
			 CM_EINVAL);
	ck_assert_int_eq(cm_fetch("HEAD", ok, "x", 1, NULL, &resp, err),
			 CM_EINVAL);
	ck_assert_int_eq(cm_fetch("GET", ok, NULL, 0, &o, &resp, err),
			 CM_EINVAL);
	o.headers = nocolon;
	ck_assert_int_eq(cm_fetch("GET", ok, NULL, 0, &o, &resp, err),
			 CM_EINVAL);
	o.headers = NULL;
	o.content_type = "text/plain\r\nX-Injected: 1";
	ck_assert_int_eq(cm_fetch("POST", ok, "x", 1, &o, &resp, err),
			 CM_EINVAL);
	ck_assert_int_eq(atomic_load(&srv.requests), 0);
}
END_TEST

/* --- the guard --- */

static bool
v4_public(const char *ip)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };

	ck_assert_int_eq(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
	return cm_addr_is_public((struct sockaddr *)&sa);
}

static bool
v6_public(const char *ip)
{
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6 };

	ck_assert_int_eq(inet_pton(AF_INET6, ip, &sa.sin6_addr), 1);
	return cm_addr_is_public((struct sockaddr *)&sa);
}

START_TEST(test_every_refused_ipv4_range_is_not_public)
{
	static const char *const refused[] = {
		"0.0.0.0",	  "0.255.255.255",   "10.0.0.1",
		"10.255.255.255", "100.64.0.0",	     "100.127.255.255",
		"127.0.0.1",	  "127.255.255.254", "169.254.169.254",
		"172.16.0.1",	  "172.31.255.255",  "192.0.0.1",
		"192.0.2.1",	  "192.168.0.1",     "192.168.255.255",
		"198.18.0.1",	  "198.19.255.255",  "198.51.100.7",
		"203.0.113.9",	  "224.0.0.1",	     "239.255.255.255",
		"240.0.0.1",	  "255.255.255.255",
	};
	static const char *const allowed[] = {
		"8.8.8.8",	   "1.1.1.1",	      "9.255.255.255",
		"11.0.0.0",	   "100.63.255.255",  "100.128.0.0",
		"126.255.255.255", "128.0.0.0",	      "169.253.255.255",
		"172.15.255.255",  "172.32.0.0",      "192.0.1.1",
		"192.0.3.0",	   "192.167.255.255", "198.17.255.255",
		"198.20.0.0",	   "198.51.101.0",    "203.0.114.0",
		"223.255.255.255",
	};
	size_t i;

	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		ck_assert_msg(!v4_public(refused[i]), "%s", refused[i]);
	for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		ck_assert_msg(v4_public(allowed[i]), "%s", allowed[i]);
}
END_TEST

START_TEST(test_every_refused_ipv6_range_is_not_public)
{
	static const char *const refused[] = {
		"::",
		"::1",
		"::127.0.0.1",
		"::8.8.8.8",
		"fc00::1",
		"fdff:ffff::1",
		"fe80::1",
		"febf::1",
		"fec0::1",
		"ff02::1",
		"ff0e::1",
		"2001:db8::1",
		"2001:db8:ffff::1",
		"::ffff:127.0.0.1",
		"::ffff:10.1.2.3",
		"::ffff:169.254.169.254",
		"::ffff:0.0.0.0",
		"64:ff9b::7f00:1",
		"64:ff9b::a9fe:a9fe",
		"64:ff9b::c0a8:1",
	};
	static const char *const allowed[] = {
		"2606:4700::1",	  "2001:4860:4860::8888", "2a00:1450::1",
		"::ffff:8.8.8.8", "64:ff9b::808:808",	  "2001:db9::1",
		"fbff::1",	  "2001:db7::1",
	};
	size_t i;

	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		ck_assert_msg(!v6_public(refused[i]), "%s", refused[i]);
	for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		ck_assert_msg(v6_public(allowed[i]), "%s", allowed[i]);
}
END_TEST

START_TEST(test_other_address_families_are_not_public)
{
	struct sockaddr sa = { .sa_family = AF_UNIX };

	ck_assert(!cm_addr_is_public(&sa));
	ck_assert(!cm_addr_is_public(NULL));
}
END_TEST

START_TEST(test_user_url_static_checks)
{
	char longurl[2100];

	ck_assert_int_eq(cm_url_check_user("https://example.com/a?b=c", err),
			 0);
	ck_assert_int_eq(cm_url_check_user("HTTP://Example.COM:8080/", err), 0);
	ck_assert_int_eq(cm_url_check_user("http://8.8.8.8/", err), 0);
	ck_assert_int_eq(cm_url_check_user("ftp://example.com/", err),
			 CM_EINVAL);
	ck_assert_int_eq(cm_url_check_user("file:///etc/passwd", err),
			 CM_EINVAL);
	ck_assert_int_eq(cm_url_check_user("gopher://example.com/", err),
			 CM_EINVAL);
	ck_assert_int_eq(
		cm_url_check_user("http://user:s3cret@example.com/", err),
		CM_EINVAL);
	ck_assert_ptr_null(strstr(err, "s3cret"));
	ck_assert_int_eq(cm_url_check_user("http://user@example.com/", err),
			 CM_EINVAL);
	ck_assert_int_eq(cm_url_check_user("http://:@example.com/", err),
			 CM_EINVAL);
	ck_assert_int_eq(cm_url_check_user("http://exa mple.com/", err),
			 CM_EINVAL);
	ck_assert_int_eq(cm_url_check_user(NULL, err), CM_EINVAL);
	memset(longurl, 'a', sizeof(longurl));
	memcpy(longurl, "http://example.com/", 19);
	longurl[2048] = '\0';
	ck_assert_int_eq(cm_url_check_user(longurl, err), 0);
	longurl[2048] = 'a';
	longurl[2049] = '\0';
	ck_assert_int_eq(cm_url_check_user(longurl, err), CM_EINVAL);
}
END_TEST

START_TEST(test_user_url_literal_private_addresses_in_every_form)
{
	static const char *const urls[] = {
		"http://127.0.0.1/",
		"http://[::1]/",
		"http://0x7f.1/",
		"http://2130706433/",
		"http://0177.0.0.1/",
		"http://127.1/",
		"http://127.0.0.1./",
		"http://[::ffff:127.0.0.1]/",
		"http://[::ffff:7f00:1]/",
		"http://169.254.169.254/latest",
		"https://10.0.0.1:8443/",
		"http://[fe80::1%25eth0]/",
		"http://0/",
	};
	size_t i;

	for (i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		ck_assert_msg(cm_url_check_user(urls[i], err) == CM_EACCES,
			      "%s", urls[i]);
		ck_assert_str_eq(err, "address not allowed");
	}
}
END_TEST

static void
assert_user_fetch_refused(const char *url)
{
	struct cm_fetch_opts o = { .user_url = true, .retries = 2 };
	int64_t t0 = cm_now_ms();

	ck_assert_msg(cm_fetch("GET", url, NULL, 0, &o, &resp, err) ==
			      CM_EACCES,
		      "%s: %s", url, err);
	ck_assert_int_lt(cm_now_ms() - t0, 250); /* a refusal is not retried */
	ck_assert_str_eq(err, "address not allowed");
	ck_assert_ptr_null(resp.body.data);
	cm_fetch_response_release(&resp);
}

START_TEST(test_user_fetch_of_loopback_is_refused_without_connecting)
{
	assert_user_fetch_refused(url_of(&srv, "127.0.0.1", "/ok"));
	assert_user_fetch_refused(url_of(&srv, "0x7f.1", "/ok"));
	assert_user_fetch_refused(url_of(&srv, "2130706433", "/ok"));
	assert_user_fetch_refused(url_of(&srv, "[::1]", "/ok"));
	srv_stop(&srv);
	ck_assert_int_eq(atomic_load(&srv.conns), 0);
	srv_start(&srv); /* for teardown */
}
END_TEST

/* "localhost" passes the static check; only the post-resolution check in
   the open-socket callback can stop it. */
START_TEST(test_user_fetch_of_a_name_resolving_to_loopback_is_refused)
{
	ck_assert_int_eq(
		cm_url_check_user(url_of(&srv, "localhost", "/ok"), err), 0);
	assert_user_fetch_refused(url_of(&srv, "localhost", "/ok"));
	srv_stop(&srv);
	ck_assert_int_eq(atomic_load(&srv.conns), 0);
	srv_start(&srv);
}
END_TEST

START_TEST(test_user_fetch_refuses_bad_schemes_and_credentials)
{
	struct cm_fetch_opts o = { .user_url = true };

	ck_assert_int_eq(
		cm_fetch("GET", "ftp://example.com/", NULL, 0, &o, &resp, err),
		CM_EINVAL);
	ck_assert_int_eq(
		cm_fetch("GET", "file:///etc/passwd", NULL, 0, &o, &resp, err),
		CM_EINVAL);
	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "u:pw@localhost", "/ok"),
				  NULL, 0, &o, &resp, err),
			 CM_EINVAL);
	srv_stop(&srv);
	ck_assert_int_eq(atomic_load(&srv.conns), 0);
	srv_start(&srv);
}
END_TEST

/* The control for the tests above: the same server is reachable when the
   URL is not a user's. */
START_TEST(test_non_user_fetch_to_loopback_is_allowed)
{
	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "localhost", "/ok"), NULL,
				  0, NULL, &resp, err),
			 0);
	ck_assert_int_eq(resp.status, 200);
	srv_stop(&srv);
	ck_assert_int_eq(atomic_load(&srv.conns), 1);
	srv_start(&srv);
}
END_TEST

/* The dev/test allow list lets exactly its networks through, at both
   checks; anything else is refused as before. */
START_TEST(test_an_allow_list_admits_only_its_networks)
{
	struct cm_fetch_opts o = { .user_url = true,
				   .allow_cidrs = "10.0.0.0/8, 127.0.0.1/32" };

	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "127.0.0.1", "/ok"), NULL,
				  0, &o, &resp, err),
			 0);
	ck_assert_int_eq(resp.status, 200);
	cm_fetch_response_release(&resp);
	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "localhost", "/ok"), NULL,
				  0, &o, &resp, err),
			 0);
	cm_fetch_response_release(&resp);
	ck_assert_int_eq(cm_url_check_user_allow("http://127.0.0.1/",
						 o.allow_cidrs, err),
			 0);
	ck_assert_int_eq(cm_url_check_user_allow("http://127.0.0.2/",
						 o.allow_cidrs, err),
			 CM_EACCES);
	ck_assert_int_eq(cm_url_check_user_allow("http://169.254.169.254/",
						 o.allow_cidrs, err),
			 CM_EACCES);
	ck_assert_int_eq(
		cm_url_check_user_allow("http://[::1]/", o.allow_cidrs, err),
		CM_EACCES);
	o.allow_cidrs = "127.0.0.2/32";
	assert_user_fetch_refused(url_of(&srv, "127.0.0.1", "/ok"));
	ck_assert_int_eq(atomic_load(&srv.requests), 2);
}
END_TEST

START_TEST(test_allow_list_syntax_and_matching)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	const struct sockaddr *v4 = (const struct sockaddr *)&sin;
	const struct sockaddr *v6 = (const struct sockaddr *)&sin6;

	ck_assert_int_eq(cm_cidrs_check(NULL, err), 0);
	ck_assert_int_eq(cm_cidrs_check("", err), 0);
	ck_assert_int_eq(cm_cidrs_check("127.0.0.0/8,::1/128 , 10.1.2.3", err),
			 0);
	ck_assert_int_eq(cm_cidrs_check("127.0.0.0/33", err), CM_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "127.0.0.0/33"));
	ck_assert_int_eq(cm_cidrs_check("localhost", err), CM_EINVAL);
	ck_assert_int_eq(cm_cidrs_check("127.0.0.0/8,", err), CM_EINVAL);
	ck_assert_int_eq(cm_cidrs_check("::1/129", err), CM_EINVAL);
	ck_assert_int_eq(cm_cidrs_check("1.2.3.4/x", err), CM_EINVAL);
	inet_pton(AF_INET, "127.9.8.7", &sin.sin_addr);
	ck_assert(cm_addr_in_cidrs(v4, "127.0.0.0/8"));
	ck_assert(!cm_addr_in_cidrs(v4, "127.0.0.0/16"));
	ck_assert(!cm_addr_in_cidrs(v4, ""));
	ck_assert(!cm_addr_in_cidrs(v4, NULL));
	ck_assert(!cm_addr_in_cidrs(v4, "127.0.0.0/8,bad"));
	ck_assert(cm_addr_in_cidrs(v4, "0.0.0.0/0"));
	inet_pton(AF_INET6, "::ffff:127.9.8.7", &sin6.sin6_addr);
	ck_assert(cm_addr_in_cidrs(v6, "127.0.0.0/12"));
	ck_assert(!cm_addr_in_cidrs(v6, "::1/128"));
	inet_pton(AF_INET6, "::1", &sin6.sin6_addr);
	ck_assert(cm_addr_in_cidrs(v6, "::1/128"));
	ck_assert(!cm_addr_in_cidrs(v6, "127.0.0.0/8"));
	inet_pton(AF_INET6, "fd12:3456::1", &sin6.sin6_addr);
	ck_assert(cm_addr_in_cidrs(v6, "fd12:3456::/32"));
	ck_assert(!cm_addr_in_cidrs(v6, "fd12:3457::/32"));
	ck_assert(cm_addr_in_cidrs(v6, "fd12:3457::/31"));
}
END_TEST

START_TEST(test_a_malformed_allow_list_is_refused_by_fetch)
{
	struct cm_fetch_opts o = { .user_url = true, .allow_cidrs = "nope" };

	ck_assert_int_eq(cm_fetch("GET", url_of(&srv, "127.0.0.1", "/ok"), NULL,
				  0, &o, &resp, err),
			 CM_EINVAL);
	srv_stop(&srv);
	ck_assert_int_eq(atomic_load(&srv.conns), 0);
	srv_start(&srv);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("httpclient");
	TCase *fetch = tcase_create("fetch");
	TCase *guard = tcase_create("guard");

	tcase_add_checked_fixture(fetch, setup, teardown);
	tcase_set_timeout(fetch, 20);
	tcase_add_test(fetch, test_get_returns_status_body_and_content_type);
	tcase_add_test(fetch, test_http_error_status_is_still_success);
	tcase_add_test(fetch,
		       test_put_sends_method_body_headers_and_content_type);
	tcase_add_test(fetch, test_post_and_delete_and_head_use_their_methods);
	tcase_add_test(fetch, test_body_exactly_at_the_cap_is_accepted);
	tcase_add_test(fetch, test_declared_length_over_the_cap_is_refused);
	tcase_add_test(fetch,
		       test_declared_length_is_refused_before_the_body_arrives);
	tcase_add_test(fetch, test_streamed_body_over_the_cap_is_cut_off);
	tcase_add_test(fetch, test_get_retries_503_until_success);
	tcase_add_test(fetch, test_retries_run_out_and_return_the_last_status);
	tcase_add_test(fetch, test_post_is_never_retried);
	tcase_add_test(fetch, test_only_502_503_504_are_retried);
	tcase_add_test(fetch, test_slow_server_times_out);
	tcase_add_test(fetch, test_timeouts_of_idempotent_calls_are_retried);
	tcase_add_test(fetch,
		       test_connect_failure_is_eio_and_retried_with_backoff);
	tcase_add_test(fetch, test_bad_arguments_are_einval);
	suite_add_tcase(s, fetch);

	tcase_add_checked_fixture(guard, setup, teardown);
	tcase_set_timeout(guard, 20);
	tcase_add_test(guard, test_every_refused_ipv4_range_is_not_public);
	tcase_add_test(guard, test_every_refused_ipv6_range_is_not_public);
	tcase_add_test(guard, test_other_address_families_are_not_public);
	tcase_add_test(guard, test_user_url_static_checks);
	tcase_add_test(guard,
		       test_user_url_literal_private_addresses_in_every_form);
	tcase_add_test(
		guard,
		test_user_fetch_of_loopback_is_refused_without_connecting);
	tcase_add_test(
		guard,
		test_user_fetch_of_a_name_resolving_to_loopback_is_refused);
	tcase_add_test(guard,
		       test_user_fetch_refuses_bad_schemes_and_credentials);
	tcase_add_test(guard, test_non_user_fetch_to_loopback_is_allowed);
	tcase_add_test(guard, test_an_allow_list_admits_only_its_networks);
	tcase_add_test(guard, test_allow_list_syntax_and_matching);
	tcase_add_test(guard, test_a_malformed_allow_list_is_refused_by_fetch);
	suite_add_tcase(s, guard);
	return s;
}

CM_TEST_MAIN(make_suite)
