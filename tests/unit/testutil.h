/*
 * testutil.h - helpers shared by the unit tests.
 */
#ifndef KEYWAY_TESTUTIL_H
#define KEYWAY_TESTUTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <keyway/keyway.h>

/*
 * _exit(status) for a child of fork().  In a build configured with
 * --enable-coverage, the child first writes its gcov counters, those of
 * libkeyway.so and of the modules too, which _exit() would lose, so that
 * what keyway ran in the child is counted.
 */
void tu_exit(int status) __attribute__((noreturn));

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

/*
 * Memory a test allocates is kept, and freed by tu_release(0) in the
 * suite's teardown, so that a failing assertion, which leaves the test at
 * once, leaks nothing.
 */
/* Keep p (a NULL p fails the test); returns p. */
void *tu_keep(void *p);
/* How many are kept now: a mark for tu_release(). */
size_t tu_kept(void);
/* Free what was kept since mark (0: everything), for loops that keep a
 * lot. */
void tu_release(size_t mark);
/* printf into memory that is kept. */
char *tu_fmt(const char *fmt, ...) KW_PRINTF(1, 2);
/* dir/name, kept. */
char *tu_join(const char *dir, const char *name);

/* The path of this program, to run it again (kept).  Not /proc/self/exe
 * itself: under valgrind that names valgrind, while readlink() of it
 * names the program. */
char *tu_self(void);
/* The whole of a file, kept and NUL-terminated, its length in *len (len
 * may be NULL); NULL, and *len 0, when it cannot be opened. */
char *tu_slurp(const char *path, size_t *len);

/* Unset each variable of a NULL-terminated list. */
void tu_unsetenv(const char *const *names);

/*
 * A piece of every made-up key the tests hand the library, so that a key
 * leaking into a message is found by looking for it.
 */
#define TU_MARK "SECRET"
/* Fail the test when text (NULL: no text) holds TU_MARK. */
void tu_assert_no_secret(const char *text);

/* A system administrator, for the calls that manage stored keys. */
const kw_actor *tu_sysadmin(void);

/* Fail the test unless s is a time of the audit trail ("2024-05-01T12:00:
 * 00.123Z": UTC, milliseconds) within five minutes of now. */
void tu_expect_timestamp(const char *s);

#endif
