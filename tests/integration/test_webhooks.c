/*
 * test_webhooks.c - webhooks end to end: brain and event-bus binaries on
 * the test stack, a receiver on 127.0.0.1 that checks each signature on
 * its own (OpenSSL HMAC over id.timestamp.body with the decoded secret).
 *
 * The "loopback" cases run the event-bus with WEBHOOK_ALLOW_CIDRS
 * 127.0.0.0/8 (the dev/test opt-in) and a fast retry schedule; the
 * "guard" cases run it with the default settings, where every private
 * address is refused.
 */
#include "svc.h"
#include "testutil.h"

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
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/banned.h"

static struct cm_test_svc brain, bus;
static char tenant_a[37], tenant_b[37];

static const char *const loopback_env[] = { "WEBHOOK_ALLOW_CIDRS=127.0.0.0/8",
					    "WEBHOOK_MAX_ATTEMPTS=4",
					    "WEBHOOK_BACKOFF_MS=100",
					    "WEBHOOK_BACKOFF_MAX_MS=400",
					    "WEBHOOK_POLL_MS=50",
					    "WEBHOOK_TIMEOUT_MS=3000",
					    "BUS_BACKOFF_MS=10",
					    "WEBHOOK_MAX_PER_TENANT=6",
					    NULL };

/* --- a receiver --------------------------------------------------------- */

#define RECV_MAX 16

struct hit {
	char id[64], ts[32], sig[128];
	char *body;
};

static struct receiver {
	int fd, port;
	pthread_t thread;
	atomic_bool stop;
	atomic_int fail_first; /* answer 500 to this many, then 200 */
	atomic_int nhits;
	struct hit hits[RECV_MAX];
} rcv;

static const char *
header_value(const char *head, const char *name, char *out, size_t n)
{
	size_t len = strlen(name);
	const char *p = head, *end;

	out[0] = '\0';
	while ((p = strchr(p, '\n'))) {
		p++;
		if (strncasecmp(p, name, len) == 0 && p[len] == ':') {
			p += len + 1;
			p += strspn(p, " ");
			end = strpbrk(p, "\r\n");
			snprintf(out, n, "%.*s", (int)(end ? end - p : 0), p);
			return out;
		}
	}
	return NULL;
}

/* Read one request (head + Content-Length body) into a malloc'd buffer. */
static char *
read_request(int c, size_t *head_len)
{
	struct cm_buf b = CM_BUF_INIT(1 << 20);
	char chunk[4096], cl[24];
	const char *eoh;
	int64_t want = 0;
	ssize_t r;

	for (;;) {
		r = recv(c, chunk, sizeof(chunk), 0);
		if (r <= 0)
			break;
		cm_buf_add(&b, chunk, (size_t)r);
		eoh = strstr(cm_buf_str(&b), "\r\n\r\n");
		if (!eoh)
			continue;
		*head_len = (size_t)(eoh - cm_buf_str(&b)) + 4;
		header_value(cm_buf_str(&b), "content-length", cl, sizeof(cl));
		cm_parse_i64(cl, 0, 1 << 20, &want);
		if (b.len >= *head_len + (size_t)want)
			break;
	}
	return cm_buf_detach(&b, NULL);
}

static void
serve_one(int c)
{
	char reply[128], *req;
	size_t head = 0;
	int n, status;
	struct hit *h;

	req = read_request(c, &head);
	n = atomic_fetch_add(&rcv.nhits, 1);
	if (n < RECV_MAX && head) {
		h = &rcv.hits[n];
		header_value(req, "webhook-id", h->id, sizeof(h->id));
		header_value(req, "webhook-timestamp", h->ts, sizeof(h->ts));
		header_value(req, "webhook-signature", h->sig, sizeof(h->sig));
		h->body = cm_xstrdup(req + head);
	}
	status = atomic_fetch_sub(&rcv.fail_first, 1) > 0 ? 500 : 200;
	snprintf(reply, sizeof(reply),
		 "HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: close"
		 "\r\n\r\nok",
		 status);
	if (send(c, reply, strlen(reply), MSG_NOSIGNAL) < 0)
		perror("receiver send");
	free(req);
	close(c);
}

static void *
receiver_main(void *arg)
{
	struct pollfd p = { .fd = rcv.fd, .events = POLLIN };
	int c;

	(void)arg;
	while (!atomic_load(&rcv.stop)) {
		if (poll(&p, 1, 50) <= 0)
			continue;
		if ((c = accept(rcv.fd, NULL, NULL)) >= 0)
			serve_one(c);
	}
	return NULL;
}

static void
receiver_start(int fail_first)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);

	memset(&rcv, 0, sizeof(rcv));
	atomic_store(&rcv.fail_first, fail_first);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	rcv.fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(rcv.fd, 0);
	ck_assert_int_eq(bind(rcv.fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(rcv.fd, 16), 0);
	getsockname(rcv.fd, (struct sockaddr *)&a, &len);
	rcv.port = ntohs(a.sin_port);
	ck_assert_int_eq(pthread_create(&rcv.thread, NULL, receiver_main, NULL),
			 0);
}

static void
receiver_stop(void)
{
	int i;

	atomic_store(&rcv.stop, true);
	pthread_join(rcv.thread, NULL);
	close(rcv.fd);
	for (i = 0; i < RECV_MAX; i++)
		free(rcv.hits[i].body);
}

/* Wait until the receiver saw n requests (15 s). */
static void
receiver_wait(int n)
{
	int i;

	for (i = 0; i < 300 && atomic_load(&rcv.nhits) < n; i++)
		usleep(50 * 1000);
	ck_assert_int_ge(atomic_load(&rcv.nhits), n);
}

/* The receiver's own signature: v1,base64(HMAC-SHA256(base64-decoded
   secret after whsec_, id.ts.body)). */
static void
receiver_sign(const struct hit *h, const char *secret, char out[64])
{
	unsigned char key[64], mac[32];
	struct cm_buf text = CM_BUF_INIT(0);
	unsigned int mlen = 0;
	size_t b64 = strlen(secret + 6);
	int klen;

	klen = EVP_DecodeBlock(key, (const unsigned char *)secret + 6,
			       (int)b64);
	klen -= secret[5 + b64] == '=' ? (secret[4 + b64] == '=' ? 2 : 1) : 0;
	ck_assert_int_eq(klen, 32);
	cm_buf_printf(&text, "%s.%s.%s", h->id, h->ts, h->body);
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, klen,
				   (const unsigned char *)cm_buf_str(&text),
				   text.len, mac, &mlen));
	memcpy(out, "v1,", 3);
	EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)mlen);
	cm_buf_release(&text);
}

static void
assert_signed(const struct hit *h, const char *secret)
{
	char expect[64];

	receiver_sign(h, secret, expect);
	ck_assert_str_eq(h->sig, expect);
}

/* --- services ----------------------------------------------------------- */

static void
add_tenant(char id[37], const char *prefix)
{
	char sql[512];

	ck_assert_int_eq(cm_uuid_v4(id), 0);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO brain.tenants (id, slug, name, status, "
		 "subscription_tier) VALUES ('%s', '%s-%.8s', 'T %s', "
		 "'active', 'enterprise')",
		 id, prefix, id, prefix);
	ck_assert_int_eq(cm_test_psql(sql), 0);
}

static void
start_all(const char *const *env)
{
	cm_test_require_stack();
	ck_assert_int_eq(cm_test_svc_start(&brain, "brain", NULL), 0);
	add_tenant(tenant_a, "wha");
	add_tenant(tenant_b, "whb");
	ck_assert_int_eq(cm_test_svc_start(&bus, "event-bus", env), 0);
}

static void
setup_loopback(void)
{
	start_all(loopback_env);
}

static void
setup_default(void)
{
	start_all(NULL);
}

static void
teardown(void)
{
	ck_assert_int_eq(cm_test_svc_stop(&bus), 0);
	cm_test_svc_stop(&brain);
}

/* A request as a user of tenant tid with roles; extra header may be NULL. */
static struct cm_test_resp
call_as(const char *roles, const char *method, const char *tid,
	const char *path, const char *extra, const char *body)
{
	char *tok = cm_test_user_token("user-1", tid, roles, 300);
	struct cm_buf auth = CM_BUF_INIT(0);
	const char *hs[4] = { NULL, "Content-Type: application/json", extra,
			      NULL };
	struct cm_test_resp r;

	cm_buf_printf(&auth, "Authorization: Bearer %s", tok);
	hs[0] = cm_buf_str(&auth);
	ck_assert_int_eq(cm_test_http(method, bus.port, path, hs, body, &r), 0);
	cm_buf_release(&auth);
	free(tok);
	return r;
}

static struct cm_test_resp
call(const char *method, const char *tid, const char *path, const char *extra,
     const char *body)
{
	return call_as("[\"owner\"]", method, tid, path, extra, body);
}

static const char *
str_of(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	ck_assert_msg(cJSON_IsString(v), "no string %s", name);
	return v->valuestring;
}

/* Create a subscription of tid to url for patterns (a JSON array); its id
   and secret. */
static void
create_hook(const char *tid, const char *url, const char *patterns, char id[37],
	    char secret[64])
{
	char body[512];
	struct cm_test_resp r;

	snprintf(body, sizeof(body), "{\"url\":\"%s\",\"event_types\":%s}", url,
		 patterns);
	r = call("POST", tid, "/api/events/webhooks", NULL, body);
	ck_assert_msg(r.status == 201, "%ld %s", r.status, r.body);
	cm_strlcpy(id, str_of(r.json, "id"), 37);
	cm_strlcpy(secret, str_of(r.json, "secret"), 64);
	cm_test_resp_release(&r);
}

static void
receiver_url(char out[64])
{
	snprintf(out, 64, "http://127.0.0.1:%d/hook", rcv.port);
}

static void
publish_lead(const char *tid, char event_id[37])
{
	char body[512], lead[37];
	struct cm_test_resp r;

	ck_assert_int_eq(cm_uuid_v4(lead), 0);
	ck_assert_int_eq(cm_uuid_v4(event_id), 0);
	snprintf(body, sizeof(body),
		 "{\"event_id\":\"%s\",\"event_type\":\"lead.created\","
		 "\"aggregate_type\":\"lead\",\"aggregate_id\":\"%s\","
		 "\"data\":{\"lead_id\":\"%s\"}}",
		 event_id, lead, lead);
	r = call("POST", tid, "/api/events/publish", NULL, body);
	ck_assert_msg(r.status == 202, "%ld %s", r.status, r.body);
	cm_test_resp_release(&r);
}

/* The subscription's first delivery once its status is `status` (15 s). */
static struct cm_test_resp
delivery_until(const char *tid, const char *hook, const char *status)
{
	char path[160];
	struct cm_test_resp r;
	const cJSON *d;
	int i;

	snprintf(path, sizeof(path), "/api/events/webhooks/%s/deliveries",
		 hook);
	for (i = 0; i < 300; i++) {
		r = call("GET", tid, path, NULL, NULL);
		ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
		d = cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "items"), 0);
		if (d && strcmp(str_of(d, "status"), status) == 0)
			return r;
		cm_test_resp_release(&r);
		usleep(50 * 1000);
	}
	ck_abort_msg("no %s delivery for %s", status, hook);
	return r;
}

static int
int_of(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	ck_assert_msg(cJSON_IsNumber(v), "no number %s", name);
	return v->valueint;
}

/* --- loopback cases ----------------------------------------------------- */

START_TEST(test_a_delivery_is_signed_so_the_receiver_can_verify_it)
{
	char hook[37], secret[64], url[64], eid[37], expect[64];
	struct cm_test_resp r;
	const cJSON *d;
	cJSON *body;
	int64_t ts = 0;

	receiver_start(0);
	receiver_url(url);
	create_hook(tenant_a, url, "[\"lead.*\"]", hook, secret);
	r = call("POST", tenant_a, "/api/events/publish", NULL,
		 "{\"event_type\":\"system.maintenance\",\"aggregate_type\":"
		 "\"system\",\"aggregate_id\":\"m\",\"data\":{\"message\":"
		 "\"not for the hook\"}}");
	ck_assert_int_eq(r.status, 202);
	cm_test_resp_release(&r);
	publish_lead(tenant_a, eid);
	r = delivery_until(tenant_a, hook, "succeeded");
	d = cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "items"), 0);
	ck_assert_int_eq(int_of(d, "attempts"), 1);
	ck_assert_str_eq(str_of(d, "event_id"), eid);
	ck_assert_int_eq(atomic_load(&rcv.nhits), 1); /* not the other type */
	ck_assert_str_eq(rcv.hits[0].id, str_of(d, "id"));
	cm_test_resp_release(&r);
	assert_signed(&rcv.hits[0], secret);
	ck_assert_int_eq(cm_parse_i64(rcv.hits[0].ts, 0, INT64_MAX, &ts), 0);
	ck_assert_int_lt(llabs((long long)(ts - time(NULL))), 60);
	body = cJSON_Parse(rcv.hits[0].body);
	ck_assert_str_eq(str_of(body, "event_id"), eid);
	ck_assert_str_eq(str_of(body, "tenant_id"), tenant_a);
	cJSON_Delete(body);
	/* the success rate's counter */
	ck_assert_int_eq(
		cm_test_http("GET", bus.port, "/metrics", NULL, NULL, &r), 0);
	ck_assert_ptr_nonnull(strstr(r.body, "bz_bus_webhook_attempts_total{"));
	ck_assert_ptr_nonnull(strstr(r.body, "result=\"success\""));
	cm_test_resp_release(&r);
	/* a tampered body fails the same check */
	rcv.hits[0].body[0] = ' ';
	receiver_sign(&rcv.hits[0], secret, expect);
	ck_assert_str_ne(rcv.hits[0].sig, expect);
	receiver_stop();
}
END_TEST

/* Whether one of the space-separated signatures of h is secret's. */
static bool
signed_by(const struct hit *h, const char *secret)
{
	char expect[64], sigs[128], *tok, *save = NULL;

	receiver_sign(h, secret, expect);
	cm_strlcpy(sigs, h->sig, sizeof(sigs));
	for (tok = strtok_r(sigs, " ", &save); tok;
	     tok = strtok_r(NULL, " ", &save))
		if (!strcmp(tok, expect))
			return true;
	return false;
}

START_TEST(test_a_rotated_secret_signs_beside_the_old_one_during_its_grace)
{
	char hook[37], old_secret[64], new_secret[64], url[64], eid[37];
	char path[160], sql[256];
	struct cm_test_resp r;

	receiver_start(0);
	receiver_url(url);
	create_hook(tenant_a, url, "[\"lead.*\"]", hook, old_secret);
	snprintf(path, sizeof(path), "/api/events/webhooks/%s/rotate-secret",
		 hook);
	/* bad input, and another tenant's hook, change nothing */
	r = call("POST", tenant_a, path, NULL, "{\"grace_hours\":169}");
	ck_assert_int_eq(r.status, 400);
	cm_test_resp_release(&r);
	r = call("POST", tenant_b, path, NULL, NULL);
	ck_assert_int_eq(r.status, 404);
	cm_test_resp_release(&r);
	r = call("POST", tenant_a, path, "If-Match: \"99\"", NULL);
	ck_assert_int_eq(r.status, 412);
	cm_test_resp_release(&r);
	r = call("POST", tenant_a, path, "If-Match: not-an-etag", NULL);
	ck_assert_int_eq(r.status, 412);
	cm_test_resp_release(&r);
	r = call("POST", tenant_a, path, NULL, "{\"grace_hours\":1}");
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	cm_strlcpy(new_secret, str_of(r.json, "secret"), sizeof(new_secret));
	ck_assert_str_ne(new_secret, old_secret);
	ck_assert_int_eq(strncmp(new_secret, "whsec_", 6), 0);
	ck_assert(str_of(r.json, "previous_secret_until")[0]);
	ck_assert_ptr_nonnull(cm_test_resp_header(&r, "ETag"));
	cm_test_resp_release(&r);
	/* the secret is shown once: never by a read */
	snprintf(sql, sizeof(sql), "/api/events/webhooks/%s", hook);
	r = call("GET", tenant_a, sql, NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_null(strstr(r.body, "whsec_"));
	cm_test_resp_release(&r);
	/* during the grace: one signature under each secret */
	publish_lead(tenant_a, eid);
	receiver_wait(1);
	ck_assert_ptr_nonnull(strchr(rcv.hits[0].sig, ' '));
	ck_assert(signed_by(&rcv.hits[0], new_secret));
	ck_assert(signed_by(&rcv.hits[0], old_secret));
	/* after it: the new secret's alone */
	snprintf(sql, sizeof(sql),
		 "UPDATE event_bus.webhooks SET previous_secret_until ="
		 " now() - interval '1 second' WHERE id = '%s'",
		 hook);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	publish_lead(tenant_a, eid);
	receiver_wait(2);
	ck_assert_ptr_null(strchr(rcv.hits[1].sig, ' '));
	ck_assert(signed_by(&rcv.hits[1], new_secret));
	ck_assert(!signed_by(&rcv.hits[1], old_secret));
	/* grace 0: the old secret is dropped at once */
	r = call("POST", tenant_a, path, NULL, "{\"grace_hours\":0}");
	ck_assert_int_eq(r.status, 200);
	cm_strlcpy(old_secret, new_secret, sizeof(old_secret));
	cm_strlcpy(new_secret, str_of(r.json, "secret"), sizeof(new_secret));
	ck_assert_ptr_null(cJSON_GetStringValue(
		cJSON_GetObjectItem(r.json, "previous_secret_until")));
	cm_test_resp_release(&r);
	publish_lead(tenant_a, eid);
	receiver_wait(3);
	ck_assert(signed_by(&rcv.hits[2], new_secret));
	ck_assert(!signed_by(&rcv.hits[2], old_secret));
	receiver_stop();
}
END_TEST

/* Fairness: tenant A has 2,000 deliveries overdue by a minute when tenant
   B's one event comes in; the delivery threads take tenants in turn, so
   B's is delivered while most of A's still wait (taking them strictly
   by due time would deliver all of A's first). */
START_TEST(test_a_tenants_flood_of_deliveries_does_not_hold_back_another)
{
	char hook_a[37], hook_b[37], secret[64], url[64], eid[37];
	char sql[512];
	struct cm_test_resp r;
	long long left;

	receiver_start(0);
	receiver_url(url);
	create_hook(tenant_a, url, "[\"lead.*\"]", hook_a, secret);
	create_hook(tenant_b, url, "[\"lead.*\"]", hook_b, secret);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO event_bus.webhook_deliveries (id, tenant_id,"
		 " webhook_id, event_id, event_type, payload, next_attempt_at)"
		 " SELECT gen_random_uuid(), '%s', '%s', gen_random_uuid(),"
		 " 'lead.created', '{\"flood\":true}', now() -"
		 " interval '1 minute' FROM generate_series(1, 2000)",
		 tenant_a, hook_a);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	receiver_wait(1); /* A's flood is being delivered */
	publish_lead(tenant_b, eid);
	r = delivery_until(tenant_b, hook_b, "succeeded");
	cm_test_resp_release(&r);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM event_bus.webhook_deliveries WHERE"
		 " webhook_id = '%s' AND status = 'pending'",
		 hook_a);
	left = cm_test_psql_count(sql, NULL);
	ck_assert_msg(left >= 1000, "only %lld of A's 2000 still waited", left);
	/* the rest of A's flood goes, so no later test hears it */
	snprintf(sql, sizeof(sql),
		 "DELETE FROM event_bus.webhooks WHERE id = '%s'", hook_a);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	receiver_stop();
}
END_TEST

START_TEST(test_a_500_is_retried_with_backoff_until_it_succeeds)
{
	char hook[37], secret[64], url[64], eid[37];
	struct cm_test_resp r;
	const cJSON *d, *log;
	int i;

	receiver_start(2);
	receiver_url(url);
	create_hook(tenant_a, url, "[\"lead.created\"]", hook, secret);
	publish_lead(tenant_a, eid);
	r = delivery_until(tenant_a, hook, "succeeded");
	d = cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "items"), 0);
	ck_assert_int_eq(int_of(d, "attempts"), 3);
	ck_assert_int_eq(int_of(d, "last_status"), 200);
	log = cJSON_GetObjectItem(d, "attempt_log");
	ck_assert_int_eq(cJSON_GetArraySize(log), 3);
	ck_assert_int_eq(int_of(cJSON_GetArrayItem(log, 0), "status"), 500);
	ck_assert_int_eq(int_of(cJSON_GetArrayItem(log, 1), "status"), 500);
	ck_assert_int_eq(int_of(cJSON_GetArrayItem(log, 2), "status"), 200);
	ck_assert_int_eq(atomic_load(&rcv.nhits), 3);
	for (i = 0; i < 3; i++) { /* one webhook-id, each attempt signed */
		ck_assert_str_eq(rcv.hits[i].id, str_of(d, "id"));
		assert_signed(&rcv.hits[i], secret);
	}
	cm_test_resp_release(&r);
	receiver_stop();
}
END_TEST

START_TEST(test_a_delivery_that_keeps_failing_is_dead_and_flags_the_hook)
{
	char hook[37], secret[64], url[64], eid[37], path[200];
	struct cm_test_resp r;
	const cJSON *d;
	char did[37];

	receiver_start(1000);
	receiver_url(url);
	create_hook(tenant_a, url, "[\"*\"]", hook, secret);
	publish_lead(tenant_a, eid);
	r = delivery_until(tenant_a, hook, "dead");
	d = cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "items"), 0);
	ck_assert_int_eq(int_of(d, "attempts"), 4); /* WEBHOOK_MAX_ATTEMPTS */
	ck_assert_int_eq(int_of(d, "last_status"), 500);
	ck_assert_ptr_nonnull(strstr(str_of(d, "last_error"), "500"));
	cm_strlcpy(did, str_of(d, "id"), sizeof(did));
	cm_test_resp_release(&r);
	usleep(300 * 1000);
	ck_assert_int_eq(atomic_load(&rcv.nhits), 4);
	snprintf(path, sizeof(path), "/api/events/webhooks/%s", hook);
	r = call("GET", tenant_a, path, NULL, NULL);
	ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(r.json, "failing")));
	ck_assert_ptr_nonnull(cJSON_GetObjectItem(r.json, "failing_since"));
	cm_test_resp_release(&r);
	/* retried by hand once the receiver is fixed: success clears it */
	atomic_store(&rcv.fail_first, 0);
	snprintf(path, sizeof(path),
		 "/api/events/webhooks/%s/deliveries/%s/retry", hook, did);
	r = call("POST", tenant_b, path, NULL, NULL);
	ck_assert_int_eq(r.status, 404);
	cm_test_resp_release(&r);
	r = call("POST", tenant_a, path, NULL, NULL);
	ck_assert_int_eq(r.status, 202);
	cm_test_resp_release(&r);
	r = delivery_until(tenant_a, hook, "succeeded");
	cm_test_resp_release(&r);
	r = call("POST", tenant_a, path, NULL, NULL);
	ck_assert_int_eq(r.status, 409); /* not dead any more */
	cm_test_resp_release(&r);
	snprintf(path, sizeof(path), "/api/events/webhooks/%s", hook);
	r = call("GET", tenant_a, path, NULL, NULL);
	ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(r.json, "failing")));
	cm_test_resp_release(&r);
	receiver_stop();
}
END_TEST

/* The schedule is in PostgreSQL: a delivery failing when the service
   stops is delivered by the next one. */
START_TEST(test_a_pending_retry_survives_a_restart)
{
	const char *const slow_env[] = { "WEBHOOK_ALLOW_CIDRS=127.0.0.0/8",
					 "WEBHOOK_BACKOFF_MS=2000",
					 "WEBHOOK_POLL_MS=50", NULL };
	char hook[37], secret[64], url[64], eid[37];
	struct cm_test_resp r;

	receiver_start(1);
	receiver_url(url);
	create_hook(tenant_a, url, "[\"lead.*\"]", hook, secret);
	ck_assert_int_eq(cm_test_svc_stop(&bus), 0);
	ck_assert_int_eq(cm_test_svc_start(&bus, "event-bus", slow_env), 0);
	publish_lead(tenant_a, eid);
	receiver_wait(1); /* the first attempt failed; the next is in 2 s */
	ck_assert_int_eq(cm_test_svc_stop(&bus), 0);
	ck_assert_int_eq(cm_test_svc_start(&bus, "event-bus", slow_env), 0);
	r = delivery_until(tenant_a, hook, "succeeded");
	ck_assert_int_eq(
		int_of(cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "items"),
					  0),
		       "attempts"),
		2);
	cm_test_resp_release(&r);
	ck_assert_int_eq(atomic_load(&rcv.nhits), 2);
	assert_signed(&rcv.hits[1], secret);
	receiver_stop();
}
END_TEST

START_TEST(test_crud_with_idempotency_key_and_if_match)
{
	const char *body = "{\"url\":\"http://127.0.0.1:9/x\",\"event_types\":"
			   "[\"deal.*\"],\"description\":\"crm\"}";
	char id[37], secret[64], path[160], etag[32], hdr[64];
	struct cm_test_resp r;

	r = call("POST", tenant_a, "/api/events/webhooks",
		 "Idempotency-Key: k-1", body);
	ck_assert_msg(r.status == 201, "%ld %s", r.status, r.body);
	cm_strlcpy(id, str_of(r.json, "id"), sizeof(id));
	cm_strlcpy(secret, str_of(r.json, "secret"), sizeof(secret));
	ck_assert_int_eq(strncmp(secret, "whsec_", 6), 0);
	ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(r.json, "active")));
	ck_assert_ptr_null(cJSON_GetObjectItem(r.json, "version"));
	ck_assert_str_eq(cm_test_resp_header(&r, "ETag"), "\"1\"");
	cm_test_resp_release(&r);
	/* the same key and body: the same answer; another body: 422 */
	r = call("POST", tenant_a, "/api/events/webhooks",
		 "Idempotency-Key: k-1", body);
	ck_assert_int_eq(r.status, 201);
	ck_assert_str_eq(str_of(r.json, "id"), id);
	ck_assert_str_eq(str_of(r.json, "secret"), secret);
	cm_test_resp_release(&r);
	r = call("POST", tenant_a, "/api/events/webhooks",
		 "Idempotency-Key: k-1",
		 "{\"url\":\"http://127.0.0.1:9/y\",\"event_types\":[\"*\"]}");
	ck_assert_int_eq(r.status, 422);
	ck_assert_str_eq(cm_test_resp_error_code(&r), "idempotency_key_reused");
	cm_test_resp_release(&r);
	/* the key is per tenant: B's k-1 is B's own */
	r = call("POST", tenant_b, "/api/events/webhooks",
		 "Idempotency-Key: k-1", body);
	ck_assert_int_eq(r.status, 201);
	ck_assert_str_ne(str_of(r.json, "id"), id);
	cm_test_resp_release(&r);
	/* read: no secret */
	snprintf(path, sizeof(path), "/api/events/webhooks/%s", id);
	r = call("GET", tenant_a, path, NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_null(cJSON_GetObjectItem(r.json, "secret"));
	ck_assert_str_eq(str_of(r.json, "description"), "crm");
	cm_strlcpy(etag, cm_test_resp_header(&r, "ETag"), sizeof(etag));
	cm_test_resp_release(&r);
	/* update: If-Match required, a stale one refused */
	r = call("PATCH", tenant_a, path, NULL, "{\"active\":false}");
	ck_assert_int_eq(r.status, 428);
	cm_test_resp_release(&r);
	r = call("PATCH", tenant_a, path, "If-Match: \"7\"",
		 "{\"active\":false}");
	ck_assert_int_eq(r.status, 412);
	cm_test_resp_release(&r);
	snprintf(hdr, sizeof(hdr), "If-Match: %s", etag);
	r = call(
		"PATCH", tenant_a, path, hdr,
		"{\"active\":false,\"event_types\":[\"deal.won\",\"lead.*\"]}");
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(r.json, "active")));
	ck_assert_int_eq(
		cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "event_types")),
		2);
	ck_assert_str_eq(cm_test_resp_header(&r, "ETag"), "\"2\"");
	cm_test_resp_release(&r);
	r = call("PATCH", tenant_a, path, hdr, "{\"active\":true}");
	ck_assert_int_eq(r.status, 412); /* the old ETag */
	cm_test_resp_release(&r);
	/* a partial update leaves the other fields alone */
	r = call("PATCH", tenant_a, path, "If-Match: W/\"2\"",
		 "{\"description\":\"renamed\",\"url\":"
		 "\"https://127.0.0.1:8443/h\"}");
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	ck_assert_str_eq(str_of(r.json, "description"), "renamed");
	ck_assert_str_eq(str_of(r.json, "url"), "https://127.0.0.1:8443/h");
	ck_assert_int_eq(
		cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "event_types")),
		2);
	ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(r.json, "active")));
	ck_assert_str_eq(cm_test_resp_header(&r, "ETag"), "\"3\"");
	cm_test_resp_release(&r);
	/* bad input names the field */
	r = call("PATCH", tenant_a, path, "If-Match: \"3\"",
		 "{\"event_types\":[\"Lead\"]}");
	ck_assert_int_eq(r.status, 400);
	ck_assert_ptr_nonnull(strstr(r.body, "event_types[0]"));
	cm_test_resp_release(&r);
	r = call("POST", tenant_a, "/api/events/webhooks", NULL,
		 "{\"url\":\"ftp://example.com/\",\"event_types\":[\"*\"]}");
	ck_assert_int_eq(r.status, 400);
	ck_assert_ptr_nonnull(strstr(r.body, "url"));
	cm_test_resp_release(&r);
	r = call("POST", tenant_a, "/api/events/webhooks", NULL,
		 "{\"url\":\"http://127.0.0.1/\",\"event_types\":[\"*\"],"
		 "\"secret\":\"whsec_mine\"}");
	ck_assert_int_eq(r.status, 400);
	ck_assert_ptr_nonnull(strstr(r.body, "secret"));
	cm_test_resp_release(&r);
	r = call("POST", tenant_a, "/api/events/webhooks", NULL,
		 "{\"url\":\"http://127.0.0.1/\"}");
	ck_assert_int_eq(r.status, 400);
	ck_assert_ptr_nonnull(strstr(r.body, "event_types"));
	cm_test_resp_release(&r);
	/* a member without owner/admin may read, not write */
	r = call_as("[\"user\"]", "GET", tenant_a, path, NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	cm_test_resp_release(&r);
	r = call_as("[\"user\"]", "DELETE", tenant_a, path, NULL, NULL);
	ck_assert_int_eq(r.status, 403);
	cm_test_resp_release(&r);
	/* delete */
	r = call("DELETE", tenant_a, path, "If-Match: \"1\"", NULL);
	ck_assert_int_eq(r.status, 412);
	cm_test_resp_release(&r);
	r = call("DELETE", tenant_a, path, NULL, NULL);
	ck_assert_int_eq(r.status, 204);
	cm_test_resp_release(&r);
	r = call("GET", tenant_a, path, NULL, NULL);
	ck_assert_int_eq(r.status, 404);
	cm_test_resp_release(&r);
}
END_TEST

START_TEST(test_the_list_pages_with_a_cursor)
{
	char id[37], secret[64], seen[5][37];
	struct cm_buf path = CM_BUF_INIT(0);
	struct cm_test_resp r;
	const cJSON *it;
	int i, n = 0, pages = 0;

	for (i = 0; i < 5; i++)
		create_hook(tenant_b, "http://127.0.0.1:9/p", "[\"*\"]", id,
			    secret);
	cm_buf_puts(&path, "/api/events/webhooks?limit=2");
	for (;;) {
		r = call("GET", tenant_b, cm_buf_str(&path), NULL, NULL);
		ck_assert_int_eq(r.status, 200);
		pages++;
		cJSON_ArrayForEach(it, cJSON_GetObjectItem(r.json, "items"))
		{
			ck_assert_int_lt(n, 5);
			ck_assert_ptr_null(cJSON_GetObjectItem(it, "secret"));
			cm_strlcpy(seen[n++], str_of(it, "id"), 37);
		}
		it = cJSON_GetObjectItem(r.json, "next_cursor");
		if (!cJSON_IsString(it)) {
			cm_test_resp_release(&r);
			break;
		}
		cm_buf_reset(&path);
		cm_buf_printf(&path, "/api/events/webhooks?limit=2&cursor=%s",
			      it->valuestring);
		cm_test_resp_release(&r);
	}
	ck_assert_int_eq(n, 5);
	ck_assert_int_eq(pages, 3);
	ck_assert_str_eq(seen[0], id); /* newest first */
	for (i = 1; i < 5; i++)
		ck_assert_str_ne(seen[i], seen[i - 1]);
	r = call("GET", tenant_b, "/api/events/webhooks?cursor=nope", NULL,
		 NULL);
	ck_assert_int_eq(r.status, 400);
	cm_test_resp_release(&r);
	r = call("GET", tenant_b, "/api/events/webhooks?limit=0", NULL, NULL);
	ck_assert_int_eq(r.status, 400);
	cm_test_resp_release(&r);
	/* WEBHOOK_MAX_PER_TENANT=6 */
	create_hook(tenant_b, "http://127.0.0.1:9/p", "[\"*\"]", id, secret);
	r = call("POST", tenant_b, "/api/events/webhooks", NULL,
		 "{\"url\":\"http://127.0.0.1:9/p\",\"event_types\":[\"*\"]}");
	ck_assert_int_eq(r.status, 409);
	ck_assert_str_eq(cm_test_resp_error_code(&r), "limit_exceeded");
	cm_test_resp_release(&r);
	cm_buf_release(&path);
}
END_TEST

START_TEST(test_a_tenant_never_sees_or_touches_another_tenants_hooks)
{
	char hook[37], secret[64], url[64], eid[37], path[200];
	struct cm_test_resp r;
	const cJSON *it;

	receiver_start(0);
	receiver_url(url);
	create_hook(tenant_a, url, "[\"lead.*\"]", hook, secret);
	snprintf(path, sizeof(path), "/api/events/webhooks/%s", hook);
	r = call("GET", tenant_b, path, NULL, NULL);
	ck_assert_int_eq(r.status, 404);
	ck_assert_str_eq(cm_test_resp_error_code(&r), "not_found");
	cm_test_resp_release(&r);
	r = call("PATCH", tenant_b, path, "If-Match: *", "{\"active\":false}");
	ck_assert_int_eq(r.status, 404);
	cm_test_resp_release(&r);
	r = call("DELETE", tenant_b, path, NULL, NULL);
	ck_assert_int_eq(r.status, 404);
	cm_test_resp_release(&r);
	snprintf(path, sizeof(path), "/api/events/webhooks/%s/deliveries",
		 hook);
	r = call("GET", tenant_b, path, NULL, NULL);
	ck_assert_int_eq(r.status, 404);
	cm_test_resp_release(&r);
	r = call("GET", tenant_b, "/api/events/webhooks", NULL, NULL);
	cJSON_ArrayForEach(it, cJSON_GetObjectItem(r.json, "items"))
		ck_assert_str_ne(str_of(it, "id"), hook);
	cm_test_resp_release(&r);
	/* B's events never reach A's hook; A's do */
	publish_lead(tenant_b, eid);
	publish_lead(tenant_a, eid);
	r = delivery_until(tenant_a, hook, "succeeded");
	ck_assert_int_eq(
		cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "items")), 1);
	cm_test_resp_release(&r);
	usleep(500 * 1000);
	ck_assert_int_eq(atomic_load(&rcv.nhits), 1);
	ck_assert_ptr_nonnull(strstr(rcv.hits[0].body, tenant_a));
	/* and the hook still exists for A */
	snprintf(path, sizeof(path), "/api/events/webhooks/%s", hook);
	r = call("GET", tenant_a, path, NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	cm_test_resp_release(&r);
	receiver_stop();
}
END_TEST

/* --- default settings: the SSRF guard ----------------------------------- */

START_TEST(test_private_addresses_are_refused_at_create)
{
	const char *urls[] = { "http://127.0.0.1:8080/",
			       "http://localhost/",
			       "http://10.1.2.3/",
			       "http://169.254.169.254/",
			       "http://[::1]/",
			       "http://192.168.0.1/",
			       "http://0x7f.1/",
			       "http://[fe80::1]/",
			       NULL };
	char body[256];
	struct cm_test_resp r;
	int i;

	for (i = 0; urls[i]; i++) {
		snprintf(body, sizeof(body),
			 "{\"url\":\"%s\",\"event_types\":[\"*\"]}", urls[i]);
		r = call("POST", tenant_a, "/api/events/webhooks", NULL, body);
		ck_assert_msg(r.status == 400, "%s -> %ld", urls[i], r.status);
		ck_assert_str_eq(cm_test_resp_error_code(&r),
				 "url_not_allowed");
		cm_test_resp_release(&r);
	}
	r = call("GET", tenant_a, "/api/events/webhooks", NULL, NULL);
	ck_assert_int_eq(
		cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "items")), 0);
	cm_test_resp_release(&r);
}
END_TEST

/* A subscription whose name resolves to loopback only later (written
   straight into the table here): the delivery-time check refuses it, at
   once and for good, and nothing reaches the receiver. */
START_TEST(test_a_name_resolving_to_loopback_is_refused_at_delivery)
{
	char sql[1024], hook[37], eid[37];
	struct cm_test_resp r;
	const cJSON *d;

	receiver_start(0);
	ck_assert_int_eq(cm_uuid_v4(hook), 0);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO event_bus.webhooks (id, tenant_id, url, "
		 "event_types, type_likes, secret) VALUES ('%s', '%s', "
		 "'http://localhost:%d/hook', '{lead.*}', '{lead.%%}', "
		 "'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')",
		 hook, tenant_a, rcv.port);
	ck_assert_int_eq(cm_test_psql(sql), 0);
	publish_lead(tenant_a, eid);
	r = delivery_until(tenant_a, hook, "dead");
	d = cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "items"), 0);
	ck_assert_int_eq(int_of(d, "attempts"), 1);
	ck_assert_str_eq(str_of(d, "last_error"), "address not allowed");
	cm_test_resp_release(&r);
	ck_assert_int_eq(atomic_load(&rcv.nhits), 0);
	receiver_stop();
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("webhooks");
	TCase *lo = tcase_create("loopback");
	TCase *guard = tcase_create("guard");

	tcase_add_checked_fixture(lo, setup_loopback, teardown);
	tcase_set_timeout(lo, 60);
	tcase_add_test(lo,
		       test_a_delivery_is_signed_so_the_receiver_can_verify_it);
	tcase_add_test(lo,
		       test_a_500_is_retried_with_backoff_until_it_succeeds);
	tcase_add_test(
		lo,
		test_a_delivery_that_keeps_failing_is_dead_and_flags_the_hook);
	tcase_add_test(lo, test_a_pending_retry_survives_a_restart);
	tcase_add_test(
		lo,
		test_a_tenants_flood_of_deliveries_does_not_hold_back_another);
	tcase_add_test(
		lo,
		test_a_rotated_secret_signs_beside_the_old_one_during_its_grace);
	tcase_add_test(lo, test_crud_with_idempotency_key_and_if_match);
	tcase_add_test(lo, test_the_list_pages_with_a_cursor);
	tcase_add_test(
		lo, test_a_tenant_never_sees_or_touches_another_tenants_hooks);
	suite_add_tcase(s, lo);
	tcase_add_checked_fixture(guard, setup_default, teardown);
	tcase_set_timeout(guard, 60);
	tcase_add_test(guard, test_private_addresses_are_refused_at_create);
	tcase_add_test(
		guard,
		test_a_name_resolving_to_loopback_is_refused_at_delivery);
	suite_add_tcase(s, guard);
	return s;
}

CM_TEST_MAIN(make_suite)
