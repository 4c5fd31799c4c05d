/*
 * http_wire.h - HTTP/1.x request framing for the server in http.c: the
 * request head parsed in place, and chunked bodies decoded in place. No
 * I/O, no allocation: the unit-test target of the server's parser.
 * Internal to libcommon (not installed with the public headers).
 *
 * The head parser accepts what RFC 9112 requires of a server and refuses
 * what could be read two ways (request smuggling): obs-fold lines, a space
 * before a header's colon, several differing Content-Length values,
 * Content-Length beside Transfer-Encoding, and any transfer coding but a
 * lone "chunked" are 400. Empty lines before the request line are
 * skipped; lines may end in CRLF or LF.
 */
#ifndef COMMON_HTTP_WIRE_H
#define COMMON_HTTP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CM_WIRE_MAX_HEADERS 100

struct cm_wire_hdr {
	const char *name;
	const char *value; /* without surrounding spaces and tabs */
};

struct cm_wire_head {
	const char *method;
	const char *target; /* request target as sent (a response: reason) */
	int minor;	    /* HTTP/1.<minor>: 0 or 1 */
	int status;	    /* of a response */
	bool keep_alive;    /* by version and Connection */
	bool chunked;
	bool expect_continue;
	int64_t content_length; /* -1: none */
	size_t len;		/* bytes of the head, blank line included */
	int nhdrs;
	struct cm_wire_hdr hdrs[CM_WIRE_MAX_HEADERS];
};

/* cm_wire_head_end - where the head in buf[0..len) ends (the byte after
   its blank line), scanning from *scan on (kept between calls so that
   each byte is looked at once); 0 while incomplete. */
size_t cm_wire_head_end(const char *buf, size_t len, size_t *scan);
/* cm_wire_head_parse - parse the complete head buf[0..end), writing NULs
   into it (strings in *h point into buf). 0, or the status to answer:
   400 malformed, 431 more than CM_WIRE_MAX_HEADERS headers, 501 a method
   other than GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, 505 a version
   other than HTTP/1.0 or 1.1, 417 an Expect other than 100-continue. */
int cm_wire_head_parse(char *buf, size_t end, struct cm_wire_head *h);
/* cm_wire_response_parse - the same for a response head ("HTTP/1.x NNN
   reason", then headers): 0 or 400 (malformed or ambiguous framing), 431
   (too many headers). No Expect is looked at in a response. */
int cm_wire_response_parse(char *buf, size_t end, struct cm_wire_head *h);
/* cm_wire_head_rebase - the head's strings were in from, and its bytes
   have been copied to to: point there (from must still be valid). */
void cm_wire_head_rebase(struct cm_wire_head *h, const char *from, char *to);
/* cm_wire_list_has - whether the comma-separated list (a Connection
   header) names tok, in any case. */
bool cm_wire_list_has(const char *list, const char *tok);
/* cm_wire_find - the first header named name (any case), or NULL. */
const char *cm_wire_find(const struct cm_wire_hdr *hdrs, int n,
			 const char *name);

/* A chunked body being decoded in place: the data of the chunks is moved
   down to start at body (where the first chunk-size line was). */
struct cm_wire_chunks {
	size_t body;   /* offset of the body in the buffer */
	size_t pos;    /* offset of the next byte to decode */
	size_t out;    /* decoded bytes, at body..body+out */
	uint64_t left; /* data bytes left in the current chunk (or the
			  size being read) */
	int state;
	int digits;   /* of the size being read */
	size_t extra; /* bytes of extensions and trailers seen */
};

/* cm_wire_chunks_init - start decoding a body at offset body. */
void cm_wire_chunks_init(struct cm_wire_chunks *c, size_t body);
/* cm_wire_chunks_step - decode what buf[0..len) holds past c->pos. 1 when
   the body (and its trailers, ignored) is complete: c->pos is then the
   offset of the next request; 0 for more; or the status to answer: 400
   malformed, 413 over max_body decoded bytes, 431 chunk extensions
   and trailers together over max_trailer bytes. */
int cm_wire_chunks_step(char *buf, size_t len, size_t max_body,
			size_t max_trailer, struct cm_wire_chunks *c);

#endif
