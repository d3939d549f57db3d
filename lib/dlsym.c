/*
 * dlsym.c - functions taken from a library loaded with dlopen() (dlsym.h).
 */
#include "config.h"

#include <dlfcn.h>
#include <string.h>

#include "dlsym.h"

/* POSIX has dlsym() return a function's address as a void *. */
bool kwi_dlsym(void *lib, const char *name, void *slot, size_t size)
{
	void *fn = dlsym(lib, name);

	if (fn == NULL || size != sizeof(fn))
		return false;
	memcpy(slot, &fn, sizeof(fn));
	return true;
}
