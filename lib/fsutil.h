/*
 * fsutil.h - deciding whether a file may be trusted (fsutil.c).  Never
 * installed.
 */
#ifndef KEYWAY_FSUTIL_H
#define KEYWAY_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

#include <sys/stat.h>

#include <keyway/keyway.h>

/*
 * Is this file or directory safe to trust: owned by root or the caller, and
 * not writable by group or others (a directory that is sticky and owned by
 * root, such as /tmp, is safe)?  On refusal writes why into why.
 */
bool kwi_stat_trusted(const struct stat *st, bool is_dir, char *why,
		      size_t whylen);
/*
 * Check every directory on the way to path and path itself, following
 * symbolic links and checking where they lead too; a link itself must be
 * owned by root or the caller, since its owner can replace it.  KW_OK;
 * KW_ERR_PERM, KW_ERR_NOTFOUND, KW_ERR_INVAL or KW_ERR_IO with why.
 */
kw_status kwi_path_trusted(const char *path, char *why, size_t whylen);
/*
 * Check the file open on fd as module.h's check_private describes (a
 * regular file, owned by root or the caller, no access for group or
 * others): KW_OK; KW_ERR_PERM, KW_ERR_IO or KW_ERR_INVAL with why, which
 * names the file as `name` (NULL: "the file").
 */
kw_status kwi_fd_private(int fd, const char *name, char *why, size_t whylen);
/* Open a secret-bearing file as module.h's open_private describes: *fd,
 * the caller's to close, or -1 and a failure with why. */
kw_status kwi_open_private(const char *path, int *fd, char *why,
			   size_t whylen);

/* " or uid N" for a file that may belong to root or to the effective
 * uid N that runs us, or "" when that is root: "it must belong to root%s".
 * buf: room for KWI_EUID_BUF bytes. */
#define KWI_EUID_BUF 32
const char *kwi_or_euid(char *buf);

#endif /* KEYWAY_FSUTIL_H */
