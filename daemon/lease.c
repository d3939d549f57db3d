/*
 * lease.c - the keys keywayd handed out, each held under a random id until
 * the caller reports it used or unused, or its time runs out (then it
 * counts as used).  A reported or expired lease is kept as a tombstone for
 * a while, so that a second report is told so rather than "unknown".
 */
#define _GNU_SOURCE

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "keywayd.h"

/* How long a tombstone is remembered, in seconds. */
#define TOMBSTONE_TTL 3600

struct lease {
	struct lease *next;
	char id[KWD_LEASE_ID_LEN + 1];
	kw_secret *secret;	/* NULL once reported or expired */
	struct kwd_gen *gen;
	uid_t uid;		/* who resolved it, and alone may report it */
	time_t expires;		/* while held; then when to forget it */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct lease *leases;
static size_t held;

static time_t now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* Let go of l's secret as `outcome` (under lock); the context is released
 * by the caller, outside it. */
static kw_status finish(struct lease *l, kw_outcome outcome)
{
	kw_status st;

	st = kw_secret_report(l->secret, outcome);
	kw_secret_free(l->secret);
	l->secret = NULL;
	l->expires = now() + TOMBSTONE_TTL;
	held--;
	return st;
}

bool kwd_lease_add(kw_secret *s, struct kwd_gen *g, uid_t uid, unsigned ttl,
		   char *id)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[KWD_LEASE_ID_LEN / 2];
	struct lease *l;

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return false;
	l = calloc(1, sizeof(*l));
	if (!l)
		return false;
	for (size_t i = 0; i < sizeof(raw); i++) {
		l->id[2 * i] = hex[raw[i] >> 4];
		l->id[2 * i + 1] = hex[raw[i] & 15];
	}
	memcpy(id, l->id, sizeof(l->id));
	l->secret = s;
	l->gen = g;
	l->uid = uid;
	l->expires = now() + (time_t)ttl;
	pthread_mutex_lock(&lock);
	l->next = leases;
	leases = l;
	held++;
	pthread_mutex_unlock(&lock);
	return true;
}

enum kwd_report kwd_lease_report(const char *id, uid_t uid,
				 kw_outcome outcome, kw_status *st)
{
	enum kwd_report r = KWD_REPORT_UNKNOWN;
	struct kwd_gen *g = NULL;
	struct lease *l;

	*st = KW_OK;
	pthread_mutex_lock(&lock);
	for (l = leases; l; l = l->next) {
		if (strcmp(l->id, id) != 0 || l->uid != uid)
			continue;
		if (!l->secret || l->expires <= now()) {
			r = KWD_REPORT_GONE;
			break;
		}
		*st = finish(l, outcome);
		g = l->gen;
		l->gen = NULL;
		r = *st == KW_OK ? KWD_REPORT_OK : KWD_REPORT_FAILED;
		break;
	}
	pthread_mutex_unlock(&lock);
	if (g)
		kwd_gen_put(g);
	return r;
}

/* Expire what is due; with all, every lease still held. */
static void sweep(bool all)
{
	struct lease **pp, *l, *dead = NULL;
	struct kwd_gen **gens = NULL;
	size_t ngens = 0, cap = 0;
	time_t t = now();

	pthread_mutex_lock(&lock);
	for (pp = &leases; (l = *pp) != NULL;) {
		if (l->secret && (all || l->expires <= t)) {
			if (finish(l, KW_USED) != KW_OK)
				kwd_log("lease %.8s...: %s", l->id,
					kw_last_error());
			if (ngens == cap) {
				size_t nc = cap ? 2 * cap : 16;
				struct kwd_gen **ng =
					realloc(gens, nc * sizeof(*gens));

				if (ng) {
					gens = ng;
					cap = nc;
				}
			}
			if (ngens < cap) {
				gens[ngens++] = l->gen;
				l->gen = NULL;
			}
		}
		if (!l->secret && !l->gen && (all || l->expires <= t)) {
			*pp = l->next;
			l->next = dead;
			dead = l;
			continue;
		}
		pp = &l->next;
	}
	pthread_mutex_unlock(&lock);
	for (size_t i = 0; i < ngens; i++)
		kwd_gen_put(gens[i]);
	free(gens);
	while (dead) {
		l = dead->next;
		free(dead);
		dead = l;
	}
}

void kwd_lease_sweep(void)
{
	sweep(false);
}

void kwd_lease_drain(void)
{
	sweep(true);
}

size_t kwd_lease_count(void)
{
	size_t n;

	pthread_mutex_lock(&lock);
	n = held;
	pthread_mutex_unlock(&lock);
	return n;
}
