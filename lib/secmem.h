/*
 * secmem.h - guarded memory for secrets (secmem.c).  Never installed.
 */
#ifndef KEYWAY_SECMEM_H
#define KEYWAY_SECMEM_H

#include <stddef.h>

/* Locked, non-dumpable, zeroed memory; NULL when out of memory.  Free it
 * with kwi_secure_free(). */
void *kwi_secure_alloc(size_t len);
/* Wipe and release; NULL is a no-op.  len is the size asked for. */
void kwi_secure_free(void *p, size_t len);
/* Zero len bytes at p in a way the compiler keeps; NULL is a no-op. */
void kwi_wipe(void *p, size_t len);
/* Hold every lock of guarded memory, around fork(). */
void kwi_secmem_lock_all(void);
void kwi_secmem_unlock_all(void);

#endif /* KEYWAY_SECMEM_H */
