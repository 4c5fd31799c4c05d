/* buf.c - capped string builder with a sticky error. */
#include "common/buf.h"
#include "common/err.h"
#include "common/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

void
cm_buf_init(struct cm_buf *b, size_t cap)
{
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	b->cap = cap;
	b->err = 0;
}

void
cm_buf_release(struct cm_buf *b)
{
	free(b->data);
	cm_buf_init(b, b->cap);
}

void
cm_buf_reset(struct cm_buf *b)
{
	b->len = 0;
	b->err = 0;
	if (b->data)
		b->data[0] = '\0';
}

char *
cm_buf_detach(struct cm_buf *b, size_t *len)
{
	char *p = b->data ? b->data : cm_xstrdup("");

	if (len)
		*len = b->len;
	cm_buf_init(b, b->cap);
	return p;
}

static size_t
buf_cap(const struct cm_buf *b)
{
	return b->cap ? b->cap : CM_BUF_DEFAULT_CAP;
}

/* Make room for n more bytes plus the NUL; false (and latch) past the cap. */
static bool
buf_grow(struct cm_buf *b, size_t n)
{
	size_t want;

	if (b->err)
		return false;
	if (n > buf_cap(b) - b->len) {
		b->err = CM_E2BIG;
		return false;
	}
	want = b->len + n + 1;
	if (want <= b->alloc)
		return true;
	if (want < 64)
		want = 64;
	if (want < b->alloc * 2)
		want = b->alloc * 2;
	b->data = cm_xrealloc(b->data, want);
	b->alloc = want;
	return true;
}

void
cm_buf_add(struct cm_buf *b, const void *p, size_t n)
{
	if (!buf_grow(b, n))
		return;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
cm_buf_puts(struct cm_buf *b, const char *s)
{
	cm_buf_add(b, s, strlen(s));
}

void
cm_buf_putc(struct cm_buf *b, char c)
{
	cm_buf_add(b, &c, 1);
}

void
cm_buf_vprintf(struct cm_buf *b, const char *fmt, va_list ap)
{
	va_list cp;
	int n;

	if (b->err)
		return;
	va_copy(cp, ap);
	n = vsnprintf(NULL, 0, fmt, cp);
	va_end(cp);
	if (n < 0) {
		b->err = CM_EINVAL;
		return;
	}
	if (!buf_grow(b, (size_t)n))
		return;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void
cm_buf_printf(struct cm_buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cm_buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void
cm_buf_json_str(struct cm_buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");

	cm_buf_putc(b, '"');
	for (; *p; p++) {
		switch (*p) {
		case '"':
			cm_buf_puts(b, "\\\"");
			break;
		case '\\':
			cm_buf_puts(b, "\\\\");
			break;
		case '\n':
			cm_buf_puts(b, "\\n");
			break;
		case '\r':
			cm_buf_puts(b, "\\r");
			break;
		case '\t':
			cm_buf_puts(b, "\\t");
			break;
		default:
			if (*p < 0x20)
				cm_buf_printf(b, "\\u%04x", *p);
			else
				cm_buf_putc(b, (char)*p);
		}
	}
	cm_buf_putc(b, '"');
}

int
cm_buf_error(const struct cm_buf *b)
{
	return b->err;
}

const char *
cm_buf_str(const struct cm_buf *b)
{
	return b->data ? b->data : "";
}
