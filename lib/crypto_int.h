/*
 * crypto_int.h - what the files behind crypto.h share among themselves:
 * the sizes of the format, the keyring's layout, and the OpenSSL way of
 * running AES-256-GCM (ossl.c).  Only master.c, kdf.c, keyring.c, seal.c
 * and ossl.c include it.
 */
#ifndef KEYWAY_CRYPTO_INT_H
#define KEYWAY_CRYPTO_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <sodium.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

#include "crypto.h"

#define KWI_KEY_LEN 32
#define KWI_ID_LEN 8
#define KWI_NONCE_LEN 12
#define KWI_TAG_LEN 16
#define KWI_AUTH_FAILED                                                  \
	"authentication failed: the sealed value was altered or belongs to " \
	"another record"

struct kwi_ring_key {
	/* The expanded key, for libsodium (when kw_keyring.aesni). */
	crypto_aead_aes256gcm_state gcm;
	unsigned char key[KWI_KEY_LEN];
	unsigned char id[KWI_ID_LEN];
	char hex[KW_KEY_ID_SIZE];
};

/*
 * Lives in guarded memory, which is at least 16-byte aligned as the
 * expanded keys need; keys[0] is the current master key.
 */
struct kw_keyring {
	struct kw_keyring *next;   /* the context's cache */
	size_t size;               /* bytes allocated */
	unsigned char salt[KW_SALT_SIZE];
	bool aesni;                /* seal with libsodium: keys[].gcm is set */
	uint32_t kdf;              /* KW_KDF_* of keys[0] */
	uint32_t kdf_params[3];    /* ... and its parameters */
	size_t n;
	struct kwi_ring_key keys[];
};

/* ---- kdf.c ---- */

/* m's key for a store with this salt: the key itself, or the passphrase
 * stretched over the salt.  KW_OK, KW_ERR_NOMEM or KW_ERR_CRYPTO. */
kw_status kwi_kdf_derive(const struct kwi_master *m,
			 const unsigned char salt[KW_SALT_SIZE],
			 unsigned char out[KWI_KEY_LEN]);
/* How m's key is made: KW_KDF_* and its parameters (keyring_kdf()). */
uint32_t kwi_kdf_of(const struct kwi_master *m, uint32_t params[3]);
/* The id that names key without revealing it: id and its hex. */
void kwi_key_id(const unsigned char key[KWI_KEY_LEN],
		unsigned char id[KWI_ID_LEN], char hex[KW_KEY_ID_SIZE]);

/* ---- ossl.c: OpenSSL's libcrypto, loaded the first time it is needed ---- */

/* PBKDF2-HMAC-SHA256 by OpenSSL; false when it cannot be loaded (the
 * caller derives with libsodium, to the same bytes). */
bool kwi_ossl_pbkdf2(const char *pass, size_t pass_len,
		     const unsigned char *salt, size_t salt_len,
		     unsigned long iterations, unsigned char *out,
		     size_t out_len);
/* Load OpenSSL's AES-256-GCM once; false, with the reason in why (when
 * not NULL), where it cannot be. */
bool kwi_ossl_load(char *why, size_t whylen);
/* AES-256-GCM: len bytes of plain into out, then the tag (KWI_TAG_LEN
 * bytes) after them.  len and adlen fit an int. */
bool kwi_ossl_seal(const unsigned char key[KWI_KEY_LEN],
		   const unsigned char nonce[KWI_NONCE_LEN],
		   const unsigned char *ad, size_t adlen,
		   const unsigned char *plain, size_t len, unsigned char *out);
/* Open len bytes of ciphertext followed by their tag into plain.  KW_OK,
 * or KW_ERR_CRYPTO with the reason in why (plain may hold garbage). */
kw_status kwi_ossl_open(const unsigned char key[KWI_KEY_LEN],
			const unsigned char nonce[KWI_NONCE_LEN],
			const unsigned char *ad, size_t adlen,
			const unsigned char *ct, size_t len,
			unsigned char *plain, char *why, size_t whylen);
#ifdef KW_TEST_SEAMS
/* How many seals and opens took OpenSSL's way so far. */
unsigned long kwi_ossl_test_uses(void);
#endif

#endif /* KEYWAY_CRYPTO_INT_H */
