/*
 * error.h - status names, the thread's last error, and the collection of
 * configuration problems (error.c).  Never installed.
 */
#ifndef KEYWAY_ERROR_H
#define KEYWAY_ERROR_H

#include <stdarg.h>
#include <stdbool.h>

#include <keyway/keyway.h>

/* Five answers a backend gives, as the chain sees them. */
enum kwi_answer {
	KWI_FOUND = 0,
	KWI_NOTFOUND = 1,
	KWI_DENIED = 2,
	KWI_UNAVAIL = 3,
	KWI_ERROR = 4,
	KWI_NANSWERS = 5
};

/* The answer a status stands for (KWI_ERROR for any status not named). */
enum kwi_answer kwi_answer_of(kw_status st);
/* Is st a status this library has a name for? */
bool kwi_status_known(kw_status st);
/* "found", "notfound", ... ("?" for no answer): static strings. */
const char *kwi_answer_str(enum kwi_answer a);

/* Set the calling thread's kw_last_error() and return st. */
kw_status kwi_error(kw_status st, const char *fmt, ...) KW_PRINTF(2, 3);
kw_status kwi_verror(kw_status st, const char *fmt, va_list ap);
#ifdef __clang_analyzer__
/* scan-build looks at one file at a time: show it that the status given
 * is the one returned, or it follows a failure on as if it were KW_OK. */
#define kwi_error(st, ...) (kwi_error((st), __VA_ARGS__), (st))
#endif

/*
 * Problems found while loading a configuration.  kw_open() keeps the
 * first; kw_check() reports all of them.
 */
struct kwi_diag {
	kw_report_fn *report; /* NULL: keep only the first */
	void *arg;
	kw_status first;      /* KW_OK while nothing went wrong */
	unsigned count;
	kw_problem_fn *problem; /* also told each problem in parts, or NULL */
};

/* Record "file:line: message" (line 0: "file: message"). */
void kwi_diag(struct kwi_diag *d, kw_status st, const char *file, int line,
	      const char *fmt, ...) KW_PRINTF(5, 6);
void kwi_vdiag(struct kwi_diag *d, kw_status st, const char *file, int line,
	       const char *fmt, va_list ap);

#endif /* KEYWAY_ERROR_H */
