/*
 * clock.c - the time libkeyway goes by: the clock (which only the unit
 * tests can set), the fixed UTC windows quotas count in, and the UTC
 * timestamps of messages.
 */
#include "config.h"

#include <stdint.h>
#include <time.h>

#include "clock.h"
#include "seams.h"

#ifdef KW_TEST_SEAMS
static int64_t (*test_clock)(void);

/* Only in the library the unit tests link: the production library has no
 * way to change its clock. */
void kwi_test_set_clock(int64_t (*clock)(void))
{
	test_clock = clock;
}
#endif

int64_t kwi_now(void)
{
#ifdef KW_TEST_SEAMS
	if (test_clock != NULL)
		return test_clock();
#endif
	return (int64_t)time(NULL);
}

void kwi_window(int64_t period, int64_t now, int64_t *start, int64_t *end)
{
	struct tm tm;
	time_t t = (time_t)now;

	if (period > 0) {
		*start = now - ((now % period) + period) % period;
		*end = *start + period;
		return;
	}
	gmtime_r(&t, &tm);
	tm.tm_mday = 1;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	*start = (int64_t)timegm(&tm);
	tm.tm_mon += 1;
	*end = (int64_t)timegm(&tm);
}

void kwi_iso8601(int64_t when, char *buf, size_t len)
{
	struct tm tm;
	time_t t = (time_t)when;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
