/*
 * config_group.c - reading a group of string settings of keyway.conf, as
 * keyway.master_key and keyway.audit are.
 */
#include "config.h"

#include <string.h>

#include "config_group.h"
#include "error.h"

kw_status kwi_group_strings(const config_setting_t *g, const char *file,
			    const char *what, const char *const names[],
			    const char *expected, bool all,
			    const char *values[], int lines[],
			    struct kwi_diag *d)
{
	kw_status rc = KW_OK;
	int n = config_setting_length(g);

	for (int i = 0; i < n && (all || rc == KW_OK); i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);
		int line = (int)config_setting_source_line(s);
		size_t k = 0;

		while (names[k] != NULL && strcmp(names[k], name) != 0)
			k++;
		if (names[k] == NULL) {
			kwi_diag(d, KW_ERR_CONFIG, file, line,
				 "%s: unknown setting \"%s\" (expected %s)",
				 what, name, expected);
			rc = KW_ERR_CONFIG;
		} else if (config_setting_type(s) != CONFIG_TYPE_STRING ||
			   config_setting_get_string(s)[0] == '\0') {
			kwi_diag(d, KW_ERR_CONFIG, file, line,
				 "%s: %s must be a non-empty string", what,
				 name);
			rc = KW_ERR_CONFIG;
		} else {
			values[k] = config_setting_get_string(s);
			if (lines != NULL)
				lines[k] = line;
		}
	}
	return rc;
}
