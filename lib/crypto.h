/*
 * crypto.h - master keys, keyrings and the sealed format, as the rest of
 * libkeyway sees them (master.c, kdf.c, keyring.c, seal.c; ossl.c behind
 * them).  Never installed.
 */
#ifndef KEYWAY_CRYPTO_H
#define KEYWAY_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

struct kw_ctx;
struct kwi_diag;

/* ---- master keys (master.c) ---- */

enum kwi_key_source {
	KWI_KEY_ENV = 1,
	KWI_KEY_FILE,
	KWI_KEY_PASSPHRASE,
	KWI_KEY_CREDENTIAL, /* $CREDENTIALS_DIRECTORY/name (systemd) */
};
enum kwi_kdf { KWI_KDF_ARGON2ID = 1, KWI_KDF_PBKDF2 };

/* One of keyway.master_key / keyway.old_master_keys.  Kept in guarded
 * memory: it holds the key, or the passphrase it is derived from. */
struct kwi_master {
	enum kwi_key_source source;
	enum kwi_kdf kdf;
	bool var_default;           /* var not given: also try the legacy name */
	char var[128];
	char path[1024];            /* file: the path; credential: where
				     * it was read from, once loaded */
	char name[256];             /* credential: a plain file name */
	char what[64];              /* "keyway.master_key" for messages */
	const char *file;
	int line;
	unsigned char key[32];      /* env, file and credential sources */
	char *pass;                 /* passphrase source (guarded) */
	size_t pass_len;
};

/*
 * Read the key material that m's parsed settings (source, var, path, name,
 * what, file, line) name: the key into m->key, or the passphrase into m->pass
 * (guarded; freed by kwi_master_free()).  KW_OK; KW_ERR_CONFIG, KW_ERR_PERM
 * or KW_ERR_IO, said to d; KW_ERR_NOMEM.
 */
kw_status kwi_master_load(struct kwi_master *m, struct kwi_diag *d);
/* Wipe the key and free the passphrase; m itself is the caller's. */
void kwi_master_free(struct kwi_master *m);

/* ---- key derivation (kdf.c) ---- */

/*
 * Argon2id with keyway's parameters (OWASP's minimum: 19 MiB, two passes,
 * one lane): 32 bytes from pass over salt into out.  KW_OK, or
 * KW_ERR_NOMEM when the memory it needs cannot be had.
 */
kw_status kwi_kdf_argon2id(const char *pass, size_t pass_len,
			   const unsigned char salt[KW_SALT_SIZE],
			   unsigned char out[32]);

/* ---- keyrings (keyring.c; kwi_keyring_ready in seal.c) ---- */

/* The context's master keys bound to a store's salt (cached per salt; owned
 * by the context).  KW_OK, KW_ERR_NOMEM or KW_ERR_CRYPTO. */
kw_status kwi_keyring_get(struct kw_ctx *ctx,
			  const unsigned char salt[KW_SALT_SIZE],
			  struct kw_keyring **out);
/* Free every keyring of ctx. */
void kwi_keyrings_free(struct kw_ctx *ctx);
/* Can kr seal and open here (AES-NI, or OpenSSL's libcrypto loaded)?
 * Else KW_ERR_CRYPTO, and why says what is missing. */
kw_status kwi_keyring_ready(const struct kw_keyring *kr, char *why,
			    size_t whylen);
/* The id (hex) of kr's current master key; owned by kr. */
const char *kwi_keyring_id(const struct kw_keyring *kr);
/* How kr's current master key is made (struct kw_host's keyring_kdf). */
uint32_t kwi_keyring_kdf(const struct kw_keyring *kr, uint32_t params[3]);
/* Does kr hold the master key with this id? */
bool kwi_keyring_knows(const struct kw_keyring *kr, const char *id);

/* ---- the sealed format (seal.c) ---- */

/* Seal len bytes of plain under kr's current key, bound to aad.  *out:
 * *outlen = len + KW_SEAL_OVERHEAD bytes, malloc'd, the caller's to free.
 * KW_OK, KW_ERR_INVAL (too long), KW_ERR_NOMEM or KW_ERR_CRYPTO. */
kw_status kwi_seal(const struct kw_keyring *kr, const kw_seal_aad *aad,
		   const char *plain, size_t len, unsigned char **out,
		   size_t *outlen);
/* Open a sealed value into plain (len - KW_SEAL_OVERHEAD bytes, wiped on
 * failure).  KW_OK, or KW_ERR_CRYPTO / KW_ERR_NOMEM with why. */
kw_status kwi_unseal(const struct kw_keyring *kr, const kw_seal_aad *aad,
		     const unsigned char *sealed, size_t len, char *plain,
		     char *why, size_t whylen);
/* The id of the master key a value was sealed under, or KW_ERR_CRYPTO
 * (id "") when it is not a sealed value. */
kw_status kwi_sealed_key_id(const unsigned char *sealed, size_t len,
			    char id[KW_KEY_ID_SIZE]);


#endif /* KEYWAY_CRYPTO_H */
