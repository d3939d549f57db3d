/*
 * pool.c - the neutral core of the sqlite module, under both the key store
 * and the quota ledger: connections and their pools, the registry of the
 * pools of this process by file (and the refusal of one inherited across
 * fork()), and WAL handling.  files.c holds the rest of the shared part.
 * Neither role calls the other; both call these two.
 *
 * Lookups run in parallel on a small pool of connections (WAL mode, so
 * readers never wait for a writer), each used by one thread at a time with
 * its statements prepared once.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include <keyway/module.h>

#include "pool.h"

#define SQ_MMAP_SIZE "1073741824"
#define SQ_WAL_CHECKPOINT 1000  /* pages: SQLite's wal_autocheckpoint */
#define SQ_WAL_KEEP 100         /* pages the WAL may keep past a close */

#ifdef SQLITE_OPEN_EXRESCODE
#define SQ_OPEN_EXRESCODE SQLITE_OPEN_EXRESCODE
#else
#define SQ_OPEN_EXRESCODE 0
#endif

kw_status sq_status(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
		return KW_OK;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	case SQLITE_IOERR:
	case SQLITE_CANTOPEN:
	case SQLITE_PROTOCOL:
		return KW_ERR_UNAVAIL;
	case SQLITE_NOMEM:
		return KW_ERR_NOMEM;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return KW_ERR_PERM;
	case SQLITE_FULL:
		return KW_ERR_IO;
	case SQLITE_CONSTRAINT:
		return KW_ERR_EXISTS;
	default: /* CORRUPT, NOTADB, SCHEMA, MISMATCH, ... */
		return KW_ERR_BACKEND;
	}
}

kw_status sq_fail(const struct sq_state *st, kw_reply *r, const char *what,
		  int rc)
{
	st->host->reply_detail(r, "cannot %s %s: %s", what, st->path,
			       sqlite3_errstr(rc));
	return sq_status(rc);
}

kw_status sq_fail_own(const struct sq_state *st, kw_reply *r,
		      const char *what, int rc)
{
	kw_status ret = sq_fail(st, r, what, rc);

	return ret == KW_ERR_EXISTS ? KW_ERR_BACKEND : ret;
}

void sq_done(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

int sq_int(sqlite3 *db, const char *sql, int64_t *out)
{
	sqlite3_stmt *s = NULL;
	int rc;

	*out = 0;
	rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		goto out;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(s, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_OK;
	}
out:
	sqlite3_finalize(s);
	return rc;
}

/* ---- connections ---- */

void sq_conn_close(struct sq_conn *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < SQ_STMTS_MAX; i++)
		sqlite3_finalize(c->stmt[i]);
	sqlite3_close_v2(c->db);
	free(c);
}

/*
 * Wait for another connection's lock for up to busy_timeout_ms.  SQLite's
 * own busy handler sleeps a millisecond or more between tries, while a
 * ledger's commit takes tens of microseconds: a process waiting for
 * another's would spend most of its time asleep.  Start at 50 us and
 * double up to 2 ms.
 */
static int sq_busy(void *arg, int tries)
{
	const struct sq_pool *st = arg;
	const int64_t first = 50, last = 2000; /* microseconds */
	int64_t pause = first, slept = 0;
	struct timespec ts;

	/* What the earlier tries slept follows from their number. */
	for (int i = 0; i < tries; i++) {
		slept += pause;
		if (pause < last)
			pause = pause * 2 < last ? pause * 2 : last;
		if (slept >= (int64_t)st->busy_ms * 1000)
			return 0;
	}
	if (slept + pause > (int64_t)st->busy_ms * 1000)
		pause = (int64_t)st->busy_ms * 1000 - slept;
	if (pause <= 0)
		return 0;
	ts.tv_sec = (time_t)(pause / 1000000);
	ts.tv_nsec = (long)(pause % 1000000) * 1000;
	nanosleep(&ts, NULL);
	return 1;
}

/*
 * Commits on a key store: checkpoint as SQLite's wal_autocheckpoint
 * would (which this hook replaces), and note the WAL's length.
 */
static int sq_wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct sq_pool *p = arg;

	atomic_store_explicit(&p->wal_frames, (unsigned)frames,
			      memory_order_relaxed);
	if (frames >= SQ_WAL_CHECKPOINT)
		(void)sqlite3_wal_checkpoint_v2(db, name,
						SQLITE_CHECKPOINT_PASSIVE,
						NULL, NULL);
	return SQLITE_OK;
}

int sq_stmt(const struct sq_state *st, struct sq_conn *c, int i,
	    sqlite3_stmt **out)
{
	int rc = SQLITE_OK;

	if (c->stmt[i] == NULL)
		rc = sqlite3_prepare_v3(c->db, st->kind->sql[i], -1,
					SQLITE_PREPARE_PERSISTENT, &c->stmt[i],
					NULL);
	*out = c->stmt[i];
	return rc;
}

kw_status sq_prepare_first(const struct sq_state *st, struct sq_conn *c,
			   int n)
{
	sqlite3_stmt *s;
	int rc = SQLITE_OK;

	for (int i = 0; rc == SQLITE_OK && i < n; i++)
		rc = sq_stmt(st, c, i, &s);
	if (rc == SQLITE_OK)
		return KW_OK;
	st->host->error(st->inst, "path", "cannot read %s %s: %s",
			st->kind->noun, st->path, sqlite3_errmsg(c->db));
	return sq_status(rc) == KW_ERR_EXISTS ? KW_ERR_BACKEND : sq_status(rc);
}

/*
 * What a key store's connections need: erasing a key relies on
 * secure_delete, so a SQLite that cannot is refused.  A ledger holds
 * counts, not secrets, and is spared the cost.
 */
static int sq_conn_secrets(const struct sq_state *st, sqlite3 *db)
{
	int64_t on;
	int rc;

	rc = sq_int(db, "PRAGMA secure_delete = ON", &on);
	if (rc == SQLITE_OK && on != 1)
		rc = SQLITE_MISUSE;
	/* A lookup reads its pages without a read() each: the page
	 * cache holds a small part of a large store.  Address space,
	 * not memory: the kernel's page cache backs it. */
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "PRAGMA mmap_size = " SQ_MMAP_SIZE,
				  NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		sqlite3_wal_hook(db, sq_wal_hook, st->pool);
	return rc;
}

/* Everything a new connection is told before its first statement. */
static int sq_conn_setup(const struct sq_state *st, sqlite3 *db)
{
	int rc;

	sqlite3_extended_result_codes(db, 1);
	/* The schema is ours alone: no writable_schema tricks, no functions
	 * run from it, no double-quoted strings taken for identifiers. */
	sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
	sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
	sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DML, 0, (int *)NULL);
	sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DDL, 0, (int *)NULL);
	rc = sqlite3_busy_handler(db, sq_busy, (void *)st->pool);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_exec(db,
			  "PRAGMA synchronous = NORMAL;"
			  "PRAGMA foreign_keys = ON;"
			  "PRAGMA trusted_schema = OFF;"
			  "PRAGMA temp_store = MEMORY;",
			  NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return rc;
	if (st->kind->secrets)
		rc = sq_conn_secrets(st, db);
	/*
	 * The last connection to close would checkpoint the WAL and delete
	 * it, and the next opener create it again: syncs for every
	 * short-lived process (a `keyway get` writes its usage count, and
	 * its charge).  The WAL stays instead, and the last close empties
	 * it only once it is long (sq_pool_put(), sq_ledger_close()): the
	 * first opener after it reads all of it.
	 */
	sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1,
			  (int *)NULL);
	return rc;
}

/*
 * The file exists already: SQLite never creates it, so it never gets
 * SQLite's default mode.  A key store's connections prepare their
 * statements as they first need them (a `keyway get` needs one of them).
 * A check's connections are read-only and create nothing (sq_check_how()).
 */
int sq_conn_open(const struct sq_state *st, bool prepare,
		 struct sq_conn **out)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
		    SQLITE_OPEN_NOFOLLOW | SQ_OPEN_EXRESCODE;
	const char *name = st->path;
	char *uri = NULL;
	struct sq_conn *c;
	sqlite3_stmt *s;
	int rc;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return SQLITE_NOMEM;
	if (sq_checking(st)) {
		uri = sq_check_uri(st);
		if (uri == NULL) {
			rc = sq_check_how(st) == SQ_RO_NO_SHM ? SQLITE_CANTOPEN
							       : SQLITE_NOMEM;
			goto out;
		}
		name = uri;
		flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI |
			SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW |
			SQ_OPEN_EXRESCODE;
	}
	rc = sqlite3_open_v2(name, &c->db, flags, NULL);
	if (rc == SQLITE_OK)
		rc = sq_conn_setup(st, c->db);
	for (int i = 0; prepare && rc == SQLITE_OK && i < st->kind->nsql;
	     i++)
		rc = sq_stmt(st, c, i, &s);
out:
	free(uri);
	if (rc != SQLITE_OK)
		sq_conn_close(c);
	else
		*out = c;
	return rc;
}

/*
 * Open connections while there are fewer than SQ_POOL_MAX, else wait for
 * one to come back.  When a new connection cannot be opened, wait for one
 * of the others; fail only when there are none.
 */
kw_status sq_acquire(struct sq_state *st, struct sq_conn **out, kw_reply *r)
{
	struct sq_pool *p = st->pool;
	struct sq_conn *c;
	bool failed = false;
	int rc = SQLITE_OK;
	kw_status ret;

	*out = NULL;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->idle == NULL &&
		       (p->nconns >= SQ_POOL_MAX ||
			(failed && p->nconns > 0)))
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->idle != NULL) {
			c = p->idle;
			p->idle = c->next;
			c->next = NULL;
			pthread_mutex_unlock(&p->lock);
			*out = c;
			return KW_OK;
		}
		if (failed)
			break;
		p->nconns++;
		pthread_mutex_unlock(&p->lock);
		rc = sq_conn_open(st, st->kind->prepare_all, &c);
		if (rc == SQLITE_OK) {
			*out = c;
			return KW_OK;
		}
		pthread_mutex_lock(&p->lock);
		p->nconns--;
		pthread_cond_broadcast(&p->cond);
		failed = true;
	}
	pthread_mutex_unlock(&p->lock);
	ret = sq_fail(st, r, "open", rc);
	/* Never KW_OK without a connection, whatever code the open gave. */
	return ret == KW_OK ? KW_ERR_BACKEND : ret;
}

static void sq_pool_release(struct sq_pool *p, struct sq_conn *c)
{
	if (c == NULL)
		return;
	if (!sqlite3_get_autocommit(c->db)) {
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
		if (!sqlite3_get_autocommit(c->db)) {
			sq_conn_close(c);
			pthread_mutex_lock(&p->lock);
			p->nconns--;
			pthread_cond_broadcast(&p->cond);
			pthread_mutex_unlock(&p->lock);
			return;
		}
	}
	pthread_mutex_lock(&p->lock);
	c->next = p->idle;
	p->idle = c;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

void sq_release(struct sq_state *st, struct sq_conn *c)
{
	sq_pool_release(st->pool, c);
}

/* When the pool is full, a new one all the same. */
int sq_take(struct sq_state *st, struct sq_conn **out)
{
	struct sq_pool *p = st->pool;
	int rc;

	pthread_mutex_lock(&p->lock);
	if ((*out = p->idle) != NULL) {
		p->idle = (*out)->next;
		(*out)->next = NULL;
		pthread_mutex_unlock(&p->lock);
		return SQLITE_OK;
	}
	p->nconns++;
	pthread_mutex_unlock(&p->lock);
	rc = sq_conn_open(st, false, out);
	if (rc != SQLITE_OK) {
		pthread_mutex_lock(&p->lock);
		p->nconns--;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
	}
	return rc;
}

/* SQLite's own words: "no such column: ..." where sq_fail() would say
 * "SQL logic error". */
kw_status sq_fail_conn(const struct sq_state *st, struct sq_conn *c,
		       kw_reply *r, int rc)
{
	st->host->reply_detail(r, "cannot read %s: %s", st->path,
			       sqlite3_errmsg(c->db));
	return sq_status(rc) == KW_ERR_EXISTS ? KW_ERR_BACKEND : sq_status(rc);
}

/* Storing, listing, checking, rekeying. */
kw_status sq_acquire_all(struct sq_state *st, struct sq_conn **out,
			 kw_reply *r)
{
	sqlite3_stmt *s;
	kw_status ret;
	int rc = SQLITE_OK;

	ret = sq_acquire(st, out, r);
	for (int i = 0; ret == KW_OK && rc == SQLITE_OK && i < st->kind->nsql;
	     i++)
		rc = sq_stmt(st, *out, i, &s);
	if (ret == KW_OK && rc != SQLITE_OK) {
		ret = sq_fail_conn(st, *out, r, rc);
		sq_release(st, *out);
		*out = NULL;
	}
	return ret;
}

/* ---- pools ---- */

/* The pools of key stores, shared by every instance naming the file. */
static pthread_mutex_t sq_pools_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sq_pool *sq_pools;

kw_status sq_pool_new(struct sq_state *st)
{
	struct sq_pool *p = calloc(1, sizeof(*p));

	if (p == NULL) {
		st->host->error(st->inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	if (pthread_mutex_init(&p->lock, NULL) != 0) {
		free(p);
		st->host->error(st->inst, NULL, "cannot create a mutex");
		return KW_ERR_NOMEM;
	}
	if (pthread_cond_init(&p->cond, NULL) != 0) {
		pthread_mutex_destroy(&p->lock);
		free(p);
		st->host->error(st->inst, NULL,
				"cannot create a condition variable");
		return KW_ERR_NOMEM;
	}
	p->refs = 1;
	p->busy_ms = st->busy_ms;
	atomic_init(&p->scopes, 0);
	atomic_init(&p->wal_frames, 0);
	atomic_init(&p->changed, false);
	st->pool = p;
	return KW_OK;
}

void sq_wal_empty(sqlite3 *db)
{
	/* A reader makes the busy handler run: none, so that it does not
	 * wait, and the checkpoint goes on as a passive one. */
	sqlite3_busy_handler(db, NULL, NULL);
	(void)sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE,
					NULL, NULL);
}

/*
 * Is the WAL of st's file long enough that the next process to open the
 * file, which reads all of it, should find it emptied?  What this process
 * committed last says so, and so does the file's size: frames past a
 * restart of the WAL stay in the file until it is truncated.
 */
static bool sq_wal_long(const struct sq_state *st, const struct sq_pool *p)
{
	char wal[4096];
	struct stat sb;

	if (atomic_load(&p->wal_frames) >= SQ_WAL_KEEP)
		return true;
	if ((size_t)snprintf(wal, sizeof(wal), "%s-wal", st->path) >=
	    sizeof(wal))
		return false;
	return stat(wal, &sb) == 0 &&
	       sb.st_size > (off_t)SQ_WAL_KEEP * (4096 + 24);
}

void sq_pool_put(const struct sq_state *st)
{
	struct sq_pool *p = st->pool;
	struct sq_conn *c;

	if (p == NULL)
		return;
	pthread_mutex_lock(&sq_pools_lock);
	if (--p->refs > 0) {
		pthread_mutex_unlock(&sq_pools_lock);
		return;
	}
	if (p->shared) {
		struct sq_pool **pp = &sq_pools;

		while (*pp != NULL && *pp != p)
			pp = &(*pp)->next;
		if (*pp != NULL)
			*pp = p->next;
	}
	pthread_mutex_unlock(&sq_pools_lock);
	/*
	 * Leave a short WAL to the next opener, who reads it all, and none
	 * after a change to the keys or the schema, so that the file alone
	 * holds them (for a copy taken with cp, when nothing has it open),
	 * and no frame keeps the sealed bytes of a deleted or re-sealed key.
	 * Without waiting for readers: they would make it short later.
	 */
	if (st->kind->secrets && p->idle != NULL &&
	    (atomic_load(&p->changed) || sq_wal_long(st, p)))
		sq_wal_empty(p->idle->db);
	while ((c = p->idle) != NULL) {
		p->idle = c->next;
		sq_conn_close(c);
	}
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* ---- the registry of pools ---- */

/* This process's shared pool for the file sb describes; call with
 * sq_pools_lock held.  A pool inherited across fork() is the parent's:
 * its connections must not be used in the child. */
static struct sq_pool *sq_pool_find(const struct stat *sb, int busy_ms,
				    pid_t pid)
{
	struct sq_pool *p;

	for (p = sq_pools; p != NULL; p = p->next)
		if (p->dev == sb->st_dev && p->ino == sb->st_ino &&
		    p->busy_ms == busy_ms && p->pid == pid && !p->alone)
			break;
	return p;
}

/*
 * Refuse, in a child, a file that a pool inherited from its parent has
 * open.  SQLite keeps per process what it knows of a file: its mutexes,
 * the POSIX locks it holds on it, the mapping of its -shm.  A child's copy
 * of that may be taken by a thread that stayed in the parent (the child's
 * first read of the file then hangs), and a new connection in the child
 * shares the parent's record of locks that the child does not hold, and
 * would close them for the parent: "carrying an open database connection
 * across a fork" in SQLite's "How To Corrupt An SQLite Database File".
 * A file the parent never opened, or closed before fork(), opens as
 * usual.  Every pool, the ledger's too, is in the registry from its open
 * to its close.
 */
kw_status sq_refuse_inherited(const struct sq_state *st)
{
	const pid_t pid = getpid();
	const struct sq_pool *p;
	struct stat sb;
	pid_t opener = 0;

	if (stat(st->path, &sb) != 0)
		return KW_OK; /* no file, nobody has it open */
	pthread_mutex_lock(&sq_pools_lock);
	for (p = sq_pools; p != NULL; p = p->next)
		if (p->dev == sb.st_dev && p->ino == sb.st_ino &&
		    p->pid != pid) {
			opener = p->pid;
			break;
		}
	pthread_mutex_unlock(&sq_pools_lock);
	if (p == NULL)
		return KW_OK;
	st->host->error(st->inst, "path",
			"%s was opened by process %ld before fork(): a child "
			"cannot open it again; open keyway in each process "
			"after fork() (gunicorn: a post_fork hook), or "
			"kw_close() before forking",
			st->path, (long)opener);
	return KW_ERR_INVAL;
}

void sq_pool_register(struct sq_state *st)
{
	struct sq_pool *p = st->pool;
	struct stat sb;

	if (stat(st->path, &sb) != 0)
		return;
	p->dev = sb.st_dev;
	p->ino = sb.st_ino;
	p->pid = getpid();
	p->alone = true;
	pthread_mutex_lock(&sq_pools_lock);
	p->shared = true;
	p->next = sq_pools;
	sq_pools = p;
	pthread_mutex_unlock(&sq_pools_lock);
}

struct sq_pool *sq_pool_join(struct sq_state *st, const struct stat *sb)
{
	struct sq_pool *p;

	pthread_mutex_lock(&sq_pools_lock);
	p = sq_pool_find(sb, st->busy_ms, getpid());
	if (p != NULL) {
		p->refs++;
		st->pool = p;
	}
	pthread_mutex_unlock(&sq_pools_lock);
	return p;
}

/*
 * The registry is not held while a file is opened, which may wait for
 * another process's lock or derive a key from a passphrase: two threads
 * opening one file at once each get a pool, and the first to finish
 * shares its own.
 */
void sq_pool_share(struct sq_state *st, const struct stat *sb)
{
	const pid_t pid = getpid();
	struct sq_pool *p = st->pool;

	p->dev = sb->st_dev;
	p->ino = sb->st_ino;
	p->pid = pid;
	pthread_mutex_lock(&sq_pools_lock);
	if (sq_pool_find(sb, st->busy_ms, pid) == NULL) {
		p->shared = true;
		p->next = sq_pools;
		sq_pools = p;
	}
	pthread_mutex_unlock(&sq_pools_lock);
}

/* ---- WAL mode ---- */

/*
 * Leaving rollback mode takes the exclusive lock.  Processes opening a new
 * file together all try at once, and SQLite answers BUSY at once (without
 * its busy handler) to one that would deadlock waiting: retry here, for as
 * long as the busy timeout allows.
 */
kw_status sq_wal(const struct sq_state *st, sqlite3 *db)
{
	struct timespec pause = { 0, 1000 * 1000 };
	sqlite3_stmt *s = NULL;
	const char *mode = NULL;
	kw_status ret = KW_OK;
	int64_t waited = 0;
	int rc;

	rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
	while (rc == SQLITE_OK) {
		rc = sqlite3_step(s);
		if ((rc & 0xff) != SQLITE_BUSY || waited >= st->busy_ms)
			break;
		sqlite3_reset(s);
		nanosleep(&pause, NULL);
		waited += pause.tv_nsec / 1000000;
		if (pause.tv_nsec < 64 * 1000 * 1000)
			pause.tv_nsec *= 2;
		rc = SQLITE_OK;
	}
	if (rc == SQLITE_ROW)
		mode = (const char *)sqlite3_column_text(s, 0);
	if (rc != SQLITE_ROW || mode == NULL || strcmp(mode, "wal") != 0) {
		st->host->error(st->inst, "path",
				"cannot put %s %s in WAL mode: %s",
				st->kind->noun,
				st->path,
				rc == SQLITE_ROW ? "the file system does not "
						   "support it"
						 : sqlite3_errmsg(db));
		ret = rc == SQLITE_ROW ? KW_ERR_BACKEND : sq_status(rc);
	}
	sqlite3_finalize(s);
	return ret;
}
