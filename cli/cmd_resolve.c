/*
 * cmd_resolve.c - get and explain: resolve one request through its chain,
 * and print the key or how the chain came to its answer.
 */
#define _GNU_SOURCE

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/*
 * What get and explain share: --user, --org, --chain and extra, one
 * PROVIDER, the configuration opened.  Returns GO_ON, or the exit status
 * having reported why not; *ctx must be kw_close()d either way.
 */
static int open_resolve(const struct command *cmd, int argc, char **argv,
			const char *config, struct cli_option extra,
			kw_ctx **ctx, kw_request *req)
{
	static const char *const operands[] = { "PROVIDER", NULL };
	struct cli_option options[] = {
		CLI_REQUEST_OPTIONS(req),
		extra,
		CLI_END
	};
	struct cli_args a = { .config = config };
	kw_status st;
	int rc;

	rc = cli_parse_operands(cmd, argc, argv, options, &a, 1, operands);
	if (rc == GO_ON)
		rc = cli_check_name(cmd->name, "provider", a.pos[0],
				    CLI_PROVIDER);
	if (rc != GO_ON)
		return rc;
	st = cli_open_request(&a, ctx, req);
	if (st != KW_OK)
		return cli_lib_error(st);
	return GO_ON;
}

int cmd_get(const struct command *cmd, int argc, char **argv,
	    const char *config)
{
	kw_request req = KW_REQUEST_INIT;
	kw_ctx *ctx = NULL;
	kw_secret *key = NULL;
	char masked[64] = "";
	bool reveal = false;
	kw_status st;
	int rc;

	rc = open_resolve(cmd, argc, argv, config,
			  (struct cli_option)CLI_OPT_FLAG("reveal", &reveal),
			  &ctx, &req);
	if (rc != GO_ON)
		goto out;
	st = kw_resolve(ctx, &req, &key);
	if (st != KW_OK) {
		rc = cli_lib_error(st);
		goto out;
	}

	if (isatty(STDOUT_FILENO) && !reveal) {
		/* Shown, not handed out: it should cost no quota. */
		kw_mask(kw_secret_value(key), kw_secret_len(key), masked,
			sizeof(masked));
		rc = cli_write_secret(masked, strlen(masked));
		cli_refund(key);
	} else {
		rc = cli_write_secret(kw_secret_value(key),
				      kw_secret_len(key));
		if (rc != EXIT_OK)
			cli_refund(key);
	}
out:
	explicit_bzero(masked, sizeof(masked));
	kw_secret_free(key);
	kw_close(ctx);
	return rc;
}

/* A backend's answer in the words of keyway.conf(5). */
static const char *answer_str(kw_status st)
{
	switch (st) {
	case KW_OK:
		return "found";
	case KW_ERR_NOTFOUND:
		return "notfound";
	case KW_ERR_DENIED:
		return "denied";
	case KW_ERR_UNAVAIL:
		return "unavail";
	default:
		return "error";
	}
}

static void print_identity(const char *name, const char *value)
{
	if (value)
		printf(", %s \"%s\"", name, value);
	else
		printf(", %s -", name);
}

static void print_trace(const kw_trace *t, const kw_request *req)
{
	const kw_trace_step *s;
	const char *summary;
	kw_status result;
	size_t i, n;

	printf("chain \"%s\": provider \"%s\"", cli_str(kw_trace_chain(t)),
	       req->provider);
	print_identity("user", req->user);
	print_identity("org", req->org);
	putchar('\n');

	n = kw_trace_len(t);
	for (i = 0; i < n; i++) {
		s = kw_trace_get(t, i);
		if (!s)
			continue;
		printf("  %u. %s (%s): %s -> %s", s->index, cli_str(s->backend),
		       cli_str(s->module), answer_str(s->status),
		       kw_action_str(s->action));
		if (s->action == KW_ACTION_SKIP)
			printf(" %u", s->skip);
		if (s->detail && *s->detail)
			printf(": %s", s->detail);
		if (s->masked && *s->masked)
			printf(" [%s]", s->masked);
		putchar('\n');
	}

	result = kw_trace_result(t);
	summary = kw_trace_summary(t);
	if (result == KW_OK)
		printf("result: found by %s\n", cli_str(kw_trace_backend(t)));
	else if (summary && *summary)
		printf("result: %s: %s\n", kw_status_str(result), summary);
	else
		printf("result: %s\n", kw_status_str(result));
}

/*
 * explain --json: the request, one object per step, the result, in the
 * shape keyway(1) documents.  Like the text, it holds no key: a found key
 * is only ever shown masked.
 */
static int print_trace_json(const kw_trace *t, const kw_request *req)
{
	const kw_trace_step *s;
	kw_status result = kw_trace_result(t);
	json_t *o = NULL, *steps, *step;
	size_t i, n;

	steps = json_array();
	if (!steps)
		goto out;
	n = kw_trace_len(t);
	for (i = 0; i < n; i++) {
		s = kw_trace_get(t, i);
		if (!s)
			continue;
		step = json_pack("{s:I, s:o, s:o, s:s, s:s, s:o, s:o, s:o}",
				 "entry", (json_int_t)s->index,
				 "backend", cli_json_text(s->backend),
				 "module", cli_json_text(s->module),
				 "status", answer_str(s->status),
				 "action", kw_action_str(s->action),
				 "skip", s->action == KW_ACTION_SKIP
					 ? json_integer(s->skip) : json_null(),
				 "detail", cli_json_text(s->detail),
				 "masked", cli_json_text(s->masked));
		if (!step || json_array_append_new(steps, step) != 0)
			goto out;
	}
	o = json_pack("{s:{s:o, s:s, s:o, s:o}, s:o, s:{s:s, s:o, s:o}}",
		      "request",
		      "chain", cli_json_text(kw_trace_chain(t)),
		      "provider", req->provider,
		      "user", cli_json_text(req->user),
		      "org", cli_json_text(req->org),
		      "steps", steps,
		      "result",
		      "status", answer_str(result),
		      "backend", cli_json_text(kw_trace_backend(t)),
		      "summary", result == KW_OK ? json_null()
				 : cli_json_text(kw_trace_summary(t)));
	steps = NULL; /* o holds it, or json_pack() dropped it */
out:
	json_decref(steps);
	return cli_print_json(o, "explain", "the trace", "a field");
}

int cmd_explain(const struct command *cmd, int argc, char **argv,
		const char *config)
{
	kw_request req = KW_REQUEST_INIT;
	kw_ctx *ctx = NULL;
	kw_trace *t = NULL;
	bool json = false;
	kw_status st;
	int rc;

	rc = open_resolve(cmd, argc, argv, config,
			  (struct cli_option)CLI_OPT_FLAG("json", &json),
			  &ctx, &req);
	if (rc != GO_ON)
		goto out;
	st = kw_explain(ctx, &req, &t);
	if (st != KW_OK) {
		rc = cli_lib_error(st);
		goto out;
	}
	if (json) {
		rc = print_trace_json(t, &req);
		if (rc != EXIT_OK)
			goto out;
	} else {
		print_trace(t, &req);
	}
	rc = cli_exit_status(kw_trace_result(t));
out:
	kw_trace_free(t);
	kw_close(ctx);
	return rc;
}
