/*
 * test_threads.c - one kw_ctx shared by many threads: every resolution gets
 * exactly its own key, explanations run alongside, and kw_last_error()
 * belongs to the thread that failed.  And more threads than a store file
 * has connections walk two store files in opposite orders: none waits for
 * ever, and each gets its own key.
 *
 * cmocka's assertions may only run on the main thread, so workers count
 * their mismatches and keep the first one for the main thread to report.
 *
 * Long on purpose: one program with one fixture, whose tests share their
 * setup and helpers; split, each part would repeat them.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#define NTHREADS 8
#define NCALLS 20000

#define ENV_ANTHROPIC "sk-env-anthropic-0123456789ABCDEF"
#define ENV_OPENAI "sk-env-openai-0123456789ABCDEF"

static const char conf[] =
	"backends: {\n"
	"  org_keys: { module = \"fakestore\"; scope = \"org\"; };\n"
	"  user_keys: { module = \"fakestore\"; scope = \"user\"; };\n"
	"  nokeys: { module = \"fake\"; answer = \"notfound\"; };\n"
	"  server_env: { module = \"env\";\n"
	"                vars = { anthropic = \"KWT_ANTHROPIC_KEY\";\n"
	"                         openai = \"KWT_OPENAI_KEY\";\n"
	"                         mistral = \"KWT_MISTRAL_KEY\"; }; };\n"
	"};\n"
	"chains: {\n"
	"  default = ( { backend = \"org_keys\"; control = \"sufficient\"; },\n"
	"              { backend = \"user_keys\";\n"
	"                control = \"sufficient\"; },\n"
	"              { backend = \"nokeys\"; control = \"sufficient\"; },\n"
	"              { backend = \"server_env\";\n"
	"                control = \"required\"; } );\n"
	"  empty = ( { backend = \"nokeys\"; control = \"required\"; } );\n"
	"};\n";

/* ---- the requests and what each must get ---- */

struct want {
	kw_request req;
	kw_status status;
	char value[128];   /* on KW_OK */
	char backend[32];  /* on KW_OK */
	char masked[32];   /* on KW_OK */
	char error[256];   /* kw_last_error() otherwise */
	size_t steps;      /* kw_explain() steps */
};

static const char *const providers[] = { "anthropic", "openai", "mistral" };
static const char *const users[] = { NULL, "alice", "bob", "carol" };
static const char *const orgs[] = { NULL, "acme", "globex" };
static const char *const chains[] = { NULL, "empty" };

#define NPROV (sizeof(providers) / sizeof(providers[0]))
#define NUSERS (sizeof(users) / sizeof(users[0]))
#define NORGS (sizeof(orgs) / sizeof(orgs[0]))
#define NCHAINS (sizeof(chains) / sizeof(chains[0]))
#define NWANTS (NPROV * NUSERS * NORGS * NCHAINS)

static struct want wants[NWANTS];

static void set_value(struct want *w, const char *backend, const char *fmt,
		      ...) KW_PRINTF(3, 4);

static void set_value(struct want *w, const char *backend, const char *fmt,
		      ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(w->value, sizeof(w->value), fmt, ap);
	va_end(ap);
	n = strlen(w->value);
	w->status = KW_OK;
	snprintf(w->backend, sizeof(w->backend), "%s", backend);
	/* all values here are longer than 16 bytes */
	snprintf(w->masked, sizeof(w->masked), "%.4s****%s", w->value,
		 w->value + n - 4);
}

static void build_want(struct want *w, const char *chain, const char *prov,
		       const char *user, const char *org)
{
	memset(w, 0, sizeof(*w));
	kw_request_init(&w->req);
	w->req.chain = chain;
	w->req.provider = prov;
	w->req.user = user;
	w->req.org = org;
	w->status = KW_ERR_NOTFOUND;
	if (chain != NULL) {
		w->steps = 1;
		snprintf(w->error, sizeof(w->error),
			 "chain \"empty\": no backend has a key for provider "
			 "\"%s\"", prov);
	} else if (org != NULL) {
		w->steps = 1;
		set_value(w, "org_keys", "sk-org-%s-%s-0123456789", org, prov);
	} else if (user != NULL) {
		w->steps = 2;
		set_value(w, "user_keys", "sk-user-%s-%s-0123456789", user,
			  prov);
	} else if (strcmp(prov, "anthropic") == 0) {
		w->steps = 4;
		set_value(w, "server_env", "%s", ENV_ANTHROPIC);
	} else if (strcmp(prov, "openai") == 0) {
		w->steps = 4;
		set_value(w, "server_env", "%s", ENV_OPENAI);
	} else {
		/* $KWT_MISTRAL_KEY is not set */
		w->steps = 4;
		snprintf(w->error, sizeof(w->error),
			 "chain \"default\": no backend has a key for "
			 "provider \"%s\"", prov);
	}
}

static void build_wants(void)
{
	for (size_t i = 0; i < NWANTS; i++) {
		size_t k = i;
		size_t o = k % NORGS, u, p, c;

		k /= NORGS;
		u = k % NUSERS;
		k /= NUSERS;
		p = k % NPROV;
		c = k / NPROV;
		build_want(&wants[i], chains[c], providers[p], users[u],
			   orgs[o]);
	}
}

/* ---- workers ---- */

struct worker {
	pthread_t thread;
	kw_ctx *ctx;
	unsigned id;
	unsigned long calls;
	unsigned long found;
	unsigned long freed;
	unsigned long bad;
	char first_bad[512];
};

static void worker_bad(struct worker *wk, const struct want *w,
		       const char *fmt, ...) KW_PRINTF(3, 4);

static void worker_bad(struct worker *wk, const struct want *w,
		       const char *fmt, ...)
{
	va_list ap;
	int n;

	if (wk->bad++ > 0)
		return;
	n = snprintf(wk->first_bad, sizeof(wk->first_bad),
		     "thread %u, chain %s provider %s user %s org %s: ",
		     wk->id, w->req.chain ? w->req.chain : "(default)",
		     w->req.provider, w->req.user ? w->req.user : "-",
		     w->req.org ? w->req.org : "-");
	va_start(ap, fmt);
	vsnprintf(wk->first_bad + n, sizeof(wk->first_bad) - (size_t)n, fmt,
		  ap);
	va_end(ap);
}

/* Walk the requests in a different order on every thread. */
static const struct want *pick(const struct worker *wk, unsigned long i)
{
	return &wants[(i * 7 + wk->id * 13 + i / NWANTS) % NWANTS];
}

static void *resolve_worker(void *arg)
{
	struct worker *wk = arg;

	for (unsigned long i = 0; i < NCALLS; i++) {
		const struct want *w = pick(wk, i);
		kw_secret *s = (kw_secret *)&s;
		kw_status st = kw_resolve(wk->ctx, &w->req, &s);

		wk->calls++;
		if (st != w->status) {
			worker_bad(wk, w, "status %s, want %s (%s)",
				   kw_status_str(st), kw_status_str(w->status),
				   kw_last_error());
		} else if (st == KW_OK) {
			const char *v = kw_secret_value(s);
			const char *b = kw_secret_backend(s);

			if (v == NULL || strcmp(v, w->value) != 0 ||
			    kw_secret_len(s) != strlen(w->value))
				worker_bad(wk, w, "wrong value");
			else if (b == NULL || strcmp(b, w->backend) != 0)
				worker_bad(wk, w, "backend %s, want %s",
					   b ? b : "(null)", w->backend);
		} else if (s != NULL) {
			worker_bad(wk, w, "failed but *out is not NULL");
		} else if (strcmp(kw_last_error(), w->error) != 0) {
			worker_bad(wk, w, "last error \"%s\", want \"%s\"",
				   kw_last_error(), w->error);
		}
		if (st == KW_OK && s != NULL) {
			wk->found++;
			kw_secret_free(s);
			wk->freed++;
		}
	}
	return NULL;
}

static void *explain_worker(void *arg)
{
	struct worker *wk = arg;

	for (unsigned long i = 0; i < NCALLS; i++) {
		const struct want *w = pick(wk, i);
		kw_trace *t = (kw_trace *)&t;
		kw_status st = kw_explain(wk->ctx, &w->req, &t);
		const kw_trace_step *last;
		const char *b;

		wk->calls++;
		if (st != KW_OK || t == NULL) {
			worker_bad(wk, w, "kw_explain: %s (%s)",
				   kw_status_str(st), kw_last_error());
			continue;
		}
		last = kw_trace_get(t, kw_trace_len(t) - 1);
		b = kw_trace_backend(t);
		if (kw_trace_result(t) != w->status)
			worker_bad(wk, w, "result %s, want %s",
				   kw_status_str(kw_trace_result(t)),
				   kw_status_str(w->status));
		else if (kw_trace_len(t) != w->steps || last == NULL)
			worker_bad(wk, w, "%zu steps, want %zu",
				   kw_trace_len(t), w->steps);
		else if (last->index != w->steps)
			worker_bad(wk, w, "last step has index %u",
				   last->index);
		else if (w->status == KW_OK &&
			 (b == NULL || strcmp(b, w->backend) != 0 ||
			  strcmp(last->backend, w->backend) != 0 ||
			  strcmp(last->masked, w->masked) != 0 ||
			  last->action != KW_ACTION_DONE))
			worker_bad(wk, w, "backend %s masked \"%s\", want %s "
				   "\"%s\"", b ? b : "(null)", last->masked,
				   w->backend, w->masked);
		else if (w->status != KW_OK &&
			 (b != NULL || last->masked[0] != '\0'))
			worker_bad(wk, w, "failed but names a key");
		else if (w->status == KW_OK &&
			 strstr(kw_trace_summary(t), w->value) != NULL)
			worker_bad(wk, w, "the summary shows the key");
		kw_trace_free(t);
	}
	return NULL;
}

/* ---- running them ---- */

struct fixture {
	kw_ctx *ctx;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	/* The environment is set before any thread starts: setenv() is not
	 * safe against concurrent getenv(). */
	if (setenv("KWT_ANTHROPIC_KEY", ENV_ANTHROPIC, 1) != 0 ||
	    setenv("KWT_OPENAI_KEY", ENV_OPENAI, 1) != 0 ||
	    unsetenv("KWT_MISTRAL_KEY") != 0)
		return -1;
	build_wants();
	if (tu_open(&f->ctx, conf, NULL) != KW_OK) {
		fprintf(stderr, "kw_open: %s\n", kw_last_error());
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	kw_close(f->ctx);
	free(f);
	return 0;
}

static void run(kw_ctx *ctx, unsigned nresolve, unsigned nexplain)
{
	struct worker wk[2 * NTHREADS];
	unsigned n = nresolve + nexplain;

	assert_true(n <= 2 * NTHREADS);
	memset(wk, 0, sizeof(wk));
	for (unsigned i = 0; i < n; i++) {
		wk[i].ctx = ctx;
		wk[i].id = i;
		assert_int_equal(pthread_create(&wk[i].thread, NULL,
						i < nresolve ? resolve_worker
							     : explain_worker,
						&wk[i]),
				 0);
	}
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(pthread_join(wk[i].thread, NULL), 0);
	for (unsigned i = 0; i < n; i++) {
		if (wk[i].bad != 0)
			fail_msg("%lu of %lu calls wrong; first: %s",
				 wk[i].bad, wk[i].calls, wk[i].first_bad);
		assert_int_equal(wk[i].calls, NCALLS);
		assert_int_equal(wk[i].found, wk[i].freed);
		if (i < nresolve)
			assert_true(wk[i].found > 0 && wk[i].found < NCALLS);
	}
}

/* Locked memory in use by the process, in kB; 0 where mlock() does not
 * count (no privilege, or a sanitizer that replaces it). */
static unsigned long locked_kb(void)
{
	unsigned long kb = 0;
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmLck: %lu kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static void test_resolve_threads(void **state)
{
	struct fixture *f = *state;
	unsigned long before, after;

	/* The first run sizes the secure slabs; a second run that frees
	 * every secret must not need more of them. */
	run(f->ctx, NTHREADS, 0);
	before = locked_kb();
	run(f->ctx, NTHREADS, 0);
	after = locked_kb();
	if (before > 0 && after > before + 256)
		fail_msg("locked memory grew from %lu kB to %lu kB: secrets "
			 "are not released", before, after);
}

static void test_explain_threads(void **state)
{
	struct fixture *f = *state;

	run(f->ctx, 0, NTHREADS);
}

static void test_mixed_threads(void **state)
{
	struct fixture *f = *state;

	run(f->ctx, NTHREADS, NTHREADS);
}

/* ---- kw_last_error() is per thread ---- */

struct err_thread {
	pthread_t thread;
	kw_ctx *ctx;
	pthread_barrier_t *barrier;
	int role;           /* 0 or 1 */
	unsigned bad;
	char got[512];
	char want[512];
};

static void err_check(struct err_thread *et, const char *want)
{
	if (et->bad == 0 && strcmp(kw_last_error(), want) != 0) {
		snprintf(et->got, sizeof(et->got), "%s", kw_last_error());
		snprintf(et->want, sizeof(et->want), "%s", want);
		et->bad++;
	}
}

static void err_fail(struct err_thread *et, int round)
{
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;
	kw_status st;

	if (et->role == 0) {
		req.chain = round % 2 == 0 ? "empty" : "nope";
		req.provider = "anthropic";
	} else {
		req.provider = round % 2 == 0 ? "Bad" : "mistral";
		req.user = round % 2 == 0 ? "alice" : "a b";
	}
	st = kw_resolve(et->ctx, &req, &s);
	if (st == KW_OK) {
		kw_secret_free(s);
		et->bad++;
	}
}

static const char *err_want(const struct err_thread *et, int round)
{
	if (et->role == 0)
		return round % 2 == 0
			       ? "chain \"empty\": no backend has a key for "
				 "provider \"anthropic\""
			       : NULL; /* names the config path */
	return round % 2 == 0
		       ? "invalid provider name (lower-case letters, digits, "
			 "'-', '_' and '.', at most 64)"
		       : "invalid user name (printable, no spaces or "
			 "slashes, at most 256 bytes)";
}

#define ROUNDS 6

static void *err_worker(void *arg)
{
	struct err_thread *et = arg;

	for (int round = 0; round < ROUNDS; round++) {
		const char *want = err_want(et, round);

		/* Thread 0 fails, then thread 1 fails, then both look. */
		if (et->role == 0)
			err_fail(et, round);
		pthread_barrier_wait(et->barrier);
		if (et->role == 1)
			err_fail(et, round);
		pthread_barrier_wait(et->barrier);
		if (want != NULL)
			err_check(et, want);
		else if (et->bad == 0 &&
			 strstr(kw_last_error(), ": no chain \"nope\"") ==
				 NULL) {
			snprintf(et->got, sizeof(et->got), "%s",
				 kw_last_error());
			snprintf(et->want, sizeof(et->want),
				 "...: no chain \"nope\"");
			et->bad++;
		}
		pthread_barrier_wait(et->barrier);
	}
	return NULL;
}

static void *fresh_worker(void *arg)
{
	char *out = arg;

	snprintf(out, 256, "%s", kw_last_error());
	return NULL;
}

static void test_last_error_per_thread(void **state)
{
	struct fixture *f = *state;
	struct err_thread et[2];
	pthread_barrier_t barrier;
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;
	char fresh[256] = "unset";
	char mine[1024];
	pthread_t t;

	/* The main thread's own failure must survive the others'. */
	req.provider = "anthropic";
	req.chain = "main-only";
	assert_int_equal(kw_resolve(f->ctx, &req, &s), KW_ERR_INVAL);
	snprintf(mine, sizeof(mine), "%s", kw_last_error());
	assert_non_null(strstr(mine, ": no chain \"main-only\""));

	assert_int_equal(pthread_barrier_init(&barrier, NULL, 2), 0);
	memset(et, 0, sizeof(et));
	for (int i = 0; i < 2; i++) {
		et[i].ctx = f->ctx;
		et[i].barrier = &barrier;
		et[i].role = i;
		assert_int_equal(pthread_create(&et[i].thread, NULL,
						err_worker, &et[i]),
				 0);
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(et[i].thread, NULL), 0);
	pthread_barrier_destroy(&barrier);
	for (int i = 0; i < 2; i++)
		if (et[i].bad != 0)
			fail_msg("thread %d sees \"%s\", want \"%s\"", i,
				 et[i].got, et[i].want);
	assert_string_equal(kw_last_error(), mine);

	/* A thread that has not failed yet has an empty message. */
	assert_int_equal(pthread_create(&t, NULL, fresh_worker, fresh), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_string_equal(fresh, "");
}

/* ---- two store files walked in opposite orders ---- */

/*
 * Two sqlite files, a.db and b.db, each with an org and a user backend.
 * Chain "ab" asks a's org, b's org, a's user, b's user; chain "ba" the
 * other way round, so that a walk goes from file to file and back.  If a
 * thread could wait for a connection of one file while it kept one of the
 * other, threads would wait for each other for ever once both pools (16
 * connections each) were used up by such waiters: 32 threads blocked at
 * once.  With 64 threads walking, that happens within the first second
 * (with 36 it rarely does in a few seconds); with a store that never
 * waits holding a connection, it cannot happen at all.
 */
#define NSTORE_THREADS 64
#define STORE_SECONDS 3
#define STORE_ALARM 300   /* seconds: a hang ends the program */
#define STR(x) #x
#define XSTR(x) STR(x)
#define NOWNERS 6

#define STORE_MASTER_KEY "0f1e2d3c4b5a69788796a5b4c3d2e1f0" \
			 "00112233445566778899aabbccddeeff"

static const char store_conf[] =
	"keyway: {\n"
	"  master_key = { source = \"env\"; };\n"
	"};\n"
	"backends: {\n"
	"  a_org: { module = \"sqlite\"; path = \"a.db\"; scope = \"org\"; };\n"
	"  a_user: { module = \"sqlite\"; path = \"a.db\"; "
	"scope = \"user\"; };\n"
	"  b_org: { module = \"sqlite\"; path = \"b.db\"; scope = \"org\"; };\n"
	"  b_user: { module = \"sqlite\"; path = \"b.db\"; "
	"scope = \"user\"; };\n"
	"};\n"
	"chains: {\n"
	"  ab = ( { backend = \"a_org\"; control = \"sufficient\"; },\n"
	"         { backend = \"b_org\"; control = \"sufficient\"; },\n"
	"         { backend = \"a_user\"; control = \"sufficient\"; },\n"
	"         { backend = \"b_user\"; control = \"sufficient\"; } );\n"
	"  ba = ( { backend = \"b_org\"; control = \"sufficient\"; },\n"
	"         { backend = \"a_org\"; control = \"sufficient\"; },\n"
	"         { backend = \"b_user\"; control = \"sufficient\"; },\n"
	"         { backend = \"a_user\"; control = \"sufficient\"; } );\n"
	"};\n";

/* Which file holds owner i's key of a scope: a has those with i % 3 != 2,
 * b those with i % 3 != 0 (both hold 1 and 4). */
static bool store_has(char file, int i)
{
	return file == 'a' ? i % 3 != 2 : i % 3 != 0;
}

static void store_value(char *buf, size_t size, char file, const char *scope,
			int i)
{
	snprintf(buf, size, "sk-ant-%c-%s-%d-0123456789abcdef", file, scope,
		 i);
}

struct store_want {
	kw_request req;
	char user[16], org[16];
	kw_status status;
	char value[64];
	char backend[16];
	char error[128];
};

/* Requests for every user (or none) and org (or none), both chains. */
#define NSTORE_WANTS (2 * (NOWNERS + 1) * (NOWNERS + 1))

static struct store_want store_wants[NSTORE_WANTS];

/* The first entry of the chain's order that holds a key answers. */
static void store_want_build(struct store_want *w, bool ab, int u, int o)
{
	static const struct {
		char file;
		const char *scope;
	} order_ab[] = { { 'a', "org" }, { 'b', "org" }, { 'a', "user" },
			 { 'b', "user" } },
	  order_ba[] = { { 'b', "org" }, { 'a', "org" }, { 'b', "user" },
			 { 'a', "user" } };

	memset(w, 0, sizeof(*w));
	kw_request_init(&w->req);
	w->req.chain = ab ? "ab" : "ba";
	w->req.provider = "anthropic";
	if (u >= 0) {
		snprintf(w->user, sizeof(w->user), "u%d", u);
		w->req.user = w->user;
	}
	if (o >= 0) {
		snprintf(w->org, sizeof(w->org), "o%d", o);
		w->req.org = w->org;
	}
	w->status = KW_ERR_NOTFOUND;
	snprintf(w->error, sizeof(w->error),
		 "chain \"%s\": no backend has a key for provider "
		 "\"anthropic\"", w->req.chain);
	for (int k = 0; k < 4; k++) {
		char file = ab ? order_ab[k].file : order_ba[k].file;
		const char *scope = ab ? order_ab[k].scope : order_ba[k].scope;
		int i = strcmp(scope, "org") == 0 ? o : u;

		if (i < 0 || !store_has(file, i))
			continue;
		w->status = KW_OK;
		store_value(w->value, sizeof(w->value), file, scope, i);
		snprintf(w->backend, sizeof(w->backend), "%c_%s", file,
			 scope);
		return;
	}
}

static void store_wants_build(void)
{
	size_t n = 0;

	for (int ab = 0; ab < 2; ab++)
		for (int u = -1; u < NOWNERS; u++)
			for (int o = -1; o < NOWNERS; o++)
				store_want_build(&store_wants[n++], ab != 0, u,
						 o);
}

struct store_worker {
	pthread_t thread;
	kw_ctx *ctx;
	unsigned id;
	bool explain;
	const atomic_bool *stop;
	unsigned long calls, found, bad;
	char first_bad[512];
};

static void store_bad(struct store_worker *wk, const struct store_want *w,
		      const char *fmt, ...) KW_PRINTF(3, 4);

static void store_bad(struct store_worker *wk, const struct store_want *w,
		      const char *fmt, ...)
{
	va_list ap;
	int n;

	if (wk->bad++ > 0)
		return;
	n = snprintf(wk->first_bad, sizeof(wk->first_bad),
		     "thread %u, chain %s user %s org %s: ", wk->id,
		     w->req.chain, w->req.user ? w->req.user : "-",
		     w->req.org ? w->req.org : "-");
	va_start(ap, fmt);
	vsnprintf(wk->first_bad + n, sizeof(wk->first_bad) - (size_t)n, fmt,
		  ap);
	va_end(ap);
}

static void store_resolve_one(struct store_worker *wk,
			      const struct store_want *w)
{
	kw_secret *s = (kw_secret *)&s;
	kw_status st = kw_resolve(wk->ctx, &w->req, &s);

	if (st != w->status) {
		store_bad(wk, w, "status %s, want %s (%s)", kw_status_str(st),
			  kw_status_str(w->status), kw_last_error());
	} else if (st == KW_OK) {
		if (strcmp(kw_secret_value(s), w->value) != 0)
			store_bad(wk, w, "wrong value from %s",
				  kw_secret_backend(s));
		else if (strcmp(kw_secret_backend(s), w->backend) != 0)
			store_bad(wk, w, "backend %s, want %s",
				  kw_secret_backend(s), w->backend);
		wk->found++;
	} else if (s != NULL) {
		store_bad(wk, w, "failed but *out is not NULL");
	} else if (strcmp(kw_last_error(), w->error) != 0) {
		store_bad(wk, w, "last error \"%s\", want \"%s\"",
			  kw_last_error(), w->error);
	}
	if (st == KW_OK && s != NULL)
		kw_secret_free(s);
}

static void store_explain_one(struct store_worker *wk,
			      const struct store_want *w)
{
	kw_trace *t = NULL;
	kw_status st = kw_explain(wk->ctx, &w->req, &t);
	const char *b;

	if (st != KW_OK) {
		store_bad(wk, w, "kw_explain: %s (%s)", kw_status_str(st),
			  kw_last_error());
		return;
	}
	b = kw_trace_backend(t);
	if (kw_trace_result(t) != w->status)
		store_bad(wk, w, "explained %s (%s), want %s",
			  kw_status_str(kw_trace_result(t)),
			  kw_trace_summary(t), kw_status_str(w->status));
	else if (w->status == KW_OK &&
		 (b == NULL || strcmp(b, w->backend) != 0))
		store_bad(wk, w, "explained backend %s, want %s",
			  b ? b : "(null)", w->backend);
	else if (w->status == KW_OK)
		wk->found++;
	kw_trace_free(t);
}

static void *store_worker(void *arg)
{
	struct store_worker *wk = arg;

	for (unsigned long i = 0; !atomic_load(wk->stop); i++) {
		const struct store_want *w =
			&store_wants[(i * 11 + wk->id * 7) % NSTORE_WANTS];

		wk->calls++;
		if (wk->explain)
			store_explain_one(wk, w);
		else
			store_resolve_one(wk, w);
	}
	return NULL;
}

static void store_hung(int sig)
{
	static const char msg[] =
		"# test_store_files_threads: no end after " XSTR(STORE_ALARM)
		" seconds: threads are waiting for each other\n";

	(void)sig;
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(99);
	_exit(99);
}

/* Store every key store_has() says; false (and the message) on failure. */
static bool store_fill(kw_ctx *ctx, char *why, size_t whylen)
{
	static const kw_actor root = { sizeof(kw_actor), "root", NULL,
				       KW_ROLE_SYSADMIN };
	char value[64], owner[16], backend[16];

	for (int i = 0; i < NOWNERS; i++) {
		for (int k = 0; k < 4; k++) {
			const char file = k < 2 ? 'a' : 'b';
			const char *scope = k % 2 == 0 ? "org" : "user";
			kw_key_ref r = KW_KEY_REF_INIT;

			if (!store_has(file, i))
				continue;
			snprintf(owner, sizeof(owner), "%c%d", scope[0], i);
			snprintf(backend, sizeof(backend), "%c_%s", file,
				 scope);
			store_value(value, sizeof(value), file, scope, i);
			r.backend = backend;
			r.owner = owner;
			r.provider = "anthropic";
			if (kw_key_put(ctx, &root, &r, value, strlen(value),
				       NULL, KW_PUT_CREATE) != KW_OK) {
				snprintf(why, whylen, "put %s %s: %s",
					 backend, owner, kw_last_error());
				return false;
			}
		}
	}
	return true;
}

static void test_store_files_threads(void **state)
{
	struct store_worker wk[NSTORE_THREADS];
	struct sigaction sa;
	atomic_bool stop;
	struct timespec ts = { STORE_SECONDS, 0 };
	char *dir = NULL, why[512];
	kw_ctx *ctx = NULL;
	unsigned long found = 0;
	unsigned started = 0;
	bool filled;
	kw_status st;

	(void)state;
	store_wants_build();
	assert_int_equal(setenv("KEYWAY_MASTER_KEY", STORE_MASTER_KEY, 1), 0);
	st = tu_open(&ctx, store_conf, &dir);
	if (st != KW_OK) {
		tu_rmrf(dir);
		fail_msg("kw_open: %s", kw_last_error());
	}
	filled = store_fill(ctx, why, sizeof(why));
	if (!filled) {
		kw_close(ctx);
		tu_rmrf(dir);
		fail_msg("%s", why);
	}

	/* From here on a hang ends the program with a message. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = store_hung;
	assert_int_equal(sigaction(SIGALRM, &sa, NULL), 0);
	alarm(STORE_ALARM);
	atomic_init(&stop, false);
	memset(wk, 0, sizeof(wk));
	for (unsigned i = 0; i < NSTORE_THREADS; i++) {
		wk[i].ctx = ctx;
		wk[i].id = i;
		wk[i].explain = i % 6 == 5;
		wk[i].stop = &stop;
		if (pthread_create(&wk[i].thread, NULL, store_worker,
				   &wk[i]) != 0)
			break;
		started++;
	}
	nanosleep(&ts, NULL);
	atomic_store(&stop, true);
	for (unsigned i = 0; i < started; i++)
		pthread_join(wk[i].thread, NULL);
	kw_close(ctx);
	alarm(0);
	tu_rmrf(dir);
	unsetenv("KEYWAY_MASTER_KEY");

	assert_int_equal(started, NSTORE_THREADS);
	for (unsigned i = 0; i < NSTORE_THREADS; i++) {
		if (wk[i].bad != 0)
			fail_msg("%lu of %lu calls wrong; first: %s",
				 wk[i].bad, wk[i].calls, wk[i].first_bad);
		if (wk[i].calls == 0)
			fail_msg("thread %u made no call in %d seconds", i,
				 STORE_SECONDS);
		found += wk[i].found;
	}
	assert_true(found > 0);
}

/* ---- the usage thread starts before anything secret is read ---- */

#define DUMP_MASTER "000102030405060708090a0b0c0d0e0f" \
		    "101112131415161718191a1b1c1d1e1f"

static long threads_named(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	long n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		char path[300], comm[64];
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm",
			 e->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		if (fgets(comm, sizeof(comm), f) != NULL) {
			comm[strcspn(comm, "\n")] = '\0';
			n += strcmp(comm, name) == 0;
		}
		fclose(f);
	}
	closedir(d);
	return n;
}

/*
 * The thread that writes usage counts starts with a copy of its creator's
 * registers and sleeps with them for the life of the context, so it must
 * exist before the context reads a master key or opens a backend: the
 * fake backend, opened first, checks that it is already there.  A
 * context none of whose backends count uses does not keep it.
 */
static void test_usage_thread_before_secrets(void **state)
{
	long before = threads_named("kw-usage");
	kw_ctx *ctx = NULL;
	char text[2048];

	(void)state;
	assert_int_equal(setenv("KWTEST_DUMP_MASTER", DUMP_MASTER, 1), 0);
	snprintf(text, sizeof(text),
		 "keyway: { master_key = { source = \"env\"; "
		 "var = \"KWTEST_DUMP_MASTER\"; }; };\n"
		 "backends: {\n"
		 "  first: { module = \"fake\"; answer = \"notfound\"; "
		 "usage_threads = %ld; };\n"
		 "  user_keys: { module = \"sqlite\"; path = \"keys.db\"; "
		 "scope = \"user\"; };\n"
		 "};\n"
		 "chains: { default = ( { backend = \"first\"; "
		 "control = \"optional\"; },\n"
		 "  { backend = \"user_keys\"; control = \"required\"; } ); };\n",
		 before + 1);
	if (tu_open(&ctx, text, NULL) != KW_OK)
		fail_msg("kw_open: %s", kw_last_error());
	assert_int_equal(threads_named("kw-usage"), before + 1);
	kw_close(ctx);
	assert_int_equal(threads_named("kw-usage"), before);

	/* Nothing counts uses: the thread is there while the backends
	 * open, and gone once they have. */
	snprintf(text, sizeof(text),
		 "backends: { first: { module = \"fake\"; answer = \"found\"; "
		 "usage_threads = %ld; }; };\n"
		 "chains: { default = ( { backend = \"first\"; "
		 "control = \"required\"; } ); };\n",
		 before + 1);
	ctx = NULL;
	if (tu_open(&ctx, text, NULL) != KW_OK)
		fail_msg("kw_open: %s", kw_last_error());
	assert_int_equal(threads_named("kw-usage"), before);
	kw_close(ctx);
	unsetenv("KWTEST_DUMP_MASTER");
}

/* ---- no secret in a core dump ---- */

/*
 * A program that opened a store and a dotenv file is dumped with gdb's
 * gcore, which keeps out memory marked MADV_DONTDUMP as the kernel does
 * and saves every thread's registers.  The dotenv key must not be in the
 * core: not in memory, and not in the saved vector registers of the
 * thread that writes usage counts, which would have been created with a
 * copy of the registers of the thread that had just parsed the file.
 *
 * The program is this test, run again with --dump-me so that the key,
 * which only the dotenv file holds, was never in its memory before
 * kw_open().  It opens the context on a thread of its own that then ends,
 * so that what stays is what libkeyway keeps, not the opener's registers.
 */
#define DUMP_ARG "--dump-me"
#define DUMP_KEYLEN 40

static void *dump_open(void *arg)
{
	kw_ctx *ctx = NULL;

	if (kw_open(&ctx, arg) != KW_OK) {
		fprintf(stderr, "%s\n", kw_last_error());
		return NULL;
	}
	return ctx;
}

static int dump_me(const char *path)
{
	pthread_t t;
	void *ctx = NULL;
	char c;

	if (pthread_create(&t, NULL, dump_open, (void *)path) != 0 ||
	    pthread_join(t, &ctx) != 0 || ctx == NULL)
		return 1;
	if (write(STDOUT_FILENO, "ready\n", 6) != 6)
		return 1;
	/* Until the test has its core: then stdin closes. */
	while (read(STDIN_FILENO, &c, 1) > 0)
		;
	kw_close(ctx);
	return 0;
}

/* Run argv with stdout and stderr to /dev/null; its exit status, or -1. */
static int run_quiet(char *const argv[])
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/*
 * Where in the file at path any 8 bytes of key[from..] are, or -1; read a
 * piece at a time, with an overlap, since a core can be large.
 */
static long long find_piece(const char *path, const char *key, size_t from)
{
	static char buf[(1 << 20) + 8];
	size_t keylen = strlen(key), have = 0, got;
	long long base = 0, at = -1;
	FILE *f = fopen(path, "rb");

	assert_non_null(f);
	while (at < 0 && (got = fread(buf + have, 1, sizeof(buf) - have,
				      f)) > 0) {
		have += got;
		for (size_t i = from; at < 0 && i + 8 <= keylen; i++) {
			const char *p = memmem(buf, have, key + i, 8);

			if (p != NULL)
				at = base + (p - buf);
		}
		/* Keep the last 7 bytes: a piece may straddle two reads. */
		if (have > 7) {
			memmove(buf, buf + have - 7, 7);
			base += (long long)(have - 7);
			have = 7;
		}
	}
	fclose(f);
	return at;
}

static void test_core_has_no_dotenv_key(void **state)
{
	static const char alnum[] = "abcdefghijklmnopqrstuvwxyz"
				    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	char key[DUMP_KEYLEN + 1], *dir, *path, *core, *self;
	char pidstr[32], ready[8];
	int in[2], out[2];
	unsigned char rnd[DUMP_KEYLEN];
	long long at;
	pid_t pid;
	FILE *f;

	(void)state;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	/* The sanitizer's shadow memory would make a core of terabytes; the
	 * plain build takes the dump. */
	print_message("built with a sanitizer: no core dump taken\n");
	return;
#endif
	if (run_quiet((char *const[]){ "gcore", NULL }) == 127 ||
	    run_quiet((char *const[]){ "gdb", "--version", NULL }) != 0) {
		print_message("gcore (from gdb) is not installed: cannot dump "
			      "a process to look for the dotenv key\n");
		skip();
	}

	/* A key no one has seen: 7 bytes of prefix, then random. */
	f = fopen("/dev/urandom", "rb");
	assert_non_null(f);
	assert_int_equal(fread(rnd, 1, sizeof(rnd), f), sizeof(rnd));
	fclose(f);
	memcpy(key, "sk-ant-", 7);
	for (size_t i = 7; i < DUMP_KEYLEN; i++)
		key[i] = alnum[rnd[i] % (sizeof(alnum) - 1)];
	key[DUMP_KEYLEN] = '\0';

	dir = tu_tmpdir();
	free(tu_write(dir, "server.env", 0600, "ANTHROPIC_API_KEY=%s\n", key));
	/* The store makes the usage thread start; the env backend comes
	 * last, so its file is the last secret read before it would. */
	path = tu_write(dir, "keyway.conf", 0644,
			"keyway: { master_key = { source = \"env\"; "
			"var = \"KWTEST_DUMP_MASTER\"; }; };\n"
			"backends: {\n"
			"  user_keys: { module = \"sqlite\"; path = \"keys.db\"; "
			"scope = \"user\"; };\n"
			"  server_env: { module = \"env\"; environment = false; "
			"dotenv = \"server.env\"; };\n"
			"};\n"
			"chains: { default = ( { backend = \"user_keys\"; "
			"control = \"sufficient\"; },\n"
			"  { backend = \"server_env\"; control = \"required\"; "
			"} ); };\n");

	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(out), 0);
	self = tu_self();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(in[0], STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		setenv("KWTEST_DUMP_MASTER", DUMP_MASTER, 1);
		execl(self, "test_threads", DUMP_ARG, path,
		      (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	if (read(out[0], ready, 6) != 6 || memcmp(ready, "ready\n", 6) != 0)
		fail_msg("the program to dump did not open %s", path);

	snprintf(pidstr, sizeof(pidstr), "%ld", (long)pid);
	assert_true(asprintf(&core, "%s/core", dir) > 0);
	if (run_quiet((char *const[]){ "gcore", "-o", core, pidstr,
				       NULL }) != 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		fail_msg("gcore could not dump process %s", pidstr);
	}
	close(in[1]);
	close(out[0]);
	assert_int_equal(waitpid(pid, NULL, 0), pid);

	free(core);
	assert_true(asprintf(&core, "%s/core.%s", dir, pidstr) > 0);
	at = find_piece(core, key, 7);
	/* No core of the test left behind, whatever it holds. */
	unlink(core);
	free(core);
	free(path);
	tu_rmrf(dir);
	/* Any 8 bytes of the random part: a register holds 8, 16 or 32. */
	if (at >= 0)
		fail_msg("the core of a process that read a dotenv file holds "
			 "8 bytes of its key at offset %#llx",
			 at);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resolve_threads),
		cmocka_unit_test(test_explain_threads),
		cmocka_unit_test(test_mixed_threads),
		cmocka_unit_test(test_last_error_per_thread),
		cmocka_unit_test(test_store_files_threads),
		cmocka_unit_test(test_usage_thread_before_secrets),
		cmocka_unit_test(test_core_has_no_dotenv_key),
	};

	if (argc == 3 && strcmp(argv[1], DUMP_ARG) == 0)
		return dump_me(argv[2]);
	return cmocka_run_group_tests(tests, setup, teardown);
}
