/*
 * uses.c - use counts of the file's keys, written seldom.
 *
 * The library hands a backend its counts every few seconds, and for the
 * SQLite store a batch is one small transaction.  Here every write
 * replaces the whole file, and every program that has the file loaded
 * reads it again at its next lookup: written that often, counts alone
 * would keep a host's programs re-reading a file no key of which changed.
 * So counts wait here, added up per key, and are written at most once a
 * minute (FILE_USES_EVERY), with the first batch after that minute, and
 * when the backend closes.  They are informational: a crash loses those
 * held, which for a program idle since its last batch may be older than
 * a minute.
 *
 * After fork(), the child holds a copy of the parent's counts; the
 * library never closes a backend in the child, so only the process that
 * noted them writes them.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <keyway/module.h>

#include "file.h"

/* Seconds between two writes of counts. */
#define FILE_USES_EVERY 60

/* One key's uses not yet written. */
struct file_use {
	kw_scope scope;
	char *owner;                /* NULL for a system key */
	char *provider;
	uint64_t count;
	int64_t when;
};

static int64_t monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

static bool same_key(const struct file_use *u, const kw_store_key *k)
{
	const char *owner = k->scope == KW_SCOPE_SYSTEM ? NULL : k->owner;

	return u->scope == k->scope && strcmp(u->provider, k->provider) == 0 &&
	       (u->owner == NULL ? owner == NULL
				 : owner != NULL && strcmp(u->owner, owner) == 0);
}

static void uses_free(struct file_use *uses, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(uses[i].owner);
		free(uses[i].provider);
	}
	free(uses);
}

/* Add a use to the pending counts (under uses_lock); false when out of
 * memory, and the use is not counted. */
static bool note_use(struct file_state *st, const kw_store_use *u)
{
	const char *owner = u->key.scope == KW_SCOPE_SYSTEM ? NULL
							     : u->key.owner;
	struct file_use *p;

	for (size_t i = 0; i < st->nuses; i++) {
		p = &st->uses[i];
		if (same_key(p, &u->key)) {
			p->count += u->count;
			if (u->when > p->when)
				p->when = u->when;
			return true;
		}
	}
	if (st->nuses == st->uses_cap) {
		size_t cap = st->uses_cap != 0 ? 2 * st->uses_cap : 8;

		p = realloc(st->uses, cap * sizeof(*p));
		if (p == NULL)
			return false;
		st->uses = p;
		st->uses_cap = cap;
	}
	p = &st->uses[st->nuses];
	*p = (struct file_use){ u->key.scope, NULL, NULL, u->count, u->when };
	p->provider = strdup(u->key.provider);
	p->owner = owner != NULL ? strdup(owner) : NULL;
	if (p->provider == NULL || (owner != NULL && p->owner == NULL)) {
		free(p->provider);
		free(p->owner);
		return false;
	}
	st->nuses++;
	return true;
}

struct used_arg {
	const struct file_use *uses;
	size_t n;
};

static kw_status change_used(struct file_state *st, struct file_edit *ed,
			     void *arg, kw_reply *r)
{
	const struct used_arg *a = arg;

	(void)st;
	(void)r;
	for (size_t i = 0; i < a->n; i++) {
		const struct file_use *u = &a->uses[i];
		bool found;
		size_t at;

		at = file_find(ed->recs, ed->n, u->scope, u->owner, u->provider,
			       &found);
		/* A key deleted since it was used: nothing to count. */
		if (!found)
			continue;
		ed->recs[at].usage_count += u->count;
		if (u->when > ed->recs[at].last_used)
			ed->recs[at].last_used = u->when;
	}
	return KW_OK;
}

/*
 * Write what is pending, taken out of st first so that lookups noting
 * uses meanwhile do not wait for the file.  When another writer keeps the
 * lock, the counts go back to wait for the next write.
 */
static kw_status write_pending(struct file_state *st, kw_reply *r)
{
	struct used_arg a;
	struct file_use *take;
	size_t n;
	kw_status rc;

	pthread_mutex_lock(&st->uses_lock);
	take = st->uses;
	n = st->nuses;
	st->uses = NULL;
	st->nuses = st->uses_cap = 0;
	st->uses_written = monotonic_seconds();
	pthread_mutex_unlock(&st->uses_lock);
	if (n == 0)
		return KW_OK;
	a = (struct used_arg){ take, n };
	rc = file_write(st, FILE_WAIT_USES, change_used, &a, r);
	if (rc == KW_ERR_UNAVAIL) {
		pthread_mutex_lock(&st->uses_lock);
		for (size_t i = 0; i < n; i++) {
			const kw_store_key k = { take[i].scope, take[i].owner,
						 take[i].provider };
			const kw_store_use u = { k, take[i].count,
						 take[i].when };

			(void)note_use(st, &u);
		}
		pthread_mutex_unlock(&st->uses_lock);
	}
	uses_free(take, n);
	return rc;
}

kw_status file_used_batch(void *state, const kw_store_use *uses, size_t n,
			  kw_reply *r)
{
	struct file_state *st = state;
	bool due, lost = false;

	pthread_mutex_lock(&st->uses_lock);
	for (size_t i = 0; i < n; i++) {
		const kw_store_use *u = &uses[i];

		if (u->key.scope != st->scope || u->key.provider == NULL ||
		    u->count == 0)
			continue;
		if (!note_use(st, u))
			lost = true;
	}
	due = st->nuses > 0 &&
	      monotonic_seconds() - st->uses_written >= FILE_USES_EVERY;
	pthread_mutex_unlock(&st->uses_lock);
	if (lost) {
		st->host->reply_detail(r, "out of memory: some use counts of "
				       "%s are lost", st->path);
		return KW_ERR_NOMEM;
	}
	return due ? write_pending(st, r) : KW_OK;
}

kw_status file_used(void *state, const kw_store_key *k, uint64_t count,
		    int64_t when, kw_reply *r)
{
	const kw_store_use u = { *k, count, when };

	return file_used_batch(state, &u, 1, r);
}

void file_uses_init(struct file_state *st)
{
	pthread_mutex_init(&st->uses_lock, NULL);
	/* The first counts are written at once: a short-lived program's
	 * only batch is written when it closes anyway. */
	st->uses_written = monotonic_seconds() - FILE_USES_EVERY;
}

void file_uses_close(struct file_state *st)
{
	if (st->kr != NULL && st->nuses > 0) {
		kw_status rc = write_pending(st, NULL);

		if (rc != KW_OK)
			st->host->log(st->inst, KW_LOG_WARNING,
				      "the use counts of %s since its last "
				      "write are lost", st->path);
	}
	uses_free(st->uses, st->nuses);
	st->uses = NULL;
	st->nuses = st->uses_cap = 0;
	pthread_mutex_destroy(&st->uses_lock);
}
