/*
 * usecount.c - use counts and last-used times of stored keys.
 *
 * They are informational, so they must not cost a database write on every
 * resolve: uses are added up in memory, per key, and written in batches by
 * a thread every few seconds and when the context closes.  A crash loses at
 * most the uses of the last flush interval (KWI_USAGE_FLUSH seconds); quota
 * charges, which must be exact, do not go through here.
 *
 * Secrets may outlive their context, so they hold a reference to this sink,
 * not to the context: a use reported after kw_close() is dropped.
 *
 * After fork(), the child has a copy of the sink but not the thread: its
 * lock may be held and its condition variable waited on by threads that
 * stayed in the parent.  The counts in it are the parent's, which writes
 * them, and so are the uses of secrets the child inherited (the parent
 * frees its own copy of each).  The child therefore never locks, signals,
 * joins or writes an inherited sink: uses noted there are dropped, and
 * letting go of it frees what can be freed without the lock.
 *
 * Nor may the thread be inside a module when the process forks: SQLite,
 * for one, keeps process-wide mutexes and a record of the POSIX locks it
 * holds on each file, and a child that inherits them taken hangs on its
 * first open of the file.  Every batch is written under write_lock, which
 * fork() takes first (kwi_usecount_fork_prepare()): the fork waits for a
 * write under way to end, and no write starts until it is done.  The
 * resolve path never takes it.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "context.h"
#include "error.h"
#include "host.h"
#include "loader.h"
#include "usecount.h"
#include "seams.h"

#define KWI_USAGE_FLUSH 5 /* seconds */

#ifdef KW_TEST_SEAMS
static int test_flush_ms;

/* Only in the library the unit tests link: write every `ms` milliseconds
 * (0: every KWI_USAGE_FLUSH seconds) in the contexts opened after it. */
void kwi_test_usecount_flush_ms(int ms)
{
	test_flush_ms = ms;
}
#endif

/* Milliseconds between two writes. */
static long flush_ms(void)
{
#ifdef KW_TEST_SEAMS
	if (test_flush_ms > 0)
		return test_flush_ms;
#endif
	return KWI_USAGE_FLUSH * 1000L;
}

/* Held around every write of counts to the modules, and across fork(). */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

void kwi_usecount_fork_prepare(void)
{
	pthread_mutex_lock(&write_lock);
}

void kwi_usecount_fork_done(void)
{
	pthread_mutex_unlock(&write_lock);
}

struct use {
	struct kw_instance *store;
	kw_scope scope;
	char *owner;
	char *provider;
	uint64_t count;
	int64_t last;
};

struct kwi_usecount {
	atomic_uint refs;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t thread;
	bool thread_started;
	bool closed;
	unsigned forks;    /* kwi_forks() when it was started */
	struct use *uses;  /* hash table */
	size_t n, cap;     /* entries, slots */
	long flush;        /* milliseconds between writes */
};

/* n is the table's capacity: empty slots have no store. */
static void uses_free(struct use *u, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(u[i].owner);
		free(u[i].provider);
	}
	free(u);
}

/* Write one store's share of a batch: in one call when it can take them
 * all (one transaction), else one key at a time. */
static void write_store(struct kw_instance *store, kw_store_use *v, size_t n)
{
	struct kw_reply r;

	kwi_reply_init(&r, store->name);
	if (store->module->ops.used_batch != NULL) {
		(void)store->module->ops.used_batch(store->state, v, n, &r);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		kwi_reply_init(&r, store->name);
		(void)store->module->ops.used(store->state, &v[i].key,
					      v[i].count, v[i].when, &r);
	}
}

/* Write a batch taken out of the sink (n slots, some empty), store by
 * store, under write_lock. */
static void write_batch(struct use *u, size_t n)
{
	kw_store_use *v = n > 0 ? calloc(n, sizeof(*v)) : NULL;

	pthread_mutex_lock(&write_lock);
	for (size_t i = 0; i < n; i++) {
		struct kw_instance *store = u[i].store;
		size_t m = 0;

		if (store == NULL)
			continue;
		for (size_t j = i; j < n; j++) {
			kw_store_use one;

			if (u[j].store != store)
				continue;
			one.key.scope = u[j].scope;
			one.key.owner = u[j].owner;
			one.key.provider = u[j].provider;
			one.count = u[j].count;
			one.when = u[j].last;
			u[j].store = NULL;
			if (v != NULL) {
				v[m++] = one;
			} else {
				/* No memory for a batch: one at a time. */
				write_store(store, &one, 1);
			}
		}
		if (m > 0)
			write_store(store, v, m);
	}
	pthread_mutex_unlock(&write_lock);
	free(v);
	uses_free(u, n);
}

/* Take what is pending; call with the lock held. */
static struct use *take(struct kwi_usecount *s, size_t *n)
{
	struct use *u = s->uses;

	*n = s->cap;
	s->uses = NULL;
	s->n = s->cap = 0;
	return u;
}

static void *flusher(void *arg)
{
	struct kwi_usecount *s = arg;
	struct timespec until;
	struct use *u;
	size_t n;

	pthread_mutex_lock(&s->lock);
	while (!s->closed) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += s->flush / 1000;
		until.tv_nsec += s->flush % 1000 * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while (!s->closed &&
		       pthread_cond_timedwait(&s->wake, &s->lock, &until) !=
			       ETIMEDOUT)
			;
		if (s->closed)
			break;
		u = take(s, &n);
		pthread_mutex_unlock(&s->lock);
		write_batch(u, n);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/*
 * The thread starts before the context reads anything secret: before its
 * master keys and before any backend opens (a dotenv file, a Vault token,
 * a store's keyring).  A new thread begins with a copy of its creator's
 * registers, vector registers included, and this one then sleeps for the
 * life of the context with them: started after the backends opened, it
 * kept in its saved registers whatever the opening thread had just
 * parsed, and a core dump of the process held a dotenv key that guarded
 * memory kept out of it everywhere else.  Whether any backend counts uses
 * is known only once the modules are loaded; kwi_usecount_settle() then
 * stops the thread of a context that has none.
 */
kw_status kwi_usecount_start(struct kw_ctx *ctx)
{
	struct kwi_usecount *s;

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return kwi_error(KW_ERR_NOMEM, "out of memory");
	atomic_init(&s->refs, 1);
	s->forks = kwi_forks();
	s->flush = flush_ms();
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	if (pthread_create(&s->thread, NULL, flusher, s) == 0) {
		s->thread_started = true;
		/* For ps -L, top -H and debuggers. */
		(void)pthread_setname_np(s->thread, "kw-usage");
	}
	/* Without the thread, counts are still written at kw_close(). */
	ctx->usage = s;
	return KW_OK;
}

void kwi_usecount_settle(struct kw_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nbackends; i++)
		if (ctx->backends[i].module->ops.used != NULL)
			return;
	kwi_usecount_stop(ctx);
}

static bool inherited(const struct kwi_usecount *s)
{
	return s->forks != kwi_forks();
}

static void usage_unref(struct kwi_usecount *s)
{
	if (atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	if (inherited(s)) {
		/* A table that a vanished thread was changing stays. */
		if (pthread_mutex_trylock(&s->lock) == 0) {
			uses_free(s->uses, s->cap);
			pthread_mutex_unlock(&s->lock);
		}
		free(s);
		return;
	}
	uses_free(s->uses, s->cap);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void kwi_usecount_stop(struct kw_ctx *ctx)
{
	struct kwi_usecount *s = ctx->usage;
	struct use *u;
	size_t n;

	if (s == NULL)
		return;
	pthread_mutex_lock(&s->lock);
	s->closed = true;
	u = take(s, &n);
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	if (s->thread_started)
		pthread_join(s->thread, NULL);
	write_batch(u, n);
	ctx->usage = NULL;
	usage_unref(s);
}

void kwi_usecount_abandon(struct kw_ctx *ctx)
{
	struct kwi_usecount *s = ctx->usage;

	ctx->usage = NULL;
	if (s != NULL)
		usage_unref(s);
}

struct kwi_usecount *kwi_usecount_ref(struct kw_ctx *ctx)
{
	if (ctx->usage != NULL)
		atomic_fetch_add(&ctx->usage->refs, 1);
	return ctx->usage;
}

static uint64_t hash(const struct kw_instance *store, kw_scope scope,
		     const char *owner, const char *provider)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)store ^
		     (uint64_t)scope;

	for (const char *p = provider; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL;
	for (const char *p = owner != NULL ? owner : ""; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return h;
}

static bool same_key(const struct use *u, const struct kw_instance *store,
		     kw_scope scope, const char *owner, const char *provider)
{
	return u->store == store && u->scope == scope &&
	       strcmp(u->provider, provider) == 0 &&
	       (u->owner == NULL ? owner == NULL
				 : owner != NULL && strcmp(u->owner, owner) == 0);
}

/* Open addressing in a power-of-two table; an empty slot has no store. */
static bool grow(struct kwi_usecount *s)
{
	size_t cap = s->cap != 0 ? 2 * s->cap : 64;
	struct use *t = calloc(cap, sizeof(*t));

	if (t == NULL)
		return false;
	for (size_t i = 0; i < s->cap; i++) {
		const struct use *u = &s->uses[i];
		size_t j;

		if (u->store == NULL)
			continue;
		j = hash(u->store, u->scope, u->owner, u->provider) & (cap - 1);
		while (t[j].store != NULL)
			j = (j + 1) & (cap - 1);
		t[j] = *u;
	}
	free(s->uses);
	s->uses = t;
	s->cap = cap;
	return true;
}

void kwi_usecount_note(struct kwi_usecount *s, struct kw_instance *store,
		       kw_scope scope, const char *owner, const char *provider,
		       int64_t when)
{
	struct use *u;
	size_t i;

	if (inherited(s))
		return;
	pthread_mutex_lock(&s->lock);
	if (s->closed)
		goto out;
	if ((s->n + 1) * 10 > s->cap * 7 && !grow(s))
		goto out; /* informational: drop it */
	i = hash(store, scope, owner, provider) & (s->cap - 1);
	for (;; i = (i + 1) & (s->cap - 1)) {
		u = &s->uses[i];
		if (u->store == NULL)
			break;
		if (same_key(u, store, scope, owner, provider)) {
			u->count++;
			if (when > u->last)
				u->last = when;
			goto out;
		}
	}
	u->owner = owner != NULL ? strdup(owner) : NULL;
	u->provider = strdup(provider);
	if (u->provider == NULL || (owner != NULL && u->owner == NULL)) {
		free(u->owner);
		free(u->provider);
		u->owner = u->provider = NULL;
		goto out;
	}
	u->store = store;
	u->scope = scope;
	u->count = 1;
	u->last = when;
	s->n++;
out:
	pthread_mutex_unlock(&s->lock);
}

void kwi_usecount_release(struct kwi_usecount *s)
{
	if (s != NULL)
		usage_unref(s);
}
