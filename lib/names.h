/*
 * names.h - checks on the names a caller hands libkeyway (users, orgs,
 * providers, chains, backends), shared by resolution and management.
 * Never installed.
 */
#ifndef KEYWAY_NAMES_H
#define KEYWAY_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#include <keyway/keyway.h>

#include "compiler.h"

/* The longest user or org name, in bytes. */
#define KWI_IDENTITY_MAX 256

/* A user or org name: printable UTF-8 without blanks, '/' or '\\', not
 * "." or "..", at most KWI_IDENTITY_MAX bytes.  s must not be NULL. */
bool kwi_valid_identity(const char *s);
/* kw_name_check(), where a NULL name (none given) passes: KW_OK, or
 * KW_ERR_INVAL with kw_last_error() saying why. */
kw_status kwi_check_name(const char *what, const char *s) KWI_UNUSED_RESULT;
/* The first character of s that a terminal or a log must not get as it is
 * (a control or bidirectional control character, U+2028 or U+2029, or a
 * byte that is not UTF-8), or NULL; *len: its length in bytes; *why (may
 * be NULL): what it is, as kwi_check_name() says it. */
const char *kwi_unshowable(const char *s, size_t *len, const char **why);

#endif /* KEYWAY_NAMES_H */
