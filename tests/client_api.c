/*
 * client_api.c - what tests/cli/daemon_client.sh asks of the C API with a
 * configuration that makes libkeyway a client of keywayd:
 *
 *     client_api CONFIG USER
 *     client_api CONFIG USER CHAIN
 *
 * With CHAIN it only resolves anthropic for USER through CHAIN and prints
 * "CHAIN: STATUS: kw_last_error()" (or "CHAIN: ok"), for a comparison of
 * a client's status with that of the same resolve in process; it exits 0.
 *
 * Without, it opens CONFIG, resolves anthropic for USER, reports it
 * unused, reports it again, resolves again and frees that secret after
 * kw_close(), lists keys, and prints one line for each step (the key
 * itself once, on the "value" line: run it with its stdout kept private).
 * Exits 0 when every step went as a client's should, 1 otherwise.
 */
#include <stdio.h>
#include <string.h>

#include <keyway/keyway.h>

static int failed;

static void step(const char *what, kw_status st, kw_status want)
{
	if (st == KW_OK)
		printf("%s: ok\n", what);
	else
		printf("%s: %s: %s\n", what, kw_status_str(st), kw_last_error());
	if (st != want)
		failed = 1;
}

static kw_status no_key(void *arg, const kw_key_info *info)
{
	(void)arg;
	(void)info;
	return KW_OK;
}

int main(int argc, char **argv)
{
	kw_request req = KW_REQUEST_INIT;
	kw_actor admin = KW_ACTOR_INIT;
	kw_secret *s = NULL, *later = NULL;
	kw_ctx *ctx = NULL;
	kw_status st;

	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: client_api CONFIG USER [CHAIN]\n");
		return 2;
	}
	req.provider = "anthropic";
	req.user = argv[2];
	admin.role = KW_ROLE_SYSADMIN;

	st = kw_open(&ctx, argv[1]);
	step("open", st, KW_OK);
	if (st != KW_OK)
		return 1;
	if (argc == 4) {
		req.chain = argv[3];
		st = kw_resolve(ctx, &req, &s);
		/* kw_status_str() names the status, whatever its text. */
		step(argv[3], st, st);
		kw_secret_free(s);
		kw_close(ctx);
		return 0;
	}
	printf("sensitive_env: %s\n",
	       kw_sensitive_env(ctx) == NULL ? "none" : "some");
	if (kw_sensitive_env(ctx) != NULL)
		failed = 1;

	st = kw_resolve(ctx, &req, &s);
	step("resolve", st, KW_OK);
	if (st == KW_OK) {
		printf("backend: %s\n", kw_secret_backend(s));
		printf("value: %s\n", kw_secret_value(s));
		printf("len: %s\n", kw_secret_len(s) == strlen(kw_secret_value(s))
					    ? "right" : "wrong");
		step("report unused", kw_secret_report(s, KW_UNUSED), KW_OK);
		step("report again", kw_secret_report(s, KW_UNUSED),
		     KW_ERR_INVAL);
		kw_secret_free(s);
	}

	st = kw_key_list(ctx, &admin, NULL, NULL, no_key, NULL);
	step("list", st, KW_ERR_UNSUPPORTED);

	st = kw_resolve(ctx, &req, &later);
	step("resolve again", st, KW_OK);
	kw_close(ctx);
	/* Freed after kw_close(): its lease is still reported. */
	kw_secret_free(later);
	printf("freed after close\n");
	return failed;
}
