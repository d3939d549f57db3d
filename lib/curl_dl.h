/*
 * curl_dl.h - the few functions of libcurl a client of keywayd uses,
 * loaded with dlopen() the first time a configuration names keyway.daemon
 * (curl_dl.c), so that every other program linked with libkeyway does not
 * load libcurl and what it links (TLS, IDN, HTTP/2 ...).  Never installed.
 */
#ifndef KEYWAY_CURL_DL_H
#define KEYWAY_CURL_DL_H

#include <stdbool.h>
#include <stddef.h>

/* The calls go through pointers: no type-checking macros of curl.h. */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

struct kwi_curl {
	CURLcode (*global_init)(long flags);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *h, CURLoption opt, ...);
	CURLcode (*easy_perform)(CURL *h);
	CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
	void (*easy_cleanup)(CURL *h);
	const char *(*easy_strerror)(CURLcode cc);
	struct curl_slist *(*slist_append)(struct curl_slist *l,
					   const char *s);
	void (*slist_free_all)(struct curl_slist *l);
};

/* Filled by kwi_curl_load(); read only after it returned true. */
extern struct kwi_curl kwi_curl;

/*
 * Load libcurl and start its global state, once per process (later calls
 * answer as the first did).  False with why[] saying what failed.
 */
bool kwi_curl_load(char *why, size_t whylen);

#endif
