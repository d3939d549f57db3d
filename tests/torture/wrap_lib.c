/*
 * wrap_lib.c - guarded memory as a torture build of libkeyway sees it:
 * kwi_secure_alloc(), which libkeyway and, through the host's
 * secure_alloc(), every module call, and the sodium_malloc() under it.
 * Slabs of guarded memory are mapped, not allocated, so a slot that is
 * never given back is found only by tracking it here.
 */
#include <stddef.h>

#include "kwt.h"

#define CALLER __builtin_return_address(0)

void *__real_kwi_secure_alloc(size_t len);
void __real_kwi_secure_free(void *p, size_t len);
void *__real_sodium_malloc(size_t len);
void *__wrap_kwi_secure_alloc(size_t len);
void __wrap_kwi_secure_free(void *p, size_t len);
void *__wrap_sodium_malloc(size_t len);

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
