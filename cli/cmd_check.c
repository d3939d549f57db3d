/*
 * cmd_check.c - check and init: look at a configuration and everything it
 * names, or make the files it names that are missing.  Both report the
 * problems alike, one "file:line: what is wrong" per line on stderr.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void report_line(void *arg, const char *line)
{
	size_t *count = arg;

	fprintf(stderr, "%s\n", line);
	(*count)++;
}

/* check --json: the problems, gathered as kw_check_problems() finds them. */
struct check_json {
	json_t *problems;
	bool failed; /* a problem could not be encoded */
};

static void add_problem(struct check_json *c, const char *file, int line,
			const char *message)
{
	json_t *o;

	if (c->failed)
		return;
	o = json_pack("{s:o, s:o, s:s}", "file", cli_json_text(file),
		      "line", line > 0 ? json_integer(line) : json_null(),
		      "message", message);
	if (!o || json_array_append_new(c->problems, o) != 0)
		c->failed = true;
}

static void problem_json(void *arg, const kw_problem *p)
{
	add_problem(arg, p->file, p->line, p->message);
}

/* {"ok": ..., "problems": [{"file", "line", "message"}...]} on stdout. */
static int check_json(const char *config)
{
	struct check_json c = { json_array(), false };
	const char *msg;
	json_t *o = NULL;
	kw_status st = KW_OK;
	int rc;

	if (c.problems) {
		st = kw_check_problems(config, problem_json, &c);
		/* A failure that reported nothing still deserves its
		 * entry. */
		if (st != KW_OK && json_array_size(c.problems) == 0 &&
		    !c.failed) {
			msg = kw_last_error();
			add_problem(&c, NULL, 0,
				    msg && *msg ? msg : kw_status_str(st));
		}
		if (!c.failed)
			o = json_pack("{s:b, s:O}", "ok", st == KW_OK,
				      "problems", c.problems);
	}
	rc = cli_print_json(o, "check", "the problems", "a field");
	json_decref(c.problems);
	if (rc == EXIT_OK && st != KW_OK)
		rc = EXIT_ERR;
	return rc;
}

/* The exit status of check and init once their problems are reported: a
 * failure that reported nothing still deserves its line. */
static int problems_status(kw_status st, size_t count)
{
	if (st == KW_OK)
		return EXIT_OK;
	if (count == 0)
		cli_lib_error(st);
	return EXIT_ERR;
}

int cmd_check(const struct command *cmd, int argc, char **argv,
	      const char *config)
{
	bool json = false;
	struct cli_option options[] = {
		CLI_OPT_FLAG("json", &json),
		CLI_END
	};
	struct cli_args a = { .config = config };
	size_t count = 0;
	kw_status st;
	int rc;

	rc = cli_parse_operands(cmd, argc, argv, options, &a, 0, NULL);
	if (rc != GO_ON)
		return rc;

	if (json)
		return check_json(a.config);
	st = kw_check(a.config, report_line, &count);
	if (st == KW_OK)
		puts("ok");
	return problems_status(st, count);
}

static void created_line(void *arg, const char *line)
{
	(void)arg;
	puts(line);
}

/* Whether config opens as a client of keywayd, on which management calls
 * are KW_ERR_UNSUPPORTED (kw_backend_scope(), keyway.h); a client opens
 * without connecting. */
static bool is_client(const char *config)
{
	kw_scope scope;
	kw_ctx *ctx = NULL;
	bool client;

	if (kw_open(&ctx, config) != KW_OK)
		return false;
	client = kw_backend_scope(ctx, "keyway", &scope) == KW_ERR_UNSUPPORTED;
	kw_close(ctx);
	return client;
}

/*
 * Make the files the configuration names that are missing, so that check
 * passes before the first request: what was made on standard output,
 * problems on standard error as check prints them.
 */
int cmd_init(const struct command *cmd, int argc, char **argv,
	     const char *config)
{
	struct cli_option options[] = { CLI_END };
	struct cli_args a = { .config = config };
	size_t count = 0;
	kw_status st;
	int rc;

	rc = cli_parse_operands(cmd, argc, argv, options, &a, 0, NULL);
	if (rc != GO_ON)
		return rc;

	st = kw_init(a.config, created_line, report_line, &count);
	if (fflush(stdout) != 0) {
		fprintf(stderr, "keyway: init: cannot write: %s\n",
			strerror(errno));
		return EXIT_ERR;
	}
	if (is_client(a.config))
		fprintf(stderr, "keyway: init: nothing to initialise here: %s "
			"is a client of keywayd (keyway.daemon); the daemon's "
			"configuration is initialised where keywayd runs, with "
			"keyway init -c ITS-FILE\n",
			a.config ? a.config : kw_default_config());
	return problems_status(st, count);
}
