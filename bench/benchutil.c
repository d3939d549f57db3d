/*
 * benchutil.c - clock, key names and values, request order, threaded runs
 * and JSON output shared by the benchmark programs.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchutil.h"

uint64_t bu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bu_user_name(uint64_t i, char buf[BU_NAME_SIZE])
{
	snprintf(buf, BU_NAME_SIZE, "u%07" PRIu64, i);
}

/* splitmix64: every output bit depends on every input bit. */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

void bu_key_value(uint64_t i, char out[BU_KEY_LEN])
{
	static const char prefix[] = "sk-ant-api03-";
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		"0123456789-_";
	const size_t plen = sizeof(prefix) - 1;
	uint64_t bits = 0;
	int left = 0;

	memcpy(out, prefix, plen);
	for (size_t k = plen; k < BU_KEY_LEN - 2; k++) {
		if (left < 6) {
			bits = mix(i * 1000003u + k);
			left = 64;
		}
		out[k] = alphabet[bits & 63];
		bits >>= 6;
		left -= 6;
	}
	out[BU_KEY_LEN - 2] = 'A';
	out[BU_KEY_LEN - 1] = 'A';
}

char *bu_name_table(uint64_t n)
{
	char *t = malloc((size_t)n * BU_NAME_SIZE);

	if (t == NULL)
		return NULL;
	for (uint64_t i = 0; i < n; i++)
		bu_user_name(i, t + i * BU_NAME_SIZE);
	return t;
}

void bu_rng_seed(struct bu_rng *r, uint64_t seed)
{
	r->s = mix(seed) | 1;
}

/* xorshift64*: a few cycles, which both sides of a comparison pay. */
uint64_t bu_rng_next(struct bu_rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545f4914f6cdd1dULL;
}

uint64_t bu_rng_below(struct bu_rng *r, uint64_t n)
{
	/* Lemire's multiply-shift: bias below 2^-32 for these n. */
	return (uint64_t)(((unsigned __int128)bu_rng_next(r) * n) >> 64);
}

uint64_t bu_draw(struct bu_rng *r, uint64_t users, uint64_t active)
{
	if (active == 0 || active >= users)
		return bu_rng_below(r, users);
	return bu_rng_below(r, active) * (users / active);
}

void bu_json_list(FILE *f, const char *key, const double *v, size_t n)
{
	fprintf(f, "\"%s\": [", key);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%.3f", i > 0 ? ", " : "", v[i]);
	fputc(']', f);
}

void bu_json_str(FILE *f, const char *key, const char *s)
{
	fprintf(f, "\"%s\": \"", key);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

uint64_t bu_count(const char *prog, const char *opt, const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
		fprintf(stderr, "%s: %s: expected a count, got \"%s\"\n", prog,
			opt, s);
		exit(2);
	}
	return v;
}

bool bu_run_opt(struct bu_run *r, const char *prog, int c, const char *arg)
{
	switch (c) {
	case 'n':
		r->users = bu_count(prog, "-n", arg);
		return true;
	case 'k':
		r->ops = bu_count(prog, "-k", arg);
		return true;
	case 'r':
		r->reps = (int)bu_count(prog, "-r", arg);
		return true;
	case 't':
		r->threads = (unsigned)bu_count(prog, "-t", arg);
		return true;
	case 'S':
		r->seed = bu_count(prog, "-S", arg);
		return true;
	case 'A':
		r->active = bu_count(prog, "-A", arg);
		return true;
	default:
		return false;
	}
}

bool bu_run_ready(struct bu_run *r)
{
	if (r->users == 0 || r->threads == 0 || r->reps <= 0 ||
	    r->ops < r->threads)
		return false;
	pthread_barrier_init(&r->start, NULL, r->threads + 1);
	pthread_barrier_init(&r->done, NULL, r->threads + 1);
	return true;
}

uint64_t bu_run_share(const struct bu_run *r, int rep)
{
	uint64_t share = r->ops / r->threads;

	return rep < 0 ? share / 4 + 1 : share;
}

void bu_run_time(struct bu_run *r, double *ns)
{
	for (int rep = -1; rep < r->reps; rep++) {
		uint64_t t0, t1;

		pthread_barrier_wait(&r->start);
		t0 = bu_now_ns();
		pthread_barrier_wait(&r->done);
		t1 = bu_now_ns();
		if (rep >= 0)
			ns[rep] = (double)(t1 - t0) /
				  (double)(r->ops / r->threads * r->threads);
	}
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int bu_master_key(unsigned char key[32])
{
	const char *v = getenv("KEYWAY_MASTER_KEY");

	if (v == NULL || strlen(v) != 64)
		return -1;
	for (int i = 0; i < 32; i++) {
		int hi = hex_digit(v[2 * i]), lo = hex_digit(v[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		key[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}
