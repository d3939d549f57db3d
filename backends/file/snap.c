/*
 * snap.c - the snapshot of the file a process keeps: read, checked and
 * opened once, and kept while one stat() per lookup says the file is
 * the same.  A changed file is read again; one that only was touched
 * (its header and nonce unchanged) is not.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* st_mtim */
#endif
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <keyway/module.h>

#include "file.h"

void file_snap_free(const kw_host *host, struct file_snap *snap)
{
	if (snap == NULL)
		return;
	file_snap_clear(host, snap);
	free(snap);
}

void file_snap_release(struct file_state *st, struct file_snap *snap)
{
	bool last;

	if (snap == NULL)
		return;
	pthread_mutex_lock(&st->lock);
	last = --snap->refs == 0;
	pthread_mutex_unlock(&st->lock);
	if (last)
		file_snap_free(st->host, snap);
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
		return KW_ERR_BACKEND;
	}
	buf = malloc(size > 0 ? size : 1);
	if (buf == NULL) {
		e->rc = KW_ERR_NOMEM;
		snprintf(e->msg, sizeof(e->msg), "%s: out of memory", path);
		return KW_ERR_NOMEM;
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
			return KW_ERR_IO;
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
kw_status file_read_snap(struct file_state *st, int fd,
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
		return KW_ERR_IO;
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
	/* Generations only go up: a lower one is an older copy put in the
	 * file's place, which could bring back a key since rotated or
	 * deleted.  The refusal stands until the backend is opened again,
	 * also once a write has taken the copy past the generation we had:
	 * a program started afterwards reads the file as it is. */
	if (old != NULL && h.generation < old->h.generation &&
	    !st->rolled_back) {
		st->rolled_back = true;
		st->rolled_to = h.generation;
		st->rolled_from = old->h.generation;
	}
	if (st->rolled_back) {
		e->rc = rc = KW_ERR_BACKEND;
		snprintf(e->msg, sizeof(e->msg),
			 "%s was replaced by an older copy of itself "
			 "(generation %" PRIu64 ", after %" PRIu64 "): if that "
			 "was meant, restart the program to read it",
			 st->path, st->rolled_to, st->rolled_from);
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
	file_snap_free(host, snap);
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
 * file_snap_release(): the snapshot we have when one stat() says the file is
 * unchanged, else the file read again.  A writer (`verify`, under the
 * write lock) never trusts stat(), as inodes are reused and times are
 * coarse: the file is opened and its header and nonce compared with the
 * snapshot's, and read again when they differ.
 */
kw_status file_current(struct file_state *st, bool verify,
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
		rc = file_read_snap(st, fd, st->snap, &fresh, e);
	if (rc != KW_OK)
		goto out;
	if (fresh->touched) {
		st->snap->dev = fresh->dev;
		st->snap->ino = fresh->ino;
		st->snap->size = fresh->size;
		st->snap->mtime = fresh->mtime;
		st->snap->ctime = fresh->ctime;
		file_snap_free(st->host, fresh);
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
	file_snap_free(st->host, old);
	return rc;
}
