/*
 * test_chain.c - chain semantics through real configurations: every control
 * against every answer, the bracket form, skips, the verdict when a chain
 * runs out, scopes, request validation, what kw_explain() may show, and
 * that the host ends every walk it starts (walk_end(), which the fake
 * module checks), also for a module built before walk_end existed.
 *
 * The expected actions are written out here from the table in DESIGN.md
 * section 5, not taken from the library, so that a wrong table in the
 * library fails these tests.
 *
 * Long on purpose: one program with one fixture, whose tests share their
 * setup and helpers; split, each part would repeat them.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#define A_VALUE "sk-primary-9876543210fedcba"
#define A_MASK "sk-p****dcba"
#define B_VALUE "sk-fallback-0123456789"
#define B_MASK "****6789" /* 22 bytes: the last four only */

/* ---- answers and expected actions ---- */

enum answer { FOUND, NOTFOUND, DENIED, UNAVAIL, ERROR, NANSWERS };

static const struct {
	const char *word;   /* fake's answer setting */
	kw_status status;   /* what the fake module returns */
	const char *name;   /* as a trace's summary spells it */
} answers[NANSWERS] = {
	[FOUND] = { "found", KW_OK, "found" },
	[NOTFOUND] = { "notfound", KW_ERR_NOTFOUND, "notfound" },
	[DENIED] = { "denied", KW_ERR_DENIED, "denied" },
	[UNAVAIL] = { "unavail", KW_ERR_UNAVAIL, "unavail" },
	[ERROR] = { "error", KW_ERR_BACKEND, "backend error" },
};

enum expect { DONE, CONT, DIE };

enum keyword { SUFFICIENT, REQUIRED, REQUISITE, OPTIONAL, NKEYWORDS };

static const char *const keyword_names[NKEYWORDS] = {
	"sufficient", "required", "requisite", "optional"
};

/* DESIGN.md section 5, row by row. */
static const enum expect design_table[NKEYWORDS][NANSWERS] = {
	/*               found notfound denied unavail error */
	[SUFFICIENT] = { DONE, CONT, CONT, CONT, DIE },
	[REQUIRED] = { DONE, CONT, CONT, DIE, DIE },
	[REQUISITE] = { DONE, DIE, DIE, DIE, DIE },
	[OPTIONAL] = { DONE, CONT, CONT, CONT, CONT },
};

/* ---- building configurations ---- */

/* One chain entry backed by its own fake backend. */
struct ent {
	const char *answer;  /* fake answer word */
	const char *control;
	const char *value;   /* NULL: the fake's default value */
};

/*
 * Write a configuration whose chain "default" is one fake backend per entry,
 * named "a", "b", ... in order.  The layout is fixed so that tests can
 * predict line numbers: backend i is on line 2 + i and chain entry i on
 * line n + 5 + i.
 */
static char *chain_text(const struct ent *e, size_t n)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		abort();
	fprintf(f, "backends: {\n");
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "  %c: { module = \"fake\"; answer = \"%s\";",
			(char)('a' + i), e[i].answer);
		if (e[i].value != NULL)
			fprintf(f, " value = \"%s\";", e[i].value);
		fprintf(f, " };\n");
	}
	fprintf(f, "};\nchains: {\n  default = (\n");
	for (size_t i = 0; i < n; i++)
		fprintf(f, "    { backend = \"%c\"; control = \"%s\"; }%s\n",
			(char)('a' + i), e[i].control, i + 1 < n ? "," : "");
	fprintf(f, "  );\n};\n");
	if (fclose(f) != 0)
		abort();
	return text;
}

static kw_ctx *open_text(const char *text, char **dir)
{
	kw_ctx *ctx = NULL;
	kw_status st = tu_open(&ctx, text, dir);

	if (st != KW_OK)
		print_error("kw_open: %s\n", kw_last_error());
	assert_int_equal(st, KW_OK);
	assert_non_null(ctx);
	return ctx;
}

static kw_ctx *open_chain(const struct ent *e, size_t n)
{
	char *text = chain_text(e, n);
	kw_ctx *ctx = open_text(text, NULL);

	free(text);
	return ctx;
}

/* ---- checking results ---- */

static void check_step(const kw_trace *t, size_t i, unsigned index,
		       const char *backend, const char *module,
		       kw_status status, kw_action action, unsigned skip,
		       const char *detail, const char *masked)
{
	const kw_trace_step *s = kw_trace_get(t, i);

	assert_non_null(s);
	assert_int_equal(s->index, index);
	assert_non_null(s->backend);
	assert_string_equal(s->backend, backend);
	assert_non_null(s->module);
	assert_string_equal(s->module, module);
	assert_int_equal(s->status, status);
	assert_int_equal(s->action, action);
	assert_int_equal(s->skip, skip);
	assert_non_null(s->detail);
	assert_string_equal(s->detail, detail);
	assert_non_null(s->masked);
	assert_string_equal(s->masked, masked);
}

static kw_status resolve(kw_ctx *ctx, const char *chain, const char *provider,
			 const char *user, const char *org, kw_secret **s)
{
	kw_request req = KW_REQUEST_INIT;

	req.chain = chain;
	req.provider = provider;
	req.user = user;
	req.org = org;
	return kw_resolve(ctx, &req, s);
}

static kw_trace *explain(kw_ctx *ctx, const char *chain, const char *provider,
			 const char *user, const char *org)
{
	kw_request req = KW_REQUEST_INIT;
	kw_trace *t = NULL;

	req.chain = chain;
	req.provider = provider;
	req.user = user;
	req.org = org;
	assert_int_equal(kw_explain(ctx, &req, &t), KW_OK);
	assert_non_null(t);
	return t;
}

static void expect_secret(kw_ctx *ctx, const char *chain,
			  const char *provider, const char *user,
			  const char *org, const char *value,
			  const char *backend)
{
	kw_secret *s = (kw_secret *)&s;
	kw_status st = resolve(ctx, chain, provider, user, org, &s);

	if (st != KW_OK)
		print_error("kw_resolve: %s\n", kw_last_error());
	assert_int_equal(st, KW_OK);
	assert_non_null(s);
	assert_string_equal(kw_secret_value(s), value);
	assert_int_equal(kw_secret_len(s), strlen(value));
	assert_string_equal(kw_secret_backend(s), backend);
	kw_secret_free(s);
}

/* The resolution fails with st and kw_last_error() is exactly msg. */
static void expect_failure(kw_ctx *ctx, const char *chain,
			   const char *provider, const char *user,
			   const char *org, kw_status st, const char *msg)
{
	kw_secret *s = (kw_secret *)&s;

	assert_int_equal(resolve(ctx, chain, provider, user, org, &s), st);
	assert_null(s);
	assert_string_equal(kw_last_error(), msg);
}

static void check_trace_end(const kw_trace *t, size_t len, kw_status result,
			    const char *backend, const char *summary)
{
	assert_int_equal(kw_trace_len(t), len);
	assert_null(kw_trace_get(t, len));
	assert_int_equal(kw_trace_result(t), result);
	if (backend == NULL) {
		assert_null(kw_trace_backend(t));
	} else {
		assert_non_null(kw_trace_backend(t));
		assert_string_equal(kw_trace_backend(t), backend);
	}
	assert_string_equal(kw_trace_summary(t), summary);
}

/*
 * Chain: a answers `ans` under `control`, then b answers found with B_VALUE
 * under "required".  Check resolve and explain against `want`.
 */
static void check_pair(const char *control, enum answer ans,
		       enum expect want)
{
	const struct ent e[] = {
		{ answers[ans].word, control, A_VALUE },
		{ "found", "required", B_VALUE },
	};
	kw_ctx *ctx = open_chain(e, 2);
	kw_status st = answers[ans].status;
	char detail[64], msg[256];
	kw_trace *t;

	snprintf(detail, sizeof(detail), "fake %s", answers[ans].word);
	snprintf(msg, sizeof(msg), "a answered %s: %s", answers[ans].name,
		 detail);

	t = explain(ctx, NULL, "anthropic", NULL, NULL);
	assert_string_equal(kw_trace_chain(t), "default");
	switch (want) {
	case DONE:
		expect_secret(ctx, NULL, "anthropic", NULL, NULL, A_VALUE,
			      "a");
		check_trace_end(t, 1, KW_OK, "a", msg);
		check_step(t, 0, 1, "a", "fake", st, KW_ACTION_DONE, 0,
			   detail, A_MASK);
		break;
	case CONT:
		expect_secret(ctx, NULL, "anthropic", NULL, NULL, B_VALUE,
			      "b");
		check_trace_end(t, 2, KW_OK, "b",
				"b answered found: fake found");
		check_step(t, 0, 1, "a", "fake", st, KW_ACTION_CONTINUE, 0,
			   detail, st == KW_OK ? A_MASK : "");
		check_step(t, 1, 2, "b", "fake", KW_OK, KW_ACTION_DONE, 0,
			   "fake found", B_MASK);
		break;
	case DIE: {
		char full[300];

		snprintf(full, sizeof(full),
			 "chain \"default\", provider \"anthropic\": %s", msg);
		expect_failure(ctx, NULL, "anthropic", NULL, NULL, st, full);
		check_trace_end(t, 1, st, NULL, msg);
		check_step(t, 0, 1, "a", "fake", st, KW_ACTION_DIE, 0, detail,
			   "");
		break;
	}
	}
	kw_trace_free(t);
	kw_close(ctx);
}

/* ---- 1. every keyword against every answer ---- */

struct kcase {
	enum keyword k;
	enum answer a;
};

static void test_keyword(void **state)
{
	const struct kcase *c = *state;

	check_pair(keyword_names[c->k], c->a, design_table[c->k][c->a]);
}

#define KCASE(K, A) \
	{ #K "_" #A, test_keyword, NULL, NULL, &(struct kcase){ K, A } }

/* ---- 2. the bracket form ---- */

static void test_bracket_all_answers(void **state)
{
	static const enum expect want[NANSWERS] = {
		[FOUND] = DONE, [NOTFOUND] = CONT, [DENIED] = CONT,
		[UNAVAIL] = DIE, [ERROR] = CONT,
	};

	(void)state;
	for (int a = 0; a < NANSWERS; a++)
		check_pair("[found=done notfound=continue unavail=die "
			   "default=continue]",
			   (enum answer)a, want[a]);
}

/* Statuses not named take the default's action. */
static void test_bracket_defaults(void **state)
{
	static const enum expect die_rest[NANSWERS] = {
		[FOUND] = DONE, [NOTFOUND] = DIE, [DENIED] = DIE,
		[UNAVAIL] = DIE, [ERROR] = DIE,
	};
	static const enum expect only_error_dies[NANSWERS] = {
		[FOUND] = DONE, [NOTFOUND] = CONT, [DENIED] = CONT,
		[UNAVAIL] = CONT, [ERROR] = DIE,
	};
	static const enum expect denied_dies[NANSWERS] = {
		[FOUND] = DONE, [NOTFOUND] = CONT, [DENIED] = DIE,
		[UNAVAIL] = CONT, [ERROR] = CONT,
	};

	(void)state;
	for (int a = 0; a < NANSWERS; a++) {
		check_pair("[found=done default=die]", (enum answer)a,
			   die_rest[a]);
		check_pair("[default=continue error=die found=done]",
			   (enum answer)a, only_error_dies[a]);
		check_pair("[denied=die default=continue found=done]",
			   (enum answer)a, denied_dies[a]);
	}
}

/* A bracket that spells out a keyword behaves exactly like it. */
static void test_bracket_equals_keyword(void **state)
{
	static const char *const spelled[NKEYWORDS] = {
		[SUFFICIENT] = "[found=done notfound=continue denied=continue "
			       "unavail=continue error=die]",
		[REQUIRED] = "[found=done notfound=continue denied=continue "
			     "unavail=die error=die]",
		[REQUISITE] = "[found=done default=die]",
		[OPTIONAL] = "[found=done default=continue]",
	};

	(void)state;
	for (int k = 0; k < NKEYWORDS; k++)
		for (int a = 0; a < NANSWERS; a++)
			check_pair(spelled[k], (enum answer)a,
				   design_table[k][a]);
}

static void test_bracket_spaces(void **state)
{
	static const enum expect want[NANSWERS] = {
		[FOUND] = DONE, [NOTFOUND] = CONT, [DENIED] = CONT,
		[UNAVAIL] = DIE, [ERROR] = CONT,
	};

	(void)state;
	for (int a = 0; a < NANSWERS; a++) {
		check_pair("[   found=done    notfound=continue  unavail=die "
			   "  default=continue   ]",
			   (enum answer)a, want[a]);
		check_pair("[\\tfound=done\\tnotfound=continue unavail=die\\t"
			   "default=continue]  ",
			   (enum answer)a, want[a]);
	}
}

/* A bracket with no action for some status is refused at load. */
static void test_bracket_incomplete(void **state)
{
	const struct ent e[] = {
		{ "found", "[found=done notfound=continue]", NULL },
		{ "found", "required", NULL },
	};
	char *text = chain_text(e, 2);
	kw_ctx *ctx = (kw_ctx *)&ctx;
	char *dir = NULL;
	char want[512];

	(void)state;
	assert_int_equal(tu_open(&ctx, text, &dir), KW_ERR_CONFIG);
	assert_null(ctx);
	snprintf(want, sizeof(want),
		 "%s/keyway.conf:7: chain \"default\": entry 1: control "
		 "\"[found=done notfound=continue]\": no action for denied "
		 "(add denied=... or default=...)",
		 dir);
	assert_string_equal(kw_last_error(), want);
	tu_rmrf(dir);
	free(text);
}

/* ---- 3. skipping entries ---- */

static void test_skip(void **state)
{
	/* b and c would end the chain with an error if they were asked. */
	const struct ent e[] = {
		{ "notfound", "[found=done notfound=2 default=die]", NULL },
		{ "error", "requisite", NULL },
		{ "denied", "requisite", NULL },
		{ "found", "required", "sk-dddd-0123456789abcdef" },
	};
	kw_ctx *ctx = open_chain(e, 4);
	kw_trace *t;

	(void)state;
	expect_secret(ctx, NULL, "anthropic", NULL, NULL,
		      "sk-dddd-0123456789abcdef", "d");
	t = explain(ctx, NULL, "anthropic", NULL, NULL);
	check_trace_end(t, 2, KW_OK, "d", "d answered found: fake found");
	check_step(t, 0, 1, "a", "fake", KW_ERR_NOTFOUND, KW_ACTION_SKIP, 2,
		   "fake notfound", "");
	/* The indexes jump from 1 to 4: b and c were never asked. */
	check_step(t, 1, 4, "d", "fake", KW_OK, KW_ACTION_DONE, 0,
		   "fake found", "sk-d****cdef");
	kw_trace_free(t);
	kw_close(ctx);
}

static void test_skip_one(void **state)
{
	const struct ent e[] = {
		{ "unavail", "optional", NULL },
		{ "notfound", "[found=done notfound=1 default=die]", NULL },
		{ "error", "requisite", NULL },
		{ "found", "required", NULL },
	};
	kw_ctx *ctx = open_chain(e, 4);
	kw_trace *t;

	(void)state;
	expect_secret(ctx, NULL, "anthropic", NULL, NULL,
		      "sk-fake-d-0123456789abcdef", "d");
	t = explain(ctx, NULL, "anthropic", NULL, NULL);
	check_trace_end(t, 3, KW_OK, "d", "d answered found: fake found");
	check_step(t, 0, 1, "a", "fake", KW_ERR_UNAVAIL, KW_ACTION_CONTINUE,
		   0, "fake unavail", "");
	check_step(t, 1, 2, "b", "fake", KW_ERR_NOTFOUND, KW_ACTION_SKIP, 1,
		   "fake notfound", "");
	check_step(t, 2, 4, "d", "fake", KW_OK, KW_ACTION_DONE, 0,
		   "fake found", "sk-f****cdef");
	kw_trace_free(t);
	kw_close(ctx);
}

/* A skip that lands exactly on the end: the chain has run out. */
static void test_skip_to_end(void **state)
{
	const struct ent e[] = {
		{ "denied", "[found=done denied=2 default=die]", NULL },
		{ "error", "requisite", NULL },
		{ "found", "requisite", NULL },
	};
	const struct ent f[] = {
		{ "notfound", "sufficient", NULL },
		{ "unavail", "[found=done unavail=1 default=die]", NULL },
		{ "found", "requisite", NULL },
	};
	const struct ent g[] = {
		{ "notfound", "[found=done notfound=1 default=die]", NULL },
		{ "found", "requisite", NULL },
	};
	kw_ctx *ctx;
	kw_trace *t;

	(void)state;
	ctx = open_chain(e, 3);
	expect_failure(ctx, NULL, "anthropic", NULL, NULL, KW_ERR_DENIED,
		       "chain \"default\", provider \"anthropic\": a answered "
		       "denied: fake denied");
	t = explain(ctx, NULL, "anthropic", NULL, NULL);
	check_trace_end(t, 1, KW_ERR_DENIED, NULL,
			"a answered denied: fake denied");
	check_step(t, 0, 1, "a", "fake", KW_ERR_DENIED, KW_ACTION_SKIP, 2,
		   "fake denied", "");
	kw_trace_free(t);
	kw_close(ctx);

	ctx = open_chain(f, 3);
	expect_failure(ctx, NULL, "anthropic", NULL, NULL, KW_ERR_UNAVAIL,
		       "chain \"default\", provider \"anthropic\": b answered "
		       "unavail: fake unavail");
	t = explain(ctx, NULL, "anthropic", NULL, NULL);
	check_trace_end(t, 2, KW_ERR_UNAVAIL, NULL,
			"b answered unavail: fake unavail");
	check_step(t, 0, 1, "a", "fake", KW_ERR_NOTFOUND, KW_ACTION_CONTINUE,
		   0, "fake notfound", "");
	check_step(t, 1, 2, "b", "fake", KW_ERR_UNAVAIL, KW_ACTION_SKIP, 1,
		   "fake unavail", "");
	kw_trace_free(t);
	kw_close(ctx);

	ctx = open_chain(g, 2);
	expect_failure(ctx, NULL, "anthropic", NULL, NULL, KW_ERR_NOTFOUND,
		       "chain \"default\": no backend has a key for provider "
		       "\"anthropic\"");
	t = explain(ctx, NULL, "anthropic", NULL, NULL);
	check_trace_end(t, 1, KW_ERR_NOTFOUND, NULL,
			"no backend has a key for provider \"anthropic\"");
	kw_trace_free(t);
	kw_close(ctx);
}

/* A skip past the end of the chain is refused at load. */
static void test_skip_past_end(void **state)
{
	const struct ent e[] = {
		{ "found", "optional", NULL },
		{ "notfound", "[found=done notfound=3 default=die]", NULL },
		{ "found", "required", NULL },
		{ "found", "required", NULL },
	};
	char *text = chain_text(e, 4);
	kw_ctx *ctx = (kw_ctx *)&ctx;
	char *dir = NULL;
	char want[512];

	(void)state;
	assert_int_equal(tu_open(&ctx, text, &dir), KW_ERR_CONFIG);
	assert_null(ctx);
	snprintf(want, sizeof(want),
		 "%s/keyway.conf:10: chain \"default\": entry 2: control "
		 "\"[found=done notfound=3 default=die]\": notfound=3 skips "
		 "past the end of the chain (2 entries follow this "
		 "one)",
		 dir);
	assert_string_equal(kw_last_error(), want);
	tu_rmrf(dir);
	free(text);
}

/* ---- 4. the verdict when the chain runs out ---- */

struct runout {
	struct ent e[3];
	size_t n;
	kw_status result;
	const char *why; /* "" : nobody has a key */
};

static void check_runout(const struct runout *r)
{
	kw_ctx *ctx = open_chain(r->e, r->n);
	char msg[512], summary[512];
	kw_trace *t;

	if (r->why[0] == '\0') {
		snprintf(msg, sizeof(msg),
			 "chain \"default\": no backend has a key for "
			 "provider \"anthropic\"");
		snprintf(summary, sizeof(summary),
			 "no backend has a key for provider \"anthropic\"");
	} else {
		snprintf(msg, sizeof(msg),
			 "chain \"default\", provider \"anthropic\": %s",
			 r->why);
		snprintf(summary, sizeof(summary), "%s", r->why);
	}
	expect_failure(ctx, NULL, "anthropic", NULL, NULL, r->result, msg);

	t = explain(ctx, NULL, "anthropic", NULL, NULL);
	check_trace_end(t, r->n, r->result, NULL, summary);
	for (size_t i = 0; i < r->n; i++) {
		const kw_trace_step *s = kw_trace_get(t, i);

		assert_non_null(s);
		assert_int_equal(s->index, i + 1);
		assert_int_equal(s->action, KW_ACTION_CONTINUE);
	}
	kw_trace_free(t);
	kw_close(ctx);
}

static void test_runout(void **state)
{
	static const struct runout cases[] = {
		{ { { "notfound", "sufficient", NULL },
		    { "notfound", "required", NULL } },
		  2, KW_ERR_NOTFOUND, "" },
		{ { { "unavail", "sufficient", NULL },
		    { "notfound", "required", NULL } },
		  2, KW_ERR_UNAVAIL, "a answered unavail: fake unavail" },
		{ { { "notfound", "required", NULL },
		    { "unavail", "sufficient", NULL } },
		  2, KW_ERR_UNAVAIL, "b answered unavail: fake unavail" },
		{ { { "notfound", "sufficient", NULL },
		    { "denied", "sufficient", NULL },
		    { "unavail", "optional", NULL } },
		  3, KW_ERR_DENIED, "b answered denied: fake denied" },
		{ { { "unavail", "optional", NULL },
		    { "notfound", "optional", NULL },
		    { "denied", "required", NULL } },
		  3, KW_ERR_DENIED, "c answered denied: fake denied" },
		/* error is continued past only by optional */
		{ { { "error", "optional", NULL },
		    { "unavail", "sufficient", NULL } },
		  2, KW_ERR_BACKEND, "a answered backend error: fake error" },
		{ { { "unavail", "sufficient", NULL },
		    { "error", "optional", NULL },
		    { "notfound", "required", NULL } },
		  3, KW_ERR_BACKEND, "b answered backend error: fake error" },
		{ { { "error", "optional", NULL },
		    { "denied", "sufficient", NULL } },
		  2, KW_ERR_DENIED, "b answered denied: fake denied" },
		/* the first of equally telling answers decides */
		{ { { "denied", "sufficient", NULL },
		    { "denied", "required", NULL } },
		  2, KW_ERR_DENIED, "a answered denied: fake denied" },
		/* a found key that the control passes over is not a verdict */
		{ { { "found", "[found=continue default=continue]", NULL },
		    { "notfound", "sufficient", NULL } },
		  2, KW_ERR_NOTFOUND, "" },
		{ { { "found", "[found=continue default=continue]", NULL },
		    { "unavail", "sufficient", NULL } },
		  2, KW_ERR_UNAVAIL, "b answered unavail: fake unavail" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_runout(&cases[i]);
}

/* The found key passed over shows masked in the trace, and nowhere else. */
static void test_runout_found_continue(void **state)
{
	const struct ent e[] = {
		{ "found", "[found=continue default=continue]", A_VALUE },
		{ "notfound", "sufficient", NULL },
	};
	kw_ctx *ctx = open_chain(e, 2);
	kw_trace *t;

	(void)state;
	t = explain(ctx, NULL, "anthropic", NULL, NULL);
	check_step(t, 0, 1, "a", "fake", KW_OK, KW_ACTION_CONTINUE, 0,
		   "fake found", A_MASK);
	check_step(t, 1, 2, "b", "fake", KW_ERR_NOTFOUND, KW_ACTION_CONTINUE,
		   0, "fake notfound", "");
	kw_trace_free(t);
	kw_close(ctx);
}

/* ---- 5. a die is never bypassed ---- */

static void test_die_not_bypassed(void **state)
{
	static const char *const stops[][2] = {
		{ "unavail", "requisite" },
		{ "unavail", "required" },
		{ "notfound", "requisite" },
		{ "denied", "requisite" },
		{ "error", "sufficient" },
		{ "unavail", "[found=done unavail=die default=continue]" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++) {
		const struct ent e[] = {
			{ "notfound", "optional", NULL },
			{ stops[i][0], stops[i][1], NULL },
			{ "found", "optional", B_VALUE },
			{ "found", "required", NULL },
		};
		kw_ctx *ctx = open_chain(e, 4);
		kw_secret *s = (kw_secret *)&s;
		kw_status st = resolve(ctx, NULL, "anthropic", NULL, NULL, &s);
		kw_trace *t;

		assert_int_not_equal(st, KW_OK);
		assert_null(s);
		assert_non_null(strstr(kw_last_error(), "b answered "));
		t = explain(ctx, NULL, "anthropic", NULL, NULL);
		assert_int_equal(kw_trace_result(t), st);
		assert_null(kw_trace_backend(t));
		assert_int_equal(kw_trace_len(t), 2);
		assert_int_equal(kw_trace_get(t, 1)->action, KW_ACTION_DIE);
		kw_trace_free(t);
		kw_close(ctx);
	}
}

/* ---- 6. scopes ---- */

static const char scope_conf[] =
	"backends: {\n"
	"  org_keys: { module = \"fakestore\"; scope = \"org\"; };\n"
	"  user_keys: { module = \"fakestore\"; scope = \"user\"; };\n"
	"  sys_keys: { module = \"fakestore\"; scope = \"system\"; };\n"
	"};\n"
	"chains: {\n"
	"  default = ( { backend = \"org_keys\"; control = \"sufficient\"; },\n"
	"              { backend = \"user_keys\";\n"
	"                control = \"sufficient\"; },\n"
	"              { backend = \"sys_keys\"; control = \"required\"; } );\n"
	"  org = ( { backend = \"org_keys\"; control = \"required\"; } );\n"
	"  user = ( { backend = \"user_keys\"; control = \"required\"; } );\n"
	"  system = ( { backend = \"sys_keys\"; control = \"required\"; } );\n"
	"};\n";

static void test_scope_org(void **state)
{
	kw_ctx *ctx = open_text(scope_conf, NULL);
	kw_trace *t;

	(void)state;
	/* Without an org the module is not asked: its own notfound would
	 * say "fakestore org: no owner". */
	expect_failure(ctx, "org", "anthropic", "alice", NULL,
		       KW_ERR_NOTFOUND,
		       "chain \"org\": no backend has a key for provider "
		       "\"anthropic\"");
	t = explain(ctx, "org", "anthropic", "alice", NULL);
	assert_string_equal(kw_trace_chain(t), "org");
	check_trace_end(t, 1, KW_ERR_NOTFOUND, NULL,
			"no backend has a key for provider \"anthropic\"");
	check_step(t, 0, 1, "org_keys", "fakestore", KW_ERR_NOTFOUND,
		   KW_ACTION_CONTINUE, 0, "the request names no org", "");
	kw_trace_free(t);

	expect_secret(ctx, "org", "anthropic", NULL, "acme",
		      "sk-org-acme-anthropic-0123456789", "org_keys");
	expect_secret(ctx, "org", "openai", "alice", "globex",
		      "sk-org-globex-openai-0123456789", "org_keys");
	t = explain(ctx, "org", "anthropic", NULL, "acme");
	check_trace_end(t, 1, KW_OK, "org_keys",
			"org_keys answered found: fakestore org acme");
	check_step(t, 0, 1, "org_keys", "fakestore", KW_OK, KW_ACTION_DONE, 0,
		   "fakestore org acme", "sk-o****6789");
	kw_trace_free(t);
	kw_close(ctx);
}

static void test_scope_user(void **state)
{
	kw_ctx *ctx = open_text(scope_conf, NULL);
	kw_trace *t;

	(void)state;
	expect_failure(ctx, "user", "anthropic", NULL, "acme",
		       KW_ERR_NOTFOUND,
		       "chain \"user\": no backend has a key for provider "
		       "\"anthropic\"");
	t = explain(ctx, "user", "anthropic", NULL, "acme");
	check_trace_end(t, 1, KW_ERR_NOTFOUND, NULL,
			"no backend has a key for provider \"anthropic\"");
	check_step(t, 0, 1, "user_keys", "fakestore", KW_ERR_NOTFOUND,
		   KW_ACTION_CONTINUE, 0, "the request names no user", "");
	kw_trace_free(t);

	expect_secret(ctx, "user", "anthropic", "alice", NULL,
		      "sk-user-alice-anthropic-0123456789", "user_keys");
	expect_secret(ctx, "user", "mistral", "bob", "acme",
		      "sk-user-bob-mistral-0123456789", "user_keys");
	kw_close(ctx);
}

static void test_scope_system(void **state)
{
	kw_ctx *ctx = open_text(scope_conf, NULL);
	kw_trace *t;

	(void)state;
	expect_secret(ctx, "system", "anthropic", NULL, NULL,
		      "sk-system-none-anthropic-0123456789", "sys_keys");
	/* The request's user and org are not the system key's owner. */
	expect_secret(ctx, "system", "anthropic", "alice", "acme",
		      "sk-system-none-anthropic-0123456789", "sys_keys");
	t = explain(ctx, "system", "anthropic", "alice", "acme");
	check_step(t, 0, 1, "sys_keys", "fakestore", KW_OK, KW_ACTION_DONE, 0,
		   "fakestore system none", "sk-s****6789");
	kw_trace_free(t);
	kw_close(ctx);
}

/* org before user before system, each only when the request allows it. */
static void test_scope_chain(void **state)
{
	kw_ctx *ctx = open_text(scope_conf, NULL);
	kw_trace *t;

	(void)state;
	expect_secret(ctx, NULL, "anthropic", "alice", "acme",
		      "sk-org-acme-anthropic-0123456789", "org_keys");
	expect_secret(ctx, NULL, "anthropic", "alice", NULL,
		      "sk-user-alice-anthropic-0123456789", "user_keys");
	expect_secret(ctx, NULL, "anthropic", NULL, NULL,
		      "sk-system-none-anthropic-0123456789", "sys_keys");

	t = explain(ctx, NULL, "anthropic", NULL, NULL);
	check_trace_end(t, 3, KW_OK, "sys_keys",
			"sys_keys answered found: fakestore system none");
	check_step(t, 0, 1, "org_keys", "fakestore", KW_ERR_NOTFOUND,
		   KW_ACTION_CONTINUE, 0, "the request names no org", "");
	check_step(t, 1, 2, "user_keys", "fakestore", KW_ERR_NOTFOUND,
		   KW_ACTION_CONTINUE, 0, "the request names no user", "");
	check_step(t, 2, 3, "sys_keys", "fakestore", KW_OK, KW_ACTION_DONE, 0,
		   "fakestore system none", "sk-s****6789");
	kw_trace_free(t);
	kw_close(ctx);
}

/* ---- 7. request validation ---- */

static const char simple_conf[] =
	"backends: {\n"
	"  b: { module = \"fake\"; answer = \"found\"; value = \"" B_VALUE
	"\"; };\n"
	"};\n"
	"chains: {\n"
	"  default = ( { backend = \"b\"; control = \"required\"; } );\n"
	"  other = ( { backend = \"b\"; control = \"requisite\"; } );\n"
	"};\n";

#define BAD_PROVIDER                                                     \
	"invalid provider name (lower-case letters, digits, '-', '_' and " \
	"'.', at most 64)"
#define BAD_USER \
	"invalid user name (printable, no spaces or slashes, at most 256 bytes)"
#define BAD_ORG \
	"invalid org name (printable, no spaces or slashes, at most 256 bytes)"

/* Both kw_resolve() and kw_explain() refuse the request. */
static void expect_invalid(kw_ctx *ctx, const kw_request *req,
			   const char *msg)
{
	kw_secret *s = (kw_secret *)&s;
	kw_trace *t = (kw_trace *)&t;

	assert_int_equal(kw_resolve(ctx, req, &s), KW_ERR_INVAL);
	assert_null(s);
	assert_string_equal(kw_last_error(), msg);
	assert_int_equal(kw_explain(ctx, req, &t), KW_ERR_INVAL);
	assert_null(t);
	assert_string_equal(kw_last_error(), msg);
}

static void test_request_chain(void **state)
{
	char *dir = NULL;
	kw_ctx *ctx = open_text(simple_conf, &dir);
	kw_request req = KW_REQUEST_INIT;
	char msg[512];
	kw_trace *t;

	(void)state;
	req.provider = "anthropic";
	req.chain = "nope";
	snprintf(msg, sizeof(msg), "%s/keyway.conf: no chain \"nope\"", dir);
	expect_invalid(ctx, &req, msg);
	req.chain = "";
	snprintf(msg, sizeof(msg), "%s/keyway.conf: no chain \"\"", dir);
	expect_invalid(ctx, &req, msg);
	req.chain = "Default";
	snprintf(msg, sizeof(msg), "%s/keyway.conf: no chain \"Default\"",
		 dir);
	expect_invalid(ctx, &req, msg);

	/* NULL is "default"; naming it does the same. */
	expect_secret(ctx, NULL, "anthropic", NULL, NULL, B_VALUE, "b");
	expect_secret(ctx, "default", "anthropic", NULL, NULL, B_VALUE, "b");
	expect_secret(ctx, "other", "anthropic", NULL, NULL, B_VALUE, "b");
	t = explain(ctx, NULL, "anthropic", NULL, NULL);
	assert_string_equal(kw_trace_chain(t), "default");
	kw_trace_free(t);
	t = explain(ctx, "other", "anthropic", NULL, NULL);
	assert_string_equal(kw_trace_chain(t), "other");
	kw_trace_free(t);
	kw_close(ctx);
	tu_rmrf(dir);
}

/* Without a chain named "default", a request that names none is refused. */
static void test_request_no_default(void **state)
{
	static const char conf[] =
		"backends: {\n"
		"  b: { module = \"fake\"; answer = \"found\"; };\n"
		"};\n"
		"chains: {\n"
		"  other = ( { backend = \"b\"; control = \"required\"; } );\n"
		"};\n";
	char *dir = NULL;
	kw_ctx *ctx = open_text(conf, &dir);
	kw_request req = KW_REQUEST_INIT;
	char msg[512];

	(void)state;
	req.provider = "anthropic";
	snprintf(msg, sizeof(msg), "%s/keyway.conf: no chain \"default\"",
		 dir);
	expect_invalid(ctx, &req, msg);
	expect_secret(ctx, "other", "anthropic", NULL, NULL,
		      "sk-fake-b-0123456789abcdef", "b");
	kw_close(ctx);
	tu_rmrf(dir);
}

static void test_request_provider(void **state)
{
	kw_ctx *ctx = open_text(simple_conf, NULL);
	kw_request req = KW_REQUEST_INIT;
	static const char *const bad[] = {
		"Anthropic", "a/b", "", "-openai", ".x", "open ai",
		"ANTHROPIC", "caf\xc3\xa9",
	};
	static const char *const good[] = {
		"anthropic", "google-ai", "x.ai", "my_provider", "0day", "a",
	};
	char name[80];

	(void)state;
	expect_invalid(ctx, &req, "request names no provider");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		req.provider = bad[i];
		expect_invalid(ctx, &req, BAD_PROVIDER);
	}
	req.provider = "openai\n";
	expect_invalid(ctx, &req,
		       "invalid provider name: it holds a control character "
		       "(at byte 7)");
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		expect_secret(ctx, NULL, good[i], NULL, NULL, B_VALUE, "b");

	memset(name, 'p', 65);
	name[65] = '\0';
	req.provider = name;
	expect_invalid(ctx, &req, BAD_PROVIDER);
	name[64] = '\0';
	expect_secret(ctx, NULL, name, NULL, NULL, B_VALUE, "b");
	kw_close(ctx);
}

static void test_request_identity(void **state)
{
	kw_ctx *ctx = open_text(simple_conf, NULL);
	kw_request req = KW_REQUEST_INIT;
	static const char *const bad[] = {
		"a b", "../x", "", ".", "..", "a/b", "a\\b",
	};
	/* Refused for a character no name may hold, and said which. */
	static const struct {
		const char *name;
		const char *why;
	} flawed[] = {
		{ "a\tb", "it holds a control character (at byte 2)" },
		{ "a\nb", "it holds a control character (at byte 2)" },
		{ "\x7f", "it holds a control character (at byte 1)" },
		/* Not UTF-8: Latin-1, a lone continuation byte, overlong
		 * '/', a surrogate, past U+10FFFF, cut short. */
		{ "caf\xe9", "it is not valid UTF-8 (at byte 4)" },
		{ "\x80", "it is not valid UTF-8 (at byte 1)" },
		{ "\xc0\xaf", "it is not valid UTF-8 (at byte 1)" },
		{ "\xed\xa0\x80", "it is not valid UTF-8 (at byte 1)" },
		{ "\xf4\x90\x80\x80", "it is not valid UTF-8 (at byte 1)" },
		{ "caf\xc3", "it is not valid UTF-8 (at byte 4)" },
	};
	static const char *const good[] = {
		"alice", "alice@example.com", "...", "a.b", "A-Z_0",
		"caf\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac",
		"\xf0\x9f\x94\x91", "\xf4\x8f\xbf\xbf",
	};
	char name[300];

	(void)state;
	req.provider = "anthropic";
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		req.user = bad[i];
		req.org = NULL;
		expect_invalid(ctx, &req, BAD_USER);
		req.user = NULL;
		req.org = bad[i];
		expect_invalid(ctx, &req, BAD_ORG);
	}
	for (size_t i = 0; i < sizeof(flawed) / sizeof(flawed[0]); i++) {
		char msg[128];

		req.user = flawed[i].name;
		req.org = NULL;
		snprintf(msg, sizeof(msg), "invalid user name: %s",
			 flawed[i].why);
		expect_invalid(ctx, &req, msg);
		req.user = NULL;
		req.org = flawed[i].name;
		snprintf(msg, sizeof(msg), "invalid org name: %s",
			 flawed[i].why);
		expect_invalid(ctx, &req, msg);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		expect_secret(ctx, NULL, "anthropic", good[i], good[i], B_VALUE,
			      "b");

	memset(name, 'u', 257);
	name[257] = '\0';
	req.user = name;
	req.org = NULL;
	expect_invalid(ctx, &req, BAD_USER);
	req.user = NULL;
	req.org = name;
	expect_invalid(ctx, &req, BAD_ORG);
	name[256] = '\0';
	expect_secret(ctx, NULL, "anthropic", name, name, B_VALUE, "b");
	kw_close(ctx);
}

static void test_request_size(void **state)
{
	kw_ctx *ctx = open_text(scope_conf, NULL);
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;
	char msg[256];

	(void)state;
	assert_int_equal(req.size, sizeof(kw_request));
	req.provider = "anthropic";
	req.user = "alice";
	req.org = "acme";

	req.size = 0;
	expect_invalid(ctx, &req,
		       "request size 0 is too small; initialise it with "
		       "KW_REQUEST_INIT");
	req.size = offsetof(kw_request, provider);
	snprintf(msg, sizeof(msg),
		 "request size %zu is too small; initialise it with "
		 "KW_REQUEST_INIT",
		 req.size);
	expect_invalid(ctx, &req, msg);
	req.size = offsetof(kw_request, provider) + sizeof(req.provider) - 1;
	snprintf(msg, sizeof(msg),
		 "request size %zu is too small; initialise it with "
		 "KW_REQUEST_INIT",
		 req.size);
	expect_invalid(ctx, &req, msg);

	/* Fields past the caller's size are not read, not even to check. */
	req.size = offsetof(kw_request, user);
	req.user = "a b";
	req.org = "../x";
	assert_int_equal(kw_resolve(ctx, &req, &s), KW_OK);
	assert_string_equal(kw_secret_value(s),
			    "sk-system-none-anthropic-0123456789");
	kw_secret_free(s);

	req.size = offsetof(kw_request, org);
	req.user = "alice";
	assert_int_equal(kw_resolve(ctx, &req, &s), KW_OK);
	assert_string_equal(kw_secret_value(s),
			    "sk-user-alice-anthropic-0123456789");
	kw_secret_free(s);

	req.size = sizeof(kw_request);
	req.org = "acme";
	assert_int_equal(kw_resolve(ctx, &req, &s), KW_OK);
	assert_string_equal(kw_secret_value(s),
			    "sk-org-acme-anthropic-0123456789");
	kw_secret_free(s);

	/* A caller compiled against a later, larger request. */
	{
		struct {
			kw_request base;
			const char *later;
		} big;

		memset(&big, 0, sizeof(big));
		big.base.size = sizeof(big);
		big.base.provider = "openai";
		big.base.org = "globex";
		big.later = "ignored";
		assert_int_equal(kw_resolve(ctx, &big.base, &s), KW_OK);
		assert_string_equal(kw_secret_value(s),
				    "sk-org-globex-openai-0123456789");
		kw_secret_free(s);
	}

	kw_request_init(&req);
	assert_int_equal(req.size, sizeof(kw_request));
	assert_null(req.chain);
	assert_null(req.provider);
	assert_null(req.user);
	assert_null(req.org);
	kw_close(ctx);
}

static void test_request_null(void **state)
{
	kw_ctx *ctx = open_text(simple_conf, NULL);
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = (kw_secret *)&s;
	kw_trace *t = (kw_trace *)&t;

	(void)state;
	req.provider = "anthropic";
	assert_int_equal(kw_resolve(NULL, &req, &s), KW_ERR_INVAL);
	assert_null(s);
	s = (kw_secret *)&s;
	assert_int_equal(kw_resolve(ctx, NULL, &s), KW_ERR_INVAL);
	assert_null(s);
	assert_int_equal(kw_resolve(ctx, &req, NULL), KW_ERR_INVAL);
	assert_int_equal(kw_explain(NULL, &req, &t), KW_ERR_INVAL);
	assert_null(t);
	t = (kw_trace *)&t;
	assert_int_equal(kw_explain(ctx, NULL, &t), KW_ERR_INVAL);
	assert_null(t);
	assert_int_equal(kw_explain(ctx, &req, NULL), KW_ERR_INVAL);
	kw_close(ctx);
}

/* ---- 8. what explain may show ---- */

static void assert_not_in(const char *field, const char *value,
			  const char *middle)
{
	assert_non_null(field);
	if (strstr(field, value) != NULL || strstr(field, middle) != NULL)
		fail_msg("trace field \"%s\" shows the secret", field);
}

/* No field of t holds value or the part of it a mask hides. */
static void assert_trace_clean(const kw_trace *t, const char *value)
{
	size_t len = strlen(value);
	char middle[256];

	assert_true(len >= 16 && len - 8 < sizeof(middle));
	memcpy(middle, value + 4, len - 8);
	middle[len - 8] = '\0';
	assert_not_in(kw_trace_chain(t), value, middle);
	assert_not_in(kw_trace_summary(t), value, middle);
	if (kw_trace_backend(t) != NULL)
		assert_not_in(kw_trace_backend(t), value, middle);
	for (size_t i = 0; i < kw_trace_len(t); i++) {
		const kw_trace_step *s = kw_trace_get(t, i);

		assert_non_null(s);
		assert_not_in(s->backend, value, middle);
		assert_not_in(s->module, value, middle);
		assert_not_in(s->detail, value, middle);
		assert_not_in(s->masked, value, middle);
	}
}

static void test_explain_masks(void **state)
{
	static const char value[] = "sk-fallback-0123456789abcdef";
	const struct ent e[] = {
		{ "found", "[found=continue default=continue]", value },
		{ "notfound", "optional", NULL },
		{ "found", "sufficient", value },
	};
	kw_ctx *ctx = open_chain(e, 3);
	kw_trace *t;

	(void)state;
	t = explain(ctx, NULL, "anthropic", "alice", "acme");
	check_trace_end(t, 3, KW_OK, "c", "c answered found: fake found");
	check_step(t, 0, 1, "a", "fake", KW_OK, KW_ACTION_CONTINUE, 0,
		   "fake found", "sk-f****cdef");
	check_step(t, 1, 2, "b", "fake", KW_ERR_NOTFOUND, KW_ACTION_CONTINUE,
		   0, "fake notfound", "");
	check_step(t, 2, 3, "c", "fake", KW_OK, KW_ACTION_DONE, 0,
		   "fake found", "sk-f****cdef");
	assert_trace_clean(t, value);
	kw_trace_free(t);

	/* explain does not set the last error with a secret either */
	assert_null(strstr(kw_last_error(), value));
	kw_close(ctx);
}

static void test_explain_mask_lengths(void **state)
{
	static const struct {
		const char *value;
		const char *masked;
	} cases[] = {
		{ "sk-short-12", "****" },              /* 11 bytes */
		{ "sk-short-123456", "****3456" },      /* 15 bytes */
		{ "sk-sixteen-12345", "****2345" },     /* 16 bytes */
		{ "sk-twenty-three-1234567", "****4567" }, /* 23 bytes */
		{ "sk-twenty-four-123456789", "sk-t****6789" }, /* 24 bytes */
		{ "x", "****" },
		{ "sk-ant-api03-ABCDEFGHIJKLMNOPQRSTUVWXYZ-wxyz",
		  "sk-a****wxyz" },
	};
	char buf[32];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ent e[] = {
			{ "found", "required", cases[i].value },
		};
		kw_ctx *ctx = open_chain(e, 1);
		kw_trace *t = explain(ctx, NULL, "anthropic", NULL, NULL);

		check_step(t, 0, 1, "a", "fake", KW_OK, KW_ACTION_DONE, 0,
			   "fake found", cases[i].masked);
		if (strlen(cases[i].value) >= 16)
			assert_trace_clean(t, cases[i].value);
		kw_trace_free(t);
		kw_close(ctx);

		assert_string_equal(kw_mask(cases[i].value,
					    strlen(cases[i].value), buf,
					    sizeof(buf)),
				    cases[i].masked);
	}
	/* A small buffer still ends in a NUL. */
	assert_string_equal(kw_mask("sk-fallback-0123456789abcdef", 28, buf,
				    5),
			    "sk-f");
}

/* A failed resolution's message names the entry, never the key. */
static void test_explain_die_clean(void **state)
{
	static const char value[] = "sk-fallback-0123456789abcdef";
	const struct ent e[] = {
		{ "found", "[found=continue default=continue]", value },
		{ "unavail", "requisite", NULL },
		{ "found", "required", value },
	};
	kw_ctx *ctx = open_chain(e, 3);
	kw_secret *s = (kw_secret *)&s;
	kw_trace *t;

	(void)state;
	assert_int_equal(resolve(ctx, NULL, "anthropic", NULL, NULL, &s),
			 KW_ERR_UNAVAIL);
	assert_null(s);
	assert_string_equal(kw_last_error(),
			    "chain \"default\", provider \"anthropic\": b "
			    "answered unavail: fake unavail");
	t = explain(ctx, NULL, "anthropic", NULL, NULL);
	check_trace_end(t, 2, KW_ERR_UNAVAIL, NULL,
			"b answered unavail: fake unavail");
	assert_trace_clean(t, value);
	kw_trace_free(t);
	kw_close(ctx);
}

/* ---- answers the chain must not take ---- */

/*
 * A module that answers found with an empty key, one holding a NUL byte or
 * none at all, or answers a status no kw_status names, has answered error:
 * the key is never handed out, kw_last_error() names the entry and the
 * module, and the trace shows the step as an error.  Under "sufficient" that ends the
 * chain; under "optional" the chain goes on to b.
 */
struct bad_case {
	const char *settings; /* of backend a, after module = "fake"; */
	const char *detail;   /* what the host says of a's answer */
};

static const struct bad_case bad_cases[] = {
	{ "answer = \"found\"; value = \"\";",
	  "module \"fake\" answered found with an empty key" },
	{ "answer = \"found\"; value = \"" A_VALUE "\"; nul_at = 6;",
	  "module \"fake\" answered found with a key that holds a NUL byte" },
	{ "answer = \"found\"; value = \"" A_VALUE "\"; nul_at = 0;",
	  "module \"fake\" answered found with a key that holds a NUL byte" },
	{ "answer = \"notfound\"; status = 99;",
	  "module \"fake\" answered unknown status 99: fake notfound" },
	{ "answer = \"found\"; value = \"" A_VALUE "\"; status = -3;",
	  "module \"fake\" answered unknown status -3: fake found" },
	{ "answer = \"notfound\"; status = 0;",
	  "module \"fake\" answered found without a key" },
};

static char *bad_text(const struct bad_case *c, const char *control)
{
	char *text = NULL;

	if (asprintf(&text,
		     "backends: {\n"
		     "  a: { module = \"fake\"; %s };\n"
		     "  b: { module = \"fake\"; answer = \"found\"; "
		     "value = \"" B_VALUE "\"; };\n"
		     "};\n"
		     "chains: {\n"
		     "  default = ( { backend = \"a\"; control = \"%s\"; },\n"
		     "              { backend = \"b\"; control = \"required\"; } );\n"
		     "};\n",
		     c->settings, control) < 0)
		abort();
	return text;
}

static void test_bad_answers(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		char *text = bad_text(c, "sufficient");
		kw_ctx *ctx = open_text(text, NULL);
		char summary[256], msg[512];
		kw_trace *t;

		snprintf(summary, sizeof(summary), "a answered backend error: %s",
			 c->detail);
		snprintf(msg, sizeof(msg),
			 "chain \"default\", provider \"anthropic\": %s",
			 summary);
		expect_failure(ctx, NULL, "anthropic", NULL, NULL,
			       KW_ERR_BACKEND, msg);
		t = explain(ctx, NULL, "anthropic", NULL, NULL);
		check_trace_end(t, 1, KW_ERR_BACKEND, NULL, summary);
		check_step(t, 0, 1, "a", "fake", KW_ERR_BACKEND,
			   KW_ACTION_DIE, 0, c->detail, "");
		kw_trace_free(t);
		kw_close(ctx);
		free(text);

		text = bad_text(c, "optional");
		ctx = open_text(text, NULL);
		expect_secret(ctx, NULL, "anthropic", NULL, NULL, B_VALUE,
			      "b");
		t = explain(ctx, NULL, "anthropic", NULL, NULL);
		check_trace_end(t, 2, KW_OK, "b", "b answered found: fake found");
		check_step(t, 0, 1, "a", "fake", KW_ERR_BACKEND,
			   KW_ACTION_CONTINUE, 0, c->detail, "");
		kw_trace_free(t);
		kw_close(ctx);
		free(text);
	}
}

/* ---- 9. walk_end(): the host ends every walk it starts ---- */

/*
 * The fake module answers error ("walk_end was not called") when the host
 * starts a walk through a backend whose last walk it never ended on this
 * thread.  Walks of every shape, many in a row, resolves and explains
 * interleaved, on two contexts at once: each answers as the first did.
 */
struct walk_case {
	const char *name;
	struct ent e[4];
	size_t n;
	kw_status status;
	const char *value;   /* on KW_OK */
	const char *backend; /* on KW_OK */
	const char *error;   /* kw_last_error() otherwise */
	size_t steps;        /* of kw_explain() */
	const char *summary;
};

static const struct walk_case walk_cases[] = {
	{
		"found first",
		{ { "found", "sufficient", A_VALUE },
		  { "found", "required", B_VALUE } },
		2, KW_OK, A_VALUE, "a", NULL, 1,
		"a answered found: fake found",
	},
	{
		"found last",
		{ { "notfound", "sufficient", NULL },
		  { "denied", "sufficient", NULL },
		  { "found", "required", B_VALUE } },
		3, KW_OK, B_VALUE, "c", NULL, 3,
		"c answered found: fake found",
	},
	{
		"all notfound",
		{ { "notfound", "sufficient", NULL },
		  { "notfound", "optional", NULL },
		  { "notfound", "required", NULL } },
		3, KW_ERR_NOTFOUND, NULL, NULL,
		"chain \"default\": no backend has a key for provider "
		"\"anthropic\"",
		3, "no backend has a key for provider \"anthropic\"",
	},
	{
		"a die",
		{ { "notfound", "sufficient", NULL },
		  { "error", "sufficient", NULL },
		  { "found", "required", B_VALUE } },
		3, KW_ERR_BACKEND, NULL, NULL,
		"chain \"default\", provider \"anthropic\": b answered "
		"backend error: fake error",
		2, "b answered backend error: fake error",
	},
	{
		/* c is never asked, and is told the walk is over all the
		 * same */
		"a skip",
		{ { "notfound", "[found=done notfound=1 default=die]", NULL },
		  { "error", "requisite", NULL },
		  { "found", "required", B_VALUE } },
		3, KW_OK, B_VALUE, "c", NULL, 2,
		"c answered found: fake found",
	},
};

#define NWALK_CASES (sizeof(walk_cases) / sizeof(walk_cases[0]))

static void check_walk_case(kw_ctx *ctx, const struct walk_case *c,
			    unsigned round)
{
	kw_secret *s = (kw_secret *)&s;
	kw_status st;
	kw_trace *t;

	st = resolve(ctx, NULL, "anthropic", NULL, NULL, &s);
	if (st != c->status)
		fail_msg("%s, round %u: resolve answered %s, want %s: %s",
			 c->name, round, kw_status_str(st),
			 kw_status_str(c->status), kw_last_error());
	if (st == KW_OK) {
		assert_non_null(s);
		assert_string_equal(kw_secret_value(s), c->value);
		assert_string_equal(kw_secret_backend(s), c->backend);
		kw_secret_free(s);
	} else {
		assert_null(s);
		assert_string_equal(kw_last_error(), c->error);
	}

	t = explain(ctx, NULL, "anthropic", NULL, NULL);
	if (kw_trace_result(t) != c->status)
		fail_msg("%s, round %u: explain ended %s (%s), want %s",
			 c->name, round, kw_status_str(kw_trace_result(t)),
			 kw_trace_summary(t), kw_status_str(c->status));
	check_trace_end(t, c->steps, c->status, c->backend, c->summary);
	for (size_t i = 0; i < c->steps; i++)
		assert_string_not_equal(kw_trace_get(t, i)->detail,
					"walk_end was not called");
	kw_trace_free(t);
}

static void test_walk_end_every_walk(void **state)
{
	kw_ctx *ctx[NWALK_CASES][2];

	(void)state;
	for (size_t i = 0; i < NWALK_CASES; i++)
		for (size_t k = 0; k < 2; k++)
			ctx[i][k] = open_chain(walk_cases[i].e,
					       walk_cases[i].n);
	for (unsigned round = 0; round < 40; round++)
		for (size_t i = 0; i < NWALK_CASES; i++)
			check_walk_case(ctx[i][round % 2], &walk_cases[i],
					round);
	for (size_t i = 0; i < NWALK_CASES; i++)
		for (size_t k = 0; k < 2; k++)
			kw_close(ctx[i][k]);
}

/*
 * A request the chain refuses before it walks (no such chain, a bad
 * name) starts no walk: the next ones still find every walk ended.
 */
static void test_walk_end_after_refusals(void **state)
{
	const struct ent e[] = {
		{ "notfound", "sufficient", NULL },
		{ "found", "required", B_VALUE },
	};
	kw_ctx *ctx = open_chain(e, 2);
	kw_secret *s = (kw_secret *)&s;

	(void)state;
	for (int round = 0; round < 10; round++) {
		expect_secret(ctx, NULL, "anthropic", NULL, NULL, B_VALUE,
			      "b");
		assert_int_equal(resolve(ctx, "nope", "anthropic", NULL, NULL,
					 &s),
				 KW_ERR_INVAL);
		assert_int_equal(resolve(ctx, NULL, "Bad", NULL, NULL, &s),
				 KW_ERR_INVAL);
		expect_secret(ctx, NULL, "openai", "alice", "acme", B_VALUE,
			      "b");
	}
	kw_close(ctx);
}

/*
 * A module built before walk_end existed (its descriptor's size ends
 * before it) loads and answers walk after walk; the host never calls a
 * walk_end() past that size (the fake would answer error if it did).
 * A current fake beside it, in another context, still has its walks
 * ended.
 */
static void test_walk_end_old_descriptor(void **state)
{
	const struct walk_case *found_last = &walk_cases[1];
	const struct walk_case *dies = &walk_cases[3];
	kw_ctx *old_last, *old_dies, *cur;

	(void)state;
	assert_int_equal(setenv("KWTEST_FAKE_OLD_DESC", "1", 1), 0);
	old_last = open_chain(found_last->e, found_last->n);
	old_dies = open_chain(dies->e, dies->n);
	assert_int_equal(unsetenv("KWTEST_FAKE_OLD_DESC"), 0);
	cur = open_chain(found_last->e, found_last->n);
	for (unsigned round = 0; round < 20; round++) {
		check_walk_case(old_last, found_last, round);
		check_walk_case(old_dies, dies, round);
		check_walk_case(cur, found_last, round);
	}
	kw_close(old_last);
	kw_close(old_dies);
	kw_close(cur);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		KCASE(SUFFICIENT, FOUND),
		KCASE(SUFFICIENT, NOTFOUND),
		KCASE(SUFFICIENT, DENIED),
		KCASE(SUFFICIENT, UNAVAIL),
		KCASE(SUFFICIENT, ERROR),
		KCASE(REQUIRED, FOUND),
		KCASE(REQUIRED, NOTFOUND),
		KCASE(REQUIRED, DENIED),
		KCASE(REQUIRED, UNAVAIL),
		KCASE(REQUIRED, ERROR),
		KCASE(REQUISITE, FOUND),
		KCASE(REQUISITE, NOTFOUND),
		KCASE(REQUISITE, DENIED),
		KCASE(REQUISITE, UNAVAIL),
		KCASE(REQUISITE, ERROR),
		KCASE(OPTIONAL, FOUND),
		KCASE(OPTIONAL, NOTFOUND),
		KCASE(OPTIONAL, DENIED),
		KCASE(OPTIONAL, UNAVAIL),
		KCASE(OPTIONAL, ERROR),
		cmocka_unit_test(test_bracket_all_answers),
		cmocka_unit_test(test_bracket_defaults),
		cmocka_unit_test(test_bracket_equals_keyword),
		cmocka_unit_test(test_bracket_spaces),
		cmocka_unit_test(test_bracket_incomplete),
		cmocka_unit_test(test_skip),
		cmocka_unit_test(test_skip_one),
		cmocka_unit_test(test_skip_to_end),
		cmocka_unit_test(test_skip_past_end),
		cmocka_unit_test(test_runout),
		cmocka_unit_test(test_runout_found_continue),
		cmocka_unit_test(test_die_not_bypassed),
		cmocka_unit_test(test_scope_org),
		cmocka_unit_test(test_scope_user),
		cmocka_unit_test(test_scope_system),
		cmocka_unit_test(test_scope_chain),
		cmocka_unit_test(test_request_chain),
		cmocka_unit_test(test_request_no_default),
		cmocka_unit_test(test_request_provider),
		cmocka_unit_test(test_request_identity),
		cmocka_unit_test(test_request_size),
		cmocka_unit_test(test_request_null),
		cmocka_unit_test(test_explain_masks),
		cmocka_unit_test(test_explain_mask_lengths),
		cmocka_unit_test(test_explain_die_clean),
		cmocka_unit_test(test_bad_answers),
		cmocka_unit_test(test_walk_end_every_walk),
		cmocka_unit_test(test_walk_end_after_refusals),
		cmocka_unit_test(test_walk_end_old_descriptor),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
