/*
 * crypto.c - master keys and sealing.
 *
 * A sealed value is
 *
 *     version (1) | key id (8) | nonce (12) | ciphertext (n) | tag (16)
 *
 * AES-256-GCM under the master key whose id is in the header, with a fresh
 * random nonce for every seal: libsodium's implementation where the CPU has
 * AES-NI and PCLMUL (the key expanded once, in the keyring), OpenSSL's
 * elsewhere, loaded only then; the blobs are the same.  The associated data
 * binds it to its record: the header, the store's id, the scope, the owner
 * and the provider, each length-prefixed, so a value copied onto another
 * row, into another store or under another header does not open.  The key
 * id is the first 8 bytes of HMAC-SHA256(master key, "keyway master key id
 * v1"): it names a key without revealing anything about it.
 *
 * Master keys come from the environment (64 hex digits), a private file
 * (the same), or a passphrase stretched with Argon2id or PBKDF2-HMAC-SHA256
 * (on libsodium's HMAC) over a salt that each store keeps, so the same
 * passphrase gives each store its own key.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/opensslv.h>
#if !defined(OPENSSL_VERSION_MAJOR) || OPENSSL_VERSION_MAJOR < 3
#error "keyway needs OpenSSL 3 or later (EVP_CIPHER_fetch, EVP_CipherInit_ex2)"
#endif
#include <openssl/evp.h>
#include <sodium.h>

#include "internal.h"

#define SEAL_VERSION 1
#define KEY_LEN 32
#define ID_LEN 8
#define NONCE_LEN 12
#define TAG_LEN 16
#define HEADER_LEN (1 + ID_LEN + NONCE_LEN)
#define AAD_LABEL "keyway seal v1"
#define AUTH_FAILED                                                      \
	"authentication failed: the sealed value was altered or belongs to " \
	"another record"
/* Room for the associated data of the longest names keyway accepts. */
#define AAD_STACK 512

#define PBKDF2_ITERATIONS 600000
/* OWASP's minimum for Argon2id: 19 MiB, two passes, one lane. */
#define ARGON2_OPSLIMIT 2
#define ARGON2_MEMLIMIT (19u * 1024 * 1024)

_Static_assert(HEADER_LEN + TAG_LEN == KW_SEAL_OVERHEAD, "seal overhead");
_Static_assert(crypto_pwhash_SALTBYTES == KW_SALT_SIZE, "salt size");
_Static_assert(crypto_aead_aes256gcm_KEYBYTES == KEY_LEN &&
		       crypto_aead_aes256gcm_NPUBBYTES == NONCE_LEN &&
		       crypto_aead_aes256gcm_ABYTES == TAG_LEN,
	       "libsodium's AES-256-GCM is the seal's");

struct ring_key {
	/* The expanded key, for libsodium (when kw_keyring.aesni). */
	crypto_aead_aes256gcm_state gcm;
	unsigned char key[KEY_LEN];
	unsigned char id[ID_LEN];
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
	size_t n;
	struct ring_key keys[];
};

/* ---- configuration: keyway.master_key and keyway.old_master_keys ---- */

static bool hex_key(const char *s, size_t len, unsigned char out[KEY_LEN])
{
	size_t bin_len;

	if (len != 2 * KEY_LEN)
		return false;
	return sodium_hex2bin(out, KEY_LEN, s, len, NULL, &bin_len, NULL) ==
		       0 &&
	       bin_len == KEY_LEN;
}

/* Read the key a master_key group describes into m; messages go to d. */
static kw_status load_material(struct kwi_master *m, struct kwi_diag *d)
{
	char why[512];
	kw_status rc = KW_OK;
	char *buf = NULL;
	const char *v;
	ssize_t got;
	size_t len;
	int fd = -1;

	switch (m->source) {
	case KWI_KEY_ENV:
		v = secure_getenv(m->var);
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
				 m->var_default
					 ? " (nor $API_KEY_ENCRYPTION_KEY)"
					 : "");
			return KW_ERR_CONFIG;
		}
		if (!hex_key(v, strlen(v), m->key)) {
			kwi_diag(d, KW_ERR_CONFIG, m->file, m->line,
				 "%s: $%s must be 64 hexadecimal digits (make "
				 "one with keyway keygen)",
				 m->what, m->var);
			return KW_ERR_CONFIG;
		}
		return KW_OK;
	case KWI_KEY_FILE:
		rc = kwi_open_private(m->path, &fd, why, sizeof(why));
		if (rc == KW_ERR_NOTFOUND)
			rc = KW_ERR_CONFIG;
		if (rc != KW_OK) {
			kwi_diag(d, rc, m->file, m->line, "%s: %s", m->what,
				 why);
			return rc;
		}
		buf = kwi_secure_alloc(2 * KEY_LEN + 3);
		if (buf == NULL) {
			rc = KW_ERR_NOMEM;
			goto out;
		}
		got = read(fd, buf, 2 * KEY_LEN + 2);
		len = got > 0 ? (size_t)got : 0;
		if (len > 0 && buf[len - 1] == '\n')
			len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
		if (got < 0 || !hex_key(buf, len, m->key)) {
			kwi_diag(d, KW_ERR_CONFIG, m->file, m->line,
				 "%s: %s must hold 64 hexadecimal digits (make "
				 "one with keyway keygen -o %s)",
				 m->what, m->path, m->path);
			rc = KW_ERR_CONFIG;
		}
		goto out;
	case KWI_KEY_PASSPHRASE:
		v = secure_getenv(m->var);
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
	return KW_ERR_INTERNAL;
out:
	kwi_secure_free(buf, 2 * KEY_LEN + 3);
	if (fd >= 0)
		close(fd);
	return rc;
}

kw_status kwi_master_parse(struct kwi_master *m, const config_setting_t *g,
			   const char *file, const char *what,
			   const char *config_dir, struct kwi_diag *d)
{
	const char *source = NULL, *var = NULL, *path = NULL, *kdf = NULL;
	kw_status rc = KW_OK;
	int n;

	memset(m, 0, sizeof(*m));
	m->file = file;
	m->line = (int)config_setting_source_line(g);
	snprintf(m->what, sizeof(m->what), "%s", what);
	if (!config_setting_is_group(g)) {
		kwi_diag(d, KW_ERR_CONFIG, file, m->line,
			 "%s must be a group { source = ...; }", what);
		return KW_ERR_CONFIG;
	}
	n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);
		const char **slot = strcmp(name, "source") == 0 ? &source
				    : strcmp(name, "var") == 0  ? &var
				    : strcmp(name, "path") == 0 ? &path
				    : strcmp(name, "kdf") == 0  ? &kdf
								: NULL;

		if (slot == NULL) {
			kwi_diag(d, KW_ERR_CONFIG, file,
				 (int)config_setting_source_line(s),
				 "%s: unknown setting \"%s\" (expected source, "
				 "var, path or kdf)",
				 what, name);
			rc = KW_ERR_CONFIG;
		} else if (config_setting_type(s) != CONFIG_TYPE_STRING ||
			   config_setting_get_string(s)[0] == '\0') {
			kwi_diag(d, KW_ERR_CONFIG, file,
				 (int)config_setting_source_line(s),
				 "%s: %s must be a non-empty string", what,
				 name);
			rc = KW_ERR_CONFIG;
		} else {
			*slot = config_setting_get_string(s);
		}
	}
	if (rc != KW_OK)
		return rc;

	if (source == NULL) {
		kwi_diag(d, KW_ERR_CONFIG, file, m->line,
			 "%s: missing source (\"env\", \"file\" or "
			 "\"passphrase\")",
			 what);
		return KW_ERR_CONFIG;
	}
	if (strcmp(source, "env") == 0) {
		m->source = KWI_KEY_ENV;
		m->var_default = var == NULL;
		snprintf(m->var, sizeof(m->var), "%s",
			 var != NULL ? var : "KEYWAY_MASTER_KEY");
		if (path != NULL || kdf != NULL)
			goto extra;
	} else if (strcmp(source, "file") == 0) {
		m->source = KWI_KEY_FILE;
		if (path == NULL) {
			kwi_diag(d, KW_ERR_CONFIG, file, m->line,
				 "%s: source \"file\" needs a path", what);
			return KW_ERR_CONFIG;
		}
		if (path[0] == '/')
			snprintf(m->path, sizeof(m->path), "%s", path);
		else
			snprintf(m->path, sizeof(m->path), "%s/%s",
				 config_dir, path);
		if (var != NULL || kdf != NULL)
			goto extra;
	} else if (strcmp(source, "passphrase") == 0) {
		m->source = KWI_KEY_PASSPHRASE;
		snprintf(m->var, sizeof(m->var), "%s",
			 var != NULL ? var : "KEYWAY_PASSPHRASE");
		m->kdf = KWI_KDF_ARGON2ID;
		if (kdf != NULL && strcmp(kdf, "pbkdf2-sha256") == 0) {
			m->kdf = KWI_KDF_PBKDF2;
		} else if (kdf != NULL && strcmp(kdf, "argon2id") != 0) {
			kwi_diag(d, KW_ERR_CONFIG, file, m->line,
				 "%s: unknown kdf \"%s\" (expected \"argon2id\" "
				 "or \"pbkdf2-sha256\")",
				 what, kdf);
			return KW_ERR_CONFIG;
		}
		if (path != NULL)
			goto extra;
	} else {
		kwi_diag(d, KW_ERR_CONFIG, file, m->line,
			 "%s: unknown source \"%s\" (expected \"env\", "
			 "\"file\" or \"passphrase\")",
			 what, source);
		return KW_ERR_CONFIG;
	}
	return load_material(m, d);

extra:
	kwi_diag(d, KW_ERR_CONFIG, file, m->line,
		 "%s: source \"%s\" takes %s", what, source,
		 m->source == KWI_KEY_ENV    ? "only var"
		 : m->source == KWI_KEY_FILE ? "only path"
					     : "only var and kdf");
	return KW_ERR_CONFIG;
}

void kwi_master_free(struct kwi_master *m)
{
	kwi_wipe(m->key, sizeof(m->key));
	if (m->pass != NULL)
		kwi_secure_free(m->pass, m->pass_len + 1);
	m->pass = NULL;
}

/* ---- keyrings ---- */

static void key_id(struct ring_key *k)
{
	static const char label[] = "keyway master key id v1";
	unsigned char mac[crypto_auth_hmacsha256_BYTES];

	crypto_auth_hmacsha256(mac, (const unsigned char *)label,
			       sizeof(label) - 1, k->key);
	memcpy(k->id, mac, ID_LEN);
	sodium_bin2hex(k->hex, sizeof(k->hex), k->id, ID_LEN);
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

static bool ossl_pbkdf2(const char *pass, size_t pass_len,
			const unsigned char *salt, size_t salt_len,
			unsigned long iterations, unsigned char *out,
			size_t out_len);

static kw_status derive(const struct kwi_master *m,
			const unsigned char salt[KW_SALT_SIZE],
			unsigned char out[KEY_LEN])
{
	if (m->source != KWI_KEY_PASSPHRASE) {
		memcpy(out, m->key, KEY_LEN);
		return KW_OK;
	}
	if (m->kdf == KWI_KDF_PBKDF2)
		return ossl_pbkdf2(m->pass, m->pass_len, salt, KW_SALT_SIZE,
				   PBKDF2_ITERATIONS, out, KEY_LEN) ||
				       pbkdf2_sha256(m->pass, m->pass_len,
						     salt, KW_SALT_SIZE,
						     PBKDF2_ITERATIONS, out,
						     KEY_LEN)
			       ? KW_OK
			       : KW_ERR_CRYPTO;
	return crypto_pwhash(out, KEY_LEN, m->pass, m->pass_len, salt,
			     ARGON2_OPSLIMIT, ARGON2_MEMLIMIT,
			     crypto_pwhash_ALG_ARGON2ID13) == 0
		       ? KW_OK
		       : KW_ERR_NOMEM;
}

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
	for (size_t i = 0; i < ctx->nmasters; i++) {
		kw_status rc = derive(&ctx->masters[i], salt, kr->keys[i].key);

		if (rc != KW_OK) {
			kwi_secure_free(kr, size);
			return rc;
		}
		key_id(&kr->keys[i]);
		if (kr->aesni)
			crypto_aead_aes256gcm_beforenm(&kr->keys[i].gcm,
						       kr->keys[i].key);
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

bool kwi_keyring_knows(const struct kw_keyring *kr, const char *id)
{
	for (size_t i = 0; i < kr->n; i++)
		if (strcmp(kr->keys[i].hex, id) == 0)
			return true;
	return false;
}

/* ---- sealing ---- */

/*
 * Both ways of running AES-256-GCM are the same construction (96-bit nonce,
 * 128-bit tag after the ciphertext), so a value sealed by one opens with the
 * other: which one runs depends only on the CPU.
 */

#ifdef KW_TEST_SEAMS
static atomic_bool test_no_aesni;
static atomic_ulong test_openssl_uses;

/* Only in the library the unit tests link, so that the OpenSSL way is
 * tested on machines that have AES-NI, and seen to be taken. */
unsigned long kwi_test_force_openssl(bool on)
{
	atomic_store(&test_no_aesni, on);
	return atomic_load(&test_openssl_uses);
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
		if (flen[i] > INT32_MAX)
			return NULL;
		total += 4 + flen[i];
	}
	if (total > INT32_MAX)
		return NULL;
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

/*
 * OpenSSL, for CPUs without AES-NI, loaded with dlopen() the first time it
 * is needed: linking libcrypto would cost every process about 2 ms of
 * start-up (relocations and page faults) that a keyway get on a CPU with
 * AES-NI never uses.  Its headers are a build dependency still: they give
 * the soname and the type of each function taken from it.  The cipher is
 * fetched once, and each thread keeps one context, so a call only sets the
 * key and the nonce.
 */
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

/* Only in the library the unit tests link: the file to load instead of
 * libcrypto, to see what happens where it is missing.  Takes effect only
 * before OpenSSL is first needed. */
void kwi_test_libcrypto(const char *soname)
{
	test_libcrypto = soname;
}
#endif

static void ossl_ctx_free(void *c)
{
	ossl.EVP_CIPHER_CTX_free(c);
}

/* POSIX has dlsym() return a function's address as a void *. */
static bool ossl_sym(void *lib, const char *name, void *slot, size_t size)
{
	void *fn = dlsym(lib, name);

	if (fn == NULL || size != sizeof(fn))
		return false;
	memcpy(slot, &fn, sizeof(fn));
	return true;
}

#define OSSL_SYM(lib, fn) ossl_sym(lib, #fn, &ossl.fn, sizeof(ossl.fn))

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
static bool ossl_pbkdf2(const char *pass, size_t pass_len,
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

/* Load OpenSSL's AES-256-GCM once; false, with the reason in why (when
 * not NULL), where it cannot be. */
static bool ossl_load(char *why, size_t whylen)
{
	if (pthread_once(&ossl_once, ossl_start) != 0) {
		if (why != NULL)
			snprintf(why, whylen, "cannot load OpenSSL");
		return false;
	}
	if (!ossl_ready && why != NULL)
		snprintf(why, whylen, "%s", ossl_why);
	return ossl_ready;
}

kw_status kwi_keyring_ready(const struct kw_keyring *kr, char *why,
			    size_t whylen)
{
	return use_aesni(kr) || ossl_load(why, whylen) ? KW_OK
						       : KW_ERR_CRYPTO;
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
	if (!ossl_load(why, whylen))
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
	static const unsigned char zero[KEY_LEN];

	if (ossl.EVP_CipherInit_ex2(c, NULL, zero, zero, 1, NULL) != 1) {
		pthread_setspecific(ossl_key, NULL);
		ossl.EVP_CIPHER_CTX_free(c);
	}
}

static bool ossl_seal(const struct ring_key *k, const unsigned char *ad,
		      size_t adlen, const char *plain, size_t len,
		      unsigned char *blob)
{
	EVP_CIPHER_CTX *c = ossl_ctx(NULL, 0);
	unsigned char *ct = blob + HEADER_LEN;
	bool ok;
	int n, fin;

	if (c == NULL)
		return false;
	ok = ossl.EVP_CipherInit_ex2(c, NULL, k->key, blob + 1 + ID_LEN, 1,
				     NULL) == 1 &&
	     ossl.EVP_CipherUpdate(c, NULL, &n, ad, (int)adlen) == 1 &&
	     ossl.EVP_CipherUpdate(c, ct, &n, (const unsigned char *)plain,
				   (int)len) == 1 &&
	     ossl.EVP_CipherFinal_ex(c, ct + n, &fin) == 1 &&
	     ossl.EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN,
				      ct + len) == 1;
	ossl_scrub(c);
	return ok;
}

/* KW_OK, or KW_ERR_CRYPTO with the reason in why. */
static kw_status ossl_open(const struct ring_key *k, const unsigned char *ad,
			   size_t adlen, const unsigned char *sealed,
			   size_t plen, char *plain, char *why, size_t whylen)
{
	EVP_CIPHER_CTX *c = ossl_ctx(why, whylen);
	const unsigned char *ct = sealed + HEADER_LEN;
	bool ok;
	int n, fin;

	if (c == NULL)
		return KW_ERR_CRYPTO;
	ok = ossl.EVP_CipherInit_ex2(c, NULL, k->key, sealed + 1 + ID_LEN, 0,
				     NULL) == 1 &&
	     ossl.EVP_CipherUpdate(c, NULL, &n, ad, (int)adlen) == 1 &&
	     ossl.EVP_CipherUpdate(c, (unsigned char *)plain, &n, ct,
				   (int)plen) == 1 &&
	     ossl.EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
				      (void *)(ct + plen)) == 1 &&
	     ossl.EVP_CipherFinal_ex(c, (unsigned char *)plain + n, &fin) == 1;
	ossl_scrub(c);
	if (!ok)
		snprintf(why, whylen, AUTH_FAILED);
	return ok ? KW_OK : KW_ERR_CRYPTO;
}

kw_status kwi_seal(const struct kw_keyring *kr, const kw_seal_aad *aad,
		   const char *plain, size_t len, unsigned char **out,
		   size_t *outlen)
{
	const struct ring_key *k = &kr->keys[0];
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
	memcpy(blob + 1, k->id, ID_LEN);
	randombytes_buf(blob + 1 + ID_LEN, NONCE_LEN);
	ad = make_aad(adbuf, sizeof(adbuf), blob, aad, &adlen);
	if (ad == NULL) {
		rc = KW_ERR_NOMEM;
		goto out;
	}

	if (use_aesni(kr)) {
		if (crypto_aead_aes256gcm_encrypt_afternm(
			    blob + HEADER_LEN, &clen,
			    (const unsigned char *)plain, len, ad, adlen, NULL,
			    blob + 1 + ID_LEN, &k->gcm) != 0)
			goto out;
	} else if (!ossl_seal(k, ad, adlen, plain, len, blob)) {
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
	sodium_bin2hex(id, KW_KEY_ID_SIZE, sealed + 1, ID_LEN);
	return KW_OK;
}

kw_status kwi_unseal(const struct kw_keyring *kr, const kw_seal_aad *aad,
		     const unsigned char *sealed, size_t len, char *plain,
		     char *why, size_t whylen)
{
	const struct ring_key *k = NULL;
	unsigned char adbuf[AAD_STACK], *ad = NULL;
	char id[KW_KEY_ID_SIZE];
	kw_status rc = KW_ERR_CRYPTO;
	size_t adlen, plen;

	if (len < KW_SEAL_OVERHEAD || len - KW_SEAL_OVERHEAD > INT32_MAX) {
		snprintf(why, whylen, "sealed value is truncated (%zu bytes)",
			 len);
		return KW_ERR_CRYPTO;
	}
	plen = len - KW_SEAL_OVERHEAD;
	if (sealed[0] != SEAL_VERSION) {
		snprintf(why, whylen, "unknown seal format version %u",
			 (unsigned)sealed[0]);
		goto out;
	}
	for (size_t i = 0; i < kr->n && k == NULL; i++)
		if (memcmp(kr->keys[i].id, sealed + 1, ID_LEN) == 0)
			k = &kr->keys[i];
	if (k == NULL) {
		sodium_bin2hex(id, sizeof(id), sealed + 1, ID_LEN);
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
		rc = ossl_open(k, ad, adlen, sealed, plen, plain, why, whylen);
		goto out;
	}
	if (crypto_aead_aes256gcm_decrypt_afternm(
		    (unsigned char *)plain, NULL, NULL, sealed + HEADER_LEN,
		    plen + TAG_LEN, ad, adlen, sealed + 1 + ID_LEN,
		    &k->gcm) != 0) {
		snprintf(why, whylen, AUTH_FAILED);
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
