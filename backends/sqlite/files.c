/*
 * files.c - the sqlite module's files, for either role: the settings that
 * name a file, that it and the files SQLite keeps beside it are private to
 * us, how a check reads it without writing, what it holds when it is first
 * opened, the steps that bring its schema up to date, and the health check
 * of `keyway check`.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_PATH, euidaccess() */
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include <keyway/module.h>

#include "pool.h"

/* " or uid N" for the effective uid N, "" for root: a file must belong
 * to root, or to whoever runs us. */
static const char *or_euid(char *buf)
{
	uid_t euid = geteuid();

	buf[0] = '\0';
	if (euid != 0)
		snprintf(buf, 32, " or uid %u", (unsigned)euid);
	return buf;
}

#define SQ_BUSY_DEFAULT 5000    /* milliseconds */
#define SQ_BUSY_MAX 600000

kw_status sq_open_common(struct sq_state *st, const kw_host *host,
			 kw_instance *inst, kw_instance_role role,
			 const struct sq_kind *kind)
{
	int64_t busy = SQ_BUSY_DEFAULT;
	kw_status rc;

	st->host = host;
	st->inst = inst;
	st->role = role;
	st->kind = kind;
	rc = host->setting_string(inst, "path", &st->path);
	if (rc != KW_OK) {
		host->error(inst, NULL, "missing path");
		return KW_ERR_CONFIG;
	}
	rc = host->setting_int(inst, "busy_timeout_ms", &busy);
	if (rc == KW_ERR_NOTFOUND) {
		busy = SQ_BUSY_DEFAULT;
	} else if (rc != KW_OK || busy < 0 || busy > SQ_BUSY_MAX) {
		host->error(inst, "busy_timeout_ms",
			    "busy_timeout_ms must be between 0 and %d",
			    SQ_BUSY_MAX);
		return KW_ERR_CONFIG;
	}
	st->busy_ms = (int)busy;
	return sq_refuse_inherited(st);
}

/* ---- files ---- */

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
	char euid_buf[32];
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
			 "%s is owned by uid %u; it must belong to root%s",
			 path, (unsigned)sb.st_uid, or_euid(euid_buf));
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
	const char *holds = st->kind->holds;
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
static kw_status sq_check_private(const struct sq_state *st)
{
	const char *what = st->kind->noun;
	char why[1024];
	kw_status rc = sq_files_refusal(st, why, sizeof(why));

	if (rc == KW_ERR_NOTFOUND && sq_checking(st))
		st->host->error(st->inst, "path",
				"%s %s does not exist: create it with keyway "
				"init%s",
				what, st->path, st->kind->init_hint);
	else if (rc != KW_OK)
		st->host->error(st->inst, "path", "%s", why);
	return rc;
}

kw_status sq_check_files(const struct sq_state *st, kw_reply *r)
{
	const kw_host *host = st->host;
	const char *noun = st->kind->noun;
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
kw_status sq_prepare_file(const struct sq_state *st)
{
	const char *what = st->kind->noun;
	const kw_host *host = st->host;
	kw_instance *inst = st->inst;
	const char *path = st->path;
	int fd;

	/* A check looks at what is there: sq_check_private() reports a
	 * missing file. */
	if (sq_checking(st))
		return sq_check_private(st);
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
		return sq_check_private(st);
	}
	if (errno != EEXIST) {
		int e = errno;

		host->error(inst, "path", "cannot create %s %s: %s", what,
			    path, strerror(e));
		return e == EACCES ? KW_ERR_PERM : KW_ERR_IO;
	}
	return sq_check_private(st);
}

/* ---- checks ---- */

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
enum sq_ro sq_check_how(const struct sq_state *st)
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
char *sq_check_uri(const struct sq_state *st)
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

/* ---- opening ---- */

/*
 * What a file holds: schema version, application_id and number of schema
 * objects, read in one statement so that they agree with each other while
 * another process is creating the schema.
 */
static int sq_inspect(sqlite3 *db, int64_t *version, int64_t *app_id,
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

kw_status sq_open_checked(struct sq_state *st, struct sq_conn **out,
			  int64_t *version)
{
	const struct sq_kind *k = st->kind;
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

/* ---- schemas ---- */

int sq_schema_steps(const struct sq_state *st, sqlite3 *db, int64_t version,
		    sq_fill_fn *fill, const void *arg, bool *initialising)
{
	const struct sq_kind *k = st->kind;
	char sql[64];
	int rc = SQLITE_OK;

	*initialising = false;
	for (int64_t v = version; rc == SQLITE_OK && v < k->schema; v++)
		rc = sqlite3_exec(db, k->migrations[v], NULL, NULL, NULL);
	if (rc == SQLITE_OK && version == 0) {
		*initialising = true;
		snprintf(sql, sizeof(sql), "PRAGMA application_id = %" PRId64,
			 k->app_id);
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
		if (rc == SQLITE_OK && fill != NULL)
			rc = fill(st, db, arg);
	}
	if (rc == SQLITE_OK && version < k->schema) {
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %" PRId64,
			 k->schema);
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	}
	return rc;
}

kw_status sq_schema_newer(const struct sq_state *st, sqlite3 *db,
			  int64_t version)
{
	st->host->error(st->inst, "path",
			"%s %s has schema version %" PRId64 "; this keyway "
			"knows up to %d",
			st->kind->noun, st->path, version,
			(int)st->kind->schema);
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return KW_ERR_BACKEND;
}

kw_status sq_schema_failed(const struct sq_state *st, sqlite3 *db,
			   const char *what, int rc)
{
	st->host->error(st->inst, "path", "cannot %s %s %s: %s", what,
			st->kind->noun, st->path, sqlite3_errmsg(db));
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return sq_status(rc) == KW_ERR_EXISTS ? KW_ERR_BACKEND : sq_status(rc);
}

/* ---- the health check ---- */

kw_status sq_health(struct sq_state *st, struct sq_conn **out, kw_reply *r)
{
	struct sq_conn *c = NULL;
	sqlite3_stmt *s = NULL;
	const char *res;
	kw_status ret;
	int rc;

	*out = NULL;
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
		st->host->reply_detail(r, "%s is damaged: %s", st->path,
				       res != NULL ? res
						   : "quick_check failed");
		ret = KW_ERR_BACKEND;
		goto out;
	}
	*out = c;
	c = NULL;
out:
	sqlite3_finalize(s);
	sq_release(st, c);
	return ret;
}
