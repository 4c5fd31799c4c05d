/*
 * test_openapi.c - proto/openapi/brain.yaml and brain's route table name
 * the same operations: a route missing from the document, or a documented
 * operation without a route, fails. Also checks that public routes are
 * documented without security and the others with it, and that the
 * document loads and renders (docs.c).
 */
#include "testutil.h"

#include "../../../services/brain/brain.h"

#include "common/buf.h"
#include "common/json.h"
#include "common/service.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

#define DOC "proto/openapi/brain.yaml"

extern const struct cm_service_desc brain_service;

static cJSON *
load_doc(void)
{
	struct cm_buf b = CM_BUF_INIT(4 << 20);
	char errbuf[CM_ERRBUF_LEN] = "", chunk[4096];
	FILE *f = fopen(DOC, "r");
	cJSON *doc;
	size_t n;

	ck_assert_msg(f != NULL, "cannot open %s", DOC);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		cm_buf_add(&b, chunk, n);
	fclose(f);
	doc = cm_json_parse(b.data, b.len, errbuf);
	ck_assert_msg(doc != NULL, "%s: %s", DOC, errbuf);
	cm_buf_release(&b);
	return doc;
}

/* "/a/:id/b" -> "/a/{id}/b"; a trailing "*" (the rest of the path) ->
   "{path}" */
static void
openapi_path(const char *pattern, char *out, size_t n)
{
	struct cm_buf b = CM_BUF_INIT(n - 1);
	const char *p;

	for (p = pattern; *p; p++) {
		if (*p == ':' && p[-1] == '/') {
			cm_buf_putc(&b, '{');
			while (p[1] && p[1] != '/')
				cm_buf_putc(&b, *++p);
			cm_buf_putc(&b, '}');
		} else if (*p == '*' && p[-1] == '/' && !p[1]) {
			cm_buf_puts(&b, "{path}");
		} else {
			cm_buf_putc(&b, *p);
		}
	}
	ck_assert_int_eq(cm_buf_error(&b), 0);
	snprintf(out, n, "%s", cm_buf_str(&b));
	cm_buf_release(&b);
}

static void
lower(const char *in, char out[16])
{
	size_t i;

	for (i = 0; in[i] && i < 15; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	out[i] = '\0';
}

static const cJSON *
doc_op(const cJSON *doc, const struct cm_route *r)
{
	char path[256], m[16];

	openapi_path(r->pattern, path, sizeof(path));
	lower(r->method, m);
	return cJSON_GetObjectItem(
		cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "paths"), path),
		m);
}

START_TEST(test_every_route_is_documented_with_the_right_security)
{
	const struct cm_route *r;
	cJSON *doc = load_doc();
	const cJSON *op, *sec;

	for (r = brain_service.routes; r->method; r++) {
		op = doc_op(doc, r);
		ck_assert_msg(op != NULL, "route %s %s is not in %s", r->method,
			      r->pattern, DOC);
		sec = cJSON_GetObjectItem(op, "security");
		ck_assert_msg(cJSON_IsArray(sec), "%s %s: no security",
			      r->method, r->pattern);
		ck_assert_msg((cJSON_GetArraySize(sec) == 0) ==
				      !!(r->flags & CM_ROUTE_PUBLIC),
			      "%s %s: security does not match its flags",
			      r->method, r->pattern);
	}
	cJSON_Delete(doc);
}
END_TEST

/* Whether the route table has method + OpenAPI path. */
static bool
has_route(const char *method, const char *path)
{
	const struct cm_route *r;
	char p[256], m[16];

	for (r = brain_service.routes; r->method; r++) {
		openapi_path(r->pattern, p, sizeof(p));
		lower(r->method, m);
		if (!strcmp(p, path) && !strcmp(m, method))
			return true;
	}
	return false;
}

START_TEST(test_every_documented_operation_has_a_route)
{
	cJSON *doc = load_doc();
	const cJSON *path, *op;
	int n = 0;

	cJSON_ArrayForEach(path, cJSON_GetObjectItem(doc, "paths"))
		cJSON_ArrayForEach(op, path)
	{
		if (!strcmp(op->string, "parameters"))
			continue;
		ck_assert_msg(has_route(op->string, path->string),
			      "%s %s is documented but not routed", op->string,
			      path->string);
		n++;
	}
	ck_assert_int_gt(n, 20);
	cJSON_Delete(doc);
}
END_TEST

START_TEST(test_the_document_loads_and_renders_an_escaped_page)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	struct brain b = { .magic = BRAIN_MAGIC };

	ck_assert_int_eq(brain_docs_load(&b, DOC, errbuf), 0);
	ck_assert_ptr_nonnull(strstr(b.openapi_json, "\"openapi\":\"3.1.0\""));
	ck_assert_ptr_nonnull(strstr(b.docs_html, "POST /api/auth/login"));
	ck_assert_ptr_null(strstr(b.docs_html, "<script"));
	brain_docs_free(&b);
	ck_assert_ptr_null(b.docs_html);
	ck_assert_int_eq(brain_docs_load(&b, "/nonexistent.yaml", errbuf),
			 CM_ENOENT);
	ck_assert_int_eq(brain_docs_load(&b, "Makefile", errbuf), CM_EINVAL);
	ck_assert_ptr_nonnull(strstr(errbuf, "line"));
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("brain_openapi");
	TCase *tc = tcase_create("openapi");

	tcase_add_test(tc,
		       test_every_route_is_documented_with_the_right_security);
	tcase_add_test(tc, test_every_documented_operation_has_a_route);
	tcase_add_test(tc, test_the_document_loads_and_renders_an_escaped_page);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
