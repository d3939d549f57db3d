/*
 * cmd_exec.c - exec: resolve the keys of several providers, then run a
 * command with them in its environment and no other secret.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* One -p PROVIDER[=VAR] of exec. */
struct export {
	char *provider;
	char *var;
	kw_secret *key;
	char *entry; /* "VAR=key", handed to the command's environment */
	size_t entry_size;
};

static bool valid_var(const char *s)
{
	const char *p;

	if (!(*s == '_' || (*s >= 'A' && *s <= 'Z') ||
	      (*s >= 'a' && *s <= 'z')))
		return false;
	for (p = s + 1; *p; p++) {
		if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
			return false;
	}
	return true;
}

/*
 * Variables that the dynamic loader or a shell reads as it starts and
 * may repeat in an error message (LD_PRELOAD=KEY: "object 'KEY' cannot be
 * preloaded"): a key is never put in one.  keyway(1) lists them.
 */
static bool unsafe_var(const char *s)
{
	static const char *const names[] = { "PATH", "IFS", "BASH_ENV", "ENV",
					     NULL };

	if (strncmp(s, "LD_", 3) == 0)
		return true;
	for (size_t i = 0; names[i] != NULL; i++)
		if (strcmp(s, names[i]) == 0)
			return true;
	return false;
}

/* "open-router" -> "OPEN_ROUTER_API_KEY"; the caller validates it. */
static char *default_var(const char *provider)
{
	static const char suffix[] = "_API_KEY";
	size_t i, len = strlen(provider);
	char *var;

	var = malloc(len + sizeof(suffix));
	if (!var)
		return NULL;
	for (i = 0; i < len; i++) {
		char ch = provider[i];

		if (ch >= 'a' && ch <= 'z')
			ch = (char)(ch - 'a' + 'A');
		else if (ch == '-' || ch == '.')
			ch = '_';
		var[i] = ch;
	}
	memcpy(var + len, suffix, sizeof(suffix));
	return var;
}

static int parse_export(const char *cmd, const char *spec, struct export *e)
{
	const char *eq = strchr(spec, '=');
	size_t plen = eq ? (size_t)(eq - spec) : strlen(spec);

	int rc;

	/* What is repeated below is a name that can be shown. */
	if (kw_name_check("-p", spec) != KW_OK)
		return cli_usage_error(cmd, "%s", kw_last_error());
	if (plen == 0)
		return cli_usage_error(cmd, "-p \"%s\": missing PROVIDER",
				       spec);
	e->provider = strndup(spec, plen);
	if (e->provider) {
		rc = cli_check_name(cmd, "provider", e->provider,
				    CLI_PROVIDER);
		if (rc != GO_ON)
			return rc;
	}
	e->var = eq ? strdup(eq + 1) : default_var(spec);
	if (!e->provider || !e->var) {
		fprintf(stderr, "keyway: %s: out of memory\n", cmd);
		return EXIT_ERR;
	}
	if (valid_var(e->var) && unsafe_var(e->var))
		return cli_usage_error(cmd, "-p \"%s\": %s is read by the "
				       "dynamic loader or a shell, which may "
				       "print the key; use another variable",
				       spec, e->var);
	if (valid_var(e->var))
		return GO_ON;
	if (eq)
		return cli_usage_error(cmd, "-p \"%s\": \"%s\" is not a "
				       "valid variable name", spec, e->var);
	return cli_usage_error(cmd, "-p \"%s\": no variable name can be "
			       "made from it; use -p %s=VAR", spec, spec);
}

/* Whether environment entry env sets one of the variables exec sets. */
static bool replaced(const char *env, const struct export *ex, size_t n)
{
	size_t i, len = strcspn(env, "=");

	for (i = 0; i < n; i++) {
		if (strlen(ex[i].var) == len &&
		    memcmp(ex[i].var, env, len) == 0)
			return true;
	}
	return false;
}

/*
 * 0 if execvp() would find an executable file for cmd, else the errno it
 * would most likely fail with.
 */
static int runnable(const char *cmd)
{
	const char *path, *p, *end;
	char buf[4096];
	int err = ENOENT;
	struct stat st;

	if (strchr(cmd, '/') != NULL) {
		if (stat(cmd, &st) != 0)
			return errno;
		if (S_ISDIR(st.st_mode))
			return EACCES;
		return access(cmd, X_OK) == 0 ? 0 : errno;
	}
	path = getenv("PATH");
	if (path == NULL)
		path = "/bin:/usr/bin";
	for (p = path; ; p = end + 1) {
		end = strchrnul(p, ':');
		if (snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(end - p), p,
			     end > p ? "/" : "", cmd) < (int)sizeof(buf) &&
		    stat(buf, &st) == 0) {
			if (!S_ISDIR(st.st_mode) && access(buf, X_OK) == 0)
				return 0;
			err = EACCES;
		} else if (errno == EACCES) {
			err = EACCES;
		}
		if (*end == '\0')
			break;
	}
	return err;
}

static int make_entry(struct export *e)
{
	size_t vlen = strlen(e->var), klen = kw_secret_len(e->key);

	e->entry_size = vlen + 1 + klen + 1;
	e->entry = malloc(e->entry_size);
	if (!e->entry)
		return -1;
	memcpy(e->entry, e->var, vlen);
	e->entry[vlen] = '=';
	memcpy(e->entry + vlen + 1, kw_secret_value(e->key), klen);
	e->entry[vlen + 1 + klen] = '\0';
	return 0;
}

static int out_of_memory(void)
{
	fprintf(stderr, "keyway: exec: out of memory\n");
	return EXIT_ERR;
}

/* The -p PROVIDER[=VAR] options, each a variable of its own. */
static int parse_exports(const char *cmd, const struct cli_list *specs,
			 struct export **out)
{
	struct export *ex;
	size_t i, j;
	int rc;

	*out = ex = calloc(specs->n, sizeof(*ex));
	if (!ex)
		return out_of_memory();
	for (i = 0; i < specs->n; i++) {
		rc = parse_export(cmd, specs->v[i], &ex[i]);
		if (rc != GO_ON)
			return rc;
		for (j = 0; j < i; j++) {
			if (strcmp(ex[i].var, ex[j].var) == 0)
				return cli_usage_error(cmd, "variable \"%s\" "
						       "given twice",
						       ex[i].var);
		}
	}
	return GO_ON;
}

static int resolve_exports(kw_ctx *ctx, kw_request *req, struct export *ex,
			   size_t n)
{
	kw_status st;
	size_t i;

	for (i = 0; i < n; i++) {
		req->provider = ex[i].provider;
		st = kw_resolve(ctx, req, &ex[i].key);
		if (st != KW_OK)
			return cli_lib_error(st);
	}
	return GO_ON;
}

/*
 * The command gets the keys the chains resolved and no other: not a
 * master key, and not a key a backend would have handed out only through
 * a chain, its quotas and its audit trail.  *envp points into environ and
 * the exports.
 */
static int make_env(kw_ctx *ctx, struct export *ex, size_t n, char ***envp)
{
	size_t i, j, nenv = 0;
	char **env;

	while (environ && environ[nenv])
		nenv++;
	*envp = env = calloc(nenv + n + 1, sizeof(*env));
	if (!env)
		return out_of_memory();
	for (i = 0, j = 0; i < nenv; i++) {
		if (!replaced(environ[i], ex, n) &&
		    !kw_reads_env(ctx, environ[i]))
			env[j++] = environ[i];
	}
	for (i = 0; i < n; i++) {
		if (make_entry(&ex[i]) != 0)
			return out_of_memory();
		env[j++] = ex[i].entry;
	}
	env[j] = NULL;
	return GO_ON;
}

static int cannot_run(const char *cmd, int err)
{
	fprintf(stderr, "keyway: exec: %s: %s\n", cmd, strerror(err));
	return err == ENOENT ? EXIT_NO_COMMAND : EXIT_CANNOT_RUN;
}

/*
 * A command that cannot be run gets nothing and costs nothing.  One that
 * can takes the keys as used: they are freed and the context closed first,
 * so that their use is counted before the process is replaced.  Returns
 * only if the command could not be run.
 */
static int run_command(char **cmdv, char **envp, struct export *ex,
		       size_t n, kw_ctx **ctx)
{
	size_t i;
	int err;

	err = runnable(cmdv[0]);
	if (err != 0)
		return cannot_run(cmdv[0], err);
	for (i = 0; i < n; i++) {
		kw_secret_free(ex[i].key);
		ex[i].key = NULL;
	}
	kw_close(*ctx);
	*ctx = NULL;
	cli_restore_sigpipe();
	execvpe(cmdv[0], cmdv, envp);
	return cannot_run(cmdv[0], errno);
}

/* Give back the keys not handed to a command, then free everything. */
static void free_exports(struct export *ex, size_t n)
{
	size_t i;

	if (!ex)
		return;
	/* After the error line: a report overwrites kw_last_error(). */
	for (i = 0; i < n; i++)
		cli_refund(ex[i].key);
	for (i = 0; i < n; i++) {
		if (ex[i].entry)
			explicit_bzero(ex[i].entry, ex[i].entry_size);
		free(ex[i].entry);
		kw_secret_free(ex[i].key);
		free(ex[i].provider);
		free(ex[i].var);
	}
	free(ex);
}

int cmd_exec(const struct command *cmd, int argc, char **argv,
	     const char *config)
{
	struct cli_list providers = { 0 };
	kw_request req = KW_REQUEST_INIT;
	struct cli_option options[] = {
		CLI_OPT("provider", 'p', CLI_LIST, list, &providers),
		CLI_REQUEST_OPTIONS(&req),
		CLI_END
	};
	/* In order: options end at CMD, whose own options are not ours. */
	struct cli_args a = { .config = config, .in_order = true };
	struct export *ex = NULL;
	char **envp = NULL;
	kw_ctx *ctx = NULL;
	kw_status st;
	int rc;

	providers.v = calloc((size_t)argc, sizeof(*providers.v));
	if (!providers.v)
		return out_of_memory();
	rc = cli_parse(cmd, argc, argv, options, &a);
	if (rc == GO_ON && providers.n == 0)
		rc = cli_usage_error(cmd->name, "missing -p PROVIDER");
	if (rc == GO_ON && a.npos == 0)
		rc = cli_usage_error(cmd->name, "missing CMD");
	if (rc == GO_ON)
		rc = parse_exports(cmd->name, &providers, &ex);
	if (rc != GO_ON)
		goto out;

	/* Every key first: nothing runs with half of its environment. */
	st = cli_open_request(&a, &ctx, &req);
	if (st != KW_OK) {
		rc = cli_lib_error(st);
		goto out;
	}
	rc = resolve_exports(ctx, &req, ex, providers.n);
	if (rc == GO_ON)
		rc = make_env(ctx, ex, providers.n, &envp);
	if (rc == GO_ON)
		rc = run_command(a.pos, envp, ex, providers.n, &ctx);
out:
	free_exports(ex, providers.n);
	free(envp);
	free(providers.v);
	kw_close(ctx);
	return rc;
}
