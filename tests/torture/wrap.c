/*
 * wrap.c - the allocators keyway's code calls, as seen by a torture build:
 * an object linked into libkeyway and each module linked with
 * -Wl,--wrap=malloc and the rest (Makefile.am, TORTURE_WRAP), so that a
 * call from their code comes here, may be failed (kwt.h), and is tracked.
 * Allocations libraries make inside themselves do not come here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kwt.h"

#define CALLER __builtin_return_address(0)

/*
 * Linked into a program (keywayd), ld looks up the libraries' references
 * under the wrapped names too, and refuses a hidden definition of them;
 * at run time those libraries still call the real allocators.
 */
#ifdef KWT_WRAP_EXPORT
#pragma GCC visibility push(default)
#endif

/* Declared for -Wmissing-prototypes: each is what the linker names it. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t m, size_t n);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
char *__real_realpath(const char *path, char *resolved);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t m, size_t n);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
char *__wrap_realpath(const char *path, char *resolved);
int __wrap_vasprintf(char **out, const char *fmt, va_list ap);
int __wrap_asprintf(char **out, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* What asprintf() and vasprintf() become under _FORTIFY_SOURCE. */
int __wrap___vasprintf_chk(char **out, int flag, const char *fmt,
			   va_list ap);
int __wrap___asprintf_chk(char **out, int flag, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * vasprintf() on the real malloc(), failed when kwt says so and tracked
 * as `what` called from caller: __real_vasprintf is not used, since ld
 * binds it to the wrapper in an object that never calls vasprintf()
 * itself.
 */
static int format(const char *what, void *caller, char **out,
		  const char *fmt, va_list ap)
{
	va_list again;
	char *p;
	int n;

	if (kwt_fail_now(what, caller))
		return -1;
	va_copy(again, ap);
	n = vsnprintf(NULL, 0, fmt, ap);
	if (n < 0 || (p = __real_malloc((size_t)n + 1)) == NULL) {
		va_end(again);
		return -1;
	}
	vsnprintf(p, (size_t)n + 1, fmt, again);
	va_end(again);
	*out = p;
	kwt_track(p, (size_t)n + 1, what, caller);
	return n;
}

void *__wrap_malloc(size_t n)
{
	void *p;

	if (kwt_fail_now("malloc", CALLER))
		return NULL;
	p = __real_malloc(n);
	kwt_track(p, n, "malloc", CALLER);
	return p;
}

void *__wrap_calloc(size_t m, size_t n)
{
	void *p;

	if (kwt_fail_now("calloc", CALLER))
		return NULL;
	p = __real_calloc(m, n);
	kwt_track(p, m * n, "calloc", CALLER);
	return p;
}

void *__wrap_realloc(void *p, size_t n)
{
	void *q;

	if (kwt_fail_now("realloc", CALLER))
		return NULL;
	q = __real_realloc(p, n);
	if (q != NULL || n == 0) {
		kwt_untrack(p);
		kwt_track(q, n, "realloc", CALLER);
	}
	return q;
}

void __wrap_free(void *p)
{
	kwt_untrack(p);
	__real_free(p);
}

char *__wrap_strdup(const char *s)
{
	char *p;

	if (kwt_fail_now("strdup", CALLER))
		return NULL;
	p = __real_strdup(s);
	kwt_track(p, p != NULL ? strlen(p) + 1 : 0, "strdup", CALLER);
	return p;
}

char *__wrap_strndup(const char *s, size_t n)
{
	char *p;

	if (kwt_fail_now("strndup", CALLER))
		return NULL;
	p = __real_strndup(s, n);
	kwt_track(p, p != NULL ? strlen(p) + 1 : 0, "strndup", CALLER);
	return p;
}

char *__wrap_realpath(const char *path, char *resolved)
{
	char *p;

	if (resolved == NULL && kwt_fail_now("realpath", CALLER))
		return NULL;
	p = __real_realpath(path, resolved);
	if (resolved == NULL)
		kwt_track(p, p != NULL ? strlen(p) + 1 : 0, "realpath", CALLER);
	return p;
}

int __wrap_vasprintf(char **out, const char *fmt, va_list ap)
{
	return format("vasprintf", CALLER, out, fmt, ap);
}

int __wrap_asprintf(char **out, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = format("asprintf", CALLER, out, fmt, ap);
	va_end(ap);
	return n;
}

int __wrap___vasprintf_chk(char **out, int flag, const char *fmt, va_list ap)
{
	(void)flag;
	return format("vasprintf", CALLER, out, fmt, ap);
}

int __wrap___asprintf_chk(char **out, int flag, const char *fmt, ...)
{
	va_list ap;
	int n;

	(void)flag;
	va_start(ap, fmt);
	n = format("asprintf", CALLER, out, fmt, ap);
	va_end(ap);
	return n;
}
