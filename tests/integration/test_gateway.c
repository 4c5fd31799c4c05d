/*
 * test_gateway.c - brain's gateway (/api/<service>/...) against upstreams:
 * a small in-test HTTP server that answers with the request it received
 * (to see exactly what brain forwarded), a port that accepts but never
 * answers (timeouts), a closed port (upstream down), and the real
 * event-bus (identity and tenant isolation end to end).
 */
#include "svc.h"
#include "testutil.h"

#include "common/auth.h"
#include "common/buf.h"
#include "common/mem.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/banned.h"

static struct cm_test_svc brain, bus;
static char tenant_a[37], tenant_b[37], tenant_off[37], tenant_slow[37];
static char user_a[37];
static int echo_fd = -1, silent_fd = -1, echo_port, silent_port;
static pid_t echo_pid; /* the echo server runs in its own process */
/* set by the echo server (its own process; tests run in forked children) */
static atomic_int *upstream_saw_close;
/* /api/crm/flaky: requests the echo server dropped, POSTs it received */
static atomic_int *upstream_dropped, *upstream_flaky_posts;
/* connections brain closed right after an idle-probe request */
static atomic_int *upstream_probe_closed;

/* ---- the echo upstream ------------------------------------------------ */

static void
send_all(int fd, const char *s, size_t n)
{
	ssize_t w;

	while (n > 0 && (w = send(fd, s, n, MSG_NOSIGNAL)) > 0) {
		s += w;
		n -= (size_t)w;
	}
}

/* One request (head + Content-Length body) into b; false at EOF. */
static bool
read_request(int fd, struct cm_buf *b)
{
	char chunk[4096];
	const char *end, *cl;
	size_t want = 0;
	ssize_t n;

	for (;;) {
		end = b->len ? strstr(cm_buf_str(b), "\r\n\r\n") : NULL;
		if (end) {
			cl = strcasestr(cm_buf_str(b), "\r\nContent-Length: ");
			want = (size_t)(end + 4 - b->data) +
			       (cl && cl < end ? strtoul(cl + 18, NULL, 10)
					       : 0);
			if (b->len >= want)
				return true;
		}
		n = recv(fd, chunk, sizeof(chunk), 0);
		if (n <= 0)
			return false;
		cm_buf_add(b, chunk, (size_t)n);
	}
}

/* GET .../stream: two events 600 ms apart, chunked; then waits for the
   client to go away if the path says so. */
static void
answer_stream(int fd, bool hold)
{
	static const char head[] = "HTTP/1.1 200 OK\r\n"
				   "Content-Type: text/event-stream\r\n"
				   "Connection: close\r\n"
				   "Transfer-Encoding: chunked\r\n\r\n";
	static const char one[] = "b\r\ndata: one\n\n\r\n";
	static const char two[] = "b\r\ndata: two\n\n\r\n";
	struct pollfd p = { fd, POLLIN, 0 };
	char c;

	send_all(fd, head, sizeof(head) - 1);
	send_all(fd, one, sizeof(one) - 1);
	if (hold) { /* until brain closes the upstream connection */
		if (poll(&p, 1, 10000) == 1 && recv(fd, &c, 1, 0) <= 0)
			atomic_store(upstream_saw_close, 1);
		return;
	}
	usleep(600 * 1000);
	send_all(fd, two, sizeof(two) - 1);
	send_all(fd, "0\r\n\r\n", 5);
}

/* GET .../stream-bad: one event, then a chunk whose size is not hex;
   then waits for brain to let go. */
static void
answer_stream_bad(int fd)
{
	static const char head[] = "HTTP/1.1 200 OK\r\n"
				   "Content-Type: text/event-stream\r\n"
				   "Transfer-Encoding: chunked\r\n\r\n"
				   "b\r\ndata: one\n\n\r\n";
	static const char bad[] = "zz\r\nbroken\r\n";
	struct pollfd p = { fd, POLLIN, 0 };
	char c;

	send_all(fd, head, sizeof(head) - 1);
	usleep(100 * 1000);
	send_all(fd, bad, sizeof(bad) - 1);
	if (poll(&p, 1, 10000) == 1)
		(void)recv(fd, &c, 1, 0);
}

static void *
echo_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	struct cm_buf req = CM_BUF_INIT(8192), resp = CM_BUF_INIT(8192);
	bool served_flaky = false, probed = false;

	for (;;) {
		const char *line;

		if (!read_request(fd, &req)) { /* brain closed it */
			if (probed)
				atomic_fetch_add(upstream_probe_closed, 1);
			break;
		}
		line = cm_buf_str(&req);
		probed = strstr(line, " /api/crm/idle-probe ") != NULL;

		/* a kept-alive connection the upstream closes just as the
		   next request arrives: the first flaky request of each
		   connection is answered, a later one dropped unanswered */
		if (strstr(line, " /api/crm/flaky ")) {
			if (!strncmp(line, "POST ", 5))
				atomic_fetch_add(upstream_flaky_posts, 1);
			if (served_flaky) {
				atomic_fetch_add(upstream_dropped, 1);
				break;
			}
			served_flaky = true;
		}

		if (strstr(line, " /api/crm/stream-bad ")) {
			answer_stream_bad(fd);
			break;
		}
		if (strstr(line, " /api/crm/stream-hold ")) {
			answer_stream(fd, true);
			break;
		}
		if (strstr(line, " /api/crm/stream ")) {
			answer_stream(fd, false);
			break;
		}
		if (strstr(line, " /api/crm/weird-status ")) {
			static const char weird[] =
				"HTTP/1.1 999 Weird\r\nContent-Length: 0\r\n"
				"Connection: close\r\n\r\n";

			send_all(fd, weird, sizeof(weird) - 1);
			break;
		}
		if (strstr(line, " /api/crm/until-close ")) {
			static const char tail[] =
				"HTTP/1.1 200 OK\r\nContent-Type: "
				"text/plain\r\n"
				"\r\nthe body ends with the connection";

			send_all(fd, tail, sizeof(tail) - 1);
			break;
		}
		if (strstr(line, " /api/crm/huge-head ")) { /* 70 KB head */
			static char pad[70000];
			static const char start[] =
				"HTTP/1.1 200 OK\r\nX-Pad: ";

			memset(pad, 'p', sizeof(pad));
			send_all(fd, start, sizeof(start) - 1);
			send_all(fd, pad, sizeof(pad));
			send_all(fd, "\r\nContent-Length: 0\r\n\r\n", 23);
			break;
		}
		if (strstr(line, " /api/crm/huge ")) { /* over the 16 MiB cap */
			static char zeros[65536];
			char head[128];
			int i;

			snprintf(head, sizeof(head),
				 "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
				 "Connection: close\r\n\r\n",
				 17 << 20);
			send_all(fd, head, strlen(head));
			for (i = 0; i < (17 << 20) / (int)sizeof(zeros); i++)
				send_all(fd, zeros, sizeof(zeros));
			break;
		}
		cm_buf_reset(&resp);
		cm_buf_printf(&resp,
			      "HTTP/1.1 %s\r\nContent-Type: text/plain\r\n"
			      "X-Upstream: echo\r\nX-Request-ID: upstream\r\n"
			      "Content-Length: %zu\r\n\r\n",
			      strstr(line, " /api/crm/teapot ")
				      ? "418 I'm a teapot"
				      : "200 OK",
			      req.len);
		cm_buf_add(&resp, req.data, req.len);
		send_all(fd, resp.data, resp.len);
		cm_buf_reset(&req);
	}
	cm_buf_release(&req);
	cm_buf_release(&resp);
	close(fd);
	return NULL;
}

static void *
echo_main(void *arg)
{
	pthread_t t;
	int fd;

	(void)arg;
	while ((fd = accept(echo_fd, NULL, NULL)) >= 0) {
		if (pthread_create(&t, NULL, echo_conn, (void *)(intptr_t)fd))
			close(fd);
		else
			pthread_detach(t);
	}
	return NULL;
}

/* A listening socket on 127.0.0.1 (port back in *port). */
static int
listener(int *port)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 64), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* ---- set-up ------------------------------------------------------------- */

static void
add_tenant(char id[37], const char *prefix, const char *services,
	   const char *limits)
{
	char sql[768];

	ck_assert_int_eq(cm_uuid_v4(id), 0);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO brain.tenants (id, slug, name, status, "
		 "subscription_tier, services_enabled, limits) VALUES ('%s', "
		 "'%s-%.8s', 'Tenant %s', 'active', 'starter', '%s', '%s')",
		 id, prefix, id, prefix, services, limits);
	ck_assert_int_eq(cm_test_psql(sql), 0);
}

static void
setup(void)
{
	char crm[64], cms[64], agents[64], bus_url[64];
	const char *env[] = { crm,
			      cms,
			      agents,
			      bus_url,
			      "GATEWAY_TIMEOUT_MS=700",
			      "GATEWAY_IDLE_TIMEOUT_S=2",
			      "GATEWAY_PLAN_TTL_MS=0",
			      NULL };

	cm_test_require_stack();
	upstream_saw_close =
		mmap(NULL, sizeof(*upstream_saw_close), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(upstream_saw_close != MAP_FAILED);
	upstream_dropped =
		mmap(NULL, 3 * sizeof(*upstream_dropped),
		     PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(upstream_dropped != MAP_FAILED);
	upstream_flaky_posts = upstream_dropped + 1;
	upstream_probe_closed = upstream_dropped + 2;
	echo_fd = listener(&echo_port);
	silent_fd = listener(&silent_port); /* never accepts */
	/* its own process: forked tests must not inherit its threads */
	echo_pid = fork();
	ck_assert_int_ge(echo_pid, 0);
	if (echo_pid == 0) {
		echo_main(NULL);
		_exit(0);
	}
	ck_assert_int_eq(cm_test_svc_start(&bus, "event-bus", NULL), 0);
	snprintf(crm, sizeof(crm), "CRM_URL=http://127.0.0.1:%d", echo_port);
	snprintf(cms, sizeof(cms), "CMS_URL=http://127.0.0.1:%d", silent_port);
	snprintf(agents, sizeof(agents), "AGENTS_URL=http://127.0.0.1:%d",
		 cm_test_free_port());
	snprintf(bus_url, sizeof(bus_url), "EVENT_BUS_URL=http://127.0.0.1:%d",
		 bus.port);
	ck_assert_int_eq(cm_test_svc_start(&brain, "brain", env), 0);
	add_tenant(tenant_a, "gwa", "{crm,cms,ai_agents}", "{}");
	add_tenant(tenant_b, "gwb", "{crm,cms,ai_agents}", "{}");
	add_tenant(tenant_off, "gwoff", "{cms}", "{}");
	add_tenant(tenant_slow, "gwslow", "{crm}",
		   "{\"api_requests_per_minute\": 3}");
	ck_assert_int_eq(cm_uuid_v4(user_a), 0);
}

static void
teardown(void)
{
	cm_test_svc_stop(&brain);
	cm_test_svc_stop(&bus);
	kill(echo_pid, SIGKILL);
	waitpid(echo_pid, NULL, 0);
	close(echo_fd);
	close(silent_fd);
}

/* A request through brain as an owner of tid, with extra headers. */
static struct cm_test_resp
gw(const char *method, const char *tid, const char *path, const char *body,
   const char *const *extra)
{
	char *tok = cm_test_user_token(user_a, tid, "[\"owner\"]", 300);
	struct cm_buf auth = CM_BUF_INIT(0);
	const char *hs[16] = { NULL, "Content-Type: application/json" };
	struct cm_test_resp r;
	int n = 2;

	cm_buf_printf(&auth, "Authorization: Bearer %s", tok);
	hs[0] = cm_buf_str(&auth);
	while (extra && *extra && n < 15)
		hs[n++] = *extra++;
	hs[n] = NULL;
	ck_assert_int_eq(cm_test_http(method, brain.port, path, hs, body, &r),
			 0);
	cm_buf_release(&auth);
	free(tok);
	return r;
}

/* The value of header name in the raw request text, copied to out. */
static const char *
raw_header(const char *raw, const char *name, char *out, size_t cap)
{
	char pat[64];
	const char *p, *e;
	size_t n;

	snprintf(pat, sizeof(pat), "\r\n%s: ", name);
	p = strcasestr(raw, pat);
	if (!p)
		return NULL;
	p += strlen(pat);
	e = strstr(p, "\r\n");
	n = e ? (size_t)(e - p) : strlen(p);
	if (n >= cap)
		n = cap - 1;
	memcpy(out, p, n);
	out[n] = '\0';
	return out;
}

/* ---- tests ------------------------------------------------------------------
 */

START_TEST(test_forwards_request_as_received_with_verified_identity_only)
{
	char spoof_tenant[64], token[1024], v[256];
	const char *extra[] = { spoof_tenant,
				"X-User-ID: someone-else",
				"X-User-Roles: super_admin",
				"X-Request-ID: gw-test-1",
				"X-Custom: kept",
				"Connection: close, X-Hop",
				"X-Hop: dropped",
				NULL };
	char errbuf[CM_ERRBUF_LEN] = "";
	struct cm_principal p;
	struct cm_test_resp r;

	snprintf(spoof_tenant, sizeof(spoof_tenant), "X-Tenant-ID: %s",
		 tenant_b);
	r = gw("POST", tenant_a, "/api/crm/echo/a%2Fb?x=1&y=%20z",
	       "{\"hello\":1}", extra);
	cm_test_expect(&r, 200, NULL);
	ck_assert_msg(!strncmp(r.body,
			       "POST /api/crm/echo/a%2Fb?x=1&y=%20z HTTP/1.1",
			       44),
		      "%s", r.body);
	ck_assert_ptr_nonnull(strstr(r.body, "\r\n\r\n{\"hello\":1}"));
	ck_assert_str_eq(raw_header(r.body, "X-Tenant-ID", v, sizeof(v)),
			 tenant_a);
	ck_assert_str_eq(raw_header(r.body, "X-User-ID", v, sizeof(v)), user_a);
	ck_assert_str_eq(raw_header(r.body, "X-User-Roles", v, sizeof(v)),
			 "owner");
	ck_assert_str_eq(raw_header(r.body, "X-Request-ID", v, sizeof(v)),
			 "gw-test-1");
	ck_assert_str_eq(raw_header(r.body, "X-Custom", v, sizeof(v)), "kept");
	ck_assert_str_eq(raw_header(r.body, "X-Forwarded-For", v, sizeof(v)),
			 "127.0.0.1");
	ck_assert_ptr_null(raw_header(r.body, "Authorization", v, sizeof(v)));
	ck_assert_ptr_null(raw_header(r.body, "X-Hop", v, sizeof(v)));
	ck_assert_ptr_null(strstr(r.body, tenant_b));
	ck_assert_ptr_null(strstr(r.body, "someone-else"));
	ck_assert_ptr_null(strstr(r.body, "super_admin"));
	/* one of each identity header, the token verifiable by the crm */
	ck_assert_ptr_nonnull(
		raw_header(r.body, "X-Service-Token", token, sizeof(token)));
	ck_assert_int_eq(cm_service_token_verify(cm_test_env("SERVICE_SECRET"),
						 "crm", token, &p, errbuf),
			 0);
	ck_assert_str_eq(p.sub, user_a);
	ck_assert_str_eq(p.tenant_id, tenant_a);
	ck_assert_str_eq(p.via, "brain");
	ck_assert(!p.is_service);
	ck_assert_int_eq(p.nroles, 1);
	ck_assert_str_eq(p.roles[0], "owner");
	/* not for another service */
	ck_assert_int_eq(cm_service_token_verify(cm_test_env("SERVICE_SECRET"),
						 "cms", token, &p, errbuf),
			 CM_EACCES);
	/* the answer: upstream's status and headers, brain's request id */
	ck_assert_str_eq(cm_test_resp_header(&r, "X-Upstream"), "echo");
	ck_assert_str_eq(cm_test_resp_header(&r, "X-Request-ID"), "gw-test-1");
	ck_assert_ptr_nonnull(cm_test_resp_header(&r, "X-RateLimit-Remaining"));
	cm_test_resp_release(&r);

	/* a client's own X-Service-Token is checked, not passed on */
	r = gw("GET", tenant_a, "/api/crm/x", NULL,
	       (const char *const[]){ "X-Service-Token: forged", NULL });
	cm_test_expect(&r, 401, "invalid_service_token");
	cm_test_resp_release(&r);

	r = gw("GET", tenant_a, "/api/crm/teapot", NULL, NULL);
	cm_test_expect(&r, 418, NULL);
	ck_assert_str_eq(cm_test_resp_header(&r, "X-Upstream"), "echo");
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_upstream_down_or_silent_is_a_json_error_naming_it)
{
	struct cm_test_resp r =
		gw("GET", tenant_a, "/api/agents/x", NULL, NULL);

	cm_test_expect(&r, 502, "upstream_unavailable");
	ck_assert_ptr_nonnull(strstr(r.body, "agents"));
	ck_assert_ptr_nonnull(strstr(r.body, "request_id"));
	cm_test_resp_release(&r);

	r = gw("GET", tenant_a, "/api/cms/pages", NULL, NULL);
	cm_test_expect(&r, 504, "upstream_timeout");
	ck_assert_ptr_nonnull(strstr(r.body, "cms"));
	cm_test_resp_release(&r);

	/* a status line no HTTP server sends, an answer over the cap */
	r = gw("GET", tenant_a, "/api/crm/weird-status", NULL, NULL);
	cm_test_expect(&r, 502, "upstream_unavailable");
	ck_assert_ptr_nonnull(strstr(r.body, "malformed"));
	cm_test_resp_release(&r);
	r = gw("GET", tenant_a, "/api/crm/huge", NULL, NULL);
	cm_test_expect(&r, 502, "upstream_response_too_large");
	cm_test_resp_release(&r);
	r = gw("GET", tenant_a, "/api/crm/huge-head", NULL, NULL);
	cm_test_expect(&r, 502, "upstream_unavailable");
	ck_assert_ptr_nonnull(strstr(r.body, "malformed"));
	cm_test_resp_release(&r);
	/* not an error: a body without a length ends with the connection */
	r = gw("GET", tenant_a, "/api/crm/until-close", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "the body ends with the connection");
	cm_test_resp_release(&r);

	/* a request target too long to forward */
	{
		struct cm_buf path = CM_BUF_INIT(6000);

		cm_buf_puts(&path, "/api/crm/");
		while (path.len < 5000)
			cm_buf_puts(&path, "aaaaaaaaaa");
		r = gw("GET", tenant_a, cm_buf_str(&path), NULL, NULL);
		cm_test_expect(&r, 414, "uri_too_long");
		cm_test_resp_release(&r);
		cm_buf_release(&path);
	}

	/* all counted */
	ck_assert_int_eq(
		cm_test_http("GET", brain.port, "/metrics", NULL, NULL, &r), 0);
	ck_assert_ptr_nonnull(strstr(r.body,
				     "bz_gateway_upstream_errors_total{"
				     "service=\"brain\",upstream=\"agents\","
				     "kind=\"unavailable\"}"));
	ck_assert_ptr_nonnull(strstr(r.body,
				     "bz_gateway_upstream_errors_total{"
				     "service=\"brain\",upstream=\"cms\","
				     "kind=\"timeout\"}"));
	ck_assert_ptr_nonnull(strstr(r.body,
				     "bz_gateway_upstream_errors_total{"
				     "service=\"brain\",upstream=\"crm\","
				     "kind=\"too_large\"}"));
	ck_assert_ptr_nonnull(strstr(r.body,
				     "bz_gateway_upstream_errors_total{"
				     "service=\"brain\",upstream=\"crm\","
				     "kind=\"protocol\"}"));
	cm_test_resp_release(&r);
}
END_TEST

/* An upstream that closes a kept-alive connection as a request arrives on
   it: a GET is sent again on a new connection and answered; a POST is not
   (the upstream may have acted on it): 502, received once. */
START_TEST(test_a_request_on_a_closed_kept_alive_connection_is_retried_if_safe)
{
	struct cm_test_resp r;
	int i, bad = 0, posts_502 = 0, dropped;

	atomic_store(upstream_dropped, 0);
	atomic_store(upstream_flaky_posts, 0);
	for (i = 0; i < 8; i++) {
		r = gw("GET", tenant_a, "/api/crm/flaky", NULL, NULL);
		if (r.status != 200)
			bad++;
		cm_test_resp_release(&r);
	}
	ck_assert_int_eq(bad, 0);
	dropped = atomic_load(upstream_dropped);
	ck_assert_int_ge(dropped, 1); /* the retries were needed */
	for (i = 0; i < 8; i++) {
		r = gw("POST", tenant_a, "/api/crm/flaky", "{}", NULL);
		if (r.status == 502)
			posts_502++;
		else
			ck_assert_int_eq(r.status, 200);
		cm_test_resp_release(&r);
	}
	ck_assert_int_ge(posts_502, 1);
	ck_assert_int_eq(atomic_load(upstream_dropped) - dropped, posts_502);
	ck_assert_int_eq(atomic_load(upstream_flaky_posts), 8);
	ck_assert_int_eq(
		cm_test_http("GET", brain.port, "/metrics", NULL, NULL, &r), 0);
	ck_assert_ptr_nonnull(strstr(r.body,
				     "bz_gateway_upstream_errors_total{"
				     "service=\"brain\",upstream=\"crm\","
				     "kind=\"stale_connection_retried\"}"));
	cm_test_resp_release(&r);
}
END_TEST

/* Raw client: the first event arrives while the upstream still holds the
   second back. */
/* A raw connection to brain with GET path sent as tok's user; reads time
   out after 10 s (a test fails rather than hangs). */
static int
stream_open(const char *path, const char *tok)
{
	struct sockaddr_in sa;
	struct cm_buf req = CM_BUF_INIT(2048);
	struct timeval tv = { 10, 0 };
	int fd;

	cm_buf_printf(&req,
		      "GET %s HTTP/1.1\r\nHost: x\r\n"
		      "Authorization: Bearer %s\r\n\r\n",
		      path, tok);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)brain.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	send_all(fd, req.data, req.len);
	cm_buf_release(&req);
	return fd;
}

/* Read from fd into got until it holds want. */
static void
recv_until(int fd, struct cm_buf *got, const char *want)
{
	char chunk[4096];
	ssize_t n;

	while (!strstr(cm_buf_str(got), want)) {
		n = recv(fd, chunk, sizeof(chunk), 0);
		ck_assert_msg(n > 0, "the stream ended before \"%s\"", want);
		cm_buf_add(got, chunk, (size_t)n);
	}
}

START_TEST(test_event_streams_pass_through_unbuffered)
{
	char *tok = cm_test_user_token(user_a, tenant_a, "[\"owner\"]", 300);
	struct cm_buf got = CM_BUF_INIT(4096);
	char chunk[4096];
	ssize_t n;
	int fd;

	fd = stream_open("/api/crm/stream", tok);
	recv_until(fd, &got, "data: one");
	ck_assert_ptr_nonnull(strstr(cm_buf_str(&got), "HTTP/1.1 200"));
	ck_assert_ptr_nonnull(strcasestr(cm_buf_str(&got),
					 "Content-Type: text/event-stream"));
	/* the upstream sends "two" 600 ms after "one": not here yet */
	ck_assert_ptr_null(strstr(cm_buf_str(&got), "data: two"));
	recv_until(fd, &got, "\r\n0\r\n\r\n");
	ck_assert_ptr_nonnull(strstr(cm_buf_str(&got), "data: two"));
	close(fd);

	/* a client that leaves mid-stream: brain lets go of the upstream */
	atomic_store(upstream_saw_close, 0);
	cm_buf_reset(&got);
	fd = stream_open("/api/crm/stream-hold", tok);
	recv_until(fd, &got, "data: one");
	close(fd);
	for (n = 0; n < 100 && !atomic_load(upstream_saw_close); n++)
		usleep(50 * 1000);
	ck_assert_msg(atomic_load(upstream_saw_close),
		      "the upstream stream was not released");

	/* an upstream that breaks the framing mid-stream: the client's
	   connection is closed without the final chunk, so it can tell */
	cm_buf_reset(&got);
	fd = stream_open("/api/crm/stream-bad", tok);
	while ((n = recv(fd, chunk, sizeof(chunk), 0)) > 0)
		cm_buf_add(&got, chunk, (size_t)n);
	ck_assert_int_eq(n, 0); /* closed, not timed out */
	ck_assert_ptr_nonnull(strstr(cm_buf_str(&got), "data: one"));
	ck_assert_ptr_null(strstr(cm_buf_str(&got), "broken"));
	ck_assert_ptr_null(strstr(cm_buf_str(&got), "\r\n0\r\n\r\n"));
	close(fd);
	cm_buf_release(&got);
	free(tok);
}
END_TEST

START_TEST(test_disabled_service_and_plan_rate_limit)
{
	struct cm_test_resp r = gw("GET", tenant_off, "/api/crm/x", NULL, NULL);
	int i;

	cm_test_expect(&r, 403, "service_not_enabled");
	cm_test_resp_release(&r);
	for (i = 0; i < 3; i++) {
		r = gw("GET", tenant_slow, "/api/crm/x", NULL, NULL);
		cm_test_expect(&r, 200, NULL);
		cm_test_resp_release(&r);
	}
	r = gw("GET", tenant_slow, "/api/crm/x", NULL, NULL);
	cm_test_expect(&r, 429, "rate_limited");
	ck_assert_str_eq(cm_test_resp_header(&r, "X-RateLimit-Remaining"), "0");
	ck_assert_int_ge(
		strtol(cm_test_resp_header(&r, "Retry-After"), NULL, 10), 1);
	cm_test_resp_release(&r);
	/* another tenant's budget is its own */
	r = gw("GET", tenant_a, "/api/crm/x", NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_api_keys_reach_only_their_scopes)
{
	struct cm_test_resp r;
	struct cm_buf auth = CM_BUF_INIT(0);
	const char *hs[3] = { NULL, "Content-Type: application/json", NULL };
	const cJSON *key;

	r = gw("POST", tenant_a, "/api/tenant/api-keys",
	       "{\"name\":\"gw\",\"scopes\":[\"crm:read\"]}", NULL);
	cm_test_expect(&r, 201, NULL);
	key = cJSON_GetObjectItemCaseSensitive(r.json, "key");
	ck_assert(cJSON_IsString(key));
	cm_buf_printf(&auth, "Authorization: Bearer %s", key->valuestring);
	cm_test_resp_release(&r);
	hs[0] = cm_buf_str(&auth);
	ck_assert_int_eq(
		cm_test_http("GET", brain.port, "/api/crm/leads", hs, NULL, &r),
		0);
	cm_test_expect(&r, 200, NULL);
	ck_assert_ptr_nonnull(strstr(r.body, "X-User-Roles: crm:read"));
	cm_test_resp_release(&r);
	ck_assert_int_eq(cm_test_http("POST", brain.port, "/api/crm/leads", hs,
				      "{}", &r),
			 0);
	cm_test_expect(&r, 403, "insufficient_scope");
	cm_test_resp_release(&r);
	ck_assert_int_eq(
		cm_test_http("GET", brain.port, "/api/cms/pages", hs, NULL, &r),
		0);
	cm_test_expect(&r, 403, "insufficient_scope");
	cm_test_resp_release(&r);
	cm_buf_release(&auth);
}
END_TEST

struct gw_client {
	int id, ok;
};

static void *
gw_client_run(void *arg)
{
	struct gw_client *c = arg;
	char path[128], want[160], v[64];
	const char *tid;
	struct cm_test_resp r;
	int i;

	for (i = 0; i < 25; i++) {
		tid = (c->id + i) % 2 ? tenant_a : tenant_b;
		snprintf(path, sizeof(path), "/api/crm/echo?c=%d&i=%d", c->id,
			 i);
		snprintf(want, sizeof(want), "GET %s HTTP/1.1\r\n", path);
		r = gw("GET", tid, path, NULL, NULL);
		if (r.status == 200 && !strncmp(r.body, want, strlen(want)) &&
		    raw_header(r.body, "X-Tenant-ID", v, sizeof(v)) &&
		    !strcmp(v, tid))
			c->ok++;
		cm_test_resp_release(&r);
	}
	return NULL;
}

/* Requests forwarded at the same moment (sent together when a round of
   callbacks ends) each reach the upstream once, as sent, with their own
   tenant, and each answer goes back to its own client. */
START_TEST(test_concurrent_requests_each_get_their_own_answer)
{
	struct gw_client c[8];
	pthread_t t[8];
	int i;

	for (i = 0; i < 8; i++) {
		c[i] = (struct gw_client){ i, 0 };
		ck_assert_int_eq(
			pthread_create(&t[i], NULL, gw_client_run, &c[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		ck_assert_int_eq(c[i].ok, 25);
	}
}
END_TEST

/* A pooled upstream connection idle past GATEWAY_IDLE_TIMEOUT_S (2 s
   here) is closed by brain, which looks every 5 s; the echo upstream
   itself never closes an idle connection. */
START_TEST(test_idle_upstream_connections_are_closed)
{
	struct cm_test_resp r;
	int i;

	atomic_store(upstream_probe_closed, 0);
	r = gw("GET", tenant_a, "/api/crm/idle-probe", NULL, NULL);
	cm_test_expect(&r, 200, NULL);
	cm_test_resp_release(&r);
	usleep(500 * 1000);
	ck_assert_int_eq(atomic_load(upstream_probe_closed), 0); /* pooled */
	for (i = 0; i < 120 && !atomic_load(upstream_probe_closed); i++)
		usleep(100 * 1000);
	ck_assert_int_eq(atomic_load(upstream_probe_closed), 1);
}
END_TEST

/* The real event bus behind the gateway: what A publishes, B cannot see,
   even with A's id in a spoofed X-Tenant-ID. */
START_TEST(test_real_upstream_keeps_tenants_apart)
{
	char body[512], spoof[64];
	const char *extra[] = { spoof, NULL };
	struct cm_test_resp r;
	const cJSON *items;
	bool found = false;
	int i;

	snprintf(body, sizeof(body),
		 "{\"event_type\":\"system.maintenance\",\"aggregate_type\":"
		 "\"system\",\"aggregate_id\":\"gw-1\",\"data\":{\"message\":"
		 "\"via the gateway\"}}");
	r = gw("POST", tenant_a, "/api/events/publish", body, NULL);
	ck_assert_msg(r.status == 201 || r.status == 202, "%ld %s", r.status,
		      r.body);
	cm_test_resp_release(&r);

	/* the audit writer stores it in its own time */
	for (i = 0; i < 100; i++) {
		r = gw("GET", tenant_a, "/api/events/history?limit=10", NULL,
		       NULL);
		cm_test_expect(&r, 200, NULL);
		found = strstr(r.body, "via the gateway") != NULL;
		cm_test_resp_release(&r);
		if (found)
			break;
		usleep(100 * 1000);
	}
	ck_assert_msg(found, "the event never reached the history");

	snprintf(spoof, sizeof(spoof), "X-Tenant-ID: %s", tenant_a);
	r = gw("GET", tenant_b, "/api/events/history?limit=10", NULL, extra);
	cm_test_expect(&r, 200, NULL);
	items = cJSON_GetObjectItemCaseSensitive(r.json, "items");
	ck_assert(cJSON_IsArray(items));
	ck_assert_ptr_null(strstr(r.body, "via the gateway"));
	cm_test_resp_release(&r);
}
END_TEST

/* Straight to a service: a gateway token whose headers disagree with it,
   or a service other than brain sending a user, is refused. */
START_TEST(test_services_refuse_mismatched_or_foreign_gateway_tokens)
{
	char errbuf[CM_ERRBUF_LEN] = "", hdr[1200], tid[64], *tok = NULL;
	struct cm_principal u;
	struct cm_test_resp r;
	const char *hs[4] = { hdr, tid, NULL, NULL };

	memset(&u, 0, sizeof(u));
	cm_strlcpy(u.sub, user_a, sizeof(u.sub));
	cm_strlcpy(u.tenant_id, tenant_a, sizeof(u.tenant_id));
	cm_strlcpy(u.roles[0], "owner", sizeof(u.roles[0]));
	u.nroles = 1;
	ck_assert_int_eq(cm_gateway_token_mint(cm_test_env("SERVICE_SECRET"),
					       "event-bus", 60, &u, &tok,
					       errbuf),
			 0);
	snprintf(hdr, sizeof(hdr), "X-Service-Token: %s", tok);
	snprintf(tid, sizeof(tid), "X-Tenant-ID: %s", tenant_a);
	ck_assert_int_eq(cm_test_http("GET", bus.port, "/whoami", hs, NULL, &r),
			 0);
	cm_test_expect(&r, 200, NULL);
	ck_assert_ptr_nonnull(strstr(r.body, user_a));
	ck_assert_ptr_nonnull(strstr(r.body, tenant_a));
	ck_assert_ptr_nonnull(strstr(r.body, "\"via\":\"brain\""));
	cm_test_resp_release(&r);

	snprintf(tid, sizeof(tid), "X-Tenant-ID: %s", tenant_b);
	ck_assert_int_eq(cm_test_http("GET", bus.port, "/whoami", hs, NULL, &r),
			 0);
	cm_test_expect(&r, 401, "invalid_service_token");
	cm_test_resp_release(&r);
	free(tok);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("gateway");
	TCase *tc = tcase_create("gateway");

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(
		tc,
		test_forwards_request_as_received_with_verified_identity_only);
	tcase_add_test(tc,
		       test_upstream_down_or_silent_is_a_json_error_naming_it);
	tcase_add_test(tc, test_event_streams_pass_through_unbuffered);
	tcase_add_test(
		tc,
		test_a_request_on_a_closed_kept_alive_connection_is_retried_if_safe);
	tcase_add_test(tc, test_disabled_service_and_plan_rate_limit);
	tcase_add_test(tc, test_api_keys_reach_only_their_scopes);
	tcase_add_test(tc, test_concurrent_requests_each_get_their_own_answer);
	tcase_add_test(tc, test_idle_upstream_connections_are_closed);
	tcase_add_test(tc, test_real_upstream_keeps_tenants_apart);
	tcase_add_test(
		tc, test_services_refuse_mismatched_or_foreign_gateway_tokens);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(suite)
