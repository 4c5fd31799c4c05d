/* redis.c - Redis through hiredis 0.14: see common/redis.h. */
#include "common/redis.h"

#include <openssl/evp.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "common/log.h"
#include "common/mem.h"
#include "http_internal.h"

#include <event2/event.h>
#include <hiredis/async.h>

#include "common/banned.h"

#define REDIS_DEFAULT_CONNECT_MS 2000
#define REDIS_DEFAULT_COMMAND_MS 5000
#define REDIS_XADD_MAX_FIELDS 256
#define REDIS_MAX_BLOCK_MS 3600000
#define REDIS_RETRY 1 /* internal: nothing was sent, use a new connection */

/* The settings of the last cm_redis_init(); host NULL: not initialised. */
struct redis_settings {
	char *host;
	int port;
	char *password;
	int db;
	int connect_timeout_ms;
	int command_timeout_ms;
	unsigned generation;
};

/* One per thread, behind redis_key; freed at thread exit. */
struct redis_thread {
	redisContext *c;
	unsigned generation;	/* of the settings c was made with */
	int command_timeout_ms; /* to restore after a long BLOCK */
};

static pthread_mutex_t redis_lock = PTHREAD_MUTEX_INITIALIZER;
static struct redis_settings redis_cfg;
static unsigned redis_generation;
static pthread_key_t redis_key;
static pthread_once_t redis_key_once = PTHREAD_ONCE_INIT;

static struct timeval
redis_tv(int ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return tv;
}

static void
redis_thread_free(void *p)
{
	struct redis_thread *t = p;

	if (!t)
		return;
	if (t->c)
		redisFree(t->c);
	free(t);
}

static void
redis_key_create(void)
{
	if (pthread_key_create(&redis_key, redis_thread_free) != 0) {
		fprintf(stderr, "redis: pthread_key_create failed\n");
		abort();
	}
}

static struct redis_thread *
redis_thread_get(void)
{
	struct redis_thread *t;

	pthread_once(&redis_key_once, redis_key_create);
	t = pthread_getspecific(redis_key);
	if (!t) {
		t = cm_xcalloc(1, sizeof(*t));
		if (pthread_setspecific(redis_key, t) != 0) {
			fprintf(stderr, "redis: pthread_setspecific failed\n");
			abort();
		}
	}
	return t;
}

static void
redis_thread_close(struct redis_thread *t)
{
	if (t->c)
		redisFree(t->c);
	t->c = NULL;
}

static void
redis_settings_release(struct redis_settings *s)
{
	if (s->password) {
		cm_memzero(s->password, strlen(s->password));
		free(s->password);
	}
	free(s->host);
	memset(s, 0, sizeof(*s));
}

static int
redis_settings_get(struct redis_settings *out, char *errbuf)
{
	int rc = 0;

	pthread_mutex_lock(&redis_lock);
	if (!redis_cfg.host) {
		cm_errf(errbuf, "redis: not initialised");
		rc = CM_EINVAL;
	} else {
		*out = redis_cfg;
		out->host = cm_xstrdup(redis_cfg.host);
		out->password = cm_xstrdup(redis_cfg.password);
		out->generation = redis_generation;
	}
	pthread_mutex_unlock(&redis_lock);
	return rc;
}

static int
redis_current_generation(unsigned *gen, char *errbuf)
{
	int rc = 0;

	pthread_mutex_lock(&redis_lock);
	*gen = redis_generation;
	if (!redis_cfg.host) {
		cm_errf(errbuf, "redis: not initialised");
		rc = CM_EINVAL;
	}
	pthread_mutex_unlock(&redis_lock);
	return rc;
}

/* An idle connection has nothing to read: readable means the server
   closed it (or sent something nobody asked for). Either way, replace it
   before sending rather than after. */
static bool
redis_alive(redisContext *c)
{
	struct pollfd pfd;
	char byte;
	ssize_t k;

	if (c->err || c->fd < 0)
		return false;
	pfd.fd = c->fd;
	pfd.events = POLLIN;
	pfd.revents = 0;
	if (poll(&pfd, 1, 0) == 0)
		return true;
	if (pfd.revents & (POLLERR | POLLHUP | POLLNVAL))
		return false;
	k = recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	return k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* AUTH or SELECT on a new connection; errbuf never shows the argv. */
static int
redis_handshake(redisContext *c, int argc, const char **argv, const char *what,
		char *errbuf)
{
	redisReply *r;
	int rc = 0;

	r = redisCommandArgv(c, argc, argv, NULL);
	if (!r) {
		cm_errf(errbuf, "redis %s: %s", what, c->errstr);
		return CM_EIO;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		cm_errf(errbuf, "redis %s: %.*s", what,
			(int)(r->len < CM_ERRBUF_LEN ? r->len : CM_ERRBUF_LEN),
			r->str);
		rc = CM_EIO;
	}
	freeReplyObject(r);
	return rc;
}

static int
redis_session(redisContext *c, const struct redis_settings *s, char *errbuf)
{
	const char *argv[2];
	char db[16];
	int rc = 0;

	if (redisSetTimeout(c, redis_tv(s->command_timeout_ms)) != REDIS_OK) {
		cm_errf(errbuf, "redis: cannot set the command timeout");
		return CM_EIO;
	}
	redisEnableKeepAlive(c);
	if (s->password && *s->password) {
		argv[0] = "AUTH";
		argv[1] = s->password;
		rc = redis_handshake(c, 2, argv, "auth", errbuf);
	}
	if (rc == 0 && s->db != 0) {
		snprintf(db, sizeof(db), "%d", s->db);
		argv[0] = "SELECT";
		argv[1] = db;
		rc = redis_handshake(c, 2, argv, "select", errbuf);
	}
	return rc;
}

static int
redis_connect(const struct redis_settings *s, redisContext **out, char *errbuf)
{
	struct timeval tv = redis_tv(s->connect_timeout_ms);
	redisContext *c;
	int rc;

	if (s->host[0] == '/')
		c = redisConnectUnixWithTimeout(s->host, tv);
	else
		c = redisConnectWithTimeout(s->host, s->port, tv);
	if (!c) {
		cm_errf(errbuf, "redis connect: out of memory");
		return CM_EIO;
	}
	if (c->err) {
		rc = c->err == REDIS_ERR_IO && errno == ETIMEDOUT ? CM_ETIMEDOUT
								  : CM_EIO;
		cm_errf(errbuf, "redis connect %s:%d: %s", s->host, s->port,
			c->errstr);
		redisFree(c);
		return rc;
	}
	rc = redis_session(c, s, errbuf);
	if (rc < 0) {
		redisFree(c);
		return rc;
	}
	*out = c;
	return 0;
}

static int
redis_conn_get(struct redis_thread **tp, char *errbuf)
{
	struct redis_thread *t = redis_thread_get();
	struct redis_settings s = { 0 };
	unsigned gen;
	int rc;

	*tp = t;
	rc = redis_current_generation(&gen, errbuf);
	if (rc < 0) {
		redis_thread_close(t);
		return rc;
	}
	if (t->c && (t->generation != gen || !redis_alive(t->c)))
		redis_thread_close(t);
	if (t->c)
		return 0;
	rc = redis_settings_get(&s, errbuf);
	if (rc < 0)
		return rc;
	rc = redis_connect(&s, &t->c, errbuf);
	t->generation = s.generation;
	t->command_timeout_ms = s.command_timeout_ms;
	redis_settings_release(&s);
	return rc;
}

/* No reply: the context is unusable, so drop it. REDIS_RETRY when the
   command never fully left (the server cannot have run it). */
static int
redis_io_failure(struct redis_thread *t, int err_no, char *errbuf)
{
	redisContext *c = t->c;
	int rc = CM_EIO;

	if (c->err == REDIS_ERR_IO &&
	    (err_no == EAGAIN || err_no == EWOULDBLOCK)) {
		cm_errf(errbuf, "redis: command timed out");
		rc = CM_ETIMEDOUT;
	} else {
		cm_errf(errbuf, "redis: %s", c->errstr);
		if ((c->err == REDIS_ERR_IO || c->err == REDIS_ERR_EOF) &&
		    c->obuf && sdslen(c->obuf) > 0)
			rc = REDIS_RETRY;
	}
	redis_thread_close(t);
	return rc;
}

static int
redis_finish(struct redis_thread *t, redisReply *r, int err_no,
	     bool restore_timeout, redisReply **out, char *errbuf)
{
	struct timeval tv = redis_tv(t->command_timeout_ms);

	if (!r)
		return redis_io_failure(t, err_no, errbuf);
	if (restore_timeout && redisSetTimeout(t->c, tv) != REDIS_OK)
		redis_thread_close(t); /* the next call reconnects */
	if (r->type == REDIS_REPLY_ERROR) {
		cm_errf(errbuf, "%.*s",
			(int)(r->len < CM_ERRBUF_LEN ? r->len : CM_ERRBUF_LEN),
			r->str);
		freeReplyObject(r);
		return CM_EIO;
	}
	*out = r;
	return 0;
}

/* One command; timeout_ms > 0 replaces the command timeout for it. */
static int
redis_exec(int argc, const char **argv, const size_t *lens, int timeout_ms,
	   redisReply **out, char *errbuf)
{
	struct redis_thread *t;
	redisReply *r;
	int rc = CM_EIO, attempt, err_no;
	bool longer;

	*out = NULL;
	for (attempt = 0; attempt < 2; attempt++) {
		rc = redis_conn_get(&t, errbuf);
		if (rc < 0)
			return rc;
		longer = timeout_ms > t->command_timeout_ms;
		if (longer &&
		    redisSetTimeout(t->c, redis_tv(timeout_ms)) != REDIS_OK) {
			cm_errf(errbuf, "redis: cannot set the timeout");
			redis_thread_close(t);
			return CM_EIO;
		}
		r = redisCommandArgv(t->c, argc, argv, lens);
		err_no = errno;
		rc = redis_finish(t, r, err_no, longer, out, errbuf);
		if (rc != REDIS_RETRY)
			return rc;
	}
	return CM_EIO;
}

static int
redis_config_check(const struct cm_redis_config *cfg, char *errbuf)
{
	if (!cfg || !cfg->host || !*cfg->host) {
		cm_errf(errbuf, "redis: no host");
		return CM_EINVAL;
	}
	if ((cfg->host[0] != '/' && (cfg->port < 1 || cfg->port > 65535)) ||
	    cfg->db < 0 || cfg->connect_timeout_ms < 0 ||
	    cfg->command_timeout_ms < 0) {
		cm_errf(errbuf, "redis: bad port, db or timeout");
		return CM_EINVAL;
	}
	return 0;
}

int
cm_redis_init(const struct cm_redis_config *cfg, char errbuf[CM_ERRBUF_LEN])
{
	int rc;

	rc = redis_config_check(cfg, errbuf);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&redis_lock);
	redis_settings_release(&redis_cfg);
	redis_cfg.host = cm_xstrdup(cfg->host);
	redis_cfg.port = cfg->port;
	redis_cfg.password = cm_xstrdup(cfg->password);
	redis_cfg.db = cfg->db;
	redis_cfg.connect_timeout_ms = cfg->connect_timeout_ms
					       ? cfg->connect_timeout_ms
					       : REDIS_DEFAULT_CONNECT_MS;
	redis_cfg.command_timeout_ms = cfg->command_timeout_ms
					       ? cfg->command_timeout_ms
					       : REDIS_DEFAULT_COMMAND_MS;
	redis_generation++;
	pthread_mutex_unlock(&redis_lock);
	return 0;
}

void
cm_redis_shutdown(void)
{
	struct redis_thread *t;

	pthread_mutex_lock(&redis_lock);
	redis_settings_release(&redis_cfg);
	redis_generation++;
	pthread_mutex_unlock(&redis_lock);
	pthread_once(&redis_key_once, redis_key_create);
	t = pthread_getspecific(redis_key);
	if (t) {
		pthread_setspecific(redis_key, NULL);
		redis_thread_free(t);
	}
}

redisContext *
cm_redis_conn(char errbuf[CM_ERRBUF_LEN])
{
	struct redis_thread *t;

	if (redis_conn_get(&t, errbuf) < 0)
		return NULL;
	return t->c;
}

redisReply *
cm_redis_cmd(int argc, const char **argv, const size_t *argvlen,
	     char errbuf[CM_ERRBUF_LEN])
{
	redisReply *r = NULL;

	if (argc < 1 || !argv) {
		cm_errf(errbuf, "redis: empty command");
		return NULL;
	}
	redis_exec(argc, argv, argvlen, 0, &r, errbuf);
	return r;
}

void
cm_redis_script_sha(const char *lua, char out[41])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	out[0] = '\0';
	if (EVP_Digest(lua, strlen(lua), md, &n, EVP_sha1(), NULL) && n == 20)
		cm_hex_encode(md, n, out);
}

/* ---- grouped commands (cm_redis_cmd_grouped) ---- */

/* One caller's command, on its stack while it waits. */
struct grouped {
	int argc;
	const char **argv;
	const size_t *lens;
	redisReply *reply;
	bool done;
	pthread_cond_t cv;
	struct grouped *next;
	char err[CM_ERRBUF_LEN];
};

static pthread_mutex_t group_mu = PTHREAD_MUTEX_INITIALIZER;
static struct grouped *group_head, **group_tail = &group_head;
static bool group_leading;

/* Send the batch as one pipeline and read each reply (the leader). */
static void
group_send(struct grouped *batch)
{
	struct redis_thread *t;
	struct grouped *g;
	char err[CM_ERRBUF_LEN] = "";
	redisReply *r;
	bool failed;

	failed = redis_conn_get(&t, err) < 0;
	for (g = batch; g && !failed; g = g->next)
		failed = redisAppendCommandArgv(t->c, g->argc, g->argv,
						g->lens) != REDIS_OK;
	if (failed && !err[0])
		cm_errf(err, "redis: %s",
			t->c ? t->c->errstr : "no connection");
	for (g = batch; g; g = g->next) {
		r = NULL;
		if (!failed && redisGetReply(t->c, (void **)&r) != REDIS_OK) {
			(void)redis_io_failure(t, errno, err);
			failed = true;
		}
		if (failed) {
			cm_strlcpy(g->err, err, sizeof(g->err));
		} else if (r->type == REDIS_REPLY_ERROR) {
			cm_errf(g->err, "%.*s",
				(int)(r->len < CM_ERRBUF_LEN ? r->len
							     : CM_ERRBUF_LEN),
				r->str);
			freeReplyObject(r);
		} else {
			g->reply = r;
		}
	}
	if (failed && t->c)
		redis_thread_close(t); /* replies may still be on their way */
}

redisReply *
cm_redis_cmd_grouped(int argc, const char **argv, const size_t *argvlen,
		     char errbuf[CM_ERRBUF_LEN])
{
	struct grouped me = { 0 }, *batch, *g, *next;

	if (argc < 1 || !argv) {
		cm_errf(errbuf, "redis: empty command");
		return NULL;
	}
	me.argc = argc;
	me.argv = argv;
	me.lens = argvlen;
	pthread_cond_init(&me.cv, NULL);
	pthread_mutex_lock(&group_mu);
	*group_tail = &me;
	group_tail = &me.next;
	while (!me.done) {
		if (group_leading) {
			pthread_cond_wait(&me.cv, &group_mu);
			continue;
		}
		group_leading = true;
		batch = group_head;
		group_head = NULL;
		group_tail = &group_head;
		pthread_mutex_unlock(&group_mu);
		group_send(batch);
		pthread_mutex_lock(&group_mu);
		for (g = batch; g; g = next) {
			next = g->next; /* g may be gone once signalled */
			g->done = true;
			if (g != &me)
				pthread_cond_signal(&g->cv);
		}
		group_leading = false;
		if (group_head) /* queued meanwhile: the first leads next */
			pthread_cond_signal(&group_head->cv);
	}
	pthread_mutex_unlock(&group_mu);
	pthread_cond_destroy(&me.cv);
	if (!me.reply)
		cm_strlcpy(errbuf, me.err, CM_ERRBUF_LEN);
	return me.reply;
}

redisReply *
cm_redis_cmdf(char errbuf[CM_ERRBUF_LEN], const char *fmt, ...)
{
	struct redis_thread *t;
	redisReply *r, *out = NULL;
	int rc = CM_EIO, attempt, err_no;
	va_list ap;

	for (attempt = 0; attempt < 2; attempt++) {
		rc = redis_conn_get(&t, errbuf);
		if (rc < 0)
			break;
		va_start(ap, fmt);
		r = redisvCommand(t->c, fmt, ap);
		err_no = errno;
		va_end(ap);
		rc = redis_finish(t, r, err_no, false, &out, errbuf);
		if (rc != REDIS_RETRY)
			break;
	}
	return out;
}

int
cm_redis_ping(char errbuf[CM_ERRBUF_LEN])
{
	const char *argv[] = { "PING" };
	redisReply *r;
	int rc;

	rc = redis_exec(1, argv, NULL, 0, &r, errbuf);
	if (rc == 0 &&
	    (r->type != REDIS_REPLY_STATUS || strcmp(r->str, "PONG") != 0)) {
		cm_errf(errbuf, "redis ping: unexpected reply");
		rc = CM_EIO;
	}
	freeReplyObject(r);
	return rc;
}

static int
redis_xadd_argv(const char **argv, const char *stream, const char *maxlen,
		int nfields, const char *const *fields,
		const char *const *values)
{
	int argc = 0, i;

	argv[argc++] = "XADD";
	argv[argc++] = stream;
	if (maxlen) {
		argv[argc++] = "MAXLEN";
		argv[argc++] = "~";
		argv[argc++] = maxlen;
	}
	argv[argc++] = "*";
	for (i = 0; i < nfields; i++) {
		if (!fields[i] || !values[i])
			return CM_EINVAL;
		argv[argc++] = fields[i];
		argv[argc++] = values[i];
	}
	return argc;
}

int
cm_redis_xadd(const char *stream, size_t maxlen, int nfields,
	      const char *const *fields, const char *const *values,
	      char id_out[64], char errbuf[CM_ERRBUF_LEN])
{
	const char **argv = NULL;
	redisReply *r = NULL;
	char maxs[24];
	int argc, rc = CM_EINVAL;

	if (!stream || nfields < 1 || nfields > REDIS_XADD_MAX_FIELDS ||
	    !fields || !values)
		goto bad;
	snprintf(maxs, sizeof(maxs), "%zu", maxlen);
	argv = cm_xcalloc(6 + 2 * (size_t)nfields, sizeof(*argv));
	argc = redis_xadd_argv(argv, stream, maxlen ? maxs : NULL, nfields,
			       fields, values);
	if (argc < 0)
		goto bad;
	rc = redis_exec(argc, argv, NULL, 0, &r, errbuf);
	if (rc == 0 && (r->type != REDIS_REPLY_STRING || r->len >= 64)) {
		cm_errf(errbuf, "redis xadd: unexpected reply");
		rc = CM_EPROTO;
	} else if (rc == 0 && id_out) {
		memcpy(id_out, r->str, r->len + 1);
	}
	goto out;
bad:
	cm_errf(errbuf, "redis xadd: bad arguments");
out:
	freeReplyObject(r);
	free(argv);
	return rc;
}

int
cm_redis_xgroup_create(const char *stream, const char *group,
		       const char *start_id, char errbuf[CM_ERRBUF_LEN])
{
	const char *argv[] = { "XGROUP", "CREATE", stream,
			       group,	 start_id, "MKSTREAM" };
	char err[CM_ERRBUF_LEN] = "";
	redisReply *r = NULL;
	int rc;

	if (!stream || !group) {
		cm_errf(errbuf, "redis xgroup: bad arguments");
		return CM_EINVAL;
	}
	if (!start_id)
		argv[4] = "$";
	rc = redis_exec(6, argv, NULL, 0, &r, err);
	freeReplyObject(r);
	if (rc == CM_EIO && strncmp(err, "BUSYGROUP", 9) == 0)
		return 0; /* the group exists: what we wanted */
	if (rc < 0 && errbuf)
		cm_strlcpy(errbuf, err, CM_ERRBUF_LEN);
	return rc;
}

redisReply *
cm_redis_xreadgroup(const char *stream, const char *group, const char *consumer,
		    int count, int block_ms, char errbuf[CM_ERRBUF_LEN])
{
	const char *argv[11];
	char counts[16], blocks[16];
	redisReply *r = NULL;
	int argc = 0;

	if (!stream || !group || !consumer || block_ms > REDIS_MAX_BLOCK_MS) {
		cm_errf(errbuf, "redis xreadgroup: bad arguments");
		return NULL;
	}
	argv[argc++] = "XREADGROUP";
	argv[argc++] = "GROUP";
	argv[argc++] = group;
	argv[argc++] = consumer;
	if (count > 0) {
		snprintf(counts, sizeof(counts), "%d", count);
		argv[argc++] = "COUNT";
		argv[argc++] = counts;
	}
	if (block_ms > 0) {
		snprintf(blocks, sizeof(blocks), "%d", block_ms);
		argv[argc++] = "BLOCK";
		argv[argc++] = blocks;
	}
	argv[argc++] = "STREAMS";
	argv[argc++] = stream;
	argv[argc++] = ">";
	redis_exec(argc, argv, NULL, block_ms > 0 ? block_ms + 1000 : 0, &r,
		   errbuf);
	return r;
}

int
cm_redis_xack(const char *stream, const char *group, const char *id,
	      char errbuf[CM_ERRBUF_LEN])
{
	const char *argv[] = { "XACK", stream, group, id };
	redisReply *r = NULL;
	int rc;

	if (!stream || !group || !id) {
		cm_errf(errbuf, "redis xack: bad arguments");
		return CM_EINVAL;
	}
	rc = redis_exec(4, argv, NULL, 0, &r, errbuf);
	if (rc == 0 && r->type != REDIS_REPLY_INTEGER) {
		cm_errf(errbuf, "redis xack: unexpected reply");
		rc = CM_EPROTO;
	}
	freeReplyObject(r);
	return rc;
}

redisReply *
cm_redis_xautoclaim(const char *stream, const char *group, const char *consumer,
		    int min_idle_ms, const char *start, int count,
		    char errbuf[CM_ERRBUF_LEN])
{
	const char *argv[8];
	char idles[16], counts[16];
	redisReply *r = NULL;
	int argc = 0;

	if (!stream || !group || !consumer || min_idle_ms < 0) {
		cm_errf(errbuf, "redis xautoclaim: bad arguments");
		return NULL;
	}
	snprintf(idles, sizeof(idles), "%d", min_idle_ms);
	argv[argc++] = "XAUTOCLAIM";
	argv[argc++] = stream;
	argv[argc++] = group;
	argv[argc++] = consumer;
	argv[argc++] = idles;
	argv[argc++] = start ? start : "0-0";
	if (count > 0) {
		snprintf(counts, sizeof(counts), "%d", count);
		argv[argc++] = "COUNT";
		argv[argc++] = counts;
	}
	redis_exec(argc, argv, NULL, 0, &r, errbuf);
	return r;
}

/* ---- async commands on an HTTP worker's event loop ---------------------- */

struct async_thread {
	redisAsyncContext *ac;
	unsigned generation;
	bool at_exit; /* the teardown hook is registered */
};

static __thread struct async_thread athr;

struct async_call {
	cm_redis_async_fn fn;
	void *arg;
	int64_t deadline_ms;
	redisAsyncContext *ac;
	struct async_call *prev, *next; /* the connection's calls in flight */
	bool done;			/* fn was called */
};

static void
async_thread_free(void *arg)
{
	(void)arg;
	if (athr.ac)
		redisAsyncFree(athr.ac); /* pending callbacks get NULL */
	athr.ac = NULL;
	athr.at_exit = false;
}

static void
async_on_disconnect(const redisAsyncContext *ac, int status)
{
	(void)status;
	if (athr.ac == ac)
		athr.ac = NULL; /* hiredis frees it after this callback */
}

static void
async_on_connect(const redisAsyncContext *ac, int status)
{
	if (status != REDIS_OK)
		cm_log_warn("redis async connect: %s", ac->errstr);
}

/*
 * The async connection on the worker's libevent loop. hiredis' own adapter
 * re-adds a one-shot read event after every read (an epoll_ctl each time)
 * and waits for a write event before sending anything (an epoll_ctl to
 * ask, a loop round to hear it, another epoll_ctl to stop). Here the read
 * event is persistent, and commands queued during a round of callbacks are
 * written when the round ends (an event activated by hand), all at once;
 * only what the socket does not take, and the connect, wait for a write
 * event.
 */
struct aev {
	redisAsyncContext *ac;
	struct event *rev, *wev, *flush;
	bool reading, flush_queued;
	/* calls in flight, oldest first, and one timer for all of them
	   (replies come in order; a timer per call cost an allocation and
	   two heap operations each) */
	struct async_call *head, *tail;
	struct event *timer;
	int64_t armed_ms; /* when the timer fires; 0: not armed */
};

static void aev_timeout_cb(evutil_socket_t fd, short what, void *arg);

/* The context whose write handler is running on this thread: a write it
   leaves unfinished must wait for writability, not for the next round. */
static __thread const redisAsyncContext *aev_writing;

static void
aev_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct aev *e = arg;

	(void)fd;
	(void)what;
	redisAsyncHandleRead(e->ac); /* may free e */
}

static void
aev_write(redisAsyncContext *ac)
{
	aev_writing = ac;
	redisAsyncHandleWrite(ac); /* may free ac and its aev */
	aev_writing = NULL;
}

static void
aev_write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	aev_write(((struct aev *)arg)->ac);
}

static void
aev_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct aev *e = arg;

	(void)fd;
	(void)what;
	e->flush_queued = false;
	aev_write(e->ac);
}

static void
aev_add_read(void *data)
{
	struct aev *e = data;

	if (!e->reading && event_add(e->rev, NULL) == 0)
		e->reading = true;
}

static void
aev_del_read(void *data)
{
	struct aev *e = data;

	if (e->reading)
		event_del(e->rev);
	e->reading = false;
}

static void
aev_add_write(void *data)
{
	struct aev *e = data;

	if (aev_writing == e->ac || !(e->ac->c.flags & REDIS_CONNECTED)) {
		event_add(e->wev, NULL);
		return;
	}
	if (!e->flush_queued) {
		e->flush_queued = true;
		event_active(e->flush, EV_WRITE, 1);
	}
}

static void
aev_del_write(void *data)
{
	event_del(((struct aev *)data)->wev);
}

static void
aev_cleanup(void *data)
{
	struct aev *e = data;

	event_free(e->rev);
	event_free(e->wev);
	event_free(e->flush);
	event_free(e->timer);
	free(e);
}

static int
aev_attach(redisAsyncContext *ac, struct event_base *base)
{
	struct aev *e;

	if (ac->ev.data)
		return REDIS_ERR;
	e = cm_xcalloc(1, sizeof(*e));
	e->ac = ac;
	e->rev =
		event_new(base, ac->c.fd, EV_READ | EV_PERSIST, aev_read_cb, e);
	e->wev = event_new(base, ac->c.fd, EV_WRITE, aev_write_cb, e);
	e->flush = event_new(base, -1, 0, aev_flush_cb, e);
	e->timer = evtimer_new(base, aev_timeout_cb, e);
	if (!e->rev || !e->wev || !e->flush || !e->timer) {
		if (e->rev)
			event_free(e->rev);
		if (e->wev)
			event_free(e->wev);
		if (e->flush)
			event_free(e->flush);
		if (e->timer)
			event_free(e->timer);
		free(e);
		return REDIS_ERR;
	}
	ac->ev.addRead = aev_add_read;
	ac->ev.delRead = aev_del_read;
	ac->ev.addWrite = aev_add_write;
	ac->ev.delWrite = aev_del_write;
	ac->ev.cleanup = aev_cleanup;
	ac->ev.data = e;
	aev_add_read(e);
	event_add(e->wev, NULL); /* the connect completes on writability */
	return REDIS_OK;
}

/* This worker's async connection, made on first use and after a drop. */
static redisAsyncContext *
async_conn(char *errbuf)
{
	struct event_base *base = cm_http_worker_base_();
	struct redis_settings s;
	redisAsyncContext *ac;
	unsigned gen = 0;
	char db[16];

	if (!base) {
		cm_errf(errbuf, "redis async: not on an HTTP worker thread");
		return NULL;
	}
	if (redis_current_generation(&gen, errbuf) < 0)
		return NULL;
	if (athr.ac && athr.generation == gen)
		return athr.ac;
	if (athr.ac)
		redisAsyncDisconnect(athr.ac);
	athr.ac = NULL;
	if (redis_settings_get(&s, errbuf) < 0)
		return NULL;
	ac = s.host[0] == '/' ? redisAsyncConnectUnix(s.host)
			      : redisAsyncConnect(s.host, s.port);
	if (!ac || ac->err) {
		cm_errf(errbuf, "redis async connect: %s",
			ac ? ac->errstr : "out of memory");
		if (ac)
			redisAsyncFree(ac);
		redis_settings_release(&s);
		return NULL;
	}
	if (aev_attach(ac, base) != REDIS_OK) {
		redisAsyncFree(ac);
		redis_settings_release(&s);
		cm_errf(errbuf, "redis async: cannot attach to the loop");
		return NULL;
	}
	redisAsyncSetConnectCallback(ac, async_on_connect);
	redisAsyncSetDisconnectCallback(ac, async_on_disconnect);
	if (s.password && s.password[0]) {
		const char *argv[2] = { "AUTH", s.password };

		redisAsyncCommandArgv(ac, NULL, NULL, 2, argv, NULL);
	}
	if (s.db) {
		const char *argv[2] = { "SELECT", db };

		snprintf(db, sizeof(db), "%d", s.db);
		redisAsyncCommandArgv(ac, NULL, NULL, 2, argv, NULL);
	}
	redis_settings_release(&s);
	if (!athr.at_exit)
		athr.at_exit =
			cm_http_worker_at_exit_(async_thread_free, NULL) == 0;
	athr.ac = ac;
	athr.generation = gen;
	return ac;
}

static void
calls_unlink(struct aev *e, struct async_call *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else if (e->head == c)
		e->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else if (e->tail == c)
		e->tail = c->prev;
	c->prev = c->next = NULL;
}

/* Have the connection's timer fire by at_ms. */
static void
calls_arm(struct aev *e, int64_t at_ms)
{
	int64_t wait = at_ms - cm_now_ms();
	struct timeval tv;

	if (e->armed_ms && e->armed_ms <= at_ms)
		return;
	if (wait < 0)
		wait = 0;
	tv.tv_sec = (time_t)(wait / 1000);
	tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
	if (evtimer_add(e->timer, &tv) == 0)
		e->armed_ms = at_ms;
}

static void
async_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct async_call *c = privdata;
	redisReply *r = reply;

	calls_unlink(ac->ev.data, c);
	if (!c->done)
		c->fn(r, r ? NULL : "redis connection lost", c->arg);
	free(c);
}

/* A call not answered in time: its caller hears so now; the connection,
   which may be stuck, is freed at once if it is the thread's current one
   (its pending callbacks run with NULL and skip callers already
   answered). Otherwise the timer is set for the next deadline. */
static void
aev_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct aev *e = arg;
	redisAsyncContext *ac = e->ac;
	struct async_call *c;
	int64_t now = cm_now_ms(), next = 0;
	bool late = false;

	(void)fd;
	(void)what;
	e->armed_ms = 0;
	for (c = e->head; c; c = c->next) {
		if (c->done)
			continue;
		if (c->deadline_ms <= now) {
			c->done = true;
			c->fn(NULL, "redis command timed out", c->arg);
			late = true;
		} else if (!next || c->deadline_ms < next) {
			next = c->deadline_ms;
		}
	}
	if (late && athr.ac == ac) {
		athr.ac = NULL;
		redisAsyncFree(ac); /* frees the calls (async_reply) and e */
		return;
	}
	if (next)
		calls_arm(e, next);
}

/* "<n>\r\n" at p, after the type byte c; the end. */
static char *
resp_len(char *p, char c, size_t n)
{
	*p++ = c;
	p += cm_u64_text(n, 10, p);
	*p++ = '\r';
	*p++ = '\n';
	return p;
}

#define RESP_MAX_ARGS 32

/* argv as one RESP command, as redisFormatCommandArgv would make it but
   with plain copies instead of its printf-style appends (this is on every
   async call); malloc'd, its length in *out_len; NULL past RESP_MAX_ARGS. */
static char *
resp_format(int argc, const char **argv, size_t *out_len)
{
	size_t lens[RESP_MAX_ARGS], total = 16;
	char *cmd, *p;
	int i;

	if (argc > RESP_MAX_ARGS)
		return NULL;
	for (i = 0; i < argc; i++) {
		lens[i] = strlen(argv[i]);
		total += lens[i] + 26; /* "$" digits "\r\n" ... "\r\n" */
	}
	p = cmd = cm_xmalloc(total);
	p = resp_len(p, '*', (size_t)argc);
	for (i = 0; i < argc; i++) {
		p = resp_len(p, '$', lens[i]);
		memcpy(p, argv[i], lens[i]);
		p += lens[i];
		*p++ = '\r';
		*p++ = '\n';
	}
	*out_len = (size_t)(p - cmd);
	return cmd;
}

/* Queue argv on ac for async_reply with c. */
static int
async_send(redisAsyncContext *ac, struct async_call *c, int argc,
	   const char **argv)
{
	size_t len = 0;
	char *cmd = resp_format(argc, argv, &len);
	int rc;

	if (!cmd)
		return redisAsyncCommandArgv(ac, async_reply, c, argc, argv,
					     NULL);
	rc = redisAsyncFormattedCommand(ac, async_reply, c, cmd, len);
	free(cmd);
	return rc;
}

int
cm_redis_async_argv(int argc, const char **argv, int timeout_ms,
		    cm_redis_async_fn fn, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	redisAsyncContext *ac;
	struct async_call *c;
	struct aev *e;

	if (argc < 1 || !argv || !fn) {
		cm_errf(errbuf, "redis async: bad arguments");
		return CM_EINVAL;
	}
	if (!(ac = async_conn(errbuf)))
		return CM_EIO;
	e = ac->ev.data;
	c = cm_xcalloc(1, sizeof(*c));
	c->fn = fn;
	c->arg = arg;
	c->ac = ac;
	c->deadline_ms = cm_now_ms() + (timeout_ms > 0 ? timeout_ms : 5000);
	c->prev = e->tail;
	if (e->tail)
		e->tail->next = c;
	else
		e->head = c;
	e->tail = c;
	if (async_send(ac, c, argc, argv) != REDIS_OK) {
		calls_unlink(e, c);
		free(c);
		cm_errf(errbuf, "redis async: %s",
			ac->err ? ac->errstr : "command refused");
		return CM_EIO;
	}
	calls_arm(e, c->deadline_ms);
	return 0;
}

/* One async script call, its arguments kept for the EVAL fallback. */
struct async_eval {
	cm_redis_async_fn fn;
	void *arg;
	const char *lua, *sha;
	int argc;    /* numkeys, keys and args */
	char **argv; /* copies */
	bool evaled; /* sent as EVAL */
};

static int async_eval_send(struct async_eval *e, char errbuf[CM_ERRBUF_LEN]);

static void
async_eval_free(struct async_eval *e)
{
	int i;

	for (i = 0; i < e->argc; i++)
		free(e->argv[i]);
	free(e->argv);
	free(e);
}

static void
async_eval_done(redisReply *r, const char *err, void *arg)
{
	struct async_eval *e = arg;
	char errbuf[CM_ERRBUF_LEN] = "";

	if (r && r->type == REDIS_REPLY_ERROR && !e->evaled &&
	    !strncmp(r->str, "NOSCRIPT", 8)) {
		e->evaled = true;
		if (async_eval_send(e, errbuf) == 0)
			return; /* answered by the EVAL */
		r = NULL;
		err = errbuf;
	}
	e->fn(r, err, e->arg);
	async_eval_free(e);
}

static int
async_eval_send(struct async_eval *e, char errbuf[CM_ERRBUF_LEN])
{
	const char **argv = cm_xcalloc((size_t)e->argc + 2, sizeof(*argv));
	int i, rc;

	if (e->evaled || !e->sha[0]) {
		e->evaled = true;
		argv[0] = "EVAL";
		argv[1] = e->lua;
	} else {
		argv[0] = "EVALSHA";
		argv[1] = e->sha;
	}
	for (i = 0; i < e->argc; i++)
		argv[2 + i] = e->argv[i];
	rc = cm_redis_async_argv(e->argc + 2, argv, 0, async_eval_done, e,
				 errbuf);
	free(argv);
	return rc;
}

int
cm_redis_async_eval(const char *lua, const char *sha, int argc,
		    const char **argv, cm_redis_async_fn fn, void *arg,
		    char errbuf[CM_ERRBUF_LEN])
{
	struct async_eval *e;
	int i, rc;

	if (!lua || !sha || argc < 1 || !argv || !fn) {
		cm_errf(errbuf, "redis async eval: bad arguments");
		return CM_EINVAL;
	}
	e = cm_xcalloc(1, sizeof(*e));
	e->fn = fn;
	e->arg = arg;
	e->lua = lua;
	e->sha = sha;
	e->argc = argc;
	e->argv = cm_xcalloc((size_t)argc, sizeof(*e->argv));
	for (i = 0; i < argc; i++)
		e->argv[i] = cm_xstrdup(argv[i]);
	if ((rc = async_eval_send(e, errbuf)) < 0)
		async_eval_free(e);
	return rc;
}
