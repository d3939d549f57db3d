/*
 * kdf.c - from a master key to the key of a store, and key ids.
 *
 * A passphrase is stretched with Argon2id or PBKDF2-HMAC-SHA256 over the
 * salt each store keeps, so the same passphrase gives each store its own
 * key; a key read as it is (env, file) is used as it is.  The key id is the
 * first 8 bytes of HMAC-SHA256(master key, "keyway master key id v1"): it
 * names a key without revealing anything about it.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "crypto.h"
#include "crypto_int.h"
#include "seams.h"

#define PBKDF2_ITERATIONS 600000
/* OWASP's minimum for Argon2id: 19 MiB, two passes, one lane. */
#define ARGON2_OPSLIMIT 2
#define ARGON2_MEMLIMIT (19u * 1024 * 1024)

_Static_assert(crypto_pwhash_SALTBYTES == KW_SALT_SIZE, "salt size");

void kwi_key_id(const unsigned char key[KWI_KEY_LEN],
		unsigned char id[KWI_ID_LEN], char hex[KW_KEY_ID_SIZE])
{
	static const char label[] = "keyway master key id v1";
	unsigned char mac[crypto_auth_hmacsha256_BYTES];

	crypto_auth_hmacsha256(mac, (const unsigned char *)label,
			       sizeof(label) - 1, key);
	memcpy(id, mac, KWI_ID_LEN);
	sodium_bin2hex(hex, KW_KEY_ID_SIZE, id, KWI_ID_LEN);
	sodium_memzero(mac, sizeof(mac));
}

/*
 * PBKDF2-HMAC-SHA256 (RFC 8018, section 5.2) into out.  HMAC's keyed state
 * is computed once and copied for each of the iterations, which halves the
 * hashing; every intermediate is wiped.  False for no iterations or an
 * output longer than PBKDF2 defines.
 */
static bool pbkdf2_sha256(const char *pass, size_t pass_len,
			  const unsigned char *salt, size_t salt_len,
			  unsigned long iterations, unsigned char *out,
			  size_t out_len)
{
	crypto_auth_hmacsha256_state keyed, st;
	unsigned char u[crypto_auth_hmacsha256_BYTES];
	unsigned char t[crypto_auth_hmacsha256_BYTES];
	unsigned char be[4];
	uint32_t block = 0;

	if (iterations == 0 || out_len / sizeof(t) >= UINT32_MAX)
		return false;
	crypto_auth_hmacsha256_init(&keyed, (const unsigned char *)pass,
				    pass_len);
	while (out_len > 0) {
		size_t n = out_len < sizeof(t) ? out_len : sizeof(t);

		block++;
		be[0] = (unsigned char)(block >> 24);
		be[1] = (unsigned char)(block >> 16);
		be[2] = (unsigned char)(block >> 8);
		be[3] = (unsigned char)block;
		/* U1 = PRF(P, S || INT(i)), Uj = PRF(P, Uj-1), T = U1 ^ ... */
		st = keyed;
		crypto_auth_hmacsha256_update(&st, salt, salt_len);
		crypto_auth_hmacsha256_update(&st, be, sizeof(be));
		crypto_auth_hmacsha256_final(&st, u);
		memcpy(t, u, sizeof(t));
		for (unsigned long j = 1; j < iterations; j++) {
			st = keyed;
			crypto_auth_hmacsha256_update(&st, u, sizeof(u));
			crypto_auth_hmacsha256_final(&st, u);
			for (size_t i = 0; i < sizeof(t); i++)
				t[i] ^= u[i];
		}
		memcpy(out, t, n);
		out += n;
		out_len -= n;
	}
	sodium_memzero(&keyed, sizeof(keyed));
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(u, sizeof(u));
	sodium_memzero(t, sizeof(t));
	return true;
}

#ifdef KW_TEST_SEAMS
/* Only in the library the unit tests link: PBKDF2 with any parameters,
 * for published test vectors. */
bool kwi_test_pbkdf2_sha256(const char *pass, size_t pass_len,
			    const unsigned char *salt, size_t salt_len,
			    unsigned long iterations, unsigned char *out,
			    size_t out_len)
{
	return pbkdf2_sha256(pass, pass_len, salt, salt_len, iterations, out,
			     out_len);
}
#endif

kw_status kwi_kdf_argon2id(const char *pass, size_t pass_len,
			   const unsigned char salt[KW_SALT_SIZE],
			   unsigned char out[32])
{
	return crypto_pwhash(out, 32, pass, pass_len, salt, ARGON2_OPSLIMIT,
			     ARGON2_MEMLIMIT,
			     crypto_pwhash_ALG_ARGON2ID13) == 0
		       ? KW_OK
		       : KW_ERR_NOMEM;
}

uint32_t kwi_kdf_of(const struct kwi_master *m, uint32_t params[3])
{
	params[0] = params[1] = params[2] = 0;
	if (m->source != KWI_KEY_PASSPHRASE)
		return KW_KDF_NONE;
	if (m->kdf == KWI_KDF_PBKDF2) {
		params[0] = PBKDF2_ITERATIONS;
		return KW_KDF_PBKDF2_SHA256;
	}
	params[0] = ARGON2_OPSLIMIT;
	params[1] = ARGON2_MEMLIMIT / 1024;
	params[2] = 1;
	return KW_KDF_ARGON2ID;
}

kw_status kwi_kdf_derive(const struct kwi_master *m,
			 const unsigned char salt[KW_SALT_SIZE],
			 unsigned char out[KWI_KEY_LEN])
{
	if (m->source != KWI_KEY_PASSPHRASE) {
		memcpy(out, m->key, KWI_KEY_LEN);
		return KW_OK;
	}
	if (m->kdf == KWI_KDF_PBKDF2)
		return kwi_ossl_pbkdf2(m->pass, m->pass_len, salt,
				       KW_SALT_SIZE, PBKDF2_ITERATIONS, out,
				       KWI_KEY_LEN) ||
				       pbkdf2_sha256(m->pass, m->pass_len,
						     salt, KW_SALT_SIZE,
						     PBKDF2_ITERATIONS, out,
						     KWI_KEY_LEN)
			       ? KW_OK
			       : KW_ERR_CRYPTO;
	return kwi_kdf_argon2id(m->pass, m->pass_len, salt, out);
}
