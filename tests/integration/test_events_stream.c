/*
 * test_events_stream.c - GET /api/events/stream (server-sent events) on
 * the real event bus, directly and through brain's gateway: a tenant sees
 * its own events, filtered by type, never another tenant's (also with a
 * crafted filter); Last-Event-ID resumes after the given event;
 * heartbeats flow when nothing happens; bad filters are refused; streams
 * past SSE_MAX_STREAMS are refused until one closes. Also
 * brain's POST /api/events/test-integration probe, which needs the bus.
 */
#include "svc.h"
#include "testutil.h"

#include "common/buf.h"
#include "common/mem.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/banned.h"

static struct cm_test_svc brain, bus;
static char tenant_a[37], tenant_b[37];

static const char *const bus_env[] = { "SSE_POLL_MS=50", "SSE_HEARTBEAT_MS=300",
				       "SSE_MAX_STREAMS=2", NULL };

static void
add_tenant(char id[37], const char *prefix)
{
	char sql[512];

	ck_assert_int_eq(cm_uuid_v4(id), 0);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO brain.tenants (id, slug, name, status, "
		 "subscription_tier) VALUES ('%s', '%s-%.8s', 'T', 'active', "
		 "'starter')",
		 id, prefix, id);
	ck_assert_int_eq(cm_test_psql(sql), 0);
}

static void
setup(void)
{
	char url[64];
	const char *env[] = { url, "BRAIN_INTEGRATION_TIMEOUT_MS=1500", NULL };

	cm_test_require_stack();
	ck_assert_int_eq(cm_test_svc_start(&bus, "event-bus", bus_env), 0);
	snprintf(url, sizeof(url), "EVENT_BUS_URL=http://127.0.0.1:%d",
		 bus.port);
	ck_assert_int_eq(cm_test_svc_start(&brain, "brain", env), 0);
	add_tenant(tenant_a, "ssea");
	add_tenant(tenant_b, "sseb");
}

static void
teardown(void)
{
	cm_test_svc_stop(&brain);
	cm_test_svc_stop(&bus);
}

static void
publish(const char *tid, const char *type, const char *data)
{
	char *tok = cm_test_user_token("u1", tid, "[\"owner\"]", 300);
	char auth[1024], body[512];
	const char *hs[] = { auth, "Content-Type: application/json", NULL };
	struct cm_test_resp r;

	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
	snprintf(body, sizeof(body),
		 "{\"event_type\":\"%s\",\"aggregate_type\":\"x\","
		 "\"aggregate_id\":\"1\",\"data\":%s}",
		 type, data);
	ck_assert_int_eq(cm_test_http("POST", bus.port, "/api/events/publish",
				      hs, body, &r),
			 0);
	ck_assert_msg(r.status == 202 || r.status == 201, "%ld %s", r.status,
		      r.body);
	cm_test_resp_release(&r);
	free(tok);
}

/* An open stream: the socket and what came so far. */
struct sse_client {
	int fd;
	struct cm_buf got;
};

static void
sse_open(struct sse_client *c, int port, const char *tid, const char *query,
	 const char *last_id)
{
	char *tok = cm_test_user_token("u1", tid, "[\"owner\"]", 300);
	struct cm_buf req = CM_BUF_INIT(2048);
	struct sockaddr_in sa;

	cm_buf_printf(&req,
		      "GET /api/events/stream%s HTTP/1.1\r\nHost: x\r\n"
		      "Authorization: Bearer %s\r\n",
		      query, tok);
	if (last_id)
		cm_buf_printf(&req, "Last-Event-ID: %s\r\n", last_id);
	cm_buf_puts(&req, "\r\n");
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(send(c->fd, req.data, req.len, MSG_NOSIGNAL),
			 (ssize_t)req.len);
	cm_buf_init(&c->got, 4096);
	cm_buf_release(&req);
	free(tok);
}

/* Read until text appears (true) or ms pass (false). */
static bool
sse_wait(struct sse_client *c, const char *text, int ms)
{
	struct pollfd p = { c->fd, POLLIN, 0 };
	char chunk[4096];
	ssize_t n;
	int waited = 0;

	while (!strstr(cm_buf_str(&c->got), text)) {
		if (waited >= ms || poll(&p, 1, 50) < 0)
			return false;
		waited += 50;
		if (!(p.revents & (POLLIN | POLLHUP)))
			continue;
		n = recv(c->fd, chunk, sizeof(chunk), 0);
		if (n <= 0)
			return false;
		cm_buf_add(&c->got, chunk, (size_t)n);
	}
	return true;
}

static void
sse_close(struct sse_client *c)
{
	close(c->fd);
	cm_buf_release(&c->got);
}

/* The "id: " of the event whose data contains text. */
static void
id_of(const struct sse_client *c, const char *text, char out[64])
{
	const char *s = cm_buf_str(&c->got), *hit = strstr(s, text), *id = NULL;
	const char *p;
	size_t n;

	ck_assert_ptr_nonnull(hit);
	for (p = s; (p = strstr(p, "id: ")) && p < hit; p += 4)
		id = p + 4;
	ck_assert_ptr_nonnull(id);
	n = strcspn(id, "\n");
	ck_assert_uint_lt(n, 64);
	memcpy(out, id, n);
	out[n] = '\0';
}

START_TEST(test_a_tenant_streams_its_own_filtered_events_only)
{
	struct sse_client a, b;

	sse_open(&a, bus.port, tenant_a, "?types=system.*", NULL);
	sse_open(&b, bus.port, tenant_b, "?types=*", NULL);
	ck_assert(sse_wait(&a, "retry: 3000", 5000));
	ck_assert(sse_wait(&b, "retry: 3000", 5000));
	ck_assert_ptr_nonnull(
		strcasestr(cm_buf_str(&a.got), "text/event-stream"));
	publish(tenant_a, "lead.created",
		"{\"lead_id\":\"6f1f5c9e-7c1e-4c53-a8d5-0d7f4f1b2a10\"}");
	publish(tenant_a, "system.maintenance", "{\"message\":\"for-a-only\"}");
	publish(tenant_b, "system.maintenance", "{\"message\":\"for-b\"}");
	ck_assert(sse_wait(&a, "for-a-only", 5000));
	ck_assert_ptr_nonnull(
		strstr(cm_buf_str(&a.got), "event: system.maintenance\n"));
	ck_assert(sse_wait(&b, "for-b", 5000));
	/* A's filter left the lead out; B never sees A's events */
	ck_assert_ptr_null(strstr(cm_buf_str(&a.got), "lead.created"));
	ck_assert_ptr_null(strstr(cm_buf_str(&a.got), "for-b"));
	ck_assert(!sse_wait(&b, "for-a-only", 500));
	ck_assert_ptr_null(strstr(cm_buf_str(&b.got), tenant_a));
	/* silence brings heartbeats */
	ck_assert(sse_wait(&a, ": heartbeat", 3000));
	sse_close(&a);
	sse_close(&b);
}
END_TEST

START_TEST(test_last_event_id_resumes_after_that_event)
{
	struct sse_client a, r;
	char first[64];

	sse_open(&a, bus.port, tenant_a, "", NULL);
	ck_assert(sse_wait(&a, "retry: 3000", 5000));
	publish(tenant_a, "system.maintenance", "{\"message\":\"resume-1\"}");
	ck_assert(sse_wait(&a, "resume-1", 5000));
	id_of(&a, "resume-1", first);
	sse_close(&a);
	publish(tenant_a, "system.maintenance", "{\"message\":\"resume-2\"}");
	publish(tenant_a, "system.maintenance", "{\"message\":\"resume-3\"}");
	sse_open(&r, bus.port, tenant_a, "", first);
	ck_assert(sse_wait(&r, "resume-3", 5000));
	ck_assert_ptr_nonnull(strstr(cm_buf_str(&r.got), "resume-2"));
	ck_assert_ptr_null(strstr(cm_buf_str(&r.got), "resume-1"));
	ck_assert(strstr(cm_buf_str(&r.got), "resume-2") <
		  strstr(cm_buf_str(&r.got), "resume-3"));
	sse_close(&r);
}
END_TEST

START_TEST(test_the_stream_passes_through_the_gateway)
{
	struct sse_client a;

	sse_open(&a, brain.port, tenant_a, "?types=system.maintenance", NULL);
	ck_assert(sse_wait(&a, "retry: 3000", 5000));
	publish(tenant_a, "system.maintenance", "{\"message\":\"via-brain\"}");
	ck_assert(sse_wait(&a, "via-brain", 5000));
	ck_assert(sse_wait(&a, ": heartbeat", 3000));
	sse_close(&a);
}
END_TEST

START_TEST(test_bad_filters_and_ids_are_refused)
{
	char *tok = cm_test_user_token("u1", tenant_a, "[\"owner\"]", 300);
	char auth[1024];
	const char *hs1[] = { auth, NULL };
	const char *hs[] = { auth, "Last-Event-ID: nope", NULL };
	struct cm_test_resp r;

	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
	ck_assert_int_eq(cm_test_http("GET", bus.port,
				      "/api/events/stream?types=lead.*,%25",
				      hs1, NULL, &r),
			 0);
	ck_assert_int_eq(r.status, 400);
	cm_test_resp_release(&r);
	ck_assert_int_eq(cm_test_http("GET", bus.port, "/api/events/stream", hs,
				      NULL, &r),
			 0);
	ck_assert_int_eq(r.status, 400);
	ck_assert_str_eq(cm_test_resp_error_code(&r), "validation_failed");
	cm_test_resp_release(&r);
	free(tok);
}
END_TEST

START_TEST(test_the_integration_probe_reports_a_delivery)
{
	char *tok = cm_test_user_token("u1", tenant_a, "[\"user\"]", 300);
	char auth[1024];
	const char *hs[] = { auth, NULL };
	const cJSON *d, *ms;
	struct cm_test_resp r;

	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
	ck_assert_int_eq(cm_test_http("POST", brain.port,
				      "/api/events/test-integration", hs, NULL,
				      &r),
			 0);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	d = cJSON_GetObjectItemCaseSensitive(r.json, "delivered");
	ms = cJSON_GetObjectItemCaseSensitive(r.json, "round_trip_ms");
	ck_assert_msg(cJSON_IsTrue(d), "%s", r.body);
	ck_assert(cJSON_IsNumber(ms) && ms->valuedouble >= 0 &&
		  ms->valuedouble < 5000);
	cm_test_resp_release(&r);
	free(tok);
}
END_TEST

/* Open a stream, retrying while the earlier tests' closed streams are
   still being let go (the server notices at its next heartbeat). */
static void
sse_open_retry(struct sse_client *c, const char *tid)
{
	int i;

	for (i = 0; i < 30; i++) {
		sse_open(c, bus.port, tid, "", NULL);
		if (sse_wait(c, "retry: 3000", 2000))
			return;
		sse_close(c);
		usleep(200 * 1000);
	}
	ck_abort_msg("no stream could be opened");
}

START_TEST(test_streams_past_the_limit_are_refused_until_one_closes)
{
	char *tok = cm_test_user_token("u1", tenant_b, "[\"owner\"]", 300);
	char auth[1024];
	const char *hs[] = { auth, NULL };
	struct sse_client a, b, c;
	struct cm_test_resp r;

	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
	sse_open_retry(&a, tenant_a);
	sse_open_retry(&b, tenant_a);
	ck_assert_int_eq(cm_test_http("GET", bus.port, "/api/events/stream", hs,
				      NULL, &r),
			 0);
	ck_assert_int_eq(r.status, 503);
	ck_assert_str_eq(cm_test_resp_error_code(&r), "too_many_streams");
	ck_assert_ptr_nonnull(cm_test_resp_header(&r, "Retry-After"));
	cm_test_resp_release(&r);
	sse_close(&a);
	sse_open_retry(&c, tenant_b); /* a's place comes free */
	sse_close(&b);
	sse_close(&c);
	free(tok);
}
END_TEST

/* Whether pid is gone or a zombie (state Z in /proc/<pid>/stat). */
static bool
exited(pid_t pid)
{
	char path[64], buf[256];
	const char *p;
	FILE *f;
	bool z = true;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
		z = p[1] == ' ' && p[2] == 'Z';
	fclose(f);
	return z;
}

/* Last: with the bus stopped nobody acknowledges the probe. */
START_TEST(test_the_integration_probe_reports_no_consumer)
{
	char *tok = cm_test_user_token("u1", tenant_b, "[\"owner\"]", 300);
	char auth[1024];
	const char *hs[] = { auth, NULL };
	struct cm_test_resp r;

	int i;

	/* a forked test cannot reap the bus: signal it, wait until it is
	   gone or a zombie */
	ck_assert_int_eq(kill(bus.pid, SIGTERM), 0);
	for (i = 0; i < 200 && !exited(bus.pid); i++)
		usleep(50 * 1000);
	ck_assert(exited(bus.pid));
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
	ck_assert_int_eq(cm_test_http("POST", brain.port,
				      "/api/events/test-integration", hs, NULL,
				      &r),
			 0);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	ck_assert_msg(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(
			      r.json, "delivered")),
		      "%s", r.body);
	ck_assert_ptr_nonnull(strstr(r.body, "event-bus"));
	cm_test_resp_release(&r);
	free(tok);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("events-stream");
	TCase *tc = tcase_create("sse");

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_a_tenant_streams_its_own_filtered_events_only);
	tcase_add_test(tc, test_last_event_id_resumes_after_that_event);
	tcase_add_test(tc, test_the_stream_passes_through_the_gateway);
	tcase_add_test(tc, test_bad_filters_and_ids_are_refused);
	tcase_add_test(
		tc, test_streams_past_the_limit_are_refused_until_one_closes);
	tcase_add_test(tc, test_the_integration_probe_reports_a_delivery);
	tcase_add_test(tc, test_the_integration_probe_reports_no_consumer);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
