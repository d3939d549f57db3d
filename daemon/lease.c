/*
 * lease.c - the keys keywayd handed out, each held under a random id until
 * the caller reports it used or unused, or its time runs out (then it
 * counts as used).  A reported or expired lease is kept for a while as a
 * tombstone, so that a second report is told so rather than "unknown".
 *
 * Leases are found through a hash table and age through queues in the
 * order they were made: one of held leases per lease_ttl (so each expires
 * in order; a reload may bring another), and one of tombstones, which a
 * lease joins when it is reported or expires.  At most MAX_TOMBSTONES
 * tombstones are remembered.
 *
 * At most daemon.max_leases keys are held, and room for one is taken
 * before a key is resolved (kwd_lease_reserve()).  A caller's leases are
 * also kept in the order they were made on a list of its own: when the
 * table is full, or the caller holds its share of it while others hold
 * leases too, the caller's own oldest lease counts as used to make room.
 * Another caller's lease is never let go for it: a caller that holds none
 * when the table is full is refused, and whoever holds keys keeps the
 * right to report them.
 */
#define _GNU_SOURCE

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "keywayd.h"

#define NBUCKETS 65536
#define MAX_TOMBSTONES 262144
/* How long a tombstone is remembered, in seconds. */
#define TOMBSTONE_TTL 600

struct lease {
	struct lease *hnext;	/* in its bucket */
	struct lease *qnext;	/* in its queue */
	struct lease *qprev;
	struct queue *q;	/* the queue it is in */
	char id[KWD_LEASE_ID_LEN + 1];
	kw_secret *secret;	/* NULL once reported or expired */
	struct kwd_gen *gen;	/* NULL once let go */
	uid_t uid;		/* who resolved it, and alone may report it */
	time_t expires;		/* while held; then when to forget it */
	struct owner *own;	/* while it holds a key */
	struct lease *onext;	/* in its owner's list, oldest first */
	struct lease *oprev;
};

/* A caller holding keys, or room taken for one. */
struct owner {
	struct owner *next;	/* in its bucket */
	uid_t uid;
	size_t n;		/* keys held */
	size_t pend;		/* room taken for keys being resolved */
	struct lease *head, *tail;
};

struct queue {
	struct lease *head, *tail;
	size_t n;
	unsigned ttl;		/* of a held queue */
	struct queue *next;	/* the next held queue */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct lease *buckets[NBUCKETS];
static struct queue *held_qs, tomb_q;
static size_t held;	/* leases still holding a secret */
static size_t pending;	/* room taken for keys being resolved */

#define OWNER_BUCKETS 256
static struct owner *owners[OWNER_BUCKETS];

/* The owner record of uid, made when make says so (NULL without memory,
 * or when there is none and make is false). */
static struct owner *owner_of(uid_t uid, bool make)
{
	struct owner **b = &owners[uid % OWNER_BUCKETS], *o;

	for (o = *b; o; o = o->next)
		if (o->uid == uid)
			return o;
	if (!make)
		return NULL;
	o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	o->uid = uid;
	o->next = *b;
	*b = o;
	return o;
}

/* Forget o once it holds nothing and has no room taken. */
static void owner_tidy(struct owner *o)
{
	struct owner **pp;

	if (o->n || o->pend)
		return;
	for (pp = &owners[o->uid % OWNER_BUCKETS]; *pp; pp = &(*pp)->next) {
		if (*pp == o) {
			*pp = o->next;
			break;
		}
	}
	free(o);
}

/* Take l off its owner's list: it holds no key any more (under lock). */
static void disown(struct lease *l)
{
	struct owner *o = l->own;

	if (!o)
		return;
	if (l->oprev)
		l->oprev->onext = l->onext;
	else
		o->head = l->onext;
	if (l->onext)
		l->onext->oprev = l->oprev;
	else
		o->tail = l->oprev;
	l->onext = l->oprev = NULL;
	l->own = NULL;
	o->n--;
	owner_tidy(o);
}

static time_t now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static size_t bucket_of(const char *id)
{
	/* The id is random hex: its first four digits will do. */
	return strtoul((char[5]){ id[0], id[1], id[2], id[3], 0 }, NULL, 16) %
	       NBUCKETS;
}

static void push(struct queue *q, struct lease *l)
{
	l->qnext = NULL;
	l->qprev = q->tail;
	l->q = q;
	if (q->tail)
		q->tail->qnext = l;
	else
		q->head = l;
	q->tail = l;
	q->n++;
}

static struct lease *pop(struct queue *q)
{
	struct lease *l = q->head;

	q->head = l->qnext;
	if (q->head)
		q->head->qprev = NULL;
	else
		q->tail = NULL;
	q->n--;
	l->q = NULL;
	return l;
}

/* Take l out of the queue it is in, wherever it stands. */
static void unqueue(struct lease *l)
{
	struct queue *q = l->q;

	if (l->qprev)
		l->qprev->qnext = l->qnext;
	else
		q->head = l->qnext;
	if (l->qnext)
		l->qnext->qprev = l->qprev;
	else
		q->tail = l->qprev;
	q->n--;
	l->q = NULL;
}

/* Let go of l's secret as `outcome`, under lock: only when there is no
 * memory to do it after the lock is released. */
static kw_status finish(struct lease *l, kw_outcome outcome)
{
	kw_status st;

	st = kw_secret_report(l->secret, outcome);
	kw_secret_free(l->secret);
	l->secret = NULL;
	held--;
	return st;
}

/*
 * What to do once the lock is released: keys of expired leases to report
 * used (with a Redis ledger that is a round trip, which must not hold up
 * every other resolve), then references to generations to drop.
 */
struct puts {
	struct kwd_gen **g;
	size_t n, cap;
	kw_secret **s;
	size_t ns, scap;
};

static bool grow(void **v, size_t *cap, size_t n, size_t size)
{
	size_t nc = *cap ? 2 * *cap : 16;
	void *nv;

	if (n < *cap)
		return true;
	nv = realloc(*v, nc * size);
	if (!nv)
		return false;
	*v = nv;
	*cap = nc;
	return true;
}

static void put_later(struct puts *p, struct lease *l)
{
	if (!l->gen)
		return;
	/* Without memory the generation stays open: a leak, not a fault. */
	if (!grow((void **)&p->g, &p->cap, p->n, sizeof(*p->g)))
		return;
	p->g[p->n++] = l->gen;
	l->gen = NULL;
}

/* l's key counted as used once the lock is released (under lock). */
static void used_later(struct puts *p, struct lease *l)
{
	disown(l);
	if (!grow((void **)&p->s, &p->scap, p->ns, sizeof(*p->s))) {
		if (finish(l, KW_USED) != KW_OK)
			kwd_log("lease %.8s...: %s", l->id, kw_last_error());
		return;
	}
	p->s[p->ns++] = l->secret;
	l->secret = NULL;
	held--;
}

static void put_all(struct puts *p)
{
	for (size_t i = 0; i < p->ns; i++) {
		if (kw_secret_report(p->s[i], KW_USED) != KW_OK)
			kwd_log("an expired lease: %s", kw_last_error());
		kw_secret_free(p->s[i]);
	}
	free(p->s);
	for (size_t i = 0; i < p->n; i++)
		kwd_gen_put(p->g[i]);
	free(p->g);
}

/* Move the head of q to the tombstones, counting its key as used if it
 * still holds one (under lock). */
static void retire(struct lease *l, time_t t, struct puts *p)
{
	if (l->q)
		unqueue(l);
	if (l->secret)
		used_later(p, l);
	put_later(p, l);
	l->expires = t + TOMBSTONE_TTL;
	push(&tomb_q, l);
}

static void retire_head(struct queue *q, time_t t, struct puts *p)
{
	retire(q->head, t, p);
}

static void forget_head(void)
{
	struct lease *l = pop(&tomb_q), **pp;

	for (pp = &buckets[bucket_of(l->id)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == l) {
			*pp = l->hnext;
			break;
		}
	}
	free(l);
}

/* Expire what is due, or with all, everything (under lock). */
static void age(bool all, struct puts *p)
{
	time_t t = now();

	for (struct queue *q = held_qs; q; q = q->next)
		while (q->head &&
		       (all || !q->head->secret || q->head->expires <= t))
			retire_head(q, t, p);
	while (tomb_q.head &&
	       (all || tomb_q.n > MAX_TOMBSTONES || tomb_q.head->expires <= t))
		forget_head();
}

/*
 * The random bytes of a new lease id.  Each thread draws them from the
 * kernel 16 ids at a time rather than with a system call per lease, and
 * wipes what it hands out.
 */
static bool random_id(unsigned char *raw, size_t n)
{
	static __thread unsigned char pool[16 * KWD_LEASE_ID_LEN / 2];
	static __thread size_t left;

	if (left < n) {
		if (getrandom(pool, sizeof(pool), 0) != (ssize_t)sizeof(pool))
			return false;
		left = sizeof(pool);
	}
	left -= n;
	memcpy(raw, pool + left, n);
	explicit_bzero(pool + left, n);
	return true;
}

bool kwd_lease_id(char *id)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[KWD_LEASE_ID_LEN / 2];

	if (!random_id(raw, sizeof(raw)))
		return false;
	for (size_t i = 0; i < sizeof(raw); i++) {
		id[2 * i] = hex[raw[i] >> 4];
		id[2 * i + 1] = hex[raw[i] & 15];
	}
	id[KWD_LEASE_ID_LEN] = '\0';
	explicit_bzero(raw, sizeof(raw));
	return true;
}

/* The caller other than o that holds the most keys past share, or NULL
 * when none is past it (under lock). */
static struct owner *hog(const struct owner *o, size_t share)
{
	struct owner *best = NULL;

	for (size_t i = 0; i < OWNER_BUCKETS; i++)
		for (struct owner *c = owners[i]; c; c = c->next)
			if (c != o && c->n > share &&
			    (!best || c->n > best->n))
				best = c;
	return best;
}

enum kwd_room kwd_lease_reserve(uid_t uid, unsigned max)
{
	enum kwd_room r = KWD_ROOM_OK;
	struct puts p = { 0 };
	struct owner *o;
	size_t share = ((size_t)max + 1) / 2, cap;
	time_t t = now();

	pthread_mutex_lock(&lock);
	o = owner_of(uid, true);
	if (!o) {
		r = KWD_ROOM_NOMEM;
		goto out;
	}
	/* Taken at once: it keeps o while its leases go. */
	o->pend++;
	/* Others holding keys (or about to): this caller's share is half. */
	cap = held + pending > o->n + o->pend - 1 ? share : max;
	while (o->n > 0 &&
	       (held + pending >= max || o->n + o->pend - 1 >= cap))
		retire(o->head, t, &p);
	/* Still full, and this caller holds none of it: one that holds more
	 * than its share gives its oldest, so that no caller can keep the
	 * others out by resolving faster than it reports. */
	while (held + pending >= max) {
		struct owner *h = hog(o, share);

		if (!h)
			break;
		retire(h->head, t, &p);
	}
	/* Nor by resolving many at once, slowly: room being taken counts
	 * against the share as keys held. */
	if (held + pending >= max || o->n + o->pend - 1 >= cap) {
		r = KWD_ROOM_FULL;
		o->pend--;
		owner_tidy(o);
		goto out;
	}
	pending++;
out:
	pthread_mutex_unlock(&lock);
	put_all(&p);
	return r;
}

void kwd_lease_unreserve(uid_t uid)
{
	struct owner *o;

	pthread_mutex_lock(&lock);
	o = owner_of(uid, false);
	if (o && o->pend) {
		o->pend--;
		pending--;
		owner_tidy(o);
	}
	pthread_mutex_unlock(&lock);
}

bool kwd_lease_add(kw_secret *s, struct kwd_gen *g, uid_t uid, unsigned ttl,
		   const char *id)
{
	struct queue *q;
	struct owner *o;
	struct lease *l;
	size_t b;

	l = calloc(1, sizeof(*l));
	if (!l) {
		kwd_lease_unreserve(uid);
		return false;
	}
	memcpy(l->id, id, KWD_LEASE_ID_LEN);
	l->secret = s;
	l->gen = g;
	l->uid = uid;
	l->expires = now() + (time_t)ttl;
	b = bucket_of(l->id);
	pthread_mutex_lock(&lock);
	for (q = held_qs; q && q->ttl != ttl; q = q->next)
		;
	if (!q) {
		q = calloc(1, sizeof(*q));
		if (!q) {
			pthread_mutex_unlock(&lock);
			kwd_lease_unreserve(uid);
			free(l);
			return false;
		}
		q->ttl = ttl;
		q->next = held_qs;
		held_qs = q;
	}
	/* The room kwd_lease_reserve() took, which keeps the owner. */
	o = owner_of(uid, false);
	o->pend--;
	pending--;
	l->own = o;
	l->oprev = o->tail;
	if (o->tail)
		o->tail->onext = l;
	else
		o->head = l;
	o->tail = l;
	o->n++;
	l->hnext = buckets[b];
	buckets[b] = l;
	push(q, l);
	held++;
	pthread_mutex_unlock(&lock);
	return true;
}

enum kwd_report kwd_lease_report(const char *id, uid_t uid,
				 kw_outcome outcome, kw_status *st)
{
	enum kwd_report r = KWD_REPORT_UNKNOWN;
	struct puts p = { 0 };
	kw_secret *s = NULL;
	struct lease *l;

	*st = KW_OK;
	if (strlen(id) != KWD_LEASE_ID_LEN)
		return r;
	pthread_mutex_lock(&lock);
	for (l = buckets[bucket_of(id)]; l; l = l->hnext) {
		if (strcmp(l->id, id) != 0 || l->uid != uid)
			continue;
		if (!l->secret || l->expires <= now()) {
			r = KWD_REPORT_GONE;
			break;
		}
		/* Taken out under the lock, reported after it: a second
		 * report meanwhile finds it gone.  It goes to the
		 * tombstones at once, so that a lease held long by another
		 * caller keeps no reported ones behind it. */
		s = l->secret;
		l->secret = NULL;
		held--;
		disown(l);
		put_later(&p, l);
		unqueue(l);
		l->expires = now() + TOMBSTONE_TTL;
		push(&tomb_q, l);
		while (tomb_q.n > MAX_TOMBSTONES)
			forget_head();
		break;
	}
	pthread_mutex_unlock(&lock);
	if (s) {
		*st = kw_secret_report(s, outcome);
		kw_secret_free(s);
		r = *st == KW_OK ? KWD_REPORT_OK : KWD_REPORT_FAILED;
	}
	put_all(&p);
	return r;
}

static void sweep(bool all)
{
	struct puts p = { 0 };

	pthread_mutex_lock(&lock);
	age(all, &p);
	pthread_mutex_unlock(&lock);
	put_all(&p);
}

void kwd_lease_sweep(void)
{
	sweep(false);
}

void kwd_lease_drain(void)
{
	sweep(true);
	while (held_qs) {
		struct queue *q = held_qs;

		held_qs = q->next;
		free(q);
	}
}

size_t kwd_lease_count(void)
{
	size_t n;

	pthread_mutex_lock(&lock);
	n = held;
	pthread_mutex_unlock(&lock);
	return n;
}
