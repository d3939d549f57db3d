/*
 * sqlite_int.h - what the two halves of the sqlite module share: the key
 * store (sqlite.c) and the quota ledger (ledger.c) are one module with one
 * settings table, and run on the same pool of connections.
 *
 * Not installed; nothing here is exported (the module exports only
 * kw_module_entry).
 */
#ifndef KW_SQLITE_INT_H
#define KW_SQLITE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <sqlite3.h>

#include <keyway/module.h>

#define SQ_POOL_MAX 16          /* connections per instance */
#define SQ_STMTS_MAX 16         /* statements a connection prepares */
#define SQ_STORE_ID_LEN 32      /* hex digits */

/*
 * The database header's application_id says what a file is, so that a
 * key store named as the ledger (or the other way round) is refused
 * instead of being given a second schema.
 */
#define SQ_APP_ID 0x4b574159        /* "KWAY": a key store */
#define SQ_LEDGER_APP_ID 0x4b574c47 /* "KWLG": a quota ledger */

struct ld_req; /* a queued ledger write (ledger.c) */

struct sq_conn {
	struct sq_conn *next; /* in the idle list */
	sqlite3 *db;
	sqlite3_stmt *stmt[SQ_STMTS_MAX]; /* st->sql, prepared once */
};

/*
 * Connections to one file.  The key stores of this process that name the
 * same file (same device and inode, same busy timeout) share one pool, so
 * that a walk through several of them reads their rows in one statement,
 * and the file is opened, checked and its schema parsed once.
 * A ledger has a pool of its own.  Guarded by `lock`; a connection taken
 * from it belongs to one thread until it is given back.
 */
struct sq_pool {
	struct sq_pool *next;      /* in the registry of shared pools */
	unsigned refs;             /* instances using it */
	bool shared;               /* in the registry */
	bool ledger;               /* a ledger's: never joined */
	dev_t dev;
	ino_t ino;
	pid_t pid;                 /* the process that opened it */
	int busy_ms;
	atomic_uint scopes;        /* 1 << kw_scope of each store on it */
	atomic_uint wal_frames;    /* the WAL's length at the last commit */
	atomic_bool changed;       /* keys or schema written (not counts) */
	pthread_mutex_t lock;
	pthread_cond_t cond;       /* a connection came back or went away */
	struct sq_conn *idle;
	unsigned nconns;           /* idle and in use */
};

/*
 * One instance: a key store (role KW_INSTANCE_BACKEND) or the quota ledger
 * (KW_INSTANCE_LEDGER).  Everything but the pool and the ledger's write
 * state is immutable after open().
 */
struct sq_state {
	const kw_host *host;
	kw_instance *inst;         /* for log(); the host's until close */
	kw_instance_role role;
	const char *path;          /* the host's string, valid until close */
	int busy_ms;
	const char *const *sql;    /* what every connection prepares */
	int nsql;
	struct sq_pool *pool;

	/* The key store. */
	kw_scope scope;
	const char *scope_word;    /* "user", "org", "system" */
	char store_id[SQ_STORE_ID_LEN + 1];
	kw_keyring *kr;

	/*
	 * The ledger.  Threads of this process queue their writes, and one
	 * at a time (the leader) commits all that are waiting in one
	 * transaction on the writer connection: a commit costs more than
	 * the charges in it, and threads meeting at the file's lock would
	 * wait for each other in sleeps.  write_lock guards the queue; the
	 * writer (out of the pool, so that its page cache stays warm) and
	 * the sweep's bookkeeping belong to the leader.
	 */
	struct sq_conn *writer;
	pthread_mutex_t write_lock;
	pthread_condattr_t wait_attr; /* for each request's condition */
	bool write_ready;           /* write_lock and wait_attr exist */
	struct ld_req *queue;       /* waiting, oldest first */
	struct ld_req **queue_tail;
	bool leader;                /* a batch is being written */
	uint32_t charges;           /* since the last sweep */
	int64_t next_sweep;         /* sweep at the first charge after it */
};

/* What a failed SQLite call means to the chain and the caller. */
kw_status sq_status(int rc);
/* Report a failed SQLite call ("cannot WHAT PATH: why") through r. */
kw_status sq_fail(const struct sq_state *st, kw_reply *r, const char *what,
		  int rc);
/* Refuse an operation that belongs to the other role. */
kw_status sq_wrong_role(const struct sq_state *st, kw_reply *r);
/* Make a statement ready for its next use; bound pointers are dropped. */
void sq_done(sqlite3_stmt *s);
/* Run one statement that answers one integer (a pragma, a count). */
int sq_int(sqlite3 *db, const char *sql, int64_t *out);
/*
 * What a file holds: schema version, application_id and number of schema
 * objects, read in one statement so that they agree with each other while
 * another process is creating the schema.
 */
/* What a connection's file must be: a key store or a quota ledger. */
struct sq_kind {
	int64_t app_id;        /* SQ_APP_ID or SQ_LEDGER_APP_ID */
	int64_t other_app_id;  /* the other kind, refused with `other` */
	int64_t schema;        /* the newest schema version known */
	const char *noun;      /* "store", "ledger" */
	const char *other;     /* why the other kind is refused */
};

extern const struct sq_kind sq_store_kind, sq_ledger_kind;

/*
 * Open a first connection and look at what the file holds before anything
 * writes to it; refuse, through host->error on `path`, a file of another
 * kind or a newer schema.  On KW_OK *out is the connection and *version
 * the file's schema version (0: new).
 */
kw_status sq_open_checked(struct sq_state *st, const struct sq_kind *k,
			  struct sq_conn **out, int64_t *version);

int sq_inspect(sqlite3 *db, int64_t *version, int64_t *app_id,
	       int64_t *nobjects);

/*
 * Open one connection to st->path, preparing st->sql when `prepare` (the
 * schema is there).  The file must exist: SQLite never creates it.
 */
int sq_conn_open(const struct sq_state *st, bool prepare,
		 struct sq_conn **out);
void sq_conn_close(struct sq_conn *c);
/* Take a connection from the pool (KW_OK), or say why not through r. */
kw_status sq_acquire(struct sq_state *st, struct sq_conn **out, kw_reply *r);
/* Give it back; one left inside a transaction is rolled back or dropped. */
void sq_release(struct sq_state *st, struct sq_conn *c);

/*
 * Create st->path 0600 if it is missing (in a check, report it instead),
 * and refuse a file, or a -wal or -shm file beside it, that is not private
 * to us; `what` ("store", "ledger") is for messages.  Reports through
 * host->error().
 */
kw_status sq_prepare_file(const struct sq_state *st, const char *what);
/*
 * Is st opened for `keyway check` (KW_OPEN_CHECK)?  Its connections are
 * then read-only and create no file, and nothing writes the file: no WAL
 * mode, no migration.
 */
bool sq_checking(const struct sq_state *st);
/*
 * For check(): refuse the file, its -wal and its -shm as open() does, and
 * a file or directory this process cannot write to.  KW_OK, or a failure
 * with the reason given through r.
 */
kw_status sq_check_files(const struct sq_state *st, kw_reply *r);
/*
 * At the last close, which otherwise leaves the WAL to the next opener:
 * copy it into the file and truncate it, without waiting for a reader
 * (one makes it a passive checkpoint, which empties nothing).  The
 * connection's busy handler is gone afterwards.
 */
void sq_wal_empty(sqlite3 *db);
/* Put the database in WAL mode, reporting through host->error(). */
kw_status sq_wal(const struct sq_state *st, sqlite3 *db, const char *what);

/*
 * ledger.c: open(), close() and check() of a ledger, and its operations.
 * sq_ledger_open() reports through host->error(); sq_ledger_free() undoes
 * what it did, also after a failure.
 */
kw_status sq_ledger_open(struct sq_state *st);
void sq_ledger_free(struct sq_state *st);
kw_status sq_ledger_check(struct sq_state *st, kw_reply *r);
kw_status sq_charge(void *state, kw_charge *c, bool dry_run, kw_reply *r);
kw_status sq_refund(void *state, const kw_charge *c, kw_reply *r);
kw_status sq_usage(void *state, const kw_usage_filter *f, kw_usage_fn *fn,
		   void *arg, kw_reply *r);

#endif /* KW_SQLITE_INT_H */
