/* test_redis.c - common/redis.h against the test Redis. */
#include "common/redis.h"
#include "common/http.h"
#include "common/mem.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "svc.h"
#include "testutil.h"
#include "common/banned.h"

static char g_prefix[64];

static int
redis_port(void)
{
	int64_t port;

	ck_assert_int_eq(
		cm_parse_i64(cm_test_env("REDIS_PORT"), 1, 65535, &port), 0);
	return (int)port;
}

static void
init_with(const char *host, int port, const char *password, int db,
	  int command_timeout_ms)
{
	struct cm_redis_config cfg = { host, port, password,
				       db,   2000, command_timeout_ms };
	char errbuf[CM_ERRBUF_LEN] = "";

	ck_assert_msg(cm_redis_init(&cfg, errbuf) == 0, "init: %s", errbuf);
}

static void del_keys(void);

/* Once per run: the key prefix, and every key under it deleted at the
   end even when a test failed half-way. */
static void
run_setup(void)
{
	char uuid[37];

	cm_test_require_stack();
	ck_assert_int_eq(cm_uuid_v4(uuid), 0);
	snprintf(g_prefix, sizeof(g_prefix), "bz_test_redis:%.8s:", uuid);
}

static void
run_teardown(void)
{
	del_keys();
}

static void
redis_setup(void)
{
	init_with(cm_test_env("REDIS_HOST"), redis_port(), NULL, 0, 2000);
}

static void
redis_teardown(void)
{
	cm_redis_shutdown();
}

static void
key(char out[128], const char *name)
{
	snprintf(out, 128, "%s%s", g_prefix, name);
}

/* A second, plain hiredis connection for looking behind our back. */
static redisContext *
side_conn(int db)
{
	redisContext *c = redisConnect(cm_test_env("REDIS_HOST"), redis_port());
	redisReply *r;

	ck_assert_msg(c && !c->err, "side connection failed");
	if (db) {
		r = redisCommand(c, "SELECT %d", db);
		ck_assert_int_eq(r->type, REDIS_REPLY_STATUS);
		freeReplyObject(r);
	}
	return c;
}

static long long
my_client_id(void)
{
	const char *argv[] = { "CLIENT", "ID" };
	char errbuf[CM_ERRBUF_LEN] = "";
	redisReply *r = cm_redis_cmd(2, argv, NULL, errbuf);
	long long id;

	ck_assert_msg(r != NULL, "%s", errbuf);
	ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
	id = r->integer;
	freeReplyObject(r);
	return id;
}

static void
del_keys(void)
{
	char pattern[128];
	redisContext *c = side_conn(0);
	redisReply *r, *d;
	size_t i;

	snprintf(pattern, sizeof(pattern), "%s*", g_prefix);
	r = redisCommand(c, "KEYS %s", pattern);
	for (i = 0; r && i < r->elements; i++) {
		d = redisCommand(c, "DEL %s", r->element[i]->str);
		freeReplyObject(d);
	}
	freeReplyObject(r);
	redisFree(c);
}

START_TEST(test_ping_succeeds)
{
	char errbuf[CM_ERRBUF_LEN] = "";

	ck_assert_msg(cm_redis_ping(errbuf) == 0, "%s", errbuf);
	ck_assert_ptr_nonnull(cm_redis_conn(errbuf));
}
END_TEST

START_TEST(test_cmd_arguments_are_binary_safe)
{
	static const char val[] = "a\0b\r\n%s$3\r\n*1 x";
	char k[128], errbuf[CM_ERRBUF_LEN] = "";
	const char *argv[3];
	size_t lens[3];
	redisReply *r;

	key(k, "bin key with spaces");
	argv[0] = "SET";
	argv[1] = k;
	argv[2] = val;
	lens[0] = 3;
	lens[1] = strlen(k);
	lens[2] = sizeof(val) - 1;
	r = cm_redis_cmd(3, argv, lens, errbuf);
	ck_assert_msg(r != NULL, "%s", errbuf);
	freeReplyObject(r);
	argv[0] = "GET";
	r = cm_redis_cmd(2, argv, NULL, errbuf); /* NULL lens: strlen */
	ck_assert_msg(r != NULL, "%s", errbuf);
	ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
	ck_assert_uint_eq(r->len, sizeof(val) - 1);
	ck_assert_int_eq(memcmp(r->str, val, r->len), 0);
	freeReplyObject(r);
	ck_assert_ptr_null(cm_redis_cmd(0, argv, NULL, errbuf));
}
END_TEST

START_TEST(test_cmdf_keeps_each_value_one_argument)
{
	char k[128], errbuf[CM_ERRBUF_LEN] = "";
	redisReply *r;

	key(k, "fmt");
	r = cm_redis_cmdf(errbuf, "SET %s %b", k, "a b\0c", (size_t)5);
	ck_assert_msg(r != NULL, "%s", errbuf);
	freeReplyObject(r);
	r = cm_redis_cmdf(errbuf, "GET %s", k);
	ck_assert_msg(r != NULL, "%s", errbuf);
	ck_assert_uint_eq(r->len, 5);
	ck_assert_int_eq(memcmp(r->str, "a b\0c", 5), 0);
	freeReplyObject(r);
	r = cm_redis_cmdf(errbuf, "INCR %s", k);
	ck_assert_ptr_null(r);
	ck_assert_msg(strstr(errbuf, "not an integer"), "%s", errbuf);
}
END_TEST

START_TEST(test_error_reply_is_null_with_its_text_and_keeps_the_conn)
{
	char k[128], errbuf[CM_ERRBUF_LEN] = "";
	const char *set[] = { "SET", k, "text" };
	const char *incr[] = { "INCR", k };
	const char *bogus[] = { "NOSUCHCOMMAND", "x" };
	redisReply *r;
	long long id = my_client_id();

	key(k, "err");
	r = cm_redis_cmd(3, set, NULL, errbuf);
	ck_assert_ptr_nonnull(r);
	freeReplyObject(r);
	ck_assert_ptr_null(cm_redis_cmd(2, incr, NULL, errbuf));
	ck_assert_msg(strncmp(errbuf, "ERR value is not an integer", 27) == 0,
		      "%s", errbuf);
	ck_assert_ptr_null(cm_redis_cmd(2, bogus, NULL, errbuf));
	ck_assert_msg(strstr(errbuf, "unknown command"), "%s", errbuf);
	ck_assert_int_eq(my_client_id(), id);
}
END_TEST

#define GROUP_THREADS 16
#define GROUP_CALLS 300

struct group_caller {
	int idx;
	int wrong; /* replies that were not this caller's */
	int errors_seen;
};

/* INCR of its own key, so each reply says whose it is; every tenth call
   an INCR of a text key, whose error must come back to this caller. */
static void *
group_caller_run(void *arg)
{
	struct group_caller *g = arg;
	char k[128], name[32], text[128], errbuf[CM_ERRBUF_LEN];
	const char *incr[] = { "INCR", k };
	const char *bad[] = { "INCR", text };
	long long want = 0;
	redisReply *r;
	int i;

	snprintf(name, sizeof(name), "group:%d", g->idx);
	key(k, name);
	key(text, "group:text");
	for (i = 0; i < GROUP_CALLS; i++) {
		if (i % 10 == 5) {
			errbuf[0] = '\0';
			r = cm_redis_cmd_grouped(2, bad, NULL, errbuf);
			if (r)
				freeReplyObject(r);
			g->errors_seen +=
				!r && strstr(errbuf, "not an integer");
			continue;
		}
		r = cm_redis_cmd_grouped(2, incr, NULL, errbuf);
		if (!r || r->type != REDIS_REPLY_INTEGER ||
		    r->integer != ++want)
			g->wrong++;
		if (r)
			freeReplyObject(r);
	}
	return NULL;
}

START_TEST(test_grouped_commands_of_many_threads_get_their_own_replies)
{
	struct group_caller g[GROUP_THREADS];
	pthread_t th[GROUP_THREADS];
	char text[128], errbuf[CM_ERRBUF_LEN] = "";
	const char *set[] = { "SET", text, "text" };
	redisReply *r;
	int i;

	key(text, "group:text");
	r = cm_redis_cmd(3, set, NULL, errbuf);
	ck_assert_ptr_nonnull(r);
	freeReplyObject(r);
	for (i = 0; i < GROUP_THREADS; i++) {
		g[i] = (struct group_caller){ .idx = i };
		ck_assert_int_eq(
			pthread_create(&th[i], NULL, group_caller_run, &g[i]),
			0);
	}
	for (i = 0; i < GROUP_THREADS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(g[i].wrong, 0);
		ck_assert_int_eq(g[i].errors_seen, GROUP_CALLS / 10);
	}
}
END_TEST

START_TEST(test_reconnects_after_client_kill)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	long long id1 = my_client_id();
	redisContext *side = side_conn(0);
	redisReply *r;

	r = redisCommand(side, "CLIENT KILL ID %lld", id1);
	ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
	ck_assert_int_eq(r->integer, 1);
	freeReplyObject(r);
	redisFree(side);
	/* the dead connection is noticed before sending: no error at all */
	ck_assert_msg(cm_redis_ping(errbuf) == 0, "%s", errbuf);
	ck_assert_int_ne(my_client_id(), id1);
}
END_TEST

typedef redisReply *(*cmd_fn)(int argc, const char **argv,
			      const size_t *argvlen,
			      char errbuf[CM_ERRBUF_LEN]);

/* A command over the 300 ms timeout fails "timed out" in time, and the
   connection is replaced. */
static void
timeout_drops_the_connection(cmd_fn cmd)
{
	char k[128], errbuf[CM_ERRBUF_LEN] = "";
	const char *argv[] = { "BLPOP", k, "3" };
	long long id1;
	int64_t t0;

	init_with(cm_test_env("REDIS_HOST"), redis_port(), NULL, 0, 300);
	key(k, "never");
	id1 = my_client_id();
	t0 = cm_now_ms();
	ck_assert_ptr_null(cmd(3, argv, NULL, errbuf));
	ck_assert_int_lt(cm_now_ms() - t0, 1500);
	ck_assert_msg(strstr(errbuf, "timed out"), "%s", errbuf);
	ck_assert_int_ne(my_client_id(), id1);
}

START_TEST(test_command_timeout_drops_the_connection)
{
	timeout_drops_the_connection(cm_redis_cmd);
}
END_TEST

/* A grouped round that fails (here a command timeout) fails its caller
   with the reason and drops the connection; the next round connects
   anew. A server that refuses connections fails the call too. */
START_TEST(test_a_failed_grouped_round_reports_and_the_next_reconnects)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	const char *ping[] = { "PING" };
	redisReply *r;

	timeout_drops_the_connection(cm_redis_cmd_grouped);
	r = cm_redis_cmd_grouped(1, ping, NULL, errbuf);
	ck_assert_msg(r != NULL, "%s", errbuf);
	freeReplyObject(r);
	init_with("127.0.0.1", cm_test_free_port(), NULL, 0, 1000);
	ck_assert_ptr_null(cm_redis_cmd_grouped(1, ping, NULL, errbuf));
	ck_assert_msg(strstr(errbuf, "refused"), "%s", errbuf);
	ck_assert_ptr_null(cm_redis_cmd_grouped(0, ping, NULL, errbuf));
	ck_assert_msg(strstr(errbuf, "empty"), "%s", errbuf);
}
END_TEST

/* A fake server that answers +PONG to every read and never closes a
   connection itself; counts the connections it accepted. */
struct fake {
	int lfd, port, accepted, stop;
	pthread_t th;
};

static void *
fake_run(void *arg)
{
	struct fake *f = arg;
	struct pollfd p[9];
	int n = 1, i;
	char buf[512];
	ssize_t k;

	p[0].fd = f->lfd;
	p[0].events = POLLIN;
	while (!__atomic_load_n(&f->stop, __ATOMIC_SEQ_CST)) {
		if (poll(p, n, 50) <= 0)
			continue;
		if ((p[0].revents & POLLIN) && n < 9) {
			p[n].fd = accept(f->lfd, NULL, NULL);
			p[n++].events = POLLIN;
			__atomic_add_fetch(&f->accepted, 1, __ATOMIC_SEQ_CST);
		}
		for (i = 1; i < n; i++) {
			if (!(p[i].revents & (POLLIN | POLLHUP)))
				continue;
			k = read(p[i].fd, buf, sizeof(buf));
			if (k > 0 && write(p[i].fd, "+PONG\r\n", 7) != 7)
				k = 0;
			if (k <= 0)
				p[i].events = 0; /* stop reading, keep open */
		}
	}
	for (i = 0; i < n; i++)
		close(p[i].fd);
	return NULL;
}

static void
fake_start(struct fake *f)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	memset(f, 0, sizeof(*f));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(f->lfd, 8), 0);
	ck_assert_int_eq(getsockname(f->lfd, (struct sockaddr *)&sa, &len), 0);
	f->port = ntohs(sa.sin_port);
	ck_assert_int_eq(pthread_create(&f->th, NULL, fake_run, f), 0);
}

static void
fake_stop(struct fake *f)
{
	__atomic_store_n(&f->stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(f->th, NULL);
}

START_TEST(test_failed_write_is_retried_once_on_a_new_connection)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct fake f;
	redisContext *c;

	fake_start(&f);
	init_with("127.0.0.1", f.port, NULL, 0, 1000);
	c = cm_redis_conn(errbuf);
	ck_assert_msg(c != NULL, "%s", errbuf);
	ck_assert_msg(cm_redis_ping(errbuf) == 0, "%s", errbuf);
	/* our side can no longer write, yet looks idle and alive */
	ck_assert_int_eq(shutdown(c->fd, SHUT_WR), 0);
	ck_assert_msg(cm_redis_ping(errbuf) == 0, "%s", errbuf);
	ck_assert_int_eq(__atomic_load_n(&f.accepted, __ATOMIC_SEQ_CST), 2);
	cm_redis_shutdown();
	fake_stop(&f);
}
END_TEST

START_TEST(test_connect_failure_is_eio_with_the_reason)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	int port = cm_test_free_port();

	init_with("127.0.0.1", port, NULL, 0, 1000);
	ck_assert_int_eq(cm_redis_ping(errbuf), CM_EIO);
	ck_assert_msg(strstr(errbuf, "refused"), "%s", errbuf);
	ck_assert_ptr_null(cm_redis_conn(errbuf));
	/* re-pointing at the real server works at once */
	init_with(cm_test_env("REDIS_HOST"), redis_port(), NULL, 0, 1000);
	ck_assert_msg(cm_redis_ping(errbuf) == 0, "%s", errbuf);
}
END_TEST

/* The server has no password, so AUTH fails: that exercises the AUTH path
   without touching the shared server's configuration. (A wrong password
   against a server that has one is not tested: it would need either
   CONFIG SET requirepass on the shared server or a second server.) */
START_TEST(test_auth_failure_is_reported_without_the_password)
{
	char errbuf[CM_ERRBUF_LEN] = "";

	init_with(cm_test_env("REDIS_HOST"), redis_port(), "s3cret-pw-xyz", 0,
		  1000);
	ck_assert_int_eq(cm_redis_ping(errbuf), CM_EIO);
	ck_assert_msg(strncmp(errbuf, "redis auth: ", 12) == 0, "%s", errbuf);
	ck_assert_ptr_null(strstr(errbuf, "s3cret"));
	/* an empty password means no AUTH */
	init_with(cm_test_env("REDIS_HOST"), redis_port(), "", 0, 1000);
	ck_assert_msg(cm_redis_ping(errbuf) == 0, "%s", errbuf);
}
END_TEST

START_TEST(test_select_uses_the_configured_db)
{
	char k[128], errbuf[CM_ERRBUF_LEN] = "";
	const char *set[] = { "SET", k, "in-db-5" };
	redisContext *side5, *side0;
	redisReply *r;

	key(k, "db5");
	init_with(cm_test_env("REDIS_HOST"), redis_port(), NULL, 5, 1000);
	r = cm_redis_cmd(3, set, NULL, errbuf);
	ck_assert_msg(r != NULL, "%s", errbuf);
	freeReplyObject(r);
	side5 = side_conn(5);
	side0 = side_conn(0);
	r = redisCommand(side5, "GET %s", k);
	ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
	ck_assert_str_eq(r->str, "in-db-5");
	freeReplyObject(r);
	r = redisCommand(side0, "GET %s", k);
	ck_assert_int_eq(r->type, REDIS_REPLY_NIL);
	freeReplyObject(r);
	r = redisCommand(side5, "DEL %s", k);
	freeReplyObject(r);
	redisFree(side5);
	redisFree(side0);
	init_with(cm_test_env("REDIS_HOST"), redis_port(), NULL, 100000, 1000);
	ck_assert_int_eq(cm_redis_ping(errbuf), CM_EIO);
	ck_assert_msg(strstr(errbuf, "redis select: ERR DB index"), "%s",
		      errbuf);
}
END_TEST

START_TEST(test_init_rejects_bad_config_and_use_before_init)
{
	struct cm_redis_config cfg = { "127.0.0.1", 0, NULL, 0, 0, 0 };
	char errbuf[CM_ERRBUF_LEN] = "";

	ck_assert_int_eq(cm_redis_init(NULL, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_redis_init(&cfg, errbuf), CM_EINVAL);
	cfg.port = 6379;
	cfg.db = -1;
	ck_assert_int_eq(cm_redis_init(&cfg, errbuf), CM_EINVAL);
	cfg.db = 0;
	cfg.command_timeout_ms = -1;
	ck_assert_int_eq(cm_redis_init(&cfg, errbuf), CM_EINVAL);
	cfg.host = "";
	cfg.command_timeout_ms = 0;
	ck_assert_int_eq(cm_redis_init(&cfg, errbuf), CM_EINVAL);
	cm_redis_shutdown();
	ck_assert_int_eq(cm_redis_ping(errbuf), CM_EINVAL);
	ck_assert_msg(strstr(errbuf, "not initialised"), "%s", errbuf);
}
END_TEST

static void *
thread_client_id(void *arg)
{
	*(long long *)arg = my_client_id();
	return NULL;
}

START_TEST(test_thread_exit_closes_its_connection)
{
	redisContext *side = side_conn(0);
	redisReply *r = NULL;
	long long id = 0;
	pthread_t th;
	int i;

	ck_assert_int_eq(pthread_create(&th, NULL, thread_client_id, &id), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_gt(id, 0);
	ck_assert_int_ne(id, my_client_id());
	for (i = 0; i < 50; i++) {
		freeReplyObject(r);
		r = redisCommand(side, "CLIENT LIST ID %lld", id);
		ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
		if (r->len == 0)
			break;
		usleep(50 * 1000);
	}
	ck_assert_uint_eq(r->len, 0);
	freeReplyObject(r);
	redisFree(side);
}
END_TEST

/* [[stream, [[id, [f, v...]]...]]] -> the first entry's id. */
static const char *
first_read_id(const redisReply *r)
{
	ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
	ck_assert_uint_eq(r->elements, 1);
	r = r->element[0]->element[1];
	ck_assert_uint_ge(r->elements, 1);
	return r->element[0]->element[0]->str;
}

static size_t
pending_count(const char *stream, const char *group)
{
	const char *argv[] = { "XPENDING", stream, group };
	char errbuf[CM_ERRBUF_LEN] = "";
	redisReply *r = cm_redis_cmd(3, argv, NULL, errbuf);
	size_t n;

	ck_assert_msg(r != NULL, "%s", errbuf);
	n = (size_t)r->element[0]->integer;
	freeReplyObject(r);
	return n;
}

START_TEST(test_stream_round_trip_with_autoclaim)
{
	const char *fields[] = { "type", "body" };
	const char *values[] = { "lead.created", "{\"id\":1}" };
	char s[128], id[64], errbuf[CM_ERRBUF_LEN] = "";
	redisReply *r;

	key(s, "stream");
	ck_assert_msg(cm_redis_xgroup_create(s, "g", "0", errbuf) == 0, "%s",
		      errbuf);
	ck_assert_msg(cm_redis_xgroup_create(s, "g", "0", errbuf) == 0, "%s",
		      errbuf);
	ck_assert_msg(cm_redis_xadd(s, 1000, 2, fields, values, id, errbuf) ==
			      0,
		      "%s", errbuf);
	ck_assert_ptr_nonnull(strchr(id, '-'));
	r = cm_redis_xreadgroup(s, "g", "A", 10, 100, errbuf);
	ck_assert_msg(r != NULL, "%s", errbuf);
	ck_assert_str_eq(first_read_id(r), id);
	freeReplyObject(r);
	/* nothing new for A: a nil reply, not an error */
	r = cm_redis_xreadgroup(s, "g", "A", 10, 0, errbuf);
	ck_assert_msg(r != NULL, "%s", errbuf);
	ck_assert_int_eq(r->type, REDIS_REPLY_NIL);
	freeReplyObject(r);
	/* not idle long enough yet: B gets nothing */
	r = cm_redis_xautoclaim(s, "g", "B", 60000, NULL, 10, errbuf);
	ck_assert_msg(r != NULL, "%s", errbuf);
	ck_assert_uint_eq(r->element[1]->elements, 0);
	freeReplyObject(r);
	usleep(300 * 1000);
	r = cm_redis_xautoclaim(s, "g", "B", 200, "0-0", 10, errbuf);
	ck_assert_msg(r != NULL, "%s", errbuf);
	ck_assert_uint_eq(r->element[1]->elements, 1);
	ck_assert_str_eq(r->element[1]->element[0]->element[0]->str, id);
	freeReplyObject(r);
	ck_assert_uint_eq(pending_count(s, "g"), 1);
	ck_assert_msg(cm_redis_xack(s, "g", id, errbuf) == 0, "%s", errbuf);
	ck_assert_uint_eq(pending_count(s, "g"), 0);
	ck_assert_msg(cm_redis_xack(s, "g", id, errbuf) == 0, "%s", errbuf);
}
END_TEST

START_TEST(test_xreadgroup_block_outlives_the_command_timeout)
{
	char s[128], k[128], errbuf[CM_ERRBUF_LEN] = "";
	const char *blpop[] = { "BLPOP", k, "2" };
	redisReply *r;
	long long id1;
	int64_t t0;

	init_with(cm_test_env("REDIS_HOST"), redis_port(), NULL, 0, 300);
	key(s, "blockstream");
	key(k, "never");
	ck_assert_int_eq(cm_redis_xgroup_create(s, "g", NULL, errbuf), 0);
	id1 = my_client_id();
	t0 = cm_now_ms();
	r = cm_redis_xreadgroup(s, "g", "A", 1, 800, errbuf);
	ck_assert_msg(r != NULL, "%s", errbuf);
	ck_assert_int_eq(r->type, REDIS_REPLY_NIL);
	ck_assert_int_ge(cm_now_ms() - t0, 700);
	freeReplyObject(r);
	ck_assert_int_eq(my_client_id(), id1);
	/* and the 300 ms command timeout is back */
	t0 = cm_now_ms();
	ck_assert_ptr_null(cm_redis_cmd(3, blpop, NULL, errbuf));
	ck_assert_int_lt(cm_now_ms() - t0, 1500);
}
END_TEST

START_TEST(test_stream_helpers_report_errors)
{
	const char *fields[] = { "f", NULL };
	const char *values[] = { "v", "w" };
	char k[128], errbuf[CM_ERRBUF_LEN] = "", id[64];
	const char *set[] = { "SET", k, "string" };
	redisReply *r;

	key(k, "notastream");
	r = cm_redis_cmd(3, set, NULL, errbuf);
	freeReplyObject(r);
	ck_assert_int_eq(cm_redis_xgroup_create(k, "g", "$", errbuf), CM_EIO);
	ck_assert_msg(strncmp(errbuf, "WRONGTYPE", 9) == 0, "%s", errbuf);
	ck_assert_int_eq(cm_redis_xadd(k, 0, 1, fields, values, id, errbuf),
			 CM_EIO);
	ck_assert_msg(strncmp(errbuf, "WRONGTYPE", 9) == 0, "%s", errbuf);
	ck_assert_int_eq(cm_redis_xadd(k, 0, 0, fields, values, id, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(cm_redis_xadd(k, 0, 257, fields, values, id, errbuf),
			 CM_EINVAL);
	ck_assert_int_eq(cm_redis_xadd(k, 0, 2, fields, values, id, errbuf),
			 CM_EINVAL);
	ck_assert_ptr_null(
		cm_redis_xreadgroup(k, "nogroup", "A", 1, 0, errbuf));
	ck_assert_ptr_nonnull(strstr(errbuf, "WRONGTYPE"));
	ck_assert_ptr_null(
		cm_redis_xreadgroup(k, "g", "A", 1, 3600001, errbuf));
	ck_assert_ptr_null(
		cm_redis_xautoclaim(k, "g", "B", -1, NULL, 1, errbuf));
	ck_assert_int_eq(cm_redis_xack(k, "g", NULL, errbuf), CM_EINVAL);
	ck_assert_int_eq(cm_redis_xack(k, "g", "1-1", errbuf), CM_EIO);
	ck_assert_int_eq(cm_redis_xgroup_create(NULL, "g", "$", errbuf),
			 CM_EINVAL);
}
END_TEST

/* ---- async commands, on a real HTTP worker ---- */

/* The i-th value the async test pushes: empty, with CR LF inside, plain. */
static void
async_value(int i, char out[32])
{
	if (i % 3 == 0)
		out[0] = '\0';
	else if (i % 3 == 1)
		snprintf(out, 32, "a\r\n$%d\r\nb", i);
	else
		snprintf(out, 32, "value-%d", i);
}

static void
async_pushed(redisReply *r, const char *err, void *arg)
{
	struct cm_req *req = arg;
	char body[64];
	int n;

	if (!r || r->type != REDIS_REPLY_INTEGER) {
		cm_req_fail(req, 503, "unavailable", "%s",
			    err				   ? err
			    : r->type == REDIS_REPLY_ERROR ? r->str
							   : "?");
		cm_req_reply_json(req, 503, NULL);
		return;
	}
	n = snprintf(body, sizeof(body), "{\"len\":%lld}", r->integer);
	cm_req_reply(req, 200, "application/json", body, (size_t)n);
}

/* GET /rpush/:n - RPUSH <prefix>async:<n> with n values, asynchronously. */
static void
h_rpush(struct cm_req *req0, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "", k[128], name[32];
	char vals[64][32];
	const char *argv[66];
	int64_t n = 0;
	struct cm_req *req;
	int i;

	(void)arg;
	ck_assert_int_eq(cm_parse_i64(cm_req_param(req0, "n"), 1, 64, &n), 0);
	snprintf(name, sizeof(name), "async:%d", (int)n);
	key(k, name);
	argv[0] = "RPUSH";
	argv[1] = k;
	for (i = 0; i < n; i++) {
		async_value(i, vals[i]);
		argv[2 + i] = vals[i];
	}
	req = cm_req_defer(req0);
	ck_assert_ptr_nonnull(req);
	if (cm_redis_async_argv((int)n + 2, argv, 0, async_pushed, req,
				errbuf) < 0) {
		cm_req_fail(req, 503, "unavailable", "%s", errbuf);
		cm_req_reply_json(req, 503, NULL);
	}
}

/* Two BLPOPs on one connection and what each heard. */
struct blpops {
	struct cm_req *req;
	char heard[2][64];
	int left;
};

static void
blpop_heard(struct blpops *b, int i, redisReply *r, const char *err)
{
	const char *what = err ? err : "?";
	char out[160];
	int n;

	snprintf(b->heard[i], sizeof(b->heard[i]), "%s", r ? "answered" : what);
	if (--b->left > 0)
		return;
	n = snprintf(out, sizeof(out), "%s|%s", b->heard[0], b->heard[1]);
	cm_req_reply(b->req, 200, "text/plain", out, (size_t)n);
	free(b);
}

static void
blpop_first(redisReply *r, const char *err, void *arg)
{
	blpop_heard(arg, 0, r, err);
}

static void
blpop_second(redisReply *r, const char *err, void *arg)
{
	blpop_heard(arg, 1, r, err);
}

/* GET /blpop/:ms - two BLPOPs (2 s each) on an empty list: the first
   giving up after 3 s, the second after ms; answers what each heard. */
static void
h_blpop(struct cm_req *req0, void *arg)
{
	char errbuf[CM_ERRBUF_LEN] = "", k[128];
	const char *argv[3] = { "BLPOP", k, "2" };
	struct blpops *b = cm_xcalloc(1, sizeof(*b));
	int64_t ms = 0;

	(void)arg;
	ck_assert_int_eq(cm_parse_i64(cm_req_param(req0, "ms"), 1, 5000, &ms),
			 0);
	key(k, "async:empty");
	b->req = cm_req_defer(req0);
	b->left = 2;
	ck_assert_ptr_nonnull(b->req);
	ck_assert_int_eq(
		cm_redis_async_argv(3, argv, 3000, blpop_first, b, errbuf), 0);
	ck_assert_int_eq(
		cm_redis_async_argv(3, argv, (int)ms, blpop_second, b, errbuf),
		0);
}

static const struct cm_route async_routes[] = {
	{ "GET", "/rpush/:n", h_rpush, CM_ROUTE_PUBLIC },
	{ "GET", "/blpop/:ms", h_blpop, CM_ROUTE_PUBLIC },
	CM_ROUTE_END,
};

/* A call Redis does not answer in time gets "timed out" at its own
   deadline, even one sent after a call with a later deadline (one timer
   serves every call of a connection); the connection is dropped, the
   other call hears "connection lost", and the next call works on a new
   connection. */
START_TEST(test_async_calls_time_out_each_at_its_deadline)
{
	struct cm_test_resp r;
	struct cm_http *h = cm_test_server_start(async_routes);
	int port = cm_http_port(h);
	int64_t t0;

	t0 = cm_now_ms();
	ck_assert_int_eq(
		cm_test_http("GET", port, "/blpop/300", NULL, NULL, &r), 0);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	ck_assert_str_eq(r.body,
			 "redis connection lost|redis command timed out");
	ck_assert_int_ge(cm_now_ms() - t0, 280);
	ck_assert_int_lt(cm_now_ms() - t0, 1500);
	cm_test_resp_release(&r);
	ck_assert_int_eq(cm_test_http("GET", port, "/rpush/2", NULL, NULL, &r),
			 0);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	cm_test_resp_release(&r);
	cm_test_server_stop(h);
}
END_TEST

/* Async commands carry every argument byte for byte (empty ones, ones
   with CR LF and RESP-looking text inside), with few arguments and with
   more than the fast formatter takes (the hiredis formatter then). */
START_TEST(test_async_commands_keep_every_argument_exact)
{
	static const int counts[] = { 1, 5, 30, 31, 64 };
	char errbuf[CM_ERRBUF_LEN] = "", path[32], k[128], name[32], want[32];
	struct cm_test_resp resp;
	struct cm_http *h = cm_test_server_start(async_routes);
	const char *argv[4];
	redisReply *r;
	size_t j, i;

	for (j = 0; j < sizeof(counts) / sizeof(counts[0]); j++) {
		snprintf(path, sizeof(path), "/rpush/%d", counts[j]);
		ck_assert_int_eq(cm_test_http("GET", cm_http_port(h), path,
					      NULL, NULL, &resp),
				 0);
		ck_assert_msg(resp.status == 200, "%ld %s", resp.status,
			      resp.body);
		cm_test_resp_release(&resp);
		snprintf(name, sizeof(name), "async:%d", counts[j]);
		key(k, name);
		argv[0] = "LRANGE";
		argv[1] = k;
		argv[2] = "0";
		argv[3] = "-1";
		r = cm_redis_cmd(4, argv, NULL, errbuf);
		ck_assert_msg(r != NULL, "%s", errbuf);
		ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
		ck_assert_uint_eq(r->elements, (size_t)counts[j]);
		for (i = 0; i < r->elements; i++) {
			async_value((int)i, want);
			ck_assert_uint_eq(r->element[i]->len, strlen(want));
			ck_assert_mem_eq(r->element[i]->str, want,
					 strlen(want));
		}
		freeReplyObject(r);
	}
	cm_test_server_stop(h);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("redis");
	TCase *tc = tcase_create("redis");

	/* a write to a reset connection must fail, not kill the test */
	signal(SIGPIPE, SIG_IGN);
	tcase_add_unchecked_fixture(tc, run_setup, run_teardown);
	tcase_add_checked_fixture(tc, redis_setup, redis_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_ping_succeeds);
	tcase_add_test(tc, test_async_commands_keep_every_argument_exact);
	tcase_add_test(tc, test_async_calls_time_out_each_at_its_deadline);
	tcase_add_test(tc, test_cmd_arguments_are_binary_safe);
	tcase_add_test(
		tc,
		test_grouped_commands_of_many_threads_get_their_own_replies);
	tcase_add_test(
		tc,
		test_a_failed_grouped_round_reports_and_the_next_reconnects);
	tcase_add_test(tc, test_cmdf_keeps_each_value_one_argument);
	tcase_add_test(
		tc, test_error_reply_is_null_with_its_text_and_keeps_the_conn);
	tcase_add_test(tc, test_reconnects_after_client_kill);
	tcase_add_test(tc, test_command_timeout_drops_the_connection);
	tcase_add_test(tc,
		       test_failed_write_is_retried_once_on_a_new_connection);
	tcase_add_test(tc, test_connect_failure_is_eio_with_the_reason);
	tcase_add_test(tc, test_auth_failure_is_reported_without_the_password);
	tcase_add_test(tc, test_select_uses_the_configured_db);
	tcase_add_test(tc, test_init_rejects_bad_config_and_use_before_init);
	tcase_add_test(tc, test_thread_exit_closes_its_connection);
	tcase_add_test(tc, test_stream_round_trip_with_autoclaim);
	tcase_add_test(tc, test_xreadgroup_block_outlives_the_command_timeout);
	tcase_add_test(tc, test_stream_helpers_report_errors);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
