/*
 * curl_dl.c - libcurl loaded on demand for lib/remote.c (curl_dl.h).
 * Never unloaded: libcurl keeps global state and exit handlers, and an
 * application may use libcurl itself.
 */
#include "config.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "curl_dl.h"
#include "dlsym.h"

/* The soname of libcurl 7.16 and later, the one libcurl4-openssl-dev
 * builds against. */
#define LIBCURL "libcurl.so.4"

struct kwi_curl kwi_curl;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static bool loaded;
static char load_why[256];

#define SYM(lib, field, name) kwi_dlsym(lib, name, &kwi_curl.field, \
					sizeof(kwi_curl.field))

static void load(void)
{
	const char *e;
	CURLcode cc;
	void *lib;

	lib = dlopen(LIBCURL, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
	if (lib == NULL || !SYM(lib, global_init, "curl_global_init") ||
	    !SYM(lib, easy_init, "curl_easy_init") ||
	    !SYM(lib, easy_setopt, "curl_easy_setopt") ||
	    !SYM(lib, easy_perform, "curl_easy_perform") ||
	    !SYM(lib, easy_getinfo, "curl_easy_getinfo") ||
	    !SYM(lib, easy_cleanup, "curl_easy_cleanup") ||
	    !SYM(lib, easy_strerror, "curl_easy_strerror") ||
	    !SYM(lib, slist_append, "curl_slist_append") ||
	    !SYM(lib, slist_free_all, "curl_slist_free_all")) {
		e = dlerror();
		snprintf(load_why, sizeof(load_why),
			 "a client of keywayd needs " LIBCURL
			 " (Debian's libcurl4): %s",
			 e != NULL ? e : "cannot load it");
		return;
	}
	cc = kwi_curl.global_init(CURL_GLOBAL_DEFAULT);
	if (cc != CURLE_OK) {
		snprintf(load_why, sizeof(load_why),
			 "libcurl failed to start: %s",
			 kwi_curl.easy_strerror(cc));
		return;
	}
	loaded = true;
}

bool kwi_curl_load(char *why, size_t whylen)
{
	if (pthread_once(&load_once, load) != 0) {
		snprintf(why, whylen, "libcurl failed to start");
		return false;
	}
	if (!loaded)
		snprintf(why, whylen, "%s", load_why);
	return loaded;
}
