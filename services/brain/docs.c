/*
 * docs.c - brain's API document: proto/openapi/brain.yaml (written in the
 * JSON subset of YAML) loaded once at start, served as /brain/openapi.json
 * and rendered into a self-contained HTML page for /brain/docs (no
 * scripts, no outside assets: it works offline).
 */
#include "brain.h"

#include "common/buf.h"
#include "common/json.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

#define DOC_MAX (4u << 20)
#define DOCS_CSP "default-src 'none'; style-src 'unsafe-inline'"

static const char *const methods[] = { "get",	 "post", "put", "patch",
				       "delete", "head", NULL };

static void
html_text(struct cm_buf *b, const char *s)
{
	for (; s && *s; s++) {
		if (*s == '<')
			cm_buf_puts(b, "&lt;");
		else if (*s == '>')
			cm_buf_puts(b, "&gt;");
		else if (*s == '&')
			cm_buf_puts(b, "&amp;");
		else if (*s == '"')
			cm_buf_puts(b, "&quot;");
		else
			cm_buf_putc(b, *s);
	}
}

static void
render_op(struct cm_buf *b, const char *method, const char *path,
	  const cJSON *op)
{
	const cJSON *resp = cJSON_GetObjectItem(op, "responses"), *r;
	char up[8];
	size_t i;

	for (i = 0; method[i] && i < sizeof(up) - 1; i++)
		up[i] = (char)(method[i] - 32);
	up[i] = '\0';
	cm_buf_printf(b, "<section><h3><code>%s ", up);
	html_text(b, path);
	cm_buf_puts(b, "</code></h3><p><b>");
	html_text(b, cJSON_GetStringValue(cJSON_GetObjectItem(op, "summary")));
	cm_buf_puts(b, "</b></p><p>");
	html_text(b,
		  cJSON_GetStringValue(cJSON_GetObjectItem(op, "description")));
	cm_buf_puts(b, "</p><ul>");
	cJSON_ArrayForEach(r, resp)
	{
		cm_buf_puts(b, "<li>");
		html_text(b, r->string);
		cm_buf_puts(b, ": ");
		html_text(b, cJSON_GetStringValue(
				     cJSON_GetObjectItem(r, "description")));
		cm_buf_puts(b, "</li>");
	}
	cm_buf_puts(b, "</ul></section>\n");
}

static char *
render_html(const cJSON *doc)
{
	struct cm_buf b = CM_BUF_INIT(DOC_MAX);
	const cJSON *path, *schemas;
	const cJSON *info = cJSON_GetObjectItem(doc, "info");
	char *text;
	int i;

	cm_buf_puts(&b, "<!doctype html><html><head><meta charset=\"utf-8\">"
			"<title>brain API</title><style>body{font-family:"
			"sans-serif;max-width:60em;margin:auto}code,pre{"
			"background:#f4f4f4}</style></head><body><h1>");
	html_text(&b, cJSON_GetStringValue(cJSON_GetObjectItem(info, "title")));
	cm_buf_puts(&b, "</h1><p>");
	html_text(&b, cJSON_GetStringValue(
			      cJSON_GetObjectItem(info, "description")));
	cm_buf_puts(&b, "</p><p>Machine-readable: <a href=\"/brain/openapi."
			"json\">/brain/openapi.json</a></p>\n");
	cJSON_ArrayForEach(
		path,
		cJSON_GetObjectItem(
			doc,
			"paths")) for (i = 0; methods[i];
				       i++) if (cJSON_GetObjectItem(path,
								    methods[i]))
		render_op(&b, methods[i], path->string,
			  cJSON_GetObjectItem(path, methods[i]));
	schemas = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "components"),
				      "schemas");
	cm_buf_puts(&b, "<h2>Schemas</h2><pre>");
	text = cJSON_Print(schemas);
	html_text(&b, text);
	cJSON_free(text);
	cm_buf_puts(&b, "</pre></body></html>\n");
	if (cm_buf_error(&b)) {
		cm_buf_release(&b);
		return NULL;
	}
	return cm_buf_detach(&b, NULL);
}

static int
read_all(const char *path, struct cm_buf *out)
{
	char chunk[8192];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return CM_ENOENT;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		cm_buf_add(out, chunk, n);
	fclose(f);
	return cm_buf_error(out);
}

int
brain_docs_load(struct brain *b, const char *path, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf raw = CM_BUF_INIT(DOC_MAX);
	cJSON *doc = NULL;
	int rc;

	if ((rc = read_all(path, &raw)) < 0) {
		snprintf(errbuf, CM_ERRBUF_LEN, "%s: %s", path,
			 cm_strerror(rc));
		goto out;
	}
	if (!(doc = cm_json_parse(raw.data, raw.len, errbuf))) {
		rc = CM_EINVAL;
		goto out;
	}
	b->openapi_json = cJSON_PrintUnformatted(doc);
	b->docs_html = render_html(doc);
	rc = b->openapi_json && b->docs_html ? 0 : CM_E2BIG;
out:
	cJSON_Delete(doc);
	cm_buf_release(&raw);
	return rc;
}

void
brain_docs_free(struct brain *b)
{
	cJSON_free(b->openapi_json);
	free(b->docs_html);
	b->openapi_json = NULL;
	b->docs_html = NULL;
}

/* GET /brain/openapi.json */
void
brain_h_openapi(struct cm_req *req, void *arg)
{
	struct brain *b = brain_from(arg);

	if (!b->openapi_json) {
		cm_req_fail(req, 404, "not_found",
			    "the API document is not installed");
		cm_req_reply_json(req, 404, NULL);
		return;
	}
	cm_req_reply(req, 200, "application/json", b->openapi_json,
		     strlen(b->openapi_json));
}

/* GET /brain/docs - the readable page. */
void
brain_h_docs(struct cm_req *req, void *arg)
{
	struct brain *b = brain_from(arg);

	if (!b->docs_html) {
		cm_req_fail(req, 404, "not_found",
			    "the API document is not installed");
		cm_req_reply_json(req, 404, NULL);
		return;
	}
	cm_req_set_header(req, "Content-Security-Policy", DOCS_CSP);
	cm_req_reply(req, 200, "text/html; charset=utf-8", b->docs_html,
		     strlen(b->docs_html));
}
