/*
 * ledger.c - the sqlite module as keyway.ledger: quota counters and the
 * usage log, in a SQLite file of their own.
 *
 * A charge is one atomic step in a write transaction: each slot's counter
 * goes up unless it is at its limit (one upsert per slot), and the usage
 * row is written with it, so the counts and the log never disagree.
 * SQLite's write lock makes the step atomic for every thread and process
 * that uses the file: N callers admit exactly `limit` per window.  Threads
 * of one process share their commits (group commit): one of them writes
 * every charge waiting at that moment, each in a savepoint of its own, in
 * one transaction.  With WAL and synchronous = NORMAL a commit costs no
 * fsync; a power cut may lose the last charges, never tear one.
 *
 * A counter lives for one window; expired ones are swept out now and then
 * by whichever charge comes along.  The writer's commits also checkpoint
 * the WAL, in a way that keeps it short when several processes write.
 *
 * This file opens, checks and closes a ledger and reads its log;
 * ledger_write.c writes charges and refunds.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <sqlite3.h>

#include <keyway/module.h>

#include "ledger.h"
#include "pool.h"

/* Checkpoint once the WAL holds this many frames (of 1 KiB pages)... */
#define LD_CKPT_FRAMES 4000
/* ...and, while it stays longer, again each time it grows this much. */
#define LD_CKPT_AGAIN 1000
/* How often, 100 us apart, a restarting checkpoint tries a lock. */
#define LD_RESTART_TRIES 10
/* Frames of WAL the last close leaves to the next opener, who reads them
 * all; a longer WAL is emptied (sq_ledger_close()). */
#define LD_KEEP_FRAMES 100

/*
 * Migration N brings a ledger from schema version N - 1 to N, in one
 * transaction, when it is opened.  Only ever append.
 */
static const char *const ld_migrations[] = {
	/* 1: the first schema */
	"CREATE TABLE counters ("
	"  counter TEXT NOT NULL,"
	"  window INTEGER NOT NULL,"
	"  count INTEGER NOT NULL,"
	"  expires INTEGER NOT NULL,"
	"  PRIMARY KEY (counter, window)"
	") WITHOUT ROWID;"
	/* The sweep's: a counter is inserted once per window, so the index
	 * costs nothing on the count's updates. */
	"CREATE INDEX counters_expires ON counters (expires);"
	"CREATE TABLE usage ("
	"  id INTEGER PRIMARY KEY,"
	"  time INTEGER NOT NULL,"
	"  chain TEXT NOT NULL,"
	"  backend TEXT NOT NULL,"
	"  provider TEXT NOT NULL,"
	"  user TEXT,"
	"  org TEXT,"
	"  outcome TEXT NOT NULL"
	");"
	"CREATE INDEX usage_time ON usage (time);"
	"CREATE INDEX usage_user_time ON usage (user, time);",
	/*
	 * 2: a charge writes one page fewer.  The usage row and its
	 * usage_time entry are appends to pages the last charge wrote too,
	 * but a (user, time) entry went to a page of its own for every user:
	 * with the counter, two random pages per commit.  A query for one
	 * user reads its period through usage_time instead.
	 */
	"DROP INDEX IF EXISTS usage_user_time;",
};

#define LD_SCHEMA_VERSION \
	((int)(sizeof(ld_migrations) / sizeof(ld_migrations[0])))

static const char *const ld_sql[LD_NSTMTS] = {
	/* The write lock up front: the counts read under it stay true
	 * until the commit. */
	[LD_BEGIN] = "BEGIN IMMEDIATE",
	[LD_BEGIN_READ] = "BEGIN",
	[LD_COMMIT] = "COMMIT",
	[LD_ROLLBACK] = "ROLLBACK",
	/* One charge of a batch: undone alone when a later slot is full. */
	[LD_SAVEPOINT] = "SAVEPOINT charge",
	[LD_RELEASE] = "RELEASE charge",
	[LD_ROLLBACK_TO] = "ROLLBACK TO charge",
	/* Admission and increment in one statement: no change means the
	 * counter is at its limit. */
	[LD_CHARGE] = "INSERT INTO counters (counter, window, count, expires)"
		      " VALUES (?1, ?2, 1, ?3)"
		      " ON CONFLICT (counter, window) DO UPDATE"
		      " SET count = count + 1 WHERE count < ?4",
	[LD_COUNT] = "SELECT count FROM counters"
		     " WHERE counter = ?1 AND window = ?2",
	[LD_LOG] = "INSERT INTO usage (time, chain, backend, provider, user,"
		   " org, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[LD_UNCOUNT] = "UPDATE counters SET count = count - 1"
		       " WHERE counter = ?1 AND window = ?2 AND count > 0",
	/* Only an admitted row: a second refund of the same charge must not
	 * count down again. */
	[LD_REFUNDED] = "UPDATE usage SET outcome = 'refunded'"
			" WHERE id = ?1 AND outcome = 'admitted'",
	[LD_OUTCOME] = "SELECT outcome FROM usage WHERE id = ?1",
	[LD_SWEEP] = "DELETE FROM counters WHERE (counter, window) IN"
		     " (SELECT counter, window FROM counters"
		     "  WHERE expires < ?1 LIMIT ?2)",
};

_Static_assert(LD_NSTMTS <= SQ_STMTS_MAX, "raise SQ_STMTS_MAX");

/*
 * Look at what the file holds before writing to it: a key store named as
 * the ledger must not be given a second schema.
 */
static const struct sq_kind sq_ledger_kind = {
	.app_id = SQ_LEDGER_APP_ID,
	.other_app_id = SQ_APP_ID,
	.schema = LD_SCHEMA_VERSION,
	.noun = "ledger",
	.other = "is a keyway key store, not a quota ledger: give "
		 "keyway.ledger a file of its own",
	.holds = "the usage log",
	.init_hint = "",
	.migrations = ld_migrations,
	.sql = ld_sql,
	.nsql = LD_NSTMTS,
	.secrets = false,
	.prepare_all = true,
};

/* ---- opening ---- */

/*
 * Create or update the schema.  Another process may be doing the same:
 * what the file holds is read again under the write lock.
 */
static kw_status ld_migrate(struct sq_ledger *st, sqlite3 *db)
{
	int64_t version = 0, app_id = 0;
	bool initialising;
	int rc;

	rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sq_int(db, "PRAGMA user_version", &version);
	if (rc == SQLITE_OK)
		rc = sq_int(db, "PRAGMA application_id", &app_id);
	if (rc != SQLITE_OK)
		goto fail;
	if (app_id != 0 && app_id != SQ_LEDGER_APP_ID) {
		st->sq.host->error(st->sq.inst, "path",
				   "%s is a SQLite database but not a keyway "
				   "ledger",
				   st->sq.path);
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return KW_ERR_BACKEND;
	}
	if (version > LD_SCHEMA_VERSION)
		return sq_schema_newer(&st->sq, db, version);
	rc = sq_schema_steps(&st->sq, db, version, NULL, NULL, &initialising);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		return KW_OK;
fail:
	return sq_schema_failed(&st->sq, db,
				version == 0 ? "initialise" : "update", rc);
}

/* The write queue's lock, and the attributes of the conditions requests
 * wait on: their timeout must not move with the wall clock. */
static bool ld_sync_init(struct sq_ledger *st)
{
	if (pthread_condattr_init(&st->wait_attr) != 0)
		return false;
	if (pthread_condattr_setclock(&st->wait_attr, CLOCK_MONOTONIC) != 0 ||
	    pthread_mutex_init(&st->write_lock, NULL) != 0) {
		pthread_condattr_destroy(&st->wait_attr);
		return false;
	}
	st->write_ready = true;
	return true;
}

/* ---- checkpoints ---- */

/*
 * SQLite's own checkpoints (wal_autocheckpoint) fail a ledger that several
 * processes write.  The WAL is started over only by a writer that finds
 * all of it copied into the database, but a checkpoint takes a few
 * milliseconds, and the other processes commit meanwhile: a writer hardly
 * ever finds it so.  The WAL then grows without end, and since every commit
 * that leaves it over the threshold runs another checkpoint, each commit
 * pays one, at a cost that grows with the WAL.
 *
 * So the writer's commits run the checkpoints themselves.  The first one
 * over the threshold copies what it can without stopping anyone (PASSIVE),
 * which is all of it when this process is the only writer: the next commit
 * starts the WAL over.  If the WAL keeps growing, each further
 * LD_CKPT_AGAIN frames one RESTART checkpoint takes the write lock, copies
 * the little that is left, and starts the WAL over.  It runs on a
 * connection of its own whose busy handler waits a millisecond at most:
 * for the write lock, and then, holding it, for the readers to move on.
 * It must not wait for a long reader (`keyway usage` reading a month): it
 * would hold every charge of every process as long.  When it cannot
 * finish, a later commit tries again.
 *
 * The state is the argument of the writer's WAL hook, which owns it, and
 * belongs to the leader like the writer.
 */
struct ld_ckpt {
	const struct sq_state *st;
	struct sq_conn *restarter; /* opened when first needed */
	int next;                  /* frames for the next try; 0: none yet */
	int frames;                /* the WAL's length at the last commit */
};

static int ld_restart_busy(void *arg, int tries)
{
	const struct timespec pause = { 0, 100 * 1000 };

	(void)arg;
	if (tries >= LD_RESTART_TRIES)
		return 0;
	nanosleep(&pause, NULL);
	return 1;
}

static void ld_restart(struct ld_ckpt *k)
{
	int rc;

	if (k->restarter == NULL) {
		rc = sq_conn_open(k->st, false, &k->restarter);
		if (rc == SQLITE_OK)
			rc = sqlite3_busy_handler(k->restarter->db,
						  ld_restart_busy, NULL);
		if (rc != SQLITE_OK) {
			k->st->host->log(k->st->inst, KW_LOG_DEBUG,
					 "%s: cannot open a connection to "
					 "checkpoint: %s",
					 k->st->path, sqlite3_errstr(rc));
			sq_conn_close(k->restarter);
			k->restarter = NULL;
			return;
		}
	}
	(void)sqlite3_wal_checkpoint_v2(k->restarter->db, NULL,
					SQLITE_CHECKPOINT_RESTART, NULL, NULL);
}

/*
 * After each commit of the writer, with the WAL's length.  The commit has
 * happened: whatever a checkpoint answers, the charges stand, and so the
 * hook answers SQLITE_OK.
 */
static int ld_wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct ld_ckpt *k = arg;

	k->frames = frames;
	if (frames < LD_CKPT_FRAMES) {
		k->next = 0;
		return SQLITE_OK;
	}
	if (frames < k->next)
		return SQLITE_OK;
	if (k->next == 0)
		(void)sqlite3_wal_checkpoint_v2(db, name,
						SQLITE_CHECKPOINT_PASSIVE,
						NULL, NULL);
	else
		ld_restart(k);
	k->next = frames + LD_CKPT_AGAIN;
	return SQLITE_OK;
}

/*
 * The hook's state, restarter and all, goes with the writer.  A long WAL
 * is emptied first, without waiting for readers: the connections keep it
 * when they close (sq_conn_open()), and the next process to open the
 * ledger would read it whole.
 */
static void ld_ckpt_free(struct sq_conn *writer)
{
	struct ld_ckpt *k;

	if (writer == NULL)
		return;
	k = sqlite3_wal_hook(writer->db, NULL, NULL);
	if (k == NULL)
		return;
	sq_conn_close(k->restarter);
	if (k->frames >= LD_KEEP_FRAMES)
		sq_wal_empty(writer->db);
	free(k);
}

void sq_ledger_close(struct sq_ledger *st)
{
	if (st == NULL)
		return;
	ld_ckpt_free(st->writer);
	sq_conn_close(st->writer);
	st->writer = NULL;
	if (st->write_ready) {
		pthread_condattr_destroy(&st->wait_attr);
		pthread_mutex_destroy(&st->write_lock);
		st->write_ready = false;
	}
	sq_pool_put(&st->sq);
	free(st);
}

/*
 * The writer's own settings.  Its cache holds the pages charges touch:
 * worth more than the default 2 MiB, and only for this one connection.
 * Its commits run the checkpoints (after 4 MiB of WAL, as SQLite's default
 * does with 4 KiB pages), in place of SQLite's own.
 */
static kw_status ld_writer_setup(struct sq_ledger *st, struct sq_conn *c)
{
	struct ld_ckpt *k;

	(void)sqlite3_exec(c->db, "PRAGMA cache_size = -8192", NULL, NULL,
			   NULL);
	k = calloc(1, sizeof(*k));
	if (k == NULL) {
		st->sq.host->error(st->sq.inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	k->st = &st->sq;
	sqlite3_wal_hook(c->db, ld_wal_hook, k);
	return KW_OK;
}

/*
 * Open the file on its first connection, which becomes the writer; the
 * pool, for reading, fills when it is needed.
 */
static kw_status ld_open_writer(struct sq_ledger *st)
{
	struct sq_conn *c = NULL;
	int64_t version = 0;
	kw_status ret;

	ret = sq_open_checked(&st->sq, &c, &version);
	if (ret != KW_OK)
		goto out;

	/*
	 * Checked: from here on the file may be written.  A charge changes a
	 * few rows on as many pages, and a commit writes each page whole to
	 * the WAL: small pages write a quarter of the bytes and make a charge
	 * faster.  Only a file with no page yet takes it (a new file: one
	 * with objects but no version was refused).
	 */
	if (version == 0)
		(void)sqlite3_exec(c->db, "PRAGMA page_size = 1024", NULL,
				   NULL, NULL);
	/* A check writes nothing: sq_open_checked() refused any version but
	 * the current one. */
	ret = sq_checking(&st->sq) ? KW_OK : sq_wal(&st->sq, c->db);
	if (ret != KW_OK)
		goto out;
	if (version < LD_SCHEMA_VERSION) {
		ret = ld_migrate(st, c->db);
		if (ret != KW_OK)
			goto out;
	}
	ret = sq_prepare_first(&st->sq, c, LD_NSTMTS);
	if (ret == KW_OK)
		ret = ld_writer_setup(st, c);
	if (ret != KW_OK)
		goto out;
	st->writer = c;
	c = NULL;
out:
	sq_conn_close(c);
	return ret;
}

/* The ledger has no scope and no master key: it holds no secret. */
kw_status sq_ledger_open(const kw_host *host, kw_instance *inst,
			 struct sq_ledger **out)
{
	struct sq_ledger *st;
	kw_status rc;

	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		host->error(inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	rc = sq_open_common(&st->sq, host, inst, KW_INSTANCE_LEDGER,
			    &sq_ledger_kind);
	if (rc == KW_OK)
		rc = sq_pool_new(&st->sq);
	if (rc == KW_OK)
		rc = sq_prepare_file(&st->sq);
	if (rc != KW_OK)
		goto out;
	st->queue_tail = &st->queue;
	if (!ld_sync_init(st)) {
		host->error(inst, NULL, "cannot create a mutex");
		rc = KW_ERR_NOMEM;
		goto out;
	}
	rc = ld_open_writer(st);
	if (rc != KW_OK)
		goto out;
	sq_pool_register(&st->sq);
	*out = st;
	st = NULL;
out:
	sq_ledger_close(st);
	return rc;
}

kw_status sq_ledger_check(struct sq_ledger *st, kw_reply *r)
{
	struct sq_conn *c = NULL;
	int64_t ncounters = 0, nrows = 0;
	kw_status ret;
	int rc;

	ret = sq_health(&st->sq, &c, r);
	if (ret != KW_OK)
		return ret;
	rc = sq_int(c->db, "SELECT count(*) FROM counters", &ncounters);
	if (rc == SQLITE_OK)
		rc = sq_int(c->db, "SELECT count(*) FROM usage", &nrows);
	if (rc != SQLITE_OK)
		ret = sq_fail(&st->sq, r, "read", rc);
	else
		st->sq.host->reply_detail(r, "%s: %" PRId64 " counter%s, %"
					  PRId64 " usage row%s",
					  st->sq.path, ncounters,
					  ncounters == 1 ? "" : "s", nrows,
					  nrows == 1 ? "" : "s");
	sq_release(&st->sq, c);
	return ret;
}

/* ---- reading the log ---- */

/* The query for the rows f asks for, prepared on c and bound (*s, also
 * after a failure). */
static int ld_usage_query(struct sq_conn *c, const kw_usage_filter *f,
			  sqlite3_stmt **s)
{
	char sql[320];
	int rc;

	/* Only the conditions asked for: a period is then a range of
	 * usage_time, whatever else is asked, and usage_time gives the
	 * order (time, id) as it is. */
	snprintf(sql, sizeof(sql),
		 "SELECT time, chain, backend, provider, user, org, outcome"
		 " FROM usage WHERE 1%s%s%s%s%s ORDER BY time, id",
		 f->since != 0 ? " AND time >= ?1" : "",
		 f->until != 0 ? " AND time < ?2" : "",
		 f->user != NULL ? " AND user = ?3" : "",
		 f->org != NULL ? " AND org = ?4" : "",
		 f->backend != NULL ? " AND backend = ?5" : "");
	rc = sqlite3_prepare_v2(c->db, sql, -1, s, NULL);
	if (rc == SQLITE_OK && f->since != 0)
		rc = sqlite3_bind_int64(*s, 1, f->since);
	if (rc == SQLITE_OK && f->until != 0)
		rc = sqlite3_bind_int64(*s, 2, f->until);
	if (rc == SQLITE_OK && f->user != NULL)
		rc = sqlite3_bind_text(*s, 3, f->user, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && f->org != NULL)
		rc = sqlite3_bind_text(*s, 4, f->org, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && f->backend != NULL)
		rc = sqlite3_bind_text(*s, 5, f->backend, -1, SQLITE_STATIC);
	return rc;
}

kw_status sq_ledger_usage(struct sq_ledger *st, const kw_usage_filter *f,
			  kw_usage_fn *fn, void *arg, kw_reply *r)
{
	static const kw_usage_filter all;
	struct sq_conn *c = NULL;
	sqlite3_stmt *s = NULL;
	kw_usage_row row;
	kw_status ret;
	int rc;

	if (f == NULL)
		f = &all;
	ret = sq_acquire(&st->sq, &c, r);
	if (ret != KW_OK)
		return ret;
	rc = ld_usage_query(c, f, &s);
	while (rc == SQLITE_OK || rc == SQLITE_ROW) {
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW)
			break;
		row.time = sqlite3_column_int64(s, 0);
		row.chain = (const char *)sqlite3_column_text(s, 1);
		row.backend = (const char *)sqlite3_column_text(s, 2);
		row.provider = (const char *)sqlite3_column_text(s, 3);
		row.user = (const char *)sqlite3_column_text(s, 4);
		row.org = (const char *)sqlite3_column_text(s, 5);
		row.outcome = (const char *)sqlite3_column_text(s, 6);
		if (row.chain == NULL || row.backend == NULL ||
		    row.provider == NULL || row.outcome == NULL) {
			rc = sqlite3_errcode(c->db) == SQLITE_NOMEM
				     ? SQLITE_NOMEM
				     : SQLITE_CORRUPT;
			break;
		}
		ret = fn(arg, &row);
		if (ret != KW_OK)
			goto out;
	}
	if (rc != SQLITE_DONE)
		ret = sq_fail_own(&st->sq, r, "read", rc);
out:
	sqlite3_finalize(s);
	sq_release(&st->sq, c);
	return ret;
}
