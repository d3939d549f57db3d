/*
 * test_env.c - the env backend through real configurations: the variable
 * each provider maps to, dotenv files (their syntax, their permissions and
 * every parse error), and that no key ever shows up in an error message or
 * a trace.
 *
 * Every key in this file contains "SECRET", and no message may.
 *
 * Long on purpose: one program with one fixture, whose tests share their
 * setup and helpers; split, each part would repeat them.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <keyway/keyway.h>

#include "testutil.h"

/* Lines of the configuration open_env() writes. */
#define VARS_LINE 4
#define DOTENV_LINE 5

/* Every variable a test may set; cleared around each test. */
static const char *const test_vars[] = {
	"ANTHROPIC_API_KEY", "GOOGLE_AI_API_KEY", "OPENAI_API_KEY",
	"X_AI_API_KEY", "OPEN_ROUTER_API_KEY", "KWTEST_ANTHROPIC",
	"KWTEST_PLAIN", "KWTEST_EXPORTED", "KWTEST_EMPTY", "KWTEST_MISSING",
	"KWTEST_X",
	NULL,
};

struct fixture {
	char *dir;
	char *conf;
	kw_ctx *ctx;
	kw_status st;    /* of the last open or resolve */
	char err[2048];  /* kw_last_error() after it */
	char value[4096];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	tu_unsetenv(test_vars);
	f->dir = tu_tmpdir();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	kw_close(f->ctx);
	free(f->conf);
	tu_rmrf(f->dir);
	free(f);
	tu_release(0);
	tu_unsetenv(test_vars);
	return 0;
}

/* Write len bytes to dir/name with `mode`; returns the malloc'd path. */
static char *write_raw(const char *dir, const char *name, mode_t mode,
		       const char *data, size_t len)
{
	char *path = tu_join(dir, name);
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	return path;
}

static char *write_dotenv(struct fixture *f, mode_t mode, const char *text)
{
	return write_raw(f->dir, "server.env", mode, text, strlen(text));
}

/*
 * Write a configuration with one env backend "e" (vars: the inside of the
 * group, or NULL; dotenv: the setting's value, or NULL) behind a requisite
 * entry, so that a notfound reaches kw_last_error() with its detail, and
 * open it.
 */
static void open_env(struct fixture *f, const char *vars, const char *dotenv)
{
	char vline[1024], dline[1024];

	kw_close(f->ctx);
	f->ctx = NULL;
	free(f->conf);
	if (vars != NULL)
		snprintf(vline, sizeof(vline), "    vars = { %s };", vars);
	else
		snprintf(vline, sizeof(vline), "    # no vars");
	if (dotenv != NULL)
		snprintf(dline, sizeof(dline), "    dotenv = \"%s\";", dotenv);
	else
		snprintf(dline, sizeof(dline), "    # no dotenv");
	f->conf = tu_write(f->dir, "keyway.conf", 0644,
			   "backends: {\n"
			   "  e: {\n"
			   "    module = \"env\";\n"
			   "%s\n"
			   "%s\n"
			   "  };\n"
			   "};\n"
			   "chains: {\n"
			   "  default = ( { backend = \"e\"; control = "
			   "\"requisite\"; } );\n"
			   "};\n",
			   vline, dline);
	f->st = kw_open(&f->ctx, f->conf);
	snprintf(f->err, sizeof(f->err), "%s", kw_last_error());
	if (f->st == KW_OK)
		assert_non_null(f->ctx);
	else
		assert_null(f->ctx);
	tu_assert_no_secret(f->err);
}

static void open_ok(struct fixture *f, const char *vars, const char *dotenv)
{
	open_env(f, vars, dotenv);
	if (f->st != KW_OK)
		fail_msg("kw_open: %s", f->err);
}

/* Assert that open_env() failed with st and "CONF:line: backend "e": MSG". */
static void want_open_error(const struct fixture *f, kw_status st,
			      int line, const char *fmt, ...)
	KW_PRINTF(4, 5);

static void want_open_error(const struct fixture *f, kw_status st,
			      int line, const char *fmt, ...)
{
	char msg[1536], want[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(want, sizeof(want), "%s:%d: backend \"e\": %s", f->conf, line,
		 msg);
	assert_string_equal(f->err, want);
	assert_int_equal(f->st, st);
}

/* Resolve provider; the value lands in f->value, the error in f->err. */
static kw_status resolve(struct fixture *f, const char *provider)
{
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;

	req.provider = provider;
	f->value[0] = '\0';
	f->st = kw_resolve(f->ctx, &req, &s);
	snprintf(f->err, sizeof(f->err), "%s", kw_last_error());
	if (f->st == KW_OK) {
		assert_non_null(s);
		assert_string_equal(kw_secret_backend(s), "e");
		assert_int_equal(strlen(kw_secret_value(s)), kw_secret_len(s));
		snprintf(f->value, sizeof(f->value), "%s", kw_secret_value(s));
		kw_secret_free(s);
	} else {
		assert_null(s);
		tu_assert_no_secret(f->err);
	}
	return f->st;
}

static void want_value(struct fixture *f, const char *provider,
			 const char *want)
{
	if (resolve(f, provider) != KW_OK)
		fail_msg("provider %s: %s", provider, f->err);
	assert_string_equal(f->value, want);
}

/* A notfound, with kw_last_error() carrying the backend's detail. */
static void want_notfound(struct fixture *f, const char *provider,
			    const char *fmt, ...) KW_PRINTF(3, 4);

static void want_notfound(struct fixture *f, const char *provider,
			    const char *fmt, ...)
{
	char detail[1024], want[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	snprintf(want, sizeof(want),
		 "chain \"default\", provider \"%s\": e answered notfound: %s",
		 provider, detail);
	assert_int_equal(resolve(f, provider), KW_ERR_NOTFOUND);
	assert_string_equal(f->err, want);
}

/*
 * Explain provider: one step, whose status and detail are checked, and
 * nothing in the trace may hold the key.  On found, `value` is the key,
 * to check the masked form against.
 */
static void want_trace(struct fixture *f, const char *provider,
			 kw_status st, const char *value, const char *fmt, ...)
	KW_PRINTF(5, 6);

static void want_trace(struct fixture *f, const char *provider,
			 kw_status st, const char *value, const char *fmt, ...)
{
	kw_request req = KW_REQUEST_INIT;
	const kw_trace_step *step;
	char detail[1024], summary[2048], masked[64];
	kw_trace *t = NULL;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	req.provider = provider;
	assert_int_equal(kw_explain(f->ctx, &req, &t), KW_OK);
	assert_non_null(t);
	assert_int_equal(kw_trace_result(t), st);
	assert_int_equal(kw_trace_len(t), 1);
	step = kw_trace_get(t, 0);
	assert_non_null(step);
	assert_string_equal(step->backend, "e");
	assert_string_equal(step->module, "env");
	assert_int_equal(step->status, st);
	assert_string_equal(step->detail, detail);
	tu_assert_no_secret(step->detail);
	tu_assert_no_secret(step->masked);
	tu_assert_no_secret(kw_trace_summary(t));
	snprintf(summary, sizeof(summary), "e answered %s: %s",
		 st == KW_OK ? "found" : kw_status_str(st), detail);
	assert_string_equal(kw_trace_summary(t), summary);
	if (st == KW_OK) {
		assert_non_null(value);
		kw_mask(value, strlen(value), masked, sizeof(masked));
		assert_string_equal(step->masked, masked);
		assert_string_equal(kw_trace_backend(t), "e");
	} else {
		assert_string_equal(step->masked, "");
		assert_null(kw_trace_backend(t));
	}
	kw_trace_free(t);
}

/* ---- the environment ---- */

static void test_default_mapping(void **state)
{
	struct fixture *f = *state;

	setenv("ANTHROPIC_API_KEY", "sk-ant-SECRET-default-0001", 1);
	setenv("GOOGLE_AI_API_KEY", "AIza-SECRET-google-0002", 1);
	setenv("X_AI_API_KEY", "xai-SECRET-0003", 1);
	setenv("OPEN_ROUTER_API_KEY", "sk-or-SECRET-0004", 1);
	open_ok(f, NULL, NULL);
	want_value(f, "anthropic", "sk-ant-SECRET-default-0001");
	want_value(f, "google-ai", "AIza-SECRET-google-0002");
	want_value(f, "x.ai", "xai-SECRET-0003");
	want_value(f, "open_router", "sk-or-SECRET-0004");
	want_trace(f, "anthropic", KW_OK, "sk-ant-SECRET-default-0001",
		     "$ANTHROPIC_API_KEY from the environment");
	want_trace(f, "google-ai", KW_OK, "AIza-SECRET-google-0002",
		     "$GOOGLE_AI_API_KEY from the environment");

	/* Read at lookup time, not at open. */
	setenv("ANTHROPIC_API_KEY", "sk-ant-SECRET-changed-0005", 1);
	want_value(f, "anthropic", "sk-ant-SECRET-changed-0005");
}

static void test_not_set(void **state)
{
	struct fixture *f = *state;

	open_ok(f, NULL, NULL);
	want_notfound(f, "openai", "$OPENAI_API_KEY is not set");
	want_trace(f, "openai", KW_ERR_NOTFOUND, NULL,
		     "$OPENAI_API_KEY is not set");
}

static void test_set_but_empty(void **state)
{
	struct fixture *f = *state;

	setenv("ANTHROPIC_API_KEY", "", 1);
	open_ok(f, NULL, NULL);
	want_notfound(f, "anthropic", "$ANTHROPIC_API_KEY is set but empty");
	want_trace(f, "anthropic", KW_ERR_NOTFOUND, NULL,
		     "$ANTHROPIC_API_KEY is set but empty");
}

static void test_no_name_for_provider(void **state)
{
	struct fixture *f = *state;

	/* 1FOO_API_KEY is no variable name. */
	open_ok(f, NULL, NULL);
	want_notfound(f, "1foo",
			"no environment variable name can be made from this "
			"provider; map it in vars");
}

static void test_vars_override(void **state)
{
	struct fixture *f = *state;

	setenv("ANTHROPIC_API_KEY", "sk-ant-SECRET-default-0001", 1);
	setenv("KWTEST_ANTHROPIC", "sk-ant-SECRET-mapped-0002", 1);
	setenv("OPENAI_API_KEY", "sk-oai-SECRET-default-0003", 1);
	open_ok(f, "anthropic = \"KWTEST_ANTHROPIC\"; x = \"KWTEST_X\";",
		NULL);
	want_value(f, "anthropic", "sk-ant-SECRET-mapped-0002");
	want_trace(f, "anthropic", KW_OK, "sk-ant-SECRET-mapped-0002",
		     "$KWTEST_ANTHROPIC from the environment");
	/* Not in vars: the default name. */
	want_value(f, "openai", "sk-oai-SECRET-default-0003");

	/* A mapped provider never falls back to the default name. */
	unsetenv("KWTEST_ANTHROPIC");
	want_notfound(f, "anthropic", "$KWTEST_ANTHROPIC is not set");
	setenv("KWTEST_ANTHROPIC", "", 1);
	want_notfound(f, "anthropic", "$KWTEST_ANTHROPIC is set but empty");
}

static void test_vars_invalid_name(void **state)
{
	struct fixture *f = *state;

	/* A key pasted where a name belongs must not be echoed. */
	open_env(f, "anthropic = \"sk-ant-SECRET-pasted-by-mistake\";", NULL);
	want_open_error(f, KW_ERR_CONFIG, VARS_LINE,
			  "variable name for provider \"anthropic\" is not a "
			  "valid environment variable name (use letters, "
			  "digits and '_', not starting with a digit)");

	open_env(f, "openai = \"\";", NULL);
	want_open_error(f, KW_ERR_CONFIG, VARS_LINE,
			  "variable name for provider \"openai\" is not a "
			  "valid environment variable name (use letters, "
			  "digits and '_', not starting with a digit)");
}

static void test_check_env(void **state)
{
	struct fixture *f = *state;

	open_ok(f, NULL, NULL);
	assert_int_equal(kw_check(f->conf, NULL, NULL), KW_OK);
}

/* ---- dotenv ---- */

static const char dotenv_text[] =
	"\xef\xbb\xbf# keyway test dotenv\n"
	"\n"
	"   # an indented comment\n"
	"export KWTEST_EXPORTED=sk-SECRET-exported-1\n"
	"KWTEST_PLAIN=sk-SECRET plain value   # trailing comment\n"
	"KWTEST_SINGLE='sk-SECRET $single # not a comment'\n"
	"KWTEST_DOUBLE=\"sk-SECRET\\nnl\\ttab \\\"q\\\" back\\\\slash "
	"\\$dollar 'sq'\"\n"
	"KWTEST_HASH=sk-SECRET#hash\n"
	"  KWTEST_SPACED  =   sk-SECRET-spaced   \n"
	"KWTEST_EMPTY=\n"
	"KWTEST_EMPTYQ=\"\"\n"
	"KWTEST_DUP=sk-SECRET-first\n"
	"KWTEST_DUP=sk-SECRET-second\n"
	"KWTEST_CRLF=sk-SECRET-crlf\r\n"
	"KWTEST_SQC='sk-SECRET-sq'   # a comment after the quote\n"
	"KWTEST_DQC=\"sk-SECRET-dq\"# and one right after it\n"
	"export=sk-SECRET-export-as-name\n"
	"KWTEST_TAB=\tsk-SECRET-tab\t\n"
	"KWTEST_EQ=sk-SECRET=with=equals\n"
	"\t\n"
	"KWTEST_LAST=sk-SECRET-no-newline";

static const char dotenv_vars[] =
	"exported = \"KWTEST_EXPORTED\"; plain = \"KWTEST_PLAIN\"; "
	"single = \"KWTEST_SINGLE\"; double = \"KWTEST_DOUBLE\"; "
	"hash = \"KWTEST_HASH\"; spaced = \"KWTEST_SPACED\"; "
	"empty = \"KWTEST_EMPTY\"; emptyq = \"KWTEST_EMPTYQ\"; "
	"dup = \"KWTEST_DUP\"; crlf = \"KWTEST_CRLF\"; "
	"sqc = \"KWTEST_SQC\"; dqc = \"KWTEST_DQC\"; exp = \"export\"; "
	"tab = \"KWTEST_TAB\"; eq = \"KWTEST_EQ\"; last = \"KWTEST_LAST\"; "
	"missing = \"KWTEST_MISSING\";";

static void test_dotenv_values(void **state)
{
	struct fixture *f = *state;
	char *env = write_dotenv(f, 0600, dotenv_text);

	open_ok(f, dotenv_vars, env);
	want_value(f, "exported", "sk-SECRET-exported-1");
	want_value(f, "plain", "sk-SECRET plain value");
	want_value(f, "single", "sk-SECRET $single # not a comment");
	want_value(f, "double",
		     "sk-SECRET\nnl\ttab \"q\" back\\slash $dollar 'sq'");
	want_value(f, "hash", "sk-SECRET#hash");
	want_value(f, "spaced", "sk-SECRET-spaced");
	want_value(f, "dup", "sk-SECRET-second");
	want_value(f, "crlf", "sk-SECRET-crlf");
	want_value(f, "sqc", "sk-SECRET-sq");
	want_value(f, "dqc", "sk-SECRET-dq");
	want_value(f, "exp", "sk-SECRET-export-as-name");
	want_value(f, "tab", "sk-SECRET-tab");
	want_value(f, "eq", "sk-SECRET=with=equals");
	want_value(f, "last", "sk-SECRET-no-newline");

	want_trace(f, "plain", KW_OK, "sk-SECRET plain value",
		     "$KWTEST_PLAIN from %s", env);
	want_trace(f, "double", KW_OK,
		     "sk-SECRET\nnl\ttab \"q\" back\\slash $dollar 'sq'",
		     "$KWTEST_DOUBLE from %s", env);

	want_notfound(f, "empty", "$KWTEST_EMPTY is set but empty in %s",
			env);
	want_notfound(f, "emptyq", "$KWTEST_EMPTYQ is set but empty in %s",
			env);
	want_notfound(f, "missing",
			"$KWTEST_MISSING is not set in the environment or in "
			"%s",
			env);
	want_trace(f, "missing", KW_ERR_NOTFOUND, NULL,
		     "$KWTEST_MISSING is not set in the environment or in %s",
		     env);
	/* Providers without a mapping use the default name there too. */
	want_notfound(f, "anthropic",
			"$ANTHROPIC_API_KEY is not set in the environment or "
			"in %s",
			env);

	/* What was read stays: the file can go away once opened. */
	assert_int_equal(unlink(env), 0);
	want_value(f, "plain", "sk-SECRET plain value");

	/* A new reading does without it, beside the environment. */
	assert_int_equal(kw_check(f->conf, NULL, NULL), KW_OK);
}

static void test_dotenv_default_names(void **state)
{
	struct fixture *f = *state;
	char *env = write_dotenv(f, 0400,
				 "ANTHROPIC_API_KEY=sk-ant-SECRET-file-1\n"
				 "GOOGLE_AI_API_KEY='AIza-SECRET-file-2'\n");

	open_ok(f, NULL, env);
	want_value(f, "anthropic", "sk-ant-SECRET-file-1");
	want_value(f, "google-ai", "AIza-SECRET-file-2");
	want_trace(f, "google-ai", KW_OK, "AIza-SECRET-file-2",
		     "$GOOGLE_AI_API_KEY from %s", env);
	assert_int_equal(kw_check(f->conf, NULL, NULL), KW_OK);
}

static void test_dotenv_relative_path(void **state)
{
	struct fixture *f = *state;
	char *env = write_dotenv(f, 0600, "OPENAI_API_KEY=sk-SECRET-rel\n");

	/* Relative to the configuration's directory, not the cwd. */
	open_ok(f, NULL, "server.env");
	want_value(f, "openai", "sk-SECRET-rel");
	want_trace(f, "openai", KW_OK, "sk-SECRET-rel",
		     "$OPENAI_API_KEY from %s", env);
}

static void test_environment_wins(void **state)
{
	struct fixture *f = *state;
	char *env = write_dotenv(f, 0600,
				 "KWTEST_PLAIN=sk-SECRET-from-file\n"
				 "ANTHROPIC_API_KEY=sk-ant-SECRET-from-file\n");

	setenv("KWTEST_PLAIN", "sk-SECRET-from-env", 1);
	open_ok(f, "plain = \"KWTEST_PLAIN\";", env);
	want_value(f, "plain", "sk-SECRET-from-env");
	want_trace(f, "plain", KW_OK, "sk-SECRET-from-env",
		     "$KWTEST_PLAIN from the environment");

	/* An empty variable carries no key: the file answers. */
	setenv("KWTEST_PLAIN", "", 1);
	want_value(f, "plain", "sk-SECRET-from-file");
	want_trace(f, "plain", KW_OK, "sk-SECRET-from-file",
		     "$KWTEST_PLAIN from %s", env);
	unsetenv("KWTEST_PLAIN");
	want_value(f, "plain", "sk-SECRET-from-file");

	setenv("ANTHROPIC_API_KEY", "sk-ant-SECRET-from-env", 1);
	want_value(f, "anthropic", "sk-ant-SECRET-from-env");
}

static void test_dotenv_empty_file(void **state)
{
	struct fixture *f = *state;
	char *env = write_dotenv(f, 0600, "");

	open_ok(f, NULL, env);
	want_notfound(f, "openai",
			"$OPENAI_API_KEY is not set in the environment or in "
			"%s",
			env);
	env = write_dotenv(f, 0600, "# only a comment\n\n");
	open_ok(f, NULL, env);
	want_notfound(f, "openai",
			"$OPENAI_API_KEY is not set in the environment or in "
			"%s",
			env);
}

/* ---- dotenv refused ---- */

static void test_dotenv_group_readable(void **state)
{
	struct fixture *f = *state;
	char *env = write_dotenv(f, 0640, "OPENAI_API_KEY=sk-SECRET-1\n");

	open_env(f, NULL, env);
	want_open_error(f, KW_ERR_PERM, DOTENV_LINE,
			  "%s is accessible by group or others (mode 0640); "
			  "it holds secrets: chmod 600 it",
			  env);
}

static void test_dotenv_other_readable(void **state)
{
	struct fixture *f = *state;
	char *env = write_dotenv(f, 0604, "OPENAI_API_KEY=sk-SECRET-1\n");

	open_env(f, NULL, env);
	want_open_error(f, KW_ERR_PERM, DOTENV_LINE,
			  "%s is accessible by group or others (mode 0604); "
			  "it holds secrets: chmod 600 it",
			  env);

	/* Execute or write bits for others count as much. */
	assert_int_equal(chmod(env, 0601), 0);
	open_env(f, NULL, env);
	want_open_error(f, KW_ERR_PERM, DOTENV_LINE,
			  "%s is accessible by group or others (mode 0601); "
			  "it holds secrets: chmod 600 it",
			  env);
}

static void test_dotenv_symlink(void **state)
{
	struct fixture *f = *state;
	char *env = write_dotenv(f, 0600, "OPENAI_API_KEY=sk-SECRET-1\n");
	char *link;

	link = tu_join(f->dir, "link.env");
	assert_int_equal(symlink(env, link), 0);
	open_env(f, NULL, link);
	want_open_error(f, KW_ERR_PERM, DOTENV_LINE,
			  "%s is a symbolic link; point the setting at the "
			  "file itself",
			  link);
}

static void test_dotenv_other_owner(void **state)
{
	struct fixture *f = *state;
	char *env;

	if (geteuid() != 0)
		skip(); /* only root can give a file away */
	env = write_dotenv(f, 0600, "OPENAI_API_KEY=sk-SECRET-1\n");
	assert_int_equal(chown(env, 65534, 65534), 0);
	open_env(f, NULL, env);
	want_open_error(f, KW_ERR_PERM, DOTENV_LINE,
			  "%s is owned by uid 65534; it must belong to root",
			  env);
}

static void test_dotenv_not_a_file(void **state)
{
	struct fixture *f = *state;
	char *env;

	env = tu_join(f->dir, "server.env");
	assert_int_equal(mkdir(env, 0700), 0);
	open_env(f, NULL, env);
	want_open_error(f, KW_ERR_PERM, DOTENV_LINE,
			  "%s is not a regular file", env);
}

/* A FIFO would block the open until a writer came: refused at once. */
static void test_dotenv_fifo(void **state)
{
	struct fixture *f = *state;
	char *env;

	env = tu_join(f->dir, "server.env");
	assert_int_equal(mkfifo(env, 0600), 0);
	alarm(10); /* a hang ends the test program: a failure */
	open_env(f, NULL, env);
	want_open_error(f, KW_ERR_PERM, DOTENV_LINE,
			  "%s is not a regular file", env);
	assert_int_equal(kw_check(f->conf, NULL, NULL), KW_ERR_PERM);
	assert_string_equal(kw_last_error(), f->err);
	alarm(0);
}

/* Beside the environment the file is optional (with environment = false
 * it is required: test_config's env_dotenv_missing_required). */
static void test_dotenv_missing(void **state)
{
	struct fixture *f = *state;
	char *env;

	env = tu_join(f->dir, "absent.env");
	open_ok(f, NULL, env);
	assert_int_equal(kw_check(f->conf, NULL, NULL), KW_OK);
}

static void test_dotenv_too_large(void **state)
{
	struct fixture *f = *state;
	size_t len = 1024 * 1024 + 1;
	char *text = tu_keep(malloc(len));
	char *env;

	memset(text, '#', len);
	text[len - 1] = '\n';
	env = write_raw(f->dir, "server.env", 0600, text, len);
	open_env(f, NULL, env);
	want_open_error(f, KW_ERR_CONFIG, DOTENV_LINE,
			  "dotenv file %s is larger than 1 MiB", env);

	/* Exactly 1 MiB is fine. */
	env = write_raw(f->dir, "server.env", 0600, text, len - 1);
	open_ok(f, NULL, env);
}

/* ---- dotenv parse errors ---- */

struct bad_dotenv {
	const char *text;
	size_t len; /* 0: strlen(text) */
	unsigned line;
	const char *why;
};

#define WHY_SYNTAX "expected NAME=VALUE"
#define WHY_NAME \
	"invalid variable name (use letters, digits and '_', not starting " \
	"with a digit)"
#define WHY_ESCAPE \
	"unknown escape in double quotes (only \\n \\t \\\" \\\\ \\$ are " \
	"known)"
#define WHY_AFTER "text after closing quote"
#define WHY_DQ "unterminated double quote"
#define WHY_SQ "unterminated single quote"
#define WITH_NUL "A=1\nKWTEST_X=sk-SEC\0RET\n"

static const struct bad_dotenv bad_dotenvs[] = {
	{ "A=1\n# comment\n\nJUSTANAME\n", 0, 4, WHY_SYNTAX },
	{ "=sk-SECRET-without-a-name\n", 0, 1, WHY_SYNTAX },
	{ "A=1\nKWTEST_X sk-SECRET-no-equals\n", 0, 2, WHY_SYNTAX },
	{ "A=1\r\nB=2\r\nsk-SECRET-alone\r\n", 0, 3, WHY_SYNTAX },
	{ "\xef\xbb\xbf" "BAD\n", 0, 1, WHY_SYNTAX },
	{ "export KWTEST_X\n", 0, 1, WHY_SYNTAX },
	{ "A=1\nKWTEST_X=\"sk-SECRET-unterminated\nB=2\n", 0, 2, WHY_DQ },
	{ "KWTEST_X=\"sk-SECRET-ends-in-backslash\\\n", 0, 1, WHY_DQ },
	{ "A=1\nB=2\nC=3\nKWTEST_X='sk-SECRET-unterminated\n", 0, 4, WHY_SQ },
	{ "A=1\n1BAD=sk-SECRET-1\n", 0, 2, WHY_NAME },
	{ "A=1\nBAD-NAME=sk-SECRET-1\n", 0, 2, WHY_NAME },
	{ "A=1\nB=2\nKWTEST_X=\"sk-SECRET\\q\"\n", 0, 3, WHY_ESCAPE },
	{ "KWTEST_X=\"sk-SECRET\"trailing\n", 0, 1, WHY_AFTER },
	{ "A=1\nKWTEST_X='sk-SECRET' x\n", 0, 2, WHY_AFTER },
	{ WITH_NUL, sizeof(WITH_NUL) - 1, 2, "unexpected NUL byte" },
};

static void test_dotenv_parse_errors(void **state)
{
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(bad_dotenvs) / sizeof(bad_dotenvs[0]);
	     i++) {
		const struct bad_dotenv *b = &bad_dotenvs[i];
		size_t len = b->len != 0 ? b->len : strlen(b->text);
		char *env = write_raw(f->dir, "server.env", 0600, b->text, len);

		open_env(f, NULL, env);
		want_open_error(f, KW_ERR_CONFIG, DOTENV_LINE, "%s:%u: %s",
				  env, b->line, b->why);
	}
}

/* kw_reads_env(): the names a program that runs others must remove. */
static void want_reads(const kw_ctx *ctx, const char *name, int want)
{
	if (kw_reads_env(ctx, name) != want)
		fail_msg("kw_reads_env(\"%s\") is not %d",
			 name != NULL ? name : "(null)", want);
}

static void test_reads_env(void **state)
{
	static const char *const read[] = {
		"KWTEST_ANTHROPIC",          /* vars */
		"KWTEST_ANTHROPIC=sk-SECRET", /* an entry: the name counts */
		"KWTEST_PLAIN", "KWTEST_EXPORTED=x", /* set by the dotenv file */
		"OPENAI_API_KEY", "OPEN_ROUTER_API_KEY", "X_AI_API_KEY",
		"MISTRAL_API_KEY", "A1_API_KEY", /* made from a provider */
		"KEYWAY_MASTER_KEY", "API_KEY_ENCRYPTION_KEY",
		"KEYWAY_PASSPHRASE",         /* master keys, always */
	};
	static const char *const not_read[] = {
		"PATH", "HOME=/root", "KWTEST_MISSING", "KWTEST_PLAI",
		"KWTEST_PLAINX", "openai_api_key", "Openai_API_KEY",
		"_API_KEY", "API_KEY", "9X_API_KEY", "OPENAI_API_KEYS",
		"OPENAI-X_API_KEY", "",
	};
	struct fixture *f = *state;
	char *env = write_dotenv(f, 0600,
				 "KWTEST_PLAIN=sk-SECRET-1\n"
				 "export KWTEST_EXPORTED=sk-SECRET-2\n");

	open_ok(f, "anthropic = \"KWTEST_ANTHROPIC\";", env);
	for (size_t i = 0; i < sizeof(read) / sizeof(read[0]); i++)
		want_reads(f->ctx, read[i], 1);
	for (size_t i = 0; i < sizeof(not_read) / sizeof(not_read[0]); i++)
		want_reads(f->ctx, not_read[i], 0);
	want_reads(NULL, "OPENAI_API_KEY", 0);
	want_reads(f->ctx, NULL, 0);

	/* A backend that never reads the environment takes only what its
	 * dotenv file sets; a master key's own variable is read. */
	kw_close(f->ctx);
	f->ctx = NULL;
	free(f->conf);
	f->conf = tu_write(f->dir, "keyway.conf", 0644,
			   "keyway: { master_key = { source = \"env\"; "
			   "var = \"KWTEST_X\"; }; };\n"
			   "backends: { e: { module = \"env\"; "
			   "environment = false; dotenv = \"%s\"; }; };\n"
			   "chains: { default = ( { backend = \"e\"; "
			   "control = \"requisite\"; } ); };\n",
			   env);
	assert_int_equal(setenv("KWTEST_X", "00112233445566778899aabbccddeeff"
				"00112233445566778899aabbccddeeff", 1), 0);
	f->st = kw_open(&f->ctx, f->conf);
	if (f->st != KW_OK)
		fail_msg("kw_open: %s", kw_last_error());
	want_reads(f->ctx, "KWTEST_PLAIN", 1);
	want_reads(f->ctx, "KWTEST_X", 1);
	want_reads(f->ctx, "KEYWAY_MASTER_KEY", 1);
	want_reads(f->ctx, "OPENAI_API_KEY", 0);
	want_reads(f->ctx, "KWTEST_ANTHROPIC", 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_default_mapping),
		T(test_not_set),
		T(test_set_but_empty),
		T(test_no_name_for_provider),
		T(test_vars_override),
		T(test_vars_invalid_name),
		T(test_check_env),
		T(test_dotenv_values),
		T(test_dotenv_default_names),
		T(test_dotenv_relative_path),
		T(test_environment_wins),
		T(test_dotenv_empty_file),
		T(test_dotenv_group_readable),
		T(test_dotenv_other_readable),
		T(test_dotenv_symlink),
		T(test_dotenv_other_owner),
		T(test_dotenv_not_a_file),
		T(test_dotenv_fifo),
		T(test_dotenv_missing),
		T(test_dotenv_too_large),
		T(test_dotenv_parse_errors),
		T(test_reads_env),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
