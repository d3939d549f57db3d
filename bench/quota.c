/*
 * quota.c - quota contention: PROCS processes resolving through an entry
 * with a per-user quota, all counting in one SQLite ledger.
 *
 *     quota -c CONFIG -p PROCS -u USERS -m PER_USER -l LIMIT [-L LEDGER]
 *           [-T THREADS] [-K]
 *
 * The default chain of CONFIG must hand out $ANTHROPIC_API_KEY (which this
 * program sets to a fake key) through an entry whose quota admits LIMIT
 * requests per user and window.  Every user is asked for PER_USER times in
 * all, and the processes go through the users in the same order at the same
 * time, so that they compete for the same counters: exactly
 * USERS * min(PER_USER, LIMIT) requests must be admitted.
 *
 * Each process opens its own context after fork() and resolves from
 * THREADS threads (default 1) sharing it; the clock starts when
 * all of them are open and stops when the last one has sent its counts.
 * With -L, the ledger file is then read directly: the sum of its counters
 * and its admitted usage rows must equal the admissions too.
 *
 * With -K every process stops halfway, sends its counts and kills itself
 * (SIGKILL: no kw_close(), nothing flushed): every admission it was told of
 * must still be in the ledger, which is what "exact" then checks.  Prints
 * one JSON line.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include <keyway/keyway.h>

#include "benchutil.h"

static const char *prog = "quota";

struct result {
	uint64_t admitted;
	uint64_t denied;
	uint64_t errors;
	char why[400];
};

struct plan {
	const char *config;
	unsigned procs;
	unsigned threads;
	bool crash;
	uint64_t users;
	uint64_t per_user;
	uint64_t limit;
};

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One thread's part of its process's share. */
struct part {
	const struct plan *pl;
	kw_ctx *ctx;
	const char *names;
	unsigned index;
	pthread_t thread;
	struct result res;
};

/* The process's k-th request is for user k mod USERS; thread t takes the
 * k that are t mod THREADS. */
static void *resolve_part(void *arg)
{
	struct part *pt = arg;
	const struct plan *pl = pt->pl;
	uint64_t n = pl->users * pl->per_user / pl->procs;

	if (pl->crash)
		n /= 2;
	for (uint64_t k = pt->index; k < n && pt->res.errors == 0;
	     k += pl->threads) {
		kw_request req = KW_REQUEST_INIT;
		kw_secret *s = NULL;
		kw_status st;

		req.provider = BU_PROVIDER;
		req.user = pt->names + (k % pl->users) * BU_NAME_SIZE;
		st = kw_resolve(pt->ctx, &req, &s);
		if (st == KW_OK && kw_secret_len(s) == BU_KEY_LEN) {
			pt->res.admitted++;
		} else if (st == KW_ERR_DENIED) {
			pt->res.denied++;
		} else {
			snprintf(pt->res.why, sizeof(pt->res.why), "%s: %s",
				 kw_status_str(st),
				 st == KW_OK ? "wrong key length"
					     : kw_last_error());
			pt->res.errors++;
		}
		kw_secret_free(s);
	}
	return NULL;
}

static void child(const struct plan *pl, int ready, int go, int out)
{
	struct part *parts;
	struct result res;
	kw_ctx *ctx = NULL;
	char byte = 0, *names;

	memset(&res, 0, sizeof(res));
	names = bu_name_table(pl->users);
	parts = calloc(pl->threads, sizeof(*parts));
	if (names == NULL || parts == NULL) {
		snprintf(res.why, sizeof(res.why), "out of memory");
		res.errors = 1;
	} else if (kw_open(&ctx, pl->config) != KW_OK) {
		snprintf(res.why, sizeof(res.why), "%s", kw_last_error());
		res.errors = 1;
	}
	(void)write_all(ready, &byte, 1);
	close(ready);
	/* The parent closes its end to start everyone at once. */
	while (read(go, &byte, 1) < 0 && errno == EINTR)
		;
	close(go);

	for (unsigned t = 0; res.errors == 0 && t < pl->threads; t++) {
		parts[t].pl = pl;
		parts[t].ctx = ctx;
		parts[t].names = names;
		parts[t].index = t;
		if (pthread_create(&parts[t].thread, NULL, resolve_part,
				   &parts[t]) != 0) {
			parts[t].ctx = NULL; /* not started: not joined */
			snprintf(res.why, sizeof(res.why),
				 "cannot start a thread");
			res.errors = 1;
		}
	}
	for (unsigned t = 0; parts != NULL && t < pl->threads; t++) {
		if (parts[t].ctx == NULL)
			continue;
		pthread_join(parts[t].thread, NULL);
		res.admitted += parts[t].res.admitted;
		res.denied += parts[t].res.denied;
		res.errors += parts[t].res.errors;
		if (parts[t].res.errors != 0 && res.why[0] == '\0')
			memcpy(res.why, parts[t].res.why, sizeof(res.why));
	}
	(void)write_all(out, &res, sizeof(res));
	close(out);
	if (pl->crash)
		kill(getpid(), SIGKILL);
	kw_close(ctx);
	free(parts);
	free(names);
	_exit(0);
}

/* What the ledger file says: the sum of its counters, its admitted rows. */
static int ledger_counts(const char *path, int64_t *count, int64_t *rows)
{
	static const char *const sql[2] = {
		"SELECT coalesce(sum(count), 0) FROM counters",
		"SELECT count(*) FROM usage WHERE outcome = 'admitted'",
	};
	int64_t *out[2] = { count, rows };
	sqlite3 *db = NULL;
	int rc;

	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
	for (int i = 0; i < 2 && rc == SQLITE_OK; i++) {
		sqlite3_stmt *s = NULL;

		rc = sqlite3_prepare_v2(db, sql[i], -1, &s, NULL);
		if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
			*out[i] = sqlite3_column_int64(s, 0);
		else if (rc == SQLITE_OK)
			rc = SQLITE_ERROR;
		sqlite3_finalize(s);
	}
	if (rc != SQLITE_OK)
		fprintf(stderr, "%s: cannot read ledger %s: %s\n", prog, path,
			db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

static void usage(void)
{
	fprintf(stderr, "usage: %s -c CONFIG -p PROCS -u USERS -m PER_USER "
		"-l LIMIT [-L LEDGER] [-T THREADS] [-K]\n", prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct plan pl = { .threads = 1 };
	const char *ledger = NULL;
	struct result total, r;
	int ready[2], go[2], out[2], c;
	uint64_t t0, t1, expected;
	int64_t day0, day1, lcount = -1, lrows = -1;
	char key[BU_KEY_LEN + 1], byte;
	bool exact;

	while ((c = getopt(argc, argv, "c:p:u:m:l:L:T:K")) != -1) {
		switch (c) {
		case 'K':
			pl.crash = true;
			break;
		case 'T':
			pl.threads = (unsigned)bu_count(prog, "-T", optarg);
			break;
		case 'c':
			pl.config = optarg;
			break;
		case 'p':
			pl.procs = (unsigned)bu_count(prog, "-p", optarg);
			break;
		case 'u':
			pl.users = bu_count(prog, "-u", optarg);
			break;
		case 'm':
			pl.per_user = bu_count(prog, "-m", optarg);
			break;
		case 'l':
			pl.limit = bu_count(prog, "-l", optarg);
			break;
		case 'L':
			ledger = optarg;
			break;
		default:
			usage();
		}
	}
	if (pl.config == NULL || pl.procs == 0 || pl.threads == 0 ||
	    pl.users == 0 ||
	    pl.per_user == 0 || pl.per_user % pl.procs != 0 || optind != argc)
		usage();

	/* The server's key the entry hands out: a fake one. */
	bu_key_value(0, key);
	key[BU_KEY_LEN] = '\0';
	setenv("ANTHROPIC_API_KEY", key, 1);
	explicit_bzero(key, sizeof(key));

	if (pipe(ready) != 0 || pipe(go) != 0 || pipe(out) != 0) {
		perror(prog);
		return 1;
	}
	fflush(NULL);
	for (unsigned p = 0; p < pl.procs; p++) {
		pid_t pid = fork();

		if (pid < 0) {
			perror(prog);
			return 1;
		}
		if (pid == 0) {
			close(ready[0]);
			close(go[1]);
			close(out[0]);
			child(&pl, ready[1], go[0], out[1]);
		}
	}
	close(ready[1]);
	close(go[0]);
	close(out[1]);
	for (unsigned p = 0; p < pl.procs; p++)
		if (read_all(ready[0], &byte, 1) != 0) {
			fprintf(stderr, "%s: a process died while opening\n",
				prog);
			return 1;
		}
	day0 = (int64_t)time(NULL) / 86400;
	t0 = bu_now_ns();
	close(go[1]);

	memset(&total, 0, sizeof(total));
	for (unsigned p = 0; p < pl.procs; p++) {
		if (read_all(out[0], &r, sizeof(r)) != 0) {
			fprintf(stderr, "%s: a process died\n", prog);
			return 1;
		}
		total.admitted += r.admitted;
		total.denied += r.denied;
		total.errors += r.errors;
		if (r.errors != 0 && total.why[0] == '\0')
			memcpy(total.why, r.why, sizeof(total.why));
	}
	t1 = bu_now_ns();
	day1 = (int64_t)time(NULL) / 86400;
	while (wait(NULL) > 0)
		;
	if (total.errors != 0) {
		fprintf(stderr, "%s: %" PRIu64 " failed resolves; first: %s\n",
			prog, total.errors, total.why);
		return 1;
	}
	if (ledger != NULL && ledger_counts(ledger, &lcount, &lrows) != 0)
		return 1;

	/* After a crash halfway nobody is over the limit yet: what the
	 * processes were told is what must be there. */
	expected = pl.crash ? total.admitted
			    : pl.users * (pl.per_user < pl.limit ? pl.per_user
								  : pl.limit);
	exact = total.admitted == expected &&
		(ledger == NULL ||
		 (lcount == (int64_t)expected && lrows == (int64_t)expected));
	printf("{\"bench\": \"quota\", \"procs\": %u, \"threads\": %u"
	       ", \"crash\": %s, \"users\": %" PRIu64
	       ", \"per_user\": %" PRIu64 ", \"limit\": %" PRIu64
	       ", \"requests\": %" PRIu64 ", \"admitted\": %" PRIu64
	       ", \"denied\": %" PRIu64 ", \"expected\": %" PRIu64
	       ", \"ledger_count\": %" PRId64 ", \"ledger_admitted_rows\": %"
	       PRId64 ", \"exact\": %s, \"window_changed\": %s"
	       ", \"seconds\": %.6f, \"admitted_per_s\": %.1f"
	       ", \"requests_per_s\": %.1f}\n",
	       pl.procs, pl.threads, pl.crash ? "true" : "false", pl.users,
	       pl.per_user, pl.limit,
	       total.admitted + total.denied, total.admitted, total.denied,
	       expected, lcount, lrows, exact ? "true" : "false",
	       day0 != day1 ? "true" : "false", (double)(t1 - t0) / 1e9,
	       (double)total.admitted * 1e9 / (double)(t1 - t0),
	       (double)(total.admitted + total.denied) * 1e9 /
		       (double)(t1 - t0));
	return 0;
}
