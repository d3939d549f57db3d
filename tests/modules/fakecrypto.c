/*
 * fakecrypto.c - a stand-in for libcrypto, which tests/unit/test_seal.c
 * has lib/ossl.c load (kwi_test_libcrypto()) to see what keyway does when
 * OpenSSL's calls fail.  It holds the functions ossl.c takes but
 * PKCS5_PBKDF2_HMAC and EVP_sha256 (so that PBKDF2 is libsodium's), and
 * its "cipher" copies.  $KWTEST_FAKECRYPTO says what fails: "fetch"
 * (EVP_CIPHER_fetch), "ctx" (EVP_CIPHER_CTX_new), "scrub" (keying a
 * context with the zero key, as ossl.c does after each use); anything
 * else, nothing.  fakecrypto_contexts() says how many contexts were made
 * and freed.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#define FAKE __attribute__((visibility("default")))

FAKE void *EVP_CIPHER_fetch(void *libctx, const char *alg, const char *props);
FAKE void *EVP_CIPHER_CTX_new(void);
FAKE void EVP_CIPHER_CTX_free(void *c);
FAKE int EVP_CIPHER_CTX_ctrl(void *c, int type, int arg, void *ptr);
FAKE int EVP_CipherInit_ex2(void *c, const void *cipher,
			    const unsigned char *key, const unsigned char *iv,
			    int enc, const void *params);
FAKE int EVP_CipherUpdate(void *c, unsigned char *out, int *outl,
			  const unsigned char *in, int inl);
FAKE int EVP_CipherFinal_ex(void *c, unsigned char *out, int *outl);
FAKE void fakecrypto_contexts(int *made, int *freed);

/* EVP_CTRL_GCM_GET_TAG in OpenSSL's evp.h. */
#define GET_TAG 0x10

static int cipher;
static int nmade, nfreed;

static int fails(const char *what)
{
	const char *v = getenv("KWTEST_FAKECRYPTO");

	return v != NULL && strcmp(v, what) == 0;
}

void *EVP_CIPHER_fetch(void *libctx, const char *alg, const char *props)
{
	(void)libctx;
	(void)props;
	return fails("fetch") || strcmp(alg, "AES-256-GCM") != 0 ? NULL
								  : &cipher;
}

void *EVP_CIPHER_CTX_new(void)
{
	void *c;

	if (fails("ctx"))
		return NULL;
	c = calloc(1, 16);
	if (c != NULL)
		nmade++;
	return c;
}

void EVP_CIPHER_CTX_free(void *c)
{
	if (c != NULL)
		nfreed++;
	free(c);
}

int EVP_CIPHER_CTX_ctrl(void *c, int type, int arg, void *ptr)
{
	(void)c;
	if (type == GET_TAG && arg > 0)
		memset(ptr, 0, (size_t)arg);
	return 1;
}

int EVP_CipherInit_ex2(void *c, const void *ciph, const unsigned char *key,
		       const unsigned char *iv, int enc, const void *params)
{
	static const unsigned char zero[32];

	(void)c;
	(void)ciph;
	(void)iv;
	(void)enc;
	(void)params;
	return fails("scrub") && key != NULL && memcmp(key, zero, 32) == 0 ? 0
									   : 1;
}

int EVP_CipherUpdate(void *c, unsigned char *out, int *outl,
		     const unsigned char *in, int inl)
{
	(void)c;
	if (out != NULL && inl > 0)
		memmove(out, in, (size_t)inl);
	*outl = inl;
	return 1;
}

int EVP_CipherFinal_ex(void *c, unsigned char *out, int *outl)
{
	(void)c;
	(void)out;
	*outl = 0;
	return 1;
}

void fakecrypto_contexts(int *made, int *freed)
{
	*made = nmade;
	*freed = nfreed;
}
