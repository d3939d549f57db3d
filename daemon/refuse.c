/*
 * refuse.c - refused requests recorded, in the log and the audit trail,
 * without letting one caller flood either.
 *
 * A caller's (a Unix caller's uid, a TCP caller's address) first refusal
 * for a reason is recorded at once.  Those that follow within a second for
 * the same reason are held back and counted: once the second is over (at
 * the next such refusal, or at the once-a-second tick of the main thread,
 * kwd_refused_flush()) the last of them is recorded with how many more it
 * stands for, "(and 4999 more like it from this caller in the last 1.0 s)",
 * and the next second counts afresh.  So a caller refused without pause
 * gets a record a second for each reason (there are a handful), and every
 * refusal is counted in one record or another.  Past MAX_CALLERS callers
 * and reasons within a second, the others are counted together.
 */
#define _GNU_SOURCE

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keywayd.h"

#define NBUCKETS 256
#define MAX_CALLERS 1024
/* The key of the callers past MAX_CALLERS, counted together. */
#define OTHERS ""

/* A refusal as recorded: what struct kwd_refusal points at, copied. */
struct record {
	char op[32];
	char caller[96];
	long long uid, pid;
	bool has_chain, has_provider;
	char chain[KWD_FIELD_MAX + 1];
	char provider[KWD_FIELD_MAX + 1];
	char reason[192];
	char line[768];
	size_t more;		/* refusals held back that it stands for */
	double span;		/* over how many seconds */
	bool others;		/* of the callers counted together */
};

/* A caller's key, a newline and the reason. */
#define ENTRY_KEY_MAX (KWD_KEY_MAX + 192)

struct entry {
	struct entry *next;
	char key[ENTRY_KEY_MAX];
	double start;		/* when its second began */
	size_t held;		/* refusals held back since */
	struct record last;	/* the last of them */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *table[NBUCKETS];
static size_t nentries;

static double seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int kwd_field_len(const char *s)
{
	size_t n = strnlen(s, KWD_FIELD_MAX + 1);

	if (n <= KWD_FIELD_MAX)
		return (int)n;
	/* Cut before the character the limit falls in: never in one. */
	n = KWD_FIELD_MAX;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return (int)n;
}

static void cut_copy(char *dst, const char *src)
{
	int n = kwd_field_len(src);

	memcpy(dst, src, (size_t)n);
	dst[n] = '\0';
}

static void copy_in(struct record *rec, const struct kwd_refusal *r)
{
	snprintf(rec->op, sizeof(rec->op), "%s", r->op);
	snprintf(rec->caller, sizeof(rec->caller), "%s", r->caller);
	rec->uid = r->uid;
	rec->pid = r->pid;
	rec->has_chain = r->chain != NULL;
	if (r->chain)
		cut_copy(rec->chain, r->chain);
	rec->has_provider = r->provider != NULL;
	if (r->provider)
		cut_copy(rec->provider, r->provider);
	snprintf(rec->reason, sizeof(rec->reason), "%s", r->reason);
	snprintf(rec->line, sizeof(rec->line), "%s", r->line);
	rec->more = 0;
	rec->span = 0;
	rec->others = false;
}

/* Write rec to the log and the audit trail of g; a failure only to the
 * log. */
static void write_record(struct kwd_gen *g, const struct record *rec)
{
	kw_refusal r = KW_REFUSAL_INIT;
	char more[128] = "", reason[sizeof(rec->reason) + sizeof(more)];

	if (rec->more)
		snprintf(more, sizeof(more), " (and %zu more %s in the last "
			 "%.1f s)", rec->more,
			 rec->others ? "refusals of other callers"
				     : "like it from this caller",
			 rec->span);
	snprintf(reason, sizeof(reason), "%s%s", rec->reason, more);
	kwd_log("%s%s", rec->line, more);
	r.op = rec->op;
	r.caller = rec->caller;
	r.uid = rec->uid;
	r.pid = rec->pid;
	r.chain = rec->has_chain ? rec->chain : NULL;
	r.provider = rec->has_provider ? rec->provider : NULL;
	r.reason = reason;
	if (kw_audit_refusal(g->ctx, &r) != KW_OK)
		kwd_log("audit: cannot record the refusal of %s to %s: %s",
			rec->op, rec->caller, kw_last_error());
}

static struct entry *find(const char *key)
{
	struct entry *e;

	for (e = table[kwd_key_hash(key) % NBUCKETS]; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

/* A new entry for key, its second starting at t (under lock); NULL
 * without memory. */
static struct entry *add(const char *key, double t)
{
	struct entry *e = calloc(1, sizeof(*e));
	size_t b = kwd_key_hash(key) % NBUCKETS;

	if (!e)
		return NULL;
	snprintf(e->key, sizeof(e->key), "%s", key);
	e->start = t;
	e->next = table[b];
	table[b] = e;
	nentries++;
	return e;
}

/* e's second is over at t: what it held back into out, when anything, and
 * a new second begun (under lock). */
static bool close_second(struct entry *e, double t, struct record *out)
{
	if (!e->held)
		return false;
	*out = e->last;
	out->more = e->held - 1;
	out->span = t - e->start;
	out->others = strcmp(e->key, OTHERS) == 0;
	e->held = 0;
	e->start = t;
	return true;
}

void kwd_refused(struct kwd_gen *g, const char *key,
		 const struct kwd_refusal *r)
{
	struct record *now, *due;
	struct entry *e;
	double t = seconds();
	bool write_due = false, write_now = false;
	char ekey[ENTRY_KEY_MAX];

	/* Two records: off the stack of a connection's thread. */
	now = malloc(2 * sizeof(*now));
	if (!now) {
		kwd_log("%s", r->line);
		return;
	}
	due = now + 1;
	copy_in(now, r);
	snprintf(ekey, sizeof(ekey), "%s\n%s", key, r->reason);
	pthread_mutex_lock(&lock);
	e = find(ekey);
	if (!e && nentries >= MAX_CALLERS) {
		snprintf(ekey, sizeof(ekey), "%s", OTHERS);
		e = find(ekey);
	}
	if (!e) {
		/* Without memory to count it, recorded at once. */
		add(ekey, t);
		write_now = true;
	} else if (t - e->start < 1.0) {
		e->last = *now;
		e->held++;
	} else {
		write_due = close_second(e, t, due);
		if (write_due) {
			/* Written now, so this one waits for the next. */
			e->last = *now;
			e->held = 1;
		} else {
			e->start = t;
			write_now = true;
		}
	}
	pthread_mutex_unlock(&lock);
	if (write_due)
		write_record(g, due);
	if (write_now)
		write_record(g, now);
	free(now);
}

void kwd_refused_flush(bool all)
{
	struct record *out = NULL;
	size_t n = 0, cap = 0;
	struct kwd_gen *g;
	double t = seconds();

	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < NBUCKETS; i++) {
		struct entry **pp = &table[i];

		while (*pp) {
			struct entry *e = *pp;

			if (!all && t - e->start < 1.0) {
				pp = &e->next;
				continue;
			}
			if (!e->held) {
				/* A second without refusals: forgotten. */
				*pp = e->next;
				free(e);
				nentries--;
				continue;
			}
			if (n == cap) {
				size_t nc = cap ? 2 * cap : 16;
				struct record *no = realloc(out,
							    nc * sizeof(*out));

				/* Without memory: at the next tick. */
				if (!no)
					break;
				out = no;
				cap = nc;
			}
			close_second(e, t, &out[n++]);
			pp = &e->next;
		}
	}
	pthread_mutex_unlock(&lock);
	if (n) {
		g = kwd_gen_get();
		for (size_t i = 0; i < n; i++)
			write_record(g, &out[i]);
		kwd_gen_put(g);
	}
	free(out);
}

void kwd_refused_free(void)
{
	for (size_t i = 0; i < NBUCKETS; i++) {
		while (table[i]) {
			struct entry *e = table[i];

			table[i] = e->next;
			free(e);
		}
	}
	nentries = 0;
}
