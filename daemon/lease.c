/*
 * lease.c - the keys keywayd handed out, each held under a random id until
 * the caller reports it used or unused, or its time runs out (then it
 * counts as used).  A reported or expired lease is kept for a while as a
 * tombstone, so that a second report is told so rather than "unknown".
 *
 * Leases are found through a hash table and age through queues in the
 * order they were made: one of held leases per lease_ttl (so each expires
 * in order; a reload may bring another), and one of tombstones, which a
 * lease joins when it is reported or expires.  At most daemon.max_leases
 * keys are held: past that the one closest to expiring counts as used at once; at
 * most MAX_TOMBSTONES are remembered.
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
static void retire_head(struct queue *q, time_t t, struct puts *p)
{
	struct lease *l = pop(q);

	if (l->secret)
		used_later(p, l);
	put_later(p, l);
	l->expires = t + TOMBSTONE_TTL;
	push(&tomb_q, l);
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
static void age(bool all, size_t max, struct puts *p)
{
	time_t t = now();

	for (struct queue *q = held_qs; q; q = q->next)
		while (q->head &&
		       (all || !q->head->secret || q->head->expires <= t))
			retire_head(q, t, p);
	while (held > max) {
		struct queue *first = NULL;

		for (struct queue *q = held_qs; q; q = q->next)
			if (q->head && (!first ||
					q->head->expires < first->head->expires))
				first = q;
		if (!first)
			break;
		retire_head(first, t, p);
	}
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

bool kwd_lease_add(kw_secret *s, struct kwd_gen *g, uid_t uid, unsigned ttl,
		   unsigned max, const char *id)
{
	struct puts p = { 0 };
	struct queue *q;
	struct lease *l;
	size_t b;

	l = calloc(1, sizeof(*l));
	if (!l)
		return false;
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
			free(l);
			return false;
		}
		q->ttl = ttl;
		q->next = held_qs;
		held_qs = q;
	}
	l->hnext = buckets[b];
	buckets[b] = l;
	push(q, l);
	held++;
	if (held > max)
		age(false, max, &p);
	pthread_mutex_unlock(&lock);
	put_all(&p);
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
	age(all, SIZE_MAX, &p);
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
