/*
 * render.h - write a service's platform secrets into an environment file,
 * like Vault Agent's templates.
 *
 * Every secret platform/<service>/<name> contributes one line per field of
 * its value: NAME_FIELD=value, upper-cased, with every byte outside
 * [A-Z0-9] turned into "_" (platform/crm/db with {"password": "x"} gives
 * DB_PASSWORD=x). Values holding a newline, CR or NUL cannot be written in
 * this format and are left out (the key, never the value, is logged). The
 * file is written to "<path>.tmp" created with mode 0600, fsync'd and
 * renamed over path, so a reader sees the old or the new file, whole.
 * Callers serialise renders of one file.
 */
#ifndef VC_RENDER_H
#define VC_RENDER_H

#include "common/err.h"

#include "vault_client.h"

/* vc_render_env_name - NAME_FIELD as above into out[n]; 0 or CM_E2BIG. */
int vc_render_env_name(const char *name, const char *field, char *out,
		       size_t n);
/* vc_render_env - render service's platform secrets into path. */
int vc_render_env(struct vc *vc, const char *service, const char *path,
		  char errbuf[CM_ERRBUF_LEN]);

#endif
