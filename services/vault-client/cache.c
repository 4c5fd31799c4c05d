/* cache.c - TTL cache of secret read replies; zeroes what it drops. */
#include "cache.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

#include "common/banned.h"

#define NBUCKETS 256

struct entry {
	struct entry *next;
	enum vc_scope scope;
	char owner[40];
	char name[VC_NAME_MAX + 1];
	int version;
	int64_t expires_ms;
	char *body;
	size_t len;
};

struct vc_cache {
	pthread_mutex_t mu;
	int ttl_ms;
	size_t max, count;
	uint64_t generation; /* invalidations so far */
	struct entry *buckets[NBUCKETS];
};

static unsigned
hash_path(const struct vc_path *p)
{
	uint64_t h = cm_hash(CM_HASH_INIT, &p->scope, sizeof(p->scope));

	h = cm_hash(h, p->owner, strlen(p->owner) + 1); /* NUL: a separator */
	return (unsigned)(cm_hash(h, p->name, strlen(p->name)) % NBUCKETS);
}

static bool
same_path(const struct entry *e, const struct vc_path *p)
{
	return e->scope == p->scope && !strcmp(e->owner, p->owner) &&
	       !strcmp(e->name, p->name);
}

static void
entry_free(struct entry *e)
{
	cm_memzero(e->body, e->len);
	free(e->body);
	free(e);
}

struct vc_cache *
vc_cache_new(int ttl_ms, size_t max_entries)
{
	struct vc_cache *c = cm_xcalloc(1, sizeof(*c));

	pthread_mutex_init(&c->mu, NULL);
	c->ttl_ms = ttl_ms < 0 ? 0 : ttl_ms;
	c->max = max_entries;
	return c;
}

/* Drop entries of bucket b matching p (any version), or expired ones
   when p is NULL. Called with the lock held. */
static void
drop_where(struct vc_cache *c, unsigned b, const struct vc_path *p, int64_t now)
{
	struct entry **pp = &c->buckets[b], *e;

	while ((e = *pp)) {
		if (p ? same_path(e, p) : e->expires_ms <= now) {
			*pp = e->next;
			entry_free(e);
			c->count--;
		} else {
			pp = &e->next;
		}
	}
}

void
vc_cache_free(struct vc_cache *c)
{
	unsigned b;

	if (!c)
		return;
	for (b = 0; b < NBUCKETS; b++)
		drop_where(c, b, NULL, INT64_MAX);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

bool
vc_cache_get(struct vc_cache *c, const struct vc_path *p, int version,
	     char **body, size_t *len)
{
	unsigned b = hash_path(p);
	int64_t now = cm_now_ms();
	struct entry *e;
	bool hit = false;

	if (!c->ttl_ms)
		return false;
	pthread_mutex_lock(&c->mu);
	for (e = c->buckets[b]; e; e = e->next) {
		if (e->version == version && same_path(e, p) &&
		    e->expires_ms > now) {
			*body = cm_xmalloc(e->len + 1);
			memcpy(*body, e->body, e->len + 1);
			*len = e->len;
			hit = true;
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return hit;
}

/* Make room when full; false if there is none. Lock held. */
static bool
make_room(struct vc_cache *c, int64_t now)
{
	unsigned b;

	if (c->count < c->max)
		return true;
	for (b = 0; b < NBUCKETS; b++)
		drop_where(c, b, NULL, now);
	return c->count < c->max;
}

uint64_t
vc_cache_generation(struct vc_cache *c)
{
	uint64_t g;

	pthread_mutex_lock(&c->mu);
	g = c->generation;
	pthread_mutex_unlock(&c->mu);
	return g;
}

void
vc_cache_put(struct vc_cache *c, const struct vc_path *p, int version,
	     const char *body, size_t len, uint64_t gen)
{
	unsigned b = hash_path(p);
	int64_t now = cm_now_ms();
	struct entry *e;

	if (!c->ttl_ms)
		return;
	e = cm_xcalloc(1, sizeof(*e));
	e->scope = p->scope;
	cm_strlcpy(e->owner, p->owner, sizeof(e->owner));
	cm_strlcpy(e->name, p->name, sizeof(e->name));
	e->version = version;
	e->expires_ms = now + c->ttl_ms;
	e->body = cm_xmalloc(len + 1);
	memcpy(e->body, body, len);
	e->body[len] = '\0';
	e->len = len;
	pthread_mutex_lock(&c->mu);
	if (gen == c->generation && make_room(c, now)) {
		e->next = c->buckets[b];
		c->buckets[b] = e;
		c->count++;
		e = NULL;
	}
	pthread_mutex_unlock(&c->mu);
	if (e)
		entry_free(e);
}

void
vc_cache_invalidate(struct vc_cache *c, const struct vc_path *p)
{
	pthread_mutex_lock(&c->mu);
	c->generation++;
	drop_where(c, hash_path(p), p, 0);
	pthread_mutex_unlock(&c->mu);
}

size_t
vc_cache_size(struct vc_cache *c)
{
	size_t n;

	pthread_mutex_lock(&c->mu);
	n = c->count;
	pthread_mutex_unlock(&c->mu);
	return n;
}
