/*
 * ossl.c - OpenSSL's AES-256-GCM and PBKDF2, for CPUs without AES-NI.
 *
 * OpenSSL is loaded with dlopen() the first time it is needed: linking
 * libcrypto would cost every process about 2 ms of start-up (relocations
 * and page faults) that a keyway get on a CPU with AES-NI never uses.  Its
 * headers are a build dependency still: they give the soname and the type
 * of each function taken from it.  The cipher is fetched once, and each
 * thread keeps one context, so a call only sets the key and the nonce.
 */
#include "config.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/opensslv.h>
#if !defined(OPENSSL_VERSION_MAJOR) || OPENSSL_VERSION_MAJOR < 3
#error "keyway needs OpenSSL 3 or later (EVP_CIPHER_fetch, EVP_CipherInit_ex2)"
#endif
#include <openssl/evp.h>

#include "crypto.h"
#include "crypto_int.h"
#include "dlsym.h"
#include "seams.h"

#define STRINGIFY(x) #x
#define SONAME(major) "libcrypto.so." STRINGIFY(major)
#define LIBCRYPTO SONAME(OPENSSL_VERSION_MAJOR)

/* The functions keyway calls, each with the type its declaration gives. */
static struct {
	typeof(&EVP_CIPHER_fetch) EVP_CIPHER_fetch;
	typeof(&EVP_CIPHER_CTX_new) EVP_CIPHER_CTX_new;
	typeof(&EVP_CIPHER_CTX_free) EVP_CIPHER_CTX_free;
	typeof(&EVP_CIPHER_CTX_ctrl) EVP_CIPHER_CTX_ctrl;
	typeof(&EVP_CipherInit_ex2) EVP_CipherInit_ex2;
	typeof(&EVP_CipherUpdate) EVP_CipherUpdate;
	typeof(&EVP_CipherFinal_ex) EVP_CipherFinal_ex;
	/* For passphrases (ossl_pbkdf2_ready). */
	typeof(&PKCS5_PBKDF2_HMAC) PKCS5_PBKDF2_HMAC;
	typeof(&EVP_sha256) EVP_sha256;
} ossl;

static pthread_once_t ossl_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *ossl_gcm;
static pthread_key_t ossl_key;
static bool ossl_ready;      /* all of the above is set */
static bool ossl_pbkdf2_ready;
static char ossl_why[384];  /* why not, when !ossl_ready */

#ifdef KW_TEST_SEAMS
static const char *test_libcrypto;
static atomic_ulong test_openssl_uses;

/* Only in the library the unit tests link: the file to load instead of
 * libcrypto, to see what happens where it is missing.  Takes effect only
 * before OpenSSL is first needed. */
void kwi_test_libcrypto(const char *soname)
{
	test_libcrypto = soname;
}

unsigned long kwi_ossl_test_uses(void)
{
	return atomic_load(&test_openssl_uses);
}
#endif

static void ossl_ctx_free(void *c)
{
	ossl.EVP_CIPHER_CTX_free(c);
}

#define OSSL_SYM(lib, fn) kwi_dlsym(lib, #fn, &ossl.fn, sizeof(ossl.fn))

static void ossl_start(void)
{
	const char *file = LIBCRYPTO;
	const char *e;
	void *lib;
	int err;

#ifdef KW_TEST_SEAMS
	if (test_libcrypto != NULL)
		file = test_libcrypto;
#endif
	/* Never unloaded: OpenSSL keeps state and exit handlers. */
	lib = dlopen(file, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
	if (lib != NULL)
		ossl_pbkdf2_ready = OSSL_SYM(lib, PKCS5_PBKDF2_HMAC) &&
				    OSSL_SYM(lib, EVP_sha256);
	if (lib == NULL || !OSSL_SYM(lib, EVP_CIPHER_fetch) ||
	    !OSSL_SYM(lib, EVP_CIPHER_CTX_new) ||
	    !OSSL_SYM(lib, EVP_CIPHER_CTX_free) ||
	    !OSSL_SYM(lib, EVP_CIPHER_CTX_ctrl) ||
	    !OSSL_SYM(lib, EVP_CipherInit_ex2) ||
	    !OSSL_SYM(lib, EVP_CipherUpdate) ||
	    !OSSL_SYM(lib, EVP_CipherFinal_ex)) {
		e = dlerror();
		snprintf(ossl_why, sizeof(ossl_why),
			 "AES-256-GCM needs AES-NI or OpenSSL's " LIBCRYPTO
			 ": %s",
			 e != NULL ? e : "cannot load it");
		return;
	}
	ossl_gcm = ossl.EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	if (ossl_gcm == NULL) {
		snprintf(ossl_why, sizeof(ossl_why),
			 "AES-256-GCM needs AES-NI or OpenSSL's " LIBCRYPTO
			 ": its AES-256-GCM cannot be fetched");
		return;
	}
	err = pthread_key_create(&ossl_key, ossl_ctx_free);
	if (err != 0) {
		snprintf(ossl_why, sizeof(ossl_why),
			 "cannot keep OpenSSL's per-thread state: %s",
			 strerror(err));
		return;
	}
	ossl_ready = true;
}

/* A library unloaded with dlclose() must not leave its destructor to the
 * threads that outlive it. */
__attribute__((destructor)) static void ossl_stop(void)
{
	if (ossl_ready)
		pthread_key_delete(ossl_key);
}

/*
 * PBKDF2 for a passphrase, by OpenSSL where it can be loaded: its SHA-256
 * uses the CPU's SHA extensions, several times faster than libsodium's
 * portable code over 600,000 iterations (and where OpenSSL is configured
 * with its FIPS provider, that is what derives the key).  False when it
 * cannot: the caller derives with libsodium, to the same bytes.
 */
bool kwi_ossl_pbkdf2(const char *pass, size_t pass_len,
		     const unsigned char *salt, size_t salt_len,
		     unsigned long iterations, unsigned char *out,
		     size_t out_len)
{
	if (pthread_once(&ossl_once, ossl_start) != 0 || !ossl_pbkdf2_ready ||
	    pass_len > INT_MAX || salt_len > INT_MAX || iterations > INT_MAX ||
	    out_len > INT_MAX)
		return false;
	return ossl.PKCS5_PBKDF2_HMAC(pass, (int)pass_len, salt, (int)salt_len,
				      (int)iterations, ossl.EVP_sha256(),
				      (int)out_len, out) == 1;
}

bool kwi_ossl_load(char *why, size_t whylen)
{
	/* GCOVR_EXCL_START: pthread_once() fails only when given no once
	 * control or no function */
	if (pthread_once(&ossl_once, ossl_start) != 0) {
		if (why != NULL)
			snprintf(why, whylen, "cannot load OpenSSL");
		return false;
	}
	/* GCOVR_EXCL_STOP */
	if (!ossl_ready && why != NULL)
		snprintf(why, whylen, "%s", ossl_why);
	return ossl_ready;
}

/*
 * The calling thread's context, with the cipher set; NULL on failure, with
 * the reason in why (a seal, which has no room for one, passes NULL).
 */
static EVP_CIPHER_CTX *ossl_ctx(char *why, size_t whylen)
{
	EVP_CIPHER_CTX *c;

#ifdef KW_TEST_SEAMS
	atomic_fetch_add(&test_openssl_uses, 1);
#endif
	if (!kwi_ossl_load(why, whylen))
		return NULL;
	c = pthread_getspecific(ossl_key);
	if (c != NULL)
		return c;
	c = ossl.EVP_CIPHER_CTX_new();
	if (c != NULL &&
	    ossl.EVP_CipherInit_ex2(c, ossl_gcm, NULL, NULL, 1, NULL) == 1 &&
	    pthread_setspecific(ossl_key, c) == 0)
		return c;
	ossl.EVP_CIPHER_CTX_free(c);
	if (why != NULL)
		snprintf(why, whylen, "out of memory");
	return NULL;
}

/*
 * The context keeps the key schedule and the last block's keystream until
 * it is keyed again: key it with zeros so that neither outlives the call
 * (freeing it would cleanse too, at the price of an allocation per call).
 */
static void ossl_scrub(EVP_CIPHER_CTX *c)
{
	static const unsigned char zero[KWI_KEY_LEN];

	if (ossl.EVP_CipherInit_ex2(c, NULL, zero, zero, 1, NULL) != 1) {
		pthread_setspecific(ossl_key, NULL);
		ossl.EVP_CIPHER_CTX_free(c);
	}
}

/* Key c for one message (enc: 1 to seal, 0 to open), then run the
 * associated data and len bytes of in through it into out; *n: the bytes
 * written. */
static bool ossl_run(EVP_CIPHER_CTX *c, int enc,
		     const unsigned char key[KWI_KEY_LEN],
		     const unsigned char nonce[KWI_NONCE_LEN],
		     const unsigned char *ad, size_t adlen,
		     const unsigned char *in, size_t len, unsigned char *out,
		     int *n)
{
	return ossl.EVP_CipherInit_ex2(c, NULL, key, nonce, enc, NULL) == 1 &&
	       ossl.EVP_CipherUpdate(c, NULL, n, ad, (int)adlen) == 1 &&
	       ossl.EVP_CipherUpdate(c, out, n, in, (int)len) == 1;
}

bool kwi_ossl_seal(const unsigned char key[KWI_KEY_LEN],
		   const unsigned char nonce[KWI_NONCE_LEN],
		   const unsigned char *ad, size_t adlen,
		   const unsigned char *plain, size_t len, unsigned char *out)
{
	EVP_CIPHER_CTX *c = ossl_ctx(NULL, 0);
	bool ok;
	int n, fin;

	if (c == NULL)
		return false;
	ok = ossl_run(c, 1, key, nonce, ad, adlen, plain, len, out, &n) &&
	     ossl.EVP_CipherFinal_ex(c, out + n, &fin) == 1 &&
	     ossl.EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, KWI_TAG_LEN,
				      out + len) == 1;
	ossl_scrub(c);
	return ok;
}

kw_status kwi_ossl_open(const unsigned char key[KWI_KEY_LEN],
			const unsigned char nonce[KWI_NONCE_LEN],
			const unsigned char *ad, size_t adlen,
			const unsigned char *ct, size_t len,
			unsigned char *plain, char *why, size_t whylen)
{
	EVP_CIPHER_CTX *c = ossl_ctx(why, whylen);
	bool ok;
	int n, fin;

	if (c == NULL)
		return KW_ERR_CRYPTO;
	ok = ossl_run(c, 0, key, nonce, ad, adlen, ct, len, plain, &n) &&
	     ossl.EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, KWI_TAG_LEN,
				      (void *)(ct + len)) == 1 &&
	     ossl.EVP_CipherFinal_ex(c, plain + n, &fin) == 1;
	ossl_scrub(c);
	if (!ok)
		snprintf(why, whylen, KWI_AUTH_FAILED);
	return ok ? KW_OK : KW_ERR_CRYPTO;
}
