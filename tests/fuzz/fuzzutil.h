/*
 * fuzzutil.h - what the fuzz targets that plant secrets or fake a module
 * host share (fuzzutil.c): guarded memory that AddressSanitizer can see
 * into, a secret planted in an input, and the check that an error message
 * is one line that gives no secret away.
 */
#ifndef KEYWAY_FUZZUTIL_H
#define KEYWAY_FUZZUTIL_H

#include <stddef.h>
#include <stdint.h>

/*
 * Guarded memory for a fake host: plain malloc() carrying its size in
 * front, so that AddressSanitizer sees a read past it, which the library's
 * slabs would hide.  fz_secure_free() aborts when freeing another size
 * than was allocated.
 */
void *fz_secure_alloc(size_t len);
void fz_secure_free(void *p, size_t len);
void fz_wipe(void *p, size_t len);

/*
 * data[1..size) with mark written over it from the offset data[0] picks
 * (modulo that length + 1), lengthened if need be: malloc()ed, *len bytes,
 * NULL when out of memory.  size >= 1.
 */
unsigned char *fz_plant(const uint8_t *data, size_t size, const char *mark,
			size_t *len);

/*
 * Why msg may not be an error message: it is not one printable line, or
 * it holds one of secrets (NULL-terminated); NULL when it may be.
 */
const char *fz_bad_message(const char *msg, const char *const *secrets);

#endif
