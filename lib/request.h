/*
 * request.h - a request for a key, as the chain, the quotas and the audit
 * trail see it.  Never installed.
 */
#ifndef KEYWAY_REQUEST_H
#define KEYWAY_REQUEST_H

/* The request, checked and with its defaults applied: the strings are the
 * caller's ("default" for the chain when it named none). */
struct kwi_query_in {
	const char *chain;
	const char *provider;
	const char *user;
	const char *org;
};

#endif /* KEYWAY_REQUEST_H */
