/*
 * mem.h - allocation that never returns NULL, and bounded parsing helpers.
 *
 * Out of memory is not an input error: cm_xmalloc and friends print one line
 * and abort. Input is bounded elsewhere (cm_buf caps, body limits).
 * cm_parse_* replace atoi/strtol: whole string, base 10, range checked.
 * All functions are thread-safe.
 */
#ifndef COMMON_MEM_H
#define COMMON_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* cm_xmalloc - malloc or abort. */
void *cm_xmalloc(size_t n);
/* cm_xcalloc - zeroed array of nmemb*size (overflow-checked) or abort. */
void *cm_xcalloc(size_t nmemb, size_t size);
/* cm_xrealloc - realloc or abort. */
void *cm_xrealloc(void *p, size_t n);
/* cm_xstrdup - strdup or abort; NULL in, NULL out. */
char *cm_xstrdup(const char *s);
/* cm_xstrndup - copy at most n bytes plus NUL, or abort. */
char *cm_xstrndup(const char *s, size_t n);
/* cm_strlcpy - copy with truncation; returns strlen(src). */
size_t cm_strlcpy(char *dst, const char *src, size_t size);

/* cm_parse_i64 - whole-string base-10 integer in [min,max]; 0 or CM_EINVAL. */
int cm_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
/* cm_u64_text - v in base 10 or 16 (lower case) into out, NUL-ended;
   returns the number of digits. No printf: for hot paths. */
size_t cm_u64_text(uint64_t v, unsigned base, char out[24]);
/* cm_hex_encode - the n bytes at in as 2n lower-case hex digits and a
   NUL into out (2n + 1 bytes). */
void cm_hex_encode(const unsigned char *in, size_t n, char *out);
/* cm_hex_digit - the value of one hex digit (either case), or -1. */
int cm_hex_digit(int c);
/* cm_parse_bool - true/false/1/0/yes/no/on/off (any case); 0 or CM_EINVAL. */
int cm_parse_bool(const char *s, bool *out);
/* cm_parse_double - whole-string finite number in [min,max]. */
int cm_parse_double(const char *s, double min, double max, double *out);

/* cm_is_uuid - true for the canonical 36-char 8-4-4-4-12 hex form. */
bool cm_is_uuid(const char *s);
/* cm_uuid_v4 - fill out[37] with a random (RAND_bytes, drawn 64 uuids'
   worth at a time per thread, renewed after fork) v4 uuid; 0 or CM_EIO. */
int cm_uuid_v4(char out[37]);

/* cm_memzero - zero a secret; not optimised away. */
void cm_memzero(void *p, size_t n);
/* cm_consttime_eq - constant-time comparison of two byte strings. */
bool cm_consttime_eq(const void *a, size_t alen, const void *b, size_t blen);

/* cm_time_rfc3339 - format epoch seconds (UTC) into out[21], with 'Z'. */
void cm_time_rfc3339(int64_t epoch, char out[21]);
/* cm_time_rfc3339_us - the wall clock now, to the microsecond, as
   2026-01-02T03:04:05.123456Z. */
void cm_time_rfc3339_us(char out[40]);

/* cm_hash - FNV-1a (64 bit) of n bytes, continuing from h (start with
   CM_HASH_INIT); for spreading keys over table slots, never for anything
   an attacker must not be able to collide. cm_hash_str hashes a string. */
#define CM_HASH_INIT 14695981039346656037ULL
uint64_t cm_hash(uint64_t h, const void *data, size_t n);
uint64_t cm_hash_str(const char *s);
/* cm_now_ms - CLOCK_MONOTONIC milliseconds. */
int64_t cm_now_ms(void);
/* cm_now_s - wall clock seconds since the epoch. */
int64_t cm_now_s(void);

#endif
