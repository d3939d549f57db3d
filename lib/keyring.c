/*
 * keyring.c - the context's master keys bound to a store's salt.
 *
 * Stores that share a file share a salt, so keyrings are cached per salt
 * in the context: a passphrase is stretched once per salt, and libsodium's
 * AES-256-GCM key is expanded once per key.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "context.h"
#include "crypto.h"
#include "crypto_int.h"
#include "secmem.h"

kw_status kwi_keyring_get(struct kw_ctx *ctx,
			  const unsigned char salt[KW_SALT_SIZE],
			  struct kw_keyring **out)
{
	struct kw_keyring *kr;
	size_t size;

	*out = NULL;
	/* Stores that share a file share a salt: derive once. */
	for (kr = ctx->keyrings; kr != NULL; kr = kr->next) {
		if (sodium_memcmp(kr->salt, salt, KW_SALT_SIZE) == 0) {
			*out = kr;
			return KW_OK;
		}
	}
	size = sizeof(*kr) + ctx->nmasters * sizeof(kr->keys[0]);
	kr = kwi_secure_alloc(size);
	if (kr == NULL)
		return KW_ERR_NOMEM;
	kr->size = size;
	memcpy(kr->salt, salt, KW_SALT_SIZE);
	/* libsodium's AES-256-GCM needs AES-NI and PCLMUL, and loads the
	 * expanded key with aligned instructions. */
	kr->aesni = crypto_aead_aes256gcm_is_available() &&
		    (uintptr_t)kr % _Alignof(crypto_aead_aes256gcm_state) == 0;
	kr->kdf = kwi_kdf_of(&ctx->masters[0], kr->kdf_params);
	for (size_t i = 0; i < ctx->nmasters; i++) {
		struct kwi_ring_key *k = &kr->keys[i];
		kw_status rc = kwi_kdf_derive(&ctx->masters[i], salt, k->key);

		if (rc != KW_OK) {
			kwi_secure_free(kr, size);
			return rc;
		}
		kwi_key_id(k->key, k->id, k->hex);
		if (kr->aesni)
			crypto_aead_aes256gcm_beforenm(&k->gcm, k->key);
		kr->n++;
	}
	kr->next = ctx->keyrings;
	ctx->keyrings = kr;
	*out = kr;
	return KW_OK;
}

void kwi_keyrings_free(struct kw_ctx *ctx)
{
	while (ctx->keyrings != NULL) {
		struct kw_keyring *next = ctx->keyrings->next;

		kwi_secure_free(ctx->keyrings, ctx->keyrings->size);
		ctx->keyrings = next;
	}
}

const char *kwi_keyring_id(const struct kw_keyring *kr)
{
	return kr->keys[0].hex;
}

uint32_t kwi_keyring_kdf(const struct kw_keyring *kr, uint32_t params[3])
{
	memcpy(params, kr->kdf_params, sizeof(kr->kdf_params));
	return kr->kdf;
}

bool kwi_keyring_knows(const struct kw_keyring *kr, const char *id)
{
	for (size_t i = 0; i < kr->n; i++)
		if (strcmp(kr->keys[i].hex, id) == 0)
			return true;
	return false;
}
