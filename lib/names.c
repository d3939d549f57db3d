/*
 * names.c - the names a caller hands libkeyway: users, orgs, providers,
 * chains and backends end up on terminals, in the audit trail and in
 * messages, so none may hold what would change how they are shown.
 */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <keyway/keyway.h>

#include "error.h"
#include "names.h"
#include "utf8.h"

/* Characters that reorder the text around them when shown: U+061C,
 * U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069. */
static bool is_bidi(const unsigned char *p, size_t n)
{
	if (n == 2)
		return p[0] == 0xd8 && p[1] == 0x9c;
	if (n != 3 || p[0] != 0xe2)
		return false;
	return (p[1] == 0x80 &&
		(p[2] == 0x8e || p[2] == 0x8f ||
		 (p[2] >= 0xaa && p[2] <= 0xae))) ||
	       (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9);
}

/* U+2028 and U+2029: a line break to whatever shows the text. */
static bool is_separator(const unsigned char *p, size_t n)
{
	return n == 3 && p[0] == 0xe2 && p[1] == 0x80 &&
	       (p[2] == 0xa8 || p[2] == 0xa9);
}

/*
 * The first character of s that must not reach a terminal or a log as it
 * is, or NULL: a control character is an escape sequence the terminal
 * runs, a bidirectional control makes one text display as another, a line
 * or paragraph separator breaks a line, and a byte that is not UTF-8 may
 * be one of them (0x9b is CSI to a terminal that reads 8 bits).  *len:
 * its length in bytes, 1 for a byte that is not UTF-8; *why (when not
 * NULL): what it is.
 */
const char *kwi_unshowable(const char *s, size_t *len, const char **why)
{
	const unsigned char *p = (const unsigned char *)s;
	const char *what = NULL;
	size_t n;

	for (; *p != '\0'; p += n) {
		n = kwi_utf8_len(p);
		if (n == 0) {
			n = 1;
			what = "it is not valid UTF-8";
		/* C0, DEL, and C1 (U+0080 to U+009F: 0xc2 0x80..0x9f). */
		} else if (*p < 0x20 || *p == 0x7f ||
			   (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)) {
			what = "it holds a control character";
		} else if (is_bidi(p, n)) {
			what = "it holds a bidirectional text control";
		} else if (is_separator(p, n)) {
			what = "it holds a line or paragraph separator";
		}
		if (what != NULL)
			break;
	}
	if (what == NULL)
		return NULL;
	*len = n;
	if (why != NULL)
		*why = what;
	return (const char *)p;
}

/*
 * Why s cannot be shown as a name, or NULL: a name ends up on terminals
 * (keyway ls, keyway usage), in the audit trail and in messages
 * (kwi_unshowable() says what may not be in it).  *at: the byte it starts
 * at, from 1.
 */
static const char *name_flaw(const char *s, size_t *at)
{
	const char *p, *why = NULL;
	size_t n;

	p = kwi_unshowable(s, &n, &why);
	if (p == NULL)
		return NULL;
	*at = (size_t)(p - s) + 1;
	return why;
}

kw_status kwi_check_name(const char *what, const char *s)
{
	const char *why;
	size_t at = 0;

	if (s == NULL || (why = name_flaw(s, &at)) == NULL)
		return KW_OK;
	return kwi_error(KW_ERR_INVAL, "invalid %s: %s (at byte %zu)",
			 what != NULL ? what : "name", why, at);
}

kw_status kw_name_check(const char *what, const char *name)
{
	if (name == NULL)
		return kwi_error(KW_ERR_INVAL, "invalid %s: no name",
				 what != NULL ? what : "name");
	return kwi_check_name(what, name);
}

/* A user or org name: printable UTF-8 (as name_flaw() says), which the
 * audit trail and JSON output carry as it is. */
bool kwi_valid_identity(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	if (name_flaw(s, &n) != NULL || s[0] == '\0' || strcmp(s, ".") == 0 ||
	    strcmp(s, "..") == 0)
		return false;
	for (; *p != '\0'; p += n) {
		if (*p < 0x21 || *p == 0x7f || *p == '/' || *p == '\\')
			return false;
		if ((n = kwi_utf8_len(p)) == 0)
			return false;
	}
	return (size_t)(p - (const unsigned char *)s) <= KWI_IDENTITY_MAX;
}
