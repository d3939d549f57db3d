/*
 * sqlite.c - the sqlite backend: a store of sealed API keys in a SQLite
 * database, one key per (scope, owner, provider).
 *
 * Values are sealed by the host (AES-256-GCM under the master key, bound to
 * the store's id and the record), so the database only ever holds
 * ciphertext; a plaintext exists only in a reply buffer or in guarded
 * memory, for as long as it takes to hand it out or mask it.
 *
 * Several backends may share one file, each with its own scope: the scope
 * is part of every row's key.  Lookups run in parallel on a small pool of
 * connections (WAL mode, so readers never wait for a writer), each used by
 * one thread at a time with its statements prepared once.
 *
 * The same module, named as keyway.ledger, is the embedded quota ledger
 * instead (ledger.c): a file of its own, on the same kind of pool.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_PATH */
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
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

#include "sqlite_int.h"

#define SQ_BUSY_DEFAULT 5000    /* milliseconds */
#define SQ_BUSY_MAX 600000
#define SQ_CHECKPOINT_TRIES 4
#define SQ_DESC_MAX 320         /* "org key of \"OWNER\" for PROVIDER" */
#define SQ_MMAP_SIZE "1073741824"
#define SQ_WAL_CHECKPOINT 1000  /* pages: SQLite's wal_autocheckpoint */
#define SQ_WAL_KEEP 100         /* pages the WAL may keep past a close */

#ifdef SQLITE_OPEN_EXRESCODE
#define SQ_OPEN_EXRESCODE SQLITE_OPEN_EXRESCODE
#else
#define SQ_OPEN_EXRESCODE 0
#endif

/*
 * Migration N brings a store from schema version N - 1 to N; they run in
 * order, in one transaction, when a store is opened.  Only ever append.
 */
static const char *const sq_migrations[] = {
	/* 1: the first schema */
	"CREATE TABLE meta ("
	"  k TEXT PRIMARY KEY,"
	"  v BLOB NOT NULL"
	");"
	"CREATE TABLE keys ("
	"  scope TEXT NOT NULL,"
	"  owner TEXT NOT NULL,"
	"  provider TEXT NOT NULL,"
	"  name TEXT NOT NULL DEFAULT '',"
	"  active INTEGER NOT NULL DEFAULT 1,"
	"  sealed BLOB NOT NULL,"
	"  key_id TEXT NOT NULL,"
	"  usage_count INTEGER NOT NULL DEFAULT 0,"
	"  last_used INTEGER NOT NULL DEFAULT 0,"
	"  created INTEGER NOT NULL,"
	"  rotated INTEGER NOT NULL,"
	"  PRIMARY KEY (scope, owner, provider)"
	") WITHOUT ROWID;"
	"CREATE INDEX keys_key_id ON keys (key_id);",
};

#define SQ_SCHEMA_VERSION \
	((int)(sizeof(sq_migrations) / sizeof(sq_migrations[0])))

/* Statements every connection prepares once. */
enum sq_stmt {
	SQ_LOOKUP,
	SQ_INSERT,
	SQ_ROTATE,
	SQ_ACTIVE,
	SQ_DELETE,
	SQ_LIST,
	SQ_LIST_OWNER,
	SQ_STALE,
	SQ_RESEAL,
	SQ_COUNT,
	SQ_USED,
	SQ_FETCH,
	SQ_FETCH_ALL,
	SQ_BEGIN_WRITE,
	SQ_COMMIT,
	SQ_NSTMTS
};

/* ?1 scope, ?2 owner ('' for system keys), ?3 provider throughout. */
static const char *const sq_sql[SQ_NSTMTS] = {
	[SQ_LOOKUP] = "SELECT sealed, active FROM keys"
		      " WHERE scope = ?1 AND owner = ?2 AND provider = ?3",
	[SQ_INSERT] = "INSERT INTO keys (scope, owner, provider, name, sealed,"
		      " key_id, created, rotated)"
		      " VALUES (?1, ?2, ?3, coalesce(?4, ''), ?5, ?6, ?7, ?7)",
	[SQ_ROTATE] = "UPDATE keys SET sealed = ?5, key_id = ?6, rotated = ?7,"
		      " name = coalesce(?4, name)"
		      " WHERE scope = ?1 AND owner = ?2 AND provider = ?3",
	[SQ_ACTIVE] = "UPDATE keys SET active = ?4"
		      " WHERE scope = ?1 AND owner = ?2 AND provider = ?3",
	[SQ_DELETE] = "DELETE FROM keys"
		      " WHERE scope = ?1 AND owner = ?2 AND provider = ?3",
	[SQ_LIST] = "SELECT owner, provider, name, active, sealed, key_id,"
		    " usage_count, last_used, created, rotated FROM keys"
		    " WHERE scope = ?1 ORDER BY owner, provider",
	[SQ_LIST_OWNER] = "SELECT owner, provider, name, active, sealed,"
			  " key_id, usage_count, last_used, created, rotated"
			  " FROM keys WHERE scope = ?1 AND owner = ?2"
			  " ORDER BY owner, provider",
	[SQ_STALE] = "SELECT owner, provider FROM keys"
		     " WHERE scope = ?1 AND key_id <> ?2"
		     " ORDER BY owner, provider",
	[SQ_RESEAL] = "UPDATE keys SET sealed = ?4, key_id = ?5"
		      " WHERE scope = ?1 AND owner = ?2 AND provider = ?3",
	[SQ_COUNT] = "SELECT count(*) FROM keys WHERE scope = ?1",
	[SQ_USED] = "UPDATE keys SET usage_count = usage_count + ?4,"
		    " last_used = max(last_used, ?5)"
		    " WHERE scope = ?1 AND owner = ?2 AND provider = ?3",
	/* Every row a request could be answered from, one seek each, so
	 * that a walk's lookups in the file read one snapshot: the user's
	 * and the org's key, and with FETCH_ALL the system key too. */
	[SQ_FETCH] = "SELECT 1, sealed, active FROM keys"
		     " WHERE scope = 'user' AND owner = ?1 AND provider = ?3"
		     " UNION ALL SELECT 2, sealed, active FROM keys"
		     " WHERE scope = 'org' AND owner = ?2 AND provider = ?3",
	[SQ_FETCH_ALL] = "SELECT 1, sealed, active FROM keys"
			 " WHERE scope = 'user' AND owner = ?1"
			 " AND provider = ?3"
			 " UNION ALL SELECT 2, sealed, active FROM keys"
			 " WHERE scope = 'org' AND owner = ?2 AND provider = ?3"
			 " UNION ALL SELECT 3, sealed, active FROM keys"
			 " WHERE scope = 'system' AND owner = ''"
			 " AND provider = ?3",
	[SQ_BEGIN_WRITE] = "BEGIN IMMEDIATE",
	[SQ_COMMIT] = "COMMIT",
};

_Static_assert(SQ_NSTMTS <= SQ_STMTS_MAX, "raise SQ_STMTS_MAX");

static const char *sq_scope_word(kw_scope scope)
{
	switch (scope) {
	case KW_SCOPE_USER:
		return "user";
	case KW_SCOPE_ORG:
		return "org";
	case KW_SCOPE_SYSTEM:
		return "system";
	default:
		return NULL;
	}
}

/* Append s to buf (size bytes, *len used), truncating. */
static void sq_append(char *buf, size_t size, size_t *len, const char *s)
{
	size_t n = strlen(s);

	if (n > size - 1 - *len)
		n = size - 1 - *len;
	memcpy(buf + *len, s, n);
	*len += n;
	buf[*len] = '\0';
}

/*
 * Append "org key of "acme" for anthropic", "system key for anthropic".
 * Without printf: a lookup's miss, as common as a hit, says it.
 */
static void sq_describe_to(char *buf, size_t size, size_t *len,
			   kw_scope scope, const char *owner,
			   const char *provider)
{
	const char *word = sq_scope_word(scope);

	sq_append(buf, size, len, word != NULL ? word : "unscoped");
	if (scope == KW_SCOPE_SYSTEM || owner == NULL) {
		sq_append(buf, size, len, " key for ");
	} else {
		sq_append(buf, size, len, " key of \"");
		sq_append(buf, size, len, owner);
		sq_append(buf, size, len, "\" for ");
	}
	sq_append(buf, size, len, provider);
}

static const char *sq_describe(char *buf, size_t size, kw_scope scope,
			       const char *owner, const char *provider)
{
	size_t len = 0;

	buf[0] = '\0';
	sq_describe_to(buf, size, &len, scope, owner, provider);
	return buf;
}

/* The owner column: '' stands for "no owner" (system keys). */
static const char *sq_owner_col(const char *owner)
{
	return owner != NULL ? owner : "";
}

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

kw_status sq_wrong_role(const struct sq_state *st, kw_reply *r)
{
	if (st->role == KW_INSTANCE_LEDGER)
		st->host->reply_detail(r, "%s is the quota ledger, not a key "
				       "store", st->path);
	else
		st->host->reply_detail(r, "%s is a key store, not the quota "
				       "ledger", st->path);
	return KW_ERR_UNSUPPORTED;
}

void sq_done(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

static int sq_bind_key(sqlite3_stmt *s, const char *scope_word,
		       const char *owner, const char *provider)
{
	int rc;

	rc = sqlite3_bind_text(s, 1, scope_word, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 2, sq_owner_col(owner), -1,
				       SQLITE_STATIC);
	if (rc == SQLITE_OK && provider != NULL)
		rc = sqlite3_bind_text(s, 3, provider, -1, SQLITE_STATIC);
	return rc;
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

int sq_inspect(sqlite3 *db, int64_t *version, int64_t *app_id,
	       int64_t *nobjects)
{
	sqlite3_stmt *s = NULL;
	int rc;

	*version = *app_id = *nobjects = 0;
	rc = sqlite3_prepare_v2(db,
				"SELECT (SELECT user_version"
				"         FROM pragma_user_version),"
				"       (SELECT application_id"
				"         FROM pragma_application_id),"
				"       (SELECT count(*) FROM sqlite_master)",
				-1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*version = sqlite3_column_int64(s, 0);
		*app_id = sqlite3_column_int64(s, 1);
		*nobjects = sqlite3_column_int64(s, 2);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_MISUSE;
	}
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

/* A connection's statement i of st->sql, prepared at its first use. */
static int sq_stmt(const struct sq_state *st, struct sq_conn *c, int i,
		   sqlite3_stmt **out)
{
	int rc = SQLITE_OK;

	if (c->stmt[i] == NULL)
		rc = sqlite3_prepare_v3(c->db, st->sql[i], -1,
					SQLITE_PREPARE_PERSISTENT, &c->stmt[i],
					NULL);
	*out = c->stmt[i];
	return rc;
}

/*
 * How a check reads st's file without writing to it or creating a file
 * beside it.  SQLite reads a WAL-mode database through its -wal and -shm
 * files, and a read-only connection still creates them when they are
 * missing, and rewrites the -shm when it is the first to map it.  With
 * both there, readonly_shm maps the -shm without writing to it (with no
 * other process on the file, SQLite builds its index of the WAL in its own
 * memory).  With no -wal, or one too short to hold a frame, the file holds
 * the whole database: it is opened immutable, which reads neither.  A -wal
 * with frames but no -shm cannot be read without making one.
 */
enum sq_ro { SQ_RO_SHM, SQ_RO_IMMUTABLE, SQ_RO_NO_SHM };

static enum sq_ro sq_check_how(const struct sq_state *st)
{
	const off_t wal_header = 32;
	char path[PATH_MAX];
	struct stat wal, shm;
	bool has_wal, has_shm;

	snprintf(path, sizeof(path), "%s-wal", st->path);
	has_wal = stat(path, &wal) == 0;
	snprintf(path, sizeof(path), "%s-shm", st->path);
	has_shm = stat(path, &shm) == 0;
	if (has_wal && has_shm)
		return SQ_RO_SHM;
	if (!has_wal || wal.st_size <= wal_header)
		return SQ_RO_IMMUTABLE;
	return SQ_RO_NO_SHM;
}

/* The file: URI of st->path for a check's connection (see above), or NULL
 * when there is no memory or no way to read it. */
static char *sq_check_uri(const struct sq_state *st)
{
	static const char keep[] = "/._-~";
	const char *query;
	size_t len = strlen(st->path), size;
	char *uri, *p;

	switch (sq_check_how(st)) {
	case SQ_RO_SHM:
		query = "?mode=ro&readonly_shm=1";
		break;
	case SQ_RO_IMMUTABLE:
		query = "?mode=ro&immutable=1";
		break;
	default:
		return NULL;
	}
	size = sizeof("file://") + 3 * len + strlen(query);
	uri = malloc(size);
	if (uri == NULL)
		return NULL;
	/* An absolute path gets an empty authority: "file:///..."; every
	 * byte but these few is %-escaped (a '?' or '#' would end it). */
	p = uri + snprintf(uri, size, "file:%s",
			   st->path[0] == '/' ? "//" : "");
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)st->path[i];

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || strchr(keep, ch) != NULL)
			*p++ = (char)ch;
		else
			p += snprintf(p, size - (size_t)(p - uri), "%%%02X",
				      ch);
	}
	snprintf(p, size - (size_t)(p - uri), "%s", query);
	return uri;
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
	int64_t on;
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
	if (rc != SQLITE_OK)
		goto out;
	sqlite3_extended_result_codes(c->db, 1);
	/* The schema is ours alone: no writable_schema tricks, no functions
	 * run from it, no double-quoted strings taken for identifiers. */
	sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
	sqlite3_db_config(c->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0,
			  (int *)NULL);
	sqlite3_db_config(c->db, SQLITE_DBCONFIG_DQS_DML, 0, (int *)NULL);
	sqlite3_db_config(c->db, SQLITE_DBCONFIG_DQS_DDL, 0, (int *)NULL);
	rc = sqlite3_busy_handler(c->db, sq_busy, (void *)st->pool);
	if (rc != SQLITE_OK)
		goto out;
	rc = sqlite3_exec(c->db,
			  "PRAGMA synchronous = NORMAL;"
			  "PRAGMA foreign_keys = ON;"
			  "PRAGMA trusted_schema = OFF;"
			  "PRAGMA temp_store = MEMORY;",
			  NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto out;
	/* Erasing a key relies on it: refuse a SQLite that cannot.  A
	 * ledger holds counts, not secrets, and is spared the cost. */
	if (st->role == KW_INSTANCE_BACKEND) {
		rc = sq_int(c->db, "PRAGMA secure_delete = ON", &on);
		if (rc == SQLITE_OK && on != 1)
			rc = SQLITE_MISUSE;
		/* A lookup reads its pages without a read() each: the page
		 * cache holds a small part of a large store.  Address space,
		 * not memory: the kernel's page cache backs it. */
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(c->db, "PRAGMA mmap_size = "
					  SQ_MMAP_SIZE, NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			sqlite3_wal_hook(c->db, sq_wal_hook, st->pool);
	}
	/*
	 * The last connection to close would checkpoint the WAL and delete
	 * it, and the next opener create it again: syncs for every
	 * short-lived process (a `keyway get` writes its usage count, and
	 * its charge).  The WAL stays instead, and the last close empties
	 * it only once it is long (sq_pool_put(), sq_ledger_free()): the
	 * first opener after it reads all of it.
	 */
	sqlite3_db_config(c->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1,
			  (int *)NULL);
	for (int i = 0; prepare && rc == SQLITE_OK && i < st->nsql; i++)
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
		rc = sq_conn_open(st, st->role != KW_INSTANCE_BACKEND, &c);
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
	return sq_fail(st, r, "open", rc);
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

/* A connection from the pool without waiting, else a new one counted in
 * it (when the pool is full, a new one all the same: open() must not
 * wait for lookups). */
static int sq_take(struct sq_state *st, struct sq_conn **out)
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

/* A statement that failed on c, with SQLite's own words for why ("no
 * such column: ..." where sq_fail() would say "SQL logic error"). */
static kw_status sq_fail_conn(const struct sq_state *st,
				   struct sq_conn *c, kw_reply *r, int rc)
{
	st->host->reply_detail(r, "cannot read %s: %s", st->path,
			       sqlite3_errmsg(c->db));
	return sq_status(rc) == KW_ERR_EXISTS ? KW_ERR_BACKEND : sq_status(rc);
}

/* A connection with every statement prepared, for the operations that
 * use several: storing, listing, checking, rekeying. */
static kw_status sq_acquire_all(struct sq_state *st, struct sq_conn **out,
				kw_reply *r)
{
	sqlite3_stmt *s;
	kw_status ret;
	int rc = SQLITE_OK;

	ret = sq_acquire(st, out, r);
	for (int i = 0; ret == KW_OK && rc == SQLITE_OK && i < st->nsql; i++)
		rc = sq_stmt(st, *out, i, &s);
	if (ret == KW_OK && rc != SQLITE_OK) {
		ret = sq_fail_conn(st, *out, r, rc);
		sq_release(st, *out);
		*out = NULL;
	}
	return ret;
}

/* Step a statement that returns no row, and make it ready again. */
static int sq_run(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* ---- pools ---- */

/* The pools of key stores, shared by every instance naming the file. */
static pthread_mutex_t sq_pools_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sq_pool *sq_pools;

static kw_status sq_pool_new(struct sq_state *st)
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

/* Drop st's reference to its pool; the last one closes the connections. */
static void sq_pool_put(const struct sq_state *st)
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
	if (st->role == KW_INSTANCE_BACKEND && p->idle != NULL &&
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

/* ---- walks ---- */

/*
 * A chain often asks several backends on one file for the same request:
 * the org's key, else the user's.  The first lookup of a walk in a file
 * that more than one scope uses fetches the rows of every scope in one
 * statement (one read transaction, one snapshot), and the walk's other
 * lookups in that file answer from them, until walk_end().  The rows hold
 * sealed values only.  One file at a time per thread.
 */
#define SQ_ROW_INLINE 320 /* a sealed value this long needs no malloc() */

struct sq_row {
	bool found;
	bool active;
	size_t len;
	unsigned char *sealed;  /* inline, or malloc'd when longer */
	unsigned char inline_buf[SQ_ROW_INLINE];
};

struct sq_walk {
	const struct sq_pool *pool; /* NULL: nothing fetched */
	const char *provider, *user, *org;
	struct sq_row rows[3];      /* by scope, KW_SCOPE_USER first */
};

static __thread struct sq_walk sq_walk;

_Static_assert(KW_SCOPE_USER == 1 && KW_SCOPE_ORG == 2 &&
		       KW_SCOPE_SYSTEM == 3,
	       "SQ_FETCH answers scopes 1, 2 and 3 in that order");

static void sq_walk_clear(struct sq_walk *w)
{
	for (int i = 0; i < 3; i++) {
		struct sq_row *r = &w->rows[i];

		if (r->sealed != r->inline_buf)
			free(r->sealed);
		r->sealed = NULL;
		r->found = false;
	}
	w->pool = NULL;
}

static void sq_walk_end(void *state)
{
	const struct sq_state *st = state;

	if (sq_walk.pool == st->pool)
		sq_walk_clear(&sq_walk);
}

static bool sq_same(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Is what the walk fetched the answer to q? */
static const struct sq_row *sq_walk_row(const struct sq_state *st,
					const kw_query *q)
{
	const struct sq_walk *w = &sq_walk;

	if (w->pool != st->pool || !sq_same(w->provider, q->provider) ||
	    !sq_same(w->user, q->user) || !sq_same(w->org, q->org))
		return NULL;
	return &w->rows[st->scope - 1];
}

/* Fetch the rows of every scope the file's stores hold (`scopes`) for q's
 * request into the walk: a seek each. */
static int sq_walk_fetch(struct sq_state *st, struct sq_conn *c,
			 const kw_query *q, unsigned scopes)
{
	struct sq_walk *w = &sq_walk;
	sqlite3_stmt *s;
	int rc;

	sq_walk_clear(w);
	rc = sq_stmt(st, c,
		     scopes & (1u << KW_SCOPE_SYSTEM) ? SQ_FETCH_ALL : SQ_FETCH,
		     &s);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_bind_text(s, 1, q->user, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 2, q->org, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 3, q->provider, -1, SQLITE_STATIC);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		int64_t i = sqlite3_column_int64(s, 0);
		const void *v = sqlite3_column_blob(s, 1);
		int n = sqlite3_column_bytes(s, 1);
		struct sq_row *r;

		if (i < 1 || i > 3)
			continue;
		r = &w->rows[i - 1];
		r->sealed = (size_t)n <= sizeof(r->inline_buf)
				    ? r->inline_buf
				    : malloc((size_t)n);
		if (r->sealed == NULL) {
			rc = SQLITE_NOMEM;
			break;
		}
		if (n > 0)
			memcpy(r->sealed, v, (size_t)n);
		r->len = (size_t)n;
		r->active = sqlite3_column_int64(s, 2) != 0;
		r->found = true;
		rc = SQLITE_OK;
	}
	sq_done(s);
	if (rc != SQLITE_DONE) {
		sq_walk_clear(w);
		return rc;
	}
	w->pool = st->pool;
	w->provider = q->provider;
	w->user = q->user;
	w->org = q->org;
	return SQLITE_OK;
}

/*
 * Move everything the WAL holds into the database file and empty the WAL,
 * so that no older frame still holds bytes the database no longer does.  A
 * reader holding an old snapshot keeps it from finishing; try a few times.
 */
static int sq_checkpoint(sqlite3 *db)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	int rc = SQLITE_OK;

	for (int i = 0; i < SQ_CHECKPOINT_TRIES; i++) {
		if (i > 0) {
			nanosleep(&ts, NULL);
			ts.tv_nsec *= 2;
		}
		rc = sqlite3_wal_checkpoint_v2(db, "main",
					       SQLITE_CHECKPOINT_TRUNCATE,
					       NULL, NULL);
		if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
			break;
	}
	return rc;
}

/*
 * Erase what a deleted row leaves behind.  secure_delete zeroes the cell
 * and freed pages, but b-tree balancing copies live cells between pages
 * and leaves the old copies in the unallocated gap of pages that stay in
 * use, where no later delete reaches them.  VACUUM rebuilds every page
 * from the live rows (in memory: temp_store), and the checkpoint writes the
 * rebuilt file and empties the WAL.  It costs a pass over the store, which
 * a delete (a rare, deliberate act) can afford.
 */
static int sq_erase(sqlite3 *db)
{
	int rc = sqlite3_exec(db, "VACUUM", NULL, NULL, NULL);

	return rc == SQLITE_OK ? sq_checkpoint(db) : rc;
}

/* ---- opening a store ---- */

bool sq_checking(const struct sq_state *st)
{
	return KW_HOST_HAS(st->host, open_flags) &&
	       (st->host->open_flags(st->inst) & KW_OPEN_CHECK) != 0;
}

/*
 * Why the file at path may not be trusted, by the rules (and in the words)
 * of host->open_private(), but looking through an O_PATH descriptor.
 * Closing any other descriptor of the file drops every POSIX lock this
 * process holds on it, SQLite's included: another process could then
 * think itself the last user of the database and take its WAL from under
 * a connection still open here (another backend on the same file, another
 * context on the same ledger).  Closing an O_PATH descriptor drops none.
 * `holds` says what the file holds, for the message; `sidecar` marks the
 * -wal and -shm files SQLite keeps beside the database, which need not
 * exist.
 */
static kw_status sq_file_refusal(const char *path, const char *holds,
				 bool sidecar, char *why, size_t whylen)
{
	kw_status rc = KW_ERR_PERM;
	struct stat sb;
	int fd, e;

	fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) != 0) {
		e = errno;
		if (sidecar && e == ENOENT)
			rc = KW_OK;
		else
			snprintf(why, whylen, "%s: %s", path, strerror(e));
		if (rc != KW_OK)
			rc = e == ENOENT ? KW_ERR_NOTFOUND
					 : e == EACCES ? KW_ERR_PERM : KW_ERR_IO;
	} else if (S_ISLNK(sb.st_mode)) {
		snprintf(why, whylen,
			 sidecar ? "%s is a symbolic link, which SQLite would "
				   "follow: remove it"
				 : "%s is a symbolic link; point the setting at "
				   "the file itself",
			 path);
	} else if (!S_ISREG(sb.st_mode)) {
		snprintf(why, whylen, "%s is not a regular file", path);
	} else if (sb.st_uid != 0 && sb.st_uid != geteuid()) {
		snprintf(why, whylen,
			 "%s is owned by uid %u; it must belong to root or "
			 "uid %u",
			 path, (unsigned)sb.st_uid, (unsigned)geteuid());
	} else if (sb.st_mode & 077) {
		snprintf(why, whylen,
			 "%s is accessible by group or others (mode %04o); "
			 "it holds %s: chmod 600 it",
			 path, (unsigned)(sb.st_mode & 07777), holds);
	} else {
		rc = KW_OK;
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

/*
 * The database, then its -wal and -shm files when they are there: SQLite
 * reads a WAL it finds beside the file as part of the database, and
 * writes through a -shm another user may map.  On refusal writes why.
 */
static kw_status sq_files_refusal(const struct sq_state *st, char *why,
				  size_t whylen)
{
	static const char *const suffix[] = { "", "-wal", "-shm" };
	const bool ledger = st->role == KW_INSTANCE_LEDGER;
	const char *holds = ledger ? "the usage log" : "secrets";
	char path[PATH_MAX];
	kw_status rc = KW_OK;

	for (size_t i = 0; rc == KW_OK && i < 3; i++) {
		if (snprintf(path, sizeof(path), "%s%s", st->path,
			     suffix[i]) >= (int)sizeof(path)) {
			snprintf(why, whylen, "%s: path too long", st->path);
			return KW_ERR_CONFIG;
		}
		rc = sq_file_refusal(path,
				     i < 2 ? holds
					   : "the index of the write-ahead log",
				     i > 0, why, whylen);
	}
	return rc;
}

/*
 * Refuse a file that is not private to us, nor its -wal and -shm files.
 * In a check (KW_OPEN_CHECK) a missing file is reported, with how to make
 * it, instead of being created.
 */
static kw_status sq_check_private(const struct sq_state *st, const char *what)
{
	char why[1024];
	kw_status rc = sq_files_refusal(st, why, sizeof(why));

	if (rc == KW_ERR_NOTFOUND && sq_checking(st))
		st->host->error(st->inst, "path",
				"%s %s does not exist: create it with keyway "
				"init%s",
				what, st->path,
				strcmp(what, "store") == 0
					? " (or a first keyway put)"
					: "");
	else if (rc != KW_OK)
		st->host->error(st->inst, "path", "%s", why);
	return rc;
}

kw_status sq_check_files(const struct sq_state *st, kw_reply *r)
{
	const kw_host *host = st->host;
	const char *noun = st->role == KW_INSTANCE_LEDGER ? "ledger" : "store";
	char why[1024], dir[PATH_MAX];
	char *slash;
	struct stat sb;
	kw_status rc;

	rc = sq_files_refusal(st, why, sizeof(why));
	if (rc != KW_OK) {
		host->reply_detail(r, "%s", why);
		return rc;
	}
	/* Every program that opens it writes to it: usage counts, charges,
	 * the WAL.  Root writes past the mode, so look at the mode too. */
	if (stat(st->path, &sb) == 0 && (sb.st_mode & S_IWUSR) == 0) {
		host->reply_detail(r,
				   "%s %s is read-only (mode %04o); keyway "
				   "writes to it: chmod 600 it",
				   noun, st->path,
				   (unsigned)(sb.st_mode & 07777));
		return KW_ERR_PERM;
	}
	if (euidaccess(st->path, W_OK) != 0) {
		host->reply_detail(r, "%s %s cannot be written by uid %u: %s",
				   noun, st->path, (unsigned)geteuid(),
				   strerror(errno));
		return KW_ERR_PERM;
	}
	snprintf(dir, sizeof(dir), "%s", st->path);
	slash = strrchr(dir, '/');
	if (slash != NULL)
		slash[slash == dir ? 1 : 0] = '\0';
	if (slash != NULL && euidaccess(dir, W_OK | X_OK) != 0) {
		host->reply_detail(r,
				   "directory %s cannot be written by uid %u "
				   "(%s), and SQLite makes the %s's -wal and "
				   "-shm files there: give uid %u a directory "
				   "for the %s",
				   dir, (unsigned)geteuid(), strerror(errno),
				   noun, (unsigned)geteuid(), noun);
		return KW_ERR_PERM;
	}
	return KW_OK;
}

/*
 * The file gets 0600 from the start (SQLite gives the -wal and -shm files
 * the database's mode).
 */
kw_status sq_prepare_file(const struct sq_state *st, const char *what)
{
	const kw_host *host = st->host;
	kw_instance *inst = st->inst;
	const char *path = st->path;
	int fd;

	/* A check looks at what is there: sq_check_private() reports a
	 * missing file. */
	if (sq_checking(st))
		return sq_check_private(st, what);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC |
			O_NOCTTY, 0600);
	if (fd >= 0) {
		/* Whatever the umask took away, the owner must be able to
		 * read and write. */
		if (fchmod(fd, 0600) != 0) {
			host->error(inst, "path", "cannot chmod %s: %s", path,
				    strerror(errno));
			close(fd);
			return KW_ERR_IO;
		}
		close(fd);
		/* A -wal or -shm left beside it would be read with it. */
		return sq_check_private(st, what);
	}
	if (errno != EEXIST) {
		int e = errno;

		host->error(inst, "path", "cannot create %s %s: %s", what,
			    path, strerror(e));
		return e == EACCES ? KW_ERR_PERM : KW_ERR_IO;
	}
	return sq_check_private(st, what);
}

/*
 * Leaving rollback mode takes the exclusive lock.  Processes opening a new
 * file together all try at once, and SQLite answers BUSY at once (without
 * its busy handler) to one that would deadlock waiting: retry here, for as
 * long as the busy timeout allows.
 */
kw_status sq_wal(const struct sq_state *st, sqlite3 *db, const char *what)
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
				"cannot put %s %s in WAL mode: %s", what,
				st->path,
				rc == SQLITE_ROW ? "the file system does not "
						   "support it"
						 : sqlite3_errmsg(db));
		ret = rc == SQLITE_ROW ? KW_ERR_BACKEND : sq_status(rc);
	}
	sqlite3_finalize(s);
	return ret;
}

/* Read meta's store_id and kdf_salt. */
static kw_status sq_read_meta(struct sq_state *st, kw_instance *inst,
			      sqlite3 *db, unsigned char salt[KW_SALT_SIZE])
{
	const kw_host *host = st->host;
	sqlite3_stmt *s = NULL;
	const unsigned char *v;
	bool have_id = false, have_salt = false;
	kw_status ret = KW_OK;
	int rc, n;

	rc = sqlite3_prepare_v2(db,
				"SELECT k, v FROM meta"
				" WHERE k IN ('store_id', 'kdf_salt')",
				-1, &s, NULL);
	while (rc == SQLITE_OK || rc == SQLITE_ROW) {
		if ((rc = sqlite3_step(s)) != SQLITE_ROW)
			break;
		const char *k = (const char *)sqlite3_column_text(s, 0);
		bool hex = true;

		v = sqlite3_column_blob(s, 1);
		n = sqlite3_column_bytes(s, 1);
		if (k != NULL && strcmp(k, "kdf_salt") == 0) {
			if (v == NULL || n != KW_SALT_SIZE)
				goto damaged;
			memcpy(salt, v, KW_SALT_SIZE);
			have_salt = true;
			continue;
		}
		if (v == NULL || n != SQ_STORE_ID_LEN)
			goto damaged;
		for (int i = 0; i < n; i++)
			hex = hex && ((v[i] >= '0' && v[i] <= '9') ||
				      (v[i] >= 'a' && v[i] <= 'f'));
		if (!hex)
			goto damaged;
		memcpy(st->store_id, v, SQ_STORE_ID_LEN);
		st->store_id[SQ_STORE_ID_LEN] = '\0';
		have_id = true;
	}
	if (rc != SQLITE_DONE) {
		host->error(inst, "path", "cannot read store %s: %s", st->path,
			    sqlite3_errmsg(db));
		ret = sq_status(rc);
		goto out;
	}
	if (!have_id || !have_salt) {
		host->error(inst, "path",
			    "store %s is damaged: its meta table has no %s",
			    st->path, !have_id ? "store_id" : "kdf_salt");
		ret = KW_ERR_BACKEND;
	}
	goto out;

damaged:
	host->error(inst, "path", "store %s is damaged: meta %s is malformed",
		    st->path, (const char *)sqlite3_column_text(s, 0));
	ret = KW_ERR_BACKEND;
out:
	sqlite3_finalize(s);
	return ret;
}

/*
 * Refuse a store that holds keys sealed under a master key we do not have:
 * they could never be handed out, and rekey could not move them.
 */
static kw_status sq_check_key_ids(struct sq_state *st, kw_instance *inst,
				  sqlite3 *db)
{
	const kw_host *host = st->host;
	sqlite3_stmt *first = NULL, *next = NULL, *s;
	char id[KW_KEY_ID_SIZE] = "";
	kw_status ret = KW_OK;
	int rc;

	/* One seek in keys_key_id per distinct id: a store of a million keys
	 * opens as fast as an empty one. */
	rc = sqlite3_prepare_v2(db, "SELECT min(key_id) FROM keys", -1,
				&first, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "SELECT min(key_id) FROM keys"
					    " WHERE key_id > ?1",
					-1, &next, NULL);
	for (s = first; rc == SQLITE_OK; s = next) {
		const char *v;
		int n;

		if (s == next)
			rc = sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(s);
		if (rc != SQLITE_ROW)
			break;
		if (sqlite3_column_type(s, 0) == SQLITE_NULL) {
			rc = SQLITE_DONE;
			break;
		}
		/* An id is hex text: anything else would not move the seek
		 * on, and no master key has it. */
		v = (const char *)sqlite3_column_text(s, 0);
		n = sqlite3_column_bytes(s, 0);
		if (sqlite3_column_type(s, 0) != SQLITE_TEXT || v == NULL ||
		    (size_t)n != strlen(v) || (size_t)n >= sizeof(id) ||
		    strcmp(v, id) <= 0) {
			host->error(inst, "path",
				    "store %s is damaged: a key_id is not a "
				    "master key id",
				    st->path);
			ret = KW_ERR_BACKEND;
			goto out;
		}
		if (!host->keyring_knows(st->kr, v)) {
			host->error(inst, "path",
				    "%s holds keys sealed under master key %s, "
				    "which neither keyway.master_key nor "
				    "keyway.old_master_keys holds",
				    st->path, v);
			ret = KW_ERR_CRYPTO;
			goto out;
		}
		memcpy(id, v, (size_t)n + 1);
		rc = sqlite3_reset(s);
	}
	if (rc != SQLITE_DONE) {
		host->error(inst, "path", "cannot read store %s: %s", st->path,
			    sqlite3_errmsg(db));
		ret = sq_status(rc);
	}
out:
	sqlite3_finalize(first);
	sqlite3_finalize(next);
	return ret;
}

/*
 * Bring the schema up to date in one transaction.  Another process may be
 * doing the same: the version is read again under the write lock, and
 * meta is only filled in when this process creates the schema.
 */
static kw_status sq_migrate(struct sq_state *st, kw_instance *inst,
			    sqlite3 *db, const unsigned char *salt)
{
	const kw_host *host = st->host;
	sqlite3_stmt *s = NULL;
	char sql[64];
	int64_t version;
	const char *what = "update";
	int rc;

	rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	rc = sq_int(db, "PRAGMA user_version", &version);
	if (rc != SQLITE_OK)
		goto fail;
	if (version > SQ_SCHEMA_VERSION) {
		host->error(inst, "path",
			    "store %s has schema version %" PRId64 "; this "
			    "keyway knows up to %d",
			    st->path, version, SQ_SCHEMA_VERSION);
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return KW_ERR_BACKEND;
	}
	if (version == SQ_SCHEMA_VERSION) {
		/* Another process got there first. */
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			goto fail;
		return KW_OK;
	}
	for (int64_t v = version; v < SQ_SCHEMA_VERSION; v++) {
		rc = sqlite3_exec(db, sq_migrations[v], NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			goto fail;
	}
	if (version == 0) {
		what = "initialise";
		snprintf(sql, sizeof(sql), "PRAGMA application_id = %d",
			 SQ_APP_ID);
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			goto fail;
		rc = sqlite3_prepare_v2(db,
					"INSERT INTO meta (k, v) VALUES"
					" ('store_id', ?1), ('kdf_salt', ?2)",
					-1, &s, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_text(s, 1, st->store_id, -1,
					       SQLITE_STATIC);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_blob(s, 2, salt, KW_SALT_SIZE,
					       SQLITE_STATIC);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(s);
		if (rc != SQLITE_DONE)
			goto fail;
		sqlite3_finalize(s);
		s = NULL;
	}
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d",
		 SQ_SCHEMA_VERSION);
	rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	return KW_OK;

fail:
	host->error(inst, "path", "cannot %s store %s: %s", what, st->path,
		    sqlite3_errmsg(db));
	sqlite3_finalize(s);
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return sq_status(rc) == KW_ERR_EXISTS ? KW_ERR_BACKEND : sq_status(rc);
}

const struct sq_kind sq_store_kind = {
	SQ_APP_ID, SQ_LEDGER_APP_ID, SQ_SCHEMA_VERSION, "store",
	"is a keyway quota ledger, not a key store: give the backend a file "
	"of its own"
};

kw_status sq_open_checked(struct sq_state *st, const struct sq_kind *k,
			  struct sq_conn **out, int64_t *version)
{
	const kw_host *host = st->host;
	int64_t app_id = 0, nobjects = 0;
	kw_status ret = KW_ERR_BACKEND;
	struct sq_conn *c = NULL;
	int rc;

	*out = NULL;
	*version = 0;
	if (sq_checking(st) && sq_check_how(st) == SQ_RO_NO_SHM) {
		host->error(st->inst, "path",
			    "%s %s: its -wal holds changes and its -shm is "
			    "missing, which a check does not create: run "
			    "keyway init",
			    k->noun, st->path);
		return KW_ERR_BACKEND;
	}
	rc = sq_conn_open(st, false, &c);
	if (rc == SQLITE_OK)
		rc = sq_inspect(c->db, version, &app_id, &nobjects);
	if ((rc & 0xff) == SQLITE_NOTADB) {
		host->error(st->inst, "path", "%s is not a SQLite database",
			    st->path);
	} else if (rc != SQLITE_OK) {
		host->error(st->inst, "path", "cannot open %s %s: %s", k->noun,
			    st->path, sqlite3_errstr(rc));
		ret = sq_status(rc);
	} else if (app_id == k->other_app_id) {
		host->error(st->inst, "path", "%s %s", st->path, k->other);
	} else if ((app_id != 0 && app_id != k->app_id) ||
		   (*version == 0 && nobjects > 0)) {
		host->error(st->inst, "path",
			    "%s is a SQLite database but not a keyway %s",
			    st->path, k->noun);
	} else if (*version > k->schema) {
		host->error(st->inst, "path",
			    "%s %s has schema version %" PRId64 "; this "
			    "keyway knows up to %" PRId64,
			    k->noun, st->path, *version, k->schema);
	} else if (sq_checking(st) && *version == 0) {
		/* A check writes nothing: init creates the schema. */
		host->error(st->inst, "path", "%s %s is empty: run keyway init",
			    k->noun, st->path);
	} else if (sq_checking(st) && *version < k->schema) {
		host->error(st->inst, "path",
			    "%s %s: schema version %" PRId64 " needs an "
			    "update: run keyway init",
			    k->noun, st->path, *version);
	} else {
		*out = c;
		return KW_OK;
	}
	sq_conn_close(c);
	return ret;
}

/*
 * Open the store on a first connection: look at what the file holds, bind
 * the keyring to it and check its keys, and only then write to it (WAL
 * mode, schema).  The connection becomes the first of the pool.
 */
static kw_status sq_open_store(struct sq_state *st, kw_instance *inst)
{
	const kw_host *host = st->host;
	unsigned char salt[KW_SALT_SIZE], fresh[KW_SALT_SIZE];
	struct sq_conn *c = NULL;
	sqlite3_stmt *s;
	int64_t version;
	kw_status ret;
	int rc;

	ret = sq_open_checked(st, &sq_store_kind, &c, &version);
	if (ret != KW_OK)
		goto out;

	if (version > 0) {
		ret = sq_read_meta(st, inst, c->db, salt);
	} else {
		/* A new store: its identity is made here, written below. */
		unsigned char id[SQ_STORE_ID_LEN / 2];

		host->random(id, sizeof(id));
		for (size_t i = 0; i < sizeof(id); i++)
			snprintf(st->store_id + 2 * i, 3, "%02x", id[i]);
		host->random(salt, sizeof(salt));
		ret = KW_OK;
	}
	if (ret != KW_OK)
		goto out;
	/* It says itself what is wrong (no master key configured, ...). */
	ret = host->keyring_open(inst, salt, &st->kr);
	if (ret != KW_OK)
		goto out;
	if (version > 0) {
		ret = sq_check_key_ids(st, inst, c->db);
		if (ret != KW_OK)
			goto out;
	}

	/* Checked: from here on the file may be written, but not in a
	 * check, where sq_open_checked() refused any version but the
	 * current one. */
	ret = sq_checking(st) ? KW_OK : sq_wal(st, c->db, "store");
	if (ret != KW_OK)
		goto out;
	if (version < SQ_SCHEMA_VERSION) {
		ret = sq_migrate(st, inst, c->db, salt);
		atomic_store(&st->pool->changed, true);
		if (ret != KW_OK)
			goto out;
	}
	if (version == 0) {
		/* Another process may have created the schema first: its
		 * identity is the store's. */
		memcpy(fresh, salt, sizeof(fresh));
		ret = sq_read_meta(st, inst, c->db, salt);
		if (ret != KW_OK)
			goto out;
		if (memcmp(fresh, salt, sizeof(salt)) != 0) {
			host->keyring_close(st->kr);
			st->kr = NULL;
			ret = host->keyring_open(inst, salt, &st->kr);
			if (ret != KW_OK)
				goto out;
		}
		ret = sq_check_key_ids(st, inst, c->db);
		if (ret != KW_OK)
			goto out;
	}

	/* The statement lookups need proves the table is what it should be;
	 * the others are prepared when first used. */
	rc = sq_stmt(st, c, SQ_LOOKUP, &s);
	if (rc != SQLITE_OK) {
		host->error(inst, "path", "cannot read store %s: %s", st->path,
			    sqlite3_errmsg(c->db));
		ret = sq_status(rc) == KW_ERR_EXISTS ? KW_ERR_BACKEND
						      : sq_status(rc);
		goto out;
	}
	st->pool->idle = c;
	st->pool->nconns = 1;
	c = NULL;
	ret = KW_OK;
out:
	sq_conn_close(c);
	return ret;
}

/*
 * Another backend of this process opened the file: it is checked and up
 * to date.  This one needs the store's identity, a keyring of its own and
 * the check of the keys' master key ids against that keyring.
 */
static kw_status sq_join_store(struct sq_state *st, kw_instance *inst)
{
	unsigned char salt[KW_SALT_SIZE];
	struct sq_conn *c = NULL;
	kw_status ret;
	int rc;

	rc = sq_take(st, &c);
	if (rc != SQLITE_OK) {
		st->host->error(inst, "path", "cannot open store %s: %s",
				st->path, sqlite3_errstr(rc));
		return sq_status(rc);
	}
	ret = sq_read_meta(st, inst, c->db, salt);
	if (ret == KW_OK)
		ret = st->host->keyring_open(inst, salt, &st->kr);
	if (ret == KW_OK)
		ret = sq_check_key_ids(st, inst, c->db);
	sq_release(st, c);
	return ret;
}

/* This process's shared pool for the file sb describes; call with
 * sq_pools_lock held.  A pool inherited across fork() is the parent's:
 * its connections must not be used in the child. */
static struct sq_pool *sq_pool_find(const struct stat *sb, int busy_ms,
				    pid_t pid)
{
	struct sq_pool *p;

	for (p = sq_pools; p != NULL; p = p->next)
		if (p->dev == sb->st_dev && p->ino == sb->st_ino &&
		    p->busy_ms == busy_ms && p->pid == pid && !p->ledger)
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
static kw_status sq_refuse_inherited(const struct sq_state *st)
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

/* Enter the ledger's pool in the registry, for sq_refuse_inherited()
 * only: nothing joins it. */
static void sq_register_ledger(struct sq_state *st)
{
	struct sq_pool *p = st->pool;
	struct stat sb;

	if (stat(st->path, &sb) != 0)
		return;
	p->dev = sb.st_dev;
	p->ino = sb.st_ino;
	p->pid = getpid();
	p->ledger = true;
	pthread_mutex_lock(&sq_pools_lock);
	p->shared = true;
	p->next = sq_pools;
	sq_pools = p;
	pthread_mutex_unlock(&sq_pools_lock);
}

/*
 * Open a key store on the pool of its file: join the pool another backend
 * of this process opened, or open the file on a new one and offer it to
 * the next.  The registry is not held while a file is opened, which may
 * wait for another process's lock or derive a key from a passphrase: two
 * threads opening one file at once each get a pool, and the first to
 * finish shares its own.
 */
static kw_status sq_open_shared(struct sq_state *st, kw_instance *inst)
{
	const pid_t pid = getpid();
	struct sq_pool *p;
	struct stat sb;
	kw_status ret;

	if (stat(st->path, &sb) != 0) {
		int e = errno;

		st->host->error(inst, "path", "%s: %s", st->path, strerror(e));
		return e == EACCES ? KW_ERR_PERM : KW_ERR_IO;
	}
	pthread_mutex_lock(&sq_pools_lock);
	p = sq_pool_find(&sb, st->busy_ms, pid);
	if (p != NULL) {
		p->refs++;
		st->pool = p;
		pthread_mutex_unlock(&sq_pools_lock);
		ret = sq_join_store(st, inst);
		if (ret == KW_OK)
			atomic_fetch_or(&p->scopes, 1u << st->scope);
		return ret;
	}
	pthread_mutex_unlock(&sq_pools_lock);

	ret = sq_pool_new(st);
	if (ret == KW_OK)
		ret = sq_open_store(st, inst);
	if (ret != KW_OK)
		return ret;
	p = st->pool;
	p->dev = sb.st_dev;
	p->ino = sb.st_ino;
	p->pid = pid;
	atomic_fetch_or(&p->scopes, 1u << st->scope);
	pthread_mutex_lock(&sq_pools_lock);
	if (sq_pool_find(&sb, st->busy_ms, pid) == NULL) {
		p->shared = true;
		p->next = sq_pools;
		sq_pools = p;
	}
	pthread_mutex_unlock(&sq_pools_lock);
	return KW_OK;
}

static void sq_free(struct sq_state *st)
{
	if (st == NULL)
		return;
	if (st->kr != NULL)
		st->host->keyring_close(st->kr);
	if (st->role == KW_INSTANCE_LEDGER)
		sq_ledger_free(st);
	sq_pool_put(st);
	free(st);
}

/*
 * A key store has a scope and a master key; the ledger has neither (the
 * host gives it no scope, and it holds no secret).
 */
static kw_status sq_open(const kw_host *host, kw_instance *inst,
			 void **state)
{
	struct sq_state *st;
	int64_t busy = SQ_BUSY_DEFAULT;
	kw_instance_role role = KW_INSTANCE_BACKEND;
	kw_status rc;

	*state = NULL;
	if (KW_HOST_HAS(host, instance_role))
		role = host->instance_role(inst);
	if (role != KW_INSTANCE_BACKEND && role != KW_INSTANCE_LEDGER) {
		host->error(inst, NULL,
			    "the sqlite module cannot serve instance role %d",
			    (int)role);
		return KW_ERR_MODULE;
	}
	if (role == KW_INSTANCE_BACKEND && !KW_HOST_HAS(host, sealed_key_id)) {
		host->error(inst, NULL,
			    "this keyway cannot seal keys; the sqlite module "
			    "needs a newer libkeyway");
		return KW_ERR_MODULE;
	}
	if (sqlite3_threadsafe() == 0) {
		host->error(inst, NULL,
			    "SQLite %s was built without thread support",
			    sqlite3_libversion());
		return KW_ERR_MODULE;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		host->error(inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	st->host = host;
	st->inst = inst;
	st->role = role;
	if (role == KW_INSTANCE_BACKEND) {
		st->sql = sq_sql;
		st->nsql = SQ_NSTMTS;
		st->scope = host->instance_scope(inst);
		st->scope_word = sq_scope_word(st->scope);
		if (st->scope_word == NULL) {
			host->error(inst, NULL,
				    "missing scope (\"user\", \"org\" or "
				    "\"system\")");
			rc = KW_ERR_CONFIG;
			goto out;
		}
	}
	rc = host->setting_string(inst, "path", &st->path);
	if (rc != KW_OK) {
		host->error(inst, NULL, "missing path");
		rc = KW_ERR_CONFIG;
		goto out;
	}
	rc = host->setting_int(inst, "busy_timeout_ms", &busy);
	if (rc == KW_ERR_NOTFOUND) {
		busy = SQ_BUSY_DEFAULT;
	} else if (rc != KW_OK || busy < 0 || busy > SQ_BUSY_MAX) {
		host->error(inst, "busy_timeout_ms",
			    "busy_timeout_ms must be between 0 and %d",
			    SQ_BUSY_MAX);
		rc = KW_ERR_CONFIG;
		goto out;
	}
	st->busy_ms = (int)busy;

	rc = sq_refuse_inherited(st);
	if (rc != KW_OK)
		goto out;
	if (role == KW_INSTANCE_LEDGER) {
		rc = sq_pool_new(st);
		if (rc == KW_OK)
			rc = sq_prepare_file(st, "ledger");
		if (rc == KW_OK)
			rc = sq_ledger_open(st);
		if (rc == KW_OK)
			sq_register_ledger(st);
	} else {
		rc = sq_prepare_file(st, "store");
		if (rc == KW_OK)
			rc = sq_open_shared(st, inst);
	}
	if (rc != KW_OK)
		goto out;
	*state = st;
	st = NULL;
out:
	sq_free(st);
	return rc;
}

static void sq_close(void *state)
{
	sq_free(state);
}

/* ---- answering ---- */

/* What a lookup's detail calls the key it looked for. */
static const char *sq_lookup_desc(const struct sq_state *st,
				  const kw_seal_aad *aad, char *buf)
{
	return sq_describe(buf, SQ_DESC_MAX, st->scope, aad->owner,
			   aad->provider);
}

/* "no org key of "acme" for anthropic in PATH", "no system key for ...". */
static void sq_miss_detail(const struct sq_state *st, const kw_seal_aad *aad,
			   char *buf, size_t size)
{
	size_t len = 0;

	buf[0] = '\0';
	sq_append(buf, size, &len, "no ");
	sq_describe_to(buf, size, &len, st->scope, aad->owner, aad->provider);
	sq_append(buf, size, &len, " in ");
	sq_append(buf, size, &len, st->path);
}

/* Answer a lookup from the row it found (NULL: none). */
static kw_status sq_answer(const struct sq_state *st, const kw_query *q,
			   const kw_seal_aad *aad, const unsigned char *sealed,
			   size_t n, bool found, bool active)
{
	const kw_host *host = st->host;
	char desc[SQ_DESC_MAX], why[160], *buf;
	kw_status ret;

	if (!found) {
		sq_miss_detail(st, aad, desc, sizeof(desc));
		host->reply_detail(q->reply, "%s", desc);
		return KW_ERR_NOTFOUND;
	}
	if (!active) {
		host->reply_detail(q->reply, "the %s is disabled",
				   sq_lookup_desc(st, aad, desc));
		return KW_ERR_DENIED;
	}
	if (sealed == NULL || n < KW_SEAL_OVERHEAD) {
		host->reply_detail(q->reply,
				   "the %s: sealed value is too short (%zu "
				   "bytes)",
				   sq_lookup_desc(st, aad, desc), n);
		return KW_ERR_CRYPTO;
	}
	ret = host->reply_buffer(q->reply, n - KW_SEAL_OVERHEAD, &buf);
	if (ret != KW_OK) {
		host->reply_detail(q->reply, "the %s: no room for it",
				   sq_lookup_desc(st, aad, desc));
		return ret;
	}
	why[0] = '\0';
	ret = host->unseal(st->kr, aad, sealed, n, buf, why, sizeof(why));
	if (ret != KW_OK) {
		host->reply_detail(q->reply, "the %s: %s",
				   sq_lookup_desc(st, aad, desc),
				   why[0] != '\0' ? why : "cannot open it");
		return ret;
	}
	/* Only `keyway explain` shows where a key was found. */
	if (!KW_QUERY_HAS(q, flags) || (q->flags & KW_QUERY_EXPLAIN) != 0)
		host->reply_detail(q->reply, "%s in %s",
				   sq_lookup_desc(st, aad, desc), st->path);
	return KW_OK;
}

static kw_status sq_lookup(void *state, const kw_query *q)
{
	struct sq_state *st = state;
	const kw_seal_aad aad = {
		.store_id = st->store_id,
		.scope = st->scope,
		.owner = st->scope == KW_SCOPE_SYSTEM ? NULL : q->owner,
		.provider = q->provider,
	};
	const bool walk = KW_QUERY_HAS(q, flags) &&
			  (q->flags & KW_QUERY_WALK) != 0;
	const unsigned scopes = atomic_load_explicit(&st->pool->scopes,
						     memory_order_relaxed);
	const struct sq_row *row;
	struct sq_conn *c = NULL;
	sqlite3_stmt *s = NULL;
	kw_status ret;
	int rc;

	if (st->role != KW_INSTANCE_BACKEND)
		return sq_wrong_role(st, q->reply);
	if (walk && (row = sq_walk_row(st, q)) != NULL)
		return sq_answer(st, q, &aad, row->sealed, row->len,
				 row->found, row->active);
	ret = sq_acquire(st, &c, q->reply);
	if (ret != KW_OK)
		return ret;
	/* More than one scope in the file: fetch for the whole walk. */
	if (walk && (scopes & (scopes - 1)) != 0) {
		rc = sq_walk_fetch(st, c, q, scopes);
		if (rc != SQLITE_OK)
			ret = sq_fail_conn(st, c, q->reply, rc);
		sq_release(st, c);
		if (rc != SQLITE_OK)
			return ret;
		row = sq_walk_row(st, q);
		return sq_answer(st, q, &aad, row->sealed, row->len,
				 row->found, row->active);
	}
	rc = sq_stmt(st, c, SQ_LOOKUP, &s);
	if (rc == SQLITE_OK)
		rc = sq_bind_key(s, st->scope_word, aad.owner, q->provider);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		ret = sq_answer(st, q, &aad, sqlite3_column_blob(s, 0),
				(size_t)sqlite3_column_bytes(s, 0), true,
				sqlite3_column_int64(s, 1) != 0);
	else if (rc == SQLITE_DONE)
		ret = sq_answer(st, q, &aad, NULL, 0, false, false);
	else
		ret = sq_fail_conn(st, c, q->reply, rc);
	if (s != NULL)
		sq_done(s);
	sq_release(st, c);
	return ret;
}

static kw_status sq_check(void *state, kw_reply *r)
{
	struct sq_state *st = state;
	const kw_host *host = st->host;
	struct sq_conn *c = NULL;
	sqlite3_stmt *s = NULL;
	const char *res;
	int64_t nkeys = 0;
	kw_status ret;
	int rc;

	if (st->role == KW_INSTANCE_LEDGER)
		return sq_ledger_check(st, r);
	ret = sq_check_files(st, r);
	if (ret != KW_OK)
		return ret;
	ret = sq_acquire_all(st, &c, r);
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
	sqlite3_finalize(s);
	s = NULL;

	rc = sqlite3_bind_text(c->stmt[SQ_COUNT], 1, st->scope_word, -1,
			       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(c->stmt[SQ_COUNT]);
	if (rc == SQLITE_ROW)
		nkeys = sqlite3_column_int64(c->stmt[SQ_COUNT], 0);
	sq_done(c->stmt[SQ_COUNT]);
	if (rc != SQLITE_ROW) {
		ret = sq_fail(st, r, "read", rc);
		goto out;
	}
	host->reply_detail(r, "%s: %" PRId64 " %s key%s, schema v%d",
			   st->path, nkeys, st->scope_word,
			   nkeys == 1 ? "" : "s", SQ_SCHEMA_VERSION);
out:
	sqlite3_finalize(s);
	sq_release(st, c);
	return ret;
}

/* ---- storing ---- */

/* The host checks keys against the backend; refuse what would still make
 * a record no lookup can reach. */
static kw_status sq_check_key(const struct sq_state *st,
			      const kw_store_key *k, kw_reply *r)
{
	const char *word = sq_scope_word(k->scope);

	if (k->scope != st->scope) {
		st->host->reply_detail(r, "this backend holds %s keys, not %s "
				       "keys", st->scope_word,
				       word != NULL ? word : "unscoped");
		return KW_ERR_INVAL;
	}
	if (k->provider == NULL || k->provider[0] == '\0') {
		st->host->reply_detail(r, "no provider given");
		return KW_ERR_INVAL;
	}
	if (k->scope != KW_SCOPE_SYSTEM &&
	    (k->owner == NULL || k->owner[0] == '\0')) {
		st->host->reply_detail(r, "a %s key needs an owner", word);
		return KW_ERR_INVAL;
	}
	if (k->scope == KW_SCOPE_SYSTEM && k->owner != NULL &&
	    k->owner[0] != '\0') {
		st->host->reply_detail(r, "a system key has no owner");
		return KW_ERR_INVAL;
	}
	return KW_OK;
}

static const char *sq_key_owner(const kw_store_key *k)
{
	return k->scope == KW_SCOPE_SYSTEM ? NULL : k->owner;
}

static kw_status sq_put(void *state, const kw_store_put *p, kw_reply *r)
{
	struct sq_state *st = state;
	const kw_host *host = st->host;
	const char *owner = sq_key_owner(&p->key);
	const kw_seal_aad aad = {
		.store_id = st->store_id,
		.scope = p->key.scope,
		.owner = owner,
		.provider = p->key.provider,
	};
	const bool create = p->mode == KW_PUT_CREATE;
	struct sq_conn *c = NULL;
	sqlite3_stmt *s = NULL;
	unsigned char *sealed = NULL;
	size_t sealed_len = 0;
	char desc[SQ_DESC_MAX];
	kw_status ret;
	int rc;

	if (st->role != KW_INSTANCE_BACKEND)
		return sq_wrong_role(st, r);
	ret = sq_check_key(st, &p->key, r);
	if (ret != KW_OK)
		return ret;
	if (p->mode != KW_PUT_CREATE && p->mode != KW_PUT_ROTATE) {
		host->reply_detail(r, "unknown put mode %d", (int)p->mode);
		return KW_ERR_INVAL;
	}
	sq_describe(desc, sizeof(desc), p->key.scope, owner, p->key.provider);
	ret = host->seal(st->kr, &aad, p->value, p->len, &sealed, &sealed_len);
	if (ret != KW_OK) {
		host->reply_detail(r, "cannot seal the %s", desc);
		goto out;
	}
	if (sealed_len > (size_t)INT32_MAX) {
		host->reply_detail(r, "the %s is too large", desc);
		ret = KW_ERR_INVAL;
		goto out;
	}
	ret = sq_acquire_all(st, &c, r);
	if (ret != KW_OK)
		goto out;
	s = c->stmt[create ? SQ_INSERT : SQ_ROTATE];
	rc = sq_bind_key(s, st->scope_word, owner, p->key.provider);
	if (rc == SQLITE_OK && p->name != NULL)
		rc = sqlite3_bind_text(s, 4, p->name, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(s, 5, sealed, (int)sealed_len,
				       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 6, host->keyring_id(st->kr), -1,
				       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 7, host->now());
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (create && (rc & 0xff) == SQLITE_CONSTRAINT) {
		host->reply_detail(r, "%s %s already exists; rotate it instead",
				   p->key.scope == KW_SCOPE_ORG ? "an" : "a",
				   desc);
		ret = KW_ERR_EXISTS;
		goto out;
	}
	if (rc != SQLITE_DONE) {
		ret = sq_fail(st, r, "write", rc);
		if (ret == KW_ERR_EXISTS)
			ret = KW_ERR_BACKEND;
		goto out;
	}
	if (!create && sqlite3_changes(c->db) == 0) {
		host->reply_detail(r, "no %s in %s", desc, st->path);
		ret = KW_ERR_NOTFOUND;
		goto out;
	}
	host->reply_detail(r, "%s the %s in %s", create ? "stored" : "rotated",
			   desc, st->path);
out:
	if (s != NULL)
		sq_done(s);
	if (ret == KW_OK)
		atomic_store(&st->pool->changed, true);
	sq_release(st, c);
	free(sealed);
	return ret;
}

/* Run one of the UPDATE or DELETE statements on a key; NOTFOUND when it
 * touched no row. */
static kw_status sq_change(struct sq_state *st, struct sq_conn *c,
			   enum sq_stmt which, const kw_store_key *k,
			   int active, const char *desc, kw_reply *r)
{
	sqlite3_stmt *s = c->stmt[which];
	kw_status ret = KW_OK;
	int rc;

	rc = sq_bind_key(s, st->scope_word, sq_key_owner(k), k->provider);
	if (rc == SQLITE_OK && which == SQ_ACTIVE)
		rc = sqlite3_bind_int(s, 4, active);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		ret = sq_fail(st, r, "write", rc);
		if (ret == KW_ERR_EXISTS)
			ret = KW_ERR_BACKEND;
	} else if (sqlite3_changes(c->db) == 0) {
		st->host->reply_detail(r, "no %s in %s", desc, st->path);
		ret = KW_ERR_NOTFOUND;
	}
	sq_done(s);
	return ret;
}

static kw_status sq_set_active(void *state, const kw_store_key *k,
			       bool active, kw_reply *r)
{
	struct sq_state *st = state;
	struct sq_conn *c = NULL;
	char desc[SQ_DESC_MAX];
	kw_status ret;

	if (st->role != KW_INSTANCE_BACKEND)
		return sq_wrong_role(st, r);
	ret = sq_check_key(st, k, r);
	if (ret != KW_OK)
		return ret;
	sq_describe(desc, sizeof(desc), k->scope, sq_key_owner(k),
		    k->provider);
	ret = sq_acquire_all(st, &c, r);
	if (ret != KW_OK)
		return ret;
	ret = sq_change(st, c, SQ_ACTIVE, k, active ? 1 : 0, desc, r);
	if (ret == KW_OK) {
		atomic_store(&st->pool->changed, true);
		st->host->reply_detail(r, "%s the %s", active ? "enabled"
							    : "disabled",
				       desc);
	}
	sq_release(st, c);
	return ret;
}

static kw_status sq_remove(void *state, const kw_store_key *k, kw_reply *r)
{
	struct sq_state *st = state;
	const kw_host *host = st->host;
	struct sq_conn *c = NULL;
	char desc[SQ_DESC_MAX];
	kw_status ret;
	int rc;

	if (st->role != KW_INSTANCE_BACKEND)
		return sq_wrong_role(st, r);
	ret = sq_check_key(st, k, r);
	if (ret != KW_OK)
		return ret;
	sq_describe(desc, sizeof(desc), k->scope, sq_key_owner(k),
		    k->provider);
	ret = sq_acquire_all(st, &c, r);
	if (ret != KW_OK)
		return ret;
	/* The last close empties the WAL, should the erase not manage to. */
	atomic_store(&st->pool->changed, true);
	ret = sq_change(st, c, SQ_DELETE, k, 0, desc, r);
	if (ret != KW_OK)
		goto out;
	rc = sq_erase(c->db);
	if (rc != SQLITE_OK) {
		/* The record is gone, which is what the caller asked; say
		 * that its bytes are not yet. */
		host->log(st->inst, KW_LOG_WARNING,
			  "%s: deleted the %s, but its sealed bytes may stay "
			  "in the file until the next delete succeeds in "
			  "erasing them: %s",
			  st->path, desc, sqlite3_errstr(rc));
		host->reply_detail(r,
				   "deleted the %s from %s, but could not yet "
				   "erase its sealed bytes (%s)",
				   desc, st->path, sqlite3_errstr(rc));
		goto out;
	}
	host->reply_detail(r, "deleted the %s from %s", desc, st->path);
out:
	sq_release(st, c);
	return ret;
}

/* ---- listing and re-sealing ---- */

/*
 * Mask a sealed value: open it into guarded memory, mask, wipe.  A value
 * that does not open is listed as "(cannot open)" so that one damaged row
 * does not hide the others.
 */
static kw_status sq_mask_sealed(const struct sq_state *st,
				const kw_seal_aad *aad,
				const unsigned char *sealed, int n, char *buf,
				size_t size)
{
	const kw_host *host = st->host;
	size_t len, alloc;
	char *plain, why[160];

	snprintf(buf, size, "(cannot open)");
	if (sealed == NULL || n < KW_SEAL_OVERHEAD)
		return KW_OK;
	len = (size_t)n - KW_SEAL_OVERHEAD;
	alloc = len > 0 ? len : 1;
	plain = host->secure_alloc(alloc);
	if (plain == NULL)
		return KW_ERR_NOMEM;
	if (host->unseal(st->kr, aad, sealed, (size_t)n, plain, why,
			 sizeof(why)) == KW_OK)
		host->mask(plain, len, buf, size);
	host->wipe(plain, alloc);
	host->secure_free(plain, alloc);
	return KW_OK;
}

static kw_status sq_list(void *state, kw_scope scope, const char *owner,
			 kw_store_list_fn *fn, void *arg, kw_reply *r)
{
	struct sq_state *st = state;
	struct sq_conn *c = NULL;
	sqlite3_stmt *s;
	char masked[KW_MASK_SIZE];
	kw_store_record rec;
	kw_seal_aad aad;
	kw_status ret;
	int rc;

	if (st->role != KW_INSTANCE_BACKEND)
		return sq_wrong_role(st, r);
	/* This backend holds the keys of its own scope only. */
	if (scope != KW_SCOPE_NONE && scope != st->scope)
		return KW_OK;
	ret = sq_acquire_all(st, &c, r);
	if (ret != KW_OK)
		return ret;
	s = c->stmt[owner != NULL ? SQ_LIST_OWNER : SQ_LIST];
	rc = sqlite3_bind_text(s, 1, st->scope_word, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && owner != NULL)
		rc = sqlite3_bind_text(s, 2, owner, -1, SQLITE_STATIC);
	while (rc == SQLITE_OK || rc == SQLITE_ROW) {
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW)
			break;
		memset(&rec, 0, sizeof(rec));
		rec.scope = st->scope;
		rec.owner = (const char *)sqlite3_column_text(s, 0);
		rec.provider = (const char *)sqlite3_column_text(s, 1);
		rec.name = (const char *)sqlite3_column_text(s, 2);
		rec.active = sqlite3_column_int64(s, 3) != 0;
		rec.key_id = (const char *)sqlite3_column_text(s, 5);
		rec.usage_count = (uint64_t)sqlite3_column_int64(s, 6);
		rec.last_used = sqlite3_column_int64(s, 7);
		rec.created = sqlite3_column_int64(s, 8);
		rec.rotated = sqlite3_column_int64(s, 9);
		if (rec.owner == NULL || rec.provider == NULL ||
		    rec.name == NULL || rec.key_id == NULL) {
			rc = SQLITE_NOMEM;
			break;
		}
		if (st->scope == KW_SCOPE_SYSTEM)
			rec.owner = NULL;
		aad.store_id = st->store_id;
		aad.scope = st->scope;
		aad.owner = rec.owner;
		aad.provider = rec.provider;
		ret = sq_mask_sealed(st, &aad, sqlite3_column_blob(s, 4),
				     sqlite3_column_bytes(s, 4), masked,
				     sizeof(masked));
		if (ret != KW_OK) {
			st->host->reply_detail(r, "out of memory");
			goto out;
		}
		rec.masked = masked;
		ret = fn(arg, &rec);
		if (ret != KW_OK)
			goto out;
	}
	if (rc != SQLITE_DONE)
		ret = sq_fail(st, r, "read", rc);
out:
	sq_done(s);
	sq_release(st, c);
	return ret;
}

struct sq_ref {
	char *owner;
	char *provider;
};

static void sq_refs_free(struct sq_ref *refs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(refs[i].owner);
		free(refs[i].provider);
	}
	free(refs);
}

/* The records of our scope sealed under another master key.  Collected
 * first: updating key_id while stepping over it would disturb the scan. */
static int sq_stale(struct sq_state *st, struct sq_conn *c,
		    struct sq_ref **out, size_t *count)
{
	sqlite3_stmt *s = c->stmt[SQ_STALE];
	struct sq_ref *refs = NULL, *grown;
	size_t n = 0, cap = 0;
	int rc;

	*out = NULL;
	*count = 0;
	rc = sqlite3_bind_text(s, 1, st->scope_word, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 2, st->host->keyring_id(st->kr), -1,
				       SQLITE_STATIC);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *owner = (const char *)sqlite3_column_text(s, 0);
		const char *provider = (const char *)sqlite3_column_text(s, 1);

		rc = SQLITE_NOMEM;
		if (owner == NULL || provider == NULL)
			break;
		if (n == cap) {
			cap = cap != 0 ? 2 * cap : 16;
			grown = realloc(refs, cap * sizeof(*refs));
			if (grown == NULL)
				break;
			refs = grown;
		}
		refs[n].owner = strdup(owner);
		refs[n].provider = strdup(provider);
		n++;
		if (refs[n - 1].owner == NULL || refs[n - 1].provider == NULL)
			break;
		rc = SQLITE_OK;
	}
	sq_done(s);
	if (rc != SQLITE_DONE) {
		sq_refs_free(refs, n);
		return rc;
	}
	*out = refs;
	*count = n;
	return SQLITE_OK;
}

/* Re-seal one record under the current master key, inside rekey's
 * transaction. */
static kw_status sq_reseal(struct sq_state *st, struct sq_conn *c,
			   const struct sq_ref *ref, kw_reply *r)
{
	const kw_host *host = st->host;
	const char *owner = st->scope == KW_SCOPE_SYSTEM ? NULL : ref->owner;
	const kw_seal_aad aad = {
		.store_id = st->store_id,
		.scope = st->scope,
		.owner = owner,
		.provider = ref->provider,
	};
	sqlite3_stmt *s = c->stmt[SQ_LOOKUP];
	const unsigned char *sealed;
	unsigned char *resealed = NULL;
	size_t len = 0, alloc = 0, resealed_len = 0;
	char *plain = NULL, desc[SQ_DESC_MAX], why[160];
	kw_status ret;
	int rc, n;

	sq_describe(desc, sizeof(desc), st->scope, owner, ref->provider);
	rc = sq_bind_key(s, st->scope_word, owner, ref->provider);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		/* Impossible under the write lock, unless the file changed
		 * under SQLite's feet. */
		host->reply_detail(r, "the %s vanished from %s during rekey",
				   desc, st->path);
		ret = KW_ERR_BACKEND;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		ret = sq_fail(st, r, "read", rc);
		goto out;
	}
	sealed = sqlite3_column_blob(s, 0);
	n = sqlite3_column_bytes(s, 0);
	if (sealed == NULL || n < KW_SEAL_OVERHEAD) {
		host->reply_detail(r, "the %s: sealed value is too short (%d "
				   "bytes)", desc, n);
		ret = KW_ERR_CRYPTO;
		goto out;
	}
	len = (size_t)n - KW_SEAL_OVERHEAD;
	alloc = len > 0 ? len : 1;
	plain = host->secure_alloc(alloc);
	if (plain == NULL) {
		host->reply_detail(r, "out of memory");
		ret = KW_ERR_NOMEM;
		goto out;
	}
	why[0] = '\0';
	ret = host->unseal(st->kr, &aad, sealed, (size_t)n, plain, why,
			   sizeof(why));
	if (ret != KW_OK) {
		host->reply_detail(r, "the %s: %s", desc,
				   why[0] != '\0' ? why : "cannot open it");
		goto out;
	}
	ret = host->seal(st->kr, &aad, plain, len, &resealed, &resealed_len);
	if (ret != KW_OK) {
		host->reply_detail(r, "cannot seal the %s", desc);
		goto out;
	}
	sq_done(s);
	s = c->stmt[SQ_RESEAL];
	rc = sq_bind_key(s, st->scope_word, owner, ref->provider);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(s, 4, resealed, (int)resealed_len,
				       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 5, host->keyring_id(st->kr), -1,
				       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		ret = sq_fail(st, r, "write", rc);
		if (ret == KW_ERR_EXISTS)
			ret = KW_ERR_BACKEND;
	}
out:
	sq_done(s);
	if (plain != NULL) {
		host->wipe(plain, alloc);
		host->secure_free(plain, alloc);
	}
	free(resealed);
	return ret;
}

static kw_status sq_rekey(void *state, uint64_t *count, kw_reply *r)
{
	struct sq_state *st = state;
	const kw_host *host = st->host;
	struct sq_conn *c = NULL;
	struct sq_ref *refs = NULL;
	size_t n = 0;
	kw_status ret;
	int rc;

	if (count != NULL)
		*count = 0;
	if (st->role != KW_INSTANCE_BACKEND)
		return sq_wrong_role(st, r);
	ret = sq_acquire_all(st, &c, r);
	if (ret != KW_OK)
		return ret;
	atomic_store(&st->pool->changed, true);
	/* The write lock up front: readers go on reading the old values
	 * (WAL) until the commit shows them every new one at once. */
	rc = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		ret = sq_fail(st, r, "lock", rc);
		goto out;
	}
	rc = sq_stale(st, c, &refs, &n);
	if (rc != SQLITE_OK) {
		ret = sq_fail(st, r, "read", rc);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		ret = sq_reseal(st, c, &refs[i], r);
		if (ret != KW_OK)
			goto out;
	}
	rc = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		ret = sq_fail(st, r, "commit to", rc);
		if (ret == KW_ERR_EXISTS)
			ret = KW_ERR_BACKEND;
		goto out;
	}
	if (count != NULL)
		*count = n;
	host->reply_detail(r, "re-sealed %zu %s key%s in %s under master key "
			   "%s", n, st->scope_word, n == 1 ? "" : "s",
			   st->path, host->keyring_id(st->kr));
	/* A store is rekeyed when the old master key may be known to
	 * someone: copies sealed under it must not stay in the file. */
	if (n > 0 && (rc = sq_erase(c->db)) != SQLITE_OK)
		host->log(st->inst, KW_LOG_WARNING,
			  "%s: re-sealed %zu key%s, but copies sealed under "
			  "the old master key may stay in the file until the "
			  "next delete or rekey erases them: %s",
			  st->path, n, n == 1 ? "" : "s", sqlite3_errstr(rc));
out:
	if (ret != KW_OK && !sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	sq_refs_free(refs, n);
	sq_release(st, c);
	return ret;
}

/* ---- usage counts ---- */

/*
 * The host adds uses up and writes them in batches, after the fact: the key
 * may have been deleted meanwhile, which is not an error.
 */
static kw_status sq_used_one(struct sq_state *st, struct sq_conn *c,
			     const kw_store_key *k, uint64_t count,
			     int64_t when, kw_reply *r)
{
	sqlite3_stmt *s = c->stmt[SQ_USED];
	kw_status ret;
	int rc;

	ret = sq_check_key(st, k, r);
	if (ret != KW_OK || count == 0)
		return ret;
	rc = sq_bind_key(s, st->scope_word, sq_key_owner(k), k->provider);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 4, count > (uint64_t)INT64_MAX
						      ? INT64_MAX
						      : (int64_t)count);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 5, when);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		ret = sq_fail(st, r, "write", rc);
		if (ret == KW_ERR_EXISTS)
			ret = KW_ERR_BACKEND;
	}
	sq_done(s);
	return ret;
}

/*
 * A flush of usage counts in one transaction: one commit, and one write of
 * each page however many of its keys were used.
 */
static kw_status sq_used_batch(void *state, const kw_store_use *u, size_t n,
			       kw_reply *r)
{
	struct sq_state *st = state;
	struct sq_conn *c = NULL;
	sqlite3_stmt *s;
	kw_status ret, first = KW_OK;
	int rc;

	if (st->role != KW_INSTANCE_BACKEND)
		return sq_wrong_role(st, r);
	/* Only its three statements: a keyway get flushes one count. */
	ret = sq_acquire(st, &c, r);
	if (ret != KW_OK)
		return ret;
	rc = sq_stmt(st, c, SQ_USED, &s);
	if (rc == SQLITE_OK)
		rc = sq_stmt(st, c, SQ_COMMIT, &s);
	if (rc == SQLITE_OK)
		rc = sq_stmt(st, c, SQ_BEGIN_WRITE, &s);
	if (rc == SQLITE_OK)
		rc = sq_run(s);
	if (rc != SQLITE_OK) {
		ret = sq_fail_conn(st, c, r, rc);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		ret = sq_used_one(st, c, &u[i].key, u[i].count, u[i].when, r);
		if (first == KW_OK)
			first = ret;
		/* A failed write may have ended the transaction. */
		if (ret != KW_OK && sqlite3_get_autocommit(c->db))
			goto out;
	}
	rc = sq_run(c->stmt[SQ_COMMIT]);
	if (rc != SQLITE_OK)
		ret = sq_fail(st, r, "write", rc);
	else
		ret = first;
out:
	/* Rolls back what did not commit. */
	sq_release(st, c);
	return ret != KW_OK ? ret : first;
}

static kw_status sq_used(void *state, const kw_store_key *k, uint64_t count,
			 int64_t when, kw_reply *r)
{
	const kw_store_use u = { *k, count, when };

	return sq_used_batch(state, &u, 1, r);
}

static const kw_setting_spec sq_settings[] = {
	{ "path", KW_SETTING_PATH, KW_SETTING_REQUIRED },
	{ "busy_timeout_ms", KW_SETTING_INT, 0 },
	{ NULL, 0, 0 }
};

static const struct kw_module sq_module = {
	KW_MODULE_HEADER,
	.name = "sqlite",
	.description = "sealed API keys in a SQLite database; or, as "
		       "keyway.ledger, the quota ledger",
	.caps = KW_CAP_LOOKUP | KW_CAP_STORE | KW_CAP_LIST | KW_CAP_SCOPED |
		KW_CAP_LEDGER,
	.settings = sq_settings,
	.open = sq_open,
	.close = sq_close,
	.check = sq_check,
	.lookup = sq_lookup,
	.put = sq_put,
	.set_active = sq_set_active,
	.remove = sq_remove,
	.list = sq_list,
	.rekey = sq_rekey,
	.used = sq_used,
	.charge = sq_charge,
	.refund = sq_refund,
	.usage = sq_usage,
	.walk_end = sq_walk_end,
	.used_batch = sq_used_batch,
};

KW_MODULE_EXPORT(sq_module)
