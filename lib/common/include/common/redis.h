/*
 * redis.h - Redis through hiredis 0.14: per-thread connections with
 * reconnect, and helpers for the stream commands the event bus uses.
 *
 * cm_redis_init() stores the settings (copied, under a mutex; it may be
 * called again to re-point every thread); each thread gets its own
 * redisContext lazily, with connect and command timeouts, AUTH and SELECT
 * applied on (re)connect, and closed when the thread exits (a pthread key
 * destructor). Before each command the idle connection is checked for an
 * EOF the server left (restart, CLIENT KILL, idle timeout) and replaced, so
 * the command goes out on a live connection; a command whose write fails
 * before any of it was sent is retried once on a new connection. A command
 * that fails later (read error, timeout) drops the connection and is not
 * retried (it may have run); the next call reconnects. Every command is
 * sent with redisCommandArgv (binary safe, nothing is formatted) except
 * cm_redis_cmdf, whose fmt must be a literal.
 *
 * Replies are hiredis redisReply objects the caller frees with
 * freeReplyObject(). Functions returning int give 0, CM_EINVAL for bad
 * arguments, CM_ETIMEDOUT when the command timeout expired, or CM_EIO for
 * any other failure, an error reply included (errbuf has Redis's text, e.g.
 * "WRONGTYPE ..."). The password never appears in errbuf.
 *
 * hiredis writes with write(2): the process must ignore SIGPIPE (the
 * service runtime does), or a write to a reset connection kills it.
 */
#ifndef COMMON_REDIS_H
#define COMMON_REDIS_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis.h>

#include "common/err.h"

struct cm_redis_config {
	const char *host;	/* name or address; "/path": unix socket */
	int port;		/* 1..65535 (ignored for a unix socket) */
	const char *password;	/* NULL or "": no AUTH */
	int db;			/* 0..: SELECTed when not 0 */
	int connect_timeout_ms; /* 0: 2000 */
	int command_timeout_ms; /* 0: 5000 */
};

/* cm_redis_init - remember the settings (copied); no connection yet. */
int cm_redis_init(const struct cm_redis_config *cfg,
		  char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_shutdown - close this thread's connection, forget settings. */
void cm_redis_shutdown(void);
/* cm_redis_conn - this thread's connection (made or replaced as needed),
   or NULL with errbuf; valid until this thread's next cm_redis_ call. */
redisContext *cm_redis_conn(char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_cmd - run a command from argv (argvlen NULL: strlen each); NULL
   with errbuf on I/O failure or a Redis error reply (its text in errbuf). */
redisReply *cm_redis_cmd(int argc, const char **argv, const size_t *argvlen,
			 char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_cmd_grouped - cm_redis_cmd for commands that many threads
   issue at once (the sync event publish): a caller that finds no other
   sending becomes the leader, writes every command queued by then as one
   pipeline on its own connection and hands each caller its reply; the
   others wait for theirs (a queued caller leads the next round). Fewer
   writes, reads and wake-ups than a round trip per thread; a command is
   never retried (a failure fails the round's commands that had no reply
   yet). */
redisReply *cm_redis_cmd_grouped(int argc, const char **argv,
				 const size_t *argvlen,
				 char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_script_sha - the SHA-1 of a Lua script in hex (what EVALSHA
   names), or "" when it cannot be computed (then EVAL every time). */
void cm_redis_script_sha(const char *lua, char out[41]);
/* cm_redis_cmdf - printf-style (hiredis %s/%b) command; fmt a literal. */
redisReply *cm_redis_cmdf(char errbuf[CM_ERRBUF_LEN], const char *fmt, ...);
/* cm_redis_async_fn - the answer of an async command: reply (owned by
   hiredis, valid during the call only; may be an error reply) or NULL
   with err ("redis command timed out", "redis connection lost"). */
typedef void (*cm_redis_async_fn)(redisReply *reply, const char *err,
				  void *arg);
/* cm_redis_async_argv - send argv on the calling HTTP worker thread's own
   non-blocking connection (made on first use, on that worker's event loop,
   with AUTH and SELECT; dropped and made again after a timeout or an
   error) and return at once; fn runs exactly once on this thread, within
   timeout_ms (0: 5000). 0, or CM_EINVAL / CM_EIO (not on a worker thread,
   no connection) and fn is not called. For handlers that defer their
   request (http.h) instead of blocking a worker on Redis. */
int cm_redis_async_argv(int argc, const char **argv, int timeout_ms,
			cm_redis_async_fn fn, void *arg,
			char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_async_eval - as cm_redis_async_argv, for a Lua script:
   EVALSHA sha (EVAL lua when sha is "" or the server answers NOSCRIPT:
   first use, restart, SCRIPT FLUSH) with argv = numkeys, keys..., args...
   (copied). fn sees the script's answer, never the NOSCRIPT one. lua and
   sha must outlive the call (static strings). */
int cm_redis_async_eval(const char *lua, const char *sha, int argc,
			const char **argv, cm_redis_async_fn fn, void *arg,
			char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_ping - PING; 0 or CM_EIO/CM_ETIMEDOUT. */
int cm_redis_ping(char errbuf[CM_ERRBUF_LEN]);

/* cm_redis_xadd - XADD stream [MAXLEN ~ maxlen] * f1 v1 ... (maxlen 0: no
   trimming; 1..256 fields); the new id in id_out[64] (may be NULL). */
int cm_redis_xadd(const char *stream, size_t maxlen, int nfields,
		  const char *const *fields, const char *const *values,
		  char id_out[64], char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_xgroup_create - create group at start_id (NULL: "$") with
   MKSTREAM; an existing group (BUSYGROUP) is success. */
int cm_redis_xgroup_create(const char *stream, const char *group,
			   const char *start_id, char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_xreadgroup - XREADGROUP GROUP g c [COUNT n] [BLOCK ms] STREAMS
   s > (count <= 0: no COUNT; block_ms <= 0: no BLOCK, never "block
   forever"; at most 3600000). The command timeout is raised to
   block_ms + 1000 for this call. The reply is REDIS_REPLY_NIL when
   nothing arrived in time. */
redisReply *cm_redis_xreadgroup(const char *stream, const char *group,
				const char *consumer, int count, int block_ms,
				char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_xack - XACK stream group id; 0 also when id was not pending. */
int cm_redis_xack(const char *stream, const char *group, const char *id,
		  char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_xautoclaim - XAUTOCLAIM stream group consumer min_idle_ms start
   (NULL: "0-0") [COUNT count]: entries idle >= min_idle_ms moved to
   consumer; the reply is [next-start, entries, deleted-ids] (Redis 7). */
redisReply *cm_redis_xautoclaim(const char *stream, const char *group,
				const char *consumer, int min_idle_ms,
				const char *start, int count,
				char errbuf[CM_ERRBUF_LEN]);

#endif
