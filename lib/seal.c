/*
 * seal.c - the sealed format.
 *
 * A sealed value is
 *
 *     version (1) | key id (8) | nonce (12) | ciphertext (n) | tag (16)
 *
 * AES-256-GCM under the master key whose id is in the header, with a fresh
 * random nonce for every seal: libsodium's implementation where the CPU has
 * AES-NI and PCLMUL (the key expanded once, in the keyring), OpenSSL's
 * elsewhere, loaded only then (ossl.c); the blobs are the same.  The
 * associated data binds it to its record: the header, the store's id, the
 * scope, the owner and the provider, each length-prefixed, so a value
 * copied onto another row, into another store or under another header does
 * not open.
 */
#include "config.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto.h"
#include "crypto_int.h"
#include "secmem.h"
#include "seams.h"

#define SEAL_VERSION 1
#define HEADER_LEN (1 + KWI_ID_LEN + KWI_NONCE_LEN)
#define NONCE_AT (1 + KWI_ID_LEN)
#define AAD_LABEL "keyway seal v1"
/* Room for the associated data of the longest names keyway accepts. */
#define AAD_STACK 512

_Static_assert(HEADER_LEN + KWI_TAG_LEN == KW_SEAL_OVERHEAD, "seal overhead");
_Static_assert(crypto_aead_aes256gcm_KEYBYTES == KWI_KEY_LEN &&
		       crypto_aead_aes256gcm_NPUBBYTES == KWI_NONCE_LEN &&
		       crypto_aead_aes256gcm_ABYTES == KWI_TAG_LEN,
	       "libsodium's AES-256-GCM is the seal's");

/*
 * Both ways of running AES-256-GCM are the same construction (96-bit nonce,
 * 128-bit tag after the ciphertext), so a value sealed by one opens with the
 * other: which one runs depends only on the CPU.
 */

#ifdef KW_TEST_SEAMS
static atomic_bool test_no_aesni;

/* Only in the library the unit tests link, so that the OpenSSL way is
 * tested on machines that have AES-NI, and seen to be taken. */
unsigned long kwi_test_force_openssl(bool on)
{
	atomic_store(&test_no_aesni, on);
	return kwi_ossl_test_uses();
}
#endif

static bool use_aesni(const struct kw_keyring *kr)
{
#ifdef KW_TEST_SEAMS
	if (atomic_load(&test_no_aesni))
		return false;
#endif
	return kr->aesni;
}

/* Here rather than in keyring.c: which way a keyring seals is this
 * file's choice. */
kw_status kwi_keyring_ready(const struct kw_keyring *kr, char *why,
			    size_t whylen)
{
	return use_aesni(kr) || kwi_ossl_load(why, whylen) ? KW_OK
							   : KW_ERR_CRYPTO;
}

/*
 * The associated data in one piece: a label, the header, then the store's
 * id, the scope, the owner and the provider, each after its length (4
 * bytes, big-endian; 0 for a missing owner).  Written into buf when it fits
 * (it always does for names keyway accepts), else into memory the caller
 * frees.  NULL when out of memory.
 */
static unsigned char *make_aad(unsigned char *buf, size_t bufsize,
			       const unsigned char *header,
			       const kw_seal_aad *aad, size_t *len)
{
	const char *field[4] = { aad->store_id, kw_scope_str(aad->scope),
				 aad->owner, aad->provider };
	size_t flen[4], total = sizeof(AAD_LABEL) - 1 + HEADER_LEN;
	unsigned char *out, *p;

	*len = 0;
	for (size_t i = 0; i < 4; i++) {
		flen[i] = field[i] != NULL ? strlen(field[i]) : 0;
		/* Not counted by coverage: no test can hold a name of 2 GiB. */
		if (flen[i] > INT32_MAX)
			return NULL; /* GCOVR_EXCL_LINE */
		total += 4 + flen[i];
	}
	if (total > INT32_MAX)
		return NULL; /* GCOVR_EXCL_LINE: as above */
	out = total <= bufsize ? buf : malloc(total);
	if (out == NULL)
		return NULL;
	memcpy(out, AAD_LABEL, sizeof(AAD_LABEL) - 1);
	p = out + sizeof(AAD_LABEL) - 1;
	memcpy(p, header, HEADER_LEN);
	p += HEADER_LEN;
	for (size_t i = 0; i < 4; i++) {
		*p++ = (unsigned char)(flen[i] >> 24);
		*p++ = (unsigned char)(flen[i] >> 16);
		*p++ = (unsigned char)(flen[i] >> 8);
		*p++ = (unsigned char)flen[i];
		if (flen[i] > 0)
			memcpy(p, field[i], flen[i]);
		p += flen[i];
	}
	*len = total;
	return out;
}

kw_status kwi_seal(const struct kw_keyring *kr, const kw_seal_aad *aad,
		   const char *plain, size_t len, unsigned char **out,
		   size_t *outlen)
{
	const struct kwi_ring_key *k = &kr->keys[0];
	unsigned char adbuf[AAD_STACK], *ad = NULL, *blob;
	unsigned long long clen;
	kw_status rc = KW_ERR_CRYPTO;
	size_t adlen;

	*out = NULL;
	*outlen = 0;
	if (len > INT32_MAX - KW_SEAL_OVERHEAD)
		return KW_ERR_INVAL;
	blob = malloc(len + KW_SEAL_OVERHEAD);
	if (blob == NULL)
		return KW_ERR_NOMEM;
	blob[0] = SEAL_VERSION;
	memcpy(blob + 1, k->id, KWI_ID_LEN);
	randombytes_buf(blob + NONCE_AT, KWI_NONCE_LEN);
	ad = make_aad(adbuf, sizeof(adbuf), blob, aad, &adlen);
	if (ad == NULL) {
		rc = KW_ERR_NOMEM;
		goto out;
	}

	if (use_aesni(kr)) {
		if (crypto_aead_aes256gcm_encrypt_afternm(
			    blob + HEADER_LEN, &clen,
			    (const unsigned char *)plain, len, ad, adlen, NULL,
			    blob + NONCE_AT, &k->gcm) != 0)
			/* Fails only past 64 GiB, and len is under 2 GiB. */
			goto out; /* GCOVR_EXCL_LINE */
	} else if (!kwi_ossl_seal(k->key, blob + NONCE_AT, ad, adlen,
				  (const unsigned char *)plain, len,
				  blob + HEADER_LEN)) {
		goto out;
	}
	*out = blob;
	*outlen = len + KW_SEAL_OVERHEAD;
	blob = NULL;
	rc = KW_OK;
out:
	if (ad != adbuf)
		free(ad);
	free(blob);
	return rc;
}

kw_status kwi_sealed_key_id(const unsigned char *sealed, size_t len,
			    char id[KW_KEY_ID_SIZE])
{
	if (len < KW_SEAL_OVERHEAD || sealed[0] != SEAL_VERSION) {
		id[0] = '\0';
		return KW_ERR_CRYPTO;
	}
	sodium_bin2hex(id, KW_KEY_ID_SIZE, sealed + 1, KWI_ID_LEN);
	return KW_OK;
}

kw_status kwi_unseal(const struct kw_keyring *kr, const kw_seal_aad *aad,
		     const unsigned char *sealed, size_t len, char *plain,
		     char *why, size_t whylen)
{
	const struct kwi_ring_key *k = NULL;
	unsigned char adbuf[AAD_STACK], *ad = NULL;
	char id[KW_KEY_ID_SIZE];
	kw_status rc = KW_ERR_CRYPTO;
	size_t adlen, plen;

	if (len < KW_SEAL_OVERHEAD) {
		snprintf(why, whylen, "sealed value is truncated (%zu bytes)",
			 len);
		return KW_ERR_CRYPTO;
	}
	if (len - KW_SEAL_OVERHEAD > INT32_MAX) {
		snprintf(why, whylen,
			 "sealed value is too long (%zu bytes, at most %zu)",
			 len, (size_t)INT32_MAX + KW_SEAL_OVERHEAD);
		return KW_ERR_CRYPTO;
	}
	plen = len - KW_SEAL_OVERHEAD;
	if (sealed[0] != SEAL_VERSION) {
		snprintf(why, whylen, "unknown seal format version %u",
			 (unsigned)sealed[0]);
		goto out;
	}
	for (size_t i = 0; i < kr->n && k == NULL; i++)
		if (memcmp(kr->keys[i].id, sealed + 1, KWI_ID_LEN) == 0)
			k = &kr->keys[i];
	if (k == NULL) {
		sodium_bin2hex(id, sizeof(id), sealed + 1, KWI_ID_LEN);
		snprintf(why, whylen,
			 "sealed under master key %s, which is not configured",
			 id);
		goto out;
	}

	ad = make_aad(adbuf, sizeof(adbuf), sealed, aad, &adlen);
	if (ad == NULL) {
		snprintf(why, whylen, "out of memory");
		rc = KW_ERR_NOMEM;
		goto out;
	}
	if (!use_aesni(kr)) {
		rc = kwi_ossl_open(k->key, sealed + NONCE_AT, ad, adlen,
				   sealed + HEADER_LEN, plen,
				   (unsigned char *)plain, why, whylen);
		goto out;
	}
	if (crypto_aead_aes256gcm_decrypt_afternm(
		    (unsigned char *)plain, NULL, NULL, sealed + HEADER_LEN,
		    plen + KWI_TAG_LEN, ad, adlen, sealed + NONCE_AT,
		    &k->gcm) != 0) {
		snprintf(why, whylen, KWI_AUTH_FAILED);
		goto out;
	}
	rc = KW_OK;
out:
	if (ad != adbuf)
		free(ad);
	/* OpenSSL writes the plaintext before it checks the tag. */
	if (rc != KW_OK)
		kwi_wipe(plain, plen);
	return rc;
}
