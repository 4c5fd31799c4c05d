/* err.c - descriptions of CM_E* codes. */
#include "common/err.h"

#include <stdio.h>
#include <string.h>

#include "common/banned.h"

const char *
cm_strerror(int code)
{
	switch (code) {
	case CM_OK:
		return "ok";
	case CM_EINVAL:
		return "invalid input";
	case CM_ENOENT:
		return "not found";
	case CM_EEXIST:
		return "already exists";
	case CM_E2BIG:
		return "too large";
	case CM_ENOMEM:
		return "out of memory";
	case CM_EIO:
		return "dependency failed";
	case CM_ETIMEDOUT:
		return "timed out";
	case CM_EACCES:
		return "access denied";
	case CM_EPERM:
		return "not permitted";
	case CM_EAGAIN:
		return "try again later";
	case CM_ECONNREFUSED:
		return "connection refused";
	case CM_EPIPE:
		return "peer went away";
	case CM_ENOSPC:
		return "table full";
	case CM_ESTALE:
		return "stale version";
	case CM_EPROTO:
		return "protocol error";
	case CM_ENOTSUP:
		return "not supported";
	default:
		return code < 0 ? strerror(-code) : "unknown error";
	}
}

void
cm_verrf(char *errbuf, const char *fmt, va_list ap)
{
	if (errbuf)
		vsnprintf(errbuf, CM_ERRBUF_LEN, fmt, ap);
}

void
cm_errf(char *errbuf, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cm_verrf(errbuf, fmt, ap);
	va_end(ap);
}
