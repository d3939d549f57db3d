/*
 * master.c - reading master keys from where keyway.conf says they are.
 *
 * Master keys come from the environment (64 hex digits), a private file
 * (the same), or a passphrase stretched with Argon2id or PBKDF2-HMAC-SHA256
 * (on libsodium's HMAC) over a salt that each store keeps, so the same
 * passphrase gives each store its own key (kdf.c).  The settings are
 * parsed by config_master.c; this file reads what they name.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "crypto.h"
#include "crypto_int.h"
#include "error.h"
#include "fsutil.h"
#include "secmem.h"

/* Room for the hex digits, a line end ("\r\n") and one byte more. */
#define FILE_BUF (2 * KWI_KEY_LEN + 3)

static bool hex_key(const char *s, size_t len, unsigned char out[KWI_KEY_LEN])
{
	size_t bin_len;

	if (len != 2 * KWI_KEY_LEN)
		return false;
	return sodium_hex2bin(out, KWI_KEY_LEN, s, len, NULL, &bin_len,
			      NULL) == 0 &&
	       bin_len == KWI_KEY_LEN;
}

/* source = "env": 64 hex digits in $var. */
static kw_status load_env(struct kwi_master *m, struct kwi_diag *d)
{
	const char *v = secure_getenv(m->var);

	if ((v == NULL || v[0] == '\0') && m->var_default) {
		/* The name existing deployments use. */
		v = secure_getenv("API_KEY_ENCRYPTION_KEY");
		if (v != NULL && v[0] != '\0')
			snprintf(m->var, sizeof(m->var), "%s",
				 "API_KEY_ENCRYPTION_KEY");
	}
	if (v == NULL || v[0] == '\0') {
		kwi_diag(d, KW_ERR_CONFIG, m->file, m->line,
			 "%s: $%s is not set%s", m->what, m->var,
			 m->var_default ? " (nor $API_KEY_ENCRYPTION_KEY)"
					: "");
		return KW_ERR_CONFIG;
	}
	if (!hex_key(v, strlen(v), m->key)) {
		kwi_diag(d, KW_ERR_CONFIG, m->file, m->line,
			 "%s: $%s must be 64 hexadecimal digits (make one with "
			 "keyway keygen)",
			 m->what, m->var);
		return KW_ERR_CONFIG;
	}
	return KW_OK;
}

/* source = "file": 64 hex digits and an optional line end in a private
 * file. */
static kw_status load_file(struct kwi_master *m, struct kwi_diag *d)
{
	char why[512];
	char *buf = NULL;
	kw_status rc;
	ssize_t got;
	size_t len;
	int fd = -1;

	rc = kwi_open_private(m->path, &fd, why, sizeof(why));
	if (rc == KW_ERR_NOTFOUND)
		rc = KW_ERR_CONFIG;
	if (rc != KW_OK) {
		kwi_diag(d, rc, m->file, m->line, "%s: %s", m->what, why);
		return rc;
	}
	buf = kwi_secure_alloc(FILE_BUF);
	if (buf == NULL) {
		rc = KW_ERR_NOMEM;
		goto out;
	}
	got = read(fd, buf, FILE_BUF - 1);
	len = got > 0 ? (size_t)got : 0;
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (got < 0 || !hex_key(buf, len, m->key)) {
		kwi_diag(d, KW_ERR_CONFIG, m->file, m->line,
			 "%s: %s must hold 64 hexadecimal digits (make one "
			 "with keyway keygen -o %s)",
			 m->what, m->path, m->path);
		rc = KW_ERR_CONFIG;
	}
out:
	kwi_secure_free(buf, FILE_BUF);
	close(fd);
	return rc;
}

/* source = "passphrase": $var, kept in guarded memory until a store's
 * salt is known. */
static kw_status load_passphrase(struct kwi_master *m, struct kwi_diag *d)
{
	const char *v = secure_getenv(m->var);

	if (v == NULL || v[0] == '\0') {
		kwi_diag(d, KW_ERR_CONFIG, m->file, m->line,
			 "%s: $%s is not set", m->what, m->var);
		return KW_ERR_CONFIG;
	}
	m->pass_len = strlen(v);
	m->pass = kwi_secure_alloc(m->pass_len + 1);
	if (m->pass == NULL)
		return KW_ERR_NOMEM;
	memcpy(m->pass, v, m->pass_len);
	return KW_OK;
}

kw_status kwi_master_load(struct kwi_master *m, struct kwi_diag *d)
{
	switch (m->source) {
	case KWI_KEY_ENV:
		return load_env(m, d);
	case KWI_KEY_FILE:
		return load_file(m, d);
	case KWI_KEY_PASSPHRASE:
		return load_passphrase(m, d);
	}
	return KW_ERR_INTERNAL;
}

void kwi_master_free(struct kwi_master *m)
{
	kwi_wipe(m->key, sizeof(m->key));
	if (m->pass != NULL)
		kwi_secure_free(m->pass, m->pass_len + 1);
	m->pass = NULL;
}
