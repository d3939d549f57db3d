/*
 * deny.c - a denial told apart: a quota used up is answered 429 with the
 * time its window ends, any other denial (a disabled key, a ledger that
 * could not be asked) 403.  The library tells the two only in its error,
 * whose quota part quota.c writes as "quota NAME LABEL used up for ...
 * (N of N); resets YYYY-MM-DDTHH:MM:SSZ" after "BACKEND answered denied: ".
 */
#define _GNU_SOURCE

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "keywayd.h"

/* "YYYY-MM-DDTHH:MM:SSZ" at s, in UTC; false when s is not one. */
static bool utc_time(const char *s, time_t *t)
{
	struct tm tm = { 0 };
	int n = 0;

	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &tm.tm_year, &tm.tm_mon,
		   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 ||
	    n != 20)
		return false;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*t = timegm(&tm);
	return *t != (time_t)-1;
}

bool kwd_quota_denial(const char *err, long *retry_after)
{
	static const char said[] = " answered denied: quota ";
	const char *q = NULL, *p, *r;
	time_t end;

	*retry_after = 0;
	/* The last one: a chain or provider name cannot end the line. */
	for (p = strstr(err, said); p; p = strstr(p + 1, said))
		q = p + sizeof(said) - 1;
	if (!q || !strstr(q, " used up"))
		return false;
	r = strstr(q, "; resets ");
	if (r && utc_time(r + 9, &end)) {
		time_t now = time(NULL);

		*retry_after = end > now ? (long)(end - now) : 1;
	}
	return true;
}
