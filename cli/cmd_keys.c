/*
 * cmd_keys.c - the commands that change stored keys: put and rotate,
 * enable, disable and rm, and rekey.  Each acts as the administrator of
 * the host (cli_open_as_admin()).
 */
#define _GNU_SOURCE

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* What the commands that name one stored key work with. */
struct key_cmd {
	struct cli_args a;
	kw_key_ref ref;   /* --scope and --owner, then BACKEND PROVIDER */
	kw_actor actor;
	kw_ctx *ctx;
	char *user;       /* the actor's name */
};

#define KEY_CMD_INIT(config) { \
	.a = { .config = (config) }, \
	.ref = KW_KEY_REF_INIT, \
	.actor = KW_ACTOR_INIT \
}

/*
 * --scope, --owner and extra; then BACKEND PROVIDER.  A third argument to
 * a command that reads a key may be a key typed by mistake: it is refused
 * without being repeated.
 */
static int parse_key_args(const struct command *cmd, int argc, char **argv,
			  struct cli_option extra, bool reads_key,
			  struct key_cmd *k)
{
	static const char *const operands[] = { "BACKEND", "PROVIDER", NULL };
	struct cli_option options[] = {
		CLI_KEY_OPTIONS(&k->ref),
		extra,
		CLI_END
	};
	int rc;

	rc = cli_parse(cmd, argc, argv, options, &k->a);
	if (rc != GO_ON)
		return rc;
	if (reads_key && k->a.npos > 2)
		return cli_usage_error(cmd->name, "unexpected argument (keys "
				       "are read from standard input, never "
				       "from the command line)");
	rc = cli_operands(cmd->name, &k->a, 2, operands);
	if (rc == GO_ON)
		rc = cli_check_name(cmd->name, "backend", k->a.pos[0],
				    CLI_NAME);
	if (rc == GO_ON)
		rc = cli_check_name(cmd->name, "provider", k->a.pos[1],
				    CLI_PROVIDER);
	return rc;
}

/*
 * Open the configuration as the administrator, and say before a key is
 * read what the backend's scope asks of --scope and --owner: the scope
 * is the backend's, a user or org key needs an owner, a system key has
 * none.
 */
static int open_key(const struct command *cmd, struct key_cmd *k)
{
	kw_scope scope;
	kw_status st;
	int rc;

	rc = cli_open_as_admin(cmd->name, &k->a, &k->ctx, &k->actor,
			       &k->user);
	if (rc != GO_ON)
		return rc;
	k->ref.backend = k->a.pos[0];
	k->ref.provider = k->a.pos[1];
	st = kw_backend_scope(k->ctx, k->ref.backend, &scope);
	if (st != KW_OK)
		return cli_lib_error(st);
	if (k->ref.owner == NULL && (scope == KW_SCOPE_USER ||
				     scope == KW_SCOPE_ORG))
		return cli_usage_error(cmd->name, "missing --owner (backend "
				       "\"%s\" holds %s keys: name the %s)",
				       k->ref.backend, kw_scope_str(scope),
				       kw_scope_str(scope));
	if (k->ref.owner != NULL && scope == KW_SCOPE_SYSTEM)
		return cli_usage_error(cmd->name, "--owner given, but backend "
				       "\"%s\" holds system keys, which have "
				       "none", k->ref.backend);
	if (k->ref.scope != KW_SCOPE_NONE && scope != KW_SCOPE_NONE &&
	    k->ref.scope != scope)
		return cli_usage_error(cmd->name, "--scope %s, but backend "
				       "\"%s\" holds %s keys",
				       kw_scope_str(k->ref.scope),
				       k->ref.backend, kw_scope_str(scope));
	return GO_ON;
}

struct key_find {
	const char *provider;
	bool found;
};

static kw_status find_key(void *arg, const kw_key_info *info)
{
	struct key_find *f = arg;

	if (strcmp(info->provider, f->provider) == 0)
		f->found = true;
	return KW_OK;
}

/*
 * What put and rotate can tell before the key is read: that the backend
 * stores keys, and that the key is there to rotate or not there yet to
 * put.  A backend that stores keys but cannot list them is left to
 * kw_key_put() to judge.
 */
static int check_key_slot(const struct command *cmd, struct key_cmd *k,
			  bool rotate)
{
	struct key_find f = { k->ref.provider, false };
	kw_scope scope = KW_SCOPE_NONE;
	kw_status st;

	st = kw_key_list(k->ctx, &k->actor, k->ref.backend, k->ref.owner,
			 find_key, &f);
	if (st == KW_ERR_UNSUPPORTED) {
		if (kw_backend_scope(k->ctx, k->ref.backend, &scope) == KW_OK &&
		    scope != KW_SCOPE_NONE)
			return GO_ON;
		/* No scope, no listing: a module that stores nothing. */
		fprintf(stderr, "keyway: %s: backend \"%s\" does not store "
			"keys (keys are put in a backend of module file, "
			"sqlite or vault)\n", cmd->name, k->ref.backend);
		return EXIT_ERR;
	}
	if (st != KW_OK)
		return cli_lib_error(st);
	if (kw_backend_scope(k->ctx, k->ref.backend, &scope) != KW_OK)
		return cli_lib_error(KW_ERR_INVAL);
	if (rotate && !f.found) {
		fprintf(stderr, "keyway: rotate: backend \"%s\" holds no %s "
			"key%s%s%s for %s; put stores a new one\n",
			k->ref.backend, kw_scope_str(scope),
			k->ref.owner ? " of \"" : "", cli_str(k->ref.owner),
			k->ref.owner ? "\"" : "", k->ref.provider);
		return EXIT_NOTFOUND;
	}
	if (!rotate && f.found) {
		fprintf(stderr, "keyway: put: backend \"%s\" already holds %s "
			"%s key%s%s%s for %s; rotate it instead\n",
			k->ref.backend, scope == KW_SCOPE_ORG ? "an" : "a",
			kw_scope_str(scope),
			k->ref.owner ? " of \"" : "", cli_str(k->ref.owner),
			k->ref.owner ? "\"" : "", k->ref.provider);
		return EXIT_ERR;
	}
	return GO_ON;
}

static void close_key(struct key_cmd *k)
{
	kw_close(k->ctx);
	free(k->user);
}

/* "stored org key of acme for anthropic in org_keys (sk-a****xyz9)".  The
 * scope is named only when it was given: the API does not tell the
 * backend's. */
static void print_key_done(const char *verb, const kw_key_ref *ref,
			   const char *masked)
{
	printf("%s ", verb);
	if (ref->scope != KW_SCOPE_NONE)
		printf("%s ", kw_scope_str(ref->scope));
	printf("key");
	if (ref->owner)
		printf(" of %s", ref->owner);
	printf(" for %s in %s", ref->provider, ref->backend);
	if (masked)
		printf(" (%s)", masked);
	putchar('\n');
}

/* put and rotate. */
int cmd_put(const struct command *cmd, int argc, char **argv,
	    const char *config)
{
	bool rotate = strcmp(cmd->name, "rotate") == 0;
	struct key_cmd k = KEY_CMD_INIT(config);
	struct key_buf kb = { 0 };
	char masked[KW_MASK_SIZE] = "";
	const char *name = NULL;
	kw_status st;
	int rc;

	rc = parse_key_args(cmd, argc, argv,
			    (struct cli_option)CLI_OPT_NAME("name", &name),
			    true, &k);
	if (rc != GO_ON)
		return rc;

	rc = cli_key_buf_alloc(cmd->name, &kb);
	/* Configuration problems show before anyone types a key. */
	if (rc == GO_ON)
		rc = open_key(cmd, &k);
	if (rc == GO_ON)
		rc = check_key_slot(cmd, &k, rotate);
	if (rc == GO_ON)
		rc = cli_read_key(cmd->name, k.ref.provider, &kb);
	if (rc != GO_ON)
		goto out;

	st = kw_key_put(k.ctx, &k.actor, &k.ref, kb.data, kb.len, name,
			rotate ? KW_PUT_ROTATE : KW_PUT_CREATE);
	if (st != KW_OK) {
		rc = cli_lib_error(st);
		goto out;
	}
	kw_mask(kb.data, kb.len, masked, sizeof(masked));
	print_key_done(rotate ? "rotated" : "stored", &k.ref, masked);
	rc = EXIT_OK;
out:
	explicit_bzero(masked, sizeof(masked));
	cli_key_buf_free(&kb);
	close_key(&k);
	return cli_key_signal_status(rc);
}

/* enable, disable and rm. */
int cmd_key_state(const struct command *cmd, int argc, char **argv,
		  const char *config)
{
	struct key_cmd k = KEY_CMD_INIT(config);
	const char *done;
	kw_status st;
	int rc;

	rc = parse_key_args(cmd, argc, argv, (struct cli_option)CLI_END,
			    false, &k);
	if (rc != GO_ON)
		return rc;

	rc = open_key(cmd, &k);
	if (rc != GO_ON)
		goto out;
	if (strcmp(cmd->name, "rm") == 0) {
		st = kw_key_delete(k.ctx, &k.actor, &k.ref);
		done = "deleted";
	} else if (strcmp(cmd->name, "enable") == 0) {
		st = kw_key_set_active(k.ctx, &k.actor, &k.ref, 1);
		done = "enabled";
	} else {
		st = kw_key_set_active(k.ctx, &k.actor, &k.ref, 0);
		done = "disabled";
	}
	if (st != KW_OK) {
		rc = cli_lib_error(st);
		goto out;
	}
	print_key_done(done, &k.ref, NULL);
	rc = EXIT_OK;
out:
	close_key(&k);
	return rc;
}

int cmd_rekey(const struct command *cmd, int argc, char **argv,
	      const char *config)
{
	static const char *const operands[] = { "BACKEND", NULL };
	struct cli_option options[] = { CLI_END };
	struct cli_args a = { .config = config };
	kw_actor actor = KW_ACTOR_INIT;
	uint64_t count = 0;
	char *user = NULL;
	kw_ctx *ctx = NULL;
	kw_status st;
	int rc;

	rc = cli_parse_operands(cmd, argc, argv, options, &a, 1, operands);
	if (rc == GO_ON)
		rc = cli_check_name(cmd->name, "backend", a.pos[0], CLI_NAME);
	if (rc != GO_ON)
		return rc;

	rc = cli_open_as_admin(cmd->name, &a, &ctx, &actor, &user);
	if (rc != GO_ON)
		goto out;
	st = kw_rekey(ctx, &actor, a.pos[0], &count);
	if (st != KW_OK) {
		rc = cli_lib_error(st);
		goto out;
	}
	printf("re-sealed %" PRIu64 " key%s of %s\n", count,
	       count == 1 ? "" : "s", a.pos[0]);
	rc = EXIT_OK;
out:
	kw_close(ctx);
	free(user);
	return rc;
}
