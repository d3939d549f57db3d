/*
 * utf8.h - decoding UTF-8 (utf8.c).  Never installed.
 */
#ifndef KEYWAY_UTF8_H
#define KEYWAY_UTF8_H

#include <stddef.h>

/*
 * The length in bytes of the character at s: 1 for a byte below 0x80 (NUL
 * included), 2 to 4 for a well-formed UTF-8 sequence, 0 when s does not
 * start one: no overlong forms, no surrogates, nothing past U+10FFFF (the
 * strings jansson's json_string() takes).  s is NUL-terminated: a NUL ends
 * the check before it reads past it.
 */
size_t kwi_utf8_len(const unsigned char *s);

#endif /* KEYWAY_UTF8_H */
