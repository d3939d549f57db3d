/*
 * jsonline.c - one JSON object as one line, made cheaply: every resolve
 * pays for its audit line before the key is handed out.  The line is
 * written straight into a buffer on the stack (the heap only for a line
 * that does not fit), with the escaping jansson's compact output has always
 * had; and each thread formats the seconds of its timestamp once per
 * second.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonline.h"
#include "utf8.h"

void kwi_line_init(struct kwi_line *l)
{
	l->buf = l->stack;
	l->len = 0;
	l->cap = sizeof(l->stack);
	l->comma = false;
	l->nomem = false;
}

void kwi_line_release(struct kwi_line *l)
{
	if (l->buf != l->stack)
		free(l->buf);
}

static bool line_grow(struct kwi_line *l, size_t more)
{
	size_t cap = l->cap;
	char *p;

	if (l->nomem)
		return false;
	while (cap - l->len < more) {
		if (cap > SIZE_MAX / 2) {
			l->nomem = true;
			return false;
		}
		cap *= 2;
	}
	if (l->buf == l->stack) {
		p = malloc(cap);
		if (p != NULL)
			memcpy(p, l->buf, l->len);
	} else {
		p = realloc(l->buf, cap);
	}
	if (p == NULL) {
		l->nomem = true;
		return false;
	}
	l->buf = p;
	l->cap = cap;
	return true;
}

/* Inline: a line is made of a few dozen short pieces. */
static inline void put(struct kwi_line *l, const void *s, size_t n)
{
	if (l->cap - l->len < n && !line_grow(l, n))
		return;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static inline void put_c(struct kwi_line *l, char c)
{
	if (l->cap == l->len && !line_grow(l, 1))
		return;
	l->buf[l->len++] = c;
}

/*
 * The escape of c (a control character, '"' or '\\') as jansson writes
 * it: \" \\ \b \f \n \r \t, else \u00XX (upper-case).  Its length.
 */
static size_t escape(unsigned char c, char esc[6])
{
	static const char hex[] = "0123456789ABCDEF";
	static const char from[] = "\"\\\b\f\n\r\t", to[] = "\"\\bfnrt";
	const char *at = memchr(from, c, sizeof(from) - 1);

	esc[0] = '\\';
	if (at != NULL) {
		esc[1] = to[at - from];
		return 2;
	}
	esc[1] = 'u';
	esc[2] = '0';
	esc[3] = '0';
	esc[4] = hex[c >> 4];
	esc[5] = hex[c & 0xf];
	return 6;
}

/*
 * s as a JSON string, escaped as jansson writes it: '"' and '\\' escaped,
 * control characters as \b \f \n \r \t or \u00XX (upper-case), anything
 * else, '/' and DEL and UTF-8 included, as it is.  False when s is not
 * UTF-8.
 */
static bool put_string(struct kwi_line *l, const char *s)
{
	const unsigned char *p = (const unsigned char *)s, *run = p;
	char esc[6];

	put_c(l, '"');
	while (*p != '\0') {
		if (*p >= 0x80) {
			size_t n = kwi_utf8_len(p);

			if (n == 0)
				return false;
			p += n;
			continue;
		}
		if (*p >= 0x20 && *p != '"' && *p != '\\') {
			p++;
			continue;
		}
		put(l, run, (size_t)(p - run));
		put(l, esc, escape(*p, esc));
		run = ++p;
	}
	put(l, run, (size_t)(p - run));
	put_c(l, '"');
	return true;
}

static void put_name(struct kwi_line *l, const char *name)
{
	if (l->comma)
		put_c(l, ',');
	l->comma = true;
	put_c(l, '"');
	put(l, name, strlen(name));
	put(l, "\":", 2);
}

void kwi_line_member(struct kwi_line *l, const char *name, const char *value,
		     bool null_ok)
{
	size_t mark = l->len;
	bool comma = l->comma;

	if (value == NULL && !null_ok)
		return;
	put_name(l, name);
	if (value == NULL) {
		put(l, "null", 4);
	} else if (!put_string(l, value)) {
		l->len = mark;
		l->comma = comma;
	}
}

void kwi_line_int(struct kwi_line *l, const char *name, long long value)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%lld", value);

	put_name(l, name);
	put(l, num, (size_t)n);
}

void kwi_line_open(struct kwi_line *l, const char *name)
{
	if (name != NULL)
		put_name(l, name);
	put_c(l, '{');
	l->comma = false;
}

void kwi_line_close(struct kwi_line *l)
{
	put_c(l, '}');
	l->comma = true;
}

bool kwi_line_end(struct kwi_line *l)
{
	kwi_line_close(l);
	put_c(l, '\n');
	return !l->nomem;
}

/*
 * gmtime_r() and strftime() run once a second in each thread (glibc's
 * gmtime_r takes a process-wide lock); the milliseconds are written by
 * hand.
 */
void kwi_line_time(struct kwi_line *l)
{
	static _Thread_local struct {
		time_t sec;
		bool set;
		size_t len;
		char text[40];
	} cache;
	struct timespec ts;
	struct tm tm;
	long ms;
	char frac[5];

	clock_gettime(CLOCK_REALTIME, &ts);
	if (!cache.set || cache.sec != ts.tv_sec) {
		if (gmtime_r(&ts.tv_sec, &tm) == NULL)
			memset(&tm, 0, sizeof(tm));
		cache.len = strftime(cache.text, sizeof(cache.text),
				     "%Y-%m-%dT%H:%M:%S", &tm);
		cache.sec = ts.tv_sec;
		cache.set = true;
	}
	ms = ts.tv_nsec / 1000000;
	frac[0] = '.';
	frac[1] = (char)('0' + ms / 100);
	frac[2] = (char)('0' + ms / 10 % 10);
	frac[3] = (char)('0' + ms % 10);
	frac[4] = 'Z';
	put_name(l, "time");
	put_c(l, '"');
	put(l, cache.text, cache.len);
	put(l, frac, sizeof(frac));
	put_c(l, '"');
}
