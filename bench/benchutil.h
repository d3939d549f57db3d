/*
 * benchutil.h - what the benchmark programs share: a clock, the names and
 * values of the keys they store and ask for, a request order, the options
 * and timed reps of the threaded ones, and the JSON line each program
 * prints for bench/run.
 *
 * Nothing here links libkeyway: the floor program uses it too.
 */
#ifndef KEYWAY_BENCHUTIL_H
#define KEYWAY_BENCHUTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A stored key is as long as an Anthropic API key. */
#define BU_KEY_LEN 108
/* "u0000042", and room for any 64-bit index with its NUL. */
#define BU_NAME_SIZE 24
#define BU_PROVIDER "anthropic"

/* Nanoseconds of CLOCK_MONOTONIC. */
uint64_t bu_now_ns(void);

/* The name of user i. */
void bu_user_name(uint64_t i, char buf[BU_NAME_SIZE]);

/*
 * The key stored for user i: BU_KEY_LEN bytes (no NUL), a fixed function
 * of i, so that every program can check what it was handed without being
 * told.  Fake keys with a real key's shape: "sk-ant-api03-", then letters,
 * digits, '-' and '_', then "AA".
 */
void bu_key_value(uint64_t i, char out[BU_KEY_LEN]);

/* A table of n user names, BU_NAME_SIZE bytes each; free() it. */
char *bu_name_table(uint64_t n);

/* A small, fast generator of the order in which users are asked for. */
struct bu_rng {
	uint64_t s;
};

void bu_rng_seed(struct bu_rng *r, uint64_t seed);
uint64_t bu_rng_next(struct bu_rng *r);
/* Uniform in [0, n), n > 0. */
uint64_t bu_rng_below(struct bu_rng *r, uint64_t n);
/*
 * A user to ask for: uniform over all `users`, or, when 0 < active < users,
 * uniform over `active` users spread evenly over them.
 */
uint64_t bu_draw(struct bu_rng *r, uint64_t users, uint64_t active);

/* Print "key": [v, v, ...] (no leading comma). */
void bu_json_list(FILE *f, const char *key, const double *v, size_t n);
/* Print "key": "s" with s escaped for JSON (no leading comma). */
void bu_json_str(FILE *f, const char *key, const char *s);

/* Parse a decimal count for option `opt`; exits with status 2 on junk. */
uint64_t bu_count(const char *prog, const char *opt, const char *s);

/*
 * A threaded benchmark's run: a warm-up of a quarter of the operations,
 * then `reps` reps of `ops` operations shared by `threads` threads, each
 * rep started and ended by the workers and the main thread together (the
 * barriers `start` and `done`).
 */
struct bu_run {
	uint64_t users;         /* -n */
	uint64_t active;        /* -A: users asked for, spread over them */
	uint64_t ops;           /* -k: per rep, over all threads */
	unsigned threads;       /* -t */
	uint64_t seed;          /* -S */
	int reps;               /* -r */
	pthread_barrier_t start, done;
};

/* Take option c (-n, -k, -r, -t, -S or -A) and its argument into r; false
 * when c is none of them.  Exits with status 2 on a count that is junk. */
bool bu_run_opt(struct bu_run *r, const char *prog, int c, const char *arg);
/* Whether r makes a run (users, threads and reps, at least an operation
 * per thread); if so, start its barriers for the threads and main. */
bool bu_run_ready(struct bu_run *r);
/* A thread's operations in rep (-1: the warm-up). */
uint64_t bu_run_share(const struct bu_run *r, int rep);
/* The main thread's part of every rep: ns[rep] is its wall time per
 * operation done, from the workers' start to the last one's end. */
void bu_run_time(struct bu_run *r, double *ns);

/* The master key from $KEYWAY_MASTER_KEY (64 hex digits); 0 or -1. */
int bu_master_key(unsigned char key[32]);

#endif /* KEYWAY_BENCHUTIL_H */
