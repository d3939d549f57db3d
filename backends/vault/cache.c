/*
 * cache.c - answers kept for cache_ttl seconds, so that a hot key costs a
 * hash and a copy, not a round trip.  Values live in host secure memory
 * and are wiped when an entry goes.  Only keys that were found are kept
 * (active or disabled); a miss always asks Vault again.  put, enable,
 * disable and rm through this backend drop the key at once; a change made
 * elsewhere is seen when the entry runs out.  Every drop moves the
 * generation, and an answer asked of Vault before a drop is not kept: a
 * lookup that raced a disable cannot put the old answer back.
 */
#include <stdlib.h>
#include <string.h>

#include "vault.h"

#define CACHE_BUCKETS 256
#define CACHE_MAX 4096 /* entries; past it, the expired go, or all */

struct vault_centry {
	struct vault_centry *next;
	char *path;
	uint32_t hash;
	char *value; /* secure memory, len + 1 bytes */
	size_t len;
	bool active;
	int64_t expires_ms;
};

static uint32_t hash_of(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

kw_status vault_cache_init(struct vault_cache *c, int64_t ttl_ms)
{
	memset(c, 0, sizeof(*c));
	c->ttl_ms = ttl_ms;
	if (ttl_ms <= 0)
		return KW_OK;
	c->buckets = calloc(CACHE_BUCKETS, sizeof(*c->buckets));
	if (c->buckets == NULL)
		return KW_ERR_NOMEM;
	c->nbuckets = CACHE_BUCKETS;
	pthread_mutex_init(&c->lock, NULL);
	return KW_OK;
}

static void entry_free(const kw_host *host, struct vault_centry *e)
{
	if (e->value != NULL) {
		host->wipe(e->value, e->len + 1);
		host->secure_free(e->value, e->len + 1);
	}
	free(e->path);
	free(e);
}

/* Drop entries: the expired ones, or (all) every one.  Under the lock. */
static void sweep(const kw_host *host, struct vault_cache *c, bool all)
{
	int64_t now = vault_now_ms();

	for (size_t i = 0; i < c->nbuckets; i++) {
		struct vault_centry **pp = &c->buckets[i], *e;

		while ((e = *pp) != NULL) {
			if (all || e->expires_ms <= now) {
				*pp = e->next;
				entry_free(host, e);
				c->count--;
			} else {
				pp = &e->next;
			}
		}
	}
}

void vault_cache_free(const kw_host *host, struct vault_cache *c)
{
	if (c->buckets == NULL)
		return;
	sweep(host, c, true);
	free(c->buckets);
	pthread_mutex_destroy(&c->lock);
	c->buckets = NULL;
}

static struct vault_centry **find(struct vault_cache *c, const char *path,
				  uint32_t h)
{
	struct vault_centry **pp = &c->buckets[h % c->nbuckets];

	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->hash == h && strcmp((*pp)->path, path) == 0)
			break;
	return pp;
}

kw_status vault_cache_get(const kw_host *host, struct vault_cache *c,
			  const char *path, kw_reply *r, uint64_t *gen)
{
	uint32_t h = hash_of(path);
	struct vault_centry *e;
	kw_status rc = KW_ERR_NOTFOUND;

	*gen = 0;
	if (c->buckets == NULL)
		return KW_ERR_NOTFOUND;
	pthread_mutex_lock(&c->lock);
	*gen = c->gen;
	e = *find(c, path, h);
	if (e != NULL && e->expires_ms > vault_now_ms()) {
		if (!e->active)
			rc = KW_ERR_DENIED;
		else
			rc = host->reply_secret(r, e->value, e->len);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void vault_cache_put(const kw_host *host, struct vault_cache *c,
		     const char *path, const char *value, size_t len,
		     bool active, uint64_t gen)
{
	uint32_t h = hash_of(path);
	struct vault_centry **pp, *e;

	if (c->buckets == NULL)
		return;
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return;
	e->path = strdup(path);
	e->value = host->secure_alloc(len + 1);
	if (e->path == NULL || e->value == NULL) {
		free(e->path);
		if (e->value != NULL)
			host->secure_free(e->value, len + 1);
		free(e);
		return;
	}
	memcpy(e->value, value, len);
	e->value[len] = '\0';
	e->len = len;
	e->hash = h;
	e->active = active;
	e->expires_ms = vault_now_ms() + c->ttl_ms;
	pthread_mutex_lock(&c->lock);
	if (c->gen != gen) {
		pthread_mutex_unlock(&c->lock);
		entry_free(host, e);
		return;
	}
	pp = find(c, path, h);
	if (*pp != NULL) {
		struct vault_centry *old = *pp;

		*pp = old->next;
		entry_free(host, old);
		c->count--;
	}
	if (c->count >= CACHE_MAX)
		sweep(host, c, false);
	if (c->count >= CACHE_MAX)
		sweep(host, c, true);
	pp = &c->buckets[h % c->nbuckets];
	e->next = *pp;
	*pp = e;
	c->count++;
	pthread_mutex_unlock(&c->lock);
}

void vault_cache_drop(const kw_host *host, struct vault_cache *c,
		      const char *path)
{
	struct vault_centry **pp, *e;

	if (c->buckets == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->gen++;
	pp = find(c, path, hash_of(path));
	e = *pp;
	if (e != NULL) {
		*pp = e->next;
		c->count--;
	}
	pthread_mutex_unlock(&c->lock);
	if (e != NULL)
		entry_free(host, e);
}
