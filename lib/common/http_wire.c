/* http_wire.c - HTTP/1.x request heads and chunked bodies: see
   http_wire.h. */
#include "http_wire.h"

#include "common/mem.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "common/banned.h"

static const char *const methods[] = { "GET",	"HEAD",	  "POST",   "PUT",
				       "PATCH", "DELETE", "OPTIONS" };

/* RFC 9110 tchar */
static bool
is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool
is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!is_tchar((unsigned char)*s))
			return false;
	return true;
}

static size_t
skip_empty_lines(const char *buf, size_t len)
{
	size_t i = 0;

	while (i < len && (buf[i] == '\r' || buf[i] == '\n'))
		i++;
	return i;
}

size_t
cm_wire_head_end(const char *buf, size_t len, size_t *scan)
{
	size_t i = skip_empty_lines(buf, len);
	const char *nl;

	if (*scan > i)
		i = *scan;
	while (i < len && (nl = memchr(buf + i, '\n', len - i))) {
		i = (size_t)(nl - buf);
		if (i + 1 < len && buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
		if (i + 1 == len || (i + 2 == len && buf[i + 1] == '\r'))
			break; /* the blank line may still be coming */
		i++;
	}
	*scan = i < len ? i : len;
	return 0;
}

/* The next line from *p (before e), NUL-terminated without its CR LF;
   NULL when it holds a NUL byte or a bare CR. */
static char *
next_line(char **p, char *e)
{
	char *s = *p, *nl = memchr(s, '\n', (size_t)(e - s));
	char *end;

	if (!nl)
		return NULL;
	*p = nl + 1;
	end = nl > s && nl[-1] == '\r' ? nl - 1 : nl;
	*end = '\0';
	if (memchr(s, '\0', (size_t)(end - s)) ||
	    memchr(s, '\r', (size_t)(end - s)))
		return NULL;
	return s;
}

static bool
visible(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s == 0x7f)
			return false;
	return true;
}

static int
request_line(char *line, struct cm_wire_head *h)
{
	char *sp1 = strchr(line, ' '), *sp2;
	size_t i;

	if (!sp1)
		return 400;
	*sp1 = '\0';
	sp2 = strchr(sp1 + 1, ' ');
	if (!sp2 || strchr(sp2 + 1, ' '))
		return 400;
	*sp2 = '\0';
	h->method = line;
	h->target = sp1 + 1;
	if (!is_token(h->method) || !*h->target || !visible(h->target))
		return 400;
	if (strncmp(sp2 + 1, "HTTP/", 5) || sp2[6] < '0' || sp2[6] > '9' ||
	    sp2[7] != '.' || sp2[8] < '0' || sp2[8] > '9' || sp2[9])
		return 400;
	if (sp2[6] != '1' || sp2[8] > '1')
		return 505;
	h->minor = sp2[8] - '0';
	for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (!strcmp(h->method, methods[i]))
			return 0;
	return 501;
}

static char *
trim(char *v)
{
	size_t n;

	while (*v == ' ' || *v == '\t')
		v++;
	n = strlen(v);
	while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		v[--n] = '\0';
	return v;
}

bool
cm_wire_list_has(const char *list, const char *tok)
{
	size_t n = strlen(tok);
	const char *p = list;

	while (p && *p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!strncasecmp(p, tok, n) && (p[n] == '\0' || p[n] == ',' ||
						p[n] == ' ' || p[n] == '\t'))
			return true;
		p = strchr(p, ',');
	}
	return false;
}

static int
content_length(const char *v, int64_t *out)
{
	int64_t n = 0;
	const char *p;

	if (!*v || strlen(v) > 18)
		return 400;
	for (p = v; *p; p++) {
		if (*p < '0' || *p > '9')
			return 400;
		n = n * 10 + (*p - '0');
	}
	if (*out >= 0 && *out != n)
		return 400;
	*out = n;
	return 0;
}

/* What the headers say about framing and the connection. */
static int
semantics(struct cm_wire_head *h)
{
	int i, rc;
	bool te = false;

	h->keep_alive = h->minor == 1;
	for (i = 0; i < h->nhdrs; i++) {
		const char *n = h->hdrs[i].name, *v = h->hdrs[i].value;

		if (!strcasecmp(n, "Content-Length")) {
			if ((rc = content_length(v, &h->content_length)))
				return rc;
		} else if (!strcasecmp(n, "Transfer-Encoding")) {
			if (te || strcasecmp(v, "chunked"))
				return 400;
			te = true;
		} else if (!strcasecmp(n, "Connection")) {
			if (cm_wire_list_has(v, "close"))
				h->keep_alive = false;
			else if (h->minor == 0 &&
				 cm_wire_list_has(v, "keep-alive"))
				h->keep_alive = true;
		} else if (!h->status && !strcasecmp(n, "Expect")) {
			if (strcasecmp(v, "100-continue"))
				return 417;
			h->expect_continue = h->minor == 1;
		}
	}
	if (te && (h->content_length >= 0 || h->minor == 0))
		return 400;
	h->chunked = te;
	return 0;
}

/* The header lines after the first line, up to the blank line. */
static int
header_lines(char **p, char *e, struct cm_wire_head *h)
{
	char *line, *colon;

	while ((line = next_line(p, e)) && *line) {
		if (h->nhdrs == CM_WIRE_MAX_HEADERS)
			return 431;
		colon = strchr(line, ':');
		if (!colon)
			return 400;
		*colon = '\0';
		if (!is_token(line)) /* also obs-fold and "name :" */
			return 400;
		h->hdrs[h->nhdrs].name = line;
		h->hdrs[h->nhdrs].value = trim(colon + 1);
		h->nhdrs++;
	}
	return line ? 0 : 400;
}

/* A head: its first line (by first_line), headers, framing. */
static int
head_parse(char *buf, size_t end, struct cm_wire_head *h,
	   int (*first_line)(char *line, struct cm_wire_head *h))
{
	char *p = buf + skip_empty_lines(buf, end), *e = buf + end;
	char *line;
	int rc;

	memset(h, 0, offsetof(struct cm_wire_head, hdrs));
	h->content_length = -1;
	h->len = end;
	if (!(line = next_line(&p, e)))
		return 400;
	if ((rc = first_line(line, h)) || (rc = header_lines(&p, e, h)))
		return rc;
	return semantics(h);
}

int
cm_wire_head_parse(char *buf, size_t end, struct cm_wire_head *h)
{
	return head_parse(buf, end, h, request_line);
}

/* "HTTP/1.x NNN reason" */
static int
status_line(char *line, struct cm_wire_head *h)
{
	if (strncmp(line, "HTTP/1.", 7) || (line[7] != '0' && line[7] != '1') ||
	    line[8] != ' ' || line[9] < '1' || line[9] > '5' ||
	    line[10] < '0' || line[10] > '9' || line[11] < '0' ||
	    line[11] > '9' || (line[12] != ' ' && line[12] != '\0'))
		return 400;
	h->minor = line[7] - '0';
	h->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 +
		    (line[11] - '0');
	h->method = "";
	h->target = line[12] ? line + 13 : line + 12; /* the reason */
	return 0;
}

int
cm_wire_response_parse(char *buf, size_t end, struct cm_wire_head *h)
{
	return head_parse(buf, end, h, status_line);
}

const char *
moved(const char *p, const char *from, char *to)
{
	return to + (p - from);
}

void
cm_wire_head_rebase(struct cm_wire_head *h, const char *from, char *to)
{
	int i;

	h->method = moved(h->method, from, to);
	h->target = moved(h->target, from, to);
	for (i = 0; i < h->nhdrs; i++) {
		h->hdrs[i].name = moved(h->hdrs[i].name, from, to);
		h->hdrs[i].value = moved(h->hdrs[i].value, from, to);
	}
}

const char *
cm_wire_find(const struct cm_wire_hdr *hdrs, int n, const char *name)
{
	int i;

	for (i = 0; i < n; i++)
		if (!strcasecmp(hdrs[i].name, name))
			return hdrs[i].value;
	return NULL;
}

/* ---- chunked bodies ---------------------------------------------------- */

enum {
	C_SIZE,
	C_SIZE_LF,
	C_EXT,
	C_DATA,
	C_DATA_CR,
	C_DATA_LF,
	C_TRAILER,
	C_TRAILER_LINE,
	C_END_LF,
};

void
cm_wire_chunks_init(struct cm_wire_chunks *c, size_t body)
{
	memset(c, 0, sizeof(*c));
	c->body = body;
	c->pos = body;
	c->state = C_SIZE;
}

/* A chunk-size line ended: data, or the trailers after the last chunk. */
static int
size_done(struct cm_wire_chunks *c, size_t max_body)
{
	if (!c->digits)
		return 400;
	if (!c->left) {
		c->state = C_TRAILER;
		return 0;
	}
	if (c->left > max_body || c->out + c->left > max_body)
		return 413;
	c->state = C_DATA;
	return 0;
}

/* One byte of framing (not chunk data); 1 at the end of the body. */
static int
frame_byte(struct cm_wire_chunks *c, char ch, size_t max_body,
	   size_t max_trailer)
{
	int v;

	switch (c->state) {
	case C_SIZE:
		if ((v = cm_hex_digit(ch)) >= 0) {
			if (c->digits++ == 15)
				return 400;
			c->left = c->left * 16 + (uint64_t)v;
			return 0;
		}
		if (ch == ';' || ch == ' ' || ch == '\t') {
			c->state = C_EXT;
			return c->digits ? 0 : 400;
		}
		if (ch == '\r') {
			c->state = C_SIZE_LF;
			return 0;
		}
		return ch == '\n' ? size_done(c, max_body) : 400;
	case C_SIZE_LF:
		return ch == '\n' ? size_done(c, max_body) : 400;
	case C_EXT:
		if (++c->extra > max_trailer)
			return 431;
		return ch == '\n' ? size_done(c, max_body) : 0;
	case C_DATA_CR:
		c->state = C_DATA_LF;
		if (ch == '\r')
			return 0;
		/* a bare LF ends the data too */
		/* fall through */
	case C_DATA_LF:
		if (ch != '\n')
			return 400;
		c->state = C_SIZE;
		c->digits = 0;
		c->left = 0;
		return 0;
	case C_TRAILER:
		if (ch == '\r') {
			c->state = C_END_LF;
			return 0;
		}
		if (ch == '\n')
			return 1;
		c->state = C_TRAILER_LINE;
		/* fall through */
	case C_TRAILER_LINE:
		if (++c->extra > max_trailer)
			return 431;
		if (ch == '\n')
			c->state = C_TRAILER;
		return 0;
	case C_END_LF:
		return ch == '\n' ? 1 : 400;
	}
	return 400;
}

int
cm_wire_chunks_step(char *buf, size_t len, size_t max_body, size_t max_trailer,
		    struct cm_wire_chunks *c)
{
	size_t n;
	int rc;

	while (c->pos < len) {
		if (c->state == C_DATA) {
			n = len - c->pos;
			if (n > c->left)
				n = (size_t)c->left;
			memmove(buf + c->body + c->out, buf + c->pos, n);
			c->out += n;
			c->pos += n;
			c->left -= n;
			if (!c->left)
				c->state = C_DATA_CR;
			continue;
		}
		rc = frame_byte(c, buf[c->pos++], max_body, max_trailer);
		if (rc)
			return rc;
	}
	return 0;
}
