/*
 * clock.h - the time libkeyway goes by: now, quota windows and the UTC
 * timestamps it writes.  Never installed.
 */
#ifndef KEYWAY_CLOCK_H
#define KEYWAY_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Seconds since the epoch (the unit tests may set the clock). */
int64_t kwi_now(void);
/* The fixed UTC window of `period` seconds (0: calendar month) that holds
 * `now`: [*start, *end). */
void kwi_window(int64_t period, int64_t now, int64_t *start, int64_t *end);
/* Write `when` into buf as "2026-01-31T23:59:59Z" (UTC); len: buf's size,
 * at least 21. */
void kwi_iso8601(int64_t when, char *buf, size_t len);

#endif /* KEYWAY_CLOCK_H */
