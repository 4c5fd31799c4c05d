/*
 * buf.h - a growable byte/string builder with a hard cap and a sticky error.
 *
 * Build with any number of appends, then check cm_buf_error() once: after
 * the first failure (cap exceeded) further appends are ignored and the
 * error is kept, so the content is always a valid prefix and NUL-terminated.
 * A struct cm_buf is a value type: CM_BUF_INIT(cap) or cm_buf_init(), then
 * cm_buf_release() frees the storage; cm_buf_detach() hands it out.
 * Not thread-safe; one owner at a time.
 */
#ifndef COMMON_BUF_H
#define COMMON_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct cm_buf {
	char *data;   /* NUL-terminated; NULL until the first append */
	size_t len;   /* bytes used, not counting the NUL */
	size_t alloc; /* bytes allocated */
	size_t cap;   /* hard limit on len; 0 means CM_BUF_DEFAULT_CAP */
	int err;      /* 0 or the first CM_E* that occurred (sticky) */
};

#define CM_BUF_DEFAULT_CAP ((size_t)64 << 20)
#define CM_BUF_INIT(capacity)             \
	{                                 \
		NULL, 0, 0, (capacity), 0 \
	}

/* cm_buf_init - empty buffer capped at cap bytes (0: the default cap). */
void cm_buf_init(struct cm_buf *b, size_t cap);
/* cm_buf_release - free storage; the buffer is empty and reusable. */
void cm_buf_release(struct cm_buf *b);
/* cm_buf_reset - length to 0 and error cleared, storage kept. */
void cm_buf_reset(struct cm_buf *b);
/* cm_buf_detach - take the string (never NULL); the buffer is left empty. */
char *cm_buf_detach(struct cm_buf *b, size_t *len);
/* cm_buf_add - append n bytes; on overflow latch CM_E2BIG. */
void cm_buf_add(struct cm_buf *b, const void *p, size_t n);
/* cm_buf_puts - append a C string. */
void cm_buf_puts(struct cm_buf *b, const char *s);
/* cm_buf_putc - append one byte. */
void cm_buf_putc(struct cm_buf *b, char c);
/* cm_buf_printf - append formatted text. */
void cm_buf_printf(struct cm_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* cm_buf_vprintf - va_list form of cm_buf_printf. */
void cm_buf_vprintf(struct cm_buf *b, const char *fmt, va_list ap);
/* cm_buf_json_str - append s as a JSON string literal, quoted and escaped. */
void cm_buf_json_str(struct cm_buf *b, const char *s);
/* cm_buf_error - 0 or the sticky CM_E* code. */
int cm_buf_error(const struct cm_buf *b);
/* cm_buf_str - the content as a C string ("" when empty). */
const char *cm_buf_str(const struct cm_buf *b);

#endif
