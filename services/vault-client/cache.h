/*
 * cache.h - a small in-memory cache of read replies, with a TTL.
 *
 * Entries are keyed by a secret's scope, owner, name and requested
 * version (0: the current one) and hold the reply body, which contains the
 * secret value: it is zeroed when dropped. vc_cache_invalidate() drops
 * every version of one name (called on any change through this process).
 * At most max_entries are kept; a full cache first drops expired entries
 * and otherwise declines new ones. A reader takes vc_cache_generation()
 * before it reads the store and hands it to vc_cache_put(), which drops
 * the entry if any invalidation happened in between: a read racing a
 * write never caches the old value. Thread-safe (one mutex).
 */
#ifndef VC_CACHE_H
#define VC_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

struct vc_cache;

/* vc_cache_new - ttl_ms 0 disables the cache (get always misses). */
struct vc_cache *vc_cache_new(int ttl_ms, size_t max_entries);
/* vc_cache_free - zero and free everything; accepts NULL. */
void vc_cache_free(struct vc_cache *c);
/* vc_cache_get - a malloc'd copy of a fresh entry's body (caller zeroes
   and frees), or false. */
bool vc_cache_get(struct vc_cache *c, const struct vc_path *p, int version,
		  char **body, size_t *len);
/* vc_cache_generation - the invalidation count, for vc_cache_put. */
uint64_t vc_cache_generation(struct vc_cache *c);
/* vc_cache_put - remember body (copied) for p at version, unless the
   cache was invalidated since gen was taken. */
void vc_cache_put(struct vc_cache *c, const struct vc_path *p, int version,
		  const char *body, size_t len, uint64_t gen);
/* vc_cache_invalidate - drop every version of p. */
void vc_cache_invalidate(struct vc_cache *c, const struct vc_path *p);
/* vc_cache_size - entries held (tests). */
size_t vc_cache_size(struct vc_cache *c);

#endif
