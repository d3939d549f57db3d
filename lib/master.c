/*
 * master.c - reading master keys from where keyway.conf says they are.
 *
 * Master keys come from the environment (64 hex digits), a private file
 * (the same), a credential that systemd hands the service in
 * $CREDENTIALS_DIRECTORY (the same), or a passphrase stretched with
 * Argon2id or PBKDF2-HMAC-SHA256 (on libsodium's HMAC) over a salt that
 * each store keeps, so the same passphrase gives each store its own key
 * (kdf.c).  The settings are parsed by config_master.c; this file reads
 * what they name.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
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

/* 64 hex digits and an optional line end, read from fd (closed here) into
 * m->key; shown names the file in messages, hint says how to make one. */
static kw_status read_key(struct kwi_master *m, int fd, const char *shown,
			  const char *hint, struct kwi_diag *d)
{
	kw_status rc = KW_OK;
	char *buf = NULL;
	ssize_t got;
	size_t len;

	buf = kwi_secure_alloc(FILE_BUF);
	if (buf == NULL) {
		kwi_diag(d, KW_ERR_NOMEM, m->file, m->line,
			 "%s: out of memory", m->what);
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
			 "%s: %s must hold 64 hexadecimal digits (%s)", m->what,
			 shown, hint);
		rc = KW_ERR_CONFIG;
	}
out:
	kwi_secure_free(buf, FILE_BUF);
	close(fd);
	return rc;
}

/* source = "file": 64 hex digits and an optional line end in a private
 * file. */
static kw_status load_file(struct kwi_master *m, struct kwi_diag *d)
{
	char why[512], hint[1100];
	kw_status rc;
	int fd = -1;

	rc = kwi_open_private(m->path, &fd, why, sizeof(why));
	if (rc == KW_ERR_NOTFOUND)
		rc = KW_ERR_CONFIG;
	if (rc != KW_OK) {
		kwi_diag(d, rc, m->file, m->line, "%s: %s", m->what, why);
		return rc;
	}
	snprintf(hint, sizeof(hint), "make one with keyway keygen -o %s",
		 m->path);
	return read_key(m, fd, m->path, hint, d);
}

/*
 * A POSIX access ACL on the file open on fd, as the kernel stores it
 * (linux/posix_acl_xattr.h: a version, then entries of a tag, permissions
 * and an id, little-endian): does it let anyone read but its owner and
 * this process's user?  Said in why when it does.  With an ACL the
 * group bits of st_mode are its mask, so 0440 is what systemd's 0400
 * credential shows when an ACL gives the service's user read access.
 */
enum { ACL_XATTR_VERSION = 2, TAG_USER = 0x02, TAG_GROUP_OBJ = 0x04,
       TAG_GROUP = 0x08, PERM_READ = 0x04 };

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static kw_status acl_private(int fd, const char *shown, char *why,
			     size_t whylen)
{
	unsigned char acl[4 + 8 * 64];
	ssize_t n = fgetxattr(fd, "system.posix_acl_access", acl, sizeof(acl));

	if (n < 0 && errno != ENODATA && errno != ENOTSUP && errno != ERANGE) {
		snprintf(why, whylen, "%s: cannot read its ACL: %s", shown,
			 strerror(errno));
		return KW_ERR_IO;
	}
	if (n < 4 || (n - 4) % 8 != 0 || le32(acl) != ACL_XATTR_VERSION) {
		/* No ACL (or one too big to be systemd's): the group bits
		 * are the group's. */
		snprintf(why, whylen,
			 "%s is readable by its group; it holds secrets: chmod "
			 "400 it",
			 shown);
		return KW_ERR_PERM;
	}
	for (const unsigned char *e = acl + 4; e < acl + n; e += 8) {
		unsigned tag = e[0] | e[1] << 8, perm = e[2] | e[3] << 8;
		uint32_t id = le32(e + 4);

		if (!(perm & PERM_READ))
			continue;
		if (tag == TAG_USER && id != (uint32_t)geteuid()) {
			snprintf(why, whylen,
				 "%s is readable by uid %u through its ACL; it "
				 "holds secrets: setfacl -b it",
				 shown, (unsigned)id);
			return KW_ERR_PERM;
		}
		if (tag == TAG_GROUP_OBJ || tag == TAG_GROUP) {
			snprintf(why, whylen,
				 "%s is readable by a group through its ACL; it "
				 "holds secrets: setfacl -b it",
				 shown);
			return KW_ERR_PERM;
		}
	}
	return KW_OK;
}

/*
 * The credential open on fd: a regular file owned by root or this
 * process's user, that no one else may write and no one else may read,
 * but through an ACL that lets only this process's user read it (systemd
 * writes credentials 0400, and gives the service's user read access either
 * by owning the file or by such an ACL).
 */
static kw_status cred_private(int fd, const char *shown, char *why,
			      size_t whylen)
{
	char euid_buf[KWI_EUID_BUF];
	struct stat st;

	/* GCOVR_EXCL_START: fstat() of a descriptor open() just gave cannot
	 * fail */
	if (fstat(fd, &st) != 0) {
		snprintf(why, whylen, "%s: %s", shown, strerror(errno));
		return KW_ERR_IO;
	}
	/* GCOVR_EXCL_STOP */
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s is not a regular file", shown);
		return KW_ERR_PERM;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		snprintf(why, whylen,
			 "%s is owned by uid %u; it must belong to root%s",
			 shown, (unsigned)st.st_uid, kwi_or_euid(euid_buf));
		return KW_ERR_PERM;
	}
	if (st.st_mode & 037) {
		snprintf(why, whylen,
			 "%s is accessible by others or writable by its group "
			 "(mode %04o); it holds secrets: chmod 400 it",
			 shown, (unsigned)(st.st_mode & 07777));
		return KW_ERR_PERM;
	}
	if (st.st_mode & 040)
		return acl_private(fd, shown, why, whylen);
	return KW_OK;
}

/*
 * source = "credential": 64 hex digits and an optional line end in
 * $CREDENTIALS_DIRECTORY/name, which systemd fills from LoadCredential=
 * (or LoadCredentialEncrypted=) for the service; read as the file source
 * reads its file, with the checks of cred_private().
 */
static kw_status load_credential(struct kwi_master *m, struct kwi_diag *d)
{
	const char *dir = secure_getenv("CREDENTIALS_DIRECTORY");
	char why[1400], shown[1100], hint[400];
	kw_status rc;
	int fd, e;

	if (dir == NULL || dir[0] == '\0') {
		kwi_diag(d, KW_ERR_CONFIG, m->file, m->line,
			 "%s: source \"credential\" reads $CREDENTIALS_DIRECTORY/"
			 "%s, but $CREDENTIALS_DIRECTORY is not set: run keyway "
			 "under systemd with LoadCredential=%s:PATH, or set it "
			 "to the directory that holds %s",
			 m->what, m->name, m->name, m->name);
		return KW_ERR_CONFIG;
	}
	if (dir[0] != '/') {
		kwi_diag(d, KW_ERR_CONFIG, m->file, m->line,
			 "%s: $CREDENTIALS_DIRECTORY (%s) is not an absolute "
			 "path",
			 m->what, dir);
		return KW_ERR_CONFIG;
	}
	if ((size_t)snprintf(m->path, sizeof(m->path), "%s/%s", dir,
			     m->name) >= sizeof(m->path)) {
		kwi_diag(d, KW_ERR_CONFIG, m->file, m->line,
			 "%s: $CREDENTIALS_DIRECTORY is longer than %zu bytes",
			 m->what, sizeof(m->path) - sizeof(m->name));
		m->path[0] = '\0';
		return KW_ERR_CONFIG;
	}
	snprintf(shown, sizeof(shown), "credential \"%s\" (%s)", m->name,
		 m->path);
	/* Whoever may write the directory may swap the key. */
	rc = kwi_path_trusted(dir, why, sizeof(why));
	if (rc != KW_OK) {
		if (rc == KW_ERR_NOTFOUND || rc == KW_ERR_INVAL)
			rc = KW_ERR_CONFIG;
		kwi_diag(d, rc, m->file, m->line,
			 "%s: $CREDENTIALS_DIRECTORY: %s%s", m->what, why,
			 rc == KW_ERR_PERM ? "; chmod go-w it" : "");
		return rc;
	}
	fd = open(m->path,
		  O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		e = errno;
		if (e == ENOENT)
			kwi_diag(d, KW_ERR_CONFIG, m->file, m->line,
				 "%s: no credential \"%s\" in "
				 "$CREDENTIALS_DIRECTORY (%s): give the service "
				 "LoadCredential=%s:PATH",
				 m->what, m->name, dir, m->name);
		else if (e == ELOOP)
			kwi_diag(d, KW_ERR_PERM, m->file, m->line,
				 "%s: %s is a symbolic link; put the key "
				 "itself there",
				 m->what, shown);
		else
			kwi_diag(d, e == EACCES ? KW_ERR_PERM : KW_ERR_IO,
				 m->file, m->line, "%s: %s: %s", m->what,
				 shown, strerror(e));
		return e == ENOENT ? KW_ERR_CONFIG
		       : e == EACCES || e == ELOOP ? KW_ERR_PERM : KW_ERR_IO;
	}
	/* Not blocking until fstat() has said it is a regular file, whose
	 * reads never block. */
	rc = cred_private(fd, shown, why, sizeof(why));
	if (rc != KW_OK) {
		kwi_diag(d, rc, m->file, m->line, "%s: %s", m->what, why);
		close(fd);
		return rc;
	}
	snprintf(hint, sizeof(hint),
		 "make the FILE of LoadCredential=%s:FILE with keyway keygen "
		 "-o FILE",
		 m->name);
	return read_key(m, fd, shown, hint, d);
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
	if (m->pass == NULL) {
		kwi_diag(d, KW_ERR_NOMEM, m->file, m->line,
			 "%s: out of memory", m->what);
		return KW_ERR_NOMEM;
	}
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
	case KWI_KEY_CREDENTIAL:
		return load_credential(m, d);
	}
	/* Every source is a case above. */
	return KW_ERR_INTERNAL; /* GCOVR_EXCL_LINE */
}

void kwi_master_free(struct kwi_master *m)
{
	kwi_wipe(m->key, sizeof(m->key));
	if (m->pass != NULL)
		kwi_secure_free(m->pass, m->pass_len + 1);
	m->pass = NULL;
}
