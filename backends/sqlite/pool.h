/*
 * pool.h - what the two roles of the sqlite module share: connections and
 * their pools, the registry of pools by file, WAL handling, the checks on
 * the files, the opening of a file of either kind, and the health check.
 * The key store (store*.c) and the quota ledger (ledger*.c) build on it
 * and never on each other.
 *
 * Not installed; nothing here is exported (the module exports only
 * kw_module_entry).
 */
#ifndef KW_SQLITE_POOL_H
#define KW_SQLITE_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <sqlite3.h>

#include <keyway/module.h>

#define SQ_POOL_MAX 16          /* connections per instance */
#define SQ_STMTS_MAX 16         /* statements a connection prepares */

/*
 * The database header's application_id says what a file is, so that a
 * key store named as the ledger (or the other way round) is refused
 * instead of being given a second schema.
 */
#define SQ_APP_ID 0x4b574159        /* "KWAY": a key store */
#define SQ_LEDGER_APP_ID 0x4b574c47 /* "KWLG": a quota ledger */

struct sq_conn {
	struct sq_conn *next; /* in the idle list */
	sqlite3 *db;
	sqlite3_stmt *stmt[SQ_STMTS_MAX]; /* kind->sql, prepared once */
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
	bool alone;                /* never joined (a ledger's) */
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

/* What a connection's file must be: a key store or a quota ledger. */
struct sq_kind {
	int64_t app_id;        /* SQ_APP_ID or SQ_LEDGER_APP_ID */
	int64_t other_app_id;  /* the other kind, refused with `other` */
	int64_t schema;        /* the newest schema version known */
	const char *noun;      /* "store", "ledger" */
	const char *other;     /* why the other kind is refused */
	const char *holds;     /* what the file holds, for a refusal */
	const char *init_hint; /* how else a missing file is made, or "" */
	const char *const *migrations; /* [N]: from version N to N + 1 */
	const char *const *sql; /* what every connection prepares */
	int nsql;
	/*
	 * The file holds secrets: its connections erase what is deleted
	 * (secure_delete), map the file, and checkpoint from the pool's
	 * commit hook, and the last close empties a WAL that holds changes.
	 */
	bool secrets;
	/* A new connection of the pool prepares every statement at once,
	 * rather than each at its first use. */
	bool prepare_all;
};

/*
 * What both roles' states begin with: a role's state embeds it first, so
 * that the module's dispatch (sqlite.c) reads the role from it and hands
 * the role its own state.  Immutable after open(), but for the pool.
 */
struct sq_state {
	const kw_host *host;
	kw_instance *inst;         /* for log(); the host's until close */
	kw_instance_role role;
	const struct sq_kind *kind;
	const char *path;          /* the host's string, valid until close */
	int busy_ms;
	struct sq_pool *pool;
};

/* ---- statuses and statements ---- */

/* What a failed SQLite call means to the chain and the caller. */
kw_status sq_status(int rc);
/* Report a failed SQLite call ("cannot WHAT PATH: why") through r. */
kw_status sq_fail(const struct sq_state *st, kw_reply *r, const char *what,
		  int rc);
/* sq_fail() where the constraints are ours to keep: a violation is a bug
 * or a damaged file (KW_ERR_BACKEND), not a record that exists. */
kw_status sq_fail_own(const struct sq_state *st, kw_reply *r,
		      const char *what, int rc);
/* A statement that failed on c, with SQLite's own words for why ("cannot
 * read PATH: no such column: ..."), through r. */
kw_status sq_fail_conn(const struct sq_state *st, struct sq_conn *c,
		       kw_reply *r, int rc);
/* Make a statement ready for its next use; bound pointers are dropped. */
void sq_done(sqlite3_stmt *s);
/* Run one statement that answers one integer (a pragma, a count). */
int sq_int(sqlite3 *db, const char *sql, int64_t *out);
/* c's statement i of st->kind->sql, prepared at its first use; the
 * connection keeps it. */
int sq_stmt(const struct sq_state *st, struct sq_conn *c, int i,
	    sqlite3_stmt **out);
/*
 * Prepare the first n statements of st->kind->sql on c, which proves the
 * tables are what they should be; a failure is reported through
 * host->error() ("cannot read NOUN PATH: why").
 */
kw_status sq_prepare_first(const struct sq_state *st, struct sq_conn *c,
			   int n);

/* ---- connections ---- */

/*
 * Open one connection to st->path, preparing every statement when
 * `prepare` (the schema is there).  The file must exist: SQLite never
 * creates it.
 */
int sq_conn_open(const struct sq_state *st, bool prepare,
		 struct sq_conn **out);
/* Close c and its statements; NULL is a no-op. */
void sq_conn_close(struct sq_conn *c);
/* Take a connection from the pool (KW_OK), or say why not through r. */
kw_status sq_acquire(struct sq_state *st, struct sq_conn **out, kw_reply *r);
/* sq_acquire() with every statement prepared, for the operations that use
 * several. */
kw_status sq_acquire_all(struct sq_state *st, struct sq_conn **out,
			 kw_reply *r);
/* A connection from the pool without waiting, else a new one counted in
 * it (a SQLite code; open() must not wait for lookups). */
int sq_take(struct sq_state *st, struct sq_conn **out);
/* Give it back; one left inside a transaction is rolled back or dropped.
 * NULL is a no-op. */
void sq_release(struct sq_state *st, struct sq_conn *c);

/* ---- pools ---- */

/* A new pool of one reference for st (st->pool), reporting through
 * host->error(). */
kw_status sq_pool_new(struct sq_state *st);
/*
 * Join the shared pool this process opened on the file sb describes with
 * st's busy timeout: st->pool, with a reference more.  NULL: there is
 * none; open the file and share its pool with sq_pool_share().
 */
struct sq_pool *sq_pool_join(struct sq_state *st, const struct stat *sb);
/* Offer st's pool, just opened on the file sb describes, to the instances
 * opened after it (unless another thread was first). */
void sq_pool_share(struct sq_state *st, const struct stat *sb);
/* Enter st's pool in the registry for sq_refuse_inherited() only:
 * nothing joins it. */
void sq_pool_register(struct sq_state *st);
/* Drop st's reference to its pool; the last one closes the connections.
 * No pool is a no-op. */
void sq_pool_put(const struct sq_state *st);
/*
 * Refuse, in a child, a file that a pool inherited from its parent has
 * open (KW_ERR_INVAL, reported through host->error()).
 */
kw_status sq_refuse_inherited(const struct sq_state *st);

/* ---- WAL ---- */

/*
 * At the last close, which otherwise leaves the WAL to the next opener:
 * copy it into the file and truncate it, without waiting for a reader
 * (one makes it a passive checkpoint, which empties nothing).  The
 * connection's busy handler is gone afterwards.
 */
void sq_wal_empty(sqlite3 *db);
/* Put the database in WAL mode, reporting through host->error(). */
kw_status sq_wal(const struct sq_state *st, sqlite3 *db);

/* ---- schemas (files.c) ---- */

/*
 * A new file's records besides its schema, written in the transaction that
 * creates it (sq_schema_steps()): a SQLite code.
 */
typedef int sq_fill_fn(const struct sq_state *st, sqlite3 *db,
		       const void *arg);
/*
 * The steps of a migration, inside its transaction: st->kind's migrations
 * from `version` to its newest schema, then, on a new file (version 0),
 * its application_id and what fill (unless NULL) writes, then the new
 * user_version.  *initialising turns true where a new file's own records
 * are written.  A SQLite code.
 */
int sq_schema_steps(const struct sq_state *st, sqlite3 *db, int64_t version,
		    sq_fill_fn *fill, const void *arg, bool *initialising);
/*
 * Refuse, through host->error(), a file whose schema `version` is newer
 * than this keyway knows, and roll the migration back: KW_ERR_BACKEND.
 */
kw_status sq_schema_newer(const struct sq_state *st, sqlite3 *db,
			  int64_t version);
/*
 * Report a failed migration through host->error() ("cannot WHAT NOUN
 * PATH: why") and roll it back; the status rc means.
 */
kw_status sq_schema_failed(const struct sq_state *st, sqlite3 *db,
			   const char *what, int rc);

/* ---- files and opening (files.c) ---- */

/*
 * Set up st for a role: the host, the instance, and the settings both
 * roles have (path, busy_timeout_ms); refuse a file a pool inherited
 * across fork() has open.  Reports through host->error().
 */
kw_status sq_open_common(struct sq_state *st, const kw_host *host,
			 kw_instance *inst, kw_instance_role role,
			 const struct sq_kind *kind);
/*
 * Create st->path 0600 if it is missing (in a check, report it instead),
 * and refuse a file, or a -wal or -shm file beside it, that is not private
 * to us.  Reports through host->error().
 */
kw_status sq_prepare_file(const struct sq_state *st);
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
/* How a check's connection reads st's file (files.c says why). */
enum sq_ro { SQ_RO_SHM, SQ_RO_IMMUTABLE, SQ_RO_NO_SHM };
enum sq_ro sq_check_how(const struct sq_state *st);
/* The file: URI of st->path for a check's connection, or NULL when there
 * is no memory or no way to read it (SQ_RO_NO_SHM).  Free it with
 * free(). */
char *sq_check_uri(const struct sq_state *st);
/*
 * Open a first connection and look at what the file holds before anything
 * writes to it; refuse, through host->error on `path`, a file of another
 * kind or a newer schema.  On KW_OK *out is the connection and *version
 * the file's schema version (0: new).
 */
kw_status sq_open_checked(struct sq_state *st, struct sq_conn **out,
			  int64_t *version);
/*
 * The health check of check(): refuse the file, its -wal and its -shm as
 * open() does, and a file or directory this process cannot write to; then
 * take a connection with every statement and run SQLite's quick_check.
 * On KW_OK *out is the connection, for the role to count what the file
 * holds; give it back with sq_release().  Else the reason is given
 * through r.
 */
kw_status sq_health(struct sq_state *st, struct sq_conn **out, kw_reply *r);

#endif /* KW_SQLITE_POOL_H */
