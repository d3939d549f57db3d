/*
 * config_master.h - keyway.master_key and keyway.old_master_keys
 * (config_master.c).  Never installed.
 */
#ifndef KEYWAY_CONFIG_MASTER_H
#define KEYWAY_CONFIG_MASTER_H

#include <libconfig.h>

#include <keyway/keyway.h>

struct kwi_diag;
struct kwi_master;

/*
 * Parse group g (declared in file; what: "keyway.master_key" for messages)
 * into m and read its key material (kwi_master_load()); a relative path is
 * taken from config_dir.  m is overwritten; free it with kwi_master_free()
 * in any case.  KW_OK, or a failure said to d.
 */
kw_status kwi_master_parse(struct kwi_master *m, const config_setting_t *g,
			   const char *file, const char *what,
			   const char *config_dir, struct kwi_diag *d);

#endif /* KEYWAY_CONFIG_MASTER_H */
