/* render.c - platform secrets into a 0600 environment file. */
#include "render.h"

#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"

#include "backend.h"

#include "common/banned.h"

#define RENDER_MAX (4 << 20)

int
vc_render_env_name(const char *name, const char *field, char *out, size_t n)
{
	size_t i = 0;
	const char *s;
	int part;

	for (part = 0; part < 2; part++) {
		for (s = part ? field : name; *s; s++) {
			if (i + 1 >= n)
				return CM_E2BIG;
			out[i++] = isalnum((unsigned char)*s)
					   ? (char)toupper((unsigned char)*s)
					   : '_';
		}
		if (!part && i + 1 < n)
			out[i++] = '_';
	}
	out[i] = '\0';
	return 0;
}

/* Append one secret's fields to b. */
static void
render_one(const char *name, const struct vc_secret *s, struct cm_buf *b)
{
	char errbuf[CM_ERRBUF_LEN], key[VC_NAME_MAX + 80];
	cJSON *value = cm_json_parse(s->json, s->len, errbuf), *it;

	for (it = value ? value->child : NULL; it; it = it->next) {
		if (!cJSON_IsString(it) ||
		    vc_render_env_name(name, it->string, key, sizeof(key)) ||
		    strpbrk(it->valuestring, "\r\n")) {
			cm_log_warn("template: %s field %s left out", name,
				    it->string);
			continue;
		}
		cm_buf_printf(b, "%s=%s\n", key, it->valuestring);
		cm_memzero(it->valuestring, strlen(it->valuestring));
	}
	cJSON_Delete(value);
}

/* Read every name of service into b (one page of up to 200 at a time). */
static int
render_all(struct vc *vc, const char *service, struct cm_buf *b,
	   char errbuf[CM_ERRBUF_LEN])
{
	char cursor[VC_NAME_MAX + 1] = "", next[VC_NAME_MAX + 1];
	struct vc_secret s;
	struct vc_path p = { .scope = VC_SCOPE_PLATFORM };
	const cJSON *it;
	cJSON *items = NULL;
	int rc;

	cm_strlcpy(p.owner, service, sizeof(p.owner));
	do {
		rc = vc_backend_list(vc, VC_SCOPE_PLATFORM, service, "", cursor,
				     200, &items, next, errbuf);
		if (rc < 0)
			break;
		cJSON_ArrayForEach(it, items)
		{
			const char *name = cJSON_GetStringValue(
				cJSON_GetObjectItem(it, "name"));

			if (!name || !vc_name_valid(name))
				continue; /* a Vault folder */
			cm_strlcpy(p.name, name, sizeof(p.name));
			if (vc_backend_read(vc, &p, 0, &s, errbuf) == 0)
				render_one(name, &s, b);
			vc_secret_release(&s);
		}
		cJSON_Delete(items);
		items = NULL;
		cm_strlcpy(cursor, next, sizeof(cursor));
	} while (rc == 0 && cursor[0]);
	return rc;
}

static int
write_file(const char *path, const struct cm_buf *b, char errbuf[CM_ERRBUF_LEN])
{
	char tmp[4200];
	int fd, rc = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		  0600);
	if (fd < 0 || fchmod(fd, 0600) < 0 ||
	    write(fd, b->data ? b->data : "", b->len) != (ssize_t)b->len ||
	    fsync(fd) < 0)
		rc = CM_EIO;
	if (fd >= 0 && close(fd) < 0)
		rc = CM_EIO;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = CM_EIO;
	if (rc < 0) {
		unlink(tmp);
		snprintf(errbuf, CM_ERRBUF_LEN, "cannot write %s", path);
	}
	return rc;
}

int
vc_render_env(struct vc *vc, const char *service, const char *path,
	      char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf b = CM_BUF_INIT(RENDER_MAX);
	int rc;

	rc = render_all(vc, service, &b, errbuf);
	if (rc == 0 && cm_buf_error(&b))
		rc = CM_E2BIG;
	if (rc == 0)
		rc = write_file(path, &b, errbuf);
	if (b.data)
		cm_memzero(b.data, b.len);
	cm_buf_release(&b);
	return rc;
}
