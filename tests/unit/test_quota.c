/*
 * test_quota.c - quotas, the usage log and the audit trail through the
 * public API: exact admission under many processes and threads, fixed UTC
 * windows rolling over on an injected clock, refunds of unused keys, usage
 * counts of stored keys, explain as a dry run, an unavailable ledger, the
 * ledger's schema (migrated from version 1, also by processes at once),
 * its sweep of expired counters and the length of its WAL, configuration
 * errors, and the audit trail's lines, fingerprints and failures.
 *
 * Links the library built with its test seams, whose clock a test can
 * set.  Every key in this file contains "SECRET", and no message, usage
 * row or audit line may.
 *
 * Long on purpose: one program with one fixture, whose tests share their
 * setup and helpers; split, each part would repeat them.
 */
#include "config.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include <keyway/keyway.h>

#include "conf.h"
#include "context.h"
#include "host.h"
#include "loader.h"
#include "seams.h"
#include "testutil.h"

#define MASTER "000102030405060708090a0b0c0d0e0f" \
	       "101112131415161718191a1b1c1d1e1f"

#define K_ENV "sk-ant-SECRET-quota-environment-0001"
#define K_ORG "sk-ant-SECRET-quota-org-acme-000002"
#define K_ORG2 "sk-ant-SECRET-quota-org-acme-rotated3"
#define K_USER "sk-ant-SECRET-quota-user-alice-0004"
#define K_OPENAI "sk-SECRET-quota-openai-environment-05"

static const char *const test_vars[] = {
	"KEYWAY_MASTER_KEY", "API_KEY_ENCRYPTION_KEY", "ANTHROPIC_API_KEY",
	"OPENAI_API_KEY",
	NULL,
};

/* ---- the injected clock ---- */

static _Atomic int64_t fake_now;

static int64_t fake_clock(void)
{
	return atomic_load(&fake_now);
}

static void set_now(int64_t t)
{
	atomic_store(&fake_now, t);
}

static int64_t utc(int year, int mon, int day, int hour, int min, int sec)
{
	struct tm tm = { 0 };

	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	return (int64_t)timegm(&tm);
}

/* For run_load(): 1, every request is for anthropic; 2, every other round
 * of users asks for openai instead.  The children inherit it. */
static int load_providers = 1;

/* ---- fixture ---- */

struct fixture {
	char *dir;
	char *conf;   /* dir/keyway.conf */
	char *ledger; /* dir/ledger.db */
	char *audit;  /* dir/audit.jsonl */
	char *store;  /* dir/keys.db */
	kw_ctx *ctx;
	char err[1024]; /* kw_last_error() of the last failed get() */
	const void *param; /* the test's initial state, if any */
};

/* Windows are cut from a clock the test holds still: a run that crosses
 * midnight counts the same as any other. */
#define DEFAULT_NOW 1700000000 /* 2023-11-14T22:13:20Z */

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	f->param = *state;
	tu_unsetenv(test_vars);
	setenv("KEYWAY_MASTER_KEY", MASTER, 1);
	setenv("ANTHROPIC_API_KEY", K_ENV, 1);
	set_now(DEFAULT_NOW);
	kwi_test_set_clock(fake_clock);
	load_providers = 1;
	f->dir = tu_tmpdir();
	if (asprintf(&f->conf, "%s/keyway.conf", f->dir) < 0 ||
	    asprintf(&f->ledger, "%s/ledger.db", f->dir) < 0 ||
	    asprintf(&f->audit, "%s/audit.jsonl", f->dir) < 0 ||
	    asprintf(&f->store, "%s/keys.db", f->dir) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	kw_close(f->ctx);
	kwi_test_set_clock(NULL);
	free(f->conf);
	free(f->ledger);
	free(f->audit);
	free(f->store);
	tu_rmrf(f->dir);
	free(f);
	tu_release(0);
	tu_unsetenv(test_vars);
	return 0;
}

/* Write text as f->conf (replacing the last one) and open it. */
static kw_status open_text(struct fixture *f, const char *text)
{
	kw_status st;

	kw_close(f->ctx);
	f->ctx = NULL;
	free(tu_write(f->dir, "keyway.conf", 0600, "%s", text));
	st = kw_open(&f->ctx, f->conf);
	if (st != KW_OK)
		tu_assert_no_secret(kw_last_error());
	return st;
}

static void must_open(struct fixture *f, const char *text)
{
	kw_status st = open_text(f, text);

	if (st != KW_OK)
		fail_msg("kw_open: %s: %s", kw_status_str(st),
			 kw_last_error());
}

/*
 * One backend, B, of the env module with the quotas given, alone in the
 * default chain; the ledger in ledger.db with extra settings.
 */
static void write_quota_conf(struct fixture *f, const char *ledger_extra,
			     const char *quotas)
{
	free(tu_write(f->dir, "keyway.conf", 0600,
		      "keyway: {\n"
		      "  ledger: { module = \"sqlite\"; "
		      "path = \"ledger.db\";%s };\n"
		      "};\n"
		      "backends: {\n"
		      "  B: { module = \"env\"; quota = ( %s ); };\n"
		      "};\n"
		      "chains: {\n"
		      "  default = ( { backend = \"B\"; "
		      "control = \"required\"; } );\n"
		      "};\n",
		      ledger_extra, quotas));
}

static void reopen(struct fixture *f)
{
	kw_status st;

	kw_close(f->ctx);
	f->ctx = NULL;
	st = kw_open(&f->ctx, f->conf);
	if (st != KW_OK)
		fail_msg("kw_open: %s", kw_last_error());
}

static void open_quota(struct fixture *f, const char *ledger_extra,
		       const char *quotas)
{
	write_quota_conf(f, ledger_extra, quotas);
	reopen(f);
}

/* The environment's key for provider (anthropic, or openai once
 * OPENAI_API_KEY is set). */
static const char *env_key(const char *provider)
{
	return strcmp(provider, "openai") == 0 ? K_OPENAI : K_ENV;
}

/* Resolve provider for user and org; a key must be the environment's.
 * On failure f->err holds kw_last_error(). */
static kw_status get_for(struct fixture *f, const char *provider,
			 const char *user, const char *org)
{
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;
	kw_status st;

	req.provider = provider;
	req.user = user;
	req.org = org;
	st = kw_resolve(f->ctx, &req, &s);
	f->err[0] = '\0';
	if (st == KW_OK) {
		assert_non_null(s);
		assert_string_equal(kw_secret_value(s), env_key(provider));
		assert_string_equal(kw_secret_backend(s), "B");
		kw_secret_free(s);
	} else {
		assert_null(s);
		snprintf(f->err, sizeof(f->err), "%s", kw_last_error());
		tu_assert_no_secret(f->err);
	}
	return st;
}

static kw_status get(struct fixture *f, const char *user, const char *org)
{
	return get_for(f, "anthropic", user, org);
}

static void expect_ok_for(struct fixture *f, const char *provider,
			  const char *user, const char *org, int times)
{
	for (int i = 0; i < times; i++) {
		kw_status st = get_for(f, provider, user, org);

		if (st != KW_OK)
			fail_msg("request %d of %d for %s/%s, %s: %s: %s",
				 i + 1, times, user != NULL ? user : "-",
				 org != NULL ? org : "-", provider,
				 kw_status_str(st), f->err);
	}
}

static void expect_ok(struct fixture *f, const char *user, const char *org,
		      int times)
{
	expect_ok_for(f, "anthropic", user, org, times);
}

/* The chain's message for B's denial of provider with this detail. */
static const char *denied_by_b_for(const char *provider, const char *detail)
{
	return tu_fmt("chain \"default\", provider \"%s\": B answered "
		      "denied: %s",
		      provider, detail);
}

static void expect_denied_for(struct fixture *f, const char *provider,
			      const char *user, const char *org,
			      const char *detail)
{
	assert_int_equal(get_for(f, provider, user, org), KW_ERR_DENIED);
	assert_string_equal(f->err, denied_by_b_for(provider, detail));
}

static void expect_denied(struct fixture *f, const char *user,
			  const char *org, const char *detail)
{
	expect_denied_for(f, "anthropic", user, org, detail);
}

static const char *iso(int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	char buf[32];

	assert_non_null(gmtime_r(&tt, &tm));
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return tu_fmt("%s", buf);
}

/* "quota B 3/minute per user used up for user alice (3 of 3); resets T" */
static const char *used_up(const char *label, const char *per,
			   const char *who, unsigned count, unsigned limit,
			   int64_t reset)
{
	if (who == NULL)
		return tu_fmt("quota B %s used up (%u of %u); resets %s", label,
			      count, limit, iso(reset));
	return tu_fmt("quota B %s used up for %s %s (%u of %u); resets %s",
		      label, per, who, count, limit, iso(reset));
}

/* ---- the usage log ---- */

#define MAX_USERS 32

struct rows {
	unsigned n, admitted, denied, refunded, other;
	unsigned bad_time;   /* rows not stamped with the injected clock */
	int64_t want_time;   /* 0: any */
	char users[MAX_USERS][16];
	unsigned user_admitted[MAX_USERS];
	unsigned nusers;
};

static kw_status count_row(void *arg, const kw_usage_row *row)
{
	struct rows *r = arg;
	unsigned u;

	r->n++;
	if (strcmp(row->outcome, "admitted") == 0)
		r->admitted++;
	else if (strcmp(row->outcome, "denied") == 0)
		r->denied++;
	else if (strcmp(row->outcome, "refunded") == 0)
		r->refunded++;
	else
		r->other++;
	if (r->want_time != 0 && row->time != r->want_time)
		r->bad_time++;
	if (strcmp(row->outcome, "admitted") != 0)
		return KW_OK;
	for (u = 0; u < r->nusers; u++)
		if (strcmp(r->users[u], row->user != NULL ? row->user : "-") ==
		    0)
			break;
	if (u == r->nusers && r->nusers < MAX_USERS)
		snprintf(r->users[r->nusers++], sizeof(r->users[0]), "%s",
			 row->user != NULL ? row->user : "-");
	if (u < MAX_USERS)
		r->user_admitted[u]++;
	return KW_OK;
}

static struct rows usage_rows(kw_ctx *ctx, const kw_usage_filter *filter,
			      int64_t want_time)
{
	struct rows r;
	kw_status st;

	memset(&r, 0, sizeof(r));
	r.want_time = want_time;
	st = kw_usage(ctx, tu_sysadmin(), filter, count_row, &r);
	if (st != KW_OK)
		fail_msg("kw_usage: %s: %s", kw_status_str(st),
			 kw_last_error());
	assert_int_equal(r.other, 0);
	return r;
}

static unsigned admitted_of(const struct rows *r, const char *user)
{
	for (unsigned u = 0; u < r->nusers; u++)
		if (strcmp(r->users[u], user) == 0)
			return r->user_admitted[u];
	return 0;
}

static void expect_rows(kw_ctx *ctx, unsigned admitted, unsigned denied,
			unsigned refunded)
{
	struct rows r = usage_rows(ctx, NULL, 0);

	assert_int_equal(r.admitted, admitted);
	assert_int_equal(r.denied, denied);
	assert_int_equal(r.refunded, refunded);
	assert_int_equal(r.n, admitted + denied + refunded);
}

/* ---- exact under many processes and threads ---- */

#define NPROC 8
#define NTHREADS 4
#define NREQ 200
#define NUSERS 20

/* What a child saw, sent to the parent through a pipe in one write. */
struct tally {
	uint32_t admitted[NUSERS];        /* anthropic */
	uint32_t admitted_openai[NUSERS]; /* with load_providers == 2 */
	uint32_t denied;
	uint32_t other;      /* neither found nor denied by a quota */
	int32_t status;      /* kw_open()'s */
	char first[400];     /* the first unexpected answer */
};

struct worker {
	pthread_t thread;
	kw_ctx *ctx;
	int child, index;
	struct tally t;
};

static const char *load_user(int u)
{
	static const char *const names[NUSERS] = {
		"u00", "u01", "u02", "u03", "u04", "u05", "u06",
		"u07", "u08", "u09", "u10", "u11", "u12", "u13",
		"u14", "u15", "u16", "u17", "u18", "u19",
	};

	return names[u];
}

static void *hammer(void *arg)
{
	static const char *const denial[] = {
		"chain \"default\", provider \"anthropic\": B answered "
		"denied: quota B ",
		"chain \"default\", provider \"openai\": B answered "
		"denied: quota B ",
	};
	struct worker *w = arg;

	for (int i = 0; i < NREQ; i++) {
		/* Every user is asked for by every thread of every child. */
		int u = (i + 7 * w->index + 3 * w->child) % NUSERS;
		int p = load_providers > 1 ? (i / NUSERS) % 2 : 0;
		kw_request req = KW_REQUEST_INIT;
		kw_secret *s = NULL;
		kw_status st;

		req.provider = p == 0 ? "anthropic" : "openai";
		req.user = load_user(u);
		st = kw_resolve(w->ctx, &req, &s);
		if (st == KW_OK &&
		    strcmp(kw_secret_value(s), env_key(req.provider)) == 0) {
			if (p == 0)
				w->t.admitted[u]++;
			else
				w->t.admitted_openai[u]++;
		} else if (st == KW_ERR_DENIED &&
			   strncmp(kw_last_error(), denial[p],
				   strlen(denial[p])) == 0) {
			w->t.denied++;
		} else if (w->t.other++ == 0) {
			snprintf(w->t.first, sizeof(w->t.first), "%s: %s",
				 kw_status_str(st),
				 st == KW_OK ? "wrong key" : kw_last_error());
		}
		kw_secret_free(s);
	}
	return NULL;
}

/* In a child: no cmocka; the tally goes to out_fd, the status to exit. */
static int load_child(const char *conf, int child, int ready_fd, int go_fd,
		      int out_fd)
{
	struct worker w[NTHREADS];
	struct tally total;
	kw_ctx *ctx = NULL;
	int started = 0;
	char go;

	memset(&total, 0, sizeof(total));
	memset(w, 0, sizeof(w));
	total.status = (int32_t)kw_open(&ctx, conf);
	go = 'r';
	if (write(ready_fd, &go, 1) != 1)
		total.other++;
	close(ready_fd);
	if (total.status != KW_OK) {
		snprintf(total.first, sizeof(total.first), "kw_open: %s",
			 kw_last_error());
		goto out;
	}
	/* Start when every child has opened, for the most contention. */
	if (read(go_fd, &go, 1) < 0)
		total.other++;
	for (int t = 0; t < NTHREADS; t++) {
		w[t].ctx = ctx;
		w[t].child = child;
		w[t].index = t;
		if (pthread_create(&w[t].thread, NULL, hammer, &w[t]) != 0)
			break;
		started++;
	}
	for (int t = 0; t < started; t++) {
		pthread_join(w[t].thread, NULL);
		for (int u = 0; u < NUSERS; u++) {
			total.admitted[u] += w[t].t.admitted[u];
			total.admitted_openai[u] +=
				w[t].t.admitted_openai[u];
		}
		total.denied += w[t].t.denied;
		total.other += w[t].t.other;
		if (total.first[0] == '\0')
			memcpy(total.first, w[t].t.first, sizeof(total.first));
	}
	if (started < NTHREADS) {
		total.other++;
		snprintf(total.first, sizeof(total.first),
			 "pthread_create failed");
	}
	kw_close(ctx);
out:
	if (write(out_fd, &total, sizeof(total)) != (ssize_t)sizeof(total))
		return 2;
	return total.status != KW_OK || total.other != 0 ? 1 : 0;
}

/*
 * Fork NPROC children hammering f->conf and add up what they saw.  The
 * parent has nothing open: SQLite connections must not cross a fork.
 */
static void run_load(struct fixture *f, struct tally *sum)
{
	int ready[2], go[2], out[NPROC][2];
	pid_t pids[NPROC];
	unsigned failed = 0;
	char first[400] = "", byte;

	kw_close(f->ctx);
	f->ctx = NULL;
	memset(sum, 0, sizeof(*sum));
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	fflush(NULL);
	for (int c = 0; c < NPROC; c++) {
		assert_int_equal(pipe(out[c]), 0);
		pids[c] = fork();
		assert_true(pids[c] >= 0);
		if (pids[c] == 0) {
			close(ready[0]);
			close(go[1]);
			close(out[c][0]);
			tu_exit(load_child(f->conf, c, ready[1], go[0],
					 out[c][1]));
		}
		close(out[c][1]);
	}
	close(ready[1]);
	close(go[0]);
	/* Each child says when it has opened (or given up)... */
	for (int c = 0; c < NPROC && read(ready[0], &byte, 1) == 1; c++)
		;
	close(ready[0]);
	/* ...and they all read 0 bytes, together, when this one closes. */
	close(go[1]);
	for (int c = 0; c < NPROC; c++) {
		struct tally t;
		size_t got = 0;
		int status = 0;

		while (got < sizeof(t)) {
			ssize_t n = read(out[c][0], (char *)&t + got,
					 sizeof(t) - got);

			if (n <= 0)
				break;
			got += (size_t)n;
		}
		close(out[c][0]);
		if (waitpid(pids[c], &status, 0) != pids[c] ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed++;
		if (got != sizeof(t)) {
			failed++;
			continue;
		}
		for (int u = 0; u < NUSERS; u++) {
			sum->admitted[u] += t.admitted[u];
			sum->admitted_openai[u] += t.admitted_openai[u];
		}
		sum->denied += t.denied;
		sum->other += t.other;
		if (first[0] == '\0' && t.first[0] != '\0')
			snprintf(first, sizeof(first), "child %d: %s", c,
				 t.first);
	}
	if (failed > 0 || sum->other > 0)
		fail_msg("%u children failed, %u unexpected answers; %s",
			 failed, sum->other, first);
}

static void test_exact_one_quota(void **state)
{
	struct fixture *f = *state;
	struct tally sum;
	unsigned total = 0;
	struct rows r;

	/* The children create the ledger, all at once. */
	write_quota_conf(f, "",
			 "{ limit = 10; period = \"day\"; per = \"user\"; }");
	assert_int_equal(access(f->ledger, F_OK), -1);
	run_load(f, &sum);
	for (int u = 0; u < NUSERS; u++) {
		if (sum.admitted[u] != 10)
			fail_msg("user %s: %u admitted, not 10", load_user(u),
				 sum.admitted[u]);
		total += sum.admitted[u];
	}
	assert_int_equal(total, 200);
	assert_int_equal(sum.denied, NPROC * NTHREADS * NREQ - 200);

	/* The ledger agrees, row for row. */
	reopen(f);
	r = usage_rows(f->ctx, NULL, DEFAULT_NOW);
	assert_int_equal(r.admitted, 200);
	assert_int_equal(r.denied, 6200);
	assert_int_equal(r.refunded, 0);
	assert_int_equal(r.bad_time, 0);
	assert_int_equal(r.nusers, NUSERS);
	for (int u = 0; u < NUSERS; u++)
		assert_int_equal(admitted_of(&r, load_user(u)), 10);
	/* And the counts stay used up. */
	for (int u = 0; u < NUSERS; u++)
		assert_int_equal(get(f, load_user(u), NULL), KW_ERR_DENIED);
}

static void test_exact_two_quotas(void **state)
{
	struct fixture *f = *state;
	struct tally sum;
	unsigned total = 0;
	struct rows r;

	/* This time the ledger exists before the children start. */
	open_quota(f, "",
		   "{ limit = 10; period = \"day\"; per = \"user\"; },\n"
		   "    { limit = 150; period = \"day\"; per = \"global\"; }");
	run_load(f, &sum);
	for (int u = 0; u < NUSERS; u++) {
		if (sum.admitted[u] > 10)
			fail_msg("user %s: %u admitted, over 10",
				 load_user(u), sum.admitted[u]);
		total += sum.admitted[u];
	}
	assert_int_equal(total, 150);
	assert_int_equal(sum.denied, NPROC * NTHREADS * NREQ - 150);

	reopen(f);
	r = usage_rows(f->ctx, NULL, DEFAULT_NOW);
	assert_int_equal(r.admitted, 150);
	assert_int_equal(r.denied, 6250);
	assert_int_equal(r.refunded, 0);
	assert_int_equal(r.bad_time, 0);
	for (int u = 0; u < NUSERS; u++)
		assert_int_equal(admitted_of(&r, load_user(u)),
				 sum.admitted[u]);
	expect_denied(f, "newcomer", NULL,
		      used_up("150/day per global", NULL, NULL, 150, 150,
			      utc(2023, 11, 15, 0, 0, 0)));
}

/*
 * Counted per user and provider: each of the 20 users admitted exactly 5
 * anthropic and 5 openai requests, whichever of 8 processes of 4 threads
 * asked.
 */
static void test_exact_user_provider(void **state)
{
	struct fixture *f = *state;
	struct tally sum;
	struct rows r;

	setenv("OPENAI_API_KEY", K_OPENAI, 1);
	load_providers = 2;
	open_quota(f, "",
		   "{ limit = 5; period = \"day\"; "
		   "per = \"user+provider\"; }");
	run_load(f, &sum);
	for (int u = 0; u < NUSERS; u++) {
		if (sum.admitted[u] != 5 || sum.admitted_openai[u] != 5)
			fail_msg("user %s: %u anthropic and %u openai "
				 "admitted, not 5 and 5",
				 load_user(u), sum.admitted[u],
				 sum.admitted_openai[u]);
	}
	assert_int_equal(sum.denied, NPROC * NTHREADS * NREQ - 200);

	reopen(f);
	r = usage_rows(f->ctx, NULL, DEFAULT_NOW);
	assert_int_equal(r.admitted, 200);
	assert_int_equal(r.denied, 6200);
	for (int u = 0; u < NUSERS; u++)
		assert_int_equal(admitted_of(&r, load_user(u)), 10);
	expect_denied_for(f, "openai", "u07", NULL,
			  "quota B 5/day per user+provider used up for user "
			  "u07 and provider openai (5 of 5); resets "
			  "2023-11-15T00:00:00Z");
}

static void give_back(kw_secret *s)
{
	assert_int_equal(kw_secret_report(s, KW_UNUSED), KW_OK);
	kw_secret_free(s);
}

/*
 * A charge denied by its second quota takes nothing from its first: bob's
 * own count only goes up for the requests the global quota let through.
 */
static void test_two_quotas_denial_charges_neither(void **state)
{
	struct fixture *f = *state;
	const int64_t reset = utc(2023, 11, 15, 0, 0, 0);
	const char *global = used_up("4/day per global", NULL, NULL, 4, 4,
				     reset);
	kw_request req = KW_REQUEST_INIT;
	kw_secret *a[3];

	open_quota(f, "",
		   "{ limit = 3; period = \"day\"; per = \"user\"; },\n"
		   "    { limit = 4; period = \"day\"; }");
	req.provider = "anthropic";
	req.user = "alice";
	for (int i = 0; i < 3; i++)
		assert_int_equal(kw_resolve(f->ctx, &req, &a[i]), KW_OK);
	expect_ok(f, "bob", NULL, 1);
	expect_denied(f, "bob", NULL, global);
	expect_denied(f, "carol", NULL, global);

	/*
	 * One of alice's keys given back lets one more through.  Had bob's
	 * denied request counted against him, his own quota would stop him
	 * here; it is still the global one.
	 */
	give_back(a[0]);
	expect_ok(f, "bob", NULL, 1);
	expect_denied(f, "bob", NULL, global);
	/* Now bob has had 3, and his own quota is what stops him. */
	give_back(a[1]);
	expect_ok(f, "bob", NULL, 1);
	expect_denied(f, "bob", NULL,
		      used_up("3/day per user", "user", "bob", 3, 3, reset));
	give_back(a[2]);
	expect_ok(f, "carol", NULL, 1);
	expect_denied(f, "carol", NULL, global);
	expect_rows(f->ctx, 4, 5, 3);
}

/* ---- windows on the injected clock ---- */

static void test_minute_rollover(void **state)
{
	struct fixture *f = *state;
	const int64_t t0 = utc(2024, 3, 10, 12, 34, 56);

	set_now(t0);
	open_quota(f, "",
		   "{ limit = 3; period = \"minute\"; per = \"user\"; }");
	expect_ok(f, "alice", NULL, 3);
	assert_int_equal(get(f, "alice", NULL), KW_ERR_DENIED);
	assert_string_equal(f->err,
			    "chain \"default\", provider \"anthropic\": B "
			    "answered denied: quota B 3/minute per user used "
			    "up for user alice (3 of 3); resets "
			    "2024-03-10T12:35:00Z");
	/* Counted per user. */
	expect_ok(f, "bob", NULL, 1);

	set_now(utc(2024, 3, 10, 12, 34, 59));
	expect_denied(f, "alice", NULL,
		      "quota B 3/minute per user used up for user alice "
		      "(3 of 3); resets 2024-03-10T12:35:00Z");

	set_now(utc(2024, 3, 10, 12, 35, 0));
	expect_ok(f, "alice", NULL, 3);
	expect_denied(f, "alice", NULL,
		      "quota B 3/minute per user used up for user alice "
		      "(3 of 3); resets 2024-03-10T12:36:00Z");
	expect_ok(f, "bob", NULL, 3);
	expect_denied(f, "bob", NULL,
		      "quota B 3/minute per user used up for user bob "
		      "(3 of 3); resets 2024-03-10T12:36:00Z");
	expect_rows(f->ctx, 10, 4, 0);
}

static void test_hour_window(void **state)
{
	struct fixture *f = *state;

	set_now(utc(2024, 3, 10, 12, 0, 0));
	open_quota(f, "", "{ limit = 2; period = \"hour\"; per = \"user\"; }");
	expect_ok(f, "alice", NULL, 2);
	set_now(utc(2024, 3, 10, 12, 59, 59));
	expect_denied(f, "alice", NULL,
		      "quota B 2/hour per user used up for user alice "
		      "(2 of 2); resets 2024-03-10T13:00:00Z");
	set_now(utc(2024, 3, 10, 13, 0, 0));
	expect_ok(f, "alice", NULL, 2);
	expect_denied(f, "alice", NULL,
		      "quota B 2/hour per user used up for user alice "
		      "(2 of 2); resets 2024-03-10T14:00:00Z");
}

static void test_day_window(void **state)
{
	struct fixture *f = *state;

	set_now(utc(2024, 12, 31, 0, 0, 0));
	open_quota(f, "", "{ limit = 2; period = \"day\"; per = \"user\"; }");
	expect_ok(f, "alice", NULL, 2);
	set_now(utc(2024, 12, 31, 23, 59, 59));
	expect_denied(f, "alice", NULL,
		      "quota B 2/day per user used up for user alice "
		      "(2 of 2); resets 2025-01-01T00:00:00Z");
	set_now(utc(2025, 1, 1, 0, 0, 0));
	expect_ok(f, "alice", NULL, 2);
	expect_denied(f, "alice", NULL,
		      "quota B 2/day per user used up for user alice "
		      "(2 of 2); resets 2025-01-02T00:00:00Z");
}

static void test_month_window(void **state)
{
	struct fixture *f = *state;

	set_now(utc(2024, 1, 31, 23, 59, 58));
	open_quota(f, "", "{ limit = 2; period = \"month\"; per = \"user\"; }");
	expect_ok(f, "alice", NULL, 2);
	set_now(utc(2024, 1, 31, 23, 59, 59));
	expect_denied(f, "alice", NULL,
		      "quota B 2/month per user used up for user alice "
		      "(2 of 2); resets 2024-02-01T00:00:00Z");

	/* February of a leap year has a 29th. */
	set_now(utc(2024, 2, 1, 0, 0, 0));
	expect_ok(f, "alice", NULL, 2);
	set_now(utc(2024, 2, 29, 23, 59, 59));
	expect_denied(f, "alice", NULL,
		      "quota B 2/month per user used up for user alice "
		      "(2 of 2); resets 2024-03-01T00:00:00Z");
	set_now(utc(2024, 3, 1, 0, 0, 0));
	expect_ok(f, "alice", NULL, 2);

	/* Of a common year, not. */
	set_now(utc(2023, 2, 28, 23, 59, 59));
	expect_ok(f, "alice", NULL, 2);
	expect_denied(f, "alice", NULL,
		      "quota B 2/month per user used up for user alice "
		      "(2 of 2); resets 2023-03-01T00:00:00Z");

	/* December rolls into the next year. */
	set_now(utc(2024, 12, 15, 8, 0, 0));
	expect_ok(f, "alice", NULL, 2);
	expect_denied(f, "alice", NULL,
		      "quota B 2/month per user used up for user alice "
		      "(2 of 2); resets 2025-01-01T00:00:00Z");
	set_now(utc(2025, 1, 1, 0, 0, 0));
	expect_ok(f, "alice", NULL, 1);
}

/* A period in seconds is cut from the epoch, not from the first request:
 * 1700000000 is 80 s into a 90 s window that ends at 1700000010. */
static void test_seconds_period(void **state)
{
	struct fixture *f = *state;

	set_now(1700000000);
	open_quota(f, "", "{ limit = 2; period = 90; per = \"user\"; }");
	expect_ok(f, "alice", NULL, 2);
	expect_denied(f, "alice", NULL,
		      "quota B 2/90s per user used up for user alice (2 of 2); "
		      "resets 2023-11-14T22:13:30Z");
	set_now(1700000009);
	expect_denied(f, "alice", NULL,
		      "quota B 2/90s per user used up for user alice (2 of 2); "
		      "resets 2023-11-14T22:13:30Z");
	set_now(1700000010);
	expect_ok(f, "alice", NULL, 2);
	expect_denied(f, "alice", NULL,
		      "quota B 2/90s per user used up for user alice (2 of 2); "
		      "resets 2023-11-14T22:15:00Z");
}

static void test_per_org(void **state)
{
	struct fixture *f = *state;
	const int64_t reset = utc(2023, 11, 15, 0, 0, 0);

	open_quota(f, "", "{ limit = 2; period = \"day\"; per = \"org\"; }");
	expect_ok(f, "alice", "acme", 1);
	expect_ok(f, "bob", "acme", 1);
	expect_denied(f, "carol", "acme",
		      used_up("2/day per org", "org", "acme", 2, 2, reset));
	expect_ok(f, "alice", "globex", 2);
	expect_denied(f, "alice", "globex",
		      used_up("2/day per org", "org", "globex", 2, 2, reset));
	/* No org, nothing to count by: denied, and no row. */
	expect_denied(f, "alice", NULL,
		      "quota B 2/day per org: the request names no org");
	expect_rows(f->ctx, 4, 2, 0);
}

static void test_global(void **state)
{
	struct fixture *f = *state;
	const int64_t reset = utc(2023, 11, 15, 0, 0, 0);

	open_quota(f, "", "{ limit = 3; period = \"day\"; per = \"global\"; }");
	expect_ok(f, "alice", "acme", 1);
	expect_ok(f, "bob", NULL, 1);
	/* A global quota needs no identity. */
	expect_ok(f, NULL, NULL, 1);
	expect_denied(f, "carol", "globex",
		      used_up("3/day per global", NULL, NULL, 3, 3, reset));
	expect_denied(f, NULL, NULL,
		      "quota B 3/day per global used up (3 of 3); resets "
		      "2023-11-15T00:00:00Z");
	set_now(reset);
	expect_ok(f, "carol", NULL, 3);
	expect_rows(f->ctx, 6, 2, 0);
}

/* Admitted rows of the usage log for provider. */
static kw_status count_provider_row(void *arg, const kw_usage_row *row)
{
	struct rows *r = arg;

	if (strcmp(row->provider, "anthropic") == 0)
		r->admitted += strcmp(row->outcome, "admitted") == 0;
	else if (strcmp(row->provider, "openai") == 0)
		r->refunded += strcmp(row->outcome, "admitted") == 0;
	else
		r->other++;
	return KW_OK;
}

/* The usage log's admitted rows: anthropic's in .admitted, openai's in
 * .refunded. */
static struct rows provider_rows(kw_ctx *ctx)
{
	struct rows r;

	memset(&r, 0, sizeof(r));
	assert_int_equal(kw_usage(ctx, tu_sysadmin(), NULL, count_provider_row,
				  &r),
			 KW_OK);
	assert_int_equal(r.other, 0);
	return r;
}

/* A quota counts across providers unless its per names the provider. */
static void test_per_user_across_providers(void **state)
{
	struct fixture *f = *state;
	const char *used = used_up("2/day per user", "user", "alice", 2, 2,
				   utc(2023, 11, 15, 0, 0, 0));

	setenv("OPENAI_API_KEY", K_OPENAI, 1);
	open_quota(f, "", "{ limit = 2; period = \"day\"; per = \"user\"; }");
	expect_ok_for(f, "anthropic", "alice", NULL, 1);
	expect_ok_for(f, "openai", "alice", NULL, 1);
	expect_denied_for(f, "anthropic", "alice", NULL, used);
	expect_denied_for(f, "openai", "alice", NULL, used);
}

static void test_per_user_provider(void **state)
{
	struct fixture *f = *state;
	const char *label = "2/day per user+provider";
	const char *reset = "resets 2023-11-15T00:00:00Z";
	struct rows r;

	setenv("OPENAI_API_KEY", K_OPENAI, 1);
	open_quota(f, "",
		   "{ limit = 2; period = \"day\"; per = \"user+provider\"; }");
	expect_ok_for(f, "anthropic", "alice", NULL, 2);
	expect_ok_for(f, "openai", "alice", NULL, 2);
	expect_denied_for(f, "anthropic", "alice", NULL,
			  tu_fmt("quota B %s used up for user alice and "
				 "provider anthropic (2 of 2); %s",
				 label, reset));
	expect_denied_for(f, "openai", "alice", "acme",
			  tu_fmt("quota B %s used up for user alice and "
				 "provider openai (2 of 2); %s",
				 label, reset));
	/* Each user has counts of their own. */
	expect_ok_for(f, "openai", "bob", "acme", 2);
	expect_ok_for(f, "anthropic", "bob", NULL, 1);
	/* No user, nothing to count by: denied, and no row. */
	expect_denied_for(f, "openai", NULL, "acme",
			  tu_fmt("quota B %s: the request names no user",
				 label));
	expect_rows(f->ctx, 7, 2, 0);
	r = provider_rows(f->ctx);
	assert_int_equal(r.admitted, 3);
	assert_int_equal(r.refunded, 4);
}

/* per = "provider": everyone together, one count for each provider. */
static void test_per_provider(void **state)
{
	struct fixture *f = *state;
	const char *reset = "resets 2023-11-15T00:00:00Z";

	setenv("OPENAI_API_KEY", K_OPENAI, 1);
	open_quota(f, "",
		   "{ limit = 2; period = \"day\"; per = \"provider\"; }");
	expect_ok_for(f, "anthropic", "alice", NULL, 1);
	/* It needs no identity. */
	expect_ok_for(f, "anthropic", NULL, NULL, 1);
	expect_denied_for(f, "anthropic", "bob", "acme",
			  tu_fmt("quota B 2/day per provider used up for "
				 "provider anthropic (2 of 2); %s",
				 reset));
	expect_ok_for(f, "openai", "bob", NULL, 1);
	expect_ok_for(f, "openai", "carol", NULL, 1);
	expect_denied_for(f, "openai", "alice", NULL,
			  tu_fmt("quota B 2/day per provider used up for "
				 "provider openai (2 of 2); %s",
				 reset));
	expect_rows(f->ctx, 4, 2, 0);
}

static void test_per_org_provider(void **state)
{
	struct fixture *f = *state;

	setenv("OPENAI_API_KEY", K_OPENAI, 1);
	open_quota(f, "",
		   "{ limit = 1; period = 3600; per = \"org+provider\"; }");
	expect_ok_for(f, "anthropic", "alice", "acme", 1);
	expect_ok_for(f, "openai", "bob", "acme", 1);
	expect_ok_for(f, "anthropic", "carol", "globex", 1);
	expect_denied_for(f, "anthropic", "bob", "acme",
			  "quota B 1/3600s per org+provider used up for org "
			  "acme and provider anthropic (1 of 1); resets "
			  "2023-11-14T23:00:00Z");
	expect_denied_for(f, "openai", "alice", NULL,
			  "quota B 1/3600s per org+provider: the request "
			  "names no org");
	expect_rows(f->ctx, 3, 1, 0);
}

/* A request without the identity a quota counts by is denied, not
 * counted as anonymous. */
static void test_missing_identity(void **state)
{
	struct fixture *f = *state;

	open_quota(f, "",
		   "{ limit = 3; period = \"minute\"; per = \"user\"; }");
	assert_int_equal(get(f, NULL, NULL), KW_ERR_DENIED);
	assert_string_equal(f->err,
			    "chain \"default\", provider \"anthropic\": B "
			    "answered denied: quota B 3/minute per user: the "
			    "request names no user");
	expect_denied(f, NULL, "acme",
		      "quota B 3/minute per user: the request names no user");
	expect_rows(f->ctx, 0, 0, 0);
	/* Nothing was taken from anyone. */
	expect_ok(f, "alice", NULL, 3);
	expect_rows(f->ctx, 3, 0, 0);
}

/* ---- refunds ---- */

static void test_refund_unused(void **state)
{
	struct fixture *f = *state;
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s[5];

	open_quota(f, "", "{ limit = 3; period = \"day\"; per = \"user\"; }");
	req.provider = "anthropic";
	req.user = "alice";

	/* Taken and given back one by one, any number of times. */
	for (int i = 0; i < 5; i++) {
		assert_int_equal(kw_resolve(f->ctx, &req, &s[0]), KW_OK);
		assert_int_equal(kw_secret_report(s[0], KW_UNUSED), KW_OK);
		kw_secret_free(s[0]);
	}
	expect_rows(f->ctx, 0, 0, 5);

	/* All three at once, then all three back. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(kw_resolve(f->ctx, &req, &s[i]), KW_OK);
	expect_denied(f, "alice", NULL,
		      used_up("3/day per user", "user", "alice", 3, 3,
			      utc(2023, 11, 15, 0, 0, 0)));
	for (int i = 0; i < 3; i++) {
		assert_int_equal(kw_secret_report(s[i], KW_UNUSED), KW_OK);
		/* The key itself stays readable until it is freed. */
		assert_string_equal(kw_secret_value(s[i]), K_ENV);
		kw_secret_free(s[i]);
	}
	/* The count is back at 0: another `limit` are admitted. */
	expect_ok(f, "alice", NULL, 3);
	assert_int_equal(get(f, "alice", NULL), KW_ERR_DENIED);
	expect_rows(f->ctx, 3, 2, 8);
}

static void test_report_rules(void **state)
{
	struct fixture *f = *state;
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;

	open_quota(f, "", "{ limit = 2; period = \"day\"; per = \"user\"; }");
	req.provider = "anthropic";
	req.user = "alice";

	assert_int_equal(kw_resolve(f->ctx, &req, &s), KW_OK);
	assert_int_equal(kw_secret_report(s, KW_UNUSED), KW_OK);
	assert_int_equal(kw_secret_report(s, KW_UNUSED), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(),
			    "kw_secret_report: this secret was already "
			    "reported");
	assert_int_equal(kw_secret_report(s, KW_USED), KW_ERR_INVAL);
	kw_secret_free(s);
	expect_rows(f->ctx, 0, 0, 1);

	/* KW_USED keeps the charge; an outcome it does not know changes
	 * nothing and can be followed by a real one. */
	assert_int_equal(kw_resolve(f->ctx, &req, &s), KW_OK);
	assert_int_equal(kw_secret_report(s, (kw_outcome)7), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(),
			    "kw_secret_report: unknown outcome 7");
	assert_int_equal(kw_secret_report(s, KW_USED), KW_OK);
	assert_int_equal(kw_secret_report(s, KW_UNUSED), KW_ERR_INVAL);
	kw_secret_free(s);

	/* Freed unreported: used. */
	assert_int_equal(kw_resolve(f->ctx, &req, &s), KW_OK);
	kw_secret_free(s);
	assert_int_equal(get(f, "alice", NULL), KW_ERR_DENIED);
	expect_rows(f->ctx, 2, 1, 1);

	assert_int_equal(kw_secret_report(NULL, KW_UNUSED), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(), "kw_secret_report: no secret");

	/* After kw_close(), the charge cannot be refunded: the ledger is
	 * closed.  The report says so, and the secret is still freed. */
	req.user = "bob";
	assert_int_equal(kw_resolve(f->ctx, &req, &s), KW_OK);
	kw_close(f->ctx);
	f->ctx = NULL;
	assert_int_equal(kw_secret_report(s, KW_UNUSED), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(),
			    "kw_secret_report: the context that resolved "
			    "this secret was closed; report before "
			    "kw_close(), after it only kw_secret_free()");
	assert_string_equal(kw_secret_value(s), K_ENV);
	kw_secret_free(s);
}

/* ---- usage counts of stored keys ---- */

struct key_seen {
	unsigned n;
	uint64_t usage_count;
	int64_t last_used;
};

static kw_status see_key(void *arg, const kw_key_info *info)
{
	struct key_seen *k = arg;

	if (strcmp(info->backend, "user_keys") == 0 &&
	    strcmp(info->provider, "anthropic") == 0 &&
	    info->owner != NULL && strcmp(info->owner, "alice") == 0) {
		k->n++;
		k->usage_count = info->usage_count;
		k->last_used = info->last_used;
	}
	return KW_OK;
}

/* kw_close() writes the counts that wait in memory; list them afresh. */
static void expect_uses(struct fixture *f, uint64_t count, int64_t last)
{
	struct key_seen k = { 0, 0, 0 };

	reopen(f);
	assert_int_equal(kw_key_list(f->ctx, tu_sysadmin(), "user_keys",
				     "alice", see_key, &k),
			 KW_OK);
	assert_int_equal(k.n, 1);
	assert_int_equal(k.usage_count, count);
	assert_int_equal(k.last_used, last);
}

#define STORE_QUOTA_CONF \
	"keyway: {\n" \
	"  master_key = { source = \"env\"; };\n" \
	"  ledger: { module = \"sqlite\"; path = \"ledger.db\"; };\n" \
	"};\n" \
	"backends: {\n" \
	"  user_keys: { module = \"sqlite\"; path = \"keys.db\"; " \
	"scope = \"user\";\n" \
	"    quota = ( { limit = 10; period = \"day\"; per = \"user\"; } ); };\n" \
	"};\n" \
	"chains: {\n" \
	"  default = ( { backend = \"user_keys\"; control = \"required\"; } );\n" \
	"};\n"

static kw_secret *resolve_alice(struct fixture *f)
{
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;
	kw_status st;

	req.provider = "anthropic";
	req.user = "alice";
	st = kw_resolve(f->ctx, &req, &s);
	if (st != KW_OK)
		fail_msg("resolve: %s", kw_last_error());
	assert_string_equal(kw_secret_value(s), K_USER);
	assert_string_equal(kw_secret_backend(s), "user_keys");
	return s;
}

static void test_store_usage_counts(void **state)
{
	struct fixture *f = *state;
	const kw_actor alice = { sizeof(kw_actor), "alice", NULL,
				 KW_ROLE_NONE };
	kw_key_ref ref = KW_KEY_REF_INIT;
	const int64_t t1 = utc(2024, 5, 1, 10, 0, 0);
	kw_secret *s;

	set_now(t1);
	must_open(f, STORE_QUOTA_CONF);
	ref.backend = "user_keys";
	ref.owner = "alice";
	ref.provider = "anthropic";
	assert_int_equal(kw_key_put(f->ctx, &alice, &ref, K_USER,
				    strlen(K_USER), NULL, KW_PUT_CREATE),
			 KW_OK);
	expect_uses(f, 0, 0);

	/* Reported used, and freed unreported: two uses. */
	s = resolve_alice(f);
	assert_int_equal(kw_secret_report(s, KW_USED), KW_OK);
	kw_secret_free(s);
	s = resolve_alice(f);
	kw_secret_free(s);
	/* Reported unused: none. */
	s = resolve_alice(f);
	assert_int_equal(kw_secret_report(s, KW_UNUSED), KW_OK);
	kw_secret_free(s);
	expect_uses(f, 2, t1);

	/* Unused later on: neither the count nor the time moves. */
	set_now(t1 + 100);
	s = resolve_alice(f);
	assert_int_equal(kw_secret_report(s, KW_UNUSED), KW_OK);
	kw_secret_free(s);
	expect_uses(f, 2, t1);

	set_now(t1 + 200);
	s = resolve_alice(f);
	assert_int_equal(kw_secret_report(s, KW_USED), KW_OK);
	kw_secret_free(s);
	expect_uses(f, 3, t1 + 200);

	/* A secret freed after its context is closed: harmless, and the
	 * use, with nowhere to go, is dropped. */
	s = resolve_alice(f);
	kw_close(f->ctx);
	f->ctx = NULL;
	kw_secret_free(s);
	expect_uses(f, 3, t1 + 200);

	expect_rows(f->ctx, 4, 0, 2);
}

/* ---- the usage filter's size ---- */

#define FILTER_END(m) \
	(offsetof(kw_usage_filter, m) + sizeof(((kw_usage_filter *)NULL)->m))

/* kw_usage() of filter must fail with KW_ERR_INVAL and this message. */
static void expect_bad_filter(struct fixture *f, const kw_usage_filter *filter,
			      const char *why)
{
	struct rows r;

	memset(&r, 0, sizeof(r));
	assert_int_equal(kw_usage(f->ctx, tu_sysadmin(), filter, count_row, &r),
			 KW_ERR_INVAL);
	assert_string_equal(kw_last_error(), why);
	assert_int_equal(r.n, 0);
}

static void test_usage_filter_size(void **state)
{
	struct fixture *f = *state;
	kw_usage_filter filter = KW_USAGE_FILTER_INIT;
	kw_usage_filter unset = { 0 };
	/* A caller of a later keyway.h, with one more condition. */
	struct {
		kw_usage_filter f;
		const char *provider;
	} newer;
	struct rows r;

	open_quota(f, "", "{ limit = 5; period = \"day\"; per = \"user\"; }");
	expect_ok(f, "alice", "acme", 2);
	expect_ok(f, "bob", NULL, 1);

	/* The size of this keyway.h: every condition applies. */
	filter.user = "alice";
	r = usage_rows(f->ctx, &filter, 0);
	assert_int_equal(r.admitted, 2);
	filter.backend = "nope";
	r = usage_rows(f->ctx, &filter, 0);
	assert_int_equal(r.n, 0);

	/* Not set, or smaller than the first version with a size: refused
	 * (nothing past the size is read: ASan would see it). */
	expect_bad_filter(f, &unset,
			  "usage filter: size 0 is not that of a "
			  "kw_usage_filter; initialise it with "
			  "KW_USAGE_FILTER_INIT");
	filter.size = FILTER_END(org);
	expect_bad_filter(f, &filter,
			  tu_fmt("usage filter: size %zu is not that of a "
				 "kw_usage_filter; initialise it with "
				 "KW_USAGE_FILTER_INIT",
				 FILTER_END(org)));
	/* A caller built before the size: `since` where the size is. */
	filter.size = (size_t)DEFAULT_NOW;
	expect_bad_filter(f, &filter,
			  "usage filter: size 1700000000 is not that of a "
			  "kw_usage_filter; initialise it with "
			  "KW_USAGE_FILTER_INIT");

	/* A later version: taken while it asks nothing unknown here. */
	memset(&newer, 0, sizeof(newer));
	newer.f.size = sizeof(newer);
	newer.f.user = "bob";
	r = usage_rows(f->ctx, &newer.f, 0);
	assert_int_equal(r.admitted, 1);
	newer.provider = "openai";
	expect_bad_filter(
		f, &newer.f,
		tu_fmt("usage filter: it sets a condition this library "
		       "does not know (a filter of %zu bytes, from a "
		       "newer keyway.h; this one knows %zu)",
		       sizeof(newer), sizeof(kw_usage_filter)));
}

/* What a row of kw_echoledger says of the filter it was handed. */
static kw_status echo_text(void *arg, const kw_usage_row *row)
{
	char *buf = arg;

	snprintf(buf, 256, "%" PRId64 " %s %s %s size=%s", row->time,
		 row->user, row->org, row->backend, row->provider);
	return KW_OK;
}

/*
 * A ledger built before kw_usage_filter had a size is handed the filter in
 * the layout it knows; one built after, in the new one.
 */
static void test_usage_filter_old_ledger(void **state)
{
	struct fixture *f = *state;
	kw_usage_filter filter = KW_USAGE_FILTER_INIT;
	char text[256];

	filter.since = 1600000000;
	filter.until = 1800000000;
	filter.user = "alice";
	filter.org = "acme";
	filter.backend = "B";
	for (int old = 0; old < 2; old++) {
		if (old)
			setenv("KWTEST_ECHOLEDGER_OLD", "1", 1);
		must_open(f, "keyway: { ledger: { module = \"echoledger\"; }; };\n"
			     "backends: { B: { module = \"env\";\n"
			     "  quota = ( { limit = 1; period = \"day\"; } ); "
			     "}; };\n"
			     "chains: { default = ( { backend = \"B\"; "
			     "control = \"required\"; } ); };\n");
		unsetenv("KWTEST_ECHOLEDGER_OLD");
		text[0] = '\0';
		assert_int_equal(kw_usage(f->ctx, tu_sysadmin(), &filter,
					  echo_text, text),
				 KW_OK);
		assert_string_equal(
			text, old ? "1600000000 alice acme B size=unsized"
				  : tu_fmt("1600000000 alice acme B size=%zu",
					   sizeof(kw_usage_filter)));
	}
}

/* ---- explain is a dry run ---- */

static void test_explain_charges_nothing(void **state)
{
	struct fixture *f = *state;
	const char *used = used_up("3/day per user", "user", "alice", 3, 3,
				   utc(2023, 11, 15, 0, 0, 0));
	kw_request req = KW_REQUEST_INIT;
	const kw_trace_step *step;
	kw_trace *t = NULL;

	open_quota(f, "", "{ limit = 3; period = \"day\"; per = \"user\"; }");
	req.provider = "anthropic";
	req.user = "alice";
	for (int i = 0; i < 10; i++) {
		assert_int_equal(kw_explain(f->ctx, &req, &t), KW_OK);
		assert_int_equal(kw_trace_result(t), KW_OK);
		assert_int_equal(kw_trace_len(t), 1);
		step = kw_trace_get(t, 0);
		assert_int_equal(step->status, KW_OK);
		assert_int_equal(step->action, KW_ACTION_DONE);
		assert_string_equal(step->detail,
				    "$ANTHROPIC_API_KEY from the environment; "
				    "within quota (explain charges nothing)");
		assert_string_equal(step->masked, "sk-a****0001");
		kw_trace_free(t);
		t = NULL;
	}
	expect_rows(f->ctx, 0, 0, 0);

	/* The quota is whole. */
	expect_ok(f, "alice", NULL, 3);
	assert_int_equal(get(f, "alice", NULL), KW_ERR_DENIED);
	expect_rows(f->ctx, 3, 1, 0);

	/* Used up, explain says so, and logs nothing either. */
	assert_int_equal(kw_explain(f->ctx, &req, &t), KW_OK);
	assert_int_equal(kw_trace_result(t), KW_ERR_DENIED);
	assert_null(kw_trace_backend(t));
	step = kw_trace_get(t, 0);
	assert_non_null(step);
	assert_int_equal(step->status, KW_ERR_DENIED);
	assert_int_equal(step->action, KW_ACTION_CONTINUE);
	assert_string_equal(step->detail, used);
	assert_string_equal(step->masked, "");
	assert_string_equal(kw_trace_summary(t),
			    tu_fmt("B answered denied: %s", used));
	kw_trace_free(t);
	expect_rows(f->ctx, 3, 1, 0);
}

/* ---- the ledger out of reach ---- */

/* Another connection holds the ledger's write lock. */
static sqlite3 *lock_ledger(struct fixture *f)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open_v2(f->ledger, &db, SQLITE_OPEN_READWRITE,
					 NULL),
			 SQLITE_OK);
	if (sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL) !=
	    SQLITE_OK)
		fail_msg("BEGIN EXCLUSIVE: %s", sqlite3_errmsg(db));
	return db;
}

static void unlock_ledger(sqlite3 *db)
{
	assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static void test_ledger_unavailable_deny(void **state)
{
	struct fixture *f = *state;
	const char *why = tu_fmt("cannot lock %s: database is locked",
				 f->ledger);
	sqlite3 *db;

	open_quota(f, " busy_timeout_ms = 50;",
		   "{ limit = 2; period = \"day\"; per = \"user\"; }");
	expect_ok(f, "alice", NULL, 1);
	db = lock_ledger(f);
	expect_denied(
		f, "alice", NULL,
		tu_fmt("ledger unavailable, denied (on_unavailable = deny): "
		       "%s",
		       why));
	expect_denied(
		f, "bob", NULL,
		tu_fmt("ledger unavailable, denied (on_unavailable = deny): "
		       "%s",
		       why));
	unlock_ledger(db);
	/* Back: alice has one left, bob two. */
	expect_ok(f, "alice", NULL, 1);
	assert_int_equal(get(f, "alice", NULL), KW_ERR_DENIED);
	expect_ok(f, "bob", NULL, 2);
	expect_rows(f->ctx, 4, 1, 0);
}

static void test_ledger_unavailable_allow(void **state)
{
	struct fixture *f = *state;
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;
	sqlite3 *db;

	open_quota(f, " busy_timeout_ms = 50; on_unavailable = \"allow\";",
		   "{ limit = 2; period = \"day\"; per = \"user\"; }");
	db = lock_ledger(f);
	/* Admitted, uncounted: more than the limit. */
	expect_ok(f, "alice", NULL, 3);
	req.provider = "anthropic";
	req.user = "alice";
	assert_int_equal(kw_resolve(f->ctx, &req, &s), KW_OK);
	/* Nothing was charged, so there is nothing to refund. */
	assert_int_equal(kw_secret_report(s, KW_UNUSED), KW_OK);
	kw_secret_free(s);
	unlock_ledger(db);
	expect_rows(f->ctx, 0, 0, 0);
	expect_ok(f, "alice", NULL, 2);
	assert_int_equal(get(f, "alice", NULL), KW_ERR_DENIED);
	expect_rows(f->ctx, 2, 1, 0);
}

/* ---- the ledger's schema ---- */

/* Schema version 1 of a ledger, as keyway wrote it before migration 2. */
#define LEDGER_V1_DDL \
	"CREATE TABLE counters (" \
	"  counter TEXT NOT NULL," \
	"  window INTEGER NOT NULL," \
	"  count INTEGER NOT NULL," \
	"  expires INTEGER NOT NULL," \
	"  PRIMARY KEY (counter, window)" \
	") WITHOUT ROWID;" \
	"CREATE INDEX counters_expires ON counters (expires);" \
	"CREATE TABLE usage (" \
	"  id INTEGER PRIMARY KEY," \
	"  time INTEGER NOT NULL," \
	"  chain TEXT NOT NULL," \
	"  backend TEXT NOT NULL," \
	"  provider TEXT NOT NULL," \
	"  user TEXT," \
	"  org TEXT," \
	"  outcome TEXT NOT NULL" \
	");" \
	"CREATE INDEX usage_time ON usage (time);" \
	"CREATE INDEX usage_user_time ON usage (user, time);"

#define LEDGER_APP_ID 0x4b574c47 /* "KWLG" */

/* The start of DEFAULT_NOW's day, and of the day before. */
#define TODAY 1699920000     /* 2023-11-14T00:00:00Z */
#define YESTERDAY (TODAY - 86400)

static void ledger_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	char *err = NULL;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE,
					 NULL),
			 SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err != NULL ? err : "?");
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* The rows of a query as text: columns split by '|', each row ending in a
 * newline, NULL as "-". */
static const char *ledger_query(const char *path, const char *sql)
{
	char buf[4096];
	size_t len = 0;
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int rc;

	buf[0] = '\0';
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE,
					 NULL),
			 SQLITE_OK);
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		for (int i = 0; i < sqlite3_column_count(s); i++) {
			const char *v = (const char *)sqlite3_column_text(s, i);

			len += (size_t)snprintf(buf + len, sizeof(buf) - len,
						"%s%s", i > 0 ? "|" : "",
						v != NULL ? v : "-");
			assert_true(len < sizeof(buf));
		}
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "\n");
		assert_true(len < sizeof(buf));
	}
	if (rc != SQLITE_DONE)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	sqlite3_finalize(s);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	return tu_fmt("%s", buf);
}

/*
 * A ledger of schema version 1 at f->ledger, made as keyway made one
 * (private file, 1 KiB pages, WAL), holding the rows of `rows_sql`.
 */
static void make_v1_ledger(struct fixture *f, const char *rows_sql)
{
	int fd = open(f->ledger, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		      0600);

	assert_true(fd >= 0);
	close(fd);
	ledger_exec(f->ledger,
		    tu_fmt("PRAGMA page_size = 1024;"
			   "PRAGMA journal_mode = WAL;"
			   "BEGIN;" LEDGER_V1_DDL
			   "PRAGMA application_id = %d;"
			   "PRAGMA user_version = 1;"
			   "%s"
			   "COMMIT;",
			   LEDGER_APP_ID, rows_sql));
	assert_string_equal(ledger_query(f->ledger, "PRAGMA user_version"),
			    "1\n");
}

/*
 * A SQLite database of another program where the ledger should be, and a
 * ledger of a schema newer than this keyway knows, are refused at open in
 * one line that names the file; neither is changed.
 */
static void test_ledger_not_ours(void **state)
{
	struct fixture *f = *state;
	kw_status st;
	int fd;

	fd = open(f->ledger, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	ledger_exec(f->ledger, "PRAGMA application_id = 12345;"
			       "CREATE TABLE theirs (x);");
	write_quota_conf(f, "", "{ limit = 2; period = \"day\"; "
				"per = \"user\"; }");
	kw_close(f->ctx);
	f->ctx = NULL;
	st = kw_open(&f->ctx, f->conf);
	assert_int_equal(st, KW_ERR_BACKEND);
	if (strstr(kw_last_error(), tu_fmt("%s is a SQLite database but not "
					   "a keyway ledger",
					   f->ledger)) == NULL ||
	    strchr(kw_last_error(), '\n') != NULL)
		fail_msg("%s", kw_last_error());
	assert_string_equal(ledger_query(f->ledger, "PRAGMA application_id"),
			    "12345\n");
	assert_int_equal(unlink(f->ledger), 0);

	make_v1_ledger(f, "");
	ledger_exec(f->ledger, "PRAGMA user_version = 99;");
	st = kw_open(&f->ctx, f->conf);
	assert_int_equal(st, KW_ERR_BACKEND);
	if (strstr(kw_last_error(), tu_fmt("%s has schema version 99; this "
					   "keyway knows up to 2",
					   f->ledger)) == NULL)
		fail_msg("%s", kw_last_error());
	assert_string_equal(ledger_query(f->ledger, "PRAGMA user_version"),
			    "99\n");
}

/*
 * A refund whose usage row another program changed: a row no longer
 * "admitted" is not refunded, and its charge not counted down, and the
 * refund says why in one line; one marked "refunded" already is not
 * counted down twice.
 */
static void test_refund_row_changed(void **state)
{
	struct fixture *f = *state;
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;

	open_quota(f, "", "{ limit = 3; period = \"day\"; per = \"user\"; }");
	req.provider = "anthropic";
	req.user = "alice";

	assert_int_equal(kw_resolve(f->ctx, &req, &s), KW_OK);
	ledger_exec(f->ledger, "UPDATE usage SET outcome = 'denied';");
	assert_int_equal(kw_secret_report(s, KW_UNUSED), KW_ERR_INVAL);
	if (strstr(kw_last_error(), "keyway.ledger: refund failed: usage row ")
	    == NULL ||
	    strstr(kw_last_error(), " is denied, not admitted: nothing to "
				    "refund") == NULL)
		fail_msg("%s", kw_last_error());
	kw_secret_free(s);
	assert_string_equal(ledger_query(f->ledger,
					 "SELECT sum(count) FROM counters"),
			    "1\n");

	assert_int_equal(kw_resolve(f->ctx, &req, &s), KW_OK);
	ledger_exec(f->ledger, "UPDATE usage SET outcome = 'refunded' "
			       "WHERE outcome = 'admitted';");
	assert_int_equal(kw_secret_report(s, KW_UNUSED), KW_OK);
	kw_secret_free(s);
	assert_string_equal(ledger_query(f->ledger,
					 "SELECT sum(count) FROM counters"),
			    "2\n");
}

#define INDEXES_SQL \
	"SELECT name FROM sqlite_master WHERE type = 'index'" \
	" AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name"
#define COUNTERS_SQL \
	"SELECT counter, window, count, expires FROM counters" \
	" ORDER BY counter, window"
#define USAGE_SQL \
	"SELECT id, time, chain, backend, provider, user, org, outcome" \
	" FROM usage ORDER BY id"

/* What a schema-2 ledger holds besides its tables. */
static void expect_v2_schema(const char *path)
{
	assert_string_equal(ledger_query(path, "PRAGMA user_version"), "2\n");
	assert_string_equal(ledger_query(path, "PRAGMA application_id"),
			    tu_fmt("%d\n", LEDGER_APP_ID));
	assert_string_equal(ledger_query(path, INDEXES_SQL),
			    "counters_expires\nusage_time\n");
	assert_string_equal(ledger_query(path, "PRAGMA integrity_check"),
			    "ok\n");
}

/* The usage rows kw_usage() hands out, one line each, in its order. */
struct row_text {
	char buf[2048];
	size_t len;
};

static kw_status note_row(void *arg, const kw_usage_row *row)
{
	struct row_text *t = arg;

	t->len += (size_t)snprintf(t->buf + t->len, sizeof(t->buf) - t->len,
				   "%" PRId64 " %s %s %s %s %s %s\n",
				   row->time, row->chain, row->backend,
				   row->provider,
				   row->user != NULL ? row->user : "-",
				   row->org != NULL ? row->org : "-",
				   row->outcome);
	assert_true(t->len < sizeof(t->buf));
	return KW_OK;
}

static const char *usage_text(kw_ctx *ctx, int64_t since, int64_t until,
			      const char *user, const char *org)
{
	kw_usage_filter filter = KW_USAGE_FILTER_INIT;
	struct row_text t;
	kw_status st;

	filter.since = since;
	filter.until = until;
	filter.user = user;
	filter.org = org;
	memset(&t, 0, sizeof(t));
	st = kw_usage(ctx, tu_sysadmin(), &filter, note_row, &t);
	if (st != KW_OK)
		fail_msg("kw_usage: %s: %s", kw_status_str(st),
			 kw_last_error());
	return tu_fmt("%s", t.buf);
}

/* A usage row of B in the ledger's SQL; times are literal seconds. */
#define V1_ROW(id, t, user, org, outcome) \
	"INSERT INTO usage VALUES (" #id ", " #t ", 'default', 'B'," \
	" 'anthropic', " user ", " org ", '" outcome "');"

/*
 * Ten rows over two days, one of them (10) logged after rows later than
 * it, and today's counters of alice (3) and bob (2) with yesterday's of
 * alice, expired but not swept yet.
 */
static const char v1_rows[] =
	V1_ROW(1, 1699833600, "'alice'", "'acme'", "admitted")
	V1_ROW(2, 1699919999, "'alice'", "'acme'", "admitted")
	V1_ROW(3, 1699920000, "'alice'", "'acme'", "admitted")
	V1_ROW(4, 1699920060, "'bob'", "NULL", "admitted")
	V1_ROW(5, 1699920120, "'alice'", "NULL", "refunded")
	V1_ROW(6, 1699923600, "'alice'", "'acme'", "admitted")
	V1_ROW(7, 1699923600, "'bob'", "NULL", "admitted")
	V1_ROW(8, 1699927200, "'alice'", "'acme'", "denied")
	V1_ROW(9, 1700006400, "'alice'", "'acme'", "admitted")
	V1_ROW(10, 1699920030, "'alice'", "'acme'", "admitted")
	"INSERT INTO counters VALUES"
	" ('B/0/user:alice', 1699833600, 2, 1699920000),"
	" ('B/0/user:alice', 1699920000, 3, 1700006400),"
	" ('B/0/user:bob', 1699920000, 2, 1700006400);";

/* The same row as note_row() prints it. */
#define ROW(t, user, org, outcome) \
	#t " default B anthropic " user " " org " " outcome "\n"

static void test_ledger_migrates_v1(void **state)
{
	struct fixture *f = *state;
	const int64_t reset = utc(2023, 11, 15, 0, 0, 0);
	const char *counters, *usage;

	make_v1_ledger(f, v1_rows);
	counters = ledger_query(f->ledger, COUNTERS_SQL);
	usage = ledger_query(f->ledger, USAGE_SQL);
	assert_string_equal(ledger_query(f->ledger, INDEXES_SQL),
			    "counters_expires\nusage_time\nusage_user_time\n");

	open_quota(f, "", "{ limit = 4; period = \"day\"; per = \"user\"; }");
	/* Migrated on open: every row kept, the (user, time) index gone. */
	expect_v2_schema(f->ledger);
	assert_string_equal(ledger_query(f->ledger, COUNTERS_SQL), counters);
	assert_string_equal(ledger_query(f->ledger, USAGE_SQL), usage);

	/* A period of one user: a range of usage_time, filtered. */
	assert_string_equal(usage_text(f->ctx, TODAY, TODAY + 86400, "alice",
				       NULL),
			    ROW(1699920000, "alice", "acme", "admitted")
			    ROW(1699920030, "alice", "acme", "admitted")
			    ROW(1699920120, "alice", "-", "refunded")
			    ROW(1699923600, "alice", "acme", "admitted")
			    ROW(1699927200, "alice", "acme", "denied"));
	/* Both ends: since is in, until is out. */
	assert_string_equal(usage_text(f->ctx, TODAY, TODAY + 3600, "alice",
				       NULL),
			    ROW(1699920000, "alice", "acme", "admitted")
			    ROW(1699920030, "alice", "acme", "admitted")
			    ROW(1699920120, "alice", "-", "refunded"));
	assert_string_equal(usage_text(f->ctx, YESTERDAY, TODAY, NULL, NULL),
			    ROW(1699833600, "alice", "acme", "admitted")
			    ROW(1699919999, "alice", "acme", "admitted"));
	assert_string_equal(usage_text(f->ctx, TODAY + 86400, 0, "alice",
				       NULL),
			    ROW(1700006400, "alice", "acme", "admitted"));
	/* A user with no period: the whole log, filtered. */
	assert_string_equal(usage_text(f->ctx, 0, 0, "bob", NULL),
			    ROW(1699920060, "bob", "-", "admitted")
			    ROW(1699923600, "bob", "-", "admitted"));
	assert_string_equal(usage_text(f->ctx, TODAY, 0, "carol", NULL), "");
	assert_string_equal(usage_text(f->ctx, TODAY + 1, TODAY + 7200, NULL,
				       "acme"),
			    ROW(1699920030, "alice", "acme", "admitted")
			    ROW(1699923600, "alice", "acme", "admitted"));
	assert_string_equal(usage_text(f->ctx, 0, 0, NULL, NULL),
			    ROW(1699833600, "alice", "acme", "admitted")
			    ROW(1699919999, "alice", "acme", "admitted")
			    ROW(1699920000, "alice", "acme", "admitted")
			    ROW(1699920030, "alice", "acme", "admitted")
			    ROW(1699920060, "bob", "-", "admitted")
			    ROW(1699920120, "alice", "-", "refunded")
			    ROW(1699923600, "alice", "acme", "admitted")
			    ROW(1699923600, "bob", "-", "admitted")
			    ROW(1699927200, "alice", "acme", "denied")
			    ROW(1700006400, "alice", "acme", "admitted"));

	/* The counts go on from where they were. */
	expect_ok(f, "alice", NULL, 1);
	expect_denied(f, "alice", NULL,
		      used_up("4/day per user", "user", "alice", 4, 4, reset));
	expect_ok(f, "bob", NULL, 2);
	expect_denied(f, "bob", NULL,
		      used_up("4/day per user", "user", "bob", 4, 4, reset));
	assert_string_equal(ledger_query(f->ledger, COUNTERS_SQL),
			    "B/0/user:alice|1699920000|4|1700006400\n"
			    "B/0/user:bob|1699920000|4|1700006400\n");
	assert_string_equal(usage_text(f->ctx, DEFAULT_NOW, 0, NULL, NULL),
			    ROW(1700000000, "alice", "-", "admitted")
			    ROW(1700000000, "alice", "-", "denied")
			    ROW(1700000000, "bob", "-", "admitted")
			    ROW(1700000000, "bob", "-", "admitted")
			    ROW(1700000000, "bob", "-", "denied")
			    ROW(1700006400, "alice", "acme", "admitted"));

	/* Opened again: nothing more to do. */
	reopen(f);
	expect_v2_schema(f->ledger);
	assert_int_equal(get(f, "alice", NULL), KW_ERR_DENIED);
}

/* A new ledger is made at the latest schema. */
static void test_ledger_new_schema(void **state)
{
	struct fixture *f = *state;

	open_quota(f, "", "{ limit = 1; period = \"day\"; per = \"user\"; }");
	expect_v2_schema(f->ledger);
	assert_string_equal(ledger_query(f->ledger, "PRAGMA page_size"),
			    "1024\n");
	assert_string_equal(ledger_query(f->ledger, "PRAGMA journal_mode"),
			    "wal\n");
	expect_ok(f, "alice", NULL, 1);
	assert_string_equal(ledger_query(f->ledger, COUNTERS_SQL),
			    "B/0/user:alice|1699920000|1|1700006400\n");
}

/* In a child: wait for the word, open, ask once for user.  The exit
 * status says what happened: 0 admitted, 1 denied, 2 failed to open, 3
 * anything else. */
static int open_child(const char *conf, int go_fd, const char *user)
{
	kw_request req = KW_REQUEST_INIT;
	kw_ctx *ctx = NULL;
	kw_secret *s = NULL;
	kw_status st;
	char go;

	if (read(go_fd, &go, 1) != 0)
		return 3;
	if (kw_open(&ctx, conf) != KW_OK) {
		fprintf(stderr, "child %d: kw_open: %s\n", (int)getpid(),
			kw_last_error());
		return 2;
	}
	req.provider = "anthropic";
	req.user = user;
	st = kw_resolve(ctx, &req, &s);
	kw_secret_free(s);
	kw_close(ctx);
	return st == KW_OK ? 0 : st == KW_ERR_DENIED ? 1 : 3;
}

/*
 * Processes that open a schema-1 ledger at the same moment: each of them
 * finds it at version 1, one migrates it and the others see that it did;
 * the counts are exact from the first charge on.
 */
static void test_ledger_migration_race(void **state)
{
	struct fixture *f = *state;
	pid_t pids[NPROC];
	unsigned outcomes[4] = { 0 };
	int go[2];
	struct rows r;

	/* u00 has had 4 of its 10 today. */
	make_v1_ledger(f,
		       V1_ROW(1, 1699920000, "'u00'", "NULL", "admitted")
		       V1_ROW(2, 1699920001, "'u00'", "NULL", "admitted")
		       V1_ROW(3, 1699920002, "'u00'", "NULL", "admitted")
		       V1_ROW(4, 1699920003, "'u00'", "NULL", "admitted")
		       "INSERT INTO counters VALUES ('B/0/user:u00',"
		       " 1699920000, 4, 1700006400);");
	write_quota_conf(f, "",
			 "{ limit = 10; period = \"day\"; per = \"user\"; }");
	assert_int_equal(pipe(go), 0);
	fflush(NULL);
	for (int c = 0; c < NPROC; c++) {
		pids[c] = fork();
		assert_true(pids[c] >= 0);
		if (pids[c] == 0) {
			close(go[1]);
			tu_exit(open_child(f->conf, go[0], "u00"));
		}
	}
	close(go[0]);
	/* They all read end-of-file, together, when this one closes. */
	close(go[1]);
	for (int c = 0; c < NPROC; c++) {
		int status = 0;

		assert_int_equal(waitpid(pids[c], &status, 0), pids[c]);
		assert_true(WIFEXITED(status));
		assert_true(WEXITSTATUS(status) < 4);
		outcomes[WEXITSTATUS(status)]++;
	}
	assert_int_equal(outcomes[2], 0);
	assert_int_equal(outcomes[3], 0);
	assert_int_equal(outcomes[0], 6);
	assert_int_equal(outcomes[1], NPROC - 6);
	expect_v2_schema(f->ledger);
	assert_string_equal(ledger_query(f->ledger, COUNTERS_SQL),
			    "B/0/user:u00|1699920000|10|1700006400\n");

	reopen(f);
	r = usage_rows(f->ctx, NULL, 0);
	assert_int_equal(r.admitted, 10);
	assert_int_equal(r.denied, NPROC - 6);
	assert_int_equal(r.n, 10 + NPROC - 6);
	assert_string_equal(usage_text(f->ctx, TODAY, TODAY + 4, "u00", NULL),
			    ROW(1699920000, "u00", "-", "admitted")
			    ROW(1699920001, "u00", "-", "admitted")
			    ROW(1699920002, "u00", "-", "admitted")
			    ROW(1699920003, "u00", "-", "admitted"));
}

/* n counters of yesterday, expired today, straight into the ledger. */
static void add_expired(struct fixture *f, int n)
{
	ledger_exec(f->ledger,
		    tu_fmt("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL"
			   " SELECT i + 1 FROM n WHERE i < %d)"
			   " INSERT INTO counters SELECT"
			   " 'B/0/user:gone' || i || '-' || %d,"
			   " 1699833600, 1, 1699920000 FROM n;",
			   n, n));
}

#define EXPIRED_SQL "SELECT count(*) FROM counters WHERE expires <= 1700000000"

/*
 * Expired counters are swept after a charge, 1000 at a time: after a day
 * ends for many counters at once, the sweep does not hold the write lock
 * for all of them in one go.  Then, with nothing more to drop, it waits
 * for its next minute (or 4096 charges).
 */
static void test_ledger_sweep(void **state)
{
	struct fixture *f = *state;

	open_quota(f, "", "{ limit = 5; period = \"day\"; per = \"user\"; }");
	expect_ok(f, "alice", NULL, 1);
	add_expired(f, 2500);
	/* A new instance sweeps at its first charge. */
	reopen(f);
	assert_string_equal(ledger_query(f->ledger, EXPIRED_SQL), "2500\n");
	expect_ok(f, "bob", NULL, 1);
	assert_string_equal(ledger_query(f->ledger, EXPIRED_SQL), "1500\n");
	expect_ok(f, "bob", NULL, 1);
	assert_string_equal(ledger_query(f->ledger, EXPIRED_SQL), "500\n");
	expect_ok(f, "bob", NULL, 1);
	assert_string_equal(ledger_query(f->ledger, EXPIRED_SQL), "0\n");

	add_expired(f, 10);
	expect_ok(f, "carol", NULL, 1);
	set_now(DEFAULT_NOW + 59);
	expect_ok(f, "carol", NULL, 1);
	assert_string_equal(ledger_query(f->ledger, EXPIRED_SQL), "10\n");
	set_now(DEFAULT_NOW + 60);
	expect_ok(f, "carol", NULL, 1);
	assert_string_equal(ledger_query(f->ledger, EXPIRED_SQL), "0\n");
	assert_string_equal(ledger_query(f->ledger, COUNTERS_SQL),
			    "B/0/user:alice|1699920000|1|1700006400\n"
			    "B/0/user:bob|1699920000|3|1700006400\n"
			    "B/0/user:carol|1699920000|3|1700006400\n");
	expect_rows(f->ctx, 7, 0, 0);
}

/*
 * With many processes writing, the WAL is started over as it would be
 * with one: none of them is ever alone to find it all checkpointed, so
 * without the ledger's own checkpoints it would hold every charge of the
 * run (2 or 3 pages each, over 25 MiB here).  The WAL's file keeps its
 * longest length, so its size after the run is the longest it has been;
 * a connection held open keeps the last process to close from removing
 * it.
 */
static void test_ledger_wal_bounded(void **state)
{
	struct fixture *f = *state;
	sqlite3 *keep_wal = NULL;
	struct tally sum;
	struct stat sb;
	char *wal = tu_fmt("%s-wal", f->ledger);

	open_quota(f, "", "{ limit = 10; period = \"day\"; per = \"user\"; }");
	expect_ok(f, "alice", NULL, 1);
	assert_int_equal(sqlite3_open_v2(f->ledger, &keep_wal,
					 SQLITE_OPEN_READWRITE, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_exec(keep_wal, "SELECT 1 FROM counters", NULL,
				      NULL, NULL),
			 SQLITE_OK);
	run_load(f, &sum);
	for (int u = 0; u < NUSERS; u++)
		assert_int_equal(sum.admitted[u], 10);
	/* Every request denied, and logged, this time. */
	run_load(f, &sum);
	for (int u = 0; u < NUSERS; u++)
		assert_int_equal(sum.admitted[u], 0);
	assert_int_equal(stat(wal, &sb), 0);
	assert_int_equal(sqlite3_close(keep_wal), SQLITE_OK);
	if (sb.st_size > 12 * 1024 * 1024)
		fail_msg("the WAL grew to %lld bytes", (long long)sb.st_size);
}

/* The size of a file, -1 when there is none. */
static long long size_of(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

/*
 * A short-lived process leaves the WAL for the next one instead of
 * checkpointing it at every close (which synced); the last close empties
 * it once it is long, and no charge is lost either way.
 */
static void test_ledger_wal_kept_short(void **state)
{
	struct fixture *f = *state;
	char *wal = tu_fmt("%s-wal", f->ledger);
	char user[16];
	struct rows r;

	open_quota(f, "",
		   "{ limit = 1000; period = \"day\"; per = \"user\"; }");
	expect_ok(f, "alice", NULL, 1);
	kw_close(f->ctx);
	f->ctx = NULL;
	if (size_of(wal) <= 0)
		fail_msg("the WAL was not kept: %lld bytes", size_of(wal));

	/* Each opener charges once and goes: the WAL grows a little. */
	for (int i = 0; i < 3; i++) {
		reopen(f);
		expect_ok(f, "bob", NULL, 1);
	}
	kw_close(f->ctx);
	f->ctx = NULL;
	if (size_of(wal) <= 0)
		fail_msg("the WAL was not kept: %lld bytes", size_of(wal));

	/* A long one is emptied by the last to close. */
	reopen(f);
	for (int i = 0; i < 120; i++) {
		snprintf(user, sizeof(user), "u%03d", i);
		expect_ok(f, user, NULL, 1);
	}
	kw_close(f->ctx);
	f->ctx = NULL;
	assert_int_equal(size_of(wal), 0);

	reopen(f);
	r = usage_rows(f->ctx, NULL, DEFAULT_NOW);
	assert_int_equal(r.admitted, 124);
	assert_int_equal(admitted_of(&r, "alice"), 1);
	assert_int_equal(admitted_of(&r, "bob"), 3);
}

#define KILL_REQ 700
#define KILL_USERS 100

/* In a child: KILL_REQ requests over KILL_USERS users, the number admitted
 * and denied sent to out_fd, then SIGKILL: no kw_close(), nothing flushed
 * or checkpointed on the way out. */
static void kill_child(const char *conf, int child, int out_fd)
{
	uint32_t seen[2] = { 0, 0 };
	kw_ctx *ctx = NULL;

	if (kw_open(&ctx, conf) == KW_OK) {
		for (int i = 0; i < KILL_REQ; i++) {
			kw_request req = KW_REQUEST_INIT;
			kw_secret *s = NULL;
			char user[16];
			kw_status st;

			snprintf(user, sizeof(user), "k%03d",
				 (i + 13 * child) % KILL_USERS);
			req.provider = "anthropic";
			req.user = user;
			st = kw_resolve(ctx, &req, &s);
			kw_secret_free(s);
			if (st == KW_OK)
				seen[0]++;
			else if (st == KW_ERR_DENIED)
				seen[1]++;
		}
	}
	if (write(out_fd, seen, sizeof(seen)) != (ssize_t)sizeof(seen))
		tu_exit(3);
	kill(getpid(), SIGKILL);
	tu_exit(3);
}

/*
 * Processes killed (SIGKILL) right after their last charge: every charge
 * they were answered is in the ledger, counted and logged, though the WAL
 * was checkpointed and started over several times meanwhile.
 */
static void test_ledger_killed_writers(void **state)
{
	struct fixture *f = *state;
	uint32_t admitted = 0, denied = 0;
	pid_t pids[NPROC];
	int out[NPROC][2];

	open_quota(f, "", "{ limit = 5; period = \"day\"; per = \"user\"; }");
	kw_close(f->ctx);
	f->ctx = NULL;
	fflush(NULL);
	for (int c = 0; c < NPROC; c++) {
		assert_int_equal(pipe(out[c]), 0);
		pids[c] = fork();
		assert_true(pids[c] >= 0);
		if (pids[c] == 0) {
			close(out[c][0]);
			kill_child(f->conf, c, out[c][1]);
		}
		close(out[c][1]);
	}
	for (int c = 0; c < NPROC; c++) {
		uint32_t seen[2];
		int status = 0;

		assert_int_equal(read(out[c][0], seen, sizeof(seen)),
				 (ssize_t)sizeof(seen));
		close(out[c][0]);
		assert_int_equal(waitpid(pids[c], &status, 0), pids[c]);
		assert_true(WIFSIGNALED(status));
		assert_int_equal(WTERMSIG(status), SIGKILL);
		admitted += seen[0];
		denied += seen[1];
	}
	assert_int_equal(admitted, KILL_USERS * 5);
	assert_int_equal(admitted + denied, NPROC * KILL_REQ);
	assert_string_equal(ledger_query(f->ledger,
					 "SELECT count(*), sum(count)"
					 " FROM counters"),
			    tu_fmt("%d|%d\n", KILL_USERS, KILL_USERS * 5));
	assert_string_equal(ledger_query(f->ledger,
					 "SELECT outcome, count(*) FROM usage"
					 " GROUP BY outcome ORDER BY outcome"),
			    tu_fmt("admitted|%d\ndenied|%u\n", KILL_USERS * 5,
				   denied));
	assert_string_equal(ledger_query(f->ledger, "PRAGMA integrity_check"),
			    "ok\n");
}

/* A ledger of a newer keyway is left alone. */
static void test_ledger_newer_schema(void **state)
{
	struct fixture *f = *state;
	const char *usage;

	make_v1_ledger(f, V1_ROW(1, 1699920000, "'alice'", "NULL", "admitted"));
	ledger_exec(f->ledger, "PRAGMA user_version = 3;");
	usage = ledger_query(f->ledger, USAGE_SQL);
	write_quota_conf(f, "",
			 "{ limit = 4; period = \"day\"; per = \"user\"; }");
	assert_int_equal(kw_open(&f->ctx, f->conf), KW_ERR_BACKEND);
	assert_null(f->ctx);
	assert_string_equal(kw_last_error(),
			    tu_fmt("%s:2: keyway.ledger: ledger %s has schema "
				   "version 3; this keyway knows up to 2",
				   f->conf, f->ledger));
	assert_string_equal(ledger_query(f->ledger, "PRAGMA user_version"),
			    "3\n");
	assert_string_equal(ledger_query(f->ledger, INDEXES_SQL),
			    "counters_expires\nusage_time\nusage_user_time\n");
	assert_string_equal(ledger_query(f->ledger, USAGE_SQL), usage);
}

/* ---- configuration errors ---- */

struct conf_case {
	const char *name;
	const char *text;
	int line;
	const char *message; /* after "file:line: " */
	kw_status status;
};

#define LEDGER_SECTION \
	"keyway: {\n" \
	"  ledger: { module = \"sqlite\"; path = \"ledger.db\"; };\n" \
	"};\n"
#define CHAIN_B \
	"chains: { default = ( { backend = \"B\"; control = \"required\"; } ); };\n"

/* Line 5 holds what is in the middle. */
#define QUOTA_CONF(middle) \
	LEDGER_SECTION \
	"backends: {\n" \
	"  B: { module = \"env\";\n" \
	middle \
	"  };\n" \
	"};\n" \
	CHAIN_B

#define PER_WORDS "\"user\", \"org\", \"global\", \"provider\", " \
		  "\"user+provider\" or \"org+provider\""

static const struct conf_case conf_cases[] = {
	{ "config: quota without limit",
	  QUOTA_CONF("    quota = ( { period = \"day\"; per = \"user\"; } );\n"),
	  6, "backend \"B\": quota 1 has no limit", KW_ERR_CONFIG },
	{ "config: quota without period",
	  QUOTA_CONF("    quota = ( { limit = 5; per = \"user\"; } );\n"),
	  6, "backend \"B\": quota 1 has no period", KW_ERR_CONFIG },
	{ "config: limit 0 in the second quota",
	  QUOTA_CONF("    quota = (\n"
		     "      { limit = 5; period = \"day\"; },\n"
		     "      { limit = 0; period = \"day\"; }\n"
		     "    );\n"),
	  8, "backend \"B\": quota 2: limit must be a whole number of "
	     "requests, 1 or more",
	  KW_ERR_CONFIG },
	{ "config: negative limit",
	  QUOTA_CONF("    quota = ( { limit = -3; period = \"day\"; } );\n"),
	  6, "backend \"B\": quota 1: limit must be a whole number of "
	     "requests, 1 or more",
	  KW_ERR_CONFIG },
	{ "config: limit a string",
	  QUOTA_CONF("    quota = ( { limit = \"10\"; period = \"day\"; } );\n"),
	  6, "backend \"B\": quota 1: limit must be a whole number of "
	     "requests, 1 or more",
	  KW_ERR_CONFIG },
	{ "config: period week",
	  QUOTA_CONF("    quota = ( { limit = 5;\n"
		     "                period = \"week\"; } );\n"),
	  7, "backend \"B\": quota 1: period must be \"minute\", \"hour\", "
	     "\"day\", \"month\" or a number of seconds (1 to 31622400)",
	  KW_ERR_CONFIG },
	{ "config: period 0",
	  QUOTA_CONF("    quota = ( { limit = 5; period = 0; } );\n"),
	  6, "backend \"B\": quota 1: period must be \"minute\", \"hour\", "
	     "\"day\", \"month\" or a number of seconds (1 to 31622400)",
	  KW_ERR_CONFIG },
	{ "config: period over a leap year",
	  QUOTA_CONF("    quota = ( { limit = 5; period = 31622401; } );\n"),
	  6, "backend \"B\": quota 1: period must be \"minute\", \"hour\", "
	     "\"day\", \"month\" or a number of seconds (1 to 31622400)",
	  KW_ERR_CONFIG },
	{ "config: per team",
	  QUOTA_CONF("    quota = ( { limit = 5; period = \"day\";\n"
		     "                per = \"team\"; } );\n"),
	  7, "backend \"B\": quota 1: per must be " PER_WORDS,
	  KW_ERR_CONFIG },
	{ "config: per provider+user",
	  QUOTA_CONF("    quota = ( { limit = 5; period = \"day\"; },\n"
		     "              { limit = 9; period = \"day\";\n"
		     "                per = \"provider+user\"; } );\n"),
	  8, "backend \"B\": quota 2: per must be " PER_WORDS,
	  KW_ERR_CONFIG },
	{ "config: per user+org",
	  QUOTA_CONF("    quota = ( { limit = 5; period = \"day\";\n"
		     "                per = \"user+org\"; } );\n"),
	  7, "backend \"B\": quota 1: per must be " PER_WORDS,
	  KW_ERR_CONFIG },
	{ "config: per User+Provider",
	  QUOTA_CONF("    quota = ( { limit = 5; period = \"day\";\n"
		     "                per = \"User+Provider\"; } );\n"),
	  7, "backend \"B\": quota 1: per must be " PER_WORDS,
	  KW_ERR_CONFIG },
	{ "config: unknown quota setting",
	  QUOTA_CONF("    quota = ( { limit = 5; period = \"day\";\n"
		     "                per = \"user\";\n"
		     "                burst = 2; } );\n"),
	  8, "backend \"B\": quota 1: unknown setting \"burst\" (expected "
	     "limit, period and per)",
	  KW_ERR_CONFIG },
	{ "config: quota a group",
	  QUOTA_CONF("    quota = { limit = 5; period = \"day\"; };\n"),
	  6, "backend \"B\": quota must be a list ( { limit = ...; period = "
	     "...; per = ...; }, ... )",
	  KW_ERR_CONFIG },
	{ "config: quota an empty list",
	  QUOTA_CONF("    quota = ( );\n"),
	  6, "backend \"B\": quota must be a list ( { limit = ...; period = "
	     "...; per = ...; }, ... )",
	  KW_ERR_CONFIG },
	{ "config: quota a list of numbers",
	  QUOTA_CONF("    quota = ( 10 );\n"),
	  6, "backend \"B\": quota 1 must be a group { limit = ...; period = "
	     "...; per = ...; }",
	  KW_ERR_CONFIG },
	{ "config: on_unavailable on a backend",
	  QUOTA_CONF("    on_unavailable = \"allow\";\n"),
	  6, "backend \"B\": unknown setting \"on_unavailable\" (module "
	     "\"env\" takes vars, dotenv, environment)",
	  KW_ERR_CONFIG },
	{ "config: on_unavailable maybe",
	  "keyway: {\n"
	  "  ledger: { module = \"sqlite\"; path = \"ledger.db\";\n"
	  "            on_unavailable = \"maybe\"; };\n"
	  "};\n"
	  "backends: { B: { module = \"env\"; }; };\n" CHAIN_B,
	  3, "keyway.ledger: on_unavailable must be \"deny\" or \"allow\"",
	  KW_ERR_CONFIG },
	{ "config: on_unavailable a boolean",
	  "keyway: {\n"
	  "  ledger: { module = \"sqlite\"; path = \"ledger.db\";\n"
	  "            on_unavailable = true; };\n"
	  "};\n"
	  "backends: { B: { module = \"env\"; }; };\n" CHAIN_B,
	  3, "keyway.ledger: on_unavailable must be \"deny\" or \"allow\"",
	  KW_ERR_CONFIG },
	{ "config: ledger without path",
	  "keyway: {\n"
	  "  ledger: { module = \"sqlite\"; };\n"
	  "};\n"
	  "backends: { B: { module = \"env\"; }; };\n" CHAIN_B,
	  2, "keyway.ledger: missing path (module \"sqlite\" needs it)",
	  KW_ERR_CONFIG },
	{ "config: ledger a string",
	  "keyway: {\n"
	  "  ledger = \"ledger.db\";\n"
	  "};\n"
	  "backends: { B: { module = \"env\"; }; };\n" CHAIN_B,
	  2, "keyway.ledger must be a group { module = ...; }",
	  KW_ERR_CONFIG },
	{ "config: ledger of a module that does not count",
	  "keyway: {\n"
	  "  ledger: { module = \"env\"; };\n"
	  "};\n"
	  "backends: { B: { module = \"env\"; }; };\n" CHAIN_B,
	  2, "keyway.ledger: module \"env\" does not count quotas",
	  KW_ERR_CONFIG },
	{ "config: ledger busy_timeout_ms -1",
	  "keyway: {\n"
	  "  ledger: { module = \"sqlite\"; path = \"ledger.db\";\n"
	  "            busy_timeout_ms = -1; };\n"
	  "};\n"
	  "backends: { B: { module = \"env\"; }; };\n" CHAIN_B,
	  3, "keyway.ledger: busy_timeout_ms must be between 0 and 600000",
	  KW_ERR_CONFIG },
};

#define NCONF (sizeof(conf_cases) / sizeof(conf_cases[0]))

static void run_conf_case(struct fixture *f, const struct conf_case *c)
{
	kw_status st = open_text(f, c->text);

	assert_null(f->ctx);
	if (st != c->status ||
	    strcmp(kw_last_error(),
		   tu_fmt("%s:%d: %s", f->conf, c->line, c->message)) != 0)
		fail_msg("got %s \"%s\", expected %s \"%s:%d: %s\"",
			 kw_status_str(st), kw_last_error(),
			 kw_status_str(c->status), f->conf, c->line,
			 c->message);
	/* Nothing was opened: no ledger was made. */
	assert_int_equal(access(f->ledger, F_OK), -1);
}

/* One test per case: the case comes in as the test's initial state. */
static void test_config_case(void **state)
{
	struct fixture *f = *state;

	run_conf_case(f, f->param);
}

/* The list of what a ledger takes names what it takes: its module's
 * settings (and perhaps on_unavailable), not scope, which only a backend
 * has. */
static void test_ledger_unknown_setting(void **state)
{
	struct fixture *f = *state;
	const char *prefix = tu_fmt("%s:2: keyway.ledger: unknown setting "
				    "\"flavour\" (module \"sqlite\" takes ",
				    f->conf);
	char list[256], *save = NULL;
	const char *err;
	unsigned seen = 0;
	size_t n;

	assert_int_equal(open_text(f, "keyway: {\n"
				      "  ledger: { module = \"sqlite\"; path = "
				      "\"ledger.db\"; flavour = 1; };\n"
				      "};\n"
				      "backends: { B: { module = \"env\"; }; "
				      "};\n" CHAIN_B),
			 KW_ERR_CONFIG);
	err = kw_last_error();
	n = strlen(prefix);
	if (strncmp(err, prefix, n) != 0 || err[strlen(err) - 1] != ')')
		fail_msg("unexpected message \"%s\"", err);
	snprintf(list, sizeof(list), "%.*s", (int)(strlen(err) - n - 1),
		 err + n);
	for (char *w = strtok_r(list, ", ", &save); w != NULL;
	     w = strtok_r(NULL, ", ", &save)) {
		if (strcmp(w, "path") == 0)
			seen |= 1;
		else if (strcmp(w, "busy_timeout_ms") == 0)
			seen |= 2;
		else if (strcmp(w, "on_unavailable") != 0)
			fail_msg("the ledger does not take \"%s\": \"%s\"", w,
				 err);
	}
	if (seen != 3)
		fail_msg("the ledger takes path and busy_timeout_ms: \"%s\"",
			 err);

	/* Nor does it take scope or quota. */
	assert_int_equal(open_text(f, "keyway: {\n"
				      "  ledger: { module = \"sqlite\"; path = "
				      "\"ledger.db\"; scope = \"user\"; };\n"
				      "};\n"
				      "backends: { B: { module = \"env\"; }; "
				      "};\n" CHAIN_B),
			 KW_ERR_CONFIG);
	assert_non_null(strstr(kw_last_error(),
			       ":2: keyway.ledger: unknown setting \"scope\""));
}

#define STORE_BACKEND(path) \
	"backends: {\n" \
	"  user_keys: { module = \"sqlite\"; path = \"" path "\"; " \
	"scope = \"user\"; };\n" \
	"};\n" \
	"chains: { default = ( { backend = \"user_keys\"; " \
	"control = \"required\"; } ); };\n"

static void test_store_and_ledger_apart(void **state)
{
	struct fixture *f = *state;

	/* A store, then named as the ledger. */
	must_open(f, "keyway: { master_key = { source = \"env\"; }; };\n"
		     STORE_BACKEND("keys.db"));
	kw_close(f->ctx);
	f->ctx = NULL;
	assert_int_equal(open_text(f, "keyway: {\n"
				      "  master_key = { source = \"env\"; };\n"
				      "  ledger: { module = \"sqlite\";\n"
				      "            path = \"keys.db\"; };\n"
				      "};\n" STORE_BACKEND("keys.db")),
			 KW_ERR_BACKEND);
	assert_string_equal(
		kw_last_error(),
		tu_fmt("%s:4: keyway.ledger: %s is a keyway key "
		       "store, not a quota ledger: give keyway.ledger "
		       "a file of its own",
		       f->conf, f->store));

	/* A ledger, then named as a store. */
	must_open(f, "keyway: {\n"
		     "  master_key = { source = \"env\"; };\n"
		     "  ledger: { module = \"sqlite\"; path = \"ledger.db\"; };\n"
		     "};\n" STORE_BACKEND("keys.db"));
	assert_int_equal(open_text(f, "keyway: {\n"
				      "  master_key = { source = \"env\"; };\n"
				      "  ledger: { module = \"sqlite\"; path = "
				      "\"ledger.db\"; };\n"
				      "};\n" STORE_BACKEND("ledger.db")),
			 KW_ERR_BACKEND);
	assert_string_equal(
		kw_last_error(),
		tu_fmt("%s:6: backend \"user_keys\": %s is a keyway "
		       "quota ledger, not a key store: give the "
		       "backend a file of its own",
		       f->conf, f->ledger));
}

/* ---- the sqlite module's own refusals ---- */

/* Call op of instance in with a fresh reply; the reply's detail in *why. */
#define CALL(in, op, why, ...)                                         \
	({                                                             \
		struct kw_reply r_;                                    \
		kw_status st_;                                         \
		kwi_reply_init(&r_, (in)->name);                       \
		st_ = (in)->module->ops.op((in)->state, __VA_ARGS__, &r_); \
		snprintf(why, sizeof(why), "%s", r_.detail);           \
		kwi_reply_clear(&r_);                                  \
		st_;                                                   \
	})

/* The answer of a call refused with KW_ERR_UNSUPPORTED or KW_ERR_INVAL. */
static void said(kw_status got, kw_status want, const char *why,
		 const char *expect)
{
	if (got != want)
		fail_msg("got %s, expected %s (%s)", kw_status_str(got),
			 kw_status_str(want), why);
	assert_string_equal(why, expect);
}

static kw_status note_key(void *arg, const kw_key_info *info)
{
	(void)info;
	(*(size_t *)arg)++;
	return KW_OK;
}

static kw_status count_record(void *arg, const kw_store_record *rec)
{
	(void)rec;
	(*(size_t *)arg)++;
	return KW_OK;
}

static kw_status count_usage(void *arg, const kw_usage_row *row)
{
	(void)row;
	(*(size_t *)arg)++;
	return KW_OK;
}

/*
 * The module is one descriptor for both roles: whatever asks an instance
 * for the other role's operation (a host that is not libkeyway, or one
 * with a bug) is refused in one line that names the file, and a key that
 * the host should have refused is refused by the module as well, before
 * anything is written.  And use counts given one key at a time (used(),
 * for hosts without used_batch()) are counted.
 */
static void test_sqlite_refuses_other_role(void **state)
{
	struct fixture *f = *state;
	const kw_actor alice = { sizeof(kw_actor), "alice", NULL,
				 KW_ROLE_NONE };
	const int64_t t1 = utc(2024, 5, 1, 10, 0, 0);
	kw_key_ref ref = KW_KEY_REF_INIT;
	kw_store_key k = { KW_SCOPE_USER, "alice", "anthropic" };
	kw_store_put p = { k, K_USER, strlen(K_USER), NULL, KW_PUT_CREATE };
	kw_store_use u = { k, 1, t1 };
	kw_charge c = { NULL, 0, NULL, 5, 6, 7 };
	struct kw_instance *ledger, *store;
	uint64_t count = 9;
	size_t n = 0;
	char why[256], *is_ledger, *is_store;

	set_now(t1);
	must_open(f, STORE_QUOTA_CONF);
	ledger = f->ctx->ledger;
	store = kwi_find_backend(f->ctx, "user_keys");
	assert_non_null(ledger);
	assert_non_null(store);
	is_ledger = tu_fmt("%s is the quota ledger, not a key store",
			   f->ledger);
	is_store = tu_fmt("%s is a key store, not the quota ledger", f->store);

	/* A key store's operations, asked of the ledger. */
	said(CALL(ledger, put, why, &p), KW_ERR_UNSUPPORTED, why, is_ledger);
	said(CALL(ledger, set_active, why, &k, false), KW_ERR_UNSUPPORTED,
	     why, is_ledger);
	said(CALL(ledger, remove, why, &k), KW_ERR_UNSUPPORTED, why,
	     is_ledger);
	said(CALL(ledger, list, why, KW_SCOPE_USER, NULL, count_record, &n),
	     KW_ERR_UNSUPPORTED, why, is_ledger);
	said(CALL(ledger, rekey, why, &count), KW_ERR_UNSUPPORTED, why,
	     is_ledger);
	assert_int_equal(count, 0);
	said(CALL(ledger, used_batch, why, &u, 1), KW_ERR_UNSUPPORTED, why,
	     is_ledger);
	said(CALL(ledger, used, why, &k, 1, t1), KW_ERR_UNSUPPORTED, why,
	     is_ledger);
	/* The ledger's, asked of a key store: what charge() answers is
	 * cleared all the same. */
	said(CALL(store, charge, why, &c, false), KW_ERR_UNSUPPORTED, why,
	     is_store);
	assert_true(c.full == 0 && c.count == 0 && c.usage_id == 0);
	said(CALL(store, refund, why, &c), KW_ERR_UNSUPPORTED, why, is_store);
	said(CALL(store, usage, why, NULL, count_usage, &n), KW_ERR_UNSUPPORTED,
	     why, is_store);
	assert_int_equal(n, 0);

	/* Keys the store cannot hold, refused before anything is done. */
	k.scope = KW_SCOPE_ORG;
	said(CALL(store, set_active, why, &k, false), KW_ERR_INVAL, why,
	     "this backend holds user keys, not org keys");
	k.scope = (kw_scope)77;
	said(CALL(store, remove, why, &k), KW_ERR_INVAL, why,
	     "this backend holds user keys, not unscoped keys");
	k.scope = KW_SCOPE_USER;
	k.provider = "";
	said(CALL(store, remove, why, &k), KW_ERR_INVAL, why,
	     "no provider given");
	k.provider = "anthropic";
	k.owner = NULL;
	said(CALL(store, set_active, why, &k, true), KW_ERR_INVAL, why,
	     "a user key needs an owner");
	k.owner = "alice";
	/* Nothing was stored by any of it. */
	assert_int_equal(kw_key_list(f->ctx, tu_sysadmin(), NULL, NULL,
				     note_key, &n),
			 KW_OK);
	assert_int_equal(n, 0);

	/* used(), one key at a time, counts as used_batch() does. */
	ref.backend = "user_keys";
	ref.owner = "alice";
	ref.provider = "anthropic";
	assert_int_equal(kw_key_put(f->ctx, &alice, &ref, K_USER,
				    strlen(K_USER), NULL, KW_PUT_CREATE),
			 KW_OK);
	assert_int_equal(CALL(store, used, why, &k, 3, t1 + 60), KW_OK);
	expect_uses(f, 3, t1 + 60);
}

/*
 * A charge the module cannot make sense of (slots missing, a slot without
 * a counter) is refused in one line; a slot of limit 0 admits nothing; a
 * dry run reads every slot's count in one snapshot and names the first
 * that is full; usage() without a filter reads every row.
 */
static void test_sqlite_ledger_own_checks(void **state)
{
	struct fixture *f = *state;
	const int64_t t1 = utc(2024, 5, 1, 10, 0, 0);
	const kw_usage_row row = { t1, "default", "B", "anthropic", "alice",
				   NULL, "admitted" };
	kw_quota_slot slots[2] = {
		{ "user=alice", t1 - 60, t1 + 3600, 5 },
		{ "org=acme", t1 - 60, t1 + 3600, 0 },
	};
	kw_charge c = { NULL, 1, &row, 0, 0, 0 };
	struct kw_instance *ledger;
	size_t n = 0;
	char why[256];

	set_now(t1);
	must_open(f, STORE_QUOTA_CONF);
	ledger = f->ctx->ledger;
	assert_non_null(ledger);

	said(CALL(ledger, charge, why, &c, false), KW_ERR_INVAL, why,
	     "charge of 1 slots without slots");
	slots[0].counter = NULL;
	c.slots = slots;
	said(CALL(ledger, refund, why, &c), KW_ERR_INVAL, why,
	     "quota slot 0 has no counter");
	slots[0].counter = "user=alice";

	/* Both slots looked at in a dry run: the second has no room. */
	c.nslots = 2;
	assert_int_equal(CALL(ledger, charge, why, &c, true), KW_ERR_DENIED);
	assert_int_equal(c.full, 1);
	assert_int_equal(c.count, 0);
	/* And the charge itself is denied on it, the first slot left as it
	 * was. */
	assert_int_equal(CALL(ledger, charge, why, &c, false), KW_ERR_DENIED);
	assert_int_equal(c.full, 1);
	c.nslots = 1;
	assert_int_equal(CALL(ledger, charge, why, &c, true), KW_OK);
	assert_int_equal(CALL(ledger, charge, why, &c, false), KW_OK);
	assert_true(c.usage_id > 0);

	/* No filter: every row, the denied one and the admitted one. */
	assert_int_equal(CALL(ledger, usage, why, NULL, count_usage, &n),
			 KW_OK);
	assert_int_equal(n, 2);
}

/* A system key has no owner: the module refuses one with an owner. */
static void test_sqlite_system_key_owner(void **state)
{
	struct fixture *f = *state;
	kw_store_key k = { KW_SCOPE_SYSTEM, "acme", "anthropic" };
	struct kw_instance *store;
	char why[256];

	must_open(f, "keyway: { master_key = { source = \"env\"; }; };\n"
		     "backends: { system_keys: { module = \"sqlite\"; "
		     "path = \"keys.db\"; scope = \"system\"; }; };\n"
		     "chains: { default = ( { backend = \"system_keys\"; "
		     "control = \"required\"; } ); };\n");
	store = kwi_find_backend(f->ctx, "system_keys");
	assert_non_null(store);
	said(CALL(store, remove, why, &k), KW_ERR_INVAL, why,
	     "a system key has no owner");
}

/* ---- the audit trail ---- */

#define AUDIT_CONF(audit_extra) \
	"keyway: {\n" \
	"  master_key = { source = \"env\"; };\n" \
	"  ledger: { module = \"sqlite\"; path = \"ledger.db\"; };\n" \
	"  audit: { sink = \"jsonl\"; path = \"audit.jsonl\";" audit_extra \
	" };\n" \
	"};\n" \
	"backends: {\n" \
	"  org_keys: { module = \"sqlite\"; path = \"keys.db\"; " \
	"scope = \"org\"; };\n" \
	"  user_keys: { module = \"sqlite\"; path = \"keys.db\"; " \
	"scope = \"user\"; };\n" \
	"  B: { module = \"env\";\n" \
	"       quota = ( { limit = 2; period = \"day\"; per = \"user\"; } ); " \
	"};\n" \
	"};\n" \
	"chains: {\n" \
	"  default = ( { backend = \"org_keys\"; control = \"sufficient\"; },\n" \
	"              { backend = \"user_keys\"; control = \"sufficient\"; },\n" \
	"              { backend = \"B\"; control = \"required\"; } );\n" \
	"};\n"

/* None of the values, nor the master key, anywhere in the file. */
static void expect_file_clean(const char *path)
{
	static const struct {
		const char *value, *what;
	} values[] = {
		{ K_ENV, "the environment's key" },
		{ K_ORG, "acme's first key" },
		{ K_ORG2, "acme's second key" },
		{ K_USER, "alice's key" },
		{ TU_MARK, "a piece of a key" },
		{ MASTER, "the master key" },
	};
	size_t len;
	char *buf = tu_slurp(path, &len);

	assert_non_null(buf);

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		if (memmem(buf, len, values[i].value,
			   strlen(values[i].value)) != NULL)
			fail_msg("%s holds %s in the clear", path,
				 values[i].what);
}

/* Each line of the audit file, parsed. */
static json_t *audit_lines(struct fixture *f, size_t *n)
{
	char *text = tu_slurp(f->audit, NULL);
	json_t *all = json_array();
	char *save = NULL;

	assert_non_null(text);
	assert_non_null(all);
	assert_true(text[0] == '\0' || text[strlen(text) - 1] == '\n');
	for (char *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		json_error_t e;
		json_t *o = json_loads(line, 0, &e);

		if (o == NULL || !json_is_object(o)) {
			json_decref(all);
			fail_msg("audit line is not a JSON object: %s",
				 e.text);
		}
		json_array_append_new(all, o);
	}
	*n = json_array_size(all);
	return all;
}

/* The names of o's members, in order, joined by spaces. */
static const char *member_names(json_t *o)
{
	char buf[512] = "";
	size_t used = 0;

	for (void *it = json_object_iter(o); it != NULL && used < sizeof(buf);
	     it = json_object_iter_next(o, it))
		used += (size_t)snprintf(buf + used, sizeof(buf) - used,
					 "%s%s", used > 0 ? " " : "",
					 json_object_iter_key(it));
	return tu_fmt("%s", buf);
}

static const char *str_member(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);

	if (v == NULL)
		fail_msg("no \"%s\" in the audit line", name);
	if (!json_is_null(v) && !json_is_string(v))
		fail_msg("\"%s\" is neither a string nor null", name);
	return json_is_null(v) ? "(null)" : json_string_value(v);
}

static bool is_fingerprint(const char *s)
{
	if (s == NULL || strlen(s) != 32)
		return false;
	return strspn(s, "0123456789abcdef") == 32;
}

/* Line i is a resolve with these fields; its fingerprint, or NULL. */
static const char *expect_resolve_line(json_t *lines, size_t i,
				       const char *user, const char *org,
				       const char *provider,
				       const char *result,
				       const char *backend)
{
	json_t *o = json_array_get(lines, i);
	const char *fp;

	assert_non_null(o);
	tu_expect_timestamp(str_member(o, "time"));
	assert_string_equal(str_member(o, "event"), "resolve");
	assert_string_equal(str_member(o, "chain"), "default");
	assert_string_equal(str_member(o, "provider"), provider);
	assert_string_equal(str_member(o, "user"), user ? user : "(null)");
	assert_string_equal(str_member(o, "org"), org ? org : "(null)");
	assert_string_equal(str_member(o, "result"), result);
	if (backend == NULL) {
		assert_string_equal(member_names(o),
				    "time event chain provider user org "
				    "result");
		return NULL;
	}
	assert_string_equal(member_names(o),
			    "time event chain provider user org result "
			    "backend fingerprint");
	assert_string_equal(str_member(o, "backend"), backend);
	fp = str_member(o, "fingerprint");
	if (!is_fingerprint(fp))
		fail_msg("fingerprint \"%s\" is not 32 hex digits", fp);
	return fp;
}

static void expect_change_line(json_t *lines, size_t i, const char *event,
			       const char *actor_user, const char *actor_org,
			       const char *role, const char *backend,
			       const char *scope, const char *owner,
			       const char *result)
{
	json_t *o = json_array_get(lines, i), *a;

	assert_non_null(o);
	tu_expect_timestamp(str_member(o, "time"));
	assert_string_equal(str_member(o, "event"), event);
	a = json_object_get(o, "actor");
	assert_true(json_is_object(a));
	assert_string_equal(member_names(a), "user org role");
	assert_string_equal(str_member(a, "user"),
			    actor_user ? actor_user : "(null)");
	assert_string_equal(str_member(a, "org"),
			    actor_org ? actor_org : "(null)");
	assert_string_equal(str_member(a, "role"), role);
	assert_string_equal(str_member(o, "backend"), backend);
	assert_string_equal(str_member(o, "result"), result);
	if (scope == NULL) {
		assert_string_equal(member_names(o),
				    "time event actor backend result");
		return;
	}
	assert_string_equal(member_names(o),
			    "time event actor backend scope owner provider "
			    "result");
	assert_string_equal(str_member(o, "scope"), scope);
	assert_string_equal(str_member(o, "owner"), owner ? owner : "(null)");
	assert_string_equal(str_member(o, "provider"), "anthropic");
}

/* Resolve anthropic (or provider) and check which key came back. */
static kw_status audit_get(struct fixture *f, kw_ctx *ctx,
			   const char *provider, const char *user,
			   const char *org, const char *want)
{
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;
	kw_status st;

	req.provider = provider;
	req.user = user;
	req.org = org;
	st = kw_resolve(ctx, &req, &s);
	if (st == KW_OK) {
		assert_non_null(want);
		assert_string_equal(kw_secret_value(s), want);
		kw_secret_free(s);
	} else {
		snprintf(f->err, sizeof(f->err), "%s", kw_last_error());
		tu_assert_no_secret(f->err);
	}
	return st;
}

static void test_audit_trail(void **state)
{
	struct fixture *f = *state;
	const kw_actor owner = { sizeof(kw_actor), "olivia", "acme",
				 KW_ROLE_OWNER };
	const kw_actor alice = { sizeof(kw_actor), "alice", NULL,
				 KW_ROLE_NONE };
	kw_key_ref org = KW_KEY_REF_INIT, user = KW_KEY_REF_INIT;
	const char *fp_org, *fp_user, *fp_env, *fp_org2, *fp;
	kw_ctx *other = NULL;
	json_t *lines;
	size_t n = 0;
	uint64_t count = 0;

	must_open(f, AUDIT_CONF(""));
	org.backend = "org_keys";
	org.owner = "acme";
	org.provider = "anthropic";
	user.backend = "user_keys";
	user.owner = "alice";
	user.provider = "anthropic";

	assert_int_equal(kw_key_put(f->ctx, &owner, &org, K_ORG, strlen(K_ORG),
				    "acme prod", KW_PUT_CREATE),
			 KW_OK);                                        /* 0 */
	assert_int_equal(kw_key_put(f->ctx, &alice, &user, K_USER,
				    strlen(K_USER), NULL, KW_PUT_CREATE),
			 KW_OK);                                        /* 1 */
	assert_int_equal(audit_get(f, f->ctx, "anthropic", "alice", "acme",
				   K_ORG),
			 KW_OK);                                        /* 2 */
	assert_int_equal(audit_get(f, f->ctx, "anthropic", "alice", NULL,
				   K_USER),
			 KW_OK);                                        /* 3 */
	assert_int_equal(audit_get(f, f->ctx, "anthropic", "bob", NULL,
				   K_ENV),
			 KW_OK);                                        /* 4 */
	assert_int_equal(audit_get(f, f->ctx, "openai", "bob", NULL, NULL),
			 KW_ERR_NOTFOUND);                              /* 5 */
	assert_int_equal(kw_key_put(f->ctx, &owner, &org, K_ORG2,
				    strlen(K_ORG2), NULL, KW_PUT_ROTATE),
			 KW_OK);                                        /* 6 */
	assert_int_equal(audit_get(f, f->ctx, "anthropic", "alice", "acme",
				   K_ORG2),
			 KW_OK);                                        /* 7 */
	assert_int_equal(kw_key_set_active(f->ctx, &owner, &org, 0),
			 KW_OK);                                        /* 8 */
	assert_int_equal(audit_get(f, f->ctx, "anthropic", "alice", "acme",
				   K_USER),
			 KW_OK);                                        /* 9 */
	assert_int_equal(kw_key_set_active(f->ctx, &owner, &org, 1),
			 KW_OK);                                        /* 10 */
	assert_int_equal(kw_key_delete(f->ctx, &alice, &user), KW_OK); /* 11 */
	assert_int_equal(kw_rekey(f->ctx, tu_sysadmin(), "org_keys", &count),
			 KW_OK);                                        /* 12 */
	/* Already under the current master key: nothing to re-seal. */
	assert_int_equal(count, 0);
	assert_int_equal(kw_key_put(f->ctx, &alice, &user, K_USER,
				    strlen(K_USER), NULL, KW_PUT_ROTATE),
			 KW_ERR_NOTFOUND);                              /* 13 */
	assert_int_equal(audit_get(f, f->ctx, "anthropic", "bob", NULL,
				   K_ENV),
			 KW_OK);                                        /* 14 */
	assert_int_equal(audit_get(f, f->ctx, "anthropic", "bob", NULL, NULL),
			 KW_ERR_DENIED);                                /* 15 */
	/* Another context on the same files. */
	assert_int_equal(kw_open(&other, f->conf), KW_OK);
	assert_int_equal(audit_get(f, other, "anthropic", "carol", "acme",
				   K_ORG2),
			 KW_OK);                                        /* 16 */
	kw_close(other);

	lines = audit_lines(f, &n);
	assert_int_equal(n, 17);
	expect_change_line(lines, 0, "put", "olivia", "acme", "owner",
			   "org_keys", "org", "acme", "ok");
	expect_change_line(lines, 1, "put", "alice", NULL, "none",
			   "user_keys", "user", "alice", "ok");
	fp_org = expect_resolve_line(lines, 2, "alice", "acme", "anthropic",
				     "ok", "org_keys");
	fp_user = expect_resolve_line(lines, 3, "alice", NULL, "anthropic",
				      "ok", "user_keys");
	fp_env = expect_resolve_line(lines, 4, "bob", NULL, "anthropic", "ok",
				     "B");
	expect_resolve_line(lines, 5, "bob", NULL, "openai", "notfound", NULL);
	expect_change_line(lines, 6, "rotate", "olivia", "acme", "owner",
			   "org_keys", "org", "acme", "ok");
	fp_org2 = expect_resolve_line(lines, 7, "alice", "acme", "anthropic",
				      "ok", "org_keys");
	expect_change_line(lines, 8, "disable", "olivia", "acme", "owner",
			   "org_keys", "org", "acme", "ok");
	fp = expect_resolve_line(lines, 9, "alice", "acme", "anthropic", "ok",
				 "user_keys");
	assert_string_equal(fp, fp_user);
	expect_change_line(lines, 10, "enable", "olivia", "acme", "owner",
			   "org_keys", "org", "acme", "ok");
	expect_change_line(lines, 11, "delete", "alice", NULL, "none",
			   "user_keys", "user", "alice", "ok");
	expect_change_line(lines, 12, "rekey", "root", NULL, "sysadmin",
			   "org_keys", NULL, NULL, "ok");
	expect_change_line(lines, 13, "rotate", "alice", NULL, "none",
			   "user_keys", "user", "alice", "notfound");
	fp = expect_resolve_line(lines, 14, "bob", NULL, "anthropic", "ok",
				 "B");
	assert_string_equal(fp, fp_env);
	expect_resolve_line(lines, 15, "bob", NULL, "anthropic", "denied",
			    NULL);
	/* Stable across contexts, different for every key. */
	fp = expect_resolve_line(lines, 16, "carol", "acme", "anthropic", "ok",
				 "org_keys");
	assert_string_equal(fp, fp_org2);
	assert_string_not_equal(fp_org, fp_user);
	assert_string_not_equal(fp_org, fp_env);
	assert_string_not_equal(fp_org, fp_org2);
	assert_string_not_equal(fp_user, fp_env);
	assert_string_not_equal(fp_user, fp_org2);
	assert_string_not_equal(fp_env, fp_org2);

	/* No key in the trail, nor in the ledger, its WAL included. */
	expect_file_clean(f->audit);
	expect_file_clean(f->ledger);
	assert_int_equal(access(tu_fmt("%s-wal", f->ledger), F_OK), 0);
	expect_file_clean(tu_fmt("%s-wal", f->ledger));
	expect_file_clean(f->store);
	if (access(tu_fmt("%s-wal", f->store), F_OK) == 0)
		expect_file_clean(tu_fmt("%s-wal", f->store));
	json_decref(lines);
	kw_close(f->ctx);
	f->ctx = NULL;
	expect_file_clean(f->ledger);
	expect_file_clean(f->audit);
}

/* Fingerprints do not move when the program runs again. */
static void test_audit_fingerprint_stable(void **state)
{
	struct fixture *f = *state;
	const char *fp1, *fp2;
	json_t *lines;
	size_t n = 0;

	must_open(f, AUDIT_CONF(""));
	assert_int_equal(audit_get(f, f->ctx, "anthropic", "bob", NULL, K_ENV),
			 KW_OK);
	reopen(f);
	assert_int_equal(audit_get(f, f->ctx, "anthropic", "dave", NULL,
				   K_ENV),
			 KW_OK);
	lines = audit_lines(f, &n);
	assert_int_equal(n, 2);
	fp1 = expect_resolve_line(lines, 0, "bob", NULL, "anthropic", "ok",
				  "B");
	fp2 = expect_resolve_line(lines, 1, "dave", NULL, "anthropic", "ok",
				  "B");
	assert_string_equal(fp1, fp2);
	json_decref(lines);
}

/*
 * Make every write to the audit file fail: it is grown past what any
 * other file the library writes to reaches, and the file size limit is
 * set at its size, so that appending fails with EFBIG (SIGXFSZ ignored)
 * while the ledger's writes, lower in their files, still succeed.
 */
#define AUDIT_PAD (8 << 20)

struct fsize_limit {
	struct rlimit old;
	struct sigaction old_sig;
};

static void pad_audit(struct fixture *f)
{
	static const char line[] = "{\"pad\":\"\"}\n";
	char *buf = tu_keep(malloc(AUDIT_PAD));
	int fd;

	for (size_t i = 0; i < AUDIT_PAD; i += sizeof(line) - 1)
		memcpy(buf + i, line,
		       i + sizeof(line) - 1 <= AUDIT_PAD ? sizeof(line) - 1
							 : AUDIT_PAD - i);
	buf[AUDIT_PAD - 1] = '\n';
	fd = open(f->audit, O_WRONLY | O_APPEND | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, AUDIT_PAD), AUDIT_PAD);
	close(fd);
}

static void limit_file_size(struct fixture *f, struct fsize_limit *l)
{
	struct sigaction ign;
	struct stat st;
	struct rlimit r;

	assert_int_equal(stat(f->audit, &st), 0);
	assert_true(st.st_size >= AUDIT_PAD);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &l->old), 0);
	memset(&ign, 0, sizeof(ign));
	ign.sa_handler = SIG_IGN;
	assert_int_equal(sigaction(SIGXFSZ, &ign, &l->old_sig), 0);
	r.rlim_cur = (rlim_t)st.st_size;
	r.rlim_max = l->old.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &r), 0);
}

/* No assertion may run between limit_file_size() and this: cmocka's own
 * output could be a file past the limit. */
static int unlimit_file_size(const struct fsize_limit *l)
{
	int rc = setrlimit(RLIMIT_FSIZE, &l->old);

	if (sigaction(SIGXFSZ, &l->old_sig, NULL) != 0)
		rc = -1;
	return rc;
}

static void test_audit_write_fails(void **state)
{
	struct fixture *f = *state;
	kw_request req = KW_REQUEST_INIT;
	static char sentinel;
	struct fsize_limit l;
	kw_secret *s = (kw_secret *)&sentinel; /* must come back NULL */
	char err[1024];
	kw_status st;

	must_open(f, AUDIT_CONF(""));
	assert_int_equal(audit_get(f, f->ctx, "anthropic", "bob", NULL, K_ENV),
			 KW_OK);
	pad_audit(f);
	req.provider = "anthropic";
	req.user = "bob";

	limit_file_size(f, &l);
	st = kw_resolve(f->ctx, &req, &s);
	snprintf(err, sizeof(err), "%s", kw_last_error());
	assert_int_equal(unlimit_file_size(&l), 0);

	/* Not audited, so not handed out. */
	assert_int_equal(st, KW_ERR_IO);
	assert_null(s);
	assert_string_equal(err,
			    tu_fmt("keyway.audit: cannot write %s: File too "
				   "large",
				   f->audit));
	/* And its charge was given back: bob still has one. */
	expect_rows(f->ctx, 1, 0, 1);
	assert_int_equal(audit_get(f, f->ctx, "anthropic", "bob", NULL, K_ENV),
			 KW_OK);
	assert_int_equal(audit_get(f, f->ctx, "anthropic", "bob", NULL, NULL),
			 KW_ERR_DENIED);
	expect_rows(f->ctx, 2, 1, 1);
	expect_file_clean(f->audit);
}

static void test_audit_write_fails_allow(void **state)
{
	struct fixture *f = *state;
	kw_request req = KW_REQUEST_INIT;
	struct fsize_limit l;
	kw_secret *s = NULL;
	char value[128] = "";
	kw_status st;

	must_open(f, AUDIT_CONF(" on_failure = \"allow\";"));
	assert_int_equal(audit_get(f, f->ctx, "anthropic", "bob", NULL, K_ENV),
			 KW_OK);
	pad_audit(f);
	req.provider = "anthropic";
	req.user = "bob";

	limit_file_size(f, &l);
	st = kw_resolve(f->ctx, &req, &s);
	if (st == KW_OK)
		snprintf(value, sizeof(value), "%s", kw_secret_value(s));
	kw_secret_free(s);
	assert_int_equal(unlimit_file_size(&l), 0);

	assert_int_equal(st, KW_OK);
	assert_string_equal(value, K_ENV);
	/* Charged as any other. */
	expect_rows(f->ctx, 2, 0, 0);
	assert_int_equal(audit_get(f, f->ctx, "anthropic", "bob", NULL, NULL),
			 KW_ERR_DENIED);
	expect_file_clean(f->audit);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static const struct CMUnitTest fixed_tests[] = {
	T(test_exact_one_quota),
	T(test_exact_two_quotas),
	T(test_exact_user_provider),
	T(test_two_quotas_denial_charges_neither),
	T(test_minute_rollover),
	T(test_hour_window),
	T(test_day_window),
	T(test_month_window),
	T(test_seconds_period),
	T(test_per_org),
	T(test_global),
	T(test_per_user_across_providers),
	T(test_per_user_provider),
	T(test_per_provider),
	T(test_per_org_provider),
	T(test_missing_identity),
	T(test_refund_unused),
	T(test_report_rules),
	T(test_store_usage_counts),
	T(test_usage_filter_size),
	T(test_usage_filter_old_ledger),
	T(test_explain_charges_nothing),
	T(test_ledger_unavailable_deny),
	T(test_ledger_unavailable_allow),
	T(test_ledger_migrates_v1),
	T(test_ledger_new_schema),
	T(test_ledger_migration_race),
	T(test_ledger_not_ours),
	T(test_refund_row_changed),
	T(test_ledger_newer_schema),
	T(test_ledger_sweep),
	T(test_ledger_wal_bounded),
	T(test_ledger_wal_kept_short),
	T(test_ledger_killed_writers),
	T(test_ledger_unknown_setting),
	T(test_store_and_ledger_apart),
	T(test_sqlite_refuses_other_role),
	T(test_sqlite_system_key_owner),
	T(test_sqlite_ledger_own_checks),
	T(test_audit_trail),
	T(test_audit_fingerprint_stable),
	T(test_audit_write_fails),
	T(test_audit_write_fails_allow),
};

#define NFIXED (sizeof(fixed_tests) / sizeof(fixed_tests[0]))

int main(void)
{
	struct CMUnitTest tests[NFIXED + NCONF];

	memcpy(tests, fixed_tests, sizeof(fixed_tests));
	for (size_t i = 0; i < NCONF; i++) {
		const struct CMUnitTest t =
			cmocka_unit_test_prestate_setup_teardown(
				test_config_case, setup, teardown,
				(void *)&conf_cases[i]);

		tests[NFIXED + i] = t;
		tests[NFIXED + i].name = conf_cases[i].name;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
