/*
 * reload.c - what a reader of a key file pays when the file changed: the
 * first kw_resolve() after another writer replaced the file, against a
 * kw_resolve() while it is unchanged.
 *
 *     reload -c CONFIG -n USERS [-r ROUNDS] [-u UNCHANGED] [-i USER]
 *            [-O ORG] [-B BACKEND]
 *
 * Two contexts on CONFIG: the reader, which has the file loaded (it
 * resolved once before the first round), and the writer, which stands for
 * another process (a context keeps its own copy of the file, as a process
 * does).  Each round the writer rotates the key of user USER (default
 * USERS / 2) to a new value (kw_key_put() into BACKEND, which replaces the
 * whole file), then the reader resolves that user once, timed: it must
 * notice the change and hand out the new value.  Then it resolves the same
 * user UNCHANGED more times, each timed, on the unchanged file.
 *
 * The reader reports its secrets KW_UNUSED, so that it never writes use
 * counts (which would change the file under the unchanged resolves).
 * CONFIG's file is changed: run it on a copy.
 *
 * Prints one JSON line: the writer's put, the first resolve after it (in
 * ms) and the unchanged resolves (in ns), for every round.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keyway/keyway.h>

#include "benchutil.h"

static const char *prog = "reload";

struct opts {
	const char *org;
	const char *backend;
	const char *user;
};

/* Resolve for user and check that the value is want; its time in ns. */
static int timed_resolve(kw_ctx *ctx, const struct opts *o,
			 const char want[BU_KEY_LEN], uint64_t *ns)
{
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;
	uint64_t t0, t1;
	kw_status st;
	int ret = -1;

	req.provider = BU_PROVIDER;
	req.user = o->user;
	req.org = o->org;
	t0 = bu_now_ns();
	st = kw_resolve(ctx, &req, &s);
	t1 = bu_now_ns();
	if (st != KW_OK) {
		fprintf(stderr, "%s: resolve for %s: %s: %s\n", prog, o->user,
			kw_status_str(st), kw_last_error());
		return -1;
	}
	if (kw_secret_len(s) != BU_KEY_LEN ||
	    strcmp(kw_secret_backend(s), o->backend) != 0 ||
	    memcmp(want, kw_secret_value(s), BU_KEY_LEN) != 0) {
		fprintf(stderr, "%s: %s: not the value just stored handed out "
			"(%zu bytes, by %s)\n", prog, o->user,
			kw_secret_len(s), kw_secret_backend(s));
		goto out;
	}
	if (kw_secret_report(s, KW_UNUSED) != KW_OK) {
		fprintf(stderr, "%s: %s\n", prog, kw_last_error());
		goto out;
	}
	*ns = t1 - t0;
	ret = 0;
out:
	kw_secret_free(s);
	return ret;
}

/* Rotate the user's key to value; its time in ns. */
static int put(kw_ctx *ctx, const struct opts *o, const char *value,
	       uint64_t *ns)
{
	kw_actor actor = KW_ACTOR_INIT;
	kw_key_ref ref = KW_KEY_REF_INIT;
	uint64_t t0;
	kw_status st;

	actor.user = "bench";
	actor.role = KW_ROLE_SYSADMIN;
	ref.backend = o->backend;
	ref.owner = o->user;
	ref.provider = BU_PROVIDER;
	t0 = bu_now_ns();
	st = kw_key_put(ctx, &actor, &ref, value, BU_KEY_LEN, NULL,
			KW_PUT_ROTATE);
	*ns = bu_now_ns() - t0;
	if (st != KW_OK) {
		fprintf(stderr, "%s: cannot rotate the key of %s: %s\n", prog,
			o->user, kw_last_error());
		return -1;
	}
	return 0;
}

static void json_ns(const char *key, const uint64_t *v, size_t n,
		    double scale)
{
	double *d = malloc((n > 0 ? n : 1) * sizeof(*d));

	if (d == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		d[i] = (double)v[i] / scale;
	printf(", ");
	bu_json_list(stdout, key, d, n);
	free(d);
}

static void usage(void)
{
	fprintf(stderr, "usage: %s -c CONFIG -n USERS [-r ROUNDS] "
		"[-u UNCHANGED] [-i USER] [-O ORG] [-B BACKEND]\n", prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct opts o = { .org = "acme", .backend = "user_keys" };
	uint64_t users = 0, rounds = 20, unchanged = 10, index = UINT64_MAX;
	uint64_t *put_ns = NULL, *first_ns = NULL, *same_ns = NULL;
	kw_ctx *reader = NULL, *writer = NULL;
	const char *config = NULL;
	char name[BU_NAME_SIZE], value[BU_KEY_LEN];
	int c, ret = 1;

	while ((c = getopt(argc, argv, "c:n:r:u:i:O:B:")) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'n':
			users = bu_count(prog, "-n", optarg);
			break;
		case 'r':
			rounds = bu_count(prog, "-r", optarg);
			break;
		case 'u':
			unchanged = bu_count(prog, "-u", optarg);
			break;
		case 'i':
			index = bu_count(prog, "-i", optarg);
			break;
		case 'O':
			o.org = optarg;
			break;
		case 'B':
			o.backend = optarg;
			break;
		default:
			usage();
		}
	}
	if (config == NULL || users == 0 || rounds == 0 || optind != argc)
		usage();
	if (index == UINT64_MAX)
		index = users / 2;
	if (index >= users)
		usage();
	bu_user_name(index, name);
	o.user = name;
	put_ns = calloc(rounds, sizeof(*put_ns));
	first_ns = calloc(rounds, sizeof(*first_ns));
	same_ns = calloc(rounds * (unchanged > 0 ? unchanged : 1),
			 sizeof(*same_ns));
	if (put_ns == NULL || first_ns == NULL || same_ns == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		goto out;
	}
	if (kw_open(&reader, config) != KW_OK ||
	    kw_open(&writer, config) != KW_OK) {
		fprintf(stderr, "%s: %s\n", prog, kw_last_error());
		goto out;
	}
	/* The reader has the file loaded, as a running service has. */
	bu_key_value(index, value);
	for (int k = 0; k < 3; k++)
		if (timed_resolve(reader, &o, value, &same_ns[0]) != 0)
			goto out;
	for (uint64_t r = 0; r < rounds; r++) {
		/* A value no user of the store has: users + 1 + r. */
		bu_key_value(users + 1 + r, value);
		if (put(writer, &o, value, &put_ns[r]) != 0 ||
		    timed_resolve(reader, &o, value, &first_ns[r]) != 0)
			goto out;
		for (uint64_t k = 0; k < unchanged; k++)
			if (timed_resolve(reader, &o, value,
					  &same_ns[r * unchanged + k]) != 0)
				goto out;
	}
	printf("{\"bench\": \"reload\", \"users\": %" PRIu64 ", \"rounds\": %"
	       PRIu64 ", ", users, rounds);
	bu_json_str(stdout, "user", name);
	json_ns("put_ms", put_ns, rounds, 1e6);
	json_ns("first_ms", first_ns, rounds, 1e6);
	json_ns("unchanged_ns", same_ns, rounds * unchanged, 1.0);
	printf("}\n");
	ret = 0;
out:
	explicit_bzero(value, sizeof(value));
	kw_close(writer);
	kw_close(reader);
	free(put_ns);
	free(first_ns);
	free(same_ns);
	return ret;
}
