/*
 * redis.h - Redis through hiredis 0.14: per-thread connections with
 * reconnect, and helpers for the stream commands the event bus uses.
 *
 * cm_redis_init() stores the settings; each thread gets its own
 * redisContext lazily, with connect and command timeouts, AUTH and SELECT
 * applied on (re)connect. A command that fails with an I/O error drops the
 * connection; the next call reconnects. Replies are hiredis redisReply
 * objects the caller frees with freeReplyObject().
 */
#ifndef COMMON_REDIS_H
#define COMMON_REDIS_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis.h>

#include "common/err.h"

struct cm_redis_config {
	const char *host;
	int port;
	const char *password;	/* NULL: no AUTH */
	int db;
	int connect_timeout_ms;
	int command_timeout_ms;
};

/* cm_redis_init - remember the settings (copied). */
int cm_redis_init(const struct cm_redis_config *cfg,
		  char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_shutdown - close this thread's connection, forget settings. */
void cm_redis_shutdown(void);
/* cm_redis_conn - this thread's connection, or NULL with errbuf. */
redisContext *cm_redis_conn(char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_cmd - run a command from argv; NULL with errbuf on I/O failure
   or a Redis error reply (the error text goes into errbuf). */
redisReply *cm_redis_cmd(int argc, const char **argv, const size_t *argvlen,
			 char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_cmdf - printf-style (hiredis %s/%b) command. */
redisReply *cm_redis_cmdf(char errbuf[CM_ERRBUF_LEN], const char *fmt, ...);
/* cm_redis_ping - PING; 0 or CM_EIO. */
int cm_redis_ping(char errbuf[CM_ERRBUF_LEN]);

/* cm_redis_xadd - XADD stream [MAXLEN ~ maxlen] * f1 v1 ...; id_out[64]. */
int cm_redis_xadd(const char *stream, size_t maxlen, int nfields,
		  const char *const *fields, const char *const *values,
		  char id_out[64], char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_xgroup_create - create group at start_id (MKSTREAM); an existing
   group is success. */
int cm_redis_xgroup_create(const char *stream, const char *group,
			   const char *start_id, char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_xreadgroup - XREADGROUP GROUP g c COUNT n BLOCK ms STREAMS s >. */
redisReply *cm_redis_xreadgroup(const char *stream, const char *group,
				const char *consumer, int count, int block_ms,
				char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_xack - XACK stream group id. */
int cm_redis_xack(const char *stream, const char *group, const char *id,
		  char errbuf[CM_ERRBUF_LEN]);
/* cm_redis_xautoclaim - XAUTOCLAIM entries idle >= min_idle_ms. */
redisReply *cm_redis_xautoclaim(const char *stream, const char *group,
				const char *consumer, int min_idle_ms,
				const char *start, int count,
				char errbuf[CM_ERRBUF_LEN]);

#endif
