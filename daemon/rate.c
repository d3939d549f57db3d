/*
 * rate.c - the per-caller rate limit: a token bucket per caller (a Unix
 * caller's uid, a TCP caller's address), refilled at daemon.rate_limit
 * requests a second and holding as many.  A request takes from its
 * caller's bucket before the caller's rights are looked at, so that a
 * caller refused costs no more than one served.
 *
 * The table is bounded: once it holds PRUNE_AT buckets, those filled up
 * again (a caller quiet for a second) are dropped, as a new bucket would be
 * the same; past MAX_BUCKETS callers asking at once, new ones share one.
 */
#define _GNU_SOURCE

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keywayd.h"

#define NBUCKETS 256
#define PRUNE_AT 1024
#define MAX_BUCKETS 4096

struct bucket {
	struct bucket *next;
	char who[KWD_KEY_MAX];
	double tokens;
	double at;	/* when tokens was counted, in seconds */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct bucket *table[NBUCKETS];
static size_t nbuckets;

static double seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

size_t kwd_key_hash(const char *s)
{
	size_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* Drop the buckets that are full again (under lock). */
static void prune(double t, unsigned rate)
{
	for (size_t i = 0; i < NBUCKETS; i++) {
		struct bucket **pp = &table[i];

		while (*pp) {
			struct bucket *b = *pp;

			if (b->tokens + (t - b->at) * rate >= rate) {
				*pp = b->next;
				free(b);
				nbuckets--;
			} else {
				pp = &b->next;
			}
		}
	}
}

static struct bucket *find(const char *who)
{
	struct bucket *b;

	for (b = table[kwd_key_hash(who) % NBUCKETS]; b; b = b->next)
		if (strcmp(b->who, who) == 0)
			return b;
	return NULL;
}

bool kwd_rate_take(const char *who, unsigned rate)
{
	struct bucket *b;
	double t = seconds();
	bool ok;

	if (rate == 0)
		return true;
	pthread_mutex_lock(&lock);
	b = find(who);
	if (!b && nbuckets >= PRUNE_AT)
		prune(t, rate);
	/* Too many callers at once: the rest share the bucket "". */
	if (!b && nbuckets >= MAX_BUCKETS) {
		who = "";
		b = find(who);
	}
	if (!b) {
		b = malloc(sizeof(*b));
		if (!b) {
			pthread_mutex_unlock(&lock);
			return true;
		}
		snprintf(b->who, sizeof(b->who), "%s", who);
		b->tokens = rate;
		b->at = t;
		b->next = table[kwd_key_hash(who) % NBUCKETS];
		table[kwd_key_hash(who) % NBUCKETS] = b;
		nbuckets++;
	}
	b->tokens += (t - b->at) * rate;
	if (b->tokens > rate)
		b->tokens = rate;
	b->at = t;
	ok = b->tokens >= 1;
	if (ok)
		b->tokens -= 1;
	pthread_mutex_unlock(&lock);
	return ok;
}

void kwd_rate_free(void)
{
	for (size_t i = 0; i < NBUCKETS; i++) {
		while (table[i]) {
			struct bucket *b = table[i];

			table[i] = b->next;
			free(b);
		}
	}
	nbuckets = 0;
}
