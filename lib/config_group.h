/*
 * config_group.h - reading a group of string settings of keyway.conf
 * (config_group.c).  Never installed.
 */
#ifndef KEYWAY_CONFIG_GROUP_H
#define KEYWAY_CONFIG_GROUP_H

#include <stdbool.h>

#include <libconfig.h>

#include <keyway/keyway.h>

struct kwi_diag;

/*
 * Read the members of group g, each one of names[] (NULL-terminated) and a
 * non-empty string, into values[] (at the index of its name; what is not
 * set is left as it is), and the line of each into lines[] (or NULL).  A
 * member of another name is "WHAT: unknown setting \"NAME\" (expected
 * EXPECTED)", one of another type "WHAT: NAME must be a non-empty string",
 * said to d at the member's line in file: every one (all), or only the
 * first.  KW_OK or KW_ERR_CONFIG.  The strings are g's.
 */
kw_status kwi_group_strings(const config_setting_t *g, const char *file,
			    const char *what, const char *const names[],
			    const char *expected, bool all,
			    const char *values[], int lines[],
			    struct kwi_diag *d);

#endif /* KEYWAY_CONFIG_GROUP_H */
