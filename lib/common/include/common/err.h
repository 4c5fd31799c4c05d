/*
 * err.h - the one list of error codes returned by libcommon and services.
 *
 * Actions return int: 0 on success or a negative CM_E* code. The codes are
 * errno values, negated, so a failing system call maps one to one
 * (return -errno). Predicates return bool; constructors return a pointer or
 * NULL. Wrappers of external libraries put the detail in a caller-supplied
 * char errbuf[CM_ERRBUF_LEN] and return one of these codes.
 *
 * Thread-safe: everything here is constant data.
 */
#ifndef COMMON_ERR_H
#define COMMON_ERR_H

#include <errno.h>
#include <stdarg.h>

#define CM_ERRBUF_LEN 256

#define CM_OK 0
#define CM_EINVAL (-EINVAL)	  /* bad argument or input */
#define CM_ENOENT (-ENOENT)	  /* no such thing (also: not yours) */
#define CM_EEXIST (-EEXIST)	  /* already exists / conflict */
#define CM_E2BIG (-E2BIG)	  /* input over a hard cap */
#define CM_ENOMEM (-ENOMEM)	  /* allocation refused (rare: we abort) */
#define CM_EIO (-EIO)		  /* a dependency failed (db, redis, http) */
#define CM_ETIMEDOUT (-ETIMEDOUT) /* a dependency did not answer in time */
#define CM_EACCES (-EACCES)	  /* refused: bad credentials or policy */
#define CM_EPERM (-EPERM)	  /* refused: authenticated but not allowed */
#define CM_EAGAIN (-EAGAIN)	  /* try again later (rate limit, busy) */
#define CM_ECONNREFUSED (-ECONNREFUSED) /* peer down */
#define CM_EPIPE (-EPIPE)		/* the peer went away */
#define CM_ENOSPC (-ENOSPC)		/* a fixed-size table is full */
#define CM_ESTALE (-ESTALE)		/* version mismatch (If-Match) */
#define CM_EPROTO (-EPROTO)		/* peer spoke garbage */
#define CM_ENOTSUP (-ENOTSUP)		/* not supported by this build/config */

/* cm_strerror - a short lowercase description of a CM_E* code. */
const char *cm_strerror(int code);
/* cm_errf - format a message into errbuf[CM_ERRBUF_LEN]; errbuf may be
   NULL (the message is dropped). Never pass a secret. */
void cm_errf(char *errbuf, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* cm_verrf - va_list form of cm_errf. */
void cm_verrf(char *errbuf, const char *fmt, va_list ap);

#endif
