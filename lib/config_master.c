/*
 * config_master.c - the settings of keyway.master_key and of each of
 * keyway.old_master_keys: where a master key comes from (env, file,
 * passphrase, or credential: a file of systemd's $CREDENTIALS_DIRECTORY).
 * master.c reads the key they name.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "config_group.h"
#include "config_master.h"
#include "crypto.h"
#include "error.h"

/* The settings of a master_key group, as indexes into names[]. */
enum { SOURCE, VAR, PATH, KDF, NAME, NSETTINGS };

#define SOURCES "\"env\", \"file\", \"passphrase\" or \"credential\""

static bool printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* The name of a credential: one file of $CREDENTIALS_DIRECTORY, as systemd
 * names them (a file name: no '/', not "." or ".."), and nothing that
 * would break a message in two. */
static bool plain_name(const char *s)
{
	return strcmp(s, ".") != 0 && strcmp(s, "..") != 0 &&
	       strlen(s) <= NAME_MAX && strchr(s, '/') == NULL && printable(s);
}

/* source = "credential": name, "master.key" when not given. */
static kw_status set_credential(struct kwi_master *m, const char *name,
				int line, struct kwi_diag *d)
{
	bool shown;

	m->source = KWI_KEY_CREDENTIAL;
	if (name == NULL)
		name = "master.key";
	if (!plain_name(name)) {
		shown = printable(name) && strlen(name) <= NAME_MAX;
		kwi_diag(d, KW_ERR_CONFIG, m->file, line,
			 "%s: name%s%s%s must be a plain file name of "
			 "$CREDENTIALS_DIRECTORY, as LoadCredential= gives "
			 "it (no '/', not \".\" or \"..\", at most %d bytes)",
			 m->what, shown ? " \"" : "", shown ? name : "",
			 shown ? "\"" : "", NAME_MAX);
		return KW_ERR_CONFIG;
	}
	snprintf(m->name, sizeof(m->name), "%s", name);
	return KW_OK;
}

/* kdf = "argon2id" (the default) or "pbkdf2-sha256". */
static kw_status set_kdf(struct kwi_master *m, const char *kdf,
			 struct kwi_diag *d)
{
	m->kdf = KWI_KDF_ARGON2ID;
	if (kdf != NULL && strcmp(kdf, "pbkdf2-sha256") == 0) {
		m->kdf = KWI_KDF_PBKDF2;
	} else if (kdf != NULL && strcmp(kdf, "argon2id") != 0) {
		kwi_diag(d, KW_ERR_CONFIG, m->file, m->line,
			 "%s: unknown kdf \"%s\" (expected \"argon2id\" or "
			 "\"pbkdf2-sha256\")",
			 m->what, kdf);
		return KW_ERR_CONFIG;
	}
	return KW_OK;
}

/* m's source and what it takes, from the settings in v[]; each source
 * refuses the settings of the others. */
static kw_status set_source(struct kwi_master *m, const char *const v[],
			    const int lines[], const char *config_dir,
			    struct kwi_diag *d)
{
	const char *source = v[SOURCE];
	bool extra;

	if (strcmp(source, "env") == 0) {
		m->source = KWI_KEY_ENV;
		m->var_default = v[VAR] == NULL;
		snprintf(m->var, sizeof(m->var), "%s",
			 v[VAR] != NULL ? v[VAR] : "KEYWAY_MASTER_KEY");
		extra = v[PATH] != NULL || v[KDF] != NULL || v[NAME] != NULL;
	} else if (strcmp(source, "file") == 0) {
		m->source = KWI_KEY_FILE;
		if (v[PATH] == NULL) {
			kwi_diag(d, KW_ERR_CONFIG, m->file, m->line,
				 "%s: source \"file\" needs a path", m->what);
			return KW_ERR_CONFIG;
		}
		if (v[PATH][0] == '/')
			snprintf(m->path, sizeof(m->path), "%s", v[PATH]);
		else
			snprintf(m->path, sizeof(m->path), "%s/%s",
				 config_dir, v[PATH]);
		extra = v[VAR] != NULL || v[KDF] != NULL || v[NAME] != NULL;
	} else if (strcmp(source, "passphrase") == 0) {
		m->source = KWI_KEY_PASSPHRASE;
		snprintf(m->var, sizeof(m->var), "%s",
			 v[VAR] != NULL ? v[VAR] : "KEYWAY_PASSPHRASE");
		if (set_kdf(m, v[KDF], d) != KW_OK)
			return KW_ERR_CONFIG;
		extra = v[PATH] != NULL || v[NAME] != NULL;
	} else if (strcmp(source, "credential") == 0) {
		if (set_credential(m, v[NAME],
				   v[NAME] != NULL ? lines[NAME] : m->line,
				   d) != KW_OK)
			return KW_ERR_CONFIG;
		extra = v[VAR] != NULL || v[PATH] != NULL || v[KDF] != NULL;
	} else {
		kwi_diag(d, KW_ERR_CONFIG, m->file, m->line,
			 "%s: unknown source \"%s\" (expected " SOURCES ")",
			 m->what, source);
		return KW_ERR_CONFIG;
	}
	if (!extra)
		return KW_OK;
	kwi_diag(d, KW_ERR_CONFIG, m->file, m->line,
		 "%s: source \"%s\" takes %s", m->what, source,
		 m->source == KWI_KEY_ENV          ? "only var"
		 : m->source == KWI_KEY_FILE       ? "only path"
		 : m->source == KWI_KEY_CREDENTIAL ? "only name"
						   : "only var and kdf");
	return KW_ERR_CONFIG;
}

kw_status kwi_master_parse(struct kwi_master *m, const config_setting_t *g,
			   const char *file, const char *what,
			   const char *config_dir, struct kwi_diag *d)
{
	static const char *const names[] = { [SOURCE] = "source",
					     [VAR] = "var",
					     [PATH] = "path",
					     [KDF] = "kdf",
					     [NAME] = "name",
					     NULL };
	const char *v[NSETTINGS] = { NULL };
	int lines[NSETTINGS] = { 0 };
	kw_status rc;

	memset(m, 0, sizeof(*m));
	m->file = file;
	m->line = (int)config_setting_source_line(g);
	snprintf(m->what, sizeof(m->what), "%s", what);
	if (!config_setting_is_group(g)) {
		kwi_diag(d, KW_ERR_CONFIG, file, m->line,
			 "%s must be a group { source = ...; }", what);
		return KW_ERR_CONFIG;
	}
	rc = kwi_group_strings(g, file, what, names,
			       "source, var, path, kdf or name", true, v,
			       lines, d);
	if (rc != KW_OK)
		return rc;
	if (v[SOURCE] == NULL) {
		kwi_diag(d, KW_ERR_CONFIG, file, m->line,
			 "%s: missing source (" SOURCES ")", what);
		return KW_ERR_CONFIG;
	}
	rc = set_source(m, v, lines, config_dir, d);
	if (rc != KW_OK)
		return rc;
	return kwi_master_load(m, d);
}
