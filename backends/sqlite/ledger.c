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
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include <keyway/module.h>

#include "sqlite_int.h"

/* Sweep expired counters after this many charges, or this many seconds... */
#define LD_SWEEP_CHARGES 4096
#define LD_SWEEP_SECONDS 60
/* ...this many at a time: the sweep holds the write lock, and every
 * process's charges wait for it. */
#define LD_SWEEP_ROWS 1000
/* Batches one leader writes before it hands over and returns. */
#define LD_LEAD_MAX 8
/* Checkpoint once the WAL holds this many frames (of 1 KiB pages)... */
#define LD_CKPT_FRAMES 4000
/* ...and, while it stays longer, again each time it grows this much. */
#define LD_CKPT_AGAIN 1000
/* How often, 100 us apart, a restarting checkpoint tries a lock. */
#define LD_RESTART_TRIES 10
/* Frames of WAL the last close leaves to the next opener, who reads them
 * all; a longer WAL is emptied (sq_ledger_free()). */
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

/* Statements every ledger connection prepares once. */
enum ld_stmt {
	LD_BEGIN,
	LD_BEGIN_READ,
	LD_COMMIT,
	LD_ROLLBACK,
	LD_SAVEPOINT,
	LD_RELEASE,
	LD_ROLLBACK_TO,
	LD_CHARGE,
	LD_COUNT,
	LD_LOG,
	LD_UNCOUNT,
	LD_REFUNDED,
	LD_OUTCOME,
	LD_SWEEP,
	LD_NSTMTS
};

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

/* A ledger's constraints are ours to keep: a violation is a bug or a
 * damaged file, not a record that "exists". */
static kw_status ld_fail(const struct sq_state *st, kw_reply *r,
			 const char *what, int rc)
{
	kw_status ret = sq_fail(st, r, what, rc);

	return ret == KW_ERR_EXISTS ? KW_ERR_BACKEND : ret;
}

/* Step a statement that answers no row, and make it ready again. */
static int ld_exec(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	sq_done(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void ld_rollback(struct sq_conn *c)
{
	if (!sqlite3_get_autocommit(c->db))
		(void)ld_exec(c->stmt[LD_ROLLBACK]);
}

/* SQLite stores signed integers; no limit a config can say comes near. */
static int64_t ld_int(uint64_t v)
{
	return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

static const char *ld_text(const char *s)
{
	return s != NULL ? s : "";
}

/* ---- opening ---- */

/*
 * Create or update the schema.  Another process may be doing the same:
 * what the file holds is read again under the write lock.
 */
static kw_status ld_migrate(struct sq_state *st, sqlite3 *db)
{
	const kw_host *host = st->host;
	int64_t version = 0, app_id = 0;
	char sql[64];
	int rc;

	rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sq_int(db, "PRAGMA user_version", &version);
	if (rc == SQLITE_OK)
		rc = sq_int(db, "PRAGMA application_id", &app_id);
	if (rc != SQLITE_OK)
		goto fail;
	if (app_id != 0 && app_id != SQ_LEDGER_APP_ID) {
		host->error(st->inst, "path",
			    "%s is a SQLite database but not a keyway ledger",
			    st->path);
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return KW_ERR_BACKEND;
	}
	if (version > LD_SCHEMA_VERSION) {
		host->error(st->inst, "path",
			    "ledger %s has schema version %" PRId64 "; this "
			    "keyway knows up to %d",
			    st->path, version, LD_SCHEMA_VERSION);
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return KW_ERR_BACKEND;
	}
	for (int64_t v = version; v < LD_SCHEMA_VERSION; v++) {
		rc = sqlite3_exec(db, ld_migrations[v], NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			goto fail;
	}
	if (version == 0) {
		snprintf(sql, sizeof(sql), "PRAGMA application_id = %d",
			 SQ_LEDGER_APP_ID);
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			goto fail;
	}
	if (version < LD_SCHEMA_VERSION) {
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d",
			 LD_SCHEMA_VERSION);
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			goto fail;
	}
	rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	return KW_OK;

fail:
	host->error(st->inst, "path", "cannot %s ledger %s: %s",
		    version == 0 ? "initialise" : "update", st->path,
		    sqlite3_errmsg(db));
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return sq_status(rc) == KW_ERR_EXISTS ? KW_ERR_BACKEND : sq_status(rc);
}

/* The write queue's lock, and the attributes of the conditions requests
 * wait on: their timeout must not move with the wall clock. */
static bool ld_sync_init(struct sq_state *st)
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

void sq_ledger_free(struct sq_state *st)
{
	ld_ckpt_free(st->writer);
	sq_conn_close(st->writer);
	st->writer = NULL;
	if (st->write_ready) {
		pthread_condattr_destroy(&st->wait_attr);
		pthread_mutex_destroy(&st->write_lock);
		st->write_ready = false;
	}
}

/*
 * Look at what the file holds before writing to it: a key store named as
 * the ledger must not be given a second schema.  The connection becomes
 * the writer; the pool, for reading, fills when it is needed.
 */
const struct sq_kind sq_ledger_kind = {
	SQ_LEDGER_APP_ID, SQ_APP_ID, LD_SCHEMA_VERSION, "ledger",
	"is a keyway key store, not a quota ledger: give keyway.ledger a file "
	"of its own"
};

kw_status sq_ledger_open(struct sq_state *st)
{
	const kw_host *host = st->host;
	kw_instance *inst = st->inst;
	struct sq_conn *c = NULL;
	struct ld_ckpt *k;
	int64_t version = 0;
	kw_status ret;
	int rc;

	st->sql = ld_sql;
	st->nsql = LD_NSTMTS;
	st->queue_tail = &st->queue;
	if (!ld_sync_init(st)) {
		host->error(inst, NULL, "cannot create a mutex");
		return KW_ERR_NOMEM;
	}
	ret = sq_open_checked(st, &sq_ledger_kind, &c, &version);
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
	ret = sq_checking(st) ? KW_OK : sq_wal(st, c->db, "ledger");
	if (ret != KW_OK)
		goto out;
	if (version < LD_SCHEMA_VERSION) {
		ret = ld_migrate(st, c->db);
		if (ret != KW_OK)
			goto out;
	}
	for (int i = 0; i < st->nsql; i++) {
		rc = sqlite3_prepare_v3(c->db, st->sql[i], -1,
					SQLITE_PREPARE_PERSISTENT, &c->stmt[i],
					NULL);
		if (rc != SQLITE_OK) {
			host->error(inst, "path", "cannot read ledger %s: %s",
				    st->path, sqlite3_errmsg(c->db));
			ret = sq_status(rc) == KW_ERR_EXISTS ? KW_ERR_BACKEND
							      : sq_status(rc);
			goto out;
		}
	}
	/* Its cache holds the pages charges touch: worth more than the
	 * default 2 MiB, and only for this one connection. */
	(void)sqlite3_exec(c->db, "PRAGMA cache_size = -8192", NULL, NULL,
			   NULL);
	/* Its commits run the checkpoints (after 4 MiB of WAL, as SQLite's
	 * default does with 4 KiB pages), in place of SQLite's own. */
	k = calloc(1, sizeof(*k));
	if (k == NULL) {
		host->error(inst, NULL, "out of memory");
		ret = KW_ERR_NOMEM;
		goto out;
	}
	k->st = st;
	sqlite3_wal_hook(c->db, ld_wal_hook, k);
	st->writer = c;
	c = NULL;
	ret = KW_OK;
out:
	sq_conn_close(c);
	return ret;
}

kw_status sq_ledger_check(struct sq_state *st, kw_reply *r)
{
	const kw_host *host = st->host;
	struct sq_conn *c = NULL;
	sqlite3_stmt *s = NULL;
	const char *res;
	int64_t ncounters = 0, nrows = 0;
	kw_status ret;
	int rc;

	ret = sq_check_files(st, r);
	if (ret != KW_OK)
		return ret;
	ret = sq_acquire(st, &c, r);
	if (ret != KW_OK)
		return ret;
	rc = sqlite3_prepare_v2(c->db, "PRAGMA quick_check", -1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		ret = sq_fail(st, r, "check", rc);
		goto out;
	}
	res = (const char *)sqlite3_column_text(s, 0);
	if (res == NULL || strcmp(res, "ok") != 0) {
		host->reply_detail(r, "%s is damaged: %s", st->path,
				   res != NULL ? res : "quick_check failed");
		ret = KW_ERR_BACKEND;
		goto out;
	}
	rc = sq_int(c->db, "SELECT count(*) FROM counters", &ncounters);
	if (rc == SQLITE_OK)
		rc = sq_int(c->db, "SELECT count(*) FROM usage", &nrows);
	if (rc != SQLITE_OK) {
		ret = sq_fail(st, r, "read", rc);
		goto out;
	}
	host->reply_detail(r, "%s: %" PRId64 " counter%s, %" PRId64
			   " usage row%s",
			   st->path, ncounters, ncounters == 1 ? "" : "s",
			   nrows, nrows == 1 ? "" : "s");
out:
	sqlite3_finalize(s);
	sq_release(st, c);
	return ret;
}

/* ---- writing: charges and refunds, committed in batches ---- */

enum ld_kind { LD_REQ_CHARGE, LD_REQ_REFUND };

enum ld_req_state {
	LD_QUEUED, /* in st->queue */
	LD_TAKEN,  /* in a leader's batch */
	LD_DONE    /* ret is final */
};

/*
 * A write waiting for a leader.  It lives on its caller's stack; the
 * caller waits until it is LD_DONE (or takes it out of the queue while it
 * is still LD_QUEUED), so a leader may write into it until then.
 */
struct ld_req {
	struct ld_req *next;
	enum ld_kind kind;
	enum ld_req_state state;
	kw_charge *ch;             /* LD_REQ_CHARGE: in and out */
	const kw_charge *refund;   /* LD_REQ_REFUND */
	kw_reply *r;
	kw_status ret;
	int64_t id;                /* the usage row written, once committed */
	pthread_cond_t wake;       /* done, or next to lead */
};

static kw_status ld_check_charge(const struct sq_state *st,
				 const kw_charge *c, kw_reply *r)
{
	if (c->nslots > 0 && c->slots == NULL) {
		st->host->reply_detail(r, "charge of %zu slots without slots",
				       c->nslots);
		return KW_ERR_INVAL;
	}
	for (size_t i = 0; i < c->nslots; i++)
		if (c->slots[i].counter == NULL) {
			st->host->reply_detail(r, "quota slot %zu has no "
					       "counter", i);
			return KW_ERR_INVAL;
		}
	return KW_OK;
}

static int ld_bind_slot(sqlite3_stmt *s, const kw_quota_slot *slot)
{
	int rc = sqlite3_bind_text(s, 1, slot->counter, -1, SQLITE_STATIC);

	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 2, slot->window);
	return rc;
}

/* Count one more in slot; *counted is false when it is at its limit. */
static int ld_count_up(struct sq_conn *c, const kw_quota_slot *slot,
		       bool *counted)
{
	sqlite3_stmt *s = c->stmt[LD_CHARGE];
	int rc;

	*counted = false;
	/* The upsert would create the counter at 1 whatever the limit. */
	if (slot->limit == 0)
		return SQLITE_OK;
	rc = ld_bind_slot(s, slot);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 3, slot->expires);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 4, ld_int(slot->limit));
	if (rc == SQLITE_OK)
		rc = ld_exec(s);
	else
		sq_done(s);
	if (rc == SQLITE_OK)
		*counted = sqlite3_changes(c->db) > 0;
	return rc;
}

/* The count of slot (0 when it has none yet). */
static int ld_count(struct sq_conn *c, const kw_quota_slot *slot,
		    uint64_t *count)
{
	sqlite3_stmt *s = c->stmt[LD_COUNT];
	int rc;

	*count = 0;
	rc = ld_bind_slot(s, slot);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		int64_t n = sqlite3_column_int64(s, 0);

		*count = n > 0 ? (uint64_t)n : 0;
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_OK;
	}
	sq_done(s);
	return rc;
}

/* Write the usage row with `outcome`; *id gets its id. */
static int ld_log(struct sq_conn *c, const kw_usage_row *u,
		  const char *outcome, int64_t *id)
{
	sqlite3_stmt *s = c->stmt[LD_LOG];
	int rc;

	*id = 0;
	rc = sqlite3_bind_int64(s, 1, u->time);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 2, ld_text(u->chain), -1,
				       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 3, ld_text(u->backend), -1,
				       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 4, ld_text(u->provider), -1,
				       SQLITE_STATIC);
	if (rc == SQLITE_OK && u->user != NULL)
		rc = sqlite3_bind_text(s, 5, u->user, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && u->org != NULL)
		rc = sqlite3_bind_text(s, 6, u->org, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 7, outcome, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = ld_exec(s);
	else
		sq_done(s);
	if (rc == SQLITE_OK)
		*id = sqlite3_last_insert_rowid(c->db);
	return rc;
}

/*
 * One charge inside the batch's transaction.  A slot at its limit undoes
 * the slots before it (its savepoint; with one slot nothing changed) and
 * the row is logged "denied".  Returns a SQLite code: anything but
 * SQLITE_OK fails the whole batch.
 */
static int ld_do_charge(struct sq_conn *c, struct ld_req *q,
			const char **what)
{
	kw_charge *ch = q->ch;
	const bool multi = ch->nslots > 1;
	size_t full = ch->nslots;
	bool counted;
	int rc = SQLITE_OK;

	*what = "count in";
	if (multi)
		rc = ld_exec(c->stmt[LD_SAVEPOINT]);
	for (size_t i = 0; rc == SQLITE_OK && i < ch->nslots; i++) {
		rc = ld_count_up(c, &ch->slots[i], &counted);
		if (rc == SQLITE_OK && !counted)
			full = i;
		if (full < ch->nslots)
			break;
	}
	if (rc != SQLITE_OK)
		return rc;
	if (full < ch->nslots) {
		*what = "read";
		rc = ld_count(c, &ch->slots[full], &ch->count);
		if (rc == SQLITE_OK && multi && full > 0)
			rc = ld_exec(c->stmt[LD_ROLLBACK_TO]);
		if (rc != SQLITE_OK)
			return rc;
		/* Final even if the row cannot be logged: answering
		 * anything else could let on_unavailable = "allow" admit a
		 * request over its limit. */
		ch->full = full;
		q->ret = KW_ERR_DENIED;
	} else {
		q->ret = KW_OK;
	}
	*what = "log usage in";
	if (ch->usage != NULL)
		rc = ld_log(c, ch->usage,
			    q->ret == KW_OK ? "admitted" : "denied", &q->id);
	if (rc == SQLITE_OK && multi)
		rc = ld_exec(c->stmt[LD_RELEASE]);
	return rc;
}

/*
 * The row of a refund was not "admitted": say why nothing is counted down.
 * A row that is gone (*uncount stays true) does not stop the counts from
 * going back.
 */
static int ld_not_admitted(const struct sq_state *st, struct sq_conn *c,
			   struct ld_req *q, bool *uncount)
{
	sqlite3_stmt *s = c->stmt[LD_OUTCOME];
	const int64_t id = q->refund->usage_id;
	const char *outcome;
	int rc;

	*uncount = true;
	rc = sqlite3_bind_int64(s, 1, id);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*uncount = false;
		outcome = (const char *)sqlite3_column_text(s, 0);
		if (outcome == NULL)
			outcome = "";
		if (strcmp(outcome, "refunded") == 0) {
			st->host->reply_detail(q->r, "usage row %" PRId64
					       " was refunded already", id);
		} else {
			st->host->reply_detail(q->r, "usage row %" PRId64
					       " is %s, not admitted: nothing "
					       "to refund", id, outcome);
			q->ret = KW_ERR_INVAL;
		}
		rc = SQLITE_DONE;
	}
	sq_done(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * Mark the row refunded first: only the refund that does so counts down,
 * so a refund repeated (by a retry, say) takes nothing twice.
 */
static int ld_do_refund(const struct sq_state *st, struct sq_conn *c,
			struct ld_req *q, const char **what)
{
	const kw_charge *ch = q->refund;
	sqlite3_stmt *s;
	bool uncount = true;
	int rc = SQLITE_OK;

	q->ret = KW_OK;
	if (ch->usage_id > 0) {
		*what = "write to";
		s = c->stmt[LD_REFUNDED];
		rc = sqlite3_bind_int64(s, 1, ch->usage_id);
		if (rc == SQLITE_OK)
			rc = ld_exec(s);
		else
			sq_done(s);
		if (rc == SQLITE_OK && sqlite3_changes(c->db) == 0) {
			*what = "read";
			rc = ld_not_admitted(st, c, q, &uncount);
		}
	}
	if (rc != SQLITE_OK || !uncount)
		return rc;
	*what = "count down in";
	for (size_t i = 0; rc == SQLITE_OK && i < ch->nslots; i++) {
		s = c->stmt[LD_UNCOUNT];
		rc = ld_bind_slot(s, &ch->slots[i]);
		if (rc == SQLITE_OK)
			rc = ld_exec(s);
		else
			sq_done(s);
	}
	return rc;
}

/*
 * Drop counters whose window is over, now and then, after a commit; a
 * failure only means a later one sweeps.  `now` is a charge's own time,
 * the clock its windows were cut by.  When a window ends for many counters
 * at once (every user's day at midnight), they go LD_SWEEP_ROWS at a time,
 * one sweep after each batch, rather than in one long transaction.
 */
static void ld_sweep(struct sq_state *st, struct sq_conn *c, int64_t now,
		     uint32_t charged)
{
	sqlite3_stmt *s = c->stmt[LD_SWEEP];
	int rc;

	st->charges += charged;
	if (st->charges < LD_SWEEP_CHARGES && now < st->next_sweep)
		return;
	st->charges = 0;
	st->next_sweep = now + LD_SWEEP_SECONDS;
	rc = sqlite3_bind_int64(s, 1, now);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(s, 2, LD_SWEEP_ROWS);
	if (rc == SQLITE_OK)
		rc = ld_exec(s);
	else
		sq_done(s);
	if (rc != SQLITE_OK)
		st->host->log(st->inst, KW_LOG_DEBUG,
			      "%s: cannot drop expired counters yet: %s",
			      st->path, sqlite3_errstr(rc));
	else if (sqlite3_changes(c->db) >= LD_SWEEP_ROWS)
		st->next_sweep = 0; /* more to drop: after the next batch */
}

/*
 * Write a batch in one transaction.  A SQLite failure undoes the whole
 * batch and is every request's answer, except that a charge found over
 * its limit stays denied.
 */
static void ld_write_batch(struct sq_state *st, struct sq_conn *c,
			   struct ld_req *batch)
{
	const char *what = "lock";
	uint32_t charged = 0;
	int64_t now = 0;
	struct ld_req *q;
	int rc;

	for (q = batch; q != NULL; q = q->next)
		q->ret = KW_ERR_UNAVAIL;
	rc = ld_exec(c->stmt[LD_BEGIN]);
	for (q = batch; rc == SQLITE_OK && q != NULL; q = q->next)
		rc = q->kind == LD_REQ_CHARGE ? ld_do_charge(c, q, &what)
					      : ld_do_refund(st, c, q, &what);
	if (rc == SQLITE_OK) {
		what = "commit to";
		rc = ld_exec(c->stmt[LD_COMMIT]);
	}
	if (rc != SQLITE_OK) {
		ld_rollback(c);
		for (q = batch; q != NULL; q = q->next) {
			if (q->kind == LD_REQ_CHARGE &&
			    q->ret == KW_ERR_DENIED) {
				st->host->log(st->inst, KW_LOG_WARNING,
					      "%s: cannot log a denied "
					      "request: %s",
					      st->path, sqlite3_errstr(rc));
				continue;
			}
			q->ret = ld_fail(st, q->r, what, rc);
		}
		return;
	}
	for (q = batch; q != NULL; q = q->next) {
		if (q->kind != LD_REQ_CHARGE)
			continue;
		if (q->ret == KW_OK) {
			q->ch->usage_id = q->id;
			charged++;
		}
		if (q->ch->usage != NULL)
			now = q->ch->usage->time;
	}
	if (charged > 0)
		ld_sweep(st, c, now != 0 ? now : st->host->now(), charged);
}

static void ld_deadline(const struct sq_state *st, struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += st->busy_ms / 1000;
	ts->tv_nsec += (long)(st->busy_ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Take q out of the queue, where it still is. */
static void ld_unqueue(struct sq_state *st, struct ld_req *q)
{
	struct ld_req **p = &st->queue;

	while (*p != q)
		p = &(*p)->next;
	*p = q->next;
	if (st->queue_tail == &q->next)
		st->queue_tail = p;
}

/*
 * Queue q and wait for it to be written.  The thread that finds no leader
 * becomes one: it writes everything queued on the writer connection,
 * wakes the owners of what it wrote, and goes on with what was queued
 * meanwhile, for a few batches; then it wakes the first request still
 * queued, whose owner leads next.  A thread is woken only when it has
 * something to do.  A request still queued when the busy timeout has
 * passed gives up; one being written waits for its batch, which SQLite's
 * busy timeout bounds.
 */
static kw_status ld_submit(struct sq_state *st, struct ld_req *q)
{
	struct ld_req *batch, *next;
	struct timespec deadline;
	bool timed_out = false;
	int err;

	if (pthread_cond_init(&q->wake, &st->wait_attr) != 0) {
		st->host->reply_detail(q->r, "cannot create a condition "
				       "variable");
		return KW_ERR_NOMEM;
	}
	ld_deadline(st, &deadline);
	q->next = NULL;
	q->state = LD_QUEUED;
	pthread_mutex_lock(&st->write_lock);
	*st->queue_tail = q;
	st->queue_tail = &q->next;

	while (q->state != LD_DONE && st->leader) {
		if (q->state == LD_QUEUED && timed_out) {
			ld_unqueue(st, q);
			st->host->reply_detail(q->r, "cannot write to %s: "
					       "still busy after "
					       "busy_timeout_ms", st->path);
			q->ret = KW_ERR_UNAVAIL;
			goto out;
		}
		if (q->state == LD_QUEUED) {
			err = pthread_cond_timedwait(&q->wake, &st->write_lock,
						     &deadline);
			timed_out = err == ETIMEDOUT;
		} else {
			pthread_cond_wait(&q->wake, &st->write_lock);
		}
	}
	if (q->state == LD_DONE)
		goto out;

	/* No leader, so q is still queued: its batch is the first. */
	st->leader = true;
	for (int n = 0; st->queue != NULL && n < LD_LEAD_MAX; n++) {
		batch = st->queue;
		st->queue = NULL;
		st->queue_tail = &st->queue;
		for (struct ld_req *b = batch; b != NULL; b = b->next)
			b->state = LD_TAKEN;
		pthread_mutex_unlock(&st->write_lock);
		ld_write_batch(st, st->writer, batch);
		pthread_mutex_lock(&st->write_lock);
		/* An owner may return as soon as it sees LD_DONE, which it
		 * cannot before the lock is let go. */
		for (; batch != NULL; batch = next) {
			next = batch->next;
			batch->state = LD_DONE;
			if (batch != q)
				pthread_cond_signal(&batch->wake);
		}
	}
	st->leader = false;
	if (st->queue != NULL)
		pthread_cond_signal(&st->queue->wake);
out:
	pthread_mutex_unlock(&st->write_lock);
	pthread_cond_destroy(&q->wake);
	return q->ret;
}

/* The dry run: read the counts, write nothing. */
static kw_status ld_peek(struct sq_state *st, struct sq_conn *c,
			 kw_charge *ch, kw_reply *r)
{
	kw_status ret = KW_OK;
	uint64_t count;
	int rc;

	/* One snapshot for all the slots. */
	if (ch->nslots > 1) {
		rc = ld_exec(c->stmt[LD_BEGIN_READ]);
		if (rc != SQLITE_OK)
			return ld_fail(st, r, "read", rc);
	}
	for (size_t i = 0; i < ch->nslots; i++) {
		rc = ld_count(c, &ch->slots[i], &count);
		if (rc != SQLITE_OK) {
			ret = ld_fail(st, r, "read", rc);
			break;
		}
		if (count >= ch->slots[i].limit) {
			ch->full = i;
			ch->count = count;
			ret = KW_ERR_DENIED;
			break;
		}
	}
	ld_rollback(c);
	return ret;
}

kw_status sq_charge(void *state, kw_charge *c, bool dry_run, kw_reply *r)
{
	struct sq_state *st = state;
	struct sq_conn *conn = NULL;
	struct ld_req q = { .kind = LD_REQ_CHARGE, .ch = c, .r = r };
	kw_status ret;

	c->full = 0;
	c->count = 0;
	c->usage_id = 0;
	if (st->role != KW_INSTANCE_LEDGER)
		return sq_wrong_role(st, r);
	ret = ld_check_charge(st, c, r);
	if (ret != KW_OK || !dry_run)
		return ret != KW_OK ? ret : ld_submit(st, &q);
	ret = sq_acquire(st, &conn, r);
	if (ret != KW_OK)
		return ret;
	ret = ld_peek(st, conn, c, r);
	sq_release(st, conn);
	return ret;
}

kw_status sq_refund(void *state, const kw_charge *c, kw_reply *r)
{
	struct sq_state *st = state;
	struct ld_req q = { .kind = LD_REQ_REFUND, .refund = c, .r = r };
	kw_status ret;

	if (st->role != KW_INSTANCE_LEDGER)
		return sq_wrong_role(st, r);
	ret = ld_check_charge(st, c, r);
	return ret != KW_OK ? ret : ld_submit(st, &q);
}

/* ---- reading the log ---- */

kw_status sq_usage(void *state, const kw_usage_filter *f, kw_usage_fn *fn,
		   void *arg, kw_reply *r)
{
	static const kw_usage_filter all;
	struct sq_state *st = state;
	struct sq_conn *c = NULL;
	sqlite3_stmt *s = NULL;
	char sql[320];
	kw_usage_row row;
	kw_status ret;
	int rc;

	if (st->role != KW_INSTANCE_LEDGER)
		return sq_wrong_role(st, r);
	if (f == NULL)
		f = &all;
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
	ret = sq_acquire(st, &c, r);
	if (ret != KW_OK)
		return ret;
	rc = sqlite3_prepare_v2(c->db, sql, -1, &s, NULL);
	if (rc == SQLITE_OK && f->since != 0)
		rc = sqlite3_bind_int64(s, 1, f->since);
	if (rc == SQLITE_OK && f->until != 0)
		rc = sqlite3_bind_int64(s, 2, f->until);
	if (rc == SQLITE_OK && f->user != NULL)
		rc = sqlite3_bind_text(s, 3, f->user, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && f->org != NULL)
		rc = sqlite3_bind_text(s, 4, f->org, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && f->backend != NULL)
		rc = sqlite3_bind_text(s, 5, f->backend, -1, SQLITE_STATIC);
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
		ret = ld_fail(st, r, "read", rc);
out:
	sqlite3_finalize(s);
	sq_release(st, c);
	return ret;
}
