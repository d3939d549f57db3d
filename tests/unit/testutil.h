/*
 * testutil.h - helpers shared by the unit tests.
 */
#ifndef KEYWAY_TESTUTIL_H
#define KEYWAY_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

#include <keyway/keyway.h>

/* A fresh private directory under $TMPDIR (or /tmp); aborts on failure. */
char *tu_tmpdir(void);
/* Remove dir and everything in it, then free it. */
void tu_rmrf(char *dir);
/* Write a file of the given mode (printf-style contents); returns its
 * malloc'd path. */
char *tu_write(const char *dir, const char *name, mode_t mode,
	       const char *fmt, ...) KW_PRINTF(4, 5);
/* Path of a built module, e.g. tu_module("fake") -> ".../kw_fake.so". */
char *tu_module(const char *name);

/*
 * Write `text` as keyway.conf in a fresh directory and kw_open() it.  The
 * directory is kept in *dir (free with tu_rmrf) when dir is not NULL.
 */
kw_status tu_open(kw_ctx **ctx, const char *text, char **dir);

/* Resolve provider through chain (NULL: default) for user/org; on KW_OK
 * copies the secret and the backend into the buffers. */
kw_status tu_resolve(kw_ctx *ctx, const char *chain, const char *provider,
		     const char *user, const char *org, char *value,
		     size_t vlen, char *backend, size_t blen);

#endif
