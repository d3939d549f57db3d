/*
 * dlsym.h - functions taken from a library loaded with dlopen()
 * (dlsym.c), for curl_dl.c and ossl.c.  Never installed.
 */
#ifndef KEYWAY_DLSYM_H
#define KEYWAY_DLSYM_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Store the address of lib's function name into slot, a function pointer
 * of size bytes.  False, with dlerror() saying why, when lib has no such
 * symbol (or a function pointer is not the size of a void *).
 */
bool kwi_dlsym(void *lib, const char *name, void *slot, size_t size);

#endif /* KEYWAY_DLSYM_H */
