/*
 * write.c - changes to the file, crash-safe.  A writer takes an flock()
 * on "PATH.lock", checks the file under it (its header and nonce, never
 * stat() alone), and replaces it whole: a temporary file in the same
 * directory, written through its own descriptor, fsync()ed, renamed over
 * the file, and the directory fsync()ed.  Readers take no lock: they see
 * the old file or the new one.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkostemp() */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <keyway/module.h>

#include "file.h"


/* Say why a write failed: through r, or, for a write no caller waits
 * for (r NULL: the use counts written as the backend closes), in the
 * log. */
static void say(const struct file_state *st, kw_reply *r, const char *fmt,
		...) KW_PRINTF(3, 4);

static void say(const struct file_state *st, kw_reply *r, const char *fmt,
		...)
{
	char line[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (r != NULL)
		st->host->reply_detail(r, "%s", line);
	else
		st->host->log(st->inst, KW_LOG_WARNING, "%s", line);
}

/*
 * What to do about a write that failed with errno en, as " (...)", or
 * "" when there is nothing better to say than the error itself.
 */
static const char *advice(const struct file_state *st, int en, char *buf,
			  size_t size)
{
	switch (en) {
	case ENOSPC:
	case EDQUOT:
		return " (free space on its file system and try again)";
	case EFBIG:
		return " (the process may not write files this large: raise "
		       "its file size limit, ulimit -f)";
	case EROFS:
		return " (its file system is mounted read-only)";
	case EACCES:
	case EPERM:
		snprintf(buf, size, " (uid %u needs write access to %s)",
			 (unsigned)geteuid(), st->dir);
		return buf;
	default:
		return "";
	}
}

/*
 * Open PATH.lock, made 0600 if missing; made by root beside a file of
 * another user, it is given to that user.  KW_OK, or a status and why
 * (a failure to open it followed by tail: what became of the write).
 */
static kw_status open_lock(struct file_state *st, const char *tail, int *fd,
			   char *why, size_t whylen)
{
	char hint[300];
	struct stat fsb, lsb;
	bool have_file;
	int f, en;

	*fd = -1;
	f = open(st->lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC |
					O_NOCTTY | O_NONBLOCK,
		 0600);
	if (f < 0) {
		en = errno;
		snprintf(why, whylen, "cannot lock %s: %s%s%s", st->lock_path,
			 strerror(en), tail, advice(st, en, hint, sizeof(hint)));
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
		char euid_buf[32] = "";

		if (geteuid() != 0)
			snprintf(euid_buf, sizeof(euid_buf), " or uid %u",
				 (unsigned)geteuid());
		snprintf(why, whylen, "%s is owned by uid %u; it must belong "
			 "to root%s: chown %u it",
			 st->lock_path, (unsigned)lsb.st_uid, euid_buf,
			 (unsigned)geteuid());
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

	rc = open_lock(st, "; nothing was written", &f, why, sizeof(why));
	if (rc != KW_OK) {
		say(st, r, "%s", why);
		return rc;
	}
	en = flock_within(f, wait_ms);
	if (en == EWOULDBLOCK) {
		if (wait_ms >= 1000)
			say(st, r, "%s is locked by another keyway writer "
			    "(waited %ld seconds for %s); nothing was written",
			    st->path, wait_ms / 1000, st->lock_path);
		else
			say(st, r, "%s is locked by another keyway writer "
			    "(%s); nothing was written",
			    st->path, st->lock_path);
		close(f);
		return KW_ERR_UNAVAIL;
	}
	if (en != 0) {
		say(st, r, "cannot lock %s: %s; nothing was written",
		    st->lock_path, strerror(en));
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
 * Remove the temporary files that writers killed before their rename()
 * left beside the file ("PATH.tmp." and six letters or digits, empty or
 * begun with the magic).  Only a writer
 * holding the lock makes one, and we hold it: any there now is a
 * leftover.  Only regular files are removed, and only ours (root's: its
 * own and those of the file's owner, to whom it gives the files it
 * writes).  A directory that cannot be read is left as it is.
 */
#define TEMP_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" \
		   "0123456789"

/* Whether the file `name` in dfd is what a writer leaves: empty, or
 * begun with the magic.  Anything else is someone's own file. */
static bool half_written(int dfd, const char *name)
{
	unsigned char magic[FILE_MAGIC_LEN];
	ssize_t n;
	int fd;

	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
				       O_NOCTTY);
	if (fd < 0)
		return false;
	do
		n = pread(fd, magic, sizeof(magic), 0);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n < 0)
		return false;
	return memcmp(magic, FILE_MAGIC, (size_t)n) == 0;
}

static void sweep_temps(struct file_state *st)
{
	const char *base = strrchr(st->path, '/') + 1;
	size_t blen = strlen(base);
	const uid_t me = geteuid();
	struct stat fsb, sb;
	struct dirent *de;
	bool have_file;
	unsigned n = 0;
	DIR *d;
	int dfd;

	dfd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return;
	d = fdopendir(dfd);
	if (d == NULL) {
		close(dfd);
		return;
	}
	have_file = fstatat(dfd, base, &fsb, AT_SYMLINK_NOFOLLOW) == 0;
	while ((de = readdir(d)) != NULL) {
		const char *rest = de->d_name + blen;

		if (strncmp(de->d_name, base, blen) != 0 ||
		    strncmp(rest, ".tmp.", 5) != 0 || strlen(rest + 5) != 6 ||
		    strspn(rest + 5, TEMP_CHARS) != 6)
			continue;
		if (fstatat(dfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(sb.st_mode))
			continue;
		if (sb.st_uid != me &&
		    !(me == 0 && have_file && sb.st_uid == fsb.st_uid))
			continue;
		if (!half_written(dfd, de->d_name))
			continue;
		if (unlinkat(dfd, de->d_name, 0) == 0)
			n++;
	}
	closedir(d);
	if (n > 0)
		st->host->log(st->inst, KW_LOG_INFO,
			      "removed %u temporary file%s beside %s left by "
			      "interrupted keyway writers",
			      n, n == 1 ? "" : "s", st->path);
}

/*
 * Replace the file with buf, crash-safe: a temporary file beside it,
 * written and fsync()ed, renamed over it, the directory fsync()ed.  On
 * failure the file is as it was, and why says so, followed by tail: what
 * became of the write.
 */
static kw_status replace_file(struct file_state *st, const unsigned char *buf,
			      size_t len, const char *tail, char *why,
			      size_t whylen)
{
	char hint[300];
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
		snprintf(why, whylen, "cannot %s %s: %s%s%s", step, st->path,
			 strerror(en), tail, advice(st, en, hint,
						    sizeof(hint)));
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	if (tmp[0] != '\0')
		unlink(tmp);
	free(tmp);
	return rc;
}

static void edit_free(struct file_edit *ed)
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

/* The file is unchanged: say why a write could not be made. */
static kw_status say_unchanged(struct file_state *st, kw_reply *r,
			       const struct file_err *e)
{
	say(st, r, "%s; nothing was written", e->msg);
	return e->rc;
}

/*
 * Change the file under the write lock: read it as it is now, apply
 * `change` to a copy of its records, and replace the file with them, one
 * generation on, sealed under the current master key.
 */
kw_status file_write(struct file_state *st, long wait_ms,
			    file_change_fn *change, void *arg, kw_reply *r)
{
	const kw_host *host = st->host;
	struct file_snap *cur = NULL;
	struct file_edit ed = { 0 };
	unsigned char *buf = NULL;
	struct file_err e;
	char why[600];
	size_t len = 0;
	kw_status rc;
	int lockfd = -1;

	rc = lock_file(st, wait_ms, &lockfd, r);
	if (rc != KW_OK)
		return rc;
	sweep_temps(st);
	rc = file_current(st, true, &cur, &e);
	if (rc != KW_OK) {
		rc = say_unchanged(st, r, &e);
		goto out;
	}
	ed.cap = cur->n + 1;
	ed.recs = calloc(ed.cap, sizeof(*ed.recs));
	if (ed.recs == NULL) {
		rc = KW_ERR_NOMEM;
		say(st, r, "out of memory");
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
		say(st, r, "cannot seal %s (%s); nothing was "
				   "written", st->path,
				   rc == KW_ERR_NOMEM ? "out of memory"
						      : "sealing failed");
		goto out;
	}
	why[0] = '\0';
	rc = replace_file(st, buf, len, "; the file is unchanged", why,
			  sizeof(why));
	if (rc != KW_OK) {
		say(st, r, "%s", why);
		goto out;
	}
out:
	edit_free(&ed);
	free(buf);
	file_snap_release(st, cur);
	unlock_file(lockfd);
	return rc;
}



/*
 * Make a new, empty file: a fresh salt and file id, generation 1.  Under
 * the write lock, so that of two processes opening a missing file one
 * makes it; the other finds it there (*made false).
 */
kw_status file_create(struct file_state *st, bool *made)
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
	rc = open_lock(st, "; nothing was created", &lockfd, why,
		       sizeof(why));
	if (rc != KW_OK) {
		host->error(st->inst, "path", "%s", why);
		goto out;
	}
	en = flock_within(lockfd, FILE_WAIT_MANAGE);
	if (en == EWOULDBLOCK) {
		host->error(st->inst, "path", "%s is locked by another keyway "
			    "writer (waited %d seconds for %s)", st->path,
			    FILE_WAIT_MANAGE / 1000, st->lock_path);
		rc = KW_ERR_UNAVAIL;
		goto out;
	}
	if (en != 0) {
		host->error(st->inst, "path", "cannot lock %s: %s",
			    st->lock_path, strerror(en));
		rc = KW_ERR_IO;
		goto out;
	}
	sweep_temps(st);
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
		rc = replace_file(st, buf, len, "; nothing was created", why,
				  sizeof(why));
	if (rc != KW_OK) {
		if (why[0] != '\0')
			host->error(st->inst, "path", "%s", why);
		else
			host->error(st->inst, "path", "cannot create %s: %s",
				    st->path, rc == KW_ERR_NOMEM
						      ? "out of memory"
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

