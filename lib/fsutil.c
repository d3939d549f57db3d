/*
 * fsutil.c - deciding whether a file may be trusted.
 *
 * keyway loads code (modules) and reads configuration and secrets from
 * files.  Anyone who can write such a file, or a directory on the way to
 * it, or a directory a symbolic link on the way passes through, controls
 * keyway; so every one of them must be owned by root or by the caller and
 * not writable by group or others.  Sticky directories owned by root
 * (/tmp) are the exception: nobody else can rename or remove what is in
 * them, except what they own themselves, which is why a symbolic link must
 * be owned by root or the caller too.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"

const char *kwi_or_euid(char *buf)
{
	uid_t euid = geteuid();

	buf[0] = '\0';
	if (euid != 0)
		snprintf(buf, KWI_EUID_BUF, " or uid %u", (unsigned)euid);
	return buf;
}

#define MAX_LINKS 40 /* as the kernel's ELOOP limit */

bool kwi_stat_trusted(const struct stat *st, bool is_dir, char *why,
		      size_t whylen)
{
	if (st->st_uid != 0 && st->st_uid != geteuid()) {
		char euid_buf[KWI_EUID_BUF];

		snprintf(why, whylen, "owned by uid %u, not by root%s",
			 (unsigned)st->st_uid, kwi_or_euid(euid_buf));
		return false;
	}
	if (is_dir && (st->st_mode & S_ISVTX) && st->st_uid == 0)
		return true;
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(why, whylen, "writable by %s",
			 (st->st_mode & S_IWOTH) ? "others" : "group");
		return false;
	}
	return true;
}

static kw_status walk(const char *path, int depth, char *why, size_t whylen);

static kw_status too_long(const char *path, char *why, size_t whylen)
{
	snprintf(why, whylen, "%s: path too long", path);
	return KW_ERR_INVAL;
}

/*
 * Add the next component of the path at *p to cur (*curlen bytes long),
 * and move *p past it.  1 when one was added, 0 at the end of the path,
 * -1 when cur has no room for it.
 */
static int add_component(char cur[PATH_MAX], size_t *curlen, const char **p)
{
	const char *end;
	size_t n;

	while (**p == '/')
		(*p)++;
	if (**p == '\0')
		return 0;
	end = strchrnul(*p, '/');
	n = (size_t)(end - *p);
	if (*curlen + n + 2 > PATH_MAX)
		return -1;
	if (*curlen > 1)
		cur[(*curlen)++] = '/';
	memcpy(cur + *curlen, *p, n);
	*curlen += n;
	cur[*curlen] = '\0';
	*p = end;
	return 1;
}

/*
 * cur, met on the way to path, is a symbolic link (st) and rest is what
 * follows it: check the link, then walk its target followed by rest.  cur
 * is cut to the link's directory.
 */
static kw_status follow_link(char *cur, const struct stat *st,
			     const char *rest, const char *path, int depth,
			     char *why, size_t whylen)
{
	char target[PATH_MAX], next[PATH_MAX];
	ssize_t tl;
	int n;

	/* Its owner can replace it between this check and the open, even in
	 * a sticky directory. */
	if (st->st_uid != 0 && st->st_uid != geteuid()) {
		char euid_buf[KWI_EUID_BUF];

		snprintf(why, whylen,
			 "%s is a symbolic link owned by uid %u, not by root%s",
			 cur, (unsigned)st->st_uid, kwi_or_euid(euid_buf));
		return KW_ERR_PERM;
	}
	if (depth >= MAX_LINKS) {
		snprintf(why, whylen, "%s: too many symbolic links", path);
		return KW_ERR_INVAL;
	}
	tl = readlink(cur, target, sizeof(target) - 1);
	if (tl < 0) {
		snprintf(why, whylen, "%s: %s", cur, strerror(errno));
		return KW_ERR_IO;
	}
	target[tl] = '\0';
	/* Resolve the target against the link's directory, then finish the
	 * walk from there. */
	if (target[0] == '/') {
		n = snprintf(next, sizeof(next), "%s%s", target, rest);
	} else {
		*strrchr(cur, '/') = '\0';
		n = snprintf(next, sizeof(next), "%s/%s%s", cur, target, rest);
	}
	if (n >= (int)sizeof(next))
		return too_long(path, why, whylen);
	return walk(next, depth + 1, why, whylen);
}

/*
 * Walk `path` one component at a time from the root, checking each
 * directory before descending into it, and restart from a symbolic link's
 * target (itself checked the same way) when one is met.
 */
static kw_status walk(const char *path, int depth, char *why, size_t whylen)
{
	char cur[PATH_MAX];
	const char *p = path;
	/* What "/ is %s" says when lstat("/") itself fails: never garbage. */
	char reason[256] = "unreadable";
	size_t curlen;
	struct stat st;
	int added;

	if (path[0] != '/') {
		snprintf(why, whylen, "%s: not an absolute path", path);
		return KW_ERR_INVAL;
	}
	if (lstat("/", &st) != 0 ||
	    !kwi_stat_trusted(&st, true, reason, sizeof(reason))) {
		snprintf(why, whylen, "/ is %s", reason);
		return KW_ERR_PERM;
	}
	strcpy(cur, "/");
	curlen = 1;

	while ((added = add_component(cur, &curlen, &p)) > 0) {
		if (lstat(cur, &st) != 0) {
			snprintf(why, whylen, "%s: %s", cur, strerror(errno));
			return errno == ENOENT ? KW_ERR_NOTFOUND : KW_ERR_IO;
		}
		if (S_ISLNK(st.st_mode))
			return follow_link(cur, &st, p, path, depth, why,
					   whylen);
		if (!kwi_stat_trusted(&st, S_ISDIR(st.st_mode), reason,
				      sizeof(reason))) {
			snprintf(why, whylen, "%s is %s", cur, reason);
			return KW_ERR_PERM;
		}
	}
	return added < 0 ? too_long(path, why, whylen) : KW_OK;
}

kw_status kwi_path_trusted(const char *path, char *why, size_t whylen)
{
	return walk(path, 0, why, whylen);
}

kw_status kwi_fd_private(int fd, const char *name, char *why, size_t whylen)
{
	char euid_buf[KWI_EUID_BUF];
	struct stat st;

	if (name == NULL)
		name = "the file";
	if (fd < 0) {
		snprintf(why, whylen, "%s is not open (descriptor %d)", name,
			 fd);
		return KW_ERR_INVAL;
	}
	if (fstat(fd, &st) != 0) {
		snprintf(why, whylen, "%s: %s", name, strerror(errno));
		return KW_ERR_IO;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s is not a regular file", name);
		return KW_ERR_PERM;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		snprintf(why, whylen,
			 "%s is owned by uid %u; it must belong to root%s",
			 name, (unsigned)st.st_uid, kwi_or_euid(euid_buf));
		return KW_ERR_PERM;
	}
	if (st.st_mode & 077) {
		snprintf(why, whylen,
			 "%s is accessible by group or others (mode %04o); "
			 "it holds secrets: chmod 600 it",
			 name, (unsigned)(st.st_mode & 07777));
		return KW_ERR_PERM;
	}
	return KW_OK;
}

kw_status kwi_open_private(const char *path, int *fd, char *why,
			   size_t whylen)
{
	kw_status rc;
	int f, flags;

	*fd = -1;
	/* Not blocking: opening a FIFO for reading waits for a writer, and
	 * a device may wait for anything.  Nothing is read before fstat()
	 * has said it is a regular file. */
	f = open(path,
		 O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (f < 0) {
		int e = errno;

		if (e == ELOOP)
			snprintf(why, whylen,
				 "%s is a symbolic link; point the setting at "
				 "the file itself",
				 path);
		else
			snprintf(why, whylen, "%s: %s", path, strerror(e));
		return e == ENOENT ? KW_ERR_NOTFOUND
		       : e == EACCES || e == ELOOP ? KW_ERR_PERM : KW_ERR_IO;
	}
	rc = kwi_fd_private(f, path, why, whylen);
	if (rc != KW_OK) {
		close(f);
		return rc;
	}
	/* Reads of a regular file never block; callers get the ordinary
	 * blocking descriptor all the same. */
	flags = fcntl(f, F_GETFL);
	if (flags < 0 || fcntl(f, F_SETFL, flags & ~O_NONBLOCK) != 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		close(f);
		return KW_ERR_IO;
	}
	*fd = f;
	return KW_OK;
}
