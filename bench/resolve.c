/*
 * resolve.c - kw_resolve() of stored user keys, on one kw_ctx shared by
 * every thread.
 *
 *     resolve -c CONFIG -n USERS [-k OPS] [-r REPS] [-t THREADS] [-S SEED]
 *             [-O ORG] [-B BACKEND] [-A ACTIVE]
 *
 * Each request names a user drawn uniformly from the USERS stored, or with
 * -A from ACTIVE users spread evenly over them (in the order bench/floor
 * draws them), and org ORG (default "acme", which has no key, so an org
 * entry ahead of the user entry answers notfound).  Every
 * secret must come from BACKEND (default "user_keys") with the stored
 * length; one in 1024 is compared with the stored value.  The secret is
 * freed unreported (counts as used), as an application would.
 *
 * Prints one JSON line: ns per resolve for each rep (wall time over all
 * threads' resolves).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keyway/keyway.h>

#include "benchutil.h"

static const char *prog = "resolve";

struct shared {
	kw_ctx *ctx;
	const char *names;
	struct bu_run run;
	const char *org;
	const char *backend;
};

struct worker {
	struct shared *sh;
	unsigned index;
	pthread_t thread;
	uint64_t errors;
	char why[512];
};

static int one(struct worker *w, const char *user, uint64_t i, bool check)
{
	const struct shared *sh = w->sh;
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;
	char want[BU_KEY_LEN];
	kw_status st;
	int ret = -1;

	req.provider = BU_PROVIDER;
	req.user = user;
	req.org = sh->org;
	st = kw_resolve(sh->ctx, &req, &s);
	if (st != KW_OK) {
		snprintf(w->why, sizeof(w->why), "resolve for %s: %s: %s", user,
			 kw_status_str(st), kw_last_error());
		return -1;
	}
	if (kw_secret_len(s) != BU_KEY_LEN) {
		snprintf(w->why, sizeof(w->why), "%s: %zu bytes handed out",
			 user, kw_secret_len(s));
		goto out;
	}
	if (check) {
		bu_key_value(i, want);
		if (strcmp(kw_secret_backend(s), sh->backend) != 0 ||
		    memcmp(want, kw_secret_value(s), BU_KEY_LEN) != 0) {
			snprintf(w->why, sizeof(w->why),
				 "%s: wrong key handed out (by %s)", user,
				 kw_secret_backend(s));
			goto out;
		}
	}
	ret = 0;
out:
	kw_secret_free(s);
	return ret;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	struct bu_rng rng;

	bu_rng_seed(&rng, sh->run.seed + w->index);
	for (int rep = -1; rep < sh->run.reps; rep++) {
		uint64_t n = bu_run_share(&sh->run, rep);

		pthread_barrier_wait(&sh->run.start);
		for (uint64_t k = 0; k < n && w->errors == 0; k++) {
			uint64_t i = bu_draw(&rng, sh->run.users,
					     sh->run.active);

			if (one(w, sh->names + i * BU_NAME_SIZE, i,
				(k & 1023) == 0) != 0)
				w->errors++;
		}
		pthread_barrier_wait(&sh->run.done);
	}
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: %s -c CONFIG -n USERS [-k OPS] [-r REPS] "
		"[-t THREADS] [-S SEED] [-A ACTIVE] [-O ORG] [-B BACKEND]\n",
		prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct shared sh = { .run = { .ops = 200000, .threads = 1,
				      .seed = 1, .reps = 5 }, .org = "acme",
			     .backend = "user_keys" };
	const char *config = NULL;
	struct worker *w = NULL;
	double *ns = NULL;
	char *names = NULL;
	bool failed = false;
	int c, ret = 1;

	while ((c = getopt(argc, argv, "c:n:k:r:t:S:O:B:A:")) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'O':
			sh.org = optarg;
			break;
		case 'B':
			sh.backend = optarg;
			break;
		default:
			if (!bu_run_opt(&sh.run, prog, c, optarg))
				usage();
		}
	}
	if (config == NULL || optind != argc ||
	    !bu_run_ready(&sh.run))
		usage();
	if (kw_open(&sh.ctx, config) != KW_OK) {
		fprintf(stderr, "%s: %s\n", prog, kw_last_error());
		return 1;
	}
	names = bu_name_table(sh.run.users);
	w = calloc(sh.run.threads, sizeof(*w));
	ns = calloc((size_t)sh.run.reps, sizeof(*ns));
	if (names == NULL || w == NULL || ns == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		goto out;
	}
	sh.names = names;
	for (unsigned t = 0; t < sh.run.threads; t++) {
		w[t].sh = &sh;
		w[t].index = t;
		pthread_create(&w[t].thread, NULL, work, &w[t]);
	}
	bu_run_time(&sh.run, ns);
	for (unsigned t = 0; t < sh.run.threads; t++) {
		pthread_join(w[t].thread, NULL);
		if (w[t].errors != 0) {
			fprintf(stderr, "%s: %s\n", prog, w[t].why);
			failed = true;
		}
	}
	if (failed)
		goto out;
	printf("{\"bench\": \"resolve\", \"users\": %" PRIu64 ", \"threads\": "
	       "%u, \"active\": %" PRIu64 ", \"ops\": %" PRIu64 ", ",
	       sh.run.users, sh.run.threads, sh.run.active, sh.run.ops);
	bu_json_list(stdout, "ns_per_op", ns, (size_t)sh.run.reps);
	printf("}\n");
	ret = 0;
out:
	kw_close(sh.ctx);
	free(w);
	free(ns);
	free(names);
	return ret;
}
