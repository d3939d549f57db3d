/*
 * rate.c - the per-caller rate limit: a token bucket per uid, refilled at
 * daemon.rate_limit requests a second and holding as many.
 */
#define _GNU_SOURCE

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "keywayd.h"

#define NBUCKETS 256

struct bucket {
	struct bucket *next;
	uid_t uid;
	double tokens;
	double at;	/* when tokens was counted, in seconds */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct bucket *table[NBUCKETS];

static double seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool kwd_rate_take(uid_t uid, unsigned rate)
{
	struct bucket *b;
	double t = seconds();
	bool ok;

	if (rate == 0)
		return true;
	pthread_mutex_lock(&lock);
	for (b = table[uid % NBUCKETS]; b && b->uid != uid; b = b->next)
		;
	if (!b) {
		b = malloc(sizeof(*b));
		if (!b) {
			pthread_mutex_unlock(&lock);
			return true;
		}
		b->uid = uid;
		b->tokens = rate;
		b->at = t;
		b->next = table[uid % NBUCKETS];
		table[uid % NBUCKETS] = b;
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
}
