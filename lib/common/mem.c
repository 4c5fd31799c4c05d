/* mem.c - abort-on-OOM allocation, bounded parsers, small shared helpers. */
#include "common/mem.h"
#include "common/err.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/banned.h"

static void
die_oom(size_t n)
{
	fprintf(stderr, "out of memory allocating %zu bytes\n", n);
	abort();
}

void *
cm_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		die_oom(n);
	return p;
}

void *
cm_xcalloc(size_t nmemb, size_t size)
{
	void *p;

	if (size && nmemb > SIZE_MAX / size)
		die_oom(SIZE_MAX);
	p = calloc(nmemb ? nmemb : 1, size ? size : 1);
	if (!p)
		die_oom(nmemb * size);
	return p;
}

void *
cm_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q)
		die_oom(n);
	return q;
}

char *
cm_xstrdup(const char *s)
{
	if (!s)
		return NULL;
	return cm_xstrndup(s, strlen(s));
}

char *
cm_xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = cm_xmalloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

size_t
cm_strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size) {
		size_t n = len < size - 1 ? len : size - 1;

		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

static const char hex_digits[] = "0123456789abcdef";

size_t
cm_u64_text(uint64_t v, unsigned base, char out[24])
{
	char d[24];
	size_t k = 0, n;

	do {
		d[k++] = hex_digits[v % base];
		v /= base;
	} while (v);
	for (n = 0; n < k; n++)
		out[n] = d[k - 1 - n];
	out[k] = '\0';
	return k;
}

void
cm_hex_encode(const unsigned char *in, size_t n, char *out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hex_digits[in[i] >> 4];
		out[2 * i + 1] = hex_digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int
cm_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
cm_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end = NULL;
	long long v;

	if (!s || !*s || isspace((unsigned char)*s))
		return CM_EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end != '\0' || v < min || v > max)
		return CM_EINVAL;
	*out = v;
	return 0;
}

int
cm_parse_double(const char *s, double min, double max, double *out)
{
	char *end = NULL;
	double v;

	if (!s || !*s || isspace((unsigned char)*s))
		return CM_EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end != '\0' || !isfinite(v) || v < min || v > max)
		return CM_EINVAL;
	*out = v;
	return 0;
}

int
cm_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "1", "yes", "on" };
	static const char *const no[] = { "false", "0", "no", "off" };
	size_t i;

	if (!s)
		return CM_EINVAL;
	for (i = 0; i < 4; i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return CM_EINVAL;
}

bool
cm_is_uuid(const char *s)
{
	size_t i;

	if (!s)
		return false;
	for (i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return s[36] == '\0';
}

/* Random bytes for uuids, drawn from RAND_bytes UUID_POOL at a time per
   thread (one call per 64 uuids instead of one each: the DRBG's locking
   and provider lookups cost more than the bytes). A fork starts a new
   generation, so a child never reuses its parent's pool. Used bytes are
   wiped. */
#define UUID_POOL (16 * 64)

static atomic_uint uuid_generation;
static pthread_once_t uuid_once = PTHREAD_ONCE_INIT;

static void
uuid_forked(void)
{
	atomic_fetch_add(&uuid_generation, 1);
}

static void
uuid_init(void)
{
	pthread_atfork(NULL, NULL, uuid_forked);
}

static __thread struct {
	unsigned char bytes[UUID_POOL];
	size_t pos;
	unsigned generation;
	bool filled;
} uuid_pool;

static int
uuid_bytes(unsigned char b[16])
{
	unsigned gen;

	pthread_once(&uuid_once, uuid_init);
	gen = atomic_load(&uuid_generation);
	if (!uuid_pool.filled || uuid_pool.generation != gen ||
	    uuid_pool.pos + 16 > UUID_POOL) {
		uuid_pool.filled = false;
		if (RAND_bytes(uuid_pool.bytes, UUID_POOL) != 1)
			return CM_EIO;
		uuid_pool.filled = true;
		uuid_pool.generation = gen;
		uuid_pool.pos = 0;
	}
	memcpy(b, uuid_pool.bytes + uuid_pool.pos, 16);
	OPENSSL_cleanse(uuid_pool.bytes + uuid_pool.pos, 16);
	uuid_pool.pos += 16;
	return 0;
}

int
cm_uuid_v4(char out[37])
{
	unsigned char b[16];
	int i, o = 0;

	if (uuid_bytes(b) < 0)
		return CM_EIO;
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex_digits[b[i] >> 4];
		out[o++] = hex_digits[b[i] & 15];
	}
	out[o] = '\0';
	OPENSSL_cleanse(b, sizeof(b));
	return 0;
}

uint64_t
cm_hash(uint64_t h, const void *data, size_t n)
{
	const unsigned char *b = data;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

uint64_t
cm_hash_str(const char *s)
{
	return cm_hash(CM_HASH_INIT, s, strlen(s));
}

/* n as exactly w decimal digits (n < 10^w). */
static void
put_digits(char *out, unsigned n, int w)
{
	while (w-- > 0) {
		out[w] = (char)('0' + n % 10);
		n /= 10;
	}
}

void
cm_time_rfc3339_us(char out[40])
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	cm_time_rfc3339((int64_t)ts.tv_sec, out);
	out[19] = '.';
	put_digits(out + 20, (unsigned)(ts.tv_nsec / 1000), 6);
	out[26] = 'Z';
	out[27] = '\0';
}

void
cm_memzero(void *p, size_t n)
{
	if (p && n)
		OPENSSL_cleanse(p, n);
}

bool
cm_consttime_eq(const void *a, size_t alen, const void *b, size_t blen)
{
	if (alen != blen)
		return false;
	return CRYPTO_memcmp(a, b, alen) == 0;
}

/* Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
   civil_from_days): no gmtime_r, whose time zone lock every thread
   shares, and no strftime. */
void
cm_time_rfc3339(int64_t epoch, char out[21])
{
	int64_t days, secs, era, y;
	unsigned doe, yoe, doy, mp, d, m;

	/* years 0000..9999 only: the format has four digits */
	if (epoch < -62167219200LL)
		epoch = -62167219200LL; /* 0000-01-01T00:00:00Z */
	if (epoch > 253402300799LL)
		epoch = 253402300799LL; /* 9999-12-31T23:59:59Z */
	days = epoch / 86400;
	secs = epoch % 86400;
	if (secs < 0) {
		secs += 86400;
		days--;
	}
	days += 719468;
	era = (days >= 0 ? days : days - 146096) / 146097;
	doe = (unsigned)(days - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = (int64_t)yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp < 10 ? mp + 3 : mp - 9;
	if (m <= 2)
		y++;
	put_digits(out, (unsigned)y, 4);
	out[4] = '-';
	put_digits(out + 5, m, 2);
	out[7] = '-';
	put_digits(out + 8, d, 2);
	out[10] = 'T';
	put_digits(out + 11, (unsigned)(secs / 3600), 2);
	out[13] = ':';
	put_digits(out + 14, (unsigned)(secs / 60 % 60), 2);
	out[16] = ':';
	put_digits(out + 17, (unsigned)(secs % 60), 2);
	out[19] = 'Z';
	out[20] = '\0';
}

int64_t
cm_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
cm_now_s(void)
{
	return (int64_t)time(NULL);
}
