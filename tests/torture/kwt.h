/*
 * kwt.h - allocation torture: the state shared by every object built for
 * it (libkwtorture.la) and what a torture program asks of it.
 *
 * libkeyway and the modules are linked again for the torture test with
 * -Wl,--wrap for each allocator they call (tests/torture/wrap.c and
 * wrap_lib.c), so only allocations made by keyway's own code are counted
 * and can be failed: not those libc, libconfig, SQLite or libcurl make
 * inside themselves.  Only the thread that armed the counter counts, so
 * that a run is the same every time; every thread's allocations are
 * tracked, so that one left behind is seen whichever thread made it.
 */
#ifndef KEYWAY_KWT_H
#define KEYWAY_KWT_H

#include <stdbool.h>
#include <stddef.h>

#define KWT_EXPORT __attribute__((visibility("default")))

/* Fail the nth allocation counted from now in the calling thread (1 is
 * the next one); 0 counts without failing. */
KWT_EXPORT void kwt_arm(unsigned long nth);
/* Stop counting; returns how many allocations were counted since
 * kwt_arm(). */
KWT_EXPORT unsigned long kwt_disarm(void);
/* Whether the armed allocation was failed since kwt_arm(). */
KWT_EXPORT bool kwt_failed(void);
/* What the failed allocation was ("malloc", "kwi_secure_alloc", ...), and
 * where the code that asked for it is ("/path/kw_file.so+0x1f3c", for
 * addr2line -e). */
KWT_EXPORT const char *kwt_failed_what(void);
KWT_EXPORT const char *kwt_failed_where(void);

/* Start a new epoch: the allocations tracked from now belong to it. */
KWT_EXPORT void kwt_epoch(void);
/* How many allocations of the current epoch are still live; the first few
 * are described in buf (one per line: what, size, caller). */
KWT_EXPORT size_t kwt_live(char *buf, size_t len);

/* For the wrappers: the calling thread is one libkeyway started, whose
 * allocations a whole process's torture does not count. */
KWT_EXPORT void kwt_quiet_thread(void);
/* For the wrappers: whether to fail this allocation (what names it). */
KWT_EXPORT bool kwt_fail_now(const char *what, void *caller);
/* For the wrappers: p was allocated (n bytes) / released. */
KWT_EXPORT void kwt_track(void *p, size_t n, const char *what, void *caller);
KWT_EXPORT void kwt_untrack(void *p);

#endif
