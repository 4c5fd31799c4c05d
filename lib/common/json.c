/* json.c - bounded parsing and typed field reads over cJSON. */
#include "common/json.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/mem.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

/* Largest magnitude a double holds exactly with every integer below it. */
#define JSON_MAX_SAFE_INT 9007199254740991.0 /* 2^53 - 1 */

/* ---- parsing ------------------------------------------------------------ */

/* 1-based line and byte column of pos in text. */
static void
line_col(const char *text, const char *pos, size_t *line, size_t *col)
{
	const char *p, *bol = text;

	*line = 1;
	for (p = text; p < pos; p++) {
		if (*p == '\n') {
			(*line)++;
			bol = p + 1;
		}
	}
	*col = (size_t)(pos - bol) + 1;
}

static void
err_at(const char *text, size_t len, const char *pos, const char *what,
       char *errbuf)
{
	size_t line, col;

	if (!pos || pos < text || pos > text + len)
		pos = text + len;
	line_col(text, pos, &line, &col);
	cm_errf(errbuf, "%s at line %zu, column %zu", what, line, col);
}

/* Where the text first nests deeper than CM_JSON_MAX_DEPTH, or NULL. A
   lexical scan: strings are skipped so brackets inside them do not count. */
static const char *
too_deep(const char *s, size_t len)
{
	bool in_str = false, esc = false;
	int depth = 0;
	size_t i;

	for (i = 0; i < len; i++) {
		if (in_str) {
			if (esc)
				esc = false;
			else if (s[i] == '\\')
				esc = true;
			else if (s[i] == '"')
				in_str = false;
		} else if (s[i] == '"') {
			in_str = true;
		} else if (s[i] == '[' || s[i] == '{') {
			if (++depth > CM_JSON_MAX_DEPTH)
				return s + i;
		} else if ((s[i] == ']' || s[i] == '}') && depth > 0) {
			depth--;
		}
	}
	return NULL;
}

cJSON *
cm_json_parse(const char *data, size_t len, char errbuf[CM_ERRBUF_LEN])
{
	const char *end = NULL, *nul;
	cJSON *json = NULL;
	char *copy = NULL;
	char what[64];

	if (len > CM_JSON_MAX_INPUT) {
		cm_errf(errbuf,
			"JSON document too large (%zu bytes, limit %zu)", len,
			(size_t)CM_JSON_MAX_INPUT);
		goto out;
	}
	nul = len ? memchr(data, '\0', len) : NULL;
	if (nul) {
		err_at(data, len, nul, "invalid JSON (NUL byte)", errbuf);
		goto out;
	}
	/* cJSON wants a NUL-terminated string; data may not be one */
	copy = cm_xstrndup(len ? data : "", len);
	end = too_deep(copy, len);
	if (end) {
		snprintf(what, sizeof(what),
			 "JSON nested deeper than %d levels",
			 CM_JSON_MAX_DEPTH);
		err_at(copy, len, end, what, errbuf);
		goto out;
	}
	json = cJSON_ParseWithLengthOpts(copy, len + 1, &end, 1);
	if (!json)
		err_at(copy, len, end, "invalid JSON", errbuf);
out:
	free(copy);
	return json;
}

/* ---- printing ------------------------------------------------------------
 *
 * The same compact text as cJSON_PrintUnformatted, byte for byte, but
 * faster: cJSON 1.7.15 prints every number with "%1.15g" and reads it back
 * with sscanf, a microsecond or two each, and grows its buffer by
 * reallocs. Here whole numbers below 10^15 (for which "%1.15g" gives the
 * plain digits) are written directly, runs of plain string bytes are
 * copied at once, and the text is built in a per-thread buffer that keeps
 * its storage between calls.
 */

#define JSON_PRINT_KEEP 65536 /* a thread keeps at most this much */

/* The per-thread buffer lives behind a key whose destructor frees it when
   the thread ends. */
static pthread_key_t json_print_key;
static pthread_once_t json_print_once = PTHREAD_ONCE_INIT;

static void
json_print_buf_free(void *p)
{
	cm_buf_release(p);
	free(p);
}

static void
json_print_key_init(void)
{
	if (pthread_key_create(&json_print_key, json_print_buf_free) != 0)
		abort();
}

static struct cm_buf *
json_print_buf(void)
{
	struct cm_buf *b;

	pthread_once(&json_print_once, json_print_key_init);
	b = pthread_getspecific(json_print_key);
	if (!b) {
		b = cm_xcalloc(1, sizeof(*b));
		if (pthread_setspecific(json_print_key, b) != 0)
			abort();
	}
	return b;
}

/* s as a JSON string, escaped as cJSON does. */
static void
print_str(struct cm_buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : ""), *run;
	char esc[8];

	cm_buf_putc(b, '"');
	for (run = p; *p; p++) {
		if (*p >= 0x20 && *p != '"' && *p != '\\')
			continue;
		cm_buf_add(b, run, (size_t)(p - run));
		switch (*p) {
		case '"':
			cm_buf_add(b, "\\\"", 2);
			break;
		case '\\':
			cm_buf_add(b, "\\\\", 2);
			break;
		case '\b':
			cm_buf_add(b, "\\b", 2);
			break;
		case '\f':
			cm_buf_add(b, "\\f", 2);
			break;
		case '\n':
			cm_buf_add(b, "\\n", 2);
			break;
		case '\r':
			cm_buf_add(b, "\\r", 2);
			break;
		case '\t':
			cm_buf_add(b, "\\t", 2);
			break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			cm_buf_add(b, esc, 6);
		}
		run = p + 1;
	}
	cm_buf_add(b, run, (size_t)(p - run));
	cm_buf_putc(b, '"');
}

/* d as cJSON prints it: null for NaN and infinities, else the shortest of
   "%1.15g" and "%1.17g" that reads back as d. */
static void
print_num(struct cm_buf *b, double d)
{
	char num[32];
	double back, m;
	size_t n;

	if (isnan(d) || isinf(d)) {
		cm_buf_add(b, "null", 4);
		return;
	}
	if (d == floor(d) && fabs(d) < 1e15 && !(d == 0 && signbit(d))) {
		num[0] = '-';
		n = cm_u64_text((uint64_t)fabs(d), 10, num + 1);
		cm_buf_add(b, d < 0 ? num : num + 1, d < 0 ? n + 1 : n);
		return;
	}
	snprintf(num, sizeof(num), "%1.15g", d);
	back = strtod(num, NULL);
	m = fabs(back) > fabs(d) ? fabs(back) : fabs(d);
	if (!(fabs(back - d) <= m * DBL_EPSILON))
		snprintf(num, sizeof(num), "%1.17g", d);
	cm_buf_puts(b, num);
}

/* The item's text; false for an item cJSON could not print either (an
   invalid type, a raw item without text). */
static bool
print_item(struct cm_buf *b, const cJSON *item)
{
	const cJSON *c;

	switch (item->type & 0xff) {
	case cJSON_NULL:
		cm_buf_add(b, "null", 4);
		return true;
	case cJSON_False:
		cm_buf_add(b, "false", 5);
		return true;
	case cJSON_True:
		cm_buf_add(b, "true", 4);
		return true;
	case cJSON_Number:
		print_num(b, item->valuedouble);
		return true;
	case cJSON_String:
		print_str(b, item->valuestring);
		return true;
	case cJSON_Raw:
		if (!item->valuestring)
			return false;
		cm_buf_puts(b, item->valuestring);
		return true;
	case cJSON_Array:
		cm_buf_putc(b, '[');
		for (c = item->child; c; c = c->next) {
			if (!print_item(b, c))
				return false;
			if (c->next)
				cm_buf_putc(b, ',');
		}
		cm_buf_putc(b, ']');
		return true;
	case cJSON_Object:
		cm_buf_putc(b, '{');
		for (c = item->child; c; c = c->next) {
			print_str(b, c->string);
			cm_buf_putc(b, ':');
			if (!print_item(b, c))
				return false;
			if (c->next)
				cm_buf_putc(b, ',');
		}
		cm_buf_putc(b, '}');
		return true;
	default:
		return false;
	}
}

char *
cm_json_print(const cJSON *json)
{
	struct cm_buf *b;
	char *s = NULL;

	if (!json)
		return cm_xstrdup("null");
	b = json_print_buf();
	cm_buf_reset(b);
	if (print_item(b, json) && !cm_buf_error(b))
		s = cm_xstrndup(cm_buf_str(b), b->len);
	if (b->alloc > JSON_PRINT_KEEP)
		cm_buf_release(b);
	if (s)
		return s;
	s = cJSON_PrintUnformatted(json); /* over the cap, or not printable */
	if (!s) {
		fprintf(stderr, "out of memory printing JSON\n");
		abort();
	}
	return s;
}

/* ---- field getters ------------------------------------------------------ */

/* The field, or NULL with the status to return: CM_ENOENT for a missing
   optional field, CM_EINVAL (and a message) for a missing required one or
   a parent that is not an object. JSON null counts as missing. */
static const cJSON *
field(const cJSON *obj, const char *path, const char *name, bool required,
      int *rc, char *errbuf)
{
	const cJSON *f;

	if (!cJSON_IsObject(obj)) {
		if (path)
			cm_errf(errbuf, "field '%s' must be an object", path);
		else
			cm_errf(errbuf, "the JSON document must be an object");
		*rc = CM_EINVAL;
		return NULL;
	}
	f = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (f && !cJSON_IsNull(f))
		return f;
	*rc = CM_ENOENT;
	if (required) {
		cm_errf(errbuf, "field '%s%s%s' is required", path ? path : "",
			path ? "." : "", name);
		*rc = CM_EINVAL;
	}
	return NULL;
}

/* "field 'path.name' <what>" into errbuf; CM_EINVAL. */
static int __attribute__((format(printf, 4, 5)))
bad(char *errbuf, const char *path, const char *name, const char *fmt, ...)
{
	char what[CM_ERRBUF_LEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	cm_errf(errbuf, "field '%s%s%s' %s", path ? path : "", path ? "." : "",
		name, what);
	return CM_EINVAL;
}

int
cm_json_get_str(const cJSON *obj, const char *path, const char *name,
		bool required, size_t max_len, const char **out,
		char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *f;
	int rc = 0;

	f = field(obj, path, name, required, &rc, errbuf);
	if (!f)
		return rc;
	if (!cJSON_IsString(f) || !f->valuestring)
		return bad(errbuf, path, name, "must be a string");
	if (max_len && strlen(f->valuestring) > max_len)
		return bad(errbuf, path, name,
			   "must be a string of at most %zu bytes", max_len);
	if (out)
		*out = f->valuestring;
	return 0;
}

/* Whether v is an integer a double represents exactly. */
static bool
is_safe_integer(double v)
{
	return isfinite(v) && floor(v) == v && fabs(v) <= JSON_MAX_SAFE_INT;
}

int
cm_json_get_i64(const cJSON *obj, const char *path, const char *name,
		bool required, int64_t min, int64_t max, int64_t *out,
		char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *f;
	double v;
	int rc = 0;

	f = field(obj, path, name, required, &rc, errbuf);
	if (!f)
		return rc;
	v = cJSON_IsNumber(f) ? f->valuedouble : NAN;
	/* |v| <= 2^53 - 1 here, so the conversion is exact */
	if (!is_safe_integer(v) || (int64_t)v < min || (int64_t)v > max)
		return bad(errbuf, path, name,
			   "must be an integer between %" PRId64
			   " and %" PRId64,
			   min, max);
	if (out)
		*out = (int64_t)v;
	return 0;
}

int
cm_json_get_double(const cJSON *obj, const char *path, const char *name,
		   bool required, double min, double max, double *out,
		   char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *f;
	int rc = 0;

	f = field(obj, path, name, required, &rc, errbuf);
	if (!f)
		return rc;
	if (!cJSON_IsNumber(f) || !isfinite(f->valuedouble) ||
	    f->valuedouble < min || f->valuedouble > max)
		return bad(errbuf, path, name,
			   "must be a number between %g and %g", min, max);
	if (out)
		*out = f->valuedouble;
	return 0;
}

int
cm_json_get_bool(const cJSON *obj, const char *path, const char *name,
		 bool required, bool *out, char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *f;
	int rc = 0;

	f = field(obj, path, name, required, &rc, errbuf);
	if (!f)
		return rc;
	if (!cJSON_IsBool(f))
		return bad(errbuf, path, name, "must be true or false");
	if (out)
		*out = cJSON_IsTrue(f);
	return 0;
}

/* "a, b, c" into out (truncated to fit). */
static void
join_values(const char *const *values, char *out, size_t n)
{
	size_t used = 0;
	int i;

	out[0] = '\0';
	for (i = 0; values[i] && used < n; i++)
		used += (size_t)snprintf(out + used, n - used, "%s%s",
					 i ? ", " : "", values[i]);
}

int
cm_json_get_enum(const cJSON *obj, const char *path, const char *name,
		 bool required, const char *const *values, int *out,
		 char errbuf[CM_ERRBUF_LEN])
{
	char list[CM_ERRBUF_LEN];
	const cJSON *f;
	int i, rc = 0;

	f = field(obj, path, name, required, &rc, errbuf);
	if (!f)
		return rc;
	for (i = 0; cJSON_IsString(f) && f->valuestring && values[i]; i++) {
		if (!strcmp(f->valuestring, values[i])) {
			if (out)
				*out = i;
			return 0;
		}
	}
	join_values(values, list, sizeof(list));
	return bad(errbuf, path, name, "must be one of: %s", list);
}

int
cm_json_get_uuid(const cJSON *obj, const char *path, const char *name,
		 bool required, const char **out, char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *f;
	int rc = 0;

	f = field(obj, path, name, required, &rc, errbuf);
	if (!f)
		return rc;
	if (!cJSON_IsString(f) || !cm_is_uuid(f->valuestring))
		return bad(errbuf, path, name, "must be a UUID");
	if (out)
		*out = f->valuestring;
	return 0;
}

int
cm_json_get_object(const cJSON *obj, const char *path, const char *name,
		   bool required, const cJSON **out, char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *f;
	int rc = 0;

	f = field(obj, path, name, required, &rc, errbuf);
	if (!f)
		return rc;
	if (!cJSON_IsObject(f))
		return bad(errbuf, path, name, "must be an object");
	if (out)
		*out = f;
	return 0;
}

int
cm_json_get_array(const cJSON *obj, const char *path, const char *name,
		  bool required, int max_items, const cJSON **out,
		  char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *f;
	int rc = 0;

	f = field(obj, path, name, required, &rc, errbuf);
	if (!f)
		return rc;
	if (!cJSON_IsArray(f))
		return bad(errbuf, path, name, "must be an array");
	if (max_items > 0 && cJSON_GetArraySize(f) > max_items)
		return bad(errbuf, path, name,
			   "must be an array of at most %d items", max_items);
	if (out)
		*out = f;
	return 0;
}

void
cm_json_add_next_cursor(cJSON *obj, const char *cursor)
{
	if (cursor && *cursor)
		cJSON_AddStringToObject(obj, "next_cursor", cursor);
	else
		cJSON_AddNullToObject(obj, "next_cursor");
}

cJSON *
cm_json_list(cJSON *items, const char *next_cursor)
{
	cJSON *page = cJSON_CreateObject();

	cJSON_AddItemToObject(page, "items",
			      items ? items : cJSON_CreateArray());
	cm_json_add_next_cursor(page, next_cursor);
	return page;
}
