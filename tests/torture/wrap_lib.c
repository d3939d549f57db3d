/*
 * wrap_lib.c - guarded memory as a torture build of libkeyway sees it:
 * kwi_secure_alloc(), which libkeyway and, through the host's
 * secure_alloc(), every module call, and the sodium_malloc() under it.
 * Slabs of guarded memory are mapped, not allocated, so a slot that is
 * never given back is found only by tracking it here.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>

#include "kwt.h"

#define CALLER __builtin_return_address(0)

void *__real_kwi_secure_alloc(size_t len);
void __real_kwi_secure_free(void *p, size_t len);
void *__real_sodium_malloc(size_t len);
void *__wrap_kwi_secure_alloc(size_t len);
void __wrap_kwi_secure_free(void *p, size_t len);
void *__wrap_sodium_malloc(size_t len);
void *__real_malloc(size_t n);
void __real_free(void *p);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr,
			  void *(*start)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr,
			  void *(*start)(void *), void *arg);

void *__wrap_kwi_secure_alloc(size_t len)
{
	void *p;

	if (kwt_fail_now("kwi_secure_alloc", CALLER))
		return NULL;
	p = __real_kwi_secure_alloc(len);
	kwt_track(p, len, "kwi_secure_alloc", CALLER);
	return p;
}

void __wrap_kwi_secure_free(void *p, size_t len)
{
	kwt_untrack(p);
	__real_kwi_secure_free(p, len);
}

/* Not tracked: kwi_secure_alloc() tracks what it returns. */
void *__wrap_sodium_malloc(size_t len)
{
	if (kwt_fail_now("sodium_malloc", CALLER))
		return NULL;
	return __real_sodium_malloc(len);
}

/*
 * The threads libkeyway starts (the usage counts' writer) may fail to
 * start, as an allocation may; and what they allocate is not counted
 * when a whole process is tortured, so that a run is the same every time.
 */
struct start {
	void *(*start)(void *);
	void *arg;
};

static void *quiet_start(void *p)
{
	struct start s = *(struct start *)p;

	__real_free(p);
	kwt_quiet_thread();
	return s.start(s.arg);
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr,
			  void *(*start)(void *), void *arg)
{
	struct start *s;
	int rc;

	if (kwt_fail_now("pthread_create", CALLER))
		return EAGAIN;
	s = __real_malloc(sizeof(*s));
	if (s == NULL)
		return EAGAIN;
	s->start = start;
	s->arg = arg;
	rc = __real_pthread_create(t, attr, quiet_start, s);
	if (rc != 0)
		__real_free(s);
	return rc;
}
