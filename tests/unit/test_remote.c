/*
 * test_remote.c - libkeyway as a client of keywayd (keyway.daemon): what a
 * client configuration may hold, what a client does with no daemon, and
 * how it reads each answer of a stand-in daemon that answers as a test
 * tells it (a key, a trace, keywayd's errors, and answers keywayd never
 * gives), with the requests it sent.  tests/cli/daemon_client.sh runs the
 * client against a real keywayd.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <keyway/keyway.h>

#include "testutil.h"

#define assert_status(got, want) assert_int_equal((int)(got), (int)(want))

#define MAX_ANSWERS 8

/* The stand-in daemon: one thread answering one request per connection
 * with the next of `answers`, and keeping what it was asked. */
struct stub {
	int fd;
	char path[108];
	pthread_t thread;
	pthread_mutex_t lock;
	char *answers[MAX_ANSWERS];
	int nanswers;
	int next;
	char *got[MAX_ANSWERS]; /* "METHOD PATH BODY" */
	int ngot;
	bool expect_seen;       /* a request said "Expect:" */
};

struct fx {
	char *dir;
	char *conf;
	struct stub stub;
	bool stub_up;
	kw_ctx *ctx;
	unsigned nproblems;
	kw_status problem_status;
	char problem[1024];
};

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (fx == NULL)
		return -1;
	fx->dir = tu_tmpdir();
	*state = fx;
	return 0;
}

static void stub_stop(struct stub *st);

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	kw_close(fx->ctx);
	if (fx->stub_up)
		stub_stop(&fx->stub);
	free(fx->conf);
	tu_rmrf(fx->dir);
	free(fx);
	tu_release(0);
	return 0;
}

/* ---- the stand-in daemon ---- */

static char *http(int code, const char *body)
{
	char *s;

	if (asprintf(&s,
		     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
		     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
		     code, strlen(body), body) < 0)
		abort();
	return s;
}

/* Read one request from c into a line "METHOD PATH BODY"; *expect: its
 * headers hold "Expect:". */
static char *read_request(int c, bool *expect)
{
	char buf[8192], *end, *cl, *line;
	size_t n = 0, want;
	ssize_t r;

	for (;;) {
		r = read(c, buf + n, sizeof(buf) - 1 - n);
		if (r <= 0)
			return NULL;
		n += (size_t)r;
		buf[n] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (end == NULL)
			continue;
		cl = strcasestr(buf, "Content-Length:");
		want = (size_t)(end + 4 - buf);
		if (cl != NULL && cl < end)
			want += strtoul(cl + 15, NULL, 10);
		if (n >= want)
			break;
	}
	*end = '\0';
	*expect = strcasestr(buf, "\r\nExpect:") != NULL;
	*strchr(buf, '\r') = '\0';
	*strrchr(buf, ' ') = '\0'; /* " HTTP/1.1" */
	if (asprintf(&line, "%s %s", buf, end + 4) < 0)
		abort();
	return line;
}

static void *stub_serve(void *arg)
{
	struct stub *st = arg;
	const char *answer;
	bool expect = false;
	char *req;
	int c;

	while ((c = accept(st->fd, NULL, NULL)) >= 0) {
		req = read_request(c, &expect);
		pthread_mutex_lock(&st->lock);
		st->expect_seen |= expect;
		if (req != NULL && st->ngot < MAX_ANSWERS)
			st->got[st->ngot++] = req;
		else
			free(req);
		answer = st->next < st->nanswers ? st->answers[st->next++]
						 : NULL;
		pthread_mutex_unlock(&st->lock);
		if (answer != NULL && write(c, answer, strlen(answer)) < 0)
			perror("stub write");
		close(c);
	}
	return NULL;
}

/* Start the stand-in at DIR/stub.sock with the given answers (each from
 * http()), and open a client configuration that names it. */
static void stub_start(struct fx *fx, int n, ...)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stub *st = &fx->stub;
	va_list ap;

	snprintf(st->path, sizeof(st->path), "%s/stub.sock", fx->dir);
	strcpy(sa.sun_path, st->path);
	st->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(st->fd >= 0);
	assert_int_equal(bind(st->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(st->fd, 8), 0);
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		st->answers[st->nanswers++] = va_arg(ap, char *);
	va_end(ap);
	pthread_mutex_init(&st->lock, NULL);
	assert_int_equal(pthread_create(&st->thread, NULL, stub_serve, st), 0);
	fx->stub_up = true;
	fx->conf = tu_write(fx->dir, "keyway.conf", 0644,
			    "keyway: { daemon: { socket = \"stub.sock\"; "
			    "timeout_ms = 5000; }; };\n");
	assert_status(kw_open(&fx->ctx, fx->conf), KW_OK);
}

static void stub_stop(struct stub *st)
{
	shutdown(st->fd, SHUT_RDWR);
	close(st->fd);
	pthread_join(st->thread, NULL);
	for (int i = 0; i < st->nanswers; i++)
		free(st->answers[i]);
	for (int i = 0; i < st->ngot; i++)
		free(st->got[i]);
	pthread_mutex_destroy(&st->lock);
}

/* The i-th request the stand-in got, or "" */
static const char *got(struct fx *fx, int i)
{
	const char *s;

	pthread_mutex_lock(&fx->stub.lock);
	s = i < fx->stub.ngot ? fx->stub.got[i] : "";
	pthread_mutex_unlock(&fx->stub.lock);
	return s;
}

static int ngot(struct fx *fx)
{
	int n;

	pthread_mutex_lock(&fx->stub.lock);
	n = fx->stub.ngot;
	pthread_mutex_unlock(&fx->stub.lock);
	return n;
}

static kw_status resolve(struct fx *fx, const char *chain, kw_secret **s)
{
	kw_request req = KW_REQUEST_INIT;

	req.provider = "anthropic";
	req.user = "alice";
	req.chain = chain;
	return kw_resolve(fx->ctx, &req, s);
}

/* fmt with its first %s made a and its second b, kept. */
static char *subst(const char *fmt, const char *a, const char *b)
{
	const char *p = strstr(fmt, "%s"), *q;

	if (p == NULL)
		return tu_fmt("%s", fmt);
	q = strstr(p + 2, "%s");
	if (q == NULL)
		return tu_fmt("%.*s%s%s", (int)(p - fmt), fmt, a, p + 2);
	return tu_fmt("%.*s%s%.*s%s%s", (int)(p - fmt), fmt, a,
		      (int)(q - p - 2), p + 2, b, q + 2);
}

static kw_status no_key(void *arg, const kw_key_info *info)
{
	(void)arg;
	(void)info;
	fail_msg("a key was listed");
	return KW_OK;
}

static kw_status no_row(void *arg, const kw_usage_row *row)
{
	(void)arg;
	(void)row;
	fail_msg("a usage row was read");
	return KW_OK;
}

/* ---- configurations ---- */

struct bad {
	const char *text;
	const char *expect; /* %s: the directory of keyway.conf */
	unsigned problems;  /* what kw_check() reports */
};

static void problem(void *arg, const char *line)
{
	struct fx *fx = arg;

	if (fx->nproblems++ == 0)
		snprintf(fx->problem, sizeof(fx->problem), "%s", line);
}

static void expect_refused(struct fx *fx, const struct bad *b)
{
	char *path = tu_write(fx->dir, "keyway.conf", 0644, "%s", b->text);
	char *want = subst(b->expect, fx->dir, NULL);
	kw_ctx *ctx = (kw_ctx *)&ctx;

	tu_keep(path);
	assert_status(kw_open(&ctx, path), KW_ERR_CONFIG);
	assert_null(ctx);
	assert_string_equal(kw_last_error(), want);
	fx->nproblems = 0;
	assert_status(kw_check(path, problem, fx), KW_ERR_CONFIG);
	assert_string_equal(fx->problem, want);
	assert_int_equal(fx->nproblems, b->problems);
}

#define NOT_CLIENT(what, line)                                              \
	"%s/keyway.conf:" #line ": " what ": a configuration with "         \
	"keyway.daemon is a client of keywayd and takes nothing else; move " \
	what " to keywayd's configuration"

static void test_bad_client_configs(void **state)
{
	static const struct bad bad[] = {
		{ "keyway: {\n  daemon = 5;\n};\n",
		  "%s/keyway.conf:2: keyway.daemon must be the path of "
		  "keywayd's socket, or a group { socket = \"...\"; "
		  "timeout_ms = N; }",
		  1 },
		{ "keyway: {\n  daemon: { sockt = \"/k.sock\"; };\n};\n",
		  "%s/keyway.conf:2: keyway.daemon: unknown setting "
		  "\"sockt\" (expected socket or timeout_ms)",
		  1 },
		{ "keyway: {\n  daemon: { timeout_ms = 10; };\n};\n",
		  "%s/keyway.conf:2: keyway.daemon: no socket (socket = "
		  "\"/run/keyway/keyway.sock\";)",
		  1 },
		{ "keyway: {\n  daemon: { socket = 1; };\n};\n",
		  "%s/keyway.conf:2: keyway.daemon.socket must be a string",
		  1 },
		{ "keyway: {\n  daemon: { socket = \"/k\";\n"
		  "  timeout_ms = 0; };\n};\n",
		  "%s/keyway.conf:3: keyway.daemon.timeout_ms must be between "
		  "1 and 600000",
		  1 },
		{ "keyway: {\n  daemon = \"/"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "\";\n};\n",
		  "%s/keyway.conf:2: keyway.daemon: the socket's path /"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  " is longer than a Unix socket's 107 bytes; choose a "
		  "shorter one",
		  1 },
		{ "keyway: {\n  daemon = \"/k.sock\";\n};\n"
		  "backends: { a: { module = \"env\"; }; };\n"
		  "chains: { default = ( { backend = \"a\"; } ); };\n",
		  NOT_CLIENT("backends", 4), 2 },
		{ "keyway: {\n  daemon = \"/k.sock\";\n"
		  "  master_key = { source = \"env\"; };\n"
		  "  ledger: { module = \"sqlite\"; path = \"l.db\"; };\n"
		  "  log: { stderr = true; };\n};\n",
		  NOT_CLIENT("keyway.master_key", 3), 3 },
		/* Wherever keyway.daemon is in the section. */
		{ "keyway: {\n  audit: { sink = \"syslog\"; };\n"
		  "  daemon = \"/k.sock\";\n};\n",
		  NOT_CLIENT("keyway.audit", 2), 1 },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_refused(*state, &bad[i]);
}

/* A socket in a directory others may write to: anyone could put a
 * daemon of their own there, and hand out keys of their choosing. */
static void test_untrusted_socket_dir(void **state)
{
	struct fx *fx = *state;
	char *open_dir = tu_fmt("%s/open", fx->dir);
	char *path, *want;
	kw_ctx *ctx = (kw_ctx *)&ctx;

	assert_int_equal(mkdir(open_dir, 0700), 0);
	assert_int_equal(chmod(open_dir, 0777), 0);
	path = tu_keep(tu_write(fx->dir, "keyway.conf", 0644,
				"keyway: {\n  daemon = \"open/k.sock\";\n};\n"));
	want = tu_fmt("%s:2: keyway.daemon: %s is writable by others; "
		      "whoever can put a socket at %s/k.sock can hand this "
		      "program keys of their choosing: keep keywayd's socket "
		      "in a directory only root or its user may write to",
		      path, open_dir, open_dir);
	assert_status(kw_open(&ctx, path), KW_ERR_PERM);
	assert_null(ctx);
	assert_string_equal(kw_last_error(), want);

	/* Sticky and root's, as /tmp: no one may replace another's socket. */
	if (geteuid() == 0) {
		assert_int_equal(chmod(open_dir, 01777), 0);
		assert_status(kw_open(&ctx, path), KW_OK);
		kw_close(ctx);
	}
	/* A directory that does not exist yet, under one that is safe. */
	path = tu_keep(tu_write(fx->dir, "keyway.conf", 0644,
				"keyway: {\n  daemon = \"later/k.sock\";\n};\n"));
	assert_status(kw_open(&ctx, path), KW_OK);
	kw_close(ctx);
	assert_int_equal(chmod(open_dir, 0700), 0);
}

/* ---- no daemon ---- */

static void test_no_daemon(void **state)
{
	struct fx *fx = *state;
	kw_actor admin = KW_ACTOR_INIT;
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = (kw_secret *)&s;
	kw_trace *t = (kw_trace *)&t;
	kw_scope scope;
	char *want;

	admin.role = KW_ROLE_SYSADMIN;
	/* A relative socket is taken from the file's directory. */
	fx->conf = tu_write(fx->dir, "keyway.conf", 0644,
			    "keyway: { daemon = \"none.sock\"; };\n");
	assert_status(kw_open(&fx->ctx, fx->conf), KW_OK);
	assert_null(kw_sensitive_env(fx->ctx));

	req.provider = "anthropic";
	assert_status(kw_resolve(fx->ctx, &req, &s), KW_ERR_UNAVAIL);
	assert_null(s);
	want = tu_fmt("keywayd at %s/none.sock cannot be reached: No such "
		      "file or directory; start keywayd, or correct "
		      "keyway.daemon in %s",
		      fx->dir, fx->conf);
	assert_string_equal(kw_last_error(), want);
	assert_status(kw_explain(fx->ctx, &req, &t), KW_ERR_UNAVAIL);
	assert_null(t);

	/* A request is checked as in-process before it is sent. */
	req.user = "two words";
	assert_status(kw_resolve(fx->ctx, &req, &s), KW_ERR_INVAL);
	assert_non_null(strstr(kw_last_error(), "invalid user name"));

	want = tu_fmt("management is not available through keywayd at "
		      "%s/none.sock (keyway.daemon in %s); use keywayd's "
		      "admin socket, or a configuration that opens the "
		      "stores",
		      fx->dir, fx->conf);
	assert_status(kw_backend_scope(fx->ctx, "keys", &scope),
		      KW_ERR_UNSUPPORTED);
	assert_string_equal(kw_last_error(), want);
	assert_status(kw_key_list(fx->ctx, &admin, NULL, NULL,
				  no_key, NULL),
		      KW_ERR_UNSUPPORTED);
	assert_string_equal(kw_last_error(), want);
	assert_status(kw_rekey(fx->ctx, &admin, "keys", NULL),
		      KW_ERR_UNSUPPORTED);
	assert_status(kw_usage(fx->ctx, &admin, NULL, no_row, NULL),
		      KW_ERR_UNSUPPORTED);

	fx->nproblems = 0;
	assert_status(kw_check(fx->conf, problem, fx), KW_ERR_UNAVAIL);
	assert_int_equal(fx->nproblems, 1);
	want = tu_fmt("%s:1: keyway.daemon: keywayd at %s/none.sock cannot "
		      "be reached: No such file or directory; start keywayd, "
		      "or correct keyway.daemon in %s",
		      fx->conf, fx->dir, fx->conf);
	assert_string_equal(fx->problem, want);
}

/* ---- answers ---- */

#define KEY "sk-ant-stub-" TU_MARK "-0123456789abcdef"
#define LEASE "0123456789abcdef0123456789abcdef"

static void test_key_and_reports(void **state)
{
	struct fx *fx = *state;
	kw_secret *s, *t;

	stub_start(fx, 4,
		   http(200, "{\"key\":\"" KEY "\",\"backend\":\"org_keys\","
			     "\"lease\":\"" LEASE "\"}"),
		   http(409, "{\"error\":\"lease \\\"" LEASE "\\\" was "
			     "already reported\",\"status\":\"conflict\"}"),
		   http(200, "{\"key\":\"" KEY "\",\"backend\":\"b\","
			     "\"lease\":\"L2\"}"),
		   http(409, "{\"error\":\"expired\",\"status\":"
			     "\"conflict\"}"));
	assert_status(resolve(fx, "team", &s), KW_OK);
	assert_string_equal(kw_secret_value(s), KEY);
	assert_int_equal(kw_secret_len(s), strlen(KEY));
	assert_string_equal(kw_secret_backend(s), "org_keys");
	assert_string_equal(got(fx, 0),
			    "POST /v1/resolve {\"provider\":\"anthropic\","
			    "\"user\":\"alice\",\"chain\":\"team\"}");
	assert_status(kw_secret_report(s, KW_UNUSED), KW_ERR_INVAL);
	assert_string_equal(got(fx, 1),
			    "POST /v1/report {\"lease\":\"" LEASE "\","
			    "\"outcome\":\"unused\"}");
	assert_string_equal(kw_last_error(),
			    tu_fmt("keywayd at %s: lease \"" LEASE "\" was "
				   "already reported (HTTP 409)",
				   fx->stub.path));
	/* Reported: its end asks nothing more. */
	kw_secret_free(s);
	assert_int_equal(ngot(fx), 2);

	assert_status(resolve(fx, NULL, &t), KW_OK);
	assert_string_equal(got(fx, 2),
			    "POST /v1/resolve {\"provider\":\"anthropic\","
			    "\"user\":\"alice\"}");
	/* Freed unreported after kw_close(): reported used, and
	 * kw_last_error() left as it was, though the report failed. */
	kw_close(fx->ctx);
	fx->ctx = NULL;
	/* A report after kw_close() is refused, as in-process; asks
	 * nothing. */
	assert_status(kw_secret_report(t, KW_UNUSED), KW_ERR_INVAL);
	assert_int_equal(ngot(fx), 3);
	assert_status(kw_name_check("user name", "a\tb"), KW_ERR_INVAL);
	kw_secret_free(t);
	assert_string_equal(got(fx, 3),
			    "POST /v1/report {\"lease\":\"L2\","
			    "\"outcome\":\"used\"}");
	assert_non_null(strstr(kw_last_error(), "control character"));
}

static void test_errors(void **state)
{
	static const struct {
		int code;
		const char *body;
		kw_status st;
		const char *expect; /* %s: the socket */
	} answers[] = {
		{ 403, "{\"error\":\"chain \\\"d\\\": k answered denied: "
		       "key disabled\",\"status\":\"denied\"}",
		  KW_ERR_DENIED,
		  "chain \"d\": k answered denied: key disabled" },
		{ 503, "{\"error\":\"vault down\",\"status\":\"unavail\"}",
		  KW_ERR_UNAVAIL, "vault down" },
		{ 403, "{\"error\":\"uid 33 (www-data) may not use chain "
		       "\\\"d\\\"\",\"status\":\"refused\"}",
		  KW_ERR_PERM,
		  "keywayd at %s: uid 33 (www-data) may not use chain \"d\" "
		  "(HTTP 403)" },
		{ 429, "{\"error\":\"slow down\",\"status\":\"limited\"}",
		  KW_ERR_DENIED, "keywayd at %s: slow down (HTTP 429)" },
		{ 500, "{\"error\":\"bad\\nline\",\"status\":\"error\"}",
		  KW_ERR_BACKEND, "bad line" },
		{ 200, "<html>hello</html>", KW_ERR_BACKEND,
		  "keywayd at %s answered HTTP 200 with a body that is not "
		  "keywayd's JSON; is it keywayd's socket (keyway.daemon in "
		  "%s)?" },
		{ 502, "{}", KW_ERR_BACKEND, "keywayd at %s: no reason given "
		  "(HTTP 502)" },
	};
	struct fx *fx = *state;
	size_t n = sizeof(answers) / sizeof(answers[0]);
	kw_secret *s;

	stub_start(fx, (int)n, http(answers[0].code, answers[0].body),
		   http(answers[1].code, answers[1].body),
		   http(answers[2].code, answers[2].body),
		   http(answers[3].code, answers[3].body),
		   http(answers[4].code, answers[4].body),
		   http(answers[5].code, answers[5].body),
		   http(answers[6].code, answers[6].body));
	for (size_t i = 0; i < n; i++) {
		s = (kw_secret *)&s;
		assert_status(resolve(fx, NULL, &s), answers[i].st);
		assert_null(s);
		assert_string_equal(kw_last_error(),
				    subst(answers[i].expect, fx->stub.path,
					  fx->conf));
	}
}

/* An answer "error" names which error it is in "code": a client returns
 * the status a resolve in process would have returned. */
static void test_error_codes(void **state)
{
	static const struct {
		const char *code;
		kw_status st;
	} answers[] = {
		{ "crypto", KW_ERR_CRYPTO },
		{ "io", KW_ERR_IO },
		{ "nomem", KW_ERR_NOMEM },
		{ "config", KW_ERR_CONFIG },
		{ "perm", KW_ERR_PERM },
		{ "backend", KW_ERR_BACKEND },
		{ "not-a-code", KW_ERR_BACKEND },
	};
	struct fx *fx = *state;
	size_t n = sizeof(answers) / sizeof(answers[0]);
	char body[MAX_ANSWERS][128];
	kw_secret *s;

	for (size_t i = 0; i < n; i++)
		snprintf(body[i], sizeof(body[i]),
			 "{\"error\":\"sealed value %zu\",\"status\":"
			 "\"error\",\"code\":\"%s\"}", i, answers[i].code);
	/* A code beside any other word changes nothing. */
	snprintf(body[n], sizeof(body[n]),
		 "{\"error\":\"gone\",\"status\":\"notfound\","
		 "\"code\":\"crypto\"}");
	stub_start(fx, (int)n + 1, http(500, body[0]), http(500, body[1]),
		   http(500, body[2]), http(500, body[3]), http(500, body[4]),
		   http(500, body[5]), http(500, body[6]), http(404, body[7]));
	for (size_t i = 0; i < n; i++) {
		char want[64];

		s = (kw_secret *)&s;
		assert_status(resolve(fx, NULL, &s), answers[i].st);
		assert_null(s);
		snprintf(want, sizeof(want), "sealed value %zu", i);
		assert_string_equal(kw_last_error(), want);
	}
	assert_status(resolve(fx, NULL, &s), KW_ERR_NOTFOUND);
	assert_string_equal(kw_last_error(), "gone");
}

/* A 200 without a usable key gives its lease back and hands out
 * nothing. */
static void test_malformed_key(void **state)
{
	struct fx *fx = *state;
	kw_secret *s = NULL;

	stub_start(fx, 3,
		   http(200, "{\"key\":\"\",\"backend\":\"b\","
			     "\"lease\":\"L3\"}"),
		   http(200, "{}"),
		   http(200, "{\"key\":\"sk-a\\u0000b\",\"backend\":"
			     "\"b\",\"lease\":\"L4\"}"));
	assert_status(resolve(fx, NULL, &s), KW_ERR_BACKEND);
	assert_null(s);
	assert_non_null(strstr(kw_last_error(),
			       "answered a resolve without its key, backend "
			       "or lease"));
	assert_string_equal(got(fx, 1),
			    "POST /v1/report {\"lease\":\"L3\","
			    "\"outcome\":\"unused\"}");
	/* A key with a NUL byte in it is not taken. */
	assert_status(resolve(fx, NULL, &s), KW_ERR_BACKEND);
	assert_null(s);
	assert_int_equal(ngot(fx), 3);
}

static void test_trace(void **state)
{
	struct fx *fx = *state;
	kw_request req = KW_REQUEST_INIT;
	const kw_trace_step *st;
	kw_trace *t = NULL;

	stub_start(fx, 2,
		   http(200, "{\"chain\":\"default\",\"result\":\"found\","
			     "\"backend\":\"team\",\"summary\":\"team "
			     "answered found\",\"steps\":["
			     "{\"index\":1,\"backend\":\"org\",\"module\":"
			     "\"sqlite\",\"status\":\"unavail\",\"action\":"
			     "\"skip\",\"skip\":1,\"detail\":\"locked\","
			     "\"masked\":\"\"},"
			     "{\"index\":3,\"backend\":\"team\",\"module\":"
			     "\"file\",\"status\":\"found\",\"action\":"
			     "\"done\",\"skip\":0,\"detail\":\"\","
			     "\"masked\":\"sk-a****cdef\"}]}"),
		   http(200, "{\"chain\":\"default\",\"result\":\"found\","
			     "\"steps\":[{\"index\":1,\"backend\":\"o\","
			     "\"module\":\"m\",\"status\":\"found\","
			     "\"action\":\"jump\",\"skip\":0}]}"));
	req.provider = "anthropic";
	assert_status(kw_explain(fx->ctx, &req, &t), KW_OK);
	assert_string_equal(kw_trace_chain(t), "default");
	assert_status(kw_trace_result(t), KW_OK);
	assert_string_equal(kw_trace_backend(t), "team");
	assert_string_equal(kw_trace_summary(t), "team answered found");
	assert_int_equal(kw_trace_len(t), 2);
	st = kw_trace_get(t, 0);
	assert_int_equal(st->index, 1);
	assert_string_equal(st->backend, "org");
	assert_string_equal(st->module, "sqlite");
	assert_status(st->status, KW_ERR_UNAVAIL);
	assert_int_equal(st->action, KW_ACTION_SKIP);
	assert_int_equal(st->skip, 1);
	assert_string_equal(st->detail, "locked");
	st = kw_trace_get(t, 1);
	assert_int_equal(st->index, 3);
	assert_int_equal(st->action, KW_ACTION_DONE);
	assert_string_equal(st->masked, "sk-a****cdef");
	assert_null(kw_trace_get(t, 2));
	kw_trace_free(t);
	t = (kw_trace *)&t;
	assert_status(kw_explain(fx->ctx, &req, &t), KW_ERR_BACKEND);
	assert_null(t);
	assert_non_null(strstr(kw_last_error(),
			       "answered an explain that is not a trace"));
}

/* A request of more than 1 KiB (names at their longest) goes whole, and
 * at once: without an "Expect: 100-continue", which libcurl adds past a
 * size of its own (1 KiB in some versions, 1 MiB in Debian 12's). */
static void test_long_request(void **state)
{
	struct fx *fx = *state;
	kw_request req = KW_REQUEST_INIT;
	char user[257], org[257], chain[1025];
	kw_secret *s = NULL;

	memset(user, 'u', sizeof(user) - 1);
	user[sizeof(user) - 1] = '\0';
	memset(org, 'o', sizeof(org) - 1);
	org[sizeof(org) - 1] = '\0';
	memset(chain, 'c', sizeof(chain) - 1);
	chain[sizeof(chain) - 1] = '\0';
	stub_start(fx, 1, http(400, "{\"error\":\"no chain\",\"status\":"
				    "\"invalid\"}"));
	req.provider = "anthropic";
	req.user = user;
	req.org = org;
	req.chain = chain;
	assert_status(kw_resolve(fx->ctx, &req, &s), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(), "no chain");
	assert_string_equal(got(fx, 0),
			    tu_fmt("POST /v1/resolve {\"provider\":"
				   "\"anthropic\",\"user\":\"%s\",\"org\":"
				   "\"%s\",\"chain\":\"%s\"}",
				   user, org, chain));
	assert_false(fx->stub.expect_seen);
}

/* A child of fork() asks the daemon nothing: its inherited context and
 * secret are refused, and the secret it frees is the parent's to report. */
static void test_fork(void **state)
{
	struct fx *fx = *state;
	kw_secret *s = NULL;
	int status;
	pid_t pid;

	stub_start(fx, 2,
		   http(200, "{\"key\":\"" KEY "\",\"backend\":\"b\","
			     "\"lease\":\"L5\"}"),
		   http(200, "{\"lease\":\"L5\",\"outcome\":\"used\"}"));
	assert_status(resolve(fx, NULL, &s), KW_OK);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		kw_secret *t = NULL;
		int bad = 0;

		if (resolve(fx, NULL, &t) != KW_ERR_INVAL || t != NULL)
			bad |= 1;
		if (kw_secret_report(s, KW_UNUSED) != KW_ERR_INVAL)
			bad |= 2;
		if (strcmp(kw_secret_value(s), KEY) != 0)
			bad |= 4;
		kw_secret_free(s);
		kw_close(fx->ctx);
		tu_exit(bad);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(ngot(fx), 1);
	kw_secret_free(s);
	assert_string_equal(got(fx, 1),
			    "POST /v1/report {\"lease\":\"L5\","
			    "\"outcome\":\"used\"}");
}

#define FX_TEST(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int main(void)
{
	static const struct CMUnitTest tests[] = {
		FX_TEST(test_bad_client_configs),
		FX_TEST(test_no_daemon),
		FX_TEST(test_key_and_reports),
		FX_TEST(test_untrusted_socket_dir),
		FX_TEST(test_errors),
		FX_TEST(test_error_codes),
		FX_TEST(test_malformed_key),
		FX_TEST(test_trace),
		FX_TEST(test_long_request),
		FX_TEST(test_fork),
	};

	unsetenv("KEYWAY_MASTER_KEY");
	unsetenv("API_KEY_ENCRYPTION_KEY");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
