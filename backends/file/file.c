/*
 * file.c - the file module: a store of API keys in one encrypted flat
 * file, for hosts with no database (docs/file-format.md is the format;
 * format.c reads and writes it).
 *
 * The whole file is one AES-256-GCM envelope sealed by the host under the
 * master key, and each key inside it is sealed again, bound to its record,
 * so that a value moved to another owner does not open.  A process keeps
 * the file it read (a snapshot) and checks with one stat() per lookup
 * whether it changed: an unchanged file is never read or opened again.
 *
 * Writers take an flock() on "PATH.lock", check the file under it (its
 * header and nonce, never stat() alone), and replace it whole: a
 * temporary file in the same directory, written through its own
 * descriptor, fsync()ed, renamed over the file, and the directory
 * fsync()ed.  Readers take no lock: they see the old file or the new one.
 *
 * Several backends may share one file, each with its own scope; each
 * rewrites the file with the other scopes' records as they are.
 *
 * This file is long because it holds, besides the descriptor and the
 * operations, the snapshot (reading, file_current()) and the writes (the
 * lock, replace_file(), file_write()), which share the module's state and
 * its static helpers with them; those two parts are the ones to move into
 * a file of their own, declared in file.h, when it grows further.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkostemp(), strndup(), st_mtim */
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <keyway/module.h>

#include "file.h"

/* One backend on a file. */
struct file_state {
	const kw_host *host;
	kw_instance *inst;
	const char *path;
	char *lock_path;
	char *dir;
	kw_scope scope;
	const char *scope_word;
	kw_keyring *kr;
	unsigned char salt[KW_SALT_SIZE];
	unsigned char file_id[FILE_ID_LEN];
	pthread_mutex_t lock;      /* guards snap and its refs */
	struct file_snap *snap;
};

/* A key store holds keys of the three scopes. */
static const char *file_scope_word(kw_scope scope)
{
	const char *word = kw_scope_name(scope);

	return strcmp(word, "none") != 0 ? word : NULL;
}

/* keyway's name for a key: "org key of "acme" for anthropic". */
static const char *file_describe(char *buf, size_t size, kw_scope scope,
				 const char *owner, const char *provider)
{
	size_t len = 0;

	buf[0] = '\0';
	kw_key_describe(buf, size, &len, scope, owner, provider);
	return buf;
}

/* ---- snapshots ---- */

static void snap_put(const kw_host *host, struct file_snap *snap)
{
	if (snap == NULL)
		return;
	file_snap_clear(host, snap);
	free(snap);
}

/* Drop a reference taken by file_current(). */
static void snap_release(struct file_state *st, struct file_snap *snap)
{
	bool last;

	if (snap == NULL)
		return;
	pthread_mutex_lock(&st->lock);
	last = --snap->refs == 0;
	pthread_mutex_unlock(&st->lock);
	if (last)
		snap_put(st->host, snap);
}

/* A line from format.c, which does not know the path, made to name it. */
static void name_file(struct file_err *e, const char *path)
{
	char msg[sizeof(e->msg)];

	snprintf(msg, sizeof(msg), "%s", e->msg);
	snprintf(e->msg, sizeof(e->msg), "%s %s", path, msg);
}

/* Open the file again, after open(), with the checks open_private()
 * made then. */
static kw_status open_checked(struct file_state *st, int *fd,
			      struct file_err *e)
{
	e->msg[0] = '\0';
	e->rc = st->host->reopen_private(st->path, fd, e->msg, sizeof(e->msg));
	return e->rc;
}

/* Read all of fd (a regular file of sb's size) into *out. */
static kw_status read_all(const char *path, int fd, const struct stat *sb,
			  unsigned char **out, size_t *len, struct file_err *e)
{
	size_t size = (size_t)sb->st_size, got = 0;
	unsigned char *buf;

	*out = NULL;
	*len = 0;
	if (sb->st_size < 0 || (uint64_t)sb->st_size > INT32_MAX) {
		e->rc = KW_ERR_BACKEND;
		snprintf(e->msg, sizeof(e->msg), "%s is too large (%jd bytes)",
			 path, (intmax_t)sb->st_size);
		return e->rc;
	}
	buf = malloc(size > 0 ? size : 1);
	if (buf == NULL) {
		e->rc = KW_ERR_NOMEM;
		snprintf(e->msg, sizeof(e->msg), "%s: out of memory", path);
		return e->rc;
	}
	while (got < size) {
		ssize_t n = pread(fd, buf + got, size - got, (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			e->rc = KW_ERR_IO;
			snprintf(e->msg, sizeof(e->msg), "%s: %s", path,
				 strerror(errno));
			free(buf);
			return e->rc;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*out = buf;
	*len = got;
	return KW_OK;
}

/*
 * Read the file on fd into a new snapshot, unless it is the one `old`
 * already holds (same file id and generation: only its stat() changed).
 */
static kw_status read_snap(struct file_state *st, int fd,
			   const struct file_snap *old,
			   struct file_snap **out, struct file_err *e)
{
	const kw_host *host = st->host;
	struct file_snap *snap = NULL;
	unsigned char *buf = NULL;
	struct file_header h;
	struct stat sb;
	size_t len;
	kw_status rc;

	*out = NULL;
	if (fstat(fd, &sb) != 0) {
		e->rc = KW_ERR_IO;
		snprintf(e->msg, sizeof(e->msg), "%s: %s", st->path,
			 strerror(errno));
		return e->rc;
	}
	rc = read_all(st->path, fd, &sb, &buf, &len, e);
	if (rc != KW_OK)
		goto out;
	rc = file_parse_header(buf, len, &h, e);
	if (rc != KW_OK) {
		name_file(e, st->path);
		goto out;
	}
	if (st->kr == NULL) {
		/* The first read, in open(): the file's identity is the
		 * store's.  keyring_open() says itself what is wrong. */
		memcpy(st->salt, h.salt, KW_SALT_SIZE);
		memcpy(st->file_id, h.file_id, FILE_ID_LEN);
		rc = host->keyring_open(st->inst, st->salt, &st->kr);
		if (rc != KW_OK) {
			e->rc = rc;
			e->msg[0] = '\0';
			goto out;
		}
	}
	if (memcmp(h.salt, st->salt, KW_SALT_SIZE) != 0 ||
	    memcmp(h.file_id, st->file_id, FILE_ID_LEN) != 0) {
		char id[2 * FILE_ID_LEN + 1];

		file_hex(h.file_id, FILE_ID_LEN, id);
		e->rc = rc = KW_ERR_BACKEND;
		snprintf(e->msg, sizeof(e->msg),
			 "%s was replaced by another keyway file (file id %s): "
			 "restart the program to read it",
			 st->path, id);
		goto out;
	}
	snap = calloc(1, sizeof(*snap));
	if (snap == NULL) {
		e->rc = rc = KW_ERR_NOMEM;
		snprintf(e->msg, sizeof(e->msg), "%s: out of memory",
			 st->path);
		goto out;
	}
	if (old != NULL && (size_t)old->size == len &&
	    memcmp(old->head, buf, sizeof(old->head)) == 0) {
		/* Touched, not rewritten: keep what we have. */
		rc = KW_OK;
		snap->touched = true;
	} else {
		rc = file_parse(host, st->kr, buf, len, snap, e);
		if (rc != KW_OK) {
			name_file(e, st->path);
			goto out;
		}
		memcpy(snap->head, buf, sizeof(snap->head));
	}
	snap->dev = sb.st_dev;
	snap->ino = sb.st_ino;
	snap->size = sb.st_size;
	snap->mtime = sb.st_mtim;
	snap->ctime = sb.st_ctim;
	*out = snap;
	snap = NULL;
out:
	snap_put(host, snap);
	free(buf);
	return rc;
}

static bool same_file(const struct file_snap *s, const struct stat *sb)
{
	return s->dev == sb->st_dev && s->ino == sb->st_ino &&
	       s->size == sb->st_size && s->mtime.tv_sec == sb->st_mtim.tv_sec &&
	       s->mtime.tv_nsec == sb->st_mtim.tv_nsec &&
	       s->ctime.tv_sec == sb->st_ctim.tv_sec &&
	       s->ctime.tv_nsec == sb->st_ctim.tv_nsec;
}

/*
 * The file as it is now, with a reference the caller drops with
 * snap_release(): the snapshot we have when one stat() says the file is
 * unchanged, else the file read again.  A writer (`verify`, under the
 * write lock) never trusts stat(), as inodes are reused and times are
 * coarse: the file is opened and its header and nonce compared with the
 * snapshot's, and read again when they differ.
 */
static kw_status file_current(struct file_state *st, bool verify,
			      struct file_snap **out, struct file_err *e)
{
	struct file_snap *fresh = NULL, *old = NULL;
	struct stat sb;
	kw_status rc = KW_OK;
	int fd = -1;

	*out = NULL;
	pthread_mutex_lock(&st->lock);
	if (!verify && st->snap != NULL && stat(st->path, &sb) == 0 &&
	    same_file(st->snap, &sb))
		goto have;
	rc = open_checked(st, &fd, e);
	/* Gone after open(): not "no such key", which would let a chain
	 * go on as if the file said so. */
	if (rc == KW_ERR_NOTFOUND)
		rc = e->rc = KW_ERR_IO;
	if (rc == KW_OK)
		rc = read_snap(st, fd, st->snap, &fresh, e);
	if (rc != KW_OK)
		goto out;
	if (fresh->touched) {
		st->snap->dev = fresh->dev;
		st->snap->ino = fresh->ino;
		st->snap->size = fresh->size;
		st->snap->mtime = fresh->mtime;
		st->snap->ctime = fresh->ctime;
		snap_put(st->host, fresh);
	} else {
		old = st->snap;
		if (old != NULL && --old->refs != 0)
			old = NULL;
		fresh->refs = 1;
		st->snap = fresh;
	}
have:
	st->snap->refs++;
	*out = st->snap;
out:
	pthread_mutex_unlock(&st->lock);
	if (fd >= 0)
		close(fd);
	snap_put(st->host, old);
	return rc;
}

/* ---- writing ---- */

/*
 * Open PATH.lock, made 0600 if missing; made by root beside a file of
 * another user, it is given to that user.  KW_OK, or a status and why.
 */
static kw_status open_lock(struct file_state *st, int *fd, char *why,
			   size_t whylen)
{
	struct stat fsb, lsb;
	bool have_file;
	int f, en;

	*fd = -1;
	f = open(st->lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC |
					O_NOCTTY | O_NONBLOCK,
		 0600);
	if (f < 0) {
		en = errno;
		snprintf(why, whylen, "cannot lock %s: %s", st->lock_path,
			 strerror(en));
		return en == EACCES || en == EROFS ? KW_ERR_PERM : KW_ERR_IO;
	}
	/* Whoever can take the lock can keep every writer out: it must be
	 * ours (or root's, or, for root, the file's owner's) and ours only. */
	if (fstat(f, &lsb) != 0) {
		en = errno;
		snprintf(why, whylen, "cannot lock %s: %s", st->lock_path,
			 strerror(en));
		close(f);
		return KW_ERR_IO;
	}
	have_file = lstat(st->path, &fsb) == 0;
	if (!S_ISREG(lsb.st_mode)) {
		snprintf(why, whylen, "%s is not a regular file: remove it",
			 st->lock_path);
		close(f);
		return KW_ERR_PERM;
	}
	if (lsb.st_uid != geteuid() && lsb.st_uid != 0 &&
	    !(geteuid() == 0 && have_file && lsb.st_uid == fsb.st_uid)) {
		snprintf(why, whylen, "%s is owned by uid %u; it must belong "
			 "to root or uid %u: chown %u it",
			 st->lock_path, (unsigned)lsb.st_uid,
			 (unsigned)geteuid(), (unsigned)geteuid());
		close(f);
		return KW_ERR_PERM;
	}
	if ((lsb.st_mode & 022) != 0) {
		snprintf(why, whylen, "%s is writable by group or others "
			 "(mode %04o): chmod 600 it",
			 st->lock_path, (unsigned)(lsb.st_mode & 07777));
		close(f);
		return KW_ERR_PERM;
	}
	if (geteuid() == 0 && have_file &&
	    (lsb.st_uid != fsb.st_uid || lsb.st_gid != fsb.st_gid) &&
	    fchown(f, fsb.st_uid, fsb.st_gid) != 0) {
		en = errno;
		snprintf(why, whylen, "cannot give %s to the owner of %s: %s",
			 st->lock_path, st->path, strerror(en));
		close(f);
		return KW_ERR_IO;
	}
	*fd = f;
	return KW_OK;
}

/* How long a write waits for the lock, in milliseconds: a put or rotate
 * a while; the use counts' flush, run by a thread the application's
 * fork() waits for, hardly at all. */
#define LOCK_WAIT_MANAGE 10000
#define LOCK_WAIT_USES 200

/* flock() fd, trying for up to wait_ms milliseconds: 0, or an errno
 * (EWOULDBLOCK when another holds the lock all that time). */
static int flock_within(int fd, long wait_ms)
{
	struct timespec start, now, pause = { 0, 10 * 1000 * 1000 };

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK)
			return errno;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000 +
			    (now.tv_nsec - start.tv_nsec) / 1000000 >=
		    wait_ms)
			return EWOULDBLOCK;
		nanosleep(&pause, NULL);
	}
}

/* Take the write lock: an flock() on PATH.lock, waited for up to
 * wait_ms milliseconds; KW_ERR_UNAVAIL when another writer holds it. */
static kw_status lock_file(struct file_state *st, long wait_ms, int *fd,
			   kw_reply *r)
{
	char why[600];
	kw_status rc;
	int f, en;

	rc = open_lock(st, &f, why, sizeof(why));
	if (rc != KW_OK) {
		st->host->reply_detail(r, "%s", why);
		return rc;
	}
	en = flock_within(f, wait_ms);
	if (en == EWOULDBLOCK) {
		if (wait_ms >= 1000)
			st->host->reply_detail(r, "%s is locked by another "
					       "keyway writer (waited %ld "
					       "seconds for %s); nothing was "
					       "written",
					       st->path, wait_ms / 1000,
					       st->lock_path);
		else
			st->host->reply_detail(r, "%s is locked by another "
					       "keyway writer (%s); nothing "
					       "was written",
					       st->path, st->lock_path);
		close(f);
		return KW_ERR_UNAVAIL;
	}
	if (en != 0) {
		st->host->reply_detail(r, "cannot lock %s: %s", st->lock_path,
				       strerror(en));
		close(f);
		return KW_ERR_IO;
	}
	*fd = f;
	return KW_OK;
}

static void unlock_file(int fd)
{
	if (fd >= 0)
		close(fd); /* drops the flock */
}

/* Write len bytes of buf to fd. */
static bool write_all(int fd, const unsigned char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return false;
		}
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

/*
 * Replace the file with buf, crash-safe: a temporary file beside it,
 * written and fsync()ed, renamed over it, the directory fsync()ed.  On
 * failure the file is as it was, and why says so.
 */
static kw_status replace_file(struct file_state *st, const unsigned char *buf,
			      size_t len, char *why, size_t whylen)
{
	size_t plen = strlen(st->path);
	char *tmp = malloc(plen + sizeof(".tmp.XXXXXX"));
	const char *step = "write";
	kw_status rc = KW_ERR_IO;
	int fd = -1, dfd = -1, en = 0;
	bool have_cur = false;
	struct stat cur;

	if (tmp == NULL) {
		snprintf(why, whylen, "out of memory");
		return KW_ERR_NOMEM;
	}
	memcpy(tmp, st->path, plen);
	memcpy(tmp + plen, ".tmp.XXXXXX", sizeof(".tmp.XXXXXX"));
	/* The new file is made by whoever writes: it must stay its owner's.
	 * Root gives it back; anyone else may only write their own file. */
	if (lstat(st->path, &cur) == 0) {
		have_cur = true;
		if (geteuid() != 0 && cur.st_uid != geteuid()) {
			snprintf(why, whylen, "%s is owned by uid %u, not uid "
				 "%u: run as its owner; nothing was written",
				 st->path, (unsigned)cur.st_uid,
				 (unsigned)geteuid());
			free(tmp);
			return KW_ERR_PERM;
		}
	}
	/* mkostemp() makes it 0600. */
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		en = errno;
		step = "create a temporary file for";
		tmp[0] = '\0';
		goto out;
	}
	if (have_cur && geteuid() == 0 &&
	    fchown(fd, cur.st_uid, cur.st_gid) != 0) {
		en = errno;
		step = "keep the owner of";
		goto out;
	}
	if (!write_all(fd, buf, len)) {
		en = errno;
		goto out;
	}
	if (fsync(fd) != 0) {
		en = errno;
		step = "sync";
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		en = errno;
		goto out;
	}
	fd = -1;
	if (rename(tmp, st->path) != 0) {
		en = errno;
		step = "replace";
		goto out;
	}
	tmp[0] = '\0';
	/* The rename is durable once the directory is.  The new file is in
	 * place either way, and what reads it sees it: the write is done,
	 * and only its surviving a crash is in doubt. */
	rc = KW_OK;
	dfd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0)
		st->host->log(st->inst, KW_LOG_WARNING,
			      "wrote %s, but cannot sync its directory %s (%s): "
			      "whether the change survives a crash is unknown",
			      st->path, st->dir, strerror(errno));
out:
	if (rc != KW_OK && en != 0 && why[0] == '\0')
		snprintf(why, whylen, "cannot %s %s: %s; the file is unchanged",
			 step, st->path, strerror(en));
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	if (tmp[0] != '\0')
		unlink(tmp);
	free(tmp);
	return rc;
}

/* A copy of a file's records that a write changes. */
struct edit {
	struct file_rec *recs;
	size_t n, cap;
	struct file_header h;
};

static void edit_free(struct edit *ed)
{
	for (size_t i = 0; i < ed->n; i++) {
		free(ed->recs[i].own_owner);
		free(ed->recs[i].own_provider);
		free(ed->recs[i].own_name);
		free(ed->recs[i].own_sealed);
	}
	free(ed->recs);
	ed->recs = NULL;
	ed->n = 0;
}

/* The change a write makes to ed; says what it did through r. */
typedef kw_status file_change_fn(struct file_state *st, struct edit *ed,
				 void *arg, kw_reply *r);

/* The file is unchanged: say why a write could not be made. */
static kw_status say_unchanged(struct file_state *st, kw_reply *r,
			       const struct file_err *e)
{
	st->host->reply_detail(r, "%s; nothing was written", e->msg);
	return e->rc;
}

/*
 * Change the file under the write lock: read it as it is now, apply
 * `change` to a copy of its records, and replace the file with them, one
 * generation on, sealed under the current master key.
 */
static kw_status file_write(struct file_state *st, long wait_ms,
			    file_change_fn *change, void *arg, kw_reply *r)
{
	const kw_host *host = st->host;
	struct file_snap *cur = NULL;
	struct edit ed = { 0 };
	unsigned char *buf = NULL;
	struct file_err e;
	char why[600];
	size_t len = 0;
	kw_status rc;
	int lockfd = -1;

	rc = lock_file(st, wait_ms, &lockfd, r);
	if (rc != KW_OK)
		return rc;
	rc = file_current(st, true, &cur, &e);
	if (rc != KW_OK) {
		rc = say_unchanged(st, r, &e);
		goto out;
	}
	ed.cap = cur->n + 1;
	ed.recs = calloc(ed.cap, sizeof(*ed.recs));
	if (ed.recs == NULL) {
		rc = KW_ERR_NOMEM;
		host->reply_detail(r, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < cur->n; i++) {
		ed.recs[i] = cur->recs[i];
		ed.recs[i].own_owner = ed.recs[i].own_provider = NULL;
		ed.recs[i].own_name = NULL;
		ed.recs[i].own_sealed = NULL;
	}
	ed.n = cur->n;
	ed.h = cur->h;
	ed.h.generation++;
	ed.h.kdf = KW_KDF_NONE;
	memset(ed.h.kdf_params, 0, sizeof(ed.h.kdf_params));
	if (KW_HOST_HAS(host, keyring_kdf))
		ed.h.kdf = host->keyring_kdf(st->kr, ed.h.kdf_params);
	rc = change(st, &ed, arg, r);
	if (rc != KW_OK)
		goto out;
	rc = file_build(host, st->kr, &ed.h, ed.recs, ed.n, &buf, &len);
	if (rc != KW_OK) {
		host->reply_detail(r, "cannot seal %s (%s); nothing was "
				   "written", st->path,
				   rc == KW_ERR_NOMEM ? "out of memory"
						      : "sealing failed");
		goto out;
	}
	why[0] = '\0';
	rc = replace_file(st, buf, len, why, sizeof(why));
	if (rc != KW_OK) {
		host->reply_detail(r, "%s", why);
		goto out;
	}
out:
	edit_free(&ed);
	free(buf);
	snap_release(st, cur);
	unlock_file(lockfd);
	return rc;
}

/* Where a key is in ed, or where it would go; *found says which. */
static size_t edit_find(const struct edit *ed, kw_scope scope,
			const char *owner, const char *provider, bool *found)
{
	size_t lo = 0, hi = ed->n;

	*found = false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = file_rec_cmp(scope, owner, provider, &ed->recs[mid]);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* ---- keys ---- */

/* Refuse, through r, a key this store cannot hold (KW_ERR_INVAL). */
static kw_status check_key(const struct file_state *st, const kw_store_key *k,
			   kw_reply *r)
{
	const char *word = file_scope_word(k->scope);

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

static const char *key_owner(const kw_store_key *k)
{
	return k->scope == KW_SCOPE_SYSTEM ? NULL : k->owner;
}

/* What a record's value is bound to (docs/file-format.md). */
static void rec_aad(const char *file_id_hex, kw_scope scope,
		    const char *owner, const char *provider, kw_seal_aad *aad)
{
	aad->store_id = file_id_hex;
	aad->scope = scope;
	aad->owner = owner;
	aad->provider = provider;
}

static kw_status file_lookup(void *state, const kw_query *q)
{
	struct file_state *st = state;
	const kw_host *host = st->host;
	const char *owner = st->scope == KW_SCOPE_SYSTEM ? NULL : q->owner;
	char desc[FILE_DESC_MAX], why[200], *buf;
	struct file_snap *snap = NULL;
	struct edit view;
	struct file_err e;
	const struct file_rec *rec;
	kw_seal_aad aad;
	kw_status rc;
	bool found;

	rc = file_current(st, false, &snap, &e);
	if (rc != KW_OK) {
		host->reply_detail(q->reply, "%s", e.msg);
		return rc;
	}
	file_describe(desc, sizeof(desc), st->scope, owner, q->provider);
	view.recs = snap->recs;
	view.n = snap->n;
	rec = NULL;
	if (st->scope == KW_SCOPE_SYSTEM || owner != NULL) {
		size_t at = edit_find(&view, st->scope, owner, q->provider,
				      &found);

		if (found)
			rec = &snap->recs[at];
	}
	if (rec == NULL) {
		host->reply_detail(q->reply, "no %s in %s", desc, st->path);
		rc = KW_ERR_NOTFOUND;
		goto out;
	}
	if (!rec->active) {
		host->reply_detail(q->reply, "the %s is disabled", desc);
		rc = KW_ERR_DENIED;
		goto out;
	}
	if (rec->sealed_len < KW_SEAL_OVERHEAD) {
		host->reply_detail(q->reply, "the %s in %s: sealed value is "
				   "too short (%zu bytes)",
				   desc, st->path, rec->sealed_len);
		rc = KW_ERR_CRYPTO;
		goto out;
	}
	rc = host->reply_buffer(q->reply, rec->sealed_len - KW_SEAL_OVERHEAD,
				&buf);
	if (rc != KW_OK) {
		host->reply_detail(q->reply, "the %s: no room for it", desc);
		goto out;
	}
	rec_aad(snap->file_id_hex, st->scope, owner, q->provider, &aad);
	why[0] = '\0';
	rc = host->unseal(st->kr, &aad, rec->sealed, rec->sealed_len, buf,
			  why, sizeof(why));
	if (rc != KW_OK) {
		host->reply_detail(q->reply, "the %s in %s: %s", desc,
				   st->path,
				   why[0] != '\0' ? why : "cannot open it");
		goto out;
	}
	if (!KW_QUERY_HAS(q, flags) || (q->flags & KW_QUERY_EXPLAIN) != 0)
		host->reply_detail(q->reply, "%s in %s", desc, st->path);
out:
	snap_release(st, snap);
	return rc;
}

/* Seal value for the record of k, into rec's own memory. */
static kw_status seal_into(struct file_state *st, const char *file_id_hex,
			   const kw_store_key *k, const char *value,
			   size_t len, struct file_rec *rec)
{
	unsigned char *sealed = NULL;
	size_t n = 0;
	kw_seal_aad aad;
	kw_status rc;

	rec_aad(file_id_hex, k->scope, key_owner(k), k->provider, &aad);
	rc = st->host->seal(st->kr, &aad, value, len, &sealed, &n);
	if (rc != KW_OK)
		return rc;
	free(rec->own_sealed);
	rec->own_sealed = sealed;
	rec->sealed = sealed;
	rec->sealed_len = n;
	return KW_OK;
}

static char *dup_or_null(const char *s, bool *nomem)
{
	char *d;

	if (s == NULL)
		return NULL;
	d = strdup(s);
	if (d == NULL)
		*nomem = true;
	return d;
}

static kw_status change_put(struct file_state *st, struct edit *ed,
			    void *arg, kw_reply *r)
{
	const kw_store_put *p = arg;
	const kw_host *host = st->host;
	const bool create = p->mode == KW_PUT_CREATE;
	const char *owner = key_owner(&p->key);
	char desc[FILE_DESC_MAX], idhex[2 * FILE_ID_LEN + 1];
	struct file_rec *rec;
	bool found, nomem = false;
	size_t at;
	kw_status rc;

	file_describe(desc, sizeof(desc), p->key.scope, owner,
		      p->key.provider);
	at = edit_find(ed, p->key.scope, owner, p->key.provider, &found);
	if (create && found) {
		host->reply_detail(r, "%s %s already exists; rotate it instead",
				   p->key.scope == KW_SCOPE_ORG ? "an" : "a",
				   desc);
		return KW_ERR_EXISTS;
	}
	if (!create && !found) {
		host->reply_detail(r, "no %s in %s", desc, st->path);
		return KW_ERR_NOTFOUND;
	}
	if (create) {
		memmove(&ed->recs[at + 1], &ed->recs[at],
			(ed->n - at) * sizeof(ed->recs[0]));
		ed->n++;
		rec = &ed->recs[at];
		memset(rec, 0, sizeof(*rec));
		rec->scope = p->key.scope;
		rec->active = true;
		rec->own_owner = dup_or_null(owner, &nomem);
		rec->own_provider = dup_or_null(p->key.provider, &nomem);
		rec->owner = rec->own_owner;
		rec->provider = rec->own_provider;
		rec->name = "";
		rec->created = host->now();
	} else {
		rec = &ed->recs[at];
	}
	rec->rotated = host->now();
	if (p->name != NULL) {
		rec->own_name = dup_or_null(p->name, &nomem);
		rec->name = rec->own_name;
	}
	if (nomem) {
		host->reply_detail(r, "out of memory");
		return KW_ERR_NOMEM;
	}
	file_hex(ed->h.file_id, FILE_ID_LEN, idhex);
	rc = seal_into(st, idhex, &p->key, p->value, p->len, rec);
	if (rc != KW_OK) {
		host->reply_detail(r, "cannot seal the %s", desc);
		return rc;
	}
	host->reply_detail(r, "%s the %s in %s", create ? "stored" : "rotated",
			   desc, st->path);
	return KW_OK;
}

static kw_status file_put(void *state, const kw_store_put *p, kw_reply *r)
{
	struct file_state *st = state;
	kw_status rc = check_key(st, &p->key, r);

	if (rc != KW_OK)
		return rc;
	if (p->mode != KW_PUT_CREATE && p->mode != KW_PUT_ROTATE) {
		st->host->reply_detail(r, "unknown put mode %d", (int)p->mode);
		return KW_ERR_INVAL;
	}
	return file_write(st, LOCK_WAIT_MANAGE, change_put, (void *)p, r);
}

struct active_arg {
	const kw_store_key *k;
	bool active;
};

static kw_status change_active(struct file_state *st, struct edit *ed,
			       void *arg, kw_reply *r)
{
	const struct active_arg *a = arg;
	const char *owner = key_owner(a->k);
	char desc[FILE_DESC_MAX];
	bool found;
	size_t at;

	file_describe(desc, sizeof(desc), a->k->scope, owner, a->k->provider);
	at = edit_find(ed, a->k->scope, owner, a->k->provider, &found);
	if (!found) {
		st->host->reply_detail(r, "no %s in %s", desc, st->path);
		return KW_ERR_NOTFOUND;
	}
	ed->recs[at].active = a->active;
	st->host->reply_detail(r, "%s the %s",
			       a->active ? "enabled" : "disabled", desc);
	return KW_OK;
}

static kw_status file_set_active(void *state, const kw_store_key *k,
				 bool active, kw_reply *r)
{
	struct file_state *st = state;
	struct active_arg a = { k, active };
	kw_status rc = check_key(st, k, r);

	return rc != KW_OK ? rc : file_write(st, LOCK_WAIT_MANAGE, change_active, &a, r);
}

static kw_status change_remove(struct file_state *st, struct edit *ed,
			       void *arg, kw_reply *r)
{
	const kw_store_key *k = arg;
	const char *owner = key_owner(k);
	char desc[FILE_DESC_MAX];
	struct file_rec gone;
	bool found;
	size_t at;

	file_describe(desc, sizeof(desc), k->scope, owner, k->provider);
	at = edit_find(ed, k->scope, owner, k->provider, &found);
	if (!found) {
		st->host->reply_detail(r, "no %s in %s", desc, st->path);
		return KW_ERR_NOTFOUND;
	}
	gone = ed->recs[at];
	memmove(&ed->recs[at], &ed->recs[at + 1],
		(ed->n - at - 1) * sizeof(ed->recs[0]));
	ed->n--;
	free(gone.own_owner);
	free(gone.own_provider);
	free(gone.own_name);
	free(gone.own_sealed);
	/* The new file does not hold it; the old one is unlinked by the
	 * rename, its blocks freed with it. */
	st->host->reply_detail(r, "deleted the %s from %s", desc, st->path);
	return KW_OK;
}

static kw_status file_remove(void *state, const kw_store_key *k, kw_reply *r)
{
	struct file_state *st = state;
	kw_status rc = check_key(st, k, r);

	return rc != KW_OK ? rc : file_write(st, LOCK_WAIT_MANAGE, change_remove, (void *)k, r);
}

static kw_status file_list(void *state, kw_scope scope, const char *owner,
			   kw_store_list_fn *fn, void *arg, kw_reply *r)
{
	struct file_state *st = state;
	const kw_host *host = st->host;
	struct file_snap *snap = NULL;
	struct file_err e;
	kw_status rc;

	if (scope != KW_SCOPE_NONE && scope != st->scope)
		return KW_OK;
	rc = file_current(st, false, &snap, &e);
	if (rc != KW_OK) {
		host->reply_detail(r, "%s", e.msg);
		return rc;
	}
	for (size_t i = 0; i < snap->n && rc == KW_OK; i++) {
		const struct file_rec *rec = &snap->recs[i];
		char masked[KW_MASK_SIZE], key_id[KW_KEY_ID_SIZE], why[200];
		size_t plen;
		kw_store_record out;
		kw_seal_aad aad;
		char *plain;

		if (rec->scope != st->scope ||
		    (owner != NULL &&
		     strcmp(owner, rec->owner != NULL ? rec->owner : "") != 0))
			continue;
		if (rec->sealed_len < KW_SEAL_OVERHEAD ||
		    host->sealed_key_id(rec->sealed, rec->sealed_len,
					key_id) != KW_OK)
			key_id[0] = '\0';
		plen = rec->sealed_len >= KW_SEAL_OVERHEAD
			       ? rec->sealed_len - KW_SEAL_OVERHEAD
			       : 0;
		plain = host->secure_alloc(plen + 1);
		if (plain == NULL) {
			host->reply_detail(r, "out of memory");
			rc = KW_ERR_NOMEM;
			break;
		}
		rec_aad(snap->file_id_hex, rec->scope, rec->owner,
			rec->provider, &aad);
		if (key_id[0] != '\0' &&
		    host->unseal(st->kr, &aad, rec->sealed, rec->sealed_len,
				 plain, why, sizeof(why)) == KW_OK)
			host->mask(plain, plen, masked, sizeof(masked));
		else
			snprintf(masked, sizeof(masked), "(cannot open)");
		host->secure_free(plain, plen + 1);
		out = (kw_store_record){
			.scope = rec->scope,
			.owner = rec->owner,
			.provider = rec->provider,
			.name = rec->name,
			.active = rec->active,
			.masked = masked,
			.usage_count = rec->usage_count,
			.last_used = rec->last_used,
			.created = rec->created,
			.rotated = rec->rotated,
			.key_id = key_id,
		};
		rc = fn(arg, &out);
	}
	snap_release(st, snap);
	return rc;
}

struct rekey_arg {
	uint64_t count;
};

static kw_status change_rekey(struct file_state *st, struct edit *ed,
			      void *arg, kw_reply *r)
{
	struct rekey_arg *a = arg;
	const kw_host *host = st->host;
	const char *cur = host->keyring_id(st->kr);
	char idhex[2 * FILE_ID_LEN + 1];

	file_hex(ed->h.file_id, FILE_ID_LEN, idhex);
	for (size_t i = 0; i < ed->n; i++) {
		struct file_rec *rec = &ed->recs[i];
		char id[KW_KEY_ID_SIZE], desc[FILE_DESC_MAX], why[200];
		kw_store_key k = { rec->scope, rec->owner, rec->provider };
		size_t plen;
		kw_seal_aad aad;
		kw_status rc;
		char *plain;

		if (rec->scope != st->scope)
			continue;
		file_describe(desc, sizeof(desc), rec->scope, rec->owner,
			      rec->provider);
		if (host->sealed_key_id(rec->sealed, rec->sealed_len, id) !=
		    KW_OK) {
			host->reply_detail(r, "the %s in %s is damaged", desc,
					   st->path);
			return KW_ERR_CRYPTO;
		}
		if (strcmp(id, cur) == 0)
			continue;
		plen = rec->sealed_len - KW_SEAL_OVERHEAD;
		plain = host->secure_alloc(plen + 1);
		if (plain == NULL) {
			host->reply_detail(r, "out of memory");
			return KW_ERR_NOMEM;
		}
		rec_aad(idhex, rec->scope, rec->owner, rec->provider,
			&aad);
		why[0] = '\0';
		rc = host->unseal(st->kr, &aad, rec->sealed, rec->sealed_len,
				  plain, why, sizeof(why));
		if (rc == KW_OK)
			rc = seal_into(st, idhex, &k, plain, plen, rec);
		host->secure_free(plain, plen + 1);
		if (rc != KW_OK) {
			host->reply_detail(r, "the %s: %s", desc,
					   why[0] != '\0' ? why
							  : "cannot seal it");
			return rc;
		}
		a->count++;
	}
	host->reply_detail(r, "re-sealed %" PRIu64 " %s key%s in %s under "
			   "master key %s", a->count, st->scope_word,
			   a->count == 1 ? "" : "s", st->path, cur);
	return KW_OK;
}

static kw_status file_rekey(void *state, uint64_t *count, kw_reply *r)
{
	struct file_state *st = state;
	struct rekey_arg a = { 0 };
	kw_status rc = file_write(st, LOCK_WAIT_MANAGE, change_rekey, &a, r);

	if (count != NULL)
		*count = rc == KW_OK ? a.count : 0;
	return rc;
}

struct used_arg {
	const kw_store_use *uses;
	size_t n;
};

static kw_status change_used(struct file_state *st, struct edit *ed,
			     void *arg, kw_reply *r)
{
	const struct used_arg *a = arg;

	(void)r;
	for (size_t i = 0; i < a->n; i++) {
		const kw_store_use *u = &a->uses[i];
		bool found;
		size_t at;

		if (u->key.scope != st->scope || u->key.provider == NULL)
			continue;
		at = edit_find(ed, u->key.scope, key_owner(&u->key),
			       u->key.provider, &found);
		/* A key deleted since it was used: nothing to count. */
		if (!found)
			continue;
		ed->recs[at].usage_count += u->count;
		if (u->when > ed->recs[at].last_used)
			ed->recs[at].last_used = u->when;
	}
	return KW_OK;
}

static kw_status file_used_batch(void *state, const kw_store_use *uses,
				 size_t n, kw_reply *r)
{
	struct used_arg a = { uses, n };

	if (n == 0)
		return KW_OK;
	/* Given up when another writer holds the lock: the library then
	 * drops these counts (they are informational) rather than have the
	 * application wait. */
	return file_write(state, LOCK_WAIT_USES, change_used, &a, r);
}

static kw_status file_used(void *state, const kw_store_key *k, uint64_t count,
			   int64_t when, kw_reply *r)
{
	const kw_store_use u = { *k, count, when };

	return file_used_batch(state, &u, 1, r);
}

static kw_status file_check(void *state, kw_reply *r)
{
	struct file_state *st = state;
	struct file_snap *snap = NULL;
	struct file_err e;
	size_t nkeys = 0;
	kw_status rc;

	rc = file_current(st, false, &snap, &e);
	if (rc != KW_OK) {
		st->host->reply_detail(r, "%s", e.msg);
		return rc;
	}
	for (size_t i = 0; i < snap->n; i++)
		nkeys += snap->recs[i].scope == st->scope;
	st->host->reply_detail(r, "%s: %zu %s key%s, format v%u, generation "
			       "%" PRIu64,
			       st->path, nkeys, st->scope_word,
			       nkeys == 1 ? "" : "s",
			       (unsigned)snap->h.version, snap->h.generation);
	snap_release(st, snap);
	return KW_OK;
}

/* ---- opening ---- */

static void file_close(void *state)
{
	struct file_state *st = state;

	if (st == NULL)
		return;
	if (st->snap != NULL && --st->snap->refs == 0)
		snap_put(st->host, st->snap);
	if (st->kr != NULL)
		st->host->keyring_close(st->kr);
	pthread_mutex_destroy(&st->lock);
	free(st->lock_path);
	free(st->dir);
	free(st);
}

/*
 * Make a new, empty file: a fresh salt and file id, generation 1.  Under
 * the write lock, so that of two processes opening a missing file one
 * makes it; the other finds it there (*made false).
 */
static kw_status create_file(struct file_state *st, bool *made)
{
	const kw_host *host = st->host;
	struct file_header h = { .version = FILE_VERSION, .generation = 1 };
	unsigned char *buf = NULL;
	char why[600] = "";
	size_t len = 0;
	struct stat sb;
	kw_status rc;
	int lockfd = -1, en;

	*made = false;
	rc = open_lock(st, &lockfd, why, sizeof(why));
	if (rc != KW_OK) {
		host->error(st->inst, "path", "%s", why);
		goto out;
	}
	en = flock_within(lockfd, LOCK_WAIT_MANAGE);
	if (en == EWOULDBLOCK) {
		host->error(st->inst, "path", "%s is locked by another keyway "
			    "writer (waited %d seconds for %s)", st->path,
			    LOCK_WAIT_MANAGE / 1000, st->lock_path);
		rc = KW_ERR_UNAVAIL;
		goto out;
	}
	if (en != 0) {
		host->error(st->inst, "path", "cannot lock %s: %s",
			    st->lock_path, strerror(en));
		rc = KW_ERR_IO;
		goto out;
	}
	if (lstat(st->path, &sb) == 0) {
		rc = KW_OK;
		goto out;
	}
	host->random(st->salt, KW_SALT_SIZE);
	host->random(st->file_id, FILE_ID_LEN);
	memcpy(h.salt, st->salt, KW_SALT_SIZE);
	memcpy(h.file_id, st->file_id, FILE_ID_LEN);
	rc = host->keyring_open(st->inst, st->salt, &st->kr);
	if (rc != KW_OK)
		goto out;
	if (KW_HOST_HAS(host, keyring_kdf))
		h.kdf = host->keyring_kdf(st->kr, h.kdf_params);
	rc = file_build(host, st->kr, &h, NULL, 0, &buf, &len);
	if (rc == KW_OK)
		rc = replace_file(st, buf, len, why, sizeof(why));
	if (rc != KW_OK) {
		host->error(st->inst, "path", "cannot create %s: %s", st->path,
			    why[0] != '\0' ? why
					    : rc == KW_ERR_NOMEM ? "out of memory"
								 : "cannot seal it");
		goto out;
	}
	*made = true;
out:
	free(buf);
	if (lockfd >= 0)
		close(lockfd);
	return rc;
}

/* Read the file for the first time: its header's salt binds the keyring
 * (made already when this open created the file). */
static kw_status first_read(struct file_state *st, bool checking)
{
	const kw_host *host = st->host;
	struct file_snap *snap = NULL;
	struct file_err e = { KW_OK, "" };
	bool made = false;
	kw_status rc;
	int fd = -1;

	rc = host->open_private(st->inst, "path", st->path, &fd);
	if (rc == KW_ERR_NOTFOUND) {
		if (checking) {
			host->error(st->inst, "path",
				    "%s does not exist: create it with keyway "
				    "init (or a first keyway put)",
				    st->path);
			return KW_ERR_NOTFOUND;
		}
		rc = create_file(st, &made);
		if (rc != KW_OK)
			return rc;
		rc = host->open_private(st->inst, "path", st->path, &fd);
		if (rc == KW_ERR_NOTFOUND)
			host->error(st->inst, "path", "%s vanished as it was "
				    "created", st->path);
	}
	if (rc != KW_OK)
		return rc;
	rc = read_snap(st, fd, NULL, &snap, &e);
	if (rc != KW_OK) {
		if (e.msg[0] != '\0')
			host->error(st->inst, "path", "%s", e.msg);
		goto out;
	}
	snap->refs = 1;
	st->snap = snap;
out:
	close(fd);
	return rc;
}

static const kw_setting_spec file_settings[] = {
	{ "path", KW_SETTING_PATH, KW_SETTING_REQUIRED },
	{ NULL, 0, 0 },
};

static kw_status file_open(const kw_host *host, kw_instance *inst,
			   void **state)
{
	struct file_state *st = NULL;
	const char *slash;
	kw_status rc;
	bool checking = false;

	*state = NULL;
	if (!KW_HOST_HAS(host, reopen_private)) {
		host->error(inst, NULL, "this libkeyway cannot open files "
			    "privately (it has no reopen_private service); "
			    "the file module needs a newer libkeyway");
		return KW_ERR_MODULE;
	}
	if (KW_HOST_HAS(host, instance_role) &&
	    host->instance_role(inst) != KW_INSTANCE_BACKEND) {
		host->error(inst, NULL, "the file module is a key store, not "
			    "a quota ledger");
		return KW_ERR_MODULE;
	}
	if (KW_HOST_HAS(host, open_flags))
		checking = (host->open_flags(inst) & KW_OPEN_CHECK) != 0;
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		host->error(inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	pthread_mutex_init(&st->lock, NULL);
	st->host = host;
	st->inst = inst;
	st->scope = host->instance_scope(inst);
	st->scope_word = file_scope_word(st->scope);
	if (st->scope_word == NULL) {
		host->error(inst, NULL,
			    "missing scope (\"user\", \"org\" or \"system\")");
		rc = KW_ERR_CONFIG;
		goto out;
	}
	rc = host->setting_string(inst, "path", &st->path);
	if (rc != KW_OK || st->path == NULL || st->path[0] != '/') {
		host->error(inst, "path", "path must name a file");
		rc = KW_ERR_CONFIG;
		goto out;
	}
	slash = strrchr(st->path, '/');
	st->dir = slash == st->path ? strdup("/")
				    : strndup(st->path,
					      (size_t)(slash - st->path));
	st->lock_path = malloc(strlen(st->path) + sizeof(".lock"));
	if (st->dir == NULL || st->lock_path == NULL) {
		host->error(inst, NULL, "out of memory");
		rc = KW_ERR_NOMEM;
		goto out;
	}
	strcpy(st->lock_path, st->path);
	strcat(st->lock_path, ".lock");
	rc = first_read(st, checking);
	if (rc != KW_OK)
		goto out;
	*state = st;
	st = NULL;
out:
	file_close(st);
	return rc;
}

static const struct kw_module file_module = {
	KW_MODULE_HEADER,
	.name = "file",
	.description = "keys in one encrypted file",
	.caps = KW_CAP_LOOKUP | KW_CAP_STORE | KW_CAP_LIST | KW_CAP_SCOPED,
	.settings = file_settings,
	.open = file_open,
	.close = file_close,
	.check = file_check,
	.lookup = file_lookup,
	.put = file_put,
	.set_active = file_set_active,
	.remove = file_remove,
	.list = file_list,
	.rekey = file_rekey,
	.used = file_used,
	.used_batch = file_used_batch,
};

KW_MODULE_EXPORT(file_module)
