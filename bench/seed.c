/*
 * seed.c - fill a key store for the benchmarks through the public API.
 *
 *     seed -c CONFIG -n USERS [-o ORGS] [-f FIRST]
 *
 * Stores the key of users FIRST .. USERS-1 in backend "user_keys" and of
 * orgs 0 .. ORGS-1 in backend "org_keys" (values from bu_key_value(), so
 * that the other programs can check what they are handed), as a system
 * administrator, one kw_key_put() each: every sealed value is bound to its
 * own record, so there is no faster honest way in.  Prints one JSON line.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keyway/keyway.h>

#include "benchutil.h"

static const char *prog = "seed";

static int put(kw_ctx *ctx, const kw_actor *actor, const char *backend,
	       const char *owner, uint64_t i)
{
	kw_key_ref ref = KW_KEY_REF_INIT;
	char value[BU_KEY_LEN];
	kw_status st;

	ref.backend = backend;
	ref.owner = owner;
	ref.provider = BU_PROVIDER;
	bu_key_value(i, value);
	st = kw_key_put(ctx, actor, &ref, value, sizeof(value), NULL,
			KW_PUT_CREATE);
	explicit_bzero(value, sizeof(value));
	if (st != KW_OK) {
		fprintf(stderr, "%s: cannot store the key of %s: %s\n", prog,
			owner, kw_last_error());
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "users", required_argument, NULL, 'n' },
		{ "orgs", required_argument, NULL, 'o' },
		{ "first", required_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 }
	};
	kw_actor actor = KW_ACTOR_INIT;
	const char *config = NULL;
	uint64_t users = 0, orgs = 0, first = 0, t0, t1;
	char name[BU_NAME_SIZE];
	kw_ctx *ctx = NULL;
	int c, ret = 1;

	while ((c = getopt_long(argc, argv, "c:n:o:f:", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'n':
			users = bu_count(prog, "--users", optarg);
			break;
		case 'o':
			orgs = bu_count(prog, "--orgs", optarg);
			break;
		case 'f':
			first = bu_count(prog, "--first", optarg);
			break;
		default:
			return 2;
		}
	}
	if (config == NULL || optind != argc) {
		fprintf(stderr, "usage: %s -c CONFIG -n USERS [-o ORGS] "
			"[-f FIRST]\n", prog);
		return 2;
	}
	if (kw_open(&ctx, config) != KW_OK) {
		fprintf(stderr, "%s: %s\n", prog, kw_last_error());
		return 1;
	}
	actor.user = "bench";
	actor.role = KW_ROLE_SYSADMIN;

	t0 = bu_now_ns();
	for (uint64_t i = first; i < users; i++) {
		bu_user_name(i, name);
		if (put(ctx, &actor, "user_keys", name, i) != 0)
			goto out;
	}
	for (uint64_t i = 0; i < orgs; i++) {
		snprintf(name, sizeof(name), "o%07" PRIu64, i);
		if (put(ctx, &actor, "org_keys", name, i) != 0)
			goto out;
	}
	t1 = bu_now_ns();
	printf("{\"bench\": \"seed\", \"users\": %" PRIu64 ", \"orgs\": %"
	       PRIu64 ", \"puts\": %" PRIu64 ", \"seconds\": %.3f, "
	       "\"puts_per_s\": %.0f}\n",
	       users, orgs, users - first + orgs, (double)(t1 - t0) / 1e9,
	       (double)(users - first + orgs) * 1e9 / (double)(t1 - t0 + 1));
	ret = 0;
out:
	kw_close(ctx);
	return ret;
}
