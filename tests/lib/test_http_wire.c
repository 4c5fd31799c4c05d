/* test_http_wire.c - the server's request framing: heads parsed in place,
   chunked bodies decoded in place, and what is refused. */
#include "../../lib/common/http_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "common/banned.h"

/* Parse a complete head held in text with fn; returns the status. */
static int
parse_with(int (*fn)(char *, size_t, struct cm_wire_head *), const char *text,
	   struct cm_wire_head *h, char **store)
{
	size_t len = strlen(text), scan = 0, end;

	*store = strdup(text);
	end = cm_wire_head_end(*store, len, &scan);
	ck_assert_msg(end > 0, "no end of head in %s", text);
	return fn(*store, end, h);
}

static int
parse(const char *text, struct cm_wire_head *h, char **store)
{
	return parse_with(cm_wire_head_parse, text, h, store);
}

static int
status_of(const char *text)
{
	struct cm_wire_head h;
	char *store;
	int rc = parse(text, &h, &store);

	free(store);
	return rc;
}

START_TEST(test_the_end_of_a_head_is_found_as_bytes_arrive)
{
	static const char text[] = "\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\nNEXT";
	size_t scan = 0, i, end = 0, want = strlen(text) - 4;

	for (i = 1; i <= strlen(text) && !end; i++) {
		end = cm_wire_head_end(text, i, &scan);
		ck_assert(end == 0 || i >= want);
	}
	ck_assert_uint_eq(end, want);
	scan = 0; /* bare LF line ends too */
	ck_assert_uint_eq(
		cm_wire_head_end("GET / HTTP/1.1\nA: b\n\nX", 22, &scan), 21);
	scan = 0; /* empty lines alone are no head */
	ck_assert_uint_eq(cm_wire_head_end("\r\n\r\n\r\n", 6, &scan), 0);
}
END_TEST

START_TEST(test_a_head_is_split_into_method_target_and_trimmed_headers)
{
	struct cm_wire_head h;
	char *store;

	ck_assert_int_eq(parse("POST /x/y?q=1 HTTP/1.1\r\n"
			       "Host: example.com\r\n"
			       "X-Pad: \t padded value \t\r\n"
			       "content-length: 12\r\n"
			       "Empty:\r\n\r\n",
			       &h, &store),
			 0);
	ck_assert_str_eq(h.method, "POST");
	ck_assert_str_eq(h.target, "/x/y?q=1");
	ck_assert_int_eq(h.minor, 1);
	ck_assert_int_eq(h.nhdrs, 4);
	ck_assert_str_eq(cm_wire_find(h.hdrs, h.nhdrs, "x-pad"),
			 "padded value");
	ck_assert_str_eq(cm_wire_find(h.hdrs, h.nhdrs, "EMPTY"), "");
	ck_assert_ptr_null(cm_wire_find(h.hdrs, h.nhdrs, "Missing"));
	ck_assert_int_eq(h.content_length, 12);
	ck_assert(!h.chunked && h.keep_alive && !h.expect_continue);
	free(store);
}
END_TEST

START_TEST(test_keep_alive_follows_version_and_connection)
{
	struct cm_wire_head h;
	char *store;

	ck_assert_int_eq(parse("GET / HTTP/1.0\r\n\r\n", &h, &store), 0);
	ck_assert(!h.keep_alive);
	free(store);
	ck_assert_int_eq(
		parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &h,
		      &store),
		0);
	ck_assert(h.keep_alive);
	free(store);
	ck_assert_int_eq(
		parse("GET / HTTP/1.1\r\nConnection: te, close\r\n\r\n", &h,
		      &store),
		0);
	ck_assert(!h.keep_alive);
	free(store);
	ck_assert_int_eq(parse("GET / HTTP/1.1\r\nExpect: 100-Continue\r\n"
			       "Transfer-Encoding: Chunked\r\n\r\n",
			       &h, &store),
			 0);
	ck_assert(h.keep_alive && h.expect_continue && h.chunked);
	free(store);
}
END_TEST

START_TEST(test_ambiguous_framing_is_refused)
{
	/* request smuggling: each of these could be read two ways */
	ck_assert_int_eq(status_of("POST / HTTP/1.1\r\nContent-Length: 5\r\n"
				   "Content-Length: 6\r\n\r\n"),
			 400);
	ck_assert_int_eq(status_of("POST / HTTP/1.1\r\nContent-Length: 5\r\n"
				   "Content-Length: 5\r\n\r\n"),
			 0);
	ck_assert_int_eq(status_of("POST / HTTP/1.1\r\nContent-Length: 5\r\n"
				   "Transfer-Encoding: chunked\r\n\r\n"),
			 400);
	ck_assert_int_eq(status_of("POST / HTTP/1.1\r\n"
				   "Transfer-Encoding: gzip, chunked\r\n\r\n"),
			 400);
	ck_assert_int_eq(status_of("POST / HTTP/1.1\r\nContent-Length: +5\r\n"
				   "\r\n"),
			 400);
	ck_assert_int_eq(status_of("POST / HTTP/1.1\r\nContent-Length: 5 5\r\n"
				   "\r\n"),
			 400);
	ck_assert_int_eq(status_of("POST / HTTP/1.1\r\n"
				   "Content-Length: 99999999999999999999\r\n"
				   "\r\n"),
			 400);
	ck_assert_int_eq(status_of("POST / HTTP/1.0\r\n"
				   "Transfer-Encoding: chunked\r\n\r\n"),
			 400);
	ck_assert_int_eq(status_of("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), 400);
	ck_assert_int_eq(status_of("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n"),
			 400);
	ck_assert_int_eq(status_of("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n"), 400);
}
END_TEST

START_TEST(test_bad_request_lines_get_their_status)
{
	ck_assert_int_eq(status_of("GARBAGE\r\n\r\n"), 400);
	ck_assert_int_eq(status_of("GET  / HTTP/1.1\r\n\r\n"), 400);
	ck_assert_int_eq(status_of("GET / HTTP/1.1 extra\r\n\r\n"), 400);
	ck_assert_int_eq(status_of("GET / HTTX/1.1\r\n\r\n"), 400);
	ck_assert_int_eq(status_of("GET / HTTP/2.0\r\n\r\n"), 505);
	ck_assert_int_eq(status_of("GET / HTTP/1.2\r\n\r\n"), 505);
	ck_assert_int_eq(status_of("TRACE / HTTP/1.1\r\n\r\n"), 501);
	ck_assert_int_eq(status_of("get / HTTP/1.1\r\n\r\n"), 501);
	ck_assert_int_eq(status_of("G(T / HTTP/1.1\r\n\r\n"), 400);
	ck_assert_int_eq(status_of("GET / HTTP/1.1\r\nno colon\r\n\r\n"), 400);
	ck_assert_int_eq(status_of("GET / HTTP/1.1\r\nExpect: later\r\n\r\n"),
			 417);
}
END_TEST

START_TEST(test_a_nul_byte_in_the_head_is_refused)
{
	char text[] = "GET / HTTP/1.1\r\nA: b?c\r\n\r\n";
	struct cm_wire_head h;
	size_t scan = 0, len = sizeof(text) - 1;

	*strchr(text, '?') = '\0';
	ck_assert_int_eq(cm_wire_head_parse(
				 text, cm_wire_head_end(text, len, &scan), &h),
			 400);
}
END_TEST

START_TEST(test_more_headers_than_the_table_holds_is_431)
{
	char *text = malloc(64 * (CM_WIRE_MAX_HEADERS + 2));
	size_t n = 0;
	int i;

	n += (size_t)snprintf(text, 64, "GET / HTTP/1.1\r\n");
	for (i = 0; i < CM_WIRE_MAX_HEADERS; i++)
		n += (size_t)snprintf(text + n, 64, "H%d: v\r\n", i);
	snprintf(text + n, 64, "\r\n");
	ck_assert_int_eq(status_of(text), 0);
	snprintf(text + n, 64, "One-More: v\r\n\r\n");
	ck_assert_int_eq(status_of(text), 431);
	free(text);
}
END_TEST

static int
response_of(const char *text, struct cm_wire_head *h, char **store)
{
	return parse_with(cm_wire_response_parse, text, h, store);
}

START_TEST(test_a_response_head_gives_status_framing_and_headers)
{
	static const char *const bad[] = {
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 600 Odd\r\n\r\n",
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 200OK\r\n\r\n",
		"ICY 200 OK\r\n\r\n",
		"HTTP/1.1 099 Low\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
		"Content-Length: 2\r\n\r\n",
	};
	struct cm_wire_head h;
	char *store;
	size_t i;

	ck_assert_int_eq(response_of("HTTP/1.1 201 Created\r\n"
				     "Content-Type: application/json\r\n"
				     "Content-Length: 7\r\n\r\n{\"a\":1}",
				     &h, &store),
			 0);
	ck_assert_int_eq(h.status, 201);
	ck_assert_str_eq(h.target, "Created");
	ck_assert_int_eq(h.content_length, 7);
	ck_assert(h.keep_alive && !h.chunked);
	ck_assert_str_eq(cm_wire_find(h.hdrs, h.nhdrs, "content-type"),
			 "application/json");
	free(store);
	ck_assert_int_eq(response_of("HTTP/1.0 200\r\n\r\n", &h, &store), 0);
	ck_assert(h.status == 200 && !h.keep_alive && h.content_length < 0);
	free(store);
	ck_assert_int_eq(response_of("HTTP/1.1 200 OK\r\nTransfer-Encoding: "
				     "chunked\r\nConnection: close\r\n\r\n",
				     &h, &store),
			 0);
	ck_assert(h.chunked && !h.keep_alive);
	free(store);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(response_of(bad[i], &h, &store) == 400, "%s",
			      bad[i]);
		free(store);
	}
}
END_TEST

/* Decode text (which starts with the body) fed `step` bytes at a time. */
static int
decode(const char *text, size_t step, size_t max, char **store,
       struct cm_wire_chunks *c)
{
	size_t len = strlen(text), have = 0;
	int rc = 0;

	*store = malloc(len + 1);
	cm_wire_chunks_init(c, 0);
	while (rc == 0 && have < len) {
		size_t n = len - have < step ? len - have : step;

		memcpy(*store + have, text + have, n);
		have += n;
		rc = cm_wire_chunks_step(*store, have, max, 64, c);
	}
	return rc;
}

START_TEST(test_chunks_are_decoded_in_place_whatever_the_reads)
{
	static const char body[] = "4;ext=1\r\nWiki\r\n5\r\npedia\r\n"
				   "E\r\n in\r\n\r\nchunks.\r\n0\r\n"
				   "Trailer: yes\r\n\r\nGET /next";
	struct cm_wire_chunks c;
	size_t step;
	char *store;

	for (step = 1; step <= sizeof(body); step++) {
		ck_assert_int_eq(decode(body, step, 1024, &store, &c), 1);
		ck_assert_uint_eq(c.out, 23);
		ck_assert(!memcmp(store, "Wikipedia in\r\n\r\nchunks.", 23));
		ck_assert_uint_eq(c.pos, sizeof(body) - 1 - 9);
		free(store);
	}
}
END_TEST

START_TEST(test_malformed_or_oversized_chunks_are_refused)
{
	static const struct {
		const char *text;
		size_t step;
		int want;
	} cases[] = {
		{ "x\r\n", 1, 400 },
		{ "\r\n", 1, 400 },
		{ "3\r\nabcX", 1, 400 },
		{ "10000000000000000\r\n", 1, 400 },
		/* declared sizes count before the data arrives (max 1024) */
		{ "400\r\n", 1, 0 },
		{ "401\r\n", 1, 413 },
		{ "3\r\nabc\r\n3fe\r\n", 100, 413 },
		/* extensions and trailers are bounded (64 here) */
		{ "1;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaa\r\n",
		  7, 431 },
		{ "0\r\nT: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
		  7, 431 },
	};
	struct cm_wire_chunks c;
	char *store;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_msg(decode(cases[i].text, cases[i].step, 1024, &store,
				     &c) == cases[i].want,
			      "case %zu", i);
		free(store);
	}
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("http_wire");
	TCase *tc = tcase_create("http_wire");

	tcase_add_test(tc, test_the_end_of_a_head_is_found_as_bytes_arrive);
	tcase_add_test(
		tc,
		test_a_head_is_split_into_method_target_and_trimmed_headers);
	tcase_add_test(tc, test_keep_alive_follows_version_and_connection);
	tcase_add_test(tc, test_ambiguous_framing_is_refused);
	tcase_add_test(tc, test_bad_request_lines_get_their_status);
	tcase_add_test(tc, test_a_nul_byte_in_the_head_is_refused);
	tcase_add_test(tc, test_more_headers_than_the_table_holds_is_431);
	tcase_add_test(tc,
		       test_a_response_head_gives_status_framing_and_headers);
	tcase_add_test(tc, test_chunks_are_decoded_in_place_whatever_the_reads);
	tcase_add_test(tc, test_malformed_or_oversized_chunks_are_refused);
	suite_add_tcase(s, tc);
	return s;
}

CM_TEST_MAIN(make_suite)
