/*
 * test_file_crash.c - the file backend's writes with real processes on a
 * real file: writers killed with SIGKILL at random moments of their
 * writes while another process resolves the whole time, and writers
 * adding keys all at once.
 *
 * Each writer is a child process that opens its own context and writes
 * through kw_key_put(), as a program using libkeyway would; what it has
 * been told (each put that returned KW_OK) it reports on a pipe before it
 * goes on, so that the test knows which writes were acknowledged before a
 * kill.  Children never call cmocka: they report, and the test asserts.
 *
 * Every key in this file contains "SECRET", and no message may.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
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
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <keyway/keyway.h>

#include "testutil.h"

#define MASTER_A "000102030405060708090a0b0c0d0e0f" \
		 "101112131415161718191a1b1c1d1e1f"

#define ENTRY(b) "{ backend = \"" b "\"; control = \"sufficient\"; }"

#define CONF \
	"keyway: { master_key = { source = \"env\"; }; };\n" \
	"backends: {\n" \
	"  org_keys: { module = \"file\"; path = \"keys.kwf\"; " \
	"scope = \"org\"; };\n" \
	"  user_keys: { module = \"file\"; path = \"keys.kwf\"; " \
	"scope = \"user\"; };\n" \
	"};\n" \
	"chains: {\n" \
	"  default = ( " ENTRY("org_keys") ", " ENTRY("user_keys") " );\n" \
	"};\n"

/* Writers killed at random moments, a few at a time, until at least
 * KILLED of them died of it (those whose kill came after they were done
 * exit by themselves), and at most WRITERS in all; the first CALIBRATE
 * are not killed, and say how long a writer's writes take. */
#define KILLED 200
#define CALIBRATE 8
#define WRITERS 600
#define PARALLEL 4

static const char *const test_vars[] = {
	"KEYWAY_MASTER_KEY", "API_KEY_ENCRYPTION_KEY", "KEYWAY_PASSPHRASE",
	NULL,
};

struct fixture {
	char *dir;
	char *conf;
	char *path; /* dir/keys.kwf */
	const char *tmp_prefix; /* "keys.kwf.tmp." */
	kw_ctx *ctx;
	pid_t resolver;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	tu_unsetenv(test_vars);
	setenv("KEYWAY_MASTER_KEY", MASTER_A, 1);
	f->dir = tu_tmpdir();
	f->conf = tu_write(f->dir, "keyway.conf", 0600, "%s", CONF);
	if (asprintf(&f->path, "%s/keys.kwf", f->dir) < 0)
		return -1;
	f->tmp_prefix = "keys.kwf.tmp.";
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	/* A failed assertion leaves the resolver running: stop it. */
	if (f->resolver > 0) {
		kill(f->resolver, SIGKILL);
		waitpid(f->resolver, NULL, 0);
	}
	kw_close(f->ctx);
	tu_rmrf(f->dir);
	free(f->conf);
	free(f->path);
	free(f);
	tu_release(0);
	tu_unsetenv(test_vars);
	return 0;
}

static void expect_ok(kw_status got)
{
	if (got != KW_OK)
		fail_msg("got %s (%d): %s", kw_status_str(got), (int)got,
			 kw_last_error());
}

static kw_status put(kw_ctx *ctx, const char *backend, const char *owner,
		     const char *provider, const char *value,
		     kw_put_mode mode)
{
	kw_key_ref r = KW_KEY_REF_INIT;

	r.backend = backend;
	r.owner = owner;
	r.provider = provider;
	return kw_key_put(ctx, tu_sysadmin(), &r, value, strlen(value), NULL,
			  mode);
}

static kw_status resolve(kw_ctx *ctx, const char *provider, const char *user,
			 const char *org, char *value, size_t len)
{
	value[0] = '\0';
	return tu_resolve(ctx, "default", provider, user, org, value, len,
			  NULL, 0);
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* In a child: die with the test, should it end first (an assertion, or
 * its alarm). */
static void child_of(pid_t parent)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		tu_exit(5);
}

/* The value writer i gives the keys it writes; 0 is the first one. */
static void crash_value(char *buf, size_t len, unsigned i)
{
	snprintf(buf, len, "sk-ant-SECRET-crash-%06u-%08" PRIx32, i,
		 (uint32_t)(i * 2654435761u));
}

/* The number of the writer whose value `value` is, or -1 when no writer
 * could have written it (a torn or foreign value). */
static int crash_writer_of(const char *value, unsigned last)
{
	char want[64];
	unsigned i;

	if (sscanf(value, "sk-ant-SECRET-crash-%6u-", &i) != 1 || i > last)
		return -1;
	crash_value(want, sizeof(want), i);
	return strcmp(value, want) == 0 ? (int)i : -1;
}

/* Temporary files left beside the file. */
static unsigned count_tmp(struct fixture *f, bool check_private)
{
	size_t plen = strlen(f->tmp_prefix);
	struct dirent *de;
	unsigned n = 0;
	DIR *d = opendir(f->dir);

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char *path, *text;
		struct stat sb;
		size_t len;

		if (strncmp(de->d_name, f->tmp_prefix, plen) != 0)
			continue;
		n++;
		if (!check_private)
			continue;
		path = tu_join(f->dir, de->d_name);
		assert_int_equal(lstat(path, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0600);
		/* What is in it is sealed: no key in the clear. */
		text = tu_slurp(path, &len);
		assert_non_null(text);
		assert_null(memmem(text, len, TU_MARK, strlen(TU_MARK)));
	}
	closedir(d);
	return n;
}

/* ---- the resolver: another process, resolving all along ---- */

struct shared {
	atomic_uint last;   /* the highest writer number started */
	atomic_bool stop;
	atomic_ulong resolves, opens, bad;
	char first_bad[512];
};

static void note_bad(struct shared *sh, const char *fmt, ...)
	KW_PRINTF(2, 3);

static void note_bad(struct shared *sh, const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&sh->bad, 1) != 0)
		return;
	va_start(ap, fmt);
	vsnprintf(sh->first_bad, sizeof(sh->first_bad), fmt, ap);
	va_end(ap);
}

/* Resolve acme's key until told to stop: each answer must be a value some
 * writer started so far wrote, whole.  Every 50 resolves, a new context
 * opens the file from scratch. */
static void resolver_loop(const char *conf, struct shared *sh)
{
	kw_ctx *ctx = NULL, *fresh = NULL;
	char value[128];
	kw_status rc;
	unsigned long n = 0;

	rc = kw_open(&ctx, conf);
	if (rc != KW_OK) {
		note_bad(sh, "the resolver cannot open its context: %s",
			 kw_last_error());
		tu_exit(1);
	}
	while (!atomic_load(&sh->stop)) {
		kw_ctx *c = ctx;

		if (++n % 50 == 0) {
			rc = kw_open(&fresh, conf);
			if (rc != KW_OK) {
				note_bad(sh, "a new context cannot open the "
					 "file: %s: %s", kw_status_str(rc),
					 kw_last_error());
				continue;
			}
			atomic_fetch_add(&sh->opens, 1);
			c = fresh;
		}
		rc = resolve(c, "anthropic", "bob", "acme", value,
			     sizeof(value));
		if (rc != KW_OK)
			note_bad(sh, "resolve %lu: %s: %s", n,
				 kw_status_str(rc), kw_last_error());
		/* Whoever wrote what was read had been started by now. */
		else if (crash_writer_of(value, atomic_load(&sh->last)) < 0)
			note_bad(sh, "resolve %lu: a value of %zu bytes that "
				 "no writer wrote", n, strlen(value));
		atomic_fetch_add(&sh->resolves, 1);
		if (c == fresh) {
			kw_close(fresh);
			fresh = NULL;
		}
	}
	kw_close(ctx);
	tu_exit(0);
}

/* ---- writers ---- */

/* What a writer says on its pipe: 'r' when its context is open, '1' when
 * its own key is stored, '2' when acme's key is rotated; 'E' and a
 * message when a put failed. */
static void writer(const char *conf, unsigned i, int fd)
{
	char owner[32], value[64], msg[600];
	kw_ctx *ctx = NULL;
	kw_status rc;
	int n;

	snprintf(owner, sizeof(owner), "w%03u", i);
	crash_value(value, sizeof(value), i);
	rc = kw_open(&ctx, conf);
	if (rc == KW_OK && write(fd, "r", 1) == 1)
		rc = put(ctx, "org_keys", owner, "anthropic", value,
			 KW_PUT_CREATE);
	if (rc == KW_OK && write(fd, "1", 1) == 1)
		rc = put(ctx, "org_keys", "acme", "anthropic", value,
			 KW_PUT_ROTATE);
	if (rc == KW_OK && write(fd, "2", 1) == 1)
		tu_exit(0);
	n = snprintf(msg, sizeof(msg), "E%s: %s", kw_status_str(rc),
		     kw_last_error());
	if (n > 0 && write(fd, msg, (size_t)n) < 0)
		tu_exit(3);
	tu_exit(2);
}

/* Where a writer was when its kill was sent, as /proc showed it just
 * before: holding the write lock or not, and in which system call. */
enum where {
	AT_NO_LOCK,  /* before the lock (or waiting for it), or after */
	AT_WRITE,    /* holding it, and in write() (the temporary file) */
	AT_FSYNC,    /* in fsync() (the temporary file, or the directory) */
	AT_RENAME,
	AT_SYSCALL,  /* in another system call */
	AT_RUNNING,  /* computing (reading, sealing) */
	AT_UNKNOWN,  /* /proc did not say */
	AT_COUNT
};

static const char *const where_names[AT_COUNT] = {
	"without the lock", "in write()", "in fsync()", "in rename()",
	"in another system call", "running", "unknown",
};

struct writers {
	unsigned char acked[WRITERS + 1]; /* '0', '1' or '2' */
	bool exited_ok[WRITERS + 1], was_killed[WRITERS + 1];
	/* Calibration: each put, and each writer's two, in microseconds. */
	double put_us[2 * CALIBRATE], two_us[CALIBRATE];
	unsigned nput, ntwo;
	/* Even writers are killed up to delay_us after their kw_open(),
	 * odd ones up to lock_us after they are seen holding the lock;
	 * 0: no one is killed. */
	double delay_us, lock_us;
	unsigned nkilled, last;
	unsigned where[AT_COUNT];
	bool see_locks;
	ino_t lock_ino;
	char err[700];
};

/* Whether pid holds the flock() on the inode ino, from /proc/locks. */
static bool holds_lock(pid_t pid, ino_t ino)
{
	FILE *fp = fopen("/proc/locks", "r");
	char line[256];
	bool held = false;

	if (fp == NULL)
		return false;
	while (!held && fgets(line, sizeof(line), fp) != NULL) {
		unsigned long i;
		int p;

		if (sscanf(line, "%*d: FLOCK %*s WRITE %d %*x:%*x:%lu", &p,
			   &i) == 2)
			held = p == pid && i == (unsigned long)ino;
	}
	fclose(fp);
	return held;
}

static enum where where_is(pid_t pid, ino_t lock_ino)
{
	char path[64], buf[64];
	long nr;
	FILE *fp;

	if (!holds_lock(pid, lock_ino))
		return AT_NO_LOCK;
	snprintf(path, sizeof(path), "/proc/%ld/syscall", (long)pid);
	fp = fopen(path, "r");
	if (fp == NULL)
		return AT_UNKNOWN;
	if (fgets(buf, sizeof(buf), fp) == NULL)
		buf[0] = '\0';
	fclose(fp);
	if (strncmp(buf, "running", 7) == 0)
		return AT_RUNNING;
	if (sscanf(buf, "%ld", &nr) != 1 || nr < 0)
		return AT_UNKNOWN;
	if (nr == SYS_write)
		return AT_WRITE;
	if (nr == SYS_fsync)
		return AT_FSYNC;
#ifdef SYS_rename
	if (nr == SYS_rename)
		return AT_RENAME;
#endif
#ifdef SYS_renameat2
	if (nr == SYS_renameat2)
		return AT_RENAME;
#endif
	if (nr == SYS_renameat)
		return AT_RENAME;
	return AT_SYSCALL;
}

struct slot {
	pid_t pid;
	int fd;
	unsigned i;
	double ready, acked; /* when it said 'r', and its last put */
	double kill_at;      /* 0: not (yet) to be killed */
	bool by_lock;        /* to be killed once seen holding the lock */
	bool killed;
	enum where where;    /* when killed */
};

static double uniform(double max)
{
	return max * (double)random() / RAND_MAX;
}

static void start_writer(struct fixture *f, struct shared *sh,
			 struct slot *s, unsigned i)
{
	pid_t parent = getpid();
	int p[2];

	assert_int_equal(pipe(p), 0);
	atomic_store(&sh->last, i);
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid == 0) {
		child_of(parent);
		close(p[0]);
		writer(f->conf, i, p[1]);
	}
	close(p[1]);
	s->fd = p[0];
	s->i = i;
	s->ready = s->acked = s->kill_at = 0;
	s->by_lock = s->killed = false;
}

/* A slot's pipe has something: the writer's progress, or its end. */
static void writer_said(struct slot *s, struct writers *w)
{
	char buf[700];
	ssize_t n = read(s->fd, buf, sizeof(buf) - 1);
	double now = now_us();
	int status;

	if (n < 0 && errno == EINTR)
		return;
	if (n < 0)
		fail_msg("reading writer %u's pipe: %s", s->i, strerror(errno));
	for (ssize_t k = 0; k < n; k++) {
		if (buf[k] == 'r') {
			s->ready = s->acked = now;
			if (w->delay_us == 0)
				continue;
			if (s->i % 2 == 0 || !w->see_locks)
				s->kill_at = now + uniform(w->delay_us);
			else
				s->by_lock = true;
		} else if (buf[k] == '1' || buf[k] == '2') {
			w->acked[s->i] = (unsigned char)buf[k];
			/* (Two acks read at once time nothing.) */
			if (w->delay_us == 0 && w->nput < 2 * CALIBRATE &&
			    now > s->acked)
				w->put_us[w->nput++] = now - s->acked;
			if (w->delay_us == 0 && buf[k] == '2' &&
			    w->ntwo < CALIBRATE)
				w->two_us[w->ntwo++] = now - s->ready;
			s->acked = now;
		} else if (buf[k] == 'E') {
			buf[n] = '\0';
			if (w->err[0] == '\0')
				snprintf(w->err, sizeof(w->err),
					 "writer %u: %s", s->i, buf + k + 1);
			break;
		}
	}
	if (n > 0)
		return;
	/* End of the pipe: the writer is gone. */
	assert_int_equal(waitpid(s->pid, &status, 0), s->pid);
	close(s->fd);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		w->exited_ok[s->i] = true;
	} else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL &&
		   s->killed) {
		w->was_killed[s->i] = true;
		w->nkilled++;
		w->where[s->where]++;
	} else if (w->err[0] == '\0') {
		snprintf(w->err, sizeof(w->err), "writer %u ended with "
			 "status 0x%x", s->i, (unsigned)status);
	}
	s->pid = 0;
}

/*
 * Run writers first..last, PARALLEL at a time, killed as w says; none is
 * started once KILLED were killed.
 */
static void run_writers(struct fixture *f, struct shared *sh,
			struct writers *w, unsigned first, unsigned last)
{
	struct slot slots[PARALLEL] = { 0 };
	unsigned next = first, active = 0;

	for (;;) {
		struct pollfd pfd[PARALLEL];
		int map[PARALLEL], nfd = 0;
		double now, wait_us = 1e6;
		struct timespec ts;

		for (int k = 0; k < PARALLEL && next <= last &&
				w->nkilled < KILLED; k++) {
			if (slots[k].pid == 0) {
				w->last = next;
				start_writer(f, sh, &slots[k], next++);
				active++;
			}
		}
		if (active == 0)
			break;
		now = now_us();
		for (int k = 0; k < PARALLEL; k++) {
			struct slot *s = &slots[k];

			if (s->pid == 0)
				continue;
			if (s->by_lock && s->kill_at == 0) {
				/* Look again in 50 us. */
				if (holds_lock(s->pid, w->lock_ino))
					s->kill_at = now + uniform(w->lock_us);
				else if (wait_us > 50)
					wait_us = 50;
			}
			if (s->kill_at > 0 && !s->killed) {
				double left = s->kill_at - now;

				if (left <= 0) {
					s->where = where_is(s->pid,
							    w->lock_ino);
					kill(s->pid, SIGKILL);
					s->killed = true;
				} else if (left < wait_us) {
					wait_us = left;
				}
			}
			pfd[nfd].fd = s->fd;
			pfd[nfd].events = POLLIN;
			map[nfd++] = k;
		}
		ts.tv_sec = (time_t)(wait_us / 1e6);
		ts.tv_nsec = (long)((wait_us - (double)ts.tv_sec * 1e6) * 1e3);
		if (ppoll(pfd, (nfds_t)nfd, &ts, NULL) < 0 && errno != EINTR)
			fail_msg("ppoll: %s", strerror(errno));
		for (int j = 0; j < nfd; j++) {
			if (pfd[j].revents == 0)
				continue;
			writer_said(&slots[map[j]], w);
			if (slots[map[j]].pid == 0)
				active--;
		}
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * Writers each store a key of their own (w001, w002, ...) and rotate
 * acme's key, both to their own value, and are killed at random moments:
 * before the lock, while they write the temporary file, between fsync()
 * and rename(), after it.  All along, another process resolves acme's
 * key.  Every answer is a value some writer wrote, whole; every new
 * context opens the file; every put acknowledged before a kill is in the
 * file afterwards; a temporary file is left only by a killed writer.
 */
static void test_killed_writers(void **state)
{
	struct fixture *f = *state;
	struct shared *sh;
	struct writers *w;
	unsigned landed_unacked = 0, tmp_left, nkilled = 0, nok = 0;
	unsigned killed_at[3] = { 0, 0, 0 };
	double t0;
	char value[128];
	int last_writer, status;
	pid_t parent = getpid();
	struct stat sb;
	unsigned seed;

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(sh != MAP_FAILED);
	w = tu_keep(calloc(1, sizeof(*w)));
	memset(w->acked, '0', sizeof(w->acked));
	seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	srandom(seed);
	/* Without /proc/locks, no kill is aimed at the lock. */
	w->see_locks = access("/proc/locks", R_OK) == 0;

	expect_ok(kw_open(&f->ctx, f->conf));
	crash_value(value, sizeof(value), 0);
	expect_ok(put(f->ctx, "org_keys", "acme", "anthropic", value,
		      KW_PUT_CREATE));
	kw_close(f->ctx);
	f->ctx = NULL;
	assert_int_equal(stat(tu_fmt("%s.lock", f->path), &sb), 0);
	w->lock_ino = sb.st_ino;

	alarm(300);
	t0 = now_us();
	f->resolver = fork();
	assert_true(f->resolver >= 0);
	if (f->resolver == 0) {
		child_of(parent);
		resolver_loop(f->conf, sh);
	}

	/* How long puts take here, under this load. */
	run_writers(f, sh, w, 1, CALIBRATE);
	assert_string_equal(w->err, "");
	assert_int_equal(w->ntwo, CALIBRATE);
	qsort(w->two_us, CALIBRATE, sizeof(w->two_us[0]), cmp_double);
	assert_true(w->nput > 0);
	qsort(w->put_us, w->nput, sizeof(w->put_us[0]), cmp_double);
	/* Kills spread over 1.5 times the median of two puts, waits for
	 * the lock included: most land inside a put, some after the writer
	 * is done.  Those aimed inside the lock, over 1.5 times the fastest
	 * put, which is about what a put does with the lock held. */
	w->delay_us = 1.5 * w->two_us[CALIBRATE / 2];
	w->lock_us = 1.5 * w->put_us[0];
	print_message("# two puts take %.0f us (median of %d), one %.0f us "
		      "(fastest of %u): kills drawn from 0 to %.0f us after "
		      "kw_open(), or to %.0f us after the lock is taken%s; "
		      "random seed %u\n",
		      w->two_us[CALIBRATE / 2], CALIBRATE, w->put_us[0],
		      w->nput, w->delay_us, w->lock_us,
		      w->see_locks ? "" : " (not here: no /proc/locks)", seed);

	run_writers(f, sh, w, CALIBRATE + 1, WRITERS);
	atomic_store(&sh->stop, true);
	assert_int_equal(waitpid(f->resolver, &status, 0), f->resolver);
	f->resolver = 0;
	print_message("# %u writers in %.1f s; %lu resolves, %lu of them "
		      "through a new context\n",
		      w->last, (now_us() - t0) / 1e6,
		      atomic_load(&sh->resolves), atomic_load(&sh->opens));
	if (atomic_load(&sh->bad) != 0)
		fail_msg("%lu resolves went wrong; the first: %s",
			 atomic_load(&sh->bad), sh->first_bad);
	tu_assert_no_secret(sh->first_bad);
	assert_int_equal(status, 0);
	assert_true(atomic_load(&sh->resolves) > 0);
	if (w->err[0] != '\0') {
		tu_assert_no_secret(w->err);
		fail_msg("%s", w->err);
	}

	/* The file opens, private still, and holds every acknowledged
	 * put. */
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	expect_ok(kw_open(&f->ctx, f->conf));
	for (unsigned i = 1; i <= w->last; i++) {
		char want[64], org[32];
		kw_status rc;

		crash_value(want, sizeof(want), i);
		snprintf(org, sizeof(org), "w%03u", i);
		rc = resolve(f->ctx, "anthropic", "bob", org, value,
			     sizeof(value));
		if (w->acked[i] >= '1' || w->exited_ok[i]) {
			if (rc != KW_OK)
				fail_msg("writer %u's key was acknowledged "
					 "but is not in the file: %s: %s", i,
					 kw_status_str(rc), kw_last_error());
			if (strcmp(value, want) != 0)
				fail_msg("writer %u's key has another value",
					 i);
		} else if (rc == KW_OK) {
			/* Written, then killed before it could say so. */
			assert_string_equal(value, want);
			landed_unacked++;
		} else {
			assert_int_equal(rc, KW_ERR_NOTFOUND);
		}
		if (w->was_killed[i]) {
			nkilled++;
			killed_at[w->acked[i] - '0']++;
		}
		nok += w->exited_ok[i];
		assert_true(w->was_killed[i] != w->exited_ok[i]);
	}
	/* acme's key is one a writer wrote, and once a rotate was
	 * acknowledged, not the first one. */
	expect_ok(resolve(f->ctx, "anthropic", "bob", "acme", value,
			  sizeof(value)));
	last_writer = crash_writer_of(value, w->last);
	assert_true(last_writer >= 0);
	for (unsigned i = 1; i <= w->last; i++)
		if (w->acked[i] == '2')
			assert_true(last_writer > 0);

	tmp_left = count_tmp(f, true);
	print_message("# %u writers killed: %u before their first put "
		      "returned, %u between their two puts, %u after both; "
		      "%u exited by themselves\n",
		      nkilled, killed_at[0], killed_at[1], killed_at[2], nok);
	print_message("# %u keys written by a writer killed before it could "
		      "say so; %u temporary files left by killed writers\n",
		      landed_unacked, tmp_left);
	print_message("# where the kills found the writers:");
	for (int k = 0; k < AT_COUNT; k++)
		print_message(" %s %u%s", where_names[k], w->where[k],
			      k + 1 < AT_COUNT ? ";" : "\n");
	assert_int_equal(nkilled, w->nkilled);
	assert_true(nkilled >= KILLED);
	assert_true(tmp_left <= nkilled);
	/* Kills did land inside the writes, not only around them. */
	assert_true(killed_at[0] > 0 && killed_at[1] > 0);
	if (w->see_locks)
		assert_true(nkilled - w->where[AT_NO_LOCK] >= KILLED / 10);
	alarm(0);
	munmap(sh, sizeof(*sh));
}

/* ---- adding keys at once ---- */

#define ADDERS 4
#define ADDS 25

static void add_value(char *buf, size_t len, unsigned c, unsigned k)
{
	snprintf(buf, len, "%sSECRET-add-%u-%02u-%08" PRIx32,
		 c < 2 ? "sk-ant-" : "sk-", c, k,
		 (uint32_t)((c * 100 + k) * 2654435761u));
}

/* Adder c's key k: org keys (c even) or user keys (c odd), for
 * anthropic (c < 2) or openai. */
static void add_key(unsigned c, unsigned k, const char **backend,
		    const char **provider, char *owner, size_t len)
{
	*backend = c % 2 == 0 ? "org_keys" : "user_keys";
	*provider = c < 2 ? "anthropic" : "openai";
	snprintf(owner, len, "a%u-owner-%02u", c, k);
}

static void adder(const char *conf, unsigned c, int go, int fd)
{
	char owner[32], value[64], msg[700], b;
	const char *backend, *provider;
	kw_ctx *ctx = NULL;
	kw_status rc;
	unsigned k = 0;
	int n;

	rc = kw_open(&ctx, conf);
	/* All start at once: when the test closes the pipe. */
	if (read(go, &b, 1) != 0)
		tu_exit(4);
	for (; rc == KW_OK && k < ADDS; k++) {
		add_key(c, k, &backend, &provider, owner, sizeof(owner));
		add_value(value, sizeof(value), c, k);
		rc = put(ctx, backend, owner, provider, value, KW_PUT_CREATE);
	}
	if (rc == KW_OK)
		tu_exit(0);
	n = snprintf(msg, sizeof(msg), "adder %u, key %u: %s: %s", c, k,
		     kw_status_str(rc), kw_last_error());
	if (n > 0 && write(fd, msg, (size_t)n) < 0)
		tu_exit(3);
	tu_exit(2);
}

static kw_status count_key(void *arg, const kw_key_info *k)
{
	(void)k;
	++*(unsigned *)arg;
	return KW_OK;
}

/* Four processes add 25 keys each, all at once, to one file: every key is
 * there at the end, with its value. */
static void test_concurrent_adds(void **state)
{
	struct fixture *f = *state;
	pid_t pids[ADDERS], parent = getpid();
	int go[2], report[2];
	char msg[700] = "";
	unsigned nkeys = 0;
	double t0;
	ssize_t n;

	expect_ok(kw_open(&f->ctx, f->conf));
	kw_close(f->ctx);
	f->ctx = NULL;
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(report), 0);
	alarm(120);
	for (unsigned c = 0; c < ADDERS; c++) {
		pids[c] = fork();
		assert_true(pids[c] >= 0);
		if (pids[c] == 0) {
			child_of(parent);
			close(go[1]);
			close(report[0]);
			adder(f->conf, c, go[0], report[1]);
		}
	}
	close(go[0]);
	close(report[1]);
	/* Let them open their contexts, then let them go together. */
	usleep(100000);
	t0 = now_us();
	close(go[1]);
	for (unsigned c = 0; c < ADDERS; c++) {
		int status;

		assert_int_equal(waitpid(pids[c], &status, 0), pids[c]);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			n = read(report[0], msg, sizeof(msg) - 1);
			msg[n > 0 ? n : 0] = '\0';
			tu_assert_no_secret(msg);
			fail_msg("adder %u ended with status 0x%x: %s", c,
				 (unsigned)status, msg);
		}
	}
	close(report[0]);
	print_message("# %d processes added %d keys in %.2f s\n", ADDERS,
		      ADDERS * ADDS, (now_us() - t0) / 1e6);

	expect_ok(kw_open(&f->ctx, f->conf));
	for (unsigned c = 0; c < ADDERS; c++) {
		for (unsigned k = 0; k < ADDS; k++) {
			const char *backend, *provider;
			char owner[32], want[64], value[128];
			kw_status rc;

			add_key(c, k, &backend, &provider, owner,
				sizeof(owner));
			add_value(want, sizeof(want), c, k);
			if (c % 2 == 0)
				rc = resolve(f->ctx, provider, "nobody",
					     owner, value, sizeof(value));
			else
				rc = resolve(f->ctx, provider, owner,
					     "no-org", value, sizeof(value));
			if (rc != KW_OK)
				fail_msg("%s's key for %s is missing: %s: %s",
					 owner, provider, kw_status_str(rc),
					 kw_last_error());
			if (strcmp(value, want) != 0)
				fail_msg("%s's key for %s has another value",
					 owner, provider);
		}
	}
	expect_ok(kw_key_list(f->ctx, tu_sysadmin(), NULL, NULL, count_key,
			      &nkeys));
	assert_int_equal(nkeys, ADDERS * ADDS);
	assert_int_equal(count_tmp(f, false), 0);
	alarm(0);
}

#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_killed_writers),
		T(test_concurrent_adds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
